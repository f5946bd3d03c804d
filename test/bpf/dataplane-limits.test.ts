/**
 * XdpDataplane at its limits (maxVips, maxReals): a table that fits once what it drops is freed
 * syncs, whatever order its VIPs come in; one that does not fit is refused before any map is
 * written, and what follows it syncs as if it had never been tried.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { unpinAll } from '../../src/bpf/pin.js';
import { XdpAction } from '../../src/bpf/program.js';
import { XdpDataplane, staticMacs } from '../../src/dataplane/xdp/index.js';
import type { BpfMap } from '../../src/bpf/map.js';
import { DEFAULT_DATAPLANE, type DataplaneSpec, type Service, type ServiceTable } from '../../src/model/types.js';
import { frame } from './packet.js';

const PIN = `/sys/fs/bpf/sluice-test-lim-${randomBytes(3).toString('hex')}`;
const SPEC: DataplaneSpec = { ...DEFAULT_DATAPLANE, kind: 'xdp', maxVips: 2, maxReals: 4, ringSize: 13, flowTableSize: 1024 };
const MACS: Record<string, string> = {};
for (let i = 1; i <= 9; i++) MACS[`10.1.0.${i}`] = `02:00:00:00:01:0${i}`;
const LB = { dst: '02:00:00:00:00:01', src: '02:00:00:00:00:02' };
process.on('exit', () => unpinAll(PIN));

const svc = (address: string, reals: string[]): Service => ({
  address, port: 80, protocol: 'tcp', mode: 'dsr', hash: '5tuple', scheduler: 'mh',
  reals: reals.map((a) => ({ address: a, port: 80, weight: 1, state: 'up' as const })),
});
const table = (...s: Service[]): ServiceTable => ({ services: s });
const open = () => XdpDataplane.open({ spec: SPEC, pinDir: PIN, resolveMac: staticMacs(MACS), isOnLink: async () => true });
const macOf = (d: Buffer) => [...d.subarray(0, 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
const realOf = (d: Buffer) => Object.keys(MACS).find((a) => MACS[a] === macOf(d));

/** The reals 60 new flows to `vip` reach (undefined: a packet was not forwarded). */
function reached(dp: XdpDataplane, vip: string): Set<string | undefined> {
  const seen = new Set<string | undefined>();
  for (let i = 0; i < 60; i++) {
    const out = dp.program.testRun(frame({ src: `192.168.9.${i + 1}`, dst: vip, proto: 'tcp', sport: 7000 + i, dport: 80, flags: 0x02 }, LB));
    seen.add(out.action === XdpAction.TX ? realOf(out.data) : undefined);
  }
  return seen;
}

/** Every entry of a map, as hex, to compare before and after. */
function dump(m: BpfMap): string[] {
  return m.lookupAll().map(([k, v]) => `${k.toString('hex')}=${v.toString('hex')}`).sort();
}

let dp: XdpDataplane | undefined;
afterEach(async () => { await dp?.close({ keepForwarding: false }); dp = undefined; });
after(() => unpinAll(PIN));

