/* test_gateway_authorizer.c - auth = { authorizer = ... } on the real server and Redis (README,
 * "Gateway policies", authorizer functions; core/trigger/http/authorizer.h), from the outside:
 *   - an allow passes the principal and context as event.auth, and nothing a client sends
 *     reaches event.auth; a deny is 403; no identity is 401 with WWW-Authenticate and no call;
 *   - an authorizer that raises, times out (its own timeout, and the 5 s cap), is missing, or
 *     answers anything but a decision: 503, one error line naming the route's function, the
 *     authorizer and its request id, and the route's function never runs;
 *   - decisions kept for ttl: the authorizer's calls are counted by their report lines
 *     ("trigger":"invoke", parentRequestId = the request's id); ttl = 0 calls every time; a new
 *     identity or a new version of the authorizer calls again; failures are not kept;
 *   - requests with the same identity that arrive together make one call;
 *   - the counters in /_/api/functions and /_/metrics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

/* The error body of r with its own request id. */
static void body_of(const http_resp_t *r, const char *error, char *out, size_t n) {
  char rid[160];
  http_request_id(r, rid, sizeof rid);
  snprintf(out, n, "{\"error\":\"%s\",\"requestId\":\"%s\"}", error, rid);
}

/* GET path with header lines (each ending in \r\n, or NULL). */
static void get(srv_t *s, const char *path, const char *headers, http_resp_t *r) {
  if (http_request(s->port, "GET", path, headers, NULL, 0, r) != 0) fail_msg("GET %s: no answer", path);
}

/* Report lines of the authorizer function fn (its calls: the "invoke" trigger). */
static int calls_of(srv_t *s, const char *fn) {
  char f[160];
  snprintf(f, sizeof f, "\"function\":\"%s\"", fn);
  return srv_log_count(s, "\"msg\":\"report\"", f, "\"trigger\":\"invoke\"", NULL);
}

/* Waits until the worker's earlier log lines are in the file: GET /open and its report line,
 * written after them by the same (only) worker. */
static void log_sync(srv_t *s) {
  http_resp_t r;
  get(s, "/open", NULL, &r);
  assert_int_equal(r.status, 200);
  char rid[80];
  http_request_id(&r, rid, sizeof rid);
  http_free(&r);
  free(srv_report_of(s, rid));
}

/* The authorizer's call for request rid (its report line, waited for) must exist. */
static void called_for(srv_t *s, const char *fn, const char *rid) {
  char f[160], p[160];
  snprintf(f, sizeof f, "\"function\":\"%s\"", fn);
  snprintf(p, sizeof p, "\"parentRequestId\":\"%s\"", rid);
  if (srv_log_wait(s, 1, 5000, "\"msg\":\"report\"", f, p, "\"trigger\":\"invoke\"", NULL) != 1)
    fail_msg("no call of %s for request %s", fn, rid);
}

/* GET path with header lines: must answer 200 with exactly want. */
static void expect_ok(srv_t *s, const char *path, const char *headers, const char *want) {
  http_resp_t r;
  get(s, path, headers, &r);
  if (r.status != 200 || strcmp(r.body, want) != 0) fail_msg("GET %s: %d %s, want 200 %s", path, r.status, r.body, want);
  http_free(&r);
}

/* Request ids of refused requests: none may have a report line of its own. */
static char refused_ids[200][80];
static int nrefused;

static void remember_refused(const http_resp_t *r) {
  assert_true(nrefused < 200);
  http_request_id(r, refused_ids[nrefused], sizeof refused_ids[nrefused]);
  nrefused++;
}

static void expect_denied(srv_t *s, const char *path, const char *headers) {
  http_resp_t r;
  get(s, path, headers, &r);
  char want[256];
  body_of(&r, "forbidden", want, sizeof want);
  if (r.status != 403 || strcmp(r.body, want) != 0) fail_msg("GET %s: %d %s, want 403 %s", path, r.status, r.body, want);
  assert_null(http_header(&r, "www-authenticate"));
  remember_refused(&r);
  http_free(&r);
}

static void expect_missing(srv_t *s, const char *path, const char *headers, const char *challenge) {
  http_resp_t r;
  get(s, path, headers, &r);
  char want[256];
  body_of(&r, "missing credentials", want, sizeof want);
  if (r.status != 401 || strcmp(r.body, want) != 0) fail_msg("GET %s: %d %s, want 401 %s", path, r.status, r.body, want);
  const char *h = http_header(&r, "www-authenticate");
  if (!h || strcmp(h, challenge) != 0) fail_msg("GET %s: WWW-Authenticate %s, want %s", path, h ? h : "(none)", challenge);
  remember_refused(&r);
  http_free(&r);
}

