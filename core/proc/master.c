/* master.c - loading, forking, supervising, draining. */
#include "master.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "clock.h"
#include "error.h"
#include "loader.h"
#include "authkeys.h"
#include "log.h"
#include "redis.h"
#include "redisd.h"
#include "registry.h"
#include "reload.h"
#include "shm.h"
#include "vm.h"
#include "watch.h"
#include "worker.h"

/* A worker that dies sooner than this after starting counts as crashing. */
#define FAST_EXIT_NS 1000000000ULL
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 10000
#define TICK_MS 100

/* The platform's own functions, embedded from lua/. */
extern const char cr_lua_storage_api[];
extern const size_t cr_lua_storage_api_len;
extern const char cr_lua_queues_api[];
extern const size_t cr_lua_queues_api_len;

typedef struct {
  pid_t pid;
  uint64_t started_ns;
  int fast_exits;
  uint64_t restart_at_ns; /* 0: not waiting to restart */
  int killed_stuck;
  int chan_fd;            /* the master's end of the worker's channel */
  cr_buf_t out;           /* registry changes not yet written to it */
} wslot_t;

typedef struct {
  cr_config_t *cfg;
  cr_registry_t *registry;
  cr_shm_t *shm;
  wslot_t *workers;
  int nworkers;
  int sfd;
  int hold_fd;
  int draining;
  uint64_t drain_deadline_ns;
  cr_redisd_t redisd; /* with --redis auto */
  uint64_t redis_restart_at_ns;
  cr_reload_t *reload;
  int reload_pending;   /* -1 none, 0 a reload, 1 a forced one (SIGHUP) */
  cr_watch_t *watch;
  uint64_t watch_due_ns; /* reload when the changes settle (0: none) */
  uint64_t watch_first_ns;
} master_t;

/* Quiet time after the last change before a reload, and the most a burst
 * of changes can delay one. */
#define DEBOUNCE_NS 20000000ULL
#define DEBOUNCE_MAX_NS 250000000ULL

/* Hands the changes of a reload to every live worker (their copies of the
 * registry replay them). Writes never block: what does not fit waits in the
 * worker's queue until its socket drains. */
static void broadcast(master_t *m, const cr_buf_t *frames) {
  if (frames->len == 0) return;
  for (int i = 0; i < m->nworkers; i++) {
    wslot_t *w = &m->workers[i];
    if (w->pid <= 0 || w->chan_fd < 0) continue;
    /* A lost frame would leave the worker's registry behind for good. */
    if (cr_buf_append(&w->out, frames->data, frames->len)) cr_oom(w->out.len + frames->len);
  }
}

