/* watchdog.c - the deadline thread. */
#include "watchdog.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"

/* How often the thread looks at the slot when nothing close is due. A
 * deadline nearer than this is slept to exactly. */
#define TICK_NS 10000000ULL
/* Past the deadline the hook is set again this often until the slot is
 * disarmed: the running code may have cleared it a moment before (a hook
 * that ran a garbage collection removes itself). */
#define REFIRE_NS 2000000ULL

static struct {
  pthread_mutex_t lock;
  lua_State *L;
  uint64_t deadline_ns;
  int fired;
  pid_t started; /* the process that started the thread (a fork has none) */
  cr_watchdog_hook_t fire;
} wd = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void sleep_until(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000ULL), (long)(ns % 1000000000ULL)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
  }
}

static void *watchdog_main(void *arg) {
  (void)arg;
  for (;;) {
    uint64_t now = cr_clock_ns();
    uint64_t wake = now + TICK_NS;
    pthread_mutex_lock(&wd.lock);
    if (wd.L) {
      if (now >= wd.deadline_ns) {
        wd.fire(wd.L);
        wd.fired++;
        wake = now + REFIRE_NS;
      } else if (wd.deadline_ns < wake) {
        wake = wd.deadline_ns;
      }
    }
    pthread_mutex_unlock(&wd.lock);
    sleep_until(wake);
  }
  return NULL;
}

int cr_watchdog_start(cr_watchdog_hook_t fire) {
  if (wd.started == getpid()) return 0;
  /* After a fork the lock may have been held by the parent's thread. */
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  wd.lock = fresh;
  wd.L = NULL;
  wd.fire = fire;
  /* The thread must not take the process's signals. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  int rc = pthread_create(&t, &attr, watchdog_main, NULL);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc) return -rc;
  wd.started = getpid();
  return 0;
}

void cr_watchdog_arm(lua_State *L, uint64_t deadline_ns) {
  pthread_mutex_lock(&wd.lock);
  wd.L = L;
  wd.deadline_ns = deadline_ns;
  wd.fired = 0;
  pthread_mutex_unlock(&wd.lock);
}

void cr_watchdog_disarm(void) {
  pthread_mutex_lock(&wd.lock);
  wd.L = NULL;
  pthread_mutex_unlock(&wd.lock);
}
