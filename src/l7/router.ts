/**
 * Routes compiled from config: each request goes to the first route whose every condition
 * holds (host, path prefix or regex, method, headers); none → 404.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { HeaderMatch, RouteSpec } from './config.js';

export interface RequestFacts {
  method: string;
  /** Lower case, no port, no trailing dot. */
  host: string;
  /** Without the query string. */
  path: string;
  headers: IncomingHttpHeaders;
}

type Test = (r: RequestFacts) => boolean;

export interface CompiledRoute<P> {
  spec: RouteSpec;
  pool: P;
  test: Test;
}

function hostTest(host: string): Test {
  if (host.startsWith('*.')) {
    const suffix = host.slice(1); // ".example.com": any name under it, not the bare domain
    return (r) => r.host.length > suffix.length && r.host.endsWith(suffix);
  }
  return (r) => r.host === host;
}

function headerTest(name: string, is: HeaderMatch): Test {
  const value = (r: RequestFacts) => { const v = r.headers[name]; return Array.isArray(v) ? v.join(', ') : v; };
  if ('exact' in is) return (r) => value(r) === is.exact;
  if ('regex' in is) { const re = new RegExp(is.regex); return (r) => { const v = value(r); return v !== undefined && re.test(v); }; }
  return (r) => (value(r) !== undefined) === is.present;
}

function compile(spec: RouteSpec): Test {
  const tests: Test[] = [];
  const m = spec.match;
  if (m.host !== undefined) tests.push(hostTest(m.host));
  if (m.methods) { const set = new Set(m.methods); tests.push((r) => set.has(r.method)); }
  if (m.pathPrefix !== undefined && m.pathPrefix !== '/') { const p = m.pathPrefix; tests.push((r) => r.path.startsWith(p)); }
  if (m.pathRegex !== undefined) { const re = new RegExp(`^(?:${m.pathRegex})$`); tests.push((r) => re.test(r.path)); }
  for (const h of m.headers) tests.push(headerTest(h.name, h.is));
  if (tests.length === 0) return () => true;
  if (tests.length === 1) return tests[0];
  return (r) => { for (const t of tests) if (!t(r)) return false; return true; };
}

export class Router<P> {
  private readonly routes: CompiledRoute<P>[];
  constructor(specs: RouteSpec[], poolOf: (name: string) => P) {
    this.routes = specs.map((spec) => ({ spec, pool: poolOf(spec.pool), test: compile(spec) }));
  }
  match(r: RequestFacts): CompiledRoute<P> | undefined {
    for (const route of this.routes) if (route.test(r)) return route;
    return undefined;
  }
}

/** `Example.COM:8080` → `example.com`; `[::1]:80` → `[::1]`. */
export function normalizeHost(h: string | undefined): string {
  if (!h) return '';
  let s = h;
  if (s.startsWith('[')) { const e = s.indexOf(']'); s = e > 0 ? s.slice(0, e + 1) : s; }
  else { const c = s.indexOf(':'); if (c >= 0) s = s.slice(0, c); }
  if (s.endsWith('.')) s = s.slice(0, -1);
  return s.toLowerCase();
}

