/* test_dashboard_browser.c - the dashboard at /_/ in a real browser: Debian's chromium
 * (`sh tools/deps.sh test`), headless, after a short mixed load.
 *
 * The page writes what it saw into <pre id="checks"> as JSON: the errors it caught
 * (window.onerror, unhandled rejections, console.error), whether its first refresh finished,
 * how many functions it listed, its charts and their non-zero data points, whether the
 * document is wider than the window. The test reads that from the DOM chromium dumps, at
 * 1280x800 and at a 390-px-wide phone size, and keeps a screenshot of each under the build
 * folder (CR_ARTIFACTS). With --admin-token the page is served but asks for the token: its
 * APIs answer 401 and the login form shows. Without chromium the test fails: it does not skip. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define CHROMIUM "/usr/bin/chromium"

/* Runs chromium (bounded: 60 s) on url in a width x height window and one more flag
 * (--dump-dom, or --screenshot=PATH); returns its stdout (malloc'd). Headless chromium makes
 * no window narrower than 500 px: the phone size is emulated over the DevTools protocol
 * (phone() below). */
static char *chromium(const char *dir, const char *url, int width, int height, const char *flag) {
  struct stat st;
  if (stat(CHROMIUM, &st) != 0)
    fail_msg(CHROMIUM " is not installed (%s): run `sh tools/deps.sh test` (make test does)", strerror(errno));
  char profile[400], out[400], err[400], user_data[440], size[64];
  snprintf(profile, sizeof profile, "%s/chromium-profile", dir);
  snprintf(out, sizeof out, "%s/chromium.out", dir);
  snprintf(err, sizeof err, "%s/chromium.log", dir);
  snprintf(user_data, sizeof user_data, "--user-data-dir=%s", profile);
  snprintf(size, sizeof size, "--window-size=%d,%d", width, height);
  long long t0 = now_ms();
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0) _exit(126);
    dup2(o, STDOUT_FILENO);
    dup2(e, STDERR_FILENO);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    setenv("HOME", dir, 1);
    execlp("timeout", "timeout", "-k", "5", "60", CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
           "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-dev-shm-usage",
           "--hide-scrollbars", user_data, size, "--virtual-time-budget=5000", flag, url, (char *)NULL);
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  char *text = read_file(out);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    char *log = read_file(err);
    fprintf(stderr, "chromium's log:\n%s\nits output:\n%s\n", log, text);
    free(log);
    fail_msg("chromium %s %s: exit status %d after %lld ms (124: killed by the 60 s bound)", flag, url,
             WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), now_ms() - t0);
  }
  return text;
}

/* The page's checks (the text of <pre id="checks">, malloc'd), from a DOM dump. */
static char *page_checks(const char *dom) {
  const char *p = strstr(dom, "<pre id=\"checks\" hidden=\"\">");
  const char *e = p ? strstr(p, "</pre>") : NULL;
  if (!p || !e) fail_msg("no <pre id=\"checks\"> in the DOM:\n%s", dom);
  p = strchr(p, '>') + 1;
  size_t n = (size_t)(e - p);
  char *t = malloc(n + 1);
  memcpy(t, p, n);
  t[n] = '\0';
  return t;
}


/* --- the phone: chromium driven over --remote-debugging-pipe ---------------------------------- */

/* The DevTools protocol over the pipe: JSON messages, each ended by a NUL byte, written to the
 * browser's fd 3 and read from its fd 4. */
typedef struct {
  int to, from;
  pid_t pid;
  char *buf;
  size_t len, cap;
  int next_id;
} cdp_t;

