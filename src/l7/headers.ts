/**
 * Header rewriting between client and upstream (RFC 9110 §7.6): hop-by-hop headers and the
 * ones the Connection header names are removed both ways, X-Forwarded-* / Forwarded are set
 * (extended only for trusted peers), Via gets our hop, and the request id travels both ways.
 */
import { peerAddress } from './trust.js';

const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authorization', 'proxy-authenticate', 'http2-settings']);

export interface RequestHeadInput {
  method: string;
  url: string;
  rawHeaders: string[];
  /** h2 clients have no Host header: their :authority becomes Host. */
  authority?: string;
  clientIp: string;
  trusted: boolean;
  proto: 'http' | 'https';
  httpVersion: string;
  requestIdHeader: string;
  via: string;
  /** 'length' keeps the client's Content-Length; 'chunked' re-frames an unknown-length body. */
  body: 'none' | 'length' | 'chunked';
  contentLength?: string;
  /** A WebSocket (or other) upgrade: keep Upgrade and say so in Connection. */
  upgrade?: string;
  /**
   * Host for a request that came without one (HTTP/1.0 allows that; the HTTP/1.1 sent upstream
   * must have one, RFC 9112 §3.2): the address the client connected to, as it would have named it.
   */
  fallbackHost?: () => string | undefined;
}

const REQUEST_ID = /^[\w\-.:+/=]{1,200}$/;

/** An HTTP token (RFC 9110 §5.6.2): what a method, a header name or a cookie name is made of. */
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Headers sluice sets or frames itself, spelled with `_` for `-` (`X_Forwarded_For`): CGI-style
 * servers (WSGI, Rack, PHP) read both spellings as one name, so a client could pass one past
 * sluice's own (Puma's CVE-2024-45614; nginx drops every such name). These are dropped.
 */
const UNDERSCORED = new Set(['x_forwarded_for', 'x_forwarded_proto', 'x_forwarded_host', 'content_length', 'transfer_encoding']);

/** Tokens named by Connection headers (other than the ordinary close/keep-alive/upgrade). */
function connectionTokens(raw: string[]): Set<string> | undefined {
  let set: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length !== 10 || raw[i].toLowerCase() !== 'connection') continue;
    for (const t of raw[i + 1].split(',')) {
      const tok = t.trim().toLowerCase();
      if (tok && tok !== 'close' && tok !== 'keep-alive' && tok !== 'upgrade') (set ??= new Set()).add(tok);
    }
  }
  return set;
}

function quoteIfNeeded(v: string): string {
  return TOKEN.test(v) ? v : `"${v.replace(/["\\]/g, '\\$&')}"`;
}

export interface BuiltHead {
  head: string;
  requestId: string;
  /** Host header lines the client sent: more than one makes the request invalid (RFC 9112 §3.2). */
  hosts: number;
}

