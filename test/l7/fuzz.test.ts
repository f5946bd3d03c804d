/**
 * Malformed requests against a running worker, from a fixed seed: each is answered with a status
 * line or a close, never a crash, and the worker serves a plain request afterwards. The parser's
 * own fuzz (whole against split input) is in request-parser.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backend, get, prng, proxy, raw, simple } from './helpers.js';

const SEEDS = [
  'GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n',
  'POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello',
  'PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
];
const NOISE = ['\r', '\n', ' ', '\t', ':', '\x00', '\xff', 'Content-Length: 3\r\n', 'Transfer-Encoding: chunked\r\n', 'Expect: 100-continue\r\n', 'Host: b\r\n', '0\r\n\r\n', ' HTTP/2.0'];

describe('malformed requests against a running worker', () => {
  it('answers each with a status line or a close, and keeps serving', async () => {
    const b = await backend('b');
    const p = await proxy(simple([b.address], { retries: 0 }, { timeouts: { headers: '300ms', request: '600ms' } }));
    const rnd = prng(7);
    try {
      const cases: string[] = [];
      for (let i = 0; i < 200; i++) {
        let s = SEEDS[Math.floor(rnd() * SEEDS.length)];
        for (let m = 1 + Math.floor(rnd() * 3); m > 0; m--) {
          const at = Math.floor(rnd() * (s.length + 1));
          s = rnd() < 0.6 ? s.slice(0, at) + NOISE[Math.floor(rnd() * NOISE.length)] + s.slice(at) : s.slice(0, at) + s.slice(at + 1 + Math.floor(rnd() * 4));
        }
        cases.push(s);
      }
      let answered = 0;
      for (let i = 0; i < cases.length; i += 20) {
        const replies = await Promise.all(cases.slice(i, i + 20).map((c) => raw(p.port, Buffer.from(c, 'latin1'), 1000)));
        replies.forEach((r, j) => {
          if (r === '') return; // closed (or held for a body that never came) without a reply
          assert.match(r, /^HTTP\/1\.1 [1-5]\d\d /, `reply to ${JSON.stringify(cases[i + j])}: ${JSON.stringify(r.slice(0, 60))}`);
          answered++;
        });
      }
      assert.ok(answered > 150, `only ${answered} of 200 got a status line`);
      assert.equal((await get(p.url + '/after')).status, 200);
    } finally { await p.close(); await b.close(); }
  });
});
