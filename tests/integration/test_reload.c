/* test_reload.c - hot reload (docs/architecture.md §6) against the real binary: files
 * added, changed, broken, fixed, renamed, deleted, nested folders made after
 * start, shared modules, route conflicts, SIGHUP with --no-watch, warm
 * instances of a new version, and reloads under load with zero failed
 * requests. Each case checks what answers (body and X-Crescent-Version) and
 * what the log says. Every wait is bounded: a change has 3 s to be live. */
#include <errno.h>
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
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define LIVE_MS 3000 /* how long a change may take to be live */
#define SERVER_ARGS "--redis none --workers 2"

/* --- helpers ------------------------------------------------------------------------------------ */

/* X-Crescent-Version of r, "<number>-<12 hex digits>": returns the number
 * (0 if absent or malformed) and copies the hash. */
static unsigned version_of(const http_resp_t *r, char hash[16]) {
  const char *v = http_header(r, "x-crescent-version");
  if (hash) hash[0] = '\0';
  if (!v) return 0;
  unsigned n = 0;
  char h[16] = "";
  if (sscanf(v, "%u-%15[0-9a-f]", &n, h) != 2 || strlen(h) != 12) return 0;
  if (hash) memcpy(hash, h, 13);
  return n;
}

/* The worker that answered r, from its report line (-1 if none in 3 s). */
static int worker_of(srv_t *s, const http_resp_t *r) {
  const char *id = http_header(r, "x-request-id");
  if (!id) return -1;
  char needle[160];
  snprintf(needle, sizeof needle, "\"requestId\":\"%s\"", id);
  if (srv_log_wait(s, 1, 3000, "\"msg\":\"report\"", needle, NULL) < 1) return -1;
  char *log = srv_log(s);
  int w = -1;
  for (char *line = log; line && *line;) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = '\0';
    if (strstr(line, "\"msg\":\"report\"") && strstr(line, needle)) {
      char *p = strstr(line, "\"worker\":");
      if (p) w = atoi(p + 9);
      break;
    }
    line = nl ? nl + 1 : NULL;
  }
  free(log);
  return w;
}

/* The report line of r contains needle? (waits for the line, 3 s). */
static int report_has(srv_t *s, const http_resp_t *r, const char *needle) {
  const char *id = http_header(r, "x-request-id");
  if (!id) return 0;
  char idn[160];
  snprintf(idn, sizeof idn, "\"requestId\":\"%s\"", id);
  return srv_log_wait(s, 1, 3000, "\"msg\":\"report\"", idn, needle, NULL) >= 1;
}

/* Per worker, the newest version it answered with: a worker never goes back
 * to an older version once it served a newer one. */
typedef struct {
  unsigned seen[16];
} mono_t;

static void mono_check(srv_t *s, mono_t *m, const http_resp_t *r, const char *path) {
  unsigned v = version_of(r, NULL);
  if (!v) fail_msg("GET %s: no X-Crescent-Version in %s", path, r->head);
  int w = worker_of(s, r);
  if (w < 0 || w >= 16) fail_msg("GET %s: no report line for request %s", path, http_header(r, "x-request-id"));
  if (v < m->seen[w])
    fail_msg("GET %s: worker %d answered with version %u after it had answered with version %u", path, w, v,
             m->seen[w]);
  m->seen[w] = v;
}

/* Polls GET path until it answers `status` with body `want` (exactly; NULL:
 * any body), at most timeout_ms. On the way, every answer must be `prev_status`
 * with body `prev` (NULL: anything goes): the old state keeps answering until
 * the new one does. mono, if given, checks every function answer. The final
 * answer is left in *out (free it) if out is given. Returns the ms it took. */
static long long wait_answer(srv_t *s, const char *path, int status, const char *want, int prev_status,
                             const char *prev, mono_t *mono, http_resp_t *out) {
  long long t0 = now_ms(), deadline = t0 + LIVE_MS;
  http_resp_t r;
  for (;;) {
    http_get(s->port, path, &r);
    if (mono && r.status == 200) mono_check(s, mono, &r, path);
    if (r.status == status && (!want || strcmp(r.body, want) == 0)) break;
    char msg[1024] = "";
    if (prev && (r.status != prev_status || strcmp(r.body, prev) != 0))
      snprintf(msg, sizeof msg,
               "GET %s: while waiting for %d '%s', got %d '%s' (the old answer %d '%s' should hold until then)", path,
               status, want ? want : "*", r.status, r.body, prev_status, prev);
    else if (now_ms() >= deadline)
      snprintf(msg, sizeof msg, "GET %s: no %d '%s' within %d ms; last answer %d '%s'", path, status,
               want ? want : "*", LIVE_MS, r.status, r.body);
    http_free(&r);
    if (msg[0]) fail_msg("%s", msg);
    sleep_ms(5);
  }
  if (out) *out = r;
  else http_free(&r);
  return now_ms() - t0;
}

/* GET must answer 200 with exactly `want` and version number ver (0: any). */
static void expect_body(srv_t *s, const char *path, const char *want, unsigned ver, const char *hash) {
  http_resp_t r;
  http_get(s->port, path, &r);
  char h[16];
  unsigned v = version_of(&r, h);
  char msg[1024] = "";
  if (r.status != 200 || strcmp(r.body, want) != 0)
    snprintf(msg, sizeof msg, "GET %s: got %d '%s', want 200 '%s'", path, r.status, r.body, want);
  else if (ver && v != ver) snprintf(msg, sizeof msg, "GET %s: version %u, want %u", path, v, ver);
  else if (hash && strcmp(h, hash) != 0) snprintf(msg, sizeof msg, "GET %s: hash %s, want %s", path, h, hash);
  http_free(&r);
  if (msg[0]) fail_msg("%s", msg);
}

static void expect_status(srv_t *s, const char *path, int want) {
  http_resp_t r;
  http_get(s->port, path, &r);
  char msg[1024] = "";
  if (r.status != want) snprintf(msg, sizeof msg, "GET %s: got %d '%s', want %d", path, r.status, r.body, want);
  http_free(&r);
  if (msg[0]) fail_msg("%s", msg);
}

/* Polls /_/api/functions until name's entry holds every needle (NULL-ended),
 * at most LIVE_MS (each worker answers from its own copy of the registry).
 * Returns the entry (malloc'd). */
static char *wait_api(srv_t *s, const char *name, const char *needle, ...) {
  long long deadline = now_ms() + LIVE_MS;
  for (;;) {
    http_resp_t r;
    http_get(s->port, "/_/api/functions", &r);
    assert_int_equal(r.status, 200);
    char *e = api_fn_entry(r.body, name);
    http_free(&r);
    const char *missing = NULL;
    va_list ap;
    va_start(ap, needle);
    for (const char *n = needle; n && !missing; n = va_arg(ap, const char *))
      if (!e || !strstr(e, n)) missing = n;
    va_end(ap);
    if (!missing) return e;
    if (now_ms() >= deadline) fail_msg("/_/api/functions: '%s' not in the entry of %s: %s", missing, name, e ? e : "(none)");
    free(e);
    sleep_ms(10);
  }
}

/* Waits until /_/api/functions says name has an invocation running. The
 * worker running it cannot answer meanwhile: an API request that lands on
 * it is given up after 100 ms and tried again (another connection may land
 * on the other worker). */
