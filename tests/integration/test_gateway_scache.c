/* test_gateway_scache.c - README "Response cache", cache = { shared = true } and purges over real
 * HTTP: two crescent servers (2 workers each) on one Redis (the second uses the first's managed
 * one). A cached function answers with the request id of the invocation that made the answer, so a
 * hit on the other node is seen to be that very answer. Covered: a hit on every other worker and
 * node (and the entry in Redis with Redis' own expiry); DELETE /_/api/cache?function= and ?path=,
 * and ctx.cache.purge from a function, each a miss everywhere within 1 s (measured), a path purge
 * taking every query variant and no other path; ctx.cache.purge's argument and route checks;
 * principals never sharing (HS256 JWTs made here); an answer over 1 MB kept out of Redis; a new version starting empty while a node on
 * the same code shares it; Redis stopped (SIGSTOP: slow) and killed: answered by the function,
 * counted as shared errors, warned once; the shared meters in /_/api/functions and /_/metrics. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* --- helpers ------------------------------------------------------------------------------------ */

static void expect_header(const http_resp_t *r, const char *name, const char *want) {
  const char *v = http_header(r, name);
  if (!v) fail_msg("no %s header in:\n%s", name, r->head);
  if (strcmp(v, want) != 0) fail_msg("%s: '%s', want '%s' in:\n%s", name, v, want, r->head);
}

typedef struct {
  int fd;
  int worker;
} pin_t;

