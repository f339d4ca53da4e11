/* shm.h - the shared memory region: counters every process can read.
 *
 * One anonymous MAP_SHARED mapping, made by the master before it forks, so
 * every worker sees the same pages. It holds a slot per worker (its pid,
 * counters, and "busy since / deadline" of the invocation it is running, which
 * the master's supervisor watches), a slot per function (counters and the
 * latency histogram), and per function what each worker holds of it: its
 * concurrency places and its instances alive.
 *
 * Fields are C11 atomics: each is written lock-free; a reader may see one
 * counter a moment ahead of another, never a torn value.
 *
 * The rule for state a worker holds (issue 10, item 3): a worker can die at
 * any instruction (SIGKILL, the master's kill of a worker stuck in C, a
 * crash), so nothing it holds may live in a shared total that only it would
 * give back. What a worker holds is kept in its own per-worker cells (only it
 * writes them while it lives), totals are sums over the workers' cells, and
 * the master, when it reaps a worker, takes everything back with
 * cr_shm_reclaim() before a new worker gets the same index, which so starts at
 * zero. Counters that only grow (invocations, errors, ...) are not held and
 * are not reclaimed. A new field of that kind must follow the same rule.
 *
 * Concurrency places: cr_shm_take() holds the function's admission lock
 * (0, or 1 + the index of the worker holding it) for a few instructions: it
 * adds up the places held by every worker and takes one in its own cell if
 * the total is under the limit. Giving a place back is one store in the
 * worker's cell, without the lock. The lock word names its holder, so a worker
 * that dies holding it is known and the master frees the lock; a worker that
 * finds the lock held for longer than LOCK_WAIT (the holder preempted, or dead
 * and not reaped yet) answers "at the limit" instead of spinning on.
 *
 * A stream trigger's places (its `concurrency`, across workers: cr_shm_trig_take)
 * work the same way, in the trigger's cr_shm_trig_held_t: a lock naming its
 * holder and a cell per worker, taken back by cr_shm_reclaim. */
#ifndef CR_SHM_H
#define CR_SHM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define CR_SHM_MAX_WORKERS 256
#define CR_SHM_MAX_FUNCTIONS 4096
/* Latency histogram bucket upper bounds, in ms (the last one is +Inf). */
#define CR_SHM_HIST_BUCKETS 14
extern const double cr_shm_hist_bounds_ms[CR_SHM_HIST_BUCKETS];
/* Memory one invocation used: bucket upper bounds in bytes (the last one is +Inf). */
#define CR_SHM_MEM_BUCKETS 9
extern const double cr_shm_mem_bounds[CR_SHM_MEM_BUCKETS];
/* Stream triggers metered per function (more are consumed, not metered), and
 * the room for one's label, "queue:NAME" (names are at most 128 bytes). */
#define CR_SHM_TRIGGERS 8
#define CR_SHM_TRIGGER_LABEL 144

typedef struct {
  _Atomic int pid;
  _Atomic uint64_t started_ms;
  _Atomic uint64_t serving_ms;   /* its listener is accepting (0 until then; reset at each spawn) */
  _Atomic uint64_t requests;
  _Atomic uint64_t connections;
  _Atomic uint64_t restarts;
  /* The invocation running now: 0 when idle (monotonic ns). */
  _Atomic uint64_t busy_since_ns;
  _Atomic uint64_t deadline_ns;
  _Atomic int busy_fn;
  /* usage.h's flushes to Redis: acknowledged, failed (sent again), and the calls that could
   * not be recorded (the accumulator full, or still unsent when the worker stopped) */
  _Atomic uint64_t usage_flushes, usage_flush_errors, usage_dropped;
  /* its Redis connection (redis.h): commands answered (latency histogram, ms bounds as the
   * functions' and the sum in ns), failed as unavailable, timed out, or answered an error */
  _Atomic uint64_t redis_hist[CR_SHM_HIST_BUCKETS], redis_ns;
  _Atomic uint64_t redis_unavailable, redis_timeouts, redis_error_replies;
  /* HTTP: connections open now (a gauge it stores; 0 once reclaimed), responses by status
   * class (1xx .. 5xx) */
  _Atomic int64_t conns_open;
  _Atomic uint64_t responses[5];
  /* Log lines Redis took (logstore.h), and those it did not: stdout has them. */
  _Atomic uint64_t log_stored, log_dropped;
} cr_shm_worker_t;

