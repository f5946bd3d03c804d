/**
 * XdpDataplane: the balancer program of bpf/ compiled with the spec's limits, loaded, pinned
 * under a pin directory (default /sys/fs/bpf/sluice), attached to an interface through a bpf_link,
 * and programmed from a ServiceTable. An agent that restarts adopts what is pinned there (program,
 * maps and link) without touching the flow table, and upgrades the program atomically through the
 * link when the object changed.
 *
 * Pin layout: <pinDir>/prog, <pinDir>/link, <pinDir>/maps/<name>.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { compileBpf } from '../../bpf/build.js';
import { Collection } from '../../bpf/collection.js';
import { BpfMap, type TypedMap } from '../../bpf/map.js';
import { native } from '../../bpf/native.js';
import { ensureBpffs, unpin, unpinAll } from '../../bpf/pin.js';
import { Link, Program, ifIndex, type XdpAttachMode } from '../../bpf/program.js';
import { canonicalMac, ipFamily, ipToBytes, macToBytes, bytesToIp } from '../../model/address.js';
import { realKey, vipKey } from '../../model/keys.js';
import type { Dataplane, DataplaneSpec, Service, ServiceReal, ServiceTable, StatsSnapshot, SyncReport } from '../../model/types.js';
import { loadBuildTable, type BuildTable } from './ring.js';
import { defaultGatewayMac, isOnLink, resolveMac } from './neigh.js';
import * as S from './structs.js';

export const DEFAULT_PIN_DIR = '/sys/fs/bpf/sluice';
const MAP_NAMES = ['vips', 'vips6', 'rings', 'reals', 'flows', 'flows6', 'nat_back', 'frags', 'stats', 'config', 'tx_ports'] as const;
const DEFAULT_ENCAP4 = '172.16.0.0';
const DEFAULT_ENCAP6 = 'fd00:5151::';

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
  /** Resolve a real's MAC (default: the neighbour table, pinging once); injectable for tests. */
  resolveMac?: (addr: string) => Promise<string | null>;
  /** Whether an address is on the link (IPIP: send to its MAC rather than the gateway's). */
  isOnLink?: (addr: string) => Promise<boolean>;
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
}