static void ka(int fd, const char *path, const char *headers, http_resp_t *r) {
  char head[2048];
  int n = snprintf(head, sizeof head, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", path, headers ? headers : "");
  http_send(fd, head, (size_t)n);
  if (http_read(fd, r, 0, 5000) != 0) fail_msg("GET %s on a kept connection: no response", path);
}

/* One kept connection per worker (GET /probe: its report line names the worker). */
static void pin_workers(srv_t *s, int nworkers, pin_t *pins) {
  int have[8] = {0}, done = 0;
  for (int tries = 0; tries < 48 && done < nworkers; tries++) {
    int fd = http_connect(s->port);
    assert_true(fd >= 0);
    http_resp_t r;
    ka(fd, "/probe", NULL, &r);
    assert_int_equal(r.status, 200);
    char rid[128];
    http_request_id(&r, rid, sizeof rid);
    http_free(&r);
    char *line = srv_report_of(s, rid);
    int w = (int)json_num(line, "worker");
    free(line);
    assert_true(w >= 0 && w < nworkers);
    if (!have[w]) {
      pins[w] = (pin_t){fd, w};
      have[w] = 1;
      done++;
    } else {
      http_close(fd);
    }
  }
  if (done < nworkers) fail_msg("could not reach every worker: %d of %d", done, nworkers);
}

/* GET path on a pinned connection: 200 with X-Cache xcache (NULL: none); the body copied into body (if given
 * and want is NULL) or compared with want. */
static void ka_expect(const pin_t *p, const char *path, const char *headers, const char *xcache, const char *want,
                      char *body, size_t bodylen) {
  http_resp_t r;
  ka(p->fd, path, headers, &r);
  if (r.status != 200) fail_msg("GET %s: %d %s", path, r.status, r.body);
  const char *xc = http_header(&r, "x-cache");
  if (xcache && (!xc || strcmp(xc, xcache) != 0))
    fail_msg("GET %s on worker %d: X-Cache %s, want %s; body '%s'", path, p->worker, xc ? xc : "(none)", xcache, r.body);
  else if (!xcache && xc) fail_msg("GET %s: unexpected X-Cache", path);
  if (want && strcmp(r.body, want) != 0) fail_msg("GET %s: '%s', want '%s'", path, r.body, want);
  if (body) snprintf(body, bodylen, "%s", r.body);
  http_free(&r);
}

/* Polls p's GET path until its body is not old: the ms it took (fails past limit_ms). */
static long long until_changed(const pin_t *p, const char *path, const char *headers, const char *old,
                               long long since, long long limit_ms) {
  for (;;) {
    http_resp_t r;
    ka(p->fd, path, headers, &r);
    assert_int_equal(r.status, 200);
    int same = strcmp(r.body, old) == 0;
    http_free(&r);
    long long took = now_ms() - since;
    if (!same) return took;
    if (took > limit_ms) fail_msg("GET %s still answered the purged '%s' after %lld ms", path, old, took);
    sleep_ms(20);
  }
}

typedef struct {
  long hits, misses, shits, smisses, serrors;
} meters_t;

static meters_t meters(int port, const char *fn) {
  http_resp_t r;
  http_get(port, "/_/api/functions", &r);
  assert_int_equal(r.status, 200);
  char *e = api_fn_entry(r.body, fn);
  if (!e) fail_msg("%s not in /_/api/functions", fn);
  const char *c = json_val(e, "cache");
  if (!c) fail_msg("no cache metrics in %s", e);
  meters_t m = {(long)json_num(c, "hits"), (long)json_num(c, "misses"), 0, 0, 0};
  const char *sh = json_val(c, "shared");
  if (!sh) fail_msg("no shared cache metrics in %s", c);
  m.shits = (long)json_num(sh, "hits");
  m.smisses = (long)json_num(sh, "misses");
  m.serrors = (long)json_num(sh, "errors");
  free(e);
  http_free(&r);
  return m;
}

static void expect_meters(int port, const char *fn, long hits, long misses, long shits, long smisses, long serrors) {
  meters_t m = meters(port, fn);
  if (m.hits != hits || m.misses != misses || m.shits != shits || m.smisses != smisses || m.serrors != serrors)
    fail_msg("%s on port %d: hits %ld misses %ld shared %ld/%ld/%ld, want %ld %ld %ld/%ld/%ld", fn, port, m.hits,
             m.misses, m.shits, m.smisses, m.serrors, hits, misses, shits, smisses, serrors);
}

/* Waits (at most 2 s) until Redis holds n shared entries matching pattern: a store reaches Redis
 * a moment after its answer reaches the client, so another worker asked at once could miss. */
static void wait_entries(const srv_t *s, const char *pattern, int n) {
  long long end = now_ms() + 2000;
  int have = 0;
  while (now_ms() < end) {
    char *out = srv_rcli(s, "--scan", "--pattern", pattern, NULL);
    have = 0;
    for (const char *p = out; (p = strstr(p, ":e:")); p += 3) have++;
    free(out);
    if (have >= n) return;
    sleep_ms(10);
  }
  fail_msg("%d shared entries matching %s in Redis after 2 s, want %d", have, pattern, n);
}

static const char PROBE_LUA[] = "return function() return 'probe' end\n";

/* The answer names the invocation that made it. */
static const char SH_LUA[] =
    "return { routes = { 'GET /sh', 'GET /sh2' }, cache = { ttl = 30, shared = true },\n"
    "  handler = function(event, ctx) return 'rid=' .. ctx.requestId .. ' ' .. event.path end }\n";

/* GET /purge?p=PATH: ctx.cache.purge(PATH); ?num=1 passes a number. */
static const char PURGER_LUA[] =
    "return { routes = { 'GET /purge' }, handler = function(event, ctx)\n"
    "  if event.query.num then\n"
    "    local ok, err = pcall(ctx.cache.purge, 42)\n"
    "    return { status = 400, body = tostring(err) }\n"
    "  end\n"
    "  local ok, err = ctx.cache.purge(event.query.p)\n"
    "  if ok == true then return 'purged' end\n"
    "  return { status = 409, body = 'err:' .. tostring(err) }\n"
    "end }\n";

/* Two servers on a's Redis, 2 workers each, with the same functions. */
static void two_nodes(srv_t *a, srv_t *b, const char *const *files, int nfiles, pin_t *pa, pin_t *pb) {
  srv_init(a);
  srv_init(b);
  for (int i = 0; i < nfiles; i++) {
    srv_write(a, files[2 * i], files[2 * i + 1]);
    srv_write(b, files[2 * i], files[2 * i + 1]);
  }
  srv_start(a, "--workers 2");
  char sock[400], args[480];
  srv_redis_sock(a, sock, sizeof sock);
  snprintf(args, sizeof args, "--workers 2 --redis unix://%s", sock);
  srv_start(b, args);
  pin_workers(a, 2, pa);
  pin_workers(b, 2, pb);
}

static void close_pins(pin_t *p, int n) {
  for (int i = 0; i < n; i++) http_close(p[i].fd);
}

/* --- shared across workers and nodes, and the purges ------------------------------------------------ */

static void shared_across_nodes_and_purges(void **state) {
  (void)state;
  srv_t a, b;
  pin_t pa[2], pb[2];
  const char *files[] = {"probe.lua", PROBE_LUA, "sh.lua", SH_LUA, "purger.lua", PURGER_LUA};
  two_nodes(&a, &b, files, 3, pa, pb);
  pin_t *all[4] = {&pa[0], &pa[1], &pb[0], &pb[1]};

  /* Made once, on a's worker 0; a hit on every other worker of both nodes. */
  char v1[256];
  ka_expect(&pa[0], "/sh", NULL, "miss", NULL, v1, sizeof v1);
  assert_true(strncmp(v1, "rid=", 4) == 0);
  wait_entries(&a, "cr:{rc:sh}:e:*:/sh?", 1);
  ka_expect(&pa[1], "/sh", NULL, "hit", v1, NULL, 0);
  ka_expect(&pb[0], "/sh", NULL, "hit", v1, NULL, 0);
  ka_expect(&pb[1], "/sh", NULL, "hit", v1, NULL, 0);
  /* a: the first a miss (Redis had nothing), then a hit from Redis; b: two hits from Redis. */
  expect_meters(a.port, "sh", 1, 1, 1, 1, 0);
  expect_meters(b.port, "sh", 2, 0, 2, 0, 0);
  /* In Redis under the function's hash tag and the version's code hash, expiring with the ttl. */
  char *keys = srv_rcli(&a, "--scan", "--pattern", "cr:{rc:sh}:e:*", NULL);
  if (!strstr(keys, "cr:{rc:sh}:e:") || !strstr(keys, ":/sh?")) fail_msg("no shared entry of /sh in Redis: '%s'", keys);
  if (strchr(keys, '\n')) fail_msg("more than one entry: '%s'", keys);
  long long pttl = srv_rcli_ll(&a, "PTTL", keys, NULL);
  if (pttl <= 0 || pttl > 30000) fail_msg("entry PTTL %lld, want (0, 30000]", pttl);
  free(keys);

  /* DELETE /_/api/cache?function=sh on b: the old answer is gone from every worker of both nodes
   * within 1 s (the first to miss stores a new one, which the others then share). */
  http_resp_t r;
  assert_int_equal(http_request(b.port, "DELETE", "/_/api/cache?function=sh", NULL, NULL, 0, &r), 0);
  long long t0 = now_ms();
  if (r.status != 200 || strcmp(r.body, "{\"purged\":1}") != 0) fail_msg("purge: %d %s", r.status, r.body);
  http_free(&r);
  long long worst = 0;
  for (int i = 0; i < 4; i++) {
    long long took = until_changed(all[i], "/sh", NULL, v1, t0, 1000);
    if (took > worst) worst = took;
  }
  print_message("purge by function: the last worker stopped serving the old answer %lld ms after the answer\n", worst);
  /* Past the local copies, every worker shares the one answer Redis kept last. */
  sleep_ms(600);
  char v2[256];
  ka_expect(&pa[0], "/sh", NULL, "hit", NULL, v2, sizeof v2);
  for (int i = 1; i < 4; i++) ka_expect(all[i], "/sh", NULL, "hit", v2, NULL, 0);
  /* HEAD is answered from the shared GET answer too: its length, no body. */
  assert_int_equal(http_request(b.port, "HEAD", "/sh", NULL, NULL, 0, &r), 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, 0);
  expect_header(&r, "x-cache", "hit");
  char len[16];
  snprintf(len, sizeof len, "%zu", strlen(v2));
  expect_header(&r, "content-length", len);
  http_free(&r);

  /* A path purge takes every query variant of the path, and no other path. */
  char q1[256], q2[256], other[256];
  ka_expect(&pa[0], "/sh?x=1", NULL, "miss", NULL, q1, sizeof q1);
  ka_expect(&pb[1], "/sh?x=2", NULL, "miss", NULL, q2, sizeof q2);
  ka_expect(&pa[1], "/sh2", NULL, "miss", NULL, other, sizeof other);
  wait_entries(&a, "cr:{rc:sh}:e:*:/sh[?2]*", 4); /* /sh, /sh?x=1, /sh?x=2, /sh2 */
  for (int i = 0; i < 4; i++) {
    ka_expect(all[i], "/sh?x=1", NULL, "hit", q1, NULL, 0);
    ka_expect(all[i], "/sh?x=2", NULL, "hit", q2, NULL, 0);
    ka_expect(all[i], "/sh2", NULL, "hit", other, NULL, 0);
  }
  /* ctx.cache.purge from a function on b's worker 1. */
  ka_expect(&pb[1], "/purge?p=/sh", NULL, NULL, "purged", NULL, 0);
  t0 = now_ms();
  worst = 0;
  for (int i = 0; i < 4; i++) {
    long long took = until_changed(all[i], "/sh?x=1", NULL, q1, t0, 1000);
    if (took > worst) worst = took;
    took = until_changed(all[i], "/sh?x=2", NULL, q2, t0, 1000);
    if (took > worst) worst = took;
    ka_expect(all[i], "/sh2", NULL, "hit", other, NULL, 0); /* untouched */
  }
  print_message("ctx.cache.purge: every variant gone everywhere within %lld ms\n", worst);
  /* The API's ?path= (routed by GET, no function named) on a. */
  ka_expect(&pa[0], "/sh2", NULL, "hit", other, NULL, 0);
  assert_int_equal(http_request(a.port, "DELETE", "/_/api/cache?path=/sh2", NULL, NULL, 0, &r), 0);
  t0 = now_ms();
  if (r.status != 200 || strcmp(r.body, "{\"purged\":1}") != 0) fail_msg("purge: %d %s", r.status, r.body);
  http_free(&r);
  for (int i = 0; i < 4; i++) until_changed(all[i], "/sh2", NULL, other, t0, 1000);

  /* ctx.cache.purge's checks: an argument that is not a path raises; a path no function
   * answers, and the platform's, are nil, err. */
  http_request(b.port, "GET", "/purge?num=1", NULL, NULL, 0, &r);
  assert_int_equal(r.status, 400);
  if (!strstr(r.body, "bad argument #1 to 'ctx.cache.purge' (path: a string starting with '/'"))
    fail_msg("number: %s", r.body);
  http_free(&r);
  const struct {
    const char *q, *want;
  } bad[] = {
      {"/purge?p=/nope", "err:no function answers GET /nope"},
      {"/purge?p=/_/api/functions", "err:/_/api/functions is the platform's: its answers are never cached"},
      {"/purge?p=/_", "err:/_ is the platform's: its answers are never cached"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    http_request(b.port, "GET", bad[i].q, NULL, NULL, 0, &r);
    if (r.status != 409 || strcmp(r.body, bad[i].want) != 0) fail_msg("%s: %d '%s'", bad[i].q, r.status, r.body);
    http_free(&r);
  }
  http_request(b.port, "GET", "/purge?p=nope", NULL, NULL, 0, &r);
  assert_int_equal(r.status, 500); /* raised: not a path */
  http_free(&r);
  srv_expect_errors(&b, 1); /* the raised error's log line */
  /* The API refuses the platform's paths and unknown ones. */
  const struct {
    const char *q;
    int status;
    const char *err;
  } api[] = {
      {"/_/api/cache?path=/_/api/functions", 400, "paths under /_/ are the platform's: never cached"},
      {"/_/api/cache?path=nope", 400, "path must start with '/' (at most 2048 bytes, no query)"},
      {"/_/api/cache?path=/nope", 404, "no function answers GET on that path"},
      {"/_/api/cache?function=nope&path=/sh", 404, "function not found"},
  };
  for (size_t i = 0; i < sizeof api / sizeof *api; i++) {
    http_request(a.port, "DELETE", api[i].q, NULL, NULL, 0, &r);
    char want[160];
    snprintf(want, sizeof want, "\"error\":\"%s\"", api[i].err);
    if (r.status != api[i].status || !strstr(r.body, want)) fail_msg("%s: %d %s", api[i].q, r.status, r.body);
    http_free(&r);
  }

  /* /_/metrics has the shared counters too (exact: a's, as /_/api/functions says). */
  meters_t m = meters(a.port, "sh");
  http_get(a.port, "/_/metrics", &r);
  assert_int_equal(r.status, 200);
  char line[3][160];
  snprintf(line[0], sizeof line[0], "\ncrescent_cache_shared_hits_total{function=\"sh\"} %ld\n", m.shits);
  snprintf(line[1], sizeof line[1], "\ncrescent_cache_shared_misses_total{function=\"sh\"} %ld\n", m.smisses);
  snprintf(line[2], sizeof line[2], "\ncrescent_cache_shared_errors_total{function=\"sh\"} %ld\n", m.serrors);
  for (int i = 0; i < 3; i++)
    if (!strstr(r.body, line[i])) fail_msg("no '%s' in /_/metrics", line[i] + 1);
  http_free(&r);
  assert_int_equal(m.serrors, 0);
  assert_true(m.shits > 0 && m.smisses > 0);

  close_pins(pa, 2);
  close_pins(pb, 2);
  assert_int_equal(srv_stop(&b), 0);
  assert_int_equal(srv_stop(&a), 0);
}

/* --- principals ------------------------------------------------------------------------------------ */

#define SECRET "scachetest-secret-0123456789abcdefghijklmnop"

static void b64url(const unsigned char *in, size_t n, char *out) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t o = 0, i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = abc[v >> 18 & 63], out[o++] = abc[v >> 12 & 63], out[o++] = abc[v >> 6 & 63],
    out[o++] = abc[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    out[o++] = abc[v >> 18 & 63], out[o++] = abc[v >> 12 & 63];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    out[o++] = abc[v >> 18 & 63], out[o++] = abc[v >> 12 & 63], out[o++] = abc[v >> 6 & 63];
  }
  out[o] = '\0';
}

/* "Authorization: Bearer <HS256 token of payload>\r\n" into out. */
static void bearer(char *out, size_t outlen, const char *payload) {
  static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
  char h64[100], p64[600], signing[800], s64[100];
  b64url((const unsigned char *)header, strlen(header), h64);
  b64url((const unsigned char *)payload, strlen(payload), p64);
  int in = snprintf(signing, sizeof signing, "%s.%s", h64, p64);
  unsigned char sig[EVP_MAX_MD_SIZE];
  unsigned int ml = 0;
  assert_non_null(HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)signing, (size_t)in, sig,
                       &ml));
  b64url(sig, ml, s64);
  snprintf(out, outlen, "Authorization: Bearer %s.%s\r\n", signing, s64);
}

