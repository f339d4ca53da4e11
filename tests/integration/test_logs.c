/* test_logs.c - logs that last and can be followed (README "Operating crescent"):
 * the streams in Redis, /_/api/logs and its cursor, the SSE tail, `crescent logs`,
 * the access log, traceparent through invoke.call and crescent.http, and Redis
 * away (stdout keeps every line, the drop is counted). */
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#ifndef CR_UPSTREAM_PY
#error "CR_UPSTREAM_PY (the path of upstream.py) comes from tests/integration/CMakeLists.txt"
#endif

/* GET /say?m=MSG&l=LEVEL: one ctx.log line at that level with a field n = 1. */
static const char say_fn[] =
    "return {\n"
    "  routes = { 'GET /say/' .. 'NAME' },\n"
    "  handler = function(event, ctx)\n"
    "    local q = event.query or {}\n"
    "    ctx.log[q.l or 'info'](q.m or 'hello', { n = 1 })\n"
    "    return { ok = true }\n"
    "  end,\n"
    "}\n";

static void write_say(srv_t *s, const char *name) {
  char src[sizeof say_fn + 64], rel[80];
  const char *p = strstr(say_fn, "NAME");
  snprintf(src, sizeof src, "%.*s%s%s", (int)(p - say_fn), say_fn, name, p + 4);
  snprintf(rel, sizeof rel, "%s.lua", name);
  srv_write(s, rel, src);
}

/* GET path; must answer 200; its request id into rid (may be NULL). */
static void get_ok(int port, const char *path, char *rid, size_t n) {
  http_resp_t r;
  http_get(port, path, &r);
  if (r.status != 200) fail_msg("GET %s: %d %s", path, r.status, r.body);
  if (rid) http_request_id(&r, rid, n);
  http_free(&r);
}

