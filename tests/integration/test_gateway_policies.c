/* test_gateway_policies.c - README "Gateway policies: CORS and rate limits" over real HTTP:
 * preflights answered by the gateway with the exact headers (and never by the function),
 * 403s for what is not allowed, the CORS headers on every other answer, a function without
 * cors answering OPTIONS itself; rate limits with exact counts (the 429s, their headers, the
 * rateLimited counter, no report line for a refused request), buckets per client (address,
 * header), one limit across workers and across nodes on one Redis, its accuracy under load,
 * and the per-worker buckets of --redis none. Connections are pinned to a worker by keeping
 * them alive (a probe's report line says which worker took it). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* --- helpers ------------------------------------------------------------------------------------ */

static void req(int port, const char *method, const char *path, const char *headers, http_resp_t *r) {
  if (http_request(port, method, path, headers, NULL, 0, r) != 0)
    fail_msg("%s %s: no response", method, path);
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

/* None of the CORS answer headers. */
static void expect_no_allow(const http_resp_t *r) {
  expect_no_header(r, "access-control-allow-origin");
  expect_no_header(r, "access-control-allow-methods");
  expect_no_header(r, "access-control-allow-headers");
  expect_no_header(r, "access-control-allow-credentials");
  expect_no_header(r, "access-control-expose-headers");
  expect_no_header(r, "access-control-max-age");
}

/* Report lines of function fn so far. */
static int fn_reports(srv_t *s, const char *fn) {
  char f[128];
  snprintf(f, sizeof f, "\"function\":\"%s\"", fn);
  return srv_log_count(s, "\"msg\":\"report\"", f, NULL);
}

/* The rateLimited metric of fn in /_/api/functions. */
static long rate_limited(int port, const char *fn) {
  http_resp_t r;
  http_get(port, "/_/api/functions", &r);
  assert_int_equal(r.status, 200);
  char *e = api_fn_entry(r.body, fn);
  if (!e) fail_msg("%s not in /_/api/functions", fn);
  long n = (long)json_num(e, "rateLimited");
  free(e);
  http_free(&r);
  return n;
}

static const char PREFLIGHT_VARY[] = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/* A CORS preflight for path: Origin, Access-Control-Request-Method and (when not NULL) -Headers. */
static void preflight(int port, const char *path, const char *origin, const char *method, const char *headers,
                      http_resp_t *r) {
  char h[1024];
  int n = snprintf(h, sizeof h, "Origin: %s\r\nAccess-Control-Request-Method: %s\r\n", origin, method);
  if (headers) snprintf(h + n, sizeof h - (size_t)n, "Access-Control-Request-Headers: %s\r\n", headers);
  req(port, "OPTIONS", path, h, r);
}

/* A preflight that must be refused with 403 "CORS: <what> not allowed" and none of the allow headers. */
static void preflight_refused(int port, const char *path, const char *origin, const char *method,
                              const char *headers, const char *what) {
  http_resp_t r;
  preflight(port, path, origin, method, headers, &r);
  char body[256], rid[160];
  http_request_id(&r, rid, sizeof rid);
  snprintf(body, sizeof body, "{\"error\":\"CORS: %s not allowed\",\"requestId\":\"%s\"}", what, rid);
  expect_status_body(&r, 403, body);
  expect_header(&r, "content-type", "application/json");
  expect_header(&r, "vary", "Origin");
  expect_no_allow(&r);
  http_free(&r);
}

/* A connection kept alive to one worker of a server. */
typedef struct {
  int fd;
  int worker;
} pin_t;

/* One keep-alive request on fd; fails the test without an answer. */
static void ka(int fd, const char *method, const char *path, const char *headers, http_resp_t *r) {
  char head[2048];
  int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", method, path,
                   headers ? headers : "");
  http_send(fd, head, (size_t)n);
  if (http_read(fd, r, 0, 5000) != 0) fail_msg("%s %s on a kept connection: no response", method, path);
}

/* Opens kept connections to s until each of its nworkers workers has per connections (GET /probe
 * on each: its report line names the worker). Fills pins (nworkers * per, worker 0's first). */
static void pin_workers(srv_t *s, int nworkers, int per, pin_t *pins) {
  int have[8] = {0};
  int done = 0;
  for (int tries = 0; tries < 48 && done < nworkers * per; tries++) {
    int fd = http_connect(s->port);
    assert_true(fd >= 0);
    http_resp_t r;
    ka(fd, "GET", "/probe", NULL, &r);
    assert_int_equal(r.status, 200);
    char rid[128];
    http_request_id(&r, rid, sizeof rid);
    http_free(&r);
    char *line = srv_report_of(s, rid);
    int w = (int)json_num(line, "worker");
    free(line);
    assert_true(w >= 0 && w < nworkers);
    if (have[w] < per) {
      pins[w * per + have[w]] = (pin_t){fd, w};
      have[w]++;
      done++;
    } else {
      http_close(fd);
    }
  }
  if (done < nworkers * per)
    fail_msg("could not reach every worker: %d of %d connections pinned", done, nworkers * per);
}

