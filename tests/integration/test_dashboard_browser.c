/* test_dashboard_browser.c - the dashboard at /_/ in a real browser: Debian's chromium
 * (`sh tools/deps.sh test`), headless, after a short mixed load.
 *
 * The page writes what it saw into <pre id="checks"> as JSON: the errors it caught
 * (window.onerror, unhandled rejections, console.error), whether its first refresh finished,
 * how many functions it listed, its charts and their non-zero data points, whether the
 * document is wider than the window. The test drives chromium over its DevTools protocol
 * (--remote-debugging-pipe) at 1280x800 and as a 390-px-wide phone, reads the checks and the
 * page's HTML, and keeps a screenshot of each under the build folder (CR_ARTIFACTS); a line
 * logged after the page opened must show in its live tail. With --admin-token the page is served but asks for the token: its
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
 * no window narrower than 500 px, and its virtual clock waits on a fetch that never ends (the
 * live log tail): the dashboard itself is driven over the DevTools protocol (page_open()
 * below); this is for the page that stops at its login form. */
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

/* A page open in chromium, driven over the pipe. */
typedef struct {
  cdp_t c;
  char *target, *session;
} page_t;

/* Opens url in chromium with a width x height viewport (the DevTools protocol's device
 * metrics override; mobile: a phone's, 3 device pixels per CSS pixel). Real time, no
 * virtual clock: the page's live log tail (a fetch that never ends) does not stop it. */
