/**
 * `sluice l7`: the primary of the worker pool. It validates the config, forks one worker per
 * core (node:cluster shares the listening sockets), replaces workers that die, reloads the
 * config in every worker on SIGHUP, drains on SIGTERM/SIGINT, and serves the workers' summed
 * metrics on `l7.metrics`.
 *
 * A reload is all or nothing: every worker first prepares it (binds new listeners, reads
 * certificates) while serving the running config; only when all have, they commit. If one
 * cannot, the others roll back and the running config stays everywhere.
 */
import cluster, { type Worker as ClusterWorker } from 'node:cluster';
import type { Server } from 'node:http';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import pino, { type Logger } from 'pino';
import { AggregatorRegistry, Registry } from 'prom-client';
import { SluiceError } from '../model/errors.js';
import type { L7Config } from './config.js';
import { PoolChecks } from './health.js';
import { l7Warnings, loadL7Config } from './load.js';
import { bindMetricsServer } from './metrics.js';
import type { FromWorker, ToWorker } from './worker-main.js';

export { validateL7 } from './config.js';
export type { L7Config } from './config.js';
export { startWorker, Worker } from './worker.js';
export { loadL7Config } from './load.js';

export interface L7Options {
  configPath: string;
  workers?: number;
  logger?: Logger;
  /** Handle SIGHUP/SIGTERM/SIGINT in this process (the CLI does; tests drive the handle). Default true. */
  signals?: boolean;
  /** Workers' log level (their own pino on stdout). */
  logLevel?: string;
}

export interface L7Handle {
  /** Resolves once the pool has stopped. */
  readonly done: Promise<void>;
  /** Re-read the config file and apply it in every worker; rejects (changing nothing) if it is invalid. */
  reload(): Promise<void>;
  /** Drain every worker (stop accepting, finish in-flight within timeouts.drain) and stop. */
  stop(): Promise<void>;
  readonly config: L7Config;
  workerCount(): number;
  workerPids(): number[];
  metricsAddress(): { address: string; port: number } | undefined;
}

/** What a pool run by the agent (agent/l7-pool.ts) says once its signal handlers are in place. */
export const L7_READY = 'sluice-l7-ready';

/** prom-client's cluster messages, which each worker's AggregatorRegistry answers. */
const METRICS_REQ = 'prom-client:getMetricsReq';
const METRICS_RES = 'prom-client:getMetricsRes';

const WORKER_ENTRY = fileURLToPath(new URL('./worker-main.js', import.meta.url));

/** The primary's node flags minus an inline script (`node -e`), which workers must not run again. */
function workerExecArgv(): string[] {
  const out: string[] = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-e' || a === '--eval' || a === '-p' || a === '--print') { i++; continue; }
    if (a.startsWith('--eval=') || a.startsWith('--print=') || a.startsWith('--input-type')) continue;
    out.push(a);
  }
  return out;
}

function waitFor(w: ClusterWorker, pred: (m: FromWorker) => boolean, what: string): Promise<FromWorker> {
  return new Promise((resolve, reject) => {
    const onMsg = (m: FromWorker) => { if (m.type === 'failed' || pred(m)) { cleanup(); m.type === 'failed' ? reject(new SluiceError('EWORKER', `worker ${w.process.pid} ${m.stage}: ${m.message}`)) : resolve(m); } };
    const onExit = (code: number) => { cleanup(); reject(new SluiceError('EWORKER', `worker ${w.process.pid} exited (${code}) while ${what}`)); };
    const cleanup = () => { w.off('message', onMsg); w.off('exit', onExit); };
    w.on('message', onMsg);
    w.on('exit', onExit);
  });
}

