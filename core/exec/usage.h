/* usage.h - usage that persists: what a worker metered, flushed to Redis per function and
 * UTC hour, summed there across workers and nodes (README "Usage and cost").
 *
 * Every invocation the meter reports (meter.c) is added here too, into the worker's
 * accumulator, by (function, hour of its end). About once a second the accumulator becomes a
 * batch, sent with usage_add.lua (asynchronously: the loop never waits for Redis). Each hour
 * of a function is one hash, PREFIX usage:h:HOUR:FUNCTION (HOUR: hours since the epoch):
 *   inv:TRIGGER:STATUS  invocations that ran, by trigger ("http", "queue", ...) and status
 *                       (ok, error, client_error, timeout, memory, init_error)
 *   throttles:TRIGGER   calls refused at the concurrency limit (not invocations)
 *   cold                cold starts
 *   dur_us              duration sum, microseconds (rounded per invocation)
 *   h0 .. h13           the duration histogram (shm.h's cr_shm_hist_bounds_ms)
 *   billed_ms           billed duration sum (ms); mb_ms: memory size x billed ms
 *   mem_max             the largest memory one invocation used (bytes); memory: the largest
 *                       memory setting (MB) it ran with
 *   out                 outbound requests (crescent.http)
 * plus the index PREFIX usage:idx (a zset of "HOUR|FUNCTION" by HOUR), both trimmed to the
 * retention.
 *
 * Exactly once, or counted lost. A batch carries this worker's writer id (random, new per
 * process) and a sequence number; the script applies a batch only if its number is above the
 * last one applied for the writer, so a batch whose reply was lost (a timeout, a dropped
 * connection) is sent again as it was and never counted twice. Only one batch is in flight;
 * new invocations gather in the accumulator meanwhile. A batch that failed is kept and sent
 * again at the next tick, for as long as it takes. The accumulator is bounded (MAX_ENTRIES
 * (function, hour) pairs, and as many (trigger, status) pairs per entry): what does not fit
 * is counted in shm's usage_dropped, as are the invocations of a batch still unsent when the
 * worker stops (it tries once more while it drains, cr_usage_final). */
#ifndef CR_USAGE_H
#define CR_USAGE_H

#include <stdint.h>

#include "redis.h"
#include "shm.h"

typedef struct cr_usage_s cr_usage_t;

typedef struct {
  const char *prefix;   /* Redis key prefix (--redis-prefix) */
  double retention;     /* seconds an hour is kept (--usage-retention) */
  int script;           /* usage_add's index among the connection's scripts */
  cr_shm_worker_t *slot;/* this worker's counters: flushes, failures, dropped (may be NULL) */
  double interval;      /* seconds between flushes (1) */
} cr_usage_opts_t;

/* NULL when out of memory. redis must outlive it. */
cr_usage_t *cr_usage_new(uv_loop_t *loop, cr_redis_t *redis, const cr_usage_opts_t *o);
/* Stops the timer, counts what was never sent as dropped, frees (after the loop ran). */
void cr_usage_free(cr_usage_t *u);

typedef struct {
  const char *fn;       /* the function's name */
  const char *trigger;  /* "http", "queue", ... */
  const char *status;   /* see above */
  int cold;
  int memory_mb;        /* its memory setting */
  uint64_t dur_ns, billed_ms, mem_peak, outbound;
  uint64_t wall_ms;     /* when it ended (its hour) */
} cr_usage_inv_t;

void cr_usage_add(cr_usage_t *u, const cr_usage_inv_t *inv);
/* A call refused at fn's concurrency limit. */
void cr_usage_throttled(cr_usage_t *u, const char *fn, const char *trigger, uint64_t wall_ms);

/* The worker is stopping: sends what is left (after the batch in flight, if any) and calls
 * done(data) once Redis answered, or failed, or after at most 3 s. */
void cr_usage_final(cr_usage_t *u, void (*done)(void *data), void *data);

#endif
