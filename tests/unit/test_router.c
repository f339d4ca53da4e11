/* test_router.c - the segment trie router (core/fn/router.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "error.h"
#include "router.h"

/* Targets are just distinct addresses. */
static char T1, T2, T3, T4, T5;

static cr_router_t *router_with(void) {
  cr_router_t *r = cr_router_new();
  assert_non_null(r);
  return r;
}

static void add_ok(cr_router_t *r, unsigned methods, const char *pattern, void *target) {
  char err[256] = "";
  void *existing = NULL;
  int rc = cr_router_add(r, methods, pattern, target, &existing, err, sizeof err);
  if (rc != 0) fail_msg("adding '%s' failed: %d %s", pattern, rc, err);
}

static int match(const cr_router_t *r, unsigned method, const char *path, cr_route_match_t *m) {
  return cr_router_match(r, method, path, strlen(path), m);
}

/* The value of param name in m, as a NUL-terminated copy ("" when absent). */
static const char *param(const cr_route_match_t *m, const char *name) {
  static char buf[8][512];
  static int slot;
  char *out = buf[slot++ % 8];
  out[0] = '\0';
  for (int i = 0; i < m->nparams; i++) {
    if (m->params[i].name_len == strlen(name) && memcmp(m->params[i].name, name, m->params[i].name_len) == 0) {
      snprintf(out, 512, "%.*s", (int)m->params[i].value_len, m->params[i].value);
      return out;
    }
  }
  snprintf(out, 512, "<absent>");
  return out;
}

static void test_static_routes(void **state) {
  (void)state;
  cr_router_t *r = router_with();
  add_ok(r, CR_M_ANY, "/", &T1);
  add_ok(r, CR_M_GET, "/users", &T2);
  add_ok(r, CR_M_GET, "/users/me", &T3);
  add_ok(r, CR_M_GET, "/a/b/c/d", &T4);
  cr_route_match_t m;
  assert_int_equal(match(r, CR_M_GET, "/", &m), 0);
  assert_ptr_equal(m.target, &T1);
  assert_string_equal(m.pattern, "/");
  assert_int_equal(m.nparams, 0);
  assert_int_equal(match(r, CR_M_GET, "/users", &m), 0);
  assert_ptr_equal(m.target, &T2);
  assert_string_equal(m.pattern, "/users");
  assert_int_equal(match(r, CR_M_GET, "/users/me", &m), 0);
  assert_ptr_equal(m.target, &T3);
  assert_int_equal(match(r, CR_M_GET, "/a/b/c/d", &m), 0);
  assert_ptr_equal(m.target, &T4);
  assert_int_equal(match(r, CR_M_GET, "/a/b/c", &m), CR_ENOENT);
  assert_int_equal(match(r, CR_M_GET, "/a/b/c/d/e", &m), CR_ENOENT);
  assert_int_equal(match(r, CR_M_GET, "/user", &m), CR_ENOENT);
  assert_int_equal(match(r, CR_M_GET, "/usersx", &m), CR_ENOENT);
  assert_int_equal(match(r, CR_M_GET, "/USERS", &m), CR_ENOENT); /* case-sensitive */
  /* Not a path at all. */
  assert_int_equal(match(r, CR_M_GET, "", &m), CR_ENOENT);
  assert_int_equal(match(r, CR_M_GET, "users", &m), CR_ENOENT);
  assert_int_equal(match(r, CR_M_GET, "*", &m), CR_ENOENT);
  /* The length is honoured: the path is not NUL-terminated where it ends. */
  assert_int_equal(cr_router_match(r, CR_M_GET, "/users/meXYZ", 6, &m), 0);
  assert_ptr_equal(m.target, &T2);
  cr_router_free(r);
}

static void test_params(void **state) {
  (void)state;
  cr_router_t *r = router_with();
  add_ok(r, CR_M_GET, "/users/:id", &T1);
  add_ok(r, CR_M_GET, "/users/:id/posts/:post", &T2);
  cr_route_match_t m;
  assert_int_equal(match(r, CR_M_GET, "/users/42", &m), 0);
  assert_ptr_equal(m.target, &T1);
  assert_string_equal(m.pattern, "/users/:id");
  assert_int_equal(m.nparams, 1);
  assert_string_equal(param(&m, "id"), "42");
  assert_int_equal(match(r, CR_M_GET, "/users/42/posts/7", &m), 0);
  assert_ptr_equal(m.target, &T2);
  assert_int_equal(m.nparams, 2);
  assert_string_equal(param(&m, "id"), "42");
  assert_string_equal(param(&m, "post"), "7");
  /* A param is one non-empty segment. */
  assert_int_equal(match(r, CR_M_GET, "/users/", &m), CR_ENOENT);
  assert_int_equal(match(r, CR_M_GET, "/users//posts/7", &m), CR_ENOENT);
  assert_int_equal(match(r, CR_M_GET, "/users/42/posts", &m), CR_ENOENT);
  cr_router_free(r);
}

