/**
 * The balancer's less common paths, packet by packet (exact bytes and action through
 * BPF_PROG_TEST_RUN): IPIP against the egress MTU (ICMP "fragmentation needed" / "packet too big"
 * back to the client), the outer header's DF, id and source prefix, UDP checksums that come out
 * 0, IP packets shorter than their frame (Ethernet padding), a ring that still points at a real
 * marked down, reals behind another interface (tx ports), and IPv6 extension headers.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { XdpAction } from '../../src/bpf/program.js';
import * as S from '../../src/dataplane/xdp/structs.js';
import { flowHash } from '../../src/dataplane/xdp/hash.js';
import { bytesToIp, ipToBytes, macToBytes } from '../../src/model/address.js';
import { CLIENT_MAC, ENCAP_SRC4, ENCAP_SRC6, GW_MAC, LB_MAC, TestBalancer, realMac } from './fixture.js';
import { ETH_P_IP, ETH_P_IPV6, PROTO, eth, ext6, frag6, frame, icmp6TooBig, icmpFragNeeded, ipv4, ipv6, l4ChecksumOk, tcp, udp, type Flow } from './packet.js';

const toLb = { dst: LB_MAC, src: CLIENT_MAC };
const PORT1_MAC = '02:00:00:00:0e:01';
const PORT2_MAC = '02:00:00:00:0e:02';
const OWN_MAC = '02:00:00:00:0e:00';
const DF = 0x4000;
const hex = (b: Buffer) => b.toString('hex');

let b: TestBalancer;
let seq = 0;
const client = (fam: 4 | 6) => (++seq, fam === 4 ? `192.168.${seq >> 8}.${seq & 0xff}` : `2001:db8:c::${seq.toString(16)}`);

function withMacs(f: Buffer, dst: string, src: string): Buffer {
  const o = Buffer.from(f);
  macToBytes(dst).copy(o, 0);
  macToBytes(src).copy(o, 6);
  return o;
}

/** The outer IPv4/IPv6 source an encap prefix `a.b.c.d/len` gives a flow (host bits from its hash). */
function encapSource(prefix: string, f: Flow): string {
  const [base, len] = prefix.split('/');
  const h = flowHash(f.src, f.sport, f.dport);
  const b6 = base.includes(':');
  const hostBits = len === undefined ? 0 : Math.min(32, (b6 ? 128 : 32) - Number(len));
  const mask = hostBits ? (2 ** hostBits - 1) >>> 0 : 0;
  const bytes = Buffer.from(ipToBytes(base));
  const o = bytes.length - 4;
  bytes.writeUInt32BE(((bytes.readUInt32BE(o) & ~mask) | (h & mask)) >>> 0, o);
  return bytesToIp(bytes);
}

/** What IPIP makes of an untagged frame: outer IPv4 to a real (DF and id as the inner packet's, see encap.h). */
function ipip4(inFrame: Buffer, real: string, f: Flow, o: { dstMac: string; srcMac: string; prefix?: string; pad?: Buffer }): Buffer {
  const inner = inFrame.subarray(14, 14 + inFrame.readUInt16BE(16));
  const h = flowHash(f.src, f.sport, f.dport);
  const out = eth(o.dstMac, o.srcMac, ETH_P_IP, ipv4({
    src: encapSource(o.prefix ?? ENCAP_SRC4, f), dst: real, proto: PROTO.ipip, payload: inner,
    id: inner.readUInt16BE(4) ^ (h >>> 16), fragOff: inner.readUInt16BE(6) & DF, tos: inner[1],
  }));
  return o.pad ? Buffer.concat([out, o.pad]) : out;
}

function ipip6(inFrame: Buffer, real: string, f: Flow, o: { dstMac: string; srcMac: string; prefix?: string }): Buffer {
  const inner = inFrame.subarray(14);
  const outer = ipv6({ src: encapSource(o.prefix ?? ENCAP_SRC6, f), dst: real, nexthdr: inner[0] >> 4 === 6 ? PROTO.ipv6 : PROTO.ipip, payload: inner });
  return eth(o.dstMac, o.srcMac, ETH_P_IPV6, outer);
}

