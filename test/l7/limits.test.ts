import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { backend, get, proxy, raw, rawUpstream, simple, sleep, statusOf, type Backend, type Proxy } from './helpers.js';

describe('bad and oversized requests get the right 4xx and never reach a pool', () => {
  let b: Backend, p: Proxy;
  before(async () => {
    b = await backend('b');
    p = await proxy(simple([b.address], {}, { limits: { maxHeaders: 20, maxHeaderSize: '4kb', maxBodySize: 1000 }, timeouts: { headers: '500ms' } }));
  });
  after(async () => { await p.close(); await b.close(); });
  const hitsBefore = () => b.hits;

  it('refuses Content-Length together with Transfer-Encoding with 400', async () => {
    const n = hitsBefore();
    const r = await raw(p.port, 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n');
    assert.equal(statusOf(r), 400);
    assert.equal(b.hits, n);
  });

  it('refuses two different Content-Length headers with 400', async () => {
    const n = hitsBefore();
    const r = await raw(p.port, 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd');
    assert.equal(statusOf(r), 400);
    assert.equal(b.hits, n);
  });

  it('refuses a Transfer-Encoding that does not end in chunked with 400', async () => {
    const r = await raw(p.port, 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n');
    assert.equal(statusOf(r), 400);
  });

  it('refuses a malformed request line with 400', async () => {
    assert.equal(statusOf(await raw(p.port, 'GET /a b c\r\n\r\n')), 400);
    assert.equal(statusOf(await raw(p.port, '\x16\x03\x01garbage\r\n\r\n')), 400);
  });

  it('refuses a request with two Host headers with 400 and never forwards it', async () => {
    const n = hitsBefore();
    const r = await raw(p.port, 'GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n');
    assert.equal(statusOf(r), 400);
    assert.match(r, /\r\nconnection: close\r\n/i);
    assert.equal(b.hits, n);
  });

  it('refuses a request target with a #fragment with 400 and never forwards it', async () => {
    const n = hitsBefore();
    const r = await raw(p.port, 'GET /admin#x HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(statusOf(r), 400);
    assert.equal(b.hits, n);
  });

  it('answers CONNECT with 405 (sluice is no forward proxy) rather than dropping the connection', async () => {
    const n = hitsBefore();
    const r = await raw(p.port, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
    assert.equal(statusOf(r), 405);
    assert.equal(b.hits, n);
  });

  it('answers 505 to an HTTP/1 request line that says HTTP/2.0, rather than take it for an HTTP/2 stream and crash', async () => {
    const n = hitsBefore();
    const r = await raw(p.port, 'GET / HTTP/2.0\r\nHost: x\r\n\r\n');
    assert.equal(statusOf(r), 505);
    assert.match(r, /\r\nconnection: close\r\n/i);
    assert.equal(b.hits, n);
    assert.equal((await get(p.url + '/after')).status, 200);
  });

  it('answers 505 to a request line that says HTTP/0.9, and to an upgrade that says HTTP/2.0', async () => {
    const n = hitsBefore();
    assert.equal(statusOf(await raw(p.port, 'GET / HTTP/0.9\r\nHost: x\r\n\r\n')), 505);
    assert.equal(statusOf(await raw(p.port, 'GET / HTTP/2.0\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n')), 505);
    assert.equal(b.hits, n);
  });

  it('refuses a Host that is no host[:port] (userinfo, #, a space) with 400 and never forwards it', async () => {
    const n = hitsBefore();
    for (const host of ['a.example.com:80@evil.com', 'evil.com#.example.com', 'a b', 'a.example.com/x']) {
      const r = await raw(p.port, `GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
      assert.equal(statusOf(r), 400, host);
    }
    assert.equal(b.hits, n);
  });

  it('takes a Host in upper case, with a port, with a trailing dot, or an IPv6 literal', async () => {
    for (const host of ['EXAMPLE.com:8080', 'example.com.', '[2001:db8::1]:80', '10.0.0.1']) {
      const r = await raw(p.port, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      assert.equal(statusOf(r), 200, host);
    }
  });

  it('refuses the asterisk target for anything but OPTIONS with 400', async () => {
    const n = hitsBefore();
    assert.equal(statusOf(await raw(p.port, 'GET * HTTP/1.1\r\nHost: x\r\n\r\n')), 400);
    assert.equal(b.hits, n);
    assert.equal(statusOf(await raw(p.port, 'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')), 200);
  });

  it('refuses HTTP/1.1 without Host with 400', async () => {
    assert.equal(statusOf(await raw(p.port, 'GET / HTTP/1.1\r\n\r\n')), 400);
  });

  it('refuses more headers than limits.maxHeaders with 431', async () => {
    const n = hitsBefore();
    const headers: Record<string, string> = {};
    for (let i = 0; i < 25; i++) headers[`x-h${i}`] = 'v';
    assert.equal((await get(p.url + '/', { headers })).status, 431);
    assert.equal(b.hits, n);
  });

  it('accepts exactly limits.maxHeaders headers', async () => {
    const headers: Record<string, string> = {};
    for (let i = 0; i < 17; i++) headers[`x-h${i}`] = 'v'; // + host, connection, and none else from node's client
    assert.equal((await get(p.url + '/', { headers })).status, 200);
  });

  it('refuses a head larger than limits.maxHeaderSize with 431', async () => {
    const r = await raw(p.port, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(5000)}\r\n\r\n`);
    assert.equal(statusOf(r), 431);
  });

  it('refuses a declared body over limits.maxBodySize with 413', async () => {
    const n = hitsBefore();
    assert.equal((await get(p.url + '/', { method: 'POST', body: 'x'.repeat(1001) })).status, 413);
    assert.equal(b.hits, n);
  });

  it('refuses a chunked body that grows over limits.maxBodySize with 413', async () => {
    const body = `${(2000).toString(16)}\r\n${'y'.repeat(2000)}\r\n0\r\n\r\n`;
    const r = await raw(p.port, `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${body}`);
    assert.equal(statusOf(r), 413);
  });

  it('answers a client that sends its head too slowly with 408 and closes', async () => {
    const { connect } = await import('node:net');
    const started = Date.now();
    const text = await new Promise<string>((resolve) => {
      const s = connect(p.port, '127.0.0.1');
      let out = '';
      s.write('GET / HTTP/1.1\r\nHost: x\r\n');
      const drip = setInterval(() => s.write('X-Slow: 1\r\n'), 100);
      s.on('data', (d) => { out += d.toString(); });
      s.on('close', () => { clearInterval(drip); resolve(out); });
      s.on('error', () => {});
      setTimeout(() => s.destroy(), 4000);
    });
    assert.equal(statusOf(text), 408);
    assert.ok(Date.now() - started < 3000, `took ${Date.now() - started}ms`);
  });

  it('keeps serving after all of the above', async () => {
    assert.equal((await get(p.url + '/fine')).status, 200);
  });
});

describe('request transfer codings sluice cannot forward as sent are refused before any byte goes upstream', () => {
  let p: Proxy, up: Awaited<ReturnType<typeof rawUpstream>>;
  /** Everything upstreams were sent, heads included: Node's parser refuses some of these only after the head. */
  const sent: string[] = [];
  before(async () => {
    up = await rawUpstream((s) => {
      s.on('data', (d: Buffer) => { sent.push(d.toString('latin1')); s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'); });
      s.on('error', () => {});
    });
    p = await proxy(simple([up.address]));
  });
  after(async () => { await p.close(); up.close(); });

  const refused = async (request: string, status: number) => {
    sent.length = 0;
    const r = await raw(p.port, request);
    assert.equal(statusOf(r), status, r);
    assert.match(r, /\r\nconnection: close\r\n/i);
    assert.deepEqual(sent, []);
  };

  it('refuses a final coding that only looks like chunked (xchunked) with 400', async () => {
    await refused('POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n', 400);
  });

  it('answers 501 to a coding under chunked (gzip, chunked), which re-framing would drop', async () => {
    await refused('POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n', 501);
  });

  it('refuses Transfer-Encoding on an HTTP/1.0 request with 400 (RFC 9112 §6.1: its framing is faulty)', async () => {
    await refused('POST / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n', 400);
  });

  it('refuses an empty Transfer-Encoding beside a Content-Length with 400', async () => {
    await refused('POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\nContent-Length: 3\r\n\r\nabc', 400);
  });

  it('still forwards one chunked coding, whatever its case', async () => {
    sent.length = 0;
    const r = await raw(p.port, 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
    assert.equal(statusOf(r), 200);
    assert.match(sent.join(''), /\r\n\r\n3\r\nabc\r\n0\r\n\r\n$/);
  });
});

describe('timeouts.request', () => {
  it('answers 408 when the whole request has not arrived within timeouts.request', async () => {
    const b = await backend('b');
    const p = await proxy(simple([b.address], {}, { timeouts: { headers: '300ms', request: '700ms' } }));
    try {
      const started = Date.now();
      // A complete head, then half the declared body, then nothing.
      const r = await raw(p.port, 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345', 5000);
      assert.equal(statusOf(r), 408);
      const took = Date.now() - started;
      assert.ok(took >= 600 && took < 3000, `took ${took}ms`);
      assert.equal(b.hits, 0);
      await sleep(50);
      const line = p.logs.access().at(-1)!;
      assert.equal(line.status, 408);
      assert.equal(line.path, '/');
    } finally { await p.close(); await b.close(); }
  });
});

describe('Expect: 100-continue', () => {
  let b: Backend, p: Proxy;
  before(async () => {
    b = await backend('b', (_req, res, body) => res.end(`got ${body}`));
    p = await proxy({ routes: [{ match: { pathPrefix: '/app' }, pool: 'app' }], pools: { app: { endpoints: [b.address] } }, limits: { maxBodySize: 1000 } });
  });
  after(async () => { await p.close(); await b.close(); });

  /** Send a head with Expect, wait for the first answer, then (if it was 100) the body: what came back, in order. */
  function expecting(head: string, body: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = connect(p.port, '127.0.0.1');
      let got = '';
      let sent = false;
      s.on('data', (d) => {
        got += d.toString('latin1');
        if (!sent && got.startsWith('HTTP/1.1 100 Continue\r\n\r\n')) { sent = true; s.write(body); }
        if (/\r\n\r\n[\s\S]*(got |\n$)/.test(got.replace(/^HTTP\/1\.1 100 Continue\r\n\r\n/, ''))) s.end();
      });
      s.on('close', () => resolve(got));
      s.on('error', reject);
      setTimeout(() => s.destroy(), 3000);
      s.write(head);
    });
  }

  it('says 100 Continue when it is about to read the body, and relays the upstream\'s answer', async () => {
    const r = await expecting('POST /app HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n', 'hello');
    assert.match(r, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
    assert.ok(r.endsWith('got hello'), r);
  });

  it('refuses a declared body over limits.maxBodySize with 413 before the client sends it (no 100)', async () => {
    const n = b.hits;
    const r = await expecting('POST /app HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n', 'x'.repeat(5000));
    assert.equal(statusOf(r), 413);
    assert.equal(b.hits, n);
  });

  it('answers 404 for a route-less request before the client sends the body (no 100)', async () => {
    const r = await expecting('POST /nowhere HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n', 'hello');
    assert.equal(statusOf(r), 404);
  });
});
