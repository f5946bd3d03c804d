/**
 * Upgrade requests (WebSocket): a fresh upstream connection per upgrade, the request head
 * rewritten like any other, the upstream's answer passed through, then bytes both ways until
 * either side closes. Upgraded connections are never pooled.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ProxyContext } from './context.js';
import { requestHead } from './headers.js';
import { normalizeHost } from './router.js';
import { peerAddress } from './trust.js';

const CRLFCRLF = Buffer.from('\r\n\r\n');

function refuse(client: Duplex, status: number, text: string): void {
  client.end(`HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${text.length + 5}\r\n\r\n${status} ${text}\n`);
}

export function tunnel(ctx: ProxyContext, req: IncomingMessage, client: Duplex, early: Buffer, proto: 'http' | 'https'): void {
  const rt = ctx.runtime;
  const clientIp = peerAddress(req.socket.remoteAddress);
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const route = rt.router.match({ method: req.method ?? 'GET', host: normalizeHost(req.headers.host), path: q < 0 ? url : url.slice(0, q), headers: req.headers });
  client.on('error', () => client.destroy());
  ctx.tunnels.add(client);
  client.once('close', () => ctx.tunnels.delete(client));
  if (!route) return refuse(client, 404, 'Not Found');
  const pick = route.pool.pick({ headers: req.headers, clientIp });
  if (!pick) return refuse(client, 503, 'Service Unavailable');
  const { head } = requestHead({
    method: req.method ?? 'GET', url, rawHeaders: req.rawHeaders, clientIp, trusted: rt.trusted.has(clientIp), proto,
    httpVersion: req.httpVersion, requestIdHeader: rt.config.requestIdHeader, via: rt.config.via, body: 'none',
    upgrade: String(req.headers.upgrade ?? 'websocket'),
  }, randomUUID);
  const spec = route.pool.spec;
  const up: Socket = connect({ host: pick.ep.spec.host, port: pick.ep.spec.port, noDelay: true });
  up.setTimeout(spec.connectTimeoutMs);
  let answered = false;
  let pending: Buffer = Buffer.alloc(0);
  const fail = (status: number, text: string) => {
    up.destroy();
    if (!answered) { answered = true; route.pool.failure(pick.ep); refuse(client, status, text); } else client.destroy();
  };
  client.on('close', () => up.destroy());
  up.on('timeout', () => fail(504, 'Gateway Timeout'));
  up.on('error', () => fail(502, 'Bad Gateway'));
  up.once('connect', () => {
    up.setTimeout(spec.timeoutMs);
    up.write(head, 'latin1');
    if (early.length) up.write(early);
  });
  const onData = (d: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, d]) : d;
    const end = pending.indexOf(CRLFCRLF);
    if (end < 0) { if (pending.length > 65536) fail(502, 'Bad Gateway'); return; }
    answered = true;
    up.off('data', onData);
    up.setTimeout(0);
    route.pool.success(pick.ep);
    ctx.metrics.upstreamResult(pick.ep, route.pool.name, pick.ep.key, Number(pending.toString('latin1', 9, 12)) || 'EPARSE');
    client.write(pending);
    up.pipe(client);
    client.pipe(up);
    up.on('close', () => client.destroy());
  };
  up.on('data', onData);
}
