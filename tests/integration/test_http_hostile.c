/* test_http_hostile.c - crescent.http against a hostile upstream and hostile functions:
 * tests/integration/hostile.py (raw sockets on 127.0.0.1, started here) answers each path with
 * exactly the bytes that path names: a second answer after the first, a body on a HEAD or 204
 * answer, interim answers with bodies, Content-Length with chunked, NUL and bare CR in headers,
 * trailers, a close mid-chunk, an answer before the request's body was read, 70 KB of headers,
 * a drip past the deadline, a reset. Each case asserts the exact result the function sees and that
 * the next request to the same origin (which may reuse the kept connection) reads its own answer,
 * not the previous one's bytes. Then the egress policy against numeric host spellings (decimal,
 * octal, hex, short forms, IPv4-mapped and embedded IPv6, 0.0.0.0, a trailing dot), directly and
 * through redirects, and a kept connection reused by a function with another policy. Every case
 * ends with the worker still answering /ok. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#ifndef CR_HOSTILE_PY
#error "CR_HOSTILE_PY (the path of hostile.py) comes from tests/integration/CMakeLists.txt"
#endif

static char updir[64];
static pid_t hpid = -1;
static int hport;

static void h_stop(void) {
  if (hpid <= 0) return;
  kill(hpid, SIGTERM);
  long long until = now_ms() + 5000;
  while (waitpid(hpid, NULL, WNOHANG) == 0) {
    if (now_ms() > until) {
      kill(hpid, SIGKILL);
      waitpid(hpid, NULL, 0);
      break;
    }
    sleep_ms(10);
  }
  hpid = -1;
}

static int group_setup(void **state) {
  (void)state;
  snprintf(updir, sizeof updir, "/tmp/crescent-hostile-XXXXXX");
  if (!mkdtemp(updir)) return -1;
  atexit(h_stop);
  char pf[128], lg[128];
  snprintf(pf, sizeof pf, "%s/port", updir);
  snprintf(lg, sizeof lg, "%s/log", updir);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int fd = open(lg, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) _exit(127);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
    char *argv[] = {"/usr/bin/python3", CR_HOSTILE_PY, "--port-file", pf, NULL};
    execv(argv[0], argv);
    _exit(127);
  }
  hpid = pid;
  long long until = now_ms() + 10000;
  while (now_ms() < until) {
    if (waitpid(pid, NULL, WNOHANG) == pid) {
      hpid = -1;
      char *log = read_file(lg);
      fprintf(stderr, "hostile.py exited; its log:\n%s\n", log);
      free(log);
      return -1;
    }
    char *txt = read_file(pf);
    hport = atoi(txt);
    free(txt);
    if (hport > 0) return 0;
    sleep_ms(20);
  }
  return -1;
}

static int group_teardown(void **state) {
  (void)state;
  h_stop();
  char lg[128];
  snprintf(lg, sizeof lg, "%s/log", updir);
  char *log = read_file(lg);
  if (*log) fprintf(stderr, "hostile.py's log:\n%s\n", log);
  free(log);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", updir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", updir);
  return 0;
}

/* Writes NAME.lua: a prelude (http, H = the upstream's base URL on 127.0.0.1, HL on localhost,
 * P its port, show(res, err) -> "status|body" or "nil|err"), then a settings table with `egress`
 * (a Lua list, or "" for none) and the handler `body`. */
static void fnw(srv_t *s, const char *name, const char *egress, const char *body) {
  size_t n = strlen(egress) + strlen(body) + 1024;
  char *src = malloc(n);
  snprintf(src, n,
           "local http = require 'crescent.http'\n"
           "local P = %d\n"
           "local H, HL = 'http://127.0.0.1:' .. P, 'http://localhost:' .. P\n"
           "local function show(r, err) if r then return r.status .. '|' .. r.body end return 'nil|' .. tostring(err) end\n"
           "return { %s%s%s\n"
           "  handler = function(event, ctx)\n%s\nend }\n",
           hport, *egress ? "egress = " : "", egress, *egress ? "," : "", body);
  char file[128];
  snprintf(file, sizeof file, "%s.lua", name);
  srv_write(s, file, src);
  free(src);
}

