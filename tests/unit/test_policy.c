/* test_policy.c - the gateway's policies as far as they run without a server:
 * which origins a cors setting allows (cr_cors_origin_allowed, core/trigger/http/policy.c)
 * for every pattern form, and how cors and rateLimit settings load, fail to load
 * (core/fn/settings.c, exact messages) and cross between processes (pack / unpack).
 * The HTTP side (preflights, 429s, buckets in Redis) is tests/integration/test_gateway_policies.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "policy.h"
#include "settings.h"
#include "vm.h"

static cr_vm_t *g_vm;
static char g_err[1024];

static int setup(void **state) {
  (void)state;
  g_vm = cr_vm_new(NULL);
  return g_vm ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  cr_vm_free(g_vm);
  g_vm = NULL;
  return 0;
}

/* Runs chunk and reads what it returns; the Lua stack is left as it was. */
static int read_chunk(const char *chunk, cr_settings_t *s) {
  lua_State *L = g_vm->L;
  lua_settop(L, 0);
  if (luaL_loadstring(L, chunk) || lua_pcall(L, 0, 1, 0)) fail_msg("chunk failed: %s", lua_tostring(L, -1));
  g_err[0] = '\0';
  int rc = cr_settings_read(L, -1, s, g_err, sizeof g_err);
  assert_int_equal(lua_gettop(L), 1);
  if (rc) {
    assert_int_equal(rc, CR_EINVAL);
    /* a refused setting leaves nothing allocated behind */
    assert_int_equal(s->cors.norigins, 0);
    assert_null(s->cors.origins);
    assert_null(s->cors.methods);
    assert_null(s->rate.header);
  }
  lua_settop(L, 0);
  return rc;
}

static void accepted(const char *chunk, cr_settings_t *s) {
  if (read_chunk(chunk, s)) fail_msg("refused: %s\n  error: %s", chunk, g_err);
}

/* The settings `return { handler = function() end, <fields> }` must be refused with exactly message. */
static void refused_exact(const char *fields, const char *message) {
  char chunk[4096];
  snprintf(chunk, sizeof chunk, "return { handler = function() end, %s }", fields);
  cr_settings_t s;
  if (read_chunk(chunk, &s) == 0) {
    cr_settings_free(&s);
    fail_msg("accepted: %s", chunk);
  }
  if (strcmp(g_err, message) != 0) fail_msg("%s\n  error: %s\n   want: %s", chunk, g_err, message);
}

/* A cors setting with the given origins (Lua text), loaded as a function would load it. */
static void load_cors(const char *origins, cr_settings_t *s) {
  char chunk[1024];
  snprintf(chunk, sizeof chunk, "return { handler = function() end, cors = { origins = %s } }", origins);
  accepted(chunk, s);
  assert_int_equal(s->cors.set, 1);
}

static int allowed(const cr_settings_t *s, const char *origin) {
  return cr_cors_origin_allowed(&s->cors, origin, strlen(origin));
}

/* Every origin in yes is allowed by s, every one in no refused (lists end with NULL). */
static void check_origins(const cr_settings_t *s, const char *const *yes, const char *const *no) {
  for (; yes && *yes; yes++)
    if (!allowed(s, *yes))
      fail_msg("'%s' refused (patterns: %s ...)", *yes, s->cors.norigins ? s->cors.origins[0] : "*");
  for (; no && *no; no++)
    if (allowed(s, *no))
      fail_msg("'%s' allowed (patterns: %s ...)", *no, s->cors.norigins ? s->cors.origins[0] : "*");
}

/* --- cr_cors_origin_allowed ------------------------------------------------------------------- */

static void test_exact_origin(void **state) {
  (void)state;
  cr_settings_t s;
  load_cors("{ 'https://app.example.com' }", &s);
  const char *yes[] = {"https://app.example.com", "HTTPS://APP.EXAMPLE.COM", "https://App.Example.Com", NULL};
  const char *no[] = {"http://app.example.com",
                      "https://app.example.com:443",
                      "https://app.example.com:8443",
                      "https://app.example.com.",
                      "https://app.example.co",
                      "https://xapp.example.com",
                      "https://a.app.example.com",
                      "https://example.com",
                      "https://app.example.com/",
                      "https://app.example.com:",
                      "app.example.com",
                      "https://app.example.comx",
                      "wss://app.example.com",
                      NULL};
  check_origins(&s, yes, no);
  cr_settings_free(&s);
}

