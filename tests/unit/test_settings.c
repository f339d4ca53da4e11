/* test_settings.c - reading, validating and moving function settings (core/settings.c). */
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
#include "router.h"
#include "settings.h"
#include "vm.h"

static cr_vm_t *g_vm;
static char g_err[1024];

static int setup(void **state) {
  (void)state;
  g_vm = cr_vm_new();
  return g_vm ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  cr_vm_free(g_vm);
  g_vm = NULL;
  return 0;
}

/* Runs chunk in the sandbox and reads what it returns. Checks the Lua
 * stack is left as it was, and that a failure leaves defaults behind. */
static int read_chunk(const char *chunk, cr_settings_t *s) {
  lua_State *L = g_vm->L;
  lua_settop(L, 0);
  lua_pushliteral(L, "below"); /* something under the value, to catch stack mistakes */
  if (luaL_loadstring(L, chunk) || lua_pcall(L, 0, 1, 0)) fail_msg("chunk failed: %s", lua_tostring(L, -1));
  int top = lua_gettop(L);
  g_err[0] = '\0';
  int rc = cr_settings_read(L, -1, s, g_err, sizeof g_err);
  assert_int_equal(lua_gettop(L), top);
  assert_string_equal(lua_tostring(L, 1), "below");
  if (rc) {
    assert_int_equal(rc, CR_EINVAL);
    assert_true(g_err[0] != '\0');
    assert_int_equal(s->nroutes, 0);
    assert_null(s->routes);
    assert_int_equal(s->nenv, 0);
    assert_null(s->env);
    assert_null(s->triggers);
  }
  lua_settop(L, 0);
  return rc;
}

/* chunk must be refused with an error containing every needle. */
static void refused(const char *chunk, const char *needle1, const char *needle2) {
  cr_settings_t s;
  int rc = read_chunk(chunk, &s);
  if (rc == 0) {
    cr_settings_free(&s);
    fail_msg("accepted: %s", chunk);
  }
  if (needle1 && !strstr(g_err, needle1)) fail_msg("%s\n  error: %s\n  lacks: %s", chunk, g_err, needle1);
  if (needle2 && !strstr(g_err, needle2)) fail_msg("%s\n  error: %s\n  lacks: %s", chunk, g_err, needle2);
}

static void accepted(const char *chunk, cr_settings_t *s) {
  if (read_chunk(chunk, s)) fail_msg("refused: %s\n  error: %s", chunk, g_err);
}

static void assert_defaults(const cr_settings_t *s) {
  assert_int_equal(s->has_routes, 0);
  assert_int_equal(s->nroutes, 0);
  assert_true(s->timeout == CR_DEFAULT_TIMEOUT);
  assert_int_equal(s->memory, CR_DEFAULT_MEMORY);
  assert_int_equal(s->concurrency, CR_DEFAULT_CONCURRENCY);
  assert_int_equal(s->warm, 0);
  assert_true(s->idle == CR_DEFAULT_IDLE);
  assert_int_equal(s->nenv, 0);
  assert_null(s->triggers);
}

#define FULL                                                                               \
  "return { handler = function() end,\n"                                                   \
  "  routes = { 'GET /users/:id', 'PUT,POST /users/:id', '/any/*rest', 'DELETE  /two' },\n" \
  "  timeout = 5.5, memory = 64, concurrency = 50, warm = 2, idle = 900,\n"                \
  "  env = { TABLE = 'users', N = 5, BIG = 2^53, F = 0.5, B = true, NO = false, E = '' },\n" \
  "  triggers = { { cron = '0 2 * * *' }, { queue = 'orders', batch = 10 } } }"

/* --- reading -------------------------------------------------------------------------------------- */

static void test_bare_function(void **state) {
  (void)state;
  cr_settings_t s;
  accepted("return function(event) return 'hi' end", &s);
  assert_defaults(&s);
  cr_settings_free(&s);
  /* A table with only a handler: defaults too. */
  accepted("return { handler = function() end }", &s);
  assert_defaults(&s);
  cr_settings_free(&s);
}

