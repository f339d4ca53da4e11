/* test_registry.c - functions, versions, listing and routing (core/fn/registry.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "registry.h"
#include "router.h"
#include "settings.h"
#include "shm.h"

/* --- temp folders ------------------------------------------------------------------------------- */

static char g_root[256];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int make_root(void **state) {
  (void)state;
  snprintf(g_root, sizeof g_root, "/tmp/cr-registry-XXXXXX");
  return mkdtemp(g_root) ? 0 : -1;
}

static int remove_root(void **state) {
  (void)state;
  nftw(g_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return 0;
}

/* Creates ROOT/rel (and its folders) with content. */
static void put_file(const char *rel, const char *content) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", g_root, rel);
  for (char *p = path + strlen(g_root) + 1; *p; p++) {
    if (*p == '/') {
      *p = '\0';
      if (mkdir(path, 0755) && errno != EEXIST) fail_msg("mkdir %s: %s", path, strerror(errno));
      *p = '/';
    }
  }
  FILE *f = fopen(path, "w");
  if (!f) fail_msg("create %s: %s", path, strerror(errno));
  fputs(content, f);
  fclose(f);
}

static void put_dir(const char *rel) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", g_root, rel);
  assert_int_equal(mkdir(path, 0755), 0);
}

/* Publishes a version of fn whose settings have the given routes (NULL:
 * no routes setting). */
static cr_fnver_t *publish(cr_registry_t *r, cr_fn_t *fn, const char *src, const char *const *routes, int n) {
  cr_settings_t s;
  cr_settings_defaults(&s);
  if (routes) {
    s.has_routes = 1;
    s.routes = calloc((size_t)(n ? n : 1), sizeof *s.routes);
    for (int i = 0; i < n; i++) {
      const char *sp = strchr(routes[i], ' ');
      s.routes[i].methods = cr_method_parse(routes[i], (size_t)(sp - routes[i]));
      assert_true(s.routes[i].methods != 0);
      s.routes[i].path = strdup(sp + 1);
    }
    s.nroutes = n;
  }
  cr_fnver_t *v = cr_registry_publish(r, fn, strdup(src), strlen(src), &s);
  assert_non_null(v);
  assert_null(s.routes); /* moved */
  return v;
}

static cr_fn_t *routed_to(cr_registry_t *r, unsigned method, const char *path) {
  cr_route_match_t m;
  int rc = cr_router_match(r->router, method, path, strlen(path), &m);
  return rc == 0 ? m.target : NULL;
}

/* --- paths --------------------------------------------------------------------------------------- */

static void test_is_function_path(void **state) {
  (void)state;
  const char *yes[] = {"hello.lua", "users/[id].lua", "a/b/c.lua", "api/lib/x.lua", "lib.lua",
                       "library/x.lua", "docs/[...path].lua", "x_y.lua", "a.b.lua",
                       "test.lua", "x_tests.lua", "my_test/x.lua"};
  const char *no[] = {"_x.lua",   ".x.lua",      "lib/x.lua", "lib/a/b.lua", "_shared/x.lua", "a/_b.lua",
                      "a/.b/c.lua", "x.txt",     "x.lua.bak", ".lua",        "a.LUA",         "/abs.lua",
                      "a//b.lua", "a/.lua",     "",          "lua",         "x.lu",
                      "hello_test.lua", "orders/new_test.lua", "x_test.lua"};
  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
    if (!cr_registry_is_function_path(yes[i])) fail_msg("'%s' should be a function", yes[i]);
  for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
    if (cr_registry_is_function_path(no[i])) fail_msg("'%s' should not be a function", no[i]);
}