static void test_exact_origin_with_port(void **state) {
  (void)state;
  cr_settings_t s;
  load_cors("{ 'http://localhost:3000', 'HTTP://127.0.0.1:8080' }", &s);
  assert_string_equal(s.cors.origins[1], "http://127.0.0.1:8080"); /* kept lower-case */
  const char *yes[] = {"http://localhost:3000", "http://LOCALHOST:3000", "http://127.0.0.1:8080", NULL};
  const char *no[] = {"http://localhost",       "http://localhost:30000", "http://localhost:300",
                      "https://localhost:3000", "http://localhost:3001",  "http://127.0.0.1",
                      "http://127.0.0.1:80",    "http://127.0.0.2:8080",  NULL};
  check_origins(&s, yes, no);
  cr_settings_free(&s);
}

static void test_wildcard_with_scheme(void **state) {
  (void)state;
  cr_settings_t s;
  load_cors("{ 'https://*.example.com' }", &s);
  const char *yes[] = {"https://a.example.com", "https://a.b.example.com", "https://A.EXAMPLE.COM",
                       "HTTPS://x-1.Example.com", NULL};
  const char *no[] = {"https://example.com",
                      "https://evilexample.com",
                      "https://example.com.evil.org",
                      "https://a.example.com.evil.org",
                      "http://a.example.com",
                      "https://a.example.com:8443",
                      "https://a.example.com:443",
                      "https://.example.com",
                      "https://a.example.co",
                      "https://a.example.com/",
                      "httpsx://a.example.com",
                      "a.example.com",
                      "https://evil.org:a.example.com",
                      NULL};
  check_origins(&s, yes, no);
  cr_settings_free(&s);
}

static void test_wildcard_with_scheme_and_port(void **state) {
  (void)state;
  cr_settings_t s;
  load_cors("{ 'https://*.example.com:8443' }", &s);
  const char *yes[] = {"https://a.example.com:8443", "https://b.a.example.com:8443", NULL};
  const char *no[] = {"https://a.example.com",
                      "https://a.example.com:443",
                      "https://a.example.com:84430",
                      "https://a.example.com:844",
                      "https://a.example.com:",
                      "https://example.com:8443",
                      "https://evilexample.com:8443",
                      "http://a.example.com:8443",
                      "https://example.com.evil.org:8443",
                      NULL};
  check_origins(&s, yes, no);
  cr_settings_free(&s);
}

static void test_wildcard_any_scheme(void **state) {
  (void)state;
  cr_settings_t s;
  load_cors("{ '*.example.com' }", &s);
  const char *yes[] = {"https://a.example.com",     "http://a.example.com", "http://a.example.com:8080",
                       "https://b.a.example.com:1", "HTTP://A.EXAMPLE.COM", NULL};
  const char *no[] = {"https://example.com",
                      "http://example.com:8080",
                      "https://evilexample.com",
                      "https://example.com.evil.org",
                      "https://a.example.com.evil.org:8080",
                      "https://.example.com",
                      "https://a.example.com/path",
                      "a.example.com",
                      NULL};
  check_origins(&s, yes, no);
  cr_settings_free(&s);
}

static void test_several_patterns(void **state) {
  (void)state;
  cr_settings_t s;
  load_cors("{ 'https://app.example.com', '*.example.org', 'http://*.test:8080' }", &s);
  assert_int_equal(s.cors.norigins, 3);
  const char *yes[] = {"https://app.example.com", "http://x.example.org", "http://a.test:8080", NULL};
  const char *no[] = {"https://b.example.com", "http://example.org", "http://a.test", "https://a.test:8080",
                      NULL};
  check_origins(&s, yes, no);
  cr_settings_free(&s);
}

