/* redisd.c - starting, watching and stopping the managed redis-server. */
#include "redisd.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"
#include "hash.h"
#include "log.h"
#include "redis.h"

#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 10000

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* redis-server on PATH, as a shell would find it. */
static int find_redis_server(char *out, size_t outlen) {
  const char *path = getenv("PATH");
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
  for (char *dir = strtok(buf, ":"); dir; dir = strtok(NULL, ":")) {
    snprintf(out, outlen, "%s/redis-server", dir);
    if (access(out, X_OK) == 0) return 0;
  }
  return -1;
}

static int mkdirs(const char *path) {
  char tmp[1024];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(tmp, 0700) && errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(tmp, 0700) && errno != EEXIST) return -1;
  return 0;
}

/* Is pid a live redis-server? */
static int is_redis(pid_t pid) {
  char path[64], cmd[256];
  snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(cmd, 1, sizeof cmd - 1, f);
  fclose(f);
  cmd[n] = '\0';
  return strstr(cmd, "redis-server") != NULL;
}

static int wait_exit(pid_t pid, int timeout_ms, int child) {
  long long deadline = (long long)(cr_clock_ns() / 1000000) + timeout_ms;
  while ((long long)(cr_clock_ns() / 1000000) < deadline) {
    if (child) {
      if (waitpid(pid, NULL, WNOHANG) == pid) return 0;
    } else if (kill(pid, 0) != 0 && errno == ESRCH) {
      return 0;
    }
    sleep_ms(20);
  }
  return -1;
}

/* A redis-server a previous run left behind (crescent was killed): stop it. */
static void clear_stale(cr_redisd_t *d) {
  char pidfile[1100];
  snprintf(pidfile, sizeof pidfile, "%s/redis.pid", d->dir);
  FILE *f = fopen(pidfile, "r");
  if (f) {
    int pid = 0;
    if (fscanf(f, "%d", &pid) == 1 && pid > 1 && is_redis(pid)) {
      cr_log(CR_LOG_WARN, NULL, NULL, "stopping the redis-server (pid %d) a previous run left in %s", pid, d->dir);
      kill(pid, SIGTERM);
      if (wait_exit(pid, STOP_TIMEOUT_MS, 0)) {
        kill(pid, SIGKILL);
        wait_exit(pid, 2000, 0);
      }
    }
    fclose(f);
    unlink(pidfile);
  }
  unlink(d->sock);
}

/* Starts redis-server; with wait, until it answers (at most START_TIMEOUT_MS). */
static int spawn(cr_redisd_t *d, int wait, char *err, size_t errlen) {
  char bin[1100];
  if (find_redis_server(bin, sizeof bin)) {
    snprintf(err, errlen,
             "redis-server not found: install it (apt-get install redis-server, or make deps), "
             "or use an existing Redis with --redis redis://host:port");
    return CR_ENOENT;
  }
  char logpath[1100], pidfile[1100];
  snprintf(logpath, sizeof logpath, "%s/redis.log", d->dir);
  snprintf(pidfile, sizeof pidfile, "%s/redis.pid", d->dir);
  cr_log_flush();
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(err, errlen, "cannot fork redis-server: %s", strerror(errno));
    return CR_EIO;
  }
  if (pid == 0) {
    /* Stop with the master, even if it is killed. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setpgid(0, 0); /* a terminal's Ctrl-C is for the master, which stops us in order */
    int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    close_range(3, ~0U, 0); /* nothing of the master's goes on into redis-server */
    execl(bin, "redis-server", "--port", "0", "--unixsocket", d->sock, "--unixsocketperm", "700", "--dir", d->dir,
          "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no", "--pidfile",
          pidfile, "--logfile", "", "--databases", "16", (char *)NULL);
    _exit(127);
  }
  d->pid = pid;
  if (!wait) return 0;
  /* Wait until it answers. */
  cr_redis_url_t u;
  char perr[256];
  cr_redis_url_parse(d->url, &u, perr, sizeof perr);
  long long deadline = (long long)(cr_clock_ns() / 1000000) + START_TIMEOUT_MS;
  while ((long long)(cr_clock_ns() / 1000000) < deadline) {
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      d->pid = 0;
      snprintf(err, errlen, "redis-server exited at start (status %d); see %s", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
               logpath);
      return CR_EIO;
    }
    if (access(d->sock, F_OK) == 0 && cr_redis_ping(&u, 500, perr, sizeof perr) == 0) return 0;
    sleep_ms(10);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  d->pid = 0;
  snprintf(err, errlen, "redis-server did not answer within %d s; see %s", START_TIMEOUT_MS / 1000, logpath);
  return CR_ETIMEDOUT;
}

int cr_redisd_start(cr_redisd_t *d, const char *data_dir, char *err, size_t errlen) {
  memset(d, 0, sizeof *d);
  d->lock_fd = -1;
  if (mkdirs(data_dir)) {
    snprintf(err, errlen, "cannot create the data folder %s: %s", data_dir, strerror(errno));
    return CR_EIO;
  }
  if (!realpath(data_dir, d->dir)) {
    snprintf(err, errlen, "cannot resolve the data folder %s: %s", data_dir, strerror(errno));
    return CR_EIO;
  }
  char lockpath[1100];
  snprintf(lockpath, sizeof lockpath, "%s/crescent.lock", d->dir);
  d->lock_fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (d->lock_fd < 0 || flock(d->lock_fd, LOCK_EX | LOCK_NB)) {
    snprintf(err, errlen, "another crescent server is using the data folder %s (use another --data)", d->dir);
    if (d->lock_fd >= 0) close(d->lock_fd);
    d->lock_fd = -1;
    return CR_EIO;
  }
  /* A unix socket path is at most 107 bytes; a deep data folder gets one in /tmp. */
  struct sockaddr_un sun;
  if (strlen(d->dir) + strlen("/redis.sock") < sizeof sun.sun_path) {
    memcpy(d->sock, d->dir, strlen(d->dir));
    memcpy(d->sock + strlen(d->dir), "/redis.sock", sizeof "/redis.sock");
  } else {
    /* 12 hex digits, as a version's hash is written (the name must not change between runs). */
    unsigned long long h = cr_fnv1a(d->dir, strlen(d->dir)) >> 16;
    snprintf(d->sock, sizeof d->sock, "/tmp/crescent-redis-%012llx.sock", h);
  }
  snprintf(d->url, sizeof d->url, "unix://%s", d->sock);
  clear_stale(d);
  int rc = spawn(d, 1, err, errlen);
  if (rc) {
    close(d->lock_fd);
    d->lock_fd = -1;
  }
  return rc;
}

int cr_redisd_restart(cr_redisd_t *d, char *err, size_t errlen) {
  d->pid = 0;
  d->restarts++;
  unlink(d->sock);
  /* No wait: the master supervises workers meanwhile, and they reconnect on
   * their own. If it dies again at once, the master sees that as it saw this. */
  return spawn(d, 0, err, errlen);
}

void cr_redisd_stop(cr_redisd_t *d) {
  if (d->pid > 0) {
    kill(d->pid, SIGTERM);
    if (wait_exit(d->pid, STOP_TIMEOUT_MS, 1)) {
      cr_log(CR_LOG_WARN, NULL, NULL, "redis-server did not stop within %d s: killing it", STOP_TIMEOUT_MS / 1000);
      kill(d->pid, SIGKILL);
      waitpid(d->pid, NULL, 0);
    }
    d->pid = 0;
  }
  if (d->lock_fd >= 0) {
    close(d->lock_fd);
    d->lock_fd = -1;
  }
}
