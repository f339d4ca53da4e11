/* log.h - structured logs: one JSON object per line on stdout.
 *
 * Every line has time, level, msg, and, when known, requestId, function and
 * worker. Workers buffer lines and flush once per loop iteration (never a
 * syscall per request); the master and command-line tools write at once.
 * Flushes split at line boundaries in pieces of at most PIPE_BUF bytes, so
 * lines from the master and its workers never interleave on a shared pipe. */
#ifndef CR_LOG_H
#define CR_LOG_H

#include <stddef.h>

#include "buf.h"

typedef enum { CR_LOG_DEBUG = 0, CR_LOG_INFO, CR_LOG_WARN, CR_LOG_ERROR } cr_log_level_t;

/* worker: the worker id in every line, or -1 for the master. buffered: keep
 * lines until cr_log_flush(). */
void cr_log_setup(int worker, int buffered);
void cr_log_set_level(cr_log_level_t level);
int cr_log_level_parse(const char *name, cr_log_level_t *out);
int cr_log_enabled(cr_log_level_t level);

/* A plain line: msg formatted with printf. fn and reqid may be NULL. */
void cr_log(cr_log_level_t level, const char *fn, const char *reqid, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A line with fields: cr_log_begin() writes the common fields and returns the
 * buffer to add more with the cr_log_* helpers; cr_log_end() closes the line.
 * Returns NULL when the level is filtered out. */
cr_buf_t *cr_log_begin(cr_log_level_t level, const char *msg, size_t msglen, const char *fn,
                       const char *reqid);
/* The same whatever the level: for the few lines a user or a script must
 * always see (the server's "listening" line). */
cr_buf_t *cr_log_begin_always(cr_log_level_t level, const char *msg, size_t msglen, const char *fn,
                              const char *reqid);
void cr_log_str(cr_buf_t *b, const char *key, const char *val, size_t len);
void cr_log_num(cr_buf_t *b, const char *key, double val);
void cr_log_int(cr_buf_t *b, const char *key, long long val);
void cr_log_end(cr_buf_t *b);

void cr_log_flush(void);

/* --- a copy of every line, for a store (the worker's: logstore.h) ---------------------------- */

/* What a line is about, as its writer said: fn NULL for the platform's
 * lines; trace the trace id cr_log_trace() added, or NULL. The pointers are
 * valid during the sink's call only. */
typedef struct {
  cr_log_level_t level;
  const char *fn;
  const char *reqid;
  const char *trace;
  unsigned long long time_ms; /* the line's "time" (ms since the epoch) */
} cr_log_meta_t;

/* Called by cr_log_end() with each finished line (without its newline),
 * as it goes to stdout's buffer; stdout is written whatever the sink does. A
 * line the sink writes itself (once it is done with line: the buffer may
 * move) goes to stdout only. */
typedef void (*cr_log_sink_fn)(void *data, const cr_log_meta_t *meta, const char *line, size_t len);
void cr_log_set_sink(cr_log_sink_fn fn, void *data);

/* Adds the W3C trace context of the invocation a line belongs to: "trace"
 * (its trace id) and "span" (the invocation's span id), from a traceparent
 * value ("00-<trace id>-<span id>-<flags>", see traceparent.h). NULL or a
 * malformed value adds nothing. */
void cr_log_trace(cr_buf_t *b, const char *traceparent);

#endif
