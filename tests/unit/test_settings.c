/* test_settings.c - reading, validating and moving function settings (core/fn/settings.c). */
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
#include "jwt.h"
#include "settings.h"
#include "vm.h"
#include "wire.h"

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
    assert_int_equal(s->ntriggers, 0);
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

/* chunk must be refused with exactly this message. */
static void refused_exact(const char *chunk, const char *message) {
  cr_settings_t s;
  if (read_chunk(chunk, &s) == 0) {
    cr_settings_free(&s);
    fail_msg("accepted: %s", chunk);
  }
  if (strcmp(g_err, message) != 0) fail_msg("%s\n  error: %s\n   want: %s", chunk, g_err, message);
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
  assert_int_equal(s->ntriggers, 0);
  assert_null(s->triggers);
}

#define FULL                                                                               \
  "return { handler = function() end,\n"                                                   \
  "  routes = { 'GET /users/:id', 'PUT,POST /users/:id', '/any/*rest', 'DELETE  /two' },\n" \
  "  timeout = 5.5, memory = 64, concurrency = 50, warm = 2, idle = 900,\n"                \
  "  env = { TABLE = 'users', N = '5', BIG = '9007199254740992', E = '' },\n"               \
  "  triggers = { { cron = '0 2 * * *' }, { queue = 'orders', batch = 10 },\n"              \
  "    { cron = 'rate(5 minutes)', tz = 'Europe/Berlin', catchUp = 60, overlap = true },\n" \
  "    { storage = 'uploads', events = { 'delete' }, prefix = 'img/', suffix = '.png',\n"   \
  "      batch = 3, window = 1.5, visibility = 40, maxReceives = 7, concurrency = 9 },\n"   \
  "    { kv = '', namespace = 'users', maxReceives = 2 } },\n"                               \
  "  egress = { 'api.example.com', '*.stripe.com', '127.0.0.1:9000', '*' } }"

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
  for (int i = 0; i < s.nroutes; i++) assert_int_equal(s.routes[i].policy.flags, 0); /* no policy yet */
  assert_true(s.timeout == 5.5);
  assert_int_equal(s.memory, 64);
  assert_int_equal(s.concurrency, 50);
  assert_int_equal(s.warm, 2);
  assert_true(s.idle == 900);
  assert_int_equal(s.nenv, 4);
  assert_string_equal(cr_settings_env(&s, "TABLE"), "users");
  assert_string_equal(cr_settings_env(&s, "N"), "5");
  assert_string_equal(cr_settings_env(&s, "BIG"), "9007199254740992");
  assert_string_equal(cr_settings_env(&s, "E"), "");
  assert_null(cr_settings_env(&s, "MISSING"));
  assert_null(cr_settings_env(&s, "table")); /* names are case-sensitive */
  assert_int_equal(s.ntriggers, 5);
  assert_int_equal(s.triggers[0].kind, CR_TRIGGER_CRON);
  assert_string_equal(s.triggers[0].cron.expr, "0 2 * * *");
  assert_int_equal(s.triggers[1].kind, CR_TRIGGER_QUEUE);
  assert_string_equal(s.triggers[1].queue.name, "orders");
  assert_int_equal(s.triggers[1].queue.opts.batch, 10);
  assert_true(s.triggers[1].queue.opts.visibility == 6 * 5.5); /* the default follows timeout */
  assert_int_equal(s.triggers[2].kind, CR_TRIGGER_CRON);
  assert_string_equal(s.triggers[2].cron.tz, "Europe/Berlin");
  assert_int_equal(s.triggers[3].kind, CR_TRIGGER_STORAGE);
  assert_int_equal(s.triggers[3].storage.events, CR_STORAGE_DELETE);
  assert_int_equal(s.triggers[4].kind, CR_TRIGGER_KV);
  assert_string_equal(s.triggers[4].kv.prefix, "");
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
  refused_exact("return { handler = print, triggers = 'cron' }",
                "setting 'triggers' must be a list like { { cron = \"0 2 * * *\" }, { queue = \"orders\" } }, got a string");
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
  /* Values are strings, as environment variables are: a number or a boolean
   * is refused with the spelling that works, not turned into "5" silently. */
  refused_exact("return { handler = print, env = { LIMIT = 5 } }",
                "setting 'env': 'LIMIT' must be a string, got the number 5 (env values are strings, as in a process "
                "environment): write LIMIT = \"5\" and read it with tonumber(ctx.env.LIMIT)");
  refused_exact("return { handler = print, env = { RATE = 0.5 } }",
                "setting 'env': 'RATE' must be a string, got the number 0.5 (env values are strings, as in a process "
                "environment): write RATE = \"0.5\" and read it with tonumber(ctx.env.RATE)");
  refused_exact("return { handler = print, env = { DEBUG = true } }",
                "setting 'env': 'DEBUG' must be a string, got the boolean true (env values are strings, as in a "
                "process environment): write DEBUG = \"true\" and test ctx.env.DEBUG == \"true\"");
  refused_exact("return { handler = print, env = { OK = 'fine', QUIET = false } }",
                "setting 'env': 'QUIET' must be a string, got the boolean false (env values are strings, as in a "
                "process environment): write QUIET = \"false\" and test ctx.env.QUIET == \"false\"");
  refused_exact("return { handler = print, env = { A = {} } }", "setting 'env': 'A' must be a string, got a table");
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

/* --- triggers ------------------------------------------------------------------------------------- */

#define H "return { handler = print, "

static void assert_stream_defaults(const cr_stream_opts_t *o, double timeout) {
  assert_int_equal(o->batch, 10);
  assert_true(o->window == 0);
  assert_true(o->visibility == 6 * timeout);
  assert_int_equal(o->max_receives, 5);
  assert_int_equal(o->concurrency, 2);
}

static void test_trigger_cron(void **state) {
  (void)state;
  cr_settings_t s;
  accepted(H "triggers = { { cron = '0 2 * * *' } } }", &s);
  assert_int_equal(s.ntriggers, 1);
  assert_int_equal(s.triggers[0].kind, CR_TRIGGER_CRON);
  assert_string_equal(s.triggers[0].cron.expr, "0 2 * * *");
  assert_null(s.triggers[0].cron.tz);
  assert_true(s.triggers[0].cron.catch_up == 0);
  assert_int_equal(s.triggers[0].cron.overlap, 0);
  cr_settings_free(&s);
  accepted(H "triggers = { { cron = 'rate(5 minutes)', tz = 'America/Argentina/Buenos_Aires', catchUp = 3600.5,"
             " overlap = true } } }",
           &s);
  assert_int_equal(s.ntriggers, 1);
  assert_int_equal(s.triggers[0].kind, CR_TRIGGER_CRON);
  assert_string_equal(s.triggers[0].cron.expr, "rate(5 minutes)");
  assert_string_equal(s.triggers[0].cron.tz, "America/Argentina/Buenos_Aires");
  assert_true(s.triggers[0].cron.catch_up == 3600.5);
  assert_int_equal(s.triggers[0].cron.overlap, 1);
  cr_settings_free(&s);
  /* The expression itself is not parsed yet: any non-empty string will do. */
  accepted(H "triggers = { { cron = '@hourly', overlap = false, catchUp = 2678400 } } }", &s);
  assert_string_equal(s.triggers[0].cron.expr, "@hourly");
  assert_int_equal(s.triggers[0].cron.overlap, 0);
  assert_true(s.triggers[0].cron.catch_up == 2678400);
  cr_settings_free(&s);
}

