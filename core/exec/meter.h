/* meter.h - what invocations cost and how they ended: per-loop meters, the
 * report line, and the flush to shared memory.
 *
 * Every trigger's invocations are counted here, through dispatch.c: one call
 * of cr_meter_report() per invocation that ran adds its counts to this loop's
 * meters (by function slot) and writes its report line, the Lambda-style
 * REPORT of docs/architecture.md §7:
 *   {"msg":"report","function":F,"requestId":R,"version":N,"trigger":"http",
 *    "start":"cold"|"warm","initDuration":ms (cold only),"duration":ms,
 *    "billedDuration":ms,"cpuTime":ms,"maxMemoryUsed":bytes,"memorySize":MB,
 *    "status":S, ["outcome":"timeout"|"memory"|"error"|"client_error"],
 *    ["httpRequests":N,["httpErrors":N,]"httpBytesOut":B,"httpBytesIn":B,"httpTime":ms]
 *    (crescent.http calls, when it made any), <the trigger's fields>}
 * Two kinds of failure are counted apart. A client error: the handler raised
 * an error and the trigger answered it with a 4xx status, which only a
 * platform error about the request does (event.json() on a body that is not
 * JSON: 400); the request was bad, not the function ("outcome":"client_error",
 * the client_errors counter). An error: anything else that did not end OK
 * (raised, timeout, memory) or answered 500 or more ("outcome" says how it
 * ended; the errors counter). A function that returns a 4xx itself (say
 * {status = 404}) answered as it meant to: neither. Billing rounds the
 * duration up to the next ms (at least 1).
 *
 * The meters go to shared memory in one go (atomic adds on shared pages per
 * invocation showed in profiles): cr_meter_flush() once per loop iteration,
 * and before anything reads the totals (the admin API). An iteration that
 * runs long (slow handlers answering one after another) flushes itself once
 * 1 ms has passed since the oldest unflushed invocation, log lines with it
 * (cr_meter_flush_if_late), so neither waits for the iteration's end.
 * Refusals are rarer and go to shared memory at once. */
#ifndef CR_METER_H
#define CR_METER_H

#include <stdint.h>

#include "buf.h"
#include "invoke.h"
#include "registry.h"
#include "shm.h"
#include "usage.h"

typedef struct cr_meter_s cr_meter_t;
struct cr_invocation_s;

/* Adds a trigger's own fields to a report line (cr_log_str/_int/_num on b). */
typedef void (*cr_meter_fields_cb)(void *data, cr_buf_t *b);

/* shm may be NULL: nothing is counted, report lines are still written. */
cr_meter_t *cr_meter_new(cr_shm_t *shm);
/* Every invocation metered is also added to usage (usage.h; NULL: none), from now on. */
void cr_meter_set_usage(cr_meter_t *m, cr_usage_t *usage);
/* Flushes, then frees. */
void cr_meter_free(cr_meter_t *m);

/* Is an invocation that ended with outcome, answered with status, a client
 * error (see above)? */
int cr_meter_client_error(cr_outcome_t outcome, int status);

/* One invocation of ver that ran (inv ended), started by trigger, answered
 * with status; fields (may be NULL) adds the trigger's own to the line. */
void cr_meter_report(cr_meter_t *m, const cr_fnver_t *ver, const struct cr_invocation_s *inv, double init_ms,
                     const char *trigger, int status, cr_meter_fields_cb fields, void *data);
/* An invocation (started by trigger) whose instance could not be made (its init failed). */
void cr_meter_init_failed(cr_meter_t *m, const cr_fn_t *fn, const char *trigger);
/* An invocation (started by trigger) refused at the function's concurrency limit. */
void cr_meter_throttled(cr_meter_t *m, const cr_fn_t *fn, const char *trigger);

/* Adds the meters gathered since the last flush to shared memory. */
void cr_meter_flush(cr_meter_t *m);
/* Flushes meters and log lines when the oldest unflushed invocation ended
 * 1 ms or more before now_ns. */
void cr_meter_flush_if_late(cr_meter_t *m, uint64_t now_ns);

#endif
