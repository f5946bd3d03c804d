import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
import { validateL7 } from '../../src/l7/config.js';
import { backend, freePort, get, proxy, raw, rawUpstream, simple, sleep, statusOf, tricklingUpstream, unaccepting, type Proxy } from './helpers.js';

const endpointOf = (p: Proxy, i = 0) => p.worker.runtime.pools.get('app')!.endpoints[i];
const ejections = (p: Proxy) => p.logs.lines.filter((l) => l.msg === 'endpoint ejected after consecutive failures');

describe('retries', () => {
  it('retries an idempotent request on another endpoint when one refuses connections', async () => {
    const live = await backend('live');
    const dead = `127.0.0.1:${await freePort()}`;
    const p = await proxy(simple([dead, live.address], { retries: 1, ejection: { consecutiveFailures: 0 } }));
    try {
      for (let i = 0; i < 10; i++) assert.equal((await get(p.url + '/')).status, 200);
      assert.ok(p.logs.access().some((l) => l.attempts === 2), 'some requests needed a second attempt');
    } finally { await p.close(); await live.close(); }
  });

  it('spreads the retries of a failing endpoint over the others, not onto one neighbour', async () => {
    const [b, c] = await Promise.all([backend('b'), backend('c')]);
    const dead = `127.0.0.1:${await freePort()}`;
    const p = await proxy(simple([dead, b.address, c.address], { retries: 1, ejection: { consecutiveFailures: 0 } }));
    try {
      for (let i = 0; i < 30; i++) assert.equal((await get(p.url + '/')).status, 200);
      const retried = p.logs.access().filter((l) => l.attempts === 2).map((l) => l.upstream);
      assert.ok(retried.length >= 5, `${retried.length} retried`);
      assert.equal(new Set(retried).size, 2, `every retry went to ${retried[0]}`);
    } finally { await p.close(); await b.close(); await c.close(); }
  });

  it('does not retry a POST: it fails with 502', async () => {
    const live = await backend('live');
    const dead = `127.0.0.1:${await freePort()}`;
    const p = await proxy(simple([dead, live.address], { retries: 2, ejection: { consecutiveFailures: 0 } }));
    try {
      const statuses = [];
      for (let i = 0; i < 6; i++) statuses.push((await get(p.url + '/', { method: 'POST', body: 'x' })).status);
      assert.ok(statuses.includes(502), String(statuses));
      assert.ok(statuses.includes(200), String(statuses));
    } finally { await p.close(); await live.close(); }
  });

  it('retries a GET answered 503 on another endpoint', async () => {
    const sick = await backend('sick', (_req, res) => { res.writeHead(503, { 'content-length': 4 }); res.end('busy'); });
    const live = await backend('live');
    const p = await proxy(simple([sick.address, live.address], { retries: 1, ejection: { consecutiveFailures: 0 } }));
    try {
      for (let i = 0; i < 10; i++) assert.equal((await get(p.url + '/')).headers['x-backend'], 'live');
      assert.ok(sick.hits > 0);
    } finally { await p.close(); await sick.close(); await live.close(); }
  });

  it('retries a GET answered 502 on another endpoint', async () => {
    const sick = await backend('sick', (_req, res) => { res.writeHead(502, { 'content-length': 3 }); res.end('bad'); });
    const live = await backend('live');
    const p = await proxy(simple([sick.address, live.address], { retries: 1, ejection: { consecutiveFailures: 0 } }));
    try {
      for (let i = 0; i < 10; i++) assert.equal((await get(p.url + '/')).headers['x-backend'], 'live');
      assert.ok(sick.hits > 0);
      assert.ok(p.logs.access().some((l) => l.attempts === 2));
    } finally { await p.close(); await sick.close(); await live.close(); }
  });

  it('does not retry a request whose upstream timed out: 504 after one attempt', async () => {
    const slow = await backend('slow', (_req, res) => { setTimeout(() => res.end('late'), 1500); });
    const p = await proxy(simple([slow.address], { timeout: '200ms', retries: 2 }));
    try {
      const t = Date.now();
      assert.equal((await get(p.url + '/')).status, 504);
      assert.ok(Date.now() - t < 550, `took ${Date.now() - t}ms: retried?`);
      await sleep(100);
      assert.equal(slow.hits, 1);
      assert.equal(p.logs.access().at(-1)!.attempts, 1);
    } finally { await p.close(); await slow.close(); }
  });

  it('retries a timeout when retryOn includes response-timeout', async () => {
    const slow = await backend('slow', (_req, res) => { setTimeout(() => res.end('late'), 1500); });
    const p = await proxy(simple([slow.address], { timeout: '150ms', retries: 2, retryOn: ['conn-failure', 'response-timeout'] }));
    try {
      assert.equal((await get(p.url + '/')).status, 504);
      assert.equal(slow.hits, 3);
      assert.equal(p.logs.access().at(-1)!.attempts, 3);
    } finally { await p.close(); await slow.close(); }
  });

  it('passes the 503 on when retries are used up', async () => {
    const sick = await backend('sick', (_req, res) => { res.writeHead(503, { 'content-length': 4 }); res.end('busy'); });
    const p = await proxy(simple([sick.address], { retries: 1, ejection: { consecutiveFailures: 0 } }));
    try {
      const r = await get(p.url + '/');
      assert.equal(r.status, 503);
      assert.equal(r.body, 'busy');
      assert.equal(sick.hits, 2);
    } finally { await p.close(); await sick.close(); }
  });

  it('still has its retries after resending a request whose pooled connection turned out stale', async () => {
    // 1st request: 200 on a kept-alive connection; 2nd: that connection is reset unanswered (stale),
    // the resend on a fresh one gets 503, and the one retry `retries: 1` allows gets the 200.
    let n = 0;
    const b = await backend('b', (req, res) => {
      n++;
      if (n === 2) { req.socket.destroy(); return; }
      if (n === 3) { res.writeHead(503, { 'content-length': 4 }); res.end('busy'); return; }
      res.writeHead(200, { 'content-length': 2 }); res.end('ok');
    });
    const p = await proxy(simple([b.address], { retries: 1, ejection: { consecutiveFailures: 0 } }));
    try {
      assert.equal((await get(p.url + '/')).status, 200);
      const r = await get(p.url + '/');
      assert.equal(r.status, 200, `the stale resend used up the retry: ${r.status} ${r.body}`);
      assert.equal(n, 4);
      assert.equal(p.logs.access().at(-1)!.attempts, 3);
    } finally { await p.close(); await b.close(); }
  });

  it('does not send a POST again when its pooled connection is reset unanswered: the upstream may have acted on it', async () => {
    let n = 0;
    const b = await backend('b', (req, res) => {
      n++;
      if (n === 2) { req.socket.destroy(); return; } // took the POST, then the connection went
      res.writeHead(200, { 'content-length': 2 }); res.end('ok');
    });
    const p = await proxy(simple([b.address], { retries: 1 }));
    try {
      assert.equal((await get(p.url + '/charge', { method: 'POST' })).status, 200);
      assert.equal((await get(p.url + '/charge', { method: 'POST' })).status, 502);
      assert.equal(b.seen.filter((s) => s.method === 'POST').length, 2, 'the second POST reached the upstream twice');
    } finally { await p.close(); await b.close(); }
  });

  it('does not retry beyond the retry budget', async () => {
    const live = await backend('live');
    const dead = `127.0.0.1:${await freePort()}`;
    const p = await proxy(simple([dead, live.address], { retries: 3, ejection: { consecutiveFailures: 0 } }, { retryBudget: { ratio: 0, minRetries: 0 } }));
    try {
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push((await get(p.url + '/')).status);
      assert.ok(statuses.includes(502), String(statuses));
    } finally { await p.close(); await live.close(); }
  });

  it('loses no idempotent request when a backend is killed under load', async () => {
    const a = await backend('a');
    const b = await backend('b', (_req, res) => setTimeout(() => res.end('b'), 2));
    const p = await proxy(simple([a.address, b.address], { retries: 2 }));
    try {
      let failures = 0, done = 0;
      const until = Date.now() + 10_000;
      const client = async () => {
        while (done < 400 && Date.now() < until) {
          const r = await get(p.url + '/').catch(() => ({ status: 0 }));
          if (r.status !== 200) failures++;
          done++;
          if (done === 100) { b.server.closeAllConnections(); b.server.close(); } // killed mid-load, requests in flight
        }
      };
      await Promise.all([client(), client(), client(), client()]);
      assert.ok(done >= 400, `only ${done} requests in time`);
      assert.equal(failures, 0);
    } finally { await p.close(); await a.close(); }
  });
});

