/* async.h - asynchronous invocations (crescent.invoke.async, POST
 * /_/invoke/{fn} with X-Invocation-Type: Event): queued durably, run at least
 * once, retried, then sent to a destination — Lambda's asynchronous
 * invocation model on crescent's queue machinery.
 *
 * Sending (cr_async_send, script inv_send) appends a message to the queue
 * "crescent.async" (an ordinary crescent queue: its stream
 * "<prefix>{q:crescent.async}:s", bounded by --queue-max-depth, delayed
 * messages promoted by the delayed-message promoter, trimmed once every
 * group acknowledged, listed by /_/api/queues) and writes the invocation's
 * status record "<prefix>{inv:ID}" (a hash: status queued|running|succeeded|
 * failed, function, attempts, createdAt, startedAt, endedAt, result or
 * error, parentRequestId), which expires `retention` seconds after its last
 * change. The entry's "id" field carries "<ID> <attempt> <parent> <function>".
 *
 * Every worker consumes the stream through one consumer group
 * ("crescent.async", consumer "w<worker>"; the first send makes the stream
 * and the group, which the consumers look for every 250 ms until then), polled like the queue triggers
 * (every POLL_MS while idle, at once after a full read; never blocking the
 * loop), at most `concurrency` invocations in flight per worker. Each entry
 * is one call (fncall.h, trigger "invoke", the report with invocationId and
 * attempt). When it ends (script inv_done, one atomic step that first
 * acknowledges the entry, so two consumers ending the same delivery act
 * once):
 *   succeeded: the status gets the result (its JSON, up to 256 KB; larger
 *     results are stored as null with resultTruncated), and the callee's
 *     onSuccess queue, if any, a message {invocationId, function, status,
 *     attempts, event, result};
 *   failed (raised, timeout, memory, bad result, not found, init failed)
 *     with attempts left (the callee's `retries`, default 2): attempt + 1
 *     waits in the delayed set for 1 s, then 2 s, 4 s ... (at most 60 s);
 *   failed with none left: the status gets the error, and the onFailure
 *     queue a message {invocationId, function, status, attempts, error,
 *     event}; a full destination is recorded in the status
 *     (destinationError), not retried;
 *   throttled (the callee at its concurrency): requeued after 1 s, the
 *     attempt not counted.
 * A worker that dies mid-invocation leaves the entry pending: every second
 * each consumer claims (XPENDING + XCLAIM) entries idle for longer than the
 * longest timeout of the loaded functions plus 10 s, and runs them again as
 * the next attempt (deliveries count as attempts), or fails them when none
 * is left. Redis unreachable: reads and claims back off and resume. */
#ifndef CR_ASYNC_H
#define CR_ASYNC_H

#include <stddef.h>

#include "fncall.h"
#include "redis.h"
#include "registry.h"

typedef struct uv_loop_s uv_loop_t;
typedef struct cr_async_s cr_async_t;
typedef struct cr_async_send_s cr_async_send_t;

#define CR_ASYNC_QUEUE "crescent.async"
/* Bytes of an asynchronous invocation's event (a queue message's limit, and Lambda's). */
#define CR_ASYNC_MAX_EVENT (256u * 1024)

typedef struct {
  const char *prefix;    /* the key prefix ("cr:"), copied */
  int worker;            /* the consumer is "w<worker>" */
  double retention;      /* seconds a status record is kept (default 86400) */
  long queue_max_depth;  /* the queues' depth bound (--queue-max-depth) */
  int concurrency;       /* invocations in flight in this worker (default 16) */
} cr_async_opts_t;

/* On redis (not owned; NULL: sends fail with "redis unavailable", nothing
 * is consumed), calls through fc, functions from reg. NULL when out of memory. */
cr_async_t *cr_async_new(uv_loop_t *loop, cr_redis_t *redis, cr_fncalls_t *fc, cr_registry_t *reg,
                         const cr_async_opts_t *opts);
/* Starts consuming. */
void cr_async_start(cr_async_t *a);
/* Stops reading, and forgets the Redis connection (before it is freed):
 * invocations still running end without acknowledging (their entries are
 * claimed again later). The loop must run once more. */
void cr_async_stop(cr_async_t *a);
/* After cr_async_stop, the fncalls' end and a loop run. */
void cr_async_free(cr_async_t *a);

/* The send's end: err NULL and the invocation id, or err ("queue full",
 * "redis unavailable", "function not found", ...). Never called from
 * inside cr_async_send. */
typedef void (*cr_async_sent_cb)(void *data, const char *err, const char *id);
/* Queues an invocation of the function named name with the event's JSON
 * text (elen 0: nil), after delay seconds (0-900), with the caller's
 * request id parent (NULL: none). NULL when out of memory. */
cr_async_send_t *cr_async_send(cr_async_t *a, const char *name, size_t nlen, const char *event, size_t elen,
                               double delay, const char *parent, const char *trace, cr_async_sent_cb cb,
                               void *data);
/* The caller is gone: cb will not be called (the send itself goes on). */
void cr_async_send_cancel(cr_async_send_t *s);

/* The status record of invocation id (len bytes) as JSON: {invocationId,
 * function, status, attempts, createdAt, startedAt, endedAt (ms since the
 * epoch), result (the JSON value) or error, parentRequestId,
 * destinationError}, fields absent when not set. cb gets 200 and the text,
 * 404 (no such record: never was, or expired), or 503 and a message; it
 * comes later, when this returns 0. Otherwise returns 404 (not an id) or 503
 * (Redis unavailable) at once, and cb does not come. */
typedef void (*cr_async_status_cb)(void *data, int status, const char *text, size_t len);
int cr_async_status(cr_async_t *a, const char *id, size_t len, cr_async_status_cb cb, void *data);

#endif
