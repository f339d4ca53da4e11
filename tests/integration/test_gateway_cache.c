/* test_gateway_cache.c - README "Response cache" over real HTTP: a function with
 * cache = { ... } counts its invocations in a module-level counter (in the body), so a hit is
 * seen to be the stored answer and never an invocation (exact counts of report lines and of
 * metrics.cache); X-Cache miss / hit / stale and Age; ttl expiry; staleWhileRevalidate (one
 * request refreshes while the others get the stale answer: the refresh waits on an upstream this
 * test holds); the key (the whole query by default, only the varied query parameters and headers
 * with vary); HEAD answered from a GET's entry; what is never kept (POST, non-200, Cache-Control
 * no-store / private / no-cache, Set-Cookie) and max-age; a new version starting empty;
 * DELETE /_/api/cache across 2 workers (connections pinned by the report line's worker); per-path
 * purges (ctx.cache.purge from another function, ?path=) on both workers at once; and
 * per-principal entries behind JWT auth (HS256 tokens made here with OpenSSL); CORS headers made
 * afresh on hits; --cache-size's eighth. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* --- helpers ------------------------------------------------------------------------------------ */

static void req(int port, const char *method, const char *path, const char *headers, http_resp_t *r) {
  if (http_request(port, method, path, headers, NULL, 0, r) != 0) fail_msg("%s %s: no response", method, path);
}

static void expect_header(const http_resp_t *r, const char *name, const char *want) {
  const char *v = http_header(r, name);
  if (!v) fail_msg("no %s header in:\n%s", name, r->head);
  if (strcmp(v, want) != 0) fail_msg("%s: '%s', want '%s' in:\n%s", name, v, want, r->head);
}

static void expect_no_header(const http_resp_t *r, const char *name) {
  if (http_header(r, name)) fail_msg("unexpected %s header in:\n%s", name, r->head);
}

static void expect_status_body(const http_resp_t *r, int status, const char *body) {
  if (r->status != status || strcmp(r->body, body) != 0)
    fail_msg("got %d '%s', want %d '%s'\n%s", r->status, r->body, status, body, r->head);
}

/* A request that must answer status with body and X-Cache xcache (NULL: no X-Cache at all). */
static void expect(int port, const char *method, const char *path, const char *headers, int status,
                   const char *body, const char *xcache) {
  http_resp_t r;
  req(port, method, path, headers, &r);
  expect_status_body(&r, status, body);
  if (xcache) expect_header(&r, "x-cache", xcache);
  else expect_no_header(&r, "x-cache");
  if (xcache && strcmp(xcache, "miss") != 0) expect_header(&r, "age", "0");
  else expect_no_header(&r, "age");
  http_free(&r);
}

/* Report lines of function fn so far, once a report of a later request to fn has come in (so the
 * earlier requests' lines are all there): GET /<fn>?sync=<n> is one more invocation, not counted. */
static int fn_reports_synced(srv_t *s, const char *fn, const char *path) {
  static int seq;
  char p[256], f[128];
  snprintf(p, sizeof p, "%s?sync=%d", path, ++seq);
  http_resp_t r;
  req(s->port, "GET", p, NULL, &r);
  assert_int_equal(r.status, 200);
  char rid[160];
  http_request_id(&r, rid, sizeof rid);
  http_free(&r);
  free(srv_report_of(s, rid));
  snprintf(f, sizeof f, "\"function\":\"%s\"", fn);
  return srv_log_count(s, "\"msg\":\"report\"", f, NULL) - 1;
}

/* metrics.cache of fn in /_/api/functions. */
static void cache_metrics(int port, const char *fn, long *hits, long *misses) {
  http_resp_t r;
  http_get(port, "/_/api/functions", &r);
  assert_int_equal(r.status, 200);
  char *e = api_fn_entry(r.body, fn);
  if (!e) fail_msg("%s not in /_/api/functions", fn);
  const char *c = json_val(e, "cache");
  if (!c) fail_msg("no cache metrics in %s", e);
  *hits = (long)json_num(c, "hits");
  *misses = (long)json_num(c, "misses");
  free(e);
  http_free(&r);
}

