/* registry.c - functions, versions and the routes built from them. */
#include "registry.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "clock.h"
#include "error.h"
#include "hash.h"
#include "log.h"
#include "modset.h"
#include "shm.h"
#include "wire.h"

#define MAX_DEPTH 16

cr_registry_t *cr_registry_new(const char *root) {
  cr_registry_t *r = cr_xcalloc(1, sizeof *r);
  r->root = cr_xstrdup(root);
  r->router = cr_router_new();
  return r;
}

static void fn_free(cr_fn_t *fn) {
  if (fn->current) cr_fnver_unref(fn->current);
  free(fn->name);
  free(fn->relpath);
  free(fn->chunkname);
  free(fn->error);
  free(fn->logged);
  cr_deps_free(&fn->deps);
  free(fn);
}

int cr_deps_add(cr_deps_t *d, const char *relpath, const char *hash) {
  for (int i = 0; i < d->n; i++)
    if (strcmp(d->items[i].relpath, relpath) == 0) return 0;
  cr_dep_t *items = realloc(d->items, sizeof *items * (size_t)(d->n + 1));
  if (!items) return CR_ENOMEM;
  d->items = items;
  char *rel = strdup(relpath);
  if (!rel) return CR_ENOMEM;
  items[d->n].relpath = rel;
  snprintf(items[d->n].hash, sizeof items[d->n].hash, "%s", hash);
  d->n++;
  return 0;
}

void cr_deps_free(cr_deps_t *d) {
  for (int i = 0; i < d->n; i++) free(d->items[i].relpath);
  free(d->items);
  d->items = NULL;
  d->n = 0;
}

void cr_registry_free(cr_registry_t *r) {
  if (!r) return;
  for (int i = 0; i < r->nfns; i++) fn_free(r->fns[i]);
  free(r->fns);
  cr_router_free(r->router);
  free(r->root);
  free(r);
}

int cr_registry_is_function_path(const char *relpath) {
  size_t n = strlen(relpath);
  if (n < 5 || strcmp(relpath + n - 4, ".lua") != 0) return 0;
  if (strncmp(relpath, "lib/", 4) == 0) return 0;
  /* NAME_test.lua is a test of a function (crescent test), never a function. */
  if (n > 9 && strcmp(relpath + n - 9, "_test.lua") == 0) return 0;
  const char *seg = relpath;
  while (seg) {
    if (seg[0] == '_' || seg[0] == '.' || seg[0] == '/') return 0;
    const char *slash = strchr(seg, '/');
    seg = slash ? slash + 1 : NULL;
  }
  return 1;
}

typedef struct {
  char **paths;
  int n, cap;
} list_t;

static void list_push(list_t *l, const char *path) {
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 32;
    l->paths = cr_xrealloc(l->paths, sizeof(char *) * (size_t)l->cap);
  }
  l->paths[l->n++] = cr_xstrdup(path);
}

