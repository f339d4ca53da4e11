/* series.c - per-interval deltas of the function meters in Redis (series.h). */
#include "series.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "clock.h"
#include "jsontext.h"
#include "log.h"
#include "url.h"

#define KEEP_MS 3600000ULL   /* an hour of entries */
#define EXPIRE_MS 3900000ULL /* the key outlives its last entry by the hour, and a bit */
#define MAX_ENTRIES 20000    /* read back at most: 360 per node, for 50 nodes */

/* What one sample looks at, per function slot. */
typedef struct {
  uint64_t inv, err, tmo, thr, cold, dur_ns, mb_ms;
  uint64_t hist[CR_SHM_HIST_BUCKETS];
} snap_t;

struct cr_series_s {
  uv_timer_t timer;
  cr_redis_t *redis;
  const cr_registry_t *registry;
  cr_shm_t *shm;
  char *prefix;
  char node[128];
  snap_t *last; /* CR_SHM_MAX_FUNCTIONS: the totals at the previous sample */
  int stopped;
};

static void snap_of(cr_shm_fn_t *f, snap_t *s) {
  s->inv = atomic_load(&f->invocations);
  s->err = atomic_load(&f->errors);
  s->tmo = atomic_load(&f->timeouts);
  s->thr = atomic_load(&f->throttles);
  s->cold = atomic_load(&f->cold_starts);
  s->dur_ns = atomic_load(&f->duration_ns);
  s->mb_ms = atomic_load(&f->mb_ms);
  for (int k = 0; k < CR_SHM_HIST_BUCKETS; k++) s->hist[k] = atomic_load(&f->hist[k]);
}

/* Counters only grow; a smaller value (never expected) counts as no change. */
static uint64_t delta(uint64_t now, uint64_t before) { return now > before ? now - before : 0; }

static void on_added(void *data, redisReply *reply, const char *err) {
  if (err) cr_log(CR_LOG_DEBUG, NULL, NULL, "series: a sample was not stored: %s", err);
}

void cr_series_sample(cr_series_t *s) {
  if (!s || s->stopped || !cr_redis_connected(s->redis)) return;
  uint64_t now = cr_wall_ms();
  char minid[32], expire[32];
  snprintf(minid, sizeof minid, "%llu", (unsigned long long)(now > KEEP_MS ? now - KEEP_MS : 0));
  snprintf(expire, sizeof expire, "%llu", (unsigned long long)EXPIRE_MS);
  const cr_registry_t *r = s->registry;
  for (int i = 0; i < r->nfns; i++) {
    const cr_fn_t *fn = r->fns[i];
    cr_shm_fn_t *f = cr_shm_fn(s->shm, fn->slot);
    if (!f || fn->platform) continue;
    snap_t cur, *prev = &s->last[fn->slot];
    snap_of(f, &cur);
    uint64_t d[7] = {delta(cur.inv, prev->inv),       delta(cur.err, prev->err),   delta(cur.tmo, prev->tmo),
                     delta(cur.thr, prev->thr),       delta(cur.cold, prev->cold), delta(cur.dur_ns, prev->dur_ns),
                     delta(cur.mb_ms, prev->mb_ms)};
    int moved = 0;
    for (int k = 0; k < 7; k++) moved |= d[k] != 0;
    if (!moved) continue;
    char num[7][24], hist[CR_SHM_HIST_BUCKETS * 21];
    size_t hl = 0;
    for (int k = 0; k < 7; k++) snprintf(num[k], sizeof num[k], "%llu", (unsigned long long)d[k]);
    for (int k = 0; k < CR_SHM_HIST_BUCKETS; k++)
      hl += (size_t)snprintf(hist + hl, sizeof hist - hl, "%s%llu", k ? "," : "",
                             (unsigned long long)delta(cur.hist[k], prev->hist[k]));
    char key[1200];
    snprintf(key, sizeof key, "%sseries:%s", s->prefix, fn->name);
    /* The id is Redis' clock ("*"), not this node's: nodes with clocks a little apart
     * still append in order, and the entries' times are on one clock. */
    const char *id = "*";
    const char *argv[] = {"XADD", key, "MINID", "~", minid, id, "n", s->node, "i", num[0], "e", num[1],
                          "o", num[2], "t", num[3], "c", num[4], "d", num[5], "m", num[6], "h", hist};
    int argc = (int)(sizeof argv / sizeof argv[0]);
    /* Not sent (the connection just went): the change stays for the next sample. */
    if (!cr_redis_call(s->redis, argc, argv, NULL, on_added, NULL)) return;
    *prev = cur;
    const char *pargv[] = {"PEXPIRE", key, expire};
    cr_redis_call(s->redis, 3, pargv, NULL, on_added, NULL);
  }
}

