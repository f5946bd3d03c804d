/**
 * Malformed and unexpected input: the balancer passes (or drops) it, never forwards a corrupt
 * packet, never changes the bytes of what it passes, and never creates a flow for it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { XdpAction } from '../../src/bpf/program.js';
import type { GlobalCounter } from '../../src/dataplane/xdp/structs.js';
import { CLIENT_MAC, LB_MAC, TestBalancer } from './fixture.js';
import { ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, PROTO, eth, frame, icmpFragNeeded, ipv4, ipv6, tcp, udp } from './packet.js';

const VIP4 = '10.0.0.100';
const VIP6 = '2001:db8::100';
const C4 = '192.168.1.1';
const C6 = '2001:db8:c::1';

let b: TestBalancer;
before(async () => {
  b = await TestBalancer.load();
  b.setReal({ slot: 1, addr: '10.1.0.1' });
  b.setReal({ slot: 2, addr: '2001:db8:1::2' });
  for (const proto of ['tcp', 'udp'] as const) {
    b.setVip({ id: proto === 'tcp' ? 0 : 1, addr: VIP4, port: 80, proto, mode: 'nat', ring: [1] });
    b.setVip({ id: proto === 'tcp' ? 2 : 3, addr: VIP6, port: 80, proto, mode: 'nat', ring: [2] });
  }
});
after(() => b?.close());

const l4tcp4 = tcp(C4, VIP4, { sport: 1234, dport: 80 });
const l4tcp6 = tcp(C6, VIP6, { sport: 1234, dport: 80 });
const ip4 = (o: Partial<Parameters<typeof ipv4>[0]> = {}) => ipv4({ src: C4, dst: VIP4, proto: PROTO.tcp, payload: l4tcp4, ...o });
const ip6 = (o: Partial<Parameters<typeof ipv6>[0]> = {}) => ipv6({ src: C6, dst: VIP6, nexthdr: PROTO.tcp, payload: l4tcp6, ...o });
const e4 = (p: Buffer) => eth(LB_MAC, CLIENT_MAC, ETH_P_IP, p);
const e6 = (p: Buffer) => eth(LB_MAC, CLIENT_MAC, ETH_P_IPV6, p);

/** Hand a frame to the balancer: it must pass it unchanged, count `reason` and make no flow. */
function assertPassed(input: Buffer, reason: GlobalCounter | 'lru_miss'): void {
  const before = b.global(reason);
  const misses = b.global('lru_miss');
  const out = b.run(input);
  assert.equal(out.action, XdpAction.PASS, 'action');
  assert.equal(out.data.toString('hex'), input.toString('hex'), 'bytes unchanged');
  assert.equal(b.global(reason), before + 1, `counter ${reason}`);
  assert.equal(b.global('lru_miss'), misses, 'no flow created');
}

