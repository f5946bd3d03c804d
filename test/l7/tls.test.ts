import assert from 'node:assert/strict';
import { connect as h2connect } from 'node:http2';
import { request } from 'node:https';
import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { backend, makeCerts, proxy, sleep, type Backend, type Proxy } from './helpers.js';
import { certWarnings } from '../../src/l7/tls.js';

describe('TLS termination with SNI, HTTP/2 by ALPN', () => {
  let certs: ReturnType<typeof makeCerts>, a: Backend, b: Backend, p: Proxy;
  before(async () => {
    certs = makeCerts(['a.test', 'b.test', 'wild.test']);
    [a, b] = await Promise.all([backend('a'), backend('b')]);
    p = await proxy({
      routes: [{ match: { host: 'a.test' }, pool: 'a' }, { match: { host: 'b.test' }, pool: 'b' }],
      pools: { a: { endpoints: [a.address] }, b: { endpoints: [b.address] } },
    }, { tls: { certs: [
      { ...certs.files['a.test'], serverNames: ['a.test'] },
      { ...certs.files['b.test'], serverNames: ['b.test'] },
      { ...certs.files['wild.test'], serverNames: ['*.wild.test'] },
    ] } });
  });
  after(async () => { await p.close(); await a.close(); await b.close(); certs.cleanup(); });

  const peerCert = (servername?: string) => new Promise<PeerCertificate & { alpn: string | false }>((resolve, reject) => {
    const s = tlsConnect({ port: p.port, host: '127.0.0.1', servername, rejectUnauthorized: false, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
      const c = s.getPeerCertificate();
      resolve(Object.assign(c, { alpn: s.alpnProtocol ?? false }));
      s.destroy();
    });
    s.on('error', reject);
  });

  it('presents the certificate of the name the client asks for', async () => {
    assert.equal((await peerCert('a.test')).subject.CN, 'a.test');
    assert.equal((await peerCert('b.test')).subject.CN, 'b.test');
  });

  it('matches a *. server name', async () => {
    assert.equal((await peerCert('x.wild.test')).subject.CN, 'wild.test');
  });

  it('falls back to the first certificate for an unknown or missing name', async () => {
    assert.equal((await peerCert('other.test')).subject.CN, 'a.test');
    assert.equal((await peerCert()).subject.CN, 'a.test');
  });

  it('offers HTTP/2 by ALPN', async () => {
    assert.equal((await peerCert('a.test')).alpn, 'h2');
  });

  it('serves HTTP/2 requests, routed by :authority, with X-Forwarded-Proto https', async () => {
    const client = h2connect(`https://127.0.0.1:${p.port}`, { servername: 'b.test', rejectUnauthorized: false });
    try {
      const res = await new Promise<{ status: number; body: string; backendName: string }>((resolve, reject) => {
        const req = client.request({ ':path': '/h2', ':authority': 'b.test' });
        let body = '', status = 0, backendName = '';
        req.on('response', (h) => { status = Number(h[':status']); backendName = String(h['x-backend']); });
        req.on('data', (d) => { body += d; });
        req.on('end', () => resolve({ status, body, backendName }));
        req.on('error', reject);
        req.end();
      });
      assert.deepEqual(res, { status: 200, body: 'b /h2', backendName: 'b' });
      const seen = b.seen.at(-1)!;
      assert.equal(seen.headers.host, 'b.test');
      assert.equal(seen.headers['x-forwarded-proto'], 'https');
      assert.equal(seen.headers.via, '2 sluice');
    } finally { client.close(); }
  });

  it('sends an HTTP/2 POST that ends with its headers upstream with Content-Length: 0', async () => {
    const client = h2connect(`https://127.0.0.1:${p.port}`, { servername: 'b.test', rejectUnauthorized: false });
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const req = client.request({ ':method': 'POST', ':path': '/empty-post', ':authority': 'b.test' }, { endStream: true });
        let st = 0;
        req.on('response', (h) => { st = Number(h[':status']); });
        req.on('end', () => resolve(st));
        req.on('error', reject);
        req.resume();
      });
      assert.equal(status, 200);
      const seen = b.seen.at(-1)!;
      assert.equal(seen.url, '/empty-post');
      assert.equal(seen.headers['content-length'], '0');
      assert.equal(seen.headers['transfer-encoding'], undefined);
    } finally { client.close(); }
  });

  it('relays to an HTTP/2 client a 204 whose upstream wrongly declared a Content-Length', async () => {
    const { createServer } = await import('node:net');
    const up = createServer((s) => s.on('data', () => s.write('HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\n')));
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', () => r()));
    const q = await proxy({ routes: [{ pool: 'up' }], pools: { up: { endpoints: [`127.0.0.1:${(up.address() as { port: number }).port}`] } } },
      { tls: { certs: [{ ...certs.files['a.test'], serverNames: ['a.test'] }] } });
    const client = h2connect(`https://127.0.0.1:${q.port}`, { rejectUnauthorized: false });
    try {
      const res = await new Promise<{ status: number; length: unknown }>((resolve, reject) => {
        const req = client.request({ ':path': '/' });
        req.on('response', (h) => { req.resume(); req.on('end', () => resolve({ status: Number(h[':status']), length: h['content-length'] })); });
        req.on('error', reject);
      });
      assert.deepEqual(res, { status: 204, length: undefined });
    } finally { client.close(); await q.close(); up.close(); }
  });

  it('carries an HTTP/2 request body upstream', async () => {
    const client = h2connect(`https://127.0.0.1:${p.port}`, { servername: 'a.test', rejectUnauthorized: false });
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const req = client.request({ ':path': '/post', ':method': 'POST', ':authority': 'a.test' });
        req.on('response', (h) => resolve(Number(h[':status'])));
        req.on('error', reject);
        req.end('payload');
      });
      assert.equal(status, 200);
      assert.equal(a.seen.at(-1)!.body, 'payload');
    } finally { client.close(); }
  });

  it('logs an HTTP/2 request whose body does not match its content-length as 400, not as a client that left (499)', async () => {
    const client = h2connect(`https://127.0.0.1:${p.port}`, { servername: 'a.test', rejectUnauthorized: false });
    client.on('error', () => {});
    try {
      const rst = await new Promise<number>((resolve) => {
        const req = client.request({ ':path': '/cl-mismatch', ':method': 'POST', ':authority': 'a.test', 'content-length': '10' });
        req.on('error', () => {});
        req.on('close', () => resolve(req.rstCode));
        req.end('short');
      });
      assert.equal(rst, 1); // nghttp2 resets the stream: PROTOCOL_ERROR
      let line: Record<string, unknown> | undefined;
      for (let i = 0; i < 100 && !line; i++) { line = p.logs.access().find((l) => l.path === '/cl-mismatch'); if (!line) await sleep(20); }
      assert.equal(line?.status, 400);
    } finally { client.close(); }
  });

  it('joins HTTP/2 cookie crumbs into one Cookie header upstream', async () => {
    const client = h2connect(`https://127.0.0.1:${p.port}`, { servername: 'b.test', rejectUnauthorized: false });
    try {
      await new Promise<void>((resolve, reject) => {
        const req = client.request({ ':path': '/crumbs', ':authority': 'b.test', cookie: ['a=1', 'b=2', 'c=3'] });
        req.on('response', () => undefined);
        req.resume();
        req.on('end', () => resolve());
        req.on('error', reject);
        req.end();
      });
      const seen = b.seen.at(-1)!;
      const lines = seen.raw.filter((_, i) => i % 2 === 0 && seen.raw[i].toLowerCase() === 'cookie');
      assert.equal(lines.length, 1);
      assert.equal(seen.headers.cookie, 'a=1; b=2; c=3');
    } finally { client.close(); }
  });

  it('does not count HTTP/2 pseudo-headers against limits.maxHeaders', async () => {
    const small = await proxy({ routes: [{ pool: 'a' }], pools: { a: { endpoints: [a.address] } }, limits: { maxHeaders: 6 } },
      { tls: { certs: [{ ...certs.files['a.test'], serverNames: ['a.test'] }] } });
    const client = h2connect(`https://127.0.0.1:${small.port}`, { servername: 'a.test', rejectUnauthorized: false });
    try {
      const status = (headers: Record<string, string>) => new Promise<number>((resolve, reject) => {
        const req = client.request({ ':path': '/', ':authority': 'a.test', ...headers });
        req.on('response', (h) => resolve(Number(h[':status'])));
        req.resume();
        req.on('error', reject);
        req.end();
      });
      const six = Object.fromEntries([0, 1, 2, 3, 4, 5].map((i) => [`x-h${i}`, 'v']));
      assert.equal(await status(six), 200); // six headers plus four pseudo-headers
      assert.equal(await status({ ...six, 'x-h6': 'v' }), 431);
    } finally { client.close(); await small.close(); }
  });

  it('still serves HTTP/1.1 over TLS to clients without h2', async () => {
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      request({ host: '127.0.0.1', port: p.port, path: '/one', servername: 'a.test', headers: { host: 'a.test' }, rejectUnauthorized: false, agent: false }, (res) => {
        let body = ''; res.on('data', (d) => { body += d; }); res.on('end', () => resolve({ status: res.statusCode!, body }));
      }).on('error', reject).end();
    });
    assert.deepEqual(r, { status: 200, body: 'a /one' });
  });

  it('swaps certificates on reload without closing the listener', async () => {
    const next = makeCerts(['a.test']);
    try {
      const before = (await peerCert('a.test')).fingerprint256;
      const cfg = JSON.parse(JSON.stringify(p.worker.runtime.config));
      cfg.listeners[0].tls.certs[0] = { ...next.files['a.test'], serverNames: ['a.test'] };
      await p.worker.reload(cfg);
      const afterFp = (await peerCert('a.test')).fingerprint256;
      assert.notEqual(afterFp, before);
    } finally { next.cleanup(); }
  });
});