static void wait_busy(srv_t *s, const char *name) {
  long long deadline = now_ms() + LIVE_MS;
  while (now_ms() < deadline) {
    int fd = http_connect(s->port);
    assert_true(fd >= 0);
    http_sends(fd, "GET /_/api/functions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    http_resp_t r;
    int rc = http_read(fd, &r, 0, 100);
    http_close(fd);
    if (rc == 0) {
      char *e = api_fn_entry(r.body, name);
      int busy = e && strstr(e, "\"instances\":{\"busy\":1,") != NULL;
      free(e);
      http_free(&r);
      if (busy) return;
    }
    sleep_ms(5);
  }
  fail_msg("%s never showed a running invocation in /_/api/functions", name);
}

/* Waits for n log lines holding the needles, then checks no more come in
 * the next 300 ms (each error is logged once). */
static void log_exactly(srv_t *s, int n, const char *a, const char *b, const char *c) {
  int got = srv_log_wait(s, n, LIVE_MS, a, b, c, NULL);
  if (got == n) {
    sleep_ms(300);
    got = srv_log_count(s, a, b, c, NULL);
  }
  if (got != n) {
    char *log = srv_log(s);
    fprintf(stderr, "the log:\n%s\n", log);
    free(log);
    fail_msg("want %d log line(s) with '%s' '%s' '%s', found %d", n, a, b ? b : "", c ? c : "", got);
  }
}

/* --- a load generator: keep-alive connections, one thread, non-blocking --------------------------- */

#define LD_MAX_CONNS 8
#define LD_MAX_VERSIONS 1024

typedef struct {
  int fd;
  char *buf;
  size_t len, cap;
  int busy;
  long long sent_ms;
  long long ready_ms; /* may send again from then (paced: about 1000 requests/s a connection) */
  unsigned last_ver;
} lconn_t;

typedef struct {
  int port;
  char req[256];
  size_t reqlen;
  int nconns;
  lconn_t c[LD_MAX_CONNS];
  const char *const *bodies; /* the answers that are right */
  int nbodies;
  long counts[8];            /* answers with each body */
  long responses, failures;
  char problem[1024];        /* the first failure */
  unsigned char ver_body[LD_MAX_VERSIONS]; /* body index + 1 seen with each version number */
  unsigned maxver;
  int stop_sending;
} load_t;

static void load_fail(load_t *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void load_fail(load_t *ld, const char *fmt, ...) {
  if (ld->failures++ == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ld->problem, sizeof ld->problem, fmt, ap);
    va_end(ap);
  }
}

static void lconn_open(load_t *ld, lconn_t *c) {
  c->fd = http_connect(ld->port);
  c->len = 0;
  c->busy = 0;
  c->last_ver = 0;
  if (c->fd < 0) {
    load_fail(ld, "cannot connect: %s", strerror(errno));
    return;
  }
  fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
}

static void lconn_close(lconn_t *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->busy = 0;
  c->len = 0;
}

static void load_init(load_t *ld, int port, const char *path, const char *const *bodies, int nbodies, int nconns) {
  memset(ld, 0, sizeof *ld);
  ld->port = port;
  ld->reqlen = (size_t)snprintf(ld->req, sizeof ld->req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
  ld->bodies = bodies;
  ld->nbodies = nbodies;
  ld->nconns = nconns;
  for (int i = 0; i < nconns; i++) {
    ld->c[i].cap = 65536;
    ld->c[i].buf = malloc(ld->c[i].cap);
    lconn_open(ld, &ld->c[i]);
  }
}

static void load_free(load_t *ld) {
  for (int i = 0; i < ld->nconns; i++) {
    lconn_close(&ld->c[i]);
    free(ld->c[i].buf);
  }
}

/* A header's value in head[0..len) (case-insensitive name), copied. */
static int head_value(const char *head, size_t len, const char *name, char *out, size_t outlen) {
  size_t nl = strlen(name);
  const char *p = head, *end = head + len;
  while (p < end) {
    const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
    if (!eol) break;
    if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
      const char *v = p + nl + 1;
      while (v < eol && *v == ' ') v++;
      size_t n = (size_t)(eol - v);
      if (n >= outlen) n = outlen - 1;
      memcpy(out, v, n);
      out[n] = '\0';
      return 1;
    }
    p = eol + 2;
  }
  return 0;
}

/* Takes one complete response off c if there is one; returns 1 if it did. */
static int load_parse(load_t *ld, int ci) {
  lconn_t *c = &ld->c[ci];
  char *end = c->len ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
  if (!end) return 0;
  size_t head = (size_t)(end - c->buf) + 4;
  char val[128];
  size_t cl = 0;
  if (head_value(c->buf, head, "content-length", val, sizeof val)) cl = (size_t)strtoull(val, NULL, 10);
  if (c->len < head + cl) return 0;
  int status = c->len > 12 ? atoi(c->buf + 9) : 0;
  const char *body = c->buf + head;
  unsigned ver = 0;
  if (head_value(c->buf, head, "x-crescent-version", val, sizeof val)) ver = (unsigned)strtoul(val, NULL, 10);
  ld->responses++;
  int which = -1;
  for (int i = 0; i < ld->nbodies && which < 0; i++)
    if (strlen(ld->bodies[i]) == cl && memcmp(ld->bodies[i], body, cl) == 0) which = i;
  if (status != 200 || which < 0) {
    load_fail(ld, "connection %d: got %d '%.*s'", ci, status, (int)(cl > 200 ? 200 : cl), body);
  } else {
    ld->counts[which]++;
    if (!ver || ver >= LD_MAX_VERSIONS) load_fail(ld, "connection %d: bad version header '%s'", ci, val);
    else {
      /* A keep-alive connection stays on one worker: its versions only go up. */
      if (ver < c->last_ver)
        load_fail(ld, "connection %d: version %u after version %u", ci, ver, c->last_ver);
      c->last_ver = ver;
      if (ld->ver_body[ver] && ld->ver_body[ver] != which + 1)
        load_fail(ld, "version %u answered both '%s' and '%s'", ver, ld->bodies[ld->ver_body[ver] - 1],
                  ld->bodies[which]);
      ld->ver_body[ver] = (unsigned char)(which + 1);
      if (ver > ld->maxver) ld->maxver = ver;
    }
  }
  int closing = head_value(c->buf, head, "connection", val, sizeof val) && strcasecmp(val, "close") == 0;
  memmove(c->buf, c->buf + head + cl, c->len - head - cl);
  c->len -= head + cl;
  c->busy = 0;
  c->ready_ms = now_ms() + 1;
  if (closing) {
    lconn_close(c);
    if (!ld->stop_sending) lconn_open(ld, c);
  }
  return 1;
}

/* Runs the load for up to wait_ms: sends on idle connections, reads answers. */
static void load_step(load_t *ld, int wait_ms) {
  long long now = now_ms();
  struct pollfd p[LD_MAX_CONNS];
  for (int i = 0; i < ld->nconns; i++) {
    lconn_t *c = &ld->c[i];
    if (c->fd < 0 && !ld->stop_sending) lconn_open(ld, c);
    if (c->fd >= 0 && !c->busy && !ld->stop_sending && now >= c->ready_ms) {
      ssize_t w = send(c->fd, ld->req, ld->reqlen, MSG_NOSIGNAL);
      if (w != (ssize_t)ld->reqlen) {
        load_fail(ld, "connection %d: send failed: %s", i, w < 0 ? strerror(errno) : "short write");
        lconn_close(c);
      } else {
        c->busy = 1;
        c->sent_ms = now;
      }
    }
    if (c->busy && now - c->sent_ms > 5000) {
      load_fail(ld, "connection %d: no answer within 5 s", i);
      lconn_close(c);
    }
    if (c->fd >= 0 && !c->busy && !ld->stop_sending && wait_ms > 1) wait_ms = 1; /* its pause ends soon */
    p[i] = (struct pollfd){c->busy ? c->fd : -1, POLLIN, 0};
  }
  if (poll(p, (nfds_t)ld->nconns, wait_ms > 0 ? wait_ms : 0) <= 0) return;
  for (int i = 0; i < ld->nconns; i++) {
    lconn_t *c = &ld->c[i];
    if (!p[i].revents || c->fd < 0) continue;
    for (;;) {
      if (c->len == c->cap) {
        c->cap *= 2;
        c->buf = realloc(c->buf, c->cap);
      }
      ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
      if (r > 0) {
        c->len += (size_t)r;
        continue;
      }
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (r < 0 && errno == EINTR) continue;
      while (load_parse(ld, i)) {
      }
      if (c->busy) load_fail(ld, "connection %d: closed by the server (%s) before an answer", i,
                             r == 0 ? "EOF" : strerror(errno));
      lconn_close(c);
      break;
    }
    while (c->fd >= 0 && load_parse(ld, i)) {
    }
  }
}

static void load_run(load_t *ld, long long until_ms) {
  for (long long now = now_ms(); now < until_ms; now = now_ms()) load_step(ld, (int)(until_ms - now));
}

/* Stops sending and waits (bounded) for the answers still due. */
static void load_drain(load_t *ld) {
  ld->stop_sending = 1;
  long long deadline = now_ms() + 6000;
  for (;;) {
    int busy = 0;
    for (int i = 0; i < ld->nconns; i++) busy += ld->c[i].busy;
    if (!busy) break;
    if (now_ms() >= deadline) {
      load_fail(ld, "%d requests without an answer at the end", busy);
      break;
    }
    load_step(ld, 50);
  }
}

/* Waits, with the load running, until `body` has been answered at least
 * `more` more times (at most LIVE_MS). */
static void load_until_body(load_t *ld, int which, long more) {
  long want = ld->counts[which] + more;
  long long deadline = now_ms() + LIVE_MS;
  while (ld->counts[which] < want && now_ms() < deadline) load_step(ld, 10);
  if (ld->counts[which] < want)
    fail_msg("'%s' not answered within %d ms (%ld answers, %ld failures: %s)", ld->bodies[which], LIVE_MS,
             ld->responses, ld->failures, ld->problem);
}

/* --- a function's life: add, change, break, fail init, fix ------------------------------------- */

static void lifecycle(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "other.lua", "return function() return 'other' end\n");
  srv_start(&s, SERVER_ARGS);
  mono_t mono;
  memset(&mono, 0, sizeof mono);
  http_resp_t r;
  char h1[16], h2[16], h3[16];

  /* Added after start: routed and answering. */
  expect_status(&s, "/life", 404);
  srv_write(&s, "life.lua", "return function() return 'one' end\n");
  wait_answer(&s, "/life", 200, "one", 404, "{\"error\":\"not found\"}", &mono, &r);
  assert_int_equal(version_of(&r, h1), 1);
  http_free(&r);
  log_exactly(&s, 1, "\"msg\":\"loaded life.lua (version 1, ", h1, NULL);
  free(wait_api(&s, "life", "\"routed\":true", "\"version\":1,", "\"error\":null", NULL));

  /* Changed: version 2 with a new hash; once a worker answered with it, it
   * never answers with version 1 again. */
  srv_write(&s, "life.lua", "return function() return 'two' end\n");
  wait_answer(&s, "/life", 200, "two", 200, "one", &mono, &r);
  assert_int_equal(version_of(&r, h2), 2);
  assert_string_not_equal(h1, h2);
  http_free(&r);
  log_exactly(&s, 1, "\"msg\":\"loaded life.lua (version 2, ", h2, "new invocations get this version");
  /* Until both workers answered with version 2 (they replay the change on
   * their own), then never version 1 again. */
  for (int i = 0; i < 200 && !(mono.seen[0] == 2 && mono.seen[1] == 2); i++) {
    http_get(s.port, "/life", &r);
    mono_check(&s, &mono, &r, "/life");
    if (r.status != 200 || (strcmp(r.body, "one") != 0 && strcmp(r.body, "two") != 0))
      fail_msg("GET /life: got %d '%s'", r.status, r.body);
    http_free(&r);
  }
  if (mono.seen[0] != 2 || mono.seen[1] != 2)
    fail_msg("both workers did not answer with version 2 (worker 0: %u, worker 1: %u)", mono.seen[0], mono.seen[1]);
  for (int i = 0; i < 20; i++) expect_body(&s, "/life", "two", 2, h2);

  /* A syntax error: version 2 keeps answering, one error line with file:line,
   * and the API shows the error next to version 2. */
  srv_write_inplace(&s, "life.lua", "return function()\n  local x = = 1\nend\n");
  srv_expect_errors(&s, 1);
  log_exactly(&s, 1, "\"level\":\"error\"", "life.lua:2:", "(version 2 keeps serving)");
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "\"function\":\"life\"", NULL), 1);
  for (int i = 0; i < 10; i++) expect_body(&s, "/life", "two", 2, h2);
  char *e = wait_api(&s, "life", "\"version\":2,", h2, "\"error\":\"life.lua:2:", "\"routed\":true", NULL);
  free(e);

  /* A runtime error in init: still version 2, one more error line. */
  srv_write(&s, "life.lua", "local n = 1\nerror('boom')\nreturn function() return 'never' end\n");
  srv_expect_errors(&s, 1);
  log_exactly(&s, 1, "\"level\":\"error\"", "life.lua:2: boom", "(version 2 keeps serving)");
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "\"function\":\"life\"", NULL), 2);
  for (int i = 0; i < 10; i++) expect_body(&s, "/life", "two", 2, h2);
  free(wait_api(&s, "life", "\"version\":2,", "\"error\":\"life.lua:2: boom", NULL));

  /* Fixed: version 3 (failed loads make no version), the error is cleared. */
  srv_write(&s, "life.lua", "return function() return 'three' end\n");
  wait_answer(&s, "/life", 200, "three", 200, "two", &mono, &r);
  assert_int_equal(version_of(&r, h3), 3);
  assert_string_not_equal(h3, h2);
  assert_string_not_equal(h3, h1);
  http_free(&r);
  log_exactly(&s, 1, "\"msg\":\"loaded life.lua (version 3, ", h3, NULL);
  free(wait_api(&s, "life", "\"version\":3,", h3, "\"error\":null", "\"routed\":true", NULL));
  for (int i = 0; i < 10; i++) {
    http_get(s.port, "/life", &r);
    mono_check(&s, &mono, &r, "/life");
    http_free(&r);
  }
  for (int i = 0; i < 10; i++) expect_body(&s, "/life", "three", 3, h3);
  /* The other function was not touched. */
  expect_body(&s, "/other", "other", 1, NULL);
  assert_int_equal(srv_log_count(&s, "loaded other.lua", NULL), 1);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- a new file that is broken: 503 until fixed ------------------------------------------------- */

