/* vm_bench.c - the instance numbers of issue 3 (a benchmark program, not a test).
 *
 * Prints one table:
 *   cold start   boot a sandboxed state (cr_vm_new), bind it and run a small function's init
 *                (cr_vm_load), N times: p50/p99 of boot, init and both; also lua_close, and the
 *                pool's full cold start (acquire: boot + init + ctx + coroutine).
 *   warm call    handler(event, ctx) in a warm instance the way every trigger runs it: through
 *                the dispatcher (admit, acquire, begin, event, run, finish, meter, release) with
 *                a trigger of its own: ns per call, p50 and mean; and a bare lua_resume of the same handler with the
 *                Lua API only, for what LuaJIT itself costs.
 *   memory       the allocator's mem_used of an idle instance after a full GC: blank state,
 *                with a small function loaded, with `require "crescent.kv"`, a pool instance
 *                after one call; and the RSS growth per instance over many instances (malloc
 *                overhead included; JIT machine code is not in mem_used).
 *   timeout      with the watchdog started, a function `while true do end` (JIT-compiled after
 *                a few dozen iterations) with a 50 ms timeout, run through the invoke path:
 *                delay = end of the invocation - deadline; p50/p99/max.
 *
 * Usage: vm_bench [--quick]     (--quick: 10x fewer iterations, 20 timeouts; a smoke run)
 * Build: cmake target vm_bench (tests/bench/CMakeLists.txt), linked against crescent_core. */
#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "dispatch.h"
#include "error.h"
#include "invoke.h"
#include "log.h"
#include "meter.h"
#include "loader.h"
#include "modules.h"
#include "pool.h"
#include "registry.h"
#include "settings.h"
#include "vm.h"

static const char HELLO_SRC[] =
    "-- hello: the smallest function\n"
    "return function(event)\n"
    "  return \"hello \" .. (event.query.name or \"world\")\n"
    "end\n";

static const char KV_SRC[] =
    "local kv = require \"crescent.kv\"\n"
    "return function(event)\n"
    "  return kv\n"
    "end\n";

static const char LOOP_SRC[] =
    "return function(event)\n"
    "  while true do end\n"
    "end\n";

static int quick;
/* How the vms boot: as a worker's, on a stdlib without Redis (set in main). */
static cr_vm_opts_t vmopts;
static cr_pool_opts_t popts;

/* ------------------------------------------------------------------ helpers */

