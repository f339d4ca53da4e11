/* test_process.c - the process model: workers replaced when they die (with
 * backoff when they keep dying), a worker stuck inside C killed and replaced,
 * draining on SIGTERM within the drain timeout, and a clear failure when the
 * port is taken. The real `crescent serve`, real signals. */
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static const char HELLO_LUA[] = "return function() return 'hello' end\n";

static void dump_log(srv_t *s) {
  char *log = srv_log(s);
  fprintf(stderr, "the server log:\n%s\n", log);
  free(log);
}

/* Asserts how many log lines hold all the given strings; shows the log if not. */
#define LOG_COUNT_IS(s, want, ...)                                                               \
  do {                                                                                           \
    int got_ = srv_log_count((s), __VA_ARGS__, NULL);                                            \
    if (got_ != (want)) {                                                                        \
      dump_log(s);                                                                               \
      fail_msg("%d log lines with " #__VA_ARGS__ ", expected %d", got_, (int)(want));            \
    }                                                                                            \
  } while (0)
/* Same, waiting (bounded) for the lines to appear. */
#define LOG_WAIT_IS(s, want, ms, ...)                                                            \
  do {                                                                                           \
    int got_ = srv_log_wait((s), (want), (ms), __VA_ARGS__, NULL);                               \
    if (got_ != (want)) {                                                                        \
      dump_log(s);                                                                               \
      fail_msg("%d log lines with " #__VA_ARGS__ ", expected %d", got_, (int)(want));            \
    }                                                                                            \
  } while (0)

/* One GET on a new connection with a read bound. Returns 0 with r filled, or -1. */
static int get_once(int port, const char *path, int timeout_ms, http_resp_t *r) {
  memset(r, 0, sizeof *r);
  int fd = http_connect(port);
  if (fd < 0) return -1;
  char req[256];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
  http_send(fd, req, (size_t)n);
  int rc = http_read(fd, r, 0, timeout_ms);
  http_close(fd);
  return rc;
}

/* GET path expecting 200 and body; a connection refused or reset (a worker
 * that just died) is retried once. Returns 1 when answered right. */
static int get_ok(int port, const char *path, const char *body, int timeout_ms) {
  for (int attempt = 0; attempt < 2; attempt++) {
    http_resp_t r;
    if (get_once(port, path, timeout_ms, &r) == 0) {
      int ok = r.status == 200 && strcmp(r.body, body) == 0;
      if (!ok) fprintf(stderr, "GET %s: unexpected answer:\n%s%s\n", path, r.head, r.body);
      http_free(&r);
      return ok;
    }
    sleep_ms(20);
  }
  fprintf(stderr, "GET %s: no answer, twice\n", path);
  return 0;
}

static int has_pid(const pid_t *pids, int n, pid_t p) {
  for (int i = 0; i < n; i++)
    if (pids[i] == p) return 1;
  return 0;
}

/* Waits (bounded) until there are `want` workers and `gone` is not one of
 * them; returns the pid that is not in `old`, or -1. */
static pid_t wait_replacement(srv_t *s, const pid_t *old, int nold, pid_t gone, int want, int timeout_ms) {
  long long deadline = now_ms() + timeout_ms;
  while (now_ms() < deadline) {
    pid_t pids[16];
    int n = srv_worker_pids(s, pids, 16);
    if (n == want && !has_pid(pids, n, gone)) {
      for (int i = 0; i < n; i++)
        if (!has_pid(old, nold, pids[i])) return pids[i];
    }
    sleep_ms(5);
  }
  return -1;
}

/* The random per-process part of a request id (a worker's signature). */
static void id_prefix(const http_resp_t *r, char out[25]) {
  const char *id = http_header(r, "x-request-id");
  assert_non_null(id);
  assert_int_equal(strlen(id), 36);
  memcpy(out, id, 24);
  out[24] = '\0';
}

/* --- a killed worker is replaced --------------------------------------------------------------- */

/* A worker's watchdog thread holds no descriptor: it gave up its share of the
 * table (so the worker's syscalls take the single-threaded path) and must not
 * keep the worker's sockets open. The worker itself keeps its own. */
static int count_fds(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

static void watchdog_thread_holds_no_descriptors(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "hello.lua", HELLO_LUA);
  srv_start(&s, "--workers 1");
  pid_t pids[4];
  assert_int_equal(srv_worker_pids(&s, pids, 4), 1);
  http_expect_body(s.port, "/hello", "hello");
  char dir[128];
  snprintf(dir, sizeof dir, "/proc/%d/task", (int)pids[0]);
  DIR *d = opendir(dir);
  assert_non_null(d);
  int threads = 0, others = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    threads++;
    char fds[600]; /* dir (at most 300) + "/" + d_name (at most 255) + "/fd" */
    snprintf(fds, sizeof fds, "%s/%s/fd", dir, e->d_name);
    int n = count_fds(fds);
    if (atoi(e->d_name) == (int)pids[0]) {
      assert_true(n >= 3); /* the worker: its listener, loop, pipes */
    } else {
      others++;
      assert_int_equal(n, 0);
    }
  }
  closedir(d);
  assert_int_equal(threads, 2);
  assert_int_equal(others, 1);
  assert_int_equal(srv_stop(&s), 0);
}

static void killed_worker_is_replaced_and_service_continues(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "hello.lua", HELLO_LUA);
  srv_start(&s, "--workers 2");
  pid_t pids[16];
  /* "listening" comes from the first worker up; the second may be a moment later. */
  assert_int_equal(srv_workers_wait(&s, pids, 16, 2, 5000), 2);
  pid_t victim = pids[0], survivor = pids[1];

  /* Before: note which workers answer (their id prefixes). */
  char seen[64][25];
  int nseen = 0;
  for (int i = 0; i < 20; i++) {
    http_resp_t r;
    assert_int_equal(get_once(s.port, "/hello", 3000, &r), 0);
    assert_int_equal(r.status, 200);
    char p[25];
    id_prefix(&r, p);
    int known = 0;
    for (int k = 0; k < nseen; k++) known |= strcmp(seen[k], p) == 0;
    if (!known && nseen < 64) memcpy(seen[nseen++], p, 25);
    http_free(&r);
  }

  assert_int_equal(kill(victim, SIGKILL), 0);
  long long t0 = now_ms();
  /* Requests keep succeeding while the master notices and replaces it. */
  int failures = 0, requests = 0;
  pid_t fresh = -1;
  while (fresh < 0 && now_ms() - t0 < 5000 && requests < 500) {
    if (!get_ok(s.port, "/hello", "hello", 3000)) failures++;
    requests++;
    fresh = wait_replacement(&s, pids, 2, victim, 2, 1);
  }
  if (fresh < 0) fresh = wait_replacement(&s, pids, 2, victim, 2, 5000 - (int)(now_ms() - t0));
  assert_true(fresh > 0);
  assert_int_equal(failures, 0);
  pid_t now_pids[16];
  assert_int_equal(srv_worker_pids(&s, now_pids, 16), 2);
  assert_true(has_pid(now_pids, 2, survivor));
  assert_true(has_pid(now_pids, 2, fresh));

  /* The master said so, as an error. */
  char needle[64];
  snprintf(needle, sizeof needle, "(pid %d) was killed by signal 9; starting a new one", (int)victim);
  LOG_WAIT_IS(&s, 1, 3000, "\"level\":\"error\"", needle);
  srv_expect_errors(&s, 1);

  /* The new worker serves: a request id prefix not seen before the kill shows up. */
  int new_worker_answered = 0;
  for (int i = 0; i < 60 && !new_worker_answered; i++) {
    http_resp_t r;
    int rc = get_once(s.port, "/hello", 3000, &r);
    if (rc != 0) fail_msg("no answer after the replacement");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello");
    char p[25];
    id_prefix(&r, p);
    int known = 0;
    for (int k = 0; k < nseen; k++) known |= strcmp(seen[k], p) == 0;
    new_worker_answered = !known;
    http_free(&r);
  }
  assert_true(new_worker_answered);
  assert_int_equal(srv_stop(&s), 0);
}

