/** A real `sluice agent` process in a namespace of a Topo, with its own socket, state and pins. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { SLUICE, sluice, type CliResult } from './cli.js';
import type { Topo } from './topo.js';

const running = new Set<AgentProcess>();
// A test process that dies early must not leave an agent forwarding with its pins behind.
process.on('exit', () => {
  for (const a of running) {
    a.proc?.kill('SIGKILL');
    try { execFileSync(process.execPath, [SLUICE, 'agent', '--cleanup', '--pin-dir', a.pinDir, '--state-dir', a.stateDir], { stdio: 'ignore', timeout: 10_000 }); } catch { /* best effort */ }
    rmSync(a.dir, { recursive: true, force: true });
  }
});

export class AgentProcess {
  readonly dir: string;
  readonly socket: string;
  readonly stateDir: string;
  readonly pinDir: string;
  proc: ChildProcess | null = null;
  log = '';

  constructor(readonly topo: Topo, readonly extraArgs: string[] = []) {
    this.dir = mkdtempSync(join(tmpdir(), 'sluice-e2e-'));
    this.socket = join(this.dir, 'agent.sock');
    this.stateDir = join(this.dir, 'state');
    this.pinDir = `/sys/fs/bpf/sluice-e2e-${topo.id}`;
    running.add(this);
  }

  /** Start (or restart) the agent and wait until its API answers; `onSpawn` sees the process at once (to signal it while it starts). */
  async start(args: string[] = [], onSpawn?: (p: ChildProcess) => void): Promise<void> {
    this.proc = spawn('nsenter', [`--net=/run/netns/${this.topo.ns('lb')}`, process.execPath, SLUICE, 'agent',
      '--interface', 'eth0', '--socket', this.socket, '--state-dir', this.stateDir, '--pin-dir', this.pinDir,
      ...this.extraArgs, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const p = this.proc;
    onSpawn?.(p);
    p.stdout!.on('data', (d) => (this.log += d));
    p.stderr!.on('data', (d) => (this.log += d));
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      // signalCode too: an agent killed while it starts has no exit code, and would be waited for 30 s.
      if (p.exitCode !== null || p.signalCode !== null) throw new Error(`agent exited with ${p.exitCode ?? p.signalCode}:\n${this.log}`);
      if (existsSync(this.socket) && (await answers(this.socket))) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`agent did not answer within 30 s:\n${this.log}`);
  }

  cli(args: string[]): Promise<CliResult> {
    return sluice([...args, '--socket', this.socket]);
  }

  /** Run a CLI command that must succeed; returns stdout. */
  async ok(args: string[]): Promise<string> {
    const r = await this.cli(args);
    if (r.code !== 0) throw new Error(`sluice ${args.join(' ')} → ${r.code}: ${r.stderr}`);
    return r.stdout;
  }

  async json<T = any>(args: string[]): Promise<T> {
    return JSON.parse(await this.ok([...args, '--json'])) as T;
  }

  kill(signal: NodeJS.Signals): Promise<void> {
    const p = this.proc;
    // Gone already (an exit code, or killed by a signal): its 'exit' came and went.
    if (!p || p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => { p.once('exit', () => resolve()); p.kill(signal); });
  }

  /** Stop the agent and remove everything it left: pins, attachment, state. */
  async destroy(): Promise<void> {
    await this.kill('SIGKILL');
    await sluice(['agent', '--cleanup', '--pin-dir', this.pinDir, '--state-dir', this.stateDir]);
    rmSync(this.pinDir, { recursive: true, force: true });
    rmSync(this.dir, { recursive: true, force: true });
    running.delete(this);
  }
}

function answers(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(socket);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}
