/* test_wire.c - packing values and reading them back (core/base/wire.h): round
 * trips of every type, and readers that run short or are lied to about
 * lengths fail without reading past their end. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "wire.h"

/* A copy of data in a block of exactly len bytes, so that a read past its
 * end is an out-of-bounds read (ASan reports it). */
static char *exact_copy(const char *data, size_t len) {
  char *p = malloc(len ? len : 1);
  assert_non_null(p);
  if (len) memcpy(p, data, len);
  return p;
}

static void test_u32_u64_round_trip(void **state) {
  (void)state;
  const uint32_t u32s[] = {0, 1, 0x7f, 0x80, 0xffff, 0x12345678, UINT32_MAX - 1, UINT32_MAX};
  const uint64_t u64s[] = {0, 1, UINT32_MAX, (uint64_t)UINT32_MAX + 1, 0x0123456789abcdefULL, UINT64_MAX};
  cr_buf_t b = CR_BUF_INIT;
  for (size_t i = 0; i < sizeof u32s / sizeof u32s[0]; i++) assert_int_equal(cr_wire_u32(&b, u32s[i]), 0);
  for (size_t i = 0; i < sizeof u64s / sizeof u64s[0]; i++) assert_int_equal(cr_wire_u64(&b, u64s[i]), 0);
  /* Fixed sizes: 4 and 8 bytes each. */
  assert_int_equal(b.len, 4 * 8 + 8 * 6);
  char *data = exact_copy(b.data, b.len);
  cr_wire_reader_t r;
  cr_wire_reader(&r, data, b.len);
  for (size_t i = 0; i < sizeof u32s / sizeof u32s[0]; i++) assert_int_equal(cr_wire_get_u32(&r), u32s[i]);
  for (size_t i = 0; i < sizeof u64s / sizeof u64s[0]; i++) assert_true(cr_wire_get_u64(&r) == u64s[i]);
  assert_int_equal(r.bad, 0);
  assert_ptr_equal(r.p, r.end);
  free(data);
  cr_buf_free(&b);
}

static void test_f64_round_trip(void **state) {
  (void)state;
  const double vals[] = {0.0, -0.0, 1.5, -2.25, 0.1, DBL_MAX, -DBL_MAX, DBL_MIN, DBL_MIN / 4 /* subnormal */,
                         INFINITY, -INFINITY, NAN};
  size_t n = sizeof vals / sizeof vals[0];
  cr_buf_t b = CR_BUF_INIT;
  for (size_t i = 0; i < n; i++) assert_int_equal(cr_wire_f64(&b, vals[i]), 0);
  assert_int_equal(b.len, 8 * n);
  cr_wire_reader_t r;
  cr_wire_reader(&r, b.data, b.len);
  for (size_t i = 0; i < n; i++) {
    double got = cr_wire_get_f64(&r);
    /* Bit for bit: -0.0 stays negative, NaN stays NaN. */
    assert_memory_equal(&got, &vals[i], sizeof got);
  }
  assert_int_equal(r.bad, 0);
  assert_ptr_equal(r.p, r.end);
  cr_buf_free(&b);
}

