/* test_queue_api.c - queues never drop an accepted message: the depth bound
 * (--queue-max-depth, "queue full", all or none), streams without MAXLEN, and
 * the trim chore of worker 0 that removes only entries every consumer group
 * has acknowledged. Real binary, managed Redis; consumer groups are made and
 * read with redis-cli on the managed server's socket, as a queue trigger
 * would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

/* The function: GET /q?q=NAME&n=K[&delay=S] sends K messages "m1".."mK" to
 * NAME (send for one, sendBatch for more) and answers the ids joined by
 * '|', or "nil|" and the error. */
static const char *sender =
    "local queue = require 'crescent.queue'\n"
    "return function(event)\n"
    "  local q, n = event.query.q, tonumber(event.query.n)\n"
    "  local opts = { delay = tonumber(event.query.delay) }\n"
    "  if n == 1 then\n"
    "    local id, err = queue.send(q, 'm1', opts)\n"
    "    return id or ('nil|' .. tostring(err))\n"
    "  end\n"
    "  local bodies = {}\n"
    "  for i = 1, n do bodies[i] = 'm' .. i end\n"
    "  local ids, err = queue.sendBatch(q, bodies, opts)\n"
    "  if not ids then return 'nil|' .. tostring(err) end\n"
    "  return table.concat(ids, '|')\n"
    "end\n";

/* GET /q?... (path) that must answer 200; the body, malloc'd. */
static char *send_q(int port, const char *path) {
  http_resp_t r;
  if (http_request_ka(port, "GET", path, NULL, NULL, 0, &r, 15000) != 0) fail_msg("GET %s: no response", path);
  if (r.status != 200) fail_msg("GET %s: %d %s", path, r.status, r.body);
  char *b = strdup(r.body);
  http_free(&r);
  return b;
}

static void send_expect(int port, const char *path, const char *want) {
  char *b = send_q(port, path);
  if (strcmp(b, want) != 0) fail_msg("GET %s: got '%s', want '%s'", path, b, want);
  free(b);
}

/* The first id of a stream (XRANGE - + COUNT 1), malloc'd. */
static char *first_id(const srv_t *s, const char *key) {
  char *out = srv_rcli(s, "XRANGE", key, "-", "+", "COUNT", "1", NULL);
  char *nl = strchr(out, '\n');
  if (nl) *nl = '\0';
  return out;
}

static void start(srv_t *s, const char *args) {
  srv_init(s);
  srv_write(s, "q.lua", sender);
  srv_start(s, args);
}

/* --max-depth 5: sends fill the queue to exactly 5, then fail with "queue full", a batch
 * whole (nothing of it written); delayed messages count too; everything accepted is kept. */
static void depth_bound(void **state) {
  (void)state;
  srv_t s;
  start(&s, "--workers 1 --queue-max-depth 5");
  char *ids = send_q(s.port, "/q?q=a&n=3");
  assert_int_equal(strchr(ids, '|') != NULL, 1);
  free(ids);
  send_expect(s.port, "/q?q=a&n=3", "nil|queue full");
  assert_int_equal(srv_rcli_ll(&s, "XLEN", "cr:{q:a}:s", NULL), 3); /* the batch is refused whole */
  ids = send_q(s.port, "/q?q=a&n=2");
  free(ids);
  send_expect(s.port, "/q?q=a&n=1", "nil|queue full");
  send_expect(s.port, "/q?q=a&n=1&delay=5", "nil|queue full");
  assert_int_equal(srv_rcli_ll(&s, "XLEN", "cr:{q:a}:s", NULL), 5);
  /* Every accepted body is there, in order: nothing was trimmed. */
  char *out = srv_rcli(&s, "XRANGE", "cr:{q:a}:s", "-", "+", NULL);
  int bodies = 0;
  for (char *p = out; (p = strstr(p, "\nbody\n")); p += 6) bodies++;
  assert_int_equal(bodies, 5);
  assert_non_null(strstr(out, "\nbody\nm1\n"));
  assert_non_null(strstr(out, "\nbody\nm3\n"));
  free(out);

  /* Delayed messages count: 4 parked, then one more fits, two do not. */
  send_expect(s.port, "/q?q=b&n=4&delay=60", "delayed-1|delayed-2|delayed-3|delayed-4");
  send_expect(s.port, "/q?q=b&n=2", "nil|queue full");
  ids = send_q(s.port, "/q?q=b&n=1");
  assert_null(strstr(ids, "nil"));
  free(ids);
  send_expect(s.port, "/q?q=b&n=1&delay=1", "nil|queue full");
  assert_int_equal(srv_rcli_ll(&s, "XLEN", "cr:{q:b}:s", NULL), 1);
  srv_rcli_expect(&s, "4", "ZCARD", "cr:{q:b}:d", NULL);
  /* Both queues are registered for the chores (and the queues API). */
  srv_rcli_expect(&s, "1", "SISMEMBER", "cr:queues", "a", NULL);
  srv_rcli_expect(&s, "1", "SISMEMBER", "cr:queues", "b", NULL);
  assert_int_equal(srv_stop(&s), 0);
}

/* The trim chore: with two groups, only the entries both have acknowledged go; pending
 * and undelivered entries stay; a queue without a group keeps everything. */
