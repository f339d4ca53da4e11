/* test_invoke.c - functions calling functions (crescent.invoke, core/trigger/invoke): invoke.call's
 * results and errors (not found, raised, timeout, the caller's remaining time as the cap,
 * throttled, call depth, a result JSON cannot hold), calls inside pcall and coroutines, the report
 * lines; POST /_/invoke/{fn} (sync, Event, DryRun, errors); asynchronous invocations: the status
 * API, retries with their count, onSuccess and onFailure queues, delay, and a worker killed while
 * one runs. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

static void rcli_sock(const srv_t *s, char *out, size_t n) { srv_redis_sock(s, out, n); }

/* POST /_/invoke/NAME with body and extra headers; fails the test on a transport error. */
static void post_invoke(srv_t *s, const char *name, const char *headers, const char *body, http_resp_t *r) {
  char path[300];
  snprintf(path, sizeof path, "/_/invoke/%s", name);
  if (http_request(s->port, "POST", path, headers, body, body ? strlen(body) : 0, r) != 0)
    fail_msg("POST %s: no response", path);
}

/* The string value of "key" in json (up to the next quote), copied. */
static void json_str(const char *json, const char *key, char *out, size_t n) {
  const char *v = json_val(json, key);
  if (!v || *v != '"') fail_msg("no string %s in %s", key, json);
  v++;
  const char *e = strchr(v, '"');
  snprintf(out, n, "%.*s", (int)(e - v), v);
}

/* GET /_/api/invocations/ID until its status is want (or fail after timeout_ms); the body, malloc'd. */
static char *wait_status(srv_t *s, const char *id, const char *want, int timeout_ms) {
  char path[300], needle[64];
  snprintf(path, sizeof path, "/_/api/invocations/%s", id);
  snprintf(needle, sizeof needle, "\"status\":\"%s\"", want);
  long long until = now_ms() + timeout_ms;
  for (;;) {
    http_resp_t r;
    if (http_request(s->port, "GET", path, NULL, NULL, 0, &r) != 0) { /* a worker restarting */
      if (now_ms() > until) fail_msg("%s: no answer", id);
      sleep_ms(50);
      continue;
    }
    if (r.status == 200 && strstr(r.body, needle)) {
      char *b = strdup(r.body);
      http_free(&r);
      return b;
    }
    if (now_ms() > until) fail_msg("%s: want %s, last %d %s", id, want, r.status, r.body);
    http_free(&r);
    sleep_ms(50);
  }
}

static const char callee[] = "return function(event, ctx) return { n = event.n + 1, seen = event } end\n";

