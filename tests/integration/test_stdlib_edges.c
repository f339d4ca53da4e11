/* test_stdlib_edges.c - the edges of the stdlib's list APIs and of the shipped examples:
 *   - a list page that ends the list carries no cursor (kv.list, storage.list and
 *     GET /_/storage/{bucket}), also when the keys after it have expired;
 *   - functions/echo.lua decodes a JSON body whatever the parameters of its media type.
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
  if (http_request_ka(port, method, path, headers, body, body_len, r, 15000) != 0)
    fail_msg("%s %s: no response", method, path);
}

/* GET that must answer 200 with exactly want. */
static void expect_200(int port, const char *path, const char *want) {
  http_resp_t r;
  req(port, "GET", path, NULL, NULL, 0, &r);
  if (r.status != 200 || strcmp(r.body, want) != 0)
    fail_msg("GET %s: got %d:\n%s\nwant 200:\n%s", path, r.status, r.body, want);
  http_free(&r);
}

/* --- cursors ------------------------------------------------------------------------------------ */

/* Pages as "key,key|cursor" lines, walked until a page has no cursor (at most 6 pages). */
static const char pages_fn[] =
    "local kv = require 'crescent.kv'\n"
    "local storage = require 'crescent.storage'\n"
    "local function walk(list, limit)\n"
    "  local out, cursor = {}, nil\n"
    "  for _ = 1, 6 do\n"
    "    local page = assert(list(limit, cursor))\n"
    "    local keys = {}\n"
    "    for i, it in ipairs(page.items) do keys[i] = it.key end\n"
    "    out[#out + 1] = table.concat(keys, ',') .. '|' .. tostring(page.cursor)\n"
    "    cursor = page.cursor\n"
    "    if not cursor then break end\n"
    "  end\n"
    "  return table.concat(out, ' ')\n"
    "end\n"
    "return function(event)\n"
    "  local ns, q = kv.namespace(event.params.ns), event.query\n"
    "  if q.put then\n"
    "    for k in q.put:gmatch('[^,]+') do\n"
    "      assert(ns.put(k, 'v', { ttl = q.ttl and tonumber(q.ttl) or nil }))\n"
    "      assert(storage.put(event.params.ns, k, 'v'))\n"
    "    end\n"
    "    return 'put'\n"
    "  end\n"
    "  local limit = tonumber(q.limit)\n"
    "  return 'kv ' .. walk(function(l, c) return ns.list('', { limit = l, cursor = c }) end, limit) ..\n"
    "    '\\nstorage ' .. walk(function(l, c) return storage.list(event.params.ns, { limit = l, cursor = c }) end, limit)\n"
    "end\n";

static void list_cursors(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "pages/[ns].lua", pages_fn);
  srv_start(&s, "--workers 1");

  /* One item, limit 1: the page ends the list (the defect: a cursor to an empty page). */
  expect_200(s.port, "/pages/one?put=a", "put");
  expect_200(s.port, "/pages/one?limit=1", "kv a|nil\nstorage a|nil");
  expect_200(s.port, "/pages/one?limit=2", "kv a|nil\nstorage a|nil");
  /* Empty: one empty page, no cursor. */
  expect_200(s.port, "/pages/none?limit=1", "kv |nil\nstorage |nil");
  /* Pages that fill exactly: the last full page has no cursor. */
  expect_200(s.port, "/pages/four?put=a,b,c,d", "put");
  expect_200(s.port, "/pages/four?limit=2", "kv a,b|b c,d|nil\nstorage a,b|b c,d|nil");
  expect_200(s.port, "/pages/four?limit=3", "kv a,b,c|c d|nil\nstorage a,b,c|c d|nil");
  expect_200(s.port, "/pages/four?limit=4", "kv a,b,c,d|nil\nstorage a,b,c,d|nil");

  /* KV values after the page that have expired do not make a cursor either. */
  expect_200(s.port, "/pages/exp?put=a,b", "put");
  expect_200(s.port, "/pages/exp?put=c,d&ttl=0.001", "put");
  sleep_ms(50);
  http_resp_t r;
  req(s.port, "GET", "/pages/exp?limit=2", NULL, NULL, 0, &r);
  assert_int_equal(r.status, 200);
  /* storage has no ttl: c and d are still there. */
  assert_string_equal(r.body, "kv a,b|nil\nstorage a,b|b c,d|nil");
  http_free(&r);

  /* The HTTP list: no "cursor" once the list ends. */
  req(s.port, "GET", "/_/storage/one?limit=1", NULL, NULL, 0, &r);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "\"key\":\"a\""));
  if (strstr(r.body, "cursor")) fail_msg("a page that ends the list has a cursor: %s", r.body);
  http_free(&r);
  req(s.port, "GET", "/_/storage/four?limit=2", NULL, NULL, 0, &r);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "\"cursor\":\"b\""));
  http_free(&r);
  req(s.port, "GET", "/_/storage/four?limit=2&cursor=b", NULL, NULL, 0, &r);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "\"key\":\"d\""));
  if (strstr(r.body, "cursor")) fail_msg("the last page has a cursor: %s", r.body);
  http_free(&r);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- functions/echo.lua ---------------------------------------------------------------------------- */

