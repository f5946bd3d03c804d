/**
 * Upgrade requests (WebSocket): a fresh upstream connection per upgrade, the request head
 * rewritten like any other, the upstream's answer passed through, then bytes both ways until
 * either side closes. Upgraded connections are never pooled. Each upgrade gets one access line,
 * written when the tunnel closes.
 */
import { randomUUID } from 'node:crypto';
import type { Http1Request } from './http1/message.js';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ProxyContext } from './context.js';
import { authorityOf, headerCount, requestHead } from './headers.js';
import { ambiguousTarget, originForm, pathOf, routingPath, targetAuthority } from './path.js';
import { rawShortReply } from './proxy.js';
import { normalizeHost } from './router.js';
import { peerAddress } from './trust.js';
import { ResponseParser } from './upstream/parser.js';

const CRLFCRLF = Buffer.from('\r\n\r\n');

export function tunnel(ctx: ProxyContext, req: Http1Request, client: Duplex, early: Buffer, proto: 'http' | 'https'): void {
  const rt = ctx.runtime;
  const t0 = performance.now();
  const clientIp = peerAddress(req.socket.remoteAddress);
  const method = req.method ?? 'GET';
  const target = originForm(req.url ?? '/');
  const path = pathOf(target);
  const authority = targetAuthority(req.url ?? '/'); // absolute form: it replaces Host (RFC 9112 §3.2.2)
  const host = normalizeHost(authority ?? req.headers.host);
  // h2c is never asked of an upstream (Envoy and HAProxy drop it too): one that switched would
  // take the client's HTTP/2 streams on this connection, each to any path, past every route
  // (h2c smuggling). Asked for alone, the request is served as the HTTP/1.1 request it also is.
  const wanted = withoutH2c(String(req.headers.upgrade ?? 'websocket'));
  const plain = wanted === '';
  const cl = plain ? req.headers['content-length'] : undefined;
  const built = requestHead({
    method, url: target, rawHeaders: req.rawHeaders, authority, clientIp, trusted: rt.trusted.has(clientIp), proto,
    httpVersion: req.httpVersion, requestIdHeader: rt.config.requestIdHeader, via: rt.config.via,
    body: cl !== undefined ? 'length' : 'none', contentLength: cl,
    upgrade: plain ? undefined : wanted, fallbackHost: () => authorityOf(req.socket.localAddress, req.socket.localPort, proto),
  }, randomUUID);
  const tooMany = headerCount(req.rawHeaders, false) > rt.config.limits.maxHeaders;
  const invalid = ambiguousTarget(built.hosts, target, authority ?? req.headers.host, method);
  const route = tooMany || invalid ? undefined : rt.router.match({ method, host, path: routingPath(path), headers: req.headers });
  let status = 0;
  let upstream: string | undefined;
  let up: Socket | undefined;
  let error: string | undefined;
  let clientGone = false;
  client.on('error', () => client.destroy());
  ctx.tunnels.add(client);
  client.once('close', () => {
    clientGone = true;
    ctx.tunnels.delete(client);
    up?.destroy();
    if (!rt.config.accessLog) return;
    ctx.accessLog.info({
      method, host, path, status, bytes: up?.bytesRead ?? 0, route: route?.spec.name ?? '-', upstream, upgrade: req.headers.upgrade,
      ms: +(performance.now() - t0).toFixed(3), client: clientIp, id: built.requestId, ...(error ? { error } : {}),
    });
  });
  const refuse = (code: number): void => {
    status = code;
    client.end(rawShortReply(code, { [rt.config.requestIdHeader]: built.requestId }));
  };
  if (tooMany) return refuse(431);
  // Node does not read the body of an upgrade request: a chunked one cannot be framed here.
  if (invalid || (plain && req.headers['transfer-encoding'] !== undefined)) return refuse(400);
  if (cl !== undefined && Number(cl) > rt.config.limits.maxBodyBytes) return refuse(413);
  if (!route) return refuse(404);
  const pick = route.pool.pick({ headers: req.headers, clientIp });
  if (!pick) return refuse(503);
  upstream = pick.ep.key;
  const spec = route.pool.spec;
  const sock: Socket = connect({ host: pick.ep.spec.host, port: pick.ep.spec.port, noDelay: true });
  up = sock;
  sock.setTimeout(spec.connectTimeoutMs);
  let answered = false;
  let answerBy: NodeJS.Timeout | undefined;
  let pending: Buffer = Buffer.alloc(0);
  const fail = (code: number, why: string) => {
    sock.destroy();
    if (clientGone) return; // our own doing: the client left first
    error ??= why;
    if (!answered) { answered = true; route.pool.failure(pick.ep); refuse(code); } else client.destroy();
  };
  // Once tunnelled, the upstream's close ends the client's side after what is queued for it.
  sock.once('close', () => { clearTimeout(answerBy); if (answered) { if (!clientGone) (client as Socket).destroySoon(); } else fail(502, 'ERESET'); });
  sock.on('timeout', () => fail(504, 'ETIMEDOUT'));
  sock.on('error', (e: NodeJS.ErrnoException) => fail(502, e.code ?? 'ERESET'));
  sock.once('connect', () => {
    sock.setTimeout(spec.timeoutMs);
    // The socket's timer only measures silences: an upstream that trickles its head would hold
    // the client forever. `timeout` bounds the whole wait for its answer.
    answerBy = setTimeout(() => { if (!answered) fail(504, 'ETIMEDOUT'); }, spec.timeoutMs);
    sock.write(built.head, 'latin1');
    if (cl !== undefined) sendBody(Number(cl));
  });
  // A plain request's body, exactly its Content-Length: what the client sends past it is not
  // the upstream's (the connection closes after the response).
  const sendBody = (length: number) => {
    let left = length;
    const take = (d: Buffer) => {
      const n = Math.min(left, d.length);
      if (n > 0) { sock.write(d.subarray(0, n)); left -= n; }
      if (left === 0) { client.off('data', take); client.pause(); }
    };
    if (early.length) take(early);
    if (left > 0) { client.on('data', take); client.resume(); }
  };
  // A refused upgrade leaves the upstream speaking HTTP: the client must not get to talk to it
  // unrouted (a second request on that connection would skip routes and X-Forwarded-For). So
  // sluice relays the refusal, framed by the response parser, then closes both sides. Each read
  // is parsed before it is relayed: an answer that is no HTTP response is the client's 502, not
  // bytes of its own. False when the first read is no response head.
  const relayRefusal = (first: Buffer): boolean => {
    let ended = false;
    const done = () => { sock.destroy(); if (!clientGone) (client as Socket).destroySoon(); };
    const parser = new ResponseParser({ onHead: () => {}, onBody: () => {}, onEnd: () => { ended = true; } });
    parser.reset(method === 'HEAD');
    try { parser.execute(first); } catch { return false; }
    const feed = (d: Buffer) => {
      try { parser.execute(d); } catch { done(); return; } // cut short, so it looks cut short
      client.write(d);
      if (ended) done();
    };
    client.write(first);
    if (ended) done(); else sock.on('data', feed);
    return true;
  };
  const badAnswer = () => {
    ctx.metrics.upstreamResult(pick.ep, route.pool.name, pick.ep.key, 'EPARSE');
    fail(502, 'EPARSE');
  };
  const onData = (d: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, d]) : d;
    const end = pending.indexOf(CRLFCRLF);
    if (end < 0) { if (pending.length > 65536) badAnswer(); return; }
    const code = statusOf(pending.toString('latin1', 0, Math.min(end, 13)));
    // No status line, or a switch nobody asked this upstream for: its bytes are another protocol's.
    if (code === 0 || (plain && code === 101)) return badAnswer();
    // A switch must be to a protocol the client asked for (RFC 9110 §7.8): an upstream that
    // answers `Upgrade: websocket` with h2c would have the client's bytes read as HTTP/2.
    if (code === 101 && !switchedTo(pending.toString('latin1', 0, end), wanted)) return badAnswer();
    sock.off('data', onData);
    if (code !== 101 && !relayRefusal(pending)) return badAnswer();
    answered = true;
    clearTimeout(answerBy);
    route.pool.success(pick.ep);
    status = code;
    ctx.metrics.upstreamResult(pick.ep, route.pool.name, pick.ep.key, status);
    if (status !== 101) return;
    sock.setTimeout(0);
    client.write(pending);
    // Bytes the client sent right after its head belong to the new protocol: only now do they go.
    if (early.length) sock.write(early);
    sock.pipe(client);
    client.pipe(sock);
    // A client that has closed its half has left: the upstream gets its FIN (pipe) and
    // timeouts.keepAlive to close too, or both go (a half-open tunnel would never end).
    client.once('end', () => {
      const t = setTimeout(() => { sock.destroy(); client.destroy(); }, rt.config.timeouts.keepAliveMs);
      t.unref();
      client.once('close', () => clearTimeout(t));
    });
  };
  sock.on('data', onData);
}

/** The protocols of an Upgrade header other than h2c, as a header value ('' when h2c was all). */
function withoutH2c(upgrade: string): string {
  if (!/h2c/i.test(upgrade)) return upgrade;
  return upgrade.split(',').map((t) => t.trim()).filter((t) => t !== '' && t.toLowerCase() !== 'h2c').join(', ');
}

/** The status of `HTTP/1.x NNN ...` (the first 13 bytes of a head), or 0 when it is none. */
function statusOf(line: string): number {
  if (!/^HTTP\/1\.[01] [1-5][0-9]{2}( |\r|$)/.test(line)) return 0;
  return Number(line.slice(9, 12));
}

/** The Upgrade header of a 101 head names one of the protocols asked for (case-insensitively). */
function switchedTo(head: string, asked: string): boolean {
  const m = /\r\nupgrade:[ \t]*([^\r]*)/i.exec(head);
  if (!m) return false;
  const tokens = (v: string) => v.split(',').map((t) => t.trim().toLowerCase()).filter((t) => t !== '');
  const wanted = new Set(tokens(asked));
  return tokens(m[1]).some((t) => wanted.has(t));
}
