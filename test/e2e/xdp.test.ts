/**
 * The XDP data plane end to end on the DESIGN §8 topology: the balancer attached in native mode
 * on the lb's veth, real TCP connections and UDP datagrams from the client, for each mode and
 * both families. The reals decapsulate IPIP with sluice's decap program (this kernel has no ipip).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { unpinAll } from '../../src/bpf/pin.js';
import { DEFAULT_DATAPLANE, type DataplaneSpec, type Mode, type Service, type StatsSnapshot } from '../../src/model/types.js';
import { ADDR4, ADDR6, REALS, Topo, VIP4, VIP6 } from './topo.js';

const COUNT = 1000;
const WEIGHTS: Record<string, number> = { real1: 1, real2: 1, real3: 2 };
const SPEC: DataplaneSpec = { ...DEFAULT_DATAPLANE, kind: 'xdp', maxVips: 8, maxReals: 64, flowTableSize: 65536 };
interface Tally { byReal: Record<string, number>; peers: Record<string, number>; failures: number }

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

before(async () => {
  topo = await Topo.up();
  pinDir = `/sys/fs/bpf/sluice-e2e-${topo.id}`;
  for (const h of REALS) {
    await topo.call(h, 'serve', { name: h, tcpPorts: [80, 8080], udpPorts: [53, 5353], udpAddrs: [VIP4[0], VIP6[0], ADDR4[h], ADDR6[h]] });
    await topo.call(h, 'attach', { source: 'decap', program: 'decap', ifname: 'eth0' });
  }
  await topo.call('lb', 'dpOpen', { spec: SPEC, interface: 'eth0', pinDir });
});

after(async () => {
  await topo?.down();
  if (pinDir) unpinAll(pinDir);
});

describe('XDP balancer end to end', () => {
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
        const tcp = await topo.call<Tally>('client', 'tcpBurst', { host: vip, port: 80, count: COUNT, concurrency: 24 });
        const udp = await topo.call<Tally>('client', 'udpBurst', { host: vip, port: 53, count: COUNT, concurrency: 24 });
        const after = await stats();
        assert.equal(tcp.failures, 0, 'TCP connections that failed');
        assert.equal(udp.failures, 0, 'UDP datagrams unanswered');
        assertShares(tcp, 'TCP');
        assertShares(udp, 'UDP');
        const client = fam === 4 ? ADDR4.client : ADDR6.client;
        assert.deepEqual(Object.keys(tcp.peers), [client], 'the reals see the client\'s address');
        assert.deepEqual(Object.keys(udp.peers), [client], 'the reals see the client\'s address (UDP)');
        const delta = (k: string) => after.global[k] - before.global[k];
        if (mode === 'nat') {
          assert.ok(delta('nat_reply') >= 2 * COUNT, `replies rewritten by the lb: ${delta('nat_reply')}`);
        } else {
          // Replies go from the reals straight to the client: the lb sees (almost) none of them.
          assert.ok(delta('pass_not_vip') < COUNT / 10, `packets to non-VIPs seen by the lb: ${delta('pass_not_vip')}`);
          assert.equal(delta('nat_reply'), 0);
        }
        const vs = after.vips.find((v) => v.key.endsWith('/tcp'))!;
        assert.ok(vs.newFlows - (before.vips.find((v) => v.key === vs.key)?.newFlows ?? 0) >= COUNT, 'a new flow per connection');
      } finally {
        if (mode === 'nat') topo.routeRepliesViaLb(false);
      }
    });
  }

  test('a removed real gets no new flows while the connections of the others stay up', async () => {
    await topo.call('lb', 'dpSync', { table: { services: services('dsr', 4) } });
    const names = await topo.call<string[]>('client', 'hold', { host: VIP4[0], port: 80, count: 40 });
    assert.ok(names.includes('real3') && names.includes('real1'), `held connections: ${names.join(',')}`);
    try {
      await topo.call('lb', 'dpSync', { table: { services: services('dsr', 4, ['real1', 'real2']) } });
      const pings = await topo.call<Array<{ name: string; answer: string | null }>>('client', 'pingHeld', {});
      for (const p of pings) if (p.name !== 'real3') assert.equal(p.answer, p.name, 'a connection to a remaining real still answers from it');
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
      const pings = await topo.call<Array<{ name: string; answer: string | null }>>('client', 'pingHeld', {});
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
