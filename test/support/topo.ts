/**
 * The DESIGN §8 topology for tests, made by scripts/topo (one definition for the demo and the
 * tests) with a per-run id, and removed by down() or, as a last resort, at exit.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '../../src/bpf/build.js';
import { runId } from './netns.js';

const TOPO = join(REPO_ROOT, 'scripts', 'topo');
const live = new Set<string>();
process.on('exit', () => { for (const id of live) try { execFileSync(TOPO, ['down', id], { stdio: 'ignore' }); } catch { /* gone */ } });

export const ADDR = {
  client: { v4: '10.99.0.2', v6: 'fd99::2' },
  lb: { v4: '10.99.0.1', v6: 'fd99::1' },
  real1: { v4: '10.99.0.11', v6: 'fd99::11' },
  real2: { v4: '10.99.0.12', v6: 'fd99::12' },
  real3: { v4: '10.99.0.13', v6: 'fd99::13' },
} as const;
export type Host = keyof typeof ADDR;
export const REALS = ['real1', 'real2', 'real3'] as const;

export class Topo {
  readonly id: string;
  readonly #procs: ChildProcess[] = [];

  private constructor(id: string) { this.id = id; }

  static up(): Topo {
    const id = `t${runId()}`.slice(0, 8);
    live.add(id);
    execFileSync(TOPO, ['up', id], { stdio: ['ignore', 'ignore', 'pipe'] });
    return new Topo(id);
  }

  ns(host: Host | 'sw'): string {
    return `sl-${host}-${this.id}`;
  }

  /** Run a command in a host's network namespace and return stdout. */
  exec(host: Host | 'sw', cmd: string, args: string[], timeoutMs = 60_000): string {
    return execFileSync('nsenter', [`--net=/run/netns/${this.ns(host)}`, cmd, ...args], { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** Start a long-running process in a namespace; killed by down(). */
  spawn(host: Host, cmd: string, args: string[]): ChildProcess {
    const p = spawn('nsenter', [`--net=/run/netns/${this.ns(host)}`, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#procs.push(p);
    return p;
  }

  /** whoami servers (scripts/lib/whoami-server.mjs) on the reals: TCP/UDP `port` answers the real's name. */
  startServers(port = 80, echoPort = 9000, hosts: readonly Host[] = REALS): Map<Host, ChildProcess> {
    const m = new Map<Host, ChildProcess>();
    for (const h of hosts) m.set(h, this.spawn(h, process.execPath, [join(REPO_ROOT, 'scripts', 'lib', 'whoami-server.mjs'), h, String(port), String(echoPort)]));
    return m;
  }

  /** `scripts/lib/tally.mjs` from the client: N sequential connections, counts per answer. */
  tally(host: string, port: number, n: number): Record<string, number> {
    return JSON.parse(this.exec('client', process.execPath, [join(REPO_ROOT, 'scripts', 'lib', 'tally.mjs'), host, String(port), String(n)], 120_000));
  }

  down(): void {
    for (const p of this.#procs) p.kill('SIGKILL');
    execFileSync(TOPO, ['down', this.id], { stdio: 'ignore' });
    live.delete(this.id);
  }
}
