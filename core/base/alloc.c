/* alloc.c - allocation that logs and aborts when memory runs out. */
#include "alloc.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "text.h"

void cr_oom(size_t n) {
  /* The log's own buffer may need memory that is not there: flush what it
   * holds, then write this line from the stack. */
  cr_log_flush();
  char line[160], ts[32];
  cr_clock_iso8601(cr_wall_ms(), ts);
  char *o = line;
  o = cr_put(o, "{\"time\":\"", 9);
  o = cr_put(o, ts, strlen(ts));
  static const char msg[] = "\",\"level\":\"error\",\"msg\":\"out of memory allocating ";
  o = cr_put(o, msg, sizeof msg - 1);
  o = cr_put_u64(o, n);
  static const char end[] = " bytes: aborting\"}\n";
  o = cr_put(o, end, sizeof end - 1);
  ssize_t w = write(STDOUT_FILENO, line, (size_t)(o - line));
  (void)w;
  abort();
}

void *cr_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) cr_oom(n);
  return p;
}

void *cr_xcalloc(size_t count, size_t size) {
  if (!count || !size) count = size = 1;
  void *p = calloc(count, size);
  if (!p) cr_oom(count * size); /* an overflowing product is reported wrapped */
  return p;
}

void *cr_xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) cr_oom(n);
  return q;
}

char *cr_xstrdup(const char *s) {
  size_t n = strlen(s);
  char *d = cr_xmalloc(n + 1);
  memcpy(d, s, n + 1);
  return d;
}

char *cr_xstrndup(const char *s, size_t n) {
  size_t len = strnlen(s, n);
  char *d = cr_xmalloc(len + 1);
  memcpy(d, s, len);
  d[len] = '\0';
  return d;
}
