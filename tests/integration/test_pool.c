/* test_pool.c - the warm pool and metering of docs/architecture.md §3 and §7 over real
 * HTTP: cold then warm starts, provisioned (`warm`) instances, scale to zero
 * (`idle`), the concurrency limit across workers (queueing, then 429), and
 * the meters: report lines, /_/api/functions and /_/metrics. */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cmocka.h>

#include "harness.h"

/* --- helpers ------------------------------------------------------------------------------------ */

/* GET that must answer 200 with exactly `want` as the body; returns its request id. */
static void get_body_id(int port, const char *path, const char *want, char *rid, size_t n) {
  http_resp_t r;
  http_get(port, path, &r);
  if (r.status != 200 || strcmp(r.body, want) != 0)
    fail_msg("GET %s: got %d '%s', want 200 '%s'", path, r.status, r.body, want);
  if (rid) http_request_id(&r, rid, n);
  http_free(&r);
}

/* Is the value of "key": an integer literal (digits only)? */
static int jint_literal(const char *json, const char *key) {
  const char *v = json_val(json, key);
  if (!v || *v < '0' || *v > '9') return 0;
  while (*v >= '0' && *v <= '9') v++;
  return *v == ',' || *v == '}';
}

/* The entry of function name in a /_/api/functions answer (malloc'd). */
static char *fn_entry(int port, const char *name) {
  http_resp_t r;
  http_get(port, "/_/api/functions", &r);
  assert_int_equal(r.status, 200);
  char *out = api_fn_entry(r.body, name);
  if (!out) fail_msg("%s missing from /_/api/functions: %s", name, r.body);
  http_free(&r);
  return out;
}

/* A function's instances from /_/api/functions. */
static void instances(int port, const char *name, int *idle, int *busy) {
  char *e = fn_entry(port, name);
  const char *in = json_val(e, "instances");
  if (!in) fail_msg("no instances for %s: %s", name, e);
  *idle = (int)json_num(in, "idle");
  *busy = (int)json_num(in, "busy");
  free(e);
}

/* Polls until the function has `want` idle instances; returns how long it took (ms) or -1. */
static long long wait_idle(int port, const char *name, int want, int timeout_ms) {
  long long t0 = now_ms();
  for (;;) {
    int idle, busy;
    instances(port, name, &idle, &busy);
    if (idle == want && busy == 0) return now_ms() - t0;
    if (now_ms() - t0 >= timeout_ms) return -1;
    sleep_ms(20);
  }
}

/* --- cold and warm ------------------------------------------------------------------------------ */

static void cold_then_warm(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "cw.lua",
            "local calls = 0\n"
            "return { memory = 64, handler = function(event, ctx)\n"
            "  calls = calls + 1\n"
            "  return tostring(ctx.cold) .. '|' .. calls\n"
            "end }\n");
  srv_start(&s, "--workers 1");
  for (int i = 1; i <= 4; i++) {
    char want[32];
    snprintf(want, sizeof want, "%s|%d", i == 1 ? "true" : "false", i);
    http_resp_t r;
    http_get(s.port, "/cw", &r);
    if (r.status != 200 || strcmp(r.body, want) != 0) fail_msg("call %d: got %d '%s', want '%s'", i, r.status, r.body, want);
    const char *st = http_header(&r, "server-timing");
    assert_non_null(st);
    char timing[256];
    snprintf(timing, sizeof timing, "%s", st);
    if (i == 1) {
      const char *init = strstr(timing, "init;dur=");
      if (!init) fail_msg("cold start without init in server-timing: %s", timing);
      assert_true(strtod(init + 9, NULL) > 0);
    } else if (strstr(timing, "init;dur=")) {
      fail_msg("call %d: warm start with init in server-timing: %s", i, timing);
    }
    assert_non_null(strstr(timing, "fn;dur="));
    char rid[128];
    snprintf(rid, sizeof rid, "%.100s", http_header(&r, "x-request-id"));
    http_free(&r);

    char *rep = srv_report_of(&s, rid);
    if (i == 1) {
      assert_non_null(strstr(rep, "\"start\":\"cold\""));
      assert_true(json_num(rep, "initDuration") > 0);
    } else {
      assert_non_null(strstr(rep, "\"start\":\"warm\""));
      assert_null(strstr(rep, "\"initDuration\""));
    }
    assert_non_null(strstr(rep, "\"memorySize\":64,"));
    free(rep);
  }
  char *e = fn_entry(s.port, "cw");
  const char *m = json_val(e, "metrics");
  assert_non_null(m);
  assert_int_equal((int)json_num(m, "coldStarts"), 1);
  assert_int_equal((int)json_num(m, "invocations"), 4);
  /* Default prices: $0.20 per million requests. */
  assert_non_null(strstr(m, "\"requests\":0.00000080,"));
  free(e);
  int idle, busy;
  instances(s.port, "cw", &idle, &busy);
  assert_int_equal(idle, 1);
  assert_int_equal(busy, 0);
  assert_int_equal(srv_stop(&s), 0);
}

