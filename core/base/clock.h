/* clock.h - time as crescent reads it.
 *
 * Monotonic nanoseconds for durations and deadlines, wall time for logs and
 * the HTTP Date header. The Date string is formatted once per second and
 * reused, so the request path never formats time. */
#ifndef CR_CLOCK_H
#define CR_CLOCK_H

#include <stdint.h>
#include <stddef.h>

uint64_t cr_clock_ns(void);      /* CLOCK_MONOTONIC */
uint64_t cr_clock_coarse_ns(void); /* CLOCK_MONOTONIC_COARSE: a few ms of resolution, cheaper */
uint64_t cr_wall_ms(void);       /* CLOCK_REALTIME, ms since the epoch */
uint64_t cr_thread_cpu_ns(void); /* CPU time of the calling thread */

/* The current HTTP date ("Sun, 06 Nov 1994 08:49:37 GMT", 29 bytes), cached per second. */
const char *cr_clock_http_date(void);
#define CR_HTTP_DATE_LEN 29

/* Writes an ISO 8601 UTC time with milliseconds ("2026-11-27T10:33:53.123Z", 24 bytes
 * plus NUL) for wall time ms into out (at least 32 bytes). */
void cr_clock_iso8601(uint64_t ms, char *out);

#endif