static void on_tick(uv_timer_t *t) { cr_series_sample(t->data); }

cr_series_t *cr_series_new(uv_loop_t *loop, cr_redis_t *redis, const cr_registry_t *registry, cr_shm_t *shm,
                           const cr_series_opts_t *opts) {
  cr_series_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->last = calloc(CR_SHM_MAX_FUNCTIONS, sizeof *s->last);
  s->prefix = strdup(opts->prefix ? opts->prefix : "cr:");
  if (!s->last || !s->prefix) {
    free(s->last);
    free(s->prefix);
    free(s);
    return NULL;
  }
  snprintf(s->node, sizeof s->node, "%s", opts->node ? opts->node : "node");
  s->redis = redis;
  s->registry = registry;
  s->shm = shm;
  /* The baseline: a worker 0 started again must not report everything
   * since the server started as its first interval. */
  for (int i = 0; shm && i < CR_SHM_MAX_FUNCTIONS; i++) snap_of(&shm->fns[i], &s->last[i]);
  double iv = opts->interval < 1 ? 1 : opts->interval > 60 ? 60 : opts->interval;
  uint64_t ms = (uint64_t)(iv * 1000);
  uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  uv_timer_start(&s->timer, on_tick, ms, ms);
  uv_unref((uv_handle_t *)&s->timer);
  return s;
}

void cr_series_stop(cr_series_t *s) {
  if (!s || s->stopped) return;
  s->stopped = 1;
  uv_close((uv_handle_t *)&s->timer, NULL);
}

void cr_series_free(cr_series_t *s) {
  if (!s) return;
  free(s->last);
  free(s->prefix);
  free(s);
}

double cr_series_quantile(const uint64_t *hist, double q) {
  uint64_t total = 0;
  for (int k = 0; k < CR_SHM_HIST_BUCKETS; k++) total += hist[k];
  if (!total) return -1;
  double rank = q * (double)total, seen = 0;
  for (int k = 0; k < CR_SHM_HIST_BUCKETS; k++) {
    if (!hist[k]) continue;
    double lo = k ? cr_shm_hist_bounds_ms[k - 1] : 0, hi = cr_shm_hist_bounds_ms[k];
    if (seen + (double)hist[k] >= rank) {
      if (k == CR_SHM_HIST_BUCKETS - 1) return lo; /* +Inf: no upper bound to reach for */
      return lo + (hi - lo) * ((rank - seen) / (double)hist[k]);
    }
    seen += (double)hist[k];
  }
  return cr_shm_hist_bounds_ms[CR_SHM_HIST_BUCKETS - 2];
}

/* --- the reader ---------------------------------------------------------------------------- */

typedef struct {
  uint64_t inv, err, tmo, thr, cold, dur_ns, mb_ms;
  uint64_t hist[CR_SHM_HIST_BUCKETS];
} point_t;

typedef struct {
  cr_http_req_t *req;
  char *name;
  uint64_t start, step;
  int npoints;
} series_wait_t;

static uint64_t field_u64(const redisReply *v) {
  if (!v || v->type != REDIS_REPLY_STRING) return 0;
  return strtoull(v->str, NULL, 10);
}

