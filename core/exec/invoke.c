/* invoke.c - handler(event, ctx) in an instance's coroutine. */
#include "invoke.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "clock.h"
#include "error.h"
#include "json.h"
#include "log.h"


/* ctx.log.<level>(msg, fields): a structured line with the request id. A
 * field named like one of the line's own (time, level, msg, requestId,
 * function, worker) is kept as "fields.<name>": dropping it silently lost
 * data, and writing it as is would give the line two keys of that name. */
static int ctx_log(lua_State *L) {
  cr_log_level_t level = (cr_log_level_t)lua_tointeger(L, lua_upvalueindex(1));
  cr_vm_t *vm = cr_vm_of(L);
  int t = lua_type(L, 1);
  if (t != LUA_TSTRING && t != LUA_TNUMBER)
    return luaL_argerror(L, 1, lua_pushfstring(L, "string expected, got %s", luaL_typename(L, 1)));
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  size_t len;
  const char *msg = lua_tolstring(L, 1, &len);
  cr_buf_t *b = cr_log_begin(level, msg, len, vm->fn_name, vm->reqid);
  if (!b) return 0;
  cr_log_trace(b, vm->trace);
  if (lua_istable(L, 2)) {
    static const char *const reserved[] = {"time", "level", "msg", "requestId", "function", "worker", "trace", "span"};
    char err[64];
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      if (lua_type(L, -2) == LUA_TSTRING) {
        size_t kl;
        const char *k = lua_tolstring(L, -2, &kl);
        int own = 0;
        for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
          if (kl == strlen(reserved[i]) && memcmp(k, reserved[i], kl) == 0) own = 1;
        size_t mark = b->len;
        cr_buf_putc(b, ',');
        if (own) {
          char key[24];
          int n = snprintf(key, sizeof key, "fields.%s", k);
          cr_json_escape(b, key, (size_t)n);
        } else {
          cr_json_escape(b, k, kl);
        }
        cr_buf_putc(b, ':');
        if (cr_json_encode(L, -1, b, err, sizeof err)) b->len = mark;
      }
      lua_pop(L, 1);
    }
  }
  cr_log_end(b);
  return 0;
}

/* ctx.requestId (made on first use) and ctx.cold, the current invocation's:
 * ctx is one table per instance, so they are not kept in it. */
static int ctx_index(lua_State *L) {
  size_t kl;
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &kl) : NULL;
  cr_invocation_t *inv = k ? cr_invoke_current(L) : NULL;
  if (!inv) return 0;
  if (kl == 4 && memcmp(k, "cold", 4) == 0) {
    lua_pushboolean(L, inv->cold);
    return 1;
  }
  if (kl != 9 || memcmp(k, "requestId", 9) != 0 || !inv->reqid) return 0;
  lua_pushstring(L, inv->reqid);
  return 1;
}

/* ctx.remaining() -> milliseconds left before the timeout. */
static int ctx_remaining(lua_State *L) {
  cr_vm_t *vm = cr_vm_of(L);
  uint64_t now = cr_clock_ns();
  double ms = vm->deadline_ns > now ? (double)(vm->deadline_ns - now) / 1e6 : 0;
  lua_pushnumber(L, ms);
  return 1;
}

void cr_invoke_push_log(lua_State *L) {
  static const char *const levels[] = {"debug", "info", "warn", "error"};
  lua_createtable(L, 0, 4);
  for (int i = 0; i < 4; i++) {
    lua_pushinteger(L, i);
    lua_pushcclosure(L, ctx_log, 1);
    lua_setfield(L, -2, levels[i]);
  }
}

static int new_coroutine(cr_instance_t *inst) {
  lua_State *L = inst->vm->L;
  if (inst->co_ref) luaL_unref(L, LUA_REGISTRYINDEX, inst->co_ref);
  lua_State *co = lua_newthread(L);
  cr_vm_push_sandbox(L, "adopt");
  lua_pushvalue(L, -2);
  lua_call(L, 1, 0);
  inst->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  inst->co = co;
  return 0;
}

