/* test_redis.c - crescent and its Redis (docs/architecture.md §1, §5; core/svc/redis.h, core/proc/redisd.h): an
 * external Redis by URL (db, key prefix), one that is unreachable at start, killed, stuck or
 * late; no Redis at all; and the managed redis-server (AOF, restarts, leftovers of a killed
 * run, one server per data folder, redis-server missing). External Redis servers are started
 * here on free loopback ports and read back with redis-cli. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
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
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* --- helpers ------------------------------------------------------------------------------------ */

static void kget(int port, const char *path, http_resp_t *r) {
  if (http_request_ka(port, "GET", path, NULL, NULL, 0, r, 15000) != 0) fail_msg("GET %s: no response", path);
}

/* GET that must answer 200 with exactly want. */
static void get_body(int port, const char *path, const char *want) {
  http_resp_t r;
  kget(port, path, &r);
  if (r.status != 200 || strcmp(r.body, want) != 0)
    fail_msg("GET %s: got %d '%s', want 200 '%s'", path, r.status, r.body, want);
  http_free(&r);
}

/* GET that must answer 200; returns the body (malloc'd) and how long it took. */
static char *get_timed(int port, const char *path, long long *ms) {
  http_resp_t r;
  long long t0 = now_ms();
  kget(port, path, &r);
  *ms = now_ms() - t0;
  if (r.status != 200) fail_msg("GET %s: got %d '%s'", path, r.status, r.body);
  char *b = strdup(r.body);
  http_free(&r);
  return b;
}

/* Polls path until it answers 200 with a body starting with prefix; returns the ms it took, or
 * fails after timeout_ms. */
static long long wait_body_prefix(int port, const char *path, const char *prefix, int timeout_ms) {
  long long t0 = now_ms();
  char last[256] = "";
  while (now_ms() - t0 < timeout_ms) {
    http_resp_t r;
    if (http_request_ka(port, "GET", path, NULL, NULL, 0, &r, 5000) == 0) {
      snprintf(last, sizeof last, "%d %s", r.status, r.body);
      int ok = r.status == 200 && strncmp(r.body, prefix, strlen(prefix)) == 0;
      http_free(&r);
      if (ok) return now_ms() - t0;
    }
    sleep_ms(100);
  }
  fail_msg("GET %s did not answer '%s...' within %d ms; last: %s", path, prefix, timeout_ms, last);
  return -1;
}

