/**
 * Active HTTP health checks: GET the pool's health path on a fresh connection every interval;
 * `fall` failures in a row take an endpoint out, `rise` successes bring it back. 2xx/3xx pass.
 *
 * In the worker pool the primary runs them, once per endpoint, and tells every worker the
 * verdicts (as Envoy's main thread does); a worker run on its own (tests, startWorker) runs
 * its pools' checks itself.
 */
import { request } from 'node:http';
import { endpointKey, type EndpointSpec, type L7Config, type PoolHealth } from './config.js';

/** What is checked: an endpoint of a worker's pool, or the primary's own record of one. */
export interface CheckTarget {
  readonly key: string;
  readonly spec: EndpointSpec;
  healthy: boolean;
}

export type HealthChange = (t: CheckTarget, healthy: boolean, reason: string) => void;

/** The checks of one pool's endpoints. `changed` must set the target's `healthy`. */
export class HealthChecker {
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(private readonly health: PoolHealth, private readonly targets: readonly CheckTarget[], private readonly changed: HealthChange) {}

  start(): void {
    const h = this.health;
    for (const t of this.targets) {
      let ups = 0, downs = 0;
      const loop = (): void => {
        if (this.stopped) return;
        this.check(t, (ok, reason) => {
          if (this.stopped) return;
          if (ok) { ups++; downs = 0; } else { downs++; ups = 0; }
          if (t.healthy && downs >= h.fall) this.changed(t, false, reason);
          else if (!t.healthy && ups >= h.rise) this.changed(t, true, reason);
          this.schedule(loop, h.intervalMs);
        });
      };
      // Spread the first checks over an interval so M endpoints do not fire at once.
      this.schedule(loop, Math.floor(Math.random() * Math.min(h.intervalMs, 200)));
    }
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  private schedule(fn: () => void, ms: number): void {
    const t = setTimeout(() => { this.timers.delete(t); fn(); }, ms);
    t.unref();
    this.timers.add(t);
  }

  private check(t: CheckTarget, done: (ok: boolean, reason: string) => void): void {
    const h = this.health;
    let finished = false;
    const finish = (ok: boolean, reason: string) => { if (!finished) { finished = true; done(ok, reason); } };
    const req = request({
      host: t.spec.host, port: t.spec.port, path: h.path, method: 'GET', agent: false,
      headers: { host: h.host ?? t.key, 'user-agent': 'sluice-health', connection: 'close' },
    }, (res) => {
      const code = res.statusCode ?? 0;
      finish(code >= 200 && code < 400, `status ${code}`);
      // The status is the verdict: the body is not read. An endpoint that sends one without end
      // (or slowly) would otherwise keep every check's connection open, one more each interval.
      req.destroy();
    });
    // `timeout` bounds the whole wait for the status (connect included), not each silence as a
    // socket timer would: an endpoint that trickles its head would hold the check (and the next
    // ones, which wait for it) forever.
    const deadline = setTimeout(() => { req.destroy(); finish(false, 'timeout'); }, h.timeoutMs);
    deadline.unref();
    req.once('close', () => clearTimeout(deadline));
    req.on('error', (e: NodeJS.ErrnoException) => finish(false, e.code ?? e.message));
    req.end();
  }
}

/** A verdict as the primary sends it to workers: pool name, endpoint key, healthy. */
export type Verdict = [string, string, boolean];

/**
 * The primary's checks of every pool of a config, one per endpoint whatever the number of
 * workers. A reload keeps the verdicts of endpoints that stay in their pool (with checks, as
 * the workers' pools keep theirs); `changed` hears every verdict change.
 */
export class PoolChecks {
  private checkers: HealthChecker[] = [];
  private targets = new Map<string, CheckTarget & { pool: string }>();

  constructor(private readonly changed: (pool: string, key: string, healthy: boolean, reason: string) => void) {}

  /** Check what `config` says, carrying over verdicts; stops the previous checks. */
  use(config: L7Config): void {
    for (const c of this.checkers) c.stop();
    const prev = this.targets;
    this.targets = new Map();
    this.checkers = [];
    for (const [name, spec] of Object.entries(config.pools)) {
      if (!spec.health) continue;
      const ts = spec.endpoints.map((e) => {
        const key = endpointKey(e);
        const t = { pool: name, key, spec: e, healthy: prev.get(`${name} ${key}`)?.healthy ?? true };
        this.targets.set(`${name} ${key}`, t);
        return t;
      });
      const hc = new HealthChecker(spec.health, ts, (t, healthy, reason) => { t.healthy = healthy; this.changed(name, t.key, healthy, reason); });
      hc.start();
      this.checkers.push(hc);
    }
  }

  /** Every verdict that is not `healthy`'s default, for a worker that starts now. */
  verdicts(): Verdict[] {
    return [...this.targets.values()].filter((t) => !t.healthy).map((t) => [t.pool, t.key, false]);
  }

  stop(): void {
    for (const c of this.checkers) c.stop();
    this.checkers = [];
  }
}