/* Params are raw slices of the path: percent-encoding untouched, pointing
 * into the caller's buffer. */
static void test_params_are_raw_slices(void **state) {
  (void)state;
  cr_router_t *r = router_with();
  add_ok(r, CR_M_GET, "/files/:name/:ext", &T1);
  add_ok(r, CR_M_GET, "/raw/*rest", &T2);
  cr_route_match_t m;
  const char *path = "/files/a%20b%2Fc/t%C3%A9";
  assert_int_equal(match(r, CR_M_GET, path, &m), 0);
  assert_int_equal(m.nparams, 2);
  assert_string_equal(param(&m, "name"), "a%20b%2Fc");
  assert_string_equal(param(&m, "ext"), "t%C3%A9");
  assert_ptr_equal(m.params[0].value, path + 7);
  assert_int_equal(m.params[0].value_len, 9);
  assert_ptr_equal(m.params[1].value, path + 17);
  assert_string_equal(m.params[0].name, "name");
  assert_int_equal(m.params[0].name_len, 4);
  const char *p2 = "/raw/x/%2e%2e/y";
  assert_int_equal(match(r, CR_M_GET, p2, &m), 0);
  assert_ptr_equal(m.target, &T2);
  assert_string_equal(param(&m, "rest"), "x/%2e%2e/y");
  assert_ptr_equal(m.params[0].value, p2 + 5);
  cr_router_free(r);
}

static void test_wildcard(void **state) {
  (void)state;
  cr_router_t *r = router_with();
  add_ok(r, CR_M_GET, "/docs/*path", &T1);
  add_ok(r, CR_M_GET, "/any/*", &T2);
  cr_route_match_t m;
  assert_int_equal(match(r, CR_M_GET, "/docs/a/b/c.html", &m), 0);
  assert_ptr_equal(m.target, &T1);
  assert_int_equal(m.nparams, 1);
  assert_string_equal(param(&m, "path"), "a/b/c.html");
  assert_int_equal(match(r, CR_M_GET, "/docs/x", &m), 0);
  assert_string_equal(param(&m, "path"), "x");
  /* The rest may be empty. */
  assert_int_equal(match(r, CR_M_GET, "/docs", &m), 0);
  assert_ptr_equal(m.target, &T1);
  assert_int_equal(m.nparams, 1);
  assert_string_equal(param(&m, "path"), "");
  assert_int_equal(match(r, CR_M_GET, "/docs/", &m), 0);
  assert_ptr_equal(m.target, &T1);
  assert_string_equal(param(&m, "path"), "");
  /* An unnamed wildcard is reported as "*". */
  assert_int_equal(match(r, CR_M_GET, "/any/thing/else", &m), 0);
  assert_ptr_equal(m.target, &T2);
  assert_int_equal(m.nparams, 1);
  assert_string_equal(param(&m, "*"), "thing/else");
  assert_int_equal(match(r, CR_M_GET, "/docsx/a", &m), CR_ENOENT);
  /* A root wildcard catches everything, including "/". */
  add_ok(r, CR_M_GET, "/*all", &T3);
  assert_int_equal(match(r, CR_M_GET, "/", &m), 0);
  assert_ptr_equal(m.target, &T3);
  assert_string_equal(param(&m, "all"), "");
  assert_int_equal(match(r, CR_M_GET, "/nothing/here", &m), 0);
  assert_ptr_equal(m.target, &T3);
  assert_string_equal(param(&m, "all"), "nothing/here");
  cr_router_free(r);
}

/* static beats :param beats *, segment by segment, and a dead end in a
 * better branch falls back to the next one. */
