/* jsontext.c - JSON text from C: quoted strings and numbers. */
#include "jsontext.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "text.h"

/* Bytes a JSON string cannot hold as they are: controls, '"' and '\\'. */
static const unsigned char needs_escape[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    ['"'] = 1, ['\\'] = 1};

/* What escaping adds to a byte: 0, 1 (\n, \", ...) or 5 (\u00XX). */
static const unsigned char escape_extra[256] = {
    5, 5, 5, 5, 5, 5, 5, 5, 1, 1, 1, 5, 1, 1, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
    ['"'] = 1, ['\\'] = 1};

/* The exact length of s as a quoted JSON string; from is the first byte that
 * needs an escape. */
static size_t escaped_len(const char *s, size_t len, size_t from) {
  size_t n = len + 2;
  for (size_t i = from; i < len; i++) n += escape_extra[(unsigned char)s[i]];
  return n;
}

/* Writes s[i..len) escaped, and the closing quote, at o (room checked). */
static void escape_into(char *o, const char *s, size_t i, size_t len) {
  static const char hex[] = "0123456789abcdef";
  for (; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!needs_escape[c]) {
      *o++ = (char)c;
      continue;
    }
    *o++ = '\\';
    switch (c) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '\n': *o++ = 'n'; break;
    case '\r': *o++ = 'r'; break;
    case '\t': *o++ = 't'; break;
    case '\b': *o++ = 'b'; break;
    case '\f': *o++ = 'f'; break;
    default:
      *o++ = 'u';
      *o++ = '0';
      *o++ = '0';
      *o++ = hex[c >> 4];
      *o++ = hex[c & 15];
    }
  }
  *o = '"';
}

/* Appends s quoted, if that keeps b->len within limit (else CR_ETOOBIG).
 * Reserves exactly what the text takes: most strings need no escape and
 * are copied whole; the others are measured first. */
int cr_json_escape_limited(cr_buf_t *b, const char *s, size_t len, size_t limit) {
  size_t i = 0;
  while (i < len && !needs_escape[(unsigned char)s[i]]) i++;
  size_t n = i == len ? len + 2 : escaped_len(s, len, i);
  if (n > limit || b->len > limit - n) return CR_ETOOBIG;
  if (cr_buf_reserve(b, n)) return CR_ENOMEM;
  char *o = b->data + b->len;
  *o = '"';
  memcpy(o + 1, s, i);
  escape_into(o + 1 + i, s, i, len);
  b->len += n;
  return 0;
}

int cr_json_escape(cr_buf_t *b, const char *s, size_t len) {
  int rc = cr_json_escape_limited(b, s, len, SIZE_MAX);
  return rc == CR_ETOOBIG ? CR_ENOMEM : rc;
}

int cr_json_format_number(double v, char out[CR_JSON_NUMBER_MAX]) {
  if (isnan(v) || isinf(v)) return CR_EINVAL;
  if (v == floor(v) && fabs(v) < 9.2e18) {
    if (v == 0 && signbit(v)) {
      memcpy(out, "-0", 2);
      return 2;
    }
    uint64_t u = v < 0 ? 0ULL - (uint64_t)(long long)v : (uint64_t)v;
    char digits[24];
    int nd = 0, o = 0;
    do {
      digits[nd++] = (char)('0' + u % 10);
      u /= 10;
    } while (u);
    if (v < 0) out[o++] = '-';
    while (nd) out[o++] = digits[--nd];
    return o;
  }
  /* Fast path, no printf: the fewest decimals k (up to 15) such that
   * m = round(v * 10^k) gives back v as m / 10^k. Division by an exact power
   * of ten is correctly rounded, and so is reading the decimal "m e-k", so the
   * text reads back to v. Covers everyday numbers (98.6, 9.99, 0.1). */
  static const double pow10[] = {1,    1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
  double a = fabs(v);
  if (a >= 1e-6 && a < 1e15) {
    for (int k = 1; k <= 15; k++) {
      double scaled = a * pow10[k];
      if (scaled >= 9007199254740992.0) break;
      double m = floor(scaled + 0.5);
      if (m / pow10[k] == a) {
        char digits[24];
        uint64_t im = (uint64_t)m;
        int nd = 0;
        do {
          digits[nd++] = (char)('0' + im % 10);
          im /= 10;
        } while (im);
        while (nd <= k) digits[nd++] = '0'; /* at least one digit before the point */
        int o = 0;
        if (v < 0) out[o++] = '-';
        for (int i = nd - 1; i >= k; i--) out[o++] = digits[i];
        out[o++] = '.';
        for (int i = k - 1; i >= 0; i--) out[o++] = digits[i];
        return o;
      }
    }
  }
  /* 15 digits round-trip for most doubles; subnormals carry fewer digits, so
   * look for their shortest form from 1. */
  int first = fabs(v) < DBL_MIN ? 1 : 15, n = 0;
  for (int prec = first; prec <= 17; prec++) {
    n = snprintf(out, CR_JSON_NUMBER_MAX, "%.*g", prec, v);
    if (prec == 17 || strtod(out, NULL) == v) break;
  }
  return n;
}

int cr_json_number(cr_buf_t *b, double v) {
  char text[CR_JSON_NUMBER_MAX];
  int n = cr_json_format_number(v, text);
  if (n < 0) return n;
  return cr_buf_append(b, text, (size_t)n);
}

