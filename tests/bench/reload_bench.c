/* reload_bench.c - how fast a save is live, and what reloads cost the
 * requests being served (docs/architecture.md §6: "a save is live in well under 100 ms,
 * with zero failed requests under load").
 *
 * Starts `crescent serve --redis none` on a temporary folder (loopback, port
 * chosen by the kernel), then:
 *   1. save -> live: writes a new version of a function (temp file + rename,
 *      as an editor saves) and polls it over a keep-alive connection as fast
 *      as it can until the new marker answers; 50 times; p50/p99/max.
 *   2. request latency under a steady closed-loop load (2 keep-alive
 *      connections, 5 s), without reloads and with a reload every 100 ms.
 * Not a test: it prints numbers. Everything is bounded.
 *
 *   reload_bench [CRESCENT_BIN]     (else $CRESCENT_BIN, else the one built with it)
 *   env: BENCH_WORKERS (default 2), BENCH_SECONDS (default 5), BENCH_SAVES (default 50) */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CR_DEFAULT_BIN
#define CR_DEFAULT_BIN "./crescent"
#endif

#define MAX_CONNS 8

static char root[256], fndir[300], logpath[300];
static pid_t server = -1;
static int port;

static long long now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)st;
  (void)type;
  (void)ftw;
  remove(path);
  return 0;
}

static void stop_server(void) {
  if (server > 0) {
    kill(server, SIGTERM);
    long long deadline = now_us() + 20000000;
    int st;
    while (waitpid(server, &st, WNOHANG) == 0) {
      if (now_us() > deadline) {
        kill(-server, SIGKILL);
        waitpid(server, &st, 0);
        break;
      }
      sleep_ms(10);
    }
    server = -1;
  }
  if (root[0]) nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  root[0] = '\0';
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "reload_bench: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  stop_server();
  exit(1);
}

/* Saves functions/bench.lua as an editor does: a temp file, then a rename. */
static void save(const char *content) {
  char tmp[400], path[400];
  snprintf(tmp, sizeof tmp, "%s/.bench.tmp", fndir);
  snprintf(path, sizeof path, "%s/bench.lua", fndir);
  FILE *f = fopen(tmp, "w");
  if (!f || fputs(content, f) < 0 || fclose(f) != 0) die("cannot write %s: %s", tmp, strerror(errno));
  if (rename(tmp, path)) die("cannot rename to %s: %s", path, strerror(errno));
}

static void source_for(char *out, size_t n, const char *marker) {
  snprintf(out, n,
           "-- a function of a realistic size: some settings and a handler\n"
           "local greeting = 'hello'\n"
           "return {\n"
           "  timeout = 5, memory = 64,\n"
           "  handler = function(event, ctx)\n"
           "    return '%s'\n"
           "  end,\n"
           "}\n",
           marker);
}

static int read_port(void) {
  FILE *f = fopen(logpath, "r");
  if (!f) return 0;
  char line[4096];
  int p = 0;
  while (!p && fgets(line, sizeof line, f)) {
    char *m = strstr(line, "\"msg\":\"listening\"");
    char *q = m ? strstr(m, "\"port\":") : NULL;
    if (q) p = atoi(q + 7);
  }
  fclose(f);
  return p;
}

static void start_server(const char *bin, const char *workers) {
  snprintf(root, sizeof root, "/tmp/crescent-bench-XXXXXX");
  if (!mkdtemp(root)) die("mkdtemp: %s", strerror(errno));
  snprintf(fndir, sizeof fndir, "%s/functions", root);
  snprintf(logpath, sizeof logpath, "%s/server.log", root);
  if (mkdir(fndir, 0755)) die("mkdir %s: %s", fndir, strerror(errno));
  char src[1024];
  source_for(src, sizeof src, "v0");
  save(src);
  pid_t pid = fork();
  if (pid < 0) die("fork: %s", strerror(errno));
  if (pid == 0) {
    int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) _exit(127);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
    if (chdir(root)) _exit(127);
    setpgid(0, 0);
    char *argv[] = {(char *)bin, "serve", "--functions", fndir, "--listen", "127.0.0.1:0",
                    "--redis", "none", "--workers", (char *)workers, NULL};
    execv(bin, argv);
    _exit(127);
  }
  server = pid;
  long long deadline = now_us() + 15000000;
  while (!(port = read_port())) {
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      server = -1;
      die("crescent exited at start (see %s)", logpath);
    }
    if (now_us() > deadline) die("crescent did not start within 15 s (log: %s)", logpath);
    sleep_ms(10);
  }
}

