/* gateway.h - HTTP requests in, function invocations out (the API gateway).
 *
 * Turns a routed HTTP request into the event a handler receives and the
 * handler's result into the HTTP response (docs/architecture.md §1):
 *   event: method, path, requestId (built at once); body, ip, headers, query,
 *          params, multiHeaders, multiQuery, rawQuery, source, json() (built
 *          on first access, then cached in the event);
 *   result: string -> 200 text/plain; table -> 200 JSON; {status=, headers=,
 *          body=} -> as given; nil -> 204; an error -> 500 with the request id
 *          (details in the log only).
 * It is the HTTP trigger: it hands each call to the dispatcher (dispatch.h),
 * which admits, runs, meters and reports it; this module only makes the event
 * and answers (refusals too: 503 not loaded, 429 throttled with Retry-After,
 * 500 init failed, 503 stopping). */
#ifndef CR_GATEWAY_H
#define CR_GATEWAY_H

#include "accounts_api.h"
#include "admin.h"
#include "invoke_api.h"
#include "dispatch.h"
#include "http.h"
#include "meter.h"
#include "redis.h"
#include "registry.h"
#include "router.h"

typedef struct cr_gateway_s cr_gateway_t;
typedef struct cr_fncalls_s cr_fncalls_t;

typedef struct {
  size_t max_response;  /* bytes of a response body (the platform's functions: max_object, if larger) */
  size_t max_body;      /* bytes of a request body */
  size_t max_object;    /* bytes of a request body to /_/storage/ (an object) */
  cr_registry_t *registry; /* whose router (replaced when routes change) routes requests */
  const cr_admin_t *admin; /* the platform's /_/ answers, or NULL */
  cr_meter_t *meter;    /* flushed before the admin API reads the totals, or NULL */
  const cr_invoke_api_t *invoke_api; /* /_/invoke and /_/api/invocations, or NULL */
  const cr_accounts_api_t *accounts; /* /_/auth/ and /_/api/users, or NULL (off: 404) */
  cr_redis_t *redis;    /* where rate limits keep their buckets, or NULL (per worker) */
  const char *prefix;   /* Redis key prefix */
  cr_shm_t *shm;        /* the functions' counters (rate-limited requests, cache), or NULL */
  size_t cache_size;    /* bytes of this worker's response cache (default 64 MB) */
  cr_fncalls_t *fncalls; /* runs authorizer functions (auth = { authorizer = ... }), or NULL */
  cr_auth_kind_t default_auth; /* auth of functions without the setting: CR_AUTH_NONE or CR_AUTH_APIKEY */
  uv_loop_t *loop;      /* the worker's: the shared cache's timer (NULL: no shared cache, for tests) */
} cr_gateway_opts_t;

/* NULL when memory ran out. Free the dispatcher first: its waiting calls are
 * answered (503) through the gateway. */
cr_gateway_t *cr_gateway_new(cr_dispatch_t *dispatch, const cr_gateway_opts_t *opts);
void cr_gateway_free(cr_gateway_t *g);

/* Answers req: routes it to its function (cr_gateway_invoke), to the
 * platform's admin API under /_/, or answers 404, 405 (with Allow), or 204
 * for an OPTIONS request to a path without an OPTIONS route (with Allow).
 * A route under /_/api/ (a platform function's) is served only as the admin
 * API is (cr_admin_guard: the admin token, or loopback without one). */
void cr_gateway_handle(cr_gateway_t *g, cr_http_req_t *req);

/* The shared response cache's purges (scache.h), for the admin API and ctx.cache.purge; NULL
 * without a loop. */
struct cr_scache_s *cr_gateway_scache(cr_gateway_t *g);

/* The request body limit for a target (http.h's body_limit): uploads to
 * /_/storage/ may be as large as an object; everything else max_body. */
size_t cr_gateway_body_limit(const cr_gateway_t *g, const char *target, size_t len);

/* Runs fn for req (route match m) through the dispatcher and answers req,
 * now or once a place under the function's concurrency frees up; past the
 * wait, 429. */
void cr_gateway_invoke(cr_gateway_t *g, cr_http_req_t *req, cr_fn_t *fn, const cr_route_match_t *m);

#endif
