/* Internet checksum helpers: incremental updates (RFC 1624) for NAT, a full sum for the
 * outer IPv4 header of IPIP. */
#ifndef SLUICE_CSUM_H
#define SLUICE_CSUM_H
#include <linux/types.h>

static __always_inline __u16 csum_fold32(__u32 sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return (__u16)sum;
}

/* Add a 32-bit word (as two 16-bit halves, in the order they sit in memory) to a sum. */
static __always_inline __u32 csum_add32(__u32 sum, __u32 w) {
  return sum + (w & 0xffff) + (w >> 16);
}

/* Checksum `*csum` (network order, as in the header) after 16-bit words `from` became `to`:
 * HC' = ~(~HC + ~m + m'). `diff` is the precomputed sum of (~from + to) words. */
static __always_inline void csum_apply(__u16 *csum, __u32 diff) {
  __u32 sum = (__u16)~*csum;
  sum += diff;
  *csum = ~csum_fold32(sum);
}

/* The diff sum for replacing `n` 32-bit words (memory order, loads stay in network order). */
static __always_inline __u32 csum_diff_words(const __u32 *from, const __u32 *to, int n) {
  __u32 d = 0;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    if (i < n) {
      d = csum_add32(d, ~from[i]);
      d = csum_add32(d, to[i]);
    }
  }
  return d;
}

static __always_inline __u32 csum_diff16(__u16 from, __u16 to) {
  return (__u16)~from + (__u32)to;
}

/* UDP over IPv4 may carry no checksum (0): keep it that way; a computed 0 is sent as 0xffff. */
static __always_inline void udp4_csum_apply(__u16 *csum, __u32 diff) {
  if (*csum == 0) return;
  csum_apply(csum, diff);
  if (*csum == 0) *csum = 0xffff;
}

/* UDP over IPv6 must carry a checksum: 0 would mean "none", which receivers drop; a computed 0
 * is sent as 0xffff (RFC 8200 §8.1), as for IPv4. */
static __always_inline void udp6_csum_apply(__u16 *csum, __u32 diff) {
  csum_apply(csum, diff);
  if (*csum == 0) *csum = 0xffff;
}

/* Full checksum of a 20-byte IPv4 header (its check field must be 0). */
static __always_inline __u16 ipv4_hdr_csum(const __u16 *h) {
  __u32 sum = 0;
#pragma unroll
  for (int i = 0; i < 10; i++) sum += h[i];
  return ~csum_fold32(sum);
}

#endif
