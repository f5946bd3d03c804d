/**
 * Everything one version of the config makes: pools (with health checkers), the router and
 * the trusted-proxy set. A reload builds a new Runtime and swaps it in; requests already under
 * way finish on the old one. Endpoints that stay in their pool carry over their health state and
 * ejection, and their warm connections too while their weight and connection settings are the same.
 */
import type { Logger } from 'pino';
import type { L7Config } from './config.js';
import type { Endpoint } from './endpoint.js';
import { HealthChecker, type Verdict } from './health.js';
import type { L7Metrics } from './metrics.js';
import { Pool } from './pool.js';
import { Router } from './router.js';
import { TrustedProxies } from './trust.js';

/** Where health verdicts come from (see WorkerOptions). */
export interface RuntimeHealth {
  /** false: the pool's primary checks and sends verdicts (Worker.setHealth); true by default. */
  checks?: boolean;
  /** Verdicts to start from: what the primary knows when a worker starts. */
  health?: Verdict[];
}

export class Runtime {
  readonly pools = new Map<string, Pool>();
  readonly router: Router<Pool>;
  readonly trusted: TrustedProxies;
  private readonly checkers: HealthChecker[] = [];

  constructor(readonly config: L7Config, metrics: L7Metrics, log: Logger, previous?: Runtime, health: RuntimeHealth = {}) {
    const events = {
      ejected: (pool: Pool, ep: Endpoint, ms: number) => {
        metrics.ejected(pool.name, ep.key);
        log.warn({ pool: pool.name, endpoint: ep.key, ms }, 'endpoint ejected after consecutive failures');
      },
      changed: (pool: Pool, ep: Endpoint, healthy: boolean, reason: string) => {
        metrics.setHealthy(pool.name, ep.key, healthy);
        log.warn({ pool: pool.name, endpoint: ep.key, healthy, reason }, healthy ? 'endpoint healthy' : 'endpoint unhealthy');
      },
    };
    for (const [name, spec] of Object.entries(config.pools)) {
      const old = previous?.pools.get(name);
      const pool = new Pool(spec, events, old ? (key) => old.endpoints.find((e) => e.key === key) : undefined);
      this.pools.set(name, pool);
      for (const ep of pool.endpoints) metrics.setHealthy(name, ep.key, ep.healthy);
      if (spec.health && health.checks !== false) {
        const hc = new HealthChecker(spec.health, pool.endpoints, (ep, up, reason) => {
          pool.setHealthy(ep as Endpoint, up);
          events.changed(pool, ep as Endpoint, up, reason);
        });
        hc.start();
        this.checkers.push(hc);
      }
    }
    // A replacement worker starts from what the primary knows, not all healthy (a first start has no verdicts).
    if (!previous) for (const [pool, key, up] of health.health ?? []) this.setHealth(pool, key, up, metrics);
    // Endpoints (and pools) the reload removed would report their last health for good: a removed
    // endpoint that was down would keep an alert firing.
    if (previous) for (const [name, old] of previous.pools) {
      const now = this.pools.get(name);
      for (const ep of old.endpoints) if (!now?.endpoints.some((e) => e.key === ep.key)) metrics.forgetHealth(name, ep.key);
    }
    this.router = new Router(config.routes, (name) => this.pools.get(name)!);
    this.trusted = new TrustedProxies(config.trustedProxies);
  }

  /** A verdict from the pool's primary (it runs the checks); one on an endpoint this config lacks is dropped. */
  setHealth(poolName: string, key: string, healthy: boolean, metrics: L7Metrics): void {
    const pool = this.pools.get(poolName);
    const ep = pool?.spec.health ? pool.endpoints.find((e) => e.key === key) : undefined;
    if (!pool || !ep) return;
    pool.setHealthy(ep, healthy);
    metrics.setHealthy(poolName, key, healthy);
  }

  /** Stop health checks and close connections of endpoints that `next` does not carry over. */
  retire(next?: Runtime): void {
    for (const c of this.checkers) c.stop();
    const keep = new Set<Endpoint>();
    if (next) for (const p of next.pools.values()) for (const e of p.endpoints) keep.add(e);
    for (const p of this.pools.values()) p.retire(keep);
  }
}
