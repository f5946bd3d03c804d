/**
 * Next hops as an IPv6 router advertises them: a real behind a gateway known only by its
 * link-local address, on the second of two interfaces of the balancer (each interface has its
 * own fe80::/64 route). The data plane must resolve that gateway on the interface the route
 * names; and a real at one of the balancer's own addresses (routed via lo), which is no next hop.
 * Namespaces: lb (e0, e1), g0 (peer of e0), g1 (peer of e1, the gateway fe80::b).
 * The data plane runs in a child process in lb's namespace (network only: nsenter), loaded
 * without attaching or attached in generic mode; no traffic is needed.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { unpinAll } from '../../src/bpf/pin.js';
import { addNs, delNs, inNs, runId, sh } from '../support/netns.js';

const id = runId();
const NS = { lb: `xn-lb-${id}`, g0: `xn-g0-${id}`, g1: `xn-g1-${id}` };
const PIN = `/sys/fs/bpf/sluice-test-nh-${id}`;
const GW_MAC = '02:77:00:00:00:0b';
const DIST = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
process.on('exit', () => unpinAll(PIN));

/**
 * A sync of one VIP to `real` by a data plane opened in lb's namespace (attached to `iface` in
 * generic mode, if given): its report, its egress ports and how lo has XDP attached.
 */
function syncInLb(mode: 'dsr' | 'ipip' | 'nat', real: string, iface?: string): { changes: string[]; egress: Record<string, number>; lo: string } {
  const vip = real.includes(':') ? 'fd00:100::1' : '10.100.0.1';
  const script = `
    const { XdpDataplane } = await import(${JSON.stringify(join(DIST, 'src/dataplane/xdp/index.js'))});
    const { DEFAULT_DATAPLANE } = await import(${JSON.stringify(join(DIST, 'src/model/types.js'))});
    const { xdpAttached } = await import(${JSON.stringify(join(DIST, 'src/bpf/index.js'))});
    const spec = { ...DEFAULT_DATAPLANE, kind: 'xdp', xdpMode: 'generic', maxVips: 2, maxReals: 4, ringSize: 13, flowTableSize: 1024 };
    const dp = await XdpDataplane.open({ spec, pinDir: ${JSON.stringify(PIN)}, probeIntervalMs: 0, ${iface ? `interface: ${JSON.stringify(iface)}` : ''} });
    try {
      const r = await dp.sync({ services: [{ address: ${JSON.stringify(vip)}, port: 80, protocol: 'tcp', mode: ${JSON.stringify(mode)}, hash: '5tuple', scheduler: 'mh',
        reals: [{ address: ${JSON.stringify(real)}, port: 80, weight: 1, state: 'up' }] }] });
      process.stdout.write(JSON.stringify({ ...r, egress: dp.egressPorts(), lo: xdpAttached('lo').mode }));
    } finally { await dp.close({ keepForwarding: false }); }`;
  const out = inNs(NS.lb, process.execPath, ['--input-type=module', '-e', script], { timeout: 30_000 });
  return JSON.parse(out);
}

before(() => {
  for (const n of Object.values(NS)) {
    addNs(n);
    inNs(n, 'sysctl', ['-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
  }
  // e0 first: its fe80::/64 route is the one an unscoped link-local address would take.
  sh('ip', ['link', 'add', 'e0', 'netns', NS.lb, 'type', 'veth', 'peer', 'name', 'p0', 'netns', NS.g0]);
  sh('ip', ['link', 'add', 'e1', 'netns', NS.lb, 'type', 'veth', 'peer', 'name', 'p1', 'netns', NS.g1]);
  inNs(NS.g0, 'ip', ['addr', 'add', 'fe80::a/64', 'dev', 'p0', 'nodad']);
  inNs(NS.g1, 'ip', ['link', 'set', 'p1', 'address', GW_MAC]);
  inNs(NS.g1, 'ip', ['addr', 'add', 'fe80::b/64', 'dev', 'p1', 'nodad']);
  inNs(NS.g1, 'ip', ['addr', 'add', 'fd00:77::5/64', 'dev', 'p1', 'nodad']);
  for (const [n, d] of [[NS.lb, 'e0'], [NS.lb, 'e1'], [NS.g0, 'p0'], [NS.g1, 'p1']]) inNs(n, 'ip', ['link', 'set', d, 'up']);
  inNs(NS.lb, 'ip', ['-6', 'route', 'add', 'fd00:77::/64', 'via', 'fe80::b', 'dev', 'e1']);
  unpinAll(PIN);
});
after(() => {
  for (const n of Object.values(NS)) delNs(n);
  unpinAll(PIN);
});

describe('next hops: an IPv6 gateway known by its link-local address', () => {
  for (const mode of ['ipip', 'nat'] as const) {
    test(`${mode}: the real behind fe80::b on the second interface joins its ring with the gateway's MAC`, () => {
      inNs(NS.lb, 'ip', ['-6', 'neigh', 'flush', 'all']);
      const r = syncInLb(mode, 'fd00:77::5');
      assert.equal(r.lo, 'none');
      assert.ok(!r.changes.some((c) => c.startsWith('!real')), `unresolved: ${r.changes.join('; ')}`);
      assert.ok(r.changes.some((c) => c.startsWith('+vip [fd00:100::1]:80/tcp')), r.changes.join('; '));
      const neigh = inNs(NS.lb, 'ip', ['-6', 'neigh', 'show', 'fe80::b', 'dev', 'e1']);
      assert.match(neigh, new RegExp(`lladdr ${GW_MAC}`));
      // Nothing was asked of the other interface.
      assert.equal(inNs(NS.lb, 'ip', ['-6', 'neigh', 'show', 'fe80::b', 'dev', 'e0']).trim(), '');
    });
  }
});

describe('next hops: a real at one of the balancer\'s own addresses', () => {
  for (const mode of ['dsr', 'nat'] as const) {
    test(`${mode}: kept out of its ring and said why; lo gets no XDP program and no tx port`, () => {
      inNs(NS.lb, 'ip', ['addr', 'replace', '10.78.0.1/24', 'dev', 'e0']);
      const r = syncInLb(mode, '10.78.0.1', 'e0');
      assert.ok(r.changes.some((c) => c.startsWith('!real 10.100.0.1:80/tcp 10.78.0.1:80: an address of this host')), r.changes.join('; '));
      assert.deepEqual(r.egress, {});
      assert.equal(r.lo, 'none');
    });
  }
});
