/**
 * XDP ns/packet per path, beside a trivial MAC-swap XDP_TX program measured the same way in the
 * same run: BPF_PROG_TEST_RUN with repeat = 1 (the kernel does not restore the packet between
 * repetitions, so a rewriting program would process its own output), the plain mean of the
 * kernel's `duration` over XDP_BENCH_CALLS (default 40,000, at least 20,000) calls, the two programs
 * alternating in blocks so drift hits both alike. The mean less the slowest 1% of calls (those a
 * preemption or an interrupt landed in) is shown beside it.
 * Targets: LRU hit ≤ 3× and new flow ≤ 5× the trivial program (Katran here: ~3.2× / 5.3×).
 */
import { randomBytes } from 'node:crypto';
import { compileBpf } from '../src/bpf/build.js';
import { Collection } from '../src/bpf/collection.js';
import { unpinAll } from '../src/bpf/pin.js';
import type { Program } from '../src/bpf/program.js';
import { XdpDataplane } from '../src/dataplane/xdp/index.js';
import { DEFAULT_DATAPLANE, type Service } from '../src/model/types.js';
import { frame, type Flow } from '../test/bpf/packet.js';
import { printTables } from './report.js';

const CALLS = Math.max(20000, Number(process.env.XDP_BENCH_CALLS ?? 40000));
const BLOCK = 2000;
const LB = { dst: '02:00:00:00:00:01', src: '02:00:00:00:00:02' };
const pinDir = `/sys/fs/bpf/sluice-bench-${randomBytes(3).toString('hex')}`;

function svc(o: Partial<Service>): Service {
  return {
    address: '10.0.0.100', port: 80, protocol: 'tcp', mode: 'dsr', hash: '5tuple', scheduler: 'mh',
    reals: [1, 2, 3].map((i) => ({ address: `10.1.0.${i}`, port: o.mode === 'nat' ? 8080 : 80, weight: 1, state: 'up' as const, mac: `02:00:00:00:01:0${i}` })),
    ...o,
  };
}

interface Side { mean: number; trimmed: number }

/** Kernel-measured ns per call, alternating blocks of `a` and `b` (frames chosen per call). */
function measurePair(a: Program, fa: (i: number) => Buffer, b: Program, fb: (i: number) => Buffer, calls = CALLS): [Side, Side] {
  const sa: number[] = [], sb: number[] = [];
  for (let done = 0; done < calls; done += BLOCK) {
    for (let i = 0; i < BLOCK; i++) sa.push(a.testRun(fa(done + i)).durationNs);
    for (let i = 0; i < BLOCK; i++) sb.push(b.testRun(fb(done + i)).durationNs);
  }
  return [side(sa), side(sb)];
}

/** The plain mean, and the mean without the slowest 1% (on a shared 2-core machine, calls that were preempted). */
function side(xs: number[]): Side {
  const mean = (v: number[]) => v.reduce((p, q) => p + q, 0) / v.length;
  return { mean: mean(xs), trimmed: mean([...xs].sort((p, q) => p - q).slice(0, Math.ceil(xs.length * 0.99))) };
}