describe('passive ejection', () => {
  it('ejects an endpoint after consecutive failures, with a backoff that doubles', async () => {
    const live = await backend('live');
    const dead = `127.0.0.1:${await freePort()}`;
    const p = await proxy(simple([dead, live.address], { retries: 1, ejection: { consecutiveFailures: 2, baseTime: '300ms', maxTime: '10s' } }));
    try {
      const ejections = () => p.logs.lines.filter((l) => l.msg === 'endpoint ejected after consecutive failures');
      for (let i = 0; i < 6 && ejections().length === 0; i++) await get(p.url + '/');
      assert.equal(ejections().length, 1);
      assert.equal(ejections()[0].ms, 300);
      // While ejected, no request touches it: one attempt each.
      const before = p.logs.access().length;
      for (let i = 0; i < 6; i++) assert.equal((await get(p.url + '/')).status, 200);
      assert.ok(p.logs.access().slice(before).every((l) => l.attempts === 1));
      await sleep(350);
      for (let i = 0; i < 8 && ejections().length < 2; i++) await get(p.url + '/');
      assert.equal(ejections()[1]?.ms, 600);
    } finally { await p.close(); await live.close(); }
  });
});

describe('passive ejection across a reload', () => {
  it('keeps an endpoint ejected by a request that began before a reload out of the new config\'s traffic', async () => {
    const a = await backend('a');
    const b = await backend('b', (_req, res) => { setTimeout(() => { res.writeHead(502, { 'x-backend': 'b' }); res.end(); }, 300); });
    const l7 = (route: string) => ({ routes: [{ name: route, pool: 'app' }], pools: { app: { endpoints: [a.address, b.address], retries: 0, ejection: { consecutiveFailures: 1, baseTime: '30s', maxPercent: 100 } } } });
    const p = await proxy(l7('before'));
    try {
      // Round-robin: one of the two goes to b, which answers 502 after 300 ms.
      const first = [get(p.url + '/'), get(p.url + '/')];
      await Promise.race(first);
      await p.worker.reload(validateL7({ listeners: [{ address: '127.0.0.1', port: 0 }], ...l7('after') }));
      assert.equal(p.worker.runtime.pools.get('app')!.availableCount(), 2); // the new pool has chosen among both already
      assert.deepEqual((await Promise.all(first)).map((r) => r.status).sort(), [200, 502]);
      assert.equal(ejections(p).length, 1);
      for (let i = 0; i < 6; i++) assert.equal((await get(p.url + '/')).headers['x-backend'], 'a');
    } finally { await p.close(); await a.close(); await b.close(); }
  });
});

