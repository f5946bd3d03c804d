/**
 * Entry point of a cluster worker. The primary sends the validated config ('start'), reloads
 * in two steps ('prepare', then 'commit' or 'abort'; 'reload' does both, for a worker that
 * started during one), asks for a drain ('drain') and sends the verdicts of the active health
 * checks it runs ('health'); the worker answers with what it did.
 */
import { AggregatorRegistry } from 'prom-client';
import type { L7Config } from './config.js';
import type { Verdict } from './health.js';
import { workerLoggers } from './logging.js';
import { Worker, type ReloadPlan } from './worker.js';

export type ToWorker =
  | { type: 'start'; config: L7Config; health?: Verdict[] }
  | { type: 'health'; verdict: Verdict }
  | { type: 'reload' | 'prepare'; config: L7Config }
  | { type: 'commit' | 'abort' }
  | { type: 'drain'; graceMs: number };
export type FromWorker =
  | { type: 'hello' }
  | { type: 'listening'; addresses: Array<{ address: string; port: number; tls: boolean }> }
  | { type: 'prepared' | 'reloaded' | 'aborted' }
  | { type: 'failed'; stage: 'start' | 'reload' | 'prepare' | 'commit'; message: string }
  | { type: 'drained'; forced: boolean };

const loggers = workerLoggers({ level: process.env.SLUICE_LOG_LEVEL ?? 'info' });
const log = loggers.log;
let worker: Worker | undefined;
/** The worker being started: health verdicts can arrive before it listens. */
let starting: Worker | undefined;
let plan: ReloadPlan | undefined;
let draining = false;
const send = (m: FromWorker) => process.send?.(m);

async function step(stage: 'reload' | 'prepare' | 'commit', ok: FromWorker, f: () => Promise<void>): Promise<void> {
  try { await f(); send(ok); } catch (e) { send({ type: 'failed', stage, message: (e as Error).message }); }
}

process.on('message', (m: ToWorker) => {
  void (async () => {
    if (m.type === 'start') {
      try {
        const w = new Worker(m.config, { logger: log, accessLogger: loggers.access, checks: false, health: m.health });
        starting = w;
        new AggregatorRegistry(); // its constructor installs the worker's answer to the primary's scrape
        AggregatorRegistry.setRegistries([w.metrics.registry]);
        await w.start();
        worker = w;
        send({ type: 'listening', addresses: w.addresses() });
      } catch (e) {
        send({ type: 'failed', stage: 'start', message: (e as Error).message });
        process.exit(1);
      }
    } else if (m.type === 'health') {
      (worker ?? starting)?.setHealth(...m.verdict);
    } else if (m.type === 'reload') {
      await step('reload', { type: 'reloaded' }, () => worker!.reload(m.config));
    } else if (m.type === 'prepare') {
      await step('prepare', { type: 'prepared' }, async () => { plan = await worker!.prepare(m.config); });
    } else if (m.type === 'commit') {
      const p = plan;
      plan = undefined;
      await step('commit', { type: 'reloaded' }, () => (p ? worker!.commit(p) : Promise.reject(new Error('nothing prepared'))));
    } else if (m.type === 'abort') {
      if (plan) worker!.abort(plan);
      plan = undefined;
      send({ type: 'aborted' });
    } else if (m.type === 'drain') {
      draining = true;
      log.info({ inflight: worker?.inFlight }, 'draining');
      const r = worker ? await worker.drain(m.graceMs) : { forced: false };
      loggers.flush();
      log.info({ forced: r.forced }, 'drained');
      send({ type: 'drained', forced: r.forced });
      process.disconnect?.();
      setTimeout(() => process.exit(0), 100).unref();
    }
  })();
});
// Orphaned (the primary was killed): finish what is in flight and go.
process.on('disconnect', () => {
  if (draining) return;
  draining = true;
  void (worker ? worker.drain() : Promise.resolve()).finally(() => { loggers.flush(); process.exit(0); });
});
// The primary owns the signals: a terminal's Ctrl-C reaches every process of the group.
process.on('SIGINT', () => {});
process.on('SIGHUP', () => {});
process.on('SIGTERM', () => {});
send({ type: 'hello' });
