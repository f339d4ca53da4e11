/* harness.c - starting crescent, HTTP over loopback, reading the log. */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long wall_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void mkdirs(const char *path) {
  char tmp[512];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p == '/') {
      *p = '\0';
      mkdir(tmp, 0755);
      *p = '/';
    }
  }
  mkdir(tmp, 0755);
}

void srv_init(srv_t *s) {
  memset(s, 0, sizeof *s);
  s->pid = -1;
  snprintf(s->root, sizeof s->root, "/tmp/crescent-test-XXXXXX");
  assert_non_null(mkdtemp(s->root));
  snprintf(s->fndir, sizeof s->fndir, "%s/functions", s->root);
  snprintf(s->logpath, sizeof s->logpath, "%s/server.log", s->root);
  mkdirs(s->fndir);
}

void srv_write(srv_t *s, const char *relpath, const char *content) {
  char path[700], dir[700];
  snprintf(path, sizeof path, "%s/%s", s->fndir, relpath);
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  *slash = '\0';
  mkdirs(dir);
  /* Write then rename, as an editor would, so a running server never sees half a file. */
  char tmp[720];
  snprintf(tmp, sizeof tmp, "%s/.tmp-%d", dir, (int)getpid());
  FILE *f = fopen(tmp, "w");
  assert_non_null(f);
  fputs(content, f);
  fclose(f);
  assert_int_equal(rename(tmp, path), 0);
}

void srv_remove(srv_t *s, const char *relpath) {
  char path[700];
  snprintf(path, sizeof path, "%s/%s", s->fndir, relpath);
  unlink(path);
}

static int read_port(srv_t *s) {
  char *log = srv_log(s);
  int port = 0;
  char *p = strstr(log, "\"msg\":\"listening\"");
  if (p) {
    char *q = strstr(p, "\"port\":");
    if (q) port = atoi(q + 7);
  }
  free(log);
  return port;
}

/* Servers still running when the test program ends (a failed assertion
 * skips srv_stop) are killed with their workers: each runs in its own
 * process group. */
static pid_t started[64];
static int nstarted;

static void kill_leftovers(void) {
  for (int i = 0; i < nstarted; i++) {
    if (started[i] > 0 && waitpid(started[i], NULL, WNOHANG) == 0) {
      kill(-started[i], SIGKILL);
      waitpid(started[i], NULL, 0);
    }
  }
}

static void track(pid_t pid) {
  if (nstarted == 0) atexit(kill_leftovers);
  if (nstarted < 64) started[nstarted++] = pid;
}

int srv_try_start(srv_t *s, const char *args, int timeout_ms) {
  const char *bin = getenv("CRESCENT_BIN");
  if (!bin) bin = "./crescent";
  char *argv[64];
  int argc = 0;
  char listen[] = "127.0.0.1:0";
  argv[argc++] = (char *)bin;
  argv[argc++] = "serve";
  argv[argc++] = "--functions";
  argv[argc++] = s->fndir;
  argv[argc++] = "--listen";
  argv[argc++] = listen;
  char *copy = args ? strdup(args) : NULL;
  if (copy) {
    for (char *tok = strtok(copy, " "); tok && argc < 60; tok = strtok(NULL, " ")) argv[argc++] = tok;
  }
  argv[argc] = NULL;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = open(s->logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) _exit(127);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
    if (chdir(s->root)) _exit(127);
    setpgid(0, 0);
    execv(bin, argv);
    _exit(127);
  }
  free(copy);
  s->pid = pid;
  s->stopped = 0;
  track(pid);
  long long deadline = now_ms() + timeout_ms;
  while (now_ms() < deadline) {
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      s->stopped = 1;
      s->exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      s->pid = -1;
      return -1;
    }
    int port = read_port(s);
    if (port > 0) {
      s->port = port;
      /* The port is reserved by the master; wait until a worker accepts. */
      while (now_ms() < deadline) {
        int fd = http_connect(port);
        if (fd >= 0) {
          close(fd);
          return 0;
        }
        sleep_ms(10);
      }
      return -1;
    }
    sleep_ms(10);
  }
  return -1;
}

