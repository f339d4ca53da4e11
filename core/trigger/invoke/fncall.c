/* fncall.c - the "invoke" trigger (fncall.h). */
#include "fncall.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "clock.h"
#include "error.h"
#include "json.h"
#include "log.h"

typedef enum { FC_STARTING, FC_RUNNING, FC_DONE } fc_state_t;

struct cr_fncall_s {
  cr_fncalls_t *fc;
  cr_fncall_t *next;   /* in the starting or done list */
  fc_state_t state;
  int cancelled;
  cr_fncall_cb cb;
  void *data;
  char *name;
  char *event;
  size_t elen;
  int depth;           /* the callee's */
  uint64_t deadline_ns;
  char parent[CR_REQID_MAX + 1];
  char trace[CR_TRACE_LEN + 1]; /* the caller's traceparent, or "" */
  char async_id[CR_REQID_MAX + 1];
  int attempt;
  const char *hook; /* an authentication trigger's name (static), or NULL */
  /* what the callback gets */
  cr_fncall_result_t r;
  cr_buf_t result;
  char err[512];
  char reqid[CR_REQID_MAX + 1];
  char version[24];
};

struct cr_fncalls_s {
  uv_loop_t *loop;
  cr_dispatch_t *d;
  cr_registry_t *reg;
  uv_timer_t kick;     /* runs the lists on the next loop turn */
  cr_fncall_t *starting, **starting_tail;
  cr_fncall_t *done, **done_tail;
  unsigned id_base;
  unsigned long long ncalls;
  cr_buf_t scratch;    /* encoding a result */
};

/* The data a dispatcher call keeps: which fncall it runs. */
typedef struct {
  cr_fncall_t *c;
} icall_t;

static const cr_trigger_t invoke_trigger, auth_trigger;

static icall_t *icall(cr_call_t *call) { return (icall_t *)(void *)call->data.bytes; }

static void on_kick(uv_timer_t *t);

static void kick(cr_fncalls_t *fc) {
  if (!uv_is_active((uv_handle_t *)&fc->kick)) uv_timer_start(&fc->kick, on_kick, 0, 0);
}

cr_fncalls_t *cr_fncalls_new(uv_loop_t *loop, cr_dispatch_t *d, cr_registry_t *reg) {
  cr_fncalls_t *fc = calloc(1, sizeof *fc);
  if (!fc) return NULL;
  fc->loop = loop;
  fc->d = d;
  fc->reg = reg;
  fc->starting_tail = &fc->starting;
  fc->done_tail = &fc->done;
  fc->id_base = (unsigned)(cr_wall_ms() * 2654435761u) ^ (unsigned)uv_os_getpid();
  uv_timer_init(loop, &fc->kick);
  fc->kick.data = fc;
  uv_unref((uv_handle_t *)&fc->kick);
  return fc;
}

static void fncall_free(cr_fncall_t *c) {
  free(c->name);
  free(c->event);
  cr_buf_free(&c->result);
  free(c);
}

static void on_kick_closed(uv_handle_t *h) {
  cr_fncalls_t *fc = h->data;
  cr_buf_free(&fc->scratch);
  free(fc);
}

void cr_fncalls_free(cr_fncalls_t *fc) {
  if (!fc) return;
  for (cr_fncall_t *lists[2] = {fc->starting, fc->done}, **l = lists; l < lists + 2; l++)
    while (*l) {
      cr_fncall_t *c = *l;
      *l = c->next;
      fncall_free(c);
    }
  fc->starting = fc->done = NULL;
  uv_close((uv_handle_t *)&fc->kick, on_kick_closed);
}

void cr_fncall_opts_from(const cr_invocation_t *inv, cr_fncall_opts_t *opts) {
  /* Every invocation of a worker is a dispatcher call (dispatch.h: inv is
   * the call's first member). */
  const cr_call_t *call = (const cr_call_t *)(const void *)inv;
  opts->depth = call->depth;
  opts->deadline_ns = inv->deadline_ns;
  opts->parent_reqid = inv->reqid;
  opts->traceparent = call->trace;
}

/* Ends c with a result; its callback comes from the loop. */
static void complete(cr_fncall_t *c) {
  cr_fncalls_t *fc = c->fc;
  c->state = FC_DONE;
  c->next = NULL;
  *fc->done_tail = c;
  fc->done_tail = &c->next;
  kick(fc);
}

static void fail(cr_fncall_t *c, cr_fncall_status_t status, const char *type, const char *fmt, const char *arg) {
  c->r.status = status;
  c->r.error_type = type;
  snprintf(c->err, sizeof c->err, fmt, arg ? arg : "");
  c->r.err = c->err;
  complete(c);
}

