// SPDX-License-Identifier: GPL-2.0
/* sluice's L4 balancer: an XDP Maglev forwarder (DESIGN §4).
 *
 *   parse -> VIP lookup {addr, port, proto} (port-0 fallback) -> flow table (LRU) -> on a miss
 *   (or when the flow's real is down/removed) the VIP's Maglev ring -> forward by mode:
 *   dsr (MAC rewrite, XDP_TX / devmap redirect), ipip (encapsulation; ICMP "too big" back to the
 *   client when the result would not fit the egress MTU), nat (rewrite; replies from reals
 *   rewritten back through nat_back).
 *
 * The same program runs on the balancer's interface (port 0) and on the egress interfaces of
 * reals behind other interfaces (tx_ports), where it sees NAT replies and sends them to port 0.
 *
 * The LRU-hit fast path does: one VIP lookup, one flow lookup, one real lookup, two per-CPU
 * counter updates, and no other map writes. IPv4 flows live in `flows` (16-byte keys), IPv6
 * flows in `flows6`. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "parse.h"
#include "hash.h"
#include "csum.h"
#include "nat.h"
#include "encap.h"
#include "icmp.h"

static __always_inline void count(__u32 counter) {
  __u32 idx = STATS_GLOBAL_BASE + counter;
  struct stat *s = bpf_map_lookup_elem(&stats, &idx);
  if (s) s->packets++;
}

static __always_inline int pass(__u32 counter) {
  count(counter);
  return XDP_PASS;
}

static __always_inline int drop(__u32 counter) {
  count(counter);
  return XDP_DROP;
}

static __always_inline void account(__u32 idx, __u64 bytes, __u32 new_flow) {
  struct stat *s = bpf_map_lookup_elem(&stats, &idx);
  if (s) {
    s->packets++;
    s->bytes += bytes;
    s->new_flows += new_flow;
  }
}

/* The VIP of a packet's destination and `port`: IPv4 VIPs have their own, smaller-keyed map. */
static __always_inline struct vip_meta *vip_lookup(const struct packet *p, __be16 port) {
  if (p->v6) {
    struct vip_key k = { .port = port, .proto = p->flow.proto };
    __builtin_memcpy(k.addr, p->flow.dst, 16);
    return bpf_map_lookup_elem(&vips6, &k);
  }
  struct vip4_key k = { .addr = p->flow.dst[0], .port = port, .proto = p->flow.proto };
  return bpf_map_lookup_elem(&vips, &k);
}

static __always_inline int transmit(const struct real_def *r) {
  if (r->tx_port) return bpf_redirect_map(&tx_ports, r->tx_port, XDP_DROP);
  return XDP_TX;
}

/* To the real's next hop. Out of the interface the frame came in on, the source is the MAC it
 * was sent to (ours); out of another, that interface's (a frame with the ingress MAC as source
 * would teach the switches behind it a wrong port, and reals would answer to a MAC not there). */
static __always_inline void set_macs(struct ethhdr *eth, const struct real_def *r) {
  __u32 port = r->tx_port;
  struct port_info *pi = port ? bpf_map_lookup_elem(&ports, &port) : NULL;
  if (pi) __builtin_memcpy(eth->h_source, pi->mac, ETH_ALEN);
  else __builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
  __builtin_memcpy(eth->h_dest, r->mac, ETH_ALEN);
}

/* Does `p` exceed the MTU of tx port `port` once `olen` bytes of outer header are added? (ipip:
 * 20 or 40 bytes on any port; dsr/nat: 0, checked on ports other than the ingress, whose MTU may
 * be smaller: the driver would drop the frame without a word.) Too big: ICMP "fragmentation
 * needed" / "packet too big" back to the client where allowed (DF set or IPv6; never about an
 * ICMP error or a later fragment), else a counted drop. A packet longer than the balancer's own
 * interface carries did not arrive as one frame: a GRO aggregate (generic mode) whose segments
 * may well fit; no ICMP about it (the client would lower its path MTU for nothing), a counted
 * drop. Returns -1 when the packet fits. */
static __always_inline int too_big(struct xdp_md *ctx, const struct packet *p, __u32 port, __u32 olen) {
  struct port_info *pi = bpf_map_lookup_elem(&ports, &port);
  if (!pi || !pi->mtu || p->ip_len + olen <= pi->mtu) return -1;
  __u32 mtu = pi->mtu;
  if (p->icmp || p->frag == 2 || !p->df || p->ip_len < TOO_BIG_QUOTE || mtu <= olen) return drop(G_DROP_TOO_BIG);
  __u32 k0 = 0;
  struct port_info *own = bpf_map_lookup_elem(&ports, &k0);
  if (own && own->mtu && p->ip_len > own->mtu && (!own->ifindex || own->ifindex == ctx->ingress_ifindex)) return drop(G_DROP_TOO_BIG);
  if (too_big_answer(ctx, p->v6, p->l3_off, mtu - olen)) return drop(G_DROP_TOO_BIG);
  count(G_ICMP_TOO_BIG);
  return XDP_TX;
}

