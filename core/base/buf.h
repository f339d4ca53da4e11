/* buf.h - a growable byte buffer.
 *
 * The one way crescent builds bytes: HTTP responses, JSON, log lines. A buffer
 * owns its memory; cr_buf_free() releases it. Appends never fail silently:
 * they return CR_ENOMEM and leave the buffer as it was. */
#ifndef CR_BUF_H
#define CR_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include "error.h"

typedef struct cr_buf_s {
  char *data;
  size_t len;
  size_t cap;
} cr_buf_t;

#define CR_BUF_INIT {NULL, 0, 0}

void cr_buf_init(cr_buf_t *b);
void cr_buf_free(cr_buf_t *b);
/* Grows the buffer for `extra` more bytes (cr_buf_reserve's slow path). */
int cr_buf_grow(cr_buf_t *b, size_t extra);

/* Makes room for `extra` more bytes. Inline: responses and parsers call it
 * for every piece, and nearly always the room is there. */
static inline int cr_buf_reserve(cr_buf_t *b, size_t extra) {
  return extra <= b->cap - b->len ? 0 : cr_buf_grow(b, extra);
}

static inline int cr_buf_append(cr_buf_t *b, const void *p, size_t n) {
  if (n == 0) return 0;
  if (cr_buf_reserve(b, n)) return CR_ENOMEM;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}
int cr_buf_printf(cr_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cr_buf_vprintf(cr_buf_t *b, const char *fmt, va_list ap);
/* Appends the decimal form of v. */
int cr_buf_append_u64(cr_buf_t *b, unsigned long long v);
int cr_buf_append_i64(cr_buf_t *b, long long v);
/* Drops the first n bytes. */
void cr_buf_consume(cr_buf_t *b, size_t n);
/* Empties the buffer, releasing its memory if it grew past keep bytes. */
void cr_buf_reset(cr_buf_t *b, size_t keep);
/* Returns a NUL-terminated view (the NUL is not counted in len). */
const char *cr_buf_cstr(cr_buf_t *b);

/* Reads a whole regular file of at most max bytes into *data (malloc'd,
 * NUL-terminated; *len without the NUL). Returns 0, -errno when it cannot be
 * opened, CR_ETOOBIG when it is not a regular file of at most max bytes, or
 * CR_ENOMEM. */
int cr_read_file(const char *path, size_t max, char **data, size_t *len);
/* The same from an open file (left open): CR_ETOOBIG or CR_ENOMEM. */
int cr_read_fd(int fd, size_t max, char **data, size_t *len);

static inline int cr_buf_append_str(cr_buf_t *b, const char *s) { return cr_buf_append(b, s, strlen(s)); }

static inline int cr_buf_putc(cr_buf_t *b, char c) {
  if (b->len + 1 > b->cap && cr_buf_reserve(b, 1)) return CR_ENOMEM;
  b->data[b->len++] = c;
  return 0;
}

#endif
