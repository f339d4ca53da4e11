/* test_vm.c - sandboxed LuaJIT states, the metering allocator, deadlines, and what a vm is
 * given by its maker (preloaded modules, the module reader) (core/vm/vm.c, core/vm/watchdog.c,
 * lua/sandbox.lua).
 *
 * Tests that could hang if a limit does not hold run under alarm(): the
 * process dies of SIGALRM (a failure) instead of hanging forever. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"
#include "loader.h"
#include "vm.h"

static double now_s(void) { return (double)cr_clock_ns() / 1e9; }

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* Runs chunk in L; returns the pcall rc and leaves the result or error on top. */
static int run(lua_State *L, const char *chunk) {
  if (luaL_loadstring(L, chunk)) return -1;
  return lua_pcall(L, 0, 1, 0);
}

static void run_ok(lua_State *L, const char *chunk) {
  int rc = run(L, chunk);
  if (rc) fail_msg("chunk failed (%d): %s\n%s", rc, lua_tostring(L, -1), chunk);
}

static int run_bool(lua_State *L, const char *chunk) {
  run_ok(L, chunk);
  int b = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return b;
}

/* The chunk must raise an error containing needle. */
static void run_err(lua_State *L, const char *chunk, const char *needle) {
  int rc = run(L, chunk);
  if (rc == 0) fail_msg("chunk should fail: %s", chunk);
  const char *msg = lua_tostring(L, -1);
  if (!msg || !strstr(msg, needle)) fail_msg("%s\n  error: %s\n  lacks: %s", chunk, msg ? msg : "(not a string)", needle);
  lua_pop(L, 1);
}

static int setup(void **state) {
  (void)state;
  return cr_vm_watchdog_start();
}

/* --- deadlines ------------------------------------------------------------------------------------ */

/* The point of the CHECKHOOK build: a JIT-compiled empty loop stops. */
static void test_checkhook_vm_loop_times_out(void **state) {
  (void)state;
  cr_vm_t *vm = cr_vm_new(NULL);
  assert_non_null(vm);
  lua_State *L = vm->L;
  const char *loops[] = {
      "while true do end",
      "local n = 0 for i = 1, 1e15 do n = n + i end",
      "while true do pcall(function() while true do end end) end", /* pcall cannot swallow it */
      "local co = coroutine.create(function() while true do end end) coroutine.resume(co) while true do end",
      "local s = 0 while true do s = s + #tostring(s % 7) end",
  };
  for (size_t i = 0; i < sizeof loops / sizeof loops[0]; i++) {
    alarm(20);
    assert_int_equal(luaL_loadstring(L, loops[i]), 0);
    double t0 = now_s();
    cr_vm_arm(vm, 0.2);
    int rc = lua_pcall(L, 0, 0, 0);
    cr_vm_disarm(vm);
    double dt = now_s() - t0;
    alarm(0);
    if (rc == 0) fail_msg("loop %zu returned normally", i);
    const char *msg = lua_tostring(L, -1);
    if (!msg || !strstr(msg, "timed out")) fail_msg("loop %zu: error '%s'", i, msg ? msg : "?");
    if (!strstr(msg, "after 0.2")) fail_msg("loop %zu: error '%s'", i, msg);
    assert_true(vm->timed_out);
    if (dt < 0.19 || dt > 5.0) fail_msg("loop %zu stopped after %.3f s", i, dt);
    lua_pop(L, 1);
    assert_null(lua_gethook(L)); /* disarm cleared the hook */
  }
  /* The state is usable again under a new deadline (the pool discards it,
   * but nothing here is left armed). */
  cr_vm_arm(vm, 1.0);
  run_ok(L, "return 1 + 1");
  cr_vm_disarm(vm);
  assert_int_equal(lua_tointeger(L, -1), 2);
  assert_false(vm->timed_out);
  lua_pop(L, 1);
  cr_vm_free(vm);
}

/* Code that ends before its deadline is not touched, even once the deadline
 * has passed after disarming. */
static void test_deadline_not_early(void **state) {
  (void)state;
  cr_vm_t *vm = cr_vm_new(NULL);
  lua_State *L = vm->L;
  cr_vm_arm(vm, 0.5);
  double t0 = now_s();
  run_ok(L, "local t = os.clock() local n = 0 while os.clock() - t < 0.1 do n = n + 1 end return n");
  cr_vm_disarm(vm);
  assert_true(now_s() - t0 >= 0.09);
  assert_false(vm->timed_out);
  lua_pop(L, 1);
  /* Armed for a short time, disarmed in time: the watchdog must not fire later. */
  cr_vm_arm(vm, 0.05);
  run_ok(L, "return 1");
  cr_vm_disarm(vm);
  lua_pop(L, 1);
  sleep_ms(150);
  assert_null(lua_gethook(L));
  run_ok(L, "local n = 0 for i = 1, 1e6 do n = n + i end return n");
  assert_true(lua_tonumber(L, -1) == 500000500000.0);
  lua_pop(L, 1);
  assert_false(vm->timed_out);
  cr_vm_free(vm);
}