/* Waits until the stream key holds at least want entries (at most 5 s); returns XLEN. */
static long wait_xlen_at_least(srv_t *s, const char *key, long want) {
  long n = 0;
  for (long long until = now_ms() + 5000; now_ms() < until; sleep_ms(20)) {
    n = (long)srv_rcli_ll(s, "XLEN", key, NULL);
    if (n >= want) return n;
  }
  return n;
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

/* --- the streams ---------------------------------------------------------------------------------- */

static void test_streams_per_function(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_say(&s, "alpha");
  write_say(&s, "beta");
  srv_start(&s, "--workers 1");
  char ra[160], rb[160];
  get_ok(s.port, "/say/alpha?m=from-alpha", ra, sizeof ra);
  get_ok(s.port, "/say/beta?m=from-beta&l=warn", rb, sizeof rb);
  http_expect(s.port, "/nothing-here", 404, NULL);
  /* Each function's stream: its log line and its report, nothing of the other. */
  assert_int_equal(wait_xlen_at_least(&s, "cr:logs:fn:alpha", 2), 2);
  assert_int_equal(wait_xlen_at_least(&s, "cr:logs:fn:beta", 2), 2);
  char *a = srv_rcli(&s, "XRANGE", "cr:logs:fn:alpha", "-", "+", NULL);
  assert_non_null(strstr(a, "from-alpha"));
  assert_null(strstr(a, "from-beta"));
  assert_non_null(strstr(a, ra));
  free(a);
  /* The entry's fields, exactly: l (level), r (request id), t (trace id), d (the stdout line). */
  char *f = srv_rcli(&s, "XREVRANGE", "cr:logs:fn:beta", "+", "-", "COUNT", "2", NULL);
  char *lines[32];
  int nf = 0;
  for (char *tok = strtok(f, "\n"); tok && nf < 32; tok = strtok(NULL, "\n")) lines[nf++] = tok;
  /* two entries of id, l, v, r, v, t, v, d, v */
  assert_int_equal(nf, 18);
  int warn_seen = 0;
  for (int e = 0; e < 2; e++) {
    char **x = lines + e * 9;
    assert_string_equal(x[1], "l");
    assert_string_equal(x[3], "r");
    assert_string_equal(x[4], rb);
    assert_string_equal(x[5], "t");
    assert_int_equal(strlen(x[6]), 32);
    assert_string_equal(x[7], "d");
    /* d is the line stdout has, byte for byte */
    assert_int_equal(srv_log_count(&s, x[8], NULL), 1);
    if (strstr(x[8], "\"msg\":\"from-beta\"")) {
      assert_string_equal(x[2], "2");
      warn_seen = 1;
      char want[80];
      snprintf(want, sizeof want, "\"trace\":\"%s\"", x[6]);
      assert_non_null(strstr(x[8], want));
    } else {
      assert_non_null(strstr(x[8], "\"msg\":\"report\""));
      assert_string_equal(x[2], "1");
    }
  }
  assert_true(warn_seen);
  free(f);
  /* The platform's stream has the access line of the 404, the set names all three. */
  wait_xlen_at_least(&s, "cr:logs:platform", 1);
  char *p = srv_rcli(&s, "XRANGE", "cr:logs:platform", "-", "+", NULL);
  assert_non_null(strstr(p, "\"msg\":\"access\""));
  assert_non_null(strstr(p, "\"path\":\"/nothing-here\""));
  free(p);
  assert_int_equal(srv_rcli_ll(&s, "SCARD", "cr:logs:streams", NULL), 3);
  assert_int_equal(srv_rcli_ll(&s, "SISMEMBER", "cr:logs:streams", "cr:logs:fn:alpha", NULL), 1);
  /* Every stream expires after --log-max-age without a line (7 days by default). */
  long long ttl = srv_rcli_ll(&s, "TTL", "cr:logs:fn:alpha", NULL);
  assert_true(ttl > 7 * 86400 - 60 && ttl <= 7 * 86400);
  srv_stop(&s);
}

static void test_retention_by_count(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "many.lua",
            "return { routes = { 'GET /many' }, handler = function(event, ctx)\n"
            "  for i = 1, 500 do ctx.log.info('line ' .. i) end\n"
            "  return { ok = true }\n"
            "end }\n");
  srv_start(&s, "--workers 1 --log-retention 50 --log-max-age 1h");
  for (int i = 0; i < 4; i++) get_ok(s.port, "/many", NULL, 0);
  /* 2004 lines written (4 reports): the last one is there, and the stream is capped. MAXLEN ~
   * trims whole nodes (100 entries each, Redis' stream-node-max-entries), so at most 50 + 100 stay. */
  long long until = now_ms() + 5000;
  char *last = NULL;
  while (now_ms() < until) {
    free(last);
    last = srv_rcli(&s, "XREVRANGE", "cr:logs:fn:many", "+", "-", "COUNT", "1", NULL);
    if (strstr(last, "\"msg\":\"report\"") && srv_log_count(&s, "\"msg\":\"report\"", NULL) == 4) break;
    sleep_ms(20);
  }
  free(last);
  sleep_ms(200);
  long n = (long)srv_rcli_ll(&s, "XLEN", "cr:logs:fn:many", NULL);
  assert_true(n >= 50);
  assert_true(n <= 150);
  /* The oldest kept is from the last request: the first 1850 lines are gone. */
  char *first = srv_rcli(&s, "XRANGE", "cr:logs:fn:many", "-", "+", "COUNT", "1", NULL);
  assert_null(strstr(first, "\"line 1\""));
  free(first);
  long long ttl = srv_rcli_ll(&s, "TTL", "cr:logs:fn:many", NULL);
  assert_true(ttl > 3500 && ttl <= 3600);
  srv_stop(&s);
}

/* --- the query API --------------------------------------------------------------------------------- */

/* The "msg" values of a /_/api/logs answer, in order, joined by '|'. */
static void msgs_of(const char *json, char *out, size_t n) {
  out[0] = '\0';
  size_t o = 0;
  for (const char *p = json; (p = strstr(p, "\"msg\":\"")); ) {
    p += 7;
    const char *e = strchr(p, '"');
    if (!e) break;
    o += (size_t)snprintf(out + o, n - o, "%s%.*s", o ? "|" : "", (int)(e - p), p);
    if (o >= n) break;
    p = e;
  }
}

static void api_get(int port, const char *path, http_resp_t *r) {
  http_get(port, path, r);
  if (r->status != 200) fail_msg("GET %s: %d %s", path, r->status, r->body);
}