function sameDef(a: S.RealDef, b: S.RealDef): boolean {
  return a.addr.equals(b.addr) && a.mac.equals(b.mac) && a.port === b.port && a.gen === b.gen && a.flags === b.flags && a.txPort === b.txPort && a.owner === b.owner;
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
  #maps: Record<(typeof MAP_NAMES)[number], BpfMap>;
  #col?: Collection;
  #vips: TypedMap<S.VipKey, S.VipMeta>;
  #vips6: TypedMap<S.VipKey, S.VipMeta>;
  #reals: TypedMap<number, S.RealDef>;
  #rings: BpfMap;
  #stats: TypedMap<number, S.Stat>;
  #config: TypedMap<number, S.ConfigVal>;
  #state = new Map<string, VipState>();
  /** slot -> generation, for every real slot (free ones too). */
  #gens: number[];
  #freeSlots: number[];
  #spec: DataplaneSpec;
  #log?: Logger;
  #resolveMac: (addr: string) => Promise<string | null>;
  #isOnLink: (addr: string) => Promise<boolean>;
  #macCache = new Map<string, string>();
  #closed = false;
  #buildTable!: BuildTable;

  private constructor(a: {
    opts: XdpDataplaneOptions; limits: S.Limits; pinDir: string; program: Program; link?: Link; maps: Record<(typeof MAP_NAMES)[number], BpfMap>;
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
    this.#log = a.opts.logger;
    this.#resolveMac = a.opts.resolveMac ?? ((x) => resolveMac(x));
    this.#isOnLink = a.opts.isOnLink ?? isOnLink;
    this.#vips = a.maps.vips.typed(S.vip4Key, S.vipMeta);
    this.#vips6 = a.maps.vips6.typed(S.vipKey, S.vipMeta);
    this.#reals = a.maps.reals.typed(S.u32key, S.realDef);
    this.#rings = a.maps.rings;
    this.#stats = a.maps.stats.typed(S.u32key, S.stat);
    this.#config = a.maps.config.typed(S.u32key, S.config);
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
    if (existsSync(join(pinDir, 'prog')) && MAP_NAMES.every((m) => existsSync(join(mapDir, m)))) {
      const maps = Object.fromEntries(MAP_NAMES.map((m) => [m, BpfMap.openPinned(join(mapDir, m))])) as Record<(typeof MAP_NAMES)[number], BpfMap>;
      const want = { rings: limits.maxVips * limits.ringSize, reals: limits.maxReals, flows: limits.flowTableSize, flows6: limits.flowTableSize, vips: limits.maxVips, vips6: limits.maxVips };
      for (const [m, n] of Object.entries(want)) {
        if (maps[m as keyof typeof want].maxEntries !== n) {
          for (const x of Object.values(maps)) x.close();
          throw Object.assign(new Error(`pinned map ${m} under ${pinDir} has ${maps[m as keyof typeof want].maxEntries} entries, the spec wants ${n}: limits changed (remove ${pinDir} to start afresh, losing the flow table)`), { code: 'ELIMITS' });
        }
      }
      const old = Program.openPinned(join(pinDir, 'prog'));
      const linkPin = join(pinDir, 'link');
      let link = existsSync(linkPin) ? Link.openPinned(linkPin) : undefined;
      const release = () => { link?.close(); old.close(); for (const x of Object.values(maps)) x.close(); };
      if (link && iface && link.info().ifindex !== ifIndex(iface)) {
        release();
        throw Object.assign(new Error(`the program pinned under ${pinDir} is attached to another interface than ${iface}`), { code: 'EBUSY' });
      }
      // Load the current build over the pinned maps; keep whichever program is the same code.
      let col: Collection;
      try {
        col = Collection.load(obj, { reuseMaps: maps });
      } catch (e) {
        release();
        throw Object.assign(new Error(`cannot load this build over the maps pinned under ${pinDir} (their layout changed?): ${(e as Error).message}`), { code: 'ELAYOUT', cause: e });
      }
      const fresh = col.program('balancer');
      let program = old;
      let upgraded = false;
      if (fresh.tag !== old.tag) {
        if (link) link.update(fresh, old);
        unpin(join(pinDir, 'prog'));
        fresh.pin(join(pinDir, 'prog'));
        old.close();
        program = fresh;
        upgraded = true;
        log?.info({ pinDir, oldTag: old.tag, newTag: fresh.tag }, 'xdp: program upgraded in place (bpf_link update)');
      }
      if (!link && iface) {
        link = program.attachXdp(iface, spec.xdpMode as XdpAttachMode);
        link.pin(linkPin);
      }
      dp = new XdpDataplane({ opts, limits, pinDir, program, link, maps, col: upgraded ? col : undefined, adopted: true, upgraded, iface });
      if (!upgraded) col.close();
      dp.#loadState();
      log?.info({ pinDir, vips: dp.#state.size, upgraded }, 'xdp: adopted the pinned program and maps');
    } else {
      if (existsSync(join(pinDir, 'prog'))) {
        log?.warn({ pinDir, missing: MAP_NAMES.filter((m) => !existsSync(join(mapDir, m))) }, 'xdp: the pinned maps are not this version\'s: starting afresh (the flow table is lost)');
      }
      unpinAll(pinDir);
      mkdirSync(mapDir, { recursive: true });
      const col = Collection.load(obj);
      const maps = Object.fromEntries(MAP_NAMES.map((m) => [m, col.map(m)])) as Record<(typeof MAP_NAMES)[number], BpfMap>;
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
    dp.#buildTable = await loadBuildTable();
    // An adopted config stays as it is until the first sync (it holds the NAT and wildcard flags).
    if (!dp.adopted) await dp.#writeConfig();
    return dp;
  }

  /** The program (for BPF_PROG_TEST_RUN in tests and benches). */
  get program(): Program {
    return this.#program;
  }

  map(name: (typeof MAP_NAMES)[number]): BpfMap {
    return this.#maps[name];
  }

  /** Rebuild the in-memory view (VIP ids, real slots and generations) from the pinned maps. */
  #loadState(): void {
    const byId = new Map<number, VipState>();
    for (const [vk, meta] of [...this.#vips.entries(), ...this.#vips6.entries()]) {
      const address = bytesToIp(vk.addr);
      const proto = vk.proto === S.IPPROTO.tcp ? 'tcp' : 'udp';
      const key = vipKey({ address, port: vk.port, protocol: proto });
      const st: VipState = { id: meta.id, key, meta, vk, reals: new Map() };
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
  }

  async #writeConfig(services: Service[] = [...this.#desiredCache]): Promise<boolean> {
    const spec = this.#spec;
    let gw = spec.gatewayMac ? canonicalMac(spec.gatewayMac) : null;
    if (!gw && services.some((s) => s.mode === 'ipip')) gw = await defaultGatewayMac(4).catch(() => null);
    const flags = (services.some((s) => s.mode === 'nat') ? S.CFG_F_NAT : 0) | (services.some((s) => s.port === 0) ? S.CFG_F_WILDCARD : 0);
    const want: S.ConfigVal = {
      gwMac: gw ? macToBytes(gw) : Buffer.alloc(6),
      flags,
      encapSrc4: ipToBytes(spec.encapSource4 ?? DEFAULT_ENCAP4),
      encapSrc6: ipToBytes(spec.encapSource6 ?? DEFAULT_ENCAP6),
    };
    const cur = this.#config.get(0);
    if (cur && cur.flags === want.flags && cur.gwMac.equals(want.gwMac) && cur.encapSrc4.equals(want.encapSrc4) && cur.encapSrc6.equals(want.encapSrc6)) return false;
    this.#config.set(0, want);
    return true;
  }

  #desiredCache: Service[] = [];

  async #realDef(svc: Service, r: ServiceReal, slot: number, gen: number, owner: number): Promise<{ def: S.RealDef; usable: boolean }> {
    const v6 = ipFamily(r.address) === 6;
    let mac = r.mac ? canonicalMac(r.mac) : null;
    let usable = true;
    if (!mac) {
      const needs = svc.mode !== 'ipip' || (await this.#isOnLink(r.address));
      if (needs) {
        mac = this.#macCache.get(r.address) ?? (await this.#resolveMac(r.address));
        if (mac) this.#macCache.set(r.address, mac);
        else if (svc.mode !== 'ipip') usable = false;
      }
    }
    const down = r.state === 'down' || !usable;
    return {
      def: {
        addr: S.addr16(r.address),
        mac: mac ? macToBytes(mac) : Buffer.alloc(6),
        port: r.port,
        gen,
        flags: (down ? S.REAL_F_DOWN : 0) | (v6 ? S.REAL_F_IPV6 : 0),
        txPort: 0,
        owner,
      },
      usable,
    };
  }

  #syncing: Promise<unknown> = Promise.resolve();

  /** Make the maps hold `desired`: VIPs, reals (slots), rings (changed slots only), config. Calls are serialized. */
  sync(desired: ServiceTable): Promise<SyncReport> {
    const run = this.#syncing.then(() => this.#sync(desired));
    this.#syncing = run.catch(() => undefined);
    return run;
  }

  async #sync(desired: ServiceTable): Promise<SyncReport> {
    if (this.#closed) throw Object.assign(new Error('dataplane is closed'), { code: 'ECLOSED' });
    const report: SyncReport = { added: 0, updated: 0, removed: 0, changes: [] };
    const want = new Map(desired.services.map((s) => [vipKey(s), s]));
    const L = this.limits;

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

    const usedIds = new Set([...this.#state.values()].map((s) => s.id));
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
        st = { id, key, meta, vk: { addr: ipToBytes(svc.address), port: svc.port, proto: S.IPPROTO[svc.protocol] }, reals: new Map() };
        this.#state.set(key, st);
        this.#zeroStats([S.statsIndex.vip(id)]);
      }

      // 2. Reals: write every new or changed slot in one batch, before the ring points at them.
      const wantReals = new Map(svc.reals.map((r) => [realKey({ address: r.address, port: r.port }), r]));
      const gone = [...st.reals.values()].filter((r) => !wantReals.has(r.key));
      const writes: Array<[number, S.RealDef]> = [];
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
        const { def, usable } = await this.#realDef(svc, r, rs.slot, rs.gen, st.id + 1);
        if (!usable) report.changes.push(`!real ${key} ${rk}: no MAC (neighbour unresolved); kept out of the ring`);
        if (!rs.def || !sameDef(rs.def, def)) {
          if (rs.def && !isNew) { report.updated++; report.changes.push(`~real ${key} ${rk} (${r.state})`); }
          rs.def = def;
          writes.push([rs.slot, def]);
        }
        // Maglev identity: the address, plus the port only when the real has its own (src/maglev).
        const ringId = realKey({ address: r.address, port: r.port !== svc.port ? r.port : undefined });
        if (r.state === 'up' && r.weight > 0 && usable) inRing.push({ id: ringId, weight: r.weight, slot: rs.slot });
      }
      if (writes.length) this.#reals.setMany(writes);

      // 3. The ring: only the slots that changed, in one batch.
      const changed = this.#writeRing(st.id, inRing);
      if (changed) report.changes.push(`ring ${key}: ${changed} slots`);

      // 4. The VIP itself (new, or mode/hash changed), once its ring is ready.
      if (isNew || st.meta.mode !== meta.mode || st.meta.flags !== meta.flags) {
        this.#vipMap(st.vk).set(st.vk, meta);
        if (isNew) { report.added++; report.changes.push(`+vip ${key} (${svc.mode}, ${svc.hash}, id ${st.id}, ${svc.reals.length} reals)`); }
        else { report.updated++; report.changes.push(`~vip ${key} (${svc.mode}, ${svc.hash})`); }
        st.meta = meta;
      }

      // 5. Reals that went: their flows move (DOWN), the slot is free for reuse (with a new gen).
      if (gone.length) {
        this.#freeRealSlots(gone);
        for (const g of gone) { st.reals.delete(g.key); report.removed++; report.changes.push(`-real ${key} ${g.key}`); }
      }
    }

    this.#desiredCache = desired.services;
    if (await this.#writeConfig(desired.services)) report.changes.push('config');
    if (report.changes.length) this.#log?.info({ added: report.added, updated: report.updated, removed: report.removed }, `xdp sync: ${report.changes.join('; ')}`);
    return report;
  }

  #vipMap(vk: S.VipKey): TypedMap<S.VipKey, S.VipMeta> {
    return vk.addr.length === 4 ? this.#vips : this.#vips6;
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
    const table = reals.length ? this.#buildTable(reals.map(({ id, weight }) => ({ id, weight })), n) : new Uint32Array(n).fill(S.NO_REAL);
    const cur = this.readRing(id);
    const want = new Uint32Array(n);
    let changed = 0;
    for (let i = 0; i < n; i++) {
      want[i] = table[i] === S.NO_REAL ? S.NO_REAL : reals[table[i]].slot;
      if (cur[i] !== want[i]) changed++;
    }
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
    this.#ringInputs.set(id, inputs);
    return changed;
  }

  /** Per VIP and per real packets, bytes and new flows (summed over CPUs), and the global counters. */
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
    return { vips, global };
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
    this.#closed = true;
    if (!opts.keepForwarding) {
      try { this.#link?.detach(); } catch { /* already gone */ }
      unpinAll(this.pinDir);
    }
    this.#link?.close();
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