cr_fncall_t *cr_fncall_start(cr_fncalls_t *fc, const char *name, size_t nlen, const char *event, size_t elen,
                             const cr_fncall_opts_t *opts, cr_fncall_cb cb, void *data) {
  cr_fncall_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->name = malloc(nlen + 1);
  c->event = elen ? malloc(elen) : NULL;
  if (!c->name || (elen && !c->event)) {
    fncall_free(c);
    return NULL;
  }
  memcpy(c->name, name, nlen);
  c->name[nlen] = '\0';
  if (elen) memcpy(c->event, event, elen);
  c->elen = elen;
  c->fc = fc;
  c->cb = cb;
  c->data = data;
  c->depth = (opts ? opts->depth : 0) + 1;
  c->deadline_ns = opts ? opts->deadline_ns : 0;
  if (opts && opts->parent_reqid) snprintf(c->parent, sizeof c->parent, "%s", opts->parent_reqid);
  if (opts && opts->traceparent) snprintf(c->trace, sizeof c->trace, "%s", opts->traceparent);
  if (opts && opts->async_id) snprintf(c->async_id, sizeof c->async_id, "%s", opts->async_id);
  c->attempt = opts ? opts->attempt : 0;
  c->hook = opts ? opts->auth_hook : NULL;
  c->r.reqid = c->reqid;
  c->r.version = c->version;
  c->state = FC_STARTING;
  *fc->starting_tail = c;
  fc->starting_tail = &c->next;
  kick(fc);
  return c;
}

void cr_fncall_cancel(cr_fncall_t *c) {
  if (c) c->cancelled = 1;
}

/* Submits a call that was started (from the loop). */
static void submit(cr_fncall_t *c) {
  cr_fncalls_t *fc = c->fc;
  /* Names starting with '_' are the platform's own functions (the admin
   * APIs): never callable by name. */
  cr_fn_t *fn = c->name[0] != '_' ? cr_registry_find(fc->reg, c->name) : NULL;
  if (!fn || fn->removed || fn->platform) {
    fail(c, CR_FNCALL_REFUSED, "notfound", "function not found", NULL);
    return;
  }
  if (c->depth > CR_FNCALL_MAX_DEPTH) {
    fail(c, CR_FNCALL_REFUSED, "depth", "call depth exceeded", NULL);
    return;
  }
  if (c->deadline_ns && cr_clock_ns() >= c->deadline_ns) {
    fail(c, CR_FNCALL_FAILED, "timeout", "timeout", NULL);
    return;
  }
  int n = snprintf(c->reqid, sizeof c->reqid, "%08x-i-%llx", fc->id_base, ++fc->ncalls);
  cr_call_t *call = cr_dispatch_call(fc->d, c->hook ? &auth_trigger : &invoke_trigger, fn, c, c->reqid, (size_t)n);
  if (!call) {
    fail(c, CR_FNCALL_REFUSED, "memory", "out of memory", NULL);
    return;
  }
  icall(call)->c = c;
  call->depth = c->depth;
  if (c->trace[0]) cr_trace_child(c->trace, strlen(c->trace), call->trace);
  /* The caller's deadline, less a margin so that it sees "timeout" and can
   * answer before its own deadline: a tenth of its time left, at most 50 ms. */
  if (c->deadline_ns) {
    uint64_t now = cr_clock_ns(), left = c->deadline_ns - now, margin = left / 10;
    if (margin > 50000000ull) margin = 50000000ull;
    call->deadline_cap_ns = c->deadline_ns - margin;
  }
  c->state = FC_RUNNING;
  cr_dispatch_submit(fc->d, call);
}

static void on_kick(uv_timer_t *t) {
  cr_fncalls_t *fc = t->data;
  /* Take the lists as they are: callbacks may start new calls. */
  cr_fncall_t *starting = fc->starting;
  fc->starting = NULL;
  fc->starting_tail = &fc->starting;
  while (starting) {
    cr_fncall_t *c = starting;
    starting = c->next;
    c->next = NULL;
    if (c->cancelled) fncall_free(c);
    else submit(c);
  }
  cr_fncall_t *done = fc->done;
  fc->done = NULL;
  fc->done_tail = &fc->done;
  while (done) {
    cr_fncall_t *c = done;
    done = c->next;
    if (!c->cancelled) c->cb(c->data, &c->r);
    fncall_free(c);
  }
}

/* --- the trigger ---------------------------------------------------------------------------------- */

static void push_event(cr_call_t *call, lua_State *L) {
  cr_fncall_t *c = icall(call)->c;
  if (!c->elen) {
    lua_pushnil(L);
    return;
  }
  char err[128];
  if (cr_json_decode(L, c->event, c->elen, err, sizeof err) != 0) luaL_error(L, "bad event: %s", err);
}

/* The first line of an error message (no traceback), at most n bytes. */
static size_t first_line(const char *s, size_t n) {
  const char *nl = strchr(s, '\n');
  size_t len = nl ? (size_t)(nl - s) : strlen(s);
  return len < n ? len : n;
}

/* The report fields of what ran. */
static void take_report(cr_fncall_t *c, cr_call_t *call) {
  cr_invocation_t *inv = &call->inv;
  c->r.cold = inv->cold;
  c->r.init_ms = call->init_ms;
  double ms = (double)(inv->end_ns - inv->start_ns) / 1e6;
  c->r.duration_ms = ms;
  double billed = (double)(long long)ms;
  if (billed < ms) billed += 1;
  c->r.billed_ms = billed < 1 ? 1 : billed;
  c->r.max_memory = inv->mem_peak;
  if (call->ver) {
    c->r.memory_mb = call->ver->settings.memory;
    snprintf(c->version, sizeof c->version, "%.*s", call->ver->label_len, call->ver->label);
  }
}

