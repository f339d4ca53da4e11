/* logstore.h - log lines kept in Redis, to search and to follow (README
 * "Operating crescent").
 *
 * Every line a worker writes (function logs, report lines, the platform's
 * own, the access log) also goes to a Redis stream: one per function,
 * "<prefix>logs:fn:<name>", and one for the platform, "<prefix>logs:platform";
 * the set "<prefix>logs:streams" names them. Each stream is capped at maxlen
 * entries (XADD MAXLEN ~) and trimmed to max_age (XTRIM MINID ~), and
 * expires max_age after its last line. An entry holds l (level 0..3), r
 * (request id), t (trace id) and d (the JSON line as stdout has it).
 *
 * Logging never waits on Redis: cr_logstore_sink copies the line into the
 * worker's batch; a timer sends the batch every FLUSH_MS (one EVALSHA of
 * log_add.lua), at most one batch in flight. What waits is bounded by
 * max_pending bytes: past it, and for a line over 16 KB, and for a batch
 * Redis did not take (down, timeout, an error), lines are dropped from Redis
 * only (stdout has them all), counted (the worker's log_dropped in shared
 * memory) and said in a warning at most every 10 s. A function cannot flood
 * Redis past its stream's cap (maxlen lines of at most 16 KB) nor hold worker
 * memory past the bound.
 *
 * Queries (cr_logstore_query, log_query.lua) read the streams newest first
 * with filters and a cursor, or oldest first after a cursor (a tail). */
#ifndef CR_LOGSTORE_H
#define CR_LOGSTORE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "redis.h"

typedef struct cr_logstore_s cr_logstore_t;

typedef struct {
  const char *prefix;       /* of every key (copied) */
  long maxlen;              /* entries kept per stream */
  double max_age;           /* seconds a line is kept (0: no age limit) */
  size_t max_pending;       /* bytes of lines waiting for Redis */
  int add_script, query_script; /* log_add's and log_query's index in the scripts */
  _Atomic uint64_t *stored, *dropped; /* the worker's counters (shared memory), may be NULL */
} cr_logstore_opts_t;

/* NULL when out of memory. redis may be NULL (every line is dropped and counted). */
cr_logstore_t *cr_logstore_new(uv_loop_t *loop, cr_redis_t *redis, const cr_logstore_opts_t *opts);
/* Sends what waits (if Redis is up), stops the timer; frees once the loop ran. */
void cr_logstore_free(cr_logstore_t *s);
/* A log.h sink: data is the store. */
void cr_logstore_sink(void *data, const cr_log_meta_t *meta, const char *line, size_t len);

/* A query. function: a function's name, "@platform", or NULL for every
 * stream. asc: a tail (oldest first, after the cursor; without one, no
 * lines, only the cursor of now). Times are ms since the epoch (0: none). */
typedef struct {
  const char *function;
  int asc;
  long long since_ms, until_ms;
  int level;                /* lines at this level or above */
  const char *reqid, *text, *trace; /* NULL or "": any */
  int limit;                /* 1..1000 */
  const char *cursor;       /* a row's cursor text from an earlier page, or NULL */
} cr_logq_t;

typedef struct {
  const char *stream;       /* the function's name, or "@platform" */
  size_t stream_len;
  const char *id;           /* the entry id */
  size_t id_len;
  const char *line;         /* the JSON line */
  size_t line_len;
} cr_logrow_t;

typedef struct {
  int nrows;
  const cr_logrow_t *rows;
  int more;                 /* a next page has lines */
  char cursor[512];         /* where the next page starts ("" none) */
} cr_logq_result_t;

/* r and err (NULL on success) are valid during the call only. */
typedef void (*cr_logq_cb)(void *data, const cr_logq_result_t *r, const char *err);

/* Is the cursor text well-formed ("<ms>-<seq>:<stream>")? */
int cr_logstore_cursor_valid(const char *cursor);
/* Runs q; NULL when Redis is not connected (cb will not come), else a request to cancel. */
cr_redis_req_t *cr_logstore_query(cr_logstore_t *s, const cr_logq_t *q, cr_logq_cb cb, void *data);

#endif
