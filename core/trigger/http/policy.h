/* policy.h - the gateway's per-function policies that run before an
 * instance is taken: CORS (preflights answered here, the allow headers on
 * every answer) and rate limits. Settings: cr_cors_spec_t and
 * cr_ratelimit_spec_t (settings.h).
 *
 * CORS (the Fetch standard's protocol):
 *  - An origin is allowed when origins is "*" or one pattern matches it:
 *    "https://app.example.com" exactly (scheme, host, port; case-blind);
 *    "https://" then "*.example.com": that scheme, any host one or more
 *    labels below example.com (not example.com itself), the pattern's port
 *    or none; "*.example.com" alone: any scheme and port.
 *  - A preflight (OPTIONS with Origin and Access-Control-Request-Method) for
 *    a route of a function with cors is answered here, never by the
 *    function: 204 with Access-Control-Allow-Origin (the origin, or "*" for
 *    origins = "*" without credentials), -Allow-Methods (the setting, or
 *    the method asked, when the route answers it), -Allow-Headers (the
 *    setting, or the headers asked), -Max-Age, -Allow-Credentials when set,
 *    and Vary: Origin, Access-Control-Request-Method,
 *    Access-Control-Request-Headers. A disallowed origin, method or header
 *    gets 403 {"error": "CORS: ... not allowed"} without the allow headers.
 *  - Every other answer for such a function (the function's, its errors,
 *    429s) carries Vary: Origin and, for an allowed origin, -Allow-Origin,
 *    -Allow-Credentials and -Expose-Headers.
 *
 * Rate limits: GCRA (a token bucket of `burst` refilled at `rps`), one bucket
 * per (function, client) where the client is its address (by = "ip"), a
 * header's value (by = "header.NAME"; absent: one shared bucket "-"), or the
 * API key's name / the principal auth found (by = "key" / "principal"; a
 * request without one: its address). With
 * Redis the bucket lives there (stdlib/redis/rate_gcra.lua, Redis' clock)
 * and is shared by every worker and node; without Redis, or when a call
 * fails, a bucket per worker is used instead (so the limit then holds per
 * worker: at most workers x rps in all). A refused request gets 429
 * {"error": "rate limit exceeded"} with Retry-After, never reaching an
 * instance; every answer of a limited function carries RateLimit-Policy and
 * RateLimit (draft-ietf-httpapi-ratelimit-headers). */
#ifndef CR_POLICY_H
#define CR_POLICY_H

#include <stddef.h>

#include "http.h"
#include "redis.h"
#include "settings.h"

/* --- CORS ------------------------------------------------------------------------------------- */

/* Is origin (o, n bytes: "scheme://host[:port]") allowed by c? */
int cr_cors_origin_allowed(const cr_cors_spec_t *c, const char *o, size_t n);
/* Is req a CORS preflight (OPTIONS with Origin and Access-Control-Request-Method)? Sets *method to
 * the CR_M_* bit asked for (0 when not a method crescent routes). */
int cr_cors_is_preflight(const cr_http_req_t *req, unsigned *method);
/* Answers the preflight req for c; routed: the route answers the method asked for. */
void cr_cors_preflight(const cr_cors_spec_t *c, cr_http_req_t *req, int routed);
/* Adds the CORS headers of an answer to req (between cr_http_respond_start and _finish). */
void cr_cors_headers(const cr_cors_spec_t *c, cr_http_req_t *req);

/* --- rate limits ------------------------------------------------------------------------------ */

typedef struct cr_ratelimit_s cr_ratelimit_t;

typedef struct {
  int allowed;
  int remaining;      /* requests that would pass right now */
  double retry_after; /* seconds until one would pass (refused) */
  double reset;       /* seconds until the bucket is full again */
} cr_rl_result_t;

typedef void (*cr_rl_cb)(void *data, const cr_rl_result_t *r);

/* redis may be NULL (buckets per worker only); prefix the Redis key prefix. */
cr_ratelimit_t *cr_ratelimit_new(cr_redis_t *redis, const char *prefix);
/* Cancels what waits on Redis (those callbacks do not run). */
void cr_ratelimit_free(cr_ratelimit_t *rl);
/* Checks one request of function fn by req's client against spec; cb runs
 * now or when Redis answers (exactly once, unless rl is freed first).
 * client: by = "key" / "principal", who auth found, or NULL (then, as for
 * by = "ip", req's address). */
void cr_ratelimit_check(cr_ratelimit_t *rl, const char *fn, const cr_ratelimit_spec_t *spec, const cr_http_req_t *req,
                        const char *client, cr_rl_cb cb, void *data);
/* Adds RateLimit-Policy and RateLimit to an answer (and Retry-After when refused). */
void cr_ratelimit_headers(const cr_ratelimit_spec_t *spec, const cr_rl_result_t *r, cr_http_req_t *req);

#endif