/* Reads until the answer to command id; returns it (malloc'd), skipping events. 30 s at most. */
static char *cdp_answer(cdp_t *c, int id) {
  char want[32];
  int wl = snprintf(want, sizeof want, "{\"id\":%d,", id);
  long long until = now_ms() + 30000;
  for (;;) {
    char *nul = c->len ? memchr(c->buf, '\0', c->len) : NULL;
    if (nul) {
      size_t n = (size_t)(nul - c->buf) + 1;
      char *msg = NULL;
      if (strncmp(c->buf, want, (size_t)wl) == 0) msg = strdup(c->buf);
      memmove(c->buf, c->buf + n, c->len - n);
      c->len -= n;
      if (msg) {
        if (strstr(msg, "\"error\":{")) fail_msg("DevTools command %d failed: %.500s", id, msg);
        return msg;
      }
      continue;
    }
    if (now_ms() > until) fail_msg("no DevTools answer to command %d in 30 s", id);
    if (c->cap - c->len < 65536) {
      c->cap = c->cap * 2 + 65536;
      c->buf = realloc(c->buf, c->cap);
      assert_non_null(c->buf);
    }
    struct timeval tv = {0, 200000};
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(c->from, &rd);
    if (select(c->from + 1, &rd, NULL, NULL, &tv) <= 0) continue;
    ssize_t got = read(c->from, c->buf + c->len, c->cap - c->len);
    if (got <= 0) fail_msg("chromium closed its DevTools pipe (command %d)", id);
    c->len += (size_t)got;
  }
}

/* Sends a command (params: a JSON object or NULL) in session (NULL: the browser's); returns
 * its answer (malloc'd). */
static char *cdp(cdp_t *c, const char *session, const char *method, const char *params) {
  int id = ++c->next_id;
  size_t n = strlen(method) + (params ? strlen(params) : 0) + (session ? strlen(session) : 0) + 100;
  char *msg = malloc(n);
  int len = snprintf(msg, n, "{\"id\":%d%s%s%s,\"method\":\"%s\",\"params\":%s}", id,
                     session ? ",\"sessionId\":\"" : "", session ? session : "", session ? "\"" : "", method,
                     params ? params : "{}");
  for (int off = 0; off <= len;) { /* the NUL too */
    ssize_t w = write(c->to, msg + off, (size_t)(len + 1 - off));
    if (w <= 0) fail_msg("cannot write to chromium's DevTools pipe: %s", strerror(errno));
    off += (int)w;
  }
  free(msg);
  return cdp_answer(c, id);
}

/* The JSON string value after "key":" in json, unescaped (malloc'd), or NULL. */
static char *json_str(const char *json, const char *key) {
  char k[64];
  snprintf(k, sizeof k, "\"%s\":\"", key);
  const char *p = strstr(json, k);
  if (!p) return NULL;
  p += strlen(k);
  char *out = malloc(strlen(p) + 1), *o = out;
  for (; *p && *p != '"'; p++) {
    if (*p != '\\') {
      *o++ = *p;
      continue;
    }
    p++;
    switch (*p) {
    case 'n': *o++ = '\n'; break;
    case 't': *o++ = '\t'; break;
    case 'u': { /* ASCII only matters here */
      unsigned v = 0;
      sscanf(p + 1, "%4x", &v);
      *o++ = v < 128 ? (char)v : '?';
      p += 4;
      break;
    }
    default: *o++ = *p; break;
    }
  }
  *o = '\0';
  return out;
}

static size_t b64_decode(const char *in, unsigned char *out) {
  unsigned v = 0;
  int bits = 0;
  size_t n = 0;
  for (; *in && *in != '='; in++) {
    const char *al = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *q = strchr(al, *in);
    if (!q) continue;
    v = (v << 6) | (unsigned)(q - al);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (unsigned char)(v >> bits);
    }
  }
  return n;
}

/* Opens url in chromium with a width x height phone viewport (the DevTools protocol's device
 * metrics override: mobile, 3 device pixels per CSS pixel as on today's phones), waits (15 s at
 * most) until the page's checks say its first refresh is done, then a second more for the
 * charts; returns the checks (malloc'd) and the page's HTML in *html, and writes a screenshot
 * to png. */