static const char ME_LUA[] =
    "return { routes = { 'GET /me' }, cache = { ttl = 30, shared = true },\n"
    "  auth = { jwt = { secretEnv = 'CR_SCACHETEST_SECRET' } },\n"
    "  handler = function(event, ctx) return (event.auth.sub or '-') .. ' rid=' .. ctx.requestId end }\n";

/* ?n=BYTES answers that many bytes. */
static const char BIG_LUA[] =
    "return { routes = { 'GET /big' }, cache = { ttl = 30, shared = true },\n"
    "  handler = function(event, ctx) return ctx.requestId .. string.rep('b', tonumber(event.query.n)) end }\n";

static void principals_never_share(void **state) {
  (void)state;
  srv_t a, b;
  pin_t pa[2], pb[2];
  const char *files[] = {"probe.lua", PROBE_LUA, "me.lua", ME_LUA, "big.lua", BIG_LUA};
  setenv("CR_SCACHETEST_SECRET", SECRET, 1);
  two_nodes(&a, &b, files, 3, pa, pb);
  unsetenv("CR_SCACHETEST_SECRET");
  char alice[1024], bob[1024], nosub[1024], payload[256];
  long long exp = (long long)time(NULL) + 600;
  snprintf(payload, sizeof payload, "{\"sub\":\"alice\",\"exp\":%lld}", exp);
  bearer(alice, sizeof alice, payload);
  snprintf(payload, sizeof payload, "{\"sub\":\"bob\",\"exp\":%lld}", exp);
  bearer(bob, sizeof bob, payload);
  snprintf(payload, sizeof payload, "{\"exp\":%lld}", exp);
  bearer(nosub, sizeof nosub, payload);

  char va[256], vb[256];
  ka_expect(&pa[0], "/me", alice, "miss", NULL, va, sizeof va);
  assert_true(strncmp(va, "alice rid=", 10) == 0);
  wait_entries(&a, "cr:{rc:me}:e:*alice", 1);
  /* bob on the other node: his own miss, never alice's answer. */
  ka_expect(&pb[0], "/me", bob, "miss", NULL, vb, sizeof vb);
  assert_true(strncmp(vb, "bob rid=", 8) == 0);
  wait_entries(&a, "cr:{rc:me}:e:*bob", 1);
  /* Each principal's answer is shared with that principal only, on every worker and node. */
  ka_expect(&pb[1], "/me", alice, "hit", va, NULL, 0);
  ka_expect(&pa[1], "/me", bob, "hit", vb, NULL, 0);
  ka_expect(&pb[0], "/me", alice, "hit", va, NULL, 0);
  ka_expect(&pa[0], "/me", bob, "hit", vb, NULL, 0);
  /* No token: refused before the cache; a token without a sub is never cached. */
  http_resp_t r;
  ka(pb[1].fd, "/me", NULL, &r);
  assert_int_equal(r.status, 401);
  assert_null(http_header(&r, "x-cache"));
  http_free(&r);
  for (int i = 0; i < 2; i++) {
    ka(pa[i].fd, "/me", nosub, &r);
    assert_int_equal(r.status, 200);
    assert_true(strncmp(r.body, "- rid=", 6) == 0);
    assert_null(http_header(&r, "x-cache"));
    http_free(&r);
  }

  /* Over 1 MB: kept in the worker only, never in Redis, and the log says so. */
  ka(pa[0].fd, "/big?n=1100000", NULL, &r);
  assert_int_equal(r.status, 200);
  assert_true(r.body_len > 1100000);
  expect_header(&r, "x-cache", "miss");
  http_free(&r);
  ka(pa[0].fd, "/big?n=1000", NULL, &r); /* a small one is kept: proof the big one's store came before */
  expect_header(&r, "x-cache", "miss");
  http_free(&r);
  wait_entries(&a, "cr:{rc:big}:e:*", 1);
  char *keys = srv_rcli(&a, "--scan", "--pattern", "cr:{rc:big}:e:*", NULL);
  if (strstr(keys, "n=1100000")) fail_msg("the 1.1 MB answer is in Redis: %s", keys);
  free(keys);
  assert_int_equal(srv_log_count(&a, "\"level\":\"warn\"", "shared cache: an answer of big is over 1048576 bytes", NULL),
                   1);
  ka(pb[0].fd, "/big?n=1100000", NULL, &r);
  expect_header(&r, "x-cache", "miss");
  http_free(&r);
  close_pins(pa, 2);
  close_pins(pb, 2);
  assert_int_equal(srv_stop(&b), 0);
  assert_int_equal(srv_stop(&a), 0);
}