void srv_start(srv_t *s, const char *args) {
  if (srv_try_start(s, args, 15000) != 0) {
    char *log = srv_log(s);
    fprintf(stderr, "server did not start; its log:\n%s\n", log);
    free(log);
    fail_msg("crescent serve did not start");
  }
}

void srv_signal(srv_t *s, int sig) {
  if (s->pid > 0) kill(s->pid, sig);
}

int srv_wait_exit(srv_t *s, int timeout_ms) {
  if (s->pid <= 0) return s->stopped ? s->exit_status : -1;
  long long deadline = now_ms() + timeout_ms;
  while (now_ms() < deadline) {
    int st;
    if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
      s->pid = -1;
      s->stopped = 1;
      s->exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return s->exit_status;
    }
    sleep_ms(10);
  }
  return -1;
}

void srv_expect_errors(srv_t *s, int n) { s->expected_errors += n; }

static void rm_rf(const char *path) {
  struct stat st;
  if (lstat(path, &st)) return;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    if (d) {
      struct dirent *e;
      while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char child[1024];
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        rm_rf(child);
      }
      closedir(d);
    }
    rmdir(path);
  } else {
    unlink(path);
  }
}

int srv_stop(srv_t *s) {
  int status = s->exit_status;
  if (s->pid > 0) {
    kill(s->pid, SIGTERM);
    status = srv_wait_exit(s, 20000);
    if (status < 0) {
      kill(-s->pid, SIGKILL);
      kill(s->pid, SIGKILL);
      waitpid(s->pid, NULL, 0);
      s->pid = -1;
      fail_msg("crescent did not stop within 20 s of SIGTERM");
    }
  }
  /* The log must hold no error line the test did not provoke on purpose. */
  int errors = srv_log_count(s, "\"level\":\"error\"", NULL);
  if (errors != s->expected_errors) {
    char *log = srv_log(s);
    fprintf(stderr, "expected %d error lines in the log, found %d; the log:\n%s\n", s->expected_errors, errors,
            log);
    free(log);
    rm_rf(s->root);
    fail_msg("unexpected error lines in the server log");
  }
  /* Sanitizer reports go to the same file. */
  if (srv_log_count(s, "ERROR: AddressSanitizer", NULL) || srv_log_count(s, "runtime error:", NULL) ||
      srv_log_count(s, "ERROR: LeakSanitizer", NULL)) {
    char *log = srv_log(s);
    fprintf(stderr, "sanitizer report in the server log:\n%s\n", log);
    free(log);
    rm_rf(s->root);
    fail_msg("sanitizer report");
  }
  rm_rf(s->root);
  return status;
}

char *srv_log(srv_t *s) { return read_file(s->logpath); }

char *read_file(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return strdup("");
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  size_t got = fread(buf, 1, (size_t)n, f);
  buf[got] = '\0';
  fclose(f);
  return buf;
}

/* The lines of text that contain every needle (first, then ap up to a NULL):
 * their count, and a copy of the first one in *found when found is not NULL.
 * With complete, an unterminated last line (a log line still being written)
 * does not count. */
static int match_lines(const char *text, int complete, char **found, const char *first, va_list ap) {
  const char *needles[16];
  int nn = 0;
  needles[nn++] = first;
  const char *n;
  while (nn < 16 && (n = va_arg(ap, const char *))) needles[nn++] = n;
  if (found) *found = NULL;
  int count = 0;
  for (const char *line = text; *line;) {
    const char *nl = strchr(line, '\n');
    if (!nl && complete) break;
    size_t len = nl ? (size_t)(nl - line) : strlen(line);
    int all = 1;
    for (int i = 0; i < nn && all; i++) all = memmem(line, len, needles[i], strlen(needles[i])) != NULL;
    if (all && found && !*found) *found = strndup(line, len);
    count += all;
    if (!nl) break;
    line = nl + 1;
  }
  return count;
}

int text_lines_with(const char *text, const char *needle, ...) {
  va_list ap;
  va_start(ap, needle);
  int c = match_lines(text, 0, NULL, needle, ap);
  va_end(ap);
  return c;
}

