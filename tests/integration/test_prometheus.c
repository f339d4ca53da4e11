/* test_prometheus.c - /_/metrics as Prometheus takes it (README "Metrics"): promtool (Debian's
 * prometheus package, tools/deps.sh test) finds no problem nor lint warning in it after a mixed
 * load, every family the README lists is there, and a real Prometheus started here on loopback
 * scrapes a running crescent and answers PromQL queries with the expected numbers. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* A port free now (bound to port 0, then closed), for prometheus to listen on. */
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

/* The prometheus this test started: killed however the test ends. */
static pid_t prom_pid = -1;

static void kill_prom(void) {
  if (prom_pid > 0) {
    kill(-prom_pid, SIGKILL);
    kill(prom_pid, SIGKILL);
    waitpid(prom_pid, NULL, 0);
    prom_pid = -1;
  }
}

static void hit(int port, const char *path, int n, int want_status) {
  for (int i = 0; i < n; i++) {
    http_resp_t r;
    assert_int_equal(http_request(port, "GET", path, NULL, NULL, 0, &r), 0);
    if (r.status != want_status) fail_msg("GET %s answered %d, want %d", path, r.status, want_status);
    http_free(&r);
  }
}

/* Runs cmd (argv, NULL-terminated) with stdin from in_path, stdout+stderr into out (malloc'd);
 * at most 30 s. Returns the exit status (-1: killed at the bound). */
static int run_tool(char *const *argv, const char *in_path, char **out, const char *tmpdir) {
  char outp[400];
  snprintf(outp, sizeof outp, "%s/tool-out", tmpdir);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int i = in_path ? open(in_path, O_RDONLY) : open("/dev/null", O_RDONLY);
    int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (i < 0 || o < 0) _exit(127);
    dup2(i, 0), dup2(o, 1), dup2(o, 2);
    execvp(argv[0], argv);
    _exit(127);
  }
  long long end = now_ms() + 30000;
  int st = 0, code = -1;
  for (;;) {
    if (waitpid(pid, &st, WNOHANG) == pid) {
      code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
    if (now_ms() > end) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      break;
    }
    sleep_ms(10);
  }
  *out = read_file(outp);
  return code;
}

static void write_text(const char *path, const char *text, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(text, 1, len, f), len);
  fclose(f);
}

#define OK_LUA "return function() return 'ok' end\n"
#define BOOM_LUA "return function() error('boom') end\n"
#define SLOW_LUA "return { timeout = 0.1, handler = function() while true do end end }\n"
#define FRAGILE_LUA                                                                                      \
  "return { timeout = 0.3, triggers = { { queue = 'fragile', visibility = 0.3, maxReceives = 1 } },\n" \
  "  handler = function(event) error('cannot take ' .. event.records[1].body) end }\n"

/* The families README "Metrics" lists, each with its type. */
static const char *const families[] = {
    "crescent_invocations_total counter",          "crescent_errors_total counter",
    "crescent_client_errors_total counter",        "crescent_throttles_total counter",
    "crescent_timeouts_total counter",             "crescent_cold_starts_total counter",
    "crescent_duration_seconds histogram",         "crescent_init_duration_seconds histogram",
    "crescent_instances gauge",                    "crescent_memory_used_bytes histogram",
    "crescent_memory_limit_bytes gauge",           "crescent_billed_byte_seconds_total counter",
    "crescent_trigger_lag gauge",                  "crescent_trigger_pending gauge",
    "crescent_trigger_dead_letter_depth gauge",    "crescent_trigger_oldest_age_seconds gauge",
    "crescent_redis_request_duration_seconds histogram", "crescent_redis_errors_total counter",
    "crescent_http_connections gauge",             "crescent_http_requests_total counter",
    "crescent_http_responses_total counter",       "crescent_reloads_total counter",
    "crescent_function_loads_total counter",       "crescent_function_load_errors_total counter",
    "crescent_usage_flushes_total counter",        "crescent_usage_dropped_total counter",
};

/* Polls /_/metrics (at most 10 s) until it holds line (a whole sample line); returns the body. */
static char *metrics_with(int port, const char *line) {
  long long end = now_ms() + 10000;
  char want[300];
  snprintf(want, sizeof want, "\n%s\n", line);
  for (;;) {
    http_resp_t r;
    http_get(port, "/_/metrics", &r);
    assert_int_equal(r.status, 200);
    if (strstr(r.body, want)) {
      char *b = strdup(r.body);
      http_free(&r);
      return b;
    }
    if (now_ms() > end) fail_msg("/_/metrics never showed '%s':\n%s", line, r.body);
    http_free(&r);
    sleep_ms(100);
  }
}

