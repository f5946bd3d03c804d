/**
 * `--dataplane auto` asks ipvsAvailable() whether IPVS can be used. On a fresh host the ip_vs
 * module is not loaded and its generic netlink family does not exist yet: the probe must load
 * it. This file unloads IPVS first, so it needs the suite to run one file at a time (every
 * other file removes its services when done).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { IpvsDataplane, ipvsAvailable } from '../../src/dataplane/ipvs/index.js';
import type { ServiceTable } from '../../src/model/types.js';
import { admService, assertIpvsHost, sh } from './support.js';

function loadedIpvsModules(): string[] {
  return readFileSync('/proc/modules', 'utf8').split('\n').map((l) => l.split(' ')[0]).filter((m) => /^ip_vs/.test(m));
}

function unloadIpvs(): void {
  const mods = loadedIpvsModules();
  if (mods.length === 0) return;
  const left = sh('ipvsadm', '-Ln').split('\n').filter((l) => /^(TCP|UDP|SCTP|FWM)/.test(l));
  assert.deepEqual(left, [], 'no IPVS service may be left by the other test files');
  // Schedulers first: ip_vs is in use while any of them is loaded.
  for (const m of mods.filter((x) => x !== 'ip_vs')) sh('rmmod', m);
  sh('rmmod', 'ip_vs');
}

before(() => {
  assertIpvsHost();
  unloadIpvs();
});

test('with ip_vs not loaded, the probe loads it and reports IPVS available with its version', async () => {
  assert.equal(existsSync('/sys/module/ip_vs'), false, 'precondition: ip_vs unloaded');
  const r = await ipvsAvailable();
  assert.equal(r.ok, true, r.reason);
  assert.match(r.version ?? '', /^\d+\.\d+\.\d+$/);
  assert.equal(existsSync('/sys/module/ip_vs'), true);
});

test('a running data plane carries on after ip_vs is unloaded and loaded again with other parameters', async () => {
  // An operator resizing IPVS's connection table: ipvsadm -C; modprobe -r ip_vs; modprobe ip_vs conn_tab_bits=N.
  // The generic netlink family comes back under a new id, with nothing in it.
  const table: ServiceTable = { services: [{ address: '10.104.0.1', port: 80, protocol: 'tcp', mode: 'dsr', hash: '5tuple', scheduler: 'mh',
    reals: [{ address: '10.104.1.1', port: 80, weight: 1, state: 'up' }] }] };
  const dp = await IpvsDataplane.open({});
  try {
    await dp.sync(table);
    sh('ipvsadm', '-C');
    unloadIpvs();
    sh('modprobe', 'ip_vs', 'conn_tab_bits=13');
    assert.equal(readFileSync('/sys/module/ip_vs/parameters/conn_tab_bits', 'utf8').trim(), '13');
    const r = await dp.sync(table);
    assert.equal(r.added, 2, JSON.stringify(r));
    assert.deepEqual(admService('tcp', '10.104.0.1', 80)?.dests.map((d) => d.address), ['10.104.1.1']);
    assert.deepEqual((await dp.sync(table)).changes, []);
    // Unloaded and left so: the lookup by name has the kernel load it again (as ipvsadm would).
    sh('ipvsadm', '-C');
    unloadIpvs();
    assert.equal((await dp.sync(table)).added, 2);
    assert.ok(admService('tcp', '10.104.0.1', 80));
  } finally {
    await dp.close({ keepForwarding: false });
  }
});
