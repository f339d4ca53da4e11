/* test_usage.c - usage that persists (README "Usage and cost"): the hourly usage in Redis,
 * summed across workers and two servers on one Redis, surviving a restart and a Redis outage,
 * GET /_/api/usage and `crescent cost` (table, --json, --free-tier, the right-size line). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* --- a Redis of the test's own, shared by the servers ------------------------------------------- */

static pid_t xredis_pid = -1;

static void kill_xredis(void) {
  if (xredis_pid > 0) {
    kill(xredis_pid, SIGCONT);
    kill(xredis_pid, SIGKILL);
    waitpid(xredis_pid, NULL, 0);
    xredis_pid = -1;
  }
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  socklen_t len = sizeof sa;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  close(fd);
  return ntohs(sa.sin_port);
}

/* On port (0: a free one); with dir, an append-only file there (fsync always) so a restart on
 * the same port keeps the data. */
static int xredis_start_on(int port, const char *dir) {
  static int registered;
  if (!registered) atexit(kill_xredis), registered = 1;
  if (!port) port = free_port();
  char portstr[16];
  snprintf(portstr, sizeof portstr, "%d", port);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, 1), dup2(devnull, 2);
    setpgid(0, 0);
    if (dir)
      execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "yes", "--appendfsync", "always", "--dir", dir, "--daemonize", "no", (char *)NULL);
    else
      execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", "/tmp", "--daemonize", "no", (char *)NULL);
    _exit(127);
  }
  xredis_pid = pid;
  long long end = now_ms() + 5000;
  while (now_ms() < end) {
    const char *args[] = {"-p", portstr, "PING", NULL};
    int st = 0;
    char *out = redis_cli(&st, args);
    int up = st == 0 && strstr(out, "PONG");
    free(out);
    if (up) return port;
    sleep_ms(30);
  }
  fail_msg("redis-server on port %d did not answer within 5 s", port);
  return -1;
}

static int xredis_start(void) { return xredis_start_on(0, NULL); }

/* --- helpers ------------------------------------------------------------------------------------ */

#define OK_LUA "return function() return 'ok' end\n"
#define BOOM_LUA "return function() error('boom') end\n"
/* memory = 1024, uses far less: 128 MB would hold it */
#define BIG_LUA "return { memory = 1024, handler = function() return 'big' end }\n"

/* n GETs of path, each on a new connection (so the kernel spreads them over the workers). */
static void hit(int port, const char *path, int n, int want_status) {
  for (int i = 0; i < n; i++) {
    http_resp_t r;
    assert_int_equal(http_request(port, "GET", path, NULL, NULL, 0, &r), 0);
    if (r.status != want_status) fail_msg("GET %s answered %d, want %d", path, r.status, want_status);
    http_free(&r);
  }
}

/* GET /_/api/usage?query (200), malloc'd body. */
static char *usage_get(int port, const char *query) {
  char path[512];
  snprintf(path, sizeof path, "/_/api/usage%s%s", query && *query ? "?" : "", query ? query : "");
  http_resp_t r;
  http_get(port, path, &r);
  if (r.status != 200) fail_msg("GET %s answered %d: %s", path, r.status, r.body);
  char *b = strdup(r.body);
  http_free(&r);
  return b;
}

/* The API's "total" object (the last member): past the costs' own "total" numbers. */
static const char *total_of(const char *body) {
  const char *t = strstr(body, "\"total\":{");
  if (!t) fail_msg("no total object in %s", body);
  return t;
}

/* The invocations of function fn in the usage API's "functions" (0 when absent). */
static long fn_invocations(const char *body, const char *fn) {
  char *e = api_fn_entry(body, fn);
  if (!e) return 0;
  long n = (long)json_num(e, "invocations");
  free(e);
  return n;
}

