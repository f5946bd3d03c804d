/**
 * One configured listener: plain HTTP/1.1, HTTPS, or HTTPS with HTTP/2 by ALPN (HTTP/1.1
 * still offered). Every HTTP/1.1 connection, plain or TLS, goes through sluice's own server
 * side (http1/); TLS connections that choose h2 go to node:http2. Requests that the parser
 * refuses (bad or ambiguous framing, oversized heads, slow heads) are answered here with the
 * right 4xx, get an access line, and never reach a pool.
 */
import { createServer as createHttp2, Http2ServerRequest, type Http2Server, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2';
import { createServer as createNet, type AddressInfo, type Server as NetServer } from 'node:net';
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

function h1Limits(config: L7Config): Http1Limits {
  return { maxHeadBytes: config.limits.maxHeaderBytes, headersMs: config.timeouts.headersMs, requestMs: config.timeouts.requestMs, keepAliveMs: config.timeouts.keepAliveMs };
}

function h2Settings(config: L7Config): { maxHeaderListSize: number; maxConcurrentStreams: number } {
  return { maxHeaderListSize: config.limits.maxHeaderBytes, maxConcurrentStreams: config.limits.maxConcurrentStreams };
}

export class Listener {
  readonly server: NetServer;
  readonly key: string;
  readonly certs?: CertStore;
  /** sluice's own HTTP/1.1 server side: every HTTP/1.1 connection, plain or TLS. */
  private readonly h1: Http1Server;
  /** HTTP/2 sessions of a TLS listener with `http2` (node:http2, handed the sockets that chose h2). */
  private readonly h2?: Http2Server;
  private readonly sessions = new Set<ServerHttp2Session>();
  /** Their sockets: a session closed gracefully can leave its socket open on a client that never closes. */
  private readonly h2Sockets = new Set<Duplex>();

  constructor(readonly spec: ListenerSpec, config: L7Config, private readonly ctx: ProxyContext) {
    this.key = listenerKey(spec);
    const proto = spec.tls ? 'https' : 'http';
    const onRequest = (req: Http1Request | Http2ServerRequest, res: Http1Response | Http2ServerResponse, expectsContinue = false) => {
      // Counted here, before anything can fail, so a drain waits for every request.
      ctx.requestStarted();
      new ProxyRequest(ctx, req, res, proto, expectsContinue).start();
    };
    const h1 = new Http1Server({
      request: onRequest,
      upgrade: (req, socket, head) => tunnel(ctx, req, socket, head, proto),
      connect: (req, socket) => this.refuseConnect(req, socket),
      clientError: (socket, status, code, res) => this.refuseClient(socket, status, code, res),
    }, h1Limits(config), () => ctx.draining);
    this.h1 = h1;
    if (!spec.tls) {
      // Half-open: a client may send its request and its FIN together, and still be answered.
      this.server = createNet({ allowHalfOpen: true, noDelay: true }, h1.accept);
      return;
    }
    this.certs = new CertStore(spec.tls.certs);
    let h2: Http2Server | undefined;
    if (spec.tls.http2) {
      h2 = createHttp2({
        maxSessionMemory: 20, settings: h2Settings(config),
        // Node refuses (resets) streams past this many header entries: leave limits.maxHeaders to answer 431 first.
        maxHeaderListPairs: Math.max(128, config.limits.maxHeaders + 8),
      });
      h2.on('session', (sess) => { this.sessions.add(sess); sess.once('close', () => this.sessions.delete(sess)); });
      h2.on('request', onRequest);
      // Expect: 100-continue. Node would answer 100 at once, and a client whose body is then refused
      // (413, 404, no endpoint) would send all of it first; ProxyRequest says 100 only when it reads the body.
      h2.on('checkContinue', (req: Http2ServerRequest, res: Http2ServerResponse) => onRequest(req, res, true));
      h2.on('connect', (req: Http2ServerRequest, res: Http2ServerResponse) => this.refuseConnect(req, res));
      this.h2 = h2;
    }
    // One TLS server for both protocols: ALPN picks, and HTTP/1.1 gets the same server side as on plain listeners.
    this.server = createTls({
      ...this.certs.defaultPem, SNICallback: this.certs.sniCallback, handshakeTimeout: config.timeouts.headersMs,
      ALPNProtocols: h2 ? ['h2', 'http/1.1'] : ['http/1.1'],
    }, (sock) => {
      if (h2 && sock.alpnProtocol === 'h2') {
        this.h2Sockets.add(sock);
        sock.once('close', () => this.h2Sockets.delete(sock));
        h2.emit('connection', sock);
        return;
      }
      // Half-open for HTTP/1.1 only, and only once the handshake is done: a client that leaves mid-handshake is gone.
      sock.allowHalfOpen = true;
      sock.setNoDelay(true);
      h1.accept(sock);
    });
  }

  /** sluice is a reverse proxy, not a forward one: CONNECT gets 405 (as Node answers it on HTTP/2). */
  private refuseConnect(req: Http2ServerRequest | Http1Request, sockOrRes: Duplex | Http2ServerResponse): void {
    this.ctx.metrics.clientError(405);
    if (this.ctx.runtime.config.accessLog) {
      const host = req instanceof Http2ServerRequest ? req.authority : req.headers.host;
      this.ctx.accessLog.info({ method: req.method, host, status: 405, bytes: 0, route: '-', client: peerAddress(req.socket?.remoteAddress), error: 'CONNECT is not supported' });
    }
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

  /** Timeouts and limits that a reload may change on a listener that stays open. */
  applyLimits(config: L7Config): void {
    this.h1.setLimits(h1Limits(config));
    // New sessions get these; open ones keep what they were told.
    this.h2?.updateSettings(h2Settings(config));
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

  /** Requests the parser refused have no method or path to show: status, client and the parser's reason. */
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
    const closed = new Promise<void>((resolve) => this.server.close(() => { this.h1.stop(); resolve(); }));
    this.closeIdle();
    for (const s of this.sessions) s.close();
    return closed;
  }

  closeIdle(): void {
    this.h1.closeIdle();
  }

  /** End of the grace period: whatever is still open goes. */
  destroyAll(): void {
    this.h1.destroyAll();
    for (const s of this.sessions) s.destroy();
    for (const s of this.h2Sockets) s.destroy();
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
