/* vm.c - sandboxed LuaJIT states with a metering allocator. */
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "budget.h"
#include "clock.h"
#include "error.h"
#include "json.h"
#include "log.h"
#include "watchdog.h"

extern const char cr_lua_sandbox[];
extern const size_t cr_lua_sandbox_len;

/* Registry key of the table sandbox.lua returns. */
static char sandbox_key;

static void vm_hook(lua_State *L, lua_Debug *ar);

/* LuaJIT's own allocator (an mspace per state), under our meter. */
typedef struct { uint64_t u[4]; } lj_prng_t;
void *lj_alloc_create(lj_prng_t *rs);
void lj_alloc_destroy(void *msp);
void *lj_alloc_f(void *msp, void *ptr, size_t osize, size_t nsize);

/* The allocator every state uses. It counts bytes and refuses growth past
 * mem_limit; LuaJIT then raises a memory error in the state. */
static void *vm_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  cr_vm_t *vm = ud;
  if (nsize == 0) {
    lj_alloc_f(vm->arena, ptr, osize, 0);
    vm->mem_used -= osize;
    return NULL;
  }
  if (nsize > osize) {
    size_t limit = vm->mem_strict ? vm->mem_limit : vm->mem_limit + CR_VM_SLACK;
    if (vm->mem_used + (nsize - osize) > limit) {
      vm->mem_exceeded = 1;
      return NULL;
    }
    if (vm->mem_strict && !vm->gc_pending && vm->mem_used + (nsize - osize) > vm->gc_trigger) {
      /* Collect at the next instruction (lua_sethook is safe anywhere). */
      vm->gc_pending = 1;
      lua_sethook(vm->L, vm_hook, LUA_MASKCOUNT, 1);
    }
  }
  void *p = lj_alloc_f(vm->arena, ptr, osize, nsize);
  if (!p) return NULL;
  vm->mem_used = vm->mem_used - osize + nsize;
  if (vm->mem_used > vm->mem_peak) vm->mem_peak = vm->mem_used;
  return p;
}

int cr_vm_charge(cr_vm_t *vm, long long delta) {
  if (delta < 0) {
    size_t d = (size_t)-delta;
    vm->mem_used = vm->mem_used > d ? vm->mem_used - d : 0;
    return 0;
  }
#ifndef CRESCENT_NO_LIMITS
  if (vm->mem_used + (size_t)delta > vm->mem_limit) {
    vm->mem_exceeded = 1;
    return -1;
  }
#endif
  vm->mem_used += (size_t)delta;
  if (vm->mem_used > vm->mem_peak) vm->mem_peak = vm->mem_used;
  return 0;
}

void cr_vm_push_sandbox(lua_State *L, const char *field) {
  lua_pushlightuserdata(L, &sandbox_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  lua_getfield(L, -1, field);
  lua_remove(L, -2);
}

cr_vm_t *cr_vm_of(lua_State *L) {
  void *ud = NULL;
  lua_getallocf(L, &ud);
  return ud;
}

cr_vm_t *cr_vm_find(lua_State *L) {
  void *ud = NULL;
  return lua_getallocf(L, &ud) == vm_alloc ? ud : NULL;
}

/* The state's budget, for the libraries that must stay within it (budget.h). */
static void vm_budget(lua_State *L, cr_budget_t *out) {
  cr_vm_t *vm = cr_vm_of(L);
  size_t limit = vm->mem_strict ? vm->mem_limit : vm->mem_limit + CR_VM_SLACK;
  out->mem_left = vm->mem_used < limit ? limit - vm->mem_used : 0;
  out->deadline_ns = vm->deadline_ns;
}
static const cr_budget_source_t vm_budget_source = {vm_budget};

/* print(...) from a function: a log line with its request id. */
static int host_print(lua_State *L) {
  cr_vm_t *vm = cr_vm_of(L);
  size_t len;
  const char *msg = luaL_checklstring(L, 1, &len);
  cr_buf_t *b = cr_log_begin(CR_LOG_INFO, msg, len, vm->fn_name, vm->reqid);
  if (b) {
    cr_log_trace(b, vm->trace);
    cr_log_str(b, "source", "print", 5);
    cr_log_end(b);
  }
  return 0;
}

static int valid_module_name(const char *s, size_t n) {
  if (n == 0 || n > 200 || s[0] == '.' || s[n - 1] == '.') return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '.' && s[i + 1] == '.') return 0;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-' || c == '.'))
      return 0;
  }
  return 1;
}

