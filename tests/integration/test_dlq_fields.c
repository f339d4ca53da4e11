/* test_dlq_fields.c - what a dead letter says about its record's failed deliveries
 * (core/trigger/queue/consumer.c keeps them, stdlib/redis/q_claim.lua moves them): lastError
 * (the handler's error without its traceback, or "reported failed by the handler"),
 * firstReceive and lastReceive; and that the bookkeeping goes with the record: on its move, on
 * its ack after a redelivery, and by expiry. Messages go in with redis-cli on the managed Redis. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

/* Sends one string message to queue; its id's time (ms). */
static long long xadd_msg(const srv_t *s, const char *queue, const char *body) {
  char key[100];
  snprintf(key, sizeof key, "cr:{q:%s}:s", queue);
  char *id = srv_rcli(s, "XADD", key, "*", "type", "s", "body", body, "time", "1700000000000", NULL);
  long long ms = strtoll(id, NULL, 10);
  if (ms < 1600000000000ll) fail_msg("XADD: %s", id);
  free(id);
  return ms;
}

/* The dead letters of queue.dlq, as redis-cli prints XRANGE (one value a line), once there are n. */
static char *dead_letters(const srv_t *s, const char *queue, long n) {
  char key[100];
  snprintf(key, sizeof key, "cr:{q:%s.dlq}:s", queue);
  long got = 0;
  for (int i = 0; i < 200 && (got = srv_rcli_ll(s, "XLEN", key, NULL)) < n; i++) sleep_ms(50);
  if (got != n) fail_msg("%ld dead letters in %s, want %ld", got, key, n);
  return srv_rcli(s, "XRANGE", key, "-", "+", NULL);
}

/* The value of field name in a dead letter printed by XRANGE (the first one), malloc'd. */
static char *field(const char *d, const char *name) {
  char needle[64];
  snprintf(needle, sizeof needle, "\n%s\n", name);
  const char *p = strstr(d, needle);
  if (!p) fail_msg("no %s in the dead letter:\n%s", name, d);
  p += strlen(needle);
  size_t n = strcspn(p, "\n");
  char *v = malloc(n + 1);
  memcpy(v, p, n);
  v[n] = '\0';
  return v;
}

static long long field_ll(const char *d, const char *name) {
  char *v = field(d, name);
  char *end;
  long long x = strtoll(v, &end, 10);
  if (*v == '\0' || *end != '\0') fail_msg("%s is not an integer: %s", name, v);
  free(v);
  return x;
}

/* An erroring handler: after maxReceives = 2 deliveries the dead letter has the error's
 * message (not its traceback), both receive times a visibility apart and its group, the
 * bookkeeping is gone, and the queues API's peek shows them. A timeout's dead letter says "timeout". */
static void error_fields(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "dl.lua",
            "return { timeout = 0.3, triggers = { { queue = 'dl', visibility = 0.5, maxReceives = 2 } },\n"
            "  handler = function(event, ctx)\n"
            "    for _, r in ipairs(event.records) do ctx.log.info('rec ' .. r.body .. ' ' .. r.receiveCount) end\n"
            "    if event.records[1].body == 'slow' then while true do end end\n"
            "    error('cannot take ' .. event.records[1].body)\n"
            "  end }\n");
  srv_start(&s, "--workers 1");
  long long sent = xadd_msg(&s, "dl", "boom");
  srv_wait_msg(&s, 1, "rec boom 1");
  /* After the first failure: kept, with a TTL of visibility x maxReceives + 60 s at most. */
  long long ttl = -3;
  for (int i = 0; i < 100 && (ttl = srv_rcli_ll(&s, "PTTL", "cr:{q:dl}:s:dl:dl", NULL)) < 0; i++)
    sleep_ms(20);
  if (ttl <= 0 || ttl > 61000) fail_msg("bookkeeping TTL %lld ms", ttl);
  srv_wait_msg(&s, 1, "rec boom 2");
  char *d = dead_letters(&s, "dl", 1);
  char *err = field(d, "lastError");
  assert_string_equal(err, "dl.lua:5: cannot take boom");
  free(err);
  assert_int_equal(field_ll(d, "receiveCount"), 2);
  long long first = field_ll(d, "firstReceive"), last = field_ll(d, "lastReceive"), dead = field_ll(d, "deadAt");
  if (!(sent <= first && first + 400 <= last && last <= dead))
    fail_msg("sent %lld, firstReceive %lld, lastReceive %lld, deadAt %lld", sent, first, last, dead);
  free(d);
  assert_int_equal(srv_rcli_ll(&s, "EXISTS", "cr:{q:dl}:s:dl:dl", NULL), 0);
  /* The queues API's peek shows them. */
  http_resp_t r;
  http_get(s.port, "/_/api/queues/dl.dlq/messages", &r);
  char want[400];
  snprintf(want, sizeof want,
           "\"receiveCount\":2,\"sourceId\":\"%lld-0\",\"deadAt\":%lld,\"group\":\"dl\",\"firstReceive\":%lld,"
           "\"lastReceive\":%lld,"
           "\"lastError\":\"dl.lua:5: cannot take boom\"}]}",
           sent, dead, first, last);
  if (r.status != 200 || !strstr(r.body, want)) fail_msg("peek: %d %s\nwant ...%s", r.status, r.body, want);
  http_free(&r);
  xadd_msg(&s, "dl", "slow");
  srv_wait_msg(&s, 1, "rec slow 2");
  d = dead_letters(&s, "dl", 2);
  char *second = strstr(d, "\nslow\n");
  if (!second) fail_msg("dead letters:\n%s", d);
  err = field(second, "lastError");
  assert_string_equal(err, "timeout");
  free(err);
  free(d);
  srv_expect_errors(&s, 4);
  srv_stop(&s);
}

