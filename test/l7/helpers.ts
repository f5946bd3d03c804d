/** Real servers on loopback for the L7 tests: backends that say who they are, a worker in-process, and raw clients. */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { validateL7 } from '../../src/l7/config.js';
import { startWorker, type Worker } from '../../src/l7/worker.js';

export interface Backend {
  name: string;
  port: number;
  address: string;
  server: Server;
  hits: number;
  /** Requests seen, most recent last. */
  seen: Array<{ method: string; url: string; headers: IncomingHttpHeaders; raw: string[]; body: string }>;
  close(): Promise<void>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

/** A backend answering `NAME URL` (or what `handler` does), recording every request. */
export async function backend(name: string, handler?: Handler): Promise<Backend> {
  const b: Backend = {
    name, port: 0, address: '', hits: 0, seen: [], server: undefined as unknown as Server,
    close: () => new Promise((r) => { b.server.closeAllConnections(); b.server.close(() => r()); }),
  };
  b.server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      b.hits++;
      const body = Buffer.concat(chunks).toString();
      b.seen.push({ method: req.method!, url: req.url!, headers: req.headers, raw: req.rawHeaders, body });
      if (handler) return handler(req, res, body);
      const text = `${name} ${req.url}`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text), 'x-backend': name });
      res.end(text);
    });
  });
  await new Promise<void>((r) => b.server.listen(0, '127.0.0.1', () => r()));
  b.port = (b.server.address() as AddressInfo).port;
  b.address = `127.0.0.1:${b.port}`;
  return b;
}

/** Log lines a worker writes, parsed. */
export class LogCapture extends Writable {
  readonly lines: Array<Record<string, unknown>> = [];
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    for (const l of chunk.toString().split('\n')) if (l.trim()) this.lines.push(JSON.parse(l));
    cb();
  }
  access(): Array<Record<string, unknown>> { return this.lines.filter((l) => l.log === 'access'); }
}

export interface Proxy {
  worker: Worker;
  port: number;
  url: string;
  logs: LogCapture;
  close(): Promise<void>;
}

/** One worker in-process on an ephemeral port; `l7` is the l7 section minus listeners. */
export async function proxy(l7: Record<string, unknown>, listener: Record<string, unknown> = {}): Promise<Proxy> {
  const config = validateL7({ listeners: [{ address: '127.0.0.1', port: 0, ...listener }], ...l7 });
  const logs = new LogCapture();
  const worker = await startWorker(config, { logger: pino({ level: 'info' }, logs), serveMetrics: true });
  const port = worker.addresses()[0].port;
  return { worker, port, url: `http://127.0.0.1:${port}`, logs, close: async () => { await worker.drain(200); } };
}

export interface Reply { status: number; headers: IncomingHttpHeaders; body: string }

/** One request on a fresh connection (no pooling between tests' requests). */
export function get(url: string, opts: { method?: string; headers?: Record<string, string | string[]>; body?: string | Buffer; timeoutMs?: number } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false, timeout: opts.timeoutMs ?? 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Send raw bytes, collect everything until the server closes (or `ms` passes). */
export function raw(port: number, data: string | Buffer, ms = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const t = setTimeout(() => { s.destroy(); resolve(Buffer.concat(chunks).toString('latin1')); }, ms);
    s.on('data', (d) => chunks.push(d));
    s.on('close', () => { clearTimeout(t); resolve(Buffer.concat(chunks).toString('latin1')); });
    s.on('error', (e) => { clearTimeout(t); chunks.length ? resolve(Buffer.concat(chunks).toString('latin1')) : reject(e); });
    s.write(data);
  });
}

export function statusOf(rawResponse: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(rawResponse)?.[1] ?? 0);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as AddressInfo).port; s.close(() => resolve(p)); });
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An upstream on loopback that answers by hand on the raw socket: for responses no HTTP server would send. */
export async function rawUpstream(onConnection: (s: Socket) => void): Promise<{ address: string; close(): void }> {
  const server = createNetServer(onConnection);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { address: `127.0.0.1:${(server.address() as { port: number }).port}`, close: () => { server.close(); } };
}

/**
 * An upstream that answers each request with `first`, then sends `drip` every `everyMs` and never
 * finishes: for timeouts that must bound a whole wait, not each silence. `open` holds its live
 * connections; close() stops the drips and ends them.
 */
export async function tricklingUpstream(first: string, drip: string, everyMs: number): Promise<{ address: string; open: Set<Socket>; close(): void }> {
  const open = new Set<Socket>();
  const drips: NodeJS.Timeout[] = [];
  const up = await rawUpstream((s) => {
    open.add(s);
    s.on('close', () => open.delete(s));
    s.on('error', () => {});
    s.once('data', () => {
      s.write(first);
      drips.push(setInterval(() => { if (!s.destroyed) s.write(drip); }, everyMs));
    });
  });
  return { address: up.address, open, close: () => { for (const d of drips) clearInterval(d); up.close(); for (const s of open) s.destroy(); } };
}

/**
 * A loopback port where connecting hangs, for connect timeouts: a child process listens with a
 * backlog of 1 and then blocks its event loop, so nothing is ever accepted; once the accept
 * queue is full the kernel drops new SYNs and connect() waits.
 */
export async function unaccepting(): Promise<{ port: number; close(): void }> {
  const script = `const s = require('node:net').createServer();
s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
  process.stdout.write(s.address().port + '\\n');
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
});`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once('exit', (c) => reject(new Error(`listener exited (${c})`)));
  });
  const fillers = Array.from({ length: 4 }, () => connect(port, '127.0.0.1').on('error', () => {}));
  await sleep(300);
  return { port, close: () => { for (const f of fillers) f.destroy(); child.kill('SIGKILL'); } };
}

/** A self-signed certificate for each name, made with the openssl CLI in a temp dir. */
export function makeCerts(names: string[]): { dir: string; files: Record<string, { cert: string; key: string }>; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-l7-tls-'));
  const files: Record<string, { cert: string; key: string }> = {};
  for (const n of names) {
    const cert = join(dir, `${n}.crt`), key = join(dir, `${n}.key`);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', `/CN=${n}`, '-addext', `subjectAltName=DNS:${n}`, '-keyout', key, '-out', cert], { stdio: 'ignore' });
    files[n] = { cert, key };
  }
  return { dir, files, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** One pool, one catch-all route: the common case in tests. */
export function simple(endpoints: string[], pool: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { accessLog: true, routes: [{ match: { pathPrefix: '/' }, pool: 'app' }], pools: { app: { endpoints, ...pool } }, ...extra };
}

/** A small seeded PRNG (mulberry32): the same cases on every run, so a failure can be replayed. */
export function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
