/* dispatch.c - admit, queue, acquire, run, finish, meter, release. */
#include "dispatch.h"

#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "clock.h"
#include "error.h"
#include "freelist.h"
#include "log.h"

/* How often waiting calls retry for a place (another worker may free one). */
#define RETRY_MS 2

struct cr_dispatch_s {
  uv_loop_t *loop;
  cr_pool_t *pool;
  cr_invoker_t *invoker;
  cr_meter_t *meter;
  cr_dispatch_opts_t opts;
  cr_call_t *waiting, **waiting_tail;
  int nwaiting;
  int in_queue;             /* inside run_waiting(): no re-entry */
  cr_freelist_t free_calls; /* reused, so an invocation allocates nothing */
  uv_timer_t retry;
};

static void run_waiting(cr_dispatch_t *d);

cr_dispatch_t *cr_dispatch_new(uv_loop_t *loop, cr_pool_t *pool, cr_invoker_t *invoker, cr_meter_t *meter,
                               const cr_dispatch_opts_t *opts) {
  cr_dispatch_t *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  d->loop = loop;
  d->pool = pool;
  d->invoker = invoker;
  d->meter = meter;
  d->opts.queue_wait = 1;
  d->opts.queue_max = 1024;
  if (opts) d->opts = *opts;
  d->waiting_tail = &d->waiting;
  d->free_calls.max = 64;
  if (loop) {
    uv_timer_init(loop, &d->retry);
    d->retry.data = d;
  }
  return d;
}

static void on_retry_closed(uv_handle_t *h) { free(h->data); }

static void call_free(cr_call_t *call) { cr_freelist_give(&call->d->free_calls, call); }

static void refuse(cr_call_t *call, cr_refusal_t why) {
  call->trigger->refused(call, why);
  call_free(call);
}

void cr_dispatch_free(cr_dispatch_t *d) {
  if (!d) return;
  while (d->waiting) {
    cr_call_t *c = d->waiting;
    d->waiting = c->next;
    d->nwaiting--;
    refuse(c, CR_REFUSED_STOPPING);
  }
  cr_freelist_drain(&d->free_calls);
  if (d->loop) uv_close((uv_handle_t *)&d->retry, on_retry_closed);
  else free(d);
}

int cr_dispatch_waiting(const cr_dispatch_t *d) { return d->nwaiting; }

cr_call_t *cr_dispatch_call(cr_dispatch_t *d, const cr_trigger_t *trigger, cr_fn_t *fn, void *ctx,
                            const char *reqid, size_t len) {
  cr_call_t *call = cr_freelist_take(&d->free_calls, sizeof *call);
  if (!call) return NULL;
  call->trigger = trigger;
  call->fn = fn;
  call->ver = NULL;
  call->ctx = ctx;
  call->init_ms = 0;
  call->init_rc = 0;
  call->deadline_cap_ns = 0;
  call->depth = 0;
  call->d = d;
  call->next = NULL;
  size_t n = len < sizeof call->reqid ? len : sizeof call->reqid - 1;
  if (n) memcpy(call->reqid, reqid, n);
  call->reqid[n] = '\0';
  cr_trace_child(NULL, 0, call->trace);
  return call;
}

static void report_fields(void *data, cr_buf_t *b) {
  cr_call_t *call = data;
  call->trigger->report_fields(call, b);
}

/* The invocation ended: the trigger handles the result, then it is metered,
 * reported, and its instance and place are given back. */
static void finish(cr_call_t *call) {
  cr_dispatch_t *d = call->d;
  cr_invocation_t *inv = &call->inv;
  cr_instance_t *inst = inv->inst;
  cr_fnver_t *ver = call->ver;
  int status = call->trigger->finish(call);
#ifndef CRESCENT_NO_LIMITS
  cr_meter_report(d->meter, ver, inv, call->init_ms, call->trigger->name, status,
                  call->trigger->report_fields ? report_fields : NULL, call);
  cr_meter_flush_if_late(d->meter, inv->end_ns);
#else
  (void)status;
#endif
  cr_invoke_end(inv);
  cr_pool_ended(d->pool, inv->end_ns);
  cr_pool_release(d->pool, inst);
  cr_pool_leave(d->pool, ver);
  call_free(call);
}

static void on_invocation_done(cr_invocation_t *inv) {
  cr_call_t *call = (cr_call_t *)inv;
  cr_dispatch_t *d = call->d;
  finish(call);
  if (d->waiting) run_waiting(d);
}

static int push_event_protected(lua_State *L) {
  cr_call_t *call = lua_touserdata(L, 1);
  call->trigger->push_event(call, L);
  return 1;
}

/* Pushes the trigger's event onto co, made in a protected call on the
 * instance's main state: an event can be large (a batch of decoded queue
 * messages), and an allocation the memory limit refuses must end this
 * invocation, not raise where nothing catches it. 0, or -1 with inv->error. */
