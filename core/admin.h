/* admin.h - the platform's own HTTP endpoints, under the reserved /_/ prefix.
 *
 *   GET /_/health         -> 200 {"status":"ok"}
 *   GET /_/api/functions  -> every function: version, hash, routes, settings,
 *                            load error, and its meters from shared memory
 *                            (invocations, errors, timeouts, throttles, cold
 *                            starts, latency histogram, GB-seconds, instances
 *                            busy/idle across workers, estimated cost)
 *   GET /_/metrics        -> the same meters in Prometheus text format
 * Anything else under /_/ is 404. Every worker answers from the shared memory,
 * so the numbers cover all workers. */
#ifndef CR_ADMIN_H
#define CR_ADMIN_H

#include "http.h"
#include "registry.h"
#include "shm.h"

typedef struct {
  cr_registry_t *registry;
  cr_shm_t *shm;
  double price_request;   /* $ per million requests */
  double price_gb_second; /* $ per GB-second */
} cr_admin_t;

/* Is this path the platform's? */
int cr_admin_owns(const char *path, size_t len);
void cr_admin_handle(const cr_admin_t *a, cr_http_req_t *req);

#endif
