/**
 * From a ServiceTable to IPVS services and destinations, and the difference between what is
 * desired and what the kernel holds, as a list of commands. Pure: tested on any host.
 */
import { ipFamily } from '../../model/address.js';
import type { Mode, Service, ServiceTable } from '../../model/types.js';
import { type FwdMethod, type IpvsDest, type IpvsService, type ServiceId, SvcFlag, serviceIdKey } from './protocol.js';

/** Persistence timeout (seconds) of port-0 services, the shortest IPVS allows. */
export const PORT0_PERSISTENCE_S = 1;

export const FWD_OF_MODE: Record<Mode, FwdMethod> = { dsr: 'route', ipip: 'tunnel', nat: 'masq' };
/** Schedulers with a "hash the source port too" flag (SCHED2) and a "skip unavailable reals" flag (SCHED1). */
const HASHING_SCHEDULERS = new Set(['mh', 'sh']);

/**
 * Size of IPVS's mh lookup table: a prime set at kernel build time (CONFIG_IP_VS_MH_TAB_INDEX,
 * default and Debian's 12 → 4093). The kernel keeps at most that many destinations in the
 * table: past it, NEW_DEST still succeeds but the table is not rebuilt (the new reals never get
 * a connection, weight changes are not applied), and SET_SERVICE to mh fails with EINVAL.
 */
export const MH_TABLE_SIZE = 4093;

/**
 * Buckets of IPVS's sh table (CONFIG_IP_VS_SH_TAB_BITS, default and Debian's 8). sh fills them
 * in one pass over the reals, each taking `weight` buckets (at least 1): once the weights add up
 * to more, the reals last in the list get fewer buckets than their weight says, or none.
 */
export const SH_TABLE_SIZE = 256;

/** Refuse, before any command, what IPVS would take and then not do. */
export function checkDesired(desired: ServiceTable, limits: { mhTableSize?: number; shTableSize?: number } = {}): void {
  const mhMax = limits.mhTableSize ?? MH_TABLE_SIZE;
  const over = desired.services.filter((s) => (s.scheduler ?? 'mh') === 'mh' && new Set(s.reals.map(destKey)).size > mhMax);
  if (over.length) {
    throw new Error(`IPVS's mh scheduler holds at most ${mhMax} reals per VIP (its lookup table size); `
      + over.map((s) => `${serviceIdKey(s)} has ${s.reals.length}`).join(', ') + ': use another --scheduler or fewer reals');
  }
  // Configured weights, whatever the reals' state: a VIP valid now stays valid when reals come back up.
  const shMax = limits.shTableSize ?? SH_TABLE_SIZE;
  const heavy = desired.services
    .filter((s) => s.scheduler === 'sh')
    .map((s) => ({ s, sum: s.reals.reduce((n, r) => n + Math.max(r.weight, 1), 0) }))
    .filter(({ sum }) => sum > shMax);
  if (heavy.length) {
    throw new Error(`IPVS's sh scheduler gives each real \`weight\` of its ${shMax} buckets (at least 1), so a VIP's weights may add up to ${shMax} at most; `
      + heavy.map(({ s, sum }) => `${serviceIdKey(s)} has ${sum}`).join(', ') + ': scale the weights down (only their ratio matters) or use another --scheduler');
  }
  // A port-0 service is persistent, and IPVS forwards each of its connections to the port the
  // client asked for (ip_vs_sched_persist: the destination's port is used only when the client's
  // port equals the service's, never for port 0). A NAT real's own port would be listed in
  // ipvsadm and then ignored: connections to VIP:80 would reach real:80, not real:8080.
  const ported = desired.services
    .filter((s) => s.port === 0 && s.mode === 'nat')
    .flatMap((s) => s.reals.filter((r) => r.port !== 0).map((r) => `${serviceIdKey(s)} real ${destKey(r)}`));
  if (ported.length) {
    throw new Error('IPVS forwards the connections of a port-0 (every port) VIP to the port each client asked for, never to a real\'s own port; '
      + ported.join(', ') + ': give these reals no port of their own (they get the client\'s), or give the VIP a port');
  }
}

