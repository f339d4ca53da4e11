/* text.h - small ASCII helpers the parsers and writers share (HTTP, router,
 * JSON, response headers). */
#ifndef CR_TEXT_H
#define CR_TEXT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The value of a hex digit, or -1. */
static inline int cr_hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Does s (n bytes, any case) equal lower, a lower-case literal? */
static inline int cr_ieq(const char *s, size_t n, const char *lower) {
  if (n != strlen(lower)) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
    if (c != lower[i]) return 0;
  }
  return 1;
}

/* Writers into a buffer the caller has reserved room in: each returns the
 * end of what it wrote. */
static inline char *cr_put(char *o, const char *s, size_t n) {
  memcpy(o, s, n);
  return o + n;
}

/* The decimal digits of v (at most 20). */
static inline char *cr_put_u64(char *o, uint64_t v) {
  if (v < 10) {
    *o++ = (char)('0' + v);
    return o;
  }
  char tmp[20];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) *o++ = tmp[--n];
  return o;
}

#endif
