/**
 * The balancer, packet by packet: crafted frames through BPF_PROG_TEST_RUN, asserting the action
 * and the exact bytes that come out.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { XdpAction } from '../../src/bpf/program.js';
import * as S from '../../src/dataplane/xdp/structs.js';
import { flowHash, ringSlot } from '../../src/dataplane/xdp/hash.js';
import { bytesToIp, ipToBytes, macToBytes } from '../../src/model/address.js';
import { CLIENT_MAC, ENCAP_SRC4, ENCAP_SRC6, GW_MAC, LB_MAC, LIMITS, TestBalancer, realMac } from './fixture.js';
import {
  ETH_P_IP, ETH_P_IPV6, PROTO, eth, ext6, frag6, frame, icmp6Error, icmp6TooBig, icmpError, icmpFragNeeded, ipv4, ipv4ChecksumOk, ipv6, l4ChecksumOk, onesSum, tcp, udp, type Flow,
} from './packet.js';

const MODES = ['dsr', 'ipip', 'nat'] as const;
const FAMILIES = [4, 6] as const;
const PROTOS = ['tcp', 'udp'] as const;
const NAT_PORT = 8080;
const toLb = { dst: LB_MAC, src: CLIENT_MAC };

let b: TestBalancer;
let clientSeq = 0;
/** A fresh client address per call, so tests never share flows. */
function client(fam: 4 | 6): string {
  clientSeq++;
  return fam === 4 ? `192.168.${clientSeq >> 8}.${clientSeq & 0xff}` : `2001:db8:c::${clientSeq.toString(16)}`;
}

/** The VIP of a mode × family × protocol, with one real (slot = id + 1). */
function comboVip(mode: (typeof MODES)[number], fam: 4 | 6, proto: 'tcp' | 'udp') {
  const mi = MODES.indexOf(mode);
  const id = mi * 4 + (fam === 6 ? 2 : 0) + (proto === 'udp' ? 1 : 0);
  const addr = fam === 4 ? `10.0.${mi}.100` : `2001:db8:${mi}::100`;
  const port = proto === 'tcp' ? 80 : 53;
  const slot = id + 1;
  const realAddr = fam === 4 ? `10.1.0.${slot}` : `2001:db8:1::${slot.toString(16)}`;
  return { id, addr, port, proto, mode, slot, realAddr };
}

/** The frame with the MACs a DSR/NAT forward writes. */
function withMacs(f: Buffer, dst: string, src: string): Buffer {
  const o = Buffer.from(f);
  macToBytes(dst).copy(o, 0);
  macToBytes(src).copy(o, 6);
  return o;
}

/**
 * The frame IPIP makes of `inFrame` (untagged): the outer source is the encap prefix with its host
 * bits (8 by default) from the flow hash; the outer IPv4 id is the inner id XOR the hash's high 16
 * bits, DF as the inner packet's (always for an IPv6 inner packet).
 */
function expectedIpip(inFrame: Buffer, realAddr: string, f: Flow, o: { dstMac?: string; srcMac?: string; encap4?: string; encap6?: string } = {}): Buffer {
  const inner = inFrame.subarray(14);
  const h = flowHash(f.src, f.sport, f.dport);
  const innerV6 = inner[0] >> 4 === 6;
  const proto = innerV6 ? PROTO.ipv6 : PROTO.ipip;
  const dst = o.dstMac ?? GW_MAC;
  const src = o.srcMac ?? LB_MAC;
  if (!realAddr.includes(':')) {
    const [base, len] = (o.encap4 ?? ENCAP_SRC4).split('/');
    const mask = len === undefined ? 0 : (2 ** (32 - Number(len)) - 1) >>> 0;
    const b = ipToBytes(base);
    b.writeUInt32BE(((b.readUInt32BE(0) & ~mask) | (h & mask)) >>> 0);
    const innerId = innerV6 ? 0 : inner.readUInt16BE(4);
    const df = innerV6 || (inner.readUInt16BE(6) & 0x4000) !== 0;
    return eth(dst, src, ETH_P_IP, ipv4({ src: bytesToIp(b), dst: realAddr, proto, payload: inner, id: innerId ^ (h >>> 16), fragOff: df ? 0x4000 : 0, ttl: 64, tos: innerV6 ? 0 : inner[1] }));
  }
  const [base, len] = (o.encap6 ?? ENCAP_SRC6).split('/');
  const mask = len === undefined ? 0 : (2 ** Math.min(32, 128 - Number(len)) - 1) >>> 0;
  const b = Buffer.from(ipToBytes(base));
  b.writeUInt32BE(((b.readUInt32BE(12) & ~mask) | (h & mask)) >>> 0, 12);
  const outer = ipv6({ src: '::', dst: realAddr, nexthdr: proto, payload: inner });
  b.copy(outer, 8);
  return eth(dst, src, ETH_P_IPV6, outer);
}

before(async () => {
  b = await TestBalancer.load();
  for (const mode of MODES) for (const fam of FAMILIES) for (const proto of PROTOS) {
    const v = comboVip(mode, fam, proto);
    b.setReal({ slot: v.slot, addr: v.realAddr, port: mode === 'nat' ? NAT_PORT : 0, noMac: mode === 'ipip' });
    b.setVip({ id: v.id, addr: v.addr, port: v.port, proto, mode, ring: [v.slot] });
  }
  assert.equal(ENCAP_SRC4, '198.18.0.0/24');
});
after(() => b?.close());

