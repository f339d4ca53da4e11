/* test_sec_gateway.c - what a function can do to the response path and the
 * routes (issue 10, items 1, 2, 9, 10), from the outside:
 *   - a result is read raw and once: metamethods of a returned table never
 *     run after the invocation (no use-after-free, no spin, no unprotected
 *     error), whatever they do;
 *   - every status a function produces goes through one check;
 *   - user routes never answer the platform's /_/ paths.
 * After each hostile function the same worker (same pid) still answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <cmocka.h>

#include "harness.h"

static pid_t one_worker(srv_t *s) {
  pid_t p[4];
  int n = srv_workers_wait(s, p, 4, 1, 5000);
  assert_int_equal(n, 1);
  return p[0];
}

/* --- item 1: the use-after-free repro, and variants ----------------------------------------------- */

static void result_read_once_raw(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  /* The reviewer's repro: body and headers only through __index, a GC storm
   * on the second read of headers. */
  srv_write(&s, "uaf.lua",
            "local calls = 0\n"
            "return function(event)\n"
            "  calls = 0\n"
            "  return setmetatable({ status = 200 }, { __index = function(t, k)\n"
            "    if k == 'body' then return string.rep('B', 65516) .. string.format('%020.6f', os.clock()) end\n"
            "    if k == 'headers' then calls = calls + 1\n"
            "      if calls == 2 then local junk = {} for i = 1, 300000 do junk[i] = { i, 'J' .. i } end end\n"
            "      return { ['x-pass'] = tostring(calls) } end\n"
            "  end })\n"
            "end\n");
  /* 4 MB body made in __index: the SIGSEGV variant. */
  srv_write(&s, "uaf4m.lua",
            "return function()\n"
            "  return setmetatable({ status = 201 }, { __index = function(t, k)\n"
            "    if k == 'body' then return string.rep('C', 4 * 2^20) end\n"
            "    if k == 'headers' then local j = {} for i = 1, 200000 do j[i] = {i} end return {} end\n"
            "  end })\n"
            "end\n");
  /* Variant: real fields, but the headers table itself has __index/__len and
   * a header value list with a metatable; the body is real. */
  srv_write(&s, "rawheaders.lua",
            "return function()\n"
            "  local h = setmetatable({ ['x-a'] = 'one' }, { __index = function() error('no') end,\n"
            "                          __len = function() while true do end end })\n"
            "  h['x-list'] = setmetatable({ 'p', 'q' }, { __index = function() while true do end end })\n"
            "  return { status = 202, headers = h, body = 'real body' }\n"
            "end\n");
  /* Variant: a body table encoded as JSON whose fields come from __index. */
  srv_write(&s, "rawbody.lua",
            "return function()\n"
            "  return { body = setmetatable({ a = 1 }, { __index = function() while true do end end }) }\n"
            "end\n");
  srv_start(&s, "--workers 1");
  pid_t w = one_worker(&s);

  /* The fields exist only through __index: read raw, there is no body and
   * no header; status is the table's own. */
  for (int i = 0; i < 5; i++) {
    http_resp_t r;
    http_get(s.port, "/uaf", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    assert_null(http_header(&r, "x-pass"));
    http_free(&r);
  }
  http_expect(s.port, "/uaf4m", 201, "");
  http_resp_t r;
  http_get(s.port, "/rawheaders", &r);
  assert_int_equal(r.status, 202);
  assert_string_equal(r.body, "real body");
  assert_string_equal(http_header(&r, "x-a"), "one");
  assert_string_equal(http_header(&r, "x-list"), "p");
  http_free(&r);
  http_expect(s.port, "/rawbody", 200, "{\"a\":1}");

  pid_t now[4];
  assert_int_equal(srv_worker_pids(&s, now, 4), 1);
  assert_int_equal(now[0], w); /* nothing crashed */
  srv_stop(&s);
}

/* --- item 2: no user code after the invocation ---------------------------------------------------- */

static void no_user_code_after_invocation(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "spin.lua",
            "return function()\n"
            "  return setmetatable({ body = 'x' }, { __index = function() while true do end end })\n"
            "end\n");
  srv_write(&s, "boom.lua",
            "return function()\n"
            "  return setmetatable({ body = 'y' }, { __index = function() error('boom') end })\n"
            "end\n");
  /* Not a response object: encoded as JSON, raw, whatever its metatable says. */
  srv_write(&s, "plain.lua",
            "return function()\n"
            "  return setmetatable({ 1, 2 }, { __index = function() while true do end end,\n"
            "    __len = function() error('len') end, __tostring = function() while true do end end })\n"
            "end\n");
  /* An error object whose __tostring spins, and one whose __tostring errors. */
  srv_write(&s, "errspin.lua",
            "return function()\n"
            "  error(setmetatable({}, { __tostring = function() while true do end end }))\n"
            "end\n");
  srv_write(&s, "errboom.lua",
            "return function()\n"
            "  error(setmetatable({}, { __tostring = function() error('again') end, __index = function() error('i') end }))\n"
            "end\n");
  srv_write(&s, "ok.lua", "return function() return 'fine' end\n");
  /* A NUL inside a header name (strchr finds the terminator). */
  srv_write(&s, "nulname.lua", "return function() return { headers = { ['x\\0y'] = '1' }, body = 'b' } end\n");
  srv_expect_errors(&s, 3); /* the two error objects and the bad header are logged */
  srv_start(&s, "--workers 1");
  pid_t w = one_worker(&s);
  long long t0 = now_ms();
  http_expect(s.port, "/spin", 200, "x");
  http_expect(s.port, "/boom", 200, "y");
  http_expect(s.port, "/plain", 200, "[1,2]");
  http_expect(s.port, "/errspin", 500, NULL);
  http_expect(s.port, "/errboom", 500, NULL);
  http_expect(s.port, "/ok", 200, "fine");
  http_expect(s.port, "/nulname", 500, NULL);
  assert_int_equal(srv_log_wait(&s, 1, 5000, "invalid response header name", NULL), 1);
  /* Nothing waited for a deadline (the function's default is seconds). */
  assert_true(now_ms() - t0 < 2000);
  pid_t now[4];
  assert_int_equal(srv_worker_pids(&s, now, 4), 1);
  assert_int_equal(now[0], w);
  assert_int_equal(srv_log_count(&s, "unprotected", NULL), 0);
  srv_stop(&s);
}