static int count_lines(srv_t *s, const char *first, va_list ap) {
  char *log = srv_log(s);
  int count = match_lines(log, 1, NULL, first, ap);
  free(log);
  return count;
}

int srv_log_count(srv_t *s, const char *needle, ...) {
  va_list ap;
  va_start(ap, needle);
  int c = count_lines(s, needle, ap);
  va_end(ap);
  return c;
}

int srv_log_wait(srv_t *s, int n, int timeout_ms, const char *needle, ...) {
  long long deadline = now_ms() + timeout_ms;
  int c = 0;
  for (;;) {
    va_list ap;
    va_start(ap, needle);
    c = count_lines(s, needle, ap);
    va_end(ap);
    if (c >= n || now_ms() >= deadline) return c;
    sleep_ms(10);
  }
}

int srv_worker_pids(srv_t *s, pid_t *out, int max) {
  int n = 0;
  DIR *d = opendir("/proc");
  if (!d) return 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < max) {
    int pid = atoi(e->d_name);
    if (pid <= 0) continue;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[got] = '\0';
    /* "pid (comm) state ppid ...": workers name themselves "cr-worker N"; the
     * validator ("cr-validator") and a managed redis-server are children too. */
    char *lp = strchr(buf, '('), *rp = strrchr(buf, ')');
    if (!lp || !rp || strncmp(lp + 1, "cr-worker ", 10) != 0) continue;
    char state;
    int ppid;
    if (sscanf(rp + 2, "%c %d", &state, &ppid) != 2) continue;
    if (ppid == s->pid && state != 'Z') out[n++] = pid;
  }
  closedir(d);
  return n;
}

int worker_index(pid_t pid) {
  char path[64], stat[512] = "";
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r"); /* (read_file sizes files by stat, and /proc files have none) */
  if (!f) return -1;
  if (!fgets(stat, sizeof stat, f)) stat[0] = '\0';
  fclose(f);
  const char *lp = strchr(stat, '(');
  return lp && strncmp(lp + 1, "cr-worker ", 10) == 0 ? atoi(lp + 11) : -1;
}

int srv_workers_wait(srv_t *s, pid_t *out, int max, int want, int timeout_ms) {
  long long deadline = now_ms() + timeout_ms;
  for (;;) {
    int n = srv_worker_pids(s, out, max);
    if (n == want || now_ms() >= deadline) return n;
    sleep_ms(10);
  }
}

int pids_same(const pid_t *a, int na, const pid_t *b, int nb) {
  if (na != nb) return 0;
  for (int i = 0; i < na; i++) {
    int found = 0;
    for (int j = 0; j < nb; j++) found |= a[i] == b[j];
    if (!found) return 0;
  }
  return 1;
}

char *srv_log_line(srv_t *s, const char *first, ...) {
  char *log = srv_log(s);
  char *found;
  va_list ap;
  va_start(ap, first);
  match_lines(log, 1, &found, first, ap);
  va_end(ap);
  free(log);
  return found;
}

char *srv_report_of(srv_t *s, const char *rid) {
  char idf[300];
  snprintf(idf, sizeof idf, "\"requestId\":\"%.200s\"", rid);
  long long deadline = now_ms() + 5000;
  for (;;) {
    char *line = srv_log_line(s, "\"msg\":\"report\"", idf, NULL);
    if (line) return line;
    if (now_ms() >= deadline) fail_msg("no report line for %s", rid);
    sleep_ms(10);
  }
}

/* --- redis-cli -------------------------------------------------------------------------------- */