static int walk_dir(const char *root, const char *rel, int depth, list_t *l) {
  char dirpath[4096];
  snprintf(dirpath, sizeof dirpath, "%s%s%s", root, *rel ? "/" : "", rel);
  DIR *d = opendir(dirpath);
  if (!d) return depth == 0 ? CR_ENOENT : 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.' || e->d_name[0] == '_') continue;
    char child[1024];
    int w = snprintf(child, sizeof child, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
    if (w < 0 || (size_t)w >= sizeof child) continue;
    char full[4096 + 1024];
    snprintf(full, sizeof full, "%s/%s", root, child);
    struct stat st;
    if (stat(full, &st)) continue;
    if (S_ISDIR(st.st_mode)) {
      if (depth == 0 && strcmp(e->d_name, "lib") == 0) continue;
      if (depth + 1 < MAX_DEPTH) walk_dir(root, child, depth + 1, l);
    } else if (S_ISREG(st.st_mode) && cr_registry_is_function_path(child)) {
      list_push(l, child);
    }
  }
  closedir(d);
  return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int cr_registry_list(const char *root, char ***paths, int *n) {
  list_t l = {0};
  int rc = walk_dir(root, "", 0, &l);
  if (rc) {
    for (int i = 0; i < l.n; i++) free(l.paths[i]);
    free(l.paths);
    return rc;
  }
  if (l.n) qsort(l.paths, (size_t)l.n, sizeof(char *), cmp_str);
  *paths = l.paths;
  *n = l.n;
  return 0;
}

cr_fn_t *cr_registry_find(const cr_registry_t *r, const char *name) {
  for (int i = 0; i < r->nfns; i++)
    if (strcmp(r->fns[i]->name, name) == 0) return r->fns[i];
  return NULL;
}

cr_fn_t *cr_registry_add(cr_registry_t *r, const char *relpath) {
  size_t n = strlen(relpath);
  if (n < 5) return NULL;
  char *name = cr_xstrndup(relpath, n - 4);
  cr_fn_t *fn = cr_registry_find(r, name);
  if (fn) {
    free(name);
    return fn;
  }
  /* Every function keeps its slot in shared memory for the server's life
   * (in-flight work may still count into it): the table bounds how many
   * functions, removed ones included, a server run can have seen. */
  if (r->next_slot >= CR_SHM_MAX_FUNCTIONS) {
    free(name);
    return NULL;
  }
  if (r->nfns == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 16;
    r->fns = cr_xrealloc(r->fns, sizeof(cr_fn_t *) * (size_t)r->cap);
  }
  fn = cr_xcalloc(1, sizeof *fn);
  fn->name = name;
  fn->relpath = cr_xstrdup(relpath);
  fn->chunkname = cr_xmalloc(n + 2);
  snprintf(fn->chunkname, n + 2, "@%s", relpath);
  fn->slot = r->next_slot++;
  r->fns[r->nfns++] = fn;
  return fn;
}

void cr_registry_hash(const char *data, size_t len, char out[13]) {
  uint64_t h = cr_fnv1a(data, len);
  snprintf(out, 13, "%012llx", (unsigned long long)(h >> 16));
}

cr_fn_t *cr_registry_add_platform(cr_registry_t *r, const char *name) {
  char rel[300];
  snprintf(rel, sizeof rel, "%s.lua", name);
  cr_fn_t *fn = cr_registry_add(r, rel);
  if (fn) fn->platform = 1;
  return fn;
}

void cr_registry_version_hash(const char *source, size_t len, const cr_vm_modules_t *modules, char out[13]) {
  uint64_t h = cr_fnv1a(source, len);
  for (int i = 0; modules && i < modules->n; i++) {
    h = cr_fnv1a_more(h, modules->items[i].name, strlen(modules->items[i].name) + 1);
    h = cr_fnv1a_more(h, modules->items[i].source, modules->items[i].len);
  }
  snprintf(out, 13, "%012llx", (unsigned long long)(h >> 16));
}

cr_fnver_t *cr_registry_publish(cr_registry_t *r, cr_fn_t *fn, char *source, size_t len,
                                cr_settings_t *settings) {
  return cr_registry_publish_with(r, fn, source, len, settings, NULL);
}

cr_fnver_t *cr_registry_publish_with(cr_registry_t *r, cr_fn_t *fn, char *source, size_t len,
                                     cr_settings_t *settings, cr_vm_modules_t *modules) {
  (void)r;
  cr_fnver_t *v = cr_xcalloc(1, sizeof *v);
  v->fn = fn;
  v->number = ++fn->versions;
  /* The hash covers the modules too: a changed module is a new version. */
  cr_registry_version_hash(source, len, modules, v->hash);
  v->label_len = snprintf(v->label, sizeof v->label, "%u-%s", v->number, v->hash);
  if (modules) {
    v->modules = *modules;
    memset(modules, 0, sizeof *modules);
  }
  v->source = source;
  v->source_len = len;
  v->settings = *settings;
  cr_settings_defaults(settings); /* moved */
  v->loaded_ms = cr_wall_ms();
  v->refs = 1;
  if (fn->current) cr_fnver_unref(fn->current);
  fn->current = v;
  fn->removed = 0;
  free(fn->error);
  fn->error = NULL;
  return v;
}

void cr_registry_remove(cr_fn_t *fn) {
  if (fn->current) cr_fnver_unref(fn->current);
  fn->current = NULL;
  fn->removed = 1;
  fn->conflict = 0;
  free(fn->error);
  fn->error = NULL;
}

void cr_registry_fail(cr_fn_t *fn, const char *msg) {
  free(fn->error);
  fn->error = cr_xstrdup(msg);
  fn->error_ms = cr_wall_ms();
}

void cr_fnver_ref(cr_fnver_t *v) { v->refs++; }

void cr_fnver_unref(cr_fnver_t *v) {
  if (--v->refs > 0) return;
  free(v->source);
  cr_settings_free(&v->settings);
  cr_vm_modules_free(&v->modules);
  free(v);
}

/* --- changes as messages ---------------------------------------------------------------------- */

static int op_head(cr_buf_t *out, int op, const cr_fn_t *fn) {
  return cr_wire_u32(out, (uint32_t)op) || cr_wire_str(out, fn->relpath) || cr_wire_u32(out, (uint32_t)fn->platform) ||
         cr_wire_u32(out, (uint32_t)fn->slot);
}

int cr_registry_op_publish(cr_buf_t *out, const cr_fn_t *fn, const char *source, size_t len,
                           const cr_settings_t *settings, const cr_vm_modules_t *modules) {
  int rc = op_head(out, CR_OP_PUBLISH, fn) || cr_wire_u32(out, fn->versions + 1) || cr_wire_u64(out, cr_wall_ms()) ||
           cr_wire_bytes(out, source, len) || cr_settings_pack(settings, out) ||
           cr_modset_pack(modules, out);
  return rc ? CR_ENOMEM : 0;
}

int cr_registry_op_fail(cr_buf_t *out, const cr_fn_t *fn, const char *error) {
  return op_head(out, CR_OP_FAIL, fn) || cr_wire_str(out, error) || cr_wire_u64(out, cr_wall_ms()) ? CR_ENOMEM : 0;
}

int cr_registry_op_clear(cr_buf_t *out, const cr_fn_t *fn) { return op_head(out, CR_OP_CLEAR, fn) ? CR_ENOMEM : 0; }

int cr_registry_op_remove(cr_buf_t *out, const cr_fn_t *fn) { return op_head(out, CR_OP_REMOVE, fn) ? CR_ENOMEM : 0; }

int cr_registry_op_route(cr_buf_t *out) { return cr_wire_u32(out, CR_OP_ROUTE) ? CR_ENOMEM : 0; }

/* The function with this relpath, made with this slot if it is new. */
static cr_fn_t *fn_for(cr_registry_t *r, const char *relpath, int platform, int slot) {
  size_t n = strlen(relpath);
  if (n < 5) return NULL;
  char name[1100];
  snprintf(name, sizeof name, "%.*s", (int)(n - 4), relpath);
  cr_fn_t *fn = cr_registry_find(r, name);
  if (!fn) {
    fn = cr_registry_add(r, relpath);
    if (!fn) return NULL;
    fn->slot = slot;
    if (r->next_slot <= slot) r->next_slot = slot + 1;
  }
  fn->platform = platform;
  return fn;
}

int cr_registry_apply(cr_registry_t *r, const char *msg, size_t len, int *op, cr_fn_t **fnp) {
  cr_wire_reader_t rd;
  cr_wire_reader(&rd, msg, len);
  *op = (int)cr_wire_get_u32(&rd);
  *fnp = NULL;
  if (*op == CR_OP_ROUTE) {
    cr_registry_route(r);
    return rd.bad ? CR_EINVAL : 0;
  }
  char *relpath = cr_wire_get_bytes(&rd, NULL);
  int platform = (int)cr_wire_get_u32(&rd);
  int slot = (int)cr_wire_get_u32(&rd);
  if (rd.bad || !relpath || slot < 0) {
    free(relpath);
    return CR_EINVAL;
  }
  cr_fn_t *fn = fn_for(r, relpath, platform, slot);
  free(relpath);
  if (!fn) return CR_ENOMEM;
  *fnp = fn;
  if (*op == CR_OP_REMOVE) {
    cr_registry_remove(fn);
    return 0;
  }
  if (*op == CR_OP_CLEAR) {
    free(fn->error);
    fn->error = NULL;
    fn->conflict = 0;
    return 0;
  }
  if (*op == CR_OP_FAIL) {
    char *error = cr_wire_get_bytes(&rd, NULL);
    uint64_t ms = cr_wire_get_u64(&rd);
    if (rd.bad || !error) {
      free(error);
      return CR_EINVAL;
    }
    cr_registry_fail(fn, error);
    fn->error_ms = ms;
    free(error);
    return 0;
  }
  if (*op != CR_OP_PUBLISH) return CR_EINVAL;
  unsigned number = cr_wire_get_u32(&rd);
  uint64_t loaded_ms = cr_wire_get_u64(&rd);
  size_t slen;
  char *source = cr_wire_get_bytes(&rd, &slen);
  cr_settings_t settings;
  if (!source || cr_settings_unpack_from(&rd, &settings)) {
    free(source);
    return CR_EINVAL;
  }
  cr_vm_modules_t modules = {0};
  int rc = cr_modset_unpack_from(&rd, &modules);
  if (rc) {
    free(source);
    cr_settings_free(&settings);
    return rc;
  }
  fn->versions = number - 1;
  cr_fnver_t *v = cr_registry_publish_with(r, fn, source, slen, &settings, &modules);
  v->loaded_ms = loaded_ms;
  return 0;
}

int cr_registry_default_route(const char *name, char *out, size_t outlen) {
  size_t o = 0;
  const char *seg = name;
  while (seg && *seg) {
    const char *slash = strchr(seg, '/');
    size_t len = slash ? (size_t)(slash - seg) : strlen(seg);
    int last = slash == NULL;
    char piece[256];
    if (len >= sizeof piece) return CR_EINVAL;
    memcpy(piece, seg, len);
    piece[len] = '\0';
    const char *text = piece;
    char conv[260];
    if (last && strcmp(piece, "index") == 0) {
      text = NULL;
    } else if (len > 5 && strncmp(piece, "[...", 4) == 0 && piece[len - 1] == ']') {
      snprintf(conv, sizeof conv, "*%.*s", (int)(len - 5), piece + 4);
      text = conv;
    } else if (len > 2 && piece[0] == '[' && piece[len - 1] == ']') {
      snprintf(conv, sizeof conv, ":%.*s", (int)(len - 2), piece + 1);
      text = conv;
    }
    if (text) {
      int w = snprintf(out + o, outlen - o, "/%s", text);
      if (w < 0 || (size_t)w >= outlen - o) return CR_EINVAL;
      o += (size_t)w;
    }
    seg = slash ? slash + 1 : NULL;
  }
  if (o == 0) {
    if (outlen < 2) return CR_EINVAL;
    out[0] = '/';
    out[1] = '\0';
  }
  return 0;
}

static int cmp_routed(const void *a, const void *b) {
  const cr_fn_t *x = *(cr_fn_t *const *)a, *y = *(cr_fn_t *const *)b;
  /* The platform's functions first, then path order: nothing but the
   * folder decides, so every restart and `crescent check` agree. */
  if (x->platform != y->platform) return x->platform ? -1 : 1;
  return strcmp(x->relpath, y->relpath);
}

int cr_registry_route(cr_registry_t *r) {
  cr_router_t *router = cr_router_new();
  cr_fn_t **order = cr_xmalloc(sizeof(cr_fn_t *) * (size_t)r->nfns);
  if (r->nfns) { /* memcpy and qsort may not be given NULL, even for 0 bytes */
    memcpy(order, r->fns, sizeof(cr_fn_t *) * (size_t)r->nfns);
    qsort(order, (size_t)r->nfns, sizeof(cr_fn_t *), cmp_routed);
  }
  int conflicts = 0;
  for (int i = 0; i < r->nfns; i++) {
    cr_fn_t *fn = order[i];
    fn->routed = 0;
    if (fn->removed) continue;
    /* Conflicts are decided again at every rebuild: forget the last one. */
    if (fn->conflict) {
      free(fn->error);
      fn->error = NULL;
      fn->conflict = 0;
    }
    cr_route_spec_t def = {0}; /* the default route: no policy */
    char defpath[1024];
    const cr_route_spec_t *routes = &def;
    int nroutes = 1;
    if (fn->current && fn->current->settings.has_routes) {
      routes = fn->current->settings.routes;
      nroutes = fn->current->settings.nroutes;
    } else if (fn->current && fn->current->settings.ntriggers > 0) {
      continue; /* run by its triggers only: no default route (a `routes` setting can add one) */
    } else {
      if (cr_registry_default_route(fn->name, defpath, sizeof defpath) ||
          cr_router_check_pattern(defpath, (char[8]){0}, 8)) {
        if (!fn->error) cr_registry_fail(fn, "the file's name does not make a valid route path; give it a 'routes' setting");
        continue;
      }
      def.methods = CR_M_ANY;
      def.path = defpath;
    }
    /* Route by route: a conflict costs the loser that route only, so a
     * clash on GET /users does not take its POST /users too. */
    char msg[1024] = "";
    int lost = 0;
    for (int k = 0; k < nroutes; k++) {
      void *other = NULL;
      if (cr_router_probe(router, routes[k].methods, routes[k].path, &other) == CR_ECONFLICT && other != fn) {
        if (!lost) {
          char methods[80];
          cr_method_list(routes[k].methods, methods, sizeof methods);
          snprintf(msg, sizeof msg,
                   "route conflict: %s %s is also claimed by %s, which serves it (of two files claiming a route, "
                   "the one whose path sorts first wins)",
                   routes[k].methods == CR_M_ANY ? "ANY" : methods, routes[k].path, ((cr_fn_t *)other)->relpath);
        }
        lost++;
        continue;
      }
      char err[256];
      if (cr_router_add(router, routes[k].methods, routes[k].path, fn, &other, err, sizeof err) == 0) fn->routed = 1;
    }
    if (lost) {
      if (lost > 1) {
        size_t used = strlen(msg);
        snprintf(msg + used, sizeof msg - used, " (nor %d more of its routes)", lost - 1);
      }
      /* A load error (its current version keeps serving) is not
       * overwritten: it is the one to fix first, and the conflict is logged. */
      if (!fn->error) {
        cr_registry_fail(fn, msg);
        fn->conflict = 1;
      }
      conflicts++;
      /* Each conflict is logged once, not at every rebuild. */
      if (!r->quiet && (!fn->logged || strcmp(fn->logged, msg) != 0)) {
        cr_log(CR_LOG_ERROR, fn->name, NULL, "%s: %s", fn->relpath, msg);
        free(fn->logged);
        fn->logged = cr_xstrdup(msg);
      }
    }
  }
  free(order);
  cr_router_free(r->router);
  r->router = router;
  return conflicts;
}