static void broken_new_file(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "ok.lua", "return function() return 'ok' end\n");
  srv_start(&s, SERVER_ARGS);
  http_resp_t r;

  srv_write(&s, "fresh.lua", "return function(\n  return 'x'\nend\n");
  srv_expect_errors(&s, 1);
  wait_answer(&s, "/fresh", 503, NULL, 404, "{\"error\":\"not found\"}", NULL, &r);
  assert_non_null(strstr(r.body, "\"error\":\"function failed to load\""));
  assert_non_null(strstr(r.body, "\"function\":\"fresh\""));
  assert_null(http_header(&r, "x-crescent-version"));
  http_free(&r);
  log_exactly(&s, 1, "\"level\":\"error\"", "fresh.lua:2:", "\"function\":\"fresh\"");
  assert_int_equal(srv_log_count(&s, "keeps serving", NULL), 0);
  free(wait_api(&s, "fresh", "\"version\":null", "\"error\":\"fresh.lua:2:", NULL));
  for (int i = 0; i < 10; i++) {
    http_get(s.port, "/fresh", &r);
    if (r.status != 503 || !strstr(r.body, "function failed to load"))
      fail_msg("GET /fresh: got %d '%s', want 503 function failed to load", r.status, r.body);
    http_free(&r);
  }

  /* Broken another way (init fails): still 503, a second error line. */
  srv_write_inplace(&s, "fresh.lua", "local t = nil\nlocal x = t.field\nreturn function() return 'x' end\n");
  srv_expect_errors(&s, 1);
  log_exactly(&s, 1, "\"level\":\"error\"", "fresh.lua:2:", "index local 't'");
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "\"function\":\"fresh\"", NULL), 2);
  expect_status(&s, "/fresh", 503);

  /* Fixed: version 1 answers, the error is gone. */
  srv_write(&s, "fresh.lua", "return function() return 'fixed' end\n");
  wait_answer(&s, "/fresh", 200, "fixed", 503, NULL, NULL, &r);
  assert_int_equal(version_of(&r, NULL), 1);
  http_free(&r);
  free(wait_api(&s, "fresh", "\"version\":1,", "\"error\":null", "\"routed\":true", NULL));
  expect_body(&s, "/ok", "ok", 1, NULL);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- rename and delete --------------------------------------------------------------------------- */

