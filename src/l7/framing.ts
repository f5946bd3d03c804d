/**
 * Request Transfer-Encoding that the HTTP/1.1 parser lets through (it refuses only a last coding
 * other than chunked, whose body has no end it could find). sluice re-frames every request body
 * it forwards, so a coding it does not implement would be silently dropped on the way.
 */

/** The status to refuse a request's Transfer-Encoding with (undefined: it is one `chunked`). */
export function transferCodingRefusal(te: string | undefined, httpVersion: string): 400 | 501 | undefined {
  if (te === undefined) return undefined;
  // HTTP/1.0 has no transfer codings: its framing is faulty whatever it says (RFC 9112 §6.1).
  if (httpVersion === '1.0') return 400;
  const codings = te.split(',').map((t) => t.trim().toLowerCase());
  if (codings.length === 1 && codings[0] === 'chunked') return undefined;
  const last = codings.length - 1;
  // Other codings under a final chunked are codings sluice does not implement (RFC 9112 §6.1: 501);
  // anything else (empty, chunked twice, not ending in chunked) leaves the length unknown (§6.3: 400).
  const known = codings[last] === 'chunked' && codings.slice(0, last).every((c) => c !== '' && c !== 'chunked');
  return known ? 501 : 400;
}
