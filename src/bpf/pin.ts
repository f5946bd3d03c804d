import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';

export const BPFFS = '/sys/fs/bpf';

/**
 * Make sure bpffs is mounted at /sys/fs/bpf. `ip netns exec` gives a process a fresh /sys
 * without it; mounting it there is what every BPF tool does.
 */
export function ensureBpffs(root = BPFFS): void {
  const mounts = readFileSync('/proc/self/mounts', 'utf8');
  if (mounts.split('\n').some((l) => l.split(' ')[1] === root && l.split(' ')[2] === 'bpf')) return;
  mkdirSync(root, { recursive: true });
  execFileSync('mount', ['-t', 'bpf', 'bpf', root]);
}

/** Create a pin directory (bpffs allows plain mkdir). */
export function pinDir(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Remove a pin (unpinning is unlink on bpffs). Missing pins are fine. */
export function unpin(path: string): void {
  rmSync(path, { force: true });
}

/** Remove every pin under a directory, then the directory. */
export function unpinAll(dir: string): void {
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir)) rmSync(join(dir, f), { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
}