/* cr_vm_arm_until: an absolute deadline, as for a resumed invocation. */
static void test_arm_until(void **state) {
  (void)state;
  cr_vm_t *vm = cr_vm_new(NULL);
  lua_State *L = vm->L;
  vm->timeout_s = 1;
  vm->timed_out = 0;
  alarm(20);
  cr_vm_arm_until(vm, cr_clock_ns() + 150000000ULL);
  double t0 = now_s();
  int rc = run(L, "while true do end");
  cr_vm_disarm(vm);
  alarm(0);
  assert_int_not_equal(rc, 0);
  assert_non_null(strstr(lua_tostring(L, -1), "timed out"));
  assert_true(now_s() - t0 < 5.0);
  lua_pop(L, 1);
  cr_vm_free(vm);
}

/* --- the JIT and hooks from another thread, on a plain LuaJIT state ---------------------------------- */

static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "stopped by hook");
}

static void *hook_thread(void *arg) {
  sleep_ms(100);
  lua_sethook((lua_State *)arg, stop_hook, LUA_MASKCOUNT, 1);
  return NULL;
}

static int count_traces(lua_State *L) {
  run_ok(L, "local u = require('jit.util') local n = 0 while u.traceinfo(n + 1) do n = n + 1 end return n");
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return n;
}

static void test_checkhook_plain_state(void **state) {
  (void)state;
  lua_State *L = luaL_newstate();
  assert_non_null(L);
  luaL_openlibs(L);
  assert_true(run_bool(L, "return jit.status() == true"));
  run_ok(L, "local n = 0 for i = 1, 1e6 do n = n + i end return n");
  assert_true(lua_tonumber(L, -1) == 500000500000.0);
  lua_pop(L, 1);
  /* The loop was compiled: a trace exists. */
  assert_true(run_bool(L, "return require('jit.util').traceinfo(1) ~= nil"));
  int before = count_traces(L);
  /* An endless loop, interrupted by a count hook set from another thread. */
  pthread_t t;
  assert_int_equal(luaL_loadstring(L, "while true do end"), 0);
  alarm(20);
  assert_int_equal(pthread_create(&t, NULL, hook_thread, L), 0);
  double t0 = now_s();
  int rc = lua_pcall(L, 0, 0, 0);
  double dt = now_s() - t0;
  pthread_join(t, NULL);
  alarm(0);
  assert_int_equal(rc, LUA_ERRRUN);
  assert_non_null(strstr(lua_tostring(L, -1), "stopped by hook"));
  lua_pop(L, 1);
  assert_true(dt >= 0.09);
  assert_true(dt < 5.0);
  /* ... and that loop had been compiled too, so the hook stopped JIT code. */
  lua_sethook(L, NULL, 0, 0);
  assert_true(count_traces(L) > before);
  lua_close(L);
}

/* The JIT is on inside the sandbox although `jit` is hidden from functions. */
static void test_jit_on_in_sandbox(void **state) {
  (void)state;
  cr_vm_t *vm = cr_vm_new(NULL);
  lua_State *L = vm->L;
  assert_true(run_bool(L, "return jit == nil"));
  run_ok(L, "local n = 0 for i = 1, 1e6 do n = n + i end return n");
  lua_pop(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, "jit");
  assert_true(lua_istable(L, -1));
  lua_getfield(L, -1, "status");
  assert_int_equal(lua_pcall(L, 0, 1, 0), 0);
  assert_true(lua_toboolean(L, -1)); /* jit.status() */
  lua_settop(L, 0);
  lua_getfield(L, LUA_REGISTRYINDEX, "_PRELOAD");
  assert_true(lua_istable(L, -1));
  lua_getfield(L, -1, "jit.util");
  assert_true(lua_isfunction(L, -1));
  assert_int_equal(lua_pcall(L, 0, 1, 0), 0);
  lua_getfield(L, -1, "traceinfo");
  lua_pushinteger(L, 1);
  assert_int_equal(lua_pcall(L, 1, 1, 0), 0);
  assert_false(lua_isnil(L, -1)); /* a trace was compiled in the sandbox */
  lua_settop(L, 0);
  cr_vm_free(vm);
}

/* --- the sandbox ------------------------------------------------------------------------------------ */