static int alive(pid_t pid) {
  char path[64], st[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(st, 1, sizeof st - 1, f);
  fclose(f);
  st[n] = '\0';
  char *rp = strrchr(st, ')');
  return rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

static int wait_dead(pid_t pid, int timeout_ms) {
  long long t0 = now_ms();
  while (now_ms() - t0 < timeout_ms) {
    if (!alive(pid)) return 1;
    sleep_ms(20);
  }
  return 0;
}

/* Runs `redis-cli args...` (NULL-terminated) and returns its output (malloc'd); bounded at 5 s.
 * *status gets the exit status when status is not NULL; otherwise a failure fails the test. */
static char *rcli_status(int *status, const char *first, ...) {
  const char *args[32];
  int n = 0;
  args[n++] = first;
  va_list ap;
  va_start(ap, first);
  const char *a;
  while (n < 31 && (a = va_arg(ap, const char *))) args[n++] = a;
  va_end(ap);
  args[n] = NULL;
  return redis_cli(status, args);
}

/* Lines of a redis-cli answer that start with prefix. */
/* The usage keys (PREFIXusage:..., README "Usage and cost") are left out: they come with the
 * workers' flushes, about a second after the invocations. So are the kept log lines' keys
 * (<prefix>logs:..., README "Operating crescent"): they come with the workers' 50 ms batches,
 * whenever a line is written. */
static int count_lines_prefixed(const char *out, const char *prefix, int *total) {
  int n = 0, all = 0;
  const char *line = out;
  while (*line) {
    const char *nl = strchr(line, '\n');
    size_t len = nl ? (size_t)(nl - line) : strlen(line);
    int usage = strncmp(line, "cr:usage:", 9) == 0 || strncmp(line, "app1usage:", 10) == 0;
    const char *lg = strstr(line, "logs:");
    if (len > 0 && !usage && !(lg && (!nl || lg < nl))) {
      all++;
      if (strncmp(line, prefix, strlen(prefix)) == 0) n++;
    }
    if (!nl) break;
    line = nl + 1;
  }
  if (total) *total = all;
  return n;
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t len = sizeof a;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

static void rm_rf(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* --- an external redis-server ------------------------------------------------------------------- */

typedef struct {
  pid_t pid;
  int port;
  char dir[64];
} xredis_t;

/* Every external redis-server started, killed when the program ends (a failed assertion skips
 * the test's own cleanup). */
static pid_t xpids[16];
static int nxpids;
static char xdirs[16][64];
static int nxdirs;

static void kill_xredis(void) {
  for (int i = 0; i < nxpids; i++) {
    if (xpids[i] > 0 && waitpid(xpids[i], NULL, WNOHANG) == 0) {
      kill(xpids[i], SIGKILL);
      waitpid(xpids[i], NULL, 0);
    }
  }
  for (int i = 0; i < nxdirs; i++) rm_rf(xdirs[i]);
}

/* Does a Redis answer PING on 127.0.0.1:port (within 300 ms)? */
static int redis_pings(int port) {
  int fd = http_connect(port);
  if (fd < 0) return 0;
  http_sends(fd, "PING\r\n");
  char buf[64];
  size_t got = 0;
  long long deadline = now_ms() + 300;
  while (got < 7 && now_ms() < deadline) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, (int)(deadline - now_ms())) <= 0) break;
    ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
    if (n <= 0) break;
    got += (size_t)n;
  }
  http_close(fd);
  buf[got] = '\0';
  return strncmp(buf, "+PONG", 5) == 0;
}

/* Starts redis-server on port (0: a free one), without persistence, and waits until it answers. */
/* Removes dir when the program ends, even after a failed assertion. */
static void cleanup_later(const char *dir) {
  static int registered;
  if (!registered) {
    atexit(kill_xredis);
    registered = 1;
  }
  if (nxdirs < 16) snprintf(xdirs[nxdirs++], sizeof xdirs[0], "%s", dir);
}

static void xredis_start(xredis_t *x, int port) {
  if (!x->dir[0]) {
    snprintf(x->dir, sizeof x->dir, "/tmp/crescent-xredis-XXXXXX");
    assert_non_null(mkdtemp(x->dir));
    cleanup_later(x->dir);
  }
  x->port = port ? port : free_port();
  char portstr[16], logpath[128];
  snprintf(portstr, sizeof portstr, "%d", x->port);
  snprintf(logpath, sizeof logpath, "%s/redis.log", x->dir);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
    setpgid(0, 0);
    execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--dir", x->dir, "--daemonize", "no", (char *)NULL);
    _exit(127);
  }
  x->pid = pid;
  if (nxpids < 16) xpids[nxpids++] = pid;
  long long t0 = now_ms();
  while (now_ms() - t0 < 5000) {
    if (waitpid(pid, NULL, WNOHANG) == pid) {
      x->pid = -1;
      fail_msg("redis-server on port %d exited at start (see %s)", x->port, logpath);
    }
    if (redis_pings(x->port)) return;
    sleep_ms(20);
  }
  fail_msg("redis-server on port %d did not answer within 5 s", x->port);
}

/* Sends sig; for SIGKILL also reaps it. */
static void xredis_signal(xredis_t *x, int sig) {
  if (x->pid <= 0) return;
  kill(x->pid, sig);
  if (sig == SIGKILL) {
    waitpid(x->pid, NULL, 0);
    x->pid = -1;
  }
}

static void xredis_stop(xredis_t *x) {
  if (x->pid > 0) {
    kill(x->pid, SIGCONT);
    kill(x->pid, SIGTERM);
    long long t0 = now_ms();
    while (now_ms() - t0 < 5000 && waitpid(x->pid, NULL, WNOHANG) != x->pid) sleep_ms(20);
    if (now_ms() - t0 >= 5000) {
      kill(x->pid, SIGKILL);
      waitpid(x->pid, NULL, 0);
    }
    x->pid = -1;
  }
  if (x->dir[0]) rm_rf(x->dir);
  x->dir[0] = '\0';
}

/* A function that increments a counter and says what came back. */
static const char incr_fn[] =
    "local kv = require 'crescent.kv'\n"
    "return function()\n"
    "  local v, err = kv.incr('n')\n"
    "  if not v then return 'err:' .. tostring(err) end\n"
    "  return 'ok:' .. string.format('%d', v)\n"
    "end\n";

/* --- external Redis: db and prefix -------------------------------------------------------------- */