static void test_priority_and_backtracking(void **state) {
  (void)state;
  cr_router_t *r = router_with();
  /* Added in the "wrong" order on purpose. */
  add_ok(r, CR_M_GET, "/users/*rest", &T3);
  add_ok(r, CR_M_GET, "/users/:id", &T2);
  add_ok(r, CR_M_GET, "/users/me", &T1);
  add_ok(r, CR_M_GET, "/users/me/settings", &T4);
  add_ok(r, CR_M_GET, "/users/:id/profile", &T5);
  cr_route_match_t m;
  assert_int_equal(match(r, CR_M_GET, "/users/me", &m), 0);
  assert_ptr_equal(m.target, &T1);
  assert_int_equal(match(r, CR_M_GET, "/users/42", &m), 0);
  assert_ptr_equal(m.target, &T2);
  assert_string_equal(param(&m, "id"), "42");
  assert_int_equal(match(r, CR_M_GET, "/users/42/x/y", &m), 0);
  assert_ptr_equal(m.target, &T3);
  assert_string_equal(param(&m, "rest"), "42/x/y");
  assert_int_equal(match(r, CR_M_GET, "/users/me/settings", &m), 0);
  assert_ptr_equal(m.target, &T4);
  /* "me" is static, but /users/me/profile only exists through :id. */
  assert_int_equal(match(r, CR_M_GET, "/users/me/profile", &m), 0);
  assert_ptr_equal(m.target, &T5);
  assert_int_equal(m.nparams, 1);
  assert_string_equal(param(&m, "id"), "me");
  /* Nothing deeper than static or param: the wildcard takes it, and the
   * params collected on the failed branches are not reported. */
  assert_int_equal(match(r, CR_M_GET, "/users/me/other", &m), 0);
  assert_ptr_equal(m.target, &T3);
  assert_int_equal(m.nparams, 1);
  assert_string_equal(param(&m, "rest"), "me/other");
  cr_router_free(r);
}

static void test_backtracking_deep(void **state) {
  (void)state;
  cr_router_t *r = router_with();
  add_ok(r, CR_M_GET, "/a/b/c", &T1);
  add_ok(r, CR_M_GET, "/a/:x/d", &T2);
  add_ok(r, CR_M_GET, "/:y/b/e", &T3);
  add_ok(r, CR_M_GET, "/:y/:z/f", &T4);
  cr_route_match_t m;
  assert_int_equal(match(r, CR_M_GET, "/a/b/c", &m), 0);
  assert_ptr_equal(m.target, &T1);
  assert_int_equal(match(r, CR_M_GET, "/a/b/d", &m), 0);
  assert_ptr_equal(m.target, &T2);
  assert_string_equal(param(&m, "x"), "b");
  assert_int_equal(m.nparams, 1);
  assert_int_equal(match(r, CR_M_GET, "/a/b/e", &m), 0);
  assert_ptr_equal(m.target, &T3);
  assert_string_equal(param(&m, "y"), "a");
  assert_int_equal(m.nparams, 1);
  assert_int_equal(match(r, CR_M_GET, "/a/b/f", &m), 0);
  assert_ptr_equal(m.target, &T4);
  assert_int_equal(m.nparams, 2);
  assert_string_equal(param(&m, "y"), "a");
  assert_string_equal(param(&m, "z"), "b");
  assert_int_equal(match(r, CR_M_GET, "/a/b/g", &m), CR_ENOENT);
  cr_router_free(r);
}

static void test_trailing_slash(void **state) {
  (void)state;
  cr_router_t *r = router_with();
  add_ok(r, CR_M_GET, "/users/", &T1); /* the same as /users */
  add_ok(r, CR_M_GET, "/items/:id", &T2);
  cr_route_match_t m;
  assert_int_equal(match(r, CR_M_GET, "/users", &m), 0);
  assert_ptr_equal(m.target, &T1);
  assert_int_equal(match(r, CR_M_GET, "/users/", &m), 0);
  assert_ptr_equal(m.target, &T1);
  assert_int_equal(match(r, CR_M_GET, "/items/9/", &m), 0);
  assert_ptr_equal(m.target, &T2);
  assert_string_equal(param(&m, "id"), "9"); /* without the slash */
  /* And adding /users again conflicts with /users/. */
  void *existing = NULL;
  char err[128];
  assert_int_equal(cr_router_add(r, CR_M_GET, "/users", &T3, &existing, err, sizeof err), CR_ECONFLICT);
  assert_ptr_equal(existing, &T1);
  cr_router_free(r);
}