/* Counts its invocations; the query chooses the answer's status and Cache-Control / Set-Cookie. */
static const char CNT_LUA[] =
    "local n = 0\n"
    "return { routes = { 'GET,HEAD,POST /cnt' }, cache = { ttl = 30 },\n"
    "  handler = function(event)\n"
    "    n = n + 1\n"
    "    local q = event.query\n"
    "    local h = { ['x-n'] = tostring(n) }\n"
    "    if q.cc then h['cache-control'] = q.cc end\n"
    "    if q.cookie then h['set-cookie'] = 'a=1' end\n"
    "    return { status = tonumber(q.status or '200'), headers = h, body = 'n=' .. n }\n"
    "  end }\n";

static const char SHORT_LUA[] =
    "local n = 0\n"
    "return { routes = { 'GET /short' }, cache = { ttl = 1 },\n"
    "  handler = function() n = n + 1; return 'n=' .. n end }\n";

static const char VARY_LUA[] =
    "local n = 0\n"
    "return { routes = { 'GET /v' }, cache = { ttl = 30, vary = { 'query.page', 'header.accept-language' } },\n"
    "  handler = function() n = n + 1; return 'n=' .. n end }\n";

/* --- what is kept, and how it is answered -------------------------------------------------------- */

static void hits_misses_and_what_is_kept(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "cnt.lua", CNT_LUA);
  srv_write(&s, "short.lua", SHORT_LUA);
  srv_write(&s, "v.lua", VARY_LUA);
  srv_start(&s, "--workers 1");
  int p = s.port;
  long hits = 0, misses = 0, invoked = 0;

  /* A miss, then hits of the same answer (its headers kept), with Age. */
  long long t0 = wall_ms();
  expect(p, "GET", "/cnt", NULL, 200, "n=1", "miss"), misses++, invoked++;
  long long t1 = wall_ms();
  http_resp_t r;
  req(p, "GET", "/cnt", NULL, &r), hits++;
  expect_status_body(&r, 200, "n=1");
  expect_header(&r, "x-cache", "hit");
  expect_header(&r, "x-n", "1");
  expect_header(&r, "age", "0");
  expect_header(&r, "content-type", "text/plain; charset=utf-8");
  http_free(&r);

  /* The whole query is the key by default. */
  expect(p, "GET", "/cnt?a=1", NULL, 200, "n=2", "miss"), misses++, invoked++;
  expect(p, "GET", "/cnt?a=1", NULL, 200, "n=2", "hit"), hits++;
  expect(p, "GET", "/cnt?a=2", NULL, 200, "n=3", "miss"), misses++, invoked++;
  expect(p, "GET", "/cnt?a=1&b=1", NULL, 200, "n=4", "miss"), misses++, invoked++;
  expect(p, "GET", "/cnt?b=1&a=1", NULL, 200, "n=5", "miss"), misses++, invoked++;
  expect(p, "GET", "/cnt?a=1&b=1", NULL, 200, "n=4", "hit"), hits++;

  /* HEAD from the GET's entry: its Content-Length, no body. */
  req(p, "HEAD", "/cnt", NULL, &r), hits++;
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, 0);
  expect_header(&r, "x-cache", "hit");
  expect_header(&r, "content-length", "3");
  expect_header(&r, "x-n", "1");
  http_free(&r);

  /* POST is never cached (and has no X-Cache). */
  expect(p, "POST", "/cnt", NULL, 200, "n=6", NULL), invoked++;
  expect(p, "POST", "/cnt", NULL, 200, "n=7", NULL), invoked++;
  expect(p, "GET", "/cnt", NULL, 200, "n=1", "hit"), hits++;

  /* Not kept: a non-200, no-store, private, no-cache, Set-Cookie, max-age=0. */
  const char *kept_out[] = {"/cnt?status=404", "/cnt?status=201", "/cnt?cc=no-store", "/cnt?cc=private",
                            "/cnt?cc=public,%20no-cache", "/cnt?cookie=1", "/cnt?cc=max-age%3D0"};
  char body[32];
  for (size_t i = 0; i < sizeof kept_out / sizeof *kept_out; i++) {
    int status = strstr(kept_out[i], "404") ? 404 : strstr(kept_out[i], "201") ? 201 : 200;
    for (int k = 0; k < 2; k++) {
      snprintf(body, sizeof body, "n=%ld", invoked + 1);
      expect(p, "GET", kept_out[i], NULL, status, body, "miss"), misses++, invoked++;
    }
  }

  /* max-age shorter than ttl sets the time; short: ttl = 1. */
  snprintf(body, sizeof body, "n=%ld", invoked + 1);
  expect(p, "GET", "/cnt?cc=max-age%3D1", NULL, 200, body, "miss"), misses++, invoked++;
  expect(p, "GET", "/cnt?cc=max-age%3D1", NULL, 200, body, "hit"), hits++;
  expect(p, "GET", "/short", NULL, 200, "n=1", "miss"), misses++;
  expect(p, "GET", "/short", NULL, 200, "n=1", "hit"), hits++;
  sleep_ms(1100);
  snprintf(body, sizeof body, "n=%ld", invoked + 1);
  expect(p, "GET", "/cnt?cc=max-age%3D1", NULL, 200, body, "miss"), misses++, invoked++;
  expect(p, "GET", "/short", NULL, 200, "n=2", "miss"), misses++;
  expect(p, "GET", "/short", NULL, 200, "n=2", "hit"), hits++;

  /* The first entry, still fresh (ttl 30): Age in whole seconds since it was stored. */
  long long h0 = wall_ms();
  req(p, "GET", "/cnt", NULL, &r), hits++;
  long long h1 = wall_ms();
  expect_status_body(&r, 200, "n=1");
  expect_header(&r, "x-cache", "hit");
  const char *age = http_header(&r, "age");
  assert_non_null(age);
  long a = strtol(age, NULL, 10);
  if (a < (h0 - t1) / 1000 || a > (h1 - t0) / 1000)
    fail_msg("Age %ld, want between %lld and %lld", a, (h0 - t1) / 1000, (h1 - t0) / 1000);
  assert_true(a >= 1); /* stored more than 1.1 s ago */
  http_free(&r);

  /* Hits reached no instance: one report line per invocation, none for the hits; the metrics
   * count exactly (POST is neither). */
  long mh, mm;
  cache_metrics(p, "cnt", &mh, &mm);
  long sh, sm;
  cache_metrics(p, "short", &sh, &sm);
  assert_int_equal(mh + sh, hits);
  assert_int_equal(mm + sm, misses);
  assert_int_equal(sh, 2);
  assert_int_equal(sm, 2);
  assert_int_equal(fn_reports_synced(&s, "cnt", "/cnt"), invoked);
  assert_int_equal(fn_reports_synced(&s, "short", "/short"), 2);
  /* The sync requests were misses too (new queries). */
  cache_metrics(p, "cnt", &mh, &mm);
  assert_int_equal(mm + sm, misses + 1);

  /* vary: only the listed query parameters (others ignored) and headers. */
  expect(p, "GET", "/v?page=1", NULL, 200, "n=1", "miss");
  expect(p, "GET", "/v?page=1&x=9", NULL, 200, "n=1", "hit");
  expect(p, "GET", "/v?x=8&page=1", NULL, 200, "n=1", "hit");
  expect(p, "GET", "/v?page=2", NULL, 200, "n=2", "miss");
  expect(p, "GET", "/v?page=1", "Accept-Language: fr\r\n", 200, "n=3", "miss");
  expect(p, "GET", "/v?page=1&y=1", "accept-language: fr\r\n", 200, "n=3", "hit");
  expect(p, "GET", "/v?page=1", "Accept-Language: de\r\n", 200, "n=4", "miss");
  expect(p, "GET", "/v?page=1", "X-Other: 1\r\n", 200, "n=1", "hit");
  expect(p, "GET", "/v", NULL, 200, "n=5", "miss");
  expect(p, "GET", "/v?x=1", NULL, 200, "n=5", "hit");
  cache_metrics(p, "v", &mh, &mm);
  assert_int_equal(mh, 5);
  assert_int_equal(mm, 5);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- staleWhileRevalidate ------------------------------------------------------------------------ */

