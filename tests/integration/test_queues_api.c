/* test_queues_api.c - the queues API (lua/queues_api.lua on crescent.queue_admin): the list
 * with depth, delayed, in flight, oldest message, DLQ depth, groups and consumers; peek; the
 * redrive of a dead-letter queue (consumed again by a queue trigger; stopped by the depth
 * bound); and the access rule the gateway applies to every route under /_/api/. Real binary,
 * managed Redis; queues are laid out with redis-cli (known ids and times) as crescent.queue,
 * the trigger and q_claim write them, so the answers can be compared whole. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

static void start(srv_t *s, const char *args) {
  srv_init(s);
  srv_start(s, args);
}

#define RCLI(s, ...) free(srv_rcli(s, __VA_ARGS__, NULL))

/* Replaces the number after each "key": in text with N, checking lo <= it <= hi. */
static void mask(char *text, const char *key, long long lo, long long hi) {
  char needle[64];
  snprintf(needle, sizeof needle, "\"%s\":", key);
  for (char *p = text; (p = strstr(p, needle)); p++) {
    char *v = p + strlen(needle), *end;
    if (strncmp(v, "null", 4) == 0) continue;
    long long n = strtoll(v, &end, 10);
    if (end == v || n < lo || n > hi) fail_msg("%s%.20s: want %lld to %lld", needle, v, lo, hi);
    *v = 'N';
    memmove(v + 1, end, strlen(end) + 1);
  }
}

/* A request on loopback: its status, and its body when want is not NULL (exactly). */
static void expect(srv_t *s, const char *method, const char *path, const char *headers, int status,
                   const char *want) {
  http_resp_t r;
  if (http_request(s->port, method, path, headers, NULL, 0, &r) != 0) fail_msg("%s %s: no response", method, path);
  if (r.status != status) fail_msg("%s %s: %d %s, want %d", method, path, r.status, r.body, status);
  if (want && strcmp(r.body, want) != 0) fail_msg("%s %s:\n got  %s\n want %s", method, path, r.body, want);
  http_free(&r);
}

/* GET /_/api/queues, ages and idle times masked (checked to be plausible). */
static char *queues(srv_t *s) {
  http_resp_t r;
  http_get(s->port, "/_/api/queues", &r);
  if (r.status != 200) fail_msg("/_/api/queues: %d %s", r.status, r.body);
  char *b = strdup(r.body);
  http_free(&r);
  mask(b, "oldestAgeMs", wall_ms() - 3000 - 60000, wall_ms());
  mask(b, "idleMs", 0, 60000);
  return b;
}

static void expect_queues(srv_t *s, const char *want) {
  char *got = queues(s);
  if (strcmp(got, want) != 0) fail_msg("/_/api/queues:\n got  %s\n want %s", got, want);
  free(got);
}

/* The queue "orders": three entries (a JSON one), one delayed, a group g1 whose consumer c1
 * has the first two pending; and its dead-letter queue with one dead letter. */
static void lay_out_orders(const srv_t *srv) {
  const char *s = "cr:{q:orders}:s";
  RCLI(srv, "XADD", s, "1000-1", "type", "j", "body", "{\"n\":1}", "time", "1000");
  RCLI(srv, "XADD", s, "2000-1", "type", "s", "body", "two", "time", "2000");
  RCLI(srv, "XADD", s, "3000-1", "type", "s", "body", "three", "time", "3000", "id", "delayed-7");
  RCLI(srv, "ZADD", "cr:{q:orders}:d", "99999999999999", "delayed-8\ns\nlater");
  RCLI(srv, "SADD", "cr:queues", "orders");
  RCLI(srv, "XGROUP", "CREATE", s, "g1", "0");
  RCLI(srv, "XREADGROUP", "GROUP", "g1", "c1", "COUNT", "2", "STREAMS", s, ">");
  RCLI(srv, "XADD", "cr:{q:orders.dlq}:s", "500-1", "type", "s", "body", "dead", "time", "400", "receiveCount",
       "5", "sourceId", "400-1", "deadAt", "500");
}

static const char dlq_row[] =
    "{\"name\":\"orders.dlq\",\"depth\":1,\"delayed\":0,\"inFlight\":0,\"oldestSentAt\":400,\"oldestAgeMs\":N,"
    "\"dlqDepth\":0,\"groups\":[]}";