/* 503 authorization unavailable, and its one error line: route fn, authorizer, reason (exact),
 * and the authorizer's request id when it ran. Returns the time the answer took (ms). */
static long long expect_failed(srv_t *s, const char *path, const char *headers, const char *fn, const char *authorizer,
                               const char *reason, int ran) {
  http_resp_t r;
  long long t0 = now_ms();
  get(s, path, headers, &r);
  long long took = now_ms() - t0;
  char want[256];
  body_of(&r, "authorization unavailable", want, sizeof want);
  if (r.status != 503 || strcmp(r.body, want) != 0) fail_msg("GET %s: %d %s, want 503 %s", path, r.status, r.body, want);
  assert_null(http_header(&r, "www-authenticate"));
  char rid[80], idf[160], msg[600], ff[160], af[160];
  http_request_id(&r, rid, sizeof rid);
  snprintf(idf, sizeof idf, "\"requestId\":\"%s\"", rid);
  snprintf(msg, sizeof msg, "\"msg\":\"auth: authorizer %s failed, request refused: %s\"", authorizer, reason);
  snprintf(ff, sizeof ff, "\"function\":\"%s\"", fn);
  snprintf(af, sizeof af, "\"authorizer\":\"%s\"", authorizer);
  if (srv_log_wait(s, 1, 5000, "\"level\":\"error\"", msg, idf, ff, af, NULL) != 1) {
    char *line = srv_log_line(s, "auth: authorizer", idf, NULL);
    fail_msg("GET %s: want the line %s, log has %s", path, msg, line ? line : "nothing");
  }
  char *line = srv_log_line(s, msg, idf, NULL);
  assert_non_null(line);
  const char *ar = strstr(line, "\"authorizerRequestId\":\"");
  if (ran) {
    /* its request id is its report line's, made for this request */
    if (!ar) fail_msg("no authorizerRequestId in %s", line);
    char arid[120], rq[200], p[160];
    ar += strlen("\"authorizerRequestId\":\"");
    size_t n = strcspn(ar, "\"");
    assert_true(n > 0 && n < sizeof arid);
    memcpy(arid, ar, n);
    arid[n] = '\0';
    snprintf(rq, sizeof rq, "\"requestId\":\"%s\"", arid);
    snprintf(p, sizeof p, "\"parentRequestId\":\"%s\"", rid);
    if (srv_log_wait(s, 1, 5000, "\"msg\":\"report\"", rq, p, NULL) != 1) fail_msg("no report of %s for %s", arid, rid);
  } else if (ar) {
    fail_msg("an authorizerRequestId for a call that did not run: %s", line);
  }
  free(line);
  remember_refused(&r);
  http_free(&r);
  return took;
}

static void no_reports_for_refused(srv_t *s) {
  log_sync(s);
  for (int i = 0; i < nrefused; i++) {
    char idf[120];
    snprintf(idf, sizeof idf, "\"requestId\":\"%s\"", refused_ids[i]);
    if (srv_log_count(s, "\"msg\":\"report\"", idf, NULL) != 0) fail_msg("refused request %s was invoked", refused_ids[i]);
  }
}

/* metrics.authorizer of fn in /_/api/functions must be exactly these. */
static void expect_counters(srv_t *s, const char *fn, long calls, long hits, long denied, long failed) {
  http_resp_t r;
  http_get(s->port, "/_/api/functions", &r);
  assert_int_equal(r.status, 200);
  char *e = api_fn_entry(r.body, fn);
  if (!e) fail_msg("%s not in /_/api/functions", fn);
  const char *a = json_val(e, "authorizer");
  if (!a) fail_msg("no authorizer metrics in %s", e);
  long c = (long)json_num(a, "calls"), h = (long)json_num(a, "cacheHits"), d = (long)json_num(a, "denied"),
       f = (long)json_num(a, "failed");
  if (c != calls || h != hits || d != denied || f != failed)
    fail_msg("%s: authorizer calls %ld hits %ld denied %ld failed %ld, want %ld %ld %ld %ld", fn, c, h, d, f, calls, hits,
             denied, failed);
  free(e);
  http_free(&r);
  /* and the same in /_/metrics */
  http_get(s->port, "/_/metrics", &r);
  assert_int_equal(r.status, 200);
  const char *names[] = {"crescent_authorizer_calls_total", "crescent_authorizer_cache_hits_total",
                         "crescent_authorizer_denied_total", "crescent_authorizer_failed_total"};
  long want[] = {calls, hits, denied, failed};
  for (int i = 0; i < 4; i++) {
    char line[200];
    snprintf(line, sizeof line, "\n%s{function=\"%s\"} %ld\n", names[i], fn, want[i]);
    if (!strstr(r.body, line)) fail_msg("/_/metrics lacks %s", line + 1);
  }
  http_free(&r);
}