static void test_bytes_round_trip(void **state) {
  (void)state;
  size_t big_len = 100000;
  char *big = malloc(big_len);
  assert_non_null(big);
  for (size_t i = 0; i < big_len; i++) big[i] = (char)(i * 7);
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_wire_str(&b, "hello"), 0);
  assert_int_equal(cr_wire_str(&b, ""), 0);
  assert_int_equal(cr_wire_str(&b, NULL), 0);
  assert_int_equal(cr_wire_bytes(&b, "a\0b\0", 4), 0);
  assert_int_equal(cr_wire_bytes(&b, NULL, 99), 0); /* NULL whatever the length */
  assert_int_equal(cr_wire_bytes(&b, "", 0), 0);
  assert_int_equal(cr_wire_bytes(&b, big, big_len), 0);
  /* A length then the bytes; NULL is the length UINT32_MAX alone. */
  assert_int_equal(b.len, (4 + 5) + 4 + 4 + (4 + 4) + 4 + 4 + (4 + big_len));
  uint32_t first;
  memcpy(&first, b.data, 4);
  assert_int_equal(first, 5);
  char *data = exact_copy(b.data, b.len);
  cr_wire_reader_t r;
  cr_wire_reader(&r, data, b.len);
  size_t len = 99;
  char *s = cr_wire_get_bytes(&r, &len);
  assert_string_equal(s, "hello");
  assert_int_equal(len, 5);
  free(s);
  s = cr_wire_get_bytes(&r, &len);
  assert_non_null(s); /* empty is not NULL */
  assert_string_equal(s, "");
  assert_int_equal(len, 0);
  free(s);
  len = 99;
  assert_null(cr_wire_get_bytes(&r, &len));
  assert_int_equal(len, 0);
  assert_int_equal(r.bad, 0); /* a NULL string is a value, not a failure */
  s = cr_wire_get_bytes(&r, &len);
  assert_int_equal(len, 4);
  assert_memory_equal(s, "a\0b\0", 5); /* and NUL-terminated after the data */
  free(s);
  assert_null(cr_wire_get_bytes(&r, NULL));
  s = cr_wire_get_bytes(&r, NULL);
  assert_string_equal(s, "");
  free(s);
  s = cr_wire_get_bytes(&r, &len);
  assert_int_equal(len, big_len);
  assert_memory_equal(s, big, big_len);
  assert_int_equal(s[big_len], '\0');
  free(s);
  assert_int_equal(r.bad, 0);
  assert_ptr_equal(r.p, r.end);
  free(data);
  free(big);
  cr_buf_free(&b);
}

/* One message of every type. */
static void pack_mixed(cr_buf_t *b) {
  assert_int_equal(cr_wire_u32(b, 7), 0);
  assert_int_equal(cr_wire_str(b, "name"), 0);
  assert_int_equal(cr_wire_u64(b, 1ULL << 40), 0);
  assert_int_equal(cr_wire_str(b, NULL), 0);
  assert_int_equal(cr_wire_f64(b, 2.5), 0);
  assert_int_equal(cr_wire_bytes(b, "xyz", 3), 0);
}

/* Reads pack_mixed's message; returns how many values came out whole. */
static int read_mixed(cr_wire_reader_t *r) {
  int whole = 0;
  if (cr_wire_get_u32(r) == 7 && !r->bad) whole++;
  char *s = cr_wire_get_bytes(r, NULL);
  if (s && strcmp(s, "name") == 0 && !r->bad) whole++;
  free(s);
  if (cr_wire_get_u64(r) == 1ULL << 40 && !r->bad) whole++;
  s = cr_wire_get_bytes(r, NULL);
  if (!s && !r->bad) whole++;
  free(s);
  if (cr_wire_get_f64(r) == 2.5 && !r->bad) whole++;
  size_t len;
  s = cr_wire_get_bytes(r, &len);
  if (s && len == 3 && memcmp(s, "xyz", 3) == 0 && !r->bad) whole++;
  free(s);
  return whole;
}

/* Every proper prefix of a message fails, reads no byte past the prefix, and
 * yields only the values that lie whole inside it. */
static void test_every_truncation_refused(void **state) {
  (void)state;
  cr_buf_t b = CR_BUF_INIT;
  pack_mixed(&b);
  /* Where each value ends. */
  const size_t ends[] = {4, 4 + 4 + 4, 12 + 8, 20 + 4, 24 + 8, 32 + 4 + 3};
  assert_int_equal(b.len, ends[5]);
  for (size_t cut = 0; cut <= b.len; cut++) {
    char *data = exact_copy(b.data, cut);
    cr_wire_reader_t r;
    cr_wire_reader(&r, data, cut);
    int whole = read_mixed(&r);
    int want = 0;
    while (want < 6 && ends[want] <= cut) want++;
    if (whole != want) fail_msg("cut at %zu: %d values read whole, want %d", cut, whole, want);
    assert_int_equal(r.bad, cut < b.len);
    assert_true(r.p >= data && r.p <= r.end);
    if (cut == b.len) assert_ptr_equal(r.p, r.end);
    free(data);
  }
  cr_buf_free(&b);
}