static int finish(cr_call_t *call) {
  cr_fncall_t *c = icall(call)->c;
  cr_fncalls_t *fc = c->fc;
  cr_invocation_t *inv = &call->inv;
  take_report(c, call);
  int status = 500;
  if (inv->outcome == CR_OUTCOME_OK) {
    lua_State *co = inv->co;
    if (inv->nresults == 0 || lua_isnil(co, 1)) {
      status = 200;
      c->r.status = CR_FNCALL_OK;
    } else {
      /* Within the callee's own time, and at most a second of the worker's. */
      uint64_t cap = cr_clock_ns() + 1000000000ull;
      uint64_t until = inv->deadline_ns && inv->deadline_ns < cap ? inv->deadline_ns : cap;
      char err[256];
      fc->scratch.len = 0;
      if (cr_json_encode_until(co, 1, &fc->scratch, CR_FNCALL_MAX_PAYLOAD, until, err, sizeof err) == 0 &&
          cr_buf_append(&c->result, fc->scratch.data, fc->scratch.len) == 0) {
        status = 200;
        c->r.status = CR_FNCALL_OK;
        c->r.result = c->result.data;
        c->r.result_len = c->result.len;
      } else {
        cr_log(CR_LOG_ERROR, call->fn->name, call->reqid, "bad result from the handler: %s", err);
        c->r.status = CR_FNCALL_FAILED;
        c->r.error_type = "error";
        snprintf(c->err, sizeof c->err, "error: the result cannot be sent back: %s", err);
        c->r.err = c->err;
      }
      cr_buf_reset(&fc->scratch, 64 * 1024);
    }
  } else {
    c->r.status = CR_FNCALL_FAILED;
    if (inv->outcome == CR_OUTCOME_TIMEOUT) {
      status = 504;
      c->r.error_type = "timeout";
      snprintf(c->err, sizeof c->err, "timeout");
    } else if (inv->outcome == CR_OUTCOME_MEMORY) {
      c->r.error_type = "memory";
      snprintf(c->err, sizeof c->err, "error: memory limit exceeded");
    } else if (strncmp(inv->error, "bad event: ", 11) == 0) {
      /* push_event's: the caller's JSON did not decode (POST /_/invoke). */
      c->r.error_type = "badevent";
      snprintf(c->err, sizeof c->err, "%.*s", (int)first_line(inv->error, sizeof c->err - 1), inv->error);
    } else {
      c->r.error_type = "error";
      snprintf(c->err, sizeof c->err, "error: %.*s", (int)first_line(inv->error, sizeof c->err - 8), inv->error);
    }
    c->r.err = c->err;
    cr_buf_t *lb = cr_log_begin(CR_LOG_ERROR, inv->error, strlen(inv->error), call->fn->name, call->reqid);
    if (lb) {
      cr_log_trace(lb, call->trace);
      cr_log_str(lb, "source", "handler", 7);
      cr_log_end(lb);
    }
  }
  if (c->r.status == CR_FNCALL_OK) c->r.err = NULL;
  complete(c);
  return status;
}

static void refused(cr_call_t *call, cr_refusal_t why) {
  cr_fncall_t *c = icall(call)->c;
  switch (why) {
  case CR_REFUSED_UNLOADED:
    fail(c, CR_FNCALL_REFUSED, "error", "error: function failed to load", NULL);
    break;
  case CR_REFUSED_THROTTLED:
    fail(c, CR_FNCALL_REFUSED, "throttled", "throttled", NULL);
    break;
  case CR_REFUSED_INIT:
    fail(c, CR_FNCALL_REFUSED, "error",
         call->init_rc == CR_ETIMEDOUT ? "error: function init timed out" : "error: function init failed", NULL);
    break;
  case CR_REFUSED_STOPPING:
  default:
    fail(c, CR_FNCALL_REFUSED, "stopping", "stopping", NULL);
    break;
  }
}

static void report_fields(cr_call_t *call, cr_buf_t *line) {
  cr_fncall_t *c = icall(call)->c;
  if (c->parent[0]) cr_log_str(line, "parentRequestId", c->parent, strlen(c->parent));
  cr_log_int(line, "depth", c->depth);
  if (c->hook) cr_log_str(line, "hook", c->hook, strlen(c->hook));
  if (c->async_id[0]) {
    cr_log_str(line, "invocationId", c->async_id, strlen(c->async_id));
    cr_log_int(line, "attempt", c->attempt);
  }
}

static const cr_trigger_t invoke_trigger = {
    .name = "invoke",
    .push_event = push_event,
    .finish = finish,
    .refused = refused,
    .report_fields = report_fields,
};

/* The same for the accounts' authentication triggers: their own name in the report and meters. */
static const cr_trigger_t auth_trigger = {
    .name = "auth",
    .push_event = push_event,
    .finish = finish,
    .refused = refused,
    .report_fields = report_fields,
};