describe('XdpDataplane at its limits', () => {
  before(() => unpinAll(PIN));

  test('with every real slot in use, replacing a real of a VIP syncs, and only the new real gets new flows', async () => {
    dp = await open();
    await dp.sync(table(svc('10.0.0.1', ['10.1.0.1', '10.1.0.2']), svc('10.0.0.2', ['10.1.0.3', '10.1.0.4'])));
    const r = await dp.sync(table(svc('10.0.0.1', ['10.1.0.1', '10.1.0.2']), svc('10.0.0.2', ['10.1.0.3', '10.1.0.5'])));
    assert.equal(r.added, 1);
    assert.equal(r.removed, 1);
    assert.deepEqual([...reached(dp, '10.0.0.2')].sort(), ['10.1.0.3', '10.1.0.5']);
    assert.deepEqual([...reached(dp, '10.0.0.1')].sort(), ['10.1.0.1', '10.1.0.2']);
    const s = await dp.stats();
    assert.deepEqual(s.vips[1].reals.map((x) => x.key).sort(), ['10.1.0.3:80', '10.1.0.5:80']);
  });

  test('at the limit, a new VIP listed before the VIP that gives up its reals syncs', async () => {
    dp = await open();
    await dp.sync(table(svc('10.0.0.1', ['10.1.0.1', '10.1.0.2', '10.1.0.3', '10.1.0.4'])));
    await dp.sync(table(svc('10.0.0.2', ['10.1.0.5', '10.1.0.6']), svc('10.0.0.1', ['10.1.0.1', '10.1.0.2'])));
    assert.deepEqual([...reached(dp, '10.0.0.2')].sort(), ['10.1.0.5', '10.1.0.6']);
    assert.deepEqual([...reached(dp, '10.0.0.1')].sort(), ['10.1.0.1', '10.1.0.2']);
  });

  test('a VIP whose every real is replaced at the limit ends with the new reals', async () => {
    dp = await open();
    await dp.sync(table(svc('10.0.0.1', ['10.1.0.1', '10.1.0.2']), svc('10.0.0.2', ['10.1.0.3', '10.1.0.4'])));
    await dp.sync(table(svc('10.0.0.1', ['10.1.0.1', '10.1.0.2']), svc('10.0.0.2', ['10.1.0.5', '10.1.0.6'])));
    assert.deepEqual([...reached(dp, '10.0.0.2')].sort(), ['10.1.0.5', '10.1.0.6']);
  });

  test('a table with more reals than the slots left is refused with ENOSPC and writes nothing', async () => {
    dp = await open();
    await dp.sync(table(svc('10.0.0.1', ['10.1.0.1', '10.1.0.2'])));
    const names = ['vips', 'reals', 'rings', 'config'] as const;
    const before = names.map((n) => dump(dp!.map(n)));
    await assert.rejects(dp.sync(table(svc('10.0.0.1', ['10.1.0.1']), svc('10.0.0.2', ['10.1.0.3', '10.1.0.4', '10.1.0.5', '10.1.0.6']))), { code: 'ENOSPC' });
    names.forEach((n, i) => assert.deepEqual(dump(dp!.map(n)), before[i], `${n} unchanged`));
    assert.deepEqual((await dp.stats()).vips.map((v) => v.key), ['10.0.0.1:80/tcp']);
    assert.deepEqual([...reached(dp, '10.0.0.1')].sort(), ['10.1.0.1', '10.1.0.2']);
  });

  test('after a refused table, a table that fits forwards its new VIP', async () => {
    dp = await open();
    await dp.sync(table(svc('10.0.0.1', ['10.1.0.1', '10.1.0.2'])));
    await assert.rejects(dp.sync(table(svc('10.0.0.1', ['10.1.0.1', '10.1.0.2']), svc('10.0.0.2', ['10.1.0.3', '10.1.0.4', '10.1.0.5']))), { code: 'ENOSPC' });
    const r = await dp.sync(table(svc('10.0.0.1', ['10.1.0.1', '10.1.0.2']), svc('10.0.0.2', ['10.1.0.3', '10.1.0.4'])));
    assert.ok(r.changes.some((c) => c.startsWith('+vip 10.0.0.2:80/tcp')), r.changes.join('; '));
    assert.deepEqual([...reached(dp, '10.0.0.2')].sort(), ['10.1.0.3', '10.1.0.4']);
  });

  test('at maxVips, replacing a VIP by another in one table syncs; one more VIP is refused and writes nothing', async () => {
    dp = await open();
    await dp.sync(table(svc('10.0.0.1', ['10.1.0.1']), svc('10.0.0.2', ['10.1.0.2'])));
    await dp.sync(table(svc('10.0.0.1', ['10.1.0.1']), svc('10.0.0.3', ['10.1.0.3'])));
    assert.deepEqual([...reached(dp, '10.0.0.3')], ['10.1.0.3']);
    assert.deepEqual([...reached(dp, '10.0.0.2')], [undefined]);
    const before = dump(dp.map('vips'));
    await assert.rejects(dp.sync(table(svc('10.0.0.1', ['10.1.0.1']), svc('10.0.0.3', ['10.1.0.3']), svc('10.0.0.4', ['10.1.0.4']))), { code: 'ENOSPC' });
    assert.deepEqual(dump(dp.map('vips')), before);
  });
});
