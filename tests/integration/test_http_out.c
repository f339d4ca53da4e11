/* test_http_out.c - outbound HTTP from functions (crescent.http) against a real upstream:
 * tests/integration/upstream.py (Python's http.server on 127.0.0.1, started here, once plain and
 * twice over TLS with a throwaway CA made with the openssl command). Covers requests and their
 * results (status, body, headers, rawHeaders, json, redirects), keep-alive reuse (the upstream
 * counts its connections), chunked bodies, size bounds, timeouts, refused and truncated
 * connections, TLS verification, the egress policy (loopback, link-local, private, DNS
 * rebinding, crescent's own listener, the egress list), the per-invocation request limit,
 * argument errors, calls in pcall, coroutines and at init, the meters, and 200 concurrent
 * invocations on one worker while it keeps answering. The upstream is loopback, which the
 * default policy refuses: functions list it in `egress`. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#ifndef CR_UPSTREAM_PY
#error "CR_UPSTREAM_PY (the path of upstream.py) comes from tests/integration/CMakeLists.txt"
#endif

typedef struct {
  pid_t pid;
  int port;
  char name[16];
} upstream_t;

static char updir[64];       /* the upstreams' folder: certificates, port files, logs */
static upstream_t up;        /* plain HTTP */
static upstream_t up_tls;    /* HTTPS, a certificate for 127.0.0.1 and localhost from the test CA */
static upstream_t up_wrong;  /* HTTPS, a certificate from the test CA for another name only */
static int closed_port;      /* a loopback port nothing listens on */

/* --- the upstreams --------------------------------------------------------------------------- */

static void up_stop(upstream_t *u) {
  if (u->pid <= 0) return;
  kill(u->pid, SIGTERM);
  long long until = now_ms() + 5000;
  while (waitpid(u->pid, NULL, WNOHANG) == 0) {
    if (now_ms() > until) {
      kill(u->pid, SIGKILL);
      waitpid(u->pid, NULL, 0);
      break;
    }
    sleep_ms(10);
  }
  u->pid = -1;
}

static void up_stop_all(void) {
  up_stop(&up);
  up_stop(&up_tls);
  up_stop(&up_wrong);
}

/* Starts upstream.py (with TLS when cert is given) and waits (at most 10 s) for its port file. */
static int up_start(upstream_t *u, const char *name, const char *cert, const char *key) {
  char pf[128], lg[128], c[128], k[128];
  snprintf(u->name, sizeof u->name, "%s", name);
  snprintf(pf, sizeof pf, "%s/%s.port", updir, name);
  snprintf(lg, sizeof lg, "%s/%s.log", updir, name);
  if (cert) {
    snprintf(c, sizeof c, "%s/%s", updir, cert);
    snprintf(k, sizeof k, "%s/%s", updir, key);
  }
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int fd = open(lg, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) _exit(127);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
    char *argv[] = {"/usr/bin/python3", CR_UPSTREAM_PY, "--port-file", pf, cert ? "--tls" : NULL, c, k, NULL};
    execv(argv[0], argv);
    _exit(127);
  }
  u->pid = pid;
  long long until = now_ms() + 10000;
  while (now_ms() < until) {
    if (waitpid(pid, NULL, WNOHANG) == pid) {
      u->pid = -1;
      char *log = read_file(lg);
      fprintf(stderr, "upstream %s exited; its log:\n%s\n", name, log);
      free(log);
      return -1;
    }
    char *txt = read_file(pf);
    u->port = atoi(txt);
    free(txt);
    if (u->port > 0) return 0;
    sleep_ms(20);
  }
  return -1;
}

/* Runs a shell command line (openssl, in updir); 0 when it exited 0. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  int rc = system(cmd);
  if (rc != 0) fprintf(stderr, "failed (%d): %s\n", rc, cmd);
  return rc;
}

/* A throwaway CA, a leaf for IP:127.0.0.1 and DNS:localhost, and one for another name only. */
static int make_certs(void) {
  const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  if (sh("cd %s && openssl req -x509 %s -keyout ca.key -out ca.pem -days 2 -subj /CN=crescent-test-ca "
         "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign >/dev/null 2>&1",
         updir, ec))
    return -1;
  const char *leaves[][2] = {{"leaf", "IP:127.0.0.1,DNS:localhost"}, {"wrong", "DNS:wrong.example"}};
  for (int i = 0; i < 2; i++) {
    const char *n = leaves[i][0];
    if (sh("cd %s && printf 'subjectAltName=%s\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > %s.ext"
           " && openssl req -new %s -keyout %s.key -out %s.csr -subj /CN=%s >/dev/null 2>&1"
           " && openssl x509 -req -in %s.csr -CA ca.pem -CAkey ca.key -set_serial %d -days 2 -extfile %s.ext"
           " -out %s.pem >/dev/null 2>&1",
           updir, leaves[i][1], n, ec, n, n, n, n, i + 2, n, n))
      return -1;
  }
  return 0;
}

