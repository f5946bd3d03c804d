import { isPrime } from '../maglev/index.js';
import { canonicalIp, canonicalMac, ipFamily, leadingZeroOf, unusableAddress, unusableMac, zoneOf } from './address.js';
import { ValidationError, type Issue } from './errors.js';
import { vipKey, realKey } from './keys.js';
import {
  DEFAULT_DATAPLANE, DEFAULT_HEALTH, HASHES, MODES, PROTOCOLS, SCHEDULERS,
  type Config, type DataplaneSpec, type HealthSpec, type RealSpec, type VipSpec,
} from './types.js';

/**
 * Validation collects every problem with its path, so one run of `sluice apply` shows them all.
 * Each check returns a usable default after reporting, which keeps later checks meaningful.
 */
class Checker {
  readonly issues: Issue[] = [];
  fail(path: string, message: string): void {
    this.issues.push({ path, message });
  }
  object(v: unknown, path: string): Record<string, unknown> {
    if (v === undefined || v === null) return {};
    if (typeof v !== 'object' || Array.isArray(v)) { this.fail(path, 'must be an object'); return {}; }
    return v as Record<string, unknown>;
  }
  known(o: Record<string, unknown>, path: string, keys: string[]): void {
    for (const k of Object.keys(o)) if (!keys.includes(k)) this.fail(join(path, k), `unknown field (expected one of: ${keys.join(', ')})`);
  }
  int(v: unknown, path: string, min: number, max: number, dflt: number): number {
    if (v === undefined) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      // `port: "80"` is a string to YAML: say so, or "must be an integer" reads as nonsense.
      const quoted = typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? ` (${JSON.stringify(v)} is a string: write it without quotes)` : '';
      this.fail(path, `must be an integer ${min}..${max}${quoted}`);
      return dflt;
    }
    return v;
  }
  oneOf<T extends string>(v: unknown, path: string, allowed: readonly T[], dflt: T): T {
    if (v === undefined) return dflt;
    if (typeof v !== 'string' || !allowed.includes(v as T)) {
      this.fail(path, `must be one of ${allowed.join(', ')}`);
      return dflt;
    }
    return v as T;
  }
  ip(v: unknown, path: string): string {
    const zone = typeof v === 'string' ? zoneOf(v) : null;
    if (zone) { this.fail(path, `${zone}: a VIP or real address takes none`); return '0.0.0.0'; }
    const octal = typeof v === 'string' ? leadingZeroOf(v) : null;
    if (octal) { this.fail(path, octal); return '0.0.0.0'; }
    const a = typeof v === 'string' ? canonicalIp(v) : null;
    if (!a) this.fail(path, 'must be an IPv4 or IPv6 address');
    const why = a ? unusableAddress(a) : null;
    if (why) this.fail(path, `${why}: a VIP or real must be one host's unicast address`);
    return a ?? '0.0.0.0';
  }
  mac(v: unknown, path: string): string | undefined {
    if (v === undefined) return undefined;
    const m = typeof v === 'string' ? canonicalMac(v) : null;
    if (!m) { this.fail(path, 'must be a MAC address like 02:00:00:00:00:01'); return undefined; }
    const why = unusableMac(m);
    if (why) { this.fail(path, `${why}: a next hop must be one station's unicast MAC`); return undefined; }
    return m;
  }
  duration(v: unknown, path: string, dfltMs: number): number {
    if (v === undefined) return dfltMs;
    // `interval: 5` meant as seconds would probe every 5 ms: a duration states its unit.
    if (typeof v === 'number') { this.fail(path, `must be a duration with its unit, like 500ms, 2s or 1m (${v} has none)`); return dfltMs; }
    const ms = parseDuration(v);
    if (ms === null || ms <= 0 || ms > 3_600_000) { this.fail(path, 'must be a duration like 500ms, 2s or 1m'); return dfltMs; }
    return ms;
  }
}