describe('passive ejection: the cap', () => {
  it('never ejects more than ejection.maxPercent of a pool: the rest keep answering (502, not 503)', async () => {
    const dead = await Promise.all([1, 2, 3, 4].map(async () => `127.0.0.1:${await freePort()}`));
    const p = await proxy(simple(dead, { retries: 0, ejection: { consecutiveFailures: 1, baseTime: '10s', maxPercent: 50 } }));
    try {
      const statuses = new Set<number>();
      for (let i = 0; i < 12; i++) statuses.add((await get(p.url + '/')).status);
      assert.deepEqual([...statuses], [502]);
      assert.equal(ejections(p).length, 2);
    } finally { await p.close(); }
  });
});

describe('active health checks', () => {
  it('takes an endpoint out after `fall` failed checks and back after `rise` good ones', async () => {
    let healthy = true;
    const handler = (name: string) => (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
      if (req.url === '/healthz') { res.writeHead(name === 'flaky' && !healthy ? 500 : 200); res.end(); return; }
      res.writeHead(200, { 'x-backend': name }); res.end(name);
    };
    const flaky = await backend('flaky', handler('flaky'));
    const steady = await backend('steady', handler('steady'));
    const p = await proxy(simple([flaky.address, steady.address], { health: { path: '/healthz', interval: '100ms', timeout: '100ms', rise: 2, fall: 2 } }));
    const served = async (n: number) => { const s = new Set<string>(); for (let i = 0; i < n; i++) s.add(String((await get(p.url + '/')).headers['x-backend'])); return s; };
    try {
      assert.deepEqual([...(await served(4))].sort(), ['flaky', 'steady']);
      healthy = false;
      await sleep(450);
      assert.deepEqual([...(await served(6))], ['steady']);
      assert.ok(p.logs.lines.some((l) => l.msg === 'endpoint unhealthy' && l.endpoint === flaky.address));
      healthy = true;
      await sleep(450);
      assert.deepEqual([...(await served(4))].sort(), ['flaky', 'steady']);
    } finally { await p.close(); await flaky.close(); await steady.close(); }
  });

  it('closes each check\'s connection once it has the status, so an endpoint that never ends its body does not pile up connections', async () => {
    const up = await tricklingUpstream('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', '1\r\nx\r\n', 20);
    const p = await proxy(simple([up.address], { health: { path: '/healthz', interval: '100ms', timeout: '200ms' } }));
    try {
      await sleep(700);
      assert.ok(up.open.size <= 1, `${up.open.size} check connections still open`);
    } finally { await p.close(); up.close(); }
  });

  it('fails a check whose response head has not all come within timeout, though bytes keep coming', async () => {
    const up = await tricklingUpstream('HTTP/1.1 200 OK\r\n', 'X-Still: coming\r\n', 30);
    const p = await proxy(simple([up.address], { health: { path: '/healthz', interval: '100ms', timeout: '200ms', fall: 2 } }));
    try {
      for (let i = 0; i < 40 && endpointOf(p).healthy; i++) await sleep(50);
      assert.equal(endpointOf(p).healthy, false);
    } finally { await p.close(); up.close(); }
  });

  it('answers 503 with a short body when no endpoint is healthy', async () => {
    const sick = await backend('sick', (_req, res) => { res.writeHead(500); res.end(); });
    const p = await proxy(simple([sick.address], { health: { interval: '100ms', fall: 1 } }));
    try {
      await sleep(350);
      const r = await get(p.url + '/');
      assert.equal(r.status, 503);
      assert.equal(r.body, '503 Service Unavailable\n');
    } finally { await p.close(); await sick.close(); }
  });
});