/* A loopback port nothing listens on (bound once, then closed). */
static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &len)) return -1;
  close(fd);
  return ntohs(a.sin_port);
}

static int group_setup(void **state) {
  (void)state;
  snprintf(updir, sizeof updir, "/tmp/crescent-up-XXXXXX");
  if (!mkdtemp(updir)) return -1;
  atexit(up_stop_all);
  if (make_certs()) return -1;
  if (up_start(&up, "plain", NULL, NULL) || up_start(&up_tls, "tls", "leaf.pem", "leaf.key") ||
      up_start(&up_wrong, "wrong", "wrong.pem", "wrong.key"))
    return -1;
  closed_port = free_port();
  return closed_port > 0 ? 0 : -1;
}

static int group_teardown(void **state) {
  (void)state;
  up_stop_all();
  const char *names[] = {"plain", "tls", "wrong"};
  for (int i = 0; i < 3; i++) { /* the upstreams write only unexpected errors */
    char lg[128];
    snprintf(lg, sizeof lg, "%s/%s.log", updir, names[i]);
    char *log = read_file(lg);
    if (*log) fprintf(stderr, "upstream %s's log:\n%s\n", names[i], log);
    free(log);
  }
  sh("rm -rf %s", updir);
  return 0;
}

/* The upstream's count of accepted connections (asked on a connection of our own, counted too). */
static int up_conns(void) {
  http_resp_t r;
  if (http_request(up.port, "GET", "/conns", NULL, NULL, 0, &r) != 0) fail_msg("upstream /conns: no answer");
  assert_int_equal(r.status, 200);
  int n = atoi(r.body);
  http_free(&r);
  return n;
}

/* --- functions ------------------------------------------------------------------------------- */

/* Writes NAME.lua: a prelude (http, the upstreams' base URLs B, BT, CLOSED, their ports UP, TLS,
 * WRONG, CLOSEDP, and show(res, err) -> "status|body" or "nil|err"), then `top` at the file's top
 * level, then a settings table with egress (unless no_egress), `settings` and the handler `body`. */
static void fnw(srv_t *s, const char *name, int no_egress, const char *top, const char *settings, const char *body) {
  char egress[256] = "";
  if (!no_egress)
    snprintf(egress, sizeof egress, "egress = { '127.0.0.1:%d', '127.0.0.1:%d', 'localhost:%d', '127.0.0.1:%d', '127.0.0.1:%d' },",
             up.port, up_tls.port, up_tls.port, up_wrong.port, closed_port);
  size_t n = strlen(top) + strlen(settings) + strlen(body) + 2048;
  char *src = malloc(n);
  snprintf(src, n,
           "local http = require 'crescent.http'\n"
           "local UP, TLS, WRONG, CLOSEDP = %d, %d, %d, %d\n"
           "local B, BT, CLOSED = 'http://127.0.0.1:' .. UP, 'https://127.0.0.1:' .. TLS, 'http://127.0.0.1:' .. CLOSEDP\n"
           "local function show(r, err) if r then return r.status .. '|' .. r.body end return 'nil|' .. tostring(err) end\n"
           "%s\n"
           "return { %s %s\n"
           "  handler = function(event, ctx)\n%s\nend }\n",
           up.port, up_tls.port, up_wrong.port, closed_port, top, egress, settings, body);
  char file[128];
  snprintf(file, sizeof file, "%s.lua", name);
  srv_write(s, file, src);
  free(src);
}