/* --- the functions ------------------------------------------------------------------------------ */

/* The authorizer: allows "Bearer NAME" (and a bare NAME, for the query) as principal NAME with a
 * context of what it saw; denies "deny". Version v puts v in the context. */
static void write_check(srv_t *s, int v) {
  char text[1200];
  snprintf(text, sizeof text,
           "return {\n"
           "  routes = {},\n"
           "  handler = function(event)\n"
           "    if event.source ~= 'authorizer' then error('not an authorizer event') end\n"
           "    local id = event.identity\n"
           "    if id == 'Bearer deny' or id == 'deny' then return { allow = false } end\n"
           "    local who = id:match('^Bearer (.+)$') or id\n"
           "    return { allow = true, principal = who, context = { role = 'admin', v = %d, method = event.method,\n"
           "             path = event.path, seen = event.headers['x-seen'] or '-' } }\n"
           "  end,\n"
           "}\n",
           v);
  srv_write(s, "auth/check.lua", text);
}

/* A route function behind authorizer a (settings: more of auth's table) answering what event.auth holds. */
static void write_route(srv_t *s, const char *name, const char *auth) {
  char rel[120], text[2000];
  snprintf(rel, sizeof rel, "%s.lua", name);
  snprintf(text, sizeof text,
           "return {\n"
           "  auth = { %s },\n"
           "  handler = function(event)\n"
           "    local a = event.auth\n"
           "    local n, nc = 0, 0\n"
           "    for _ in pairs(a) do n = n + 1 end\n"
           "    for _ in pairs(a.context) do nc = nc + 1 end\n"
           "    local c = a.context\n"
           "    return table.concat({ a.method, tostring(a.sub), tostring(c.role), tostring(c.v), tostring(c.method),\n"
           "      tostring(c.path), tostring(c.seen), n, nc, tostring(a.claims), tostring(a.key) }, '|')\n"
           "  end,\n"
           "}\n",
           auth);
  srv_write(s, rel, text);
}

/* An authorizer answering what is not a decision, by identity. */
static const char ODD_LUA[] =
    "local odd = {\n"
    "  ['Bearer str'] = function() return 'allow' end,\n"
    "  ['Bearer one'] = function() return { allow = 1, principal = 'u' } end,\n"
    "  ['Bearer yes'] = function() return { allow = 'true', principal = 'u' } end,\n"
    "  ['Bearer noprin'] = function() return { allow = true } end,\n"
    "  ['Bearer numprin'] = function() return { allow = true, principal = 7 } end,\n"
    "  ['Bearer longprin'] = function() return { allow = true, principal = string.rep('p', 256) } end,\n"
    "  ['Bearer ctxstr'] = function() return { allow = true, principal = 'u', context = 'admin' } end,\n"
    "  ['Bearer ctxarr'] = function() return { allow = true, principal = 'u', context = { 1, 2 } } end,\n"
    "  ['Bearer bigctx'] = function() return { allow = true, principal = 'u', context = { v = string.rep('x', 9000) } } end,\n"
    "  ['Bearer nothing'] = function() return nil end,\n"
    "  ['Bearer ok'] = function() return { allow = true, principal = 'fine' } end,\n"
    "}\n"
    "return { routes = {}, handler = function(event) return odd[event.identity]() end }\n";

#define OPEN_LUA "return function() return 'open' end\n"
#define WHO "/api/who"
/* what /api/who answers for principal P seen first on path PATH with x-seen SEEN (version 1) */
#define WHO_OK(p, path, seen) "authorizer|" p "|admin|1|GET|" path "|" seen "|3|5|nil|nil"