before(async () => {
  b = await TestBalancer.load();
});
after(() => b?.close());

describe('IPIP and the egress MTU', () => {
  const VIP4 = '10.8.0.1';
  const VIP6 = '2001:db8:8::1';
  before(() => {
    b.setReal({ slot: 1, addr: '10.1.8.1', noMac: true });
    b.setReal({ slot: 2, addr: '2001:db8:18::2', noMac: true });
    b.setReal({ slot: 3, addr: '10.1.8.3', txPort: 2 });
    b.setVip({ id: 0, addr: VIP4, port: 80, proto: 'tcp', mode: 'ipip', ring: [1] });
    b.setVip({ id: 1, addr: VIP6, port: 80, proto: 'tcp', mode: 'ipip', ring: [2] });
    b.setVip({ id: 2, addr: '10.8.0.2', port: 80, proto: 'tcp', mode: 'ipip', ring: [2] }); /* 4in6 */
    b.setVip({ id: 3, addr: '10.8.0.3', port: 80, proto: 'tcp', mode: 'ipip', ring: [3] }); /* behind port 2 */
    b.setVip({ id: 4, addr: '10.8.0.4', port: 53, proto: 'udp', mode: 'ipip', ring: [1] });
    b.setPort(0, { mtu: 1500 });
    b.setPort(2, { ifindex: 1, devIfindex: 1, mac: PORT2_MAC, mtu: 1400 });
  });
  after(() => b.setPort(0, {}));
  /** A TCP segment whose IP packet is `ipLen` bytes. */
  const seg = (src: string, dst: string, ipLen: number, o: { df?: boolean; vlan?: number; id?: number } = {}): { f: Flow; frame: Buffer } => {
    const hl = src.includes(':') ? 40 : 20;
    const f: Flow = { src, dst, proto: 'tcp', sport: 40000 + seq, dport: 80, payload: Buffer.alloc(ipLen - hl - 20, 0x5a) };
    return { f, frame: frame(f, toLb, { vlan: o.vlan, ip: { fragOff: o.df === false ? 0 : DF, id: o.id ?? 0x4321 } }) };
  };

  test('a full-MTU IPv4 segment with DF is answered with ICMP fragmentation needed (MTU 1480), back to the client', () => {
    const c = client(4);
    const { frame: inFrame } = seg(c, VIP4, 1500);
    const n = b.global('icmp_too_big');
    const out = b.run(inFrame);
    assert.equal(out.action, XdpAction.TX);
    const want = eth(CLIENT_MAC, LB_MAC, ETH_P_IP, ipv4({ src: VIP4, dst: c, proto: PROTO.icmp, id: 0, fragOff: DF, ttl: 64, payload: icmpFragNeeded(inFrame.subarray(14, 14 + 128), 1480) }));
    assert.equal(hex(out.data), hex(want));
    assert.equal(b.global('icmp_too_big'), n + 1);
  });

  test('a segment that fits once encapsulated (1480 + 20 = the MTU) is encapsulated', () => {
    const c = client(4);
    const { f, frame: inFrame } = seg(c, VIP4, 1480);
    const out = b.run(inFrame);
    assert.equal(out.action, XdpAction.TX);
    assert.equal(hex(out.data), hex(ipip4(inFrame, '10.1.8.1', f, { dstMac: GW_MAC, srcMac: LB_MAC })));
    assert.equal(out.data.length, 14 + 1500);
  });

  test('the outer IPv4 header copies DF and takes the inner id mixed with the flow hash, so packets of a flow differ', () => {
    const c = client(4);
    const a = seg(c, VIP4, 200, { df: false, id: 1 });
    const a2 = { f: a.f, frame: frame(a.f, toLb, { ip: { fragOff: 0, id: 2 } }) };
    const o1 = b.run(a.frame);
    const o2 = b.run(a2.frame);
    assert.equal(hex(o1.data), hex(ipip4(a.frame, '10.1.8.1', a.f, { dstMac: GW_MAC, srcMac: LB_MAC })));
    assert.equal(hex(o2.data), hex(ipip4(a2.frame, '10.1.8.1', a.f, { dstMac: GW_MAC, srcMac: LB_MAC })));
    assert.equal(o1.data.readUInt16BE(14 + 6), 0, 'DF clear as inside');
    assert.notEqual(o1.data.readUInt16BE(14 + 4), o2.data.readUInt16BE(14 + 4), 'two packets of one flow: two outer ids');
    const d = seg(c, VIP4, 200, { df: true });
    assert.equal(b.run(d.frame).data.readUInt16BE(14 + 6), DF, 'DF set as inside');
  });

  test('too big without DF: dropped and counted (routers may fragment it, the balancer does not)', () => {
    const { frame: inFrame } = seg(client(4), VIP4, 1500, { df: false });
    const n = b.global('drop_too_big');
    assert.equal(b.run(inFrame).action, XdpAction.DROP);
    assert.equal(b.global('drop_too_big'), n + 1);
  });

  test('a full-MTU IPv6 segment is answered with ICMPv6 packet too big (MTU 1460)', () => {
    const c = client(6);
    const { frame: inFrame } = seg(c, VIP6, 1500);
    const out = b.run(inFrame);
    assert.equal(out.action, XdpAction.TX);
    const want = eth(CLIENT_MAC, LB_MAC, ETH_P_IPV6, ipv6({ src: VIP6, dst: c, nexthdr: PROTO.icmpv6, hopLimit: 64, payload: icmp6TooBig(VIP6, c, inFrame.subarray(14, 14 + 128), 1460) }));
    assert.equal(hex(out.data), hex(want));
    assert.ok(l4ChecksumOk(out.data, 14));
  });

  test('4in6: an IPv4 segment to an IPv6 real allows for 40 bytes (MTU 1460)', () => {
    const c = client(4);
    const { frame: inFrame } = seg(c, '10.8.0.2', 1461);
    const out = b.run(inFrame);
    assert.equal(out.action, XdpAction.TX);
    const want = eth(CLIENT_MAC, LB_MAC, ETH_P_IP, ipv4({ src: '10.8.0.2', dst: c, proto: PROTO.icmp, id: 0, fragOff: DF, ttl: 64, payload: icmpFragNeeded(inFrame.subarray(14, 14 + 128), 1460) }));
    assert.equal(hex(out.data), hex(want));
    const fits = seg(c, '10.8.0.2', 1460);
    const o2 = b.run(fits.frame);
    assert.equal(hex(o2.data), hex(ipip6(fits.frame, '2001:db8:18::2', fits.f, { dstMac: GW_MAC, srcMac: LB_MAC })));
  });

  test('a VLAN-tagged too-big segment is answered under its tag', () => {
    const c = client(4);
    const { frame: inFrame } = seg(c, VIP4, 1500, { vlan: 9 });
    const out = b.run(inFrame);
    assert.equal(out.action, XdpAction.TX);
    const want = eth(CLIENT_MAC, LB_MAC, ETH_P_IP, ipv4({ src: VIP4, dst: c, proto: PROTO.icmp, id: 0, fragOff: DF, ttl: 64, payload: icmpFragNeeded(inFrame.subarray(18, 18 + 128), 1480) }), 9);
    assert.equal(hex(out.data), hex(want));
  });

  test('the MTU is the egress port\'s: a real behind port 2 (MTU 1400) bounces 1381+ bytes; smaller ones go out of port 2 with its MAC', () => {
    const c = client(4);
    const big = seg(c, '10.8.0.3', 1381);
    const out = b.run(big.frame);
    assert.equal(out.action, XdpAction.TX, 'the ICMP goes back out where the segment came in');
    const want = eth(CLIENT_MAC, LB_MAC, ETH_P_IP, ipv4({ src: '10.8.0.3', dst: c, proto: PROTO.icmp, id: 0, fragOff: DF, ttl: 64, payload: icmpFragNeeded(big.frame.subarray(14, 14 + 128), 1380) }));
    assert.equal(hex(out.data), hex(want));
    const ok = seg(c, '10.8.0.3', 1380);
    const o2 = b.run(ok.frame);
    assert.equal(o2.action, XdpAction.REDIRECT);
    assert.equal(hex(o2.data), hex(ipip4(ok.frame, '10.1.8.3', ok.f, { dstMac: realMac(3), srcMac: PORT2_MAC })));
  });

  test('a later fragment too big is dropped (no ICMP about a non-first fragment)', () => {
    const c = client(4);
    const inFrame = eth(LB_MAC, CLIENT_MAC, ETH_P_IP, ipv4({ src: c, dst: '10.8.0.4', proto: PROTO.udp, id: 5, fragOff: 10, payload: Buffer.alloc(1480) }));
    /* Its first fragment, so that the later one is followed. */
    const first = eth(LB_MAC, CLIENT_MAC, ETH_P_IP, ipv4({ src: c, dst: '10.8.0.4', proto: PROTO.udp, id: 5, fragOff: 0x2000, payload: udp(c, '10.8.0.4', { sport: 1, dport: 53, payload: Buffer.alloc(72) }) }));
    assert.equal(b.run(first).action, XdpAction.TX);
    const n = b.global('drop_too_big');
    assert.equal(b.run(inFrame).action, XdpAction.DROP);
    assert.equal(b.global('drop_too_big'), n + 1);
  });

  test('MTU 0 (unknown) checks nothing', () => {
    b.setPort(0, {});
    try {
      const c = client(4);
      const { f, frame: inFrame } = seg(c, VIP4, 1500);
      assert.equal(hex(b.run(inFrame).data), hex(ipip4(inFrame, '10.1.8.1', f, { dstMac: GW_MAC, srcMac: LB_MAC })));
    } finally {
      b.setPort(0, { mtu: 1500 });
    }
  });
});

