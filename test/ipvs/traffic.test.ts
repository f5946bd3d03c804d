/**
 * Real TCP connections through IPVS programmed by IpvsDataplane, in namespaces inside the VM:
 * DR (the reals hold the VIP), NAT (the reals route back through the balancer, on another
 * port), and IPIP tunnel (the reals decapsulate with the kernel's ipip module).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Mode, Service, ServiceReal } from '../../src/model/types.js';
import { IpvsDataplane } from '../../src/dataplane/ipvs/index.js';
import { readFileSync } from 'node:fs';
import { admDest, admService, assertIpvsHost, inNs, sh, topology, type Held, type Topology } from './support.js';

const N = 2; // this file's subnets: 10.98.2.0/24, 10.99.2.0/24; VIPs 10.102.0.x
const REQUESTS = 24;

let topo: Topology;
let dp: IpvsDataplane;
before(async () => {
  assertIpvsHost();
  topo = topology(N);
  for (const v of ['10.102.0.1', '10.102.0.2', '10.102.0.3', '10.102.0.4', '10.102.0.5', '10.102.0.6', '10.102.0.7', '10.102.0.8', 'fd00:102::1', 'fd00:102::2']) topo.addVip(v);
  topo.serve(80);
  topo.serve(8080);
  topo.serveEcho(9000);
  dp = await IpvsDataplane.open({});
});
after(async () => {
  await dp?.close({ keepForwarding: false });
  topo?.destroy();
});

function svc(address: string, mode: Mode, reals: Array<Partial<ServiceReal>> = [{}, {}]): Service {
  return {
    address, port: 80, protocol: 'tcp', mode, hash: '5tuple', scheduler: 'mh',
    reals: reals.map((r, i) => ({ address: topo.reals[i].address, port: mode === 'nat' ? 8080 : 80, weight: 1, state: 'up', ...r })),
  };
}

function assertServedByBoth(t: Map<string, number>): void {
  assert.deepEqual([...t.keys()].sort(), ['real1', 'real2'], `answers: ${JSON.stringify([...t])}`);
  assert.equal((t.get('real1') ?? 0) + (t.get('real2') ?? 0), REQUESTS);
}

test('DR: every connection to the VIP is answered, by both reals', async () => {
  await dp.sync({ services: [svc('10.102.0.1', 'dsr')] });
  assertServedByBoth(topo.getMany('10.102.0.1', 80, REQUESTS));
});

test('NAT: connections to VIP:80 reach the reals on port 8080 and come back', async () => {
  await dp.sync({ services: [svc('10.102.0.2', 'nat')] });
  assert.equal(admDest(admService('tcp', '10.102.0.2', 80), topo.reals[0].address, 8080)?.fwd, 'Masq');
  assertServedByBoth(topo.getMany('10.102.0.2', 80, REQUESTS));
});

test('tunnel: connections reach reals that decapsulate IPIP on tunl0', async () => {
  await dp.sync({ services: [svc('10.102.0.3', 'ipip')] });
  assertServedByBoth(topo.getMany('10.102.0.3', 80, REQUESTS));
});

test('a real marked down gets no new connections; the other takes them all', async () => {
  await dp.sync({ services: [svc('10.102.0.1', 'dsr', [{ state: 'down' }, {}])] });
  assert.equal(admDest(admService('tcp', '10.102.0.1', 80), topo.reals[0].address, 80)?.weight, 0);
  const t = topo.getMany('10.102.0.1', 80, REQUESTS);
  assert.deepEqual([...t], [['real2', REQUESTS]]);
});

test('stats count the connections per VIP and per real', async () => {
  // A VIP no earlier test used: IPVS would fold a connection from a reused client port into its
  // old entry (conn_reuse_mode) and not count it as new.
  await dp.sync({ services: [svc('10.102.0.4', 'nat')] });
  const before = (await dp.stats()).vips.find((v) => v.key === '10.102.0.4:80/tcp')?.newFlows ?? 0;
  const t = topo.getMany('10.102.0.4', 80, 10);
  assert.equal((t.get('real1') ?? 0) + (t.get('real2') ?? 0), 10, JSON.stringify([...t]));
  // IPVS folds its per-CPU counters into the totals it reports every 2 s (the rate estimator's
  // timer): poll, bounded, until they show the connections.
  let v;
  for (const deadline = Date.now() + 8000; ;) {
    v = (await dp.stats()).vips.find((x) => x.key === '10.102.0.4:80/tcp');
    if ((v && v.newFlows - before >= 10) || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.ok(v);
  assert.equal(v.newFlows - before, 10);
  assert.ok(v.packets > 0 && v.bytes > 0, 'packets and bytes counted');
  assert.equal(v.reals.reduce((s, r) => s + r.newFlows, 0), v.newFlows);
});

test('a port-0 VIP in DR mode takes connections on every port', async () => {
  const s = svc('10.102.0.5', 'dsr');
  await dp.sync({ services: [{ ...s, port: 0, reals: s.reals.map((r) => ({ ...r, port: 0 })) }] });
  const t80 = topo.getMany('10.102.0.5', 80, 6);
  const t8080 = topo.getMany('10.102.0.5', 8080, 6);
  const answered = (t: Map<string, number>) => (t.get('real1') ?? 0) + (t.get('real2') ?? 0);
  assert.deepEqual([answered(t80), answered(t8080)], [6, 6], JSON.stringify([[...t80], [...t8080]]));
});

test('tunnel to IPv6 reals: IPv6 in IPv6, and IPv4 in IPv6 once ip6tnl0 takes any inner protocol', async () => {
  // The ip6_tunnel module's fallback device decapsulates IPv6 in IPv6 only (mode ip6ip6), and
  // drops the IPv4 in IPv6 that IPVS sends an IPv6 real of an IPv4 VIP: docs/ipvs.md says to
  // set it to mode any.
  for (const r of topo.reals) {
    inNs(r.ns, 'ip', 'link', 'set', 'ip6tnl0', 'up');
    inNs(r.ns, 'ip', '-6', 'tunnel', 'change', 'ip6tnl0', 'mode', 'any');
  }
  const v6 = (address: string): Service => {
    const s = svc(address, 'ipip');
    return { ...s, reals: s.reals.map((r, i) => ({ ...r, address: topo.reals[i].address6 })) };
  };
  await dp.sync({ services: [v6('fd00:102::2'), v6('10.102.0.8')] });
  assert.equal(admService('tcp', '10.102.0.8', 80)?.dests.every((d) => d.fwd === 'Tunnel' && d.address.includes(':')), true);
  assertServedByBoth(topo.getMany('fd00:102::2', 80, REQUESTS));
  assertServedByBoth(topo.getMany('10.102.0.8', 80, REQUESTS));
});

test('IPv6 DR: connections to an IPv6 VIP reach both reals', async () => {
  const s = svc('fd00:102::1', 'dsr');
  await dp.sync({ services: [{ ...s, reals: s.reals.map((r, i) => ({ ...r, address: topo.reals[i].address6 })) }] });
  assert.equal(admService('tcp', 'fd00:102::1', 80)?.dests.length, 2);
  assertServedByBoth(topo.getMany('fd00:102::1', 80, REQUESTS));
});

/**
 * Sync `s` with both reals up, open a connection to `port` that stays open, then drain the real
 * it reached: the held connection and the name of the other real.
 */
