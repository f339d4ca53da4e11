/* redisd.h - the redis-server crescent starts and owns (`--redis auto`).
 *
 * The master runs Debian's redis-server as a child, listening only on a unix
 * socket in the data folder (no TCP port), with AOF persistence (appendonly
 * yes, appendfsync everysec), and stops it cleanly (SIGTERM: Redis syncs its
 * AOF) after the workers have drained. A lock on DATA/crescent.lock keeps two
 * servers off one data folder; with the lock held, a redis-server left over
 * by a previous run (its pid file still naming a live redis-server) is
 * stopped, and stale socket and pid files are removed. If the child dies,
 * the master starts it again; workers reconnect on their own. */
#ifndef CR_REDISD_H
#define CR_REDISD_H

#include <stddef.h>
#include <sys/types.h>

typedef struct {
  pid_t pid;
  int lock_fd;
  char dir[1024];    /* absolute data folder */
  char sock[1024];   /* the unix socket */
  char url[1100];    /* unix://<sock> */
  int restarts;
} cr_redisd_t;

/* Locks the data folder, clears what a previous run left, starts
 * redis-server and waits (at most 10 s) until it answers. */
int cr_redisd_start(cr_redisd_t *d, const char *data_dir, char *err, size_t errlen);
/* The child exited (status from waitpid): start it again, without waiting
 * for it to answer. */
int cr_redisd_restart(cr_redisd_t *d, char *err, size_t errlen);
/* SIGTERM, wait (at most 10 s, then SIGKILL), unlock. */
void cr_redisd_stop(cr_redisd_t *d);

#endif