static void test_malformed_origins(void **state) {
  (void)state;
  cr_settings_t s;
  load_cors("{ 'https://app.example.com', 'https://*.example.com', '*.example.org' }", &s);
  const char *no[] = {
      "null",          "https://", "", "://", "https:/", "app.example.com", "https//app.example.com",
      "*.example.org", NULL};
  check_origins(&s, NULL, no);
  /* A header value is not NUL-terminated: only its n bytes count. */
  const char *longer = "https://app.example.com.evil.org";
  assert_int_equal(cr_cors_origin_allowed(&s.cors, longer, strlen("https://app.example.com")), 1);
  assert_int_equal(cr_cors_origin_allowed(&s.cors, longer, strlen(longer)), 0);
  assert_int_equal(cr_cors_origin_allowed(&s.cors, "https://app.example.co", 0), 0);
  /* At most 300 bytes: 300 that match pass, 301 do not. */
  char o[400];
  size_t pre = strlen("https://"), suf = strlen(".example.com");
  memcpy(o, "https://", pre);
  memset(o + pre, 'a', 300 - pre - suf);
  memcpy(o + 300 - suf, ".example.com", suf + 1);
  assert_int_equal(strlen(o), 300);
  assert_int_equal(allowed(&s, o), 1);
  memmove(o + pre + 1, o + pre, 301 - pre);
  assert_int_equal(strlen(o), 301);
  assert_int_equal(allowed(&s, o), 0);
  cr_settings_free(&s);
}

static void test_any_origin(void **state) {
  (void)state;
  cr_settings_t s;
  load_cors("'*'", &s);
  assert_int_equal(s.cors.any_origin, 1);
  assert_int_equal(s.cors.norigins, 0);
  /* "*" is any origin the browser may send, "null" (sandboxed frames, file:) too; empty or
   * longer than 300 bytes is not an origin. */
  const char *yes[] = {"https://anything.example", "http://127.0.0.1:1", "null", NULL};
  check_origins(&s, yes, NULL);
  assert_int_equal(allowed(&s, ""), 0);
  char o[320];
  memset(o, 'a', 301);
  o[301] = '\0';
  assert_int_equal(allowed(&s, o), 0);
  cr_settings_free(&s);
}

static void test_no_cors(void **state) {
  (void)state;
  cr_settings_t s;
  accepted("return function() end", &s);
  assert_int_equal(s.cors.set, 0);
  assert_int_equal(allowed(&s, "https://app.example.com"), 0);
  assert_true(s.rate.rps == 0);
  cr_settings_free(&s);
  /* Set but not loaded from settings: an empty list allows nothing. */
  cr_cors_spec_t c = {.set = 1};
  assert_int_equal(cr_cors_origin_allowed(&c, "https://a.b", 11), 0);
}

/* --- loading ---------------------------------------------------------------------------------- */

static void test_cors_defaults_and_values(void **state) {
  (void)state;
  cr_settings_t s;
  accepted("return { handler = function() end, cors = { origins = { 'https://App.Example.com' } } }", &s);
  assert_int_equal(s.cors.set, 1);
  assert_int_equal(s.cors.any_origin, 0);
  assert_int_equal(s.cors.norigins, 1);
  assert_string_equal(s.cors.origins[0], "https://app.example.com");
  assert_null(s.cors.methods);
  assert_null(s.cors.headers);
  assert_null(s.cors.expose);
  assert_int_equal(s.cors.credentials, 0);
  assert_int_equal(s.cors.max_age, 600);
  cr_settings_free(&s);

  accepted(
      "return { handler = function() end, cors = { origins = { 'https://a.com', '*.b.com' },\n"
      "  methods = { 'get', 'Put' }, headers = { 'Content-Type', 'X-Request' }, exposeHeaders = { 'X-Total' "
      "},\n"
      "  credentials = true, maxAge = 0 } }",
      &s);
  assert_int_equal(s.cors.norigins, 2);
  assert_string_equal(s.cors.origins[1], "*.b.com");
  assert_string_equal(s.cors.methods, "GET, PUT");
  assert_string_equal(s.cors.headers, "content-type, x-request");
  assert_string_equal(s.cors.expose, "x-total");
  assert_int_equal(s.cors.credentials, 1);
  assert_int_equal(s.cors.max_age, 0);
  cr_settings_free(&s);

  /* Empty lists: no header allowed, none exposed (not "what is asked"). */
  accepted(
      "return { handler = function() end, cors = { origins = '*', headers = {}, exposeHeaders = {},\n"
      "  credentials = false, maxAge = 86400 } }",
      &s);
  assert_int_equal(s.cors.any_origin, 1);
  assert_string_equal(s.cors.headers, "");
  assert_string_equal(s.cors.expose, "");
  assert_int_equal(s.cors.max_age, 86400);
  cr_settings_free(&s);

  /* 64 origins is the most. */
  char chunk[4096] = "return { handler = function() end, cors = { origins = { ";
  for (int i = 0; i < 64; i++)
    snprintf(chunk + strlen(chunk), sizeof chunk - strlen(chunk), "'https://h%d.com',", i);
  strcat(chunk, " } } }");
  accepted(chunk, &s);
  assert_int_equal(s.cors.norigins, 64);
  assert_string_equal(s.cors.origins[63], "https://h63.com");
  cr_settings_free(&s);
}

