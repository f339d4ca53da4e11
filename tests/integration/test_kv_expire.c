/* test_kv_expire.c - KV TTL expiries as `expire` change records (stdlib/kvexpire.h), on the
 * managed Redis: a kv trigger gets one expire record per expired key, with a new version and the
 * expiry as its time, within the sweep bound; a re-put with a longer ttl is not expired early; a
 * delete, or a put without a ttl, before the expiry means no expire record; a write to a key that
 * expired but was not swept yet writes that record first; and keys that expire while the server
 * (and its Redis) is down are each delivered exactly once when it is back, in expiry order. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* The writer: GET /w?ns=NS&op=put|put2|del|incr&k=KEY[,KEY...]&ttl=S&n=N (put2: n keys KEY0000...
 * with one ttl, in one invocation). Answers the last result. */
static const char writer[] =
    "local kv = require 'crescent.kv'\n"
    "return function(event)\n"
    "  local q = event.query\n"
    "  local ns = kv.namespace(q.ns)\n"
    "  local ttl = q.ttl and tonumber(q.ttl) or nil\n"
    "  local out\n"
    "  if q.op == 'put2' then\n"
    "    for i = 0, tonumber(q.n) - 1 do out = assert(ns.put(string.format('%s%04d', q.k, i), i, { ttl = ttl })) end\n"
    "    return tostring(out)\n"
    "  end\n"
    "  for k in q.k:gmatch('[^,]+') do\n"
    "    if q.op == 'put' then out = assert(ns.put(k, 'v:' .. k, { ttl = ttl }))\n"
    "    elseif q.op == 'del' then out = ns.delete(k)\n"
    "    elseif q.op == 'incr' then out = assert(ns.incr(k, 1)) end\n"
    "  end\n"
    "  return tostring(out)\n"
    "end\n";


static void get_expect(srv_t *s, const char *want, const char *fmt, ...) {
  char path[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(path, sizeof path, fmt, ap);
  va_end(ap);
  http_resp_t r;
  http_get(s->port, path, &r);
  if (r.status != 200 || (want && strcmp(r.body, want) != 0))
    fail_msg("%s: %d '%s', want 200 '%s'", path, r.status, r.body, want ? want : "(any)");
  http_free(&r);
}

static char *rcli(srv_t *s, const char *a, const char *b, const char *c) {
  char sock[400];
  srv_redis_sock(s, sock, sizeof sock);
  return redis_cli_sock(sock, a, b, c, NULL);
}

static char *chomp(char *s) {
  size_t n = strlen(s);
  while (n && (s[n - 1] == '\n' || s[n - 1] == '\r')) s[--n] = '\0';
  return s;
}

static void expect_cli(srv_t *s, const char *want, const char *a, const char *b, const char *c) {
  char *out = chomp(rcli(s, a, b, c));
  if (strcmp(out, want) != 0) fail_msg("%s %s %s: '%s', want '%s'", a, b, c ? c : "", out, want);
  free(out);
}


/* --- a stream as redis-cli prints it ------------------------------------------------------------ */

typedef struct {
  const char *op, *key, *version, *time;
} rec_t;

static int is_stream_id(const char *p) {
  if (!(*p >= '0' && *p <= '9')) return 0;
  while (*p >= '0' && *p <= '9') p++;
  if (*p++ != '-') return 0;
  if (!(*p >= '0' && *p <= '9')) return 0;
  while (*p >= '0' && *p <= '9') p++;
  return *p == '\0';
}

/* XRANGE key - + into recs (malloc'd, pointing into *buf; the caller frees both): op, key,
 * version and time of each entry; returns the count. */
static int changes(srv_t *s, const char *key, rec_t **recs, char **buf) {
  char sock[400];
  srv_redis_sock(s, sock, sizeof sock);
  char *out = redis_cli_sock(sock, "XRANGE", key, "-", "+", NULL);
  *buf = out;
  int cap = 64, n = -1, field = 0;
  rec_t *r = calloc((size_t)cap, sizeof *r);
  const char *name = NULL;
  char *line = out;
  while (line && *line) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = '\0';
    if (field % 2 == 0 && is_stream_id(line)) {
      if (++n >= cap) {
        r = realloc(r, sizeof *r * (size_t)(cap *= 2));
      }
      memset(&r[n], 0, sizeof r[n]);
      field = 0;
    } else {
      if (n < 0) fail_msg("%s: unexpected output '%s'", key, line);
      if (field % 2 == 0) name = line;
      else if (!strcmp(name, "op")) r[n].op = line;
      else if (!strcmp(name, "key")) r[n].key = line;
      else if (!strcmp(name, "version")) r[n].version = line;
      else if (!strcmp(name, "time")) r[n].time = line;
      field++;
    }
    line = nl ? nl + 1 : NULL;
  }
  *recs = r;
  return n + 1;
}

