/* test_stream_triggers.c - functions run by { storage = BUCKET } and { kv = PREFIX } triggers
 * (core/trigger/queue, on the streams crescent.storage and crescent.kv write), on the managed
 * Redis: the events, the filters (events, prefix, suffix; prefix and namespace), records left out
 * acknowledged without an invocation, the report line, and a failing handler redelivered then
 * dead-lettered to storage.BUCKET.dlq / kv.NAMESPACE.dlq. Writes go through an HTTP function;
 * what the handlers saw comes back in their log lines ("rec ..."). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

/* The writer: GET /w?op=put|del&b=BUCKET&k=KEY (storage), /w?op=kput|kdel|incr&ns=NS&k=KEY&v=V
 * (kv; kput stores { v = V } as a table, V as a string when s=1). */
static const char writer[] =
    "local storage = require 'crescent.storage'\n"
    "local kv = require 'crescent.kv'\n"
    "return function(event)\n"
    "  local q = event.query\n"
    "  if q.op == 'put' then return storage.put(q.b, q.k, 'data:' .. q.k, { contentType = 'image/png' }).etag end\n"
    "  if q.op == 'del' then return tostring(storage.delete(q.b, q.k)) end\n"
    "  local ns = kv.namespace(q.ns or 'default')\n"
    "  if q.op == 'kput' then return ns.put(q.k, q.s and q.v or { v = q.v }) end\n"
    "  if q.op == 'kdel' then return tostring(ns.delete(q.k)) end\n"
    "  if q.op == 'incr' then return (ns.incr(q.k, tonumber(q.v))) end\n"
    "end\n";

static void get_ok(srv_t *s, const char *fmt, ...) {
  char path[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(path, sizeof path, fmt, ap);
  va_end(ap);
  http_resp_t r;
  http_get(s->port, path, &r);
  if (r.status != 200) fail_msg("%s: %d %s", path, r.status, r.body);
  http_free(&r);
}

static void wait_msg(srv_t *s, int n, const char *msg) {
  char needle[400];
  snprintf(needle, sizeof needle, "\"msg\":\"%s\"", msg);
  int got = srv_log_wait(s, n, 10000, needle, NULL);
  if (got < n) fail_msg("%d lines with %s, want %d; log:\n%s", got, needle, n, srv_log(s));
}

static int count_msg(srv_t *s, const char *msg) {
  char needle[400];
  snprintf(needle, sizeof needle, "\"msg\":\"%s\"", msg);
  return srv_log_count(s, needle, NULL);
}

/* Waits until the group of function fn exists on stream key (a new storage or kv trigger reads
 * the writes made from then on). */
static void wait_group(srv_t *s, const char *key, const char *fn) {
  char sock[400], name[200];
  srv_redis_sock(s, sock, sizeof sock);
  snprintf(name, sizeof name, "\nname\n%s\n", fn);
  for (int i = 0; i < 200; i++) {
    char *g = redis_cli_sock(sock, "XINFO", "GROUPS", key, NULL);
    char *line = malloc(strlen(g) + 2);
    snprintf(line, strlen(g) + 2, "\n%s", g);
    int found = strstr(line, name) != NULL;
    free(line);
    free(g);
    if (found) return;
    sleep_ms(25);
  }
  fail_msg("no group %s on %s", fn, key);
}

static char *rcli(srv_t *s, const char *a, const char *b, const char *c) {
  char sock[400];
  srv_redis_sock(s, sock, sizeof sock);
  return redis_cli_sock(sock, a, b, c, NULL);
}

static void expect_no_pending(srv_t *s, const char *key, const char *group) {
  char *p = rcli(s, "XPENDING", key, group);
  if (strncmp(p, "0\n", 2) != 0) fail_msg("pending on %s: %s", key, p);
  free(p);
}

/* Storage: put and delete events, filtered by events, prefix and suffix. */
static void storage_events_and_filters(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "w.lua", writer);
  srv_write(&s, "thumbs.lua",
            "return { triggers = { { storage = 'pics', events = { 'put' }, prefix = 'img/', suffix = '.png' } },\n"
            "  handler = function(event, ctx)\n"
            "    assert(event.source == 'storage' and event.bucket == 'pics', 'event')\n"
            "    for _, r in ipairs(event.records) do\n"
            "      assert(type(r.id) == 'string' and type(r.time) == 'number' and r.time > 1.6e12, 'id, time')\n"
            "      assert(r.etag:find('^\"') and r.contentType == 'image/png' and r.bucket == 'pics', 'fields')\n"
            "      ctx.log.info('rec ' .. r.event .. ' ' .. r.key .. ' ' .. r.size .. ' ' .. r.receiveCount)\n"
            "    end\n"
            "  end }\n");
  srv_write(&s, "gone.lua",
            "return { triggers = { { storage = 'pics', events = { 'delete' } } },\n"
            "  handler = function(event, ctx)\n"
            "    for _, r in ipairs(event.records) do ctx.log.info('gone ' .. r.event .. ' ' .. r.key .. ' ' .. r.size) end\n"
            "  end }\n");
  srv_start(&s, "--workers 2");
  http_expect(s.port, "/thumbs", 404, NULL); /* trigger-only: no route */
  wait_group(&s, "cr:{st:pics}:events", "thumbs");
  wait_group(&s, "cr:{st:pics}:events", "gone");
  get_ok(&s, "/w?op=put&b=pics&k=img/a.png");  /* fires */
  get_ok(&s, "/w?op=put&b=pics&k=img/b.jpg");  /* suffix */
  get_ok(&s, "/w?op=put&b=pics&k=doc/c.png");  /* prefix */
  get_ok(&s, "/w?op=put&b=other&k=img/x.png"); /* another bucket */
  get_ok(&s, "/w?op=del&b=pics&k=img/a.png");  /* events: put only (gone sees it) */
  get_ok(&s, "/w?op=put&b=pics&k=img/dd.png"); /* fires */
  wait_msg(&s, 1, "rec put img/a.png 14 1");
  wait_msg(&s, 1, "rec put img/dd.png 15 1");
  wait_msg(&s, 1, "gone delete img/a.png 14");
  sleep_ms(300);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"rec ", NULL), 2);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"gone ", NULL), 1);
  /* An invocation per batch with a record kept: the others are acknowledged unseen. */
  int reports = srv_log_count(&s, "\"msg\":\"report\"", "\"trigger\":\"storage\"", "\"bucket\":\"pics\"",
                              "\"function\":\"thumbs\"", "\"failed\":0", "\"status\":200", NULL);
  if (reports < 1 || reports > 2) fail_msg("%d reports for thumbs:\n%s", reports, srv_log(&s));
  assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", "\"trigger\":\"storage\"", "\"function\":\"gone\"",
                                 "\"batch\":1", NULL),
                   1);
  expect_no_pending(&s, "cr:{st:pics}:events", "thumbs");
  expect_no_pending(&s, "cr:{st:pics}:events", "gone");
  char *g = rcli(&s, "XINFO", "GROUPS", "cr:{st:pics}:events");
  if (!strstr(g, "\nlag\n0\n")) fail_msg("groups: %s", g);
  free(g);
  srv_stop(&s);
}