describe('encap source prefixes', () => {
  before(() => {
    b.setReal({ slot: 4, addr: '10.1.9.4', noMac: true });
    b.setReal({ slot: 5, addr: '2001:db8:19::5', noMac: true });
    b.setVip({ id: 5, addr: '10.9.9.1', port: 80, proto: 'tcp', mode: 'ipip', ring: [4] });
    b.setVip({ id: 6, addr: '2001:db8:99::1', port: 80, proto: 'tcp', mode: 'ipip', ring: [5] });
  });
  after(() => b.setConfig(S.CFG_F_NAT | S.CFG_F_WILDCARD));

  for (const [p4, p6] of [['10.77.0.16/28', '2001:db8:e::/112'], ['10.77.0.5', '2001:db8:e::5'], [ENCAP_SRC4, ENCAP_SRC6]]) {
    test(`sources ${p4} and ${p6}: only the host bits vary with the flow`, () => {
      b.setConfig(S.CFG_F_NAT | S.CFG_F_WILDCARD, { src4: p4, src6: p6 });
      const seen4 = new Set<string>();
      for (let i = 0; i < 40; i++) {
        const f: Flow = { src: client(4), dst: '10.9.9.1', proto: 'tcp', sport: 1000 + i, dport: 80 };
        const out = b.run(frame(f, toLb));
        assert.equal(hex(out.data), hex(ipip4(frame(f, toLb), '10.1.9.4', f, { dstMac: GW_MAC, srcMac: LB_MAC, prefix: p4 })));
        seen4.add(bytesToIp(out.data.subarray(14 + 12, 14 + 16)));
        const f6: Flow = { src: client(6), dst: '2001:db8:99::1', proto: 'tcp', sport: 1000 + i, dport: 80 };
        assert.equal(hex(b.run(frame(f6, toLb)).data), hex(ipip6(frame(f6, toLb), '2001:db8:19::5', f6, { dstMac: GW_MAC, srcMac: LB_MAC, prefix: p6 })));
      }
      if (!p4.includes('/')) assert.deepEqual([...seen4], [p4]);
      else assert.ok(seen4.size > 4, `sources: ${[...seen4].join(' ')}`);
    });
  }
});