typedef struct {
  const char *op, *key;
  int version;
} want_t;

/* The changes stream of namespace ns holds exactly want (op, key, version), in order. */
static void expect_changes(srv_t *s, const char *ns, const want_t *want, int nwant) {
  char key[128];
  snprintf(key, sizeof key, "cr:{kv:%s}:changes", ns);
  rec_t *r;
  char *buf;
  int n = changes(s, key, &r, &buf);
  int bad = n != nwant;
  for (int i = 0; i < n && !bad; i++) {
    char v[32];
    snprintf(v, sizeof v, "%d", want[i].version);
    bad = !r[i].op || !r[i].key || !r[i].version || strcmp(r[i].op, want[i].op) || strcmp(r[i].key, want[i].key) ||
          strcmp(r[i].version, v) || !r[i].time;
  }
  if (bad) {
    char got[4096] = "";
    for (int i = 0; i < n; i++) {
      size_t l = strlen(got);
      snprintf(got + l, sizeof got - l, "  %s %s %s\n", r[i].op, r[i].key, r[i].version);
    }
    fail_msg("%s: got %d records, want %d:\n%s", key, n, nwant, got);
  }
  free(r);
  free(buf);
}

/* The time field of the record of (op, key) in ns's stream, or -1. */
static long long record_time(srv_t *s, const char *ns, const char *op, const char *k) {
  char key[128];
  snprintf(key, sizeof key, "cr:{kv:%s}:changes", ns);
  rec_t *r;
  char *buf;
  int n = changes(s, key, &r, &buf);
  long long t = -1;
  for (int i = 0; i < n; i++)
    if (r[i].op && r[i].key && r[i].time && !strcmp(r[i].op, op) && !strcmp(r[i].key, k)) t = atoll(r[i].time);
  free(r);
  free(buf);
  return t;
}

/* --- expire records to a kv trigger ------------------------------------------------------------- */

