/* master.h - the master process: loads functions, forks and supervises workers.
 *
 * The master never runs user code (docs/architecture.md §2). It reads the function
 * files and has a validator process run them (loader.h), builds the registry
 * and routes, makes the shared memory, reserves the listening port, forks the
 * workers, and then only supervises: it restarts a worker that exits (with
 * backoff when one keeps crashing), kills a worker whose invocation is past
 * its deadline plus a grace period (stuck inside C, where hooks cannot reach),
 * and on SIGTERM or SIGINT has the workers finish in-flight requests within
 * the drain timeout, then exits 0. A second SIGINT stops at once. */
#ifndef CR_MASTER_H
#define CR_MASTER_H

#include "config.h"

/* Runs `crescent serve`; returns the process exit code. */
int cr_master_run(cr_config_t *cfg);

#endif
