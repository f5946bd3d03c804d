/**
 * One agent per pin dir, however the directory is written on the command line: the lock must
 * not be two locks for `/sys/fs/bpf/x` and `/sys/fs/bpf/x/`.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentLock } from '../../src/agent/lock.js';

const LOCK_JS = fileURLToPath(new URL('../../src/agent/lock.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'sluice-lock-'));
const holders: ChildProcess[] = [];
// SIGTERM: the holder releases its lock, so no stale lock file is left under /run/sluice/locks.
after(async () => {
  await Promise.all(holders.map((h) => new Promise((r) => { if (h.exitCode !== null) return r(null); h.once('exit', r); h.kill('SIGTERM'); })));
  rmSync(dir, { recursive: true, force: true });
});

/** Another process (named like sluice, as the lock's owner check wants) holds the lock for these dirs. */
async function holdLock(stateDir: string, pinDir: string): Promise<number> {
  const script = `const { AgentLock } = await import(${JSON.stringify(LOCK_JS)}); const lock = AgentLock.acquire(${JSON.stringify({ stateDir, pinDir })}); process.on('SIGTERM', () => { lock.release(); process.exit(0); }); console.log('held'); setTimeout(() => {}, 60000);`;
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
