/**
 * Next-hop MACs from the kernel's neighbour table, in the calling process's network namespace:
 * a real's MAC for DSR/NAT (and IPIP to on-link reals), the default gateway's for IPIP.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { canonicalMac, ipFamily } from '../../model/address.js';

const run = promisify(execFile);

async function ipJson(args: string[]): Promise<any[]> {
  const { stdout } = await run('ip', ['-j', ...args]);
  return stdout.trim() ? JSON.parse(stdout) : [];
}

const USABLE = new Set(['REACHABLE', 'STALE', 'DELAY', 'PROBE', 'PERMANENT', 'NOARP']);

async function lookup(addr: string): Promise<string | null> {
  const fam = ipFamily(addr) === 6 ? '-6' : '-4';
  for (const n of await ipJson([fam, 'neigh', 'show', 'to', addr])) {
    const states: string[] = n.state ?? [];
    if (n.lladdr && states.some((s) => USABLE.has(s))) return canonicalMac(n.lladdr);
  }
  return null;
}

/** The MAC of an on-link address; pings it once to populate the table when absent. */
export async function resolveMac(addr: string, timeoutMs = 1000): Promise<string | null> {
  const known = await lookup(addr);
  if (known) return known;
  const fam = ipFamily(addr) === 6 ? '-6' : '-4';
  await run('ping', [fam, '-c', '1', '-W', String(Math.max(1, Math.ceil(timeoutMs / 1000))), addr]).catch(() => undefined);
  return lookup(addr);
}

/** Whether `addr` is reached without a gateway (same link). */
export async function isOnLink(addr: string): Promise<boolean> {
  try {
    const r = await ipJson(['route', 'get', addr]);
    return r.length > 0 && !r[0].gateway;
  } catch {
    return false;
  }
}

/** The default route's gateway and its MAC, or null. */
export async function defaultGatewayMac(family: 4 | 6 = 4): Promise<string | null> {
  const routes = await ipJson([family === 6 ? '-6' : '-4', 'route', 'show', 'default']).catch(() => []);
  const gw = routes.find((r) => r.gateway)?.gateway as string | undefined;
  return gw ? resolveMac(gw) : null;
}

/** The first global address of an interface for a family, or null. */
export async function interfaceAddress(ifname: string, family: 4 | 6): Promise<string | null> {
  const links = await ipJson([family === 6 ? '-6' : '-4', 'addr', 'show', 'dev', ifname]).catch(() => []);
  for (const l of links) for (const a of l.addr_info ?? []) if (a.scope === 'global') return a.local;
  return null;
}

/** The MAC of an interface. */
export async function interfaceMac(ifname: string): Promise<string | null> {
  const links = await ipJson(['link', 'show', 'dev', ifname]).catch(() => []);
  return links[0]?.address ? canonicalMac(links[0].address) : null;
}