static void die(const char *what, const char *detail) {
  fprintf(stderr, "vm_bench: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  exit(1);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

typedef struct {
  double p50, p99, max, mean;
} stats_t;

/* Sorts v (ns) and returns its percentiles, in ns. */
static stats_t stats(uint64_t *v, size_t n) {
  stats_t s = {0, 0, 0, 0};
  if (n == 0) return s;
  qsort(v, n, sizeof *v, cmp_u64);
  double sum = 0;
  for (size_t i = 0; i < n; i++) sum += (double)v[i];
  s.p50 = (double)v[n / 2];
  size_t i99 = (size_t)((double)n * 0.99);
  if (i99 >= n) i99 = n - 1;
  s.p99 = (double)v[i99];
  s.max = (double)v[n - 1];
  s.mean = sum / (double)n;
  return s;
}

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (!f) return 0;
  if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  fclose(f);
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void row(const char *what, const char *value, const char *note) {
  printf("| %-46s | %-34s | %s |\n", what, value, note);
}

/* A row whose value is a size in bytes, shown in KB. */
static void row_kb(const char *what, size_t bytes, const char *note) {
  char v[64];
  snprintf(v, sizeof v, "%.1f KB", (double)bytes / 1024);
  row(what, v, note);
}

/* Publishes a version of a function named name with source src. */
static cr_fnver_t *publish(cr_registry_t *r, const char *name, const char *src, double timeout_s) {
  char rel[256];
  snprintf(rel, sizeof rel, "%s.lua", name);
  cr_fn_t *fn = cr_registry_add(r, rel);
  if (!fn) die("cr_registry_add failed", name);
  cr_settings_t s;
  cr_settings_defaults(&s);
  if (timeout_s > 0) s.timeout = timeout_s;
  char *copy = strdup(src);
  if (!copy) die("out of memory", NULL);
  cr_fnver_t *v = cr_registry_publish(r, fn, copy, strlen(src), &s);
  if (!v) die("cr_registry_publish failed", name);
  return v;
}

/* The event the benchmark passes: the fields a hello handler reads. The
 * gateway builds its event lazily (an __index metamethod); this one is eager. */
static void push_event(lua_State *co) {
  lua_createtable(co, 0, 6);
  lua_pushliteral(co, "GET");
  lua_setfield(co, -2, "method");
  lua_pushliteral(co, "/hello");
  lua_setfield(co, -2, "path");
  lua_pushliteral(co, "bench-request-id");
  lua_setfield(co, -2, "requestId");
  lua_newtable(co);
  lua_setfield(co, -2, "query");
  lua_newtable(co);
  lua_setfield(co, -2, "headers");
}

/* The objects a worker runs invocations with, without a loop or shared
 * memory (no waiting, no concurrency limit, nothing metered). */
typedef struct {
  cr_pool_t *pool;
  cr_invoker_t *invoker;
  cr_meter_t *meter;
  cr_dispatch_t *dispatch;
} runner_t;


static void runner_open(runner_t *r, cr_registry_t *reg) {
  r->pool = cr_pool_new(NULL, reg, NULL, &popts);
  r->invoker = cr_invoker_new(NULL, NULL);
  r->meter = cr_meter_new(NULL);
  r->dispatch = r->pool && r->invoker && r->meter ? cr_dispatch_new(NULL, r->pool, r->invoker, r->meter, NULL) : NULL;
  if (!r->dispatch) die("setting up the pool and the dispatcher failed", NULL);
}

static void runner_close(runner_t *r) {
  cr_dispatch_free(r->dispatch);
  cr_meter_free(r->meter);
  cr_invoker_free(r->invoker);
  cr_pool_free(r->pool);
}

/* How a bench call ended (its trigger's finish copies it out). */
typedef struct {
  cr_outcome_t outcome;
  int refused;
  int string_result;
  uint64_t end_ns, deadline_ns;
  char error[256];
} result_t;

static void bench_push_event(cr_call_t *call, lua_State *co) {
  (void)call;
  push_event(co);
}

static int bench_finish(cr_call_t *call) {
  result_t *res = call->ctx;
  cr_invocation_t *inv = &call->inv;
  res->outcome = inv->outcome;
  res->end_ns = inv->end_ns;
  res->deadline_ns = inv->deadline_ns;
  res->string_result = inv->outcome == CR_OUTCOME_OK && inv->nresults == 1 && lua_isstring(inv->co, -1);
  size_t n = strnlen(inv->error, sizeof res->error - 1);
  memcpy(res->error, inv->error, n);
  res->error[n] = '\0';
  return inv->outcome == CR_OUTCOME_OK ? 200 : 500;
}

static void bench_refused(cr_call_t *call, cr_refusal_t why) {
  result_t *res = call->ctx;
  res->refused = (int)why;
}

static const cr_trigger_t bench_trigger = {
    .name = "bench", .push_event = bench_push_event, .finish = bench_finish, .refused = bench_refused};

/* One invocation through the dispatcher, as every trigger runs one. */
static cr_outcome_t invoke_once(runner_t *r, cr_fnver_t *ver, result_t *res) {
  res->refused = 0;
  cr_call_t *call = cr_dispatch_call(r->dispatch, &bench_trigger, ver->fn, res, "bench-request-id", 16);
  if (!call) die("out of memory", NULL);
  cr_dispatch_submit(r->dispatch, call);
  if (res->refused) die("the call was refused", NULL);
  if (res->outcome == CR_OUTCOME_OK && !res->string_result) die("unexpected result", NULL);
  return res->outcome;
}

/* ------------------------------------------------------------------ cold start */

static void bench_cold(cr_registry_t *reg, cr_fnver_t *hello) {
  size_t n = quick ? 200 : 2000;
  uint64_t *boot = calloc(n, sizeof *boot), *init = calloc(n, sizeof *init);
  uint64_t *both = calloc(n, sizeof *both), *closing = calloc(n, sizeof *closing);
  uint64_t *pool_cold = calloc(n, sizeof *pool_cold);
  if (!boot || !init || !both || !closing || !pool_cold) die("out of memory", NULL);
  char err[1024];
  for (size_t i = 0; i < n; i++) {
    uint64_t t0 = cr_clock_ns();
    cr_vm_t *vm = cr_vm_new(&vmopts);
    uint64_t t1 = cr_clock_ns();
    if (!vm) die("cr_vm_new failed", NULL);
    cr_vm_bind(vm, "hello", reg->root, 128u * 1024 * 1024);
    if (cr_vm_load(vm, "@hello.lua", HELLO_SRC, sizeof HELLO_SRC - 1, CR_INIT_TIMEOUT, err, sizeof err))
      die("cr_vm_load failed", err);
    uint64_t t2 = cr_clock_ns();
    lua_settop(vm->L, 0);
    cr_vm_free(vm);
    uint64_t t3 = cr_clock_ns();
    boot[i] = t1 - t0;
    init[i] = t2 - t1;
    both[i] = t2 - t0;
    closing[i] = t3 - t2;
  }
  /* The pool's cold start: no blank vm ready (a pool without a loop keeps
   * none), so acquire boots, binds, runs the init and prepares ctx and the
   * coroutine. The instance is then discarded, so every acquire is cold. */
  cr_pool_t *pool = cr_pool_new(NULL, reg, NULL, &popts);
  if (!pool) die("cr_pool_new failed", NULL);
  for (size_t i = 0; i < n; i++) {
    cr_instance_t *inst;
    int cold;
    uint64_t t0 = cr_clock_ns();
    if (cr_pool_acquire(pool, hello, &inst, &cold, err, sizeof err)) die("cr_pool_acquire failed", err);
    pool_cold[i] = cr_clock_ns() - t0;
    if (!cold) die("expected a cold start", NULL);
    inst->broken = 1;
    cr_pool_release(pool, inst); /* closed at once: the pool has no loop */
  }
  cr_pool_free(pool);

  char v[96], note[128];
  stats_t s;
  snprintf(note, sizeof note, "N=%zu, hello.lua", n);
  s = stats(boot, n);
  snprintf(v, sizeof v, "p50 %.1f us, p99 %.1f us", s.p50 / 1e3, s.p99 / 1e3);
  row("cold start: boot (cr_vm_new)", v, note);
  s = stats(init, n);
  snprintf(v, sizeof v, "p50 %.1f us, p99 %.1f us", s.p50 / 1e3, s.p99 / 1e3);
  row("cold start: init (bind + cr_vm_load)", v, note);
  s = stats(both, n);
  snprintf(v, sizeof v, "p50 %.1f us, p99 %.1f us", s.p50 / 1e3, s.p99 / 1e3);
  row("cold start: boot + init", v, note);
  s = stats(pool_cold, n);
  snprintf(v, sizeof v, "p50 %.1f us, p99 %.1f us", s.p50 / 1e3, s.p99 / 1e3);
  row("cold start: pool acquire (boot+init+ctx+co)", v, "no pre-booted blank vm");
  s = stats(closing, n);
  snprintf(v, sizeof v, "p50 %.1f us, p99 %.1f us", s.p50 / 1e3, s.p99 / 1e3);
  row("lua_close (cr_vm_free), off the request path", v, note);
  free(boot);
  free(init);
  free(both);
  free(closing);
  free(pool_cold);
}

/* ------------------------------------------------------------------ warm invocation */

static void bench_warm(cr_registry_t *reg, cr_fnver_t *hello) {
  size_t n = quick ? 20000 : 200000, warmup = n / 10;
  uint64_t *lat = calloc(n, sizeof *lat);
  if (!lat) die("out of memory", NULL);
  runner_t r;
  runner_open(&r, reg);
  result_t res;
  for (size_t i = 0; i < warmup; i++)
    if (invoke_once(&r, hello, &res) != CR_OUTCOME_OK) die("warm-up call failed", res.error);
  uint64_t start = cr_clock_ns();
  for (size_t i = 0; i < n; i++) {
    uint64_t t0 = cr_clock_ns();
    if (invoke_once(&r, hello, &res) != CR_OUTCOME_OK) die("call failed", res.error);
    lat[i] = cr_clock_ns() - t0;
  }
  double mean_loop = (double)(cr_clock_ns() - start) / (double)n;
  runner_close(&r);
  stats_t s = stats(lat, n);
  char v[96], note[160];
  snprintf(v, sizeof v, "p50 %.0f ns, mean %.0f ns", s.p50, mean_loop);
  snprintf(note, sizeof note, "N=%zu; dispatch: admit+acquire+begin+event+run+finish+meter+release (p99 %.0f ns)", n, s.p99);
  row("warm call: dispatch (crescent's path)", v, note);

  /* The same handler with the Lua API only: a reused coroutine, an event
   * table and a ctx table, lua_resume; no deadline, no meters. */
  cr_vm_t *vm = cr_vm_new(&vmopts);
  if (!vm) die("cr_vm_new failed", NULL);
  char err[1024];
  cr_vm_bind(vm, "hello", reg->root, 128u * 1024 * 1024);
  if (cr_vm_load(vm, "@hello.lua", HELLO_SRC, sizeof HELLO_SRC - 1, CR_INIT_TIMEOUT, err, sizeof err))
    die("cr_vm_load failed", err);
  lua_State *L = vm->L;
  int handler = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  int ctx = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_State *co = lua_newthread(L);
  int co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  for (size_t i = 0; i < warmup + n; i++) {
    uint64_t t0 = i >= warmup ? cr_clock_ns() : 0;
    lua_rawgeti(co, LUA_REGISTRYINDEX, handler);
    push_event(co);
    lua_rawgeti(co, LUA_REGISTRYINDEX, ctx);
    if (lua_resume(co, 2) != 0 || !lua_isstring(co, -1)) die("bare resume failed", lua_tostring(co, -1));
    lua_settop(co, 0);
    if (i == warmup) start = t0;
    if (i >= warmup) lat[i - warmup] = cr_clock_ns() - t0;
  }
  mean_loop = (double)(cr_clock_ns() - start) / (double)n;
  luaL_unref(L, LUA_REGISTRYINDEX, co_ref);
  cr_vm_free(vm);
  s = stats(lat, n);
  snprintf(v, sizeof v, "p50 %.0f ns, mean %.0f ns", s.p50, mean_loop);
  snprintf(note, sizeof note, "N=%zu; lua_resume(handler, event, ctx) only", n);
  row("warm call: bare Lua API (for comparison)", v, note);
  free(lat);
}

/* ------------------------------------------------------------------ memory */

static size_t settle(cr_vm_t *vm) {
  lua_gc(vm->L, LUA_GCCOLLECT, 0);
  lua_gc(vm->L, LUA_GCCOLLECT, 0);
  return vm->mem_used;
}

static void bench_memory(cr_registry_t *reg, cr_fnver_t *hello) {
  char err[1024], note[160];
  cr_vm_t *vm = cr_vm_new(&vmopts);
  if (!vm) die("cr_vm_new failed", NULL);
  size_t blank = settle(vm);
  cr_vm_free(vm);

  vm = cr_vm_new(&vmopts);
  if (!vm) die("cr_vm_new failed", NULL);
  cr_vm_bind(vm, "hello", reg->root, 128u * 1024 * 1024);
  if (cr_vm_load(vm, "@hello.lua", HELLO_SRC, sizeof HELLO_SRC - 1, CR_INIT_TIMEOUT, err, sizeof err))
    die("cr_vm_load failed", err);
  size_t loaded = settle(vm); /* the handler stays on the stack, as an instance keeps it */
  cr_vm_free(vm);

  vm = cr_vm_new(&vmopts);
  if (!vm) die("cr_vm_new failed", NULL);
  cr_vm_bind(vm, "kvfn", reg->root, 128u * 1024 * 1024);
  if (cr_vm_load(vm, "@kvfn.lua", KV_SRC, sizeof KV_SRC - 1, CR_INIT_TIMEOUT, err, sizeof err))
    die("cr_vm_load (require \"crescent.kv\") failed", err);
  size_t with_kv = settle(vm);
  cr_vm_free(vm);

  /* A pool instance (ctx table and coroutine made) after one call. */
  runner_t r;
  runner_open(&r, reg);
  result_t res;
  if (invoke_once(&r, hello, &res) != CR_OUTCOME_OK) die("call failed", res.error);
  cr_instance_t *inst;
  int cold;
  if (cr_pool_acquire(r.pool, hello, &inst, &cold, err, sizeof err)) die("cr_pool_acquire failed", err);
  if (cold) die("expected the instance of the call", NULL);
  size_t instance = settle(inst->vm);
  cr_pool_release(r.pool, inst);
  runner_close(&r);

  /* RSS per instance: many idle instances at once (malloc overhead, the
   * state's fixed allocations and its stacks included). */
  cr_pool_t *pool = cr_pool_new(NULL, reg, NULL, &popts);
  if (!pool) die("cr_pool_new failed", NULL);
  int many = quick ? 200 : 1000;
  cr_instance_t **all = calloc((size_t)many, sizeof *all);
  if (!all) die("out of memory", NULL);
  long rss0 = rss_kb();
  size_t metered = 0;
  for (int i = 0; i < many; i++) {
    if (cr_pool_acquire(pool, hello, &all[i], &cold, err, sizeof err)) die("cr_pool_acquire failed", err);
    metered += settle(all[i]->vm);
  }
  long rss1 = rss_kb();
  for (int i = 0; i < many; i++) cr_pool_release(pool, all[i]);
  cr_pool_free(pool);
  free(all);

  row_kb("memory: blank sandboxed state", blank, "mem_used after a full GC");
  row_kb("memory: idle instance, hello.lua loaded", loaded, "mem_used after a full GC; target <= 64 KB");
  row_kb("memory: idle instance, require \"crescent.kv\"", with_kv, "mem_used after a full GC");
  row_kb("memory: pool instance after one call", instance, "with ctx table and coroutine");
  snprintf(note, sizeof note, "%d idle instances; mem_used avg %.1f KB", many, (double)metered / many / 1024);
  row_kb("memory: RSS growth per idle instance", rss1 > rss0 ? (size_t)(rss1 - rss0) * 1024 / (size_t)many : 0, note);
}

/* ------------------------------------------------------------------ timeouts */

/* Is the JIT on in a crescent state? (The sandbox hides `jit` from user code;
 * the library itself stays in the registry's _LOADED.) */
static const char *jit_status(void) {
  cr_vm_t *vm = cr_vm_new(&vmopts);
  if (!vm) return "?";
  lua_State *L = vm->L;
  const char *res = "unknown";
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "jit");
    if (lua_istable(L, -1)) {
      lua_getfield(L, -1, "status");
      if (lua_isfunction(L, -1) && lua_pcall(L, 0, 1, 0) == 0) res = lua_toboolean(L, -1) ? "on" : "off";
    }
  }
  cr_vm_free(vm);
  return res;
}

