/**
 * Prometheus metrics of one worker, per route and per upstream endpoint. Label children are
 * cached: prom-client hashes the label set on every call otherwise, which shows on the hot path.
 * In the worker pool the primary serves the sum over workers (prom-client's AggregatorRegistry).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

function statusClass(status: number): string {
  return status >= 100 && status < 600 ? `${Math.floor(status / 100)}xx` : 'other';
}

export class L7Metrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({ name: 'sluice_l7_requests_total', help: 'Requests answered, by route and status class', labelNames: ['route', 'pool', 'code'], registers: [this.registry] });
  private readonly duration = new Histogram({ name: 'sluice_l7_request_duration_seconds', help: 'Time from request to the end of the response, by route', labelNames: ['route'], buckets: BUCKETS, registers: [this.registry] });
  private readonly upstream = new Counter({ name: 'sluice_l7_upstream_requests_total', help: 'Requests sent to an upstream endpoint, by status class (or error)', labelNames: ['pool', 'endpoint', 'code'], registers: [this.registry] });
  private readonly upstreamTime = new Histogram({ name: 'sluice_l7_upstream_response_seconds', help: 'Time to the upstream response head, by endpoint', labelNames: ['pool', 'endpoint'], buckets: BUCKETS, registers: [this.registry] });
  private readonly healthy = new Gauge({ name: 'sluice_l7_upstream_healthy', help: '1 when the endpoint passes active health checks', labelNames: ['pool', 'endpoint'], registers: [this.registry], aggregator: 'min' });
  private readonly retries = new Counter({ name: 'sluice_l7_retries_total', help: 'Requests retried on another attempt', labelNames: ['pool'], registers: [this.registry] });
  private readonly ejections = new Counter({ name: 'sluice_l7_ejections_total', help: 'Passive ejections of an endpoint after consecutive failures', labelNames: ['pool', 'endpoint'], registers: [this.registry] });
  private readonly clientErrors = new Counter({ name: 'sluice_l7_client_errors_total', help: 'Requests refused before routing (bad framing, limits, timeouts), by status', labelNames: ['code'], registers: [this.registry] });
  private readonly cache = new Map<string, { inc(): void } | { observe(v: number): void }>();

  private child<T>(key: string, make: () => T): T {
    let c = this.cache.get(key) as T | undefined;
    if (!c) { c = make(); this.cache.set(key, c as never); }
    return c;
  }

  request(route: string, pool: string, status: number, seconds: number): void {
    const cls = statusClass(status);
    this.child(`r\0${route}\0${pool}\0${cls}`, () => this.requests.labels(route, pool, cls)).inc();
    this.child(`d\0${route}`, () => this.duration.labels(route)).observe(seconds);
  }

  upstreamResult(pool: string, endpoint: string, code: number | string, seconds?: number): void {
    const cls = typeof code === 'number' ? statusClass(code) : code;
    this.child(`u\0${pool}\0${endpoint}\0${cls}`, () => this.upstream.labels(pool, endpoint, cls)).inc();
    if (seconds !== undefined) this.child(`t\0${pool}\0${endpoint}`, () => this.upstreamTime.labels(pool, endpoint)).observe(seconds);
  }

  setHealthy(pool: string, endpoint: string, up: boolean): void { this.healthy.set({ pool, endpoint }, up ? 1 : 0); }
  retry(pool: string): void { this.retries.inc({ pool }); }
  ejected(pool: string, endpoint: string): void { this.ejections.inc({ pool, endpoint }); }
  clientError(status: number): void { this.clientErrors.inc({ code: String(status) }); }
}
