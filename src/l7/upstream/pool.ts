/**
 * Keep-alive connections to one upstream endpoint: reuse the most recently used idle
 * connection (its TCP state is warm, and the others can time out), open new ones up to a cap,
 * queue beyond it.
 */
import { connect } from 'node:net';
import { Connection, UpstreamError, type ConnectionOwner } from './connection.js';

export interface PoolOptions {
  connectTimeoutMs: number;
  timeoutMs: number;
  idleTimeoutMs: number;
  maxConnections: number;
}

type Waiter = { cb: (err: UpstreamError | null, conn?: Connection) => void; timer: NodeJS.Timeout };

export class ConnectionPool implements ConnectionOwner {
  private readonly idle: Connection[] = [];
  private readonly waiters: Waiter[] = [];
  private open = 0;
  private closing = false;
  readonly timeoutMs: number;
  readonly idleTimeoutMs: number;

  constructor(readonly host: string, readonly port: number, private readonly opts: PoolOptions) {
    this.timeoutMs = opts.timeoutMs;
    this.idleTimeoutMs = opts.idleTimeoutMs;
  }

  get size(): number { return this.open; }
  get idleCount(): number { return this.idle.length; }

  acquire(cb: (err: UpstreamError | null, conn?: Connection) => void): void {
    if (this.closing) { cb(new UpstreamError('ECLOSED', 'pool closed')); return; }
    while (this.idle.length) {
      const c = this.idle.pop()!;
      if (c.alive) { cb(null, c); return; }
    }
    if (this.open < this.opts.maxConnections) { this.dial(cb); return; }
    const w: Waiter = {
      cb,
      timer: setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        cb(new UpstreamError('EQUEUE', `no free connection to ${this.host}:${this.port} within ${this.opts.connectTimeoutMs}ms`));
      }, this.opts.connectTimeoutMs),
    };
    this.waiters.push(w);
  }

  release(conn: Connection, reusable: boolean): void {
    if (!reusable || this.closing || !conn.alive) { conn.destroy(); return; }
    const w = this.waiters.shift();
    if (w) { clearTimeout(w.timer); w.cb(null, conn); return; }
    this.idle.push(conn);
  }

  closed(conn: Connection): void {
    this.open--;
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    this.freed();
  }

  /** A connection slot is free again: the first request waiting for one dials. */
  private freed(): void {
    const w = this.waiters.shift();
    if (w) { clearTimeout(w.timer); this.dial(w.cb); }
  }

  /** Stop reusing: idle connections close now, busy ones when their exchange ends. */
  close(): void {
    this.closing = true;
    for (const c of this.idle.splice(0)) c.destroy();
    for (const w of this.waiters.splice(0)) { clearTimeout(w.timer); w.cb(new UpstreamError('ECLOSED', 'pool closed')); }
  }

  private dial(cb: (err: UpstreamError | null, conn?: Connection) => void): void {
    this.open++;
    const socket = connect({ host: this.host, port: this.port, noDelay: true });
    let settled = false;
    const onFail = (msg: string) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      this.open--;
      cb(new UpstreamError('ECONNECT', `connect to ${this.host}:${this.port}: ${msg}`));
      // The slot is free: a request queued behind this dial must not wait out connectTimeout for it.
      this.freed();
    };
    socket.setTimeout(this.opts.connectTimeoutMs, () => onFail('timed out'));
    socket.once('error', (e: NodeJS.ErrnoException) => onFail(e.code ?? e.message));
    socket.once('connect', () => {
      if (settled) return;
      settled = true;
      socket.removeAllListeners('error');
      socket.removeAllListeners('timeout');
      socket.setTimeout(0);
      cb(null, new Connection(socket, this));
    });
  }
}