char *redis_cli(int *status, const char *const *args) {
  const char *argv[34];
  int argc = 0;
  argv[argc++] = "redis-cli";
  char what[256] = "";
  for (int i = 0; args[i] && argc < 33; i++) {
    argv[argc++] = args[i];
    size_t wl = strlen(what);
    snprintf(what + wl, sizeof what - wl, " %s", args[i]);
  }
  argv[argc] = NULL;
  int p[2];
  assert_int_equal(pipe(p), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(p[1], STDOUT_FILENO);
    dup2(p[1], STDERR_FILENO);
    close(p[0]);
    close(p[1]);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    execvp("redis-cli", (char *const *)argv);
    _exit(127);
  }
  close(p[1]);
  size_t cap = 65536, len = 0;
  char *out = malloc(cap);
  long long deadline = now_ms() + 5000;
  for (;;) {
    long long left = deadline - now_ms();
    struct pollfd pf = {p[0], POLLIN, 0};
    if (left <= 0 || poll(&pf, 1, (int)left) <= 0) {
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
      close(p[0]);
      free(out);
      fail_msg("redis-cli%s did not finish within 5 s", what);
    }
    if (len + 4096 > cap) out = realloc(out, cap *= 2);
    ssize_t n = read(p[0], out + len, cap - len - 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    len += (size_t)n;
  }
  close(p[0]);
  int st;
  waitpid(pid, &st, 0);
  out[len] = '\0';
  int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  if (status) *status = code;
  else if (code != 0) fail_msg("redis-cli%s failed: %s", what, out);
  return out;
}

/* --- JSON text ---------------------------------------------------------------------------------- */

const char *json_val(const char *json, const char *key) {
  char k[128];
  snprintf(k, sizeof k, "\"%s\":", key);
  const char *p = strstr(json, k);
  return p ? p + strlen(k) : NULL;
}

double json_num(const char *json, const char *key) {
  const char *v = json_val(json, key);
  if (!v) fail_msg("'%s' missing in %s", key, json);
  char *end;
  double d = strtod(v, &end);
  if (end == v) fail_msg("'%s' is not a number in %s", key, json);
  return d;
}

char *api_fn_entry(const char *json, const char *name) {
  char key[256];
  snprintf(key, sizeof key, "{\"name\":\"%s\",", name);
  const char *p = strstr(json, key);
  if (!p) return NULL;
  const char *e = strstr(p + 1, "{\"name\":\"");
  size_t len = e ? (size_t)(e - p) : strlen(p);
  char *out = malloc(len + 1);
  memcpy(out, p, len);
  out[len] = '\0';
  return out;
}

int split_fields(char *s, char **f, int max) {
  int n = 0;
  f[n++] = s;
  for (char *p = s; *p && n < max; p++) {
    if (*p == '|') {
      *p = '\0';
      f[n++] = p + 1;
    }
  }
  return n;
}

/* --- HTTP --------------------------------------------------------------------------------------- */

int http_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

void http_send(int fd, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return; /* the server may close early on purpose (413, 431) */
    p += w;
    len -= (size_t)w;
  }
}

void http_sends(int fd, const char *data) { http_send(fd, data, strlen(data)); }

/* Per-fd read buffers, so bytes of a following pipelined response are kept. */
typedef struct {
  int fd;
  char *data;
  size_t len, cap;
} rbuf_t;
static rbuf_t rbufs[64];

static rbuf_t *rbuf_for(int fd) {
  for (int i = 0; i < 64; i++)
    if (rbufs[i].fd == fd && rbufs[i].data) return &rbufs[i];
  for (int i = 0; i < 64; i++) {
    if (!rbufs[i].data) {
      rbufs[i].fd = fd;
      rbufs[i].cap = 65536;
      rbufs[i].data = malloc(rbufs[i].cap);
      rbufs[i].len = 0;
      return &rbufs[i];
    }
  }
  fail_msg("too many open test connections");
  return NULL;
}

static void rbuf_drop(int fd) {
  for (int i = 0; i < 64; i++) {
    if (rbufs[i].fd == fd && rbufs[i].data) {
      free(rbufs[i].data);
      memset(&rbufs[i], 0, sizeof rbufs[i]);
    }
  }
}

/* Reads more into b; returns bytes read, 0 on EOF, -1 on timeout/error. */
static int fill(int fd, rbuf_t *b, long long deadline) {
  long long left = deadline - now_ms();
  if (left <= 0) return -1;
  struct pollfd p = {fd, POLLIN, 0};
  int pr = poll(&p, 1, (int)left);
  if (pr <= 0) return -1;
  if (b->len == b->cap) {
    b->cap *= 2;
    b->data = realloc(b->data, b->cap);
  }
  ssize_t r = recv(fd, b->data + b->len, b->cap - b->len, 0);
  if (r < 0) return errno == ECONNRESET ? 0 : -1;
  b->len += (size_t)r;
  return (int)r;
}