static void expire_records(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "w.lua", writer);
  srv_write(&s, "watch.lua",
            "return { triggers = { { kv = 'user:', namespace = 'sess' } },\n"
            "  handler = function(event, ctx)\n"
            "    for _, r in ipairs(event.records) do\n"
            "      ctx.log.info('rec ' .. r.op .. ' ' .. r.key .. ' ' .. r.version .. ' ' .. type(r.value) ..\n"
            "        ' ' .. string.format('%.0f', r.time))\n"
            "    end\n"
            "  end }\n");
  srv_start(&s, "--workers 2");
  srv_wait_group(&s, "cr:{kv:sess}:changes", "watch");

  long long t0 = wall_ms();
  get_expect(&s, "1", "/w?ns=sess&op=put&k=user:a&ttl=1");    /* expires at t0 + 1 s */
  get_expect(&s, "2", "/w?ns=sess&op=put&k=user:b&ttl=1");    /* then a longer ttl: */
  get_expect(&s, "3", "/w?ns=sess&op=put&k=user:b&ttl=3");    /*   expires at t0 + 3 s */
  get_expect(&s, "4", "/w?ns=sess&op=put&k=user:c&ttl=1");    /* deleted first: */
  get_expect(&s, "true", "/w?ns=sess&op=del&k=user:c");       /*   no expire record */
  get_expect(&s, "6", "/w?ns=sess&op=put&k=user:d&ttl=1");    /* then a put without ttl: */
  get_expect(&s, "7", "/w?ns=sess&op=put&k=user:d");          /*   permanent, no expire */
  get_expect(&s, "8", "/w?ns=sess&op=put&k=other:e&ttl=2");   /* outside the prefix */
  long long t1 = wall_ms();
  expect_cli(&s, "3", "ZCARD", "cr:{kv:sess}:exp", NULL); /* user:a, user:b, other:e */

  /* user:a: one expire record, a new version, its expiry as the time, within the bound. */
  int got = srv_log_wait(&s, 1, 5000, "\"msg\":\"rec expire user:a 9 nil ", NULL);
  long long seen = wall_ms();
  if (got != 1) fail_msg("no expire record for user:a; log:\n%s", srv_log(&s));
  /* The sweep period (250 ms) plus the trigger's read: well under a second after the expiry. */
  if (seen > t1 + 1000 + 1000) fail_msg("user:a's expire record came %lld ms after its expiry", seen - t1 - 1000);
  long long at = record_time(&s, "sess", "expire", "user:a");
  if (at < t0 + 1000 || at > t1 + 1000) fail_msg("expire time %lld, want within [%lld, %lld]", at, t0 + 1000, t1 + 1000);
  char *line = srv_log_line(&s, "\"msg\":\"rec expire user:a 9 nil ", NULL);
  char want[64];
  snprintf(want, sizeof want, " nil %lld\"", at);
  if (!strstr(line, want)) fail_msg("the event's time is not the record's (%lld): %s", at, line);
  free(line);
  /* Not yet user:b (its re-put moved its expiry to t0 + 3 s). */
  assert_int_equal(srv_log_count(&s, "\"msg\":\"rec expire user:b", NULL), 0);
  expect_cli(&s, "0", "EXISTS", "cr:{kv:sess}:v:user:a", NULL);
  expect_cli(&s, "", "ZSCORE", "cr:{kv:sess}:i", "user:a"); /* the index forgot it */

  got = srv_log_wait(&s, 1, 6000, "\"msg\":\"rec expire user:b 11 nil ", NULL);
  if (got != 1) fail_msg("no expire record for user:b; log:\n%s", srv_log(&s));
  if (wall_ms() < t0 + 3000) fail_msg("user:b expired early: %lld ms after its put", wall_ms() - t0);
  at = record_time(&s, "sess", "expire", "user:b");
  if (at < t0 + 3000 || at > t1 + 3000) fail_msg("user:b expire time %lld", at);
  sleep_ms(400);
  /* Exactly the records written, in order: other:e's expire is there (the filter left it out). */
  static const want_t all[] = {{"put", "user:a", 1},   {"put", "user:b", 2},    {"put", "user:b", 3},
                               {"put", "user:c", 4},   {"delete", "user:c", 5}, {"put", "user:d", 6},
                               {"put", "user:d", 7},   {"put", "other:e", 8},   {"expire", "user:a", 9},
                               {"expire", "other:e", 10}, {"expire", "user:b", 11}};
  expect_changes(&s, "sess", all, 11);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"rec expire ", NULL), 2);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"rec ", NULL), 9); /* every user: record, once */
  expect_cli(&s, "0", "ZCARD", "cr:{kv:sess}:exp", NULL);
  expect_cli(&s, "-1", "PTTL", "cr:{kv:sess}:v:user:d", NULL);
  expect_cli(&s, "0", "HEXISTS", "cr:{kv:sess}:v:user:d", "exp");
  expect_cli(&s, "sess", "SMEMBERS", "cr:kvexp", NULL);
  assert_int_equal(srv_stop(&s), 0);
}

/* A write to a key whose expiry is due but not swept yet (here: the namespace taken out of the
 * sweeper's set) writes that key's expire record first, in its own script. */
static void write_settles_a_due_expiry(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "w.lua", writer);
  srv_start(&s, "--workers 1");
  long long t0 = wall_ms();
  get_expect(&s, "3", "/w?ns=owed&op=put&k=k1,k2,k3&ttl=0.3");
  expect_cli(&s, "1", "SREM", "cr:kvexp", "owed");
  sleep_ms(500);
  expect_cli(&s, "3", "ZCARD", "cr:{kv:owed}:exp", NULL); /* nobody swept */
  get_expect(&s, "5", "/w?ns=owed&op=put&k=k1");            /* expire k1 4, put k1 5 */
  get_expect(&s, "false", "/w?ns=owed&op=del&k=k2");        /* absent: expire k2 6, no delete */
  get_expect(&s, "1", "/w?ns=owed&op=incr&k=k3");           /* expire k3 7, incr k3 8 */
  static const want_t all[] = {{"put", "k1", 1},    {"put", "k2", 2},    {"put", "k3", 3},
                               {"expire", "k1", 4}, {"put", "k1", 5},    {"expire", "k2", 6},
                               {"expire", "k3", 7}, {"incr", "k3", 8}};
  expect_changes(&s, "owed", all, 8);
  long long at = record_time(&s, "owed", "expire", "k2");
  if (at < t0 + 300 || at > t0 + 300 + 1000) fail_msg("k2's expire time %lld, put at %lld", at, t0);
  expect_cli(&s, "0", "ZCARD", "cr:{kv:owed}:exp", NULL);
  /* Back in the set (as a put with a ttl would put it): nothing more to write. */
  expect_cli(&s, "1", "SADD", "cr:kvexp", "owed");
  sleep_ms(400);
  expect_changes(&s, "owed", all, 8);
  assert_int_equal(srv_stop(&s), 0);
}

