/* test_http.c - the HTTP/1.1 server, in process (core/trigger/http/http.c).
 *
 * Each test runs a server on a libuv loop on 127.0.0.1 (an ephemeral port)
 * and talks to it through non-blocking client sockets. There is no thread:
 * while a client waits for bytes it drives the loop with UV_RUN_NOWAIT, in a
 * loop bounded by a deadline. Every test ends by draining the server and
 * closing the loop, which must report no leaked handle.
 *
 * Scenarios that would touch freed memory if the server got them wrong run
 * in a forked child (with glibc's malloc perturbation, and under ASan in the
 * sanitizer build), so a crash is a failed test, not a lost test run. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "buf.h"
#include "clock.h"
#include "error.h"
#include "http.h"
#include "router.h"
#include "worker.h"

/* --- the server side ------------------------------------------------------------------------------ */

enum { MODE_ECHO, MODE_ASYNC_SLOW, MODE_ASYNC_ALL };

#define MAX_PENDING 8
#define MAX_CLIENTS 64

typedef struct client_s {
  int fd;
  cr_buf_t in;
  int eof;
  int reset;
} client_t;

static struct {
  uv_loop_t loop;
  cr_http_server_t *srv;
  int port;
  int mode;
  cr_http_req_t *pending[MAX_PENDING];
  int npending;
  uv_timer_t timer;
  int timer_on;
  int nrequests;
  /* the last request seen */
  char path[10000];
  char query[256];
  char method_name[32];
  unsigned method;
  int minor;
  int nheaders;
  char body[8192];
  size_t body_len;
  char ip[64];
  char ids[16][CR_REQID_MAX + 1];
  int headers_bad; /* a header without a name, or x-first not "1" */
  char host[256];  /* the Host value the handler saw ("-": none) */
  char xa[256];    /* the X-A value */
  int drained;
  client_t clients[MAX_CLIENTS];
  int nclients;
} g;

static void copy_req(const cr_http_req_t *req) {
  snprintf(g.path, sizeof g.path, "%.*s", (int)req->path_len, req->path);
  snprintf(g.query, sizeof g.query, "%.*s", (int)req->query_len, req->query);
  snprintf(g.method_name, sizeof g.method_name, "%s", req->method_name ? req->method_name : "?");
  g.method = req->method;
  g.minor = req->http_minor;
  g.nheaders = req->nheaders;
  g.body_len = req->body_len < sizeof g.body ? req->body_len : sizeof g.body;
  memcpy(g.body, req->body, g.body_len);
  snprintf(g.ip, sizeof g.ip, "%s", req->ip ? req->ip : "");
  if (g.nrequests < 16) snprintf(g.ids[g.nrequests], sizeof g.ids[0], "%s", req->id);
  for (int i = 0; i < req->nheaders; i++) {
    const cr_http_header_t *h = &req->headers[i];
    if (!h->name || h->name_len == 0) g.headers_bad = 1;
  }
  const cr_http_header_t *hh = cr_http_req_header(req, "host", 4);
  if (hh) snprintf(g.host, sizeof g.host, "%.*s", (int)hh->value_len, hh->value);
  else snprintf(g.host, sizeof g.host, "-");
  const cr_http_header_t *xa = cr_http_req_header(req, "x-a", 3);
  snprintf(g.xa, sizeof g.xa, "%.*s", xa ? (int)xa->value_len : 0, xa ? xa->value : "");
  const cr_http_header_t *xf = cr_http_req_header(req, "x-first", 7);
  if (xf && !(xf->value_len == 1 && xf->value[0] == '1')) g.headers_bad = 1;
  g.nrequests++;
}

/* The echo answer: what the server saw, in the body and an X-Path header. */
static void answer(cr_http_req_t *req) {
  char path[10000];
  snprintf(path, sizeof path, "%.*s", (int)req->path_len, req->path);
  cr_buf_t b = CR_BUF_INIT;
  cr_buf_printf(&b, "M=%s P=%s Q=%.*s H=%d V=%d B=", req->method_name, path, (int)req->query_len, req->query,
                req->nheaders, req->http_minor);
  cr_buf_append(&b, req->body, req->body_len);
  cr_http_respond_start(req, 200);
  cr_http_respond_header(req, "X-Path", 6, path, strlen(path));
  cr_http_respond_finish(req, "text/plain", b.data ? b.data : "", b.len);
  cr_buf_free(&b);
}

static void on_request(cr_http_req_t *req, void *data) {
  (void)data;
  copy_req(req);
  int defer = g.mode == MODE_ASYNC_ALL || (g.mode == MODE_ASYNC_SLOW && strcmp(g.path, "/slow") == 0);
  if (defer && g.npending < MAX_PENDING) {
    g.pending[g.npending++] = req;
    return;
  }
  if (strcmp(g.path, "/status/204") == 0) {
    cr_http_respond_start(req, 204);
    cr_http_respond_finish(req, "text/plain", "ignored", 7);
    return;
  }
  if (strcmp(g.path, "/status/304") == 0) {
    cr_http_respond_start(req, 304);
    cr_http_respond_finish(req, NULL, "", 0);
    return;
  }
  if (strncmp(g.path, "/big/", 5) == 0) {
    /* /big/N: a 1 MB body of one letter, with X-N: N */
    static char *big;
    if (!big) {
      big = malloc(1 << 20);
      memset(big, 'x', 1 << 20);
    }
    cr_http_respond_start(req, 200);
    cr_http_respond_header(req, "X-N", 3, g.path + 5, strlen(g.path + 5));
    cr_http_respond_finish(req, "text/plain", big, 1 << 20);
    return;
  }
  if (strncmp(g.path, "/heads/", 7) == 0) {
    /* /heads/N: N header fields of 100 bytes each ("X-Hnnnn: " 89 letters CRLF) */
    int n = atoi(g.path + 7);
    char val[89];
    memset(val, 'h', sizeof val);
    cr_http_respond_start(req, 200);
    for (int i = 0; i < n; i++) {
      char name[8];
      snprintf(name, sizeof name, "X-H%04d", i % 10000);
      cr_http_respond_header(req, name, 7, val, sizeof val);
    }
    cr_http_respond_finish(req, "text/plain", "ok", 2);
    return;
  }
  if (strncmp(g.path, "/lines/", 7) == 0) {
    /* /lines/N: N bytes of preformatted header lines in one piece */
    size_t n = (size_t)atoi(g.path + 7);
    char *b = malloc(n);
    for (size_t i = 0; i < n; i += 100) {
      size_t k = n - i < 100 ? n - i : 100;
      memset(b + i, 'L', k);
      memcpy(b + i, "X-L:", k < 4 ? k : 4);
      if (k >= 6) memcpy(b + i + k - 2, "\r\n", 2);
    }
    cr_http_respond_start(req, 200);
    cr_http_respond_lines(req, b, n);
    cr_http_respond_finish(req, "text/plain", "ok", 2);
    free(b);
    return;
  }
  if (strcmp(g.path, "/error") == 0) {
    cr_http_respond_error(req, 500, "it \"broke\"");
    return;
  }
  if (strcmp(g.path, "/notfound") == 0) {
    cr_http_respond_error(req, 404, "no such thing");
    return;
  }
  answer(req);
}

static void answer_pending(void) {
  int n = g.npending;
  cr_http_req_t *list[MAX_PENDING];
  memcpy(list, g.pending, sizeof list);
  g.npending = 0;
  for (int i = 0; i < n; i++) answer(list[i]);
}

static void on_timer(uv_timer_t *t) {
  (void)t;
  answer_pending();
}

static void on_drained(void *data) {
  (void)data;
  g.drained++;
}

static size_t small_body_limit(const char *target, size_t len, void *data) {
  (void)data;
  if (len >= 6 && memcmp(target, "/small", 6) == 0) return 10;
  if (len >= 4 && memcmp(target, "/big", 4) == 0) return 100000;
  return 1024;
}

static cr_http_opts_t default_opts(void) {
  cr_http_opts_t o;
  memset(&o, 0, sizeof o);
  o.max_body = 1024;
  o.max_header = 4096;
  o.request_timeout = 2.0;
  o.keepalive_timeout = 2.0;
  o.max_connections = 16;
  o.on_request = on_request;
  return o;
}

/* Starts a server with opts (NULL: defaults). Returns 0 or a failure line. */
static int srv_start(const cr_http_opts_t *opts) {
  memset(&g, 0, sizeof g);
  for (int i = 0; i < MAX_CLIENTS; i++) g.clients[i].fd = -1;
  if (uv_loop_init(&g.loop)) return __LINE__;
  int fd = cr_listen_socket("127.0.0.1", 0, 0, 16);
  if (fd < 0) return __LINE__;
  struct sockaddr_in sa;
  socklen_t sl = sizeof sa;
  if (getsockname(fd, (struct sockaddr *)&sa, &sl)) return __LINE__;
  g.port = ntohs(sa.sin_port);
  cr_http_opts_t o = opts ? *opts : default_opts();
  if (!o.on_request) o.on_request = on_request;
  if (cr_http_server_start(&g.srv, &g.loop, fd, &o)) return __LINE__;
  if (uv_timer_init(&g.loop, &g.timer)) return __LINE__;
  g.timer_on = 1;
  return 0;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static void pump(void) { uv_run(&g.loop, UV_RUN_NOWAIT); }

/* Drives the loop for about ms milliseconds. */
static void pump_for(int ms) {
  uint64_t end = cr_clock_ns() + (uint64_t)ms * 1000000ULL;
  while (cr_clock_ns() < end) {
    pump();
    sleep_ms(1);
  }
}

static void client_close(client_t *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  cr_buf_free(&c->in);
}

/* Closes c, and gives its slot back when it is the last one. */
static void client_release(client_t *c) {
  client_close(c);
  if (g.nclients > 0 && c == &g.clients[g.nclients - 1]) g.nclients--;
}

static int g_close_rc;

/* Answers what is left, closes the clients, drains, frees. Returns 0, or
 * the line of what went wrong (uv_loop_close's result is in g_close_rc). */
static int srv_stop(void) {
  answer_pending();
  for (int i = 0; i < g.nclients; i++) client_close(&g.clients[i]);
  int failed = 0;
  if (!g.drained) {
    cr_http_server_drain(g.srv, on_drained, NULL);
    uint64_t end = cr_clock_ns() + 5000000000ULL;
    while (!g.drained && cr_clock_ns() < end) {
      pump();
      sleep_ms(1);
    }
    if (!g.drained) failed = __LINE__;
  }
  if (g.drained != 1) failed = failed ? failed : __LINE__;
  if (g.timer_on) {
    uv_close((uv_handle_t *)&g.timer, NULL);
    g.timer_on = 0;
  }
  uint64_t end = cr_clock_ns() + 3000000000ULL;
  while (uv_loop_alive(&g.loop) && cr_clock_ns() < end) {
    pump();
    sleep_ms(1);
  }
  cr_http_server_free(g.srv);
  g.srv = NULL;
  g_close_rc = uv_loop_close(&g.loop);
  if (failed) return failed;
  return g_close_rc == 0 ? 0 : __LINE__;
}

/* --- the client side ------------------------------------------------------------------------------- */

static client_t *client_new(void) {
  if (g.nclients == MAX_CLIENTS) return NULL;
  client_t *c = &g.clients[g.nclients++];
  cr_buf_init(&c->in);
  c->eof = c->reset = 0;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) return NULL;
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)g.port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) && errno != EINPROGRESS) return NULL;
  struct pollfd p = {c->fd, POLLOUT, 0};
  if (poll(&p, 1, 1000) != 1) return NULL;
  int err = 0;
  socklen_t el = sizeof err;
  getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
  if (err) return NULL;
  return c;
}