const char *http_header(const http_resp_t *r, const char *name) {
  static char val[4096];
  if (!r->head) return NULL;
  size_t nl = strlen(name);
  const char *line = strstr(r->head, "\r\n");
  while (line) {
    line += 2;
    if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
      const char *v = line + nl + 1;
      while (*v == ' ') v++;
      const char *e = strstr(v, "\r\n");
      size_t len = e ? (size_t)(e - v) : strlen(v);
      if (len >= sizeof val) len = sizeof val - 1;
      memcpy(val, v, len);
      val[len] = '\0';
      return val;
    }
    line = strstr(line, "\r\n");
  }
  return NULL;
}

int http_read(int fd, http_resp_t *r, int head_only, int timeout_ms) {
  memset(r, 0, sizeof *r);
  rbuf_t *b = rbuf_for(fd);
  long long deadline = now_ms() + timeout_ms;
  char *end;
  for (;;) {
    end = b->len ? memmem(b->data, b->len, "\r\n\r\n", 4) : NULL;
    if (end) break;
    int n = fill(fd, b, deadline);
    if (n <= 0) {
      r->closed = n == 0;
      return -1;
    }
  }
  size_t head_len = (size_t)(end - b->data) + 4;
  r->head = malloc(head_len + 1);
  memcpy(r->head, b->data, head_len);
  r->head[head_len] = '\0';
  r->status = atoi(r->head + 9);
  /* Interim 100 Continue: hand it back as its own response. */
  size_t body_len = 0;
  int until_close = 0;
  const char *cl = http_header(r, "content-length");
  if (head_only || r->status == 204 || r->status == 304 || r->status / 100 == 1) body_len = 0;
  else if (cl) body_len = (size_t)strtoull(cl, NULL, 10);
  else until_close = 1;
  while (until_close || b->len < head_len + body_len) {
    int n = fill(fd, b, deadline);
    if (n == 0 && until_close) break;
    if (n <= 0) {
      r->closed = n == 0;
      free(r->head);
      r->head = NULL;
      return -1;
    }
  }
  if (until_close) body_len = b->len - head_len;
  r->body = malloc(body_len + 1);
  memcpy(r->body, b->data + head_len, body_len);
  r->body[body_len] = '\0';
  r->body_len = body_len;
  memmove(b->data, b->data + head_len + body_len, b->len - head_len - body_len);
  b->len -= head_len + body_len;
  const char *conn = http_header(r, "connection");
  r->closed = conn && strcasecmp(conn, "close") == 0;
  return 0;
}

/* One request on a new connection, which we close after the response. */
static int exchange(int port, const char *method, const char *path, const char *headers, const char *body,
                    size_t body_len, http_resp_t *r, int conn_close, int timeout_ms) {
  int fd = http_connect(port);
  if (fd < 0) return -1;
  char head[8192];
  int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s", method, path,
                   conn_close ? "Connection: close\r\n" : "", headers ? headers : "");
  if (body) n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n", body_len);
  n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
  http_send(fd, head, (size_t)n);
  if (body && body_len) http_send(fd, body, body_len);
  int rc = http_read(fd, r, strcmp(method, "HEAD") == 0, timeout_ms);
  http_close(fd);
  return rc;
}

int http_request(int port, const char *method, const char *path, const char *headers, const char *body,
                 size_t body_len, http_resp_t *r) {
  return exchange(port, method, path, headers, body, body_len, r, 1, 15000);
}

int http_request_ka(int port, const char *method, const char *path, const char *headers, const char *body,
                    size_t body_len, http_resp_t *r, int timeout_ms) {
  return exchange(port, method, path, headers, body, body_len, r, 0, timeout_ms);
}