#define ORIGIN_ENTRY(n)                                   \
  "setting 'cors': origins entry " #n                     \
  " must be an origin like \"https://app.example.com\", " \
  "\"https://*.example.com\" or \"*.example.com\""

static void test_cors_errors(void **state) {
  (void)state;
  refused_exact(
      "cors = 'https://a.com'",
      "setting 'cors' must be a table like { origins = { \"https://app.example.com\" } }, got string");
  refused_exact(
      "cors = true",
      "setting 'cors' must be a table like { origins = { \"https://app.example.com\" } }, got boolean");
  refused_exact(
      "cors = { origin = { 'https://a.com' } }",
      "setting 'cors': unknown key 'origin' (known: origins, methods, headers, exposeHeaders, credentials, "
      "maxAge)");
  refused_exact(
      "cors = { 'https://a.com' }",
      "setting 'cors': unknown key 'number' (known: origins, methods, headers, exposeHeaders, credentials, "
      "maxAge)");
  const char *no_origins =
      "setting 'cors': 'origins' must be \"*\" or a list of origins like { \"https://app.example.com\" }";
  refused_exact("cors = {}", no_origins);
  refused_exact("cors = { origins = 'https://a.com' }", no_origins);
  refused_exact("cors = { origins = 5 }", no_origins);
  refused_exact("cors = { origins = {} }", "setting 'cors': 'origins' must list 1 to 64 origins");
  char many[4096] = "cors = { origins = { ";
  for (int i = 0; i < 65; i++)
    snprintf(many + strlen(many), sizeof many - strlen(many), "'https://h%d.com',", i);
  strcat(many, " } }");
  refused_exact(many, "setting 'cors': 'origins' must list 1 to 64 origins");
  refused_exact("cors = { origins = { 'https://a.com', '*' } }",
                "setting 'cors': write origins = \"*\" (not in a list) to allow any origin");
  /* Not an origin pattern: each names its entry. */
  const char *bad[] = {"ftp://a.com",
                       "https://",
                       "https://*example.com",
                       "https://*.",
                       "https://a.com/",
                       "https://a.com:",
                       "https://a.com:8x",
                       "https://a.com:80:90",
                       "a.com:80",
                       "*.a.com:80",
                       "https://a*.com",
                       "https://*.*.com",
                       "",
                       "null",
                       "https://a com",
                       "*",
                       "app.example.com",
                       "localhost:3000",
                       NULL};
  for (int i = 0; bad[i]; i++) {
    char f[256];
    snprintf(f, sizeof f, "cors = { origins = { 'https://ok.com', '%s' } }", bad[i]);
    refused_exact(f, strcmp(bad[i], "*") == 0
                         ? "setting 'cors': write origins = \"*\" (not in a list) to allow any origin"
                         : ORIGIN_ENTRY(2));
  }
  refused_exact("cors = { origins = { 5 } }", ORIGIN_ENTRY(1));
  char big[400] = "cors = { origins = { 'https://";
  memset(big + strlen(big), 'a', 300);
  strcat(big, ".com' } }");
  refused_exact(big, ORIGIN_ENTRY(1));

  refused_exact("cors = { origins = '*', methods = 'GET' }",
                "setting 'cors': 'methods' must be a list of names like { \"GET\" }");
  refused_exact("cors = { origins = '*', methods = { 'GET', 'P UT' } }",
                "setting 'cors': 'methods' entry 2 must be a name (1 to 64 token characters)");
  refused_exact("cors = { origins = '*', headers = 'x-a' }",
                "setting 'cors': 'headers' must be a list of names like { \"x-custom\" }");
  refused_exact("cors = { origins = '*', headers = { '' } }",
                "setting 'cors': 'headers' entry 1 must be a name (1 to 64 token characters)");
  refused_exact("cors = { origins = '*', exposeHeaders = { 'x-a', 'x:b' } }",
                "setting 'cors': 'exposeHeaders' entry 2 must be a name (1 to 64 token characters)");
  refused_exact("cors = { origins = '*', credentials = 1 }",
                "setting 'cors': 'credentials' must be true or false");
  const char *max_age = "setting 'cors': 'maxAge' must be an integer from 0 to 86400";
  refused_exact("cors = { origins = '*', maxAge = -1 }", max_age);
  refused_exact("cors = { origins = '*', maxAge = 86401 }", max_age);
  refused_exact("cors = { origins = '*', maxAge = 1.5 }", max_age);
  refused_exact("cors = { origins = '*', maxAge = '60' }", max_age);
  refused_exact(
      "cors = { origins = '*', credentials = true }",
      "setting 'cors': credentials = true cannot go with origins = \"*\" (browsers refuse it): list the "
      "origins");
}

