/* test_sec_process.c - issue 10, items 3 and 11, over the real binary:
 *   - a worker that dies mid-invocation (SIGKILL from outside, or the
 *     master's kill of a worker stuck in C) gives its concurrency places and
 *     instances back: later requests are served and busy returns to 0, for
 *     one function, for several at once, and for one edited meanwhile;
 *   - SIGTERM answers every request already received: in flight, waiting in
 *     the accept queue of a worker busy in Lua, waiting for a concurrency
 *     place, pipelined on a connection; then the connections close, new
 *     connections are refused, and the master exits 0 in time. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* --- helpers ------------------------------------------------------------------------------------ */

static void dump_log(srv_t *s) {
  char *log = srv_log(s);
  fprintf(stderr, "the server log:\n%s\n", log);
  free(log);
}

/* The pid of worker `index` ("cr-worker N", a child of the master), or -1. */
static pid_t worker_pid_now(srv_t *s, int index) {
  pid_t pids[64];
  int n = srv_worker_pids(s, pids, 64);
  char want[32];
  snprintf(want, sizeof want, "cr-worker %d\n", index);
  for (int i = 0; i < n; i++) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pids[i]);
    char comm[64] = "";
    FILE *f = fopen(path, "r");
    if (!f) continue;
    if (!fgets(comm, sizeof comm, f)) comm[0] = '\0';
    fclose(f);
    if (strcmp(comm, want) == 0) return pids[i];
  }
  return -1;
}

/* Waits until worker `index` runs with a pid other than `old`; returns it or -1. */
static pid_t wait_new_worker(srv_t *s, int index, pid_t old, int timeout_ms) {
  long long deadline = now_ms() + timeout_ms;
  while (now_ms() < deadline) {
    pid_t p = worker_pid_now(s, index);
    if (p > 0 && p != old) return p;
    sleep_ms(5);
  }
  return -1;
}

/* The pid of worker `index`, waiting (bounded) for it to run. */
static pid_t worker_pid(srv_t *s, int index) { return wait_new_worker(s, index, -1, 5000); }

/* busy and idle instances of a function, from /_/api/functions. */
static void fn_instances(int port, const char *name, int *busy, int *idle) {
  http_resp_t r;
  http_get(port, "/_/api/functions", &r);
  assert_int_equal(r.status, 200);
  char *e = api_fn_entry(r.body, name);
  if (!e) fail_msg("%s missing from /_/api/functions: %s", name, r.body);
  const char *in = json_val(e, "instances");
  if (!in) fail_msg("no instances for %s: %s", name, e);
  *busy = (int)json_num(in, "busy");
  *idle = (int)json_num(in, "idle");
  free(e);
  http_free(&r);
}

/* Waits (bounded) until the function shows `busy` busy instances; fails the test otherwise. */
static void wait_busy(srv_t *s, const char *name, int busy, int timeout_ms) {
  long long deadline = now_ms() + timeout_ms;
  int b = -1, i = -1;
  for (;;) {
    fn_instances(s->port, name, &b, &i);
    if (b == busy) return;
    if (now_ms() >= deadline) {
      dump_log(s);
      fail_msg("%s: busy %d (idle %d) after %d ms, want busy %d", name, b, i, timeout_ms, busy);
    }
    sleep_ms(10);
  }
}

/* One GET on a new connection (Connection: close); status and body into r.
 * Returns 0, or -1 without an answer. */
static int get_once(int port, const char *path, int timeout_ms, http_resp_t *r) {
  memset(r, 0, sizeof *r);
  int fd = http_connect(port);
  if (fd < 0) return -1;
  char req[512];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
  http_send(fd, req, (size_t)n);
  int rc = http_read(fd, r, 0, timeout_ms);
  http_close(fd);
  return rc;
}

