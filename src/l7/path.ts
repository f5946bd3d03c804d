/**
 * The path routes are matched on: the request target in origin form, without its query, with
 * dot segments removed (RFC 3986 §5.2.4) so `/v1/../admin` is matched as the `/admin` an
 * upstream will serve. `.` spelled `%2e` counts as a dot (it is unreserved, RFC 3986 §6.2.2.2);
 * nothing else is decoded, so `%2f` stays inside its segment. The upstream still gets the
 * target exactly as the client sent it.
 */

/**
 * A fragment is never part of a request target (RFC 9112 §3.2), though the request parser lets one
 * through: routes would see `/admin#x` where an upstream that drops it serves `/admin`.
 */
export function hasFragment(url: string): boolean {
  return url.includes('#');
}

/** `http://host/p?q` (absolute form, as sent to proxies) → `/p?q`: upstreams expect origin form. */
export function originForm(url: string): string {
  if (url.startsWith('/') || url === '*') return url;
  const scheme = url.indexOf('://');
  if (scheme < 0) return '/';
  const slash = url.indexOf('/', scheme + 3);
  return slash < 0 ? '/' : url.slice(slash);
}

/**
 * The authority of an absolute-form target (`http://host:8080/p` → `host:8080`), which RFC 9112
 * §3.2.2 says replaces the Host header; undefined for origin form (and for userinfo@, refused).
 */
export function targetAuthority(url: string): string | undefined {
  if (url.startsWith('/') || url === '*') return undefined;
  const scheme = url.indexOf('://');
  if (scheme < 0) return undefined;
  const end = url.slice(scheme + 3).search(/[/?#]/);
  const auth = end < 0 ? url.slice(scheme + 3) : url.slice(scheme + 3, scheme + 3 + end);
  return auth === '' ? undefined : auth;
}

/**
 * uri-host [":" port] (RFC 9110 §7.2): an IP literal or a reg-name, which has no `@`, `/`, `#`,
 * space or second `:`. Routes would otherwise match one name in `a.example.com:80@evil.com`
 * (a.example.com) and an upstream's URL parser read another (evil.com). Linear: no nested
 * quantifiers for a client's input to make slow.
 */
const HOST = /^(?:\[[0-9A-Za-z:.%]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?$/;

/**
 * A request to refuse with 400 before routing: two Host lines (Node keeps the first, an upstream
 * might take the other: RFC 9112 §3.2), a fragment, a `host` (the absolute-form authority, else
 * Host, else none as HTTP/1.0 may send) that names no one host (RFC 9112 §3.2: userinfo, `#`, a
 * space), or `*` as the target of anything but OPTIONS (RFC 9112 §3.2.4; Node takes `GET *`).
 */
export function ambiguousTarget(hostLines: number, target: string, host: string | undefined, method: string): boolean {
  return hostLines > 1 || hasFragment(target) || (host !== undefined && !HOST.test(host)) || (target === '*' && method !== 'OPTIONS');
}

/** The path of an origin-form target: no query string. */
export function pathOf(target: string): string {
  const q = target.indexOf('?');
  return q < 0 ? target : target.slice(0, q);
}

/** `/a/./b/../c` → `/a/c`. Takes a path without its query (pathOf). */
export function routingPath(path: string): string {
  // Every dot segment starts right after a slash: most paths are settled by these two scans.
  if (path.indexOf('/.') < 0 && path.indexOf('/%') < 0) return path;
  return removeDotSegments(path);
}

/** '.' or '..' for a dot segment (plain or %2e-encoded), else undefined. */
function dots(seg: string): '.' | '..' | undefined {
  if (seg.length === 0 || seg.length > 6) return undefined;
  const s = seg.length > 2 ? seg.replace(/%2e/gi, '.') : seg;
  return s === '.' ? '.' : s === '..' ? '..' : undefined;
}

export function removeDotSegments(path: string): string {
  const segs = path.split('/');
  const out: string[] = [];
  const last = segs.length - 1;
  for (let i = 1; i <= last; i++) {
    const d = dots(segs[i]);
    if (d === undefined) { out.push(segs[i]); continue; }
    if (d === '..') out.pop();
    // `/a/..` and `/a/.` name the directory: keep the trailing slash.
    if (i === last) out.push('');
  }
  return `/${out.join('/')}`;
}
