/** The health checker against real TCP and HTTP servers on loopback. */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createTcp, type Server as TcpServer } from 'node:net';
import { createServer as createHttp } from 'node:http';
import { once } from 'node:events';
import { HealthChecker, type HealthChange } from '../../src/agent/health/index.js';
import { probeHttp, probeTcp } from '../../src/agent/health/probe.js';
import type { HealthSpec } from '../../src/model/index.js';

const fast = (type: HealthSpec['type'], extra: Partial<HealthSpec> = {}): HealthSpec => ({ type, intervalMs: 40, timeoutMs: 150, rise: 2, fall: 2, ...extra });
const servers: Array<{ close(): unknown }> = [];
after(() => servers.forEach((s) => s.close()));

async function listen<T extends TcpServer>(s: T, host = '127.0.0.1'): Promise<number> {
  s.listen(0, host);
  await once(s, 'listening');
  servers.push(s);
  return (s.address() as { port: number }).port;
}

/** A port nothing listens on: bind, read the port, close. */
async function closedPort(): Promise<number> {
  const s = createTcp();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const p = (s.address() as { port: number }).port;
  s.close();
  return p;
}

function nextChange(h: HealthChecker, timeoutMs = 3000): Promise<HealthChange> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no health change')), timeoutMs);
    h.once('change', (c) => { clearTimeout(t); resolve(c); });
  });
}

test('tcp probe succeeds on a listening port and fails on a closed one', async () => {
  const port = await listen(createTcp((s) => s.end()));
  assert.equal((await probeTcp('127.0.0.1', port, 500)).ok, true);
  const r = await probeTcp('127.0.0.1', await closedPort(), 500);
  assert.deepEqual(r, { ok: false, detail: 'tcp connect: ECONNREFUSED' });
});

test('tcp probe works over IPv6', async () => {
  const port = await listen(createTcp((s) => s.end()), '::1');
  assert.equal((await probeTcp('::1', port, 500)).ok, true);
});

test('http probe: 2xx and 3xx are healthy, 5xx is not', async () => {
  const port = await listen(createHttp((req, res) => {
    res.statusCode = req.url === '/ok' ? 204 : req.url === '/moved' ? 302 : 503;
    res.end();
  }));
  assert.equal((await probeHttp('127.0.0.1', port, '/ok', 500)).ok, true);
  assert.equal((await probeHttp('127.0.0.1', port, '/moved', 500)).ok, true);
  assert.deepEqual(await probeHttp('127.0.0.1', port, '/broken', 500), { ok: false, detail: 'http 503' });
});

test('http probe that hangs past the timeout fails', async () => {
  const port = await listen(createHttp(() => { /* never answers */ }));
  const started = Date.now();
  const r = await probeHttp('127.0.0.1', port, '/', 100);
  assert.equal(r.ok, false);
  assert.match(r.detail, /timed out after 100 ms/);
  assert.ok(Date.now() - started < 1000);
});

test('http probe works over IPv6 and sends the real\'s address as Host', async () => {
  let host: string | undefined;
  const port = await listen(createHttp((req, res) => { host = req.headers.host; res.end(); }), '::1');
  assert.deepEqual(await probeHttp('::1', port, '/', 500), { ok: true, detail: 'http 200' });
  assert.equal(host, `[::1]:${port}`);
});

test('a target goes down after `fall` failures and back up after `rise` successes', async () => {
  let healthy = true;
  const port = await listen(createHttp((_q, res) => { res.statusCode = healthy ? 200 : 500; res.end(); }));
  const h = new HealthChecker();
  try {
    h.set([{ id: 'r1', address: '127.0.0.1', port, spec: fast('http', { path: '/', fall: 3, rise: 2 }) }]);
    assert.equal(h.state('r1'), 'up', 'new targets start up');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(h.state('r1'), 'up');
    healthy = false;
    const t0 = Date.now();
    const down = await nextChange(h);
    assert.deepEqual([down.id, down.up], ['r1', false]);
    assert.match(down.reason, /3 checks failed \(http 500\)/);
    assert.ok(Date.now() - t0 >= 2 * 40, 'not before fall probes');
    healthy = true;
    const up = await nextChange(h);
    assert.equal(up.up, true);
    assert.match(up.reason, /2 checks passed/);
  } finally { h.close(); }
});

