/**
 * Encoding of IPVS services and destinations into generic netlink attributes, and decoding of
 * the kernel's replies (as laid out by net/netfilter/ipvs/ip_vs_ctl.c), checked byte by byte.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Attr, be16, decodeAttrs, encodeAttrs, getBe16, getStr, getU16, getU32, str, u16, u32, u8 } from '../../src/dataplane/ipvs/attrs.js';
import {
  AF_INET, AF_INET6, CmdAttr, DestAttr, type IpvsDest, type IpvsService, StatsAttr, SvcAttr, SvcFlag,
  decodeDestMessage, decodeInfo, decodeServiceMessage, destMessage, serviceIdKey, serviceMessage,
} from '../../src/dataplane/ipvs/protocol.js';

const svc4: IpvsService = { address: '10.99.100.1', port: 80, protocol: 'tcp', scheduler: 'mh', flags: SvcFlag.SCHED1 | SvcFlag.SCHED2, timeout: 0, netmask: 0xffffffff };
const dest4: IpvsDest = { address: '10.99.0.11', port: 80, fwd: 'route', weight: 3, upperThreshold: 0, lowerThreshold: 0 };

function inner(payload: Buffer, type: number): Map<number, Buffer> {
  const top = decodeAttrs(payload);
  const n = top.get(type);
  assert.ok(n, `attribute ${type} present`);
  return decodeAttrs(n);
}

test('a new service carries af, protocol, 16-byte address, port, scheduler, flags with mask, timeout, netmask', () => {
  const a = inner(serviceMessage(svc4, true), CmdAttr.SERVICE);
  assert.equal(getU16(a.get(SvcAttr.AF)), AF_INET);
  assert.equal(getU16(a.get(SvcAttr.PROTOCOL)), 6);
  assert.deepEqual([...a.get(SvcAttr.ADDR)!], [10, 99, 100, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual([...a.get(SvcAttr.PORT)!], [0, 80]);
  assert.equal(getStr(a.get(SvcAttr.SCHED_NAME)), 'mh');
  const flags = a.get(SvcAttr.FLAGS)!;
  assert.equal(flags.length, 8);
  assert.equal(flags.readUInt32LE(0), 0x18);
  assert.equal(flags.readUInt32LE(4), 0xffffffff);
  assert.equal(getU32(a.get(SvcAttr.TIMEOUT)), 0);
  assert.equal(getU32(a.get(SvcAttr.NETMASK)), 0xffffffff);
});

test('the kernel-set HASHED flag is never sent', () => {
  const a = inner(serviceMessage({ ...svc4, flags: SvcFlag.HASHED | SvcFlag.SCHED1 }, true), CmdAttr.SERVICE);
  assert.equal(a.get(SvcAttr.FLAGS)!.readUInt32LE(0), SvcFlag.SCHED1);
});

test('a service id (for delete and get) carries only af, protocol, address and port', () => {
  const a = inner(serviceMessage(svc4, false), CmdAttr.SERVICE);
  assert.deepEqual([...a.keys()].sort((x, y) => x - y), [SvcAttr.AF, SvcAttr.PROTOCOL, SvcAttr.ADDR, SvcAttr.PORT]);
});

test('an IPv6 UDP service is AF_INET6, protocol 17, the full 16 bytes', () => {
  const a = inner(serviceMessage({ address: '2001:db8::1', port: 443, protocol: 'udp' }, false), CmdAttr.SERVICE);
  assert.equal(getU16(a.get(SvcAttr.AF)), AF_INET6);
  assert.equal(getU16(a.get(SvcAttr.PROTOCOL)), 17);
  assert.equal(a.get(SvcAttr.ADDR)!.toString('hex'), '20010db8000000000000000000000001');
  assert.equal(getBe16(a.get(SvcAttr.PORT)), 443);
});

test('a destination command names its service and carries forwarding, weight, thresholds, family', () => {
  const msg = destMessage(svc4, dest4, true);
  const s = inner(msg, CmdAttr.SERVICE);
  assert.equal(getBe16(s.get(SvcAttr.PORT)), 80);
  const d = inner(msg, CmdAttr.DEST);
  assert.deepEqual([...d.get(DestAttr.ADDR)!.subarray(0, 4)], [10, 99, 0, 11]);
  assert.equal(getBe16(d.get(DestAttr.PORT)), 80);
  assert.equal(getU32(d.get(DestAttr.FWD_METHOD)), 3); // IP_VS_CONN_F_DROUTE
  assert.equal(getU32(d.get(DestAttr.WEIGHT)), 3);
  assert.equal(getU32(d.get(DestAttr.U_THRESH)), 0);
  assert.equal(getU32(d.get(DestAttr.L_THRESH)), 0);
  assert.equal(getU16(d.get(DestAttr.ADDR_FAMILY)), AF_INET);
});

test('forwarding methods map to the kernel codes: masq 0, tunnel 2, route 3', () => {
  const code = (fwd: IpvsDest['fwd']) => getU32(inner(destMessage(svc4, { ...dest4, fwd }, true), CmdAttr.DEST).get(DestAttr.FWD_METHOD));
  assert.deepEqual([code('masq'), code('tunnel'), code('route')], [0, 2, 3]);
});

test('a destination id (for delete) carries only address, port and family', () => {
  const d = inner(destMessage(svc4, { address: '10.99.0.11', port: 80 }, false), CmdAttr.DEST);
  assert.deepEqual([...d.keys()].sort((x, y) => x - y), [DestAttr.ADDR, DestAttr.PORT, DestAttr.ADDR_FAMILY]);
});

function stats64(conns: number, inpkts: number, inbytes: number): Attr[] {
  const u64 = (n: number) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(n)); return b; };
  return [
    { type: StatsAttr.CONNS, value: u64(conns) }, { type: StatsAttr.INPKTS, value: u64(inpkts) },
    { type: StatsAttr.OUTPKTS, value: u64(0) }, { type: StatsAttr.INBYTES, value: u64(inbytes) },
    { type: StatsAttr.OUTBYTES, value: u64(0) },
  ];
}

/** A GET_SERVICE reply as ip_vs_genl_fill_service lays it out. */
function kernelService(over: Partial<Record<number, Buffer>> = {}, extra: Attr[] = []): Buffer {
  const addr = Buffer.alloc(16); Buffer.from([10, 99, 100, 1]).copy(addr);
  const base: Record<number, Buffer> = {
    [SvcAttr.AF]: u16(AF_INET), [SvcAttr.PROTOCOL]: u16(6), [SvcAttr.ADDR]: addr, [SvcAttr.PORT]: be16(80),
    [SvcAttr.SCHED_NAME]: str('mh'), [SvcAttr.FLAGS]: Buffer.concat([u32(0x1a), u32(0xffffffff)]),
    [SvcAttr.TIMEOUT]: u32(0), [SvcAttr.NETMASK]: u32(0xffffffff), ...over,
  };
  const attrs: Attr[] = Object.entries(base).map(([t, v]) => ({ type: Number(t), value: v! }));
  return encodeAttrs([{ type: CmdAttr.SERVICE, nested: [...attrs, ...extra] }]);
}

