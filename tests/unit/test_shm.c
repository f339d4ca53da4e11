/* test_shm.c - the shared counters region (core/base/shm.c): counters, the
 * histogram, and what each worker holds (concurrency places, instances,
 * stream trigger places), taken back from a worker that died holding them. Real processes, real
 * SIGKILL. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "shm.h"

static void test_create_zeroed(void **state) {
  (void)state;
  cr_shm_t *shm = cr_shm_create(3);
  assert_non_null(shm);
  assert_int_equal(shm->magic, 0x6372657363656e74ULL);
  assert_int_equal(shm->nworkers, 3);
  for (int w = 0; w < CR_SHM_MAX_WORKERS; w++) {
    assert_int_equal(atomic_load(&shm->workers[w].pid), 0);
    assert_int_equal(atomic_load(&shm->workers[w].requests), 0);
    assert_int_equal(atomic_load(&shm->workers[w].busy_since_ns), 0);
  }
  for (int f = 0; f < CR_SHM_MAX_FUNCTIONS; f++) {
    assert_int_equal(atomic_load(&shm->fns[f].invocations), 0);
    assert_int_equal(cr_shm_busy(shm, f), 0);
    assert_int_equal(cr_shm_instances(shm, f), 0);
    for (int b = 0; b < CR_SHM_HIST_BUCKETS; b++) assert_int_equal(atomic_load(&shm->fns[f].hist[b]), 0);
  }
  /* The last function slot is writable (the mapping covers the whole struct). */
  atomic_fetch_add(&shm->fns[CR_SHM_MAX_FUNCTIONS - 1].errors, 7);
  assert_int_equal(atomic_load(&shm->fns[CR_SHM_MAX_FUNCTIONS - 1].errors), 7);
  cr_shm_destroy(shm);
  cr_shm_destroy(NULL);
}

static void test_shared_across_fork(void **state) {
  (void)state;
  cr_shm_t *shm = cr_shm_create(2);
  assert_non_null(shm);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    for (int i = 0; i < 1000; i++) {
      atomic_fetch_add(&shm->fns[5].invocations, 1);
      assert_int_equal(cr_shm_take(shm, 5, 1, 100000), 0);
    }
    atomic_store(&shm->workers[1].pid, (int)getpid());
    atomic_fetch_add(&shm->fns[5].hist[cr_shm_hist_bucket(3.0)], 1);
    _exit(0);
  }
  for (int i = 0; i < 1000; i++) assert_int_equal(cr_shm_take(shm, 5, 0, 100000), 0);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_int_equal(atomic_load(&shm->fns[5].invocations), 1000);
  assert_int_equal(cr_shm_busy(shm, 5), 2000); /* both processes' places, none lost */
  for (int i = 0; i < 1000; i++) cr_shm_give(shm, 5, 0);
  assert_int_equal(cr_shm_busy(shm, 5), 1000); /* the child's are still held: it never gave them back */
  assert_int_equal(atomic_load(&shm->workers[1].pid), pid);
  assert_int_equal(atomic_load(&shm->fns[5].hist[5]), 1); /* 3 ms: the <= 5 ms bucket */
  cr_shm_destroy(shm);
}

static int bucket_of(double ms) { return cr_shm_hist_bucket(ms); }

static void test_histogram_buckets(void **state) {
  (void)state;
  for (int i = 1; i < CR_SHM_HIST_BUCKETS; i++)
    assert_true(cr_shm_hist_bounds_ms[i] > cr_shm_hist_bounds_ms[i - 1]);
  assert_true(cr_shm_hist_bounds_ms[CR_SHM_HIST_BUCKETS - 1] > 1e100);
  assert_int_equal(bucket_of(0), 0);
  assert_int_equal(bucket_of(-5), 0);
  assert_int_equal(bucket_of(0.1), 0); /* upper bounds are inclusive (Prometheus "le") */
  assert_int_equal(bucket_of(0.1001), 1);
  assert_int_equal(bucket_of(1), 3);
  assert_int_equal(bucket_of(1.5), 4);
  assert_int_equal(bucket_of(5000), 12);
  assert_int_equal(bucket_of(5000.5), 13);
  assert_int_equal(bucket_of(1e12), 13);
  assert_int_equal(bucket_of(INFINITY), 13);
  for (int i = 0; i < CR_SHM_HIST_BUCKETS - 1; i++) assert_int_equal(bucket_of(cr_shm_hist_bounds_ms[i]), i);
  assert_int_equal(bucket_of(7), 6);
}