describe('forwarding: each mode × IPv4/IPv6 × TCP/UDP', () => {
  for (const mode of MODES) for (const fam of FAMILIES) for (const proto of PROTOS) {
    test(`${mode} IPv${fam} ${proto.toUpperCase()}: exact output bytes and XDP_TX`, () => {
      const v = comboVip(mode, fam, proto);
      const f: Flow = { src: client(fam), dst: v.addr, proto, sport: 40000 + clientSeq, dport: v.port, payload: Buffer.from('hello sluice') };
      const inFrame = frame(f, toLb);
      const out = b.run(inFrame);
      assert.equal(out.action, XdpAction.TX);
      let want: Buffer;
      if (mode === 'dsr') want = withMacs(inFrame, realMac(v.slot), LB_MAC);
      else if (mode === 'nat') want = frame({ ...f, dst: v.realAddr, dport: NAT_PORT }, { dst: realMac(v.slot), src: LB_MAC });
      else want = expectedIpip(inFrame, v.realAddr, f);
      assert.deepEqual(out.data.toString('hex'), want.toString('hex'));
      if (mode === 'nat') {
        if (fam === 4) assert.ok(ipv4ChecksumOk(out.data, 14), 'IPv4 header checksum');
        assert.ok(l4ChecksumOk(out.data, 14), 'L4 checksum');
      }
      if (mode === 'ipip' && fam === 4) assert.ok(ipv4ChecksumOk(out.data, 14), 'outer IPv4 header checksum');
    });
  }
});

