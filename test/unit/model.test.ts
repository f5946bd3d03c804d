import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  canonicalIp, parseRealRef, parseVipKey, validateConfig, vipKey, parseDuration, ValidationError, ipToBytes, bytesToIp,
  readConfigDocument,
} from '../../src/model/index.js';

test('IPv6 addresses are canonicalised per RFC 5952', () => {
  assert.equal(canonicalIp('2001:DB8:0:0:0:0:0:1'), '2001:db8::1');
  assert.equal(canonicalIp('2001:db8:0:1:0:0:0:0'), '2001:db8:0:1::');
  assert.equal(canonicalIp('::ffff:10.0.0.1'), '::ffff:a00:1');
  assert.equal(canonicalIp('10.0.0.300'), null);
});

test('addresses round-trip through bytes', () => {
  for (const a of ['10.99.0.11', '2001:db8::11', '::', 'fe80::1:2']) assert.equal(bytesToIp(ipToBytes(a)), a);
});

test('VIP keys parse IPv4 and bracketed IPv6 with port and protocol', () => {
  assert.deepEqual(parseVipKey('10.99.100.1:80/tcp'), { address: '10.99.100.1', port: 80, protocol: 'tcp' });
  assert.deepEqual(parseVipKey('[2001:DB8::1]:443/UDP'), { address: '2001:db8::1', port: 443, protocol: 'udp' });
  assert.equal(vipKey(parseVipKey('[2001:db8::1]:0/tcp')), '[2001:db8::1]:0/tcp');
});

test('malformed VIP keys name the problem', () => {
  assert.throws(() => parseVipKey('10.0.0.1:80'), /not ADDR:PORT\/PROTO/);
  assert.throws(() => parseVipKey('10.0.0.300:80/tcp'), /"10.0.0.300" is not an IPv4 address/);
  assert.throws(() => parseVipKey('10.0.0.1:70000/tcp'), /port "70000" must be an integer 0..65535/);
  assert.throws(() => parseVipKey('10.0.0.1:80/sctp'), /protocol "sctp" must be tcp or udp/);
  assert.throws(() => parseVipKey('2001:db8::1:80/tcp'), ValidationError);
});

test('real references take an optional port, IPv6 bracketed when it has one', () => {
  assert.deepEqual(parseRealRef('10.0.0.11'), { address: '10.0.0.11' });
  assert.deepEqual(parseRealRef('10.0.0.11:8080'), { address: '10.0.0.11', port: 8080 });
  assert.deepEqual(parseRealRef('2001:db8::11'), { address: '2001:db8::11' });
  assert.deepEqual(parseRealRef('[2001:db8::11]:8080'), { address: '2001:db8::11', port: 8080 });
  assert.throws(() => parseRealRef('nope'), /"nope" is not an IP address/);
});

test('durations accept ms, s and m', () => {
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('1m'), 60000);
  assert.equal(parseDuration('soon'), null);
});

test('a minimal config gets every default', () => {
  const c = validateConfig({ vips: [{ address: '10.99.100.1', port: 80, reals: [{ address: '10.99.0.11' }] }] });
  assert.equal(c.dataplane.ringSize, 65537);
  assert.equal(c.dataplane.kind, 'auto');
  assert.deepEqual(c.vips[0].health, { type: 'none', intervalMs: 1000, timeoutMs: 500, rise: 2, fall: 2 });
  assert.equal(c.vips[0].mode, 'dsr');
  assert.equal(c.vips[0].protocol, 'tcp');
  assert.equal(c.vips[0].reals[0].weight, 1);
});

test('every config error names its path, all at once', () => {
  try {
    validateConfig({
      dataplane: { ringSize: 65536 },
      vips: [{ address: '10.99.100.1', port: 80, mode: 'fast', reals: [{ address: '10.99.0.11' }, { address: '10.99.0.12', weight: 70000 }] }],
    });
    assert.fail('accepted');
  } catch (e) {
    const issues = (e as ValidationError).issues.map((i) => `${i.path}: ${i.message}`);
    assert.ok(issues.includes('vips[0].reals[1].weight: must be an integer 0..65535'), issues.join('\n'));
    assert.ok(issues.some((i) => i.startsWith('vips[0].mode: must be one of dsr, ipip, nat')));
    assert.ok(issues.some((i) => i.startsWith('dataplane.ringSize: must be a prime')));
  }
});

