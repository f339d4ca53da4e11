/* test_log.c - JSON log lines on stdout, buffering and PIPE_BUF pieces (core/base/log.c).
 *
 * stdout is redirected to a SOCK_SEQPACKET socket while a test logs, so
 * every write() the logger makes arrives as one message: the tests see the
 * pieces themselves, not just the bytes. A thread drains the socket (a
 * socketpair queues only a few messages before a writer would block). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <lualib.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "json.h"
#include "log.h"

/* --- capturing stdout ------------------------------------------------------------------------------ */

#define MAX_MSGS 4096

typedef struct {
  char *data;
  size_t len;
} msg_t;

static struct {
  int active;
  int saved_stdout;
  int rd;
  pthread_t thread;
  pthread_mutex_t lock;
  msg_t msgs[MAX_MSGS];
  int n;
} cap = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void *reader_main(void *arg) {
  (void)arg;
  char *buf = malloc(1 << 20);
  for (;;) {
    ssize_t r = recv(cap.rd, buf, 1 << 20, 0);
    if (r <= 0) break;
    pthread_mutex_lock(&cap.lock);
    if (cap.n < MAX_MSGS) {
      cap.msgs[cap.n].data = malloc((size_t)r + 1);
      memcpy(cap.msgs[cap.n].data, buf, (size_t)r);
      cap.msgs[cap.n].data[r] = '\0';
      cap.msgs[cap.n].len = (size_t)r;
      cap.n++;
    }
    pthread_mutex_unlock(&cap.lock);
  }
  free(buf);
  return NULL;
}

static void capture_start(void) {
  fflush(stdout);
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
  int big = 4 << 20;
  setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  cap.saved_stdout = dup(STDOUT_FILENO);
  assert_true(cap.saved_stdout >= 0);
  assert_int_equal(dup2(sv[0], STDOUT_FILENO), STDOUT_FILENO);
  close(sv[0]);
  cap.rd = sv[1];
  cap.n = 0;
  cap.active = 1;
  assert_int_equal(pthread_create(&cap.thread, NULL, reader_main, NULL), 0);
}

/* Restores stdout; the reader sees EOF and ends: every message is in. */
static void capture_stop(void) {
  if (!cap.active) return;
  dup2(cap.saved_stdout, STDOUT_FILENO);
  close(cap.saved_stdout);
  pthread_join(cap.thread, NULL);
  close(cap.rd);
  cap.active = 0;
}

static int captured_count(void) {
  pthread_mutex_lock(&cap.lock);
  int n = cap.n;
  pthread_mutex_unlock(&cap.lock);
  return n;
}