describe('UDP checksums that come out 0 are sent as 0xffff', () => {
  const VIP6 = '2001:db8:7::53';
  const REAL6 = '2001:db8:17::7';
  const VIP4 = '10.7.0.53';
  const REAL4 = '10.1.7.7';
  before(() => {
    b.setReal({ slot: 6, addr: REAL6, port: 5353 });
    b.setReal({ slot: 7, addr: REAL4, port: 5353 });
    b.setVip({ id: 7, addr: VIP6, port: 53, proto: 'udp', mode: 'nat', ring: [6] });
    b.setVip({ id: 8, addr: VIP4, port: 53, proto: 'udp', mode: 'nat', ring: [7] });
  });
  /**
   * A payload that makes the UDP datagram src:sport -> dst:dport sum to zero: its first word is the
   * checksum the datagram has with that word 0 (the sum then becomes 0xffff, negative zero).
   */
  const zeroing = (src: string, dst: string, sport: number, dport: number) => {
    const payload = Buffer.alloc(16, 0x11);
    payload.writeUInt16BE(0, 0);
    payload.writeUInt16BE(udp(src, dst, { sport, dport, payload }).readUInt16BE(6), 0);
    assert.equal(udp(src, dst, { sport, dport, payload }).readUInt16BE(6), 0xffff, 'the builder sends the zero as 0xffff');
    return payload;
  };

  for (const fam of [6, 4] as const) {
    test(`IPv${fam}: client to real (destination rewritten) and real to client (source rewritten)`, () => {
      const [vip, real, slot] = fam === 6 ? [VIP6, REAL6, 6] : [VIP4, REAL4, 7];
      const c = client(fam);
      const payload = zeroing(c, real, 7000, 5353);
      const out = b.run(frame({ src: c, dst: vip, proto: 'udp', sport: 7000, dport: 53, payload }, toLb));
      assert.equal(out.action, XdpAction.TX);
      const want = frame({ src: c, dst: real, proto: 'udp', sport: 7000, dport: 5353, payload }, { dst: realMac(slot), src: LB_MAC });
      assert.equal(hex(out.data), hex(want));
      const back = zeroing(vip, c, 53, 7000);
      const reply = b.run(frame({ src: real, dst: c, proto: 'udp', sport: 5353, dport: 7000, payload: back }, { dst: LB_MAC, src: realMac(slot) }));
      assert.equal(reply.action, XdpAction.TX);
      assert.equal(hex(reply.data), hex(frame({ src: vip, dst: c, proto: 'udp', sport: 53, dport: 7000, payload: back }, { dst: CLIENT_MAC, src: LB_MAC })));
    });
  }
});