static void test_percent_encoded_static(void **state) {
  (void)state;
  cr_router_t *r = router_with();
  add_ok(r, CR_M_GET, "/hello", &T1);
  add_ok(r, CR_M_GET, "/caf\xc3\xa9/menu", &T2);
  add_ok(r, CR_M_GET, "/a:b", &T3); /* ':' inside a segment is static text */
  cr_route_match_t m;
  assert_int_equal(match(r, CR_M_GET, "/h%65llo", &m), 0);
  assert_ptr_equal(m.target, &T1);
  assert_int_equal(match(r, CR_M_GET, "/%68%65%6C%6c%6F", &m), 0); /* both hex cases */
  assert_ptr_equal(m.target, &T1);
  assert_int_equal(match(r, CR_M_GET, "/caf%C3%A9/menu", &m), 0);
  assert_ptr_equal(m.target, &T2);
  assert_int_equal(match(r, CR_M_GET, "/caf\xc3\xa9/menu", &m), 0);
  assert_ptr_equal(m.target, &T2);
  assert_int_equal(match(r, CR_M_GET, "/a%3Ab", &m), 0);
  assert_ptr_equal(m.target, &T3);
  /* An encoded slash does not split segments. */
  add_ok(r, CR_M_GET, "/x/y", &T4);
  assert_int_equal(match(r, CR_M_GET, "/x%2Fy", &m), CR_ENOENT);
  /* Broken escapes are compared as they are. */
  assert_int_equal(match(r, CR_M_GET, "/hell%6", &m), CR_ENOENT);
  assert_int_equal(match(r, CR_M_GET, "/hello%", &m), CR_ENOENT);
  assert_int_equal(match(r, CR_M_GET, "/h%zzllo", &m), CR_ENOENT);
  add_ok(r, CR_M_GET, "/100%", &T5);
  assert_int_equal(match(r, CR_M_GET, "/100%", &m), 0);
  assert_ptr_equal(m.target, &T5);
  assert_int_equal(match(r, CR_M_GET, "/100%25", &m), 0);
  assert_ptr_equal(m.target, &T5);
  cr_router_free(r);
}

/* A first segment "_" is the platform's: only a static "_" route matches
 * it, never a :param or * (issue 10: "GET /:any/health" answered /_/health). */
static void test_reserved_first_segment(void **state) {
  (void)state;
  cr_router_t *r = router_with();
  add_ok(r, CR_M_GET, "/:any/health", &T1);
  add_ok(r, CR_M_GET, "/*rest", &T2);
  add_ok(r, CR_M_GET, "/:a/:b/:c", &T4);
  cr_route_match_t m;
  assert_int_equal(match(r, CR_M_GET, "/_/health", &m), CR_ENOENT);
  assert_int_equal(match(r, CR_M_GET, "/%5f/health", &m), CR_ENOENT);
  assert_int_equal(match(r, CR_M_GET, "/%5F/health", &m), CR_ENOENT);
  assert_int_equal(match(r, CR_M_GET, "/_", &m), CR_ENOENT);
  assert_int_equal(match(r, CR_M_GET, "/_/", &m), CR_ENOENT);
  assert_int_equal(match(r, CR_M_GET, "/_/a/b", &m), CR_ENOENT);
  /* Not reserved: other first segments, "_" further down, "_x". */
  assert_int_equal(match(r, CR_M_GET, "/x/health", &m), 0);
  assert_ptr_equal(m.target, &T1);
  assert_int_equal(match(r, CR_M_GET, "/x/_/y", &m), 0);
  assert_ptr_equal(m.target, &T4);
  assert_int_equal(match(r, CR_M_GET, "/_x/health", &m), 0);
  assert_ptr_equal(m.target, &T1);
  assert_int_equal(match(r, CR_M_GET, "/", &m), 0);
  assert_ptr_equal(m.target, &T2);
  /* A static "_" route (the platform's) does match. */
  add_ok(r, CR_M_GET, "/_/storage/*key", &T3);
  assert_int_equal(match(r, CR_M_GET, "/_/storage/a/b", &m), 0);
  assert_ptr_equal(m.target, &T3);
  assert_string_equal(param(&m, "key"), "a/b");
  assert_int_equal(match(r, CR_M_GET, "/%5F/storage/a", &m), 0);
  assert_ptr_equal(m.target, &T3);
  assert_int_equal(match(r, CR_M_GET, "/_/health", &m), CR_ENOENT);
  cr_router_free(r);
}