/* --- what a worker holds ------------------------------------------------------------------------ */

static void test_places_limit(void **state) {
  (void)state;
  cr_shm_t *shm = cr_shm_create(3);
  assert_non_null(shm);
  assert_int_equal(cr_shm_take(shm, 7, 0, 2), 0);
  assert_int_equal(cr_shm_take(shm, 7, 2, 2), 0);
  assert_int_equal(cr_shm_take(shm, 7, 1, 2), CR_ELIMIT); /* two held across the workers */
  assert_int_equal(cr_shm_take(shm, 7, 0, 2), CR_ELIMIT);
  assert_int_equal(cr_shm_take(shm, 8, 1, 1), 0);          /* another function has its own */
  assert_int_equal(cr_shm_busy(shm, 7), 2);
  assert_int_equal(cr_shm_busy(shm, 8), 1);
  cr_shm_give(shm, 7, 2);
  assert_int_equal(cr_shm_busy(shm, 7), 1);
  assert_int_equal(cr_shm_take(shm, 7, 1, 2), 0);
  /* A give without a take changes nothing. */
  cr_shm_give(shm, 9, 0);
  assert_int_equal(cr_shm_busy(shm, 9), 0);
  /* Out of range: refused, never written. */
  assert_int_equal(cr_shm_take(shm, CR_SHM_MAX_FUNCTIONS, 0, 5), CR_EINVAL);
  assert_int_equal(cr_shm_take(shm, -1, 0, 5), CR_EINVAL);
  assert_int_equal(cr_shm_take(shm, 7, 3, 5), CR_EINVAL); /* only 3 workers */
  assert_int_equal(cr_shm_take(NULL, 7, 0, 5), CR_EINVAL);
  cr_shm_instances_add(shm, 7, 0, 3);
  cr_shm_instances_add(shm, 7, 2, 2);
  cr_shm_instances_add(shm, 7, 0, -1);
  assert_int_equal(cr_shm_instances(shm, 7), 4);
  cr_shm_destroy(shm);
}

/* A child process stands for a worker: it takes places and makes instances,
 * says so through a pipe, and is killed with SIGKILL while holding them. */
static pid_t holder(cr_shm_t *shm, int worker, const int *slots, int nslots, int places_each) {
  int p[2];
  assert_int_equal(pipe(p), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(p[0]);
    for (int k = 0; k < nslots; k++) {
      for (int i = 0; i < places_each; i++)
        if (cr_shm_take(shm, slots[k], worker, 1000)) _exit(2);
      cr_shm_instances_add(shm, slots[k], worker, places_each + 1);
    }
    char c = 'x';
    if (write(p[1], &c, 1) != 1) _exit(3);
    for (;;) pause();
  }
  close(p[1]);
  char c;
  assert_int_equal(read(p[0], &c, 1), 1);
  close(p[0]);
  return pid;
}

