/* loader.h - validating function files: compile, run init, read settings.
 *
 * Validation runs the file's top-level code, which is user code, so the
 * server never does it in the master: a job forks a short-lived validator
 * process that loads each file in a scratch sandboxed state and reports back
 * over a pipe, bounded by a timeout (a function stuck inside C costs the
 * validator, nothing else: a new one goes on with the next file). The job is
 * asynchronous, so the master keeps supervising while user code loads; it
 * polls cr_loader_fd() and calls cr_loader_step(). cr_loader_run() is the
 * blocking form for start-up and `crescent check`.
 *
 * The master reads the sources itself and hands them to the validator, so a
 * version's source is exactly the bytes that were validated. The modules a
 * function's init required are returned too (their sources as read then):
 * they become part of its version.
 *
 * What require() may read (cr_loader_read_module): functions are not
 * modules. A module name maps to NAME.lua or NAME/init.lua (dots are
 * folders); a path that would be a function's file (core/fn/registry.c's rule:
 * every .lua file that is not under the top-level lib/ folder and has no
 * folder or file name starting with '_' or '.') is refused without being
 * opened, and so is a file that, once every symlink is followed, is not a
 * regular module .lua file inside the functions folder (a symlink in lib/ to
 * a function, a folder symlinked out of the folder, a FIFO). A function's
 * settings and env can therefore only be read by that function. Lua
 * bytecode (a file starting with ESC) is refused, as a module or a function,
 * with an error naming the file. */
#ifndef CR_LOADER_H
#define CR_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "registry.h"
#include "settings.h"
#include "vm.h"

typedef struct {
  const char *relpath;     /* in: the file, relative to root */
  const char *source;      /* in: its bytes */
  size_t len;
  int platform;            /* in: one of the platform's own functions (may route under /_/) */
  int ok;                  /* out */
  cr_settings_t settings;  /* out, when ok */
  cr_vm_modules_t modules; /* out, when ok: modules its init required */
  char *error;             /* out, when not ok: "file:line: message" (malloc'd) */
  cr_deps_t deps;          /* out, ok or not: the module files its init asked for */
} cr_load_t;

/* The source of the module file ROOT/relpath (malloc'd) for require, under
 * the rule above. Returns 0; CR_ENOENT when there is no such file (err not
 * set); CR_EINVAL when it may not be required (err says why); CR_ENOMEM or
 * CR_EIO. */
int cr_loader_read_module(const char *root, const char *relpath, char **src, size_t *len, char *err, size_t errlen);

/* The same as a cr_vm_reader_fn (vm.h; ud unused): the reader every vm
 * that runs functions is given. */
int cr_loader_module_reader(void *ud, const char *root, const char *relpath, char **src, size_t *len, char *err,
                            size_t errlen);

/* The platform modules the validators' states know (a cr_vm_preload_fn and
 * its ud: the stdlib's, set by the process before it validates anything;
 * the stdlib is above this layer). Without it they know only json. The ud
 * is used in forked validators too: it must stay valid in this process. */
void cr_loader_set_preload(cr_vm_preload_fn preload, void *ud);

/* Reads ROOT/relpath into a malloc'd buffer. */
int cr_loader_read(const char *root, const char *relpath, char **src, size_t *len, char *err, size_t errlen);

/* Validates one file in this process, its init limited to init_timeout
 * seconds. Returns 0 or an error with err set. */
int cr_loader_validate(const char *root, const char *relpath, const char *src, size_t len,
                       double init_timeout, cr_settings_t *settings, char *err, size_t errlen);

/* The same for one of the platform's own functions (no folder, may route under /_/). */
int cr_loader_validate_platform(const char *relpath, const char *src, size_t len, cr_settings_t *settings,
                                char *err, size_t errlen);

typedef struct cr_loader_job_s cr_loader_job_t;

/* Starts validating loads[0..n) (which must stay valid until the job is
 * freed). Never NULL (set-up code: alloc.h). */
cr_loader_job_t *cr_loader_start(const char *root, cr_load_t *loads, int n, double init_timeout);
/* The pipe to poll for input (-1 between validator processes). */
int cr_loader_fd(const cr_loader_job_t *job);
/* When to call cr_loader_step() even without input (a timeout). */
uint64_t cr_loader_deadline(const cr_loader_job_t *job);
/* Takes what arrived, handles timeouts and dead validators. Returns 1 once
 * every entry is filled, 0 while more is to come. */
int cr_loader_step(cr_loader_job_t *job);
/* Kills a validator still running and frees the job. */
/* Stops the validator (if still running) and frees the job. */
void cr_loader_free(cr_loader_job_t *job);
/* Frees the job, leaving its validator alone: for a forked child, to which
 * the validator is not a child. */
void cr_loader_forget(cr_loader_job_t *job);

/* Validates n files and waits for the result. Always fills every entry;
 * returns 0. */
int cr_loader_run(const char *root, cr_load_t *loads, int n, double init_timeout);

void cr_load_clear(cr_load_t *l);

#endif