describe('NAT', () => {
  for (const fam of FAMILIES) for (const proto of PROTOS) {
    test(`replies from the real are rewritten back to the VIP and sent to the client's hop (IPv${fam} ${proto.toUpperCase()})`, () => {
      const v = comboVip('nat', fam, proto);
      const c = client(fam);
      const sport = 41000 + clientSeq;
      assert.equal(b.run(frame({ src: c, dst: v.addr, proto, sport, dport: v.port }, toLb)).action, XdpAction.TX);
      const before = b.global('nat_reply');
      const reply: Flow = { src: v.realAddr, dst: c, proto, sport: NAT_PORT, dport: sport, payload: Buffer.from('reply') };
      const out = b.run(frame(reply, { dst: LB_MAC, src: realMac(v.slot) }));
      assert.equal(out.action, XdpAction.TX);
      const want = frame({ ...reply, src: v.addr, sport: v.port }, { dst: CLIENT_MAC, src: LB_MAC });
      assert.equal(out.data.toString('hex'), want.toString('hex'));
      assert.equal(b.global('nat_reply'), before + 1);
    });
  }

  for (const fam of FAMILIES) {
    test(`the later fragments of a NAT reply are rewritten back to the VIP like its first (IPv${fam} UDP)`, () => {
      const v = comboVip('nat', fam, 'udp');
      const c = client(fam);
      const sport = 42000 + clientSeq;
      assert.equal(b.run(frame({ src: c, dst: v.addr, proto: 'udp', sport, dport: v.port }, toLb)).action, XdpAction.TX);
      /* The real's kernel fragments a large reply: the first fragment has the UDP header, the later one none. */
      const payload = Buffer.alloc(64, 9);
      const whole = udp(v.realAddr, c, { sport: NAT_PORT, dport: sport, payload });
      const wholeVip = udp(v.addr, c, { sport: v.port, dport: sport, payload });
      const fromReal = { dst: LB_MAC, src: realMac(v.slot) };
      const toClient = { dst: CLIENT_MAC, src: LB_MAC };
      const frag = (src: string, macs: { dst: string; src: string }, part: Buffer, first: boolean) => fam === 4
        ? eth(macs.dst, macs.src, ETH_P_IP, ipv4({ src, dst: c, proto: PROTO.udp, payload: part, id: 4321, fragOff: first ? 0x2000 : 5 }))
        : eth(macs.dst, macs.src, ETH_P_IPV6, ipv6({ src, dst: c, nexthdr: PROTO.frag6, payload: Buffer.concat([frag6(PROTO.udp, first ? 0 : 5, first, 4321), part]) }));
      const replies = b.global('nat_reply');
      const o1 = b.run(frag(v.realAddr, fromReal, whole.subarray(0, 40), true));
      assert.equal(o1.action, XdpAction.TX);
      assert.equal(o1.data.toString('hex'), frag(v.addr, toClient, wholeVip.subarray(0, 40), true).toString('hex'));
      const o2 = b.run(frag(v.realAddr, fromReal, whole.subarray(40), false));
      assert.equal(o2.action, XdpAction.TX, 'the later fragment is not passed with the real as its source');
      assert.equal(o2.data.toString('hex'), frag(v.addr, toClient, wholeVip.subarray(40), false).toString('hex'));
      if (fam === 4) assert.ok(ipv4ChecksumOk(o2.data, 14), 'IPv4 header checksum of the later fragment');
      assert.equal(b.global('nat_reply'), replies + 2);
    });
  }

  /* What the real received from the client (dst real:NAT_PORT), quoted by an ICMP error the
   * real or a router on its side sends back; and the same packet as the client sent it. */
  function natQuotes(fam: 4 | 6, c: string, v: ReturnType<typeof comboVip>, sport: number) {
    const l4 = udp(c, v.realAddr, { sport, dport: NAT_PORT, payload: Buffer.from('query') });
    const l4Vip = Buffer.from(l4);
    l4Vip.writeUInt16BE(v.port, 2); /* the quoted UDP checksum is left as it was */
    const ip = (dst: string, payload: Buffer) => fam === 4 ? ipv4({ src: c, dst, proto: PROTO.udp, payload }) : ipv6({ src: c, dst, nexthdr: PROTO.udp, payload });
    return { atReal: ip(v.realAddr, l4), asSent: ip(v.addr, l4Vip) };
  }
  function icmpFrame(fam: 4 | 6, macs: { dst: string; src: string }, src: string, dst: string, quoted: Buffer): Buffer {
    return fam === 4
      ? eth(macs.dst, macs.src, ETH_P_IP, ipv4({ src, dst, proto: PROTO.icmp, payload: icmpError(3, 3, quoted) }))
      : eth(macs.dst, macs.src, ETH_P_IPV6, ipv6({ src, dst, nexthdr: PROTO.icmpv6, payload: icmp6Error(1, 4, src, dst, quoted) }));
  }

  for (const fam of FAMILIES) {
    test(`a NAT real's ICMP port unreachable reaches the client from the VIP, quoting what the client sent (IPv${fam})`, () => {
      const v = comboVip('nat', fam, 'udp');
      const c = client(fam);
      const sport = 43000 + clientSeq;
      assert.equal(b.run(frame({ src: c, dst: v.addr, proto: 'udp', sport, dport: v.port }, toLb)).action, XdpAction.TX);
      const { atReal, asSent } = natQuotes(fam, c, v, sport);
      const [replies, icmps] = [b.global('nat_reply'), b.global('icmp_fwd')];
      const out = b.run(icmpFrame(fam, { dst: LB_MAC, src: realMac(v.slot) }, v.realAddr, c, atReal));
      assert.equal(out.action, XdpAction.TX);
      assert.equal(out.data.toString('hex'), icmpFrame(fam, { dst: CLIENT_MAC, src: LB_MAC }, v.addr, c, asSent).toString('hex'));
      assert.deepEqual([b.global('nat_reply'), b.global('icmp_fwd')], [replies + 1, icmps + 1]);
    });
  }

  test('an ICMP error from a router on the NAT real\'s side keeps the router as its source, quoting the VIP', () => {
    const v = comboVip('nat', 4, 'udp');
    const c = client(4);
    const sport = 44000 + clientSeq;
    assert.equal(b.run(frame({ src: c, dst: v.addr, proto: 'udp', sport, dport: v.port }, toLb)).action, XdpAction.TX);
    const { atReal, asSent } = natQuotes(4, c, v, sport);
    const out = b.run(icmpFrame(4, { dst: LB_MAC, src: realMac(v.slot) }, '10.1.99.1', c, atReal));
    assert.equal(out.action, XdpAction.TX);
    assert.equal(out.data.toString('hex'), icmpFrame(4, { dst: CLIENT_MAC, src: LB_MAC }, '10.1.99.1', c, asSent).toString('hex'));
  });

  test('an ICMP port unreachable quoting no NAT flow passes', () => {
    const v = comboVip('nat', 4, 'udp');
    const { atReal } = natQuotes(4, client(4), v, 45000);
    assert.equal(b.run(icmpFrame(4, { dst: LB_MAC, src: realMac(v.slot) }, v.realAddr, client(4), atReal)).action, XdpAction.PASS);
  });

  for (const fam of FAMILIES) {
    test(`an ICMP port unreachable addressed to a VIP passes: only path-MTU errors are followed to reals (IPv${fam})`, () => {
      const v = comboVip('dsr', fam, 'udp');
      const c = client(fam);
      assert.equal(b.run(frame({ src: c, dst: v.addr, proto: 'udp', sport: 46000, dport: v.port }, toLb)).action, XdpAction.TX);
      const l4 = udp(v.addr, c, { sport: v.port, dport: 46000, payload: Buffer.from('answer') });
      const quoted = fam === 4 ? ipv4({ src: v.addr, dst: c, proto: PROTO.udp, payload: l4 }) : ipv6({ src: v.addr, dst: c, nexthdr: PROTO.udp, payload: l4 });
      assert.equal(b.run(icmpFrame(fam, toLb, c, v.addr, quoted)).action, XdpAction.PASS);
    });
  }

  test('a src-ip NAT VIP rewrites the replies of every connection of a client, not only the first', () => {
    b.setReal({ slot: 56, addr: '10.5.0.56', port: 8080 });
    b.setVip({ id: 30, addr: '10.9.0.30', port: 80, proto: 'tcp', mode: 'nat', srcIpHash: true, ring: [56] });
    const c = client(4);
    for (const sport of [1001, 1002]) {
      assert.equal(b.run(frame({ src: c, dst: '10.9.0.30', proto: 'tcp', sport, dport: 80 }, toLb)).action, XdpAction.TX);
      const reply = b.run(frame({ src: '10.5.0.56', dst: c, proto: 'tcp', sport: 8080, dport: sport }, { dst: LB_MAC, src: realMac(56) }));
      assert.equal(reply.action, XdpAction.TX, `reply to port ${sport}`);
      assert.deepEqual(reply.data.subarray(14 + 12, 14 + 16), ipToBytes('10.9.0.30'));
    }
  });

  test('UDP over IPv4 without a checksum keeps none', () => {
    const v = comboVip('nat', 4, 'udp');
    const f: Flow & { noChecksum: boolean } = { src: client(4), dst: v.addr, proto: 'udp', sport: 5000, dport: 53, noChecksum: true };
    const l4 = udp(f.src, f.dst, f);
    const out = b.run(eth(LB_MAC, CLIENT_MAC, ETH_P_IP, ipv4({ src: f.src, dst: f.dst, proto: PROTO.udp, payload: l4 })));
    assert.equal(out.action, XdpAction.TX);
    assert.equal(out.data.readUInt16BE(14 + 20 + 6), 0);
    assert.equal(out.data.readUInt16BE(14 + 20 + 2), NAT_PORT);
  });

  test('a packet from a real that matches no NAT flow passes untouched', () => {
    const f: Flow = { src: '10.1.0.9', dst: client(4), proto: 'tcp', sport: NAT_PORT, dport: 1234 };
    const inFrame = frame(f, toLb);
    const out = b.run(inFrame);
    assert.equal(out.action, XdpAction.PASS);
    assert.deepEqual(out.data, inFrame);
  });
});

