/* test_reqid.c - which X-Request-Id a client may bring (core/base/reqid.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "reqid.h"

static int ok(const char *s) { return cr_reqid_valid(s, strlen(s)); }

static void test_valid(void **state) {
  (void)state;
  assert_true(ok("a"));
  assert_true(ok("0f8fad5b-d9cb-469f-a165-70867728950e"));
  assert_true(ok("1-5759e988-bd862e3fe1be46a994272793"));
  assert_true(ok("svc.api_v2:req-17"));
  char id[CR_REQID_MAX + 2];
  memset(id, 'x', sizeof id);
  assert_true(cr_reqid_valid(id, CR_REQID_MAX));
  assert_false(cr_reqid_valid(id, CR_REQID_MAX + 1));
  assert_int_equal(CR_REQID_MAX, 128);
}

static void test_refused(void **state) {
  (void)state;
  assert_false(ok(""));
  assert_false(ok("with space"));
  assert_false(ok("quote\""));
  assert_false(ok("back\\slash"));
  assert_false(ok("new\nline"));
  assert_false(ok("tab\t"));
  assert_false(ok("a=b"));
  assert_false(ok("a/b"));
  assert_false(ok("caf\xc3\xa9"));
  assert_false(cr_reqid_valid("a\0b", 3));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_valid),
      cmocka_unit_test(test_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