static void test_sandbox_globals_absent(void **state) {
  (void)state;
  cr_vm_t *vm = cr_vm_new(NULL);
  lua_State *L = vm->L;
  run_ok(L, "local bad = {}\n"
            "local function chk(name, v) if v ~= nil then bad[#bad + 1] = name end end\n"
            "chk('io', io) chk('os.execute', os.execute) chk('os.getenv', os.getenv)\n"
            "chk('os.exit', os.exit) chk('os.remove', os.remove) chk('os.rename', os.rename)\n"
            "chk('os.tmpname', os.tmpname) chk('os.setlocale', os.setlocale)\n"
            "chk('debug', debug) chk('ffi', ffi) chk('jit', jit) chk('package', package)\n"
            "chk('load', load) chk('loadstring', loadstring) chk('loadfile', loadfile)\n"
            "chk('dofile', dofile) chk('getfenv', getfenv) chk('setfenv', setfenv)\n"
            "chk('newproxy', newproxy) chk('module', module) chk('gcinfo', gcinfo)\n"
            "chk('string.dump', string.dump) chk('(\"x\").dump', ('x').dump)\n"
            "chk('rawget(_G, \"jit\")', rawget(_G, 'jit'))\n"
            "return table.concat(bad, ', ')");
  const char *bad = lua_tostring(L, -1);
  if (bad[0]) fail_msg("reachable in the sandbox: %s", bad);
  lua_pop(L, 1);
  assert_true(run_bool(L, "return getmetatable('') == false"));
  assert_true(run_bool(L, "return _G._G == _G"));
  run_err(L, "return getmetatable('').__index", "index");
  run_err(L, "setmetatable('', {})", "table expected");
  /* The allowlist is there. */
  assert_true(run_bool(L, "return type(string.format) == 'function' and type(table.concat) == 'function'\n"
                          " and type(math.floor) == 'function' and type(bit.band) == 'function'\n"
                          " and type(os.time) == 'function' and type(os.clock) == 'function'\n"
                          " and type(os.date) == 'function' and type(os.difftime) == 'function'\n"
                          " and type(pcall) == 'function' and type(xpcall) == 'function'\n"
                          " and type(unpack) == 'function' and type(tostring) == 'function'\n"
                          " and type(json.encode) == 'function' and type(json.decode) == 'function'\n"
                          " and type(coroutine.wrap) == 'function' and type(require) == 'function'\n"
                          " and type(print) == 'function' and type(_VERSION) == 'string'"));
  assert_true(run_bool(L, "return ('abc'):upper() == 'ABC' and ('x'):rep(3) == 'xxx'"));
  /* The platform modules are not requirable. */
  run_err(L, "require('ffi')", "not found");
  run_err(L, "require('jit')", "not found");
  run_err(L, "require('debug')", "not found");
  run_err(L, "require('io')", "not found");
  run_err(L, "require('os')", "not found");
  run_err(L, "require('jit.util')", "not found");
  run_err(L, "require(5)", "string expected");
  cr_vm_free(vm);
}

static void test_collectgarbage(void **state) {
  (void)state;
  cr_vm_t *vm = cr_vm_new(NULL);
  lua_State *L = vm->L;
  assert_true(run_bool(L, "local k = collectgarbage('count') return type(k) == 'number' and k > 0"));
  run_err(L, "collectgarbage('collect')", "only \"count\"");
  run_err(L, "collectgarbage()", "only \"count\"");
  run_err(L, "collectgarbage('stop')", "only \"count\"");
  run_err(L, "collectgarbage('setpause', 1000)", "only \"count\"");
  cr_vm_free(vm);
}

static void test_user_coroutines(void **state) {
  (void)state;
  cr_vm_t *vm = cr_vm_new(NULL);
  lua_State *L = vm->L;
  assert_true(run_bool(L, "local co = coroutine.create(function(a)\n"
                          "  local b = coroutine.yield(a + 1)\n"
                          "  return b * 2\n"
                          "end)\n"
                          "local ok1, v1 = coroutine.resume(co, 1)\n"
                          "local st = coroutine.status(co)\n"
                          "local ok2, v2 = coroutine.resume(co, 10)\n"
                          "return ok1 and v1 == 2 and st == 'suspended' and ok2 and v2 == 20\n"
                          "  and coroutine.status(co) == 'dead'"));
  assert_true(run_bool(L, "local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)\n"
                          "return gen() + gen() + gen() == 6"));
  assert_true(run_bool(L, "local co = coroutine.create(function() return coroutine.isyieldable() end)\n"
                          "local ok, y = coroutine.resume(co) return ok and y == true"));
  assert_true(run_bool(L, "local co = coroutine.create(function() error('inner') end)\n"
                          "local ok, err = coroutine.resume(co) return not ok and err:find('inner') ~= nil"));
  run_err(L, "coroutine.wrap(function() error('wrapped boom') end)()", "wrapped boom");
  run_err(L, "coroutine.resume('x')", "coroutine expected");
  /* At the top level of the main state there is nothing to yield to. */
  run_err(L, "coroutine.yield(1)", "outside a coroutine");
  cr_vm_free(vm);
}

/* Pushes chunk as a function into a new thread of L adopted by the platform
 * (an invocation's coroutine). The thread stays on L's stack. */
static lua_State *adopted_thread(lua_State *L, const char *chunk) {
  lua_State *co = lua_newthread(L);
  cr_vm_push_sandbox(L, "adopt");
  assert_true(lua_isfunction(L, -1));
  lua_pushvalue(L, -2);
  lua_call(L, 1, 0);
  assert_int_equal(luaL_loadstring(co, chunk), 0);
  return co;
}

static void test_platform_coroutine_yield_refused(void **state) {
  (void)state;
  cr_vm_t *vm = cr_vm_new(NULL);
  lua_State *L = vm->L;
  lua_State *co = adopted_thread(L, "coroutine.yield(1) return 'after'");
  int rc = lua_resume(co, 0);
  assert_int_equal(rc, LUA_ERRRUN);
  assert_non_null(strstr(lua_tostring(co, -1), "outside a coroutine"));
  lua_settop(L, 0);
  co = adopted_thread(L, "return coroutine.isyieldable()");
  assert_int_equal(lua_resume(co, 0), 0);
  assert_false(lua_toboolean(co, -1));
  lua_settop(L, 0);
  /* A user coroutine inside the invocation yields as usual. */
  co = adopted_thread(L, "local c = coroutine.create(function() coroutine.yield(7) return 8 end)\n"
                         "local _, a = coroutine.resume(c) local _, b = coroutine.resume(c) return a * 10 + b");
  assert_int_equal(lua_resume(co, 0), 0);
  assert_int_equal(lua_tointeger(co, -1), 78);
  lua_settop(L, 0);
  assert_ptr_equal(cr_vm_of(co), vm);
  cr_vm_free(vm);
}