/* Waits (at most 10 s) until the usage shows want invocations of fn; fails past it. */
static void wait_invocations(int port, const char *fn, long want) {
  long long end = now_ms() + 10000;
  long got = -1;
  while (now_ms() < end) {
    http_resp_t r;
    http_get(port, "/_/api/usage", &r);
    if (r.status == 503) { /* this worker not reconnected to Redis yet */
      http_free(&r);
      sleep_ms(100);
      continue;
    }
    if (r.status != 200) fail_msg("GET /_/api/usage answered %d: %s", r.status, r.body);
    got = fn_invocations(r.body, fn);
    http_free(&r);
    if (got == want) return;
    if (got > want) break;
    sleep_ms(100);
  }
  fail_msg("usage of %s: %ld invocations, want %ld", fn, got, want);
}

/* The number after `name{labels} ` in /_/metrics. */
static double metric(int port, const char *series) {
  http_resp_t r;
  http_get(port, "/_/metrics", &r);
  assert_int_equal(r.status, 200);
  char want[300];
  snprintf(want, sizeof want, "\n%s ", series);
  const char *p = strstr(r.body, want);
  if (!p) fail_msg("/_/metrics lacks %s", series);
  double v = strtod(p + strlen(want), NULL);
  http_free(&r);
  return v;
}

typedef struct {
  int code;
  char *out, *err;
} run_t;

/* $CRESCENT_BIN with the NULL-terminated arguments; at most 30 s. */
static void run_cli(run_t *r, ...) {
  const char *bin = getenv("CRESCENT_BIN");
  if (!bin) bin = "./crescent";
  char *argv[32];
  int argc = 0;
  argv[argc++] = (char *)bin;
  va_list ap;
  va_start(ap, r);
  const char *a;
  while (argc < 31 && (a = va_arg(ap, const char *))) argv[argc++] = (char *)a;
  va_end(ap);
  argv[argc] = NULL;
  char outp[64], errp[64];
  snprintf(outp, sizeof outp, "/tmp/cr-usage-out-%d", (int)getpid());
  snprintf(errp, sizeof errp, "/tmp/cr-usage-err-%d", (int)getpid());
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0) _exit(127);
    dup2(o, 1), dup2(e, 2);
    unsetenv("CRESCENT_URL");
    unsetenv("CRESCENT_ADMIN_TOKEN");
    execv(bin, argv);
    _exit(127);
  }
  long long end = now_ms() + 30000;
  int st = 0;
  r->code = -1;
  for (;;) {
    if (waitpid(pid, &st, WNOHANG) == pid) {
      r->code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
    if (now_ms() > end) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      break;
    }
    sleep_ms(5);
  }
  r->out = read_file(outp);
  r->err = read_file(errp);
  unlink(outp);
  unlink(errp);
}

static void run_free(run_t *r) {
  free(r->out);
  free(r->err);
}

static void start_on(srv_t *s, int rport, const char *extra) {
  char args[300];
  snprintf(args, sizeof args, "--workers 2 --redis redis://127.0.0.1:%d --price-request 1000000 %s", rport,
           extra ? extra : "");
  srv_start(s, args);
}

/* --- tests --------------------------------------------------------------------------------------- */

/* Two servers of two workers on one Redis: the usage is the sum of all four workers, exactly,
 * per trigger and status; a restart (the last invocations just before the stop included) keeps
 * it; the Redis keys follow the documented layout. */