static void add_entry(point_t *p, const redisReply *fields) {
  for (size_t j = 0; j + 1 < fields->elements; j += 2) {
    const redisReply *k = fields->element[j], *v = fields->element[j + 1];
    if (k->type != REDIS_REPLY_STRING || k->len != 1) continue;
    switch (k->str[0]) {
    case 'i': p->inv += field_u64(v); break;
    case 'e': p->err += field_u64(v); break;
    case 'o': p->tmo += field_u64(v); break;
    case 't': p->thr += field_u64(v); break;
    case 'c': p->cold += field_u64(v); break;
    case 'd': p->dur_ns += field_u64(v); break;
    case 'm': p->mb_ms += field_u64(v); break;
    case 'h':
      if (v->type == REDIS_REPLY_STRING) {
        const char *c = v->str;
        for (int b = 0; b < CR_SHM_HIST_BUCKETS && *c; b++) {
          char *end;
          p->hist[b] += strtoull(c, &end, 10);
          c = *end == ',' ? end + 1 : end;
        }
      }
      break;
    default: break;
    }
  }
}

static void num_array(cr_buf_t *b, const char *name, const point_t *pts, int n, int which) {
  cr_buf_printf(b, ",\"%s\":[", name);
  for (int i = 0; i < n; i++) {
    const point_t *p = &pts[i];
    if (i) cr_buf_putc(b, ',');
    switch (which) {
    case 0: cr_buf_append_u64(b, p->inv); break;
    case 1: cr_buf_append_u64(b, p->err); break;
    case 2: cr_buf_append_u64(b, p->tmo); break;
    case 3: cr_buf_append_u64(b, p->thr); break;
    case 4: cr_buf_append_u64(b, p->cold); break;
    case 5: cr_buf_append_u64(b, p->inv > p->cold ? p->inv - p->cold : 0); break;
    case 6: cr_buf_printf(b, "%.3f", p->inv ? (double)p->dur_ns / 1e6 / (double)p->inv : 0.0); break;
    case 7:
    case 8: {
      double v = cr_series_quantile(p->hist, which == 7 ? 0.5 : 0.99);
      if (v < 0) cr_buf_append_str(b, "null");
      else cr_buf_printf(b, "%.3f", v);
      break;
    }
    case 9: cr_buf_printf(b, "%.6f", (double)p->mb_ms / 1024.0 / 1000.0); break;
    default: break;
    }
  }
  cr_buf_putc(b, ']');
}

