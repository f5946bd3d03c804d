/**
 * The agent's HTTP/JSON API on a unix socket (mode 0600: root only). The CLI is one client;
 * nothing here trusts it: every body is validated again by the model.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import {
  SluiceError, ValidationError, parseRealRef, parseVipKey, realKey, vipKey, type Config, type StatsSnapshot,
} from '../model/index.js';
import type { Agent } from './agent.js';
import { addReal, addVip, applyConfig, delReal, delVip, diffConfigs, isNoChange, setReal, type ConfigDiff } from './desired.js';
import { toDocument } from './store.js';

const MAX_BODY = 4 * 1024 * 1024;
const MAX_SOCKET_PATH = 107;
const STATUS: Record<string, number> = { EINVAL: 400, ENOENT: 404, EEXIST: 409, ELIMIT: 422, EBODY: 413, EMETHOD: 405 };

class HttpError extends SluiceError {}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > MAX_BODY) {
        // Stop buffering but keep reading, so the client gets its 413 rather than a reset.
        if (!over) reject(new HttpError('EBODY', `request body over ${MAX_BODY} bytes`));
        over = true;
        chunks.length = 0;
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (over) return;
      const text = Buffer.concat(chunks).toString('utf8');
      if (!text.trim()) return resolve(undefined);
      try { resolve(JSON.parse(text)); } catch (e) { reject(new ValidationError([{ path: 'body', message: `not valid JSON: ${(e as Error).message}` }])); }
    });
    req.on('error', reject);
  });
}

/** Canonical VIP key from a URL segment, so `[2001:DB8::1]:80/TCP` finds `[2001:db8::1]:80/tcp`. */
function vipParam(s: string): string {
  return vipKey(parseVipKey(s));
}
/** Canonical real key within its VIP: `10.0.0.11:80` on a port-80 VIP is `10.0.0.11`, as stored. */
function realParam(s: string, vip: string): string {
  const r = parseRealRef(s);
  return realKey(r.port === parseVipKey(vip).port ? { address: r.address } : r);
}

function describeVips(agent: Agent, c: Config) {
  return c.vips.map((v) => ({
    key: vipKey(v),
    ...v,
    reals: v.reals.map((r) => ({ key: realKey(r), ...r, health: v.health.type === 'none' ? 'none' : agent.health(vipKey(v), realKey(r)) })),
  }));
}

/** Each real in a stats snapshot (named as in the config: Agent.stats) gets its health. */
function annotateHealth(agent: Agent, s: StatsSnapshot) {
  const byVip = new Map(agent.config.vips.map((v) => [vipKey(v), v]));
  return {
    ...s,
    vips: s.vips.map((sv) => {
      const v = byVip.get(sv.key);
      return {
        ...sv,
        reals: sv.reals.map((sr) => {
          const r = v?.reals.find((x) => sr.key === realKey(x));
          const health = !v || !r ? 'unknown' : r.drain ? 'drain' : v.health.type === 'none' ? 'none' : agent.health(vipKey(v), realKey(r));
          return { ...sr, health };
        }),
      };
    }),
  };
}

type Handler = (agent: Agent, params: string[], body: () => Promise<unknown>) => Promise<unknown>;