static void rename_and_delete(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "a.lua",
            "return function(event, ctx)\n"
            "  if event.query.slow then\n"
            "    local t = os.clock()\n"
            "    while os.clock() - t < 1.0 do end\n"
            "  end\n"
            "  return 'hi from ' .. ctx.functionName\n"
            "end\n");
  srv_start(&s, SERVER_ARGS);
  http_resp_t r;
  char ha[16], hb[16];

  http_get(s.port, "/a", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "hi from a");
  assert_int_equal(version_of(&r, ha), 1);
  http_free(&r);

  /* An invocation in flight when the file goes away finishes on its version. */
  int slow = http_connect(s.port);
  assert_true(slow >= 0);
  http_sends(slow, "GET /a?slow=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  wait_busy(&s, "a");

  srv_rename(&s, "a.lua", "b.lua"); /* mv a.lua b.lua */
  wait_answer(&s, "/b", 200, "hi from b", 404, "{\"error\":\"not found\"}", NULL, &r);
  assert_int_equal(version_of(&r, hb), 1);
  http_free(&r);
  wait_answer(&s, "/a", 404, NULL, 200, "hi from a", NULL, NULL);
  /* The slow one answered in full, from a's version 1. */
  assert_int_equal(http_read(slow, &r, 0, 10000), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "hi from a");
  char hs[16];
  assert_int_equal(version_of(&r, hs), 1);
  assert_string_equal(hs, ha);
  http_free(&r);
  http_close(slow);
  for (int i = 0; i < 10; i++) {
    expect_status(&s, "/a", 404);
    expect_body(&s, "/b", "hi from b", 1, hb);
  }
  log_exactly(&s, 1, "\"msg\":\"a.lua was removed: no longer routed\"", NULL, NULL);
  log_exactly(&s, 1, "\"msg\":\"loaded b.lua (version 1, ", NULL, NULL);
  /* A removed function says so, and keeps its meters (its two invocations) until restart. */
  free(wait_api(&s, "a", "\"routed\":false", "\"removed\":true", "\"version\":null", "\"invocations\":2,", NULL));
  char *eb = wait_api(&s, "b", "\"routed\":true", "\"version\":1,", NULL);
  assert_null(strstr(eb, "\"removed\""));
  free(eb);

  /* Deleted: 404. */
  srv_remove(&s, "b.lua");
  wait_answer(&s, "/b", 404, NULL, 200, "hi from b", NULL, NULL);
  for (int i = 0; i < 10; i++) expect_status(&s, "/b", 404);
  log_exactly(&s, 1, "\"msg\":\"b.lua was removed: no longer routed\"", NULL, NULL);
  free(wait_api(&s, "b", "\"routed\":false", "\"version\":null", NULL));

  /* Back again: a new version of the same function. */
  srv_write(&s, "b.lua", "return function() return 'b again' end\n");
  wait_answer(&s, "/b", 200, "b again", 404, NULL, NULL, &r);
  assert_int_equal(version_of(&r, NULL), 2);
  http_free(&r);
  eb = wait_api(&s, "b", "\"routed\":true", "\"version\":2,", NULL);
  assert_null(strstr(eb, "\"removed\""));
  free(eb);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- folders made after start -------------------------------------------------------------------- */

static void nested_folders(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_start(&s, SERVER_ARGS); /* an empty folder */
  http_resp_t r;

  /* mkdir -p functions/x/y, then a file written in it at once. */
  srv_mkdir(&s, "x/y");
  srv_write_inplace(&s, "x/y/z.lua", "return function() return 'z' end\n");
  wait_answer(&s, "/x/y/z", 200, "z", 404, NULL, NULL, &r);
  assert_int_equal(version_of(&r, NULL), 1);
  http_free(&r);
  log_exactly(&s, 1, "\"msg\":\"loaded x/y/z.lua (version 1, ", "\"function\":\"x/y/z\"", NULL);

  /* Deeper, made by the writer (folders on the way, then a rename into place). */
  srv_write(&s, "x/y2/deep/w.lua", "return function() return 'w' end\n");
  wait_answer(&s, "/x/y2/deep/w", 200, "w", 404, NULL, NULL, NULL);

  /* A folder moved in whole, with a file already in it. */
  char staged[600], target[600];
  snprintf(staged, sizeof staged, "%s/staging", s.root);
  assert_int_equal(mkdir(staged, 0755), 0);
  snprintf(staged, sizeof staged, "%s/staging/r.lua", s.root);
  FILE *f = fopen(staged, "w");
  assert_non_null(f);
  fputs("return function() return 'r' end\n", f);
  fclose(f);
  snprintf(staged, sizeof staged, "%s/staging", s.root);
  snprintf(target, sizeof target, "%s/q", s.fndir);
  assert_int_equal(rename(staged, target), 0);
  wait_answer(&s, "/q/r", 200, "r", 404, NULL, NULL, NULL);

  /* Files in the new folders keep being watched. */
  srv_write_inplace(&s, "x/y/z.lua", "return function() return 'z2' end\n");
  wait_answer(&s, "/x/y/z", 200, "z2", 200, "z", NULL, &r);
  assert_int_equal(version_of(&r, NULL), 2);
  http_free(&r);
  srv_write(&s, "q/r.lua", "return function() return 'r2' end\n");
  wait_answer(&s, "/q/r", 200, "r2", 200, "r", NULL, NULL);

  /* A folder removed whole: its functions stop being routed. */
  srv_remove(&s, "x/y/z.lua");
  char dir[700];
  snprintf(dir, sizeof dir, "%s/x/y", s.fndir);
  assert_int_equal(rmdir(dir), 0);
  wait_answer(&s, "/x/y/z", 404, NULL, 200, "z2", NULL, NULL);
  expect_body(&s, "/x/y2/deep/w", "w", 1, NULL);
  assert_int_equal(srv_stop(&s), 0);
}

/* A folder renamed (mv functions/x functions/y) moves its functions; a
 * folder made inside it afterwards is watched like any other: a file
 * written there well after the folder was made is picked up. */
static void renamed_folder(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "x/a.lua", "return function() return 'a' end\n");
  srv_write(&s, "x/old/b.lua", "return function() return 'b' end\n");
  srv_start(&s, SERVER_ARGS);
  expect_body(&s, "/x/a", "a", 1, NULL);
  expect_body(&s, "/x/old/b", "b", 1, NULL);

  srv_rename(&s, "x", "y");
  wait_answer(&s, "/y/a", 200, "a", 404, NULL, NULL, NULL);
  wait_answer(&s, "/x/a", 404, NULL, 200, "a", NULL, NULL);
  expect_body(&s, "/y/old/b", "b", 1, NULL);
  expect_status(&s, "/x/old/b", 404);

  /* Files in the moved folders are still watched... */
  srv_write_inplace(&s, "y/a.lua", "return function() return 'a2' end\n");
  wait_answer(&s, "/y/a", 200, "a2", 200, "a", NULL, NULL);
  srv_write(&s, "y/old/b.lua", "return function() return 'b2' end\n");
  wait_answer(&s, "/y/old/b", 200, "b2", 200, "b", NULL, NULL);

  /* ...and so are folders made in them later. */
  srv_mkdir(&s, "y/sub");
  sleep_ms(400); /* the folder's own event has been handled by now */
  srv_write_inplace(&s, "y/sub/c.lua", "return function() return 'c' end\n");
  wait_answer(&s, "/y/sub/c", 200, "c", 404, NULL, NULL, NULL);
  srv_mkdir(&s, "y/old/deeper");
  sleep_ms(400);
  srv_write(&s, "y/old/deeper/d.lua", "return function() return 'd' end\n");
  wait_answer(&s, "/y/old/deeper/d", 200, "d", 404, NULL, NULL, NULL);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- shared modules --------------------------------------------------------------------------- */

static void shared_module(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "lib/util.lua", "return { tag = 'u1' }\n");
  srv_write(&s, "_local.lua", "return { tag = 'l1' }\n");
  srv_write(&s, "one.lua", "local u = require 'lib.util'\nreturn function() return 'one:' .. u.tag end\n");
  srv_write(&s, "two.lua",
            "local u = require 'lib.util'\nlocal l = require '_local'\n"
            "return function() return 'two:' .. u.tag .. ':' .. l.tag end\n");
  srv_write(&s, "three.lua", "return function() return 'three' end\n");
  srv_start(&s, SERVER_ARGS);
  http_resp_t r;
  char h1[16], h2[16], h3[16], n1[16], n2[16];

  http_get(s.port, "/one", &r);
  assert_string_equal(r.body, "one:u1");
  assert_int_equal(version_of(&r, h1), 1);
  http_free(&r);
  http_get(s.port, "/two", &r);
  assert_string_equal(r.body, "two:u1:l1");
  assert_int_equal(version_of(&r, h2), 1);
  http_free(&r);
  http_get(s.port, "/three", &r);
  assert_string_equal(r.body, "three");
  assert_int_equal(version_of(&r, h3), 1);
  http_free(&r);
  /* Modules are not functions. */
  expect_status(&s, "/lib/util", 404);
  expect_status(&s, "/_local", 404);

  /* lib/util.lua changes: both users get a new version, three does not. */
  srv_write(&s, "lib/util.lua", "return { tag = 'u2' }\n");
  wait_answer(&s, "/one", 200, "one:u2", 200, "one:u1", NULL, &r);
  assert_int_equal(version_of(&r, n1), 2);
  assert_string_not_equal(n1, h1);
  http_free(&r);
  wait_answer(&s, "/two", 200, "two:u2:l1", 200, "two:u1:l1", NULL, &r);
  assert_int_equal(version_of(&r, n2), 2);
  assert_string_not_equal(n2, h2);
  http_free(&r);
  log_exactly(&s, 1, "\"msg\":\"loaded one.lua (version 2, ", NULL, NULL);
  log_exactly(&s, 1, "\"msg\":\"loaded two.lua (version 2, ", NULL, NULL);
  for (int i = 0; i < 5; i++) {
    expect_body(&s, "/one", "one:u2", 2, n1);
    expect_body(&s, "/two", "two:u2:l1", 2, n2);
    expect_body(&s, "/three", "three", 1, h3);
  }
  assert_int_equal(srv_log_count(&s, "loaded three.lua", NULL), 1);
  free(wait_api(&s, "three", "\"version\":1,", h3, NULL));

  /* The underscore module changes: only two. */
  srv_write_inplace(&s, "_local.lua", "return { tag = 'l2' }\n");
  wait_answer(&s, "/two", 200, "two:u2:l2", 200, "two:u2:l1", NULL, &r);
  assert_int_equal(version_of(&r, NULL), 3);
  http_free(&r);
  sleep_ms(200);
  expect_body(&s, "/one", "one:u2", 2, n1);
  expect_body(&s, "/three", "three", 1, h3);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"loaded one.lua", NULL), 2);

  /* A broken module: its users keep their versions, one error each. */
  srv_write(&s, "lib/util.lua", "return { tag = \n");
  srv_expect_errors(&s, 2);
  log_exactly(&s, 1, "\"level\":\"error\"", "\"function\":\"one\"", "(version 2 keeps serving)");
  log_exactly(&s, 1, "\"level\":\"error\"", "\"function\":\"two\"", "(version 3 keeps serving)");
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "lib/util.lua:", NULL), 2);
  expect_body(&s, "/one", "one:u2", 2, n1);
  expect_body(&s, "/two", "two:u2:l2", 3, NULL);
  srv_write(&s, "lib/util.lua", "return { tag = 'u3' }\n");
  wait_answer(&s, "/one", 200, "one:u3", 200, "one:u2", NULL, &r);
  assert_int_equal(version_of(&r, NULL), 3);
  http_free(&r);
  wait_answer(&s, "/two", 200, "two:u3:l2", 200, "two:u2:l2", NULL, NULL);
  expect_body(&s, "/three", "three", 1, h3);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- a route conflict from a new file ----------------------------------------------------------- */

