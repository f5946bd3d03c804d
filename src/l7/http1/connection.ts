/**
 * Client connections of an HTTP/1.1 listener: one request at a time per connection (a pipelined
 * request waits, unread, until the response before it is out), keep-alive, the head and request
 * timeouts (slowloris) and the idle timeout, checked by one sweep per listener as node:http
 * checks them, and the hand-off of upgrades and CONNECT to their own handlers.
 */
import type { Socket } from 'node:net';
import { Http1Request, Http1Response, type MessageOwner } from './message.js';
import { RequestError, RequestParser, type RequestHead, type RequestSink } from './parser.js';

export interface Http1Handlers {
  request(req: Http1Request, res: Http1Response, expectsContinue: boolean): void;
  upgrade(req: Http1Request, socket: Socket, head: Buffer): void;
  connect(req: Http1Request, socket: Socket): void;
  /**
   * A request refused by the parser or a timeout: answer `status` and close. `res` is the
   * response of a request under way (its body was bad or late), if there is one.
   */
  clientError(socket: Socket, status: number, code: string, res?: Http1Response): void;
}

export interface Http1Limits {
  maxHeadBytes: number;
  headersMs: number;
  requestMs: number;
  keepAliveMs: number;
}

const enum Phase { Head, Body, Response, Idle, Closing }

/** RFC 9110 §10.1.1: only 100-continue is an expectation a server can meet (one member of the list, not a part of one). */
function onlyContinue(expect: string): boolean {
  return expect.split(',').every((e) => e.trim().toLowerCase() === '100-continue');
}

export class Http1Server {
  readonly connections = new Set<Http1Connection>();
  private sweep: NodeJS.Timeout | undefined;
  limits!: Http1Limits;

  constructor(readonly handlers: Http1Handlers, limits: Http1Limits, readonly isDraining: () => boolean) {
    this.setLimits(limits);
  }

  /** New connections take these at once; the timeouts apply to open ones from the next sweep. */
  setLimits(limits: Http1Limits): void {
    this.limits = limits;
    clearInterval(this.sweep);
    const every = Math.max(100, Math.min(1000, Math.floor(Math.min(limits.headersMs, limits.requestMs) / 4)));
    this.sweep = setInterval(() => this.check(performance.now()), every);
    this.sweep.unref();
  }

  accept = (socket: Socket): void => {
    this.connections.add(new Http1Connection(socket, this));
  };

  /** Connections with no request under way (drain). */
  closeIdle(): void {
    for (const c of this.connections) if (c.idle) c.socket.destroy();
  }

  destroyAll(): void {
    for (const c of this.connections) c.socket.destroy();
  }

  stop(): void { clearInterval(this.sweep); }

  private check(now: number): void {
    for (const c of this.connections) c.check(now, this.limits);
  }
}

export class Http1Connection implements RequestSink, MessageOwner {
  private readonly parser: RequestParser;
  private phase = Phase.Head;
  /** When the phase began: the head's first byte (or the connection), the last response's end. */
  private since = performance.now();
  private req: Http1Request | undefined;
  private res: Http1Response | undefined;
  /** Bytes that came after a complete request: the next one, read when this one is answered. */
  private held: Buffer | undefined;
  private handOff: Http1Request | undefined;
  private clientEnded = false;

  constructor(readonly socket: Socket, private readonly server: Http1Server) {
    this.parser = new RequestParser(this, server.limits.maxHeadBytes);
    socket.on('data', this.onData);
    socket.on('end', this.onSocketEnd);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
    socket.on('drain', this.onDrain);
  }

  get idle(): boolean { return this.phase === Phase.Idle || (this.phase === Phase.Head && this.parser.idle); }
  get keepAliveS(): number { return Math.floor(this.server.limits.keepAliveMs / 1000); }
  get draining(): boolean { return this.server.isDraining(); }
  get requestRead(): boolean { return this.phase === Phase.Response; }

  pauseReading(): void { this.socket.pause(); }
  resumeReading(): void { if (this.phase !== Phase.Response || !this.held) this.socket.resume(); }

  private readonly onData = (d: Buffer): void => {
    if (this.phase === Phase.Closing) return;
    if (this.phase === Phase.Response) {
      // The next request, pipelined: it waits for this response (read-ahead bounded by pausing).
      this.held = this.held ? Buffer.concat([this.held, d]) : d;
      this.socket.pause();
      return;
    }
    if (this.phase === Phase.Idle) { this.phase = Phase.Head; this.since = performance.now(); }
    let n: number;
    try {
      n = this.parser.execute(d);
    } catch (e) {
      if (!(e instanceof RequestError)) throw e;
      return this.refuse(e.status, e.code);
    }
    if (this.handOff) return this.upgrade(this.handOff, d.subarray(n));
    if (n < d.length) {
      this.held = d.subarray(n);
      this.socket.pause();
    }
  };

