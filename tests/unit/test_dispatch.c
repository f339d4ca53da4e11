/* test_dispatch.c - the one invocation path every trigger uses (core/exec/dispatch.c),
 * driven by a fake trigger: no network, no HTTP. Functions are published into
 * a registry from source; a C function given in the event stands in for I/O
 * (it suspends the invocation the way the stdlib does, and the test resumes
 * it), so concurrency, queueing, throttling and deadlines can be driven step
 * by step. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "clock.h"
#include "dispatch.h"
#include "error.h"
#include "invoke.h"
#include "log.h"
#include "meter.h"
#include "pool.h"
#include "registry.h"
#include "settings.h"
#include "shm.h"
#include "vm.h"

/* --- the fake trigger ---------------------------------------------------------------------------- */

/* What a call did, as the trigger saw it. */
typedef struct {
  int id;
  int pushed;          /* push_event calls */
  int finished;        /* finish calls */
  int refused;         /* refused calls */
  cr_refusal_t why;
  int init_rc;
  cr_outcome_t outcome;
  char result[64];     /* the handler's first result, as a string */
  int wait;            /* the event asks the handler to wait on "I/O" */
  int status;          /* what finish returns */
  int seq;             /* the order finish/refused was called in */
} rec_t;

static int g_seq;
static cr_invocation_t *g_waiting[8]; /* suspended invocations, by rec id */
static int g_detached;

static void detach_pending(void *pending) {
  (void)pending;
  g_detached++;
}

/* event.wait(): suspends the invocation, as a stdlib call does. */
static int l_wait(lua_State *L) {
  cr_invocation_t *inv = cr_invoke_current(L);
  if (!inv) return luaL_error(L, "no invocation");
  int id = (int)lua_tointeger(L, lua_upvalueindex(1));
  g_waiting[id] = inv;
  return cr_invoke_yield(L, inv, &g_waiting[id], detach_pending);
}

static void fake_push_event(cr_call_t *call, lua_State *co) {
  rec_t *r = call->ctx;
  r->pushed++;
  lua_createtable(co, 0, 2);
  lua_pushinteger(co, r->id);
  lua_setfield(co, -2, "id");
  if (r->wait) {
    lua_pushinteger(co, r->id);
    lua_pushcclosure(co, l_wait, 1);
    lua_setfield(co, -2, "wait");
  }
}

static int fake_finish(cr_call_t *call) {
  rec_t *r = call->ctx;
  r->finished++;
  r->seq = ++g_seq;
  r->outcome = call->inv.outcome;
  r->result[0] = '\0';
  if (call->inv.outcome == CR_OUTCOME_OK && call->inv.nresults > 0 && lua_isstring(call->inv.co, 1))
    snprintf(r->result, sizeof r->result, "%s", lua_tostring(call->inv.co, 1));
  return r->status ? r->status : 200;
}

static void fake_refused(cr_call_t *call, cr_refusal_t why) {
  rec_t *r = call->ctx;
  r->refused++;
  r->seq = ++g_seq;
  r->why = why;
  r->init_rc = call->init_rc;
}

static void fake_fields(cr_call_t *call, cr_buf_t *line) {
  (void)call;
  cr_log_int(line, "batch", 3);
}

static const cr_trigger_t fake = {
    .name = "fake", .push_event = fake_push_event, .finish = fake_finish, .refused = fake_refused,
    .report_fields = fake_fields};

/* --- fixtures ------------------------------------------------------------------------------------ */

typedef struct {
  uv_loop_t loop;
  cr_registry_t *reg;
  cr_shm_t *shm;
  cr_pool_t *pool;
  cr_invoker_t *invoker;
  cr_meter_t *meter;
  cr_dispatch_t *d;
} env_t;

static void env_open(env_t *e, double queue_wait, int queue_max) {
  memset(e, 0, sizeof *e);
  memset(g_waiting, 0, sizeof g_waiting);
  g_detached = 0;
  g_seq = 0;
  assert_int_equal(uv_loop_init(&e->loop), 0);
  e->reg = cr_registry_new("/nonexistent-crescent-dispatch-test");
  assert_non_null(e->reg);
  e->reg->quiet = 1;
  e->shm = cr_shm_create(1);
  assert_non_null(e->shm);
  cr_pool_opts_t popts = {.blank = 0, .init_timeout = 1, .worker = 0, .prepare = cr_invoke_prepare};
  e->pool = cr_pool_new(NULL, e->reg, e->shm, &popts);
  e->invoker = cr_invoker_new(&e->loop, NULL);
  e->meter = cr_meter_new(e->shm);
  cr_dispatch_opts_t dopts = {.queue_wait = queue_wait, .queue_max = queue_max};
  e->d = cr_dispatch_new(&e->loop, e->pool, e->invoker, e->meter, &dopts);
  assert_non_null(e->pool);
  assert_non_null(e->invoker);
  assert_non_null(e->meter);
  assert_non_null(e->d);
}

