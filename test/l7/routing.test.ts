import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { backend, get, proxy, raw, type Backend, type Proxy } from './helpers.js';

describe('routing: first matching route wins', () => {
  let api: Backend, web: Backend, wild: Backend, canary: Backend, regex: Backend, writes: Backend, p: Proxy;
  before(async () => {
    [api, web, wild, canary, regex, writes] = await Promise.all(['api', 'web', 'wild', 'canary', 'regex', 'writes'].map((n) => backend(n)));
    p = await proxy({
      routes: [
        { match: { host: 'api.example.com', headers: { 'x-canary': '1' } }, pool: 'canary' },
        { match: { host: 'api.example.com', pathPrefix: '/v1/' }, pool: 'api' },
        { match: { host: '*.example.com' }, pool: 'wild' },
        { match: { pathRegex: '/items/[0-9]+' }, pool: 'regex' },
        { match: { pathPrefix: '/data', method: ['POST', 'PUT'] }, pool: 'writes' },
        { match: { pathPrefix: '/static/' }, pool: 'web' },
      ],
      pools: Object.fromEntries([api, web, wild, canary, regex, writes].map((b) => [b.name, { endpoints: [b.address] }])),
    });
  });
  after(async () => { await p.close(); await Promise.all([api, web, wild, canary, regex, writes].map((b) => b.close())); });

  const via = async (path: string, headers: Record<string, string> = {}, method = 'GET') => {
    const r = await get(p.url + path, { headers, method });
    return r.status === 200 ? String(r.headers['x-backend']) : r.status;
  };

  it('matches an exact host and a path prefix', async () => {
    assert.equal(await via('/v1/users', { host: 'api.example.com' }), 'api');
  });
  it('routes an absolute-form target by its authority, which replaces the Host header (RFC 9112 §3.2.2)', async () => {
    const r = await raw(p.port, 'GET http://api.example.com/v1/users HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n');
    assert.match(r, /^HTTP\/1\.1 200 /);
    assert.match(r, /\r\nx-backend: api\r\n/i);
    const seen = api.seen.at(-1)!;
    assert.equal(seen.url, '/v1/users');
    assert.equal(seen.headers.host, 'api.example.com');
  });
  it('refuses an absolute-form target with userinfo with 400', async () => {
    const r = await raw(p.port, 'GET http://user@api.example.com/v1/users HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n');
    assert.match(r, /^HTTP\/1\.1 400 /);
  });
  it('matches hosts case-insensitively and ignores the port', async () => {
    assert.equal(await via('/v1/users', { host: 'API.Example.com:8443' }), 'api');
  });
  it('prefers an earlier route over a later one that also matches', async () => {
    assert.equal(await via('/v1/users', { host: 'api.example.com', 'x-canary': '1' }), 'canary');
  });
  it('matches a header only on its exact value', async () => {
    assert.equal(await via('/v1/users', { host: 'api.example.com', 'x-canary': '2' }), 'api');
  });
  it('matches any subdomain with a *. wildcard', async () => {
    assert.equal(await via('/', { host: 'shop.example.com' }), 'wild');
    assert.equal(await via('/', { host: 'a.b.example.com' }), 'wild');
  });
  it('does not match the bare domain with a *. wildcard', async () => {
    assert.equal(await via('/', { host: 'example.com' }), 404);
  });
  it('matches a path regex against the whole path, without the query', async () => {
    assert.equal(await via('/items/42?x=1'), 'regex');
    assert.equal(await via('/items/42/more'), 404);
  });
  it('matches methods', async () => {
    assert.equal(await via('/data', {}, 'POST'), 'writes');
    assert.equal(await via('/data', {}, 'GET'), 404);
  });
  it('answers 404 with a short body when no route matches', async () => {
    const r = await get(p.url + '/nothing/here');
    assert.equal(r.status, 404);
    assert.equal(r.body, '404 Not Found\n');
    assert.ok(r.headers['x-request-id']);
  });
  it('sends the path and query to the upstream unchanged', async () => {
    await via('/static/a%20b?q=1&r=2');
    assert.equal(web.seen.at(-1)!.url, '/static/a%20b?q=1&r=2');
  });
});

describe('routing: a default route', () => {
  it('catches what the routes before it do not', async () => {
    const [a, d] = await Promise.all([backend('a'), backend('default')]);
    const p = await proxy({ routes: [{ match: { pathPrefix: '/a/' }, pool: 'a' }, { pool: 'default' }], pools: { a: { endpoints: [a.address] }, default: { endpoints: [d.address] } } });
    try {
      assert.equal((await get(p.url + '/a/x')).headers['x-backend'], 'a');
      assert.equal((await get(p.url + '/elsewhere')).headers['x-backend'], 'default');
    } finally { await p.close(); await a.close(); await d.close(); }
  });
});

describe('routing: dot segments', () => {
  let v1: Backend, admin: Backend, p: Proxy;
  before(async () => {
    [v1, admin] = await Promise.all([backend('v1'), backend('admin')]);
    p = await proxy({
      routes: [{ match: { pathPrefix: '/v1/' }, pool: 'v1' }, { match: { pathPrefix: '/admin' }, pool: 'admin' }],
      pools: { v1: { endpoints: [v1.address] }, admin: { endpoints: [admin.address] } },
    });
  });
  after(async () => { await p.close(); await v1.close(); await admin.close(); });

  it('matches routes on the path with dot segments removed, so /v1/../admin is not a /v1/ request', async () => {
    const r = await raw(p.port, 'GET /v1/../admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.match(r, /\r\nx-backend: admin\r\n/i);
    assert.equal(v1.hits, 0);
  });

  it('reads %2e%2e as .. when routing', async () => {
    const r = await raw(p.port, 'GET /v1/%2e%2e/admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.match(r, /\r\nx-backend: admin\r\n/i);
  });

  it('forwards the path as the client sent it', async () => {
    await raw(p.port, 'GET /v1/./x/../users?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.equal(v1.seen.at(-1)!.url, '/v1/./x/../users?q=1');
  });
});
