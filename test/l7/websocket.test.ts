import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import type { Duplex } from 'node:stream';
import { proxy, raw, simple, statusOf } from './helpers.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** A minimal RFC 6455 echo server: text frames up to 125 bytes, unmasked replies. */
async function wsEcho(): Promise<{ port: number; close(): void; upgrades: IncomingMessage[] }> {
  const upgrades: IncomingMessage[] = [];
  const s = createServer((_req, res) => { res.writeHead(426); res.end(); });
  s.on('upgrade', (req: IncomingMessage, sock: Duplex) => {
    upgrades.push(req);
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
  return { port: (s.address() as { port: number }).port, close: () => { s.closeAllConnections(); s.close(); }, upgrades };
}

function frame(text: string): Buffer {
  const p = Buffer.from(text);
  const mask = Buffer.from([1, 2, 3, 4]);
  return Buffer.concat([Buffer.from([0x81, 0x80 | p.length]), mask, Buffer.from(p.map((b, i) => b ^ mask[i % 4]))]);
}

function readSome(s: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => { s.once('data', resolve); s.once('error', reject); });
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

  it('answers 404 to an upgrade no route matches', async () => {
    const ws = await wsEcho();
    const p = await proxy({ routes: [{ match: { pathPrefix: '/ws' }, pool: 'w' }], pools: { w: { endpoints: [`127.0.0.1:${ws.port}`] } } });
    try {
      assert.equal(statusOf(await raw(p.port, 'GET /other HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')), 404);
    } finally { await p.close(); ws.close(); }
  });
});
