import { isIP } from 'node:net';

/** Canonical text of an IPv4 or IPv6 address (lower case, compressed), or null if it isn't one. */
export function canonicalIp(text: string): string | null {
  const family = isIP(text);
  if (family === 4) return text.split('.').map((o) => String(Number(o))).join('.');
  if (family === 6) return ipv6ToText(ipv6ToBytes(text));
  return null;
}

/**
 * Why a dotted quad with a leading zero (`010.0.0.1`) is not taken, or null: inet_aton, ping and
 * most C tools read `010` as octal 8, others as decimal 10, so it names two hosts. Said instead of
 * a bare "not an address", which reads as a typo elsewhere.
 */
export function leadingZeroOf(text: string): string | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text.replace(/^.*:/, ''));
  if (!m || !m.slice(1).some((o) => o.length > 1 && o.startsWith('0'))) return null;
  const decimal = m.slice(1).map(Number);
  if (decimal.some((o) => o > 255)) return null;
  return `has a leading zero, which some tools read as octal: write ${text.slice(0, text.length - m[0].length)}${decimal.join('.')} if that is meant`;
}

/**
 * Why an address can be neither a VIP nor a real, or null: the unspecified address, multicast
 * and the limited broadcast never name one host (a real "at" 0.0.0.0 would be the balancer); an
 * IPv6 link-local address names a host only together with an interface, which neither carries;
 * an IPv4-mapped IPv6 address would make an IPv6 service that IPv4 packets never reach. Loopback
 * never comes in on an interface nor goes out of one (the kernel drops it as a martian), and
 * 0.0.0.0/8 is a source-only block; an IPv4-compatible IPv6 address (`::10.0.0.1`, deprecated by
 * RFC 4291) is almost always the IPv4 address written with a stray `::`.
 */
export function unusableAddress(addr: string): string | null {
  const b = ipToBytes(addr);
  if (b.every((x) => x === 0)) return 'is the unspecified address';
  if (b.length === 4 && b[0] === 127) return 'is loopback (127.0.0.0/8), which never reaches the wire';
  if (b.length === 4 && b[0] === 0) return 'is in 0.0.0.0/8 ("this network", a source address only)';
  if (b.length === 16 && b.subarray(0, 15).every((x) => x === 0) && b[15] === 1) return 'is loopback (::1), which never reaches the wire';
  if (b.length === 16 && b.subarray(0, 12).every((x) => x === 0)) return `is IPv4-compatible (::/96, deprecated): write the IPv4 address ${b.subarray(12).join('.')}`;
  if (b.length === 4 && b[0] >= 224 && b[0] <= 239) return 'is multicast (224.0.0.0/4)';
  if (b.length === 4 && b.every((x) => x === 255)) return 'is the broadcast address';
  if (b.length === 16 && b[0] === 0xff) return 'is multicast (ff00::/8)';
  if (b.length === 16 && b[0] === 0xfe && (b[1] & 0xc0) === 0x80) return 'is link-local (fe80::/10), which names a host only with an interface';
  if (b.length === 16 && b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) return `is IPv4-mapped (::ffff:0:0/96): write the IPv4 address ${b.subarray(12).join('.')}`;
  return null;
}

/**
 * Why an IPv6 literal with a zone (`2001:db8::1%eth0`) is refused, or null. Node's isIP takes
 * the zone and canonicalIp drops it, so `%eth0` would vanish without a word.
 */
export function zoneOf(text: string): string | null {
  const i = text.indexOf('%');
  return i >= 0 && isIP(text) === 6 ? `has a zone (${text.slice(i)})` : null;
}

export function ipFamily(addr: string): 4 | 6 {
  return addr.includes(':') ? 6 : 4;
}

/** 16 bytes for IPv6, 4 for IPv4, network order. */
export function ipToBytes(addr: string): Buffer {
  if (ipFamily(addr) === 4) return Buffer.from(addr.split('.').map(Number));
  return ipv6ToBytes(addr);
}

export function bytesToIp(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join('.');
  return ipv6ToText(Buffer.from(b));
}

function ipv6ToBytes(text: string): Buffer {
  let s = text;
  const out = Buffer.alloc(16);
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hextets.
  const v4 = s.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (v4) {
    const o = v4[1].split('.').map(Number);
    s = s.slice(0, -v4[1].length) + ((o[0] << 8) | o[1]).toString(16) + ':' + ((o[2] << 8) | o[3]).toString(16);
  }
  const [head, tail] = s.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

function ipv6ToText(b: Buffer): string {
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push(b.readUInt16BE(i));
  // RFC 5952: compress the longest run (length ≥ 2) of zero groups, the first one on ties.
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return hex.slice(0, best).join(':') + '::' + hex.slice(best + bestLen).join(':');
}

/** `aa:bb:cc:dd:ee:ff` in lower case, or null. */
export function canonicalMac(text: string): string | null {
  const m = /^([0-9a-f]{2})([:-][0-9a-f]{2}){5}$/i.test(text);
  return m ? text.toLowerCase().replace(/-/g, ':') : null;
}

/**
 * Why a MAC cannot be a next hop, or null. The balancer writes it as the destination of every
 * frame it forwards: a group address (broadcast ff:ff:ff:ff:ff:ff, multicast 01:00:5e:...: the
 * low bit of the first octet) floods the segment, so every real holding the VIP answers the
 * same connection; all zeros is no station at all.
 */
export function unusableMac(mac: string): string | null {
  const b = macToBytes(mac);
  if (b.every((x) => x === 0xff)) return 'is the broadcast address';
  if (b[0] & 1) return 'is a multicast (group) address';
  if (b.every((x) => x === 0)) return 'is all zeros';
  return null;
}

export function macToBytes(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}

export function bytesToMac(b: Uint8Array): string {
  return Array.from(b).map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** `1.2.3.4:80`, `[2001:db8::1]:80`; no port → just the address (brackets for IPv6 only with a port). */
export function joinHostPort(addr: string, port?: number): string {
  if (port === undefined) return addr;
  return ipFamily(addr) === 6 ? `[${addr}]:${port}` : `${addr}:${port}`;
}