test('duplicate VIPs and reals are refused', () => {
  assert.throws(() => validateConfig({ vips: [{ address: '10.0.0.1', port: 80 }, { address: '10.0.0.1', port: 80 }] }), /vips\[1\]: duplicate VIP 10.0.0.1:80\/tcp/);
  assert.throws(() => validateConfig({ vips: [{ address: '10.0.0.1', port: 80, reals: [{ address: '10.0.0.2' }, { address: '10.0.0.2' }] }] }), /duplicate real 10.0.0.2/);
});

test('a real port is allowed only in nat mode, and families must match outside ipip', () => {
  assert.throws(() => validateConfig({ vips: [{ address: '10.0.0.1', port: 80, reals: [{ address: '10.0.0.2', port: 8080 }] }] }), /own port only in nat mode/);
  assert.ok(validateConfig({ vips: [{ address: '10.0.0.1', port: 80, mode: 'nat', reals: [{ address: '10.0.0.2', port: 8080 }] }] }));
  assert.throws(() => validateConfig({ vips: [{ address: '10.0.0.1', port: 80, reals: [{ address: '2001:db8::2' }] }] }), /must be IPv4 like the VIP/);
  assert.ok(validateConfig({ vips: [{ address: '10.0.0.1', port: 80, mode: 'ipip', reals: [{ address: '2001:db8::2' }] }] }));
});

test('more reals than maxReals is refused naming the limit', () => {
  assert.throws(() => validateConfig({ dataplane: { maxReals: 1 }, vips: [{ address: '10.0.0.1', port: 80, reals: [{ address: '10.0.0.2' }, { address: '10.0.0.3' }] }] }), /over the limit of 1 \(dataplane.maxReals\)/);
});

test('unknown fields are errors, not silently ignored', () => {
  assert.throws(() => validateConfig({ vips: [{ address: '10.0.0.1', port: 80, wieght: 3 }] }), /vips\[0\].wieght: unknown field/);
});

const vipDoc = (extra: Record<string, unknown>) => ({ vips: [{ address: '10.0.0.1', port: 80, ...extra }] });

test('a health timeout longer than its interval is refused', () => {
  assert.throws(() => validateConfig(vipDoc({ health: { type: 'tcp', interval: '1s', timeout: '2s' } })), /vips\[0\]\.health\.timeout: must not exceed the interval \(2000ms > 1000ms\)/);
});

test('a health port without a health check is refused', () => {
  assert.throws(() => validateConfig(vipDoc({ health: { type: 'none', port: 8080 } })), /vips\[0\]\.health\.port: has no use without a health check/);
});

test('a real written with the VIP\'s own port is the same real as without it', () => {
  const c = validateConfig(vipDoc({ reals: [{ address: '10.0.0.11', port: 80 }] }));
  assert.deepEqual(c.vips[0].reals[0], { address: '10.0.0.11', weight: 1, drain: false });
  assert.throws(() => validateConfig(vipDoc({ reals: [{ address: '10.0.0.11', port: 80 }, { address: '10.0.0.11' }] })), /vips\[0\]\.reals\[1\]\.address: duplicate real 10.0.0.11/);
});

test('maxVips × ringSize is bounded, so ring indexes fit the map', () => {
  assert.throws(() => validateConfig({ dataplane: { maxVips: 4096, ringSize: 1_000_003 } }), /dataplane: maxVips × ringSize is 4096012288 ring slots, over the limit of 268435456/);
  assert.doesNotThrow(() => validateConfig({ dataplane: { maxVips: 2048, ringSize: 65537 } }));
});

test('VIPs and reals must be one host\'s unicast address: unspecified, multicast and broadcast are refused', () => {
  for (const [addr, why] of [['0.0.0.0', 'unspecified'], ['::', 'unspecified'], ['224.0.0.1', 'multicast'], ['239.1.2.3', 'multicast'], ['ff02::1', 'multicast'], ['255.255.255.255', 'broadcast']]) {
    assert.throws(() => validateConfig({ vips: [{ address: addr, port: 80 }] }), new RegExp(`vips\\[0\\]\\.address: is .*${why}`), addr);
  }
  assert.throws(() => validateConfig({ vips: [{ address: '10.0.0.1', port: 80, reals: [{ address: '0.0.0.0' }] }] }), /vips\[0\]\.reals\[0\]\.address: is the unspecified address/);
  assert.doesNotThrow(() => validateConfig({ vips: [{ address: '223.255.255.254', port: 80, reals: [{ address: '240.0.0.1' }] }, { address: 'fd00::1', port: 80, reals: [{ address: 'fec0::1' }] }] }));
});