typedef struct {
  _Atomic uint64_t invocations;
  _Atomic uint64_t errors;        /* failed: raised, timed out, out of memory, init failed, or answered 5xx */
  _Atomic uint64_t client_errors; /* failed on a bad request (the trigger answered a raised error with a 4xx) */
  _Atomic uint64_t timeouts;
  _Atomic uint64_t throttles;
  _Atomic uint64_t cold_starts;
  _Atomic uint64_t duration_ns;   /* sum, in ns (sub-microsecond invocations add up) */
  _Atomic uint64_t billed_ms;     /* sum */
  _Atomic uint64_t mb_ms;         /* memory size x billed duration, for GB-seconds */
  _Atomic uint64_t hist[CR_SHM_HIST_BUCKETS];
  /* outbound HTTP (crescent.http): requests made, of them failed, bytes on the wire, time waited */
  _Atomic uint64_t http_requests, http_errors, http_bytes_in, http_bytes_out, http_ns;
  _Atomic uint64_t rate_limited;  /* requests refused by the function's rateLimit (never invoked) */
  _Atomic uint64_t cache_hits, cache_misses; /* answers of a function with cache: from the cache or not */
  _Atomic uint64_t auth_unavailable; /* refused with 503: its auth could not be checked (Redis down, API keys) */
  _Atomic uint64_t cache_epoch;   /* bumped by a purge: older cache entries (every worker's) miss */
  /* cache = { shared = true }: Redis lookups after a local miss that answered (a hit), found
   * nothing usable (absent, purged, stale), or failed (Redis down, slow, an error) */
  _Atomic uint64_t cache_shared_hits, cache_shared_misses, cache_shared_errors;
  /* auth = { authorizer = ... } on this function's routes: the authorizer calls made, requests
   * decided without a call of their own (a decision kept, or one in flight), denied (403), and
   * refused because the authorizer failed (503) */
  _Atomic uint64_t authz_calls, authz_hits, authz_denied, authz_failed;
  /* Of hist and duration_ns, the cold starts' part (warm: the rest); the inits of the cold
   * starts (histogram, sum ns); memory used per invocation (histogram, sum bytes) */
  _Atomic uint64_t hist_cold[CR_SHM_HIST_BUCKETS], duration_cold_ns;
  _Atomic uint64_t init_hist[CR_SHM_HIST_BUCKETS], init_ns;
  _Atomic uint64_t mem_hist[CR_SHM_MEM_BUCKETS], mem_sum;
} cr_shm_fn_t;

/* Per-path cache purges (ctx.cache.purge, DELETE /_/api/cache?path=): a direct-mapped table of
 * purge times (monotonic ns) by the hash of (function slot, path). An entry of a path whose cell
 * holds a time at or after the entry was begun misses. Two paths in one cell share its latest
 * time: a collision only costs an extra miss, never a stale answer. Times only grow (a purge
 * stores the larger), are not held by a worker, and are never reclaimed. */
#define CR_SHM_CACHE_PURGES 16384

/* One stream trigger of a function (a queue, a bucket's events, a
 * namespace's changes), named by its label. Its counters only grow (shared,
 * not held: nothing to reclaim). lag and oldest_age_ms are gauges, not held
 * either, as the last worker to ask Redis saw them (lag_ms: when; 0 never):
 * the records of the stream its group has not been given yet, and how long
 * ago the oldest record the group still needs (pending, or else the first
 * undelivered one) entered the stream, 0 when it needs none (q_claim.lua). */