static void trim_acknowledged(void **state) {
  (void)state;
  srv_t s;
  start(&s, "--workers 2");
  const char *key = "cr:{q:work}:s";
  char *b = send_q(s.port, "/q?q=work&n=6");
  char *id[8];
  assert_int_equal(split_fields(b, id, 8), 6);
  free(send_q(s.port, "/q?q=keep&n=3"));
  srv_rcli_expect(&s, "OK", "XGROUP", "CREATE", key, "g1", "0", NULL);
  srv_rcli_expect(&s, "OK", "XGROUP", "CREATE", key, "g2", "0", NULL);
  free(srv_rcli(&s, "XREADGROUP", "GROUP", "g1", "c1", "COUNT", "4", "STREAMS", key, ">", NULL));
  srv_rcli_expect(&s, "2", "XACK", key, "g1", id[0], id[1], NULL);
  free(srv_rcli(&s, "XREADGROUP", "GROUP", "g2", "c1", "COUNT", "1", "STREAMS", key, ">", NULL));
  srv_rcli_expect(&s, "1", "XACK", key, "g2", id[0], NULL);
  /* g1 still needs id3 (pending) on, g2 id2 (undelivered) on: only id1 goes. */
  srv_wait_xlen(&s, key, 5);
  sleep_ms(1500); /* another round or more: still 5 */
  assert_int_equal(srv_rcli_ll(&s, "XLEN", key, NULL), 5);
  char *first = first_id(&s, key);
  assert_string_equal(first, id[1]);
  free(first);

  /* g2 reads and acknowledges everything: now g1's pending id3 is the oldest entry needed. */
  free(srv_rcli(&s, "XREADGROUP", "GROUP", "g2", "c1", "COUNT", "10", "STREAMS", key, ">", NULL));
  srv_rcli_expect(&s, "5", "XACK", key, "g2", id[1], id[2], id[3], id[4], id[5], NULL);
  srv_wait_xlen(&s, key, 4);
  first = first_id(&s, key);
  assert_string_equal(first, id[2]);
  free(first);

  /* g1 acknowledges what it read: id5 and id6 stay (never delivered to g1). */
  srv_rcli_expect(&s, "2", "XACK", key, "g1", id[2], id[3], NULL);
  srv_wait_xlen(&s, key, 2);
  first = first_id(&s, key);
  assert_string_equal(first, id[4]);
  free(first);
  free(b);

  /* No group: nothing trimmed, by then several rounds later. */
  assert_int_equal(srv_rcli_ll(&s, "XLEN", "cr:{q:keep}:s", NULL), 3);
  assert_int_equal(srv_stop(&s), 0);
}

/* ctx.once: true the first time, false after (across workers), per function; bad arguments
 * raise; the key lives under the prefix with its ttl. */
static void ctx_once(void **state) {
  (void)state;
  srv_t s;
  static const char *fn =
      "return function(event, ctx)\n"
      "  if event.query.bad then\n"
      "    local ok1, e1 = pcall(ctx.once, '', 5)\n"
      "    local ok2, e2 = pcall(ctx.once, 'k', 1.5)\n"
      "    local ok3, e3 = pcall(ctx.once, 'k')\n"
      "    return tostring(ok1 or e1:match('%(.*%)')) .. '|' .. tostring(ok2 or e2:match('%(.*%)')) .. '|' ..\n"
      "      tostring(ok3 or e3:match('%(.*%)'))\n"
      "  end\n"
      "  local r, err = ctx.once(event.query.k, 60)\n"
      "  return tostring(r) .. '|' .. tostring(err)\n"
      "end\n";
  start(&s, "--workers 2");
  srv_write(&s, "once.lua", fn);
  srv_write(&s, "other.lua", fn);
  /* The new files are loaded by the watcher: wait for them to answer. */
  long long t0 = now_ms();
  http_resp_t r;
  for (;;) {
    if (http_request(s.port, "GET", "/other?k=warm", NULL, NULL, 0, &r) != 0) fail_msg("GET /other: no response");
    int st = r.status;
    http_free(&r);
    if (st == 200) break;
    if (now_ms() - t0 > 10000) fail_msg("/other never answered 200");
    sleep_ms(50);
  }
  while (1) {
    if (http_request(s.port, "GET", "/once?k=warm0", NULL, NULL, 0, &r) != 0) fail_msg("GET /once: no response");
    int st = r.status;
    http_free(&r);
    if (st == 200) break;
    if (now_ms() - t0 > 10000) fail_msg("/once never answered 200");
    sleep_ms(50);
  }
  send_expect(s.port, "/once?k=job-1", "true|nil");
  for (int i = 0; i < 4; i++) send_expect(s.port, "/once?k=job-1", "false|nil"); /* both workers */
  send_expect(s.port, "/other?k=job-1", "true|nil");                       /* its own namespace */
  send_expect(s.port, "/other?k=job-1", "false|nil");
  send_expect(s.port, "/once?k=job-2", "true|nil");
  send_expect(s.port, "/once?bad=1",
              "(key: 1 to 1024 bytes of UTF-8)|(ttl: whole seconds, 1 to 31536000)|"
              "(ttl expected (whole seconds, 1 to 31536000))");
  srv_rcli_expect(&s, "1", "EXISTS", "cr:{once:once}:job-1", NULL);
  char *ttl = srv_rcli(&s, "TTL", "cr:{once:once}:job-1", NULL);
  int t = atoi(ttl);
  if (t < 55 || t > 60) fail_msg("TTL of the once key: %s, want about 60", ttl);
  free(ttl);
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(depth_bound),
      cmocka_unit_test(trim_acknowledged),
      cmocka_unit_test(ctx_once),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
