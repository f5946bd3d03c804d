/** Run the real `bin/sluice` and capture what a user sees. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '../../src/bpf/build.js';

export const SLUICE = join(REPO_ROOT, 'bin', 'sluice');

export interface CliResult { code: number; stdout: string; stderr: string }

export function sluice(args: string[], opts: { netns?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  const [cmd, argv] = opts.netns ? ['nsenter', [`--net=/run/netns/${opts.netns}`, process.execPath, SLUICE, ...args]] : [process.execPath, [SLUICE, ...args]];
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, argv as string[], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    p.on('error', reject);
    p.on('close', (code) => { clearTimeout(t); resolve({ code: code ?? -1, stdout, stderr }); });
  });
}
