/**
 * The `l7:` section of the config file (DESIGN §3, reference in docs/l7.md). Validation collects
 * every issue with its path and fills a default for every field, so the workers never have to.
 * The result is plain data (regexes stay strings) so the primary can send it to workers over IPC.
 */
import { canonicalIp, ipFamily, joinHostPort } from '../model/address.js';
import { ValidationError, type Issue } from '../model/errors.js';
import { parseDuration } from '../model/validate.js';
import { TOKEN } from './headers.js';

export type Balance = 'round-robin' | 'least-request' | 'ring-hash';
export const BALANCES: readonly Balance[] = ['round-robin', 'least-request', 'ring-hash'];

export interface CertSpec { cert: string; key: string; serverNames: string[] }
export interface ListenerSpec {
  address: string;
  port: number;
  tls?: { certs: CertSpec[]; http2: boolean };
}
export type HeaderMatch = { exact: string } | { regex: string } | { present: boolean };
export interface RouteSpec {
  name: string;
  match: { host?: string; pathPrefix?: string; pathRegex?: string; methods?: string[]; headers: Array<{ name: string; is: HeaderMatch }> };
  pool: string;
}
export interface EndpointSpec { host: string; port: number; weight: number }
/** An endpoint's name in logs, metrics and across reloads: `host:port`, IPv6 in brackets. */
export function endpointKey(e: { host: string; port: number }): string {
  return joinHostPort(e.host, e.port);
}
export type HashOn = { header: string } | { cookie: string } | { clientIp: true };
export interface PoolHealth { path: string; intervalMs: number; timeoutMs: number; rise: number; fall: number; host?: string }
/** HAProxy's `retry-on` words that sluice knows; status codes are written as numbers. */
export const RETRY_ON = ['conn-failure', 'empty-response', 'response-timeout'] as const;
export const RETRY_STATUSES = [500, 502, 503, 504] as const;
export const DEFAULT_RETRY_ON = ['conn-failure', 'empty-response', '502', '503'];
export interface PoolSpec {
  name: string;
  balance: Balance;
  hashOn: HashOn;
  sticky?: { cookie: string; maxAgeS?: number };
  endpoints: EndpointSpec[];
  health?: PoolHealth;
  retries: number;
  /** When a retry is allowed: RETRY_ON words and status codes as strings ('502'). */
  retryOn: string[];
  timeoutMs: number;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  maxConnections: number;
  ejection: { consecutiveFailures: number; baseMs: number; maxMs: number; maxPercent: number };
}
export interface L7Config {
  workers?: number;
  listeners: ListenerSpec[];
  routes: RouteSpec[];
  pools: Record<string, PoolSpec>;
  trustedProxies: string[];
  timeouts: { headersMs: number; requestMs: number; keepAliveMs: number; drainMs: number; sendMs: number };
  limits: { maxHeaderBytes: number; maxHeaders: number; maxBodyBytes: number; maxConcurrentStreams: number };
  retryBudget: { ratio: number; minRetries: number };
  metrics?: { address: string; port: number };
  accessLog: boolean;
  requestIdHeader: string;
  via: string;
}

export const DEFAULT_TIMEOUTS = { headersMs: 10_000, requestMs: 60_000, keepAliveMs: 5_000, drainMs: 30_000, sendMs: 60_000 };
export const DEFAULT_LIMITS = { maxHeaderBytes: 16_384, maxHeaders: 100, maxBodyBytes: 10 * 1024 * 1024, maxConcurrentStreams: 100 };
export const DEFAULT_EJECTION = { consecutiveFailures: 5, baseMs: 5_000, maxMs: 300_000, maxPercent: 50 };
export const DEFAULT_HEALTH_CHECK = { path: '/healthz', intervalMs: 1000, timeoutMs: 500, rise: 2, fall: 2 };