/* Reads what is there. Returns the number of bytes read. */
static size_t client_fill(client_t *c) {
  size_t total = 0;
  char buf[65536];
  while (!c->eof) {
    ssize_t r = recv(c->fd, buf, sizeof buf, 0);
    if (r > 0) {
      cr_buf_append(&c->in, buf, (size_t)r);
      total += (size_t)r;
      continue;
    }
    if (r == 0) c->eof = 1;
    else if (errno == ECONNRESET) c->eof = c->reset = 1;
    break;
  }
  return total;
}

static int client_send(client_t *c, const char *data, size_t len) {
  uint64_t end = cr_clock_ns() + 3000000000ULL;
  while (len > 0) {
    ssize_t w = send(c->fd, data, len, MSG_NOSIGNAL);
    if (w > 0) {
      data += w;
      len -= (size_t)w;
      continue;
    }
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return -1;
    if (cr_clock_ns() > end) return -1;
    pump();
    client_fill(c);
    sleep_ms(1);
  }
  pump();
  return 0;
}

static int client_send_str(client_t *c, const char *s) { return client_send(c, s, strlen(s)); }

typedef struct {
  int status;
  char head[131072]; /* status line and headers, NUL-terminated */
  char *body;       /* NUL-terminated; free with resp_free */
  size_t body_len;
} resp_t;

static void resp_free(resp_t *r) {
  free(r->body);
  r->body = NULL;
}

/* The value of header name in r (case-insensitive), copied, or NULL. */
static const char *resp_header(const resp_t *r, const char *name) {
  static char val[8][512];
  static int slot;
  size_t nl = strlen(name);
  const char *p = strstr(r->head, "\r\n");
  while (p && p[2] != '\0') {
    const char *line = p + 2;
    const char *end = strstr(line, "\r\n");
    if (!end) break;
    if ((size_t)(end - line) > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
      const char *v = line + nl + 1;
      while (*v == ' ') v++;
      char *out = val[slot++ % 8];
      snprintf(out, 512, "%.*s", (int)(end - v), v);
      return out;
    }
    p = end;
  }
  return NULL;
}

/* Reads one whole response from c within ms. Returns 0, -1 on timeout, -2
 * if the connection ended first. head_request: the response has no body. */
static int read_response(client_t *c, resp_t *r, int head_request, int ms) {
  memset(r, 0, sizeof *r);
  uint64_t end = cr_clock_ns() + (uint64_t)ms * 1000000ULL;
  for (;;) {
    const char *data = c->in.data;
    size_t len = c->in.len;
    const char *hend = len ? memmem(data, len, "\r\n\r\n", 4) : NULL;
    if (hend) {
      size_t hlen = (size_t)(hend - data) + 4;
      if (hlen >= sizeof r->head) return -3;
      memcpy(r->head, data, hlen);
      r->head[hlen] = '\0';
      r->status = 0;
      if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1) return -4;
      size_t blen = 0;
      const char *cl = resp_header(r, "Content-Length");
      int bodyless = head_request || r->status == 204 || r->status == 304 || (r->status >= 100 && r->status < 200);
      if (cl && !bodyless) blen = (size_t)strtoull(cl, NULL, 10);
      if (len >= hlen + blen) {
        r->body = malloc(blen + 1);
        memcpy(r->body, data + hlen, blen);
        r->body[blen] = '\0';
        r->body_len = blen;
        cr_buf_consume(&c->in, hlen + blen);
        return 0;
      }
    }
    if (c->eof) return -2;
    if (cr_clock_ns() > end) return -1;
    pump();
    if (client_fill(c) == 0) {
      pump();
      sleep_ms(1);
    }
  }
}

/* Waits up to ms for the server to close c. Returns 1 if it did. */
static int wait_closed(client_t *c, int ms) {
  uint64_t end = cr_clock_ns() + (uint64_t)ms * 1000000ULL;
  while (!c->eof && cr_clock_ns() < end) {
    pump();
    if (client_fill(c) == 0) sleep_ms(1);
  }
  return c->eof;
}

/* Fails the current test if stopping the server reports a problem. */
static void stop_ok(void) {
  g_close_rc = 0;
  int rc = srv_stop();
  if (g_close_rc) fail_msg("uv_loop_close: %s (a handle was left open)", uv_err_name(g_close_rc));
  if (rc) fail_msg("stopping the server failed (test_http.c line %d)", rc);
}

static void start_ok(const cr_http_opts_t *o) {
  int rc = srv_start(o);
  if (rc) fail_msg("starting the server failed (test_http.c line %d)", rc);
}

static client_t *connect_ok(void) {
  client_t *c = client_new();
  if (!c) fail_msg("connect failed: %s", strerror(errno));
  return c;
}

static void get_ok(client_t *c, const char *req, resp_t *r, int head) {
  assert_int_equal(client_send_str(c, req), 0);
  int rc = read_response(c, r, head, 3000);
  if (rc) fail_msg("no response (%d) to: %.60s", rc, req);
}

/* --- fork isolation ---------------------------------------------------------------------------------- */

#define CHILD_CHECK(cond)                                                   \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "child check failed at test_http.c:%d: %s\n", __LINE__, #cond); \
      _exit(1);                                                             \
    }                                                                       \
  } while (0)

static void run_in_child(int (*fn)(void)) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    /* cmocka catches these to go on with the next test: in the child they
     * must end the process instead. */
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    signal(SIGILL, SIG_DFL);
    signal(SIGFPE, SIG_DFL);
    signal(SIGABRT, SIG_DFL);
    alarm(20);
    mallopt(M_PERTURB, 0xa5); /* freed memory is overwritten: stale reads go wrong */
    _exit(fn());
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (WIFSIGNALED(status)) fail_msg("the scenario crashed the process (signal %d)", WTERMSIG(status));
  if (WEXITSTATUS(status) != 0) fail_msg("the scenario failed (exit %d, see stderr)", WEXITSTATUS(status));
}

/* --- basics ----------------------------------------------------------------------------------------- */

