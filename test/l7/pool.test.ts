/** The worker pool under node:cluster (runL7): restart, reload under load, bad reloads, drain, summed metrics. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { runL7, type L7Handle } from '../../src/l7/index.js';
import { SLUICE } from '../support/cli.js';
import { backend, freePort, get, sleep, type Backend } from './helpers.js';

const quiet = pino({ level: 'silent' });

function l7Yaml(port: number, endpoint: string, extra = '', moreListeners = ''): string {
  return `l7:
  accessLog: false
  listeners: [ { address: 127.0.0.1, port: ${port} }${moreListeners} ]
  routes: [ { match: { pathPrefix: / }, pool: app } ]
  pools:
    app: { endpoints: [ "${endpoint}" ] }
${extra}`;
}

describe('the worker pool (sluice l7)', () => {
  let dir: string, file: string, a: Backend, b: Backend, port: number, metricsPort: number, h: L7Handle;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-l7-pool-'));
    file = join(dir, 'sluice.yaml');
    [a, b] = await Promise.all([backend('a'), backend('b', (_req, res) => setTimeout(() => { res.setHeader('x-backend', 'b'); res.end(`b ${_req.url}`); }, _req.url === '/slow' ? 600 : 0))]);
    port = await freePort();
    metricsPort = await freePort();
    writeFileSync(file, l7Yaml(port, a.address, `  metrics: 127.0.0.1:${metricsPort}\n  timeouts: { drain: 5s }`));
    h = await runL7({ configPath: file, workers: 2, logger: quiet, logLevel: 'warn', signals: false });
  });
  after(async () => { await h?.stop(); await a.close(); await b.close(); rmSync(dir, { recursive: true, force: true }); });

  it('starts the requested number of workers on the configured address', async () => {
    assert.equal(h.workerCount(), 2);
    const r = await get(`http://127.0.0.1:${port}/x`);
    assert.equal(r.body, 'a /x');
  });

  it('serves the sum of every worker\'s metrics on l7.metrics', async () => {
    for (let i = 0; i < 6; i++) await get(`http://127.0.0.1:${port}/m`);
    const text = (await get(`http://127.0.0.1:${metricsPort}/metrics`)).body;
    const n = Number(/sluice_l7_requests_total\{route="0-app",pool="app",code="2xx"\} (\d+)/.exec(text)?.[1]);
    assert.ok(n >= 6, text.slice(0, 500));
  });

  it('replaces a worker that dies', async () => {
    const [victim] = h.workerPids();
    process.kill(victim, 'SIGKILL');
    for (let i = 0; i < 50 && (h.workerCount() < 2 || h.workerPids().includes(victim)); i++) await sleep(100);
    await sleep(1500); // the replacement loads its modules and opens its listener
    assert.equal(h.workerCount(), 2);
    assert.ok(!h.workerPids().includes(victim));
    for (let i = 0; i < 6; i++) assert.equal((await get(`http://127.0.0.1:${port}/`)).status, 200);
  });

  it('keeps a dead worker\'s counts in the summed counters, which never go down (Prometheus would read a reset)', async () => {
    const count = async () => Number(/sluice_l7_requests_total\{route="0-app",pool="app",code="2xx"\} (\d+)/.exec((await get(`http://127.0.0.1:${metricsPort}/metrics`)).body)?.[1] ?? 0);
    for (let i = 0; i < 20; i++) await get(`http://127.0.0.1:${port}/c`); // a new connection each: both workers take some
    const before = await count();
    assert.ok(before >= 20);
    const [victim] = h.workerPids();
    process.kill(victim, 'SIGKILL');
    for (let i = 0; i < 50 && (h.workerCount() < 2 || h.workerPids().includes(victim)); i++) await sleep(100);
    await sleep(1500);
    assert.ok(await count() >= before, 'the sum went down when a worker died');
    for (let i = 0; i < 4; i++) await get(`http://127.0.0.1:${port}/c`);
    assert.ok(await count() >= before + 4);
  });

  it('answers a metrics scrape at once while a replacement worker is starting', async () => {
    const [victim] = h.workerPids();
    process.kill(victim, 'SIGKILL');
    // The replacement is forked, but has not loaded its modules yet: it cannot take part in a scrape.
    while (h.workerPids().includes(victim) || h.workerCount() < 2) await sleep(10);
    const r = await get(`http://127.0.0.1:${metricsPort}/metrics`, { timeoutMs: 10_000 });
    assert.equal(r.status, 200, r.body);
    assert.match(r.body, /sluice_l7_requests_total/);
    await sleep(1500); // the replacement opens its listener (as in the test above)
  });

  it('reloads under load without failing a request, and new requests follow the new config', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 8 });
    const one = () => new Promise<string>((resolve) => {
      request(`http://127.0.0.1:${port}/load`, { agent }, (res) => {
        let body = ''; res.on('data', (d) => { body += d; }); res.on('end', () => resolve(res.statusCode === 200 ? body : `status ${res.statusCode}`));
      }).on('error', (e) => resolve(`error ${e.message}`)).end();
    });
    const results: string[] = [];
    let reloaded = false;
    const until = Date.now() + 15_000;
    const client = async () => {
      while (Date.now() < until && (!reloaded || results.length < 600) && results.length < 3000) results.push(await one());
    };
    const load = Promise.all(Array.from({ length: 6 }, client));
    while (results.length < 150 && Date.now() < until) await sleep(10);
    writeFileSync(file, l7Yaml(port, b.address, `  metrics: 127.0.0.1:${metricsPort}\n  timeouts: { drain: 5s }`));
    const mark = results.length;
    await h.reload();
    const afterReload = results.length;
    reloaded = true;
    await load;
    agent.destroy();
    const failed = results.filter((r) => !r.startsWith('a /') && !r.startsWith('b /'));
    assert.deepEqual(failed, []);
    assert.ok(results.slice(0, mark).every((r) => r.startsWith('a /')));
    assert.ok(results.slice(afterReload + 12).every((r) => r.startsWith('b /')), 'requests after the reload go to the new pool');
    assert.ok(results.length >= 600);
  });

  it('refuses an invalid config on reload and keeps serving the old one', async () => {
    writeFileSync(file, l7Yaml(port, 'not-an-endpoint'));
    await assert.rejects(h.reload(), /l7.pools.app.endpoints\[0\]/);
    assert.equal((await get(`http://127.0.0.1:${port}/still`)).body, 'b /still');
    writeFileSync(file, l7Yaml(port, b.address, `  metrics: 127.0.0.1:${metricsPort}\n  timeouts: { drain: 5s }`));
  });

  it('refuses a reload whose new listener cannot bind: every worker keeps the running config', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const taken = (blocker.address() as AddressInfo).port;
    const free = await freePort();
    const running = h.config;
    try {
      // The new config would also move the pool back to a: no worker may have done that.
      writeFileSync(file, l7Yaml(port, a.address, `  metrics: 127.0.0.1:${metricsPort}\n  timeouts: { drain: 5s }`, `, { address: 127.0.0.1, port: ${free} }, { address: 127.0.0.1, port: ${taken} }`));
      await assert.rejects(h.reload(), /reload refused, every worker keeps the running config: .*EADDRINUSE/);
      assert.equal(h.config, running);
      for (let i = 0; i < 10; i++) assert.equal((await get(`http://127.0.0.1:${port}/r`)).body, 'b /r');
      await assert.rejects(get(`http://127.0.0.1:${free}/`, { timeoutMs: 1000 }), 'the listener opened for the refused reload is closed again');
    } finally {
      blocker.close();
      writeFileSync(file, l7Yaml(port, b.address, `  metrics: 127.0.0.1:${metricsPort}\n  timeouts: { drain: 5s }`));
    }
  });

  it('drains on stop: a request in flight completes, then the listener is gone', async () => {
    const slow = get(`http://127.0.0.1:${port}/slow`);
    await sleep(150);
    const stopped = h.stop();
    const r = await slow;
    assert.equal(r.status, 200);
    assert.equal(r.body, 'b /slow');
    await stopped;
    await h.done;
    await assert.rejects(get(`http://127.0.0.1:${port}/`, { timeoutMs: 1000 }));
  });
});

describe('the default pool size', () => {
  it('starts one worker per core (os.availableParallelism) when neither the CLI nor the file says', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-l7-cores-'));
    const file = join(dir, 'sluice.yaml');
    const a = await backend('a');
    writeFileSync(file, l7Yaml(await freePort(), a.address));
    const h = await runL7({ configPath: file, logger: quiet, logLevel: 'warn', signals: false });
    try {
      assert.equal(h.workerCount(), availableParallelism());
    } finally { await h.stop(); await a.close(); rmSync(dir, { recursive: true, force: true }); }
  });
});

describe('a reload that changes l7.workers', () => {
  let dir: string, file: string, a: Backend, port: number, h: L7Handle;
  const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-l7-resize-'));
    file = join(dir, 'sluice.yaml');
    a = await backend('a');
    port = await freePort();
    writeFileSync(file, l7Yaml(port, a.address, '  workers: 1'));
    h = await runL7({ configPath: file, logger: quiet, logLevel: 'warn', signals: false });
  });
  after(async () => { await h?.stop(); await a.close(); rmSync(dir, { recursive: true, force: true }); });

  it('starts the additional workers', async () => {
    assert.equal(h.workerCount(), 1);
    writeFileSync(file, l7Yaml(port, a.address, '  workers: 2'));
    await h.reload();
    assert.equal(h.workerCount(), 2, 'the reload said nothing and kept one worker');
    for (const pid of h.workerPids()) assert.ok(alive(pid));
    for (let i = 0; i < 4; i++) assert.equal((await get(`http://127.0.0.1:${port}/`)).status, 200);
  });

  it('drains the extra workers, and does not replace them', async () => {
    const before = h.workerPids();
    assert.equal(before.length, 2);
    writeFileSync(file, l7Yaml(port, a.address, '  workers: 1'));
    await h.reload();
    assert.equal(h.workerCount(), 1);
    const [gone] = before.filter((pid) => !h.workerPids().includes(pid));
    for (let i = 0; i < 100 && alive(gone); i++) await sleep(50);
    assert.ok(!alive(gone), 'the extra worker did not exit');
    await sleep(500); // a replacement would be forked by now
    assert.equal(h.workerCount(), 1);
    for (let i = 0; i < 4; i++) assert.equal((await get(`http://127.0.0.1:${port}/`)).status, 200);
  });
});

/** One pool of `endpoints` with active health checks `health` (a YAML mapping). */
function checkedYaml(port: number, endpoints: string[], health: string): string {
  return `l7:
  accessLog: false
  listeners: [ { address: 127.0.0.1, port: ${port} } ]
  routes: [ { match: { pathPrefix: / }, pool: app } ]
  pools:
    app: { endpoints: [ ${endpoints.map((e) => `"${e}"`).join(', ')} ], health: ${health} }
`;
}

