/* Bob Jenkins' lookup3 hash (the kernel's jhash), for choosing a ring slot. Deterministic
 * (fixed seed) so that every balancer sends a flow to the same real. */
#ifndef SLUICE_HASH_H
#define SLUICE_HASH_H
#include <linux/types.h>
#include "consts.h"

#define rol32(w, s) (((w) << (s)) | ((w) >> (32 - (s))))

#define __jhash_mix(a, b, c) \
  {                          \
    a -= c; a ^= rol32(c, 4); c += b; \
    b -= a; b ^= rol32(a, 6); a += c; \
    c -= b; c ^= rol32(b, 8); b += a; \
    a -= c; a ^= rol32(c, 16); c += b; \
    b -= a; b ^= rol32(a, 19); a += c; \
    c -= b; c ^= rol32(b, 4); b += a; \
  }

#define __jhash_final(a, b, c) \
  {                            \
    c ^= b; c -= rol32(b, 14); \
    a ^= c; a -= rol32(c, 11); \
    b ^= a; b -= rol32(a, 25); \
    c ^= b; c -= rol32(b, 16); \
    a ^= c; a -= rol32(c, 4);  \
    b ^= a; b -= rol32(a, 14); \
    c ^= b; c -= rol32(b, 24); \
  }

#define JHASH_INITVAL 0xdeadbeef

static __always_inline __u32 jhash_3words(__u32 a, __u32 b, __u32 c, __u32 initval) {
  a += JHASH_INITVAL;
  b += JHASH_INITVAL;
  c += initval;
  __jhash_final(a, b, c);
  return c;
}

static __always_inline __u32 jhash_2words(__u32 a, __u32 b, __u32 initval) {
  return jhash_3words(a, b, 0, initval + JHASH_INITVAL + (2 << 2));
}

/* Six words: an IPv6 source (4 words), the ports, the protocol. */
static __always_inline __u32 jhash_6words(const __u32 *k, __u32 w4, __u32 w5, __u32 initval) {
  __u32 a, b, c;
  a = b = c = JHASH_INITVAL + (6 << 2) + initval;
  a += k[0]; b += k[1]; c += k[2];
  __jhash_mix(a, b, c);
  a += k[3]; b += w4; c += w5;
  __jhash_final(a, b, c);
  return c;
}

/* The flow hash: the client's address and both ports (zero for src-ip VIPs). The VIP is not
 * hashed: each VIP has its own ring. */
static __always_inline __u32 flow_hash(const __u32 *src, int v6, __u32 ports) {
  if (v6) return jhash_6words(src, ports, 0, HASH_SEED);
  return jhash_2words(src[0], ports, HASH_SEED);
}

#endif
