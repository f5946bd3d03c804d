/**
 * One L7 worker: its listeners, the current Runtime, metrics and logs. `sluice l7` runs one per
 * core under node:cluster (index.ts); tests run one in-process through startWorker().
 *
 * A reload has two steps so that a config which cannot be applied changes nothing: prepare()
 * does everything that can fail (bind new addresses, read certificates) without touching what
 * is in use, then commit() swaps it all in, or abort() undoes the preparation.
 */
import type { Server } from 'node:http';
import pino, { type Logger } from 'pino';
import { SluiceError } from '../model/errors.js';
import { RetryBudget } from './budget.js';
import type { L7Config, ListenerSpec } from './config.js';
import type { ProxyContext } from './context.js';
import { bindKey, Listener, listenerKey } from './listener.js';
import { L7Metrics, bindMetricsServer } from './metrics.js';
import { Runtime } from './runtime.js';
import type { Verdict } from './health.js';
import type { LoadedCerts } from './tls.js';

export interface WorkerOptions {
  logger?: Logger;
  /** Where access lines go (default: a child of `logger`); see logging.ts for a buffered one. */
  accessLogger?: Logger;
  /** Serve this worker's own metrics on config.metrics (in the pool the primary serves the sum instead). */
  serveMetrics?: boolean;
  /** false in the worker pool: the primary runs the active health checks and sends verdicts (setHealth). */
  checks?: boolean;
  /** Verdicts to start from (what the primary knows when this worker starts), rather than all healthy. */
  health?: Verdict[];
}

export interface BoundListener { address: string; port: number; tls: boolean }

