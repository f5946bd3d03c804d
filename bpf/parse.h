/* Header parsing: Ethernet (+ one 802.1Q/802.1ad tag), IPv4 (any IHL, fragments), IPv6 (and a
 * bounded chain of extension headers), TCP/UDP ports, and the packet an ICMP "fragmentation needed" / ICMPv6 "packet too big"
 * quotes. Every access is bounds-checked; anything unexpected returns a pass reason. */
#ifndef SLUICE_PARSE_H
#define SLUICE_PARSE_H
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/icmpv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "consts.h"
#include "structs.h"

struct vlan_hdr {
  __be16 tci;
  __be16 proto;
};

/* linux/icmp.h pulls in libc socket headers: the few bits needed, here. */
#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4
#define ICMP_TIME_EXCEEDED 11
struct icmphdr {
  __u8 type;
  __u8 code;
  __sum16 checksum;
  __be32 rest;
};

/* IPv6 extension headers the parser walks (linux/ipv6.h has only some of these names). */
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST 60
struct frag6_hdr {
  __u8 nexthdr;
  __u8 reserved;
  __be16 frag_off; /* offset << 3 | M */
  __be32 identification;
};
/* Hop-by-hop, destination options and routing headers start alike; segments_left is the routing
 * header's (the others have option bytes there, never read). */
struct ext6_hdr {
  __u8 nexthdr;
  __u8 hdrlen; /* 8-byte units after the first 8 */
  __u8 type;
  __u8 segments_left;
};

struct ports {
  __be16 src;
  __be16 dst;
};

/* What the program knows about a packet after parsing. */
struct packet {
  struct flow_key flow; /* as the client sent it (for ICMP: the quoted flow, reversed) */
  void *l3;             /* the (outer) IP header */
  void *l4;             /* TCP/UDP header (NULL for ICMP errors and later fragments) */
  __u32 ip_len;         /* bytes of the IP packet per its header */
  __be32 ip_id;         /* fragments: IPv4 id (16 bits) or IPv6 identification */
  __u8 l3_off;          /* 14, or 18 with a VLAN tag */
  __u8 v6;
  __u8 icmp;            /* the flow comes from an ICMP error's quote: 1 fragmentation needed /
                         * packet too big (followed to a VIP's real), 2 another error (only a
                         * NAT real's error to a client is acted on) */
  __u8 frag;            /* 0: none, 1: first fragment (MF), 2: a later fragment */
  __u8 tos;
  __u8 syn;             /* a TCP SYN without ACK: a new connection by definition */
  __u8 df;              /* may not be fragmented: IPv4 DF, and every IPv6 packet */
  void *icmp_hdr;       /* ICMP errors: the ICMP header, the quoted IP header and its ports */
  void *inner_l3;
  void *inner_l4;
};

#define PARSE_OK -1

/* L4 header length we need to see: enough to rewrite ports and the checksum (NAT). */
static __always_inline int l4_min_len(__u8 proto) {
  return proto == IPPROTO_TCP ? (int)sizeof(struct tcphdr) : (int)sizeof(struct udphdr);
}

/* The flow an ICMP error quotes: the quote is a packet the VIP sent (src VIP, dst client), so
 * the flow is its reverse. Only the first 8 bytes of the quoted L4 header are guaranteed; `qlen`
 * is what the outer IP length leaves for the quote (bytes past it are link padding). */
static __always_inline int parse_quote4(struct packet *p, void *q, void *data_end, __u32 qlen) {
  struct iphdr *iph = q;
  if ((void *)(iph + 1) > data_end) return G_PASS_MALFORMED;
  if (iph->version != 4 || iph->ihl < 5) return G_PASS_MALFORMED;
  if (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP) return G_PASS_UNKNOWN_PROTO;
  if (iph->ihl * 4 + sizeof(struct ports) > qlen) return G_PASS_MALFORMED;
  struct ports *pt = (void *)iph + iph->ihl * 4;
  if ((void *)(pt + 1) > data_end) return G_PASS_MALFORMED;
  p->flow.src[0] = iph->daddr;
  p->flow.dst[0] = iph->saddr;
  p->flow.sport = pt->dst;
  p->flow.dport = pt->src;
  p->flow.proto = iph->protocol;
  p->icmp = 1;
  p->inner_l3 = iph;
  p->inner_l4 = pt;
  return PARSE_OK;
}

