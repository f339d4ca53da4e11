/* scache.c - the gateway's shared response cache in Redis (scache.h). */
#include "scache.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "clock.h"
#include "log.h"

struct cr_scache_get_s {
  cr_scache_t *sc;
  cr_scache_get_t *prev, *next; /* sc's pending lookups, oldest first */
  uint64_t sent_ms;             /* monotonic */
  cr_redis_req_t *rr;
  cr_scache_cb cb;
  void *data;
};

struct cr_scache_purge_s {
  cr_redis_req_t *rr;
  cr_scache_done done;
  void *data;
};

struct cr_scache_s {
  uv_loop_t *loop;
  cr_redis_t *redis;
  char prefix[64];
  cr_registry_t *registry;
  cr_shm_t *shm;
  int get_script, put_script, purge_script;
  cr_scache_get_t *head, *tail;
  uv_timer_t *timer; /* sweeps lookups past CR_SCACHE_WAIT_MS; NULL until the first */
  uint64_t warned_ns, big_warned_ns;
  uint64_t shun_until_ns; /* a lookup timed out: Redis is not asked before this (monotonic) */
};

static uint64_t mono_ms(void) { return cr_clock_ns() / 1000000u; }

cr_scache_t *cr_scache_new(uv_loop_t *loop, cr_redis_t *redis, const char *prefix, cr_registry_t *registry,
                           cr_shm_t *shm) {
  cr_scache_t *sc = calloc(1, sizeof *sc);
  if (!sc) return NULL;
  sc->loop = loop;
  sc->redis = redis;
  snprintf(sc->prefix, sizeof sc->prefix, "%s", prefix ? prefix : "cr:");
  sc->registry = registry;
  sc->shm = shm;
  sc->get_script = sc->put_script = sc->purge_script = -1;
  for (int i = 0; i < cr_stdlib_nscripts; i++) {
    if (strcmp(cr_stdlib_scripts[i].name, "rc_get") == 0) sc->get_script = i;
    if (strcmp(cr_stdlib_scripts[i].name, "rc_put") == 0) sc->put_script = i;
    if (strcmp(cr_stdlib_scripts[i].name, "rc_purge") == 0) sc->purge_script = i;
  }
  return sc;
}

int cr_scache_enabled(const cr_scache_t *sc) { return sc && sc->redis; }

static void unlink_get(cr_scache_get_t *g) {
  cr_scache_t *sc = g->sc;
  if (g->prev) g->prev->next = g->next;
  else sc->head = g->next;
  if (g->next) g->next->prev = g->prev;
  else sc->tail = g->prev;
  g->prev = g->next = NULL;
}

static void on_timer_closed(uv_handle_t *h) { free(h); }

void cr_scache_free(cr_scache_t *sc) {
  if (!sc) return;
  while (sc->head) {
    cr_scache_get_t *g = sc->head;
    unlink_get(g);
    cr_redis_cancel(g->rr);
    free(g);
  }
  if (sc->timer) uv_close((uv_handle_t *)sc->timer, on_timer_closed);
  free(sc);
}

/* One warning per 10 s of each kind (last: when the previous one was logged). */
static int may_warn(uint64_t *last) {
  uint64_t now = cr_clock_coarse_ns();
  if (*last && now - *last < 10000000000ull) return 0;
  *last = now ? now : 1;
  return 1;
}

/* PREFIX{rc:NAME}: */
static int key_base(cr_buf_t *k, const cr_scache_t *sc, const char *name) {
  return cr_buf_printf(k, "%s{rc:%s}:", sc->prefix, name);
}