static void test_get(void **state) {
  (void)state;
  start_ok(NULL);
  client_t *c = connect_ok();
  resp_t r;
  get_ok(c, "GET /hello/world?x=1&y=%20 HTTP/1.1\r\nHost: t\r\nX-Custom-Header: Some Value\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 200);
  assert_memory_equal(r.head, "HTTP/1.1 200 OK\r\n", 17);
  assert_string_equal(r.body, "M=GET P=/hello/world Q=x=1&y=%20 H=2 V=1 B=");
  assert_string_equal(resp_header(&r, "X-Path"), "/hello/world");
  assert_string_equal(resp_header(&r, "Content-Type"), "text/plain");
  assert_int_equal(atoi(resp_header(&r, "Content-Length")), (int)r.body_len);
  const char *date = resp_header(&r, "Date");
  assert_non_null(date);
  assert_int_equal(strlen(date), CR_HTTP_DATE_LEN);
  assert_non_null(resp_header(&r, "X-Request-Id"));
  assert_null(resp_header(&r, "Connection")); /* 1.1 keep-alive is the default */
  assert_string_equal(g.ip, "127.0.0.1");
  assert_int_equal(g.method, CR_M_GET);
  resp_free(&r);
  /* The connection stays open. */
  assert_false(wait_closed(c, 100));
  assert_int_equal(cr_http_server_connections(g.srv), 1);
  stop_ok();
}

static void test_request_headers(void **state) {
  (void)state;
  start_ok(NULL);
  client_t *c = connect_ok();
  resp_t r;
  /* Capture the request in on_request via g; check header access there. */
  get_ok(c, "GET /h HTTP/1.1\r\nHost: t\r\nX-MiXeD-Case: KeepsCase\r\nAccept: */*\r\nEmpty:\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "H=4"));
  assert_false(g.headers_bad);
  resp_free(&r);
  stop_ok();
}

/* cr_http_req_header: lower-case names, raw values, NULL when absent. */
static int hdr_checks;
static void on_request_headers(cr_http_req_t *req, void *data) {
  (void)data;
  const cr_http_header_t *h = cr_http_req_header(req, "x-mixed-case", 12);
  if (h && h->value_len == 9 && memcmp(h->value, "KeepsCase", 9) == 0 && h->name_len == 12 &&
      memcmp(h->name, "x-mixed-case", 12) == 0)
    hdr_checks++;
  if (cr_http_req_header(req, "X-MiXeD-Case", 12) == NULL) hdr_checks++; /* names are stored lower-case */
  if (cr_http_req_header(req, "missing", 7) == NULL) hdr_checks++;
  h = cr_http_req_header(req, "empty", 5);
  if (h && h->value_len == 0 && h->value) hdr_checks++;
  answer(req);
}

static void test_header_lookup(void **state) {
  (void)state;
  cr_http_opts_t o = default_opts();
  o.on_request = on_request_headers;
  start_ok(&o);
  hdr_checks = 0;
  client_t *c = connect_ok();
  resp_t r;
  get_ok(c, "GET /h HTTP/1.1\r\nHost: t\r\nX-MiXeD-Case: KeepsCase\r\nEmpty:\r\n\r\n", &r, 0);
  resp_free(&r);
  assert_int_equal(hdr_checks, 4);
  stop_ok();
}

static void test_request_ids(void **state) {
  (void)state;
  start_ok(NULL);
  client_t *c = connect_ok();
  char ids[3][64];
  for (int i = 0; i < 3; i++) {
    resp_t r;
    get_ok(c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r, 0);
    snprintf(ids[i], sizeof ids[i], "%s", resp_header(&r, "X-Request-Id"));
    resp_free(&r);
    /* the id the handler saw is the one the client got */
    assert_string_equal(ids[i], g.ids[i]);
    /* UUID shape: 8-4-4-4-12 hex, version 4, variant 8..b */
    const char *id = ids[i];
    assert_int_equal(strlen(id), 36);
    for (int k = 0; k < 36; k++) {
      if (k == 8 || k == 13 || k == 18 || k == 23) assert_int_equal(id[k], '-');
      else assert_true(isxdigit((unsigned char)id[k]) && !isupper((unsigned char)id[k]));
    }
    assert_int_equal(id[14], '4');
    assert_non_null(strchr("89ab", id[19]));
  }
  assert_string_not_equal(ids[0], ids[1]);
  assert_string_not_equal(ids[1], ids[2]);
  stop_ok();
}

static void test_methods(void **state) {
  (void)state;
  start_ok(NULL);
  client_t *c = connect_ok();
  struct {
    const char *name;
    unsigned bit;
  } m[] = {{"GET", CR_M_GET},         {"POST", CR_M_POST},       {"PUT", CR_M_PUT},
           {"PATCH", CR_M_PATCH},     {"DELETE", CR_M_DELETE},   {"OPTIONS", CR_M_OPTIONS},
           {"PROPFIND", CR_M_OTHER}};
  for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
    char req[128];
    snprintf(req, sizeof req, "%s /m HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", m[i].name);
    resp_t r;
    get_ok(c, req, &r, 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(g.method, m[i].bit);
    assert_string_equal(g.method_name, m[i].name);
    resp_free(&r);
  }
  /* CONNECT is refused with 405, and the connection closes. */
  client_t *d = connect_ok();
  resp_t r;
  get_ok(d, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 405);
  assert_string_equal(resp_header(&r, "Connection"), "close");
  resp_free(&r);
  assert_true(wait_closed(d, 3000));
  stop_ok();
}

static void test_keepalive_two_requests(void **state) {
  (void)state;
  start_ok(NULL);
  client_t *c = connect_ok();
  resp_t r1, r2;
  get_ok(c, "GET /one HTTP/1.1\r\nHost: t\r\n\r\n", &r1, 0);
  get_ok(c, "GET /two HTTP/1.1\r\nHost: t\r\n\r\n", &r2, 0);
  assert_string_equal(resp_header(&r1, "X-Path"), "/one");
  assert_string_equal(resp_header(&r2, "X-Path"), "/two");
  assert_string_not_equal(resp_header(&r1, "X-Request-Id"), resp_header(&r2, "X-Request-Id"));
  assert_int_equal(g.nrequests, 2);
  assert_int_equal(cr_http_server_connections(g.srv), 1);
  resp_free(&r1);
  resp_free(&r2);
  stop_ok();
}

static void test_pipelining(void **state) {
  (void)state;
  start_ok(NULL);
  client_t *c = connect_ok();
  assert_int_equal(client_send_str(c, "GET /1 HTTP/1.1\r\nHost: t\r\n\r\n"
                                      "POST /2 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
                                      "GET /3 HTTP/1.1\r\nHost: t\r\n\r\n"),
                   0);
  const char *want[] = {"/1", "/2", "/3"};
  for (int i = 0; i < 3; i++) {
    resp_t r;
    int rc = read_response(c, &r, 0, 3000);
    if (rc) fail_msg("response %d missing (%d)", i + 1, rc);
    assert_string_equal(resp_header(&r, "X-Path"), want[i]);
    if (i == 1) assert_non_null(strstr(r.body, "B=abc"));
    resp_free(&r);
  }
  assert_int_equal(c->in.len, 0);
  stop_ok();
}

static void test_content_length_body(void **state) {
  (void)state;
  start_ok(NULL);
  client_t *c = connect_ok();
  resp_t r;
  get_ok(c, "POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world", &r, 0);
  assert_string_equal(r.body, "M=POST P=/b Q= H=2 V=1 B=hello world");
  resp_free(&r);
  /* Binary, with NULs, sent in pieces. */
  const char head[] = "PUT /bin HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\n";
  assert_int_equal(client_send(c, head, sizeof head - 1), 0);
  pump_for(20);
  assert_int_equal(client_send(c, "a\0b", 3), 0);
  pump_for(20);
  assert_int_equal(client_send(c, "\0\xff" "c", 3), 0);
  assert_int_equal(read_response(c, &r, 0, 3000), 0);
  assert_int_equal(g.body_len, 6);
  assert_memory_equal(g.body, "a\0b\0\xff" "c", 6);
  resp_free(&r);
  /* Exactly max_body is allowed. */
  char big[1024 + 200];
  int n = snprintf(big, sizeof big, "POST /max HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\n");
  memset(big + n, 'z', 1024);
  assert_int_equal(client_send(c, big, (size_t)n + 1024), 0);
  assert_int_equal(read_response(c, &r, 0, 3000), 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(g.body_len, 1024);
  resp_free(&r);
  stop_ok();
}

static void test_chunked_body(void **state) {
  (void)state;
  start_ok(NULL);
  client_t *c = connect_ok();
  const char *pieces[] = {"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
                          "5\r\nhel", "lo\r\n", "6\r\n world\r\n", "0\r\n", "\r\n"};
  for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
    assert_int_equal(client_send_str(c, pieces[i]), 0);
    pump_for(10);
  }
  resp_t r;
  assert_int_equal(read_response(c, &r, 0, 3000), 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "B=hello world"));
  resp_free(&r);
  /* Another one on the same connection, all at once. */
  get_ok(c, "POST /c2 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", &r, 0);
  assert_non_null(strstr(r.body, "P=/c2"));
  assert_non_null(strstr(r.body, "B=abc"));
  resp_free(&r);
  stop_ok();
}

/* Trailer fields after a chunked body: the request's headers stay readable. */
static int scenario_trailers(void) {
  CHILD_CHECK(srv_start(NULL) == 0);
  client_t *c = client_new();
  CHILD_CHECK(c);
  char req[2048];
  char filler[301];
  memset(filler, 't', 300);
  filler[300] = '\0';
  snprintf(req, sizeof req,
           "POST /t HTTP/1.1\r\nHost: t\r\nX-First: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
           "5\r\nhello\r\n0\r\nX-Trailer-A: %s\r\nX-Trailer-B: %s\r\n\r\n",
           filler, filler);
  CHILD_CHECK(client_send_str(c, req) == 0);
  resp_t r;
  int rc = read_response(c, &r, 0, 3000);
  CHILD_CHECK(rc == 0);
  CHILD_CHECK(r.status == 200);
  CHILD_CHECK(strstr(r.body, "B=hello") != NULL);
  CHILD_CHECK(!g.headers_bad);
  resp_free(&r);
  CHILD_CHECK(srv_stop() == 0);
  return 0;
}

static void test_chunked_trailers(void **state) {
  (void)state;
  run_in_child(scenario_trailers);
}

static void test_head(void **state) {
  (void)state;
  start_ok(NULL);
  client_t *c = connect_ok();
  assert_int_equal(client_send_str(c, "HEAD /page HTTP/1.1\r\nHost: t\r\n\r\nGET /after HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
  resp_t r;
  assert_int_equal(read_response(c, &r, 1, 3000), 0);
  assert_int_equal(r.status, 200);
  const char *cl = resp_header(&r, "Content-Length");
  assert_non_null(cl);
  assert_int_equal(atoi(cl), (int)strlen("M=HEAD P=/page Q= H=1 V=1 B="));
  resp_free(&r);
  /* No body bytes came: the next response starts right away. */
  assert_int_equal(read_response(c, &r, 0, 3000), 0);
  assert_string_equal(resp_header(&r, "X-Path"), "/after");
  assert_memory_equal(r.body, "M=GET", 5);
  resp_free(&r);
  stop_ok();
}

static void test_bodyless_statuses(void **state) {
  (void)state;
  start_ok(NULL);
  client_t *c = connect_ok();
  resp_t r;
  get_ok(c, "GET /status/204 HTTP/1.1\r\nHost: t\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 204);
  assert_null(resp_header(&r, "Content-Length"));
  assert_null(resp_header(&r, "Content-Type"));
  resp_free(&r);
  get_ok(c, "GET /status/304 HTTP/1.1\r\nHost: t\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 304);
  assert_null(resp_header(&r, "Content-Length"));
  resp_free(&r);
  /* Nothing stray after them: the next request is answered cleanly. */
  get_ok(c, "GET /next HTTP/1.1\r\nHost: t\r\n\r\n", &r, 0);
  assert_string_equal(resp_header(&r, "X-Path"), "/next");
  resp_free(&r);
  assert_int_equal(c->in.len, 0);
  /* Error answers: JSON, requestId for 5xx only. */
  get_ok(c, "GET /error HTTP/1.1\r\nHost: t\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 500);
  assert_memory_equal(r.head, "HTTP/1.1 500 Internal Server Error\r\n", 36);
  assert_string_equal(resp_header(&r, "Content-Type"), "application/json");
  char want[200];
  snprintf(want, sizeof want, "{\"error\":\"it \\\"broke\\\"\",\"requestId\":\"%s\"}", resp_header(&r, "X-Request-Id"));
  assert_string_equal(r.body, want);
  resp_free(&r);
  get_ok(c, "GET /notfound HTTP/1.1\r\nHost: t\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 404);
  assert_string_equal(r.body, "{\"error\":\"no such thing\"}");
  resp_free(&r);
  stop_ok();
}

static void test_reasons(void **state) {
  (void)state;
  assert_string_equal(cr_http_reason(200), "OK");
  assert_string_equal(cr_http_reason(404), "Not Found");
  assert_string_equal(cr_http_reason(413), "Content Too Large");
  assert_string_equal(cr_http_reason(431), "Request Header Fields Too Large");
  assert_string_equal(cr_http_reason(503), "Service Unavailable");
  assert_string_equal(cr_http_reason(504), "Gateway Timeout");
  /* Every registered status has its IANA phrase (418: RFC 2324's). */
  assert_string_equal(cr_http_reason(418), "I'm a teapot");
  assert_string_equal(cr_http_reason(203), "Non-Authoritative Information");
  assert_string_equal(cr_http_reason(226), "IM Used");
  assert_string_equal(cr_http_reason(300), "Multiple Choices");
  assert_string_equal(cr_http_reason(402), "Payment Required");
  assert_string_equal(cr_http_reason(416), "Range Not Satisfiable");
  assert_string_equal(cr_http_reason(421), "Misdirected Request");
  assert_string_equal(cr_http_reason(425), "Too Early");
  assert_string_equal(cr_http_reason(451), "Unavailable For Legal Reasons");
  assert_string_equal(cr_http_reason(507), "Insufficient Storage");
  assert_string_equal(cr_http_reason(511), "Network Authentication Required");
  /* Unregistered ones: their class's name (RFC 9110 section 15). */
  assert_string_equal(cr_http_reason(199), "Informational");
  assert_string_equal(cr_http_reason(299), "Successful");
  assert_string_equal(cr_http_reason(306), "Redirection");
  assert_string_equal(cr_http_reason(419), "Client Error");
  assert_string_equal(cr_http_reason(509), "Server Error");
  assert_string_equal(cr_http_reason(599), "Server Error");
  assert_non_null(cr_http_reason(0));
}

/* --- connection management --------------------------------------------------------------------------- */

static void test_http10(void **state) {
  (void)state;
  start_ok(NULL);
  client_t *c = connect_ok();
  resp_t r;
  get_ok(c, "GET /old HTTP/1.0\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "V=0"));
  assert_string_equal(resp_header(&r, "Connection"), "close");
  resp_free(&r);
  assert_true(wait_closed(c, 3000));
  /* 1.0 with keep-alive stays open and says so. */
  client_t *d = connect_ok();
  get_ok(d, "GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r, 0);
  assert_string_equal(resp_header(&r, "Connection"), "keep-alive");
  resp_free(&r);
  assert_false(wait_closed(d, 100));
  get_ok(d, "GET /ka2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r, 0);
  assert_string_equal(resp_header(&r, "X-Path"), "/ka2");
  resp_free(&r);
  stop_ok();
}

static void test_connection_close(void **state) {
  (void)state;
  start_ok(NULL);
  client_t *c = connect_ok();
  /* A request behind the closing one is not answered. */
  assert_int_equal(client_send_str(c, "GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                                      "GET /ignored HTTP/1.1\r\nHost: t\r\n\r\n"),
                   0);
  resp_t r;
  assert_int_equal(read_response(c, &r, 0, 3000), 0);
  assert_string_equal(resp_header(&r, "Connection"), "close");
  assert_string_equal(resp_header(&r, "X-Path"), "/last");
  resp_free(&r);
  assert_true(wait_closed(c, 3000));
  assert_int_equal(c->in.len, 0);
  assert_int_equal(g.nrequests, 1);
  stop_ok();
}

static void test_client_half_close(void **state) {
  (void)state;
  start_ok(NULL);
  client_t *c = connect_ok();
  assert_int_equal(client_send_str(c, "GET /hc HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
  shutdown(c->fd, SHUT_WR);
  resp_t r;
  assert_int_equal(read_response(c, &r, 0, 3000), 0);
  assert_string_equal(resp_header(&r, "X-Path"), "/hc");
  resp_free(&r);
  assert_true(wait_closed(c, 3000));
  stop_ok();
}

static void test_expect_continue(void **state) {
  (void)state;
  start_ok(NULL);
  client_t *c = connect_ok();
  assert_int_equal(client_send_str(c, "POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"), 0);
  resp_t r;
  assert_int_equal(read_response(c, &r, 0, 3000), 0);
  assert_int_equal(r.status, 100);
  assert_int_equal(r.body_len, 0);
  resp_free(&r);
  assert_int_equal(g.nrequests, 0); /* not handled before the body came */
  assert_int_equal(client_send_str(c, "hello"), 0);
  assert_int_equal(read_response(c, &r, 0, 3000), 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "B=hello"));
  resp_free(&r);
  /* Over the body limit: 413 straight away, no 100. */
  client_t *d = connect_ok();
  assert_int_equal(client_send_str(d, "POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"), 0);
  assert_int_equal(read_response(d, &r, 0, 3000), 0);
  assert_int_equal(r.status, 413);
  resp_free(&r);
  /* An expectation other than 100-continue: 417. */
  client_t *e = connect_ok();
  assert_int_equal(client_send_str(e, "POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nExpect: teapot\r\n\r\nx"), 0);
  assert_int_equal(read_response(e, &r, 0, 3000), 0);
  assert_int_equal(r.status, 417);
  resp_free(&r);
  assert_true(wait_closed(e, 3000));
  stop_ok();
}

/* --- limits ------------------------------------------------------------------------------------------ */

/* Sends req on a new connection and expects status, then the connection closed. */
static void refused_with(const char *req, size_t len, int status) {
  client_t *c = connect_ok();
  assert_int_equal(client_send(c, req, len), 0);
  resp_t r;
  int rc = read_response(c, &r, 0, 3000);
  if (rc) fail_msg("no %d response (%d)", status, rc);
  if (r.status != status) fail_msg("got %d, want %d", r.status, status);
  assert_string_equal(resp_header(&r, "Connection"), "close");
  assert_string_equal(resp_header(&r, "Content-Type"), "application/json");
  assert_memory_equal(r.body, "{\"error\":", 9);
  resp_free(&r);
  if (!wait_closed(c, 3000)) fail_msg("the connection stayed open after %d", status);
  client_release(c);
}

static void test_431(void **state) {
  (void)state;
  cr_http_opts_t o = default_opts();
  o.max_header = 2048;
  start_ok(&o);
  char req[4096];
  char val[3000];
  memset(val, 'v', sizeof val - 1);
  val[sizeof val - 1] = '\0';
  int n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: t\r\nX-Big: %s\r\n\r\n", val);
  refused_with(req, (size_t)n, 431);
  /* More than 100 headers, each small. */
  cr_buf_t b = CR_BUF_INIT;
  cr_buf_append_str(&b, "GET / HTTP/1.1\r\n");
  for (int i = 0; i < 101; i++) cr_buf_printf(&b, "H%d: x\r\n", i);
  cr_buf_append_str(&b, "\r\n");
  assert_true(b.len < 2048);
  refused_with(b.data, b.len, 431);
  cr_buf_free(&b);
  /* 100 headers are fine. */
  client_t *c = connect_ok();
  cr_buf_append_str(&b, "GET /ok HTTP/1.1\r\nHost: t\r\n");
  for (int i = 0; i < 99; i++) cr_buf_printf(&b, "H%d: x\r\n", i);
  cr_buf_append_str(&b, "\r\n");
  assert_int_equal(client_send(c, b.data, b.len), 0);
  cr_buf_free(&b);
  resp_t r;
  assert_int_equal(read_response(c, &r, 0, 3000), 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "H=100"));
  resp_free(&r);
  stop_ok();
}

static void test_414(void **state) {
  (void)state;
  cr_http_opts_t o = default_opts();
  o.max_header = 65536;
  start_ok(&o);
  char *req = malloc(10000);
  memcpy(req, "GET /", 5);
  memset(req + 5, 'u', 9000);
  int n = 5 + 9000;
  n += snprintf(req + n, 10000 - (size_t)n, " HTTP/1.1\r\nHost: t\r\n\r\n");
  refused_with(req, (size_t)n, 414);
  /* A long URL under 8 KB is fine. */
  memset(req + 5, 'u', 8000);
  n = 5 + 8000;
  n += snprintf(req + n, 10000 - (size_t)n, " HTTP/1.1\r\nHost: t\r\n\r\n");
  client_t *c = connect_ok();
  assert_int_equal(client_send(c, req, (size_t)n), 0);
  resp_t r;
  assert_int_equal(read_response(c, &r, 0, 3000), 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(strlen(g.path), 8001);
  resp_free(&r);
  free(req);
  stop_ok();
}

static void test_413(void **state) {
  (void)state;
  start_ok(NULL); /* max_body 1024 */
  const char *cl = "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n";
  refused_with(cl, strlen(cl), 413);
  /* Chunked past the limit. */
  cr_buf_t b = CR_BUF_INIT;
  cr_buf_append_str(&b, "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 3; i++) {
    cr_buf_append_str(&b, "200\r\n"); /* 512 bytes each */
    for (int k = 0; k < 512; k++) cr_buf_putc(&b, 'c');
    cr_buf_append_str(&b, "\r\n");
  }
  cr_buf_append_str(&b, "0\r\n\r\n");
  refused_with(b.data, b.len, 413);
  cr_buf_free(&b);
  assert_int_equal(g.nrequests, 0);
  stop_ok();
}

static void test_body_limit_callback(void **state) {
  (void)state;
  cr_http_opts_t o = default_opts();
  o.body_limit = small_body_limit;
  start_ok(&o);
  const char *small = "POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 20\r\n\r\n01234567890123456789";
  refused_with(small, strlen(small), 413);
  client_t *c = connect_ok();
  cr_buf_t b = CR_BUF_INIT;
  cr_buf_append_str(&b, "POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n");
  for (int i = 0; i < 5000; i++) cr_buf_putc(&b, 'b');
  assert_int_equal(client_send(c, b.data, b.len), 0);
  cr_buf_free(&b);
  resp_t r;
  assert_int_equal(read_response(c, &r, 0, 3000), 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(g.body_len, 5000);
  resp_free(&r);
  stop_ok();
}

static void test_400_garbage(void **state) {
  (void)state;
  start_ok(NULL);
  const char *bad[] = {
      "GARBAGE\r\n\r\n",
      "GET / HTTP/1.x\r\n\r\n",
      "GET / HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) refused_with(bad[i], strlen(bad[i]), 400);
  assert_int_equal(g.nrequests, 0);
  /* A good request after a bad one on another connection is fine. */
  client_t *c = connect_ok();
  resp_t r;
  get_ok(c, "GET /fine HTTP/1.1\r\nHost: t\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 200);
  resp_free(&r);
  /* A bad request after a good one on the same connection: answered, then 400, then closed. */
  assert_int_equal(client_send_str(c, "GET /good HTTP/1.1\r\nHost: t\r\n\r\n\x01\x02\x03 nonsense\r\n\r\n"), 0);
  assert_int_equal(read_response(c, &r, 0, 3000), 0);
  assert_int_equal(r.status, 200);
  resp_free(&r);
  assert_int_equal(read_response(c, &r, 0, 3000), 0);
  assert_int_equal(r.status, 400);
  resp_free(&r);
  assert_true(wait_closed(c, 3000));
  stop_ok();
}

static void test_408(void **state) {
  (void)state;
  cr_http_opts_t o = default_opts();
  o.request_timeout = 0.2;
  start_ok(&o);
  client_t *c = connect_ok();
  assert_int_equal(client_send_str(c, "GET /slowloris HTTP/1.1\r\nHost: t\r\n"), 0);
  uint64_t t0 = cr_clock_ns();
  resp_t r;
  assert_int_equal(read_response(c, &r, 0, 3000), 0);
  double dt = (double)(cr_clock_ns() - t0) / 1e9;
  assert_int_equal(r.status, 408);
  assert_string_equal(resp_header(&r, "Connection"), "close");
  resp_free(&r);
  assert_true(dt >= 0.15 && dt < 2.0);
  assert_true(wait_closed(c, 3000));
  assert_int_equal(g.nrequests, 0);
  /* A connection that sends nothing at all is closed without an answer. */
  client_t *d = connect_ok();
  assert_true(wait_closed(d, 3000));
  assert_int_equal(d->in.len, 0);
  stop_ok();
}

static void test_idle_keepalive_closed(void **state) {
  (void)state;
  cr_http_opts_t o = default_opts();
  o.keepalive_timeout = 0.2;
  start_ok(&o);
  client_t *c = connect_ok();
  resp_t r;
  get_ok(c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r, 0);
  resp_free(&r);
  uint64_t t0 = cr_clock_ns();
  assert_true(wait_closed(c, 3000));
  double dt = (double)(cr_clock_ns() - t0) / 1e9;
  assert_true(dt >= 0.15 && dt < 2.0);
  assert_int_equal(c->in.len, 0); /* closed without a word */
  /* A connection in use is not cut: requests 100 ms apart keep it open. */
  client_t *d = connect_ok();
  for (int i = 0; i < 4; i++) {
    get_ok(d, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r, 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    pump_for(100);
  }
  stop_ok();
}

static void test_max_connections(void **state) {
  (void)state;
  cr_http_opts_t o = default_opts();
  o.max_connections = 1;
  start_ok(&o);
  client_t *a = connect_ok();
  resp_t r;
  get_ok(a, "GET /a HTTP/1.1\r\nHost: t\r\n\r\n", &r, 0);
  resp_free(&r);
  client_t *b = connect_ok();
  assert_int_equal(read_response(b, &r, 0, 3000), 0);
  assert_int_equal(r.status, 503);
  assert_string_equal(resp_header(&r, "Connection"), "close");
  assert_non_null(strstr(r.body, "too many connections"));
  resp_free(&r);
  assert_true(wait_closed(b, 3000));
  /* a is unaffected. */
  get_ok(a, "GET /a2 HTTP/1.1\r\nHost: t\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 200);
  resp_free(&r);
  /* Once a leaves, there is room again. */
  client_close(a);
  uint64_t end = cr_clock_ns() + 3000000000ULL;
  while (cr_http_server_connections(g.srv) > 0 && cr_clock_ns() < end) pump_for(1);
  assert_int_equal(cr_http_server_connections(g.srv), 0);
  client_t *c = connect_ok();
  get_ok(c, "GET /c HTTP/1.1\r\nHost: t\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 200);
  resp_free(&r);
  stop_ok();
}

/* --- answering later ---------------------------------------------------------------------------------- */

static void test_async_in_order(void **state) {
  (void)state;
  start_ok(NULL);
  g.mode = MODE_ASYNC_SLOW;
  client_t *c = connect_ok();
  assert_int_equal(client_send_str(c, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET /fast HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
  uint64_t t0 = cr_clock_ns();
  pump_for(20);
  assert_int_equal(g.npending, 1);
  assert_int_equal(g.nrequests, 1); /* /fast waits behind /slow */
  uv_timer_start(&g.timer, on_timer, 100, 0);
  resp_t r;
  assert_int_equal(read_response(c, &r, 0, 3000), 0);
  assert_string_equal(resp_header(&r, "X-Path"), "/slow");
  assert_true(cr_clock_ns() - t0 >= 90000000ULL);
  resp_free(&r);
  assert_int_equal(read_response(c, &r, 0, 3000), 0);
  assert_string_equal(resp_header(&r, "X-Path"), "/fast");
  resp_free(&r);
  /* More requests arriving while one waits are also kept in order. */
  assert_int_equal(client_send_str(c, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
  pump_for(10);
  assert_int_equal(client_send_str(c, "GET /x1 HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
  pump_for(10);
  assert_int_equal(client_send_str(c, "GET /x2 HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
  pump_for(10);
  uv_timer_start(&g.timer, on_timer, 50, 0);
  const char *want[] = {"/slow", "/x1", "/x2"};
  for (int i = 0; i < 3; i++) {
    assert_int_equal(read_response(c, &r, 0, 3000), 0);
    assert_string_equal(resp_header(&r, "X-Path"), want[i]);
    resp_free(&r);
  }
  stop_ok();
}

/* A request that asks to close (HTTP/1.0, or Connection: close) and is
 * answered later still gets its answer: the connection must not close (and
 * free the request) while the answer is pending. */
static int scenario_async_close(const char *request) {
  CHILD_CHECK(srv_start(NULL) == 0);
  g.mode = MODE_ASYNC_ALL;
  client_t *c = client_new();
  CHILD_CHECK(c);
  CHILD_CHECK(client_send_str(c, request) == 0);
  pump_for(50);
  CHILD_CHECK(g.npending == 1);
  /* Not answered yet: the connection must still be there. If it is gone,
   * answering would write into freed memory, so stop here. */
  CHILD_CHECK(cr_http_server_connections(g.srv) == 1);
  CHILD_CHECK(!c->eof);
  answer_pending();
  resp_t r;
  CHILD_CHECK(read_response(c, &r, 0, 3000) == 0);
  CHILD_CHECK(r.status == 200);
  const char *conn = resp_header(&r, "Connection");
  CHILD_CHECK(conn && strcmp(conn, "close") == 0);
  resp_free(&r);
  CHILD_CHECK(wait_closed(c, 3000));
  CHILD_CHECK(srv_stop() == 0);
  return 0;
}

static int scenario_async_http10(void) { return scenario_async_close("GET /later HTTP/1.0\r\n\r\n"); }
static int scenario_async_conn_close(void) {
  return scenario_async_close("GET /later HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
}

static void test_async_http10(void **state) {
  (void)state;
  run_in_child(scenario_async_http10);
}

static void test_async_connection_close(void **state) {
  (void)state;
  run_in_child(scenario_async_conn_close);
}

/* The client resets the connection while its request waits for an answer:
 * the handler still holds req and answers it later; that must be safe. */
static int scenario_async_peer_reset(void) {
  CHILD_CHECK(srv_start(NULL) == 0);
  g.mode = MODE_ASYNC_ALL;
  client_t *c = client_new();
  CHILD_CHECK(c);
  CHILD_CHECK(client_send_str(c, "GET /later HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
  pump_for(50);
  CHILD_CHECK(g.npending == 1);
  struct linger lg = {1, 0};
  setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  client_close(c); /* RST */
  pump_for(100);
  answer_pending(); /* the handler finishes later, as an invocation would */
  pump_for(50);
  CHILD_CHECK(srv_stop() == 0);
  return 0;
}

static void test_async_peer_reset(void **state) {
  (void)state;
  run_in_child(scenario_async_peer_reset);
}

/* A request waiting for its answer keeps its data: target, headers and a
 * large body stay as they were while more pipelined bytes arrive, and the
 * request behind it is not handled until it is answered. */
static int body_ok;
static void check_and_answer(cr_http_req_t *req) {
  body_ok = req->path_len == 5 && memcmp(req->path, "/slow", 5) == 0 && req->body_len == 20000;
  for (size_t i = 0; body_ok && i < req->body_len; i++)
    if (req->body[i] != 'q') body_ok = 0;
  const cr_http_header_t *h = cr_http_req_header(req, "x-first", 7);
  if (!h || h->value_len != 1 || h->value[0] != '1') body_ok = 0;
  answer(req);
}

static int scenario_async_data_kept(void) {
  cr_http_opts_t o = default_opts();
  o.max_body = 65536;
  CHILD_CHECK(srv_start(&o) == 0);
  g.mode = MODE_ASYNC_SLOW;
  client_t *c = client_new();
  CHILD_CHECK(c);
  cr_buf_t b = CR_BUF_INIT;
  cr_buf_append_str(&b, "POST /slow HTTP/1.1\r\nHost: t\r\nX-First: 1\r\nContent-Length: 20000\r\n\r\n");
  for (int i = 0; i < 20000; i++) cr_buf_putc(&b, 'q');
  cr_buf_append_str(&b, "GET /next-request-with-a-longer-path HTTP/1.1\r\nHost: t\r\nX-First: 2\r\n\r\n");
  CHILD_CHECK(client_send(c, b.data, b.len) == 0);
  cr_buf_free(&b);
  pump_for(50);
  CHILD_CHECK(g.npending == 1);
  CHILD_CHECK(g.nrequests == 1); /* the second waits */
  cr_http_req_t *req = g.pending[0];
  g.npending = 0;
  body_ok = 0;
  check_and_answer(req);
  CHILD_CHECK(body_ok);
  resp_t r;
  CHILD_CHECK(read_response(c, &r, 0, 3000) == 0);
  CHILD_CHECK(strcmp(resp_header(&r, "X-Path"), "/slow") == 0);
  resp_free(&r);
  CHILD_CHECK(read_response(c, &r, 0, 3000) == 0);
  CHILD_CHECK(strcmp(resp_header(&r, "X-Path"), "/next-request-with-a-longer-path") == 0);
  resp_free(&r);
  CHILD_CHECK(srv_stop() == 0);
  return 0;
}

static void test_async_data_kept(void **state) {
  (void)state;
  run_in_child(scenario_async_data_kept);
}

/* --- drain and teardown ----------------------------------------------------------------------------------- */

static void test_drain(void **state) {
  (void)state;
  start_ok(NULL);
  client_t *idle = connect_ok();
  resp_t r;
  get_ok(idle, "GET /i HTTP/1.1\r\nHost: t\r\n\r\n", &r, 0);
  resp_free(&r);
  g.mode = MODE_ASYNC_ALL;
  client_t *busy = connect_ok();
  assert_int_equal(client_send_str(busy, "GET /b HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
  pump_for(30);
  assert_int_equal(g.npending, 1);
  assert_int_equal(cr_http_server_connections(g.srv), 2);
  cr_http_server_drain(g.srv, on_drained, NULL);
  cr_http_server_drain(g.srv, on_drained, NULL); /* twice is harmless */
  assert_true(wait_closed(idle, 3000)); /* idle connections go at once */
  pump_for(50);
  assert_int_equal(g.drained, 0); /* the busy one is still there */
  assert_int_equal(cr_http_server_connections(g.srv), 1);
  /* New connections are not accepted any more. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)g.port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_not_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  close(fd);
  /* The busy request gets its answer, with Connection: close. */
  answer_pending();
  assert_int_equal(read_response(busy, &r, 0, 3000), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(resp_header(&r, "Connection"), "close");
  resp_free(&r);
  assert_true(wait_closed(busy, 3000));
  pump_for(20);
  assert_int_equal(g.drained, 1);
  assert_int_equal(cr_http_server_connections(g.srv), 0);
  stop_ok();
}

static void test_drain_empty(void **state) {
  (void)state;
  start_ok(NULL);
  cr_http_server_drain(g.srv, on_drained, NULL);
  pump_for(20);
  assert_int_equal(g.drained, 1);
  stop_ok();
}

/* A failed start leaves nothing behind on the loop. */
static int scenario_start_failure(void) {
  uv_loop_t loop;
  CHILD_CHECK(uv_loop_init(&loop) == 0);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0); /* not something to listen on */
  CHILD_CHECK(fd >= 0);
  cr_http_opts_t o = default_opts();
  cr_http_server_t *s = NULL;
  int rc = cr_http_server_start(&s, &loop, fd, &o);
  CHILD_CHECK(rc != 0);
  for (int i = 0; i < 10; i++) uv_run(&loop, UV_RUN_NOWAIT);
  CHILD_CHECK(uv_loop_close(&loop) == 0);
  return 0;
}

static void test_start_failure(void **state) {
  (void)state;
  run_in_child(scenario_start_failure);
}

/* --- strictness: framing, request line, fields (RFC 9112) ----------------------------------------- */

/* req on a new connection must be served: 200 with the echo body starting with want. */
static void served_with(const char *req, const char *want) {
  client_t *c = connect_ok();
  assert_int_equal(client_send_str(c, req), 0);
  resp_t r;
  int rc = read_response(c, &r, 0, 3000);
  if (rc) fail_msg("no response (%d) to: %.80s", rc, req);
  if (r.status != 200) fail_msg("got %d, want 200 for: %.80s", r.status, req);
  if (strncmp(r.body, want, strlen(want)) != 0) fail_msg("body %s, want %s...", r.body, want);
  resp_free(&r);
  client_release(c);
}

#define CHUNKED_HEAD "POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
#define NEXT_REQ "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"

/* The two bytes after chunk data must be CRLF; nothing pipelined behind a
 * refused message is served. */
static void test_chunk_data_crlf(void **state) {
  (void)state;
  start_ok(NULL);
  const char *bad[] = {
      CHUNKED_HEAD "3\r\nabcXY0\r\n\r\n" NEXT_REQ,
      CHUNKED_HEAD "3\r\nabcX\n0\r\n\r\n" NEXT_REQ,
      CHUNKED_HEAD "3\r\nabc\rX0\r\n\r\n" NEXT_REQ,
      CHUNKED_HEAD "3\r\nabc\n0\r\n\r\n" NEXT_REQ,
      CHUNKED_HEAD "3\rXabc\r\n0\r\n\r\n" NEXT_REQ, /* the byte after a chunk size's CR */
      CHUNKED_HEAD "3\nabc\r\n0\r\n\r\n" NEXT_REQ,
      CHUNKED_HEAD "3\r\nabc\r\n0\n\r\n" NEXT_REQ,
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) refused_with(bad[i], strlen(bad[i]), 400);
  assert_int_equal(g.nrequests, 0);
  /* The same with the two bytes in a later read, one at a time. */
  client_t *c = connect_ok();
  assert_int_equal(client_send_str(c, CHUNKED_HEAD "3\r\nabc"), 0);
  pump_for(20);
  assert_int_equal(client_send_str(c, "X"), 0);
  pump_for(20);
  assert_int_equal(client_send_str(c, "Y0\r\n\r\n" NEXT_REQ), 0);
  resp_t r;
  assert_int_equal(read_response(c, &r, 0, 3000), 0);
  assert_int_equal(r.status, 400);
  resp_free(&r);
  assert_true(wait_closed(c, 3000));
  client_t *d = connect_ok();
  assert_int_equal(client_send_str(d, CHUNKED_HEAD "3\r\nabc\r"), 0);
  pump_for(20);
  assert_int_equal(client_send_str(d, "Y0\r\n\r\n" NEXT_REQ), 0);
  assert_int_equal(read_response(d, &r, 0, 3000), 0);
  assert_int_equal(r.status, 400);
  resp_free(&r);
  assert_true(wait_closed(d, 3000));
  assert_int_equal(g.nrequests, 0);
  /* Valid CRLFs split the same ways are fine, and the next request is served. */
  client_t *e = connect_ok();
  const char *pieces[] = {CHUNKED_HEAD "3\r\nabc", "\r", "\n", "2\r", "\nde\r\n0", "\r\n", "\r", "\n" NEXT_REQ};
  for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
    assert_int_equal(client_send_str(e, pieces[i]), 0);
    pump_for(10);
  }
  assert_int_equal(read_response(e, &r, 0, 3000), 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "B=abcde"));
  resp_free(&r);
  assert_int_equal(read_response(e, &r, 0, 3000), 0);
  assert_string_equal(resp_header(&r, "X-Path"), "/smuggled");
  resp_free(&r);
  assert_int_equal(g.nrequests, 2);
  stop_ok();
}

/* Chunk extensions, any number, quoted or not (llhttp 8.1 refuses a second
 * one after an unquoted value), also split across reads. */
static void test_chunk_extensions(void **state) {
  (void)state;
  start_ok(NULL);
  const char *good[] = {
      CHUNKED_HEAD "3;a=b;c=d\r\nabc\r\n0\r\n\r\n",
      CHUNKED_HEAD "3;a=b;c=d;e=f\r\nabc\r\n0;x=y;z=w\r\n\r\n",
      CHUNKED_HEAD "3;a=b;c\r\nabc\r\n0\r\n\r\n",
      CHUNKED_HEAD "3;a;b=c;d\r\nabc\r\n0\r\n\r\n",
      CHUNKED_HEAD "3;a=\"x;y\";c=d\r\nabc\r\n0\r\n\r\n",
      CHUNKED_HEAD "3;a=\"q\";c=d;e=\"r\"\r\nabc\r\n0\r\n\r\n",
  };
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) served_with(good[i], "M=POST P=/c");
  assert_int_equal(g.nrequests, (int)(sizeof good / sizeof good[0]));
  /* Split at every byte of the extensions. */
  const char *ext = "3;aa=bb;cc=dd;e=\"f;g\";h\r\nabc\r\n0\r\n\r\n";
  for (size_t cut = 1; cut < strlen(ext); cut++) {
    client_t *c = connect_ok();
    assert_int_equal(client_send_str(c, CHUNKED_HEAD), 0);
    assert_int_equal(client_send(c, ext, cut), 0);
    pump_for(2);
    assert_int_equal(client_send_str(c, ext + cut), 0);
    resp_t r;
    assert_int_equal(read_response(c, &r, 0, 3000), 0);
    if (r.status != 200) fail_msg("split at %zu: %d", cut, r.status);
    assert_non_null(strstr(r.body, "B=abc"));
    resp_free(&r);
    client_release(c);
  }
  /* Bad ones still are. */
  const char *bad[] = {CHUNKED_HEAD "3;\r\nabc\r\n0\r\n\r\n",        CHUNKED_HEAD "3;a=b;;c\r\nabc\r\n0\r\n\r\n",
                       CHUNKED_HEAD "3;a;;c\r\nabc\r\n0\r\n\r\n",     CHUNKED_HEAD "3;a=;c=d\r\nabc\r\n0\r\n\r\n",
                       CHUNKED_HEAD "3;a=\r\nabc\r\n0\r\n\r\n",      CHUNKED_HEAD "3;a=\"x\r\nabc\r\n0\r\n\r\n",
                       CHUNKED_HEAD "3;a=b c\r\nabc\r\n0\r\n\r\n",   CHUNKED_HEAD "3 ;a=b\r\nabc\r\n0\r\n\r\n"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) refused_with(bad[i], strlen(bad[i]), 400);
  stop_ok();
}

/* Line endings and folding in the header and trailer sections. */
static void test_line_endings(void **state) {
  (void)state;
  start_ok(NULL);
  const char *bad[] = {
      "GET / HTTP/1.1\nHost: t\r\n\r\n" NEXT_REQ,           /* bare LF after the request line */
      "GET / HTTP/1.1\r\nHost: t\n\r\n" NEXT_REQ,           /* ... after a field */
      "GET / HTTP/1.1\r\nHost: t\r\n\n" NEXT_REQ,           /* ... for the empty line */
      "GET / HTTP/1.1\nHost: t\n\n" NEXT_REQ,
      "\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",                 /* before the request line */
      "GET / HTTP/1.1\r\nHost: t\rX: y\r\n\r\n",             /* bare CR (llhttp skips the byte after some) */
      "GET / HTTP/1.1\r\nHost:\rX: y\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: t\r\nX:  \rb\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: t\r\n\rX" NEXT_REQ,
      "GET / HTTP/1.1\r\nHost: t\r\nX-Long-Name-Here: 0123456789abcdef\rXY: 1\r\n\r\n",
      "GET /0123456789abcdef HTTP/1.1\r\nHost: t\r\nX: 0123456\n\r\n",
      "GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n",     /* obs-fold */
      "GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n\tb\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: t\r\nX:\r\n b\r\n\r\n",
      "GET / HTTP/1.1\r\n Host: t\r\n\r\n",                  /* whitespace before the first field */
      CHUNKED_HEAD "0\r\n\n" NEXT_REQ,                       /* trailer section */
      CHUNKED_HEAD "0\r\nX: a\n\r\n" NEXT_REQ,
      CHUNKED_HEAD "0\r\nX: a\r\n\n" NEXT_REQ,
      CHUNKED_HEAD "0\r\nX: a\r\n b\r\n\r\n" NEXT_REQ,
      CHUNKED_HEAD "0\r\nX: a\rY: b\r\n\r\n" NEXT_REQ,
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) refused_with(bad[i], strlen(bad[i]), 400);
  assert_int_equal(g.nrequests, 0);
  /* Empty lines (CRLF) before a request line are allowed, and trailers. */
  served_with("\r\n\r\nGET /x HTTP/1.1\r\nHost: t\r\n\r\n", "M=GET P=/x");
  const char *tr = CHUNKED_HEAD "3\r\nabc\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n";
  served_with(tr, "M=POST P=/c");
  /* The same bad bytes split over reads. */
  client_t *c = connect_ok();
  assert_int_equal(client_send_str(c, "GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n"), 0);
  pump_for(20);
  assert_int_equal(client_send_str(c, " b\r\n\r\n"), 0);
  resp_t r;
  assert_int_equal(read_response(c, &r, 0, 3000), 0);
  assert_int_equal(r.status, 400);
  assert_non_null(strstr(r.body, "folding"));
  resp_free(&r);
  stop_ok();
}

static void test_empty_field_name(void **state) {
  (void)state;
  start_ok(NULL);
  const char *bad[] = {
      "GET / HTTP/1.1\r\nHost: t\r\n: v\r\n\r\n" NEXT_REQ,
      "GET / HTTP/1.1\r\n: v\r\nHost: t\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: t\r\n:\r\n\r\n",
      CHUNKED_HEAD "0\r\n: v\r\n\r\n" NEXT_REQ, /* in a trailer too */
      CHUNKED_HEAD "0\r\nX : v\r\n\r\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) refused_with(bad[i], strlen(bad[i]), 400);
  assert_int_equal(g.nrequests, 0);
  /* A field with an empty value between others is its own field. */
  served_with("GET / HTTP/1.1\r\nHost: t\r\nE:\r\nX-A: v\r\n\r\n", "M=GET P=/ Q= H=3");
  assert_string_equal(g.xa, "v");
  stop_ok();
}

/* RFC 9112 3.2: one Host in 1.1, at most one in 1.0, a valid value. */
static void test_host_field(void **state) {
  (void)state;
  start_ok(NULL);
  const char *bad[] = {
      "GET / HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1\r\nX-A: 1\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nHOST: a\r\n\r\n",
      "GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n",
      "GET http://h/x HTTP/1.1\r\n\r\n", /* absolute-form needs one too */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) refused_with(bad[i], strlen(bad[i]), 400);
  assert_int_equal(g.nrequests, 0);
  served_with("GET / HTTP/1.0\r\n\r\n", "M=GET P=/ Q= H=0 V=0");
  assert_string_equal(g.host, "-");
  served_with("GET / HTTP/1.1\r\nHost:\r\n\r\n", "M=GET");
  assert_string_equal(g.host, "");
  served_with("GET / HTTP/1.1\r\nHost: [::1]:8080  \r\n\r\n", "M=GET");
  assert_string_equal(g.host, "[::1]:8080"); /* trailing whitespace is not the value's */
  served_with("GET / HTTP/1.1\r\nHost: example.com\r\nX-A: v \t \r\n\r\n", "M=GET");
  assert_string_equal(g.host, "example.com");
  assert_string_equal(g.xa, "v");
  stop_ok();
}

static void test_versions(void **state) {
  (void)state;
  start_ok(NULL);
  const char *v505[] = {"GET / HTTP/2.0\r\nHost: t\r\n\r\n", "GET / HTTP/3.0\r\nHost: t\r\n\r\n",
                        "GET / HTTP/9.9\r\nHost: t\r\n\r\n", "GET / HTTP/0.9\r\n\r\n",
                        "GET / HTTP/0.1\r\nHost: t\r\n\r\n"};
  for (size_t i = 0; i < sizeof v505 / sizeof v505[0]; i++) refused_with(v505[i], strlen(v505[i]), 505);
  /* HTTP/0.9: a request line without a version. 400 at once (not a 408 later). */
  const char *v09[] = {"GET /\r\n\r\n", "GET /\r\n", "GET /x?y\r\nHost: t\r\n\r\n"};
  for (size_t i = 0; i < sizeof v09 / sizeof v09[0]; i++) refused_with(v09[i], strlen(v09[i]), 400);
  assert_int_equal(g.nrequests, 0);
  /* 1.x with x > 1 is served as 1.1 (RFC 9112 2.3). */
  served_with("GET /v HTTP/1.2\r\nHost: t\r\n\r\n", "M=GET P=/v Q= H=1 V=1");
  stop_ok();
}

/* Which request-target forms are served, and how they are routed. */
static void test_target_forms(void **state) {
  (void)state;
  start_ok(NULL);
  served_with("GET http://host/echo?x=1 HTTP/1.1\r\nHost: other\r\n\r\n", "M=GET P=/echo Q=x=1 H=1");
  assert_string_equal(g.host, "host"); /* absolute-form: the target's authority is the host */
  served_with("GET HTTPS://h.example:8443/a/b HTTP/1.1\r\nHost: x\r\n\r\n", "M=GET P=/a/b Q= ");
  assert_string_equal(g.host, "h.example:8443");
  served_with("GET http://host HTTP/1.1\r\nHost: x\r\n\r\n", "M=GET P=/ Q= ");
  served_with("GET http://host?q=1 HTTP/1.1\r\nHost: x\r\n\r\n", "M=GET P=/ Q=q=1 ");
  served_with("GET http://h/%5f/x HTTP/1.1\r\nHost: x\r\n\r\n", "M=GET P=/_/x ");
  /* OPTIONS *: the server answers it itself. */
  client_t *c = connect_ok();
  resp_t r;
  get_ok(c, "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 204);
  assert_string_equal(resp_header(&r, "Allow"), "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
  assert_null(resp_header(&r, "Content-Length"));
  assert_non_null(resp_header(&r, "X-Request-Id"));
  resp_free(&r);
  get_ok(c, "GET /after HTTP/1.1\r\nHost: t\r\n\r\n", &r, 0); /* the connection goes on */
  assert_string_equal(resp_header(&r, "X-Path"), "/after");
  resp_free(&r);
  int served = g.nrequests;
  const char *bad[] = {
      "GET * HTTP/1.1\r\nHost: t\r\n\r\n",         "OPTIONS *x HTTP/1.1\r\nHost: t\r\n\r\n",
      "OPTIONS *?a HTTP/1.1\r\nHost: t\r\n\r\n",   "GET ftp://h/x HTTP/1.1\r\nHost: t\r\n\r\n",
      "GET http://u@h/x HTTP/1.1\r\nHost: t\r\n\r\n", "GET http:///x HTTP/1.1\r\nHost: t\r\n\r\n",
      "GET /a#b HTTP/1.1\r\nHost: t\r\n\r\n",      "GET /a?b#c HTTP/1.1\r\nHost: t\r\n\r\n",
      "GET /a\x01 HTTP/1.1\r\nHost: t\r\n\r\n",    "GET /a\x7f HTTP/1.1\r\nHost: t\r\n\r\n",
      "GET /a?\x02 HTTP/1.1\r\nHost: t\r\n\r\n",    "GET http://a\x01b/x HTTP/1.1\r\nHost: t\r\n\r\n",
      "GET http://a\"b/x HTTP/1.1\r\nHost: t\r\n\r\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) refused_with(bad[i], strlen(bad[i]), 400);
  assert_int_equal(g.nrequests, served);
  stop_ok();
}

/* RFC 3986 6.2.2.2: %XX of an unreserved character is that character, in
 * the path only; other escapes stay as they are. */
static void test_path_normalization(void **state) {
  (void)state;
  cr_http_opts_t o = default_opts();
  o.body_limit = small_body_limit;
  start_ok(&o);
  served_with("GET /%5f/health HTTP/1.1\r\nHost: t\r\n\r\n", "M=GET P=/_/health Q= ");
  served_with("GET /%5F/storage/x HTTP/1.1\r\nHost: t\r\n\r\n", "M=GET P=/_/storage/x Q= ");
  served_with("GET /%41%7a%30%2D%2e%7E%5F HTTP/1.1\r\nHost: t\r\n\r\n", "M=GET P=/Az0-.~_ Q= ");
  /* Reserved and other characters stay encoded; the query is untouched. */
  served_with("GET /a%2Fb%20c%25d%3F?q=%5f%41 HTTP/1.1\r\nHost: t\r\n\r\n",
              "M=GET P=/a%2Fb%20c%25d%3F Q=q=%5f%41 ");
  served_with("GET /%zz%4%5 HTTP/1.1\r\nHost: t\r\n\r\n", "M=GET P=/%zz%4%5 Q= ");
  served_with("GET /%5f%5f?%5f HTTP/1.1\r\nHost: t\r\n\r\n", "M=GET P=/__ Q=%5f ");
  /* The path handlers see is the normalized one: X-Path, and the body limit's target. */
  const char *small = "POST /%73mall HTTP/1.1\r\nHost: t\r\nContent-Length: 20\r\n\r\n01234567890123456789";
  refused_with(small, strlen(small), 413);
  stop_ok();
}

/* Content-Length and Transfer-Encoding (RFC 9112 6). */
static void test_body_framing(void **state) {
  (void)state;
  start_ok(NULL);
  const char *bad400[] = {
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
      "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nabc",
      "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\nabc",
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +3\r\n\r\nabc",
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3 3\r\n\r\nabc",
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3,3\r\n\r\nabc",
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0x3\r\n\r\nabc",
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
  };
  for (size_t i = 0; i < sizeof bad400 / sizeof bad400[0]; i++) refused_with(bad400[i], strlen(bad400[i]), 400);
  /* A coding other than chunked before it: not implemented. */
  const char *gz = "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
  refused_with(gz, strlen(gz), 501);
  assert_int_equal(g.nrequests, 0);
  const char *ok1 = "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked \r\n\r\n3\r\nabc\r\n0\r\n\r\n";
  served_with(ok1, "M=POST P=/ Q= H=2 V=1 B=abc");
  const char *ok2 = "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0003\r\nabc\r\n000\r\n\r\n";
  served_with(ok2, "M=POST P=/ Q= H=2 V=1 B=abc");
  stop_ok();
}

/* The framing check keeps its state across reads: the same bytes split at
 * any point get the same answers (valid: every request served, in order;
 * invalid: 400 and nothing behind it). */
static void test_framing_any_split(void **state) {
  (void)state;
  start_ok(NULL);
  const char *good = "\r\nGET /a HTTP/1.1\r\nHost: t\r\nX-A: 0123456789abcdef\t \r\nE:\r\n\r\n"
                     CHUNKED_HEAD "5;n=v;m\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n"
                     "POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\n\r\n\r\n"
                     "GET /z HTTP/1.1\r\nHost: t\r\n\r\n";
  const char *want[] = {"/a", "/c", "/b", "/z"};
  size_t n = strlen(good);
  for (size_t cut = 1; cut < n; cut++) {
    client_t *c = connect_ok();
    assert_int_equal(client_send(c, good, cut), 0);
    pump_for(1);
    assert_int_equal(client_send(c, good + cut, n - cut), 0);
    for (int i = 0; i < 4; i++) {
      resp_t r;
      if (read_response(c, &r, 0, 3000)) fail_msg("split at %zu: response %d missing", cut, i);
      if (r.status != 200) fail_msg("split at %zu: response %d is %d", cut, i, r.status);
      assert_string_equal(resp_header(&r, "X-Path"), want[i]);
      if (i == 1) assert_non_null(strstr(r.body, "B=hello0123456789abcdef"));
      if (i == 2) assert_non_null(strstr(r.body, "B=\r\n\r\n"));
      resp_free(&r);
    }
    client_release(c);
  }
  const char *bad = CHUNKED_HEAD "5\r\nhello\r\n3\r\nabc\n\r0\r\n\r\n" NEXT_REQ;
  n = strlen(bad);
  int before = g.nrequests;
  for (size_t cut = 1; cut < n; cut++) {
    client_t *c = connect_ok();
    assert_int_equal(client_send(c, bad, cut), 0);
    pump_for(1);
    client_send(c, bad + cut, n - cut); /* the server may have closed already */
    resp_t r;
    if (read_response(c, &r, 0, 3000)) fail_msg("split at %zu: no response", cut);
    if (r.status != 400) fail_msg("split at %zu: %d", cut, r.status);
    resp_free(&r);
    assert_true(wait_closed(c, 3000));
    client_release(c);
  }
  assert_int_equal(g.nrequests, before);
  stop_ok();
}

/* --- output limits (issue 10 item 5) ------------------------------------------------------------- */

/* A client that pipelines requests for 1 MB answers and reads nothing: the
 * server stops handling its requests once 4 MB wait to be written, and goes
 * on, in order, once the client reads. */
static void test_output_backpressure(void **state) {
  (void)state;
  start_ok(NULL);
  client_t *c = connect_ok();
  int rcv = 65536;
  setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  enum { N = 40 };
  cr_buf_t b = CR_BUF_INIT;
  for (int i = 0; i < N; i++) cr_buf_printf(&b, "GET /big/%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
  assert_int_equal(send(c->fd, b.data, b.len, MSG_NOSIGNAL), (ssize_t)b.len);
  cr_buf_free(&b);
  pump_for(300);
  /* 4 MB queued, one answer past it, and what the kernel holds (a few MB on
   * loopback); without back-pressure all 40 would be answered in memory. */
  if (g.nrequests > 14) fail_msg("%d requests handled while the client read nothing", g.nrequests);
  assert_true(g.nrequests >= 4);
  for (int i = 0; i < N; i++) {
    resp_t r;
    int rc = read_response(c, &r, 0, 5000);
    if (rc) fail_msg("response %d missing (%d)", i, rc);
    assert_int_equal(r.status, 200);
    char want[16];
    snprintf(want, sizeof want, "%d", i);
    assert_string_equal(resp_header(&r, "X-N"), want);
    assert_int_equal(r.body_len, 1 << 20);
    assert_true(r.body[0] == 'x' && r.body[r.body_len - 1] == 'x');
    resp_free(&r);
  }
  assert_int_equal(g.nrequests, N);
  stop_ok();
}

/* A response head over 64 KB becomes a 500 of the server's own; the
 * connection goes on. */
static void test_response_head_limit(void **state) {
  (void)state;
  start_ok(NULL);
  client_t *c = connect_ok();
  resp_t r;
  get_ok(c, "GET /heads/600 HTTP/1.1\r\nHost: t\r\n\r\n", &r, 0); /* 60,000 bytes of fields */
  assert_int_equal(r.status, 200);
  assert_non_null(resp_header(&r, "X-H0599"));
  assert_string_equal(r.body, "ok");
  resp_free(&r);
  /* 800 x 100 bytes, one piece of 70,000, and a head just over: 500. */
  const char *over[] = {"GET /heads/800 HTTP/1.1\r\nHost: t\r\n\r\n", "GET /lines/70000 HTTP/1.1\r\nHost: t\r\n\r\n",
                        "GET /heads/655 HTTP/1.1\r\nHost: t\r\n\r\n"};
  for (int i = 0; i < 3; i++) {
    client_t *d = connect_ok();
    assert_int_equal(client_send_str(d, over[i]), 0);
    uint64_t end = cr_clock_ns() + 3000000000ULL;
    while (cr_clock_ns() < end && !memmem(d->in.data ? d->in.data : "", d->in.len, "\r\n\r\n", 4)) pump_for(1), client_fill(d);
    assert_true(d->in.len < 16384); /* none of the fields went out */
    assert_int_equal(read_response(d, &r, 0, 3000), 0);
    assert_int_equal(r.status, 500);
    assert_null(resp_header(&r, "X-H0000"));
    assert_null(resp_header(&r, "X-L"));
    assert_string_equal(resp_header(&r, "Content-Type"), "application/json");
    char want[200];
    snprintf(want, sizeof want, "{\"error\":\"internal error: response headers too large\",\"requestId\":\"%s\"}",
             resp_header(&r, "X-Request-Id"));
    assert_string_equal(r.body, want);
    resp_free(&r);
    get_ok(d, "GET /next HTTP/1.1\r\nHost: t\r\n\r\n", &r, 0); /* the connection goes on */
    assert_string_equal(resp_header(&r, "X-Path"), "/next");
    resp_free(&r);
  }
  /* Just under: 654 fields (65,400 bytes), the status line and Date (54) fit
   * in 65,536; 655 did not. */
  get_ok(c, "GET /heads/654 HTTP/1.1\r\nHost: t\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 200);
  resp_free(&r);
  stop_ok();
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get),
      cmocka_unit_test(test_request_headers),
      cmocka_unit_test(test_header_lookup),
      cmocka_unit_test(test_request_ids),
      cmocka_unit_test(test_methods),
      cmocka_unit_test(test_keepalive_two_requests),
      cmocka_unit_test(test_pipelining),
      cmocka_unit_test(test_content_length_body),
      cmocka_unit_test(test_chunked_body),
      cmocka_unit_test(test_chunked_trailers),
      cmocka_unit_test(test_head),
      cmocka_unit_test(test_bodyless_statuses),
      cmocka_unit_test(test_reasons),
      cmocka_unit_test(test_http10),
      cmocka_unit_test(test_connection_close),
      cmocka_unit_test(test_client_half_close),
      cmocka_unit_test(test_expect_continue),
      cmocka_unit_test(test_431),
      cmocka_unit_test(test_414),
      cmocka_unit_test(test_413),
      cmocka_unit_test(test_body_limit_callback),
      cmocka_unit_test(test_400_garbage),
      cmocka_unit_test(test_408),
      cmocka_unit_test(test_idle_keepalive_closed),
      cmocka_unit_test(test_max_connections),
      cmocka_unit_test(test_async_in_order),
      cmocka_unit_test(test_async_data_kept),
      cmocka_unit_test(test_async_http10),
      cmocka_unit_test(test_async_connection_close),
      cmocka_unit_test(test_async_peer_reset),
      cmocka_unit_test(test_drain),
      cmocka_unit_test(test_drain_empty),
      cmocka_unit_test(test_start_failure),
      cmocka_unit_test(test_chunk_data_crlf),
      cmocka_unit_test(test_chunk_extensions),
      cmocka_unit_test(test_line_endings),
      cmocka_unit_test(test_empty_field_name),
      cmocka_unit_test(test_host_field),
      cmocka_unit_test(test_versions),
      cmocka_unit_test(test_target_forms),
      cmocka_unit_test(test_path_normalization),
      cmocka_unit_test(test_body_framing),
      cmocka_unit_test(test_framing_any_split),
      cmocka_unit_test(test_output_backpressure),
      cmocka_unit_test(test_response_head_limit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
