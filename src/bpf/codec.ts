/**
 * Fixed-size binary codecs for BPF map keys and values. A struct codec mirrors one C struct
 * field by field, including its padding, so layouts are checked in one place (the size).
 */
import { BpfError } from './errors.js';

export interface Codec<T> {
  readonly size: number;
  encode(value: T, buf: Buffer, offset: number): void;
  decode(buf: Buffer, offset: number): T;
}

export function encode<T>(c: Codec<T>, v: T): Buffer {
  const b = Buffer.alloc(c.size);
  c.encode(v, b, 0);
  return b;
}

export const u8: Codec<number> = { size: 1, encode: (v, b, o) => void b.writeUInt8(v, o), decode: (b, o) => b.readUInt8(o) };
export const u16: Codec<number> = { size: 2, encode: (v, b, o) => void b.writeUInt16LE(v, o), decode: (b, o) => b.readUInt16LE(o) };
/** Network byte order, for ports kept as on the wire. */
export const be16: Codec<number> = { size: 2, encode: (v, b, o) => void b.writeUInt16BE(v, o), decode: (b, o) => b.readUInt16BE(o) };
export const u32: Codec<number> = { size: 4, encode: (v, b, o) => void b.writeUInt32LE(v >>> 0, o), decode: (b, o) => b.readUInt32LE(o) };
export const u64: Codec<bigint> = { size: 8, encode: (v, b, o) => void b.writeBigUInt64LE(v, o), decode: (b, o) => b.readBigUInt64LE(o) };
/** A u64 counter read as a JS number (exact below 2^53, which counters don't reach). */
export const u64n: Codec<number> = { size: 8, encode: (v, b, o) => void b.writeBigUInt64LE(BigInt(v), o), decode: (b, o) => Number(b.readBigUInt64LE(o)) };

export function bytes(size: number): Codec<Buffer> {
  return {
    size,
    encode: (v, b, o) => {
      if (v.length > size) throw new BpfError('codec.bytes', 'EINVAL', `${v.length} bytes do not fit a ${size}-byte field`);
      b.fill(0, o, o + size);
      v.copy(b, o);
    },
    decode: (b, o) => Buffer.from(b.subarray(o, o + size)),
  };
}

export function pad(size: number): Codec<undefined> {
  return { size, encode: (_v, b, o) => void b.fill(0, o, o + size), decode: () => undefined };
}

type Fields = Record<string, Codec<any>>;
type StructOf<F extends Fields> = { [K in keyof F as F[K] extends Codec<undefined> ? never : K]: F[K] extends Codec<infer T> ? T : never };

/** Fields in C declaration order; insert `pad(n)` under a `_padN` name where C pads. */
export function struct<F extends Fields>(fields: F, size?: number): Codec<StructOf<F>> {
  const entries = Object.entries(fields);
  const natural = entries.reduce((n, [, c]) => n + c.size, 0);
  const total = size ?? natural;
  if (total < natural) throw new BpfError('codec.struct', 'EINVAL', `struct fields take ${natural} bytes, more than its size ${total}`);
  return {
    size: total,
    encode(v, b, o) {
      b.fill(0, o, o + total);
      let off = o;
      for (const [k, c] of entries) { c.encode((v as Record<string, unknown>)[k], b, off); off += c.size; }
    },
    decode(b, o) {
      const out: Record<string, unknown> = {};
      let off = o;
      for (const [k, c] of entries) { const x = c.decode(b, off); if (x !== undefined) out[k] = x; off += c.size; }
      return out as StructOf<F>;
    },
  };
}