static void write_functions(srv_t *s) {
  srv_write(s, "open.lua", OPEN_LUA);
  write_check(s, 1);
  write_route(s, "api/who", "authorizer = 'auth/check', ttl = 300");
  write_route(s, "api/fresh", "authorizer = 'auth/check', ttl = 0");
  write_route(s, "api/short", "authorizer = 'auth/check', ttl = 1");
  write_route(s, "api/q", "authorizer = 'auth/check', identity = 'query.token'");
  write_route(s, "api/x", "authorizer = 'auth/check', identity = 'header.X-Token'");
  write_route(s, "api/boom", "authorizer = 'auth/boom'");
  write_route(s, "api/slow", "authorizer = 'auth/slow'");
  write_route(s, "api/missing", "authorizer = 'auth/nope'");
  write_route(s, "api/odd", "authorizer = 'auth/odd'");
  srv_write(s, "auth/boom.lua", "return { routes = {}, handler = function() error('authorizer exploded') end }\n");
  srv_write(s, "auth/slow.lua", "return { routes = {}, timeout = 0.3, handler = function() while true do end end }\n");
  srv_write(s, "auth/odd.lua", ODD_LUA);
}

/* Every error line is one the test provoked: the refusals (route functions api/...) and the
 * authorizers' own failures (auth/...). */
static void account_errors(srv_t *s, int refusals) {
  int all = srv_log_count(s, "\"level\":\"error\"", NULL);
  int mine = srv_log_count(s, "\"level\":\"error\"", "auth: authorizer ", "failed, request refused: ", NULL);
  int theirs = srv_log_count(s, "\"level\":\"error\"", "\"function\":\"auth/", NULL);
  if (mine != refusals) fail_msg("%d refusal lines, want %d", mine, refusals);
  if (all != mine + theirs) fail_msg("%d error lines, of them %d refusals and %d of the authorizers", all, mine, theirs);
  srv_expect_errors(s, all);
}

/* --- decisions and the cache --------------------------------------------------------------------- */

