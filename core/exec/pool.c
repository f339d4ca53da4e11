/* pool.c - instances per function version, in one worker. */
#include "pool.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "clock.h"
#include "error.h"
#include "log.h"

#define MAX_BLANK 16
#define SWEEP_MS 1000

typedef struct {
  cr_fnver_t *ver;       /* the version these idle instances run */
  cr_instance_t *idle;   /* most recently used first */
  int nidle;
  int nbusy;             /* busy instances of any version of this function */
} slot_t;

struct cr_pool_s {
  uv_loop_t *loop;
  cr_registry_t *registry;
  cr_shm_t *shm;
  cr_pool_opts_t opts;
  slot_t *slots;         /* indexed by the function's shared-memory slot */
  int nslots;
  cr_vm_t *blank[MAX_BLANK];
  int nblank;
  cr_instance_t *doomed; /* to close off the request path */
  int provision;         /* warm instances may be missing */
  uint64_t last_end_ns;  /* when the last invocation ended (set by cr_pool_ended) */
  uv_idle_t chores;
  uv_timer_t sweeper;
  int chores_active;
  int closing;
};

static void on_chores(uv_idle_t *h);
static void on_sweep(uv_timer_t *t);

static void want_chores(cr_pool_t *p) {
  if (p->loop && !p->chores_active && !p->closing) {
    uv_idle_start(&p->chores, on_chores);
    p->chores_active = 1;
  }
}