/** Headers sluice frames, strips or writes itself: a request id under one of these names would clash with them. */
const MANAGED_HEADERS = ['host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade',
  'proxy-authorization', 'proxy-authenticate', 'http2-settings', 'cookie', 'set-cookie', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded', 'via'];
const HOSTNAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

class Checker {
  readonly issues: Issue[] = [];
  fail(path: string, message: string): void { this.issues.push({ path, message }); }
  object(v: unknown, path: string): Record<string, unknown> {
    if (v === undefined || v === null) return {};
    if (typeof v !== 'object' || Array.isArray(v)) { this.fail(path, 'must be a mapping'); return {}; }
    return v as Record<string, unknown>;
  }
  list(v: unknown, path: string): unknown[] {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) { this.fail(path, 'must be a list'); return []; }
    return v;
  }
  known(o: Record<string, unknown>, path: string, keys: string[]): void {
    for (const k of Object.keys(o)) if (!keys.includes(k)) this.fail(`${path}.${k}`, `unknown field (expected one of: ${keys.join(', ')})`);
  }
  int(v: unknown, path: string, min: number, max: number, dflt: number): number {
    if (v === undefined) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) { this.fail(path, `must be an integer ${min}..${max}`); return dflt; }
    return v;
  }
  num(v: unknown, path: string, min: number, max: number, dflt: number): number {
    if (v === undefined) return dflt;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) { this.fail(path, `must be a number ${min}..${max}`); return dflt; }
    return v;
  }
  bool(v: unknown, path: string, dflt: boolean): boolean {
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') { this.fail(path, 'must be true or false'); return dflt; }
    return v;
  }
  str(v: unknown, path: string, test: RegExp, what: string): string | undefined {
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || !test.test(v)) { this.fail(path, `must be ${what}`); return undefined; }
    return v;
  }
  duration(v: unknown, path: string, dfltMs: number): number {
    if (v === undefined) return dfltMs;
    const ms = parseDuration(v);
    if (ms === null || ms <= 0 || ms > 86_400_000) { this.fail(path, 'must be a duration like 500ms, 2s or 1m'); return dfltMs; }
    return ms;
  }
  size(v: unknown, path: string, dflt: number): number {
    if (v === undefined) return dflt;
    const n = parseSize(v);
    if (n === null || n < 1) { this.fail(path, 'must be a size like 16384, 16kb or 10mb'); return dflt; }
    return n;
  }
}

/** `16384`, `16kb`, `10mb`, `1gb` (powers of 1024). */
export function parseSize(v: unknown): number | null {
  if (typeof v === 'number') return Number.isInteger(v) ? v : null;
  if (typeof v !== 'string') return null;
  const m = /^(\d+)\s*(b|kb|mb|gb)?$/i.exec(v.trim());
  if (!m) return null;
  return Number(m[1]) * { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }[(m[2] ?? 'b').toLowerCase() as 'b'];
}

/**
 * An address as sockets take it, canonical: an IPv6 link-local upstream or listener needs its
 * zone (`fe80::1%eth0`), which connect() and listen() use and canonicalIp alone would drop.
 */
function socketIp(text: string): string | null {
  const pct = text.indexOf('%');
  if (pct < 0) return canonicalIp(text);
  const ip = canonicalIp(text.slice(0, pct));
  const zone = text.slice(pct + 1);
  return ip && ipFamily(ip) === 6 && /^[\w.-]{1,15}$/.test(zone) ? `${ip}%${zone}` : null;
}

/** `host:port`, `[v6]:port`, `[v6%zone]:port` → parts, or null. */
export function parseHostPort(text: string): { host: string; port: number } | null {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:\[\]]+):(\d{1,5})$/.exec(text);
  if (!m) return null;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return null;
  const ip = socketIp(m[1]);
  if (ip) return { host: ip, port };
  return HOSTNAME.test(m[1]) && !text.startsWith('[') ? { host: m[1].toLowerCase(), port } : null;
}

/**
 * Two binds the kernel refuses together: one port, and the same address or a wildcard that
 * covers the other (0.0.0.0 every IPv4 address; :: every address, IPv4 too, being dual-stack).
 */
function overlaps(a: { address: string; port: number }, b: { address: string; port: number }): boolean {
  if (a.port === 0 || a.port !== b.port) return false;
  const covers = (w: string, x: string) => w === x || w === '::' || (w === '0.0.0.0' && ipFamily(x) === 4);
  return covers(a.address, b.address) || covers(b.address, a.address);
}

/** A configured host or server name as requests and SNI carry it: lower case, no FQDN trailing dot. */
function hostName(n: string): string {
  return n.toLowerCase().replace(/(?<=.)\.$/, '');
}