static void external_db_and_prefix(void **state) {
  (void)state;
  xredis_t x = {0};
  xredis_start(&x, 0);
  char url[64], portstr[16], args[160];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d/2", x.port);
  snprintf(portstr, sizeof portstr, "%d", x.port);

  srv_t s;
  srv_init(&s);
  srv_write(&s, "k.lua",
            "local kv = require 'crescent.kv'\n"
            "return function(event)\n"
            "  if event.query.get then\n"
            "    local v, err = kv.get('hello')\n"
            "    return tostring(v) .. '|' .. tostring(err)\n"
            "  end\n"
            "  local ver, err = kv.put('hello', 'world')\n"
            "  return tostring(ver) .. '|' .. tostring(err) .. '|' .. tostring(kv.get('hello'))\n"
            "end\n");
  snprintf(args, sizeof args, "--workers 1 --redis %s", url);
  srv_start(&s, args);
  assert_int_equal(srv_log_count(&s, "started redis-server", NULL), 0); /* no managed Redis */
  get_body(s.port, "/k", "1|nil|world");
  assert_true(srv_log_count(&s, "using Redis at", portstr, NULL) >= 1);

  /* The keys are in db 2, under the default prefix; db 0 is untouched. */
  char *out = rcli_status(NULL, "-p", portstr, "-n", "2", "KEYS", "*", NULL);
  int total;
  assert_int_equal(count_lines_prefixed(out, "cr:", &total), 4);
  assert_int_equal(total, 4);
  assert_non_null(strstr(out, "cr:{kv:default}:v:hello\n"));
  assert_non_null(strstr(out, "cr:{kv:default}:i\n"));
  assert_non_null(strstr(out, "cr:{kv:default}:seq\n"));
  assert_non_null(strstr(out, "cr:{kv:default}:changes\n"));
  free(out);
  out = rcli_status(NULL, "-p", portstr, "-n", "0", "DBSIZE", NULL);
  assert_string_equal(out, "0\n");
  free(out);
  out = rcli_status(NULL, "-p", portstr, "-n", "2", "HGET", "cr:{kv:default}:v:hello", "v", NULL);
  assert_string_equal(out, "world\n");
  free(out);
  assert_int_equal(srv_stop(&s), 0);

  /* --redis-prefix app1: the same Redis, another key space. */
  srv_init(&s);
  srv_write(&s, "k.lua",
            "local kv = require 'crescent.kv'\n"
            "return function(event)\n"
            "  if event.query.get then\n"
            "    local v, err = kv.get('hello')\n"
            "    return tostring(v) .. '|' .. tostring(err)\n"
            "  end\n"
            "  local ver, err = kv.put('hello', 'app1 world')\n"
            "  return tostring(ver) .. '|' .. tostring(err) .. '|' .. tostring(kv.get('hello'))\n"
            "end\n");
  snprintf(args, sizeof args, "--workers 1 --redis %s --redis-prefix app1", url);
  srv_start(&s, args);
  get_body(s.port, "/k?get=1", "nil|nil"); /* the cr: value is not seen */
  get_body(s.port, "/k", "1|nil|app1 world");
  out = rcli_status(NULL, "-p", portstr, "-n", "2", "KEYS", "*", NULL);
  assert_int_equal(count_lines_prefixed(out, "app1", &total), 4);
  assert_int_equal(count_lines_prefixed(out, "cr:", NULL), 4);
  assert_int_equal(total, 8);
  free(out);
  /* The kept log lines follow the prefix too. */
  for (long long until = now_ms() + 5000; now_ms() < until; sleep_ms(20)) {
    out = rcli_status(NULL, "-p", portstr, "-n", "2", "EXISTS", "app1logs:fn:k", NULL);
    int there = strcmp(out, "1\n") == 0;
    free(out);
    if (there) break;
  }
  out = rcli_status(NULL, "-p", portstr, "-n", "2", "SISMEMBER", "app1logs:streams", "app1logs:fn:k", NULL);
  assert_string_equal(out, "1\n");
  free(out);
  out = rcli_status(NULL, "-p", portstr, "-n", "2", "HGET", "cr:{kv:default}:v:hello", "v", NULL);
  assert_string_equal(out, "world\n"); /* the other prefix's value is untouched */
  free(out);
  assert_int_equal(srv_stop(&s), 0);
  xredis_stop(&x);
}

/* --- external Redis with an ACL user ------------------------------------------------------------ */

/* redis://user:password@host (percent-encoded): crescent authenticates as that user (AUTH user
 * password), in the check at start and on the workers' connections, with the default user
 * switched off. */