static void promtool_finds_nothing_after_mixed_load(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "ok.lua", OK_LUA);
  srv_write(&s, "boom.lua", BOOM_LUA);
  srv_write(&s, "slow.lua", SLOW_LUA);
  srv_write(&s, "send.lua", srv_queue_sender);
  srv_write(&s, "fragile.lua", FRAGILE_LUA);
  srv_write(&s, "broken.lua", "return function( end\n"); /* a load error */
  srv_start(&s, "--workers 2");
  hit(s.port, "/ok", 20, 200);
  hit(s.port, "/boom", 3, 500);
  hit(s.port, "/slow", 2, 504);
  hit(s.port, "/nowhere", 2, 404);
  srv_send_msg(&s, "fragile", "m1");
  /* one delivery (maxReceives = 1), then the dead-letter queue, seen by a later claim round */
  char *body = metrics_with(s.port, "crescent_trigger_dead_letter_depth{function=\"fragile\",trigger=\"queue:fragile\"} 1");
  free(body);
  body = metrics_with(s.port, "crescent_timeouts_total{function=\"slow\"} 2");
  assert_non_null(strstr(body, "\ncrescent_function_load_errors_total 1\n"));
  assert_non_null(strstr(body, "\ncrescent_errors_total{function=\"boom\"} 3\n"));
  /* 20 + 3 + 2 + 2 + 1 (the send) + this scrape's own requests: 2xx and 5xx and 4xx counted */
  double c4 = 0;
  for (int w = 0; w < 2; w++) {
    char k[80];
    snprintf(k, sizeof k, "\ncrescent_http_responses_total{worker=\"%d\",code=\"4xx\"} ", w);
    const char *p = strstr(body, k);
    assert_non_null(p);
    c4 += strtod(p + strlen(k), NULL);
  }
  assert_true(c4 == 2);
  for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
    char t[200];
    snprintf(t, sizeof t, "\n# TYPE %s\n", families[i]);
    if (!strstr(body, t)) fail_msg("/_/metrics lacks '%s'", t + 1);
  }
  /* the name promtool flagged is gone */
  assert_null(strstr(body, "crescent_gb_seconds_total"));

  char path[400];
  snprintf(path, sizeof path, "%s/metrics.txt", s.root);
  write_text(path, body, strlen(body));
  char *out = NULL;
  char *argv[] = {"promtool", "check", "metrics", NULL};
  int code = run_tool(argv, path, &out, s.root);
  if (code != 0 || out[0]) fail_msg("promtool check metrics: exit %d:\n%s", code, out);
  free(out);
  free(body);
  /* boom's 3 errors, the 2 timeouts, the load error, the queue's failed run: their lines */
  srv_expect_errors(&s, srv_log_count(&s, "\"level\":\"error\"", NULL));
  assert_true(srv_log_count(&s, "\"level\":\"error\"", NULL) >= 7);
  assert_int_equal(srv_stop(&s), 0);
}

/* %-encodes a PromQL query for a URL. */
static void encode(const char *q, char *out, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (const unsigned char *p = (const unsigned char *)q; *p && o + 4 < n; p++) {
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_') {
      out[o++] = (char)*p;
    } else {
      out[o++] = '%';
      out[o++] = hex[*p >> 4];
      out[o++] = hex[*p & 15];
    }
  }
  out[o] = '\0';
}

/* The first sample's value of an instant query (a string, copied into val); 0 found, -1 none. */
static int prom_query(int pport, const char *query, char *val, size_t n) {
  char enc[1024], path[1200];
  encode(query, enc, sizeof enc);
  snprintf(path, sizeof path, "/api/v1/query?query=%s", enc);
  http_resp_t r;
  if (http_request(pport, "GET", path, NULL, NULL, 0, &r) != 0) return -1;
  int rc = -1;
  const char *v = r.status == 200 ? strstr(r.body, "\"value\":[") : NULL;
  if (v) {
    const char *q1 = strchr(v + 9, '"');
    const char *q2 = q1 ? strchr(q1 + 1, '"') : NULL;
    if (q1 && q2 && (size_t)(q2 - q1 - 1) < n) {
      memcpy(val, q1 + 1, (size_t)(q2 - q1 - 1));
      val[q2 - q1 - 1] = '\0';
      rc = 0;
    }
  }
  http_free(&r);
  return rc;
}

