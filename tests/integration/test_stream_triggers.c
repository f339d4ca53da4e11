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


static void expect_no_pending(srv_t *s, const char *key, const char *group) {
  long long n = srv_rcli_ll(s, "XPENDING", key, group, NULL);
  if (n != 0) fail_msg("%lld pending on %s", n, key);
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
  srv_wait_group(&s, "cr:{st:pics}:events", "thumbs");
  srv_wait_group(&s, "cr:{st:pics}:events", "gone");
  http_get_ok(s.port, "/w?op=put&b=pics&k=img/a.png");  /* fires */
  http_get_ok(s.port, "/w?op=put&b=pics&k=img/b.jpg");  /* suffix */
  http_get_ok(s.port, "/w?op=put&b=pics&k=doc/c.png");  /* prefix */
  http_get_ok(s.port, "/w?op=put&b=other&k=img/x.png"); /* another bucket */
  http_get_ok(s.port, "/w?op=del&b=pics&k=img/a.png");  /* events: put only (gone sees it) */
  http_get_ok(s.port, "/w?op=put&b=pics&k=img/dd.png"); /* fires */
  srv_wait_msg(&s, 1, "rec put img/a.png 14 1");
  srv_wait_msg(&s, 1, "rec put img/dd.png 15 1");
  srv_wait_msg(&s, 1, "gone delete img/a.png 14");
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
  char *g = srv_rcli(&s, "XINFO", "GROUPS", "cr:{st:pics}:events", NULL);
  const char *lag = strstr(g, "\nlag\n0");
  if (!lag || (lag[6] != '\n' && lag[6] != '\0')) fail_msg("groups: %s", g);
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
  srv_wait_group(&s, "cr:{kv:people}:changes", "users");
  http_get_ok(s.port, "/w?op=kput&ns=people&k=user:1&v=ann");
  http_get_ok(s.port, "/w?op=kput&ns=people&k=order:1&v=x"); /* prefix */
  http_get_ok(s.port, "/w?op=kput&ns=default&k=user:2&v=y"); /* namespace */
  http_get_ok(s.port, "/w?op=incr&ns=people&k=user:n&v=5");
  http_get_ok(s.port, "/w?op=incr&ns=people&k=user:n&v=2");
  http_get_ok(s.port, "/w?op=kput&ns=people&k=user:s&v=plain&s=1");
  http_get_ok(s.port, "/w?op=kdel&ns=people&k=user:1");
  srv_wait_msg(&s, 1, "rec put user:1 1 t:ann");
  srv_wait_msg(&s, 1, "rec incr user:n 3 number:5");
  srv_wait_msg(&s, 1, "rec incr user:n 4 number:7");
  srv_wait_msg(&s, 1, "rec put user:s 5 string:plain");
  srv_wait_msg(&s, 1, "rec delete user:1 6 nil:nil");
  sleep_ms(300);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"rec ", NULL), 5);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", "\"trigger\":\"kv\"", "\"namespace\":\"people\"",
                                 "\"batch\":1", "\"status\":200", NULL),
                   5);
  expect_no_pending(&s, "cr:{kv:people}:changes", "users");
  /* A namespace nobody watches keeps its records without values. */
  char *d = srv_rcli(&s, "XRANGE", "cr:{kv:default}:changes", "-", "+", NULL);
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
  srv_wait_group(&s, "cr:{st:fail}:events", "bad_st");
  srv_wait_group(&s, "cr:{kv:fail}:changes", "bad_kv");
  http_get_ok(s.port, "/w?op=put&b=fail&k=obj");
  http_get_ok(s.port, "/w?op=kput&ns=fail&k=bad&v=1");
  http_get_ok(s.port, "/w?op=kput&ns=fail&k=good&v=2");
  srv_wait_msg(&s, 1, "st obj 1");
  srv_wait_msg(&s, 1, "st obj 2");
  srv_wait_msg(&s, 1, "kv bad 1");
  srv_wait_msg(&s, 1, "kv good 1");
  srv_wait_msg(&s, 1, "kv bad 2");
  long long n = 0, m = 0;
  for (int i = 0; i < 100; i++) {
    n = srv_rcli_ll(&s, "XLEN", "cr:{q:storage.fail.dlq}:s", NULL);
    m = srv_rcli_ll(&s, "XLEN", "cr:{q:kv.fail.dlq}:s", NULL);
    if (n && m) break;
    sleep_ms(50);
  }
  assert_int_equal(n, 1);
  assert_int_equal(m, 1);
  char *d = srv_rcli(&s, "XRANGE", "cr:{q:storage.fail.dlq}:s", "-", "+", NULL);
  if (!strstr(d, "\ntype\nj\nbody\n") || !strstr(d, "\"key\":\"obj\"") || !strstr(d, "\"event\":\"put\"") ||
      !strstr(d, "\nreceiveCount\n2\nsourceId\n"))
    fail_msg("storage dead letter: %s", d);
  free(d);
  d = srv_rcli(&s, "XRANGE", "cr:{q:kv.fail.dlq}:s", "-", "+", NULL);
  if (!strstr(d, "\"key\":\"bad\"") || !strstr(d, "\"op\":\"put\"") || strstr(d, "\"key\":\"good\""))
    fail_msg("kv dead letter: %s", d);
  free(d);
  expect_no_pending(&s, "cr:{st:fail}:events", "bad_st");
  expect_no_pending(&s, "cr:{kv:fail}:changes", "bad_kv");
  sleep_ms(800);
  assert_int_equal(srv_count_msg(&s, "st obj 3"), 0);
  assert_int_equal(srv_count_msg(&s, "kv bad 3"), 0);
  assert_int_equal(srv_count_msg(&s, "kv good 2"), 0);
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"",
                                 "\"msg\":\"storage fail: the handler failed on a batch of 1: none acknowledged\"", NULL),
                   2);
  srv_expect_errors(&s, 2);
  srv_stop(&s);
}