static void test_query_filters_and_cursor(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_say(&s, "q1");
  write_say(&s, "q2");
  srv_start(&s, "--workers 2");
  char rid[160], rid_warn[160];
  /* Apart by more than a batch (50 ms): two workers' lines of one stream are ordered by their
   * time only when each came before the other's later ones (logstore.h). */
  get_ok(s.port, "/say/q1?m=m1", rid, sizeof rid);
  sleep_ms(150);
  get_ok(s.port, "/say/q1?m=m2&l=warn", rid_warn, sizeof rid_warn);
  sleep_ms(150);
  get_ok(s.port, "/say/q2?m=m3&l=error", NULL, 0);
  srv_expect_errors(&s, 1);
  sleep_ms(150);
  get_ok(s.port, "/say/q1?m=needle-m4&l=debug", NULL, 0);
  wait_xlen_at_least(&s, "cr:logs:fn:q1", 6);
  wait_xlen_at_least(&s, "cr:logs:fn:q2", 2);
  http_resp_t r;
  char m[2048];
  /* One function, newest first: its 3 ctx.log lines and 3 reports (debug lines are not
   * written at the default level: m4's line is not there, its report is). */
  api_get(s.port, "/_/api/logs?function=q1", &r);
  msgs_of(r.body, m, sizeof m);
  assert_string_equal(m, "report|report|m2|report|m1");
  assert_non_null(strstr(r.body, "\"next\":null"));
  assert_non_null(strstr(r.body, "\"dropped\":0"));
  assert_non_null(strstr(r.body, "\"stream\":\"q1\""));
  http_free(&r);
  /* level: warn and above, across every stream */
  api_get(s.port, "/_/api/logs?level=warn", &r);
  msgs_of(r.body, m, sizeof m);
  assert_string_equal(m, "m3|m2");
  http_free(&r);
  /* requestId */
  char path[800];
  snprintf(path, sizeof path, "/_/api/logs?requestId=%s", rid_warn);
  api_get(s.port, path, &r);
  msgs_of(r.body, m, sizeof m);
  assert_string_equal(m, "report|m2");
  http_free(&r);
  /* q: a text the line holds */
  api_get(s.port, "/_/api/logs?q=%22m3%22", &r);
  msgs_of(r.body, m, sizeof m);
  assert_string_equal(m, "m3");
  http_free(&r);
  /* until in the past: nothing; since a minute ago: everything of q2 */
  api_get(s.port, "/_/api/logs?function=q2&until=1000", &r);
  msgs_of(r.body, m, sizeof m);
  assert_string_equal(m, "");
  http_free(&r);
  api_get(s.port, "/_/api/logs?function=q2&since=1m", &r);
  msgs_of(r.body, m, sizeof m);
  assert_string_equal(m, "report|m3");
  http_free(&r);
  /* Paging over every function stream by 2: the pages, joined, are the whole list, in order. */
  api_get(s.port, "/_/api/logs?q=%22function%22", &r);
  char whole[2048];
  msgs_of(r.body, whole, sizeof whole);
  assert_int_equal(count(whole, "|") + 1, 7); /* q1: m1, m2 and 3 reports; q2: m3 and its report */
  http_free(&r);
  char joined[2048] = "", cursor[600] = "";
  int pages = 0;
  for (;;) {
    if (cursor[0]) snprintf(path, sizeof path, "/_/api/logs?q=%%22function%%22&limit=2&cursor=%s", cursor);
    else snprintf(path, sizeof path, "/_/api/logs?q=%%22function%%22&limit=2");
    api_get(s.port, path, &r);
    pages++;
    msgs_of(r.body, m, sizeof m);
    if (m[0]) snprintf(joined + strlen(joined), sizeof joined - strlen(joined), "%s%s", joined[0] ? "|" : "", m);
    const char *nx = strstr(r.body, "\"next\":");
    assert_non_null(nx);
    nx += 7;
    if (strncmp(nx, "null", 4) == 0) {
      http_free(&r);
      break;
    }
    const char *e = strchr(nx + 1, '"');
    snprintf(cursor, sizeof cursor, "%.*s", (int)(e - nx - 1), nx + 1);
    http_free(&r);
    assert_true(pages < 10);
  }
  assert_int_equal(pages, 4); /* 2 + 2 + 2 + 1 */
  assert_string_equal(joined, whole);
  /* Bad parameters */
  http_expect(s.port, "/_/api/logs?level=loud", 400, NULL);
  http_expect(s.port, "/_/api/logs?limit=0", 400, NULL);
  http_expect(s.port, "/_/api/logs?cursor=nope", 400, NULL);
  http_expect(s.port, "/_/api/logs?since=yesterday", 400, NULL);
  srv_stop(&s);
}

/* --- the SSE tail ----------------------------------------------------------------------------------- */

/* Reads from fd into buf (appending) until it holds needle or timeout; returns 1 when found. */
static int read_until(int fd, char *buf, size_t cap, size_t *len, const char *needle, int timeout_ms) {
  long long until = now_ms() + timeout_ms;
  while (!strstr(buf, needle)) {
    long long left = until - now_ms();
    if (left <= 0) return 0;
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, (int)left) != 1) return 0;
    ssize_t n = recv(fd, buf + *len, cap - *len - 1, 0);
    if (n <= 0) return 0;
    *len += (size_t)n;
    buf[*len] = '\0';
  }
  return 1;
}