test('IPv6 link-local and IPv4-mapped addresses are refused as VIPs and reals, naming what to write instead', () => {
  assert.throws(() => validateConfig({ vips: [{ address: '2001:db8::30', port: 80, reals: [{ address: 'fe80::1' }] }] }), /vips\[0\]\.reals\[0\]\.address: is link-local \(fe80::\/10\)/);
  assert.throws(() => validateConfig({ vips: [{ address: 'febf::1', port: 80 }] }), /vips\[0\]\.address: is link-local/);
  assert.throws(() => validateConfig({ vips: [{ address: '::ffff:203.0.113.7', port: 80 }] }), /vips\[0\]\.address: is IPv4-mapped \(::ffff:0:0\/96\): write the IPv4 address 203\.0\.113\.7/);
});

test('an empty config file is refused rather than read as "no VIPs"; `vips: []` says that', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-model-'));
  try {
    for (const text of ['', '\n\n', '# every VIP moved to the new box\n', '---\n']) {
      writeFileSync(join(dir, 'c.yaml'), text);
      assert.throws(() => readConfigDocument(join(dir, 'c.yaml')), /c\.yaml: is empty \(to remove every VIP, write `vips: \[\]`\)/, JSON.stringify(text));
    }
    writeFileSync(join(dir, 'c.yaml'), 'vips: []\n');
    assert.deepEqual(validateConfig(readConfigDocument(join(dir, 'c.yaml'))).vips, []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a health interval or timeout without a unit is refused, not read as milliseconds', () => {
  assert.throws(() => validateConfig(vipDoc({ health: { type: 'tcp', interval: 5, timeout: 1 } })),
    /vips\[0\]\.health\.interval: must be a duration with its unit, like 500ms, 2s or 1m \(5 has none\); vips\[0\]\.health\.timeout: must be a duration with its unit/);
  assert.equal(validateConfig(vipDoc({ health: { type: 'tcp', interval: '5s', timeout: '1s' } })).vips[0].health.intervalMs, 5000);
});

test('a health path without an http check is refused, not silently dropped', () => {
  assert.throws(() => validateConfig(vipDoc({ health: { type: 'tcp', path: '/healthz' } })), /vips\[0\]\.health\.path: has no use without an http check \(type tcp\)/);
  assert.throws(() => validateConfig(vipDoc({ health: { type: 'none', path: '/healthz' } })), /vips\[0\]\.health\.path: has no use without an http check \(type none\)/);
  assert.equal(validateConfig(vipDoc({ health: { path: '/healthz' } })).vips[0].health.type, 'http');
});

test('an IPv6 address with a zone is refused as VIP or real, not stripped of it', () => {
  assert.throws(() => validateConfig({ vips: [{ address: '2001:db8::1%eth0', port: 80 }] }), /vips\[0\]\.address: has a zone \(%eth0\)/);
  assert.throws(() => validateConfig({ vips: [{ address: '2001:db8::1', port: 80, reals: [{ address: '2001:db8::11%2' }] }] }), /vips\[0\]\.reals\[0\]\.address: has a zone \(%2\)/);
  assert.throws(() => parseVipKey('[2001:db8::1%eth0]:80/tcp'), /"2001:db8::1%eth0" has a zone \(%eth0\)/);
  assert.throws(() => parseRealRef('2001:db8::11%eth0'), /"2001:db8::11%eth0" has a zone/);
  assert.throws(() => parseRealRef('[2001:db8::11%eth0]:8080'), /"2001:db8::11%eth0" has a zone/);
});

test('loopback, 0.0.0.0/8 and IPv4-compatible addresses are refused as VIPs and reals, naming what to write instead', () => {
  for (const [addr, why] of [['127.0.0.1', 'loopback'], ['127.10.0.1', 'loopback'], ['::1', 'loopback'], ['0.1.2.3', '0.0.0.0/8']]) {
    assert.throws(() => validateConfig({ vips: [{ address: addr, port: 80 }] }), new RegExp(`vips\\[0\\]\\.address: is .*${why}`), addr);
    assert.throws(() => validateConfig({ vips: [{ address: '10.0.0.1', port: 80, mode: 'ipip', reals: [{ address: addr }] }] }), new RegExp(`vips\\[0\\]\\.reals\\[0\\]\\.address: is .*${why}`), addr);
  }
  assert.throws(() => validateConfig({ vips: [{ address: '::10.0.0.1', port: 80 }] }), /vips\[0\]\.address: is IPv4-compatible \(::\/96, deprecated\): write the IPv4 address 10\.0\.0\.1/);
});

test('a real at its VIP\'s own address is refused', () => {
  assert.throws(() => validateConfig({ vips: [{ address: '10.0.0.1', port: 80, reals: [{ address: '10.0.0.11' }, { address: '10.0.0.1' }] }] }), /vips\[0\]\.reals\[1\]\.address: is the VIP's own address/);
  assert.throws(() => validateConfig({ vips: [{ address: '2001:db8::1', port: 80, reals: [{ address: '2001:DB8:0::1' }] }] }), /vips\[0\]\.reals\[0\]\.address: is the VIP's own address/);
});

test('an IPv4 address with a leading zero is refused as possibly octal, naming the decimal reading', () => {
  assert.throws(() => validateConfig({ vips: [{ address: '010.0.0.1', port: 80 }] }), /vips\[0\]\.address: has a leading zero, which some tools read as octal: write 10\.0\.0\.1 if that is meant/);
  assert.throws(() => validateConfig({ vips: [{ address: '10.0.0.1', port: 80, reals: [{ address: '10.0.0.011' }] }] }), /vips\[0\]\.reals\[0\]\.address: has a leading zero.*write 10\.0\.0\.11/);
  assert.throws(() => parseVipKey('010.0.0.1:80/tcp'), /"010.0.0.1" has a leading zero.*write 10\.0\.0\.1 /);
  assert.throws(() => parseRealRef('10.0.0.011:8080'), /"10.0.0.011" has a leading zero/);
});

test('a broadcast, multicast or all-zero MAC is refused as a next hop', () => {
  for (const [mac, why] of [['ff:ff:ff:ff:ff:ff', 'broadcast'], ['01:00:5e:00:00:01', 'multicast'], ['33:33:00:00:00:01', 'multicast'], ['00:00:00:00:00:00', 'all zeros']]) {
    assert.throws(() => validateConfig({ vips: [{ address: '10.0.0.1', port: 80, reals: [{ address: '10.0.0.11', mac }] }] }), new RegExp(`vips\\[0\\]\\.reals\\[0\\]\\.mac: is .*${why}`), mac);
    assert.throws(() => validateConfig({ dataplane: { gatewayMac: mac }, vips: [] }), new RegExp(`dataplane\\.gatewayMac: is .*${why}`), mac);
  }
  assert.equal(validateConfig({ vips: [{ address: '10.0.0.1', port: 80, reals: [{ address: '10.0.0.11', mac: '02:00:00:00:00:0B' }] }] }).vips[0].reals[0].mac, '02:00:00:00:00:0b');
});

test('a VIP\'s protocol is taken in any case, as the command line takes it', () => {
  assert.equal(validateConfig({ vips: [{ address: '10.0.0.1', port: 53, protocol: 'UDP' }] }).vips[0].protocol, 'udp');
  assert.equal(vipKey(validateConfig({ vips: [{ address: '10.0.0.1', port: 80, protocol: 'Tcp' }] }).vips[0]), vipKey(parseVipKey('10.0.0.1:80/TCP')));
  assert.throws(() => validateConfig({ vips: [{ address: '10.0.0.1', port: 80, protocol: 'SCTP' }] }), /vips\[0\]\.protocol: must be one of tcp, udp/);
});

test('a number written as a quoted string is refused saying it is a string', () => {
  assert.throws(() => validateConfig({ vips: [{ address: '10.0.0.1', port: '80', reals: [{ address: '10.0.0.11', weight: '2' }] }] }),
    /vips\[0\]\.port: must be an integer 0..65535 \("80" is a string: write it without quotes\); vips\[0\]\.reals\[0\]\.weight: must be an integer 0..65535 \("2" is a string/);
});

test('a custom YAML tag or a second document is refused at its line in one line, not read as text with a process warning', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-model-'));
  try {
    writeFileSync(join(dir, 'c.yaml'), 'vips: !include vips.yaml\n');
    const warnings: unknown[] = [];
    const onWarning = (w: unknown) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      assert.throws(() => readConfigDocument(join(dir, 'c.yaml')), /c\.yaml:1:7: Unresolved tag: !include \(sluice knows no custom YAML tags\)/);
    } finally {
      process.off('warning', onWarning);
    }
    assert.deepEqual(warnings, []);
    writeFileSync(join(dir, 'c.yaml'), 'vips: []\n---\nvips: []\n');
    assert.throws(() => readConfigDocument(join(dir, 'c.yaml')), /c\.yaml:2:1: holds more than one YAML document \(a second ---\): a config is one document/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
