/**
 * The worker's two pino loggers. Access lines are many and small: they go through a buffered
 * destination (flushed every 500 ms and on drain), as nginx's `access_log ... buffer=` does; on
 * this kind of machine a write(2) costs more than the line, so the batches are as large as the
 * destination allows. To a pipe or socket (stdout under systemd, shared by every worker) a batch
 * stays within PIPE_BUF (4 KB), which the kernel writes whole, so workers' lines never interleave;
 * to a file or device, 16 KB. The batches are written synchronously, as nginx writes them: an
 * asynchronous write goes through libuv's thread pool, and that hand-off cost more than the line.
 * The price is nginx's too: a log reader that stops reading stalls the worker.
 * Operational messages stay unbuffered so nothing important waits.
 */
import { fstatSync, statSync } from 'node:fs';
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
  // sonic-boom writes one batch of at most maxWrite bytes once minLength have gathered: the slack is for the line that tips it.
  const maxWrite = batchBytes(dest);
  const buffered = pino.destination({ dest, sync: true, maxWrite, minLength: maxWrite - 1024 });
  const access = pino({ name: 'sluice-l7', level: opts.level ?? 'info' }, buffered).child({ log: 'access' });
  const timer = setInterval(() => { try { buffered.flush(); } catch { /* not open yet */ } }, 500);
  timer.unref();
  return { log, access, flush: () => { try { buffered.flushSync(); } catch { /* not open yet */ } } };
}

/** 4 KB (PIPE_BUF) unless `dest` is a regular file or a device, where one write is one write whatever its size. */
export function batchBytes(dest: number | string): number {
  try {
    const st = typeof dest === 'number' ? fstatSync(dest) : statSync(dest);
    return st.isFile() || st.isCharacterDevice() ? 16 * 1024 : 4096;
  } catch {
    return typeof dest === 'string' ? 16 * 1024 : 4096; // a file not there yet is created
  }
}