static int prepare(lua_State *L) {
  cr_instance_t *inst = lua_touserdata(L, 1);
  cr_fnver_t *ver = inst->ver;
  /* Stack: instance, the file's result. */
  if (lua_istable(L, 2)) { /* raw: a metamethod here would run with no deadline */
    lua_pushliteral(L, "handler");
    lua_rawget(L, 2);
  } else {
    lua_pushvalue(L, 2);
  }
  if (!lua_isfunction(L, -1))
    return luaL_error(L, "%s: the file must return a handler function or a table with a 'handler'",
                      ver->fn->relpath);
  cr_vm_push_sandbox(L, "arity");
  lua_pushvalue(L, -2);
  lua_call(L, 1, 1);
  inst->nargs = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  inst->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  lua_createtable(L, 0, 10);
  lua_pushstring(L, ver->fn->name);
  lua_setfield(L, -2, "functionName");
  lua_pushinteger(L, (lua_Integer)ver->number);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, ver->hash);
  lua_setfield(L, -2, "versionHash");
  lua_pushinteger(L, ver->settings.memory);
  lua_setfield(L, -2, "memoryLimitInMB");
  lua_createtable(L, 0, ver->settings.nenv);
  for (int i = 0; i < ver->settings.nenv; i++) {
    lua_pushstring(L, ver->settings.env[2 * i + 1]);
    lua_setfield(L, -2, ver->settings.env[2 * i]);
  }
  lua_setfield(L, -2, "env");
  cr_invoke_push_log(L);
  lua_setfield(L, -2, "log");
  lua_pushcfunction(L, ctx_remaining);
  lua_setfield(L, -2, "remaining");
  lua_getfield(L, LUA_REGISTRYINDEX, CR_CTX_EXTEND);
  if (lua_isfunction(L, -1)) {
    lua_pushvalue(L, -2);
    lua_call(L, 1, 0);
  } else {
    lua_pop(L, 1);
  }
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, ctx_index);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  inst->ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  new_coroutine(inst);
  return 0;
}

int cr_invoke_prepare(cr_instance_t *inst, char *err, size_t errlen) {
  lua_State *L = inst->vm->L;
  int top = lua_gettop(L);
  lua_pushcfunction(L, prepare);
  lua_pushlightuserdata(L, inst);
  lua_pushvalue(L, top);
  int rc = lua_pcall(L, 2, 0, 0);
  if (rc) snprintf(err, errlen, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "preparing the instance failed");
  lua_settop(L, top - 1);
  return rc ? CR_ELUA : 0;
}

lua_State *cr_invoke_begin(cr_invoker_t *iv, cr_invocation_t *inv, cr_instance_t *inst, const char *reqid, int cold) {
  memset(inv, 0, offsetof(cr_invocation_t, error));
  inv->error[0] = '\0';
  inv->inst = inst;
  inv->invoker = iv;
  inv->reqid = reqid;
  inv->cold = cold;
  inst->current = inv;
  inst->vm->reqid = reqid;
  /* A coroutine that ended in an error or is stuck in a yield is not reused. */
  if (lua_status(inst->co) != 0 || lua_gettop(inst->co) != 0) new_coroutine(inst);
  inv->co = inst->co;
  lua_rawgeti(inv->co, LUA_REGISTRYINDEX, inst->handler_ref);
  return inv->co;
}

/* --- the waiting set: invocations suspended on I/O, and their deadlines ---------------------- */

struct cr_invoker_s {
  uv_loop_t *loop;
  uv_timer_t timer;
  cr_shm_worker_t *busy_slot;
  cr_invocation_t *head;
  int n;
  uint64_t timer_ns; /* the deadline the timer is set for (0: not set) */
};

static __attribute__((unused)) void busy(cr_invoker_t *iv, uint64_t since, uint64_t deadline, int fn) {
  cr_shm_worker_t *slot = iv->busy_slot;
  if (!slot) return;
  atomic_store_explicit(&slot->deadline_ns, deadline, memory_order_relaxed);
  atomic_store_explicit(&slot->busy_fn, fn, memory_order_relaxed);
  atomic_store_explicit(&slot->busy_since_ns, since, memory_order_release);
}

static void finish_timeout(cr_invocation_t *inv);

static void on_deadline(uv_timer_t *t);

/* The timer is set for the nearest deadline. Adding an invocation only
 * moves it when the new deadline is nearer (no scan per wait: with many
 * invocations waiting on Redis that showed in profiles); when it fires it
 * ends what is due and looks for the next. */
static void timer_at(cr_invoker_t *iv, uint64_t deadline) {
  uint64_t now = cr_clock_ns();
  uint64_t ms = deadline > now ? (deadline - now + 999999) / 1000000 : 0;
  uv_timer_start(&iv->timer, on_deadline, ms, 0);
  iv->timer_ns = deadline;
}

static void rearm(cr_invoker_t *iv) {
  if (!iv->loop) return;
  uint64_t first = UINT64_MAX;
  for (cr_invocation_t *i = iv->head; i; i = i->wnext)
    if (i->deadline_ns < first) first = i->deadline_ns;
  if (first == UINT64_MAX) {
    uv_timer_stop(&iv->timer);
    iv->timer_ns = 0;
    return;
  }
  timer_at(iv, first);
}