describe('the IP length bounds the packet, not the frame', () => {
  before(() => {
    b.setReal({ slot: 8, addr: '10.1.6.8', port: 8080 });
    b.setReal({ slot: 9, addr: '10.1.6.9' });
    b.setReal({ slot: 10, addr: '2001:db8:16::a', port: 8080 });
    b.setReal({ slot: 11, addr: '10.1.6.11', noMac: true });
    b.setVip({ id: 9, addr: '10.6.0.1', port: 53, proto: 'udp', mode: 'nat', ring: [8] });
    b.setVip({ id: 10, addr: '10.6.0.2', port: 80, proto: 'tcp', mode: 'dsr', ring: [9] });
    b.setVip({ id: 11, addr: '2001:db8:6::1', port: 53, proto: 'udp', mode: 'nat', ring: [10] });
    b.setVip({ id: 12, addr: '10.6.0.3', port: 53, proto: 'udp', mode: 'ipip', ring: [11] });
    b.setVip({ id: 13, addr: '10.6.0.1', port: 80, proto: 'tcp', mode: 'nat', ring: [8] });
  });
  const PAD = Buffer.alloc(16, 0xee);

  test('NAT: a short UDP datagram padded to the Ethernet minimum is rewritten, the padding left as it was', () => {
    const f: Flow = { src: client(4), dst: '10.6.0.1', proto: 'udp', sport: 5000, dport: 53, payload: Buffer.from('hi') };
    const padded = Buffer.concat([frame(f, toLb), PAD]);
    assert.equal(padded.length, 60);
    const out = b.run(padded);
    assert.equal(out.action, XdpAction.TX);
    assert.equal(hex(out.data), hex(Buffer.concat([frame({ ...f, dst: '10.1.6.8', dport: 8080 }, { dst: realMac(8), src: LB_MAC }), PAD])));
  });

  test('DSR and IPv6 NAT: trailing bytes past the IP length are carried untouched', () => {
    const f: Flow = { src: client(4), dst: '10.6.0.2', proto: 'tcp', sport: 5001, dport: 80 };
    const padded = Buffer.concat([frame(f, toLb), PAD.subarray(0, 6)]);
    assert.equal(hex(b.run(padded).data), hex(withMacs(padded, realMac(9), LB_MAC)));
    const f6: Flow = { src: client(6), dst: '2001:db8:6::1', proto: 'udp', sport: 5002, dport: 53, payload: Buffer.from('x') };
    const out6 = b.run(Buffer.concat([frame(f6, toLb), PAD]));
    assert.equal(hex(out6.data), hex(Buffer.concat([frame({ ...f6, dst: '2001:db8:16::a', dport: 8080 }, { dst: realMac(10), src: LB_MAC }), PAD])));
  });

  test('IPIP: the outer length counts the IP packet; the padding stays behind it', () => {
    const f: Flow = { src: client(4), dst: '10.6.0.3', proto: 'udp', sport: 5003, dport: 53, payload: Buffer.from('p') };
    const inFrame = frame(f, toLb);
    const out = b.run(Buffer.concat([inFrame, PAD]));
    assert.equal(out.action, XdpAction.TX);
    assert.equal(hex(out.data), hex(ipip4(inFrame, '10.1.6.11', f, { dstMac: GW_MAC, srcMac: LB_MAC, pad: PAD })));
  });

  test('an IPv4 header whose total length leaves no room for the TCP header passes untouched, though the frame has one', () => {
    const c = client(4);
    const l4 = tcp(c, '10.6.0.1', { sport: 5004, dport: 80 });
    for (const totLen of [20, 39]) {
      const inFrame = eth(LB_MAC, CLIENT_MAC, ETH_P_IP, ipv4({ src: c, dst: '10.6.0.1', proto: PROTO.tcp, payload: l4, totLen }));
      const n = b.global('pass_malformed');
      const out = b.run(inFrame);
      assert.equal(out.action, XdpAction.PASS, `tot_len ${totLen}`);
      assert.equal(hex(out.data), hex(inFrame));
      assert.equal(b.global('pass_malformed'), n + 1);
    }
  });

  test('an IPv6 payload length short of the UDP header passes untouched', () => {
    const c = client(6);
    const l4 = udp(c, '2001:db8:6::1', { sport: 5005, dport: 53, payload: Buffer.alloc(8) });
    const inFrame = eth(LB_MAC, CLIENT_MAC, ETH_P_IPV6, ipv6({ src: c, dst: '2001:db8:6::1', nexthdr: PROTO.udp, payload: l4, payloadLen: 4 }));
    const out = b.run(inFrame);
    assert.equal(out.action, XdpAction.PASS);
    assert.equal(hex(out.data), hex(inFrame));
  });
});