/* GET path must answer 200 with exactly the printf-formatted body. */
static void expect_fmt(srv_t *s, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void expect_fmt(srv_t *s, const char *path, const char *fmt, ...) {
  char want[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(want, sizeof want, fmt, ap);
  va_end(ap);
  http_expect_body(s->port, path, want);
}

/* GET path; its time in ms; the response in r. */
static long long timed_get(srv_t *s, const char *path, http_resp_t *r) {
  long long t0 = now_ms();
  http_get(s->port, path, r);
  return now_ms() - t0;
}

/* The http meters of fn in /_/api/functions once they show `want` (a substring), at most 3 s. */
static void wait_api_http(srv_t *s, const char *fn, const char *want) {
  long long until = now_ms() + 3000;
  for (;;) {
    http_resp_t r;
    http_get(s->port, "/_/api/functions", &r);
    char *e = api_fn_entry(r.body, fn);
    int ok = e && strstr(e, want);
    if (ok || now_ms() > until) {
      if (!ok) fail_msg("want %s in %s's entry: %s", want, fn, e ? e : r.body);
      free(e);
      http_free(&r);
      return;
    }
    free(e);
    http_free(&r);
    sleep_ms(50);
  }
}

/* Waits (at most 5 s) until a function written while the server runs answers path (not 404). */
static void wait_routed(srv_t *s, const char *path) {
  long long until = now_ms() + 5000;
  for (;;) {
    http_resp_t r;
    http_get(s->port, path, &r);
    int st = r.status;
    http_free(&r);
    if (st != 404) return;
    if (now_ms() > until) fail_msg("%s is still not routed", path);
    sleep_ms(50);
  }
}

/* --- requests, results, limits (one server, --workers 1) --------------------------------------- */

static void requests(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  fnw(&s, "ka", 0, "", "",
      "  local n = tonumber(event.query.n)\n"
      "  for i = 1, n do\n"
      "    local r, err = http.get(B .. '/hello')\n"
      "    if not r or r.body ~= 'hello' then return 'fail ' .. i .. ': ' .. tostring(err) end\n"
      "  end\n"
      "  return 'ok ' .. n");
  fnw(&s, "get", 0, "", "",
      "  local r = assert(http.get(B .. '/hello'))\n"
      "  return table.concat({ r.status, r.body, r.headers['content-type'], r.headers['content-length'], r.url,\n"
      "                        r.redirects }, '|')");
  fnw(&s, "post", 0, "", "",
      "  local r = assert(http.request { url = B .. '/echo?x=1', method = 'POST',\n"
      "    headers = { ['x-a'] = '1', ['X-Custom-Thing'] = 'v v' }, body = { a = 1 } })\n"
      "  local d = r.json()\n"
      "  return table.concat({ r.status, d.method, d.path, d.query, d.headers['content-type'], d.body,\n"
      "    d.headers['x-a'], d.headers['x-custom-thing'], d.headers.host, d.headers['content-length'] }, '|')");
  fnw(&s, "verbs", 0, "", "",
      "  local out = {}\n"
      "  local d = assert(http.post(B .. '/echo', 'raw text', { headers = { ['content-type'] = 'text/plain' } })).json()\n"
      "  out[#out + 1] = d.method .. ' ' .. d.body .. ' ' .. d.headers['content-type']\n"
      "  d = assert(http.put(B .. '/echo', { k = 'v' })).json()\n"
      "  out[#out + 1] = d.method .. ' ' .. d.body .. ' ' .. d.headers['content-type']\n"
      "  d = assert(http.delete(B .. '/echo?id=7')).json()\n"
      "  out[#out + 1] = d.method .. ' ' .. d.query .. ' [' .. d.body .. ']'\n"
      "  d = assert(http.get(B .. '/echo', { headers = { accept = 'text/x' } })).json()\n"
      "  out[#out + 1] = d.method .. ' ' .. d.headers.accept\n"
      "  d = assert(http.patch(B .. '/echo', 'p')).json()\n"
      "  out[#out + 1] = d.method .. ' ' .. d.body\n"
      "  local h = assert(http.head(B .. '/hello'))\n"
      "  out[#out + 1] = 'HEAD ' .. h.status .. ' [' .. h.body .. '] ' .. h.headers['content-length']\n"
      "  local j, jerr = assert(http.get(B .. '/hello')).json()\n"
      "  out[#out + 1] = tostring(j) .. ' ' .. type(jerr)\n"
      "  return table.concat(out, '\\n')");
  fnw(&s, "hdrs", 0, "", "",
      "  local r = assert(http.get(B .. '/headers'))\n"
      "  return table.concat({ r.headers['x-multi'], r.headers['set-cookie'], r.headers['content-type'],\n"
      "                        table.concat(r.rawHeaders, ',') }, '|')");
  fnw(&s, "chunked", 0, "", "", "  return show(http.get(B .. '/chunked?n=5'))");
  fnw(&s, "redir", 0, "", "",
      "  local out = {}\n"
      "  local function hop(r, err) return r and table.concat({ r.status, r.redirects, r.url, r.body }, ' ') or err end\n"
      "  out[1] = hop(http.get(B .. '/redirect/3'))\n"
      "  local r = assert(http.get(B .. '/redirect/1', { redirect = false }))\n"
      "  out[2] = table.concat({ r.status, r.redirects, r.headers.location, r.body }, ' ')\n"
      "  out[3] = hop(http.get(B .. '/redirect/3', { redirect = 2 }))\n"
      "  out[4] = hop(http.get(B .. '/redirect/2', { redirect = 2 }))\n"
      "  out[5] = hop(http.get(B .. '/loop'))\n"
      "  out[6] = hop(http.get(B .. '/redirect?code=307&to=' .. B .. '/hello'))\n"
      "  out[7] = hop(http.get(B .. '/redirect?to=http://127.0.0.2:' .. UP .. '/hello'))\n"
      "  out[8] = hop(http.get(B .. '/redirect?to=ftp://127.0.0.1/x'))\n"
      "  for _, code in ipairs({ '303', '307' }) do\n"
      "    local r3 = assert(http.post(B .. '/redirect?to=/echo&code=' .. code, 'abc'))\n"
      "    local d = r3.json()\n"
      "    out[#out + 1] = code .. ' ' .. r3.redirects .. ' ' .. d.method .. ' [' .. d.body .. ']'\n"
      "  end\n"
      "  return table.concat(out, '\\n')");
  fnw(&s, "status", 0, "", "",
      "  local out = {}\n"
      "  for _, p in ipairs({ '/status/404', '/status/500', '/status/204', '/close', '/hello' }) do\n"
      "    out[#out + 1] = show(http.get(B .. p))\n"
      "  end\n"
      "  return table.concat(out, '\\n')");
  fnw(&s, "big", 0, "", "",
      "  local out = {}\n"
      "  local function size(r, err) return r and (r.status .. ' ' .. #r.body) or err end\n"
      "  out[1] = size(http.get(B .. '/big?bytes=7340032'))\n"
      "  out[2] = size(http.get(B .. '/big?bytes=7340032&chunked=1'))\n"
      "  out[3] = size(http.get(B .. '/big?bytes=1048576'))\n"
      "  out[4] = size(http.get(B .. '/big?bytes=1048576&chunked=1'))\n"
      "  out[5] = size(http.get(B .. '/big?bytes=2000', { maxBody = 1999 }))\n"
      "  out[6] = size(http.get(B .. '/big?bytes=2000', { maxBody = 2000 }))\n"
      "  out[7] = size(http.get(B .. '/hello', { maxBody = 4 }))\n"
      "  out[8] = size(http.get(B .. '/hello', { maxBody = 10 }))\n"
      "  return table.concat(out, '\\n')");
  fnw(&s, "refused", 0, "", "", "  return show(http.get(CLOSED .. '/hello', { timeout = 2 }))");
  fnw(&s, "truncated", 0, "", "", "  return show(http.get(B .. '/truncate'))");
  fnw(&s, "tmo", 0, "", "", "  return show(http.get(B .. '/slow?ms=3000', { timeout = 0.3 }))");
  fnw(&s, "hang", 0, "", "timeout = 1,", "  return show(http.get(B .. '/hang'))");
  fnw(&s, "many", 0, "", "",
      "  for i = 1, 50 do\n"
      "    local r, err = http.get(B .. '/hello')\n"
      "    if not r then return 'fail ' .. i .. ': ' .. tostring(err) end\n"
      "  end\n"
      "  return show(http.get(B .. '/hello'))");
  fnw(&s, "pcallco", 0, "", "",
      "  local ok, r = pcall(http.get, B .. '/hello')\n"
      "  local co = coroutine.wrap(function()\n"
      "    local r2 = assert(http.get(B .. '/chunked?n=2'))\n"
      "    coroutine.yield(r2.body)\n"
      "    return assert(http.get(B .. '/hello')).body\n"
      "  end)\n"
      "  local a = co()\n"
      "  local b = co()\n"
      "  local xok, x = xpcall(function() return http.get(B .. '/status/201') end, tostring)\n"
      "  return table.concat({ tostring(ok), r.body, a, b, tostring(xok), x.status }, '|')");
  fnw(&s, "atinit", 0, "local iok, ierr = pcall(http.get, B .. '/hello')", "",
      "  return tostring(iok) .. '|' .. tostring(ierr)");
  fnw(&s, "atinit_raw", 0, "http.get(B .. '/hello')", "", "  return 'unreachable'");
  fnw(&s, "badargs", 0, "", "",
      "  local out = {}\n"
      "  local function e(...) local ok, err = pcall(...); out[#out + 1] = tostring(ok) .. ' ' .. tostring(err) end\n"
      "  e(http.request, B .. '/hello')\n"
      "  e(http.request, { url = 5 })\n"
      "  e(http.request, { url = 'ftp://127.0.0.1:' .. UP .. '/hello' })\n"
      "  e(http.request, { url = B .. '/hello', headers = { ['x-a'] = 'a\\r\\nb' } })\n"
      "  e(http.request, { url = B .. '/hello', headers = { ['x-a'] = 'a\\nb' } })\n"
      "  e(http.get, 5)\n"
      "  e(http.request, { url = B .. '/hello', method = 'GET /x HTTP/1.1\\r\\nX: y' })\n"
      "  e(http.request, { url = B .. '/hello', headers = { ['Content-Length'] = '5' } })\n"
      "  e(http.request, { url = B .. '/hello', headers = { ['a b'] = '5' } })\n"
      "  return table.concat(out, '\\n')");
  fnw(&s, "meter", 0, "", "",
      "  local a = assert(http.get(B .. '/slow?ms=100'))\n"
      "  local b = assert(http.post(B .. '/status/201', 'abc'))\n"
      "  local c, err = http.get(CLOSED .. '/x')\n"
      "  return a.body .. '|' .. b.status .. '|' .. tostring(c) .. '|' .. err");
  fnw(&s, "ua", 0, "", "", "  return assert(http.get(B .. '/echo')).json().headers['user-agent']");
  srv_write(&s, "plain.lua", "return function() return 'plain' end\n");
  srv_start(&s, "--workers 1");
  http_resp_t r;

  /* Keep-alive: 10 requests in one invocation, then 10 invocations of one request each, all on
   * one connection of the one worker's (our two /conns connections are counted too). */
  int c0 = up_conns();
  http_expect_body(s.port, "/ka?n=10", "ok 10");
  for (int i = 0; i < 10; i++) http_expect_body(s.port, "/ka?n=1", "ok 1");
  int c1 = up_conns();
  if (c1 - c0 != 2) fail_msg("crescent opened %d connections for 20 sequential requests, not 1", c1 - c0 - 1);

  expect_fmt(&s, "/get", "200|hello|text/plain|5|http://127.0.0.1:%d/hello|0", up.port);
  expect_fmt(&s, "/post", "200|POST|/echo|x=1|application/json|{\"a\":1}|1|v v|127.0.0.1:%d|7", up.port);
  http_expect_body(s.port, "/verbs",
                   "POST raw text text/plain\n"
                   "PUT {\"k\":\"v\"} application/json\n"
                   "DELETE id=7 []\n"
                   "GET text/x\n"
                   "PATCH p\n"
                   "HEAD 200 [] 5\n"
                   "nil string");
  http_expect_body(s.port, "/chunked", "200|chunk0chunk1chunk2chunk3chunk4");
  expect_fmt(&s, "/redir",
             "200 3 http://127.0.0.1:%d/hello hello\n"
             "302 0 /hello redirect\n"
             "too many redirects\n"
             "200 2 http://127.0.0.1:%d/hello hello\n"
             "too many redirects\n"
             "200 1 http://127.0.0.1:%d/hello hello\n"
             "egress: 127.0.0.2:%d is not in the function's egress list\n"
             "bad redirect: only http and https locations are followed\n"
             "303 1 GET []\n"
             "307 1 POST [abc]",
             up.port, up.port, up.port, up.port);
  http_expect_body(s.port, "/status", "404|status 404\n500|status 500\n204|\n200|closing\n200|hello");
  http_expect_body(s.port, "/big",
                   "response too large\nresponse too large\n200 1048576\n200 1048576\n"
                   "response too large\n200 2000\nresponse too large\n200 5");
  http_expect_body(s.port, "/refused", "nil|connection refused");
  http_expect_body(s.port, "/truncated", "nil|connection closed");

  /* An http timeout ends the call, not the invocation, and the worker goes on. */
  long long took = timed_get(&s, "/tmo", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "nil|timeout");
  http_free(&r);
  if (took < 280 || took > 2000) fail_msg("timeout = 0.3 took %lld ms", took);
  expect_fmt(&s, "/get", "200|hello|text/plain|5|http://127.0.0.1:%d/hello|0", up.port);

  /* No http timeout: the request's default is the invocation's time left less a margin (a tenth
   * of it, at most 50 ms), so the function gets "timeout" and still answers, before its own 1 s. */
  took = timed_get(&s, "/hang", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "nil|timeout");
  http_free(&r);
  if (took < 900 || took > 2000) fail_msg("/hang took %lld ms", took);
  assert_int_equal(srv_log_wait(&s, 1, 3000, "\"msg\":\"report\"", "\"function\":\"hang\"", "\"status\":200", NULL), 1);
  expect_fmt(&s, "/get", "200|hello|text/plain|5|http://127.0.0.1:%d/hello|0", up.port);

  /* 50 requests per invocation; the next invocation has its own 50. */
  http_expect_body(s.port, "/many", "nil|too many requests (50 per invocation)");
  http_expect_body(s.port, "/many", "nil|too many requests (50 per invocation)");

  http_expect_body(s.port, "/pcallco", "true|hello|chunk0chunk1|hello|true|201");

  /* At init (a module's top level) there is no invocation to make a request for: it raises, and
   * unprotected, the function fails to load. */
  http_expect_body(s.port, "/atinit",
                   "false|crescent.http calls are only possible inside a handler, not during init (module top level)");
  http_get(s.port, "/atinit_raw", &r);
  assert_int_equal(r.status, 503);
  if (!strstr(r.body, "\"error\":\"function failed to load\"")) fail_msg("/atinit_raw: %s", r.body);
  http_free(&r);
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "\"function\":\"atinit_raw\"",
                                 "atinit_raw.lua:5: crescent.http calls are only possible inside a handler", NULL),
                   1);

  /* Bad arguments raise, naming the call and the argument (as the other modules do: 'invoke.call'). */
  http_expect_body(s.port, "/badargs",
                   "false bad argument #1 to 'http.request' (table of options expected, got string)\n"
                   "false bad argument #1 to 'http.request' (url: string expected, got number)\n"
                   "false bad argument #1 to 'http.request' (url: must start with http:// or https://)\n"
                   "false bad argument #1 to 'http.request' (headers: the value of 'x-a' holds a control character (CR, LF, NUL, ...))\n"
                   "false bad argument #1 to 'http.request' (headers: the value of 'x-a' holds a control character (CR, LF, NUL, ...))\n"
                   "false bad argument #1 to 'http.get' (url: string expected, got number)\n"
                   "false bad argument #1 to 'http.request' (method: an upper-case token like \"GET\" expected)\n"
                   "false bad argument #1 to 'http.request' (headers: 'Content-Length' is set by crescent.http)\n"
                   "false bad argument #1 to 'http.request' (headers: bad name 'a b')");

  /* The request limit: 50 made per invocation (x2 invocations), the refused 51st is no request. */
  wait_api_http(&s, "many", "\"http\":{\"requests\":100,\"errors\":0,");

  char ua[128];
  http_get(s.port, "/ua", &r);
  assert_int_equal(r.status, 200);
  if (strncmp(r.body, "crescent/", 9)) fail_msg("User-Agent: %s", r.body);
  snprintf(ua, sizeof ua, "%s", r.body);
  http_free(&r);

  /* Meters: 3 requests (1 failed) in one invocation, in its report line and /_/api/functions. */
  http_get(s.port, "/meter", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "slow|201|nil|connection refused");
  char rid[160];
  http_request_id(&r, rid, sizeof rid);
  http_free(&r);
  char *rep = srv_report_of(&s, rid);
  /* Bytes on the wire. In: the upstream's two answers, which it writes without Date or Server:
   * "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nslow" (68) and
   * "HTTP/1.1 201 Created\r\n...Content-Length: 10\r\n\r\nstatus 201" (80). Out: two request lines,
   * Host, User-Agent and the invocation's traceparent each, POST's Content-Length and body; the
   * refused one sent nothing. */
  size_t hostline = strlen("Host: 127.0.0.1:\r\n") + (size_t)snprintf(NULL, 0, "%d", up.port);
  size_t ualine = strlen("User-Agent: \r\n") + strlen(ua);
  size_t tpline = strlen("traceparent: \r\n") + 55;
  size_t want_out = strlen("GET /slow?ms=100 HTTP/1.1\r\n") + hostline + ualine + tpline + 2 +
                    strlen("POST /status/201 HTTP/1.1\r\n") + hostline + ualine + tpline + strlen("Content-Length: 3\r\n") + 2 + 3;
  char want[256];
  snprintf(want, sizeof want, "\"httpRequests\":3,\"httpErrors\":1,\"httpBytesOut\":%zu,\"httpBytesIn\":148,\"httpTime\":",
           want_out);
  if (!strstr(rep, want)) fail_msg("want %s in the report: %s", want, rep);
  double t = json_num(rep, "httpTime"), d = json_num(rep, "duration");
  if (t < 100 || t > d) fail_msg("httpTime %.3f (the upstream slept 100 ms, the invocation lasted %.3f)", t, d);
  free(rep);
  snprintf(want, sizeof want, "\"http\":{\"requests\":3,\"errors\":1,\"bytesOut\":%zu,\"bytesIn\":148,\"timeMsSum\":",
           want_out);
  wait_api_http(&s, "meter", want);
  http_get(s.port, "/plain", &r);
  http_request_id(&r, rid, sizeof rid);
  http_free(&r);
  rep = srv_report_of(&s, rid);
  if (strstr(rep, "httpRequests")) fail_msg("a function without requests: %s", rep);
  free(rep);

  /* Last, so that a failure here hides nothing above: rawHeaders as received, names' case kept. */
  http_expect_body(s.port, "/hdrs",
                   "one, two|a=1, b=2|text/plain|"
                   "Content-Type,text/plain,Set-Cookie,a=1,X-Multi,one,Set-Cookie,b=2,X-Multi,two,Content-Length,7");
  srv_expect_errors(&s, srv_log_count(&s, "\"level\":\"error\"", NULL));
  srv_stop(&s);
}