/* The repository's functions/echo.lua, found from this file's path (CMake compiles sources by
 * their absolute paths): the example as shipped, not a copy. */
static char *shipped_echo(void) {
  char path[1024];
  snprintf(path, sizeof path, "%s", __FILE__);
  char *cut = strstr(path, "tests/integration/");
  if (!cut) fail_msg("cannot find the repository from %s", __FILE__);
  snprintf(cut, sizeof path - (size_t)(cut - path), "functions/echo.lua");
  char *src = read_file(path);
  if (!src[0]) fail_msg("cannot read %s", path);
  return src;
}

static void echo_media_type(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  char *src = shipped_echo();
  srv_write(&s, "echo.lua", src);
  free(src);
  srv_start(&s, "--workers 1 --redis none");
  static const char doc[] = "{\"a\":1}";
  /* Decoded: the media type is application/json, whatever its parameters and case. */
  const char *json_types[] = {"application/json", "application/json; charset=utf-8", "application/json;charset=UTF-8",
                              "Application/JSON", "application/json ; charset=\"utf-8\""};
  for (size_t i = 0; i < sizeof json_types / sizeof json_types[0]; i++) {
    char hdr[200];
    snprintf(hdr, sizeof hdr, "Content-Type: %s\r\n", json_types[i]);
    http_resp_t r;
    req(s.port, "POST", "/echo", hdr, doc, strlen(doc), &r);
    assert_int_equal(r.status, 200);
    if (!strstr(r.body, "\"json\":{\"a\":1}") || strstr(r.body, "\"body\":"))
      fail_msg("%s: the body was not decoded: %s", json_types[i], r.body);
    http_free(&r);
  }
  /* Not JSON: the body comes back as it is. */
  const char *other_types[] = {"application/jsonl", "text/plain; x=application/json", "application/json-seq"};
  for (size_t i = 0; i < sizeof other_types / sizeof other_types[0]; i++) {
    char hdr[200];
    snprintf(hdr, sizeof hdr, "Content-Type: %s\r\n", other_types[i]);
    http_resp_t r;
    req(s.port, "POST", "/echo", hdr, doc, strlen(doc), &r);
    assert_int_equal(r.status, 200);
    if (strstr(r.body, "\"json\":") || !strstr(r.body, "\"body\":\"{\\\"a\\\":1}\""))
      fail_msg("%s: the body was decoded: %s", other_types[i], r.body);
    http_free(&r);
  }
  /* A bad JSON body with parameters is still a 400 (it is JSON by its media type). */
  http_resp_t r;
  req(s.port, "POST", "/echo", "Content-Type: application/json; charset=utf-8\r\n", "{bad", 4, &r);
  assert_int_equal(r.status, 400);
  http_free(&r);
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(list_cursors),
      cmocka_unit_test(echo_media_type),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