static void worker_killed_repeatedly_is_replaced_with_backoff(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "hello.lua", HELLO_LUA);
  srv_start(&s, "--workers 1");
  /* A worker that dies within 1 s of starting counts as crashing: let the
   * first one live past that, so the first restart is immediate. */
  sleep_ms(1200);
  pid_t pids[16];
  assert_int_equal(srv_worker_pids(&s, pids, 16), 1);
  pid_t pid = pids[0];
  const int kills = 5;
  for (int k = 0; k < kills; k++) {
    assert_int_equal(kill(pid, SIGKILL), 0);
    long long t0 = now_ms();
    pid_t old[1] = {pid};
    pid_t fresh = wait_replacement(&s, old, 1, pid, 1, 5000);
    long long gap = now_ms() - t0;
    if (fresh < 0) fail_msg("kill %d: no new worker within 5 s", k + 1);
    char needle[64];
    snprintf(needle, sizeof needle, "(pid %d) was killed by signal 9; starting a new one", (int)pid);
    LOG_WAIT_IS(&s, 1, 3000, "\"level\":\"error\"", needle);
    int delay = k == 0 ? 0 : 100 << (k - 1); /* 0, 100, 200, 400, 800 ms */
    if (k == 0) {
      LOG_COUNT_IS(&s, 0, needle, "starting a new one in");
    } else {
      char in[48];
      snprintf(in, sizeof in, "starting a new one in %d ms", delay);
      if (srv_log_count(&s, needle, in, NULL) != 1) {
        char *log = srv_log(&s);
        fprintf(stderr, "the log:\n%s\n", log);
        free(log);
        fail_msg("kill %d: expected a restart in %d ms", k + 1, delay);
      }
    }
    /* The backoff is real: the new worker did not come sooner. */
    if (gap < delay - 20) fail_msg("kill %d: replaced after %lld ms, backoff was %d ms", k + 1, gap, delay);
    pid = fresh;
  }
  srv_expect_errors(&s, kills);
  /* The last one stays and serves. */
  int ok = 0;
  long long deadline = now_ms() + 3000;
  for (int i = 0; i < 100 && !ok && now_ms() < deadline; i++) {
    http_resp_t r;
    if (get_once(s.port, "/hello", 2000, &r) == 0) {
      ok = r.status == 200 && strcmp(r.body, "hello") == 0;
      http_free(&r);
    } else {
      sleep_ms(20);
    }
  }
  assert_true(ok);
  assert_int_equal(srv_worker_pids(&s, pids, 16), 1);
  assert_int_equal(pids[0], pid);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- draining ---------------------------------------------------------------------------------- */