export interface DesiredService {
  svc: IpvsService;
  dests: IpvsDest[];
}

/** How sluice programs one VIP into IPVS. */
export function toIpvs(s: Service): DesiredService {
  const scheduler = s.scheduler ?? 'mh';
  let flags = 0;
  if (HASHING_SCHEDULERS.has(scheduler)) {
    // mh-fallback / sh-fallback: a real that is overloaded or at weight 0 passes its flows on.
    flags |= SvcFlag.SCHED1;
    // mh-port / sh-port: hash the source port as well, i.e. per connection (5-tuple), not per client.
    if (s.hash !== 'src-ip') flags |= SvcFlag.SCHED2;
  }
  // IPVS schedules a port-0 (every port) service only when it is persistent: connections of a
  // client then stick to one real while any is open, and for PORT0_PERSISTENCE_S after.
  if (s.port === 0) flags |= SvcFlag.PERSISTENT;
  const svc: IpvsService = {
    address: s.address,
    port: s.port,
    protocol: s.protocol,
    scheduler,
    flags,
    timeout: s.port === 0 ? PORT0_PERSISTENCE_S : 0,
    netmask: ipFamily(s.address) === 6 ? 128 : 0xffffffff,
  };
  const byKey = new Map<string, IpvsDest>();
  for (const r of s.reals) {
    byKey.set(destKey(r), {
      address: r.address,
      port: r.port,
      fwd: FWD_OF_MODE[s.mode],
      // Drained and down reals stay configured at weight 0: no new connections, IPVS keeps the old ones.
      weight: r.state === 'up' ? r.weight : 0,
      upperThreshold: 0,
      lowerThreshold: 0,
    });
  }
  return { svc, dests: [...byKey.values()] };
}

export function destKey(d: { address: string; port: number }): string {
  return ipFamily(d.address) === 6 ? `[${d.address}]:${d.port}` : `${d.address}:${d.port}`;
}

export interface ActualService {
  svc: IpvsService;
  dests: IpvsDest[];
}

export type Op =
  | { op: 'add-service'; svc: IpvsService }
  | { op: 'update-service'; svc: IpvsService }
  | { op: 'delete-service'; svc: ServiceId }
  | { op: 'add-dest'; svc: ServiceId; dest: IpvsDest }
  | { op: 'update-dest'; svc: ServiceId; dest: IpvsDest }
  | { op: 'delete-dest'; svc: ServiceId; dest: IpvsDest };

export interface Plan {
  ops: Op[];
  /** One line per change, for logs and SyncReport.changes. */
  changes: string[];
  /** Services sluice owns once the plan is applied: exactly the desired ones. */
  owned: Set<string>;
}

function serviceDiffers(a: IpvsService, b: IpvsService): string | null {
  const d: string[] = [];
  if (a.scheduler !== b.scheduler) d.push(`scheduler ${b.scheduler} → ${a.scheduler}`);
  if (a.flags !== b.flags) d.push(`flags 0x${b.flags.toString(16)} → 0x${a.flags.toString(16)}`);
  if (a.timeout !== b.timeout) d.push(`timeout ${b.timeout} → ${a.timeout}`);
  if (a.timeout !== 0 && a.netmask !== b.netmask) d.push(`netmask ${b.netmask} → ${a.netmask}`);
  return d.length ? d.join(', ') : null;
}

