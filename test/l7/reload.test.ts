/** A worker's reload is all or nothing: what cannot be applied (a port taken, a certificate missing) changes nothing. */
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { connect, createServer, type AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { validateL7 } from '../../src/l7/config.js';
import { backend, freePort, get, makeCerts, proxy, type Backend, type Proxy } from './helpers.js';

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
});