/* A platform yield (HOST marker) made inside a user coroutine passes through
 * it to the platform, and the platform's answer comes back to the caller. */
static int host_wait(lua_State *L) {
  cr_vm_push_sandbox(L, "HOST");
  lua_pushliteral(L, "payload");
  return lua_yield(L, 2);
}

static void test_platform_yield_passes_through(void **state) {
  (void)state;
  cr_vm_t *vm = cr_vm_new(NULL);
  lua_State *L = vm->L;
  lua_pushcfunction(L, host_wait);
  lua_setglobal(L, "host_wait");
  lua_State *co = adopted_thread(L, "local c = coroutine.create(function(x)\n"
                                    "  local r = host_wait()\n"
                                    "  local u = coroutine.yield('user ' .. x)\n"
                                    "  return r .. '/' .. u\n"
                                    "end)\n"
                                    "local ok1, v1 = coroutine.resume(c, 'one')\n"
                                    "local ok2, v2 = coroutine.resume(c, 'two')\n"
                                    "return tostring(ok1) .. ':' .. v1 .. '|' .. tostring(ok2) .. ':' .. v2");
  int rc = lua_resume(co, 0);
  assert_int_equal(rc, LUA_YIELD); /* the platform got the HOST yield */
  assert_int_equal(lua_gettop(co), 2);
  cr_vm_push_sandbox(co, "HOST");
  assert_true(lua_rawequal(co, 1, -1));
  lua_pop(co, 1);
  assert_string_equal(lua_tostring(co, 2), "payload");
  lua_settop(co, 0);
  lua_pushliteral(co, "answer");
  rc = lua_resume(co, 1);
  assert_int_equal(rc, 0);
  assert_string_equal(lua_tostring(co, -1), "true:user one|true:answer/two");
  lua_settop(L, 0);
  cr_vm_free(vm);
}

/* --- require of files beside the function --------------------------------------------------------------- */

static char g_root[256];

static void put_file(const char *rel, const char *content, size_t len) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", g_root, rel);
  char *slash = strrchr(path, '/');
  *slash = '\0';
  mkdir(path, 0755);
  *slash = '/';
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fwrite(content, 1, len, f);
  fclose(f);
}

static void remove_tree(void) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
  assert_int_equal(system(cmd), 0);
}

/* Bytecode for "return 42", made by a plain state's string.dump. */
static char *make_bytecode(size_t *len) {
  lua_State *P = luaL_newstate();
  luaL_openlibs(P);
  run_ok(P, "return string.dump(loadstring('return 42'))");
  size_t n;
  const char *s = lua_tolstring(P, -1, &n);
  char *copy = malloc(n);
  memcpy(copy, s, n);
  *len = n;
  lua_close(P);
  return copy;
}

static void test_require_files(void **state) {
  (void)state;
  snprintf(g_root, sizeof g_root, "/tmp/cr-vm-XXXXXX");
  assert_non_null(mkdtemp(g_root));
  const char *util = "local M = {} M.x = 1 M.loads = (M.loads or 0) + 1 return M";
  put_file("lib/util.lua", util, strlen(util));
  put_file("_mod/init.lua", "return 'from init'", 18);
  put_file("fnmod/init.lua", "return 'a function'", 19); /* a function's file: not requireable */
  put_file("lib/bad.lua", "return {", 8);
  put_file("lib/boom.lua", "error('module init failed')", 27);
  put_file("lib/loop_a.lua", "return require('lib.loop_b')", 28);
  put_file("lib/loop_b.lua", "return require('lib.loop_a')", 28);
  put_file("lib/nothing.lua", "local x = 1", 11);
  size_t bclen;
  char *bc = make_bytecode(&bclen);
  assert_memory_equal(bc, "\x1bLJ", 3);
  put_file("lib/bc.lua", bc, bclen);
  free(bc);
  const cr_vm_opts_t opts = {.read_module = cr_loader_module_reader};
  cr_vm_t *vm = cr_vm_new(&opts);
  cr_vm_bind(vm, "fn", g_root, 64u << 20);
  lua_State *L = vm->L;
  assert_true(run_bool(L, "local u = require('lib.util') return u.x == 1"));
  assert_true(run_bool(L, "return require('lib.util') == require('lib.util')")); /* loaded once */
  assert_true(run_bool(L, "return require('_mod') == 'from init'"));
  run_err(L, "require('fnmod')", "is a function's file, not a module");
  assert_true(run_bool(L, "return require('lib.nothing') == true"));
  run_err(L, "require('lib.bad')", "lib/bad.lua:1:");
  run_err(L, "require('lib.boom')", "module init failed");
  run_err(L, "require('lib.loop_a')", "loop");
  run_err(L, "require('lib.bc')", "lib/bc.lua is Lua bytecode: modules are loaded from source only, bytecode is refused");
  run_err(L, "require('lib.missing')", "not found");
  run_err(L, "require('../etc/passwd')", "not a valid module name");
  run_err(L, "require('lib..util')", "not a valid module name");
  run_err(L, "require('.hidden')", "not a valid module name");
  run_err(L, "require('/etc/passwd')", "not a valid module name");
  run_err(L, "require('')", "not a valid module name");
  cr_vm_free(vm);
  /* Without a root (a blank vm), nothing is found. */
  vm = cr_vm_new(&opts);
  run_err(vm->L, "require('lib.util')", "not found");
  cr_vm_free(vm);
  /* Nor without a reader, root or not. */
  vm = cr_vm_new(NULL);
  cr_vm_bind(vm, "fn", g_root, 64u << 20);
  run_err(vm->L, "require('lib.util')", "module 'lib.util' not found");
  cr_vm_free(vm);
  remove_tree();
}