/** Returns the upstream request head and the request id it carries. */
export function requestHead(i: RequestHeadInput, newId: () => string): BuiltHead {
  const raw = i.rawHeaders;
  const drop = connectionTokens(raw);
  const h2 = i.httpVersion === '2.0';
  let head = `${i.method} ${i.url} HTTP/1.1\r\n`;
  let host = i.authority;
  let hosts = 0;
  let xff: string | undefined, xfp: string | undefined, xfh: string | undefined, fwd: string | undefined, via: string | undefined, rid: string | undefined;
  let cookie: string | undefined;
  for (let n = 0; n < raw.length; n += 2) {
    const name = raw[n];
    if (name.charCodeAt(0) === 58) continue; // h2 pseudo-headers
    const value = raw[n + 1];
    const lower = name.toLowerCase();
    if (HOP.has(lower) || lower === 'content-length') continue;
    switch (lower) {
      case 'host': host ??= value; hosts++; break;
      // HTTP/2 splits Cookie into crumbs (RFC 9113 §8.2.3); an HTTP/1.1 upstream expects one line.
      case 'cookie': if (h2) { cookie = cookie === undefined ? value : `${cookie}; ${value}`; continue; } break;
      case 'x-forwarded-for': if (i.trusted) xff = xff ? `${xff}, ${value}` : value; continue;
      case 'x-forwarded-proto': if (i.trusted) xfp ??= value; continue;
      case 'x-forwarded-host': if (i.trusted) xfh ??= value; continue;
      case 'forwarded': if (i.trusted) fwd = fwd ? `${fwd}, ${value}` : value; continue;
      case 'via': via = via ? `${via}, ${value}` : value; continue;
      default:
        if (lower === i.requestIdHeader) { if (rid === undefined && REQUEST_ID.test(value)) rid = value; continue; }
        if (drop?.has(lower)) continue;
        if (lower.includes('_') && UNDERSCORED.has(lower.replace(/-/g, '_'))) continue;
    }
    if (lower === 'host' && i.authority !== undefined) continue;
    head += `${name}: ${value}\r\n`;
  }
  if (i.authority !== undefined) head += `host: ${i.authority}\r\n`;
  else if (host === undefined) { const h = i.fallbackHost?.(); if (h !== undefined) head += `host: ${h}\r\n`; }
  if (cookie !== undefined) head += `cookie: ${cookie}\r\n`;
  const client = i.clientIp;
  const proto = (i.trusted && xfp) || i.proto;
  const fhost = (i.trusted && xfh) || host;
  head += `x-forwarded-for: ${xff ? `${xff}, ${client}` : client}\r\nx-forwarded-proto: ${proto}\r\n`;
  if (fhost) head += `x-forwarded-host: ${fhost}\r\n`;
  const forElem = `for=${client.includes(':') ? `"[${client}]"` : client};proto=${i.proto}${host ? `;host=${quoteIfNeeded(host)}` : ''}`;
  head += `forwarded: ${fwd ? `${fwd}, ${forElem}` : forElem}\r\n`;
  const hop = `${h2 ? '2' : i.httpVersion} ${i.via}`;
  head += `via: ${via ? `${via}, ${hop}` : hop}\r\n`;
  const requestId = rid ?? newId();
  head += `${i.requestIdHeader}: ${requestId}\r\n`;
  if (i.upgrade !== undefined) head += `connection: upgrade\r\nupgrade: ${i.upgrade}\r\n`;
  else if (i.body === 'length') head += `content-length: ${i.contentLength}\r\n`;
  else if (i.body === 'chunked') head += 'transfer-encoding: chunked\r\n';
  return { head: head + '\r\n', requestId, hosts };
}

/** `addr:port` as a Host value: IPv6 in brackets, the scheme's default port left out. */
export function authorityOf(addr: string | undefined, port: number | undefined, proto: 'http' | 'https'): string | undefined {
  const a = peerAddress(addr);
  if (!a) return undefined;
  const h = a.includes(':') ? `[${a}]` : a;
  return port === undefined || port === (proto === 'https' ? 443 : 80) ? h : `${h}:${port}`;
}

/** Request headers other than HTTP/2 pseudo-headers (`:method`, `:path`, ...), which limits.maxHeaders does not count. */
export function headerCount(raw: string[], h2: boolean): number {
  if (!h2) return raw.length >> 1;
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i].charCodeAt(0) !== 58) n++;
  return n;
}

/**
 * Upstream response headers for the client, as a flat [name, value, ...] list, hop-by-hop removed
 * and Via extended. The upstream's own `requestIdHeader` goes: sluice returns its id itself (an
 * upstream that echoes it would otherwise have the client see it twice, `abc, abc`).
 */
export function responseHeaders(raw: string[], via: string, requestIdHeader: string): string[] {
  const drop = connectionTokens(raw);
  const out: string[] = [];
  let seenVia: string | undefined;
  for (let n = 0; n < raw.length; n += 2) {
    const name = raw[n];
    const lower = name.toLowerCase();
    if (HOP.has(lower) || drop?.has(lower) || lower === requestIdHeader) continue;
    if (lower === 'via') { seenVia = seenVia ? `${seenVia}, ${raw[n + 1]}` : raw[n + 1]; continue; }
    out.push(name, raw[n + 1]);
  }
  out.push('via', seenVia ? `${seenVia}, 1.1 ${via}` : `1.1 ${via}`);
  return out;
}
