/** The decap program reals run when their kernel lacks the ipip module. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { compileBpf } from '../../src/bpf/build.js';
import { Collection } from '../../src/bpf/collection.js';
import { XdpAction, type Program } from '../../src/bpf/program.js';
import { ETH_P_IP, ETH_P_IPV6, PROTO, eth, frame, ipv4, ipv6 } from './packet.js';

const REAL_MAC = '02:00:00:00:01:01';
const LB_MAC = '02:00:00:00:00:01';
let col: Collection;
let decap: Program;
before(async () => {
  col = Collection.load(await compileBpf({ source: 'decap' }));
  decap = col.program('decap');
});
after(() => col?.close());

const inner4 = frame({ src: '192.168.1.1', dst: '10.0.0.100', proto: 'tcp', sport: 1000, dport: 80, payload: Buffer.from('x') }, { dst: REAL_MAC, src: LB_MAC });
const inner6 = frame({ src: '2001:db8:c::1', dst: '2001:db8::100', proto: 'udp', sport: 1000, dport: 53 }, { dst: REAL_MAC, src: LB_MAC });

test('IPIP: the outer IPv4 header goes, the inner packet passes to the stack under the same MACs', () => {
  const enc = eth(REAL_MAC, LB_MAC, ETH_P_IP, ipv4({ src: '172.16.1.2', dst: '10.1.0.1', proto: PROTO.ipip, payload: inner4.subarray(14) }));
  const out = decap.testRun(enc);
  assert.equal(out.action, XdpAction.PASS);
  assert.equal(out.data.toString('hex'), inner4.toString('hex'));
});

test('IP6IP6: the outer IPv6 header goes', () => {
  const enc = eth(REAL_MAC, LB_MAC, ETH_P_IPV6, ipv6({ src: 'fd00:5151::1', dst: '2001:db8:1::1', nexthdr: PROTO.ipv6, payload: inner6.subarray(14) }));
  const out = decap.testRun(enc);
  assert.equal(out.action, XdpAction.PASS);
  assert.equal(out.data.toString('hex'), inner6.toString('hex'));
});

test('4in6: an IPv4 packet inside IPv6 comes out as IPv4', () => {
  const enc = eth(REAL_MAC, LB_MAC, ETH_P_IPV6, ipv6({ src: 'fd00:5151::1', dst: '2001:db8:1::1', nexthdr: PROTO.ipip, payload: inner4.subarray(14) }));
  const out = decap.testRun(enc);
  assert.equal(out.action, XdpAction.PASS);
  assert.equal(out.data.toString('hex'), inner4.toString('hex'));
});

test('packets that are not encapsulated pass untouched', () => {
  for (const f of [inner4, inner6, eth(REAL_MAC, LB_MAC, 0x0806, Buffer.alloc(28)), Buffer.alloc(14)]) {
    const out = decap.testRun(f);
    assert.equal(out.action, XdpAction.PASS);
    assert.deepEqual(out.data, f);
  }
});

test('a truncated outer header passes untouched', () => {
  const f = eth(REAL_MAC, LB_MAC, ETH_P_IP, Buffer.from([0x45, 0, 0, 20, 0, 0, 0, 0, 64, 4]));
  const out = decap.testRun(f);
  assert.equal(out.action, XdpAction.PASS);
  assert.deepEqual(out.data, f);
});