static void test_list(void **state) {
  (void)state;
  put_file("hello.lua", "return print");
  put_file("index.lua", "return print");
  put_file("users/[id].lua", "");
  put_file("users/index.lua", "");
  put_file("users/_helper.lua", "");
  put_file("docs/[...path].lua", "");
  put_file("a/b/c/d.lua", "");
  put_file("_private.lua", "");
  put_file(".hidden.lua", "");
  put_file("_mods/x.lua", "");
  put_file(".git/y.lua", "");
  put_file("lib/util.lua", "");
  put_file("lib/deep/z.lua", "");
  put_file("api/lib/w.lua", "");
  put_file("readme.md", "");
  put_file("notes.lua.txt", "");
  put_dir("dir.lua"); /* a folder with a function-like name */
  put_dir("empty");
  char **paths = NULL;
  int n = -1;
  assert_int_equal(cr_registry_list(g_root, &paths, &n), 0);
  const char *want[] = {"a/b/c/d.lua", "api/lib/w.lua", "docs/[...path].lua", "hello.lua",
                        "index.lua",   "users/[id].lua", "users/index.lua"};
  int nwant = (int)(sizeof want / sizeof want[0]);
  for (int i = 0; i < n && i < nwant; i++)
    if (strcmp(paths[i], want[i]) != 0) fail_msg("entry %d is '%s', want '%s'", i, paths[i], want[i]);
  assert_int_equal(n, nwant);
  for (int i = 0; i < n; i++) free(paths[i]);
  free(paths);
}

static void test_list_missing_and_empty(void **state) {
  (void)state;
  char **paths = NULL;
  int n = -1;
  char missing[300];
  snprintf(missing, sizeof missing, "%s/does-not-exist", g_root);
  assert_int_equal(cr_registry_list(missing, &paths, &n), CR_ENOENT);
  put_dir("void");
  char empty[300];
  snprintf(empty, sizeof empty, "%s/void", g_root);
  assert_int_equal(cr_registry_list(empty, &paths, &n), 0);
  assert_int_equal(n, 0);
  free(paths);
}

static void check_route(const char *name, const char *want) {
  char out[256];
  memset(out, 'Z', sizeof out);
  int rc = cr_registry_default_route(name, out, sizeof out);
  if (rc) fail_msg("default route of '%s' failed: %d", name, rc);
  if (strcmp(out, want) != 0) fail_msg("default route of '%s' is '%s', want '%s'", name, out, want);
  char err[128];
  if (cr_router_check_pattern(out, err, sizeof err)) fail_msg("'%s' -> '%s' is not a valid pattern: %s", name, out, err);
}

static void test_default_route(void **state) {
  (void)state;
  check_route("index", "/");
  check_route("hello", "/hello");
  check_route("users/[id]", "/users/:id");
  check_route("users/index", "/users");
  check_route("users/[id]/posts/[post]", "/users/:id/posts/:post");
  check_route("docs/[...path]", "/docs/*path");
  check_route("[...all]", "/*all");
  check_route("[id]", "/:id");
  check_route("a/[b]/c", "/a/:b/c");
  check_route("index/x", "/index/x"); /* only a last "index" disappears */
  check_route("[id]/index", "/:id");
  check_route("a.b", "/a.b");
  char out[8];
  assert_int_equal(cr_registry_default_route("a/very/long/name", out, sizeof out), CR_EINVAL);
  assert_int_equal(cr_registry_default_route("index", out, 1), CR_EINVAL);
  char longname[600];
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  char big[1024];
  assert_int_equal(cr_registry_default_route(longname, big, sizeof big), CR_EINVAL); /* a 599-byte segment */
}

/* --- functions and versions ---------------------------------------------------------------------- */

/* registry.h: "12 hex digits of a 64-bit FNV-1a hash": the standard
 * FNV-1a test vectors, shifted right by 16 bits. */
static void test_hash_is_fnv1a(void **state) {
  (void)state;
  char h[13];
  cr_registry_hash("", 0, h);
  assert_string_equal(h, "cbf29ce48422"); /* the offset basis 0xcbf29ce484222325 */
  cr_registry_hash("a", 1, h);
  assert_string_equal(h, "af63dc4c8601"); /* 0xaf63dc4c8601ec8c */
}

static void test_hash(void **state) {
  (void)state;
  char h[13];
  memset(h, 'Z', sizeof h);
  cr_registry_hash("a", 1, h);
  assert_int_equal(h[12], '\0');
  char h2[13];
  cr_registry_hash("b", 1, h2);
  assert_string_not_equal(h, h2);
  cr_registry_hash("a\0b", 3, h);
  cr_registry_hash("a\0c", 3, h2);
  assert_string_not_equal(h, h2); /* bytes past a NUL count */
  assert_int_equal(strlen(h), 12);
  for (int i = 0; i < 12; i++) assert_non_null(strchr("0123456789abcdef", h[i]));
}

