/**
 * The IPVS data plane: the same ServiceTable as the XDP one, programmed into the kernel's IPVS
 * over generic netlink. Scheduler `mh` (Maglev hashing) by default; dsr → DR ("route"),
 * ipip → tunnel, nat → masq; drained and down reals at weight 0.
 *
 * Ownership: sluice removes only services it created. It remembers them in
 * `<stateDir>/ipvs-owned.json` (written before every change, so a crash mid-sync leaves no
 * service unaccounted for) and in memory; `open({ owned })` adds keys the caller knows about
 * (e.g. the VIPs of the agent's saved state). A service that exists before sluice wants it is
 * taken over when sluice's desired state names the same address, port and protocol; any other
 * service is never touched.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { bytesToIp, ipFamily, ipToBytes } from '../../model/address.js';
import { realKey, vipKey } from '../../model/keys.js';
import type { Dataplane, ServiceTable, StatsSnapshot, SyncReport } from '../../model/types.js';
import { IpvsClient, IpvsError } from './client.js';
import { loadNetlink } from '../netlink.js';
import { type ActualService, type Op, destKey, plan, restorePlan } from './plan.js';
import { serviceIdKey } from './protocol.js';

export { IpvsClient, IpvsError } from './client.js';
export { toIpvs, plan, FWD_OF_MODE } from './plan.js';
export type { IpvsDest, IpvsService, IpvsStats, ServiceId } from './protocol.js';

/** The subset of a pino logger this module uses. */
export interface IpvsLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface IpvsOpenOptions {
  /** Where the ownership record lives (`ipvs-owned.json`); without it, ownership is in memory only. */
  stateDir?: string;
  /** Keys (`10.0.0.1:80/tcp`) of services sluice made before, e.g. its saved desired state's VIPs. */
  owned?: Iterable<string>;
  logger?: IpvsLogger;
  /** An open client to use (tests); by default one is opened. */
  client?: IpvsClient;
}

export const OWNERSHIP_FILE = 'ipvs-owned.json';
/** This network namespace's IPVS sysctl (present once ip_vs is loaded). */
export const QUIESCENT_SYSCTL = '/proc/sys/net/ipv4/vs/expire_quiescent_template';

function readOwned(file: string | undefined): string[] {
  if (!file) return [];
  try {
    const doc = JSON.parse(readFileSync(file, 'utf8')) as { services?: unknown };
    return Array.isArray(doc.services) ? doc.services.filter((s): s is string => typeof s === 'string') : [];
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new Error(`cannot read the IPVS ownership record ${file}: ${(e as Error).message}`);
  }
}

function writeOwned(file: string | undefined, owned: Iterable<string>): void {
  if (!file) return;
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify({ services: [...owned].sort() }, null, 2) + '\n');
  renameSync(tmp, file);
}

export class IpvsDataplane implements Dataplane {
  readonly kind = 'ipvs' as const;
  #client: IpvsClient;
  #owned: Set<string>;
  #file: string | undefined;
  #log: IpvsLogger | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;
  #foreign = '';
  #quiescentError: string | null = null;
  #nonLocal = '';
  #forwardingOff = '';
  #offLink = '';
  #rt: import('netlink').RtNetlinkSocket | undefined;

  private constructor(client: IpvsClient, owned: Set<string>, file: string | undefined, log: IpvsLogger | undefined) {
    this.#client = client;
    this.#owned = owned;
    this.#file = file;
    this.#log = log;
  }

  static async open(opts: IpvsOpenOptions = {}): Promise<IpvsDataplane> {
    const file = opts.stateDir ? join(opts.stateDir, OWNERSHIP_FILE) : undefined;
    const owned = new Set([...readOwned(file), ...(opts.owned ?? [])]);
    const client = opts.client ?? (await IpvsClient.open({ modprobe: true }));
    return new IpvsDataplane(client, owned, file, opts.logger);
  }

  /** `sluice agent --cleanup`: remove every service the ownership record names; returns how many existed. */
  static async cleanup(opts: { stateDir: string; logger?: IpvsLogger }): Promise<number> {
    const dp = await IpvsDataplane.open(opts);
    try {
      const r = await dp.sync({ services: [] });
      return r.removed;
    } finally {
      await dp.close({ keepForwarding: true });
    }
  }