/* The list, as the queue is consumed: in flight, oldest, lag, and depth once trimmed. */
static void list_queues(void **state) {
  (void)state;
  srv_t s;
  start(&s, "--workers 1");
  expect_queues(&s, "{\"queues\":[]}");
  lay_out_orders(&s);
  char want[2048];
  snprintf(want, sizeof want,
           "{\"queues\":[{\"name\":\"orders\",\"depth\":3,\"delayed\":1,\"inFlight\":2,\"oldestSentAt\":1000,"
           "\"oldestAgeMs\":N,\"dlqDepth\":1,\"groups\":[{\"name\":\"g1\",\"pending\":2,\"lastDeliveredId\":"
           "\"2000-1\",\"lag\":1,\"consumers\":[{\"name\":\"c1\",\"pending\":2,\"idleMs\":N}]}]},%s]}",
           dlq_row);
  expect_queues(&s, want);

  /* Both acknowledged: the trimmer drops them; the oldest is the undelivered third. */
  RCLI(&s, "XACK", "cr:{q:orders}:s", "g1", "1000-1", "2000-1");
  srv_wait_xlen(&s, "cr:{q:orders}:s", 1);
  snprintf(want, sizeof want,
           "{\"queues\":[{\"name\":\"orders\",\"depth\":1,\"delayed\":1,\"inFlight\":0,\"oldestSentAt\":3000,"
           "\"oldestAgeMs\":N,\"dlqDepth\":1,\"groups\":[{\"name\":\"g1\",\"pending\":0,\"lastDeliveredId\":"
           "\"2000-1\",\"lag\":1,\"consumers\":[{\"name\":\"c1\",\"pending\":0,\"idleMs\":N}]}]},%s]}",
           dlq_row);
  expect_queues(&s, want);

  /* A second group that has read nothing needs everything again. */
  RCLI(&s, "XGROUP", "CREATE", "cr:{q:orders}:s", "g2", "0");
  snprintf(want, sizeof want,
           "{\"queues\":[{\"name\":\"orders\",\"depth\":1,\"delayed\":1,\"inFlight\":0,\"oldestSentAt\":3000,"
           "\"oldestAgeMs\":N,\"dlqDepth\":1,\"groups\":[{\"name\":\"g1\",\"pending\":0,\"lastDeliveredId\":"
           "\"2000-1\",\"lag\":1,\"consumers\":[{\"name\":\"c1\",\"pending\":0,\"idleMs\":N}]},{\"name\":\"g2\","
           "\"pending\":0,\"lastDeliveredId\":\"0-0\",\"lag\":1,\"consumers\":[]}]},%s]}",
           dlq_row);
  expect_queues(&s, want);
  RCLI(&s, "XGROUP", "DESTROY", "cr:{q:orders}:s", "g2");

  /* Everything delivered and acknowledged: no oldest message. */
  RCLI(&s, "XREADGROUP", "GROUP", "g1", "c1", "COUNT", "5", "STREAMS", "cr:{q:orders}:s", ">");
  RCLI(&s, "XACK", "cr:{q:orders}:s", "g1", "3000-1");
  srv_wait_xlen(&s, "cr:{q:orders}:s", 0);
  snprintf(want, sizeof want,
           "{\"queues\":[{\"name\":\"orders\",\"depth\":0,\"delayed\":1,\"inFlight\":0,\"oldestSentAt\":null,"
           "\"oldestAgeMs\":null,\"dlqDepth\":1,\"groups\":[{\"name\":\"g1\",\"pending\":0,\"lastDeliveredId\":"
           "\"3000-1\",\"lag\":0,\"consumers\":[{\"name\":\"c1\",\"pending\":0,\"idleMs\":N}]}]},%s]}",
           dlq_row);
  expect_queues(&s, want);
  assert_int_equal(srv_stop(&s), 0);
}

/* Peek: ids, bodies (JSON ones as JSON), sent times, a delayed one's id, a dead letter's
 * fields; the limit; nothing consumed; bad names and limits. */