/* The three keys of a lookup or store: entry, generation, path stamp (NUL-separated in one buffer). */
static int entry_keys(cr_buf_t *k, size_t off[3], const cr_scache_t *sc, const cr_fnver_t *ver, const char *path,
                      size_t plen, const char *lkey, size_t lklen) {
  /* The local key's "slot:version:" is this node's; the code hash stands for the version. */
  const char *rest = lkey, *end = lkey + lklen;
  for (int colons = 0; rest < end && colons < 2; rest++)
    if (*rest == ':') colons++;
  off[0] = k->len;
  int rc = key_base(k, sc, ver->fn->name) || cr_buf_printf(k, "e:%s:", ver->hash) ||
           cr_buf_append(k, rest, (size_t)(end - rest)) || cr_buf_putc(k, '\0');
  off[1] = k->len;
  rc = rc || key_base(k, sc, ver->fn->name) || cr_buf_append_str(k, "g") || cr_buf_putc(k, '\0');
  off[2] = k->len;
  rc = rc || key_base(k, sc, ver->fn->name) || cr_buf_append_str(k, "p:") || cr_buf_append(k, path, plen) ||
       cr_buf_putc(k, '\0');
  return rc;
}

static uint64_t stamp_of(const redisReply *r) {
  if (!r || r->type != REDIS_REPLY_STRING) return 0;
  char tmp[24];
  size_t n = r->len < sizeof tmp - 1 ? r->len : sizeof tmp - 1;
  memcpy(tmp, r->str, n);
  tmp[n] = '\0';
  return strtoull(tmp, NULL, 10);
}

static void on_get(void *data, redisReply *reply, const char *err) {
  cr_scache_get_t *g = data;
  cr_scache_t *sc = g->sc;
  unlink_get(g);
  cr_scache_cb cb = g->cb;
  void *d = g->data;
  free(g);
  if (!err && reply && reply->type == REDIS_REPLY_ARRAY && (reply->elements == 2 || reply->elements == 3)) {
    cr_scache_stamps_t st = {stamp_of(reply->element[0]), stamp_of(reply->element[1])};
    if (reply->elements == 2) {
      cb(d, CR_SCACHE_MISS, NULL, &st);
      return;
    }
    const redisReply *v = reply->element[2];
    cr_rcache_entry_t e;
    char ctype[256];
    if (v->type == REDIS_REPLY_STRING && cr_rcache_decode(v->str, v->len, &e, ctype, sizeof ctype) == 0) {
      cb(d, CR_SCACHE_HIT, &e, &st);
      return;
    }
    cb(d, CR_SCACHE_MISS, NULL, &st); /* not ours to read: it is replaced by the next store */
    return;
  }
  if (may_warn(&sc->warned_ns))
    cr_log(CR_LOG_WARN, NULL, NULL, "shared cache: a lookup failed (%s): the request went to the function",
           err ? err : "unexpected reply from rc_get");
  cb(d, CR_SCACHE_ERROR, NULL, NULL);
}

/* Lookups Redis has not answered within CR_SCACHE_WAIT_MS go to the function. */
static void on_sweep(uv_timer_t *t) {
  cr_scache_t *sc = t->data;
  uint64_t now = mono_ms();
  while (sc->head && now - sc->head->sent_ms >= CR_SCACHE_WAIT_MS) {
    cr_scache_get_t *g = sc->head;
    unlink_get(g);
    cr_redis_cancel(g->rr);
    cr_scache_cb cb = g->cb;
    void *d = g->data;
    free(g);
    /* A Redis this slow would add its wait to every request: not asked for a second. */
    sc->shun_until_ns = cr_clock_ns() + CR_SCACHE_SHUN_MS * 1000000ull;
    if (may_warn(&sc->warned_ns))
      cr_log(CR_LOG_WARN, NULL, NULL, "shared cache: Redis did not answer a lookup within %d ms: the request went to "
             "the function", CR_SCACHE_WAIT_MS);
    cb(d, CR_SCACHE_ERROR, NULL, NULL);
  }
  if (!sc->head) uv_timer_stop(t);
}

