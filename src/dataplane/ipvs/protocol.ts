/**
 * The kernel's generic netlink family "IPVS" (include/uapi/linux/ip_vs.h): command and
 * attribute numbers, and the encoding of services and destinations to and from attributes.
 * Pure functions over buffers, tested on any host; the socket lives in client.ts.
 */
import { bytesToIp, ipFamily, ipToBytes } from '../../model/address.js';
import { vipKey } from '../../model/keys.js';
import type { Protocol } from '../../model/types.js';
import { type Attr, be16, decodeAttrs, encodeAttrs, getBe16, getStr, getU16, getU32, getU64, getU8, str, u16, u32, u8 } from './attrs.js';

export const IPVS_GENL_NAME = 'IPVS';
export const IPVS_GENL_VERSION = 1;

export const Cmd = {
  NEW_SERVICE: 1,
  SET_SERVICE: 2,
  DEL_SERVICE: 3,
  GET_SERVICE: 4,
  NEW_DEST: 5,
  SET_DEST: 6,
  DEL_DEST: 7,
  GET_DEST: 8,
  GET_INFO: 15,
} as const;

/** Attributes of a command message. */
export const CmdAttr = { SERVICE: 1, DEST: 2 } as const;

export const SvcAttr = {
  AF: 1, PROTOCOL: 2, ADDR: 3, PORT: 4, FWMARK: 5, SCHED_NAME: 6, FLAGS: 7, TIMEOUT: 8, NETMASK: 9,
  STATS: 10, PE_NAME: 11, STATS64: 12,
} as const;

export const DestAttr = {
  ADDR: 1, PORT: 2, FWD_METHOD: 3, WEIGHT: 4, U_THRESH: 5, L_THRESH: 6, ACTIVE_CONNS: 7, INACT_CONNS: 8,
  PERSIST_CONNS: 9, STATS: 10, ADDR_FAMILY: 11, STATS64: 12, TUN_TYPE: 13, TUN_PORT: 14, TUN_FLAGS: 15,
} as const;

export const StatsAttr = {
  CONNS: 1, INPKTS: 2, OUTPKTS: 3, INBYTES: 4, OUTBYTES: 5, CPS: 6, INPPS: 7, OUTPPS: 8, INBPS: 9, OUTBPS: 10,
} as const;

export const InfoAttr = { VERSION: 1, CONN_TAB_SIZE: 2 } as const;

/** Service flags (struct ip_vs_flags): SCHED1..3 mean something per scheduler. */
export const SvcFlag = {
  PERSISTENT: 0x0001,
  HASHED: 0x0002, // set by the kernel on every service it holds
  ONEPACKET: 0x0004,
  SCHED1: 0x0008, // mh-fallback, sh-fallback
  SCHED2: 0x0010, // mh-port, sh-port
  SCHED3: 0x0020,
} as const;
/** The flags sluice sets and compares; HASHED and anything unknown are the kernel's business. */
export const SVC_FLAGS_MANAGED = SvcFlag.PERSISTENT | SvcFlag.ONEPACKET | SvcFlag.SCHED1 | SvcFlag.SCHED2 | SvcFlag.SCHED3;

export type FwdMethod = 'masq' | 'local' | 'tunnel' | 'route' | 'bypass';
const FWD_CODES: Record<FwdMethod, number> = { masq: 0, local: 1, tunnel: 2, route: 3, bypass: 4 };
const FWD_MASK = 0x7;

export const AF_INET = 2;
export const AF_INET6 = 10;
const IPPROTO: Record<Protocol, number> = { tcp: 6, udp: 17 };

export interface IpvsStats {
  conns: number;
  inPkts: number;
  outPkts: number;
  inBytes: number;
  outBytes: number;
  cps: number;
  inPps: number;
  outPps: number;
  inBps: number;
  outBps: number;
}

/** What identifies a (firewall-mark-free) virtual service. */
export interface ServiceId {
  address: string;
  port: number;
  protocol: Protocol;
}

export interface IpvsService extends ServiceId {
  scheduler: string;
  /** Managed flags only (SVC_FLAGS_MANAGED). */
  flags: number;
  /** Persistence timeout in seconds; 0 = not persistent. */
  timeout: number;
  /** Persistence netmask: a dotted mask for IPv4 (as a number), a prefix length for IPv6. */
  netmask: number;
  stats?: IpvsStats;
}

export interface IpvsDest {
  address: string;
  port: number;
  fwd: FwdMethod;
  weight: number;
  upperThreshold: number;
  lowerThreshold: number;
  /** Tunnel type for fwd = tunnel: 0 ipip (the default), 1 gue, 2 gre. */
  tunType?: number;
  activeConns?: number;
  inactiveConns?: number;
  persistConns?: number;
  stats?: IpvsStats;
}