/* A loopback listener on a free port. */
static int listen_any(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(fd, 8), 0);
  socklen_t l = sizeof a;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
  *port = ntohs(a.sin_port);
  return fd;
}

static int readable(int fd, int timeout_ms) {
  struct pollfd pf = {.fd = fd, .events = POLLIN};
  return poll(&pf, 1, timeout_ms) == 1;
}

static void stale_while_revalidate(void **state) {
  (void)state;
  int up_port;
  int lfd = listen_any(&up_port);
  srv_t s;
  srv_init(&s);
  /* Every invocation after the first waits on the upstream this test answers when it wants. */
  char lua[1024];
  snprintf(lua, sizeof lua,
           "local http = require 'crescent.http'\n"
           "local n = 0\n"
           "return { routes = { 'GET /swr' }, egress = { '127.0.0.1:%d' },\n"
           "  cache = { ttl = 1, staleWhileRevalidate = 30 },\n"
           "  handler = function()\n"
           "    n = n + 1\n"
           "    if n > 1 then\n"
           "      local res, err = http.get('http://127.0.0.1:%d/', { timeout = 10 })\n"
           "      if not res then return { status = 502, body = err } end\n"
           "    end\n"
           "    return 'n=' .. n\n"
           "  end }\n",
           up_port, up_port);
  srv_write(&s, "swr.lua", lua);
  srv_start(&s, "--workers 1");
  int p = s.port;
  long long t0 = wall_ms();
  expect(p, "GET", "/swr", NULL, 200, "n=1", "miss");
  long long t1 = wall_ms();
  expect(p, "GET", "/swr", NULL, 200, "n=1", "hit");
  sleep_ms(1100);
  /* Stale now: the first request goes to the function (which waits on the upstream) ... */
  int a = http_connect(p);
  assert_true(a >= 0);
  http_sends(a, "GET /swr HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  if (!readable(lfd, 5000)) fail_msg("the refresh never called the upstream");
  int up = accept(lfd, NULL, NULL);
  assert_true(up >= 0);
  /* ... the others meanwhile get the old answer, marked stale, with its age. */
  for (int i = 0; i < 3; i++) {
    http_resp_t r;
    long long h0 = wall_ms();
    req(p, "GET", "/swr", NULL, &r);
    long long h1 = wall_ms();
    expect_status_body(&r, 200, "n=1");
    expect_header(&r, "x-cache", "stale");
    /* whole seconds since it was stored: 1 unless this machine stalls for a second */
    const char *age = http_header(&r, "age");
    assert_non_null(age);
    long ag = strtol(age, NULL, 10);
    if (ag < (h0 - t1) / 1000 || ag > (h1 - t0) / 1000 || ag < 1)
      fail_msg("Age %ld, want between %lld and %lld", ag, (h0 - t1) / 1000, (h1 - t0) / 1000);
    http_free(&r);
  }
  assert_false(readable(lfd, 0)); /* one refresh only */
  char buf[4096];
  assert_true(read(up, buf, sizeof buf) > 0);
  const char ans[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
  assert_int_equal(write(up, ans, sizeof ans - 1), (ssize_t)(sizeof ans - 1));
  http_resp_t r;
  assert_int_equal(http_read(a, &r, 0, 5000), 0);
  expect_status_body(&r, 200, "n=2");
  expect_header(&r, "x-cache", "miss");
  http_free(&r);
  http_close(a);
  close(up);
  /* The refreshed entry is fresh. */
  expect(p, "GET", "/swr", NULL, 200, "n=2", "hit");
  assert_false(readable(lfd, 0));
  long h, m;
  cache_metrics(p, "swr", &h, &m);
  assert_int_equal(h, 5); /* 1 hit, 3 stale, 1 hit */
  assert_int_equal(m, 2);
  assert_int_equal(srv_stop(&s), 0);
  close(lfd);
}

/* --- a new version ------------------------------------------------------------------------------- */

/* The version number of r's X-Crescent-Version ("<number>-<hex>"). */
static unsigned version_of(const http_resp_t *r) {
  const char *v = http_header(r, "x-crescent-version");
  if (!v) fail_msg("no X-Crescent-Version in %s", r->head);
  return (unsigned)strtoul(v, NULL, 10);
}

static void new_version_starts_empty(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "ver.lua",
            "local n = 0\nreturn { routes = { 'GET /ver' }, cache = { ttl = 30 },\n"
            "  handler = function() n = n + 1; return 'one n=' .. n end }\n");
  srv_start(&s, "--workers 1");
  int p = s.port;
  http_resp_t r;
  req(p, "GET", "/ver", NULL, &r);
  expect_status_body(&r, 200, "one n=1");
  unsigned v1 = version_of(&r);
  http_free(&r);
  expect(p, "GET", "/ver", NULL, 200, "one n=1", "hit");
  srv_write(&s, "ver.lua",
            "local n = 0\nreturn { routes = { 'GET /ver' }, cache = { ttl = 30 },\n"
            "  handler = function() n = n + 1; return 'two n=' .. n end }\n");
  /* Wait for the reload: a new query is a miss, so it shows the version answering. */
  long long end = now_ms() + 10000;
  int polls = 0;
  unsigned v = v1;
  while (v == v1 && now_ms() < end) {
    char path[64];
    snprintf(path, sizeof path, "/ver?poll=%d", ++polls);
    req(p, "GET", path, NULL, &r);
    assert_int_equal(r.status, 200);
    v = version_of(&r);
    http_free(&r);
    if (v == v1) sleep_ms(100);
  }
  if (v == v1) fail_msg("no new version within 10 s");
  assert_true(v > v1);
  /* The polls that reached the new version made one invocation: n=2 now. */
  expect(p, "GET", "/ver", NULL, 200, "two n=2", "miss");
  expect(p, "GET", "/ver", NULL, 200, "two n=2", "hit");
  assert_int_equal(srv_stop(&s), 0);
}

/* --- purging across workers ---------------------------------------------------------------------- */

typedef struct {
  int fd;
  int worker;
} pin_t;

static void ka(int fd, const char *method, const char *path, http_resp_t *r) {
  char head[512];
  int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", method, path);
  http_send(fd, head, (size_t)n);
  if (http_read(fd, r, 0, 5000) != 0) fail_msg("%s %s on a kept connection: no response", method, path);
}

/* One kept connection per worker (GET /probe: its report line names the worker). */
static void pin_workers(srv_t *s, int nworkers, pin_t *pins) {
  int have[8] = {0}, done = 0;
  for (int tries = 0; tries < 48 && done < nworkers; tries++) {
    int fd = http_connect(s->port);
    assert_true(fd >= 0);
    http_resp_t r;
    ka(fd, "GET", "/probe", &r);
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

static void ka_expect(int fd, const char *path, const char *body, const char *xcache) {
  http_resp_t r;
  ka(fd, "GET", path, &r);
  expect_status_body(&r, 200, body);
  expect_header(&r, "x-cache", xcache);
  http_free(&r);
}

static void purge_across_workers(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "probe.lua", "return function() return 'probe' end\n");
  srv_write(&s, "pur.lua",
            "local n = 0\nreturn { routes = { 'GET /pur' }, cache = { ttl = 30 },\n"
            "  handler = function() n = n + 1; return 'n=' .. n end }\n");
  srv_write(&s, "other.lua",
            "local n = 0\nreturn { routes = { 'GET /other' }, cache = { ttl = 30 },\n"
            "  handler = function() n = n + 1; return 'n=' .. n end }\n");
  srv_start(&s, "--workers 2");
  pin_t pins[2];
  pin_workers(&s, 2, pins);
  /* Each worker has its own entries (its own instance counts from 1). */
  for (int w = 0; w < 2; w++) {
    ka_expect(pins[w].fd, "/pur", "n=1", "miss");
    ka_expect(pins[w].fd, "/pur", "n=1", "hit");
    ka_expect(pins[w].fd, "/other", "n=1", "miss");
  }
  http_resp_t r;
  req(s.port, "DELETE", "/_/api/cache?function=pur", NULL, &r);
  expect_status_body(&r, 200, "{\"purged\":1}");
  http_free(&r);
  /* Both workers miss pur from now on; other is untouched. */
  for (int w = 0; w < 2; w++) {
    ka_expect(pins[w].fd, "/pur", "n=2", "miss");
    ka_expect(pins[w].fd, "/pur", "n=2", "hit");
    ka_expect(pins[w].fd, "/other", "n=1", "hit");
  }
  req(s.port, "DELETE", "/_/api/cache?function=nope", NULL, &r);
  assert_int_equal(r.status, 404);
  assert_non_null(strstr(r.body, "\"error\":\"function not found\""));
  http_free(&r);
  req(s.port, "GET", "/_/api/cache?function=pur", NULL, &r);
  assert_int_equal(r.status, 405);
  expect_header(&r, "allow", "DELETE");
  expect_status_body(&r, 405, "{\"error\":\"method not allowed\"}");
  http_free(&r);
  /* Nothing was purged by those. */
  for (int w = 0; w < 2; w++) ka_expect(pins[w].fd, "/pur", "n=2", "hit");
  /* Without function: every function's. */
  req(s.port, "DELETE", "/_/api/cache", NULL, &r);
  assert_int_equal(r.status, 200);
  /* probe, pur, other, and the platform's 2 functions (counted though they never cache). */
  expect_status_body(&r, 200, "{\"purged\":3}"); /* the user functions: the platform's never cache */
  http_free(&r);
  for (int w = 0; w < 2; w++) {
    ka_expect(pins[w].fd, "/pur", "n=3", "miss");
    ka_expect(pins[w].fd, "/other", "n=2", "miss");
  }
  long h, m;
  cache_metrics(s.port, "pur", &h, &m);
  assert_int_equal(h, 6);
  assert_int_equal(m, 6);
  for (int w = 0; w < 2; w++) http_close(pins[w].fd);
  assert_int_equal(srv_stop(&s), 0);
}

/* ctx.cache.purge and ?path= without shared: every worker of the node at once (the purge table in
 * shared memory), every query variant of the path, no other path; any function may purge another
 * function's path. */
static void path_purge_across_workers(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "probe.lua", "return function() return 'probe' end\n");
  srv_write(&s, "users.lua",
            "local n = 0\nreturn { routes = { 'GET /users/:id' }, cache = { ttl = 30 },\n"
            "  handler = function(event) n = n + 1; return event.params.id .. ' n=' .. n end }\n");
  srv_write(&s, "edit.lua",
            "return { routes = { 'PUT /users/:id' }, handler = function(event, ctx)\n"
            "  local ok, err = ctx.cache.purge('/users/' .. event.params.id)\n"
            "  return ok and 'purged' or { status = 409, body = tostring(err) } end }\n");
  srv_start(&s, "--workers 2");
  pin_t pins[2];
  pin_workers(&s, 2, pins);
  for (int w = 0; w < 2; w++) {
    ka_expect(pins[w].fd, "/users/1", "1 n=1", "miss");
    ka_expect(pins[w].fd, "/users/1?a=1", "1 n=2", "miss");
    ka_expect(pins[w].fd, "/users/2", "2 n=3", "miss");
    ka_expect(pins[w].fd, "/users/1", "1 n=1", "hit");
  }
  /* PUT /users/1 (another function) purges GET /users/1's answers on both workers. */
  http_resp_t r;
  ka(pins[0].fd, "PUT", "/users/1", &r);
  expect_status_body(&r, 200, "purged");
  http_free(&r);
  for (int w = 0; w < 2; w++) {
    ka_expect(pins[w].fd, "/users/1", "1 n=4", "miss");
    ka_expect(pins[w].fd, "/users/1?a=1", "1 n=5", "miss");
    ka_expect(pins[w].fd, "/users/1", "1 n=4", "hit");
    ka_expect(pins[w].fd, "/users/2", "2 n=3", "hit"); /* another path: untouched */
  }
  /* The API's ?path=, routed by GET. */
  req(s.port, "DELETE", "/_/api/cache?path=/users/2", NULL, &r);
  expect_status_body(&r, 200, "{\"purged\":1}");
  http_free(&r);
  for (int w = 0; w < 2; w++) {
    ka_expect(pins[w].fd, "/users/2", "2 n=6", "miss");
    ka_expect(pins[w].fd, "/users/1", "1 n=4", "hit");
  }
  /* With function= and path= together. */
  req(s.port, "DELETE", "/_/api/cache?function=users&path=/users/1", NULL, &r);
  expect_status_body(&r, 200, "{\"purged\":1}");
  http_free(&r);
  for (int w = 0; w < 2; w++) ka_expect(pins[w].fd, "/users/1", "1 n=7", "miss");
  for (int w = 0; w < 2; w++) http_close(pins[w].fd);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- auth + cache -------------------------------------------------------------------------------- */

#define SECRET "cachetest-secret-0123456789abcdefghijklmnop"

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
  assert_true(strlen(payload) < 400);
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

static void per_principal(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "me.lua",
            "local n = 0\nreturn { routes = { 'GET /me' }, cache = { ttl = 30 },\n"
            "  auth = { jwt = { secretEnv = 'CR_CACHETEST_SECRET' } },\n"
            "  handler = function(event) n = n + 1; return (event.auth.sub or '-') .. ' n=' .. n end }\n");
  setenv("CR_CACHETEST_SECRET", SECRET, 1);
  srv_start(&s, "--workers 1");
  unsetenv("CR_CACHETEST_SECRET");
  int p = s.port;
  char alice[1024], bob[1024], nosub[1024], payload[256];
  long long exp = (long long)time(NULL) + 600;
  snprintf(payload, sizeof payload, "{\"sub\":\"alice\",\"exp\":%lld}", exp);
  bearer(alice, sizeof alice, payload);
  snprintf(payload, sizeof payload, "{\"sub\":\"bob\",\"exp\":%lld}", exp);
  bearer(bob, sizeof bob, payload);
  snprintf(payload, sizeof payload, "{\"exp\":%lld}", exp);
  bearer(nosub, sizeof nosub, payload);

  expect(p, "GET", "/me", alice, 200, "alice n=1", "miss");
  expect(p, "GET", "/me", alice, 200, "alice n=1", "hit");
  expect(p, "GET", "/me", bob, 200, "bob n=2", "miss");
  expect(p, "GET", "/me", bob, 200, "bob n=2", "hit");
  expect(p, "GET", "/me", alice, 200, "alice n=1", "hit");
  /* Entries exist, yet no token or a bad one is refused first. */
  http_resp_t r;
  req(p, "GET", "/me", NULL, &r);
  assert_int_equal(r.status, 401);
  assert_non_null(strstr(r.body, "\"error\":\"missing credentials\""));
  expect_header(&r, "www-authenticate", "Bearer realm=\"crescent\"");
  expect_no_header(&r, "x-cache");
  http_free(&r);
  char bad[1100];
  snprintf(bad, sizeof bad, "%s", alice);
  bad[strlen(bad) - 4] = bad[strlen(bad) - 4] == 'A' ? 'B' : 'A'; /* the signature's end */
  req(p, "GET", "/me", bad, &r);
  assert_int_equal(r.status, 401);
  assert_non_null(strstr(r.body, "\"error\":\"invalid token\""));
  expect_no_header(&r, "x-cache");
  http_free(&r);
  /* A token without a sub is never cached. */
  expect(p, "GET", "/me", nosub, 200, "- n=3", NULL);
  expect(p, "GET", "/me", nosub, 200, "- n=4", NULL);
  long h, m;
  cache_metrics(p, "me", &h, &m);
  assert_int_equal(h, 3);
  assert_int_equal(m, 2);
  http_get(p, "/_/metrics", &r);
  assert_int_equal(r.status, 200);
  if (!strstr(r.body, "\ncrescent_cache_hits_total{function=\"me\"} 3\n") ||
      !strstr(r.body, "\ncrescent_cache_misses_total{function=\"me\"} 2\n"))
    fail_msg("no exact cache counters of me in:\n%s", r.body);
  http_free(&r);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- CORS on hits, and --cache-size's eighth ----------------------------------------------------- */

static void cors_on_hits_and_size_limit(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "co.lua",
            "local n = 0\nreturn { routes = { 'GET /co' }, cache = { ttl = 30 },\n"
            "  cors = { origins = { 'https://a.example', 'https://b.example' } },\n"
            "  handler = function() n = n + 1; return 'n=' .. n end }\n");
  /* ?n=BYTES answers that many bytes. */
  srv_write(&s, "big.lua",
            "local n = 0\nreturn { routes = { 'GET /big' }, cache = { ttl = 30 },\n"
            "  handler = function(event) n = n + 1; return { headers = { ['x-n'] = tostring(n) },\n"
            "    body = string.rep('b', tonumber(event.query.n)) } end }\n");
  srv_start(&s, "--workers 1 --cache-size 64k");
  int p = s.port;
  /* The CORS headers are the gateway's for each request, never the stored answer's. */
  http_resp_t r;
  req(p, "GET", "/co", "Origin: https://a.example\r\n", &r);
  expect_status_body(&r, 200, "n=1");
  expect_header(&r, "x-cache", "miss");
  expect_header(&r, "access-control-allow-origin", "https://a.example");
  expect_header(&r, "vary", "Origin");
  http_free(&r);
  req(p, "GET", "/co", "Origin: https://b.example\r\n", &r);
  expect_status_body(&r, 200, "n=1");
  expect_header(&r, "x-cache", "hit");
  expect_header(&r, "access-control-allow-origin", "https://b.example");
  expect_header(&r, "vary", "Origin");
  assert_int_equal(text_lines_with(r.head, "ccess-Control-Allow-Origin", NULL), 1);
  http_free(&r);
  req(p, "GET", "/co", "Origin: https://evil.example\r\n", &r);
  expect_status_body(&r, 200, "n=1");
  expect_header(&r, "x-cache", "hit");
  expect_no_header(&r, "access-control-allow-origin");
  http_free(&r);
  req(p, "GET", "/co", NULL, &r);
  expect_status_body(&r, 200, "n=1");
  expect_header(&r, "x-cache", "hit");
  expect_no_header(&r, "access-control-allow-origin");
  http_free(&r);

  /* 64 KB per worker: an answer of 7000 bytes is kept, one of 9000 (over 8 KB) never. */
  for (int k = 0; k < 2; k++) {
    req(p, "GET", "/big?n=7000", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 7000);
    expect_header(&r, "x-cache", k ? "hit" : "miss");
    expect_header(&r, "x-n", "1");
    http_free(&r);
  }
  for (int k = 0; k < 2; k++) {
    req(p, "GET", "/big?n=9000", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 9000);
    expect_header(&r, "x-cache", "miss");
    expect_header(&r, "x-n", k ? "3" : "2");
    http_free(&r);
  }
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(hits_misses_and_what_is_kept),
      cmocka_unit_test(stale_while_revalidate),
      cmocka_unit_test(new_version_starts_empty),
      cmocka_unit_test(purge_across_workers),
      cmocka_unit_test(path_purge_across_workers),
      cmocka_unit_test(per_principal),
      cmocka_unit_test(cors_on_hits_and_size_limit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
