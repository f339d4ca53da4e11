/* test_rcache.c - the gateway's response cache as a data structure
 * (core/trigger/http/rcache.c): put and get, fresh -> stale -> miss by the
 * clock given, the purge epoch, replacing, least-recently-used eviction by
 * bytes (exact entries and bytes), an entry over an eighth of the cache
 * refused, and the refreshing flag of a stale entry. The HTTP side (keys,
 * X-Cache, purges across workers) is tests/integration/test_gateway_cache.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rcache.h"

/* An entry stored at t0 for ttl seconds plus swr, with a body of n bytes of c. */
static cr_rcache_entry_t entry(char *body, size_t n, char c, uint64_t t0, double ttl, double swr, uint64_t epoch) {
  memset(body, c, n);
  cr_rcache_entry_t e = {.status = 200, .ctype = "text/plain", .lines = "X-A: 1\r\n", .lines_len = 8,
                         .body = body, .body_len = n, .stored_ms = t0, .ttl = ttl, .swr = swr, .epoch = epoch};
  return e;
}

static size_t count_entries(const cr_rcache_t *c) {
  size_t n;
  cr_rcache_counts(c, &n, NULL);
  return n;
}

static size_t count_bytes(const cr_rcache_t *c) {
  size_t b;
  cr_rcache_counts(c, NULL, &b);
  return b;
}

static void test_put_get(void **state) {
  (void)state;
  cr_rcache_t *c = cr_rcache_new(1 << 20);
  assert_non_null(c);
  char body[100];
  cr_rcache_entry_t e = entry(body, sizeof body, 'x', 1000, 10, 0, 7);
  cr_rcache_entry_t out;
  assert_int_equal(cr_rcache_get(c, "k1", 2, 1000, 7, 0, 0, &out), CR_RCACHE_MISS);
  assert_int_equal(cr_rcache_put(c, "k1", 2, &e), 0);
  memset(body, 'y', sizeof body); /* the cache holds a copy */
  memset(&out, 0, sizeof out);
  assert_int_equal(cr_rcache_get(c, "k1", 2, 1500, 7, 0, 0, &out), CR_RCACHE_FRESH);
  assert_int_equal(out.status, 200);
  assert_string_equal(out.ctype, "text/plain");
  assert_int_equal(out.lines_len, 8);
  assert_memory_equal(out.lines, "X-A: 1\r\n", 8);
  assert_int_equal(out.body_len, 100);
  for (size_t i = 0; i < out.body_len; i++) assert_int_equal(out.body[i], 'x');
  assert_int_equal(out.stored_ms, 1000);
  assert_true(out.ttl == 10 && out.swr == 0);
  assert_int_equal(out.epoch, 7);
  /* Another key, a prefix of it, a longer one: misses. */
  assert_int_equal(cr_rcache_get(c, "k2", 2, 1500, 7, 0, 0, &out), CR_RCACHE_MISS);
  assert_int_equal(cr_rcache_get(c, "k", 1, 1500, 7, 0, 0, &out), CR_RCACHE_MISS);
  assert_int_equal(cr_rcache_get(c, "k1x", 3, 1500, 7, 0, 0, &out), CR_RCACHE_MISS);
  size_t one = sizeof body + 2 + strlen("text/plain") + 1 + 8;
  assert_int_equal(count_entries(c), 1);
  /* bytes: the entry's header struct plus what it holds */
  assert_true(count_bytes(c) > one);
  /* No content type, no lines, an empty body. */
  cr_rcache_entry_t bare = {.status = 200, .lines = "", .body = "", .stored_ms = 1000, .ttl = 10, .epoch = 7};
  assert_int_equal(cr_rcache_put(c, "bare", 4, &bare), 0);
  assert_int_equal(cr_rcache_get(c, "bare", 4, 1000, 7, 0, 0, &out), CR_RCACHE_FRESH);
  assert_null(out.ctype);
  assert_int_equal(out.lines_len, 0);
  assert_int_equal(out.body_len, 0);
  assert_int_equal(count_entries(c), 2);
  cr_rcache_free(c);
}