/* ipip: encapsulated, unless too big for the egress MTU (too_big). */
static __always_inline int ipip_forward(struct xdp_md *ctx, struct packet *p, const struct real_def *r, __u32 hash) {
  __u32 k0 = 0;
  struct config *cfg = bpf_map_lookup_elem(&config, &k0);
  __u32 port = r->tx_port;
  struct port_info *pi = bpf_map_lookup_elem(&ports, &port);
  if (!cfg) return drop(G_DROP_ENCAP);
  int rc = too_big(ctx, p, port, (r->flags & REAL_F_IPV6) ? IPV6_HDR_LEN : IPV4_HDR_LEN);
  if (rc >= 0) return rc;
  if (encap(ctx, p, r, cfg, pi, hash)) return drop(G_DROP_ENCAP);
  return transmit(r);
}

static __always_inline void frag_key_of(struct frag_key *fk, const struct packet *p) {
  __builtin_memcpy(fk->src, p->flow.src, 16);
  __builtin_memcpy(fk->dst, p->flow.dst, 16);
  fk->id = p->ip_id;
  fk->proto = p->flow.proto;
}

/* A NAT reply (or a later fragment of one) rewritten back to the VIP: to the client's hop,
 * through port 0 (clients are reached there; a reply from a real behind another interface is
 * redirected to it, with its MAC as source). */
static __always_inline int nat_reply_out(struct xdp_md *ctx, struct ethhdr *eth, const struct nat_val *nv) {
  __u32 k0 = 0;
  struct port_info *pi = bpf_map_lookup_elem(&ports, &k0);
  if (pi && pi->ifindex && pi->ifindex != ctx->ingress_ifindex) {
    __builtin_memcpy(eth->h_source, pi->mac, ETH_ALEN);
    __builtin_memcpy(eth->h_dest, nv->client_mac, ETH_ALEN);
    return bpf_redirect_map(&tx_ports, 0, XDP_DROP);
  }
  __builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
  __builtin_memcpy(eth->h_dest, nv->client_mac, ETH_ALEN);
  return XDP_TX;
}

/* A reply from a NAT real (src real:port, dst client), or an ICMP error about one of its flows
 * (the quote's flow, reversed, has the same orientation): back to the VIP (nat_reply_out). */
static __always_inline int nat_reply(struct xdp_md *ctx, struct packet *p, struct ethhdr *eth, void *data_end) {
  struct nat_key nk = {};
  __builtin_memcpy(nk.real, p->flow.src, 16);
  __builtin_memcpy(nk.client, p->flow.dst, 16);
  nk.real_port = p->flow.sport;
  nk.client_port = p->flow.dport;
  nk.proto = p->flow.proto;
  struct nat_val *nv = bpf_map_lookup_elem(&nat_back, &nk);
  if (!nv) return pass(G_PASS_NOT_VIP);
  if (p->icmp) {
    nat_icmp(p, data_end, nv->vip, nv->vip_port, 0);
    count(G_ICMP_FWD);
    count(G_NAT_REPLY);
    return nat_reply_out(ctx, eth, nv);
  }
  /* A fragmented reply: its later fragments have no ports, so they find the VIP through this. */
  if (p->frag == 1) {
    struct frag_key fk = {};
    frag_key_of(&fk, p);
    bpf_map_update_elem(&nat_frags, &fk, nv, BPF_ANY);
  }
  nat_rewrite(p, data_end, nv->vip, nv->vip_port, 0);
  count(G_NAT_REPLY);
  return nat_reply_out(ctx, eth, nv);
}

