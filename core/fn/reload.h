/* reload.h - the functions folder becomes versions (docs/architecture.md §6).
 *
 * A reload scans the folder, reads every function file, and picks the ones
 * to validate: new files, changed files, files whose required modules
 * changed (a version carries the modules its init required), and, when
 * forced (SIGHUP, start-up), all of them. Contents validated before and
 * unchanged are not validated again, so a broken file is logged once. The
 * validator runs as an asynchronous job (loader.h), so the master keeps
 * supervising meanwhile. When the job ends, each result becomes a change,
 * encoded as a registry message (registry.h): a new version, a load error
 * (the previous version keeps serving), or a removal for a file that is gone;
 * then a route rebuild. The changes are applied to the master's registry and
 * handed back as frames ([u32 length][message]...) for the workers.
 *
 * The platform's own functions (embedded, not files) join the first load. */
#ifndef CR_RELOAD_H
#define CR_RELOAD_H

#include <stdint.h>

#include "buf.h"
#include "registry.h"

typedef struct cr_reload_s cr_reload_t;

typedef struct {
  const char *name;    /* "_/storage" */
  const char *source;
  size_t len;
  /* env entries to add to its settings (NULL-terminated name, value pairs) */
  const char *const *env;
} cr_platform_fn_t;

cr_reload_t *cr_reload_new(cr_registry_t *registry, double init_timeout, const cr_platform_fn_t *platform,
                           int nplatform);
void cr_reload_free(cr_reload_t *rl);
/* The same in a forked worker: the master's validator is not its to stop. */
void cr_reload_forget(cr_reload_t *rl);

/* Scans and starts validating what needs it. Returns 1 if a validation job
 * runs (poll cr_reload_fd, then cr_reload_step), 0 if the scan alone was the
 * whole reload (its changes, if any, are ready for cr_reload_step). */
int cr_reload_start(cr_reload_t *rl, int force);
/* The same, leaving alone the files busy() says are being written. */
int cr_reload_start_skipping(cr_reload_t *rl, int force, int (*busy)(const char *relpath, void *data), void *data);
int cr_reload_busy(const cr_reload_t *rl);
int cr_reload_fd(const cr_reload_t *rl);
uint64_t cr_reload_deadline(const cr_reload_t *rl);
/* Counts from now on, in shm: reload rounds finished, versions published, validations that
 * failed (a load error). */
struct cr_shm_s;
void cr_reload_set_shm(cr_reload_t *rl, struct cr_shm_s *shm);
/* Moves the reload on. Returns 1 when it is finished: the changes are then
 * applied to the registry and appended to frames (nothing if nothing
 * changed). */
int cr_reload_step(cr_reload_t *rl, cr_buf_t *frames);

/* Appends one message as a frame. */
int cr_reload_frame(cr_buf_t *frames, const cr_buf_t *msg);

#endif
