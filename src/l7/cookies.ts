/** The value of one cookie in a Cookie header, or undefined. No decoding: values are compared as sent. */
export function getCookie(header: string | string[] | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  const h = Array.isArray(header) ? header.join('; ') : header;
  let i = 0;
  while (i < h.length) {
    while (h.charCodeAt(i) === 32 || h.charCodeAt(i) === 59) i++;
    const eq = h.indexOf('=', i);
    if (eq < 0) return undefined;
    const end = h.indexOf(';', eq);
    if (h.slice(i, eq).trim() === name) return h.slice(eq + 1, end < 0 ? h.length : end).trim();
    if (end < 0) return undefined;
    i = end + 1;
  }
  return undefined;
}