/* Whole static paths are found in one lookup (a hash beside the trie): the
 * answers must be the trie's, for many routes, for methods the static route
 * lacks (backtracking to a :param route), and for paths too long to key. */
static void test_many_static_routes(void **state) {
  (void)state;
  cr_router_t *r = router_with();
  static char targets[600];
  char path[64];
  for (int i = 0; i < 600; i++) {
    snprintf(path, sizeof path, i % 3 ? "/fn%d" : "/deep/%d/leaf", i);
    add_ok(r, CR_M_GET, path, &targets[i]);
  }
  add_ok(r, CR_M_POST, "/fn1", &T1); /* a second method on a hashed path */
  add_ok(r, CR_M_PUT, "/deep/:n/leaf", &T2);
  cr_route_match_t m;
  for (int i = 0; i < 600; i++) {
    snprintf(path, sizeof path, i % 3 ? "/fn%d" : "/deep/%d/leaf/", i); /* a trailing slash too */
    assert_int_equal(match(r, CR_M_GET, path, &m), 0);
    assert_ptr_equal(m.target, &targets[i]);
    assert_int_equal(m.nparams, 0);
  }
  assert_int_equal(match(r, CR_M_POST, "/fn1", &m), 0);
  assert_ptr_equal(m.target, &T1);
  assert_int_equal(match(r, CR_M_HEAD, "/fn2", &m), 0);
  assert_ptr_equal(m.target, &targets[2]);
  /* The static route has no PUT: the :param route answers, with its param. */
  assert_int_equal(match(r, CR_M_PUT, "/deep/3/leaf", &m), 0);
  assert_ptr_equal(m.target, &T2);
  assert_string_equal(param(&m, "n"), "3");
  assert_int_equal(match(r, CR_M_DELETE, "/fn1", &m), CR_EINVAL);
  assert_int_equal(m.allowed, CR_M_GET | CR_M_HEAD | CR_M_POST);
  assert_int_equal(match(r, CR_M_GET, "/fn", &m), CR_ENOENT);
  assert_int_equal(match(r, CR_M_GET, "/fn10/x", &m), CR_ENOENT);
  assert_int_equal(match(r, CR_M_GET, "/deep//leaf", &m), CR_ENOENT);
  /* A path longer than the lookup's key is found through the trie. */
  char longp[1600];
  size_t n = 0;
  for (int i = 0; i < 20; i++) { /* 20 segments of 71 bytes */
    longp[n++] = '/';
    memset(longp + n, 'a' + i, 70);
    n += 70;
  }
  longp[n] = '\0';
  add_ok(r, CR_M_GET, longp, &T3);
  assert_int_equal(match(r, CR_M_GET, longp, &m), 0);
  assert_ptr_equal(m.target, &T3);
  cr_router_free(r);
}

static void test_404_vs_405(void **state) {
  (void)state;
  cr_router_t *r = router_with();
  add_ok(r, CR_M_GET, "/things", &T1);
  add_ok(r, CR_M_POST | CR_M_PUT, "/things/:id", &T2);
  cr_route_match_t m;
  assert_int_equal(match(r, CR_M_GET, "/nothing", &m), CR_ENOENT);
  assert_int_equal(m.allowed, 0);
  assert_int_equal(match(r, CR_M_DELETE, "/things", &m), CR_EINVAL);
  assert_int_equal(m.allowed, CR_M_GET | CR_M_HEAD); /* GET implies HEAD */
  assert_int_equal(match(r, CR_M_GET, "/things/5", &m), CR_EINVAL);
  assert_int_equal(m.allowed, CR_M_POST | CR_M_PUT);
  assert_int_equal(match(r, CR_M_HEAD, "/things/5", &m), CR_EINVAL); /* no GET there */
  assert_int_equal(match(r, CR_M_OTHER, "/things/5", &m), CR_EINVAL);
  assert_int_equal(match(r, CR_M_PUT, "/things/5", &m), 0);
  assert_ptr_equal(m.target, &T2);
  /* The allowed set gathers every pattern that matches the path. */
  add_ok(r, CR_M_DELETE, "/things/*rest", &T3);
  assert_int_equal(match(r, CR_M_PATCH, "/things/5", &m), CR_EINVAL);
  assert_int_equal(m.allowed, CR_M_POST | CR_M_PUT | CR_M_DELETE);
  /* ... and a 405 on a static branch does not hide a match elsewhere. */
  add_ok(r, CR_M_GET, "/things/special", &T4);
  assert_int_equal(match(r, CR_M_POST, "/things/special", &m), 0);
  assert_ptr_equal(m.target, &T2);
  assert_string_equal(param(&m, "id"), "special");
  /* ANY answers anything, including methods the router has no bit name for. */
  add_ok(r, CR_M_ANY, "/open", &T5);
  assert_int_equal(match(r, CR_M_OTHER, "/open", &m), 0);
  assert_ptr_equal(m.target, &T5);
  cr_router_free(r);
}