static void test_ratelimit_values(void **state) {
  (void)state;
  cr_settings_t s;
  accepted("return { handler = function() end, rateLimit = { rps = 0.5 } }", &s);
  assert_true(s.rate.rps == 0.5);
  assert_int_equal(s.rate.burst, 1); /* rps rounded up, at least 1 */
  assert_int_equal(s.rate.by, CR_RL_BY_IP);
  assert_null(s.rate.header);
  assert_int_equal(s.cors.set, 0);
  cr_settings_free(&s);
  accepted("return { handler = function() end, rateLimit = { rps = 2.5, by = 'ip' } }", &s);
  assert_int_equal(s.rate.burst, 3);
  assert_int_equal(s.rate.by, CR_RL_BY_IP);
  cr_settings_free(&s);
  accepted(
      "return { handler = function() end, rateLimit = { rps = 1000000, burst = 1000000, by = "
      "'header.X-Tenant' } }",
      &s);
  assert_true(s.rate.rps == 1e6);
  assert_int_equal(s.rate.burst, 1000000);
  assert_int_equal(s.rate.by, CR_RL_BY_HEADER);
  assert_string_equal(s.rate.header, "x-tenant");
  cr_settings_free(&s);
  accepted("return { handler = function() end, rateLimit = { rps = 0.001, burst = 5 } }", &s);
  assert_true(s.rate.rps == 0.001);
  assert_int_equal(s.rate.burst, 5);
  cr_settings_free(&s);
}