static void wait_add(cr_invocation_t *inv) {
  cr_invoker_t *iv = inv->invoker;
  inv->waiting = 1;
  inv->wprev = NULL;
  inv->wnext = iv->head;
  if (iv->head) iv->head->wprev = inv;
  iv->head = inv;
  iv->n++;
  if (iv->loop && (!iv->timer_ns || inv->deadline_ns < iv->timer_ns)) timer_at(iv, inv->deadline_ns);
}

static void wait_remove(cr_invocation_t *inv) {
  if (!inv->waiting) return;
  cr_invoker_t *iv = inv->invoker;
  inv->waiting = 0;
  if (inv->wprev) inv->wprev->wnext = inv->wnext;
  else iv->head = inv->wnext;
  if (inv->wnext) inv->wnext->wprev = inv->wprev;
  iv->n--;
  /* The timer must not keep an idle loop (and a stopping worker) alive. */
  if (iv->n == 0 && iv->loop) {
    uv_timer_stop(&iv->timer);
    iv->timer_ns = 0;
  }
}

static void on_deadline(uv_timer_t *t) {
  cr_invoker_t *iv = t->data;
  uint64_t now = cr_clock_ns();
  cr_invocation_t *i = iv->head;
  while (i) {
    cr_invocation_t *next = i->wnext;
    if (i->deadline_ns <= now) finish_timeout(i);
    i = next;
  }
  rearm(iv);
}

cr_invoker_t *cr_invoker_new(uv_loop_t *loop, cr_shm_worker_t *busy_slot) {
  cr_invoker_t *iv = calloc(1, sizeof *iv);
  if (!iv) return NULL;
  iv->loop = loop;
  iv->busy_slot = busy_slot;
  if (loop) {
    uv_timer_init(loop, &iv->timer);
    iv->timer.data = iv;
  }
  return iv;
}

static void on_timer_closed(uv_handle_t *h) { free(h->data); }

void cr_invoker_free(cr_invoker_t *iv) {
  if (!iv) return;
  while (iv->head) finish_timeout(iv->head);
  if (iv->loop) uv_close((uv_handle_t *)&iv->timer, on_timer_closed);
  else free(iv);
}

static void detach(cr_invocation_t *inv) {
  if (inv->pending && inv->detach) inv->detach(inv->pending);
  inv->pending = NULL;
  inv->detach = NULL;
}

/* Ends a waiting invocation at its deadline: the coroutine stays suspended
 * forever in an instance that is discarded, its I/O's reply is dropped. */
static void finish_timeout(cr_invocation_t *inv) {
  wait_remove(inv);
  detach(inv);
  inv->inst->broken = 1;
  inv->end_ns = cr_clock_ns();
  snprintf(inv->error, sizeof inv->error, "Task timed out after %.2f seconds", inv->inst->ver->settings.timeout);
  inv->outcome = CR_OUTCOME_TIMEOUT;
  if (inv->done) inv->done(inv);
}

/* --- running ---------------------------------------------------------------------------------- */

/* One resume of the coroutine, with everything that must surround it.
 * Returns 0 when the invocation ended, CR_EAGAIN when it waits. */
static int step(cr_invocation_t *inv, int nargs, uint64_t t0) {
  cr_instance_t *inst = inv->inst;
  cr_vm_t *vm = inst->vm;
  lua_State *co = inv->co;
  vm->reqid = inv->reqid;
  vm->trace = inv->trace;
#ifndef CRESCENT_NO_LIMITS
  busy(inv->invoker, t0, inv->deadline_ns, inst->ver->fn->slot);
  cr_vm_arm_until(vm, inv->deadline_ns);
  vm->mem_strict = 1;
  vm->resumed = 1;
#endif
  int rc = lua_resume(co, nargs);
#ifndef CRESCENT_NO_LIMITS
  vm->resumed = 0;
  vm->mem_strict = 0;
  cr_vm_disarm(vm);
  busy(inv->invoker, 0, 0, -1);
#endif
  inv->end_ns = cr_clock_ns();
  /* The worker thread does nothing else during a resume, so its time on the
   * monotonic clock is its CPU time (unless the kernel preempted it). Asking
   * the kernel for the thread's CPU clock would cost two system calls per
   * request, more than a whole warm invocation. */
  inv->cpu_ns += inv->end_ns - t0;
  if (vm->mem_peak > inv->mem_peak) inv->mem_peak = vm->mem_peak;

  if (rc == LUA_YIELD && !vm->timed_out && inv->pending) {
    /* A platform yield: the stdlib started I/O and will resume us. */
    lua_settop(co, 0);
    wait_add(inv);
    return CR_EAGAIN;
  }
  detach(inv);
  if (vm->timed_out) {
    snprintf(inv->error, sizeof inv->error, "Task timed out after %.2f seconds", inst->ver->settings.timeout);
    inv->outcome = CR_OUTCOME_TIMEOUT;
  } else if (rc == LUA_ERRMEM || vm->mem_exceeded) {
    snprintf(inv->error, sizeof inv->error, "memory limit exceeded (%d MB)", inst->ver->settings.memory);
    inv->outcome = CR_OUTCOME_MEMORY;
  } else if (rc == LUA_YIELD) {
    /* The sandbox refuses user yields at this level; this is a platform bug. */
    snprintf(inv->error, sizeof inv->error, "the handler yielded to the platform unexpectedly");
    inv->outcome = CR_OUTCOME_ERROR;
    inst->broken = 1;
  } else if (rc != 0) {
    cr_vm_describe_error(co, -1, inv->error, sizeof inv->error, 1);
    inv->outcome = CR_OUTCOME_ERROR;
  } else {
    inv->outcome = CR_OUTCOME_OK;
    inv->nresults = lua_gettop(co);
  }
  return 0;
}