/* --- the egress policy ----------------------------------------------------------------------- */

static void egress(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  fnw(&s, "lb", 1, "", "", "  return show(http.get(B .. '/hello'))");
  fnw(&s, "ll", 1, "", "", "  return show(http.get('http://169.254.169.254/latest/meta-data/', { timeout = 1 }))");
  fnw(&s, "lh", 1, "", "", "  return show(http.get('http://localhost:' .. UP .. '/hello'))");
  fnw(&s, "pv", 1, "", "",
      "  return show(http.get('http://10.1.2.3:8080/', { timeout = 1 })) .. '\\n' ..\n"
      "         show(http.get('http://192.168.0.1/', { timeout = 1 }))");
  fnw(&s, "lit", 1, "", "",
      "  return show(http.get('http://0.0.0.0:' .. UP .. '/hello')) .. '\\n' ..\n"
      "         show(http.get('http://[::1]:' .. UP .. '/hello')) .. '\\n' ..\n"
      "         show(http.get('http://[::ffff:127.0.0.1]:' .. UP .. '/hello'))");
  fnw(&s, "dns", 1, "", "", "  return show(http.get('http://nonexistent.invalid/', { timeout = 2 }))");
  fnw(&s, "notlisted", 0, "", "", "  return show(http.get('http://127.0.0.1:1/hello'))");
  srv_start(&s, "--workers 1");
  expect_fmt(&s, "/lb", "nil|egress: 127.0.0.1:%d is not allowed (loopback)", up.port);
  http_resp_t r;
  long long took = timed_get(&s, "/ll", &r);
  assert_string_equal(r.body, "nil|egress: 169.254.169.254:80 is not allowed (link-local)");
  http_free(&r);
  if (took > 500) fail_msg("the link-local refusal took %lld ms: it must come before any connect", took);
  /* localhost is resolved, and its address checked: a name is no way around the policy. */
  expect_fmt(&s, "/lh", "nil|egress: 127.0.0.1:%d is not allowed (loopback)", up.port);
  http_expect_body(s.port, "/pv",
                   "nil|egress: 10.1.2.3:8080 is not allowed (private)\n"
                   "nil|egress: 192.168.0.1:80 is not allowed (private)");
  expect_fmt(&s, "/lit",
             "nil|egress: 0.0.0.0:%d is not allowed (unspecified)\n"
             "nil|egress: [::1]:%d is not allowed (loopback)\n"
             "nil|egress: [::ffff:127.0.0.1]:%d is not allowed (loopback)",
             up.port, up.port, up.port);
  http_get(s.port, "/dns", &r);
  if (strncmp(r.body, "nil|dns: nonexistent.invalid: ", 30)) fail_msg("/dns: %s", r.body);
  http_free(&r);
  http_expect_body(s.port, "/notlisted", "nil|egress: 127.0.0.1:1 is not in the function's egress list");
  srv_expect_errors(&s, srv_log_count(&s, "\"level\":\"error\"", NULL));
  srv_stop(&s);

  /* --egress-private: loopback is allowed without a list, but not crescent's own listener. */
  srv_init(&s);
  fnw(&s, "lb", 1, "", "",
      "  return show(http.get(B .. '/hello')) .. '\\n' .. show(http.get(CLOSED .. '/hello'))");
  fnw(&s, "own", 1, "", "",
      "  return show(http.get('http://127.0.0.1:' .. event.query.port .. '/lb')) .. '\\n' ..\n"
      "         show(http.get('http://localhost:' .. event.query.port .. '/lb'))");
  srv_start(&s, "--workers 1 --egress-private");
  http_expect_body(s.port, "/lb", "200|hello\nnil|connection refused");
  char path[64];
  snprintf(path, sizeof path, "/own?port=%d", s.port);
  expect_fmt(&s, path,
             "nil|egress: 127.0.0.1:%d is crescent's own listener\n"
             "nil|egress: 127.0.0.1:%d is crescent's own listener",
             s.port, s.port);
  /* Listed by address and port, its own listener is allowed (written now that the port is known). */
  char src[512];
  snprintf(src, sizeof src,
           "local http = require 'crescent.http'\n"
           "return { egress = { '127.0.0.1:%d' }, handler = function()\n"
           "  local r, err = http.get('http://127.0.0.1:%d/lb')\n"
           "  return r and (r.status .. '|' .. r.body) or err\n"
           "end }\n",
           s.port, s.port);
  srv_write(&s, "ownlisted.lua", src);
  wait_routed(&s, "/ownlisted");
  http_expect_body(s.port, "/ownlisted", "200|200|hello\nnil|connection refused");
  srv_expect_errors(&s, srv_log_count(&s, "\"level\":\"error\"", NULL));
  srv_stop(&s);
}