describe('a ring that still points at a real marked down', () => {
  test('drops the packet, counts it, and remembers no flow for that real', () => {
    b.setReal({ slot: 12, addr: '10.1.5.12', flags: S.REAL_F_DOWN });
    b.setReal({ slot: 13, addr: '10.1.5.13' });
    b.setVip({ id: 14, addr: '10.5.5.1', port: 80, proto: 'tcp', mode: 'dsr', ring: [12] });
    const f: Flow = { src: client(4), dst: '10.5.5.1', proto: 'tcp', sport: 6000, dport: 80, flags: 0x10 };
    const n = b.global('drop_real_down');
    const misses = b.global('lru_miss');
    assert.equal(b.run(frame(f, toLb)).action, XdpAction.DROP);
    assert.equal(b.global('drop_real_down'), n + 1);
    assert.equal(b.global('lru_miss'), misses, 'not a new flow');
    /* The real comes back up while the ring moves on: the flow follows the ring, not the real. */
    b.setReal({ slot: 12, addr: '10.1.5.12' });
    b.setRing(14, [13]);
    const out = b.run(frame(f, toLb));
    assert.equal(hex(out.data), hex(withMacs(frame(f, toLb), realMac(13), LB_MAC)));
  });
});

describe('reals behind another interface (tx ports)', () => {
  before(() => {
    b.setReal({ slot: 14, addr: '10.1.4.14', txPort: 1 });
    b.setReal({ slot: 15, addr: '10.1.4.15', txPort: 1, port: 8080 });
    b.setVip({ id: 15, addr: '10.4.4.1', port: 80, proto: 'tcp', mode: 'dsr', ring: [14] });
    b.setVip({ id: 16, addr: '10.4.4.2', port: 80, proto: 'tcp', mode: 'nat', ring: [15] });
    b.setPort(1, { ifindex: 1, devIfindex: 1, mac: PORT1_MAC });
  });

  test('dsr: redirected with that interface\'s MAC as the source', () => {
    const inFrame = frame({ src: client(4), dst: '10.4.4.1', proto: 'tcp', sport: 1, dport: 80 }, toLb);
    const out = b.run(inFrame);
    assert.equal(out.action, XdpAction.REDIRECT);
    assert.equal(hex(out.data), hex(withMacs(inFrame, realMac(14), PORT1_MAC)));
  });

  test('nat: the reply arriving on the real\'s interface is rewritten and redirected to port 0 with port 0\'s MAC', () => {
    const c = client(4);
    const f: Flow = { src: c, dst: '10.4.4.2', proto: 'tcp', sport: 4444, dport: 80 };
    const out = b.run(frame(f, toLb));
    assert.equal(out.action, XdpAction.REDIRECT);
    assert.equal(hex(out.data), hex(frame({ ...f, dst: '10.1.4.15', dport: 8080 }, { dst: realMac(15), src: PORT1_MAC })));
    const reply: Flow = { src: '10.1.4.15', dst: c, proto: 'tcp', sport: 8080, dport: 4444, payload: Buffer.from('r') };
    const back = frame({ ...reply, src: '10.4.4.2', sport: 80 }, { dst: CLIENT_MAC, src: OWN_MAC });
    /* Port 0 is another interface (ifindex 99) than the one the test run comes in on (lo, 1). */
    b.setPort(0, { ifindex: 99, mac: OWN_MAC, devIfindex: 1 });
    try {
      const r = b.run(frame(reply, { dst: PORT1_MAC, src: realMac(15) }));
      assert.equal(r.action, XdpAction.REDIRECT);
      assert.equal(hex(r.data), hex(back));
      /* One-arm: the reply comes in on port 0 itself and goes back out with XDP_TX. */
      b.setPort(0, { ifindex: 1, mac: OWN_MAC });
      const r2 = b.run(frame(reply, { dst: LB_MAC, src: realMac(15) }));
      assert.equal(r2.action, XdpAction.TX);
      assert.equal(hex(r2.data), hex(frame({ ...reply, src: '10.4.4.2', sport: 80 }, { dst: CLIENT_MAC, src: LB_MAC })));
    } finally {
      b.setPort(0, {});
    }
  });
});

