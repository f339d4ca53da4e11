/* traceparent.h - W3C Trace Context (https://www.w3.org/TR/trace-context/):
 * the traceparent header, read, checked and made.
 *
 *   traceparent = version "-" trace-id "-" parent-id "-" trace-flags
 *                 2 hex      32 hex       16 hex        2 hex      (lower case)
 *
 * Every invocation has one: it carries the trace id of the request that
 * started it (an HTTP request's well-formed traceparent, or the calling
 * invocation's) or a new one, and a span id of its own, new for each
 * invocation. It is written on the invocation's log lines ("trace", "span"),
 * passed to the functions it calls (crescent.invoke) and sent on its
 * outbound requests (crescent.http). As with X-Request-Id, a malformed value
 * is ignored, never refused: a new trace starts. */
#ifndef CR_TRACEPARENT_H
#define CR_TRACEPARENT_H

#include <stddef.h>

/* "00-" + 32 + "-" + 16 + "-" + 2 */
#define CR_TRACE_LEN 55

/* Is v (len bytes) a traceparent to continue? Version 00 must be exactly 55
 * bytes; a later version (not ff) may be longer, its own fields after a '-'
 * at byte 55 ignored (the spec's rule for versions it does not know). The
 * trace id and parent id are lower-case hex and not all zeros. On success
 * writes the trace id (32 hex + NUL) and flags (2 hex + NUL) when not NULL. */
int cr_trace_parse(const char *v, size_t len, char trace_id[33], char flags[3]);

/* A traceparent for a new invocation into out (CR_TRACE_LEN + 1 bytes):
 * parent's trace id and flags (parent: a value cr_trace_parse accepts, len
 * bytes) or, when parent is NULL or malformed, a new random trace id with
 * flags 01 (sampled: crescent keeps every line). The span id is new either
 * way. Always version 00. */
void cr_trace_child(const char *parent, size_t len, char out[CR_TRACE_LEN + 1]);

#endif
