/* loader.c - function validation, in-process or in a validator process. */
#include "loader.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lua.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "clock.h"
#include "error.h"
#include "log.h"
#include "modset.h"
#include "registry.h"
#include "vm.h"
#include "wire.h"

#define MAX_SOURCE (16 * 1024 * 1024)
/* The first byte of a Lua (and LuaJIT) bytecode dump: source never starts so. */
#define BYTECODE_MARK '\033'

/* Is relpath a module's file: a .lua file that is not a function's? */
static int is_module_path(const char *relpath) {
  size_t n = strlen(relpath);
  return n >= 5 && strcmp(relpath + n - 4, ".lua") == 0 && !cr_registry_is_function_path(relpath);
}

int cr_loader_read_module(const char *root, const char *relpath, char **src, size_t *len, char *err, size_t errlen) {
  *src = NULL;
  *len = 0;
  if (!root || !is_module_path(relpath)) {
    snprintf(err, errlen, "%s is a function's file, not a module (modules are under lib/ or have a file or folder name starting with '_')",
             relpath);
    return CR_EINVAL;
  }
  char path[4096];
  if ((size_t)snprintf(path, sizeof path, "%s/%s", root, relpath) >= sizeof path) return CR_ENOENT;
  /* O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below). */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return errno == ENOENT || errno == ENOTDIR || errno == ELOOP ? CR_ENOENT : CR_EIO;
  /* Where the opened file really is (symlinks followed), and the folder's real path. */
  char real[PATH_MAX], link[64], rroot[PATH_MAX];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t rn = readlink(link, real, sizeof real - 1);
  if (rn > 0) real[rn] = '\0';
  else if (!realpath(path, real)) real[0] = '\0';
  size_t rl = realpath(root, rroot) ? strlen(rroot) : 0;
  int inside = rl > 0 && real[0] && strncmp(real, rroot, rl) == 0 && real[rl] == '/';
  if (!inside || !is_module_path(real + rl + 1)) {
    close(fd);
    snprintf(err, errlen, "%s leads to %s, which is not a module file inside the functions folder", relpath,
             inside ? real + rl + 1 : "a file outside the functions folder");
    return CR_EINVAL;
  }
  /* Checked, not cr_xmalloc: require() runs in handlers too (the request path). */
  char *buf;
  size_t got;
  int rc = cr_read_fd(fd, MAX_SOURCE, &buf, &got);
  close(fd);
  if (rc == CR_ETOOBIG) {
    snprintf(err, errlen, "%s is not a regular file of at most 16 MB", relpath);
    return CR_EINVAL;
  }
  if (rc) return rc;
  if (got > 0 && buf[0] == BYTECODE_MARK) {
    /* LuaJIT would only say "attempt to load chunk with wrong mode". */
    free(buf);
    snprintf(err, errlen, "%s is Lua bytecode: modules are loaded from source only, bytecode is refused", relpath);
    return CR_EINVAL;
  }
  *src = buf;
  *len = got;
  return 0;
}

int cr_loader_module_reader(void *ud, const char *root, const char *relpath, char **src, size_t *len, char *err,
                            size_t errlen) {
  (void)ud;
  return cr_loader_read_module(root, relpath, src, len, err, errlen);
}

/* Set once, before any validation (loader.h). */
static cr_vm_opts_t validator_vm = {.read_module = cr_loader_module_reader};

/* The validators' reader: the platform's, noting every file asked for and
 * what it found (cr_dep_t), so the master knows which module changes call
 * for validating the function again, whether the load succeeded or not. */
static int recording_reader(void *ud, const char *root, const char *relpath, char **src, size_t *len, char *err,
                            size_t errlen) {
  int rc = cr_loader_read_module(root, relpath, src, len, err, errlen);
  char hash[13] = "";
  if (rc == 0) cr_registry_hash(*src, *len, hash);
  if (cr_deps_add(ud, relpath, hash)) {
    free(*src);
    *src = NULL;
    return CR_ENOMEM;
  }
  return rc;
}

void cr_loader_set_preload(cr_vm_preload_fn preload, void *ud) {
  validator_vm.preload = preload;
  validator_vm.preload_ud = ud;
}

int cr_loader_read(const char *root, const char *relpath, char **src, size_t *len, char *err, size_t errlen) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", root, relpath);
  int rc = cr_read_file(path, MAX_SOURCE, src, len);
  if (rc == CR_ETOOBIG) snprintf(err, errlen, "%s: not a regular file of at most 16 MB", relpath);
  else if (rc && rc != CR_ENOMEM) snprintf(err, errlen, "%s: cannot open: %s", relpath, strerror(-rc));
  return rc == CR_ENOMEM ? rc : rc ? CR_EIO : 0;
}

