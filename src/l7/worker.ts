/**
 * One L7 worker: its listeners, the current Runtime, metrics and logs. `sluice l7` runs one per
 * core under node:cluster (index.ts); tests run one in-process through startWorker().
 */
import { createServer, type Server } from 'node:http';
import pino, { type Logger } from 'pino';
import { RetryBudget } from './budget.js';
import type { L7Config } from './config.js';
import type { ProxyContext } from './context.js';
import { Listener, listenerKey } from './listener.js';
import { L7Metrics } from './metrics.js';
import { Runtime } from './runtime.js';

export interface WorkerOptions {
  logger?: Logger;
  /** Where access lines go (default: a child of `logger`); see logging.ts for a buffered one. */
  accessLogger?: Logger;
  /** Serve this worker's own metrics on config.metrics (in the pool the primary serves the sum instead). */
  serveMetrics?: boolean;
}

export interface BoundListener { address: string; port: number; tls: boolean }

export class Worker implements ProxyContext {
  runtime: Runtime;
  readonly metrics = new L7Metrics();
  readonly accessLog: Logger;
  readonly budget: RetryBudget;
  draining = false;
  readonly tunnels = new Set<import('node:stream').Duplex>();
  private inflight = 0;
  private readonly listeners = new Map<string, Listener>();
  private metricsServer?: Server;
  private idleWaiters: Array<() => void> = [];
  private readonly log: Logger;

  constructor(private config: L7Config, private readonly opts: WorkerOptions = {}) {
    this.log = opts.logger ?? pino({ name: 'sluice-l7' });
    this.accessLog = opts.accessLogger ?? this.log.child({ log: 'access' });
    this.runtime = new Runtime(config, this.metrics, this.log);
    this.budget = new RetryBudget(config.retryBudget.ratio, config.retryBudget.minRetries, () => this.inflight);
  }

  requestStarted(): void { this.inflight++; }

  requestDone(): void {
    this.inflight--;
    if (this.inflight === 0 && this.idleWaiters.length) for (const w of this.idleWaiters.splice(0)) w();
  }

  get inFlight(): number { return this.inflight; }

  async start(): Promise<void> {
    for (const spec of this.config.listeners) await this.open(spec);
    if (this.opts.serveMetrics && this.config.metrics) await this.serveMetrics();
  }

  private async open(spec: L7Config['listeners'][number]): Promise<void> {
    const l = new Listener(spec, this.config, this);
    // Count requests here rather than in ProxyRequest so draining sees every one.
    l.server.prependListener('request', () => this.requestStarted());
    await l.listen();
    this.listeners.set(l.key, l);
  }

  addresses(): BoundListener[] {
    return [...this.listeners.values()].map((l) => ({ address: l.address().address, port: l.address().port, tls: !!l.spec.tls }));
  }

  /** Swap in a new config: new requests use it at once, requests under way finish on the old one. */
  async reload(config: L7Config): Promise<void> {
    // Certificates first: a file that does not load leaves everything as it was.
    const keep = new Map<string, L7Config['listeners'][number]>();
    for (const spec of config.listeners) keep.set(listenerKey(spec), spec);
    for (const [key, spec] of keep) {
      const l = this.listeners.get(key);
      l?.reloadCerts(spec);
    }
    const old = this.runtime;
    this.runtime = new Runtime(config, this.metrics, this.log, old);
    old.retire(this.runtime);
    this.config = config;
    for (const [key, l] of this.listeners) {
      if (keep.has(key)) { l.applyLimits(config); continue; }
      this.listeners.delete(key);
      void l.stopAccepting();
    }
    for (const [key, spec] of keep) if (!this.listeners.has(key)) await this.open(spec);
    if (this.opts.serveMetrics && JSON.stringify(config.metrics) !== JSON.stringify(this.metricsAddress)) {
      await new Promise<void>((r) => (this.metricsServer ? this.metricsServer.close(() => r()) : r()));
      this.metricsServer = undefined;
      if (config.metrics) await this.serveMetrics();
    }
    this.log.info({ routes: config.routes.length, pools: Object.keys(config.pools).length }, 'config reloaded');
  }

  private metricsAddress: L7Config['metrics'];

  private serveMetrics(): Promise<void> {
    const m = this.config.metrics!;
    this.metricsAddress = m;
    const server = createServer((req, res) => {
      this.metrics.registry.metrics().then((text) => {
        res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
        res.end(text);
      }, () => { res.writeHead(500); res.end(); });
    });
    this.metricsServer = server;
    return new Promise((resolve, reject) => { server.once('error', reject); server.listen(m.port, m.address, () => resolve()); });
  }

  metricsPort(): number | undefined {
    const a = this.metricsServer?.address();
    return a && typeof a === 'object' ? a.port : undefined;
  }

  /** Stop accepting, let requests in flight finish within `graceMs`, then close everything. */
  async drain(graceMs = this.config.timeouts.drainMs): Promise<{ forced: boolean }> {
    this.draining = true;
    const closing = [...this.listeners.values()].map((l) => l.stopAccepting());
    // Keep-alive connections that turn idle after their last response must go too.
    const sweep = setInterval(() => { for (const l of this.listeners.values()) l.closeIdle(); }, 50);
    const idle = this.inflight === 0 ? Promise.resolve(true) : new Promise<boolean>((r) => this.idleWaiters.push(() => r(true)));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((r) => { timer = setTimeout(() => r(false), graceMs); });
    const clean = await Promise.race([idle, timeout]);
    clearTimeout(timer);
    clearInterval(sweep);
    // Nothing is in flight (or the grace period is over): whatever connection is left is idle or overdue.
    for (const l of this.listeners.values()) l.destroyAll();
    // Tunnels (WebSockets) have no request boundary to stop at: they get the grace period, then go.
    if (this.tunnels.size) await new Promise((r) => setTimeout(r, clean ? Math.min(graceMs, 1000) : 0));
    for (const t of this.tunnels) t.destroy();
    await Promise.race([Promise.all(closing), new Promise((r) => setTimeout(r, 1000))]);
    this.runtime.retire();
    this.metricsServer?.close();
    this.metricsServer?.closeAllConnections();
    return { forced: !clean };
  }
}

export async function startWorker(config: L7Config, opts: WorkerOptions = {}): Promise<Worker> {
  const w = new Worker(config, opts);
  await w.start();
  return w;
}