/* warm = 2: instances are booted between requests, so even the first
 * request is a warm start; they are kept past `idle`. */
static void provisioned_instances(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "prov.lua",
            "local calls = 0\n"
            "return { warm = 2, idle = 1, handler = function(event, ctx)\n"
            "  calls = calls + 1\n"
            "  return tostring(ctx.cold) .. '|' .. calls\n"
            "end }\n");
  srv_write(&s, "plain.lua", "return function() return 'plain' end\n");
  srv_start(&s, "--workers 1");
  /* Booted without a request. */
  if (wait_idle(s.port, "prov", 2, 5000) < 0) fail_msg("the 2 warm instances were never provisioned");
  int idle, busy;
  instances(s.port, "plain", &idle, &busy);
  assert_int_equal(idle, 0);

  char rid[128];
  get_body_id(s.port, "/prov", "false|1", rid, sizeof rid);
  char *rep = srv_report_of(&s, rid);
  assert_non_null(strstr(rep, "\"start\":\"warm\""));
  assert_null(strstr(rep, "\"initDuration\""));
  free(rep);
  /* Still two, idle. */
  assert_true(wait_idle(s.port, "prov", 2, 2000) >= 0);

  /* Past `idle` (1 s) the warm ones stay, and still start warm. */
  sleep_ms(2500);
  instances(s.port, "prov", &idle, &busy);
  assert_int_equal(idle, 2);
  http_resp_t r;
  http_get(s.port, "/prov", &r);
  assert_int_equal(r.status, 200);
  assert_true(strncmp(r.body, "false|", 6) == 0);
  const char *st = http_header(&r, "server-timing");
  assert_non_null(st);
  assert_null(strstr(st, "init;dur="));
  http_free(&r);

  char *e = fn_entry(s.port, "prov");
  assert_int_equal((int)json_num(json_val(e, "metrics"), "coldStarts"), 0);
  assert_int_equal((int)json_num(json_val(e, "metrics"), "invocations"), 2);
  free(e);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", "\"function\":\"prov\"", "\"start\":\"cold\"", NULL), 0);
  assert_int_equal(srv_stop(&s), 0);
}

/* idle = 1, warm = 0: an unused instance is closed after a second or two
 * (never before its second), and the next call is cold again. */