static void test_fresh_stale_miss(void **state) {
  (void)state;
  cr_rcache_t *c = cr_rcache_new(1 << 20);
  char body[10];
  cr_rcache_entry_t e = entry(body, sizeof body, 'a', 10000, 2, 3, 0);
  assert_int_equal(cr_rcache_put(c, "k", 1, &e), 0);
  cr_rcache_entry_t out;
  assert_int_equal(cr_rcache_get(c, "k", 1, 10000, 0, 0, 0, &out), CR_RCACHE_FRESH);
  assert_int_equal(cr_rcache_get(c, "k", 1, 11999, 0, 0, 0, &out), CR_RCACHE_FRESH);
  assert_int_equal(cr_rcache_get(c, "k", 1, 12000, 0, 0, 0, &out), CR_RCACHE_STALE); /* ttl reached */
  assert_int_equal(cr_rcache_get(c, "k", 1, 14999, 0, 0, 0, &out), CR_RCACHE_STALE);
  assert_int_equal(count_entries(c), 1);
  assert_int_equal(cr_rcache_get(c, "k", 1, 15000, 0, 0, 0, &out), CR_RCACHE_MISS); /* ttl + swr reached */
  assert_int_equal(count_entries(c), 0); /* dropped */
  assert_int_equal(count_bytes(c), 0);
  assert_int_equal(cr_rcache_get(c, "k", 1, 10000, 0, 0, 0, &out), CR_RCACHE_MISS); /* gone, even back in time */

  /* Without swr: fresh, then gone. */
  e = entry(body, sizeof body, 'a', 10000, 2, 0, 0);
  assert_int_equal(cr_rcache_put(c, "k", 1, &e), 0);
  assert_int_equal(cr_rcache_get(c, "k", 1, 11999, 0, 0, 0, &out), CR_RCACHE_FRESH);
  assert_int_equal(cr_rcache_get(c, "k", 1, 12000, 0, 0, 0, &out), CR_RCACHE_MISS);
  assert_int_equal(count_entries(c), 0);

  /* A clock behind the entry's time counts as age 0. */
  e = entry(body, sizeof body, 'a', 10000, 2, 0, 0);
  assert_int_equal(cr_rcache_put(c, "k", 1, &e), 0);
  assert_int_equal(cr_rcache_get(c, "k", 1, 5000, 0, 0, 0, &out), CR_RCACHE_FRESH);
  cr_rcache_free(c);
}

static void test_epoch(void **state) {
  (void)state;
  cr_rcache_t *c = cr_rcache_new(1 << 20);
  char body[10];
  cr_rcache_entry_t e = entry(body, sizeof body, 'a', 1000, 60, 0, 3);
  assert_int_equal(cr_rcache_put(c, "k", 1, &e), 0);
  e.epoch = 3;
  assert_int_equal(cr_rcache_put(c, "j", 1, &e), 0);
  cr_rcache_entry_t out;
  assert_int_equal(cr_rcache_get(c, "k", 1, 1000, 3, 0, 0, &out), CR_RCACHE_FRESH);
  assert_int_equal(cr_rcache_get(c, "k", 1, 1000, 4, 0, 0, &out), CR_RCACHE_MISS); /* purged */
  assert_int_equal(count_entries(c), 1);                                     /* and dropped */
  assert_int_equal(cr_rcache_get(c, "k", 1, 1000, 3, 0, 0, &out), CR_RCACHE_MISS); /* gone for the old epoch too */
  /* Any other epoch, not just a later one. */
  assert_int_equal(cr_rcache_get(c, "j", 1, 1000, 2, 0, 0, &out), CR_RCACHE_MISS);
  assert_int_equal(count_entries(c), 0);
  assert_int_equal(count_bytes(c), 0);
  cr_rcache_free(c);
}