/* GET expecting `status` and `body` exactly. */
static void expect_get(srv_t *s, const char *path, int status, const char *body) {
  http_resp_t r;
  if (get_once(s->port, path, 10000, &r) != 0) {
    dump_log(s);
    fail_msg("GET %s: no answer", path);
  }
  if (r.status != status || strcmp(r.body, body) != 0) {
    dump_log(s);
    fail_msg("GET %s: got %d '%s', want %d '%s'", path, r.status, r.body, status, body);
  }
  http_free(&r);
}

/* Sends a GET on a new keep-alive connection and returns the connection. */
static int start_get(int port, const char *path) {
  int fd = http_connect(port);
  assert_true(fd >= 0);
  char req[512];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
  http_send(fd, req, (size_t)n);
  return fd;
}

/* The worker index in the log line of the function's "holding <tag>" message
 * (waits for it, bounded). */
static int holding_worker(srv_t *s, const char *tag) {
  char msg[96];
  snprintf(msg, sizeof msg, "\"msg\":\"holding %s\"", tag);
  if (srv_log_wait(s, 1, 10000, msg, NULL) < 1) {
    dump_log(s);
    fail_msg("no '%s' log line", msg);
  }
  char *line = srv_log_line(s, msg, NULL);
  assert_non_null(line);
  int w = (int)json_num(line, "worker");
  free(line);
  return w;
}

/* Holds a concurrency place for ?s= seconds (default 60) while its worker
 * stays free for other work: every crescent.kv call yields to the loop.
 * Says which worker runs it with a "holding <tag>" log line. */
#define HOLD_LUA(conc, answer)                                                            \
  "local kv = require 'crescent.kv'\n"                                                   \
  "return { concurrency = " #conc ", timeout = 120, handler = function(event, ctx)\n"     \
  "  local s = tonumber(event.query.s) or 60\n"                                          \
  "  ctx.log.info('holding ' .. (event.query.tag or ''))\n"                              \
  "  local stop = ctx.remaining() - s * 1000\n"                                          \
  "  while ctx.remaining() > stop do kv.get('nothing') end\n"                            \
  "  return '" answer "'\n"                                                               \
  "end }\n"

/* --- item 3: a dead worker's places come back ---------------------------------------------------- */

static void killed_worker_gives_its_place_back(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "hold.lua", HOLD_LUA(1, "held"));
  srv_start(&s, "--workers 2 --queue-wait 0.05");
  int fd = start_get(s.port, "/hold?tag=a");
  int w = holding_worker(&s, "a");
  pid_t victim = worker_pid(&s, w);
  assert_true(victim > 0);
  wait_busy(&s, "hold", 1, 3000);
  expect_get(&s, "/hold?s=0", 429, "{\"error\":\"too many requests\"}");

  assert_int_equal(kill(victim, SIGKILL), 0);
  srv_expect_errors(&s, 1); /* the master logs the death as an error */
  http_resp_t r;
  assert_int_equal(http_read(fd, &r, 0, 5000), -1); /* the call died with its worker */
  http_close(fd);
  assert_true(wait_new_worker(&s, w, victim, 5000) > 0);
  /* The place is back: busy 0, and the function runs again, to the end. */
  wait_busy(&s, "hold", 0, 3000);
  expect_get(&s, "/hold?s=0.1", 200, "held");
  /* The answer is written before the place is given back: wait for it. */
  wait_busy(&s, "hold", 0, 3000);
  int busy, idle;
  fn_instances(s.port, "hold", &busy, &idle);
  assert_int_equal(busy, 0);
  assert_int_equal(idle, 1); /* the instance that just ran; the dead worker's are not counted */
  if (srv_log_count(&s, "\"msg\":\"worker ", "held 1 concurrency places and 1 instances: taken back", NULL) != 1) {
    dump_log(&s);
    fail_msg("no line saying the place was taken back");
  }
  assert_int_equal(srv_stop(&s), 0);
}

