/* worker.c - a worker process's loop, routing, and shutdown.
 *
 * Shutdown (SIGTERM from the master) loses no request already received
 * (issue 10, item 11): the worker first accepts every connection waiting in
 * its listening socket's accept queue (the kernel resets them when the socket
 * closes), closes the socket as soon as the queue is seen empty, then drains
 * with cr_http_server_drain_received (http.c says what is answered), and
 * exits 0 once no connection is left. A worker busy in Lua when the signal
 * came takes it afterwards: connections queued meanwhile are served too.
 * What a worker holds in shared memory is taken back by the master when it
 * exits, however it exits (shm.h). */
#include "worker.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "accounts_api.h"
#include "admin.h"
#include "series.h"
#include "async.h"
#include "calls.h"
#include "alloc.h"
#include "clock.h"
#include "consumer.h"
#include "dispatch.h"
#include "usage.h"
#include "error.h"
#include "gateway.h"
#include "scache.h"
#include "meter.h"
#include "http.h"
#include "invoke.h"
#include "kvexpire.h"
#include "loader.h"
#include "log.h"
#include "logstore.h"
#include "modules.h"
#include "outbound.h"
#include "redis.h"
#include "pool.h"
#include "router.h"
#include "schedule.h"
#include "vm.h"

typedef struct {
  cr_worker_args_t *args;
  uv_loop_t *loop;
  cr_http_server_t *http;
  cr_pool_t *pool;
  cr_invoker_t *invoker;
  cr_meter_t *meter;
  cr_usage_t *usage;         /* the meters' hourly usage in Redis (NULL without Redis) */
  cr_dispatch_t *dispatch;
  cr_gateway_t *gateway;
  cr_consumers_t *consumers; /* the queue triggers */
  cr_fncalls_t *fncalls;     /* functions calling functions, /_/invoke */
  cr_async_t *async;         /* asynchronous invocations */
  cr_schedules_t *schedules; /* the cron triggers */
  cr_invoke_calls_t calls;   /* crescent.invoke's, on the two above */
  cr_invoke_api_t invoke_api; /* the same over HTTP */
  cr_accounts_api_t accounts; /* /_/auth/, /_/api/users (users NULL: off) */
  cr_admin_t admin;
  cr_shm_worker_t *slot;
  uv_signal_t sigterm;
  uv_signal_t sigint;
  uv_prepare_t flusher;
  uv_timer_t promoter;
  cr_kvexpire_t *kvexpire; /* worker 0's: KV expiries become expire records */
  cr_series_t *series;     /* worker 0's: the meters' last hour, in Redis (series.h) */
  cr_redis_t *redis;
  cr_logstore_t *logstore; /* every line also goes to Redis (logstore.h) */
  cr_stdlib_t *stdlib;   /* the crescent.* modules' state, on redis */
  cr_outbound_t *outbound; /* crescent.http's client */
  cr_egress_self_t *self;  /* this server's listener, which functions may not call */
  uv_pipe_t chan;        /* registry changes from the master */
  cr_buf_t chan_in;
  int stopping;
  int listen_fd;         /* the listening socket (the HTTP server owns it) */
  uv_timer_t accept_wait; /* stopping: the accept queue is being taken in */
  uint64_t accept_until;
} worker_t;