/* Waits (at most 30 s) until query answers exactly want. */
static void prom_wait(int pport, const char *query, const char *want) {
  long long end = now_ms() + 30000;
  char val[64] = "";
  while (now_ms() < end) {
    if (prom_query(pport, query, val, sizeof val) == 0 && strcmp(val, want) == 0) return;
    sleep_ms(250);
  }
  fail_msg("PromQL %s: '%s', want '%s'", query, val, want);
}

static void prometheus_scrapes_crescent(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "ok.lua", OK_LUA);
  srv_write(&s, "boom.lua", BOOM_LUA);
  srv_start(&s, "--workers 2");
  char dir[400], cfg[450], data[450], cfgtext[600];
  snprintf(dir, sizeof dir, "%s/prom", s.root);
  assert_int_equal(mkdir(dir, 0755), 0);
  snprintf(cfg, sizeof cfg, "%s/prometheus.yml", dir);
  snprintf(data, sizeof data, "%s/data", dir);
  int n = snprintf(cfgtext, sizeof cfgtext,
                   "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                   "scrape_configs:\n  - job_name: crescent\n    metrics_path: /_/metrics\n"
                   "    static_configs:\n      - targets: ['127.0.0.1:%d']\n",
                   s.port);
  write_text(cfg, cfgtext, (size_t)n);
  int pport = free_port();
  assert_true(pport > 0);
  char cfgflag[500], dataflag[500], listen[64];
  snprintf(cfgflag, sizeof cfgflag, "--config.file=%s", cfg);
  snprintf(dataflag, sizeof dataflag, "--storage.tsdb.path=%s", data);
  snprintf(listen, sizeof listen, "--web.listen-address=127.0.0.1:%d", pport);
  char logp[450];
  snprintf(logp, sizeof logp, "%s/prometheus.log", dir);
  atexit(kill_prom);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int o = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o >= 0) dup2(o, 1), dup2(o, 2);
    setpgid(0, 0);
    execlp("prometheus", "prometheus", cfgflag, dataflag, listen, "--storage.tsdb.retention.time=1h",
           "--log.level=warn", (char *)NULL);
    _exit(127);
  }
  prom_pid = pid;
  /* ready within 30 s */
  long long end = now_ms() + 30000;
  int ready = 0;
  while (!ready && now_ms() < end) {
    http_resp_t r;
    if (http_request(pport, "GET", "/-/ready", NULL, NULL, 0, &r) == 0) {
      ready = r.status == 200;
      http_free(&r);
    }
    if (!ready) sleep_ms(200);
  }
  if (!ready) {
    char *log = read_file(logp);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fail_msg("prometheus was not ready within 30 s:\n%s", log);
  }
  /* scraped before the load: the series start at 0, so the load shows as a rate */
  prom_wait(pport, "up{job=\"crescent\"}", "1");
  prom_wait(pport, "sum(crescent_invocations_total{function=\"ok\"})", "0");
  hit(s.port, "/ok", 25, 200);
  hit(s.port, "/boom", 4, 500);
  srv_expect_errors(&s, 4);
  prom_wait(pport, "sum(crescent_invocations_total{function=\"ok\"})", "25");
  prom_wait(pport, "sum(crescent_errors_total{function=\"boom\"})", "4");
  /* cold and warm apart add up */
  prom_wait(pport, "sum(crescent_duration_seconds_count{function=\"ok\"})", "25");
  /* the rate over the last minute: the 25 invocations, spread over the window (positive, and
   * no more than 25 per second of it) */
  char val[64];
  long long rend = now_ms() + 20000; /* a rate needs two scrapes in its window */
  while (prom_query(pport, "sum(rate(crescent_invocations_total{function=\"ok\"}[1m]))", val, sizeof val) != 0 ||
         strtod(val, NULL) == 0) {
    if (now_ms() > rend) fail_msg("no rate from prometheus within 20 s (%s)", val);
    sleep_ms(250);
  }
  double rate = strtod(val, NULL);
  if (!(rate > 0 && rate <= 25)) fail_msg("rate %s", val);
  /* 10 more: the next scrapes see exactly them */
  hit(s.port, "/ok", 10, 200);
  prom_wait(pport, "sum(crescent_invocations_total{function=\"ok\"})", "35");
  kill(pid, SIGTERM);
  int st;
  end = now_ms() + 10000;
  while (waitpid(pid, &st, WNOHANG) != pid) {
    if (now_ms() > end) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      break;
    }
    sleep_ms(50);
  }
  prom_pid = -1;
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(promtool_finds_nothing_after_mixed_load),
      cmocka_unit_test(prometheus_scrapes_crescent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