static __always_inline int parse_quote6(struct packet *p, void *q, void *data_end, __u32 qlen) {
  struct ipv6hdr *ip6 = q;
  if ((void *)(ip6 + 1) > data_end) return G_PASS_MALFORMED;
  if (ip6->version != 6) return G_PASS_MALFORMED;
  if (ip6->nexthdr != IPPROTO_TCP && ip6->nexthdr != IPPROTO_UDP) return G_PASS_UNKNOWN_PROTO;
  if (IPV6_HDR_LEN + sizeof(struct ports) > qlen) return G_PASS_MALFORMED;
  struct ports *pt = (void *)(ip6 + 1);
  if ((void *)(pt + 1) > data_end) return G_PASS_MALFORMED;
  __builtin_memcpy(p->flow.src, &ip6->daddr, 16);
  __builtin_memcpy(p->flow.dst, &ip6->saddr, 16);
  p->flow.sport = pt->dst;
  p->flow.dport = pt->src;
  p->flow.proto = ip6->nexthdr;
  p->icmp = 1;
  p->inner_l3 = ip6;
  p->inner_l4 = pt;
  return PARSE_OK;
}

/* The ports (and TCP flags) of the transport header at l3 + off. The header must fit in the IP
 * packet (`tot`), not merely in the frame: a short IP packet padded to the Ethernet minimum would
 * otherwise have its padding read, and rewritten by NAT, as ports and checksum. */
static __always_inline int parse_l4(struct packet *p, void *l3, __u32 off, __u32 tot, __u8 proto, void *data_end) {
  if (off + l4_min_len(proto) > tot) return G_PASS_MALFORMED;
  void *l4 = l3 + off;
  struct ports *pt = l4;
  if ((void *)(pt + 1) > data_end) return G_PASS_MALFORMED;
  if (proto == IPPROTO_TCP) {
    struct tcphdr *th = l4;
    if ((void *)(th + 1) > data_end) return G_PASS_MALFORMED;
    p->syn = th->syn && !th->ack;
  } else {
    if (l4 + sizeof(struct udphdr) > data_end) return G_PASS_MALFORMED;
  }
  p->l4 = l4;
  p->flow.sport = pt->src;
  p->flow.dport = pt->dst;
  return PARSE_OK;
}

static __always_inline int parse_ipv4(struct packet *p, void *l3, void *data_end) {
  struct iphdr *iph = l3;
  if ((void *)(iph + 1) > data_end) return G_PASS_MALFORMED;
  if (iph->version != 4 || iph->ihl < 5) return G_PASS_MALFORMED;
  __u32 hlen = iph->ihl * 4;
  __u32 tot = bpf_ntohs(iph->tot_len);
  if (tot < hlen || tot > (__u32)(data_end - l3)) return G_PASS_MALFORMED;
  p->l3 = l3;
  p->ip_len = tot;
  p->ip_id = iph->id;
  p->tos = iph->tos;
  p->df = (iph->frag_off & bpf_htons(IP_DF)) != 0;
  p->flow.proto = iph->protocol;
  p->flow.src[0] = iph->saddr;
  p->flow.dst[0] = iph->daddr;
  __u16 frag = bpf_ntohs(iph->frag_off);
  if (frag & IP_OFFSET) {
    if (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP) return G_PASS_UNKNOWN_PROTO;
    p->frag = 2;
    return PARSE_OK;
  }
  if (frag & IP_MF) p->frag = 1;
  if (iph->protocol == IPPROTO_TCP || iph->protocol == IPPROTO_UDP)
    return parse_l4(p, l3, hlen, tot, iph->protocol, data_end);
  if (iph->protocol == IPPROTO_ICMP && !p->frag) {
    if (hlen + sizeof(struct icmphdr) > tot) return G_PASS_MALFORMED;
    struct icmphdr *ic = l3 + hlen;
    if ((void *)(ic + 1) > data_end) return G_PASS_MALFORMED;
    if (ic->type != ICMP_DEST_UNREACH && ic->type != ICMP_TIME_EXCEEDED) return G_PASS_NOT_VIP;
    p->icmp_hdr = ic;
    int rc = parse_quote4(p, (void *)(ic + 1), data_end, tot - hlen - sizeof(struct icmphdr));
    if (rc == PARSE_OK && (ic->type != ICMP_DEST_UNREACH || ic->code != ICMP_FRAG_NEEDED)) p->icmp = 2;
    return rc;
  }
  return G_PASS_UNKNOWN_PROTO;
}

