/* fncall.h - running a function by name with a JSON event: the "invoke"
 * trigger, behind crescent.invoke.call, POST /_/invoke/{function} and the
 * asynchronous invocations (async.h).
 *
 * A call names the function and gives its event as JSON text (the caller
 * encoded it; the callee's state decodes it, so the two states share
 * nothing). It goes through the dispatcher like any trigger's (limits,
 * concurrency, metering, report line with "trigger":"invoke" and the
 * caller's request id as "parentRequestId"), and its result comes back as
 * the JSON text of the callee's first return value ("" for nil or none).
 *
 * Nothing runs inside cr_fncall_start(): the call starts on the next turn of
 * the loop, and its callback comes on a later turn, never from inside the
 * dispatcher. So a function calling another never has two states running in
 * one C stack (each resume arms the watchdog and meters CPU time for one
 * state), and a callee that ends at once does not resume its caller before
 * the caller has yielded.
 *
 * Failures come back as error texts, the caller's `err`:
 *   "function not found"       no such function (names starting with "_",
 *                              the platform's own functions, are not found)
 *   "call depth exceeded"      past CR_FNCALL_MAX_DEPTH nested calls
 *   "timeout"                  the callee ran out of time: its own timeout,
 *                              or the caller's remaining time less a tenth of
 *                              it, at most 50 ms (its cap: so the caller has
 *                              time left to answer)
 *   "throttled"                at its concurrency limit past the wait
 *   "error: <message>"         it raised (first line of the message, no
 *                              traceback), ran out of memory, failed to load
 *                              or init, or returned what JSON cannot hold
 *   "stopping"                 the worker is stopping
 *   "out of memory"            the worker could not make the call
 * and the result carries the report fields either way (zero when it did
 * not run). */
#ifndef CR_FNCALL_H
#define CR_FNCALL_H

#include <stddef.h>
#include <stdint.h>

#include "dispatch.h"
#include "registry.h"

typedef struct uv_loop_s uv_loop_t;
typedef struct cr_fncalls_s cr_fncalls_t;
typedef struct cr_fncall_s cr_fncall_t;

#define CR_FNCALL_MAX_DEPTH 8
/* Bytes of an event or a result: Lambda's synchronous payload limit. */
#define CR_FNCALL_MAX_PAYLOAD (6u * 1024 * 1024)

typedef enum {
  CR_FNCALL_OK = 0,   /* it returned: result holds its JSON */
  CR_FNCALL_FAILED,   /* it ran and failed (raised, timeout, memory, bad result) */
  CR_FNCALL_REFUSED,  /* it did not run: not found, depth, throttled, not loaded, init, stopping */
} cr_fncall_status_t;

typedef struct {
  cr_fncall_status_t status;
  const char *err;      /* NULL when OK */
  const char *error_type; /* "timeout", "memory", "error", "throttled", "notfound", ...: NULL when OK */
  const char *result;   /* OK: the JSON text ("" for nil) */
  size_t result_len;
  /* The report (what ran; zero when it did not) */
  const char *reqid;    /* the callee's request id */
  const char *version;  /* its version label, or "" */
  int cold;
  double duration_ms, billed_ms, init_ms;
  size_t max_memory;    /* bytes */
  int memory_mb;
} cr_fncall_result_t;

/* Called once per call (unless cancelled), on a later loop turn. r and its
 * strings are valid during the call only. */
typedef void (*cr_fncall_cb)(void *data, const cr_fncall_result_t *r);

typedef struct {
  int depth;                /* the caller's call depth (a trigger's call: 0) */
  uint64_t deadline_ns;     /* the callee ends by then at the latest (0: its own timeout) */
  const char *parent_reqid; /* the caller's request id, or NULL */
  const char *async_id;     /* an asynchronous invocation's id (async.h), or NULL */
  int attempt;              /* and its attempt, from 1 */
  const char *auth_hook;    /* an authentication trigger's call (accounts_api.h): the hook's name, a
                               static string; its report line says "trigger":"auth","hook":NAME */
  const char *traceparent;  /* the caller's (traceparent.h): the callee continues its trace; NULL: a new one */
} cr_fncall_opts_t;

/* The calls of one worker loop, through d, to functions of reg. NULL when
 * out of memory. */
cr_fncalls_t *cr_fncalls_new(uv_loop_t *loop, cr_dispatch_t *d, cr_registry_t *reg);
/* After the dispatcher is freed (its calls have ended): drops what is left
 * without calling back. The loop must run once more. */
void cr_fncalls_free(cr_fncalls_t *fc);

/* Calls the function named name (nlen bytes) with the event's JSON text
 * (elen bytes, at most CR_FNCALL_MAX_PAYLOAD; elen 0: a nil event); both
 * are copied. NULL when out of memory (cb is not called). */
cr_fncall_t *cr_fncall_start(cr_fncalls_t *fc, const char *name, size_t nlen, const char *event, size_t elen,
                             const cr_fncall_opts_t *opts, cr_fncall_cb cb, void *data);
/* The caller is gone: cb will not be called. A callee already running runs
 * to its end (within the caller's deadline, its cap), its result dropped. */
void cr_fncall_cancel(cr_fncall_t *c);

/* The depth and deadline of the invocation inv (a dispatcher call's), for
 * a call it makes: fills opts' depth, deadline_ns, parent_reqid and traceparent. */
void cr_fncall_opts_from(const cr_invocation_t *inv, cr_fncall_opts_t *opts);

#endif