/* --- what the vm's maker gives it: preloads and the module reader ---------------------------------- */

static int preload_opens; /* how many times a preloaded module's loader ran */

/* A preloaded module's loader: {name = the name required, ud = the hook's ud}. */
static int open_test_module(lua_State *L) {
  preload_opens++;
  lua_createtable(L, 0, 2);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, lua_touserdata(L, lua_upvalueindex(1)));
  lua_setfield(L, -2, "ud");
  return 1;
}

static void test_preload(lua_State *L, void *ud) {
  static const char *const names[] = {"test.one", "test.two"};
  for (int i = 0; i < 2; i++) {
    lua_pushlightuserdata(L, ud);
    lua_pushcclosure(L, open_test_module, 1);
    lua_setfield(L, -2, names[i]);
  }
}

static void failing_preload(lua_State *L, void *ud) {
  (void)ud;
  luaL_error(L, "preload refused");
}

/* A vm knows exactly the platform modules its preload hook gave it (and json, always). */
static void test_custom_preloads(void **state) {
  (void)state;
  char marker[] = "the hook's ud";
  const cr_vm_opts_t opts = {.preload = test_preload, .preload_ud = marker};
  cr_vm_t *vm = cr_vm_new(&opts);
  assert_non_null(vm);
  lua_State *L = vm->L;
  preload_opens = 0;
  assert_true(run_bool(L, "local m = require('test.one') return m.name == 'test.one' and m.ud == \"the hook's ud\""));
  assert_true(run_bool(L, "return require('test.one') == require('test.one')")); /* loaded once */
  assert_int_equal(preload_opens, 1);
  assert_true(run_bool(L, "return require('test.two').name == 'test.two'"));
  assert_int_equal(preload_opens, 2);
  assert_true(run_bool(L, "return require('json') == json"));
  /* The stdlib's modules are not there: the vm does not bring them itself. */
  run_err(L, "require('crescent.kv')", "module 'crescent.kv' not found");
  run_err(L, "require('crescent.log')", "module 'crescent.log' not found");
  run_err(L, "require('test.three')", "module 'test.three' not found");
  cr_vm_free(vm);
  /* A vm made without a hook has none of them. */
  vm = cr_vm_new(NULL);
  assert_non_null(vm);
  run_err(vm->L, "require('test.one')", "module 'test.one' not found");
  run_err(vm->L, "require('crescent.kv')", "module 'crescent.kv' not found");
  cr_vm_free(vm);
  /* A hook that fails fails the boot. */
  const cr_vm_opts_t bad = {.preload = failing_preload};
  assert_null(cr_vm_new(&bad));
}

/* What the fake reader was asked, and what it answers. */
typedef struct {
  int calls;
  char root[64];
  char relpaths[8][64];
} fake_reader_t;

static int fake_reader(void *ud, const char *root, const char *relpath, char **src, size_t *len, char *why,
                       size_t whylen) {
  fake_reader_t *f = ud;
  if (f->calls < 8) snprintf(f->relpaths[f->calls], sizeof f->relpaths[0], "%s", relpath);
  f->calls++;
  snprintf(f->root, sizeof f->root, "%s", root);
  const char *text = NULL;
  if (strcmp(relpath, "lib/fake.lua") == 0) text = "return { from = 'the fake reader', name = ... }";
  else if (strcmp(relpath, "pkg/init.lua") == 0) text = "return 'pkg from init'";
  else if (strcmp(relpath, "lib/broken.lua") == 0) text = "return {";
  else if (strcmp(relpath, "lib/refused.lua") == 0) {
    snprintf(why, whylen, "the fake reader refuses it");
    return CR_EINVAL;
  }
  if (!text) return CR_ENOENT;
  *src = strdup(text);
  *len = strlen(text);
  return 0;
}