static void unpin(pin_t *pins, int n) {
  for (int i = 0; i < n; i++) http_close(pins[i].fd);
}

static const char PROBE_LUA[] = "return function() return 'probe' end\n";

/* --- CORS --------------------------------------------------------------------------------------- */

static const char API_LUA[] =
    "return { routes = { 'GET /api/items', 'PUT /api/items/:id' },\n"
    "  cors = { origins = { 'https://app.example.com', '*.example.com', 'http://*.local.test:8080' },\n"
    "           exposeHeaders = { 'x-total' } },\n"
    "  handler = function(event, ctx)\n"
    "    if event.query.fail then error('boom') end\n"
    "    return { status = 200, headers = { ['x-total'] = '3' }, body = 'items ' .. event.method }\n"
    "  end }\n";

static const char CRED_LUA[] =
    "return { routes = { 'GET,PUT,DELETE /cred' },\n"
    "  cors = { origins = { 'https://app.example.com' }, methods = { 'GET', 'PUT' }, headers = { 'X-Request' "
    "},\n"
    "           exposeHeaders = { 'x-a', 'x-b' }, credentials = true, maxAge = 60 },\n"
    "  handler = function(event) return 'cred ' .. event.method end }\n";

static const char STAR_LUA[] =
    "return { routes = { 'GET,POST /star' }, cors = { origins = '*', headers = { 'x-a', 'x-b' }, maxAge = 0 "
    "},\n"
    "  handler = function() return 'star' end }\n";

/* No cors: OPTIONS is its own to answer. */
static const char PLAIN_LUA[] =
    "return { routes = { 'GET,OPTIONS /plain' },\n"
    "  handler = function(event) return { status = 200, headers = { allow = 'GET, OPTIONS' },\n"
    "                                     body = 'plain ' .. event.method } end }\n";

