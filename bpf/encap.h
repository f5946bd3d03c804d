/* IPIP / IP6IP6 (and 4in6, 6in4) encapsulation to a real. The outer destination is the real;
 * the outer source is the configured prefix with its host bits taken from the flow hash, so the
 * real's NIC (which hashes the outer header) spreads flows over its queues while every packet of
 * a flow keeps one source. The next hop is real_def.mac (the real, or the gateway the route to
 * it names, as the agent resolved it), else the configured gateway's. */
#ifndef SLUICE_ENCAP_H
#define SLUICE_ENCAP_H
#include "csum.h"
#include "parse.h"

/* `hash`: the flow hash over the client's address and real ports. `pi`: the egress port's
 * (source MAC for tx_port > 0); the caller has checked the encapsulated size against its MTU. */
static __always_inline int encap(struct xdp_md *ctx, struct packet *p, const struct real_def *r, const struct config *cfg,
                                 const struct port_info *pi, __u32 hash) {
  void *data = (void *)(long)ctx->data;
  void *data_end = (void *)(long)ctx->data_end;
  struct ethhdr *eth = data;
  if ((void *)(eth + 1) > data_end) return -1;
  /* Save what the new headers overwrite: our MAC (the old destination) and a VLAN tag. */
  __u8 src_mac[ETH_ALEN];
  if (r->tx_port && pi) __builtin_memcpy(src_mac, pi->mac, ETH_ALEN);
  else __builtin_memcpy(src_mac, eth->h_dest, ETH_ALEN);
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
  __be32 vary = bpf_htonl(hash);

  if (bpf_xdp_adjust_head(ctx, -olen)) return -1;
  data = (void *)(long)ctx->data;
  data_end = (void *)(long)ctx->data_end;
  eth = data;
  if ((void *)(eth + 1) > data_end) return -1;
  if (*(__u32 *)r->mac | *(__u16 *)&r->mac[4]) __builtin_memcpy(eth->h_dest, r->mac, ETH_ALEN);
  else __builtin_memcpy(eth->h_dest, cfg->gw_mac, ETH_ALEN);
  __builtin_memcpy(eth->h_source, src_mac, ETH_ALEN);
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
    s[3] = (cfg->encap_src6[3] & ~cfg->encap_mask6) | (vary & cfg->encap_mask6);
    __builtin_memcpy(&ip6->daddr, r->addr, 16);
  } else {
    struct iphdr *iph = l3;
    if ((void *)(iph + 1) > data_end) return -1;
    iph->version = 4;
    iph->ihl = 5;
    iph->tos = p->tos;
    iph->tot_len = bpf_htons(inner_len + IPV4_HDR_LEN);
    /* Routers may fragment the outer packet exactly when they could the inner one (DF copied;
     * an IPv6 inner packet never). Its id must then differ between the packets of a flow: the
     * inner id (which does) mixed with the flow hash (so flows from one client differ too). */
    iph->id = (p->v6 ? 0 : (__be16)p->ip_id) ^ bpf_htons(hash >> 16);
    iph->frag_off = p->df ? bpf_htons(IP_DF) : 0;
    iph->ttl = ENCAP_TTL;
    iph->protocol = inner_proto;
    iph->check = 0;
    iph->saddr = (cfg->encap_src4 & ~cfg->encap_mask4) | (vary & cfg->encap_mask4);
    iph->daddr = r->addr[0];
    iph->check = ipv4_hdr_csum((__u16 *)iph);
  }
  return 0;
}

#endif