describe('timeouts and upstream failures', () => {
  it('answers 504 when the upstream does not answer within the pool timeout', async () => {
    const slow = await backend('slow', (_req, res) => { setTimeout(() => res.end('late'), 1500); });
    const p = await proxy(simple([slow.address], { timeout: '200ms', retries: 0 }));
    try {
      const t = Date.now();
      const r = await get(p.url + '/');
      assert.equal(r.status, 504);
      assert.equal(r.body, '504 Gateway Timeout\n');
      assert.ok(Date.now() - t < 1000);
    } finally { await p.close(); await slow.close(); }
  });

  it('gives up connecting after connectTimeout when the endpoint does not accept: 502', async () => {
    const hole = await unaccepting();
    const p = await proxy(simple([`127.0.0.1:${hole.port}`], { connectTimeout: '300ms', retries: 0 }));
    try {
      const t = Date.now();
      const r = await get(p.url + '/');
      const took = Date.now() - t;
      assert.equal(r.status, 502);
      assert.ok(took >= 250 && took < 2000, `took ${took}ms`);
      await sleep(50);
      assert.equal(p.logs.access().at(-1)!.error, 'ECONNECT');
    } finally { await p.close(); hole.close(); }
  });

  it('closes a pooled upstream connection once it has been idle for idleTimeout', async () => {
    const b = await backend('b');
    const opened: number[] = [];
    let closedAt = 0;
    b.server.on('connection', (sock) => { opened.push(Date.now()); sock.on('close', () => { closedAt ||= Date.now(); }); });
    const p = await proxy(simple([b.address], { idleTimeout: '300ms' }));
    try {
      await get(p.url + '/');
      const answered = Date.now();
      for (let i = 0; i < 60 && !closedAt; i++) await sleep(50);
      assert.ok(closedAt, 'the idle upstream connection was never closed');
      const idle = closedAt - answered;
      assert.ok(idle >= 250 && idle < 1500, `closed after ${idle}ms idle`);
      assert.equal((await get(p.url + '/')).status, 200);
      assert.equal(opened.length, 2);
    } finally { await p.close(); await b.close(); }
  });

  it('answers 502 when nothing listens at the only endpoint', async () => {
    const p = await proxy(simple([`127.0.0.1:${await freePort()}`], { retries: 0 }));
    try {
      const r = await get(p.url + '/');
      assert.equal(r.status, 502);
      assert.equal(r.body, '502 Bad Gateway\n');
    } finally { await p.close(); }
  });

  it('answers requests queued for a connection slot at once when the dial holding it fails, not after connectTimeout', async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const p = await proxy(simple([dead], { maxConnections: 1, retries: 0, connectTimeout: '3s', ejection: { consecutiveFailures: 0 } }));
    try {
      const t = Date.now();
      const statuses = await Promise.all([1, 2, 3].map(() => get(p.url + '/').then((r) => r.status)));
      assert.deepEqual(statuses, [502, 502, 502], 'a queued request waited for a slot that had been free for seconds (503)');
      assert.ok(Date.now() - t < 2500, `took ${Date.now() - t}ms`);
    } finally { await p.close(); }
  });

  it('answers 502 when the upstream sends a malformed response', async () => {
    const bad = await rawUpstream((s) => s.once('data', () => s.end('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd')));
    const p = await proxy(simple([bad.address], { retries: 0 }));
    try {
      assert.equal((await get(p.url + '/')).status, 502);
    } finally { await p.close(); bad.close(); }
  });

  it('answers 502 when the upstream sends a header Node cannot relay, and keeps serving', async () => {
    const bad = await rawUpstream((s) => s.on('data', () => s.write('HTTP/1.1 200 OK\r\nX Bad Name: 1\r\nContent-Length: 2\r\n\r\nok')));
    const p = await proxy(simple([bad.address], { retries: 0 }));
    try {
      assert.equal((await get(p.url + '/')).status, 502);
      assert.equal((await get(p.url + '/')).status, 502);
    } finally { await p.close(); bad.close(); }
  });

  it('says 502 Bad Gateway, not the reason phrase of an upstream response it could not relay', async () => {
    const bad = await rawUpstream((s) => s.on('data', () => s.write('HTTP/1.1 200 OK\r\nX Bad Name: 1\r\nContent-Length: 2\r\n\r\nok')));
    const p = await proxy(simple([bad.address], { retries: 0 }));
    try {
      const r = await raw(p.port, 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
      assert.match(r, /^HTTP\/1\.1 502 Bad Gateway\r\n/);
    } finally { await p.close(); bad.close(); }
  });

  for (const [what, response] of [
    ['ends its head with bare LFs', 'HTTP/1.1 200 OK\nContent-Length: 2\n\nok'],
    ['switches protocols (101) for a request that asked for no upgrade', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\nhello'],
  ]) {
    it(`answers 502 at once, not 504 at the pool timeout, when the upstream ${what}`, async () => {
      const bad = await rawUpstream((s) => s.once('data', () => s.write(response)));
      const p = await proxy(simple([bad.address], { retries: 0, timeout: '3s' }));
      try {
        const t0 = Date.now();
        assert.equal((await get(p.url + '/')).status, 502);
        assert.ok(Date.now() - t0 < 1000, 'answered before the pool timeout');
      } finally { await p.close(); bad.close(); }
    });
  }

  it('answers 504 at the pool timeout when the upstream keeps sending informational responses and never a final one', async () => {
    const bad = await rawUpstream((s) => s.once('data', () => {
      const t = setInterval(() => { if (s.destroyed) clearInterval(t); else s.write('HTTP/1.1 100 Continue\r\n\r\n'); }, 100);
      s.on('close', () => clearInterval(t));
    }));
    const p = await proxy(simple([bad.address], { retries: 0, timeout: '500ms' }));
    try {
      const t0 = Date.now();
      assert.equal((await get(p.url + '/', { timeoutMs: 3000 })).status, 504);
      assert.ok(Date.now() - t0 < 1500, `answered after ${Date.now() - t0}ms`);
    } finally { await p.close(); bad.close(); }
  });


  it('cuts the client off when the upstream dies mid-body, rather than pretend the body is complete', async () => {
    const b = await backend('b', (req, res) => { res.writeHead(200, { 'content-length': 100 }); res.write('partial'); setTimeout(() => req.socket.destroy(), 50); });
    const p = await proxy(simple([b.address], { retries: 0 }));
    try {
      await assert.rejects(get(p.url + '/'));
    } finally { await p.close(); await b.close(); }
  });
});

describe('client behaviour is not upstream failure', () => {
  it('does not count request bodies over maxBodySize against the endpoint', async () => {
    const b = await backend('b');
    const p = await proxy(simple([b.address], { ejection: { consecutiveFailures: 2, maxPercent: 100 } }, { limits: { maxBodySize: 1000 } }));
    try {
      const body = `${(2000).toString(16)}\r\n${'y'.repeat(2000)}\r\n0\r\n\r\n`;
      for (let i = 0; i < 5; i++) assert.equal(statusOf(await raw(p.port, `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${body}`)), 413);
      assert.equal(ejections(p).length, 0);
      assert.equal(endpointOf(p).consecutiveFailures, 0);
      assert.equal((await get(p.url + '/')).status, 200);
    } finally { await p.close(); await b.close(); }
  });

  it('lets a client read a large response slowly, stalling past the pool timeout, and does not fail the endpoint', async () => {
    // Far more than socket buffers hold, so the proxy must stop reading the upstream while the client stalls.
    const size = 24 * 1024 * 1024;
    const big = Buffer.alloc(size, 'x');
    const b = await backend('big', (_req, res) => { res.writeHead(200, { 'content-length': size }); res.end(big); });
    const p = await proxy(simple([b.address], { timeout: '400ms', retries: 0 }));
    try {
      const got = await new Promise<number>((resolve, reject) => {
        request(p.url + '/', { agent: false }, (res) => {
          let n = 0, stalls = 0;
          res.on('data', (d: Buffer) => {
            n += d.length;
            if (stalls < 3) { stalls++; res.pause(); setTimeout(() => res.resume(), 800); } // three stalls of 2× the timeout
          });
          res.on('end', () => resolve(n));
          res.on('error', reject);
        }).on('error', reject).end();
      });
      assert.equal(got, size);
      assert.equal(endpointOf(p).consecutiveFailures, 0);
      await sleep(50);
      const line = p.logs.access().at(-1)!;
      assert.equal(line.status, 200);
      assert.equal(line.error, undefined);
    } finally { await p.close(); await b.close(); }
  });

  it('cuts a client that takes no response bytes for timeouts.send, without failing the endpoint', async () => {
    const size = 24 * 1024 * 1024;
    const big = Buffer.alloc(size, 'x');
    const b = await backend('big', (_req, res) => { res.writeHead(200, { 'content-length': size }); res.end(big); });
    const p = await proxy(simple([b.address], { timeout: '200ms', retries: 0 }, { timeouts: { send: '500ms' } }));
    try {
      // Take nothing for 2.5s, then read what there is: a cut connection ends short.
      const got = await new Promise<number>((resolve) => {
        request(p.url + '/', { agent: false }, (res) => {
          let n = 0;
          res.pause();
          setTimeout(() => { res.on('data', (d: Buffer) => { n += d.length; }); res.resume(); }, 2500);
          res.on('end', () => resolve(n));
          res.on('error', () => resolve(n));
        }).on('error', () => resolve(-1)).end();
      });
      assert.ok(got < size, `got all ${got} bytes`);
      const line = p.logs.access().at(-1)!;
      assert.equal(line.status, 499);
      assert.equal(line.error, 'ESENDTIMEOUT');
      assert.ok(Number(line.ms) >= 450 && Number(line.ms) < 2400, `cut after ${line.ms}ms`);
      assert.equal(endpointOf(p).consecutiveFailures, 0);
    } finally { await p.close(); await b.close(); }
  });

  it('logs a client that closes its connection in the middle of its body as 499, not 400', async () => {
    const b = await backend('echo', (_req, res, body) => res.end(`got ${body}`));
    const p = await proxy(simple([b.address], { retries: 0 }));
    try {
      const s = connect(p.port, '127.0.0.1');
      s.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc');
      await sleep(200);
      s.end();
      await sleep(200);
      const line = p.logs.access().at(-1)!;
      assert.equal(line.path, '/upload');
      assert.equal(line.status, 499);
      assert.equal(endpointOf(p).consecutiveFailures, 0);
    } finally { await p.close(); await b.close(); }
  });

  it('does not count a client that pauses its upload past the pool timeout against the endpoint', async () => {
    const b = await backend('echo', (_req, res, body) => res.end(`got ${body}`));
    const p = await proxy(simple([b.address], { timeout: '400ms', retries: 0 }));
    try {
      const reply = await new Promise<string>((resolve, reject) => {
        const s = connect(p.port, '127.0.0.1');
        let out = '';
        s.on('data', (d) => { out += d; });
        s.on('close', () => resolve(out));
        s.on('error', reject);
        s.write('POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 10\r\n\r\n12345');
        setTimeout(() => s.write('67890'), 1000);
      });
      assert.equal(statusOf(reply), 200);
      assert.ok(reply.endsWith('got 1234567890'), reply);
      assert.equal(endpointOf(p).consecutiveFailures, 0);
    } finally { await p.close(); await b.close(); }
  });
});
