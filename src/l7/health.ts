/**
 * Active HTTP health checks: GET the pool's health path on a fresh connection every interval;
 * `fall` failures in a row take an endpoint out, `rise` successes bring it back. 2xx/3xx pass.
 */
import { request } from 'node:http';
import type { Endpoint } from './endpoint.js';
import type { Pool } from './pool.js';

export interface HealthEvents {
  changed(pool: Pool, ep: Endpoint, healthy: boolean, reason: string): void;
}

export class HealthChecker {
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(private readonly pool: Pool, private readonly events: HealthEvents) {}

  start(): void {
    const h = this.pool.spec.health;
    if (!h) return;
    for (const ep of this.pool.endpoints) {
      let ups = 0, downs = 0;
      const loop = (): void => {
        if (this.stopped) return;
        this.check(ep, (ok, reason) => {
          if (this.stopped) return;
          if (ok) { ups++; downs = 0; } else { downs++; ups = 0; }
          if (ep.healthy && downs >= h.fall) { this.pool.setHealthy(ep, false); this.events.changed(this.pool, ep, false, reason); }
          else if (!ep.healthy && ups >= h.rise) { this.pool.setHealthy(ep, true); this.events.changed(this.pool, ep, true, reason); }
          this.schedule(loop, h.intervalMs);
        });
      };
      // Spread the first checks over an interval so N workers × M endpoints do not fire at once.
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

  private check(ep: Endpoint, done: (ok: boolean, reason: string) => void): void {
    const h = this.pool.spec.health!;
    let finished = false;
    const finish = (ok: boolean, reason: string) => { if (!finished) { finished = true; done(ok, reason); } };
    const req = request({
      host: ep.spec.host, port: ep.spec.port, path: h.path, method: 'GET', agent: false, timeout: h.timeoutMs,
      headers: { host: h.host ?? ep.key, 'user-agent': 'sluice-health', connection: 'close' },
    }, (res) => {
      res.resume();
      const code = res.statusCode ?? 0;
      finish(code >= 200 && code < 400, `status ${code}`);
    });
    req.on('timeout', () => { req.destroy(); finish(false, 'timeout'); });
    req.on('error', (e: NodeJS.ErrnoException) => finish(false, e.code ?? e.message));
    req.end();
  }
}