function checkCidr(c: Checker, v: unknown, path: string): string | undefined {
  if (typeof v !== 'string') { c.fail(path, 'must be an address or CIDR like 10.0.0.0/8'); return undefined; }
  const [addr, bits, extra] = v.split('/');
  const ip = canonicalIp(addr);
  const max = ip && ipFamily(ip) === 6 ? 128 : 32;
  if (!ip || extra !== undefined || (bits !== undefined && !(/^\d+$/.test(bits) && Number(bits) <= max))) {
    c.fail(path, 'must be an address or CIDR like 10.0.0.0/8'); return undefined;
  }
  return `${ip}/${bits ?? max}`;
}

function checkListener(c: Checker, v: unknown, path: string): ListenerSpec & { workers?: number } {
  const o = c.object(v, path);
  c.known(o, path, ['address', 'port', 'workers', 'tls']);
  const address = o.address === undefined ? '0.0.0.0' : socketIp(String(o.address));
  if (!address) c.fail(`${path}.address`, 'must be an IPv4 or IPv6 address');
  if (o.port === undefined) c.fail(`${path}.port`, 'is required');
  const l: ListenerSpec & { workers?: number } = { address: address ?? '0.0.0.0', port: c.int(o.port, `${path}.port`, 0, 65535, 0) };
  if (o.workers !== undefined) l.workers = c.int(o.workers, `${path}.workers`, 1, 256, 1);
  if (o.tls !== undefined) {
    const t = c.object(o.tls, `${path}.tls`);
    c.known(t, `${path}.tls`, ['certs', 'http2']);
    const certs = c.list(t.certs, `${path}.tls.certs`).map((cv, i) => {
      const p = `${path}.tls.certs[${i}]`;
      const co = c.object(cv, p);
      c.known(co, p, ['cert', 'key', 'serverNames']);
      const cert = c.str(co.cert, `${p}.cert`, /./, 'a PEM file path');
      const key = c.str(co.key, `${p}.key`, /./, 'a PEM file path');
      if (cert === undefined) c.fail(`${p}.cert`, 'is required');
      if (key === undefined) c.fail(`${p}.key`, 'is required');
      const names = c.list(co.serverNames, `${p}.serverNames`).map((n, j) =>
        c.str(n, `${p}.serverNames[${j}]`, /^(\*\.)?[a-z0-9.-]+$/i, 'a host name, or *.domain') ?? '')
        // SNI names come without the FQDN's trailing dot (RFC 6066 §3): so must these, to match.
        .map(hostName);
      return { cert: cert ?? '', key: key ?? '', serverNames: names };
    });
    if (certs.length === 0) c.fail(`${path}.tls.certs`, 'needs at least one certificate (the first is the default)');
    l.tls = { certs, http2: c.bool(t.http2, `${path}.tls.http2`, true) };
  }
  return l;
}

function checkHeaderMatch(c: Checker, v: unknown, path: string): HeaderMatch {
  if (typeof v === 'string') return { exact: v };
  const o = c.object(v, path);
  c.known(o, path, ['exact', 'regex', 'present']);
  if (Object.keys(o).length !== 1) { c.fail(path, 'must be a string, or one of { exact }, { regex }, { present }'); return { present: true }; }
  if (o.exact !== undefined) return { exact: c.str(o.exact, `${path}.exact`, /^[^\r\n]*$/, 'a string') ?? '' };
  if (o.regex !== undefined) return { regex: checkRegex(c, o.regex, `${path}.regex`) ?? '' };
  return { present: c.bool(o.present, `${path}.present`, true) };
}

function checkRegex(c: Checker, v: unknown, path: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string') { c.fail(path, 'must be a regular expression'); return undefined; }
  try { new RegExp(v); return v; } catch (e) { c.fail(path, `is not a valid regular expression (${(e as Error).message})`); return undefined; }
}