/* invoke.call: results, errors, caps, nesting, report lines. */
static void calls(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "callee.lua", callee);
  srv_write(&s, "echo.lua", "return function(event) return event end\n");
  srv_write(&s, "boom.lua", "return function() error('kaput') end\n");
  srv_write(&s, "spin.lua", "return { timeout = 5, handler = function() while true do end end }\n");
  srv_write(&s, "short.lua", "return { timeout = 0.2, handler = function() while true do end end }\n");
  srv_write(&s, "badresult.lua", "return function() return { f = print } end\n");
  srv_write(&s, "nilresult.lua", "return function() end\n");
  srv_write(&s, "rec.lua",
            "local invoke = require 'crescent.invoke'\n"
            "return function(event)\n"
            "  local d = event and event.d or 0\n"
            "  local r, err = invoke.call('rec', { d = d + 1 })\n"
            "  if not r then return { depth = d, err = err } end\n"
            "  return r\n"
            "end\n");
  /* concurrency 1: the inner call to itself is throttled (after the 1 ms --queue-wait). */
  srv_write(&s, "single.lua",
            "local invoke = require 'crescent.invoke'\n"
            "return { concurrency = 1, handler = function(event)\n"
            "  if event and event.inner then return 'inner ran' end\n"
            "  local r, err = invoke.call('single', { inner = true })\n"
            "  return { r = r or json.null, err = err }\n"
            "end }\n");
  srv_write(&s, "caller.lua",
            "local invoke = require 'crescent.invoke'\n"
            "return function(event, ctx)\n"
            "  local out = {}\n"
            "  local r, err = invoke.call('callee', { n = 41, list = { 1, 2, 3 }, s = 'x' })\n"
            "  out.r = r.n; out.list = #r.seen.list; out.s = r.seen.s\n"
            "  out.echo_nil = select('#', invoke.call('echo')) .. ':' .. tostring((invoke.call('echo')))\n"
            "  out.nilresult = tostring((invoke.call('nilresult')))\n"
            "  out.notfound = select(2, invoke.call('nope', {}))\n"
            "  out.platform = select(2, invoke.call('_/queues_api', {}))\n"
            "  out.boom = select(2, invoke.call('boom', {}))\n"
            "  out.short = select(2, invoke.call('short', {}))\n"
            "  out.bad = select(2, invoke.call('badresult', {}))\n"
            "  local ok, pr = pcall(invoke.call, 'callee', { n = 1 })\n"
            "  out.pcall = ok and pr.n\n"
            "  local co = coroutine.wrap(function() return invoke.call('callee', { n = 2 }) end)\n"
            "  out.co = co().n\n"
            "  out.badarg = select(2, pcall(invoke.call, 'callee', { f = print }))\n"
            "  return out\n"
            "end\n");
  srv_write(&s, "capped.lua",
            "local invoke = require 'crescent.invoke'\n"
            "return { timeout = 0.5, handler = function() return { select(2, invoke.call('spin', {})) } end }\n");
  srv_start(&s, "--workers 1 --queue-wait 1ms");

  http_resp_t r;
  http_get(s.port, "/caller", &r);
  assert_int_equal(r.status, 200);
  const char *want[] = {
      "\"r\":42", "\"list\":3", "\"s\":\"x\"", "\"echo_nil\":\"1:nil\"", "\"nilresult\":\"nil\"",
      "\"notfound\":\"function not found\"", "\"platform\":\"function not found\"",
      "\"boom\":\"error: boom.lua:1: kaput\"", "\"short\":\"timeout\"", "\"pcall\":2", "\"co\":3",
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (!strstr(r.body, want[i])) fail_msg("want %s in %s", want[i], r.body);
  if (!strstr(r.body, "\"bad\":\"error: the result cannot be sent back:"))
    fail_msg("bad result: %s", r.body);
  if (!strstr(r.body, "\"badarg\":\"bad argument #2 to 'invoke.call' (event cannot be sent as JSON"))
    fail_msg("bad argument: %s", r.body);
  char caller_id[160];
  http_request_id(&r, caller_id, sizeof caller_id);
  http_free(&r);
  /* The callee's report: trigger invoke, the caller as its parent, depth 1. */
  char parent[256];
  snprintf(parent, sizeof parent, "\"parentRequestId\":\"%s\"", caller_id);
  assert_int_equal(srv_log_wait(&s, 3, 3000, "\"msg\":\"report\"", "\"function\":\"callee\"", "\"trigger\":\"invoke\"",
                                parent, "\"depth\":1", "\"status\":200", NULL),
                   3);
  assert_int_equal(srv_log_wait(&s, 1, 3000, "\"msg\":\"report\"", "\"function\":\"short\"", "\"outcome\":\"timeout\"", NULL),
                   1);

  /* Depth: the HTTP call is depth 0, its calls 1..8; the one at 8 cannot call. */
  http_get(s.port, "/rec", &r);
  if (!strstr(r.body, "\"depth\":8") || !strstr(r.body, "\"err\":\"call depth exceeded\"")) fail_msg("%s", r.body);
  http_free(&r);
  assert_int_equal(srv_log_wait(&s, 8, 3000, "\"msg\":\"report\"", "\"function\":\"rec\"", "\"trigger\":\"invoke\"", NULL), 8);
  sleep_ms(100);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", "\"function\":\"rec\"", "\"trigger\":\"invoke\"", NULL), 8);

  /* Throttled: a function at its concurrency calling itself. */
  http_get(s.port, "/single", &r);
  if (!strstr(r.body, "\"r\":null") || !strstr(r.body, "\"err\":\"throttled\"")) fail_msg("%s", r.body);
  http_free(&r);

  /* The callee's time is capped by the caller's remaining time (less 50 ms): spin (timeout 5 s)
   * ends before its caller (0.5 s), which answers "timeout", not 5 s later. */
  long long t0 = now_ms();
  http_get(s.port, "/capped", &r);
  long long took = now_ms() - t0;
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "[\"timeout\"]");
  http_free(&r);
  if (took > 2500) fail_msg("the capped call took %lld ms", took);
  assert_true(srv_log_wait(&s, 1, 3000, "\"msg\":\"report\"", "\"function\":\"spin\"", "\"outcome\":\"timeout\"",
                           NULL) == 1);
  char *line = srv_log_line(&s, "\"msg\":\"report\"", "\"function\":\"spin\"", NULL);
  double d = json_num(line, "duration");
  free(line);
  if (d > 1000) fail_msg("spin ran %.0f ms, past its caller's deadline", d);
  srv_expect_errors(&s, srv_log_count(&s, "\"level\":\"error\"", NULL));
  srv_stop(&s);
}

