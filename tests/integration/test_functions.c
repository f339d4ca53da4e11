/* test_functions.c - the function contract of docs/architecture.md §1 over real HTTP:
 * routing from file names, the event, ctx, results, errors, report lines,
 * load errors and the sandbox as seen from a handler. One server per group. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <poll.h>

#include <cmocka.h>

#include "harness.h"

/* --- helpers ------------------------------------------------------------------------------------ */

/* A request that must get a response. */
static void req(int port, const char *method, const char *path, const char *headers, const char *body,
                size_t body_len, http_resp_t *r) {
  if (http_request(port, method, path, headers, body, body_len, r) != 0)
    fail_msg("%s %s: no response", method, path);
}

static void get_status(int port, const char *path, int want) {
  http_resp_t r;
  http_get(port, path, &r);
  if (r.status != want) fail_msg("GET %s: got %d (body '%s'), want %d", path, r.status, r.body, want);
  http_free(&r);
}

/* How many header lines of r are named name (case-insensitive). */
static int header_count(const http_resp_t *r, const char *name) {
  int n = 0;
  size_t nl = strlen(name);
  const char *line = strstr(r->head, "\r\n");
  while (line) {
    line += 2;
    if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') n++;
    line = strstr(line, "\r\n");
  }
  return n;
}

/* Sends a raw request and reads everything until the server closes; returns bytes read. */
static size_t raw_exchange(int port, const char *request, char *out, size_t cap) {
  int fd = http_connect(port);
  assert_true(fd >= 0);
  http_sends(fd, request);
  size_t got = 0;
  long long deadline = now_ms() + 10000;
  while (got < cap - 1 && now_ms() < deadline) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, (int)(deadline - now_ms())) <= 0) break;
    ssize_t n = recv(fd, out + got, cap - 1 - got, 0);
    if (n <= 0) break;
    got += (size_t)n;
  }
  out[got] = '\0';
  http_close(fd);
  return got;
}

/* --- routing ------------------------------------------------------------------------------------ */

static void routing(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "hello.lua", "return function(event) return 'hello' end\n");
  srv_write(&s, "users/[id].lua", "return function(event) return 'user ' .. event.params.id end\n");
  srv_write(&s, "index.lua", "return function(event) return 'index' end\n");
  srv_write(&s, "catalog.lua",
            "return {\n"
            "  routes = { 'GET /items/:id', 'POST /items' },\n"
            "  handler = function(event) return event.method .. ' ' .. (event.params.id or '-') end,\n"
            "}\n");
  srv_write(&s, "files/[...path].lua", "return function(event) return 'files:' .. event.params.path end\n");
  srv_write(&s, "static.lua",
            "return {\n"
            "  routes = { 'GET /static/*' },\n"
            "  handler = function(event)\n"
            "    local k, v = next(event.params)\n"
            "    return 'static:' .. tostring(v) .. ':' .. event.path\n"
            "  end,\n"
            "}\n");
  srv_write(&s, "dup_a.lua",
            "return { routes = { 'GET /dup', 'GET /only-a' }, handler = function() return 'a' end }\n");
  srv_write(&s, "dup_b.lua",
            "return { routes = { 'GET /dup', 'GET /only-b' }, handler = function() return 'b' end }\n");
  srv_write(&s, "_helpers.lua", "return { twice = function(x) return x * 2 end }\n");
  srv_write(&s, "lib/util.lua", "return { shout = function(s) return s:upper() .. '!' end }\n");
  srv_write(&s, "mods.lua",
            "local h = require '_helpers'\n"
            "local u = require 'lib.util'\n"
            "return function() return u.shout('hey') .. h.twice(21) end\n");
  srv_start(&s, "--workers 2");

  http_expect_body(s.port, "/hello", "hello");
  http_expect_body(s.port, "/users/42", "user 42");
  http_expect_body(s.port, "/users/a%20b%2Fc", "user a b/c"); /* params are percent-decoded */
  get_status(s.port, "/users/1/2", 404);
  http_expect_body(s.port, "/", "index");
  get_status(s.port, "/index", 404);

  /* routes override: the declared routes serve, the file's own path does not. */
  http_expect_body(s.port, "/items/7", "GET 7");
  http_resp_t r;
  req(s.port, "POST", "/items", NULL, "", 0, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "POST -");
  http_free(&r);
  req(s.port, "DELETE", "/items/7", NULL, NULL, 0, &r);
  assert_int_equal(r.status, 405);
  http_free(&r);
  get_status(s.port, "/catalog", 404);

  /* Wildcards capture the rest of the path. */
  http_expect_body(s.port, "/files/a/b/c.txt", "files:a/b/c.txt");
  http_expect_body(s.port, "/static/css/site.css", "static:css/site.css:/static/css/site.css");

  /* A conflict: the file whose path sorts first wins the route (registry.h),
   * so dup_a.lua keeps /dup; dup_b.lua loses that route only. */
  http_expect_body(s.port, "/dup", "a");
  http_expect_body(s.port, "/only-a", "a");
  http_expect_body(s.port, "/only-b", "b");
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "dup_a.lua", "dup_b.lua", NULL), 1);
  srv_expect_errors(&s, 1);

  /* Modules are not routed, but require finds them. */
  get_status(s.port, "/_helpers", 404);
  get_status(s.port, "/helpers", 404);
  get_status(s.port, "/lib/util", 404);
  http_expect_body(s.port, "/mods", "HEY!42");

  http_get(s.port, "/_/api/functions", &r);
  assert_int_equal(r.status, 200);
  assert_null(strstr(r.body, "_helpers"));
  assert_null(strstr(r.body, "lib/util"));
  char *loser = api_fn_entry(r.body, "dup_b");
  assert_non_null(loser);
  assert_non_null(strstr(loser, "\"routed\":true"));
  assert_non_null(strstr(loser, "\"error\":\"route conflict: GET /dup is also claimed by dup_a.lua, which serves it"));
  free(loser);
  char *hello = api_fn_entry(r.body, "hello");
  assert_non_null(hello);
  assert_non_null(strstr(hello, "\"routed\":true"));
  free(hello);
  http_free(&r);

  assert_int_equal(srv_stop(&s), 0);
}

