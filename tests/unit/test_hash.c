/* test_hash.c - the one string hash (core/base/hash.h): 64-bit FNV-1a. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "hash.h"

/* The published FNV-1a 64-bit test vectors (Fowler, Noll, Vo). */
static void test_vectors(void **state) {
  (void)state;
  assert_true(cr_fnv1a("", 0) == 0xcbf29ce484222325ULL);
  assert_true(cr_fnv1a("a", 1) == 0xaf63dc4c8601ec8cULL);
  assert_true(cr_fnv1a("foobar", 6) == 0x85944171f73967e8ULL);
  assert_true(CR_FNV1A_BASIS == 0xcbf29ce484222325ULL);
}

/* Bytes are unsigned and NUL is data: the length decides, not a terminator. */
static void test_bytes(void **state) {
  (void)state;
  assert_true(cr_fnv1a("a\0b", 3) != cr_fnv1a("a", 1));
  assert_true(cr_fnv1a("a\0b", 3) != cr_fnv1a("a\0c", 3));
  /* 0xff ^ basis, times the prime: a signed char would give another value. */
  assert_true(cr_fnv1a("\xff", 1) == ((0xcbf29ce484222325ULL ^ 0xffULL) * 1099511628211ULL));
}

/* Hashing in pieces is hashing the whole. */
static void test_pieces(void **state) {
  (void)state;
  uint64_t h = cr_fnv1a("foo", 3);
  assert_true(cr_fnv1a_more(h, "bar", 3) == cr_fnv1a("foobar", 6));
  assert_true(cr_fnv1a_more(CR_FNV1A_BASIS, "foobar", 6) == cr_fnv1a("foobar", 6));
  assert_true(cr_fnv1a_more(h, "", 0) == h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vectors),
      cmocka_unit_test(test_bytes),
      cmocka_unit_test(test_pieces),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
