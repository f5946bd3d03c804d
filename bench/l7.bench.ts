/**
 * L7 requests/s and latency, one run, one backend (nginx returning a 13-byte body, so the
 * proxies and not the backend are what is measured): Node's own hello-world server (the
 * ceiling for any Node proxy), a plain http.request + keep-alive Node proxy, the same with an
 * undici Pool (the two stock upstream clients sluice's own is measured against), nginx proxy_pass
 * with upstream keepalive, and one sluice l7 worker with and without its access log.
 * A raw TCP relay (one upstream connection per client connection, bytes piped, no HTTP) shows
 * what the same socket reads and writes cost a Node process with no HTTP work at all; a node:http
 * server in front of the least upstream side that works here (below) shows what node:http's
 * server costs a proxy, and the least HTTP/1.1 proxy over `net` what any Node proxy costs before
 * it does anything of its own.
 * Load: wrk -t1 -c50, bounded duration. Targets: sluice ≥ 0.6× hello, ≥ 1.3× plain proxy.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { printTables, type BenchTable } from './report.js';

const DURATION = Number(process.env.L7_BENCH_SECONDS ?? 3);
/** Rounds over every target, interleaved, medians reported: other load on the machine drifts. */
const ROUNDS = Number(process.env.L7_BENCH_ROUNDS ?? 3);
const CONNECTIONS = 50;
const workerModule = fileURLToPath(new URL('../src/l7/worker.js', import.meta.url));
const configModule = fileURLToPath(new URL('../src/l7/config.js', import.meta.url));
const loggingModule = fileURLToPath(new URL('../src/l7/logging.js', import.meta.url));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); });
  });
}

async function waitPort(port: number, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    try { const r = await fetch(`http://127.0.0.1:${port}/`); await r.arrayBuffer(); return; } catch { await new Promise((r) => setTimeout(r, 100)); }
  }
  throw new Error(`nothing answered on port ${port}`);
}

const HELLO = (port: number) => `
import http from 'node:http';
http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 13 }); res.end('Hello, world\\n'); }).listen(${port}, '127.0.0.1');`;

const PLAIN_PROXY = (port: number, up: number) => `
import http from 'node:http';
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
http.createServer((req, res) => {
  const p = http.request({ host: '127.0.0.1', port: ${up}, method: req.method, path: req.url, headers: req.headers, agent }, (r) => { res.writeHead(r.statusCode, r.headers); r.pipe(res); });
  p.on('error', () => { res.writeHead(502); res.end(); });
  req.pipe(p);
}).listen(${port}, '127.0.0.1');`;

const TCP_RELAY = (port: number, up: number) => `
import net from 'node:net';
net.createServer((c) => {
  const u = net.connect(${up}, '127.0.0.1');
  c.pipe(u); u.pipe(c);
  c.on('error', () => u.destroy()); u.on('error', () => c.destroy());
}).listen(${port}, '127.0.0.1');`;

/**
 * node:http's server with the least upstream side that works against this backend: one upstream
 * socket per client connection, the head copied from rawHeaders, responses framed by
 * Content-Length only. Not a proxy anyone should run (no framing checks, no pooling, no errors):
 * a reference for the part of any node:http-based proxy's cost that is node:http's server.
 */