static void decisions(void **state) {
  (void)state;
  nrefused = 0;
  srv_t s;
  srv_init(&s);
  write_functions(&s);
  srv_start(&s, "--workers 1");
  long who_calls = 0, who_hits = 0, who_denied = 0;

  /* Allowed: the principal and the context as event.auth. Headers named like event.auth's fields
   * or the context's reach the authorizer's event.headers, never event.auth. */
  http_resp_t r;
  get(&s, WHO,
      "Authorization: Bearer user-1\r\nX-Seen: hi\r\nContext: forged\r\nAuth: forged\r\nRole: root\r\n"
      "X-Auth-Role: root\r\nSub: root\r\nPrincipal: root\r\n",
      &r);
  if (r.status != 200 || strcmp(r.body, WHO_OK("user-1", WHO, "hi")) != 0) fail_msg("allow: %d %s", r.status, r.body);
  char rid[80];
  http_request_id(&r, rid, sizeof rid);
  http_free(&r);
  called_for(&s, "auth/check", rid);
  who_calls++;
  assert_int_equal(calls_of(&s, "auth/check"), 1);
  /* Kept: the same identity again makes no call (even with other headers). */
  expect_ok(&s, WHO, "Authorization: Bearer user-1\r\nX-Seen: other\r\n", WHO_OK("user-1", WHO, "hi"));
  expect_ok(&s, WHO, "Authorization: Bearer user-1\r\n", WHO_OK("user-1", WHO, "hi"));
  who_hits += 2;
  log_sync(&s);
  assert_int_equal(calls_of(&s, "auth/check"), 1);
  /* Another identity: its own call. */
  expect_ok(&s, WHO, "Authorization: Bearer user-2\r\n", WHO_OK("user-2", WHO, "-"));
  who_calls++;
  assert_int_equal(srv_log_wait(&s, 2, 5000, "\"msg\":\"report\"", "\"function\":\"auth/check\"", NULL), 2);

  /* Denied: 403, and the deny is kept too. */
  expect_denied(&s, WHO, "Authorization: Bearer deny\r\n");
  who_calls++, who_denied++;
  assert_int_equal(srv_log_wait(&s, 3, 5000, "\"msg\":\"report\"", "\"function\":\"auth/check\"", NULL), 3);
  expect_denied(&s, WHO, "Authorization: Bearer deny\r\n");
  who_hits++, who_denied++;
  log_sync(&s);
  assert_int_equal(calls_of(&s, "auth/check"), 3);
  assert_int_equal(srv_log_count(&s, "\"level\":\"info\"", "auth: authorizer denied the request", "\"function\":\"api/who\"",
                                 "\"authorizer\":\"auth/check\"", NULL),
                   2);

  /* No identity: 401 with a challenge, no call. An empty header is none. */
  expect_missing(&s, WHO, NULL, "Bearer realm=\"crescent\"");
  expect_missing(&s, WHO, "Authorization: \r\n", "Bearer realm=\"crescent\"");
  expect_missing(&s, "/api/x", "Authorization: Bearer user-1\r\n", "Authorizer realm=\"crescent\"");
  log_sync(&s);
  assert_int_equal(calls_of(&s, "auth/check"), 3);

  /* The identity from another header, and from the query (decoded). */
  expect_ok(&s, "/api/x", "X-Token: tok-1\r\n", WHO_OK("tok-1", "/api/x", "-"));
  expect_ok(&s, "/api/q?a=1&token=q%2D1", NULL, WHO_OK("q-1", "/api/q", "-"));
  expect_missing(&s, "/api/q?tokens=x", "Authorization: Bearer user-1\r\n", "Authorizer realm=\"crescent\"");
  expect_missing(&s, "/api/q?token=", NULL, "Authorizer realm=\"crescent\"");
  /* a decision is the authorizer's: the query's "user-1" is the header's "Bearer user-1"? No: the
   * identities differ ("user-1" vs "Bearer user-1"), so this is a call of its own. */
  expect_ok(&s, "/api/q?token=user-1", NULL, WHO_OK("user-1", "/api/q", "-"));
  assert_int_equal(srv_log_wait(&s, 6, 5000, "\"msg\":\"report\"", "\"function\":\"auth/check\"", NULL), 6);

  /* ttl = 0: every request calls. */
  expect_ok(&s, "/api/fresh", "Authorization: Bearer f\r\n", WHO_OK("f", "/api/fresh", "-"));
  expect_ok(&s, "/api/fresh", "Authorization: Bearer f\r\n", WHO_OK("f", "/api/fresh", "-"));
  assert_int_equal(srv_log_wait(&s, 8, 5000, "\"msg\":\"report\"", "\"function\":\"auth/check\"", NULL), 8);
  /* ...and never uses what another route's call kept: user-1 was kept for /api/who */
  expect_ok(&s, "/api/fresh", "Authorization: Bearer user-1\r\n", WHO_OK("user-1", "/api/fresh", "-"));
  assert_int_equal(srv_log_wait(&s, 9, 5000, "\"msg\":\"report\"", "\"function\":\"auth/check\"", NULL), 9);

  /* ttl = 1: kept for a second, then called again. A decision kept longer ago than the route's
   * ttl (user-2, from /api/who, more than a second ago by then) is not used. */
  long long t0 = now_ms();
  expect_ok(&s, "/api/short", "Authorization: Bearer s\r\n", WHO_OK("s", "/api/short", "-"));
  expect_ok(&s, "/api/short", "Authorization: Bearer s\r\n", WHO_OK("s", "/api/short", "-"));
  long long dt = now_ms() - t0;
  log_sync(&s);
  if (dt < 900) assert_int_equal(calls_of(&s, "auth/check"), 10); /* (else the second may have called) */
  sleep_ms(1300);
  log_sync(&s);
  int before = calls_of(&s, "auth/check");
  expect_ok(&s, "/api/short", "Authorization: Bearer s\r\n", WHO_OK("s", "/api/short", "-"));
  assert_int_equal(srv_log_wait(&s, before + 1, 5000, "\"msg\":\"report\"", "\"function\":\"auth/check\"", NULL), before + 1);
  before = calls_of(&s, "auth/check");
  expect_ok(&s, "/api/short", "Authorization: Bearer user-2\r\n", WHO_OK("user-2", "/api/short", "-"));
  assert_int_equal(srv_log_wait(&s, before + 1, 5000, "\"msg\":\"report\"", "\"function\":\"auth/check\"", NULL), before + 1);
  /* and what /api/short kept serves /api/who (ttl 300) */
  expect_ok(&s, WHO, "Authorization: Bearer s\r\n", WHO_OK("s", "/api/short", "-"));
  who_hits++;
  /* /api/who's user-2 is the one /api/short just refreshed */
  expect_ok(&s, WHO, "Authorization: Bearer user-2\r\n", WHO_OK("user-2", "/api/short", "-"));
  who_hits++;
  log_sync(&s);
  assert_int_equal(calls_of(&s, "auth/check"), before + 1);

  /* A new version of the authorizer starts afresh: user-1 is asked again, and answered by v2. */
  write_check(&s, 2);
  int seen_v2 = 0;
  char probe[80];
  for (int i = 0; i < 100 && !seen_v2; i++) {
    snprintf(probe, sizeof probe, "Authorization: Bearer probe-%d\r\n", i);
    get(&s, "/api/fresh", probe, &r);
    assert_int_equal(r.status, 200);
    seen_v2 = strstr(r.body, "|admin|2|") != NULL;
    http_free(&r);
    if (!seen_v2) sleep_ms(50);
  }
  assert_true(seen_v2);
  log_sync(&s);
  before = calls_of(&s, "auth/check");
  expect_ok(&s, WHO, "Authorization: Bearer user-1\r\n", "authorizer|user-1|admin|2|GET|" WHO "|-|3|5|nil|nil");
  who_calls++;
  expect_ok(&s, WHO, "Authorization: Bearer user-1\r\n", "authorizer|user-1|admin|2|GET|" WHO "|-|3|5|nil|nil");
  who_hits++;
  log_sync(&s);
  assert_int_equal(calls_of(&s, "auth/check"), before + 1);

  expect_counters(&s, "api/who", who_calls, who_hits, who_denied, 0);
  no_reports_for_refused(&s);
  /* the authorizer is not a route of its own (routes = {}) */
  http_expect(s.port, "/auth/check", 404, NULL);
  account_errors(&s, 0);
  srv_stop(&s);
}

