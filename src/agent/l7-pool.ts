/**
 * The L7 pool that the agent runs while its desired state has an `l7:` section (DESIGN §2:
 * `sluice l7`, "also started by the agent when configured").
 *
 * The pool is a `sluice l7` child on a copy of that section, written to the state dir; a change
 * (SIGHUP of the agent's config file, `apply -f`) reaches it as a SIGHUP, just as systemd's
 * ExecReload would send it, so the pool reloads without dropping a request. The child lives
 * and dies with the agent: the agent's SIGTERM drains it, and if the agent is killed the pool
 * sees its IPC channel close and drains itself (see l7/index.ts), so the next agent does not
 * find the ports taken. A pool that dies is started again, backing off.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { validateL7 } from '../l7/config.js';
import { L7_READY } from '../l7/index.js';
import { SluiceError } from '../model/errors.js';
import { writeAtomic } from './store.js';

const L7_FILE = 'l7.json';
const SLUICE_BIN = fileURLToPath(new URL('../../../bin/sluice', import.meta.url));
/** What a draining pool gets on top of its own drain grace before it is killed (its workers get 5 s). */
const STOP_MARGIN_MS = 10_000;

export interface L7PoolOptions {
  stateDir: string;
  logger: Logger;
  /** The workers' pino level (SLUICE_LOG_LEVEL). */
  logLevel?: string;
}

export interface L7PoolStatus {
  running: boolean;
  pid?: number;
  config: string;
  restarts: number;
}

export class L7Pool {
  readonly file: string;
  #child: ChildProcess | null = null;
  #exited: Promise<void> = Promise.resolve();
  #written: string | undefined;
  #wanted = false;
  #closed = false;
  #ready = false;
  #reloadPending = false;
  #drainMs = 30_000;
  #restarts = 0;
  #restartTimer: NodeJS.Timeout | undefined;

  constructor(private readonly o: L7PoolOptions) {
    this.file = join(o.stateDir, L7_FILE);
  }

  /**
   * Make the pool follow `l7` (the desired state's section, already validated): started when it
   * appears, reloaded when it changes, drained and stopped when it goes.
   */
  async sync(l7: unknown): Promise<void> {
    if (this.#closed) return;
    if (l7 === undefined) {
      this.#wanted = false;
      clearTimeout(this.#restartTimer);
      if (this.#child) { this.o.logger.info('the config has no l7 section any more: stopping the l7 pool'); await this.#stopChild(); }
      return;
    }
    const drainMs = validateL7(l7).timeouts.drainMs;
    const text = `${JSON.stringify({ l7 }, null, 2)}\n`;
    const changed = text !== this.#written;
    if (changed) {
      try { writeAtomic(this.file, text); } catch (e) {
        throw new SluiceError('EL7', `the change was not made: the L7 pool's config ${this.file} could not be written (${(e as Error).message}); the pool keeps the running l7 section`);
      }
      this.#written = text;
    }
    this.#wanted = true;
    this.#drainMs = drainMs;
    if (this.#child) {
      if (!changed) return;
      this.o.logger.info({ pid: this.#child.pid }, 'l7 section changed: reloading the l7 pool');
      this.#reloadPending = true;
      this.#reloadIfReady();
    } else if (!this.#restartTimer) this.#start();
  }

  status(): L7PoolStatus | undefined {
    if (!this.#wanted) return undefined;
    return { running: this.#child !== null, ...(this.#child?.pid ? { pid: this.#child.pid } : {}), config: this.file, restarts: this.#restarts };
  }

  /** Drain the pool (it finishes in-flight requests) and wait for it to exit. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#restartTimer);
    await this.#stopChild();
  }

  #start(): void {
    const born = Date.now();
    // The IPC channel tells us when the pool is ready, and tells the pool when we are gone.
    const child = spawn(process.execPath, [SLUICE_BIN, 'l7', '--config', this.file], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, SLUICE_L7_PARENT: String(process.pid), ...(this.o.logLevel ? { SLUICE_LOG_LEVEL: this.o.logLevel } : {}) },
    });
    this.#child = child;
    this.#ready = false;
    this.#reloadPending = false;
    child.channel?.unref();
    child.on('message', (m: { type?: string }) => {
      if (m?.type !== L7_READY || this.#child !== child) return;
      this.#ready = true;
      this.o.logger.info({ pid: child.pid, config: this.file }, 'l7 pool ready');
      this.#reloadIfReady();
    });
    this.#exited = new Promise<void>((resolve) => {
      child.once('error', (e) => this.o.logger.error({ err: e.message }, 'l7 pool could not be started'));
      child.once('close', (code, signal) => {
        if (this.#child === child) this.#child = null;
        resolve();
        if (this.#closed || !this.#wanted) return;
        // Back off when the pool dies young over and over (a port taken, a certificate gone).
        if (Date.now() - born > 60_000) this.#restarts = 0;
        const delay = Math.min(30_000, 1000 * 2 ** Math.min(this.#restarts++, 5));
        this.o.logger.error({ code, signal, restartInMs: delay }, 'l7 pool exited; starting it again');
        this.#restartTimer = setTimeout(() => { this.#restartTimer = undefined; if (!this.#closed && this.#wanted && !this.#child) this.#start(); }, delay);
        this.#restartTimer.unref();
      });
    });
  }

  /** A change made while the pool starts waits until it can take a SIGHUP (it started on the old file). */
  #reloadIfReady(): void {
    if (!this.#child || !this.#ready || !this.#reloadPending) return;
    this.#reloadPending = false;
    this.#child.kill('SIGHUP');
  }

  async #stopChild(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    const kill = setTimeout(() => child.kill('SIGKILL'), this.#drainMs + STOP_MARGIN_MS);
    child.kill('SIGTERM');
    await this.#exited;
    clearTimeout(kill);
  }
}