static void test_add_find(void **state) {
  (void)state;
  cr_registry_t *r = cr_registry_new(g_root);
  assert_non_null(r);
  assert_string_equal(r->root, g_root);
  cr_fn_t *a = cr_registry_add(r, "hello.lua");
  assert_non_null(a);
  assert_string_equal(a->name, "hello");
  assert_string_equal(a->relpath, "hello.lua");
  assert_string_equal(a->chunkname, "@hello.lua");
  assert_null(a->current);
  assert_null(a->error);
  assert_int_equal(a->versions, 0);
  cr_fn_t *b = cr_registry_add(r, "users/[id].lua");
  assert_string_equal(b->name, "users/[id]");
  assert_int_not_equal(a->slot, b->slot);
  assert_ptr_equal(cr_registry_add(r, "hello.lua"), a); /* same file, same function */
  assert_int_equal(r->nfns, 2);
  assert_ptr_equal(cr_registry_find(r, "hello"), a);
  assert_ptr_equal(cr_registry_find(r, "users/[id]"), b);
  assert_null(cr_registry_find(r, "hello.lua"));
  assert_null(cr_registry_find(r, "nope"));
  assert_null(cr_registry_add(r, "x"));
  /* Many functions: the array grows, slots stay unique. */
  for (int i = 0; i < 100; i++) {
    char rel[32];
    snprintf(rel, sizeof rel, "f%03d.lua", i);
    assert_non_null(cr_registry_add(r, rel));
  }
  assert_int_equal(r->nfns, 102);
  for (int i = 0; i < r->nfns; i++)
    for (int k = i + 1; k < r->nfns; k++) assert_int_not_equal(r->fns[i]->slot, r->fns[k]->slot);
  assert_string_equal(cr_registry_find(r, "f057")->relpath, "f057.lua");
  /* Slots index shared memory: past its table, no new function (known ones still resolve). */
  for (int i = r->nfns; i < CR_SHM_MAX_FUNCTIONS; i++) {
    char rel[32];
    snprintf(rel, sizeof rel, "g%05d.lua", i);
    cr_fn_t *fn = cr_registry_add(r, rel);
    assert_non_null(fn);
    assert_true(fn->slot < CR_SHM_MAX_FUNCTIONS);
  }
  assert_null(cr_registry_add(r, "one-too-many.lua"));
  assert_ptr_equal(cr_registry_add(r, "hello.lua"), a);
  cr_registry_free(r);
  cr_registry_free(NULL);
}

