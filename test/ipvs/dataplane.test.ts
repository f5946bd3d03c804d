/**
 * IpvsDataplane against the VM's kernel: what sync programs is what `ipvsadm -Ln` shows;
 * re-syncing changes nothing; sluice removes only the services it made.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Service, ServiceReal, ServiceTable } from '../../src/model/types.js';
import { IpvsDataplane, ipvsAvailable } from '../../src/dataplane/ipvs/index.js';
import { admDest, admService, assertIpvsHost, ipvsadm, sh } from './support.js';

// Addresses of this file: 10.101.x.x (other files use others, so files may run side by side).
function real(address: string, o: Partial<ServiceReal> = {}): ServiceReal {
  return { address, port: 80, weight: 1, state: 'up', ...o };
}
function service(o: Partial<Service> = {}): Service {
  return { address: '10.101.0.1', port: 80, protocol: 'tcp', mode: 'dsr', hash: '5tuple', scheduler: 'mh', reals: [real('10.101.1.1'), real('10.101.1.2')], ...o };
}
const mine = () => ipvsadm().filter((s) => s.address.startsWith('10.101.') || s.address.startsWith('2001:db8:101:'));

let dp: IpvsDataplane;
let stateDir: string;
before(async () => {
  assertIpvsHost();
  stateDir = mkdtempSync(join(tmpdir(), 'ipvs-dp-'));
  dp = await IpvsDataplane.open({ stateDir });
});
after(async () => {
  await dp?.close({ keepForwarding: false });
  rmSync(stateDir, { recursive: true, force: true });
});

test('the probe finds IPVS in the VM kernel', async () => {
  const r = await ipvsAvailable();
  assert.equal(r.ok, true, r.reason);
});

test('a DR service with mh appears in ipvsadm with its reals, weights and scheduler flags', async () => {
  await dp.sync({ services: [service({ reals: [real('10.101.1.1', { weight: 2 }), real('10.101.1.2', { weight: 3 })] })] });
  const s = admService('tcp', '10.101.0.1', 80);
  assert.ok(s, 'service listed');
  assert.equal(s.scheduler, 'mh');
  assert.deepEqual(s.flags.sort(), ['mh-fallback', 'mh-port']);
  assert.deepEqual(s.dests.map((d) => [d.address, d.port, d.fwd, d.weight]).sort(), [['10.101.1.1', 80, 'Route', 2], ['10.101.1.2', 80, 'Route', 3]]);
});

test('nat maps to Masq with the real\'s own port, ipip to Tunnel', async () => {
  await dp.sync({ services: [
    service({ address: '10.101.0.2', mode: 'nat', reals: [real('10.101.1.1', { port: 8080 })] }),
    service({ address: '10.101.0.3', mode: 'ipip', reals: [real('10.101.1.1')] }),
  ] });
  assert.deepEqual(admDest(admService('tcp', '10.101.0.2', 80), '10.101.1.1', 8080)?.fwd, 'Masq');
  assert.deepEqual(admDest(admService('tcp', '10.101.0.3', 80), '10.101.1.1', 80)?.fwd, 'Tunnel');
});

test('each scheduler named in a VIP is the IPVS scheduler of its service', async () => {
  const scheds = ['rr', 'wrr', 'lc', 'wlc', 'sh', 'mh'] as const;
  await dp.sync({ services: scheds.map((scheduler, i) => service({ address: `10.101.2.${i + 1}`, scheduler })) });
  assert.deepEqual(scheds.map((_, i) => admService('tcp', `10.101.2.${i + 1}`, 80)?.scheduler), [...scheds]);
});

test('a UDP service and an IPv6 service are programmed like TCP ones', async () => {
  await dp.sync({ services: [
    service({ protocol: 'udp', port: 53 }),
    service({ address: '2001:db8:101::1', port: 443, mode: 'ipip', reals: [real('2001:db8:101::11', { port: 443 }), real('2001:db8:101::12', { port: 443, weight: 4 })] }),
  ] });
  assert.equal(admService('udp', '10.101.0.1', 53)?.dests.length, 2);
  const v6 = admService('tcp', '2001:db8:101::1', 443);
  assert.ok(v6, 'IPv6 service listed');
  assert.deepEqual(v6.dests.map((d) => [d.address, d.fwd, d.weight]).sort(), [['2001:db8:101::11', 'Tunnel', 1], ['2001:db8:101::12', 'Tunnel', 4]]);
});

test('a scheduler or hash change edits the service in place (SET_SERVICE) and keeps its reals', async () => {
  await dp.sync({ services: [service({ address: '10.101.3.1' })] });
  const r = await dp.sync({ services: [service({ address: '10.101.3.1', scheduler: 'sh', hash: 'src-ip' })] });
  assert.deepEqual([r.added, r.removed], [0, 0], JSON.stringify(r));
  assert.ok(r.updated >= 1, JSON.stringify(r));
  const s = admService('tcp', '10.101.3.1', 80);
  assert.equal(s?.scheduler, 'sh');
  assert.deepEqual(s?.flags, ['sh-fallback']);
  assert.deepEqual(s?.dests.map((d) => d.address).sort(), ['10.101.1.1', '10.101.1.2']);
});

test('syncing the same table again changes nothing, in the report and in the kernel', async () => {
  const t: ServiceTable = { services: [service(), service({ address: '2001:db8:101::1', reals: [real('2001:db8:101::11')] })] };
  await dp.sync(t);
  const before = mine();
  const r = await dp.sync(t);
  assert.deepEqual([r.added, r.updated, r.removed, r.changes], [0, 0, 0, []]);
  assert.deepEqual(mine(), before);
});

test('a real marked down keeps its place at weight 0, and gets its weight back when up', async () => {
  await dp.sync({ services: [service({ reals: [real('10.101.1.1', { weight: 5, state: 'down' }), real('10.101.1.2')] })] });
  assert.equal(admDest(admService('tcp', '10.101.0.1', 80), '10.101.1.1', 80)?.weight, 0);
  await dp.sync({ services: [service({ reals: [real('10.101.1.1', { weight: 5 }), real('10.101.1.2')] })] });
  assert.equal(admDest(admService('tcp', '10.101.0.1', 80), '10.101.1.1', 80)?.weight, 5);
});

test('a drained real is at weight 0', async () => {
  await dp.sync({ services: [service({ reals: [real('10.101.1.1', { weight: 5, state: 'drain' })] })] });
  assert.equal(admDest(admService('tcp', '10.101.0.1', 80), '10.101.1.1', 80)?.weight, 0);
});

test('removing a real or a VIP removes just that from the kernel', async () => {
  await dp.sync({ services: [service(), service({ address: '10.101.0.9' })] });
  await dp.sync({ services: [service({ reals: [real('10.101.1.2')] })] });
  assert.deepEqual(admService('tcp', '10.101.0.1', 80)?.dests.map((d) => d.address), ['10.101.1.2']);
  assert.equal(admService('tcp', '10.101.0.9', 80), undefined);
});

test('a service made with ipvsadm survives every sync and close', async () => {
  sh('ipvsadm', '-A', '-t', '10.101.9.9:25', '-s', 'wlc');
  sh('ipvsadm', '-a', '-t', '10.101.9.9:25', '-r', '10.101.9.10:25', '-m', '-w', '7');
  try {
    await dp.sync({ services: [service()] });
    await dp.sync({ services: [] });
    const other = await IpvsDataplane.open({});
    await other.sync({ services: [service({ address: '10.101.0.8' })] });
    await other.close({ keepForwarding: false });
    const s = admService('tcp', '10.101.9.9', 25);
    assert.equal(s?.scheduler, 'wlc');
    assert.deepEqual(s?.dests.map((d) => [d.address, d.fwd, d.weight]), [['10.101.9.10', 'Masq', 7]]);
    assert.equal(admService('tcp', '10.101.0.8', 80), undefined);
  } finally {
    sh('ipvsadm', '-D', '-t', '10.101.9.9:25');
  }
});

test('a service deleted behind sluice\'s back is re-created by the next sync', async () => {
  await dp.sync({ services: [service()] });
  sh('ipvsadm', '-D', '-t', '10.101.0.1:80');
  const r = await dp.sync({ services: [service()] });
  assert.equal(r.added, 3);
  assert.equal(admService('tcp', '10.101.0.1', 80)?.dests.length, 2);
});

test('a real changed behind sluice\'s back is set right by the next sync', async () => {
  await dp.sync({ services: [service()] });
  sh('ipvsadm', '-e', '-t', '10.101.0.1:80', '-r', '10.101.1.1:80', '-g', '-w', '9');
  const r = await dp.sync({ services: [service()] });
  assert.equal(r.updated, 1);
  assert.equal(admDest(admService('tcp', '10.101.0.1', 80), '10.101.1.1', 80)?.weight, 1);
});

test('the ownership record on disk lets a new instance remove what the old one made', async () => {
  await dp.sync({ services: [service({ address: '10.101.0.5' })] });
  const record = JSON.parse(readFileSync(join(stateDir, 'ipvs-owned.json'), 'utf8')) as { services: string[] };
  assert.deepEqual(record.services, ['10.101.0.5:80/tcp']);
  const next = await IpvsDataplane.open({ stateDir });
  await next.sync({ services: [] });
  await next.close({ keepForwarding: true });
  assert.equal(admService('tcp', '10.101.0.5', 80), undefined);
});

test('owned keys passed to open() count as sluice\'s too', async () => {
  sh('ipvsadm', '-A', '-t', '10.101.0.6:80', '-s', 'rr');
  const d = await IpvsDataplane.open({ owned: ['10.101.0.6:80/tcp'] });
  await d.sync({ services: [] });
  await d.close({ keepForwarding: true });
  assert.equal(admService('tcp', '10.101.0.6', 80), undefined);
});

test('close with keepForwarding leaves the services; without, removes sluice\'s', async () => {
  const d = await IpvsDataplane.open({});
  await d.sync({ services: [service({ address: '10.101.0.7' })] });
  await d.close({ keepForwarding: true });
  assert.ok(admService('tcp', '10.101.0.7', 80));
  const e = await IpvsDataplane.open({ owned: ['10.101.0.7:80/tcp'] });
  await e.close({ keepForwarding: false });
  assert.equal(admService('tcp', '10.101.0.7', 80), undefined);
});

test('stats list each owned VIP with its reals', async () => {
  await dp.sync({ services: [service({ reals: [real('10.101.1.1'), real('10.101.1.2', { port: 8080 })], mode: 'nat' })] });
  const s = await dp.stats();
  const v = s.vips.find((x) => x.key === '10.101.0.1:80/tcp');
  assert.ok(v);
  assert.deepEqual(v.reals.map((r) => r.key).sort(), ['10.101.1.1', '10.101.1.2:8080']);
  assert.equal(s.vips.some((x) => x.key.startsWith('10.101.9.9')), false);
});

test('an unknown scheduler is refused with a reason that names it and the VIP, when adding and when changing a service', async () => {
  // Only the schedulers the model allows reach here; bypass the types to see the kernel's refusal.
  await assert.rejects(dp.sync({ services: [service({ address: '10.101.0.4', scheduler: 'nosuch' as 'mh' })] }),
    /add service 10\.101\.0\.4:80\/tcp: ENOENT.*no scheduler "nosuch"/);
  assert.equal(mine().some((s) => s.address === '10.101.0.4'), false);
  // A VIP that exists gets SET_SERVICE, which the kernel refuses the same way.
  await dp.sync({ services: [service({ address: '10.101.0.4' })] });
  await assert.rejects(dp.sync({ services: [service({ address: '10.101.0.4', scheduler: 'nosuch' as 'mh' })] }),
    /update service 10\.101\.0\.4:80\/tcp: ENOENT.*no scheduler "nosuch"/);
  assert.equal(admService('tcp', '10.101.0.4', 80)?.scheduler, 'mh');
  await dp.sync({ services: [] });
});

test('a pre-existing service equal to a desired one is taken over without a change, said in the log, then is sluice\'s to remove', async () => {
  sh('ipvsadm', '-A', '-t', '10.101.0.10:80', '-s', 'mh', '-b', 'mh-fallback,mh-port');
  for (const r of ['10.101.1.1', '10.101.1.2']) sh('ipvsadm', '-a', '-t', '10.101.0.10:80', '-r', `${r}:80`, '-g', '-w', '1');
  sh('ipvsadm', '-A', '-t', '10.101.0.17:80', '-s', 'wlc');
  const warns: Array<{ obj: Record<string, unknown>; msg?: string }> = [];
  const logger = { info: () => undefined, warn: (obj: object, msg?: string) => warns.push({ obj: obj as Record<string, unknown>, msg }) };
  const d = await IpvsDataplane.open({ logger });
  try {
    const r = await d.sync({ services: [service({ address: '10.101.0.10' })] });
    assert.deepEqual([r.added, r.updated, r.removed], [0, 0, 0]);
    assert.ok(d.ownedServices().includes('10.101.0.10:80/tcp'));
    // One that needs commands (another scheduler) is said the same way.
    await d.sync({ services: [service({ address: '10.101.0.10' }), service({ address: '10.101.0.17' })] });
    await d.sync({ services: [service({ address: '10.101.0.10' }), service({ address: '10.101.0.17' })] });
    const said = warns.filter((w) => /are sluice's now/.test(w.msg ?? '')).map((w) => w.obj.services);
    assert.deepEqual(said, [['10.101.0.10:80/tcp'], ['10.101.0.17:80/tcp']], JSON.stringify(warns));
    await d.sync({ services: [] });
    assert.equal(admService('tcp', '10.101.0.10', 80), undefined);
    assert.equal(admService('tcp', '10.101.0.17', 80), undefined);
  } finally {
    await d.close({ keepForwarding: false });
  }
});

test('200 services with 4 reals each: dumps span many netlink messages, and a re-sync is still a no-op', async () => {
  const many: Service[] = [];
  for (let i = 0; i < 200; i++) {
    many.push(service({ address: `10.101.${100 + (i >> 8)}.${i & 255}`, reals: [1, 2, 3, 4].map((r) => real(`10.101.50.${r}`)) }));
  }
  const first = await dp.sync({ services: many });
  assert.equal(first.added, 200 * 5);
  assert.equal(mine().filter((s) => s.address.startsWith('10.101.100.')).length, 200);
  assert.equal((await dp.read()).reduce((n, a) => n + a.dests.length, 0), 800);
  const again = await dp.sync({ services: many });
  assert.deepEqual([again.added, again.updated, again.removed], [0, 0, 0]);
  const gone = await dp.sync({ services: [] });
  assert.equal(gone.removed, 200);
});

test('a service taken over by a sync the kernel refuses is given back as it was, and a sync of the previous state leaves it', async () => {
  // keepalived's, say: sluice is asked for the same VIP with a real IPVS refuses (link-local).
  sh('ipvsadm', '-A', '-t', '[2001:db8:101::20]:80', '-s', 'wlc');
  sh('ipvsadm', '-a', '-t', '[2001:db8:101::20]:80', '-r', '[2001:db8:101::21]:80', '-m', '-w', '3');
  try {
    const before = admService('tcp', '2001:db8:101::20', 80);
    await assert.rejects(dp.sync({ services: [service({ address: '2001:db8:101::20', reals: [real('2001:db8:101::11'), real('fe80::1')] })] }), /EINVAL/);
    assert.deepEqual(admService('tcp', '2001:db8:101::20', 80), before);
    assert.equal(dp.ownedServices().includes('[2001:db8:101::20]:80/tcp'), false);
    await dp.sync({ services: [] }); // the agent's rollback
    assert.deepEqual(admService('tcp', '2001:db8:101::20', 80), before);
  } finally {
    sh('ipvsadm', '-D', '-t', '[2001:db8:101::20]:80');
  }
});

test('a real the kernel refuses is named in the error, with the VIP and why', async () => {
  await assert.rejects(dp.sync({ services: [service({ address: '2001:db8:101::30', reals: [real('2001:db8:101::11'), real('fe80::1')] })] }),
    (e: Error) => e.message.includes('add real [fe80::1]:80 to [2001:db8:101::30]:80/tcp') && /EINVAL/.test(e.message) && /link-local/.test(e.message));
  await dp.sync({ services: [] });
});

test('a tunnel real switched to GUE behind sluice\'s back is set back to IPIP by the next sync', async () => {
  await dp.sync({ services: [service({ address: '10.101.0.11', mode: 'ipip' })] });
  sh('ipvsadm', '-e', '-t', '10.101.0.11:80', '-r', '10.101.1.1:80', '-i', '-w', '1', '--tun-type', 'gue', '--tun-port', '6080');
  const tunType = async () => (await dp.read()).find((a) => a.svc.address === '10.101.0.11')?.dests.find((d) => d.address === '10.101.1.1')?.tunType;
  assert.equal(await tunType(), 1, 'GUE, as ipvsadm set it');
  const r = await dp.sync({ services: [service({ address: '10.101.0.11', mode: 'ipip' })] });
  assert.equal(r.updated, 1, JSON.stringify(r));
  assert.equal(await tunType(), 0);
});

test('the services sluice leaves alone are named in the log, once', async () => {
  sh('ipvsadm', '-A', '-u', '10.101.9.8:53', '-s', 'rr');
  const logs: Array<{ obj: Record<string, unknown>; msg?: string }> = [];
  const logger = { info: (obj: object, msg?: string) => logs.push({ obj: obj as Record<string, unknown>, msg }), warn: () => undefined };
  const d = await IpvsDataplane.open({ logger });
  try {
    await d.sync({ services: [service({ address: '10.101.0.12' })] });
    await d.sync({ services: [service({ address: '10.101.0.12' })] });
    const said = logs.filter((l) => /did not make: left alone/.test(l.msg ?? ''));
    assert.equal(said.length, 1, JSON.stringify(logs));
    assert.ok((said[0].obj.services as string[]).includes('10.101.9.8:53/udp'));
    assert.equal((said[0].obj.services as string[]).includes('10.101.0.12:80/tcp'), false);
  } finally {
    await d.close({ keepForwarding: false });
    sh('ipvsadm', '-D', '-u', '10.101.9.8:53');
  }
});

test('an IPv4 real of an IPv6 VIP refused because a sync daemon runs is refused with that reason', async () => {
  sh('ip', 'link', 'add', 'ipvs-sync0', 'type', 'dummy');
  sh('ip', 'link', 'set', 'ipvs-sync0', 'multicast', 'on', 'up');
  sh('ipvsadm', '--start-daemon', 'master', '--mcast-interface', 'ipvs-sync0');
  try {
    await assert.rejects(dp.sync({ services: [service({ address: '2001:db8:101::40', mode: 'ipip', reals: [real('10.101.1.1')] })] }),
      (e: Error) => /add real 10\.101\.1\.1:80 to \[2001:db8:101::40\]:80\/tcp: EINVAL/.test(e.message) && /sync daemon/.test(e.message));
  } finally {
    sh('ipvsadm', '--stop-daemon', 'master');
    sh('ip', 'link', 'del', 'ipvs-sync0');
    await dp.sync({ services: [] });
  }
});

test('edge values round-trip through the kernel: port 65535, weight 65535, an IPv4-embedding IPv6 address, 600 reals in one service', async () => {
  const reals = Array.from({ length: 600 }, (_, i) => real(`10.101.${60 + Math.floor(i / 250)}.${(i % 250) + 1}`, { port: 65535 }));
  const t: ServiceTable = { services: [
    service({ address: '10.101.0.14', port: 65535, scheduler: 'wlc', reals: [...reals.slice(1), real(reals[0].address, { port: 65535, weight: 65535 })] }),
    // 64:ff9b::10.101.0.15 in the model's canonical text.
    service({ address: '64:ff9b::a65:f', port: 65535, reals: [real('64:ff9b::a65:10', { port: 65535, weight: 65535 })] }),
  ] };
  const first = await dp.sync(t);
  assert.equal(first.added, 2 + reals.length + 1);
  const big = admService('tcp', '10.101.0.14', 65535);
  assert.equal(big?.dests.length, reals.length);
  assert.equal(admDest(big, reals[0].address, 65535)?.weight, 65535);
  assert.deepEqual(admService('tcp', '64:ff9b::a65:f', 65535)?.dests.map((d) => [d.address, d.port, d.weight]), [['64:ff9b::a65:10', 65535, 65535]]);
  assert.deepEqual((await dp.sync(t)).changes, []);
  // One weight among 600: one command.
  const changed = { services: [{ ...t.services[0], reals: t.services[0].reals.map((r) => (r.address === reals[300].address ? { ...r, weight: 9 } : r)) }, t.services[1]] };
  const r = await dp.sync(changed);
  assert.deepEqual([r.added, r.updated, r.removed], [0, 1, 0], JSON.stringify(r.changes));
  await dp.sync({ services: [] });
});

test('VIPs this host does not hold (IPVS never sees their packets) are named in a warning, once per change', async () => {
  sh('ip', 'addr', 'add', '10.101.0.16/32', 'dev', 'lo');
  sh('ip', '-6', 'addr', 'add', '2001:db8:101::16/128', 'dev', 'lo', 'nodad');
  // The IPv4 VIP not held is routed on (to a dummy device); the IPv6 one has no route at all.
  sh('ip', 'link', 'add', 'ipvs-dummy1', 'type', 'dummy');
  sh('ip', 'link', 'set', 'ipvs-dummy1', 'up');
  sh('ip', 'route', 'add', '10.101.0.0/24', 'dev', 'ipvs-dummy1');
  const warns: Array<{ obj: Record<string, unknown>; msg?: string }> = [];
  const logger = { info: () => undefined, warn: (obj: object, msg?: string) => warns.push({ obj: obj as Record<string, unknown>, msg }) };
  const d = await IpvsDataplane.open({ logger });
  const t = (...addrs: string[]): ServiceTable => ({ services: addrs.map((address) => service({ address, reals: [real(address.includes(':') ? '2001:db8:101::11' : '10.101.1.1')] })) });
  try {
    await d.sync(t('10.101.0.15', '10.101.0.16', '2001:db8:101::15', '2001:db8:101::16'));
    await d.sync(t('10.101.0.15', '10.101.0.16', '2001:db8:101::15', '2001:db8:101::16'));
    const said = warns.filter((w) => /not: their connections will not reach IPVS/.test(w.msg ?? ''));
    assert.equal(said.length, 1, JSON.stringify(warns));
    assert.deepEqual(said[0].obj.vips, ['10.101.0.15', '2001:db8:101::15']);
    assert.match(said[0].msg ?? '', /ip addr add 10\.101\.0\.15\/32 dev lo/);
    sh('ip', 'addr', 'add', '10.101.0.15/32', 'dev', 'lo');
    sh('ip', '-6', 'addr', 'add', '2001:db8:101::15/128', 'dev', 'lo', 'nodad');
    await d.sync(t('10.101.0.15', '10.101.0.16', '2001:db8:101::15', '2001:db8:101::16'));
    assert.equal(warns.length, 1, JSON.stringify(warns));
  } finally {
    await d.close({ keepForwarding: false });
    sh('ip', 'link', 'del', 'ipvs-dummy1');
    for (const a of ['10.101.0.15/32', '10.101.0.16/32', '2001:db8:101::15/128', '2001:db8:101::16/128']) try { sh('ip', 'addr', 'del', a, 'dev', 'lo'); } catch { /* not added */ }
  }
});

