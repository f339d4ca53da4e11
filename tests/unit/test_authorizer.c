/* test_authorizer.c - an authorizer's answer read into a decision, and a request's identity
 * (core/trigger/http/authorizer.h). The calls and the cache are tested on the real server
 * (tests/integration/test_gateway_authorizer.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "authorizer.h"

/* text must be refused with exactly reason. */
static void refused(const char *text, size_t len, const char *reason) {
  cr_authz_decision_t d;
  char err[256] = "";
  if (cr_authz_parse(text, len, &d, err, sizeof err) != -1) fail_msg("accepted: %.*s", (int)len, text);
  if (strcmp(err, reason) != 0) fail_msg("%.*s: reason '%s', want '%s'", (int)len, text, err, reason);
  assert_null(d.context);
}
#define REFUSED(text, reason) refused(text, strlen(text), reason)

static void allowed(const char *text, const char *principal, const char *context) {
  cr_authz_decision_t d;
  char err[256] = "";
  if (cr_authz_parse(text, strlen(text), &d, err, sizeof err) != 0) fail_msg("%s: refused: %s", text, err);
  assert_int_equal(d.allow, 1);
  assert_string_equal(d.principal, principal);
  assert_non_null(d.context);
  assert_int_equal(d.context_len, strlen(context));
  assert_memory_equal(d.context, context, d.context_len);
  cr_authz_decision_free(&d);
  assert_null(d.context);
}

static void decisions(void **state) {
  (void)state;
  allowed("{\"allow\":true,\"principal\":\"user-1\",\"context\":{\"role\":\"admin\"}}", "user-1", "{\"role\":\"admin\"}");
  /* no context, or null: an empty one */
  allowed("{\"principal\":\"u\",\"allow\":true}", "u", "{}");
  allowed("{\"allow\":true,\"principal\":\"u\",\"context\":null}", "u", "{}");
  allowed("{\"allow\":true,\"principal\":\"u\",\"context\":{}}", "u", "{}");
  /* the context comes back as canonical JSON text, nested values and escapes kept */
  allowed(" {\"allow\" : true, \"principal\":\"\\u00e9t\\u00e9\", \"context\": {\"n\": 1.5e1, \"a\": [1, \"x\\\"y\", "
          "false, null, {\"b\": {}}], \"s\": \"\\n\"}, \"other\": 1} ",
          "\xc3\xa9t\xc3\xa9", "{\"n\":15,\"a\":[1,\"x\\\"y\",false,null,{\"b\":{}}],\"s\":\"\\n\"}");
  /* 255 bytes of principal is the most */
  char big[400];
  char p255[256];
  memset(p255, 'p', 255);
  p255[255] = '\0';
  snprintf(big, sizeof big, "{\"allow\":true,\"principal\":\"%s\"}", p255);
  allowed(big, p255, "{}");
  snprintf(big, sizeof big, "{\"allow\":true,\"principal\":\"%sq\"}", p255);
  REFUSED(big, "'principal' is not a string of 1 to 255 bytes");

  /* deny: nothing else is read */
  cr_authz_decision_t d;
  char err[200];
  const char *denies[] = {"{\"allow\":false}", "{\"allow\":false,\"principal\":5,\"context\":[1]}",
                          "{\"principal\":\"u\",\"allow\":false}"};
  for (size_t i = 0; i < sizeof denies / sizeof denies[0]; i++) {
    assert_int_equal(cr_authz_parse(denies[i], strlen(denies[i]), &d, err, sizeof err), 0);
    assert_int_equal(d.allow, 0);
    assert_null(d.context);
    cr_authz_decision_free(&d);
  }

  /* anything else fails closed */
  refused("", 0, "it returned nothing");
  REFUSED("true", "its answer is not a table { allow = true|false, ... }");
  REFUSED("\"allow\"", "its answer is not a table { allow = true|false, ... }");
  REFUSED("[true]", "its answer is not a table { allow = true|false, ... }");
  REFUSED("{}", "'allow' is not true or false");
  REFUSED("{\"allow\":1,\"principal\":\"u\"}", "'allow' is not true or false");
  REFUSED("{\"allow\":\"true\",\"principal\":\"u\"}", "'allow' is not true or false");
  REFUSED("{\"allow\":null}", "'allow' is not true or false");
  REFUSED("{\"allow\":true}", "'principal' is not a string of 1 to 255 bytes");
  REFUSED("{\"allow\":true,\"principal\":\"\"}", "'principal' is not a string of 1 to 255 bytes");
  REFUSED("{\"allow\":true,\"principal\":42}", "'principal' is not a string of 1 to 255 bytes");
  REFUSED("{\"allow\":true,\"principal\":{\"id\":\"u\"}}", "'principal' is not a string of 1 to 255 bytes");
  REFUSED("{\"allow\":true,\"principal\":\"a\\u0000b\"}", "'principal' holds a NUL byte");
  REFUSED("{\"allow\":true,\"principal\":\"u\",\"context\":\"admin\"}", "'context' is not a table of names");
  REFUSED("{\"allow\":true,\"principal\":\"u\",\"context\":[1,2]}", "'context' is not a table of names");
  REFUSED("{\"allow\":true,\"principal\":\"u\",\"context\":7}", "'context' is not a table of names");
  /* duplicate names, trailing garbage: not JSON jsonread accepts */
  cr_authz_decision_t d2;
  const char *dup = "{\"allow\":false,\"allow\":true,\"principal\":\"u\"}";
  assert_int_equal(cr_authz_parse(dup, strlen(dup), &d2, err, sizeof err), -1);
  assert_non_null(strstr(err, "its answer is not JSON C can read: "));
  const char *trail = "{\"allow\":true,\"principal\":\"u\"} x";
  assert_int_equal(cr_authz_parse(trail, strlen(trail), &d2, err, sizeof err), -1);
  assert_non_null(strstr(err, "its answer is not JSON C can read: "));
}