function join(path: string, key: string | number): string {
  return typeof key === 'number' ? `${path}[${key}]` : path ? `${path}.${key}` : key;
}

/** `500ms`, `2s`, `1.5s`, `1m`, or a number of milliseconds. */
export function parseDuration(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v !== 'string') return null;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(v.trim());
  if (!m) return null;
  return Math.round(Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[m[2] as 'ms' | 's' | 'm']);
}

function checkHealth(c: Checker, v: unknown, path: string): HealthSpec {
  const o = c.object(v, path);
  c.known(o, path, ['type', 'path', 'port', 'interval', 'timeout', 'rise', 'fall']);
  const type = c.oneOf(o.type, join(path, 'type'), ['tcp', 'http', 'none'] as const, o.path !== undefined ? 'http' : DEFAULT_HEALTH.type);
  const h: HealthSpec = {
    type,
    intervalMs: c.duration(o.interval, join(path, 'interval'), DEFAULT_HEALTH.intervalMs),
    timeoutMs: c.duration(o.timeout, join(path, 'timeout'), DEFAULT_HEALTH.timeoutMs),
    rise: c.int(o.rise, join(path, 'rise'), 1, 100, DEFAULT_HEALTH.rise),
    fall: c.int(o.fall, join(path, 'fall'), 1, 100, DEFAULT_HEALTH.fall),
  };
  if (o.port !== undefined) h.port = c.int(o.port, join(path, 'port'), 1, 65535, 0);
  // A probe outliving its interval would overlap the next one and stretch fall × interval.
  if (h.timeoutMs > h.intervalMs) c.fail(join(path, 'timeout'), `must not exceed the interval (${h.timeoutMs}ms > ${h.intervalMs}ms)`);
  if (type === 'none' && o.port !== undefined) c.fail(join(path, 'port'), 'has no use without a health check (type none)');
  // `type: tcp, path: /healthz` most likely meant an HTTP check: say so rather than probe TCP.
  if (type !== 'http' && o.path !== undefined) c.fail(join(path, 'path'), `has no use without an http check (type ${type})`);
  if (type === 'http') {
    const p = o.path ?? '/';
    if (typeof p !== 'string' || !p.startsWith('/') || /\s/.test(p)) c.fail(join(path, 'path'), 'must be an absolute path like /healthz');
    else h.path = p;
  }
  return h;
}

function checkReal(c: Checker, v: unknown, path: string, vip: { mode: string; port: number; address: string }): RealSpec {
  const o = c.object(v, path);
  c.known(o, path, ['address', 'port', 'weight', 'mac', 'drain']);
  const r: RealSpec = {
    address: c.ip(o.address, join(path, 'address')),
    weight: c.int(o.weight, join(path, 'weight'), 0, 65535, 1),
    drain: false,
  };
  if (o.port !== undefined) {
    r.port = c.int(o.port, join(path, 'port'), 1, 65535, 1);
    if (vip.mode !== 'nat' && r.port !== vip.port) c.fail(join(path, 'port'), 'a real may have its own port only in nat mode');
    // The VIP's own port is the default: one real, one key, whichever way it was written.
    if (r.port === vip.port) delete r.port;
  } else if (vip.mode === 'nat' && vip.port === 0) {
    // An any-port NAT VIP keeps the client's destination port; nothing to check.
  }
  const mac = c.mac(o.mac, join(path, 'mac'));
  if (mac) r.mac = mac;
  if (o.drain !== undefined) {
    if (typeof o.drain !== 'boolean') c.fail(join(path, 'drain'), 'must be true or false');
    else r.drain = o.drain;
  }
  // The balancer would forward the VIP's packets to itself (or, in dsr, to whoever answers ARP for the VIP).
  if (o.address !== undefined && r.address === vip.address) c.fail(join(path, 'address'), `is the VIP's own address: a real must be another host`);
  if (vip.mode !== 'ipip' && o.address !== undefined && canonicalIp(String(o.address)) && ipFamily(r.address) !== ipFamily(vip.address)) {
    c.fail(join(path, 'address'), `must be IPv${ipFamily(vip.address)} like the VIP in ${vip.mode} mode (only ipip may cross families)`);
  }
  return r;
}

