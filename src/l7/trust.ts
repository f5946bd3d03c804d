/** Which peers may speak for the client: X-Forwarded-* and Forwarded from them are extended, from anyone else replaced. */
import { ipToBytes } from '../model/address.js';
import { isIP } from 'node:net';

interface Net { bytes: Buffer; bits: number }

export class TrustedProxies {
  private readonly nets: Net[];
  private readonly cache = new Map<string, boolean>();

  constructor(cidrs: string[]) {
    this.nets = cidrs.map((c) => { const [a, b] = c.split('/'); return { bytes: ipToBytes(a), bits: Number(b) }; });
  }

  has(ip: string): boolean {
    if (this.nets.length === 0) return false;
    let v = this.cache.get(ip);
    if (v === undefined) {
      v = this.match(ip);
      if (this.cache.size > 10_000) this.cache.clear();
      this.cache.set(ip, v);
    }
    return v;
  }

  private match(ip: string): boolean {
    if (!isIP(ip)) return false;
    const b = ipToBytes(ip);
    return this.nets.some((n) => n.bytes.length === b.length && prefixEqual(n.bytes, b, n.bits));
  }
}

function prefixEqual(a: Buffer, b: Buffer, bits: number): boolean {
  const full = bits >> 3;
  for (let i = 0; i < full; i++) if (a[i] !== b[i]) return false;
  const rest = bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (a[full] & mask) === (b[full] & mask);
}

/** The client's address as people write it: IPv4-mapped IPv6 (`::ffff:10.0.0.1`) shown as IPv4. */
export function peerAddress(addr: string | undefined): string {
  if (!addr) return '';
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}
