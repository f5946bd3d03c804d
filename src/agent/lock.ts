/**
 * One agent per state dir, per pin dir and per API socket. A second agent would adopt the first
 * one's pinned maps and rewrite them with its own state before it noticed anything; one on the
 * same socket but other dirs would attach its program to its interface and only then find the
 * socket taken, leaving XDP attached with nobody to manage it. So it must stop before it opens
 * the data plane. Lock files name their owner (pid, boot, start time); a lock whose owner is
 * gone (a crash, SIGKILL, a reboot) is taken over, which is what a restart after a crash needs.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, linkSync, mkdirSync, openSync, readFileSync, realpathSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { SluiceError } from '../model/index.js';

/** Where the locks of pin dirs and API sockets live, each named by a hash of its path (lockPathOf). */
export const PIN_LOCK_DIR = '/run/sluice/locks';

/**
 * Who a lock file names. Since the pid alone names another process once it is reused (after a
 * reboot, pids come round again, and the state dir's lock outlives one), the file also holds the
 * boot id and the owner's start time: the three together name one process.
 */
interface Owner { pid: number; boot?: string; start?: string }

function parseOwner(text: string): Owner {
  const [pid, boot, start] = text.trim().split(/\s+/);
  return { pid: Number(pid), boot, start };
}

function bootId(): string {
  return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
}

/** Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot. */
function startTime(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
}

function ownerLine(): string {
  return `${process.pid} ${bootId()} ${startTime(process.pid)}\n`;
}

function ownerAlive(o: Owner): boolean {
  const { pid } = o;
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    if (o.boot !== undefined && o.start !== undefined) return o.boot === bootId() && o.start === startTime(pid);
    // A lock an older sluice wrote (its pid only): a recycled pid belongs to some other program, so only a sluice process holds it.
    return /sluice/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * Create `path` holding our pid, or fail with EEXIST. The pid is written to a file of our own and
 * linked into place: a lock created empty and written after would, for a moment, read as no
 * owner, and an agent starting then would take it over from a live one.
 */
function createHeld(path: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try { writeSync(fd, ownerLine()); } finally { closeSync(fd); }
  try { linkSync(tmp, path); } finally { unlinkSync(tmp); }
}

function take(path: string, what: string): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      createHeld(path);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new SluiceError((e as NodeJS.ErrnoException).code ?? 'EIO', `cannot lock ${what} (${path}): ${(e as Error).message}`);
    }
    let owner: Owner = { pid: NaN };
    try { owner = parseOwner(readFileSync(path, 'utf8')); } catch { /* vanished: try again */ }
    if (ownerAlive(owner)) throw new SluiceError('EBUSY', `another agent (pid ${owner.pid}) uses ${what}; stop it first (lock ${path})`);
    try { unlinkSync(path); } catch { /* its owner removed it */ }
  }
  throw new SluiceError('EBUSY', `could not take the lock ${path} for ${what}`);
}

/**
 * One name per path, however it was written: the pin dir's and the socket's locks are named by a
 * hash of their paths, and `/sys/fs/bpf/sluice/`, `/sys/fs/bpf//sluice` or a relative path must
 * not make a second lock for the same pins. Symlinks in the part that exists are resolved too.
 */
export function canonicalPath(path: string): string {
  const abs = resolve(path);
  if (existsSync(abs)) return realpathSync(abs);
  const parent = dirname(abs);
  return parent === abs ? abs : join(canonicalPath(parent), basename(abs));
}

/**
 * The lock file of a pin dir or an API socket, under PIN_LOCK_DIR: bpffs holds only BPF objects,
 * and beside the socket would be in a directory any agent may share.
 */
export function lockPathOf(kind: 'pins' | 'socket', path: string): string {
  return join(PIN_LOCK_DIR, `${kind}-${createHash('sha256').update(canonicalPath(path)).digest('hex').slice(0, 16)}.lock`);
}

export class AgentLock {
  private constructor(private readonly paths: string[]) {}

  /**
   * `createStateDir: false` (for `--cleanup`, which must not leave a state dir behind where there
   * was none) skips the state dir's lock when the directory does not exist: no agent uses it.
   */
  static acquire(o: { stateDir: string; pinDir: string; socket?: string; createStateDir?: boolean }): AgentLock {
    const withState = o.createStateDir !== false || existsSync(o.stateDir);
    if (withState) mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
    mkdirSync(PIN_LOCK_DIR, { recursive: true, mode: 0o700 });
    const pinLock = lockPathOf('pins', o.pinDir);
    const held: string[] = [];
    try {
      if (withState) {
        take(join(o.stateDir, 'agent.lock'), `the state dir ${o.stateDir}`);
        held.push(join(o.stateDir, 'agent.lock'));
      }
      take(pinLock, `the pin dir ${o.pinDir}`);
      held.push(pinLock);
      if (o.socket !== undefined) {
        const socketLock = lockPathOf('socket', o.socket);
        take(socketLock, `the API socket ${o.socket}`);
        held.push(socketLock);
      }
    } catch (e) {
      new AgentLock(held).release();
      throw e;
    }
    return new AgentLock(held);
  }

  release(): void {
    for (const p of this.paths) {
      try { if (parseOwner(readFileSync(p, 'utf8')).pid === process.pid) unlinkSync(p); } catch { /* gone already */ }
    }
  }
}