void http_get(int port, const char *path, http_resp_t *r) {
  if (http_request(port, "GET", path, NULL, NULL, 0, r) != 0) fail_msg("GET %s: no response", path);
}

void http_expect(int port, const char *path, int status, const char *body) {
  http_resp_t r;
  http_get(port, path, &r);
  if (r.status != status || (body && strcmp(r.body, body) != 0)) {
    fprintf(stderr, "GET %s:\n--- got %d:\n%s\n--- want %d:\n%s\n", path, r.status, r.body, status,
            body ? body : "(any body)");
    fail_msg("GET %s: got %d, not %d with the expected body", path, r.status, status);
  }
  http_free(&r);
}

void http_expect_body(int port, const char *path, const char *want) { http_expect(port, path, 200, want); }

void http_request_id(const http_resp_t *r, char *out, size_t n) {
  const char *id = http_header(r, "x-request-id");
  assert_non_null(id);
  assert_true(strlen(id) > 0);
  snprintf(out, n, "%s", id);
}

void http_free(http_resp_t *r) {
  free(r->head);
  free(r->body);
  memset(r, 0, sizeof *r);
}

int http_wait_closed(int fd, int timeout_ms) {
  long long deadline = now_ms() + timeout_ms;
  char buf[4096];
  while (now_ms() < deadline) {
    struct pollfd p = {fd, POLLIN, 0};
    int pr = poll(&p, 1, (int)(deadline - now_ms()));
    if (pr <= 0) return 0;
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r <= 0) {
      rbuf_drop(fd);
      return 1;
    }
  }
  return 0;
}

void http_close(int fd) {
  rbuf_drop(fd);
  close(fd);
}

/* --- writing files the other ways ------------------------------------------------------------- */

int srv_open_inplace(srv_t *s, const char *relpath) {
  char path[700], dir[700];
  snprintf(path, sizeof path, "%s/%s", s->fndir, relpath);
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  *slash = '\0';
  mkdirs(dir);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true(fd >= 0);
  return fd;
}