describe('malformed input passes untouched', () => {
  test('frames shorter than an Ethernet header never reach the program (the kernel refuses them)', () => {
    for (const n of [0, 1, 13]) assert.throws(() => b.run(Buffer.alloc(n)), { code: 'EINVAL' });
  });

  test('an Ethernet header with nothing after it (IPv4 type, zero-length payload)', () => {
    assertPassed(eth(LB_MAC, CLIENT_MAC, ETH_P_IP, Buffer.alloc(0)), 'pass_malformed');
  });

  test('a truncated VLAN tag', () => {
    const f = eth(LB_MAC, CLIENT_MAC, ETH_P_8021Q, Buffer.from([0, 5]));
    assertPassed(f, 'pass_malformed');
  });

  test('a truncated IPv4 header', () => {
    assertPassed(e4(ip4().subarray(0, 12)), 'pass_malformed');
  });

  test('an IPv4 header with IHL < 5', () => {
    assertPassed(e4(ip4({ ihl: 4 })), 'pass_malformed');
  });

  test('an IPv4 IHL that runs past the packet', () => {
    assertPassed(e4(ipv4({ src: C4, dst: VIP4, proto: PROTO.tcp, payload: Buffer.alloc(0), ihl: 15 })), 'pass_malformed');
  });

  test('an IPv4 total length beyond the frame (oversized claim)', () => {
    assertPassed(e4(ip4({ totLen: 65535 })), 'pass_malformed');
  });

  test('an IPv4 total length shorter than its header', () => {
    assertPassed(e4(ip4({ totLen: 12 })), 'pass_malformed');
  });

  test('a bad IP version under the IPv4 ethertype', () => {
    assertPassed(e4(ip4({ version: 6 })), 'pass_malformed');
  });

  test('a bad IP version under the IPv6 ethertype', () => {
    assertPassed(e6(ip6({ version: 4 })), 'pass_malformed');
  });

  test('a truncated IPv6 header', () => {
    assertPassed(e6(ip6().subarray(0, 39)), 'pass_malformed');
  });

  test('an IPv6 payload length beyond the frame', () => {
    assertPassed(e6(ip6({ payloadLen: 1000 })), 'pass_malformed');
  });

  test('a truncated TCP header to a VIP', () => {
    assertPassed(e4(ip4({ payload: l4tcp4.subarray(0, 12) })), 'pass_malformed');
  });

  test('a truncated UDP header to a VIP', () => {
    const u = udp(C4, VIP4, { sport: 1, dport: 80 });
    assertPassed(e4(ip4({ proto: PROTO.udp, payload: u.subarray(0, 4) })), 'pass_malformed');
  });

  test('a truncated IPv6 extension header (hop-by-hop cut short) to a VIP', () => {
    assertPassed(e6(ip6({ nexthdr: PROTO.hopopts, payload: Buffer.from([PROTO.tcp, 0, 1, 4]) })), 'pass_malformed');
  });

  test('an IPv6 extension header chain that ends in an unknown protocol (GRE) to a VIP', () => {
    const hbh = Buffer.concat([Buffer.from([47, 0, 1, 4, 0, 0, 0, 0]), l4tcp6]);
    assertPassed(e6(ip6({ nexthdr: PROTO.hopopts, payload: hbh })), 'pass_unknown_proto');
  });

  test('a truncated IPv6 fragment header', () => {
    assertPassed(e6(ip6({ nexthdr: PROTO.frag6, payload: Buffer.from([PROTO.tcp, 0, 0, 1]) })), 'pass_malformed');
  });

  test('an IPv6 fragment of neither TCP nor UDP', () => {
    const fh = Buffer.concat([Buffer.from([PROTO.icmpv6, 0, 0, 1, 0, 0, 0, 9]), Buffer.alloc(16)]);
    assertPassed(e6(ip6({ nexthdr: PROTO.frag6, payload: fh })), 'pass_unknown_proto');
  });

  test('a later IPv6 fragment of an unknown datagram to a VIP', () => {
    const fh = Buffer.concat([Buffer.from([PROTO.tcp, 0, 0, 5 << 3, 0, 0, 0x42, 0x42]), Buffer.alloc(16)]);
    assertPassed(e6(ip6({ nexthdr: PROTO.frag6, payload: fh })), 'pass_frag');
  });

  test('a later IPv4 fragment of an unknown datagram to a VIP', () => {
    assertPassed(e4(ip4({ fragOff: 10, id: 4242 })), 'pass_frag');
  });

  test('a fragmented ICMP error', () => {
    const quoted = ipv4({ src: VIP4, dst: C4, proto: PROTO.tcp, payload: tcp(VIP4, C4, { sport: 80, dport: 1234 }) });
    assertPassed(e4(ipv4({ src: '10.50.0.1', dst: VIP4, proto: PROTO.icmp, payload: icmpFragNeeded(quoted), fragOff: 0x2000 })), 'pass_unknown_proto');
  });

  test('an ICMP error whose quote is truncated', () => {
    const quoted = ipv4({ src: VIP4, dst: C4, proto: PROTO.tcp, payload: tcp(VIP4, C4, { sport: 80, dport: 1234 }) }).subarray(0, 22);
    assertPassed(e4(ipv4({ src: '10.50.0.1', dst: VIP4, proto: PROTO.icmp, payload: icmpFragNeeded(quoted) })), 'pass_malformed');
  });

  test('an ICMP error whose quote has IHL < 5', () => {
    const quoted = ipv4({ src: VIP4, dst: C4, proto: PROTO.tcp, payload: tcp(VIP4, C4, { sport: 80, dport: 1234 }), ihl: 3 });
    assertPassed(e4(ipv4({ src: '10.50.0.1', dst: VIP4, proto: PROTO.icmp, payload: icmpFragNeeded(quoted) })), 'pass_malformed');
  });

  test('an unknown IP protocol (GRE) to a VIP', () => {
    assertPassed(e4(ip4({ proto: 47 })), 'pass_unknown_proto');
  });

  test('ARP', () => {
    assertPassed(eth('ff:ff:ff:ff:ff:ff', CLIENT_MAC, ETH_P_ARP, Buffer.alloc(28)), 'pass_not_ip');
  });

  test('stacked VLAN tags (QinQ): only one tag is parsed', () => {
    const inner = eth(LB_MAC, CLIENT_MAC, ETH_P_IP, ip4(), 7);
    const f = Buffer.concat([inner.subarray(0, 12), Buffer.from([0x88, 0xa8, 0, 9]), inner.subarray(12)]);
    assertPassed(f, 'pass_not_ip');
  });

  test('a 64-byte all-zero frame', () => {
    assertPassed(Buffer.alloc(64), 'pass_not_ip');
  });
});

