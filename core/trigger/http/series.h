/* series.h - the last hour of every function's meters, for the dashboard's charts.
 *
 * Shared memory holds only totals since the start (shm.h). To draw "over the
 * last hour", worker 0 of each node samples them every --series-interval
 * (10 s) and appends what changed since its previous sample to a Redis
 * stream per function, PREFIX series:NAME, one entry per node and interval:
 *
 *   n node  i invocations  e errors  o timeouts  t throttles  c cold starts
 *   d duration ns (sum)  m MB x ms (sum)  h the latency histogram's deltas "a,b,..."
 *
 * Entries are written only for a function that moved, and each XADD trims
 * the stream by age (MINID ~ now - 1 h) and sets the key to expire an hour
 * after its last write. So Redis holds at most 3600/interval entries per
 * function and node (360, ~100 bytes each), only for functions used in the
 * last hour, and a removed function's key goes away by itself. Redis, not a
 * ring in shared memory: one node's ring would not see the others, and a
 * ring per slot would cost its memory for all 4096 slots on every node.
 *
 * GET /_/api/series?function=NAME[&minutes=M] (M 1..60, default 60) reads
 * the stream back and sums it, across nodes, into one point per interval:
 *   {"function":NAME,"step":ms,"start":ms,"t":[ms...],"invocations":[...],
 *    "errors":[...],"timeouts":[...],"throttles":[...],"coldStarts":[...],
 *    "warmStarts":[...],"durationMsAvg":[...],"p50Ms":[...|null],"p99Ms":[...],
 *    "gbSeconds":[...]}
 * (arrays of equal length, oldest first, zeros where nothing ran; p50/p99
 * null where nothing ran). 404 for an unknown function, 503 without Redis. */
#ifndef CR_SERIES_H
#define CR_SERIES_H

#include <stdint.h>
#include <uv.h>

#include "http.h"
#include "redis.h"
#include "registry.h"
#include "shm.h"

typedef struct cr_series_s cr_series_t;

typedef struct {
  const char *prefix;   /* the Redis key prefix ("cr:") */
  double interval;      /* seconds between samples (clamped to 1..60) */
  const char *node;     /* this node's name in the entries (hostname/pid) */
} cr_series_opts_t;

/* The sampler (worker 0's): takes the totals as they are now as its
 * baseline and samples every interval. NULL on out of memory. */
cr_series_t *cr_series_new(uv_loop_t *loop, cr_redis_t *redis, const cr_registry_t *registry, cr_shm_t *shm,
                           const cr_series_opts_t *opts);
/* Takes one sample now (what the timer does). */
void cr_series_sample(cr_series_t *s);
void cr_series_stop(cr_series_t *s);
/* After stop, once the loop has run. */
void cr_series_free(cr_series_t *s);

/* GET /_/api/series: answers req (any worker; redis may be NULL: 503). */
void cr_series_handle(cr_redis_t *redis, const char *prefix, double interval, const cr_registry_t *registry,
                      cr_http_req_t *req);

/* The q-quantile (0..1) of a histogram with cr_shm_hist_bounds_ms buckets,
 * interpolated linearly inside its bucket (as Prometheus' histogram_quantile;
 * the last bucket answers its lower bound). -1 for an empty histogram. */
double cr_series_quantile(const uint64_t *hist, double q);

#endif