/* KV: put, incr and delete under a prefix of a namespace, the new value in the record. */
static void kv_events_and_filters(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "w.lua", writer);
  srv_write(&s, "users.lua",
            "return { triggers = { { kv = 'user:', namespace = 'people', batch = 1 } },\n"
            "  handler = function(event, ctx)\n"
            "    assert(event.source == 'kv' and event.namespace == 'people' and #event.records == 1, 'event')\n"
            "    local r = event.records[1]\n"
            "    assert(type(r.version) == 'number' and type(r.time) == 'number', 'version, time')\n"
            "    local v = r.value\n"
            "    if type(v) == 'table' then v = 't:' .. v.v else v = type(v) .. ':' .. tostring(v) end\n"
            "    ctx.log.info('rec ' .. r.op .. ' ' .. r.key .. ' ' .. r.version .. ' ' .. v)\n"
            "  end }\n");
  srv_start(&s, "--workers 2");
  wait_group(&s, "cr:{kv:people}:changes", "users");
  get_ok(&s, "/w?op=kput&ns=people&k=user:1&v=ann");
  get_ok(&s, "/w?op=kput&ns=people&k=order:1&v=x"); /* prefix */
  get_ok(&s, "/w?op=kput&ns=default&k=user:2&v=y"); /* namespace */
  get_ok(&s, "/w?op=incr&ns=people&k=user:n&v=5");
  get_ok(&s, "/w?op=incr&ns=people&k=user:n&v=2");
  get_ok(&s, "/w?op=kput&ns=people&k=user:s&v=plain&s=1");
  get_ok(&s, "/w?op=kdel&ns=people&k=user:1");
  wait_msg(&s, 1, "rec put user:1 1 t:ann");
  wait_msg(&s, 1, "rec incr user:n 3 number:5");
  wait_msg(&s, 1, "rec incr user:n 4 number:7");
  wait_msg(&s, 1, "rec put user:s 5 string:plain");
  wait_msg(&s, 1, "rec delete user:1 6 nil:nil");
  sleep_ms(300);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"rec ", NULL), 5);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", "\"trigger\":\"kv\"", "\"namespace\":\"people\"",
                                 "\"batch\":1", "\"status\":200", NULL),
                   5);
  expect_no_pending(&s, "cr:{kv:people}:changes", "users");
  /* A namespace nobody watches keeps its records without values. */
  char sock[400];
  srv_redis_sock(&s, sock, sizeof sock);
  char *d = redis_cli_sock(sock, "XRANGE", "cr:{kv:default}:changes", "-", "+", NULL);
  if (strstr(d, "\nvalue\n") || !strstr(d, "\nop\nput\nkey\nuser:2\n")) fail_msg("default's changes: %s", d);
  free(d);
  srv_stop(&s);
}