function checkVip(c: Checker, v: unknown, path: string, limits: { maxReals: number }): VipSpec {
  const o = c.object(v, path);
  c.known(o, path, ['address', 'port', 'protocol', 'mode', 'hash', 'scheduler', 'health', 'reals']);
  const address = c.ip(o.address, join(path, 'address'));
  const port = c.int(o.port, join(path, 'port'), 0, 65535, 0);
  if (o.port === undefined) c.fail(join(path, 'port'), 'is required (0 means every port)');
  const mode = c.oneOf(o.mode, join(path, 'mode'), MODES, 'dsr');
  const vip: VipSpec = {
    address,
    port,
    // As on the command line (`/TCP`) and in ipvsadm: the protocol's case carries no meaning.
    protocol: c.oneOf(typeof o.protocol === 'string' ? o.protocol.toLowerCase() : o.protocol, join(path, 'protocol'), PROTOCOLS, 'tcp'),
    mode,
    hash: c.oneOf(o.hash, join(path, 'hash'), HASHES, '5tuple'),
    scheduler: c.oneOf(o.scheduler, join(path, 'scheduler'), SCHEDULERS, 'mh'),
    health: checkHealth(c, o.health, join(path, 'health')),
    reals: [],
  };
  if (vip.health.type !== 'none' && port === 0 && vip.health.port === undefined) {
    c.fail(join(path, 'health.port'), 'is required when the VIP matches every port (port 0)');
  }
  const reals = o.reals ?? [];
  if (!Array.isArray(reals)) c.fail(join(path, 'reals'), 'must be a list');
  else {
    if (reals.length > limits.maxReals) c.fail(join(path, 'reals'), `has ${reals.length} reals, over the limit of ${limits.maxReals} (dataplane.maxReals)`);
    const seen = new Set<string>();
    reals.forEach((r, i) => {
      const real = checkReal(c, r, join(join(path, 'reals'), i), vip);
      const k = realKey(real);
      if (seen.has(k)) c.fail(join(join(join(path, 'reals'), i), 'address'), `duplicate real ${k}`);
      seen.add(k);
      vip.reals.push(real);
    });
  }
  return vip;
}

const MAX_RING_SLOTS = 2 ** 28;