static void test_head_falls_back_to_get(void **state) {
  (void)state;
  cr_router_t *r = router_with();
  add_ok(r, CR_M_GET, "/page", &T1);
  add_ok(r, CR_M_GET, "/both", &T2);
  add_ok(r, CR_M_HEAD, "/both", &T3);
  cr_route_match_t m;
  assert_int_equal(match(r, CR_M_HEAD, "/page", &m), 0);
  assert_ptr_equal(m.target, &T1);
  /* An explicit HEAD route wins over the GET fallback, whatever the order. */
  assert_int_equal(match(r, CR_M_HEAD, "/both", &m), 0);
  assert_ptr_equal(m.target, &T3);
  assert_int_equal(match(r, CR_M_GET, "/both", &m), 0);
  assert_ptr_equal(m.target, &T2);
  /* HEAD added before GET. */
  add_ok(r, CR_M_HEAD, "/rev", &T4);
  add_ok(r, CR_M_GET, "/rev", &T5);
  assert_int_equal(match(r, CR_M_HEAD, "/rev", &m), 0);
  assert_ptr_equal(m.target, &T4);
  /* POST-only: HEAD is a 405 and not in allowed. */
  add_ok(r, CR_M_POST, "/form", &T1);
  assert_int_equal(match(r, CR_M_HEAD, "/form", &m), CR_EINVAL);
  assert_int_equal(m.allowed, CR_M_POST);
  cr_router_free(r);
}

static void test_conflicts(void **state) {
  (void)state;
  cr_router_t *r = router_with();
  char err[256];
  void *existing = NULL;
  add_ok(r, CR_M_GET | CR_M_POST, "/users/:id", &T1);
  /* Same shape, other param name, overlapping methods. */
  assert_int_equal(cr_router_add(r, CR_M_POST, "/users/:name", &T2, &existing, err, sizeof err), CR_ECONFLICT);
  assert_ptr_equal(existing, &T1);
  existing = NULL;
  assert_int_equal(cr_router_add(r, CR_M_ANY, "/users/:x/", &T2, &existing, err, sizeof err), CR_ECONFLICT);
  assert_ptr_equal(existing, &T1);
  /* Different methods on the same shape are fine. */
  add_ok(r, CR_M_DELETE, "/users/:uid", &T2);
  cr_route_match_t m;
  assert_int_equal(match(r, CR_M_DELETE, "/users/3", &m), 0);
  assert_ptr_equal(m.target, &T2);
  assert_string_equal(param(&m, "uid"), "3"); /* each route keeps its own names */
  assert_int_equal(match(r, CR_M_GET, "/users/3", &m), 0);
  assert_ptr_equal(m.target, &T1);
  assert_string_equal(param(&m, "id"), "3");
  /* Static vs param is not a conflict (static wins at match time). */
  add_ok(r, CR_M_GET, "/users/me", &T3);
  /* Wildcards: named or not, same shape. */
  add_ok(r, CR_M_GET, "/files/*", &T4);
  existing = NULL;
  assert_int_equal(cr_router_add(r, CR_M_GET, "/files/*path", &T5, &existing, err, sizeof err), CR_ECONFLICT);
  assert_ptr_equal(existing, &T4);
  /* probe says the same without adding. */
  existing = NULL;
  assert_int_equal(cr_router_probe(r, CR_M_GET, "/users/:zzz", &existing), CR_ECONFLICT);
  assert_ptr_equal(existing, &T1);
  assert_int_equal(cr_router_probe(r, CR_M_PUT, "/users/:zzz", &existing), 0);
  assert_int_equal(cr_router_probe(r, CR_M_PUT, "/new/path", &existing), 0);
  assert_int_equal(cr_router_probe(r, CR_M_PUT, "no-slash", &existing), CR_EINVAL);
  /* probe did not add: PUT on /users/:zzz still free, /new/path unknown. */
  assert_int_equal(match(r, CR_M_PUT, "/new/path", &m), CR_ENOENT);
  add_ok(r, CR_M_PUT, "/users/:zzz", &T5);
  /* A refused add leaves the router as it was. */
  assert_int_equal(match(r, CR_M_POST, "/users/1", &m), 0);
  assert_ptr_equal(m.target, &T1);
  /* No method at all is a bad route. */
  assert_int_equal(cr_router_add(r, 0, "/none", &T1, &existing, err, sizeof err), CR_EINVAL);
  assert_int_equal(match(r, CR_M_GET, "/none", &m), CR_ENOENT);
  cr_router_free(r);
}