async function holdThenDrain(s: Service, port: number): Promise<{ held: Held; other: string }> {
  await dp.sync({ services: [s] });
  const held = await topo.hold(s.address, port);
  const i = topo.reals.findIndex((r) => r.name === held.real);
  assert.ok(i >= 0, `held connection greeted by ${held.real}`);
  await dp.sync({ services: [{ ...s, reals: s.reals.map((r, j) => (j === i ? { ...r, state: 'drain' as const } : r)) }] });
  return { held, other: topo.reals[1 - i].name };
}

test('a drained real keeps its open connection and gets no new ones', async () => {
  const s = svc('10.102.0.6', 'dsr');
  const { held, other } = await holdThenDrain({ ...s, port: 9000, reals: s.reals.map((r) => ({ ...r, port: 9000 })) }, 9000);
  try {
    const fresh: string[] = [];
    for (let i = 0; i < 6; i++) { const h = await topo.hold('10.102.0.6', 9000); fresh.push(h.real); h.close(); }
    assert.deepEqual(fresh, Array(6).fill(other));
    assert.equal(await held.echo('still there'), 'still there');
  } finally {
    held.close();
  }
});

test('a port-0 VIP sends no new connections to a drained real, not even from a client it holds a connection of', async () => {
  // The kernel's default: IPVS then keeps using a persistence template whose real is at weight 0.
  sh('sysctl', '-qw', 'net.ipv4.vs.expire_quiescent_template=0');
  const s = svc('10.102.0.7', 'dsr');
  // The client's persistence template names the real of the held connection, and lives as long as it.
  const { held, other } = await holdThenDrain({ ...s, port: 0, reals: s.reals.map((r) => ({ ...r, port: 0 })) }, 9000);
  try {
    const t = topo.getMany('10.102.0.7', 80, 6);
    assert.deepEqual([...t], [[other, 6]]);
    assert.equal(readFileSync('/proc/sys/net/ipv4/vs/expire_quiescent_template', 'utf8').trim(), '1');
    assert.equal(await held.echo('still there'), 'still there');
  } finally {
    held.close();
  }
});
