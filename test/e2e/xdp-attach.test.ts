/**
 * Attaching where native XDP cannot go, as an operator meets it: a veth whose peer has jumbo
 * frames (MTU 9000: over the page a single-buffer program takes), and a bridge (no native XDP).
 * The kernel says only ERANGE / EOPNOTSUPP; the error must say why and what to do, and leave no
 * pins behind. The data plane runs in a child process in the namespace (network only: nsenter).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { unpinAll } from '../../src/bpf/pin.js';
import { addNs, delNs, inNs, runId } from '../support/netns.js';

const id = runId();
const NS = `xa-${id}`;
const PIN = `/sys/fs/bpf/sluice-test-xa-${id}`;
const DIST = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
process.on('exit', () => unpinAll(PIN));

/** Open the data plane on `ifname` in NS: 'ok' or the error's code and first line. */
function openIn(ifname: string, xdpMode: 'native' | 'generic'): { ok: boolean; code?: string; line?: string } {
  const script = `
    const { XdpDataplane } = await import(${JSON.stringify(join(DIST, 'src/dataplane/xdp/index.js'))});
    const { DEFAULT_DATAPLANE } = await import(${JSON.stringify(join(DIST, 'src/model/types.js'))});
    const spec = { ...DEFAULT_DATAPLANE, kind: 'xdp', interface: ${JSON.stringify(ifname)}, xdpMode: ${JSON.stringify(xdpMode)}, maxVips: 2, maxReals: 4, ringSize: 13, flowTableSize: 1024 };
    try {
      const dp = await XdpDataplane.open({ spec, pinDir: ${JSON.stringify(PIN)} });
      await dp.close({ keepForwarding: false });
      process.stdout.write(JSON.stringify({ ok: true }));
    } catch (e) {
      process.stdout.write(JSON.stringify({ ok: false, code: e.code, line: e.message.split('\\n')[0] }));
    }`;
  return JSON.parse(inNs(NS, process.execPath, ['--input-type=module', '-e', script], { timeout: 30_000 }));
}

describe('attaching where native XDP cannot go', () => {
  before(() => {
    addNs(NS);
    inNs(NS, 'ip', ['link', 'add', 'dev', 'jv0', 'type', 'veth', 'peer', 'name', 'jv1']);
    inNs(NS, 'ip', ['link', 'set', 'jv1', 'mtu', '9000']);
    inNs(NS, 'ip', ['link', 'set', 'jv0', 'mtu', '9000']);
    inNs(NS, 'ip', ['link', 'add', 'jbr', 'type', 'bridge']);
    for (const d of ['jv0', 'jv1', 'jbr']) inNs(NS, 'ip', ['link', 'set', d, 'up']);
    unpinAll(PIN);
  });
  after(() => {
    delNs(NS);
    unpinAll(PIN);
  });

  test('native on a veth whose peer has MTU 9000: ERANGE, naming the MTU and the way out; no pins left', () => {
    const r = openIn('jv0', 'native');
    assert.equal(r.ok, false);
    assert.equal(r.code, 'ERANGE');
    assert.match(r.line!, /jv0 refused native XDP for its MTU/);
    assert.match(r.line!, /lower the MTU, or use xdpMode generic/);
    assert.equal(existsSync(join(PIN, 'prog')), false, 'no program pinned');
  });

  test('generic on the same veth attaches', () => {
    assert.deepEqual(openIn('jv0', 'generic'), { ok: true });
  });

  test('with the peer back at 3506 bytes, native attaches', () => {
    inNs(NS, 'ip', ['link', 'set', 'jv1', 'mtu', '3506']);
    try {
      assert.deepEqual(openIn('jv0', 'native'), { ok: true });
    } finally {
      inNs(NS, 'ip', ['link', 'set', 'jv1', 'mtu', '9000']);
    }
  });

  test('native on a bridge: EOPNOTSUPP, pointing at generic', () => {
    const r = openIn('jbr', 'native');
    assert.equal(r.code, 'EOPNOTSUPP');
    assert.match(r.line!, /jbr has no native XDP; use xdpMode generic/);
  });
});