function destDiffers(a: IpvsDest, b: IpvsDest): string | null {
  const d: string[] = [];
  if (a.fwd !== b.fwd) d.push(`forwarding ${b.fwd} → ${a.fwd}`);
  // ipip mode means IPIP: a tunnel real set to GUE or GRE (ipvsadm --tun-type) would send the
  // reals what they do not decapsulate. A SET_DEST without IPVS_DEST_ATTR_TUN_TYPE sets IPIP.
  else if (a.fwd === 'tunnel' && (a.tunType ?? 0) !== (b.tunType ?? 0)) d.push(`tunnel type ${b.tunType ?? 0} → ${a.tunType ?? 0}`);
  if (a.weight !== b.weight) d.push(`weight ${b.weight} → ${a.weight}`);
  if (a.upperThreshold !== b.upperThreshold || a.lowerThreshold !== b.lowerThreshold) d.push('thresholds');
  return d.length ? d.join(', ') : null;
}

/** The commands that make one service `have` (absent: not in the kernel) equal `want`; appended to ops and changes. */
export function diffService(key: string, w: DesiredService, a: ActualService | undefined, ops: Op[], changes: string[]): void {
  if (!a) {
    ops.push({ op: 'add-service', svc: w.svc });
    changes.push(`add service ${key} (${w.svc.scheduler})`);
    for (const d of w.dests) {
      ops.push({ op: 'add-dest', svc: w.svc, dest: d });
      changes.push(`add real ${destKey(d)} to ${key} (${d.fwd}, weight ${d.weight})`);
    }
    return;
  }
  const sd = serviceDiffers(w.svc, a.svc);
  if (sd) { ops.push({ op: 'update-service', svc: w.svc }); changes.push(`update service ${key}: ${sd}`); }
  const haveDests = new Map(a.dests.map((d) => [destKey(d), d]));
  const wantKeys = new Set<string>();
  for (const d of w.dests) {
    const k = destKey(d);
    wantKeys.add(k);
    const h = haveDests.get(k);
    if (!h) {
      ops.push({ op: 'add-dest', svc: w.svc, dest: d });
      changes.push(`add real ${k} to ${key} (${d.fwd}, weight ${d.weight})`);
    } else {
      const dd = destDiffers(d, h);
      if (dd) { ops.push({ op: 'update-dest', svc: w.svc, dest: d }); changes.push(`update real ${k} of ${key}: ${dd}`); }
    }
  }
  for (const [k, h] of haveDests) {
    if (wantKeys.has(k)) continue;
    ops.push({ op: 'delete-dest', svc: w.svc, dest: h });
    changes.push(`delete real ${k} from ${key}`);
  }
}

/**
 * The commands that put a service back as it was (`before`, as read from the kernel) from
 * what the kernel holds now (`now`; absent: it is gone): used to give back a service another
 * tool made when the sync that took it over fails.
 */
export function restorePlan(before: ActualService, now: ActualService | undefined): Op[] {
  const ops: Op[] = [];
  diffService(serviceIdKey(before.svc), { svc: before.svc, dests: before.dests }, now, ops, []);
  return ops;
}

/**
 * The commands that make the kernel hold `desired`, touching only services sluice owns (those
 * in `owned`, plus the desired ones: a desired service that already exists is taken over).
 * Services nobody asked sluice for are left alone.
 */
export function plan(desired: ServiceTable, actual: ActualService[], owned: ReadonlySet<string>): Plan {
  checkDesired(desired);
  const ops: Op[] = [];
  const changes: string[] = [];
  const have = new Map(actual.map((a) => [serviceIdKey(a.svc), a]));
  const want = new Map<string, DesiredService>();
  for (const s of desired.services) want.set(serviceIdKey(s), toIpvs(s));

  // Services sluice made and no longer wants go first.
  for (const key of [...owned].sort()) {
    if (want.has(key)) continue;
    const a = have.get(key);
    if (a) { ops.push({ op: 'delete-service', svc: a.svc }); changes.push(`delete service ${key}`); }
  }

  for (const [key, w] of want) {
    const a = have.get(key);
    if (a && !owned.has(key)) changes.push(`take over existing service ${key}`);
    diffService(key, w, a, ops, changes);
  }
  return { ops, changes, owned: new Set(want.keys()) };
}
