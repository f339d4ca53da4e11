/* text.h - small ASCII helpers the parsers share (HTTP, router, JSON). */
#ifndef CR_TEXT_H
#define CR_TEXT_H

#include <stddef.h>
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

#endif