static int open_tail(int port, const char *query, const char *extra, char *buf, size_t cap, size_t *len) {
  int fd = http_connect(port);
  char req[600];
  snprintf(req, sizeof req, "GET /_/api/logs/tail%s HTTP/1.1\r\nHost: x\r\n%s\r\n", query, extra ? extra : "");
  http_sends(fd, req);
  *len = 0;
  buf[0] = '\0';
  assert_true(read_until(fd, buf, cap, len, "retry: 1000\n\n", 5000));
  return fd;
}

static void test_tail_from_another_worker(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_say(&s, "tailed");
  write_say(&s, "other");
  srv_start(&s, "--workers 2");
  get_ok(s.port, "/say/tailed?m=before-the-tail", NULL, 0);
  wait_xlen_at_least(&s, "cr:logs:fn:tailed", 2);
  sleep_ms(400); /* a tail starts 250 ms back (logstore.h) */
  static char buf[1 << 18];
  size_t len;
  int fd = open_tail(s.port, "?function=tailed", NULL, buf, sizeof buf, &len);
  assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
  assert_non_null(strstr(buf, "Content-Type: text/event-stream\r\n"));
  /* The tail's worker: its request ids share their first 24 characters. */
  const char *xr = strstr(buf, "X-Request-Id: ");
  assert_non_null(xr);
  char prefix[25];
  snprintf(prefix, sizeof prefix, "%.24s", xr + 14);
  sleep_ms(400); /* the tail's first poll has set its place: "now" */
  /* Requests on new connections land on either worker: go on until one was served by the other. */
  int other = 0;
  for (int i = 0; i < 40 && !other; i++) {
    char rid[160], want[200];
    char path[80];
    snprintf(path, sizeof path, "/say/tailed?m=live-%d", i);
    get_ok(s.port, path, rid, sizeof rid);
    get_ok(s.port, "/say/other?m=not-tailed", NULL, 0);
    snprintf(want, sizeof want, "\"msg\":\"live-%d\",\"requestId\":\"%s\"", i, rid);
    assert_true(read_until(fd, buf, sizeof buf, &len, want, 5000));
    other = strncmp(rid, prefix, 24) != 0;
  }
  assert_true(other);
  /* Only that function's lines, none from before the tail, each with an id to resume from. */
  assert_null(strstr(buf, "before-the-tail"));
  assert_null(strstr(buf, "not-tailed"));
  const char *ev = strstr(buf, "\nid: ");
  assert_non_null(ev);
  char last_id[200];
  const char *lastev = NULL;
  for (const char *p = buf; (p = strstr(p, "\nid: ")); p++) lastev = p;
  const char *idend = strchr(lastev + 5, '\n');
  snprintf(last_id, sizeof last_id, "%.*s", (int)(idend - lastev - 5), lastev + 5);
  assert_non_null(strstr(last_id, ":tailed"));
  http_close(fd);
  /* Resuming after the last event seen: the lines made meanwhile, and nothing already seen. */
  get_ok(s.port, "/say/tailed?m=while-away", NULL, 0);
  sleep_ms(300);
  char hdr[300];
  snprintf(hdr, sizeof hdr, "Last-Event-ID: %s\r\n", last_id);
  fd = open_tail(s.port, "?function=tailed", hdr, buf, sizeof buf, &len);
  assert_true(read_until(fd, buf, sizeof buf, &len, "\"msg\":\"while-away\"", 5000));
  assert_null(strstr(buf, "\"msg\":\"live-"));
  http_close(fd);
  srv_stop(&s);
}

/* At most 16 tails per worker; HEAD starts none; a stopping server ends them (they do not hold
 * its drain). */
static void test_tail_bounds(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_start(&s, "--workers 1");
  static char buf[8192];
  size_t len;
  int fds[16];
  for (int i = 0; i < 16; i++) fds[i] = open_tail(s.port, "", NULL, buf, sizeof buf, &len);
  http_resp_t r;
  http_get(s.port, "/_/api/logs/tail", &r);
  assert_int_equal(r.status, 503);
  assert_non_null(strstr(r.body, "too many log tails"));
  http_free(&r);
  assert_int_equal(http_request(s.port, "HEAD", "/_/api/logs/tail", NULL, NULL, 0, &r), 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.head, "Content-Type: text/event-stream\r\n"));
  http_free(&r);
  /* One client goes: its place is free again. */
  http_close(fds[0]);
  sleep_ms(300);
  fds[0] = open_tail(s.port, "", NULL, buf, sizeof buf, &len); /* a 503 would not say "retry" */
  /* Bad parameters are refused before the stream starts */
  http_expect(s.port, "/_/api/logs/tail?level=loud", 400, NULL);
  long long t0 = now_ms();
  assert_int_equal(srv_stop(&s), 0);
  assert_true(now_ms() - t0 < 5000);
  for (int i = 0; i < 16; i++) {
    assert_int_equal(http_wait_closed(fds[i], 2000), 1);
    http_close(fds[i]);
  }
}

