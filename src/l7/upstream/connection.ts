/**
 * One keep-alive HTTP/1.1 connection to an upstream endpoint, carrying one exchange at a time
 * (no pipelining: a slow response must not hold others hostage).
 *
 * The socket's inactivity timer is the upstream `timeout`, and it runs only while sluice is
 * waiting on the upstream. It is off while the request body is still coming from the client
 * (unless the upstream has stopped reading it), and while the response is held back because
 * the client reads slowly: either way the silence is the client's, and must not become an
 * ETIMEDOUT counted against the endpoint. Between exchanges it is the idle timeout.
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
  onInterim?(status: number, headers: string[]): void;
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
  /** The socket timeout in force, so it is only touched when it changes. */
  private timerMs = -1;
  /** The request body is still being written... */
  private bodyPending = false;
  /** ...unless the upstream has stopped reading it (its socket buffer is full). */
  private upstreamFull = false;
  private responding = false;
  /** The exchange that paused reading for its client's backpressure. */
  private heldBy: Exchange | null = null;
  /** The final response head has arrived (1xx heads do not count). */
  private headSeen = false;
  /** Since when the wait for the final head has been the upstream's (0: it is the client's). */
  private waitingSince = 0;

  constructor(readonly socket: Socket, private readonly owner: ConnectionOwner) {
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('end', () => this.onEof());
    socket.on('error', (e: NodeJS.ErrnoException) => this.fail('ERESET', `upstream connection error: ${e.code ?? e.message}`));
    socket.on('close', () => { this.fail('ERESET', 'upstream closed the connection'); this.dead = true; this.owner.closed(this); });
    socket.on('timeout', () => {
      if (this.ex) this.fail('ETIMEDOUT', 'upstream timed out');
      socket.destroy();
    });
    this.setTimer(owner.idleTimeoutMs);
  }

  private setTimer(ms: number): void {
    if (ms !== this.timerMs) { this.timerMs = ms; this.socket.setTimeout(ms); }
  }

  /** During an exchange: the upstream timeout, or none while the wait is on the client. */
  private exchangeTimer(): void {
    const clientsTurn = this.heldBy !== null || (this.bodyPending && !this.upstreamFull && !this.responding);
    this.setTimer(clientsTurn ? 0 : this.owner.timeoutMs);
    if (clientsTurn) this.waitingSince = 0;
    else if (this.waitingSince === 0) this.waitingSince = performance.now();
  }

  private readonly onUpstreamDrain = (): void => {
    this.upstreamFull = false;
    if (this.ex) this.exchangeTimer();
  };

  get alive(): boolean { return !this.dead && !this.socket.destroyed; }

  /** Start an exchange: write the request head. The body, if any, follows through write()/endRequest(). */
  send(head: string, ex: Exchange, opts: { bodyless: boolean; hasBody: boolean }): void {
    this.ex = ex;
    this.gotBytes = false;
    this.requestDone = !opts.hasBody;
    this.parser.reset(opts.bodyless);
    this.bodyPending = opts.hasBody;
    this.upstreamFull = false;
    this.responding = false;
    this.headSeen = false;
    this.waitingSince = 0;
    this.exchangeTimer();
    this.socket.write(head, 'latin1');
  }

  /** Request body bytes; false when the upstream is not keeping up (wait for the socket's 'drain'). */
  write(chunk: Buffer | string): boolean {
    const ok = this.socket.write(chunk);
    if (!ok && !this.upstreamFull) {
      this.upstreamFull = true;
      this.socket.once('drain', this.onUpstreamDrain);
      this.exchangeTimer();
    }
    return ok;
  }

  /**
   * One chunk of a chunked request body with its size line and CRLF, in one write: three writes
   * each would let a client sending one-byte chunks cost three system calls per six bytes.
   */
  writeChunk(data: Buffer): boolean {
    this.socket.cork();
    this.socket.write(`${data.length.toString(16)}\r\n`, 'latin1');
    this.socket.write(data);
    const ok = this.write('\r\n');
    this.socket.uncork();
    return ok;
  }

  endRequest(): void {
    this.requestDone = true;
    this.bodyPending = false;
    if (this.ex) this.exchangeTimer();
    else if (this.parser.idle) this.owner.release(this, this.responseKeepAlive);
  }

  /** Stop reading the response while `ex`'s client catches up. */
  pause(ex: Exchange): void {
    if (ex !== this.ex || this.heldBy) return;
    this.heldBy = ex;
    this.socket.pause();
    this.exchangeTimer();
  }

  /** Read again; a no-op unless `ex` is the exchange that paused. */
  resume(ex: Exchange): void {
    if (this.heldBy !== ex) return;
    this.heldBy = null;
    this.socket.resume();
    if (this.ex) this.exchangeTimer();
  }

  /** Give up on the current exchange (the client went away): the connection cannot be reused. */
  abort(): void {
    this.ex = null;
    this.socket.destroy();
  }

  destroy(): void {
    this.dead = true;
    this.socket.destroy();
  }

  onInterim(status: number, headers: string[]): void { this.ex?.onInterim?.(status, headers); }

  onHead(head: ResponseHead): void {
    this.headSeen = true;
    // A response that starts before the request body is done (an early 413, say) is the upstream's to finish.
    if (this.bodyPending) { this.responding = true; this.exchangeTimer(); }
    this.ex?.onHead(head);
  }
  onBody(chunk: Buffer): void { this.ex?.onBody(chunk); }
  onEnd(keepAlive: boolean): void {
    const ex = this.ex;
    this.ex = null;
    this.served++;
    this.responseKeepAlive = keepAlive;
    this.setTimer(this.owner.idleTimeoutMs);
    // The response can end in the read that made its client push back: never pool a paused socket.
    if (this.heldBy) { this.heldBy = null; this.socket.resume(); }
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
      // Informational (1xx) heads reset the socket's inactivity timer, but answer nothing: an
      // upstream that sends only those must still be cut at its timeout, not hold the client forever.
      if (this.ex === ex && !this.headSeen && this.waitingSince && performance.now() - this.waitingSince >= this.owner.timeoutMs) {
        this.fail('ETIMEDOUT', 'upstream sent no final response within its timeout, only informational ones');
        return;
      }
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
