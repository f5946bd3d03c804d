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
import { native } from '../../src/bpf/native.js';
import { XdpAction } from '../../src/bpf/program.js';
import { XdpDataplane, staticMacs } from '../../src/dataplane/xdp/index.js';
import * as S from '../../src/dataplane/xdp/structs.js';
import { DEFAULT_DATAPLANE, type DataplaneSpec, type Service, type ServiceTable } from '../../src/model/types.js';
import { frame } from './packet.js';
import { bytesToIp } from '../../src/model/address.js';

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

describe('next hops', () => {
  test('a dsr real whose MAC becomes resolvable joins the ring on the next sync of the same table, and refreshNeighbours reports it', async () => {
    const known: Record<string, string> = { ...MACS };
    delete known['10.1.0.3'];
    const d = await open({ resolveMac: async (a) => known[a] ?? null });
    try {
      await d.sync(table(svc()));
      assert.equal(new Set(d.readRing(0)).size, 2);
      known['10.1.0.3'] = MACS['10.1.0.3'];
      const r = await d.sync(table(svc()));
      assert.ok(r.changes.some((c) => c.startsWith('ring ')), r.changes.join('; '));
      assert.equal(new Set(d.readRing(0)).size, 3, 'three reals own the ring');
      const seen = new Set<string>();
      for (let i = 0; i < 60; i++) seen.add(realOf(send(d, `192.168.20.${i + 1}`, 20).data)!);
      assert.ok(seen.has('10.1.0.3'));
      assert.equal(await d.refreshNeighbours(), false, 'nothing left to change');
    } finally {
      await d.close({ keepForwarding: false });
    }
  });

  test('refreshNeighbours picks up a real\'s new MAC (sync trusts a resolved one for neighbourTtlMs); flows follow it', async () => {
    const known: Record<string, string> = { ...MACS };
    const d = await open({ resolveMac: async (a) => known[a] ?? null });
    try {
      await d.sync(table(svc()));
      const flows = Array.from({ length: 40 }, (_, i) => ({ src: `192.168.21.${i + 1}`, sport: 2100 + i }));
      const first = flows.map((f) => macOf(send(d, f.src, f.sport).data));
      assert.ok(first.includes(MACS['10.1.0.1']));
      known['10.1.0.1'] = '02:00:00:00:01:99';
      assert.deepEqual((await d.sync(table(svc()))).changes, [], 'within the TTL a sync does not look again');
      assert.equal(await d.refreshNeighbours(), true);
      flows.forEach((f, i) => assert.equal(macOf(send(d, f.src, f.sport).data), first[i] === MACS['10.1.0.1'] ? '02:00:00:00:01:99' : first[i], `flow ${i}`));
    } finally {
      await d.close({ keepForwarding: false });
    }
  });

  test('a lookup that fails keeps the last good MAC: no real leaves the ring, nothing is counted unresolved', async () => {
    let fail = false;
    const d = await open({ resolveMac: async (a) => (fail ? null : MACS[a] ?? null) });
    try {
      await d.sync(table(svc()));
      const ring = d.readRing(0);
      fail = true;
      assert.equal(await d.refreshNeighbours(), false);
      assert.deepEqual(d.readRing(0), ring);
      for (let i = 0; i < 30; i++) assert.ok(realOf(send(d, `192.168.22.${i + 1}`, 22).data), 'forwarded to a known MAC');
      assert.equal((await d.stats()).global.nexthop_unresolved, 0);
    } finally {
      await d.close({ keepForwarding: false });
    }
  });

  test('ipip: each real\'s next hop is the gateway of its own route (per family); an unresolved gateway keeps the real out, warned and counted, until it resolves', async () => {
    const gwMacs: Record<string, string> = { '10.0.0.254': '02:00:00:00:fe:04' };
    const warns: string[] = [];
    const logger = { info: () => undefined, warn: (_o: unknown, m?: string) => void warns.push(m ?? '') };
    const d = await open({
      spec: { ...SPEC, gatewayMac: undefined },
      logger,
      route: async (a) => ({ dev: '', ifindex: 0, gateway: a.includes(':') ? 'fe80::1' : '10.0.0.254' }),
      resolveMac: async (a) => gwMacs[a] ?? null,
    });
    try {
      const v6 = svc({ address: '2001:db8::100', mode: 'ipip', reals: [{ address: '2001:db8:1::1', port: 80, weight: 1, state: 'up' }] });
      const r = await d.sync(table(svc({ mode: 'ipip' }), v6));
      assert.equal(macOf(send(d, '192.168.23.1', 23).data), '02:00:00:00:fe:04', 'IPv4 reals: the IPv4 gateway');
      assert.ok(r.changes.some((c) => c.startsWith('!real [2001:db8::100]:80/tcp [2001:db8:1::1]:80: no MAC for its gateway fe80::1')), r.changes.join('; '));
      assert.equal(send(d, '2001:db8:c::1', 23, '2001:db8::100').action, XdpAction.DROP, 'no real with a next hop: the ring is empty');
      assert.ok(warns.some((w) => w.includes('2001:db8:1::1')), warns.join('\n'));
      assert.ok((await d.stats()).global.nexthop_unresolved >= 1);
      gwMacs['fe80::1'] = '02:00:00:00:fe:06';
      assert.equal(await d.refreshNeighbours(), true);
      const out = send(d, '2001:db8:c::1', 23, '2001:db8::100');
      assert.equal(out.action, XdpAction.TX);
      assert.equal(macOf(out.data), '02:00:00:00:fe:06', 'IPv6 reals: the IPv6 gateway');
    } finally {
      await d.close({ keepForwarding: false });
    }
  });

  test('a dsr real reached through a gateway is not on the link: kept out of the ring', async () => {
    const d = await open({ route: async (a) => (a === '10.1.0.3' ? { dev: '', ifindex: 0, gateway: '10.0.0.254' } : { dev: '', ifindex: 0 }) });
    try {
      const r = await d.sync(table(svc()));
      assert.ok(r.changes.some((c) => c.includes('10.1.0.3:80: not on a link of the balancer (route via 10.0.0.254)')), r.changes.join('; '));
      for (let i = 0; i < 60; i++) assert.notEqual(realOf(send(d, `192.168.24.${i + 1}`, 24).data), '10.1.0.3');
    } finally {
      await d.close({ keepForwarding: false });
    }
  });
});