/* A later fragment (IPv4 or IPv6): it follows its first fragment's real, if that one passed here. */
static __always_inline int later_fragment(struct packet *p, struct ethhdr *eth, void *data_end, struct xdp_md *ctx) {
  struct frag_key fk = {};
  frag_key_of(&fk, p);
  struct frag_val *fv = bpf_map_lookup_elem(&frags, &fk);
  if (!fv) {
    /* Or a later fragment of a NAT reply whose first fragment was rewritten to the VIP. */
    struct nat_val *nv = bpf_map_lookup_elem(&nat_frags, &fk);
    if (!nv) return pass(G_PASS_FRAG);
    nat_rewrite(p, data_end, nv->vip, 0, 0);
    count(G_FRAG_FWD);
    count(G_NAT_REPLY);
    return nat_reply_out(ctx, eth, nv);
  }
  __u32 ri = fv->real;
  struct real_def *r = bpf_map_lookup_elem(&reals, &ri);
  if (!r || r->gen != fv->gen || (r->flags & REAL_F_DOWN)) return pass(G_PASS_FRAG);
  __u64 bytes = data_end - (void *)eth;
  account(fv->vip & 0xffff, bytes, 0);
  account(STATS_REAL_BASE + ri, bytes, 0);
  count(G_FRAG_FWD);
  __u32 mode = fv->vip >> 16;
  if (mode == MODE_IPIP) return ipip_forward(ctx, p, r, flow_hash(p->flow.src, p->v6, 0));
  if (!(r->flags & REAL_F_IPV6) != !p->v6) return drop(G_DROP_FAMILY);
  if (r->tx_port) {
    int rc = too_big(ctx, p, r->tx_port, 0);
    if (rc >= 0) return rc;
  }
  if (mode == MODE_NAT) nat_rewrite(p, data_end, r->addr, 0, 1);
  set_macs(eth, r);
  return transmit(r);
}

SEC("xdp")
int balancer(struct xdp_md *ctx) {
  void *data = (void *)(long)ctx->data;
  void *data_end = (void *)(long)ctx->data_end;
  struct ethhdr *eth = data;
  struct packet p = {};
  int rc;

  if ((void *)(eth + 1) > data_end) return pass(G_PASS_MALFORMED);
  __be16 proto = eth->h_proto;
  void *l3 = eth + 1;
  p.l3_off = sizeof(struct ethhdr);
  if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
    struct vlan_hdr *vh = l3;
    if ((void *)(vh + 1) > data_end) return pass(G_PASS_MALFORMED);
    proto = vh->proto;
    l3 = vh + 1;
    p.l3_off += sizeof(struct vlan_hdr);
  }
  if (proto == bpf_htons(ETH_P_IP)) rc = parse_ipv4(&p, l3, data_end);
  else if (proto == bpf_htons(ETH_P_IPV6)) rc = parse_ipv6(&p, l3, data_end);
  else return pass(G_PASS_NOT_IP);
  if (rc != PARSE_OK) return pass(rc);

  if (p.frag == 2) return later_fragment(&p, eth, data_end, ctx);

  /* The VIP: exact port, then the port-0 wildcard if some VIP has one. */
  struct vip_meta *vip = vip_lookup(&p, p.flow.dport);
  __be16 vip_port = p.flow.dport; /* the VIP's own port: 0 for the wildcard */
  if (!vip) {
    __u32 k0 = 0;
    struct config *cfg = bpf_map_lookup_elem(&config, &k0);
    if (!cfg) return pass(G_PASS_NOT_VIP);
    if (cfg->flags & CFG_F_WILDCARD) vip = vip_lookup(&p, 0);
    vip_port = 0;
    if (!vip) {
      if (cfg->flags & CFG_F_NAT) return nat_reply(ctx, &p, eth, data_end);
      return pass(G_PASS_NOT_VIP);
    }
  }
  /* Toward a VIP, only the errors that carry a path MTU are followed to the real. */
  if (p.icmp == 2) return pass(G_PASS_NOT_VIP);
  __u32 vip_id = vip->id;
  if (vip_id >= MAX_VIPS) return drop(G_DROP_NO_REAL);
  __u8 mode = vip->mode;

  /* The flow: src-ip VIPs keep one entry per client and VIP: no client port in the key, and the
   * VIP's own port (0 for a port-0 VIP, which keeps a client on one real across its ports), so
   * that src-ip VIPs on other ports of the address keep entries of their own. */
  __be16 sport = p.flow.sport, dport = p.flow.dport;
  int src_ip = vip->flags & VIP_F_SRC_IP_HASH;
  if (src_ip) {
    p.flow.sport = 0;
    p.flow.dport = vip_port;
  }
  struct real_def *r;
  __u32 ri;
  __u32 new_flow = 0;
  struct flow4_key k4 = {
    .src = p.flow.src[0], .dst = p.flow.dst[0], .sport = p.flow.sport, .dport = p.flow.dport, .proto = p.flow.proto,
  };
  /* A SYN opens a new connection: it goes straight to the ring (as in Katran), which saves a
   * flow lookup on every new TCP flow. A src-ip VIP's flow is the client's, so SYNs look it up. */
  struct flow_val *fv = NULL;
  if (!p.syn || src_ip) {
    /* Two call sites, one map each: the verifier inlines a lookup only for a known map. */
    if (p.v6) fv = bpf_map_lookup_elem(&flows6, &p.flow);
    else fv = bpf_map_lookup_elem(&flows, &k4);
  }
  if (fv) {
    ri = fv->real;
    r = bpf_map_lookup_elem(&reals, &ri);
    /* The key has no VIP id: a flow another VIP of the address remembered (a port-0 VIP before
     * a VIP of this port was added) is not this VIP's and is re-chosen from its ring. Owner 0:
     * a slot the agent did not write (every slot it uses carries its VIP). */
    if (r && r->gen == fv->gen && !(r->flags & REAL_F_DOWN) && (!r->owner || r->owner == vip_id + 1)) goto forward;
    count(G_FLOW_RECHOSEN);
  }
  {
    /* src-ip: the client's address alone picks the real (every balancer, every port alike). */
    __u32 ports = src_ip ? 0 : ((__u32)p.flow.sport << 16) | p.flow.dport;
    __u32 h = flow_hash(p.flow.src, p.v6, ports);
    __u32 slot = vip_id * RING_SIZE + h % RING_SIZE;
    __u32 *rp = bpf_map_lookup_elem(&rings, &slot);
    if (!rp || *rp >= MAX_REALS) return drop(G_DROP_NO_REAL);
    ri = *rp;
    r = bpf_map_lookup_elem(&reals, &ri);
    if (!r) return drop(G_DROP_NO_REAL);
    /* The agent takes a real out of the ring before it marks it down; should a packet still see
     * the two out of order, it is dropped (the client retries onto the new ring) rather than
     * sent to the real or remembered for it. */
    if (r->flags & REAL_F_DOWN) return drop(G_DROP_REAL_DOWN);
    new_flow = 1;
    if (!p.icmp) {
      struct flow_val nv = { .real = ri, .gen = r->gen };
      if (p.v6) {
        bpf_map_update_elem(&flows6, &p.flow, &nv, BPF_ANY);
        asm volatile("" ::: "memory"); /* keeps clang from merging the two calls (the verifier then could not call the LRU update directly) */
      } else {
        bpf_map_update_elem(&flows, &k4, &nv, BPF_ANY);
      }
    }
  }
