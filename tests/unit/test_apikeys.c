/* test_apikeys.c - the parts of API keys that need no server (core/trigger/http/apikeys.c):
 * the key's shape and making, its hash, key and plan names, the scope globs and the scope
 * list's parsing. The HTTP side (401/403/429, revocation, plans) is
 * tests/integration/test_gateway_apikeys.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apikeys.h"
#include "buf.h"

static void test_glob(void **state) {
  (void)state;
  static const struct {
    const char *pat, *name;
    int match;
  } cases[] = {
      {"reports", "reports", 1},
      {"reports", "report", 0},
      {"reports", "reportsx", 0},
      {"reports", "orders/reports", 0},
      {"orders/*", "orders/list", 1},
      {"orders/*", "orders/", 1},       /* '*' may match nothing (no function is named so, but the rule holds) */
      {"orders/*", "orders", 0},
      {"orders/*", "orders/a/b", 0},     /* within one segment only */
      {"orders/*", "ordersx/list", 0},
      {"*", "hello", 1},
      {"*", "orders/list", 0},
      {"*/*", "orders/list", 1},
      {"*/*", "a/b/c", 0},
      {"*/list", "orders/list", 1},
      {"*/list", "orders/lists", 0},
      {"o*s/*", "orders/x", 1},
      {"o*s/*", "oxs/x", 1},
      {"o*s/*", "o/s/x", 0},              /* the first star may not cross a '/' */
      {"*.v2", "api.v2", 1},
      {"*.v2", "api.v3", 0},
      {"a*b*c", "aXXbYYc", 1},
      {"a*b*c", "abc", 1},
      {"a*b*c", "acb", 0},
      {"a*b*c", "aXbXcXc", 1},            /* backtracking: the last c */
      {"users/[id]", "users/[id]", 1},    /* brackets are plain characters */
      {"users/*", "users/[id]", 1},
      {"**", "x", 1},
      {"**", "x/y", 0},
      {"", "", 1},
      {"", "x", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int got = cr_apikey_glob(cases[i].pat, strlen(cases[i].pat), cases[i].name, strlen(cases[i].name));
    if (got != cases[i].match)
      fail_msg("glob '%s' on '%s': got %d, want %d", cases[i].pat, cases[i].name, got, cases[i].match);
  }
}

static void parses_to(const char *list, const char *want) {
  cr_buf_t b = CR_BUF_INIT;
  char err[200] = "";
  if (cr_apikey_scopes_parse(list, strlen(list), &b, err, sizeof err)) fail_msg("'%s' refused: %s", list, err);
  assert_string_equal(b.len ? cr_buf_cstr(&b) : "", want);
  cr_buf_free(&b);
}

static void refused(const char *list, size_t len, const char *want) {
  cr_buf_t b = CR_BUF_INIT;
  char err[200] = "";
  assert_int_equal(cr_apikey_scopes_parse(list, len, &b, err, sizeof err), -1);
  assert_string_equal(err, want);
  cr_buf_free(&b);
}

static void test_scopes(void **state) {
  (void)state;
  parses_to("", "");
  parses_to("   ", "");
  parses_to("reports", "reports");
  parses_to("orders/*,reports", "orders/*,reports");
  parses_to(" orders/* ,  reports ", "orders/*,reports");
  parses_to("users/[id]", "users/[id]");
  refused("a,,b", 4, "an empty function pattern in the list");
  refused("a,", 2, "an empty function pattern in the list");
  refused(",a", 2, "an empty function pattern in the list");
  refused("a b", 3, "a function pattern may not hold spaces, control characters or non-ASCII bytes");
  refused("a\tb", 3, "a function pattern may not hold spaces, control characters or non-ASCII bytes");
  refused("caf\xc3\xa9", 5, "a function pattern may not hold spaces, control characters or non-ASCII bytes");
  refused("a\0b", 3, "a function pattern may not hold spaces, control characters or non-ASCII bytes");
  char big[400];
  memset(big, 'x', 256);
  big[256] = '\0';
  refused(big, 256, "a function pattern is longer than 255 bytes");
  cr_buf_t many = CR_BUF_INIT;
  for (int i = 0; i < 33; i++) cr_buf_printf(&many, "%sf%d", i ? "," : "", i);
  refused(many.data, many.len, "more than 32 function patterns");
  many.len = 0;
  for (int i = 0; i < 32; i++) cr_buf_printf(&many, "%sf%d", i ? "," : "", i);
  cr_buf_t b = CR_BUF_INIT;
  char err[100];
  assert_int_equal(cr_apikey_scopes_parse(many.data, many.len, &b, err, sizeof err), 0);
  cr_buf_free(&b);
  cr_buf_free(&many);
}

