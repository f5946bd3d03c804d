/**
 * Netlink attributes (struct nlattr: u16 length, u16 type, payload, padded to 4 bytes), the
 * small subset the IPVS family needs: integers in host or network order, strings, binary
 * blobs and nested attribute lists. Host order is little-endian: sluice runs on x86-64 and
 * arm64 Linux.
 */

export const NLA_ALIGNTO = 4;
export const NLA_HDRLEN = 4;
/** Set in nla_type on nested attributes by some senders; never part of the type number. */
export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
export const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;

export const nlaAlign = (n: number): number => (n + NLA_ALIGNTO - 1) & ~(NLA_ALIGNTO - 1);

/** One attribute to encode: a type number and its payload (already encoded, or nested attributes). */
export type Attr = { type: number; value: Buffer } | { type: number; nested: Attr[] };

export function encodeAttrs(attrs: Attr[]): Buffer {
  const parts: Buffer[] = [];
  for (const a of attrs) {
    const payload = 'nested' in a ? encodeAttrs(a.nested) : a.value;
    const len = NLA_HDRLEN + payload.length;
    if (len > 0xffff) throw new RangeError(`netlink attribute ${a.type} too long (${len} bytes)`);
    const hdr = Buffer.alloc(NLA_HDRLEN);
    hdr.writeUInt16LE(len, 0);
    hdr.writeUInt16LE('nested' in a ? a.type | NLA_F_NESTED : a.type, 2);
    parts.push(hdr, payload, Buffer.alloc(nlaAlign(len) - len));
  }
  return Buffer.concat(parts);
}

/**
 * Decode a run of attributes into a map from type (flags masked off) to payload. A later
 * duplicate replaces an earlier one, as the kernel's nla_parse does. Throws on truncation.
 */
export function decodeAttrs(buf: Uint8Array): Map<number, Buffer> {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const out = new Map<number, Buffer>();
  let off = 0;
  while (off + NLA_HDRLEN <= b.length) {
    const len = b.readUInt16LE(off);
    const type = b.readUInt16LE(off + 2) & NLA_TYPE_MASK;
    if (len < NLA_HDRLEN || off + len > b.length) {
      throw new RangeError(`malformed netlink attribute at offset ${off}: length ${len}, ${b.length - off} bytes left`);
    }
    out.set(type, b.subarray(off + NLA_HDRLEN, off + len));
    off += nlaAlign(len);
  }
  if (off < b.length && b.length - off >= NLA_HDRLEN) throw new RangeError('trailing bytes after netlink attributes');
  return out;
}

// ---- payload encoders

export const u8 = (n: number): Buffer => Buffer.from([n & 0xff]);
export function u16(n: number): Buffer { const b = Buffer.alloc(2); b.writeUInt16LE(n); return b; }
export function u32(n: number): Buffer { const b = Buffer.alloc(4); b.writeUInt32LE(n >>> 0); return b; }
/** Network byte order (__be16), as ports are carried. */
export function be16(n: number): Buffer { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b; }
export function be32(n: number): Buffer { const b = Buffer.alloc(4); b.writeUInt32BE(n >>> 0); return b; }
/** NUL-terminated string (NLA_NUL_STRING / NLA_STRING both accept it). */
export const str = (s: string): Buffer => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.alloc(1)]);

// ---- payload decoders (strict about sizes: a wrong size means a wrong attribute number)

function need(b: Buffer | undefined, size: number, what: string): Buffer {
  if (!b) throw new RangeError(`missing ${what}`);
  if (b.length < size) throw new RangeError(`${what}: ${b.length} bytes, expected ${size}`);
  return b;
}
export const getU8 = (b: Buffer | undefined, what = 'u8'): number => need(b, 1, what).readUInt8(0);
export const getU16 = (b: Buffer | undefined, what = 'u16'): number => need(b, 2, what).readUInt16LE(0);
export const getU32 = (b: Buffer | undefined, what = 'u32'): number => need(b, 4, what).readUInt32LE(0);
export const getBe16 = (b: Buffer | undefined, what = 'be16'): number => need(b, 2, what).readUInt16BE(0);
/** u64 as a JS number (exact below 2^53, which counters reach after centuries). */
export const getU64 = (b: Buffer | undefined, what = 'u64'): number => Number(need(b, 8, what).readBigUInt64LE(0));
export function getStr(b: Buffer | undefined, what = 'string'): string {
  const v = need(b, 0, what);
  const nul = v.indexOf(0);
  return v.subarray(0, nul < 0 ? v.length : nul).toString('utf8');
}