forward:
  {
    __u64 bytes = data_end - data;
    account(vip_id, bytes, new_flow);
    account(STATS_REAL_BASE + ri, bytes, new_flow);
  }
  if (p.icmp) count(G_ICMP_FWD);
  if (p.frag == 1) {
    struct frag_key fk = {};
    frag_key_of(&fk, &p);
    struct frag_val fval = { .real = ri, .gen = r->gen, .vip = vip_id | ((__u32)mode << 16) };
    bpf_map_update_elem(&frags, &fk, &fval, BPF_ANY);
  }

  if (mode == MODE_IPIP) return ipip_forward(ctx, &p, r, flow_hash(p.flow.src, p.v6, ((__u32)sport << 16) | dport));
  if (!(r->flags & REAL_F_IPV6) != !p.v6) return drop(G_DROP_FAMILY);
  /* Out of another interface than it came in by, the packet meets that interface's MTU. */
  if (r->tx_port) {
    rc = too_big(ctx, &p, r->tx_port, 0);
    if (rc >= 0) return rc;
  }
  if (mode == MODE_NAT) {
    if (p.icmp) {
      nat_icmp(&p, data_end, r->addr, r->port, 1);
      set_macs(eth, r);
      return transmit(r);
    }
    /* The way back, per connection. A src-ip VIP's flow entry covers all of a client's
     * connections, so a hit there may still be a new connection: check (that VIP kind only). */
    if (new_flow || src_ip) {
      struct nat_key nk = {};
      __builtin_memcpy(nk.real, r->addr, 16);
      __builtin_memcpy(nk.client, p.flow.src, 16);
      nk.real_port = r->port ? r->port : dport;
      nk.client_port = sport;
      nk.proto = p.flow.proto;
      if (new_flow || !bpf_map_lookup_elem(&nat_back, &nk)) {
        struct nat_val nv = { .vip_port = dport };
        __builtin_memcpy(nv.vip, p.flow.dst, 16);
        __builtin_memcpy(nv.client_mac, eth->h_source, ETH_ALEN);
        bpf_map_update_elem(&nat_back, &nk, &nv, BPF_ANY);
      }
    }
    nat_rewrite(&p, data_end, r->addr, r->port, 1);
  }
  set_macs(eth, r);
  return transmit(r);
}

char LICENSE[] SEC("license") = "GPL";