static void test_trigger_queue(void **state) {
  (void)state;
  cr_settings_t s;
  accepted(H "triggers = { { queue = 'orders' } } }", &s);
  assert_int_equal(s.ntriggers, 1);
  assert_int_equal(s.triggers[0].kind, CR_TRIGGER_QUEUE);
  assert_string_equal(s.triggers[0].queue.name, "orders");
  assert_stream_defaults(&s.triggers[0].queue.opts, CR_DEFAULT_TIMEOUT);
  assert_true(s.triggers[0].queue.opts.visibility == 60);
  cr_settings_free(&s);
  /* The visibility default follows the function's timeout, wherever the key is. */
  accepted(H "triggers = { { queue = 'orders' } }, timeout = 3 }", &s);
  assert_true(s.triggers[0].queue.opts.visibility == 18);
  cr_settings_free(&s);
  accepted(H "triggers = { { queue = 'orders.v2:eu-1_X', batch = 100, window = 0.5, visibility = 30,"
             " maxReceives = 1000, concurrency = 1000 } } }",
           &s);
  assert_int_equal(s.ntriggers, 1);
  assert_int_equal(s.triggers[0].kind, CR_TRIGGER_QUEUE);
  assert_string_equal(s.triggers[0].queue.name, "orders.v2:eu-1_X");
  assert_int_equal(s.triggers[0].queue.opts.batch, 100);
  assert_true(s.triggers[0].queue.opts.window == 0.5);
  assert_true(s.triggers[0].queue.opts.visibility == 30);
  assert_int_equal(s.triggers[0].queue.opts.max_receives, 1000);
  assert_int_equal(s.triggers[0].queue.opts.concurrency, 1000);
  cr_settings_free(&s);
  /* The low edges; visibility may equal the timeout. */
  accepted(H "timeout = 2, triggers = { { queue = 'q', batch = 1, window = 0, visibility = 2, maxReceives = 1,"
             " concurrency = 1 } } }",
           &s);
  assert_int_equal(s.triggers[0].queue.opts.batch, 1);
  assert_true(s.triggers[0].queue.opts.window == 0);
  assert_true(s.triggers[0].queue.opts.visibility == 2);
  assert_int_equal(s.triggers[0].queue.opts.max_receives, 1);
  assert_int_equal(s.triggers[0].queue.opts.concurrency, 1);
  cr_settings_free(&s);
}

static void test_trigger_storage(void **state) {
  (void)state;
  cr_settings_t s;
  accepted(H "triggers = { { storage = 'uploads' } } }", &s);
  assert_int_equal(s.ntriggers, 1);
  assert_int_equal(s.triggers[0].kind, CR_TRIGGER_STORAGE);
  assert_string_equal(s.triggers[0].storage.bucket, "uploads");
  assert_int_equal(s.triggers[0].storage.events, CR_STORAGE_PUT | CR_STORAGE_DELETE);
  assert_null(s.triggers[0].storage.prefix);
  assert_null(s.triggers[0].storage.suffix);
  assert_stream_defaults(&s.triggers[0].storage.opts, CR_DEFAULT_TIMEOUT);
  cr_settings_free(&s);
  accepted(H "triggers = { { storage = '0-bucket.a', events = { 'put' }, prefix = 'images/', suffix = '.png',"
             " batch = 20, window = 60, visibility = 43200, maxReceives = 3, concurrency = 4 } } }",
           &s);
  assert_int_equal(s.triggers[0].kind, CR_TRIGGER_STORAGE);
  assert_string_equal(s.triggers[0].storage.bucket, "0-bucket.a");
  assert_int_equal(s.triggers[0].storage.events, CR_STORAGE_PUT);
  assert_string_equal(s.triggers[0].storage.prefix, "images/");
  assert_string_equal(s.triggers[0].storage.suffix, ".png");
  assert_int_equal(s.triggers[0].storage.opts.batch, 20);
  assert_true(s.triggers[0].storage.opts.window == 60);
  assert_true(s.triggers[0].storage.opts.visibility == 43200);
  assert_int_equal(s.triggers[0].storage.opts.max_receives, 3);
  assert_int_equal(s.triggers[0].storage.opts.concurrency, 4);
  cr_settings_free(&s);
  /* events: either, both, repeats; an empty prefix is kept as given. */
  accepted(H "triggers = { { storage = 'b', events = { 'delete' }, prefix = '' },"
             " { storage = 'b', events = { 'delete', 'put', 'put' } } } }",
           &s);
  assert_int_equal(s.ntriggers, 2);
  assert_int_equal(s.triggers[0].storage.events, CR_STORAGE_DELETE);
  assert_string_equal(s.triggers[0].storage.prefix, "");
  assert_null(s.triggers[0].storage.suffix);
  assert_int_equal(s.triggers[1].storage.events, CR_STORAGE_PUT | CR_STORAGE_DELETE);
  cr_settings_free(&s);
}

static void test_trigger_kv(void **state) {
  (void)state;
  cr_settings_t s;
  accepted(H "triggers = { { kv = 'users:' } } }", &s);
  assert_int_equal(s.ntriggers, 1);
  assert_int_equal(s.triggers[0].kind, CR_TRIGGER_KV);
  assert_string_equal(s.triggers[0].kv.prefix, "users:");
  assert_string_equal(s.triggers[0].kv.ns, "default");
  assert_stream_defaults(&s.triggers[0].kv.opts, CR_DEFAULT_TIMEOUT);
  cr_settings_free(&s);
  /* An empty prefix: every key of the namespace. */
  accepted(H "triggers = { { kv = '', namespace = 'Sessions_v1.eu-2', batch = 50, window = 2, visibility = 90,"
             " maxReceives = 10, concurrency = 8 } } }",
           &s);
  assert_int_equal(s.triggers[0].kind, CR_TRIGGER_KV);
  assert_string_equal(s.triggers[0].kv.prefix, "");
  assert_string_equal(s.triggers[0].kv.ns, "Sessions_v1.eu-2");
  assert_int_equal(s.triggers[0].kv.opts.batch, 50);
  assert_true(s.triggers[0].kv.opts.window == 2);
  assert_true(s.triggers[0].kv.opts.visibility == 90);
  assert_int_equal(s.triggers[0].kv.opts.max_receives, 10);
  assert_int_equal(s.triggers[0].kv.opts.concurrency, 8);
  cr_settings_free(&s);
  /* Key prefixes are bytes: a tab or a long one is fine. */
  accepted(H "triggers = { { kv = 'a\\tb' }, { kv = string.rep('k', 1024) } } }", &s);
  assert_string_equal(s.triggers[0].kv.prefix, "a\tb");
  assert_int_equal(strlen(s.triggers[1].kv.prefix), 1024);
  cr_settings_free(&s);
}

static void test_triggers_list(void **state) {
  (void)state;
  cr_settings_t s;
  /* An empty list is no triggers. */
  accepted(H "triggers = {} }", &s);
  assert_int_equal(s.ntriggers, 0);
  assert_null(s.triggers);
  cr_settings_free(&s);
  /* Entries keep their order and kinds mix. */
  accepted(H "triggers = { { kv = 'a' }, { cron = '@daily' }, { queue = 'q' }, { storage = 's' } } }", &s);
  assert_int_equal(s.ntriggers, 4);
  assert_int_equal(s.triggers[0].kind, CR_TRIGGER_KV);
  assert_int_equal(s.triggers[1].kind, CR_TRIGGER_CRON);
  assert_string_equal(s.triggers[1].cron.expr, "@daily");
  assert_int_equal(s.triggers[2].kind, CR_TRIGGER_QUEUE);
  assert_int_equal(s.triggers[3].kind, CR_TRIGGER_STORAGE);
  cr_settings_free(&s);
  /* At most CR_MAX_TRIGGERS. */
  accepted("local t = {} for i = 1, 64 do t[i] = { queue = 'q' .. i } end return { handler = print, triggers = t }", &s);
  assert_int_equal(s.ntriggers, CR_MAX_TRIGGERS);
  assert_string_equal(s.triggers[63].queue.name, "q64");
  cr_settings_free(&s);
  refused_exact("local t = {} for i = 1, 65 do t[i] = { queue = 'q' } end return { handler = print, triggers = t }",
                "setting 'triggers' has 65 entries; at most 64");
  /* A failure after some entries were read frees them (ASan would see a leak). */
  refused_exact(H "triggers = { { storage = 'b', prefix = 'p', suffix = 's' }, { kv = 'x', namespace = 'n' },"
                  " { cron = '@daily', tz = 'UTC' }, { queue = 'q', batch = 0 } } }",
                "setting 'triggers': entry 4: 'batch' must be an integer from 1 to 100, got 0");
  refused_exact(H "triggers = { { storage = 'b', prefix = 'p', suffix = 1 } } }",
                "setting 'triggers': entry 1: 'suffix' must be a string of at most 1024 bytes without control "
                "characters, got a number");
  /* Without triggers, all else as before. */
  accepted(H "routes = { 'GET /x' } }", &s);
  assert_int_equal(s.ntriggers, 0);
  assert_null(s.triggers);
  cr_settings_free(&s);
}

