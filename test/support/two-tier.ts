/**
 * "L4 in front of L7" on the DESIGN §8 topology: real1 and real2 are L7 hosts (VIP on lo, running
 * `bin/sluice l7`), and three app servers live in namespaces of their own (sl-appN-ID) on the same
 * bridge. Everything started here is killed, and every namespace removed, by down() or at exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SLUICE } from './cli.js';
import { addNs, delNs, inNs } from './netns.js';
import { ADDR, type Topo } from './topo.js';

export const VIP = '10.99.100.1';
export const APPS = { app1: '10.99.0.21', app2: '10.99.0.22', app3: '10.99.0.23' } as const;
export type App = keyof typeof APPS;
export type L7Host = 'real1' | 'real2';
const APP_PORT = 8080;

const procs = new Set<ChildProcess>();
const atExit: Array<() => void> = [];
// A test process ended early still kills these (support/netns.ts turns SIGTERM, SIGINT and
// SIGHUP into an exit; support/agent.ts cleans up its agents at exit).
process.on('exit', () => { for (const p of procs) p.kill('SIGKILL'); for (const f of atExit) f(); });

/** An app server: every request is answered with JSON naming the app and what it saw of the proxy. */
const APP_SERVER = `
const [name, addr, port] = process.argv.slice(1);
require('node:http').createServer((req, res) => {
  const body = JSON.stringify({ app: name, peer: req.socket.remoteAddress, xff: req.headers['x-forwarded-for'] ?? null,
    reqVia: req.headers.via ?? null, host: req.headers.host, url: req.url });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}).listen(Number(port), addr, () => console.log('ready'));`;

/** The client: N sequential requests, each on a fresh connection (a new L4 flow), bounded in count and time. */
const CLIENT = `
const http = require('node:http');
const o = JSON.parse(process.argv[1]);
const one = (r) => new Promise((resolve) => {
  const t0 = Date.now();
  const fail = (e) => resolve({ t0, t1: Date.now(), error: e.code || e.message });
  const req = http.request({ host: o.vip, port: 80, path: r.path, headers: { host: r.host }, agent: false, timeout: o.timeoutMs }, (res) => {
    let b = '';
    res.setEncoding('utf8');
    res.on('data', (d) => (b += d));
    res.on('error', fail);
    res.on('end', () => { let j = {}; try { j = JSON.parse(b); } catch {} resolve({ t0, t1: Date.now(), status: res.statusCode, via: res.headers.via ?? null, ...j }); });
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', fail);
  req.end();
});
(async () => {
  const out = [], end = Date.now() + o.maxMs;
  for (let i = 0; i < o.n && Date.now() < end; i++) {
    out.push(await one(o.reqs[i % o.reqs.length]));
    if (o.gapMs) await new Promise((r) => setTimeout(r, o.gapMs));
  }
  process.stdout.write(JSON.stringify(out));
})();`;

export interface Req { host: string; path: string }
export interface Result { t0: number; t1: number; status?: number; via?: string | null; app?: App; peer?: string; xff?: string | null; reqVia?: string | null; host?: string; url?: string; error?: string }

/** Node in a namespace; out() is its output (only the last 20 kB, unless `whole`). */
function spawnIn(ns: string, args: string[], whole = false): { proc: ChildProcess; out: () => string } {
  const proc = spawn('nsenter', [`--net=/run/netns/${ns}`, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.add(proc);
  proc.on('exit', () => procs.delete(proc));
  let log = '';
  const keep = (d: Buffer) => { log = whole ? log + d : (log + d).slice(-20_000); };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  return { proc, out: () => log };
}

function waitForLine(p: { proc: ChildProcess; out: () => string }, re: RegExp, what: string, ms = 30_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { clearInterval(poll); reject(new Error(`${what} not ready within ${ms} ms:\n${p.out()}`)); }, ms);
    const poll = setInterval(() => {
      if (re.test(p.out())) { clearTimeout(t); clearInterval(poll); resolve(); }
      else if (p.proc.exitCode !== null || p.proc.signalCode !== null) { clearTimeout(t); clearInterval(poll); reject(new Error(`${what} exited:\n${p.out()}`)); }
    }, 50);
  });
}