/* The worker (from its report line) that answers on keep-alive connection fd. */
static int conn_worker(srv_t *s, int fd) {
  http_sends(fd, "GET /who HTTP/1.1\r\nHost: x\r\n\r\n");
  http_resp_t r;
  if (http_read(fd, &r, 0, 5000) != 0) fail_msg("/who: no answer");
  assert_int_equal(r.status, 200);
  char rid[128];
  snprintf(rid, sizeof rid, "%.100s", http_header(&r, "x-request-id"));
  http_free(&r);
  char *rep = srv_report_of(s, rid);
  int w = (int)json_num(rep, "worker");
  free(rep);
  return w;
}

/* Fills on0[0..n0) and on1[0..n1) with keep-alive connections served by
 * workers 0 and 1. */
static void conns_on_workers(srv_t *s, int *on0, int n0, int *on1, int n1) {
  int got0 = 0, got1 = 0;
  for (int i = 0; i < 64 && (got0 < n0 || got1 < n1); i++) {
    int fd = http_connect(s->port);
    assert_true(fd >= 0);
    int w = conn_worker(s, fd);
    if (w == 0 && got0 < n0) on0[got0++] = fd;
    else if (w == 1 && got1 < n1) on1[got1++] = fd;
    else http_close(fd);
  }
  if (got0 < n0 || got1 < n1) fail_msg("64 connections: %d on worker 0, %d on worker 1", got0, got1);
}

/* Worker 0 holds places of two functions (a's only one, two of b's three),
 * a edited to a new version meanwhile; worker 1 holds b's third. A SIGKILL of
 * worker 0 gives back all of its places, and only its own. */
static void killed_worker_gives_back_every_function_and_only_its_own(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "a.lua", HOLD_LUA(1, "a1"));
  srv_write(&s, "b.lua", HOLD_LUA(3, "b1"));
  srv_write(&s, "who.lua", "return function() return 'me' end\n");
  srv_start(&s, "--workers 2 --queue-wait 0.05");
  int c0[3], c1[1];
  conns_on_workers(&s, c0, 3, c1, 1);
  http_sends(c0[0], "GET /a?tag=a HTTP/1.1\r\nHost: x\r\n\r\n");
  http_sends(c0[1], "GET /b?tag=b1 HTTP/1.1\r\nHost: x\r\n\r\n");
  http_sends(c0[2], "GET /b?tag=b2 HTTP/1.1\r\nHost: x\r\n\r\n");
  http_sends(c1[0], "GET /b?tag=b3&s=5 HTTP/1.1\r\nHost: x\r\n\r\n");
  long long t_b3 = now_ms();
  assert_int_equal(holding_worker(&s, "a"), 0);
  assert_int_equal(holding_worker(&s, "b1"), 0);
  assert_int_equal(holding_worker(&s, "b2"), 0);
  assert_int_equal(holding_worker(&s, "b3"), 1);
  wait_busy(&s, "a", 1, 3000);
  wait_busy(&s, "b", 3, 3000);

  /* A new version of a while its place is held by the old one. */
  srv_write(&s, "a.lua", HOLD_LUA(1, "a2"));
  long long deadline = now_ms() + 5000;
  for (;;) {
    http_resp_t r;
    http_get(s.port, "/_/api/functions", &r);
    char *e = api_fn_entry(r.body, "a");
    int v = e ? (int)json_num(e, "version") : 0;
    free(e);
    http_free(&r);
    if (v == 2) break;
    if (now_ms() >= deadline) fail_msg("a.lua was not reloaded");
    sleep_ms(10);
  }
  expect_get(&s, "/a?s=0", 429, "{\"error\":\"too many requests\"}");
  expect_get(&s, "/b?s=0", 429, "{\"error\":\"too many requests\"}");

  pid_t victim = worker_pid(&s, 0);
  assert_true(victim > 0);
  assert_int_equal(kill(victim, SIGKILL), 0);
  srv_expect_errors(&s, 1);
  assert_true(wait_new_worker(&s, 0, victim, 5000) > 0);
  wait_busy(&s, "a", 0, 3000);
  wait_busy(&s, "b", 1, 3000); /* worker 1's place of b is still its own */
  expect_get(&s, "/a?s=0", 200, "a2");
  /* Two places of b are free again, not more: two calls at once run, a third gets 429. */
  int f1 = start_get(s.port, "/b?s=1&tag=again1"), f2 = start_get(s.port, "/b?s=1&tag=again2");
  holding_worker(&s, "again1");
  holding_worker(&s, "again2");
  expect_get(&s, "/b?s=0", 429, "{\"error\":\"too many requests\"}");
  int fs[3] = {f1, f2, c1[0]};
  for (int i = 0; i < 3; i++) {
    http_resp_t r;
    if (http_read(fs[i], &r, 0, 10000) != 0) fail_msg("b call %d: no answer", i);
    if (r.status != 200 || strcmp(r.body, "b1") != 0) fail_msg("b call %d: got %d '%s'", i, r.status, r.body);
    http_free(&r);
  }
  assert_true(now_ms() - t_b3 >= 4900); /* worker 1's call ran its whole 5 s, undisturbed */
  wait_busy(&s, "b", 0, 3000);
  http_close(f1);
  http_close(f2);
  for (int i = 0; i < 3; i++) http_close(c0[i]);
  http_close(c1[0]);
  assert_int_equal(srv_stop(&s), 0);
}