describe('active health checks in the pool', () => {
  it('check each endpoint once per interval, however many workers there are, and every worker follows', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-l7-checks-'));
    const file = join(dir, 'sluice.yaml');
    let checksSeen = 0;
    let up = true;
    const b = await backend('b', (req, res) => {
      if (req.url === '/healthz') { checksSeen++; res.statusCode = up ? 200 : 503; res.end(); return; }
      res.end('b');
    });
    const other = await backend('other');
    const port = await freePort();
    writeFileSync(file, checkedYaml(port, [b.address, other.address], '{ path: /healthz, interval: 200ms, fall: 1, rise: 1 }'));
    const h = await runL7({ configPath: file, workers: 3, logger: quiet, logLevel: 'silent', signals: false });
    try {
      checksSeen = 0;
      await sleep(2000);
      // One checker: ~10 checks in 2 s; one per worker would be ~30.
      assert.ok(checksSeen >= 5 && checksSeen <= 15, `${checksSeen} checks in 2 s at a 200 ms interval`);
      up = false;
      await sleep(600);
      for (let i = 0; i < 30; i++) assert.equal((await get(`http://127.0.0.1:${port}/`)).body, 'other /', 'a worker still sends to the endpoint the checks took out');
    } finally { await h.stop(); await b.close(); await other.close(); rmSync(dir, { recursive: true, force: true }); }
  });

  it('a replacement worker starts from the verdicts the pool has, not with every endpoint healthy', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-l7-health-'));
    const file = join(dir, 'sluice.yaml');
    const good = await backend('good');
    // Serves requests, but its health check never answers: only a check that timed out marks it down.
    const bad = await backend('bad', (req, res) => { if (req.url !== '/healthz') { res.setHeader('x-backend', 'bad'); res.end('bad'); } });
    const port = await freePort();
    writeFileSync(file, checkedYaml(port, [good.address, bad.address], '{ path: /healthz, interval: 1500ms, timeout: 1400ms, fall: 1, rise: 1 }'));
    const h = await runL7({ configPath: file, workers: 1, logger: quiet, logLevel: 'silent', signals: false });
    try {
      const onBad = async (n: number) => { let k = 0; for (let i = 0; i < n; i++) if ((await get(`http://127.0.0.1:${port}/`)).headers['x-backend'] === 'bad') k++; return k; };
      await sleep(2000); // the first check of `bad` timed out
      assert.equal(await onBad(10), 0, 'the first worker took bad out');
      const [victim] = h.workerPids();
      process.kill(victim, 'SIGKILL');
      for (let i = 0; i < 100 && (h.workerCount() < 1 || h.workerPids().includes(victim)); i++) await sleep(20);
      // As soon as the replacement answers, well before its own first check could time out.
      for (let i = 0; i < 200; i++) { try { await get(`http://127.0.0.1:${port}/`, { timeoutMs: 200 }); break; } catch { await sleep(20); } }
      assert.equal(await onBad(20), 0, 'the replacement sent requests to an endpoint the pool knew was down');
    } finally { await h.stop(); await good.close(); await bad.close(); rmSync(dir, { recursive: true, force: true }); }
  });
});

