/* kvexpire.h - the KV expiry sweeper: TTL expiries as `expire` change records.
 *
 * Redis removes an expired value by itself, and its keyspace notifications
 * are fire-and-forget: a value that expires while no server listens would
 * leave no trace. So expiries are kept as data instead: a put with a ttl
 * enters the key in its namespace's expiry set (cr:{kv:NS}:exp, key ->
 * expiry ms by Redis's clock) in the same script as the write, and a put
 * without a ttl or a delete takes it out (stdlib/redis/kv_put.lua ...). The
 * sweeper runs, every period, stdlib/redis/kv_expire.lua on each namespace
 * of the prefix's "kvexp" set (where crescent.kv registers a namespace
 * before its first ttl): for each entry due, in expiry order, an
 * {op = "expire", key, version (a new one, like a delete's), time = the
 * expiry} record on the namespace's changes stream, and the entry removed,
 * in one atomic step. The set lives in Redis, so what expires while the
 * server is down is recorded when it is back.
 *
 * Contracts:
 *   - A record is written within about a period of its expiry while a
 *     sweeper runs and Redis answers; a namespace with more than `count`
 *     entries due is swept again at once (the next loop iteration) until
 *     none is left, so a backlog drains at several thousand a second.
 *   - Exactly once per expiry: the script removes the entry in the step that
 *     writes its record, so several sweepers (one per node) never write one
 *     twice; a write to a key whose expiry is due but not swept yet writes
 *     that expire record first, itself (kv_put, kv_delete, kv_incr).
 *   - Never blocks the loop: one round at a time, every call asynchronous on
 *     the worker's connection; while Redis is unreachable the rounds wait.
 *
 * Ownership: the sweeper uses redis (not owned) and a timer on loop. Stop it
 * before redis is freed (replies that come after are ignored), free it once
 * the loop has run (its timer closed). */
#ifndef CR_KVEXPIRE_H
#define CR_KVEXPIRE_H

#include <uv.h>

#include "redis.h"

typedef struct {
  const char *prefix; /* key prefix, "cr:" (copied) */
  long stream_maxlen; /* the changes streams' cap, as the writes' (cr_stdlib_opts_t) */
  int period_ms;      /* between rounds; <= 0: 250 */
  int count;          /* entries one script looks at; <= 0: 500 */
} cr_kvexpire_opts_t;

typedef struct cr_kvexpire_s cr_kvexpire_t;

/* A sweeper, its first round a period from now. NULL when out of memory or
 * without the kv_expire script. */
cr_kvexpire_t *cr_kvexpire_new(uv_loop_t *loop, cr_redis_t *redis, const cr_kvexpire_opts_t *opts);
/* No round from now on; closes the timer. Safe to call twice. */
void cr_kvexpire_stop(cr_kvexpire_t *x);
/* After cr_kvexpire_stop and a run of the loop. NULL is fine. */
void cr_kvexpire_free(cr_kvexpire_t *x);

#endif
