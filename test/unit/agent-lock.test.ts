/**
 * One agent per pin dir, however the directory is written on the command line: the lock must
 * not be two locks for `/sys/fs/bpf/x` and `/sys/fs/bpf/x/`. And a lock is never seen without
 * its owner: an empty lock file reads as a dead owner, and a starting agent would take it over.
 * Nor do two agents share one API socket: the second would attach XDP before finding it taken.
 * Nor does a reused pid hold a dead agent's lock.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentLock } from '../../src/agent/lock.js';

const LOCK_JS = fileURLToPath(new URL('../../src/agent/lock.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'sluice-lock-'));
const holders: ChildProcess[] = [];
// SIGTERM: the holder releases its lock, so no stale lock file is left under /run/sluice/locks.
after(async () => {
  await Promise.all(holders.map((h) => new Promise((r) => { if (h.exitCode !== null || h.signalCode !== null) return r(null); h.once('exit', r); h.kill('SIGTERM'); })));
  rmSync(dir, { recursive: true, force: true });
});

/** Another process (named like sluice, as the lock's owner check wants) holds the lock for these dirs. */
async function holdLock(stateDir: string, pinDir: string, socket?: string): Promise<number> {
  const script = `const { AgentLock } = await import(${JSON.stringify(LOCK_JS)}); const lock = AgentLock.acquire(${JSON.stringify({ stateDir, pinDir, socket })}); process.on('SIGTERM', () => { lock.release(); process.exit(0); }); console.log('held'); setTimeout(() => {}, 60000);`;
  const p = spawn(process.execPath, ['--input-type=module', '-e', script, 'sluice-lock-holder'], { stdio: ['ignore', 'pipe', 'inherit'] });
  holders.push(p);
  await new Promise<void>((resolve, reject) => {
    p.stdout!.on('data', (d) => { if (String(d).includes('held')) resolve(); });
    p.once('exit', (code) => reject(new Error(`lock holder exited with ${code}`)));
  });
  return p.pid!;
}

test('the pin dir written with a trailing slash or as a relative path is the same lock, refused while held', async () => {
  const pinDir = `/sys/fs/bpf/sluice-unit-lock-${process.pid}`;
  const pid = await holdLock(join(dir, 'state1'), pinDir);
  const cwd = process.cwd();
  process.chdir('/sys/fs/bpf');
  try {
    for (const spelled of [`${pinDir}/`, `/sys/fs/bpf//sluice-unit-lock-${process.pid}`, `sluice-unit-lock-${process.pid}`]) {
      assert.throws(() => AgentLock.acquire({ stateDir: join(dir, 'state2'), pinDir: spelled }),
        (e: Error & { code?: string }) => e.code === 'EBUSY' && e.message.includes(`pid ${pid}`), spelled);
    }
  } finally {
    process.chdir(cwd);
  }
});

test('a lock file is never seen without its owner\'s pid, even while it is being taken', async () => {
  const o = { stateDir: join(dir, 'cycled-state'), pinDir: join(dir, 'cycled-pins') };
  // Another process takes and releases the lock as fast as it can (bounded in count and time).
  const script = `const { AgentLock } = await import(${JSON.stringify(LOCK_JS)}); const t = Date.now(); for (let n = 0; n < 3000 && Date.now() - t < 5000; n++) AgentLock.acquire(${JSON.stringify(o)}).release();`;
  const p = spawn(process.execPath, ['--input-type=module', '-e', script, 'sluice-lock-cycler'], { stdio: 'inherit' });
  holders.push(p);
  let running = true;
  p.once('exit', () => { running = false; });
  let seen = 0;
  const unowned: string[] = [];
  while (running) {
    try {
      const text = readFileSync(join(o.stateDir, 'agent.lock'), 'utf8');
      seen++;
      if (!(Number(text.split(' ')[0]) > 0)) unowned.push(JSON.stringify(text));
    } catch { /* released at that moment */ }
    await new Promise((r) => setImmediate(r));
  }
  assert.equal(p.exitCode, 0, 'the cycling process took and released the lock every time');
  assert.ok(seen > 0, 'the lock file was read while held');
  assert.deepEqual(unowned.slice(0, 3), [], `${unowned.length} of ${seen} reads found no pid`);
});

test('a second agent on the same API socket is refused by the lock, whatever its state and pin dirs', async () => {
  const socket = join(dir, 'run', 'agent.sock');
  const pid = await holdLock(join(dir, 'state-a'), join(dir, 'pins-a'), socket);
  for (const spelled of [socket, join(dir, 'run', '.', 'agent.sock'), join(dir, 'run//agent.sock')]) {
    assert.throws(() => AgentLock.acquire({ stateDir: join(dir, 'state-b'), pinDir: join(dir, 'pins-b'), socket: spelled }),
      (e: Error & { code?: string }) => e.code === 'EBUSY' && e.message.includes(`pid ${pid}`) && e.message.includes('API socket'), spelled);
  }
  // Refused whole: the state and pin dir locks it took on the way are released again.
  AgentLock.acquire({ stateDir: join(dir, 'state-b'), pinDir: join(dir, 'pins-b') }).release();
});

test('a lock whose pid has since gone to another process, even one named sluice, is taken over', async () => {
  const o = { stateDir: join(dir, 'reused-state'), pinDir: join(dir, 'reused-pins') };
  const holder = await holdLock(o.stateDir, o.pinDir);
  const lockFile = join(o.stateDir, 'agent.lock');
  const held = readFileSync(lockFile, 'utf8');
  const h = holders.find((p) => p.pid === holder)!;
  await new Promise((r) => { h.once('exit', r); h.kill('SIGKILL'); });
  // As after a reboot: the dead agent's pid now names another live process (named like sluice too).
  const impostor = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)', 'sluice-pid-reuser'], { stdio: 'ignore' });
  holders.push(impostor);
  await new Promise((r) => impostor.once('spawn', r));
  writeFileSync(lockFile, held.replace(String(holder), String(impostor.pid)));
  const lock = AgentLock.acquire(o);
  assert.equal(readFileSync(lockFile, 'utf8').split(' ')[0], String(process.pid), 'the lock is now ours');
  lock.release();
});