function checkRoute(c: Checker, v: unknown, path: string, i: number): RouteSpec {
  const o = c.object(v, path);
  c.known(o, path, ['name', 'match', 'pool']);
  const m = c.object(o.match, `${path}.match`);
  c.known(m, `${path}.match`, ['host', 'pathPrefix', 'pathRegex', 'method', 'headers']);
  const match: RouteSpec['match'] = { headers: [] };
  // The router compares host names with the port stripped, so a port here could never match.
  if (typeof m.host === 'string' && /:\d*$/.test(m.host)) c.fail(`${path}.match.host`, 'must be a host name or *.domain without a port (requests are matched on the name alone)');
  else {
    const host = c.str(m.host, `${path}.match.host`, /^(\*\.)?[a-z0-9.-]+$/i, 'a host name or *.domain');
    // Requests are matched with the FQDN's trailing dot removed (normalizeHost): so is the route's.
    if (host !== undefined) match.host = hostName(host);
  }
  const prefix = c.str(m.pathPrefix, `${path}.match.pathPrefix`, /^\/\S*$/, 'a path starting with /');
  if (prefix !== undefined) match.pathPrefix = prefix;
  const regex = checkRegex(c, m.pathRegex, `${path}.match.pathRegex`);
  if (m.pathRegex !== undefined && regex !== undefined) match.pathRegex = regex;
  if (m.method !== undefined) {
    const list = typeof m.method === 'string' ? [m.method] : c.list(m.method, `${path}.match.method`);
    match.methods = list.map((x, j) => (c.str(x, `${path}.match.method${typeof m.method === 'string' ? '' : `[${j}]`}`, TOKEN, 'an HTTP method') ?? '').toUpperCase());
    if (Array.isArray(m.method) && list.length === 0) c.fail(`${path}.match.method`, 'needs at least one method (an empty list would match no request)');
  }
  const headers = c.object(m.headers, `${path}.match.headers`);
  for (const [name, hv] of Object.entries(headers)) {
    if (!TOKEN.test(name)) c.fail(`${path}.match.headers.${name}`, 'is not a valid header name');
    match.headers.push({ name: name.toLowerCase(), is: checkHeaderMatch(c, hv, `${path}.match.headers.${name}`) });
  }
  if (typeof o.pool !== 'string' || !o.pool) c.fail(`${path}.pool`, 'is required (the name of a pool)');
  const name = c.str(o.name, `${path}.name`, /^[\w.-]{1,64}$/, 'a name of letters, digits, _ . -') ?? `${i}-${typeof o.pool === 'string' ? o.pool : ''}`;
  return { name, match, pool: typeof o.pool === 'string' ? o.pool : '' };
}

function checkRetryOn(c: Checker, v: unknown, path: string): string[] {
  if (v === undefined) return [...DEFAULT_RETRY_ON];
  const list = typeof v === 'string' || typeof v === 'number' ? [v] : c.list(v, path);
  const out: string[] = [];
  list.forEach((x, i) => {
    const s = String(x);
    if ((RETRY_ON as readonly string[]).includes(s) || (RETRY_STATUSES as readonly number[]).includes(Number(s))) { if (!out.includes(s)) out.push(s); }
    else c.fail(`${path}${Array.isArray(v) ? `[${i}]` : ''}`, `must be one of ${[...RETRY_ON, ...RETRY_STATUSES].join(', ')}`);
  });
  return out;
}

function checkEndpoint(c: Checker, v: unknown, path: string): EndpointSpec | undefined {
  if (typeof v === 'string') {
    const hp = parseHostPort(v);
    if (!hp) { c.fail(path, 'must be host:port like 10.0.0.1:8080 or [2001:db8::1]:8080'); return undefined; }
    return { ...hp, weight: 1 };
  }
  const o = c.object(v, path);
  c.known(o, path, ['address', 'weight']);
  const hp = typeof o.address === 'string' ? parseHostPort(o.address) : null;
  if (!hp) { c.fail(`${path}.address`, 'must be host:port like 10.0.0.1:8080 or [2001:db8::1]:8080'); return undefined; }
  return { ...hp, weight: c.int(o.weight, `${path}.weight`, 0, 10_000, 1) };
}