typedef struct {
  _Atomic uint32_t state; /* 0 free, 1 being labelled, 2 labelled: label is fixed from then on */
  char label[CR_SHM_TRIGGER_LABEL];
  _Atomic uint64_t invocations;   /* batches the handler was called with (or whose init failed) */
  _Atomic uint64_t errors;        /* of those, raised, timed out, out of memory or init failed */
  _Atomic uint64_t records;       /* handed to the function (in a batch), redeliveries included */
  _Atomic uint64_t redelivered;   /* of those, with receiveCount > 1 */
  _Atomic uint64_t acked;         /* acknowledged after a call that ran (not marked failed) */
  _Atomic uint64_t dead_lettered; /* moved to the dead-letter queue after maxReceives */
  _Atomic int64_t lag;           /* -1: Redis could not tell */
  _Atomic int64_t oldest_age_ms;
  _Atomic uint64_t lag_ms;
  /* A schedule's (labelled "cron:EXPR", core/trigger/cron): ticks this
   * platform ran, skipped (overlap = false), missed (Redis unreachable, or
   * the loop too busy), runs that failed; the next tick (ms, as the last
   * worker to compute it saw it) and the last run: its tick, when it ended,
   * whether it failed. */
  _Atomic uint64_t cron_fired, cron_skipped, cron_missed, cron_errors;
  _Atomic uint64_t cron_next_ms, cron_last_tick_ms, cron_last_end_ms;
  _Atomic uint32_t cron_last_failed;
  /* gauges as lag: records delivered and not yet acknowledged, and in the dead-letter queue */
  _Atomic int64_t pending, dlq_depth;
} cr_shm_trig_t;

/* What the workers hold of one function: each worker writes only its own
 * cells (the master writes a dead worker's). The lock and the first workers'
 * places share a cache line: taking a place reads one line for up to 15
 * workers. */
typedef struct {
  _Atomic uint32_t lock;                      /* 0, or 1 + the worker taking a place now */
  _Atomic int32_t places[CR_SHM_MAX_WORKERS]; /* concurrency places held (invocations admitted) */
  _Atomic int32_t instances[CR_SHM_MAX_WORKERS]; /* instances alive */
} __attribute__((aligned(64))) cr_shm_held_t;

/* What the workers hold of one stream trigger: its places (a batch being
 * read or filled, or invoked, holds one), each worker in its own cell (at
 * most CR_MAX_TRIGGER_CONCURRENCY, 1000: 16 bits), as cr_shm_held_t. */
typedef struct {
  _Atomic uint32_t lock; /* 0, or 1 + the worker taking a place now */
  _Atomic uint16_t places[CR_SHM_MAX_WORKERS];
} __attribute__((aligned(64))) cr_shm_trig_held_t;

typedef struct cr_shm_s {
  uint64_t magic;
  int nworkers;
  cr_shm_worker_t workers[CR_SHM_MAX_WORKERS];
  cr_shm_fn_t fns[CR_SHM_MAX_FUNCTIONS];
  cr_shm_held_t held[CR_SHM_MAX_FUNCTIONS];
  cr_shm_trig_t trig[CR_SHM_MAX_FUNCTIONS][CR_SHM_TRIGGERS];
  cr_shm_trig_held_t trig_held[CR_SHM_MAX_FUNCTIONS][CR_SHM_TRIGGERS]; /* trig's, entry for entry */
  _Atomic uint64_t cache_purged[CR_SHM_CACHE_PURGES]; /* see CR_SHM_CACHE_PURGES */
  /* the master's reloads: rounds finished, versions published, validations failed */
  _Atomic uint64_t reloads, fn_loads, load_errors;
} cr_shm_t;

/* A function's counters, or NULL without shared memory or for a slot out of range. */
static inline cr_shm_fn_t *cr_shm_fn(cr_shm_t *shm, int slot) {
  return shm && slot >= 0 && slot < CR_SHM_MAX_FUNCTIONS ? &shm->fns[slot] : NULL;
}