static void env_close(env_t *e) {
  cr_invoker_free(e->invoker);
  cr_dispatch_free(e->d);
  cr_meter_free(e->meter);
  cr_pool_free(e->pool);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&e->loop), 0);
  cr_registry_free(e->reg);
  cr_shm_destroy(e->shm);
}

static cr_fn_t *publish(env_t *e, const char *name, const char *src, int concurrency, double timeout) {
  char rel[128];
  snprintf(rel, sizeof rel, "%s.lua", name);
  cr_fn_t *fn = cr_registry_add(e->reg, rel);
  assert_non_null(fn);
  cr_settings_t s;
  cr_settings_defaults(&s);
  if (concurrency) s.concurrency = concurrency;
  if (timeout > 0) s.timeout = timeout;
  char *copy = strdup(src);
  assert_non_null(copy);
  assert_non_null(cr_registry_publish(e->reg, fn, copy, strlen(src), &s));
  return fn;
}

static void submit(env_t *e, cr_fn_t *fn, rec_t *r) {
  char reqid[40];
  snprintf(reqid, sizeof reqid, "req-%d", r->id);
  cr_call_t *call = cr_dispatch_call(e->d, &fake, fn, r, reqid, strlen(reqid));
  assert_non_null(call);
  cr_dispatch_submit(e->d, call);
}

/* Resumes the suspended invocation of rec id with no results. */
static void resume(int id) {
  cr_invocation_t *inv = g_waiting[id];
  assert_non_null(inv);
  g_waiting[id] = NULL;
  cr_invoke_resume(inv, 0);
}

static const char ECHO_SRC[] =
    "return function(event, ctx)\n"
    "  if event.wait then event.wait() end\n"
    "  return 'ran ' .. event.id .. ' ' .. ctx.functionName\n"
    "end\n";

/* --- cases --------------------------------------------------------------------------------------- */

static void test_runs_and_meters(void **state) {
  (void)state;
  env_t e;
  env_open(&e, 1, 16);
  cr_fn_t *fn = publish(&e, "echo", ECHO_SRC, 0, 0);
  rec_t a = {.id = 1}, b = {.id = 2, .status = 503};
  submit(&e, fn, &a);
  assert_int_equal(a.pushed, 1);
  assert_int_equal(a.finished, 1);
  assert_int_equal(a.refused, 0);
  assert_int_equal(a.outcome, CR_OUTCOME_OK);
  assert_string_equal(a.result, "ran 1 echo");
  /* Meters reach shared memory at the flush, not at the invocation's end
   * (the next one may flush them when it ends 1 ms or more later). */
  cr_shm_fn_t *f = &e.shm->fns[fn->slot];
  assert_int_equal(atomic_load(&f->invocations), 0);
  submit(&e, fn, &b);
  assert_int_equal(b.finished, 1);
  assert_string_equal(b.result, "ran 2 echo");
  cr_meter_flush(e.meter);
  assert_int_equal(atomic_load(&f->invocations), 2);
  assert_int_equal(atomic_load(&f->errors), 1);      /* the trigger's status 503 */
  assert_int_equal(atomic_load(&f->cold_starts), 1); /* the second call was warm */
  assert_int_equal(atomic_load(&f->billed_ms), 2);   /* at least 1 ms each */
  assert_int_equal(cr_shm_busy(e.shm, fn->slot), 0); /* places given back */
  env_close(&e);
}

static void test_handler_without_parameters_gets_no_event(void **state) {
  (void)state;
  env_t e;
  env_open(&e, 1, 16);
  cr_fn_t *fn = publish(&e, "bare", "return function() return 'bare' end\n", 0, 0);
  rec_t a = {.id = 1};
  submit(&e, fn, &a);
  assert_int_equal(a.pushed, 0);
  assert_int_equal(a.finished, 1);
  assert_string_equal(a.result, "bare");
  env_close(&e);
}