describe('slow heads on TLS listeners', () => {
  for (const http2 of [true, false]) {
    it(`answers an HTTP/1.1 client that sends its head too slowly with 408 (http2: ${http2})`, async () => {
      const certs = makeCerts(['a.test']);
      const b = await backend('b');
      const p = await proxy({ routes: [{ pool: 'b' }], pools: { b: { endpoints: [b.address] } }, timeouts: { headers: '500ms' } },
        { tls: { http2, certs: [{ ...certs.files['a.test'], serverNames: ['a.test'] }] } });
      try {
        const started = Date.now();
        const first = await new Promise<string>((resolve) => {
          const s = tlsConnect({ port: p.port, host: '127.0.0.1', servername: 'a.test', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
            s.write('GET / HTTP/1.1\r\nHost: a.test\r\n');
            const drip = setInterval(() => s.write('X-Slow: 1\r\n'), 100);
            let out = '';
            s.on('data', (d) => { out += d; });
            s.on('close', () => { clearInterval(drip); resolve(out.split('\r\n')[0]); });
            setTimeout(() => s.destroy(), 4000);
          });
          s.on('error', () => {});
        });
        assert.equal(first, 'HTTP/1.1 408 Request Timeout');
        assert.ok(Date.now() - started < 3000);
      } finally { await p.close(); await b.close(); certs.cleanup(); }
    });
  }
});