static void test_full_table(void **state) {
  (void)state;
  cr_settings_t s;
  accepted(FULL, &s);
  assert_int_equal(s.has_routes, 1);
  assert_int_equal(s.nroutes, 4);
  assert_int_equal(s.routes[0].methods, CR_M_GET);
  assert_string_equal(s.routes[0].path, "/users/:id");
  assert_int_equal(s.routes[1].methods, CR_M_PUT | CR_M_POST);
  assert_string_equal(s.routes[1].path, "/users/:id");
  assert_int_equal(s.routes[2].methods, CR_M_ANY);
  assert_string_equal(s.routes[2].path, "/any/*rest");
  assert_int_equal(s.routes[3].methods, CR_M_DELETE);
  assert_string_equal(s.routes[3].path, "/two");
  assert_true(s.timeout == 5.5);
  assert_int_equal(s.memory, 64);
  assert_int_equal(s.concurrency, 50);
  assert_int_equal(s.warm, 2);
  assert_true(s.idle == 900);
  assert_int_equal(s.nenv, 7);
  assert_string_equal(cr_settings_env(&s, "TABLE"), "users");
  assert_string_equal(cr_settings_env(&s, "N"), "5");
  assert_string_equal(cr_settings_env(&s, "BIG"), "9007199254740992");
  assert_string_equal(cr_settings_env(&s, "F"), "0.5");
  assert_string_equal(cr_settings_env(&s, "B"), "true");
  assert_string_equal(cr_settings_env(&s, "NO"), "false");
  assert_string_equal(cr_settings_env(&s, "E"), "");
  assert_null(cr_settings_env(&s, "MISSING"));
  assert_null(cr_settings_env(&s, "table")); /* names are case-sensitive */
  assert_non_null(s.triggers);
  const char *head = "[{\"cron\":\"0 2 * * *\"},{";
  assert_memory_equal(s.triggers, head, strlen(head));
  assert_non_null(strstr(s.triggers, "\"queue\":\"orders\""));
  assert_non_null(strstr(s.triggers, "\"batch\":10"));
  assert_int_equal(s.triggers[strlen(s.triggers) - 1], ']');
  cr_settings_free(&s);
  assert_defaults(&s); /* free leaves defaults */
  assert_null(s.routes);
}

static void test_value_index(void **state) {
  (void)state;
  /* An absolute index below other values. */
  lua_State *L = g_vm->L;
  lua_settop(L, 0);
  assert_int_equal(luaL_loadstring(L, "return { handler = print, memory = 32 }, 'other', 3"), 0);
  assert_int_equal(lua_pcall(L, 0, 3, 0), 0);
  cr_settings_t s;
  assert_int_equal(cr_settings_read(L, 1, &s, g_err, sizeof g_err), 0);
  assert_int_equal(s.memory, 32);
  assert_int_equal(lua_gettop(L), 3);
  cr_settings_free(&s);
  assert_int_equal(cr_settings_read(L, -3, &s, g_err, sizeof g_err), 0);
  assert_int_equal(s.memory, 32);
  cr_settings_free(&s);
  lua_settop(L, 0);
}

static void test_not_function_or_table(void **state) {
  (void)state;
  refused("return 'hello'", "handler function", "string");
  refused("return nil", "handler function", "nil");
  refused("return 42", "handler function", "number");
  refused("return true", "handler function", "boolean");
}

static void test_unknown_keys(void **state) {
  (void)state;
  refused("return { handler = print, timout = 5 }", "unknown setting 'timout'", "did you mean 'timeout'");
  refused("return { handler = print, route = {} }", "'route'", "did you mean 'routes'");
  refused("return { handle = print }", "'handle'", "did you mean 'handler'");
  refused("return { handler = print, Memory = 5 }", "'Memory'", "did you mean 'memory'");
  refused("return { handler = print, colour = 'red' }", "unknown setting 'colour'", "known: handler");
  refused("return { handler = print, [string.rep('x', 100)] = 1 }", "unknown setting", NULL);
  refused("return { print }", "key of type number", NULL);
  refused("return { handler = print, [true] = 1 }", "key of type boolean", NULL);
}

static void test_handler(void **state) {
  (void)state;
  refused("return { timeout = 5 }", "'handler'", "got nothing");
  refused("return {}", "'handler'", "got nothing");
  refused("return { handler = 'f' }", "'handler'", "string");
  refused("return { handler = {} }", "'handler'", "table");
}