static void sigterm_finishes_the_request_in_flight(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "hello.lua", HELLO_LUA);
  srv_write(&s, "slow.lua", "return function() local t = os.clock() while os.clock() - t < 1 do end return 'done' end\n");
  srv_start(&s, "--workers 2");
  int port = s.port;
  /* An idle kept-alive connection: closed by the drain, not waited for. */
  int idle = http_connect(port);
  assert_true(idle >= 0);
  http_sends(idle, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  http_resp_t r;
  assert_int_equal(http_read(idle, &r, 0, 3000), 0);
  assert_int_equal(r.status, 200);
  http_free(&r);

  int fd = http_connect(port);
  assert_true(fd >= 0);
  long long t0 = now_ms();
  http_sends(fd, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
  sleep_ms(300); /* the function is running */
  srv_signal(&s, SIGTERM);
  assert_int_equal(http_read(fd, &r, 0, 5000), 0);
  long long took = now_ms() - t0;
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "done");
  /* The worker may answer before it handles the signal (it was busy in
   * Lua), so the answer need not say close; the connection closes anyway. */
  const char *conn = http_header(&r, "connection");
  if (conn) assert_string_equal(conn, "close");
  http_free(&r);
  assert_true(took >= 900);
  assert_int_equal(http_wait_closed(fd, 3000), 1);
  http_close(fd);
  assert_int_equal(http_wait_closed(idle, 3000), 1);
  http_close(idle);

  assert_int_equal(srv_wait_exit(&s, 5000), 0);
  assert_true(now_ms() - t0 < 4000);
  /* New connections are refused now. */
  int late = http_connect(port);
  if (late >= 0) {
    http_close(late);
    fail_msg("a connection was accepted after the server stopped");
  }
  LOG_COUNT_IS(&s, 1, "\"msg\":\"received Terminated\"");
  LOG_COUNT_IS(&s, 1, "\"msg\":\"stopped\"");
  LOG_COUNT_IS(&s, 0, "drain timeout");
  assert_int_equal(srv_stop(&s), 0);
}