static void page_open(page_t *pg, const char *dir, const char *url, int width, int height, int mobile) {
  struct stat st;
  if (stat(CHROMIUM, &st) != 0)
    fail_msg(CHROMIUM " is not installed (%s): run `sh tools/deps.sh test` (make test does)", strerror(errno));
  int in[2], out[2];
  assert_int_equal(pipe(in), 0);
  assert_int_equal(pipe(out), 0);
  char profile[400], err[400], user_data[440];
  snprintf(profile, sizeof profile, "%s/chromium-cdp-%d", dir, width);
  snprintf(err, sizeof err, "%s/chromium-cdp-%d.log", dir, width);
  snprintf(user_data, sizeof user_data, "--user-data-dir=%s", profile);
  memset(pg, 0, sizeof *pg);
  cdp_t *c = &pg->c;
  c->pid = fork();
  assert_true(c->pid >= 0);
  if (c->pid == 0) {
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
  c->to = in[1];
  c->from = out[0];
  char *a = cdp(c, NULL, "Target.createTarget", "{\"url\":\"about:blank\"}");
  pg->target = json_str(a, "targetId");
  assert_non_null(pg->target);
  free(a);
  char params[600];
  snprintf(params, sizeof params, "{\"targetId\":\"%s\",\"flatten\":true}", pg->target);
  a = cdp(c, NULL, "Target.attachToTarget", params);
  pg->session = json_str(a, "sessionId");
  assert_non_null(pg->session);
  free(a);
  snprintf(params, sizeof params,
           "{\"width\":%d,\"height\":%d,\"deviceScaleFactor\":%d,\"mobile\":%s,\"screenWidth\":%d,\"screenHeight\":%d}",
           width, height, mobile ? 3 : 1, mobile ? "true" : "false", width, height);
  free(cdp(c, pg->session, "Emulation.setDeviceMetricsOverride", params));
  snprintf(params, sizeof params, "{\"url\":\"%s\"}", url);
  free(cdp(c, pg->session, "Page.navigate", params));
}

/* The value of a JavaScript expression that yields a string (malloc'd; NULL if it did not). */
static char *page_eval(page_t *pg, const char *expr) {
  char params[1024];
  snprintf(params, sizeof params, "{\"expression\":\"%s\",\"returnByValue\":true}", expr);
  char *a = cdp(&pg->c, pg->session, "Runtime.evaluate", params);
  char *v = json_str(a, "value");
  free(a);
  return v;
}

/* The page's checks once they hold needle (15 s at most; fails past it). */
static char *page_checks_when(page_t *pg, const char *needle) {
  char *checks = NULL;
  for (long long until = now_ms() + 15000; now_ms() < until; sleep_ms(200)) {
    free(checks);
    checks = page_eval(pg, "(document.getElementById('checks')||{}).textContent||''");
    if (checks && strstr(checks, needle)) return checks;
  }
  fail_msg("the page's checks never held %s: %s", needle, checks);
  return NULL;
}

static void page_screenshot(page_t *pg, const char *png) {
  char *a = cdp(&pg->c, pg->session, "Page.captureScreenshot", "{\"format\":\"png\"}");
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
  struct stat st;
  if (stat(png, &st) != 0 || st.st_size < 2000) fail_msg("no screenshot at %s", png);
  print_message("screenshot kept: %s (%lld bytes)\n", png, (long long)st.st_size);
}

static void page_close(page_t *pg) {
  cdp_t *c = &pg->c;
  char close_msg[64];
  int cl = snprintf(close_msg, sizeof close_msg, "{\"id\":%d,\"method\":\"Browser.close\",\"params\":{}}", ++c->next_id);
  if (write(c->to, close_msg, (size_t)cl + 1) < 0) {
  }
  int status = 0;
  while (waitpid(c->pid, &status, 0) < 0 && errno == EINTR) {
  }
  close(c->to);
  close(c->from);
  free(c->buf);
  free(pg->target);
  free(pg->session);
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
  mkdir(CR_ARTIFACTS, 0755);
  static const struct {
    int w, h, mobile;
    const char *png;
  } sizes[] = {{1280, 800, 0, "dashboard-1280x800.png"}, {390, 844, 1, "dashboard-390x844.png"}};
  for (size_t k = 0; k < 2; k++) {
    page_t pg;
    page_open(&pg, s.root, url, sizes[k].w, sizes[k].h, sizes[k].mobile);
    char *checks = page_checks_when(&pg, "\"ready\":true");
    /* A second more for the charts to settle, then what the page saw. */
    sleep_ms(1000);
    free(checks);
    checks = page_checks_when(&pg, "\"ready\":true");
    print_message("%dx%d: %s\n", sizes[k].w, sizes[k].h, checks);
    assert_non_null(strstr(checks, "\"errors\":[]"));
    assert_int_equal((int)json_num(checks, "functions"), 5);
    assert_int_equal((int)json_num(checks, "charts"), 4);
    assert_true(json_num(checks, "points") >= 2); /* hello's and its latency, at least */
    assert_non_null(strstr(checks, "\"overflow\":false"));
    assert_int_equal((int)json_num(checks, "width"), sizes[k].w);
    /* What the tables show: the load error with its file:line, the schedule, the queue's redrive. */
    char *dom = page_eval(&pg, "document.documentElement.outerHTML");
    assert_non_null(dom);
    assert_non_null(strstr(dom, "load error: broken.lua:"));
    assert_non_null(strstr(dom, "<td>0 3 * * *</td>"));
    assert_non_null(strstr(dom, "<td>orders</td>"));
    assert_non_null(strstr(dom, ">redrive 1</button>"));
    free(dom);
    /* The live tail: a line logged after the page opened shows in it. */
    const char *logs = json_val(checks, "logs");
    if (!logs || strncmp(logs, "\"live\"", 6) != 0) fail_msg("the page's log tail is not live: %s", checks);
    char path[64];
    snprintf(path, sizeof path, "/hello?n=after-open-%zu", k);
    http_get_ok(s.port, "%s", path);
    char needle[64];
    snprintf(needle, sizeof needle, "hello after-open-%zu", k);
    for (long long until = now_ms() + 10000;; sleep_ms(200)) {
      char *text = page_eval(&pg, "document.getElementById('logs').textContent");
      int seen = text && strstr(text, needle);
      free(text);
      if (seen) break;
      if (now_ms() > until) fail_msg("the live tail never showed '%s'", needle);
    }
    free(checks);
    char png[600];
    snprintf(png, sizeof png, "%s/%s", CR_ARTIFACTS, sizes[k].png);
    page_screenshot(&pg, png);
    page_close(&pg);
  }
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

  /* Signing in: the token typed into the form opens the dashboard (the APIs take it as a
   * bearer token), and a wrong one brings the form back. */
  page_t pg;
  page_open(&pg, s.root, url, 1280, 800, 0);
  free(page_checks_when(&pg, "\"width\":1280"));
  free(page_eval(&pg, "document.getElementById('token').value='wrong';"
                      "document.getElementById('login').requestSubmit(); 'sent'"));
  for (long long until = now_ms() + 10000;; sleep_ms(200)) {
    char *msg = page_eval(&pg, "document.getElementById('login').hidden ? '' : document.getElementById('login-error').textContent");
    int refused = msg && strcmp(msg, "the token was refused") == 0;
    free(msg);
    if (refused) break;
    if (now_ms() > until) fail_msg("a wrong token did not bring the form back");
  }
  free(page_eval(&pg, "document.getElementById('token').value='sekret';"
                      "document.getElementById('login').requestSubmit(); 'sent'"));
  checks = page_checks_when(&pg, "\"ready\":true");
  print_message("signed in: %s\n", checks);
  assert_non_null(strstr(checks, "\"errors\":[]"));
  assert_int_equal((int)json_num(checks, "functions"), 1);
  free(checks);
  char *stored = page_eval(&pg, "sessionStorage.getItem('crescent.adminToken')");
  assert_string_equal(stored, "sekret");
  free(stored);
  page_close(&pg);
  srv_stop(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(dashboard_under_load),
      cmocka_unit_test(dashboard_asks_for_the_token),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