test('NAT VIPs on a host that does not forward (IPVS then drops the reals\' replies) are named in a warning, once per change', async () => {
  const was = [sh('sysctl', '-n', 'net.ipv4.ip_forward').trim(), sh('sysctl', '-n', 'net.ipv6.conf.all.forwarding').trim()];
  sh('sysctl', '-qw', 'net.ipv4.ip_forward=0');
  sh('sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1');
  const warns: Array<{ obj: Record<string, unknown>; msg?: string }> = [];
  const logger = { info: () => undefined, warn: (obj: object, msg?: string) => warns.push({ obj: obj as Record<string, unknown>, msg }) };
  const d = await IpvsDataplane.open({ logger });
  const said = () => warns.filter((w) => /IPVS NAT needs this host to forward/.test(w.msg ?? ''));
  const t: ServiceTable = { services: [
    service({ address: '10.101.0.18', mode: 'nat', reals: [real('10.101.1.1', { port: 8080 })] }),
    service({ address: '10.101.0.19', mode: 'dsr' }),
    service({ address: '2001:db8:101::18', mode: 'nat', reals: [real('2001:db8:101::11')] }),
  ] };
  try {
    await d.sync(t);
    await d.sync(t);
    assert.deepEqual(said().map((w) => w.obj.sysctls), [['net.ipv4.ip_forward=0 (10.101.0.18:80/tcp)']], JSON.stringify(warns));
    sh('sysctl', '-qw', 'net.ipv6.conf.all.forwarding=0');
    await d.sync(t);
    assert.deepEqual(said().map((w) => w.obj.sysctls)[1], ['net.ipv4.ip_forward=0 (10.101.0.18:80/tcp)', 'net.ipv6.conf.all.forwarding=0 ([2001:db8:101::18]:80/tcp)']);
    sh('sysctl', '-qw', 'net.ipv4.ip_forward=1');
    sh('sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1');
    await d.sync(t);
    assert.equal(said().length, 2);
  } finally {
    await d.close({ keepForwarding: false });
    sh('sysctl', '-qw', `net.ipv4.ip_forward=${was[0]}`);
    sh('sysctl', '-qw', `net.ipv6.conf.all.forwarding=${was[1]}`);
  }
});