test('a kernel service reply decodes to the service, managed flags only, with 64-bit stats', () => {
  const s = decodeServiceMessage(kernelService({}, [{ type: SvcAttr.STATS64, nested: stats64(7, 70, 7000) }]));
  assert.ok(s);
  assert.equal(serviceIdKey(s), '10.99.100.1:80/tcp');
  assert.equal(s.scheduler, 'mh');
  assert.equal(s.flags, SvcFlag.SCHED1 | SvcFlag.SCHED2); // 0x1a without HASHED
  assert.equal(s.stats?.conns, 7);
  assert.equal(s.stats?.inPkts, 70);
  assert.equal(s.stats?.inBytes, 7000);
});

test('a firewall-mark service is not one of sluice\'s kind and decodes to null', () => {
  assert.equal(decodeServiceMessage(kernelService({ [SvcAttr.FWMARK]: u32(5) })), null);
});

test('an SCTP service decodes to null', () => {
  assert.equal(decodeServiceMessage(kernelService({ [SvcAttr.PROTOCOL]: u16(132) })), null);
});

test('an IPv6 service reply decodes to the canonical address', () => {
  const s = decodeServiceMessage(kernelService({
    [SvcAttr.AF]: u16(AF_INET6), [SvcAttr.ADDR]: Buffer.from('20010db8000000000000000000000001', 'hex'),
  }));
  assert.equal(s?.address, '2001:db8::1');
});