int cr_listen_socket(const char *host, int port, int reuseport, int listen_backlog) {
  struct sockaddr_storage ss;
  socklen_t sl;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)port);
    sl = sizeof *in4;
  } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    sl = sizeof *in6;
  } else if (strcmp(host, "localhost") == 0) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)port);
    in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sl = sizeof *in4;
  } else {
    return -EINVAL;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one)) {
    int e = errno;
    close(fd);
    return -e;
  }
  if (bind(fd, (struct sockaddr *)&ss, sl) || (listen_backlog > 0 && listen(fd, listen_backlog))) {
    int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

static size_t body_limit(const char *target, size_t len, void *data) {
  worker_t *w = data;
  return cr_gateway_body_limit(w->gateway, target, len);
}

static void on_request(cr_http_req_t *req, void *data) {
  worker_t *w = data;
  atomic_fetch_add_explicit(&w->slot->requests, 1, memory_order_relaxed);
  cr_gateway_handle(w->gateway, req);
}

static void on_flush(uv_prepare_t *h) {
  worker_t *w = h->data;
  cr_meter_flush(w->meter);
  if (w->http) atomic_store_explicit(&w->slot->conns_open, cr_http_server_connections(w->http), memory_order_relaxed);
  cr_log_flush();
}

/* --- registry changes from the master ------------------------------------------------------- */

static void on_chan_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  worker_t *w = h->data;
  if (cr_buf_reserve(&w->chan_in, 65536)) {
    buf->base = NULL;
    buf->len = 0;
    return;
  }
  buf->base = w->chan_in.data + w->chan_in.len;
  buf->len = w->chan_in.cap - w->chan_in.len;
}

/* The pool and the queue consumers follow fn's new version (or its removal). */
static void refresh(worker_t *w, cr_fn_t *fn) {
  cr_pool_refresh(w->pool, fn);
  cr_consumers_follow(w->consumers, fn);
  cr_schedules_follow(w->schedules, fn);
}

/* Applies each complete message to this worker's registry copy, then lets
 * the pool follow the functions that changed. */
static void on_chan_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  (void)buf;
  worker_t *w = s->data;
  if (nread < 0) {
    /* The master is gone; PDEATHSIG stops us too. */
    uv_read_stop(s);
    return;
  }
  w->chan_in.len += (size_t)nread;
  cr_fn_t *changed[64];
  int nchanged = 0;
  size_t off = 0;
  while (w->chan_in.len - off >= 4) {
    uint32_t len;
    memcpy(&len, w->chan_in.data + off, 4);
    if (w->chan_in.len - off - 4 < len) break;
    int op;
    cr_fn_t *fn;
    if (cr_registry_apply(w->args->registry, w->chan_in.data + off + 4, len, &op, &fn))
      cr_log(CR_LOG_ERROR, NULL, NULL, "could not apply a registry change from the master");
    off += 4 + (size_t)len;
    if (fn && (op == CR_OP_PUBLISH || op == CR_OP_REMOVE)) {
      int seen = 0;
      for (int i = 0; i < nchanged; i++) seen |= changed[i] == fn;
      if (!seen && nchanged < 64) changed[nchanged++] = fn;
      else if (!seen) refresh(w, fn);
    }
    if (op == CR_OP_ROUTE) {
      for (int i = 0; i < nchanged; i++) refresh(w, changed[i]);
      nchanged = 0;
    }
  }
  for (int i = 0; i < nchanged; i++) refresh(w, changed[i]);
  cr_buf_consume(&w->chan_in, off);
}

static void on_promote(uv_timer_t *t) {
  worker_t *w = t->data;
  cr_stdlib_promote_delayed(w->stdlib);
}

/* Every connection is closed and the last usage sent (or given up): close what keeps the loop
 * alive, so uv_run returns and the worker exits. */
static void on_usage_sent(void *data) {
  worker_t *w = data;
  uv_close((uv_handle_t *)&w->promoter, NULL);
  cr_kvexpire_stop(w->kvexpire);
  cr_series_stop(w->series);
  uv_close((uv_handle_t *)&w->chan, NULL);
  uv_close((uv_handle_t *)&w->sigterm, NULL);
  uv_close((uv_handle_t *)&w->sigint, NULL);
  uv_close((uv_handle_t *)&w->flusher, NULL);
  cr_consumers_stop(w->consumers);
  cr_async_stop(w->async);
  cr_schedules_stop(w->schedules);
  cr_stdlib_detach(w->stdlib);
  cr_log_set_sink(NULL, NULL);
  cr_logstore_free(w->logstore); /* sends its last batch, before the connection goes */
  w->logstore = NULL;
  cr_redis_free(w->redis);
  w->redis = NULL;
  cr_log_flush();
}