/* --- crescent logs ----------------------------------------------------------------------------------- */

/* Runs `crescent logs` args (NULL-terminated) with CRESCENT_URL set, stdout to a file; at most
 * timeout_ms (then SIGTERM). Returns the exit status (128+signal); *out the output (malloc'd). */
static int run_logs(srv_t *s, int timeout_ms, char **out, void (*meanwhile)(srv_t *), ...) {
  const char *bin = getenv("CRESCENT_BIN");
  char *argv[24];
  int argc = 0;
  argv[argc++] = (char *)bin;
  argv[argc++] = "logs";
  va_list ap;
  va_start(ap, meanwhile);
  const char *a;
  while (argc < 23 && (a = va_arg(ap, const char *))) argv[argc++] = (char *)a;
  va_end(ap);
  argv[argc] = NULL;
  char outp[400], url[64];
  snprintf(outp, sizeof outp, "%s/logs-out", s->root);
  snprintf(url, sizeof url, "http://127.0.0.1:%d", s->port);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0) _exit(127);
    dup2(o, STDOUT_FILENO);
    close(o);
    setenv("CRESCENT_URL", url, 1);
    execv(bin, argv);
    _exit(127);
  }
  if (meanwhile) meanwhile(s);
  int st = 0, code = -1;
  for (long long until = now_ms() + timeout_ms;; sleep_ms(10)) {
    if (waitpid(pid, &st, WNOHANG) == pid) {
      code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
    if (now_ms() > until) {
      kill(pid, SIGTERM);
      waitpid(pid, &st, 0);
      code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
  }
  *out = read_file(outp);
  return code;
}

static void follow_meanwhile(srv_t *s) {
  sleep_ms(800);
  get_ok(s->port, "/say/cli?m=followed-line", NULL, 0);
  sleep_ms(1200);
}

static void test_cli_logs(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_say(&s, "cli");
  srv_start(&s, "--workers 1");
  char rid[160];
  get_ok(s.port, "/say/cli?m=first", rid, sizeof rid);
  get_ok(s.port, "/say/cli?m=second&l=warn", NULL, 0);
  wait_xlen_at_least(&s, "cr:logs:fn:cli", 4);
  /* --json: the lines as stdout has them, oldest first */
  char *out;
  assert_int_equal(run_logs(&s, 10000, &out, NULL, "cli", "--json", NULL), 0);
  char *want = NULL;
  {
    char *log = srv_log(&s);
    size_t cap = strlen(log) + 1, o = 0;
    want = calloc(1, cap);
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n"))
      if (strstr(line, "\"function\":\"cli\"") && strstr(line, "\"requestId\"")) o += (size_t)snprintf(want + o, cap - o, "%s\n", line);
    free(log);
  }
  if (strcmp(out, want)) fail_msg("crescent logs --json printed:\n%s\nstdout has:\n%s", out, want);
  free(want);
  free(out);
  /* --level warn --json: the one warn line */
  assert_int_equal(run_logs(&s, 10000, &out, NULL, "cli", "--level", "warn", "--json", NULL), 0);
  assert_int_equal(count(out, "\n"), 1);
  assert_non_null(strstr(out, "\"msg\":\"second\""));
  free(out);
  /* Readable (not a terminal: no colour): TIME LEVEL FUNCTION MESSAGE key=value... */
  char arg[200];
  snprintf(arg, sizeof arg, "--request-id=%s", rid);
  assert_int_equal(run_logs(&s, 10000, &out, NULL, "cli", arg, NULL), 0);
  assert_int_equal(count(out, "\n"), 2);
  assert_null(strchr(out, '\033'));
  char *l1 = out, *l2 = strchr(out, '\n') + 1;
  assert_true(strlen(l1) > 25 && l1[4] == '-' && l1[10] == 'T' && l1[23] == 'Z' && l1[24] == ' ');
  assert_memory_equal(l1 + 25, "info  cli first ", 16);
  char kv[200];
  snprintf(kv, sizeof kv, " requestId=%s ", rid);
  assert_non_null(strstr(l1, kv));
  assert_non_null(strstr(l1, " n=1\n"));
  assert_memory_equal(l2 + 25, "info  cli report ", 17);
  assert_non_null(strstr(l2, " status=200 method=GET path=/say/cli"));
  free(out);
  /* -f: lines made after it started, as they come (a tail starts 250 ms back) */
  sleep_ms(400);
  int code = run_logs(&s, 10000, &out, follow_meanwhile, "cli", "-f", "--json", NULL);
  assert_int_equal(code, 128 + SIGTERM);
  if (count(out, "\n") != 2) fail_msg("crescent logs -f printed:\n%s", out);
  assert_non_null(strstr(out, "\"msg\":\"followed-line\""));
  assert_null(strstr(out, "\"msg\":\"first\""));
  free(out);
  /* -f --since: the recent lines, then the new ones, none twice (the tail starts after the
   * last one printed) */
  code = run_logs(&s, 10000, &out, follow_meanwhile, "cli", "-f", "--since", "1h", "--json", NULL);
  assert_int_equal(code, 128 + SIGTERM);
  if (count(out, "\n") != 8) fail_msg("crescent logs -f --since printed:\n%s", out);
  assert_int_equal(count(out, "\"msg\":\"followed-line\""), 2);
  assert_int_equal(count(out, "\"msg\":\"first\""), 1);
  assert_int_equal(count(out, "\"msg\":\"report\""), 4);
  free(out);
  /* A bad flag is a usage error */
  assert_int_equal(run_logs(&s, 10000, &out, NULL, "--level", "loud", NULL), 2);
  free(out);
  srv_stop(&s);
}

/* --- the access log ---------------------------------------------------------------------------------- */

static void test_access_log(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "limited.lua",
            "return { routes = { 'GET /limited' }, rateLimit = { rps = 1, burst = 1 },\n"
            "  handler = function() return { ok = true } end }\n");
  write_say(&s, "fine");
  srv_start(&s, "--workers 1 --admin-token sekrit");
  http_resp_t r;
  http_expect(s.port, "/no/such/path", 404, NULL);
  assert_int_equal(http_request(s.port, "POST", "/_/health", "User-Agent: probe/1\r\n", "", 0, &r), 0);
  assert_int_equal(r.status, 405);
  http_free(&r);
  http_expect(s.port, "/_/api/functions", 401, NULL);
  get_ok(s.port, "/limited", NULL, 0);
  http_expect(s.port, "/limited", 429, NULL);
  get_ok(s.port, "/say/fine", NULL, 0); /* 200: not in the default access log (errors) */
  assert_int_equal(http_request(s.port, "GET", "/_/api/functions", "Authorization: Bearer sekrit\r\n", NULL, 0, &r), 0);
  assert_int_equal(r.status, 200);
  http_free(&r);
  srv_log_wait(&s, 1, 5000, "\"msg\":\"access\"", "\"status\":429", NULL);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"access\"", NULL), 4);
  char *l = srv_log_line(&s, "\"msg\":\"access\"", "\"status\":405", NULL);
  assert_non_null(l);
  assert_non_null(strstr(l, "\"method\":\"POST\",\"path\":\"/_/health\",\"status\":405,\"bytes\":30,\"duration\":"));
  assert_non_null(strstr(l, "\"ip\":\"127.0.0.1\",\"userAgent\":\"probe/1\"}"));
  assert_non_null(strstr(l, "\"requestId\":\""));
  free(l);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"access\"", "\"path\":\"/no/such/path\"", "\"status\":404", NULL), 1);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"access\"", "\"path\":\"/_/api/functions\"", "\"status\":401", NULL), 1);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"access\"", "\"path\":\"/limited\"", "\"status\":429", NULL), 1);
  /* report lines name the method and path of HTTP invocations */
  assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", "\"function\":\"fine\"", "\"method\":\"GET\",\"path\":\"/say/fine\"", NULL), 1);
  srv_stop(&s);

  /* --access-log all: every answer, /_/api ones included; off: none. */
  srv_init(&s);
  write_say(&s, "fine");
  srv_start(&s, "--workers 1 --access-log all");
  get_ok(s.port, "/say/fine", NULL, 0);
  get_ok(s.port, "/_/api/functions", NULL, 0);
  srv_log_wait(&s, 2, 5000, "\"msg\":\"access\"", NULL);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"access\"", "\"path\":\"/say/fine\"", "\"status\":200", NULL), 1);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"access\"", "\"path\":\"/_/api/functions\"", "\"status\":200", NULL), 1);
  srv_stop(&s);
  srv_init(&s);
  srv_start(&s, "--workers 1 --access-log off");
  http_expect(s.port, "/no/such/path", 404, NULL);
  sleep_ms(200);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"access\"", NULL), 0);
  srv_stop(&s);
}

