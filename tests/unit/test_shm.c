/* test_shm.c - the shared counters region (core/shm.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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
    assert_int_equal(atomic_load(&shm->fns[f].active), 0);
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
      atomic_fetch_add(&shm->fns[5].active, 1);
    }
    atomic_store(&shm->workers[1].pid, (int)getpid());
    cr_shm_observe(&shm->fns[5], 3.0);
    _exit(0);
  }
  for (int i = 0; i < 1000; i++) atomic_fetch_sub(&shm->fns[5].active, 1);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_int_equal(atomic_load(&shm->fns[5].invocations), 1000);
  assert_int_equal(atomic_load(&shm->fns[5].active), 0); /* both processes' updates, none lost */
  assert_int_equal(atomic_load(&shm->workers[1].pid), pid);
  assert_int_equal(atomic_load(&shm->fns[5].hist[5]), 1); /* 3 ms: the <= 5 ms bucket */
  cr_shm_destroy(shm);
}

static int bucket_of(double ms) {
  cr_shm_fn_t fn;
  memset(&fn, 0, sizeof fn);
  cr_shm_observe(&fn, ms);
  int found = -1, count = 0;
  for (int i = 0; i < CR_SHM_HIST_BUCKETS; i++) {
    if (atomic_load(&fn.hist[i])) {
      found = i;
      count += (int)atomic_load(&fn.hist[i]);
    }
  }
  assert_int_equal(count, 1);
  return found;
}

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
  /* Counts accumulate. */
  cr_shm_fn_t fn;
  memset(&fn, 0, sizeof fn);
  for (int i = 0; i < 10; i++) cr_shm_observe(&fn, 7);
  assert_int_equal(atomic_load(&fn.hist[6]), 10);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_zeroed),
      cmocka_unit_test(test_shared_across_fork),
      cmocka_unit_test(test_histogram_buckets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
