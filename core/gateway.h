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
 * It also writes the invocation's report line and the function's counters. */
#ifndef CR_GATEWAY_H
#define CR_GATEWAY_H

#include "http.h"
#include "pool.h"
#include "registry.h"
#include "router.h"
#include "shm.h"

typedef struct cr_gateway_s cr_gateway_t;

typedef struct {
  double queue_wait;   /* s a request may wait for a place under concurrency */
  int queue_max;       /* requests waiting in this worker */
  size_t max_response; /* bytes of a response body */
} cr_gateway_opts_t;

cr_gateway_t *cr_gateway_new(uv_loop_t *loop, cr_pool_t *pool, cr_shm_t *shm, const cr_gateway_opts_t *opts);
/* Answers waiting requests with 503 and frees. The loop must run once more. */
void cr_gateway_free(cr_gateway_t *g);

/* Runs fn for req (route match m) and answers req, now or once a place
 * under the function's concurrency frees up; past the wait, 429. */
void cr_gateway_invoke(cr_gateway_t *g, cr_http_req_t *req, cr_fn_t *fn, const cr_route_match_t *m);

/* Adds the meters gathered since the last flush to shared memory (once per
 * loop iteration, and before the platform reads them). */
void cr_gateway_flush(cr_gateway_t *g);

#endif
