/**
 * Codecs for the balancer's map keys and values: each mirrors a struct of bpf/structs.h field
 * by field (padding included), and the constants mirror bpf/consts.h. Change both together.
 */
import { bytes, pad, struct, u8, u16, u32, u64n, be16, type Codec } from '../../bpf/codec.js';
import { ipFamily, ipToBytes, macToBytes } from '../../model/address.js';

export const MODE = { dsr: 0, ipip: 1, nat: 2 } as const;
export const VIP_F_SRC_IP_HASH = 1 << 0;
/** Bookkeeping only (the program ignores it): the VIP is IPv6. */
export const VIP_F_IPV6 = 1 << 1;
export const REAL_F_DOWN = 1 << 0;
export const REAL_F_IPV6 = 1 << 1;
export const CFG_F_NAT = 1 << 0;
export const CFG_F_WILDCARD = 1 << 1;
export const NO_REAL = 0xffffffff;
export const IPPROTO = { tcp: 6, udp: 17 } as const;

/** The global counters after the per-VIP and per-real entries of `stats`, in enum order (bpf/consts.h). */
export const GLOBAL_COUNTERS = [
  'pass_not_ip',
  'pass_not_vip',
  'pass_malformed',
  'pass_unknown_proto',
  'drop_no_real',
  'pass_frag',
  'drop_family',
  'drop_encap',
  'flow_rechosen',
  'icmp_fwd',
  'nat_reply',
  'frag_fwd',
  'icmp_too_big',
  'drop_too_big',
  'drop_real_down',
] as const;
export type GlobalCounter = (typeof GLOBAL_COUNTERS)[number];

export interface Limits {
  maxVips: number;
  maxReals: number;
  ringSize: number;
  flowTableSize: number;
}

/** Index of a counter in `stats`. */
export const statsIndex = {
  vip: (id: number) => id,
  real: (l: Limits, slot: number) => l.maxVips + slot,
  global: (l: Limits, name: GlobalCounter) => l.maxVips + l.maxReals + GLOBAL_COUNTERS.indexOf(name),
  size: (l: Limits) => l.maxVips + l.maxReals + GLOBAL_COUNTERS.length,
};

/** 16 bytes, IPv4 in the first 4 (the rest zero), network order. */
export function addr16(addr: string): Buffer {
  const b = Buffer.alloc(16);
  ipToBytes(addr).copy(b);
  return b;
}

export function mac6(mac: string | undefined): Buffer {
  return mac ? macToBytes(mac) : Buffer.alloc(6);
}

/** vips (IPv4) key: 8 bytes. */
export const vip4Key = struct({ addr: bytes(4), port: be16, proto: u8, _pad: pad(1) });
/** vips6 key: 20 bytes. */
export const vipKey = struct({ addr: bytes(16), port: be16, proto: u8, _pad: pad(1) });
/** A VIP key of either map: `addr` is 4 bytes for vips, 16 for vips6. */
export type VipKey = { addr: Buffer; port: number; proto: number };
export const vipMeta = struct({ id: u32, mode: u8, flags: u8, _pad: pad(2) });
export type VipMeta = { id: number; mode: number; flags: number };

export const realDef = struct({ addr: bytes(16), mac: bytes(6), port: be16, gen: u32, flags: u8, txPort: u8, owner: u16 });
export type RealDef = { addr: Buffer; mac: Buffer; port: number; gen: number; flags: number; txPort: number; owner: number };

export const flow4Key = struct({ src: bytes(4), dst: bytes(4), sport: be16, dport: be16, proto: u8, _pad: pad(3) });
export const flowKey = struct({ src: bytes(16), dst: bytes(16), sport: be16, dport: be16, proto: u8, _pad: pad(3) });
export type FlowKey = { src: Buffer; dst: Buffer; sport: number; dport: number; proto: number };
export const flowVal = struct({ real: u32, gen: u32 });

export const natKey = struct({ real: bytes(16), client: bytes(16), realPort: be16, clientPort: be16, proto: u8, _pad: pad(3) });
export const natVal = struct({ vip: bytes(16), vipPort: be16, clientMac: bytes(6) });

export const fragKey = struct({ src: bytes(16), dst: bytes(16), id: bytes(4), proto: u8, _pad: pad(3) });
/** `vip`: the VIP id in the low 16 bits, its mode in the high 16. */
export const fragVal = struct({ real: u32, gen: u32, vip: u32 });

export const stat = struct({ packets: u64n, bytes: u64n, newFlows: u64n });
export type Stat = { packets: number; bytes: number; newFlows: number };

export const config = struct({
  gwMac: bytes(6),
  flags: u8,
  _pad: pad(1),
  encapSrc4: bytes(4),
  encapSrc6: bytes(16),
  /** Network order: the bits of the source that carry the flow hash. */
  encapMask4: bytes(4),
  /** Network order, the last word of the IPv6 source. */
  encapMask6: bytes(4),
  _pad2: pad(4),
});
export type ConfigVal = { gwMac: Buffer; flags: number; encapSrc4: Buffer; encapSrc6: Buffer; encapMask4: Buffer; encapMask6: Buffer };

/** ports value (struct port_info): per tx port, the interface's ifindex, MAC and MTU. */
export const portInfo = struct({ ifindex: u32, mac: bytes(6), mtu: u16 });
export type PortInfo = { ifindex: number; mac: Buffer; mtu: number };

export const u32key: Codec<number> = u32;

/** Every map of bpf/maps.h with the codecs of its key and value (devmap values: ifindex). */
export const MAP_CODECS: Record<string, { key: Codec<any>; value: Codec<any> }> = {
  vips: { key: vip4Key, value: vipMeta },
  vips6: { key: vipKey, value: vipMeta },
  rings: { key: u32, value: u32 },
  reals: { key: u32, value: realDef },
  flows: { key: flow4Key, value: flowVal },
  flows6: { key: flowKey, value: flowVal },
  nat_back: { key: natKey, value: natVal },
  frags: { key: fragKey, value: fragVal },
  nat_frags: { key: fragKey, value: natVal },
  stats: { key: u32, value: stat },
  config: { key: u32, value: config },
  tx_ports: { key: u32, value: u32 },
  ports: { key: u32, value: portInfo },
};

/** Interfaces the balancer can send on (bpf/consts.h MAX_TX_PORTS): port 0 is its own. */
export const MAX_TX_PORTS = 64;
/** Datagrams whose later fragments are followed (bpf/consts.h FRAG_TABLE_SIZE). */
export const FRAG_TABLE_SIZE = 8192;
export { u16 };

export function family(addr: string): 4 | 6 {
  return ipFamily(addr);
}