/* --- versions ---------------------------------------------------------------------------------------- */

static const char V1_LUA[] =
    "return { routes = { 'GET /ver' }, cache = { ttl = 30, shared = true },\n"
    "  handler = function(event, ctx) return 'one rid=' .. ctx.requestId end }\n";
static const char V2_LUA[] =
    "return { routes = { 'GET /ver' }, cache = { ttl = 30, shared = true },\n"
    "  handler = function(event, ctx) return 'two rid=' .. ctx.requestId end }\n";

/* Waits until GET /ver?poll=N on p answers with prefix (the reload reached that worker). */
static void wait_version(const pin_t *p, const char *prefix) {
  static int polls;
  long long end = now_ms() + 10000;
  while (now_ms() < end) {
    char path[64];
    snprintf(path, sizeof path, "/ver?poll=%d", ++polls);
    http_resp_t r;
    ka(p->fd, path, NULL, &r);
    int ok = r.status == 200 && strncmp(r.body, prefix, strlen(prefix)) == 0;
    http_free(&r);
    if (ok) return;
    sleep_ms(100);
  }
  fail_msg("no '%s' version within 10 s", prefix);
}

static void new_version_starts_empty(void **state) {
  (void)state;
  srv_t a, b;
  pin_t pa[2], pb[2];
  const char *files[] = {"probe.lua", PROBE_LUA, "ver.lua", V1_LUA};
  two_nodes(&a, &b, files, 2, pa, pb);
  char one[256], two[256];
  ka_expect(&pa[0], "/ver", NULL, "miss", NULL, one, sizeof one);
  wait_entries(&a, "cr:{rc:ver}:e:*:/ver?", 1);
  ka_expect(&pb[0], "/ver", NULL, "hit", one, NULL, 0);
  /* a gets new code: its own new version starts empty; b, still on the old code, keeps sharing the old answer. */
  srv_write(&a, "ver.lua", V2_LUA);
  wait_version(&pa[0], "two ");
  wait_version(&pa[1], "two ");
  ka_expect(&pa[0], "/ver", NULL, "miss", NULL, two, sizeof two);
  assert_true(strncmp(two, "two rid=", 8) == 0);
  wait_entries(&a, "cr:{rc:ver}:e:*:/ver?", 2); /* the old version's and the new one's */
  ka_expect(&pa[1], "/ver", NULL, "hit", two, NULL, 0);
  sleep_ms(600); /* past b's local copies */
  ka_expect(&pb[1], "/ver", NULL, "hit", one, NULL, 0);
  /* b gets the same new code: the same code hash, so it shares a's entry of it. */
  srv_write(&b, "ver.lua", V2_LUA);
  wait_version(&pb[0], "two ");
  wait_version(&pb[1], "two ");
  ka_expect(&pb[0], "/ver", NULL, "hit", two, NULL, 0);
  ka_expect(&pb[1], "/ver", NULL, "hit", two, NULL, 0);
  close_pins(pa, 2);
  close_pins(pb, 2);
  assert_int_equal(srv_stop(&b), 0);
  assert_int_equal(srv_stop(&a), 0);
}

