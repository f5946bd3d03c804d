// SPDX-License-Identifier: GPL-2.0
/* Reference programs for tests and benches:
 *   xdp_pass  - passes everything (veth peers need an XDP program to receive XDP_TX frames);
 *   xdp_swap  - swaps the MACs and sends the frame back (XDP_TX): the floor for any XDP
 *               forwarder, measured beside the balancer in bench/xdp.bench.ts;
 *   xdp_fwd   - rewrites the destination MAC of IPv4 frames for fwd_dst to fwd_mac and sends them back
 *               out (XDP_TX): the "trivial XDP forwarder" of bench/xdp-conn.bench.ts;
 *   xdp_lru_insert - inserts the IPv4 5-tuple into a 1M-entry LRU hash and swaps the MACs: the
 *               floor of any new-flow path that remembers the flow (bench/xdp.bench.ts);
 *   xdp_count_src - passes everything, counting the frames whose IP source is count_addr by their
 *               source MAC: which hop a host's replies really came from (test/e2e). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx) {
  return XDP_PASS;
}

SEC("xdp")
int xdp_swap(struct xdp_md *ctx) {
  void *data = (void *)(long)ctx->data;
  void *data_end = (void *)(long)ctx->data_end;
  struct ethhdr *eth = data;
  if ((void *)(eth + 1) > data_end) return XDP_PASS;
  __u8 tmp[ETH_ALEN];
  __builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
  __builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
  __builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
  return XDP_TX;
}

/* fwd: u32 0 -> the real's MAC (8 bytes, the last two unused); all-zero = pass. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} fwd_mac SEC(".maps");

/* fwd_dst: u32 0 -> the IPv4 destination forwarded (network order); other packets pass. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u32);
} fwd_dst SEC(".maps");

SEC("xdp")
int xdp_fwd(struct xdp_md *ctx) {
  void *data = (void *)(long)ctx->data;
  void *data_end = (void *)(long)ctx->data_end;
  struct ethhdr *eth = data;
  if ((void *)(eth + 1) + 20 > data_end) return XDP_PASS;
  if (eth->h_proto != bpf_htons(ETH_P_IP)) return XDP_PASS;
  __u32 k = 0;
  __u32 *dst = bpf_map_lookup_elem(&fwd_dst, &k);
  __u8 *mac = bpf_map_lookup_elem(&fwd_mac, &k);
  if (!dst || !mac) return XDP_PASS;
  __u32 daddr = *(__u32 *)((void *)(eth + 1) + 16);
  if (daddr != *dst) return XDP_PASS;
  __builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
  __builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
  return XDP_TX;
}

struct ref_flow4 {
  __be32 src;
  __be32 dst;
  __be32 ports;
  __u32 proto;
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 1000000);
  __type(key, struct ref_flow4);
  __type(value, __u64);
} ref_flows SEC(".maps");

SEC("xdp")
int xdp_lru_insert(struct xdp_md *ctx) {
  void *data = (void *)(long)ctx->data;
  void *data_end = (void *)(long)ctx->data_end;
  struct ethhdr *eth = data;
  /* Ethernet + a 20-byte IPv4 header + ports; anything else passes. */
  if ((void *)(eth + 1) + 24 > data_end || eth->h_proto != bpf_htons(ETH_P_IP)) return XDP_PASS;
  void *ip = eth + 1;
  struct ref_flow4 k = { *(__be32 *)(ip + 12), *(__be32 *)(ip + 16), *(__be32 *)(ip + 20), *(__u8 *)(ip + 9) };
  __u64 v = 1;
  bpf_map_update_elem(&ref_flows, &k, &v, BPF_ANY);
  __u8 tmp[ETH_ALEN];
  __builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
  __builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
  __builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
  return XDP_TX;
}

/* count_addr: u32 0 -> the IPv4 (first 4 bytes, v6 = 0) or IPv6 (v6 = 1) source to count. */
struct count_addr {
  __u8 addr[16];
  __u32 v6;
};
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct count_addr);
} count_addr SEC(".maps");

/* src_counts: source MAC (6 bytes, zero-padded) -> frames from count_addr seen with it. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 64);
  __type(key, __u64);
  __type(value, __u64);
} src_counts SEC(".maps");

SEC("xdp")
int xdp_count_src(struct xdp_md *ctx) {
  void *data = (void *)(long)ctx->data;
  void *data_end = (void *)(long)ctx->data_end;
  struct ethhdr *eth = data;
  __u32 k = 0;
  struct count_addr *want = bpf_map_lookup_elem(&count_addr, &k);
  if (!want || (void *)(eth + 1) + 40 > data_end) return XDP_PASS;
  void *ip = eth + 1;
  const __u32 *w = (const __u32 *)want->addr;
  if (eth->h_proto == bpf_htons(ETH_P_IP) && !want->v6) {
    if (*(__u32 *)(ip + 12) != w[0]) return XDP_PASS;
  } else if (eth->h_proto == bpf_htons(ETH_P_IPV6) && want->v6) {
    const __u32 *s = ip + 8;
    if (s[0] != w[0] || s[1] != w[1] || s[2] != w[2] || s[3] != w[3]) return XDP_PASS;
  } else {
    return XDP_PASS;
  }
  __u64 mac = 0, one = 1;
  __builtin_memcpy(&mac, eth->h_source, ETH_ALEN);
  __u64 *n = bpf_map_lookup_elem(&src_counts, &mac);
  if (n) __sync_fetch_and_add(n, 1);
  else bpf_map_update_elem(&src_counts, &mac, &one, BPF_NOEXIST);
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