/* The sweeper's script mends an expiry set out of step with its values (written here by hand, as
 * only something other than crescent.kv could): an entry due for a value without a ttl goes, one
 * for a value that expires later gets its real time back, and neither writes a record. */
static void sweeper_mends_stale_entries(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "w.lua", writer);
  srv_start(&s, "--workers 1");
  get_expect(&s, "1", "/w?ns=mend&op=put&k=live");
  get_expect(&s, "2", "/w?ns=mend&op=put&k=later&ttl=30");
  char *exp = chomp(rcli(&s, "HGET", "cr:{kv:mend}:v:later", "exp"));
  long long e = atoll(exp);
  if (e < wall_ms() + 25000 || e > wall_ms() + 30000) fail_msg("exp field %s", exp);
  expect_cli(&s, exp, "ZSCORE", "cr:{kv:mend}:exp", "later");
  char sock[400];
  srv_redis_sock(&s, sock, sizeof sock);
  free(redis_cli_sock(sock, "ZADD", "cr:{kv:mend}:exp", "1", "live", "2", "later", NULL));
  sleep_ms(600);
  expect_cli(&s, "", "ZSCORE", "cr:{kv:mend}:exp", "live");
  expect_cli(&s, exp, "ZSCORE", "cr:{kv:mend}:exp", "later");
  static const want_t all[] = {{"put", "live", 1}, {"put", "later", 2}};
  expect_changes(&s, "mend", all, 2);
  free(exp);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- expiries while the server is down ---------------------------------------------------------- */

#define NDOWN 1200

static void expiries_while_down(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "w.lua", writer);
  srv_write(&s, "seen.lua",
            "return { triggers = { { kv = '', namespace = 'down', batch = 100 } },\n"
            "  handler = function(event, ctx)\n"
            "    for _, r in ipairs(event.records) do\n"
            "      if r.op == 'expire' then ctx.log.info('exp ' .. r.key .. ' ' .. r.version) end\n"
            "    end\n"
            "  end }\n");
  srv_start(&s, "--workers 2");
  srv_wait_group(&s, "cr:{kv:down}:changes", "seen");
  long long t0 = wall_ms();
  char want[16];
  snprintf(want, sizeof want, "%d", NDOWN);
  get_expect(&s, want, "/w?ns=down&op=put2&k=k&n=%d&ttl=3", NDOWN);
  expect_cli(&s, want, "ZCARD", "cr:{kv:down}:exp", NULL);

  /* Stop (the managed redis-server too: its AOF keeps the expiry set). */
  srv_signal(&s, SIGTERM);
  assert_int_equal(srv_wait_exit(&s, 20000), 0);
  if (wall_ms() >= t0 + 3000) fail_msg("stopping took too long: the keys expired before it was down");
  assert_int_equal(srv_log_count(&s, "\"msg\":\"exp ", NULL), 0);
  long long left = t0 + 3000 + 300 - wall_ms();
  if (left > 0) sleep_ms((int)left);

  /* Start again on the same folder (and so the same data): every expiry, once. */
  assert_int_equal(truncate(s.logpath, 0), 0);
  s.expected_errors = 0;
  srv_start(&s, "--workers 2");
  int got = srv_log_wait(&s, NDOWN, 20000, "\"msg\":\"exp ", NULL);
  if (got < NDOWN) fail_msg("%d expire records delivered, want %d", got, NDOWN);
  sleep_ms(500);
  char *log = srv_log(&s);
  static int count[NDOWN], byver[NDOWN];
  memset(count, 0, sizeof count);
  memset(byver, 0, sizeof byver);
  int lines = 0;
  for (const char *p = log; (p = strstr(p, "\"msg\":\"exp k")); p++) {
    int k = -1, v = -1;
    if (sscanf(p, "\"msg\":\"exp k%d %d\"", &k, &v) != 2 || k < 0 || k >= NDOWN) fail_msg("bad line at %.60s", p);
    count[k]++;
    /* The versions: the puts took 1..NDOWN, the expiries NDOWN+1..2*NDOWN, once each. */
    if (v <= NDOWN || v > 2 * NDOWN) fail_msg("version %d for k%04d", v, k);
    byver[v - NDOWN - 1]++;
    lines++;
  }
  free(log);
  if (lines != NDOWN) fail_msg("%d expire records delivered, want exactly %d", lines, NDOWN);
  for (int i = 0; i < NDOWN; i++) {
    if (count[i] != 1) fail_msg("k%04d: %d expire records, want 1", i, count[i]);
    if (byver[i] != 1) fail_msg("version %d: %d records, want 1", i + NDOWN + 1, byver[i]);
  }
  /* In the stream: NDOWN puts, then NDOWN expires in expiry order (times never go back). */
  rec_t *r;
  char *buf;
  int n = changes(&s, "cr:{kv:down}:changes", &r, &buf);
  assert_int_equal(n, 2 * NDOWN);
  long long last = 0;
  for (int i = NDOWN; i < n; i++) {
    if (!r[i].op || strcmp(r[i].op, "expire") || !r[i].time) fail_msg("record %d is not an expire", i + 1);
    long long t = atoll(r[i].time);
    if (t < last || t < t0 + 3000) fail_msg("record %d: time %lld after %lld (put at %lld)", i + 1, t, last, t0);
    last = t;
  }
  free(r);
  free(buf);
  expect_cli(&s, "0", "ZCARD", "cr:{kv:down}:exp", NULL);
  char *p = rcli(&s, "XPENDING", "cr:{kv:down}:changes", "seen");
  if (strncmp(p, "0\n", 2) != 0) fail_msg("pending: %s", p);
  free(p);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- several sweepers ---------------------------------------------------------------------------- */