  /** Keys of the services sluice owns now. */
  ownedServices(): string[] {
    return [...this.#owned].sort();
  }

  /** What the kernel holds for the services sluice owns, or for all of them. */
  async read(which: 'owned' | 'all' = 'owned'): Promise<ActualService[]> {
    const services = await this.#client.services();
    const out: ActualService[] = [];
    for (const svc of services) {
      if (which === 'owned' && !this.#owned.has(serviceIdKey(svc))) continue;
      out.push({ svc, dests: await this.#client.dests(svc) });
    }
    return out;
  }

  sync(desired: ServiceTable): Promise<SyncReport> {
    return this.#serial(() => this.#sync(desired));
  }

  async #sync(desired: ServiceTable): Promise<SyncReport> {
    this.#assertOpen();
    const wantKeys = new Set(desired.services.map((s) => serviceIdKey(s)));
    // Read every service that the plan may touch: owned ones and desired ones (to take them over).
    const services = await this.#client.services();
    const actual: ActualService[] = [];
    for (const svc of services) {
      const k = serviceIdKey(svc);
      if (this.#owned.has(k) || wantKeys.has(k)) actual.push({ svc, dests: await this.#client.dests(svc) });
    }
    this.#noteForeign(services.map((s) => serviceIdKey(s)).filter((k) => !this.#owned.has(k) && !wantKeys.has(k)));
    const offLink = await this.#offLinkDrReals(desired);
    const p = plan(offLink.size ? keepOut(desired, offLink) : desired, actual, this.#owned);
    if (desired.services.some((s) => s.port === 0)) this.#expireQuiescentTemplates();
    await this.#noteNonLocal(desired);
    this.#noteForwarding(desired);
    const report: SyncReport = { added: 0, updated: 0, removed: 0, changes: p.changes };
    // Services another tool made that this sync takes over, as they were: if the kernel
    // refuses any command, they are given back so, and stay the other tool's (the caller's
    // rollback, a sync of the previous state, would otherwise remove them as sluice's).
    const takenOver = actual.filter((a) => !this.#owned.has(serviceIdKey(a.svc)));
    if (p.ops.length === 0) {
      const same = this.#owned.size === p.owned.size && [...p.owned].every((k) => this.#owned.has(k));
      if (!same) { this.#owned = p.owned; writeOwned(this.#file, this.#owned); }
      this.#noteTakenOver(takenOver);
      return report;
    }
    // Record the new services as sluice's before creating them; forget removed ones after.
    writeOwned(this.#file, new Set([...this.#owned, ...p.owned]));
    for (const k of p.owned) this.#owned.add(k);
    try {
      for (const op of p.ops) {
        await this.#apply(op);
        if (op.op.startsWith('add')) report.added++;
        else if (op.op.startsWith('update')) report.updated++;
        else report.removed++;
      }
    } catch (e) {
      if (takenOver.length) await this.#giveBack(takenOver);
      throw e;
    }
    this.#owned = p.owned;
    writeOwned(this.#file, this.#owned);
    this.#log?.info({ added: report.added, updated: report.updated, removed: report.removed, changes: report.changes }, 'IPVS synced');
    this.#noteTakenOver(takenOver);
    return report;
  }

  /**
   * A service another tool made is sluice's from the sync that takes it over: removing the VIP
   * from sluice then removes it from IPVS. Said whether or not the take-over needed a command
   * (one equal to the VIP needs none, and then no 'IPVS synced' line and no change count).
   */
  #noteTakenOver(takenOver: ActualService[]): void {
    if (!takenOver.length) return;
    this.#log?.warn({ services: takenOver.map((a) => serviceIdKey(a.svc)) },
      'IPVS services that existed before sluice asked for them (same address, port and protocol as a VIP) are sluice\'s now: removing the VIP removes them');
  }

  /**
   * A port-0 VIP is a persistent service: IPVS sends a client's new connections to the real its
   * persistence template names, and by default (net.ipv4.vs.expire_quiescent_template = 0) it
   * does so even when that real is at weight 0 — drained or down reals would keep getting new
   * connections from every client that comes back while its template lives (which IPVS
   * stretches by 60 s as long as the client has a connection in its table). With the sysctl at
   * 1 such a template expires, and the client is scheduled afresh; established connections are
   * not affected. Checked at every sync that holds a port-0 VIP (someone may set it back);
   * a failure to set it is logged, not fatal.
   */
  #expireQuiescentTemplates(): void {
    let why: string | null = null;
    try {
      if (readFileSync(QUIESCENT_SYSCTL, 'utf8').trim() === '0') {
        writeFileSync(QUIESCENT_SYSCTL, '1\n');
        this.#log?.info({ sysctl: 'net.ipv4.vs.expire_quiescent_template', value: 1 },
          'IPVS: set expire_quiescent_template, so that port-0 (persistent) VIPs send no new connections to drained or down reals');
      }
    } catch (e) {
      why = (e as Error).message;
    }
    if (why !== null && why !== this.#quiescentError) {
      this.#log?.warn({ sysctl: 'net.ipv4.vs.expire_quiescent_template', err: why },
        'IPVS: cannot set expire_quiescent_template: clients of port-0 VIPs keep reaching drained and down reals while their persistence lasts');
    }
    this.#quiescentError = why;
  }

  /**
   * IPVS looks at packets the host accepts as its own (netfilter's LOCAL_IN): a packet to a VIP
   * the host does not hold is routed on, or answered "network unreachable", and never reaches
   * the service. The XDP data plane needs no such address, so a host set up for it and fallen
   * back to IPVS forwards nothing, silently. Say so, naming the VIPs: once, and again whenever
   * that set changes. (sluice does not add the addresses itself: who answers ARP for a VIP is
   * the operator's choice, e.g. keepalived's VRRP holds it on the master only.)
   */
  async #noteNonLocal(desired: ServiceTable): Promise<void> {
    const addrs = [...new Set(desired.services.map((s) => s.address))];
    const missing: string[] = [];
    for (const a of addrs) if (!(await this.#isLocal(a))) missing.push(a);
    const sig = missing.sort().join(' ');
    if (sig === this.#nonLocal) return;
    this.#nonLocal = sig;
    if (missing.length) {
      this.#log?.warn({ vips: missing },
        `IPVS sees only packets to this host's own addresses, and these VIPs are not: their connections will not reach IPVS until each is held locally, e.g. ip addr add ${joinHostPrefix(missing[0])} dev lo`);
    }
  }

  /**
   * IPVS NAT rewrites the reals' replies on their way through the host's forwarding path
   * (netfilter's FORWARD): with forwarding off the kernel drops them first, and the clients'
   * connections hang in SYN_RECV. The XDP data plane rewrites them before routing and needs no
   * forwarding, so say so for the families of the NAT VIPs, once per change. (Turning a host into
   * a router is the operator's decision, not sluice's.)
   */
  #noteForwarding(desired: ServiceTable): void {
    const off: string[] = [];
    for (const fam of [4, 6] as const) {
      const vips = desired.services.filter((s) => s.mode === 'nat' && ipFamily(s.address) === fam).map((s) => serviceIdKey(s));
      if (!vips.length) continue;
      const sysctl = fam === 4 ? 'net.ipv4.ip_forward' : 'net.ipv6.conf.all.forwarding';
      let value: string;
      try { value = readFileSync(`/proc/sys/${sysctl.replace(/\./g, '/')}`, 'utf8').trim(); } catch { continue; }
      if (value === '0') off.push(`${sysctl}=0 (${vips.join(', ')})`);
    }
    const sig = off.join(' ');
    if (sig === this.#forwardingOff) return;
    this.#forwardingOff = sig;
    if (off.length) {
      this.#log?.warn({ sysctls: off },
        'IPVS NAT needs this host to forward the reals\' replies, and forwarding is off: the NAT VIPs\' connections will hang until it is on (sysctl -w net.ipv4.ip_forward=1, net.ipv6.conf.all.forwarding=1)');
    }
  }

  /**
   * IPVS DR sends a real's frames to the next hop of the route to it, with the VIP as the
   * destination: for a real behind a gateway that is the gateway, which answers the connection
   * itself if it holds the VIP, or routes it on (back to the balancer, say). The XDP data plane
   * keeps such a real out of its ring; here it gets weight 0 (it stays listed), and the reals and
   * their gateways are named in a warning, once per change. Returns real address → gateway.
   */
  async #offLinkDrReals(desired: ServiceTable): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const addrs = new Set(desired.services.filter((s) => s.mode === 'dsr').flatMap((s) => s.reals.map((r) => r.address)));
    for (const a of addrs) {
      const gw = await this.#gatewayOf(a);
      if (gw) out.set(a, gw);
    }
    const sig = [...out].map(([a, g]) => `${a}>${g}`).sort().join(' ');
    if (sig !== this.#offLink) {
      this.#offLink = sig;
      if (out.size) {
        this.#log?.warn({ reals: [...out].map(([real, gateway]) => ({ real, gateway })) },
          'IPVS DR reaches a real only on the balancer\'s own link, and these are behind a gateway (which would get their connections): kept at weight 0 until the route to them is on-link');
      }
    }
    return out;
  }

  /** The kernel's route to `addr` (one rtnetlink lookup); throws as the kernel refuses it (ENETUNREACH, ...). */
  async #routeTo(addr: string): Promise<import('netlink').rt.RouteMessage | undefined> {
    this.#rt ??= (await loadNetlink()).createRtNetlink();
    const v6 = ipFamily(addr) === 6;
    const [r] = await this.#rt.getRoute({ family: v6 ? 10 : 2, dstLen: v6 ? 128 : 32 }, { dst: ipToBytes(addr) }, { timeout: 2000 });
    return r;
  }

  /** The gateway of the route to `addr`, or null when it is on-link, local or has no route. */
  async #gatewayOf(addr: string): Promise<string | null> {
    try {
      const gw = (await this.#routeTo(addr))?.attrs.gateway;
      return gw ? bytesToIp(gw) : null;
    } catch {
      return null;
    }
  }

  /** Whether the kernel routes `addr` to this host (a route of type local), by a route lookup. */
  async #isLocal(addr: string): Promise<boolean> {
    try {
      const t = (await this.#routeTo(addr))?.data.type as unknown;
      return t === 2 || t === 'LOCAL';
    } catch (e) {
      // No route at all ("network unreachable") means not local; anything else: do not guess.
      return !/ENETUNREACH|EHOSTUNREACH/.test((e as Error).message);
    }
  }

  /** Say which services sluice leaves alone: once, and again whenever that set changes (not every periodic sync). */
  #noteForeign(keys: string[]): void {
    const sig = keys.sort().join(' ');
    if (sig === this.#foreign) return;
    this.#foreign = sig;
    if (keys.length) this.#log?.info({ services: keys }, 'IPVS services sluice did not make: left alone');
  }

  /** Put services taken over by a failed sync back as they were, and disown them. Best effort: each failure is logged. */
  async #giveBack(before: ActualService[]): Promise<void> {
    for (const b of before) {
      const key = serviceIdKey(b.svc);
      try {
        const svc = (await this.#client.services()).find((s) => serviceIdKey(s) === key);
        const now = svc ? { svc, dests: await this.#client.dests(svc) } : undefined;
        for (const op of restorePlan(b, now)) await this.#apply(op);
        this.#log?.warn({ service: key }, 'IPVS sync failed: the service taken over is given back as it was');
      } catch (e) {
        this.#log?.warn({ service: key, err: e }, 'IPVS sync failed, and the service taken over could not be put back as it was');
      }
      this.#owned.delete(key);
    }
    writeOwned(this.#file, this.#owned);
  }

  async #apply(op: Op): Promise<void> {
    const c = this.#client;
    try {
      switch (op.op) {
        case 'add-service': await c.addService(op.svc); break;
        case 'update-service': await c.updateService(op.svc); break;
        case 'delete-service': await c.deleteService(op.svc); break;
        case 'add-dest': await c.addDest(op.svc, op.dest); break;
        case 'update-dest': await c.updateDest(op.svc, op.dest); break;
        case 'delete-dest': await c.deleteDest(op.svc, op.dest); break;
      }
    } catch (e) {
      // Someone removed it meanwhile: the goal of a delete is reached.
      if (e instanceof IpvsError && op.op.startsWith('delete') && (e.code === 'ESRCH' || e.code === 'ENOENT')) return;
      // NEW_SERVICE and SET_SERVICE answer ENOENT when the kernel cannot load ip_vs_<scheduler>.
      if (e instanceof IpvsError && (op.op === 'add-service' || op.op === 'update-service') && e.code === 'ENOENT') {
        throw new IpvsError(describe(op), e.errno, e.code, `IPVS has no scheduler "${op.svc.scheduler}" (module ip_vs_${op.svc.scheduler} missing?)`);
      }
      // Name what was refused: one sync may hold hundreds of commands.
      if (e instanceof IpvsError) throw new IpvsError(describe(op), e.errno, e.code, e.detail ?? hint(op, e.code));
      throw e;
    }
  }

  async stats(): Promise<StatsSnapshot> {
    this.#assertOpen();
    const actual = await this.#serial(() => this.read('owned'));
    let active = 0, inactive = 0;
    const vips = actual.map(({ svc, dests }) => {
      const s = svc.stats;
      return {
        key: vipKey(svc),
        packets: s ? s.inPkts + s.outPkts : 0,
        bytes: s ? s.inBytes + s.outBytes : 0,
        newFlows: s ? s.conns : 0,
        reals: dests.map((d) => {
          active += d.activeConns ?? 0;
          inactive += d.inactiveConns ?? 0;
          const ds = d.stats;
          return {
            key: realKey({ address: d.address, ...(d.port !== svc.port ? { port: d.port } : {}) }),
            packets: ds ? ds.inPkts + ds.outPkts : 0,
            bytes: ds ? ds.inBytes + ds.outBytes : 0,
            newFlows: ds ? ds.conns : 0,
          };
        }),
      };
    });
    return { vips, global: { activeConns: active, inactiveConns: inactive } };
  }

  /** keepForwarding: leave the services in the kernel (agent restart); otherwise remove sluice's. */
  async close(opts: { keepForwarding: boolean }): Promise<void> {
    if (this.#closed) return;
    if (!opts.keepForwarding) await this.sync({ services: [] });
    await this.#queue.catch(() => undefined);
    this.#closed = true;
    this.#client.close();
    this.#rt?.socket.close();
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #assertOpen(): void {
    if (this.#closed) throw new Error('the IPVS data plane is closed');
  }
}

/** The table with the DR reals in `offLink` at weight 0 (as if down), all else as it is. */
function keepOut(desired: ServiceTable, offLink: Map<string, string>): ServiceTable {
  return {
    services: desired.services.map((s) => (s.mode !== 'dsr' ? s : {
      ...s, reals: s.reals.map((r) => (r.state === 'up' && offLink.has(r.address) ? { ...r, state: 'down' as const } : r)),
    })),
  };
}

/** `10.0.0.1/32`, `2001:db8::1/128`. */
function joinHostPrefix(addr: string): string {
  return `${addr}/${ipFamily(addr) === 6 ? 128 : 32}`;
}

/** An op in the words of the CLI: `add real 10.0.0.11:80 to 10.0.0.1:80/tcp`. */
function describe(op: Op): string {
  const svc = serviceIdKey(op.svc);
  switch (op.op) {
    case 'add-service': return `add service ${svc}`;
    case 'update-service': return `update service ${svc}`;
    case 'delete-service': return `delete service ${svc}`;
    case 'add-dest': return `add real ${destKey(op.dest)} to ${svc}`;
    case 'update-dest': return `update real ${destKey(op.dest)} of ${svc}`;
    case 'delete-dest': return `delete real ${destKey(op.dest)} from ${svc}`;
  }
}

/** Why IPVS usually gives this answer. */
function hint(op: Op, code: string): string | undefined {
  if (op.op === 'add-dest' && code === 'EINVAL' && ipFamily(op.dest.address) !== ipFamily(op.svc.address)) {
    return 'IPVS refuses a real of the other address family while its connection sync daemon runs (ipvsadm -L --daemon; keepalived\'s lvs_sync_daemon)';
  }
  if (op.op === 'add-dest' && code === 'EINVAL') {
    return 'IPVS takes only a real it sees as one unicast host: not link-local (fe80::/10), not a local subnet\'s broadcast address, not an unreachable route';
  }
  return undefined;
}

/**
 * Whether this host can use the IPVS data plane (`--dataplane auto` asks when XDP fails): the
 * netlink binding loads, the kernel knows the "IPVS" generic netlink family (after
 * `modprobe ip_vs` if needed), and this process may talk to it (CAP_NET_ADMIN).
 */
export async function ipvsAvailable(): Promise<{ ok: boolean; reason?: string; version?: string }> {
  if (process.platform !== 'linux') return { ok: false, reason: `IPVS is Linux-only (this is ${process.platform})` };
  try {
    await loadNetlink();
  } catch (e) {
    return { ok: false, reason: `the netlink package's native binding did not load: ${(e as Error).message}` };
  }
  let client: IpvsClient | undefined;
  try {
    try {
      client = await IpvsClient.open({ modprobe: true });
    } catch (e) {
      if (e instanceof IpvsError && e.code === 'ENOENT') {
        return { ok: false, reason: `the kernel has no IPVS (no generic netlink family "IPVS"; ${e.detail ?? 'ip_vs not loaded'})` };
      }
      throw e;
    }
    const info = await client.info();
    return { ok: true, version: info.version };
  } catch (e) {
    if (e instanceof IpvsError && e.code === 'EPERM') return { ok: false, reason: 'IPVS needs CAP_NET_ADMIN (run the agent as root)' };
    return { ok: false, reason: `IPVS did not answer: ${(e as Error).message}` };
  } finally {
    client?.close();
  }
}