describe('flow table', () => {
  const VIP = '10.9.0.1';
  const REALS = [20, 21, 22];
  before(() => {
    REALS.forEach((s) => b.setReal({ slot: s, addr: `10.2.0.${s}` }));
    b.setVip({ id: 16, addr: VIP, port: 80, proto: 'tcp', mode: 'dsr', ring: REALS });
  });
  const ringReal = (ring: number[], src: string, sport: number, dport: number) => ring[ringSlot(LIMITS.ringSize, src, sport, dport) % ring.length];
  const macOut = (d: Buffer) => d.subarray(0, 6).toString('hex');
  const macOf = (slot: number) => macToBytes(realMac(slot)).toString('hex');
  const send = (src: string, sport: number, dport = 80) => b.run(frame({ src, dst: VIP, proto: 'tcp', sport, dport }, toLb));
  /** The exact frame a DSR forward to `slot` makes of this flow's packet, with the action. */
  const assertTo = (out: { action: number; data: Buffer }, src: string, sport: number, slot: number, msg?: string) => {
    assert.equal(out.action, XdpAction.TX, msg);
    assert.equal(out.data.toString('hex'), withMacs(frame({ src, dst: VIP, proto: 'tcp', sport, dport: 80 }, toLb), realMac(slot), LB_MAC).toString('hex'), msg);
  };

  test('a new flow goes to the real the Maglev ring holds at its hash slot', () => {
    for (let i = 0; i < 20; i++) {
      const c = client(4);
      assertTo(send(c, 1000 + i), c, 1000 + i, ringReal(REALS, c, 1000 + i, 80), `flow ${i}`);
    }
  });

  test('the first packet of a flow is an LRU miss, the next ones hit and are forwarded alike', () => {
    const c = client(4);
    const want = ringReal(REALS, c, 2000, 80);
    const misses = b.global('lru_miss');
    assertTo(send(c, 2000), c, 2000, want, 'miss');
    assert.equal(b.global('lru_miss'), misses + 1);
    assertTo(send(c, 2000), c, 2000, want, 'hit');
    assertTo(send(c, 2000), c, 2000, want, 'hit');
    assert.equal(b.global('lru_miss'), misses + 1);
  });

  test('an established flow keeps its real when the ring changes; new flows follow the ring', () => {
    const c = client(4);
    const first = macOut(send(c, 3000).data);
    const chosen = REALS.find((s) => macOf(s) === first)!;
    const others = REALS.filter((s) => s !== chosen);
    b.setRing(16, others); /* the chosen real drained: out of the ring, flows kept */
    try {
      assert.equal(macOut(send(c, 3000).data), first);
      const c2 = client(4);
      assert.equal(macOut(send(c2, 3000).data), macOf(ringReal(others, c2, 3000, 80)));
    } finally {
      b.setRing(16, REALS);
    }
  });

  test('a flow whose real is marked down moves to the ring, and the move is counted', () => {
    const c = client(4);
    const first = macOut(send(c, 4000).data);
    const chosen = REALS.find((s) => macOf(s) === first)!;
    const others = REALS.filter((s) => s !== chosen);
    b.setReal({ slot: chosen, addr: `10.2.0.${chosen}`, flags: S.REAL_F_DOWN });
    b.setRing(16, others);
    const moved = b.global('flow_rechosen');
    try {
      const out = send(c, 4000);
      assert.equal(out.action, XdpAction.TX);
      assert.equal(macOut(out.data), macOf(ringReal(others, c, 4000, 80)));
      assert.equal(b.global('flow_rechosen'), moved + 1);
      assert.equal(macOut(send(c, 4000).data), macOf(ringReal(others, c, 4000, 80)), 'and stays moved');
    } finally {
      b.setReal({ slot: chosen, addr: `10.2.0.${chosen}` });
      b.setRing(16, REALS);
    }
  });

  test('a flow whose real was removed (slot reused with a new generation) moves to the ring', () => {
    const c = client(4);
    const first = macOut(send(c, 5000).data);
    const chosen = REALS.find((s) => macOf(s) === first)!;
    const others = REALS.filter((s) => s !== chosen);
    b.setReal({ slot: chosen, addr: `10.2.0.${chosen}`, gen: 1 });
    b.setRing(16, others);
    const moved = b.global('flow_rechosen');
    try {
      assertTo(send(c, 5000), c, 5000, ringReal(others, c, 5000, 80));
      assert.equal(b.global('flow_rechosen'), moved + 1);
      assertTo(send(c, 5000), c, 5000, ringReal(others, c, 5000, 80), 'and stays moved');
    } finally {
      b.setReal({ slot: chosen, addr: `10.2.0.${chosen}` });
      b.setRing(16, REALS);
    }
  });

  test('a SYN goes to the ring even when its 5-tuple has a flow entry (SYNs skip the flow lookup)', () => {
    const c = client(4);
    const first = macOut(send(c, 3500).data);
    const chosen = REALS.find((s) => macOf(s) === first)!;
    const others = REALS.filter((s) => s !== chosen);
    b.setRing(16, others);
    try {
      const syn = b.run(frame({ src: c, dst: VIP, proto: 'tcp', sport: 3500, dport: 80, flags: 0x02 }, toLb));
      const want = macOf(ringReal(others, c, 3500, 80));
      assert.equal(macOut(syn.data), want);
      assert.equal(macOut(send(c, 3500).data), want, 'and the flow follows the SYN\'s choice');
    } finally {
      b.setRing(16, REALS);
    }
  });

  test('a SYN to a src-ip VIP follows the client\'s existing flow', () => {
    b.setVip({ id: 28, addr: '10.9.0.33', port: 80, proto: 'tcp', mode: 'dsr', srcIpHash: true, ring: REALS });
    const c = client(4);
    const first = macOut(b.run(frame({ src: c, dst: '10.9.0.33', proto: 'tcp', sport: 1, dport: 80, flags: 0x02 }, toLb)).data);
    const chosen = REALS.find((s) => macOf(s) === first)!;
    b.setRing(28, REALS.filter((s) => s !== chosen));
    const again = b.run(frame({ src: c, dst: '10.9.0.33', proto: 'tcp', sport: 2, dport: 80, flags: 0x02 }, toLb));
    assert.equal(macOut(again.data), first);
  });

  test('a VIP whose ring is empty drops, counting drop_no_real', () => {
    b.setVip({ id: 20, addr: '10.9.0.15', port: 80, proto: 'tcp', mode: 'dsr', ring: [] });
    const drops = b.global('drop_no_real');
    const out = b.run(frame({ src: client(4), dst: '10.9.0.15', proto: 'tcp', sport: 1, dport: 80 }, toLb));
    assert.equal(out.action, XdpAction.DROP);
    assert.equal(b.global('drop_no_real'), drops + 1);
  });

  test('per-VIP and per-real counters count packets, bytes and new flows', () => {
    const c = client(4);
    const before = b.stat(S.statsIndex.vip(16));
    const f1 = frame({ src: c, dst: VIP, proto: 'tcp', sport: 6000, dport: 80 }, toLb);
    const out = b.run(f1);
    b.run(f1);
    const slot = REALS.find((s) => macOf(s) === macOut(out.data))!;
    const realBefore = b.stat(S.statsIndex.real(LIMITS, slot));
    b.run(f1);
    const vip = b.stat(S.statsIndex.vip(16));
    assert.deepEqual(vip, { packets: before.packets + 3, bytes: before.bytes + 3 * f1.length, newFlows: before.newFlows + 1 });
    const real = b.stat(S.statsIndex.real(LIMITS, slot));
    assert.deepEqual(real, { packets: realBefore.packets + 1, bytes: realBefore.bytes + f1.length, newFlows: realBefore.newFlows });
  });
});