/* --- a keep-alive connection ------------------------------------------------------------------- */

typedef struct {
  int fd;
  char buf[65536];
  size_t len;
  int busy;
  long long sent_us;
} conn_t;

static int conn_open(conn_t *c) {
  c->len = 0;
  c->busy = 0;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0) return -1;
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a)) {
    close(c->fd);
    c->fd = -1;
    return -1;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
  return 0;
}

static void conn_close(conn_t *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->busy = 0;
  c->len = 0;
}

static const char REQ[] = "GET /bench HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

static int conn_send(conn_t *c) {
  ssize_t w = send(c->fd, REQ, sizeof REQ - 1, MSG_NOSIGNAL);
  if (w != (ssize_t)(sizeof REQ - 1)) return -1;
  c->busy = 1;
  c->sent_us = now_us();
  return 0;
}

/* One complete response off c: 1 (status, body, version filled), 0 if not yet. */
static int conn_parse(conn_t *c, int *status, char *body, size_t bodycap, unsigned *ver) {
  char *end = c->len ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
  if (!end) return 0;
  size_t head = (size_t)(end - c->buf) + 4, cl = 0;
  *ver = 0;
  for (char *p = c->buf; p < end;) {
    char *eol = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
    if (!eol) break;
    if (strncasecmp(p, "content-length:", 15) == 0) cl = (size_t)strtoull(p + 15, NULL, 10);
    if (strncasecmp(p, "x-crescent-version:", 19) == 0) *ver = (unsigned)strtoul(p + 19, NULL, 10);
    p = eol + 2;
  }
  if (c->len < head + cl) return 0;
  *status = atoi(c->buf + 9);
  size_t n = cl < bodycap - 1 ? cl : bodycap - 1;
  memcpy(body, c->buf + head, n);
  body[n] = '\0';
  memmove(c->buf, c->buf + head + cl, c->len - head - cl);
  c->len -= head + cl;
  c->busy = 0;
  return 1;
}

