/* loader.c - function validation, in-process or in a validator process. */
#include "loader.h"

#include <errno.h>
#include <fcntl.h>
#include <lua.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"
#include "log.h"
#include "vm.h"

#define MAX_SOURCE (16 * 1024 * 1024)

int cr_loader_read(const char *root, const char *relpath, char **src, size_t *len, char *err, size_t errlen) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", root, relpath);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errlen, "%s: cannot open: %s", relpath, strerror(errno));
    return CR_EIO;
  }
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > MAX_SOURCE) {
    snprintf(err, errlen, "%s: not a regular file of at most 16 MB", relpath);
    close(fd);
    return CR_EIO;
  }
  char *buf = malloc((size_t)st.st_size + 1);
  size_t got = 0;
  while (buf) {
    if (got == (size_t)st.st_size) break;
    ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  if (!buf) return CR_ENOMEM;
  buf[got] = '\0';
  *src = buf;
  *len = got;
  return 0;
}

static int validate(const char *root, const char *relpath, const char *src, size_t len, double init_timeout,
                    int platform, cr_settings_t *settings, char *err, size_t errlen) {
  char chunkname[1100], name[1024];
  snprintf(chunkname, sizeof chunkname, "@%s", relpath);
  snprintf(name, sizeof name, "%.*s", (int)(strlen(relpath) > 4 ? strlen(relpath) - 4 : 0), relpath);
  cr_vm_t *vm = cr_vm_new();
  if (!vm) {
    snprintf(err, errlen, "%s: out of memory booting a Lua state", relpath);
    return CR_ENOMEM;
  }
  cr_vm_bind(vm, name, root, (size_t)CR_DEFAULT_MEMORY * 1024 * 1024);
  int rc = cr_vm_load(vm, chunkname, src, len, init_timeout, err, errlen);
  if (rc == 0) {
    char serr[900];
    rc = platform ? cr_settings_read_platform(vm->L, -1, settings, serr, sizeof serr)
                  : cr_settings_read(vm->L, -1, settings, serr, sizeof serr);
    if (rc) snprintf(err, errlen, "%s: %s", relpath, serr);
  }
  cr_vm_free(vm);
  return rc;
}

int cr_loader_validate(const char *root, const char *relpath, const char *src, size_t len,
                       double init_timeout, cr_settings_t *settings, char *err, size_t errlen) {
  return validate(root, relpath, src, len, init_timeout, 0, settings, err, errlen);
}

int cr_loader_validate_platform(const char *relpath, const char *src, size_t len, cr_settings_t *settings,
                                char *err, size_t errlen) {
  return validate(NULL, relpath, src, len, CR_INIT_TIMEOUT, 1, settings, err, errlen);
}

static int write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

/* The validator process: one record per file, then exit. */
static void validator_main(int fd, const char *root, cr_load_t *loads, int from, int n, double init_timeout) {
  cr_log_setup(-1, 0);
  if (cr_vm_watchdog_start()) _exit(2);
  for (int i = from; i < n; i++) {
    cr_settings_t s;
    char err[4096];
    cr_buf_t b = CR_BUF_INIT;
    uint32_t hdr[3];
    int rc = validate(root, loads[i].relpath, loads[i].source, loads[i].len, init_timeout, loads[i].platform, &s,
                      err, sizeof err);
    if (rc == 0) {
      cr_settings_pack(&s, &b);
      cr_settings_free(&s);
    } else {
      cr_buf_append_str(&b, err);
    }
    hdr[0] = (uint32_t)i;
    hdr[1] = rc == 0;
    hdr[2] = (uint32_t)b.len;
    if (write_all(fd, hdr, sizeof hdr) || write_all(fd, b.data ? b.data : "", b.len)) _exit(1);
    cr_buf_free(&b);
  }
  _exit(0);
}

/* Runs one validator process over loads[from..n). Returns the index of the
 * first file it did not report on (n when all were reported); that file is
 * then marked failed by the caller's loop below. */
static int run_batch(const char *root, cr_load_t *loads, int from, int n, double init_timeout,
                     int *timed_out, int *status) {
  double timeout_s = init_timeout + 5.0;
  int fds[2];
  *timed_out = 0;
  *status = 0;
  if (pipe2(fds, O_CLOEXEC)) return from;
  cr_log_flush();
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return from;
  }
  if (pid == 0) {
    close(fds[0]);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    validator_main(fds[1], root, loads, from, n, init_timeout);
  }
  close(fds[1]);
  cr_buf_t in = CR_BUF_INIT;
  int next = from;
  /* The timeout runs per file: every record that arrives restarts it. */
  uint64_t deadline = cr_clock_ns() + (uint64_t)(timeout_s * 1e9);
  for (;;) {
    uint64_t now = cr_clock_ns();
    if (now >= deadline) {
      *timed_out = 1;
      break;
    }
    struct pollfd pfd = {fds[0], POLLIN, 0};
    int pr = poll(&pfd, 1, (int)((deadline - now) / 1000000 + 1));
    if (pr < 0 && errno == EINTR) continue;
    if (pr == 0) continue;
    if (cr_buf_reserve(&in, 65536)) break;
    ssize_t r = read(fds[0], in.data + in.len, 65536);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    in.len += (size_t)r;
    /* Take the complete records. */
    size_t off = 0;
    while (in.len - off >= 12) {
      uint32_t hdr[3];
      memcpy(hdr, in.data + off, sizeof hdr);
      if (in.len - off - 12 < hdr[2]) break;
      if (hdr[0] < (uint32_t)n) {
        cr_load_t *l = &loads[hdr[0]];
        const char *payload = in.data + off + 12;
        if (hdr[1] && cr_settings_unpack(payload, hdr[2], &l->settings) == 0) l->ok = 1;
        else l->error = hdr[1] ? strdup("validator sent unreadable settings") : strndup(payload, hdr[2]);
        next = (int)hdr[0] + 1;
      }
      off += 12 + hdr[2];
    }
    cr_buf_consume(&in, off);
    deadline = cr_clock_ns() + (uint64_t)(timeout_s * 1e9);
  }
  close(fds[0]);
  if (*timed_out) kill(pid, SIGKILL);
  while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
  }
  cr_buf_free(&in);
  return next;
}

int cr_loader_run(const char *root, cr_load_t *loads, int n, double init_timeout) {
  for (int i = 0; i < n; i++) {
    loads[i].ok = 0;
    loads[i].error = NULL;
    cr_settings_defaults(&loads[i].settings);
  }
  int from = 0;
  while (from < n) {
    int timed_out, status;
    int next = run_batch(root, loads, from, n, init_timeout, &timed_out, &status);
    if (next >= n) break;
    /* loads[next] stopped the validator: fail it, then go on after it. */
    char msg[600];
    if (timed_out)
      snprintf(msg, sizeof msg, "%s: loading did not finish within %.0f seconds (stuck inside a C call?)",
               loads[next].relpath, init_timeout + 5.0);
    else
      snprintf(msg, sizeof msg, "%s: the validator process died while loading it (%s %d)", loads[next].relpath,
               WIFSIGNALED(status) ? "signal" : "status",
               WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    loads[next].error = strdup(msg);
    from = next + 1;
  }
  return 0;
}

void cr_load_clear(cr_load_t *l) {
  cr_settings_free(&l->settings);
  free(l->error);
  l->error = NULL;
  l->ok = 0;
}
