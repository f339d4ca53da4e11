/* test_buf.c - the growable byte buffer (core/base/buf.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "freelist.h"

static void assert_buf(cr_buf_t *b, const char *want) {
  assert_int_equal(b->len, strlen(want));
  if (b->len) assert_memory_equal(b->data, want, b->len);
}

static void test_init_and_empty(void **state) {
  (void)state;
  cr_buf_t a = CR_BUF_INIT, b;
  cr_buf_init(&b);
  assert_null(a.data);
  assert_int_equal(a.len, 0);
  assert_int_equal(a.cap, 0);
  assert_null(b.data);
  /* Appending nothing to an empty buffer allocates nothing. */
  assert_int_equal(cr_buf_append(&a, "x", 0), 0);
  assert_null(a.data);
  /* cstr of an empty buffer is "" and len stays 0. */
  const char *s = cr_buf_cstr(&a);
  assert_non_null(s);
  assert_string_equal(s, "");
  assert_int_equal(a.len, 0);
  cr_buf_free(&a);
  assert_null(a.data);
  assert_int_equal(a.cap, 0);
  cr_buf_free(&b); /* freeing a never-used buffer is fine */
  cr_buf_free(&b); /* and twice */
}

static void test_append_grows(void **state) {
  (void)state;
  cr_buf_t b = CR_BUF_INIT;
  char chunk[100];
  for (int i = 0; i < 100; i++) chunk[i] = (char)('a' + i % 26);
  for (int i = 0; i < 1000; i++) assert_int_equal(cr_buf_append(&b, chunk, sizeof chunk), 0);
  assert_int_equal(b.len, 100000);
  assert_true(b.cap >= b.len);
  for (size_t i = 0; i < b.len; i++)
    if (b.data[i] != (char)('a' + (i % 100) % 26)) fail_msg("byte %zu is wrong", i);
  /* Binary data with NULs survives. */
  cr_buf_reset(&b, 0);
  assert_int_equal(cr_buf_append(&b, "a\0b\0", 4), 0);
  assert_int_equal(b.len, 4);
  assert_memory_equal(b.data, "a\0b\0", 4);
  cr_buf_free(&b);
}

static void test_reserve(void **state) {
  (void)state;
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_buf_reserve(&b, 10), 0);
  assert_true(b.cap >= 10);
  assert_int_equal(b.len, 0);
  size_t cap = b.cap;
  /* Reserving what already fits does not move the data. */
  char *before = b.data;
  assert_int_equal(cr_buf_reserve(&b, cap), 0);
  assert_ptr_equal(b.data, before);
  /* An absurd size is refused and leaves the buffer as it was. */
  assert_int_equal(cr_buf_append_str(&b, "keep"), 0);
  assert_int_equal(cr_buf_reserve(&b, (size_t)1 << 41), CR_ENOMEM);
  assert_buf(&b, "keep");
  cr_buf_free(&b);
}

/* len + extra must not wrap around: reserving SIZE_MAX more bytes on a
 * non-empty buffer cannot succeed. */
static void test_reserve_overflow(void **state) {
  (void)state;
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_buf_append_str(&b, "0123456789"), 0);
  size_t cap = b.cap;
  assert_int_equal(cr_buf_reserve(&b, SIZE_MAX), CR_ENOMEM);
  assert_int_equal(cr_buf_reserve(&b, SIZE_MAX - 5), CR_ENOMEM);
  assert_int_equal(b.cap, cap);
  assert_buf(&b, "0123456789");
  cr_buf_free(&b);
}

static void test_printf(void **state) {
  (void)state;
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_buf_printf(&b, "%s=%d", "a", 42), 0);
  assert_int_equal(cr_buf_printf(&b, "%s", ""), 0);
  assert_int_equal(cr_buf_printf(&b, ";%05.1f", 3.14159), 0);
  assert_buf(&b, "a=42;003.1");
  /* Longer than the 256-byte stack buffer: the second vsnprintf path. */
  char big[1001];
  memset(big, 'z', 1000);
  big[1000] = '\0';
  assert_int_equal(cr_buf_printf(&b, "[%s|%s]", big, big), 0);
  assert_int_equal(b.len, 10 + 2003);
  assert_memory_equal(b.data, "a=42;003.1[", 11);
  assert_int_equal(b.data[11 + 1000], '|');
  assert_int_equal(b.data[b.len - 1], ']');
  assert_int_equal(b.data[b.len - 2], 'z');
  /* Exactly 255 and 256 characters (the stack buffer's edge). */
  cr_buf_reset(&b, 0);
  assert_int_equal(cr_buf_printf(&b, "%.*s", 255, big), 0);
  assert_int_equal(b.len, 255);
  cr_buf_reset(&b, 0);
  assert_int_equal(cr_buf_printf(&b, "%.*s", 256, big), 0);
  assert_int_equal(b.len, 256);
  assert_int_equal(b.data[255], 'z');
  assert_string_equal(cr_buf_cstr(&b) + 250, "zzzzzz");
  cr_buf_free(&b);
}