static void route_conflict(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "first.lua", "return { routes = { 'GET /same' }, handler = function() return 'first' end }\n");
  srv_write(&s, "other.lua", "return function() return 'o1' end\n");
  srv_start(&s, SERVER_ARGS);
  http_resp_t r;
  char hf[16];
  http_get(s.port, "/same", &r);
  assert_string_equal(r.body, "first");
  assert_int_equal(version_of(&r, hf), 1);
  http_free(&r);

  srv_write(&s, "second.lua",
            "return { routes = { 'GET /same', 'GET /second-only' }, handler = function() return 'second' end }\n");
  srv_expect_errors(&s, 1);
  log_exactly(&s, 1, "\"level\":\"error\"", "route conflict", "\"function\":\"second\"");
  /* The line names both files. */
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "route conflict", "second.lua", "first.lua", NULL), 1);
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "GET /same", NULL), 1);
  /* first.lua sorts first and keeps the route; the new file loses that route only. */
  wait_answer(&s, "/second-only", 200, "second", 404, NULL, NULL, NULL);
  for (int i = 0; i < 10; i++) expect_body(&s, "/same", "first", 1, hf);
  free(wait_api(&s, "first", "\"routed\":true", "\"error\":null", NULL));
  char *e = wait_api(&s, "second", "\"routed\":true", "\"error\":\"route conflict", "first.lua", NULL);

  /* Later reloads (other files change) do not log it again. */
  srv_write(&s, "other.lua", "return function() return 'o2' end\n");
  wait_answer(&s, "/other", 200, "o2", 200, "o1", NULL, NULL);
  srv_write(&s, "other.lua", "return function() return 'o3' end\n");
  wait_answer(&s, "/other", 200, "o3", 200, "o2", NULL, NULL);
  sleep_ms(200);
  assert_int_equal(srv_log_count(&s, "route conflict", NULL), 1);
  expect_body(&s, "/same", "first", 1, hf);

  /* The API shows it on the new file's entry, naming the file that keeps the route. */
  assert_non_null(strstr(e, "\"file\":\"second.lua\""));
  assert_non_null(strstr(e, "\"version\":1,"));
  assert_non_null(strstr(e, "GET /same is also claimed by first.lua, which serves it"));
  free(e);

  /* The first file goes: the second takes the route, its error clears. */
  srv_remove(&s, "first.lua");
  wait_answer(&s, "/same", 200, "second", 200, "first", NULL, NULL);
  expect_body(&s, "/second-only", "second", 1, NULL);
  free(wait_api(&s, "second", "\"routed\":true", "\"error\":null", NULL));
  assert_int_equal(srv_stop(&s), 0);
}