cr_pool_t *cr_pool_new(uv_loop_t *loop, cr_registry_t *registry, cr_shm_t *shm, const cr_pool_opts_t *opts) {
  cr_pool_t *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->loop = loop;
  p->registry = registry;
  p->shm = shm;
  p->opts.blank = 2;
  p->opts.init_timeout = CR_INIT_TIMEOUT;
  if (opts) p->opts = *opts;
  if (p->opts.blank > MAX_BLANK) p->opts.blank = MAX_BLANK;
  if (loop) {
    uv_idle_init(loop, &p->chores);
    p->chores.data = p;
    uv_timer_init(loop, &p->sweeper);
    p->sweeper.data = p;
    uv_timer_start(&p->sweeper, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_unref((uv_handle_t *)&p->sweeper);
    p->provision = 1;
    want_chores(p);
  }
  return p;
}

static void instance_close(cr_pool_t *p, cr_instance_t *inst) {
  cr_shm_instances_add(p->shm, inst->ver->fn->slot, p->opts.worker, -1);
  for (int i = 0; i < CR_INSTANCE_EXT; i++) free(inst->ext[i]);
  cr_vm_free(inst->vm);
  cr_fnver_unref(inst->ver);
  free(inst);
}

static void on_handle_closed(uv_handle_t *h) {
  cr_pool_t *p = h->data;
  if (--p->closing == 0) free(p);
}

void cr_pool_free(cr_pool_t *p) {
  if (!p) return;
  for (int i = 0; i < p->nslots; i++) {
    cr_instance_t *inst = p->slots[i].idle;
    while (inst) {
      cr_instance_t *next = inst->next;
      instance_close(p, inst);
      inst = next;
    }
  }
  while (p->doomed) {
    cr_instance_t *next = p->doomed->next;
    instance_close(p, p->doomed);
    p->doomed = next;
  }
  for (int i = 0; i < p->nblank; i++) cr_vm_free(p->blank[i]);
  free(p->slots);
  if (p->loop) {
    p->closing = 2;
    uv_close((uv_handle_t *)&p->chores, on_handle_closed);
    uv_close((uv_handle_t *)&p->sweeper, on_handle_closed);
  } else {
    free(p);
  }
}

/* Queues an instance to be closed between requests. */
static void doom(cr_pool_t *p, cr_instance_t *inst) {
  if (!p->loop) {
    instance_close(p, inst);
    return;
  }
  inst->next = p->doomed;
  p->doomed = inst;
  want_chores(p);
}

/* The slot of a function (by its shared-memory slot number), grown on demand. */
static slot_t *slot_get(cr_pool_t *p, int i) {
  if (i >= p->nslots) {
    int n = p->nslots ? p->nslots : 16;
    while (n <= i) n *= 2;
    slot_t *s = realloc(p->slots, sizeof(slot_t) * (size_t)n);
    if (!s) return NULL;
    memset(s + p->nslots, 0, sizeof(slot_t) * (size_t)(n - p->nslots));
    p->slots = s;
    p->nslots = n;
  }
  return &p->slots[i];
}

/* The slot for ver, switched to ver if it held another version: idle
 * instances of the old version are then closed. */
static slot_t *slot_for(cr_pool_t *p, cr_fnver_t *ver) {
  slot_t *s = slot_get(p, ver->fn->slot);
  if (s && s->ver != ver) {
    while (s->idle) {
      cr_instance_t *next = s->idle->next;
      doom(p, s->idle);
      s->idle = next;
    }
    s->nidle = 0;
    s->ver = ver;
    p->provision = 1;
    want_chores(p);
  }
  return s;
}

static cr_vm_t *take_vm(cr_pool_t *p) {
  if (p->nblank > 0) {
    want_chores(p); /* boot a replacement between requests */
    return p->blank[--p->nblank];
  }
  return cr_vm_new(&p->opts.vm);
}

static cr_instance_t *instance_new(cr_pool_t *p, cr_fnver_t *ver, char *err, size_t errlen, int *rc) {
  uint64_t t0 = cr_clock_ns();
  cr_instance_t *inst = calloc(1, sizeof *inst);
  cr_vm_t *vm = inst ? take_vm(p) : NULL;
  if (!vm) {
    free(inst);
    snprintf(err, errlen, "out of memory making an instance");
    *rc = CR_ENOMEM;
    return NULL;
  }
  inst->vm = vm;
  inst->ver = ver;
  cr_fnver_ref(ver);
  vm->owner = inst;
  cr_fn_t *fn = ver->fn;
  cr_shm_instances_add(p->shm, fn->slot, p->opts.worker, 1);
  cr_vm_bind(vm, fn->name, p->registry ? p->registry->root : NULL, (size_t)ver->settings.memory * 1024 * 1024);
  vm->modules = &ver->modules;
  *rc = cr_vm_load(vm, fn->chunkname, ver->source, ver->source_len, p->opts.init_timeout, err, errlen);
  if (*rc == 0 && p->opts.prepare) *rc = p->opts.prepare(inst, err, errlen);
  if (*rc) {
    /* An init that failed leaves a state no one may reuse. */
    doom(p, inst);
    return NULL;
  }
  inst->cold = 1;
  inst->init_ms = (double)(cr_clock_ns() - t0) / 1e6;
  inst->last_used_ns = cr_clock_ns();
  return inst;
}

int cr_pool_acquire(cr_pool_t *p, cr_fnver_t *ver, cr_instance_t **out, int *cold, char *err, size_t errlen) {
  slot_t *s = slot_for(p, ver);
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return CR_ENOMEM;
  }
  cr_instance_t *inst = s->idle;
  if (inst) {
    s->idle = inst->next;
    s->nidle--;
    inst->next = NULL;
  } else {
    int rc;
    inst = instance_new(p, ver, err, errlen, &rc);
    if (!inst) {
      p->provision = 1;
      return rc;
    }
  }
  *cold = inst->cold;
  s->nbusy++;
  *out = inst;
  return 0;
}

void cr_pool_ended(cr_pool_t *p, uint64_t end_ns) { p->last_end_ns = end_ns; }

void cr_pool_release(cr_pool_t *p, cr_instance_t *inst) {
  slot_t *s = slot_get(p, inst->ver->fn->slot);
  /* For the idle sweep, where seconds matter: no clock call per request. */
  inst->last_used_ns = inst->invocations ? p->last_end_ns : cr_clock_ns();
  inst->current = NULL;
  inst->cold = 0;
  if (s) s->nbusy--;
  if (inst->broken || !s || s->ver != inst->ver || inst->ver->fn->current != inst->ver) {
    doom(p, inst);
    p->provision = 1;
    return;
  }
  inst->next = s->idle;
  s->idle = inst;
  s->nidle++;
}

int cr_pool_admit(cr_pool_t *p, const cr_fnver_t *ver) {
  if (!cr_shm_fn(p->shm, ver->fn->slot)) return 0;
  return cr_shm_take(p->shm, ver->fn->slot, p->opts.worker, ver->settings.concurrency) ? CR_ELIMIT : 0;
}

void cr_pool_leave(cr_pool_t *p, const cr_fnver_t *ver) { cr_shm_give(p->shm, ver->fn->slot, p->opts.worker); }