export async function runL7(opts: L7Options): Promise<L7Handle> {
  if (!cluster.isPrimary) throw new SluiceError('ECLUSTER', 'runL7 runs in the primary process');
  const log = opts.logger ?? pino({ name: 'sluice-l7' });
  // A SIGHUP before the pool is up (systemctl start, then reload) must not end it (Node's default),
  // nor be lost: the file may have changed after it was read. It is done once the pool is up.
  let hupWhileStarting = false;
  const earlyHup = (): void => { hupWhileStarting = true; };
  if (opts.signals !== false) process.on('SIGHUP', earlyHup);
  let config = loadL7Config(opts.configPath);
  for (const w of l7Warnings(config)) log.warn(w);
  const count = opts.workers ?? config.workers ?? availableParallelism();
  cluster.setupPrimary({ exec: WORKER_ENTRY, args: [], execArgv: workerExecArgv(), silent: false });
  const env = { SLUICE_LOG_LEVEL: opts.logLevel ?? process.env.SLUICE_LOG_LEVEL ?? 'info' };
  const workers = new Set<ClusterWorker>();
  /** Workers that have opened their listeners: only these take reload and drain messages. */
  const listening = new Set<ClusterWorker>();
  /** Workers let go by a reload that lowered `workers`: draining, not to be replaced. */
  const retiring = new Set<ClusterWorker>();
  let stopping = false;
  let restarts = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => { resolveDone = r; });
  let metricsServer: Server | undefined;
  /** Active health checks, once per endpoint for the whole pool; every serving worker hears each verdict. */
  const checks = new PoolChecks((pool, endpoint, healthy, reason) => {
    log.warn({ pool, endpoint, healthy, reason }, healthy ? 'endpoint healthy' : 'endpoint unhealthy');
    // Every worker, starting ones too: one that has not had its config yet gets the verdicts with it.
    for (const w of workers) if (w.isConnected()) w.send({ type: 'health', verdict: [pool, endpoint, healthy] } satisfies ToWorker);
  });

  const spawn = async (): Promise<void> => {
    const w = cluster.fork(env);
    const born = Date.now();
    workers.add(w);
    w.on('exit', (code, signal) => {
      workers.delete(w);
      listening.delete(w);
      keepCounters(w);
      if (retiring.delete(w) || stopping) return;
      if (Date.now() - born > 10_000) restarts = 0;
      log.error({ pid: w.process.pid, code, signal }, 'worker died; starting another');
      // Back off when workers die young over and over (a crash loop must not spin the CPU).
      const delay = Math.min(5000, 100 * 2 ** Math.min(restarts++, 6));
      setTimeout(() => { if (!stopping) spawn().catch((e) => log.error({ err: e.message }, 'replacement worker failed')); }, delay).unref();
    });
    // Messages sent before the worker's module has loaded would be lost: wait for its hello.
    await waitFor(w, (m) => m.type === 'hello', 'starting');
    let sent = config;
    w.send({ type: 'start', config: sent, health: checks.verdicts() } satisfies ToWorker);
    await waitFor(w, (m) => m.type === 'listening', 'opening listeners');
    // A reload that happened while this worker started must reach it too; if it cannot apply
    // what every other worker did, it goes, and its replacement starts from the current config.
    while (sent !== config && !stopping) {
      sent = config;
      const p = waitFor(w, (m) => m.type === 'reloaded', 'reloading');
      w.send({ type: 'reload', config: sent } satisfies ToWorker);
      try { await p; } catch (e) { w.process.kill('SIGKILL'); throw e; }
    }
    listening.add(w);
  };

  try {
    await Promise.all(Array.from({ length: count }, () => spawn()));
  } catch (e) {
    stopping = true;
    process.off('SIGHUP', earlyHup);
    for (const w of workers) w.process.kill('SIGKILL');
    throw e;
  }
  checks.use(config);
  log.info({ workers: count, listeners: config.listeners.map((l) => `${l.address}:${l.port}${l.tls ? ' tls' : ''}`) }, 'l7 pool started');

  /**
   * The sum of the ready workers' metrics, asked with prom-client's cluster protocol. Not its
   * clusterMetrics(): that asks every forked worker, and one still starting (replacing a worker
   * that died, say) drops the request, so every scrape meanwhile hung 5 s and failed.
   */
  let scrapes = 0;
  /** Each worker's metrics at the last scrape, and the counters and histograms of workers gone since. */
  const lastSeen = new Map<ClusterWorker, object[]>();
  let departed: object[] = [];
  /**
   * A worker that exits (died, or drained by a resize) takes its counters with it, and their sum
   * would go down, which Prometheus reads as a reset: rate() would spike. Its counters and
   * histograms as last scraped stay in the sum (what it counted after that scrape is lost).
   */
  const keepCounters = (w: ClusterWorker): void => {
    const last = lastSeen.get(w);
    lastSeen.delete(w);
    if (!last) return;
    for (const reg of last as Array<Array<{ type?: string }>>) departed.push(reg.filter((m) => m.type === 'counter' || m.type === 'histogram'));
    if (departed.length < 8) return;
    // Folded into one set now and then, so a crash loop does not grow the list; kept in the sum meanwhile.
    const batch = departed.slice();
    Promise.resolve(AggregatorRegistry.aggregate(batch as never).getMetricsAsJSON())
      .then((folded) => { departed = [folded, ...departed.slice(batch.length)]; }, () => undefined);
  };
  const scrape = (): Promise<string> => new Promise((resolve, reject) => {
    const requestId = `sluice-${scrapes++}`;
    const parts = new Map<ClusterWorker, object[]>();
    const asked = new Set(listening);
    const cleanups: Array<() => void> = [];
    const settle = (err?: Error): void => {
      clearTimeout(timer);
      for (const c of cleanups) c();
      if (err) reject(err);
      else {
        // A worker that answered and exited since is in `departed` already.
        const live = [...parts].flatMap(([w, p]) => (workers.has(w) ? p : []));
        Promise.resolve(AggregatorRegistry.aggregate([...live, ...departed] as never).metrics()).then(resolve, reject);
      }
    };
    const answered = (w: ClusterWorker): void => { asked.delete(w); if (asked.size === 0) settle(); };
    const timer = setTimeout(() => settle(new Error(`${asked.size} worker(s) did not answer within 5s`)), 5000);
    for (const w of [...asked]) {
      if (!w.isConnected()) { asked.delete(w); continue; }
      const onMsg = (m: { type?: string; requestId?: string; metrics?: object[]; error?: string }) => {
        if (m?.type !== METRICS_RES || m.requestId !== requestId) return;
        if (m.error) return settle(new Error(m.error));
        parts.set(w, m.metrics ?? []);
        lastSeen.set(w, m.metrics ?? []);
        answered(w);
      };
      const onExit = () => answered(w); // gone: its counters as last seen are in `departed`
      w.on('message', onMsg);
      w.once('exit', onExit);
      cleanups.push(() => { w.off('message', onMsg); w.off('exit', onExit); });
      w.send({ type: METRICS_REQ, requestId });
    }
    if (asked.size === 0) settle();
  });
  const bindMetrics = (m: NonNullable<L7Config['metrics']>): Promise<Server> =>
    bindMetricsServer(m, scrape, Registry.PROMETHEUS_CONTENT_TYPE);
  if (config.metrics) metricsServer = await bindMetrics(config.metrics);

  /** Send `msg` to each worker and wait for `reply`; settles per worker, never throws. */
  const ask = (ws: ClusterWorker[], msg: ToWorker, reply: FromWorker['type'], what: string) =>
    Promise.allSettled(ws.map((w) => { const p = waitFor(w, (m) => m.type === reply, what); w.send(msg); return p; }));

  const apply = async (): Promise<void> => {
    const next = loadL7Config(opts.configPath); // throws, changing nothing, if invalid
    for (const w of l7Warnings(next)) log.warn(w);
    const targets = [...listening];
    const prepared = await ask(targets, { type: 'prepare', config: next }, 'prepared', 'preparing a reload');
    const failures = prepared.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : []));
    let nextMetrics: Server | undefined;
    const metricsChanged = JSON.stringify(next.metrics) !== JSON.stringify(config.metrics);
    if (!failures.length && metricsChanged && next.metrics) {
      try { nextMetrics = await bindMetrics(next.metrics); } catch (e) { failures.push(`l7.metrics: ${(e as Error).message}`); }
    }
    if (failures.length) {
      // Workers that failed have undone their part already; the others undo theirs.
      await ask(targets.filter((_, i) => prepared[i].status === 'fulfilled'), { type: 'abort' }, 'aborted', 'rolling back a reload');
      throw new SluiceError('ERELOAD', `reload refused, every worker keeps the running config: ${failures.join('; ')}`);
    }
    config = next;
    const committed = await ask(targets, { type: 'commit' }, 'reloaded', 'committing a reload');
    // After the commit: a verdict on an endpoint the reload added must find it in the workers.
    checks.use(next);
    committed.forEach((r, i) => {
      if (r.status === 'fulfilled') return;
      // Rare (a port rebound for a kind change was taken meanwhile): a fresh worker gets the config whole.
      log.error({ pid: targets[i].process.pid, err: (r.reason as Error).message }, 'worker could not commit the reload; replacing it');
      targets[i].process.kill('SIGKILL');
    });
    if (metricsChanged) {
      metricsServer?.close();
      metricsServer?.closeAllConnections();
      metricsServer = nextMetrics;
    }
    await resize(opts.workers ?? next.workers ?? availableParallelism());
    log.info({ workers: workers.size - retiring.size }, 'config reloaded');
  };
  /** A reload that changes `workers` (and no --workers on the command line): start more, or drain the extra ones. */
  const resize = async (want: number): Promise<void> => {
    const serving = [...workers].filter((w) => !retiring.has(w));
    if (want > serving.length) {
      log.info({ from: serving.length, to: want }, 'starting more workers');
      await Promise.all(Array.from({ length: want - serving.length }, () =>
        spawn().catch((e) => log.error({ err: (e as Error).message }, 'additional worker failed'))));
      return;
    }
    // Workers still starting go first: they serve nothing yet.
    const extra = [...serving.filter((w) => !listening.has(w)), ...serving.filter((w) => listening.has(w)).reverse()].slice(0, serving.length - want);
    if (extra.length) log.info({ from: serving.length, to: want }, 'draining extra workers');
    const graceMs = config.timeouts.drainMs;
    for (const w of extra) {
      retiring.add(w);
      if (!listening.delete(w)) { w.process.kill('SIGKILL'); continue; }
      const kill = setTimeout(() => w.process.kill('SIGKILL'), graceMs + 5000);
      kill.unref();
      w.once('exit', () => clearTimeout(kill));
      w.send({ type: 'drain', graceMs } satisfies ToWorker);
    }
  };
  // One reload at a time: a second SIGHUP waits for the first.
  let reloading: Promise<void> = Promise.resolve();
  const reload = (): Promise<void> => {
    const p = reloading.then(apply);
    reloading = p.catch(() => undefined);
    return p;
  };

  const stop = async (): Promise<void> => {
    if (stopping) return done;
    stopping = true;
    checks.stop();
    const graceMs = config.timeouts.drainMs;
    // A worker still starting serves nothing yet: it just goes.
    for (const w of workers) if (!listening.has(w) && !retiring.has(w)) w.process.kill('SIGKILL');
    await Promise.all([...listening].map((w) => new Promise<void>((resolve) => {
      const kill = setTimeout(() => w.process.kill('SIGKILL'), graceMs + 5000);
      w.once('exit', () => { clearTimeout(kill); resolve(); });
      w.send({ type: 'drain', graceMs } satisfies ToWorker);
    })));
    metricsServer?.close();
    metricsServer?.closeAllConnections();
    if (opts.signals !== false) for (const [s, f] of handlers) process.off(s, f);
    log.info('l7 pool stopped');
    resolveDone();
  };

  const handlers: Array<[NodeJS.Signals, () => void]> = [
    ['SIGHUP', () => { reload().catch((e) => log.error({ err: e.message }, 'reload refused; the running config stays')); }],
    ['SIGTERM', () => { void stop(); }],
    ['SIGINT', () => { void stop(); }],
  ];
  if (opts.signals !== false) {
    for (const [s, f] of handlers) process.on(s, f);
    process.off('SIGHUP', earlyHup);
    if (hupWhileStarting) handlers[0][1]();
  }
  // Run by the agent (agent/l7-pool.ts): say when a SIGHUP is safe, and drain when the agent is gone.
  if (process.env.SLUICE_L7_PARENT && process.send) {
    process.channel?.unref();
    process.once('disconnect', () => { log.warn('the agent that runs this pool is gone: draining'); void stop(); });
    process.send({ type: L7_READY });
  }

  return {
    done,
    reload,
    stop,
    get config() { return config; },
    workerCount: () => workers.size - retiring.size,
    workerPids: () => [...workers].filter((w) => !retiring.has(w)).map((w) => w.process.pid!).filter(Boolean),
    metricsAddress: () => {
      const a = metricsServer?.address();
      return a && typeof a === 'object' ? { address: a.address, port: a.port } : undefined;
    },
  };
}