int cr_vm_modules_add(cr_vm_modules_t *m, const char *name, const char *relpath, const char *src, size_t len) {
  if (m->n == m->cap) {
    int cap = m->cap ? m->cap * 2 : 4;
    cr_vm_module_t *items = realloc(m->items, sizeof *items * (size_t)cap);
    if (!items) return CR_ENOMEM;
    m->items = items;
    m->cap = cap;
  }
  cr_vm_module_t *it = &m->items[m->n];
  it->name = strdup(name);
  it->relpath = strdup(relpath);
  it->source = malloc(len + 1);
  if (!it->name || !it->relpath || !it->source) {
    free(it->name);
    free(it->relpath);
    free(it->source);
    return CR_ENOMEM;
  }
  memcpy(it->source, src, len);
  it->source[len] = '\0';
  it->len = len;
  m->n++;
  return 0;
}

const cr_vm_module_t *cr_vm_modules_find(const cr_vm_modules_t *m, const char *name) {
  for (int i = 0; m && i < m->n; i++)
    if (strcmp(m->items[i].name, name) == 0) return &m->items[i];
  return NULL;
}

void cr_vm_modules_free(cr_vm_modules_t *m) {
  for (int i = 0; i < m->n; i++) {
    free(m->items[i].name);
    free(m->items[i].relpath);
    free(m->items[i].source);
  }
  free(m->items);
  memset(m, 0, sizeof *m);
}

/* host.loadmodule(name) -> chunk | nil, err. Finds name (dots are folders) in
 * the version's modules, else as ROOT/name.lua or ROOT/name/init.lua read by
 * the vm's reader, and compiles it as text only. */
static int host_loadmodule(lua_State *L) {
  cr_vm_t *vm = cr_vm_of(L);
  size_t n;
  const char *name = luaL_checklstring(L, 1, &n);
  if (!valid_module_name(name, n)) {
    lua_pushnil(L);
    lua_pushfstring(L, "module '%s' not found: not a valid module name", name);
    return 2;
  }
  const cr_vm_module_t *snap = cr_vm_modules_find(vm->modules, name);
  if (snap) {
    char chunkname[320];
    snprintf(chunkname, sizeof chunkname, "@%s", snap->relpath);
    if (luaL_loadbufferx(L, snap->source, snap->len, chunkname, "t") != 0) {
      lua_pushnil(L);
      lua_insert(L, -2);
      return 2;
    }
    return 1;
  }
  if (!vm->root || !vm->read_module) {
    lua_pushnil(L);
    lua_pushfstring(L, "module '%s' not found", name);
    return 2;
  }
  char rel[256];
  memcpy(rel, name, n);
  rel[n] = '\0';
  for (char *p = rel; *p; p++)
    if (*p == '.') *p = '/';
  static const char *const patterns[] = {"%s.lua", "%s/init.lua"};
  char refused[600] = "";
  for (int i = 0; i < 2; i++) {
    char relpath[300], chunkname[320], why[600];
    snprintf(relpath, sizeof relpath, patterns[i], rel);
    size_t len;
    char *src = NULL;
    /* The reader decides what may be required (the platform's: core/fn/loader.h). */
    int rrc = vm->read_module(vm->read_ud, vm->root, relpath, &src, &len, why, sizeof why);
    if (rrc == CR_EINVAL && !refused[0]) snprintf(refused, sizeof refused, "%s", why);
    if (!src) continue;
    snprintf(chunkname, sizeof chunkname, "@%s", relpath);
    int rc = luaL_loadbufferx(L, src, len, chunkname, "t");
    if (vm->record && !cr_vm_modules_find(vm->record, name)) cr_vm_modules_add(vm->record, name, relpath, src, len);
    free(src);
    if (rc != 0) {
      lua_pushnil(L);
      lua_insert(L, -2);
      return 2;
    }
    return 1;
  }
  lua_pushnil(L);
  if (refused[0]) lua_pushfstring(L, "module '%s' cannot be required: %s", name, refused);
  else
    lua_pushfstring(L, "module '%s' not found (looked for %s.lua and %s/init.lua in the functions folder)", name,
                    rel, rel);
  return 2;
}

/* boot(opts): runs protected, so that a memory error (or a failing preload
 * hook) fails cr_vm_new instead of the process. */