static void external_acl_user(void **state) {
  (void)state;
  xredis_t x = {0};
  xredis_start(&x, 0);
  char portstr[16], args[200];
  snprintf(portstr, sizeof portstr, "%d", x.port);
  char *out = rcli_status(NULL, "-p", portstr, "ACL", "SETUSER", "app", "on", ">p@ss:w/rd", "~cr:*", "+@all", NULL);
  assert_string_equal(out, "OK\n");
  free(out);
  out = rcli_status(NULL, "-p", portstr, "ACL", "SETUSER", "default", "off", NULL);
  assert_string_equal(out, "OK\n");
  free(out);

  srv_t s;
  srv_init(&s);
  srv_write(&s, "k.lua", incr_fn);
  snprintf(args, sizeof args, "--workers 2 --redis redis://app:p%%40ss%%3Aw%%2Frd@127.0.0.1:%d", x.port);
  srv_start(&s, args);
  get_body(s.port, "/k", "ok:1");
  get_body(s.port, "/k", "ok:2");
  assert_int_equal(srv_log_count(&s, "p@ss", NULL), 0); /* the password is in no message */

  /* The value is there, and the workers' connections are app's. */
  out = rcli_status(NULL, "-p", portstr, "--user", "app", "--pass", "p@ss:w/rd", "--no-auth-warning", "HGET",
                    "cr:{kv:default}:v:n", "v", NULL);
  assert_string_equal(out, "2\n");
  free(out);
  out = rcli_status(NULL, "-p", portstr, "--user", "app", "--pass", "p@ss:w/rd", "--no-auth-warning", "CLIENT",
                    "LIST", NULL);
  int total;
  int theirs = count_lines_prefixed(out, "id=", &total);
  if (theirs < 3) fail_msg("CLIENT LIST: want the 2 workers' connections and ours:\n%s", out);
  for (const char *l = out; (l = strstr(l, "id=")); l++) {
    const char *nl = strchr(l, '\n');
    const char *u = strstr(l, " user=");
    if (!u || (nl && u > nl) || strncmp(u, " user=app ", 10) != 0) fail_msg("a connection not as app:\n%s", out);
  }
  free(out);
  assert_int_equal(srv_stop(&s), 0);
  xredis_stop(&x);
}

/* --- a handler that computes before its call ------------------------------------------------------ */

/* A call's --redis-timeout counts from the call: a handler that computed for longer than that
 * before calling still gets its reply (not a "timeout" from the loop's time at its start). */
static void cpu_bound_then_call(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "busy.lua",
            "local kv = require 'crescent.kv'\n"
            "return {\n"
            "  timeout = 10,\n"
            "  handler = function()\n"
            "    local t0, x = os.clock(), 0\n"
            "    while os.clock() - t0 < 0.8 do x = x + 1 end\n"
            "    local v, err = kv.incr('busy')\n"
            "    if not v then return 'err:' .. tostring(err) end\n"
            "    return 'ok:' .. string.format('%d', v)\n"
            "  end,\n"
            "}\n");
  srv_start(&s, "--workers 1 --redis-timeout 0.5");
  get_body(s.port, "/busy", "ok:1");
  get_body(s.port, "/busy", "ok:2");
  assert_int_equal(srv_stop(&s), 0);
}

/* --- external Redis unreachable at start -------------------------------------------------------- */

static void external_unreachable_at_start(void **state) {
  (void)state;
  int port = free_port(); /* nothing listens there */
  char url[64], args[128];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
  srv_t s;
  srv_init(&s);
  srv_write(&s, "k.lua", incr_fn);
  snprintf(args, sizeof args, "--workers 1 --redis %s", url);
  long long t0 = now_ms();
  assert_int_equal(srv_try_start(&s, args, 10000), -1);
  assert_true(now_ms() - t0 < 8000);
  assert_true(s.stopped);
  assert_int_not_equal(s.exit_status, 0);
  if (srv_log_count(&s, url, "--redis auto", NULL) != 1) {
    char *log = srv_log(&s);
    fail_msg("want one line naming %s and suggesting --redis auto; the log:\n%s", url, log);
  }
  srv_expect_errors(&s, 1);
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", url, NULL), 1);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"listening\"", NULL), 0);
  srv_stop(&s);
}

/* --- external Redis killed while the server runs ------------------------------------------------ */

