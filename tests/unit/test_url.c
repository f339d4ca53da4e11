/* test_url.c - percent-decoding (core/base/url.c), exact outputs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "buf.h"
#include "url.h"

/* Decodes s (n bytes) and checks the result is exactly want (wn bytes). */
static void expect_n(const char *s, size_t n, int plus, const char *want, size_t wn) {
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_url_decode(s, n, plus, &b), 0);
  if (b.len != wn || (wn && memcmp(b.data, want, wn) != 0))
    fail_msg("decoding '%.*s' (plus %d) gave '%.*s' (%zu bytes), want '%.*s' (%zu bytes)", (int)n, s, plus,
             (int)b.len, b.data ? b.data : "", b.len, (int)wn, want, wn);
  cr_buf_free(&b);
}

static void expect(const char *s, int plus, const char *want) {
  expect_n(s, strlen(s), plus, want, strlen(want));
}

static void test_plain(void **state) {
  (void)state;
  expect("hello", 0, "hello");
  expect("hello", 1, "hello");
  expect("a/b?c=d&e", 0, "a/b?c=d&e");
  expect("\xE2\x9C\x93", 0, "\xE2\x9C\x93"); /* bytes above 0x7f pass as they are */
}

static void test_escapes_either_case(void **state) {
  (void)state;
  expect("%41%42%43", 0, "ABC");
  expect("a%20b", 0, "a b");
  expect("%2f%2F", 0, "//");
  expect("%e2%9c%93", 0, "\xE2\x9C\x93");
  expect("%E2%9C%93", 0, "\xE2\x9C\x93");
  expect("%aB%Ab", 0, "\xAB\xAB");
  expect("%ff", 0, "\xFF");
  /* The escape at the very end, and one right after another. */
  expect("x%41", 0, "xA");
  expect("%25%41", 0, "%A"); /* %25 is '%': its result is not decoded again */
  expect("%2541", 0, "%41");
}

static void test_bad_escapes_kept(void **state) {
  (void)state;
  expect("%", 0, "%");
  expect("%4", 0, "%4");
  expect("a%4", 0, "a%4");
  expect("%G1", 0, "%G1");
  expect("%1G", 0, "%1G");
  expect("%%41", 0, "%A"); /* the first '%' is kept, the second starts an escape */
  expect("100%", 0, "100%");
  expect("% 41", 0, "% 41");
  expect("%-1", 0, "%-1");
  /* A truncated escape does not read past len: "%4" of "%41". */
  expect_n("%41", 2, 0, "%4", 2);
  expect_n("ab%4", 3, 0, "ab%", 3);
}

static void test_plus(void **state) {
  (void)state;
  expect("a+b", 1, "a b");
  expect("a+b", 0, "a+b");
  expect("++", 1, "  ");
  expect("%2B", 1, "+"); /* an encoded '+' is a '+' in either mode */
  expect("%2b", 0, "+");
  expect("a+%2B+b", 1, "a + b");
  expect("%20+", 0, " +");
}

static void test_nul(void **state) {
  (void)state;
  expect_n("%00", 3, 0, "\0", 1);
  expect_n("a%00b", 5, 0, "a\0b", 3);
  expect_n("%00%00", 6, 1, "\0\0", 2);
  /* A NUL byte in the input is data too. */
  expect_n("a\0%41", 5, 0, "a\0A", 3);
}

static void test_empty(void **state) {
  (void)state;
  expect("", 0, "");
  expect("", 1, "");
  /* The output replaces what the buffer held. */
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_buf_append_str(&b, "old contents"), 0);
  assert_int_equal(cr_url_decode("", 0, 0, &b), 0);
  assert_int_equal(b.len, 0);
  assert_int_equal(cr_url_decode("x%41", 4, 0, &b), 0);
  assert_int_equal(b.len, 2);
  assert_memory_equal(b.data, "xA", 2);
  cr_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_plain),
      cmocka_unit_test(test_escapes_either_case),
      cmocka_unit_test(test_bad_escapes_kept),
      cmocka_unit_test(test_plus),
      cmocka_unit_test(test_nul),
      cmocka_unit_test(test_empty),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
