/* invoke.h - running a function's handler in an instance: the handler
 * protocol on the C side.
 *
 * Each invocation runs in the instance's coroutine, so the handler can wait
 * on I/O (stdlib calls) while the worker serves others; the coroutine is
 * reused while it ends cleanly. Around every resume the deadline is armed
 * with the watchdog (vm.h) and the CPU time, memory peak and shared-memory
 * "busy" slot are kept. The trigger (gateway.c for HTTP) builds the event;
 * this module calls handler(event, ctx) and reports how it ended.
 *
 * Waiting: a stdlib C function starts its I/O and returns cr_invoke_yield(),
 * which yields the platform's marker (through user coroutines, see
 * lua/sandbox.lua). The invocation is then suspended: cr_invoke_run()
 * returns CR_EAGAIN, the invocation joins its invoker's waiting set, and the
 * I/O's callback later calls cr_invoke_resume() with the results pushed on
 * inv->co. One resume path only: an invocation that reaches its deadline
 * while waiting ends as a timeout, its pending I/O is detached (its reply is
 * dropped when it comes: the id + generation check of docs/architecture.md §9), and its
 * instance is discarded. When an invocation that waited ends, inv->done is
 * called.
 *
 * ctx is one table per instance: functionName, version, versionHash, env,
 * memoryLimitInMB, log.{debug,info,warn,error}(msg, fields), remaining() (ms
 * left), and per invocation requestId and cold. */
#ifndef CR_INVOKE_H
#define CR_INVOKE_H

#include <stddef.h>
#include <stdint.h>

#include "pool.h"
#include "shm.h"

typedef struct uv_loop_s uv_loop_t;

typedef enum {
  CR_OUTCOME_OK = 0,
  CR_OUTCOME_ERROR,   /* the handler raised an error */
  CR_OUTCOME_TIMEOUT, /* past its timeout */
  CR_OUTCOME_MEMORY,  /* past its memory limit */
} cr_outcome_t;

typedef struct cr_invocation_s cr_invocation_t;
typedef void (*cr_invoke_done_cb)(cr_invocation_t *inv);
/* Detaches pending I/O from an invocation that ended without it. */
typedef void (*cr_invoke_detach_cb)(void *pending);

struct cr_invocation_s {
  cr_instance_t *inst;
  struct cr_invoker_s *invoker; /* the set it waits in */
  lua_State *co;
  const char *reqid;
  const char *trace;     /* its traceparent (traceparent.h), or NULL */
  int cold;
  uint64_t start_ns;
  uint64_t deadline_ns;
  uint64_t deadline_cap_ns; /* set between begin and run: the deadline is at most this (0: none) */
  uint64_t end_ns;
  uint64_t cpu_ns;       /* time running the function's code: the sum of its resumes */
  size_t mem_peak;
  /* Outbound HTTP (crescent.http): calls made, of them failed, bytes on the
   * wire and time waited; for the report line and the meters. */
  uint32_t http_requests, http_errors;
  uint64_t http_bytes_in, http_bytes_out, http_ns;
  cr_outcome_t outcome;
  int nresults;          /* results on co's stack, when OK */
  cr_invoke_done_cb done;/* called when an invocation that waited ends */
  void *data;            /* the caller's */
  void *pending;         /* the I/O it waits on */
  cr_invoke_detach_cb detach;
  int waiting;
  struct cr_invocation_s *wnext, *wprev;
  char error[4096];      /* message and traceback, when not OK */
};

/* A worker's invocation context: its waiting set (invocations suspended on
 * I/O) with the timer that ends them at their deadline, and the shared-memory
 * slot where it publishes "busy since / deadline" for the master's supervisor.
 * One per loop; every invocation begun with it waits in it. */
typedef struct cr_invoker_s cr_invoker_t;

/* loop may be NULL (no deadline timer: a waiting invocation only ends when
 * resumed), busy_slot too. */
cr_invoker_t *cr_invoker_new(uv_loop_t *loop, cr_shm_worker_t *busy_slot);
/* Ends every waiting invocation (as timeouts), closes the timer and frees;
 * with a loop, the loop must run once more. */
void cr_invoker_free(cr_invoker_t *iv);

/* The registry field where a layer above (the stdlib) may put a function
 * extend(ctx), which prepare calls on each new instance's ctx (ctx.once):
 * exec cannot know the stdlib, so the stdlib's preload registers it. */
#define CR_CTX_EXTEND "crescent.ctx_extend"

/* Completes a new instance: its init left the file's result (a handler or a
 * settings table) on the stack. Makes the ctx table (extended by
 * CR_CTX_EXTEND when the state has one) and the coroutine. */
int cr_invoke_prepare(cr_instance_t *inst, char *err, size_t errlen);

/* Starts an invocation in inst: pushes the handler onto the coroutine and
 * returns it, for the caller to push the event if inst->nargs > 0 (a
 * handler declared without parameters is called without any, and no event
 * is made for it). */
lua_State *cr_invoke_begin(cr_invoker_t *iv, cr_invocation_t *inv, cr_instance_t *inst, const char *reqid, int cold);
/* Calls handler(event, ctx), as many of them as it declares. Returns 0 when it ended (see inv->outcome), or
 * CR_EAGAIN when it waits on I/O (inv->done is called when it ends; inv
 * must stay valid until then). */
int cr_invoke_run(cr_invocation_t *inv);
/* Resumes a waiting invocation with nargs results pushed on inv->co. */
void cr_invoke_resume(cr_invocation_t *inv, int nargs);

/* For stdlib C functions: the invocation running in L's state, or NULL
 * (during an init, or outside the server). */
cr_invocation_t *cr_invoke_current(lua_State *L);
/* Can a stdlib C function running in L yield from here up to the platform:
 * not inside a C callback (a gsub function, a sort comparator), and through
 * user coroutines only when they pass platform yields on (lua/sandbox.lua's
 * `passes`)? Check before starting the I/O a yield would wait on. */
int cr_invoke_can_yield(lua_State *L, const cr_invocation_t *inv);
/* The checks a stdlib call that yields makes before it starts its I/O: the
 * current invocation, or NULL with nil, err pushed (return 2): "timeout"
 * past its deadline, "cannot call WHO here (inside a C callback)" where it
 * cannot yield. Outside an invocation (a module's top level) it raises
 * "WHAT only possible inside a handler, ..." at the caller's line (WHAT: "crescent.auth
 * calls are"). */
cr_invocation_t *cr_invoke_for_call(lua_State *L, const char *what, const char *who);
/* Suspends the running invocation on pending I/O: use as
 * `return cr_invoke_yield(L, inv, pending, detach);` from a C function. */
int cr_invoke_yield(lua_State *L, cr_invocation_t *inv, void *pending, cr_invoke_detach_cb detach);
/* Clears the coroutine after the caller read the results. Marks the instance
 * broken after a timeout or memory error. */
void cr_invoke_end(cr_invocation_t *inv);

/* Pushes a table of log functions {debug, info, warn, error}(msg, fields):
 * ctx.log and require "crescent.log". */
void cr_invoke_push_log(lua_State *L);

#endif