/* --- failing closed ------------------------------------------------------------------------------- */

static void failures(void **state) {
  (void)state;
  nrefused = 0;
  srv_t s;
  srv_init(&s);
  write_functions(&s);
  write_route(&s, "api/capped", "authorizer = 'auth/long'");
  srv_write(&s, "auth/long.lua", "return { routes = {}, timeout = 20, handler = function() while true do end end }\n");
  srv_start(&s, "--workers 1");
  int refusals = 0;
  const char *h = "Authorization: Bearer user-1\r\n";

  /* It raised: refused, and again (a failure is not kept). */
  expect_failed(&s, "/api/boom", h, "api/boom", "auth/boom", "error: auth/boom.lua:1: authorizer exploded", 1);
  expect_failed(&s, "/api/boom", h, "api/boom", "auth/boom", "error: auth/boom.lua:1: authorizer exploded", 1);
  refusals += 2;
  assert_int_equal(srv_log_wait(&s, 2, 5000, "\"msg\":\"report\"", "\"function\":\"auth/boom\"", NULL), 2);
  /* Its own timeout (0.3 s). */
  long long took = expect_failed(&s, "/api/slow", h, "api/slow", "auth/slow", "timeout", 1);
  refusals++;
  if (took < 250 || took > 2000) fail_msg("the 0.3 s authorizer was refused after %lld ms", took);
  /* Not there. */
  expect_failed(&s, "/api/missing", h, "api/missing", "auth/nope", "function not found", 0);
  refusals++;
  /* Answers that are not decisions. */
  static const struct {
    const char *id, *reason;
  } odd[] = {
      {"str", "its answer is not a table { allow = true|false, ... }"},
      {"one", "'allow' is not true or false"},
      {"yes", "'allow' is not true or false"},
      {"noprin", "'principal' is not a string of 1 to 255 bytes"},
      {"numprin", "'principal' is not a string of 1 to 255 bytes"},
      {"longprin", "'principal' is not a string of 1 to 255 bytes"},
      {"ctxstr", "'context' is not a table of names"},
      {"ctxarr", "'context' is not a table of names"},
      {"bigctx", "'context' is over 8 KB as JSON"},
      {"nothing", "it returned nothing"},
  };
  for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
    char hdr[120];
    snprintf(hdr, sizeof hdr, "Authorization: Bearer %s\r\n", odd[i].id);
    expect_failed(&s, "/api/odd", hdr, "api/odd", "auth/odd", odd[i].reason, 1);
    refusals++;
  }
  /* the same authorizer with a good answer passes */
  expect_ok(&s, "/api/odd", "Authorization: Bearer ok\r\n", "authorizer|fine|nil|nil|nil|nil|nil|3|0|nil|nil");
  /* The cap: an authorizer whose own timeout is 20 s is stopped after 5. */
  took = expect_failed(&s, "/api/capped", h, "api/capped", "auth/long", "timeout", 1);
  refusals++;
  if (took < 4500 || took > 6500) fail_msg("the capped authorizer was refused after %lld ms", took);

  /* None of the route functions ran. */
  no_reports_for_refused(&s);
  const char *routes[] = {"api/boom", "api/slow", "api/missing", "api/capped"};
  for (int i = 0; i < 4; i++) {
    char f[80];
    snprintf(f, sizeof f, "\"function\":\"%s\"", routes[i]);
    assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", f, NULL), 0);
  }
  assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", "\"function\":\"api/odd\"", NULL), 1);
  expect_counters(&s, "api/boom", 2, 0, 0, 2);
  expect_counters(&s, "api/odd", 11, 0, 0, 10);
  expect_counters(&s, "api/missing", 1, 0, 0, 1);
  account_errors(&s, refusals);
  srv_stop(&s);
}

