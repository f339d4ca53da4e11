/* test_queue_trigger.c - functions run by { queue = NAME } triggers (core/trigger/queue), on the
 * managed Redis: the event, batches, acknowledgements (all, all but the failed, none),
 * redelivery after the visibility, the dead-letter queue, the report line, no HTTP route for a
 * trigger-only function, and hot reload. Messages go in with crescent.queue (an HTTP function) or
 * with redis-cli; what the consumers saw comes back in their log lines ("rec BODY COUNT"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

/* The event as the handler sees it, batches, the report line, and no route. */
static void event_and_batches(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "send.lua", srv_queue_sender);
  srv_write(&s, "jobs.lua",
            "return { triggers = { { queue = 'jobs', batch = 3 } },\n"
            "  handler = function(event, ctx)\n"
            "    assert(event.source == 'queue' and event.queue == 'jobs', 'event')\n"
            "    for _, r in ipairs(event.records) do\n"
            "      assert(type(r.id) == 'string' and r.id:find('^%d+%-%d+$'), 'id')\n"
            "      assert(type(r.sentAt) == 'number' and r.sentAt > 1.6e12, 'sentAt')\n"
            "      local b = type(r.body) == 'table' and ('n' .. r.body.n) or ('s:' .. r.body)\n"
            "      ctx.log.info('rec ' .. b .. ' ' .. r.receiveCount .. ' of ' .. #event.records)\n"
            "    end\n"
            "  end }\n");
  srv_start(&s, "--workers 2");
  /* A trigger-only function has no HTTP route. */
  http_expect(s.port, "/jobs", 404, NULL);

  srv_send_msg(&s, "jobs", "hello");
  srv_wait_msg(&s, 1, "rec s:hello 1 of 1");

  /* Seven at once: batches of 3, 3 and 1, each record once, decoded. */
  http_expect_body(s.port, "/send?q=jobs&batch=7", "7");
  srv_wait_msg(&s, 1, "rec n7 1 of 1");
  for (int i = 1; i <= 6; i++) {
    char m[64];
    snprintf(m, sizeof m, "rec n%d 1 of 3", i);
    srv_wait_msg(&s, 1, m);
  }
  sleep_ms(300);
  for (int i = 1; i <= 7; i++) {
    char m[64];
    snprintf(m, sizeof m, "rec n%d 1 of %d", i, i == 7 ? 1 : 3);
    assert_int_equal(srv_count_msg(&s, m), 1);
  }
  /* The report lines: trigger, queue and batch size; all acknowledged. */
  assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", "\"trigger\":\"queue\"", "\"queue\":\"jobs\"",
                                 "\"batch\":3", "\"failed\":0", "\"status\":200", NULL),
                   2);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", "\"trigger\":\"queue\"", "\"batch\":1", NULL), 2);
  /* Every entry was acknowledged: the trim chore (about once a second)
   * removes them all. */
  for (int i = 0; i < 60 && srv_rcli_ll(&s, "XLEN", "cr:{q:jobs}:s", NULL) > 0; i++) sleep_ms(50);
  assert_int_equal(srv_rcli_ll(&s, "XLEN", "cr:{q:jobs}:s", NULL), 0);
  assert_int_equal(srv_rcli_ll(&s, "XPENDING", "cr:{q:jobs}:s", "jobs", NULL), 0);
  srv_stop(&s);
}

/* { failed = { ids } } acknowledges the others: only the failed one comes back, after the
 * visibility, with receiveCount 2. */