static int boot(lua_State *L) {
  cr_budget_register(L, &vm_budget_source);
  const cr_vm_opts_t *opts = lua_touserdata(L, 1);
  /* The jit library must be opened for the JIT to be on; sandbox.lua hides it
   * (and debug, of which it keeps getinfo for itself). */
  static const lua_CFunction libs[] = {luaopen_base, luaopen_string, luaopen_table, luaopen_math,
                                       luaopen_os,   luaopen_bit,    luaopen_jit,   luaopen_debug};
  for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
    lua_pushcfunction(L, libs[i]);
    lua_call(L, 0, 0);
  }
  if (luaL_loadbufferx(L, cr_lua_sandbox, cr_lua_sandbox_len, "=sandbox", "t"))
    return lua_error(L);
  lua_createtable(L, 0, 4);
  lua_pushcfunction(L, host_print);
  lua_setfield(L, -2, "print");
  lua_pushcfunction(L, host_loadmodule);
  lua_setfield(L, -2, "loadmodule");
  cr_json_open(L);
  lua_setfield(L, -2, "json");
  lua_newtable(L);
  if (opts && opts->preload) opts->preload(L, opts->preload_ud);
  lua_setfield(L, -2, "preload");
  unsigned int seed = 0;
  if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != sizeof seed) seed = (unsigned)getpid() ^ (unsigned)time(NULL);
  lua_pushnumber(L, (double)(seed & 0x7fffffff));
  lua_setfield(L, -2, "seed");
  lua_pushinteger(L, CR_VM_MAXMCODE_KB);
  lua_setfield(L, -2, "maxmcode");
  lua_pushinteger(L, 32);
  lua_setfield(L, -2, "sizemcode");
  lua_call(L, 1, 1);
  /* The debug library stays reachable only through sandbox.lua's getinfo. */
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    lua_setfield(L, -2, "debug");
  }
  lua_pop(L, 1);
  lua_pushlightuserdata(L, &sandbox_key);
  lua_insert(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return 0;
}

/* An error outside any protected call: a platform bug or the system out of
 * memory. The process cannot continue safely; its master starts a new one. */
static int vm_panic(lua_State *L) {
  cr_log(CR_LOG_ERROR, NULL, NULL, "unprotected Lua error, exiting: %s",
         lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a string)");
  cr_log_flush();
  _exit(70);
  return 0;
}

cr_vm_t *cr_vm_new(const cr_vm_opts_t *opts) {
  cr_vm_t *vm = calloc(1, sizeof *vm);
  if (!vm) return NULL;
  if (opts) {
    vm->read_module = opts->read_module;
    vm->read_ud = opts->read_ud;
  }
  /* Booting needs room; the function's own limit applies from cr_vm_bind(). */
  vm->mem_limit = 64u * 1024 * 1024;
  vm->gc_trigger = vm->mem_limit;
  lj_prng_t rs;
  if (getrandom(&rs, sizeof rs, GRND_NONBLOCK) != sizeof rs) memset(&rs, 0x5a, sizeof rs);
  vm->arena = lj_alloc_create(&rs);
  if (!vm->arena) {
    free(vm);
    return NULL;
  }
  vm->L = lua_newstate(vm_alloc, vm);
  if (!vm->L) {
    lj_alloc_destroy(vm->arena);
    free(vm);
    return NULL;
  }
  lua_atpanic(vm->L, vm_panic);
  lua_pushcfunction(vm->L, boot);
  lua_pushlightuserdata(vm->L, (void *)opts);
  if (lua_pcall(vm->L, 1, 0, 0)) {
    cr_log(CR_LOG_ERROR, NULL, NULL, "booting a Lua state failed: %s", lua_tostring(vm->L, -1));
    cr_vm_free(vm);
    return NULL;
  }
  lua_settop(vm->L, 0);
  return vm;
}

void cr_vm_free(cr_vm_t *vm) {
  if (!vm) return;
  if (vm->L) lua_close(vm->L);
  if (vm->arena) lj_alloc_destroy(vm->arena);
  free(vm);
}

void cr_vm_bind(cr_vm_t *vm, const char *fn_name, const char *root, size_t mem_limit) {
  vm->fn_name = fn_name;
  vm->root = root;
  vm->mem_limit = mem_limit;
  vm->gc_trigger = mem_limit / 100 * 85;
}