void cr_pool_refresh(cr_pool_t *p, cr_fn_t *fn) {
  slot_t *s = slot_get(p, fn->slot);
  if (!s) return;
  cr_fnver_t *ver = fn->current;
  if (!ver) {
    while (s->idle) {
      cr_instance_t *next = s->idle->next;
      doom(p, s->idle);
      s->idle = next;
    }
    s->nidle = 0;
    s->ver = NULL;
    return;
  }
  slot_for(p, ver); /* idle instances of the old version go */
  for (int n = s->nidle + s->nbusy; n < ver->settings.warm; n++) {
    char err[1024];
    int rc;
    cr_instance_t *inst = instance_new(p, ver, err, sizeof err, &rc);
    if (!inst) {
      cr_log(CR_LOG_ERROR, fn->name, NULL, "booting a warm instance of version %u failed: %s", ver->number, err);
      break;
    }
    inst->cold = 0;
    inst->next = s->idle;
    s->idle = inst;
    s->nidle++;
  }
  p->provision = 1;
  want_chores(p);
}

/* Makes one missing warm instance; returns 1 if it did some work. */
static int provision_one(cr_pool_t *p) {
  if (!p->registry) return 0;
  for (int i = 0; i < p->registry->nfns; i++) {
    cr_fn_t *fn = p->registry->fns[i];
    cr_fnver_t *ver = fn->current;
    if (!ver || ver->settings.warm == 0) continue;
    slot_t *s = slot_for(p, ver);
    if (!s || s->nidle + s->nbusy >= ver->settings.warm) continue;
    char err[1024];
    int rc;
    cr_instance_t *inst = instance_new(p, ver, err, sizeof err, &rc);
    if (!inst) {
      cr_log(CR_LOG_ERROR, fn->name, NULL, "provisioning a warm instance failed: %s", err);
      continue;
    }
    /* Its init was paid ahead of time: the first request is a warm start. */
    inst->cold = 0;
    inst->next = s->idle;
    s->idle = inst;
    s->nidle++;
    return 1;
  }
  return 0;
}

/* One chore per loop iteration, so requests never wait behind a batch. */
static void on_chores(uv_idle_t *h) {
  cr_pool_t *p = h->data;
  if (p->doomed) {
    cr_instance_t *inst = p->doomed;
    p->doomed = inst->next;
    instance_close(p, inst);
    return;
  }
  if (p->nblank < p->opts.blank) {
    cr_vm_t *vm = cr_vm_new(&p->opts.vm);
    if (vm) {
      p->blank[p->nblank++] = vm;
      return;
    }
  }
  if (p->provision) {
    if (provision_one(p)) return;
    p->provision = 0;
  }
  uv_idle_stop(h);
  p->chores_active = 0;
}

/* Closes instances idle for longer than their function's `idle`, keeping
 * `warm` of them. */
static void on_sweep(uv_timer_t *t) {
  cr_pool_t *p = t->data;
  /* The precise clock: last_used_ns may come from it, and the coarse one
   * runs a few ms behind (an instance used "in the future" looked idle for
   * centuries and was closed under load). */
  uint64_t now = cr_clock_ns();
  for (int i = 0; i < p->nslots; i++) {
    slot_t *s = &p->slots[i];
    if (!s->ver || !s->idle) continue;
    const cr_settings_t *set = &s->ver->settings;
    uint64_t idle_ns = (uint64_t)(set->idle * 1e9);
    int keep = set->warm - s->nbusy;
    cr_instance_t **link = &s->idle;
    while (*link) {
      cr_instance_t *inst = *link;
      if (keep > 0) {
        keep--;
        link = &inst->next;
        continue;
      }
      if (now > inst->last_used_ns && now - inst->last_used_ns >= idle_ns) {
        *link = inst->next;
        s->nidle--;
        doom(p, inst);
      } else {
        link = &inst->next;
      }
    }
  }
  p->provision = 1;
  want_chores(p);
}

int cr_instance_ext_slot(const void *key) {
  static const void *keys[CR_INSTANCE_EXT];
  for (int i = 0; i < CR_INSTANCE_EXT; i++) {
    if (keys[i] == key) return i;
    if (!keys[i]) {
      keys[i] = key;
      return i;
    }
  }
  return -1;
}