/* --- a route conflict won by the newcomer: the path rule, live and after a restart ------------------ */

static void route_conflict_path_order(void **state) {
  (void)state;
  static const char users[] =
      "return { routes = { 'GET /users', 'POST /users' }, handler = function(e) return 'users ' .. e.method end }\n";
  static const char clash[] = "return { routes = { 'GET /users' }, handler = function() return 'clash' end }\n";
  srv_t s;
  srv_init(&s);
  srv_write(&s, "users.lua", users);
  srv_start(&s, SERVER_ARGS);
  http_resp_t r;
  expect_body(&s, "/users", "users GET", 1, NULL);

  /* clash.lua sorts first: it takes GET /users at once, as a restart would;
   * users.lua keeps POST /users. */
  srv_write(&s, "clash.lua", clash);
  srv_expect_errors(&s, 1);
  wait_answer(&s, "/users", 200, "clash", 200, "users GET", NULL, NULL);
  assert_int_equal(http_request(s.port, "POST", "/users", NULL, "", 0, &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "users POST");
  http_free(&r);
  /* One error line naming the route, the loser and the winner. */
  log_exactly(&s, 1, "\"level\":\"error\"", "\"function\":\"users\"",
              "users.lua: route conflict: GET /users is also claimed by clash.lua, which serves it");
  assert_int_equal(srv_log_count(&s, "route conflict", NULL), 1);
  char *e = wait_api(&s, "users", "\"routed\":true", "\"error\":\"route conflict: GET /users is also claimed by clash.lua",
                     NULL);
  free(e);
  free(wait_api(&s, "clash", "\"routed\":true", "\"error\":null", NULL));

  /* A rescan keeps it so, without new versions or log lines. */
  srv_signal(&s, SIGHUP);
  log_exactly(&s, 1, "\"msg\":\"SIGHUP: rescanning ", NULL, NULL);
  sleep_ms(300);
  expect_body(&s, "/users", "clash", 1, NULL);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"loaded ", NULL), 2);
  assert_int_equal(srv_log_count(&s, "route conflict", NULL), 1);
  assert_int_equal(srv_stop(&s), 0);

  /* A restart (the same files, started together): the same winner. */
  srv_init(&s);
  srv_write(&s, "users.lua", users);
  srv_write(&s, "clash.lua", clash);
  srv_start(&s, SERVER_ARGS);
  srv_expect_errors(&s, 1);
  expect_body(&s, "/users", "clash", 1, NULL);
  assert_int_equal(http_request(s.port, "POST", "/users", NULL, "", 0, &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "users POST");
  http_free(&r);
  log_exactly(&s, 1, "\"level\":\"error\"", "\"function\":\"users\"",
              "users.lua: route conflict: GET /users is also claimed by clash.lua, which serves it");
  assert_int_equal(srv_stop(&s), 0);
}

/* --- a loser with no route left is not said to serve ------------------------------------------------ */

static void refused_newcomer_log(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "a.lua", "return { routes = { 'GET /same' }, handler = function() return 'a' end }\n");
  srv_start(&s, SERVER_ARGS " --no-watch");
  expect_body(&s, "/same", "a", 1, NULL);
  srv_write(&s, "b.lua", "return { routes = { 'GET /same' }, handler = function() return 'b' end }\n");
  srv_expect_errors(&s, 1);
  srv_signal(&s, SIGHUP);
  log_exactly(&s, 1, "\"level\":\"error\"", "b.lua: route conflict: GET /same is also claimed by a.lua", NULL);
  log_exactly(&s, 1, "\"msg\":\"loaded b.lua (version 1, ", "but not routed: route conflict: GET /same", NULL);
  free(wait_api(&s, "b", "\"routed\":false", "\"version\":1,", "\"error\":\"route conflict", NULL));
  /* Rescanned unchanged: still version 1, nothing logged again. */
  srv_signal(&s, SIGHUP);
  log_exactly(&s, 2, "\"msg\":\"SIGHUP: rescanning ", NULL, NULL);
  sleep_ms(300);
  assert_int_equal(srv_log_count(&s, "loaded b.lua", NULL), 1);
  assert_int_equal(srv_log_count(&s, "new invocations get this version", NULL), 0);
  free(wait_api(&s, "b", "\"routed\":false", "\"version\":1,", NULL));
  expect_body(&s, "/same", "a", 1, NULL);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- a module broken and put back ------------------------------------------------------------------ */