static void expect_fmt(srv_t *s, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void expect_fmt(srv_t *s, const char *path, const char *fmt, ...) {
  char want[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(want, sizeof want, fmt, ap);
  va_end(ap);
  http_expect_body(s->port, path, want);
}

/* One case: GET /c?p=PATH&m=METHOD... (PORT in PATH is the upstream's), the first request's result, a space, then a GET /hello to
 * the same origin (which takes the kept connection when there is one). */
typedef struct {
  const char *query; /* after /c? */
  const char *want;
} case_t;

static const case_t cases[] = {
    /* A second answer in the same read as the first: the connection is not kept. */
    {"p=/extra", "200|ok 200|hello"},
    /* A body on an answer to HEAD, and on a 204 (which has none, RFC 9112 6.3): neither part of
     * the answer nor read as the next one. */
    {"p=/headbody&m=HEAD", "200| 200|hello"},
    {"p=/204body", "204| 200|hello"},
    {"p=/304body", "304| 200|hello"},
    /* Interim answers are skipped, their fields dropped; they have no body whatever their fields
     * say (RFC 9112 6.3), so a "body" is a bad next status line, not part of the final body. */
    {"p=/1xx&h=1", "200|ok|Content-Length,2 200|hello"},
    {"p=/1xxbody", "nil|bad response: HPE_INVALID_CONSTANT 200|hello"},
    /* Framing conflicts and overflows are refused, never guessed. */
    {"p=/clte", "nil|bad response: HPE_UNEXPECTED_CONTENT_LENGTH 200|hello"},
    {"p=/clcl", "nil|bad response: HPE_UNEXPECTED_CONTENT_LENGTH 200|hello"},
    {"p=/hugecl", "nil|bad response: HPE_INVALID_CONTENT_LENGTH 200|hello"},
    {"p=/negcl", "nil|bad response: HPE_INVALID_CONTENT_LENGTH 200|hello"},
    {"p=/hugechunk", "nil|bad response: HPE_INVALID_CHUNK_SIZE 200|hello"},
    /* A transfer coding other than chunked is not undone (no hidden decompression): the bytes as
     * the chunks carried them. */
    {"p=/tegzip", "200|ok 200|hello"},
    /* Header bytes that would break the NUL-separated store or smuggle a field are refused; llhttp
     * takes an obsolete line folding (joined with a space, no CR or LF reaches the function) and a
     * space before the colon (kept in the name). */
    {"p=/nul", "nil|bad response: HPE_INVALID_HEADER_TOKEN 200|hello"},
    {"p=/fold&h=1", "200|ok|X-A,a b,Content-Length,2 200|hello"},
    {"p=/barecr", "nil|bad response: HPE_LF_EXPECTED 200|hello"},
    {"p=/barelf", "nil|bad response: HPE_INVALID_HEADER_TOKEN 200|hello"},
    {"p=/spacename&h=1", "200|ok|X-A ,a,Content-Length,2 200|hello"},
    /* Trailers are not headers: they do not show up in headers or rawHeaders, and count against
     * the head's 64 KB. */
    {"p=/trailers&h=1", "200|ok|Transfer-Encoding,chunked 200|hello"},
    {"p=/bigtrailer", "nil|response headers too large 200|hello"},
    /* Not HTTP/1.x; an upgrade nobody asked for. */
    {"p=/http09", "nil|bad response: HPE_INVALID_CONSTANT 200|hello"},
    /* A 101 nobody asked for: the answer as it is, and the switched connection is not kept (the
     * next request would read the other protocol's bytes). */
    {"p=/101", "101| 200|hello"},
    {"p=/101clean", "101| 200|hello"},
    /* The same for a 2xx to CONNECT (a function may send any method token): a tunnel, not kept. */
    {"p=/tunnel&m=CONNECT", "200| 200|hello"},
    {"p=/bighead", "nil|response headers too large 200|hello"},
    /* The server goes away mid-answer. */
    {"p=/midchunk", "nil|connection closed 200|hello"},
    {"p=/midheaders", "nil|connection closed 200|hello"},
    {"p=/noframe", "200|until-close 200|hello"},
    {"p=/reset", "nil|connection reset 200|hello"},
    /* A drip of bytes does not hold the request past its timeout. */
    {"p=/drip&t=0.5", "nil|timeout 200|hello"},
    /* Redirect Locations that are not URLs crescent follows. */
    {"p=/locspace", "nil|bad redirect: url: spaces, control characters and non-ASCII bytes must be percent-encoded "
                    "200|hello"},
    {"p=/locctl", "nil|bad response: HPE_INVALID_HEADER_TOKEN 200|hello"},
    {"p=/locfile", "nil|bad redirect: only http and https locations are followed 200|hello"},
    {"p=/loclong", "nil|bad redirect: url: longer than 8192 bytes 200|hello"},
    /* A ':' in a relative Location's query is not a scheme: "?to=a:b" is followed (to /redir
     * again, whose default target is /hello). */
    {"p=/redir?to=%3Fx%3Da%3Ab", "200|hello 200|hello"},
    /* A URL without a path: the request-target is still origin-form ("/?x=1", RFC 9112 3.2.1),
     * directly and as a redirect's Location. */
    {"p=?x=1", "200|/?x=1 200|hello"},
    {"p=/redir?to=http://127.0.0.1:PORT%3Fy=2", "200|/?y=2 200|hello"},
    {"p=/redir?to=mailto:a@b.c", "nil|bad redirect: only http and https locations are followed 200|hello"},
    /* An answer before the request's body was read, by a server that then stops reading: the
     * connection (with the body's rest still queued to it) is not kept, so the next request
     * does not wait behind it, and the queued bytes go with the connection. */
    {"p=/early&m=POST&n=8000000", "200|early 200|hello"},
};

static void responses(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  char eg[128], eg_mem[128];
  snprintf(eg, sizeof eg, "{ '127.0.0.1:%d', 'localhost:%d' }", hport, hport);
  snprintf(eg_mem, sizeof eg_mem, "{ '127.0.0.1:%d' }, memory = 4", hport);
  fnw(&s, "c", eg,
      "  local q = event.query\n"
      "  q.p = q.p:gsub('PORT', P)\n"
      "  local opts = { timeout = tonumber(q.t) or 5 }\n"
      "  local r, err\n"
      "  if q.m == 'HEAD' then r, err = http.head(H .. q.p, opts)\n"
      "  elseif q.m == 'POST' then r, err = http.post(H .. q.p, string.rep('x', tonumber(q.n) or 3), opts)\n"
      "  elseif q.m then r, err = http.request { url = H .. q.p, method = q.m, timeout = opts.timeout }\n"
      "  else r, err = http.get(H .. q.p, opts) end\n"
      "  local a = show(r, err)\n"
      "  if r and q.h then a = a .. '|' .. table.concat(r.rawHeaders, ',') end\n"
      "  return a .. ' ' .. show(http.get(H .. '/hello', { timeout = 2 }))");
  /* Bytes that arrive on an idle kept connection (an answer nobody asked for, or the server's
   * close) end it: the next request opens a new one. The pause is a request to another origin. */
  fnw(&s, "late", eg,
      "  local a = show(http.get(H .. '/' .. event.query.p))\n"
      "  local b = show(http.get(HL .. '/sleep?ms=300'))\n"
      "  local c = show(http.request { url = H .. '/hello', method = event.query.m or 'GET', timeout = 2 })\n"
      "  return a .. ' ' .. b .. ' ' .. c");
  /* The answer is charged to the function's memory as it arrives. */
  fnw(&s, "mem", eg_mem,
      "  local r, err = http.get(H .. '/big?bytes=' .. event.query.n)\n"
      "  return r and (r.status .. ' ' .. #r.body) or ('nil ' .. tostring(err))");
  /* Calls from where the invocation cannot yield, and the client going away mid-request. */
  fnw(&s, "cb", eg,
      "  local out = {}\n"
      "  local function g() local r, err = http.get(H .. '/hello'); return r and r.body or err end\n"
      "  out[1] = string.gsub('x', 'x', function() return g() end)\n"
      "  local t = { 2, 1 }\n"
      "  local ok, e = pcall(table.sort, t, function(a, b) out[2] = g(); return a < b end)\n"
      "  out[3] = tostring(setmetatable({}, { __tostring = function() return g() end }))\n"
      "  out[4] = tostring(ok)\n"
      "  out[5] = g()\n"
      "  return table.concat(out, '|')");
  /* A kept connection the server closes as it is reused, without a byte of answer: only an
   * idempotent method (RFC 9110 9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE) is sent again, not
   * one crescent knows nothing about. hostile.py's /seen lists what reached it. */
  fnw(&s, "idem", eg,
      "  http.get(H .. '/seen')\n"
      "  local out = {}\n"
      "  for _, m in ipairs({ 'GET', 'CHARGE' }) do\n"
      "    out[#out + 1] = show(http.get(H .. '/hello'))\n"
      "    out[#out + 1] = show(http.request { url = H .. '/closenow', method = m })\n"
      "  end\n"
      "  out[#out + 1] = assert(http.get(H .. '/seen')).body\n"
      "  return table.concat(out, '\\n')");
  srv_write(&s, "ok.lua", "return function() return 'ok' end\n");
  srv_start(&s, "--workers 1");
  int bad = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char path[256];
    snprintf(path, sizeof path, "/c?%s", cases[i].query);
    http_resp_t r;
    http_get(s.port, path, &r);
    if (r.status != 200 || strcmp(r.body, cases[i].want)) {
      fprintf(stderr, "%s: got %d '%s', want '%s'\n", path, r.status, r.body, cases[i].want);
      bad++;
    }
    http_free(&r);
    http_expect_body(s.port, "/ok", "ok");
  }
  if (bad) fail_msg("%d of the cases above failed", bad);
  http_expect_body(s.port, "/late?p=lateextra", "200|ok 200|hello 200|hello");
  http_expect_body(s.port, "/late?p=closeafter&m=POST", "200|ok 200|hello 200|hello");
  http_expect_body(s.port, "/ok", "ok");
  http_expect_body(s.port, "/idem",
                   "200|hello\nnil|connection closed\n200|hello\nnil|connection closed\n"
                   "GET /hello HTTP/1.1\nGET /closenow HTTP/1.1\nGET /closenow HTTP/1.1\n"
                   "GET /hello HTTP/1.1\nCHARGE /closenow HTTP/1.1");
  http_expect_body(s.port, "/mem?n=3000000", "200 3000000");
  http_resp_t r;
  http_get(s.port, "/mem?n=6000000", &r);
  assert_int_equal(r.status, 500);
  const char *memerr = "{\"error\":\"memory limit exceeded\",";
  if (strncmp(r.body, memerr, strlen(memerr))) fail_msg("/mem: %s", r.body);
  http_free(&r);
  /* gsub and sort callbacks are C boundaries: refused there, nil, err; a __tostring metamethod
   * is not (LuaJIT yields across it). */
  http_expect_body(s.port, "/cb",
                   "cannot call crescent.http here (inside a C callback)|cannot call crescent.http here (inside a C "
                   "callback)|hello|true|hello");
  /* The client goes away while the function waits on a drip. */
  int fd = http_connect(s.port);
  http_sends(fd, "GET /c?p=/drip&t=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  sleep_ms(200);
  http_close(fd);
  sleep_ms(1200);
  http_expect_body(s.port, "/ok", "ok");
  srv_expect_errors(&s, srv_log_count(&s, "\"level\":\"error\"", NULL));
  srv_stop(&s);
}

/* --- the egress policy against spellings of loopback ------------------------------------------ */

static void egress(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  /* The default policy (no egress list): every spelling is the loopback address it means. */
  fnw(&s, "dflt", "",
      "  local out = {}\n"
      "  for _, h in ipairs({ '2130706433', '0177.0.0.1', '0x7f.0.0.1', '127.1', '0x7f000001', '017700000001',\n"
      "                       '0.0.0.0', '0', '[::ffff:7f00:1]', '[::127.0.0.1]', '[64:ff9b::7f00:1]',\n"
      "                       '[2002:7f00:1::]', '[::]', 'LOCALHOST' }) do\n"
      "    out[#out + 1] = show(http.get('http://' .. h .. ':' .. P .. '/hello', { timeout = 2 }))\n"
      "  end\n"
      "  return table.concat(out, '\\n')");
  fnw(&s, "dot", "", "  return show(http.get('http://localhost.:' .. P .. '/hello', { timeout = 2 }))");
  /* A name-only list: redirects to other spellings of the same address are not that name. */
  char eg[128];
  snprintf(eg, sizeof eg, "{ 'localhost:%d' }", hport);
  fnw(&s, "redir", eg,
      "  local out = {}\n"
      "  for _, to in ipairs({ 'http://2130706433:' .. P .. '/hello', 'http://0177.0.0.1:' .. P .. '/hello',\n"
      "                        'http://127.0.0.1:' .. P .. '/hello', '//127.0.0.1:' .. P .. '/hello',\n"
      "                        'http://[::ffff:127.0.0.1]:' .. P .. '/hello', 'http://0.0.0.0:' .. P .. '/hello',\n"
      "                        'http://localhost:' .. P .. '/hello' }) do\n"
      "    out[#out + 1] = show(http.get(HL .. '/redir?to=' .. to, { timeout = 2 }))\n"
      "  end\n"
      "  return table.concat(out, '\\n')");
  /* A kept connection is not reused for a function whose policy refuses its address. */
  snprintf(eg, sizeof eg, "{ '127.0.0.1:%d' }", hport);
  fnw(&s, "pa", eg, "  return show(http.get(H .. '/hello'))");
  fnw(&s, "pb", "", "  return show(http.get(H .. '/hello'))");
  snprintf(eg, sizeof eg, "{ 'localhost:%d' }", hport);
  fnw(&s, "pc", eg, "  return show(http.get(H .. '/hello'))");
  /* CR and LF cannot reach the wire from a function. */
  fnw(&s, "smug", "",
      "  local out = {}\n"
      "  local function e(...) local ok, err = pcall(...); out[#out + 1] = tostring(ok) .. ' ' .. tostring(err) end\n"
      "  e(http.get, H .. '/hello\\r\\nX-Evil: 1')\n"
      "  e(http.get, H .. '/hello HTTP/1.1')\n"
      "  e(http.get, 'http://127.0.0.1\\r\\n:' .. P .. '/')\n"
      "  e(http.get, H .. '/hello', { headers = { ['x-a\\r\\nx-b'] = '1' } })\n"
      "  e(http.get, H .. '/hello', { headers = { ['x-a:'] = '1' } })\n"
      "  e(http.request, { url = H .. '/hello', method = 'GET\\r\\n' })\n"
      "  return table.concat(out, '\\n')");
  srv_write(&s, "ok.lua", "return function() return 'ok' end\n");
  srv_start(&s, "--workers 1");
  expect_fmt(&s, "/dflt",
             "nil|egress: 127.0.0.1:%d is not allowed (loopback)\n"
             "nil|egress: 127.0.0.1:%d is not allowed (loopback)\n"
             "nil|egress: 127.0.0.1:%d is not allowed (loopback)\n"
             "nil|egress: 127.0.0.1:%d is not allowed (loopback)\n"
             "nil|egress: 127.0.0.1:%d is not allowed (loopback)\n"
             "nil|egress: 127.0.0.1:%d is not allowed (loopback)\n"
             "nil|egress: 0.0.0.0:%d is not allowed (unspecified)\n"
             "nil|egress: 0.0.0.0:%d is not allowed (unspecified)\n"
             "nil|egress: [::ffff:127.0.0.1]:%d is not allowed (loopback)\n"
             "nil|egress: [::127.0.0.1]:%d is not allowed (loopback)\n"
             "nil|egress: [64:ff9b::7f00:1]:%d is not allowed (loopback)\n"
             "nil|egress: [2002:7f00:1::]:%d is not allowed (loopback)\n"
             "nil|egress: [::]:%d is not allowed (unspecified)\n"
             "nil|egress: 127.0.0.1:%d is not allowed (loopback)",
             hport, hport, hport, hport, hport, hport, hport, hport, hport, hport, hport, hport, hport, hport);
  /* localhost. (a trailing dot): no such name here; where a resolver answers it, its loopback
   * address is refused. Either way nothing connects. */
  http_resp_t r;
  http_get(s.port, "/dot", &r);
  char lo[128];
  snprintf(lo, sizeof lo, "nil|egress: 127.0.0.1:%d is not allowed (loopback)", hport);
  if (strcmp(r.body, "nil|dns: localhost.: unknown host") && strcmp(r.body, lo)) fail_msg("/dot: %s", r.body);
  http_free(&r);
  expect_fmt(&s, "/redir",
             "nil|egress: 127.0.0.1:%d is not in the function's egress list\n"
             "nil|egress: 127.0.0.1:%d is not in the function's egress list\n"
             "nil|egress: 127.0.0.1:%d is not in the function's egress list\n"
             "nil|egress: 127.0.0.1:%d is not in the function's egress list\n"
             "nil|egress: [::ffff:127.0.0.1]:%d is not in the function's egress list\n"
             "nil|egress: 0.0.0.0:%d is not in the function's egress list\n"
             "200|hello",
             hport, hport, hport, hport, hport, hport);
  http_expect_body(s.port, "/pa", "200|hello");
  expect_fmt(&s, "/pb", "nil|egress: 127.0.0.1:%d is not allowed (loopback)", hport);
  expect_fmt(&s, "/pc", "nil|egress: 127.0.0.1:%d is not in the function's egress list", hport);
  http_expect_body(s.port, "/pa", "200|hello");
  http_expect_body(s.port, "/smug",
                   "false bad argument #1 to 'http.request' (url: spaces, control characters and non-ASCII bytes must be percent-encoded)\n"
                   "false bad argument #1 to 'http.request' (url: spaces, control characters and non-ASCII bytes must be percent-encoded)\n"
                   "false bad argument #1 to 'http.request' (url: spaces, control characters and non-ASCII bytes must be percent-encoded)\n"
                   "false bad argument #1 to 'http.request' (headers: bad name 'x-a\r\nx-b')\n"
                   "false bad argument #1 to 'http.request' (headers: bad name 'x-a:')\n"
                   "false bad argument #1 to 'http.request' (method: an upper-case token like \"GET\" expected)");
  http_expect_body(s.port, "/ok", "ok");
  srv_expect_errors(&s, srv_log_count(&s, "\"level\":\"error\"", NULL));
  srv_stop(&s);
}

/* --- a function replaced while its request waits ------------------------------------------- */

static void reload(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  char eg[128];
  snprintf(eg, sizeof eg, "{ '127.0.0.1:%d' }", hport);
  /* The redirect's hop asks the old version's egress list, after the new version replaced it. */
  fnw(&s, "rl", eg, "  return 'v1 ' .. show(http.get(H .. '/redir?ms=800&to=/hello'))");
  srv_start(&s, "--workers 1");
  int fd = http_connect(s.port);
  http_sends(fd, "GET /rl HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  sleep_ms(150);
  fnw(&s, "rl", "{}", "  return 'v2 ' .. show(http.get(H .. '/hello'))");
  http_resp_t r;
  if (http_read(fd, &r, 0, 5000)) fail_msg("/rl: no answer");
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "v1 200|hello");
  http_free(&r);
  http_close(fd);
  /* The new version (an empty list: nothing allowed) serves the next call. */
  long long until = now_ms() + 5000;
  for (;;) {
    http_get(s.port, "/rl", &r);
    int v2 = strncmp(r.body, "v2 ", 3) == 0;
    if (v2) expect_fmt(&s, "/rl", "v2 nil|egress: 127.0.0.1:%d is not in the function's egress list", hport);
    http_free(&r);
    if (v2) break;
    if (now_ms() > until) fail_msg("the new version of rl never served");
    sleep_ms(50);
  }
  srv_expect_errors(&s, srv_log_count(&s, "\"level\":\"error\"", NULL));
  srv_stop(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(responses),
      cmocka_unit_test(egress),
      cmocka_unit_test(reload),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
