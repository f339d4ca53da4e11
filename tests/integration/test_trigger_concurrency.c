/* test_trigger_concurrency.c - a stream trigger's `concurrency` bounds its invocations in
 * flight across all workers (core/trigger/queue/consumer.c's places, in shm.h's
 * cr_shm_trig_held_t): with 2 workers and concurrency = 1 no two batches ever run at once,
 * with concurrency = 2 two do (never three); a worker SIGKILLed while it runs a batch gives its
 * place back (the master's cr_shm_reclaim), so the trigger goes on at once instead of never.
 *
 * The handler counts itself in and out in KV (kv.incr, atomic in Redis) and logs the count it
 * came in with: "in 2" means another batch was running in the meantime, in either worker. Its
 * batches spin on the CPU (no I/O), which keeps their worker's loop busy: only the other
 * worker can run a second batch meanwhile, so an overlap is a cross-worker one. */
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

/* A consumer of queue Q with concurrency C that spins S seconds per batch of 1 (a body "hang"
 * spins 25 s). */
static void write_counter(srv_t *s, const char *q, int conc, double spin) {
  char src[1600];
  snprintf(src, sizeof src,
           "local kv = require 'crescent.kv'\n"
           "local function spin(s) local t = os.clock() + s while os.clock() < t do end end\n"
           "return { timeout = 30, triggers = { { queue = '%s', batch = 1, concurrency = %d, visibility = 60 } },\n"
           "  handler = function(event, ctx)\n"
           "    local body = event.records[1].body\n"
           "    if type(body) == 'table' then body = tostring(body.n) end\n"
           "    local n = assert(kv.incr('running:%s', 1))\n"
           "    ctx.log.info('in ' .. n)\n"
           "    ctx.log.info('start ' .. body)\n"
           "    spin(body == 'hang' and 25 or %g)\n"
           "    assert(kv.incr('running:%s', -1))\n"
           "    ctx.log.info('done ' .. body)\n"
           "  end }\n",
           q, conc, q, spin, q);
  char file[64];
  snprintf(file, sizeof file, "%s.lua", q);
  srv_write(s, file, src);
}

/* Waits for n "done ..." lines (at most 20 s). */
static void wait_done(srv_t *s, int n) {
  int got = srv_log_wait(s, n, 20000, "\"msg\":\"done ", NULL);
  if (got < n) fail_msg("%d batches done, want %d; log:\n%s", got, n, srv_log(s));
}

/* concurrency = 1 across 2 workers: 10 batches one after the other, never two at once. */
static void one_at_a_time(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "send.lua", srv_queue_sender);
  write_counter(&s, "one", 1, 0.08);
  srv_start(&s, "--workers 2");
  http_expect_body(s.port, "/send?q=one&batch=10", "10");
  wait_done(&s, 10);
  assert_int_equal(srv_count_msg(&s, "in 1"), 10);
  assert_int_equal(srv_count_msg(&s, "in 2"), 0);
  srv_stop(&s);
}

/* concurrency = 2 across 2 workers: two batches run at once, never three. */
static void two_at_a_time(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "send.lua", srv_queue_sender);
  write_counter(&s, "two", 2, 0.3);
  srv_start(&s, "--workers 2");
  http_expect_body(s.port, "/send?q=two&batch=6", "6");
  wait_done(&s, 6);
  int twos = srv_count_msg(&s, "in 2");
  if (twos < 1) fail_msg("never two at once; log:\n%s", srv_log(&s));
  assert_int_equal(srv_count_msg(&s, "in 1") + twos, 6);
  srv_stop(&s);
}

/* concurrency = 1: while one worker runs a batch the other reads nothing; SIGKILLed there, the
 * worker's place comes back (the master says so) and the next message runs at once, long before
 * the killed batch's visibility (60 s) would matter. */
static void killed_worker_place(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "send.lua", srv_queue_sender);
  write_counter(&s, "solo", 1, 0.01);
  srv_start(&s, "--workers 2");
  pid_t pids[4];
  assert_int_equal(srv_workers_wait(&s, pids, 4, 2, 5000), 2);
  srv_send_msg(&s, "solo", "hang");
  /* Its log lines wait in its spinning worker's buffer: Redis says it runs (counted in) and
   * which worker holds it (XPENDING's consumer w<N>). */
  char *v = NULL;
  for (int i = 0; i < 200; i++) {
    free(v);
    v = srv_rcli(&s, "HGET", "cr:{kv:default}:v:running:solo", "v", NULL);
    if (strcmp(v, "1") == 0) break;
    sleep_ms(25);
  }
  assert_string_equal(v, "1");
  free(v);
  char *p = srv_rcli(&s, "XPENDING", "cr:{q:solo}:s", "solo", NULL);
  const char *wn = strstr(p, "\nw");
  if (strncmp(p, "1\n", 2) != 0 || !wn) fail_msg("XPENDING: %s", p);
  int w = atoi(wn + 2);
  free(p);
  pid_t victim = 0;
  for (int i = 0; i < 2; i++)
    if (worker_index(pids[i]) == w) victim = pids[i];
  assert_true(victim > 0);
  /* Sent straight to the stream: an HTTP request could land on the spinning worker. */
  free(srv_rcli(&s, "XADD", "cr:{q:solo}:s", "*", "type", "s", "body", "after", "time", "1700000000000", NULL));
  sleep_ms(600); /* the other worker is idle, and still reads nothing: the one place is taken */
  assert_int_equal(srv_count_msg(&s, "start after"), 0);
  assert_int_equal(kill(victim, SIGKILL), 0);
  long long t0 = now_ms();
  srv_wait_msg(&s, 1, "done after");
  long long took = now_ms() - t0;
  if (took > 5000) fail_msg("the place came back after %lld ms", took);
  char held[80];
  snprintf(held, sizeof held, "\"msg\":\"worker %d (pid %d) held ", w, (int)victim);
  assert_int_equal(srv_log_count(&s, held, ", 1 stream trigger places", ": taken back", NULL), 1);
  /* after came in counting 2: the killed batch never counted itself out (and wrote no line). */
  assert_int_equal(srv_count_msg(&s, "in 2"), 1);
  assert_int_equal(srv_count_msg(&s, "in 1"), 0);
  srv_expect_errors(&s, srv_log_count(&s, "\"level\":\"error\"", "was killed by signal 9", NULL));
  srv_stop(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(one_at_a_time),
      cmocka_unit_test(two_at_a_time),
      cmocka_unit_test(killed_worker_place),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
