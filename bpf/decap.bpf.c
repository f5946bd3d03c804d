// SPDX-License-Identifier: GPL-2.0
/* IPIP / IP6IP6 (and 4in6, 6in4) decapsulation in XDP, for reals whose kernel lacks the ipip
 * module: strips the outer IP header of packets the balancer encapsulated and passes the inner
 * packet to the stack, which accepts it on the VIP held on lo. Everything else passes as is. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Packets decapsulated / passed untouched, per CPU (index 0 / 1). */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 2);
  __type(key, __u32);
  __type(value, __u64);
} decap_stats SEC(".maps");

static __always_inline int done(__u32 idx, int action) {
  __u64 *c = bpf_map_lookup_elem(&decap_stats, &idx);
  if (c) (*c)++;
  return action;
}

SEC("xdp")
int decap(struct xdp_md *ctx) {
  void *data = (void *)(long)ctx->data;
  void *data_end = (void *)(long)ctx->data_end;
  struct ethhdr *eth = data;
  if ((void *)(eth + 1) > data_end) return done(1, XDP_PASS);
  __u8 inner;
  int olen;
  if (eth->h_proto == bpf_htons(ETH_P_IP)) {
    struct iphdr *iph = (void *)(eth + 1);
    if ((void *)(iph + 1) > data_end) return done(1, XDP_PASS);
    if (iph->version != 4 || iph->ihl != 5 || (iph->frag_off & bpf_htons(0x3fff))) return done(1, XDP_PASS);
    inner = iph->protocol;
    olen = sizeof(struct iphdr);
  } else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr *ip6 = (void *)(eth + 1);
    if ((void *)(ip6 + 1) > data_end) return done(1, XDP_PASS);
    inner = ip6->nexthdr;
    olen = sizeof(struct ipv6hdr);
  } else {
    return done(1, XDP_PASS);
  }
  __be16 inner_proto;
  if (inner == IPPROTO_IPIP) inner_proto = bpf_htons(ETH_P_IP);
  else if (inner == IPPROTO_IPV6) inner_proto = bpf_htons(ETH_P_IPV6);
  else return done(1, XDP_PASS);
  /* The new Ethernet header ends where the outer IP header ended. */
  struct ethhdr *neth = (void *)eth + olen;
  if ((void *)(neth + 1) > data_end) return done(1, XDP_PASS);
  struct ethhdr copy = *eth;
  __builtin_memcpy(neth->h_dest, copy.h_dest, ETH_ALEN);
  __builtin_memcpy(neth->h_source, copy.h_source, ETH_ALEN);
  neth->h_proto = inner_proto;
  if (bpf_xdp_adjust_head(ctx, olen)) return done(1, XDP_DROP);
  return done(0, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";
