/**
 * The `netlink` package loads a native prebuild: both data planes load it lazily, once, so that
 * its absence is a clean error (IPVS) or a fallback (XDP's next-hop lookups use `ip -j`).
 */
type NetlinkModule = typeof import('netlink');
let netlinkModule: Promise<NetlinkModule> | undefined;

export function loadNetlink(): Promise<NetlinkModule> {
  netlinkModule ??= import('netlink');
  return netlinkModule;
}