/* require() reads files through the reader the vm was made with, under the vm's root. */
static void test_module_reader_hook(void **state) {
  (void)state;
  fake_reader_t f;
  memset(&f, 0, sizeof f);
  const cr_vm_opts_t opts = {.read_module = fake_reader, .read_ud = &f};
  cr_vm_t *vm = cr_vm_new(&opts);
  assert_non_null(vm);
  cr_vm_bind(vm, "fn", "/no/such/root", 64u << 20);
  cr_vm_modules_t record = {0};
  vm->record = &record;
  lua_State *L = vm->L;
  assert_true(run_bool(L, "local m = require('lib.fake') return m.from == 'the fake reader' and m.name == 'lib.fake'"));
  assert_int_equal(f.calls, 1);
  assert_string_equal(f.root, "/no/such/root");
  assert_string_equal(f.relpaths[0], "lib/fake.lua");
  assert_true(run_bool(L, "return require('lib.fake') == require('lib.fake')"));
  assert_int_equal(f.calls, 1); /* loaded once, read once */
  /* NAME.lua first, then NAME/init.lua. */
  assert_true(run_bool(L, "return require('pkg') == 'pkg from init'"));
  assert_int_equal(f.calls, 3);
  assert_string_equal(f.relpaths[1], "pkg.lua");
  assert_string_equal(f.relpaths[2], "pkg/init.lua");
  /* The reader's refusal is the error, with its reason. */
  run_err(L, "require('lib.refused')", "module 'lib.refused' cannot be required: the fake reader refuses it");
  run_err(L, "require('lib.broken')", "lib/broken.lua:1:");
  run_err(L, "require('lib.absent')", "module 'lib.absent' not found (looked for lib/absent.lua and lib/absent/init.lua");
  /* What it read is recorded for the version, as read. */
  assert_int_equal(record.n, 3);
  const cr_vm_module_t *m = cr_vm_modules_find(&record, "lib.fake");
  assert_non_null(m);
  assert_string_equal(m->relpath, "lib/fake.lua");
  assert_string_equal(m->source, "return { from = 'the fake reader', name = ... }");
  assert_non_null(cr_vm_modules_find(&record, "pkg"));
  assert_string_equal(cr_vm_modules_find(&record, "pkg")->relpath, "pkg/init.lua");
  assert_non_null(cr_vm_modules_find(&record, "lib.broken"));
  cr_vm_modules_free(&record);
  /* The version's own modules come first: the reader is not asked for them. */
  cr_vm_modules_t snap = {0};
  assert_int_equal(cr_vm_modules_add(&snap, "lib.snap", "lib/snap.lua", "return 'from the version'", 25), 0);
  vm->record = NULL;
  vm->modules = &snap;
  int before = f.calls;
  assert_true(run_bool(L, "return require('lib.snap') == 'from the version'"));
  assert_int_equal(f.calls, before);
  vm->modules = NULL;
  cr_vm_free(vm);
  cr_vm_modules_free(&snap);
}

/* --- cr_vm_load ------------------------------------------------------------------------------------ */

static void test_load_ok(void **state) {
  (void)state;
  cr_vm_t *vm = cr_vm_new(NULL);
  cr_vm_bind(vm, "hello", NULL, 64u << 20);
  lua_State *L = vm->L;
  lua_pushliteral(L, "under");
  int top = lua_gettop(L);
  char err[512] = "";
  const char *src = "local n = 0 return function() n = n + 1 return n end";
  assert_int_equal(cr_vm_load(vm, "@hello.lua", src, strlen(src), 5.0, err, sizeof err), 0);
  assert_int_equal(lua_gettop(L), top + 1);
  assert_true(lua_isfunction(L, -1));
  assert_string_equal(lua_tostring(L, 1), "under");
  assert_false(vm->timed_out);
  assert_false(vm->mem_strict); /* back to platform mode */
  lua_settop(L, 0);
  /* An init that returns nothing pushes nil. */
  assert_int_equal(cr_vm_load(vm, "@x.lua", "local y = 1", 11, 5.0, err, sizeof err), 0);
  assert_int_equal(lua_gettop(L), 1);
  assert_true(lua_isnil(L, -1));
  lua_settop(L, 0);
  cr_vm_free(vm);
}

static void test_load_bytecode_refused(void **state) {
  (void)state;
  size_t len;
  char *bc = make_bytecode(&len);
  cr_vm_t *vm = cr_vm_new(NULL);
  char err[512] = "";
  int top = lua_gettop(vm->L);
  assert_int_equal(cr_vm_load(vm, "@bc.lua", bc, len, 5.0, err, sizeof err), CR_ELUA);
  assert_non_null(strstr(err, "mode"));
  assert_int_equal(lua_gettop(vm->L), top);
  /* Just the signature is enough to be refused. */
  assert_int_equal(cr_vm_load(vm, "@bc2.lua", "\x1bLJ\x02", 4, 5.0, err, sizeof err), CR_ELUA);
  free(bc);
  cr_vm_free(vm);
}

static void test_load_errors(void **state) {
  (void)state;
  cr_vm_t *vm = cr_vm_new(NULL);
  char err[2048] = "";
  int top = lua_gettop(vm->L);
  const char *syn = "local x = 1\nreturn function(";
  assert_int_equal(cr_vm_load(vm, "@users/[id].lua", syn, strlen(syn), 5.0, err, sizeof err), CR_ELUA);
  assert_non_null(strstr(err, "users/[id].lua:2:"));
  assert_int_equal(lua_gettop(vm->L), top);
  const char *rt = "local t = nil\n\nlocal y = t.field\nreturn print";
  assert_int_equal(cr_vm_load(vm, "@rt.lua", rt, strlen(rt), 5.0, err, sizeof err), CR_ELUA);
  assert_non_null(strstr(err, "rt.lua:3:"));
  assert_non_null(strstr(err, "index"));
  assert_int_equal(lua_gettop(vm->L), top);
  const char *thrown = "error({code = 1})";
  assert_int_equal(cr_vm_load(vm, "@t.lua", thrown, strlen(thrown), 5.0, err, sizeof err), CR_ELUA);
  assert_true(err[0] != '\0');
  assert_int_equal(lua_gettop(vm->L), top);
  /* A tiny err buffer is not overrun. */
  char tiny[8];
  memset(tiny, 'Z', sizeof tiny);
  assert_int_equal(cr_vm_load(vm, "@long-chunk-name.lua", "return (", 8, 5.0, tiny, 4), CR_ELUA);
  assert_int_equal(tiny[3], '\0');
  assert_int_equal(tiny[4], 'Z');
  cr_vm_free(vm);
}