static void drain_timeout_bounds_the_exit(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "long.lua",
            "return { timeout = 5, handler = function()\n"
            "  local t = os.clock() while os.clock() - t < 3 do end return 'late' end }\n");
  srv_start(&s, "--workers 1 --drain-timeout 1");
  int port = s.port;
  int fd = http_connect(port);
  assert_true(fd >= 0);
  http_sends(fd, "GET /long HTTP/1.1\r\nHost: x\r\n\r\n");
  sleep_ms(300);
  long long t0 = now_ms();
  srv_signal(&s, SIGTERM);
  int rc = srv_wait_exit(&s, 6000);
  long long took = now_ms() - t0;
  assert_int_equal(rc, 0);
  /* It waited for the drain, but not for the function. */
  if (took < 800 || took > 2500) fail_msg("the master exited %lld ms after SIGTERM (drain timeout 1 s)", took);
  http_resp_t r;
  assert_int_equal(http_read(fd, &r, 0, 2000), -1); /* cut off, never answered */
  assert_int_equal(r.closed, 1);
  http_close(fd);
  LOG_COUNT_IS(&s, 1, "\"level\":\"warn\"", "drain timeout: killing 1 workers still busy");
  LOG_COUNT_IS(&s, 1, "\"msg\":\"stopped\"");
  assert_true(http_connect(port) < 0);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- the port ---------------------------------------------------------------------------------- */

static void second_server_on_the_same_port_fails(void **state) {
  (void)state;
  srv_t a, b;
  srv_init(&a);
  srv_write(&a, "hello.lua", HELLO_LUA);
  srv_start(&a, "--workers 1");
  srv_init(&b);
  srv_write(&b, "hello.lua", HELLO_LUA);
  char args[64];
  snprintf(args, sizeof args, "--workers 1 --listen 127.0.0.1:%d", a.port);
  long long t0 = now_ms();
  assert_int_equal(srv_try_start(&b, args, 10000), -1);
  assert_true(now_ms() - t0 < 10000);
  assert_int_equal(b.stopped, 1); /* it exited, it did not hang */
  assert_true(b.exit_status != 0);
  char where[64];
  snprintf(where, sizeof where, "cannot listen on 127.0.0.1:%d", a.port);
  LOG_COUNT_IS(&b, 1, "\"level\":\"error\"", where, "the address is in use");
  LOG_COUNT_IS(&b, 0, "\"msg\":\"listening\"");
  srv_expect_errors(&b, 1);
  assert_true(srv_stop(&b) != 0);
  /* The first one is untouched. */
  for (int i = 0; i < 5; i++) assert_true(get_ok(a.port, "/hello", "hello", 3000));
  pid_t pids[4];
  assert_int_equal(srv_worker_pids(&a, pids, 4), 1);
  assert_int_equal(srv_stop(&a), 0);
}

/* --- stuck inside C ---------------------------------------------------------------------------- */