static void external_killed_and_back(void **state) {
  (void)state;
  xredis_t x = {0};
  xredis_start(&x, 0);
  char args[128];
  snprintf(args, sizeof args, "--workers 1 --redis redis://127.0.0.1:%d", x.port);
  srv_t s;
  srv_init(&s);
  srv_write(&s, "k.lua", incr_fn);
  srv_write(&s, "plain.lua", "return function() return 'plain' end\n");
  srv_start(&s, args);
  get_body(s.port, "/k", "ok:1");
  pid_t before[4];
  assert_int_equal(srv_worker_pids(&s, before, 4), 1);

  xredis_signal(&x, SIGKILL);
  long long ms;
  char *b = get_timed(s.port, "/k", &ms);
  assert_string_equal(b, "err:redis unavailable");
  if (ms >= 2000) fail_msg("the call failed after %lld ms, want < 2 s", ms);
  free(b);
  b = get_timed(s.port, "/k", &ms); /* and again, while it stays down */
  assert_string_equal(b, "err:redis unavailable");
  assert_true(ms < 2000);
  free(b);
  /* The server stays up, and says Redis is down (503: a load balancer acts). */
  http_resp_t r;
  kget(s.port, "/_/health", &r);
  assert_int_equal(r.status, 503);
  assert_string_equal(r.body, "{\"status\":\"unavailable\",\"redis\":\"down\"}");
  http_free(&r);
  get_body(s.port, "/plain", "plain");
  assert_true(srv_log_wait(&s, 1, 3000, "\"level\":\"warn\"", "lost the Redis connection", NULL) >= 1);

  /* Redis is back on the same port: calls succeed again within a few seconds. */
  xredis_start(&x, x.port);
  long long took = wait_body_prefix(s.port, "/k", "ok:", 8000);
  if (took > 5000) fail_msg("calls succeeded again only after %lld ms", took);
  get_body(s.port, "/k", "ok:2"); /* a fresh Redis (no persistence): 1 then 2 */
  kget(s.port, "/_/health", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{\"status\":\"ok\",\"redis\":\"up\"}");
  http_free(&r);
  assert_true(srv_log_wait(&s, 1, 3000, "connected to Redis again", NULL) >= 1);
  pid_t after[4];
  assert_int_equal(srv_worker_pids(&s, after, 4), 1);
  assert_int_equal(after[0], before[0]); /* the same worker throughout */
  assert_int_equal(srv_stop(&s), 0);      /* and no error line: warnings only */
  xredis_stop(&x);
}

/* --- a stuck Redis ------------------------------------------------------------------------------ */

static void external_stuck_timeout(void **state) {
  (void)state;
  xredis_t x = {0};
  xredis_start(&x, 0);
  char args[128];
  snprintf(args, sizeof args, "--workers 1 --redis redis://127.0.0.1:%d --redis-timeout 0.5", x.port);
  srv_t s;
  srv_init(&s);
  srv_write(&s, "k.lua", incr_fn);
  srv_start(&s, args);
  get_body(s.port, "/k", "ok:1");
  pid_t before[4];
  assert_int_equal(srv_worker_pids(&s, before, 4), 1);

  xredis_signal(&x, SIGSTOP);
  long long ms;
  char *b = get_timed(s.port, "/k", &ms);
  assert_string_equal(b, "err:timeout");
  if (ms < 400 || ms > 1500) fail_msg("the call timed out after %lld ms, want ~500", ms);
  free(b);
  http_resp_t r;
  kget(s.port, "/_/health", &r);
  assert_int_equal(r.status, 200);
  http_free(&r);

  /* Redis wakes up: its late replies are dropped, and calls work again. */
  xredis_signal(&x, SIGCONT);
  wait_body_prefix(s.port, "/k", "ok:", 5000);
  b = get_timed(s.port, "/k", &ms);
  assert_true(strncmp(b, "ok:", 3) == 0);
  assert_true(ms < 1000);
  free(b);
  pid_t after[4];
  assert_int_equal(srv_worker_pids(&s, after, 4), 1);
  assert_int_equal(after[0], before[0]); /* no crash when the late reply came */
  assert_int_equal(srv_log_count(&s, "killed by signal", NULL), 0);
  assert_int_equal(srv_stop(&s), 0);
  xredis_stop(&x);
}

/* --- an invocation that timed out while its reply was due --------------------------------------- */

static void late_reply_after_timeout(void **state) {
  (void)state;
  xredis_t x = {0};
  xredis_start(&x, 0);
  char args[128];
  snprintf(args, sizeof args, "--workers 1 --redis redis://127.0.0.1:%d --redis-timeout 5", x.port);
  srv_t s;
  srv_init(&s);
  srv_write(&s, "slow.lua",
            "local kv = require 'crescent.kv'\n"
            "return {\n"
            "  timeout = 0.3,\n"
            "  handler = function()\n"
            "    local v, err = kv.incr('slow')\n"
            "    if not v then return 'err:' .. tostring(err) end\n"
            "    return 'ok:' .. string.format('%d', v)\n"
            "  end,\n"
            "}\n");
  srv_write(&s, "k.lua", incr_fn);
  srv_write(&s, "plain.lua", "return function() return 'plain' end\n");
  srv_start(&s, args);
  get_body(s.port, "/slow", "ok:1");
  get_body(s.port, "/k", "ok:1");
  pid_t before[4];
  assert_int_equal(srv_worker_pids(&s, before, 4), 1);

  xredis_signal(&x, SIGSTOP);
  http_resp_t r;
  long long t0 = now_ms();
  kget(s.port, "/slow", &r);
  long long ms = now_ms() - t0;
  if (r.status != 504) fail_msg("GET /slow with Redis stopped: %d '%s', want 504", r.status, r.body);
  assert_non_null(strstr(r.body, "Task timed out after 0.30 seconds"));
  if (ms < 250 || ms > 1500) fail_msg("the 504 came after %lld ms, want ~300", ms);
  http_free(&r);
  srv_expect_errors(&s, 1);
  assert_int_equal(srv_log_wait(&s, 1, 3000, "\"level\":\"error\"", "Task timed out", NULL), 1);
  get_body(s.port, "/plain", "plain"); /* other work goes on meanwhile */

  /* Redis wakes up and answers the dead invocation: that reply is dropped. */
  xredis_signal(&x, SIGCONT);
  sleep_ms(200);
  get_body(s.port, "/slow", "ok:3"); /* the timed-out incr did run in Redis (2) */
  get_body(s.port, "/k", "ok:2");
  get_body(s.port, "/plain", "plain");
  get_body(s.port, "/slow", "ok:4");
  pid_t after[4];
  assert_int_equal(srv_worker_pids(&s, after, 4), 1);
  assert_int_equal(after[0], before[0]);
  assert_int_equal(srv_log_count(&s, "killed by signal", NULL), 0);
  assert_int_equal(srv_stop(&s), 0); /* (under ASan: no report in the log) */
  xredis_stop(&x);
}

/* --- no Redis ----------------------------------------------------------------------------------- */

static void redis_none(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "all.lua",
            "local kv = require 'crescent.kv'\n"
            "local storage = require 'crescent.storage'\n"
            "local queue = require 'crescent.queue'\n"
            "return function()\n"
            "  local out = {}\n"
            "  for _, r in ipairs({ { kv.get('a') }, { kv.put('a', 1) }, { storage.get('b', 'k') },\n"
            "                       { queue.send('q', 'm') } }) do\n"
            "    out[#out + 1] = tostring(r[1]) .. ',' .. tostring(r[2])\n"
            "  end\n"
            "  return table.concat(out, '|')\n"
            "end\n");
  srv_start(&s, "--workers 1 --redis none");
  long long ms;
  char *b = get_timed(s.port, "/all", &ms);
  assert_string_equal(b, "nil,redis unavailable|nil,redis unavailable|nil,redis unavailable|nil,redis unavailable");
  assert_true(ms < 1000);
  free(b);
  http_resp_t r;
  kget(s.port, "/_/health", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{\"status\":\"ok\",\"redis\":\"none\"}");
  http_free(&r);
  kget(s.port, "/_/storage/b/k", &r);
  assert_int_equal(r.status, 503);
  assert_non_null(strstr(r.body, "redis unavailable"));
  http_free(&r);
  assert_int_equal(srv_log_count(&s, "--redis none", NULL), 1);
  assert_int_equal(srv_log_count(&s, "started redis-server", NULL), 0);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- the managed Redis -------------------------------------------------------------------------- */

static const char keep_fn[] =
    "local kv = require 'crescent.kv'\n"
    "return function(event)\n"
    "  if event.query.put then\n"
    "    return tostring(kv.put('keep', { who = 'me', n = 2^53 })) .. '|' .. tostring(kv.incr('runs'))\n"
    "  end\n"
    "  local v, err, ver = kv.get('keep')\n"
    "  if not v then return 'missing:' .. tostring(err) end\n"
    "  return v.who .. '|' .. string.format('%.0f', v.n) .. '|' .. tostring(ver) .. '|' .. tostring(kv.incr('runs'))\n"
    "end\n";

/* Reads DATA/redis.pid; 0 if absent. */
static pid_t read_pidfile(const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/redis.pid", dir);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  int pid = 0;
  if (fscanf(f, "%d", &pid) != 1) pid = 0;
  fclose(f);
  return pid;
}

/* Starts s again on its own root (and so its data folder) after it exited: a fresh log, so the
 * harness reads the new port. */
static void restart_same_root(srv_t *s, const char *args) {
  assert_true(s->stopped);
  assert_int_equal(truncate(s->logpath, 0), 0);
  s->expected_errors = 0;
  srv_start(s, args);
}

static void managed_persistence(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "keep.lua", keep_fn);
  srv_start(&s, "--workers 2");
  char data[400], path[512];
  snprintf(data, sizeof data, "%s/.crescent", s.root);

  /* The data folder: the socket, the pid file, the AOF. */
  struct stat st;
  snprintf(path, sizeof path, "%s/redis.sock", data);
  assert_int_equal(stat(path, &st), 0);
  assert_true(S_ISSOCK(st.st_mode));
  snprintf(path, sizeof path, "%s/appendonlydir", data);
  assert_int_equal(stat(path, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  int aofs = 0;
  DIR *d = opendir(path);
  assert_non_null(d);
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".aof")) aofs++;
  closedir(d);
  assert_true(aofs >= 1);
  pid_t rpid = read_pidfile(data);
  assert_true(rpid > 0 && alive(rpid));
  assert_true(srv_log_count(&s, "started redis-server", data, NULL) == 1);

  get_body(s.port, "/keep?put=1", "1|1");
  get_body(s.port, "/keep", "me|9007199254740992|1|2");

  /* Stop with SIGTERM: the redis-server stops too; start again on the same folder. */
  srv_signal(&s, SIGTERM);
  assert_int_equal(srv_wait_exit(&s, 20000), 0);
  assert_true(wait_dead(rpid, 5000));
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", NULL), 0);
  restart_same_root(&s, "--workers 2");
  get_body(s.port, "/keep", "me|9007199254740992|1|3");
  pid_t rpid2 = read_pidfile(data);
  assert_true(rpid2 > 0 && rpid2 != rpid && alive(rpid2));
  assert_int_equal(srv_log_count(&s, "previous run", NULL), 0); /* a clean stop leaves nothing stale */
  assert_int_equal(srv_stop(&s), 0);
}

static void managed_after_sigkill(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "keep.lua", keep_fn);
  srv_start(&s, "--workers 2");
  char data[400], sockp[512], pidp[512];
  snprintf(data, sizeof data, "%s/.crescent", s.root);
  snprintf(sockp, sizeof sockp, "%s/redis.sock", data);
  snprintf(pidp, sizeof pidp, "%s/redis.pid", data);
  get_body(s.port, "/keep?put=1", "1|1");
  pid_t rpid = read_pidfile(data);
  assert_true(rpid > 0 && alive(rpid));
  pid_t w[8];
  int nw = srv_worker_pids(&s, w, 8);
  assert_int_equal(nw, 2);
  sleep_ms(200);

  /* The master is SIGKILLed: its redis-server and workers follow it (parent-death signal). */
  srv_signal(&s, SIGKILL);
  assert_int_equal(srv_wait_exit(&s, 5000), 128 + SIGKILL);
  if (!wait_dead(rpid, 5000)) {
    kill(rpid, SIGKILL);
    fail_msg("the managed redis-server (pid %d) outlived its SIGKILLed master", (int)rpid);
  }
  for (int i = 0; i < nw; i++) {
    if (!wait_dead(w[i], 5000)) {
      kill(w[i], SIGKILL);
      fail_msg("worker %d outlived its SIGKILLed master", (int)w[i]);
    }
  }
  assert_int_equal(access(sockp, F_OK), -1); /* redis-server stopped cleanly on SIGTERM */

  /* Now what a crash of both leaves behind: start, SIGKILL redis-server and the master at once. */
  restart_same_root(&s, "--workers 1");
  get_body(s.port, "/keep", "me|9007199254740992|1|2");
  rpid = read_pidfile(data);
  assert_true(rpid > 0);
  nw = srv_worker_pids(&s, w, 8);
  assert_int_equal(nw, 1);
  kill(rpid, SIGKILL);
  srv_signal(&s, SIGKILL);
  assert_int_equal(srv_wait_exit(&s, 5000), 128 + SIGKILL);
  assert_true(wait_dead(rpid, 5000));
  assert_true(wait_dead(w[0], 5000));
  assert_int_equal(access(sockp, F_OK), 0); /* stale socket */
  assert_int_equal(access(pidp, F_OK), 0);  /* stale pid file */

  /* Starting again on the same folder works, and the data is there (AOF). */
  restart_same_root(&s, "--workers 1");
  get_body(s.port, "/keep", "me|9007199254740992|1|3");
  pid_t rpid2 = read_pidfile(data);
  assert_true(rpid2 > 0 && rpid2 != rpid && alive(rpid2));
  assert_int_equal(srv_stop(&s), 0);
}

