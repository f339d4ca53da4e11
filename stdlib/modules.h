/* modules.h - the crescent.* modules functions require: kv, storage, queue, log;
 * and crescent.queue_admin, which only the platform's own functions (named
 * "_/...") can load: the queues API's reads and redrive (lua/queues_api.lua).
 *
 * The modules are Lua (stdlib/{kv,storage,queue}.lua, compiled into the binary) on a few C
 * primitives given to them, and only to them, when they load: `script(name)`
 * and `cmd`, which send one Redis script call or command for the running
 * invocation and yield until the reply (lua/sandbox.lua passes the yield
 * through user coroutines; core/exec/invoke.h resumes); `hash`; `args`, the
 * argument checks they share (stdlib/args.lua); and the limits. Users cannot reach the
 * primitives: require "crescent.kv" returns the module, not them.
 *
 * Expected failures come back as nil, err ("redis unavailable", "timeout",
 * "value too large", ...); "not found" is nil with no error. A call made
 * after the invocation's deadline fails at once with "timeout"; a call
 * during a function's init raises an error (there is no invocation to wait
 * in). A reply for an invocation that already ended is dropped.
 *
 * The data layout lives in the modules and in the Redis scripts
 * (stdlib/redis/): every key starts with the prefix (default "cr:") and
 * carries a {hash tag} per KV namespace, storage bucket or queue, so each
 * could live on one Redis Cluster slot. See README.md.
 *
 * State: a cr_stdlib_t holds what the modules need from one worker: the
 * Redis connection their calls go through, the limits, and the scratch the
 * calls reuse. It is installed in a state by giving cr_stdlib_preload and it
 * to the vm (cr_vm_opts_t: preload, preload_ud); the state's primitives
 * reach it through their upvalues, so a process may hold several, each
 * state bound to one. It must outlive every state it was installed in. A
 * cr_stdlib_t without Redis (the validators' states: `crescent check`, the
 * master's) gives the same modules: a call raises during init as anywhere,
 * and fails with "redis unavailable" in a handler. */
#ifndef CR_MODULES_H
#define CR_MODULES_H

#include <stddef.h>

#include "httpout.h"
#include "users.h"
#include "redis.h"

typedef struct lua_State lua_State;
struct cr_invocation_s;

typedef struct {
  const char *prefix;      /* key prefix, "cr:" */
  size_t kv_max_value;     /* bytes of one KV value (encoded) */
  size_t max_object;       /* bytes of one storage object */
  size_t queue_max_body;   /* bytes of one queue message */
  long stream_maxlen;      /* KV change / storage event streams are capped near this length */
  long queue_max_depth;    /* messages one queue may hold (stream + delayed set); never trimmed */
} cr_stdlib_opts_t;

/* The Redis scripts the modules run; pass them to cr_redis_new(). */
extern const cr_redis_script_t cr_stdlib_scripts[];
extern const int cr_stdlib_nscripts;

typedef struct cr_stdlib_s cr_stdlib_t;

/* A stdlib whose calls go through redis (NULL: none, calls fail with "redis
 * unavailable"; not owned), with opts (NULL: the defaults; copied). NULL
 * when out of memory. */
cr_stdlib_t *cr_stdlib_new(cr_redis_t *redis, const cr_stdlib_opts_t *opts);
/* Forgets the Redis connection, before it is freed: calls fail from now on
 * with "redis unavailable", and the promoter stops. */
void cr_stdlib_detach(cr_stdlib_t *s);
/* After every state it was installed in is closed. */
void cr_stdlib_free(cr_stdlib_t *s);

/* A cr_vm_preload_fn (vm.h): adds the module loaders to the table at the
 * top of L's stack (name -> loader), for the sandbox's require, bound to
 * stdlib (a cr_stdlib_t, not NULL). Also sets the registry's CR_CTX_EXTEND
 * (invoke.h): the function that adds ctx.once and ctx.cache to each instance's ctx. */
void cr_stdlib_preload(lua_State *L, void *stdlib);

/* Calls to other functions (crescent.invoke), which a layer above makes
 * (core/trigger/invoke): the stdlib only checks, yields and resumes.
 * start begins one for the invocation inv: kind 0 runs the function named
 * name with the event's JSON text and gives its result's JSON text ("" for
 * nil); kind 1 queues it (delay seconds) and gives the invocation id. It
 * returns a handle, or NULL with err written (nothing started). done comes
 * later, never from inside start, with text (len bytes) or err, unless the
 * call was cancelled (the invocation ended first). */
typedef void (*cr_stdlib_call_done)(void *data, const char *err, const char *text, size_t len);
typedef struct {
  void *(*start)(void *ud, struct cr_invocation_s *inv, int kind, const char *name, size_t nlen, const char *event,
                 size_t elen, double delay, cr_stdlib_call_done done, void *data, char *err, size_t errlen);
  void (*cancel)(void *ud, void *handle);
} cr_stdlib_calls_t;
/* Without it (the default) crescent.invoke's calls fail with "invocation
 * unavailable". ops must outlive s. */
void cr_stdlib_set_calls(cr_stdlib_t *s, const cr_stdlib_calls_t *ops, void *ud);

/* ctx.cache.purge(path) (stdlib/once.lua), which a layer above carries out
 * (the gateway's cache, core/trigger/http/scache.h): the stdlib only checks
 * the argument, yields and resumes. purge returns 1 when it is done already
 * (nothing to wait for), 0 when done comes later (never from inside purge;
 * *handle is what cancel takes, if the invocation ends first), or -1 with
 * err written. done gets NULL or the error. */
typedef void (*cr_stdlib_purge_done)(void *data, const char *err);
typedef struct {
  int (*purge)(void *ud, const char *path, size_t len, cr_stdlib_purge_done done, void *data, void **handle,
               char *err, size_t errlen);
  void (*cancel)(void *ud, void *handle);
} cr_stdlib_cache_t;
/* Without it (the default) ctx.cache.purge fails with "cache unavailable".
 * ops must outlive s. */
void cr_stdlib_set_cache(cr_stdlib_t *s, const cr_stdlib_cache_t *ops, void *ud);

/* Outbound HTTP (crescent.http, stdlib/httpout.h): the worker's client and
 * policy (copied; what it points to must outlive s). Without it calls fail
 * with "http unavailable". */
void cr_stdlib_set_http(cr_stdlib_t *s, const cr_http_config_t *cfg);

/* The accounts service crescent.auth uses (stdlib/auth.h; not owned, must
 * outlive s), or NULL (the default): its calls answer "accounts are off". */
void cr_stdlib_set_users(cr_stdlib_t *s, cr_users_t *users);

/* Moves delayed queue messages that are due into their streams and, about
 * once a second, trims from each queue's stream the entries every consumer
 * group has acknowledged (stdlib/redis/q_trim.lua); the queues are those of
 * the prefix's "queues" set, where every send registers its queue. Run
 * periodically (100 ms) by one worker, on the connection of s. */
void cr_stdlib_promote_delayed(cr_stdlib_t *s);

#endif