/* --- TLS ------------------------------------------------------------------------------------- */

static void tls(void **state) {
  (void)state;
  char ca[128];
  snprintf(ca, sizeof ca, "%s/ca.pem", updir);
  /* Trusted: the test CA is OpenSSL's default certificate file for this server. */
  srv_t s;
  srv_init(&s);
  fnw(&s, "ok", 0, "", "",
      "  return show(http.get(BT .. '/hello')) .. '\\n' .. show(http.get('https://localhost:' .. TLS .. '/hello'))");
  fnw(&s, "wronghost", 0, "", "", "  return show(http.get('https://127.0.0.1:' .. WRONG .. '/hello'))");
  setenv("SSL_CERT_FILE", ca, 1);
  srv_start(&s, "--workers 1");
  unsetenv("SSL_CERT_FILE");
  http_expect_body(s.port, "/ok", "200|hello\n200|hello");
  http_expect_body(s.port, "/wronghost", "nil|tls: certificate verify failed");
  srv_expect_errors(&s, srv_log_count(&s, "\"level\":\"error\"", NULL));
  srv_stop(&s);

  /* Untrusted (the system's CAs only), and insecure = true. */
  srv_init(&s);
  fnw(&s, "untrusted", 0, "", "",
      "  return show(http.get(BT .. '/hello')) .. '\\n' .. show(http.get('https://localhost:' .. TLS .. '/hello'))");
  fnw(&s, "insecure", 0, "", "",
      "  return show(http.get(BT .. '/hello', { insecure = true })) .. '\\n' ..\n"
      "         show(http.get('https://127.0.0.1:' .. WRONG .. '/hello', { insecure = true }))");
  srv_start(&s, "--workers 1");
  http_expect_body(s.port, "/untrusted", "nil|tls: certificate verify failed\nnil|tls: certificate verify failed");
  http_expect_body(s.port, "/insecure", "200|hello\n200|hello");
  srv_expect_errors(&s, srv_log_count(&s, "\"level\":\"error\"", NULL));
  srv_stop(&s);
}