/* The context's bound: 8 KB of JSON text, measured as re-encoded; the answer's: 64 KB. */
static void bounds(void **state) {
  (void)state;
  size_t cap = CR_AUTHZ_MAX_ANSWER + 100;
  char *t = malloc(cap);
  assert_non_null(t);
  /* {"v":"xxx..."} of exactly 8192 bytes is accepted, one more byte is not */
  const size_t over = strlen("{\"v\":\"\"}");
  char *v = malloc(CR_AUTHZ_MAX_CONTEXT + 2);
  assert_non_null(v);
  memset(v, 'x', CR_AUTHZ_MAX_CONTEXT - over);
  v[CR_AUTHZ_MAX_CONTEXT - over] = '\0';
  snprintf(t, cap, "{\"allow\":true,\"principal\":\"u\",\"context\":{\"v\":\"%s\"}}", v);
  cr_authz_decision_t d;
  char err[200];
  assert_int_equal(cr_authz_parse(t, strlen(t), &d, err, sizeof err), 0);
  assert_int_equal(d.context_len, CR_AUTHZ_MAX_CONTEXT);
  cr_authz_decision_free(&d);
  memset(v, 'x', CR_AUTHZ_MAX_CONTEXT - over + 1);
  v[CR_AUTHZ_MAX_CONTEXT - over + 1] = '\0';
  snprintf(t, cap, "{\"allow\":true,\"principal\":\"u\",\"context\":{\"v\":\"%s\"}}", v);
  REFUSED(t, "'context' is over 8 KB as JSON");
  /* escapes count as written out: 3000 newlines are 6000 bytes of text, 5000 are too many */
  char *nl = malloc(5000 * 2 + 1);
  assert_non_null(nl);
  for (int i = 0; i < 5000; i++) memcpy(nl + 2 * i, "\\n", 2);
  nl[2 * 3000] = '\0';
  snprintf(t, cap, "{\"allow\":true,\"principal\":\"u\",\"context\":{\"v\":\"%s\"}}", nl);
  assert_int_equal(cr_authz_parse(t, strlen(t), &d, err, sizeof err), 0);
  cr_authz_decision_free(&d);
  nl[2 * 3000] = '\\';
  nl[2 * 5000] = '\0';
  snprintf(t, cap, "{\"allow\":true,\"principal\":\"u\",\"context\":{\"v\":\"%s\"}}", nl);
  REFUSED(t, "'context' is over 8 KB as JSON");
  /* many small members: measured as a whole */
  size_t o = (size_t)snprintf(t, cap, "{\"allow\":true,\"principal\":\"u\",\"context\":{");
  for (int i = 0; i < 1000; i++) o += (size_t)snprintf(t + o, cap - o, "%s\"k%04d\":1", i ? "," : "", i);
  snprintf(t + o, cap - o, "}}");
  REFUSED(t, "'context' is over 8 KB as JSON");
  /* the whole answer: at most 64 KB, whatever is in it */
  memset(t, ' ', CR_AUTHZ_MAX_ANSWER + 1);
  memcpy(t, "{\"allow\":false}", 15);
  refused(t, CR_AUTHZ_MAX_ANSWER + 1, "its answer is over 64 KB");
  assert_int_equal(cr_authz_parse(t, CR_AUTHZ_MAX_ANSWER, &d, err, sizeof err), 0);
  assert_int_equal(d.allow, 0);
  free(nl);
  free(v);
  free(t);
}