/* --- Redis slow, then gone ----------------------------------------------------------------------------- */

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  socklen_t len = sizeof sa;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  close(fd);
  return ntohs(sa.sin_port);
}

static pid_t xredis_pid = -1;

static void kill_xredis(void) {
  if (xredis_pid > 0) {
    kill(xredis_pid, SIGCONT);
    kill(xredis_pid, SIGKILL);
    waitpid(xredis_pid, NULL, 0);
    xredis_pid = -1;
  }
}

/* A redis-server of the test's own (no persistence) on a free port; waits until it answers. */
static int xredis_start(void) {
  static int registered;
  if (!registered) atexit(kill_xredis), registered = 1;
  int port = free_port();
  char portstr[16];
  snprintf(portstr, sizeof portstr, "%d", port);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int devnull = open("/dev/null", 1);
    if (devnull >= 0) dup2(devnull, 1), dup2(devnull, 2);
    setpgid(0, 0);
    execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1", "--save", "", "--appendonly",
           "no", "--dir", "/tmp", "--daemonize", "no", (char *)NULL);
    _exit(127);
  }
  xredis_pid = pid;
  long long end = now_ms() + 5000;
  while (now_ms() < end) {
    const char *args[] = {"-p", portstr, "PING", NULL};
    int st = 0;
    char *out = redis_cli(&st, args);
    int up = st == 0 && strstr(out, "PONG");
    free(out);
    if (up) return port;
    sleep_ms(30);
  }
  fail_msg("redis-server on port %d did not answer within 5 s", port);
  return -1;
}