static void test_replace(void **state) {
  (void)state;
  cr_rcache_t *c = cr_rcache_new(1 << 20);
  char b1[100], b2[30];
  cr_rcache_entry_t e1 = entry(b1, sizeof b1, '1', 1000, 10, 0, 0);
  cr_rcache_entry_t e2 = entry(b2, sizeof b2, '2', 2000, 20, 0, 0);
  assert_int_equal(cr_rcache_put(c, "k", 1, &e1), 0);
  size_t bytes1 = count_bytes(c);
  assert_int_equal(cr_rcache_put(c, "k", 1, &e2), 0);
  assert_int_equal(count_entries(c), 1);
  assert_int_equal(count_bytes(c), bytes1 - 70); /* the old entry's bytes went with it */
  cr_rcache_entry_t out;
  assert_int_equal(cr_rcache_get(c, "k", 1, 2000, 0, 0, 0, &out), CR_RCACHE_FRESH);
  assert_int_equal(out.body_len, 30);
  assert_int_equal(out.body[0], '2');
  assert_int_equal(out.stored_ms, 2000);
  assert_true(out.ttl == 20);
  /* Its new time counts: fresh at 2000 + 19.999 s, which e1's ttl was not. */
  assert_int_equal(cr_rcache_get(c, "k", 1, 21999, 0, 0, 0, &out), CR_RCACHE_FRESH);
  cr_rcache_free(c);
}

static void test_lru_eviction(void **state) {
  (void)state;
  /* Measure one entry's size, then make a cache of exactly 16 of them (an
   * eighth of it: 2 entries' worth). */
  char body[1000];
  cr_rcache_t *m = cr_rcache_new(1 << 20);
  cr_rcache_entry_t e = entry(body, sizeof body, 'a', 1000, 60, 0, 0);
  assert_int_equal(cr_rcache_put(m, "k00", 3, &e), 0);
  size_t one = count_bytes(m);
  cr_rcache_free(m);
  assert_true(one > sizeof body + 3);

  cr_rcache_t *c = cr_rcache_new(16 * one);
  char key[8];
  for (int i = 0; i < 16; i++) {
    snprintf(key, sizeof key, "k%02d", i);
    assert_int_equal(cr_rcache_put(c, key, 3, &e), 0);
  }
  assert_int_equal(count_entries(c), 16);
  assert_int_equal(count_bytes(c), 16 * one);
  cr_rcache_entry_t out;
  /* Use k00 and k02: k01 is now the least recently used, then k03. */
  assert_int_equal(cr_rcache_get(c, "k00", 3, 1000, 0, 0, 0, &out), CR_RCACHE_FRESH);
  assert_int_equal(cr_rcache_get(c, "k02", 3, 1000, 0, 0, 0, &out), CR_RCACHE_FRESH);
  assert_int_equal(cr_rcache_put(c, "k16", 3, &e), 0);
  assert_int_equal(count_entries(c), 16);
  assert_int_equal(count_bytes(c), 16 * one);
  assert_int_equal(cr_rcache_get(c, "k01", 3, 1000, 0, 0, 0, &out), CR_RCACHE_MISS);
  assert_int_equal(cr_rcache_get(c, "k00", 3, 1000, 0, 0, 0, &out), CR_RCACHE_FRESH);
  assert_int_equal(cr_rcache_get(c, "k02", 3, 1000, 0, 0, 0, &out), CR_RCACHE_FRESH);
  assert_int_equal(cr_rcache_get(c, "k03", 3, 1000, 0, 0, 0, &out), CR_RCACHE_FRESH);
  /* Least recent first now: k04 .. k16, k00, k02, k03. An entry of exactly
   * two entries' size pushes two out: k04 and k05. */
  char big[4000];
  size_t overhead = one - sizeof body;
  assert_true(2 * one - overhead <= sizeof big);
  cr_rcache_entry_t e2 = entry(big, 2 * one - overhead, 'b', 1000, 60, 0, 0);
  assert_int_equal(cr_rcache_put(c, "kbb", 3, &e2), 0);
  assert_int_equal(count_entries(c), 15);
  assert_int_equal(count_bytes(c), 16 * one);
  assert_int_equal(cr_rcache_get(c, "k04", 3, 1000, 0, 0, 0, &out), CR_RCACHE_MISS);
  assert_int_equal(cr_rcache_get(c, "k05", 3, 1000, 0, 0, 0, &out), CR_RCACHE_MISS);
  for (int i = 0; i <= 16; i++) {
    if (i == 1 || i == 4 || i == 5) continue;
    snprintf(key, sizeof key, "k%02d", i);
    assert_int_equal(cr_rcache_get(c, key, 3, 1000, 0, 0, 0, &out), CR_RCACHE_FRESH);
  }
  assert_int_equal(cr_rcache_get(c, "kbb", 3, 1000, 0, 0, 0, &out), CR_RCACHE_FRESH);
  assert_int_equal(out.body_len, 2 * one - overhead);
  cr_rcache_free(c);
}

