/* test_traceparent.c - W3C traceparent values read and made (core/base/traceparent.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "traceparent.h"

#define TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static int ok(const char *s) { return cr_trace_parse(s, strlen(s), NULL, NULL); }

static void test_parse_valid(void **state) {
  (void)state;
  char tid[33], flags[3];
  assert_true(cr_trace_parse(TP, strlen(TP), tid, flags));
  assert_string_equal(tid, "4bf92f3577b34da6a3ce929d0e0e4736");
  assert_string_equal(flags, "01");
  assert_true(ok("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"));
  /* A later version may carry more after a '-' (the spec: read what is known). */
  assert_true(ok("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  assert_true(ok("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds"));
}

static void test_parse_refused(void **state) {
  (void)state;
  assert_false(ok(""));
  assert_false(ok("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"));       /* no flags */
  assert_false(ok(TP "-x"));                                                       /* 00 is exactly 55 */
  assert_false(ok("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));    /* version ff */
  assert_false(ok("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"));   /* more without '-' */
  assert_false(ok("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));    /* upper case */
  assert_false(ok("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));    /* zero trace id */
  assert_false(ok("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));    /* zero parent id */
  assert_false(ok("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));    /* separator */
  assert_false(ok("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01"));    /* not hex */
  assert_false(ok("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g"));
  assert_false(ok(" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  assert_false(cr_trace_parse(NULL, 55, NULL, NULL));
}

static void test_child_continues(void **state) {
  (void)state;
  char a[CR_TRACE_LEN + 1], b[CR_TRACE_LEN + 1];
  cr_trace_child(TP, strlen(TP), a);
  cr_trace_child(TP, strlen(TP), b);
  assert_int_equal(strlen(a), CR_TRACE_LEN);
  assert_true(ok(a));
  assert_memory_equal(a, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36); /* the same trace */
  assert_string_equal(a + 52, "-01");                                 /* its flags */
  assert_memory_not_equal(a + 36, "00f067aa0ba902b7", 16);            /* a span of its own */
  assert_memory_not_equal(a + 36, b + 36, 16);                        /* new each time */
  /* A later version's value is continued as version 00. */
  cr_trace_child("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x", 57, a);
  assert_memory_equal(a, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36);
  assert_string_equal(a + 52, "-00");
}

static void test_child_new_trace(void **state) {
  (void)state;
  char a[CR_TRACE_LEN + 1], b[CR_TRACE_LEN + 1];
  cr_trace_child(NULL, 0, a);
  cr_trace_child("garbage", 7, b);
  assert_true(ok(a));
  assert_true(ok(b));
  assert_memory_not_equal(a + 3, b + 3, 32);
  assert_string_equal(a + 52, "-01");
  assert_memory_equal(a, "00-", 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_valid),
      cmocka_unit_test(test_parse_refused),
      cmocka_unit_test(test_child_continues),
      cmocka_unit_test(test_child_new_trace),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