static void on_range(void *data, redisReply *reply, const char *err) {
  series_wait_t *w = data;
  if (err || !reply || reply->type != REDIS_REPLY_ARRAY) {
    char msg[200];
    snprintf(msg, sizeof msg, "series unavailable: %s",
             err ? err : reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
    cr_http_respond_error(w->req, 503, msg);
    goto out;
  }
  point_t *pts = calloc((size_t)w->npoints, sizeof *pts);
  if (!pts) {
    cr_http_respond_error(w->req, 503, "server out of memory");
    goto out;
  }
  for (size_t e = 0; e < reply->elements; e++) {
    const redisReply *ent = reply->element[e];
    if (ent->type != REDIS_REPLY_ARRAY || ent->elements != 2 || ent->element[0]->type != REDIS_REPLY_STRING ||
        ent->element[1]->type != REDIS_REPLY_ARRAY)
      continue;
    uint64_t ms = strtoull(ent->element[0]->str, NULL, 10);
    if (ms < w->start) continue;
    uint64_t i = (ms - w->start) / w->step;
    /* A sample at ms covers the interval before it: it goes in its own bucket. */
    if (i >= (uint64_t)w->npoints) i = (uint64_t)w->npoints - 1;
    add_entry(&pts[i], ent->element[1]);
  }
  cr_buf_t b = CR_BUF_INIT;
  cr_buf_append_str(&b, "{\"function\":");
  cr_json_escape(&b, w->name, strlen(w->name));
  cr_buf_printf(&b, ",\"step\":%llu,\"start\":%llu,\"t\":[", (unsigned long long)w->step,
                (unsigned long long)w->start);
  for (int i = 0; i < w->npoints; i++) {
    if (i) cr_buf_putc(&b, ',');
    cr_buf_append_u64(&b, w->start + (uint64_t)(i + 1) * w->step);
  }
  cr_buf_putc(&b, ']');
  static const char *const names[] = {"invocations", "errors",  "timeouts", "throttles", "coldStarts",
                                      "warmStarts",  "durationMsAvg", "p50Ms", "p99Ms",   "gbSeconds"};
  for (int k = 0; k < 10; k++) num_array(&b, names[k], pts, w->npoints, k);
  cr_buf_putc(&b, '}');
  free(pts);
  cr_http_respond_start(w->req, 200);
  cr_http_respond_header(w->req, "Cache-Control", 13, "no-store", 8);
  cr_http_respond_finish(w->req, "application/json", b.data, b.len);
  cr_buf_free(&b);
out:
  free(w->name);
  free(w);
}

/* The value of name= in the query, decoded into out (cleared); 1 if present. */
static int query_param(const cr_http_req_t *req, const char *name, cr_buf_t *out) {
  size_t nl = strlen(name);
  const char *q = req->query, *qe = q + req->query_len;
  while (q && q < qe) {
    const char *amp = memchr(q, '&', (size_t)(qe - q));
    const char *pe = amp ? amp : qe;
    if ((size_t)(pe - q) > nl && memcmp(q, name, nl) == 0 && q[nl] == '=') {
      out->len = 0;
      cr_url_decode(q + nl + 1, (size_t)(pe - q - nl - 1), 1, out);
      return 1;
    }
    q = pe + 1;
  }
  return 0;
}

void cr_series_handle(cr_redis_t *redis, const char *prefix, double interval, const cr_registry_t *registry,
                      cr_http_req_t *req) {
  cr_buf_t name = CR_BUF_INIT, mins = CR_BUF_INIT;
  if (!query_param(req, "function", &name) || !name.len) {
    cr_http_respond_error(req, 400, "function= is required");
    goto out;
  }
  cr_buf_append(&name, "", 1);
  name.len--;
  const cr_fn_t *fn = registry ? cr_registry_find(registry, name.data) : NULL;
  if (!fn || fn->platform) {
    cr_http_respond_error(req, 404, "function not found");
    goto out;
  }
  long minutes = 60;
  if (query_param(req, "minutes", &mins)) {
    cr_buf_append(&mins, "", 1);
    char *end;
    minutes = strtol(mins.data, &end, 10);
    if (*end || end == mins.data || minutes < 1 || minutes > 60) {
      cr_http_respond_error(req, 400, "minutes must be a whole number from 1 to 60");
      goto out;
    }
  }
  if (!redis || !cr_redis_connected(redis)) {
    cr_http_respond_error(req, 503, "series need Redis (the server runs with --redis none, or Redis is down)");
    goto out;
  }
  double iv = interval < 1 ? 1 : interval > 60 ? 60 : interval;
  uint64_t step = (uint64_t)(iv * 1000), now = cr_wall_ms();
  int npoints = (int)(((uint64_t)minutes * 60000 + step - 1) / step);
  /* Buckets end on a multiple of the step, the last one at or after now. */
  uint64_t end_ms = (now / step + 1) * step;
  series_wait_t *w = calloc(1, sizeof *w);
  if (!w || !(w->name = strdup(name.data))) {
    free(w);
    cr_http_respond_error(req, 503, "server out of memory");
    goto out;
  }
  w->req = req;
  w->step = step;
  w->npoints = npoints;
  w->start = end_ms - (uint64_t)npoints * step;
  char key[1200], from[32], count[16];
  snprintf(key, sizeof key, "%sseries:%s", prefix, fn->name);
  snprintf(from, sizeof from, "%llu", (unsigned long long)w->start);
  snprintf(count, sizeof count, "%d", MAX_ENTRIES);
  const char *argv[] = {"XRANGE", key, from, "+", "COUNT", count};
  if (!cr_redis_call(redis, 6, argv, NULL, on_range, w)) {
    free(w->name);
    free(w);
    cr_http_respond_error(req, 503, "series unavailable: Redis is not connected");
  }
out:
  cr_buf_free(&name);
  cr_buf_free(&mins);
}
