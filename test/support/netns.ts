/**
 * Network namespaces for tests: names carry a per-run suffix so parallel runs never collide,
 * and every namespace made here is removed on cleanup() and, as a last resort, at exit.
 */
import { execFileSync, type ExecFileSyncOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';

const live = new Set<string>();
process.on('exit', () => { for (const ns of live) try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* gone */ } });
// `node --test` ends a file's process with SIGTERM when a run is cut short, and Node runs no exit
// handlers on a signal: exit instead, so that every test's cleanup above and elsewhere runs.
const SIGNO = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const;
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.once(sig, () => process.exit(128 + SIGNO[sig]));

export function runId(): string {
  return randomBytes(3).toString('hex');
}

export function sh(cmd: string, args: string[], opts: ExecFileSyncOptions = {}): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts }) as string;
}

/** Run a command inside a namespace, network only (keeps the host's /sys/fs/bpf). */
export function inNs(ns: string, cmd: string, args: string[], opts: ExecFileSyncOptions = {}): string {
  return sh('nsenter', [`--net=/run/netns/${ns}`, cmd, ...args], opts);
}

export function addNs(name: string): string {
  sh('ip', ['netns', 'add', name]);
  live.add(name);
  inNs(name, 'ip', ['link', 'set', 'lo', 'up']);
  return name;
}

export function delNs(name: string): void {
  try { sh('ip', ['netns', 'del', name]); } catch { /* already gone */ }
  live.delete(name);
}