/* Appends printf text to out (len bytes used of cap), never past its end. */
static void out_add(char *out, size_t cap, size_t *len, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void out_add(char *out, size_t cap, size_t *len, const char *fmt, ...) {
  if (*len + 1 >= cap) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out + *len, cap - *len, fmt, ap);
  va_end(ap);
  if (n > 0) *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

/* The name of the function on top of L's stack among the standard libraries'
 * fields ("error", "string.format"), into name; 0 when not found. Raw reads
 * only (lua_rawget, lua_next): no user code runs while an error is described.
 * A C function called from C (pcall(error, ...)) or in a tail call has no
 * name in its frame: this is where "[C]: in function 'error'" comes from. */
static int library_name(lua_State *L, char *name, size_t n) {
  static const char *const libs[] = {"_G", "string", "table", "math", "coroutine", "bit", "os", "io", "jit"};
  int fn = lua_gettop(L);
  int found = 0;
  lua_pushliteral(L, "_LOADED");
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (!lua_istable(L, -1)) {
    lua_settop(L, fn);
    return 0;
  }
  for (size_t i = 0; i < sizeof libs / sizeof libs[0] && !found; i++) {
    lua_pushstring(L, libs[i]);
    lua_rawget(L, fn + 1);
    if (lua_istable(L, -1)) {
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_rawequal(L, -1, fn)) {
          if (i == 0) snprintf(name, n, "%s", lua_tostring(L, -2));
          else snprintf(name, n, "%s.%s", libs[i], lua_tostring(L, -2));
          found = 1;
          lua_pop(L, 2);
          break;
        }
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_settop(L, fn);
  return found;
}

/* How many frames co's stack holds: levels 0 .. depth-1 exist. lua_getstack
 * walks from the top, so the depth is found in a logarithmic number of
 * probes, not one per frame (a stack overflow has thousands). */
static int stack_depth(lua_State *co) {
  lua_Debug ar;
  if (!lua_getstack(co, 0, &ar)) return 0;
  int lo = 0, hi = 1; /* lo exists */
  while (lua_getstack(co, hi, &ar)) {
    lo = hi;
    hi *= 2;
  }
  while (hi - lo > 1) { /* lo exists, hi does not */
    int mid = lo + (hi - lo) / 2;
    if (lua_getstack(co, mid, &ar)) lo = mid;
    else hi = mid;
  }
  return hi;
}

/* One frame of a traceback: "file:line: in function 'name'". C functions
 * are "[C]" (LuaJIT's fast functions too, never "[builtin#N]"), named where
 * the frame or the standard libraries know them and "in ?" otherwise: never
 * an address (it says nothing to a user and leaks the layout). */
static void traceback_frame(lua_State *co, lua_Debug *ar, char *out, size_t cap, size_t *len) {
  char name[128];
  int have_fn = lua_getinfo(co, "Slnf", ar) != 0;
  int is_c = ar->what && ar->what[0] == 'C';
  out_add(out, cap, len, "\n\t%s:", is_c ? "[C]" : ar->short_src);
  if (!is_c && ar->currentline > 0) out_add(out, cap, len, "%d:", ar->currentline);
  if (ar->namewhat && *ar->namewhat && ar->name) out_add(out, cap, len, " in function '%s'", ar->name);
  else if (ar->what && ar->what[0] == 'm') out_add(out, cap, len, " in main chunk");
  else if (is_c && have_fn && library_name(co, name, sizeof name)) out_add(out, cap, len, " in function '%s'", name);
  else if (is_c) out_add(out, cap, len, " in ?");
  else out_add(out, cap, len, " in function <%s:%d>", ar->short_src, ar->linedefined);
  if (have_fn) lua_pop(co, 1);
}

/* The first 12 and the last 10 frames from level, like luaL_traceback. */
static void traceback(lua_State *co, int level, char *out, size_t cap, size_t *len) {
  enum { FIRST = 12, LAST = 10 };
  lua_Debug ar;
  out_add(out, cap, len, "\nstack traceback:");
  if (!lua_checkstack(co, 8)) return;
  int depth = stack_depth(co);
  for (int l = level; l < depth; l++) {
    if (l - level == FIRST && depth - l > LAST) {
      out_add(out, cap, len, "\n\t...");
      l = depth - LAST;
    }
    if (!lua_getstack(co, l, &ar)) break;
    traceback_frame(co, &ar, out, cap, len);
  }
}

/* cr_vm_describe_error, the traceback starting at level. */
static void describe_error(lua_State *co, int idx, char *out, size_t outlen, int with_traceback, int level) {
  const char *msg = NULL;
  if (lua_type(co, idx) == LUA_TSTRING || lua_type(co, idx) == LUA_TNUMBER) msg = lua_tostring(co, idx);
  else if (lua_isnoneornil(co, idx)) msg = "nil";
  else msg = lua_typename(co, lua_type(co, idx));
  if (outlen == 0) return;
  size_t len = 0;
  out[0] = '\0';
  out_add(out, outlen, &len, "%s", msg);
  if (with_traceback) traceback(co, level, out, outlen, &len);
}

void cr_vm_describe_error(lua_State *co, int idx, char *out, size_t outlen, int traceback) {
  describe_error(co, idx, out, outlen, traceback, 0);
}

static int traceback_handler(lua_State *L) {
  char msg[4096];
  describe_error(L, 1, msg, sizeof msg, 1, 1); /* from level 1: not this handler's own frame */
  lua_pushstring(L, msg);
  return 1;
}

/* The one hook of a state, set by the watchdog thread once the deadline
 * passed, or by the allocator to collect garbage at a safe point. Past the
 * deadline it raises at every instruction until the platform disarms it, so
 * a pcall in the function cannot swallow the timeout. */
static void vm_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  cr_vm_t *vm = cr_vm_of(L);
  if (vm->timed_out || (vm->deadline_ns && cr_clock_ns() >= vm->deadline_ns)) {
    vm->timed_out = 1;
    lua_sethook(L, vm_hook, LUA_MASKCOUNT, 1);
    /* Out at once (code answering each failed pcall with more pcalls, to the
     * depth of the Lua stack, took seconds to unwind one error at a time).
     * Where a C call forbids the yield, lua_yield raises an error instead. */
    if (vm->resumed) {
      lua_yield(L, 0);
      return;
    }
    char msg[64]; /* lua_pushfstring has no precision for %f */
    snprintf(msg, sizeof msg, "timed out after %.2f seconds", vm->timeout_s);
    luaL_error(L, "%s", msg);
  }
  lua_sethook(L, NULL, 0, 0);
  if (vm->gc_pending) {
    lua_gc(L, LUA_GCCOLLECT, 0);
    size_t soft = vm->mem_limit / 100 * 85;
    size_t half = vm->mem_used + (vm->mem_limit > vm->mem_used ? (vm->mem_limit - vm->mem_used) / 2 : 0);
    vm->gc_trigger = half > soft ? half : soft;
    vm->gc_pending = 0;
  }
}

static void watchdog_fire(lua_State *L) { lua_sethook(L, vm_hook, LUA_MASKCOUNT, 1); }

int cr_vm_watchdog_start(void) { return cr_watchdog_start(watchdog_fire); }

void cr_vm_arm(cr_vm_t *vm, double timeout_s) {
  vm->timeout_s = timeout_s;
  vm->timed_out = 0;
  vm->deadline_ns = cr_clock_ns() + (uint64_t)(timeout_s * 1e9);
  cr_watchdog_arm(vm->L, vm->deadline_ns);
}

void cr_vm_arm_until(cr_vm_t *vm, uint64_t deadline_ns) {
  vm->deadline_ns = deadline_ns;
  cr_watchdog_arm(vm->L, deadline_ns);
}

void cr_vm_disarm(cr_vm_t *vm) {
  cr_watchdog_disarm();
  /* The watchdog can no longer touch this state: clear any hook it set (a
   * pending collection waits for the next run). */
  vm->deadline_ns = 0;
  if (lua_gethook(vm->L)) lua_sethook(vm->L, NULL, 0, 0);
  vm->gc_pending = 0;
}

int cr_vm_load(cr_vm_t *vm, const char *chunkname, const char *src, size_t len, double timeout_s,
               char *err, size_t errlen) {
  lua_State *L = vm->L;
  int base = lua_gettop(L);
  lua_pushcfunction(L, traceback_handler);
  int rc = luaL_loadbufferx(L, src, len, chunkname, "t");
  if (rc == 0) {
    vm->mem_exceeded = 0;
    vm->mem_strict = 1;
    cr_vm_arm(vm, timeout_s);
    rc = lua_pcall(L, 0, 1, base + 1);
    cr_vm_disarm(vm);
    vm->mem_strict = 0;
    if (vm->mem_exceeded) {
      /* Out of memory, whatever the init made of it (caught it, or failed
       * again in the error handler): the instance is not sound. */
      lua_pop(L, 1);
      lua_pushliteral(L, "not enough memory");
      rc = LUA_ERRMEM;
    }
  }
  if (rc != 0) {
    if (vm->timed_out)
      snprintf(err, errlen, "%s: init timed out after %.2f seconds", chunkname + (chunkname[0] == '@'), timeout_s);
    else if (rc == LUA_ERRMEM)
      snprintf(err, errlen, "%s: init exceeded the memory limit", chunkname + (chunkname[0] == '@'));
    else
      snprintf(err, errlen, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "error object is not a string");
    lua_settop(L, base);
    return vm->timed_out ? CR_ETIMEDOUT : rc == LUA_ERRMEM ? CR_ENOMEM : CR_ELUA;
  }
  lua_remove(L, base + 1);
  return 0;
}