static void test_publish_versions(void **state) {
  (void)state;
  cr_registry_t *r = cr_registry_new(g_root);
  cr_fn_t *fn = cr_registry_add(r, "hello.lua");
  const char *src1 = "return function() return 1 end";
  cr_settings_t s;
  cr_settings_defaults(&s);
  s.memory = 64;
  s.nenv = 1;
  s.env = malloc(2 * sizeof(char *));
  s.env[0] = strdup("K");
  s.env[1] = strdup("V");
  cr_fnver_t *v1 = cr_registry_publish(r, fn, strdup(src1), strlen(src1), &s);
  assert_non_null(v1);
  assert_null(s.env); /* moved out of the caller's struct */
  assert_int_equal(s.nenv, 0);
  assert_ptr_equal(fn->current, v1);
  assert_ptr_equal(v1->fn, fn);
  assert_int_equal(v1->number, 1);
  assert_int_equal(fn->versions, 1);
  assert_int_equal(v1->refs, 1);
  assert_int_equal(v1->source_len, strlen(src1));
  assert_memory_equal(v1->source, src1, strlen(src1));
  assert_int_equal(v1->settings.memory, 64);
  assert_string_equal(cr_settings_env(&v1->settings, "K"), "V");
  char h[13];
  cr_registry_hash(src1, strlen(src1), h);
  assert_string_equal(v1->hash, h);
  assert_true(v1->loaded_ms > 1600000000000ULL);
  /* A failed load keeps v1 serving and records the error. */
  cr_registry_fail(fn, "hello.lua:1: boom");
  assert_string_equal(fn->error, "hello.lua:1: boom");
  assert_ptr_equal(fn->current, v1);
  assert_true(fn->error_ms > 0);
  cr_registry_fail(fn, "second");
  assert_string_equal(fn->error, "second");
  /* An invocation holds v1 while v2 replaces it. */
  cr_fnver_ref(v1);
  assert_int_equal(v1->refs, 2);
  cr_fnver_t *v2 = publish(r, fn, "return function() return 2 end", NULL, 0);
  assert_ptr_equal(fn->current, v2);
  assert_int_equal(v2->number, 2);
  assert_int_equal(fn->versions, 2);
  assert_null(fn->error); /* cleared by the good version */
  assert_string_not_equal(v1->hash, v2->hash);
  assert_int_equal(v1->refs, 1); /* the registry let go of it */
  assert_memory_equal(v1->source, src1, strlen(src1)); /* still intact for its holder */
  assert_int_equal(v1->settings.memory, 64);
  cr_fnver_unref(v1); /* the last reference: freed (ASan checks) */
  /* The same source again is still a new version (v2 is freed by it). */
  char h2[13];
  memcpy(h2, v2->hash, sizeof h2);
  cr_fnver_t *v3 = publish(r, fn, "return function() return 2 end", NULL, 0);
  assert_int_equal(v3->number, 3);
  assert_string_equal(v3->hash, h2);
  /* A version outliving the registry. */
  cr_fnver_ref(v3);
  cr_registry_free(r);
  assert_int_equal(v3->refs, 1);
  assert_int_equal(v3->number, 3);
  cr_fnver_unref(v3);
}

/* --- routing ------------------------------------------------------------------------------------- */

static void test_route_defaults(void **state) {
  (void)state;
  cr_registry_t *r = cr_registry_new(g_root);
  cr_fn_t *hello = cr_registry_add(r, "hello.lua");
  cr_fn_t *user = cr_registry_add(r, "users/[id].lua");
  cr_fn_t *idx = cr_registry_add(r, "index.lua");
  cr_fn_t *docs = cr_registry_add(r, "docs/[...path].lua");
  publish(r, hello, "return print", NULL, 0); /* a version without a routes setting */
  /* user, idx and docs have no version yet: routed on their default path. */
  assert_int_equal(cr_registry_route(r), 0);
  assert_ptr_equal(routed_to(r, CR_M_GET, "/hello"), hello);
  assert_ptr_equal(routed_to(r, CR_M_DELETE, "/hello"), hello); /* ANY */
  assert_ptr_equal(routed_to(r, CR_M_GET, "/users/42"), user);
  assert_ptr_equal(routed_to(r, CR_M_GET, "/"), idx);
  assert_ptr_equal(routed_to(r, CR_M_GET, "/docs/a/b"), docs);
  assert_true(hello->routed && user->routed && idx->routed && docs->routed);
  assert_null(user->error);
  cr_route_match_t m;
  assert_int_equal(cr_router_match(r->router, CR_M_GET, "/users/42", 9, &m), 0);
  assert_int_equal(m.nparams, 1);
  assert_memory_equal(m.params[0].name, "id", 2);
  /* Routing again (say after a reload) rebuilds the same table. */
  assert_int_equal(cr_registry_route(r), 0);
  assert_ptr_equal(routed_to(r, CR_M_GET, "/hello"), hello);
  /* A routes setting replaces the default path. */
  const char *routes[] = {"GET /hi", "POST /hi/:x"};
  publish(r, hello, "return print", routes, 2);
  assert_int_equal(cr_registry_route(r), 0);
  assert_null(routed_to(r, CR_M_GET, "/hello"));
  assert_ptr_equal(routed_to(r, CR_M_GET, "/hi"), hello);
  assert_ptr_equal(routed_to(r, CR_M_POST, "/hi/1"), hello);
  assert_null(routed_to(r, CR_M_POST, "/hi"));
  cr_registry_free(r);
}

