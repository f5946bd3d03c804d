import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { describe, it } from 'node:test';
import { backend, proxy, simple } from './helpers.js';

describe('streaming bodies', () => {
  it('delivers the first part of a response before the upstream has finished it', async () => {
    let finish!: () => void;
    const more = new Promise<void>((r) => { finish = r; });
    const b = await backend('b', (_req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.write('first;'); void more.then(() => res.end('second')); });
    const p = await proxy(simple([b.address]));
    try {
      const body = await new Promise<string>((resolve, reject) => {
        request(p.url + '/', { agent: false }, (res) => {
          let text = '';
          res.on('data', (d) => { text += d; if (text === 'first;') finish(); }); // only the first part can unblock the rest
          res.on('end', () => resolve(text));
        }).on('error', reject).end();
      });
      assert.equal(body, 'first;second');
    } finally { finish(); await p.close(); await b.close(); }
  });

  it('delivers the first part of a request body before the client has finished it', async () => {
    let gotFirst!: () => void;
    const first = new Promise<void>((r) => { gotFirst = r; });
    const { createServer } = await import('node:http');
    const up = createServer((req, res) => {
      let text = '';
      req.on('data', (d) => { text += d; if (text === 'part1;') gotFirst(); });
      req.on('end', () => res.end(`got ${text}`));
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', () => r()));
    const p = await proxy(simple([`127.0.0.1:${(up.address() as { port: number }).port}`]));
    try {
      const reply = await new Promise<string>((resolve, reject) => {
        const req = request(p.url + '/', { method: 'POST', agent: false, headers: { 'transfer-encoding': 'chunked' } }, (res) => {
          let t = ''; res.on('data', (d) => { t += d; }); res.on('end', () => resolve(t));
        });
        req.on('error', reject);
        req.write('part1;');
        void first.then(() => req.end('part2')); // the upstream must see part 1 while the client still holds part 2
      });
      assert.equal(reply, 'got part1;part2');
    } finally { await p.close(); up.closeAllConnections(); up.close(); }
  });

  it('carries a large body both ways intact', async () => {
    const { createServer } = await import('node:http');
    const up = createServer((req, res) => { res.writeHead(200, { 'content-type': 'application/octet-stream' }); req.pipe(res); });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', () => r()));
    const p = await proxy(simple([`127.0.0.1:${(up.address() as { port: number }).port}`], {}, { limits: { maxBodySize: '8mb' } }));
    try {
      const data = Buffer.alloc(5 * 1024 * 1024);
      for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i, i);
      const digest = await new Promise<string>((resolve, reject) => {
        const req = request(p.url + '/', { method: 'PUT', agent: false, headers: { 'content-length': data.length } }, (res) => {
          const h = createHash('sha256');
          res.on('data', (d) => h.update(d));
          res.on('end', () => resolve(h.digest('hex')));
        });
        req.on('error', reject);
        req.end(data);
      });
      assert.equal(digest, createHash('sha256').update(data).digest('hex'));
    } finally { await p.close(); up.closeAllConnections(); up.close(); }
  });

  it('carries a large chunked request body intact while the upstream reads it slowly', async () => {
    const { createServer } = await import('node:http');
    // The upstream reads in sips, so the proxy's writes to it hit backpressure mid-chunk.
    const up = createServer((req, res) => {
      const h = createHash('sha256');
      req.on('data', (d: Buffer) => { h.update(d); req.pause(); setTimeout(() => req.resume(), 1); });
      req.on('end', () => res.end(h.digest('hex')));
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', () => r()));
    const p = await proxy(simple([`127.0.0.1:${(up.address() as { port: number }).port}`], {}, { limits: { maxBodySize: '16mb' } }));
    try {
      const data = Buffer.alloc(8 * 1024 * 1024);
      for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i * 2654435761 >>> 0, i);
      const digest = await new Promise<string>((resolve, reject) => {
        const req = request(p.url + '/', { method: 'POST', agent: false, headers: { 'transfer-encoding': 'chunked' } }, (res) => {
          let t = ''; res.on('data', (d) => { t += d; }); res.on('end', () => resolve(t));
        });
        req.on('error', reject);
        for (let off = 0; off < data.length; off += 256 * 1024) req.write(data.subarray(off, off + 256 * 1024));
        req.end();
      });
      assert.equal(digest, createHash('sha256').update(data).digest('hex'));
    } finally { await p.close(); up.closeAllConnections(); up.close(); }
  });

  it('reuses upstream connections across requests (keep-alive)', async () => {
    const ports = new Set<number>();
    const b = await backend('b', (req, res) => { ports.add(req.socket.remotePort!); res.end('x'); });
    const p = await proxy(simple([b.address]));
    try {
      const { get } = await import('./helpers.js');
      for (let i = 0; i < 10; i++) assert.equal((await get(p.url + '/')).status, 200);
      assert.equal(ports.size, 1);
    } finally { await p.close(); await b.close(); }
  });
});

describe('chunked request bodies upstream', () => {
  it('hands each chunk to the socket as one write, its size line and CRLF with it (not three system calls per chunk)', async () => {
    const { createServer, connect } = await import('node:net');
    const { Connection } = await import('../../src/l7/upstream/connection.js');
    const got: Buffer[] = [];
    const server = createServer((s) => s.on('data', (d) => got.push(d)));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const sock = connect((server.address() as { port: number }).port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    const writes: number[] = [];
    // Count what the stream hands down to the handle: one entry per write(2)/writev(2).
    const s = sock as unknown as { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };
    const w = s._write.bind(sock), wv = s._writev.bind(sock);
    s._write = (...a: unknown[]) => { writes.push(1); w(...a); };
    s._writev = (chunks: unknown, cb: unknown) => { writes.push((chunks as unknown[]).length); wv(chunks, cb); };
    const conn = new Connection(sock, { release() {}, closed() {}, timeoutMs: 1000, idleTimeoutMs: 1000 });
    try {
      for (const ch of ['a', 'bc', 'def']) conn.writeChunk(Buffer.from(ch));
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(writes, [3, 3, 3]);
      assert.equal(Buffer.concat(got).toString(), '1\r\na\r\n2\r\nbc\r\n3\r\ndef\r\n');
    } finally { conn.destroy(); server.close(); }
  });
});
