/* test_clock.c - monotonic and wall clocks, HTTP and ISO 8601 dates (core/base/clock.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static void test_monotonic(void **state) {
  (void)state;
  uint64_t a = cr_clock_ns();
  for (int i = 0; i < 1000; i++) {
    uint64_t b = cr_clock_ns();
    assert_true(b >= a);
    a = b;
  }
  uint64_t t0 = cr_clock_ns();
  sleep_ms(30);
  uint64_t dt = cr_clock_ns() - t0;
  assert_true(dt >= 30000000ULL);
  assert_true(dt < 2000000000ULL);
}

static void test_wall(void **state) {
  (void)state;
  uint64_t ms = cr_wall_ms();
  time_t now = time(NULL);
  long long diff = (long long)(ms / 1000) - (long long)now;
  assert_true(diff >= -1 && diff <= 1);
  /* milliseconds, not seconds or microseconds */
  assert_true(ms > 1600000000000ULL && ms < 4102444800000ULL);
}

static void test_thread_cpu(void **state) {
  (void)state;
  uint64_t c0 = cr_thread_cpu_ns();
  sleep_ms(50);
  uint64_t c1 = cr_thread_cpu_ns();
  assert_true(c1 >= c0);
  assert_true(c1 - c0 < 30000000ULL); /* sleeping costs (almost) no CPU */
  /* Spinning shows up: 10 ms of this thread's CPU time within 5 s of wall
   * time, however loaded the machine is; and CPU time never runs ahead of
   * the wall clock. */
  volatile double x = 0;
  uint64_t t0 = cr_clock_ns(), c2 = c1;
  while (c2 - c1 < 10000000ULL && cr_clock_ns() - t0 < 5000000000ULL) {
    for (int i = 0; i < 100000; i++) x += 1.0;
    c2 = cr_thread_cpu_ns();
  }
  uint64_t wall = cr_clock_ns() - t0;
  assert_true(c2 - c1 >= 10000000ULL);
  assert_true(c2 - c1 <= wall + 1000000ULL);
}

static void test_http_date(void **state) {
  (void)state;
  const char *d = cr_clock_http_date();
  assert_non_null(d);
  assert_int_equal(strlen(d), CR_HTTP_DATE_LEN);
  /* "Sun, 06 Nov 1994 08:49:37 GMT" */
  static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  int dayok = 0, monok = 0;
  for (int i = 0; i < 7; i++) dayok |= strncmp(d, days[i], 3) == 0;
  for (int i = 0; i < 12; i++) monok |= strncmp(d + 8, months[i], 3) == 0;
  assert_true(dayok);
  assert_true(monok);
  assert_memory_equal(d + 3, ", ", 2);
  assert_int_equal(d[7], ' ');
  assert_int_equal(d[11], ' ');
  assert_int_equal(d[16], ' ');
  assert_int_equal(d[19], ':');
  assert_int_equal(d[22], ':');
  assert_string_equal(d + 25, " GMT");
  int digits[] = {5, 6, 12, 13, 14, 15, 17, 18, 20, 21, 23, 24};
  for (size_t i = 0; i < sizeof digits / sizeof digits[0]; i++) assert_true(isdigit((unsigned char)d[digits[i]]));
  /* It says now (UTC). */
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  assert_non_null(strptime(d, "%a, %d %b %Y %H:%M:%S GMT", &tm));
  time_t t = timegm(&tm);
  long long diff = (long long)t - (long long)time(NULL);
  assert_true(diff >= -2 && diff <= 2);
  /* Cached: same storage, and it moves on with time. */
  char first[64];
  snprintf(first, sizeof first, "%s", d);
  assert_ptr_equal(cr_clock_http_date(), d);
  sleep_ms(1100);
  const char *d2 = cr_clock_http_date();
  assert_int_equal(strlen(d2), CR_HTTP_DATE_LEN);
  assert_string_not_equal(first, d2);
}

static void test_iso8601(void **state) {
  (void)state;
  char out[32];
  memset(out, 'X', sizeof out);
  cr_clock_iso8601(0, out);
  assert_string_equal(out, "1970-01-01T00:00:00.000Z");
  cr_clock_iso8601(1234567890123ULL, out);
  assert_string_equal(out, "2009-02-13T23:31:30.123Z");
  cr_clock_iso8601(999, out);
  assert_string_equal(out, "1970-01-01T00:00:00.999Z");
  cr_clock_iso8601(1000, out);
  assert_string_equal(out, "1970-01-01T00:00:01.000Z");
  cr_clock_iso8601(951782400007ULL, out); /* leap day 2000 */
  assert_string_equal(out, "2000-02-29T00:00:00.007Z");
  cr_clock_iso8601(4102444800050ULL, out); /* past 2038 */
  assert_string_equal(out, "2100-01-01T00:00:00.050Z");
  cr_clock_iso8601(253402300799999ULL, out);
  assert_string_equal(out, "9999-12-31T23:59:59.999Z");
  cr_clock_iso8601(cr_wall_ms(), out);
  assert_int_equal(strlen(out), 24);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_monotonic), cmocka_unit_test(test_wall), cmocka_unit_test(test_thread_cpu),
      cmocka_unit_test(test_http_date), cmocka_unit_test(test_iso8601),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
