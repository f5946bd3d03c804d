/**
 * Attaching where native XDP cannot go, as an operator meets it: a veth whose peer has jumbo
 * frames (MTU 9000: over the page a single-buffer program takes), and a bridge (no native XDP).
 * The kernel says only ERANGE / EOPNOTSUPP; the error must say why and what to do, and leave no
 * pins behind. And a restart whose config asks for the other mode gets it. The data plane runs in a child process in the namespace (network only: nsenter).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { unpinAll } from '../../src/bpf/pin.js';
import { addNs, delNs, inNs, runId } from '../support/netns.js';

const id = runId();
const NS = `xa-${id}`;
const PIN = `/sys/fs/bpf/sluice-test-xa-${id}`;
const DIST = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
process.on('exit', () => unpinAll(PIN));

/** Open the data plane on `ifname` in NS: 'ok' or the error's code and first line. */
function openIn(ifname: string, xdpMode: 'native' | 'generic'): { ok: boolean; code?: string; line?: string } {
  const script = `
    const { XdpDataplane } = await import(${JSON.stringify(join(DIST, 'src/dataplane/xdp/index.js'))});
    const { DEFAULT_DATAPLANE } = await import(${JSON.stringify(join(DIST, 'src/model/types.js'))});
    const spec = { ...DEFAULT_DATAPLANE, kind: 'xdp', interface: ${JSON.stringify(ifname)}, xdpMode: ${JSON.stringify(xdpMode)}, maxVips: 2, maxReals: 4, ringSize: 13, flowTableSize: 1024 };
    try {
      const dp = await XdpDataplane.open({ spec, pinDir: ${JSON.stringify(PIN)} });
      await dp.close({ keepForwarding: false });
      process.stdout.write(JSON.stringify({ ok: true }));
    } catch (e) {
      process.stdout.write(JSON.stringify({ ok: false, code: e.code, line: e.message.split('\\n')[0] }));
    }`;
  return JSON.parse(inNs(NS, process.execPath, ['--input-type=module', '-e', script], { timeout: 30_000 }));
}

/** Open (adopting what is pinned) on `ifname` in `xdpMode`; the mode the kernel reports, adoption, flows; then close. */
function restartIn(ifname: string, xdpMode: 'native' | 'generic', o: { makeFlows?: boolean; keep: boolean }): { mode: string; adopted: boolean; flows: number } {
  const script = `
    const { XdpDataplane } = await import(${JSON.stringify(join(DIST, 'src/dataplane/xdp/index.js'))});
    const { DEFAULT_DATAPLANE } = await import(${JSON.stringify(join(DIST, 'src/model/types.js'))});
    const { xdpAttached } = await import(${JSON.stringify(join(DIST, 'src/bpf/index.js'))});
    const { frame } = await import(${JSON.stringify(join(DIST, 'test/bpf/packet.js'))});
    const spec = { ...DEFAULT_DATAPLANE, kind: 'xdp', interface: ${JSON.stringify(ifname)}, xdpMode: ${JSON.stringify(xdpMode)}, maxVips: 2, maxReals: 4, ringSize: 13, flowTableSize: 1024 };
    const dp = await XdpDataplane.open({ spec, pinDir: ${JSON.stringify(PIN)}, isOnLink: async () => true, resolveMac: async () => '02:00:00:00:01:01' });
    try {
      if (${!!o.makeFlows}) {
        await dp.sync({ services: [{ address: '10.0.0.100', port: 80, protocol: 'tcp', mode: 'dsr', hash: '5tuple', scheduler: 'mh', reals: [{ address: '10.1.0.1', port: 80, weight: 1, state: 'up' }] }] });
        for (let i = 0; i < 5; i++) dp.program.testRun(frame({ src: '192.168.0.1', dst: '10.0.0.100', proto: 'tcp', sport: 1000 + i, dport: 80 }, { dst: '02:00:00:00:00:01', src: '02:00:00:00:00:02' }));
      }
      process.stdout.write(JSON.stringify({ mode: xdpAttached(${JSON.stringify(ifname)}).mode, adopted: dp.adopted, flows: dp.flowCount() }));
    } finally { await dp.close({ keepForwarding: ${o.keep} }); }`;
  return JSON.parse(inNs(NS, process.execPath, ['--input-type=module', '-e', script], { timeout: 30_000 }));
}