static void test_wrong_types(void **state) {
  (void)state;
  refused("return { handler = print, timeout = '5' }", "setting 'timeout'", "string");
  refused("return { handler = print, memory = '64' }", "setting 'memory'", "string");
  refused("return { handler = print, memory = 64.5 }", "setting 'memory'", "integer");
  refused("return { handler = print, concurrency = true }", "setting 'concurrency'", "boolean");
  refused("return { handler = print, concurrency = 1.5 }", "setting 'concurrency'", "integer");
  refused("return { handler = print, warm = {} }", "setting 'warm'", "table");
  refused("return { handler = print, warm = 0.5 }", "setting 'warm'", "integer");
  refused("return { handler = print, idle = print }", "setting 'idle'", "function");
  refused("return { handler = print, routes = 'GET /x' }", "setting 'routes'", NULL);
  refused("return { handler = print, env = 'A=1' }", "setting 'env'", NULL);
  refused("return { handler = print, triggers = 'cron' }", "setting 'triggers'", NULL);
}

static void test_ranges(void **state) {
  (void)state;
  refused("return { handler = print, timeout = 0 }", "setting 'timeout'", "got 0");
  refused("return { handler = print, timeout = -1 }", "setting 'timeout'", NULL);
  refused("return { handler = print, timeout = 901 }", "setting 'timeout'", "900");
  refused("return { handler = print, timeout = 0/0 }", "setting 'timeout'", NULL);
  refused("return { handler = print, timeout = math.huge }", "setting 'timeout'", NULL);
  refused("return { handler = print, memory = 0 }", "setting 'memory'", NULL);
  refused("return { handler = print, memory = 10241 }", "setting 'memory'", "10240");
  refused("return { handler = print, memory = -128 }", "setting 'memory'", NULL);
  refused("return { handler = print, concurrency = 0 }", "setting 'concurrency'", NULL);
  refused("return { handler = print, concurrency = 10001 }", "setting 'concurrency'", NULL);
  refused("return { handler = print, warm = -1 }", "setting 'warm'", NULL);
  refused("return { handler = print, warm = 101 }", "setting 'warm'", NULL);
  refused("return { handler = print, idle = 0.5 }", "setting 'idle'", NULL);
  refused("return { handler = print, idle = 86401 }", "setting 'idle'", NULL);
  refused("return { handler = print, warm = 5, concurrency = 2 }", "'warm' (5)", "'concurrency' (2)");
  /* The edges are allowed. */
  cr_settings_t s;
  accepted("return { handler = print, timeout = 900, memory = 10240, concurrency = 10000, warm = 100, idle = 86400 }", &s);
  assert_true(s.timeout == 900);
  assert_int_equal(s.memory, 10240);
  assert_int_equal(s.concurrency, 10000);
  assert_int_equal(s.warm, 100);
  assert_true(s.idle == 86400);
  cr_settings_free(&s);
  accepted("return { handler = print, timeout = 0.001, memory = 1, concurrency = 1, warm = 0, idle = 1 }", &s);
  assert_int_equal(s.memory, 1);
  assert_int_equal(s.concurrency, 1);
  cr_settings_free(&s);
  accepted("return { handler = print, warm = 3, concurrency = 3 }", &s);
  assert_int_equal(s.warm, 3);
  cr_settings_free(&s);
  accepted("return { handler = print, warm = 5 }", &s); /* default concurrency 100 */
  cr_settings_free(&s);
}