static int push_event(cr_call_t *call, cr_instance_t *inst, lua_State *co) {
  lua_State *L = inst->vm->L;
  int top = lua_gettop(L);
  inst->vm->mem_exceeded = 0;
  lua_pushcfunction(L, push_event_protected);
  lua_pushlightuserdata(L, call);
  if (lua_pcall(L, 1, 1, 0) == 0) {
    lua_xmove(L, co, 1);
    lua_settop(L, top);
    return 0;
  }
  cr_invocation_t *inv = &call->inv;
  int mem = inst->vm->mem_exceeded || !lua_isstring(L, -1);
  snprintf(inv->error, sizeof inv->error, "%s",
           mem ? "memory limit exceeded making the event" : lua_tostring(L, -1));
  lua_settop(L, top);
  inv->outcome = mem ? CR_OUTCOME_MEMORY : CR_OUTCOME_ERROR;
  inv->start_ns = inv->end_ns = cr_clock_ns();
  return -1;
}

/* Runs call with ver; the caller holds a place under its concurrency. */
static void run(cr_dispatch_t *d, cr_call_t *call, cr_fnver_t *ver) {
  cr_fn_t *fn = ver->fn;
  cr_instance_t *inst;
  int cold;
  char err[2048];
  call->ver = ver;
  int rc = cr_pool_acquire(d->pool, ver, &inst, &cold, err, sizeof err);
  if (rc) {
    cr_log(CR_LOG_ERROR, fn->name, call->reqid, "function init failed: %s", err);
    cr_meter_init_failed(d->meter, fn, call->trigger->name);
    cr_pool_leave(d->pool, ver);
    call->init_rc = rc;
    refuse(call, CR_REFUSED_INIT);
    return;
  }
  call->init_ms = cold ? inst->init_ms : 0;
  lua_State *co = cr_invoke_begin(d->invoker, &call->inv, inst, call->reqid, cold);
  call->inv.trace = call->trace;
  inst->vm->trace = call->trace;
  call->inv.done = on_invocation_done;
  call->inv.deadline_cap_ns = call->deadline_cap_ns;
  if (inst->nargs && push_event(call, inst, co)) {
    finish(call); /* as an invocation that failed at once: nothing of it ran */
    return;
  }
  if (cr_invoke_run(&call->inv) == CR_EAGAIN) return; /* on_invocation_done follows */
  finish(call);
}

static void throttle(cr_dispatch_t *d, cr_call_t *call) {
  cr_meter_throttled(d->meter, call->fn, call->trigger->name);
  cr_log(CR_LOG_WARN, call->fn->name, call->reqid, "throttled: the function is at its concurrency limit");
  refuse(call, CR_REFUSED_THROTTLED);
}

static void on_retry(uv_timer_t *t) { run_waiting(t->data); }

/* Runs waiting calls that got a place, refuses those past their wait, in
 * arrival order. A function's version is looked up again: it may have been
 * replaced (or failed to load) while its calls waited. */
static void run_waiting(cr_dispatch_t *d) {
  if (d->in_queue) return;
  d->in_queue = 1;
  uint64_t now = cr_clock_ns();
  cr_call_t **link = &d->waiting;
  while (*link) {
    cr_call_t *c = *link;
    cr_fnver_t *ver = c->fn->current;
    int admitted = ver && cr_pool_admit(d->pool, ver) == 0;
    if (!admitted && ver && now < c->wait_until_ns) {
      link = &c->next;
      continue;
    }
    *link = c->next;
    if (d->waiting_tail == &c->next) d->waiting_tail = link;
    d->nwaiting--;
    if (!ver) refuse(c, CR_REFUSED_UNLOADED);
    else if (admitted) run(d, c, ver);
    else throttle(d, c);
    now = cr_clock_ns();
  }
  d->in_queue = 0;
  if (!d->waiting && d->loop) uv_timer_stop(&d->retry);
}

void cr_dispatch_submit(cr_dispatch_t *d, cr_call_t *call) {
  cr_fn_t *fn = call->fn;
  cr_fnver_t *ver = fn->current;
  if (!ver) {
    refuse(call, CR_REFUSED_UNLOADED);
    return;
  }
  /* Calls already waiting for this function go first. */
  int queued_before = 0;
  for (cr_call_t *c = d->waiting; c && !queued_before; c = c->next) queued_before = c->fn == fn;
  if (!queued_before && cr_pool_admit(d->pool, ver) == 0) {
    run(d, call, ver);
    if (d->waiting) run_waiting(d);
    return;
  }
  if (!d->loop || d->nwaiting >= d->opts.queue_max || d->opts.queue_wait <= 0) {
    throttle(d, call);
    return;
  }
  call->wait_until_ns = cr_clock_ns() + (uint64_t)(d->opts.queue_wait * 1e9);
  call->next = NULL;
  *d->waiting_tail = call;
  d->waiting_tail = &call->next;
  d->nwaiting++;
  if (!uv_is_active((uv_handle_t *)&d->retry)) uv_timer_start(&d->retry, on_retry, RETRY_MS, RETRY_MS);
}