/** The l7 section for one L7 host: the VIP for clients, the host's own address for the agent's health check. */
function l7Config(host: L7Host): object {
  return { l7: {
    workers: 1, accessLog: false, via: `l7-${host}`,
    listeners: [{ address: VIP, port: 80 }, { address: ADDR[host].v4, port: 80 }],
    routes: [{ match: { host: 'api.example.com', pathPrefix: '/v1/' }, pool: 'api' }, { match: { pathPrefix: '/' }, pool: 'web' }],
    pools: { api: { endpoints: [`${APPS.app1}:${APP_PORT}`, `${APPS.app2}:${APP_PORT}`] }, web: { endpoints: [`${APPS.app3}:${APP_PORT}`] } },
  } };
}

export class TwoTier {
  readonly l7 = new Map<L7Host, ChildProcess>();
  readonly #apps: string[] = [];
  readonly #dir = mkdtempSync(join(tmpdir(), 'sluice-two-tier-'));
  constructor(readonly topo: Topo) { atExit.push(() => rmSync(this.#dir, { recursive: true, force: true })); }

  /** App namespaces on the topology's bridge, their servers, and `sluice l7` on real1 and real2. */
  async start(): Promise<void> {
    const sw = this.topo.ns('sw');
    const ready: Promise<void>[] = [];
    for (const [i, [name, addr]] of Object.entries(APPS).entries()) {
      const ns = addNs(`sl-${name}-${this.topo.id}`);
      this.#apps.push(ns);
      const veth = `a${i}-${this.topo.id}`;
      inNs(sw, 'ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      inNs(sw, 'ip', ['link', 'set', veth, 'master', 'br0', 'up']);
      inNs(ns, 'ip', ['addr', 'add', `${addr}/24`, 'dev', 'eth0']);
      inNs(ns, 'ip', ['link', 'set', 'eth0', 'up']);
      const p = spawnIn(ns, ['-e', APP_SERVER, name, addr, String(APP_PORT)]);
      ready.push(waitForLine(p, /ready/, name));
    }
    for (const host of ['real1', 'real2'] as const) {
      const file = join(this.#dir, `${host}.json`);
      writeFileSync(file, JSON.stringify(l7Config(host)));
      const p = spawnIn(this.topo.ns(host), [SLUICE, 'l7', '--config', file]);
      this.l7.set(host, p.proc);
      ready.push(waitForLine(p, /l7 pool started/, `sluice l7 on ${host}`));
    }
    await Promise.all(ready);
  }

  /** Requests from the client namespace to the VIP, cycling through `reqs`. */
  requests(reqs: Req[], n: number, opts: { gapMs?: number; timeoutMs?: number; maxMs?: number } = {}): Promise<Result[]> {
    const o = { vip: VIP, reqs, n, gapMs: opts.gapMs ?? 0, timeoutMs: opts.timeoutMs ?? 2000, maxMs: opts.maxMs ?? 30_000 };
    const p = spawnIn(this.topo.ns('client'), ['-e', CLIENT, JSON.stringify(o)], true);
    const kill = setTimeout(() => p.proc.kill('SIGKILL'), o.maxMs + o.timeoutMs + 30_000);
    return new Promise((resolve, reject) => p.proc.on('close', (code) => {
      clearTimeout(kill);
      try { resolve(JSON.parse(p.out())); } catch { reject(new Error(`client exited ${code}: ${p.out().slice(0, 2000)}`)); }
    }));
  }

  /** Stop everything: L7 pools drain (SIGTERM), the rest is killed, the app namespaces go. */
  async down(): Promise<void> {
    await Promise.all([...this.l7.values()].map((p) => new Promise<void>((resolve) => {
      if (p.exitCode !== null || p.signalCode !== null) return resolve();
      const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
      p.once('exit', () => { clearTimeout(t); resolve(); });
      p.kill('SIGTERM');
    })));
    for (const p of procs) p.kill('SIGKILL');
    for (const ns of this.#apps) delNs(ns);
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

/** Which L7 host proxied a response, from its Via header (`1.1 l7-real2`). */
export function l7Of(r: Result): string | undefined {
  return /l7-(real\d)/.exec(r.via ?? '')?.[1];
}

export function countBy<T>(xs: T[], key: (x: T) => string | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) { const k = key(x) ?? 'none'; out[k] = (out[k] ?? 0) + 1; }
  return out;
}