static void test_load_init_timeout(void **state) {
  (void)state;
  cr_vm_t *vm = cr_vm_new(NULL);
  char err[512] = "";
  int top = lua_gettop(vm->L);
  const char *srcs[] = {"while true do end", "while true do pcall(function() while true do end end) end"};
  for (size_t i = 0; i < 2; i++) {
    alarm(20);
    double t0 = now_s();
    int rc = cr_vm_load(vm, "@slow.lua", srcs[i], strlen(srcs[i]), 0.3, err, sizeof err);
    double dt = now_s() - t0;
    alarm(0);
    assert_int_equal(rc, CR_ETIMEDOUT);
    assert_non_null(strstr(err, "slow.lua"));
    assert_non_null(strstr(err, "timed out after 0.30 seconds"));
    assert_true(dt >= 0.29 && dt < 5.0);
    assert_int_equal(lua_gettop(vm->L), top);
    assert_null(lua_gethook(vm->L));
  }
  cr_vm_free(vm);
}

static void test_load_memory_limit(void **state) {
  (void)state;
  const char *srcs[] = {
      "local t = {} for i = 1, 1e8 do t[i] = i end return print",
      "local s = string.rep('x', 64 * 1024 * 1024) return print",
      "local parts = {} for i = 1, 1e6 do parts[i] = tostring(i) .. string.rep('y', 100) end return print",
      /* an init that catches its own memory error is still refused */
      "local ok = pcall(string.rep, 'x', 64 * 1024 * 1024) return print",
  };
  for (size_t i = 0; i < sizeof srcs / sizeof srcs[0]; i++) {
    cr_vm_t *vm = cr_vm_new(NULL);
    size_t boot = vm->mem_used;
    assert_true(boot > 0);
    cr_vm_bind(vm, "big", NULL, boot + (4u << 20)); /* 4 MB more than booting took */
    char err[512] = "";
    int top = lua_gettop(vm->L);
    alarm(30);
    int rc = cr_vm_load(vm, "@big.lua", srcs[i], strlen(srcs[i]), 10.0, err, sizeof err);
    alarm(0);
    if (rc != CR_ENOMEM) fail_msg("source %zu: rc %d (%s)", i, rc, err);
    assert_non_null(strstr(err, "big.lua"));
    assert_non_null(strstr(err, "memory"));
    assert_true(vm->mem_exceeded);
    assert_true(vm->mem_peak <= boot + (4u << 20));
    assert_int_equal(lua_gettop(vm->L), top);
    cr_vm_free(vm);
  }
  /* Under the limit, the same kind of init is fine. */
  cr_vm_t *vm = cr_vm_new(NULL);
  cr_vm_bind(vm, "ok", NULL, vm->mem_used + (16u << 20));
  char err[256];
  const char *fits = "local t = {} for i = 1, 1e4 do t[i] = i end return print";
  assert_int_equal(cr_vm_load(vm, "@ok.lua", fits, strlen(fits), 10.0, err, sizeof err), 0);
  assert_false(vm->mem_exceeded);
  cr_vm_free(vm);
}

static void test_mem_meter(void **state) {
  (void)state;
  cr_vm_t *vm = cr_vm_new(NULL);
  size_t boot = vm->mem_used;
  assert_true(boot > 1000);
  assert_true(vm->mem_peak >= boot);
  run_ok(vm->L, "local t = {} for i = 1, 100000 do t[i] = {i} end _G.keep = t return #t");
  lua_pop(vm->L, 1);
  size_t grown = vm->mem_used;
  assert_true(grown > boot + 100000 * 16);
  assert_true(vm->mem_peak >= grown);
  /* Close the state ourselves to read the meter afterwards: every byte the
   * state took was given back through the allocator. */
  lua_close(vm->L);
  vm->L = NULL;
  assert_int_equal(vm->mem_used, 0);
  cr_vm_free(vm);
}

/* --- the rest -------------------------------------------------------------------------------------- */

static void test_print_logs(void **state) {
  (void)state;
  cr_vm_t *vm = cr_vm_new(NULL);
  cr_vm_bind(vm, "printer", NULL, 64u << 20);
  vm->reqid = "req-print-1";
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  fflush(stdout);
  int saved = dup(STDOUT_FILENO);
  dup2(fds[1], STDOUT_FILENO);
  close(fds[1]);
  int rc = run(vm->L, "print('a', 1, nil, true) print() return 1");
  dup2(saved, STDOUT_FILENO);
  close(saved);
  char buf[4096];
  ssize_t n = read(fds[0], buf, sizeof buf - 1);
  close(fds[0]);
  assert_int_equal(rc, 0);
  assert_true(n > 0);
  buf[n] = '\0';
  assert_non_null(strstr(buf, "\"msg\":\"a\\t1\\tnil\\ttrue\""));
  assert_non_null(strstr(buf, "\"requestId\":\"req-print-1\""));
  assert_non_null(strstr(buf, "\"function\":\"printer\""));
  assert_non_null(strstr(buf, "\"source\":\"print\""));
  assert_non_null(strstr(buf, "\"msg\":\"\""));
  cr_vm_free(vm);
}

static int host_raise(lua_State *L) { return luaL_error(L, "from the host"); }