static void scale_to_zero(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "z.lua",
            "local calls = 0\n"
            "return { idle = 1, handler = function(event, ctx)\n"
            "  calls = calls + 1\n"
            "  return tostring(ctx.cold) .. '|' .. calls\n"
            "end }\n");
  srv_start(&s, "--workers 1");
  int idle, busy;
  instances(s.port, "z", &idle, &busy);
  assert_int_equal(idle, 0);

  for (int round = 0; round < 2; round++) {
    char rid[128];
    get_body_id(s.port, "/z", "true|1", rid, sizeof rid);
    get_body_id(s.port, "/z", "false|2", NULL, 0);
    long long used = now_ms();
    char *rep = srv_report_of(&s, rid);
    assert_non_null(strstr(rep, "\"start\":\"cold\""));
    free(rep);
    instances(s.port, "z", &idle, &busy);
    assert_int_equal(idle, 1);
    assert_int_equal(busy, 0);
    /* Not before its idle second ... */
    sleep_ms(500);
    instances(s.port, "z", &idle, &busy);
    assert_int_equal(idle, 1);
    /* ... but by ~2.5 s it is gone (sweeps run every second). */
    if (wait_idle(s.port, "z", 0, 3500) < 0) fail_msg("round %d: the idle instance was never closed", round);
    long long gone = now_ms() - used;
    if (gone < 950 || gone > 3500) fail_msg("round %d: closed %lld ms after its last use", round, gone);
  }
  char *e = fn_entry(s.port, "z");
  assert_int_equal((int)json_num(json_val(e, "metrics"), "coldStarts"), 2);
  free(e);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- concurrency -------------------------------------------------------------------------------- */

/* Busy for 1.5 s of its own (ctx.remaining() counts down from the timeout). */
static const char SLOW_LUA[] =
    "return { concurrency = 1, timeout = 5, handler = function(event, ctx)\n"
    "  local stop = ctx.remaining() - 1500\n"
    "  while ctx.remaining() > stop do end\n"
    "  return 'done'\n"
    "end }\n";