#define NMULTI 1500

/* Two servers on one Redis (the second on the first's managed one, as another node would be):
 * both sweep, and every expiry is still recorded exactly once. */
static void two_sweepers_write_each_once(void **state) {
  (void)state;
  srv_t a, b;
  srv_init(&a);
  srv_write(&a, "w.lua", writer);
  srv_start(&a, "--workers 2");
  char sock[400], args[600];
  srv_redis_sock(&a, sock, sizeof sock);
  srv_init(&b);
  snprintf(args, sizeof args, "--workers 1 --redis unix://%s", sock);
  srv_start(&b, args);
  char want[16];
  snprintf(want, sizeof want, "%d", NMULTI);
  long long t0 = wall_ms();
  get_expect(&a, want, "/w?ns=multi&op=put2&k=m&n=%d&ttl=1", NMULTI);
  /* Due together: more than one script's count, so both sweepers chain rounds over the same set. */
  long long until = t0 + 10000;
  for (;;) {
    char *z = chomp(rcli(&a, "ZCARD", "cr:{kv:multi}:exp", NULL));
    int left = atoi(z);
    free(z);
    if (left == 0) break;
    if (wall_ms() > until) fail_msg("%d expiries not swept 10 s after the puts", left);
    sleep_ms(50);
  }
  rec_t *r;
  char *buf;
  int n = changes(&a, "cr:{kv:multi}:changes", &r, &buf);
  assert_int_equal(n, 2 * NMULTI);
  static int count[NMULTI];
  memset(count, 0, sizeof count);
  for (int i = NMULTI; i < n; i++) {
    int k = -1;
    char v[16];
    snprintf(v, sizeof v, "%d", i + 1);
    if (!r[i].op || strcmp(r[i].op, "expire") || !r[i].key || sscanf(r[i].key, "m%d", &k) != 1 || k < 0 ||
        k >= NMULTI || !r[i].version || strcmp(r[i].version, v))
      fail_msg("record %d: %s %s %s", i + 1, r[i].op, r[i].key, r[i].version);
    count[k]++;
  }
  for (int i = 0; i < NMULTI; i++)
    if (count[i] != 1) fail_msg("m%04d: %d expire records, want 1", i, count[i]);
  free(r);
  free(buf);
  assert_int_equal(srv_stop(&b), 0);
  assert_int_equal(srv_stop(&a), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(expire_records),
      cmocka_unit_test(write_settles_a_due_expiry),
      cmocka_unit_test(sweeper_mends_stale_entries),
      cmocka_unit_test(expiries_while_down),
      cmocka_unit_test(two_sweepers_write_each_once),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