static void kill_and_reap(pid_t pid) {
  assert_int_equal(kill(pid, SIGKILL), 0);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

static void test_reclaim_after_sigkill(void **state) {
  (void)state;
  cr_shm_t *shm = cr_shm_create(2);
  assert_non_null(shm);
  /* Worker 1 dies holding the only place of slot 3 and two of slot 4. */
  int one[] = {3};
  pid_t a = holder(shm, 1, one, 1, 1);
  int two[] = {4};
  pid_t b = holder(shm, 0, two, 1, 2); /* worker 0 lives on */
  assert_int_equal(cr_shm_take(shm, 3, 0, 1), CR_ELIMIT);
  kill_and_reap(a);
  /* Dead, not reclaimed yet: still held (that was the bug, forever). */
  assert_int_equal(cr_shm_take(shm, 3, 0, 1), CR_ELIMIT);
  assert_int_equal(cr_shm_busy(shm, 3), 1);
  atomic_store(&shm->workers[1].busy_since_ns, 123);
  atomic_store(&shm->workers[1].deadline_ns, 456);
  cr_shm_reclaimed_t r;
  cr_shm_reclaim(shm, 1, 10, &r);
  assert_int_equal(r.places, 1);
  assert_int_equal(r.instances, 2);
  assert_int_equal(r.lock, 0);
  assert_int_equal(atomic_load(&shm->workers[1].busy_since_ns), 0);
  assert_int_equal(atomic_load(&shm->workers[1].deadline_ns), 0);
  assert_int_equal(cr_shm_busy(shm, 3), 0);
  assert_int_equal(cr_shm_instances(shm, 3), 0);
  /* Exactly that worker's: the live one's places of slot 4 stay. */
  assert_int_equal(cr_shm_busy(shm, 4), 2);
  assert_int_equal(cr_shm_instances(shm, 4), 3);
  assert_int_equal(cr_shm_take(shm, 3, 0, 1), 0);
  cr_shm_give(shm, 3, 0);
  /* A new worker in index 1 starts at zero and takes the place. */
  assert_int_equal(cr_shm_take(shm, 3, 1, 1), 0);
  assert_int_equal(cr_shm_busy(shm, 3), 1);
  cr_shm_give(shm, 3, 1);
  kill_and_reap(b);
  cr_shm_reclaim(shm, 0, 10, &r);
  assert_int_equal(r.places, 2);
  assert_int_equal(r.instances, 3);
  assert_int_equal(cr_shm_busy(shm, 4), 0);
  /* Reclaiming again finds nothing. */
  cr_shm_reclaim(shm, 0, 10, &r);
  assert_int_equal(r.places + r.instances + r.lock, 0);
  cr_shm_destroy(shm);
}

/* Several functions at once, and a worker that died inside the admission
 * lock (a SIGKILL can land on any instruction). */
static void test_reclaim_several_functions_and_the_lock(void **state) {
  (void)state;
  cr_shm_t *shm = cr_shm_create(4);
  assert_non_null(shm);
  int slots[] = {0, 1, 2, 4095};
  pid_t a = holder(shm, 2, slots, 4, 3);
  for (int k = 0; k < 4; k++) assert_int_equal(cr_shm_busy(shm, slots[k]), 3);
  /* As if it died between taking the lock of slot 1 and letting it go. */
  atomic_store(&shm->held[1].lock, 2 + 1);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(cr_shm_take(shm, 1, 0, 1000), CR_ELIMIT); /* waits a moment, never forever */
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double waited_ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
  assert_true(waited_ms < 200);
  /* Another worker's lock is not touched by the reclaim. */
  atomic_store(&shm->held[2].lock, 3 + 1);
  kill_and_reap(a);
  cr_shm_reclaimed_t r;
  cr_shm_reclaim(shm, 2, CR_SHM_MAX_FUNCTIONS + 10, &r); /* nslots is bounded */
  assert_int_equal(r.places, 12);
  assert_int_equal(r.instances, 16);
  assert_int_equal(r.lock, 1);
  assert_int_equal(atomic_load(&shm->held[1].lock), 0);
  assert_int_equal(atomic_load(&shm->held[2].lock), 4);
  for (int k = 0; k < 4; k++) assert_int_equal(cr_shm_busy(shm, slots[k]), 0);
  assert_int_equal(cr_shm_take(shm, 1, 0, 1), 0);
  atomic_store(&shm->held[2].lock, 0);
  cr_shm_destroy(shm);
}

/* Processes racing for the places of one function never hold more than the
 * limit at once, and every place given back is free again. */
static void test_places_race(void **state) {
  (void)state;
  enum { NPROC = 4, ROUNDS = 20000, LIMIT = 3 };
  cr_shm_t *shm = cr_shm_create(NPROC);
  assert_non_null(shm);
  _Atomic int64_t *inside = (_Atomic int64_t *)&shm->fns[11].invocations; /* a spare shared word */
  _Atomic int64_t *over = (_Atomic int64_t *)&shm->fns[11].errors;
  pid_t pids[NPROC];
  for (int w = 0; w < NPROC; w++) {
    pids[w] = fork();
    assert_true(pids[w] >= 0);
    if (pids[w] == 0) {
      int got = 0;
      for (int i = 0; i < ROUNDS; i++) {
        if (cr_shm_take(shm, 10, w, LIMIT)) continue;
        got++;
        if (atomic_fetch_add(inside, 1) + 1 > LIMIT) atomic_fetch_add(over, 1);
        atomic_fetch_sub(inside, 1);
        cr_shm_give(shm, 10, w);
      }
      _exit(got > 0 ? 0 : 1);
    }
  }
  for (int w = 0; w < NPROC; w++) {
    int status = 0;
    assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  assert_int_equal(atomic_load(over), 0);
  assert_int_equal(cr_shm_busy(shm, 10), 0);
  assert_int_equal(atomic_load(&shm->held[10].lock), 0);
  cr_shm_destroy(shm);
}

/* Trigger meters: one entry per label, found again by any caller; a label too long, or one
 * past CR_SHM_TRIGGERS, gets none; readers see only labelled entries, in order. */
static void test_trigger_entries(void **state) {
  (void)state;
  cr_shm_t *shm = cr_shm_create(2);
  assert_non_null(shm);
  cr_shm_trig_t *a = cr_shm_trig(shm, 3, "queue:orders");
  cr_shm_trig_t *b = cr_shm_trig(shm, 3, "kv:default");
  assert_non_null(a);
  assert_non_null(b);
  assert_ptr_not_equal(a, b);
  assert_ptr_equal(cr_shm_trig(shm, 3, "queue:orders"), a);
  assert_ptr_not_equal(cr_shm_trig(shm, 4, "queue:orders"), a); /* another function's */
  atomic_fetch_add(&a->records, 5);
  assert_int_equal(atomic_load(&cr_shm_trig(shm, 3, "queue:orders")->records), 5);
  char longl[CR_SHM_TRIGGER_LABEL + 1];
  memset(longl, 'x', sizeof longl - 1);
  longl[sizeof longl - 1] = '\0';
  assert_null(cr_shm_trig(shm, 3, longl));
  for (int i = 2; i < CR_SHM_TRIGGERS; i++) {
    char l[32];
    snprintf(l, sizeof l, "queue:q%d", i);
    assert_non_null(cr_shm_trig(shm, 3, l));
  }
  assert_null(cr_shm_trig(shm, 3, "queue:onetoomany"));
  assert_ptr_equal(cr_shm_trig(shm, 3, "kv:default"), b); /* still found when full */
  cr_shm_trig_t *seen[CR_SHM_TRIGGERS];
  assert_int_equal(cr_shm_trigs(shm, 3, seen, CR_SHM_TRIGGERS), CR_SHM_TRIGGERS);
  assert_ptr_equal(seen[0], a);
  assert_string_equal(seen[1]->label, "kv:default");
  assert_int_equal(cr_shm_trigs(shm, 5, seen, CR_SHM_TRIGGERS), 0);
  assert_null(cr_shm_trig(shm, CR_SHM_MAX_FUNCTIONS, "queue:x"));
  assert_null(cr_shm_trig(NULL, 0, "queue:x"));
  cr_shm_destroy(shm);
}

/* A stream trigger's places: bounded across workers, given back, taken back from a worker
 * SIGKILLed holding them (and its lock), the others' left alone; unlabelled entries and
 * pointers outside the region are refused. */
static void test_trigger_places(void **state) {
  (void)state;
  cr_shm_t *shm = cr_shm_create(3);
  assert_non_null(shm);
  cr_shm_trig_t *t = cr_shm_trig(shm, 7, "queue:jobs");
  cr_shm_trig_t *u = cr_shm_trig(shm, 7, "kv:default");
  assert_non_null(t);
  assert_non_null(u);
  assert_int_equal(cr_shm_trig_take(shm, t, 0, 2), 0);
  assert_int_equal(cr_shm_trig_take(shm, t, 1, 2), 0);
  assert_int_equal(cr_shm_trig_take(shm, t, 2, 2), CR_ELIMIT); /* across workers */
  assert_int_equal(cr_shm_trig_take(shm, t, 0, 2), CR_ELIMIT);
  assert_int_equal(cr_shm_trig_take(shm, u, 2, 1), 0); /* each trigger its own */
  assert_int_equal(cr_shm_trig_busy(shm, t), 2);
  cr_shm_trig_give(shm, t, 0);
  assert_int_equal(cr_shm_trig_busy(shm, t), 1);
  assert_int_equal(cr_shm_trig_take(shm, t, 2, 2), 0);
  cr_shm_trig_give(shm, t, 0); /* none held: nothing given */
  assert_int_equal(cr_shm_trig_busy(shm, t), 2);

  /* Worker 1 dies holding two places of t (one from before, one now) and the lock of u. */
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int rc = cr_shm_trig_take(shm, t, 1, 3);
    atomic_store(&shm->trig_held[7][1].lock, 1 + 1); /* as if killed inside u's lock */
    (void)rc;
    pause();
    _exit(0);
  }
  for (int i = 0; i < 2000 && cr_shm_trig_busy(shm, t) < 3; i++) usleep(1000);
  assert_int_equal(cr_shm_trig_busy(shm, t), 3);
  kill(pid, SIGKILL);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_int_equal(cr_shm_trig_take(shm, t, 0, 3), CR_ELIMIT); /* dead, not reclaimed: still held */
  assert_int_equal(cr_shm_trig_take(shm, u, 0, 5), CR_ELIMIT); /* its lock too (given up, not waited on) */
  cr_shm_reclaimed_t r;
  cr_shm_reclaim(shm, 1, 10, &r);
  assert_int_equal(r.trigger_places, 2);
  assert_int_equal(r.places, 0);
  assert_int_equal(r.lock, 1);
  assert_int_equal(cr_shm_trig_busy(shm, t), 1); /* worker 2's stays */
  assert_int_equal(cr_shm_trig_take(shm, u, 0, 5), 0);
  assert_int_equal(cr_shm_trig_take(shm, t, 1, 2), 0); /* a new worker 1 starts at zero */
  cr_shm_reclaim(shm, 1, 10, &r);
  assert_int_equal(r.trigger_places, 1);
  cr_shm_reclaim(shm, 1, 10, &r);
  assert_int_equal(r.trigger_places + r.lock, 0);

  cr_shm_trig_t outside;
  memset(&outside, 0, sizeof outside);
  assert_int_equal(cr_shm_trig_take(shm, &outside, 0, 5), CR_EINVAL);
  assert_int_equal(cr_shm_trig_take(shm, t, 3, 5), CR_EINVAL); /* worker out of range */
  assert_int_equal(cr_shm_trig_take(NULL, t, 0, 5), CR_EINVAL);
  assert_int_equal(cr_shm_trig_busy(shm, &outside), 0);
  cr_shm_destroy(shm);
}

/* Per-path cache purges: the time of the latest purge of (slot, path), the larger time kept. */
static void test_cache_path_purges(void **state) {
  (void)state;
  cr_shm_t *shm = cr_shm_create(2);
  assert_non_null(shm);
  assert_true(cr_shm_cache_purged(shm, 3, "/a", 2) == 0);
  cr_shm_cache_purge(shm, 3, "/a", 2, 1000);
  assert_true(cr_shm_cache_purged(shm, 3, "/a", 2) == 1000);
  cr_shm_cache_purge(shm, 3, "/a", 2, 900); /* an older time never undoes a purge */
  assert_true(cr_shm_cache_purged(shm, 3, "/a", 2) == 1000);
  cr_shm_cache_purge(shm, 3, "/a", 2, 1200);
  assert_true(cr_shm_cache_purged(shm, 3, "/a", 2) == 1200);
  /* Another path, or the same path of another function: its own cell (these do not collide). */
  assert_true(cr_shm_cache_purged(shm, 3, "/b", 2) == 0);
  assert_true(cr_shm_cache_purged(shm, 4, "/a", 2) == 0);
  /* Without shared memory: nothing, no crash. */
  cr_shm_cache_purge(NULL, 3, "/a", 2, 5);
  assert_true(cr_shm_cache_purged(NULL, 3, "/a", 2) == 0);
  cr_shm_destroy(shm);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_zeroed),
      cmocka_unit_test(test_shared_across_fork),
      cmocka_unit_test(test_histogram_buckets),
      cmocka_unit_test(test_places_limit),
      cmocka_unit_test(test_reclaim_after_sigkill),
      cmocka_unit_test(test_reclaim_several_functions_and_the_lock),
      cmocka_unit_test(test_places_race),
      cmocka_unit_test(test_trigger_entries),
      cmocka_unit_test(test_trigger_places),
      cmocka_unit_test(test_cache_path_purges),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
