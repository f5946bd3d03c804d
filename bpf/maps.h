/* Every map of the balancer, in one place: key, value, who writes it. Sizes come from
 * consts.h (set by the loader with -D). The agent pins them under /sys/fs/bpf/sluice/. */
#ifndef SLUICE_MAPS_H
#define SLUICE_MAPS_H
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"

/* vips: struct vip4_key -> struct vip_meta (IPv4 VIPs). Written by the agent (sync). */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, MAX_VIPS);
  __type(key, struct vip4_key);
  __type(value, struct vip_meta);
} vips SEC(".maps");

/* vips6: struct vip_key -> struct vip_meta (IPv6 VIPs). Written by the agent (sync). */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, MAX_VIPS);
  __type(key, struct vip_key);
  __type(value, struct vip_meta);
} vips6 SEC(".maps");

/* rings: u32 (vip id * RING_SIZE + slot) -> u32 real slot (NO_REAL when empty). Written by
 * the agent: only the slots that changed, in one batch. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, MAX_VIPS * RING_SIZE);
  __type(key, __u32);
  __type(value, __u32);
} rings SEC(".maps");

/* reals: u32 real slot -> struct real_def. Written by the agent. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, MAX_REALS);
  __type(key, __u32);
  __type(value, struct real_def);
} reals SEC(".maps");

/* flows: struct flow4_key -> struct flow_val (IPv4 flows). Written by the program on a new
 * (or moved) flow. FLOWS_MAP_FLAGS (consts.h) is 0: the common LRU, whose per-CPU free lists
 * are refilled in batches from a shared list (cheaper per insert here than BPF_F_NO_COMMON_LRU). */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, FLOW_TABLE_SIZE);
  __uint(map_flags, FLOWS_MAP_FLAGS);
  __type(key, struct flow4_key);
  __type(value, struct flow_val);
} flows SEC(".maps");

/* flows6: struct flow_key -> struct flow_val (IPv6 flows). Written by the program. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, FLOW6_TABLE_SIZE);
  __uint(map_flags, FLOWS_MAP_FLAGS);
  __type(key, struct flow_key);
  __type(value, struct flow_val);
} flows6 SEC(".maps");

/* nat_back: struct nat_key -> struct nat_val. Written by the program on a new NAT flow;
 * read for packets from reals to clients, which are rewritten back to the VIP. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, NAT_TABLE_SIZE);
  __uint(map_flags, FLOWS_MAP_FLAGS);
  __type(key, struct nat_key);
  __type(value, struct nat_val);
} nat_back SEC(".maps");

/* frags: struct frag_key -> struct frag_val. Written by the program when a first (IPv4 or IPv6)
 * fragment of a VIP flow passes; read by the fragments that follow it. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, FRAG_TABLE_SIZE);
  __type(key, struct frag_key);
  __type(value, struct frag_val);
} frags SEC(".maps");

/* nat_frags: struct frag_key -> struct nat_val. Written by the program when the first fragment
 * of a NAT reply (real -> client) is rewritten back to the VIP; read by the reply's later
 * fragments, which carry no ports for a nat_back lookup. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, FRAG_TABLE_SIZE);
  __type(key, struct frag_key);
  __type(value, struct nat_val);
} nat_frags SEC(".maps");

/* stats: u32 index (see consts.h STATS_*) -> struct stat, per CPU. Written by the program;
 * the agent sums the CPUs (and zeroes a real slot's entry when it reuses the slot). */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, STATS_SIZE);
  __type(key, __u32);
  __type(value, struct stat);
} stats SEC(".maps");

/* config: u32 0 -> struct config. Written by the agent. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct config);
} config SEC(".maps");

/* tx_ports: u32 port index -> ifindex, for XDP_REDIRECT: to reals behind another interface
 * (real_def.tx_port), and index 0 (the balancer's own interface) for NAT replies that arrive on
 * one of those. Written by the agent. */
struct {
  __uint(type, BPF_MAP_TYPE_DEVMAP);
  __uint(max_entries, MAX_TX_PORTS);
  __type(key, __u32);
  __type(value, __u32);
} tx_ports SEC(".maps");

/* ports: u32 port index -> struct port_info (ifindex, source MAC, MTU of the interfaces in
 * tx_ports, and of port 0). Written by the agent from the interfaces' current state. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, MAX_TX_PORTS);
  __type(key, __u32);
  __type(value, struct port_info);
} ports SEC(".maps");

#endif