/* Once bad, every read returns zero values, even with bytes left. */
static void test_bad_sticks(void **state) {
  (void)state;
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_wire_u32(&b, 0xdeadbeef), 0);
  assert_int_equal(cr_wire_u64(&b, 42), 0);
  assert_int_equal(cr_wire_str(&b, "left"), 0);
  cr_wire_reader_t r;
  cr_wire_reader(&r, b.data, 2);
  assert_int_equal(cr_wire_get_u32(&r), 0);
  assert_int_equal(r.bad, 1);
  assert_ptr_equal(r.p, b.data); /* nothing consumed */
  r.end = b.data + b.len;        /* even with the bytes there now */
  assert_true(cr_wire_get_u64(&r) == 0);
  assert_true(cr_wire_get_f64(&r) == 0.0);
  size_t len = 5;
  assert_null(cr_wire_get_bytes(&r, &len));
  assert_int_equal(len, 0);
  assert_ptr_equal(r.p, b.data);
  assert_int_equal(r.bad, 1);
  cr_buf_free(&b);
}

/* A length prefix larger than what follows is refused, without reading the
 * bytes that are there, whatever the size (up to UINT32_MAX - 1). */
static void test_length_overflow_refused(void **state) {
  (void)state;
  const uint32_t lies[] = {5, 6, 1000, 0x7fffffff, UINT32_MAX - 1};
  for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
    char msg[4 + 4];
    memcpy(msg, &lies[i], 4);
    memcpy(msg + 4, "abcd", 4);
    char *data = exact_copy(msg, sizeof msg);
    cr_wire_reader_t r;
    cr_wire_reader(&r, data, sizeof msg);
    size_t len = 9;
    assert_null(cr_wire_get_bytes(&r, &len));
    assert_int_equal(len, 0);
    assert_int_equal(r.bad, 1);
    free(data);
  }
  /* Exactly what follows is fine. */
  char msg[8];
  uint32_t four = 4;
  memcpy(msg, &four, 4);
  memcpy(msg + 4, "abcd", 4);
  cr_wire_reader_t r;
  cr_wire_reader(&r, msg, sizeof msg);
  char *s = cr_wire_get_bytes(&r, NULL);
  assert_string_equal(s, "abcd");
  free(s);
  assert_int_equal(r.bad, 0);
  assert_ptr_equal(r.p, r.end);
}

/* The writer refuses a length the u32 cannot carry (UINT32_MAX would read
 * back as NULL), before touching the bytes and without writing anything. */
static void test_writer_refuses_huge_lengths(void **state) {
  (void)state;
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_wire_u32(&b, 1), 0);
  const char tiny[1] = {'x'};
  assert_int_equal(cr_wire_bytes(&b, tiny, (size_t)UINT32_MAX), CR_ETOOBIG);
  assert_int_equal(cr_wire_bytes(&b, tiny, (size_t)UINT32_MAX + 10), CR_ETOOBIG);
  assert_int_equal(cr_wire_bytes(&b, tiny, SIZE_MAX), CR_ETOOBIG);
  assert_int_equal(b.len, 4);
  cr_buf_free(&b);
}

/* An empty buffer (no data at all) is an empty message. */
static void test_empty_reader(void **state) {
  (void)state;
  cr_buf_t b = CR_BUF_INIT;
  cr_wire_reader_t r;
  cr_wire_reader(&r, b.data, b.len);
  assert_int_equal(r.bad, 0);
  assert_ptr_equal(r.p, r.end);
  assert_int_equal(cr_wire_get_u32(&r), 0);
  assert_int_equal(r.bad, 1);
  assert_null(cr_wire_get_bytes(&r, NULL));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_u32_u64_round_trip),
      cmocka_unit_test(test_f64_round_trip),
      cmocka_unit_test(test_bytes_round_trip),
      cmocka_unit_test(test_every_truncation_refused),
      cmocka_unit_test(test_bad_sticks),
      cmocka_unit_test(test_length_overflow_refused),
      cmocka_unit_test(test_writer_refuses_huge_lengths),
      cmocka_unit_test(test_empty_reader),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
