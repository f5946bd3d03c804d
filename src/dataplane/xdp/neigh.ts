/**
 * What the data plane needs to know about the network, in the calling process's namespace: the
 * route to a real (egress interface, gateway), a neighbour's MAC, and an interface's index, MAC
 * and MTU. Through rtnetlink (the `netlink` package) in process; where that cannot load, through
 * `ip -j`, one process per question.
 */
import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { promisify } from 'node:util';
import { bytesToIp, bytesToMac, canonicalMac, ipFamily, ipToBytes } from '../../model/address.js';
import { loadNetlink } from '../netlink.js';

const run = promisify(execFile);
/** RFC 863: what a probe datagram is sent to. */
const DISCARD_PORT = 9;

export interface Route {
  /** Egress interface. */
  dev: string;
  ifindex: number;
  /** The gateway the route names; absent when the address is on the link. */
  gateway?: string;
}

export interface LinkInfo {
  name: string;
  ifindex: number;
  mac: string;
  mtu: number;
}

/** One view of the network; close() when done (it may hold a netlink socket). */
export interface NetView {
  route(addr: string): Promise<Route | null>;
  /** The MAC of a neighbour in the table, in a usable state; null when absent or failed. No probe. */
  neighbour(addr: string, ifindex?: number): Promise<string | null>;
  /**
   * True when the table holds the neighbour as STALE: nothing confirmed its MAC lately. The
   * kernel re-confirms a STALE entry only when it sends through it itself, which frames that XDP
   * forwards are not: without a probe a MAC that changed would stay in the table for good.
   */
  stale(addr: string, ifindex?: number): Promise<boolean>;
  link(name: string): Promise<LinkInfo | null>;
  close(): void;
}

/** Neighbour states whose MAC can be used (STALE ones: see NetView.stale). */
const USABLE = ['reachable', 'stale', 'delay', 'probe', 'permanent', 'noarp'];

type RtSocket = import('netlink').RtNetlinkSocket;

class NetlinkView implements NetView {
  #neigh = new Map<number, Promise<{ macs: Map<string, string>; stale: Set<string> }>>();
  #links = new Map<string, Promise<LinkInfo | null>>();
  constructor(private readonly rt: RtSocket) {}

  async route(addr: string): Promise<Route | null> {
    const fam = ipFamily(addr);
    try {
      const [r] = await this.rt.getRoute({ family: fam === 6 ? 10 : 2, dstLen: fam === 6 ? 128 : 32 }, { dst: ipToBytes(addr) });
      const ifindex = r?.attrs.oif;
      if (!ifindex) return null;
      const dev = (await this.#linkByIndex(ifindex))?.name;
      if (!dev) return null;
      const gw = r.attrs.gateway;
      return gw ? { dev, ifindex, gateway: bytesToIp(gw) } : { dev, ifindex };
    } catch {
      return null; /* unreachable, no route */
    }
  }

  async neighbour(addr: string, ifindex?: number): Promise<string | null> {
    const t = (await this.#table(addr)).macs;
    const a = bytesToIp(ipToBytes(addr));
    return (ifindex ? t.get(`${ifindex}/${a}`) : t.get(a)) ?? null;
  }

  async stale(addr: string, ifindex?: number): Promise<boolean> {
    const t = (await this.#table(addr)).stale;
    const a = bytesToIp(ipToBytes(addr));
    return t.has(ifindex ? `${ifindex}/${a}` : a);
  }

  /** One dump per family per view: a round of lookups costs one request. */
  #table(addr: string): Promise<{ macs: Map<string, string>; stale: Set<string> }> {
    const fam = ipFamily(addr) === 6 ? 10 : 2;
    let table = this.#neigh.get(fam);
    if (!table) {
      table = this.rt.getNeighbors({ family: fam }).then((ns) => {
        const m = new Map<string, string>();
        const stale = new Set<string>();
        for (const n of ns) {
          const st = n.data.state as Record<string, unknown> | undefined;
          if (!n.attrs.dst || !n.attrs.lladdr || n.attrs.lladdr.length !== 6 || !st || !USABLE.some((s) => st[s])) continue;
          const mac = bytesToMac(n.attrs.lladdr);
          const a = bytesToIp(n.attrs.dst);
          m.set(`${n.data.ifindex}/${a}`, mac);
          if (st.stale) stale.add(`${n.data.ifindex}/${a}`);
          if (!m.has(a)) { m.set(a, mac); if (st.stale) stale.add(a); }
        }
        return { macs: m, stale };
      }, () => ({ macs: new Map<string, string>(), stale: new Set<string>() }));
      this.#neigh.set(fam, table);
    }
    return table;
  }

  link(name: string): Promise<LinkInfo | null> {
    let l = this.#links.get(name);
    if (!l) {
      l = this.rt.getLinks().then((ls) => {
        const m = ls.find((x) => x.attrs.ifname === name);
        return m ? info(m) : null;
      }, () => null);
      this.#links.set(name, l);
    }
    return l;
  }

  async #linkByIndex(ifindex: number): Promise<LinkInfo | null> {
    try {
      const [m] = await this.rt.getLink({ index: ifindex });
      return m ? info(m) : null;
    } catch {
      return null;
    }
  }

  close(): void {
    this.rt.socket.close();
  }
}

function info(m: import('netlink').rt.LinkMessage): LinkInfo | null {
  const a = m.attrs;
  if (!a.ifname || m.data.index === undefined) return null;
  const mac = a.address && a.address.length === 6 ? bytesToMac(a.address) : '00:00:00:00:00:00';
  return { name: a.ifname, ifindex: m.data.index, mac, mtu: a.mtu ?? 0 };
}

async function ipJson(args: string[]): Promise<any[]> {
  const { stdout } = await run('ip', ['-j', ...args]);
  return stdout.trim() ? JSON.parse(stdout) : [];
}

class IpCommandView implements NetView {
  async route(addr: string): Promise<Route | null> {
    try {
      const [r] = await ipJson(['route', 'get', addr]);
      if (!r?.dev) return null;
      const l = await this.link(r.dev);
      if (!l) return null;
      return r.gateway ? { dev: r.dev, ifindex: l.ifindex, gateway: r.gateway } : { dev: r.dev, ifindex: l.ifindex };
    } catch {
      return null;
    }
  }

