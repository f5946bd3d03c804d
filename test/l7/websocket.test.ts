import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import type { Duplex } from 'node:stream';
import { proxy, raw, rawUpstream, simple, statusOf, tricklingUpstream } from './helpers.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** A minimal RFC 6455 echo server: text frames up to 125 bytes, unmasked replies. */
async function wsEcho(): Promise<{ port: number; close(): void; upgrades: IncomingMessage[]; sockets: Duplex[] }> {
  const upgrades: IncomingMessage[] = [];
  const sockets: Duplex[] = [];
  const s = createServer((_req, res) => { res.writeHead(426); res.end(); });
  s.on('upgrade', (req: IncomingMessage, sock: Duplex) => {
    upgrades.push(req);
    sockets.push(sock);
    if (req.headers.upgrade !== 'websocket') { sock.end('HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'); return; }
    const accept = createHash('sha1').update(String(req.headers['sec-websocket-key']) + GUID).digest('base64');
    sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    sock.on('data', (f: Buffer) => {
      const len = f[1] & 0x7f;
      const mask = f.subarray(2, 6);
      const payload = Buffer.from(f.subarray(6, 6 + len).map((b, i) => b ^ mask[i % 4]));
      sock.write(Buffer.concat([Buffer.from([0x81, payload.length]), payload]));
    });
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return { port: (s.address() as { port: number }).port, close: () => { s.closeAllConnections(); s.close(); for (const k of sockets) k.destroy(); }, upgrades, sockets };
}

/** An upstream that speaks h2c: it switches whenever asked, and records the plain requests it serves. */
async function h2cUpstream(): Promise<{ port: number; close(): void; switched: number; plain: Array<{ headers: IncomingMessage['headers']; body: string }> }> {
  const u = { port: 0, switched: 0, plain: [] as Array<{ headers: IncomingMessage['headers']; body: string }>, close: () => {} };
  const s = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => { body += d.toString('latin1'); });
    req.on('end', () => { u.plain.push({ headers: req.headers, body }); res.end('plain'); });
  });
  s.on('upgrade', (_req: IncomingMessage, sock: Duplex) => { u.switched++; sock.end('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n'); });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  u.port = (s.address() as { port: number }).port;
  u.close = () => { s.closeAllConnections(); s.close(); };
  return u;
}

function frame(text: string): Buffer {
  const p = Buffer.from(text);
  const mask = Buffer.from([1, 2, 3, 4]);
  return Buffer.concat([Buffer.from([0x81, 0x80 | p.length]), mask, Buffer.from(p.map((b, i) => b ^ mask[i % 4]))]);
}

function readSome(s: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => { s.once('data', resolve); s.once('error', reject); });
}