static void concurrency_limit_throttles(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "slow.lua", SLOW_LUA);
  srv_start(&s, "--workers 2 --queue-wait 0.3");
  enum { N = 16 };
  int fds[N];
  for (int i = 0; i < N; i++) {
    fds[i] = http_connect(s.port);
    assert_true(fds[i] >= 0);
  }
  long long t0 = now_ms();
  /* Keep-alive requests (see queued_request_on_a_closing_connection for "Connection: close"). */
  for (int i = 0; i < N; i++) http_sends(fds[i], "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
  /* Read them all as they come (a worker busy with one runs the next of its
   * own after it: up to N x 1.5 s in the worst case). */
  int ok = 0, throttled = 0, done = 0;
  int answered[N] = {0};
  long long last_ok = 0;
  long long deadline = t0 + 30000;
  while (done < N && now_ms() < deadline) {
    struct pollfd p[N];
    int map[N], np = 0;
    for (int i = 0; i < N; i++) {
      if (answered[i]) continue;
      p[np] = (struct pollfd){fds[i], POLLIN, 0};
      map[np++] = i;
    }
    if (poll(p, (nfds_t)np, 1000) <= 0) continue;
    for (int k = 0; k < np; k++) {
      if (!(p[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      int i = map[k];
      http_resp_t r;
      if (http_read(fds[i], &r, 0, 5000) != 0)
        fail_msg("request %d: no full answer after %lld ms (closed: %d)", i, now_ms() - t0, r.closed);
      answered[i] = 1;
      done++;
      if (r.status == 200) {
        assert_string_equal(r.body, "done");
        ok++;
        last_ok = now_ms() - t0;
      } else if (r.status == 429) {
        assert_string_equal(r.body, "{\"error\":\"too many requests\"}");
        assert_string_equal(http_header(&r, "content-type"), "application/json");
        const char *ra = http_header(&r, "retry-after");
        if (!ra || atoi(ra) < 1) fail_msg("429 without a Retry-After: %s", r.head);
        /* Refused after waiting its queue-wait (0.3 s), not at once. */
        long long at = now_ms() - t0;
        if (at < 290) fail_msg("request %d: 429 after %lld ms, before its 0.3 s queue-wait", i, at);
        throttled++;
      } else {
        fail_msg("request %d: got %d '%s'", i, r.status, r.body);
      }
      http_free(&r);
      http_close(fds[i]);
    }
  }
  if (done < N) fail_msg("only %d of %d requests answered in 30 s", done, N);
  if (ok < 1 || throttled < 1) fail_msg("want both 200 and 429, got %d x 200 and %d x 429", ok, throttled);
  /* Concurrency 1 across both workers: the successful ones ran one at a time. */
  if (last_ok < (long long)ok * 1450) fail_msg("%d runs of 1.5 s ended after only %lld ms: they overlapped", ok, last_ok);

  /* Each worker adds its meters to shared memory when its loop comes round:
   * the other worker's last ones may be a moment behind this answer. */
  char *e = NULL;
  const char *m = NULL;
  for (long long until = now_ms() + 2000;;) {
    free(e);
    e = fn_entry(s.port, "slow");
    m = json_val(e, "metrics");
    assert_non_null(m);
    if ((int)json_num(m, "throttles") == throttled && (int)json_num(m, "invocations") == ok) break;
    if (now_ms() >= until) fail_msg("metrics disagree with %d x 200 and %d x 429: %s", ok, throttled, m);
    sleep_ms(20);
  }
  assert_int_equal((int)json_num(m, "errors"), 0);
  free(e);
  assert_int_equal(srv_log_count(&s, "\"level\":\"warn\"", "throttled", "\"function\":\"slow\"", NULL), throttled);
  http_resp_t r;
  http_get(s.port, "/_/metrics", &r);
  char line[128];
  snprintf(line, sizeof line, "\ncrescent_throttles_total{function=\"slow\"} %d\n", throttled);
  if (!strstr(r.body, line)) fail_msg("/_/metrics lacks '%s'", line + 1);
  http_free(&r);
  assert_int_equal(srv_stop(&s), 0);
}

/* The worker (from its report line) that answered on a keep-alive connection. */
static int conn_worker(srv_t *s, int fd) {
  http_sends(fd, "GET /quick HTTP/1.1\r\nHost: x\r\n\r\n");
  http_resp_t r;
  if (http_read(fd, &r, 0, 5000) != 0) fail_msg("/quick: no answer");
  assert_int_equal(r.status, 200);
  char rid[128];
  snprintf(rid, sizeof rid, "%.100s", http_header(&r, "x-request-id"));
  http_free(&r);
  char *rep = srv_report_of(s, rid);
  int w = (int)json_num(rep, "worker");
  free(rep);
  return w;
}

/* A keep-alive connection served by worker w (of 2). */
static int conn_on_worker(srv_t *s, int w) {
  int spare[32], nspare = 0, found = -1;
  for (int i = 0; i < 32 && found < 0; i++) {
    int fd = http_connect(s->port);
    assert_true(fd >= 0);
    if (conn_worker(s, fd) == w) found = fd;
    else spare[nspare++] = fd;
  }
  for (int i = 0; i < nspare; i++) http_close(spare[i]);
  if (found < 0) fail_msg("32 connections, none on worker %d", w);
  return found;
}

/* Sends req0, then req1 0.2 s later (req0 is running by then); reads both
 * answers and when they came (ms after req0). */
static void slow_pair(int fd0, const char *req0, int fd1, const char *req1, http_resp_t r[2], long long at[2]) {
  long long t0 = now_ms();
  http_sends(fd0, req0);
  sleep_ms(200);
  http_sends(fd1, req1);
  int fds[2] = {fd0, fd1};
  for (int i = 0; i < 2; i++) {
    if (http_read(fds[i], &r[i], 0, 10000) != 0) {
      if (i == 1) http_free(&r[0]);
      fail_msg("request %d: no answer after %lld ms (closed: %d)", i, now_ms() - t0, r[i].closed);
    }
    at[i] = now_ms() - t0;
  }
}

/* With a long enough queue-wait, a request that waits for the place held on
 * another worker gets it, and a 200. */
static void concurrency_queue_waits(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "slow.lua", SLOW_LUA);
  srv_write(&s, "quick.lua", "return function() return 'quick' end\n");
  srv_start(&s, "--workers 2 --queue-wait 3");
  int fd0 = conn_on_worker(&s, 0), fd1 = conn_on_worker(&s, 1);
  for (int round = 0; round < 2; round++) {
    http_resp_t r[2];
    long long at[2];
    const char *req = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";
    slow_pair(fd0, req, fd1, req, r, at);
    for (int i = 0; i < 2; i++) {
      if (r[i].status != 200 || strcmp(r[i].body, "done") != 0)
        fail_msg("round %d: worker %d answered %d '%s' (after %lld ms)", round, i, r[i].status, r[i].body, at[i]);
      http_free(&r[i]);
    }
    /* The first ran, the second waited for it on the other worker: ~1.5 s and ~3 s. */
    if (at[0] < 1400 || at[0] > 2500 || at[1] < 2900 || at[1] > 4500)
      fail_msg("round %d: answers after %lld and %lld ms, want ~1.5 s and ~3 s", round, at[0], at[1]);
  }
  http_close(fd0);
  http_close(fd1);
  /* Meters reach shared memory once per loop iteration, just after the
   * answer is written: the other worker may not have flushed yet. */
  char *e = NULL;
  for (int i = 0; i < 100; i++) {
    free(e);
    e = fn_entry(s.port, "slow");
    if ((int)json_num(json_val(e, "metrics"), "invocations") >= 4) break;
    sleep_ms(20);
  }
  assert_int_equal((int)json_num(json_val(e, "metrics"), "throttles"), 0);
  assert_int_equal((int)json_num(json_val(e, "metrics"), "invocations"), 4);
  free(e);
  assert_int_equal(srv_stop(&s), 0);
}

/* A request that has to wait for a place is answered even when it asked for
 * its connection to be closed afterwards (Connection: close, HTTP/1.0). */
static void queued_request_on_a_closing_connection(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "slow.lua", SLOW_LUA);
  srv_write(&s, "quick.lua", "return function() return 'quick' end\n");
  srv_start(&s, "--workers 2 --queue-wait 3");
  const char *closing[] = {"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                           "GET /slow HTTP/1.0\r\nHost: x\r\n\r\n"};
  for (int round = 0; round < 2; round++) {
    /* Worker 0 runs one (keep-alive); worker 1's request waits for its place. */
    int fd0 = conn_on_worker(&s, 0), fd1 = conn_on_worker(&s, 1);
    http_resp_t r[2];
    long long at[2];
    slow_pair(fd0, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", fd1, closing[round], r, at);
    for (int i = 0; i < 2; i++) {
      if (r[i].status != 200 || strcmp(r[i].body, "done") != 0)
        fail_msg("round %d: request %d answered %d '%s' (after %lld ms)", round, i, r[i].status, r[i].body, at[i]);
    }
    if (at[1] < 2900 || at[1] > 4500) fail_msg("round %d: the waiting request answered after %lld ms", round, at[1]);
    assert_true(r[1].closed);
    http_free(&r[0]);
    http_free(&r[1]);
    http_close(fd0);
    http_close(fd1);
  }
  assert_int_equal(srv_stop(&s), 0);
}

/* --- metering ----------------------------------------------------------------------------------- */

static void metering(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  /* Busy ~3 ms per call, so durations are not all zero. */
  srv_write(&s, "meter.lua",
            "return { memory = 256, handler = function(event, ctx)\n"
            "  local stop = ctx.remaining() - 3\n"
            "  while ctx.remaining() > stop do end\n"
            "  if event.query.fail then error('metered failure') end\n"
            "  return 'metered'\n"
            "end }\n");
  srv_write(&s, "idle.lua", "return function() return 'x' end\n");
  /* Prices that make the arithmetic visible: $2 per request, $1000 per GB-s. */
  srv_start(&s, "--workers 1 --price-request 2000000 --price-gb-second 1000");
  enum { N = 8 };
  char rids[N][128];
  double billed_sum = 0, dur_sum = 0;
  for (int i = 0; i < N; i++) {
    const char *path = i == N - 1 ? "/meter?fail=1" : "/meter";
    http_resp_t r;
    http_get(s.port, path, &r);
    assert_int_equal(r.status, i == N - 1 ? 500 : 200);
    snprintf(rids[i], sizeof rids[i], "%.100s", http_header(&r, "x-request-id"));
    http_free(&r);
  }
  srv_expect_errors(&s, 1);

  /* Every report line: every field, sane values. */
  for (int i = 0; i < N; i++) {
    char *rep = srv_report_of(&s, rids[i]);
    char idf[300];
    snprintf(idf, sizeof idf, "\"requestId\":\"%.200s\"", rids[i]);
    const char *must[] = {idf, "\"function\":\"meter\"", "\"version\":1,", "\"trigger\":\"http\"",
                          i == 0 ? "\"start\":\"cold\"" : "\"start\":\"warm\"", "\"memorySize\":256,",
                          i == N - 1 ? "\"status\":500" : "\"status\":200"};
    for (size_t k = 0; k < sizeof must / sizeof must[0]; k++)
      if (!strstr(rep, must[k])) fail_msg("report %d lacks %s: %s", i, must[k], rep);
    if (i == 0) assert_true(json_num(rep, "initDuration") > 0);
    else assert_null(json_val(rep, "initDuration"));
    double dur = json_num(rep, "duration"), billed = json_num(rep, "billedDuration"), cpu = json_num(rep, "cpuTime");
    if (!jint_literal(rep, "billedDuration")) fail_msg("billedDuration is not an integer: %s", rep);
    if (!jint_literal(rep, "maxMemoryUsed")) fail_msg("maxMemoryUsed is not an integer: %s", rep);
    if (!(dur >= 2.5 && dur < 1000)) fail_msg("duration %.3f for a ~3 ms call", dur);
    if (!(billed >= 1 && billed >= dur && billed < dur + 1)) fail_msg("billedDuration %.0f for duration %.3f", billed, dur);
    if (!(cpu >= 0 && cpu <= dur + 1)) fail_msg("cpuTime %.3f for duration %.3f", cpu, dur);
    double mem = json_num(rep, "maxMemoryUsed");
    if (!(mem > 1000 && mem < 256.0 * 1024 * 1024)) fail_msg("maxMemoryUsed %.0f", mem);
    if (i == N - 1) assert_non_null(strstr(rep, "\"outcome\":\"error\""));
    else assert_null(strstr(rep, "\"outcome\""));
    billed_sum += billed;
    dur_sum += dur;
    free(rep);
  }

  /* /_/api/functions: the sums of the report lines. */
  char *e = fn_entry(s.port, "meter");
  const char *m = json_val(e, "metrics");
  assert_non_null(m);
  assert_int_equal((int)json_num(m, "invocations"), N);
  assert_int_equal((int)json_num(m, "errors"), 1);
  assert_int_equal((int)json_num(m, "timeouts"), 0);
  assert_int_equal((int)json_num(m, "throttles"), 0);
  assert_int_equal((int)json_num(m, "coldStarts"), 1);
  double billed_ms = json_num(m, "billedMsSum"), dur_ms = json_num(m, "durationMsSum"), gbs = json_num(m, "gbSeconds");
  if (billed_ms != billed_sum) fail_msg("billedMsSum %.0f, the reports say %.0f", billed_ms, billed_sum);
  assert_true(billed_ms >= N);
  if (!(dur_ms > dur_sum - 0.1 * N && dur_ms < dur_sum + 0.1 * N))
    fail_msg("durationMsSum %.3f, the reports say %.3f", dur_ms, dur_sum);
  /* GB-s = billed seconds x memory in GB (256 MB = 0.25 GB). */
  double want_gbs = billed_sum / 1000.0 * 0.25;
  if (!(gbs > 0 && gbs > want_gbs - 2e-6 && gbs < want_gbs + 2e-6)) fail_msg("gbSeconds %.6f, want %.6f", gbs, want_gbs);
  const char *cost = json_val(m, "cost");
  assert_non_null(cost);
  double creq = json_num(cost, "requests"), ccomp = json_num(cost, "compute"), ctotal = json_num(cost, "total");
  if (creq != 2.0 * N) fail_msg("cost.requests %.8f, want %d", creq, 2 * N);
  if (!(ccomp > gbs * 1000 - 1e-3 && ccomp < gbs * 1000 + 1e-3)) fail_msg("cost.compute %.8f for %.6f GB-s", ccomp, gbs);
  if (!(ctotal > 0 && ctotal > creq + ccomp - 1e-6 && ctotal < creq + ccomp + 1e-6))
    fail_msg("cost.total %.8f != %.8f + %.8f", ctotal, creq, ccomp);
  assert_non_null(strstr(cost, "\"currency\":\"USD\""));
  /* The latency histogram holds every invocation once. */
  const char *lat = json_val(m, "latencyMs");
  assert_non_null(lat);
  assert_int_equal(*lat, '{');
  long sum = 0;
  int buckets = 0;
  for (const char *p = lat + 1; *p && *p != '}';) {
    const char *colon = strchr(p, ':');
    assert_non_null(colon);
    sum += strtol(colon + 1, (char **)&p, 10);
    buckets++;
    if (*p == ',') p++;
  }
  assert_true(buckets >= 2);
  assert_int_equal(sum, N);
  assert_non_null(strstr(lat, "\"+Inf\":"));
  free(e);
  /* A function never called has nothing metered. */
  e = fn_entry(s.port, "idle");
  m = json_val(e, "metrics");
  assert_int_equal((int)json_num(m, "invocations"), 0);
  assert_true(json_num(m, "gbSeconds") == 0);
  assert_true(json_num(json_val(m, "cost"), "total") == 0);
  free(e);

  /* /_/metrics: the same numbers in Prometheus text. */
  http_resp_t r;
  http_get(s.port, "/_/metrics", &r);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(http_header(&r, "content-type"), "text/plain"));
  char want[256];
  const char *lines[] = {"# TYPE crescent_invocations_total counter\n", "# TYPE crescent_duration_seconds histogram\n",
                         "\ncrescent_errors_total{function=\"meter\"} 1\n",
                         "\ncrescent_cold_starts_total{function=\"meter\"} 1\n",
                         "\ncrescent_timeouts_total{function=\"meter\"} 0\n",
                         "\ncrescent_invocations_total{function=\"idle\"} 0\n"};
  for (size_t k = 0; k < sizeof lines / sizeof lines[0]; k++)
    if (!strstr(r.body, lines[k])) fail_msg("/_/metrics lacks '%s'", lines[k]);
  snprintf(want, sizeof want, "\ncrescent_invocations_total{function=\"meter\"} %d\n", N);
  if (!strstr(r.body, want)) fail_msg("/_/metrics lacks '%s'", want + 1);
  /* Cold and warm apart: the one cold start, and the rest. */
  snprintf(want, sizeof want, "\ncrescent_duration_seconds_bucket{function=\"meter\",start=\"cold\",le=\"+Inf\"} 1\n");
  if (!strstr(r.body, want)) fail_msg("/_/metrics lacks '%s'", want + 1);
  snprintf(want, sizeof want, "\ncrescent_duration_seconds_bucket{function=\"meter\",start=\"warm\",le=\"+Inf\"} %d\n",
           N - 1);
  if (!strstr(r.body, want)) fail_msg("/_/metrics lacks '%s'", want + 1);
  snprintf(want, sizeof want, "\ncrescent_duration_seconds_count{function=\"meter\",start=\"warm\"} %d\n", N - 1);
  if (!strstr(r.body, want)) fail_msg("/_/metrics lacks '%s'", want + 1);
  if (!strstr(r.body, "\ncrescent_init_duration_seconds_count{function=\"meter\"} 1\n"))
    fail_msg("/_/metrics lacks the one init of meter");
  /* Buckets are cumulative: never decreasing, ending at the count. */
  long prev = 0;
  int nb = 0;
  for (const char *p = strstr(r.body, "crescent_duration_seconds_bucket{function=\"meter\",start=\"warm\""); p;
       p = strstr(p + 1, "crescent_duration_seconds_bucket{function=\"meter\",start=\"warm\"")) {
    const char *sp = strchr(p, '}');
    assert_non_null(sp);
    long v = strtol(sp + 2, NULL, 10);
    assert_true(v >= prev);
    prev = v;
    nb++;
  }
  assert_true(nb == buckets);
  assert_int_equal(prev, N - 1);
  double secs = 0;
  for (int part = 0; part < 2; part++) {
    const char *sum_line = strstr(r.body, part ? "\ncrescent_duration_seconds_sum{function=\"meter\",start=\"warm\"} "
                                               : "\ncrescent_duration_seconds_sum{function=\"meter\",start=\"cold\"} ");
    assert_non_null(sum_line);
    secs += strtod(strchr(sum_line, '}') + 2, NULL);
  }
  if (!(secs > dur_sum / 1000.0 - 0.001 && secs < dur_sum / 1000.0 + 0.001))
    fail_msg("duration sum %.6f s, the reports say %.6f s", secs, dur_sum / 1000.0);
  /* Byte-seconds (was crescent_gb_seconds_total): GB-seconds x 2^30. */
  const char *gb_line = strstr(r.body, "\ncrescent_billed_byte_seconds_total{function=\"meter\"} ");
  assert_non_null(gb_line);
  double gbs2 = strtod(strchr(gb_line, '}') + 2, NULL) / 1073741824.0;
  assert_true(gbs2 > want_gbs - 2e-6 && gbs2 < want_gbs + 2e-6);
  http_free(&r);
  assert_int_equal(srv_stop(&s), 0);
}

/* A function under steady load keeps its instance: the idle sweep (every
 * second) must not close an instance used a moment ago. It once compared a
 * precise last-use time with a coarse clock a few ms behind, and closed busy
 * instances, so loaded functions kept paying cold starts. */
static void loaded_instance_is_kept(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "busy.lua", "return function() return 'ok' end\n");
  srv_start(&s, "--workers 1 --redis none");
  int fds[4];
  for (int i = 0; i < 4; i++) {
    fds[i] = http_connect(s.port);
    assert_true(fds[i] >= 0);
  }
  long long end = now_ms() + 3500; /* spans three sweeps */
  int n = 0;
  while (now_ms() < end && n < 400000) {
    for (int i = 0; i < 4; i++) http_sends(fds[i], "GET /busy HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int i = 0; i < 4; i++) {
      http_resp_t r;
      assert_int_equal(http_read(fds[i], &r, 0, 5000), 0);
      assert_int_equal(r.status, 200);
      http_free(&r);
      n++;
    }
  }
  for (int i = 0; i < 4; i++) http_close(fds[i]);
  char *e = fn_entry(s.port, "busy");
  const char *m = json_val(e, "metrics");
  if ((int)json_num(m, "coldStarts") != 1) fail_msg("%d requests made %d cold starts (want 1): %s", n, (int)json_num(m, "coldStarts"), e);
  free(e);
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(cold_then_warm),
      cmocka_unit_test(provisioned_instances),
      cmocka_unit_test(scale_to_zero),
      cmocka_unit_test(concurrency_limit_throttles),
      cmocka_unit_test(concurrency_queue_waits),
      cmocka_unit_test(queued_request_on_a_closing_connection),
      cmocka_unit_test(metering),
      cmocka_unit_test(loaded_instance_is_kept),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
