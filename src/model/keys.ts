import { canonicalIp, ipFamily, joinHostPort, leadingZeroOf, zoneOf } from './address.js';
import { ValidationError } from './errors.js';
import type { Protocol } from './types.js';

/** Identity of a VIP: `10.0.0.1:80/tcp`, `[2001:db8::1]:443/udp`. */
export function vipKey(v: { address: string; port: number; protocol: Protocol }): string {
  return `${joinHostPort(v.address, v.port)}/${v.protocol}`;
}

/** Identity of a real within a VIP: its address, plus `:port` when it has its own port. */
export function realKey(r: { address: string; port?: number }): string {
  return joinHostPort(r.address, r.port);
}

/** Parse `ADDR:PORT/PROTO` as the CLI takes it. */
export function parseVipKey(text: string): { address: string; port: number; protocol: Protocol } {
  const m = /^(?:\[([^\]]+)\]|([^:/\[\]]+)):(\d+)\/(\w+)$/.exec(text);
  if (!m) throw new ValidationError([{ path: 'vip', message: `"${text}" is not ADDR:PORT/PROTO (IPv6 in brackets: [2001:db8::1]:443/tcp)` }]);
  const zone = zoneOf(m[1] ?? m[2]);
  if (zone) throw new ValidationError([{ path: 'vip', message: `"${m[1] ?? m[2]}" ${zone}: a VIP address takes none` }]);
  const octal = leadingZeroOf(m[1] ?? m[2]);
  if (octal) throw new ValidationError([{ path: 'vip', message: `"${m[1] ?? m[2]}" ${octal}` }]);
  const address = canonicalIp(m[1] ?? m[2]);
  if (!address || (m[2] !== undefined && ipFamily(address) === 6)) {
    throw new ValidationError([{ path: 'vip', message: `"${m[1] ?? m[2]}" is not an IPv4 address or a bracketed IPv6 address` }]);
  }
  const port = parsePort(m[3], 'vip', true);
  const protocol = m[4].toLowerCase();
  if (protocol !== 'tcp' && protocol !== 'udp') throw new ValidationError([{ path: 'vip', message: `protocol "${m[4]}" must be tcp or udp` }]);
  return { address, port, protocol };
}

/** Parse `REAL[:PORT]` (`10.0.0.11`, `10.0.0.11:8080`, `2001:db8::11`, `[2001:db8::11]:8080`). */
export function parseRealRef(text: string): { address: string; port?: number } {
  let host = text, portText: string | undefined;
  const b = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (b) { host = b[1]; portText = b[2]; }
  else if (/^[^:]+:\d+$/.test(text)) { [host, portText] = text.split(':'); }
  const zone = zoneOf(host);
  if (zone) throw new ValidationError([{ path: 'real', message: `"${host}" ${zone}: a real address takes none` }]);
  const octal = leadingZeroOf(host);
  if (octal) throw new ValidationError([{ path: 'real', message: `"${host}" ${octal}` }]);
  const address = canonicalIp(host);
  if (!address) throw new ValidationError([{ path: 'real', message: `"${text}" is not an IP address (with an optional :PORT)` }]);
  return portText === undefined ? { address } : { address, port: parsePort(portText, 'real', false) };
}

export function parsePort(text: string, path: string, allowZero: boolean): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(n) || n > 65535 || n < (allowZero ? 0 : 1)) {
    throw new ValidationError([{ path, message: `port "${text}" must be an integer ${allowZero ? 0 : 1}..65535` }]);
  }
  return n;
}
