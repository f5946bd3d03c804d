/**
 * One proxied request: route, pick an endpoint, send the head, stream the body both ways,
 * retry what is safe to retry, and answer 4xx/5xx with a short body when nothing can serve.
 * A class rather than closures: one object per request is cheaper on the hot path.
 */
import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import { constants as h2constants, Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Endpoint } from './endpoint.js';
import type { Http1Request, Http1Response } from './http1/message.js';
import { authorityOf, headerCount, requestHead, responseHeaders } from './headers.js';
import { transferCodingRefusal } from './framing.js';
import { ambiguousTarget, originForm, pathOf, routingPath, targetAuthority } from './path.js';
import type { Pick, Pool } from './pool.js';
import type { CompiledRoute } from './router.js';
import { normalizeHost } from './router.js';
import type { Runtime } from './runtime.js';
import { refusedByParser, type ProxyContext } from './context.js';
import { peerAddress } from './trust.js';
import type { Connection, Exchange, UpstreamError } from './upstream/connection.js';
import { ParseError, type ResponseHead } from './upstream/parser.js';

/** A request and its response: sluice's own HTTP/1.1 ones, or node:http2's. */
export type Req = Http1Request | Http2ServerRequest;
export type Res = Http1Response | Http2ServerResponse;

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
/** Methods whose requests carry content: an empty one says so with `Content-Length: 0`. */
const BODY_EXPECTED = new Set(['POST', 'PUT', 'PATCH']);
/** Refusals whose request may still have bytes in the connection that nothing will read. */
const CLOSE_AFTER = new Set([400, 413, 431, 501]);
/** A stale keep-alive connection is not the endpoint's fault: such retries don't count against `retries`. */
const MAX_STALE_RETRIES = 3;

/** The short body of every reply sluice makes itself: `502 Bad Gateway`. */
function shortBody(status: number): string {
  return `${status} ${STATUS_CODES[status] ?? ''}\n`;
}

/** The same reply as raw bytes, closing the connection: for sockets with no response object (refused heads, upgrades). */
export function rawShortReply(status: number, extraHeaders: Record<string, string> = {}): string {
  const body = shortBody(status);
  const extra = Object.entries(extraHeaders).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
}

export function shortReply(res: Res, status: number, requestIdHeader: string, requestId: string, extra?: Record<string, string>): void {
  const body = shortBody(status);
  const headers: Record<string, string | number> = { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), [requestIdHeader]: requestId, ...extra };
  if (res.headersSent) { res.destroy(); return; }
  res.writeHead(status, headers);
  res.end(body);
}

/** What an attempt says about its endpoint: the client's doings (a body over the limit, leaving) say nothing. */
type Outcome = 'ok' | 'failed' | 'neutral';

export class ProxyRequest implements Exchange {
  private readonly rt: Runtime;
  private readonly t0 = performance.now();
  private tHead = 0;
  private route: CompiledRoute<Pool> | undefined;
  private pick: Pick | undefined;
  private conn: Connection | undefined;
  private head = '';
  private requestId = '';
  private method: string;
  private host = '';
  private path = '';
  private clientIp: string;
  private hasBody = false;
  private chunked = false;
  private bodyStarted = false;
  private attempts = 0;
  private staleRetries = 0;
  private tried: Set<Endpoint> | undefined;
  private holdsBudget = false;
  private discard = false;
  private headSent = false;
  private status = 0;
  private bytes = 0;
  private finished = false;
  private responded = false;
  private upstreamError: string | undefined;
  private held: Buffer | undefined;
  /** The client is not taking response bytes: the upstream is paused until it does. */
  private stalled = false;
  private sendTimer: NodeJS.Timeout | undefined;
  private sendTimedOut = false;
  private onClientDrain: (() => void) | undefined;
  /** The request came over HTTP/2 (its object tells: HTTP/1.1 requests are Http1Request). */
  private readonly h2: boolean;

  constructor(private readonly ctx: ProxyContext, private readonly req: Req, private readonly res: Res, private readonly proto: 'http' | 'https', private readonly expectsContinue = false) {
    this.rt = ctx.runtime;
    this.h2 = req instanceof Http2ServerRequest;
    this.method = req.method ?? 'GET';
    this.clientIp = peerAddress(req.socket?.remoteAddress);
  }