function checkPool(c: Checker, name: string, v: unknown, path: string): PoolSpec {
  const o = c.object(v, path);
  c.known(o, path, ['balance', 'hashOn', 'sticky', 'endpoints', 'health', 'retries', 'retryOn', 'timeout', 'connectTimeout', 'idleTimeout', 'maxConnections', 'ejection']);
  const p: PoolSpec = {
    name,
    balance: BALANCES.includes(o.balance as Balance) || o.balance === undefined ? (o.balance as Balance) ?? 'round-robin'
      : (c.fail(`${path}.balance`, `must be one of ${BALANCES.join(', ')}`), 'round-robin'),
    hashOn: { clientIp: true },
    endpoints: [],
    retries: c.int(o.retries, `${path}.retries`, 0, 10, 1),
    retryOn: checkRetryOn(c, o.retryOn, `${path}.retryOn`),
    timeoutMs: c.duration(o.timeout, `${path}.timeout`, 30_000),
    connectTimeoutMs: c.duration(o.connectTimeout, `${path}.connectTimeout`, 2_000),
    idleTimeoutMs: c.duration(o.idleTimeout, `${path}.idleTimeout`, 4_000),
    maxConnections: c.int(o.maxConnections, `${path}.maxConnections`, 1, 100_000, 512),
    ejection: { ...DEFAULT_EJECTION },
  };
  if (o.hashOn !== undefined) {
    const h = c.object(o.hashOn, `${path}.hashOn`);
    c.known(h, `${path}.hashOn`, ['header', 'cookie', 'clientIp']);
    if (Object.keys(h).length !== 1) c.fail(`${path}.hashOn`, 'must be exactly one of { header }, { cookie }, { clientIp: true }');
    else if (h.header !== undefined) p.hashOn = { header: (c.str(h.header, `${path}.hashOn.header`, TOKEN, 'a header name') ?? 'x').toLowerCase() };
    else if (h.cookie !== undefined) p.hashOn = { cookie: c.str(h.cookie, `${path}.hashOn.cookie`, TOKEN, 'a cookie name') ?? 'x' };
    else if (h.clientIp !== true) c.fail(`${path}.hashOn.clientIp`, 'must be true');
    if (p.balance !== 'ring-hash') c.fail(`${path}.hashOn`, 'applies only to balance: ring-hash');
  }
  if (o.sticky !== undefined) {
    const s = c.object(o.sticky, `${path}.sticky`);
    c.known(s, `${path}.sticky`, ['cookie', 'maxAge']);
    const cookie = c.str(s.cookie, `${path}.sticky.cookie`, TOKEN, 'a cookie name');
    if (s.cookie === undefined) c.fail(`${path}.sticky.cookie`, 'is required');
    p.sticky = { cookie: cookie ?? 'SLUICE' };
    if (s.maxAge !== undefined) p.sticky.maxAgeS = Math.ceil(c.duration(s.maxAge, `${path}.sticky.maxAge`, 3_600_000) / 1000);
  }
  const eps = c.list(o.endpoints, `${path}.endpoints`);
  if (eps.length === 0) c.fail(`${path}.endpoints`, 'needs at least one endpoint');
  const seen = new Set<string>();
  eps.forEach((e, i) => {
    const ep = checkEndpoint(c, e, `${path}.endpoints[${i}]`);
    if (!ep) return;
    const key = endpointKey(ep);
    if (seen.has(key)) c.fail(`${path}.endpoints[${i}]`, `duplicate endpoint ${key}`);
    seen.add(key);
    p.endpoints.push(ep);
  });
  if (o.health !== undefined && o.health !== false) {
    const h = c.object(o.health, `${path}.health`);
    c.known(h, `${path}.health`, ['path', 'interval', 'timeout', 'rise', 'fall', 'host']);
    p.health = {
      path: c.str(h.path, `${path}.health.path`, /^\/\S*$/, 'an absolute path like /healthz') ?? DEFAULT_HEALTH_CHECK.path,
      intervalMs: c.duration(h.interval, `${path}.health.interval`, DEFAULT_HEALTH_CHECK.intervalMs),
      timeoutMs: c.duration(h.timeout, `${path}.health.timeout`, DEFAULT_HEALTH_CHECK.timeoutMs),
      rise: c.int(h.rise, `${path}.health.rise`, 1, 100, DEFAULT_HEALTH_CHECK.rise),
      fall: c.int(h.fall, `${path}.health.fall`, 1, 100, DEFAULT_HEALTH_CHECK.fall),
    };
    const hh = c.str(h.host, `${path}.health.host`, /^[a-z0-9.:-]+$/i, 'a host name');
    if (hh) p.health.host = hh;
  }
  if (o.ejection !== undefined) {
    const e = c.object(o.ejection, `${path}.ejection`);
    c.known(e, `${path}.ejection`, ['consecutiveFailures', 'baseTime', 'maxTime', 'maxPercent']);
    p.ejection = {
      consecutiveFailures: c.int(e.consecutiveFailures, `${path}.ejection.consecutiveFailures`, 0, 1000, DEFAULT_EJECTION.consecutiveFailures),
      baseMs: c.duration(e.baseTime, `${path}.ejection.baseTime`, DEFAULT_EJECTION.baseMs),
      maxMs: c.duration(e.maxTime, `${path}.ejection.maxTime`, DEFAULT_EJECTION.maxMs),
      maxPercent: c.int(e.maxPercent, `${path}.ejection.maxPercent`, 0, 100, DEFAULT_EJECTION.maxPercent),
    };
  }
  return p;
}