describe('large and random input', () => {
  test('a 3,500-byte frame to a VIP is forwarded whole', () => {
    const f = frame({ src: C4, dst: VIP4, proto: 'tcp', sport: 5555, dport: 80, payload: Buffer.alloc(3500 - 54, 1) }, { dst: LB_MAC, src: CLIENT_MAC });
    const out = b.run(f);
    assert.equal(out.action, XdpAction.TX);
    assert.equal(out.data.length, 3500);
    assert.deepEqual(out.data.subarray(54), f.subarray(54));
  });

  test('a frame larger than a page (9,000 bytes) passes: the program sees only its first buffer', () => {
    const f = frame({ src: C4, dst: VIP4, proto: 'tcp', sport: 5556, dport: 80, payload: Buffer.alloc(9000 - 54, 1) }, { dst: LB_MAC, src: CLIENT_MAC });
    assertPassed(f, 'pass_malformed');
  });

  test('5,000 randomly corrupted VIP frames: every one is passed, dropped or forwarded, never aborted', () => {
    const seeds = [
      frame({ src: C4, dst: VIP4, proto: 'tcp', sport: 1, dport: 80 }, { dst: LB_MAC, src: CLIENT_MAC }),
      frame({ src: C6, dst: VIP6, proto: 'udp', sport: 1, dport: 80 }, { dst: LB_MAC, src: CLIENT_MAC }),
      e4(ipv4({ src: '10.50.0.1', dst: VIP4, proto: PROTO.icmp, payload: icmpFragNeeded(ipv4({ src: VIP4, dst: C4, proto: PROTO.tcp, payload: tcp(VIP4, C4, { sport: 80, dport: 1 }) })) })),
    ];
    const allowed = new Set<number>([XdpAction.PASS, XdpAction.DROP, XdpAction.TX]);
    for (let i = 0; i < 5000; i++) {
      const f = Buffer.from(seeds[i % seeds.length]);
      const r = randomBytes(8);
      for (let k = 0; k < 1 + (r[0] & 3); k++) f[12 + (r.readUInt16LE(1 + k) % (f.length - 12))] = r[7 - k];
      const cut = r[7] & 1 ? Math.max(14, f.length - (r[6] % 40)) : f.length;
      const out = b.run(f.subarray(0, cut));
      assert.ok(allowed.has(out.action), `frame ${i}: action ${out.action} for ${f.subarray(0, cut).toString('hex')}`);
      if (out.action === XdpAction.PASS) assert.deepEqual(out.data, f.subarray(0, cut), `frame ${i} passed changed`);
    }
  });
});