/* --- the event ---------------------------------------------------------------------------------- */

static void event_fields(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "query.lua",
            "return function(event)\n"
            "  local q, m = event.query, event.multiQuery\n"
            "  return table.concat({ q.a, q.b, q.c, q.flag, tostring(#m.a), table.concat(m.a, ','),\n"
            "                        event.rawQuery }, '|')\n"
            "end\n");
  srv_write(&s, "headers.lua",
            "return function(event)\n"
            "  local h, m = event.headers, event.multiHeaders\n"
            "  return table.concat({ h['x-multi'], h['x-upper'], tostring(h['X-Upper']),\n"
            "    tostring(#m['x-multi']), m['x-multi'][1], m['x-multi'][2], h.host }, '|')\n"
            "end\n");
  srv_write(&s, "echo.lua",
            "return function(event)\n"
            "  return { headers = { ['content-type'] = 'application/octet-stream' }, body = event.body }\n"
            "end\n");
  srv_write(&s, "json.lua",
            "return function(event)\n"
            "  local a = event.json()\n"
            "  local b = event.json()\n"
            "  if a == nil then return 'nil|' .. tostring(b == nil) end\n"
            "  return tostring(rawequal(a, b)) .. '|' .. a.name .. '|' .. tostring(a.list[2]) .. '|' ..\n"
            "         tostring(a.nested.ok)\n"
            "end\n");
  srv_write(&s, "meta.lua",
            "return function(event)\n"
            "  return table.concat({ event.method, event.path, event.ip, event.requestId, event.source,\n"
            "                        event.rawQuery, tostring(next(event.query)) }, '|')\n"
            "end\n");
  srv_start(&s, "--workers 2");
  http_resp_t r;

  /* query: decoded, '+' as space, first value wins; multiQuery has them all; rawQuery as sent. */
  http_get(s.port, "/query?a=1&a=2&b=x+y%26z&c=%E2%9C%93&flag", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "1|x y&z|\xE2\x9C\x93||2|1,2|a=1&a=2&b=x+y%26z&c=%E2%9C%93&flag");
  http_free(&r);

  /* headers: lower-case names, repeats joined with ", "; multiHeaders keeps each. */
  req(s.port, "GET", "/headers", "X-Multi: one\r\nx-multi: two\r\nX-Upper: Yes\r\n", NULL, 0, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "one, two|Yes|nil|2|one|two|127.0.0.1");
  http_free(&r);

  /* body: binary-safe both ways. */
  char bin[600];
  for (size_t i = 0; i < sizeof bin; i++) bin[i] = (char)(i % 256);
  bin[1] = '\0';
  bin[599] = '\0';
  req(s.port, "POST", "/echo", "Content-Type: application/octet-stream\r\n", bin, sizeof bin, &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, sizeof bin);
  assert_memory_equal(r.body, bin, sizeof bin);
  assert_string_equal(http_header(&r, "content-type"), "application/octet-stream");
  http_free(&r);

  /* json(): decoded once and cached. */
  const char *doc = "{\"name\":\"moon\",\"list\":[1,2],\"nested\":{\"ok\":true}}";
  req(s.port, "POST", "/json", "Content-Type: application/json\r\n", doc, strlen(doc), &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "true|moon|2|true");
  http_free(&r);
  /* ... nil for an empty body ... */
  req(s.port, "POST", "/json", NULL, "", 0, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "nil|true");
  http_free(&r);
  http_expect_body(s.port, "/json", "nil|true");
  /* ... and a 400 (not a 500, no error line) for a body that is not JSON. */
  req(s.port, "POST", "/json", "Content-Type: application/json\r\n", "{bad", 4, &r);
  assert_int_equal(r.status, 400);
  assert_string_equal(http_header(&r, "content-type"), "application/json");
  assert_non_null(strstr(r.body, "invalid JSON"));
  assert_null(strstr(r.body, "internal error"));
  http_free(&r);
  req(s.port, "POST", "/json", NULL, doc, strlen(doc), &r); /* still fine afterwards */
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "true|moon|2|true");
  http_free(&r);

  /* method, path (without the query), ip, requestId (= X-Request-Id), source. */
  char want[512], rid[128], rid1[128];
  http_get(s.port, "/meta", &r);
  assert_int_equal(r.status, 200);
  http_request_id(&r, rid1, sizeof rid1);
  snprintf(want, sizeof want, "GET|/meta|127.0.0.1|%s|http||nil", rid1);
  assert_string_equal(r.body, want);
  http_free(&r);
  req(s.port, "POST", "/meta?x=1", NULL, "", 0, &r);
  assert_int_equal(r.status, 200);
  http_request_id(&r, rid, sizeof rid);
  snprintf(want, sizeof want, "POST|/meta|127.0.0.1|%s|http|x=1|x", rid);
  assert_string_equal(r.body, want);
  assert_string_not_equal(rid, rid1); /* one id per request */
  http_free(&r);

  assert_int_equal(srv_stop(&s), 0);
}