describe('VIP matching and hashing', () => {
  before(() => {
    [30, 31, 32, 33, 34].forEach((s) => b.setReal({ slot: s, addr: `10.3.0.${s}` }));
    b.setVip({ id: 17, addr: '10.9.0.2', port: 0, proto: 'tcp', mode: 'dsr', ring: [30] });
    b.setVip({ id: 18, addr: '10.9.0.2', port: 443, proto: 'tcp', mode: 'dsr', ring: [31] });
    b.setVip({ id: 19, addr: '10.9.0.3', port: 80, proto: 'tcp', mode: 'dsr', srcIpHash: true, ring: [32, 33, 34] });
  });
  const mac = (d: Buffer) => d.subarray(0, 6).toString('hex');
  const macOf = (slot: number) => macToBytes(realMac(slot)).toString('hex');

  test('a port-0 VIP takes every port of its address', () => {
    for (const port of [1, 22, 8080, 65535]) {
      const inFrame = frame({ src: client(4), dst: '10.9.0.2', proto: 'tcp', sport: 999, dport: port }, toLb);
      const out = b.run(inFrame);
      assert.equal(out.action, XdpAction.TX);
      assert.equal(out.data.toString('hex'), withMacs(inFrame, realMac(30), LB_MAC).toString('hex'), `port ${port}`);
    }
  });

  test('an exact-port VIP wins over the port-0 VIP of the same address', () => {
    const inFrame = frame({ src: client(4), dst: '10.9.0.2', proto: 'tcp', sport: 999, dport: 443 }, toLb);
    const out = b.run(inFrame);
    assert.equal(out.action, XdpAction.TX);
    assert.equal(out.data.toString('hex'), withMacs(inFrame, realMac(31), LB_MAC).toString('hex'));
  });

  test('a port-0 VIP does not take the other protocol', () => {
    const inFrame = frame({ src: client(4), dst: '10.9.0.2', proto: 'udp', sport: 999, dport: 53 }, toLb);
    const out = b.run(inFrame);
    assert.equal(out.action, XdpAction.PASS);
    assert.deepEqual(out.data, inFrame);
  });

  test('without the wildcard flag in config, no port-0 lookup is made', () => {
    b.setConfig(S.CFG_F_NAT);
    try {
      const inFrame = frame({ src: client(4), dst: '10.9.0.2', proto: 'tcp', sport: 999, dport: 22 }, toLb);
      const out = b.run(inFrame);
      assert.equal(out.action, XdpAction.PASS);
      assert.deepEqual(out.data, inFrame);
    } finally {
      b.setConfig(S.CFG_F_NAT | S.CFG_F_WILDCARD);
    }
  });

  test('a src-ip VIP sends every connection of a client to the real at the hash of its address alone', () => {
    for (let i = 0; i < 6; i++) {
      const c = client(4);
      const want = [32, 33, 34][ringSlot(LIMITS.ringSize, c, 0, 0) % 3];
      for (const sport of [1111, 2222, 3333, 4444]) {
        const inFrame = frame({ src: c, dst: '10.9.0.3', proto: 'tcp', sport, dport: 80 }, toLb);
        const out = b.run(inFrame);
        assert.equal(out.action, XdpAction.TX);
        assert.equal(out.data.toString('hex'), withMacs(inFrame, realMac(want), LB_MAC).toString('hex'), `client ${c} port ${sport}`);
      }
    }
  });

  test('a src-ip VIP keeps one flow entry per client', () => {
    const c = client(4);
    const want = [32, 33, 34][ringSlot(LIMITS.ringSize, c, 0, 0) % 3];
    const misses = b.global('lru_miss');
    for (const sport of [1, 2, 3, 4]) {
      const inFrame = frame({ src: c, dst: '10.9.0.3', proto: 'tcp', sport, dport: 80 }, toLb);
      assert.equal(b.run(inFrame).data.toString('hex'), withMacs(inFrame, realMac(want), LB_MAC).toString('hex'));
    }
    assert.equal(b.global('lru_miss'), misses + 1);
  });

  test('a packet for no VIP passes untouched and is counted', () => {
    const inFrame = frame({ src: client(4), dst: '10.200.0.1', proto: 'tcp', sport: 1, dport: 80 }, toLb);
    const n = b.global('pass_not_vip');
    const out = b.run(inFrame);
    assert.equal(out.action, XdpAction.PASS);
    assert.deepEqual(out.data, inFrame);
    assert.equal(b.global('pass_not_vip'), n + 1);
  });

  test('a VIP address on another port passes', () => {
    const inFrame = frame({ src: client(4), dst: '10.0.0.100', proto: 'tcp', sport: 1, dport: 81 }, toLb);
    const out = b.run(inFrame);
    assert.equal(out.action, XdpAction.PASS);
    assert.deepEqual(out.data, inFrame);
  });
});