static void test_too_big(void **state) {
  (void)state;
  char body[4096];
  cr_rcache_t *m = cr_rcache_new(1 << 20);
  cr_rcache_entry_t e = entry(body, 0, 'a', 1000, 60, 0, 0);
  assert_int_equal(cr_rcache_put(m, "k", 1, &e), 0);
  size_t overhead = count_bytes(m); /* an entry with an empty body */
  cr_rcache_free(m);

  size_t max = 8 * 4096;
  cr_rcache_t *c = cr_rcache_new(max);
  /* Exactly an eighth: kept. One byte more: refused, and nothing else is evicted for it. */
  e = entry(body, max / 8 - overhead, 'a', 1000, 60, 0, 0);
  assert_int_equal(cr_rcache_put(c, "k", 1, &e), 0);
  assert_int_equal(count_bytes(c), max / 8);
  e = entry(body, max / 8 - overhead + 1, 'a', 1000, 60, 0, 0);
  assert_int_equal(cr_rcache_put(c, "j", 1, &e), -1);
  assert_int_equal(count_entries(c), 1);
  assert_int_equal(count_bytes(c), max / 8);
  cr_rcache_entry_t out;
  assert_int_equal(cr_rcache_get(c, "j", 1, 1000, 0, 0, 0, &out), CR_RCACHE_MISS);
  assert_int_equal(cr_rcache_get(c, "k", 1, 1000, 0, 0, 0, &out), CR_RCACHE_FRESH);
  /* Replacing k with a too-big answer is refused too; the old one stays. */
  assert_int_equal(cr_rcache_put(c, "k", 1, &e), -1);
  assert_int_equal(cr_rcache_get(c, "k", 1, 1000, 0, 0, 0, &out), CR_RCACHE_FRESH);
  assert_int_equal(out.body_len, max / 8 - overhead);
  cr_rcache_free(c);
}

