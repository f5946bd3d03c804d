/**
 * sluice's own HTTP/1.1 server side (src/l7/http1/) through a running listener, as a client sees
 * it on the wire: how responses are framed and when the connection stays open, pipelining,
 * half-closed and departing clients, timeouts, Expect: 100-continue, upgrades, TLS.
 * The parser fed by hand is in request-parser.test.ts.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { RequestError, RequestParser } from '../../src/l7/http1/parser.js';
import { backend, makeCerts, proxy, rawUpstream, simple, sleep, type Backend, type Proxy } from './helpers.js';

interface Parsed { status: number; headers: Record<string, string>; body: string }

/**
 * Split the bytes of a connection into responses, framed as a client frames them: no body for
 * HEAD, 1xx, 204 and 304, else Content-Length, chunked, or the rest of the connection.
 * `methods` are the requests' methods in order (1xx responses take none). What is left over
 * (bytes that frame as no response) is `rest`.
 */
function responses(text: string, methods: string[]): { list: Parsed[]; rest: string } {
  const list: Parsed[] = [];
  let pos = 0;
  let m = 0;
  while (pos < text.length) {
    const end = text.indexOf('\r\n\r\n', pos);
    if (end < 0 || !text.startsWith('HTTP/1.1 ', pos)) break;
    const lines = text.slice(pos, end).split('\r\n');
    const status = Number(lines[0].slice(9, 12));
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const c = l.indexOf(':');
      const k = l.slice(0, c).toLowerCase();
      headers[k] = headers[k] === undefined ? l.slice(c + 1).trim() : `${headers[k]}, ${l.slice(c + 1).trim()}`;
    }
    pos = end + 4;
    let body = '';
    const interim = status < 200;
    const method = interim ? 'GET' : methods[m++];
    if (interim || method === 'HEAD' || status === 204 || status === 304) {
      // no body
    } else if (headers['transfer-encoding']?.toLowerCase() === 'chunked') {
      for (;;) {
        const nl = text.indexOf('\r\n', pos);
        if (nl < 0) return { list, rest: text.slice(pos) };
        const size = parseInt(text.slice(pos, nl), 16);
        pos = nl + 2;
        if (size === 0) { pos = text.indexOf('\r\n', pos) + 2; break; }
        body += text.slice(pos, pos + size);
        pos += size + 2;
      }
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      body = text.slice(pos, pos + n);
      pos += n;
    } else {
      body = text.slice(pos);
      pos = text.length;
    }
    list.push({ status, headers, body });
  }
  return { list, rest: text.slice(pos) };
}

interface Conversation { socket: Socket; text(): string; closed: Promise<void>; isClosed(): boolean }

/** A raw client connection that records every byte it gets; `closed`: the server has ended its side (FIN or reset). */
function client(port: number): Promise<Conversation> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const chunks: Buffer[] = [];
    let done = false;
    const closed = new Promise<void>((r) => {
      socket.once('end', () => { done = true; r(); });
      socket.once('close', () => { done = true; r(); });
    });
    socket.on('data', (d) => chunks.push(d));
    socket.on('error', () => {});
    socket.once('connect', () => resolve({ socket, text: () => Buffer.concat(chunks).toString('latin1'), closed, isClosed: () => done }));
    socket.once('error', reject);
  });
}

/** Wait until `cond` holds (checked every 10 ms), failing after `ms`. */
async function until(cond: () => boolean, ms = 2000, what = 'condition'): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Close within `ms`, or fail. */
async function closesWithin(c: Conversation, ms: number): Promise<void> {
  await Promise.race([c.closed, sleep(ms).then(() => { throw new Error(`connection still open after ${ms} ms`); })]);
}

