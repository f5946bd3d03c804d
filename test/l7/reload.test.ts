/** A worker's reload is all or nothing: what cannot be applied (a port taken, a certificate missing) changes nothing. */
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { connect, createServer, type AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { validateL7 } from '../../src/l7/config.js';
import { backend, freePort, get, makeCerts, proxy, sleep, type Backend, type Proxy } from './helpers.js';

const until = async (cond: () => boolean, ms = 3000) => { const end = Date.now() + ms; while (!cond()) { if (Date.now() > end) throw new Error('timed out waiting'); await sleep(20); } };

/** A config for one pool of `endpoint`; the first listener is the one proxy() opened (port 0), unless `listeners` says otherwise. */
function config(endpoint: Backend, extra: Array<Record<string, unknown>>, listeners = [{ address: '127.0.0.1', port: 0 }, ...extra]): ReturnType<typeof validateL7> {
  return validateL7({ accessLog: true, listeners, routes: [{ pool: 'app' }], pools: { app: { endpoints: [endpoint.address] } } });
}

const refused = (port: number) => new Promise<boolean>((resolve) => {
  const s = connect(port, '127.0.0.1');
  s.once('connect', () => { s.destroy(); resolve(false); });
  s.once('error', () => resolve(true));
});

describe('reload', () => {
  it('changes nothing when a new listener cannot bind, and closes the ones it had opened', async () => {
    const [a, b] = await Promise.all([backend('a'), backend('b')]);
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const taken = (blocker.address() as AddressInfo).port;
    const free = await freePort();
    const p = await proxy({ routes: [{ pool: 'app' }], pools: { app: { endpoints: [a.address] } } });
    try {
      const before = p.worker.runtime;
      const cfg = config(b, [{ address: '127.0.0.1', port: free }, { address: '127.0.0.1', port: taken }]);
      await assert.rejects(p.worker.reload(cfg), /l7\.listeners\[2\] 127\.0\.0\.1:\d+: .*EADDRINUSE/);
      assert.equal(p.worker.runtime, before);
      assert.equal((await get(p.url + '/')).headers['x-backend'], 'a');
      assert.equal(p.worker.addresses().length, 1);
      assert.ok(await refused(free), 'the listener opened for the refused reload is closed again');
      assert.ok(p.logs.lines.some((l) => l.msg === 'reload refused; the running config stays'));
      assert.ok(!p.logs.lines.some((l) => l.msg === 'config reloaded'));
    } finally { await p.close(); blocker.close(); await a.close(); await b.close(); }
  });

  it('changes nothing when a new listener\'s certificate does not load', async () => {
    const [a, b] = await Promise.all([backend('a'), backend('b')]);
    const p = await proxy({ routes: [{ pool: 'app' }], pools: { app: { endpoints: [a.address] } } });
    try {
      const before = p.worker.runtime;
      const cfg = config(b, [{ address: '127.0.0.1', port: await freePort(), tls: { certs: [{ cert: '/nonexistent.crt', key: '/nonexistent.key' }] } }]);
      await assert.rejects(p.worker.reload(cfg), /cannot load \/nonexistent\.crt/);
      assert.equal(p.worker.runtime, before);
      assert.equal((await get(p.url + '/')).headers['x-backend'], 'a');
    } finally { await p.close(); await a.close(); await b.close(); }
  });

  it('applies a reload that adds a listener, which then serves the new config', async () => {
    const [a, b] = await Promise.all([backend('a'), backend('b')]);
    const port = await freePort();
    const p = await proxy({ routes: [{ pool: 'app' }], pools: { app: { endpoints: [a.address] } } });
    try {
      await p.worker.reload(config(b, [{ address: '127.0.0.1', port }]));
      assert.equal((await get(`http://127.0.0.1:${port}/`)).headers['x-backend'], 'b');
      assert.equal((await get(p.url + '/')).headers['x-backend'], 'b');
    } finally { await p.close(); await a.close(); await b.close(); }
  });

  it('turns a plain listener into a TLS one on the same port', async () => {
    const certs = makeCerts(['a.test']);
    const a = await backend('a');
    const port = await freePort();
    const p = await proxy({ routes: [{ pool: 'app' }], pools: { app: { endpoints: [a.address] } } }, { port });
    try {
      assert.equal((await get(`http://127.0.0.1:${port}/`)).status, 200);
      await p.worker.reload(config(a, [], [{ address: '127.0.0.1', port, tls: { certs: [{ ...certs.files['a.test'], serverNames: ['a.test'] }] } }]));
      const status = await new Promise<number>((resolve, reject) => {
        request({ host: '127.0.0.1', port, path: '/', servername: 'a.test', rejectUnauthorized: false, agent: false }, (res) => { res.resume(); resolve(res.statusCode!); })
          .on('error', reject).end();
      });
      assert.equal(status, 200);
    } finally { await p.close(); await a.close(); certs.cleanup(); }
  });

  it('keeps an endpoint found down by health checks out when another endpoint is added to its pool', async () => {
    const [a, b] = await Promise.all([backend('a'), backend('b')]);
    const dead = `127.0.0.1:${await freePort()}`;
    const health = { path: '/', interval: '100ms', timeout: '100ms', rise: 1, fall: 1 };
    const pools = (eps: string[]) => ({ routes: [{ pool: 'app' }], pools: { app: { endpoints: eps, health, retries: 0 } } });
    const p = await proxy(pools([a.address, dead]));
    const deadEp = () => p.worker.runtime.pools.get('app')!.endpoints.find((e) => e.key === dead)!;
    try {
      await until(() => !deadEp().healthy);
      await p.worker.reload(validateL7({ listeners: [{ address: '127.0.0.1', port: 0 }], ...pools([a.address, dead, b.address]) }));
      assert.equal(deadEp().healthy, false, 'the reload made the dead endpoint healthy again, before any check');
      for (let i = 0; i < 6; i++) assert.equal((await get(p.url + '/')).status, 200);
    } finally { await p.close(); await a.close(); await b.close(); }
  });

  it('keeps the warm connections of endpoints that stay when another endpoint is added to their pool', async () => {
    const [a, b] = await Promise.all([backend('a'), backend('b')]);
    const pools = (eps: string[]) => ({ routes: [{ pool: 'app' }], pools: { app: { endpoints: eps } } });
    const p = await proxy(pools([a.address]));
    try {
      const ports = new Set<number>();
      a.server.on('request', (req) => ports.add(req.socket.remotePort!));
      assert.equal((await get(p.url + '/')).status, 200);
      await p.worker.reload(validateL7({ listeners: [{ address: '127.0.0.1', port: 0 }], ...pools([a.address, b.address]) }));
      for (let i = 0; i < 4; i++) await get(p.url + '/');
      assert.equal(ports.size, 1, `a was reached on ${ports.size} connections: the reload dropped its pooled one`);
    } finally { await p.close(); await a.close(); await b.close(); }
  });

  it('brings a down endpoint back when its pool no longer has health checks', async () => {
    const a = await backend('a');
    let up = false;
    const flaky = await backend('flaky', (_req, res) => { res.writeHead(up ? 200 : 500, { 'x-backend': 'flaky' }); res.end(); });
    const pools = (health?: object) => ({ routes: [{ pool: 'app' }], pools: { app: { endpoints: [a.address, flaky.address], ...(health ? { health } : {}) } } });
    const p = await proxy(pools({ path: '/', interval: '100ms', timeout: '100ms', rise: 1, fall: 1 }));
    const flakyEp = () => p.worker.runtime.pools.get('app')!.endpoints.find((e) => e.key === flaky.address)!;
    try {
      await until(() => !flakyEp().healthy);
      up = true;
      await p.worker.reload(validateL7({ listeners: [{ address: '127.0.0.1', port: 0 }], ...pools() }));
      assert.equal(flakyEp().healthy, true, 'no check is left to bring it back');
    } finally { await p.close(); await a.close(); await flaky.close(); }
  });
});