static void test_refreshing(void **state) {
  (void)state;
  cr_rcache_t *c = cr_rcache_new(1 << 20);
  char body[10];
  cr_rcache_entry_t e = entry(body, sizeof body, 'a', 1000, 1, 10, 0);
  assert_int_equal(cr_rcache_refreshing(c, "k", 1), 0); /* no entry: nothing to mark */
  cr_rcache_entry_t out;
  assert_int_equal(cr_rcache_get(c, "k", 1, 1000, 0, 0, 0, &out), CR_RCACHE_MISS);
  assert_int_equal(cr_rcache_put(c, "k", 1, &e), 0);
  assert_int_equal(cr_rcache_get(c, "k", 1, 2500, 0, 0, 0, &out), CR_RCACHE_STALE);
  assert_int_equal(cr_rcache_refreshing(c, "k", 1), 0); /* the first: goes to the function */
  assert_int_equal(cr_rcache_refreshing(c, "k", 1), 1); /* the others: answered stale */
  assert_int_equal(cr_rcache_refreshing(c, "k", 1), 1);
  /* The refresh failed: the next request refreshes again, the ones after it are answered stale. */
  cr_rcache_refresh_failed(c, "k", 1);
  assert_int_equal(cr_rcache_refreshing(c, "k", 1), 0);
  assert_int_equal(cr_rcache_refreshing(c, "k", 1), 1);
  cr_rcache_refresh_failed(c, "nokey", 5); /* no entry: nothing happens */
  assert_int_equal(cr_rcache_get(c, "k", 1, 2600, 0, 0, 0, &out), CR_RCACHE_STALE);
  /* The refresh stores a new entry: its flag starts clear. */
  e = entry(body, sizeof body, 'b', 2700, 1, 10, 0);
  assert_int_equal(cr_rcache_put(c, "k", 1, &e), 0);
  assert_int_equal(cr_rcache_get(c, "k", 1, 2700, 0, 0, 0, &out), CR_RCACHE_FRESH);
  assert_int_equal(out.body[0], 'b');
  assert_int_equal(cr_rcache_get(c, "k", 1, 3800, 0, 0, 0, &out), CR_RCACHE_STALE);
  assert_int_equal(cr_rcache_refreshing(c, "k", 1), 0);
  assert_int_equal(cr_rcache_refreshing(c, "k", 1), 1);
  /* The flag is per key. */
  assert_int_equal(cr_rcache_put(c, "j", 1, &e), 0);
  assert_int_equal(cr_rcache_refreshing(c, "j", 1), 0);
  cr_rcache_free(c);
}

/* A path purge (purged_ns) drops entries begun at or before it; a local copy's until_ns drops it
 * whatever its ttl (a shared function's copy, scache.h). */
static void test_path_purge_and_until(void **state) {
  (void)state;
  cr_rcache_t *c = cr_rcache_new(1 << 20);
  char body[10];
  cr_rcache_entry_t e = entry(body, sizeof body, 'x', 1000, 30, 0, 0), out;
  e.began_ns = 500;
  assert_int_equal(cr_rcache_put(c, "k", 1, &e), 0);
  assert_int_equal(cr_rcache_get(c, "k", 1, 1000, 0, 499, 600, &out), CR_RCACHE_FRESH); /* purged before it began */
  assert_int_equal(cr_rcache_get(c, "k", 1, 1000, 0, 500, 600, &out), CR_RCACHE_MISS);  /* in the same ms: gone */
  assert_int_equal(cr_rcache_get(c, "k", 1, 1000, 0, 0, 600, &out), CR_RCACHE_MISS);    /* and stays gone */
  e.began_ns = 700;
  assert_int_equal(cr_rcache_put(c, "k", 1, &e), 0);
  assert_int_equal(cr_rcache_get(c, "k", 1, 1000, 0, 800, 900, &out), CR_RCACHE_MISS); /* purged after */
  e.began_ns = 900;
  e.until_ns = 1400;
  assert_int_equal(cr_rcache_put(c, "k", 1, &e), 0);
  assert_int_equal(cr_rcache_get(c, "k", 1, 1000, 0, 800, 1399, &out), CR_RCACHE_FRESH);
  assert_int_equal(out.until_ns, 1400);
  assert_int_equal(cr_rcache_get(c, "k", 1, 1000, 0, 800, 1400, &out), CR_RCACHE_MISS); /* its local time is up */
  assert_int_equal(count_entries(c), 0);
  cr_rcache_free(c);
}

