/**
 * The agent's state dir when something went wrong outside the agent: a state file it cannot use
 * (hand-edited, foreign, from another version). The agent must refuse to start, name the file,
 * and leave it as it was.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { sluice } from '../support/cli.js';
import { Agent } from '../../src/agent/agent.js';
import { addVip } from '../../src/agent/desired.js';
import { L7Pool } from '../../src/agent/l7-pool.js';
import { StateStore } from '../../src/agent/store.js';
import { DEFAULT_DATAPLANE } from '../../src/model/index.js';
import { MemoryDataplane } from '../support/memory-dataplane.js';

let dir: string;
before(() => { dir = mkdtempSync(join(tmpdir(), 'sluice-state-')); });
after(() => rmSync(dir, { recursive: true, force: true }));

/** Start an agent on a state dir holding `content`; it must exit 1 before it opens a data plane. */
async function refusedAt(name: string, content: string): Promise<string> {
  const stateDir = join(dir, name);
  mkdirSync(stateDir);
  const file = join(stateDir, 'state.json');
  writeFileSync(file, content);
  const r = await sluice(['agent', '--state-dir', stateDir, '--socket', join(dir, `${name}.sock`), '--pin-dir', `/sys/fs/bpf/sluice-unit-${name}-${process.pid}`]);
  assert.equal(r.code, 1, `exit code: ${r.stdout}${r.stderr}`);
  assert.equal(readFileSync(file, 'utf8'), content, 'state file left as it was');
  return r.stderr;
}

