/* reload.c - scanning, validating and publishing function versions. */
#include "reload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "loader.h"
#include "log.h"
#include "shm.h"
#include <stddef.h>
#include "wire.h"

struct cr_reload_s {
  cr_registry_t *registry;
  double init_timeout;
  const cr_platform_fn_t *platform;
  int nplatform;
  int first;               /* the first load: platform functions join */
  /* the reload in progress */
  int active;
  cr_loader_job_t *job;
  cr_load_t *loads;
  char **paths;            /* relpaths of loads */
  char **sources;
  int nloads;
  cr_fn_t **removed;
  int nremoved;
  cr_shm_t *shm;           /* reloads, versions published, load errors are counted there (or NULL) */
  uint64_t reloads, fn_loads, load_errors; /* the same, from the start (before shm exists) */
};

void cr_reload_set_shm(cr_reload_t *rl, cr_shm_t *shm) {
  rl->shm = shm;
  if (!shm) return;
  atomic_store(&shm->reloads, rl->reloads);
  atomic_store(&shm->fn_loads, rl->fn_loads);
  atomic_store(&shm->load_errors, rl->load_errors);
}

static void count(cr_reload_t *rl, size_t off) {
  uint64_t *own = off == offsetof(cr_shm_t, reloads) ? &rl->reloads
                  : off == offsetof(cr_shm_t, fn_loads) ? &rl->fn_loads
                                                         : &rl->load_errors;
  (*own)++;
  if (rl->shm) atomic_fetch_add_explicit((_Atomic uint64_t *)((char *)rl->shm + off), 1, memory_order_relaxed);
}

cr_reload_t *cr_reload_new(cr_registry_t *registry, double init_timeout, const cr_platform_fn_t *platform,
                           int nplatform) {
  cr_reload_t *rl = cr_xcalloc(1, sizeof *rl);
  rl->registry = registry;
  rl->init_timeout = init_timeout;
  rl->platform = platform;
  rl->nplatform = nplatform;
  rl->first = 1;
  return rl;
}

static void clear(cr_reload_t *rl, int in_child) {
  if (rl->job) {
    if (in_child) cr_loader_forget(rl->job);
    else cr_loader_free(rl->job);
  }
  rl->job = NULL;
  for (int i = 0; i < rl->nloads; i++) {
    cr_load_clear(&rl->loads[i]);
    free(rl->paths[i]);
    free(rl->sources[i]);
  }
  free(rl->loads);
  free(rl->paths);
  free(rl->sources);
  free(rl->removed);
  rl->loads = NULL;
  rl->paths = rl->sources = NULL;
  rl->removed = NULL;
  rl->nloads = rl->nremoved = 0;
  rl->active = 0;
}

void cr_reload_free(cr_reload_t *rl) {
  if (!rl) return;
  clear(rl, 0);
  free(rl);
}

void cr_reload_forget(cr_reload_t *rl) {
  if (!rl) return;
  clear(rl, 1);
  free(rl);
}

int cr_reload_busy(const cr_reload_t *rl) { return rl->active; }
int cr_reload_fd(const cr_reload_t *rl) { return rl->job ? cr_loader_fd(rl->job) : -1; }
uint64_t cr_reload_deadline(const cr_reload_t *rl) { return rl->job ? cr_loader_deadline(rl->job) : 0; }

int cr_reload_frame(cr_buf_t *frames, const cr_buf_t *msg) {
  return cr_wire_u32(frames, (uint32_t)msg->len) || cr_buf_append(frames, msg->data, msg->len) ? CR_ENOMEM : 0;
}

static cr_fn_t *find_by_relpath(cr_registry_t *r, const char *relpath) {
  for (int i = 0; i < r->nfns; i++)
    if (strcmp(r->fns[i]->relpath, relpath) == 0) return r->fns[i];
  return NULL;
}

/* Did a module file the last validation asked for change, vanish or
 * appear? That validation's result, loaded or failed, followed that set:
 * a broken module put back, even to its old bytes, is validated again. */
static int deps_changed(const cr_registry_t *r, const cr_fn_t *fn) {
  for (int i = 0; i < fn->deps.n; i++) {
    const cr_dep_t *d = &fn->deps.items[i];
    char *src = NULL, err[64];
    size_t len;
    char hash[13] = "";
    if (cr_loader_read_module(r->root, d->relpath, &src, &len, err, sizeof err) == 0) cr_registry_hash(src, len, hash);
    free(src);
    if (strcmp(hash, d->hash) != 0) return 1;
  }
  return 0;
}

static void push_load(cr_reload_t *rl, char *relpath, char *source, size_t len, int platform) {
  int i = rl->nloads++;
  rl->loads = cr_xrealloc(rl->loads, sizeof *rl->loads * (size_t)rl->nloads);
  rl->paths = cr_xrealloc(rl->paths, sizeof(char *) * (size_t)rl->nloads);
  rl->sources = cr_xrealloc(rl->sources, sizeof(char *) * (size_t)rl->nloads);
  memset(&rl->loads[i], 0, sizeof rl->loads[i]);
  rl->paths[i] = relpath;
  rl->sources[i] = source;
  rl->loads[i].relpath = relpath;
  rl->loads[i].source = source ? source : "";
  rl->loads[i].len = len;
  rl->loads[i].platform = platform;
}

