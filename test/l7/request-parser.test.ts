/**
 * The client request parser, fed by hand: what it must refuse (each a way to smuggle a request
 * past a proxy that reads it differently from the upstream) and what it must take.
 * The same cases through a running listener are in limits.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RequestError, RequestParser, type RequestHead } from '../../src/l7/http1/parser.js';
import { prng } from './helpers.js';

function parse(chunks: Array<string | Buffer>, maxHead = 16 * 1024) {
  const out = { heads: [] as RequestHead[], body: '', ends: 0, taken: [] as number[] };
  const p = new RequestParser({ onHead: (h) => { out.heads.push(h); }, onBody: (c) => { out.body += c.toString('latin1'); }, onEnd: () => { out.ends++; } }, maxHead);
  for (const c of chunks) out.taken.push(p.execute(typeof c === 'string' ? Buffer.from(c, 'latin1') : c));
  return out;
}

function refused(req: string, status: number, code?: RegExp) {
  assert.throws(() => parse([req]), (e: unknown) => {
    assert.ok(e instanceof RequestError, String(e));
    assert.equal(e.status, status, e.message);
    if (code) assert.match(e.code, code);
    return true;
  });
}

const bytes = (s: string) => [...s]; // one byte per read

describe('client request parser', () => {
  it('reads a request head and its Content-Length body', () => {
    const r = parse(['POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-A:  b \r\n\r\nhello']);
    assert.equal(r.heads[0].method, 'POST');
    assert.equal(r.heads[0].url, '/a?b=1');
    assert.deepEqual(r.heads[0].rawHeaders, ['Host', 'x', 'Content-Length', '5', 'X-A', 'b']);
    assert.equal(r.body, 'hello');
    assert.equal(r.ends, 1);
  });

  it('reads a chunked body delivered one byte at a time, extensions and trailers dropped', () => {
    const r = parse(bytes('POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext="a b"\r\nhello\r\n6\r\n world\r\n0\r\nX-T: t\r\n\r\n'));
    assert.equal(r.body, 'hello world');
    assert.equal(r.ends, 1);
  });

  it('stops at the end of a request and leaves a pipelined one unread', () => {
    const first = 'GET /1 HTTP/1.1\r\nHost: x\r\n\r\n';
    const r = parse([`${first}GET /2 HTTP/1.1\r\nHost: x\r\n\r\n`]);
    assert.equal(r.heads.length, 1);
    assert.deepEqual(r.taken, [first.length]);
  });

  it('skips empty lines before a request line', () => {
    assert.equal(parse(['\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n']).heads[0].method, 'GET');
  });

  it('tells keep-alive by version and Connection', () => {
    assert.equal(parse(['GET / HTTP/1.1\r\nHost: x\r\n\r\n']).heads[0].keepAlive, true);
    assert.equal(parse(['GET / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n']).heads[0].keepAlive, false);
    assert.equal(parse(['GET / HTTP/1.0\r\n\r\n']).heads[0].keepAlive, false);
    assert.equal(parse(['GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n']).heads[0].keepAlive, true);
  });

  it('marks an upgrade only when Connection names it, and leaves its bytes unread', () => {
    const head = 'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n';
    const r = parse([`${head}\x81\x00`]);
    assert.equal(r.heads[0].upgrade, true);
    assert.deepEqual(r.taken, [head.length]);
    assert.equal(parse(['GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n']).heads[0].upgrade, false);
  });

  it('refuses Content-Length beside Transfer-Encoding', () => refused('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n', 400));
  it('refuses a second Content-Length, even an equal one', () => refused('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc', 400));
  it('refuses a Content-Length that is not digits alone', () => {
    for (const v of ['3, 3', '+3', '0x3', '3 3', '-1', '']) refused(`POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ${v}\r\n\r\n`, 400);
  });
  it('refuses a Transfer-Encoding whose last coding is not chunked', () => {
    for (const v of ['gzip', 'chunked, gzip', 'xchunked', 'chunked\r\nTransfer-Encoding: gzip']) refused(`POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ${v}\r\n\r\n`, 400);
  });
  it('refuses bare LF line ends, even before the head is complete', () => {
    refused('GET / HTTP/1.1\nHost: x\n\n', 400);
    refused('GET / HTTP/1.1\r\nHost: x\n\r\n\r\n', 400);
  });
  it('refuses a bare CR inside a header value', () => refused('GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n', 400));
  it('refuses obs-fold (a line that continues the one before)', () => refused('GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n', 400));
  it('refuses whitespace between a header name and its colon', () => refused('POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc', 400));
  it('refuses control bytes in a header value', () => refused('GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n', 400));
  it('refuses a request line with extra spaces or a bad method', () => {
    refused('GET  / HTTP/1.1\r\nHost: x\r\n\r\n', 400);
    refused('G(T / HTTP/1.1\r\nHost: x\r\n\r\n', 400);
    refused('GET /a b HTTP/1.1\r\nHost: x\r\n\r\n', 400);
  });
  it('answers HTTP versions of another major (0.9, 2.0) with 505', () => {
    for (const v of ['0.9', '2.0', '3.0']) refused(`GET / HTTP/${v}\r\nHost: x\r\n\r\n`, 505);
    refused('GET / HTTP/1.10\r\nHost: x\r\n\r\n', 400);
  });

  it('reads a later HTTP/1 minor version as 1.1 (RFC 9110 §2.5)', () => {
    const h = parse(['GET / HTTP/1.2\r\nHost: x\r\n\r\n']).heads[0];
    assert.equal(h.minor, 1);
    assert.equal(h.keepAlive, true);
    refused('GET / HTTP/1.9\r\n\r\n', 400); // as 1.1: Host is required
  });
  it('refuses HTTP/1.1 without Host, and takes HTTP/1.0 without one', () => {
    refused('GET / HTTP/1.1\r\n\r\n', 400);
    assert.equal(parse(['GET / HTTP/1.0\r\n\r\n']).heads.length, 1);
  });
  it('refuses chunk sizes with whitespace, signs or no digits', () => {
    for (const line of ['5 ', ' 5', '+5', '', 'g', '5 ;a', '1234567890abc']) refused(`POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${line}\r\nhello\r\n0\r\n\r\n`, 400);
  });
  it('bounds trailers as it bounds the head: a long line within the limit is taken, a section past it gets 431', () => {
    const head = 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n';
    assert.equal(parse([`${head}X-T: ${'t'.repeat(5000)}\r\n\r\n`], 16384).ends, 1);
    assert.throws(() => parse([`${head}X-T: ${'t'.repeat(20000)}\r\n\r\n`], 16384), (e: unknown) => e instanceof RequestError && e.status === 431);
    assert.throws(() => parse([`${head}${'X-T: t\r\n'.repeat(3000)}\r\n`], 16384), (e: unknown) => e instanceof RequestError && e.status === 431);
  });

  it('refuses chunk data not followed by CRLF', () => refused('POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcde\r\n0\r\n\r\n', 400));
  it('refuses a bare LF in chunked framing', () => refused('POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n', 400));
  it('answers a head over the limit with 431, before it is complete', () => {
    assert.throws(() => parse([`GET / HTTP/1.1\r\nHost: x\r\nX-A: ${'a'.repeat(200)}`], 128), (e: unknown) => e instanceof RequestError && e.status === 431);
    assert.throws(() => parse([`GET / HTTP/1.1\r\nHost: x\r\nX-A: ${'a'.repeat(200)}\r\n\r\n`], 128), (e: unknown) => e instanceof RequestError && e.status === 431);
  });
});

/** What a parse came to: its heads, body, ends and bytes taken, or the refusal's status. */
function outcome(input: Buffer, pieces: number[]): string {
  const heads: string[] = [];
  let body = '';
  let ends = 0;
  const p = new RequestParser({ onHead: (h) => { heads.push(`${h.method} ${h.url} ${h.minor} ${h.rawHeaders.join('|')} ${h.keepAlive} ${h.upgrade} ${h.contentLength} ${h.transferEncoding}`); }, onBody: (c) => { body += c.toString('latin1'); }, onEnd: () => { ends++; } }, 1024);
  let taken = 0;
  try {
    let off = 0;
    for (const n of [...pieces, input.length]) {
      const piece = input.subarray(off, Math.min(input.length, off + n));
      off += piece.length;
      const t = p.execute(piece);
      taken += t;
      if (t < piece.length) break; // a message ended: the rest is the next one's
      if (off >= input.length) break;
    }
  } catch (e) {
    if (!(e instanceof RequestError)) throw e;
    return `refused ${e.status} after ${heads.length} heads`;
  }
  return JSON.stringify({ heads, body, ends, taken });
}

