/**
 * The balancer's flow hash (bpf/hash.h) in TypeScript: which ring slot a flow lands on. Values
 * are the words as the program loads them from the packet (little-endian loads of network-order
 * bytes on x86 and arm64).
 */
import { ipToBytes } from '../../model/address.js';

const HASH_SEED = 0x5151c0de;
const INIT = 0xdeadbeef;

const rol = (w: number, s: number) => ((w << s) | (w >>> (32 - s))) >>> 0;

function final(a: number, b: number, c: number): number {
  c = ((c ^ b) - rol(b, 14)) >>> 0;
  a = ((a ^ c) - rol(c, 11)) >>> 0;
  b = ((b ^ a) - rol(a, 25)) >>> 0;
  c = ((c ^ b) - rol(b, 16)) >>> 0;
  a = ((a ^ c) - rol(c, 4)) >>> 0;
  b = ((b ^ a) - rol(a, 14)) >>> 0;
  c = ((c ^ b) - rol(b, 24)) >>> 0;
  return c;
}

function mix(a: number, b: number, c: number): [number, number, number] {
  a = (a - c) >>> 0; a = (a ^ rol(c, 4)) >>> 0; c = (c + b) >>> 0;
  b = (b - a) >>> 0; b = (b ^ rol(a, 6)) >>> 0; a = (a + c) >>> 0;
  c = (c - b) >>> 0; c = (c ^ rol(b, 8)) >>> 0; b = (b + a) >>> 0;
  a = (a - c) >>> 0; a = (a ^ rol(c, 16)) >>> 0; c = (c + b) >>> 0;
  b = (b - a) >>> 0; b = (b ^ rol(a, 19)) >>> 0; a = (a + c) >>> 0;
  c = (c - b) >>> 0; c = (c ^ rol(b, 4)) >>> 0; b = (b + a) >>> 0;
  return [a, b, c];
}

export function jhash3(a: number, b: number, c: number, initval: number): number {
  return final((a + INIT) >>> 0, (b + INIT) >>> 0, (c + initval) >>> 0);
}

export function jhash2(a: number, b: number, initval: number): number {
  return jhash3(a, b, 0, (initval + INIT + 8) >>> 0);
}

export function jhash6(k: number[], w4: number, w5: number, initval: number): number {
  let a = (INIT + 24 + initval) >>> 0, b = a, c = a;
  a = (a + k[0]) >>> 0; b = (b + k[1]) >>> 0; c = (c + k[2]) >>> 0;
  [a, b, c] = mix(a, b, c);
  a = (a + k[3]) >>> 0; b = (b + w4) >>> 0; c = (c + w5) >>> 0;
  return final(a, b, c);
}

const swap16 = (x: number) => ((x & 0xff) << 8) | (x >> 8);

/** The hash of a flow from `src` (ports 0 for src-ip VIPs), as bpf/hash.h flow_hash computes it. */
export function flowHash(src: string, sport: number, dport: number): number {
  const b = ipToBytes(src);
  const ports = ((swap16(sport) << 16) | swap16(dport)) >>> 0;
  if (b.length === 4) return jhash2(b.readUInt32LE(0), ports, HASH_SEED);
  return jhash6([0, 4, 8, 12].map((o) => b.readUInt32LE(o)), ports, 0, HASH_SEED);
}

/** The ring slot a flow lands on. */
export function ringSlot(ringSize: number, src: string, sport: number, dport: number): number {
  return flowHash(src, sport, dport) % ringSize;
}
