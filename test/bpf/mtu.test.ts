/**
 * The egress MTU beyond ipip: dsr and nat reals behind another interface whose MTU is smaller
 * than the one clients come in by (two arms, jumbo on one side), and GRO aggregates (generic
 * mode: the stack hands XDP packets longer than any frame), which are not answered with an ICMP
 * error about an MTU their segments never exceeded.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { XdpAction } from '../../src/bpf/program.js';
import { macToBytes } from '../../src/model/address.js';
import { CLIENT_MAC, LB_MAC, TestBalancer, realMac } from './fixture.js';
import { ETH_P_IP, ETH_P_IPV6, PROTO, eth, frame, icmp6TooBig, icmpFragNeeded, ipv4, ipv6, type Flow } from './packet.js';

const toLb = { dst: LB_MAC, src: CLIENT_MAC };
const PORT1_MAC = '02:00:00:00:0e:01';
const DF = 0x4000;
const hex = (b: Buffer) => b.toString('hex');

let b: TestBalancer;
let seq = 0;
before(async () => {
  b = await TestBalancer.load();
  b.setPort(0, { mtu: 3000 }); /* the balancer's own interface: jumbo-ish */
  b.setPort(1, { ifindex: 1, devIfindex: 1, mac: PORT1_MAC, mtu: 1400 }); /* the reals' side */
  b.setReal({ slot: 1, addr: '10.50.0.1', txPort: 1 });
  b.setReal({ slot: 2, addr: '10.50.0.2', txPort: 1, port: 8080 });
  b.setReal({ slot: 3, addr: '2001:db8:50::3', txPort: 1 });
  b.setReal({ slot: 4, addr: '10.50.0.4' }); /* behind port 0 */
  b.setReal({ slot: 5, addr: '10.50.0.5', noMac: true });
  b.setVip({ id: 0, addr: '10.60.0.1', port: 80, proto: 'tcp', mode: 'dsr', ring: [1] });
  b.setVip({ id: 1, addr: '10.60.0.2', port: 80, proto: 'tcp', mode: 'nat', ring: [2] });
  b.setVip({ id: 2, addr: '2001:db8:60::1', port: 80, proto: 'tcp', mode: 'dsr', ring: [3] });
  b.setVip({ id: 3, addr: '10.60.0.1', port: 53, proto: 'udp', mode: 'dsr', ring: [1] });
  b.setVip({ id: 4, addr: '10.60.0.4', port: 80, proto: 'tcp', mode: 'dsr', ring: [4] });
  b.setVip({ id: 5, addr: '10.60.0.5', port: 80, proto: 'tcp', mode: 'ipip', ring: [5] });
});
after(() => b?.close());

const client = (fam: 4 | 6) => (++seq, fam === 4 ? `192.168.60.${seq}` : `2001:db8:c6::${seq.toString(16)}`);

/** A packet to `dst` whose IP packet is `ipLen` bytes. */
function pkt(src: string, dst: string, ipLen: number, o: { proto?: 'tcp' | 'udp'; df?: boolean } = {}): { f: Flow; frame: Buffer } {
  const proto = o.proto ?? 'tcp';
  const hl = src.includes(':') ? 40 : 20;
  const f: Flow = { src, dst, proto, sport: 30000 + seq, dport: proto === 'tcp' ? 80 : 53, payload: Buffer.alloc(ipLen - hl - (proto === 'tcp' ? 20 : 8), 0x33) };
  return { f, frame: frame(f, toLb, { ip: { fragOff: o.df === false ? 0 : DF } }) };
}

function withMacs(f: Buffer, dst: string, src: string): Buffer {
  const o = Buffer.from(f);
  macToBytes(dst).copy(o, 0);
  macToBytes(src).copy(o, 6);
  return o;
}

/** The ICMP fragmentation needed the balancer sends `c` about `inFrame` (to VIP `vip`). */
const fragNeeded = (inFrame: Buffer, vip: string, c: string, mtu: number) =>
  eth(CLIENT_MAC, LB_MAC, ETH_P_IP, ipv4({ src: vip, dst: c, proto: PROTO.icmp, id: 0, fragOff: DF, ttl: 64, payload: icmpFragNeeded(inFrame.subarray(14, 14 + 128), mtu) }));

