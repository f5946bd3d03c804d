/**
 * XdpDataplane: the balancer program of bpf/ compiled with the spec's limits, loaded, pinned
 * under a pin directory (default /sys/fs/bpf/sluice), attached to an interface through a bpf_link,
 * and programmed from a ServiceTable. An agent that restarts adopts what is pinned there (program,
 * maps and links) without touching the flow table, and upgrades the program atomically through the
 * links when the object changed.
 *
 * Next hops: each real's route (egress interface, gateway) and next-hop MAC are resolved from the
 * kernel (rtnetlink) and cached; a real whose route leaves by another interface than the
 * balancer's is sent there by XDP_REDIRECT (tx_ports), and the balancer is attached to that
 * interface too, so NAT replies arriving there are rewritten and sent back out of port 0.
 *
 * Pin layout: <pinDir>/prog, <pinDir>/link, <pinDir>/egress/<ifname>, <pinDir>/maps/<name>.
 */
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { compileBpf } from '../../bpf/build.js';
import { Collection } from '../../bpf/collection.js';
import { BpfMap, type TypedMap } from '../../bpf/map.js';
import { native } from '../../bpf/native.js';
import { ensureBpffs, unpin, unpinAll } from '../../bpf/pin.js';
import { Link, Program, ifIndex, xdpAttached, type XdpAttachMode } from '../../bpf/program.js';
import { buildTable } from '../../maglev/index.js';
import { canonicalMac, ipFamily, ipToBytes, macToBytes, bytesToIp } from '../../model/address.js';
import { realKey, vipKey } from '../../model/keys.js';
import type { Dataplane, DataplaneSpec, Service, ServiceReal, ServiceTable, StatsSnapshot, SyncReport } from '../../model/types.js';
import { openNetView, probe, type LinkInfo, type NetView, type Route } from './neigh.js';
import * as S from './structs.js';

export const DEFAULT_PIN_DIR = '/sys/fs/bpf/sluice';
const MAP_NAMES = ['vips', 'vips6', 'rings', 'reals', 'flows', 'flows6', 'nat_back', 'frags', 'nat_frags', 'stats', 'config', 'tx_ports', 'ports'] as const;
type MapName = (typeof MAP_NAMES)[number];
/** Maps whose contents a restart must keep: without them (or with another layout) nothing is adopted. */
const STATE_MAPS: readonly MapName[] = ['vips', 'vips6', 'rings', 'reals', 'flows', 'flows6', 'nat_back'];
/**
 * Outer sources of encapsulated packets: a prefix whose host bits carry the flow hash. Small
 * (8 bits: 256 sources per family, as many conntrack entries on a real that tracks them) and in
 * ranges no site routes: RFC 2544's benchmarking range, and a ULA prefix.
 */
export const DEFAULT_ENCAP4 = '198.18.0.0/24';
export const DEFAULT_ENCAP6 = 'fd00:5151::/120';
const ZERO_MAC = '00:00:00:00:00:00';

/** pino-compatible: (obj, msg) or (msg). */
export interface Logger {
  info(obj: unknown, msg?: string): void;
  warn(obj: unknown, msg?: string): void;
  debug?(obj: unknown, msg?: string): void;
}

export interface XdpDataplaneOptions {
  /** Limits (maxVips, maxReals, ringSize, flowTableSize), xdpMode, gatewayMac, encapSource4/6, interface. */
  spec: DataplaneSpec;
  /** Interface to attach to (default spec.interface); none: load and pin without attaching. */
  interface?: string;
  /** Default /sys/fs/bpf/sluice. */
  pinDir?: string;
  logger?: Logger;
  /** The MAC of an on-link next hop (a real, or a gateway); default: the neighbour table, probing once. Injectable for tests. */
  resolveMac?: (addr: string) => Promise<string | null>;
  /**
   * The route to a real (egress interface, gateway); default: the kernel's. Injectable for tests,
   * as is the older `isOnLink` (every real behind the balancer's own interface, with a gateway or not).
   */
  route?: (addr: string) => Promise<Route | null>;
  isOnLink?: (addr: string) => Promise<boolean>;
  /** An interface's index, MAC and MTU; default: the kernel's. */
  linkInfo?: (name: string) => Promise<LinkInfo | null>;
  /** How long sync() trusts a resolved next hop before it looks again (default 60 s). */
  neighbourTtlMs?: number;
  /** How often sync() probes (pings) an unresolved next hop; the neighbour table is read on every sync (default 5 s). */
  probeIntervalMs?: number;
  /** Extra -D defines for the build (tests: e.g. another HASH_SEED to force a program upgrade). */
  defines?: Record<string, string | number>;
}

interface RealState {
  slot: number;
  gen: number;
  key: string;
  def: S.RealDef;
}

interface VipState {
  id: number;
  key: string;
  meta: S.VipMeta;
  vk: S.VipKey;
  reals: Map<string, RealState>;
  /** In the vips map: a VIP whose first sync failed half-way is written by the next one. */
  inMap: boolean;
}

/** How long a sync waits for the next hops it probed to resolve. */
const PROBE_WAIT_MS = 1000;
/** STALE next hops a refresh probes at most (one datagram each); the others wait for later refreshes. */
const MAX_STALE_PROBES = 64;

/** What is known of the way to one real address. */
interface Hop {
  route: Route | null;
  /** MAC of the next hop (the real on the link, else the route's gateway); null: unresolved. */
  mac: string | null;
  /** When route and mac were last looked up, and when the next hop was last probed. */
  at: number;
  probedAt: number;
  /** The last complete answer: kept while lookups fail, so one failed lookup black-holes nothing. */
  good?: { route: Route | null; mac: string };
}

/** An interface the balancer sends on, other than its own (a tx port >= 1). */
interface Egress {
  port: number;
  ifindex: number;
  link?: Link;
}

function sameDef(a: S.RealDef, b: S.RealDef): boolean {
  return a.addr.equals(b.addr) && a.mac.equals(b.mac) && a.port === b.port && a.gen === b.gen && a.flags === b.flags && a.txPort === b.txPort && a.owner === b.owner;
}

/** The key of a real's slot in its VIP's state: address and port (`10.0.0.11:80`, as stats() names it). */
function slotKey(r: ServiceReal): string {
  return realKey({ address: r.address, port: r.port });
}

/** The route to one of this host's own addresses: no link to send a real's frames on (and no XDP on lo). */
function isLocal(route: Route): boolean {
  return route.dev === 'lo';
}