static int validate(const char *root, const char *relpath, const char *src, size_t len, double init_timeout,
                    int platform, cr_settings_t *settings, cr_vm_modules_t *modules, cr_deps_t *deps, char *err,
                    size_t errlen) {
  char chunkname[1100], name[1024];
  snprintf(chunkname, sizeof chunkname, "@%s", relpath);
  snprintf(name, sizeof name, "%.*s", (int)(strlen(relpath) > 4 ? strlen(relpath) - 4 : 0), relpath);
  if (len > 0 && src[0] == BYTECODE_MARK) {
    snprintf(err, errlen, "%s: is Lua bytecode: functions are loaded from source only, bytecode is refused", relpath);
    return CR_ELUA;
  }
  cr_vm_opts_t opts = validator_vm;
  if (deps && root) {
    opts.read_module = recording_reader;
    opts.read_ud = deps;
  }
  cr_vm_t *vm = cr_vm_new(&opts);
  if (!vm) {
    snprintf(err, errlen, "%s: out of memory booting a Lua state", relpath);
    return CR_ENOMEM;
  }
  cr_vm_bind(vm, name, root, (size_t)CR_DEFAULT_MEMORY * 1024 * 1024);
  vm->record = modules;
  int rc = cr_vm_load(vm, chunkname, src, len, init_timeout, err, errlen);
  if (rc == 0) {
    char serr[900];
    rc = platform ? cr_settings_read_platform(vm->L, -1, settings, serr, sizeof serr)
                  : cr_settings_read(vm->L, -1, settings, serr, sizeof serr);
    /* A trigger kind not built yet fails the load (after the entries' own checks). */
    if (rc == 0 && (rc = cr_settings_check_triggers(settings, serr, sizeof serr))) cr_settings_free(settings);
    if (rc) snprintf(err, errlen, "%s: %s", relpath, serr);
  }
  cr_vm_free(vm);
  return rc;
}

int cr_loader_validate(const char *root, const char *relpath, const char *src, size_t len,
                       double init_timeout, cr_settings_t *settings, char *err, size_t errlen) {
  cr_vm_modules_t modules = {0};
  int rc = validate(root, relpath, src, len, init_timeout, 0, settings, &modules, NULL, err, errlen);
  cr_vm_modules_free(&modules);
  return rc;
}