static void test_trigger_errors_shape(void **state) {
  (void)state;
  const char *like = "a list like { { cron = \"0 2 * * *\" }, { queue = \"orders\" } }";
  char want[300];
  snprintf(want, sizeof want, "setting 'triggers' must be %s, got a boolean", like);
  refused_exact(H "triggers = true }", want);
  snprintf(want, sizeof want, "setting 'triggers' must be %s (got a table with named keys)", like);
  refused_exact(H "triggers = { queue = 'orders' } }", want);
  refused_exact(H "triggers = { { cron = '* * * * *' }, extra = 1 } }", want);
  refused_exact(H "triggers = { { cron = '* * * * *' }, [1.5] = { cron = '@daily' } } }", want);
  /* Entries that are not tables. */
  refused_exact(H "triggers = { 'cron' } }",
                "setting 'triggers': entry 1: must be a table such as { queue = \"orders\" }, got a string");
  refused_exact(H "triggers = { { cron = '@daily' }, 5 } }",
                "setting 'triggers': entry 2: must be a table such as { queue = \"orders\" }, got a number");
  /* No kind key, a misspelt one, two of them. */
  refused_exact(H "triggers = { { batch = 10 } } }",
                "setting 'triggers': entry 1: a trigger needs one of cron, queue, storage, kv or auth");
  refused_exact(H "triggers = { {} } }", "setting 'triggers': entry 1: a trigger needs one of cron, queue, storage, kv or auth");
  refused_exact(H "triggers = { { quue = 'orders' } } }",
                "setting 'triggers': entry 1: a trigger needs one of cron, queue, storage, kv or auth "
                "(got 'quue': did you mean 'queue'?)");
  refused_exact(H "triggers = { { cron = '@daily' }, { cron = '@daily', queue = 'q' } } }",
                "setting 'triggers': entry 2: a trigger has exactly one of cron, queue, storage, kv or auth "
                "(got 'cron' and 'queue')");
  refused_exact(H "triggers = { { storage = 'b', kv = 'k' } } }",
                "setting 'triggers': entry 1: a trigger has exactly one of cron, queue, storage, kv or auth "
                "(got 'storage' and 'kv')");
}

/* { auth = HOOK }: the six hook names, nothing else, no other key; packed and unpacked. */
static void test_trigger_auth(void **state) {
  (void)state;
  const char *names[] = {"preSignUp", "postConfirmation", "preSignIn", "postSignIn", "preTokenGeneration",
                         "customMessage"};
  for (int h = 1; h <= CR_AUTH_NHOOKS; h++) {
    char chunk[200];
    snprintf(chunk, sizeof chunk, H "triggers = { { auth = '%s' } } }", names[h - 1]);
    cr_settings_t s, u;
    accepted(chunk, &s);
    assert_int_equal(s.ntriggers, 1);
    assert_int_equal(s.triggers[0].kind, CR_TRIGGER_AUTH);
    assert_int_equal(s.triggers[0].auth.hook, h);
    assert_string_equal(cr_auth_hook_name(h), names[h - 1]);
    cr_buf_t b = CR_BUF_INIT;
    assert_int_equal(cr_settings_pack(&s, &b), 0);
    assert_int_equal(cr_settings_unpack(b.data, b.len, &u), 0);
    assert_int_equal(u.triggers[0].kind, CR_TRIGGER_AUTH);
    assert_int_equal(u.triggers[0].auth.hook, h);
    cr_settings_free(&u);
    cr_settings_free(&s);
    cr_buf_free(&b);
  }
  assert_null(cr_auth_hook_name(0));
  assert_null(cr_auth_hook_name(CR_AUTH_NHOOKS + 1));
  refused_exact(H "triggers = { { auth = 'preSignup' } } }",
                "setting 'triggers': entry 1: 'auth' must be one of \"preSignUp\", \"postConfirmation\", "
                "\"preSignIn\", \"postSignIn\", \"preTokenGeneration\", \"customMessage\", got \"preSignup\"");
  refused(H "triggers = { { auth = 5 } } }", "'auth' must be one of", "got a number");
  refused(H "triggers = { { auth = 'preSignUp', batch = 5 } } }", "unknown key 'batch' for a auth trigger", NULL);
}

static void test_trigger_errors_keys(void **state) {
  (void)state;
  refused_exact(H "triggers = { { queue = 'q', bach = 5 } } }",
                "setting 'triggers': entry 1: unknown key 'bach' for a queue trigger (did you mean 'batch'?)");
  refused_exact(H "triggers = { { storage = 'b', event = { 'put' } } } }",
                "setting 'triggers': entry 1: unknown key 'event' for a storage trigger (did you mean 'events'?)");
  refused_exact(H "triggers = { { kv = 'a', colour = 'red' } } }",
                "setting 'triggers': entry 1: unknown key 'colour' for a kv trigger "
                "(known: kv, namespace, batch, window, visibility, maxReceives, concurrency)");
  /* A key of another kind is unknown to this one. */
  refused_exact(H "triggers = { { cron = '@daily', batch = 5 } } }",
                "setting 'triggers': entry 1: unknown key 'batch' for a cron trigger (known: cron, tz, catchUp, overlap)");
  refused_exact(H "triggers = { { queue = 'q', prefix = 'a' } } }",
                "setting 'triggers': entry 1: unknown key 'prefix' for a queue trigger "
                "(known: queue, batch, window, visibility, maxReceives, concurrency)");
  refused_exact(H "triggers = { { queue = 'q', maxreceives = 3 } } }",
                "setting 'triggers': entry 1: unknown key 'maxreceives' for a queue trigger (did you mean 'maxReceives'?)");
  refused_exact(H "triggers = { { queue = 'q', 'orders' } } }",
                "setting 'triggers': entry 1: keys must be names, got a key of type number");
}