static void test_routes_syntax(void **state) {
  (void)state;
  refused("return { handler = print, routes = { 'GET /x', 5 } }", "setting 'routes'", "entry 2");
  refused("return { handler = print, routes = { 'FETCH /x' } }", "setting 'routes'", "unknown method 'FETCH'");
  refused("return { handler = print, routes = { 'GET,FETCH /x' } }", "setting 'routes'", "'FETCH'");
  refused("return { handler = print, routes = { 'get /x' } }", "setting 'routes'", "'get'");
  refused("return { handler = print, routes = { ',GET /x' } }", "setting 'routes'", "unknown method");
  refused("return { handler = print, routes = { 'GET x' } }", "setting 'routes'", "must start with /");
  refused("return { handler = print, routes = { 'GET' } }", "setting 'routes'", "must start with /");
  refused("return { handler = print, routes = { 'GET /a//b' } }", "setting 'routes'", "empty segment");
  refused("return { handler = print, routes = { 'GET /a/:' } }", "setting 'routes'", NULL);
  refused("return { handler = print, routes = { 'GET /a/*/b' } }", "setting 'routes'", NULL);
  refused("return { handler = print, routes = { a = '/x' } }", "setting 'routes'", "list");
  refused("return { handler = print, routes = { '/x', b = '/y' } }", "setting 'routes'", "list");
  cr_settings_t s;
  accepted("return { handler = print, routes = { 'GET,HEAD,POST /multi', 'OPTIONS /o', 'ANY /a', 'PATCH /p' } }", &s);
  assert_int_equal(s.nroutes, 4);
  assert_int_equal(s.routes[0].methods, CR_M_GET | CR_M_HEAD | CR_M_POST);
  assert_string_equal(s.routes[0].path, "/multi");
  assert_int_equal(s.routes[1].methods, CR_M_OPTIONS);
  assert_int_equal(s.routes[2].methods, CR_M_ANY);
  assert_int_equal(s.routes[3].methods, CR_M_PATCH);
  cr_settings_free(&s);
  /* An empty list: the function has no HTTP routes at all (say, a cron job). */
  accepted("return { handler = print, routes = {} }", &s);
  assert_int_equal(s.has_routes, 1);
  assert_int_equal(s.nroutes, 0);
  cr_settings_free(&s);
}

/* Every accepted route has at least one method: the router refuses routes
 * without one, so settings must not let one through. */
static void test_routes_never_without_method(void **state) {
  (void)state;
  const char *chunks[] = {
      "return { handler = print, routes = { ' /x' } }",
      "return { handler = print, routes = { '  /x' } }",
  };
  for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
    cr_settings_t s;
    if (read_chunk(chunks[i], &s) == 0) {
      for (int k = 0; k < s.nroutes; k++)
        if (s.routes[k].methods == 0) {
          cr_settings_free(&s);
          fail_msg("%s: accepted a route with no method", chunks[i]);
        }
      cr_settings_free(&s);
    }
  }
}

static void test_routes_reserved(void **state) {
  (void)state;
  refused("return { handler = print, routes = { 'GET /_/metrics' } }", "setting 'routes'", "reserved");
  refused("return { handler = print, routes = { '/_/x/y' } }", "reserved", NULL);
  refused("return { handler = print, routes = { 'POST /_' } }", "reserved", NULL);
  refused("return { handler = print, routes = { 'POST /_/' } }", "reserved", NULL);
  cr_settings_t s;
  accepted("return { handler = print, routes = { 'GET /_x', 'GET /a/_/b' } }", &s);
  assert_int_equal(s.nroutes, 2);
  cr_settings_free(&s);
}

static void test_routes_duplicates(void **state) {
  (void)state;
  refused("return { handler = print, routes = { 'GET /x', 'GET /x' } }", "setting 'routes'", "twice");
  refused("return { handler = print, routes = { '/x', 'POST /x' } }", "twice", NULL);
  refused("return { handler = print, routes = { 'GET,POST /x', 'PUT,POST /x' } }", "twice", NULL);
  cr_settings_t s;
  accepted("return { handler = print, routes = { 'GET /x', 'POST /x', 'GET /y' } }", &s);
  assert_int_equal(s.nroutes, 3);
  cr_settings_free(&s);
}

/* Two entries that are the same route for the router (same shape, other
 * parameter names, or a trailing slash) overlap just like identical ones. */
static void test_routes_same_shape_twice(void **state) {
  (void)state;
  refused("return { handler = print, routes = { 'GET /u/:id', 'GET /u/:name' } }", "setting 'routes'", NULL);
  refused("return { handler = print, routes = { 'GET /x', 'GET /x/' } }", "setting 'routes'", NULL);
}