static void peek(void **state) {
  (void)state;
  srv_t s;
  start(&s, "--workers 1");
  lay_out_orders(&s);
  expect(&s, "GET", "/_/api/queues/orders/messages", NULL, 200,
         "{\"queue\":\"orders\",\"messages\":[{\"id\":\"1000-1\",\"body\":{\"n\":1},\"sentAt\":1000},"
         "{\"id\":\"2000-1\",\"body\":\"two\",\"sentAt\":2000},"
         "{\"id\":\"3000-1\",\"body\":\"three\",\"sentAt\":3000,\"delayedId\":\"delayed-7\"}]}");
  expect(&s, "GET", "/_/api/queues/orders/messages?limit=1", NULL, 200,
         "{\"queue\":\"orders\",\"messages\":[{\"id\":\"1000-1\",\"body\":{\"n\":1},\"sentAt\":1000}]}");
  expect(&s, "GET", "/_/api/queues/orders.dlq/messages?limit=100", NULL, 200,
         "{\"queue\":\"orders.dlq\",\"messages\":[{\"id\":\"500-1\",\"body\":\"dead\",\"sentAt\":400,"
         "\"receiveCount\":5,\"sourceId\":\"400-1\",\"deadAt\":500}]}");
  /* A dead letter with its trigger's bookkeeping: the receive times and the last error. */
  RCLI(&s, "XADD", "cr:{q:orders.dlq}:s", "600-1", "type", "s", "body", "why", "time", "410", "receiveCount", "3",
       "sourceId", "410-1", "deadAt", "600", "firstReceive", "420", "lastReceive", "590", "lastError",
       "f.lua:3: bad \"x\"");
  expect(&s, "GET", "/_/api/queues/orders.dlq/messages?limit=100", NULL, 200,
         "{\"queue\":\"orders.dlq\",\"messages\":[{\"id\":\"500-1\",\"body\":\"dead\",\"sentAt\":400,"
         "\"receiveCount\":5,\"sourceId\":\"400-1\",\"deadAt\":500},{\"id\":\"600-1\",\"body\":\"why\","
         "\"sentAt\":410,\"receiveCount\":3,\"sourceId\":\"410-1\",\"deadAt\":600,\"firstReceive\":420,"
         "\"lastReceive\":590,\"lastError\":\"f.lua:3: bad \\\"x\\\"\"}]}");
  expect(&s, "GET", "/_/api/queues/none/messages", NULL, 200, "{\"queue\":\"none\",\"messages\":[]}");
  /* Nothing was consumed: g1 still has its two, the third is undelivered. */
  char *p = srv_rcli(&s, "XPENDING", "cr:{q:orders}:s", "g1", NULL);
  assert_int_equal(atoi(p), 2);
  free(p);
  assert_int_equal(srv_rcli_ll(&s, "XLEN", "cr:{q:orders}:s", NULL), 3);
  const char *bad_limit = "{\"error\":\"bad limit: an integer from 1 to 100\"}";
  expect(&s, "GET", "/_/api/queues/orders/messages?limit=0", NULL, 400, bad_limit);
  expect(&s, "GET", "/_/api/queues/orders/messages?limit=101", NULL, 400, bad_limit);
  expect(&s, "GET", "/_/api/queues/orders/messages?limit=2.5", NULL, 400, bad_limit);
  expect(&s, "GET", "/_/api/queues/orders/messages?limit=x", NULL, 400, bad_limit);
  expect(&s, "GET", "/_/api/queues/a$b/messages", NULL, 400, NULL);
  expect(&s, "POST", "/_/api/queues/orders/messages", NULL, 405, NULL);
  assert_int_equal(srv_stop(&s), 0);
}

/* A dead letter as q_claim writes it. */
static void dead_letter(const srv_t *s, const char *dlq, const char *id, const char *body) {
  RCLI(s, "XADD", dlq, id, "type", "s", "body", body, "time", "100", "receiveCount", "5", "sourceId", "90-1",
       "deadAt", "200", "group", "jobs");
}

/* Redrive: every dead letter back to its queue, where the trigger consumes it; a full queue
 * stops it with what moved; users cannot reach the module behind it. */
