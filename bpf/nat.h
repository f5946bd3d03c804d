/* NAT: destination address and port rewritten to the real's on the way in, source rewritten
 * back to the VIP on the way out, with incremental checksum updates (IPv4 header, TCP/UDP
 * checksum incl. the pseudo-header). */
#ifndef SLUICE_NAT_H
#define SLUICE_NAT_H
#include "csum.h"
#include "parse.h"

/* Rewrite one address (dst if `dst`, else src) and, when l4 is present, one port.
 * `to` is 4 words for IPv6, 1 for IPv4. */
static __always_inline void nat_rewrite(struct packet *p, void *data_end, const __be32 *to, __be16 to_port, int dst) {
  __u32 diff;
  if (p->v6) {
    struct ipv6hdr *ip6 = p->l3;
    if ((void *)(ip6 + 1) > data_end) return;
    __u32 *a = dst ? (__u32 *)&ip6->daddr : (__u32 *)&ip6->saddr;
    diff = csum_diff_words(a, to, 4);
    __builtin_memcpy(a, to, 16);
  } else {
    struct iphdr *iph = p->l3;
    if ((void *)(iph + 1) > data_end) return;
    __u32 *a = dst ? &iph->daddr : &iph->saddr;
    diff = csum_diff_words(a, to, 1);
    *a = to[0];
    csum_apply(&iph->check, diff);
  }
  if (!p->l4) return; /* a later fragment: its L4 checksum was fixed in the first one */
  struct ports *pt = p->l4;
  if ((void *)(pt + 1) > data_end) return;
  __be16 *port = dst ? &pt->dst : &pt->src;
  if (to_port && to_port != *port) {
    diff += csum_diff16(*port, to_port);
    *port = to_port;
  }
  if (p->flow.proto == IPPROTO_TCP) {
    struct tcphdr *th = p->l4;
    if ((void *)(th + 1) > data_end) return;
    csum_apply(&th->check, diff);
  } else {
    struct udphdr *uh = p->l4;
    if ((void *)(uh + 1) > data_end) return;
    if (p->v6) csum_apply(&uh->check, diff);
    else udp4_csum_apply(&uh->check, diff);
  }
}

#endif