static void cors_preflights(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "api.lua", API_LUA);
  srv_write(&s, "cred.lua", CRED_LUA);
  srv_write(&s, "star.lua", STAR_LUA);
  srv_start(&s, "--workers 1");
  http_resp_t r;

  /* Allowed origin, a custom header asked: both echoed (no methods/headers settings). */
  preflight(s.port, "/api/items/5", "https://app.example.com", "PUT", "x-request, content-type", &r);
  expect_status_body(&r, 204, "");
  expect_header(&r, "access-control-allow-origin", "https://app.example.com");
  expect_header(&r, "access-control-allow-methods", "PUT");
  expect_header(&r, "access-control-allow-headers", "x-request, content-type");
  expect_header(&r, "access-control-max-age", "600");
  expect_header(&r, "vary", PREFLIGHT_VARY);
  expect_no_header(&r, "access-control-allow-credentials");
  expect_no_header(&r, "access-control-expose-headers");
  expect_no_header(&r, "content-type");
  http_free(&r);
  /* No headers asked: none allowed; a wildcard origin of any scheme and port. */
  preflight(s.port, "/api/items", "http://a.b.example.com:3000", "GET", NULL, &r);
  expect_status_body(&r, 204, "");
  expect_header(&r, "access-control-allow-origin", "http://a.b.example.com:3000");
  expect_header(&r, "access-control-allow-methods", "GET");
  expect_no_header(&r, "access-control-allow-headers");
  http_free(&r);
  /* A scheme and port wildcard. */
  preflight(s.port, "/api/items", "http://dev.local.test:8080", "GET", NULL, &r);
  expect_status_body(&r, 204, "");
  expect_header(&r, "access-control-allow-origin", "http://dev.local.test:8080");
  http_free(&r);

  /* Disallowed origins: 403 without the allow headers. */
  preflight_refused(s.port, "/api/items", "https://evil.org", "GET", NULL, "origin");
  preflight_refused(s.port, "/api/items", "https://example.com", "GET", NULL, "origin");
  preflight_refused(s.port, "/api/items", "https://evilexample.com", "GET", NULL, "origin");
  preflight_refused(s.port, "/api/items", "https://app.example.com.evil.org", "GET", NULL, "origin");
  preflight_refused(s.port, "/api/items", "http://dev.local.test:8081", "GET", NULL, "origin");
  preflight_refused(s.port, "/api/items", "https://dev.local.test:8080", "GET", NULL, "origin");
  preflight_refused(s.port, "/api/items", "null", "GET", NULL, "origin");
  /* A header list that is not header names. */
  preflight_refused(s.port, "/api/items", "https://app.example.com", "GET", "x-a, x\"b", "header");

  /* Credentials, listed methods and headers: the settings, not what is asked. */
  preflight(s.port, "/cred", "https://app.example.com", "PUT", "X-Request", &r);
  expect_status_body(&r, 204, "");
  expect_header(&r, "access-control-allow-origin", "https://app.example.com");
  expect_header(&r, "access-control-allow-credentials", "true");
  expect_header(&r, "access-control-allow-methods", "GET, PUT");
  expect_header(&r, "access-control-allow-headers", "x-request");
  expect_header(&r, "access-control-max-age", "60");
  expect_header(&r, "vary", PREFLIGHT_VARY);
  http_free(&r);
  preflight_refused(s.port, "/cred", "https://app.example.com", "DELETE", NULL,
                    "method"); /* routed, not listed */
  preflight_refused(s.port, "/cred", "https://app.example.com", "GET", "x-request, x-other", "header");
  preflight_refused(s.port, "/cred", "https://other.example.com", "GET", NULL, "origin");

  /* "*" without credentials: "*", whatever the origin. */
  preflight(s.port, "/star", "https://anyone.example", "POST", "X-B,x-a", &r);
  expect_status_body(&r, 204, "");
  expect_header(&r, "access-control-allow-origin", "*");
  expect_header(&r, "access-control-allow-methods", "POST");
  expect_header(&r, "access-control-allow-headers", "x-a, x-b");
  expect_header(&r, "access-control-max-age", "0");
  expect_header(&r, "vary", PREFLIGHT_VARY);
  expect_no_header(&r, "access-control-allow-credentials");
  http_free(&r);
  preflight_refused(s.port, "/star", "https://anyone.example", "GET", "x-c", "header");

  /* A plain OPTIONS (no Access-Control-Request-Method) is no preflight: no OPTIONS route, so the
   * gateway's Allow answer. */
  req(s.port, "OPTIONS", "/api/items", "Origin: https://app.example.com\r\n", &r);
  expect_status_body(&r, 204, "");
  expect_header(&r, "allow", "GET, HEAD");
  expect_no_allow(&r);
  http_free(&r);

  /* No preflight reached a function: the first real request is the first report line. */
  req(s.port, "GET", "/api/items", NULL, &r);
  expect_status_body(&r, 200, "items GET");
  char rid[128];
  http_request_id(&r, rid, sizeof rid);
  free(srv_report_of(&s, rid));
  http_free(&r);
  assert_int_equal(fn_reports(&s, "api"), 1);
  assert_int_equal(fn_reports(&s, "cred"), 0);
  assert_int_equal(fn_reports(&s, "star"), 0);
  srv_stop(&s);
}

