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
#include "invoke.h"

typedef struct {
  cr_fnver_t *ver;       /* the version these idle instances run */
  cr_instance_t *idle;   /* most recently used first */
  int nidle;
  int nbusy;
} slot_t;

struct cr_pool_s {
  uv_loop_t *loop;
  char *root;
  slot_t *slots;         /* indexed by function slot */
  int nslots;
  cr_instance_t *doomed; /* to close off the request path */
  uv_idle_t reaper;
  int reaper_active;
};

static void on_reap(uv_idle_t *h);

cr_pool_t *cr_pool_new(uv_loop_t *loop, const char *root) {
  cr_pool_t *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->loop = loop;
  p->root = strdup(root);
  if (loop) {
    uv_idle_init(loop, &p->reaper);
    p->reaper.data = p;
  }
  return p;
}

static void instance_close(cr_instance_t *inst) {
  cr_vm_free(inst->vm);
  cr_fnver_unref(inst->ver);
  free(inst);
}

static void on_reaper_closed(uv_handle_t *h) { free(h->data); }

void cr_pool_free(cr_pool_t *p) {
  if (!p) return;
  for (int i = 0; i < p->nslots; i++) {
    cr_instance_t *inst = p->slots[i].idle;
    while (inst) {
      cr_instance_t *next = inst->next;
      instance_close(inst);
      inst = next;
    }
  }
  while (p->doomed) {
    cr_instance_t *next = p->doomed->next;
    instance_close(p->doomed);
    p->doomed = next;
  }
  free(p->slots);
  free(p->root);
  if (p->loop) {
    uv_close((uv_handle_t *)&p->reaper, on_reaper_closed);
  } else {
    free(p);
  }
}

/* Queues an instance to be closed from the idle callback: lua_close costs
 * 0.1-0.4 ms, which a request should not wait for. */
static void doom(cr_pool_t *p, cr_instance_t *inst) {
  if (!p->loop) {
    instance_close(inst);
    return;
  }
  inst->next = p->doomed;
  p->doomed = inst;
  if (!p->reaper_active) {
    uv_idle_start(&p->reaper, on_reap);
    p->reaper_active = 1;
  }
}

/* Closes one state per loop iteration, between requests. */
static void on_reap(uv_idle_t *h) {
  cr_pool_t *p = h->data;
  cr_instance_t *inst = p->doomed;
  if (inst) {
    p->doomed = inst->next;
    instance_close(inst);
  }
  if (!p->doomed) {
    uv_idle_stop(h);
    p->reaper_active = 0;
  }
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
  }
  return s;
}

static cr_instance_t *instance_new(cr_pool_t *p, cr_fnver_t *ver, char *err, size_t errlen, int *rc) {
  uint64_t t0 = cr_clock_ns();
  cr_instance_t *inst = calloc(1, sizeof *inst);
  cr_vm_t *vm = inst ? cr_vm_new() : NULL;
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
  cr_vm_bind(vm, fn->name, p->root, (size_t)ver->settings.memory * 1024 * 1024);
  *rc = cr_vm_load(vm, fn->chunkname, ver->source, ver->source_len, CR_INIT_TIMEOUT, err, errlen);
  if (*rc == 0) *rc = cr_invoke_prepare(inst, err, errlen);
  if (*rc) {
    instance_close(inst);
    return NULL;
  }
  inst->cold = 1;
  inst->init_ms = (double)(cr_clock_ns() - t0) / 1e6;
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
    *cold = 0;
  } else {
    int rc;
    inst = instance_new(p, ver, err, errlen, &rc);
    if (!inst) return rc;
    *cold = 1;
  }
  s->nbusy++;
  *out = inst;
  return 0;
}

void cr_pool_release(cr_pool_t *p, cr_instance_t *inst) {
  slot_t *s = slot_get(p, inst->ver->fn->slot);
  inst->last_used_ns = cr_clock_ns();
  inst->current = NULL;
  if (s) s->nbusy--;
  if (inst->broken || !s || s->ver != inst->ver || inst->ver->fn->current != inst->ver) {
    doom(p, inst);
    return;
  }
  inst->next = s->idle;
  s->idle = inst;
  s->nidle++;
}

void cr_pool_counts(const cr_pool_t *p, int *idle, int *busy) {
  *idle = *busy = 0;
  for (int i = 0; i < p->nslots; i++) {
    *idle += p->slots[i].nidle;
    *busy += p->slots[i].nbusy;
  }
}