/* --- 200 concurrent invocations on one worker ------------------------------------------------ */

#define NCONC 200

static void concurrent(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  fnw(&s, "slowc", 0, "", "concurrency = 400,", "  return show(http.get(B .. '/slow?ms=1500'))");
  srv_write(&s, "ping.lua", "return function() return 'pong' end\n");
  srv_start(&s, "--workers 1");
  http_expect_body(s.port, "/ping", "pong");
  static int fds[NCONC];
  for (int i = 0; i < NCONC; i++) {
    fds[i] = http_connect(s.port);
    if (fds[i] < 0) fail_msg("connection %d refused", i);
  }
  long long t0 = now_ms();
  for (int i = 0; i < NCONC; i++)
    http_sends(fds[i], "GET /slowc HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  /* While all 200 wait on the upstream, the worker answers others: /ping is answered before any
   * of them (each holds 1.5 s at the upstream; a worker that waited on one would answer /ping
   * after it). No clock in the assertion: the order of answers shows it. */
  sleep_ms(100);
  http_resp_t r;
  timed_get(&s, "/ping", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "pong");
  http_free(&r);
  int answered = 0;
  for (int i = 0; i < NCONC; i++) {
    struct pollfd p = {.fd = fds[i], .events = POLLIN};
    answered += poll(&p, 1, 0) == 1;
  }
  if (answered) fail_msg("%d of the %d invocations answered before /ping", answered, NCONC);
  for (int i = 0; i < NCONC; i++) {
    if (http_read(fds[i], &r, 0, 20000) != 0) fail_msg("invocation %d: no answer", i);
    if (r.status != 200 || strcmp(r.body, "200|slow")) fail_msg("invocation %d: %d %s", i, r.status, r.body);
    http_free(&r);
    http_close(fds[i]);
  }
  long long all = now_ms() - t0;
  /* Serially, 200 x 1.5 s would be five minutes; at once, 1.5 s and some. */
  if (all < 1500 || all > 60000) fail_msg("%d concurrent invocations took %lld ms", NCONC, all);
  /* Idle kept connections (up to 32 to this origin) do not hold a stopping worker: nothing is in
   * flight, so it stops as a worker that made no requests does (about a second here), not when
   * the pool's 15 s idle timer runs out. */
  srv_expect_errors(&s, srv_log_count(&s, "\"level\":\"error\"", NULL));
  long long t_stop = now_ms();
  assert_int_equal(srv_stop(&s), 0);
  if (now_ms() - t_stop > 5000) fail_msg("crescent took %lld ms to stop with idle outbound connections", now_ms() - t_stop);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(requests),
      cmocka_unit_test(egress),
      cmocka_unit_test(tls),
      cmocka_unit_test(concurrent),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