/* Tracebacks name C functions, never print their address: a C function
 * called in a tail call or from C has no name in its frame, and LuaJIT's own
 * traceback printed "[builtin#19]: at 0x55..." for it. */
static void test_traceback_without_addresses(void **state) {
  (void)state;
  cr_vm_t *vm = cr_vm_new(NULL);
  lua_State *L = vm->L;
  static const struct {
    const char *chunk, *want;
  } cases[] = {
      {"return error('tail')", "tail\nstack traceback:\n\t[C]: in function 'error'"},
      {"return string.rep()",
       "bad argument #1 to '?' (string expected, got no value)\nstack traceback:\n\t[C]: in function 'string.rep'"},
      {"local f = ...; return f()", "from the host\nstack traceback:\n\t[C]: in ?"},
      {"local function g() error('deep') end\nlocal function f() g() end\nf()",
       "[string \"local function g() error('deep') end...\"]:1: deep\nstack traceback:\n"
       "\t[C]: in function 'error'\n"
       "\t[string \"local function g() error('deep') end...\"]:1: in function 'g'\n"
       "\t[string \"local function g() error('deep') end...\"]:2: in function 'f'\n"
       "\t[string \"local function g() error('deep') end...\"]:3: in main chunk"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    lua_State *co = lua_newthread(L);
    assert_int_equal(luaL_loadstring(co, cases[i].chunk), 0);
    lua_pushcfunction(co, host_raise);
    assert_int_equal(lua_resume(co, 1), LUA_ERRRUN);
    char out[2048];
    cr_vm_describe_error(co, -1, out, sizeof out, 1);
    assert_string_equal(out, cases[i].want);
    lua_pop(L, 1);
  }
  /* A deep stack: the first 12 frames, "...", the last 10. */
  lua_State *co = lua_newthread(L);
  assert_int_equal(luaL_loadstring(co, "local function f(n) if n == 0 then error('x') end f(n - 1) end f(100)"), 0);
  assert_int_equal(lua_resume(co, 0), LUA_ERRRUN);
  char out[4096];
  cr_vm_describe_error(co, -1, out, sizeof out, 1);
  int frames = 0;
  for (const char *p = out; (p = strstr(p, "\n\t")); p += 2) frames++;
  assert_int_equal(frames, 12 + 1 + 10);
  assert_non_null(strstr(out, "\n\t...\n"));
  assert_non_null(strstr(out, "in main chunk"));
  assert_null(strstr(out, "0x"));
  lua_settop(L, 0);
  cr_vm_free(vm);
}

static void test_vm_of_and_describe(void **state) {
  (void)state;
  cr_vm_t *vm = cr_vm_new(NULL);
  lua_State *L = vm->L;
  assert_ptr_equal(cr_vm_of(L), vm);
  lua_State *co = lua_newthread(L);
  assert_ptr_equal(cr_vm_of(co), vm);
  lua_pop(L, 1);
  char out[512];
  lua_pushliteral(L, "plain message");
  cr_vm_describe_error(L, -1, out, sizeof out, 0);
  assert_string_equal(out, "plain message");
  cr_vm_describe_error(L, -1, out, sizeof out, 1);
  assert_memory_equal(out, "plain message", 13);
  assert_non_null(strstr(out, "stack traceback"));
  lua_pushnumber(L, 42);
  cr_vm_describe_error(L, -1, out, sizeof out, 0);
  assert_string_equal(out, "42");
  lua_newtable(L);
  cr_vm_describe_error(L, -1, out, sizeof out, 0);
  assert_string_equal(out, "table");
  lua_pushnil(L);
  cr_vm_describe_error(L, -1, out, sizeof out, 0);
  assert_string_equal(out, "nil");
  int top = lua_gettop(L);
  cr_vm_describe_error(L, -1, out, sizeof out, 1);
  assert_int_equal(lua_gettop(L), top);
  lua_settop(L, 0);
  /* Blank vms are independent: globals do not leak between them. */
  cr_vm_t *other = cr_vm_new(NULL);
  run_ok(L, "shared_name = 'vm1' return 1");
  lua_pop(L, 1);
  assert_true(run_bool(other->L, "return shared_name == nil"));
  cr_vm_free(other);
  cr_vm_free(vm);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_checkhook_vm_loop_times_out),
      cmocka_unit_test(test_deadline_not_early),
      cmocka_unit_test(test_arm_until),
      cmocka_unit_test(test_checkhook_plain_state),
      cmocka_unit_test(test_jit_on_in_sandbox),
      cmocka_unit_test(test_sandbox_globals_absent),
      cmocka_unit_test(test_collectgarbage),
      cmocka_unit_test(test_user_coroutines),
      cmocka_unit_test(test_platform_coroutine_yield_refused),
      cmocka_unit_test(test_platform_yield_passes_through),
      cmocka_unit_test(test_require_files),
      cmocka_unit_test(test_custom_preloads),
      cmocka_unit_test(test_module_reader_hook),
      cmocka_unit_test(test_load_ok),
      cmocka_unit_test(test_load_bytecode_refused),
      cmocka_unit_test(test_load_errors),
      cmocka_unit_test(test_load_init_timeout),
      cmocka_unit_test(test_load_memory_limit),
      cmocka_unit_test(test_mem_meter),
      cmocka_unit_test(test_print_logs),
      cmocka_unit_test(test_vm_of_and_describe),
      cmocka_unit_test(test_traceback_without_addresses),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
