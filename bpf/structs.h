/* Map keys and values. src/dataplane/xdp/structs.ts mirrors each struct field by field:
 * change both together. Addresses are network order; IPv4 uses addr[0], the rest is zero. */
#ifndef SLUICE_STRUCTS_H
#define SLUICE_STRUCTS_H
#include <linux/types.h>

/* vips key (8 bytes): an IPv4 VIP. Small keys hash and compare faster, on every packet. */
struct vip4_key {
  __be32 addr;
  __be16 port; /* 0 = every port */
  __u8 proto;  /* IPPROTO_TCP / IPPROTO_UDP */
  __u8 _pad;
};

/* vips6 key (20 bytes): an IPv6 VIP */
struct vip_key {
  __be32 addr[4];
  __be16 port; /* 0 = every port */
  __u8 proto;  /* IPPROTO_TCP / IPPROTO_UDP */
  __u8 _pad;
};

/* vips / vips6 value (8 bytes); ids are unique across both maps */
struct vip_meta {
  __u32 id;   /* 0..MAX_VIPS-1: the VIP's ring (rings[id * RING_SIZE ...]) and stats slot */
  __u8 mode;  /* MODE_* */
  __u8 flags; /* VIP_F_* */
  __u16 _pad;
};

/* reals value (32 bytes), indexed by real slot 0..MAX_REALS-1 */
struct real_def {
  __be32 addr[4];
  __u8 mac[6];     /* next hop: the real's MAC (ipip: all-zero = the gateway's) */
  __be16 port;     /* nat: the real's port (0 = keep the VIP's) */
  __u32 gen;       /* bumped when the slot is reused: flows of the previous owner move */
  __u8 flags;      /* REAL_F_* */
  __u8 tx_port;    /* 0: XDP_TX; else XDP_REDIRECT via tx_ports[tx_port] */
  __u16 owner;     /* VIP id + 1 owning the slot, 0 = free: a flow hit for another VIP is re-chosen */
};

/* flows key (16 bytes): an IPv4 client's 5-tuple (ports 0 for src-ip hashing). A small key
 * is cheaper to hash and compare, on every packet. */
struct flow4_key {
  __be32 src;
  __be32 dst;
  __be16 sport;
  __be16 dport;
  __u8 proto;
  __u8 _pad[3];
};

/* flows6 key (40 bytes), and the parser's view of any flow (IPv4 in the first word) */
struct flow_key {
  __be32 src[4];
  __be32 dst[4];
  __be16 sport;
  __be16 dport;
  __u8 proto;
  __u8 _pad[3];
};

/* flows / flows6 value (8 bytes) */
struct flow_val {
  __u32 real; /* real slot */
  __u32 gen;  /* real_def.gen when chosen */
};

/* nat_back key (40 bytes): a reply as the real sends it */
struct nat_key {
  __be32 real[4];
  __be32 client[4];
  __be16 real_port;
  __be16 client_port;
  __u8 proto;
  __u8 _pad[3];
};

/* nat_back value (24 bytes) */
struct nat_val {
  __be32 vip[4];
  __be16 vip_port;
  __u8 client_mac[6]; /* the hop the client's packets came from: replies go back to it */
};

/* frags key (40 bytes): the fragments of one datagram (IPv4: addresses in the first words, the
 * 16-bit IP id; IPv6: the fragment header's 32-bit identification) */
struct frag_key {
  __be32 src[4];
  __be32 dst[4];
  __be32 id;
  __u8 proto;
  __u8 _pad[3];
};

/* frags value: same as flows (real slot + gen) plus the VIP id */
struct frag_val {
  __u32 real;
  __u32 gen;
  __u32 vip;
};

/* stats value (24 bytes; per CPU) */
struct stat {
  __u64 packets;
  __u64 bytes;
  __u64 new_flows;
};

/* config value (40 bytes), a single entry at key 0 */
struct config {
  __u8 gw_mac[6];       /* ipip: next hop of encapsulated packets to reals without a MAC of their own */
  __u8 flags;           /* CFG_F_* */
  __u8 _pad;
  __be32 encap_src4;    /* ipip: outer IPv4 source prefix (host bits zero) */
  __be32 encap_src6[4]; /* ipip: outer IPv6 source prefix (host bits zero) */
  __be32 encap_mask4;   /* the bits of encap_src4 that carry the flow hash (the prefix's host bits) */
  __be32 encap_mask6;   /* the same for the last word of encap_src6 */
  __u32 _pad2;
};

/* ports value (12 bytes), indexed by tx port (real_def.tx_port): what the balancer needs to send
 * on an interface. Port 0 is the interface the balancer is attached to (replies on other ports
 * are redirected there); the others are the egress interfaces of reals behind them. */
struct port_info {
  __u32 ifindex; /* 0: unknown (port 0: frames go back out with XDP_TX whatever their ingress) */
  __u8 mac[6];   /* source MAC of frames sent on it */
  __u16 mtu;     /* ipip: largest IP packet it carries; 0 = unchecked */
};

#endif