/* --- item 10: statuses -------------------------------------------------------------------------- */

static void statuses_checked(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  /* An error table from event.json() with its status changed. */
  srv_write(&s, "errstatus.lua",
            "return function(event)\n"
            "  local ok, e = pcall(event.json)\n"
            "  e.status = tonumber(event.query.s) or event.query.s\n"
            "  if event.query.m then e.message = { 'not', 'a', 'string' } end\n"
            "  error(e)\n"
            "end\n");
  srv_write(&s, "resstatus.lua",
            "return function(event)\n"
            "  local s = event.query.s\n"
            "  local v = s == 'nan' and 0/0 or s == 'inf' and math.huge or tonumber(s)\n"
            "  return { status = v, body = 'b' }\n"
            "end\n");
  int bad_err[] = {0, 100, 101, 199, 200, 204, 302, 399, 600, 700, 99999, -5};
  srv_expect_errors(&s, (int)(sizeof bad_err / sizeof bad_err[0]) + 2 + 10);
  srv_start(&s, "--workers 1");
  char path[128];
  http_resp_t r;
  for (size_t i = 0; i < sizeof bad_err / sizeof bad_err[0]; i++) {
    /* An invalid status for an error: a plain error, 500. The body is sent
     * so event.json() fails and makes the platform's error table. */
    snprintf(path, sizeof path, "/errstatus?s=%d", bad_err[i]);
    assert_int_equal(http_request(s.port, "POST", path, NULL, "{bad", 4, &r), 0);
    if (r.status != 500) fail_msg("error status %d answered %d", bad_err[i], r.status);
    http_free(&r);
  }
  /* From -5 as an unsigned: 4294967291; and text. */
  assert_int_equal(http_request(s.port, "POST", "/errstatus?s=4294967291", NULL, "{bad", 4, &r), 0);
  assert_int_equal(r.status, 500);
  http_free(&r);
  assert_int_equal(http_request(s.port, "POST", "/errstatus?s=teapot", NULL, "{bad", 4, &r), 0);
  assert_int_equal(r.status, 500);
  http_free(&r);
  /* Valid error statuses pass, with the message when it is a string. */
  assert_int_equal(http_request(s.port, "POST", "/errstatus?s=418", NULL, "{bad", 4, &r), 0);
  assert_int_equal(r.status, 418);
  assert_non_null(strstr(r.body, "invalid JSON in request body"));
  http_free(&r);
  assert_int_equal(http_request(s.port, "POST", "/errstatus?s=503&m=1", NULL, "{bad", 4, &r), 0);
  assert_int_equal(r.status, 503);
  assert_non_null(strstr(r.body, "\"bad request\""));
  http_free(&r);

  /* Results: 200-599 integers only. */
  const char *bad_res[] = {"100", "101", "199", "600", "700", "99999", "-5", "200.5", "nan", "inf"};
  for (size_t i = 0; i < sizeof bad_res / sizeof bad_res[0]; i++) {
    snprintf(path, sizeof path, "/resstatus?s=%s", bad_res[i]);
    http_get(s.port, path, &r);
    if (r.status != 500) fail_msg("result status %s answered %d", bad_res[i], r.status);
    http_free(&r);
  }
  http_expect(s.port, "/resstatus?s=200", 200, "b");
  http_expect(s.port, "/resstatus?s=599", 599, "b");
  http_expect(s.port, "/resstatus?s=301", 301, "b");
  /* The invalid results were logged as bad results, each. */
  assert_int_equal(srv_log_wait(&s, 10, 5000, "bad result from the handler", "status must be an integer", NULL), 10);
  srv_stop(&s);
}