static void partial_failure(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "send.lua", srv_queue_sender);
  srv_write(&s, "work.lua",
            "return { timeout = 0.5, triggers = { { queue = 'work', visibility = 1 } },\n"
            "  handler = function(event, ctx)\n"
            "    local failed = {}\n"
            "    for _, r in ipairs(event.records) do\n"
            "      ctx.log.info('rec ' .. r.body .. ' ' .. r.receiveCount)\n"
            "      if r.body == 'bad' and r.receiveCount == 1 then failed[#failed + 1] = r.id end\n"
            "    end\n"
            "    return { failed = failed }\n"
            "  end }\n");
  srv_start(&s, "--workers 1");
  /* Sent before the group exists: the backlog is consumed too. */
  char *out =
      srv_rcli(&s, "XADD", "cr:{q:work}:s", "*", "type", "s", "body", "good", "time", "1700000000000", NULL);
  free(out);
  out = srv_rcli(&s, "XADD", "cr:{q:work}:s", "*", "type", "s", "body", "bad", "time", "1700000000000", NULL);
  free(out);
  srv_wait_msg(&s, 1, "rec good 1");
  srv_wait_msg(&s, 1, "rec bad 1");
  long long t0 = now_ms();
  srv_wait_msg(&s, 1, "rec bad 2");
  long long waited = now_ms() - t0;
  if (waited < 700) fail_msg("redelivered after %lld ms, before the visibility of 1 s", waited);
  sleep_ms(1500);
  assert_int_equal(srv_count_msg(&s, "rec good 1"), 1);
  assert_int_equal(srv_count_msg(&s, "rec good 2"), 0);
  assert_int_equal(srv_count_msg(&s, "rec bad 2"), 1);
  assert_int_equal(srv_count_msg(&s, "rec bad 3"), 0);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", "\"trigger\":\"queue\"", "\"failed\":1", NULL), 1);
  srv_stop(&s);
}

/* A handler that fails acknowledges nothing: redelivered after the visibility, and after
 * maxReceives deliveries moved to NAME.dlq with its fields. */
static void errors_and_dead_letters(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "send.lua", srv_queue_sender);
  srv_write(&s, "fragile.lua",
            "return { timeout = 0.3, triggers = { { queue = 'fragile', visibility = 0.5, maxReceives = 2 } },\n"
            "  handler = function(event, ctx)\n"
            "    for _, r in ipairs(event.records) do ctx.log.info('rec ' .. r.body .. ' ' .. r.receiveCount) end\n"
            "    if event.records[1].body == 'slow' then while true do end end\n"
            "    error('cannot take ' .. event.records[1].body)\n"
            "  end }\n");
  srv_start(&s, "--workers 1");
  srv_send_msg(&s, "fragile", "boom");
  srv_wait_msg(&s, 1, "rec boom 1");
  srv_wait_msg(&s, 1, "rec boom 2");
  /* A third delivery would pass maxReceives: it goes to the dead-letter queue instead. */
  long n = 0;
  for (int i = 0; i < 100 && (n = srv_rcli_ll(&s, "XLEN", "cr:{q:fragile.dlq}:s", NULL)) == 0; i++)
    sleep_ms(50);
  assert_int_equal(n, 1);
  char *d = srv_rcli(&s, "XRANGE", "cr:{q:fragile.dlq}:s", "-", "+", NULL);
  if (!strstr(d, "\ntype\ns\nbody\nboom\ntime\n") || !strstr(d, "\nreceiveCount\n2\nsourceId\n") ||
      !strstr(d, "\ndeadAt\n"))
    fail_msg("dead letter: %s", d);
  free(d);
  assert_int_equal(srv_rcli_ll(&s, "XPENDING", "cr:{q:fragile}:s", "fragile", NULL), 0);
  sleep_ms(800);
  assert_int_equal(srv_count_msg(&s, "rec boom 3"), 0);
  /* A timeout does not acknowledge either. */
  srv_send_msg(&s, "fragile", "slow");
  srv_wait_msg(&s, 1, "rec slow 1");
  srv_wait_msg(&s, 1, "rec slow 2");
  assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", "\"trigger\":\"queue\"", "\"outcome\":\"timeout\"",
                                 "\"status\":500", NULL),
                   2);
  for (int i = 0; i < 100 && srv_rcli_ll(&s, "XLEN", "cr:{q:fragile.dlq}:s", NULL) < 2; i++) sleep_ms(50);
  assert_int_equal(srv_rcli_ll(&s, "XLEN", "cr:{q:fragile.dlq}:s", NULL), 2);
  /* Each failed batch is one error line: two errors, two timeouts. */
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "\"msg\":\"queue fragile: the handler failed on a batch of 1: "
                                 "none acknowledged\"", NULL),
                   4);
  assert_int_equal(srv_log_count(&s, "\"error\":\"fragile.lua:5: cannot take boom", NULL), 2);
  srv_expect_errors(&s, 4);
  srv_stop(&s);
}