static void redrive(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "jobs.lua",
            "return { triggers = { { queue = 'jobs', batch = 10 } },\n"
            "  handler = function(event, ctx)\n"
            "    for _, r in ipairs(event.records) do ctx.log.info('got ' .. r.body .. ' ' .. r.receiveCount) end\n"
            "  end }\n");
  srv_write(&s, "evil.lua",
            "return function()\n"
            "  local ok, err = pcall(require, 'crescent.queue_admin')\n"
            "  return tostring(ok) .. ' ' .. tostring(err)\n"
            "end\n");
  srv_start(&s, "--workers 1 --queue-max-depth 4");
  expect(&s, "GET", "/evil", NULL, 200, "false module 'crescent.queue_admin' not found");

  dead_letter(&s, "cr:{q:jobs.dlq}:s", "300-1", "m1");
  dead_letter(&s, "cr:{q:jobs.dlq}:s", "300-2", "m2");
  dead_letter(&s, "cr:{q:jobs.dlq}:s", "300-3", "m3");
  expect(&s, "POST", "/_/api/queues/jobs/redrive", NULL, 200, "{\"moved\":3}");
  assert_int_equal(srv_rcli_ll(&s, "XLEN", "cr:{q:jobs.dlq}:s", NULL), 0);
  for (int i = 1; i <= 3; i++) {
    char needle[32];
    snprintf(needle, sizeof needle, "got m%d 1", i);
    if (srv_log_wait(&s, 1, 10000, needle, NULL) < 1) fail_msg("%s not consumed; log:\n%s", needle, srv_log(&s));
  }
  char *reg = srv_rcli(&s, "SISMEMBER", "cr:queues", "jobs", NULL);
  assert_string_equal(reg, "1");
  free(reg);
  expect(&s, "POST", "/_/api/queues/jobs/redrive", NULL, 200, "{\"moved\":0}");

  /* "full" holds 3 of 4: one dead letter goes back, two stay. */
  RCLI(&s, "XADD", "cr:{q:full}:s", "1-1", "type", "s", "body", "a", "time", "1");
  RCLI(&s, "XADD", "cr:{q:full}:s", "1-2", "type", "s", "body", "b", "time", "1");
  RCLI(&s, "ZADD", "cr:{q:full}:d", "99999999999999", "delayed-1\ns\nc");
  dead_letter(&s, "cr:{q:full.dlq}:s", "300-1", "d1");
  dead_letter(&s, "cr:{q:full.dlq}:s", "300-2", "d2");
  dead_letter(&s, "cr:{q:full.dlq}:s", "300-3", "d3");
  expect(&s, "POST", "/_/api/queues/full/redrive", NULL, 409, "{\"error\":\"queue full\",\"moved\":1}");
  assert_int_equal(srv_rcli_ll(&s, "XLEN", "cr:{q:full}:s", NULL), 3);
  assert_int_equal(srv_rcli_ll(&s, "XLEN", "cr:{q:full.dlq}:s", NULL), 2);
  /* The one moved is the oldest, with its message fields only and a new id. */
  char *last = srv_rcli(&s, "XREVRANGE", "cr:{q:full}:s", "+", "-", "COUNT", "1", NULL);
  char *fields = strchr(last, '\n');
  assert_non_null(fields);
  assert_string_equal(fields, "\ntype\ns\nbody\nd1\ntime\n100");
  assert_int_equal(strncmp(last, "1-", 2) != 0, 1);
  free(last);
  char *left = srv_rcli(&s, "XRANGE", "cr:{q:full.dlq}:s", "-", "+", "COUNT", "1", NULL);
  assert_int_equal(strncmp(left, "300-2\n", 6), 0);
  free(left);
  expect(&s, "POST", "/_/api/queues/full/redrive", NULL, 409, "{\"error\":\"queue full\",\"moved\":0}");
  expect(&s, "GET", "/_/api/queues/full/redrive", NULL, 405, NULL);
  assert_int_equal(srv_stop(&s), 0);
}

/* With an admin token, every route of the queues API needs it, whichever way the path is
 * spelled; nothing is moved without it. */
static void access_rule(void **state) {
  (void)state;
  srv_t s;
  start(&s, "--workers 1 --admin-token s3cret");
  dead_letter(&s, "cr:{q:jobs.dlq}:s", "300-1", "m1");
  const char *paths[][2] = {{"GET", "/_/api/queues"},
                            {"GET", "/_/api/queues/jobs/messages"},
                            {"POST", "/_/api/queues/jobs/redrive"},
                            {"GET", "/%5F/api/queues"},
                            {"GET", "/_/%61pi/queues/jobs.dlq/messages"}};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    http_resp_t r;
    assert_int_equal(http_request(s.port, paths[i][0], paths[i][1], NULL, NULL, 0, &r), 0);
    if (r.status != 401) fail_msg("%s %s without the token: %d %s", paths[i][0], paths[i][1], r.status, r.body);
    const char *www = http_header(&r, "www-authenticate");
    assert_non_null(www);
    assert_string_equal(www, "Bearer realm=\"crescent\"");
    http_free(&r);
    assert_int_equal(http_request(s.port, paths[i][0], paths[i][1], "Authorization: Bearer wrong\r\n", NULL, 0, &r),
                     0);
    assert_int_equal(r.status, 401);
    http_free(&r);
  }
  assert_int_equal(srv_rcli_ll(&s, "XLEN", "cr:{q:jobs.dlq}:s", NULL), 1);
  expect(&s, "GET", "/_/api/queues/jobs.dlq/messages", "Authorization: Bearer s3cret\r\n", 200,
         "{\"queue\":\"jobs.dlq\",\"messages\":[{\"id\":\"300-1\",\"body\":\"m1\",\"sentAt\":100,"
         "\"receiveCount\":5,\"sourceId\":\"90-1\",\"deadAt\":200,\"group\":\"jobs\"}]}");
  expect(&s, "POST", "/_/api/queues/jobs/redrive", "Authorization: bearer s3cret\r\n", 200, "{\"moved\":1}");
  assert_int_equal(srv_rcli_ll(&s, "XLEN", "cr:{q:jobs.dlq}:s", NULL), 0);
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(list_queues),
      cmocka_unit_test(peek),
      cmocka_unit_test(redrive),
      cmocka_unit_test(access_rule),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
