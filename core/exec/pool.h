/* pool.h - a worker's function instances: cold and warm starts, provisioned
 * (warm) instances, scale to zero, and the concurrency limit.
 *
 * An instance is one vm bound to one version of one function, with its
 * handler, a reusable ctx table and a reusable coroutine. It runs one
 * invocation at a time (docs/architecture.md §3).
 *   - cr_pool_acquire() hands out an idle instance of the version (a warm
 *     start) or makes one (a cold start: take a pre-booted blank vm if one is
 *     ready, bind it, run the function's init).
 *   - cr_pool_release() takes it back; broken instances (timed out, out of
 *     memory) and instances of a replaced version are discarded.
 *   - Between requests the pool does its chores, one per loop iteration:
 *     close discarded states (lua_close costs 0.1-0.4 ms), keep a few blank
 *     vms booted, and keep `warm` instances of every function booted
 *     (provisioned concurrency: their init is not paid by a request). Every
 *     second it closes instances idle for longer than their function's
 *     `idle` (beyond `warm`): with warm = 0 a function scales to zero.
 *   - Concurrency: cr_pool_admit() counts an invocation against the
 *     function's `concurrency` in shared memory, across all workers, and
 *     refuses past it; cr_pool_leave() gives the place back. Places and
 *     instances are counted in this worker's own cells (opts.worker), so the
 *     master takes them back if the worker dies holding them (shm.h).
 *
 * The pool owns its instances and vms; an instance holds a reference on its
 * version. */
#ifndef CR_POOL_H
#define CR_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "registry.h"
#include "shm.h"
#include "vm.h"

typedef struct cr_pool_s cr_pool_t;
typedef struct uv_loop_s uv_loop_t;

#define CR_INSTANCE_EXT 8

typedef struct cr_instance_s {
  cr_vm_t *vm;
  cr_fnver_t *ver;
  int handler_ref;          /* registry refs in vm->L */
  int ctx_ref;
  int nargs;                /* how many of (event, ctx) the handler declares (vararg: 2) */
  int co_ref;
  lua_State *co;            /* the invocation coroutine, reused while healthy */
  int cold;                 /* the next invocation pays for this instance's init */
  double init_ms;           /* how long its init took */
  uint64_t invocations;
  uint64_t last_used_ns;
  int broken;               /* never reuse: discard on release */
  void *current;            /* the invocation running in it, or NULL */
  /* What each trigger keeps per instance (its caches: strings its events
   * give out, its events' metatable), by the index cr_instance_ext_slot()
   * gave it; NULL until it sets it. Freed with free() when the instance
   * closes; Lua references inside it die with the vm. */
  void *ext[CR_INSTANCE_EXT];
  struct cr_instance_s *next;
} cr_instance_t;

/* Completes a new instance after its init left the file's result on the
 * stack (the invocation layer's cr_invoke_prepare: ctx, coroutine); 0, or an
 * error code with err. */
typedef int (*cr_pool_prepare_cb)(cr_instance_t *inst, char *err, size_t errlen);

typedef struct {
  int blank;          /* pre-booted blank vms kept ready (default 2) */
  double init_timeout;/* seconds for a function's init */
  int worker;         /* this worker's index: its cells in shared memory */
  cr_pool_prepare_cb prepare; /* NULL: instances are left as their init made them */
  cr_vm_opts_t vm;    /* how its vms boot: the platform modules (the worker's stdlib), the module reader */
} cr_pool_opts_t;

/* An index into cr_instance_t.ext for a trigger's per-instance data: the
 * same index for the same key (the address of the trigger's static), -1
 * once all CR_INSTANCE_EXT are given. */
int cr_instance_ext_slot(const void *key);

/* loop may be NULL (no chores: discarded states close at once). shm may be
 * NULL (no concurrency limit, no instance counters). */
cr_pool_t *cr_pool_new(uv_loop_t *loop, cr_registry_t *registry, cr_shm_t *shm, const cr_pool_opts_t *opts);
/* Closes every instance. The loop must run once more to close the pool's handles. */
void cr_pool_free(cr_pool_t *p);

/* Gets an instance of ver. *cold says whether this request paid for its
 * init. On an init failure returns CR_ELUA/CR_ETIMEDOUT/CR_ENOMEM with err. */
int cr_pool_acquire(cr_pool_t *p, cr_fnver_t *ver, cr_instance_t **out, int *cold, char *err, size_t errlen);
void cr_pool_release(cr_pool_t *p, cr_instance_t *inst);
/* When the invocation being released ended (its monotonic end time). */
void cr_pool_ended(cr_pool_t *p, uint64_t end_ns);

/* Takes a place under fn's concurrency limit: 0, or CR_ELIMIT when the
 * function already runs `concurrency` invocations across all workers. */
int cr_pool_admit(cr_pool_t *p, const cr_fnver_t *ver);
void cr_pool_leave(cr_pool_t *p, const cr_fnver_t *ver);

/* fn changed (a new version, or removed): closes its idle instances of other
 * versions and, with `warm`, boots the new version's instances now, before
 * this worker serves another request with it. */
void cr_pool_refresh(cr_pool_t *p, cr_fn_t *fn);

#endif