/* POST /_/invoke/{fn}. */
static void http_invoke(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "callee.lua", callee);
  srv_write(&s, "boom.lua", "return function() error('kaput') end\n");
  srv_write(&s, "orders/total.lua", "return function(e) return e.a * e.b end\n");
  srv_start(&s, "--workers 1");
  http_resp_t r;
  post_invoke(&s, "callee", NULL, "{\"n\":1}", &r);
  assert_int_equal(r.status, 200);
  if (!strstr(r.body, "\"n\":2") || !strstr(r.body, "\"seen\":{\"n\":1}")) fail_msg("%s", r.body);
  assert_non_null(http_header(&r, "X-Crescent-Request-Id"));
  assert_string_equal(http_header(&r, "X-Crescent-Memory-Size"), "128");
  assert_string_equal(http_header(&r, "X-Crescent-Billed-Duration"), "1");
  assert_non_null(http_header(&r, "X-Crescent-Init-Duration")); /* the first call is a cold start */
  assert_null(http_header(&r, "X-Crescent-Function-Error"));
  http_free(&r);
  post_invoke(&s, "callee", NULL, "{\"n\":1}", &r);
  assert_null(http_header(&r, "X-Crescent-Init-Duration")); /* warm */
  http_free(&r);
  post_invoke(&s, "orders/total", NULL, " {\"a\":6,\"b\":7}\n", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "42");
  http_free(&r);
  post_invoke(&s, "boom", NULL, NULL, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(http_header(&r, "X-Crescent-Function-Error"), "error");
  if (!strstr(r.body, "{\"errorMessage\":\"error: boom.lua:1: kaput\",\"errorType\":\"error\",\"requestId\":"))
    fail_msg("%s", r.body);
  http_free(&r);
  post_invoke(&s, "callee", NULL, "{nope", &r);
  assert_int_equal(r.status, 400);
  if (!strstr(r.body, "bad event: ")) fail_msg("%s", r.body);
  http_free(&r);
  post_invoke(&s, "nope", NULL, "{}", &r);
  assert_int_equal(r.status, 404);
  http_free(&r);
  post_invoke(&s, "_/queues_api", NULL, "{}", &r);
  assert_int_equal(r.status, 404);
  http_free(&r);
  post_invoke(&s, "callee", "X-Invocation-Type: DryRun\r\n", NULL, &r);
  assert_int_equal(r.status, 204);
  http_free(&r);
  post_invoke(&s, "callee", "X-Invocation-Type: Sometimes\r\n", NULL, &r);
  assert_int_equal(r.status, 400);
  http_free(&r);
  http_expect(s.port, "/_/invoke/callee", 405, NULL);
  http_expect(s.port, "/_/api/invocations/nope", 404, NULL);
  http_expect(s.port, "/_/api/invocations/..%2Fx", 404, NULL);
  srv_expect_errors(&s, srv_log_count(&s, "\"level\":\"error\"", NULL));
  srv_stop(&s);
}

