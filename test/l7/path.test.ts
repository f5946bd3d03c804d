/** The path routes are matched on: dot segments removed (RFC 3986 §5.2.4), %2e read as a dot, nothing else decoded. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { originForm, pathOf, routingPath } from '../../src/l7/path.js';

describe('routing path', () => {
  it('leaves a path without dot segments as it is', () => {
    for (const p of ['/', '/a/b', '/static/app.min.js', '/a//b/', '/%20x', '/a.b/.well-known', '*']) assert.equal(routingPath(p), p);
  });

  it('removes . and .. segments as RFC 3986 §5.2.4 does', () => {
    const cases: Array<[string, string]> = [
      ['/v1/../admin', '/admin'], ['/a/b/c/./../../g', '/a/g'], ['/a/./b', '/a/b'], ['/a/..', '/'], ['/a/.', '/a/'],
      ['/a/b/..', '/a/'], ['/../x', '/x'], ['/./', '/'], ['/a/../../..', '/'], ['/mid/content=5/../6', '/mid/6'],
    ];
    for (const [input, out] of cases) assert.equal(routingPath(input), out, input);
  });

  it('reads a %2e-encoded dot as a dot, in either case', () => {
    assert.equal(routingPath('/v1/%2e%2e/admin'), '/admin');
    assert.equal(routingPath('/v1/.%2E/admin'), '/admin');
    assert.equal(routingPath('/v1/%2E/x'), '/v1/x');
  });

  it('does not decode anything else: %2f stays inside its segment', () => {
    assert.equal(routingPath('/v1/..%2fadmin'), '/v1/..%2fadmin');
    assert.equal(routingPath('/v1/%2e%2e%2fadmin'), '/v1/%2e%2e%2fadmin');
  });

  it('takes the origin form of an absolute-form target and drops the query', () => {
    assert.equal(originForm('http://example.com/a/b?q=1'), '/a/b?q=1');
    assert.equal(originForm('http://example.com'), '/');
    assert.equal(pathOf('/a/../b?x=/../y'), '/a/../b');
  });
});