/* Every connection is closed: the usage metered since the last flush goes to Redis first. */
static void on_drained(void *data) {
  worker_t *w = data;
  cr_meter_flush(w->meter);
  cr_usage_final(w->usage, on_usage_sent, w);
}

/* Connections the kernel has accepted for this worker wait in its
 * listening socket's queue: closing the socket would reset them. */
static int accept_queue_waiting(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* Stopping, step 1: let the loop accept what waits in the accept queue
 * (each loop iteration accepts all of it), at most ACCEPT_WAIT_NS under a
 * flood; step 2: close the listener at once when the queue is seen empty, and
 * drain (http.h: every request received is answered). A connection that
 * reaches this worker's queue before then is served; after it, new
 * connections are refused (no socket listens once every worker closed its
 * own; the master's reserved one does not listen). */
#define ACCEPT_WAIT_NS 1000000000ULL

static void on_accept_wait(uv_timer_t *t) {
  worker_t *w = t->data;
  if (accept_queue_waiting(w->listen_fd) && cr_clock_ns() < w->accept_until) return;
  uv_timer_stop(t);
  uv_close((uv_handle_t *)t, NULL);
  cr_log(CR_LOG_INFO, NULL, NULL, "stopping: finishing %d open connections", cr_http_server_connections(w->http));
  cr_log_flush();
  cr_http_server_drain_received(w->http, on_drained, w);
}

static void on_sigterm(uv_signal_t *h, int sig) {
  (void)sig;
  worker_t *w = h->data;
  if (w->stopping) return;
  w->stopping = 1;
  w->accept_until = cr_clock_ns() + ACCEPT_WAIT_NS;
  uv_timer_init(w->loop, &w->accept_wait);
  w->accept_wait.data = w;
  uv_timer_start(&w->accept_wait, on_accept_wait, 0, 1);
}

static void on_sigint(uv_signal_t *h, int sig) {
  (void)h;
  (void)sig;
  /* A terminal's Ctrl-C reaches every process of the group: the master decides. */
}

/* The accounts service (--accounts): its keys under --data, its ops on this loop's Redis. */
static int start_accounts(worker_t *w) {
  const cr_config_t *cfg = w->args->config;
  char err[600];
  cr_authkeys_opts_t ko = {.rotate_after = cfg->accounts_key_rotation, .grace = cfg->accounts_key_grace};
  cr_authkeys_t *keys = cr_authkeys_open(cfg->data_dir, &ko, err, sizeof err);
  if (!keys) {
    cr_log(CR_LOG_ERROR, NULL, NULL, "accounts: %s", err);
    cr_log_flush();
    return 1;
  }
  cr_users_opts_t uo = {.prefix = cfg->redis_prefix, .min_password = cfg->accounts_min_password,
                        .access_ttl = cfg->accounts_access_ttl, .refresh_ttl = cfg->accounts_refresh_ttl,
                        .code_ttl = cfg->accounts_code_ttl, .issuer = cfg->accounts_issuer,
                        .pw = {(uint32_t)cfg->accounts_argon2_memory, (uint32_t)cfg->accounts_argon2_time,
                               (uint32_t)cfg->accounts_argon2_lanes}};
  for (int k = 0; k < CR_USERS_NSCRIPTS; k++) {
    uo.scripts[k] = -1;
    for (int i = 0; i < cr_stdlib_nscripts; i++)
      if (strcmp(cr_stdlib_scripts[i].name, cr_users_script_names[k]) == 0) uo.scripts[k] = i;
  }
  w->accounts.users = cr_users_new(w->loop, w->redis, keys, &uo);
  if (!w->accounts.users) {
    cr_authkeys_free(keys);
    cr_log(CR_LOG_ERROR, NULL, NULL, "out of memory starting the accounts service");
    cr_log_flush();
    return 1;
  }
  w->accounts.admin = &w->admin;
  w->accounts.registry = w->args->registry;
  w->accounts.fc = w->fncalls;
  w->accounts.hook_timeout = cfg->accounts_hook_timeout;
  /* --accounts-cors: the origins as the cors setting's patterns (lower-case). */
  if (cfg->accounts_cors && cfg->accounts_cors[0]) {
    cr_cors_spec_t *c = &w->accounts.cors;
    c->set = 1;
    c->max_age = 600;
    c->methods = cr_xstrdup("GET, POST");
    c->headers = cr_xstrdup("authorization, content-type");
    char *list = cr_xstrdup(cfg->accounts_cors), *save = NULL;
    for (char *o = strtok_r(list, ", ", &save); o; o = strtok_r(NULL, ", ", &save)) {
      if (strcmp(o, "*") == 0) {
        c->any_origin = 1;
        continue;
      }
      for (char *p = o; *p; p++) *p = (char)tolower((unsigned char)*p);
      c->origins = cr_xrealloc(c->origins, sizeof *c->origins * (size_t)(c->norigins + 1));
      c->origins[c->norigins++] = cr_xstrdup(o);
    }
    free(list);
  }
  cr_stdlib_set_users(w->stdlib, w->accounts.users);
  return 0;
}

int cr_worker_main(cr_worker_args_t *args) {
  worker_t w;
  memset(&w, 0, sizeof w);
  w.args = args;
  const cr_config_t *cfg = args->config;

  /* Die with the master: a worker must never outlive it. */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() == 1) return 1;
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGPIPE, SIG_IGN);

  cr_log_setup(args->id, 1);
  w.slot = &args->shm->workers[args->id];
  atomic_store(&w.slot->pid, getpid());
  atomic_store(&w.slot->started_ms, cr_wall_ms());
  atomic_store(&w.slot->busy_since_ns, 0);

  int fd = cr_listen_socket(cfg->listen_host, cfg->listen_port, 1, 511);
  if (fd < 0) {
    cr_log(CR_LOG_ERROR, NULL, NULL, "cannot listen on %s:%d: %s", cfg->listen_host, cfg->listen_port,
           cr_strerror(fd));
    cr_log_flush();
    return 1;
  }
  if (cr_vm_watchdog_start()) {
    cr_log(CR_LOG_ERROR, NULL, NULL, "cannot start the watchdog thread");
    cr_log_flush();
    return 1;
  }

  w.loop = uv_default_loop();
  if (strcmp(cfg->redis, "none") != 0) {
    cr_redis_url_t u;
    char err[600];
    if (cr_redis_url_parse(cfg->redis, &u, err, sizeof err) == 0) {
      w.redis = cr_redis_new(w.loop, &u, cfg->redis_timeout, cr_stdlib_scripts, cr_stdlib_nscripts);
      cr_redis_set_meters(w.redis, w.slot);
    } else
      cr_log(CR_LOG_ERROR, NULL, NULL, "%s", err);
  }
  if (w.redis) {
    cr_logstore_opts_t lo = {.prefix = cfg->redis_prefix, .maxlen = cfg->log_retention, .max_age = cfg->log_max_age,
                             .max_pending = 4u * 1024 * 1024, .add_script = -1, .query_script = -1,
                             .stored = &w.slot->log_stored, .dropped = &w.slot->log_dropped};
    for (int i = 0; i < cr_stdlib_nscripts; i++) {
      if (strcmp(cr_stdlib_scripts[i].name, "log_add") == 0) lo.add_script = i;
      if (strcmp(cr_stdlib_scripts[i].name, "log_query") == 0) lo.query_script = i;
    }
    w.logstore = cr_logstore_new(w.loop, w.redis, &lo);
    if (w.logstore) cr_log_set_sink(cr_logstore_sink, w.logstore);
  }
  cr_stdlib_opts_t sopts = {.prefix = cfg->redis_prefix, .kv_max_value = cfg->kv_max_value,
                            .max_object = cfg->max_object, .queue_max_body = 256 * 1024, .stream_maxlen = 100000,
                            .queue_max_depth = cfg->queue_max_depth};
  w.stdlib = cr_stdlib_new(w.redis, &sopts);
  if (!w.stdlib) {
    cr_log(CR_LOG_ERROR, NULL, NULL, "out of memory making the stdlib");
    cr_log_flush();
    return 1;
  }
  /* crescent.http: the client, and the listener it must not call back. */
  {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int port = cfg->listen_port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
      port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                            : ((struct sockaddr_in *)&ss)->sin_port);
    char ua[64];
    snprintf(ua, sizeof ua, "crescent/%s", CRESCENT_VERSION);
    cr_outbound_opts_t oopts = {.user_agent = ua};
    w.outbound = cr_outbound_new(w.loop, &oopts);
    w.self = cr_egress_self_new(cfg->listen_host, port);
    if (!w.outbound || !w.self) {
      cr_log(CR_LOG_ERROR, NULL, NULL, "cannot set up the outbound HTTP client (out of memory, or OpenSSL failed)");
      cr_log_flush();
      return 1;
    }
    cr_http_config_t hc = {.ob = w.outbound, .self = w.self, .allow_private = cfg->egress_private,
                           .max_response = cfg->http_max_response, .max_requests = cfg->http_max_requests};
    cr_stdlib_set_http(w.stdlib, &hc);
  }
  /* Delayed queue messages are moved into their streams by one worker. */
  uv_timer_init(w.loop, &w.promoter);
  w.promoter.data = &w;
  if (args->id == 0 && w.redis) {
    uv_timer_start(&w.promoter, on_promote, 100, 100);
    uv_unref((uv_handle_t *)&w.promoter);
    /* So are KV expiries swept (kvexpire.h: safe on several nodes too). */
    cr_kvexpire_opts_t xopts = {.prefix = cfg->redis_prefix, .stream_maxlen = sopts.stream_maxlen};
    w.kvexpire = cr_kvexpire_new(w.loop, w.redis, &xopts);
    if (!w.kvexpire) {
      cr_log(CR_LOG_ERROR, NULL, NULL, "out of memory making the kv expiry sweeper");
      cr_log_flush();
      return 1;
    }
  }
  cr_pool_opts_t popts = {.blank = cfg->blank_states, .init_timeout = cfg->init_timeout, .worker = args->id,
                          .prepare = cr_invoke_prepare,
                          .vm = {.preload = cr_stdlib_preload, .preload_ud = w.stdlib,
                                 .read_module = cr_loader_module_reader}};
  w.pool = cr_pool_new(w.loop, args->registry, args->shm, &popts);
  w.invoker = cr_invoker_new(w.loop, w.slot);
  w.meter = cr_meter_new(args->shm);
  if (w.redis) {
    int script = -1;
    for (int i = 0; i < cr_stdlib_nscripts; i++)
      if (strcmp(cr_stdlib_scripts[i].name, "usage_add") == 0) script = i;
    cr_usage_opts_t uopts = {.prefix = cfg->redis_prefix, .retention = cfg->usage_retention * 86400.0,
                             .script = script, .slot = w.slot, .interval = 1};
    w.usage = script >= 0 && w.meter ? cr_usage_new(w.loop, w.redis, &uopts) : NULL;
    if (!w.usage) {
      cr_log(CR_LOG_ERROR, NULL, NULL, "out of memory setting up usage");
      cr_log_flush();
      return 1;
    }
    cr_meter_set_usage(w.meter, w.usage);
  }
  cr_dispatch_opts_t dopts = {.queue_wait = cfg->queue_wait, .queue_max = cfg->queue_max};
  w.dispatch = w.pool && w.invoker && w.meter ? cr_dispatch_new(w.loop, w.pool, w.invoker, w.meter, &dopts) : NULL;
  cr_gateway_opts_t gopts = {.max_response = cfg->max_response, .max_body = cfg->max_body,
                             .max_object = cfg->max_object, .registry = args->registry,
                             .admin = &w.admin, .meter = w.meter, .invoke_api = &w.invoke_api,
                             .redis = w.redis, .prefix = cfg->redis_prefix, .shm = args->shm,
                             .cache_size = cfg->cache_size, .loop = w.loop, .accounts = &w.accounts,
                             .default_auth = strcmp(cfg->default_auth, "apikey") == 0 ? CR_AUTH_APIKEY : CR_AUTH_NONE};
  /* Function calls first: the gateway runs authorizer functions through them. */
  w.fncalls = w.dispatch ? cr_fncalls_new(w.loop, w.dispatch, args->registry) : NULL;
  gopts.fncalls = w.fncalls;
  w.gateway = w.fncalls ? cr_gateway_new(w.dispatch, &gopts) : NULL;
  cr_consumers_opts_t copts = {.prefix = cfg->redis_prefix, .worker = args->id, .shm = args->shm};
  w.consumers = w.gateway ? cr_consumers_new(w.loop, w.redis, w.dispatch, args->registry, &copts) : NULL;
  cr_async_opts_t aopts = {.prefix = cfg->redis_prefix, .worker = args->id, .retention = 86400,
                           .queue_max_depth = cfg->queue_max_depth, .concurrency = 16};
  w.async = w.fncalls && w.redis ? cr_async_new(w.loop, w.redis, w.fncalls, args->registry, &aopts) : NULL;
  cr_schedules_opts_t sopts2 = {.prefix = cfg->redis_prefix, .worker = args->id, .shm = args->shm};
  w.schedules = w.fncalls ? cr_schedules_new(w.loop, w.redis, w.dispatch, args->registry, &sopts2) : NULL;
  if (!w.consumers || !w.fncalls || (w.redis && !w.async) || !w.schedules) {
    cr_log(CR_LOG_ERROR, NULL, NULL, "out of memory setting up the worker");
    cr_log_flush();
    return 1;
  }
  w.calls.fc = w.fncalls;
  w.calls.async = w.async;
  cr_stdlib_set_calls(w.stdlib, &cr_invoke_stdlib_calls, &w.calls);
  w.invoke_api.admin = &w.admin;
  w.invoke_api.registry = args->registry;
  w.invoke_api.fc = w.fncalls;
  w.invoke_api.async = w.async;
  if (cfg->accounts && start_accounts(&w)) return 1;
  w.admin.registry = args->registry;
  w.admin.shm = args->shm;
  w.admin.price_request = cfg->price_request;
  w.admin.price_gb_second = cfg->price_gb_second;
  w.admin.token = cfg->admin_token;
  w.admin.metrics_public = cfg->metrics_public;
  w.admin.redis_configured = strcmp(cfg->redis, "none") != 0;
  w.admin.redis = w.redis;
  w.admin.usage_redis = w.redis;
  w.admin.prefix = cfg->redis_prefix;
  for (int i = 0; i < cr_stdlib_nscripts; i++)
    if (strcmp(cr_stdlib_scripts[i].name, "usage_read") == 0) w.admin.usage_read_script = i;
  w.admin.logstore = w.logstore;
  w.admin.loop = w.loop;
  w.admin.scache = cr_gateway_scache(w.gateway);
  w.admin.series_redis = w.redis;
  w.admin.series_interval = cfg->series_interval;
  if (args->id == 0 && w.redis) {
    /* One sampler per node: each node's worker 0 appends its own deltas, readers sum them. */
    char host[64] = "", node[128];
    gethostname(host, sizeof host - 1);
    snprintf(node, sizeof node, "%s/%d", host[0] ? host : "node", (int)getppid());
    cr_series_opts_t seo = {.prefix = cfg->redis_prefix, .interval = cfg->series_interval, .node = node};
    w.series = cr_series_new(w.loop, w.redis, args->registry, args->shm, &seo);
    if (!w.series) {
      cr_log(CR_LOG_ERROR, NULL, NULL, "out of memory making the series sampler");
      cr_log_flush();
      return 1;
    }
  }
  cr_stdlib_set_cache(w.stdlib, &cr_scache_stdlib_ops, w.admin.scache);
  cr_http_opts_t opts = {
      .max_body = cfg->max_body,
      .max_header = cfg->max_header,
      .request_timeout = cfg->request_timeout,
      .keepalive_timeout = cfg->keepalive_timeout,
      .max_connections = cfg->max_connections,
      .on_request = on_request,
      .body_limit = body_limit,
      .data = &w,
      .meters = w.slot,
      .access_log = strcmp(cfg->access_log, "all") == 0   ? CR_ACCESS_LOG_ALL
                    : strcmp(cfg->access_log, "off") == 0 ? CR_ACCESS_LOG_OFF
                                                          : CR_ACCESS_LOG_ERRORS,
  };
  w.listen_fd = fd;
  int rc = cr_http_server_start(&w.http, w.loop, fd, &opts);
  if (rc) {
    cr_log(CR_LOG_ERROR, NULL, NULL, "cannot serve HTTP: %s", cr_strerror(rc));
    cr_log_flush();
    return 1;
  }
  atomic_store(&w.slot->serving_ms, cr_wall_ms());
  uv_signal_init(w.loop, &w.sigterm);
  w.sigterm.data = &w;
  uv_signal_start(&w.sigterm, on_sigterm, SIGTERM);
  uv_signal_init(w.loop, &w.sigint);
  uv_signal_start(&w.sigint, on_sigint, SIGINT);
  uv_prepare_init(w.loop, &w.flusher);
  w.flusher.data = &w;
  uv_prepare_start(&w.flusher, on_flush);
  uv_pipe_init(w.loop, &w.chan, 0);
  w.chan.data = &w;
  if (args->chan_fd >= 0 && uv_pipe_open(&w.chan, args->chan_fd) == 0) {
    uv_read_start((uv_stream_t *)&w.chan, on_chan_alloc, on_chan_read);
    uv_unref((uv_handle_t *)&w.chan);
  }
  cr_consumers_follow_all(w.consumers);
  if (w.async) cr_async_start(w.async);
  cr_schedules_follow_all(w.schedules);
  cr_log(CR_LOG_DEBUG, NULL, NULL, "worker started (pid %d)", (int)getpid());

  uv_run(w.loop, UV_RUN_DEFAULT);

  cr_invoker_free(w.invoker);   /* waiting invocations end (as timeouts) and answer */
  cr_dispatch_free(w.dispatch); /* calls waiting for a place answer 503 */
  cr_consumers_stop(w.consumers); /* (done already when the worker drained) */
  cr_async_stop(w.async);
  cr_schedules_stop(w.schedules);
  cr_gateway_free(w.gateway);     /* cancels its authorizer calls */
  cr_fncalls_free(w.fncalls);     /* calls ended with the dispatcher */
  cr_stdlib_set_users(w.stdlib, NULL);
  cr_users_free(w.accounts.users); /* its pending ops' callers are gone */
  for (int i = 0; i < w.accounts.cors.norigins; i++) free(w.accounts.cors.origins[i]);
  free(w.accounts.cors.origins);
  free(w.accounts.cors.methods);
  free(w.accounts.cors.headers);
  cr_meter_free(w.meter);
  cr_usage_free(w.usage); /* what is still unsent is counted dropped */
  cr_outbound_free(w.outbound); /* requests ended with their invocations */
  cr_stdlib_detach(w.stdlib);
  cr_kvexpire_stop(w.kvexpire);
  cr_log_set_sink(NULL, NULL);
  cr_logstore_free(w.logstore);
  w.logstore = NULL;
  cr_series_stop(w.series);
  cr_redis_free(w.redis);
  cr_pool_free(w.pool);
  uv_run(w.loop, UV_RUN_DEFAULT); /* let the pool's and gateway's handles close */
  cr_stdlib_free(w.stdlib); /* after the states it was installed in */
  cr_egress_self_free(w.self);
  cr_consumers_free(w.consumers); /* no reply nor call of theirs can come now */
  cr_async_free(w.async);
  cr_schedules_free(w.schedules);
  cr_kvexpire_free(w.kvexpire);
  cr_series_free(w.series);
  cr_http_server_free(w.http);
  uv_loop_close(w.loop);
  cr_buf_free(&w.chan_in);
  atomic_store(&w.slot->pid, 0);
  cr_log(CR_LOG_DEBUG, NULL, NULL, "worker stopped");
  cr_log_flush();
  return 0;
}