static void test_env(void **state) {
  (void)state;
  refused("return { handler = print, env = { ['1X'] = 'a' } }", "setting 'env'", "identifiers");
  refused("return { handler = print, env = { ['A-B'] = 'a' } }", "setting 'env'", NULL);
  refused("return { handler = print, env = { [''] = 'a' } }", "setting 'env'", NULL);
  refused("return { handler = print, env = { 'positional' } }", "setting 'env'", NULL);
  refused("return { handler = print, env = { A = {} } }", "setting 'env'", "'A'");
  refused("return { handler = print, env = { A = print } }", "'A'", "function");
  cr_settings_t s;
  accepted("return { handler = print, env = { _UNDER = 'u', lower_9 = '9', EMPTY = '', LONG = string.rep('v', 5000) } }", &s);
  assert_int_equal(s.nenv, 4);
  assert_string_equal(cr_settings_env(&s, "_UNDER"), "u");
  assert_string_equal(cr_settings_env(&s, "lower_9"), "9");
  assert_int_equal(strlen(cr_settings_env(&s, "LONG")), 5000);
  cr_settings_free(&s);
  /* Many names (the array grows). */
  accepted("local e = {} for i = 1, 100 do e['K' .. i] = tostring(i) end return { handler = print, env = e }", &s);
  assert_int_equal(s.nenv, 100);
  assert_string_equal(cr_settings_env(&s, "K77"), "77");
  cr_settings_free(&s);
  accepted("return { handler = print, env = {} }", &s);
  assert_int_equal(s.nenv, 0);
  cr_settings_free(&s);
}

static void test_triggers(void **state) {
  (void)state;
  refused("return { handler = print, triggers = { 'cron' } }", "setting 'triggers'", "entry 1");
  refused("return { handler = print, triggers = { { cron = 'x' }, 5 } }", "setting 'triggers'", "entry 2");
  refused("return { handler = print, triggers = { { cron = 'x', queue = 'q' } } }", "entry 1", "exactly one");
  refused("return { handler = print, triggers = { { batch = 10 } } }", "entry 1", "exactly one");
  refused("return { handler = print, triggers = { { cron = 5 } } }", "setting 'triggers'", "'cron' must be a string");
  refused("return { handler = print, triggers = { { kv = {} } } }", "'kv' must be a string", NULL);
  refused("return { handler = print, triggers = { { queue = 'q', f = print } } }", "setting 'triggers'", "function");
  cr_settings_t s;
  accepted("return { handler = print, triggers = { { storage = 'uploads', prefix = 'img/' }, { kv = 'users:' } } }", &s);
  assert_non_null(s.triggers);
  assert_int_equal(s.triggers[0], '[');
  assert_non_null(strstr(s.triggers, "\"storage\":\"uploads\""));
  assert_non_null(strstr(s.triggers, "{\"kv\":\"users:\"}"));
  cr_settings_free(&s);
}

/* settings.h: triggers is "a JSON array, or NULL". */
static void test_triggers_always_array(void **state) {
  (void)state;
  cr_settings_t s;
  accepted("return { handler = print, triggers = {} }", &s);
  char got[64];
  snprintf(got, sizeof got, "%s", s.triggers ? s.triggers : "(null)");
  cr_settings_free(&s);
  if (strcmp(got, "[]") != 0) fail_msg("triggers = {} gave %s, not the empty JSON array", got);
  /* A list with extra named keys is not a list of triggers: refused. */
  refused("return { handler = print, triggers = { { cron = '* * * * *' }, extra = 1 } }",
          "setting 'triggers' must be a list (got a table with named keys)", NULL);
}

static void test_set_env(void **state) {
  (void)state;
  cr_settings_t s;
  cr_settings_defaults(&s);
  assert_int_equal(cr_settings_set_env(&s, "A", "1"), 0);
  assert_int_equal(cr_settings_set_env(&s, "B", "2"), 0);
  assert_int_equal(s.nenv, 2);
  assert_string_equal(cr_settings_env(&s, "A"), "1");
  assert_int_equal(cr_settings_set_env(&s, "A", "one"), 0); /* replaces */
  assert_int_equal(s.nenv, 2);
  assert_string_equal(cr_settings_env(&s, "A"), "one");
  for (int i = 0; i < 50; i++) {
    char k[16];
    snprintf(k, sizeof k, "K%d", i);
    assert_int_equal(cr_settings_set_env(&s, k, k), 0);
  }
  assert_int_equal(s.nenv, 52);
  assert_string_equal(cr_settings_env(&s, "K49"), "K49");
  /* Set on settings read from Lua (the array read_env made grows too). */
  cr_settings_t r;
  accepted("return { handler = print, env = { X = 'x' } }", &r);
  assert_int_equal(cr_settings_set_env(&r, "Y", "y"), 0);
  assert_int_equal(cr_settings_set_env(&r, "X", "xx"), 0);
  assert_string_equal(cr_settings_env(&r, "X"), "xx");
  assert_string_equal(cr_settings_env(&r, "Y"), "y");
  cr_settings_t c;
  assert_int_equal(cr_settings_copy(&c, &s), 0);
  assert_string_equal(cr_settings_env(&c, "A"), "one");
  cr_settings_free(&c);
  cr_settings_free(&r);
  cr_settings_free(&s);
}

