/**
 * The balancer loaded with small limits for packet tests, and helpers to program it the way
 * the data plane does (VIPs, reals, rings, config) and to read its counters.
 */
import { compileBpf } from '../../src/bpf/build.js';
import { Collection } from '../../src/bpf/collection.js';
import type { Program } from '../../src/bpf/program.js';
import type { TypedMap } from '../../src/bpf/map.js';
import * as S from '../../src/dataplane/xdp/structs.js';
import { DEFAULT_ENCAP4, DEFAULT_ENCAP6, encapPrefix } from '../../src/dataplane/xdp/dataplane.js';
import { ipToBytes, macToBytes } from '../../src/model/address.js';

export const LIMITS: S.Limits = { maxVips: 32, maxReals: 64, ringSize: 13, flowTableSize: 4096 };
export const LB_MAC = '02:00:00:00:00:01';
export const CLIENT_MAC = '02:00:00:00:00:02';
export const GW_MAC = '02:00:00:00:00:fe';
export const realMac = (i: number) => `02:00:00:00:01:${i.toString(16).padStart(2, '0')}`;
/** The data plane's default encap sources (prefixes whose host bits carry the flow hash). */
export const ENCAP_SRC4 = DEFAULT_ENCAP4;
export const ENCAP_SRC6 = DEFAULT_ENCAP6;

export interface TestReal {
  slot: number;
  addr: string;
  port?: number;
  flags?: number;
  gen?: number;
  txPort?: number;
  /** No MAC: an IPIP real behind the gateway. */
  noMac?: boolean;
  /** The VIP id + 1 the slot belongs to, as the agent writes it (0: unset, not checked). */
  owner?: number;
}

export interface TestVip {
  id: number;
  addr: string;
  port: number;
  proto: 'tcp' | 'udp';
  mode: 'dsr' | 'ipip' | 'nat';
  srcIpHash?: boolean;
  /** Real slots, one per ring slot in turn (slot i gets reals[i % n]); [] = an empty ring. */
  ring: number[];
}

export class TestBalancer {
  readonly col: Collection;
  readonly prog: Program;
  readonly vips: TypedMap<S.VipKey, S.VipMeta>;
  readonly vips6: TypedMap<S.VipKey, S.VipMeta>;
  readonly reals: TypedMap<number, S.RealDef>;
  readonly rings: TypedMap<number, number>;
  readonly stats: TypedMap<number, S.Stat>;
  readonly config: TypedMap<number, S.ConfigVal>;
  readonly ports: TypedMap<number, S.PortInfo>;

  private constructor(col: Collection, readonly limits: S.Limits) {
    this.col = col;
    this.prog = col.program('balancer');
    this.vips = col.map('vips').typed(S.vip4Key, S.vipMeta);
    this.vips6 = col.map('vips6').typed(S.vipKey, S.vipMeta);
    this.reals = col.map('reals').typed(S.u32key, S.realDef);
    this.rings = col.map('rings').typed(S.u32key, S.u32key);
    this.stats = col.map('stats').typed(S.u32key, S.stat);
    this.config = col.map('config').typed(S.u32key, S.config);
    this.ports = col.map('ports').typed(S.u32key, S.portInfo);
  }

  /** `source`: bpf/balancer.bpf.c by default, or a path to another build of it (A/B benches). */
  static async load(limits = LIMITS, source = 'balancer', defines: Record<string, string | number> = {}): Promise<TestBalancer> {
    const obj = await compileBpf({
      source,
      defines: { ...defines, MAX_VIPS: limits.maxVips, MAX_REALS: limits.maxReals, RING_SIZE: limits.ringSize, FLOW_TABLE_SIZE: limits.flowTableSize },
    });
    const b = new TestBalancer(Collection.load(obj), limits);
    b.setConfig(S.CFG_F_NAT | S.CFG_F_WILDCARD);
    return b;
  }

  setConfig(flags: number, encap: { src4?: string; src6?: string } = {}): void {
    const e4 = encapPrefix(encap.src4 ?? ENCAP_SRC4, 4);
    const e6 = encapPrefix(encap.src6 ?? ENCAP_SRC6, 6);
    this.config.set(0, { gwMac: macToBytes(GW_MAC), flags, encapSrc4: e4.base, encapSrc6: e6.base, encapMask4: e4.mask, encapMask6: e6.mask });
  }

  /**
   * A tx port as the program sees it (ifindex, source MAC, MTU; 0 = unchecked) and, with
   * `devIfindex`, its devmap entry (an interface that exists here: lo, 1, in tests).
   */
  setPort(port: number, p: { ifindex?: number; mac?: string; mtu?: number; devIfindex?: number }): void {
    this.ports.set(port, { ifindex: p.ifindex ?? 0, mac: macToBytes(p.mac ?? '00:00:00:00:00:00'), mtu: p.mtu ?? 0 });
    if (p.devIfindex === undefined) return;
    const k = Buffer.alloc(4);
    k.writeUInt32LE(port);
    const v = Buffer.alloc(4);
    v.writeUInt32LE(p.devIfindex);
    this.col.map('tx_ports').update(k, v);
  }

  setReal(r: TestReal): void {
    this.reals.set(r.slot, {
      addr: S.addr16(r.addr),
      mac: r.noMac ? Buffer.alloc(6) : macToBytes(realMac(r.slot)),
      port: r.port ?? 0,
      gen: r.gen ?? 0,
      flags: (r.flags ?? 0) | (r.addr.includes(':') ? S.REAL_F_IPV6 : 0),
      txPort: r.txPort ?? 0,
      owner: r.owner ?? 0,
    });
  }

  setVip(v: TestVip): void {
    (v.addr.includes(':') ? this.vips6 : this.vips).set(
      { addr: ipToBytes(v.addr), port: v.port, proto: S.IPPROTO[v.proto] },
      { id: v.id, mode: S.MODE[v.mode], flags: v.srcIpHash ? S.VIP_F_SRC_IP_HASH : 0 },
    );
    this.setRing(v.id, v.ring);
  }

  setRing(id: number, ring: number[]): void {
    const n = this.limits.ringSize;
    this.rings.setMany(Array.from({ length: n }, (_, i) => [id * n + i, ring.length ? ring[i % ring.length] : S.NO_REAL] as const));
  }

  run(frame: Buffer): { action: number; data: Buffer } {
    const r = this.prog.testRun(frame);
    return { action: r.action, data: r.data };
  }

  /** Sum over CPUs of one stats entry. */
  stat(index: number): S.Stat {
    const per = this.stats.getPerCpu(index) ?? [];
    return per.reduce((a, s) => ({ packets: a.packets + s.packets, bytes: a.bytes + s.bytes, newFlows: a.newFlows + s.newFlows }), { packets: 0, bytes: 0, newFlows: 0 });
  }

  global(name: S.GlobalCounter | 'lru_miss'): number {
    if (name === 'lru_miss') {
      let n = 0;
      for (let id = 0; id < this.limits.maxVips; id++) n += this.stat(S.statsIndex.vip(id)).newFlows;
      return n;
    }
    return this.stat(S.statsIndex.global(this.limits, name)).packets;
  }

  close(): void {
    this.col.close();
  }
}