describe('ICMP errors quoting a VIP flow', () => {
  const REALS = [40, 41, 42];
  before(() => {
    REALS.forEach((s) => b.setReal({ slot: s, addr: `10.4.0.${s}` }));
    [43, 44, 45].forEach((s) => b.setReal({ slot: s, addr: `2001:db8:4::${s}` }));
    b.setVip({ id: 21, addr: '10.9.0.4', port: 80, proto: 'tcp', mode: 'dsr', ring: REALS });
    b.setVip({ id: 22, addr: '2001:db8:9::4', port: 80, proto: 'tcp', mode: 'dsr', ring: [43, 44, 45] });
  });
  const mac = (d: Buffer) => d.subarray(0, 6).toString('hex');

  test('ICMP fragmentation-needed goes to the real of the flow it quotes, even after the ring moved', () => {
    const c = client(4);
    const first = b.run(frame({ src: c, dst: '10.9.0.4', proto: 'tcp', sport: 7000, dport: 80 }, toLb));
    const chosen = REALS.find((s) => mac(first.data) === macToBytes(realMac(s)).toString('hex'))!;
    b.setRing(21, REALS.filter((s) => s !== chosen));
    try {
      /* The quote: a packet the VIP sent to the client (as the real answered it). */
      const quoted = ipv4({ src: '10.9.0.4', dst: c, proto: PROTO.tcp, payload: tcp('10.9.0.4', c, { sport: 80, dport: 7000, flags: 0x10 }) });
      const icmp = eth(LB_MAC, '02:00:00:00:00:77', ETH_P_IP, ipv4({ src: '10.50.0.1', dst: '10.9.0.4', proto: PROTO.icmp, payload: icmpFragNeeded(quoted) }));
      const n = b.global('icmp_fwd');
      const out = b.run(icmp);
      assert.equal(out.action, XdpAction.TX);
      assert.equal(out.data.toString('hex'), withMacs(icmp, realMac(chosen), LB_MAC).toString('hex'));
      assert.equal(b.global('icmp_fwd'), n + 1);
    } finally {
      b.setRing(21, REALS);
    }
  });

  test('ICMPv6 packet-too-big goes to the real of the flow it quotes', () => {
    const c = client(6);
    const first = b.run(frame({ src: c, dst: '2001:db8:9::4', proto: 'tcp', sport: 7001, dport: 80 }, toLb));
    const chosen = [43, 44, 45].find((s) => mac(first.data) === macToBytes(realMac(s)).toString('hex'))!;
    b.setRing(22, [43, 44, 45].filter((s) => s !== chosen));
    try {
      const quoted = ipv6({ src: '2001:db8:9::4', dst: c, nexthdr: PROTO.tcp, payload: tcp('2001:db8:9::4', c, { sport: 80, dport: 7001, flags: 0x10 }) });
      const icmp = eth(LB_MAC, '02:00:00:00:00:77', ETH_P_IPV6, ipv6({ src: '2001:db8:50::1', dst: '2001:db8:9::4', nexthdr: PROTO.icmpv6, payload: icmp6TooBig('2001:db8:50::1', '2001:db8:9::4', quoted) }));
      const out = b.run(icmp);
      assert.equal(out.action, XdpAction.TX);
      assert.equal(out.data.toString('hex'), withMacs(icmp, realMac(chosen), LB_MAC).toString('hex'));
    } finally {
      b.setRing(22, [43, 44, 45]);
    }
  });

  test('NAT: an ICMP fragmentation-needed reaches the real rewritten to its address and port, checksums right', () => {
    const v = comboVip('nat', 4, 'tcp');
    const c = client(4);
    assert.equal(b.run(frame({ src: c, dst: v.addr, proto: 'tcp', sport: 7100, dport: 80 }, toLb)).action, XdpAction.TX);
    const l4 = tcp(v.addr, c, { sport: 80, dport: 7100, flags: 0x10 });
    const quoted = ipv4({ src: v.addr, dst: c, proto: PROTO.tcp, payload: l4 });
    const icmp = eth(LB_MAC, '02:00:00:00:00:77', ETH_P_IP, ipv4({ src: '10.50.0.1', dst: v.addr, proto: PROTO.icmp, payload: icmpFragNeeded(quoted) }));
    const out = b.run(icmp);
    assert.equal(out.action, XdpAction.TX);
    const l4Real = Buffer.from(l4);
    l4Real.writeUInt16BE(NAT_PORT, 0); /* the quoted TCP checksum is left as it was */
    const quotedReal = ipv4({ src: v.realAddr, dst: c, proto: PROTO.tcp, payload: l4Real });
    const want = eth(realMac(v.slot), LB_MAC, ETH_P_IP, ipv4({ src: '10.50.0.1', dst: v.realAddr, proto: PROTO.icmp, payload: icmpFragNeeded(quotedReal) }));
    assert.equal(out.data.toString('hex'), want.toString('hex'));
  });

  test('NAT: an ICMPv6 packet-too-big reaches the real rewritten to its address and port, checksum right', () => {
    const v = comboVip('nat', 6, 'tcp');
    const c = client(6);
    assert.equal(b.run(frame({ src: c, dst: v.addr, proto: 'tcp', sport: 7101, dport: 80 }, toLb)).action, XdpAction.TX);
    const l4 = tcp(v.addr, c, { sport: 80, dport: 7101, flags: 0x10 });
    const quoted = ipv6({ src: v.addr, dst: c, nexthdr: PROTO.tcp, payload: l4 });
    const router = '2001:db8:50::1';
    const icmp = eth(LB_MAC, '02:00:00:00:00:77', ETH_P_IPV6, ipv6({ src: router, dst: v.addr, nexthdr: PROTO.icmpv6, payload: icmp6TooBig(router, v.addr, quoted) }));
    const out = b.run(icmp);
    assert.equal(out.action, XdpAction.TX);
    const l4Real = Buffer.from(l4);
    l4Real.writeUInt16BE(NAT_PORT, 0);
    const quotedReal = ipv6({ src: v.realAddr, dst: c, nexthdr: PROTO.tcp, payload: l4Real });
    const want = eth(realMac(v.slot), LB_MAC, ETH_P_IPV6, ipv6({ src: router, dst: v.realAddr, nexthdr: PROTO.icmpv6, payload: icmp6TooBig(router, v.realAddr, quotedReal) }));
    assert.equal(out.data.toString('hex'), want.toString('hex'));
  });

  test('an ICMP error quoting a flow of no VIP passes', () => {
    const quoted = ipv4({ src: '10.77.0.1', dst: '192.168.0.1', proto: PROTO.tcp, payload: tcp('10.77.0.1', '192.168.0.1', { sport: 80, dport: 7000 }) });
    const icmp = eth(LB_MAC, CLIENT_MAC, ETH_P_IP, ipv4({ src: '10.50.0.1', dst: '10.77.0.1', proto: PROTO.icmp, payload: icmpFragNeeded(quoted) }));
    assert.equal(b.run(icmp).action, XdpAction.PASS);
  });

  test('ICMP echo to a VIP passes', () => {
    const echo = Buffer.from([8, 0, 0xf7, 0xff, 0, 0, 0, 0]);
    const out = b.run(eth(LB_MAC, CLIENT_MAC, ETH_P_IP, ipv4({ src: client(4), dst: '10.9.0.4', proto: PROTO.icmp, payload: echo })));
    assert.equal(out.action, XdpAction.PASS);
  });
});

