/* test_storage_api.c - /_/storage (lua/storage_api.lua) and crescent.storage beyond the basics of
 * test_stdlib.c: objects larger than --max-response are served (what PUT accepts, GET returns).
 * On the managed Redis (--redis auto). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

static void req(int port, const char *method, const char *path, const char *headers, const char *body,
                size_t body_len, http_resp_t *r) {
  if (http_request_ka(port, method, path, headers, body, body_len, r, 20000) != 0)
    fail_msg("%s %s: no response", method, path);
}

/* A HEAD request on its own connection. */
static void head(int port, const char *path, const char *headers, http_resp_t *r) {
  int fd = http_connect(port);
  assert_true(fd >= 0);
  char buf[1024];
  snprintf(buf, sizeof buf, "HEAD %s HTTP/1.1\r\nHost: x\r\n%s\r\n", path, headers ? headers : "");
  http_sends(fd, buf);
  if (http_read(fd, r, 1, 10000) != 0) fail_msg("HEAD %s: no response", path);
  http_close(fd);
}

static void expect_header(const http_resp_t *r, const char *name, const char *want) {
  const char *v = http_header(r, name);
  if (!v || strcmp(v, want) != 0) fail_msg("header %s: got %s, want %s\n%s", name, v ? v : "(none)", want, r->head);
}

/* --- what PUT accepts, GET serves ------------------------------------------------------------------ */

static void objects_over_max_response(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  /* A user function is still held to --max-response. */
  srv_write(&s, "huge.lua", "return function() return string.rep('x', 7000000) end");
  srv_start(&s, "--workers 1");
  size_t n = 10000000; /* the issue's: between --max-response (6 MB) and --max-object (16 MB) */
  char *big = malloc(n);
  for (size_t i = 0; i < n; i++) big[i] = (char)(i * 13 + (i >> 16));
  http_resp_t r;
  req(s.port, "PUT", "/_/storage/media/big.bin", "Content-Type: video/mp4\r\n", big, n, &r);
  if (r.status != 200) fail_msg("PUT: %d %s", r.status, r.body);
  http_free(&r);
  req(s.port, "GET", "/_/storage/media/big.bin", NULL, NULL, 0, &r);
  if (r.status != 200) fail_msg("GET of a 10 MB object: %d %s", r.status, r.body);
  assert_int_equal(r.body_len, n);
  assert_true(memcmp(r.body, big, n) == 0);
  expect_header(&r, "content-type", "video/mp4");
  expect_header(&r, "content-length", "10000000");
  http_free(&r);
  head(s.port, "/_/storage/media/big.bin", NULL, &r);
  assert_int_equal(r.status, 200);
  expect_header(&r, "content-length", "10000000");
  http_free(&r);
  free(big);

  srv_expect_errors(&s, 1);
  req(s.port, "GET", "/huge", NULL, NULL, 0, &r);
  assert_int_equal(r.status, 500);
  http_free(&r);
  assert_int_equal(srv_log_wait(&s, 1, 5000, "over the limit of 6291456 bytes", NULL), 1);
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(objects_over_max_response),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