static void cors_answers(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "api.lua", API_LUA);
  srv_write(&s, "cred.lua", CRED_LUA);
  srv_write(&s, "plain.lua", PLAIN_LUA);
  srv_start(&s, "--workers 1");
  http_resp_t r;

  /* An allowed origin: the allow headers on the function's own answer. */
  req(s.port, "GET", "/api/items", "Origin: https://a.example.com\r\n", &r);
  expect_status_body(&r, 200, "items GET");
  expect_header(&r, "access-control-allow-origin", "https://a.example.com");
  expect_header(&r, "access-control-expose-headers", "x-total");
  expect_header(&r, "vary", "Origin");
  expect_header(&r, "x-total", "3");
  expect_no_header(&r, "access-control-allow-credentials");
  expect_no_header(&r, "access-control-allow-methods");
  http_free(&r);
  req(s.port, "PUT", "/api/items/7", "Origin: https://app.example.com\r\n", &r);
  expect_status_body(&r, 200, "items PUT");
  expect_header(&r, "access-control-allow-origin", "https://app.example.com");
  char rid[128];
  http_request_id(&r, rid, sizeof rid);
  free(srv_report_of(&s, rid)); /* the report lines so far are all in */
  http_free(&r);
  /* A disallowed origin's request still runs, without the allow headers; so does one without Origin. */
  int before = fn_reports(&s, "api");
  req(s.port, "GET", "/api/items", "Origin: https://evil.org\r\n", &r);
  expect_status_body(&r, 200, "items GET");
  expect_header(&r, "vary", "Origin");
  expect_no_allow(&r);
  http_request_id(&r, rid, sizeof rid);
  free(srv_report_of(&s, rid));
  http_free(&r);
  assert_int_equal(fn_reports(&s, "api"), before + 1);
  req(s.port, "GET", "/api/items", NULL, &r);
  expect_status_body(&r, 200, "items GET");
  expect_header(&r, "vary", "Origin");
  expect_no_allow(&r);
  http_free(&r);
  /* The function's errors carry them too. */
  req(s.port, "GET", "/api/items?fail=1", "Origin: https://app.example.com\r\n", &r);
  assert_int_equal(r.status, 500);
  expect_header(&r, "access-control-allow-origin", "https://app.example.com");
  expect_header(&r, "access-control-expose-headers", "x-total");
  expect_header(&r, "vary", "Origin");
  http_free(&r);
  srv_expect_errors(&s, 1);
  /* Credentials. */
  req(s.port, "GET", "/cred", "Origin: https://app.example.com\r\n", &r);
  expect_status_body(&r, 200, "cred GET");
  expect_header(&r, "access-control-allow-origin", "https://app.example.com");
  expect_header(&r, "access-control-allow-credentials", "true");
  expect_header(&r, "access-control-expose-headers", "x-a, x-b");
  expect_header(&r, "vary", "Origin");
  http_free(&r);
  req(s.port, "GET", "/cred", "Origin: https://other.example.com\r\n", &r);
  expect_status_body(&r, 200, "cred GET");
  expect_header(&r, "vary", "Origin");
  expect_no_allow(&r);
  http_free(&r);

  /* Without cors, a preflight is the function's as before: it runs and answers. */
  before = fn_reports(&s, "plain");
  preflight(s.port, "/plain", "https://app.example.com", "GET", "x-request", &r);
  expect_status_body(&r, 200, "plain OPTIONS");
  expect_header(&r, "allow", "GET, OPTIONS");
  expect_no_allow(&r);
  expect_no_header(&r, "vary");
  http_request_id(&r, rid, sizeof rid);
  free(srv_report_of(&s, rid));
  http_free(&r);
  assert_int_equal(fn_reports(&s, "plain"), before + 1);
  req(s.port, "GET", "/plain", "Origin: https://app.example.com\r\n", &r);
  expect_status_body(&r, 200, "plain GET");
  expect_no_allow(&r);
  expect_no_header(&r, "vary");
  http_free(&r);
  srv_stop(&s);
}

/* --- rate limits -------------------------------------------------------------------------------- */

/* burst 5, one more every 2 s, by address; cors too, for the 429s' headers. */
static const char LIMITED_LUA[] =
    "return { routes = { 'GET /limited' }, rateLimit = { rps = 0.5, burst = 5 },\n"
    "  cors = { origins = { 'https://app.example.com' } },\n"
    "  handler = function() return 'ok' end }\n";

/* The 429 a refused request gets, with the policy headers of burst 5 / rps 0.5. */
static void expect_refused(const http_resp_t *r) {
  if (r->status != 429) fail_msg("got %d '%s', want 429\n%s", r->status, r->body, r->head);
  assert_non_null(strstr(r->body, "{\"error\":\"rate limit exceeded\""));
  expect_header(r, "content-type", "application/json");
  expect_header(r, "retry-after", "2");
  expect_header(r, "ratelimit-policy", "\"burst\";q=5;w=10");
  expect_header(r, "ratelimit", "\"burst\";r=0;t=2");
}

static void rate_exact(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "limited.lua", LIMITED_LUA);
  srv_start(&s, "--workers 1");
  char rids[8][128];
  http_resp_t r;
  for (int i = 0; i < 8; i++) {
    req(s.port, "GET", "/limited", "Origin: https://app.example.com\r\n", &r);
    http_request_id(&r, rids[i], sizeof rids[i]);
    expect_header(&r, "vary", "Origin");
    expect_header(&r, "access-control-allow-origin", "https://app.example.com");
    if (i < 5) {
      /* Passed: the bucket empties by one each time, full again 2 s later per request. */
      char want[64];
      expect_status_body(&r, 200, "ok");
      snprintf(want, sizeof want, "\"burst\";r=%d;t=%d", 4 - i, 2 * (i + 1));
      expect_header(&r, "ratelimit", want);
      expect_header(&r, "ratelimit-policy", "\"burst\";q=5;w=10");
      expect_no_header(&r, "retry-after");
    } else {
      expect_refused(&r);
    }
    http_free(&r);
  }
  /* The bucket is in Redis. */
  char *ttl = srv_rcli(&s, "PTTL", "cr:{rl:limited}:i:127.0.0.1", NULL);
  long long pttl = strtoll(ttl, NULL, 10);
  if (pttl <= 0 || pttl > 10001) fail_msg("PTTL of the bucket: %s", ttl);
  free(ttl);
  /* Counted; never reached an instance: 5 report lines, none for the 429s. */
  assert_int_equal(rate_limited(s.port, "limited"), 3);
  for (int i = 0; i < 5; i++) free(srv_report_of(&s, rids[i]));
  sleep_ms(200);
  assert_int_equal(fn_reports(&s, "limited"), 5);
  for (int i = 5; i < 8; i++) {
    char idf[200];
    snprintf(idf, sizeof idf, "\"requestId\":\"%s\"", rids[i]);
    /* no line of an invocation: only the access log's line of the 429 */
    srv_log_wait(&s, 1, 2000, idf, "\"msg\":\"access\"", NULL);
    assert_int_equal(srv_log_count(&s, idf, NULL), 1);
    assert_int_equal(srv_log_count(&s, idf, "\"msg\":\"access\"", "\"status\":429", NULL), 1);
  }
  http_get(s.port, "/_/metrics", &r);
  assert_int_equal(r.status, 200);
  if (!strstr(r.body, "\ncrescent_rate_limited_total{function=\"limited\"} 3\n"))
    fail_msg("metrics:\n%s", r.body);
  http_free(&r);
  srv_stop(&s);
}

