/* Compile-time limits and constants of the balancer. The loader (src/dataplane/xdp) sets the
 * limits with -D; the defaults here are what `npm run build:bpf` compiles with. */
#ifndef SLUICE_CONSTS_H
#define SLUICE_CONSTS_H

#ifndef MAX_VIPS
#define MAX_VIPS 64
#endif
#ifndef MAX_REALS /* (VIP, real) pairs: each real of each VIP has its own slot */
#define MAX_REALS 4096
#endif
#ifndef RING_SIZE /* Maglev table size per VIP, a prime */
#define RING_SIZE 65537
#endif
#ifndef FLOW_TABLE_SIZE
#define FLOW_TABLE_SIZE 1000000
#endif
#ifndef FLOW6_TABLE_SIZE
#define FLOW6_TABLE_SIZE FLOW_TABLE_SIZE
#endif
#ifndef NAT_TABLE_SIZE
#define NAT_TABLE_SIZE FLOW_TABLE_SIZE
#endif
#ifndef FRAG_TABLE_SIZE
#define FRAG_TABLE_SIZE 8192
#endif
/* Flags of the LRU maps (flows, flows6, nat_back). 0: the common LRU (per-CPU free lists refilled
 * in batches of 128 from a shared list): a new flow costs ~15-20% less here than with
 * BPF_F_NO_COMMON_LRU (2), whose per-CPU lists rotate on every insertion. */
#ifndef FLOWS_MAP_FLAGS
#define FLOWS_MAP_FLAGS 0
#endif
#ifndef MAX_TX_PORTS /* interfaces the balancer sends on: 0 is its own (XDP_TX), 1.. others (devmap) */
#define MAX_TX_PORTS 64
#endif
/* IPv6 extension headers walked to find the ports: enough for hop-by-hop, destination options,
 * routing and fragment headers once each; a longer chain is not ours. */
#ifndef MAX_EXT_HDRS
#define MAX_EXT_HDRS 4
#endif
/* Bytes of the offending packet an ICMP "fragmentation needed" / "packet too big" quotes: its
 * IP header (options too) and the transport header the client's kernel needs to find the socket.
 * Fixed so the checksum is one bounded helper call; a multiple of 4 (bpf_csum_diff). */
#define TOO_BIG_QUOTE 128

/* vip_meta.mode */
#define MODE_DSR 0
#define MODE_IPIP 1
#define MODE_NAT 2

/* vip_meta.flags */
#define VIP_F_SRC_IP_HASH (1 << 0)
#define VIP_F_IPV6 (1 << 1) /* bookkeeping for the agent; the program does not read it */

/* real_def.flags */
#define REAL_F_DOWN (1 << 0) /* out of the ring and its flows move (also: slot freed) */
#define REAL_F_IPV6 (1 << 1)

/* config.flags */
#define CFG_F_NAT (1 << 0)      /* some VIP is in NAT mode: look replies up in nat_back */
#define CFG_F_WILDCARD (1 << 1) /* some VIP has port 0: a second lookup on a miss */

/* A ring slot with no real. */
#define NO_REAL 0xFFFFFFFFu

/* Jenkins hash seed: fixed so that every balancer hashes a flow the same way. */
#ifndef HASH_SEED
#define HASH_SEED 0x5151c0deu
#endif

/* The stats array: [0, MAX_VIPS) per VIP, [MAX_VIPS, MAX_VIPS + MAX_REALS) per real slot,
 * then one entry per global counter below (packets field only). LRU misses are not counted
 * apart: they are the VIPs' new_flows (a per-CPU update less on every new flow). */
#define STATS_REAL_BASE MAX_VIPS
#define STATS_GLOBAL_BASE (MAX_VIPS + MAX_REALS)
enum global_counter {
  G_PASS_NOT_IP = 0,    /* not IPv4/IPv6 (ARP, ...) */
  G_PASS_NOT_VIP,       /* IP but not for a VIP (nor a NAT reply) */
  G_PASS_MALFORMED,     /* truncated or unparsable headers: not ours to judge */
  G_PASS_UNKNOWN_PROTO, /* not TCP/UDP/ICMP, or IPv6 extension headers */
  G_DROP_NO_REAL,       /* the VIP's ring has no real */
  G_PASS_FRAG,          /* a later fragment whose first fragment was not seen */
  G_DROP_FAMILY,        /* dsr/nat between IPv4 and IPv6 */
  G_DROP_ENCAP,         /* bpf_xdp_adjust_head failed */
  G_FLOW_RECHOSEN,      /* flows whose real was down or removed, moved */
  G_ICMP_FWD,           /* ICMP errors quoting a VIP flow, sent to the flow's real */
  G_NAT_REPLY,          /* NAT replies rewritten back to the VIP */
  G_FRAG_FWD,           /* non-first fragments following their first fragment */
  G_ICMP_TOO_BIG,       /* ipip: too big for the egress MTU once encapsulated; answered with ICMP */
  G_DROP_TOO_BIG,       /* ipip: too big, and no ICMP may be sent (DF clear, later fragment, ICMP) */
  G_DROP_REAL_DOWN,     /* the ring pointed at a real marked down (the agent is rewriting it) */
  G_COUNT
};
#define STATS_SIZE (STATS_GLOBAL_BASE + G_COUNT)

#define IPV4_HDR_LEN 20
#define IPV6_HDR_LEN 40
#define IP_DF 0x4000
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define ENCAP_TTL 64

#endif