/* --- ctx, warm state, logs, report lines --------------------------------------------------------- */

static void ctx_and_reports(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "ctx.lua",
            "return {\n"
            "  timeout = 5, memory = 64,\n"
            "  env = { GREETING = 'hi', MODE = 'test' },\n"
            "  handler = function(event, ctx)\n"
            "    return table.concat({ ctx.requestId, ctx.functionName, ctx.env.GREETING, ctx.env.MODE,\n"
            "      tostring(ctx.cold), tostring(ctx.version), ctx.versionHash, string.format('%.3f', ctx.remaining()),\n"
            "      tostring(ctx.memoryLimitInMB), tostring(ctx.env.NOPE) }, '|')\n"
            "  end,\n"
            "}\n");
  srv_write(&s, "api/[name].lua",
            "return function(event, ctx) return ctx.functionName .. '|' .. event.params.name end\n");
  srv_write(&s, "counter.lua",
            "local n = 0\n"
            "return function() n = n + 1; return tostring(n) end\n");
  /* A handler gets as many of (event, ctx) as it declares: a vararg one both. */
  srv_write(&s, "vararg.lua",
            "return function(...)\n"
            "  local event, ctx = ...\n"
            "  return select('#', ...) .. '|' .. event.method .. '|' .. ctx.functionName\n"
            "end\n");
  srv_write(&s, "three.lua",
            "return function(event, ctx, extra) return event.path .. '|' .. ctx.functionName .. '|' .. tostring(extra) end\n");
  srv_write(&s, "logs.lua",
            "return function(event, ctx)\n"
            "  ctx.log.warn('careful', { k = 7, requestId = 'spoofed' })\n"
            "  print('hi', 1)\n"
            "  return 'ok'\n"
            "end\n");
  srv_start(&s, "--workers 1");
  http_resp_t r;
  char rids[3][128];

  for (int i = 0; i < 3; i++) {
    http_get(s.port, "/ctx", &r);
    assert_int_equal(r.status, 200);
    http_request_id(&r, rids[i], sizeof rids[i]);
    char *f[16];
    int n = split_fields(r.body, f, 16);
    assert_int_equal(n, 10);
    assert_string_equal(f[0], rids[i]);
    assert_string_equal(f[1], "ctx");
    assert_string_equal(f[2], "hi");
    assert_string_equal(f[3], "test");
    assert_string_equal(f[4], i == 0 ? "true" : "false");
    char ver[1100];
    snprintf(ver, sizeof ver, "%.500s-%.500s", f[5], f[6]);
    assert_non_null(http_header(&r, "x-crescent-version"));
    assert_string_equal(http_header(&r, "x-crescent-version"), ver);
    assert_int_equal(strlen(f[6]), 12);
    double left = strtod(f[7], NULL);
    assert_true(left > 0 && left <= 5000); /* "%.3f" of 4999.9996 is 5000.000 */
    assert_string_equal(f[8], "64");
    assert_string_equal(f[9], "nil");
    /* server-timing: init only on the cold start. */
    const char *st = http_header(&r, "server-timing");
    assert_non_null(st);
    if (i == 0) assert_non_null(strstr(st, "init;dur="));
    else assert_null(strstr(st, "init;dur="));
    http_free(&r);
  }
  http_expect_body(s.port, "/api/x%20y", "api/[name]|x y");

  http_expect_body(s.port, "/vararg", "2|GET|vararg");
  http_expect_body(s.port, "/vararg", "2|GET|vararg");
  http_expect_body(s.port, "/three", "/three|three|nil");

  /* Module-level state lives on in the warm instance. */
  http_expect_body(s.port, "/counter", "1");
  http_expect_body(s.port, "/counter", "2");
  http_expect_body(s.port, "/counter", "3");

  /* One report line per invocation: cold first, then warm. */
  for (int i = 0; i < 3; i++) {
    char idf[300];
    snprintf(idf, sizeof idf, "\"requestId\":\"%.127s\"", rids[i]);
    assert_int_equal(srv_log_wait(&s, 1, 3000, "\"msg\":\"report\"", idf, "\"function\":\"ctx\"",
                                  i == 0 ? "\"start\":\"cold\"" : "\"start\":\"warm\"", "\"duration\":",
                                  "\"status\":200", NULL),
                     1);
    assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", idf, NULL), 1);
  }
  assert_int_equal(srv_log_wait(&s, 3, 3000, "\"msg\":\"report\"", "\"function\":\"counter\"", NULL), 3);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", "\"function\":\"counter\"", "\"start\":\"cold\"", NULL), 1);

  /* ctx.log and print: log lines with the request id. */
  char rid[128], idf[300];
  http_get(s.port, "/logs", &r);
  assert_int_equal(r.status, 200);
  http_request_id(&r, rid, sizeof rid);
  http_free(&r);
  snprintf(idf, sizeof idf, "\"requestId\":\"%s\"", rid);
  assert_int_equal(srv_log_wait(&s, 1, 3000, "\"msg\":\"hi\\t1\"", idf, "\"function\":\"logs\"", NULL), 1);
  assert_int_equal(srv_log_count(&s, "\"level\":\"warn\"", "\"msg\":\"careful\"", idf, "\"k\":7", NULL), 1);
  /* A field named like the line's own cannot spoof it: it is kept apart. */
  assert_int_equal(srv_log_count(&s, "\"msg\":\"careful\"", idf, "\"fields.requestId\":\"spoofed\"", NULL), 1);
  assert_int_equal(srv_log_count(&s, "\"requestId\":\"spoofed\"", NULL), 0);

  assert_int_equal(srv_stop(&s), 0);
}