int cr_invoke_run(cr_invocation_t *inv) {
  cr_instance_t *inst = inv->inst;
  cr_vm_t *vm = inst->vm;
  lua_State *co = inv->co;
  if (inst->nargs > 1) lua_rawgeti(co, LUA_REGISTRYINDEX, inst->ctx_ref);

  inv->start_ns = cr_clock_ns();
  inv->deadline_ns = inv->start_ns + (uint64_t)(inst->ver->settings.timeout * 1e9);
  if (inv->deadline_cap_ns && inv->deadline_cap_ns < inv->deadline_ns) inv->deadline_ns = inv->deadline_cap_ns;
  vm->mem_peak = vm->mem_used;
  vm->mem_exceeded = 0;
  vm->timeout_s = inst->ver->settings.timeout;
  vm->timed_out = 0;
  return step(inv, inst->nargs, inv->start_ns);
}

void cr_invoke_resume(cr_invocation_t *inv, int nargs) {
  wait_remove(inv);
  inv->pending = NULL;
  inv->detach = NULL;
  if (step(inv, nargs, cr_clock_ns()) == CR_EAGAIN) return;
  if (inv->done) inv->done(inv);
}

cr_invocation_t *cr_invoke_current(lua_State *L) {
  cr_vm_t *vm = cr_vm_of(L);
  cr_instance_t *inst = vm ? vm->owner : NULL;
  return inst ? inst->current : NULL;
}

/* L is the running coroutine and the caller a C function called from Lua,
 * so lua_isyieldable answers for this very point of L. */
int cr_invoke_can_yield(lua_State *L, const cr_invocation_t *inv) {
  if (!lua_isyieldable(L)) return 0;
  if (L == inv->co) return 1;
  cr_vm_push_sandbox(L, "passes");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushthread(L);
  lua_rawget(L, -2);
  int ok = lua_toboolean(L, -1);
  lua_pop(L, 2);
  return ok;
}

cr_invocation_t *cr_invoke_for_call(lua_State *L, const char *what, const char *who) {
  cr_invocation_t *inv = cr_invoke_current(L);
  if (!inv) {
    luaL_where(L, 2); /* the user's line: the module function is level 1 */
    lua_pushfstring(L, "%s only possible inside a handler, not during init (module top level)", what);
    lua_concat(L, 2);
    lua_error(L);
  }
  if (cr_clock_ns() >= inv->deadline_ns) {
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    return NULL;
  }
  if (!cr_invoke_can_yield(L, inv)) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot call %s here (inside a C callback)", who);
    return NULL;
  }
  return inv;
}

int cr_invoke_yield(lua_State *L, cr_invocation_t *inv, void *pending, cr_invoke_detach_cb detach_cb) {
  /* A yield that failed before (inside a metamethod called from C, where
   * LuaJIT cannot yield) may have left I/O behind: drop its reply. */
  detach(inv);
  inv->pending = pending;
  inv->detach = detach_cb;
  cr_vm_push_sandbox(L, "HOST");
  return lua_yield(L, 1);
}

void cr_invoke_end(cr_invocation_t *inv) {
  cr_instance_t *inst = inv->inst;
  wait_remove(inv);
  detach(inv);
  if (inv->outcome == CR_OUTCOME_TIMEOUT || inv->outcome == CR_OUTCOME_MEMORY) inst->broken = 1;
  if (lua_status(inv->co) == 0) lua_settop(inv->co, 0);
  inst->cold = 0;
  inst->invocations++;
  inst->vm->reqid = NULL;
  inst->vm->trace = NULL;
}