  onHead(h: RequestHead): void {
    // A request without a body is read once its head is: an answer made at once (a 404) may keep the connection.
    this.phase = h.hasBody ? Phase.Body : Phase.Response;
    const req = new Http1Request(h, this);
    if (h.handOff) { this.handOff = req; return; }
    const expectsContinue = h.expect !== undefined && h.minor === 1;
    // An expectation other than 100-continue cannot be met (RFC 9110 §10.1.1): 417, and the body is never read.
    if (expectsContinue && !onlyContinue(h.expect!)) return this.refuse(417, 'EXPECTATION_FAILED');
    const res = new Http1Response(this, req, h.keepAlive && !this.clientEnded);
    this.req = req;
    this.res = res;
    this.server.handlers.request(req, res, expectsContinue);
  }

  onBody(chunk: Buffer): void {
    this.req?.push(chunk);
  }

  onEnd(): void {
    if (this.phase === Phase.Body) this.phase = Phase.Response;
    this.req?.finish();
  }

  responseDone(keepAlive: boolean): void {
    const complete = this.phase === Phase.Response;
    this.req = undefined;
    this.res = undefined;
    // A request whose body was not all read (answered early, or refused) leaves unread bytes: close.
    if (!keepAlive || !complete) return this.close();
    this.parser.next();
    this.phase = Phase.Idle;
    this.since = performance.now();
    const held = this.held;
    this.held = undefined;
    if (held) this.onData(held);
    else if (this.clientEnded) this.close();
    // Still ours and waiting for bytes (not answering the next request, closing, or handed off).
    const p = this.phase as Phase;
    if (p === Phase.Idle || p === Phase.Head || p === Phase.Body) this.socket.resume();
  }

  check(now: number, limits: Http1Limits): void {
    const age = now - this.since;
    switch (this.phase) {
      case Phase.Idle:
        if (age > limits.keepAliveMs) this.socket.destroy();
        break;
      case Phase.Head:
        if (age > Math.min(limits.headersMs, limits.requestMs)) this.refuse(408, 'ERR_HTTP_REQUEST_TIMEOUT');
        break;
      case Phase.Body:
        if (age > limits.requestMs) this.refuse(408, 'ERR_HTTP_REQUEST_TIMEOUT');
        break;
    }
  }

  /** Answered by the listener, then nothing more is read: the request's bytes cannot be trusted to end where it says. */
  private refuse(status: number, code: string): void {
    const res = this.res;
    this.phase = Phase.Closing;
    this.socket.pause();
    this.server.handlers.clientError(this.socket, status, code, res);
  }

  private upgrade(req: Http1Request, head: Buffer): void {
    this.handOff = undefined;
    this.phase = Phase.Closing; // no longer ours
    const s = this.socket;
    // Bytes that come before the upstream answers are the new protocol's: they wait in the
    // socket, unread, until the tunnel takes them (unheard, a flowing socket would drop them).
    s.pause();
    s.off('data', this.onData);
    s.off('end', this.onSocketEnd);
    s.off('error', this.onError);
    s.off('close', this.onClose);
    s.off('drain', this.onDrain);
    this.server.connections.delete(this);
    if (req.method === 'CONNECT') this.server.handlers.connect(req, s);
    else this.server.handlers.upgrade(req, s, head);
  }

  /** Our end of the connection; a client that does not close its own within a second is cut. */
  private close(): void {
    this.phase = Phase.Closing;
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  private readonly onSocketEnd = (): void => {
    this.clientEnded = true;
    switch (this.phase) {
      case Phase.Idle: return this.close();
      case Phase.Head:
        // A head cut short by the client's end is a bad request; no head at all, a client done.
        if (this.parser.idle) return this.close();
        return this.refuse(400, 'HPE_INVALID_EOF_STATE');
      case Phase.Body:
        // It left in the middle of its body: its request's line says 499.
        this.socket.destroy();
        return;
      default: // Response: answered, then closed (responseDone)
    }
  };

  private readonly onError = (): void => { this.socket.destroy(); };
  private readonly onDrain = (): void => { this.res?.emit('drain'); };

  private readonly onClose = (): void => {
    this.phase = Phase.Closing;
    this.server.connections.delete(this);
    const res = this.res;
    this.req = undefined;
    this.res = undefined;
    res?.closed();
  };
}