static void test_refused_unloaded_and_init(void **state) {
  (void)state;
  env_t e;
  env_open(&e, 1, 16);
  cr_fn_t *none = cr_registry_add(e.reg, "none.lua"); /* never published: no version */
  assert_non_null(none);
  rec_t a = {.id = 1};
  submit(&e, none, &a);
  assert_int_equal(a.refused, 1);
  assert_int_equal(a.why, CR_REFUSED_UNLOADED);
  assert_int_equal(a.finished, 0);

  cr_fn_t *bad = publish(&e, "bad", "error('init fails')\n", 0, 0);
  rec_t b = {.id = 2};
  submit(&e, bad, &b);
  assert_int_equal(b.refused, 1);
  assert_int_equal(b.why, CR_REFUSED_INIT);
  assert_int_equal(b.init_rc, CR_ELUA);
  assert_int_equal(b.pushed, 0);
  cr_meter_flush(e.meter);
  assert_int_equal(atomic_load(&e.shm->fns[bad->slot].invocations), 1);
  assert_int_equal(atomic_load(&e.shm->fns[bad->slot].errors), 1);
  assert_int_equal(cr_shm_busy(e.shm, bad->slot), 0);
  env_close(&e);
}

/* concurrency = 1: a second call waits for the first, a third queues behind
 * it, and they run in arrival order as places free up. */
static void test_queue_in_arrival_order(void **state) {
  (void)state;
  env_t e;
  env_open(&e, 5, 16);
  cr_fn_t *fn = publish(&e, "one", ECHO_SRC, 1, 10);
  rec_t a = {.id = 1, .wait = 1}, b = {.id = 2, .wait = 1}, c = {.id = 3};
  submit(&e, fn, &a);
  assert_int_equal(a.pushed, 1);
  assert_int_equal(a.finished, 0); /* waiting on its "I/O" */
  assert_non_null(g_waiting[1]);
  submit(&e, fn, &b);
  submit(&e, fn, &c);
  assert_int_equal(cr_dispatch_waiting(e.d), 2);
  assert_int_equal(b.pushed, 0);
  assert_int_equal(c.pushed, 0);
  assert_int_equal(cr_shm_busy(e.shm, fn->slot), 1);

  resume(1); /* a ends: b gets its place, and waits in turn; c still waits */
  assert_int_equal(a.finished, 1);
  assert_string_equal(a.result, "ran 1 one");
  assert_int_equal(b.pushed, 1);
  assert_int_equal(b.finished, 0);
  assert_int_equal(c.pushed, 0);
  assert_int_equal(cr_dispatch_waiting(e.d), 1);

  resume(2); /* b ends: c runs to the end at once */
  assert_int_equal(b.finished, 1);
  assert_int_equal(c.finished, 1);
  assert_string_equal(c.result, "ran 3 one");
  assert_true(a.seq < b.seq && b.seq < c.seq);
  assert_int_equal(cr_dispatch_waiting(e.d), 0);
  assert_int_equal(cr_shm_busy(e.shm, fn->slot), 0);
  env_close(&e);
}

/* Past queue_wait a waiting call is refused as throttled (counted); with no
 * queue room it is refused at once. */
static void test_throttled(void **state) {
  (void)state;
  env_t e;
  env_open(&e, 0.02, 1);
  cr_fn_t *fn = publish(&e, "one", ECHO_SRC, 1, 10);
  rec_t a = {.id = 1, .wait = 1}, b = {.id = 2}, c = {.id = 3};
  submit(&e, fn, &a);
  submit(&e, fn, &b); /* queued */
  submit(&e, fn, &c); /* the queue holds one: refused now */
  assert_int_equal(c.refused, 1);
  assert_int_equal(c.why, CR_REFUSED_THROTTLED);
  assert_int_equal(b.refused, 0);
  uint64_t t0 = cr_clock_ns();
  while (!b.refused && cr_clock_ns() - t0 < 2000000000ull) uv_run(&e.loop, UV_RUN_ONCE);
  assert_int_equal(b.refused, 1);
  assert_int_equal(b.why, CR_REFUSED_THROTTLED);
  assert_true(cr_clock_ns() - t0 >= 15000000ull); /* it waited (about 20 ms) first */
  assert_int_equal(b.pushed, 0);
  assert_int_equal(atomic_load(&e.shm->fns[fn->slot].throttles), 2);
  resume(1);
  assert_int_equal(a.finished, 1);
  env_close(&e);
}

/* An invocation waiting on I/O past its deadline ends as a timeout; its
 * pending I/O is detached; its place comes back. */
