/* IPIP / IP6IP6 (and 4in6) encapsulation to a real. The outer source varies with the flow
 * (low bits from the client's address and port) so the real's NIC spreads flows over its
 * queues; the outer destination is the real; the next hop is the real's MAC when it is on
 * the link (real_def.mac set), else the gateway's. */
#ifndef SLUICE_ENCAP_H
#define SLUICE_ENCAP_H
#include "csum.h"
#include "parse.h"

static __always_inline int encap(struct xdp_md *ctx, struct packet *p, const struct real_def *r, const struct config *cfg) {
  void *data = (void *)(long)ctx->data;
  void *data_end = (void *)(long)ctx->data_end;
  struct ethhdr *eth = data;
  if ((void *)(eth + 1) > data_end) return -1;
  /* Save what the new headers overwrite: our MAC (the old destination) and a VLAN tag. */
  __u8 own_mac[ETH_ALEN];
  __builtin_memcpy(own_mac, eth->h_dest, ETH_ALEN);
  struct vlan_hdr vlan = {};
  int vlan_len = p->l3_off == sizeof(struct ethhdr) + sizeof(struct vlan_hdr) ? sizeof(struct vlan_hdr) : 0;
  __be16 vlan_proto = eth->h_proto;
  if (vlan_len) {
    struct vlan_hdr *vh = (void *)(eth + 1);
    if ((void *)(vh + 1) > data_end) return -1;
    vlan = *vh;
  }
  int outer6 = r->flags & REAL_F_IPV6;
  int olen = outer6 ? IPV6_HDR_LEN : IPV4_HDR_LEN;
  __u8 inner_proto = p->v6 ? IPPROTO_IPV6 : IPPROTO_IPIP;
  __u32 inner_len = p->ip_len;
  __u32 vary = bpf_ntohs(p->flow.sport) ^ bpf_ntohl(p->v6 ? p->flow.src[3] : p->flow.src[0]);

  if (bpf_xdp_adjust_head(ctx, -olen)) return -1;
  data = (void *)(long)ctx->data;
  data_end = (void *)(long)ctx->data_end;
  eth = data;
  if ((void *)(eth + 1) > data_end) return -1;
  /* A real on this link is sent to directly; others through the gateway. */
  if (*(__u32 *)r->mac | *(__u16 *)&r->mac[4]) __builtin_memcpy(eth->h_dest, r->mac, ETH_ALEN);
  else __builtin_memcpy(eth->h_dest, cfg->gw_mac, ETH_ALEN);
  __builtin_memcpy(eth->h_source, own_mac, ETH_ALEN);
  __be16 l3proto = outer6 ? bpf_htons(ETH_P_IPV6) : bpf_htons(ETH_P_IP);
  void *l3 = eth + 1;
  if (vlan_len) {
    struct vlan_hdr *vh = l3;
    if ((void *)(vh + 1) > data_end) return -1;
    eth->h_proto = vlan_proto;
    vh->tci = vlan.tci;
    vh->proto = l3proto;
    l3 = vh + 1;
  } else {
    eth->h_proto = l3proto;
  }
  if (outer6) {
    struct ipv6hdr *ip6 = l3;
    if ((void *)(ip6 + 1) > data_end) return -1;
    ip6->version = 6;
    ip6->priority = p->tos >> 4;
    ip6->flow_lbl[0] = (p->tos & 0xf) << 4;
    ip6->flow_lbl[1] = 0;
    ip6->flow_lbl[2] = 0;
    ip6->payload_len = bpf_htons(inner_len);
    ip6->nexthdr = inner_proto;
    ip6->hop_limit = ENCAP_TTL;
    __u32 *s = (__u32 *)&ip6->saddr;
    s[0] = cfg->encap_src6[0];
    s[1] = cfg->encap_src6[1];
    s[2] = cfg->encap_src6[2];
    s[3] = cfg->encap_src6[3] ^ bpf_htonl(vary);
    __builtin_memcpy(&ip6->daddr, r->addr, 16);
  } else {
    struct iphdr *iph = l3;
    if ((void *)(iph + 1) > data_end) return -1;
    iph->version = 4;
    iph->ihl = 5;
    iph->tos = p->tos;
    iph->tot_len = bpf_htons(inner_len + IPV4_HDR_LEN);
    iph->id = 0;
    iph->frag_off = 0;
    iph->ttl = ENCAP_TTL;
    iph->protocol = inner_proto;
    iph->check = 0;
    iph->saddr = (cfg->encap_src4 & bpf_htonl(0xffff0000)) | bpf_htonl(vary & 0xffff);
    iph->daddr = r->addr[0];
    iph->check = ipv4_hdr_csum((__u16 *)iph);
  }
  return 0;
}

#endif
