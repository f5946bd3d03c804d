import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateL7 } from '../../src/l7/config.js';
import { backend, freePort, get, proxy, raw, rawUpstream, simple, sleep, statusOf } from './helpers.js';

describe('observability', () => {
  it('writes one access-log line per request with method, host, path, status, bytes, upstream and durations', async () => {
    const b = await backend('b');
    const p = await proxy(simple([b.address]));
    try {
      await get(p.url + '/hello?secret=1', { headers: { host: 'shop.test' } });
      await get(p.url + '/again');
      const lines = p.logs.access();
      assert.equal(lines.length, 2);
      const l = lines[0];
      assert.equal(l.method, 'GET');
      assert.equal(l.host, 'shop.test');
      assert.equal(l.path, '/hello');
      assert.equal(l.status, 200);
      assert.equal(l.bytes, 'b /hello?secret=1'.length);
      assert.equal(l.upstream, b.address);
      assert.equal(typeof l.ms, 'number');
      assert.equal(typeof l.upstreamMs, 'number');
      assert.match(String(l.id), /^[0-9a-f-]{36}$/);
    } finally { await p.close(); await b.close(); }
  });

  it('logs a response the upstream cut short with its status and the upstream\'s error, not as a client that left', async () => {
    const up = await rawUpstream((s) => s.once('data', () => s.end('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort')));
    const p = await proxy(simple([up.address]));
    try {
      const reply = await raw(p.port, 'GET /cut HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(statusOf(reply), 200);
      assert.ok(reply.endsWith('short'), 'the client got the bytes there were, and then the connection closed');
      await sleep(50);
      const [line] = p.logs.access();
      assert.equal(line.status, 200);
      assert.equal(line.error, 'ERESET');
      assert.equal(line.bytes, 5);
      const metrics = await p.worker.metrics.registry.metrics();
      assert.match(metrics, /sluice_l7_requests_total\{route="[^"]*",pool="app",code="2xx"\} 1/);
      assert.doesNotMatch(metrics, /sluice_l7_requests_total\{[^}]*code="4xx"/);
    } finally { await p.close(); up.close(); }
  });

  it('logs a request a retry answered with the endpoint that answered and no error', async () => {
    const b = await backend('b');
    const dead = `127.0.0.1:${await freePort()}`;
    const p = await proxy(simple([dead, b.address], { retries: 1, ejection: { consecutiveFailures: 0 } }));
    try {
      for (let i = 0; i < 6; i++) assert.equal((await get(p.url + '/')).status, 200);
      const retried = p.logs.access().filter((l) => l.attempts === 2);
      assert.ok(retried.length > 0);
      for (const l of retried) {
        assert.equal(l.upstream, b.address);
        assert.equal(l.error, undefined, `a 200 logged with error ${l.error}`);
      }
    } finally { await p.close(); await b.close(); }
  });

  it('writes an access line for a request the HTTP parser refuses', async () => {
    const b = await backend('b');
    const p = await proxy(simple([b.address]));
    try {
      assert.equal(statusOf(await raw(p.port, 'GET /a b c\r\n\r\n')), 400);
      const lines = p.logs.access();
      assert.equal(lines.length, 1);
      assert.equal(lines[0].status, 400);
      assert.equal(lines[0].client, '127.0.0.1');
      assert.equal(lines[0].route, '-');
      assert.match(String(lines[0].error), /^HPE_/);
    } finally { await p.close(); await b.close(); }
  });

  it('logs nothing per request when accessLog is false', async () => {
    const b = await backend('b');
    const p = await proxy({ ...simple([b.address]), accessLog: false });
    try {
      await get(p.url + '/');
      assert.equal(p.logs.access().length, 0);
    } finally { await p.close(); await b.close(); }
  });

  it('exports per-route and per-endpoint metrics on the configured address', async () => {
    const b = await backend('b');
    const port = await freePort();
    const p = await proxy({ ...simple([b.address], { health: { interval: '1s' } }), metrics: `127.0.0.1:${port}` });
    try {
      await get(p.url + '/');
      await get(p.url + '/');
      await get(p.url + '/', { headers: { 'content-length': '999999999' }, method: 'POST' }).catch(() => undefined);
      const text = (await get(`http://127.0.0.1:${port}/metrics`)).body;
      assert.match(text, /sluice_l7_requests_total\{route="0-app",pool="app",code="2xx"\} 2/);
      assert.match(text, new RegExp(`sluice_l7_upstream_requests_total\\{pool="app",endpoint="${b.address}",code="2xx"\\} 2`));
      assert.match(text, /sluice_l7_request_duration_seconds_count\{route="0-app"\} 2/);
      assert.match(text, new RegExp(`sluice_l7_upstream_response_seconds_count\\{pool="app",endpoint="${b.address}"\\} 2`));
      assert.match(text, new RegExp(`sluice_l7_upstream_healthy\\{pool="app",endpoint="${b.address}"\\} 1`));
      assert.match(text, /sluice_l7_requests_total\{route="-",pool="-",code="4xx"\} 1/); // refused before routing
    } finally { await p.close(); await b.close(); }
  });

  it('drops the health gauge of an endpoint a reload removed from its pool', async () => {
    const [a, b] = await Promise.all([backend('a'), backend('b')]);
    const port = await freePort();
    const cfg = (eps: string[]) => ({ ...simple(eps, { health: { interval: '1s' } }), metrics: `127.0.0.1:${port}` });
    const p = await proxy(cfg([a.address, b.address]));
    const healthLines = async () => (await get(`http://127.0.0.1:${port}/metrics`)).body.split('\n').filter((l) => l.startsWith('sluice_l7_upstream_healthy{'));
    try {
      assert.equal((await healthLines()).length, 2);
      await p.worker.reload(validateL7({ listeners: [{ address: '127.0.0.1', port: 0 }], ...cfg([a.address]) }));
      assert.deepEqual(await healthLines(), [`sluice_l7_upstream_healthy{pool="app",endpoint="${a.address}"} 1`]);
    } finally { await p.close(); await a.close(); await b.close(); }
  });
});
