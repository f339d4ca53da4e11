/* buf.c - growable byte buffer. */
#include "buf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "text.h"

void cr_buf_init(cr_buf_t *b) {
  b->data = NULL;
  b->len = b->cap = 0;
}

void cr_buf_free(cr_buf_t *b) {
  free(b->data);
  cr_buf_init(b);
}

int cr_buf_grow(cr_buf_t *b, size_t extra) {
  if (extra <= b->cap - b->len) return 0;
  if (extra > ((size_t)1 << 40)) return CR_ENOMEM; /* also keeps len + extra from wrapping */
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra) cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p) return CR_ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int cr_buf_vprintf(cr_buf_t *b, const char *fmt, va_list ap) {
  va_list cp;
  va_copy(cp, ap);
  char small[256];
  int n = vsnprintf(small, sizeof small, fmt, cp);
  va_end(cp);
  if (n < 0) return CR_EINVAL;
  if ((size_t)n < sizeof small) return cr_buf_append(b, small, (size_t)n);
  if (cr_buf_reserve(b, (size_t)n + 1)) return CR_ENOMEM;
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
  return 0;
}

int cr_buf_printf(cr_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = cr_buf_vprintf(b, fmt, ap);
  va_end(ap);
  return rc;
}

int cr_buf_append_u64(cr_buf_t *b, unsigned long long v) {
  if (cr_buf_reserve(b, 20)) return CR_ENOMEM;
  b->len = (size_t)(cr_put_u64(b->data + b->len, v) - b->data);
  return 0;
}

int cr_buf_append_i64(cr_buf_t *b, long long v) {
  if (v < 0) {
    if (cr_buf_putc(b, '-')) return CR_ENOMEM;
    return cr_buf_append_u64(b, 0ULL - (unsigned long long)v);
  }
  return cr_buf_append_u64(b, (unsigned long long)v);
}

void cr_buf_consume(cr_buf_t *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

void cr_buf_reset(cr_buf_t *b, size_t keep) {
  b->len = 0;
  if (b->cap > keep) cr_buf_free(b);
}

const char *cr_buf_cstr(cr_buf_t *b) {
  if (cr_buf_reserve(b, 1)) return "";
  b->data[b->len] = '\0';
  return b->data;
}

int cr_read_fd(int fd, size_t max, char **data, size_t *len) {
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) return CR_ETOOBIG;
  char *buf = malloc((size_t)st.st_size + 1);
  if (!buf) return CR_ENOMEM;
  size_t got = 0;
  while (got < (size_t)st.st_size) {
    ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  buf[got] = '\0';
  *data = buf;
  *len = got;
  return 0;
}

int cr_read_file(const char *path, size_t max, char **data, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int rc = cr_read_fd(fd, max, data, len);
  close(fd);
  return rc;
}