/** An encap source as the config map holds it: the prefix (host bits zero) and the mask of its host bits (at most 32). */
export function encapPrefix(text: string, fam: 4 | 6): { base: Buffer; mask: Buffer } {
  const [addr, len] = text.split('/');
  const bytes = ipToBytes(addr);
  const total = fam === 4 ? 32 : 128;
  const prefix = len === undefined ? total : Number(len);
  const hostBits = Math.min(32, total - prefix);
  const m = hostBits >= 32 ? 0xffffffff : (2 ** hostBits - 1) >>> 0;
  const mask = Buffer.alloc(4);
  mask.writeUInt32BE(m >>> 0);
  const base = Buffer.from(bytes);
  const last = base.length - 4;
  base.writeUInt32BE((base.readUInt32BE(last) & ~m) >>> 0, last);
  return { base, mask };
}

/**
 * Build the balancer for these limits (cached). scripts/bootstrap calls this with the default
 * limits, so an agent with default limits finds the object built, even where clang is absent.
 */
export function compileBalancer(limits: S.Limits, extra: Record<string, string | number> = {}): Promise<string> {
  return compileBpf({
    source: 'balancer',
    defines: { ...extra, MAX_VIPS: limits.maxVips, MAX_REALS: limits.maxReals, RING_SIZE: limits.ringSize, FLOW_TABLE_SIZE: limits.flowTableSize },
  });
}

/** Key size, value size and entries every map must have for these limits (maps.h). */
function mapShapes(l: S.Limits): Record<MapName, { key: number; value: number; entries: number }> {
  const shape = (n: MapName, entries: number) => ({ key: S.MAP_CODECS[n].key.size, value: S.MAP_CODECS[n].value.size, entries });
  return {
    vips: shape('vips', l.maxVips), vips6: shape('vips6', l.maxVips), rings: shape('rings', l.maxVips * l.ringSize), reals: shape('reals', l.maxReals),
    flows: shape('flows', l.flowTableSize), flows6: shape('flows6', l.flowTableSize), nat_back: shape('nat_back', l.flowTableSize), frags: shape('frags', S.FRAG_TABLE_SIZE), nat_frags: shape('nat_frags', S.FRAG_TABLE_SIZE),
    stats: shape('stats', S.statsIndex.size(l)), config: shape('config', 1), tx_ports: shape('tx_ports', S.MAX_TX_PORTS), ports: shape('ports', S.MAX_TX_PORTS),
  };
}

export class XdpDataplane implements Dataplane {
  readonly kind = 'xdp' as const;
  readonly pinDir: string;
  readonly limits: S.Limits;
  /** The interface attached to (undefined when loaded without attaching). */
  readonly interface?: string;
  /** true when open() found a pinned program and took it over. */
  readonly adopted: boolean;
  /** true when open() replaced an adopted program by a new build (bpf_link update). */
  readonly upgraded: boolean;

  #program: Program;
  #link?: Link;
  #maps: Record<MapName, BpfMap>;
  #col?: Collection;
  #vips: TypedMap<S.VipKey, S.VipMeta>;
  #vips6: TypedMap<S.VipKey, S.VipMeta>;
  #reals: TypedMap<number, S.RealDef>;
  #rings: BpfMap;
  #stats: TypedMap<number, S.Stat>;
  #config: TypedMap<number, S.ConfigVal>;
  #ports: TypedMap<number, S.PortInfo>;
  /** tx port -> ifindex (the devmap XDP_REDIRECT sends through). */
  #txPorts: TypedMap<number, number>;
  #state = new Map<string, VipState>();
  /** slot -> generation, for every real slot (free ones too). */
  #gens: number[];
  #freeSlots: number[];
  #spec: DataplaneSpec;
  #opts: XdpDataplaneOptions;
  #log?: Logger;
  #hops = new Map<string, Hop>();
  #egress = new Map<string, Egress>();
  #unresolved = 0;
  #closed = false;
  #lastTable?: ServiceTable;

  private constructor(a: {
    opts: XdpDataplaneOptions; limits: S.Limits; pinDir: string; program: Program; link?: Link; maps: Record<MapName, BpfMap>;
    col?: Collection; adopted: boolean; upgraded: boolean; iface?: string;
  }) {
    this.pinDir = a.pinDir;
    this.limits = a.limits;
    this.interface = a.iface;
    this.adopted = a.adopted;
    this.upgraded = a.upgraded;
    this.#program = a.program;
    this.#link = a.link;
    this.#maps = a.maps;
    this.#col = a.col;
    this.#spec = a.opts.spec;
    this.#opts = a.opts;
    this.#log = a.opts.logger;
    this.#vips = a.maps.vips.typed(S.vip4Key, S.vipMeta);
    this.#vips6 = a.maps.vips6.typed(S.vipKey, S.vipMeta);
    this.#reals = a.maps.reals.typed(S.u32key, S.realDef);
    this.#rings = a.maps.rings;
    this.#stats = a.maps.stats.typed(S.u32key, S.stat);
    this.#config = a.maps.config.typed(S.u32key, S.config);
    this.#ports = a.maps.ports.typed(S.u32key, S.portInfo);
    this.#txPorts = a.maps.tx_ports.typed(S.u32key, S.u32key);
    this.#gens = new Array(a.limits.maxReals).fill(0);
    this.#freeSlots = [];
  }