static char *phone(const char *dir, const char *url, int width, int height, const char *png, char **html) {
  struct stat st;
  if (stat(CHROMIUM, &st) != 0)
    fail_msg(CHROMIUM " is not installed (%s): run `sh tools/deps.sh test` (make test does)", strerror(errno));
  int in[2], out[2];
  assert_int_equal(pipe(in), 0);
  assert_int_equal(pipe(out), 0);
  char profile[400], err[400], user_data[440];
  snprintf(profile, sizeof profile, "%s/chromium-phone", dir);
  snprintf(err, sizeof err, "%s/chromium-phone.log", dir);
  snprintf(user_data, sizeof user_data, "--user-data-dir=%s", profile);
  cdp_t c = {0};
  c.pid = fork();
  assert_true(c.pid >= 0);
  if (c.pid == 0) {
    /* fd 3: what it reads (our in[0]); fd 4: what it writes (our out[1]). */
    int r = dup(in[0]), w = dup(out[1]);
    if (r < 0 || w < 0 || dup2(r, 3) < 0 || dup2(w, 4) < 0) _exit(126);
    int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644), devnull = open("/dev/null", O_RDWR);
    if (e < 0 || devnull < 0) _exit(126);
    dup2(devnull, STDIN_FILENO);
    dup2(devnull, STDOUT_FILENO);
    dup2(e, STDERR_FILENO);
    for (int fd = 5; fd < 1024; fd++) close(fd);
    setenv("HOME", dir, 1);
    execlp("timeout", "timeout", "-k", "5", "60", CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
           "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-dev-shm-usage",
           "--hide-scrollbars", user_data, "--remote-debugging-pipe", "about:blank", (char *)NULL);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  c.to = in[1];
  c.from = out[0];
  char *a = cdp(&c, NULL, "Target.createTarget", "{\"url\":\"about:blank\"}");
  char *target = json_str(a, "targetId");
  assert_non_null(target);
  free(a);
  char params[600];
  snprintf(params, sizeof params, "{\"targetId\":\"%s\",\"flatten\":true}", target);
  a = cdp(&c, NULL, "Target.attachToTarget", params);
  char *session = json_str(a, "sessionId");
  assert_non_null(session);
  free(a);
  snprintf(params, sizeof params,
           "{\"width\":%d,\"height\":%d,\"deviceScaleFactor\":3,\"mobile\":true,\"screenWidth\":%d,\"screenHeight\":%d}",
           width, height, width, height);
  free(cdp(&c, session, "Emulation.setDeviceMetricsOverride", params));
  snprintf(params, sizeof params, "{\"url\":\"%s\"}", url);
  free(cdp(&c, session, "Page.navigate", params));
  static const char eval[] =
      "{\"expression\":\"(document.getElementById('checks')||{}).textContent||''\",\"returnByValue\":true}";
  char *checks = NULL;
  for (long long until = now_ms() + 15000; now_ms() < until; sleep_ms(200)) {
    a = cdp(&c, session, "Runtime.evaluate", eval);
    free(checks);
    checks = json_str(a, "value");
    free(a);
    if (checks && strstr(checks, "\"ready\":true")) break;
  }
  if (!checks || !strstr(checks, "\"ready\":true")) fail_msg("the page never got ready on the phone: %s", checks);
  sleep_ms(1000);
  a = cdp(&c, session, "Runtime.evaluate", eval);
  free(checks);
  checks = json_str(a, "value");
  free(a);
  a = cdp(&c, session, "Runtime.evaluate", "{\"expression\":\"document.documentElement.outerHTML\",\"returnByValue\":true}");
  *html = json_str(a, "value");
  free(a);
  a = cdp(&c, session, "Page.captureScreenshot", "{\"format\":\"png\"}");
  char *data = json_str(a, "data");
  assert_non_null(data);
  unsigned char *bytes = malloc(strlen(data));
  size_t n = b64_decode(data, bytes);
  FILE *f = fopen(png, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(bytes, 1, n, f), n);
  fclose(f);
  free(bytes);
  free(data);
  free(a);
  int id = ++c.next_id;
  char close_msg[64];
  int cl = snprintf(close_msg, sizeof close_msg, "{\"id\":%d,\"method\":\"Browser.close\",\"params\":{}}", id);
  if (write(c.to, close_msg, (size_t)cl + 1) < 0) {
  }
  int status = 0;
  while (waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
  }
  close(c.to);
  close(c.from);
  free(c.buf);
  free(target);
  free(session);
  return checks;
}

