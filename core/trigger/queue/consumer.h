/* consumer.h - the stream triggers: functions run on the messages of a
 * queue, or on the change records of a storage bucket or a KV namespace.
 *
 * Storage and kv triggers work as described below for queues, on the
 * bucket's events stream ("{st:BUCKET}:events") or the namespace's changes
 * ("{kv:NS}:changes"), with these differences: their group is made at the
 * stream's end ($: a new trigger sees writes from then on); records the
 * trigger's filter leaves out (batch.h's source) are acknowledged at once,
 * without a call; the report's trigger is "storage" or "kv" (fields bucket
 * or namespace, batch, failed); dead letters go to the queue
 * "storage.BUCKET.dlq" or "kv.NS.dlq" as JSON messages (q_claim's wrap),
 * naming their group; redriven (q_redrive.lua) they come back into the
 * stream with a "group" field, and every other group's consumer leaves them
 * out (batch.h's source group).
 * A kv consumer sets "{kv:NS}:watched" before making its group, so that
 * kv_put and kv_incr put the new value in their records.
 *
 * For each function whose current version declares { queue = NAME, ... }, a
 * worker consumes the queue's stream (prefix "{q:NAME}:s", crescent.queue's
 * key) through one consumer group per (function, queue), named after the
 * function, as consumer "w<worker id>". The group is made at the start of
 * the stream (XGROUP CREATE ... 0 MKSTREAM): a backlog sent before the
 * function existed is consumed. A new version of the function takes over the
 * same group; a removed function or trigger stops reading (its messages stay).
 *
 * Reading never blocks the loop, nor the worker's Redis connection: a
 * non-blocking XREADGROUP ... COUNT n STREAMS key > is polled on the worker's
 * own pipelined connection every POLL_MS while a queue is idle, and sent
 * again at once after a full read. (A BLOCK read on that connection would
 * hold every invocation's replies behind it: Redis answers a connection in
 * order.) The records read fill a batch of at most `batch`; it is invoked
 * once full, or `window` seconds after its first record arrived (0: at once
 * with what one read gave). At most `concurrency` batches of a trigger are
 * being read or filled or in flight, across all the workers (places in the
 * trigger's shared-memory entry, shm.h; a dead worker's are taken back by
 * the master), and a worker without a place reads nothing, so records do
 * not wait outside an invocation; the function's own concurrency applies
 * too (the dispatcher's).
 *
 * Each batch is one call through the dispatcher (trigger "queue", report
 * fields queue, batch and failed); the event and result are batch.h's. When
 * it ends: OK acknowledges (XACK) every record but those the result lists as
 * failed; an error, timeout or memory error acknowledges none, nor does a
 * call that was refused (throttled, not loaded...). Status 200 when it ran
 * to its end, 500 otherwise, for the meters.
 *
 * Redelivery: every visibility/4 (50 ms to 1 s) the q_claim script claims
 * (XAUTOCLAIM) records of the group idle for over `visibility` seconds, from
 * any consumer (a worker that died included), and hands them out again with
 * their delivery count as receiveCount; one claimed past `maxReceives`
 * deliveries is moved to the queue "NAME.dlq" (an ordinary queue) and
 * acknowledged, atomically, with firstReceive, lastReceive and lastError
 * from the consumer's bookkeeping of its failed deliveries (the hash
 * "<stream>:dl:<function>", written with each failed batch's ack).
 * Delivery is at least once.
 *
 * Meters, per (function, trigger labelled "queue:NAME", "storage:BUCKET" or
 * "kv:NAMESPACE"), in shared memory: batches invoked and of those failed
 * (raised, timed out, out of memory, init failed), records handed to the
 * function, redelivered (receiveCount > 1), acknowledged after a call,
 * dead-lettered, and as of the last claim round the group's lag and the age
 * of the oldest record it still needs (q_claim.lua). Records the filter
 * leaves out are not counted. */
#ifndef CR_CONSUMER_H
#define CR_CONSUMER_H

#include "dispatch.h"
#include "redis.h"
#include "registry.h"
#include "shm.h"

typedef struct uv_loop_s uv_loop_t;
typedef struct cr_consumers_s cr_consumers_t;

typedef struct {
  const char *prefix; /* the key prefix, "cr:" (copied) */
  int worker;         /* the consumer's name is "w<worker>" */
  cr_shm_t *shm;      /* the per-trigger meters (shm.h's cr_shm_trig_t); NULL: none */
} cr_consumers_opts_t;

/* The queue consumers of one worker loop: reads on redis (not owned; NULL:
 * nothing is consumed), calls through d, functions from reg. Follows no
 * function until told (cr_consumers_follow_all). NULL when out of memory. */
cr_consumers_t *cr_consumers_new(uv_loop_t *loop, cr_redis_t *redis, cr_dispatch_t *d, cr_registry_t *reg,
                                 const cr_consumers_opts_t *opts);
/* Makes fn's consumers match its current version's queue triggers (none
 * once it is removed or has no version): call after every registry change
 * about fn. */
void cr_consumers_follow(cr_consumers_t *c, cr_fn_t *fn);
/* The same for every function of the registry. */
void cr_consumers_follow_all(cr_consumers_t *c);
/* Stops reading and forgets the Redis connection (before it is freed):
 * batches still running acknowledge nothing from now on, their records are
 * handed out again after their visibility. The loop must run once more. */
void cr_consumers_stop(cr_consumers_t *c);
/* After cr_consumers_stop, the dispatcher's and the Redis connection's end
 * (no call nor reply of ours can come any more), and a loop run. */
void cr_consumers_free(cr_consumers_t *c);

#endif