static void test_route_bad_default_path(void **state) {
  (void)state;
  cr_registry_t *r = cr_registry_new(g_root);
  cr_fn_t *bad = cr_registry_add(r, "has space.lua");
  cr_fn_t *ok = cr_registry_add(r, "fine.lua");
  assert_int_equal(cr_registry_route(r), 0);
  assert_non_null(bad->error);
  assert_non_null(strstr(bad->error, "route"));
  assert_int_equal(bad->routed, 0);
  assert_ptr_equal(routed_to(r, CR_M_GET, "/fine"), ok);
  /* With a routes setting it is fine. */
  const char *routes[] = {"GET /spaced"};
  publish(r, bad, "return print", routes, 1);
  assert_int_equal(cr_registry_route(r), 0);
  assert_int_equal(bad->routed, 1);
  assert_ptr_equal(routed_to(r, CR_M_GET, "/spaced"), bad);
  cr_registry_free(r);
}

static void test_route_conflicts(void **state) {
  (void)state;
  cr_registry_t *r = cr_registry_new(g_root);
  cr_fn_t *a = cr_registry_add(r, "a.lua");
  cr_fn_t *b = cr_registry_add(r, "b.lua");
  cr_fn_t *c = cr_registry_add(r, "c.lua");
  const char *ra[] = {"GET /x/:id"};
  const char *rb[] = {"GET /free", "GET /x/:other", "POST /x/:id"};
  const char *rc[] = {"DELETE /x/:id"};
  publish(r, a, "return print", ra, 1);
  publish(r, b, "return print", rb, 3);
  publish(r, c, "return print", rc, 1);
  assert_int_equal(cr_registry_route(r), 1);
  /* a sorts first: it keeps GET /x/:id; b loses that route only. */
  assert_null(a->error);
  assert_true(a->routed);
  assert_true(b->routed);
  assert_true(b->conflict);
  assert_string_equal(b->error, "route conflict: GET /x/:other is also claimed by a.lua, which serves it (of two "
                                "files claiming a route, the one whose path sorts first wins)");
  /* b's other routes serve: a conflict on one route does not take the rest. */
  assert_ptr_equal(routed_to(r, CR_M_GET, "/free"), b);
  assert_ptr_equal(routed_to(r, CR_M_POST, "/x/1"), b);
  /* c shares the shape with other methods: fine. */
  assert_true(c->routed);
  assert_null(c->error);
  assert_ptr_equal(routed_to(r, CR_M_GET, "/x/1"), a);
  assert_ptr_equal(routed_to(r, CR_M_DELETE, "/x/1"), c);
  cr_registry_free(r);
}

/* Every route of the loser lost: not routed at all, and the error counts them. */
static void test_route_conflict_every_route(void **state) {
  (void)state;
  cr_registry_t *r = cr_registry_new(g_root);
  cr_fn_t *a = cr_registry_add(r, "a.lua");
  cr_fn_t *b = cr_registry_add(r, "b.lua");
  const char *routes[] = {"GET /one", "GET /two", "PUT /three"};
  publish(r, a, "return print", routes, 3);
  publish(r, b, "return print", routes, 3);
  assert_int_equal(cr_registry_route(r), 1);
  assert_true(a->routed);
  assert_false(b->routed);
  assert_string_equal(b->error, "route conflict: GET /one is also claimed by a.lua, which serves it (of two files "
                                "claiming a route, the one whose path sorts first wins) (nor 2 more of its routes)");
  cr_registry_free(r);
}

/* The file whose path sorts first wins, whatever order they came in: a
 * newcomer that sorts first takes the route from a function that served
 * it, exactly as a restart (a fresh registry) would decide. */
