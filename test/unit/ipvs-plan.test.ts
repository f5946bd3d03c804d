/**
 * How a ServiceTable becomes IPVS services and destinations, and the diff sluice applies:
 * minimal, idempotent, and never touching a service sluice does not own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Service, ServiceReal } from '../../src/model/types.js';
import { type ActualService, plan, toIpvs } from '../../src/dataplane/ipvs/plan.js';
import { SvcFlag, type IpvsService } from '../../src/dataplane/ipvs/protocol.js';

function real(address: string, o: Partial<ServiceReal> = {}): ServiceReal {
  return { address, port: 80, weight: 1, state: 'up', ...o };
}
function service(o: Partial<Service> = {}): Service {
  return { address: '10.99.100.1', port: 80, protocol: 'tcp', mode: 'dsr', hash: '5tuple', scheduler: 'mh', reals: [real('10.99.0.11'), real('10.99.0.12')], ...o };
}
/** What the kernel would hold after programming these services. */
function kernelOf(...ss: Service[]): ActualService[] {
  return ss.map((s) => { const d = toIpvs(s); return { svc: d.svc, dests: d.dests }; });
}
const foreign: ActualService = {
  svc: { address: '192.0.2.1', port: 25, protocol: 'tcp', scheduler: 'wlc', flags: 0, timeout: 0, netmask: 0xffffffff } as IpvsService,
  dests: [{ address: '192.0.2.10', port: 25, fwd: 'masq', weight: 1, upperThreshold: 0, lowerThreshold: 0 }],
};

test('the default scheduler is mh, hashing the 5-tuple (mh-port) with fallback', () => {
  const { svc } = toIpvs(service());
  assert.equal(svc.scheduler, 'mh');
  assert.equal(svc.flags, SvcFlag.SCHED1 | SvcFlag.SCHED2);
});

test('hash src-ip leaves the port out of the mh hash', () => {
  assert.equal(toIpvs(service({ hash: 'src-ip' })).svc.flags, SvcFlag.SCHED1);
});

test('sh gets the same fallback and port flags as mh', () => {
  assert.equal(toIpvs(service({ scheduler: 'sh' })).svc.flags, SvcFlag.SCHED1 | SvcFlag.SCHED2);
});

test('rr, wrr, lc and wlc need no scheduler flags', () => {
  for (const scheduler of ['rr', 'wrr', 'lc', 'wlc'] as const) assert.equal(toIpvs(service({ scheduler })).svc.flags, 0, scheduler);
});

test('modes map to forwarding: dsr → route, ipip → tunnel, nat → masq', () => {
  assert.equal(toIpvs(service({ mode: 'dsr' })).dests[0].fwd, 'route');
  assert.equal(toIpvs(service({ mode: 'ipip' })).dests[0].fwd, 'tunnel');
  assert.equal(toIpvs(service({ mode: 'nat' })).dests[0].fwd, 'masq');
});

test('weights pass through for reals that are up', () => {
  assert.equal(toIpvs(service({ reals: [real('10.99.0.11', { weight: 7 })] })).dests[0].weight, 7);
});

test('a real that is down gets weight 0', () => {
  assert.equal(toIpvs(service({ reals: [real('10.99.0.11', { weight: 7, state: 'down' })] })).dests[0].weight, 0);
});

test('a drained real gets weight 0 and stays configured', () => {
  const d = toIpvs(service({ reals: [real('10.99.0.11', { weight: 7, state: 'drain' })] })).dests;
  assert.equal(d.length, 1);
  assert.equal(d[0].weight, 0);
});

test('an IPv6 service gets a /128 netmask, IPv4 255.255.255.255', () => {
  assert.equal(toIpvs(service({ address: '2001:db8::1', reals: [real('2001:db8::11')] })).svc.netmask, 128);
  assert.equal(toIpvs(service()).svc.netmask, 0xffffffff);
});

test('a port-0 VIP becomes a persistent service (IPVS schedules port 0 only so), with the shortest timeout', () => {
  const { svc } = toIpvs(service({ port: 0, reals: [real('10.99.0.11', { port: 0 })] }));
  assert.equal(svc.flags & SvcFlag.PERSISTENT, SvcFlag.PERSISTENT);
  assert.equal(svc.timeout, 1);
});

test('a VIP with a port is not persistent', () => {
  const { svc } = toIpvs(service());
  assert.equal(svc.flags & SvcFlag.PERSISTENT, 0);
  assert.equal(svc.timeout, 0);
});

test('an empty kernel gets the service, then its reals', () => {
  const p = plan({ services: [service()] }, [], new Set());
  assert.deepEqual(p.ops.map((o) => o.op), ['add-service', 'add-dest', 'add-dest']);
  assert.deepEqual([...p.owned], ['10.99.100.1:80/tcp']);
});

test('planning against what the plan produced changes nothing', () => {
  const s = service();
  assert.deepEqual(plan({ services: [s] }, kernelOf(s), new Set(['10.99.100.1:80/tcp'])).ops, []);
});

test('a weight change is one update of that real only', () => {
  const before = service();
  const after = service({ reals: [real('10.99.0.11'), real('10.99.0.12', { weight: 5 })] });
  const p = plan({ services: [after] }, kernelOf(before), new Set(['10.99.100.1:80/tcp']));
  assert.equal(p.ops.length, 1);
  assert.equal(p.ops[0].op, 'update-dest');
  assert.equal(p.ops[0].op === 'update-dest' && p.ops[0].dest.weight, 5);
});