/* A request's identity: a header (repeated ones joined), or a query parameter (decoded). */
static void identities(void **state) {
  (void)state;
  cr_http_header_t h[] = {
      {"authorization", 13, "Bearer abc", 10},
      {"x-token", 7, "one", 3},
      {"x-empty", 7, "", 0},
      {"x-token", 7, "two", 3},
      {"cookie", 6, "a=1", 3},
      {"cookie", 6, "b=2", 3},
  };
  cr_http_req_t req = {.headers = h, .nheaders = 6, .query = "a=1&tok=x%20y+z&tok=second&e=&f", .query_len = 31};
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_authz_identity(&req, "header.authorization", &b), 0);
  assert_int_equal(b.len, 10);
  assert_memory_equal(b.data, "Bearer abc", 10);
  assert_int_equal(cr_authz_identity(&req, "header.x-token", &b), 0);
  assert_int_equal(b.len, 8);
  assert_memory_equal(b.data, "one, two", 8);
  assert_int_equal(cr_authz_identity(&req, "header.cookie", &b), 0);
  assert_int_equal(b.len, 8);
  assert_memory_equal(b.data, "a=1; b=2", 8);
  assert_int_equal(cr_authz_identity(&req, "header.x-empty", &b), -1);
  assert_int_equal(cr_authz_identity(&req, "header.x-none", &b), -1);
  assert_int_equal(cr_authz_identity(&req, "header.x-tok", &b), -1);
  assert_int_equal(cr_authz_identity(&req, "query.tok", &b), 0);
  assert_int_equal(b.len, 5);
  assert_memory_equal(b.data, "x y z", 5);
  assert_int_equal(cr_authz_identity(&req, "query.a", &b), 0);
  assert_int_equal(b.len, 1);
  assert_int_equal(cr_authz_identity(&req, "query.e", &b), -1);
  assert_int_equal(cr_authz_identity(&req, "query.f", &b), -1);
  assert_int_equal(cr_authz_identity(&req, "query.to", &b), -1);
  assert_int_equal(cr_authz_identity(&req, "query.none", &b), -1);
  assert_int_equal(cr_authz_identity(&req, "cookie.a", &b), -1);
  cr_http_req_t bare = {.query = "", .query_len = 0};
  assert_int_equal(cr_authz_identity(&bare, "header.authorization", &b), -1);
  assert_int_equal(cr_authz_identity(&bare, "query.tok", &b), -1);
  cr_buf_free(&b);
}

/* The table of decisions: keyed by authorizer, version and identity; ttl per lookup; bounded in
 * entries and bytes, least recently used out first. */
