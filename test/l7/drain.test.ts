/** One worker's drain: stop accepting, let requests in flight finish, bound by the grace period. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backend, get, proxy, simple, sleep } from './helpers.js';

describe('drain', () => {
  it('lets a request in flight finish, telling its client to close the connection', async () => {
    const b = await backend('b', (_req, res) => setTimeout(() => res.end('late'), 300));
    const p = await proxy(simple([b.address]));
    try {
      assert.equal((await get(p.url + '/', { headers: { connection: 'keep-alive' } })).headers.connection, 'keep-alive');
      const inflight = get(p.url + '/', { headers: { connection: 'keep-alive' } });
      await sleep(100);
      const drained = p.worker.drain(5000);
      const r = await inflight;
      assert.equal(r.status, 200);
      assert.equal(r.body, 'late');
      assert.equal(r.headers.connection, 'close');
      assert.deepEqual(await drained, { forced: false });
    } finally { await b.close(); }
  });

  it('stops accepting connections as soon as it starts', async () => {
    const b = await backend('b', (_req, res) => setTimeout(() => res.end('late'), 300));
    const p = await proxy(simple([b.address]));
    try {
      const inflight = get(p.url + '/');
      await sleep(100);
      const drained = p.worker.drain(5000);
      await assert.rejects(get(p.url + '/', { timeoutMs: 1000 }));
      await inflight;
      await drained;
    } finally { await b.close(); }
  });

  it('cuts what is still running when the grace period ends', async () => {
    const b = await backend('b', (_req, res) => setTimeout(() => res.end('too late'), 3000));
    const p = await proxy(simple([b.address]));
    try {
      const inflight = get(p.url + '/').then(() => 'answered', () => 'cut');
      await sleep(100);
      const t = Date.now();
      assert.deepEqual(await p.worker.drain(300), { forced: true });
      assert.ok(Date.now() - t < 2000);
      assert.equal(await inflight, 'cut');
    } finally { await b.close(); }
  });
});