/* Records a purge of function slot's cached answers of path (len bytes) at now_ns (monotonic,
 * cr_clock_ns()): entries begun at or before it miss from now on, in every worker. (Nanoseconds: a
 * request right after a purge must not fall in its millisecond and miss again and again.) */
void cr_shm_cache_purge(cr_shm_t *shm, int slot, const char *path, size_t len, uint64_t now_ns);
/* The latest purge time recorded in path's cell (0: none). */
uint64_t cr_shm_cache_purged(cr_shm_t *shm, int slot, const char *path, size_t len);

/* Maps the region (zeroed). Returns NULL on failure. */
cr_shm_t *cr_shm_create(int nworkers);
void cr_shm_destroy(cr_shm_t *shm);

/* The histogram bucket a duration of ms falls in (0 .. CR_SHM_HIST_BUCKETS-1). */
int cr_shm_hist_bucket(double ms);
/* The memory histogram bucket of bytes (0 .. CR_SHM_MEM_BUCKETS-1). */
int cr_shm_mem_bucket(double bytes);

/* Takes one of function slot's `limit` concurrency places for worker: 0, or
 * CR_ELIMIT when the workers hold `limit` already (or the admission lock
 * stayed taken, see above). CR_EINVAL for a slot or worker out of range. */
int cr_shm_take(cr_shm_t *shm, int slot, int worker, int limit);
/* Gives back a place worker took. */
void cr_shm_give(cr_shm_t *shm, int slot, int worker);
/* Counts worker's instances of slot up or down by delta. */
void cr_shm_instances_add(cr_shm_t *shm, int slot, int worker, int delta);
/* Places held across the workers (the function's running invocations). */
int64_t cr_shm_busy(cr_shm_t *shm, int slot);
/* Instances alive across the workers. */
int64_t cr_shm_instances(cr_shm_t *shm, int slot);

/* Function slot's meters of the trigger labelled label: found, or taken in
 * the first free entry. NULL without shared memory, for a slot out of range,
 * a label too long, or when the function's CR_SHM_TRIGGERS entries are
 * taken. Every worker looks a label up in the same order, waiting for an
 * entry being labelled by another, so a label gets one entry. Entries are
 * never freed: a trigger removed keeps its counts until the restart, as a
 * removed function keeps its own. */
cr_shm_trig_t *cr_shm_trig(cr_shm_t *shm, int slot, const char *label);
/* Function slot's labelled trigger entries (the first n used), for readers. */
int cr_shm_trigs(cr_shm_t *shm, int slot, cr_shm_trig_t **out, int max);

/* Takes one of trigger t's `limit` places (t from cr_shm_trig) for worker,
 * as cr_shm_take does for a function: 0, or CR_ELIMIT when the workers hold
 * `limit` already (or the lock stayed taken); CR_EINVAL for a t or worker
 * out of range. */
int cr_shm_trig_take(cr_shm_t *shm, cr_shm_trig_t *t, int worker, int limit);
/* Gives back a place of t worker took. */
void cr_shm_trig_give(cr_shm_t *shm, cr_shm_trig_t *t, int worker);
/* Places of t held across the workers. */
int64_t cr_shm_trig_busy(cr_shm_t *shm, cr_shm_trig_t *t);

typedef struct {
  int places;         /* concurrency places given back */
  int instances;      /* instances counted no more */
  int lock;           /* it died holding an admission lock (a function's or a trigger's) */
  int trigger_places; /* stream trigger places given back */
} cr_shm_reclaimed_t;

/* The master, once worker has exited (reaped) and before another takes its
 * index: gives back everything it held in the first nslots functions (their
 * concurrency places, instances and stream trigger places), frees an
 * admission lock it held and clears its busy slot. out may be NULL. */
void cr_shm_reclaim(cr_shm_t *shm, int worker, int nslots, cr_shm_reclaimed_t *out);

#endif