  /**
   * Compile with the spec's limits, then adopt what is pinned under pinDir (upgrading the program
   * if the build differs) or load, pin and attach afresh.
   */
  static async open(opts: XdpDataplaneOptions): Promise<XdpDataplane> {
    const spec = opts.spec;
    const limits: S.Limits = { maxVips: spec.maxVips, maxReals: spec.maxReals, ringSize: spec.ringSize, flowTableSize: spec.flowTableSize };
    const iface = opts.interface ?? spec.interface;
    const pinDir = opts.pinDir ?? DEFAULT_PIN_DIR;
    const obj = await compileBalancer(limits, opts.defines);
    ensureBpffs();
    const mapDir = join(pinDir, 'maps');
    const log = opts.logger;
    let dp: XdpDataplane;
    if (existsSync(join(pinDir, 'prog')) && STATE_MAPS.every((m) => existsSync(join(mapDir, m)))) {
      const pinned = Object.fromEntries(MAP_NAMES.filter((m) => existsSync(join(mapDir, m))).map((m) => [m, BpfMap.openPinned(join(mapDir, m))])) as Partial<Record<MapName, BpfMap>>;
      const closePinned = () => { for (const x of Object.values(pinned)) x?.close(); };
      const want = mapShapes(limits);
      for (const m of ['rings', 'reals', 'flows', 'flows6', 'vips', 'vips6'] as const) {
        if (pinned[m]!.maxEntries !== want[m].entries) {
          closePinned();
          throw Object.assign(new Error(`pinned map ${m} under ${pinDir} has ${pinned[m]!.maxEntries} entries, the spec wants ${want[m].entries}: limits changed (remove ${pinDir} to start afresh, losing the flow table)`), { code: 'ELIMITS' });
        }
      }
      // Maps that hold no state a restart needs (counters, config, ports, fragments) are made
      // afresh when this version's layout differs or an older version had none.
      const reuse: Partial<Record<MapName, BpfMap>> = {};
      const fresh: MapName[] = [];
      for (const m of MAP_NAMES) {
        const p = pinned[m];
        const w = want[m];
        if (p && p.keySize === w.key && p.valueSize === w.value && p.maxEntries === w.entries) { reuse[m] = p; continue; }
        if (STATE_MAPS.includes(m)) {
          closePinned();
          throw Object.assign(new Error(`pinned map ${m} under ${pinDir} has another layout than this build's (remove ${pinDir} to start afresh, losing the flow table)`), { code: 'ELAYOUT' });
        }
        p?.close();
        fresh.push(m);
      }
      const old = Program.openPinned(join(pinDir, 'prog'));
      const linkPin = join(pinDir, 'link');
      let link = existsSync(linkPin) ? Link.openPinned(linkPin) : undefined;
      const egressLinks = XdpDataplane.#openEgressPins(pinDir);
      const release = () => { link?.close(); old.close(); for (const x of Object.values(reuse)) x?.close(); for (const e of egressLinks.values()) e.close(); };
      if (link && iface && link.info().ifindex !== ifIndex(iface)) {
        release();
        throw Object.assign(new Error(`the program pinned under ${pinDir} is attached to another interface than ${iface}`), { code: 'EBUSY' });
      }
      // Load the current build over the pinned maps; keep whichever program is the same code.
      let col: Collection;
      try {
        col = Collection.load(obj, { reuseMaps: reuse as Record<string, BpfMap> });
      } catch (e) {
        release();
        throw Object.assign(new Error(`cannot load this build over the maps pinned under ${pinDir} (their layout changed?): ${(e as Error).message}`), { code: 'ELAYOUT', cause: e });
      }
      const newProg = col.program('balancer');
      let program = old;
      // The tag hashes the instructions, not the maps: new maps need the new program either way.
      const upgraded = newProg.tag !== old.tag || fresh.length > 0;
      if (upgraded) {
        if (link) link.update(newProg, old);
        for (const e of egressLinks.values()) e.update(newProg, old);
        unpin(join(pinDir, 'prog'));
        newProg.pin(join(pinDir, 'prog'));
        old.close();
        program = newProg;
        log?.info({ pinDir, oldTag: old.tag, newTag: newProg.tag, recreated: fresh }, 'xdp: program upgraded in place (bpf_link update)');
      }
      for (const m of fresh) {
        unpin(join(mapDir, m));
        col.map(m).pin(join(mapDir, m));
      }
      if (link && iface) {
        try {
          link = XdpDataplane.#inMode(program, link, iface, spec.xdpMode as XdpAttachMode, linkPin, log);
        } catch (e) {
          col.close();
          release();
          throw e;
        }
      }
      if (!link && iface) {
        link = program.attachXdp(iface, spec.xdpMode as XdpAttachMode);
        link.pin(linkPin);
      }
      const maps = Object.fromEntries(MAP_NAMES.map((m) => [m, reuse[m] ?? col.map(m)])) as Record<MapName, BpfMap>;
      dp = new XdpDataplane({ opts, limits, pinDir, program, link, maps, col: upgraded ? col : undefined, adopted: true, upgraded, iface });
      if (!upgraded) col.close();
      dp.#loadState(egressLinks);
      log?.info({ pinDir, vips: dp.#state.size, upgraded }, 'xdp: adopted the pinned program and maps');
    } else {
      if (existsSync(join(pinDir, 'prog'))) {
        log?.warn({ pinDir, missing: STATE_MAPS.filter((m) => !existsSync(join(mapDir, m))) }, 'xdp: the pinned maps are not this version\'s: starting afresh (the flow table is lost)');
        XdpDataplane.#detachPinned(pinDir);
      }
      unpinAll(pinDir);
      mkdirSync(mapDir, { recursive: true });
      const col = Collection.load(obj);
      const maps = Object.fromEntries(MAP_NAMES.map((m) => [m, col.map(m)])) as Record<MapName, BpfMap>;
      const program = col.program('balancer');
      let link: Link | undefined;
      try {
        for (const m of MAP_NAMES) maps[m].pin(join(mapDir, m));
        program.pin(join(pinDir, 'prog'));
        if (iface) {
          link = program.attachXdp(iface, spec.xdpMode as XdpAttachMode);
          link.pin(join(pinDir, 'link'));
        }
      } catch (e) {
        link?.close();
        col.close();
        unpinAll(pinDir);
        throw e;
      }
      dp = new XdpDataplane({ opts, limits, pinDir, program, link, maps, col, adopted: false, upgraded: false, iface });
      dp.#freeSlots = Array.from({ length: limits.maxReals }, (_, i) => limits.maxReals - 1 - i);
      log?.info({ pinDir, iface, mode: spec.xdpMode, limits }, 'xdp: loaded and attached');
    }
    // The config's flags follow the VIPs in the maps (an adopted program keeps answering NAT
    // replies and port-0 VIPs before the first sync); its other fields follow the spec.
    dp.#writeConfig();
    await dp.#writeOwnPort().catch((e) => log?.warn({ err: (e as Error).message }, `xdp: cannot read ${iface}'s MAC and MTU: ipip packets are not checked against its MTU`));
    return dp;
  }

  /**
   * An adopted link attaches in the mode it was made with; when the spec asks for the other one
   * (the config changed across a restart), it is made again in that mode, not silently kept. The
   * kernel holds one mode at a time: the old link goes first (packets meanwhile pass to the
   * stack, for the moment of one attach); should the new mode be refused, the old one is restored
   * and the refusal thrown.
   */
  static #inMode(program: Program, link: Link, ifname: string, mode: XdpAttachMode, pin: string, log?: Logger): Link {
    const q = xdpAttached(ifname);
    const id = link.info().progId;
    const now: XdpAttachMode | undefined = q.nativeProgId === id ? 'native' : q.genericProgId === id ? 'generic' : undefined;
    if (!now || now === mode) return link;
    link.detach();
    link.close();
    unpin(pin);
    let next: Link;
    try {
      next = program.attachXdp(ifname, mode);
    } catch (e) {
      const back = program.attachXdp(ifname, now);
      back.pin(pin);
      back.close();
      throw e;
    }
    next.pin(pin);
    log?.warn({ ifname, from: now, to: mode }, `xdp: ${ifname} was attached in ${now} mode, the spec asks ${mode}: re-attached in ${mode} (flows kept)`);
    return next;
  }

  static #openEgressPins(pinDir: string): Map<string, Link> {
    const out = new Map<string, Link>();
    const dir = join(pinDir, 'egress');
    if (!existsSync(dir)) return out;
    for (const name of readdirSync(dir)) out.set(name, Link.openPinned(join(dir, name)));
    return out;
  }