static void test_ratelimit_errors(void **state) {
  (void)state;
  refused_exact("rateLimit = 5",
                "setting 'rateLimit' must be a table like { rps = 100, burst = 200 }, got number");
  refused_exact("rateLimit = 'ip'",
                "setting 'rateLimit' must be a table like { rps = 100, burst = 200 }, got string");
  refused_exact("rateLimit = { rps = 1, rate = 1 }",
                "setting 'rateLimit': unknown key 'rate' (known: rps, burst, by)");
  const char *required = "setting 'rateLimit': 'rps' (requests per second) is required";
  refused_exact("rateLimit = {}", required);
  refused_exact("rateLimit = { burst = 5 }", required);
  const char *rps = "setting 'rateLimit': 'rps' must be a number from 0.001 to 1e+06";
  refused_exact("rateLimit = { rps = 0 }", rps);
  refused_exact("rateLimit = { rps = -1 }", rps);
  refused_exact("rateLimit = { rps = 0.0009 }", rps);
  refused_exact("rateLimit = { rps = 1000001 }", rps);
  refused_exact("rateLimit = { rps = '5' }", rps);
  refused_exact("rateLimit = { rps = 0/0 }", rps);
  const char *burst = "setting 'rateLimit': 'burst' must be an integer from 1 to 1e+06";
  refused_exact("rateLimit = { rps = 1, burst = 0 }", burst);
  refused_exact("rateLimit = { rps = 1, burst = 1.5 }", burst);
  refused_exact("rateLimit = { rps = 1, burst = 1000001 }", burst);
  refused_exact("rateLimit = { rps = 1, burst = true }", burst);
  const char *by = "setting 'rateLimit': 'by' must be \"ip\", \"key\", \"principal\" or \"header.NAME\"";
  refused_exact("rateLimit = { rps = 1, by = 'IP' }", by);
  refused_exact("rateLimit = { rps = 1, by = 'header.' }", by);
  refused_exact("rateLimit = { rps = 1, by = 'headers.x' }", by);
  refused_exact("rateLimit = { rps = 1, by = 5 }", by);
  char longname[200];
  snprintf(longname, sizeof longname, "rateLimit = { rps = 1, by = 'header.%065d' }", 0);
  refused_exact(longname, by);
  snprintf(longname, sizeof longname, "rateLimit = { rps = 1, by = 'header.%064d' }", 0); /* 64: fine */
  cr_settings_t s;
  char chunk[300];
  snprintf(chunk, sizeof chunk, "return { handler = function() end, %s }", longname);
  accepted(chunk, &s);
  assert_int_equal((int)strlen(s.rate.header), 64);
  cr_settings_free(&s);
  refused_exact("rateLimit = { rps = 1, by = 'header.x tenant' }",
                "setting 'rateLimit': 'by' header name 'x tenant' is not a token");
  refused_exact("rateLimit = { rps = 1, by = 'header.x:y' }",
                "setting 'rateLimit': 'by' header name 'x:y' is not a token");
  /* by key / principal: with a route auth that can find one (absent: the server's default). */
  accepted("return { handler = function() end, rateLimit = { rps = 1, by = 'key' } }", &s);
  assert_int_equal(s.rate.by, CR_RL_BY_KEY);
  cr_settings_free(&s);
  accepted("return { handler = function() end, rateLimit = { rps = 1, by = 'principal' }, "
           "auth = { jwt = { secretEnv = 'S' } } }", &s);
  assert_int_equal(s.rate.by, CR_RL_BY_PRINCIPAL);
  cr_settings_free(&s);
  refused_exact("rateLimit = { rps = 1, by = 'key' }, auth = 'none'",
                "setting 'rateLimit': by = \"key\" needs auth = \"apikey\"");
  refused_exact("rateLimit = { rps = 1, by = 'key' }, auth = { jwt = { secretEnv = 'S' } }",
                "setting 'rateLimit': by = \"key\" needs auth = \"apikey\"");
  refused_exact("rateLimit = { rps = 1, by = 'principal' }, auth = 'none'",
                "setting 'rateLimit': by = \"principal\" needs an 'auth' other than \"none\"");
  /* Both set, the first bad one is named: cors is read before rateLimit. */
  refused_exact("cors = { origins = {} }, rateLimit = {}",
                "setting 'cors': 'origins' must list 1 to 64 origins");
}

/* --- pack / unpack ---------------------------------------------------------------------------- */

static void round_trip(const cr_settings_t *s, cr_settings_t *u) {
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_settings_pack(s, &b), 0);
  assert_int_equal(cr_settings_unpack(b.data, b.len, u), 0);
  /* Every proper prefix is refused (exact-size copies, so ASan sees a read past the end). */
  for (size_t n = 0; n < b.len; n++) {
    char *copy = malloc(n ? n : 1);
    memcpy(copy, b.data, n);
    cr_settings_t t;
    int rc = cr_settings_unpack(copy, n, &t);
    free(copy);
    if (rc != CR_EINVAL) fail_msg("a %zu-byte prefix of %zu gave %d", n, b.len, rc);
  }
  cr_buf_free(&b);
}