/* The shared cache's bytes: encode then decode gives the entry back; anything malformed is refused. */
static void test_encode_decode(void **state) {
  (void)state;
  char body[5] = {'a', '\0', 'b', '\n', 'c'};
  cr_rcache_entry_t e = {.status = 200, .ctype = "application/json", .lines = "X-A: 1\r\nX-B: 2\r\n",
                         .lines_len = 16, .body = body, .body_len = 5, .stored_ms = 1765000000123ull,
                         .ttl = 30, .swr = 2.5, .epoch = 9, .began_ns = 4, .until_ns = 5};
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_rcache_encode(&b, &e), 0);
  const char head[] = "CRC1 200 1765000000123 30.000 2.500 16 16 5\n";
  assert_true(b.len == sizeof head - 1 + 16 + 16 + 5);
  assert_memory_equal(b.data, head, sizeof head - 1);
  cr_rcache_entry_t d;
  char ct[64];
  assert_int_equal(cr_rcache_decode(b.data, b.len, &d, ct, sizeof ct), 0);
  assert_int_equal(d.status, 200);
  assert_true(d.stored_ms == e.stored_ms);
  assert_true(d.ttl == 30 && d.swr == 2.5);
  assert_string_equal(d.ctype, "application/json");
  assert_int_equal(d.lines_len, 16);
  assert_memory_equal(d.lines, e.lines, 16);
  assert_int_equal(d.body_len, 5);
  assert_memory_equal(d.body, body, 5);
  assert_true(d.epoch == 0 && d.began_ns == 0 && d.until_ns == 0); /* local: not carried */
  /* The content type must fit the buffer given. */
  assert_int_equal(cr_rcache_decode(b.data, b.len, &d, ct, 16), -1);
  /* Cut short, or one byte too many: the lengths no longer add up. */
  assert_int_equal(cr_rcache_decode(b.data, b.len - 1, &d, ct, sizeof ct), -1);
  cr_buf_append(&b, "x", 1);
  assert_int_equal(cr_rcache_decode(b.data, b.len, &d, ct, sizeof ct), -1);
  b.len--;
  cr_buf_free(&b);
  /* No content type, empty lines and body. */
  cr_rcache_entry_t z = {.status = 204, .lines = "", .body = "", .stored_ms = 1, .ttl = 0.5};
  assert_int_equal(cr_rcache_encode(&b, &z), 0);
  assert_int_equal(cr_rcache_decode(b.data, b.len, &d, ct, sizeof ct), 0);
  assert_null(d.ctype);
  assert_int_equal(d.status, 204);
  assert_true(d.ttl == 0.5);
  assert_int_equal(d.lines_len + d.body_len, 0);
  cr_buf_free(&b);
  /* Malformed heads. */
  const char *bad[] = {"", "CRC1", "CRC2 200 1 30.000 0.000 0 0 0\n", "CRC1 200 1 30.000 0.000 0 0 0",
                       "CRC1 99 1 30.000 0.000 0 0 0\n", "CRC1 200 1 0.000 0.000 0 0 0\n",
                       "CRC1 200 x 30.000 0.000 0 0 0\n", "CRC1 200 1 30.000 0.000 0 0 1\n",
                       "CRC1 200 1 30.000 0.000 3 0 0\nab", "CRC1 -200 1 30.000 0.000 0 0 0\n",
                       "CRC1 200 1 30.000 0.000 99999999999999999999 0 0\n"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (cr_rcache_decode(bad[i], strlen(bad[i]), &d, ct, sizeof ct) != -1) fail_msg("accepted '%s'", bad[i]);
  const char nul[] = "CRC1 200 1 30.000 0.000 2 0 0\na\0";
  assert_int_equal(cr_rcache_decode(nul, sizeof nul - 1, &d, ct, sizeof ct), -1); /* a NUL in the type */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_put_get),     cmocka_unit_test(test_fresh_stale_miss), cmocka_unit_test(test_epoch),
      cmocka_unit_test(test_replace),     cmocka_unit_test(test_lru_eviction),     cmocka_unit_test(test_too_big),
      cmocka_unit_test(test_refreshing),  cmocka_unit_test(test_path_purge_and_until),
      cmocka_unit_test(test_encode_decode),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