test('a kernel destination reply decodes forwarding, weight, connection counts and stats', () => {
  const addr = Buffer.alloc(16); Buffer.from([10, 99, 0, 12]).copy(addr);
  const payload = encodeAttrs([{ type: CmdAttr.DEST, nested: [
    { type: DestAttr.ADDR, value: addr }, { type: DestAttr.PORT, value: be16(8080) },
    { type: DestAttr.FWD_METHOD, value: u32(0) }, { type: DestAttr.WEIGHT, value: u32(0) },
    { type: DestAttr.U_THRESH, value: u32(0) }, { type: DestAttr.L_THRESH, value: u32(0) },
    { type: DestAttr.ACTIVE_CONNS, value: u32(4) }, { type: DestAttr.INACT_CONNS, value: u32(2) },
    { type: DestAttr.PERSIST_CONNS, value: u32(0) }, { type: DestAttr.ADDR_FAMILY, value: u16(AF_INET) },
    { type: DestAttr.TUN_TYPE, value: u8(0) }, { type: DestAttr.STATS64, nested: stats64(9, 90, 900) },
  ] }]);
  const d = decodeDestMessage(payload, AF_INET);
  assert.equal(d.address, '10.99.0.12');
  assert.equal(d.port, 8080);
  assert.equal(d.fwd, 'masq');
  assert.equal(d.weight, 0);
  assert.equal(d.activeConns, 4);
  assert.equal(d.inactiveConns, 2);
  assert.equal(d.stats?.conns, 9);
});

test('a destination reply without its own family takes the service\'s', () => {
  const payload = encodeAttrs([{ type: CmdAttr.DEST, nested: [
    { type: DestAttr.ADDR, value: Buffer.from('20010db8000000000000000000000011', 'hex') }, { type: DestAttr.PORT, value: be16(443) },
    { type: DestAttr.FWD_METHOD, value: u32(2) }, { type: DestAttr.WEIGHT, value: u32(1) },
  ] }]);
  const d = decodeDestMessage(payload, AF_INET6);
  assert.equal(d.address, '2001:db8::11');
  assert.equal(d.fwd, 'tunnel');
});

test('32-bit stats of old kernels decode too (bytes stay 64-bit)', () => {
  const b8 = Buffer.alloc(8); b8.writeBigUInt64LE(123456789012n);
  const s = decodeServiceMessage(kernelService({}, [{ type: SvcAttr.STATS, nested: [
    { type: StatsAttr.CONNS, value: u32(3) }, { type: StatsAttr.INPKTS, value: u32(30) }, { type: StatsAttr.INBYTES, value: b8 },
  ] }]));
  assert.equal(s?.stats?.conns, 3);
  assert.equal(s?.stats?.inBytes, 123456789012);
});

test('a GET_INFO reply gives the version as text', () => {
  const info = decodeInfo(encodeAttrs([{ type: 1, value: u32(0x010201) }, { type: 2, value: u32(4096) }]));
  assert.deepEqual(info, { version: '1.2.1', connTabSize: 4096 });
});
