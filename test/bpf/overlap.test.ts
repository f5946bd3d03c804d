/**
 * VIPs that share an address: a port-0 VIP beside port-specific ones, and src-ip VIPs on several
 * ports of one address. Their flows share the flow table's key space (the key has no VIP id), so
 * a flow remembered for one VIP must never send another VIP's packets to the first VIP's real.
 * Reals carry their owner (VIP id + 1) as the agent writes it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { XdpAction } from '../../src/bpf/program.js';
import * as S from '../../src/dataplane/xdp/structs.js';
import { macToBytes } from '../../src/model/address.js';
import { CLIENT_MAC, LB_MAC, LIMITS, TestBalancer, realMac } from './fixture.js';
import { frame, type Flow } from './packet.js';

const toLb = { dst: LB_MAC, src: CLIENT_MAC };
const hex = (b: Buffer) => b.toString('hex');

let b: TestBalancer;
before(async () => {
  b = await TestBalancer.load();
});
after(() => b?.close());

function withMacs(f: Buffer, dst: string, src: string): Buffer {
  const o = Buffer.from(f);
  macToBytes(dst).copy(o, 0);
  macToBytes(src).copy(o, 6);
  return o;
}

/** The frame a DSR forward to real slot `slot` makes of `f`'s packet. */
const dsrTo = (f: Flow, slot: number) => hex(withMacs(frame(f, toLb), realMac(slot), LB_MAC));

describe('src-ip VIPs on several ports of one address', () => {
  const VIP = '10.40.0.1';
  before(() => {
    // :80 -> real slots 1, 2 (owner VIP 0); :443 -> real slot 3 (owner VIP 1): other hosts.
    b.setReal({ slot: 1, addr: '10.41.0.1', owner: 1 });
    b.setReal({ slot: 2, addr: '10.41.0.2', owner: 1 });
    b.setReal({ slot: 3, addr: '10.41.0.3', owner: 2 });
    b.setVip({ id: 0, addr: VIP, port: 80, proto: 'tcp', mode: 'dsr', srcIpHash: true, ring: [1, 2] });
    b.setVip({ id: 1, addr: VIP, port: 443, proto: 'tcp', mode: 'dsr', srcIpHash: true, ring: [3] });
  });

  test('a client of :80 that then connects to :443 reaches the :443 VIP\'s real, and stays with its :80 real', () => {
    for (let i = 0; i < 8; i++) {
      const client = `192.168.40.${i + 1}`;
      const web: Flow = { src: client, dst: VIP, proto: 'tcp', sport: 40000 + i, dport: 80 };
      const tls: Flow = { src: client, dst: VIP, proto: 'tcp', sport: 41000 + i, dport: 443 };
      const first = b.run(frame(web, toLb));
      assert.equal(first.action, XdpAction.TX);
      const webReal = [1, 2].find((s) => hex(first.data) === dsrTo(web, s));
      assert.ok(webReal, 'the :80 packet went to a :80 real');
      const out = b.run(frame(tls, toLb));
      assert.equal(out.action, XdpAction.TX);
      assert.equal(hex(out.data), dsrTo(tls, 3), `client ${client}: :443 to its own VIP's real`);
      // And the :80 client keeps its real when the ring of :80 changes (its flow entry holds it).
      b.setRing(0, [1, 2].filter((s) => s !== webReal));
      try {
        assert.equal(hex(b.run(frame({ ...web, sport: 42000 + i }, toLb)).data), dsrTo({ ...web, sport: 42000 + i }, webReal!), `client ${client}: :80 sticky`);
      } finally {
        b.setRing(0, [1, 2]);
      }
    }
  });

  test('each VIP counts its own packets and reals', () => {
    const client = '192.168.41.1';
    const v0 = b.stat(S.statsIndex.vip(0)).packets;
    const v1 = b.stat(S.statsIndex.vip(1)).packets;
    const r3 = b.stat(S.statsIndex.real(LIMITS, 3)).packets;
    b.run(frame({ src: client, dst: VIP, proto: 'tcp', sport: 1, dport: 80 }, toLb));
    b.run(frame({ src: client, dst: VIP, proto: 'tcp', sport: 2, dport: 443 }, toLb));
    b.run(frame({ src: client, dst: VIP, proto: 'tcp', sport: 3, dport: 443 }, toLb));
    assert.equal(b.stat(S.statsIndex.vip(0)).packets, v0 + 1);
    assert.equal(b.stat(S.statsIndex.vip(1)).packets, v1 + 2);
    assert.equal(b.stat(S.statsIndex.real(LIMITS, 3)).packets, r3 + 2);
  });
});

describe('a port-0 VIP and a port-specific VIP added beside it', () => {
  const VIP = '10.40.0.2';
  before(() => {
    b.setReal({ slot: 10, addr: '10.42.0.10', owner: 3 });
    b.setReal({ slot: 11, addr: '10.42.0.11', owner: 4 });
    b.setReal({ slot: 12, addr: '10.42.0.12', owner: 5, port: 5353 });
    b.setVip({ id: 2, addr: VIP, port: 0, proto: 'udp', mode: 'dsr', ring: [10] });
  });

  test('a UDP flow the port-0 VIP remembered moves to the new VIP of its port, counted flow_rechosen', () => {
    const f: Flow = { src: '192.168.42.1', dst: VIP, proto: 'udp', sport: 5000, dport: 53 };
    assert.equal(hex(b.run(frame(f, toLb)).data), dsrTo(f, 10), 'to the port-0 VIP first');
    b.setVip({ id: 3, addr: VIP, port: 53, proto: 'udp', mode: 'dsr', ring: [11] });
    const moved = b.global('flow_rechosen');
    const out = b.run(frame(f, toLb));
    assert.equal(out.action, XdpAction.TX);
    assert.equal(hex(out.data), dsrTo(f, 11), 'then to the :53 VIP\'s real');
    assert.equal(b.global('flow_rechosen'), moved + 1);
    assert.equal(hex(b.run(frame(f, toLb)).data), dsrTo(f, 11), 'and stays there');
    assert.equal(b.stat(S.statsIndex.real(LIMITS, 10)).packets, 1, 'the port-0 VIP\'s real saw only the first');
  });

  test('a NAT VIP added on a port takes that port\'s flows with its own mode and real port', () => {
    const f: Flow = { src: '192.168.42.2', dst: VIP, proto: 'udp', sport: 5001, dport: 5353 };
    assert.equal(hex(b.run(frame(f, toLb)).data), dsrTo(f, 10));
    b.setVip({ id: 4, addr: VIP, port: 5353, proto: 'udp', mode: 'nat', ring: [12] });
    const out = b.run(frame(f, toLb));
    assert.equal(out.action, XdpAction.TX);
    const want = withMacs(frame({ ...f, dst: '10.42.0.12', dport: 5353 }, toLb), realMac(12), LB_MAC);
    assert.equal(hex(out.data), hex(want), 'rewritten to the NAT real, not sent as is to the port-0 VIP\'s real');
  });
});