static void check_bad(const char *pattern, const char *needle) {
  char err[256] = "";
  if (cr_router_check_pattern(pattern, err, sizeof err) != CR_EINVAL)
    fail_msg("pattern '%s' should be refused", pattern);
  if (!strstr(err, needle)) fail_msg("error for '%s' is '%s', expected to contain '%s'", pattern, err, needle);
  /* add refuses it the same way, and adds nothing */
  cr_router_t *r = router_with();
  void *existing = NULL;
  char err2[256] = "";
  assert_int_equal(cr_router_add(r, CR_M_GET, pattern, &T1, &existing, err2, sizeof err2), CR_EINVAL);
  assert_true(err2[0] != '\0');
  cr_router_free(r);
}

static void check_good(const char *pattern) {
  char err[256] = "";
  if (cr_router_check_pattern(pattern, err, sizeof err) != 0) fail_msg("pattern '%s' refused: %s", pattern, err);
}

static void test_bad_patterns(void **state) {
  (void)state;
  check_bad("", "must start with /");
  check_bad("users", "must start with /");
  check_bad("/a//b", "empty segment");
  check_bad("/users/:", "parameter name");
  check_bad("/users/:1d", "bad parameter name");
  check_bad("/users/:i-d", "bad parameter name");
  check_bad("/files/*/more", "last segment");
  check_bad("/files/*rest/more", "last segment");
  check_bad("/a/:id/b/:id", "twice");
  check_bad("/a/:rest/*rest", "twice");
  check_bad("/a b", "not allowed");
  check_bad("/a?b", "not allowed");
  check_bad("/a#b", "not allowed");
  check_bad("/a\tb", "not allowed");
  check_bad("/a\x7f", "not allowed");
  char many[512] = "";
  for (int i = 0; i < CR_ROUTER_MAX_PARAMS + 1; i++) snprintf(many + strlen(many), sizeof many - strlen(many), "/:p%d", i);
  check_bad(many, "more than");
  char deep[1024] = "";
  for (int i = 0; i < 70; i++) strcat(deep, "/s");
  check_bad(deep, "too many segments");
  check_good("/");
  check_good("/a");
  check_good("/a/");
  check_good("/:a_1/:B2/*");
  check_good("/x/*_rest");
  check_good("/caf\xc3\xa9");
  check_good("/a:b/c*d"); /* ':' and '*' inside a segment are text */
  char params16[512] = "";
  for (int i = 0; i < CR_ROUTER_MAX_PARAMS; i++) snprintf(params16 + strlen(params16), sizeof params16 - strlen(params16), "/:p%d", i);
  check_good(params16);
  /* A small err buffer is not overrun. */
  char tiny[8];
  memset(tiny, 'Z', sizeof tiny);
  assert_int_equal(cr_router_check_pattern("no-slash-and-a-long-name", tiny, 4), CR_EINVAL);
  assert_int_equal(tiny[3], '\0');
  assert_int_equal(tiny[4], 'Z');
}

static void test_max_params_match(void **state) {
  (void)state;
  char pattern[512] = "", path[512] = "";
  for (int i = 0; i < CR_ROUTER_MAX_PARAMS; i++) {
    snprintf(pattern + strlen(pattern), sizeof pattern - strlen(pattern), "/:p%d", i);
    snprintf(path + strlen(path), sizeof path - strlen(path), "/v%d", i);
  }
  cr_router_t *r = router_with();
  add_ok(r, CR_M_GET, pattern, &T1);
  cr_route_match_t m;
  assert_int_equal(match(r, CR_M_GET, path, &m), 0);
  assert_int_equal(m.nparams, CR_ROUTER_MAX_PARAMS);
  assert_string_equal(param(&m, "p0"), "v0");
  assert_string_equal(param(&m, "p15"), "v15");
  /* One segment more does not match, and does not overflow anything. */
  strcat(path, "/extra");
  assert_int_equal(match(r, CR_M_GET, path, &m), CR_ENOENT);
  cr_router_free(r);
}