test('a DR real behind a gateway (IPVS would hand its connections to the gateway) is kept at weight 0 and named in a warning', async () => {
  sh('ip', 'link', 'add', 'ipvs-dummy2', 'type', 'dummy');
  sh('ip', 'link', 'set', 'ipvs-dummy2', 'up');
  sh('ip', 'addr', 'add', '10.101.71.1/24', 'dev', 'ipvs-dummy2');
  sh('ip', 'route', 'add', '10.101.70.0/24', 'via', '10.101.71.2');
  const warns: Array<{ obj: Record<string, unknown>; msg?: string }> = [];
  const logger = { info: () => undefined, warn: (obj: object, msg?: string) => warns.push({ obj: obj as Record<string, unknown>, msg }) };
  const d = await IpvsDataplane.open({ logger });
  const t: ServiceTable = { services: [
    service({ address: '10.101.0.20', reals: [real('10.101.70.5', { weight: 3 }), real('10.101.71.5', { weight: 2 })] }),
    // An ipip real is routed, gateway or not.
    service({ address: '10.101.0.21', mode: 'ipip', reals: [real('10.101.70.5', { weight: 3 })] }),
  ] };
  const weights = () => [admService('tcp', '10.101.0.20', 80), admService('tcp', '10.101.0.21', 80)].map((s) => s?.dests.map((x) => [x.address, x.weight]).sort());
  try {
    await d.sync(t);
    await d.sync(t);
    assert.deepEqual(weights(), [[['10.101.70.5', 0], ['10.101.71.5', 2]], [['10.101.70.5', 3]]]);
    const said = warns.filter((w) => /behind a gateway/.test(w.msg ?? ''));
    assert.deepEqual(said.map((w) => w.obj.reals), [[{ real: '10.101.70.5', gateway: '10.101.71.2' }]], JSON.stringify(warns));
    // Once the real is on-link, it gets its weight.
    sh('ip', 'route', 'del', '10.101.70.0/24');
    sh('ip', 'route', 'add', '10.101.70.0/24', 'dev', 'ipvs-dummy2');
    const r = await d.sync(t);
    assert.equal(r.updated, 1, JSON.stringify(r.changes));
    assert.deepEqual(weights()[0], [['10.101.70.5', 3], ['10.101.71.5', 2]]);
  } finally {
    await d.close({ keepForwarding: false });
    sh('ip', 'link', 'del', 'ipvs-dummy2');
  }
});