/* Connects from a loopback address other than 127.0.0.1 (another client, by address). */
static int connect_from(int port, const char *src) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  inet_pton(AF_INET, src, &a.sin_addr);
  if (bind(fd, (struct sockaddr *)&a, sizeof a)) fail_msg("bind %s: %s", src, strerror(errno));
  a.sin_port = htons((uint16_t)port);
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof a)) fail_msg("connect from %s: %s", src, strerror(errno));
  return fd;
}

/* GET path with a tenant header (NULL: none, "" an empty one); returns the status. */
static int tenant_get(int port, const char *path, const char *tenant) {
  char h[256] = "";
  if (tenant) snprintf(h, sizeof h, "X-Tenant: %s\r\n", tenant);
  http_resp_t r;
  req(port, "GET", path, h, &r);
  int st = r.status;
  http_free(&r);
  return st;
}

static void rate_buckets(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "tenant.lua",
            "return { rateLimit = { rps = 0.5, burst = 2, by = 'header.X-Tenant' }, handler = function() "
            "return 't' "
            "end }\n");
  srv_write(&s, "byip.lua", "return { rateLimit = { rps = 0.5 }, handler = function() return 'ip' end }\n");
  srv_start(&s, "--workers 1");
  /* Each tenant its own bucket of 2; without the header (or with an empty one) one shared bucket. */
  const char *order[] = {"a", "a", "b", "a", "b", "b", NULL, "", "", "A"};
  const int want[] = {200, 200, 200, 429, 200, 429, 200, 200, 429, 200};
  for (int i = 0; i < 10; i++) {
    int st = tenant_get(s.port, "/tenant", order[i]);
    if (st != want[i])
      fail_msg("request %d (tenant %s): %d, want %d", i, order[i] ? order[i] : "(none)", st, want[i]);
  }
  assert_int_equal(rate_limited(s.port, "tenant"), 3);
  /* By address: 127.0.0.2 is another client than 127.0.0.1 (burst 1 = ceil(rps)). */
  assert_int_equal(tenant_get(s.port, "/byip", NULL), 200);
  assert_int_equal(tenant_get(s.port, "/byip", "x"), 429);
  for (int i = 0; i < 2; i++) {
    int fd = connect_from(s.port, "127.0.0.2");
    http_resp_t r;
    ka(fd, "GET", "/byip", NULL, &r);
    assert_int_equal(r.status, i == 0 ? 200 : 429);
    if (i == 1) {
      expect_header(&r, "ratelimit-policy", "\"burst\";q=1;w=2");
      expect_header(&r, "retry-after", "2");
    }
    http_free(&r);
    http_close(fd);
  }
  char *v = srv_rcli(&s, "EXISTS", "cr:{rl:byip}:i:127.0.0.2", NULL);
  assert_string_equal(v, "1");
  free(v);
  srv_stop(&s);
}

/* One bucket across 2 workers and across a second node on the first's Redis. */
static const char SHARED_LUA[] =
    "return { routes = { 'GET /shared' }, rateLimit = { rps = 0.5, burst = 5, by = 'header.x-tenant' },\n"
    "  handler = function() return 'ok' end }\n";