/* The managed redis-server dies under a running server: the master starts it
 * again (logs it), keeps supervising meanwhile, the workers reconnect, and
 * what was written a moment before (AOF, fsync every second) is there. */
static void managed_redis_killed_is_restarted(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "keep.lua", keep_fn);
  srv_start(&s, "--workers 1");
  char data[400];
  snprintf(data, sizeof data, "%s/.crescent", s.root);
  get_body(s.port, "/keep?put=1", "1|1");
  sleep_ms(1500); /* past the AOF's once-a-second fsync */
  pid_t rpid = read_pidfile(data);
  assert_true(rpid > 0 && alive(rpid));
  pid_t w[4];
  assert_int_equal(srv_worker_pids(&s, w, 4), 1);
  assert_int_equal(kill(rpid, SIGKILL), 0);
  assert_int_equal(srv_log_wait(&s, 1, 5000, "redis-server (pid", "was killed by signal 9; starting it again", NULL), 1);
  srv_expect_errors(&s, 1);
  /* Served again from the restarted redis-server, with the data. */
  wait_body_prefix(s.port, "/keep", "me|9007199254740992|1|", 10000);
  pid_t rpid2 = read_pidfile(data);
  assert_true(rpid2 > 0 && rpid2 != rpid && alive(rpid2));
  /* The master supervised throughout: a killed worker is replaced. */
  assert_int_equal(kill(w[0], SIGKILL), 0);
  srv_expect_errors(&s, 1);
  pid_t w2[4] = {0};
  long long t0 = now_ms();
  while (now_ms() - t0 < 5000 && !(srv_worker_pids(&s, w2, 4) == 1 && w2[0] != w[0])) sleep_ms(20);
  if (w2[0] == 0 || w2[0] == w[0]) fail_msg("the killed worker %d was not replaced within 5 s", (int)w[0]);
  wait_body_prefix(s.port, "/keep", "me|9007199254740992|1|", 10000);
  assert_int_equal(srv_stop(&s), 0);
}

