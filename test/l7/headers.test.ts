import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { backend, get, proxy, raw, simple, type Backend, type Proxy } from './helpers.js';

describe('forwarding headers', () => {
  let b: Backend, p: Proxy, trusting: Proxy;
  before(async () => {
    b = await backend('b', (_req, res) => {
      res.writeHead(200, { 'content-length': 2, connection: 'x-secret, keep-alive', 'x-secret': 'hop', 'keep-alive': 'timeout=9', via: '1.1 app', 'x-app': 'end' });
      res.end('ok');
    });
    p = await proxy(simple([b.address]));
    trusting = await proxy(simple([b.address], {}, { trustedProxies: ['127.0.0.0/8'] }));
  });
  after(async () => { await p.close(); await trusting.close(); await b.close(); });
  const last = () => b.seen.at(-1)!.headers;

  it('sets X-Forwarded-For/-Proto/-Host and Forwarded from the connection', async () => {
    await get(p.url + '/', { headers: { host: 'shop.test' } });
    const h = last();
    assert.equal(h['x-forwarded-for'], '127.0.0.1');
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.equal(h['x-forwarded-host'], 'shop.test');
    assert.equal(h.forwarded, 'for=127.0.0.1;proto=http;host=shop.test');
    assert.equal(h.host, 'shop.test');
  });

  it('replaces forwarding headers from an untrusted peer', async () => {
    await get(p.url + '/', { headers: { 'x-forwarded-for': '6.6.6.6', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil', forwarded: 'for=6.6.6.6' } });
    const h = last();
    assert.equal(h['x-forwarded-for'], '127.0.0.1');
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.notEqual(h['x-forwarded-host'], 'evil');
    assert.equal(h.forwarded?.includes('6.6.6.6'), false);
  });

  it('drops forwarding headers spelled with underscores (X_Forwarded_For), which CGI-style upstreams read as the real ones', async () => {
    await get(p.url + '/', { headers: { 'x_forwarded_for': '6.6.6.6', 'X-Forwarded_Proto': 'https', 'x_forwarded_host': 'evil' } });
    const names = b.seen.at(-1)!.raw.map((v) => v.toLowerCase());
    for (const name of ['x_forwarded_for', 'x-forwarded_proto', 'x_forwarded_host']) assert.ok(!names.includes(name), name);
    assert.equal(b.seen.at(-1)!.headers['x-forwarded-for'], '127.0.0.1');
  });

  it('appends to forwarding headers from a trusted proxy', async () => {
    await get(trusting.url + '/', { headers: { host: 'inner', 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'shop.test', forwarded: 'for=203.0.113.9;proto=https' } });
    const h = last();
    assert.equal(h['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
    assert.equal(h['x-forwarded-proto'], 'https');
    assert.equal(h['x-forwarded-host'], 'shop.test');
    assert.equal(h.forwarded, 'for=203.0.113.9;proto=https, for=127.0.0.1;proto=http;host=inner');
  });

  it('gives an HTTP/1.0 request without Host the address the client connected to as Host upstream', async () => {
    const reply = await raw(p.port, 'GET /old HTTP/1.0\r\n\r\n');
    assert.equal(reply.split(' ')[1], '200', reply);
    assert.equal(last().host, `127.0.0.1:${p.port}`);
    assert.equal(last()['x-forwarded-host'], undefined, 'the client named no host');
  });

  it('strips hop-by-hop request headers, including those named by Connection', async () => {
    await raw(p.port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close, x-hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Authorization: secret\r\nX-Keep: yes\r\n\r\n');
    const h = last();
    for (const k of ['connection', 'x-hop', 'keep-alive', 'te', 'proxy-authorization']) assert.equal(h[k], undefined, k);
    assert.equal(h['x-keep'], 'yes');
  });

  it('strips hop-by-hop response headers, including those named by Connection', async () => {
    const r = await get(p.url + '/');
    assert.equal(r.headers['x-secret'], undefined);
    assert.notEqual(r.headers['keep-alive'], 'timeout=9');
    assert.equal(r.headers['x-app'], 'end');
  });

  it('keeps the Content-Length: 0 of an empty POST (some upstreams answer a POST without one 411)', async () => {
    await get(p.url + '/empty', { method: 'POST', headers: { 'content-length': '0' } });
    assert.equal(last()['content-length'], '0');
  });

  it('adds itself to Via both ways', async () => {
    const r = await get(p.url + '/', { headers: { via: '1.0 edge' } });
    assert.equal(last().via, '1.0 edge, 1.1 sluice');
    assert.equal(r.headers.via, '1.1 app, 1.1 sluice');
  });

  it('gives each request an id, sent upstream and returned to the client', async () => {
    const r = await get(p.url + '/');
    const id = String(r.headers['x-request-id']);
    assert.match(id, /^[0-9a-f-]{36}$/);
    assert.equal(last()['x-request-id'], id);
    assert.notEqual((await get(p.url + '/')).headers['x-request-id'], id);
  });

  it('returns the request id once when the upstream echoes it', async () => {
    const b = await backend('echo-id', (req, res) => { res.writeHead(200, { 'x-request-id': String(req.headers['x-request-id']), 'content-length': 2 }); res.end('ok'); });
    const p = await proxy(simple([b.address]));
    try {
      assert.equal((await get(p.url + '/', { headers: { 'x-request-id': 'abc-123' } })).headers['x-request-id'], 'abc-123');
    } finally { await p.close(); await b.close(); }
  });

  it('keeps a well-formed request id from the client', async () => {
    const r = await get(p.url + '/', { headers: { 'x-request-id': 'abc-123' } });
    assert.equal(r.headers['x-request-id'], 'abc-123');
    assert.equal(last()['x-request-id'], 'abc-123');
  });

  it('keeps repeated headers repeated', async () => {
    await get(p.url + '/', { headers: { 'x-multi': ['a', 'b'] } });
    const seen = b.seen.at(-1)!;
    assert.equal(seen.headers['x-multi'], 'a, b');
  });
});

describe('response framing', () => {
  it('passes repeated Set-Cookie headers through one by one', async () => {
    const b = await backend('b', (_req, res) => { res.setHeader('set-cookie', ['a=1', 'b=2']); res.end('x'); });
    const p = await proxy(simple([b.address]));
    try {
      assert.deepEqual((await get(p.url + '/')).headers['set-cookie'], ['a=1', 'b=2']);
    } finally { await p.close(); await b.close(); }
  });

  it('relays 204 and 304 without a body and HEAD without one', async () => {
    const b = await backend('b', (req, res) => {
      if (req.url === '/204') { res.writeHead(204); res.end(); } else if (req.url === '/304') { res.writeHead(304, { etag: '"x"' }); res.end(); } else { res.writeHead(200, { 'content-length': 5 }); res.end(req.method === 'HEAD' ? undefined : 'hello'); }
    });
    const p = await proxy(simple([b.address]));
    try {
      assert.equal((await get(p.url + '/204')).status, 204);
      const r304 = await get(p.url + '/304');
      assert.equal(r304.status, 304);
      assert.equal(r304.headers.etag, '"x"');
      const head = await get(p.url + '/h', { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers['content-length'], '5');
      assert.equal((await get(p.url + '/after')).body, 'hello');
    } finally { await p.close(); await b.close(); }
  });
});

describe('upstream framing', () => {
  it('relays a response framed both ways with its chunked body, not the Content-Length that contradicts it', async () => {
    const { createServer } = await import('node:net');
    const up = createServer((s) => s.once('data', () => s.write('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n')));
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', () => r()));
    const p = await proxy(simple([`127.0.0.1:${(up.address() as { port: number }).port}`]));
    try {
      const text = await raw(p.port, 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
      const split = text.indexOf('\r\n\r\n');
      const head = text.slice(0, split);
      assert.doesNotMatch(head, /content-length/i);
      assert.match(head, /transfer-encoding: chunked/i);
      assert.equal(text.slice(split + 4), '5\r\nhello\r\n0\r\n\r\n');
    } finally { await p.close(); up.close(); }
  });

  it('gives the next request a fresh connection after a 204 that declared a body, so a late body is never its response', async () => {
    const { createServer } = await import('node:net');
    let first = true;
    const up = createServer((s) => s.on('data', () => {
      if (first) {
        first = false;
        s.write('HTTP/1.1 204 No Content\r\nContent-Length: 38\r\n\r\n');
        setTimeout(() => s.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!'), 150);
      } else setTimeout(() => s.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood'), 300);
    }).on('error', () => {}));
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', () => r()));
    const p = await proxy(simple([`127.0.0.1:${(up.address() as { port: number }).port}`]));
    try {
      assert.equal((await get(p.url + '/a')).status, 204);
      assert.equal((await get(p.url + '/b')).body, 'good');
    } finally { await p.close(); up.close(); }
  });

  it('relays a response with a repeated Content-Length to a Node client, which refuses duplicates', async () => {
    const { createServer } = await import('node:net');
    const up = createServer((s) => s.on('data', () => s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok')));
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', () => r()));
    const p = await proxy(simple([`127.0.0.1:${(up.address() as { port: number }).port}`]));
    try {
      const r = await get(p.url + '/');
      assert.equal(r.status, 200);
      assert.equal(r.body, 'ok');
    } finally { await p.close(); up.close(); }
  });
});

describe('IPv6', () => {
  it('listens on ::1, proxies to an IPv6 endpoint and quotes the client in Forwarded', async () => {
    const { createServer } = await import('node:http');
    let seen: import('node:http').IncomingHttpHeaders = {};
    const up = createServer((req, res) => { seen = req.headers; res.end('v6'); });
    await new Promise<void>((r) => up.listen(0, '::1', () => r()));
    const p = await proxy(simple([`[::1]:${(up.address() as { port: number }).port}`]), { address: '::1' });
    try {
      const r = await get(`http://[::1]:${p.port}/`);
      assert.equal(r.body, 'v6');
      assert.equal(seen['x-forwarded-for'], '::1');
      assert.match(String(seen.forwarded), /^for="\[::1\]";proto=http;host="\[::1\]:\d+"$/);
    } finally { await p.close(); up.closeAllConnections(); up.close(); }
  });
});

describe('interim responses', () => {
  it('relays 103 Early Hints with their Link headers before the response', async () => {
    const b = await backend('b', (_req, res) => {
      res.writeEarlyHints({ link: ['</app.css>; rel=preload; as=style', '</app.js>; rel=preload; as=script'] });
      setTimeout(() => res.end('done'), 20);
    });
    const p = await proxy(simple([b.address]));
    try {
      const r = await raw(p.port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      assert.match(r, /^HTTP\/1\.1 103 Early Hints\r\n/);
      const interim = r.slice(0, r.indexOf('\r\n\r\n'));
      assert.match(interim, /\r\nlink: <\/app\.css>; rel=preload; as=style, <\/app\.js>; rel=preload; as=script/i);
      assert.match(r.slice(interim.length + 4), /^HTTP\/1\.1 200 /);
      assert.ok(r.endsWith('done'));
    } finally { await p.close(); await b.close(); }
  });

  it('sends no 103 to an HTTP/1.0 client, which would take it for the response (RFC 9110 §15.2)', async () => {
    const b = await backend('b', (_req, res) => {
      res.writeEarlyHints({ link: '</app.css>; rel=preload; as=style' });
      setTimeout(() => res.end('done'), 20);
    });
    const p = await proxy(simple([b.address]));
    try {
      const r = await raw(p.port, 'GET / HTTP/1.0\r\nHost: x\r\n\r\n');
      assert.match(r, /^HTTP\/1\.1 200 /);
      assert.ok(r.endsWith('done'));
    } finally { await p.close(); await b.close(); }
  });
});
