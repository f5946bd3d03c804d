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
    if (p->v6) udp6_csum_apply(&uh->check, diff);
    else udp4_csum_apply(&uh->check, diff);
  }
}

/* An ICMP error about a NAT flow, rewritten for the side it goes to. `to_real`: an error sent to
 * the VIP, quoting a packet the VIP sent: the outer destination and the quoted source (address,
 * and port unless `port` is 0: the real has the VIP's) become the real's, so the real's kernel
 * finds the connection. Else: an error a NAT real (or a router on its side) sends to a client,
 * quoting the client's packet as the real received it (dst real:port): the quoted destination
 * address and port become the VIP's, and the outer source too when the real itself sent the
 * error (a router's address is left: it is that router speaking). Fixed: the outer IPv4
 * checksum, the quoted IPv4 header checksum and the ICMP checksum (ICMPv6: its pseudo-header
 * too). The quoted L4 checksum is left as it was (kernels do not check it, and the quote may not
 * even hold it). */
static __always_inline void nat_icmp(struct packet *p, void *data_end, const __be32 *addr, __be16 port, const int to_real) {
  struct ports *pt = p->inner_l4;
  if (!pt || (void *)(pt + 1) > data_end) return;
  __u32 d = 0;
  __be16 *qport = to_real ? &pt->src : &pt->dst;
  if ((port || !to_real) && port != *qport) {
    d += csum_diff16(*qport, port);
    *qport = port;
  }
  if (p->v6) {
    struct ipv6hdr *o = p->l3;
    struct icmp6hdr *ic = p->icmp_hdr;
    struct ipv6hdr *in = p->inner_l3;
    if (!o || !ic || !in || (void *)(o + 1) > data_end || (void *)(ic + 1) > data_end || (void *)(in + 1) > data_end) return;
    __u32 *outer = to_real ? (__u32 *)&o->daddr : (__u32 *)&o->saddr;
    __u32 *quoted = to_real ? (__u32 *)&in->saddr : (__u32 *)&in->daddr;
    if (to_real || (outer[0] == quoted[0] && outer[1] == quoted[1] && outer[2] == quoted[2] && outer[3] == quoted[3])) {
      d += csum_diff_words(outer, addr, 4);
      __builtin_memcpy(outer, addr, 16);
    }
    d += csum_diff_words(quoted, addr, 4);
    __builtin_memcpy(quoted, addr, 16);
    csum_apply(&ic->icmp6_cksum, d);
  } else {
    struct iphdr *o = p->l3;
    struct icmphdr *ic = p->icmp_hdr;
    struct iphdr *in = p->inner_l3;
    if (!o || !ic || !in || (void *)(o + 1) > data_end || (void *)(ic + 1) > data_end || (void *)(in + 1) > data_end) return;
    __u32 *outer = to_real ? &o->daddr : &o->saddr;
    __u32 *quoted = to_real ? &in->saddr : &in->daddr;
    if (to_real || *outer == *quoted) {
      __u32 od = csum_diff_words(outer, addr, 1);
      *outer = addr[0];
      csum_apply(&o->check, od);
    }
    __u32 id = csum_diff_words(quoted, addr, 1);
    *quoted = addr[0];
    __u16 old_check = in->check;
    csum_apply(&in->check, id);
    d += id + csum_diff16(old_check, in->check);
    csum_apply(&ic->checksum, d);
  }
}

#endif
