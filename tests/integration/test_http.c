/* test_http.c - HTTP/1.1 on the wire: keep-alive, pipelining, bodies, the
 * limits and their answers, the headers every response carries, routing
 * answers. Raw sockets against the real `crescent serve`. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strptime, timegm */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define READ_MS 5000

static const char HELLO_LUA[] = "return function(event) return 'hello' end\n";
static const char ECHO_LUA[] =
    "return function(event)\n"
    "  return { status = 200, body = event.body,\n"
    "           headers = { ['content-type'] = event.headers['content-type'] } }\n"
    "end\n";
/* Echoes the path and method too, to tell pipelined answers apart. */
static const char WHO_LUA[] =
    "return function(event)\n"
    "  local n = event.query.n\n"
    "  return event.method .. ' ' .. event.path .. (n and ('#' .. n) or '') .. ' ' .. event.body\n"
    "end\n";
static const char SLOW_LUA[] =
    "return function() local t = os.clock() while os.clock() - t < 0.1 do end return 'slow' end\n";
static const char ONLY_LUA[] = "return { routes = { 'GET /only' }, handler = function() return 'only' end }\n";

static void write_functions(srv_t *s) {
  srv_write(s, "hello.lua", HELLO_LUA);
  srv_write(s, "echo.lua", ECHO_LUA);
  srv_write(s, "who.lua", WHO_LUA);
  srv_write(s, "slow.lua", SLOW_LUA);
  srv_write(s, "only.lua", ONLY_LUA);
}

/* Sends one HTTP/1.1 request on fd (no Connection header unless given in
 * extra). A body adds Content-Length. */
