/* scache.h - the gateway's shared response cache: the answers of functions
 * with cache = { ..., shared = true } kept in Redis too, so every worker and
 * every node on one Redis serves them; and purges (of a function, or of one
 * path's answers) that reach every worker (shared memory) and Redis.
 *
 * Layout, under the platform prefix, one hash tag per function ({rc:NAME},
 * so a function's keys could share a Redis Cluster slot):
 *   PREFIX{rc:NAME}:e:HASH:KEY  an entry: a hash {g, p, v} (stdlib/redis/rc_get.lua).
 *                               HASH is the version's code hash (registry.h),
 *                               so two versions never share an entry and nodes
 *                               running the same code do; KEY is the rest of
 *                               the gateway's cache key (path, query or the
 *                               varied parts, the principal). It expires with
 *                               Redis' own PEXPIRE after ttl + staleWhileRevalidate.
 *   PREFIX{rc:NAME}:g           the function's purge generation (INCR)
 *   PREFIX{rc:NAME}:n           the counter path stamps come from
 *   PREFIX{rc:NAME}:p:PATH      the path's purge stamp (expires after 2 days
 *                               and a minute, past any entry's life)
 * An entry is served only while g and p are those its request saw when it
 * began (rc_put drops an answer whose function or path was purged while it
 * was being made): a purge makes older entries miss on every node at once.
 *
 * The local layer: a shared function's answers also go into the worker's
 * own LRU (rcache.h), but a copy there lives at most CR_SCACHE_LOCAL_MS
 * before the worker asks Redis again. Purges made on this node reach every
 * worker's copies at once (the epoch, and per path the shared-memory purge
 * table, shm.h); a purge on another node reaches them through Redis within
 * that bound (so within a second everywhere, as the README promises).
 *
 * Failure: a lookup that Redis does not answer within CR_SCACHE_WAIT_MS, or
 * that fails (down, an error reply), is a miss (the request goes to the
 * function), counted as an error, with one warning per 10 s; after a
 * lookup timed out, the worker does not ask Redis for CR_SCACHE_SHUN_MS
 * (each request then is such an error at once), so a stalled Redis costs
 * one wait per worker per second, not one per request. An answer
 * whose body is over CR_SCACHE_MAX_BODY is not kept in Redis (the local
 * layer only; one warning per 10 s). */
#ifndef CR_SCACHE_H
#define CR_SCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "modules.h"
#include "rcache.h"
#include "redis.h"
#include "registry.h"
#include "shm.h"

#define CR_SCACHE_WAIT_MS 250
#define CR_SCACHE_SHUN_MS 1000
#define CR_SCACHE_LOCAL_MS 500
#define CR_SCACHE_MAX_BODY (1024 * 1024)
/* A path stamp's life in Redis, seconds: past ttl + staleWhileRevalidate at their largest. */
#define CR_SCACHE_STAMP_TTL (2 * 86400 + 60)

typedef struct cr_scache_s cr_scache_t;
typedef struct cr_scache_get_s cr_scache_get_t;
typedef struct cr_scache_purge_s cr_scache_purge_t;

/* The purge generation and path stamp a lookup saw (what a store must find unchanged). */
typedef struct {
  uint64_t g, p;
} cr_scache_stamps_t;

enum { CR_SCACHE_HIT = 1, CR_SCACHE_MISS, CR_SCACHE_ERROR };

/* result HIT: e is the entry (valid during the call only; epoch, began_ns and
 * until_ns zero), st its stamps; MISS: e NULL, st what a store must see;
 * ERROR: both NULL. */
typedef void (*cr_scache_cb)(void *data, int result, const cr_rcache_entry_t *e, const cr_scache_stamps_t *st);
/* err NULL: done. */
typedef void (*cr_scache_done)(void *data, const char *err);

/* redis may be NULL (--redis none: every lookup fails, warned); registry
 * routes ctx.cache.purge's paths; shm holds the local purge records. */
cr_scache_t *cr_scache_new(uv_loop_t *loop, cr_redis_t *redis, const char *prefix, cr_registry_t *registry,
                           cr_shm_t *shm);
/* Cancels what waits (those callbacks never come). */
void cr_scache_free(cr_scache_t *sc);

/* Is there a Redis to share in (not --redis none)? Without one, shared = true is a per-worker cache. */
int cr_scache_enabled(const cr_scache_t *sc);

/* Looks up lkey (the gateway's cache key: "slot:version:" then the rest) of
 * ver for request path. NULL when Redis cannot be asked (counted by the
 * caller as an error; warned here): cb will not come. Otherwise cb comes
 * exactly once, later, unless cancelled. */
cr_scache_get_t *cr_scache_get(cr_scache_t *sc, const cr_fnver_t *ver, const char *path, size_t plen,
                               const char *lkey, size_t lklen, cr_scache_cb cb, void *data);
void cr_scache_get_cancel(cr_scache_get_t *g);

/* Keeps e (ver's answer to a GET of path under lkey) in Redis, if its
 * function and path were not purged since st was seen; nothing waits on it. */
void cr_scache_put(cr_scache_t *sc, const cr_fnver_t *ver, const char *path, size_t plen, const char *lkey,
                   size_t lklen, const cr_scache_stamps_t *st, const cr_rcache_entry_t *e);

/* Purges fn's answers in Redis: all of them (path NULL), or those of path.
 * NULL with err written when Redis cannot be asked; otherwise done comes
 * once, later, unless cancelled. */
cr_scache_purge_t *cr_scache_purge(cr_scache_t *sc, const cr_fn_t *fn, const char *path, size_t plen,
                                   cr_scache_done done, void *data, char *err, size_t errlen);
void cr_scache_purge_cancel(cr_scache_purge_t *p);

/* Purges path's answers of fn everywhere: this node's workers now (shared
 * memory), and Redis for a shared function (done then comes later, returns
 * 0). Returns 1 when there is nothing to wait for, -1 with err written. */
int cr_scache_purge_path(cr_scache_t *sc, const cr_fn_t *fn, const char *path, size_t plen, cr_scache_done done,
                         void *data, cr_scache_purge_t **handle, char *err, size_t errlen);

/* ctx.cache.purge (modules.h), ud the cr_scache_t: the user function GET
 * path routes to (not the platform's, not under /_/). */
extern const cr_stdlib_cache_t cr_scache_stdlib_ops;

#endif