const routes: Array<{ method: string; path: RegExp; handler: Handler }> = [
  { method: 'GET', path: /^\/v1\/status$/, handler: async (a) => a.status() },
  { method: 'GET', path: /^\/v1\/config$/, handler: async (a) => toDocument(a.config) },
  { method: 'PUT', path: /^\/v1\/config$/, handler: async (a, _p, body) => {
    const doc = await body();
    // No body is no document: it must not become "no VIPs, no l7".
    if (doc === undefined) throw new ValidationError([{ path: 'body', message: 'is empty: PUT /v1/config takes a whole config document (to remove every VIP: {"vips": []})' }]);
    let diff: ConfigDiff | undefined;
    await a.change((c) => { const next = applyConfig(c, doc); diff = diffConfigs(c, next); return next; });
    return { ok: true, vips: a.config.vips.length, changed: !isNoChange(diff!), diff };
  } },
  { method: 'GET', path: /^\/v1\/vips$/, handler: async (a) => describeVips(a, a.config) },
  { method: 'POST', path: /^\/v1\/vips$/, handler: async (a, _p, body) => {
    const input = await body();
    const c = await a.change((c) => addVip(c, input));
    return { ok: true, vip: vipKey(c.vips[c.vips.length - 1]) };
  } },
  { method: 'DELETE', path: /^\/v1\/vips\/([^/]+)$/, handler: async (a, [vip]) => {
    const key = vipParam(vip);
    await a.change((c) => delVip(c, key));
    return { ok: true };
  } },
  { method: 'GET', path: /^\/v1\/vips\/([^/]+)\/reals$/, handler: async (a, [vip]) => {
    const key = vipParam(vip);
    const v = describeVips(a, a.config).find((x) => x.key === key);
    if (!v) throw new SluiceError('ENOENT', `no VIP ${key}`);
    return v.reals;
  } },
  { method: 'POST', path: /^\/v1\/vips\/([^/]+)\/reals$/, handler: async (a, [vip], body) => {
    const key = vipParam(vip);
    const input = await body();
    await a.change((c) => addReal(c, key, input));
    return { ok: true };
  } },
  { method: 'PATCH', path: /^\/v1\/vips\/([^/]+)\/reals\/([^/]+)$/, handler: async (a, [vip, real], body) => {
    const vk = vipParam(vip), rk = realParam(real, vk);
    const input = (await body()) as Record<string, unknown>;
    await a.change((c) => setReal(c, vk, rk, input ?? {}));
    return { ok: true };
  } },
  { method: 'DELETE', path: /^\/v1\/vips\/([^/]+)\/reals\/([^/]+)$/, handler: async (a, [vip, real]) => {
    const vk = vipParam(vip), rk = realParam(real, vk);
    await a.change((c) => delReal(c, vk, rk));
    return { ok: true };
  } },
  { method: 'GET', path: /^\/v1\/stats$/, handler: async (a) => annotateHealth(a, await a.stats()) },
];

async function handle(agent: Agent, log: Logger, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://agent');
  let status = 200;
  let payload: unknown;
  try {
    const byPath = routes.filter((r) => r.path.test(url.pathname));
    if (byPath.length === 0) throw new SluiceError('ENOENT', `no such endpoint ${url.pathname}`);
    const route = byPath.find((r) => r.method === req.method);
    if (!route) throw new SluiceError('EMETHOD', `${req.method} not allowed on ${url.pathname} (allowed: ${byPath.map((r) => r.method).join(', ')})`);
    const params = (route.path.exec(url.pathname) ?? []).slice(1).map((p) => {
      try { return decodeURIComponent(p); } catch { throw new ValidationError([{ path: 'url', message: `"${p}" is not valid percent-encoding` }]); }
    });
    payload = await route.handler(agent, params, () => readJson(req));
  } catch (e) {
    const err = e as SluiceError & { issues?: unknown };
    status = STATUS[err.code] ?? 500;
    payload = { error: { code: err.code ?? 'EINTERNAL', message: err.message, ...(err.issues ? { issues: err.issues } : {}) } };
    if (status >= 500) log.error({ err: e, method: req.method, path: url.pathname }, 'API request failed');
  }
  if (req.method !== 'GET') log.info({ method: req.method, path: url.pathname, status }, 'api');
  const body = JSON.stringify(payload) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...(status === 413 ? { connection: 'close' } : {}) });
  res.end(body);
}

/** True when something answers on the socket: another agent is running. */
function socketAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/**
 * Refuse a socket path another agent serves, or that is something else than a socket (a file
 * given by mistake must not be deleted). A stale socket of a dead agent is removed.
 */
export async function claimSocket(socketPath: string): Promise<void> {
  // listen('') would be taken as a TCP port, after the data plane is already open.
  if (socketPath === '') throw new SluiceError('EINVAL', '--socket is empty: give the API socket\'s path');
  // sun_path holds 108 bytes with its NUL; a longer path is bound truncated, elsewhere.
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
    throw new SluiceError('EINVAL', `--socket ${socketPath} is ${Buffer.byteLength(socketPath)} bytes, over the ${MAX_SOCKET_PATH} a unix socket path may have; give a shorter one`);
  }
  let st;
  try { st = lstatSync(socketPath); } catch { return; }
  if (!st.isSocket()) throw new SluiceError('EEXIST', `${socketPath} exists and is not a socket; give another --socket`);
  if (await socketAlive(socketPath)) throw new SluiceError('EBUSY', `an agent is already serving ${socketPath}`);
  unlinkSync(socketPath);
}

export async function serveApi(agent: Agent, socketPath: string, log: Logger): Promise<Server> {
  await claimSocket(socketPath);
  mkdirSync(dirname(socketPath), { recursive: true, mode: 0o755 });
  const server = createServer((req, res) => void handle(agent, log, req, res));
  // Created 0600 from the start: no window where another user could connect.
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => resolve());
    });
  } finally {
    process.umask(old);
  }
  chmodSync(socketPath, 0o600);
  return server;
}
