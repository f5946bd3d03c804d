/**
 * XdpDataplane against the kernel, without an interface: sync writes what the program needs
 * (checked by running packets through it), stats sum the CPUs, pins survive a restart and a
 * program upgrade without losing the flow table.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { unpinAll } from '../../src/bpf/pin.js';
import { XdpAction } from '../../src/bpf/program.js';
import { XdpDataplane, staticMacs } from '../../src/dataplane/xdp/index.js';
import { DEFAULT_DATAPLANE, type DataplaneSpec, type Service, type ServiceTable } from '../../src/model/types.js';
import { frame } from './packet.js';

const PIN = `/sys/fs/bpf/sluice-test-${randomBytes(3).toString('hex')}`;
const SPEC: DataplaneSpec = { ...DEFAULT_DATAPLANE, kind: 'xdp', maxVips: 4, maxReals: 32, ringSize: 251, flowTableSize: 4096, gatewayMac: '02:00:00:00:00:fe' };
const MACS: Record<string, string> = { '10.1.0.1': '02:00:00:00:01:01', '10.1.0.2': '02:00:00:00:01:02', '10.1.0.3': '02:00:00:00:01:03', '2001:db8:1::1': '02:00:00:00:01:61' };
const LB = { dst: '02:00:00:00:00:01', src: '02:00:00:00:00:02' };
process.on('exit', () => unpinAll(PIN));

function svc(o: Partial<Service> = {}): Service {
  return {
    address: '10.0.0.100', port: 80, protocol: 'tcp', mode: 'dsr', hash: '5tuple', scheduler: 'mh',
    reals: ['10.1.0.1', '10.1.0.2', '10.1.0.3'].map((a) => ({ address: a, port: 80, weight: 1, state: 'up' as const })),
    ...o,
  };
}
const table = (...s: Service[]): ServiceTable => ({ services: s });
const open = (extra: Partial<Parameters<typeof XdpDataplane.open>[0]> = {}) => XdpDataplane.open({ spec: SPEC, pinDir: PIN, resolveMac: staticMacs(MACS), isOnLink: async () => true, ...extra });
const macOf = (d: Buffer) => [...d.subarray(0, 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
const realOf = (d: Buffer) => Object.keys(MACS).find((a) => MACS[a] === macOf(d));

let dp: XdpDataplane | undefined;
afterEach(async () => { await dp?.close({ keepForwarding: false }); dp = undefined; });
after(() => unpinAll(PIN));

function send(d: XdpDataplane, src: string, sport: number, dst = '10.0.0.100', dport = 80) {
  return d.program.testRun(frame({ src, dst, proto: 'tcp', sport, dport }, LB));
}

describe('XdpDataplane', () => {
  before(() => unpinAll(PIN));

  test('sync programs VIPs and reals so that the program forwards to the VIP\'s reals', async () => {
    dp = await open();
    const r = await dp.sync(table(svc()));
    assert.deepEqual([r.added, r.updated, r.removed], [1, 0, 0]);
    const seen = new Set<string>();
    for (let i = 0; i < 60; i++) {
      const out = send(dp, `192.168.0.${i + 1}`, 1000 + i);
      assert.equal(out.action, XdpAction.TX);
      seen.add(realOf(out.data)!);
    }
    assert.deepEqual([...seen].sort(), ['10.1.0.1', '10.1.0.2', '10.1.0.3']);
  });

  test('sync is idempotent: the same table twice changes nothing the second time', async () => {
    dp = await open();
    await dp.sync(table(svc(), svc({ address: '2001:db8::100', reals: [{ address: '2001:db8:1::1', port: 80, weight: 1, state: 'up' }] })));
    const again = await dp.sync(table(svc(), svc({ address: '2001:db8::100', reals: [{ address: '2001:db8:1::1', port: 80, weight: 1, state: 'up' }] })));
    assert.deepEqual(again, { added: 0, updated: 0, removed: 0, changes: [] });
  });

  test('removing one of three reals rewrites only its ring slots (about a third)', async () => {
    dp = await open();
    await dp.sync(table(svc()));
    const before = dp.readRing(0);
    const r = await dp.sync(table(svc({ reals: svc().reals.slice(0, 2) })));
    const after = dp.readRing(0);
    let changed = 0;
    for (let i = 0; i < before.length; i++) if (before[i] !== after[i]) changed++;
    assert.ok(changed > 251 / 3 - 25 && changed < 251 / 3 + 25, `changed ${changed}`);
    assert.ok(r.changes.includes(`ring 10.0.0.100:80/tcp: ${changed} slots`), r.changes.join('; '));
    assert.equal(r.removed, 1);
  });

  test('a removed real\'s flows move to the others; the other flows stay', async () => {
    dp = await open();
    await dp.sync(table(svc()));
    const flows = Array.from({ length: 60 }, (_, i) => ({ src: `192.168.1.${i + 1}`, sport: 2000 + i }));
    const first = flows.map((f) => realOf(send(dp!, f.src, f.sport).data));
    await dp.sync(table(svc({ reals: svc().reals.filter((r) => r.address !== '10.1.0.2') })));
    flows.forEach((f, i) => {
      const now = realOf(send(dp!, f.src, f.sport).data);
      if (first[i] === '10.1.0.2') assert.notEqual(now, '10.1.0.2', `flow ${i} moved`);
      else assert.equal(now, first[i], `flow ${i} kept`);
    });
  });

  test('a drained real keeps its flows but gets no new ones; a down real loses them', async () => {
    dp = await open();
    await dp.sync(table(svc()));
    const flows = Array.from({ length: 60 }, (_, i) => ({ src: `192.168.2.${i + 1}`, sport: 3000 + i }));
    const first = flows.map((f) => realOf(send(dp!, f.src, f.sport).data));
    assert.ok(first.includes('10.1.0.1'));
    const withState = (state: 'drain' | 'down') => svc({ reals: svc().reals.map((r) => (r.address === '10.1.0.1' ? { ...r, state } : r)) });
    await dp.sync(table(withState('drain')));
    flows.forEach((f, i) => assert.equal(realOf(send(dp!, f.src, f.sport).data), first[i]));
    for (let i = 0; i < 40; i++) assert.notEqual(realOf(send(dp, `192.168.3.${i + 1}`, 9).data), '10.1.0.1');
    await dp.sync(table(withState('down')));
    flows.forEach((f, i) => {
      if (first[i] === '10.1.0.1') assert.notEqual(realOf(send(dp!, f.src, f.sport).data), '10.1.0.1');
    });
  });

  test('stats sum the per-CPU counters per VIP and per real, with the global counters', async () => {
    dp = await open();
    await dp.sync(table(svc()));
    for (let i = 0; i < 10; i++) send(dp, '192.168.4.1', 4000 + i);
    send(dp, '192.168.4.1', 4000);
    send(dp, '192.168.4.1', 1, '10.7.7.7');
    const s = await dp.stats();
    assert.equal(s.vips.length, 1);
    assert.equal(s.vips[0].key, '10.0.0.100:80/tcp');
    assert.equal(s.vips[0].packets, 11);
    assert.equal(s.vips[0].newFlows, 10);
    assert.equal(s.vips[0].reals.reduce((a, r) => a + r.packets, 0), 11);
    assert.equal(s.vips[0].bytes, 11 * 54);
    assert.equal(s.global.lru_miss, 10);
    assert.equal(s.global.pass_not_vip, 1);
  });

  test('a restart adopts the pinned program and maps: flows and state survive', async () => {
    dp = await open();
    await dp.sync(table(svc()));
    const first = realOf(send(dp, '192.168.5.1', 5000).data);
    await dp.close({ keepForwarding: true });
    assert.ok(existsSync(`${PIN}/prog`));
    dp = await open();
    assert.equal(dp.adopted, true);
    assert.equal(dp.upgraded, false);
    assert.ok(dp.flowCount() >= 1);
    assert.deepEqual(await dp.sync(table(svc())), { added: 0, updated: 0, removed: 0, changes: [] });
    // Move the ring away from that real: the adopted flow entry still sends the flow there.
    await dp.sync(table(svc({ reals: svc().reals.map((r) => (r.address === first ? { ...r, state: 'drain' as const } : r)) })));
    assert.equal(realOf(send(dp, '192.168.5.1', 5000).data), first);
  });

  test('a changed program replaces the pinned one and keeps its maps (flow table included)', async () => {
    dp = await open();
    await dp.sync(table(svc()));
    const flows = Array.from({ length: 30 }, (_, i) => ({ src: `192.168.6.${i + 1}`, sport: 6000 + i }));
    const first = flows.map((f) => realOf(send(dp!, f.src, f.sport).data));
    const oldId = dp.program.id;
    await dp.close({ keepForwarding: true });
    dp = await open({ defines: { HASH_SEED: '0x12345678u' } });
    assert.equal(dp.adopted, true);
    assert.equal(dp.upgraded, true);
    assert.notEqual(dp.program.id, oldId);
    flows.forEach((f, i) => assert.equal(realOf(send(dp!, f.src, f.sport).data), first[i], `flow ${i}`));
  });

  test('adopting pins made with other limits is refused', async () => {
    dp = await open();
    await dp.close({ keepForwarding: true });
    dp = undefined;
    await assert.rejects(XdpDataplane.open({ spec: { ...SPEC, maxReals: 64 }, pinDir: PIN }), { code: 'ELIMITS' });
    unpinAll(PIN);
  });

  test('more VIPs than maxVips is refused with ENOSPC', async () => {
    dp = await open();
    const many = Array.from({ length: 5 }, (_, i) => svc({ address: `10.0.0.${i + 1}` }));
    await assert.rejects(dp.sync(table(...many)), { code: 'ENOSPC' });
  });

  test('close without keepForwarding removes every pin', async () => {
    dp = await open();
    await dp.close({ keepForwarding: false });
    dp = undefined;
    assert.equal(existsSync(PIN), false);
  });
});

test('concurrent syncs apply one after the other, the last table winning', async () => {
  const d = await open();
  try {
    const [a, b2] = await Promise.all([d.sync(table(svc())), d.sync(table(svc({ reals: svc().reals.slice(0, 1) })))]);
    assert.equal(a.added, 1);
    assert.equal(b2.removed, 2);
    const s = await d.stats();
    assert.deepEqual(s.vips[0].reals.map((r) => r.key), ['10.1.0.1:80']);
  } finally {
    await d.close({ keepForwarding: false });
  }
});

test('a restart keeps NAT replies and port-0 VIPs working before the first sync', async () => {
  let d = await open();
  try {
    await d.sync(table(svc({ port: 0, mode: 'nat' })));
    const out = send(d, '192.168.9.1', 9000, '10.0.0.100', 4444);
    assert.equal(out.action, XdpAction.TX);
    const real = realOf(out.data)!;
    await d.close({ keepForwarding: true });
    d = await open();
    assert.equal(send(d, '192.168.9.2', 9001, '10.0.0.100', 5555).action, XdpAction.TX, 'the wildcard VIP still matches');
    const reply = d.program.testRun(frame({ src: real, dst: '192.168.9.1', proto: 'tcp', sport: 80, dport: 9000 }, { dst: LB.dst, src: MACS[real] }));
    assert.equal(reply.action, XdpAction.TX, 'the NAT reply is still rewritten');
  } finally {
    await d.close({ keepForwarding: false });
  }
});

test('a dsr real whose MAC cannot be resolved is kept out of the ring and reported', async () => {
  const d = await open({ resolveMac: async (a) => (a === '10.1.0.3' ? null : MACS[a]) });
  try {
    const r = await d.sync(table(svc()));
    assert.ok(r.changes.some((c) => c.startsWith('!real 10.0.0.100:80/tcp 10.1.0.3')), r.changes.join('; '));
    const ring = d.readRing(0);
    const stats = await d.stats();
    assert.equal(stats.vips[0].reals.length, 3);
    for (let i = 0; i < 100; i++) assert.notEqual(realOf(send(d, `192.168.10.${i + 1}`, 10).data), '10.1.0.3');
    assert.equal(new Set(ring).size, 2, 'two reals own the ring');
  } finally {
    await d.close({ keepForwarding: false });
  }
});

test('an ipip real off the link needs no MAC: packets go to the gateway', async () => {
  const d = await open({ resolveMac: async () => null, isOnLink: async () => false });
  try {
    await d.sync(table(svc({ mode: 'ipip' })));
    const out = send(d, '192.168.11.1', 11);
    assert.equal(out.action, XdpAction.TX);
    assert.equal(macOf(out.data), SPEC.gatewayMac);
  } finally {
    await d.close({ keepForwarding: false });
  }
});
