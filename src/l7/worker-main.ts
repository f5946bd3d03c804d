/**
 * Entry point of a cluster worker. The primary sends the validated config ('start', 'reload')
 * and asks for a drain ('drain'); the worker answers with what it did.
 */
import { AggregatorRegistry } from 'prom-client';
import type { L7Config } from './config.js';
import { workerLoggers } from './logging.js';
import { Worker } from './worker.js';

export type ToWorker = { type: 'start' | 'reload'; config: L7Config } | { type: 'drain'; graceMs: number };
export type FromWorker =
  | { type: 'hello' }
  | { type: 'listening'; addresses: Array<{ address: string; port: number; tls: boolean }> }
  | { type: 'reloaded' }
  | { type: 'failed'; stage: 'start' | 'reload'; message: string }
  | { type: 'drained'; forced: boolean };

const loggers = workerLoggers({ level: process.env.SLUICE_LOG_LEVEL ?? 'info' });
const log = loggers.log;
let worker: Worker | undefined;
let draining = false;
const send = (m: FromWorker) => process.send?.(m);

process.on('message', (m: ToWorker) => {
  void (async () => {
    if (m.type === 'start') {
      try {
        const w = new Worker(m.config, { logger: log, accessLogger: loggers.access });
        new AggregatorRegistry(); // its constructor installs the worker's answer to the primary's scrape
        AggregatorRegistry.setRegistries([w.metrics.registry]);
        await w.start();
        worker = w;
        send({ type: 'listening', addresses: w.addresses() });
      } catch (e) {
        send({ type: 'failed', stage: 'start', message: (e as Error).message });
        process.exit(1);
      }
    } else if (m.type === 'reload') {
      try { await worker!.reload(m.config); send({ type: 'reloaded' }); }
      catch (e) { send({ type: 'failed', stage: 'reload', message: (e as Error).message }); }
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