static void redis_slow_then_gone(void **state) {
  (void)state;
  int port = xredis_start();
  srv_t s;
  srv_init(&s);
  srv_write(&s, "probe.lua", PROBE_LUA);
  srv_write(&s, "sh.lua", SH_LUA);
  char args[128];
  snprintf(args, sizeof args, "--workers 1 --redis redis://127.0.0.1:%d", port);
  srv_start(&s, args);
  pin_t p[1];
  pin_workers(&s, 1, p);
  char v1[256];
  ka_expect(&p[0], "/sh", NULL, "miss", NULL, v1, sizeof v1);
  ka_expect(&p[0], "/sh", NULL, "hit", v1, NULL, 0);
  expect_meters(s.port, "sh", 1, 1, 0, 1, 0);

  /* Stopped (slow): past the local copy's 500 ms, a lookup waits 250 ms at most, then the
   * function answers (a miss, never an error answer); for a second after it, Redis is not asked
   * (answered at once), then asked again (one more wait). */
  kill(xredis_pid, SIGSTOP);
  sleep_ms(600);
  long long slow0 = now_ms();
  for (int i = 0; i < 3; i++) {
    char path[32];
    snprintf(path, sizeof path, "/sh?slow=%d", i);
    long long t0 = now_ms();
    char v[256];
    ka_expect(&p[0], path, NULL, "miss", NULL, v, sizeof v);
    long long took = now_ms() - t0;
    if (i == 0 && (took < 200 || took > 1000)) fail_msg("a lookup on a stopped Redis took %lld ms, want about 250", took);
    if (i > 0 && took > 150) fail_msg("request %d, within the second after a timeout, took %lld ms", i, took);
    assert_true(strncmp(v, "rid=", 4) == 0);
  }
  if (now_ms() - slow0 > 900) fail_msg("the machine is too slow for this check (%lld ms)", now_ms() - slow0);
  sleep_ms((int)(1300 - (now_ms() - slow0))); /* past the second */
  {
    long long t0 = now_ms();
    ka_expect(&p[0], "/sh?slow=3", NULL, "miss", NULL, NULL, 0);
    long long took = now_ms() - t0;
    if (took < 200 || took > 1000) fail_msg("after the second, a lookup took %lld ms, want about 250 again", took);
  }
  assert_int_equal(srv_log_wait(&s, 1, 3000, "\"level\":\"warn\"", "shared cache: Redis did not answer a lookup", NULL),
                   1);
  /* ... and its answers are still kept locally (for their 500 ms). */
  ka_expect(&p[0], "/sh?slow=3", NULL, "hit", NULL, NULL, 0);
  kill(xredis_pid, SIGCONT);

  /* Killed: answered by the function at once. */
  kill_xredis();
  sleep_ms(600);
  for (int i = 0; i < 4; i++) {
    char path[32];
    snprintf(path, sizeof path, "/sh?gone=%d", i);
    long long t0 = now_ms();
    char v[256];
    ka_expect(&p[0], path, NULL, "miss", NULL, v, sizeof v);
    if (now_ms() - t0 > 1000) fail_msg("a request with Redis gone took %lld ms", now_ms() - t0);
  }
  sleep_ms(300);
  /* One warning per 10 s: the slow lookups' only (this all took less than 10 s). */
  assert_int_equal(srv_log_count(&s, "\"level\":\"warn\"", "shared cache: ", NULL), 1);
  /* The purge API says Redis did not take it (this node's part is done). */
  http_resp_t r;
  assert_int_equal(http_request(s.port, "DELETE", "/_/api/cache?function=sh", NULL, NULL, 0, &r), 0);
  assert_int_equal(r.status, 503);
  if (!strstr(r.body, "\"error\":\"purged on this node, not in Redis (shared cache): redis unavailable\"") ||
      !strstr(r.body, "\"purged\":1"))
    fail_msg("purge with Redis gone: %s", r.body);
  http_free(&r);
  meters_t m = meters(s.port, "sh");
  /* 1 + 4 + 4 misses; the first found nothing in Redis, the 8 others failed. */
  assert_int_equal(m.misses, 9);
  assert_int_equal(m.smisses, 1);
  assert_int_equal(m.serrors, 8);
  assert_int_equal(m.shits, 0);
  assert_int_equal(m.hits, 2);
  close_pins(p, 1);
  assert_int_equal(srv_stop(&s), 0);
}

