import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateL7 } from '../../src/l7/config.js';
import { ValidationError } from '../../src/model/errors.js';

const minimal = { listeners: [{ port: 80 }], routes: [{ pool: 'web' }], pools: { web: { endpoints: ['10.0.0.1:8080'] } } };

function issues(doc: unknown): string[] {
  try { validateL7(doc); } catch (e) { assert.ok(e instanceof ValidationError); return e.issues.map((i) => `${i.path}: ${i.message}`); }
  assert.fail('expected a ValidationError');
}

describe('l7 config', () => {
  it('accepts the DESIGN §3 example', () => {
    const c = validateL7({
      listeners: [{ address: '10.99.100.1', port: 80, workers: 2 }],
      routes: [{ match: { host: 'api.example.com', pathPrefix: '/v1/' }, pool: 'api' }, { match: { pathPrefix: '/' }, pool: 'web' }],
      pools: {
        api: { balance: 'least-request', endpoints: ['10.99.1.21:8080', '10.99.1.22:8080'], health: { path: '/healthz', interval: '2s' }, retries: 2, timeout: '5s' },
        web: { balance: 'round-robin', sticky: { cookie: 'SLUICE_WEB' }, endpoints: ['10.99.1.31:8080'] },
      },
    });
    assert.equal(c.workers, 2);
    assert.equal(c.pools.api.balance, 'least-request');
    assert.equal(c.pools.api.health?.intervalMs, 2000);
    assert.equal(c.pools.api.timeoutMs, 5000);
    assert.deepEqual(c.pools.web.sticky, { cookie: 'SLUICE_WEB' });
    assert.equal(c.routes[0].match.host, 'api.example.com');
  });

  it('fills a default for every field left out', () => {
    const c = validateL7(minimal);
    assert.deepEqual(c.listeners, [{ address: '0.0.0.0', port: 80 }]);
    assert.deepEqual(c.timeouts, { headersMs: 10_000, requestMs: 60_000, keepAliveMs: 5_000, drainMs: 30_000, sendMs: 60_000 });
    assert.deepEqual(c.limits, { maxHeaderBytes: 16_384, maxHeaders: 100, maxBodyBytes: 10 * 1024 * 1024, maxConcurrentStreams: 100 });
    assert.deepEqual(c.retryBudget, { ratio: 0.2, minRetries: 10 });
    assert.equal(c.accessLog, true);
    assert.equal(c.requestIdHeader, 'x-request-id');
    assert.equal(c.via, 'sluice');
    assert.deepEqual(c.trustedProxies, []);
    assert.equal(c.metrics, undefined);
    const p = c.pools.web;
    assert.equal(p.balance, 'round-robin');
    assert.equal(p.retries, 1);
    assert.deepEqual(p.retryOn, ['conn-failure', 'empty-response', '502', '503']);
    assert.equal(p.timeoutMs, 30_000);
    assert.equal(p.connectTimeoutMs, 2_000);
    assert.equal(p.idleTimeoutMs, 4_000);
    assert.deepEqual(p.ejection, { consecutiveFailures: 5, baseMs: 5_000, maxMs: 300_000, maxPercent: 50 });
    assert.deepEqual(p.endpoints, [{ host: '10.0.0.1', port: 8080, weight: 1 }]);
    assert.equal(p.health, undefined);
  });

  it('gives health checks the documented defaults (1s, 500ms, rise 2, fall 2)', () => {
    const c = validateL7({ ...minimal, pools: { web: { endpoints: ['10.0.0.1:80'], health: {} } } });
    assert.deepEqual(c.pools.web.health, { path: '/healthz', intervalMs: 1000, timeoutMs: 500, rise: 2, fall: 2 });
  });

  it('keeps the zone of an IPv6 link-local endpoint or listener, which sockets need', () => {
    const c = validateL7({ ...minimal, listeners: [{ address: 'FE80::1%eth0', port: 80 }], pools: { web: { endpoints: ['[fe80::0:2%eth1]:8080'] } } });
    assert.equal(c.listeners[0].address, 'fe80::1%eth0');
    assert.deepEqual(c.pools.web.endpoints[0], { host: 'fe80::2%eth1', port: 8080, weight: 1 });
    assert.deepEqual(issues({ ...minimal, pools: { web: { endpoints: ['[10.0.0.1%eth0]:80'] } } }), ['l7.pools.web.endpoints[0]: must be host:port like 10.0.0.1:8080 or [2001:db8::1]:8080']);
  });

  it('names the path of a bad endpoint', () => {
    assert.deepEqual(issues({ ...minimal, pools: { api: { endpoints: ['10.0.0.1:80', 'nope'] } }, routes: [{ pool: 'api' }] }),
      ['l7.pools.api.endpoints[1]: must be host:port like 10.0.0.1:8080 or [2001:db8::1]:8080']);
  });

  it('lists every issue at once', () => {
    const found = issues({
      listeners: [{ port: 70000 }], routes: [{ match: { pathRegex: '(' }, pool: 'missing' }],
      pools: { web: { balance: 'random', endpoints: [] } }, timeouts: { headers: 'soon' }, bogus: 1,
    });
    assert.ok(found.includes('l7.listeners[0].port: must be an integer 0..65535'), found.join('\n'));
    assert.ok(found.some((i) => i.startsWith('l7.routes[0].match.pathRegex: is not a valid regular expression')));
    assert.ok(found.includes('l7.routes[0].pool: no pool named missing'));
    assert.ok(found.includes('l7.pools.web.balance: must be one of round-robin, least-request, ring-hash'));
    assert.ok(found.includes('l7.pools.web.endpoints: needs at least one endpoint'));
    assert.ok(found.includes('l7.timeouts.headers: must be a duration like 500ms, 2s or 1m'));
    assert.ok(found.some((i) => i.startsWith('l7.bogus: unknown field')));
  });

  it('refuses a duplicate endpoint and a duplicate listener', () => {
    const found = issues({ listeners: [{ port: 80 }, { port: 80 }], routes: [{ pool: 'w' }], pools: { w: { endpoints: ['a.internal:80', 'a.internal:80'] } } });
    assert.deepEqual(found, ['l7.listeners[1]: duplicate listener 0.0.0.0:80', 'l7.pools.w.endpoints[1]: duplicate endpoint a.internal:80']);
  });

  it('reads weighted endpoints, IPv6 endpoints and sizes', () => {
    const c = validateL7({ ...minimal, limits: { maxBodySize: '1mb', maxHeaderSize: '8kb' }, pools: { web: { endpoints: [{ address: '[2001:db8::1]:80', weight: 3 }] } } });
    assert.deepEqual(c.pools.web.endpoints, [{ host: '2001:db8::1', port: 80, weight: 3 }]);
    assert.equal(c.limits.maxBodyBytes, 1024 * 1024);
    assert.equal(c.limits.maxHeaderBytes, 8192);
  });

  it('reads ring-hash keys and refuses them on other balancers', () => {
    const c = validateL7({ ...minimal, pools: { web: { balance: 'ring-hash', hashOn: { cookie: 'sid' }, endpoints: ['10.0.0.1:80'] } } });
    assert.deepEqual(c.pools.web.hashOn, { cookie: 'sid' });
    assert.deepEqual(issues({ ...minimal, pools: { web: { hashOn: { header: 'x-user' }, endpoints: ['10.0.0.1:80'] } } }),
      ['l7.pools.web.hashOn: applies only to balance: ring-hash']);
  });

  it('requires certificates on a TLS listener', () => {
    assert.deepEqual(issues({ ...minimal, listeners: [{ port: 443, tls: { certs: [] } }] }),
      ['l7.listeners[0].tls.certs: needs at least one certificate (the first is the default)']);
  });

  it('reads trusted proxies as CIDRs and refuses garbage', () => {
    assert.deepEqual(validateL7({ ...minimal, trustedProxies: ['10.0.0.0/8', '::1'] }).trustedProxies, ['10.0.0.0/8', '::1/128']);
    assert.deepEqual(issues({ ...minimal, trustedProxies: ['10.0.0.0/33'] }), ['l7.trustedProxies[0]: must be an address or CIDR like 10.0.0.0/8']);
  });

  it('reads the metrics address', () => {
    assert.deepEqual(validateL7({ ...minimal, metrics: '127.0.0.1:9102' }).metrics, { address: '127.0.0.1', port: 9102 });
    assert.deepEqual(issues({ ...minimal, metrics: 'localhost' }), ['l7.metrics: must be ADDRESS:PORT like 127.0.0.1:9102']);
  });

  it('refuses a route host with a port, naming its path (hosts are matched without one)', () => {
    assert.deepEqual(issues({ ...minimal, routes: [{ match: { host: 'api.example.com:8443' }, pool: 'web' }] }),
      ['l7.routes[0].match.host: must be a host name or *.domain without a port (requests are matched on the name alone)']);
  });

  it('reads retryOn as conditions and status codes, and refuses others by path', () => {
    const c = validateL7({ ...minimal, pools: { web: { endpoints: ['10.0.0.1:80'], retryOn: ['conn-failure', 'response-timeout', 504] } } });
    assert.deepEqual(c.pools.web.retryOn, ['conn-failure', 'response-timeout', '504']);
    assert.deepEqual(validateL7({ ...minimal, pools: { web: { endpoints: ['10.0.0.1:80'], retryOn: [] } } }).pools.web.retryOn, []);
    assert.deepEqual(issues({ ...minimal, pools: { web: { endpoints: ['10.0.0.1:80'], retryOn: ['conn-failure', 404] } } }),
      ['l7.pools.web.retryOn[1]: must be one of conn-failure, empty-response, response-timeout, 500, 502, 503, 504']);
  });

  it('reads ejection.maxPercent, 0..100', () => {
    assert.equal(validateL7({ ...minimal, pools: { web: { endpoints: ['10.0.0.1:80'], ejection: { maxPercent: 100 } } } }).pools.web.ejection.maxPercent, 100);
    assert.deepEqual(issues({ ...minimal, pools: { web: { endpoints: ['10.0.0.1:80'], ejection: { maxPercent: 101 } } } }),
      ['l7.pools.web.ejection.maxPercent: must be an integer 0..100']);
  });

  it('refuses a route to a pool that does not exist even when its name is an Object member (toString, constructor)', () => {
    assert.deepEqual(issues({ ...minimal, routes: [{ pool: 'toString' }, { pool: 'constructor' }] }),
      ['l7.routes[0].pool: no pool named toString', 'l7.routes[1].pool: no pool named constructor']);
  });

  it('keeps a pool named __proto__ as a pool like any other', () => {
    const c = validateL7(JSON.parse('{"listeners":[{"port":80}],"routes":[{"pool":"__proto__"}],"pools":{"__proto__":{"endpoints":["10.0.0.1:8080"]}}}'));
    assert.deepEqual(Object.keys(c.pools), ['__proto__']);
    assert.deepEqual(c.pools['__proto__'].endpoints, [{ host: '10.0.0.1', port: 8080, weight: 1 }]);
  });

  it('refuses two routes with one name, given or default, naming both', () => {
    assert.deepEqual(issues({ ...minimal, routes: [{ name: 'a', pool: 'web' }, { name: 'a', pool: 'web' }, { name: '3-web', pool: 'web' }, { pool: 'web' }] }),
      ['l7.routes[1].name: duplicate route name a (l7.routes[0] has it)', 'l7.routes[3]: duplicate route name 3-web (l7.routes[2] has it)']);
  });

  it('reads a route host written with a trailing dot (example.com.) as the name requests are matched on', () => {
    const c = validateL7({ ...minimal, routes: [{ match: { host: 'Example.COM.' }, pool: 'web' }, { match: { host: '*.example.com.' }, pool: 'web' }] });
    assert.deepEqual(c.routes.map((r) => r.match.host), ['example.com', '*.example.com']);
  });

  it('refuses a requestIdHeader that names a header sluice manages itself (host, content-length, …)', () => {
    for (const name of ['Host', 'content-length', 'x-forwarded-for']) {
      assert.deepEqual(issues({ ...minimal, requestIdHeader: name }).map((i) => i.split(' (')[0]),
        ['l7.requestIdHeader: must not be a header sluice manages itself']);
    }
  });

  it('refuses listeners on one port whose addresses overlap (0.0.0.0 and an IPv4 address, :: and any), naming both', () => {
    assert.deepEqual(issues({ ...minimal, listeners: [{ address: '0.0.0.0', port: 80 }, { address: '127.0.0.1', port: 80 }, { address: '::1', port: 80 }, { address: '::', port: 81 }, { address: '10.0.0.1', port: 81 }] }), [
      'l7.listeners[1]: 127.0.0.1:80 overlaps l7.listeners[0] (0.0.0.0:80): both cannot be bound',
      'l7.listeners[4]: 10.0.0.1:81 overlaps l7.listeners[3] ([::]:81): both cannot be bound',
    ]);
  });

  it('refuses a metrics address where a listener is bound', () => {
    assert.deepEqual(issues({ ...minimal, listeners: [{ address: '0.0.0.0', port: 9102 }], metrics: '127.0.0.1:9102' }),
      ['l7.metrics: 127.0.0.1:9102 is also where l7.listeners[0] (0.0.0.0:9102) is bound']);
  });

  it('reads a TLS server name written with a trailing dot as the name SNI sends, without it', () => {
    const c = validateL7({ ...minimal, listeners: [{ port: 443, tls: { certs: [{ cert: '/a.crt', key: '/a.key', serverNames: ['Example.com.', '*.example.com.'] }] } }] });
    assert.deepEqual(c.listeners[0].tls?.certs[0].serverNames, ['example.com', '*.example.com']);
  });

  it('refuses an empty method list, which would match no request', () => {
    assert.deepEqual(issues({ ...minimal, routes: [{ match: { method: [] }, pool: 'web' }] }),
      ['l7.routes[0].match.method: needs at least one method (an empty list would match no request)']);
  });

  it('refuses a document that is not a mapping', () => {
    assert.deepEqual(issues(['x']), ['l7: must be a mapping with listeners, routes and pools']);
  });
});