static void module_restored(void **state) {
  (void)state;
  static const char util[] = "return { tag = 'u1' }\n";
  srv_t s;
  srv_init(&s);
  srv_write(&s, "lib/util.lua", util);
  srv_write(&s, "one.lua", "local u = require 'lib.util'\nreturn function() return 'one:' .. u.tag end\n");
  srv_write(&s, "two.lua", "local ok, m = pcall(require, 'lib.later')\n"
                           "return function() return ok and m.tag or 'none' end\n");
  srv_start(&s, SERVER_ARGS);
  http_resp_t r;
  char h1[16];
  http_get(s.port, "/one", &r);
  assert_string_equal(r.body, "one:u1");
  assert_int_equal(version_of(&r, h1), 1);
  http_free(&r);
  expect_body(&s, "/two", "none", 1, NULL);

  /* Broken: an error, version 1 keeps serving. */
  srv_write(&s, "lib/util.lua", "return { tag = 'u1' }\nsyntax error\n");
  srv_expect_errors(&s, 1);
  log_exactly(&s, 1, "\"level\":\"error\"", "lib/util.lua:2:", "(version 1 keeps serving)");
  free(wait_api(&s, "one", "\"error\":\"one.lua:1: lib/util.lua:2: '<eof>' expected", NULL));
  /* Put back to the very same bytes: the error clears, and it is the same
   * version (no new version, no cold start). */
  srv_write(&s, "lib/util.lua", util);
  free(wait_api(&s, "one", "\"error\":null", "\"version\":1,", h1, NULL));
  log_exactly(&s, 1, "\"msg\":\"loaded one.lua (version 1, ", "unchanged, its load error is cleared", NULL);
  expect_body(&s, "/one", "one:u1", 1, h1);
  assert_int_equal(srv_log_count(&s, "loaded one.lua", NULL), 2);

  /* A module that was not there when two.lua loaded appears: two.lua's
   * init found nothing then, so it is validated again: a new version
   * (with the module in it). */
  srv_write(&s, "lib/later.lua", "return { tag = 'later' }\n");
  log_exactly(&s, 1, "\"msg\":\"loaded two.lua (version 2, ", NULL, NULL);
  free(wait_api(&s, "two", "\"version\":2,", "\"error\":null", NULL));
  expect_body(&s, "/two", "later", 2, NULL);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- SIGHUP with --no-watch ----------------------------------------------------------------------- */

static void sighup_rescan(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "h.lua", "return function() return 'h1' end\n");
  srv_write(&s, "keep.lua", "return function() return 'keep' end\n");
  srv_write(&s, "broken.lua", "return function(\n");
  srv_start(&s, SERVER_ARGS " --no-watch");
  srv_expect_errors(&s, 1);
  log_exactly(&s, 1, "\"level\":\"error\"", "broken.lua:", NULL);
  http_resp_t r;
  char hk[16], hh[16];
  http_get(s.port, "/keep", &r);
  assert_int_equal(version_of(&r, hk), 1);
  http_free(&r);
  http_get(s.port, "/h", &r);
  assert_int_equal(version_of(&r, hh), 1);
  http_free(&r);

  /* Changes are not picked up without a watch... */
  srv_write(&s, "h.lua", "return function() return 'h2' end\n");
  srv_write_inplace(&s, "n.lua", "return function() return 'n' end\n");
  long long until = now_ms() + 800; /* well past the debounce (250 ms at most) */
  while (now_ms() < until) {
    expect_body(&s, "/h", "h1", 1, hh);
    expect_status(&s, "/n", 404);
    sleep_ms(20);
  }
  assert_int_equal(srv_log_count(&s, "loaded h.lua", NULL), 1);
  assert_int_equal(srv_log_count(&s, "loaded n.lua", NULL), 0);

  /* ...until SIGHUP. */
  srv_signal(&s, SIGHUP);
  log_exactly(&s, 1, "\"msg\":\"SIGHUP: rescanning ", NULL, NULL);
  wait_answer(&s, "/h", 200, "h2", 200, "h1", NULL, &r);
  assert_int_equal(version_of(&r, NULL), 2);
  http_free(&r);
  wait_answer(&s, "/n", 200, "n", 404, NULL, NULL, NULL);
  /* The broken file was validated again: same error, not logged again. */
  sleep_ms(300);
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", NULL), 1);

  /* Again: nothing changed, nothing new answers; a second SIGHUP is fine. */
  srv_signal(&s, SIGHUP);
  log_exactly(&s, 2, "\"msg\":\"SIGHUP: rescanning ", NULL, NULL);
  expect_body(&s, "/h", "h2", 0, NULL);
  expect_body(&s, "/n", "n", 0, NULL);
  expect_status(&s, "/broken", 503);
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", NULL), 1);

  /* A file that did not change keeps its version through a rescan: same
   * source, same modules, same version (its warm instances stay). */
  http_get(s.port, "/keep", &r);
  char hk2[16];
  unsigned vk = version_of(&r, hk2);
  http_free(&r);
  assert_string_equal(hk2, hk);
  int stop = srv_stop(&s);
  if (vk != 1) fail_msg("GET /keep: version %u after SIGHUP for an unchanged file (same hash %s), want 1", vk, hk2);
  assert_int_equal(stop, 0);
}

/* --- warm instances of a new version --------------------------------------------------------------- */

static void warm_reload(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "w.lua",
            "local booted = 'w1'\n"
            "return { warm = 2, handler = function(event, ctx) return booted .. (ctx.cold and ':cold' or ':warm') end }\n");
  srv_start(&s, SERVER_ARGS);
  /* Version 1's warm instances are provisioned in the background. */
  free(wait_api(&s, "w", "\"warm\":2", "\"instances\":{\"busy\":0,\"idle\":4}", NULL));
  http_resp_t r;

  srv_write(&s, "w.lua",
            "local booted = 'w2'\n"
            "return { warm = 2, handler = function(event, ctx) return booted .. (ctx.cold and ':cold' or ':warm') end }\n");
  /* The first answer of version 2 is a warm start: its instances were booted
   * before the worker served it. */
  wait_answer(&s, "/w", 200, "w2:warm", 200, "w1:warm", NULL, &r);
  assert_int_equal(version_of(&r, NULL), 2);
  const char *st = http_header(&r, "server-timing");
  assert_non_null(st);
  if (strstr(st, "init;")) fail_msg("first answer of version 2 paid an init: Server-Timing %s", st);
  assert_true(report_has(&s, &r, "\"start\":\"warm\""));
  assert_true(report_has(&s, &r, "\"version\":2,"));
  http_free(&r);
  for (int i = 0; i < 20; i++) {
    http_get(s.port, "/w", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "w2:warm");
    st = http_header(&r, "server-timing");
    if (!st || strstr(st, "init;")) fail_msg("answer %d of version 2: Server-Timing %s", i, st ? st : "(none)");
    http_free(&r);
  }
  sleep_ms(200);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", "\"version\":2,", "\"start\":\"cold\"", NULL), 0);
  /* Version 1's instances went: 2 idle per worker, all of version 2. */
  free(wait_api(&s, "w", "\"version\":2,", "\"instances\":{\"busy\":0,\"idle\":4}", NULL));
  assert_int_equal(srv_stop(&s), 0);
}

/* --- reloads under load ------------------------------------------------------------------------ */

static const char *const load_src[2] = {
    "local mark = 'A'\nreturn function() return 'content A' end\n",
    "local mark = 'B'\nreturn function() return 'content B' end\n",
};
static const char *const load_bodies[2] = {"content A", "content B"};

static void reload_under_load(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "hot.lua", load_src[0]);
  srv_start(&s, SERVER_ARGS);
  load_t ld;
  load_init(&ld, s.port, "/hot", load_bodies, 2, 4);
  long long t0 = now_ms(), hard_end = t0 + 8000;
  load_run(&ld, now_ms() + 100);
  int writes = 0;
  for (int i = 1; i <= 100 && now_ms() < hard_end; i++) {
    srv_write(&s, "hot.lua", load_src[i % 2]);
    writes++;
    load_run(&ld, now_ms() + 20 + (i % 3) * 10); /* 20-40 ms apart */
  }
  load_run(&ld, now_ms() + 300);
  load_drain(&ld);
  long long took = now_ms() - t0;
  print_message("%d rewrites in %lld ms: %ld answers (A %ld, B %ld), newest version %u, %ld failures\n", writes, took,
                ld.responses, ld.counts[0], ld.counts[1], ld.maxver, ld.failures);
  if (ld.failures) fail_msg("%ld failed requests under reload; the first: %s", ld.failures, ld.problem);
  assert_int_equal(writes, 100);
  assert_true(ld.counts[0] > 0 && ld.counts[1] > 0);
  assert_true(ld.responses >= 200);
  /* Several versions were made (writes close together may share one). */
  assert_true(ld.maxver >= 10);
  assert_true(ld.maxver <= 101);
  load_free(&ld);
  /* The last write (A) is what answers now. */
  http_resp_t r;
  wait_answer(&s, "/hot", 200, "content A", 200, NULL, NULL, &r);
  unsigned last = version_of(&r, NULL);
  http_free(&r);
  char needle[80];
  snprintf(needle, sizeof needle, "\"msg\":\"loaded hot.lua (version %u, ", last);
  assert_int_equal(srv_log_count(&s, needle, NULL), 1);
  assert_int_equal(srv_stop(&s), 0);
}