static void rate_shared(void **state) {
  (void)state;
  srv_t a, b;
  srv_init(&a);
  srv_write(&a, "shared.lua", SHARED_LUA);
  srv_write(&a, "probe.lua", PROBE_LUA);
  srv_start(&a, "--workers 2");
  char sock[400], args[440];
  srv_redis_sock(&a, sock, sizeof sock);
  snprintf(args, sizeof args, "--workers 2 --redis unix://%s", sock);
  srv_init(&b);
  srv_write(&b, "shared.lua", SHARED_LUA);
  srv_write(&b, "probe.lua", PROBE_LUA);
  srv_start(&b, args);
  pin_t pa[4], pb[4];
  pin_workers(&a, 2, 2, pa);
  pin_workers(&b, 2, 2, pb);

  /* Tenant w: 8 requests alternating between a's two workers: 5 pass (both workers among them), 3 refused. */
  int passed[2] = {0, 0}, refused = 0;
  for (int i = 0; i < 8; i++) {
    pin_t *p = &pa[(i % 2) * 2];
    http_resp_t r;
    ka(p->fd, "GET", "/shared", "X-Tenant: w\r\n", &r);
    if (r.status == 200)
      passed[p->worker]++;
    else if (r.status == 429)
      refused++;
    else
      fail_msg("status %d", r.status);
    if ((r.status == 200) != (i < 5)) fail_msg("request %d: %d", i, r.status);
    http_free(&r);
  }
  assert_int_equal(passed[0], 3);
  assert_int_equal(passed[1], 2);
  assert_int_equal(refused, 3);
  assert_int_equal(rate_limited(a.port, "shared"), 3);

  /* Tenant n: across both nodes and all four workers. */
  pin_t *all[8] = {&pa[0], &pb[0], &pa[2], &pb[2], &pa[1], &pb[1], &pa[3], &pb[3]};
  int on_a = 0, on_b = 0;
  for (int i = 0; i < 8; i++) {
    http_resp_t r;
    ka(all[i]->fd, "GET", "/shared", "X-Tenant: n\r\n", &r);
    if ((r.status == 200) != (i < 5) || (r.status != 200 && r.status != 429))
      fail_msg("request %d: %d", i, r.status);
    if (r.status == 429 && i % 2)
      on_b++;
    else if (r.status == 429)
      on_a++;
    http_free(&r);
  }
  /* The refused ones: 5 and 7 went to b, 6 to a. */
  assert_int_equal(on_a, 1);
  assert_int_equal(on_b, 2);
  assert_int_equal(rate_limited(a.port, "shared"), 4);
  assert_int_equal(rate_limited(b.port, "shared"), 2);
  /* Reports: a ran 5 + 3 (0, 2, 4 of tenant n), b 2 (1 and 3), besides the probes. */
  sleep_ms(200);
  assert_int_equal(fn_reports(&a, "shared"), 8);
  assert_int_equal(fn_reports(&b, "shared"), 2);
  unpin(pa, 4);
  unpin(pb, 4);
  srv_stop(&b);
  srv_stop(&a);
}

/* --- accuracy under load ------------------------------------------------------------------------ */

typedef struct {
  int fd;
  int inflight;
  long long next_ms; /* not before: each client sends at most one request per 2 ms */
  size_t len;
  char buf[8192];
} hammer_t;