describe('write order', () => {
  /**
   * Runs new flows through the program at every map write of a sync (just before the write): a
   * flow must never be sent to a real whose slot is marked down, nor meet a ring that points at one.
   */
  async function checkWhileSyncing(d: XdpDataplane, next: ServiceTable, tag: number): Promise<number> {
    const n = native();
    const orig = n.mapUpdateBatch;
    const reals = d.map('reals').typed(S.u32key, S.realDef);
    let checks = 0;
    let bad: string | undefined;
    n.mapUpdateBatch = (...args: Parameters<typeof orig>) => {
      const downMacs = new Set(reals.entries().filter(([, def]) => def.flags & S.REAL_F_DOWN).map(([, def]) => macOf(Buffer.concat([def.mac, Buffer.alloc(8)]))));
      for (let i = 0; i < 60 && !bad; i++) {
        const out = d.program.testRun(frame({ src: `10.${tag}.${checks & 0xff}.${i + 1}`, dst: '10.0.0.100', proto: 'tcp', sport: 999, dport: 80, flags: 0x02 }, LB));
        if (out.action === XdpAction.TX && downMacs.has(macOf(out.data))) bad = `a new flow went to ${macOf(out.data)}, marked down`;
        if (out.action === XdpAction.DROP) bad = 'a new flow met a ring slot of a real marked down';
      }
      checks++;
      return orig.apply(n, args);
    };
    try {
      await d.sync(next);
    } finally {
      n.mapUpdateBatch = orig;
    }
    assert.equal(bad, undefined);
    return checks;
  }

  test('a real going down leaves the ring before it is marked down; a removed one too', async () => {
    const d = await open();
    try {
      await d.sync(table(svc()));
      const down = svc({ reals: svc().reals.map((r) => (r.address === '10.1.0.2' ? { ...r, state: 'down' as const } : r)) });
      assert.ok(await checkWhileSyncing(d, table(down), 1) >= 2, 'ring and reals written');
      assert.equal((await d.stats()).global.drop_real_down, 0);
      await d.sync(table(svc()));
      assert.ok(await checkWhileSyncing(d, table(svc({ reals: svc().reals.filter((r) => r.address !== '10.1.0.1') })), 2) >= 2);
      assert.equal((await d.stats()).global.drop_real_down, 0);
    } finally {
      await d.close({ keepForwarding: false });
    }
  });
});