/** A reload made ready: what could fail has been done, and nothing in use has changed. */
export interface ReloadPlan {
  readonly config: L7Config;
  /** Listeners on new addresses, already listening (closed again by abort). */
  readonly opened: Listener[];
  /** Listeners that stay, with their new certificates read. */
  readonly certs: Array<[Listener, LoadedCerts]>;
  /** Same address, another kind (plain, TLS, h2): the old listener must let go of the port first, at commit. */
  readonly swapped: Listener[];
  /** serveMetrics only: the new metrics server, bound; null to close the old one; undefined: no change. */
  metrics?: Server | null;
}

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
  private preparing: ReloadPlan | undefined;

  constructor(private config: L7Config, private readonly opts: WorkerOptions = {}) {
    this.log = opts.logger ?? pino({ name: 'sluice-l7' });
    this.accessLog = opts.accessLogger ?? this.log.child({ log: 'access' });
    this.runtime = new Runtime(config, this.metrics, this.log, undefined, opts);
    this.budget = new RetryBudget(config.retryBudget.ratio, config.retryBudget.minRetries, () => this.inflight);
  }

  requestStarted(): void { this.inflight++; }

  requestDone(): void {
    this.inflight--;
    if (this.inflight === 0 && this.idleWaiters.length) for (const w of this.idleWaiters.splice(0)) w();
  }

  get inFlight(): number { return this.inflight; }

  /** An active health verdict from the pool's primary, for the running config. */
  setHealth(pool: string, endpoint: string, healthy: boolean): void {
    this.runtime.setHealth(pool, endpoint, healthy, this.metrics);
  }

  async start(): Promise<void> {
    for (const spec of this.config.listeners) {
      const l = new Listener(spec, this.config, this);
      await l.listen();
      this.listeners.set(l.key, l);
    }
    if (this.opts.serveMetrics && this.config.metrics) this.metricsServer = await this.bindMetrics(this.config.metrics);
  }

  addresses(): BoundListener[] {
    return [...this.listeners.values()].map((l) => ({ address: l.address().address, port: l.address().port, tls: !!l.spec.tls }));
  }

  /** Prepare and commit: new requests use `config` at once, requests under way finish on the old one. */
  async reload(config: L7Config): Promise<void> {
    await this.commit(await this.prepare(config));
  }

  /** Everything a reload can fail at, done aside. Throws (having undone it) if any of it fails. */
  async prepare(config: L7Config): Promise<ReloadPlan> {
    if (this.preparing) throw new SluiceError('ERELOAD', 'a reload is already being prepared');
    const plan: ReloadPlan = { config, opened: [], certs: [], swapped: [] };
    this.preparing = plan;
    try {
      for (const [i, spec] of config.listeners.entries()) {
        const same = this.listeners.get(listenerKey(spec));
        try {
          if (same) { const c = same.prepareCerts(spec); if (c) plan.certs.push([same, c]); continue; }
          const next = new Listener(spec, config, this); // reads its certificates
          if (spec.port !== 0 && this.boundAt(spec)) { plan.swapped.push(next); continue; }
          await next.listen();
          plan.opened.push(next);
        } catch (e) {
          throw new SluiceError('ERELOAD', `l7.listeners[${i}] ${bindKey(spec)}: ${(e as Error).message}`);
        }
      }
      if (this.opts.serveMetrics && JSON.stringify(config.metrics) !== JSON.stringify(this.config.metrics)) {
        plan.metrics = config.metrics ? await this.bindMetrics(config.metrics) : null;
      }
    } catch (e) {
      this.abort(plan);
      this.log.warn({ err: (e as Error).message }, 'reload refused; the running config stays');
      throw e;
    }
    return plan;
  }

  /** Undo a preparation: close what it opened. */
  abort(plan: ReloadPlan): void {
    if (this.preparing === plan) this.preparing = undefined;
    for (const l of plan.opened) void l.stopAccepting();
    plan.metrics?.close();
  }

  /** Swap a prepared reload in. Only a kind change on a kept address can still fail here (the port is rebound). */
  async commit(plan: ReloadPlan): Promise<void> {
    if (this.preparing !== plan) throw new SluiceError('ERELOAD', 'no such prepared reload');
    this.preparing = undefined;
    const { config } = plan;
    const old = this.runtime;
    this.runtime = new Runtime(config, this.metrics, this.log, old, this.opts);
    old.retire(this.runtime);
    this.config = config;
    for (const [l, loaded] of plan.certs) l.useCerts(loaded);
    const keep = new Set(config.listeners.map(listenerKey));
    for (const [key, l] of this.listeners) {
      if (keep.has(key)) { l.applyLimits(config); continue; }
      this.listeners.delete(key);
      void l.stopAccepting(); // stops listening now; its connections finish their responses
    }
    for (const l of plan.opened) this.listeners.set(l.key, l);
    if (plan.metrics !== undefined) {
      this.metricsServer?.close();
      this.metricsServer?.closeAllConnections();
      this.metricsServer = plan.metrics ?? undefined;
    }
    for (const l of plan.swapped) {
      try { await l.listen(); } catch (e) {
        throw new SluiceError('ERELOAD', `${bindKey(l.spec)}: reopening as ${listenerKey(l.spec).split(':').pop()} failed: ${(e as Error).message}`);
      }
      this.listeners.set(l.key, l);
    }
    this.log.info({ routes: config.routes.length, pools: Object.keys(config.pools).length }, 'config reloaded');
  }

  private boundAt(spec: ListenerSpec): boolean {
    for (const l of this.listeners.values()) if (l.spec.port !== 0 && bindKey(l.spec) === bindKey(spec)) return true;
    return false;
  }

  private bindMetrics(m: NonNullable<L7Config['metrics']>): Promise<Server> {
    const registry = this.metrics.registry;
    return bindMetricsServer(m, () => registry.metrics(), registry.contentType);
  }

  metricsPort(): number | undefined {
    const a = this.metricsServer?.address();
    return a && typeof a === 'object' ? a.port : undefined;
  }

  /** Stop accepting, let requests in flight finish within `graceMs`, then close everything. */
  async drain(graceMs = this.config.timeouts.drainMs): Promise<{ forced: boolean }> {
    this.draining = true;
    if (this.preparing) this.abort(this.preparing);
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
