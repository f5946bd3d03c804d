/**
 * One keep-alive HTTP/1.1 connection to an upstream endpoint, carrying one exchange at a time
 * (no pipelining: a slow response must not hold others hostage).
 */
import type { Socket } from 'node:net';
import { SluiceError } from '../../model/errors.js';
import { ResponseParser, type ParserSink, type ResponseHead } from './parser.js';

export type UpstreamErrorCode = 'ECONNECT' | 'ETIMEDOUT' | 'ERESET' | 'EPARSE' | 'EQUEUE' | 'ECLOSED';

export class UpstreamError extends SluiceError {
  /** Set when the failure happened on a connection that had served before and before any response byte: a stale keep-alive race, not the endpoint's fault. */
  stale = false;
  /** Response bytes had arrived: never safe to retry. */
  gotBytes = false;
  constructor(code: UpstreamErrorCode, message: string) {
    super(code, message);
    this.name = 'UpstreamError';
  }
}

export interface Exchange {
  onHead(head: ResponseHead): void;
  onBody(chunk: Buffer): void;
  onEnd(): void;
  /** The socket read that delivered body bytes is over. */
  flush(): void;
  onError(err: UpstreamError): void;
}

export interface ConnectionOwner {
  release(conn: Connection, reusable: boolean): void;
  closed(conn: Connection): void;
  readonly timeoutMs: number;
  readonly idleTimeoutMs: number;
}

export class Connection implements ParserSink {
  private ex: Exchange | null = null;
  private readonly parser = new ResponseParser(this);
  private served = 0;
  private gotBytes = false;
  private requestDone = true;
  private responseKeepAlive = false;
  private dead = false;

  constructor(readonly socket: Socket, private readonly owner: ConnectionOwner) {
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('end', () => this.onEof());
    socket.on('error', (e: NodeJS.ErrnoException) => this.fail('ERESET', `upstream connection error: ${e.code ?? e.message}`));
    socket.on('close', () => { this.fail('ERESET', 'upstream closed the connection'); this.dead = true; this.owner.closed(this); });
    socket.on('timeout', () => {
      if (this.ex) this.fail('ETIMEDOUT', 'upstream timed out');
      socket.destroy();
    });
    socket.setTimeout(owner.idleTimeoutMs);
  }

  get alive(): boolean { return !this.dead && !this.socket.destroyed; }

  /** Start an exchange: write the request head. The body, if any, follows through write()/endRequest(). */
  send(head: string, ex: Exchange, opts: { bodyless: boolean; hasBody: boolean }): void {
    this.ex = ex;
    this.gotBytes = false;
    this.requestDone = !opts.hasBody;
    this.parser.reset(opts.bodyless);
    if (this.owner.timeoutMs !== this.owner.idleTimeoutMs) this.socket.setTimeout(this.owner.timeoutMs);
    this.socket.write(head, 'latin1');
  }

  write(chunk: Buffer | string): boolean {
    return this.socket.write(chunk);
  }

  endRequest(): void {
    this.requestDone = true;
    if (!this.ex && this.parser.idle) this.owner.release(this, this.responseKeepAlive);
  }

  pause(): void { this.socket.pause(); }
  resume(): void { this.socket.resume(); }

  /** Give up on the current exchange (the client went away): the connection cannot be reused. */
  abort(): void {
    this.ex = null;
    this.socket.destroy();
  }

  destroy(): void {
    this.dead = true;
    this.socket.destroy();
  }

  onHead(head: ResponseHead): void { this.ex?.onHead(head); }
  onBody(chunk: Buffer): void { this.ex?.onBody(chunk); }
  onEnd(keepAlive: boolean): void {
    const ex = this.ex;
    this.ex = null;
    this.served++;
    this.responseKeepAlive = keepAlive;
    if (this.owner.timeoutMs !== this.owner.idleTimeoutMs) this.socket.setTimeout(this.owner.idleTimeoutMs);
    ex?.onEnd();
    // A response that ends before its request body (an early 413, say) leaves the request
    // half-sent: the connection goes back only once the body is out, and only if both agree.
    if (this.requestDone) this.owner.release(this, keepAlive && this.alive);
    else if (!keepAlive) this.socket.destroy();
  }

  private onData(d: Buffer): void {
    if (!this.ex) {
      if (this.parser.idle) this.socket.destroy(); // unsolicited bytes: the upstream is out of step
      return;
    }
    this.gotBytes = true;
    const ex = this.ex;
    try {
      this.parser.execute(d);
      if (this.ex === ex) ex.flush();
    } catch (e) {
      this.fail('EPARSE', (e as Error).message);
      this.socket.destroy();
    }
  }

  private onEof(): void {
    if (this.ex && this.parser.eof()) return;
    this.fail('ERESET', 'upstream closed the connection mid-response');
    this.socket.destroy();
  }

  private fail(code: UpstreamErrorCode, message: string): void {
    const ex = this.ex;
    if (!ex) return;
    this.ex = null;
    const err = new UpstreamError(code, message);
    err.gotBytes = this.gotBytes;
    err.stale = this.served > 0 && !this.gotBytes && code === 'ERESET';
    this.socket.destroy();
    ex.onError(err);
  }
}
