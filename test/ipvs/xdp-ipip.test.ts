/**
 * The XDP data plane's `ipip` mode end to end with the kernel's own IPIP decapsulation on the
 * reals (tunl0 / ip6tnl0), which the host kernel lacks (test/e2e uses sluice's decap program
 * there). Runs in the micro-VM on the e2e topology (test/e2e/topo.ts), with the BPF objects the
 * host built (scripts/vm's clang stub finds them in build/bpf).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { unpinAll } from '../../src/bpf/pin.js';
import { DEFAULT_DATAPLANE, type DataplaneSpec, type Service } from '../../src/model/types.js';
import { ADDR4, ADDR6, REALS, Topo, VIP4, VIP6 } from '../e2e/topo.js';
import { assertIpvsHost } from './support.js';

// The default limits: scripts/bootstrap builds the balancer for them, so the VM finds it cached.
const SPEC: DataplaneSpec = { ...DEFAULT_DATAPLANE, kind: 'xdp' };
const COUNT = 60;
interface Tally { byReal: Record<string, number>; peers: Record<string, number>; failures: number }

let topo: Topo;
let pinDir: string;

function ipipService(fam: 4 | 6): Service {
  const addr = fam === 4 ? ADDR4 : ADDR6;
  return {
    address: fam === 4 ? VIP4[0] : VIP6[0], port: 80, protocol: 'tcp', mode: 'ipip', hash: '5tuple', scheduler: 'mh',
    reals: REALS.map((h) => ({ address: addr[h], port: 80, weight: 1, state: 'up' as const })),
  };
}

before(async () => {
  assertIpvsHost();
  topo = await Topo.up();
  pinDir = `/sys/fs/bpf/sluice-vm-ipip-${process.pid}`;
  for (const h of REALS) {
    await topo.call(h, 'serve', { name: h, tcpPorts: [80], udpPorts: [], udpAddrs: [] });
    // The kernel's fallback tunnel devices take IPIP and IP6IP6 packets addressed to the real.
    topo.exec(h, 'ip', ['link', 'set', 'tunl0', 'up']);
    topo.exec(h, 'ip', ['link', 'set', 'ip6tnl0', 'up']);
    topo.exec(h, 'sysctl', ['-qw', 'net.ipv4.conf.tunl0.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0']);
  }
  await topo.call('lb', 'dpOpen', { spec: SPEC, interface: 'eth0', pinDir });
});

after(async () => {
  await topo?.down();
  if (pinDir) unpinAll(pinDir);
});

for (const fam of [4, 6] as const) {
  test(`XDP ipip IPv${fam}: connections reach every real through the kernel's ipip decap, with the client's address`, async () => {
    await topo.call('lb', 'dpSync', { table: { services: [ipipService(fam)] } });
    const t = await topo.call<Tally>('client', 'tcpBurst', { host: fam === 4 ? VIP4[0] : VIP6[0], port: 80, count: COUNT, concurrency: 6 });
    assert.equal(t.failures, 0, `failed connections (${JSON.stringify(t)})`);
    assert.deepEqual(Object.keys(t.byReal).sort(), [...REALS], JSON.stringify(t.byReal));
    assert.deepEqual(Object.keys(t.peers), [fam === 4 ? ADDR4.client : ADDR6.client]);
  });
}