/* A new version takes over the same group; a removed function stops consuming. */
static void hot_reload(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "send.lua", srv_queue_sender);
  srv_write(&s, "hot.lua",
            "return { triggers = { { queue = 'hot' } },\n"
            "  handler = function(event, ctx) ctx.log.info('v1 ' .. event.records[1].body) end }\n");
  srv_start(&s, "--workers 2");
  srv_send_msg(&s, "hot", "a");
  srv_wait_msg(&s, 1, "v1 a");
  srv_write(&s, "hot.lua",
            "return { triggers = { { queue = 'hot' } }, routes = { 'GET /hot' },\n"
            "  handler = function(event, ctx)\n"
            "    if event.source == 'http' then return 'routed' end\n"
            "    ctx.log.info('v2 ' .. event.records[1].body)\n"
            "  end }\n");
  /* routes adds a route to a trigger function */
  for (int i = 0; i < 100; i++) {
    http_resp_t r;
    http_get(s.port, "/hot", &r);
    int st = r.status;
    http_free(&r);
    if (st == 200) break;
    sleep_ms(50);
  }
  http_expect_body(s.port, "/hot", "routed");
  srv_send_msg(&s, "hot", "b");
  srv_wait_msg(&s, 1, "v2 b");
  assert_int_equal(srv_count_msg(&s, "v1 b"), 0);
  srv_remove(&s, "hot.lua");
  for (int i = 0; i < 100; i++) {
    http_resp_t r;
    http_get(s.port, "/hot", &r);
    int st = r.status;
    http_free(&r);
    if (st == 404) break;
    sleep_ms(50);
  }
  http_expect(s.port, "/hot", 404, NULL);
  srv_send_msg(&s, "hot", "c");
  sleep_ms(500);
  assert_int_equal(srv_count_msg(&s, "v2 c"), 0);
  /* The message stays, for nobody: the group read 2 (acknowledged, so the
   * trim chore removes those) and c is left, undelivered. */
  for (int i = 0; i < 60 && srv_rcli_ll(&s, "XLEN", "cr:{q:hot}:s", NULL) > 1; i++) sleep_ms(50);
  assert_int_equal(srv_rcli_ll(&s, "XLEN", "cr:{q:hot}:s", NULL), 1);
  char *g = srv_rcli(&s, "XINFO", "GROUPS", "cr:{q:hot}:s", NULL);
  const char *lag = strstr(g, "\nlag\n1");
  if (!lag || (lag[6] != '\n' && lag[6] != '\0')) fail_msg("groups: %s", g);
  free(g);
  srv_stop(&s);
}

/* A batch whose event does not fit in the function's memory ends that
 * invocation as a memory error (nothing acknowledged); the worker lives on
 * and keeps serving. The event is made in a protected call (dispatch.c). */
static void event_over_memory(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "fill.lua",
            "local queue = require 'crescent.queue'\n"
            "return function()\n"
            "  for i = 1, 48 do assert(queue.send('big', { s = string.rep('x', 240000) .. i })) end\n"
            "  return 'filled'\n"
            "end\n");
  srv_write(&s, "bigc.lua",
            "return { memory = 1, triggers = { { queue = 'big', batch = 48, window = 3, visibility = 60 } },\n"
            "  handler = function(event, ctx) ctx.log.info('got ' .. #event.records) end }\n");
  srv_start(&s, "--workers 1");
  http_expect(s.port, "/fill", 200, "filled");
  int got = srv_log_wait(&s, 1, 15000, "\"msg\":\"report\"", "\"trigger\":\"queue\"", "\"outcome\":\"memory\"", NULL);
  if (got < 1) fail_msg("no memory failure reported; log:\n%s", srv_log(&s));
  assert_int_equal(srv_count_msg(&s, "got 48"), 0);
  http_expect(s.port, "/fill", 200, "filled"); /* the same worker, still serving */
  sleep_ms(300);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"worker ", NULL), 0); /* no worker died or restarted */
  /* The failed batch's error lines, each naming the memory limit. */
  int errors = srv_log_count(&s, "\"level\":\"error\"", NULL);
  assert_true(errors >= 1);
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "memory limit exceeded", NULL), errors);
  srv_expect_errors(&s, errors);
  srv_stop(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(event_and_batches),
      cmocka_unit_test(partial_failure),
      cmocka_unit_test(errors_and_dead_letters),
      cmocka_unit_test(hot_reload),
      cmocka_unit_test(event_over_memory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
