/* loader.h - validating function files: compile, run init, read settings.
 *
 * Validation runs the file's top-level code, which is user code, so the
 * server never does it in the master: cr_loader_run() forks a short-lived
 * validator process that loads each file in a scratch sandboxed state and
 * reports settings or errors back over a pipe, bounded by a timeout (a
 * function stuck inside C costs the validator, nothing else). `crescent check`
 * calls cr_loader_validate() directly: it is a command, not the server.
 *
 * The master reads the sources itself and hands them to the validator, so a
 * version's source is exactly the bytes that were validated. */
#ifndef CR_LOADER_H
#define CR_LOADER_H

#include <stddef.h>

#include "settings.h"

typedef struct {
  const char *relpath;   /* in: the file, relative to root */
  const char *source;    /* in: its bytes */
  size_t len;
  int platform;          /* in: one of the platform's own functions (may route under /_/) */
  int ok;                /* out */
  cr_settings_t settings;/* out, when ok */
  char *error;           /* out, when not ok: "file:line: message" (malloc'd) */
} cr_load_t;

/* Reads ROOT/relpath into a malloc'd buffer. */
int cr_loader_read(const char *root, const char *relpath, char **src, size_t *len, char *err, size_t errlen);

/* Validates one file in this process, its init limited to init_timeout
 * seconds. Returns 0 or an error with err set. */
int cr_loader_validate(const char *root, const char *relpath, const char *src, size_t len,
                       double init_timeout, cr_settings_t *settings, char *err, size_t errlen);
int cr_loader_validate_platform(const char *relpath, const char *src, size_t len, cr_settings_t *settings,
                                char *err, size_t errlen);

/* Validates n files in a forked validator process. A file whose init is
 * stuck where hooks cannot stop it (inside a C call) costs the validator:
 * after init_timeout + 5 s it is killed and a new one goes on with the next
 * file. Always fills every entry. */
int cr_loader_run(const char *root, cr_load_t *loads, int n, double init_timeout);

void cr_load_clear(cr_load_t *l);

#endif