int cr_reload_start(cr_reload_t *rl, int force) {
  return cr_reload_start_skipping(rl, force, NULL, NULL);
}

int cr_reload_start_skipping(cr_reload_t *rl, int force, int (*busy)(const char *relpath, void *data), void *data) {
  if (rl->active) return 1;
  cr_registry_t *r = rl->registry;
  char **paths = NULL;
  int n = 0;
  int rc = cr_registry_list(r->root, &paths, &n);
  if (rc) {
    cr_log(CR_LOG_ERROR, NULL, NULL, "cannot read the functions folder %s: %s", r->root, cr_strerror(rc));
    return 0;
  }
  rl->active = 1;
  for (int i = 0; i < n; i++) {
    char err[512];
    char *src = NULL;
    size_t len = 0;
    if (busy && busy(paths[i], data)) {
      /* Being written (modified, not closed yet): its close brings a reload. */
      free(paths[i]);
      continue;
    }
    if (cr_loader_read(r->root, paths[i], &src, &len, err, sizeof err)) {
      /* Vanished between listing and reading: the next scan sees it gone. */
      free(paths[i]);
      continue;
    }
    char hash[13];
    cr_registry_hash(src, len, hash);
    cr_fn_t *fn = find_by_relpath(r, paths[i]);
    int need = force || !fn || fn->removed || strcmp(fn->tried, hash) != 0 || deps_changed(r, fn);
    if (need) push_load(rl, paths[i], src, len, 0);
    else {
      free(paths[i]);
      free(src);
    }
  }
  free(paths); /* its strings went to loads or were freed */
  /* Functions whose file is gone (listed again: the loop above gave the
   * paths away). */
  char **now = NULL;
  int nnow = 0;
  if (cr_registry_list(r->root, &now, &nnow) == 0) {
    for (int i = 0; i < r->nfns; i++) {
      cr_fn_t *fn = r->fns[i];
      if (fn->platform || fn->removed) continue;
      int present = busy && busy(fn->relpath, data);
      for (int k = 0; k < nnow && !present; k++) present = strcmp(now[k], fn->relpath) == 0;
      if (!present) {
        rl->removed = cr_xrealloc(rl->removed, sizeof(cr_fn_t *) * (size_t)(rl->nremoved + 1));
        rl->removed[rl->nremoved++] = fn;
      }
    }
    for (int k = 0; k < nnow; k++) free(now[k]);
    free(now);
  }
  if (rl->first) {
    for (int i = 0; i < rl->nplatform; i++) {
      char rel[300];
      snprintf(rel, sizeof rel, "%s.lua", rl->platform[i].name);
      char *src = cr_xmalloc(rl->platform[i].len + 1);
      memcpy(src, rl->platform[i].source, rl->platform[i].len + 1);
      push_load(rl, cr_xstrdup(rel), src, rl->platform[i].len, 1);
    }
  }
  if (rl->nloads == 0) return 0;
  rl->job = cr_loader_start(r->root, rl->loads, rl->nloads, rl->init_timeout);
  return 1;
}

static const cr_platform_fn_t *platform_by_relpath(const cr_reload_t *rl, const char *relpath) {
  for (int i = 0; i < rl->nplatform; i++) {
    size_t n = strlen(rl->platform[i].name);
    if (strncmp(relpath, rl->platform[i].name, n) == 0 && strcmp(relpath + n, ".lua") == 0) return &rl->platform[i];
  }
  return NULL;
}

/* Applies one message (built: what its builder returned) to the master's
 * registry and frames it for the workers. A message or a frame that could
 * not be built is out of memory (alloc.h): going on would leave the workers
 * without a change the master made. */
static void emit(cr_reload_t *rl, int built, cr_buf_t *msg, cr_buf_t *frames) {
  int op;
  cr_fn_t *fn;
  if (built) cr_oom(msg->len);
  if (cr_registry_apply(rl->registry, msg->data, msg->len, &op, &fn) == 0) {
    if (cr_reload_frame(frames, msg)) cr_oom(frames->len + msg->len + 4);
  } else {
    cr_log(CR_LOG_ERROR, NULL, NULL, "a registry change could not be applied (out of memory?)");
  }
  msg->len = 0;
}

/* What a reload did to a function, to log once its routes are known. */
enum { DID_PUBLISH = 1, DID_CLEAR = 2 };

/* "loaded" is logged after the route rebuild: a new version whose every
 * route lost a conflict does not serve, and must not say it does. */