  start(): void {
    const { req, rt } = this;
    const limits = rt.config.limits;
    this.res.once('close', this.onClientClose);
    const h2 = this.h2;
    if (headerCount(req.rawHeaders, h2) > limits.maxHeaders) return this.refuse(431);
    let cl = req.headers['content-length'];
    // An HTTP/2 POST can end with its headers and say no length; the HTTP/1.1 sent upstream must
    // say `Content-Length: 0` (RFC 9110 §8.6), or some upstreams answer 411.
    if (cl === undefined && h2 && BODY_EXPECTED.has(this.method) && (req as Http2ServerRequest).stream.endAfterHeaders) cl = '0';
    const te = req.headers['transfer-encoding'];
    const badCoding = h2 ? undefined : transferCodingRefusal(te, req.httpVersion);
    if (badCoding) return this.refuse(badCoding);
    if (cl !== undefined) {
      if (Number(cl) > limits.maxBodyBytes) return this.refuse(413);
      this.hasBody = cl !== '0';
    } else if (te !== undefined || (h2 && !(req as Http2ServerRequest).stream.endAfterHeaders)) {
      this.hasBody = true;
      this.chunked = true;
    }
    const target = originForm(req.url ?? '/');
    this.path = pathOf(target);
    // An absolute-form target names the host, and its Host header is ignored (RFC 9112 §3.2.2).
    const authority = h2 ? (req as Http2ServerRequest).authority : targetAuthority(req.url ?? '/');
    this.host = normalizeHost(authority ?? req.headers.host);
    const trusted = rt.trusted.has(this.clientIp);
    const built = requestHead({
      method: this.method, url: target, rawHeaders: req.rawHeaders, authority, clientIp: this.clientIp,
      trusted, proto: this.proto, httpVersion: req.httpVersion, requestIdHeader: rt.config.requestIdHeader, via: rt.config.via,
      // A declared empty body keeps its `Content-Length: 0`: some upstreams answer a POST without one 411.
      body: this.chunked ? 'chunked' : cl !== undefined ? 'length' : 'none', contentLength: cl,
      fallbackHost: h2 ? undefined : () => authorityOf(req.socket?.localAddress, req.socket?.localPort, this.proto),
    }, randomUUID);
    this.head = built.head;
    this.requestId = built.requestId;
    if (ambiguousTarget(built.hosts, target, authority ?? req.headers.host, this.method)) return this.refuse(400);
    this.route = rt.router.match({ method: this.method, host: this.host, path: routingPath(this.path), headers: req.headers });
    if (!this.route) return this.refuse(404);
    this.attempt();
  }

  private refuse(status: number): void {
    this.status = status;
    this.responded = true;
    if (!this.requestId) this.requestId = randomUUID();
    // A refused request's body is not read: close rather than leave it in the connection.
    const extra = this.ctx.draining || this.hasBody || CLOSE_AFTER.has(status) ? { connection: 'close' } : undefined;
    shortReply(this.res, status, this.rt.config.requestIdHeader, this.requestId, this.h2 ? undefined : extra);
    if (this.hasBody && !this.h2) this.req.resume();
  }

  private attempt(): void {
    const pool = this.route!.pool;
    this.pick = pool.pick({ headers: this.req.headers, clientIp: this.clientIp }, this.tried);
    if (!this.pick) return this.refuse(503);
    this.attempts++;
    this.pick.ep.active++;
    this.pick.ep.conns.acquire(this.onConn);
  }

  private readonly onConn = (err: UpstreamError | null, conn?: Connection): void => {
    if (this.finished) { // the client left while we waited
      this.pick!.ep.active--;
      if (conn) conn.destroy();
      return;
    }
    if (err || !conn) return this.onError(err!);
    this.conn = conn;
    conn.send(this.head, this, { bodyless: this.method === 'HEAD', hasBody: this.hasBody });
    if (this.hasBody) this.streamBody(conn);
  };

  private streamBody(conn: Connection): void {
    const { req } = this;
    const max = this.rt.config.limits.maxBodyBytes;
    let seen = 0;
    this.bodyStarted = true;
    // The client waits for this before it sends the body (the upstream's own 100 is not relayed).
    if (this.expectsContinue) this.res.writeContinue();
    req.on('data', (d: Buffer) => {
      seen += d.length;
      if (seen > max) {
        req.removeAllListeners('data');
        conn.abort();
        this.releaseEndpoint('neutral');
        this.conn = undefined;
        return this.refuse(413);
      }
      const ok = this.chunked ? conn.writeChunk(d) : conn.write(d);
      if (!ok) { req.pause(); conn.socket.once('drain', () => req.resume()); }
    });
    req.once('end', () => {
      if (this.conn !== conn) return;
      if (this.chunked) conn.write('0\r\n\r\n');
      conn.endRequest();
    });
  }

