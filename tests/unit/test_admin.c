/* test_admin.c - the access decision of the admin endpoints (core/trigger/http/admin.c):
 * which peer addresses are loopback, and what a token and an Authorization
 * value decide. The served answers are in tests/integration/test_admin_auth.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "admin.h"

static void test_loopback(void **state) {
  (void)state;
  assert_true(cr_admin_loopback("127.0.0.1"));
  assert_true(cr_admin_loopback("127.0.0.2"));
  assert_true(cr_admin_loopback("127.255.255.254"));
  assert_true(cr_admin_loopback("::1"));
  assert_true(cr_admin_loopback("0:0:0:0:0:0:0:1"));
  assert_true(cr_admin_loopback("::ffff:127.0.0.1"));
  assert_true(cr_admin_loopback("::ffff:127.1.2.3"));
  assert_false(cr_admin_loopback("128.0.0.1"));
  assert_false(cr_admin_loopback("126.255.255.255"));
  assert_false(cr_admin_loopback("10.0.0.1"));
  assert_false(cr_admin_loopback("192.0.2.2"));
  assert_false(cr_admin_loopback("0.0.0.0"));
  assert_false(cr_admin_loopback("::"));
  assert_false(cr_admin_loopback("::2"));
  assert_false(cr_admin_loopback("fd00::2"));
  assert_false(cr_admin_loopback("fe80::1"));
  assert_false(cr_admin_loopback("::ffff:10.0.0.1"));
  assert_false(cr_admin_loopback("::ffff:128.0.0.1"));
  /* IPv4-compatible (deprecated ::a.b.c.d) is not the mapped form. */
  assert_false(cr_admin_loopback("::127.0.0.1"));
  /* Text that only looks like it. */
  assert_false(cr_admin_loopback("127.0.0.1.example"));
  assert_false(cr_admin_loopback("127."));
  assert_false(cr_admin_loopback("unknown"));
  assert_false(cr_admin_loopback(""));
  assert_false(cr_admin_loopback(NULL));
}

static int access_of(const char *token, const char *authorization, const char *ip) {
  return cr_admin_access(token, authorization, authorization ? strlen(authorization) : 0, ip);
}

static void test_no_token(void **state) {
  (void)state;
  /* NULL and "" both mean no token: the peer decides, headers do not. */
  assert_int_equal(access_of(NULL, NULL, "127.0.0.1"), 0);
  assert_int_equal(access_of("", NULL, "::1"), 0);
  assert_int_equal(access_of(NULL, "Bearer x", "::ffff:127.0.0.1"), 0);
  assert_int_equal(access_of(NULL, NULL, "192.0.2.2"), 403);
  assert_int_equal(access_of("", "Bearer ", "192.0.2.2"), 403);
  assert_int_equal(access_of(NULL, "Bearer x", "fd00::2"), 403);
  assert_int_equal(access_of(NULL, NULL, "unknown"), 403);
}

static void test_token(void **state) {
  (void)state;
  const char *t = "s3cret";
  assert_int_equal(access_of(t, "Bearer s3cret", "192.0.2.2"), 0);
  assert_int_equal(access_of(t, "Bearer s3cret", "127.0.0.1"), 0);
  assert_int_equal(access_of(t, "bearer s3cret", "127.0.0.1"), 0);
  assert_int_equal(access_of(t, "BEARER s3cret", "127.0.0.1"), 0);
  assert_int_equal(access_of(t, "Bearer   s3cret", "127.0.0.1"), 0);
  /* Loopback is not enough once a token is set. */
  assert_int_equal(access_of(t, NULL, "127.0.0.1"), 401);
  assert_int_equal(access_of(t, "", "127.0.0.1"), 401);
  assert_int_equal(access_of(t, "Bearer", "127.0.0.1"), 401);
  assert_int_equal(access_of(t, "Bearer ", "127.0.0.1"), 401);
  assert_int_equal(access_of(t, "Bearer s3cre", "127.0.0.1"), 401);
  assert_int_equal(access_of(t, "Bearer s3cretX", "127.0.0.1"), 401);
  assert_int_equal(access_of(t, "Bearer S3CRET", "127.0.0.1"), 401);
  assert_int_equal(access_of(t, "Bearer s3crex", "127.0.0.1"), 401);
  assert_int_equal(access_of(t, "Bearer  s3cret ", "127.0.0.1"), 401);
  assert_int_equal(access_of(t, "Basic s3cret", "127.0.0.1"), 401);
  assert_int_equal(access_of(t, "Bearers3cret", "127.0.0.1"), 401);
  assert_int_equal(access_of(t, "s3cret", "127.0.0.1"), 401);
  assert_int_equal(access_of(t, "Bearer s3cret", NULL), 0);
  /* Only len bytes of the value count. */
  assert_int_equal(cr_admin_access(t, "Bearer s3cretXYZ", 13, "192.0.2.2"), 0);
  assert_int_equal(cr_admin_access(t, "Bearer s3cret", 12, "192.0.2.2"), 401);
  /* A NUL inside the value is a byte like any other. */
  assert_int_equal(cr_admin_access(t, "Bearer s3c\0et", 13, "127.0.0.1"), 401);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_loopback),
      cmocka_unit_test(test_no_token),
      cmocka_unit_test(test_token),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