static void test_timeout_while_waiting(void **state) {
  (void)state;
  env_t e;
  env_open(&e, 1, 16);
  cr_fn_t *fn = publish(&e, "slow", ECHO_SRC, 1, 0.03);
  rec_t a = {.id = 1, .wait = 1};
  submit(&e, fn, &a);
  assert_int_equal(a.finished, 0);
  uint64_t t0 = cr_clock_ns();
  while (!a.finished && cr_clock_ns() - t0 < 2000000000ull) uv_run(&e.loop, UV_RUN_ONCE);
  assert_int_equal(a.finished, 1);
  assert_int_equal(a.outcome, CR_OUTCOME_TIMEOUT);
  assert_int_equal(g_detached, 1);
  assert_int_equal(cr_shm_busy(e.shm, fn->slot), 0);
  cr_meter_flush(e.meter);
  assert_int_equal(atomic_load(&e.shm->fns[fn->slot].timeouts), 1);
  assert_int_equal(atomic_load(&e.shm->fns[fn->slot].errors), 1);
  env_close(&e);
}

/* Stopping: a call still waiting for a place is refused as stopping; one
 * suspended on I/O ends as a timeout when the invoker is freed. */
static void test_stopping(void **state) {
  (void)state;
  env_t e;
  env_open(&e, 5, 16);
  cr_fn_t *fn = publish(&e, "one", ECHO_SRC, 1, 10);
  rec_t a = {.id = 1, .wait = 1}, b = {.id = 2};
  submit(&e, fn, &a);
  submit(&e, fn, &b);
  cr_invoker_free(e.invoker); /* a ends (timeout); b then runs at once */
  e.invoker = NULL;
  assert_int_equal(a.finished, 1);
  assert_int_equal(a.outcome, CR_OUTCOME_TIMEOUT);
  assert_int_equal(b.finished, 1);
  assert_string_equal(b.result, "ran 2 one");

  env_t e2;
  env_close(&e);
  env_open(&e2, 5, 16);
  fn = publish(&e2, "one", ECHO_SRC, 1, 10);
  /* The one place is held elsewhere (another worker, as far as this one
   * knows): d waits for it with nothing running here. */
  assert_int_equal(cr_shm_take(e2.shm, fn->slot, 0, 1), 0);
  rec_t d = {.id = 4};
  submit(&e2, fn, &d);
  assert_int_equal(cr_dispatch_waiting(e2.d), 1);
  cr_dispatch_free(e2.d); /* d is refused as stopping */
  e2.d = NULL;
  assert_int_equal(d.refused, 1);
  assert_int_equal(d.why, CR_REFUSED_STOPPING);
  assert_int_equal(d.pushed, 0);
  cr_shm_give(e2.shm, fn->slot, 0);
  env_close(&e2);
}

/* The report line names the trigger and carries its fields. */
static void test_report_line(void **state) {
  (void)state;
  char path[] = "/tmp/cr-dispatch-log-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  fflush(stdout);
  int saved = dup(1);
  assert_int_equal(dup2(fd, 1), 1);
  env_t e;
  env_open(&e, 1, 16);
  cr_fn_t *fn = publish(&e, "echo", ECHO_SRC, 0, 0);
  rec_t a = {.id = 1, .status = 202};
  submit(&e, fn, &a);
  env_close(&e);
  cr_log_flush();
  fflush(stdout);
  dup2(saved, 1);
  close(saved);
  char buf[8192];
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  close(fd);
  unlink(path);
  assert_true(n > 0);
  buf[n] = '\0';
  char *line = strstr(buf, "\"msg\":\"report\"");
  assert_non_null(line);
  char *end = strchr(line, '\n');
  if (end) *end = '\0';
  assert_non_null(strstr(line, "\"requestId\":\"req-1\""));
  assert_non_null(strstr(line, "\"trigger\":\"fake\""));
  assert_non_null(strstr(line, "\"start\":\"cold\""));
  assert_non_null(strstr(line, "\"status\":202"));
  assert_non_null(strstr(line, "\"batch\":3"));
  assert_null(strstr(line, "\"outcome\""));
}

int main(void) {
  cr_log_setup(-1, 0);
  if (cr_vm_watchdog_start()) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_runs_and_meters),
      cmocka_unit_test(test_handler_without_parameters_gets_no_event),
      cmocka_unit_test(test_refused_unloaded_and_init),
      cmocka_unit_test(test_queue_in_arrival_order),
      cmocka_unit_test(test_throttled),
      cmocka_unit_test(test_timeout_while_waiting),
      cmocka_unit_test(test_stopping),
      cmocka_unit_test(test_report_line),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