/* Reads what is there; -1 when the connection closed or failed. */
static int conn_fill(conn_t *c) {
  for (;;) {
    if (c->len == sizeof c->buf) return -1;
    ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    if (r > 0) {
      c->len += (size_t)r;
      continue;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (r < 0 && errno == EINTR) continue;
    return -1;
  }
}

/* One blocking GET /bench on c (bounded); 0 with status and body, or -1. */
static int conn_get(conn_t *c, int *status, char *body, size_t cap, unsigned *ver, int timeout_ms) {
  if (c->fd < 0 && conn_open(c)) return -1;
  if (conn_send(c)) {
    conn_close(c);
    return -1;
  }
  long long deadline = now_us() + (long long)timeout_ms * 1000;
  for (;;) {
    if (conn_parse(c, status, body, cap, ver)) return 0;
    long long left = deadline - now_us();
    if (left <= 0) break;
    struct pollfd p = {c->fd, POLLIN, 0};
    if (poll(&p, 1, (int)(left / 1000) + 1) <= 0) continue;
    if (conn_fill(c) < 0 && !conn_parse(c, status, body, cap, ver)) break;
  }
  conn_close(c);
  return -1;
}

/* --- numbers ----------------------------------------------------------------------------------- */

static int cmp_ll(const void *a, const void *b) {
  long long x = *(const long long *)a, y = *(const long long *)b;
  return x < y ? -1 : x > y;
}

/* The q-quantile (nearest rank) of sorted v[0..n). */
static double quantile_ms(const long long *v, size_t n, double q) {
  if (!n) return 0;
  size_t i = (size_t)(q * (double)n + 0.999999);
  if (i < 1) i = 1;
  if (i > n) i = n;
  return (double)v[i - 1] / 1000.0;
}

typedef struct {
  long long *lat; /* µs */
  size_t n, cap;
  long errors, non200, wrong;
  unsigned maxver;
  int reloads;
  double seconds;
} run_t;

/* A closed loop over nconns keep-alive connections for `seconds`; with
 * reload_ms > 0 the function is saved again every reload_ms (two contents
 * in turn). Every answer must be 200 with one of the two markers. */
static void steady(run_t *r, int nconns, double seconds, int reload_ms) {
  memset(r, 0, sizeof *r);
  r->cap = 1 << 20;
  r->lat = malloc(sizeof *r->lat * r->cap);
  if (!r->lat) die("out of memory");
  static conn_t c[MAX_CONNS];
  char srcs[2][1024];
  source_for(srcs[0], sizeof srcs[0], "steady-A");
  source_for(srcs[1], sizeof srcs[1], "steady-B");
  save(srcs[0]);
  /* Wait until it answers, so the run starts from a settled state. */
  {
    conn_t *w = &c[0];
    w->fd = -1;
    char body[256];
    int status;
    unsigned ver;
    long long deadline = now_us() + 5000000;
    for (;;) {
      if (conn_get(w, &status, body, sizeof body, &ver, 2000) == 0 && status == 200 && !strcmp(body, "steady-A")) break;
      if (now_us() > deadline) die("the function did not settle");
      sleep_ms(2);
    }
    conn_close(w);
  }
  sleep_ms(300);
  for (int i = 0; i < nconns; i++)
    if (conn_open(&c[i])) die("cannot connect: %s", strerror(errno));
  long long t0 = now_us(), end = t0 + (long long)(seconds * 1e6), next_reload = t0 + reload_ms * 1000LL;
  int stopping = 0;
  for (;;) {
    long long now = now_us();
    if (now >= end) stopping = 1;
    if (!stopping && reload_ms > 0 && now >= next_reload) {
      r->reloads++;
      save(srcs[r->reloads % 2]);
      next_reload += reload_ms * 1000LL;
    }
    struct pollfd p[MAX_CONNS];
    int busy = 0;
    for (int i = 0; i < nconns; i++) {
      if (c[i].fd < 0 && !stopping && conn_open(&c[i])) r->errors++;
      if (c[i].fd >= 0 && !c[i].busy && !stopping && conn_send(&c[i])) {
        r->errors++;
        conn_close(&c[i]);
      }
      if (c[i].busy && now - c[i].sent_us > 5000000) {
        r->errors++;
        conn_close(&c[i]);
      }
      busy += c[i].busy;
      p[i] = (struct pollfd){c[i].busy ? c[i].fd : -1, POLLIN, 0};
    }
    if (stopping && !busy) break;
    if (now > end + 6000000) break;
    long long wake = stopping ? now + 50000 : end;
    if (!stopping && reload_ms > 0 && next_reload < wake) wake = next_reload;
    int ms = (int)((wake - now) / 1000);
    if (poll(p, (nfds_t)nconns, ms > 0 ? ms : 0) <= 0) continue;
    for (int i = 0; i < nconns; i++) {
      if (!p[i].revents || c[i].fd < 0) continue;
      int closed = conn_fill(&c[i]) < 0;
      int status;
      unsigned ver;
      char body[256];
      while (conn_parse(&c[i], &status, body, sizeof body, &ver)) {
        long long d = now_us() - c[i].sent_us;
        if (r->n < r->cap) r->lat[r->n++] = d;
        if (status != 200) r->non200++;
        else if (strcmp(body, "steady-A") && strcmp(body, "steady-B")) r->wrong++;
        if (ver > r->maxver) r->maxver = ver;
        if (!stopping && conn_send(&c[i])) {
          r->errors++;
          conn_close(&c[i]);
          break;
        }
      }
      if (closed && c[i].fd >= 0) {
        if (c[i].busy) r->errors++;
        conn_close(&c[i]);
      }
    }
  }
  r->seconds = (double)(now_us() - t0) / 1e6;
  for (int i = 0; i < nconns; i++) conn_close(&c[i]);
  qsort(r->lat, r->n, sizeof *r->lat, cmp_ll);
}

static void print_run(const char *name, const run_t *r) {
  printf("  %-22s %9zu %9.0f %8.3f %8.3f %8.3f %7ld", name, r->n, (double)r->n / r->seconds,
         quantile_ms(r->lat, r->n, 0.5), quantile_ms(r->lat, r->n, 0.99), r->n ? (double)r->lat[r->n - 1] / 1000.0 : 0,
         r->errors + r->non200 + r->wrong);
  if (r->reloads) printf("   %d saves, newest version %u", r->reloads, r->maxver);
  printf("\n");
}

static int env_int(const char *name, int def, int lo, int hi) {
  const char *v = getenv(name);
  int n = v ? atoi(v) : def;
  return n < lo ? lo : n > hi ? hi : n;
}

int main(int argc, char **argv) {
  const char *bin = argc > 1 ? argv[1] : getenv("CRESCENT_BIN");
  if (!bin || !*bin) bin = CR_DEFAULT_BIN;
  if (access(bin, X_OK)) die("%s is not an executable (pass the crescent binary as the first argument)", bin);
  int workers = env_int("BENCH_WORKERS", 2, 1, 64);
  int seconds = env_int("BENCH_SECONDS", 5, 1, 60);
  int saves = env_int("BENCH_SAVES", 50, 1, 1000);
  char wbuf[16];
  snprintf(wbuf, sizeof wbuf, "%d", workers);
  signal(SIGPIPE, SIG_IGN);
  start_server(bin, wbuf);

  /* The server answers v0 first. */
  conn_t probe = {.fd = -1};
  char body[256];
  int status;
  unsigned ver;
  long long deadline = now_us() + 10000000;
  while (conn_get(&probe, &status, body, sizeof body, &ver, 2000) || status != 200 || strcmp(body, "v0")) {
    if (now_us() > deadline) die("GET /bench does not answer v0 (log: %s)", logpath);
    sleep_ms(10);
  }

  /* 1. save -> live */
  long long *live = calloc((size_t)saves, sizeof *live);
  long polls = 0;
  int missed = 0;
  for (int i = 1; i <= saves; i++) {
    char marker[32], src[1024];
    snprintf(marker, sizeof marker, "v%d", i);
    source_for(src, sizeof src, marker);
    long long t0 = now_us();
    save(src);
    for (;;) {
      polls++;
      if (conn_get(&probe, &status, body, sizeof body, &ver, 2000) == 0 && status == 200 && !strcmp(body, marker)) break;
      if (now_us() - t0 > 5000000) {
        missed++;
        break;
      }
    }
    live[i - 1] = now_us() - t0;
    sleep_ms(30); /* let the server settle before the next save */
  }
  conn_close(&probe);
  qsort(live, (size_t)saves, sizeof *live, cmp_ll);

  /* 2. latency under steady load, without and with reloads */
  run_t quiet, busy;
  steady(&quiet, 2, seconds, 0);
  steady(&busy, 2, seconds, 100);

  printf("crescent reload benchmark: %s, %d workers, loopback, --redis none\n", bin, workers);
  printf("\nsave -> first answer from the new version (%d saves, temp file + rename, %ld polls):\n", saves, polls);
  printf("  p50 %.2f ms   p99 %.2f ms   max %.2f ms%s\n", quantile_ms(live, (size_t)saves, 0.5),
         quantile_ms(live, (size_t)saves, 0.99), (double)live[saves - 1] / 1000.0,
         missed ? "   (some saves were not live within 5 s!)" : "");
  printf("\nrequest latency, 2 keep-alive connections, closed loop, %d s each:\n", seconds);
  printf("  %-22s %9s %9s %8s %8s %8s %7s\n", "", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "failed");
  print_run("no reloads", &quiet);
  print_run("a save every 100 ms", &busy);
  int failed = missed || quiet.errors || quiet.non200 || quiet.wrong || busy.errors || busy.non200 || busy.wrong;
  free(live);
  free(quiet.lat);
  free(busy.lat);
  stop_server();
  return failed ? 1 : 0;
}
