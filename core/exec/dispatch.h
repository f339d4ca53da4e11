/* dispatch.h - the one way into a function, for every trigger.
 *
 * A trigger (HTTP today; queue, storage, KV, cron and direct calls to come)
 * says "run function F with this event" by making a call and submitting it.
 * The dispatcher then, for every trigger alike:
 *   1. admits it under the function's `concurrency` (counted across workers,
 *      pool.h); past it, queues it in arrival order, for at most `queue_wait`
 *      seconds and `queue_max` calls in this worker, retrying every 2 ms (a
 *      place may free up in another worker); calls for a function that has
 *      calls waiting queue behind them;
 *   2. takes an instance (a warm start, or a cold one that runs the init);
 *   3. begins the invocation (invoke.h) and lets the trigger push its event;
 *   4. runs it; if it waits on I/O, carries on when it ends;
 *   5. lets the trigger handle the result (answer, ack, retry...), which
 *      returns the invocation's status;
 *   6. meters and reports it (meter.h, with the trigger's name and fields);
 *   7. releases the instance and the concurrency place.
 * A call that never runs is refused instead, with the reason (no loaded
 * version, throttled, its init failed, the worker stopping): metered and
 * logged here, answered by the trigger. Exactly one of trigger->finish and
 * trigger->refused is called for every submitted call, possibly before
 * cr_dispatch_submit() returns; the call is the dispatcher's again after it.
 *
 * Calls are kept for reuse (a freelist): a warm invocation allocates nothing. */
#ifndef CR_DISPATCH_H
#define CR_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "invoke.h"
#include "meter.h"
#include "pool.h"
#include "registry.h"
#include "reqid.h"
#include "traceparent.h"

typedef struct cr_dispatch_s cr_dispatch_t;
typedef struct cr_call_s cr_call_t;

typedef enum {
  CR_REFUSED_UNLOADED = 1, /* the function has no loaded version (it failed to load) */
  CR_REFUSED_THROTTLED,    /* at its concurrency limit past the wait, or the queue was full */
  CR_REFUSED_INIT,         /* its instance could not be made: call->init_rc says why */
  CR_REFUSED_STOPPING,     /* the worker stopped before it got a place */
} cr_refusal_t;

/* What a trigger tells the dispatcher. Static and shared by its calls. */
typedef struct {
  const char *name; /* "http", "queue", ...: the report line's trigger */
  /* Pushes the event (one value) onto the given state, in a protected call
   * on the instance's main state: it may raise (out of memory), which ends
   * the invocation as failed. Called only when the handler declares
   * parameters. */
  void (*push_event)(cr_call_t *call, lua_State *co);
  /* The invocation ended (call->inv.outcome; when OK its results are on
   * call->inv.co, call->inv.nresults of them). Handles them and returns the
   * status to meter and report (HTTP-like: 500 and more count as errors; a
   * 4xx for an invocation that raised says the event was bad, a client
   * error: meter.h). */
  int (*finish)(cr_call_t *call);
  /* The call will not run (see cr_refusal_t). */
  void (*refused)(cr_call_t *call, cr_refusal_t why);
  /* Adds the trigger's own fields to the report line; may be NULL. */
  void (*report_fields)(cr_call_t *call, cr_buf_t *line);
} cr_trigger_t;

/* Bytes a trigger may keep in a call (the HTTP trigger: its route match). */
#define CR_CALL_DATA 832

struct cr_call_s {
  cr_invocation_t inv;        /* first: an instance's current invocation is its call */
  const cr_trigger_t *trigger;
  cr_fn_t *fn;
  cr_fnver_t *ver;            /* the version it runs, once admitted */
  void *ctx;                  /* the trigger's (the HTTP request) */
  double init_ms;             /* the cold start's init, or 0 */
  int init_rc;                /* CR_REFUSED_INIT: CR_ELUA, CR_ETIMEDOUT or CR_ENOMEM */
  char reqid[CR_REQID_MAX + 1]; /* the invocation's request id */
  /* Its W3C traceparent (traceparent.h): a new trace unless the trigger
   * continues one (cr_trace_child into it before submitting). */
  char trace[CR_TRACE_LEN + 1];
  uint64_t wait_until_ns;     /* queued: refused as throttled after this */
  uint64_t deadline_cap_ns;   /* the invocation ends by then at the latest (0: its timeout alone) */
  int depth;                  /* 0 for a trigger's call; a function's call: its caller's + 1 */
  cr_dispatch_t *d;
  cr_call_t *next;            /* in the wait queue */
  union {
    max_align_t align;
    char bytes[CR_CALL_DATA];
  } data;                     /* the trigger's own */
};

typedef struct {
  double queue_wait; /* seconds a call may wait for a place (default 1; 0: refuse at once) */
  int queue_max;     /* calls waiting in this dispatcher (default 1024) */
} cr_dispatch_opts_t;

/* loop may be NULL (no waiting: a call past the limit is refused at once). */
cr_dispatch_t *cr_dispatch_new(uv_loop_t *loop, cr_pool_t *pool, cr_invoker_t *invoker, cr_meter_t *meter,
                               const cr_dispatch_opts_t *opts);
/* Refuses waiting calls (CR_REFUSED_STOPPING) and frees. No invocation may
 * be running any more: free the invoker first (it ends those waiting on
 * I/O). With a loop, the loop must run once more. */
void cr_dispatch_free(cr_dispatch_t *d);

/* A new call to fn from trigger, for the trigger to fill (ctx, data); the
 * request id (len bytes) is copied, at most CR_REQID_MAX of them. NULL when memory ran out. */
cr_call_t *cr_dispatch_call(cr_dispatch_t *d, const cr_trigger_t *trigger, cr_fn_t *fn, void *ctx,
                            const char *reqid, size_t len);
/* Runs call now or once a place frees up (see above). */
void cr_dispatch_submit(cr_dispatch_t *d, cr_call_t *call);

/* Calls waiting for a place now. */
int cr_dispatch_waiting(const cr_dispatch_t *d);

#endif