static void log_loaded(const cr_fn_t *fn, int did) {
  const cr_fnver_t *v = fn->current;
  if (fn->platform || !v) return;
  if (!fn->routed)
    cr_log(CR_LOG_INFO, fn->name, NULL, "loaded %s (version %u, %s) but not routed: %s", fn->relpath, v->number,
           v->hash, fn->error ? fn->error : "no route");
  else if (did == DID_CLEAR)
    cr_log(CR_LOG_INFO, fn->name, NULL, "loaded %s (version %u, %s): unchanged, its load error is cleared",
           fn->relpath, v->number, v->hash);
  else
    cr_log(CR_LOG_INFO, fn->name, NULL, "loaded %s (version %u, %s)%s", fn->relpath, v->number, v->hash,
           v->number > 1 ? ": new invocations get this version" : "");
}

int cr_reload_step(cr_reload_t *rl, cr_buf_t *frames) {
  if (!rl->active) return 1;
  if (rl->job && !cr_loader_step(rl->job)) return 0;
  cr_registry_t *r = rl->registry;
  cr_buf_t msg = CR_BUF_INIT;
  int changes = 0;
  cr_fn_t **did_fn = cr_xcalloc((size_t)(rl->nloads ? rl->nloads : 1), sizeof *did_fn);
  int *did = cr_xcalloc((size_t)(rl->nloads ? rl->nloads : 1), sizeof *did);
  for (int i = 0; i < rl->nloads; i++) {
    cr_load_t *l = &rl->loads[i];
    cr_fn_t *fn;
    if (l->platform) {
      char name[300];
      snprintf(name, sizeof name, "%.*s", (int)strlen(l->relpath) - 4, l->relpath);
      fn = cr_registry_add_platform(r, name);
    } else {
      fn = find_by_relpath(r, l->relpath);
      if (!fn) fn = cr_registry_add(r, l->relpath);
    }
    if (!fn) {
      cr_log(CR_LOG_ERROR, NULL, NULL, "%s: not loaded: this server run has seen %d functions, its limit (restart it)",
             l->relpath, CR_SHM_MAX_FUNCTIONS);
      continue;
    }
    cr_registry_hash(l->source, l->len, fn->tried);
    /* The module files this validation asked for decide when to validate again. */
    cr_deps_free(&fn->deps);
    fn->deps = l->deps;
    memset(&l->deps, 0, sizeof l->deps);
    if (l->ok && fn->current && !fn->removed) {
      /* The same source and modules as the current version (a forced
       * rescan, or a file or module put back after a failed edit): not a
       * new version, so its warm instances stay. A load error is gone. */
      char h[13];
      cr_registry_version_hash(l->source, l->len, &l->modules, h);
      if (strcmp(h, fn->current->hash) == 0) {
        if (fn->error && !fn->conflict) {
          emit(rl, cr_registry_op_clear(&msg, fn), &msg, frames);
          changes++;
          did_fn[i] = fn;
          did[i] = DID_CLEAR;
          free(fn->logged);
          fn->logged = NULL;
        }
        continue;
      }
    }
    if (l->ok) {
      const cr_platform_fn_t *pf = l->platform ? platform_by_relpath(rl, l->relpath) : NULL;
      for (int k = 0; pf && pf->env && pf->env[k]; k += 2) cr_settings_set_env(&l->settings, pf->env[k], pf->env[k + 1]);
      emit(rl, cr_registry_op_publish(&msg, fn, l->source, l->len, &l->settings, &l->modules), &msg, frames);
      count(rl, offsetof(cr_shm_t, fn_loads));
      changes++;
      did_fn[i] = fn;
      did[i] = DID_PUBLISH;
      free(fn->logged);
      fn->logged = NULL;
    } else {
      const char *err = l->error ? l->error : "could not be validated";
      emit(rl, cr_registry_op_fail(&msg, fn, err), &msg, frames);
      count(rl, offsetof(cr_shm_t, load_errors));
      changes++;
      if (!fn->logged || strcmp(fn->logged, err) != 0) {
        if (fn->current)
          cr_log(CR_LOG_ERROR, fn->name, NULL, "%s (version %u keeps serving)", err, fn->current->number);
        else
          cr_log(CR_LOG_ERROR, fn->name, NULL, "%s", err);
        free(fn->logged);
        fn->logged = cr_xstrdup(err);
      }
    }
  }
  for (int i = 0; i < rl->nremoved; i++) {
    cr_fn_t *fn = rl->removed[i];
    emit(rl, cr_registry_op_remove(&msg, fn), &msg, frames);
    changes++;
    fn->tried[0] = '\0';
    cr_deps_free(&fn->deps);
    cr_log(CR_LOG_INFO, fn->name, NULL, "%s was removed: no longer routed", fn->relpath);
  }
  if (changes) {
    emit(rl, cr_registry_op_route(&msg), &msg, frames);
  }
  for (int i = 0; i < rl->nloads; i++)
    if (did_fn[i]) log_loaded(did_fn[i], did[i]);
  free(did_fn);
  free(did);
  cr_buf_free(&msg);
  rl->first = 0;
  clear(rl, 0);
  count(rl, offsetof(cr_shm_t, reloads));
  return 1;
}