describe('dsr and nat to reals behind an interface with a smaller MTU', () => {
  test('dsr: a DF segment over the egress MTU is answered with ICMP fragmentation needed (MTU 1400); one that fits is redirected', () => {
    const c = client(4);
    const big = pkt(c, '10.60.0.1', 1401);
    const n = b.global('icmp_too_big');
    const out = b.run(big.frame);
    assert.equal(out.action, XdpAction.TX, 'back out where it came in');
    assert.equal(hex(out.data), hex(fragNeeded(big.frame, '10.60.0.1', c, 1400)));
    assert.equal(b.global('icmp_too_big'), n + 1);
    const fits = pkt(c, '10.60.0.1', 1400);
    const o2 = b.run(fits.frame);
    assert.equal(o2.action, XdpAction.REDIRECT);
    assert.equal(hex(o2.data), hex(withMacs(fits.frame, realMac(1), PORT1_MAC)));
  });

  test('nat: the ICMP quotes the packet as the client sent it (to the VIP), not rewritten', () => {
    const c = client(4);
    const big = pkt(c, '10.60.0.2', 2000);
    const out = b.run(big.frame);
    assert.equal(out.action, XdpAction.TX);
    assert.equal(hex(out.data), hex(fragNeeded(big.frame, '10.60.0.2', c, 1400)));
  });

  test('IPv6 dsr: ICMPv6 packet too big (MTU 1400)', () => {
    const c = client(6);
    const big = pkt(c, '2001:db8:60::1', 1500);
    const out = b.run(big.frame);
    assert.equal(out.action, XdpAction.TX);
    const want = eth(CLIENT_MAC, LB_MAC, ETH_P_IPV6, ipv6({ src: '2001:db8:60::1', dst: c, nexthdr: PROTO.icmpv6, hopLimit: 64, payload: icmp6TooBig('2001:db8:60::1', c, big.frame.subarray(14, 14 + 128), 1400) }));
    assert.equal(hex(out.data), hex(want));
  });

  test('a UDP datagram over the egress MTU without DF is dropped and counted, not lost without a word', () => {
    const big = pkt(client(4), '10.60.0.1', 2000, { proto: 'udp', df: false });
    const n = b.global('drop_too_big');
    assert.equal(b.run(big.frame).action, XdpAction.DROP);
    assert.equal(b.global('drop_too_big'), n + 1);
  });

  test('out of the interface it came in by, a dsr packet is forwarded whatever its size', () => {
    const big = pkt(client(4), '10.60.0.4', 2900);
    const out = b.run(big.frame);
    assert.equal(out.action, XdpAction.TX);
    assert.equal(hex(out.data), hex(withMacs(big.frame, realMac(4), LB_MAC)));
  });
});

describe('GRO aggregates (longer than the balancer\'s interface carries)', () => {
  test('ipip: a 3,500-byte aggregate on a 3,000-MTU interface is dropped and counted, not answered with ICMP', () => {
    const big = pkt(client(4), '10.60.0.5', 3500);
    const icmp = b.global('icmp_too_big');
    const n = b.global('drop_too_big');
    assert.equal(b.run(big.frame).action, XdpAction.DROP);
    assert.equal(b.global('drop_too_big'), n + 1);
    assert.equal(b.global('icmp_too_big'), icmp);
  });

  test('dsr to another interface: the same', () => {
    const big = pkt(client(4), '10.60.0.1', 3500);
    const icmp = b.global('icmp_too_big');
    assert.equal(b.run(big.frame).action, XdpAction.DROP);
    assert.equal(b.global('icmp_too_big'), icmp);
  });

  test('ipip: a full-MTU frame of the interface (3,000) is answered (MTU 2980)', () => {
    const c = client(4);
    const big = pkt(c, '10.60.0.5', 3000);
    const out = b.run(big.frame);
    assert.equal(out.action, XdpAction.TX);
    assert.equal(hex(out.data), hex(fragNeeded(big.frame, '10.60.0.5', c, 2980)));
  });
});