/* --- results ------------------------------------------------------------------------------------ */

static void results(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "str.lua", "return function() return 'plain' end\n");
  srv_write(&s, "num.lua", "return function() return 42 end\n");
  srv_write(&s, "frac.lua", "return function() return 0.1 + 0.2 end\n");
  srv_write(&s, "nan.lua", "return function() return 0/0 end\n");
  srv_write(&s, "numheaders.lua",
            "return function() return { headers = { ['Content-Type'] = 42, ['x-n'] = 2^53 }, body = 'n' } end\n");
  srv_write(&s, "tbl.lua", "return function() return { a = 1 } end\n");
  srv_write(&s, "big.lua", "return function() return { n = 2^53, m = -2^53, f = 0.5 } end\n");
  srv_write(&s, "nested.lua", "return function() return { a = { b = { c = 'd' } } } end\n");
  srv_write(&s, "array.lua", "return function() return { 1, 'two', { 3 }, true } end\n");
  srv_write(&s, "resp.lua",
            "return function()\n"
            "  return { status = 201, headers = { ['x-a'] = '1', ['set-cookie'] = { 'a=1', 'b=2' } }, body = 'x' }\n"
            "end\n");
  srv_write(&s, "respjson.lua", "return function() return { status = 200, body = { k = 'v' } } end\n");
  srv_write(&s, "nothing.lua", "return function() end\n");
  srv_write(&s, "ctype.lua",
            "return function() return { headers = { ['Content-Type'] = 'text/html' }, body = '<b>' } end\n");
  srv_write(&s, "status99.lua", "return function() return { status = 99, body = 'x' } end\n");
  srv_write(&s, "status700.lua", "return function() return { status = 700, body = 'x' } end\n");
  srv_write(&s, "inject.lua",
            "return function()\n"
            "  return { headers = { ['x-bad'] = 'a\\r\\nx-injected: 1' }, body = 'x' }\n"
            "end\n");
  srv_write(&s, "fnr.lua", "return function() return function() end end\n");
  srv_write(&s, "statusok.lua", "return function() return { status = 'ok' } end\n");
  srv_write(&s, "sandbox.lua",
            "return function()\n"
            "  return type(io) .. type(os.execute) .. type(load) .. type(debug)\n"
            "end\n");
  srv_write(&s, "jsonlib.lua",
            "local safe = require 'cjson.safe'\n"
            "return function()\n"
            "  local d = json.decode('{\"a\":[1,2,3]}')\n"
            "  local bad, err = safe.decode('{bad')\n"
            "  return json.encode({ 1, 2 }) .. '|' .. d.a[3] .. '|' .. tostring(bad) .. '|' .. type(err)\n"
            "end\n");
  srv_start(&s, "--workers 2");
  http_resp_t r;

  http_get(s.port, "/str", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(http_header(&r, "content-type"), "text/plain; charset=utf-8");
  assert_string_equal(r.body, "plain");
  http_free(&r);

  http_get(s.port, "/num", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "42");
  http_free(&r);

  /* Numbers as bodies and header values are written as JSON writes them: exactly. */
  http_expect_body(s.port, "/frac", "0.30000000000000004");
  http_get(s.port, "/numheaders", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(http_header(&r, "content-type"), "42");
  assert_string_equal(http_header(&r, "x-n"), "9007199254740992");
  http_free(&r);

  http_get(s.port, "/tbl", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(http_header(&r, "content-type"), "application/json");
  assert_string_equal(r.body, "{\"a\":1}");
  http_free(&r);

  http_get(s.port, "/big", &r);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "\"n\":9007199254740992"));
  assert_non_null(strstr(r.body, "\"m\":-9007199254740992"));
  assert_non_null(strstr(r.body, "\"f\":0.5"));
  http_free(&r);

  http_get(s.port, "/nested", &r);
  assert_string_equal(r.body, "{\"a\":{\"b\":{\"c\":\"d\"}}}");
  http_free(&r);
  http_get(s.port, "/array", &r);
  assert_string_equal(http_header(&r, "content-type"), "application/json");
  assert_string_equal(r.body, "[1,\"two\",[3],true]");
  http_free(&r);

  http_get(s.port, "/resp", &r);
  assert_int_equal(r.status, 201);
  assert_string_equal(r.body, "x");
  assert_string_equal(http_header(&r, "x-a"), "1");
  assert_int_equal(header_count(&r, "set-cookie"), 2);
  assert_non_null(strcasestr(r.head, "\r\nset-cookie: a=1\r\n"));
  assert_non_null(strcasestr(r.head, "\r\nset-cookie: b=2\r\n"));
  assert_string_equal(http_header(&r, "content-type"), "text/plain; charset=utf-8");
  http_free(&r);

  http_get(s.port, "/respjson", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(http_header(&r, "content-type"), "application/json");
  assert_string_equal(r.body, "{\"k\":\"v\"}");
  http_free(&r);

  /* nil -> 204 and not a byte of body. */
  char raw[8192];
  size_t n = raw_exchange(s.port, "GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", raw, sizeof raw);
  assert_true(n > 12);
  assert_memory_equal(raw, "HTTP/1.1 204", 12);
  char *end = strstr(raw, "\r\n\r\n");
  assert_non_null(end);
  assert_int_equal((size_t)(end + 4 - raw), n);
  assert_null(strcasestr(raw, "\r\ncontent-length: 1"));
  assert_null(strcasestr(raw, "\r\ntransfer-encoding"));

  http_get(s.port, "/ctype", &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(header_count(&r, "content-type"), 1);
  assert_string_equal(http_header(&r, "content-type"), "text/html");
  assert_string_equal(r.body, "<b>");
  http_free(&r);

  /* Bad results: 500 with the internal error body, and an error line each. */
  const char *bad[] = {"/status99", "/status700", "/inject", "/fnr", "/nan"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    http_get(s.port, bad[i], &r);
    if (r.status != 500) fail_msg("GET %s: got %d, want 500", bad[i], r.status);
    assert_non_null(strstr(r.body, "\"error\":\"internal error\""));
    assert_null(strcasestr(r.head, "x-injected"));
    assert_null(http_header(&r, "x-bad"));
    http_free(&r);
  }
  srv_expect_errors(&s, 5);
  assert_int_equal(srv_log_wait(&s, 5, 3000, "\"level\":\"error\"", NULL), 5);

  /* A table whose status is not a number is data. */
  http_get(s.port, "/statusok", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(http_header(&r, "content-type"), "application/json");
  assert_string_equal(r.body, "{\"status\":\"ok\"}");
  http_free(&r);

  /* The sandbox as a handler sees it. */
  http_expect_body(s.port, "/sandbox", "nilnilnilnil");
  http_expect_body(s.port, "/jsonlib", "[1,2]|3|nil|string");

  assert_int_equal(srv_stop(&s), 0);
}

/* --- errors ------------------------------------------------------------------------------------- */

static void handler_errors(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "boom.lua",
            "return function(event)\n"
            "  if event.query.fail then error('boom') end\n"
            "  return 'fine'\n"
            "end\n");
  srv_write(&s, "tblerr.lua", "return function() error({ code = 1 }) end\n");
  srv_start(&s, "--workers 1");
  http_resp_t r;
  char rid[128], want[300], idf[300];

  http_expect_body(s.port, "/boom", "fine");
  http_get(s.port, "/boom?fail=1", &r);
  assert_int_equal(r.status, 500);
  http_request_id(&r, rid, sizeof rid);
  assert_string_equal(http_header(&r, "content-type"), "application/json");
  snprintf(want, sizeof want, "{\"error\":\"internal error\",\"requestId\":\"%s\"}", rid);
  assert_string_equal(r.body, want);
  assert_null(strstr(r.body, "boom"));
  assert_null(strstr(r.body, "traceback"));
  http_free(&r);
  srv_expect_errors(&s, 1);
  snprintf(idf, sizeof idf, "\"requestId\":\"%s\"", rid);
  assert_int_equal(srv_log_wait(&s, 1, 3000, "\"level\":\"error\"", "boom.lua:2: boom", "stack traceback", idf,
                                "\"function\":\"boom\"", NULL),
                   1);
  assert_int_equal(
      srv_log_wait(&s, 1, 3000, "\"msg\":\"report\"", idf, "\"start\":\"warm\"", "\"status\":500", NULL), 1);
  /* ... and it keeps answering. */
  http_expect_body(s.port, "/boom", "fine");
  http_get(s.port, "/boom?fail=yes", &r);
  assert_int_equal(r.status, 500);
  http_free(&r);
  srv_expect_errors(&s, 1);
  http_expect_body(s.port, "/boom", "fine");

  /* An error value that is not a string is still a 500 with a log line. */
  http_get(s.port, "/tblerr", &r);
  assert_int_equal(r.status, 500);
  http_request_id(&r, rid, sizeof rid);
  snprintf(want, sizeof want, "{\"error\":\"internal error\",\"requestId\":\"%s\"}", rid);
  assert_string_equal(r.body, want);
  http_free(&r);
  srv_expect_errors(&s, 1);
  snprintf(idf, sizeof idf, "\"requestId\":\"%s\"", rid);
  assert_int_equal(srv_log_wait(&s, 1, 3000, "\"level\":\"error\"", idf, "\"function\":\"tblerr\"", NULL), 1);

  assert_int_equal(srv_stop(&s), 0);
}

/* --- load errors -------------------------------------------------------------------------------- */

static void load_errors(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "good.lua", "return function() return 'good' end\n");
  srv_write(&s, "bad.lua", "return function()\n  local x = = 1\nend\n");
  srv_write(&s, "typo.lua", "return { timout = 5, handler = function() return 'x' end }\n");
  srv_write(&s, "memtype.lua", "return { memory = 'lots', handler = function() return 'x' end }\n");
  srv_write(&s, "number.lua", "return 42\n");
  srv_write(&s, "initerr.lua",
            "local cfg = nil\n"
            "local port = cfg.port\n"
            "return function() return 'x' end\n");
  /* Settings are read raw: an __index that never returns is not run. */
  srv_write(&s, "meta.lua", "return setmetatable({}, { __index = function() while true do end end })\n");
  srv_start(&s, "--workers 2");
  srv_expect_errors(&s, 6);
  http_resp_t r;

  http_expect_body(s.port, "/good", "good");
  const char *broken[] = {"bad", "typo", "memtype", "number", "initerr", "meta"};
  for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
    char path[64], fnf[80];
    snprintf(path, sizeof path, "/%s", broken[i]);
    http_get(s.port, path, &r);
    if (r.status != 503) fail_msg("GET %s: got %d, want 503", path, r.status);
    assert_string_equal(http_header(&r, "content-type"), "application/json");
    assert_non_null(strstr(r.body, "\"error\":\"function failed to load\""));
    snprintf(fnf, sizeof fnf, "\"function\":\"%s\"", broken[i]);
    assert_non_null(strstr(r.body, fnf));
    http_free(&r);
  }

  /* One error line per file, naming the file and what is wrong. */
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "bad.lua:2:", NULL), 1);
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "typo.lua", "'timout'", "did you mean 'timeout'", NULL), 1);
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "memtype.lua", "'memory'", NULL), 1);
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "number.lua", "handler", "number", NULL), 1);
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "initerr.lua:2:", NULL), 1);
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "meta.lua", "'handler' must be a function", NULL), 1);

  /* The functions API: every function, with its version or null and its error. */
  http_get(s.port, "/_/api/functions", &r);
  assert_int_equal(r.status, 200);
  char *e = api_fn_entry(r.body, "good");
  assert_non_null(e);
  assert_non_null(strstr(e, "\"version\":1,"));
  assert_non_null(strstr(e, "\"hash\":\""));
  assert_non_null(strstr(e, "\"error\":null"));
  free(e);
  struct {
    const char *name, *needle;
  } want[] = {{"bad", "bad.lua:2:"},
              {"typo", "did you mean 'timeout'"},
              {"memtype", "'memory'"},
              {"number", "number"},
              {"initerr", "initerr.lua:2:"}};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    e = api_fn_entry(r.body, want[i].name);
    if (!e) fail_msg("%s missing from /_/api/functions: %s", want[i].name, r.body);
    assert_non_null(strstr(e, "\"version\":null"));
    if (!strstr(e, want[i].needle)) fail_msg("%s: '%s' not in %s", want[i].name, want[i].needle, e);
    free(e);
  }
  http_free(&r);

  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(routing),        cmocka_unit_test(event_fields), cmocka_unit_test(ctx_and_reports),
      cmocka_unit_test(results),        cmocka_unit_test(handler_errors), cmocka_unit_test(load_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