const NODE_HTTP_FLOOR = (port: number, up: number) => `
import http from 'node:http';
import net from 'node:net';
const END = Buffer.from('\\r\\n\\r\\n');
const ups = new WeakMap();
function upstreamOf(sock) {
  let u = ups.get(sock);
  if (u) return u;
  const s = net.connect(${up}, '127.0.0.1');
  s.setNoDelay(true);
  u = { s, buf: null, res: null };
  s.on('data', (d) => {
    u.buf = u.buf ? Buffer.concat([u.buf, d]) : d;
    const e = u.buf.indexOf(END);
    if (e < 0) return;
    const lines = u.buf.latin1Slice(0, e).split('\\r\\n');
    let len = 0; const h = [];
    for (let i = 1; i < lines.length; i++) {
      const l = lines[i]; const k = l.indexOf(':'); const name = l.slice(0, k); const v = l.slice(k + 1).trim(); const n = name.toLowerCase();
      if (n === 'content-length') len = Number(v);
      if (n !== 'connection' && n !== 'keep-alive') h.push(name, v);
    }
    if (u.buf.length < e + 4 + len) return;
    const body = u.buf.subarray(e + 4, e + 4 + len);
    u.buf = null;
    const res = u.res; u.res = null;
    res.writeHead(Number(lines[0].slice(9, 12)), h); res.end(body);
  });
  s.on('error', () => sock.destroy());
  sock.on('close', () => s.destroy());
  ups.set(sock, u);
  return u;
}
http.createServer((req, res) => {
  const u = upstreamOf(req.socket); u.res = res;
  let out = req.method + ' ' + req.url + ' HTTP/1.1\\r\\n';
  const r = req.rawHeaders;
  for (let i = 0; i < r.length; i += 2) { const n = r[i].toLowerCase(); if (n !== 'connection' && n !== 'keep-alive') out += r[i] + ': ' + r[i + 1] + '\\r\\n'; }
  u.s.write(out + 'x-forwarded-for: ' + req.socket.remoteAddress + '\\r\\n\\r\\n', 'latin1');
}).listen(${port}, '127.0.0.1');`;

/**
 * The least HTTP/1.1 proxy over `net`: one upstream socket per client connection, heads split by
 * CRLF and copied with two headers dropped and two added, responses framed by Content-Length only.
 * No checks of any kind: a reference for what a Node proxy costs here before it does anything of
 * its own (sluice's HTTP/1.1 server side is of this kind, with everything this one leaves out).
 */
const NET_FLOOR = (port: number, up: number) => `
import net from 'node:net';
const END = Buffer.from('\\r\\n\\r\\n');
function copyHead(head, extra) {
  const lines = head.split('\\r\\n');
  let out = lines[0] + '\\r\\n', len = 0;
  for (let i = 1; i < lines.length; i++) {
    const l = lines[i]; const name = l.slice(0, l.indexOf(':')).toLowerCase();
    if (name === 'content-length') len = Number(l.slice(l.indexOf(':') + 1));
    if (name !== 'connection' && name !== 'keep-alive') out += l + '\\r\\n';
  }
  return { out: out + extra + '\\r\\n', len };
}
net.createServer({ noDelay: true }, (c) => {
  const u = net.connect(${up}, '127.0.0.1');
  u.setNoDelay(true);
  let buf = null, ubuf = null;
  c.on('data', (d) => {
    buf = buf ? Buffer.concat([buf, d]) : d;
    const e = buf.indexOf(END);
    if (e < 0) return;
    const h = copyHead(buf.latin1Slice(0, e), 'x-forwarded-for: ' + c.remoteAddress + '\\r\\nvia: 1.1 sluice\\r\\n');
    buf = e + 4 < buf.length ? buf.subarray(e + 4) : null;
    u.write(h.out, 'latin1');
  });
  u.on('data', (d) => {
    ubuf = ubuf ? Buffer.concat([ubuf, d]) : d;
    const e = ubuf.indexOf(END);
    if (e < 0) return;
    const h = copyHead(ubuf.latin1Slice(0, e), 'via: 1.1 sluice\\r\\n');
    if (ubuf.length < e + 4 + h.len) return;
    const body = ubuf.latin1Slice(e + 4, e + 4 + h.len);
    ubuf = null;
    c.write(h.out + body, 'latin1');
  });
  c.on('error', () => u.destroy()); u.on('error', () => c.destroy()); c.on('close', () => u.destroy());
}).listen(${port}, '127.0.0.1');`;

const UNDICI_PROXY = (port: number, up: number) => `
import http from 'node:http';
import { Pool } from 'undici';
const pool = new Pool('http://127.0.0.1:${up}', { connections: 256 });
const hop = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'proxy-connection']);
http.createServer((req, res) => {
  const headers = {};
  for (const [k, v] of Object.entries(req.headers)) if (!hop.has(k)) headers[k] = v;
  pool.request({ path: req.url, method: req.method, headers, body: req.method === 'GET' || req.method === 'HEAD' ? undefined : req }).then((r) => {
    const out = {};
    for (const [k, v] of Object.entries(r.headers)) if (!hop.has(k)) out[k] = v;
    res.writeHead(r.statusCode, out);
    r.body.pipe(res);
  }, () => { res.writeHead(502); res.end(); });
}).listen(${port}, '127.0.0.1');`;