/* The platform's own functions may route under /_/; everything else is checked the same. */
static void test_read_platform(void **state) {
  (void)state;
  lua_State *L = g_vm->L;
  lua_settop(L, 0);
  assert_int_equal(luaL_loadstring(L, "return { handler = print, routes = { 'GET /_/status', '/_' } }"), 0);
  assert_int_equal(lua_pcall(L, 0, 1, 0), 0);
  cr_settings_t s;
  assert_int_equal(cr_settings_read_platform(L, -1, &s, g_err, sizeof g_err), 0);
  assert_int_equal(s.nroutes, 2);
  assert_string_equal(s.routes[0].path, "/_/status");
  cr_settings_free(&s);
  assert_int_equal(cr_settings_read(L, -1, &s, g_err, sizeof g_err), CR_EINVAL);
  assert_non_null(strstr(g_err, "reserved"));
  lua_settop(L, 0);
  assert_int_equal(luaL_loadstring(L, "return { handler = print, timout = 1 }"), 0);
  assert_int_equal(lua_pcall(L, 0, 1, 0), 0);
  assert_int_equal(cr_settings_read_platform(L, -1, &s, g_err, sizeof g_err), CR_EINVAL);
  assert_non_null(strstr(g_err, "did you mean 'timeout'"));
  assert_int_equal(lua_gettop(L), 1);
  lua_settop(L, 0);
}

/* --- pack / unpack / copy --------------------------------------------------------------------------- */

static void assert_same(const cr_settings_t *a, const cr_settings_t *b) {
  assert_int_equal(a->has_routes, b->has_routes);
  assert_int_equal(a->nroutes, b->nroutes);
  for (int i = 0; i < a->nroutes; i++) {
    assert_int_equal(a->routes[i].methods, b->routes[i].methods);
    assert_string_equal(a->routes[i].path, b->routes[i].path);
  }
  assert_true(a->timeout == b->timeout);
  assert_int_equal(a->memory, b->memory);
  assert_int_equal(a->concurrency, b->concurrency);
  assert_int_equal(a->warm, b->warm);
  assert_true(a->idle == b->idle);
  assert_int_equal(a->nenv, b->nenv);
  for (int i = 0; i < 2 * a->nenv; i++) assert_string_equal(a->env[i], b->env[i]);
  if (a->triggers || b->triggers) {
    assert_non_null(a->triggers);
    assert_non_null(b->triggers);
    assert_string_equal(a->triggers, b->triggers);
  }
}

static void test_pack_round_trip(void **state) {
  (void)state;
  cr_settings_t s, u;
  accepted(FULL, &s);
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_settings_pack(&s, &b), 0);
  assert_int_equal(cr_settings_unpack(b.data, b.len, &u), 0);
  assert_same(&s, &u);
  cr_settings_free(&u);
  cr_buf_free(&b);
  cr_settings_free(&s);
  /* Defaults (no routes, no env, NULL triggers) too. */
  cr_settings_defaults(&s);
  assert_int_equal(cr_settings_pack(&s, &b), 0);
  assert_int_equal(cr_settings_unpack(b.data, b.len, &u), 0);
  assert_same(&s, &u);
  assert_null(u.triggers);
  assert_int_equal(u.has_routes, 0);
  cr_settings_free(&u);
  cr_buf_free(&b);
  /* An empty routes list stays an empty list, not "no routes". */
  accepted("return { handler = print, routes = {}, triggers = { { cron = '* * * * *' } } }", &s);
  assert_int_equal(cr_settings_pack(&s, &b), 0);
  assert_int_equal(cr_settings_unpack(b.data, b.len, &u), 0);
  assert_int_equal(u.has_routes, 1);
  assert_int_equal(u.nroutes, 0);
  assert_same(&s, &u);
  cr_settings_free(&u);
  cr_settings_free(&s);
  cr_buf_free(&b);
}

