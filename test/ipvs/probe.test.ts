/**
 * `--dataplane auto` asks ipvsAvailable() whether IPVS can be used. On a fresh host the ip_vs
 * module is not loaded and its generic netlink family does not exist yet: the probe must load
 * it. This file unloads IPVS first, so it needs the suite to run one file at a time (every
 * other file removes its services when done).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { ipvsAvailable } from '../../src/dataplane/ipvs/index.js';
import { assertIpvsHost, sh } from './support.js';

function loadedIpvsModules(): string[] {
  return readFileSync('/proc/modules', 'utf8').split('\n').map((l) => l.split(' ')[0]).filter((m) => /^ip_vs/.test(m));
}

before(() => {
  assertIpvsHost();
  const mods = loadedIpvsModules();
  if (mods.length === 0) return;
  const left = sh('ipvsadm', '-Ln').split('\n').filter((l) => /^(TCP|UDP|SCTP|FWM)/.test(l));
  assert.deepEqual(left, [], 'no IPVS service may be left by the other test files');
  // Schedulers first: ip_vs is in use while any of them is loaded.
  for (const m of mods.filter((x) => x !== 'ip_vs')) sh('rmmod', m);
  sh('rmmod', 'ip_vs');
});

test('with ip_vs not loaded, the probe loads it and reports IPVS available with its version', async () => {
  assert.equal(existsSync('/sys/module/ip_vs'), false, 'precondition: ip_vs unloaded');
  const r = await ipvsAvailable();
  assert.equal(r.ok, true, r.reason);
  assert.match(r.version ?? '', /^\d+\.\d+\.\d+$/);
  assert.equal(existsSync('/sys/module/ip_vs'), true);
});
