/* admin.h - the platform's own HTTP endpoints, under the reserved /_/ prefix.
 *
 *   GET /_/health         -> 200 {"status":"ok","redis":"up"|"none"}, or 503
 *                            {"status":"unavailable","redis":"down"} while the
 *                            Redis this server is configured with is not
 *                            connected (a load balancer takes it out)
 *   GET /_/api/functions  -> every function: version, hash, routes, settings,
 *                            load error, and its meters from shared memory
 *                            (invocations, errors, client errors, timeouts,
 *                            throttles, cold starts, latency histogram,
 *                            GB-seconds, instances busy/idle across workers,
 *                            estimated cost)
 *   GET /_/metrics        -> the same meters in Prometheus text format
 *   GET /_/api/usage?from=&to=&function=&by=hour|day&freeTier=1
 *                         -> the hourly usage kept in Redis (usage.h), summed by
 *                            function and by hour or day, with cost and the
 *                            right-size advice (usage_api.c)
 *   GET /_/api/logs       -> log lines kept in Redis, newest first, filtered
 *                            (function, level, since, until, requestId, trace,
 *                            q, limit) with a cursor: README "Operating crescent"
 *   GET /_/api/logs/tail  -> the same as they come, text/event-stream (SSE)
 *   GET /_/api/series?function=NAME[&minutes=M]
 *                         -> the function's last hour, per interval (series.h)
 *   GET /_/ , /_/dashboard/{app.js,app.css,chart.js}
 *                         -> the dashboard: a page compiled into the binary
 *                            (dashboard/, and Debian's Chart.js) that reads
 *                            the APIs above with the token it is given
 *   DELETE /_/api/cache[?function=NAME][&path=/P]
 *                         -> purges cached answers (README "Response cache"):
 *                            {"purged": N}, or 503 when Redis could not take
 *                            a shared function's purge (this node's are done)
 * Anything else under /_/ is 404. Every worker answers from the shared memory,
 * so the numbers cover all workers.
 *
 * Access, decided before any route (the rule /_/storage follows too):
 *  - /_/api and everything under it, and /_/metrics unless metrics_public,
 *    are protected. With a token configured, a request needs
 *    "Authorization: Bearer <token>" (from any address); without one
 *    (401, WWW-Authenticate: Bearer) or with another token, it is refused.
 *    Without a token configured, only loopback clients are served, others
 *    get 403 telling the operator to set --admin-token.
 *  - The dashboard's files hold no data: with a token configured they are
 *    open (the page asks for the token and sends it to the APIs); without
 *    one, loopback only, as the APIs.
 *  - /_/health, and the 404 of any other /_/ path, are open to everyone. */
#ifndef CR_ADMIN_H
#define CR_ADMIN_H

#include "http.h"
#include "logstore.h"
#include "redis.h"
#include "registry.h"
#include "shm.h"

typedef struct {
  cr_registry_t *registry;
  cr_shm_t *shm;
  double price_request;   /* $ per million requests */
  double price_gb_second; /* $ per GB-second */
  const char *token;      /* --admin-token; NULL or "" means none: loopback only */
  int metrics_public;     /* --metrics-public: /_/metrics needs no token */
  int redis_configured;   /* not --redis none: Redis is part of being healthy */
  const cr_redis_t *redis;/* the worker's client (NULL when its URL was refused) */
  struct cr_scache_s *scache; /* the shared response cache's purges (scache.h), or NULL */
  cr_redis_t *usage_redis;    /* GET /_/api/usage reads Redis through it (NULL: no Redis) */
  const char *prefix;         /* Redis key prefix */
  int usage_read_script;      /* usage_read.lua's index among the connection's scripts */
  cr_logstore_t *logstore;    /* the logs in Redis (logstore.h), or NULL without Redis */
  uv_loop_t *loop;            /* the worker's, for the log tails' timers */
  cr_redis_t *series_redis;   /* GET /_/api/series reads with it (series.h); NULL: 503 */
  double series_interval;     /* s: the series' step */
} cr_admin_t;

/* GET /_/api/usage (usage_api.c): answered once Redis replied. */
void cr_admin_usage(const cr_admin_t *a, cr_http_req_t *req);

/* Is this path the platform's? */
int cr_admin_owns(const char *path, size_t len);
void cr_admin_handle(const cr_admin_t *a, cr_http_req_t *req);

/* Is ip, an address as req->ip spells it, a loopback one: 127.0.0.0/8, ::1,
 * or 127.x mapped into IPv6 (::ffff:127.0.0.1, what a dual-stack listener
 * sees)? Anything unparsable ("unknown") is not. */
int cr_admin_loopback(const char *ip);

/* The access decision for a protected path: 0 (serve it), 401 or 403.
 * token: the configured one (NULL or "" for none); authorization: the
 * request's Authorization value (len bytes) or NULL; ip: the peer. The
 * scheme "Bearer" is matched case-insensitively; the token is compared in
 * time independent of where it differs. */
int cr_admin_access(const char *token, const char *authorization, size_t len, const char *ip);

/* The same rule for req, answered here when it fails: 0 when req may be
 * served; otherwise req got its 401 or 403 (as the admin API's own routes
 * answer) and that status is returned. a NULL: no token (loopback only). */
int cr_admin_guard(const cr_admin_t *a, cr_http_req_t *req);

#endif