  /**
   * 103 Early Hints go on to the client (its Link headers: what a browser can act on before the
   * response); 100 and 102 are the upstream's business with sluice, which speaks to the client itself.
   */
  onInterim(status: number, headers: string[]): void {
    if (status !== 103 || this.headSent || this.discard || this.finished) return;
    // An HTTP/1.0 client knows no 1xx and would take the hint for the response (RFC 9110 §15.2).
    if (!this.h2 && this.req.httpVersionMinor === 0) return;
    const link: string[] = [];
    for (let i = 0; i < headers.length; i += 2) if (headers[i].length === 4 && headers[i].toLowerCase() === 'link') link.push(headers[i + 1]);
    if (!link.length) return;
    // Node takes one link per value: a header that joins several with commas is split back.
    const links = link.flatMap((v) => v.split(/,\s*(?=<)/));
    try { this.res.writeEarlyHints({ link: links }); } catch { /* a Link refused as invalid: the hint is only a hint */ }
  }

  onHead(h: ResponseHead): void {
    const pick = this.pick!;
    this.tHead = performance.now();
    this.ctx.metrics.upstreamResult(pick.ep, this.route!.pool.name, pick.ep.key, h.status, (this.tHead - this.t0) / 1000);
    if (h.status >= 500 && h.status <= 504 && this.mayRetry(String(h.status))) { this.discard = true; return; }
    this.status = h.status;
    // The client gets this upstream's answer: an earlier attempt's failure (retried, or a stale
    // connection resent) is not this request's error; `attempts` tells that there were others.
    this.upstreamError = undefined;
    const headers = responseHeaders(h.headers, this.rt.config.via, this.rt.config.requestIdHeader);
    headers.push(this.rt.config.requestIdHeader, this.requestId);
    if (pick.setCookie) {
      const s = this.route!.pool.spec.sticky!;
      headers.push('set-cookie', `${s.cookie}=${pick.ep.id}; Path=/; HttpOnly${s.maxAgeS ? `; Max-Age=${s.maxAgeS}` : ''}`);
    }
    const res = this.res;
    // Header names and values that cannot be relayed (a bare LF, say) are refused by throwing;
    // thrown from here it reaches the connection as a parse error, and the client gets a 502
    // instead of a reset. Http1Response.writeHead checks everything before it keeps anything.
    try {
      this.writeHead(res, h, headers);
    } catch (e) {
      if (res instanceof Http2ServerResponse) res.removeHeader('content-length');
      throw new ParseError(`upstream response cannot be relayed: ${(e as Error).message}`);
    }
    this.headSent = true;
  }

  private writeHead(res: Res, h: ResponseHead, headers: string[]): void {
    if (res instanceof Http2ServerResponse) {
      const obj: Record<string, string | string[]> = {};
      for (let i = 0; i < headers.length; i += 2) {
        const k = headers[i].toLowerCase();
        const prev = obj[k];
        obj[k] = prev === undefined ? headers[i + 1] : Array.isArray(prev) ? [...prev, headers[i + 1]] : [prev, headers[i + 1]];
      }
      res.writeHead(h.status, obj);
    } else {
      if (this.ctx.draining) headers.push('connection', 'close');
      res.writeHead(h.status, h.reason || undefined, headers);
    }
  }

  /**
   * Body bytes are held until the end of the socket read that brought them: when the response
   * ends in the same read (most small responses), head and body leave in one res.end().
   */
  onBody(chunk: Buffer): void {
    if (this.discard) return;
    this.bytes += chunk.length;
    if (this.held) this.write(this.held);
    this.held = chunk;
  }

  flush(): void {
    const c = this.held;
    if (!c) return;
    this.held = undefined;
    this.write(c);
  }

  private write(chunk: Buffer): void {
    if (this.res.write(chunk) || this.stalled) return;
    // The client reads slower than the upstream sends: stop reading the upstream until it catches
    // up (the upstream's timer stops too), but give up on a client that takes nothing for timeouts.send.
    this.stalled = true;
    this.conn?.pause(this);
    // Made on the first stall only: most responses never stall, and a closure per request would show.
    this.res.once('drain', this.onClientDrain ??= () => { this.stalled = false; this.conn?.resume(this); });
    // One timer per request, restarted at each stall (a cleared timer cannot be refreshed, so it is left to run out).
    if (this.sendTimer) this.sendTimer.refresh();
    else this.sendTimer = setTimeout(() => this.sendTimeout(), this.rt.config.timeouts.sendMs);
  }

  private sendTimeout(): void {
    if (!this.stalled) return; // it ran out after the client caught up
    this.sendTimedOut = true;
    this.upstreamError ??= 'ESENDTIMEOUT';
    this.res.destroy();
  }

  onEnd(): void {
    this.conn = undefined;
    if (this.discard) {
      this.discard = false;
      this.releaseEndpoint('failed');
      return this.retry();
    }
    this.releaseEndpoint(this.status < 502 || this.status > 504 ? 'ok' : 'failed');
    this.responded = true;
    const last = this.held;
    this.held = undefined;
    if (last) this.res.end(last); else this.res.end();
  }