/** Validate the `l7:` section. Throws ValidationError listing every issue, each named by its path. */
export function validateL7(doc: unknown, path = 'l7'): L7Config {
  const c = new Checker();
  if (doc === undefined || doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ValidationError([{ path, message: 'must be a mapping with listeners, routes and pools' }]);
  }
  const o = doc as Record<string, unknown>;
  c.known(o, path, ['workers', 'listeners', 'routes', 'pools', 'trustedProxies', 'timeouts', 'limits', 'retryBudget', 'metrics', 'accessLog', 'requestIdHeader', 'via']);
  const listeners = c.list(o.listeners, `${path}.listeners`).map((l, i) => checkListener(c, l, `${path}.listeners[${i}]`));
  if (listeners.length === 0) c.fail(`${path}.listeners`, 'needs at least one listener');
  const seenL = new Set<string>();
  listeners.forEach((l, i) => {
    const k = `${l.address}:${l.port}`;
    if (l.port !== 0 && seenL.has(k)) c.fail(`${path}.listeners[${i}]`, `duplicate listener ${k}`);
    else {
      const j = listeners.findIndex((m, jj) => jj < i && overlaps(m, l));
      if (j >= 0) c.fail(`${path}.listeners[${i}]`, `${joinHostPort(l.address, l.port)} overlaps ${path}.listeners[${j}] (${joinHostPort(listeners[j].address, l.port)}): both cannot be bound`);
    }
    seenL.add(k);
  });
  // No prototype: a route to `toString` or `constructor` must not find Object's, and a pool
  // named `__proto__` is a pool like any other (a plain object would take it as its prototype).
  const pools: Record<string, PoolSpec> = Object.create(null);
  const po = c.object(o.pools, `${path}.pools`);
  for (const [name, pv] of Object.entries(po)) {
    if (!/^[\w.-]{1,64}$/.test(name)) c.fail(`${path}.pools.${name}`, 'pool names are letters, digits, _ . - (1..64)');
    pools[name] = checkPool(c, name, pv, `${path}.pools.${name}`);
  }
  const routes = c.list(o.routes, `${path}.routes`).map((r, i) => checkRoute(c, r, `${path}.routes[${i}]`, i));
  if (routes.length === 0) c.fail(`${path}.routes`, 'needs at least one route');
  routes.forEach((r, i) => { if (r.pool && !Object.hasOwn(pools, r.pool)) c.fail(`${path}.routes[${i}].pool`, `no pool named ${r.pool}`); });
  // Names label metrics and log lines: two routes with one name could not be told apart there.
  const routeNames = new Map<string, number>();
  routes.forEach((r, i) => {
    const first = routeNames.get(r.name);
    if (first === undefined) { routeNames.set(r.name, i); return; }
    const given = ((o.routes as unknown[])[i] as { name?: unknown } | null)?.name !== undefined; // else the default INDEX-POOL
    c.fail(`${path}.routes[${i}]${given ? '.name' : ''}`, `duplicate route name ${r.name} (${path}.routes[${first}] has it)`);
  });
  const t = c.object(o.timeouts, `${path}.timeouts`);
  c.known(t, `${path}.timeouts`, ['headers', 'request', 'keepAlive', 'drain', 'send']);
  const l = c.object(o.limits, `${path}.limits`);
  c.known(l, `${path}.limits`, ['maxHeaderSize', 'maxHeaders', 'maxBodySize', 'maxConcurrentStreams']);
  const rb = c.object(o.retryBudget, `${path}.retryBudget`);
  c.known(rb, `${path}.retryBudget`, ['ratio', 'minRetries']);
  const cfg: L7Config = {
    listeners: listeners.map(({ workers: _w, ...rest }) => rest),
    routes,
    pools,
    trustedProxies: c.list(o.trustedProxies, `${path}.trustedProxies`).map((v, i) => checkCidr(c, v, `${path}.trustedProxies[${i}]`)).filter((x): x is string => !!x),
    timeouts: {
      headersMs: c.duration(t.headers, `${path}.timeouts.headers`, DEFAULT_TIMEOUTS.headersMs),
      requestMs: c.duration(t.request, `${path}.timeouts.request`, DEFAULT_TIMEOUTS.requestMs),
      keepAliveMs: c.duration(t.keepAlive, `${path}.timeouts.keepAlive`, DEFAULT_TIMEOUTS.keepAliveMs),
      drainMs: c.duration(t.drain, `${path}.timeouts.drain`, DEFAULT_TIMEOUTS.drainMs),
      sendMs: c.duration(t.send, `${path}.timeouts.send`, DEFAULT_TIMEOUTS.sendMs),
    },
    limits: {
      maxHeaderBytes: c.size(l.maxHeaderSize, `${path}.limits.maxHeaderSize`, DEFAULT_LIMITS.maxHeaderBytes),
      maxHeaders: c.int(l.maxHeaders, `${path}.limits.maxHeaders`, 1, 10_000, DEFAULT_LIMITS.maxHeaders),
      maxBodyBytes: c.size(l.maxBodySize, `${path}.limits.maxBodySize`, DEFAULT_LIMITS.maxBodyBytes),
      maxConcurrentStreams: c.int(l.maxConcurrentStreams, `${path}.limits.maxConcurrentStreams`, 1, 10_000, DEFAULT_LIMITS.maxConcurrentStreams),
    },
    retryBudget: {
      ratio: c.num(rb.ratio, `${path}.retryBudget.ratio`, 0, 1, 0.2),
      minRetries: c.int(rb.minRetries, `${path}.retryBudget.minRetries`, 0, 100_000, 10),
    },
    accessLog: c.bool(o.accessLog, `${path}.accessLog`, true),
    requestIdHeader: (c.str(o.requestIdHeader, `${path}.requestIdHeader`, TOKEN, 'a header name') ?? 'x-request-id').toLowerCase(),
    via: c.str(o.via, `${path}.via`, /^[\w.-]{1,64}$/, 'a pseudonym of letters, digits, _ . -') ?? 'sluice',
  };
  if (MANAGED_HEADERS.includes(cfg.requestIdHeader)) c.fail(`${path}.requestIdHeader`, `must not be a header sluice manages itself (${MANAGED_HEADERS.join(', ')})`);
  if (cfg.timeouts.headersMs > cfg.timeouts.requestMs) c.fail(`${path}.timeouts.headers`, 'must not exceed timeouts.request');
  const workers = o.workers ?? listeners.map((x) => x.workers).filter((x) => x !== undefined).sort((a, b) => b! - a!)[0];
  if (workers !== undefined) cfg.workers = c.int(workers, `${path}.workers`, 1, 256, 1);
  if (o.metrics !== undefined) {
    const hp = typeof o.metrics === 'string' ? parseHostPort(o.metrics) : null;
    if (!hp || !canonicalIp(hp.host)) c.fail(`${path}.metrics`, 'must be ADDRESS:PORT like 127.0.0.1:9102');
    else {
      cfg.metrics = { address: hp.host, port: hp.port };
      const j = listeners.findIndex((m) => overlaps(m, { address: hp.host, port: hp.port }));
      if (j >= 0) c.fail(`${path}.metrics`, `${o.metrics} is also where ${path}.listeners[${j}] (${joinHostPort(listeners[j].address, hp.port)}) is bound`);
    }
  }
  if (c.issues.length) throw new ValidationError(c.issues);
  return cfg;
}