const SLUICE = (port: number, up: number, accessLog: boolean) => `
import { startWorker } from ${JSON.stringify(workerModule)};
import { workerLoggers } from ${JSON.stringify(loggingModule)};
import { validateL7 } from ${JSON.stringify(configModule)};
const cfg = validateL7({ accessLog: ${accessLog}, listeners: [{ address: '127.0.0.1', port: ${port} }],
  routes: [{ match: { pathPrefix: '/' }, pool: 'app' }], pools: { app: { endpoints: ['127.0.0.1:${up}'] } } });
const loggers = workerLoggers({ dest: '/dev/null' }); // as in sluice l7's workers, to /dev/null
await startWorker(cfg, { logger: loggers.log, accessLogger: loggers.access });`;

function nodeProc(src: string): ChildProcess {
  return spawn(process.execPath, ['--input-type=module', '-e', src], { stdio: ['ignore', 'ignore', 'inherit'], cwd: fileURLToPath(new URL('../..', import.meta.url)) });
}

function nginxConf(dir: string, body: string): string {
  const f = join(dir, `nginx-${Math.random().toString(36).slice(2)}.conf`);
  writeFileSync(f, `daemon off; worker_processes 1; pid ${f}.pid; error_log ${dir}/error.log;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
${body} }`);
  return f;
}

function nginxProc(conf: string): ChildProcess {
  return spawn('nginx', ['-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] });
}

interface Result { rps: number; p50: number; p99: number; errors: number; cpuUsPerReq: number }

/** utime + stime (clock ticks, 100/s) of a process and its children: the proxy's own CPU, whatever the machine's load. */
function cpuTicks(pid: number): number {
  const ticks = (p: string) => { try { const f = readFileSync(`/proc/${p}/stat`, 'utf8').slice(readFileSync(`/proc/${p}/stat`, 'utf8').lastIndexOf(')') + 2).split(' '); return { ppid: Number(f[1]), t: Number(f[11]) + Number(f[12]) }; } catch { return { ppid: -1, t: 0 }; } };
  let total = ticks(String(pid)).t;
  for (const d of readdirSync('/proc')) if (/^\d+$/.test(d)) { const s = ticks(d); if (s.ppid === pid) total += s.t; }
  return total;
}

function parseMs(s: string): number {
  const m = /([\d.]+)(us|ms|s)/.exec(s);
  if (!m) return NaN;
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2] as 'ms'];
}

function wrk(port: number, seconds: number, pid: number): Result {
  const cpu0 = cpuTicks(pid);
  const r = spawnSync('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', `http://127.0.0.1:${port}/`], { encoding: 'utf8', timeout: (seconds + 20) * 1000 });
  if (r.status !== 0) throw new Error(`wrk failed: ${r.stderr}`);
  const out = r.stdout;
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const p50 = parseMs(/\s50%\s+(\S+)/.exec(out)?.[1] ?? '');
  const p99 = parseMs(/\s99%\s+(\S+)/.exec(out)?.[1] ?? '');
  const errs = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = (errs ? Number(errs[1]) : 0) + (sock ? sock.slice(1).reduce((n, x) => n + Number(x), 0) : 0);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  const cpuUsPerReq = ((cpuTicks(pid) - cpu0) * 10_000) / requests;
  return { rps, p50, p99, errors, cpuUsPerReq };
}

async function measure(name: string, start: (port: number) => ChildProcess): Promise<Result & { name: string }> {
  const port = await freePort();
  const proc = start(port);
  try {
    await waitPort(port);
    wrk(port, 1, proc.pid!); // warm-up: JIT, connection pools
    return { name, ...wrk(port, DURATION, proc.pid!) };
  } finally {
    await stop(proc);
  }
}

/** SIGTERM and wait: an nginx master killed with SIGKILL leaves its workers running. */
function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => proc.kill('SIGKILL'), 3000);
    proc.once('exit', () => { clearTimeout(t); resolve(); });
    proc.kill('SIGTERM');
  });
}