static void kept(void **state) {
  (void)state;
  cr_authz_opts_t o = {.max_entries = 3, .max_bytes = 1u << 20};
  cr_authz_t *z = cr_authz_new(&o);
  assert_non_null(z);
  cr_authz_decision_t allow = {.allow = 1, .principal = "u1", .context = "{\"r\":1}", .context_len = 7};
  cr_authz_decision_t deny = {.allow = 0};
  cr_authz_decision_t out;
  cr_authz_keep(z, "auth/a", "1-aaa", "tok-1", 5, &allow);
  cr_authz_keep(z, "auth/a", "1-aaa", "tok-2", 5, &deny);
  assert_int_equal(cr_authz_kept_count(z, NULL), 2);
  assert_int_equal(cr_authz_kept(z, "auth/a", "1-aaa", "tok-1", 5, 300, &out), 1);
  assert_int_equal(out.allow, 1);
  assert_string_equal(out.principal, "u1");
  assert_int_equal(out.context_len, 7);
  assert_string_equal(out.context, "{\"r\":1}");
  cr_authz_decision_free(&out);
  assert_int_equal(cr_authz_kept(z, "auth/a", "1-aaa", "tok-2", 5, 300, &out), 1);
  assert_int_equal(out.allow, 0);
  assert_null(out.context);
  /* another version, authorizer or identity (a prefix, a longer one) is not it */
  assert_int_equal(cr_authz_kept(z, "auth/a", "2-bbb", "tok-1", 5, 300, &out), 0);
  assert_int_equal(cr_authz_kept(z, "auth/b", "1-aaa", "tok-1", 5, 300, &out), 0);
  assert_int_equal(cr_authz_kept(z, "auth/a", "1-aaa", "tok-", 4, 300, &out), 0);
  assert_int_equal(cr_authz_kept(z, "auth/a", "1-aaa", "tok-11", 6, 300, &out), 0);
  /* the same key again replaces it */
  cr_authz_keep(z, "auth/a", "1-aaa", "tok-2", 5, &allow);
  assert_int_equal(cr_authz_kept_count(z, NULL), 2);
  assert_int_equal(cr_authz_kept(z, "auth/a", "1-aaa", "tok-2", 5, 300, &out), 1);
  assert_int_equal(out.allow, 1);
  cr_authz_decision_free(&out);
  /* the least recently used goes first: tok-2 was looked up last, tok-1 before it */
  cr_authz_keep(z, "auth/a", "1-aaa", "tok-3", 5, &deny);
  assert_int_equal(cr_authz_kept(z, "auth/a", "1-aaa", "tok-1", 5, 300, &out), 1); /* tok-1 now most recent */
  cr_authz_decision_free(&out);
  cr_authz_keep(z, "auth/a", "1-aaa", "tok-4", 5, &deny); /* evicts tok-2 */
  assert_int_equal(cr_authz_kept_count(z, NULL), 3);
  assert_int_equal(cr_authz_kept(z, "auth/a", "1-aaa", "tok-2", 5, 300, &out), 0);
  assert_int_equal(cr_authz_kept(z, "auth/a", "1-aaa", "tok-1", 5, 300, &out), 1);
  cr_authz_decision_free(&out);
  assert_int_equal(cr_authz_kept(z, "auth/a", "1-aaa", "tok-3", 5, 300, &out), 1);
  assert_int_equal(cr_authz_kept(z, "auth/a", "1-aaa", "tok-4", 5, 300, &out), 1);
  /* ttl is the asker's: a decision younger than 300 s is older than 0.05 s after a while */
  struct timespec ts = {0, 80 * 1000000};
  nanosleep(&ts, NULL);
  assert_int_equal(cr_authz_kept(z, "auth/a", "1-aaa", "tok-4", 5, 0.05, &out), 0);
  assert_int_equal(cr_authz_kept(z, "auth/a", "1-aaa", "tok-4", 5, 300, &out), 1); /* still kept */
  cr_authz_free(z);

  /* the bound in bytes: big contexts push the oldest out */
  char *ctx = malloc(CR_AUTHZ_MAX_CONTEXT + 1);
  assert_non_null(ctx);
  memset(ctx, 'x', CR_AUTHZ_MAX_CONTEXT);
  ctx[CR_AUTHZ_MAX_CONTEXT] = '\0';
  cr_authz_decision_t big = {.allow = 1, .principal = "u", .context = ctx, .context_len = CR_AUTHZ_MAX_CONTEXT};
  cr_authz_opts_t ob = {.max_entries = 1000, .max_bytes = 5 * CR_AUTHZ_MAX_CONTEXT};
  z = cr_authz_new(&ob);
  assert_non_null(z);
  char id[16];
  for (int i = 0; i < 20; i++) {
    snprintf(id, sizeof id, "id-%02d", i);
    cr_authz_keep(z, "auth/a", "1-aaa", id, strlen(id), &big);
    size_t bytes;
    cr_authz_kept_count(z, &bytes);
    assert_true(bytes <= 5 * CR_AUTHZ_MAX_CONTEXT);
  }
  size_t n = cr_authz_kept_count(z, NULL);
  assert_true(n >= 3 && n <= 4);
  assert_int_equal(cr_authz_kept(z, "auth/a", "1-aaa", "id-19", 5, 300, &out), 1);
  assert_int_equal(out.context_len, CR_AUTHZ_MAX_CONTEXT);
  cr_authz_decision_free(&out);
  assert_int_equal(cr_authz_kept(z, "auth/a", "1-aaa", "id-00", 5, 300, &out), 0);
  /* many entries across the buckets, then freed with the table */
  cr_authz_free(z);
  cr_authz_opts_t om = {0};
  z = cr_authz_new(&om);
  assert_non_null(z);
  for (int i = 0; i < CR_AUTHZ_CACHE_ENTRIES + 50; i++) {
    snprintf(id, sizeof id, "m%d", i);
    cr_authz_keep(z, "auth/a", "1-aaa", id, strlen(id), &deny);
  }
  assert_int_equal(cr_authz_kept_count(z, NULL), CR_AUTHZ_CACHE_ENTRIES);
  assert_int_equal(cr_authz_kept(z, "auth/a", "1-aaa", "m49", 3, 300, &out), 0);
  assert_int_equal(cr_authz_kept(z, "auth/a", "1-aaa", "m50", 3, 300, &out), 1);
  cr_authz_free(z);
  free(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(decisions),
      cmocka_unit_test(bounds),
      cmocka_unit_test(identities),
      cmocka_unit_test(kept),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