const SEEDS = [
  'GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nUser-Agent: x\r\nAccept: */*\r\n\r\n',
  'POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world',
  'PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nT: v\r\n\r\n',
  'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n',
  'GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello',
];
const NOISE = ['\r', '\n', '\r\n', ' ', '\t', ':', ';', '\x00', '\x7f', '\xff', 'chunked', 'Content-Length: 3\r\n', 'Transfer-Encoding: chunked\r\n', '0\r\n\r\n', 'Host: b\r\n', ','];

describe('client request parser, fuzzed', () => {
  it('comes to the same outcome however the bytes are split, and refuses only with a RequestError', () => {
    const rnd = prng(20261201);
    let refused = 0;
    for (let i = 0; i < 3000; i++) {
      let s = SEEDS[Math.floor(rnd() * SEEDS.length)];
      for (let m = Math.floor(rnd() * 4); m > 0; m--) {
        const at = Math.floor(rnd() * (s.length + 1));
        const r = rnd();
        if (r < 0.4) s = s.slice(0, at) + NOISE[Math.floor(rnd() * NOISE.length)] + s.slice(at);
        else if (r < 0.7) s = s.slice(0, at) + s.slice(at + 1 + Math.floor(rnd() * 3));
        else s = s.slice(0, at) + s.slice(at, at + 8) + s.slice(at); // a repeated run
      }
      const input = Buffer.from(s, 'latin1');
      const whole = outcome(input, []);
      const bytes = outcome(input, Array.from({ length: input.length }, () => 1));
      const cuts = outcome(input, Array.from({ length: 8 }, () => 1 + Math.floor(rnd() * 12)));
      assert.equal(bytes, whole, `split byte by byte: ${JSON.stringify(s)}`);
      assert.equal(cuts, whole, `split at random: ${JSON.stringify(s)}`);
      if (whole.startsWith('refused')) refused++;
    }
    // The mutations must reach both sides, or this test says nothing.
    assert.ok(refused > 300 && refused < 2700, `${refused} of 3000 refused`);
  });
});
