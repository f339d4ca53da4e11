/* test_storage_api.c - /_/storage (lua/storage_api.lua) and crescent.storage beyond the basics of
 * test_stdlib.c: objects larger than --max-response are served (what PUT accepts, GET returns),
 * byte ranges (206, 416, what is ignored, HEAD, If-Range, only the range read from Redis),
 * conditional puts (If-Match, If-None-Match: 412, atomic) and the same options in Lua.
 * On the managed Redis (--redis auto), read back with redis-cli on <root>/.crescent/redis.sock. */
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

/* Redis' total_net_output_bytes: what it has sent to all its clients so far. */
static long long redis_out_bytes(const char *sock) {
  char *out = redis_cli_sock(sock, "INFO", "stats", NULL);
  const char *p = strstr(out, "total_net_output_bytes:");
  if (!p) fail_msg("INFO stats without total_net_output_bytes:\n%s", out);
  long long n = atoll(p + strlen("total_net_output_bytes:"));
  free(out);
  return n;
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

static char *pattern(size_t n) {
  char *b = malloc(n + 1);
  for (size_t i = 0; i < n; i++) b[i] = (char)('a' + i % 26);
  b[n] = '\0';
  return b;
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
  /* Its last bytes, as a range. */
  req(s.port, "GET", "/_/storage/media/big.bin", "Range: bytes=9999990-\r\n", NULL, 0, &r);
  assert_int_equal(r.status, 206);
  expect_header(&r, "content-range", "bytes 9999990-9999999/10000000");
  assert_int_equal(r.body_len, 10);
  assert_true(memcmp(r.body, big + 9999990, 10) == 0);
  http_free(&r);
  free(big);

  srv_expect_errors(&s, 1);
  req(s.port, "GET", "/huge", NULL, NULL, 0, &r);
  assert_int_equal(r.status, 500);
  http_free(&r);
  assert_int_equal(srv_log_wait(&s, 1, 5000, "over the limit of 6291456 bytes", NULL), 1);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- ranges ---------------------------------------------------------------------------------------- */

typedef struct {
  const char *range; /* the Range header's value */
  int status;
  const char *content_range; /* NULL: none */
  long first, len;           /* the body: bytes first.. of the object (len -1: an error body) */
} range_case_t;

static void ranges(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_start(&s, "--workers 1");
  char sock[400], etag[128], hdr[512];
  srv_redis_sock(&s, sock, sizeof sock);
  char *obj = pattern(1000);
  http_resp_t r;
  req(s.port, "PUT", "/_/storage/r/obj.txt", "Content-Type: text/plain\r\nX-Meta-Owner: ana\r\n", obj, 1000, &r);
  assert_int_equal(r.status, 200);
  snprintf(etag, sizeof etag, "%s", http_header(&r, "etag"));
  http_free(&r);

  static const range_case_t cases[] = {
      {"bytes=0-99", 206, "bytes 0-99/1000", 0, 100},
      {"bytes=10-10", 206, "bytes 10-10/1000", 10, 1},
      {"bytes=990-", 206, "bytes 990-999/1000", 990, 10},
      {"bytes=-10", 206, "bytes 990-999/1000", 990, 10},
      {"bytes=-2000", 206, "bytes 0-999/1000", 0, 1000},
      {"bytes=500-5000", 206, "bytes 500-999/1000", 500, 500},
      {"BYTES = 1-2", 206, "bytes 1-2/1000", 1, 2},
      {"bytes=999-999", 206, "bytes 999-999/1000", 999, 1},
      /* Unsatisfiable: no byte of the object is in the range. */
      {"bytes=1000-", 416, "bytes */1000", 0, -1},
      {"bytes=1000-2000", 416, "bytes */1000", 0, -1},
      {"bytes=-0", 416, "bytes */1000", 0, -1},
      /* Ignored: the whole object. */
      {"bytes=5-3", 200, NULL, 0, 1000},
      {"bytes=0-1,5-6", 200, NULL, 0, 1000},
      {"items=0-1", 200, NULL, 0, 1000},
      {"bytes=", 200, NULL, 0, 1000},
      {"bytes=-", 200, NULL, 0, 1000},
      {"bytes=a-b", 200, NULL, 0, 1000},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const range_case_t *c = &cases[i];
    snprintf(hdr, sizeof hdr, "Range: %s\r\n", c->range);
    req(s.port, "GET", "/_/storage/r/obj.txt", hdr, NULL, 0, &r);
    if (r.status != c->status) fail_msg("Range: %s: got %d, want %d: %s", c->range, r.status, c->status, r.body);
    const char *cr = http_header(&r, "content-range");
    if (c->content_range) expect_header(&r, "content-range", c->content_range);
    else if (cr) fail_msg("Range: %s: a Content-Range on a %d: %s", c->range, r.status, cr);
    expect_header(&r, "accept-ranges", "bytes");
    if (c->len >= 0) {
      if (r.body_len != (size_t)c->len || memcmp(r.body, obj + c->first, (size_t)c->len) != 0)
        fail_msg("Range: %s: the body is not bytes %ld+%ld: %zu bytes", c->range, c->first, c->len, r.body_len);
      expect_header(&r, "etag", etag);
      expect_header(&r, "content-type", "text/plain");
      expect_header(&r, "x-meta-owner", "ana");
    } else {
      assert_string_equal(r.body, "{\"error\":\"range not satisfiable\"}");
    }
    http_free(&r);

    /* HEAD answers what GET does, without the body. */
    head(s.port, "/_/storage/r/obj.txt", hdr, &r);
    if (r.status != c->status) fail_msg("HEAD, Range: %s: got %d, want %d", c->range, r.status, c->status);
    if (c->content_range) expect_header(&r, "content-range", c->content_range);
    if (c->len >= 0) {
      char len[32];
      snprintf(len, sizeof len, "%ld", c->len);
      expect_header(&r, "content-length", len);
    }
    http_free(&r);
  }

  /* If-Range: the range when it names this object, the whole object otherwise. */
  snprintf(hdr, sizeof hdr, "Range: bytes=0-4\r\nIf-Range: %s\r\n", etag);
  req(s.port, "GET", "/_/storage/r/obj.txt", hdr, NULL, 0, &r);
  assert_int_equal(r.status, 206);
  assert_string_equal(r.body, "abcde");
  http_free(&r);
  req(s.port, "GET", "/_/storage/r/obj.txt", "Range: bytes=0-4\r\nIf-Range: \"other\"\r\n", NULL, 0, &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, 1000);
  http_free(&r);
  head(s.port, "/_/storage/r/obj.txt", "Range: bytes=0-4\r\nIf-Range: \"other\"\r\n", &r);
  assert_int_equal(r.status, 200);
  expect_header(&r, "content-length", "1000");
  http_free(&r);
  snprintf(hdr, sizeof hdr, "Range: bytes=0-4\r\nIf-Range: W/%s\r\n", etag); /* weak: never for ranges */
  req(s.port, "GET", "/_/storage/r/obj.txt", hdr, NULL, 0, &r);
  assert_int_equal(r.status, 200);
  http_free(&r);
  req(s.port, "GET", "/_/storage/r/obj.txt", NULL, NULL, 0, &r);
  char lm[128];
  snprintf(lm, sizeof lm, "%s", http_header(&r, "last-modified"));
  http_free(&r);
  snprintf(hdr, sizeof hdr, "Range: bytes=0-4\r\nIf-Range: %s\r\n", lm);
  req(s.port, "GET", "/_/storage/r/obj.txt", hdr, NULL, 0, &r);
  assert_int_equal(r.status, 206);
  http_free(&r);

  /* If-None-Match that matches comes first: 304, also with a Range. */
  snprintf(hdr, sizeof hdr, "Range: bytes=0-4\r\nIf-None-Match: \"x\", W/%s\r\n", etag);
  req(s.port, "GET", "/_/storage/r/obj.txt", hdr, NULL, 0, &r);
  assert_int_equal(r.status, 304);
  http_free(&r);
  req(s.port, "GET", "/_/storage/r/obj.txt", "If-None-Match: *\r\n", NULL, 0, &r);
  assert_int_equal(r.status, 304);
  http_free(&r);

  /* A missing object: 404, range or not. */
  req(s.port, "GET", "/_/storage/r/nope", "Range: bytes=0-1\r\n", NULL, 0, &r);
  assert_int_equal(r.status, 404);
  http_free(&r);

  /* An empty object: no byte range is satisfiable, a suffix is all of it. */
  req(s.port, "PUT", "/_/storage/r/empty", NULL, "", 0, &r);
  assert_int_equal(r.status, 200);
  http_free(&r);
  req(s.port, "GET", "/_/storage/r/empty", "Range: bytes=0-\r\n", NULL, 0, &r);
  assert_int_equal(r.status, 416);
  expect_header(&r, "content-range", "bytes */0");
  http_free(&r);
  req(s.port, "GET", "/_/storage/r/empty", "Range: bytes=-5\r\n", NULL, 0, &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, 0);
  http_free(&r);

  /* Only the range's bytes come from Redis. */
  size_t big_len = 2u * 1024 * 1024;
  char *big = pattern(big_len);
  req(s.port, "PUT", "/_/storage/r/big", NULL, big, big_len, &r);
  assert_int_equal(r.status, 200);
  http_free(&r);
  long long b0 = redis_out_bytes(sock);
  req(s.port, "GET", "/_/storage/r/big", "Range: bytes=1048576-1049599\r\n", NULL, 0, &r);
  assert_int_equal(r.status, 206);
  assert_int_equal(r.body_len, 1024);
  assert_true(memcmp(r.body, big + 1048576, 1024) == 0);
  http_free(&r);
  long long b1 = redis_out_bytes(sock);
  if (b1 - b0 > 64 * 1024) fail_msg("a 1 KB range read %lld bytes from Redis", b1 - b0);
  req(s.port, "GET", "/_/storage/r/big", NULL, NULL, 0, &r);
  assert_int_equal(r.body_len, big_len);
  http_free(&r);
  long long b2 = redis_out_bytes(sock);
  if (b2 - b1 < (long long)big_len) fail_msg("a whole GET read only %lld bytes from Redis", b2 - b1);
  free(big);
  free(obj);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- conditional puts ------------------------------------------------------------------------------ */

static int xlen(const char *sock, const char *stream) {
  char *out = redis_cli_sock(sock, "XLEN", stream, NULL);
  int n = atoi(out);
  free(out);
  return n;
}

static void put_expect(int port, const char *path, const char *headers, const char *body, int status,
                       char *etag_out) {
  http_resp_t r;
  req(port, "PUT", path, headers, body, strlen(body), &r);
  if (r.status != status)
    fail_msg("PUT %s with %s: got %d, want %d: %s", path, headers ? headers : "-", r.status, status, r.body);
  if (status == 412) assert_string_equal(r.body, "{\"error\":\"precondition failed\"}");
  if (etag_out) snprintf(etag_out, 128, "%s", http_header(&r, "etag"));
  http_free(&r);
}

static void get_expect(int port, const char *path, const char *want) {
  http_resp_t r;
  req(port, "GET", path, NULL, NULL, 0, &r);
  if (r.status != 200 || strcmp(r.body, want) != 0) fail_msg("GET %s: %d %s, want %s", path, r.status, r.body, want);
  http_free(&r);
}

static void conditional_puts(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_start(&s, "--workers 2");
  char sock[400], e1[128], e2[128], hdr[512];
  srv_redis_sock(&s, sock, sizeof sock);
  const char *p = "/_/storage/c/doc";

  /* If-None-Match: * creates only. */
  put_expect(s.port, p, "If-None-Match: *\r\n", "one", 200, e1);
  put_expect(s.port, p, "If-None-Match: *\r\n", "two", 412, NULL);
  get_expect(s.port, p, "one");
  /* If-Match: its etag replaces; an old one, another one or a weak one does not. */
  snprintf(hdr, sizeof hdr, "If-Match: %s\r\n", e1);
  put_expect(s.port, p, hdr, "two", 200, e2);
  get_expect(s.port, p, "two");
  put_expect(s.port, p, hdr, "three", 412, NULL); /* e1 is not current any more */
  snprintf(hdr, sizeof hdr, "If-Match: W/%s\r\n", e2);
  put_expect(s.port, p, hdr, "three", 412, NULL);
  snprintf(hdr, sizeof hdr, "If-Match: \"nope\", %s\r\n", e2); /* a list: any of them */
  put_expect(s.port, p, hdr, "three", 200, NULL);
  get_expect(s.port, p, "three");
  put_expect(s.port, p, "If-Match: *\r\n", "four", 200, NULL);
  /* If-None-Match with etags: refused when one is current (weakly compared). */
  put_expect(s.port, p, NULL, "five", 200, e1);
  snprintf(hdr, sizeof hdr, "If-None-Match: W/%s\r\n", e1);
  put_expect(s.port, p, hdr, "six", 412, NULL);
  put_expect(s.port, p, "If-None-Match: \"nope\"\r\n", "six", 200, NULL);
  get_expect(s.port, p, "six");
  /* A missing object matches no If-Match, not even *. */
  snprintf(hdr, sizeof hdr, "If-Match: %s\r\n", e1);
  put_expect(s.port, "/_/storage/c/absent", hdr, "x", 412, NULL);
  put_expect(s.port, "/_/storage/c/absent", "If-Match: *\r\n", "x", 412, NULL);
  http_resp_t r;
  req(s.port, "GET", "/_/storage/c/absent", NULL, NULL, 0, &r);
  assert_int_equal(r.status, 404);
  http_free(&r);
  /* Malformed conditions are 400s, and write nothing. */
  const char *bad[] = {"If-Match: nope\r\n", "If-Match: \"a\" \"b\"\r\n", "If-None-Match: *, \"a\"\r\n",
                       "If-Match:\r\n", "If-None-Match: X/\"a\"\r\n"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) put_expect(s.port, p, bad[i], "seven", 400, NULL);
  get_expect(s.port, p, "six");
  /* Refused puts left no event: one per stored put (one, two, three, four, five, six). */
  assert_int_equal(xlen(sock, "cr:{st:c}:events"), 6);

  /* Atomic: two creates of the same key at once, on two workers: exactly one wins. */
  for (int k = 0; k < 20; k++) {
    int fds[2];
    char path[64];
    snprintf(path, sizeof path, "/_/storage/race/k%d", k);
    for (int i = 0; i < 2; i++) {
      fds[i] = http_connect(s.port);
      assert_true(fds[i] >= 0);
    }
    for (int i = 0; i < 2; i++) {
      snprintf(hdr, sizeof hdr, "PUT %s HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\nContent-Length: 1\r\n\r\n%c", path,
               'A' + i);
      http_sends(fds[i], hdr);
    }
    int won = -1, lost = 0;
    for (int i = 0; i < 2; i++) {
      if (http_read(fds[i], &r, 0, 10000) != 0) fail_msg("race %d: no response", k);
      if (r.status == 200) won = won < 0 ? i : 99;
      else if (r.status == 412) lost++;
      else fail_msg("race %d: %d %s", k, r.status, r.body);
      http_free(&r);
      http_close(fds[i]);
    }
    if (won < 0 || won == 99 || lost != 1) fail_msg("race %d: %s won", k, won == 99 ? "both" : "none");
    get_expect(s.port, path, won == 0 ? "A" : "B");
  }
  assert_int_equal(xlen(sock, "cr:{st:race}:events"), 20);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- the same in Lua ------------------------------------------------------------------------------- */

static const char lua_fn[] =
    "local storage = require 'crescent.storage'\n"
    "local out = {}\n"
    "local function add(...)\n"
    "  local t = table.pack and table.pack(...) or { n = select('#', ...), ... }\n"
    "  local parts = {}\n"
    "  for i = 1, t.n do parts[i] = tostring(t[i]) end\n"
    "  out[#out + 1] = table.concat(parts, ' ')\n"
    "end\n"
    "local function try(f, ...) local ok, e = pcall(f, ...) add(ok, (tostring(e):gsub('^[^:]*:%d+: ', ''))) end\n"
    "return function()\n"
    "  out = {}\n"
    "  local i1 = storage.put('l', 'k', '0123456789', { ifNoneMatch = '*' })\n"
    "  add('create', i1 and i1.size)\n"
    "  add('create again', storage.put('l', 'k', 'x', { ifNoneMatch = '*' }))\n"
    "  add('if-match old list', storage.put('l', 'k', 'x', { ifMatch = { '\"a\"', '\"b\"' } }))\n"
    "  local i2 = storage.put('l', 'k', 'abcdefghij', { ifMatch = i1.etag })\n"
    "  add('if-match', i2 and i2.size)\n"
    "  add('if-none-match etag', storage.put('l', 'k', 'x', { ifNoneMatch = { '\"a\"', i2.etag } }))\n"
    "  add('absent if-match *', storage.put('l', 'none', 'x', { ifMatch = '*' }))\n"
    "  local d, info = storage.get('l', 'k', { offset = 2, length = 3 })\n"
    "  add('part', d, info.offset, info.size, info.etag == i2.etag)\n"
    "  d, info = storage.get('l', 'k', { offset = -4 })\n"
    "  add('suffix', d, info.offset, info.size)\n"
    "  d, info = storage.get('l', 'k', { offset = -40 })\n"
    "  add('long suffix', d, info.offset)\n"
    "  d, info = storage.get('l', 'k', { offset = 8, length = 100 })\n"
    "  add('clamped', d, info.offset)\n"
    "  d, info = storage.get('l', 'k', { offset = 10 })\n"
    "  add('past the end', '[' .. d .. ']', info.offset, info.size)\n"
    "  d, info = storage.get('l', 'k', { length = 0 })\n"
    "  add('nothing', '[' .. d .. ']', info.offset)\n"
    "  add('absent part', storage.get('l', 'none', { offset = 1 }))\n"
    "  try(storage.get, 'l', 'k', { offset = 1.5 })\n"
    "  try(storage.get, 'l', 'k', { length = -1 })\n"
    "  try(storage.put, 'l', 'k', 'x', { ifMatch = 5 })\n"
    "  try(storage.put, 'l', 'k', 'x', { ifNoneMatch = {} })\n"
    "  try(storage.put, 'l', 'k', 'x', { ifMatch = { '\"a\"', 'b\\nc' } })\n"
    "  return table.concat(out, '\\n')\n"
    "end\n";

static void lua_options(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "st.lua", lua_fn);
  srv_start(&s, "--workers 1");
  http_resp_t r;
  req(s.port, "GET", "/st", NULL, NULL, 0, &r);
  assert_int_equal(r.status, 200);
  const char *cond = "ifMatch must be \"*\", an etag or a list of etags (strings of 1 to 256 bytes without control characters)";
  char want[2048];
  snprintf(want, sizeof want,
           "create 10\n"
           "create again nil precondition failed\n"
           "if-match old list nil precondition failed\n"
           "if-match 10\n"
           "if-none-match etag nil precondition failed\n"
           "absent if-match * nil precondition failed\n"
           "part cde 2 10 true\n"
           "suffix ghij 6 10\n"
           "long suffix abcdefghij 0\n"
           "clamped ij 8\n"
           "past the end [] 10 10\n"
           "nothing [] 0\n"
           "absent part nil\n"
           "false bad argument #3 to 'storage.get' (offset must be an integer (negative: from the end))\n"
           "false bad argument #3 to 'storage.get' (length must be a whole number of bytes)\n"
           "false bad argument #4 to 'storage.put' (%s)\n"
           "false bad argument #4 to 'storage.put' (ifNoneMatch must list 1 to 64 etags)\n"
           "false bad argument #4 to 'storage.put' (%s)",
           cond, cond);
  assert_string_equal(r.body, want);
  http_free(&r);
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(objects_over_max_response),
      cmocka_unit_test(ranges),
      cmocka_unit_test(conditional_puts),
      cmocka_unit_test(lua_options),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