describe('IPv6 extension headers', () => {
  const VIP = '2001:db8:3::1';
  const REAL = '2001:db8:13::3';
  before(() => {
    b.setReal({ slot: 16, addr: REAL, port: 8080 });
    b.setReal({ slot: 17, addr: '2001:db8:13::4' });
    b.setVip({ id: 17, addr: VIP, port: 80, proto: 'tcp', mode: 'nat', ring: [16] });
    b.setVip({ id: 18, addr: '2001:db8:3::2', port: 80, proto: 'tcp', mode: 'dsr', ring: [17] });
    b.setVip({ id: 19, addr: VIP, port: 53, proto: 'udp', mode: 'nat', ring: [16] });
  });
  const withExt = (src: string, dst: string, exts: Buffer[], firstNext: number, l4: Buffer) =>
    eth(LB_MAC, CLIENT_MAC, ETH_P_IPV6, ipv6({ src, dst, nexthdr: firstNext, payload: Buffer.concat([...exts, l4]) }));

  test('hop-by-hop options before TCP: a dsr VIP forwards the packet as it is', () => {
    const c = client(6);
    const inFrame = withExt(c, '2001:db8:3::2', [ext6(PROTO.tcp)], PROTO.hopopts, tcp(c, '2001:db8:3::2', { sport: 1, dport: 80 }));
    const out = b.run(inFrame);
    assert.equal(out.action, XdpAction.TX);
    assert.equal(hex(out.data), hex(withMacs(inFrame, realMac(17), LB_MAC)));
  });

  test('hop-by-hop, destination options, routing (no segments left) before TCP: NAT rewrites address, port and checksum', () => {
    const c = client(6);
    const exts = [ext6(PROTO.dstopts), ext6(PROTO.routing, { len: 16 }), ext6(PROTO.tcp, { routing: true, len: 24 })];
    const out = b.run(withExt(c, VIP, exts, PROTO.hopopts, tcp(c, VIP, { sport: 2, dport: 80, payload: Buffer.from('ext') })));
    assert.equal(out.action, XdpAction.TX);
    const want = eth(realMac(16), LB_MAC, ETH_P_IPV6, ipv6({ src: c, dst: REAL, nexthdr: PROTO.hopopts, payload: Buffer.concat([...exts, tcp(c, REAL, { sport: 2, dport: 8080, payload: Buffer.from('ext') })]) }));
    assert.equal(hex(out.data), hex(want));
  });

  test('hop-by-hop then a fragment header: the first fragment is balanced, the later one follows it', () => {
    const c = client(6);
    const whole = udp(c, VIP, { sport: 3, dport: 53, payload: Buffer.alloc(40, 1) });
    const first = withExt(c, VIP, [ext6(PROTO.frag6), frag6(PROTO.udp, 0, true, 9)], PROTO.hopopts, whole.subarray(0, 24));
    const later = withExt(c, VIP, [frag6(PROTO.udp, 3, false, 9)], PROTO.frag6, whole.subarray(24));
    const wholeReal = udp(c, REAL, { sport: 3, dport: 8080, payload: Buffer.alloc(40, 1) });
    const o1 = b.run(first);
    assert.equal(o1.action, XdpAction.TX);
    assert.equal(hex(o1.data), hex(withMacs(withExt(c, REAL, [ext6(PROTO.frag6), frag6(PROTO.udp, 0, true, 9)], PROTO.hopopts, wholeReal.subarray(0, 24)), realMac(16), LB_MAC)));
    const o2 = b.run(later);
    assert.equal(o2.action, XdpAction.TX);
    assert.equal(hex(o2.data), hex(withMacs(withExt(c, REAL, [frag6(PROTO.udp, 3, false, 9)], PROTO.frag6, wholeReal.subarray(24)), realMac(16), LB_MAC)));
  });

  test('a routing header with segments left names another destination: passed untouched', () => {
    const c = client(6);
    const inFrame = withExt(c, VIP, [ext6(PROTO.tcp, { routing: true, len: 24, segmentsLeft: 1 })], PROTO.routing, tcp(c, VIP, { sport: 4, dport: 80 }));
    const n = b.global('pass_unknown_proto');
    const out = b.run(inFrame);
    assert.equal(out.action, XdpAction.PASS);
    assert.equal(hex(out.data), hex(inFrame));
    assert.equal(b.global('pass_unknown_proto'), n + 1);
  });

  test('more than four extension headers: passed untouched', () => {
    const c = client(6);
    const exts = [ext6(PROTO.dstopts), ext6(PROTO.dstopts), ext6(PROTO.dstopts), ext6(PROTO.dstopts), ext6(PROTO.tcp)];
    const inFrame = withExt(c, VIP, exts, PROTO.hopopts, tcp(c, VIP, { sport: 5, dport: 80 }));
    const n = b.global('pass_unknown_proto');
    assert.equal(hex(b.run(inFrame).data), hex(inFrame));
    assert.equal(b.global('pass_unknown_proto'), n + 1);
  });

  test('an extension header longer than the payload: passed untouched as malformed', () => {
    const c = client(6);
    const l4 = tcp(c, VIP, { sport: 6, dport: 80 });
    const inFrame = withExt(c, VIP, [ext6(PROTO.tcp, { len: 8 })], PROTO.hopopts, l4);
    inFrame[14 + 40 + 1] = 3; /* 32 bytes of options: past the TCP header too */
    const n = b.global('pass_malformed');
    const out = b.run(inFrame);
    assert.equal(out.action, XdpAction.PASS);
    assert.equal(hex(out.data), hex(inFrame));
    assert.equal(b.global('pass_malformed'), n + 1);
  });
});
