/* log.c - JSON lines on stdout, buffered in workers. */
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "jsontext.h"

static struct {
  int worker;
  int buffered;
  cr_log_level_t level;
  cr_buf_t out;
  /* The line being written (begin to end), for the sink. */
  size_t line_start;
  cr_log_meta_t meta;
  char trace[33];
  cr_log_sink_fn sink;
  void *sink_data;
} g_log = {-1, 0, CR_LOG_INFO, CR_BUF_INIT, 0, {CR_LOG_INFO, NULL, NULL, NULL, 0}, "", NULL, NULL};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void cr_log_setup(int worker, int buffered) {
  cr_log_flush();
  g_log.worker = worker;
  g_log.buffered = buffered;
}

void cr_log_set_level(cr_log_level_t level) { g_log.level = level; }

int cr_log_level_parse(const char *name, cr_log_level_t *out) {
  for (int i = 0; i < 4; i++) {
    if (strcmp(name, level_names[i]) == 0) {
      *out = (cr_log_level_t)i;
      return 0;
    }
  }
  return -1;
}

int cr_log_enabled(cr_log_level_t level) { return level >= g_log.level; }

cr_buf_t *cr_log_begin(cr_log_level_t level, const char *msg, size_t msglen, const char *fn,
                       const char *reqid) {
  if (level < g_log.level) return NULL;
  return cr_log_begin_always(level, msg, msglen, fn, reqid);
}

cr_buf_t *cr_log_begin_always(cr_log_level_t level, const char *msg, size_t msglen, const char *fn,
                              const char *reqid) {
  cr_buf_t *b = &g_log.out;
  g_log.line_start = b->len;
  g_log.meta.level = level;
  g_log.meta.fn = fn;
  g_log.meta.reqid = reqid;
  g_log.meta.trace = NULL;
  char ts[32];
  uint64_t now = cr_wall_ms();
  g_log.meta.time_ms = now;
  cr_clock_iso8601(now, ts);
  cr_buf_append_str(b, "{\"time\":\"");
  cr_buf_append_str(b, ts);
  cr_buf_append_str(b, "\",\"level\":\"");
  cr_buf_append_str(b, level_names[level]);
  cr_buf_append_str(b, "\",\"msg\":");
  cr_json_escape(b, msg, msglen);
  if (reqid) cr_log_str(b, "requestId", reqid, strlen(reqid));
  if (fn) cr_log_str(b, "function", fn, strlen(fn));
  if (g_log.worker >= 0) cr_log_int(b, "worker", g_log.worker);
  return b;
}

void cr_log_str(cr_buf_t *b, const char *key, const char *val, size_t len) {
  cr_buf_putc(b, ',');
  cr_json_escape(b, key, strlen(key));
  cr_buf_putc(b, ':');
  cr_json_escape(b, val, len);
}

void cr_log_num(cr_buf_t *b, const char *key, double val) {
  cr_buf_putc(b, ',');
  cr_json_escape(b, key, strlen(key));
  cr_buf_putc(b, ':');
  if (cr_json_number(b, val)) cr_buf_append(b, "null", 4);
}

void cr_log_int(cr_buf_t *b, const char *key, long long val) {
  cr_buf_putc(b, ',');
  cr_json_escape(b, key, strlen(key));
  cr_buf_putc(b, ':');
  cr_buf_append_i64(b, val);
}

void cr_log_set_sink(cr_log_sink_fn fn, void *data) {
  g_log.sink = fn;
  g_log.sink_data = data;
}

static int is_hex(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) return 0;
  return 1;
}

void cr_log_trace(cr_buf_t *b, const char *tp) {
  /* "00-" 32 hex "-" 16 hex "-" 2 hex: made or checked by traceparent.c already. */
  if (!tp || strlen(tp) < 55 || tp[2] != '-' || tp[35] != '-' || !is_hex(tp + 3, 32) || !is_hex(tp + 36, 16))
    return;
  cr_log_str(b, "trace", tp + 3, 32);
  cr_log_str(b, "span", tp + 36, 16);
  if (b == &g_log.out) {
    memcpy(g_log.trace, tp + 3, 32);
    g_log.trace[32] = '\0';
    g_log.meta.trace = g_log.trace;
  }
}

void cr_log_end(cr_buf_t *b) {
  if (g_log.sink && b == &g_log.out && b->len > g_log.line_start) {
    /* The line is whole before the sink sees it, and the sink is cleared while it runs: a
     * line it writes (after it is done with this one: the buffer may move) goes after this
     * one, to stdout only. */
    cr_log_sink_fn sink = g_log.sink;
    g_log.sink = NULL;
    cr_buf_append(b, "}\n", 2);
    size_t start = g_log.line_start, len = b->len - 1 - start;
    cr_log_meta_t meta = g_log.meta;
    char trace[33];
    if (meta.trace) {
      memcpy(trace, g_log.trace, sizeof trace);
      meta.trace = trace;
    }
    sink(g_log.sink_data, &meta, b->data + start, len);
    g_log.sink = sink;
  } else {
    cr_buf_append(b, "}\n", 2);
  }
  if (!g_log.buffered || b->len >= 64 * 1024) cr_log_flush();
}

void cr_log(cr_log_level_t level, const char *fn, const char *reqid, const char *fmt, ...) {
  if (level < g_log.level) return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof msg) n = sizeof msg - 1;
  cr_buf_t *b = cr_log_begin(level, msg, (size_t)n, fn, reqid);
  if (b) cr_log_end(b);
}

static void write_all(const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(STDOUT_FILENO, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return; /* stdout is gone: nothing sensible left to do with logs */
    }
    p += w;
    n -= (size_t)w;
  }
}

void cr_log_flush(void) {
  cr_buf_t *b = &g_log.out;
  size_t off = 0;
  while (off < b->len) {
    size_t n = b->len - off;
    if (n > PIPE_BUF) {
      /* Cut after the last full line that fits; a single longer line goes whole. */
      size_t cut = 0;
      for (size_t i = PIPE_BUF; i > 0; i--) {
        if (b->data[off + i - 1] == '\n') {
          cut = i;
          break;
        }
      }
      if (cut == 0) {
        const char *nl = memchr(b->data + off, '\n', n);
        cut = nl ? (size_t)(nl - (b->data + off)) + 1 : n;
      }
      n = cut;
    }
    write_all(b->data + off, n);
    off += n;
  }
  cr_buf_reset(b, 256 * 1024);
}