describe('HTTP/2 stream limit', () => {
  /** SETTINGS_MAX_CONCURRENT_STREAMS as a client of a TLS listener with these limits hears it. */
  async function advertised(limits: Record<string, unknown>): Promise<number | undefined> {
    const certs = makeCerts(['a.test']);
    const b = await backend('b');
    const p = await proxy({ routes: [{ pool: 'b' }], pools: { b: { endpoints: [b.address] } }, limits },
      { tls: { certs: [{ ...certs.files['a.test'], serverNames: ['a.test'] }] } });
    const client = h2connect(`https://127.0.0.1:${p.port}`, { servername: 'a.test', rejectUnauthorized: false });
    try {
      const settings = await new Promise<import('node:http2').Settings>((resolve) => client.once('remoteSettings', resolve));
      return settings.maxConcurrentStreams;
    } finally { client.close(); await p.close(); await b.close(); certs.cleanup(); }
  }

  it('advertises 100 concurrent streams by default (Node alone would allow 2^32-1)', async () => {
    assert.equal(await advertised({}), 100);
  });

  it('advertises a configured limits.maxConcurrentStreams', async () => {
    assert.equal(await advertised({ maxConcurrentStreams: 7 }), 7);
  });
});

describe('certificates clients would refuse', () => {
  it('are named at load: expired, or not covering a configured serverName', () => {
    const certs = makeCerts(['a.test']);
    try {
      const spec = [{ ...certs.files['a.test'], serverNames: ['a.test', 'b.test', '*.a.test'] }];
      const now = certWarnings(spec);
      assert.equal(now.length, 2, now.join('\n'));
      assert.match(now[0], /does not cover serverName b\.test/);
      assert.match(now[1], /does not cover serverName \*\.a\.test/);
      const later = certWarnings([{ ...certs.files['a.test'], serverNames: ['a.test'] }], new Date(Date.now() + 3 * 86_400_000));
      assert.equal(later.length, 1);
      assert.match(later[0], /tls\.certs\[0\] .*a\.test\.crt: expired on /);
    } finally { certs.cleanup(); }
  });
});