test('a target that starts down stays down until `rise` successes', async () => {
  const port = await listen(createTcp((s) => s.end()));
  const h = new HealthChecker();
  try {
    h.set([{ id: 'r', address: '127.0.0.1', port, spec: fast('tcp'), initial: 'down' }]);
    assert.equal(h.state('r'), 'down');
    assert.equal((await nextChange(h)).up, true);
  } finally { h.close(); }
});

test('set() stops removed targets and keeps the state of unchanged ones', async () => {
  const port = await closedPort();
  const h = new HealthChecker();
  try {
    const target = { id: 'gone', address: '127.0.0.1', port, spec: fast('tcp', { fall: 1 }) };
    h.set([target]);
    assert.equal((await nextChange(h)).up, false);
    h.set([target]);
    assert.equal(h.state('gone'), 'down', 'an unchanged target keeps its state');
    h.set([]);
    assert.equal(h.state('gone'), undefined);
    let changes = 0;
    h.on('change', () => changes++);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(changes, 0, 'a removed target is no longer probed');
  } finally { h.close(); }
});

test('close() stops every probe', async () => {
  const h = new HealthChecker();
  h.set([{ id: 'x', address: '127.0.0.1', port: await closedPort(), spec: fast('tcp', { fall: 1 }) }]);
  h.close();
  let changes = 0;
  h.on('change', () => changes++);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(changes, 0);
});

test('type none is up without probing, and a target persisted as down comes up', async () => {
  const h = new HealthChecker();
  try {
    // A closed port: any probe would fail, so staying up shows none never probes.
    const port = await closedPort();
    h.set([{ id: 'a', address: '127.0.0.1', port, spec: fast('none', { fall: 1 }) }, { id: 'b', address: '127.0.0.1', port, spec: fast('none'), initial: 'down' }]);
    assert.equal(h.state('a'), 'up');
    assert.deepEqual(await nextChange(h), { id: 'b', up: true, reason: 'no health check' });
    await new Promise((r) => setTimeout(r, 150));
    assert.deepEqual([h.state('a'), h.state('b')], ['up', 'up']);
  } finally { h.close(); }
});

test('set() restarts a target whose port changed, keeping its state until probes say otherwise', async () => {
  const closed = await closedPort();
  const open = await listen(createTcp((s) => s.end()));
  const h = new HealthChecker();
  try {
    const t = { id: 'r', address: '127.0.0.1', port: closed, spec: fast('tcp', { fall: 1, rise: 1 }) };
    h.set([t]);
    assert.equal((await nextChange(h)).up, false);
    h.set([{ ...t, port: open }]);
    assert.equal(h.state('r'), 'down', 'the restarted checker keeps the last state');
    const up = await nextChange(h);
    assert.deepEqual([up.id, up.up], ['r', true]);
  } finally { h.close(); }
});

test('close() aborts a probe in flight: its connection closes at once, not at the timeout', async () => {
  let connected!: () => void;
  const sawRequest = new Promise<void>((r) => { connected = r; });
  let closedAt = 0;
  const port = await listen(createHttp((req) => { req.socket.once('close', () => { closedAt = Date.now(); }); connected(); }));
  const h = new HealthChecker();
  h.set([{ id: 'x', address: '127.0.0.1', port, spec: fast('http', { timeoutMs: 5000 }) }]);
  await sawRequest;
  const t0 = Date.now();
  h.close();
  while (!closedAt && Date.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 10));
  assert.ok(closedAt > 0 && closedAt - t0 < 1000, 'the probe connection closed within a second of close()');
});
