/* test_series_api.c - GET /_/api/series (core/trigger/http/series.c) on the real binary and
 * Redis: worker 0 samples the meters every --series-interval into PREFIX series:NAME (a stream
 * trimmed to an hour, with an expiry), only for functions that moved; the API sums every
 * node's entries per step into equal-length arrays; its errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

/* Sum of the numbers of the JSON array "key":[...] in body; *n gets its length. */
static double array_sum(const char *body, const char *key, int *n) {
  char k[64];
  snprintf(k, sizeof k, "\"%s\":[", key);
  const char *p = strstr(body, k);
  if (!p) fail_msg("no %s in %s", key, body);
  p += strlen(k);
  double sum = 0;
  *n = 0;
  while (*p && *p != ']') {
    if (strncmp(p, "null", 4) == 0) p += 4;
    else sum += strtod(p, (char **)&p);
    (*n)++;
    if (*p == ',') p++;
  }
  return sum;
}

static void series(srv_t *s, const char *query, http_resp_t *r) {
  char path[200];
  snprintf(path, sizeof path, "/_/api/series?%s", query);
  http_get(s->port, path, r);
}

static void series_of_a_load(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "hello.lua", "return function() return 'hi' end\n");
  srv_write(&s, "quiet.lua", "return function() return 'sh' end\n");
  srv_write(&s, "bad.lua", "return function() return { status = 500 } end\n");
  srv_start(&s, "--workers 2 --series-interval 1");
  for (int i = 0; i < 5; i++) http_get_ok(s.port, "/hello");
  for (int i = 0; i < 2; i++) {
    http_resp_t r;
    http_get(s.port, "/bad", &r);
    assert_int_equal(r.status, 500);
    http_free(&r);
  }
  /* Within a few samples every invocation is in (both workers' meters, one sampler). */
  http_resp_t r;
  int n = 0;
  for (long long until = now_ms() + 6000;; sleep_ms(200)) {
    series(&s, "function=hello&minutes=1", &r);
    assert_int_equal(r.status, 200);
    double inv = array_sum(r.body, "invocations", &n);
    if (inv == 5) break;
    if (now_ms() > until) fail_msg("hello's series never summed to 5: %s", r.body);
    http_free(&r);
  }
  assert_non_null(strstr(r.body, "{\"function\":\"hello\",\"step\":1000,\"start\":"));
  assert_int_equal(n, 60); /* a minute of 1-s steps */
  const char *arrays[] = {"t", "errors", "timeouts", "throttles", "coldStarts", "warmStarts", "durationMsAvg",
                          "p50Ms", "p99Ms", "gbSeconds"};
  for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
    int len;
    array_sum(r.body, arrays[i], &len);
    if (len != 60) fail_msg("%s has %d points, not 60", arrays[i], len);
  }
  int len;
  assert_true(array_sum(r.body, "errors", &len) == 0);
  double cold = array_sum(r.body, "coldStarts", &len), warm = array_sum(r.body, "warmStarts", &len);
  assert_true(cold >= 1 && cold <= 2 && cold + warm == 5); /* one instance per worker that served */
  assert_true(array_sum(r.body, "p99Ms", &len) > 0);
  http_free(&r);
  for (long long until = now_ms() + 6000;; sleep_ms(200)) {
    series(&s, "function=bad&minutes=1", &r);
    int e;
    double errs = array_sum(r.body, "errors", &e);
    if (errs == 2) break;
    if (now_ms() > until) fail_msg("bad's errors never summed to 2: %s", r.body);
    http_free(&r);
  }
  http_free(&r);

  /* Redis holds a stream for the functions that moved, with an expiry, and none for quiet. */
  assert_true(srv_rcli_ll(&s, "EXISTS", "cr:series:hello", NULL) == 1);
  assert_true(srv_rcli_ll(&s, "EXISTS", "cr:series:quiet", NULL) == 0);
  long long ttl = srv_rcli_ll(&s, "PTTL", "cr:series:hello", NULL);
  assert_true(ttl > 3600000 && ttl <= 3900000);
  /* quiet's series is all zeros, and its latency nulls. */
  series(&s, "function=quiet&minutes=2", &r);
  assert_int_equal(r.status, 200);
  assert_true(array_sum(r.body, "invocations", &n) == 0);
  assert_int_equal(n, 120);
  assert_non_null(strstr(r.body, "\"p50Ms\":[null,null,"));
  http_free(&r);

  /* Another node's entry sums in. */
  free(srv_rcli(&s, "XADD", "cr:series:hello", "*", "n", "other/1", "i", "3", "e", "1", "o", "0", "t", "2", "c", "1",
                "d", "3000000", "m", "384", "h", "0,0,0,3,0,0,0,0,0,0,0,0,0,0", NULL));
  series(&s, "function=hello&minutes=1", &r);
  assert_true(array_sum(r.body, "invocations", &n) == 8);
  assert_true(array_sum(r.body, "errors", &n) == 1);
  assert_true(array_sum(r.body, "throttles", &n) == 2);
  http_free(&r);

  /* Errors. */
  static const struct {
    const char *query;
    int status;
    const char *body;
  } bad[] = {
      {"", 400, "{\"error\":\"function= is required\"}"},
      {"function=", 400, "{\"error\":\"function= is required\"}"},
      {"function=nope", 404, "{\"error\":\"function not found\"}"},
      {"function=hello&minutes=0", 400, "{\"error\":\"minutes must be a whole number from 1 to 60\"}"},
      {"function=hello&minutes=61", 400, "{\"error\":\"minutes must be a whole number from 1 to 60\"}"},
      {"function=hello&minutes=5x", 400, "{\"error\":\"minutes must be a whole number from 1 to 60\"}"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    series(&s, bad[i].query, &r);
    if (r.status != bad[i].status || strcmp(r.body, bad[i].body) != 0)
      fail_msg("series?%s: %d %s", bad[i].query, r.status, r.body);
    http_free(&r);
  }
  assert_int_equal(http_request(s.port, "POST", "/_/api/series?function=hello", NULL, "", 0, &r), 0);
  assert_int_equal(r.status, 405);
  http_free(&r);
  assert_int_equal(srv_stop(&s), 0);
}

static void series_without_redis(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "hello.lua", "return function() return 'hi' end\n");
  srv_start(&s, "--workers 1 --redis none");
  http_resp_t r;
  series(&s, "function=hello", &r);
  assert_int_equal(r.status, 503);
  /* A 5xx carries the request id. */
  static const char want[] = "{\"error\":\"series need Redis (the server runs with --redis none, or Redis is down)\","
                             "\"requestId\":\"";
  if (strncmp(r.body, want, sizeof want - 1) != 0) fail_msg("series without Redis: %s", r.body);
  http_free(&r);
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(series_of_a_load),
      cmocka_unit_test(series_without_redis),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
