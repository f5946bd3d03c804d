/**
 * The worker's two pino loggers. Access lines are many and small: they go through a buffered
 * destination (written in batches of ≥ 2 KB, flushed every 500 ms and on drain), as nginx's
 * `access_log ... buffer=` does; a write per request cost more CPU than the proxying itself.
 * The batches are written synchronously, as nginx writes them: an asynchronous write goes
 * through libuv's thread pool, and that hand-off cost more than the line (9.4 µs a line against
 * 4.4 here). The price is nginx's too: a log reader that stops reading stalls the worker.
 * Batches stay under PIPE_BUF (4 KB) unless a line is very long, so workers sharing a stdout
 * pipe do not interleave their lines.
 * Operational messages stay unbuffered so nothing important waits.
 */
import pino, { type Logger } from 'pino';

export interface WorkerLoggers {
  log: Logger;
  access: Logger;
  /** Write out buffered access lines now (drain, exit). */
  flush(): void;
}

export function workerLoggers(opts: { level?: string; dest?: number | string } = {}): WorkerLoggers {
  const dest = opts.dest ?? 1;
  const log = pino({ name: 'sluice-l7', level: opts.level ?? 'info' }, pino.destination({ dest, sync: true }));
  const buffered = pino.destination({ dest, sync: true, minLength: 2048 });
  const access = pino({ name: 'sluice-l7', level: opts.level ?? 'info' }, buffered).child({ log: 'access' });
  const timer = setInterval(() => { try { buffered.flush(); } catch { /* not open yet */ } }, 500);
  timer.unref();
  return { log, access, flush: () => { try { buffered.flushSync(); } catch { /* not open yet */ } } };
}