/* POST /_/api/queues/storage.BUCKET/redrive (kv.NAMESPACE): the dead letters go back into the
 * bucket's events (the namespace's changes) for the function they died in only: it sees them
 * again (a new id, receiveCount 1, the same fields), another function on the same stream does
 * not; a dead letter that is not such a record stays, skipped; nothing is in both places. */
static void redrive_records(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "w.lua", writer);
  /* Fails on k1 (storage) and bad (kv) until the default namespace holds "fix". */
  srv_write(&s, "flaky.lua",
            "local kv = require 'crescent.kv'\n"
            "return { timeout = 0.3, triggers = { { storage = 'rd', batch = 1, visibility = 0.5, maxReceives = 1 } },\n"
            "  handler = function(event, ctx)\n"
            "    local r = event.records[1]\n"
            "    ctx.log.info('flaky ' .. r.event .. ' ' .. r.key .. ' ' .. r.size .. ' ' .. r.receiveCount)\n"
            "    if r.key == 'k1' and not kv.get('fix') then error('not yet') end\n"
            "    ctx.log.info('flaky ok ' .. r.key)\n"
            "  end }\n");
  srv_write(&s, "audit.lua",
            "return { triggers = { { storage = 'rd' } }, handler = function(event, ctx)\n"
            "  for _, r in ipairs(event.records) do ctx.log.info('audit ' .. r.key) end end }\n");
  srv_write(&s, "kvflaky.lua",
            "local kv = require 'crescent.kv'\n"
            "return { timeout = 0.3, triggers = { { kv = '', namespace = 'rdn', batch = 1, visibility = 0.5,\n"
            "                                       maxReceives = 1 } },\n"
            "  handler = function(event, ctx)\n"
            "    local r = event.records[1]\n"
            "    ctx.log.info('kvflaky ' .. r.op .. ' ' .. r.key .. ' ' .. r.value.v .. ' ' .. r.receiveCount)\n"
            "    if r.key == 'bad' and not kv.get('fix') then error('not yet') end\n"
            "    ctx.log.info('kvflaky ok ' .. r.key)\n"
            "  end }\n");
  srv_write(&s, "kvaudit.lua",
            "return { triggers = { { kv = '', namespace = 'rdn' } }, handler = function(event, ctx)\n"
            "  for _, r in ipairs(event.records) do ctx.log.info('kvaudit ' .. r.key) end end }\n");
  srv_start(&s, "--workers 2");
  srv_wait_group(&s, "cr:{st:rd}:events", "flaky");
  srv_wait_group(&s, "cr:{st:rd}:events", "audit");
  srv_wait_group(&s, "cr:{kv:rdn}:changes", "kvflaky");
  srv_wait_group(&s, "cr:{kv:rdn}:changes", "kvaudit");
  http_get_ok(s.port, "/w?op=put&b=rd&k=k1");
  http_get_ok(s.port, "/w?op=put&b=rd&k=k2");
  http_get_ok(s.port, "/w?op=kput&ns=rdn&k=bad&v=b1");
  srv_wait_msg(&s, 1, "flaky ok k2");
  srv_wait_msg(&s, 1, "audit k1");
  srv_wait_msg(&s, 1, "kvaudit bad");
  /* maxReceives 1: after their visibility, the failed ones are dead letters naming their group. */
  long long n = 0, m = 0;
  for (int i = 0; i < 100 && (n == 0 || m == 0); i++) {
    n = srv_rcli_ll(&s, "XLEN", "cr:{q:storage.rd.dlq}:s", NULL);
    m = srv_rcli_ll(&s, "XLEN", "cr:{q:kv.rdn.dlq}:s", NULL);
    if (n == 0 || m == 0) sleep_ms(50);
  }
  assert_int_equal(n, 1);
  assert_int_equal(m, 1);
  http_resp_t r;
  http_get(s.port, "/_/api/queues/storage.rd.dlq/messages", &r);
  if (r.status != 200 || !strstr(r.body, "\"receiveCount\":1,") || !strstr(r.body, "\"group\":\"flaky\",") ||
      !strstr(r.body, "\"lastError\":\"flaky.lua:6: not yet\""))
    fail_msg("peek: %d %s", r.status, r.body);
  http_free(&r);
  /* Beside it, something that is not a storage record (it stays). */
  free(srv_rcli(&s, "XADD", "cr:{q:storage.rd.dlq}:s", "*", "type", "s", "body", "not a record", "time", "1",
                NULL));
  http_get_ok(s.port, "/w?op=kput&ns=default&k=fix&v=1");

  http_request(s.port, "POST", "/_/api/queues/storage.rd/redrive", NULL, NULL, 0, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{\"moved\":1,\"skipped\":1}");
  http_free(&r);
  srv_wait_msg(&s, 1, "flaky ok k1");
  assert_int_equal(srv_count_msg(&s, "flaky put k1 7 1"), 2); /* the same record, a first receive again */
  assert_int_equal(srv_rcli_ll(&s, "XLEN", "cr:{q:storage.rd.dlq}:s", NULL), 1);
  char *left = srv_rcli(&s, "XRANGE", "cr:{q:storage.rd.dlq}:s", "-", "+", NULL);
  if (!strstr(left, "\nbody\nnot a record\n")) fail_msg("left in the DLQ: %s", left);
  free(left);
  /* Appended to the bucket's events with its fields and the group it is for. */
  char *last = srv_rcli(&s, "XREVRANGE", "cr:{st:rd}:events", "+", "-", "COUNT", "1", NULL);
  if (!strstr(last, "\nkey\nk1\n") || !strstr(last, "\nevent\nput\n") || !strstr(last, "\nsize\n7\n") ||
      !strstr(last, "\ngroup\nflaky"))
    fail_msg("redriven record: %s", last);
  free(last);

  http_request(s.port, "POST", "/_/api/queues/kv.rdn/redrive", NULL, NULL, 0, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{\"moved\":1,\"skipped\":0}");
  http_free(&r);
  srv_wait_msg(&s, 1, "kvflaky ok bad");
  assert_int_equal(srv_count_msg(&s, "kvflaky put bad b1 1"), 2);
  assert_int_equal(srv_rcli_ll(&s, "XLEN", "cr:{q:kv.rdn.dlq}:s", NULL), 0);

  /* The other functions on the same streams do not see them again; nothing more comes. */
  sleep_ms(800);
  assert_int_equal(srv_count_msg(&s, "audit k1"), 1);
  assert_int_equal(srv_count_msg(&s, "kvaudit bad"), 1);
  assert_int_equal(srv_count_msg(&s, "flaky ok k1"), 1);
  assert_int_equal(srv_count_msg(&s, "kvflaky ok bad"), 1);
  expect_no_pending(&s, "cr:{st:rd}:events", "audit");
  expect_no_pending(&s, "cr:{kv:rdn}:changes", "kvaudit");
  http_request(s.port, "POST", "/_/api/queues/storage.rd/redrive", NULL, NULL, 0, &r);
  assert_string_equal(r.body, "{\"moved\":0,\"skipped\":1}");
  http_free(&r);
  srv_expect_errors(&s, srv_log_count(&s, "\"level\":\"error\"", "the handler failed on a batch", NULL));
  srv_stop(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(redrive_records),
      cmocka_unit_test(storage_events_and_filters),
      cmocka_unit_test(kv_events_and_filters),
      cmocka_unit_test(failures_and_dead_letters),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
