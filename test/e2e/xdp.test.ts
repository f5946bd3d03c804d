/**
 * The XDP data plane end to end on the DESIGN §8 topology: the balancer attached in native mode
 * on the lb's veth, real TCP connections and UDP datagrams from the client, for each mode and
 * both families; then on a two-arm topology (clients on one interface of the balancer, reals on
 * another). The reals decapsulate IPIP with sluice's decap program (this kernel has no ipip).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { unpinAll } from '../../src/bpf/pin.js';
import { DEFAULT_DATAPLANE, type DataplaneSpec, type Mode, type Service, type StatsSnapshot } from '../../src/model/types.js';
import { ADDR4, ADDR6, ARM4, ARM6, ARM_MAC, ARM_REALS, ARM_VIP4, ARM_VIP6, MAC, REALS, Topo, TwoArmTopo, VIP4, VIP6 } from './topo.js';

const COUNT = 1000;
const WEIGHTS: Record<string, number> = { real1: 1, real2: 1, real3: 2 };
const SPEC: DataplaneSpec = { ...DEFAULT_DATAPLANE, kind: 'xdp', maxVips: 8, maxReals: 64, flowTableSize: 65536 };
interface Tally { byReal: Record<string, number>; peers: Record<string, number>; failures: number }
type Ping = { name: string; answer: string | null; error: string | null };
const MB = 1024 * 1024;

let topo: Topo;
let pinDir: string;

function services(mode: Mode, fam: 4 | 6, reals: readonly string[] = REALS): Service[] {
  const vip = fam === 4 ? VIP4[0] : VIP6[0];
  const addr = fam === 4 ? ADDR4 : ADDR6;
  return (['tcp', 'udp'] as const).map((protocol) => ({
    address: vip, port: protocol === 'tcp' ? 80 : 53, protocol, mode, hash: '5tuple', scheduler: 'mh',
    reals: reals.map((h) => ({
      address: addr[h as keyof typeof addr],
      port: mode === 'nat' ? (protocol === 'tcp' ? 8080 : 5353) : protocol === 'tcp' ? 80 : 53,
      weight: WEIGHTS[h], state: 'up' as const,
    })),
  }));
}

function assertShares(t: Tally, what: string): void {
  const total = Object.values(t.byReal).reduce((a, b) => a + b, 0);
  const wsum = Object.values(WEIGHTS).reduce((a, b) => a + b, 0);
  for (const h of REALS) {
    const want = (total * WEIGHTS[h]) / wsum;
    const got = t.byReal[h] ?? 0;
    assert.ok(Math.abs(got - want) <= 0.2 * want, `${what}: ${h} got ${got} of ${total}, want ${want.toFixed(0)} ±20% (${JSON.stringify(t.byReal)})`);
  }
}

const stats = () => topo.call<StatsSnapshot>('lb', 'dpStats');

/** Frames whose source is `from`, counted at the client by source MAC while `fn` runs. */
async function sourcesSeen<T>(t: { call<R = any>(h: 'client', op: string, args?: Record<string, unknown>): Promise<R> }, from: string, fn: () => Promise<T>): Promise<{ result: T; macs: Record<string, number> }> {
  await t.call('client', 'attachCounter', { ifname: 'eth0', addr: from });
  try {
    const result = await fn();
    return { result, macs: await t.call<Record<string, number>>('client', 'readCounter') };
  } finally {
    await t.call('client', 'detachCounter');
  }
}