const GET = (path: string, extra = '') => `GET ${path} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;

/** A backend whose answer is chosen by path. */
function routes(): Parameters<typeof backend>[1] {
  return (req, res, body) => {
    const url = req.url ?? '/';
    if (url.startsWith('/nolength')) { res.writeHead(200, { 'content-type': 'text/plain' }); res.write('part1;'); res.end('part2'); return; }
    if (url.startsWith('/204')) { res.writeHead(204); res.end(); return; }
    if (url.startsWith('/304')) { res.writeHead(304, { etag: '"e"' }); res.end(); return; }
    if (url.startsWith('/echo')) { res.writeHead(200, { 'content-length': Buffer.byteLength(body) }); res.end(body); return; }
    if (url.startsWith('/big')) {
      // 300 KB of unknown length, in pieces of several sizes (small ones ride with the chunk line, large ones beside it).
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      let i = 0;
      const next = (): void => {
        while (i < 100) {
          const piece = Buffer.alloc(i % 3 === 0 ? 100 : 6000, 97 + (i % 26));
          i++;
          if (!res.write(piece)) { res.once('drain', next); return; }
        }
        res.end();
      };
      next();
      return;
    }
    if (url.startsWith('/close')) { res.writeHead(200, { 'content-length': 2, connection: 'close' }); res.end('ok'); return; }
    const text = `b ${req.method} ${url}`;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) });
    res.end(req.method === 'HEAD' ? undefined : text);
  };
}

describe('HTTP/1.1 server side: response framing and keep-alive', () => {
  let b: Backend, p: Proxy;
  before(async () => {
    b = await backend('b', routes());
    // Host `x` only: other hosts get 404.
    p = await proxy({ ...simple([b.address], {}, { timeouts: { keepAlive: '2s' } }), routes: [{ match: { host: 'x', pathPrefix: '/' }, pool: 'app' }] });
  });
  after(async () => { await p.close(); await b.close(); });

  it('answers three pipelined requests in order on one connection', async () => {
    const c = await client(p.port);
    c.socket.write(GET('/1') + GET('/2') + GET('/3'));
    await until(() => responses(c.text(), ['GET', 'GET', 'GET']).list.length === 3, 2000, 'three responses');
    assert.deepEqual(responses(c.text(), ['GET', 'GET', 'GET']).list.map((r) => r.body), ['b GET /1', 'b GET /2', 'b GET /3']);
    assert.equal(c.isClosed(), false);
    c.socket.destroy();
  });

  it('answers pipelined requests sent with the client\'s FIN, then closes', async () => {
    const c = await client(p.port);
    c.socket.end(GET('/1') + GET('/2'));
    await closesWithin(c, 2000);
    const r = responses(c.text(), ['GET', 'GET']);
    assert.deepEqual(r.list.map((x) => x.body), ['b GET /1', 'b GET /2']);
    assert.equal(r.rest, '');
  });

  it('answers the pipelined requests before a malformed one, then 400 and closes: nothing after it is read', async () => {
    const c = await client(p.port);
    const before = b.seen.length;
    c.socket.write(`${GET('/p1')}GET /p2 HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n${GET('/p3')}`);
    await closesWithin(c, 2000);
    const r = responses(c.text(), ['GET', 'GET']);
    assert.deepEqual(r.list.map((x) => x.status), [200, 400]);
    assert.deepEqual(b.seen.slice(before).map((x) => x.url), ['/p1']);
  });

  it('refuses with 400 a request target in none of the forms of RFC 9112 §3.2, rather than serve it as /', async () => {
    const before = b.seen.length;
    for (const target of ['admin', '?q=1', 'a:b', 'example.com:80', 'http:/x', ',']) {
      const c = await client(p.port);
      c.socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`);
      await closesWithin(c, 2000);
      assert.match(c.text(), /^HTTP\/1\.1 400 /, target);
    }
    assert.equal(b.seen.length, before);
  });

  it('serves origin-form and absolute-form targets (the scheme in any case)', async () => {
    const c = await client(p.port);
    c.socket.write(`${GET('/o?q=1')}GET HTTP://x/abs HTTP/1.1\r\nHost: x\r\n\r\n`);
    await until(() => responses(c.text(), ['GET', 'GET']).list.length === 2, 2000, 'two responses');
    assert.deepEqual(responses(c.text(), ['GET', 'GET']).list.map((x) => x.body), ['b GET /o?q=1', 'b GET /abs']);
    c.socket.destroy();
  });

  it('never reads the body of a refused request as the next request', async () => {
    const c = await client(p.port);
    const before = b.seen.length;
    const inner = GET('/smuggled');
    c.socket.write(`POST /nowhere HTTP/1.1\r\nHost: unknown.test\r\nContent-Length: ${inner.length}\r\n\r\n${inner}`);
    await closesWithin(c, 2000);
    assert.deepEqual(responses(c.text(), ['POST', 'GET']).list.map((x) => x.status), [404]);
    await sleep(50);
    assert.deepEqual(b.seen.slice(before).map((x) => x.url), []);
  });

  it('keeps the connection after an answer made at once to a request without a body (a 404)', async () => {
    const c = await client(p.port);
    c.socket.write(`GET /a HTTP/1.1\r\nHost: unknown.test\r\n\r\n${GET('/after-404')}`);
    await until(() => responses(c.text(), ['GET', 'GET']).list.length === 2, 2000, 'two responses');
    const r = responses(c.text(), ['GET', 'GET']).list;
    assert.deepEqual(r.map((x) => x.status), [404, 200]);
    assert.equal(r[0].headers.connection, 'keep-alive');
    assert.equal(c.isClosed(), false);
    c.socket.destroy();
  });

  it('says Connection: close on a response that comes before the request body has all arrived, and closes', async () => {
    // Answers as soon as the head is in, without waiting for the body.
    const early = await rawUpstream((sock) => {
      sock.on('error', () => {});
      sock.once('data', () => sock.write('HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\nno'));
    });
    const q = await proxy(simple([early.address]));
    try {
      const c = await client(q.port);
      c.socket.write('POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc');
      await closesWithin(c, 3000);
      const r = responses(c.text(), ['POST']).list;
      assert.deepEqual(r.map((x) => x.status), [401]);
      assert.equal(r[0].headers.connection, 'close');
    } finally { await q.close(); early.close(); }
  });

  it('skips empty lines between pipelined requests', async () => {
    const c = await client(p.port);
    c.socket.write(`${GET('/1')}\r\n\r\n${GET('/2')}`);
    await until(() => responses(c.text(), ['GET', 'GET']).list.length === 2, 2000, 'two responses');
    c.socket.destroy();
  });

  it('frames a HEAD response without a body, and the next response follows it at once', async () => {
    const c = await client(p.port);
    c.socket.write(`HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n${GET('/after')}`);
    await until(() => responses(c.text(), ['HEAD', 'GET']).list.length === 2, 2000, 'two responses');
    const r = responses(c.text(), ['HEAD', 'GET']);
    assert.equal(r.list[0].headers['content-length'], String('b HEAD /h'.length));
    assert.equal(r.list[1].body, 'b GET /after');
    assert.equal(r.rest, '');
    c.socket.destroy();
  });

  it('frames HEAD of a response with no length without a chunked terminator', async () => {
    const c = await client(p.port);
    c.socket.write(`HEAD /nolength HTTP/1.1\r\nHost: x\r\n\r\n${GET('/after')}`);
    await until(() => responses(c.text(), ['HEAD', 'GET']).list.length === 2, 2000, 'two responses');
    const r = responses(c.text(), ['HEAD', 'GET']);
    assert.equal(r.list[1].body, 'b GET /after');
    assert.equal(r.rest, '');
    c.socket.destroy();
  });

  it('frames 204 and 304 without a body and keeps the connection', async () => {
    const c = await client(p.port);
    c.socket.write(GET('/204') + GET('/304') + GET('/after'));
    await until(() => responses(c.text(), ['GET', 'GET', 'GET']).list.length === 3, 2000, 'three responses');
    const r = responses(c.text(), ['GET', 'GET', 'GET']);
    assert.deepEqual(r.list.map((x) => x.status), [204, 304, 200]);
    assert.equal(r.list[0].headers['transfer-encoding'], undefined);
    assert.equal(r.list[1].headers['transfer-encoding'], undefined);
    assert.equal(r.list[2].body, 'b GET /after');
    assert.equal(r.rest, '');
    c.socket.destroy();
  });

  it('sends a response of unknown length chunked to an HTTP/1.1 client and keeps the connection', async () => {
    const c = await client(p.port);
    c.socket.write(GET('/nolength') + GET('/after'));
    await until(() => responses(c.text(), ['GET', 'GET']).list.length === 2, 2000, 'two responses');
    const r = responses(c.text(), ['GET', 'GET']);
    assert.equal(r.list[0].headers['transfer-encoding'], 'chunked');
    assert.equal(r.list[0].body, 'part1;part2');
    assert.equal(r.list[1].body, 'b GET /after');
    c.socket.destroy();
  });

  it('frames a large response of unknown length, read slowly, chunk by chunk intact, and the next response follows it', async () => {
    const c = await client(p.port);
    c.socket.write(GET('/big') + GET('/after'));
    c.socket.pause();
    const read = setInterval(() => { c.socket.resume(); setTimeout(() => c.socket.pause(), 5); }, 20);
    try {
      await until(() => responses(c.text(), ['GET', 'GET']).list.length === 2, 4000, 'two responses');
    } finally { clearInterval(read); c.socket.resume(); }
    const r = responses(c.text(), ['GET', 'GET']);
    let want = '';
    for (let i = 0; i < 100; i++) want += String.fromCharCode(97 + (i % 26)).repeat(i % 3 === 0 ? 100 : 6000);
    assert.equal(r.list[0].body.length, want.length);
    assert.ok(r.list[0].body === want, 'the body arrives as sent');
    assert.equal(r.list[1].body, 'b GET /after');
    assert.equal(r.rest, '');
    c.socket.destroy();
  });

  it('ends a response of unknown length to an HTTP/1.0 client with the connection, never chunked', async () => {
    const c = await client(p.port);
    c.socket.write('GET /nolength HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
    await closesWithin(c, 2000);
    const r = responses(c.text(), ['GET']);
    assert.equal(r.list[0].headers['transfer-encoding'], undefined);
    assert.equal(r.list[0].headers.connection, 'close');
    assert.equal(r.list[0].body, 'part1;part2');
  });

  it('keeps an HTTP/1.0 connection that asks for keep-alive when the length is known', async () => {
    const c = await client(p.port);
    c.socket.write('GET /1 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\nHost: x\r\n\r\n');
    await closesWithin(c, 2000);
    const r = responses(c.text(), ['GET', 'GET']);
    assert.equal(r.list[0].headers.connection, 'keep-alive');
    assert.deepEqual(r.list.map((x) => x.body), ['b GET /1', 'b GET /2']);
    assert.equal(r.list[1].headers.connection, 'close');
  });

  it('closes an HTTP/1.0 connection after one response when keep-alive is not asked for', async () => {
    const c = await client(p.port);
    c.socket.write('GET /1 HTTP/1.0\r\nHost: x\r\n\r\n');
    await closesWithin(c, 2000);
    const r = responses(c.text(), ['GET']).list[0];
    assert.equal(r.body, 'b GET /1');
    assert.equal(r.headers.connection, 'close');
  });

  it('closes after the response when the client says Connection: close, and ignores what follows', async () => {
    const c = await client(p.port);
    const hits = b.hits;
    c.socket.write(GET('/1', 'Connection: close\r\n') + GET('/2'));
    await closesWithin(c, 2000);
    const r = responses(c.text(), ['GET', 'GET']);
    assert.equal(r.list.length, 1);
    assert.equal(r.list[0].headers.connection, 'close');
    assert.equal(b.hits, hits + 1);
  });

  it('keeps the client connection when the upstream closes its own (Connection is hop-by-hop)', async () => {
    const c = await client(p.port);
    c.socket.write(GET('/close') + GET('/after'));
    await until(() => responses(c.text(), ['GET', 'GET']).list.length === 2, 2000, 'two responses');
    const r = responses(c.text(), ['GET', 'GET']);
    assert.equal(r.list[0].headers.connection, 'keep-alive');
    assert.equal(r.list[1].body, 'b GET /after');
    c.socket.destroy();
  });

  it('answers a request sent with the client\'s FIN (half-close) and then closes', async () => {
    const c = await client(p.port);
    c.socket.end('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello');
    await closesWithin(c, 2000);
    assert.equal(responses(c.text(), ['POST']).list[0].body, 'hello');
  });

  it('forwards a chunked request body whose framing arrives one byte at a time', async () => {
    const c = await client(p.port);
    c.socket.setNoDelay(true);
    const req = 'POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n1\r\n!\r\n0\r\nX-T: 1\r\n\r\n';
    for (const ch of req) { c.socket.write(ch); await sleep(1); }
    await until(() => responses(c.text(), ['POST']).list.length === 1, 2000, 'a response');
    assert.equal(responses(c.text(), ['POST']).list[0].body, 'hello!');
    c.socket.destroy();
  });
});