/* One complete response in h->buf? Returns its status (and drops it), 0 if not complete yet. */
static int take_response(hammer_t *h) {
  char *end = memmem(h->buf, h->len, "\r\n\r\n", 4);
  if (!end) return 0;
  size_t head = (size_t)(end - h->buf) + 4;
  size_t body = 0;
  for (char *p = h->buf; p < end; p++) {
    if ((p == h->buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
      body = strtoul(p + 15, NULL, 10);
      break;
    }
  }
  if (h->len < head + body) return 0;
  int status = atoi(h->buf + 9);
  memmove(h->buf, h->buf + head + body, h->len - head - body);
  h->len -= head + body;
  return status;
}

static void rate_accuracy(void **state) {
  (void)state;
  static const char ACC_LUA[] =
      "return { routes = { 'GET /acc' }, rateLimit = { rps = 20, burst = 1 }, handler = function() return "
      "'ok' end }\n";
  srv_t a, b;
  srv_init(&a);
  srv_write(&a, "acc.lua", ACC_LUA);
  srv_write(&a, "probe.lua", PROBE_LUA);
  srv_start(&a, "--workers 2");
  char sock[400], args[440];
  srv_redis_sock(&a, sock, sizeof sock);
  snprintf(args, sizeof args, "--workers 2 --redis unix://%s", sock);
  srv_init(&b);
  srv_write(&b, "acc.lua", ACC_LUA);
  srv_write(&b, "probe.lua", PROBE_LUA);
  srv_start(&b, args);
  pin_t pins[8];
  pin_workers(&a, 2, 2, pins);
  pin_workers(&b, 2, 2, pins + 4);

  /* 8 clients, each with one request in flight at a time and at most 500 a second (4,000/s in
   * all, 200 times the limit, without taking the machine's two cores from its other work), for 5 s. */
  static hammer_t hs[8];
  static const char rq[] = "GET /acc HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  long passed = 0, refused = 0, sent = 0;
  long long t0 = now_ms(), t_end = t0 + 5000, last = t0, hard_end = t0 + 8000;
  for (int i = 0; i < 8; i++) hs[i] = (hammer_t){.fd = pins[i].fd};
  for (long round = 0; round < 10000000 && now_ms() < hard_end; round++) {
    long long now = now_ms();
    int busy = 0, waiting = 0;
    for (int i = 0; i < 8; i++) {
      if (!hs[i].inflight && now < t_end && now >= hs[i].next_ms) {
        http_send(hs[i].fd, rq, sizeof rq - 1);
        hs[i].inflight = 1;
        hs[i].next_ms = now + 2;
        sent++;
      }
      busy += hs[i].inflight;
      waiting += !hs[i].inflight && now < t_end;
    }
    if (!busy && !waiting) break;
    struct pollfd p[8];
    for (int i = 0; i < 8; i++) p[i] = (struct pollfd){hs[i].fd, hs[i].inflight ? POLLIN : 0, 0};
    if (poll(p, 8, waiting ? 1 : 100) < 0 && errno != EINTR) fail_msg("poll: %s", strerror(errno));
    for (int i = 0; i < 8; i++) {
      if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = recv(hs[i].fd, hs[i].buf + hs[i].len, sizeof hs[i].buf - hs[i].len, 0);
      if (n <= 0) fail_msg("client %d: the server closed the connection (sent %ld)", i, sent);
      hs[i].len += (size_t)n;
      int st = take_response(&hs[i]);
      if (!st) continue;
      hs[i].inflight = 0;
      last = now_ms();
      if (st == 200)
        passed++;
      else if (st == 429)
        refused++;
      else
        fail_msg("client %d: status %d", i, st);
    }
  }
  double seconds = (double)(last - t0) / 1000.0;
  double want = 20 * seconds + 1;
  print_message(
      "rate accuracy: %ld passed, %ld refused of %ld in %.3f s (2 nodes x 2 workers); want %.1f +- 10%%\n",
      passed, refused, sent, seconds, want);
  assert_int_equal(passed + refused, sent);
  if (refused < 10 * passed)
    fail_msg("not hammered hard enough: %ld refused for %ld passed", refused, passed);
  if (passed < want * 0.9 || passed > want * 1.1) fail_msg("%ld passed, want %.1f +- 10%%", passed, want);
  assert_int_equal(rate_limited(a.port, "acc") + rate_limited(b.port, "acc"), refused);
  unpin(pins, 8);
  srv_stop(&b);
  srv_stop(&a);
}

/* --- without Redis ------------------------------------------------------------------------------ */

static void rate_no_redis(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "local.lua",
            "return { rateLimit = { rps = 0.5, burst = 2 }, handler = function() return 'local' end }\n");
  srv_write(&s, "probe.lua", PROBE_LUA);
  srv_start(&s, "--workers 2 --redis none");
  pin_t pins[2];
  pin_workers(&s, 2, 1, pins);
  /* Each worker its own bucket of 2: 4 pass in all (workers x burst), 2 refused. */
  for (int w = 0; w < 2; w++) {
    for (int i = 0; i < 3; i++) {
      http_resp_t r;
      ka(pins[w].fd, "GET", "/local", NULL, &r);
      if (r.status != (i < 2 ? 200 : 429)) fail_msg("worker %d, request %d: %d", w, i, r.status);
      char want[64];
      snprintf(want, sizeof want, "\"burst\";r=%d;t=%d", i < 2 ? 1 - i : 0, i < 2 ? 2 * (i + 1) : 2);
      expect_header(&r, "ratelimit", want);
      expect_header(&r, "ratelimit-policy", "\"burst\";q=2;w=4");
      if (i == 2) expect_header(&r, "retry-after", "2");
      http_free(&r);
    }
  }
  assert_int_equal(rate_limited(s.port, "local"), 2);
  unpin(pins, 2);
  srv_stop(&s);
}

/* --- where the build and README disagree ------------------------------------------------------------
 * Each of these asserts what README's "Gateway policies" section says and failed on the build they
 * were written against (see the commit message); the rest of this file passes there. */

/* README: a preflight to a route of a function with cors is answered by the gateway, never by the
 * function; methods defaults to the method asked "when the route answers it"; a disallowed method
 * gets 403. A preflight asking for a method the path does not route. */
