/**
 * Prometheus metrics of one worker, per route and per upstream endpoint. Label children are
 * cached: prom-client hashes the label set on every call otherwise, which shows on the hot path.
 * In the worker pool the primary serves the sum over workers (prom-client's AggregatorRegistry).
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

function statusClass(status: number): string {
  return status >= 100 && status < 600 ? `${Math.floor(status / 100)}xx` : 'other';
}

/** The label children of one route or endpoint: counters by status class, and its histogram. */
class Stats {
  private readonly byClass = new Map<string, { inc(): void }>();
  private hist?: { observe(v: number): void };
  constructor(private readonly counter: Counter, private readonly histogram: Histogram, private readonly labels: string[]) {}
  /** `histLabels` 1: the histogram has only the first label (per route); 0: all of them. */
  record(cls: string, seconds: number | undefined, histLabels: 0 | 1): void {
    let c = this.byClass.get(cls);
    if (!c) { c = this.counter.labels(...this.labels, cls); this.byClass.set(cls, c); }
    c.inc();
    if (seconds === undefined) return;
    this.hist ??= this.histogram.labels(...(histLabels ? this.labels.slice(0, 1) : this.labels));
    this.hist.observe(seconds);
  }
}

export class L7Metrics {
  readonly registry = new Registry();
  private readonly requests: Counter = new Counter({ name: 'sluice_l7_requests_total', help: 'Requests answered, by route and status class', labelNames: ['route', 'pool', 'code'], registers: [this.registry] });
  private readonly duration = new Histogram({ name: 'sluice_l7_request_duration_seconds', help: 'Time from request to the end of the response, by route', labelNames: ['route'], buckets: BUCKETS, registers: [this.registry] });
  private readonly upstream = new Counter({ name: 'sluice_l7_upstream_requests_total', help: 'Requests sent to an upstream endpoint, by status class (or error)', labelNames: ['pool', 'endpoint', 'code'], registers: [this.registry] });
  private readonly upstreamTime = new Histogram({ name: 'sluice_l7_upstream_response_seconds', help: 'Time to the upstream response head, by endpoint', labelNames: ['pool', 'endpoint'], buckets: BUCKETS, registers: [this.registry] });
  private readonly healthy = new Gauge({ name: 'sluice_l7_upstream_healthy', help: '1 when the endpoint passes active health checks', labelNames: ['pool', 'endpoint'], registers: [this.registry], aggregator: 'min' });
  private readonly retries = new Counter({ name: 'sluice_l7_retries_total', help: 'Requests retried on another attempt', labelNames: ['pool'], registers: [this.registry] });
  private readonly ejections = new Counter({ name: 'sluice_l7_ejections_total', help: 'Passive ejections of an endpoint after consecutive failures', labelNames: ['pool', 'endpoint'], registers: [this.registry] });
  private readonly clientErrors = new Counter({ name: 'sluice_l7_client_errors_total', help: 'Requests refused before routing (bad framing, limits, timeouts), by status', labelNames: ['code'], registers: [this.registry] });
  /** Children per route / endpoint object (a reload makes new objects, so stale ones go with them). */
  private readonly stats = new WeakMap<object, Stats>();
  private readonly unrouted = {};

  private statsOf(key: object, counter: Counter, hist: Histogram, labels: string[]): Stats {
    let st = this.stats.get(key);
    if (!st) { st = new Stats(counter, hist, labels); this.stats.set(key, st); }
    return st;
  }

  /** `route` is the route object (undefined: refused before routing). */
  request(route: object | undefined, name: string, pool: string, status: number, seconds: number): void {
    this.statsOf(route ?? this.unrouted, this.requests, this.duration, [name, pool]).record(statusClass(status), seconds, 1);
  }

  upstreamResult(endpoint: object, pool: string, name: string, code: number | string, seconds?: number): void {
    this.statsOf(endpoint, this.upstream, this.upstreamTime, [pool, name]).record(typeof code === 'number' ? statusClass(code) : code, seconds, 0);
  }

  setHealthy(pool: string, endpoint: string, up: boolean): void { this.healthy.set({ pool, endpoint }, up ? 1 : 0); }
  /** An endpoint no longer in its pool (after a reload) has no health to report: its gauge goes. */
  forgetHealth(pool: string, endpoint: string): void { this.healthy.remove({ pool, endpoint }); }
  retry(pool: string): void { this.retries.inc({ pool }); }
  ejected(pool: string, endpoint: string): void { this.ejections.inc({ pool, endpoint }); }
  clientError(status: number): void { this.clientErrors.inc({ code: String(status) }); }
}

/**
 * A metrics endpoint at `at`, answering every request with `render()` (Prometheus text), already
 * listening when it resolves: a worker's own registry, or in the pool the primary's sum.
 */
export function bindMetricsServer(at: { address: string; port: number }, render: () => Promise<string>, contentType: string): Promise<Server> {
  const server = createServer((req, res) => {
    render().then((text) => { res.writeHead(200, { 'content-type': contentType }); res.end(text); },
      (e: Error) => { res.writeHead(500); res.end(`${e.message}\n`); });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.address, () => { server.off('error', reject); resolve(server); });
  });
}