describe('XDP balancer end to end', () => {
  before(async () => {
    topo = await Topo.up();
    pinDir = `/sys/fs/bpf/sluice-e2e-${topo.id}`;
    for (const h of REALS) {
      await topo.call(h, 'serve', { name: h, tcpPorts: [80, 8080], sinkPorts: [9000], udpPorts: [53, 5353], udpAddrs: [VIP4[0], VIP6[0], ADDR4[h], ADDR6[h]] });
      await topo.call(h, 'attach', { source: 'decap', program: 'decap', ifname: 'eth0' });
    }
    await topo.call('lb', 'dpOpen', { spec: SPEC, interface: 'eth0', pinDir });
  });

  after(async () => {
    await topo?.down();
    if (pinDir) unpinAll(pinDir);
  });

  for (const fam of [4, 6] as const) {
    test(`nat IPv${fam}: a UDP client of a real with nothing listening gets "connection refused", as from the VIP`, async () => {
      topo.routeRepliesViaLb(true);
      try {
        const vip = fam === 4 ? VIP4[0] : VIP6[0];
        const addr = fam === 4 ? ADDR4 : ADDR6;
        const closed: Service = { address: vip, port: 54, protocol: 'udp', mode: 'nat', hash: '5tuple', scheduler: 'mh',
          reals: REALS.map((h) => ({ address: addr[h], port: 5999, weight: 1, state: 'up' as const })) };
        await topo.call('lb', 'dpSync', { table: { services: [...services('nat', fam), closed] } });
        const before = await stats();
        assert.equal(await topo.call<string>('client', 'udpConnected', { host: vip, port: 54 }), 'ECONNREFUSED');
        assert.match(await topo.call<string>('client', 'udpConnected', { host: vip, port: 53 }), /^answer real\d/, 'the VIP\'s listening port still answers');
        const after = await stats();
        assert.ok(after.global.icmp_fwd - before.global.icmp_fwd >= 1, 'the real\'s ICMP error was rewritten by the lb');
      } finally {
        topo.routeRepliesViaLb(false);
      }
    });
  }

  test('the balancer is attached to the lb\'s veth in native (driver) mode', () => {
    const link = JSON.parse(topo.exec('lb', 'ip', ['-j', '-d', 'link', 'show', 'dev', 'eth0']))[0];
    assert.equal(link.xdp?.mode, 1, `xdp: ${JSON.stringify(link.xdp)}`); /* XDP_ATTACHED_DRV */
    assert.equal(link.xdp?.prog?.name, 'balancer');
  });

  for (const mode of ['dsr', 'ipip', 'nat'] as const) for (const fam of [4, 6] as const) {
    test(`${mode} IPv${fam}: ${COUNT} TCP connections and ${COUNT} UDP datagrams spread over the reals by weight (±20%)`, async () => {
      if (mode === 'nat') topo.routeRepliesViaLb(true);
      try {
        await topo.call('lb', 'dpSync', { table: { services: services(mode, fam) } });
        const vip = fam === 4 ? VIP4[0] : VIP6[0];
        const before = await stats();
        const { result: [tcp, udp], macs } = await sourcesSeen(topo, vip, async () => [
          await topo.call<Tally>('client', 'tcpBurst', { host: vip, port: 80, count: COUNT, concurrency: 24 }),
          await topo.call<Tally>('client', 'udpBurst', { host: vip, port: 53, count: COUNT, concurrency: 24 }),
        ]);
        const after = await stats();
        assert.equal(tcp.failures, 0, 'TCP connections that failed');
        assert.equal(udp.failures, 0, 'UDP datagrams unanswered');
        assertShares(tcp, 'TCP');
        assertShares(udp, 'UDP');
        const client = fam === 4 ? ADDR4.client : ADDR6.client;
        assert.deepEqual(Object.keys(tcp.peers), [client], 'the reals see the client\'s address');
        assert.deepEqual(Object.keys(udp.peers), [client], 'the reals see the client\'s address (UDP)');
        const delta = (k: string) => after.global[k] - before.global[k];
        // Every frame from the VIP that reached the client, by the MAC it came from.
        const fromMacs = Object.keys(macs).sort();
        const total = Object.values(macs).reduce((a, b) => a + b, 0);
        assert.ok(total >= 2 * COUNT, `frames from the VIP at the client: ${total}`);
        if (mode === 'nat') {
          assert.ok(delta('nat_reply') >= 2 * COUNT, `replies rewritten by the lb: ${delta('nat_reply')}`);
          assert.deepEqual(fromMacs, [MAC.lb], 'NAT replies come back through the lb, and only through it');
        } else {
          // Replies go from the reals straight to the client: not one of them crosses the lb.
          assert.deepEqual(fromMacs, REALS.map((h) => MAC[h]).sort(), `replies by source MAC: ${JSON.stringify(macs)}`);
          assert.equal(delta('nat_reply'), 0);
        }
        const vs = after.vips.find((v) => v.key.endsWith('/tcp'))!;
        assert.ok(vs.newFlows - (before.vips.find((v) => v.key === vs.key)?.newFlows ?? 0) >= COUNT, 'a new flow per connection');
      } finally {
        if (mode === 'nat') topo.routeRepliesViaLb(false);
      }
    });
  }

  for (const fam of [4, 6] as const) {
    test(`ipip IPv${fam}: a 1 MB upload through the VIP completes: full-size segments are answered with ICMP too big and the client's path MTU follows`, async () => {
      const addr = fam === 4 ? ADDR4 : ADDR6;
      const vip = fam === 4 ? VIP4[0] : VIP6[0];
      const svc: Service = {
        address: vip, port: 9000, protocol: 'tcp', mode: 'ipip', hash: '5tuple', scheduler: 'mh',
        reals: REALS.map((h) => ({ address: addr[h], port: 9000, weight: 1, state: 'up' as const })),
      };
      await topo.call('lb', 'dpSync', { table: { services: [svc] } });
      const before = await stats();
      const up = await topo.call<{ name: string; received: number; ms: number }>('client', 'upload', { host: vip, port: 9000, bytes: MB, timeoutMs: 30000 });
      const after = await stats();
      assert.equal(up.received, MB, `bytes the real counted (${JSON.stringify(up)})`);
      assert.ok((REALS as readonly string[]).includes(up.name));
      assert.ok(after.global.icmp_too_big > before.global.icmp_too_big, 'the balancer answered too-big segments');
      assert.equal(after.global.drop_too_big, before.global.drop_too_big, 'TCP sets DF: nothing too big was dropped unanswered');
    });
  }

  test('a removed real gets no new flows while the connections of the others stay up', async () => {
    await topo.call('lb', 'dpSync', { table: { services: services('dsr', 4) } });
    const names = await topo.call<string[]>('client', 'hold', { host: VIP4[0], port: 80, count: 40 });
    assert.ok(names.includes('real3') && names.includes('real1'), `held connections: ${names.join(',')}`);
    try {
      await topo.call('lb', 'dpSync', { table: { services: services('dsr', 4, ['real1', 'real2']) } });
      const pings = await topo.call<Ping[]>('client', 'pingHeld', {});
      for (const p of pings) {
        if (p.name !== 'real3') assert.deepEqual(p, { name: p.name, answer: p.name, error: null }, 'a connection to a remaining real still answers from it');
        // Its next packet is re-chosen onto a remaining real, which knows no such connection: reset.
        else assert.deepEqual(p, { name: 'real3', answer: null, error: 'ECONNRESET' }, 'a connection to the removed real is reset');
      }
      const fresh = await topo.call<Tally>('client', 'tcpBurst', { host: VIP4[0], port: 80, count: 300, concurrency: 16 });
      assert.equal(fresh.failures, 0);
      assert.equal(fresh.byReal.real3 ?? 0, 0, 'no new connection reaches the removed real');
      assert.ok((fresh.byReal.real1 ?? 0) > 100 && (fresh.byReal.real2 ?? 0) > 100, JSON.stringify(fresh.byReal));
    } finally {
      await topo.call('client', 'closeHeld');
    }
  });

  test('a restart keeps forwarding and the flows; a new program build is swapped in atomically', async () => {
    await topo.call('lb', 'dpSync', { table: { services: services('dsr', 4) } });
    const names = await topo.call<string[]>('client', 'hold', { host: VIP4[0], port: 80, count: 30 });
    try {
      await topo.call('lb', 'dpClose', { keepForwarding: true });
      const meanwhile = await topo.call<Tally>('client', 'tcpBurst', { host: VIP4[0], port: 80, count: 200, concurrency: 16 });
      assert.equal(meanwhile.failures, 0, 'connections while no agent runs');
      const reopened = await topo.call<{ adopted: boolean; upgraded: boolean }>('lb', 'dpOpen', { spec: SPEC, interface: 'eth0', pinDir });
      assert.deepEqual(reopened, { ...reopened, adopted: true, upgraded: false });
      const upgraded = await topo.call<{ adopted: boolean; upgraded: boolean }>('lb', 'dpClose', { keepForwarding: true })
        .then(() => topo.call('lb', 'dpOpen', { spec: SPEC, interface: 'eth0', pinDir, defines: { HASH_SEED: '0x0badf00du' } }));
      assert.equal(upgraded.upgraded, true);
      const report = await topo.call('lb', 'dpSync', { table: { services: services('dsr', 4) } });
      assert.deepEqual([report.added, report.updated, report.removed], [0, 0, 0]);
      const pings = await topo.call<Ping[]>('client', 'pingHeld', {});
      assert.deepEqual(pings.map((p) => p.answer), names, 'every held connection answers from its real');
    } finally {
      await topo.call('client', 'closeHeld');
    }
  });

  test('a port-0 src-ip VIP: every connection of the client, to any port, lands on one real', async () => {
    const reals = REALS.map((h) => ({ address: ADDR4[h], port: 0, weight: 1, state: 'up' as const }));
    await topo.call('lb', 'dpSync', { table: { services: [{ address: VIP4[1], port: 0, protocol: 'tcp', mode: 'dsr', hash: 'src-ip', scheduler: 'mh', reals }] } });
    const to80 = await topo.call<Tally>('client', 'tcpBurst', { host: VIP4[1], port: 80, count: 150, concurrency: 16 });
    const to8080 = await topo.call<Tally>('client', 'tcpBurst', { host: VIP4[1], port: 8080, count: 150, concurrency: 16 });
    assert.equal(to80.failures + to8080.failures, 0);
    const names = new Set([...Object.keys(to80.byReal), ...Object.keys(to8080.byReal)]);
    assert.equal(names.size, 1, `reals reached: ${[...names].join(', ')}`);
  });

  test('a real whose MAC changes is sent to its new MAC after refreshes, though nothing but XDP talks to it', async () => {
    await topo.call('lb', 'dpSync', { table: { services: services('dsr', 4) } });
    // Short neighbour timers on the lb, so that a probe of a MAC that is gone fails within about a second.
    const knob = (k: string) => `net.ipv4.neigh.eth0.${k}`;
    const timers: Record<string, string> = { delay_first_probe_time: '1', retrans_time_ms: '100' };
    const saved = Object.fromEntries(Object.keys(timers).map((k) => [k, topo.exec('lb', 'sysctl', ['-n', knob(k)]).trim()]));
    for (const [k, v] of Object.entries(timers)) topo.exec('lb', 'sysctl', ['-qw', `${knob(k)}=${v}`]);
    const burst = () => topo.call<Tally>('client', 'tcpBurst', { host: VIP4[0], port: 80, count: 60, concurrency: 8, timeoutMs: 500 });
    try {
      assert.ok(((await burst()).byReal.real1 ?? 0) > 0, 'real1 reached before its MAC changes');
      topo.exec('real1', 'ip', ['link', 'set', 'dev', 'eth0', 'address', '02:99:00:00:01:03']);
      // Where the kernel leaves an entry once its reachable time (15-45 s) is over, when nothing of
      // its own was sent through it: STALE, with the MAC it had. XDP's frames never move it from there.
      topo.exec('lb', 'ip', ['neigh', 'replace', ADDR4.real1, 'lladdr', MAC.real1, 'dev', 'eth0', 'nud', 'stale']);
      let reached = 0;
      for (let i = 0; i < 6 && !reached; i++) {
        await new Promise((r) => setTimeout(r, 2000));
        await topo.call('lb', 'dpRefresh');
        reached = (await burst()).byReal.real1 ?? 0;
      }
      assert.ok(reached > 0, 'real1 is reached at its new MAC within 6 refreshes');
    } finally {
      topo.exec('real1', 'ip', ['link', 'set', 'dev', 'eth0', 'address', MAC.real1]);
      for (const [k, v] of Object.entries(saved)) topo.exec('lb', 'sysctl', ['-qw', `${knob(k)}=${v}`]);
      // The lb learns the old MAC again: forget the entry, and a refresh probes for it.
      try { topo.exec('lb', 'ip', ['neigh', 'del', ADDR4.real1, 'dev', 'eth0']); } catch { /* already gone */ }
      await topo.call('lb', 'dpRefresh');
    }
  });

  test('generic XDP mode forwards too (dsr, IPv4)', async () => {
    await topo.call('lb', 'dpClose', { keepForwarding: false });
    try {
      await topo.call('lb', 'dpOpen', { spec: { ...SPEC, xdpMode: 'generic' }, interface: 'eth0', pinDir });
      await topo.call('lb', 'dpSync', { table: { services: services('dsr', 4) } });
      const tcp = await topo.call<Tally>('client', 'tcpBurst', { host: VIP4[0], port: 80, count: 300, concurrency: 16 });
      assert.equal(tcp.failures, 0);
      assert.equal(Object.keys(tcp.byReal).length, 3, JSON.stringify(tcp.byReal));
    } finally {
      await topo.call('lb', 'dpClose', { keepForwarding: false });
      await topo.call('lb', 'dpOpen', { spec: SPEC, interface: 'eth0', pinDir });
    }
  });
});

