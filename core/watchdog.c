/* watchdog.c - the deadline thread. */
#include "watchdog.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <signal.h>
#include <sys/resource.h>
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

/* The slot. state: IDLE, ARMED, or FIRING while the thread sets the hook.
 * The worker arms and disarms with plain atomic stores and one
 * compare-and-swap (a mutex showed in per-request profiles); disarm waits
 * out a FIRING in progress, so once it returns the thread will not touch
 * the state again. */
enum { IDLE = 0, ARMED = 1, FIRING = 2 };

static struct {
  _Atomic(lua_State *) L;
  _Atomic uint64_t deadline_ns;
  _Atomic int state;
  pid_t started; /* the process that started the thread (a fork has none) */
  cr_watchdog_hook_t fire;
} wd;

static void sleep_until(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000ULL), (long)(ns % 1000000000ULL)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
  }
}

/* The thread gives up its share of the process's file descriptor table:
 * while a table is shared, every read, write and epoll_wait of the worker
 * takes and drops a reference on its file (atomic operations the kernel
 * skips for a single-threaded table), ~30 ns per request. Its private copy
 * is closed at once: it must not keep the worker's sockets open. It never
 * uses a descriptor. If either call fails, the table stays shared: slower,
 * still correct. */
static void unshare_files(void) {
  if (unshare(CLONE_FILES) != 0) return;
  if (close_range(0, ~0U, 0) != 0) {
    struct rlimit rl;
    int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
    for (int fd = 0; fd < max; fd++) close(fd);
  }
}

static void *watchdog_main(void *arg) {
  (void)arg;
  unshare_files();
  for (;;) {
    uint64_t now = cr_clock_ns();
    uint64_t wake = now + TICK_NS;
    if (atomic_load_explicit(&wd.state, memory_order_acquire) == ARMED) {
      uint64_t deadline = atomic_load_explicit(&wd.deadline_ns, memory_order_relaxed);
      if (now >= deadline) {
        int expected = ARMED;
        if (atomic_compare_exchange_strong_explicit(&wd.state, &expected, FIRING, memory_order_acq_rel,
                                                    memory_order_acquire)) {
          wd.fire(atomic_load_explicit(&wd.L, memory_order_relaxed));
          atomic_store_explicit(&wd.state, ARMED, memory_order_release);
        }
        wake = now + REFIRE_NS;
      } else if (deadline < wake) {
        wake = deadline;
      }
    }
    sleep_until(wake);
  }
  return NULL;
}

int cr_watchdog_start(cr_watchdog_hook_t fire) {
  if (wd.started == getpid()) return 0;
  atomic_store(&wd.state, IDLE);
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
  /* Re-arming an armed slot: disarm first. Only this thread leaves IDLE, so
   * an IDLE slot (the usual case: every resume disarms) needs no CAS. */
  if (atomic_load_explicit(&wd.state, memory_order_relaxed) != IDLE) cr_watchdog_disarm();
  atomic_store_explicit(&wd.L, L, memory_order_relaxed);
  atomic_store_explicit(&wd.deadline_ns, deadline_ns, memory_order_relaxed);
  atomic_store_explicit(&wd.state, ARMED, memory_order_release);
}

void cr_watchdog_disarm(void) {
  for (;;) {
    int expected = ARMED;
    if (atomic_compare_exchange_weak_explicit(&wd.state, &expected, IDLE, memory_order_acq_rel,
                                              memory_order_acquire))
      return;
    if (expected == IDLE) return;
    /* FIRING: the thread is setting the hook right now; it takes ~100 ns. */
    sched_yield();
  }
}