  onError(err: UpstreamError): void {
    const pool = this.route!.pool;
    this.conn = undefined;
    this.upstreamError = err.code;
    const ep = this.pick!.ep;
    if (!err.stale) this.ctx.metrics.upstreamResult(ep, pool.name, ep.key, err.code);
    if (this.finished) { this.releaseEndpoint('neutral'); return; }
    // A stale keep-alive race, or a wait in our own queue, says nothing about the endpoint.
    this.releaseEndpoint(err.stale || err.code === 'EQUEUE' || err.code === 'ECLOSED' ? 'neutral' : 'failed');
    // A truncated response must look truncated. It is logged with the status the client got and
    // the upstream's error (as nginx and HAProxy's `SD` do), not as a client that left (499).
    if (this.headSent) { this.responded = true; this.res.destroy(); return; }
    // Only an idempotent request is sent again: a POST's head was out, and the upstream may have acted
    // on it before the connection went (Go's and undici's clients do not replay one either).
    if (err.stale && !this.bodyStarted && IDEMPOTENT.has(this.method) && this.staleRetries < MAX_STALE_RETRIES) { this.staleRetries++; return this.attempt(); }
    // `discard`: a 502/503 already chosen for a retry failed while its body was being skipped.
    if (this.discard || (!err.gotBytes && this.mayRetry(retryReason(err.code)))) { this.discard = false; return this.retry(); }
    this.refuse(err.code === 'ETIMEDOUT' ? 504 : err.code === 'EQUEUE' || err.code === 'ECLOSED' ? 503 : 502);
  }

  private releaseEndpoint(outcome: Outcome): void {
    const ep = this.pick!.ep;
    ep.active--;
    if (outcome === 'ok') this.route!.pool.success(ep);
    else if (outcome === 'failed') this.route!.pool.failure(ep);
  }

  /** Timeouts are not retried by default: each attempt may take the whole `timeout` (retryOn: response-timeout opts in). */
  private mayRetry(reason: string): boolean {
    const pool = this.route!.pool;
    // Attempts resent after a stale keep-alive race are not retries: they leave `retries` whole.
    if (this.bodyStarted || !IDEMPOTENT.has(this.method) || this.attempts - this.staleRetries > pool.spec.retries || !pool.retryOn.has(reason)) return false;
    if (!this.holdsBudget) {
      if (!this.ctx.budget.acquire()) return false;
      this.holdsBudget = true;
    }
    return true;
  }

  private retry(): void {
    (this.tried ??= new Set()).add(this.pick!.ep);
    this.ctx.metrics.retry(this.route!.pool.name);
    this.attempt();
  }

  /**
   * An HTTP/2 stream reset for a protocol error (nghttp2 does so when the body is longer or
   * shorter than its content-length): the client sent a bad request, it did not leave.
   */
  private protocolError(): boolean {
    if (!this.h2) return false;
    if ((this.req as Http2ServerRequest).stream?.rstCode !== h2constants.NGHTTP2_PROTOCOL_ERROR) return false;
    this.upstreamError ??= 'ERR_HTTP2_PROTOCOL_ERROR';
    this.ctx.metrics.clientError(400);
    return true;
  }

  private readonly onClientClose = (): void => {
    this.finished = true;
    clearTimeout(this.sendTimer);
    const completed = this.responded && !this.sendTimedOut;
    if (!completed && this.conn) {
      // The client went away mid-exchange: the upstream connection is in an unknown state.
      this.conn.abort();
      this.conn = undefined;
      this.pick!.ep.active--;
    }
    if (this.holdsBudget) this.ctx.budget.release();
    const status = completed ? this.status : refusedByParser.get(this.res) ?? (this.protocolError() ? 400 : 499);
    const seconds = (performance.now() - this.t0) / 1000;
    const route = this.route?.spec.name ?? '-';
    this.ctx.metrics.request(this.route, route, this.route?.pool.name ?? '-', status, seconds);
    if (this.rt.config.accessLog) {
      // pino leaves out keys whose value is undefined: one literal serves lines with and without an error.
      this.ctx.accessLog.info({
        method: this.method, host: this.host, path: this.path, status, bytes: this.bytes, route,
        upstream: this.pick?.ep.key, attempts: this.attempts, ms: Math.round(seconds * 1e6) / 1e3,
        upstreamMs: this.tHead ? Math.round((this.tHead - this.t0) * 1e3) / 1e3 : undefined, client: this.clientIp, id: this.requestId,
        error: this.upstreamError,
      });
    }
    this.ctx.requestDone();
  };
}

/** The `retryOn` word for a failed attempt that got no response byte. */
function retryReason(code: UpstreamError['code']): string {
  switch (code) {
    case 'ECONNECT': case 'EQUEUE': case 'ECLOSED': return 'conn-failure';
    case 'ETIMEDOUT': return 'response-timeout';
    default: return 'empty-response';
  }
}
