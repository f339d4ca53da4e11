/* test_series.c - the pure part of core/trigger/http/series.c: the quantile of a latency
 * histogram (cr_shm_hist_bounds_ms buckets), as the series' p50/p99 are computed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "series.h"

static void test_empty(void **state) {
  (void)state;
  uint64_t h[CR_SHM_HIST_BUCKETS] = {0};
  assert_true(cr_series_quantile(h, 0.5) == -1);
  assert_true(cr_series_quantile(h, 0.99) == -1);
}

static void test_one_bucket(void **state) {
  (void)state;
  /* Ten in (1, 2.5] ms: the median halfway through it, the p99 near its top. */
  uint64_t h[CR_SHM_HIST_BUCKETS] = {0};
  assert_true(cr_shm_hist_bounds_ms[3] == 1 && cr_shm_hist_bounds_ms[4] == 2.5);
  h[4] = 10;
  assert_float_equal(cr_series_quantile(h, 0.5), 1.75, 1e-9);
  assert_float_equal(cr_series_quantile(h, 0.99), 1 + 1.5 * 0.99, 1e-9);
  assert_float_equal(cr_series_quantile(h, 1.0), 2.5, 1e-9);
}

static void test_first_bucket_from_zero(void **state) {
  (void)state;
  uint64_t h[CR_SHM_HIST_BUCKETS] = {0};
  h[0] = 4; /* (0, 0.1] */
  assert_float_equal(cr_series_quantile(h, 0.5), 0.05, 1e-9);
}

static void test_two_buckets(void **state) {
  (void)state;
  /* 90 fast (<= 0.1 ms), 10 slow in (100, 250]: p50 is fast, p99 in the slow bucket. */
  uint64_t h[CR_SHM_HIST_BUCKETS] = {0};
  h[0] = 90;
  h[10] = 10;
  assert_true(cr_shm_hist_bounds_ms[9] == 100 && cr_shm_hist_bounds_ms[10] == 250);
  assert_float_equal(cr_series_quantile(h, 0.5), 0.1 * 50.0 / 90.0, 1e-9);
  assert_float_equal(cr_series_quantile(h, 0.99), 100 + 150 * 0.9, 1e-9);
}

static void test_inf_bucket(void **state) {
  (void)state;
  /* Past the last bound there is no upper edge: the answer is its lower bound (5000 ms). */
  uint64_t h[CR_SHM_HIST_BUCKETS] = {0};
  h[CR_SHM_HIST_BUCKETS - 1] = 3;
  assert_float_equal(cr_series_quantile(h, 0.5), cr_shm_hist_bounds_ms[CR_SHM_HIST_BUCKETS - 2], 1e-9);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_empty),
      cmocka_unit_test(test_one_bucket),
      cmocka_unit_test(test_first_bucket_from_zero),
      cmocka_unit_test(test_two_buckets),
      cmocka_unit_test(test_inf_bucket),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