/* A failing handler acknowledges nothing: redelivered after the visibility, dead-lettered after
 * maxReceives (as a message of the queue storage.BUCKET.dlq / kv.NAMESPACE.dlq). */
static void failures_and_dead_letters(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "w.lua", writer);
  srv_write(&s, "bad_st.lua",
            "return { timeout = 0.3, triggers = { { storage = 'fail', visibility = 0.5, maxReceives = 2 } },\n"
            "  handler = function(event, ctx)\n"
            "    ctx.log.info('st ' .. event.records[1].key .. ' ' .. event.records[1].receiveCount)\n"
            "    error('no')\n"
            "  end }\n");
  srv_write(&s, "bad_kv.lua",
            "return { timeout = 0.3, triggers = { { kv = '', namespace = 'fail', visibility = 0.5, maxReceives = 2 } },\n"
            "  handler = function(event, ctx)\n"
            "    local failed = {}\n"
            "    for _, r in ipairs(event.records) do\n"
            "      ctx.log.info('kv ' .. r.key .. ' ' .. r.receiveCount)\n"
            "      if r.key == 'bad' then failed[#failed + 1] = r.id end\n"
            "    end\n"
            "    return { failed = failed }\n"
            "  end }\n");
  srv_start(&s, "--workers 1");
  wait_group(&s, "cr:{st:fail}:events", "bad_st");
  wait_group(&s, "cr:{kv:fail}:changes", "bad_kv");
  get_ok(&s, "/w?op=put&b=fail&k=obj");
  get_ok(&s, "/w?op=kput&ns=fail&k=bad&v=1");
  get_ok(&s, "/w?op=kput&ns=fail&k=good&v=2");
  wait_msg(&s, 1, "st obj 1");
  wait_msg(&s, 1, "st obj 2");
  wait_msg(&s, 1, "kv bad 1");
  wait_msg(&s, 1, "kv good 1");
  wait_msg(&s, 1, "kv bad 2");
  char sock[400];
  srv_redis_sock(&s, sock, sizeof sock);
  long n = 0, m = 0;
  for (int i = 0; i < 100; i++) {
    char *a = redis_cli_sock(sock, "XLEN", "cr:{q:storage.fail.dlq}:s", NULL);
    char *b = redis_cli_sock(sock, "XLEN", "cr:{q:kv.fail.dlq}:s", NULL);
    n = strtol(a, NULL, 10), m = strtol(b, NULL, 10);
    free(a);
    free(b);
    if (n && m) break;
    sleep_ms(50);
  }
  assert_int_equal(n, 1);
  assert_int_equal(m, 1);
  char *d = redis_cli_sock(sock, "XRANGE", "cr:{q:storage.fail.dlq}:s", "-", "+", NULL);
  if (!strstr(d, "\ntype\nj\nbody\n") || !strstr(d, "\"key\":\"obj\"") || !strstr(d, "\"event\":\"put\"") ||
      !strstr(d, "\nreceiveCount\n2\nsourceId\n"))
    fail_msg("storage dead letter: %s", d);
  free(d);
  d = redis_cli_sock(sock, "XRANGE", "cr:{q:kv.fail.dlq}:s", "-", "+", NULL);
  if (!strstr(d, "\"key\":\"bad\"") || !strstr(d, "\"op\":\"put\"") || strstr(d, "\"key\":\"good\""))
    fail_msg("kv dead letter: %s", d);
  free(d);
  expect_no_pending(&s, "cr:{st:fail}:events", "bad_st");
  expect_no_pending(&s, "cr:{kv:fail}:changes", "bad_kv");
  sleep_ms(800);
  assert_int_equal(count_msg(&s, "st obj 3"), 0);
  assert_int_equal(count_msg(&s, "kv bad 3"), 0);
  assert_int_equal(count_msg(&s, "kv good 2"), 0);
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"",
                                 "\"msg\":\"storage fail: the handler failed on a batch of 1: none acknowledged\"", NULL),
                   2);
  srv_expect_errors(&s, 2);
  srv_stop(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(storage_events_and_filters),
      cmocka_unit_test(kv_events_and_filters),
      cmocka_unit_test(failures_and_dead_letters),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