static void test_pack_round_trip(void **state) {
  (void)state;
  cr_settings_t s, u;
  accepted(
      "return { handler = function() end, routes = { 'GET,PUT /items/:id' },\n"
      "  cors = { origins = { 'https://app.example.com', 'https://*.example.com:8443', '*.example.org' },\n"
      "    methods = { 'GET', 'PUT' }, headers = { 'x-request' }, exposeHeaders = { 'x-total', 'x-page' },\n"
      "    credentials = true, maxAge = 1234 },\n"
      "  rateLimit = { rps = 0.25, burst = 7, by = 'header.X-Tenant' },\n"
      "  triggers = { { cron = 'rate(1 minute)' } } }",
      &s);
  round_trip(&s, &u);
  assert_int_equal(u.cors.set, 1);
  assert_int_equal(u.cors.any_origin, 0);
  assert_int_equal(u.cors.norigins, 3);
  for (int i = 0; i < 3; i++) assert_string_equal(u.cors.origins[i], s.cors.origins[i]);
  assert_ptr_not_equal(u.cors.origins[0], s.cors.origins[0]);
  assert_string_equal(u.cors.methods, "GET, PUT");
  assert_string_equal(u.cors.headers, "x-request");
  assert_string_equal(u.cors.expose, "x-total, x-page");
  assert_int_equal(u.cors.credentials, 1);
  assert_int_equal(u.cors.max_age, 1234);
  assert_true(u.rate.rps == 0.25);
  assert_int_equal(u.rate.burst, 7);
  assert_int_equal(u.rate.by, CR_RL_BY_HEADER);
  assert_string_equal(u.rate.header, "x-tenant");
  assert_int_equal(u.ntriggers, 1); /* what follows the policies still lines up */
  assert_int_equal(u.triggers[0].kind, CR_TRIGGER_CRON);
  assert_string_equal(u.triggers[0].cron.expr, "rate(1 minute)");
  /* the unpacked spec matches as the loaded one does */
  assert_int_equal(cr_cors_origin_allowed(&u.cors, "https://a.example.com:8443", 26), 1);
  assert_int_equal(cr_cors_origin_allowed(&u.cors, "https://example.org", 19), 0);
  cr_settings_free(&u);
  cr_settings_free(&s);

  /* "*" with defaults (NULL lists stay NULL, not ""), by ip. */
  accepted(
      "return { handler = function() end, cors = { origins = '*', exposeHeaders = {} },\n"
      "  rateLimit = { rps = 100 } }",
      &s);
  round_trip(&s, &u);
  assert_int_equal(u.cors.set, 1);
  assert_int_equal(u.cors.any_origin, 1);
  assert_int_equal(u.cors.norigins, 0);
  assert_null(u.cors.methods);
  assert_null(u.cors.headers);
  assert_string_equal(u.cors.expose, "");
  assert_int_equal(u.cors.credentials, 0);
  assert_int_equal(u.cors.max_age, 600);
  assert_true(u.rate.rps == 100);
  assert_int_equal(u.rate.burst, 100);
  assert_int_equal(u.rate.by, CR_RL_BY_IP);
  assert_null(u.rate.header);
  assert_int_equal(cr_cors_origin_allowed(&u.cors, "null", 4), 1);
  cr_settings_free(&u);
  cr_settings_free(&s);

  /* Neither. */
  accepted("return function() end", &s);
  round_trip(&s, &u);
  assert_int_equal(u.cors.set, 0);
  assert_null(u.cors.origins);
  assert_true(u.rate.rps == 0);
  cr_settings_free(&u);
  cr_settings_free(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exact_origin),
      cmocka_unit_test(test_exact_origin_with_port),
      cmocka_unit_test(test_wildcard_with_scheme),
      cmocka_unit_test(test_wildcard_with_scheme_and_port),
      cmocka_unit_test(test_wildcard_any_scheme),
      cmocka_unit_test(test_several_patterns),
      cmocka_unit_test(test_malformed_origins),
      cmocka_unit_test(test_any_origin),
      cmocka_unit_test(test_no_cors),
      cmocka_unit_test(test_cors_defaults_and_values),
      cmocka_unit_test(test_cors_errors),
      cmocka_unit_test(test_ratelimit_values),
      cmocka_unit_test(test_ratelimit_errors),
      cmocka_unit_test(test_pack_round_trip),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