static void usage_summed_across_workers_and_nodes(void **state) {
  (void)state;
  int rport = xredis_start();
  srv_t a, b;
  srv_init(&a);
  srv_init(&b);
  srv_write(&a, "ok.lua", OK_LUA);
  srv_write(&a, "boom.lua", BOOM_LUA);
  srv_write(&b, "ok.lua", OK_LUA);
  start_on(&a, rport, NULL);
  start_on(&b, rport, NULL);
  hit(a.port, "/ok", 30, 200);
  hit(a.port, "/boom", 5, 500);
  srv_expect_errors(&a, 5);
  hit(b.port, "/ok", 20, 200);
  /* both of a's workers served some (40 new connections on SO_REUSEPORT) */
  assert_true(metric(a.port, "crescent_http_requests_total{worker=\"0\"}") > 0);
  assert_true(metric(a.port, "crescent_http_requests_total{worker=\"1\"}") > 0);
  wait_invocations(a.port, "ok", 50);
  wait_invocations(b.port, "ok", 50);

  char *u = usage_get(b.port, "by=hour");
  char *ok = api_fn_entry(u, "ok"), *boom = api_fn_entry(u, "boom");
  assert_non_null(ok);
  assert_non_null(boom);
  assert_non_null(strstr(ok, "\"byTrigger\":{\"http\":{\"ok\":50}}"));
  assert_int_equal((long)json_num(ok, "errors"), 0);
  assert_non_null(strstr(boom, "\"byTrigger\":{\"http\":{\"error\":5}}"));
  assert_int_equal((long)json_num(boom, "errors"), 5);
  long cold = (long)json_num(ok, "coldStarts");
  if (cold < 2 || cold > 4) fail_msg("ok: %ld cold starts, want one per worker that ran it (2..4)", cold);
  /* the latency histogram holds each invocation once */
  const char *lat = json_val(ok, "latencyMs");
  long sum = 0;
  for (const char *p = lat; p && *p != '}'; p++)
    if (*p == ':') sum += strtol(p + 1, NULL, 10);
  assert_int_equal(sum, 50);
  /* billed: memory 128 MB x billed ms */
  double billed = json_num(ok, "billedMsSum"), gbs = json_num(ok, "gbSeconds");
  assert_true(billed >= 50);
  if (gbs < billed / 1000 * 0.125 - 1e-6 || gbs > billed / 1000 * 0.125 + 1e-6)
    fail_msg("gbSeconds %.6f for %.0f billed ms at 128 MB", gbs, billed);
  /* the price flag: $1 per request */
  assert_true(json_num(json_val(ok, "cost"), "requests") == 50);
  assert_int_equal((long)json_num(total_of(u), "invocations"), 55);
  free(ok);
  free(boom);
  free(u);
  /* the keys: one hash per function and hour, in the index */
  char rp[16];
  snprintf(rp, sizeof rp, "%d", rport);
  const char *zc[] = {"-p", rp, "ZRANGE", "cr:usage:idx", "0", "-1", NULL};
  char *members = redis_cli(NULL, zc);
  assert_non_null(strstr(members, "|ok"));
  assert_non_null(strstr(members, "|boom"));
  char hkey[128];
  long hour = strtol(members, NULL, 10);
  snprintf(hkey, sizeof hkey, "cr:usage:h:%ld:ok", hour);
  const char *ttl[] = {"-p", rp, "TTL", hkey, NULL};
  char *t = redis_cli(NULL, ttl);
  long secs = strtol(t, NULL, 10);
  if (secs < 89L * 86400 || secs > 91L * 86400) fail_msg("%s expires in %ld s, want about 90 days", hkey, secs);
  free(t);
  free(members);

  /* The last invocations right before a stop are sent while the workers drain. */
  hit(a.port, "/ok", 7, 200);
  assert_int_equal(srv_stop(&a), 0);
  assert_int_equal(srv_stop(&b), 0);
  srv_t c;
  srv_init(&c);
  srv_write(&c, "ok.lua", OK_LUA);
  start_on(&c, rport, NULL);
  char *u2 = usage_get(c.port, NULL);
  assert_int_equal(fn_invocations(u2, "ok"), 57);
  assert_int_equal(fn_invocations(u2, "boom"), 5);
  free(u2);
  assert_int_equal(srv_stop(&c), 0);
  kill_xredis();
}