/* Asynchronous invocations: status, retries, destinations, delay. */
static void async_invocations(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "job.lua",
            "local kv = require 'crescent.kv'\n"
            "return { retries = 1, onSuccess = { queue = 'done-jobs' }, onFailure = { queue = 'failed-jobs' },\n"
            "  handler = function(event, ctx)\n"
            "    kv.incr('runs:' .. event.name, 1)\n"
            "    if event.fail then error('job failed') end\n"
            "    return { done = event.name }\n"
            "  end }\n");
  srv_write(&s, "once.lua",
            "return { retries = 0, onFailure = { queue = 'failed-once' }, handler = function() error('no') end }\n");
  srv_write(&s, "big.lua",
            "local invoke = require 'crescent.invoke'\n"
            "return function()\n"
            "  local a = { select(2, invoke.async('job', { name = string.rep('x', 300 * 1024) })) }\n"
            "  local c = { select(2, invoke.call('job', { name = string.rep('x', 7 * 1024 * 1024) })) }\n"
            "  return a[1] .. '|' .. c[1]\n"
            "end\n");
  /* The asynchronous invocations' queue is the platform's: no function sends to it (a trigger on
   * it, reading every function's events, is refused at load: unit_settings). */
  srv_write(&s, "forge.lua",
            "local queue = require 'crescent.queue'\n"
            "return function() return select(2, pcall(queue.send, 'crescent.async', { fn = 'job' })) end\n");
  srv_write(&s, "fire.lua",
            "local invoke = require 'crescent.invoke'\n"
            "return function(event)\n"
            "  local q = event.query\n"
            "  local id, err = invoke.async(q.fn, { name = q.name, fail = q.fail == '1' }, { delay = tonumber(q.delay) })\n"
            "  return { id = id or json.null, err = err }\n"
            "end\n");
  srv_start(&s, "--workers 2");
  char sock[400];
  rcli_sock(&s, sock, sizeof sock);

  /* Over HTTP: 202 and an id; it succeeds; the result and the onSuccess message. */
  http_resp_t r;
  post_invoke(&s, "job", "X-Invocation-Type: Event\r\n", "{\"name\":\"a\"}", &r);
  assert_int_equal(r.status, 202);
  char id[128];
  json_str(r.body, "invocationId", id, sizeof id);
  http_free(&r);
  char *st = wait_status(&s, id, "succeeded", 5000);
  if (!strstr(st, "\"function\":\"job\"") || !strstr(st, "\"attempts\":1") || !strstr(st, "\"result\":{\"done\":\"a\"}"))
    fail_msg("%s", st);
  free(st);
  char *out = redis_cli_sock(sock, "XRANGE", "cr:{q:done-jobs}:s", "-", "+", NULL);
  char want[300];
  snprintf(want, sizeof want, "{\"invocationId\":\"%s\",\"function\":\"job\",\"status\":\"succeeded\",\"attempts\":1,"
                              "\"result\":{\"done\":\"a\"},\"event\":{\"name\":\"a\"}}", id);
  if (!strstr(out, want)) fail_msg("onSuccess: %s", out);
  free(out);

  /* From a function, failing: 2 attempts (retries = 1), then the onFailure queue. */
  http_get(s.port, "/fire?fn=job&name=b&fail=1", &r);
  assert_int_equal(r.status, 200);
  json_str(r.body, "id", id, sizeof id);
  http_free(&r);
  st = wait_status(&s, id, "failed", 8000);
  if (!strstr(st, "\"attempts\":2") || !strstr(st, "\"error\":\"error: job.lua:5: job failed\"") ||
      !strstr(st, "\"parentRequestId\":"))
    fail_msg("%s", st);
  free(st);
  out = redis_cli_sock(sock, "HGET", "cr:{kv:default}:v:runs:b", "v", NULL);
  assert_string_equal(out, "2\n");
  free(out);
  out = redis_cli_sock(sock, "XRANGE", "cr:{q:failed-jobs}:s", "-", "+", NULL);
  snprintf(want, sizeof want, "{\"invocationId\":\"%s\",\"function\":\"job\",\"status\":\"failed\",\"attempts\":2,"
                              "\"error\":\"error: job.lua:5: job failed\",\"event\":{", id);
  if (!strstr(out, want) || !strstr(out, "\"name\":\"b\"") || !strstr(out, "\"fail\":true")) fail_msg("onFailure: %s", out);
  free(out);
  /* The attempts' report lines: 1 and 2. */
  char inv[200];
  snprintf(inv, sizeof inv, "\"invocationId\":\"%s\"", id);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", inv, "\"attempt\":1", NULL), 1);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", inv, "\"attempt\":2", NULL), 1);

  /* retries = 0: one attempt. */
  http_get(s.port, "/fire?fn=once&name=c", &r);
  json_str(r.body, "id", id, sizeof id);
  http_free(&r);
  st = wait_status(&s, id, "failed", 5000);
  if (!strstr(st, "\"attempts\":1")) fail_msg("%s", st);
  free(st);

  http_expect_body(s.port, "/forge",
                   "bad argument #1 to 'queue.send' (queue names starting with 'crescent.' are the platform's)");

  /* Unknown function: refused at once. */
  http_get(s.port, "/fire?fn=nope&name=d", &r);
  if (!strstr(r.body, "\"id\":null") || !strstr(r.body, "\"err\":\"function not found\"")) fail_msg("%s", r.body);
  http_free(&r);

  /* Size bounds: 256 KB for an asynchronous event, 6 MB for a synchronous one. */
  http_expect_body(s.port, "/big", "event too large|event too large");
  char *large = malloc(300 * 1024 + 16);
  memset(large, ' ', 300 * 1024);
  memcpy(large + 300 * 1024, "{\"name\":\"z\"}", 13);
  large[300 * 1024 + 13] = '\0';
  post_invoke(&s, "job", "X-Invocation-Type: Event\r\n", large, &r);
  free(large);
  assert_int_equal(r.status, 202); /* the whitespace around an event is not part of it */
  http_free(&r);
  large = malloc(300 * 1024 + 32);
  snprintf(large, 32, "{\"name\":\"");
  size_t off = strlen(large);
  memset(large + off, 'y', 300 * 1024);
  snprintf(large + off + 300 * 1024, 16, "\"}");
  post_invoke(&s, "job", "X-Invocation-Type: Event\r\n", large, &r);
  free(large);
  assert_int_equal(r.status, 413);
  http_free(&r);

  /* Delay: not started before it is due. */
  http_get(s.port, "/fire?fn=job&name=e&delay=1", &r);
  json_str(r.body, "id", id, sizeof id);
  http_free(&r);
  st = wait_status(&s, id, "succeeded", 5000);
  double created = json_num(st, "createdAt"), started = json_num(st, "startedAt");
  if (started - created < 1000) fail_msg("started %.0f ms after it was sent: %s", started - created, st);
  free(st);

  /* The async queue is an ordinary queue in the queues API. */
  http_get(s.port, "/_/api/queues", &r);
  if (!strstr(r.body, "\"name\":\"crescent.async\"")) fail_msg("%s", r.body);
  http_free(&r);
  srv_expect_errors(&s, srv_log_count(&s, "\"level\":\"error\"", NULL));
  srv_stop(&s);
}

