/* pool.h - a worker's function instances: cold starts, warm reuse, discards.
 *
 * An instance is one vm bound to one version of one function, with its
 * handler, a reusable ctx table and a reusable coroutine. It runs one
 * invocation at a time. cr_pool_acquire() hands out an idle instance of the
 * version (warm start) or makes one (cold start: boot a vm, run the init);
 * cr_pool_release() takes it back, or discards it when it is broken (timed
 * out, out of memory) or its version is no longer current. Discarded states
 * are closed off the request path, from an idle callback.
 *
 * The pool owns its instances; an instance holds a reference on its version. */
#ifndef CR_POOL_H
#define CR_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "registry.h"
#include "vm.h"

typedef struct cr_pool_s cr_pool_t;
typedef struct uv_loop_s uv_loop_t;

typedef struct cr_instance_s {
  cr_vm_t *vm;
  cr_fnver_t *ver;
  int handler_ref;          /* registry refs in vm->L */
  int ctx_ref;
  int co_ref;
  lua_State *co;            /* the invocation coroutine, reused while healthy */
  int cold;                 /* the next invocation is this instance's first */
  double init_ms;           /* how long its init took */
  uint64_t invocations;
  uint64_t last_used_ns;
  int broken;               /* never reuse: discard on release */
  void *current;            /* the invocation running in it, or NULL */
  uint64_t serial;          /* of the current invocation (events check it) */
  struct cr_instance_s *next;
} cr_instance_t;

cr_pool_t *cr_pool_new(uv_loop_t *loop, const char *root);
void cr_pool_free(cr_pool_t *p);

/* Gets an instance of ver. *cold says whether it was just made. On an init
 * failure returns CR_ELUA/CR_ETIMEDOUT/CR_ENOMEM with the message in err. */
int cr_pool_acquire(cr_pool_t *p, cr_fnver_t *ver, cr_instance_t **out, int *cold, char *err, size_t errlen);
void cr_pool_release(cr_pool_t *p, cr_instance_t *inst);

/* Counts for metrics: idle and busy instances in this worker. */
void cr_pool_counts(const cr_pool_t *p, int *idle, int *busy);

#endif