/* The master kills a worker stuck inside a C call past its deadline: the
 * stuck call's place comes back too. */
static void stuck_worker_killed_by_the_master_gives_its_place_back(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "stuck.lua",
            "return { concurrency = 1, timeout = 1, handler = function(event)\n"
            "  if event.query.stuck then\n"
            "    string.rep('a', 30):find(string.rep('a?', 30) .. string.rep('a', 30))\n"
            "  end\n"
            "  return 'free' end }\n");
  srv_start(&s, "--workers 1 --kill-grace 0.3 --queue-wait 0.2");
  pid_t before = worker_pid(&s, 0);
  assert_true(before > 0);
  int fd = start_get(s.port, "/stuck?stuck=1");
  if (srv_log_wait(&s, 1, 5000, "is stuck in stuck", NULL) != 1) {
    dump_log(&s);
    fail_msg("the stuck worker was not killed");
  }
  srv_expect_errors(&s, 1);
  http_resp_t r;
  if (http_read(fd, &r, 0, 3000) == 0) {
    assert_true(r.status >= 500);
    http_free(&r);
  }
  http_close(fd);
  assert_true(wait_new_worker(&s, 0, before, 5000) > 0);
  expect_get(&s, "/stuck", 200, "free");
  wait_busy(&s, "stuck", 0, 3000);
  assert_int_equal(srv_stop(&s), 0);
}


/* --- item 11: SIGTERM answers every request received -------------------------------------------- */

/* Busy in Lua for ?s= seconds: the worker does nothing else meanwhile. */
static const char SLOW_LUA[] =
    "return { timeout = 20, handler = function(event, ctx)\n"
    "  local stop = ctx.remaining() - (tonumber(event.query.s) or 1) * 1000\n"
    "  while ctx.remaining() > stop do end\n"
    "  return 'slow ' .. (event.query.id or '')\n"
    "end }\n";

/* Reads one answer on fd: 200 with `body`; `closes`: it must say
 * "Connection: close" (1), must not (0), or either (-1). Then, if it says
 * close, the server closes the connection. */
static void expect_answer(srv_t *s, int fd, const char *body, int closes, int timeout_ms) {
  http_resp_t r;
  if (http_read(fd, &r, 0, timeout_ms) != 0) {
    dump_log(s);
    fail_msg("'%s': no answer (closed: %d)", body, r.closed);
  }
  if (r.status != 200 || strcmp(r.body, body) != 0) {
    dump_log(s);
    fail_msg("got %d '%s', want 200 '%s'", r.status, r.body, body);
  }
  if (closes >= 0 && r.closed != closes) fail_msg("'%s': Connection: close %s", body, r.closed ? "given" : "missing");
  int said_close = r.closed;
  http_free(&r);
  if (said_close && http_wait_closed(fd, 3000) != 1) fail_msg("'%s': the connection stayed open after close", body);
}