static void test_route_path_order_wins(void **state) {
  (void)state;
  cr_registry_t *r = cr_registry_new(g_root);
  cr_fn_t *users = cr_registry_add(r, "users.lua");
  const char *ru[] = {"GET /users", "POST /users"};
  const char *rc[] = {"GET /users"};
  publish(r, users, "return print", ru, 2);
  assert_int_equal(cr_registry_route(r), 0);
  cr_fn_t *clash = cr_registry_add(r, "clash.lua");
  publish(r, clash, "return print", rc, 1);
  assert_int_equal(cr_registry_route(r), 1);
  assert_ptr_equal(routed_to(r, CR_M_GET, "/users"), clash);
  assert_ptr_equal(routed_to(r, CR_M_POST, "/users"), users);
  assert_null(clash->error);
  assert_non_null(users->error);
  assert_non_null(strstr(users->error, "GET /users is also claimed by clash.lua"));
  /* Rebuilt again (a rescan, a new version of users): the same winner. */
  publish(r, users, "return print -- v2", ru, 2);
  assert_int_equal(cr_registry_route(r), 1);
  assert_ptr_equal(routed_to(r, CR_M_GET, "/users"), clash);
  cr_registry_free(r);

  /* A restart: the files come in the other order, the same winner. */
  r = cr_registry_new(g_root);
  users = cr_registry_add(r, "users.lua");
  publish(r, users, "return print", ru, 2);
  clash = cr_registry_add(r, "clash.lua");
  publish(r, clash, "return print", rc, 1);
  assert_int_equal(cr_registry_route(r), 1);
  assert_ptr_equal(routed_to(r, CR_M_GET, "/users"), clash);
  assert_ptr_equal(routed_to(r, CR_M_POST, "/users"), users);

  /* A default route conflicts like any other: a function without a version
   * named "users" wants ANY /users, and sorts after clash.lua. */
  cr_fn_t *u = cr_registry_add(r, "users/index.lua");
  assert_int_equal(cr_registry_route(r), 2);
  assert_false(u->routed);
  assert_non_null(strstr(u->error, "ANY /users is also claimed by clash.lua"));
  cr_registry_free(r);
}

/* Once the other function gives the route up, the loser is routed again
 * and no longer reports a conflict that is gone. */
static void test_route_conflict_resolved(void **state) {
  (void)state;
  cr_registry_t *r = cr_registry_new(g_root);
  cr_fn_t *a = cr_registry_add(r, "a.lua");
  cr_fn_t *b = cr_registry_add(r, "b.lua");
  const char *routes[] = {"GET /same"};
  const char *other[] = {"GET /elsewhere"};
  publish(r, a, "return print", routes, 1);
  publish(r, b, "return print", routes, 1);
  assert_int_equal(cr_registry_route(r), 1);
  assert_non_null(b->error);
  publish(r, a, "return print -- moved", other, 1);
  assert_int_equal(cr_registry_route(r), 0);
  assert_true(b->routed);
  assert_ptr_equal(routed_to(r, CR_M_GET, "/same"), b);
  assert_ptr_equal(routed_to(r, CR_M_GET, "/elsewhere"), a);
  const char *stale = b->error ? b->error : "";
  char copy[512];
  snprintf(copy, sizeof copy, "%s", stale);
  cr_registry_free(r);
  if (copy[0]) fail_msg("b.lua is routed but still reports: %s", copy);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_is_function_path),
      cmocka_unit_test_setup_teardown(test_list, make_root, remove_root),
      cmocka_unit_test_setup_teardown(test_list_missing_and_empty, make_root, remove_root),
      cmocka_unit_test(test_default_route),
      cmocka_unit_test(test_hash),
      cmocka_unit_test(test_hash_is_fnv1a),
      cmocka_unit_test_setup_teardown(test_add_find, make_root, remove_root),
      cmocka_unit_test_setup_teardown(test_publish_versions, make_root, remove_root),
      cmocka_unit_test_setup_teardown(test_route_defaults, make_root, remove_root),
      cmocka_unit_test_setup_teardown(test_route_bad_default_path, make_root, remove_root),
      cmocka_unit_test_setup_teardown(test_route_conflicts, make_root, remove_root),
      cmocka_unit_test_setup_teardown(test_route_conflict_every_route, make_root, remove_root),
      cmocka_unit_test_setup_teardown(test_route_path_order_wins, make_root, remove_root),
      cmocka_unit_test_setup_teardown(test_route_conflict_resolved, make_root, remove_root),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