cr_scache_get_t *cr_scache_get(cr_scache_t *sc, const cr_fnver_t *ver, const char *path, size_t plen,
                               const char *lkey, size_t lklen, cr_scache_cb cb, void *data) {
  if (sc->shun_until_ns && cr_clock_ns() < sc->shun_until_ns) return NULL; /* warned when it began */
  if (!sc->redis || sc->get_script < 0 || !cr_redis_connected(sc->redis)) {
    if (may_warn(&sc->warned_ns))
      cr_log(CR_LOG_WARN, NULL, NULL, "shared cache: %s: requests go to the function",
             !sc->redis ? "no Redis (--redis none)" : "Redis is unreachable");
    return NULL;
  }
  if (!sc->timer) {
    sc->timer = malloc(sizeof *sc->timer);
    if (!sc->timer) return NULL;
    uv_timer_init(sc->loop, sc->timer);
    sc->timer->data = sc;
    uv_unref((uv_handle_t *)sc->timer);
  }
  cr_scache_get_t *g = calloc(1, sizeof *g);
  cr_buf_t k = CR_BUF_INIT;
  size_t off[3];
  if (!g || entry_keys(&k, off, sc, ver, path, plen, lkey, lklen)) {
    free(g);
    cr_buf_free(&k);
    return NULL;
  }
  const char *argv[3] = {k.data + off[0], k.data + off[1], k.data + off[2]};
  size_t lens[3] = {off[1] - off[0] - 1, off[2] - off[1] - 1, k.len - off[2] - 1};
  g->sc = sc;
  g->cb = cb;
  g->data = data;
  g->sent_ms = mono_ms();
  g->rr = cr_redis_eval(sc->redis, sc->get_script, 3, 3, argv, lens, on_get, g);
  cr_buf_free(&k);
  if (!g->rr) {
    free(g);
    return NULL;
  }
  g->prev = sc->tail;
  if (sc->tail) sc->tail->next = g;
  else sc->head = g;
  sc->tail = g;
  if (!uv_is_active((uv_handle_t *)sc->timer)) uv_timer_start(sc->timer, on_sweep, 50, 50);
  return g;
}

void cr_scache_get_cancel(cr_scache_get_t *g) {
  if (!g) return;
  unlink_get(g);
  cr_redis_cancel(g->rr);
  free(g);
}

static void on_put(void *data, redisReply *reply, const char *err) {
  (void)data;
  (void)reply;
  (void)err; /* a store that failed costs a later miss, nothing else */
}

void cr_scache_put(cr_scache_t *sc, const cr_fnver_t *ver, const char *path, size_t plen, const char *lkey,
                   size_t lklen, const cr_scache_stamps_t *st, const cr_rcache_entry_t *e) {
  if (!sc->redis || sc->put_script < 0 || !cr_redis_connected(sc->redis)) return;
  if (sc->shun_until_ns && cr_clock_ns() < sc->shun_until_ns) return;
  if (e->body_len > CR_SCACHE_MAX_BODY) {
    if (may_warn(&sc->big_warned_ns))
      cr_log(CR_LOG_WARN, NULL, NULL, "shared cache: an answer of %s is over %d bytes: kept in the worker's memory only",
             ver->fn->name, CR_SCACHE_MAX_BODY);
    return;
  }
  cr_buf_t k = CR_BUF_INIT, v = CR_BUF_INIT;
  size_t off[3];
  char g[24], p[24], px[24];
  snprintf(g, sizeof g, "%llu", (unsigned long long)st->g);
  snprintf(p, sizeof p, "%llu", (unsigned long long)st->p);
  double life = (e->ttl + e->swr) * 1000.0;
  snprintf(px, sizeof px, "%.0f", life < 1 ? 1 : life);
  if (!entry_keys(&k, off, sc, ver, path, plen, lkey, lklen) && !cr_rcache_encode(&v, e)) {
    const char *argv[7] = {k.data + off[0], k.data + off[1], k.data + off[2], g, p, v.data, px};
    size_t lens[7] = {off[1] - off[0] - 1, off[2] - off[1] - 1, k.len - off[2] - 1, strlen(g), strlen(p), v.len,
                      strlen(px)};
    cr_redis_eval(sc->redis, sc->put_script, 3, 7, argv, lens, on_put, NULL);
  }
  cr_buf_free(&k);
  cr_buf_free(&v);
}

static void on_purged(void *data, redisReply *reply, const char *err) {
  cr_scache_purge_t *p = data;
  cr_scache_done done = p->done;
  void *d = p->data;
  free(p);
  if (!err && reply && reply->type == REDIS_REPLY_ERROR) err = "redis error";
  done(d, err);
}

