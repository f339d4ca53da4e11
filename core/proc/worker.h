/* worker.h - a worker process: one libuv loop serving HTTP and running
 * function instances (docs/architecture.md §2).
 *
 * The master forks workers after loading the functions; a worker inherits
 * the registry and the shared memory, opens its own SO_REUSEPORT listening
 * socket (so the kernel spreads connections over workers), and runs until
 * SIGTERM, when it stops accepting, finishes in-flight requests and exits 0.
 * Workers ignore SIGINT: the master decides how to stop. */
#ifndef CR_WORKER_H
#define CR_WORKER_H

#include "config.h"
#include "registry.h"
#include "shm.h"

typedef struct {
  int id;                     /* 0..N-1 */
  const cr_config_t *config;
  cr_registry_t *registry;    /* the worker's copy; it frees it on exit */
  cr_shm_t *shm;
  int chan_fd;                /* the master's changes to the registry arrive here */
} cr_worker_args_t;

/* Runs the worker; returns the process exit code. */
int cr_worker_main(cr_worker_args_t *args);

/* Makes a TCP socket bound to host:port with SO_REUSEPORT, listening if
 * listen_backlog > 0. Returns the fd or a negative errno. */
int cr_listen_socket(const char *host, int port, int reuseport, int listen_backlog);

#endif