/** The same identity the rest of sluice uses for a VIP: `10.0.0.1:80/tcp`, `[2001:db8::1]:443/udp`. */
export function serviceIdKey(s: ServiceId): string {
  return vipKey(s);
}

/** The 16-byte union nf_inet_addr the kernel copies addresses into (IPv4 in the first 4 bytes). */
function inetAddr(address: string): Buffer {
  const out = Buffer.alloc(16);
  ipToBytes(address).copy(out);
  return out;
}

function afOf(address: string): number {
  return ipFamily(address) === 6 ? AF_INET6 : AF_INET;
}

/** The attributes naming a service (enough for DEL_SERVICE, GET_SERVICE and the service of a dest command). */
export function serviceIdAttrs(s: ServiceId): Attr[] {
  return [
    { type: SvcAttr.AF, value: u16(afOf(s.address)) },
    { type: SvcAttr.PROTOCOL, value: u16(IPPROTO[s.protocol]) },
    { type: SvcAttr.ADDR, value: inetAddr(s.address) },
    { type: SvcAttr.PORT, value: be16(s.port) },
  ];
}

/** A full service entry (NEW_SERVICE and SET_SERVICE require scheduler, flags, timeout and netmask). */
export function serviceAttrs(s: IpvsService): Attr[] {
  const flags = Buffer.concat([u32(s.flags & SVC_FLAGS_MANAGED), u32(0xffffffff)]); // struct ip_vs_flags { flags, mask }
  return [
    ...serviceIdAttrs(s),
    { type: SvcAttr.SCHED_NAME, value: str(s.scheduler) },
    { type: SvcAttr.FLAGS, value: flags },
    { type: SvcAttr.TIMEOUT, value: u32(s.timeout) },
    { type: SvcAttr.NETMASK, value: u32(s.netmask) },
  ];
}

export function destIdAttrs(address: string, port: number): Attr[] {
  return [
    { type: DestAttr.ADDR, value: inetAddr(address) },
    { type: DestAttr.PORT, value: be16(port) },
    { type: DestAttr.ADDR_FAMILY, value: u16(afOf(address)) },
  ];
}

export function destAttrs(d: IpvsDest): Attr[] {
  const attrs: Attr[] = [
    ...destIdAttrs(d.address, d.port),
    { type: DestAttr.FWD_METHOD, value: u32(FWD_CODES[d.fwd]) },
    { type: DestAttr.WEIGHT, value: u32(d.weight) },
    { type: DestAttr.U_THRESH, value: u32(d.upperThreshold) },
    { type: DestAttr.L_THRESH, value: u32(d.lowerThreshold) },
  ];
  if (d.fwd === 'tunnel' && d.tunType !== undefined) attrs.push({ type: DestAttr.TUN_TYPE, value: u8(d.tunType) });
  return attrs;
}

/** Payload of a service command: IPVS_CMD_ATTR_SERVICE holding the service. */
export function serviceMessage(svc: IpvsService | ServiceId, full: boolean): Buffer {
  return encodeAttrs([{ type: CmdAttr.SERVICE, nested: full ? serviceAttrs(svc as IpvsService) : serviceIdAttrs(svc) }]);
}

/** Payload of a destination command: the service it belongs to, and the destination. */
export function destMessage(svc: ServiceId, dest: IpvsDest | { address: string; port: number }, full: boolean): Buffer {
  return encodeAttrs([
    { type: CmdAttr.SERVICE, nested: serviceIdAttrs(svc) },
    { type: CmdAttr.DEST, nested: full ? destAttrs(dest as IpvsDest) : destIdAttrs(dest.address, dest.port) },
  ]);
}

function addrFrom(b: Buffer | undefined, af: number, what: string): string {
  if (!b) throw new RangeError(`missing ${what}`);
  if (af === AF_INET) { if (b.length < 4) throw new RangeError(`${what}: ${b.length} bytes`); return bytesToIp(b.subarray(0, 4)); }
  if (af === AF_INET6) { if (b.length < 16) throw new RangeError(`${what}: ${b.length} bytes`); return bytesToIp(b.subarray(0, 16)); }
  throw new RangeError(`${what}: unknown address family ${af}`);
}

/** Stats from IPVS_*_ATTR_STATS64 (all u64) or, on old kernels, IPVS_*_ATTR_STATS (u32 but bytes u64). */
export function decodeStats(payload: Buffer, wide: boolean): IpvsStats {
  const a = decodeAttrs(payload);
  const n = (t: number, u64: boolean): number => (a.has(t) ? (u64 ? getU64(a.get(t)) : getU32(a.get(t))) : 0);
  return {
    conns: n(StatsAttr.CONNS, wide),
    inPkts: n(StatsAttr.INPKTS, wide),
    outPkts: n(StatsAttr.OUTPKTS, wide),
    inBytes: n(StatsAttr.INBYTES, true),
    outBytes: n(StatsAttr.OUTBYTES, true),
    cps: n(StatsAttr.CPS, wide),
    inPps: n(StatsAttr.INPPS, wide),
    outPps: n(StatsAttr.OUTPPS, wide),
    inBps: n(StatsAttr.INBPS, wide),
    outBps: n(StatsAttr.OUTBPS, wide),
  };
}