  async neighbour(addr: string, ifindex?: number): Promise<string | null> {
    const fam = ipFamily(addr) === 6 ? '-6' : '-4';
    const rows = await ipJson([fam, 'neigh', 'show', 'to', addr]).catch(() => []);
    const names = ifindex ? await ipJson(['link', 'show']).catch(() => []) : [];
    const dev = names.find((l) => l.ifindex === ifindex)?.ifname;
    for (const n of rows) {
      const states: string[] = (n.state ?? []).map((s: string) => s.toLowerCase());
      if (dev && n.dev !== dev) continue;
      if (n.lladdr && states.some((s) => USABLE.includes(s))) return canonicalMac(n.lladdr) ?? null;
    }
    return null;
  }

  async stale(addr: string, ifindex?: number): Promise<boolean> {
    const fam = ipFamily(addr) === 6 ? '-6' : '-4';
    const rows = await ipJson([fam, 'neigh', 'show', 'to', addr]).catch(() => []);
    const names = ifindex ? await ipJson(['link', 'show']).catch(() => []) : [];
    const dev = names.find((l) => l.ifindex === ifindex)?.ifname;
    const n = rows.find((r) => r.lladdr && (!dev || r.dev === dev));
    return !!n && (n.state ?? []).some((s: string) => s.toLowerCase() === 'stale');
  }

  async link(name: string): Promise<LinkInfo | null> {
    const [l] = await ipJson(['link', 'show', 'dev', name]).catch(() => []);
    return l ? { name: l.ifname, ifindex: l.ifindex, mac: (l.address && canonicalMac(l.address)) || '00:00:00:00:00:00', mtu: l.mtu ?? 0 } : null;
  }

  close(): void {}
}

/** A view of the network of this process's namespace. */
export async function openNetView(): Promise<NetView> {
  const nl = await loadNetlink().catch(() => null);
  if (nl) {
    try {
      return new NetlinkView(nl.createRtNetlink());
    } catch { /* no netlink socket: use ip */ }
  }
  return new IpCommandView();
}

/**
 * Make the kernel resolve an on-link address on `dev`: one empty UDP datagram to the discard
 * port, sent from this process (the kernel resolves the neighbour, or re-confirms a STALE one,
 * to send it; whatever answers does not matter). Not a ping: a process per address made a
 * table of thousands of unresolved reals take minutes a round. An IPv6 link-local address (the
 * usual IPv6 gateway) is scoped to its interface: unscoped, the kernel sends it out of whichever
 * interface's fe80::/64 route comes first, and the neighbour on `dev` is never resolved.
 */
export function probe(addr: string, dev?: string): Promise<void> {
  const v6 = ipFamily(addr) === 6;
  const target = v6 && dev && /^fe[89ab]/i.test(addr) ? `${addr}%${dev}` : addr;
  return new Promise((resolve) => {
    const s = createSocket(v6 ? 'udp6' : 'udp4');
    const done = () => { try { s.close(); } catch { /* closed */ } resolve(); };
    s.once('error', done);
    s.send(Buffer.alloc(0), DISCARD_PORT, target, done);
  });
}