/** The connections a running proxy's (first) HTTP/1.1 listener holds open. */
function openConnections(p: Proxy): number {
  const listeners = (p.worker as unknown as { listeners: Map<string, { h1?: { connections: Set<unknown> } }> }).listeners;
  return [...listeners.values()][0].h1!.connections.size;
}

describe('HTTP/1.1 server side: timeouts and clients that leave', () => {
  let b: Backend, p: Proxy;
  before(async () => {
    b = await backend('b', routes());
    p = await proxy(simple([b.address], {}, { timeouts: { headers: '300ms', request: '600ms', keepAlive: '300ms' } }));
  });
  after(async () => { await p.close(); await b.close(); });

  it('closes a keep-alive connection left idle for timeouts.keepAlive', async () => {
    const c = await client(p.port);
    c.socket.write(GET('/1'));
    await until(() => responses(c.text(), ['GET']).list.length === 1, 2000, 'a response');
    const t0 = Date.now();
    await closesWithin(c, 1500);
    assert.ok(Date.now() - t0 >= 250, `closed after ${Date.now() - t0} ms`);
    assert.equal(responses(c.text(), ['GET']).rest, '', 'nothing is written on an idle connection that is closed');
  });

  it('answers 408 to a connection that sends no request within timeouts.headers', async () => {
    const c = await client(p.port);
    await closesWithin(c, 1500);
    assert.match(c.text(), /^HTTP\/1\.1 408 /);
  });

  it('answers 408 to a head that trickles in past timeouts.headers', async () => {
    const c = await client(p.port);
    const drip = setInterval(() => { if (!c.isClosed()) c.socket.write('X'); }, 50);
    c.socket.write('GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    try { await closesWithin(c, 1500); } finally { clearInterval(drip); }
    assert.match(c.text(), /^HTTP\/1\.1 408 /);
  });

  it('answers 408 to a client that sends nothing but empty lines', async () => {
    const c = await client(p.port);
    const drip = setInterval(() => { if (!c.isClosed()) c.socket.write('\r\n'); }, 50);
    try { await closesWithin(c, 1500); } finally { clearInterval(drip); }
    assert.match(c.text(), /^HTTP\/1\.1 408 /);
  });

  it('answers 408 to a body that trickles in past timeouts.request, and logs the request with 408', async () => {
    const c = await client(p.port);
    c.socket.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc');
    const drip = setInterval(() => { if (!c.isClosed()) c.socket.write('a'); }, 50);
    try { await closesWithin(c, 2000); } finally { clearInterval(drip); }
    assert.match(c.text(), /^HTTP\/1\.1 408 /);
    await until(() => p.logs.access().some((l) => l.path === '/echo' && l.status === 408), 2000, 'the access line');
  });

  it('logs 499 for a client that half-closes in the middle of its body, and lets go of the connection', async () => {
    const c = await client(p.port);
    c.socket.write('POST /gone-fin HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc');
    await sleep(50);
    c.socket.end();
    await closesWithin(c, 1000);
    await until(() => p.logs.access().some((l) => l.path === '/gone-fin' && l.status === 499), 2000, 'the access line');
    assert.equal(c.text(), '', 'no response is written to a client that left');
    await until(() => openConnections(p) === 0 && p.worker.inFlight === 0, 2000, 'the connection and request to be released');
  });

  it('logs 499 for a client that resets in the middle of its body, and lets go of the connection', async () => {
    const c = await client(p.port);
    c.socket.write('POST /gone-rst HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc');
    await sleep(50);
    c.socket.resetAndDestroy();
    await until(() => p.logs.access().some((l) => l.path === '/gone-rst' && l.status === 499), 2000, 'the access line');
    await until(() => openConnections(p) === 0 && p.worker.inFlight === 0, 2000, 'the connection and request to be released');
  });

  it('answers 400 to a client that half-closes in the middle of a request head', async () => {
    const c = await client(p.port);
    c.socket.end('GET / HTTP/1.1\r\nHost');
    await closesWithin(c, 1000);
    assert.match(c.text(), /^HTTP\/1\.1 400 /);
  });

  it('closes quietly when a client half-closes between requests', async () => {
    const c = await client(p.port);
    c.socket.write(GET('/1'));
    await until(() => responses(c.text(), ['GET']).list.length === 1, 2000, 'a response');
    c.socket.end();
    await closesWithin(c, 500);
    assert.equal(responses(c.text(), ['GET']).rest, '');
  });
});

describe('HTTP/1.1 server side: a client that leaves mid-response', () => {
  for (const when of ['before the response head', 'in the middle of the response body']) {
    it(`aborts the upstream exchange and releases the connection when the client resets ${when}`, async () => {
      let upstreamClosed = false;
      const up = await rawUpstream((s) => {
        s.on('error', () => {});
        s.on('close', () => { upstreamClosed = true; });
        s.resume(); // reading, so that it sees the proxy's end of the connection
        if (when !== 'before the response head') s.once('data', () => s.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nsome'));
      });
      const p = await proxy(simple([up.address]));
      try {
        const c = await client(p.port);
        c.socket.write(GET('/mid'));
        if (when === 'before the response head') await sleep(100);
        else await until(() => c.text().includes('some'), 2000, 'the first body bytes');
        c.socket.resetAndDestroy();
        await until(() => upstreamClosed, 2000, 'the upstream connection to close');
        await until(() => p.logs.access().some((l) => l.path === '/mid' && l.status === 499), 2000, 'the access line');
        await until(() => openConnections(p) === 0 && p.worker.inFlight === 0, 2000, 'the connection and request to be released');
      } finally { await p.close(); up.close(); }
    });
  }
});

describe('HTTP/1.1 server side: Expect', () => {
  let b: Backend, p: Proxy;
  before(async () => {
    b = await backend('b', routes());
    p = await proxy({ ...simple([b.address]), routes: [{ match: { pathPrefix: '/echo' }, pool: 'app' }] });
  });
  after(async () => { await p.close(); await b.close(); });

  it('says 100 Continue to a client that waits for it, then relays the response to its body', async () => {
    const c = await client(p.port);
    c.socket.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
    await until(() => c.text().startsWith('HTTP/1.1 100 Continue\r\n\r\n'), 2000, '100 Continue');
    c.socket.write('hello');
    await until(() => responses(c.text(), ['POST']).list.some((r) => r.status === 200), 2000, 'the response');
    assert.equal(responses(c.text(), ['POST']).list.find((r) => r.status === 200)!.body, 'hello');
    c.socket.destroy();
  });

  it('says 100 Continue once, though the upstream says its own', async () => {
    const c = await client(p.port);
    c.socket.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n');
    await until(() => c.text().includes('100 Continue'), 2000, '100 Continue');
    c.socket.write('hi');
    await until(() => responses(c.text(), ['POST']).list.some((r) => r.status === 200), 2000, 'the response');
    await sleep(50);
    assert.equal(c.text().split('100 Continue').length - 1, 1);
    assert.deepEqual(responses(c.text(), ['POST']).list.map((r) => r.status), [100, 200]);
    c.socket.destroy();
  });

  it('answers a request it refuses without 100 Continue, and closes rather than read the body', async () => {
    const c = await client(p.port);
    c.socket.write('POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
    await closesWithin(c, 2000);
    const r = responses(c.text(), ['POST']);
    assert.deepEqual(r.list.map((x) => x.status), [404]);
    assert.equal(r.list[0].headers.connection, 'close');
  });

  it('answers 417 to an expectation other than 100-continue and never forwards the request', async () => {
    const hits = b.hits;
    const c = await client(p.port);
    c.socket.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 200-ok\r\n\r\nhello');
    await closesWithin(c, 2000);
    assert.match(c.text(), /^HTTP\/1\.1 417 /);
    assert.equal(b.hits, hits);
  });

  it('takes only 100-continue itself as that expectation, not a token that ends in it', async () => {
    const c = await client(p.port);
    c.socket.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: foo-100-continue\r\n\r\nhello');
    await closesWithin(c, 2000);
    assert.match(c.text(), /^HTTP\/1\.1 417 /);
  });

  it('ignores Expect from an HTTP/1.0 client (it cannot read a 100)', async () => {
    const c = await client(p.port);
    c.socket.write('POST /echo HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello');
    await closesWithin(c, 2000);
    const r = responses(c.text(), ['POST']);
    assert.deepEqual(r.list.map((x) => x.status), [200]);
    assert.equal(r.list[0].body, 'hello');
  });
});

/** An upstream that answers an upgrade with 101 after `delayMs`, and records every byte it gets after the request head. */
async function switchingUpstream(delayMs: number): Promise<{ address: string; after(): string; close(): void }> {
  const sockets = new Set<Socket>();
  let seen = '';
  const up = await rawUpstream((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('data', (d: Buffer) => {
      const first = !seen.includes('\r\n\r\n');
      seen += d.toString('latin1');
      if (first && seen.includes('\r\n\r\n')) {
        setTimeout(() => s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'), delayMs);
      }
    });
  });
  return {
    address: up.address,
    after: () => { const i = seen.indexOf('\r\n\r\n'); return i < 0 ? '' : seen.slice(i + 4); },
    close: () => { up.close(); for (const s of sockets) s.destroy(); },
  };
}

const UPGRADE = 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n';

describe('HTTP/1.1 server side: upgrade hand-off', () => {
  it('passes bytes sent in the same read as the upgrade head to the upstream after its 101', async () => {
    const up = await switchingUpstream(100);
    const p = await proxy(simple([up.address]));
    try {
      const c = await client(p.port);
      c.socket.write(Buffer.from(`${UPGRADE}\x81\x00`, 'latin1'));
      await until(() => c.text().startsWith('HTTP/1.1 101 '), 2000, 'the 101');
      await until(() => up.after() === '\x81\x00', 2000, 'the early bytes upstream');
      c.socket.write('more');
      await until(() => up.after() === '\x81\x00more', 2000, 'the later bytes upstream');
      c.socket.destroy();
    } finally { await p.close(); up.close(); }
  });

  it('passes bytes the client sends after the upgrade head but before the 101 to the upstream, in order', async () => {
    const up = await switchingUpstream(300);
    const p = await proxy(simple([up.address]));
    try {
      const c = await client(p.port);
      c.socket.write(UPGRADE);
      await sleep(50);
      c.socket.write('EARLY');
      await until(() => c.text().startsWith('HTTP/1.1 101 '), 2000, 'the 101');
      c.socket.write('LATE');
      await until(() => up.after() === 'EARLYLATE', 2000, `EARLYLATE upstream (got ${JSON.stringify(up.after())})`);
      c.socket.destroy();
    } finally { await p.close(); up.close(); }
  });

  it('passes bytes sent before the 101 of an upgrade pipelined behind a plain request', async () => {
    const b = await backend('b', routes());
    const up = await switchingUpstream(300);
    const p = await proxy({
      accessLog: true,
      routes: [{ match: { pathPrefix: '/ws' }, pool: 'ws' }, { match: { pathPrefix: '/' }, pool: 'app' }],
      pools: { app: { endpoints: [b.address] }, ws: { endpoints: [up.address] } },
    });
    try {
      const c = await client(p.port);
      c.socket.write(`${GET('/first')}${UPGRADE}SAME`);
      await sleep(100);
      c.socket.write('EARLY');
      await until(() => c.text().includes('HTTP/1.1 101 '), 2000, 'the 101');
      c.socket.write('LATE');
      await until(() => up.after() === 'SAMEEARLYLATE', 2000, `SAMEEARLYLATE upstream (got ${JSON.stringify(up.after())})`);
      c.socket.destroy();
    } finally { await p.close(); up.close(); await b.close(); }
  });

  it('hands off an upgrade pipelined behind a plain request, with the bytes that followed its head', async () => {
    const b = await backend('b', routes());
    const up = await switchingUpstream(0);
    const p = await proxy({
      accessLog: true,
      routes: [{ match: { pathPrefix: '/ws' }, pool: 'ws' }, { match: { pathPrefix: '/' }, pool: 'app' }],
      pools: { app: { endpoints: [b.address] }, ws: { endpoints: [up.address] } },
    });
    try {
      const c = await client(p.port);
      c.socket.write(`${GET('/first')}${UPGRADE}frame`);
      await until(() => c.text().includes('HTTP/1.1 101 '), 2000, 'the 101');
      assert.match(c.text(), /^HTTP\/1\.1 200 [^]*b GET \/first/);
      await until(() => up.after() === 'frame', 2000, 'the bytes after the upgrade head');
      c.socket.destroy();
    } finally { await p.close(); up.close(); await b.close(); }
  });
});

describe('HTTP/1.1 server side: an HTTP/1.0 request that asks for an upgrade', () => {
  it('is served as the plain request it is, its Upgrade ignored (RFC 9110 §7.8)', async () => {
    const b = await backend('b', routes());
    const p = await proxy(simple([b.address]));
    try {
      const c = await client(p.port);
      c.socket.write('GET /old HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      await closesWithin(c, 2000);
      const r = responses(c.text(), ['GET']);
      assert.deepEqual(r.list.map((x) => [x.status, x.body]), [[200, 'b GET /old']]);
      assert.equal(b.seen.at(-1)?.headers.upgrade, undefined);
    } finally { await p.close(); await b.close(); }
  });
});

for (const http2 of [false, true]) describe(`HTTP/1.1 server side: TLS listener${http2 ? ' that also offers h2' : ''}`, () => {
  let certs: ReturnType<typeof makeCerts>, b: Backend, p: Proxy;
  before(async () => {
    certs = makeCerts(['a.test']);
    b = await backend('b', routes());
    p = await proxy(simple([b.address]), { tls: { http2, certs: [{ ...certs.files['a.test'], serverNames: ['a.test'] }] } });
  });
  after(async () => { await p.close(); await b.close(); certs.cleanup(); });

  function tlsClient(alpn: string[] | undefined = ['http/1.1']): Promise<Conversation> {
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({ port: p.port, host: '127.0.0.1', servername: 'a.test', rejectUnauthorized: false, ...(alpn ? { ALPNProtocols: alpn } : {}) });
      const chunks: Buffer[] = [];
      let done = false;
      const closed = new Promise<void>((r) => { socket.once('end', () => { done = true; r(); }); socket.once('close', () => { done = true; r(); }); });
      socket.on('data', (d: Buffer) => chunks.push(d));
      socket.once('secureConnect', () => resolve({ socket, text: () => Buffer.concat(chunks).toString('latin1'), closed, isClosed: () => done }));
      socket.once('error', reject);
    });
  }

  it('answers pipelined requests over TLS in order and keeps the connection', async () => {
    const c = await tlsClient();
    c.socket.write(GET('/1') + GET('/2'));
    await until(() => responses(c.text(), ['GET', 'GET']).list.length === 2, 2000, 'two responses');
    assert.deepEqual(responses(c.text(), ['GET', 'GET']).list.map((r) => r.body), ['b GET /1', 'b GET /2']);
    c.socket.write(GET('/3'));
    await until(() => responses(c.text(), ['GET', 'GET', 'GET']).list.length === 3, 2000, 'a third response');
    c.socket.destroy();
  });

  it('answers a request sent with the client\'s TLS half-close, then closes', async () => {
    const c = await tlsClient();
    c.socket.end('POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc');
    await closesWithin(c, 2000);
    assert.equal(responses(c.text(), ['POST']).list[0]?.body, 'abc');
  });

  it('speaks HTTP/1.1 to a client that offers no ALPN', async () => {
    const c = await tlsClient(undefined);
    c.socket.write(GET('/no-alpn'));
    await until(() => responses(c.text(), ['GET']).list.length === 1, 2000, 'a response');
    assert.equal(responses(c.text(), ['GET']).list[0].body, 'b GET /no-alpn');
    c.socket.destroy();
  });

  it('refuses a malformed request over TLS with 400 and closes', async () => {
    const c = await tlsClient();
    c.socket.write('GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab');
    await closesWithin(c, 2000);
    assert.match(c.text(), /^HTTP\/1\.1 400 /);
  });
});

describe('HTTP/1.1 request parser: heads that come in pieces', () => {
  function feed(pieces: Buffer[], maxHead = 16 * 1024) {
    const out = { heads: 0, body: '', ends: 0, taken: [] as number[] };
    const p = new RequestParser({ onHead: () => { out.heads++; }, onBody: (c) => { out.body += c.toString('latin1'); }, onEnd: () => { out.ends++; } }, maxHead);
    for (const c of pieces) out.taken.push(p.execute(c));
    return out;
  }

  it('finds a head end split across two reads at every point, and takes only the head and its body from the second', () => {
    const head = 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n';
    const next = 'GET /2 HTTP/1.1\r\nHost: x\r\n\r\n';
    for (let cut = 1; cut < head.length; cut++) {
      const r = feed([Buffer.from(head.slice(0, cut)), Buffer.from(`${head.slice(cut)}abc${next}`)]);
      assert.equal(r.heads, 1, `cut at ${cut}`);
      assert.equal(r.body, 'abc', `cut at ${cut}`);
      assert.deepEqual(r.taken, [cut, head.length - cut + 3], `cut at ${cut}`);
    }
  });

  it('counts a head in pieces against the limit as a whole: 431 once it is past it', () => {
    const head = `GET / HTTP/1.1\r\nHost: x\r\nX-A: ${'a'.repeat(100)}\r\n\r\n`;
    assert.equal(feed([Buffer.from(head.slice(0, 50)), Buffer.from(head.slice(50))], head.length).heads, 1);
    assert.throws(() => feed([Buffer.from(head.slice(0, 50)), Buffer.from(head.slice(50))], head.length - 1),
      (e: unknown) => e instanceof RequestError && e.status === 431);
  });

  it('refuses a bare LF in a head in pieces as soon as it arrives, even at a seam', () => {
    assert.throws(() => feed([Buffer.from('GET / HTTP/1.1\r\nHost: x'), Buffer.from('\nX: y')]), (e: unknown) => e instanceof RequestError && e.status === 400);
    assert.throws(() => feed([Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n'), Buffer.from('\n')]), (e: unknown) => e instanceof RequestError && e.status === 400);
    assert.equal(feed([Buffer.from('GET / HTTP/1.1\r\nHost: x\r'), Buffer.from('\n\r'), Buffer.from('\n')]).heads, 1);
  });

  it('reads a head sent a byte at a time in time linear in its size (a slow head costs no more CPU than a fast one)', () => {
    // Searching the whole pending head again at each read made a 128 KB head cost seconds.
    const max = 128 * 1024;
    const head = Buffer.from(`GET / HTTP/1.1\r\nHost: x\r\nX-A: ${'a'.repeat(max - 40)}\r\n\r\n`);
    const t0 = performance.now();
    const pieces: Buffer[] = [];
    for (let i = 0; i < head.length; i++) pieces.push(head.subarray(i, i + 1));
    assert.equal(feed(pieces, max).heads, 1);
    const ms = performance.now() - t0;
    assert.ok(ms < 1500, `${ms.toFixed(0)} ms`);
  });
});

describe('HTTP/1.1 server side: interim responses', () => {
  it('relays 103 Early Hints ahead of the response, and the connection stays in step for the next request', async () => {
    const up = await rawUpstream((s) => {
      s.on('error', () => {});
      let seen = '';
      s.on('data', (d: Buffer) => {
        seen += d.toString('latin1');
        while (seen.includes('\r\n\r\n')) {
          const head = seen.slice(0, seen.indexOf('\r\n\r\n'));
          seen = seen.slice(seen.indexOf('\r\n\r\n') + 4);
          if (head.startsWith('GET /hints')) s.write('HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhints');
          else s.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain');
        }
      });
    });
    const p = await proxy(simple([up.address]));
    try {
      const c = await client(p.port);
      c.socket.write(GET('/hints') + GET('/next'));
      await until(() => responses(c.text(), ['GET', 'GET']).list.length === 3, 2000, 'the hint and two responses');
      const r = responses(c.text(), ['GET', 'GET']);
      assert.deepEqual(r.list.map((x) => x.status), [103, 200, 200]);
      assert.equal(r.list[0].headers.link, '</a.css>; rel=preload');
      assert.deepEqual(r.list.slice(1).map((x) => x.body), ['hints', 'plain']);
      assert.equal(r.rest, '');
      c.socket.destroy();
    } finally { await p.close(); up.close(); }
  });

  it('sends an HTTP/1.0 client no 103 (it would take it for the response)', async () => {
    const up = await rawUpstream((s) => {
      s.on('error', () => {});
      s.once('data', () => s.end('HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhints'));
    });
    const p = await proxy(simple([up.address]));
    try {
      const c = await client(p.port);
      c.socket.write('GET /hints HTTP/1.0\r\nHost: x\r\n\r\n');
      await closesWithin(c, 2000);
      assert.deepEqual(responses(c.text(), ['GET']).list.map((x) => [x.status, x.body]), [[200, 'hints']]);
    } finally { await p.close(); up.close(); }
  });
});

describe('HTTP/1.1 server side: request headers', () => {
  it('reads a header named like an Object member (constructor) as the header it is', async () => {
    const b = await backend('b');
    const p = await proxy({ accessLog: true, routes: [{ match: { headers: { constructor: 'a' } }, pool: 'app' }], pools: { app: { endpoints: [b.address] } } });
    try {
      const c = await client(p.port);
      c.socket.write(GET('/c', 'Constructor: a\r\nConnection: close\r\n'));
      await closesWithin(c, 2000);
      assert.deepEqual(responses(c.text(), ['GET']).list.map((x) => x.status), [200]);
    } finally { await p.close(); await b.close(); }
  });
});