/* --- traceparent ------------------------------------------------------------------------------------- */

static pid_t up_pid = -1;
static int up_port;

static void up_start(const char *dir) {
  char pf[400], lg[400];
  snprintf(pf, sizeof pf, "%s/up.port", dir);
  snprintf(lg, sizeof lg, "%s/up.log", dir);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = open(lg, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) _exit(127);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
    char *argv[] = {"/usr/bin/python3", CR_UPSTREAM_PY, "--port-file", pf, NULL};
    execv(argv[0], argv);
    _exit(127);
  }
  up_pid = pid;
  for (long long until = now_ms() + 10000; now_ms() < until; sleep_ms(20)) {
    char *t = read_file(pf);
    up_port = atoi(t);
    free(t);
    if (up_port > 0) return;
  }
  fail_msg("upstream.py did not start");
}

static void up_stop(void) {
  if (up_pid <= 0) return;
  kill(up_pid, SIGTERM);
  waitpid(up_pid, NULL, 0);
  up_pid = -1;
}

#define TRACE "4bf92f3577b34da6a3ce929d0e0e4736"

static void test_traceparent(void **state) {
  (void)state;
  char dir[] = "/tmp/cr-logs-up-XXXXXX";
  assert_non_null(mkdtemp(dir));
  up_start(dir);
  srv_t s;
  srv_init(&s);
  char front[1200];
  snprintf(front, sizeof front,
           "local invoke = require 'crescent.invoke'\n"
           "local http = require 'crescent.http'\n"
           "return { routes = { 'GET /front' }, egress = { '127.0.0.1' },\n"
           "  handler = function(event, ctx)\n"
           "    ctx.log.info('front here')\n"
           "    local r, err = invoke.call('back', {})\n"
           "    assert(invoke.async('later', {}))\n"
           "    local res, herr = http.request({ url = 'http://127.0.0.1:%d/echo' })\n"
           "    if not res then error(herr) end\n"
           "    return { status = 200, headers = { ['content-type'] = 'application/json' }, body = res.body }\n"
           "  end }\n",
           up_port);
  srv_write(&s, "front.lua", front);
  srv_write(&s, "back.lua", "return { handler = function(event, ctx) ctx.log.info('back here') return 1 end }\n");
  srv_write(&s, "later.lua", "return { handler = function(event, ctx) ctx.log.info('later here') end }\n");
  srv_start(&s, "--workers 1");
  http_resp_t r;
  assert_int_equal(http_request(s.port, "GET", "/front", "traceparent: 00-" TRACE "-00f067aa0ba902b7-01\r\n", NULL, 0, &r), 0);
  assert_int_equal(r.status, 200);
  char rid[160];
  http_request_id(&r, rid, sizeof rid);
  /* echoed: the same trace, the invocation's own span */
  const char *tp = http_header(&r, "traceparent");
  assert_non_null(tp);
  assert_int_equal(strlen(tp), 55);
  assert_memory_equal(tp, "00-" TRACE "-", 36);
  char span[17];
  snprintf(span, sizeof span, "%.16s", tp + 36);
  assert_string_not_equal(span, "00f067aa0ba902b7");
  /* the upstream got it: the same value */
  char want[120];
  snprintf(want, sizeof want, "\"traceparent\": \"00-%s-%s-01\"", TRACE, span);
  if (!strstr(r.body, want)) {
    snprintf(want, sizeof want, "\"traceparent\":\"00-%s-%s-01\"", TRACE, span);
    if (!strstr(r.body, want)) fail_msg("the upstream saw no traceparent %s: %s", want, r.body);
  }
  http_free(&r);
  /* every line of the invocation, and of its callee (same trace, a span of its own) */
  char *report = srv_report_of(&s, rid);
  snprintf(want, sizeof want, "\"trace\":\"%s\",\"span\":\"%s\"", TRACE, span);
  assert_non_null(strstr(report, want));
  free(report);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"front here\"", want, NULL), 1);
  srv_log_wait(&s, 1, 5000, "\"msg\":\"report\"", "\"function\":\"back\"", NULL);
  char *back = srv_log_line(&s, "\"msg\":\"back here\"", NULL);
  assert_non_null(back);
  assert_non_null(strstr(back, "\"trace\":\"" TRACE "\""));
  assert_null(strstr(back, span));
  free(back);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", "\"function\":\"back\"", "\"trace\":\"" TRACE "\"", NULL), 1);
  /* the asynchronous callee too, through the queue */
  assert_int_equal(srv_log_wait(&s, 1, 10000, "\"msg\":\"later here\"", "\"trace\":\"" TRACE "\"", NULL), 1);
  char *later = srv_log_line(&s, "\"msg\":\"later here\"", NULL);
  assert_null(strstr(later, span));
  free(later);
  srv_log_wait(&s, 1, 5000, "\"msg\":\"report\"", "\"function\":\"later\"", NULL);
  /* the query API finds the trace's lines in both streams */
  sleep_ms(200);
  http_get(s.port, "/_/api/logs?trace=" TRACE, &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(count(r.body, "\"msg\":\"report\""), 3);
  assert_int_equal(count(r.body, "here\""), 3);
  http_free(&r);
  /* malformed: a new trace, well-formed */
  assert_int_equal(http_request(s.port, "GET", "/front", "traceparent: 00-" TRACE "-0000000000000000-01\r\n", NULL, 0, &r), 0);
  tp = http_header(&r, "traceparent");
  assert_non_null(tp);
  assert_int_equal(strlen(tp), 55);
  assert_memory_not_equal(tp + 3, TRACE, 32);
  http_free(&r);
  srv_stop(&s);
  up_stop();
  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

/* --- Redis away ----------------------------------------------------------------------------------------- */

static void test_redis_away(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_say(&s, "calm");
  srv_start(&s, "--workers 1 --redis-timeout 200ms");
  get_ok(s.port, "/say/calm?m=stored", NULL, 0);
  wait_xlen_at_least(&s, "cr:logs:fn:calm", 2);
  /* Redis takes no write for 1.5 s: the requests are answered at once all the same (logging
   * never waits on Redis), and stdout has every line. */
  free(srv_rcli(&s, "CLIENT", "PAUSE", "1500", "WRITE", NULL));
  long long t0 = now_ms();
  for (int i = 0; i < 5; i++) {
    char path[60];
    snprintf(path, sizeof path, "/say/calm?m=paused-%d", i);
    get_ok(s.port, path, NULL, 0);
  }
  assert_true(now_ms() - t0 < 1000);
  assert_int_equal(srv_log_wait(&s, 5, 2000, "\"msg\":\"paused-", NULL), 5);
  sleep_ms(1700);
  /* Redis refuses the lines (XADD is denied to crescent's user): they are dropped from Redis
   * only, counted. */
  free(srv_rcli(&s, "ACL", "SETUSER", "default", "-xadd", NULL));
  http_resp_t r;
  http_get(s.port, "/_/metrics", &r);
  const char *key = "crescent_log_lines_dropped_total{worker=\"0\"} ";
  const char *d = strstr(r.body, key);
  assert_non_null(d);
  long before = atol(d + strlen(key));
  http_free(&r);
  for (int i = 0; i < 5; i++) {
    char path[60];
    snprintf(path, sizeof path, "/say/calm?m=refused-%d", i);
    get_ok(s.port, path, NULL, 0);
  }
  assert_int_equal(srv_log_wait(&s, 5, 2000, "\"msg\":\"refused-", NULL), 5);
  srv_log_wait(&s, 1, 12000, "log lines were not kept in Redis", NULL);
  sleep_ms(300);
  free(srv_rcli(&s, "ACL", "SETUSER", "default", "+xadd", NULL));
  http_get(s.port, "/_/metrics", &r);
  d = strstr(r.body, key);
  assert_non_null(d);
  long dropped = atol(d + strlen(key));
  assert_true(dropped - before >= 10); /* 5 lines and 5 reports at least */
  http_free(&r);
  sleep_ms(200);
  http_get(s.port, "/_/api/logs?function=calm&limit=1000", &r);
  assert_int_equal(r.status, 200);
  assert_null(strstr(r.body, "refused-"));
  assert_non_null(strstr(r.body, "\"msg\":\"stored\""));
  const char *dj = strstr(r.body, "\"dropped\":");
  assert_non_null(dj);
  assert_true(atol(dj + 10) >= dropped);
  http_free(&r);
  /* Redis takes writes again: lines are kept again, the warning among them. */
  get_ok(s.port, "/say/calm?m=back-again", NULL, 0);
  sleep_ms(300);
  http_get(s.port, "/_/api/logs?function=calm&limit=1&q=back-again", &r);
  assert_non_null(strstr(r.body, "\"msg\":\"back-again\""));
  http_free(&r);
  http_get(s.port, "/_/api/logs?function=%40platform&level=warn", &r);
  assert_non_null(strstr(r.body, "log lines were not kept in Redis"));
  http_free(&r);
  srv_stop(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_streams_per_function),
      cmocka_unit_test(test_retention_by_count),
      cmocka_unit_test(test_query_filters_and_cursor),
      cmocka_unit_test(test_tail_from_another_worker),
      cmocka_unit_test(test_tail_bounds),
      cmocka_unit_test(test_cli_logs),
      cmocka_unit_test(test_access_log),
      cmocka_unit_test(test_traceparent),
      cmocka_unit_test(test_redis_away),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