/* IPv6: the fixed header, then up to MAX_EXT_HDRS extension headers (hop-by-hop, destination
 * options, routing with no segments left, fragment) before TCP/UDP or ICMPv6. A routing header
 * with segments left names a further destination: the VIP is a waypoint, not ours to balance. */
static __always_inline int parse_ipv6(struct packet *p, void *l3, void *data_end) {
  struct ipv6hdr *ip6 = l3;
  if ((void *)(ip6 + 1) > data_end) return G_PASS_MALFORMED;
  if (ip6->version != 6) return G_PASS_MALFORMED;
  __u32 tot = bpf_ntohs(ip6->payload_len) + IPV6_HDR_LEN;
  if (tot > (__u32)(data_end - l3)) return G_PASS_MALFORMED;
  p->v6 = 1;
  p->l3 = l3;
  p->ip_len = tot;
  p->df = 1; /* IPv6 routers never fragment */
  p->tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
  __builtin_memcpy(p->flow.src, &ip6->saddr, 16);
  __builtin_memcpy(p->flow.dst, &ip6->daddr, 16);
  __u8 nexthdr = ip6->nexthdr;
  __u32 off = IPV6_HDR_LEN;
#pragma unroll
  for (int i = 0; i < MAX_EXT_HDRS; i++) {
    if (nexthdr == NEXTHDR_HOP || nexthdr == NEXTHDR_DEST || nexthdr == NEXTHDR_ROUTING) {
      if (off + 8 > tot) return G_PASS_MALFORMED;
      struct ext6_hdr *eh = l3 + off;
      if ((void *)(eh + 1) > data_end) return G_PASS_MALFORMED;
      if (nexthdr == NEXTHDR_ROUTING && eh->segments_left) return G_PASS_UNKNOWN_PROTO;
      nexthdr = eh->nexthdr;
      off += ((__u32)eh->hdrlen + 1) * 8;
    } else if (nexthdr == NEXTHDR_FRAGMENT) {
      if (off + sizeof(struct frag6_hdr) > tot) return G_PASS_MALFORMED;
      struct frag6_hdr *fh = l3 + off;
      if ((void *)(fh + 1) > data_end) return G_PASS_MALFORMED;
      nexthdr = fh->nexthdr;
      p->ip_id = fh->identification;
      __u16 fo = bpf_ntohs(fh->frag_off);
      if (fo >> 3) {
        /* A later fragment: only its fragment header's next header says what it carries. */
        if (nexthdr != IPPROTO_TCP && nexthdr != IPPROTO_UDP) return G_PASS_UNKNOWN_PROTO;
        p->flow.proto = nexthdr;
        p->frag = 2;
        return PARSE_OK;
      }
      if (fo & 1) p->frag = 1;
      off += sizeof(struct frag6_hdr);
    } else {
      break;
    }
  }
  p->flow.proto = nexthdr;
  if (nexthdr == IPPROTO_TCP || nexthdr == IPPROTO_UDP) return parse_l4(p, l3, off, tot, nexthdr, data_end);
  if (nexthdr == IPPROTO_ICMPV6 && !p->frag) {
    if (off + sizeof(struct icmp6hdr) > tot) return G_PASS_MALFORMED;
    struct icmp6hdr *ic = l3 + off;
    if ((void *)(ic + 1) > data_end) return G_PASS_MALFORMED;
    __u8 t = ic->icmp6_type;
    if (t != ICMPV6_PKT_TOOBIG && t != ICMPV6_DEST_UNREACH && t != ICMPV6_TIME_EXCEED) return G_PASS_NOT_VIP;
    p->icmp_hdr = ic;
    int rc = parse_quote6(p, (void *)(ic + 1), data_end, tot - off - sizeof(struct icmp6hdr));
    if (rc == PARSE_OK && t != ICMPV6_PKT_TOOBIG) p->icmp = 2;
    return rc;
  }
  /* Other protocols, and chains longer than MAX_EXT_HDRS: not ours. */
  return G_PASS_UNKNOWN_PROTO;
}

#endif