static void test_trigger_errors_types(void **state) {
  (void)state;
  const char *e1 = "setting 'triggers': entry 1: ";
  struct {
    const char *entry, *message;
  } cases[] = {
      {"{ cron = 5 }", "'cron' must be a non-empty string of at most 256 bytes, got a number"},
      {"{ cron = '' }", "'cron' must be a non-empty string of at most 256 bytes, got \"\""},
      {"{ cron = 'a\\0b' }", "'cron' must be a non-empty string of at most 256 bytes, got a 3-byte string"},
      {"{ cron = string.rep('*', 257) }", "'cron' must be a non-empty string of at most 256 bytes, got a 257-byte string"},
      {"{ cron = '@daily', tz = '' }", "'tz' must be a time zone name such as \"Europe/Berlin\", got \"\""},
      {"{ cron = '@daily', tz = 'Europe/ Berlin' }", "'tz' must be a time zone name such as \"Europe/Berlin\", got \"Europe/ Berlin\""},
      {"{ cron = '@daily', tz = 1 }", "'tz' must be a time zone name such as \"Europe/Berlin\", got a number"},
      {"{ cron = '@daily', overlap = 1 }", "'overlap' must be true or false, got a number"},
      {"{ cron = '@daily', overlap = 'yes' }", "'overlap' must be true or false, got a string"},
      {"{ cron = '@daily', catchUp = '60' }", "'catchUp' must be a number from 0 to 2678400, got a string"},
      {"{ queue = {} }", "'queue' must be a queue name (1 to 128 letters, digits, '_', '.', ':' or '-'), got a table"},
      {"{ queue = '' }", "'queue' must be a queue name (1 to 128 letters, digits, '_', '.', ':' or '-'), got \"\""},
      {"{ queue = 'my queue' }",
       "'queue' must be a queue name (1 to 128 letters, digits, '_', '.', ':' or '-'), got \"my queue\""},
      {"{ queue = string.rep('q', 129) }",
       "'queue' must be a queue name (1 to 128 letters, digits, '_', '.', ':' or '-'), got a 129-byte string"},
      {"{ queue = 'q', batch = '10' }", "'batch' must be an integer from 1 to 100, got a string"},
      {"{ queue = 'q', batch = 2.5 }", "'batch' must be an integer from 1 to 100, got 2.5"},
      {"{ queue = 'q', window = true }", "'window' must be a number from 0 to 60, got a boolean"},
      {"{ queue = 'q', visibility = '30' }", "'visibility' must be a number from 0.001 to 43200, got a string"},
      {"{ queue = 'q', maxReceives = 1.5 }", "'maxReceives' must be an integer from 1 to 1000, got 1.5"},
      {"{ queue = 'q', concurrency = print }", "'concurrency' must be an integer from 1 to 1000, got a function"},
      {"{ storage = 'Uploads' }",
       "'storage' must be a bucket name (1 to 63 of a-z, 0-9, '.' and '-', starting with a letter or digit), got \"Uploads\""},
      {"{ storage = '-b' }",
       "'storage' must be a bucket name (1 to 63 of a-z, 0-9, '.' and '-', starting with a letter or digit), got \"-b\""},
      {"{ storage = 'b', events = 'put' }", "'events' must be a list of \"put\" and \"delete\", got \"put\""},
      {"{ storage = 'b', events = {} }", "'events' must be a list of \"put\" and \"delete\", got an empty list"},
      {"{ storage = 'b', events = { 'put', 'get' } }", "'events' entry 2 must be \"put\" or \"delete\", got \"get\""},
      {"{ storage = 'b', events = { 'PUT' } }", "'events' entry 1 must be \"put\" or \"delete\", got \"PUT\""},
      {"{ storage = 'b', events = { 1 } }", "'events' entry 1 must be \"put\" or \"delete\", got a number"},
      {"{ storage = 'b', events = { put = true } }",
       "'events' must be a list of \"put\" and \"delete\", got a table with other keys"},
      {"{ storage = 'b', prefix = 'a\\nb' }",
       "'prefix' must be a string of at most 1024 bytes without control characters, got a 3-byte string"},
      {"{ storage = 'b', suffix = string.rep('s', 1025) }",
       "'suffix' must be a string of at most 1024 bytes without control characters, got a 1025-byte string"},
      {"{ kv = 5 }", "'kv' must be a key prefix (a string of at most 1024 bytes, without NUL), got a number"},
      {"{ kv = 'a\\0' }", "'kv' must be a key prefix (a string of at most 1024 bytes, without NUL), got a 2-byte string"},
      {"{ kv = 'a', namespace = '' }",
       "'namespace' must be a namespace name (1 to 64 letters, digits, '_', '.' or '-'), got \"\""},
      {"{ kv = 'a', namespace = 'a:b' }",
       "'namespace' must be a namespace name (1 to 64 letters, digits, '_', '.' or '-'), got \"a:b\""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char chunk[300], want[300];
    snprintf(chunk, sizeof chunk, H "triggers = { %s } }", cases[i].entry);
    snprintf(want, sizeof want, "%s%s", e1, cases[i].message);
    refused_exact(chunk, want);
  }
}

/* Every kind runs now (cron: core/trigger/cron; the others: core/trigger/queue), and a cron
 * expression is read at load as the scheduler reads it: a bad one is refused naming the field. */
static void test_triggers_not_supported_yet(void **state) {
  (void)state;
  for (int k = CR_TRIGGER_CRON; k <= CR_TRIGGER_KV; k++) assert_true(cr_trigger_supported((cr_trigger_kind_t)k));
  refused_exact(H "triggers = { { cron = '61 * * * *' } } }",
                "setting 'triggers': entry 1: cron '61 * * * *': field 1 (minute) '61': 61 is out of range 0-59");
  refused_exact(H "triggers = { { queue = 'q' }, { cron = '0 2 * * *', tz = 'Nowhere/City' } } }",
                "setting 'triggers': entry 2: cron '0 2 * * *' (tz Nowhere/City): unknown time zone 'Nowhere/City' "
                "(no /usr/share/zoneinfo/Nowhere/City)");
  /* A function reads a bucket or a namespace through one entry. */
  static const struct {
    const char *chunk, *message;
  } twice[] = {
      {H "triggers = { { storage = 'up', prefix = 'a/' }, { kv = 'x' }, { storage = 'up', suffix = '.png' } } }",
       "setting 'triggers': entry 3: bucket 'up' already has a trigger (entry 1): a function reads a bucket "
       "through one entry"},
      {H "triggers = { { kv = 'a:' }, { kv = 'b:', namespace = 'default' } } }",
       "setting 'triggers': entry 2: namespace 'default' already has a trigger (entry 1): a function reads a "
       "namespace through one entry"},
  };
  for (size_t i = 0; i < sizeof twice / sizeof twice[0]; i++) {
    cr_settings_t t;
    accepted(twice[i].chunk, &t);
    char terr[512] = "";
    assert_int_equal(cr_settings_check_triggers(&t, terr, sizeof terr), CR_EINVAL);
    assert_string_equal(terr, twice[i].message);
    cr_settings_free(&t);
  }
  /* None, or an empty list, is nothing to refuse; nor are queue, storage and kv triggers, other
   * buckets and namespaces, or a queue named like a bucket. */
  cr_settings_t s;
  char err[512] = "untouched";
  accepted(H "triggers = { { storage = 'up' }, { storage = 'down' }, { kv = 'a:' }, { kv = 'a:', namespace = 'n' },"
             " { queue = 'up' } } }",
           &s);
  assert_true(cr_trigger_supported(CR_TRIGGER_STORAGE) && cr_trigger_supported(CR_TRIGGER_KV));
  assert_int_equal(cr_settings_check_triggers(&s, err, sizeof err), 0);
  assert_string_equal(err, "untouched");
  cr_settings_free(&s);
  accepted(H "triggers = { { queue = 'jobs', batch = 5 } } }", &s);
  assert_true(cr_trigger_supported(CR_TRIGGER_QUEUE));
  assert_int_equal(cr_settings_check_triggers(&s, err, sizeof err), 0);
  assert_string_equal(err, "untouched");
  cr_settings_free(&s);
  accepted(H "timeout = 3 }", &s);
  assert_int_equal(cr_settings_check_triggers(&s, err, sizeof err), 0);
  cr_settings_free(&s);
  accepted(H "triggers = {} }", &s);
  assert_int_equal(cr_settings_check_triggers(&s, err, sizeof err), 0);
  assert_string_equal(err, "untouched");
  cr_settings_free(&s);
  /* Typos first: an entry's own error wins over a supported-kind error
   * (the read fails before the check could run), wherever it is listed. */
  refused_exact(H "triggers = { { cron = '0 2 * * *' }, { queue = 'jobs', bogus = 1 } } }",
                "setting 'triggers': entry 2: unknown key 'bogus' for a queue trigger (known: queue, batch, window, "
                "visibility, maxReceives, concurrency)");
  refused(H "triggers = { { cron = 'bogus', tz = 5 } } }", "entry 1", "'tz'");
  /* A kind out of range is refused, never looked up past the table. */
  accepted(H "triggers = { { cron = '0 2 * * *' } } }", &s);
  s.triggers[0].kind = (cr_trigger_kind_t)0;
  assert_int_equal(cr_settings_check_triggers(&s, err, sizeof err), CR_EINVAL);
  assert_non_null(strstr(err, "entry 1: unknown triggers"));
  s.triggers[0].kind = CR_TRIGGER_CRON;
  cr_settings_free(&s);
  assert_false(cr_trigger_supported((cr_trigger_kind_t)0));
  assert_false(cr_trigger_supported((cr_trigger_kind_t)99));
}

static void test_trigger_errors_ranges(void **state) {
  (void)state;
  const char *e1 = "setting 'triggers': entry 1: ";
  struct {
    const char *entry, *message;
  } cases[] = {
      {"{ queue = 'q', batch = 0 }", "'batch' must be an integer from 1 to 100, got 0"},
      {"{ queue = 'q', batch = 101 }", "'batch' must be an integer from 1 to 100, got 101"},
      {"{ queue = 'q', window = -1 }", "'window' must be a number from 0 to 60, got -1"},
      {"{ queue = 'q', window = 60.5 }", "'window' must be a number from 0 to 60, got 60.5"},
      {"{ queue = 'q', visibility = 0 }", "'visibility' must be a number from 0.001 to 43200, got 0"},
      {"{ queue = 'q', visibility = 43201 }", "'visibility' must be a number from 0.001 to 43200, got 43201"},
      {"{ queue = 'q', visibility = math.huge }", "'visibility' must be a number from 0.001 to 43200, got inf"},
      {"{ queue = 'q', maxReceives = 0 }", "'maxReceives' must be an integer from 1 to 1000, got 0"},
      {"{ queue = 'q', maxReceives = 1001 }", "'maxReceives' must be an integer from 1 to 1000, got 1001"},
      {"{ queue = 'q', concurrency = 0 }", "'concurrency' must be an integer from 1 to 1000, got 0"},
      {"{ storage = 'b', concurrency = 1001 }", "'concurrency' must be an integer from 1 to 1000, got 1001"},
      {"{ kv = 'k', batch = -5 }", "'batch' must be an integer from 1 to 100, got -5"},
      {"{ cron = '@daily', catchUp = -1 }", "'catchUp' must be a number from 0 to 2678400, got -1"},
      {"{ cron = '@daily', catchUp = 2678401 }", "'catchUp' must be a number from 0 to 2678400, got 2678401"},
      /* Below the function's timeout (10 s by default). */
      {"{ queue = 'q', visibility = 9.5 }",
       "'visibility' (9.5) must be at least the function's 'timeout' (10), or a batch still running is handed out again"},
      {"{ kv = 'k', visibility = 1 }",
       "'visibility' (1) must be at least the function's 'timeout' (10), or a batch still running is handed out again"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char chunk[300], want[300];
    snprintf(chunk, sizeof chunk, H "triggers = { %s } }", cases[i].entry);
    snprintf(want, sizeof want, "%s%s", e1, cases[i].message);
    refused_exact(chunk, want);
  }
  /* NaN is out of every range (its sign, and so its printing, varies). */
  refused(H "triggers = { { queue = 'q', window = 0/0 } } }", "entry 1: 'window' must be a number from 0 to 60, got ", NULL);
  /* The timeout the check uses is the function's own. */
  refused_exact(H "timeout = 120, triggers = { { queue = 'q', visibility = 60 } } }",
                "setting 'triggers': entry 1: 'visibility' (60) must be at least the function's 'timeout' (120), or a "
                "batch still running is handed out again");
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

/* --- pack / unpack ---------------------------------------------------------------------------------- */

static void assert_same_str(const char *a, const char *b) {
  if (!a || !b) assert_ptr_equal(a, b); /* NULL stays NULL, "" stays "" */
  else assert_string_equal(a, b);
}

static void assert_same_stream(const cr_stream_opts_t *a, const cr_stream_opts_t *b) {
  assert_int_equal(a->batch, b->batch);
  assert_true(a->window == b->window);
  assert_true(a->visibility == b->visibility);
  assert_int_equal(a->max_receives, b->max_receives);
  assert_int_equal(a->concurrency, b->concurrency);
}

static void assert_same_trigger(const cr_trigger_spec_t *a, const cr_trigger_spec_t *b) {
  assert_int_equal(a->kind, b->kind);
  switch (a->kind) {
  case CR_TRIGGER_CRON:
    assert_same_str(a->cron.expr, b->cron.expr);
    assert_same_str(a->cron.tz, b->cron.tz);
    assert_true(a->cron.catch_up == b->cron.catch_up);
    assert_int_equal(a->cron.overlap, b->cron.overlap);
    break;
  case CR_TRIGGER_QUEUE:
    assert_same_str(a->queue.name, b->queue.name);
    assert_same_stream(&a->queue.opts, &b->queue.opts);
    break;
  case CR_TRIGGER_STORAGE:
    assert_same_str(a->storage.bucket, b->storage.bucket);
    assert_int_equal(a->storage.events, b->storage.events);
    assert_same_str(a->storage.prefix, b->storage.prefix);
    assert_same_str(a->storage.suffix, b->storage.suffix);
    assert_same_stream(&a->storage.opts, &b->storage.opts);
    break;
  case CR_TRIGGER_KV:
    assert_same_str(a->kv.prefix, b->kv.prefix);
    assert_same_str(a->kv.ns, b->kv.ns);
    assert_same_stream(&a->kv.opts, &b->kv.opts);
    break;
  default:
    fail_msg("trigger kind %d", (int)a->kind);
  }
}

static void assert_same(const cr_settings_t *a, const cr_settings_t *b) {
  assert_int_equal(a->has_routes, b->has_routes);
  assert_int_equal(a->nroutes, b->nroutes);
  for (int i = 0; i < a->nroutes; i++) {
    assert_int_equal(a->routes[i].methods, b->routes[i].methods);
    assert_string_equal(a->routes[i].path, b->routes[i].path);
    assert_int_equal(a->routes[i].policy.flags, b->routes[i].policy.flags);
  }
  assert_true(a->timeout == b->timeout);
  assert_int_equal(a->memory, b->memory);
  assert_int_equal(a->concurrency, b->concurrency);
  assert_int_equal(a->warm, b->warm);
  assert_true(a->idle == b->idle);
  assert_int_equal(a->nenv, b->nenv);
  for (int i = 0; i < 2 * a->nenv; i++) assert_string_equal(a->env[i], b->env[i]);
  assert_int_equal(a->ntriggers, b->ntriggers);
  for (int i = 0; i < a->ntriggers; i++) assert_same_trigger(&a->triggers[i], &b->triggers[i]);
  assert_int_equal(a->retries, b->retries);
  assert_same_str(a->on_success, b->on_success);
  assert_same_str(a->on_failure, b->on_failure);
  assert_int_equal(a->auth.kind, b->auth.kind);
  assert_same_str(a->auth.issuer, b->auth.issuer);
  assert_same_str(a->auth.audience, b->auth.audience);
  assert_same_str(a->auth.keys_file, b->auth.keys_file);
  assert_same_str(a->auth.secret_env, b->auth.secret_env);
  assert_int_equal(a->auth.algorithms, b->auth.algorithms);
  assert_true(a->auth.leeway == b->auth.leeway);
  assert_true(a->cache.ttl == b->cache.ttl);
  assert_true(a->cache.swr == b->cache.swr);
  assert_int_equal(a->cache.nvary, b->cache.nvary);
  assert_int_equal(a->cache.shared, b->cache.shared);
  for (int i = 0; i < a->cache.nvary; i++) assert_string_equal(a->cache.vary[i], b->cache.vary[i]);
  assert_int_equal(a->negress, b->negress);
  for (int i = 0; i < a->negress; i++) assert_string_equal(a->egress[i], b->egress[i]);
}

/* auth: JWT on the function's routes (core/trigger/http/gateway.c). */
static void test_auth_settings(void **state) {
  (void)state;
  cr_settings_t s, u;
  cr_buf_t b = CR_BUF_INIT;
  accepted("return function() end", &s);
  assert_int_equal(s.auth.kind, CR_AUTH_DEFAULT);
  cr_settings_free(&s);
  accepted("return { handler = print, auth = 'none' }", &s);
  assert_int_equal(s.auth.kind, CR_AUTH_NONE);
  cr_settings_free(&s);
  /* API keys (core/trigger/http/apikeys.c), limited by key. */
  accepted("return { handler = print, auth = 'apikey', rateLimit = { rps = 5, by = 'key' } }", &s);
  assert_int_equal(s.auth.kind, CR_AUTH_APIKEY);
  assert_int_equal(s.rate.by, CR_RL_BY_KEY);
  assert_int_equal(cr_settings_pack(&s, &b), 0);
  assert_int_equal(cr_settings_unpack(b.data, b.len, &u), 0);
  assert_int_equal(u.auth.kind, CR_AUTH_APIKEY);
  cr_settings_free(&u);
  cr_settings_free(&s);
  b.len = 0;
  accepted("return { handler = print, auth = { jwt = { keys = 'keys/jwks.json', issuer = 'https://id', audience = 'api',"
           " leeway = 5 } } }", &s);
  assert_int_equal(s.auth.kind, CR_AUTH_JWT);
  assert_string_equal(s.auth.keys_file, "keys/jwks.json");
  assert_string_equal(s.auth.issuer, "https://id");
  assert_string_equal(s.auth.audience, "api");
  assert_null(s.auth.secret_env);
  assert_int_equal(s.auth.algorithms, CR_JWT_RS256 | CR_JWT_ES256 | CR_JWT_EDDSA);
  assert_true(s.auth.leeway == 5);
  assert_int_equal(cr_settings_pack(&s, &b), 0);
  assert_int_equal(cr_settings_unpack(b.data, b.len, &u), 0);
  assert_same(&s, &u);
  cr_settings_free(&u);
  cr_settings_free(&s);
  b.len = 0;
  accepted("return { handler = print, auth = { jwt = { secretEnv = 'JWT_SECRET' } } }", &s);
  assert_int_equal(s.auth.algorithms, CR_JWT_HS256);
  assert_true(s.auth.leeway == 30);
  assert_int_equal(cr_settings_pack(&s, &b), 0);
  assert_int_equal(cr_settings_unpack(b.data, b.len, &u), 0);
  assert_same(&s, &u);
  cr_settings_free(&u);
  cr_settings_free(&s);
  cr_buf_free(&b);
  accepted("return { handler = print, auth = { jwt = { keys = 'k.pem', algorithms = { 'EdDSA' } } } }", &s);
  assert_int_equal(s.auth.algorithms, CR_JWT_EDDSA);
  cr_settings_free(&s);
  refused_exact("return { handler = print, auth = { jwt = { keys = 'k', secretEnv = 'S' } } }",
                "setting 'auth.jwt': give exactly one of 'keys' (a JWKS or PEM file) and 'secretEnv'");
  refused_exact("return { handler = print, auth = { jwt = { issuer = 'x' } } }",
                "setting 'auth.jwt': give exactly one of 'keys' (a JWKS or PEM file) and 'secretEnv'");
  refused_exact("return { handler = print, auth = { jwt = { keys = '../secret.pem' } } }",
                "setting 'auth.jwt': 'keys' must be a path inside the functions folder, like \"keys/jwks.json\"");
  refused_exact("return { handler = print, auth = { jwt = { keys = '/etc/k.pem' } } }",
                "setting 'auth.jwt': 'keys' must be a path inside the functions folder, like \"keys/jwks.json\"");
  refused_exact("return { handler = print, auth = { jwt = { keys = 'k.pem', algorithms = { 'HS256' } } } }",
                "setting 'auth.jwt': HS256 needs 'secretEnv', not a key file");
  refused_exact("return { handler = print, auth = { jwt = { secretEnv = 'S', algorithms = { 'RS256' } } } }",
                "setting 'auth.jwt': with 'secretEnv' the only algorithm is HS256");
  refused_exact("return { handler = print, auth = { jwt = { keys = 'k.pem', algorithms = { 'none' } } } }",
                "setting 'auth.jwt': algorithms entry 1 must be one of RS256, ES256, EdDSA, HS256");
  refused_exact("return { handler = print, auth = { jwt = { secretEnv = 'bad name' } } }",
                "setting 'auth.jwt': 'secretEnv' must be an environment variable name like JWT_SECRET");
  refused_exact("return { handler = print, auth = { jwt = { secretEnv = 'CRESCENT_ADMIN_TOKEN' } } }",
                "setting 'auth.jwt': 'secretEnv' cannot name one of the server's CRESCENT_* variables");
  accepted("return { handler = print, auth = 'user', rateLimit = { rps = 1, by = 'principal' } }", &s);
  assert_int_equal(s.auth.kind, CR_AUTH_USER);
  cr_settings_free(&s);
  refused_exact("return { handler = print, auth = 'none', rateLimit = { rps = 1, by = 'key' } }",
                "setting 'rateLimit': by = \"key\" needs auth = \"apikey\"");
  /* authorizer functions (core/trigger/http/authorizer.h) */
  accepted("return { handler = print, auth = { authorizer = 'auth/check' } }", &s);
  assert_int_equal(s.auth.kind, CR_AUTH_AUTHORIZER);
  assert_string_equal(s.auth.authorizer, "auth/check");
  assert_true(s.auth.ttl == 300);
  assert_string_equal(s.auth.identity, "header.authorization");
  cr_settings_free(&s);
  accepted("return { handler = print, auth = { authorizer = 'auth/check', ttl = 0.5 } }", &s);
  assert_true(s.auth.ttl == 0.5);
  cr_settings_free(&s);
  accepted("return { handler = print, auth = { authorizer = 'a', ttl = 0, identity = 'header.X-Token' } }", &s);
  assert_true(s.auth.ttl == 0);
  assert_string_equal(s.auth.identity, "header.x-token");
  assert_int_equal(cr_settings_pack(&s, &b), 0);
  assert_int_equal(cr_settings_unpack(b.data, b.len, &u), 0);
  assert_same(&s, &u);
  assert_int_equal(u.auth.kind, CR_AUTH_AUTHORIZER);
  assert_string_equal(u.auth.authorizer, "a");
  assert_string_equal(u.auth.identity, "header.x-token");
  cr_settings_free(&u);
  cr_settings_free(&s);
  cr_buf_free(&b);
  accepted("return { handler = print, auth = { authorizer = 'auth/check', identity = 'query.token' },"
           " rateLimit = { rps = 5, by = 'principal' } }", &s);
  assert_string_equal(s.auth.identity, "query.token");
  assert_int_equal(s.rate.by, CR_RL_BY_PRINCIPAL);
  cr_settings_free(&s);
  refused_exact("return { handler = print, auth = { authorizer = '_/storage' } }",
                "setting 'auth': 'authorizer' must name a function, like \"auth/check\"");
  refused_exact("return { handler = print, auth = { authorizer = '../x' } }",
                "setting 'auth': 'authorizer' must name a function, like \"auth/check\"");
  refused_exact("return { handler = print, auth = { authorizer = 'a', identity = 'cookie.sid' } }",
                "setting 'auth': 'identity' must be \"header.NAME\" or \"query.NAME\", got \"cookie.sid\"");
  refused_exact("return { handler = print, auth = { authorizer = 'a', identity = 'Header.x' } }",
                "setting 'auth': 'identity' must be \"header.NAME\" or \"query.NAME\", got \"Header.x\"");
  refused_exact("return { handler = print, auth = { authorizer = 'a', ttl = 3601 } }",
                "setting 'auth': 'ttl' must be a number from 0 to 3600");
  refused_exact("return { handler = print, auth = { authorizer = 'a' }, rateLimit = { rps = 5, by = 'key' } }",
                "setting 'rateLimit': by = \"key\" needs auth = \"apikey\"");
  refused_exact("return { handler = print, auth = 'jwt' }",
                "setting 'auth' must be \"none\", \"apikey\", \"user\", { jwt = { ... } } or { authorizer = NAME }, "
                "got \"jwt\"");
  refused_exact("return { handler = print, auth = { jwt = { keys = 'k', leeway = 601 } } }",
                "setting 'auth.jwt': 'leeway' must be a number from 0 to 600");
  refused("return { handler = print, auth = { jwt = { keys = 'k', audiences = 'x' } } }",
          "setting 'auth.jwt': unknown key 'audiences'", NULL);
}

/* cache: the gateway's response cache (core/trigger/http/rcache.h). */
static void test_cache_settings(void **state) {
  (void)state;
  cr_settings_t s, u;
  cr_buf_t b = CR_BUF_INIT;
  accepted("return function() end", &s);
  assert_true(s.cache.ttl == 0);
  cr_settings_free(&s);
  accepted("return { handler = print, cache = { ttl = 30, staleWhileRevalidate = 10,"
           " vary = { 'query.page', 'header.Accept-Language' } } }", &s);
  assert_true(s.cache.ttl == 30);
  assert_true(s.cache.swr == 10);
  assert_int_equal(s.cache.nvary, 2);
  assert_string_equal(s.cache.vary[0], "query.page");
  assert_string_equal(s.cache.vary[1], "header.accept-language");
  assert_int_equal(s.cache.shared, 0);
  assert_int_equal(cr_settings_pack(&s, &b), 0);
  assert_int_equal(cr_settings_unpack(b.data, b.len, &u), 0);
  assert_same(&s, &u);
  cr_settings_free(&u);
  cr_settings_free(&s);
  cr_buf_free(&b);
  /* shared = true: kept in Redis too (scache.h); it survives the trip to the workers. */
  accepted("return { handler = print, cache = { ttl = 5, shared = true } }", &s);
  assert_int_equal(s.cache.shared, 1);
  assert_int_equal(cr_settings_pack(&s, &b), 0);
  assert_int_equal(cr_settings_unpack(b.data, b.len, &u), 0);
  assert_int_equal(u.cache.shared, 1);
  assert_same(&s, &u);
  cr_settings_free(&u);
  cr_settings_free(&s);
  cr_buf_free(&b);
  accepted("return { handler = print, cache = { ttl = 5, shared = false } }", &s);
  assert_int_equal(s.cache.shared, 0);
  cr_settings_free(&s);
  refused_exact("return { handler = print, cache = 30 }", "setting 'cache' must be a table like { ttl = 30 }, got number");
  refused_exact("return { handler = print, cache = {} }", "setting 'cache': 'ttl' (seconds) is required");
  refused_exact("return { handler = print, cache = { ttl = 0 } }", "setting 'cache': 'ttl' must be a number from 0.001 to 86400");
  refused_exact("return { handler = print, cache = { ttl = 5, shared = 'yes' } }",
                "setting 'cache': 'shared' must be true or false, got string");
  refused_exact("return { handler = print, cache = { ttl = 5, vary = { 'cookie.x' } } }",
                "setting 'cache': vary entry 1 must be \"query.NAME\" or \"header.NAME\"");
  refused_exact("return { handler = print, cache = { ttl = 5, vary = { 'query.a=b' } } }",
                "setting 'cache': vary entry 1 must be \"query.NAME\" or \"header.NAME\"");
  refused("return { handler = print, cache = { ttl = 5, swr = 1 } }", "setting 'cache': unknown key 'swr'", NULL);
}

/* egress: the hosts crescent.http may reach (core/base/egress.h). */
static void test_egress_settings(void **state) {
  (void)state;
  cr_settings_t s, u;
  cr_buf_t b = CR_BUF_INIT;
  accepted("return function() end", &s);
  assert_int_equal(s.negress, -1); /* absent: the default policy */
  assert_null(s.egress);
  assert_int_equal(cr_settings_pack(&s, &b), 0);
  assert_int_equal(cr_settings_unpack(b.data, b.len, &u), 0);
  assert_int_equal(u.negress, -1);
  assert_null(u.egress);
  cr_settings_free(&u);
  cr_settings_free(&s);
  b.len = 0;
  accepted("return { handler = print, egress = {} }", &s); /* nothing allowed, not the default */
  assert_int_equal(s.negress, 0);
  assert_int_equal(cr_settings_pack(&s, &b), 0);
  assert_int_equal(cr_settings_unpack(b.data, b.len, &u), 0);
  assert_int_equal(u.negress, 0);
  cr_settings_free(&u);
  cr_settings_free(&s);
  b.len = 0;
  accepted(FULL, &s);
  assert_int_equal(s.negress, 4);
  assert_string_equal(s.egress[0], "api.example.com");
  assert_string_equal(s.egress[3], "*");
  cr_settings_free(&s);
  cr_buf_free(&b);
  refused_exact("return { handler = print, egress = 'api.example.com' }",
                "setting 'egress' must be a list of hosts like { \"api.example.com\", \"*.stripe.com\", "
                "\"127.0.0.1:9000\" }, got string");
  refused_exact("return { handler = print, egress = { host = 'x' } }",
                "setting 'egress' must be a list (an array of strings), not a table with other keys");
  refused_exact("return { handler = print, egress = { 'a.com', 5 } }",
                "setting 'egress': entry 2 must be a string, got number");
  refused("return { handler = print, egress = { 'a.com:0' } }", "setting 'egress': entry 1 (\"a.com:0\"): ", NULL);
  refused("return { handler = print, egress = { 'http://a.com' } }", "setting 'egress': entry 1 (\"http://a.com\"): ",
          NULL);
  refused("return { handler = print, egress = { '' } }", "setting 'egress': entry 1", NULL);
  refused("return { handler = print, egrss = {} }", "unknown setting 'egrss' (did you mean 'egress'?)", NULL);
  /* At most CR_MAX_EGRESS entries. */
  char chunk[4096] = "return { handler = print, egress = {";
  for (int i = 0; i <= CR_MAX_EGRESS; i++) strcat(chunk, "'a.com',");
  strcat(chunk, "} }");
  refused(chunk, "setting 'egress': at most 64 entries", NULL);
}

/* retries, onSuccess, onFailure: an asynchronous invocation's (core/trigger/invoke/async.h). */
static void test_async_settings(void **state) {
  (void)state;
  cr_settings_t s, u;
  accepted("return function() end", &s);
  assert_int_equal(s.retries, CR_DEFAULT_RETRIES);
  assert_null(s.on_success);
  assert_null(s.on_failure);
  cr_settings_free(&s);
  accepted("return { handler = print, retries = 0, onFailure = { queue = 'failed-jobs' },\n"
           "  onSuccess = { queue = 'done.jobs:v1' } }", &s);
  assert_int_equal(s.retries, 0);
  assert_string_equal(s.on_failure, "failed-jobs");
  assert_string_equal(s.on_success, "done.jobs:v1");
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_settings_pack(&s, &b), 0);
  assert_int_equal(cr_settings_unpack(b.data, b.len, &u), 0);
  assert_same(&s, &u);
  cr_settings_free(&u);
  cr_buf_free(&b);
  cr_settings_free(&s);
  accepted("return { handler = print, retries = 10 }", &s);
  assert_int_equal(s.retries, 10);
  cr_settings_free(&s);
  refused("return { handler = print, retries = 11 }", "setting 'retries'", NULL);
  refused("return { handler = print, retries = 1.5 }", "setting 'retries'", NULL);
  refused("return { handler = print, retries = -1 }", "setting 'retries'", NULL);
  refused_exact("return { handler = print, onFailure = 'q' }",
                "setting 'onFailure' must be a table { queue = NAME }, got string");
  refused_exact("return { handler = print, onFailure = { queue = 'a b' } }",
                "setting 'onFailure': 'queue' must be a queue name (1 to 128 letters, digits, '_', '.', ':' or '-')");
  refused_exact("return { handler = print, onSuccess = { queue = '' } }",
                "setting 'onSuccess': 'queue' must be a queue name (1 to 128 letters, digits, '_', '.', ':' or '-')");
  refused_exact("return { handler = print, onSuccess = {} }",
                "setting 'onSuccess': 'queue' must be a queue name (1 to 128 letters, digits, '_', '.', ':' or '-')");
  refused_exact("return { handler = print, onSuccess = { queue = 'q', lambda = 'x' } }",
                "setting 'onSuccess': unknown key 'lambda' (known: queue)");
  refused_exact("return { handler = print, onFailure = { queue = 'crescent.async' } }",
                "setting 'onFailure': queue 'crescent.async' is the platform's (names starting with 'crescent.' are reserved)");
  refused_exact("return { handler = print, triggers = { { queue = 'crescent.async' } } }",
                "setting 'triggers': entry 1: queue 'crescent.async' is the platform's (names starting with 'crescent.' "
                "are reserved)");
  refused("return { handler = print, onfailure = {} }", "unknown setting 'onfailure' (did you mean 'onFailure'?)", NULL);
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
  /* Defaults (no routes, no env, no triggers) too. */
  cr_settings_defaults(&s);
  assert_int_equal(cr_settings_pack(&s, &b), 0);
  assert_int_equal(cr_settings_unpack(b.data, b.len, &u), 0);
  assert_same(&s, &u);
  assert_int_equal(u.ntriggers, 0);
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

/* The master packs a version's settings into its publish message, followed
 * by the module set (registry.c); a worker unpacks them with a reader that
 * goes on past them. Every trigger field, NULL and "" strings included,
 * comes out as it went in. */
static void test_pack_triggers_master_to_worker(void **state) {
  (void)state;
  cr_settings_t s, u;
  accepted(H "timeout = 2, triggers = {"
             " { cron = '0 2 * * *' },"
             " { cron = 'rate(1 second)', tz = 'Europe/Berlin', catchUp = 30.5, overlap = true },"
             " { queue = 'orders' },"
             " { queue = 'q:2', batch = 7, window = 0.25, visibility = 9.5, maxReceives = 11, concurrency = 13 },"
             " { storage = 'uploads' },"
             " { storage = 'b', events = { 'put' }, prefix = '', suffix = '.png', batch = 2 },"
             " { kv = '' },"
             " { kv = 'users:', namespace = 'ns', maxReceives = 1 } } }",
           &s);
  assert_int_equal(s.ntriggers, 8);
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_settings_pack(&s, &b), 0);
  assert_int_equal(cr_buf_append(&b, "more", 4), 0); /* what the publish message carries next */
  cr_wire_reader_t r;
  cr_wire_reader(&r, b.data, b.len);
  assert_int_equal(cr_settings_unpack_from(&r, &u), 0);
  assert_int_equal(r.end - r.p, 4);
  assert_memory_equal(r.p, "more", 4);
  assert_same(&s, &u);
  /* Spot checks against the literal, so assert_same cannot agree with itself on zeros. */
  assert_null(u.triggers[0].cron.tz);
  assert_string_equal(u.triggers[1].cron.tz, "Europe/Berlin");
  assert_true(u.triggers[1].cron.catch_up == 30.5);
  assert_int_equal(u.triggers[1].cron.overlap, 1);
  assert_true(u.triggers[2].queue.opts.visibility == 12);
  assert_string_equal(u.triggers[3].queue.name, "q:2");
  assert_int_equal(u.triggers[3].queue.opts.batch, 7);
  assert_true(u.triggers[3].queue.opts.window == 0.25);
  assert_true(u.triggers[3].queue.opts.visibility == 9.5);
  assert_int_equal(u.triggers[3].queue.opts.max_receives, 11);
  assert_int_equal(u.triggers[3].queue.opts.concurrency, 13);
  assert_int_equal(u.triggers[4].storage.events, CR_STORAGE_PUT | CR_STORAGE_DELETE);
  assert_null(u.triggers[4].storage.prefix);
  assert_string_equal(u.triggers[5].storage.prefix, "");
  assert_string_equal(u.triggers[5].storage.suffix, ".png");
  assert_int_equal(u.triggers[5].storage.events, CR_STORAGE_PUT);
  assert_string_equal(u.triggers[6].kv.prefix, "");
  assert_string_equal(u.triggers[6].kv.ns, "default");
  assert_string_equal(u.triggers[7].kv.ns, "ns");
  assert_int_equal(u.triggers[7].kv.opts.max_receives, 1);
  /* Deep: nothing shared with what was packed. */
  assert_ptr_not_equal(u.triggers, s.triggers);
  assert_ptr_not_equal(u.triggers[3].queue.name, s.triggers[3].queue.name);
  cr_settings_free(&s);
  assert_string_equal(u.triggers[7].kv.prefix, "users:");
  cr_settings_free(&u);
  assert_int_equal(u.ntriggers, 0);
  assert_null(u.triggers);
  cr_buf_free(&b);
}

/* Packs s, replacing its last 4 bytes (the trigger count, for settings
 * without triggers) by tail. */
static int unpack_with_triggers(const uint32_t *tail, size_t n) {
  cr_settings_t s, u;
  cr_settings_defaults(&s);
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_settings_pack(&s, &b), 0);
  b.len -= 4;
  assert_int_equal(cr_buf_append(&b, tail, n * sizeof *tail), 0);
  char *copy = malloc(b.len);
  memcpy(copy, b.data, b.len);
  int rc = cr_settings_unpack(copy, b.len, &u);
  free(copy);
  cr_buf_free(&b);
  if (rc == 0) cr_settings_free(&u);
  return rc;
}

static void test_unpack_bad_triggers(void **state) {
  (void)state;
  const uint32_t null = 0xffffffffu;
  {
    /* The frame the tables below break: one cron trigger "x", no tz, overlap. */
    cr_buf_t b = CR_BUF_INIT;
    cr_settings_t s, u;
    cr_settings_defaults(&s);
    assert_int_equal(cr_settings_pack(&s, &b), 0);
    b.len -= 4;
    double zero = 0;
    uint32_t one = 1, kind = CR_TRIGGER_CRON;
    cr_buf_append(&b, &one, 4);
    cr_buf_append(&b, &kind, 4);
    cr_wire_str(&b, "x");
    cr_wire_str(&b, NULL);
    cr_buf_append(&b, &zero, 8);
    cr_buf_append(&b, &one, 4);
    assert_int_equal(cr_settings_unpack(b.data, b.len, &u), 0);
    assert_int_equal(u.ntriggers, 1);
    assert_string_equal(u.triggers[0].cron.expr, "x");
    assert_null(u.triggers[0].cron.tz);
    assert_int_equal(u.triggers[0].cron.overlap, 1);
    cr_settings_free(&u);
    cr_buf_free(&b);
  }
  /* An unknown kind, kind 0, too many triggers. */
  uint32_t kind9[] = {1, 9, 0, 0, 0, 0};
  assert_int_equal(unpack_with_triggers(kind9, 6), CR_EINVAL);
  uint32_t kind0[] = {1, 0, 0, 0, 0, 0};
  assert_int_equal(unpack_with_triggers(kind0, 6), CR_EINVAL);
  uint32_t many[] = {CR_MAX_TRIGGERS + 1};
  assert_int_equal(unpack_with_triggers(many, 1), CR_EINVAL);
  /* Strings a spec may not lack: a NULL queue name, cron, bucket, kv prefix or namespace. */
  uint32_t queue_null[] = {1, CR_TRIGGER_QUEUE, null, 1, 0, 0, 0, 0, 1, 1};
  assert_int_equal(unpack_with_triggers(queue_null, 10), CR_EINVAL);
  uint32_t cron_null[] = {1, CR_TRIGGER_CRON, null, null, 0, 0, 0};
  assert_int_equal(unpack_with_triggers(cron_null, 7), CR_EINVAL);
  uint32_t bucket_null[] = {1, CR_TRIGGER_STORAGE, null, CR_STORAGE_PUT, null, null, 1, 0, 0, 0, 0, 1, 1};
  assert_int_equal(unpack_with_triggers(bucket_null, 13), CR_EINVAL);
  uint32_t kv_null[] = {1, CR_TRIGGER_KV, 0, null, 1, 0, 0, 0, 0, 1, 1};
  assert_int_equal(unpack_with_triggers(kv_null, 11), CR_EINVAL);
  /* Storage events: none, or bits that are not events. */
  uint32_t no_events[] = {1, CR_TRIGGER_STORAGE, 0, 0, null, null, 1, 0, 0, 0, 0, 1, 1};
  assert_int_equal(unpack_with_triggers(no_events, 13), CR_EINVAL);
  uint32_t odd_events[] = {1, CR_TRIGGER_STORAGE, 0, 4, null, null, 1, 0, 0, 0, 0, 1, 1};
  assert_int_equal(unpack_with_triggers(odd_events, 13), CR_EINVAL);
  /* The same frame with events = put is accepted (the bucket "" aside, which only load refuses). */
  uint32_t put_events[] = {1, CR_TRIGGER_STORAGE, 0, CR_STORAGE_PUT, null, null, 1, 0, 0, 0, 0, 1, 1};
  assert_int_equal(unpack_with_triggers(put_events, 13), 0);
}

/* Routes carry their policy to the workers; one this binary does not know
 * is refused, not dropped. */
static void test_route_policy_wire(void **state) {
  (void)state;
  cr_settings_t s, u;
  accepted("return { handler = print, routes = { 'GET /x', 'POST /y' } }", &s);
  assert_int_equal(s.routes[0].policy.flags, 0);
  assert_int_equal(s.routes[1].policy.flags, 0);
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_settings_pack(&s, &b), 0);
  assert_int_equal(cr_settings_unpack(b.data, b.len, &u), 0);
  assert_int_equal(u.routes[1].policy.flags, 0);
  cr_settings_free(&u);
  cr_buf_free(&b);
  s.routes[1].policy.flags = 1;
  assert_int_equal(cr_settings_pack(&s, &b), 0);
  assert_int_equal(cr_settings_unpack(b.data, b.len, &u), CR_EINVAL);
  assert_null(u.routes);
  cr_settings_free(&s);
  cr_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bare_function),
      cmocka_unit_test(test_async_settings),
      cmocka_unit_test(test_egress_settings),
      cmocka_unit_test(test_auth_settings),
      cmocka_unit_test(test_cache_settings),
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
      cmocka_unit_test(test_trigger_cron),
      cmocka_unit_test(test_trigger_queue),
      cmocka_unit_test(test_trigger_storage),
      cmocka_unit_test(test_trigger_kv),
      cmocka_unit_test(test_triggers_list),
      cmocka_unit_test(test_trigger_errors_shape),
      cmocka_unit_test(test_trigger_errors_keys),
      cmocka_unit_test(test_trigger_auth),
      cmocka_unit_test(test_trigger_errors_types),
      cmocka_unit_test(test_trigger_errors_ranges),
      cmocka_unit_test(test_triggers_not_supported_yet),
      cmocka_unit_test(test_set_env),
      cmocka_unit_test(test_read_platform),
      cmocka_unit_test(test_pack_round_trip),
      cmocka_unit_test(test_unpack_truncated),
      cmocka_unit_test(test_unpack_garbage),
      cmocka_unit_test(test_pack_triggers_master_to_worker),
      cmocka_unit_test(test_unpack_bad_triggers),
      cmocka_unit_test(test_route_policy_wire),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