function checkDataplane(c: Checker, v: unknown, path: string): DataplaneSpec {
  const o = c.object(v, path);
  c.known(o, path, ['kind', 'interface', 'xdpMode', 'ringSize', 'maxVips', 'maxReals', 'flowTableSize', 'gatewayMac', 'encapSource4', 'encapSource6']);
  const d: DataplaneSpec = {
    kind: c.oneOf(o.kind, join(path, 'kind'), ['auto', 'xdp', 'ipvs'] as const, DEFAULT_DATAPLANE.kind),
    xdpMode: c.oneOf(o.xdpMode, join(path, 'xdpMode'), ['native', 'generic'] as const, DEFAULT_DATAPLANE.xdpMode),
    ringSize: c.int(o.ringSize, join(path, 'ringSize'), 7, 1_000_003, DEFAULT_DATAPLANE.ringSize),
    maxVips: c.int(o.maxVips, join(path, 'maxVips'), 1, 4096, DEFAULT_DATAPLANE.maxVips),
    maxReals: c.int(o.maxReals, join(path, 'maxReals'), 1, 65535, DEFAULT_DATAPLANE.maxReals),
    flowTableSize: c.int(o.flowTableSize, join(path, 'flowTableSize'), 1024, 100_000_000, DEFAULT_DATAPLANE.flowTableSize),
  };
  if (!isPrime(d.ringSize)) c.fail(join(path, 'ringSize'), `must be a prime (${d.ringSize} is not; 65537 is the default)`);
  // The rings map holds maxVips × ringSize u32 slots, indexed by a u32: keep it well below both.
  if (d.maxVips * d.ringSize > MAX_RING_SLOTS) c.fail(path, `maxVips × ringSize is ${d.maxVips * d.ringSize} ring slots, over the limit of ${MAX_RING_SLOTS} (1 GiB of BPF map)`);
  if (o.interface !== undefined) {
    if (typeof o.interface !== 'string' || !/^[^\s/:]{1,15}$/.test(o.interface)) c.fail(join(path, 'interface'), 'must be an interface name (1..15 characters)');
    else d.interface = o.interface;
  }
  const gw = c.mac(o.gatewayMac, join(path, 'gatewayMac'));
  if (gw) d.gatewayMac = gw;
  // ipip outer sources: one address, or a prefix whose host bits (at most 32) carry the flow hash.
  for (const [k, fam, min] of [['encapSource4', 4, 8], ['encapSource6', 6, 96]] as const) {
    if (o[k] === undefined) continue;
    const [a, len, extra] = typeof o[k] === 'string' ? (o[k] as string).split('/') : [];
    const addr = a === undefined ? null : canonicalIp(a);
    const bits = fam === 4 ? 32 : 128;
    const n = len === undefined ? bits : /^\d+$/.test(len) ? Number(len) : NaN;
    if (!addr || ipFamily(addr) !== fam || extra !== undefined || !(n >= min && n <= bits)) {
      c.fail(join(path, k), fam === 4 ? 'must be an IPv4 address or prefix /8../32 (10.0.0.0/24: the last 8 bits vary with the flow)' : 'must be an IPv6 address or prefix /96../128 (fd00::/120: the last 8 bits vary with the flow)');
    } else {
      d[k] = len === undefined ? addr : `${addr}/${n}`;
    }
  }
  return d;
}

/** Validate a whole config document (parsed YAML/JSON). Throws ValidationError listing every problem. */
export function validateConfig(doc: unknown): Config {
  const c = new Checker();
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new ValidationError([{ path: '', message: 'the config must be a mapping with dataplane, vips and l7' }]);
  const o = doc as Record<string, unknown>;
  c.known(o, '', ['dataplane', 'vips', 'l7']);
  const dataplane = checkDataplane(c, o.dataplane, 'dataplane');
  const vips: VipSpec[] = [];
  const list = o.vips ?? [];
  if (!Array.isArray(list)) c.fail('vips', 'must be a list');
  else {
    if (list.length > dataplane.maxVips) c.fail('vips', `has ${list.length} VIPs, over the limit of ${dataplane.maxVips} (dataplane.maxVips)`);
    const seen = new Set<string>();
    list.forEach((v, i) => {
      const vip = checkVip(c, v, `vips[${i}]`, dataplane);
      const k = vipKey(vip);
      if (seen.has(k)) c.fail(`vips[${i}]`, `duplicate VIP ${k}`);
      seen.add(k);
      vips.push(vip);
    });
  }
  const total = vips.reduce((n, v) => n + v.reals.length, 0);
  if (total > dataplane.maxReals) c.fail('vips', `have ${total} reals in all, over the limit of ${dataplane.maxReals} (dataplane.maxReals)`);
  if (c.issues.length) throw new ValidationError(c.issues);
  const config: Config = { dataplane, vips };
  if (o.l7 !== undefined) config.l7 = o.l7;
  return config;
}

/** Validate one VIP as the API receives it (`vip add`), under the running limits. */
export function validateVip(v: unknown, limits: { maxReals: number }): VipSpec {
  const c = new Checker();
  const vip = checkVip(c, v, 'vip', limits);
  if (c.issues.length) throw new ValidationError(c.issues);
  return vip;
}

/** Validate one real for an existing VIP (`real add`). */
export function validateReal(v: unknown, vip: VipSpec): RealSpec {
  const c = new Checker();
  const r = checkReal(c, v, 'real', vip);
  if (c.issues.length) throw new ValidationError(c.issues);
  return r;
}