static void bench_timeout(cr_registry_t *reg) {
  size_t n = quick ? 20 : 200;
  double timeout = 0.05;
  cr_fnver_t *loop = publish(reg, "loop", LOOP_SRC, timeout);
  uint64_t *delay = calloc(n, sizeof *delay);
  if (!delay) die("out of memory", NULL);
  runner_t r;
  runner_open(&r, reg);
  result_t res;
  size_t early = 0;
  for (size_t i = 0; i < n; i++) {
    /* Each run gets a fresh instance: a timed-out instance is discarded. */
    if (invoke_once(&r, loop, &res) != CR_OUTCOME_TIMEOUT) die("the loop did not time out", res.error);
    if (res.end_ns < res.deadline_ns) {
      early++;
      delay[i] = 0;
    } else {
      delay[i] = res.end_ns - res.deadline_ns;
    }
  }
  runner_close(&r);
  stats_t s = stats(delay, n);
  char v[96], note[160];
  snprintf(v, sizeof v, "p50 %.2f, p99 %.2f, max %.2f ms", s.p50 / 1e6, s.p99 / 1e6, s.max / 1e6);
  snprintf(note, sizeof note, "N=%zu, `while true do end`, timeout 50 ms, JIT %s; target <= 5 ms%s", n,
           jit_status(), early ? " (some ended early!)" : "");
  row("timeout enforcement delay (deadline -> error)", v, note);
  free(delay);
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) quick = 1;
    else {
      fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
      return 2;
    }
  }
  if (cr_vm_watchdog_start() != 0) die("cannot start the watchdog thread", NULL);
  /* No report lines: a worker buffers them per loop iteration, here each
   * would be a write to the terminal. */
  cr_log_set_level(CR_LOG_WARN);
  cr_stdlib_t *stdlib = cr_stdlib_new(NULL, NULL);
  if (!stdlib) die("out of memory", NULL);
  vmopts = (cr_vm_opts_t){.preload = cr_stdlib_preload, .preload_ud = stdlib, .read_module = cr_loader_module_reader};
  popts = (cr_pool_opts_t){.blank = 0, .init_timeout = CR_INIT_TIMEOUT, .prepare = cr_invoke_prepare, .vm = vmopts};
  cr_registry_t *reg = cr_registry_new("/nonexistent-crescent-bench");
  if (!reg) die("out of memory", NULL);
  reg->quiet = 1;
  cr_fnver_t *hello = publish(reg, "hello", HELLO_SRC, 0);

  printf("crescent vm_bench%s (pid %d)\n\n", quick ? " --quick" : "", (int)getpid());
  printf("| %-46s | %-34s | %s |\n", "measure", "value", "notes");
  printf("|%s|%s|%s|\n", "------------------------------------------------", "------------------------------------",
         "---");
  fflush(stdout);
  bench_cold(reg, hello);
  fflush(stdout);
  bench_warm(reg, hello);
  fflush(stdout);
  bench_memory(reg, hello);
  fflush(stdout);
  bench_timeout(reg);
  cr_registry_free(reg);
  cr_stdlib_free(stdlib);
  return 0;
}