test('a state file that is valid JSON but not a sluice state is refused naming the file, exit 1', async () => {
  let err = await refusedAt('foreign', '{"version":2,"vips":[]}\n');
  assert.match(err, /state\.json is not a state this agent can use \(version: unknown field .*\); fix or remove it/);
  err = await refusedAt('null', 'null\n');
  assert.match(err, /null\/state\.json is not a state this agent can use/);
  err = await refusedAt('badport', '{"vips":[{"address":"10.0.0.1","port":"80"}]}\n');
  assert.match(err, /badport\/state\.json is not a state this agent can use \(vips\[0\]\.port: must be an integer/);
});

test('a truncated state file is refused naming the file, exit 1', async () => {
  const err = await refusedAt('truncated', '{"dataplane": {"kind": "auto"}, "vi');
  assert.match(err, /truncated\/state\.json is not valid JSON .*; fix or remove it/);
});

test('a change the state dir cannot take is refused naming the file, changes nothing and leaves no temp file', async () => {
  const stateDir = join(dir, 'unwritable');
  const dp = new MemoryDataplane();
  const agent = await Agent.start({
    store: new StateStore(stateDir), dataplane: dp, logger: pino({ level: 'silent' }),
    initial: { dataplane: { ...DEFAULT_DATAPLANE }, vips: [] }, info: { kind: 'xdp', reason: 'test' },
  });
  try {
    // As root no mode bit makes a directory unwritable; a directory where the file goes makes
    // the write fail the same way a full or read-only disk does, after the temp file exists.
    rmSync(join(stateDir, 'state.json'));
    mkdirSync(join(stateDir, 'state.json'));
    const table = JSON.stringify(dp.table);
    await assert.rejects(agent.change((c) => addVip(c, { address: '10.99.100.1', port: 80, protocol: 'tcp' })),
      /cannot save the state to .*unwritable\/state\.json: /);
    assert.deepEqual(agent.config.vips, []);
    assert.equal(JSON.stringify(dp.table), table, 'data plane unchanged');
    assert.deepEqual(readdirSync(stateDir).sort(), ['state.json'], 'no state.json.tmp-* left behind');
  } finally {
    await agent.close(false);
  }
});

test('a change that changes nothing is not refused when the state dir cannot be written: there is nothing to save', async () => {
  const stateDir = join(dir, 'unwritable-nochange');
  const agent = await Agent.start({
    store: new StateStore(stateDir), dataplane: new MemoryDataplane(), logger: pino({ level: 'silent' }),
    initial: { dataplane: { ...DEFAULT_DATAPLANE }, vips: [] }, info: { kind: 'xdp', reason: 'test' }, resyncMs: 0,
  });
  try {
    await agent.change((c) => addVip(c, { address: '10.99.100.1', port: 80, protocol: 'tcp' }));
    rmSync(join(stateDir, 'state.json'));
    mkdirSync(join(stateDir, 'state.json'));
    const same = await agent.change((c) => structuredClone(c));
    assert.equal(same.vips.length, 1);
    await assert.rejects(agent.change((c) => addVip(c, { address: '10.99.100.2', port: 80, protocol: 'tcp' })), /cannot save the state/);
  } finally {
    await agent.close(false);
  }
});

test('an l7 section the L7 pool\'s file cannot take is refused as such, and the state keeps the running one', async () => {
  const stateDir = join(dir, 'l7unwritable');
  const pool = new L7Pool({ stateDir, logger: pino({ level: 'silent' }) });
  const agent = await Agent.start({
    store: new StateStore(stateDir), dataplane: new MemoryDataplane(), logger: pino({ level: 'silent' }), onChange: (c) => pool.sync(c.l7),
    initial: { dataplane: { ...DEFAULT_DATAPLANE }, vips: [] }, info: { kind: 'xdp', reason: 'test' },
  });
  try {
    mkdirSync(join(stateDir, 'l7.json')); // a write that fails as a full disk does
    const l7 = { listeners: [{ address: '127.0.0.1', port: 18999 }], routes: [{ pool: 'p' }], pools: { p: { endpoints: ['127.0.0.1:1'] } } };
    await assert.rejects(agent.change((c) => ({ ...c, l7 })), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'EL7');
      assert.match(e.message, /^the change was not made: the L7 pool's config .*l7unwritable\/l7\.json could not be written/);
      return true;
    });
    assert.equal(agent.config.l7, undefined);
    assert.equal(JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')).l7, undefined, 'the saved state is the running one');
    assert.equal(pool.status(), undefined, 'no pool is wanted: status shows none');
  } finally {
    await pool.close();
    await agent.close(false);
  }
});

test('an agent started with a config file without a vips list is refused over a saved state with VIPs, as an invalid file is (exit 2)', async () => {
  const stateDir = join(dir, 'novips');
  mkdirSync(stateDir);
  const saved = JSON.stringify({ vips: [{ address: '10.0.0.1', port: 80 }] }) + '\n';
  writeFileSync(join(stateDir, 'state.json'), saved);
  const cfg = join(dir, 'novips.yaml');
  writeFileSync(cfg, 'dataplane:\n  kind: auto\n');
  const r = await sluice(['agent', '--config', cfg, '--state-dir', stateDir, '--socket', join(dir, 'novips.sock'), '--pin-dir', `/sys/fs/bpf/sluice-unit-novips-${process.pid}`]);
  assert.equal(r.code, 2, `exit code: ${r.stdout}${r.stderr}`);
  assert.match(r.stderr, /vips: is missing, which would remove every VIP \(1 configured\)/);
  assert.equal(readFileSync(join(stateDir, 'state.json'), 'utf8'), saved);
});

test('a state dir that cannot be made is refused naming the directory and the flag, exit 1', async () => {
  const blocker = join(dir, 'a-file');
  writeFileSync(blocker, 'not a directory\n');
  const stateDir = join(blocker, 'state');
  const r = await sluice(['agent', '--state-dir', stateDir, '--socket', join(dir, 'blocked.sock'), '--pin-dir', `/sys/fs/bpf/sluice-unit-blocked-${process.pid}`]);
  assert.equal(r.code, 1, `exit code: ${r.stdout}${r.stderr}`);
  assert.match(r.stderr, new RegExp(`^sluice: cannot make the state dir ${stateDir} \\(--state-dir\\): ENOTDIR`));
});

test('a --pin-dir that is not on a bpffs is a usage error before anything is touched', async () => {
  const stateDir = join(dir, 'pins-elsewhere');
  const r = await sluice(['agent', '--interface', 'sl-nonexist', '--pin-dir', join(dir, 'pins'), '--state-dir', stateDir, '--socket', join(dir, 'pins.sock')]);
  assert.equal(r.code, 2, `exit code: ${r.stdout}${r.stderr}`);
  assert.match(r.stderr, new RegExp(`^sluice: --pin-dir ${join(dir, 'pins')} is not on a bpffs \\(${dir} is not\\); give a directory under /sys/fs/bpf`));
  assert.equal(readdirSync(dir).includes('pins-elsewhere'), false, 'no state dir made');
});

test('an agent started with a config file whose dataplane is no mapping is refused naming it', async () => {
  const cfg = join(dir, 'dp-string.yaml');
  writeFileSync(cfg, 'dataplane: eth0\nvips: []\n');
  const r = await sluice(['agent', '--config', cfg, '--state-dir', join(dir, 'dp-string'), '--socket', join(dir, 'dp-string.sock'), '--pin-dir', `/sys/fs/bpf/sluice-unit-dpstr-${process.pid}`]);
  assert.equal(r.code, 2, `exit code: ${r.stdout}${r.stderr}`);
  assert.equal(r.stderr, 'sluice: dataplane: must be an object\n');
});

test('an empty --socket or --interface is a usage error before anything is touched, not the saved interface or a TCP port', async () => {
  const pinDir = `/sys/fs/bpf/sluice-unit-empty-${process.pid}`;
  for (const flag of ['--socket', '--interface', '--state-dir', '--pin-dir', '--config']) {
    const args = ['agent', '--state-dir', join(dir, 'empty-flags'), '--socket', join(dir, 'empty.sock'), '--pin-dir', pinDir, '--dataplane', 'xdp', `${flag}=`];
    const r = await sluice(args);
    assert.equal(r.code, 2, `${flag}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, new RegExp(`option '${flag} <\\w+>' argument '' is invalid\\. must not be empty`));
    assert.ok(!existsSync(pinDir), `${flag}: nothing pinned`);
  }
  const client = await sluice(['vip', 'list', '--socket', '']);
  assert.equal(client.code, 2, client.stderr);
});