static void test_unpack_truncated(void **state) {
  (void)state;
  cr_settings_t s, u;
  accepted(FULL, &s);
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_settings_pack(&s, &b), 0);
  cr_settings_free(&s);
  /* Every proper prefix is refused (copied to an exact-size heap block so
   * ASan sees any read past its end). */
  for (size_t n = 0; n < b.len; n++) {
    char *copy = malloc(n ? n : 1);
    memcpy(copy, b.data, n);
    int rc = cr_settings_unpack(copy, n, &u);
    free(copy);
    if (rc != CR_EINVAL) fail_msg("a %zu-byte prefix of %zu gave %d", n, b.len, rc);
    assert_int_equal(u.nroutes, 0);
    assert_null(u.routes);
    assert_null(u.env);
  }
  /* A trailing byte too. */
  cr_buf_putc(&b, 'x');
  assert_int_equal(cr_settings_unpack(b.data, b.len, &u), CR_EINVAL);
  cr_buf_free(&b);
}

static void test_unpack_garbage(void **state) {
  (void)state;
  cr_settings_t u;
  /* Absurd counts are refused at once. */
  uint32_t huge[4] = {1, 0xffffffffu, 0, 0};
  assert_int_equal(cr_settings_unpack((const char *)huge, sizeof huge, &u), CR_EINVAL);
  uint32_t big_str[8] = {1, 1, CR_M_GET, 0xfffffff0u, 0, 0, 0, 0};
  assert_int_equal(cr_settings_unpack((const char *)big_str, sizeof big_str, &u), CR_EINVAL);
  /* A NULL route path (the NULL-string marker) is refused. */
  uint32_t null_path[4] = {1, 1, CR_M_GET, 0xffffffffu};
  assert_int_equal(cr_settings_unpack((const char *)null_path, sizeof null_path, &u), CR_EINVAL);
  /* Random bytes never crash, never leak. */
  unsigned x = 12345;
  for (int round = 0; round < 3000; round++) {
    size_t n = (size_t)(round % 97);
    char *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) {
      x = x * 1103515245u + 12345u;
      p[i] = (char)(x >> 16);
      /* small counts now and then, so the parser gets further */
      if (i % 4 == 0 && (x & 0x100)) p[i] = (char)(x & 3);
      if (i % 4 != 0 && (x & 0x100)) p[i] = 0;
    }
    int rc = cr_settings_unpack(p, n, &u);
    free(p);
    if (rc == 0) cr_settings_free(&u);
    else assert_int_equal(rc, CR_EINVAL);
  }
}

static void test_copy(void **state) {
  (void)state;
  cr_settings_t s, c;
  accepted(FULL, &s);
  assert_int_equal(cr_settings_copy(&c, &s), 0);
  assert_same(&s, &c);
  /* Deep: nothing shared. */
  assert_ptr_not_equal(c.routes, s.routes);
  assert_ptr_not_equal(c.routes[0].path, s.routes[0].path);
  assert_ptr_not_equal(c.env[0], s.env[0]);
  assert_ptr_not_equal(c.triggers, s.triggers);
  cr_settings_free(&s);
  assert_string_equal(c.routes[1].path, "/users/:id");
  assert_string_equal(cr_settings_env(&c, "TABLE"), "users");
  cr_settings_free(&c);
  cr_settings_defaults(&s);
  assert_int_equal(cr_settings_copy(&c, &s), 0);
  assert_defaults(&c);
  cr_settings_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bare_function),
      cmocka_unit_test(test_full_table),
      cmocka_unit_test(test_value_index),
      cmocka_unit_test(test_not_function_or_table),
      cmocka_unit_test(test_unknown_keys),
      cmocka_unit_test(test_handler),
      cmocka_unit_test(test_wrong_types),
      cmocka_unit_test(test_ranges),
      cmocka_unit_test(test_routes_syntax),
      cmocka_unit_test(test_routes_never_without_method),
      cmocka_unit_test(test_routes_reserved),
      cmocka_unit_test(test_routes_duplicates),
      cmocka_unit_test(test_routes_same_shape_twice),
      cmocka_unit_test(test_env),
      cmocka_unit_test(test_triggers),
      cmocka_unit_test(test_triggers_always_array),
      cmocka_unit_test(test_set_env),
      cmocka_unit_test(test_read_platform),
      cmocka_unit_test(test_pack_round_trip),
      cmocka_unit_test(test_unpack_truncated),
      cmocka_unit_test(test_unpack_garbage),
      cmocka_unit_test(test_copy),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