static void test_numbers(void **state) {
  (void)state;
  cr_buf_t b = CR_BUF_INIT;
  cr_buf_append_u64(&b, 0);
  cr_buf_putc(&b, ' ');
  cr_buf_append_u64(&b, 18446744073709551615ULL);
  cr_buf_putc(&b, ' ');
  cr_buf_append_i64(&b, -1);
  cr_buf_putc(&b, ' ');
  cr_buf_append_i64(&b, LLONG_MIN);
  cr_buf_putc(&b, ' ');
  cr_buf_append_i64(&b, LLONG_MAX);
  cr_buf_putc(&b, ' ');
  cr_buf_append_i64(&b, 0);
  cr_buf_putc(&b, ' ');
  cr_buf_append_u64(&b, 10);
  assert_string_equal(cr_buf_cstr(&b),
                      "0 18446744073709551615 -1 -9223372036854775808 9223372036854775807 0 10");
  cr_buf_free(&b);
}

static void test_consume(void **state) {
  (void)state;
  cr_buf_t b = CR_BUF_INIT;
  cr_buf_append_str(&b, "hello world");
  cr_buf_consume(&b, 0);
  assert_buf(&b, "hello world");
  cr_buf_consume(&b, 6);
  assert_buf(&b, "world");
  cr_buf_consume(&b, 5); /* exactly everything */
  assert_int_equal(b.len, 0);
  cr_buf_append_str(&b, "abc");
  cr_buf_consume(&b, 100); /* more than there is */
  assert_int_equal(b.len, 0);
  cr_buf_consume(&b, 1); /* on an empty buffer */
  assert_int_equal(b.len, 0);
  cr_buf_t e = CR_BUF_INIT;
  cr_buf_consume(&e, 3); /* never allocated */
  assert_int_equal(e.len, 0);
  assert_null(e.data);
  cr_buf_append_str(&b, "after");
  assert_buf(&b, "after");
  cr_buf_free(&b);
}

static void test_reset(void **state) {
  (void)state;
  cr_buf_t b = CR_BUF_INIT;
  cr_buf_append_str(&b, "small");
  size_t cap = b.cap;
  char *data = b.data;
  cr_buf_reset(&b, cap); /* cap <= keep: keeps its memory */
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, cap);
  assert_ptr_equal(b.data, data);
  cr_buf_append_str(&b, "x");
  cr_buf_reset(&b, cap - 1); /* grew past keep: released */
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, 0);
  assert_null(b.data);
  /* Usable afterwards. */
  cr_buf_append_str(&b, "again");
  assert_buf(&b, "again");
  cr_buf_free(&b);
}

static void test_cstr_and_putc(void **state) {
  (void)state;
  cr_buf_t b = CR_BUF_INIT;
  for (int i = 0; i < 300; i++) assert_int_equal(cr_buf_putc(&b, (char)('0' + i % 10)), 0);
  assert_int_equal(b.len, 300);
  const char *s = cr_buf_cstr(&b);
  assert_int_equal(strlen(s), 300);
  assert_int_equal(b.len, 300); /* the NUL is not counted */
  cr_buf_append_str(&b, "!");
  assert_int_equal(strlen(cr_buf_cstr(&b)), 301);
  assert_int_equal(cr_buf_cstr(&b)[300], '!');
  /* cstr when len == cap must grow to hold the NUL. */
  cr_buf_t c = CR_BUF_INIT;
  cr_buf_reserve(&c, 1);
  while (c.len < c.cap) cr_buf_putc(&c, 'q');
  s = cr_buf_cstr(&c);
  assert_int_equal(strlen(s), c.len);
  cr_buf_free(&c);
  cr_buf_free(&b);
}

/* freelist.h: objects come back in LIFO order up to max kept; the rest are freed. */
static void test_freelist(void **state) {
  (void)state;
  cr_freelist_t f = CR_FREELIST_INIT(2);
  char *a = cr_freelist_take(&f, 64), *b = cr_freelist_take(&f, 64), *c = cr_freelist_take(&f, 64);
  assert_non_null(a);
  assert_non_null(b);
  assert_non_null(c);
  memset(a, 'a', 64);
  cr_freelist_give(&f, a);
  cr_freelist_give(&f, b);
  cr_freelist_give(&f, c); /* over max: freed (ASan would see a leak otherwise) */
  assert_int_equal(f.n, 2);
  assert_ptr_equal(cr_freelist_take(&f, 64), b);
  char *again = cr_freelist_take(&f, 64);
  assert_ptr_equal(again, a);
  assert_int_equal(again[63], 'a'); /* bytes past the link are as they were left */
  assert_int_equal(f.n, 0);
  cr_freelist_give(&f, again);
  cr_freelist_give(&f, b);
  cr_freelist_drain(&f);
  assert_null(f.head);
  assert_int_equal(f.n, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_init_and_empty), cmocka_unit_test(test_append_grows),
      cmocka_unit_test(test_reserve),        cmocka_unit_test(test_reserve_overflow),
      cmocka_unit_test(test_printf),         cmocka_unit_test(test_numbers),
      cmocka_unit_test(test_consume),        cmocka_unit_test(test_reset),
      cmocka_unit_test(test_cstr_and_putc), cmocka_unit_test(test_freelist),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
