/* test_trigger_meters.c - the stream triggers' meters (shm.h's cr_shm_trig_t, counted by
 * core/trigger/queue/consumer.c): after a known scenario on a queue trigger (5 messages, one of
 * them failing until it is dead-lettered with maxReceives = 2), the exact counts of invocations,
 * errors, records, redelivered, acknowledged and dead-lettered records, the group's lag and the
 * oldest record's age, in /_/api/functions (each function's metrics.triggers) and in /_/metrics
 * (crescent_trigger_*, with HELP and TYPE); and the oldest age of a record left pending. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

/* The "triggers" object of function fn in /_/api/functions (malloc'd). */
static char *triggers_of(srv_t *s, const char *fn) {
  http_resp_t r;
  http_get(s->port, "/_/api/functions", &r);
  if (r.status != 200) fail_msg("/_/api/functions: %d %s", r.status, r.body);
  char *e = api_fn_entry(r.body, fn);
  if (!e) fail_msg("no %s in %s", fn, r.body);
  http_free(&r);
  char *t = strstr(e, "\"triggers\":{");
  if (!t) fail_msg("no triggers in %s", e);
  /* The object ends at its first "}" when empty, else at the first "}}" (its entries hold no
   * objects). */
  size_t head = strlen("\"triggers\":{");
  char *end = t[head] == '}' ? t + head - 1 : strstr(t, "}}");
  char *out = strndup(t, end ? (size_t)(end - t) + 2 : strlen(t));
  free(e);
  return out;
}

/* Polls until fn's triggers object is want (5 s), then checks it stays so. */
static void expect_triggers(srv_t *s, const char *fn, const char *want) {
  char *got = NULL;
  for (int i = 0; i < 100; i++) {
    free(got);
    got = triggers_of(s, fn);
    if (strcmp(got, want) == 0) break;
    sleep_ms(50);
  }
  if (strcmp(got, want) != 0) fail_msg("triggers of %s:\n got %s\nwant %s", fn, got, want);
  free(got);
}

static void queue_scenario(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "send.lua", srv_queue_sender);
  srv_write(&s, "work.lua",
            "return { timeout = 0.3, triggers = { { queue = 'tm', batch = 1, visibility = 0.5, maxReceives = 2 } },\n"
            "  handler = function(event, ctx)\n"
            "    local r = event.records[1]\n"
            "    ctx.log.info('rec ' .. r.body .. ' ' .. r.receiveCount)\n"
            "    if r.body == 'bad' then error('cannot take it') end\n"
            "  end }\n");
  srv_write(&s, "idle.lua", "return { triggers = { { kv = 'tm:' } }, handler = function() end }\n");
  srv_start(&s, "--workers 2");
  /* A trigger is metered from the start, at zero (the kv trigger reads the default namespace); the
   * lag is known after a claim round. */
  expect_triggers(&s, "idle",
                  "\"triggers\":{\"kv:default\":{\"invocations\":0,\"errors\":0,\"records\":0,\"redelivered\":0,"
                  "\"acked\":0,\"deadLettered\":0,\"lag\":0,\"oldestAgeMs\":0}}");
  const char *bodies[] = {"a", "b", "bad", "c", "d"};
  for (int i = 0; i < 5; i++) srv_send_msg(&s, "tm", bodies[i]);
  /* bad: delivered, failed, redelivered (receiveCount 2), failed, then moved to tm.dlq. */
  int got = srv_log_wait(&s, 1, 10000, "\"msg\":\"rec bad 2\"", NULL);
  if (got < 1) fail_msg("no redelivery; log:\n%s", srv_log(&s));
  expect_triggers(&s, "work", "\"triggers\":{\"queue:tm\":{\"invocations\":6,\"errors\":2,\"records\":6,"
                              "\"redelivered\":1,\"acked\":4,\"deadLettered\":1,\"lag\":0,\"oldestAgeMs\":0}}");
  sleep_ms(700); /* past one more visibility: nothing else is handed out */
  expect_triggers(&s, "work", "\"triggers\":{\"queue:tm\":{\"invocations\":6,\"errors\":2,\"records\":6,"
                              "\"redelivered\":1,\"acked\":4,\"deadLettered\":1,\"lag\":0,\"oldestAgeMs\":0}}");
  assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", "\"function\":\"work\"", NULL), 6);
  /* A function without stream triggers has an empty object. */
  expect_triggers(&s, "send", "\"triggers\":{}");

  http_resp_t r;
  http_get(s.port, "/_/metrics", &r);
  assert_int_equal(r.status, 200);
  static const char *const lines[] = {
      "# HELP crescent_trigger_records_total ",
      "# TYPE crescent_trigger_records_total counter\n",
      "\ncrescent_trigger_records_total{function=\"work\",trigger=\"queue:tm\"} 6\n",
      "\ncrescent_trigger_records_total{function=\"idle\",trigger=\"kv:default\"} 0\n",
      "# TYPE crescent_trigger_redelivered_total counter\n",
      "\ncrescent_trigger_redelivered_total{function=\"work\",trigger=\"queue:tm\"} 1\n",
      "# TYPE crescent_trigger_acked_total counter\n",
      "\ncrescent_trigger_acked_total{function=\"work\",trigger=\"queue:tm\"} 4\n",
      "# TYPE crescent_trigger_dead_lettered_total counter\n",
      "\ncrescent_trigger_dead_lettered_total{function=\"work\",trigger=\"queue:tm\"} 1\n",
      "# TYPE crescent_trigger_lag gauge\n",
      "\ncrescent_trigger_lag{function=\"work\",trigger=\"queue:tm\"} 0\n",
      "# TYPE crescent_trigger_invocations_total counter\n",
      "\ncrescent_trigger_invocations_total{function=\"work\",trigger=\"queue:tm\"} 6\n",
      "\ncrescent_trigger_invocations_total{function=\"idle\",trigger=\"kv:default\"} 0\n",
      "# TYPE crescent_trigger_errors_total counter\n",
      "\ncrescent_trigger_errors_total{function=\"work\",trigger=\"queue:tm\"} 2\n",
      "# TYPE crescent_trigger_oldest_age_seconds gauge\n",
      "\ncrescent_trigger_oldest_age_seconds{function=\"work\",trigger=\"queue:tm\"} 0.000\n",
  };
  for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
    if (!strstr(r.body, lines[i])) fail_msg("no %s in /_/metrics:\n%s", lines[i], r.body);
  /* One line per (function, trigger): the send function has none. */
  if (strstr(r.body, "crescent_trigger_records_total{function=\"send\"")) fail_msg("send metered:\n%s", r.body);
  http_free(&r);
  srv_expect_errors(&s, 2);
  srv_stop(&s);
}

