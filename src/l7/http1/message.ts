/**
 * The request and response of one HTTP/1.1 exchange on a client connection. They have the shape
 * of node:http's IncomingMessage and ServerResponse where the proxy uses them (so one ProxyRequest
 * serves these and node:http2's compatibility objects alike), and none of their stream machinery:
 * a response head leaves with the first body bytes in one write.
 */
import { EventEmitter } from 'node:events';
import { STATUS_CODES, type IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import { TOKEN } from '../headers.js';
import type { RequestHead } from './parser.js';

/** What a message needs of its connection. */
export interface MessageOwner {
  readonly socket: Socket;
  pauseReading(): void;
  resumeReading(): void;
  /** The response is out (`keepAlive`: the connection may carry another request). */
  responseDone(keepAlive: boolean): void;
  readonly keepAliveS: number;
  readonly draining: boolean;
  /** The request has been read to its end. */
  readonly requestRead: boolean;
}

/** Node keeps the first of these when a request repeats them, and joins others with `, `. */
const FIRST_WINS = new Set(['age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host', 'if-modified-since',
  'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'referer', 'retry-after', 'server', 'user-agent']);
/** Body bytes held for a reader not yet there (the upstream connection is being found) before the client is paused. */
const QUEUE_BYTES = 64 * 1024;

export class Http1Request extends EventEmitter {
  readonly method: string;
  readonly url: string;
  readonly httpVersion: '1.0' | '1.1';
  readonly httpVersionMajor = 1;
  readonly httpVersionMinor: 0 | 1;
  readonly rawHeaders: string[];
  private dict: IncomingHttpHeaders | undefined;
  private queue: Buffer[] | undefined;
  private queued = 0;
  private flowing = false;
  private ended = false;
  private endEmitted = false;
  private flushScheduled = false;
  /** Reading stopped because the queue grew past QUEUE_BYTES. */
  private full = false;

  constructor(head: RequestHead, private readonly owner: MessageOwner) {
    super();
    this.method = head.method;
    this.url = head.url;
    this.httpVersionMinor = head.minor;
    this.httpVersion = head.minor === 1 ? '1.1' : '1.0';
    this.rawHeaders = head.rawHeaders;
  }

  get socket(): Socket { return this.owner.socket; }

  /** Lower-case names, repeats joined as node:http joins them; built when first asked for. */
  get headers(): IncomingHttpHeaders {
    if (this.dict) return this.dict;
    // No prototype: a header named `constructor` or `__proto__` is a header like any other.
    const d: Record<string, string | string[]> = Object.create(null);
    const raw = this.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const k = raw[i].toLowerCase();
      const v = raw[i + 1];
      const prev = d[k];
      if (prev === undefined) d[k] = k === 'set-cookie' ? [v] : v;
      else if (k === 'set-cookie') (prev as string[]).push(v);
      else if (k === 'cookie') d[k] = `${prev}; ${v}`;
      else if (!FIRST_WINS.has(k)) d[k] = `${prev}, ${v}`;
    }
    return (this.dict = d);
  }

  /** A `data` listener starts the flow, as on a Readable. */
  override on(event: string | symbol, fn: (...args: any[]) => void): this {
    super.on(event, fn);
    if (event === 'data') this.resume();
    return this;
  }

  pause(): this {
    this.flowing = false;
    this.owner.pauseReading();
    return this;
  }

  resume(): this {
    this.flowing = true;
    this.owner.resumeReading();
    if ((this.queue || (this.ended && !this.endEmitted)) && !this.flushScheduled) {
      // Later, as a Readable does: the `end` listener is usually added right after the `data` one.
      this.flushScheduled = true;
      process.nextTick(() => { this.flushScheduled = false; this.flush(); });
    }
    return this;
  }

  /** From the connection: body bytes of this request. */
  push(chunk: Buffer): void {
    if (this.flowing && !this.queue) { this.emit('data', chunk); return; }
    (this.queue ??= []).push(chunk);
    this.queued += chunk.length;
    if (this.queued > QUEUE_BYTES && !this.full) { this.full = true; this.owner.pauseReading(); }
  }

  /** From the connection: the body is complete. */
  finish(): void {
    this.ended = true;
    if (this.flowing && !this.queue) { this.endEmitted = true; this.emit('end'); }
  }

  private flush(): void {
    while (this.flowing && this.queue) {
      const q = this.queue;
      this.queue = undefined;
      this.queued = 0;
      for (let i = 0; i < q.length; i++) {
        this.emit('data', q[i]);
        if (!this.flowing) { this.queue = q.slice(i + 1); if (!this.queue.length) this.queue = undefined; else for (const c of this.queue) this.queued += c.length; return; }
      }
    }
    if (!this.flowing) return;
    // The queue is out: read again if it had grown too long.
    if (this.full) { this.full = false; this.owner.resumeReading(); }
    if (this.ended && !this.endEmitted) { this.endEmitted = true; this.emit('end'); }
  }
}

/** As node:http's own check: nothing a header line could be split or ended by. */
const INVALID_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

let dateSecond = 0;
let dateText = '';
function httpDate(): string {
  const s = Math.floor(Date.now() / 1000);
  if (s !== dateSecond) { dateSecond = s; dateText = new Date(s * 1000).toUTCString(); }
  return dateText;
}

class HeaderError extends TypeError {
  constructor(readonly code: string, message: string) { super(message); }
}

type HeaderInput = string[] | Record<string, string | number | string[]>;

export class Http1Response extends EventEmitter {
  headersSent = false;
  statusCode = 200;
  statusMessage = '';
  writableEnded = false;
  private head: string | undefined;
  private chunked = false;
  private hasBody = true;
  private keepAlive: boolean;
  private closeEmitted = false;

  constructor(private readonly owner: MessageOwner, private readonly req: Http1Request, requestKeepAlive: boolean) {
    super();
    this.keepAlive = requestKeepAlive;
  }

  get socket(): Socket { return this.owner.socket; }

  writeHead(status: number, reasonOrHeaders?: string | HeaderInput, maybeHeaders?: HeaderInput): this {
    if (this.headersSent) throw new HeaderError('ERR_HTTP_HEADERS_SENT', 'Cannot write headers after they are sent to the client');
    const reason0 = typeof reasonOrHeaders === 'string' ? reasonOrHeaders : undefined;
    const headers = typeof reasonOrHeaders === 'string' || reasonOrHeaders === undefined ? maybeHeaders : reasonOrHeaders;
    if (!Number.isInteger(status) || status < 100 || status > 999) throw new HeaderError('ERR_HTTP_INVALID_STATUS_CODE', `Invalid status code: ${status}`);
    const reason = reason0 ?? STATUS_CODES[status] ?? 'unknown';
    if (INVALID_VALUE.test(reason)) throw new HeaderError('ERR_INVALID_CHAR', 'Invalid character in statusMessage');
    let text = `HTTP/1.1 ${status} ${reason}\r\n`;
    let length = false;
    let te = false;
    let date = false;
    let close = false;
    const add = (name: string, value: string): void => {
      if (!TOKEN.test(name)) throw new HeaderError('ERR_INVALID_HTTP_TOKEN', `Header name must be a valid HTTP token ["${name}"]`);
      if (INVALID_VALUE.test(value)) throw new HeaderError('ERR_INVALID_CHAR', `Invalid character in header content ["${name}"]`);
      const n = name.length;
      if (n === 14 || n === 17 || n === 4 || n === 10) {
        const lower = name.toLowerCase();
        if (lower === 'content-length') length = true;
        else if (lower === 'transfer-encoding') te = true;
        else if (lower === 'date') date = true;
        else if (lower === 'connection') { if (/\bclose\b/i.test(value)) close = true; return; }
      }
      text += `${name}: ${value}\r\n`;
    };
    if (Array.isArray(headers)) {
      for (let i = 0; i < headers.length; i += 2) add(headers[i], String(headers[i + 1]));
    } else if (headers) {
      for (const k of Object.keys(headers)) {
        const v = headers[k];
        if (Array.isArray(v)) for (const x of v) add(k, x); else add(k, String(v));
      }
    }
    this.statusCode = status;
    this.statusMessage = reason;
    this.hasBody = this.req.method !== 'HEAD' && status !== 204 && status !== 304 && status >= 200;
    if (te) this.chunked = true;
    else if (!length && this.hasBody && status >= 200) {
      // No length: chunked for an HTTP/1.1 client, the end of the connection for an HTTP/1.0 one.
      if (this.req.httpVersionMinor === 1) { this.chunked = true; text += 'Transfer-Encoding: chunked\r\n'; } else this.keepAlive = false;
    }
    // An answer before the request's end (an early 413, an upstream that did not wait for the body)
    // leaves unread bytes in the connection: it closes after this response, and says so.
    if (close || this.owner.draining || !this.owner.requestRead) this.keepAlive = false;
    if (!date) text += `Date: ${httpDate()}\r\n`;
    text += this.keepAlive ? `Connection: keep-alive\r\nKeep-Alive: timeout=${this.owner.keepAliveS}\r\n\r\n` : 'Connection: close\r\n\r\n';
    this.head = text;
    this.headersSent = true;
    return this;
  }

  /** 100 Continue: the client may send the body it holds back. */
  writeContinue(): void {
    this.owner.socket.write('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');
  }

  writeEarlyHints(hints: { link: string[] }): void {
    const link = hints.link.join(', ');
    if (INVALID_VALUE.test(link)) throw new HeaderError('ERR_INVALID_CHAR', 'Invalid character in header content ["link"]');
    this.owner.socket.write(`HTTP/1.1 103 Early Hints\r\nLink: ${link}\r\n\r\n`, 'latin1');
  }

  write(chunk: Buffer | string): boolean {
    if (!this.headersSent) this.writeHead(this.statusCode);
    return this.send(chunk, false);
  }

  end(chunk?: Buffer | string): this {
    if (this.writableEnded) return this;
    if (!this.headersSent) this.writeHead(this.statusCode);
    this.writableEnded = true;
    this.send(chunk, true);
    return this;
  }

  destroy(): void {
    this.owner.socket.destroy();
  }

  /** From the connection: the socket closed (after this response, or before it was out). */
  closed(): void {
    if (this.closeEmitted) return;
    this.closeEmitted = true;
    this.emit('close');
  }

  private send(chunk: Buffer | string | undefined, last: boolean): boolean {
    const sock = this.owner.socket;
    let body: Buffer | string | undefined = this.hasBody && chunk !== undefined && chunk.length > 0 ? chunk : undefined;
    let text = this.head ?? '';
    this.head = undefined;
    if (this.chunked && body !== undefined) {
      const len = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
      text += `${len.toString(16)}\r\n`;
    }
    const tail = (this.chunked && body !== undefined ? '\r\n' : '') + (this.chunked && last ? '0\r\n\r\n' : '');
    // Small bodies ride in the head's string: one write, one copy. Larger ones go beside it in one writev.
    if (body !== undefined && (typeof body === 'string' || body.length <= 4096)) {
      text += typeof body === 'string' ? Buffer.from(body).toString('latin1') : body.toString('latin1');
      body = undefined;
    }
    const onDone = last ? this.onFlushed : undefined;
    if (body === undefined) return sock.write(text + tail, 'latin1', onDone);
    sock.cork();
    if (text) sock.write(text, 'latin1');
    let ok = sock.write(body, tail ? undefined : onDone);
    if (tail) ok = sock.write(tail, 'latin1', onDone);
    sock.uncork();
    return ok;
  }

  private readonly onFlushed = (err?: Error | null): void => {
    if (err) return; // the socket's close ends this response
    this.emit('finish');
    this.closed();
    this.owner.responseDone(this.keepAlive);
  };
}