test('encapSource4/6 given as prefixes in a config file: validated, and only their host bits vary in the outer sources', async () => {
  const { validateConfig } = await import('../../src/model/validate.js');
  assert.throws(() => validateConfig({ dataplane: { encapSource4: '10.0.0.0/4' }, vips: [] }), /encapSource4: must be an IPv4 address or prefix/);
  assert.throws(() => validateConfig({ dataplane: { encapSource6: 'fd00::/64' }, vips: [] }), /encapSource6: must be an IPv6 address or prefix/);
  const spec = validateConfig({ dataplane: { encapSource4: '10.44.0.0/28', encapSource6: 'fd44::/124' }, vips: [] }).dataplane;
  const d = await open({ spec: { ...SPEC, encapSource4: spec.encapSource4, encapSource6: spec.encapSource6 }, isOnLink: async () => false });
  try {
    const v6 = svc({ address: '2001:db8::100', mode: 'ipip', reals: [{ address: '2001:db8:1::1', port: 80, weight: 1, state: 'up' }] });
    await d.sync(table(svc({ mode: 'ipip' }), v6));
    const s4 = new Set<string>(), s6 = new Set<string>();
    for (let i = 0; i < 80; i++) {
      s4.add(bytesToIp(send(d, `192.168.30.${i + 1}`, 3000 + i).data.subarray(14 + 12, 14 + 16)));
      s6.add(bytesToIp(send(d, `2001:db8:c::${i + 1}`, 3000 + i, '2001:db8::100').data.subarray(14 + 8, 14 + 24)));
    }
    assert.ok([...s4].every((a) => /^10\.44\.0\.([0-9]|1[0-5])$/.test(a)) && s4.size > 8, [...s4].join(' '));
    assert.ok([...s6].every((a) => /^fd44::[0-9a-f]?$/.test(a)) && s6.size > 8, [...s6].join(' '));
  } finally {
    await d.close({ keepForwarding: false });
  }
});

test('a UDP VIP switched from dsr to nat: a client it knew gets the real\'s replies back from the VIP', async () => {
  const d = await open();
  try {
    const udp = (mode: 'dsr' | 'nat') => svc({ port: 53, protocol: 'udp', mode, reals: [{ address: '10.1.0.1', port: 53, weight: 1, state: 'up' }] });
    const query = frame({ src: '192.168.31.1', dst: '10.0.0.100', proto: 'udp', sport: 5353, dport: 53 }, LB);
    await d.sync(table(udp('dsr')));
    assert.equal(d.program.testRun(query).action, XdpAction.TX);
    await d.sync(table(udp('nat')));
    const q = d.program.testRun(query);
    assert.equal(q.action, XdpAction.TX);
    assert.equal(bytesToIp(q.data.subarray(14 + 16, 14 + 20)), '10.1.0.1', 'the query is NATed to the real');
    const reply = frame({ src: '10.1.0.1', dst: '192.168.31.1', proto: 'udp', sport: 53, dport: 5353 }, { dst: LB.dst, src: MACS['10.1.0.1'] });
    const r = d.program.testRun(reply);
    assert.equal(r.action, XdpAction.TX, 'the reply is rewritten, not passed');
    assert.equal(bytesToIp(r.data.subarray(14 + 12, 14 + 16)), '10.0.0.100', 'from the VIP');
    assert.deepEqual(await d.sync(table(udp('nat'))), { added: 0, updated: 0, removed: 0, changes: [] }, 'and the next sync has nothing to do');
  } finally {
    await d.close({ keepForwarding: false });
  }
});