/* The number after "key": in text; fails the test without one. */
static long long num_after(const char *text, const char *key) {
  char needle[64];
  snprintf(needle, sizeof needle, "\"%s\":", key);
  const char *p = strstr(text, needle);
  if (!p) fail_msg("no %s in %s", needle, text);
  char *end;
  long long v = strtoll(p + strlen(needle), &end, 10);
  if (end == p + strlen(needle)) fail_msg("%s is not a number in %s", needle, text);
  return v;
}

/* oldestAgeMs: a record that fails stays pending for its visibility (2 s), so the oldest
 * record the group needs gets older by the claim round (every 0.5 s) until it is delivered
 * again; once it is dead-lettered the group needs nothing and the age is 0 again. */
static void oldest_age(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "send.lua", srv_queue_sender);
  srv_write(&s, "stuck.lua",
            "return { timeout = 1, triggers = { { queue = 'old', batch = 1, visibility = 2, maxReceives = 1 } },\n"
            "  handler = function(event, ctx)\n"
            "    ctx.log.info('rec ' .. event.records[1].body)\n"
            "    error('not now')\n"
            "  end }\n");
  srv_start(&s, "--workers 1");
  long long t0 = now_ms();
  srv_send_msg(&s, "old", "x");
  srv_wait_msg(&s, 1, "rec x");
  sleep_ms(1600 - (int)(now_ms() - t0));
  char *t = triggers_of(&s, "stuck");
  long long age = num_after(t, "oldestAgeMs"), elapsed = now_ms() - t0;
  /* As of the last claim round: at most 0.5 s (and a round trip) behind. */
  if (age < 900 || age > elapsed + 100) fail_msg("oldestAgeMs %lld after %lld ms: %s", age, elapsed, t);
  assert_int_equal(num_after(t, "lag"), 0); /* delivered: pending, not lagging */
  free(t);
  http_resp_t r;
  http_get(s.port, "/_/metrics", &r);
  const char *line = strstr(r.body, "\ncrescent_trigger_oldest_age_seconds{function=\"stuck\",trigger=\"queue:old\"} ");
  if (!line || strtod(strchr(line, '}') + 2, NULL) < 0.9) fail_msg("oldest age in /_/metrics:\n%s", r.body);
  http_free(&r);
  /* Its visibility over, the next claim moves it to old.dlq (maxReceives 1): nothing needed. */
  expect_triggers(&s, "stuck", "\"triggers\":{\"queue:old\":{\"invocations\":1,\"errors\":1,\"records\":1,"
                               "\"redelivered\":0,\"acked\":0,\"deadLettered\":1,\"lag\":0,\"oldestAgeMs\":0}}");
  srv_expect_errors(&s, 1);
  srv_stop(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(queue_scenario),
      cmocka_unit_test(oldest_age),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