/* A record the handler lists as failed: its dead letter says so (maxReceives = 1: one receive,
 * first and last the same). One that fails once and then succeeds leaves no bookkeeping. */
static void failed_fields(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "rep.lua",
            "return { timeout = 0.3, triggers = { { queue = 'rep', visibility = 0.5, maxReceives = 1 } },\n"
            "  handler = function(event, ctx)\n"
            "    local failed = {}\n"
            "    for _, r in ipairs(event.records) do\n"
            "      ctx.log.info('rec ' .. r.body .. ' ' .. r.receiveCount)\n"
            "      if r.body == 'bad' then failed[#failed + 1] = r.id end\n"
            "    end\n"
            "    return { failed = failed }\n"
            "  end }\n");
  srv_write(&s, "once.lua",
            "return { timeout = 0.3, triggers = { { queue = 'once', visibility = 0.5, maxReceives = 3 } },\n"
            "  handler = function(event, ctx)\n"
            "    local r = event.records[1]\n"
            "    ctx.log.info('rec ' .. r.body .. ' ' .. r.receiveCount)\n"
            "    if r.receiveCount == 1 then return { failed = { r.id } } end\n"
            "  end }\n");
  srv_start(&s, "--workers 1");
  long long sent = xadd_msg(&s, "rep", "bad");
  xadd_msg(&s, "once", "flaky");
  srv_wait_msg(&s, 1, "rec flaky 1");
  for (int i = 0; i < 100 && srv_rcli_ll(&s, "EXISTS", "cr:{q:once}:s:dl:once", NULL) == 0; i++) sleep_ms(20);
  assert_int_equal(srv_rcli_ll(&s, "HLEN", "cr:{q:once}:s:dl:once", NULL), 3); /* :f, :l and :e */
  srv_wait_msg(&s, 1, "rec flaky 2");
  long long left = 1;
  for (int i = 0; i < 100 && (left = srv_rcli_ll(&s, "EXISTS", "cr:{q:once}:s:dl:once", NULL)) != 0; i++)
    sleep_ms(20);
  assert_int_equal(left, 0);
  srv_wait_msg(&s, 1, "rec bad 1");
  char *d = dead_letters(&s, "rep", 1);
  char *err = field(d, "lastError");
  assert_string_equal(err, "reported failed by the handler");
  free(err);
  assert_int_equal(field_ll(d, "receiveCount"), 1);
  long long first = field_ll(d, "firstReceive"), last = field_ll(d, "lastReceive"), dead = field_ll(d, "deadAt");
  if (!(sent <= first && first == last && last + 400 <= dead))
    fail_msg("sent %lld, firstReceive %lld, lastReceive %lld, deadAt %lld", sent, first, last, dead);
  free(d);
  assert_int_equal(srv_rcli_ll(&s, "EXISTS", "cr:{q:rep}:s:dl:rep", NULL), 0);
  assert_int_equal(srv_rcli_ll(&s, "XLEN", "cr:{q:once.dlq}:s", NULL), 0);
  srv_stop(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(error_fields),
      cmocka_unit_test(failed_fields),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