/* crescent cost: the table, --json exactly as the API, --by day, --free-tier, right-size. */
static void cost_command(void **state) {
  (void)state;
  int rport = xredis_start();
  srv_t s;
  srv_init(&s);
  srv_write(&s, "ok.lua", OK_LUA);
  srv_write(&s, "big.lua", BIG_LUA);
  start_on(&s, rport, NULL);
  hit(s.port, "/ok", 12, 200);
  hit(s.port, "/big", 4, 200);
  wait_invocations(s.port, "ok", 12);
  wait_invocations(s.port, "big", 4);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);

  run_t r;
  run_cli(&r, "cost", "--url", url, "--json", NULL);
  assert_int_equal(r.code, 0);
  char *api = usage_get(s.port, "by=hour");
  /* the same document (the range ends at "now": compare past "to") */
  const char *j1 = strstr(r.out, "\"by\":"), *j2 = strstr(api, "\"by\":");
  assert_non_null(j1);
  assert_non_null(j2);
  if (strncmp(j1, j2, strlen(j2)) != 0) fail_msg("cost --json printed\n%s\nthe API answers\n%s", r.out, api);
  char *big = api_fn_entry(r.out, "big");
  assert_non_null(big);
  assert_int_equal((long)json_num(big, "invocations"), 4);
  const char *rs = json_val(big, "rightSize");
  assert_non_null(rs);
  assert_int_equal((long)json_num(rs, "memory"), 1024);
  assert_int_equal((long)json_num(rs, "suggested"), 128);
  double billed = json_num(big, "billedMsSum"), price = 0.0000166667;
  double now_c = json_num(rs, "computeCost"), at = json_num(rs, "computeCostAtSuggested");
  if (fabs(now_c - billed / 1000 * 1.0 * price) > 1e-8) fail_msg("computeCost %.10f for %.0f ms at 1 GB", now_c, billed);
  if (fabs(at - billed / 1000 * 0.125 * price) > 1e-8) fail_msg("at 128 MB %.10f for %.0f ms", at, billed);
  free(big);
  free(api);
  run_free(&r);

  run_cli(&r, "cost", "--url", url, NULL);
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "FUNCTION"));
  assert_int_equal(text_lines_with(r.out, "ok ", " 12 ", NULL), 1);
  assert_int_equal(text_lines_with(r.out, "big ", " 4 ", NULL), 1);
  assert_int_equal(text_lines_with(r.out, "TOTAL", " 16 ", NULL), 1);
  /* $1 per request (--price-request 1000000): the total is 16 and some compute */
  assert_int_equal(text_lines_with(r.out, "TOTAL", " 16.0000", NULL), 1);
  assert_int_equal(text_lines_with(r.out, "big: memory 1024 MB", "128 MB would have held it", NULL), 1);
  assert_int_equal(text_lines_with(r.out, "ok: memory 128 MB", "the right size", NULL), 1);
  run_free(&r);

  run_cli(&r, "cost", "--url", url, "--by", "day", "--free-tier", NULL);
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "DAY"));
  /* everything within the month's free tier: nothing to pay */
  assert_int_equal(text_lines_with(r.out, "TOTAL", " 16 ", " 0.00000000", NULL), 1);
  assert_int_equal(text_lines_with(r.out, "free tier applied", "16 requests", NULL), 1);
  run_free(&r);
  char *ft = usage_get(s.port, "freeTier=1&by=day");
  assert_int_equal((long)json_num(json_val(ft, "freeTier"), "usedRequests"), 16);
  assert_true(json_num(json_val(total_of(ft), "cost"), "total") == 0);
  free(ft);

  /* usage errors: exit 2; a bad range from the server: exit 1 */
  run_cli(&r, "cost", "--by", "week", NULL);
  assert_int_equal(r.code, 2);
  run_free(&r);
  run_cli(&r, "cost", "--url", url, "--from", "2026-02-30", NULL);
  assert_int_equal(r.code, 1);
  assert_non_null(strstr(r.err, "400"));
  run_free(&r);
  http_resp_t h;
  http_get(s.port, "/_/api/usage?by=week", &h);
  assert_int_equal(h.status, 400);
  http_free(&h);
  http_get(s.port, "/_/api/usage?from=2026-01-02&to=2026-01-01", &h);
  assert_int_equal(h.status, 400);
  http_free(&h);
  http_get(s.port, "/_/api/usage?nope=1", &h);
  assert_int_equal(h.status, 400);
  http_free(&h);
  /* a range with nothing in it */
  char *empty = usage_get(s.port, "from=2020-01-01&to=2020-01-02");
  assert_non_null(strstr(empty, "\"rows\":[]"));
  assert_int_equal((long)json_num(total_of(empty), "invocations"), 0);
  free(empty);
  assert_int_equal(srv_stop(&s), 0);
  kill_xredis();
}

/* Redis stopped (SIGSTOP) while flushes go out: they time out and are sent again; once Redis
 * runs again it applies the batch that timed out and skips its resends: the counts are exact,
 * nothing is dropped. */