/* No socket listens on the port any more: connect() is refused. */
static void expect_refused(int port) {
  int fd = http_connect(port);
  if (fd >= 0) {
    http_close(fd);
    fail_msg("a connection was accepted after the drain closed the listener");
  }
}

static void wait_stopping(srv_t *s) {
  if (srv_log_wait(s, 1, 10000, "\"msg\":\"stopping: finishing", NULL) != 1) {
    dump_log(s);
    fail_msg("the worker did not start draining");
  }
  sleep_ms(50); /* it closes the listener right after saying so */
}

/* One worker, busy in Lua: connections made meanwhile wait in its accept
 * queue, also after SIGTERM came. All of them are answered, each with
 * "Connection: close", then the listener is closed and the master exits 0. */
static void sigterm_serves_the_accept_queue_of_a_busy_worker(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "slow.lua", SLOW_LUA);
  srv_start(&s, "--workers 1");
  int port = s.port;
  long long t0 = now_ms();
  int first = start_get(port, "/slow?s=1&id=0");
  sleep_ms(200); /* the worker is inside the first call now */
  enum { N = 5 };
  int fds[N];
  for (int i = 0; i < N; i++) {
    char path[64];
    snprintf(path, sizeof path, "/slow?s=0.4&id=%d", i + 1);
    fds[i] = start_get(port, path);
  }
  sleep_ms(300);
  srv_signal(&s, SIGTERM);
  sleep_ms(200);
  int late = start_get(port, "/slow?s=0.1&id=late"); /* after SIGTERM, before the worker took it */
  expect_answer(&s, first, "slow 0", -1, 5000); /* answered before the worker saw the signal, or during */
  assert_int_equal(http_wait_closed(first, 3000), 1);
  wait_stopping(&s);
  expect_refused(port);
  for (int i = 0; i < N; i++) {
    char body[32];
    snprintf(body, sizeof body, "slow %d", i + 1);
    expect_answer(&s, fds[i], body, 1, 5000);
    http_close(fds[i]);
  }
  expect_answer(&s, late, "slow late", 1, 5000);
  http_close(late);
  http_close(first);
  assert_int_equal(srv_wait_exit(&s, 5000), 0);
  long long took = now_ms() - t0;
  if (took < 1000 + N * 400 + 100 || took > 6000) fail_msg("the master exited %lld ms after the first request", took);
  if (srv_log_count(&s, "drain timeout", NULL) != 0) fail_msg("the drain timed out");
  if (srv_log_count(&s, "\"msg\":\"stopped\"", NULL) != 1) fail_msg("no 'stopped' line");
  assert_int_equal(srv_stop(&s), 0);
}

/* The shape: three requests at once, SIGTERM at 0.5 s. */
static void sigterm_answers_three_concurrent_slow_requests(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "slow.lua", SLOW_LUA);
  srv_start(&s, "--workers 1");
  long long t0 = now_ms();
  int fds[3];
  for (int i = 0; i < 3; i++) {
    char path[64];
    snprintf(path, sizeof path, "/slow?s=2&id=%d", i);
    fds[i] = start_get(s.port, path);
  }
  sleep_ms(500);
  srv_signal(&s, SIGTERM);
  for (int i = 0; i < 3; i++) {
    char body[32];
    snprintf(body, sizeof body, "slow %d", i);
    expect_answer(&s, fds[i], body, -1, 10000);
  }
  /* Answered while the signal waited, or during the drain: closed now either way. */
  for (int i = 0; i < 3; i++) {
    assert_int_equal(http_wait_closed(fds[i], 3000), 1);
    http_close(fds[i]);
  }
  assert_int_equal(srv_wait_exit(&s, 5000), 0);
  assert_true(now_ms() - t0 < 9000);
  assert_int_equal(srv_stop(&s), 0);
}

