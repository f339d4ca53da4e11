/* keys_api.h - managing API keys and usage plans over HTTP, under the admin
 * API's access rule (admin.h: the admin token, or loopback without one).
 * `crescent keys` and `crescent plans` (core/cli/keys.c) use it.
 *
 *   POST   /_/api/keys   {"name":, "functions": "a, b" | ["a", ...], "plan":}
 *            -> 201 {"name", "key", "functions", "plan", "created"}: the key,
 *               shown this once (Redis keeps only its SHA-256);
 *               400 a bad name, pattern or field, or no such plan;
 *               409 a key of that name exists
 *   GET    /_/api/keys   -> 200 {"keys": [{"name", "functions", "plan", "created", "lastUsed"}]}
 *               (oldest first; never the key nor its hash)
 *   DELETE /_/api/keys/NAME       -> 200 {"revoked": NAME}, 404
 *   GET    /_/api/keys/NAME/usage -> 200 {"name", "plan": {...} | null, "today", "month",
 *               "quota", "used", "remaining", "resetsIn", "days": [{"date", "count"}] (30, newest first)}
 *   POST   /_/api/plans  {"name":, "rps":, "burst":, "quota":, "per": "day" | "month"}
 *            -> 201 the plan; 400; 409 a plan of that name exists
 *   GET    /_/api/plans  -> 200 {"plans": [{"name", "rps", "burst", "quota", "per", "created", "keys"}]}
 *   DELETE /_/api/plans/NAME      -> 200 {"deleted": NAME}, 404, 409 while keys are on it
 * "functions": null is every function; "plan": null none; "quota": null none;
 * "created"/"lastUsed": ISO 8601 UTC (lastUsed null until used; written at
 * most once a minute per worker). 503 without Redis. */
#ifndef CR_KEYS_API_H
#define CR_KEYS_API_H

#include "admin.h"
#include "http.h"
#include "redis.h"

typedef struct cr_keys_api_s cr_keys_api_t;

/* redis NULL: every call answers 503. NULL when out of memory. */
cr_keys_api_t *cr_keys_api_new(cr_redis_t *redis, const char *prefix, const cr_admin_t *admin);
/* Cancels the calls that wait on Redis (their requests are not answered). */
void cr_keys_api_free(cr_keys_api_t *api);
/* Answers req if its path is one of the above (returns 1), else returns 0. */
int cr_keys_api_handle(cr_keys_api_t *api, cr_http_req_t *req);

#endif
