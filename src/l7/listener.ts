/**
 * One configured listener: plain HTTP/1.1, HTTPS, or HTTPS with HTTP/2 by ALPN (HTTP/1.1
 * still offered). Plain and HTTPS listeners speak HTTP/1.1 through sluice's own server side
 * (http1/); on an HTTP/2 listener, node:http2 serves both protocols. Requests that a parser
 * refuses (bad or ambiguous framing, oversized heads, slow heads) are answered here with the
 * right 4xx, get an access line, and never reach a pool.
 */
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import { createSecureServer, Http2ServerRequest, type Http2SecureServer, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2';
import { createServer as createNet, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTls } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { L7Config, ListenerSpec } from './config.js';
import { refusedByParser, type ProxyContext } from './context.js';
import { ProxyRequest, rawShortReply } from './proxy.js';
import { CertStore, type LoadedCerts } from './tls.js';
import { peerAddress } from './trust.js';
import { tunnel } from './tunnel.js';
import { Http1Server, type Http1Limits } from './http1/connection.js';
import type { Http1Request, Http1Response } from './http1/message.js';

type AnyServer = NetServer | Http2SecureServer;

function clientErrorStatus(code: string | undefined): number {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW': return 431;
    case 'ERR_HTTP_REQUEST_TIMEOUT': case 'HPE_HEADERS_TIMEOUT': return 408;
    default: return 400;
  }
}

function h1Limits(config: L7Config): Http1Limits {
  return { maxHeadBytes: config.limits.maxHeaderBytes, headersMs: config.timeouts.headersMs, requestMs: config.timeouts.requestMs, keepAliveMs: config.timeouts.keepAliveMs };
}

function h2Settings(config: L7Config): { maxHeaderListSize: number; maxConcurrentStreams: number } {
  return { maxHeaderListSize: config.limits.maxHeaderBytes, maxConcurrentStreams: config.limits.maxConcurrentStreams };
}

export class Listener {
  readonly server: AnyServer;
  readonly key: string;
  readonly certs?: CertStore;
  /** sluice's own HTTP/1.1 server side (plain and HTTPS listeners). */
  private readonly h1?: Http1Server;
  private readonly sessions = new Set<ServerHttp2Session>();
  private readonly sockets = new Set<Duplex>();
  /** HTTP/1.1 on an HTTP/2 server: Node's head timeout does not apply there, so it is done here. */
  private readonly guards = new Map<Duplex, NodeJS.Timeout>();
  private timeouts: L7Config['timeouts'];