/** An upstream that refuses every upgrade with a keep-alive 400 and records whatever else arrives on that connection. */
async function refusingKeepAlive(): Promise<{ port: number; close(): void; upgrades: number; after: string[] }> {
  const u = { port: 0, upgrades: 0, after: [] as string[], close: () => {} };
  const sockets: Duplex[] = [];
  const s = createServer((_req, res) => { res.end('plain'); });
  s.on('upgrade', (_req: IncomingMessage, sock: Duplex, head: Buffer) => {
    u.upgrades++;
    sockets.push(sock);
    if (head.length) u.after.push(head.toString('latin1'));
    sock.on('data', (d: Buffer) => { u.after.push(d.toString('latin1')); sock.write('HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret'); });
    sock.write('HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\nno');
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  u.port = (s.address() as { port: number }).port;
  u.close = () => { s.closeAllConnections(); s.close(); for (const k of sockets) k.destroy(); };
  return u;
}

describe('WebSocket upgrades', () => {
  it('tunnels a WebSocket handshake and echoes frames both ways', async () => {
    const ws = await wsEcho();
    const p = await proxy(simple([`127.0.0.1:${ws.port}`]));
    const s = connect(p.port, '127.0.0.1');
    try {
      await new Promise((r) => s.once('connect', r));
      const key = Buffer.from('0123456789abcdef').toString('base64');
      s.write(`GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      const head = (await readSome(s)).toString('latin1');
      assert.equal(statusOf(head), 101);
      assert.match(head, new RegExp(`Sec-WebSocket-Accept: ${createHash('sha1').update(key + GUID).digest('base64').replace(/[+/]/g, '\\$&')}`));
      for (const msg of ['hello', 'again']) {
        s.write(frame(msg));
        const f = await readSome(s);
        assert.equal(f.subarray(2).toString(), msg);
      }
      const up = ws.upgrades[0];
      assert.equal(up.headers.upgrade, 'websocket');
      assert.equal(up.headers['x-forwarded-for'], '127.0.0.1');
    } finally { s.destroy(); await p.close(); ws.close(); }
  });

  it('passes a refused upgrade through as a plain response', async () => {
    const ws = await wsEcho();
    const p = await proxy(simple([`127.0.0.1:${ws.port}`]));
    try {
      const r = await raw(p.port, 'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n', 1000);
      assert.equal(statusOf(r), 426);
    } finally { await p.close(); ws.close(); }
  });

  it('closes a tunnel within timeouts.keepAlive of its client closing its half, though the upstream keeps its own open', async () => {
    const ws = await wsEcho(); // a node:http upgrade socket: it does not close when it gets a FIN
    const p = await proxy(simple([`127.0.0.1:${ws.port}`], {}, { timeouts: { keepAlive: '300ms' } }));
    const s = connect(p.port, '127.0.0.1');
    try {
      await new Promise((r) => s.once('connect', r));
      s.write(`GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${Buffer.from('0123456789abcdef').toString('base64')}\r\n\r\n`);
      await readSome(s);
      const closed = new Promise<number>((resolve) => s.once('close', () => resolve(Date.now())));
      const t = Date.now();
      s.end();
      const took = (await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(0), 3000))])) - t;
      assert.ok(took > 0 && took < 2000, `tunnel ${took > 0 ? `closed after ${took}ms` : 'still open after 3s'}`);
      for (let i = 0; i < 20 && p.worker.tunnels.size > 0; i++) await new Promise((r) => setTimeout(r, 25));
      assert.equal(p.worker.tunnels.size, 0);
    } finally { s.destroy(); await p.close(); ws.close(); }
  });

  it('writes an access line for an upgrade when its tunnel closes', async () => {
    const ws = await wsEcho();
    const p = await proxy(simple([`127.0.0.1:${ws.port}`], {}, { timeouts: { keepAlive: '300ms' } }));
    const s = connect(p.port, '127.0.0.1');
    try {
      await new Promise((r) => s.once('connect', r));
      s.write(`GET /chat?room=1 HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${Buffer.from('0123456789abcdef').toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      await readSome(s);
      s.write(frame('hello'));
      await readSome(s);
      assert.equal(p.logs.access().length, 0, 'no line while the tunnel is open');
      s.destroy();
      for (let i = 0; i < 80 && p.logs.access().length === 0; i++) await new Promise((r) => setTimeout(r, 25));
      const [line] = p.logs.access();
      assert.equal(line.status, 101);
      assert.equal(line.method, 'GET');
      assert.equal(line.host, 'ws.test');
      assert.equal(line.path, '/chat');
      assert.equal(line.upgrade, 'websocket');
      assert.equal(line.upstream, `127.0.0.1:${ws.port}`);
      assert.ok(Number(line.bytes) > 0);
      assert.match(String(line.id), /^[0-9a-f-]{36}$/);
    } finally { s.destroy(); await p.close(); ws.close(); }
  });

  it('refuses an upgrade with more headers than limits.maxHeaders with 431', async () => {
    const ws = await wsEcho();
    const p = await proxy(simple([`127.0.0.1:${ws.port}`], {}, { limits: { maxHeaders: 5 } }));
    try {
      const extra = [0, 1, 2, 3].map((i) => `X-H${i}: v\r\n`).join('');
      assert.equal(statusOf(await raw(p.port, `GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${extra}\r\n`)), 431);
      assert.equal(ws.upgrades.length, 0);
    } finally { await p.close(); ws.close(); }
  });

  it('refuses an upgrade with two Host headers with 400', async () => {
    const ws = await wsEcho();
    const p = await proxy(simple([`127.0.0.1:${ws.port}`]));
    try {
      assert.equal(statusOf(await raw(p.port, 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')), 400);
      assert.equal(ws.upgrades.length, 0);
    } finally { await p.close(); ws.close(); }
  });

  it('refuses an upgrade whose request target has a #fragment with 400', async () => {
    const ws = await wsEcho();
    const p = await proxy(simple([`127.0.0.1:${ws.port}`]));
    try {
      assert.equal(statusOf(await raw(p.port, 'GET /chat#x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')), 400);
      assert.equal(ws.upgrades.length, 0);
    } finally { await p.close(); ws.close(); }
  });

  it('closes the connection after relaying a refused upgrade, so the client cannot talk to that upstream unrouted', async () => {
    const up = await refusingKeepAlive();
    const p = await proxy({ routes: [{ match: { pathPrefix: '/ws' }, pool: 'w' }], pools: { w: { endpoints: [`127.0.0.1:${up.port}`] } } });
    const s = connect(p.port, '127.0.0.1');
    try {
      let out = '';
      s.on('data', (d: Buffer) => { out += d.toString('latin1'); });
      const closed = new Promise<boolean>((r) => { s.once('close', () => r(true)); setTimeout(() => r(false), 2000); });
      s.write('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      await new Promise((r) => setTimeout(r, 200));
      if (!s.destroyed) s.write('GET /admin HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n');
      assert.ok(await closed, 'the client connection is closed after the refusal');
      assert.equal(out, 'HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\nno');
      assert.deepEqual(up.after, []);
    } finally { s.destroy(); await p.close(); up.close(); }
  });

  it('holds bytes sent right after an upgrade request until the upstream has switched protocols', async () => {
    const up = await refusingKeepAlive();
    const p = await proxy({ routes: [{ match: { pathPrefix: '/ws' }, pool: 'w' }], pools: { w: { endpoints: [`127.0.0.1:${up.port}`] } } });
    try {
      const r = await raw(p.port, 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(statusOf(r), 400);
      assert.equal(up.upgrades, 1);
      assert.deepEqual(up.after, []);
    } finally { await p.close(); up.close(); }
  });

  it('never asks an upstream for h2c: the request is served as plain HTTP/1.1, so no HTTP/2 streams reach the upstream unrouted', async () => {
    const up = await h2cUpstream();
    const p = await proxy(simple([`127.0.0.1:${up.port}`]));
    try {
      const r = await raw(p.port, 'GET /x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n');
      assert.equal(statusOf(r), 200);
      assert.match(r, /\r\n\r\nplain$/);
      assert.equal(up.switched, 0);
      assert.equal(up.plain.length, 1);
      assert.equal(up.plain[0].headers.upgrade, undefined);
      assert.equal(up.plain[0].headers['http2-settings'], undefined);
    } finally { await p.close(); up.close(); }
  });

  it('sends the body of an h2c request served as plain HTTP/1.1, exactly its Content-Length and nothing after it', async () => {
    const up = await h2cUpstream();
    const p = await proxy(simple([`127.0.0.1:${up.port}`]));
    try {
      const r = await raw(p.port, 'POST /x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 5\r\n\r\nhelloGET /admin HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(statusOf(r), 200);
      assert.equal(up.switched, 0);
      assert.deepEqual(up.plain.map((q) => q.body), ['hello']);
    } finally { await p.close(); up.close(); }
  });

  it('answers 502 to an upgrade whose upstream answers with no HTTP response, rather than relay its bytes', async () => {
    const up = await rawUpstream((s) => { s.on('error', () => {}); s.once('data', () => s.write('SSH-2.0-OpenSSH_9.2\r\n\r\n')); });
    const p = await proxy(simple([up.address]));
    try {
      const r = await raw(p.port, 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      assert.equal(statusOf(r), 502);
      assert.doesNotMatch(r, /SSH/);
    } finally { await p.close(); up.close(); }
  });

  it('answers 504 at the pool timeout to an upgrade whose upstream trickles its answer and never ends it', async () => {
    const up = await tricklingUpstream('HTTP/1.1 101 Switching Protocols\r\n', 'X-Still: coming\r\n', 30);
    const p = await proxy(simple([up.address], { timeout: '300ms' }));
    try {
      const started = Date.now();
      const r = await raw(p.port, 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n', 2000);
      assert.equal(statusOf(r), 504);
      assert.ok(Date.now() - started < 1500, `took ${Date.now() - started} ms`);
    } finally { await p.close(); up.close(); }
  });

  it('answers 502 to a 101 that switches to a protocol the client did not ask for', async () => {
    const up = await rawUpstream((s) => { s.on('error', () => {}); s.once('data', () => s.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n')); });
    const p = await proxy(simple([up.address]));
    try {
      const r = await raw(p.port, 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      assert.equal(statusOf(r), 502);
    } finally { await p.close(); up.close(); }
  });

  it('answers 404 to an upgrade no route matches', async () => {
    const ws = await wsEcho();
    const p = await proxy({ routes: [{ match: { pathPrefix: '/ws' }, pool: 'w' }], pools: { w: { endpoints: [`127.0.0.1:${ws.port}`] } } });
    try {
      assert.equal(statusOf(await raw(p.port, 'GET /other HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')), 404);
    } finally { await p.close(); ws.close(); }
  });
});