describe('headers around the flow', () => {
  test('a VLAN-tagged DSR packet is forwarded with its tag', () => {
    const v = comboVip('dsr', 4, 'tcp');
    const inFrame = frame({ src: client(4), dst: v.addr, proto: 'tcp', sport: 1, dport: 80 }, toLb, { vlan: 42 });
    const out = b.run(inFrame);
    assert.equal(out.action, XdpAction.TX);
    assert.equal(out.data.toString('hex'), withMacs(inFrame, realMac(v.slot), LB_MAC).toString('hex'));
  });

  test('a VLAN-tagged IPIP packet is encapsulated under its tag', () => {
    const v = comboVip('ipip', 4, 'tcp');
    const f: Flow = { src: client(4), dst: v.addr, proto: 'tcp', sport: 2, dport: 80 };
    const inFrame = frame(f, toLb, { vlan: 42 });
    const out = b.run(inFrame);
    assert.equal(out.action, XdpAction.TX);
    const untagged = expectedIpip(frame(f, toLb), v.realAddr, f);
    const want = Buffer.concat([untagged.subarray(0, 12), Buffer.from([0x81, 0x00, 0x00, 42]), untagged.subarray(12)]);
    assert.equal(out.data.toString('hex'), want.toString('hex'));
  });

  test('IPv4 options (IHL > 5) are skipped to find the ports; NAT checksums stay right', () => {
    const v = comboVip('nat', 4, 'tcp');
    const c = client(4);
    const options = Buffer.from([1, 1, 1, 0]); /* NOP NOP NOP EOL */
    const l4 = tcp(c, v.addr, { sport: 3000, dport: 80 });
    const out = b.run(eth(LB_MAC, CLIENT_MAC, ETH_P_IP, ipv4({ src: c, dst: v.addr, proto: PROTO.tcp, payload: l4, options })));
    assert.equal(out.action, XdpAction.TX);
    const want = eth(realMac(v.slot), LB_MAC, ETH_P_IP, ipv4({ src: c, dst: v.realAddr, proto: PROTO.tcp, options, payload: tcp(c, v.realAddr, { sport: 3000, dport: NAT_PORT }) }));
    assert.equal(out.data.toString('hex'), want.toString('hex'));
  });

  test('a later IPv4 fragment follows its first fragment to the same real', () => {
    b.setVip({ id: 23, addr: '10.9.0.8', port: 53, proto: 'udp', mode: 'nat', ring: [1] });
    [50, 51, 52].forEach((s) => b.setReal({ slot: s, addr: `10.5.0.${s}`, port: 5353 }));
    b.setRing(23, [50, 51, 52]);
    const c = client(4);
    const payload = Buffer.alloc(64, 7);
    const whole = udp(c, '10.9.0.8', { sport: 9999, dport: 53, payload });
    const firstFrag = eth(LB_MAC, CLIENT_MAC, ETH_P_IP, ipv4({ src: c, dst: '10.9.0.8', proto: PROTO.udp, payload: whole.subarray(0, 40), id: 77, fragOff: 0x2000 }));
    const lastFrag = eth(LB_MAC, CLIENT_MAC, ETH_P_IP, ipv4({ src: c, dst: '10.9.0.8', proto: PROTO.udp, payload: whole.subarray(40), id: 77, fragOff: 5 }));
    const slot = [50, 51, 52][ringSlot(LIMITS.ringSize, c, 9999, 53) % 3];
    const real = `10.5.0.${slot}`;
    /* NAT: the first fragment's UDP checksum covers the whole datagram, the later one has no L4 header. */
    const wholeReal = udp(c, real, { sport: 9999, dport: 5353, payload });
    const want1 = eth(realMac(slot), LB_MAC, ETH_P_IP, ipv4({ src: c, dst: real, proto: PROTO.udp, payload: wholeReal.subarray(0, 40), id: 77, fragOff: 0x2000 }));
    const want2 = eth(realMac(slot), LB_MAC, ETH_P_IP, ipv4({ src: c, dst: real, proto: PROTO.udp, payload: wholeReal.subarray(40), id: 77, fragOff: 5 }));
    const vipBefore = b.stat(S.statsIndex.vip(23)).packets;
    const o1 = b.run(firstFrag);
    assert.equal(o1.action, XdpAction.TX);
    assert.equal(o1.data.toString('hex'), want1.toString('hex'));
    const n = b.global('frag_fwd');
    const o2 = b.run(lastFrag);
    assert.equal(o2.action, XdpAction.TX);
    assert.equal(o2.data.toString('hex'), want2.toString('hex'));
    assert.equal(b.global('frag_fwd'), n + 1);
    assert.equal(b.stat(S.statsIndex.vip(23)).packets, vipBefore + 2, 'both fragments counted on the VIP');
  });

  test('a later IPv6 fragment follows its first fragment to the same real', () => {
    [53, 54, 55].forEach((s) => b.setReal({ slot: s, addr: `2001:db8:5::${s}`, port: 5353 }));
    b.setVip({ id: 29, addr: '2001:db8:9::8', port: 53, proto: 'udp', mode: 'nat', ring: [53, 54, 55] });
    const c = client(6);
    const payload = Buffer.alloc(64, 7);
    const whole = udp(c, '2001:db8:9::8', { sport: 9999, dport: 53, payload });
    const first = eth(LB_MAC, CLIENT_MAC, ETH_P_IPV6, ipv6({ src: c, dst: '2001:db8:9::8', nexthdr: PROTO.frag6, payload: Buffer.concat([frag6(PROTO.udp, 0, true), whole.subarray(0, 40)]) }));
    const last = eth(LB_MAC, CLIENT_MAC, ETH_P_IPV6, ipv6({ src: c, dst: '2001:db8:9::8', nexthdr: PROTO.frag6, payload: Buffer.concat([frag6(PROTO.udp, 5, false), whole.subarray(40)]) }));
    const slot = [53, 54, 55][ringSlot(LIMITS.ringSize, c, 9999, 53) % 3];
    const real = `2001:db8:5::${slot}`;
    const wholeReal = udp(c, real, { sport: 9999, dport: 5353, payload });
    const want1 = eth(realMac(slot), LB_MAC, ETH_P_IPV6, ipv6({ src: c, dst: real, nexthdr: PROTO.frag6, payload: Buffer.concat([frag6(PROTO.udp, 0, true), wholeReal.subarray(0, 40)]) }));
    const want2 = eth(realMac(slot), LB_MAC, ETH_P_IPV6, ipv6({ src: c, dst: real, nexthdr: PROTO.frag6, payload: Buffer.concat([frag6(PROTO.udp, 5, false), wholeReal.subarray(40)]) }));
    const o1 = b.run(first);
    const o2 = b.run(last);
    assert.equal(o1.action, XdpAction.TX);
    assert.equal(o2.action, XdpAction.TX);
    assert.equal(o1.data.toString('hex'), want1.toString('hex'));
    assert.equal(o2.data.toString('hex'), want2.toString('hex'));
  });

  test('a later fragment whose first fragment was not seen passes', () => {
    const c = client(4);
    const inFrame = eth(LB_MAC, CLIENT_MAC, ETH_P_IP, ipv4({ src: c, dst: '10.0.0.100', proto: PROTO.tcp, payload: Buffer.alloc(16), id: 99, fragOff: 3 }));
    const n = b.global('pass_frag');
    const out = b.run(inFrame);
    assert.equal(out.action, XdpAction.PASS);
    assert.deepEqual(out.data, inFrame);
    assert.equal(b.global('pass_frag'), n + 1);
  });

  test('DSR between an IPv4 VIP and an IPv6 real drops, counting drop_family', () => {
    b.setReal({ slot: 60, addr: '2001:db8:6::60' });
    b.setVip({ id: 24, addr: '10.9.0.7', port: 80, proto: 'tcp', mode: 'dsr', ring: [60] });
    const n = b.global('drop_family');
    assert.equal(b.run(frame({ src: client(4), dst: '10.9.0.7', proto: 'tcp', sport: 1, dport: 80 }, toLb)).action, XdpAction.DROP);
    assert.equal(b.global('drop_family'), n + 1);
  });

  test('IPIP to a real on the link (its MAC known) goes to the real\'s MAC, not the gateway', () => {
    b.setReal({ slot: 62, addr: '10.6.0.62' });
    b.setVip({ id: 27, addr: '10.9.0.9', port: 80, proto: 'tcp', mode: 'ipip', ring: [62] });
    const out = b.run(frame({ src: client(4), dst: '10.9.0.9', proto: 'tcp', sport: 1, dport: 80 }, toLb));
    assert.equal(out.action, XdpAction.TX);
    assert.equal(out.data.subarray(0, 6).toString('hex'), macToBytes(realMac(62)).toString('hex'));
    assert.equal(out.data[14 + 9], PROTO.ipip);
  });

  test('IPIP to an IPv6 real wraps an IPv4 packet in IPv6 (4in6)', () => {
    b.setVip({ id: 25, addr: '10.9.0.6', port: 80, proto: 'tcp', mode: 'ipip', ring: [60] });
    const f: Flow = { src: client(4), dst: '10.9.0.6', proto: 'tcp', sport: 1234, dport: 80 };
    const inFrame = frame(f, toLb);
    const out = b.run(inFrame);
    assert.equal(out.action, XdpAction.TX);
    assert.equal(out.data.readUInt16BE(12), ETH_P_IPV6);
    assert.equal(out.data[14 + 6], PROTO.ipip);
    assert.equal(out.data.readUInt16BE(14 + 4), inFrame.length - 14);
    assert.deepEqual(out.data.subarray(14 + 24, 14 + 40), ipToBytes('2001:db8:6::60'));
    assert.deepEqual(out.data.subarray(14 + 40), inFrame.subarray(14));
  });

  test('a real behind another interface (tx_port) is sent with XDP_REDIRECT', () => {
    b.setReal({ slot: 61, addr: '10.6.0.61', txPort: 1 });
    b.setVip({ id: 26, addr: '10.9.0.5', port: 80, proto: 'tcp', mode: 'dsr', ring: [61] });
    b.col.map('tx_ports').update(Buffer.from([1, 0, 0, 0]), Buffer.from([1, 0, 0, 0])); /* lo */
    const out = b.run(frame({ src: client(4), dst: '10.9.0.5', proto: 'tcp', sport: 1, dport: 80 }, toLb));
    assert.equal(out.action, XdpAction.REDIRECT);
    assert.equal(out.data.subarray(0, 6).toString('hex'), macToBytes(realMac(61)).toString('hex'));
  });
});