/* A worker SIGKILLed while it runs an asynchronous invocation: another delivery runs it again
 * (attempt 2) once it has been idle past the longest timeout + 10 s. */
static void async_worker_killed(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "slow.lua",
            "local kv = require 'crescent.kv'\n"
            "return { timeout = 3, retries = 2, handler = function(event, ctx)\n"
            "  local n = kv.incr('slow-runs', 1)\n"
            "  ctx.log.info('slow started ' .. n)\n"
            "  if n == 1 then while ctx.remaining() > 100 do kv.get('x') end end\n"
            "  return 'ok'\n"
            "end }\n");
  srv_start(&s, "--workers 1 --kill-grace 30s");
  http_resp_t r;
  post_invoke(&s, "slow", "X-Invocation-Type: Event\r\n", NULL, &r);
  assert_int_equal(r.status, 202);
  char id[128];
  json_str(r.body, "invocationId", id, sizeof id);
  http_free(&r);
  assert_int_equal(srv_log_wait(&s, 1, 5000, "slow started 1", NULL), 1);
  pid_t pids[4];
  assert_int_equal(srv_worker_pids(&s, pids, 4), 1);
  kill(pids[0], SIGKILL);
  char *st = wait_status(&s, id, "succeeded", 25000);
  if (!strstr(st, "\"attempts\":2")) fail_msg("%s", st);
  free(st);
  srv_expect_errors(&s, srv_log_count(&s, "\"level\":\"error\"", NULL));
  srv_stop(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(calls),
      cmocka_unit_test(http_invoke),
      cmocka_unit_test(async_invocations),
      cmocka_unit_test(async_worker_killed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