test('marking a real down is one update to weight 0', () => {
  const p = plan({ services: [service({ reals: [real('10.99.0.11', { state: 'down' }), real('10.99.0.12')] })] },
    kernelOf(service()), new Set(['10.99.100.1:80/tcp']));
  assert.deepEqual(p.ops.map((o) => o.op === 'update-dest' ? `${o.dest.address}=${o.dest.weight}` : o.op), ['10.99.0.11=0']);
});

test('a scheduler change updates the service and leaves its reals alone', () => {
  const p = plan({ services: [service({ scheduler: 'wrr' })] }, kernelOf(service()), new Set(['10.99.100.1:80/tcp']));
  assert.deepEqual(p.ops.map((o) => o.op), ['update-service']);
});

test('a mode change updates the forwarding of every real', () => {
  const p = plan({ services: [service({ mode: 'ipip' })] }, kernelOf(service()), new Set(['10.99.100.1:80/tcp']));
  assert.deepEqual(p.ops.map((o) => o.op), ['update-dest', 'update-dest']);
});

test('a removed real is deleted, the others stay', () => {
  const p = plan({ services: [service({ reals: [real('10.99.0.11')] })] }, kernelOf(service()), new Set(['10.99.100.1:80/tcp']));
  assert.deepEqual(p.ops.map((o) => `${o.op} ${'dest' in o ? o.dest.address : ''}`), ['delete-dest 10.99.0.12']);
});

test('an owned service no longer desired is deleted', () => {
  const p = plan({ services: [] }, kernelOf(service()), new Set(['10.99.100.1:80/tcp']));
  assert.deepEqual(p.ops.map((o) => o.op), ['delete-service']);
  assert.equal(p.owned.size, 0);
});

test('a service sluice does not own is never touched, even when nothing is desired', () => {
  const p = plan({ services: [] }, [foreign, ...kernelOf(service())], new Set(['10.99.100.1:80/tcp']));
  assert.ok(p.ops.every((o) => o.svc.address !== '192.0.2.1'));
  assert.equal(p.ops.length, 1);
});

test('an owned service already gone from the kernel needs no command', () => {
  assert.deepEqual(plan({ services: [] }, [], new Set(['10.99.100.1:80/tcp'])).ops, []);
});

test('a desired service that already exists is taken over, not re-created', () => {
  const p = plan({ services: [service()] }, kernelOf(service()), new Set());
  assert.deepEqual(p.ops, []);
  assert.ok(p.changes.some((c) => /take over existing service 10\.99\.100\.1:80\/tcp/.test(c)));
  assert.ok(p.owned.has('10.99.100.1:80/tcp'));
});

test('the same address and port over UDP is another service', () => {
  const p = plan({ services: [service({ protocol: 'udp' })] }, kernelOf(service()), new Set(['10.99.100.1:80/tcp']));
  assert.deepEqual(p.ops.map((o) => `${o.op} ${o.svc.protocol}`), ['delete-service tcp', 'add-service udp', 'add-dest udp', 'add-dest udp']);
});

test('services are deleted before others are added', () => {
  const a = service(), b = service({ address: '10.99.100.2' });
  const p = plan({ services: [b] }, kernelOf(a), new Set(['10.99.100.1:80/tcp']));
  assert.equal(p.ops[0].op, 'delete-service');
});

test('an mh VIP with more reals than IPVS\'s mh table holds is refused before any command', () => {
  const reals = Array.from({ length: 4094 }, (_, i) => real(`10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`));
  assert.throws(() => plan({ services: [service({ reals })] }, [], new Set()), /mh scheduler holds at most 4093 reals per VIP.*10\.99\.100\.1:80\/tcp has 4094/);
  assert.equal(plan({ services: [service({ reals: reals.slice(0, 4093) })] }, [], new Set()).ops.length, 4094);
  assert.equal(plan({ services: [service({ scheduler: 'rr', reals })] }, [], new Set()).ops.length, 4095);
});

test('an sh VIP whose weights add up to more than IPVS\'s 256 sh buckets is refused before any command', () => {
  const two = (w: number) => service({ scheduler: 'sh', reals: [real('10.99.0.11', { weight: w }), real('10.99.0.12', { weight: w, state: 'drain' })] });
  assert.throws(() => plan({ services: [two(300)] }, [], new Set()), /sh scheduler gives each real `weight` of its 256 buckets.*10\.99\.100\.1:80\/tcp has 600/);
  assert.equal(plan({ services: [two(128)] }, [], new Set()).ops.length, 3);
  assert.equal(plan({ services: [{ ...two(300), scheduler: 'wrr' }] }, [], new Set()).ops.length, 3);
});

test('a port-0 NAT VIP with a real on its own port is refused: IPVS would forward to the client\'s port', () => {
  const any = (reals: ServiceReal[]) => service({ port: 0, mode: 'nat', reals });
  assert.throws(() => plan({ services: [any([real('10.99.0.11', { port: 0 }), real('10.99.0.12', { port: 8080 })])] }, [], new Set()),
    /port-0 \(every port\) VIP to the port each client asked for.*10\.99\.100\.1:0\/tcp real 10\.99\.0\.12:8080/);
  // Without a port of their own (port 0: the client's), and for a NAT VIP with a port, all is well.
  assert.equal(plan({ services: [any([real('10.99.0.11', { port: 0 })])] }, [], new Set()).ops.length, 2);
  assert.equal(plan({ services: [service({ mode: 'nat', reals: [real('10.99.0.12', { port: 8080 })] })] }, [], new Set()).ops.length, 2);
});