/** `sluice l7` as its own process (it owns SIGHUP/SIGTERM), ready once it has said so. */
async function spawnL7(file: string, workers: number): Promise<ChildProcess> {
  const index = fileURLToPath(new URL('../../src/l7/index.js', import.meta.url));
  const child = spawn(process.execPath, ['--input-type=module', '-e',
    `const { runL7 } = await import(${JSON.stringify(index)}); const h = await runL7({ configPath: ${JSON.stringify(file)}, workers: ${workers}, logLevel: 'warn' }); console.log('READY'); await h.done; process.exit(0);`],
  { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('READY')) resolve(); });
    child.once('exit', (c) => reject(new Error(`exited ${c}`)));
  });
  return child;
}

describe('signals', () => {
  it('reloads on SIGHUP and drains and exits 0 on SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-l7-sig-'));
    const file = join(dir, 'sluice.yaml');
    const [a, b] = await Promise.all([backend('a'), backend('b')]);
    const port = await freePort();
    writeFileSync(file, l7Yaml(port, a.address));
    const child = await spawnL7(file, 1);
    try {
      assert.equal((await get(`http://127.0.0.1:${port}/`)).body, 'a /');
      writeFileSync(file, l7Yaml(port, b.address));
      child.kill('SIGHUP');
      let body = '';
      for (let i = 0; i < 50 && body !== 'b /'; i++) { await sleep(100); body = (await get(`http://127.0.0.1:${port}/`)).body; }
      assert.equal(body, 'b /');
      const code = await new Promise<number | null>((resolve) => { child.once('exit', resolve); child.kill('SIGTERM'); });
      assert.equal(code, 0);
    } finally { child.kill('SIGKILL'); await a.close(); await b.close(); rmSync(dir, { recursive: true, force: true }); }
  });

  it('sluice l7 survives a SIGHUP while it starts, and applies the file as it is by then', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-l7-early-'));
    const file = join(dir, 'sluice.yaml');
    const [a, b] = await Promise.all([backend('a'), backend('b')]);
    const port = await freePort();
    writeFileSync(file, l7Yaml(port, a.address));
    const child = spawn(process.execPath, [SLUICE, 'l7', '--config', file, '--workers', '1'], { stdio: ['ignore', 'ignore', 'inherit'] });
    try {
      // As soon as the CLI catches SIGHUP (/proc SigCgt, signal 1): it is loading, nothing of the pool listens yet.
      const catchesHup = () => { try { return (BigInt(`0x${/SigCgt:\s*([0-9a-f]+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]}`) & 1n) !== 0n; } catch { return false; } };
      for (let i = 0; i < 500 && !catchesHup(); i++) await sleep(5);
      assert.ok(catchesHup());
      assert.equal(await get(`http://127.0.0.1:${port}/`).then(() => 'up', () => 'down'), 'down');
      writeFileSync(file, l7Yaml(port, b.address));
      child.kill('SIGHUP');
      let body = '';
      for (let i = 0; i < 100 && body !== 'b /'; i++) {
        await sleep(100);
        assert.equal(child.exitCode ?? child.signalCode, null, 'sluice l7 died of the SIGHUP');
        body = await get(`http://127.0.0.1:${port}/`).then((r) => r.body, () => '');
      }
      assert.equal(body, 'b /');
    } finally { child.kill('SIGKILL'); await a.close(); await b.close(); rmSync(dir, { recursive: true, force: true }); }
  });

  it('reloads on SIGHUP under load without failing a request', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-l7-hup-'));
    const file = join(dir, 'sluice.yaml');
    const [a, b] = await Promise.all([backend('a'), backend('b')]);
    const port = await freePort();
    writeFileSync(file, l7Yaml(port, a.address));
    const child = await spawnL7(file, 2);
    const agent = new Agent({ keepAlive: true, maxSockets: 6 });
    try {
      const one = () => new Promise<string>((resolve) => {
        request(`http://127.0.0.1:${port}/hup`, { agent }, (res) => {
          let body = ''; res.on('data', (d) => { body += d; }); res.on('end', () => resolve(res.statusCode === 200 ? body : `status ${res.statusCode}`));
        }).on('error', (e) => resolve(`error ${e.message}`)).end();
      });
      const results: string[] = [];
      const until = Date.now() + 20_000;
      let sinceB = 0;
      const client = async () => { while (Date.now() < until && sinceB < 300) { const r = await one(); results.push(r); if (r.startsWith('b /')) sinceB++; } };
      const load = Promise.all(Array.from({ length: 6 }, client));
      while (results.length < 150 && Date.now() < until) await sleep(10);
      writeFileSync(file, l7Yaml(port, b.address));
      child.kill('SIGHUP');
      await load;
      const failed = results.filter((r) => !r.startsWith('a /') && !r.startsWith('b /'));
      assert.deepEqual(failed, []);
      assert.ok(sinceB >= 300, `only ${sinceB} requests reached the new pool`);
    } finally { agent.destroy(); child.kill('SIGKILL'); await a.close(); await b.close(); rmSync(dir, { recursive: true, force: true }); }
  });

  it('on SIGTERM lets a request in flight complete, then exits 0', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-l7-term-'));
    const file = join(dir, 'sluice.yaml');
    const slow = await backend('slow', (_req, res) => setTimeout(() => res.end('finished'), 700));
    const port = await freePort();
    writeFileSync(file, l7Yaml(port, slow.address));
    const child = await spawnL7(file, 1);
    try {
      const inflight = get(`http://127.0.0.1:${port}/`);
      while (slow.hits === 0) await sleep(10); // it has reached the upstream
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const r = await inflight;
      assert.equal(r.status, 200);
      assert.equal(r.body, 'finished');
      assert.equal(await exited, 0);
    } finally { child.kill('SIGKILL'); await slow.close(); rmSync(dir, { recursive: true, force: true }); }
  });
});