function statsOf(a: Map<number, Buffer>, s64: number, s32: number): IpvsStats | undefined {
  const w = a.get(s64);
  if (w) return decodeStats(w, true);
  const n = a.get(s32);
  return n ? decodeStats(n, false) : undefined;
}

/**
 * A service from a GET_SERVICE reply (the payload after the genl header), or null for one
 * sluice does not model: firewall-mark services and protocols other than TCP and UDP.
 */
export function decodeServiceMessage(payload: Buffer): IpvsService | null {
  const top = decodeAttrs(payload);
  const nested = top.get(CmdAttr.SERVICE);
  if (!nested) throw new RangeError('IPVS service reply without IPVS_CMD_ATTR_SERVICE');
  return decodeService(nested);
}

export function decodeService(nested: Buffer): IpvsService | null {
  const a = decodeAttrs(nested);
  if (a.has(SvcAttr.FWMARK) && getU32(a.get(SvcAttr.FWMARK)) !== 0) return null;
  const proto = getU16(a.get(SvcAttr.PROTOCOL), 'service protocol');
  const protocol: Protocol | null = proto === 6 ? 'tcp' : proto === 17 ? 'udp' : null;
  if (!protocol) return null;
  const af = getU16(a.get(SvcAttr.AF), 'service af');
  const flagsBuf = a.get(SvcAttr.FLAGS);
  return {
    address: addrFrom(a.get(SvcAttr.ADDR), af, 'service address'),
    port: getBe16(a.get(SvcAttr.PORT), 'service port'),
    protocol,
    scheduler: getStr(a.get(SvcAttr.SCHED_NAME), 'scheduler'),
    flags: flagsBuf ? getU32(flagsBuf) & SVC_FLAGS_MANAGED : 0,
    timeout: a.has(SvcAttr.TIMEOUT) ? getU32(a.get(SvcAttr.TIMEOUT)) : 0,
    netmask: a.has(SvcAttr.NETMASK) ? getU32(a.get(SvcAttr.NETMASK)) : 0,
    stats: statsOf(a, SvcAttr.STATS64, SvcAttr.STATS),
  };
}

/** A destination from a GET_DEST reply; `svcAf` is the service's family (older kernels omit the dest's own). */
export function decodeDestMessage(payload: Buffer, svcAf: number): IpvsDest {
  const top = decodeAttrs(payload);
  const nested = top.get(CmdAttr.DEST);
  if (!nested) throw new RangeError('IPVS destination reply without IPVS_CMD_ATTR_DEST');
  const a = decodeAttrs(nested);
  const af = a.has(DestAttr.ADDR_FAMILY) ? getU16(a.get(DestAttr.ADDR_FAMILY)) : svcAf;
  const code = getU32(a.get(DestAttr.FWD_METHOD), 'forwarding method') & FWD_MASK;
  const fwd = (Object.keys(FWD_CODES) as FwdMethod[]).find((k) => FWD_CODES[k] === code);
  if (!fwd) throw new RangeError(`unknown IPVS forwarding method ${code}`);
  const opt = (t: number): number | undefined => (a.has(t) ? getU32(a.get(t)) : undefined);
  return {
    address: addrFrom(a.get(DestAttr.ADDR), af, 'destination address'),
    port: getBe16(a.get(DestAttr.PORT), 'destination port'),
    fwd,
    weight: getU32(a.get(DestAttr.WEIGHT), 'weight') | 0,
    upperThreshold: opt(DestAttr.U_THRESH) ?? 0,
    lowerThreshold: opt(DestAttr.L_THRESH) ?? 0,
    tunType: a.has(DestAttr.TUN_TYPE) ? getU8(a.get(DestAttr.TUN_TYPE)) : undefined,
    activeConns: opt(DestAttr.ACTIVE_CONNS),
    inactiveConns: opt(DestAttr.INACT_CONNS),
    persistConns: opt(DestAttr.PERSIST_CONNS),
    stats: statsOf(a, DestAttr.STATS64, DestAttr.STATS),
  };
}

export function afOfAddress(address: string): number {
  return afOf(address);
}

/** GET_INFO reply: the IPVS version (e.g. 0x010201 → "1.2.1") and connection table size. */
export function decodeInfo(payload: Buffer): { version: string; connTabSize: number } {
  const a = decodeAttrs(payload);
  const v = getU32(a.get(InfoAttr.VERSION), 'version');
  return { version: `${(v >> 16) & 0xff}.${(v >> 8) & 0xff}.${v & 0xff}`, connTabSize: getU32(a.get(InfoAttr.CONN_TAB_SIZE), 'conn tab size') };
}