static const char HELLO[] = "return function(event, ctx) ctx.log.info('hello ' .. (event.query.n or '')) return 'hi' end\n";
/* Answers 500: an error in the meters, without an error line in the server's log. */
static const char FAIL[] = "return function() return { status = 500, body = 'no' } end\n";
static const char TICK[] = "return { triggers = { { cron = '0 3 * * *' } }, handler = function() end }\n";
static const char BROKEN[] = "return {\n  handler = function( end,\n}\n";

static void wait_series(srv_t *s, const char *fn) {
  char path[200];
  snprintf(path, sizeof path, "/_/api/series?function=%s&minutes=1", fn);
  for (long long until = now_ms() + 8000; now_ms() < until; sleep_ms(200)) {
    http_resp_t r;
    http_get(s->port, path, &r);
    assert_int_equal(r.status, 200);
    const char *inv = strstr(r.body, "\"invocations\":[");
    int moved = inv && strcspn(inv + 15, "123456789]") < strcspn(inv + 15, "]");
    http_free(&r);
    if (moved) return;
  }
  fail_msg("no invocation of %s reached the series in 8 s", fn);
}

static void artifact(const char *name, char *out, size_t n) {
  mkdir(CR_ARTIFACTS, 0755);
  snprintf(out, n, "--screenshot=%s/%s", CR_ARTIFACTS, name);
}

static void screenshot_ok(const char *flag) {
  struct stat st;
  const char *path = flag + strlen("--screenshot=");
  if (stat(path, &st) != 0 || st.st_size < 2000) fail_msg("no screenshot at %s", path);
  print_message("screenshot kept: %s (%lld bytes)\n", path, (long long)st.st_size);
}