static void send_req(int fd, const char *method, const char *path, const char *extra, const void *body,
                     size_t len) {
  size_t cap = strlen(method) + strlen(path) + (extra ? strlen(extra) : 0) + 128;
  char *head = malloc(cap);
  assert_non_null(head);
  int n = snprintf(head, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s", method, path, extra ? extra : "");
  if (body) n += snprintf(head + n, cap - (size_t)n, "Content-Length: %zu\r\n", len);
  n += snprintf(head + n, cap - (size_t)n, "\r\n");
  assert_true((size_t)n < cap);
  http_send(fd, head, (size_t)n);
  free(head);
  if (body && len) http_send(fd, body, len);
}

/* Reads one response or fails the test. */
static void must_read(int fd, http_resp_t *r, int head_only) {
  if (http_read(fd, r, head_only, READ_MS) != 0) fail_msg("no complete response within %d ms", READ_MS);
}

/* The headers every response carries: a valid current Date, X-Request-Id,
 * Content-Length equal to the body (absent for 204), Content-Type (not for
 * 204). head_only: a HEAD answer (Content-Length describes the GET body). */
static void check_common(const http_resp_t *r, int head_only) {
  const char *date = http_header(r, "date");
  assert_non_null(date);
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  const char *end = strptime(date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  assert_non_null(end);
  assert_int_equal(*end, '\0');
  time_t t = timegm(&tm);
  time_t now = time(NULL);
  assert_true(t > now - 10 && t < now + 10);
  const char *id = http_header(r, "x-request-id");
  assert_non_null(id);
  assert_int_equal(strlen(id), 36);
  if (r->status == 204) {
    assert_null(http_header(r, "content-length"));
    assert_null(http_header(r, "content-type"));
    assert_int_equal(r->body_len, 0);
    return;
  }
  const char *cl = http_header(r, "content-length");
  assert_non_null(cl);
  if (!head_only) assert_int_equal(strtoull(cl, NULL, 10), r->body_len);
  assert_non_null(http_header(r, "content-type"));
}

/* The status, or a failure that shows the whole answer. */
static void expect_status(http_resp_t *r, int want) {
  if (r->status == want) return;
  fprintf(stderr, "status %d, expected %d; the answer:\n%s%.300s\n", r->status, want, r->head ? r->head : "(none)",
          r->body ? r->body : "");
  int got = r->status;
  http_free(r); /* fail_msg does not return */
  fail_msg("status %d, expected %d", got, want);
}

/* The X-Request-Id of r (checked to fit). */
static void copy_id(char *dst, size_t size, const http_resp_t *r) {
  const char *id = http_header(r, "x-request-id");
  assert_non_null(id);
  size_t n = strlen(id);
  assert_true(n < size);
  memcpy(dst, id, n + 1);
}

static void assert_header(const http_resp_t *r, const char *name, const char *want) {
  const char *v = http_header(r, name);
  if (!v) fail_msg("header %s missing; head:\n%s", name, r->head);
  assert_string_equal(v, want);
}

/* An error answer: status, JSON content type, exact body, Connection: close,
 * and the server really closes. */
static void assert_refusal(int fd, int status, const char *body) {
  http_resp_t r;
  must_read(fd, &r, 0);
  expect_status(&r, status);
  check_common(&r, 0);
  assert_header(&r, "content-type", "application/json");
  if (body) assert_string_equal(r.body, body);
  assert_header(&r, "connection", "close");
  http_free(&r);
  assert_int_equal(http_wait_closed(fd, 3000), 1);
}

/* The only worker is the one that was there before, and it answers. */
static void assert_still_serving(srv_t *s, pid_t worker) {
  pid_t pids[8];
  assert_int_equal(srv_worker_pids(s, pids, 8), 1);
  assert_int_equal(pids[0], worker);
  http_resp_t r;
  http_get(s->port, "/hello", &r);
  expect_status(&r, 200);
  assert_string_equal(r.body, "hello");
  check_common(&r, 0);
  http_free(&r);
  assert_int_equal(srv_log_count(s, "starting a new one", NULL), 0);
}

static pid_t only_worker(srv_t *s) {
  pid_t pids[8];
  assert_int_equal(srv_worker_pids(s, pids, 8), 1);
  return pids[0];
}

/* --- keep-alive, pipelining, bodies ------------------------------------------------------------ */

static void keepalive_many_requests_one_connection(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_functions(&s);
  srv_start(&s, "--workers 1");
  pid_t worker = only_worker(&s);
  int fd = http_connect(s.port);
  assert_true(fd >= 0);
  for (int i = 0; i < 5; i++) {
    char path[64], body[64];
    snprintf(path, sizeof path, "/who?n=%d", i);
    snprintf(body, sizeof body, "req-%d", i);
    send_req(fd, "POST", path, NULL, body, strlen(body));
    http_resp_t r;
    must_read(fd, &r, 0);
    expect_status(&r, 200);
    check_common(&r, 0);
    char want[80];
    snprintf(want, sizeof want, "POST /who#%d req-%d", i, i);
    assert_string_equal(r.body, want);
    assert_null(http_header(&r, "connection")); /* 1.1: keep-alive is the default, not announced */
    http_free(&r);
  }
  /* Still open: no close from the server. */
  assert_int_equal(http_wait_closed(fd, 200), 0);
  http_close(fd);
  /* Clients that close first, idle or right after an answer, cost nothing. */
  for (int i = 0; i < 5; i++) {
    fd = http_connect(s.port);
    assert_true(fd >= 0);
    if (i % 2) {
      send_req(fd, "GET", "/hello", NULL, NULL, 0);
      http_resp_t r;
      must_read(fd, &r, 0);
      expect_status(&r, 200);
      http_free(&r);
    }
    http_close(fd);
  }
  sleep_ms(100);
  assert_still_serving(&s, worker);
  assert_int_equal(srv_stop(&s), 0);
}

static void pipelined_requests_answered_in_order(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_functions(&s);
  srv_start(&s, "--workers 1");
  int fd = http_connect(s.port);
  assert_true(fd >= 0);
  /* One write: a slow function first, so order cannot come from timing. */
  const char *all = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
                    "POST /who?n=a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirst"
                    "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                    "POST /who?n=b HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsecond"
                    "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                    "PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/x-third\r\nContent-Length: 5\r\n\r\nthird";
  http_send(fd, all, strlen(all));
  http_resp_t r;
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  assert_string_equal(r.body, "slow");
  http_free(&r);
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  assert_string_equal(r.body, "POST /who#a first");
  http_free(&r);
  must_read(fd, &r, 0);
  expect_status(&r, 404);
  assert_string_equal(r.body, "{\"error\":\"not found\"}");
  http_free(&r);
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  assert_string_equal(r.body, "POST /who#b second");
  http_free(&r);
  must_read(fd, &r, 1);
  expect_status(&r, 200);
  assert_header(&r, "content-length", "5");
  http_free(&r);
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  assert_header(&r, "content-type", "text/x-third");
  assert_string_equal(r.body, "third");
  http_free(&r);
  /* Nothing more: no stray bytes (a HEAD body would show up here). */
  assert_int_equal(http_read(fd, &r, 0, 300), -1);
  assert_int_equal(r.closed, 0);
  http_close(fd);
  assert_int_equal(srv_stop(&s), 0);
}

static void content_length_and_chunked_bodies(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_functions(&s);
  srv_start(&s, "--workers 1");
  int fd = http_connect(s.port);
  assert_true(fd >= 0);

  /* Content-Length body. */
  send_req(fd, "POST", "/echo", "Content-Type: text/x-cl\r\n", "plain body", 10);
  http_resp_t r;
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  check_common(&r, 0);
  assert_header(&r, "content-type", "text/x-cl");
  assert_header(&r, "content-length", "10");
  assert_string_equal(r.body, "plain body");
  http_free(&r);

  /* Chunked: several chunks, hex sizes, an extension, a trailer, split over writes. */
  http_sends(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/x-chunked\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n");
  http_sends(fd, "5\r\nHello\r\n");
  sleep_ms(20);
  http_sends(fd, "1;ext=1\r\n,\r\n");
  sleep_ms(20);
  http_sends(fd, "10\r\n chunked world! \r\n");
  http_sends(fd, "3\r\nend\r\n0\r\nX-Trailer: t\r\n\r\n");
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  check_common(&r, 0);
  assert_header(&r, "content-type", "text/x-chunked");
  assert_int_equal(r.body_len, 25);
  assert_string_equal(r.body, "Hello, chunked world! end");
  http_free(&r);

  /* Binary with NUL bytes round-trips byte for byte. */
  unsigned char bin[1000];
  for (size_t i = 0; i < sizeof bin; i++) bin[i] = (unsigned char)((i * 7) & 0xff);
  bin[0] = 0;
  bin[500] = 0;
  bin[999] = 0;
  send_req(fd, "POST", "/echo", "Content-Type: application/octet-stream\r\n", bin, sizeof bin);
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  check_common(&r, 0);
  assert_header(&r, "content-type", "application/octet-stream");
  assert_int_equal(r.body_len, sizeof bin);
  assert_memory_equal(r.body, bin, sizeof bin);
  http_free(&r);

  /* Binary, chunked. */
  http_sends(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n");
  http_sends(fd, "64\r\n");
  http_send(fd, bin, 100);
  http_sends(fd, "\r\n384\r\n");
  http_send(fd, bin + 100, 900);
  http_sends(fd, "\r\n0\r\n\r\n");
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  assert_int_equal(r.body_len, sizeof bin);
  assert_memory_equal(r.body, bin, sizeof bin);
  http_free(&r);

  http_close(fd);
  assert_int_equal(srv_stop(&s), 0);
}

static void head_has_length_but_no_body(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_functions(&s);
  srv_start(&s, "--workers 1");
  int fd = http_connect(s.port);
  assert_true(fd >= 0);
  send_req(fd, "HEAD", "/hello", NULL, NULL, 0);
  http_resp_t r;
  must_read(fd, &r, 1);
  expect_status(&r, 200);
  check_common(&r, 1);
  assert_header(&r, "content-length", "5");
  assert_header(&r, "content-type", "text/plain; charset=utf-8");
  http_free(&r);
  /* No body bytes follow: the next response starts right after the head. */
  send_req(fd, "GET", "/who", NULL, NULL, 0);
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  assert_string_equal(r.body, "GET /who ");
  http_free(&r);
  /* HEAD of an error answer: no body either. */
  send_req(fd, "HEAD", "/nope", NULL, NULL, 0);
  must_read(fd, &r, 1);
  expect_status(&r, 404);
  check_common(&r, 1);
  assert_header(&r, "content-length", "21");
  http_free(&r);
  send_req(fd, "GET", "/hello", NULL, NULL, 0);
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  assert_string_equal(r.body, "hello");
  http_free(&r);
  http_close(fd);
  assert_int_equal(srv_stop(&s), 0);
}

static void http10_and_connection_close(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_functions(&s);
  srv_start(&s, "--workers 1");
  http_resp_t r;

  /* HTTP/1.0 without keep-alive: answered, then closed. */
  int fd = http_connect(s.port);
  assert_true(fd >= 0);
  http_sends(fd, "GET /hello HTTP/1.0\r\n\r\n");
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  check_common(&r, 0);
  assert_string_equal(r.body, "hello");
  assert_header(&r, "connection", "close");
  http_free(&r);
  assert_int_equal(http_wait_closed(fd, 3000), 1);
  http_close(fd);

  /* HTTP/1.0 with Connection: keep-alive: stays open, says so. */
  fd = http_connect(s.port);
  assert_true(fd >= 0);
  for (int i = 0; i < 3; i++) {
    http_sends(fd, "POST /who HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok");
    must_read(fd, &r, 0);
    expect_status(&r, 200);
    check_common(&r, 0);
    assert_string_equal(r.body, "POST /who ok");
    assert_header(&r, "connection", "keep-alive");
    http_free(&r);
  }
  assert_int_equal(http_wait_closed(fd, 200), 0);
  /* The last 1.0 request without keep-alive closes it. */
  http_sends(fd, "GET /hello HTTP/1.0\r\n\r\n");
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  assert_header(&r, "connection", "close");
  http_free(&r);
  assert_int_equal(http_wait_closed(fd, 3000), 1);
  http_close(fd);

  /* HTTP/1.1 Connection: close, after a kept-alive request. */
  fd = http_connect(s.port);
  assert_true(fd >= 0);
  send_req(fd, "GET", "/hello", NULL, NULL, 0);
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  http_free(&r);
  send_req(fd, "GET", "/who", "Connection: close\r\n", NULL, 0);
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  assert_string_equal(r.body, "GET /who ");
  assert_header(&r, "connection", "close");
  http_free(&r);
  assert_int_equal(http_wait_closed(fd, 3000), 1);
  http_close(fd);

  /* A request pipelined after Connection: close is not answered. */
  fd = http_connect(s.port);
  assert_true(fd >= 0);
  http_sends(fd, "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /who HTTP/1.1\r\nHost: x\r\n\r\n");
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  assert_string_equal(r.body, "hello");
  http_free(&r);
  assert_int_equal(http_read(fd, &r, 0, 2000), -1);
  assert_int_equal(r.closed, 1);
  http_close(fd);
  assert_int_equal(srv_stop(&s), 0);
}

static void expect_100_continue(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_functions(&s);
  srv_start(&s, "--workers 1 --max-body 1k");
  int fd = http_connect(s.port);
  assert_true(fd >= 0);
  http_resp_t r;
  for (int i = 0; i < 2; i++) { /* twice on one connection */
    http_sends(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/x-e\r\nContent-Length: 11\r\n"
                   "Expect: 100-continue\r\n\r\n");
    /* The client waits for the go-ahead before sending the body. */
    must_read(fd, &r, 0);
    expect_status(&r, 100);
    assert_string_equal(r.head, "HTTP/1.1 100 Continue\r\n\r\n");
    http_free(&r);
    http_sends(fd, "hello there");
    must_read(fd, &r, 0);
    expect_status(&r, 200);
    check_common(&r, 0);
    assert_header(&r, "content-type", "text/x-e");
    assert_string_equal(r.body, "hello there");
    http_free(&r);
  }
  /* Chunked with Expect too. */
  http_sends(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n");
  must_read(fd, &r, 0);
  expect_status(&r, 100);
  http_free(&r);
  http_sends(fd, "3\r\nabc\r\n0\r\n\r\n");
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  assert_string_equal(r.body, "abc");
  http_free(&r);
  http_close(fd);

  /* A body that is too large is refused at once, without a 100 Continue. */
  fd = http_connect(s.port);
  assert_true(fd >= 0);
  http_sends(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n");
  assert_refusal(fd, 413, "{\"error\":\"request body too large\"}");
  http_close(fd);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- limits ------------------------------------------------------------------------------------ */

static void header_block_too_large_431(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_functions(&s);
  srv_start(&s, "--workers 1 --max-header 4k");
  pid_t worker = only_worker(&s);
  static const char body431[] = "{\"error\":\"request header fields too large\"}";

  /* Just under the limit is fine. */
  char big[8192];
  memset(big, 'a', 3000);
  big[3000] = '\0';
  char hdr[8300];
  snprintf(hdr, sizeof hdr, "X-Big: %s\r\n", big);
  int fd = http_connect(s.port);
  assert_true(fd >= 0);
  send_req(fd, "GET", "/hello", hdr, NULL, 0);
  http_resp_t r;
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  http_free(&r);
  http_close(fd);

  /* One header over 4 KB. */
  memset(big, 'a', 5000);
  big[5000] = '\0';
  snprintf(hdr, sizeof hdr, "X-Big: %s\r\n", big);
  fd = http_connect(s.port);
  assert_true(fd >= 0);
  send_req(fd, "GET", "/hello", hdr, NULL, 0);
  assert_refusal(fd, 431, body431);
  http_close(fd);

  /* Many small headers adding up to over 4 KB, sent in pieces. */
  fd = http_connect(s.port);
  assert_true(fd >= 0);
  http_sends(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n");
  for (int i = 0; i < 60; i++) {
    char line[128];
    snprintf(line, sizeof line, "X-H%02d: %080d\r\n", i, i);
    http_sends(fd, line);
  }
  http_sends(fd, "\r\n");
  assert_refusal(fd, 431, body431);
  http_close(fd);

  /* More than 100 headers, each small, total under 4 KB. */
  fd = http_connect(s.port);
  assert_true(fd >= 0);
  http_sends(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n");
  for (int i = 0; i < 110; i++) {
    char line[32];
    snprintf(line, sizeof line, "X-%d: 1\r\n", i);
    http_sends(fd, line);
  }
  http_sends(fd, "\r\n");
  assert_refusal(fd, 431, body431);
  http_close(fd);

  /* After a kept-alive request, the limit applies to the next one too. */
  fd = http_connect(s.port);
  assert_true(fd >= 0);
  send_req(fd, "GET", "/hello", NULL, NULL, 0);
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  http_free(&r);
  send_req(fd, "GET", "/hello", hdr, NULL, 0);
  assert_refusal(fd, 431, body431);
  http_close(fd);

  assert_still_serving(&s, worker);
  assert_int_equal(srv_stop(&s), 0);
}

static void uri_too_long_414(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_functions(&s);
  srv_start(&s, "--workers 1");
  pid_t worker = only_worker(&s);
  size_t n = 9000;
  char *path = malloc(n + 1);
  path[0] = '/';
  memset(path + 1, 'p', n - 1);
  path[n] = '\0';
  int fd = http_connect(s.port);
  assert_true(fd >= 0);
  send_req(fd, "GET", path, NULL, NULL, 0);
  assert_refusal(fd, 414, "{\"error\":\"request URI too long\"}");
  http_close(fd);
  /* A long query string counts as well. */
  memcpy(path, "/hello?q=", 9);
  fd = http_connect(s.port);
  assert_true(fd >= 0);
  send_req(fd, "GET", path, NULL, NULL, 0);
  assert_refusal(fd, 414, "{\"error\":\"request URI too long\"}");
  http_close(fd);
  /* 8000 bytes is still allowed. */
  path[8000] = '\0';
  fd = http_connect(s.port);
  assert_true(fd >= 0);
  send_req(fd, "GET", path, NULL, NULL, 0);
  http_resp_t r;
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  assert_string_equal(r.body, "hello");
  http_free(&r);
  http_close(fd);
  free(path);
  assert_still_serving(&s, worker);
  assert_int_equal(srv_stop(&s), 0);
}

static void body_too_large_413(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_functions(&s);
  srv_start(&s, "--workers 1 --max-body 1k");
  pid_t worker = only_worker(&s);
  static const char body413[] = "{\"error\":\"request body too large\"}";
  char data[4096];
  memset(data, 'b', sizeof data);
  http_resp_t r;

  /* Exactly the limit passes. */
  int fd = http_connect(s.port);
  assert_true(fd >= 0);
  send_req(fd, "POST", "/echo", NULL, data, 1024);
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  assert_int_equal(r.body_len, 1024);
  http_free(&r);

  /* One byte over, by Content-Length, on the same kept-alive connection. */
  send_req(fd, "POST", "/echo", NULL, data, 1025);
  assert_refusal(fd, 413, body413);
  http_close(fd);

  /* Far over, announced: refused without reading the body. */
  fd = http_connect(s.port);
  assert_true(fd >= 0);
  http_sends(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n");
  assert_refusal(fd, 413, body413);
  http_close(fd);

  /* Chunked, several chunks adding up to over 1 KB. */
  fd = http_connect(s.port);
  assert_true(fd >= 0);
  http_sends(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 3; i++) {
    http_sends(fd, "200\r\n"); /* 512 bytes */
    http_send(fd, data, 512);
    http_sends(fd, "\r\n");
  }
  http_sends(fd, "0\r\n\r\n");
  assert_refusal(fd, 413, body413);
  http_close(fd);

  /* Chunked, one chunk over. */
  fd = http_connect(s.port);
  assert_true(fd >= 0);
  http_sends(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n");
  http_send(fd, data, 2048);
  http_sends(fd, "\r\n0\r\n\r\n");
  assert_refusal(fd, 413, body413);
  http_close(fd);

  assert_still_serving(&s, worker);
  assert_int_equal(srv_stop(&s), 0);
}

/* A 400 answer: JSON {"error":"bad request..."} and the connection closed. */
static void assert_bad_request(int fd) {
  http_resp_t r;
  must_read(fd, &r, 0);
  expect_status(&r, 400);
  check_common(&r, 0);
  assert_header(&r, "content-type", "application/json");
  assert_header(&r, "connection", "close");
  if (strncmp(r.body, "{\"error\":\"bad request", 21) != 0 || r.body[r.body_len - 1] != '}' ||
      strchr(r.body, '\n'))
    fail_msg("400 body is not the JSON error: %s", r.body);
  http_free(&r);
  assert_int_equal(http_wait_closed(fd, 3000), 1);
}

static void malformed_requests_400(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_functions(&s);
  srv_start(&s, "--workers 1");
  pid_t worker = only_worker(&s);
  static const char *const bad[] = {
      "garbage\r\n\r\n",
      "\x01\x02\x03\xff\xfe binary junk\r\n\r\n",
      "GET /hello HTTP/1.1\r\nBad Header Line\r\n\r\n",
      "GET /hello HTTP/1.1\r\nHost: x\r\nNo-Colon\r\nX: y\r\n\r\n",
      "FROB /hello HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /hello HTTP/1.x\r\nHost: x\r\n\r\n", /* HTTP/9.9 is 505 now (test_sec_http.c) */
      "GET /hello HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
      "GET /hello HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
      "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int fd = http_connect(s.port);
    assert_true(fd >= 0);
    http_sends(fd, bad[i]);
    assert_bad_request(fd);
    http_close(fd);
  }
  /* Garbage after a good request on a kept-alive connection: the good one is answered first. */
  int fd = http_connect(s.port);
  assert_true(fd >= 0);
  http_sends(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\nthis is not http\r\n\r\n");
  http_resp_t r;
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  assert_string_equal(r.body, "hello");
  http_free(&r);
  assert_bad_request(fd);
  http_close(fd);
  assert_still_serving(&s, worker);
  assert_int_equal(srv_stop(&s), 0);
}

/* RFC 9112 section 5.1: whitespace between a field name and the colon MUST be
 * answered 400 (it is a request-smuggling vector when proxies disagree). */
static void whitespace_before_colon_400(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_functions(&s);
  srv_start(&s, "--workers 1");
  static const char *const bad[] = {
      "GET /hello HTTP/1.1\r\nHost : x\r\n\r\n",
      "GET /hello HTTP/1.1\r\nHost: x\r\nX-Thing  : y\r\n\r\n",
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int fd = http_connect(s.port);
    assert_true(fd >= 0);
    http_sends(fd, bad[i]);
    assert_bad_request(fd);
    http_close(fd);
  }
  assert_int_equal(srv_stop(&s), 0);
}

static void request_timeout_408_and_keepalive_timeout(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_functions(&s);
  srv_start(&s, "--workers 1 --request-timeout 0.5 --keepalive-timeout 0.5");
  pid_t worker = only_worker(&s);
  static const char body408[] = "{\"error\":\"request timeout: the request was not received in time\"}";

  /* Headers never finished. */
  int fd = http_connect(s.port);
  assert_true(fd >= 0);
  long long t0 = now_ms();
  http_sends(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n");
  assert_refusal(fd, 408, body408);
  long long took = now_ms() - t0;
  assert_true(took >= 400 && took < 2500);
  http_close(fd);

  /* Trickled slowly (a byte every 100 ms): the deadline is for the whole request. */
  fd = http_connect(s.port);
  assert_true(fd >= 0);
  t0 = now_ms();
  const char *slow = "GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: abcdefghijklmnopqrstuvwxyz\r\n\r\n";
  http_resp_t r;
  int got = -1;
  for (size_t i = 0; slow[i] && now_ms() - t0 < 3000; i++) {
    http_send(fd, slow + i, 1);
    if (http_read(fd, &r, 0, 100) == 0) {
      got = 0;
      break;
    }
  }
  if (got != 0) fail_msg("no answer to a trickled request within 3 s");
  expect_status(&r, 408);
  assert_string_equal(r.body, body408);
  assert_header(&r, "connection", "close");
  took = now_ms() - t0;
  assert_true(took >= 400 && took < 2500);
  http_free(&r);
  assert_int_equal(http_wait_closed(fd, 3000), 1);
  http_close(fd);

  /* Body never finished. */
  fd = http_connect(s.port);
  assert_true(fd >= 0);
  http_sends(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part of it");
  assert_refusal(fd, 408, body408);
  http_close(fd);

  /* Idle keep-alive: open while used, closed ~0.5 s after the last answer. */
  fd = http_connect(s.port);
  assert_true(fd >= 0);
  for (int i = 0; i < 3; i++) {
    sleep_ms(250); /* each pause is under the idle timeout */
    send_req(fd, "GET", "/hello", NULL, NULL, 0);
    must_read(fd, &r, 0);
    expect_status(&r, 200);
    assert_null(http_header(&r, "connection"));
    http_free(&r);
  }
  t0 = now_ms();
  assert_int_equal(http_wait_closed(fd, 3000), 1);
  took = now_ms() - t0;
  assert_true(took >= 350 && took < 2500);
  http_close(fd);

  /* A connection that never sends anything is closed too. */
  fd = http_connect(s.port);
  assert_true(fd >= 0);
  assert_int_equal(http_wait_closed(fd, 3000), 1);
  http_close(fd);

  assert_still_serving(&s, worker);
  assert_int_equal(srv_stop(&s), 0);
}

static void max_connections_503(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_functions(&s);
  srv_start(&s, "--workers 1 --max-connections 2");
  pid_t worker = only_worker(&s);
  http_resp_t r;
  /* Let the server see the end of srv_start's probe connection first. */
  http_get(s.port, "/hello", &r);
  http_free(&r);
  sleep_ms(200);
  int a = http_connect(s.port), b = http_connect(s.port);
  assert_true(a >= 0 && b >= 0);
  /* Both are accepted and served (and stay open: keep-alive). */
  send_req(a, "GET", "/hello", NULL, NULL, 0);
  must_read(a, &r, 0);
  expect_status(&r, 200);
  http_free(&r);
  send_req(b, "GET", "/hello", NULL, NULL, 0);
  must_read(b, &r, 0);
  expect_status(&r, 200);
  http_free(&r);

  /* The third simultaneous connection: 503, then closed. */
  int c = http_connect(s.port);
  assert_true(c >= 0);
  send_req(c, "GET", "/hello", NULL, NULL, 0);
  must_read(c, &r, 0);
  expect_status(&r, 503);
  check_common(&r, 0);
  assert_header(&r, "content-type", "application/json");
  assert_header(&r, "connection", "close");
  char want[200];
  snprintf(want, sizeof want, "{\"error\":\"server busy: too many connections\",\"requestId\":\"%s\"}",
           http_header(&r, "x-request-id"));
  assert_string_equal(r.body, want);
  http_free(&r);
  assert_int_equal(http_wait_closed(c, 3000), 1);
  http_close(c);

  /* The first two still work. */
  send_req(a, "GET", "/who", NULL, NULL, 0);
  must_read(a, &r, 0);
  expect_status(&r, 200);
  assert_string_equal(r.body, "GET /who ");
  http_free(&r);

  /* Closing one makes room (the server sees the close shortly). */
  http_close(a);
  int ok = 0, refused = 0;
  long long deadline = now_ms() + 3000;
  for (int tries = 0; tries < 30 && !ok && now_ms() < deadline; tries++) {
    sleep_ms(50);
    if (http_request(s.port, "GET", "/hello", NULL, NULL, 0, &r) == 0) {
      ok = r.status == 200 && strcmp(r.body, "hello") == 0;
      if (!ok) {
        expect_status(&r, 503);
        refused++;
      }
      http_free(&r);
    }
  }
  assert_true(ok);
  assert_int_equal(srv_log_count(&s, "\"level\":\"warn\"", "connection limit (2 per worker) reached", NULL),
                   1 + refused);
  http_close(b);
  sleep_ms(100);
  assert_still_serving(&s, worker);
  assert_int_equal(srv_stop(&s), 0);
}

/* All the bad input of the cases above against one worker, back to back,
 * then ordinary requests: no crash, no stall, same worker. */
static void bad_input_does_not_break_the_worker(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_functions(&s);
  srv_start(&s, "--workers 1 --max-header 4k --max-body 1k --request-timeout 0.5");
  pid_t worker = only_worker(&s);
  char big[6000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  int fds[6];
  /* Several bad connections open at once, in different states. */
  fds[0] = http_connect(s.port);
  http_sends(fds[0], "GET /hello HTTP/1.1\r\nX-Big: ");
  http_sends(fds[0], big);
  fds[1] = http_connect(s.port);
  http_sends(fds[1], "POST /echo HTTP/1.1\r\nContent-Length: 99999\r\n\r\n");
  fds[2] = http_connect(s.port);
  http_sends(fds[2], "\r\n\r\n\r\nnonsense \x7f\r\n\r\n");
  fds[3] = http_connect(s.port);
  http_sends(fds[3], "GET /hello HTTP/1.1\r\nHost: x\r\n"); /* never finished */
  fds[4] = http_connect(s.port);
  http_sends(fds[4], "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n");
  fds[5] = http_connect(s.port);
  http_sends(fds[5], "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"); /* a good one in between */
  for (int i = 0; i < 6; i++) assert_true(fds[i] >= 0);
  http_resp_t r;
  /* fds[4]'s chunk size has 19 significant hex digits: the framing check
   * refuses it at the 16th, before the body limit could apply (it has a
   * Host, so the chunk size is what is judged). */
  int want[6] = {431, 413, 400, 408, 400, 200};
  for (int i = 0; i < 6; i++) {
    must_read(fds[i], &r, 0);
    expect_status(&r, want[i]);
    if (i == 4 && !strstr(r.body, "chunk size too large")) fail_msg("the chunk size overflow answered: %s", r.body);
    http_free(&r);
  }
  for (int i = 0; i < 5; i++) assert_int_equal(http_wait_closed(fds[i], 3000), 1);
  for (int i = 0; i < 6; i++) http_close(fds[i]);
  /* Abrupt closes mid-request and mid-body. */
  for (int i = 0; i < 5; i++) {
    int fd = http_connect(s.port);
    assert_true(fd >= 0);
    http_sends(fd, i % 2 ? "POST /echo HTTP/1.1\r\nContent-Length: 500\r\n\r\nabc" : "GET /hel");
    http_close(fd);
  }
  for (int i = 0; i < 10; i++) assert_still_serving(&s, worker);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- the headers of every response ------------------------------------------------------------- */

#define NIDS 60

static void every_response_has_standard_headers_and_unique_ids(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_functions(&s);
  srv_start(&s, "--workers 2");
  static char ids[NIDS][40];
  static int is_fn[NIDS];
  int n = 0;
  http_resp_t r;
  /* 20 on one kept-alive connection, mixing function and platform answers. */
  int fd = http_connect(s.port);
  assert_true(fd >= 0);
  for (int i = 0; i < 20; i++) {
    const char *path = i % 4 == 3 ? "/nope" : i % 4 == 2 ? "/_/health" : "/hello";
    send_req(fd, i % 5 == 4 ? "HEAD" : "GET", path, NULL, NULL, 0);
    must_read(fd, &r, i % 5 == 4);
    check_common(&r, i % 5 == 4);
    expect_status(&r, path[1] == 'n' ? 404 : 200);
    copy_id(ids[n], sizeof ids[n], &r);
    is_fn[n++] = path[1] == 'h';
    http_free(&r);
  }
  http_close(fd);
  /* 40 on new connections (spread over both workers). */
  for (int i = 0; i < 40; i++) {
    int k = i % 4;
    if (k == 0) assert_int_equal(http_request(s.port, "GET", "/hello", NULL, NULL, 0, &r), 0);
    else if (k == 1) assert_int_equal(http_request(s.port, "POST", "/echo", "Content-Type: a/b\r\n", "x", 1, &r), 0);
    else if (k == 2) assert_int_equal(http_request(s.port, "OPTIONS", "/only", NULL, NULL, 0, &r), 0);
    else assert_int_equal(http_request(s.port, "DELETE", "/only", NULL, NULL, 0, &r), 0);
    check_common(&r, 0);
    expect_status(&r, k == 2 ? 204 : k == 3 ? 405 : 200);
    copy_id(ids[n], sizeof ids[n], &r);
    is_fn[n++] = k < 2;
    http_free(&r);
  }
  assert_int_equal(n, NIDS);
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++)
      if (strcmp(ids[i], ids[j]) == 0) fail_msg("request id %s given twice (requests %d and %d)", ids[i], i, j);
  /* Function requests are reported in the log under the same id, once. */
  for (int i = 0; i < n; i++) {
    char needle[80];
    snprintf(needle, sizeof needle, "\"requestId\":\"%.40s\"", ids[i]);
    if (is_fn[i]) {
      assert_int_equal(srv_log_wait(&s, 1, 3000, "\"msg\":\"report\"", needle, NULL), 1);
    } else {
      assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", needle, NULL), 0);
    }
  }
  assert_int_equal(srv_stop(&s), 0);
}

static void server_timing_init_only_when_cold(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_functions(&s);
  srv_start(&s, "--workers 1");
  int fd = http_connect(s.port);
  assert_true(fd >= 0);
  http_resp_t r;
  char first_id[40];
  for (int i = 0; i < 4; i++) {
    send_req(fd, "GET", "/hello", NULL, NULL, 0);
    must_read(fd, &r, 0);
    expect_status(&r, 200);
    const char *st = http_header(&r, "server-timing");
    assert_non_null(st);
    double init = -1, fn = -1;
    char tail = 0;
    if (i == 0) {
      /* cold: init;dur=X, fn;dur=Y */
      if (sscanf(st, "init;dur=%lf, fn;dur=%lf%c", &init, &fn, &tail) != 2) fail_msg("cold Server-Timing: %s", st);
      assert_true(init >= 0 && fn >= 0);
      copy_id(first_id, sizeof first_id, &r);
    } else {
      if (strstr(st, "init")) fail_msg("warm request %d has init in Server-Timing: %s", i, st);
      if (sscanf(st, "fn;dur=%lf%c", &fn, &tail) != 1) fail_msg("warm Server-Timing: %s", st);
      assert_true(fn >= 0);
    }
    http_free(&r);
  }
  /* Another function's first request is cold as well; platform answers have no timing. */
  send_req(fd, "GET", "/who", NULL, NULL, 0);
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  assert_true(strncmp(http_header(&r, "server-timing"), "init;dur=", 9) == 0);
  http_free(&r);
  send_req(fd, "GET", "/nope", NULL, NULL, 0);
  must_read(fd, &r, 0);
  expect_status(&r, 404);
  assert_null(http_header(&r, "server-timing"));
  http_free(&r);
  http_close(fd);
  char needle[80];
  snprintf(needle, sizeof needle, "\"requestId\":\"%s\"", first_id);
  assert_int_equal(srv_log_wait(&s, 1, 3000, "\"msg\":\"report\"", needle, "\"start\":\"cold\"", NULL), 1);
  assert_int_equal(srv_log_wait(&s, 3, 3000, "\"msg\":\"report\"", "\"function\":\"hello\"", "\"start\":\"warm\"", NULL),
                   3);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- routing answers --------------------------------------------------------------------------- */

static void not_found_method_not_allowed_options(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_functions(&s);
  srv_start(&s, "--workers 1");
  http_resp_t r;
  const char *unknown[] = {"/nope", "/hello/extra/deep", "/only/x", "/ONLY", "/"};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    assert_int_equal(http_request(s.port, "GET", unknown[i], NULL, NULL, 0, &r), 0);
    expect_status(&r, 404);
    check_common(&r, 0);
    assert_header(&r, "content-type", "application/json");
    assert_string_equal(r.body, "{\"error\":\"not found\"}");
    http_free(&r);
  }
  /* GET and HEAD are routed. */
  assert_int_equal(http_request(s.port, "GET", "/only", NULL, NULL, 0, &r), 0);
  expect_status(&r, 200);
  assert_string_equal(r.body, "only");
  http_free(&r);
  assert_int_equal(http_request(s.port, "HEAD", "/only", NULL, NULL, 0, &r), 0);
  expect_status(&r, 200);
  assert_header(&r, "content-length", "4");
  assert_int_equal(r.body_len, 0);
  http_free(&r);
  const char *wrong[] = {"POST", "PUT", "DELETE", "PATCH"};
  for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
    assert_int_equal(http_request(s.port, wrong[i], "/only", NULL, i % 2 ? "x" : NULL, 1, &r), 0);
    expect_status(&r, 405);
    check_common(&r, 0);
    assert_header(&r, "allow", "GET, HEAD");
    assert_header(&r, "content-type", "application/json");
    assert_string_equal(r.body, "{\"error\":\"method not allowed\"}");
    http_free(&r);
  }
  assert_int_equal(http_request(s.port, "OPTIONS", "/only", NULL, NULL, 0, &r), 0);
  expect_status(&r, 204);
  check_common(&r, 0);
  assert_header(&r, "allow", "GET, HEAD");
  assert_int_equal(r.body_len, 0);
  http_free(&r);
  /* 405 and 204 keep the connection usable. */
  int fd = http_connect(s.port);
  assert_true(fd >= 0);
  send_req(fd, "POST", "/only", NULL, "abc", 3);
  must_read(fd, &r, 0);
  expect_status(&r, 405);
  http_free(&r);
  send_req(fd, "OPTIONS", "/only", NULL, NULL, 0);
  must_read(fd, &r, 0);
  expect_status(&r, 204);
  http_free(&r);
  send_req(fd, "GET", "/only", NULL, NULL, 0);
  must_read(fd, &r, 0);
  expect_status(&r, 200);
  assert_string_equal(r.body, "only");
  http_free(&r);
  http_close(fd);
  /* A function without routes answers any method. */
  assert_int_equal(http_request(s.port, "DELETE", "/who", NULL, NULL, 0, &r), 0);
  expect_status(&r, 200);
  assert_string_equal(r.body, "DELETE /who ");
  http_free(&r);
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(keepalive_many_requests_one_connection),
      cmocka_unit_test(pipelined_requests_answered_in_order),
      cmocka_unit_test(content_length_and_chunked_bodies),
      cmocka_unit_test(head_has_length_but_no_body),
      cmocka_unit_test(http10_and_connection_close),
      cmocka_unit_test(expect_100_continue),
      cmocka_unit_test(header_block_too_large_431),
      cmocka_unit_test(uri_too_long_414),
      cmocka_unit_test(body_too_large_413),
      cmocka_unit_test(malformed_requests_400),
      cmocka_unit_test(whitespace_before_colon_400),
      cmocka_unit_test(request_timeout_408_and_keepalive_timeout),
      cmocka_unit_test(max_connections_503),
      cmocka_unit_test(bad_input_does_not_break_the_worker),
      cmocka_unit_test(every_response_has_standard_headers_and_unique_ids),
      cmocka_unit_test(server_timing_init_only_when_cold),
      cmocka_unit_test(not_found_method_not_allowed_options),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