static void redis_outage_during_flushes(void **state) {
  (void)state;
  int rport = xredis_start();
  srv_t s;
  srv_init(&s);
  srv_write(&s, "ok.lua", OK_LUA);
  start_on(&s, rport, "--redis-timeout 0.3");
  hit(s.port, "/ok", 10, 200);
  wait_invocations(s.port, "ok", 10);
  double errs0 = metric(s.port, "crescent_usage_flush_errors_total{worker=\"0\"}") +
                 metric(s.port, "crescent_usage_flush_errors_total{worker=\"1\"}");
  kill(xredis_pid, SIGSTOP);
  hit(s.port, "/ok", 15, 200);
  sleep_ms(2500); /* a few flushes time out */
  double errs = metric(s.port, "crescent_usage_flush_errors_total{worker=\"0\"}") +
                metric(s.port, "crescent_usage_flush_errors_total{worker=\"1\"}");
  if (errs < errs0 + 2) fail_msg("flush errors %.0f -> %.0f while Redis was stopped", errs0, errs);
  hit(s.port, "/ok", 5, 200);
  kill(xredis_pid, SIGCONT);
  wait_invocations(s.port, "ok", 30);
  sleep_ms(1500); /* no late double count */
  char *u = usage_get(s.port, NULL);
  assert_int_equal(fn_invocations(u, "ok"), 30);
  free(u);
  assert_true(metric(s.port, "crescent_usage_dropped_total{worker=\"0\"}") == 0);
  assert_true(metric(s.port, "crescent_usage_dropped_total{worker=\"1\"}") == 0);
  assert_int_equal(srv_stop(&s), 0);
  kill_xredis();
}

/* Redis killed and started again (its data kept on disk): the flushes meanwhile find no
 * connection and keep their batch; once the worker has reconnected it goes, counted once. */
static void redis_restart_during_flushes(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  char dir[400];
  snprintf(dir, sizeof dir, "%s/redis-data", s.root);
  srv_mkdir(&s, "../redis-data");
  int rport = xredis_start_on(0, dir);
  srv_write(&s, "ok.lua", OK_LUA);
  start_on(&s, rport, NULL);
  hit(s.port, "/ok", 8, 200);
  wait_invocations(s.port, "ok", 8);
  kill(xredis_pid, SIGKILL);
  waitpid(xredis_pid, NULL, 0);
  xredis_pid = -1;
  hit(s.port, "/ok", 12, 200);
  sleep_ms(1500); /* flushes find Redis gone */
  xredis_start_on(rport, dir);
  wait_invocations(s.port, "ok", 20);
  sleep_ms(1500);
  char *u = usage_get(s.port, NULL);
  assert_int_equal(fn_invocations(u, "ok"), 20);
  free(u);
  assert_true(metric(s.port, "crescent_usage_dropped_total{worker=\"0\"}") == 0);
  assert_true(metric(s.port, "crescent_usage_dropped_total{worker=\"1\"}") == 0);
  /* the connection dropped: counted as unavailable */
  assert_true(metric(s.port, "crescent_redis_errors_total{worker=\"0\",kind=\"unavailable\"}") +
                  metric(s.port, "crescent_redis_errors_total{worker=\"1\",kind=\"unavailable\"}") >
              0);
  /* the Redis outage is logged (warn and error lines): not this test's subject */
  srv_expect_errors(&s, srv_log_count(&s, "\"level\":\"error\"", NULL));
  assert_int_equal(srv_stop(&s), 0);
  kill_xredis();
}

/* Without Redis there is no usage to read: a clear 503. */
static void usage_needs_redis(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "ok.lua", OK_LUA);
  srv_start(&s, "--workers 1 --redis none");
  http_resp_t r;
  http_get(s.port, "/_/api/usage", &r);
  assert_int_equal(r.status, 503);
  assert_non_null(strstr(r.body, "--redis none"));
  http_free(&r);
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(usage_summed_across_workers_and_nodes),
      cmocka_unit_test(cost_command),
      cmocka_unit_test(redis_outage_during_flushes),
      cmocka_unit_test(redis_restart_during_flushes),
      cmocka_unit_test(usage_needs_redis),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