/* Sleeps ?s= seconds without holding its worker (every crescent.kv call
 * yields), one at a time (concurrency 1: the others wait for the place). */
static const char NAP_LUA[] =
    "local kv = require 'crescent.kv'\n"
    "return { concurrency = 1, timeout = 20, handler = function(event, ctx)\n"
    "  local stop = ctx.remaining() - (tonumber(event.query.s) or 1) * 1000\n"
    "  while ctx.remaining() > stop do kv.get('nothing') end\n"
    "  return 'nap ' .. (event.query.id or '')\n"
    "end }\n";

/* Requests waiting for a concurrency place, pipelined behind one, and one
 * still being received when SIGTERM comes are all answered; an idle
 * keep-alive connection is closed; new connections are refused. */
static void sigterm_answers_queued_pipelined_and_partial_requests(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "nap.lua", NAP_LUA);
  srv_write(&s, "q.lua", "return function(event) return 'q ' .. (event.query.id or '') end\n");
  srv_start(&s, "--workers 1 --queue-wait 30");
  int port = s.port;
  int idle = start_get(port, "/q?id=idle");
  expect_answer(&s, idle, "q idle", 0, 3000);

  long long t0 = now_ms();
  enum { N = 6 };
  int fds[N];
  for (int i = 0; i < N; i++) {
    char path[64];
    snprintf(path, sizeof path, "/nap?s=0.3&id=%d", i);
    fds[i] = start_get(port, path);
  }
  int pipe_fd = http_connect(port);
  assert_true(pipe_fd >= 0);
  http_sends(pipe_fd,
             "GET /nap?s=0.3&id=p1 HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /q?id=p2 HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /q?id=p3 HTTP/1.1\r\nHost: x\r\n\r\n");
  int part = http_connect(port);
  assert_true(part >= 0);
  http_sends(part, "GET /q?id=part HTTP/1.1\r\nHost: x\r\n");
  sleep_ms(150);
  srv_signal(&s, SIGTERM);
  wait_stopping(&s);
  expect_refused(port);
  /* The idle keep-alive connection is closed, with nothing sent. */
  assert_int_equal(http_wait_closed(idle, 3000), 1);
  http_close(idle);
  /* The request being received is read to its end and answered. */
  http_sends(part, "\r\n");
  expect_answer(&s, part, "q part", 1, 3000);
  http_close(part);
  for (int i = 0; i < N; i++) {
    char body[32];
    snprintf(body, sizeof body, "nap %d", i);
    expect_answer(&s, fds[i], body, 1, 10000);
    http_close(fds[i]);
  }
  /* Pipelined: all three in order, only the last says close. */
  expect_answer(&s, pipe_fd, "nap p1", 0, 10000);
  expect_answer(&s, pipe_fd, "q p2", 0, 3000);
  expect_answer(&s, pipe_fd, "q p3", 1, 3000);
  http_close(pipe_fd);
  assert_int_equal(srv_wait_exit(&s, 5000), 0);
  long long took = now_ms() - t0;
  if (took < 7 * 300 || took > 6000) fail_msg("the master exited %lld ms after the first nap", took);
  if (srv_log_count(&s, "drain timeout", NULL) != 0) fail_msg("the drain timed out");
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(killed_worker_gives_its_place_back),
      cmocka_unit_test(killed_worker_gives_back_every_function_and_only_its_own),
      cmocka_unit_test(stuck_worker_killed_by_the_master_gives_its_place_back),
      cmocka_unit_test(sigterm_serves_the_accept_queue_of_a_busy_worker),
      cmocka_unit_test(sigterm_answers_three_concurrent_slow_requests),
      cmocka_unit_test(sigterm_answers_queued_pipelined_and_partial_requests),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