static void readme_preflight_unrouted_method(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "own.lua",
            "return { routes = { 'GET,OPTIONS /own' }, cors = { origins = { 'https://app.example.com' } },\n"
            "  handler = function(event) return 'own ' .. event.method end }\n");
  srv_write(&s, "bare.lua",
            "return { routes = { 'GET /bare' }, cors = { origins = { 'https://app.example.com' } },\n"
            "  handler = function(event) return 'bare ' .. event.method end }\n");
  srv_start(&s, "--workers 1");
  preflight_refused(s.port, "/bare", "https://app.example.com", "DELETE", NULL, "method");
  preflight_refused(s.port, "/own", "https://app.example.com", "DELETE", NULL, "method");
  sleep_ms(200);
  assert_int_equal(fn_reports(&s, "own"), 0);
  srv_stop(&s);
}

/* README: every other answer of a function with cors carries Vary: Origin (origins = "*" too). */
static void readme_vary_with_any_origin(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "star.lua", STAR_LUA);
  srv_start(&s, "--workers 1");
  http_resp_t r;
  req(s.port, "GET", "/star", "Origin: https://anyone.example\r\n", &r);
  expect_status_body(&r, 200, "star");
  expect_header(&r, "access-control-allow-origin", "*");
  expect_header(&r, "vary", "Origin");
  http_free(&r);
  srv_stop(&s);
}

/* README: a refused request gets 429 {"error":"rate limit exceeded","requestId":...}. */
static void readme_429_request_id(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "one.lua",
            "return { rateLimit = { rps = 0.5, burst = 1 }, handler = function() return 'one' end }\n");
  srv_start(&s, "--workers 1");
  http_resp_t r;
  req(s.port, "GET", "/one", NULL, &r);
  expect_status_body(&r, 200, "one");
  http_free(&r);
  req(s.port, "GET", "/one", NULL, &r);
  char rid[128], want[256];
  http_request_id(&r, rid, sizeof rid);
  snprintf(want, sizeof want, "{\"error\":\"rate limit exceeded\",\"requestId\":\"%s\"}", rid);
  expect_status_body(&r, 429, want);
  http_free(&r);
  srv_stop(&s);
}

/* README: without Redis (--redis none) each worker keeps its own buckets "and a warning is logged
 * (at most every 10 s)". */
static void readme_no_redis_warning(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "one.lua",
            "return { rateLimit = { rps = 0.5, burst = 1 }, handler = function() return 'one' end }\n");
  srv_start(&s, "--workers 1 --redis none");
  http_resp_t r;
  for (int i = 0; i < 2; i++) {
    req(s.port, "GET", "/one", NULL, &r);
    assert_int_equal(r.status, i == 0 ? 200 : 429);
    http_free(&r);
  }
  if (srv_log_wait(&s, 1, 2000, "\"level\":\"warn\"", "per-worker buckets", NULL) != 1)
    fail_msg("no warning about per-worker buckets in the log:\n%s", srv_log(&s));
  srv_stop(&s);
}

/* A reload while a request waits on its policies (here the rate limit's Redis, paused): the request
 * was checked under version 1, whose route had no auth; version 2's route needs an API key. It is
 * checked again under the version that will run it, not handed to version 2's handler unchecked. */
static void reload_mid_check(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "gate.lua", "return { rateLimit = { rps = 100, burst = 100 }, handler = function() return 'open' end }\n");
  srv_start(&s, "--workers 1");
  http_expect(s.port, "/gate", 200, "open");
  free(srv_rcli(&s, "CLIENT", "PAUSE", "1500", "ALL", NULL));
  int fd = http_connect(s.port);
  http_sends(fd, "GET /gate HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  sleep_ms(100); /* it waits on Redis now */
  srv_write(&s, "gate.lua",
            "return { auth = 'apikey', rateLimit = { rps = 100, burst = 100 }, handler = function() return 'secret' end }\n");
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
      cmocka_unit_test(cors_preflights),
      cmocka_unit_test(reload_mid_check),
      cmocka_unit_test(cors_answers),
      cmocka_unit_test(rate_exact),
      cmocka_unit_test(rate_buckets),
      cmocka_unit_test(rate_shared),
      cmocka_unit_test(rate_accuracy),
      cmocka_unit_test(rate_no_redis),
      cmocka_unit_test(readme_preflight_unrouted_method),
      cmocka_unit_test(readme_vary_with_any_origin),
      cmocka_unit_test(readme_429_request_id),
      cmocka_unit_test(readme_no_redis_warning),
  };
  if (getenv("CR_TEST_ONLY")) cmocka_set_test_filter(getenv("CR_TEST_ONLY")); /* one test while iterating */
  return cmocka_run_group_tests(tests, NULL, NULL);
}