async function main(): Promise<void> {
  for (const tool of ['wrk', 'nginx']) {
    if (spawnSync('which', [tool]).status !== 0) { process.stderr.write(`l7 bench needs ${tool} (apt-get install wrk nginx)\n`); process.exit(1); }
  }
  const dir = mkdtempSync(join(tmpdir(), 'sluice-l7-bench-'));
  const backendPort = await freePort();
  const backend = nginxProc(nginxConf(dir, `server { listen 127.0.0.1:${backendPort}; keepalive_requests 1000000; location / { default_type text/plain; return 200 "Hello, world\\n"; } }`));
  try {
    await waitPort(backendPort);
    const targets: Array<[string, (port: number) => ChildProcess]> = [
      ['node hello server (direct, ceiling)', (p) => nodeProc(HELLO(p))],
      ['node http.request proxy (keep-alive)', (p) => nodeProc(PLAIN_PROXY(p, backendPort))],
      ['node + undici Pool proxy', (p) => nodeProc(UNDICI_PROXY(p, backendPort))],
      ['node raw TCP relay (no HTTP, reference)', (p) => nodeProc(TCP_RELAY(p, backendPort))],
      ['node:http server + least upstream (reference)', (p) => nodeProc(NODE_HTTP_FLOOR(p, backendPort))],
      ['least HTTP/1.1 proxy over net (reference)', (p) => nodeProc(NET_FLOOR(p, backendPort))],
      ['nginx proxy_pass (keepalive 64)', (p) => nginxProc(nginxConf(dir,
        `upstream app { server 127.0.0.1:${backendPort}; keepalive 64; }
         server { listen 127.0.0.1:${p}; keepalive_requests 1000000; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } }`))],
      ['sluice l7, 1 worker', (p) => nodeProc(SLUICE(p, backendPort, true))],
      ['sluice l7, 1 worker, no access log', (p) => nodeProc(SLUICE(p, backendPort, false))],
    ];
    const runs = targets.map(() => [] as Result[]);
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < targets.length; i++) runs[i].push(await measure(targets[i][0], targets[i][1]));
    }
    const median = (xs: number[]) => { const a = [...xs].sort((x, y) => x - y); return a[Math.floor(a.length / 2)]; };
    const rows = targets.map(([name], i) => ({
      name, rps: median(runs[i].map((r) => r.rps)), p50: median(runs[i].map((r) => r.p50)), p99: median(runs[i].map((r) => r.p99)),
      errors: runs[i].reduce((n, r) => n + r.errors, 0), cpuUsPerReq: median(runs[i].map((r) => r.cpuUsPerReq)), rounds: runs[i].map((r) => Math.round(r.rps)),
    }));
    const hello = rows[0].rps;
    const plain = rows[1].rps;
    const sluice = rows.find((r) => r.name === 'sluice l7, 1 worker')!.rps;
    const table: BenchTable = {
      title: `L7 proxy: requests/s and latency (wrk -t1 -c${CONNECTIONS} -d${DURATION}s, median of ${ROUNDS} interleaved rounds, backend nginx on loopback)`,
      columns: ['target', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'CPU µs/req', '× hello', '× plain proxy'],
      rows: rows.map((r) => [r.name, Math.round(r.rps), r.p50, r.p99, r.errors, +r.cpuUsPerReq.toFixed(1), +(r.rps / hello).toFixed(2), +(r.rps / plain).toFixed(2)]),
      notes: [
        `targets: sluice ≥ 0.6× hello (${(sluice / hello).toFixed(2)}× ${sluice / hello >= 0.6 ? 'met' : 'NOT met'}), ≥ 1.3× plain proxy (${(sluice / plain).toFixed(2)}× ${sluice / plain >= 1.3 ? 'met' : 'NOT met'})`,
        'one run on a shared 2-core machine: compare ratios, not absolute numbers',
        'CPU µs/req: CPU time of the server process (and its children) per request: robust to other load on the machine',
        'raw TCP relay: the same reads and writes as any proxy here, no HTTP: the part of a proxy\'s cost that is socket I/O',
        'node:http server + least upstream: not a usable proxy; what node:http\'s server side costs any proxy built on it',
        'least HTTP/1.1 proxy over net: not a usable proxy either; what any Node proxy costs here before it does anything of its own',
      ],
      data: { durationS: DURATION, rounds: ROUNDS, connections: CONNECTIONS, results: rows, ratios: { sluiceVsHello: sluice / hello, sluiceVsPlain: sluice / plain } },
    };
    printTables([table]);
  } finally {
    await stop(backend);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