/* A reload while a request waits on its shared lookup (Redis paused): version 1 had no auth,
 * version 2 needs an API key. The request must not reach version 2's handler unchecked. */
static void reload_mid_lookup(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "gate.lua", "return { cache = { ttl = 30, shared = true }, handler = function(e) return 'open' end }\n");
  srv_start(&s, "--workers 1");
  http_expect(s.port, "/gate?warm=1", 200, "open");
  free(srv_rcli(&s, "CLIENT", "PAUSE", "1500", "ALL", NULL));
  int fd = http_connect(s.port);
  http_sends(fd, "GET /gate HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  sleep_ms(100); /* it waits on Redis now */
  srv_write(&s, "gate.lua",
            "return { auth = 'apikey', cache = { ttl = 30, shared = true }, handler = function() return 'secret' end }\n");
  assert_int_equal(srv_log_wait(&s, 1, 3000, "loaded gate.lua (version 2", NULL), 1);
  http_resp_t r;
  assert_int_equal(http_read(fd, &r, 0, 5000), 0);
  if (r.status != 401 || strstr(r.body, "secret")) fail_msg("after the reload: %d %s, want 401", r.status, r.body);
  assert_non_null(strstr(r.body, "\"error\":\"missing credentials\""));
  http_free(&r);
  http_close(fd);
  srv_stop(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(shared_across_nodes_and_purges),
      cmocka_unit_test(principals_never_share),
      cmocka_unit_test(new_version_starts_empty),
      cmocka_unit_test(redis_slow_then_gone),
      cmocka_unit_test(reload_mid_lookup),
  };
  if (getenv("CR_TEST_ONLY")) cmocka_set_test_filter(getenv("CR_TEST_ONLY")); /* one test while iterating */
  return cmocka_run_group_tests(tests, NULL, NULL);
}