  /** Pins of an older layout are about to go: their links must not stay attached. */
  static #detachPinned(pinDir: string): void {
    const links = [join(pinDir, 'link'), ...(existsSync(join(pinDir, 'egress')) ? readdirSync(join(pinDir, 'egress')).map((n) => join(pinDir, 'egress', n)) : [])];
    for (const p of links) {
      if (!existsSync(p)) continue;
      try {
        const l = Link.openPinned(p);
        l.detach();
        l.close();
      } catch { /* gone already */ }
    }
  }

  /** The program (for BPF_PROG_TEST_RUN in tests and benches). */
  get program(): Program {
    return this.#program;
  }

  map(name: MapName): BpfMap {
    return this.#maps[name];
  }

  /** Rebuild the in-memory view (VIP ids, real slots and generations, egress ports) from the pinned maps. */
  #loadState(egressLinks: Map<string, Link>): void {
    const byId = new Map<number, VipState>();
    for (const [vk, meta] of [...this.#vips.entries(), ...this.#vips6.entries()]) {
      const address = bytesToIp(vk.addr);
      const proto = vk.proto === S.IPPROTO.tcp ? 'tcp' : 'udp';
      const key = vipKey({ address, port: vk.port, protocol: proto });
      const st: VipState = { id: meta.id, key, meta, vk, reals: new Map(), inMap: true };
      this.#state.set(key, st);
      byId.set(meta.id, st);
    }
    this.#freeSlots = [];
    for (const [slot, def] of this.#reals.entries()) {
      this.#gens[slot] = def.gen;
      const owner = def.owner ? byId.get(def.owner - 1) : undefined;
      if (!owner) {
        this.#freeSlots.push(slot);
        continue;
      }
      const v6 = (def.flags & S.REAL_F_IPV6) !== 0;
      const address = bytesToIp(v6 ? def.addr : def.addr.subarray(0, 4));
      const key = realKey({ address, port: def.port });
      owner.reals.set(key, { slot, gen: def.gen, key, def });
    }
    this.#freeSlots.reverse();
    // Egress ports: the devmap says which port is which ifindex, the link pins which interface.
    const byIfindex = new Map<number, number>();
    // (One lookup a key: a devmap has no batch lookup.)
    for (const k of this.#maps.tx_ports.keys()) {
      const port = S.u32key.decode(k, 0);
      const ifindex = this.#txPorts.get(port);
      if (ifindex !== undefined && port > 0) byIfindex.set(ifindex, port);
    }
    for (const [name, link] of egressLinks) {
      let ifindex = 0;
      try { ifindex = ifIndex(name); } catch { /* the interface is gone */ }
      const port = byIfindex.get(ifindex);
      if (ifindex && port) this.#egress.set(name, { port, ifindex, link });
      else this.#dropLink(name, link);
    }
  }

  /** Config: NAT and wildcard flags from the VIPs (the given services, else the maps), the spec's gateway and encap sources. */
  #writeConfig(services?: Service[]): boolean {
    const spec = this.#spec;
    let nat: boolean, wildcard: boolean;
    if (services) {
      nat = services.some((s) => s.mode === 'nat');
      wildcard = services.some((s) => s.port === 0);
    } else {
      const vips = [...this.#state.values()];
      nat = vips.some((v) => v.meta.mode === S.MODE.nat);
      wildcard = vips.some((v) => v.vk.port === 0);
    }
    const flags = (nat ? S.CFG_F_NAT : 0) | (wildcard ? S.CFG_F_WILDCARD : 0);
    const e4 = encapPrefix(spec.encapSource4 ?? DEFAULT_ENCAP4, 4);
    const e6 = encapPrefix(spec.encapSource6 ?? DEFAULT_ENCAP6, 6);
    const want: S.ConfigVal = {
      gwMac: macToBytes(spec.gatewayMac ? canonicalMac(spec.gatewayMac) ?? ZERO_MAC : ZERO_MAC),
      flags,
      encapSrc4: e4.base, encapSrc6: e6.base, encapMask4: e4.mask, encapMask6: e6.mask,
    };
    const cur = this.#config.get(0);
    if (cur && cur.flags === want.flags && cur.gwMac.equals(want.gwMac) && cur.encapSrc4.equals(want.encapSrc4) && cur.encapSrc6.equals(want.encapSrc6)
      && cur.encapMask4.equals(want.encapMask4) && cur.encapMask6.equals(want.encapMask6)) return false;
    this.#config.set(0, want);
    return true;
  }

  // ---- next hops -------------------------------------------------------------------------

  async #linkInfo(view: () => Promise<NetView>, name: string): Promise<LinkInfo | null> {
    if (this.#opts.linkInfo) return this.#opts.linkInfo(name);
    return (await view()).link(name);
  }

  /** Port 0: the balancer's own interface, for NAT replies that arrive on another, and ipip's MTU. */
  async #writeOwnPort(view?: () => Promise<NetView>): Promise<boolean> {
    if (!this.interface) return false;
    let v: NetView | undefined;
    const get = view ?? (async () => (v ??= await openNetView()));
    try {
      const l = await this.#linkInfo(get, this.interface);
      if (!l) return false;
      return this.#writePort(0, l);
    } finally {
      v?.close();
    }
  }

  #writePort(port: number, l: LinkInfo): boolean {
    const want: S.PortInfo = { ifindex: l.ifindex, mac: macToBytes(l.mac), mtu: Math.min(0xffff, l.mtu) };
    const cur = this.#ports.get(port);
    const curIf = this.#txPorts.get(port);
    if (curIf !== l.ifindex) this.#txPorts.set(port, l.ifindex);
    if (cur && cur.ifindex === want.ifindex && cur.mac.equals(want.mac) && cur.mtu === want.mtu && curIf === l.ifindex) return false;
    this.#ports.set(port, want);
    return true;
  }

  /** The route to a real: injected, or legacy `isOnLink` (own interface), or the kernel's. */
  async #routeOf(view: () => Promise<NetView>, addr: string): Promise<Route | null> {
    if (this.#opts.route) return this.#opts.route(addr);
    if (this.#opts.isOnLink) {
      const on = await this.#opts.isOnLink(addr);
      return { dev: this.interface ?? '', ifindex: 0, ...(on ? {} : { gateway: '' }) };
    }
    return (await view()).route(addr);
  }

  /**
   * Look up routes and next-hop MACs for these addresses: the neighbour table every time (one
   * netlink dump), a probe (one datagram each) for those still missing whose last probe
   * is older than probeIntervalMs, and nothing for those resolved within neighbourTtlMs unless
   * `force`. A failed lookup keeps the last good answer.
   */
  async #resolveHops(needMac: Set<string>, routeOnly: Set<string>, force: boolean, view: () => Promise<NetView>): Promise<void> {
    const now = Date.now();
    const ttl = this.#opts.neighbourTtlMs ?? 60_000;
    const probeEvery = this.#opts.probeIntervalMs ?? 5_000;
    const todo = [...new Set([...needMac, ...routeOnly])].filter((a) => {
      const h = this.#hops.get(a);
      return force || !h || (needMac.has(a) && !h.mac) || now - h.at > ttl;
    });
    if (!todo.length) return;
    const routes = await Promise.all(todo.map((a) => this.#routeOf(view, a).catch(() => null)));
    const nextHop = (a: string, r: Route | null) => (r?.gateway ? r.gateway : a);
    const injected = this.#opts.resolveMac;
    const lookup = async (a: string, r: Route | null): Promise<string | null> => {
      if (!needMac.has(a) || r?.gateway === '') return null; /* a MAC of its own; legacy isOnLink: a gateway of unknown address */
      if (injected) return injected(nextHop(a, r));
      return (await view()).neighbour(nextHop(a, r), r?.ifindex || undefined);
    };
    let macs = await Promise.all(todo.map((a, i) => lookup(a, routes[i]).catch(() => null)));
    if (!injected) {
      const toProbe = todo.map((a, i) => ({ a, i })).filter(({ a, i }) => needMac.has(a) && !macs[i] && routes[i]?.gateway !== '' && (force || now - (this.#hops.get(a)?.probedAt ?? 0) > probeEvery));
      if (force) {
        // A refresh also has the kernel re-confirm STALE next hops (it never does for frames XDP
        // sends), so that a MAC that changed is learnt; the longest unprobed first, a bounded few.
        const stale: Array<{ a: string; i: number }> = [];
        for (const [i, a] of todo.entries()) {
          if (!needMac.has(a) || !macs[i] || routes[i]?.gateway === '') continue;
          if (await (await view()).stale(nextHop(a, routes[i]), routes[i]?.ifindex || undefined).catch(() => false)) stale.push({ a, i });
        }
        stale.sort((x, y) => (this.#hops.get(x.a)?.probedAt ?? 0) - (this.#hops.get(y.a)?.probedAt ?? 0));
        toProbe.push(...stale.slice(0, MAX_STALE_PROBES));
      }
      if (toProbe.length) {
        const hops = new Map<string, { addr: string; dev?: string }>();
        for (const { a, i } of toProbe) {
          const addr = nextHop(a, routes[i]);
          hops.set(`${routes[i]?.dev ?? ''}/${addr}`, { addr, dev: routes[i]?.dev || undefined });
        }
        await Promise.all([...hops.values()].map((h) => probe(h.addr, h.dev)));
        for (const { a } of toProbe) { const h = this.#hops.get(a); if (h) h.probedAt = Date.now(); }
        // The probes changed the neighbour table: read it again, in a new view, until every probed
        // next hop resolved or a second went by (the datagrams wait for the kernel to resolve them).
        const until = Date.now() + PROBE_WAIT_MS;
        for (;;) {
          const fresh = await openNetView();
          try {
            for (const { a, i } of toProbe) if (!macs[i]) macs[i] = await fresh.neighbour(nextHop(a, routes[i]), routes[i]?.ifindex || undefined).catch(() => null);
          } finally {
            fresh.close();
          }
          if (toProbe.every(({ i }) => macs[i]) || Date.now() >= until) break;
          await new Promise((r) => setTimeout(r, 25));
        }
        for (const { a } of toProbe) { if (!this.#hops.has(a)) this.#hops.set(a, { route: null, mac: null, at: 0, probedAt: Date.now() }); }
      }
    }
    macs = macs.map((m) => (m ? canonicalMac(m) : null));
    todo.forEach((a, i) => {
      const prev = this.#hops.get(a);
      const route = routes[i] ?? prev?.good?.route ?? null;
      const mac = macs[i];
      const h: Hop = { route, mac, at: Date.now(), probedAt: prev?.probedAt ?? 0, good: mac ? { route, mac } : prev?.good };
      this.#hops.set(a, h);
    });
  }

  /** The egress port of an interface, attaching the balancer to it on first use (sync then writes its devmap entry and port info). */
  #egressPort(route: Route): number {
    if (!this.interface || !route.dev || route.dev === this.interface) return 0;
    const e = this.#egress.get(route.dev);
    if (e) return e.port;
    const used = new Set([...this.#egress.values()].map((x) => x.port));
    let port = 1;
    while (used.has(port)) port++;
    if (port >= S.MAX_TX_PORTS) {
      this.#log?.warn({ dev: route.dev }, `xdp: no tx port left for ${route.dev} (${S.MAX_TX_PORTS - 1} egress interfaces at most); its reals are sent out of ${this.interface}`);
      return 0;
    }
    const eg: Egress = { port, ifindex: route.ifindex || ifIndex(route.dev) };
    // The balancer runs there too: it rewrites NAT replies arriving on it, and drivers that
    // transmit redirected frames only with an XDP program of their own get one.
    try {
      const dir = join(this.pinDir, 'egress');
      mkdirSync(dir, { recursive: true });
      eg.link = this.#program.attachXdp(route.dev, this.#spec.xdpMode as XdpAttachMode);
      eg.link.pin(join(dir, route.dev));
    } catch (e) {
      eg.link?.close();
      eg.link = undefined;
      this.#log?.warn({ dev: route.dev, err: (e as Error).message }, `xdp: cannot attach to egress interface ${route.dev}: frames are redirected there, but NAT replies arriving on it are not rewritten`);
    }
    this.#egress.set(route.dev, eg);
    this.#log?.info({ dev: route.dev, port }, `xdp: egress interface ${route.dev} is tx port ${port}`);
    return port;
  }

  #dropLink(name: string, link?: Link): void {
    try { link?.detach(); } catch { /* gone */ }
    link?.close();
    unpin(join(this.pinDir, 'egress', name));
  }

  /** After a sync: ports no real uses any more lose their devmap entry and their attachment. */
  #releaseEgress(used: Set<number>): string[] {
    const out: string[] = [];
    for (const [name, e] of [...this.#egress]) {
      if (used.has(e.port)) continue;
      this.#txPorts.delete(e.port);
      this.#ports.set(e.port, { ifindex: 0, mac: Buffer.alloc(6), mtu: 0 });
      this.#dropLink(name, e.link);
      this.#egress.delete(name);
      out.push(`-egress ${name}`);
    }
    return out;
  }

  /** A real as the program sees it, from the service and what is known of the way to it. */
  #realDef(svc: Service, r: ServiceReal, slot: number, gen: number, owner: number): { def: S.RealDef; usable: boolean; why?: string } {
    const v6 = ipFamily(r.address) === 6;
    const hop = this.#hops.get(r.address);
    const route = hop?.route ?? hop?.good?.route ?? null;
    let mac = r.mac ? canonicalMac(r.mac) : null;
    let why: string | undefined;
    const offLink = route?.gateway !== undefined;
    if (route && isLocal(route)) why = `an address of this host (routed via ${route.dev}): a real must be reached over a link`;
    else if (!mac) {
      if (svc.mode === 'dsr' && offLink && route?.gateway) why = `not on a link of the balancer (route via ${route.gateway})`;
      else if (svc.mode === 'ipip' && offLink && this.#spec.gatewayMac) mac = canonicalMac(this.#spec.gatewayMac);
      else {
        mac = hop?.mac ?? hop?.good?.mac ?? null;
        if (!mac) why = offLink ? `no MAC for its gateway${route?.gateway ? ` ${route.gateway}` : ''} (neighbour unresolved)` : 'no MAC (neighbour unresolved)';
      }
    }
    const usable = !why && !!mac;
    const down = r.state === 'down' || !usable;
    const txPort = route && usable ? this.#egress.get(route.dev)?.port ?? 0 : 0;
    return {
      def: {
        addr: S.addr16(r.address),
        mac: mac ? macToBytes(mac) : Buffer.alloc(6),
        port: r.port,
        gen,
        flags: (down ? S.REAL_F_DOWN : 0) | (v6 ? S.REAL_F_IPV6 : 0),
        txPort,
        owner,
      },
      usable,
      why,
    };
  }

  #syncing: Promise<unknown> = Promise.resolve();

  #serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#syncing.then(fn);
    this.#syncing = run.catch(() => undefined);
    return run;
  }

  /** Make the maps hold `desired`: VIPs, reals (slots), rings (changed slots only), config, ports. Calls are serialized. */
  sync(desired: ServiceTable): Promise<SyncReport> {
    return this.#serialize(() => this.#sync(desired, false));
  }

  /**
   * Look again at every real's route and next-hop MAC, and at the interfaces' MACs and MTUs, and
   * re-sync the last table with what changed (a real whose MAC became resolvable joins its ring,
   * one whose MAC changed is sent to the new one). Resolves true when the maps changed. The agent
   * calls this periodically (every 10-30 s); a sync() between calls re-reads only the missing.
   */
  refreshNeighbours(): Promise<boolean> {
    return this.#serialize(async () => {
      if (this.#closed || !this.#lastTable) return false;
      const r = await this.#sync(this.#lastTable, true);
      return r.changes.some((c) => !c.startsWith('!'));
    });
  }

  async #sync(desired: ServiceTable, force: boolean): Promise<SyncReport> {
    if (this.#closed) throw Object.assign(new Error('dataplane is closed'), { code: 'ECLOSED' });
    const report: SyncReport = { added: 0, updated: 0, removed: 0, changes: [] };
    const want = new Map(desired.services.map((s) => [vipKey(s), s]));
    const L = this.limits;

    // 0. What is known of the way to each real: looked up before any map is written.
    const usedPorts = new Set<number>([0]);
    let v: NetView | undefined;
    const view = async () => (v ??= await openNetView());
    try {
      const reals = desired.services.flatMap((s) => s.reals);
      const routeOnly = new Set(reals.filter((r) => r.mac).map((r) => r.address));
      const needMac = new Set(reals.filter((r) => !r.mac).map((r) => r.address));
      await this.#resolveHops(needMac, routeOnly, force, view);
      if (await this.#writeOwnPort(view)) report.changes.push('port 0');
      // Egress interfaces, with their devmap entry, MAC and MTU, before a real points at them.
      for (const a of new Set(reals.map((r) => r.address))) {
        const h = this.#hops.get(a);
        const route = h?.route ?? h?.good?.route;
        if (route && !isLocal(route)) usedPorts.add(this.#egressPort(route));
      }
      for (const [name, e] of this.#egress) {
        const l = await this.#linkInfo(view, name);
        if (l && this.#writePort(e.port, l)) report.changes.push(`port ${e.port} (${name})`);
      }
    } finally {
      v?.close();
    }

    // Room for the new VIPs and (VIP, real) pairs, checked before any map is written: a table
    // that does not fit changes nothing.
    const room = this.#checkRoom(want);

    // 1. VIPs that go: out of the vips map first (no new packets), then free their real slots.
    for (const [key, st] of [...this.#state]) {
      if (want.has(key)) continue;
      this.#vipMap(st.vk).delete(st.vk);
      this.#freeRealSlots([...st.reals.values()]);
      this.#ringInputs.delete(st.id);
      this.#state.delete(key);
      report.removed++;
      report.changes.push(`-vip ${key}`);
    }

    // At the limit, the new pairs need the slots of reals that go in this sync before the usual
    // order (new reals first, gone ones last) would free them.
    if (room.newPairs > this.#freeSlots.length) this.#shrinkFirst(want, room.newPairs, report);

    const usedIds = new Set([...this.#state.values()].map((s) => s.id));
    const unresolved = new Map<string, string>();
    for (const [key, svc] of want) {
      let st = this.#state.get(key);
      const meta: S.VipMeta = { id: st?.id ?? -1, mode: S.MODE[svc.mode], flags: (svc.hash === 'src-ip' ? S.VIP_F_SRC_IP_HASH : 0) | (ipFamily(svc.address) === 6 ? S.VIP_F_IPV6 : 0) };
      const isNew = !st;
      if (!st) {
        let id = 0;
        while (usedIds.has(id)) id++;
        if (id >= L.maxVips) throw Object.assign(new Error(`no room for VIP ${key}: the data plane holds ${L.maxVips} VIPs (dataplane.maxVips)`), { code: 'ENOSPC' });
        usedIds.add(id);
        meta.id = id;
        st = { id, key, meta, vk: { addr: ipToBytes(svc.address), port: svc.port, proto: S.IPPROTO[svc.protocol] }, reals: new Map(), inMap: false };
        this.#state.set(key, st);
        this.#zeroStats([S.statsIndex.vip(id)]);
      }

      // 2. Reals. A slot the new ring may point at is written before the ring; a slot marked
      //    down only after the ring stops pointing at it, so no new flow meets a real marked
      //    down (the program would drop it) or is sent to it.
      const wantReals = new Map(svc.reals.map((r) => [slotKey(r), r]));
      const gone = [...st.reals.values()].filter((r) => !wantReals.has(r.key));
      const before: Array<[number, S.RealDef]> = [];
      const after: Array<[number, S.RealDef]> = [];
      const inRing: Array<{ id: string; weight: number; slot: number }> = [];
      for (const [rk, r] of wantReals) {
        let rs = st.reals.get(rk);
        if (!rs) {
          const slot = this.#freeSlots.pop();
          if (slot === undefined) throw Object.assign(new Error(`no room for real ${rk} of ${key}: the data plane holds ${L.maxReals} (VIP, real) pairs (dataplane.maxReals)`), { code: 'ENOSPC' });
          const gen = (this.#gens[slot] + 1) >>> 0;
          this.#gens[slot] = gen;
          this.#zeroStats([S.statsIndex.real(L, slot)]);
          rs = { slot, gen, key: rk, def: undefined as unknown as S.RealDef };
          st.reals.set(rk, rs);
          if (!isNew) { report.added++; report.changes.push(`+real ${key} ${rk}`); }
        }
        const { def, usable, why } = this.#realDef(svc, r, rs.slot, rs.gen, st.id + 1);
        if (!usable) {
          report.changes.push(`!real ${key} ${rk}: ${why}; kept out of the ring`);
          unresolved.set(r.address, why!);
        }
        if (!rs.def || !sameDef(rs.def, def)) {
          if (rs.def && !isNew) { report.updated++; report.changes.push(`~real ${key} ${rk} (${r.state}${usable ? '' : ', unresolved'})`); }
          rs.def = def;
          ((def.flags & S.REAL_F_DOWN) ? after : before).push([rs.slot, def]);
        }
        // Maglev identity: the address, plus the port only when the real has its own (src/maglev).
        const ringId = realKey({ address: r.address, port: r.port !== svc.port ? r.port : undefined });
        if (r.state === 'up' && r.weight > 0 && usable) inRing.push({ id: ringId, weight: r.weight, slot: rs.slot });
      }
      if (before.length) this.#reals.setMany(before);

      // 3. The ring: only the slots that changed, in one batch.
      const changed = this.#writeRing(st.id, inRing);
      if (changed) report.changes.push(`ring ${key}: ${changed} slots`);
      if (after.length) this.#reals.setMany(after);

      // 4. The VIP itself (new, or mode/hash changed), once its ring is ready.
      if (isNew || !st.inMap || st.meta.mode !== meta.mode || st.meta.flags !== meta.flags) {
        this.#vipMap(st.vk).set(st.vk, meta);
        st.inMap = true;
        if (isNew) { report.added++; report.changes.push(`+vip ${key} (${svc.mode}, ${svc.hash}, id ${st.id}, ${svc.reals.length} reals)`); }
        else { report.updated++; report.changes.push(`~vip ${key} (${svc.mode}, ${svc.hash})`); }
        // Another mode: the flows the VIP remembers are re-chosen once, in the new mode (nat
        // creates a flow's way back only when it chooses the flow's real: without this, a UDP
        // client the VIP knew from before a switch to nat never got a reply rewritten back).
        if (!isNew && st.meta.mode !== meta.mode) this.#renewGens(st);
        st.meta = meta;
      }

      // 5. Reals that went (no longer in the ring): their flows move (DOWN), the slot is free
      //    for reuse (with a new gen).
      if (gone.length) {
        this.#freeRealSlots(gone);
        for (const g of gone) { st.reals.delete(g.key); report.removed++; report.changes.push(`-real ${key} ${g.key}`); }
      }
    }

    this.#lastTable = desired;
    if (this.#writeConfig(desired.services)) report.changes.push('config');
    report.changes.push(...this.#releaseEgress(usedPorts));
    this.#noteUnresolved(unresolved);
    if (report.changes.length) this.#log?.info({ added: report.added, updated: report.updated, removed: report.removed }, `xdp sync: ${report.changes.join('; ')}`);
    return report;
  }

  /**
   * Throws ENOSPC, before anything is written, when `want` needs more VIP ids or real slots than
   * the limits hold once the VIPs and reals it drops are freed; else how many new (VIP, real)
   * pairs it brings.
   */
  #checkRoom(want: Map<string, Service>): { newPairs: number } {
    const L = this.limits;
    let vips = 0, newPairs = 0, freed = 0;
    for (const [key, st] of this.#state) if (!want.has(key)) freed += st.reals.size;
    for (const [key, svc] of want) {
      vips++;
      const st = this.#state.get(key);
      const keys = new Set(svc.reals.map(slotKey));
      for (const k of keys) if (!st?.reals.has(k)) newPairs++;
      if (st) for (const k of st.reals.keys()) if (!keys.has(k)) freed++;
    }
    if (vips > L.maxVips) throw Object.assign(new Error(`no room for ${vips} VIPs: the data plane holds ${L.maxVips} (dataplane.maxVips)`), { code: 'ENOSPC' });
    const free = this.#freeSlots.length + freed;
    if (newPairs > free) throw Object.assign(new Error(`no room for ${newPairs} new (VIP, real) pairs: ${free} of the data plane's ${L.maxReals} are free (dataplane.maxReals)`), { code: 'ENOSPC' });
    return { newPairs };
  }

  /**
   * Free the slots of reals that go before any new real takes one, VIP by VIP until `need` slots
   * are free: each such VIP's ring stops pointing at them first (their entries go to the VIP's
   * remaining reals in turn, NO_REAL if none remain: a counted drop_no_real until this sync writes
   * the VIP's new ring a moment later), then they are marked down and freed.
   */
  #shrinkFirst(want: Map<string, Service>, need: number, report: SyncReport): void {
    for (const [key, svc] of want) {
      if (this.#freeSlots.length >= need) return;
      const st = this.#state.get(key);
      if (!st) continue;
      const keys = new Set(svc.reals.map(slotKey));
      const gone = [...st.reals.values()].filter((r) => !keys.has(r.key));
      if (!gone.length) continue;
      const goneSlots = new Set(gone.map((r) => r.slot));
      const cur = this.readRing(st.id);
      const kept = [...new Set(cur)].filter((x) => x !== S.NO_REAL && !goneSlots.has(x));
      let k = 0;
      const interim = cur.map((x) => (goneSlots.has(x) ? (kept.length ? kept[k++ % kept.length] : S.NO_REAL) : x));
      this.#writeRingDiff(st.id, cur, interim);
      this.#ringInputs.delete(st.id);
      this.#freeRealSlots(gone);
      for (const g of gone) { st.reals.delete(g.key); report.removed++; report.changes.push(`-real ${key} ${g.key}`); }
    }
  }

  /** Reals without a next hop: counted on every sync, warned about when they become so. */
  #warned = new Map<string, string>();
  #noteUnresolved(now: Map<string, string>): void {
    this.#unresolved += now.size;
    for (const [a, why] of now) {
      if (this.#warned.get(a) === why) continue;
      this.#log?.warn({ real: a, route: this.#hops.get(a)?.route ?? null }, `xdp: real ${a}: ${why}; kept out of its rings until that changes`);
    }
    for (const a of this.#warned.keys()) if (!now.has(a)) this.#log?.info({ real: a, mac: this.#hops.get(a)?.mac }, `xdp: real ${a}: next hop resolved`);
    this.#warned = now;
  }

  #vipMap(vk: S.VipKey): TypedMap<S.VipKey, S.VipMeta> {
    return vk.addr.length === 4 ? this.#vips : this.#vips6;
  }

  /** New generations for every real slot of a VIP, after its mode changed: its flows move on their next packet. */
  #renewGens(st: VipState): void {
    const defs: Array<[number, S.RealDef]> = [];
    for (const rs of st.reals.values()) {
      rs.gen = this.#gens[rs.slot] = (this.#gens[rs.slot] + 1) >>> 0;
      if (!rs.def) continue;
      rs.def = { ...rs.def, gen: rs.gen };
      defs.push([rs.slot, rs.def]);
    }
    if (defs.length) this.#reals.setMany(defs);
  }

  #freeRealSlots(rs: RealState[]): void {
    if (!rs.length) return;
    this.#reals.setMany(rs.map((r) => [r.slot, { ...r.def, flags: S.REAL_F_DOWN | (r.def.flags & S.REAL_F_IPV6), owner: 0 }] as const));
    for (const r of rs) this.#freeSlots.push(r.slot);
  }

  #zeroStats(indices: number[]): void {
    this.#stats.setMany(indices.map((i) => [i, { packets: 0, bytes: 0, newFlows: 0 }] as const));
  }

  /** Read one VIP's ring (one batch syscall). */
  readRing(id: number): Uint32Array {
    const n = this.limits.ringSize;
    const keys = Buffer.alloc(n * 4);
    const values = Buffer.alloc(n * 4);
    const out = Buffer.alloc(4);
    let inBatch: Buffer | null = null;
    if (id > 0) { inBatch = Buffer.alloc(4); inBatch.writeUInt32LE(id * n - 1); }
    const r = native().mapLookupBatch(this.#rings.fd, inBatch, out, keys, values, n);
    const ring = new Uint32Array(n);
    for (let i = 0; i < r.count; i++) ring[keys.readUInt32LE(i * 4) - id * n] = values.readUInt32LE(i * 4);
    return ring;
  }

  /** Per VIP id: the inputs its ring was last built from (a rebuild costs a Maglev table). */
  #ringInputs = new Map<number, string>();

  #writeRing(id: number, reals: Array<{ id: string; weight: number; slot: number }>): number {
    const n = this.limits.ringSize;
    // Maglev over the reals sorted by key: the table depends on the set, not on config order.
    reals.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const inputs = JSON.stringify(reals.map((r) => [r.id, r.weight, r.slot]));
    if (this.#ringInputs.get(id) === inputs) return 0;
    const table = reals.length ? buildTable(reals.map(({ id, weight }) => ({ id, weight })), n) : new Uint32Array(n).fill(S.NO_REAL);
    const want = new Uint32Array(n);
    for (let i = 0; i < n; i++) want[i] = table[i] === S.NO_REAL ? S.NO_REAL : reals[table[i]].slot;
    const changed = this.#writeRingDiff(id, this.readRing(id), want);
    this.#ringInputs.set(id, inputs);
    return changed;
  }

  /** Write the entries of VIP `id`'s ring where `want` differs from `cur`, in one batch; how many. */
  #writeRingDiff(id: number, cur: Uint32Array, want: Uint32Array): number {
    const n = this.limits.ringSize;
    let changed = 0;
    for (let i = 0; i < n; i++) if (cur[i] !== want[i]) changed++;
    if (changed) {
      const keys = Buffer.alloc(changed * 4);
      const vals = Buffer.alloc(changed * 4);
      for (let i = 0, j = 0; i < n; i++) {
        if (cur[i] === want[i]) continue;
        keys.writeUInt32LE(id * n + i, j * 4);
        vals.writeUInt32LE(want[i] >>> 0, j * 4);
        j++;
      }
      native().mapUpdateBatch(this.#rings.fd, keys, vals, changed, 0);
    }
    return changed;
  }

  /**
   * Per VIP and per real packets, bytes and new flows (summed over CPUs), and the global counters
   * (the program's, plus `lru_miss` and `nexthop_unresolved`: reals found without a next hop, summed
   * over syncs).
   */
  async stats(): Promise<StatsSnapshot> {
    const L = this.limits;
    const sums = new Map<number, S.Stat>();
    for (const [i, per] of this.#stats.entriesPerCpu()) {
      sums.set(i, per.reduce((a, s) => ({ packets: a.packets + s.packets, bytes: a.bytes + s.bytes, newFlows: a.newFlows + s.newFlows }), { packets: 0, bytes: 0, newFlows: 0 }));
    }
    const zero = { packets: 0, bytes: 0, newFlows: 0 };
    const vips = [...this.#state.values()].sort((a, b) => a.id - b.id).map((st) => ({
      key: st.key,
      ...(sums.get(S.statsIndex.vip(st.id)) ?? zero),
      reals: [...st.reals.values()].sort((a, b) => a.slot - b.slot).map((r) => ({ key: r.key, ...(sums.get(S.statsIndex.real(L, r.slot)) ?? zero) })),
    }));
    const global: Record<string, number> = {};
    for (const g of S.GLOBAL_COUNTERS) global[g] = sums.get(S.statsIndex.global(L, g))?.packets ?? 0;
    // Every ring lookup is a VIP's new flow (the program keeps no separate counter).
    let misses = 0;
    for (let id = 0; id < L.maxVips; id++) misses += sums.get(S.statsIndex.vip(id))?.newFlows ?? 0;
    global.lru_miss = misses;
    global.nexthop_unresolved = this.#unresolved;
    return { vips, global };
  }

  /** The tx port of each egress interface in use (port 0, the balancer's own, is not listed). */
  egressPorts(): Record<string, number> {
    return Object.fromEntries([...this.#egress].map(([n, e]) => [n, e.port]));
  }

  /** Number of entries in the flow table (a full scan: for tests and status, not hot paths). */
  flowCount(): number {
    let n = 0;
    for (const m of [this.#maps.flows, this.#maps.flows6]) for (const _ of m.keys()) n++;
    return n;
  }

  /**
   * keepForwarding: leave the program attached and its pins in place (an agent restart adopts
   * them); otherwise detach, unpin everything and free the maps.
   */
  async close(opts: { keepForwarding: boolean }): Promise<void> {
    if (this.#closed) return;
    // A sync in flight finishes first: its writes must not land on closed fds.
    await this.#syncing;
    this.#closed = true;
    if (!opts.keepForwarding) {
      try { this.#link?.detach(); } catch { /* already gone */ }
      for (const e of this.#egress.values()) try { e.link?.detach(); } catch { /* gone */ }
      unpinAll(this.pinDir);
    }
    this.#link?.close();
    for (const e of this.#egress.values()) e.link?.close();
    // Pinned fds are owned (closed here); a collection's are closed with it.
    for (const m of Object.values(this.#maps)) m.close();
    this.#program.close();
    this.#col?.close();
    this.#log?.info({ pinDir: this.pinDir, keepForwarding: opts.keepForwarding }, 'xdp: closed');
  }
}

/** Used by neigh-less tests: a fixed MAC table. */
export function staticMacs(table: Record<string, string>): (addr: string) => Promise<string | null> {
  return async (a) => table[a] ?? null;
}