  constructor(readonly spec: ListenerSpec, config: L7Config, private readonly ctx: ProxyContext) {
    this.key = listenerKey(spec);
    this.timeouts = config.timeouts;
    const proto = spec.tls ? 'https' : 'http';
    const onRequest = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse, expectsContinue = false) => {
      // Counted here, before anything can fail, so a drain waits for every request.
      ctx.requestStarted();
      const guard = this.guards.size === 0 || req instanceof Http2ServerRequest ? undefined : this.guards.get(req.socket as Duplex);
      if (guard) {
        clearTimeout(guard);
        this.guards.delete(req.socket as Duplex);
        res.once('finish', () => this.guardHead(req.socket as Duplex, this.timeouts.keepAliveMs + this.timeouts.headersMs));
      }
      new ProxyRequest(ctx, req, res, proto, expectsContinue).start();
    };
    const h1 = {
      maxHeaderSize: config.limits.maxHeaderBytes,
      headersTimeout: config.timeouts.headersMs,
      requestTimeout: config.timeouts.requestMs,
      keepAliveTimeout: config.timeouts.keepAliveMs,
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(config.timeouts.headersMs / 4))),
      noDelay: true,
    };
    if (spec.tls?.http2) {
      this.certs = new CertStore(spec.tls.certs);
      const tlsOpts = { ...this.certs.defaultPem, SNICallback: this.certs.sniCallback, handshakeTimeout: config.timeouts.headersMs };
      {
        const s = createSecureServer({
          ...tlsOpts, ...h1, allowHTTP1: true, maxSessionMemory: 20, settings: h2Settings(config),
          // Node refuses (resets) streams past this many header entries: leave limits.maxHeaders to answer 431 first.
          maxHeaderListPairs: Math.max(128, config.limits.maxHeaders + 8),
        });
        s.on('session', (sess) => { this.sessions.add(sess); sess.once('close', () => this.sessions.delete(sess)); });
        // HTTP/1.1 connections on an HTTP/2 server are not tracked by Node: keep them for drain.
        s.on('secureConnection', (sock: import('node:tls').TLSSocket) => {
          this.sockets.add(sock);
          sock.once('close', () => this.sockets.delete(sock));
          if (sock.alpnProtocol !== 'h2') this.guardHead(sock, this.timeouts.headersMs);
        });
        this.server = s;
      }
      this.server.on('request', onRequest);
      // Expect: 100-continue. Node would answer 100 at once, and a client whose body is then refused
      // (413, 404, no endpoint) would send all of it first; ProxyRequest says 100 only when it reads the body.
      this.server.on('checkContinue', (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => onRequest(req, res, true));
      this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => tunnel(ctx, req, socket, head, proto));
      this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.onClientError(err, socket));
      // HTTP/1.1 CONNECT comes with the bare socket, HTTP/2's with a response; unheard, Node drops the former silently.
      this.server.on('connect', (req: IncomingMessage | Http2ServerRequest, sockOrRes: Duplex | Http2ServerResponse) => this.refuseConnect(req, sockOrRes));
    } else {
      const h1s = new Http1Server({
        // They have the parts of IncomingMessage and ServerResponse that ProxyRequest uses (and tests hold it to that).
        request: (req, res, expectsContinue) => onRequest(req as unknown as IncomingMessage, res as unknown as ServerResponse, expectsContinue),
        upgrade: (req, socket, head) => tunnel(ctx, req, socket, head, proto),
        connect: (req, socket) => this.refuseConnect(req, socket),
        clientError: (socket, status, code, res) => this.refuseClient(socket, status, code, res),
      }, h1Limits(config), () => ctx.draining);
      this.h1 = h1s;
      // Half-open: a client may send its request and its FIN together, and still be answered.
      if (spec.tls) {
        this.certs = new CertStore(spec.tls.certs);
        this.server = createTls({ ...this.certs.defaultPem, SNICallback: this.certs.sniCallback, handshakeTimeout: config.timeouts.headersMs, allowHalfOpen: true },
          (sock) => { sock.setNoDelay(true); h1s.accept(sock); });
      } else {
        this.server = createNet({ allowHalfOpen: true, noDelay: true }, h1s.accept);
      }
    }
    this.applyLimits(config);
  }

  /** sluice is a reverse proxy, not a forward one: CONNECT gets 405 (as Node answers it on HTTP/2). */
  private refuseConnect(req: IncomingMessage | Http2ServerRequest | Http1Request, sockOrRes: Duplex | Http2ServerResponse): void {
    this.ctx.metrics.clientError(405);
    if (this.ctx.runtime.config.accessLog) {
      const host = req instanceof Http2ServerRequest ? req.authority : req.headers.host;
      this.ctx.accessLog.info({ method: req.method, host, status: 405, bytes: 0, route: '-', client: peerAddress(req.socket?.remoteAddress), error: 'CONNECT is not supported' });
    }
    // By its object: Node's HTTP/1 parser says 2 for `CONNECT a:1 HTTP/2.0` too.
    if (req instanceof Http2ServerRequest) {
      const res = sockOrRes as Http2ServerResponse;
      res.statusCode = 405;
      res.end();
      return;
    }
    const sock = sockOrRes as Duplex;
    sock.on('error', () => sock.destroy());
    sock.end(rawShortReply(405));
    setTimeout(() => sock.destroy(), 1000).unref();
  }

  /** Read the certificates of `spec` for this listener (throws if one does not load); nothing changes yet. */
  prepareCerts(spec: ListenerSpec): LoadedCerts | undefined {
    return this.certs && spec.tls ? CertStore.read(spec.tls.certs) : undefined;
  }

  /** Switch to prepared certificates in place: SNI lookups and the default (no-SNI) context both. */
  useCerts(loaded: LoadedCerts): void {
    if (!this.certs) return;
    this.certs.use(loaded);
    (this.server as unknown as { setSecureContext(o: object): void }).setSecureContext(this.certs.defaultPem);
  }

  /** The next request head must be complete within `ms`, or the connection gets a 408 and closes. */
  private guardHead(sock: Duplex, ms: number): void {
    if (sock.destroyed) return;
    const t = setTimeout(() => {
      this.guards.delete(sock);
      this.ctx.metrics.clientError(408);
      this.logRefusal(sock, 408, 'ERR_HTTP_REQUEST_TIMEOUT');
      sock.end(rawShortReply(408));
      setTimeout(() => sock.destroy(), 1000).unref();
    }, ms);
    t.unref();
    this.guards.set(sock, t);
    sock.once('close', () => { clearTimeout(t); this.guards.delete(sock); });
  }

  /** Timeouts and limits that a reload may change on a listener that stays open. */
  applyLimits(config: L7Config): void {
    this.timeouts = config.timeouts;
    if (this.h1) { this.h1.setLimits(h1Limits(config)); return; }
    const s = this.server as unknown as HttpServer;
    // Node would silently drop headers past its count (Host among them, if late): keep them all,
    // bounded by maxHeaderSize, and let ProxyRequest refuse too many with 431.
    s.maxHeadersCount = 0;
    s.headersTimeout = config.timeouts.headersMs;
    s.requestTimeout = config.timeouts.requestMs;
    s.keepAliveTimeout = config.timeouts.keepAliveMs;
    // New sessions get these; open ones keep what they were told.
    (this.server as Http2SecureServer).updateSettings?.(h2Settings(config));
  }

  private onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    const res = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    // A client that closes in the middle of its body has left, not sent a bad request: its request's
    // own line says 499, and no 400 is counted (nor written to a peer that is gone).
    if (err.code === 'ECONNRESET' || (res && err.code === 'HPE_INVALID_EOF_STATE')) { socket.destroy(); return; }
    this.refuseClient(socket, clientErrorStatus(err.code), err.code, res);
  }

  /**
   * Answer a request a parser refused (or a timeout) with `status`, and close. `res`: the response
   * of a request under way, whose own access line then reports the status.
   */
  private refuseClient(socket: Duplex, status: number, code: string | undefined, res?: { headersSent?: boolean }): void {
    if (!socket.writable || res?.headersSent) { socket.destroy(); return; }
    this.ctx.metrics.clientError(status);
    // A request under way (timeouts.request ran out mid-body) reports this status in its own line.
    if (res) refusedByParser.set(res, status);
    else this.logRefusal(socket, status, code);
    socket.end(rawShortReply(status));
    setTimeout(() => socket.destroy(), 1000).unref();
  }

  /** Requests Node's parser refused have no method or path to show: status, client and Node's reason. */
  private logRefusal(socket: Duplex, status: number, error: string | undefined): void {
    if (!this.ctx.runtime.config.accessLog) return;
    this.ctx.accessLog.info({ status, bytes: 0, route: '-', client: peerAddress((socket as Duplex & { remoteAddress?: string }).remoteAddress), error });
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(e);
      this.server.once('error', onError);
      this.server.listen({ host: this.spec.address, port: this.spec.port }, () => {
        this.server.off('error', onError);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  address(): AddressInfo { return this.server.address() as AddressInfo; }

  /** Stop accepting; idle keep-alive connections close now, busy ones after their response (Connection: close / GOAWAY). */
  stopAccepting(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => { this.h1?.stop(); resolve(); }));
    this.closeIdle();
    for (const s of this.sessions) s.close();
    return closed;
  }

  closeIdle(): void {
    if (this.h1) this.h1.closeIdle();
    else (this.server as unknown as HttpServer).closeIdleConnections?.();
  }

  /** End of the grace period: whatever is still open goes. */
  destroyAll(): void {
    this.h1?.destroyAll();
    (this.server as unknown as HttpServer).closeAllConnections?.();
    for (const s of this.sessions) s.destroy();
    for (const s of this.sockets) s.destroy();
  }
}

/** Where a listener is bound: two listeners with the same one cannot both be open. */
export function bindKey(spec: ListenerSpec): string {
  return `${spec.address}:${spec.port}`;
}

/** A listener's identity: where it is bound and how it speaks (plain, TLS, TLS with h2). */
export function listenerKey(spec: ListenerSpec): string {
  return `${spec.address}:${spec.port}:${spec.tls ? (spec.tls.http2 ? 'h2' : 'tls') : 'plain'}`;
}

export type { Duplex };