static void worker_stuck_in_c_is_killed_and_replaced(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "hello.lua", HELLO_LUA);
  /* Exponential backtracking inside string.find: hooks cannot stop it. */
  srv_write(&s, "stuck.lua",
            "return { timeout = 1, handler = function()\n"
            "  string.rep('a', 30):find(string.rep('a?', 30) .. string.rep('a', 30))\n"
            "  return 'x' end }\n");
  srv_start(&s, "--workers 2 --kill-grace 0.5");
  pid_t before[16];
  assert_int_equal(srv_worker_pids(&s, before, 16), 2);

  int fd = http_connect(s.port);
  assert_true(fd >= 0);
  long long t0 = now_ms();
  http_sends(fd, "GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n");
  sleep_ms(100);

  /* While it is stuck, the other worker answers. Connections are spread over
   * the workers' listeners by the kernel: of 16 made at once, those on the
   * healthy worker are answered at once; those queued on the stuck one wait
   * for it to be killed (then they are reset, and retried once). */
  enum { NPAR = 16 };
  int par[NPAR];
  for (int i = 0; i < NPAR; i++) {
    par[i] = http_connect(s.port);
    assert_true(par[i] >= 0);
    http_sends(par[i], "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  }
  int ok_while_stuck = 0, failures = 0, requests = 0;
  int answered[NPAR] = {0};
  for (int round = 0; round < 200 && now_ms() < t0 + 1200; round++) {
    for (int i = 0; i < NPAR; i++) {
      http_resp_t r;
      if (answered[i] || http_read(par[i], &r, 0, 5) != 0) continue;
      assert_int_equal(r.status, 200);
      assert_string_equal(r.body, "hello");
      http_free(&r);
      answered[i] = 1;
      if (srv_log_count(&s, "is stuck", NULL) == 0) ok_while_stuck++;
    }
  }
  for (int i = 0; i < NPAR; i++) {
    if (!answered[i]) {
      http_resp_t r;
      int rc = http_read(par[i], &r, 0, 4000);
      if (rc == 0) {
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "hello");
        http_free(&r);
      } else if (!get_ok(s.port, "/hello", "hello", 4000)) {
        failures++;
      }
    }
    http_close(par[i]);
  }
  /* And one request after another until just past the kill. */
  long long stuck_at = 0;
  while (now_ms() - t0 < 8000 && requests < 400) {
    int ok = get_ok(s.port, "/hello", "hello", 4000);
    requests++;
    if (!ok) failures++;
    int stuck = srv_log_count(&s, "is stuck", NULL);
    if (stuck && !stuck_at) stuck_at = now_ms();
    if (stuck_at && now_ms() - stuck_at > 500) break;
    sleep_ms(20);
  }
  assert_int_equal(failures, 0);
  assert_true(ok_while_stuck >= 1);
  if (!stuck_at) fail_msg("the stuck worker was not killed within 8 s");
  /* Not before its deadline (1 s) plus the grace (0.5 s). */
  assert_true(stuck_at - t0 >= 1300);

  /* The stuck request's connection ends (closed, or a 5xx); it is never a 200. */
  http_resp_t r;
  if (http_read(fd, &r, 0, 3000) == 0) {
    assert_true(r.status >= 500);
    http_free(&r);
  }
  http_close(fd);

  LOG_COUNT_IS(&s, 1, "\"level\":\"error\"", "is stuck in stuck", "killing it");
  srv_expect_errors(&s, 1);
  /* Replaced, as a warning (the master killed it on purpose). */
  LOG_WAIT_IS(&s, 1, 3000, "\"level\":\"warn\"", "was killed by signal 9; starting a new one");
  pid_t after[16];
  long long deadline = now_ms() + 3000;
  int n = 0, replaced = 0;
  while (now_ms() < deadline && !replaced) {
    n = srv_worker_pids(&s, after, 16);
    int kept = 0, fresh = 0;
    for (int i = 0; i < n; i++) {
      if (has_pid(before, 2, after[i])) kept++;
      else fresh++;
    }
    replaced = n == 2 && kept == 1 && fresh == 1;
    if (!replaced) sleep_ms(10);
  }
  assert_true(replaced);
  for (int i = 0; i < 10; i++) assert_true(get_ok(s.port, "/hello", "hello", 3000));
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(watchdog_thread_holds_no_descriptors),
      cmocka_unit_test(killed_worker_is_replaced_and_service_continues),
      cmocka_unit_test(worker_killed_repeatedly_is_replaced_with_backoff),
      cmocka_unit_test(sigterm_finishes_the_request_in_flight),
      cmocka_unit_test(drain_timeout_bounds_the_exit),
      cmocka_unit_test(second_server_on_the_same_port_fails),
      cmocka_unit_test(worker_stuck_in_c_is_killed_and_replaced),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