static void managed_one_server_per_data(void **state) {
  (void)state;
  char data[64], args[160];
  snprintf(data, sizeof data, "/tmp/crescent-data-XXXXXX");
  assert_non_null(mkdtemp(data));
  cleanup_later(data);
  snprintf(args, sizeof args, "--workers 1 --data %s", data);
  srv_t a, b;
  srv_init(&a);
  srv_write(&a, "keep.lua", keep_fn);
  srv_start(&a, args);
  get_body(a.port, "/keep?put=1", "1|1");
  char sockp[128];
  snprintf(sockp, sizeof sockp, "%s/redis.sock", data);
  assert_int_equal(access(sockp, F_OK), 0);

  srv_init(&b);
  srv_write(&b, "keep.lua", keep_fn);
  assert_int_equal(srv_try_start(&b, args, 10000), -1);
  assert_int_not_equal(b.exit_status, 0);
  if (srv_log_count(&b, "another crescent server is using the data folder", NULL) != 1) {
    char *log = srv_log(&b);
    fail_msg("want 'another crescent server is using the data folder'; the log:\n%s", log);
  }
  srv_expect_errors(&b, srv_log_count(&b, "\"level\":\"error\"", "another crescent server", NULL));
  assert_int_equal(b.expected_errors, 1);
  srv_stop(&b);

  /* The first server did not notice. */
  get_body(a.port, "/keep", "me|9007199254740992|1|2");
  assert_int_equal(access(sockp, F_OK), 0);
  assert_int_equal(srv_stop(&a), 0);
  rm_rf(data);
}

