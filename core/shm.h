/* shm.h - the shared memory region: counters every process can read.
 *
 * One anonymous MAP_SHARED mapping, made by the master before it forks, so
 * every worker sees the same pages. It holds a slot per worker (its pid,
 * counters, and "busy since / deadline" of the invocation it is running, which
 * the master's supervisor watches) and a slot per function (counters, the
 * latency histogram, and the concurrency counter shared by all workers).
 *
 * Fields are C11 atomics: each is written lock-free; a reader may see one
 * counter a moment ahead of another, never a torn value. Nothing here locks. */
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

typedef struct {
  _Atomic int pid;
  _Atomic uint64_t started_ms;
  _Atomic uint64_t requests;
  _Atomic uint64_t connections;
  _Atomic uint64_t restarts;
  /* The invocation running now: 0 when idle (monotonic ns). */
  _Atomic uint64_t busy_since_ns;
  _Atomic uint64_t deadline_ns;
  _Atomic int busy_fn;
} cr_shm_worker_t;

typedef struct {
  _Atomic uint64_t invocations;
  _Atomic uint64_t errors;
  _Atomic uint64_t timeouts;
  _Atomic uint64_t throttles;
  _Atomic uint64_t cold_starts;
  _Atomic uint64_t duration_ns;   /* sum, in ns (sub-microsecond invocations add up) */
  _Atomic uint64_t billed_ms;     /* sum */
  _Atomic uint64_t mb_ms;         /* memory size x billed duration, for GB-seconds */
  _Atomic uint64_t hist[CR_SHM_HIST_BUCKETS];
  _Atomic int64_t active;         /* instances busy across all workers: the concurrency counter */
  _Atomic int64_t instances;      /* instances alive across all workers */
} cr_shm_fn_t;

typedef struct cr_shm_s {
  uint64_t magic;
  int nworkers;
  cr_shm_worker_t workers[CR_SHM_MAX_WORKERS];
  cr_shm_fn_t fns[CR_SHM_MAX_FUNCTIONS];
} cr_shm_t;

/* A function's counters, or NULL without shared memory or for a slot out of range. */
static inline cr_shm_fn_t *cr_shm_fn(cr_shm_t *shm, int slot) {
  return shm && slot >= 0 && slot < CR_SHM_MAX_FUNCTIONS ? &shm->fns[slot] : NULL;
}

/* Maps the region (zeroed). Returns NULL on failure. */
cr_shm_t *cr_shm_create(int nworkers);
void cr_shm_destroy(cr_shm_t *shm);

/* Adds one observation of ms to fn's histogram. */
void cr_shm_observe(cr_shm_fn_t *fn, double ms);

#endif