cr_scache_purge_t *cr_scache_purge(cr_scache_t *sc, const cr_fn_t *fn, const char *path, size_t plen,
                                   cr_scache_done done, void *data, char *err, size_t errlen) {
  if (!sc->redis || sc->purge_script < 0 || !cr_redis_connected(sc->redis)) {
    snprintf(err, errlen, "redis unavailable");
    return NULL;
  }
  cr_scache_purge_t *p = calloc(1, sizeof *p);
  cr_buf_t k = CR_BUF_INIT;
  size_t off[3] = {0, 0, 0};
  int rc = !p || key_base(&k, sc, fn->name) || cr_buf_append_str(&k, "g") || cr_buf_putc(&k, '\0');
  if (path) {
    off[1] = k.len;
    rc = rc || key_base(&k, sc, fn->name) || cr_buf_append_str(&k, "n") || cr_buf_putc(&k, '\0');
    off[2] = k.len;
    rc = rc || key_base(&k, sc, fn->name) || cr_buf_append_str(&k, "p:") || cr_buf_append(&k, path, plen) ||
         cr_buf_putc(&k, '\0');
  }
  if (rc) {
    free(p);
    cr_buf_free(&k);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  char ttl[24];
  snprintf(ttl, sizeof ttl, "%d", CR_SCACHE_STAMP_TTL);
  const char *argv[4] = {k.data, k.data + off[1], k.data + off[2], ttl};
  size_t lens[4] = {path ? off[1] - 1 : k.len - 1, path ? off[2] - off[1] - 1 : 0, path ? k.len - off[2] - 1 : 0,
                    strlen(ttl)};
  p->done = done;
  p->data = data;
  if (path) p->rr = cr_redis_eval(sc->redis, sc->purge_script, 3, 4, argv, lens, on_purged, p);
  else p->rr = cr_redis_eval(sc->redis, sc->purge_script, 1, 1, argv, lens, on_purged, p);
  cr_buf_free(&k);
  if (!p->rr) {
    free(p);
    snprintf(err, errlen, "redis unavailable");
    return NULL;
  }
  return p;
}

void cr_scache_purge_cancel(cr_scache_purge_t *p) {
  if (!p) return;
  cr_redis_cancel(p->rr);
  free(p);
}

int cr_scache_purge_path(cr_scache_t *sc, const cr_fn_t *fn, const char *path, size_t plen, cr_scache_done done,
                         void *data, cr_scache_purge_t **handle, char *err, size_t errlen) {
  /* This node first: every worker's copies, whatever Redis says. */
  cr_shm_cache_purge(sc->shm, fn->slot, path, plen, cr_clock_ns());
  const cr_fnver_t *ver = fn->current;
  if (!ver || !ver->settings.cache.shared || !sc->redis) return 1;
  *handle = cr_scache_purge(sc, fn, path, plen, done, data, err, errlen);
  return *handle ? 0 : -1;
}

/* --- ctx.cache.purge ------------------------------------------------------------------------------ */

static int stdlib_purge(void *ud, const char *path, size_t len, cr_stdlib_purge_done done, void *data, void **handle,
                        char *err, size_t errlen) {
  cr_scache_t *sc = ud;
  if (len >= 2 && path[1] == '_' && (len == 2 || path[2] == '/')) {
    snprintf(err, errlen, "%.*s is the platform's: its answers are never cached", len > 200 ? 200 : (int)len, path);
    return -1;
  }
  cr_route_match_t m;
  cr_router_t *router = sc->registry ? sc->registry->router : NULL;
  const cr_fn_t *fn = NULL;
  if (router && cr_router_match(router, CR_M_GET, path, len, &m) == 0) fn = m.target;
  if (!fn || fn->platform) {
    snprintf(err, errlen, "no function answers GET %.*s", len > 200 ? 200 : (int)len, path);
    return -1;
  }
  cr_scache_purge_t *h = NULL;
  int rc = cr_scache_purge_path(sc, fn, path, len, done, data, &h, err, errlen);
  *handle = h;
  return rc;
}

static void stdlib_cancel(void *ud, void *handle) {
  (void)ud;
  cr_scache_purge_cancel(handle);
}

const cr_stdlib_cache_t cr_scache_stdlib_ops = {.purge = stdlib_purge, .cancel = stdlib_cancel};