/* redis-server cannot be found on PATH: the server says what to install and
 * that --redis URL is the alternative, and exits non-zero. */
static void managed_redis_server_missing(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "k.lua", incr_fn);
  char *saved = strdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
  setenv("PATH", "/nonexistent", 1);
  int rc = srv_try_start(&s, "--workers 1", 10000);
  setenv("PATH", saved, 1);
  free(saved);
  assert_int_equal(rc, -1);
  assert_true(s.stopped);
  assert_int_not_equal(s.exit_status, 0);
  if (srv_log_count(&s, "\"level\":\"error\"", "redis-server", "--redis redis://", NULL) != 1) {
    char *log = srv_log(&s);
    fail_msg("want one error line naming redis-server and suggesting --redis redis://...; the log:\n%s", log);
  }
  srv_expect_errors(&s, 1);
  srv_stop(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(external_db_and_prefix),   cmocka_unit_test(external_unreachable_at_start),
      cmocka_unit_test(external_killed_and_back), cmocka_unit_test(external_stuck_timeout),
      cmocka_unit_test(late_reply_after_timeout), cmocka_unit_test(redis_none),
      cmocka_unit_test(managed_persistence), cmocka_unit_test(managed_redis_killed_is_restarted),      cmocka_unit_test(managed_after_sigkill),
      cmocka_unit_test(managed_one_server_per_data), cmocka_unit_test(managed_redis_server_missing),
      cmocka_unit_test(external_acl_user),        cmocka_unit_test(cpu_bound_then_call),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