static void test_in_scope(void **state) {
  (void)state;
  assert_true(cr_apikey_in_scope("", "anything/at/all"));
  assert_true(cr_apikey_in_scope(NULL, "x"));
  assert_true(cr_apikey_in_scope("orders/*,reports", "reports"));
  assert_true(cr_apikey_in_scope("orders/*,reports", "orders/list"));
  assert_false(cr_apikey_in_scope("orders/*,reports", "orders"));
  assert_false(cr_apikey_in_scope("orders/*,reports", "report"));
  assert_false(cr_apikey_in_scope("orders/*,reports", "admin/reports"));
  assert_true(cr_apikey_in_scope("a,b,c", "c"));
  assert_false(cr_apikey_in_scope("a,b,c", "a,b"));
}

static void test_keys(void **state) {
  (void)state;
  char k1[CR_APIKEY_LEN + 1], k2[CR_APIKEY_LEN + 1];
  assert_int_equal(cr_apikey_make(k1), 0);
  assert_int_equal(cr_apikey_make(k2), 0);
  assert_int_equal(strlen(k1), CR_APIKEY_LEN);
  assert_memory_equal(k1, "crk_", 4);
  assert_string_not_equal(k1, k2);
  assert_true(cr_apikey_wellformed(k1, strlen(k1)));
  assert_true(cr_apikey_wellformed(k2, strlen(k2)));
  /* Many keys: always well-formed (the last character carries 4 bits and 2 zero bits). */
  for (int i = 0; i < 2000; i++) {
    char k[CR_APIKEY_LEN + 1];
    assert_int_equal(cr_apikey_make(k), 0);
    if (!cr_apikey_wellformed(k, strlen(k))) fail_msg("made a key that is not well-formed: %s", k);
  }
  char bad[CR_APIKEY_LEN + 2];
  memcpy(bad, k1, sizeof k1);
  assert_false(cr_apikey_wellformed(bad, CR_APIKEY_LEN - 1));
  bad[CR_APIKEY_LEN] = 'A';
  bad[CR_APIKEY_LEN + 1] = '\0';
  assert_false(cr_apikey_wellformed(bad, CR_APIKEY_LEN + 1));
  memcpy(bad, k1, sizeof k1);
  bad[0] = 'x';
  assert_false(cr_apikey_wellformed(bad, CR_APIKEY_LEN));
  memcpy(bad, k1, sizeof k1);
  bad[10] = '+'; /* base64, not base64url */
  assert_false(cr_apikey_wellformed(bad, CR_APIKEY_LEN));
  memcpy(bad, k1, sizeof k1);
  bad[CR_APIKEY_LEN - 1] = 'B'; /* low bits set in the last character: no 32-byte key encodes so */
  assert_false(cr_apikey_wellformed(bad, CR_APIKEY_LEN));
  assert_true(cr_apikey_wellformed("crk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", CR_APIKEY_LEN));
  /* SHA-256, against a known value: sha256("abc"). */
  char hex[65];
  cr_apikey_hash("abc", 3, hex);
  assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  cr_apikey_hash(k1, strlen(k1), hex);
  assert_int_equal(strlen(hex), 64);
}

static void test_names(void **state) {
  (void)state;
  assert_true(cr_apikey_name_ok("ci", 2));
  assert_true(cr_apikey_name_ok("ci-2.prod_x", 11));
  assert_true(cr_apikey_name_ok("9", 1));
  assert_false(cr_apikey_name_ok("", 0));
  assert_false(cr_apikey_name_ok("-ci", 3));
  assert_false(cr_apikey_name_ok(".ci", 3));
  assert_false(cr_apikey_name_ok("c i", 3));
  assert_false(cr_apikey_name_ok("c/i", 3));
  assert_false(cr_apikey_name_ok("c:i", 3)); /* ':' separates the parts of its Redis keys */
  assert_false(cr_apikey_name_ok("c\0i", 3));
  char n[80];
  memset(n, 'a', sizeof n);
  assert_true(cr_apikey_name_ok(n, 64));
  assert_false(cr_apikey_name_ok(n, 65));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_glob),    cmocka_unit_test(test_scopes), cmocka_unit_test(test_in_scope),
      cmocka_unit_test(test_keys),    cmocka_unit_test(test_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