int cr_loader_validate_platform(const char *relpath, const char *src, size_t len, cr_settings_t *settings,
                                char *err, size_t errlen) {
  cr_vm_modules_t modules = {0};
  int rc = validate(NULL, relpath, src, len, CR_INIT_TIMEOUT, 1, settings, &modules, NULL, err, errlen);
  cr_vm_modules_free(&modules);
  return rc;
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

/* The module files asked for: a u32 count, then per file its relpath and hash. */
static int deps_pack(const cr_deps_t *d, cr_buf_t *out) {
  if (cr_wire_u32(out, (uint32_t)d->n)) return CR_ENOMEM;
  for (int i = 0; i < d->n; i++)
    if (cr_wire_str(out, d->items[i].relpath) || cr_wire_str(out, d->items[i].hash)) return CR_ENOMEM;
  return 0;
}

static int deps_unpack_from(cr_wire_reader_t *r, cr_deps_t *d) {
  uint32_t n = cr_wire_get_u32(r);
  if (n > CR_MODSET_MAX) r->bad = 1;
  for (uint32_t i = 0; i < n && !r->bad; i++) {
    char *rel = cr_wire_get_bytes(r, NULL), *hash = cr_wire_get_bytes(r, NULL);
    if (!rel || !hash || strlen(hash) > 12 || cr_deps_add(d, rel, hash)) r->bad = 1;
    free(rel);
    free(hash);
  }
  if (r->bad) cr_deps_free(d);
  return r->bad ? CR_EINVAL : 0;
}

/* The validator process: one record per file, then exit. A record is
 * [index, ok, length] then, when ok, the packed settings and module set
 * (modset.h), else the error message (a wire string); then the module files
 * asked for, either way. */
static void validator_main(int fd, const char *root, cr_load_t *loads, int from, int n, double init_timeout) {
  cr_log_setup(-1, 0);
  if (cr_vm_watchdog_start()) _exit(2);
  for (int i = from; i < n; i++) {
    cr_settings_t s;
    cr_vm_modules_t modules = {0};
    cr_deps_t deps = {0};
    char err[4096];
    cr_buf_t b = CR_BUF_INIT;
    uint32_t hdr[3];
    int rc = validate(root, loads[i].relpath, loads[i].source, loads[i].len, init_timeout, loads[i].platform, &s,
                      &modules, &deps, err, sizeof err);
    if (rc == 0) {
      if (cr_settings_pack(&s, &b) || cr_modset_pack(&modules, &b) || deps_pack(&deps, &b)) {
        rc = CR_ENOMEM;
        snprintf(err, sizeof err, "%s: the validator ran out of memory sending its result", loads[i].relpath);
        b.len = 0;
      }
      cr_settings_free(&s);
    }
    if (rc && (cr_wire_str(&b, err) || deps_pack(&deps, &b))) _exit(1);
    cr_vm_modules_free(&modules);
    cr_deps_free(&deps);
    hdr[0] = (uint32_t)i;
    hdr[1] = rc == 0;
    hdr[2] = (uint32_t)b.len;
    if (write_all(fd, hdr, sizeof hdr) || write_all(fd, b.data ? b.data : "", b.len)) _exit(1);
    cr_buf_free(&b);
  }
  _exit(0);
}

struct cr_loader_job_s {
  char *root;
  cr_load_t *loads;
  int n;
  double init_timeout;
  int next;          /* the first entry not reported yet */
  pid_t pid;
  int fd;
  cr_buf_t in;
  uint64_t deadline; /* per file: every record restarts it */
};

static uint64_t file_timeout_ns(const cr_loader_job_t *j) { return (uint64_t)((j->init_timeout + 5.0) * 1e9); }

static void spawn_validator(cr_loader_job_t *j) {
  int fds[2];
  j->fd = -1;
  j->pid = 0;
  if (pipe2(fds, O_CLOEXEC)) return;
  cr_log_flush();
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return;
  }
  if (pid == 0) {
    /* It runs user code: it dies with its parent, and holds none of the
     * master's descriptors (data-folder lock, listener, channels, inotify),
     * only stdin/out/err and the pipe back, moved to 3. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    prctl(PR_SET_NAME, "cr-validator");
    int out = fds[1] == 3 ? 3 : dup2(fds[1], 3);
    if (out < 0) _exit(2);
    close_range(4, ~0U, 0);
    fds[1] = out;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    validator_main(fds[1], j->root, j->loads, j->next, j->n, j->init_timeout);
  }
  close(fds[1]);
  fcntl(fds[0], F_SETFL, O_NONBLOCK);
  j->pid = pid;
  j->fd = fds[0];
  j->in.len = 0;
  j->deadline = cr_clock_ns() + file_timeout_ns(j);
}

static void take_record(cr_loader_job_t *j, const uint32_t hdr[3], const char *payload) {
  cr_load_t *l = &j->loads[hdr[0]];
  if (hdr[1]) {
    cr_wire_reader_t r;
    cr_wire_reader(&r, payload, hdr[2]);
    if (cr_settings_unpack_from(&r, &l->settings) == 0) {
      if (cr_modset_unpack_from(&r, &l->modules) == 0 && deps_unpack_from(&r, &l->deps) == 0 && r.p == r.end) {
        l->ok = 1;
        return;
      }
      cr_settings_free(&l->settings);
      cr_vm_modules_free(&l->modules);
    }
    l->error = cr_xstrdup("the validator sent an unreadable result");
    return;
  }
  cr_wire_reader_t r;
  cr_wire_reader(&r, payload, hdr[2]);
  l->error = cr_wire_get_bytes(&r, NULL);
  if (!l->error || deps_unpack_from(&r, &l->deps) || r.p != r.end) {
    free(l->error);
    cr_deps_free(&l->deps);
    l->error = cr_xstrdup("the validator sent an unreadable result");
  }
}

/* The validator is gone (exited, died or killed): reap it, fail the file it
 * was on, and start a new one for the rest. */
static void validator_gone(cr_loader_job_t *j, int timed_out) {
  int status = 0;
  if (j->fd >= 0) close(j->fd);
  j->fd = -1;
  if (j->pid > 0) {
    if (timed_out) kill(j->pid, SIGKILL);
    while (waitpid(j->pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  j->pid = 0;
  if (j->next >= j->n) return;
  cr_load_t *l = &j->loads[j->next];
  char msg[600];
  if (timed_out)
    snprintf(msg, sizeof msg, "%s: loading did not finish within %.0f seconds (stuck inside a C call?)", l->relpath,
             j->init_timeout + 5.0);
  else
    snprintf(msg, sizeof msg, "%s: the validator process died while loading it (%s %d)", l->relpath,
             WIFSIGNALED(status) ? "signal" : "status", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
  l->error = cr_xstrdup(msg);
  j->next++;
  if (j->next < j->n) spawn_validator(j);
}

cr_loader_job_t *cr_loader_start(const char *root, cr_load_t *loads, int n, double init_timeout) {
  cr_loader_job_t *j = cr_xcalloc(1, sizeof *j);
  j->root = root ? cr_xstrdup(root) : NULL;
  j->loads = loads;
  j->n = n;
  j->init_timeout = init_timeout;
  j->fd = -1;
  for (int i = 0; i < n; i++) {
    loads[i].ok = 0;
    loads[i].error = NULL;
    memset(&loads[i].modules, 0, sizeof loads[i].modules);
    memset(&loads[i].deps, 0, sizeof loads[i].deps);
    cr_settings_defaults(&loads[i].settings);
  }
  if (n > 0) spawn_validator(j);
  return j;
}

int cr_loader_fd(const cr_loader_job_t *j) { return j->fd; }

uint64_t cr_loader_deadline(const cr_loader_job_t *j) { return j->deadline; }

int cr_loader_step(cr_loader_job_t *j) {
  while (j->next < j->n) {
    if (j->fd < 0) {
      /* fork failed: try again, a little later if it keeps failing */
      spawn_validator(j);
      if (j->fd < 0) return 0;
    }
    if (cr_buf_reserve(&j->in, 65536)) return 0;
    ssize_t r = read(j->fd, j->in.data + j->in.len, 65536);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN) break;
    if (r == 0) {
      validator_gone(j, 0);
      continue;
    }
    if (r < 0) {
      validator_gone(j, 0);
      continue;
    }
    j->in.len += (size_t)r;
    size_t off = 0;
    while (j->in.len - off >= 12) {
      uint32_t hdr[3];
      memcpy(hdr, j->in.data + off, sizeof hdr);
      if (j->in.len - off - 12 < hdr[2]) break;
      if (hdr[0] < (uint32_t)j->n) {
        take_record(j, hdr, j->in.data + off + 12);
        j->next = (int)hdr[0] + 1;
      }
      off += 12 + hdr[2];
    }
    cr_buf_consume(&j->in, off);
    j->deadline = cr_clock_ns() + file_timeout_ns(j);
    if (j->next >= j->n) break;
    /* Only read what is there now: the caller polls for more. */
    struct pollfd p = {j->fd, POLLIN, 0};
    if (poll(&p, 1, 0) <= 0) break;
  }
  if (j->next < j->n && j->fd >= 0 && cr_clock_ns() >= j->deadline) validator_gone(j, 1);
  if (j->next >= j->n) {
    if (j->fd >= 0 || j->pid > 0) {
      if (j->fd >= 0) close(j->fd);
      j->fd = -1;
      if (j->pid > 0)
        while (waitpid(j->pid, NULL, 0) < 0 && errno == EINTR) {
        }
      j->pid = 0;
    }
    return 1;
  }
  return 0;
}

void cr_loader_free(cr_loader_job_t *j) {
  if (!j) return;
  if (j->pid > 0) {
    kill(j->pid, SIGKILL);
    while (waitpid(j->pid, NULL, 0) < 0 && errno == EINTR) {
    }
    j->pid = 0;
  }
  cr_loader_forget(j);
}

void cr_loader_forget(cr_loader_job_t *j) {
  if (!j) return;
  if (j->fd >= 0) close(j->fd);
  cr_buf_free(&j->in);
  free(j->root);
  free(j);
}

int cr_loader_run(const char *root, cr_load_t *loads, int n, double init_timeout) {
  cr_loader_job_t *j = cr_loader_start(root, loads, n, init_timeout);
  while (!cr_loader_step(j)) {
    uint64_t now = cr_clock_ns(), dl = cr_loader_deadline(j);
    int ms = dl > now ? (int)((dl - now) / 1000000) + 1 : 0;
    if (cr_loader_fd(j) >= 0) {
      struct pollfd p = {cr_loader_fd(j), POLLIN, 0};
      poll(&p, 1, ms);
    } else {
      struct timespec ts = {0, 10000000};
      nanosleep(&ts, NULL);
    }
  }
  cr_loader_free(j);
  /* Entries the job could not even try (no fork at all) are failures too. */
  for (int i = 0; i < n; i++)
    if (!loads[i].ok && !loads[i].error) loads[i].error = cr_xstrdup("could not be validated");
  return 0;
}

void cr_load_clear(cr_load_t *l) {
  cr_settings_free(&l->settings);
  cr_vm_modules_free(&l->modules);
  cr_deps_free(&l->deps);
  free(l->error);
  l->error = NULL;
  l->ok = 0;
}