before(() => addNs(NS));
after(() => {
  delNs(NS);
  unpinAll(PIN);
});

describe('a restart with another xdpMode', () => {
  before(() => {
    inNs(NS, 'ip', ['link', 'add', 'dev', 'jm0', 'type', 'veth', 'peer', 'name', 'jm1']);
    for (const d of ['jm0', 'jm1']) inNs(NS, 'ip', ['link', 'set', d, 'up']);
    unpinAll(PIN);
  });
  after(() => unpinAll(PIN));

  test('re-attaches the adopted program in the mode asked for, keeping the flow table, and back', () => {
    assert.deepEqual(restartIn('jm0', 'native', { makeFlows: true, keep: true }), { mode: 'native', adopted: false, flows: 5 });
    assert.deepEqual(restartIn('jm0', 'generic', { keep: true }), { mode: 'generic', adopted: true, flows: 5 });
    assert.deepEqual(restartIn('jm0', 'generic', { keep: true }), { mode: 'generic', adopted: true, flows: 5 });
    assert.deepEqual(restartIn('jm0', 'native', { keep: false }), { mode: 'native', adopted: true, flows: 5 });
    assert.equal(existsSync(join(PIN, 'link')), false);
  });
});

describe('attaching where native XDP cannot go', () => {
  before(() => {
    inNs(NS, 'ip', ['link', 'add', 'dev', 'jv0', 'type', 'veth', 'peer', 'name', 'jv1']);
    inNs(NS, 'ip', ['link', 'set', 'jv1', 'mtu', '9000']);
    inNs(NS, 'ip', ['link', 'set', 'jv0', 'mtu', '9000']);
    inNs(NS, 'ip', ['link', 'add', 'jbr', 'type', 'bridge']);
    for (const d of ['jv0', 'jv1', 'jbr']) inNs(NS, 'ip', ['link', 'set', d, 'up']);
    unpinAll(PIN);
  });
  after(() => unpinAll(PIN));

  test('native on a veth whose peer has MTU 9000: ERANGE, naming the MTU and the way out; no pins left', () => {
    const r = openIn('jv0', 'native');
    assert.equal(r.ok, false);
    assert.equal(r.code, 'ERANGE');
    assert.match(r.line!, /jv0 refused native XDP for its MTU/);
    assert.match(r.line!, /lower the MTU, or use xdpMode generic/);
    assert.equal(existsSync(join(PIN, 'prog')), false, 'no program pinned');
  });

  test('generic on the same veth attaches', () => {
    assert.deepEqual(openIn('jv0', 'generic'), { ok: true });
  });

  test('with the peer back at 3506 bytes, native attaches', () => {
    inNs(NS, 'ip', ['link', 'set', 'jv1', 'mtu', '3506']);
    try {
      assert.deepEqual(openIn('jv0', 'native'), { ok: true });
    } finally {
      inNs(NS, 'ip', ['link', 'set', 'jv1', 'mtu', '9000']);
    }
  });

  test('native on a bridge: EOPNOTSUPP, pointing at generic', () => {
    const r = openIn('jbr', 'native');
    assert.equal(r.code, 'EOPNOTSUPP');
    assert.match(r.line!, /jbr has no native XDP; use xdpMode generic/);
  });
});

describe('an interface that does not exist', () => {
  for (const kind of ['auto', 'xdp'] as const) {
    test(`is refused as such with dataplane ${kind} (auto does not fall back to IPVS over a typo)`, async () => {
      const { openDataplane } = await import('../../src/dataplane/open.js');
      const { DEFAULT_DATAPLANE } = await import('../../src/model/types.js');
      const pino = (await import('pino')).default;
      await assert.rejects(openDataplane({ spec: { ...DEFAULT_DATAPLANE, kind, interface: 'nosuch0' }, pinDir: PIN, stateDir: `/tmp/sluice-xa-${id}`, logger: pino({ level: 'silent' }) }),
        /interface nosuch0 does not exist in this network namespace \(--interface or dataplane\.interface\)/);
      assert.equal(existsSync(join(PIN, 'prog')), false, 'nothing loaded');
    });
  }
});