/* --- one call for requests that arrive together ----------------------------------------------------- */

/* Holds the worker's loop (a function spinning for 600 ms on it), sends n requests for path with
 * header lines hdr meanwhile, so that the worker reads them together once it is free, and reads
 * their answers into st[] (statuses). */
static void together(srv_t *s, const char *path, const char *hdr, int n, int *st) {
  int hold = http_connect(s->port);
  http_sends(hold, "GET /spin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  sleep_ms(150); /* the worker is spinning now */
  int fds[16];
  assert_true(n <= 16);
  char req[512];
  snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n%sConnection: close\r\n\r\n", path, hdr);
  for (int i = 0; i < n; i++) {
    fds[i] = http_connect(s->port);
    http_sends(fds[i], req);
  }
  http_resp_t r;
  assert_int_equal(http_read(hold, &r, 0, 10000), 0);
  assert_int_equal(r.status, 200);
  http_free(&r);
  http_close(hold);
  for (int i = 0; i < n; i++) {
    assert_int_equal(http_read(fds[i], &r, 0, 10000), 0);
    st[i] = r.status;
    if (r.status == 403 || r.status == 503) remember_refused(&r);
    http_free(&r);
    http_close(fds[i]);
  }
}

static void no_stampede(void **state) {
  (void)state;
  nrefused = 0;
  srv_t s;
  srv_init(&s);
  write_functions(&s);
  srv_write(&s, "spin.lua", "return function() local t = os.clock() while os.clock() - t < 0.6 do end return 'spun' end\n");
  write_route(&s, "api/boom2", "authorizer = 'auth/boom', ttl = 60");
  srv_start(&s, "--workers 1");
  int st[16];
  /* A failing authorizer is never kept: one call for 6 requests can only be their shared call. */
  together(&s, "/api/boom2", "Authorization: Bearer same\r\n", 6, st);
  for (int i = 0; i < 6; i++) assert_int_equal(st[i], 503);
  log_sync(&s);
  assert_int_equal(calls_of(&s, "auth/boom"), 1);
  /* each refused request has its own line, with the one call's request id */
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "auth: authorizer auth/boom failed", "\"function\":\"api/boom2\"",
                                 "\"authorizerRequestId\":", NULL),
                   6);
  expect_counters(&s, "api/boom2", 1, 5, 0, 6);
  /* With ttl = 0 nothing is shared: 3 requests, 3 calls. */
  together(&s, "/api/fresh", "Authorization: Bearer t0\r\n", 3, st);
  for (int i = 0; i < 3; i++) assert_int_equal(st[i], 200);
  assert_int_equal(srv_log_wait(&s, 3, 5000, "\"msg\":\"report\"", "\"function\":\"auth/check\"", NULL), 3);
  /* Allowed together: one call, the others wait for it. */
  together(&s, WHO, "Authorization: Bearer crowd\r\n", 6, st);
  for (int i = 0; i < 6; i++) assert_int_equal(st[i], 200);
  log_sync(&s);
  assert_int_equal(calls_of(&s, "auth/check"), 4);
  expect_counters(&s, "api/who", 1, 5, 0, 0);
  no_reports_for_refused(&s);
  account_errors(&s, 6);
  srv_stop(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(decisions),
      cmocka_unit_test(failures),
      cmocka_unit_test(no_stampede),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
