/* invoke_api.h - running functions by name over HTTP (Lambda's Invoke API):
 *
 *   POST /_/invoke/{function}   body: the event as JSON (empty: nil)
 *     -> 200 and the result as JSON ("null" for nil), with the report in
 *        headers: X-Crescent-Request-Id (the invocation's), -Duration,
 *        -Billed-Duration, -Init-Duration (cold starts), -Max-Memory-Used
 *        (bytes), -Memory-Size (MB), X-Crescent-Version;
 *        a function that raised, timed out or ran out of memory also answers
 *        200, as Lambda does, with X-Crescent-Function-Error: error|timeout|
 *        memory and {"errorMessage":..., "errorType":...};
 *        400 a body that is not JSON, 404 no such function, 429 throttled
 *        (Retry-After: 1), 500 its init failed, 503 not loaded or stopping.
 *     With X-Invocation-Type: Event -> 202 {"invocationId":ID} at once
 *        (async.h; 404 no such function, 503 queue full or Redis unavailable);
 *     with X-Invocation-Type: DryRun -> 204 when the function exists.
 *   GET /_/api/invocations/{id} -> 200 the status record (async.h), or 404.
 * Both under the admin API's access rule (admin.h: the token, or loopback
 * without one). */
#ifndef CR_INVOKE_API_H
#define CR_INVOKE_API_H

#include "admin.h"
#include "async.h"
#include "fncall.h"
#include "http.h"

typedef struct {
  const cr_admin_t *admin; /* its access rule */
  cr_registry_t *registry;
  cr_fncalls_t *fc;
  cr_async_t *async;       /* NULL: asynchronous calls answer 503 */
} cr_invoke_api_t;

/* Answers req if its path is one of the above (returns 1), else returns 0. */
int cr_invoke_api_handle(const cr_invoke_api_t *api, cr_http_req_t *req);

#endif
