/**
 * Health checks for reals. Each target is probed every interval (never two probes at once for
 * one target); it goes down after `fall` consecutive failures and up after `rise` successes.
 * New targets start up, as in HAProxy, unless the caller knows better (the agent passes the
 * last known state across restarts): a fresh real takes traffic at once instead of waiting
 * `rise` intervals, and a broken one leaves after `fall`. Type `none` is up, always, and is
 * never probed. close() stops timers and aborts probes in flight.
 */
import { EventEmitter } from 'node:events';
import type { HealthSpec } from '../../model/index.js';
import { probe } from './probe.js';

export interface HealthTarget {
  /** Chosen by the caller; change events carry it. */
  id: string;
  /** IPv4 or IPv6 literal. */
  address: string;
  /** The port probed: the caller resolves `spec.port ?? the real's port`. */
  port: number;
  spec: HealthSpec;
  initial?: 'up' | 'down';
}

export interface HealthChange {
  id: string;
  up: boolean;
  reason: string;
}

class Checker {
  up: boolean;
  #ok = 0;
  #fail = 0;
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;
  readonly #abort = new AbortController();
  lastDetail = '';

  constructor(readonly target: HealthTarget, private readonly emit: (c: HealthChange) => void) {
    this.up = target.initial !== 'down';
    if (target.spec.type === 'none') {
      this.lastDetail = 'no check';
      // Not synchronously: set() returns before its caller can hear the event.
      if (!this.up) this.#timer = setTimeout(() => { this.up = true; emit({ id: target.id, up: true, reason: 'no health check' }); }, 0);
      return;
    }
    // Spread first probes over the interval so many reals don't fire at once.
    this.#schedule(Math.floor(Math.random() * Math.min(target.spec.intervalMs, 250)));
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#run(), ms);
    this.#timer.unref?.();
  }

  async #run(): Promise<void> {
    const { address, port, spec } = this.target;
    const started = Date.now();
    const r = await probe(address, port, spec, this.#abort.signal);
    if (this.#stopped) return;
    this.lastDetail = r.detail;
    if (r.ok) { this.#ok++; this.#fail = 0; } else { this.#fail++; this.#ok = 0; }
    if (!this.up && this.#ok >= spec.rise) { this.up = true; this.emit({ id: this.target.id, up: true, reason: `${this.#ok} checks passed (${r.detail})` }); }
    else if (this.up && this.#fail >= spec.fall) { this.up = false; this.emit({ id: this.target.id, up: false, reason: `${this.#fail} checks failed (${r.detail})` }); }
    this.#schedule(Math.max(0, spec.intervalMs - (Date.now() - started)));
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#abort.abort();
  }
}

function sameTarget(a: HealthTarget, b: HealthTarget): boolean {
  return a.address === b.address && a.port === b.port && JSON.stringify(a.spec) === JSON.stringify(b.spec);
}

export class HealthChecker extends EventEmitter<{ change: [HealthChange] }> {
  #checkers = new Map<string, Checker>();

  /** Make the probed set equal `targets`: start new ones, stop removed ones, restart changed ones (keeping their state). */
  set(targets: HealthTarget[]): void {
    const want = new Map(targets.map((t) => [t.id, t]));
    for (const [id, c] of this.#checkers) {
      if (!want.has(id)) { c.stop(); this.#checkers.delete(id); }
    }
    for (const [id, t] of want) {
      const cur = this.#checkers.get(id);
      if (cur && sameTarget(cur.target, t)) continue;
      cur?.stop();
      const initial = cur ? (cur.up ? 'up' : 'down') : t.initial;
      this.#checkers.set(id, new Checker({ ...t, ...(initial ? { initial } : {}) }, (ch) => this.emit('change', ch)));
    }
  }

  state(id: string): 'up' | 'down' | undefined {
    const c = this.#checkers.get(id);
    return c ? (c.up ? 'up' : 'down') : undefined;
  }

  detail(id: string): string | undefined {
    return this.#checkers.get(id)?.lastDetail;
  }

  close(): void {
    for (const c of this.#checkers.values()) c.stop();
    this.#checkers.clear();
  }
}