void srv_write_inplace(srv_t *s, const char *relpath, const char *content) {
  int fd = srv_open_inplace(s, relpath);
  size_t len = strlen(content), off = 0;
  while (off < len) {
    ssize_t w = write(fd, content + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    assert_true(w > 0);
    off += (size_t)w;
  }
  assert_int_equal(close(fd), 0);
}

void srv_rename(srv_t *s, const char *from, const char *to) {
  char a[700], b[700];
  snprintf(a, sizeof a, "%s/%s", s->fndir, from);
  snprintf(b, sizeof b, "%s/%s", s->fndir, to);
  assert_int_equal(rename(a, b), 0);
}

void srv_mkdir(srv_t *s, const char *relpath) {
  char path[700];
  snprintf(path, sizeof path, "%s/%s", s->fndir, relpath);
  mkdirs(path);
}

void srv_redis_sock(const srv_t *s, char *out, size_t n) { snprintf(out, n, "%s/.crescent/redis.sock", s->root); }

char *redis_cli_sock(const char *sock, ...) {
  const char *args[32];
  int n = 0;
  args[n++] = "-s";
  args[n++] = sock;
  va_list ap;
  va_start(ap, sock);
  const char *a;
  while (n < 31 && (a = va_arg(ap, const char *))) args[n++] = a;
  va_end(ap);
  args[n] = NULL;
  return redis_cli(NULL, args);
}

/* redis-cli -s <s's socket> first ap...: the output (trailing newlines cut), and its status in
 * *status (NULL: a failure fails the test). */
static char *rcli_v(const srv_t *s, int *status, const char *first, va_list ap) {
  char sock[400];
  srv_redis_sock(s, sock, sizeof sock);
  const char *args[32];
  int n = 0;
  args[n++] = "-s";
  args[n++] = sock;
  args[n++] = first;
  const char *a;
  while (n < 31 && (a = va_arg(ap, const char *))) args[n++] = a;
  args[n] = NULL;
  char *out = redis_cli(status, args);
  size_t len = strlen(out);
  while (len && (out[len - 1] == '\n' || out[len - 1] == '\r')) out[--len] = '\0';
  return out;
}

char *srv_rcli(const srv_t *s, const char *first, ...) {
  va_list ap;
  va_start(ap, first);
  char *out = rcli_v(s, NULL, first, ap);
  va_end(ap);
  return out;
}

char *srv_rcli_try(const srv_t *s, const char *first, ...) {
  va_list ap;
  va_start(ap, first);
  int status = 0;
  char *out = rcli_v(s, &status, first, ap);
  va_end(ap);
  if (status != 0 || strncmp(out, "ERR", 3) == 0 || strstr(out, "Could not connect")) {
    free(out);
    return NULL;
  }
  return out;
}

long long srv_rcli_ll(const srv_t *s, const char *first, ...) {
  va_list ap;
  va_start(ap, first);
  char *out = rcli_v(s, NULL, first, ap);
  va_end(ap);
  long long v = strtoll(out, NULL, 10);
  free(out);
  return v;
}

void srv_rcli_expect(const srv_t *s, const char *want, const char *first, ...) {
  va_list ap;
  va_start(ap, first);
  char *out = rcli_v(s, NULL, first, ap);
  va_end(ap);
  if (strcmp(out, want) != 0) fail_msg("redis-cli %s ...: got '%s', want '%s'", first, out, want);
  free(out);
}

void srv_wait_xlen(const srv_t *s, const char *key, long want) {
  long long t0 = now_ms();
  long n;
  while ((n = (long)srv_rcli_ll(s, "XLEN", key, NULL)) != want && now_ms() - t0 < 5000) sleep_ms(50);
  if (n != want) fail_msg("%s holds %ld entries after 5 s, want %ld", key, n, want);
}

void http_get_ok(int port, const char *fmt, ...) {
  char path[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(path, sizeof path, fmt, ap);
  va_end(ap);
  http_resp_t r;
  http_get(port, path, &r);
  if (r.status != 200) fail_msg("%s: %d %s", path, r.status, r.body);
  http_free(&r);
}

const char srv_queue_sender[] =
    "local queue = require 'crescent.queue'\n"
    "return function(event)\n"
    "  local q = event.query.q\n"
    "  if event.query.batch then\n"
    "    local list = {}\n"
    "    for i = 1, tonumber(event.query.batch) do list[i] = { n = i } end\n"
    "    local ids, err = queue.sendBatch(q, list)\n"
    "    return ids and #ids or err\n"
    "  end\n"
    "  local id, err = queue.send(q, event.query.b)\n"
    "  return id or err\n"
    "end\n";

void srv_send_msg(srv_t *s, const char *queue, const char *body) {
  char path[300];
  snprintf(path, sizeof path, "/send?q=%s&b=%s", queue, body);
  http_resp_t r;
  http_get(s->port, path, &r);
  if (r.status != 200 || !strchr(r.body, '-')) fail_msg("%s: %d %s", path, r.status, r.body);
  http_free(&r);
}

void srv_wait_msg(srv_t *s, int n, const char *msg) {
  char needle[400];
  snprintf(needle, sizeof needle, "\"msg\":\"%s\"", msg);
  int got = srv_log_wait(s, n, 10000, needle, NULL);
  if (got < n) fail_msg("%d lines with %s, want %d; log:\n%s", got, needle, n, srv_log(s));
}

int srv_count_msg(srv_t *s, const char *msg) {
  char needle[400];
  snprintf(needle, sizeof needle, "\"msg\":\"%s\"", msg);
  return srv_log_count(s, needle, NULL);
}

void srv_wait_group(srv_t *s, const char *key, const char *fn) {
  char name[200];
  snprintf(name, sizeof name, "\nname\n%s\n", fn);
  for (int i = 0; i < 200; i++) {
    char *g = srv_rcli(s, "XINFO", "GROUPS", key, NULL);
    char *line = malloc(strlen(g) + 2);
    snprintf(line, strlen(g) + 2, "\n%s", g);
    int found = strstr(line, name) != NULL;
    free(line);
    free(g);
    if (found) return;
    sleep_ms(25);
  }
  fail_msg("no group %s on %s", fn, key);
}