/* --- item 9: reserved paths ------------------------------------------------------------------------ */

static void reserved_paths_are_the_platforms(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "grab.lua",
            "return { routes = { 'GET /:any/health', 'GET /:a/api/functions', 'GET /:a/metrics',\n"
            "                    'GET /:a/storage/*rest' },\n"
            "  handler = function() return 'grabbed' end }\n");
  srv_write(&s, "all.lua",
            "return { routes = { 'GET /*rest' }, handler = function(e) return 'all:' .. e.params.rest end }\n");
  srv_start(&s, "--workers 1");
  /* The platform answers its own paths. */
  http_expect(s.port, "/_/health", 200, "{\"status\":\"ok\",\"redis\":\"up\"}");
  http_expect(s.port, "/_/health/", 200, "{\"status\":\"ok\",\"redis\":\"up\"}");
  http_resp_t r;
  http_get(s.port, "/_/api/functions", &r);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "\"grab\""));
  http_free(&r);
  http_get(s.port, "/_/metrics", &r);
  assert_int_equal(r.status, 200);
  assert_null(strstr(r.body, "grabbed"));
  http_free(&r);
  /* Paths under /_/ the platform does not have: 404, not a user route. */
  http_expect(s.port, "/_/nothing", 404, NULL);
  http_expect(s.port, "/_", 404, NULL);
  /* The same paths percent-encoded are the same paths. */
  http_expect(s.port, "/%5f/health", 200, "{\"status\":\"ok\",\"redis\":\"up\"}");
  http_expect(s.port, "/%5F/health", 200, "{\"status\":\"ok\",\"redis\":\"up\"}");
  http_expect(s.port, "/%5f/nothing", 404, NULL);
  /* Elsewhere the user's routes answer as before. */
  http_expect(s.port, "/x/health", 200, "grabbed");
  http_expect(s.port, "/x/metrics", 200, "grabbed");
  http_expect(s.port, "/somewhere/else", 200, "all:somewhere/else");
  http_expect(s.port, "/_x/y", 200, "all:_x/y");
  srv_stop(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(result_read_once_raw),
      cmocka_unit_test(no_user_code_after_invocation),
      cmocka_unit_test(statuses_checked),
      cmocka_unit_test(reserved_paths_are_the_platforms),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
