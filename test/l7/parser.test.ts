/** The upstream response parser, fed by hand: the framing cases a proxy must get exactly right. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ParseError, ResponseParser, type ResponseHead } from '../../src/l7/upstream/parser.js';

function parse(chunks: Array<string | Buffer>, opts: { bodyless?: boolean; eof?: boolean } = {}) {
  const out = { head: undefined as ResponseHead | undefined, body: '', ends: [] as boolean[] };
  const p = new ResponseParser({ onHead: (h) => { out.head = h; }, onBody: (c) => { out.body += c.toString('latin1'); }, onEnd: (k) => { out.ends.push(k); } });
  p.reset(opts.bodyless ?? false);
  for (const c of chunks) p.execute(typeof c === 'string' ? Buffer.from(c, 'latin1') : c);
  if (opts.eof) p.eof();
  return out;
}

const bytes = (s: string) => [...s].map((ch) => ch); // one byte per read

describe('upstream response parser', () => {
  it('reads a Content-Length body and keeps the connection', () => {
    const r = parse(['HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello']);
    assert.equal(r.head?.status, 200);
    assert.equal(r.head?.reason, 'OK');
    assert.deepEqual(r.head?.headers, ['Content-Length', '5', 'X-A', 'b']);
    assert.equal(r.body, 'hello');
    assert.deepEqual(r.ends, [true]);
  });

  it('reads a chunked body delivered one byte at a time', () => {
    const r = parse(bytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n'));
    assert.equal(r.body, 'hello world');
    assert.deepEqual(r.ends, [true]);
  });

  it('skips 100 Continue and reads the final response', () => {
    const r = parse(['HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok']);
    assert.equal(r.head?.status, 201);
    assert.equal(r.body, 'ok');
  });

  it('ends a body without framing at EOF and never reuses that connection', () => {
    const r = parse(['HTTP/1.1 200 OK\r\n\r\nuntil ', 'close'], { eof: true });
    assert.equal(r.body, 'until close');
    assert.deepEqual(r.ends, [false]);
  });

  it('has no body for HEAD, 204 and 304 whatever the headers say', () => {
    assert.deepEqual(parse(['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n'], { bodyless: true }).ends, [true]);
    assert.deepEqual(parse(['HTTP/1.1 204 No Content\r\n\r\n']).ends, [true]);
    assert.deepEqual(parse(['HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n']).ends, [true]);
  });

  it('does not reuse a connection whose 204 declared a body, or whose 204 or 304 said chunked: the body may still come', () => {
    assert.deepEqual(parse(['HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n']).ends, [false]);
    assert.deepEqual(parse(['HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n']).ends, [false]);
    assert.deepEqual(parse(['HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n']).ends, [false]);
    assert.deepEqual(parse(['HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n']).ends, [true]);
  });

  it('does not reuse a connection that said Connection: close, or spoke HTTP/1.0', () => {
    assert.deepEqual(parse(['HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n']).ends, [false]);
    assert.deepEqual(parse(['HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n']).ends, [false]);
  });

  it('does not reuse a connection with bytes past the end of the response', () => {
    assert.deepEqual(parse(['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA']).ends, [false]);
  });

  it('reads a response framed both ways as chunked and does not reuse the connection', () => {
    const r = parse(['HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n']);
    assert.equal(r.body, 'ok');
    assert.deepEqual(r.ends, [false]);
  });

  it('drops the Content-Length of a response framed both ways from the head it relays', () => {
    const r = parse(['HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n']);
    assert.deepEqual(r.head?.headers, ['X-A', '1', 'Transfer-Encoding', 'chunked']);
  });

  it('refuses a 101 Switching Protocols: these connections never ask for an upgrade', () => {
    assert.throws(() => parse(['HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\nhello']), ParseError);
  });

  it('keeps one of several equal Content-Length headers', () => {
    const r = parse(['HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\ncontent-length: 2\r\n\r\nok']);
    assert.deepEqual(r.head?.headers, ['Content-Length', '2', 'X-A', '1']);
    assert.equal(r.body, 'ok');
  });

  it('refuses a head ended by bare LFs as soon as it is complete, rather than wait for a CRLFCRLF that never comes', () => {
    assert.throws(() => parse(['HTTP/1.1 200 OK\nContent-Length: 2\n\nok']), /bare LF/);
    assert.throws(() => parse(['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\nok']), /bare LF/);
  });

  it('refuses conflicting Content-Length headers', () => {
    assert.throws(() => parse(['HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n']), ParseError);
  });

  it('refuses a bad status line, obsolete line folding and a bad chunk size', () => {
    assert.throws(() => parse(['HTTP/2 200 OK\r\n\r\n']), ParseError);
    assert.throws(() => parse(['HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\n\r\n']), ParseError);
    assert.throws(() => parse(['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n']), ParseError);
  });

  it('refuses transfer codings other than one chunked (the coding would be lost on the way to the client)', () => {
    assert.throws(() => parse(['HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n']), /transfer coding not supported: gzip, chunked/);
    assert.throws(() => parse(['HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx']), ParseError);
    assert.throws(() => parse(['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n']), ParseError);
    assert.equal(parse(['HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n']).body, 'ok');
  });

  it('refuses a head larger than 64 KiB', () => {
    assert.throws(() => parse([`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(70_000)}`]), ParseError);
  });
});