/* router.h: param names live as long as the process, so an invocation that
 * matched a router replaced by a reload can still read its params. */
static void test_param_names_outlive_router(void **state) {
  (void)state;
  cr_router_t *r = router_with();
  add_ok(r, CR_M_GET, "/users/:userId/files/*filePath", &T1);
  cr_route_match_t m;
  assert_int_equal(match(r, CR_M_GET, "/users/7/files/a/b", &m), 0);
  cr_router_free(r);
  /* A new router with other routes comes and goes in between. */
  cr_router_t *r2 = router_with();
  add_ok(r2, CR_M_GET, "/other/:x", &T2);
  cr_router_free(r2);
  assert_int_equal(m.nparams, 2);
  assert_int_equal(m.params[0].name_len, 6);
  assert_memory_equal(m.params[0].name, "userId", 6);
  assert_int_equal(m.params[1].name_len, 8);
  assert_memory_equal(m.params[1].name, "filePath", 8);
}

static void test_method_parse(void **state) {
  (void)state;
  assert_int_equal(cr_method_parse("GET", 3), CR_M_GET);
  assert_int_equal(cr_method_parse("HEAD", 4), CR_M_HEAD);
  assert_int_equal(cr_method_parse("POST", 4), CR_M_POST);
  assert_int_equal(cr_method_parse("PUT", 3), CR_M_PUT);
  assert_int_equal(cr_method_parse("PATCH", 5), CR_M_PATCH);
  assert_int_equal(cr_method_parse("DELETE", 6), CR_M_DELETE);
  assert_int_equal(cr_method_parse("OPTIONS", 7), CR_M_OPTIONS);
  assert_int_equal(cr_method_parse("ANY", 3), CR_M_ANY);
  assert_int_equal(cr_method_parse("GETX", 3), CR_M_GET); /* length decides */
  assert_int_equal(cr_method_parse("GETX", 4), 0);
  assert_int_equal(cr_method_parse("GE", 2), 0);
  assert_int_equal(cr_method_parse("", 0), 0);
  assert_int_equal(cr_method_parse("get", 3), 0);
  assert_int_equal(cr_method_parse("PROPFIND", 8), 0);
  assert_int_equal(cr_method_parse("OTHER", 5), 0);
}

static void test_method_list(void **state) {
  (void)state;
  char out[128];
  assert_int_equal(cr_method_list(CR_M_GET, out, sizeof out), 3);
  assert_string_equal(out, "GET");
  size_t n = cr_method_list(CR_M_POST | CR_M_GET | CR_M_HEAD, out, sizeof out);
  assert_string_equal(out, "GET, HEAD, POST");
  assert_int_equal(n, strlen(out));
  cr_method_list(CR_M_ANY, out, sizeof out);
  assert_string_equal(out, "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
  assert_int_equal(cr_method_list(0, out, sizeof out), 0);
  assert_string_equal(out, "");
  /* Too small: stops at a whole name, never overruns, stays terminated. */
  char small[12];
  memset(small, 'Z', sizeof small);
  n = cr_method_list(CR_M_GET | CR_M_HEAD | CR_M_POST, small, 10);
  assert_string_equal(small, "GET, HEAD");
  assert_int_equal(n, 9);
  assert_int_equal(small[10], 'Z');
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_static_routes),
      cmocka_unit_test(test_params),
      cmocka_unit_test(test_params_are_raw_slices),
      cmocka_unit_test(test_wildcard),
      cmocka_unit_test(test_priority_and_backtracking),
      cmocka_unit_test(test_backtracking_deep),
      cmocka_unit_test(test_trailing_slash),
      cmocka_unit_test(test_percent_encoded_static),
      cmocka_unit_test(test_reserved_first_segment),
      cmocka_unit_test(test_many_static_routes),
      cmocka_unit_test(test_404_vs_405),
      cmocka_unit_test(test_head_falls_back_to_get),
      cmocka_unit_test(test_conflicts),
      cmocka_unit_test(test_bad_patterns),
      cmocka_unit_test(test_max_params_match),
      cmocka_unit_test(test_param_names_outlive_router),
      cmocka_unit_test(test_method_parse),
      cmocka_unit_test(test_method_list),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