describe('XDP balancer with two arms (clients on eth0, reals behind eth1)', () => {
  let arms: TwoArmTopo;
  let armPin: string;
  const armStats = () => arms.call<StatsSnapshot>('lb', 'dpStats');
  const N = 300;
  const armServices = (mode: Mode, fam: 4 | 6): Service[] => (['tcp', 'udp'] as const).map((protocol) => ({
    address: fam === 4 ? ARM_VIP4 : ARM_VIP6, port: protocol === 'tcp' ? 80 : 53, protocol, mode, hash: '5tuple', scheduler: 'mh',
    reals: ARM_REALS.map((h) => ({
      address: (fam === 4 ? ARM4 : ARM6)[h],
      port: mode === 'nat' ? (protocol === 'tcp' ? 8080 : 5353) : protocol === 'tcp' ? 80 : 53,
      weight: 1, state: 'up' as const,
    })),
  }));
  const xdpOn = (dev: string) => JSON.parse(arms.exec('lb', 'ip', ['-j', '-d', 'link', 'show', 'dev', dev]))[0].xdp;
  /** N TCP connections and N UDP datagrams from the client to the VIP; none may fail. Stats around them, and the source MACs of the replies. */
  const armTraffic = async (fam: 4 | 6) => {
    const vip = fam === 4 ? ARM_VIP4 : ARM_VIP6;
    const before = await armStats();
    const { result: [tcp, udp], macs } = await sourcesSeen(arms, vip, async () => [
      await arms.call<Tally>('client', 'tcpBurst', { host: vip, port: 80, count: N, concurrency: 16 }),
      await arms.call<Tally>('client', 'udpBurst', { host: vip, port: 53, count: N, concurrency: 16 }),
    ]);
    const after = await armStats();
    assert.equal(tcp.failures + udp.failures, 0, `failures: ${JSON.stringify({ tcp, udp })}`);
    return { tcp, udp, macs, before, after };
  };

  before(async () => {
    arms = await TwoArmTopo.up();
    armPin = `/sys/fs/bpf/sluice-e2e2-${arms.id}`;
    for (const h of ARM_REALS) {
      await arms.call(h, 'serve', { name: h, tcpPorts: [80, 8080], sinkPorts: [9000], udpPorts: [53, 5353], udpAddrs: [ARM_VIP4, ARM_VIP6, ARM4[h], ARM6[h]] });
      await arms.call(h, 'attach', { source: 'decap', program: 'decap', ifname: 'eth0' });
    }
    await arms.call('lb', 'dpOpen', { spec: SPEC, interface: 'eth0', pinDir: armPin });
  });

  after(async () => {
    await arms?.down();
    if (armPin) unpinAll(armPin);
  });

  for (const fam of [4, 6] as const) {
    test(`nat IPv${fam}: requests leave by eth1 (XDP_REDIRECT), replies arriving on eth1 go back out of eth0 with its MAC`, async () => {
      arms.routeRealsVia('lb');
      try {
        const report = await arms.call('lb', 'dpSync', { table: { services: armServices('nat', fam) } });
        assert.ok(!report.changes.some((c: string) => c.startsWith('!')), report.changes.join('; '));
        assert.deepEqual(await arms.call('lb', 'dpEgress'), { eth1: 1 }, 'eth1 is tx port 1');
        assert.equal(xdpOn('eth1')?.prog?.name, 'balancer', 'the balancer runs on the egress interface too');
        const { tcp, udp, macs, before, after } = await armTraffic(fam);
        assert.deepEqual(Object.keys(tcp.byReal).sort(), [...ARM_REALS]);
        assert.deepEqual(Object.keys(udp.peers), [(fam === 4 ? ARM4 : ARM6).client], 'the reals see the client\'s address');
        assert.ok(after.global.nat_reply - before.global.nat_reply >= 2 * N, 'replies rewritten');
        assert.deepEqual(Object.keys(macs), [ARM_MAC.lb0], `replies by source MAC: ${JSON.stringify(macs)}`);
      } finally {
        arms.routeRealsVia('router');
      }
    });

    test(`dsr IPv${fam}: requests leave by eth1 with eth1's MAC; replies reach the client through the router, none through the lb`, async () => {
      await arms.call('lb', 'dpSync', { table: { services: armServices('dsr', fam) } });
      const { udp, macs, before, after } = await armTraffic(fam);
      assert.deepEqual(Object.keys(udp.byReal).sort(), [...ARM_REALS]);
      assert.deepEqual(Object.keys(macs), [ARM_MAC.router0], `replies by source MAC: ${JSON.stringify(macs)}`);
      assert.equal(after.global.nat_reply - before.global.nat_reply, 0);
    });
  }

  test('ipip IPv4: a 1 MB upload to a real behind eth1 completes (eth1\'s MTU is the one checked)', async () => {
    const svc: Service = {
      address: ARM_VIP4, port: 9000, protocol: 'tcp', mode: 'ipip', hash: '5tuple', scheduler: 'mh',
      reals: ARM_REALS.map((h) => ({ address: ARM4[h], port: 9000, weight: 1, state: 'up' as const })),
    };
    arms.exec('lb', 'ip', ['link', 'set', 'eth1', 'mtu', '1400']);
    try {
      await arms.call('lb', 'dpSync', { table: { services: [svc] } });
      const before = await armStats();
      const up = await arms.call<{ name: string; received: number }>('client', 'upload', { host: ARM_VIP4, port: 9000, bytes: MB, timeoutMs: 30000 });
      const after = await armStats();
      assert.equal(up.received, MB);
      assert.ok(after.global.icmp_too_big > before.global.icmp_too_big);
      const pmtu = arms.exec('client', 'ip', ['-j', 'route', 'get', ARM_VIP4]);
      assert.equal(JSON.parse(pmtu)[0].metrics?.[0]?.mtu ?? JSON.parse(pmtu)[0].mtu, 1380, `the client's path MTU to the VIP: ${pmtu}`);
    } finally {
      arms.exec('lb', 'ip', ['link', 'set', 'eth1', 'mtu', '1500']);
    }
  });

  test('a restart adopts the egress attachment: NAT across the arms forwards with no agent and after it is back', async () => {
    arms.routeRealsVia('lb');
    try {
      const table = { services: armServices('nat', 4) };
      await arms.call('lb', 'dpSync', { table });
      const names = await arms.call<string[]>('client', 'hold', { host: ARM_VIP4, port: 80, count: 12 });
      assert.deepEqual([...new Set(names)].sort(), [...ARM_REALS]);
      await arms.call('lb', 'dpClose', { keepForwarding: true });
      assert.equal(xdpOn('eth1')?.prog?.name, 'balancer', 'still attached to eth1 with no agent');
      let pings = await arms.call<Ping[]>('client', 'pingHeld', {});
      assert.deepEqual(pings.map((p) => p.answer), names, 'held connections answer with no agent');
      const reopened = await arms.call<{ adopted: boolean }>('lb', 'dpOpen', { spec: SPEC, interface: 'eth0', pinDir: armPin });
      assert.equal(reopened.adopted, true);
      assert.deepEqual(await arms.call('lb', 'dpEgress'), { eth1: 1 });
      const report = await arms.call('lb', 'dpSync', { table });
      assert.deepEqual([report.added, report.updated, report.removed], [0, 0, 0], report.changes.join('; '));
      pings = await arms.call<Ping[]>('client', 'pingHeld', {});
      assert.deepEqual(pings.map((p) => p.answer), names, 'and after the restart');
    } finally {
      await arms.call('client', 'closeHeld');
      arms.routeRealsVia('router');
    }
  });

  test('closing the data plane detaches it from the egress interface too', async () => {
    await arms.call('lb', 'dpClose', { keepForwarding: false });
    assert.equal(xdpOn('eth1'), undefined);
    assert.equal(xdpOn('eth0'), undefined);
  });
});