/* Waits (briefly) until at least n messages arrived. */
static int wait_count(int n, int ms) {
  for (int i = 0; i < ms; i++) {
    if (captured_count() >= n) return 1;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  return captured_count() >= n;
}

static void free_msgs(void) {
  for (int i = 0; i < cap.n; i++) free(cap.msgs[i].data);
  cap.n = 0;
}

static lua_State *g_L;

static int setup(void **state) {
  (void)state;
  cr_log_setup(-1, 0);
  cr_log_set_level(CR_LOG_INFO);
  g_L = luaL_newstate();
  luaL_openlibs(g_L);
  cr_json_open(g_L);
  lua_setglobal(g_L, "json");
  return 0;
}

/* Runs after every test, failed or not: stdout back, logger back to defaults. */
static int teardown(void **state) {
  (void)state;
  cr_log_flush();
  capture_stop();
  free_msgs();
  cr_log_setup(-1, 0);
  cr_log_set_level(CR_LOG_INFO);
  lua_close(g_L);
  g_L = NULL;
  return 0;
}

/* Decodes one JSON line (without its '\n') and leaves the table on the Lua stack. */
static void decode(const char *line, size_t len) {
  lua_getglobal(g_L, "json");
  lua_getfield(g_L, -1, "decode");
  lua_remove(g_L, -2);
  lua_pushlstring(g_L, line, len);
  if (lua_pcall(g_L, 1, 1, 0)) fail_msg("not JSON (%s): %.*s", lua_tostring(g_L, -1), (int)len, line);
  assert_true(lua_istable(g_L, -1));
}

static const char *field(const char *key) {
  lua_getfield(g_L, -1, key);
  const char *v = lua_isnil(g_L, -1) ? NULL : lua_tostring(g_L, -1);
  lua_pop(g_L, 1);
  return v;
}

static int nfields(void) {
  int n = 0;
  lua_pushnil(g_L);
  while (lua_next(g_L, -2)) {
    lua_pop(g_L, 1);
    n++;
  }
  return n;
}

static int iso_time_ok(const char *t) {
  if (!t || strlen(t) != 24) return 0;
  const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ";
  for (int i = 0; i < 24; i++) {
    if (shape[i] == 'd' ? (t[i] < '0' || t[i] > '9') : t[i] != shape[i]) return 0;
  }
  return 1;
}

/* All captured bytes, concatenated. */
static char *all_bytes(size_t *len) {
  size_t n = 0;
  for (int i = 0; i < cap.n; i++) n += cap.msgs[i].len;
  char *s = malloc(n + 1);
  size_t o = 0;
  for (int i = 0; i < cap.n; i++) {
    memcpy(s + o, cap.msgs[i].data, cap.msgs[i].len);
    o += cap.msgs[i].len;
  }
  s[o] = '\0';
  *len = o;
  return s;
}

/* --- tests ------------------------------------------------------------------------------------------ */

static void test_level_parse(void **state) {
  (void)state;
  cr_log_level_t l = CR_LOG_ERROR;
  assert_int_equal(cr_log_level_parse("debug", &l), 0);
  assert_int_equal(l, CR_LOG_DEBUG);
  assert_int_equal(cr_log_level_parse("info", &l), 0);
  assert_int_equal(l, CR_LOG_INFO);
  assert_int_equal(cr_log_level_parse("warn", &l), 0);
  assert_int_equal(l, CR_LOG_WARN);
  assert_int_equal(cr_log_level_parse("error", &l), 0);
  assert_int_equal(l, CR_LOG_ERROR);
  l = CR_LOG_INFO;
  assert_true(cr_log_level_parse("WARN", &l) != 0);
  assert_true(cr_log_level_parse("warning", &l) != 0);
  assert_true(cr_log_level_parse("", &l) != 0);
  assert_int_equal(l, CR_LOG_INFO);
}

static void test_line_shape(void **state) {
  (void)state;
  capture_start();
  cr_log(CR_LOG_INFO, "users/[id]", "req-1", "hello %d %s", 5, "world");
  assert_true(wait_count(1, 1000)); /* unbuffered: written at once */
  cr_log(CR_LOG_ERROR, NULL, NULL, "plain");
  capture_stop();
  assert_int_equal(cap.n, 2);
  msg_t *m = &cap.msgs[0];
  assert_int_equal(m->data[m->len - 1], '\n');
  assert_null(memchr(m->data, '\n', m->len - 1)); /* one line */
  assert_memory_equal(m->data, "{\"time\":\"", 9);
  decode(m->data, m->len - 1);
  assert_true(iso_time_ok(field("time")));
  assert_string_equal(field("level"), "info");
  assert_string_equal(field("msg"), "hello 5 world");
  assert_string_equal(field("requestId"), "req-1");
  assert_string_equal(field("function"), "users/[id]");
  assert_null(field("worker")); /* the master has no worker id */
  assert_int_equal(nfields(), 5);
  lua_pop(g_L, 1);
  decode(cap.msgs[1].data, cap.msgs[1].len - 1);
  assert_string_equal(field("level"), "error");
  assert_string_equal(field("msg"), "plain");
  assert_null(field("requestId"));
  assert_null(field("function"));
  assert_int_equal(nfields(), 3);
  lua_pop(g_L, 1);
}

/* The time field is the wall clock when the line was made. */
static void test_line_time(void **state) {
  (void)state;
  char before[32], after[32];
  cr_clock_iso8601(cr_wall_ms(), before);
  capture_start();
  cr_log(CR_LOG_INFO, NULL, NULL, "tick");
  capture_stop();
  cr_clock_iso8601(cr_wall_ms(), after);
  assert_int_equal(cap.n, 1);
  decode(cap.msgs[0].data, cap.msgs[0].len - 1);
  const char *t = field("time");
  assert_true(iso_time_ok(t));
  assert_true(strcmp(t, before) >= 0);
  assert_true(strcmp(t, after) <= 0);
  lua_pop(g_L, 1);
}

static void test_worker_and_fields(void **state) {
  (void)state;
  cr_log_setup(3, 0);
  capture_start();
  cr_buf_t *b = cr_log_begin(CR_LOG_WARN, "with fields", 11, "fn", "r2");
  assert_non_null(b);
  cr_log_str(b, "path", "/a\"b\n", 5);
  cr_log_num(b, "ms", 1.5);
  cr_log_num(b, "bad", 0.0 / 0.0);
  cr_log_int(b, "count", -42);
  cr_log_int(b, "big", 9007199254740993LL);
  cr_log_end(b);
  capture_stop();
  assert_int_equal(cap.n, 1);
  msg_t *m = &cap.msgs[0];
  assert_null(memchr(m->data, '\n', m->len - 1));
  assert_non_null(strstr(m->data, "\"big\":9007199254740993")); /* exact, not a double */
  assert_non_null(strstr(m->data, "\"bad\":null"));
  decode(m->data, m->len - 1);
  assert_string_equal(field("level"), "warn");
  assert_string_equal(field("msg"), "with fields");
  assert_string_equal(field("worker"), "3");
  assert_string_equal(field("path"), "/a\"b\n");
  assert_string_equal(field("ms"), "1.5");
  assert_string_equal(field("count"), "-42");
  assert_null(field("bad")); /* null */
  lua_pop(g_L, 1);
}

/* The sink (the worker's logstore) gets each finished line, the same bytes as stdout, and
 * what it is about; the trace fields come from a traceparent. */
static struct {
  int n;
  cr_log_meta_t meta;
  char fn[32], reqid[64], trace[40], line[1024];
} g_sunk;

static void sink(void *data, const cr_log_meta_t *m, const char *line, size_t len) {
  assert_ptr_equal(data, &g_sunk);
  g_sunk.n++;
  g_sunk.meta = *m;
  snprintf(g_sunk.fn, sizeof g_sunk.fn, "%s", m->fn ? m->fn : "(null)");
  snprintf(g_sunk.reqid, sizeof g_sunk.reqid, "%s", m->reqid ? m->reqid : "(null)");
  snprintf(g_sunk.trace, sizeof g_sunk.trace, "%s", m->trace ? m->trace : "(null)");
  snprintf(g_sunk.line, sizeof g_sunk.line, "%.*s", (int)len, line);
  /* a line the sink would write goes to stdout only: it does not come back here */
  cr_log(CR_LOG_INFO, NULL, NULL, "from the sink");
}

static void test_sink_and_trace(void **state) {
  (void)state;
  cr_log_setup(1, 0);
  memset(&g_sunk, 0, sizeof g_sunk);
  cr_log_set_sink(sink, &g_sunk);
  capture_start();
  uint64_t t0 = cr_wall_ms();
  cr_buf_t *b = cr_log_begin(CR_LOG_WARN, "traced", 6, "fn1", "req-1");
  cr_log_trace(b, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  cr_log_trace(b, "not a traceparent"); /* adds nothing */
  cr_log_int(b, "n", 7);
  cr_log_end(b);
  cr_log(CR_LOG_DEBUG, NULL, NULL, "filtered out: neither stdout nor the sink");
  capture_stop();
  cr_log_set_sink(NULL, NULL);
  assert_int_equal(g_sunk.n, 1);
  assert_int_equal(g_sunk.meta.level, CR_LOG_WARN);
  assert_string_equal(g_sunk.fn, "fn1");
  assert_string_equal(g_sunk.reqid, "req-1");
  assert_string_equal(g_sunk.trace, "4bf92f3577b34da6a3ce929d0e0e4736");
  assert_true(g_sunk.meta.time_ms >= t0 && g_sunk.meta.time_ms <= cr_wall_ms());
  assert_non_null(strstr(g_sunk.line, ",\"trace\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"span\":\"00f067aa0ba902b7\",\"n\":7}"));
  /* stdout got the same bytes and a newline, then the sink's own line (one write: the
   * sink's line flushed both) */
  assert_int_equal(cap.n, 1);
  size_t l = strlen(g_sunk.line);
  assert_memory_equal(cap.msgs[0].data, g_sunk.line, l);
  assert_int_equal(cap.msgs[0].data[l], '\n');
  assert_memory_equal(cap.msgs[0].data + l + 1, "{\"time\":", 8);
  assert_non_null(strstr(cap.msgs[0].data + l + 1, "\"msg\":\"from the sink\""));
  assert_int_equal(cap.msgs[0].data[cap.msgs[0].len - 1], '\n');
  assert_null(memchr(cap.msgs[0].data + l + 1, '\n', cap.msgs[0].len - l - 2));
  /* a line without a trace: meta.trace is NULL */
  free_msgs();
  cr_log_set_sink(sink, &g_sunk);
  capture_start();
  cr_log(CR_LOG_ERROR, NULL, NULL, "platform");
  capture_stop();
  cr_log_set_sink(NULL, NULL);
  assert_int_equal(g_sunk.n, 2);
  assert_string_equal(g_sunk.fn, "(null)");
  assert_string_equal(g_sunk.trace, "(null)");
}

static void test_escaping(void **state) {
  (void)state;
  capture_start();
  cr_log(CR_LOG_INFO, "f\"n", "r\\q", "line1\nline2\t\"quoted\" \x01 end");
  static const char raw[] = "a\0b";
  cr_buf_t *b = cr_log_begin(CR_LOG_INFO, raw, 3, NULL, NULL);
  cr_log_end(b);
  capture_stop();
  assert_int_equal(cap.n, 2);
  msg_t *m = &cap.msgs[0];
  assert_null(memchr(m->data, '\n', m->len - 1));
  decode(m->data, m->len - 1);
  assert_string_equal(field("msg"), "line1\nline2\t\"quoted\" \x01 end");
  assert_string_equal(field("function"), "f\"n");
  assert_string_equal(field("requestId"), "r\\q");
  lua_pop(g_L, 1);
  assert_non_null(strstr(cap.msgs[1].data, "\"msg\":\"a\\u0000b\""));
}

static void test_long_message_truncated(void **state) {
  (void)state;
  char big[5000];
  memset(big, 'm', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  capture_start();
  cr_log(CR_LOG_INFO, NULL, NULL, "%s", big);
  capture_stop();
  assert_int_equal(cap.n, 1);
  decode(cap.msgs[0].data, cap.msgs[0].len - 1);
  const char *msg = field("msg");
  assert_non_null(msg);
  assert_int_equal(strlen(msg), 1023);
  lua_pop(g_L, 1);
}

static void test_level_filter(void **state) {
  (void)state;
  cr_log_set_level(CR_LOG_WARN);
  assert_false(cr_log_enabled(CR_LOG_DEBUG));
  assert_false(cr_log_enabled(CR_LOG_INFO));
  assert_true(cr_log_enabled(CR_LOG_WARN));
  assert_true(cr_log_enabled(CR_LOG_ERROR));
  capture_start();
  cr_log(CR_LOG_DEBUG, NULL, NULL, "d");
  cr_log(CR_LOG_INFO, NULL, NULL, "i");
  assert_null(cr_log_begin(CR_LOG_INFO, "x", 1, NULL, NULL));
  cr_log(CR_LOG_WARN, NULL, NULL, "w");
  cr_log(CR_LOG_ERROR, NULL, NULL, "e");
  cr_log_set_level(CR_LOG_DEBUG);
  assert_true(cr_log_enabled(CR_LOG_DEBUG));
  cr_log(CR_LOG_DEBUG, NULL, NULL, "d2");
  cr_log_set_level(CR_LOG_ERROR);
  cr_log(CR_LOG_WARN, NULL, NULL, "w2");
  capture_stop();
  assert_int_equal(cap.n, 3);
  assert_non_null(strstr(cap.msgs[0].data, "\"level\":\"warn\",\"msg\":\"w\""));
  assert_non_null(strstr(cap.msgs[1].data, "\"level\":\"error\",\"msg\":\"e\""));
  assert_non_null(strstr(cap.msgs[2].data, "\"level\":\"debug\",\"msg\":\"d2\""));
}

static void test_buffered(void **state) {
  (void)state;
  cr_log_setup(1, 1);
  capture_start();
  cr_log(CR_LOG_INFO, NULL, NULL, "one");
  cr_log(CR_LOG_INFO, NULL, NULL, "two");
  cr_log(CR_LOG_INFO, NULL, NULL, "three");
  assert_false(wait_count(1, 100)); /* kept until the flush */
  cr_log_flush();
  assert_true(wait_count(1, 1000));
  cr_log_flush(); /* nothing left: writes nothing */
  /* Switching to unbuffered flushes what is pending. */
  cr_log(CR_LOG_INFO, NULL, NULL, "four");
  cr_log_setup(1, 0);
  cr_log(CR_LOG_INFO, NULL, NULL, "five");
  capture_stop();
  assert_int_equal(cap.n, 3);
  const char *m0 = cap.msgs[0].data;
  assert_non_null(strstr(m0, "\"msg\":\"one\""));
  assert_non_null(strstr(m0, "\"msg\":\"three\""));
  int lines = 0;
  for (size_t i = 0; i < cap.msgs[0].len; i++) lines += m0[i] == '\n';
  assert_int_equal(lines, 3);
  assert_true(strstr(m0, "one") < strstr(m0, "two") && strstr(m0, "two") < strstr(m0, "three"));
  assert_non_null(strstr(cap.msgs[1].data, "\"msg\":\"four\""));
  assert_non_null(strstr(cap.msgs[2].data, "\"msg\":\"five\""));
}

/* Every piece written is at most PIPE_BUF bytes and ends at a line end,
 * unless it is one line longer than PIPE_BUF on its own. */
static void check_pieces(int nlines_expected) {
  for (int i = 0; i < cap.n; i++) {
    msg_t *m = &cap.msgs[i];
    assert_true(m->len > 0);
    if (m->data[m->len - 1] != '\n') fail_msg("piece %d (%zu bytes) does not end a line", i, m->len);
    if (m->len > PIPE_BUF) {
      if (memchr(m->data, '\n', m->len - 1))
        fail_msg("piece %d is %zu bytes (> PIPE_BUF) and holds several lines", i, m->len);
    }
  }
  size_t len;
  char *all = all_bytes(&len);
  int lines = 0;
  const char *p = all;
  while (p < all + len) {
    const char *nl = memchr(p, '\n', (size_t)(all + len - p));
    assert_non_null(nl);
    decode(p, (size_t)(nl - p));
    lua_pop(g_L, 1);
    lines++;
    p = nl + 1;
  }
  free(all);
  assert_int_equal(lines, nlines_expected);
}

static void test_flush_splits_at_lines(void **state) {
  (void)state;
  cr_log_setup(0, 1);
  capture_start();
  char text[400];
  for (int i = 0; i < 60; i++) {
    int n = 50 + (i * 37) % 300;
    memset(text, 'a' + i % 26, (size_t)n);
    text[n] = '\0';
    cr_log(CR_LOG_INFO, NULL, NULL, "%03d %s", i, text);
  }
  cr_log_flush();
  capture_stop();
  assert_true(cap.n >= 3); /* ~15 KB cannot go as one piece */
  check_pieces(60);
  /* In order. */
  size_t len;
  char *all = all_bytes(&len);
  const char *prev = all;
  for (int i = 0; i < 60; i++) {
    char tag[16];
    snprintf(tag, sizeof tag, "\"msg\":\"%03d ", i);
    const char *at = strstr(prev, tag);
    if (!at) fail_msg("line %d missing or out of order", i);
    prev = at;
  }
  free(all);
}

static void test_flush_long_line_whole(void **state) {
  (void)state;
  cr_log_setup(0, 1);
  capture_start();
  cr_log(CR_LOG_INFO, NULL, NULL, "before");
  char big[3 * PIPE_BUF];
  memset(big, 'L', sizeof big);
  cr_buf_t *b = cr_log_begin(CR_LOG_INFO, "long", 4, NULL, NULL);
  cr_log_str(b, "blob", big, sizeof big);
  cr_log_end(b);
  cr_log(CR_LOG_INFO, NULL, NULL, "after");
  cr_log_flush();
  capture_stop();
  check_pieces(3);
  int found = 0;
  for (int i = 0; i < cap.n; i++) {
    if (cap.msgs[i].len > 3 * PIPE_BUF) {
      found = 1;
      assert_non_null(strstr(cap.msgs[i].data, "\"msg\":\"long\""));
    }
  }
  assert_true(found);
}

/* A worker that logs a lot between loop iterations does not hold it all:
 * past 64 KB the buffer is written out. */
static void test_buffered_flushes_when_large(void **state) {
  (void)state;
  cr_log_setup(2, 1);
  capture_start();
  char text[300];
  memset(text, 'x', sizeof text - 1);
  text[sizeof text - 1] = '\0';
  for (int i = 0; i < 400; i++) cr_log(CR_LOG_INFO, NULL, NULL, "%s", text); /* ~150 KB */
  assert_true(wait_count(1, 1000));
  cr_log_flush();
  capture_stop();
  check_pieces(400);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_level_parse, setup, teardown),
      cmocka_unit_test_setup_teardown(test_line_shape, setup, teardown),
      cmocka_unit_test_setup_teardown(test_line_time, setup, teardown),
      cmocka_unit_test_setup_teardown(test_worker_and_fields, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sink_and_trace, setup, teardown),
      cmocka_unit_test_setup_teardown(test_escaping, setup, teardown),
      cmocka_unit_test_setup_teardown(test_long_message_truncated, setup, teardown),
      cmocka_unit_test_setup_teardown(test_level_filter, setup, teardown),
      cmocka_unit_test_setup_teardown(test_buffered, setup, teardown),
      cmocka_unit_test_setup_teardown(test_flush_splits_at_lines, setup, teardown),
      cmocka_unit_test_setup_teardown(test_flush_long_line_whole, setup, teardown),
      cmocka_unit_test_setup_teardown(test_buffered_flushes_when_large, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
