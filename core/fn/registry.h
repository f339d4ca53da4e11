/* registry.h - the functions crescent serves, each with versioned code.
 *
 * A function is a .lua file under the functions folder; its name is its path
 * without ".lua" ("users/[id]"). Each successful load of a file becomes a new
 * version (number, content hash, source, settings). A function points at its
 * current version, or at none if it never loaded; the last load error is kept
 * either way. Versions are reference counted: instances and invocations hold
 * the version they run, so replacing a version never pulls code from under a
 * running invocation (docs/architecture.md §6).
 *
 * Files and folders whose names start with '_' or '.', and the top-level lib/
 * folder, are modules for require(), not functions.
 *
 * The registry also builds the router from the current versions' routes.
 * When two functions claim the same route, the one whose file path sorts
 * first wins it, always (start-up, reloads, `crescent check`): the outcome
 * depends on the folder alone, never on the order files arrived in. The
 * loser keeps its other routes and gets an error naming both files. */
#ifndef CR_REGISTRY_H
#define CR_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "router.h"
#include "settings.h"
#include "vm.h"

typedef struct cr_fn_s cr_fn_t;

/* A module file a validation of a function asked require() for, and what it
 * found: the hash of its bytes, or "" when there was no file it could
 * require. The last validation's set decides whether a module change calls
 * for validating the function again (reload.c). */
typedef struct {
  char *relpath;
  char hash[13];
} cr_dep_t;
typedef struct {
  cr_dep_t *items;
  int n;
} cr_deps_t;
/* Adds relpath with hash unless relpath is there already. 0 or CR_ENOMEM
 * (the validator's result is built with checked allocations). */
int cr_deps_add(cr_deps_t *d, const char *relpath, const char *hash);
void cr_deps_free(cr_deps_t *d);

typedef struct cr_fnver_s {
  cr_fn_t *fn;
  unsigned number;
  char hash[13];      /* 12 hex digits of the hash of its source and modules */
  char label[24];     /* "<number>-<hash>", as X-Crescent-Version shows it */
  int label_len;
  char *source;       /* owned */
  size_t source_len;
  cr_settings_t settings;
  cr_vm_modules_t modules; /* the modules its init required, as they were */
  uint64_t loaded_ms; /* wall clock */
  int refs;           /* the registry's own reference counts as one */
} cr_fnver_t;

struct cr_fn_s {
  char *name;        /* "users/[id]" */
  char *relpath;     /* "users/[id].lua" */
  char *chunkname;   /* "@users/[id].lua", for Lua error messages */
  int slot;          /* index of this function's counters in shared memory */
  cr_fnver_t *current;
  char *error;       /* last load or routing error, or NULL */
  uint64_t error_ms;
  unsigned versions; /* versions made so far */
  int routed;        /* at least one of its routes is in the router */
  int conflict;      /* error is a route conflict (decided again at every rebuild) */
  int platform;        /* one of crescent's own (embedded, not a file) */
  int removed;         /* its file is gone: no version, no routes (kept for in-flight work) */
  char tried[13];      /* hash of the source last validated (not validated again unchanged) */
  cr_deps_t deps;      /* the module files that validation asked for (the master's) */
  char *logged;        /* the last error logged, so each is logged once */
};

typedef struct cr_registry_s {
  char *root;
  cr_fn_t **fns;
  int nfns;
  int cap;
  int next_slot;
  cr_router_t *router;
  int quiet;          /* do not log (workers replay the master's changes) */
} cr_registry_t;

/* Building the registry is set-up code: its allocations abort when memory
 * runs out (alloc.h), so no function here returns NULL for want of memory. */
cr_registry_t *cr_registry_new(const char *root);
void cr_registry_free(cr_registry_t *r);

/* Is relpath (relative to the functions folder) a function file? Not one
 * under lib/, with a part starting with '_' or '.', or named *_test.lua (a
 * test: crescent test runs those). */
int cr_registry_is_function_path(const char *relpath);
/* Lists the function files under root, sorted. Caller frees each and the array. */
int cr_registry_list(const char *root, char ***paths, int *n);

