/* watchdog.c - the deadline thread. */
#include "watchdog.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <errno.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
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

/* How the thread is made. A pthread makes the worker a multi-threaded
 * process for glibc and the kernel, and both then pay on every request:
 * glibc wraps each read and write in the cancellation bookkeeping (two
 * atomic operations, ~50 ns per request in perf), and the kernel takes and
 * drops a reference on the file of each read, write and epoll_wait while the
 * descriptor table is shared (~30 ns). So on x86-64 the thread is made with
 * clone() directly: a thread of the process (CLONE_THREAD) sharing its
 * memory, that glibc does not know about, and that unshares its descriptor
 * table at once.
 * Such a thread must not touch thread-local storage (errno, malloc, stdio,
 * anything that may fail and set errno): it reads the clock (the vDSO,
 * which cannot fail for CLOCK_MONOTONIC), sleeps and closes descriptors
 * through raw system calls, and sets a Lua hook (no allocation). Under the sanitizers, which
 * must know every thread, and elsewhere, it is a pthread that unshares its
 * descriptor table. Either way its copy of the table is closed at once: it
 * must not keep the worker's sockets open, and it never uses a descriptor. */
#if defined(__x86_64__) && !defined(CRESCENT_SANITIZE)
#define WD_RAW_THREAD 1
#endif

#ifdef WD_RAW_THREAD
static long raw_syscall4(long n, long a, long b, long c, long d) {
  long ret;
  register long r10 __asm__("r10") = d;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
  return ret;
}

static void sleep_until(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000ULL), (long)(ns % 1000000000ULL)};
  while (raw_syscall4(SYS_clock_nanosleep, CLOCK_MONOTONIC, TIMER_ABSTIME, (long)&ts, 0) != 0) {
  }
}

static void close_own_table(void) {
  if (raw_syscall4(SYS_unshare, CLONE_FILES, 0, 0, 0) != 0) return; /* shared: slower, still correct */
  if (raw_syscall4(SYS_close_range, 0, (long)~0U, 0, 0) == 0) return;
  for (long fd = 0; fd < 65536; fd++) raw_syscall4(SYS_close, fd, 0, 0, 0);
}
#else
static void sleep_until(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000ULL), (long)(ns % 1000000000ULL)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
  }
}

static void close_own_table(void) {
  if (unshare(CLONE_FILES) != 0) return; /* shared: slower, still correct */
  if (close_range(0, ~0U, 0) != 0) {
    struct rlimit rl;
    int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
    for (int fd = 0; fd < max; fd++) close(fd);
  }
}
#endif

static void *watchdog_main(void *arg) {
  (void)arg;
  close_own_table();
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

#ifdef WD_RAW_THREAD
static int raw_main(void *arg) {
  watchdog_main(arg);
  return 0;
}
#endif

/* Starts the thread with every signal blocked: it must not take the process's. */
static int start_thread(void) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc;
#ifdef WD_RAW_THREAD
  size_t size = 64 * 1024, guard = 4096;
  char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) {
    rc = -errno;
  } else {
    mprotect(stack, guard, PROT_NONE);
    /* CLONE_FILES, then unshared by the thread: valgrind knows no other thread clone. */
    int tid = clone(raw_main, stack + size,
                    CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM, NULL);
    rc = tid > 0 ? 0 : -errno;
    if (rc) munmap(stack, size);
  }
#else
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  rc = -pthread_create(&t, &attr, watchdog_main, NULL);
  pthread_attr_destroy(&attr);
#endif
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc;
}

int cr_watchdog_start(cr_watchdog_hook_t fire) {
  if (wd.started == getpid()) return 0;
  atomic_store(&wd.state, IDLE);
  wd.fire = fire;
  int rc = start_thread();
  if (rc) return rc;
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
