/* hash.h - crescent's one string hash: 64-bit FNV-1a.
 *
 * Every hash of bytes in crescent is this one: a version's content hash
 * (12 hex digits, registry.h), the router's table of exact paths, the name
 * of a data folder's Redis socket, and the stdlib's hash() (entity tags).
 * It is fast and spreads well, but it is not a cryptographic hash: nothing
 * may rely on it against someone choosing the input. Its values are seen
 * outside the process (version labels, ETags, socket names) and compared
 * across processes and runs, so they must never change.
 *
 * Longer inputs hash in pieces: cr_fnv1a_more(cr_fnv1a(a, n), b, m) equals
 * the hash of a followed by b. */
#ifndef CR_HASH_H
#define CR_HASH_H

#include <stddef.h>
#include <stdint.h>

#define CR_FNV1A_BASIS 14695981039346656037ULL
#define CR_FNV1A_PRIME 1099511628211ULL

/* Continues hash h (CR_FNV1A_BASIS to start) over len bytes of data. */
static inline uint64_t cr_fnv1a_more(uint64_t h, const void *data, size_t len) {
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= CR_FNV1A_PRIME;
  }
  return h;
}

static inline uint64_t cr_fnv1a(const void *data, size_t len) { return cr_fnv1a_more(CR_FNV1A_BASIS, data, len); }

#endif