cr_fn_t *cr_registry_find(const cr_registry_t *r, const char *name);
/* The function of relpath (name = relpath without ".lua"), made without a version if new.
 * NULL for a bad path, or when the server has already seen
 * CR_SHM_MAX_FUNCTIONS functions. */
cr_fn_t *cr_registry_add(cr_registry_t *r, const char *relpath);

/* Returns the platform function name ("_/storage"), creating it if new. Its
 * source comes from the binary, not a file; it is routed before user
 * functions and may use /_/ routes. */
cr_fn_t *cr_registry_add_platform(cr_registry_t *r, const char *name);

/* Makes a new current version of fn. Takes ownership of source (malloc'd)
 * and of the settings' contents. Clears fn's error. */
cr_fnver_t *cr_registry_publish(cr_registry_t *r, cr_fn_t *fn, char *source, size_t len,
                                cr_settings_t *settings);
/* The same, with the modules its init required (their contents are moved). */
cr_fnver_t *cr_registry_publish_with(cr_registry_t *r, cr_fn_t *fn, char *source, size_t len,
                                     cr_settings_t *settings, cr_vm_modules_t *modules);
/* Its file is gone: it loses its version and its routes at the next route. */
void cr_registry_remove(cr_fn_t *fn);

/* Changes as messages. The master encodes every change, applies the
 * messages to its own registry with cr_registry_apply(), and sends the same
 * bytes to the workers, which apply them to their copies: one code path, so
 * every process ends with the same functions, versions and routes. */
enum { CR_OP_PUBLISH = 'P', CR_OP_FAIL = 'F', CR_OP_CLEAR = 'C', CR_OP_REMOVE = 'R', CR_OP_ROUTE = 'T' };
/* fn's slot and name with a new version (number fn->versions + 1). */
int cr_registry_op_publish(cr_buf_t *out, const cr_fn_t *fn, const char *source, size_t len,
                           const cr_settings_t *settings, const cr_vm_modules_t *modules);
int cr_registry_op_fail(cr_buf_t *out, const cr_fn_t *fn, const char *error);
/* fn validated again to its current version (same hash): its load error is
 * gone, and no new version (nor cold start) is made. */
int cr_registry_op_clear(cr_buf_t *out, const cr_fn_t *fn);
int cr_registry_op_remove(cr_buf_t *out, const cr_fn_t *fn);
int cr_registry_op_route(cr_buf_t *out);
/* Applies one message; *fn is the function it was about (NULL for route). */
int cr_registry_apply(cr_registry_t *r, const char *msg, size_t len, int *op, cr_fn_t **fn);
/* Records a load error for fn; its current version (if any) keeps serving. */
void cr_registry_fail(cr_fn_t *fn, const char *msg);

void cr_fnver_ref(cr_fnver_t *v);
void cr_fnver_unref(cr_fnver_t *v);

/* Rebuilds the router. Functions are routed in a fixed order: the
 * platform's functions first, then by path (strcmp of their relpaths:
 * a.lua before b.lua), whatever order they loaded in, so a restart, a
 * rescan and `crescent check` all pick the same winner. A route that
 * conflicts with one routed before is left out, and its function gets an
 * error naming the route and both files (logged once unless quiet); its
 * other routes are routed. Functions without a version are routed on their
 * default path (they answer 503); a version with triggers and no `routes`
 * gets no route (it runs on its triggers only). Returns the number of
 * functions with a conflict. */
int cr_registry_route(cr_registry_t *r);

/* The default route pattern for a function name. "users/[id]" gives
 * "/users/:id", "index" gives "/", and "docs/[...path]" gives a final
 * wildcard segment named path. Writes into out. */
int cr_registry_default_route(const char *name, char *out, size_t outlen);

/* 12 hex digits: the top 48 bits of cr_fnv1a(data) (hash.h). */
void cr_registry_hash(const char *data, size_t len, char out[13]);
/* The hash a version of this source with these modules gets. */
void cr_registry_version_hash(const char *source, size_t len, const cr_vm_modules_t *modules, char out[13]);

#endif
