/**
 * A small packet builder for BPF tests: Ethernet (+802.1Q), IPv4 (options, fragments), IPv6,
 * TCP, UDP, ICMP "fragmentation needed" and ICMPv6 "packet too big", with real checksums, so
 * that tests can assert the exact bytes a program writes (incremental checksum updates too).
 */
import { ipToBytes, macToBytes } from '../../src/model/address.js';

export const ETH_P_IP = 0x0800;
export const ETH_P_IPV6 = 0x86dd;
export const ETH_P_8021Q = 0x8100;
export const ETH_P_ARP = 0x0806;
export const PROTO = { icmp: 1, ipip: 4, tcp: 6, ipv6: 41, udp: 17, icmpv6: 58, frag6: 44, hopopts: 0, routing: 43, dstopts: 60 } as const;

/** One's complement sum of 16-bit words (odd length padded with a zero byte). */
export function onesSum(buf: Buffer, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length % 2) sum += buf[buf.length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

export function checksum(buf: Buffer, initial = 0): number {
  return ~onesSum(buf, initial) & 0xffff;
}

function pseudo(src: Buffer, dst: Buffer, proto: number, len: number): number {
  const p = Buffer.alloc(src.length * 2 + 8);
  src.copy(p, 0);
  dst.copy(p, src.length);
  if (src.length === 4) { p.writeUInt16BE(proto, 8); p.writeUInt16BE(len, 10); return onesSum(p.subarray(0, 12)); }
  p.writeUInt32BE(len, 32);
  p.writeUInt32BE(proto, 36);
  return onesSum(p);
}

export interface L4 {
  sport: number;
  dport: number;
  /** TCP flags byte (default ACK = 0x10: a packet of an established flow; SYN = 0x02). */
  flags?: number;
  seq?: number;
  payload?: Buffer;
  /** UDP over IPv4: send no checksum (0). */
  noChecksum?: boolean;
}

/** A TCP header + payload with its checksum over the pseudo-header of src/dst. */
export function tcp(src: string, dst: string, o: L4): Buffer {
  const payload = o.payload ?? Buffer.alloc(0);
  const h = Buffer.alloc(20 + payload.length);
  h.writeUInt16BE(o.sport, 0);
  h.writeUInt16BE(o.dport, 2);
  h.writeUInt32BE(o.seq ?? 1000, 4);
  h.writeUInt32BE(0, 8);
  h[12] = 5 << 4;
  h[13] = o.flags ?? 0x10;
  h.writeUInt16BE(65535, 14);
  payload.copy(h, 20);
  h.writeUInt16BE(checksum(h, pseudo(ipToBytes(src), ipToBytes(dst), PROTO.tcp, h.length)), 16);
  return h;
}

export function udp(src: string, dst: string, o: L4): Buffer {
  const payload = o.payload ?? Buffer.alloc(0);
  const h = Buffer.alloc(8 + payload.length);
  h.writeUInt16BE(o.sport, 0);
  h.writeUInt16BE(o.dport, 2);
  h.writeUInt16BE(h.length, 4);
  payload.copy(h, 8);
  if (!o.noChecksum) {
    let c = checksum(h, pseudo(ipToBytes(src), ipToBytes(dst), PROTO.udp, h.length));
    if (c === 0) c = 0xffff;
    h.writeUInt16BE(c, 6);
  }
  return h;
}

export interface Ip4 {
  src: string;
  dst: string;
  proto: number;
  payload: Buffer;
  ttl?: number;
  tos?: number;
  id?: number;
  /** flags+offset field: 0x2000 MF, low 13 bits offset in 8-byte units. */
  fragOff?: number;
  /** IP options (padded to a multiple of 4 by the caller). */
  options?: Buffer;
  /** Overrides, for malformed headers. */
  version?: number;
  ihl?: number;
  totLen?: number;
}

export function ipv4(o: Ip4): Buffer {
  const opts = o.options ?? Buffer.alloc(0);
  const hl = 20 + opts.length;
  const h = Buffer.alloc(hl + o.payload.length);
  h[0] = ((o.version ?? 4) << 4) | (o.ihl ?? hl / 4);
  h[1] = o.tos ?? 0;
  h.writeUInt16BE(o.totLen ?? h.length, 2);
  h.writeUInt16BE(o.id ?? 0x1234, 4);
  h.writeUInt16BE(o.fragOff ?? 0, 6);
  h[8] = o.ttl ?? 64;
  h[9] = o.proto;
  ipToBytes(o.src).copy(h, 12);
  ipToBytes(o.dst).copy(h, 16);
  opts.copy(h, 20);
  h.writeUInt16BE(checksum(h.subarray(0, hl)), 10);
  o.payload.copy(h, hl);
  return h;
}

export interface Ip6 {
  src: string;
  dst: string;
  nexthdr: number;
  payload: Buffer;
  hopLimit?: number;
  version?: number;
  payloadLen?: number;
}

export function ipv6(o: Ip6): Buffer {
  const h = Buffer.alloc(40 + o.payload.length);
  h.writeUInt32BE(((o.version ?? 6) << 28) >>> 0, 0);
  h.writeUInt16BE(o.payloadLen ?? o.payload.length, 4);
  h[6] = o.nexthdr;
  h[7] = o.hopLimit ?? 64;
  ipToBytes(o.src).copy(h, 8);
  ipToBytes(o.dst).copy(h, 24);
  o.payload.copy(h, 40);
  return h;
}

export function eth(dst: string, src: string, type: number, payload: Buffer, vlan?: number): Buffer {
  const tag = vlan === undefined ? 0 : 4;
  const h = Buffer.alloc(14 + tag + payload.length);
  macToBytes(dst).copy(h, 0);
  macToBytes(src).copy(h, 6);
  if (vlan !== undefined) {
    h.writeUInt16BE(ETH_P_8021Q, 12);
    h.writeUInt16BE(vlan, 14);
  }
  h.writeUInt16BE(type, 12 + tag);
  payload.copy(h, 14 + tag);
  return h;
}

/** An ICMP error (`type`, `code`, the 32-bit rest of its header) quoting `quoted` (an IP packet). */
export function icmpError(type: number, code: number, quoted: Buffer, rest = 0): Buffer {
  const h = Buffer.alloc(8 + quoted.length);
  h[0] = type;
  h[1] = code;
  h.writeUInt32BE(rest, 4);
  quoted.copy(h, 8);
  h.writeUInt16BE(checksum(h), 2);
  return h;
}

/** ICMP destination unreachable / fragmentation needed quoting `quoted` (an IP packet). */
export function icmpFragNeeded(quoted: Buffer, mtu = 1400): Buffer {
  return icmpError(3, 4, quoted, mtu & 0xffff);
}

/** An ICMPv6 error sent from `src` to `dst` quoting `quoted`, with its pseudo-header checksum. */
export function icmp6Error(type: number, code: number, src: string, dst: string, quoted: Buffer, rest = 0): Buffer {
  const h = Buffer.alloc(8 + quoted.length);
  h[0] = type;
  h[1] = code;
  h.writeUInt32BE(rest, 4);
  quoted.copy(h, 8);
  h.writeUInt16BE(checksum(h, pseudo(ipToBytes(src), ipToBytes(dst), PROTO.icmpv6, h.length)), 2);
  return h;
}

/** ICMPv6 packet too big quoting `quoted`, with its pseudo-header checksum. */
export function icmp6TooBig(src: string, dst: string, quoted: Buffer, mtu = 1280): Buffer {
  return icmp6Error(2, 0, src, dst, quoted, mtu);
}

export interface Flow {
  src: string;
  dst: string;
  proto: 'tcp' | 'udp';
  sport: number;
  dport: number;
  payload?: Buffer;
  flags?: number;
}

/** A whole frame for a flow: Ethernet + IPv4/IPv6 + TCP/UDP with correct checksums. */
export function frame(f: Flow, macs: { dst: string; src: string }, extra: { vlan?: number; ip?: Partial<Ip4> } = {}): Buffer {
  const l4 = f.proto === 'tcp' ? tcp(f.src, f.dst, f) : udp(f.src, f.dst, f);
  const proto = PROTO[f.proto];
  if (f.src.includes(':')) return eth(macs.dst, macs.src, ETH_P_IPV6, ipv6({ src: f.src, dst: f.dst, nexthdr: proto, payload: l4 }), extra.vlan);
  return eth(macs.dst, macs.src, ETH_P_IP, ipv4({ src: f.src, dst: f.dst, proto, payload: l4, ...extra.ip }), extra.vlan);
}

/** True when the IPv4 header at `off` sums correctly. */
export function ipv4ChecksumOk(b: Buffer, off: number): boolean {
  const hl = (b[off] & 0xf) * 4;
  return onesSum(b.subarray(off, off + hl)) === 0xffff;
}

/** True when the TCP/UDP/ICMPv6 checksum of the IP packet at `off` is right. */
export function l4ChecksumOk(b: Buffer, off: number): boolean {
  const v = b[off] >> 4;
  if (v === 4) {
    const hl = (b[off] & 0xf) * 4;
    const tot = b.readUInt16BE(off + 2);
    const l4 = b.subarray(off + hl, off + tot);
    if (b[off + 9] === PROTO.udp && l4.readUInt16BE(6) === 0) return true;
    return onesSum(l4, pseudo(b.subarray(off + 12, off + 16), b.subarray(off + 16, off + 20), b[off + 9], l4.length)) === 0xffff;
  }
  const plen = b.readUInt16BE(off + 4);
  const l4 = b.subarray(off + 40, off + 40 + plen);
  return onesSum(l4, pseudo(b.subarray(off + 8, off + 24), b.subarray(off + 24, off + 40), b[off + 6], l4.length)) === 0xffff;
}

/**
 * An IPv6 extension header (hop-by-hop, destination options or routing) of `len` bytes (a
 * multiple of 8), filled with PadN options (routing: type 4, `segmentsLeft`).
 */
export function ext6(nexthdr: number, o: { len?: number; routing?: boolean; segmentsLeft?: number } = {}): Buffer {
  const len = o.len ?? 8;
  const h = Buffer.alloc(len);
  h[0] = nexthdr;
  h[1] = len / 8 - 1;
  if (o.routing) {
    h[2] = 4;
    h[3] = o.segmentsLeft ?? 0;
  } else {
    h[2] = 1; /* PadN over the rest */
    h[3] = len - 4;
  }
  return h;
}

/** An IPv6 fragment header. */
export function frag6(nexthdr: number, offset8: number, more: boolean, id = 0x1234): Buffer {
  const h = Buffer.alloc(8);
  h[0] = nexthdr;
  h.writeUInt16BE((offset8 << 3) | (more ? 1 : 0), 2);
  h.writeUInt32BE(id, 4);
  return h;
}