static void reload_under_load_through_broken(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "hot.lua", load_src[0]);
  srv_start(&s, SERVER_ARGS);
  load_t ld;
  load_init(&ld, s.port, "/hot", load_bodies, 2, 4);
  long long hard_end = now_ms() + 8000;
  load_run(&ld, now_ms() + 100);
  static const struct {
    const char *src, *needle;
  } broken[] = {
      {"local mark = 'A'\nreturn function()\n  return 'content A' ..\nend\n", "hot.lua:4:"},
      {"local mark = 'B'\nerror('init fails')\nreturn function() return 'x' end\n", "hot.lua:2: init fails"},
      {"return { handler = 'not a function' }\n", "hot.lua: setting 'handler' must be a function"},
  };
  int nbroken = 0;
  for (int i = 1; i <= 60 && now_ms() < hard_end; i++) {
    if (i % 20 == 10) {
      /* A broken save in the middle: the version serving keeps serving. */
      srv_write(&s, "hot.lua", broken[nbroken].src);
      long long deadline = now_ms() + LIVE_MS;
      while (srv_log_count(&s, "\"level\":\"error\"", broken[nbroken].needle, NULL) < 1 && now_ms() < deadline)
        load_run(&ld, now_ms() + 10);
      nbroken++;
      srv_expect_errors(&s, 1);
      if (srv_log_count(&s, "\"level\":\"error\"", broken[nbroken - 1].needle, "keeps serving", NULL) != 1)
        fail_msg("broken save %d: no error line with '%s'", nbroken, broken[nbroken - 1].needle);
      load_run(&ld, now_ms() + 50);
      continue;
    }
    srv_write(&s, "hot.lua", load_src[i % 2]);
    load_run(&ld, now_ms() + 20 + (i % 3) * 10);
  }
  load_run(&ld, now_ms() + 300);
  load_drain(&ld);
  print_message("%d broken saves; %ld answers (A %ld, B %ld), newest version %u, %ld failures\n", nbroken,
                ld.responses, ld.counts[0], ld.counts[1], ld.maxver, ld.failures);
  if (ld.failures) fail_msg("%ld failed requests under reload; the first: %s", ld.failures, ld.problem);
  assert_int_equal(nbroken, 3);
  assert_true(ld.counts[0] > 0 && ld.counts[1] > 0);
  load_free(&ld);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- a big file written in pieces, in place ----------------------------------------------------- */

static void big_file_in_pieces(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "big.lua", "return function() return 'small' end\n");
  srv_start(&s, SERVER_ARGS);
  enum { BIG = 2 * 1024 * 1024 };
  static const char head[] = "local big = \"";
  static const char tail[] = "\"\nreturn function() return 'big:' .. #big end\n";
  size_t total = sizeof head - 1 + BIG + sizeof tail - 1;
  char *src = malloc(total);
  memcpy(src, head, sizeof head - 1);
  for (size_t i = 0; i < BIG; i++) src[sizeof head - 1 + i] = (char)('a' + i % 26);
  memcpy(src + sizeof head - 1 + BIG, tail, sizeof tail - 1);
  static const char *const bodies[2] = {"small", "big:2097152"};
  load_t ld;
  load_init(&ld, s.port, "/big", bodies, 2, 2);
  load_run(&ld, now_ms() + 100);

  /* Like cp over the old file: truncate, eight pieces 40 ms apart (longer
   * than the longest debounce), close. */
  int fd = srv_open_inplace(&s, "big.lua");
  size_t piece = (total + 7) / 8;
  for (size_t off = 0; off < total; off += piece) {
    size_t n = total - off < piece ? total - off : piece;
    assert_int_equal(write(fd, src + off, n), (ssize_t)n);
    load_run(&ld, now_ms() + 40);
  }
  assert_int_equal(close(fd), 0);
  free(src);
  load_until_body(&ld, 1, 20);
  load_run(&ld, now_ms() + 500);
  load_drain(&ld);
  if (ld.failures) fail_msg("%ld failed requests; the first: %s", ld.failures, ld.problem);
  assert_true(ld.counts[0] > 0);
  /* Exactly one new version, no half file loaded. */
  log_exactly(&s, 1, "\"msg\":\"loaded big.lua (version 2, ", NULL, NULL);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"loaded big.lua", NULL), 2);
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", NULL), 0);
  assert_int_equal(ld.maxver, 2);
  load_free(&ld);
  expect_body(&s, "/big", "big:2097152", 2, NULL);
  free(wait_api(&s, "big", "\"version\":2,", "\"error\":null", NULL));
  assert_int_equal(srv_stop(&s), 0);
}

/* The same while another file changes mid-copy: the rescan that change
 * causes must not load the half-written big file either. */
static void big_file_while_another_changes(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "big.lua", "return function() return 'small' end\n");
  srv_write(&s, "other.lua", "return function() return 'o1' end\n");
  srv_start(&s, SERVER_ARGS);
  /* Statements with comments: cut almost anywhere, a prefix still compiles
   * (it fails only for want of a handler), so a half-written copy that gets
   * validated shows as a load error. */
  enum { LINES = 40000 };
  size_t cap = (size_t)LINES * 48 + 256, len = 0;
  char *src = malloc(cap);
  len += (size_t)snprintf(src + len, cap - len, "local n = 0\n");
  for (int i = 0; i < LINES; i++) len += (size_t)snprintf(src + len, cap - len, "n = n + 1 -- line %06d of the copy\n", i);
  len += (size_t)snprintf(src + len, cap - len, "return function() return 'lines:' .. n end\n");
  char want[64];
  snprintf(want, sizeof want, "lines:%d", LINES);
  const char *const bodies[2] = {"small", want};
  load_t ld;
  load_init(&ld, s.port, "/big", bodies, 2, 2);
  load_run(&ld, now_ms() + 100);
  int fd = srv_open_inplace(&s, "big.lua");
  size_t piece = (len + 7) / 8;
  int n = 0;
  for (size_t off = 0; off < len; off += piece, n++) {
    size_t k = len - off < piece ? len - off : piece;
    assert_int_equal(write(fd, src + off, k), (ssize_t)k);
    if (n == 2) srv_write(&s, "other.lua", "return function() return 'o2' end\n"); /* an editor saves */
    load_run(&ld, now_ms() + 60);
  }
  assert_int_equal(close(fd), 0);
  free(src);
  load_until_body(&ld, 1, 20);
  load_run(&ld, now_ms() + 300);
  load_drain(&ld);
  expect_body(&s, "/other", "o2", 2, NULL);
  if (ld.failures) {
    srv_expect_errors(&s, srv_log_count(&s, "\"level\":\"error\"", NULL));
    srv_stop(&s);
    fail_msg("%ld requests got an answer that is neither the old nor the whole new file; the first: %s",
             ld.failures, ld.problem);
  }
  int loads = srv_log_count(&s, "\"msg\":\"loaded big.lua", NULL), errors = srv_log_count(&s, "\"level\":\"error\"", NULL);
  load_free(&ld);
  if (loads != 2 || errors != 0) {
    char *log = srv_log(&s);
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n"))
      if (!strstr(line, "\"msg\":\"report\"")) fprintf(stderr, "%s\n", line);
    free(log);
  }
  srv_expect_errors(&s, errors);
  assert_int_equal(srv_stop(&s), 0);
  if (loads != 2 || errors != 0)
    fail_msg("big.lua written in pieces: %d versions (want 2: the old and the whole new), %d error lines (want 0)",
             loads, errors);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(lifecycle),
      cmocka_unit_test(broken_new_file),
      cmocka_unit_test(rename_and_delete),
      cmocka_unit_test(nested_folders),
      cmocka_unit_test(renamed_folder),
      cmocka_unit_test(shared_module),
      cmocka_unit_test(route_conflict),
      cmocka_unit_test(route_conflict_path_order),
      cmocka_unit_test(refused_newcomer_log),
      cmocka_unit_test(module_restored),
      cmocka_unit_test(sighup_rescan),
      cmocka_unit_test(warm_reload),
      cmocka_unit_test(reload_under_load),
      cmocka_unit_test(reload_under_load_through_broken),
      cmocka_unit_test(big_file_in_pieces),
      cmocka_unit_test(big_file_while_another_changes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
