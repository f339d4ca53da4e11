/* wire.h - packing values into bytes and back, between crescent's processes.
 *
 * The master, its validator and its workers run the same binary on the same
 * machine, so integers and doubles go in host order. Strings are a u32
 * length and the bytes (UINT32_MAX for NULL). A reader never reads past its
 * end: any shortfall sets bad, and every later read returns zero values. */
#ifndef CR_WIRE_H
#define CR_WIRE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"

static inline int cr_wire_u32(cr_buf_t *b, uint32_t v) { return cr_buf_append(b, &v, 4); }
static inline int cr_wire_u64(cr_buf_t *b, uint64_t v) { return cr_buf_append(b, &v, 8); }
static inline int cr_wire_f64(cr_buf_t *b, double v) { return cr_buf_append(b, &v, 8); }
/* CR_ETOOBIG, writing nothing, for n >= UINT32_MAX: its length would not fit
 * the u32 (or would read as NULL), and the reader would lose its place. */
static inline int cr_wire_bytes(cr_buf_t *b, const char *s, size_t n) {
  if (!s) return cr_wire_u32(b, UINT32_MAX);
  if (n >= UINT32_MAX) return CR_ETOOBIG;
  return cr_wire_u32(b, (uint32_t)n) || cr_buf_append(b, s, n);
}
static inline int cr_wire_str(cr_buf_t *b, const char *s) { return cr_wire_bytes(b, s, s ? strlen(s) : 0); }

typedef struct cr_wire_reader_s {
  const char *p, *end;
  int bad;
} cr_wire_reader_t;

static inline void cr_wire_reader(cr_wire_reader_t *r, const char *data, size_t len) {
  r->p = data;
  r->end = data ? data + len : data; /* an empty cr_buf_t has no data */
  r->bad = 0;
}

static inline int cr_wire_take(cr_wire_reader_t *r, void *out, size_t n) {
  if (r->bad || (size_t)(r->end - r->p) < n) {
    r->bad = 1;
    memset(out, 0, n);
    return -1;
  }
  memcpy(out, r->p, n);
  r->p += n;
  return 0;
}

static inline uint32_t cr_wire_get_u32(cr_wire_reader_t *r) {
  uint32_t v;
  cr_wire_take(r, &v, 4);
  return v;
}
static inline uint64_t cr_wire_get_u64(cr_wire_reader_t *r) {
  uint64_t v;
  cr_wire_take(r, &v, 8);
  return v;
}
static inline double cr_wire_get_f64(cr_wire_reader_t *r) {
  double v;
  cr_wire_take(r, &v, 8);
  return v;
}
/* A malloc'd copy (NUL-terminated, length in *len if given), or NULL. */
static inline char *cr_wire_get_bytes(cr_wire_reader_t *r, size_t *len) {
  uint32_t n = cr_wire_get_u32(r);
  if (len) *len = 0;
  if (r->bad || n == UINT32_MAX) return NULL;
  if ((size_t)(r->end - r->p) < n) {
    r->bad = 1;
    return NULL;
  }
  char *s = malloc((size_t)n + 1);
  if (!s) {
    r->bad = 1;
    return NULL;
  }
  memcpy(s, r->p, n);
  s[n] = '\0';
  r->p += n;
  if (len) *len = n;
  return s;
}

#endif