static void dashboard_under_load(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "hello.lua", HELLO);
  srv_write(&s, "fail.lua", FAIL);
  srv_write(&s, "tick.lua", TICK);
  srv_write(&s, "send.lua", srv_queue_sender);
  srv_write(&s, "broken.lua", BROKEN);
  srv_expect_errors(&s, 1); /* broken.lua's load error */
  srv_start(&s, "--workers 1 --series-interval 1");
  /* The mixed load: successes, server errors, queue sends; and a dead letter to redrive. */
  for (int i = 0; i < 40; i++) http_get_ok(s.port, "/hello?n=%d", i);
  for (int i = 0; i < 6; i++) {
    http_resp_t r;
    http_get(s.port, "/fail", &r);
    assert_int_equal(r.status, 500);
    http_free(&r);
  }
  for (int i = 0; i < 3; i++) srv_send_msg(&s, "orders", "o");
  free(srv_rcli(&s, "XADD", "cr:{q:orders.dlq}:s", "500-1", "type", "s", "body", "dead", "time", "400",
                "receiveCount", "5", "sourceId", "400-1", "deadAt", "500", NULL));
  wait_series(&s, "hello");
  wait_series(&s, "fail");

  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/_/", s.port);
  char *dom = chromium(s.root, url, 1280, 800, "--dump-dom");
  char *checks = page_checks(dom);
  print_message("1280x800: %s\n", checks);
  assert_non_null(strstr(checks, "\"errors\":[]"));
  assert_non_null(strstr(checks, "\"ready\":true"));
  assert_int_equal((int)json_num(checks, "functions"), 5);
  assert_int_equal((int)json_num(checks, "charts"), 4);
  assert_true(json_num(checks, "points") >= 2); /* hello's and its latency, at least */
  assert_non_null(strstr(checks, "\"overflow\":false"));
  assert_int_equal((int)json_num(checks, "width"), 1280);
  /* What the tables show: the load error with its file:line, the schedule, the queue's redrive. */
  assert_non_null(strstr(dom, "load error: broken.lua:"));
  assert_non_null(strstr(dom, "<td>0 3 * * *</td>"));
  assert_non_null(strstr(dom, "<td>orders</td>"));
  assert_non_null(strstr(dom, ">redrive 1</button>"));
  /* The logs API may not be in this build; the page says which it found. */
  const char *logs = json_val(checks, "logs");
  assert_true(logs && (strncmp(logs, "\"absent\"", 8) == 0 || strncmp(logs, "\"live\"", 6) == 0));
  free(checks);
  free(dom);

  /* The phone: 390 CSS px wide, one column, nothing wider than the screen. */
  char png[600];
  mkdir(CR_ARTIFACTS, 0755);
  snprintf(png, sizeof png, "%s/dashboard-390x844.png", CR_ARTIFACTS);
  checks = phone(s.root, url, 390, 844, png, &dom);
  print_message("390x844: %s\n", checks);
  assert_non_null(strstr(checks, "\"errors\":[]"));
  assert_non_null(strstr(checks, "\"ready\":true"));
  assert_non_null(strstr(checks, "\"overflow\":false"));
  assert_int_equal((int)json_num(checks, "width"), 390);
  assert_true(json_num(checks, "points") >= 2);
  assert_non_null(dom);
  assert_non_null(strstr(dom, ">redrive 1</button>"));
  free(checks);
  free(dom);
  char phone_shot[620];
  snprintf(phone_shot, sizeof phone_shot, "--screenshot=%s", png);
  screenshot_ok(phone_shot);

  char shot[600];
  artifact("dashboard-1280x800.png", shot, sizeof shot);
  free(chromium(s.root, url, 1280, 800, shot));
  screenshot_ok(shot);
  srv_stop(&s);
}

/* With a token, the page (which holds no data) is served to anyone and asks for the token; the
 * data stays behind it. */
static void dashboard_asks_for_the_token(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "hello.lua", HELLO);
  srv_start(&s, "--workers 1 --redis none --admin-token sekret");
  http_resp_t r;
  http_get(s.port, "/_/", &r);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(http_header(&r, "content-type"), "text/html"));
  assert_non_null(strstr(http_header(&r, "content-security-policy"), "default-src 'self'"));
  http_free(&r);
  http_get(s.port, "/_/dashboard/chart.js", &r);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "Chart"));
  http_free(&r);
  http_get(s.port, "/_/api/functions", &r);
  assert_int_equal(r.status, 401);
  http_free(&r);
  assert_int_equal(http_request(s.port, "GET", "/_/api/series?function=hello", "Authorization: Bearer sekret\r\n",
                                NULL, 0, &r),
                   0);
  assert_int_equal(r.status, 503); /* --redis none: no series */
  http_free(&r);
  assert_int_equal(http_request(s.port, "POST", "/_/", NULL, "", 0, &r), 0);
  assert_int_equal(r.status, 405);
  http_free(&r);

  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/_/", s.port);
  char *dom = chromium(s.root, url, 1280, 800, "--dump-dom");
  char *checks = page_checks(dom);
  print_message("with a token: %s\n", checks);
  assert_non_null(strstr(checks, "\"errors\":[]"));
  assert_non_null(strstr(dom, "<form id=\"login\">")); /* shown: no hidden attribute */
  assert_non_null(strstr(dom, "<main id=\"main\" hidden=\"\">"));
  free(checks);
  free(dom);
  srv_stop(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(dashboard_under_load),
      cmocka_unit_test(dashboard_asks_for_the_token),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