static void flush_channels(master_t *m) {
  for (int i = 0; i < m->nworkers; i++) {
    wslot_t *w = &m->workers[i];
    while (w->chan_fd >= 0 && w->out.len) {
      ssize_t n = write(w->chan_fd, w->out.data, w->out.len);
      if (n > 0) {
        cr_buf_consume(&w->out, (size_t)n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
      /* The worker is gone; reap() restarts it from the current registry. */
      w->out.len = 0;
      break;
    }
  }
}

static int file_busy(const char *relpath, void *data) { return cr_watch_writing(((master_t *)data)->watch, relpath); }

/* A reload finished (or made progress): pass its changes on. */
static void reload_step(master_t *m) {
  cr_buf_t frames = CR_BUF_INIT;
  if (cr_reload_step(m->reload, &frames)) {
    broadcast(m, &frames);
    flush_channels(m);
    if (m->reload_pending >= 0 && !m->draining) {
      int force = m->reload_pending;
      m->reload_pending = -1;
      if (!cr_reload_start_skipping(m->reload, force, file_busy, m)) reload_step(m);
    }
  }
  cr_buf_free(&frames);
}

static void request_reload(master_t *m, int force) {
  if (cr_reload_busy(m->reload)) {
    if (force > m->reload_pending) m->reload_pending = force;
    return;
  }
  if (!cr_reload_start_skipping(m->reload, force, file_busy, m)) reload_step(m);
}

/* The first load, before any worker exists: wait for it. */
static void load_functions(master_t *m) {
  cr_buf_t frames = CR_BUF_INIT;
  if (cr_reload_start(m->reload, 1)) {
    while (!cr_reload_step(m->reload, &frames)) {
      uint64_t now = cr_clock_ns(), dl = cr_reload_deadline(m->reload);
      int ms = dl > now ? (int)((dl - now) / 1000000) + 1 : 0;
      struct pollfd p = {cr_reload_fd(m->reload), POLLIN, 0};
      if (p.fd >= 0) poll(&p, 1, ms);
      else poll(NULL, 0, 10);
    }
  } else {
    cr_reload_step(m->reload, &frames);
  }
  cr_buf_free(&frames);
  int user = 0;
  for (int i = 0; i < m->registry->nfns; i++) user += !m->registry->fns[i]->platform;
  if (user == 0) cr_log(CR_LOG_WARN, NULL, NULL, "no functions in %s yet: add a .lua file", m->registry->root);
}

static void spawn(master_t *m, int id) {
  wslot_t *w = &m->workers[id];
  /* The worker starts from the registry as it is now: nothing queued for
   * its predecessor applies. */
  if (w->chan_fd >= 0) close(w->chan_fd);
  w->chan_fd = -1;
  w->out.len = 0;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
    cr_log(CR_LOG_ERROR, NULL, NULL, "cannot make worker %d's channel: %s", id, strerror(errno));
    w->restart_at_ns = cr_clock_ns() + 1000000000ULL;
    return;
  }
  cr_log_flush();
  if (m->shm) atomic_store(&m->shm->workers[id].serving_ms, 0);
  pid_t pid = fork();
  if (pid < 0) {
    close(sv[0]);
    close(sv[1]);
    cr_log(CR_LOG_ERROR, NULL, NULL, "cannot fork worker %d: %s", id, strerror(errno));
    w->restart_at_ns = cr_clock_ns() + 1000000000ULL;
    return;
  }
  if (pid == 0) {
    close(sv[0]);
    close(m->sfd);
    close(m->hold_fd);
    if (m->redisd.lock_fd >= 0) close(m->redisd.lock_fd);
    if (m->watch) cr_watch_free(m->watch);
    for (int i = 0; i < m->nworkers; i++) {
      if (m->workers[i].chan_fd >= 0) close(m->workers[i].chan_fd);
      cr_buf_free(&m->workers[i].out);
    }
    cr_reload_forget(m->reload);
    m->registry->quiet = 1; /* the master logs registry changes; workers replay them */
    /* ps and top tell the roles apart (so do the tests: the validator is a fork too). */
    char name[32]; /* the kernel keeps 15 bytes */
    snprintf(name, sizeof name, "cr-worker %d", id);
    prctl(PR_SET_NAME, name);
    cr_worker_args_t args = {id, m->cfg, m->registry, m->shm, sv[1]};
    int code = cr_worker_main(&args);
    cr_registry_free(m->registry);
    free(m->workers);
    cr_config_free(m->cfg);
    exit(code);
  }
  close(sv[1]);
  w->chan_fd = sv[0];
  w->out.len = 0;
  w->pid = pid;
  w->started_ns = cr_clock_ns();
  w->restart_at_ns = 0;
  w->killed_stuck = 0;
  atomic_store(&m->shm->workers[id].pid, pid);
}

/* --accounts: the signing keys are made (or read) once here, before any
 * worker starts, so a data folder crescent cannot write or a damaged keys
 * file stops the server with one clear message instead of failing workers. */
static int setup_accounts(const cr_config_t *cfg) {
  if (!cfg->accounts) return 0;
  /* Argon2id's own bounds (lanes 1..2^24, memory at least 8 KiB per lane), kept to what a
   * worker can afford: at most 4 GiB per hash, 1..100 passes, 1..64 lanes. */
  int p = cfg->accounts_argon2_lanes, t = cfg->accounts_argon2_time, mem = cfg->accounts_argon2_memory;
  if (p < 1 || p > 64 || t < 1 || t > 100 || mem < 8 * p || mem > 4 * 1024 * 1024) {
    cr_log(CR_LOG_ERROR, NULL, NULL,
           "accounts: Argon2id needs --accounts-argon2-lanes 1..64, --accounts-argon2-time 1..100 and "
           "--accounts-argon2-memory from 8 KiB per lane to 4194304 KiB (got %d, %d, %d)", p, t, mem);
    return -1;
  }
  if (cfg->accounts_min_password < 1 || cfg->accounts_min_password > 1024) {
    cr_log(CR_LOG_ERROR, NULL, NULL, "accounts: --accounts-min-password must be 1..1024 (got %d)",
           cfg->accounts_min_password);
    return -1;
  }
  if (strcmp(cfg->redis, "none") == 0)
    cr_log(CR_LOG_WARN, NULL, NULL, "--accounts without Redis (--redis none): every accounts call will fail");
  char err[1200];
  cr_authkeys_opts_t o = {.rotate_after = cfg->accounts_key_rotation, .grace = cfg->accounts_key_grace};
  cr_authkeys_t *k = cr_authkeys_open(cfg->data_dir, &o, err, sizeof err);
  if (!k) {
    cr_log(CR_LOG_ERROR, NULL, NULL, "accounts: %s", err);
    return -1;
  }
  cr_log(CR_LOG_INFO, NULL, NULL, "accounts: on, signing key %s", cr_authkeys_kid(k));
  cr_authkeys_free(k);
  return 0;
}

/* Sets up Redis: starts the managed one (auto), or checks the given URL
 * answers. Workers get the URL to use in cfg->redis. */
static int setup_redis(master_t *m) {
  cr_config_t *cfg = m->cfg;
  char err[1200];
  if (strcmp(cfg->redis, "none") == 0) {
    cr_log(CR_LOG_INFO, NULL, NULL, "no Redis (--redis none): crescent.kv, storage and queue calls will fail");
    return 0;
  }
  if (strcmp(cfg->redis, "auto") == 0) {
    if (cr_redisd_start(&m->redisd, cfg->data_dir, err, sizeof err)) {
      cr_log(CR_LOG_ERROR, NULL, NULL, "%s", err);
      return -1;
    }
    cr_log(CR_LOG_INFO, NULL, NULL, "started redis-server (pid %d) on %s, data in %s", (int)m->redisd.pid,
           m->redisd.url, m->redisd.dir);
    char sub[64];
    return cr_config_set(cfg, "redis", m->redisd.url, sub, sizeof sub) ? -1 : 0;
  }
  cr_redis_url_t u;
  if (cr_redis_url_parse(cfg->redis, &u, err, sizeof err)) {
    cr_log(CR_LOG_ERROR, NULL, NULL, "%s", err);
    return -1;
  }
  char desc[700], perr[600];
  cr_redis_url_describe(&u, desc, sizeof desc);
  if (cr_redis_ping(&u, 3000, perr, sizeof perr)) {
    cr_log(CR_LOG_ERROR, NULL, NULL, "cannot reach Redis at %s: %s (check --redis, or use --redis auto)", desc, perr);
    return -1;
  }
  cr_log(CR_LOG_INFO, NULL, NULL, "using Redis at %s", desc);
  return 0;
}

/* The managed redis-server died: start it again (workers reconnect). */
static void watch_redis(master_t *m) {
  if (m->redisd.pid <= 0 && !m->redis_restart_at_ns) return;
  if (m->redisd.pid > 0) {
    int status;
    if (waitpid(m->redisd.pid, &status, WNOHANG) != m->redisd.pid) return;
    cr_log(CR_LOG_ERROR, NULL, NULL, "redis-server (pid %d) %s %d; starting it again", (int)m->redisd.pid,
           WIFSIGNALED(status) ? "was killed by signal" : "exited with status",
           WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    m->redisd.pid = 0;
    m->redis_restart_at_ns = cr_clock_ns() + (m->redisd.restarts ? 1000000000ULL : 0) + 1;
  }
  if (m->draining || cr_clock_ns() < m->redis_restart_at_ns) return;
  m->redis_restart_at_ns = 0;
  char err[1200];
  if (cr_redisd_restart(&m->redisd, err, sizeof err)) {
    cr_log(CR_LOG_ERROR, NULL, NULL, "%s", err);
    m->redis_restart_at_ns = cr_clock_ns() + 2000000000ULL;
  }
}

static void reap(master_t *m) {
  for (int i = 0; i < m->nworkers; i++) {
    wslot_t *w = &m->workers[i];
    if (w->pid <= 0) continue;
    int status;
    pid_t r = waitpid(w->pid, &status, WNOHANG);
    if (r != w->pid) continue;
    atomic_store(&m->shm->workers[i].pid, 0);
    pid_t old = w->pid;
    w->pid = 0;
    /* Whatever it held dies with it: its concurrency places, instances and
     * busy slot go back before a new worker takes its index (shm.h). */
    cr_shm_reclaimed_t rc;
    cr_shm_reclaim(m->shm, i, m->registry->next_slot, &rc);
    if (rc.places || rc.instances || rc.lock || rc.trigger_places) {
      char tp[64] = "";
      if (rc.trigger_places) snprintf(tp, sizeof tp, ", %d stream trigger places", rc.trigger_places);
      cr_log(CR_LOG_INFO, NULL, NULL,
             "worker %d (pid %d) held %d concurrency places and %d instances%s%s: taken back", i, (int)old,
             rc.places, rc.instances, tp, rc.lock ? " and an admission lock" : "");
    }
    uint64_t now = cr_clock_ns();
    if (m->draining) {
      if (WIFSIGNALED(status))
        cr_log(CR_LOG_WARN, NULL, NULL, "worker %d (pid %d) ended by signal %d while stopping", i, (int)old,
               WTERMSIG(status));
      continue;
    }
    char how[64];
    if (WIFSIGNALED(status)) snprintf(how, sizeof how, "was killed by signal %d", WTERMSIG(status));
    else snprintf(how, sizeof how, "exited with status %d", WEXITSTATUS(status));
    uint64_t delay_ms = 0;
    if (w->killed_stuck) {
      w->fast_exits = 0;
    } else if (now - w->started_ns < FAST_EXIT_NS) {
      w->fast_exits++;
      delay_ms = BACKOFF_FIRST_MS;
      for (int k = 1; k < w->fast_exits && delay_ms < BACKOFF_MAX_MS; k++) delay_ms *= 2;
      if (delay_ms > BACKOFF_MAX_MS) delay_ms = BACKOFF_MAX_MS;
    } else {
      w->fast_exits = 0;
    }
    atomic_fetch_add(&m->shm->workers[i].restarts, 1);
    if (delay_ms)
      cr_log(w->killed_stuck ? CR_LOG_WARN : CR_LOG_ERROR, NULL, NULL,
             "worker %d (pid %d) %s; starting a new one in %llu ms", i, (int)old, how, (unsigned long long)delay_ms);
    else
      cr_log(w->killed_stuck ? CR_LOG_WARN : CR_LOG_ERROR, NULL, NULL, "worker %d (pid %d) %s; starting a new one",
             i, (int)old, how);
    w->restart_at_ns = now + delay_ms * 1000000ULL;
    if (w->restart_at_ns == 0) w->restart_at_ns = 1;
  }
}

/* Kills workers stuck in an invocation past its deadline plus the grace: a
 * function inside a C call (a pathological string.find) cannot be stopped by
 * hooks, so the only way out is to replace the process. */
static void supervise(master_t *m) {
  uint64_t now = cr_clock_ns();
  uint64_t grace = (uint64_t)(m->cfg->kill_grace * 1e9);
  for (int i = 0; i < m->nworkers; i++) {
    wslot_t *w = &m->workers[i];
    if (w->pid <= 0 || w->killed_stuck) continue;
    cr_shm_worker_t *s = &m->shm->workers[i];
    uint64_t since = atomic_load_explicit(&s->busy_since_ns, memory_order_acquire);
    uint64_t deadline = atomic_load_explicit(&s->deadline_ns, memory_order_relaxed);
    if (!since || !deadline || now < deadline + grace) continue;
    int fn = atomic_load_explicit(&s->busy_fn, memory_order_relaxed);
    const char *name = "?";
    for (int k = 0; k < m->registry->nfns; k++)
      if (m->registry->fns[k]->slot == fn) name = m->registry->fns[k]->name;
    cr_log(CR_LOG_ERROR, name, NULL,
           "worker %d (pid %d) is stuck in %s %.1f s past its deadline (inside a C call?): killing it", i,
           (int)w->pid, name, (double)(now - deadline) / 1e9);
    w->killed_stuck = 1;
    cr_shm_fn_t *f = cr_shm_fn(m->shm, fn);
    if (f) atomic_fetch_add(&f->timeouts, 1);
    kill(w->pid, SIGKILL);
  }
}

static void start_drain(master_t *m) {
  m->draining = 1;
  m->drain_deadline_ns = cr_clock_ns() + (uint64_t)(m->cfg->drain_timeout * 1e9);
  int alive = 0;
  for (int i = 0; i < m->nworkers; i++) {
    if (m->workers[i].pid > 0) {
      kill(m->workers[i].pid, SIGTERM);
      alive++;
    }
  }
  cr_log(CR_LOG_INFO, NULL, NULL, "stopping: %d workers finish in-flight requests (at most %.0f s)", alive,
         m->cfg->drain_timeout);
}

static int live_workers(master_t *m) {
  int n = 0;
  for (int i = 0; i < m->nworkers; i++)
    if (m->workers[i].pid > 0) n++;
  return n;
}

static void kill_all(master_t *m) {
  for (int i = 0; i < m->nworkers; i++)
    if (m->workers[i].pid > 0) kill(m->workers[i].pid, SIGKILL);
}

/* Reserves the port: refuse to share it with another server (a bind without
 * SO_REUSEPORT fails if anyone holds it), resolve port 0, then keep a bound,
 * non-listening SO_REUSEPORT socket so the workers' sockets join it. */
static int reserve_port(master_t *m) {
  cr_config_t *cfg = m->cfg;
  int probe = cr_listen_socket(cfg->listen_host, cfg->listen_port, 0, 0);
  if (probe < 0) {
    if (probe == -EADDRINUSE)
      cr_log(CR_LOG_ERROR, NULL, NULL, "cannot listen on %s:%d: the address is in use (another server?)",
             cfg->listen_host, cfg->listen_port);
    else
      cr_log(CR_LOG_ERROR, NULL, NULL, "cannot listen on %s:%d: %s", cfg->listen_host, cfg->listen_port,
             cr_strerror(probe));
    return -1;
  }
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(probe, (struct sockaddr *)&ss, &sl) == 0) {
    if (ss.ss_family == AF_INET) cfg->listen_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    else if (ss.ss_family == AF_INET6) cfg->listen_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  }
  close(probe);
  m->hold_fd = cr_listen_socket(cfg->listen_host, cfg->listen_port, 1, 0);
  if (m->hold_fd < 0) {
    cr_log(CR_LOG_ERROR, NULL, NULL, "cannot listen on %s:%d: %s", cfg->listen_host, cfg->listen_port,
           cr_strerror(m->hold_fd));
    return -1;
  }
  return 0;
}

static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int cr_master_run(cr_config_t *cfg) {
  master_t m;
  memset(&m, 0, sizeof m);
  m.cfg = cfg;
  m.hold_fd = -1;
  cr_log_setup(-1, 0);
  cr_log_level_t lvl;
  if (cr_log_level_parse(cfg->log_level, &lvl) == 0) cr_log_set_level(lvl);
  signal(SIGPIPE, SIG_IGN);
  raise_fd_limit();

  struct stat st;
  if (stat(cfg->functions_dir, &st) || !S_ISDIR(st.st_mode)) {
    cr_log(CR_LOG_ERROR, NULL, NULL, "the functions folder '%s' does not exist: create it or pass --functions DIR",
           cfg->functions_dir);
    return 1;
  }
  /* Block the signals the master handles before any child exists, so none
   * is lost between fork and the loop. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGQUIT);
  sigprocmask(SIG_BLOCK, &set, NULL);
  m.sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);

  m.registry = cr_registry_new(cfg->functions_dir);
  const char *token_env[] = {"ADMIN_TOKEN", cfg->admin_token, NULL};
  cr_platform_fn_t platform[] = {
      {"_/storage", cr_lua_storage_api, cr_lua_storage_api_len,
       cfg->admin_token && *cfg->admin_token ? token_env : NULL},
      /* Under /_/api/: the gateway checks the admin token before it runs. */
      {"_/queues", cr_lua_queues_api, cr_lua_queues_api_len, NULL},
  };
  m.reload = cr_reload_new(m.registry, cfg->init_timeout, platform, (int)(sizeof platform / sizeof platform[0]));
  m.reload_pending = -1;
  load_functions(&m);
  if (!cfg->no_watch) {
    m.watch = cr_watch_new(cfg->functions_dir);
    if (!m.watch) cr_log(CR_LOG_WARN, NULL, NULL, "cannot watch %s for changes: reload with SIGHUP", cfg->functions_dir);
  }

  if (setup_accounts(m.cfg) || setup_redis(&m)) {
    cr_reload_free(m.reload);
    cr_watch_free(m.watch);
    cr_registry_free(m.registry);
    close(m.sfd);
    return 1;
  }

  m.nworkers = cfg->workers;
  m.shm = cr_shm_create(m.nworkers);
  cr_reload_set_shm(m.reload, m.shm);
  m.workers = cr_xcalloc((size_t)m.nworkers, sizeof *m.workers);
  for (int i = 0; i < m.nworkers; i++) m.workers[i].chan_fd = -1;
  if (!m.shm || m.sfd < 0 || reserve_port(&m)) {
    if (!m.shm) cr_log(CR_LOG_ERROR, NULL, NULL, "out of memory starting the master");
    cr_registry_free(m.registry);
    free(m.workers);
    cr_shm_destroy(m.shm);
    if (m.sfd >= 0) close(m.sfd);
    cr_redisd_stop(&m.redisd);
    cr_reload_free(m.reload);
    cr_watch_free(m.watch);
    return 1;
  }
  for (int i = 0; i < m.nworkers; i++) spawn(&m, i);
  /* "listening" says the server takes requests: wait (bounded) until every
   * worker accepts, or the first one's accepts would take all the early
   * connections. A worker that fails to start shows in its own error line. */
  for (uint64_t until = cr_clock_ns() + 10000000000ull; cr_clock_ns() < until;) {
    int ready = 0;
    for (int i = 0; i < m.nworkers; i++) ready += atomic_load(&m.shm->workers[i].serving_ms) != 0;
    if (ready == m.nworkers) break;
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
  }
  {
    cr_buf_t *b = cr_log_begin_always(CR_LOG_INFO, "listening", 9, NULL, NULL);
    char url[128];
    int v6 = strchr(cfg->listen_host, ':') != NULL;
    snprintf(url, sizeof url, "http://%s%s%s:%d", v6 ? "[" : "", cfg->listen_host, v6 ? "]" : "", cfg->listen_port);
    cr_log_str(b, "url", url, strlen(url));
    cr_log_int(b, "port", cfg->listen_port);
    cr_log_int(b, "workers", m.nworkers);
    int nuser = 0;
    for (int i = 0; i < m.registry->nfns; i++) nuser += !m.registry->fns[i]->platform;
    cr_log_int(b, "functions", nuser);
    cr_log_int(b, "pid", getpid());
    cr_log_end(b);
  }

  int forced = 0;
  for (;;) {
    uint64_t now = cr_clock_ns();
    uint64_t wake = now + TICK_MS * 1000000ULL;
    for (int i = 0; i < m.nworkers; i++) {
      uint64_t at = m.workers[i].restart_at_ns;
      if (at && !m.draining && at < wake) wake = at;
    }
    if (m.watch_due_ns && m.watch_due_ns < wake) wake = m.watch_due_ns;
    if (cr_reload_busy(m.reload) && cr_reload_deadline(m.reload) && cr_reload_deadline(m.reload) < wake)
      wake = cr_reload_deadline(m.reload);
    struct pollfd pfds[3 + CR_SHM_MAX_WORKERS];
    int np = 0;
    pfds[np++] = (struct pollfd){m.sfd, POLLIN, 0};
    int watch_i = -1, reload_i = -1;
    if (m.watch) {
      watch_i = np;
      pfds[np++] = (struct pollfd){cr_watch_fd(m.watch), POLLIN, 0};
    }
    if (cr_reload_fd(m.reload) >= 0) {
      reload_i = np;
      pfds[np++] = (struct pollfd){cr_reload_fd(m.reload), POLLIN, 0};
    }
    for (int i = 0; i < m.nworkers; i++)
      if (m.workers[i].chan_fd >= 0 && m.workers[i].out.len) pfds[np++] = (struct pollfd){m.workers[i].chan_fd, POLLOUT, 0};
    poll(pfds, (nfds_t)np, wake > now ? (int)((wake - now + 999999) / 1000000) : 0);
    struct signalfd_siginfo si;
    while (read(m.sfd, &si, sizeof si) == (ssize_t)sizeof si) {
      switch (si.ssi_signo) {
      case SIGCHLD:
        break;
      case SIGTERM:
      case SIGINT:
      case SIGQUIT:
        if (!m.draining) {
          cr_log(CR_LOG_INFO, NULL, NULL, "received %s", strsignal((int)si.ssi_signo));
          start_drain(&m);
        } else if (si.ssi_signo == SIGINT && !forced) {
          cr_log(CR_LOG_WARN, NULL, NULL, "second interrupt: stopping now");
          forced = 1;
          kill_all(&m);
        }
        break;
      case SIGHUP:
        if (!m.draining) {
          cr_log(CR_LOG_INFO, NULL, NULL, "SIGHUP: rescanning %s", cfg->functions_dir);
          request_reload(&m, 1);
        }
        break;
      }
    }
    now = cr_clock_ns();
    if (watch_i >= 0 && (pfds[watch_i].revents & POLLIN) && cr_watch_read(m.watch)) {
      if (!m.watch_due_ns) m.watch_first_ns = now;
      m.watch_due_ns = now + DEBOUNCE_NS;
      if (m.watch_due_ns > m.watch_first_ns + DEBOUNCE_MAX_NS) m.watch_due_ns = m.watch_first_ns + DEBOUNCE_MAX_NS;
    }
    if (m.watch_due_ns && now >= m.watch_due_ns && !m.draining) {
      m.watch_due_ns = 0;
      request_reload(&m, 0);
    }
    if (cr_reload_busy(m.reload) &&
        ((reload_i >= 0 && pfds[reload_i].revents) || now >= cr_reload_deadline(m.reload)))
      reload_step(&m);
    flush_channels(&m);
    reap(&m);
    watch_redis(&m);
    now = cr_clock_ns();
    if (m.draining) {
      if (live_workers(&m) == 0) break;
      if (now >= m.drain_deadline_ns && !forced) {
        cr_log(CR_LOG_WARN, NULL, NULL, "drain timeout: killing %d workers still busy", live_workers(&m));
        forced = 1;
        kill_all(&m);
      }
      continue;
    }
    for (int i = 0; i < m.nworkers; i++)
      if (m.workers[i].restart_at_ns && now >= m.workers[i].restart_at_ns) spawn(&m, i);
    supervise(&m);
  }
  if (m.redisd.pid > 0) cr_log(CR_LOG_INFO, NULL, NULL, "stopping redis-server (pid %d)", (int)m.redisd.pid);
  cr_redisd_stop(&m.redisd);
  cr_log(CR_LOG_INFO, NULL, NULL, "stopped");
  close(m.hold_fd);
  close(m.sfd);
  cr_reload_free(m.reload);
  cr_watch_free(m.watch);
  for (int i = 0; i < m.nworkers; i++) {
    if (m.workers[i].chan_fd >= 0) close(m.workers[i].chan_fd);
    cr_buf_free(&m.workers[i].out);
  }
  cr_registry_free(m.registry);
  free(m.workers);
  cr_shm_destroy(m.shm);
  return 0;
}
