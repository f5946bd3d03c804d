/**
 * The netlink attribute encoder/decoder under the IPVS client: layout (length, type, 4-byte
 * padding), nesting, integers in host and network order, strings, and refusal of malformed input.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  NLA_F_NESTED, be16, decodeAttrs, encodeAttrs, getBe16, getStr, getU16, getU32, getU64, getU8, nlaAlign, str, u16, u32, u8,
} from '../../src/dataplane/ipvs/attrs.js';

test('an attribute is length (header included), type, payload, padded to 4 bytes', () => {
  const b = encodeAttrs([{ type: 6, value: Buffer.from([0x61, 0x62, 0x63, 0x00, 0x7a]) }]);
  assert.deepEqual([...b], [9, 0, 6, 0, 0x61, 0x62, 0x63, 0x00, 0x7a, 0, 0, 0]);
});

test('a nested attribute carries NLA_F_NESTED and the encoded children', () => {
  const b = encodeAttrs([{ type: 1, nested: [{ type: 2, value: u16(10) }] }]);
  assert.equal(b.readUInt16LE(0), 12);
  assert.equal(b.readUInt16LE(2), 1 | NLA_F_NESTED);
  assert.deepEqual([...b.subarray(4)], [6, 0, 2, 0, 10, 0, 0, 0]);
});

test('decoding masks the nested and byte-order flags off the type', () => {
  const b = encodeAttrs([{ type: 1, nested: [{ type: 3, value: u32(7) }] }]);
  const top = decodeAttrs(b);
  assert.deepEqual([...top.keys()], [1]);
  assert.equal(getU32(decodeAttrs(top.get(1)!).get(3)), 7);
});

test('encode then decode gives back every attribute, in any mix of sizes', () => {
  const b = encodeAttrs([
    { type: 1, value: u8(200) },
    { type: 2, value: u16(0xbeef) },
    { type: 3, value: str('mh') },
    { type: 4, value: be16(8080) },
    { type: 5, value: u32(0xfffffffe) },
  ]);
  const a = decodeAttrs(b);
  assert.equal(getU8(a.get(1)), 200);
  assert.equal(getU16(a.get(2)), 0xbeef);
  assert.equal(getStr(a.get(3)), 'mh');
  assert.equal(getBe16(a.get(4)), 8080);
  assert.equal(getU32(a.get(5)), 0xfffffffe);
});

test('ports travel in network byte order', () => {
  assert.deepEqual([...be16(80)], [0x00, 0x50]);
  assert.equal(getBe16(Buffer.from([0x1f, 0x90])), 8080);
});

test('u64 counters decode as numbers', () => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(5_000_000_000n);
  assert.equal(getU64(b), 5_000_000_000);
});

test('a string stops at its NUL', () => {
  assert.equal(getStr(Buffer.from('wlc\0junk')), 'wlc');
});

test('a later duplicate attribute wins, as in the kernel', () => {
  const a = decodeAttrs(encodeAttrs([{ type: 4, value: u32(1) }, { type: 4, value: u32(2) }]));
  assert.equal(getU32(a.get(4)), 2);
});

test('an attribute whose length runs past the buffer is refused', () => {
  const b = encodeAttrs([{ type: 1, value: u32(1) }]);
  b.writeUInt16LE(40, 0);
  assert.throws(() => decodeAttrs(b), /malformed netlink attribute/);
});

test('an attribute shorter than its own header is refused', () => {
  const b = Buffer.from([2, 0, 1, 0]);
  assert.throws(() => decodeAttrs(b), /malformed/);
});

test('a payload too short for its type is refused, naming it', () => {
  assert.throws(() => getU32(Buffer.from([1, 2]), 'weight'), /weight: 2 bytes, expected 4/);
  assert.throws(() => getU16(undefined, 'service af'), /missing service af/);
});

test('alignment rounds up to a multiple of 4', () => {
  assert.deepEqual([0, 1, 4, 5, 8].map(nlaAlign), [0, 4, 4, 8, 8]);
});