const spec = { ...DEFAULT_DATAPLANE, kind: 'xdp' as const, gatewayMac: '02:00:00:00:00:fe' };
const dp = await XdpDataplane.open({ spec, pinDir, isOnLink: async () => false, resolveMac: async () => null });
const ref = Collection.load(await compileBpf({ source: 'ref' }));
// The same program with a 64K-entry flow table: how much of a new flow is the table's memory.
const smallSpec = { ...spec, flowTableSize: 65536 };
const small = await XdpDataplane.open({ spec: smallSpec, pinDir: `${pinDir}-small`, isOnLink: async () => false, resolveMac: async () => null });
process.on('exit', () => { unpinAll(pinDir); unpinAll(`${pinDir}-small`); });
try {
  await dp.sync({
    services: [
      svc({}),
      svc({ port: 53, protocol: 'udp' }),
      svc({ address: '10.0.0.101', mode: 'nat' }),
      svc({ address: '10.0.0.102', mode: 'ipip' }),
      svc({ address: '2001:db8::100', reals: [1, 2, 3].map((i) => ({ address: `2001:db8:1::${i}`, port: 80, weight: 1, state: 'up' as const, mac: `02:00:00:00:01:0${i}` })) }),
      svc({ address: '2001:db8::100', port: 53, protocol: 'udp', reals: [1, 2, 3].map((i) => ({ address: `2001:db8:1::${i}`, port: 53, weight: 1, state: 'up' as const, mac: `02:00:00:00:01:0${i}` })) }),
    ],
  });
  await small.sync({ services: [svc({})] });
  const prog = dp.program;
  const swap = ref.program('xdp_swap');
  const flow = (o: Partial<Flow>): Buffer => frame({ src: '192.168.0.1', dst: '10.0.0.100', proto: 'tcp', sport: 40000, dport: 80, flags: 0x10, ...o }, LB);
  const swapFrame = flow({});

  // Distinct new flows: one per call, from many clients and ports (TCP: SYNs; UDP: new 5-tuples).
  const client4 = (base: number, i: number) => `${base}.${16 + (i >> 16)}.${(i >> 8) & 0xff}.${i & 0xff}`;
  const client6 = (tag: number, i: number) => `2001:db8:${tag.toString(16)}:${(i >> 16).toString(16)}::${(i & 0xffff).toString(16)}`;
  const synFrames = Array.from({ length: CALLS }, (_, i) => flow({ src: client4(172, i), sport: 1024 + (i % 50000), flags: 0x02 }));
  const synFrames2 = Array.from({ length: CALLS }, (_, i) => flow({ src: client4(173, i), sport: 1024 + (i % 50000), flags: 0x02 }));
  const syn6Frames = Array.from({ length: CALLS }, (_, i) => flow({ src: client6(0xc6, i), dst: '2001:db8::100', sport: 1024 + (i % 50000), flags: 0x02 }));
  const udpFrames = Array.from({ length: CALLS }, (_, i) => flow({ src: client4(174, i), proto: 'udp', dport: 53, sport: 1024 + (i % 50000) }));
  const udp6Frames = Array.from({ length: CALLS }, (_, i) => flow({ src: client6(0xd6, i), dst: '2001:db8::100', proto: 'udp', dport: 53, sport: 1024 + (i % 50000) }));
  const paths: Array<{ name: string; frame: (i: number) => Buffer; prime: boolean; target?: number; prog?: Program }> = [
    { name: 'LRU hit (TCP, IPv4, dsr)', frame: () => flow({}), prime: true, target: 3 },
    { name: 'new flow (TCP SYN, IPv4, dsr)', frame: (i) => synFrames[i], prime: false, target: 5 },
    { name: 'new flow (TCP SYN, IPv6, dsr)', frame: (i) => syn6Frames[i], prime: false, target: 5 },
    { name: 'new flow (UDP, IPv4, dsr)', frame: (i) => udpFrames[i], prime: false, target: 5 },
    { name: 'new flow (UDP, IPv6, dsr)', frame: (i) => udp6Frames[i], prime: false, target: 5 },
    { name: 'new flow, 64K-entry flow table', frame: (i) => synFrames[i], prime: false, prog: small.program },
    { name: 'floor: a bare 1M-LRU insert + MAC swap', frame: (i) => synFrames2[i], prime: false, prog: ref.program('xdp_lru_insert') },
    { name: 'non-VIP pass', frame: () => flow({ dst: '10.200.0.1' }), prime: false },
    { name: 'LRU hit, nat', frame: () => flow({ dst: '10.0.0.101' }), prime: true },
    { name: 'LRU hit, ipip', frame: () => flow({ dst: '10.0.0.102' }), prime: true },
    { name: 'LRU hit, IPv6 dsr', frame: () => flow({ src: '2001:db8:c::1', dst: '2001:db8::100' }), prime: true },
    { name: 'LRU hit, UDP dsr', frame: () => flow({ proto: 'udp', dport: 53 }), prime: true },
  ];
  const rows: Array<Array<string | number>> = [];
  const data: Array<Record<string, unknown>> = [];
  // Warm up both programs (JIT, caches).
  measurePair(prog, () => flow({}), swap, () => swapFrame, 4000);
  for (const p of paths) {
    const pr = p.prog ?? prog;
    if (p.prime) pr.testRun(p.frame(0));
    const [ns, trivial] = measurePair(pr, p.frame, swap, () => swapFrame);
    const ratio = ns.mean / trivial.mean;
    const trimmedRatio = ns.trimmed / trivial.trimmed;
    rows.push([p.name, ns.mean, trivial.mean, ratio, trimmedRatio, p.target ? `≤ ${p.target}×` : '', p.target ? (ratio <= p.target ? 'ok' : 'MISSED') : '']);
    data.push({ path: p.name, nsPerPacket: ns.mean, trivialNsPerPacket: trivial.mean, ratio, trimmedNsPerPacket: ns.trimmed, trimmedTrivialNsPerPacket: trivial.trimmed, trimmedRatio, target: p.target ?? null });
  }
  printTables([{
    title: `XDP balancer ns/packet (BPF_PROG_TEST_RUN, repeat=1, mean of ${CALLS} calls; limits ${spec.maxVips} VIPs, ${spec.maxReals} reals, ring ${spec.ringSize}, flows ${spec.flowTableSize})`,
    columns: ['path', 'ns/pkt', 'trivial ns/pkt', 'ratio', 'ratio less slowest 1%', 'target', ''],
    rows,
    notes: ['ns/pkt and ratio: plain means over every call; the target applies to them',
      'ratio less slowest 1%: both sides without their slowest 1% of calls (preemptions, interrupts)',
      'trivial = bpf/ref.bpf.c xdp_swap (MAC swap + XDP_TX), measured in alternating blocks in the same run',
      'floor = bpf/ref.bpf.c xdp_lru_insert: one LRU insert and a MAC swap, nothing else; a new flow that is remembered cannot cost less',
      'durations include the ~25-30 ns fixed cost of a test run; Katran measured this way here: ~3.2× (LRU hit), ~5.3× (new flow)'],
    data,
  }]);
} finally {
  ref.close();
  await dp.close({ keepForwarding: false });
  await small.close({ keepForwarding: false });
}
