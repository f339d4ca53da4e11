/* logstore.c - log lines batched into Redis streams, and read back (logstore.h). */
#include "logstore.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "clock.h"

#define FLUSH_MS 50
#define MAX_LINE (16 * 1024)
#define WARN_EVERY_MS 10000

struct cr_logstore_s {
  uv_loop_t *loop;
  cr_redis_t *redis;
  cr_logstore_opts_t o;
  char prefix[128];
  char set_key[160];
  uv_timer_t timer;
  /* The batch: per line, u32 key length, key, level byte, u32 reqid length, reqid,
   * 32 bytes of trace id (or 32 NULs), 20 bytes of the time (ms, decimal, NUL-padded),
   * u32 line length, line. */
  cr_buf_t batch;
  int nlines;
  int inflight;     /* lines of the batch Redis has not answered yet */
  int freeing;
  int timer_closed;
  uint64_t dropped_since_warn;
  uint64_t last_warn_ms;
  char last_err[96];
};

static void count_dropped(cr_logstore_t *s, uint64_t n, const char *why) {
  if (!n) return;
  if (s->o.dropped) atomic_fetch_add_explicit(s->o.dropped, n, memory_order_relaxed);
  s->dropped_since_warn += n;
  if (why) snprintf(s->last_err, sizeof s->last_err, "%s", why);
}

void cr_logstore_sink(void *data, const cr_log_meta_t *m, const char *line, size_t len) {
  cr_logstore_t *s = data;
  if (!s || s->freeing) return;
  if (len > MAX_LINE) {
    count_dropped(s, 1, "a line over 16 KB");
    return;
  }
  char key[400];
  int kl = m->fn ? snprintf(key, sizeof key, "%slogs:fn:%s", s->prefix, m->fn)
                 : snprintf(key, sizeof key, "%slogs:platform", s->prefix);
  if (kl <= 0 || (size_t)kl >= sizeof key) {
    count_dropped(s, 1, "a function name too long");
    return;
  }
  size_t rl = m->reqid ? strlen(m->reqid) : 0;
  if (rl > 200) rl = 200;
  size_t need = 4 + (size_t)kl + 1 + 4 + rl + 32 + 20 + 4 + len;
  if (s->batch.len + need > s->o.max_pending) {
    count_dropped(s, 1, "too many lines waiting for Redis");
    return;
  }
  if (cr_buf_reserve(&s->batch, need)) {
    count_dropped(s, 1, "out of memory");
    return;
  }
  char *p = s->batch.data + s->batch.len;
  uint32_t u = (uint32_t)kl;
  memcpy(p, &u, 4), p += 4;
  memcpy(p, key, (size_t)kl), p += kl;
  *p++ = (char)('0' + (m->level & 3));
  u = (uint32_t)rl;
  memcpy(p, &u, 4), p += 4;
  if (rl) memcpy(p, m->reqid, rl), p += rl;
  if (m->trace && strlen(m->trace) == 32) memcpy(p, m->trace, 32);
  else memset(p, 0, 32);
  p += 32;
  memset(p, 0, 20);
  snprintf(p, 20, "%llu", m->time_ms);
  p += 20;
  u = (uint32_t)len;
  memcpy(p, &u, 4), p += 4;
  memcpy(p, line, len), p += len;
  s->batch.len = (size_t)(p - s->batch.data);
  s->nlines++;
}

static void on_added(void *data, redisReply *reply, const char *err) {
  cr_logstore_t *s = data;
  int n = s->inflight;
  s->inflight = 0;
  if (err || !reply || reply->type == REDIS_REPLY_ERROR) {
    count_dropped(s, (uint64_t)n, err ? err : reply ? reply->str : "no reply");
  } else if (s->o.stored) {
    atomic_fetch_add_explicit(s->o.stored, (uint64_t)n, memory_order_relaxed);
  }
  if (s->freeing && s->timer_closed) free(s);
}

static void flush(cr_logstore_t *s) {
  if (s->inflight || s->nlines == 0) return;
  int n = s->nlines;
  if (!s->redis || !cr_redis_connected(s->redis) || s->o.add_script < 0) {
    count_dropped(s, (uint64_t)n, "redis unavailable");
    s->nlines = 0;
    cr_buf_reset(&s->batch, 256 * 1024);
    return;
  }
  int argc = 1 + n + 3 + 5 * n;
  const char **argv = malloc(sizeof *argv * (size_t)argc);
  size_t *lens = malloc(sizeof *lens * (size_t)argc);
  char maxlen[24], minid[32] = "", age[24];
  if (!argv || !lens) {
    free(argv);
    free(lens);
    return; /* the batch waits for the next turn (and the bound) */
  }
  snprintf(maxlen, sizeof maxlen, "%ld", s->o.maxlen);
  uint64_t now = cr_wall_ms();
  if (s->o.max_age > 0 && now > (uint64_t)(s->o.max_age * 1000))
    snprintf(minid, sizeof minid, "%llu", (unsigned long long)(now - (uint64_t)(s->o.max_age * 1000)));
  snprintf(age, sizeof age, "%lld", (long long)(s->o.max_age + 0.5));
  argv[0] = s->set_key;
  lens[0] = strlen(s->set_key);
  int a = 1 + n;
  argv[a] = maxlen, lens[a++] = strlen(maxlen);
  argv[a] = minid, lens[a++] = strlen(minid);
  argv[a] = age, lens[a++] = strlen(age);
  const char *p = s->batch.data;
  for (int i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, p, 4), p += 4;
    argv[1 + i] = p, lens[1 + i] = u, p += u;
    argv[a] = p, lens[a++] = 1, p += 1;
    memcpy(&u, p, 4), p += 4;
    argv[a] = p, lens[a++] = u, p += u;
    argv[a] = p, lens[a++] = p[0] ? 32 : 0, p += 32;
    argv[a] = p, lens[a++] = strlen(p), p += 20;
    memcpy(&u, p, 4), p += 4;
    argv[a] = p, lens[a++] = u, p += u;
  }
  /* hiredis copies the command now: the batch can be reused at once. */
  cr_redis_req_t *rq = cr_redis_eval(s->redis, s->o.add_script, 1 + n, argc, argv, lens, on_added, s);
  free(argv);
  free(lens);
  if (rq) s->inflight = n;
  else count_dropped(s, (uint64_t)n, "redis unavailable");
  s->nlines = 0;
  cr_buf_reset(&s->batch, 256 * 1024);
}

static void on_timer(uv_timer_t *t) {
  cr_logstore_t *s = t->data;
  flush(s);
  uint64_t now = cr_wall_ms();
  if (s->dropped_since_warn && now - s->last_warn_ms >= WARN_EVERY_MS) {
    uint64_t n = s->dropped_since_warn;
    s->dropped_since_warn = 0;
    s->last_warn_ms = now;
    /* Logged from the timer, not from the sink: this line goes to the batch too. */
    cr_log(CR_LOG_WARN, NULL, NULL, "%llu log lines were not kept in Redis (%s); stdout has them",
           (unsigned long long)n, s->last_err[0] ? s->last_err : "?");
  }
}

cr_logstore_t *cr_logstore_new(uv_loop_t *loop, cr_redis_t *redis, const cr_logstore_opts_t *opts) {
  cr_logstore_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->loop = loop;
  s->redis = redis;
  s->o = *opts;
  snprintf(s->prefix, sizeof s->prefix, "%s", opts->prefix ? opts->prefix : "cr:");
  s->o.prefix = s->prefix;
  if (s->o.maxlen <= 0) s->o.maxlen = 10000;
  if (s->o.max_pending == 0) s->o.max_pending = 4u * 1024 * 1024;
  snprintf(s->set_key, sizeof s->set_key, "%slogs:streams", s->prefix);
  uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  uv_timer_start(&s->timer, on_timer, FLUSH_MS, FLUSH_MS);
  uv_unref((uv_handle_t *)&s->timer);
  return s;
}

static void on_timer_closed(uv_handle_t *h) {
  cr_logstore_t *s = h->data;
  cr_buf_free(&s->batch);
  s->timer_closed = 1;
  if (!s->inflight) free(s);
}

void cr_logstore_free(cr_logstore_t *s) {
  if (!s) return;
  flush(s);
  s->freeing = 1;
  uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

/* --- queries ------------------------------------------------------------------------------------ */

int cr_logstore_cursor_valid(const char *c) {
  const char *p = c;
  if (!c || !(*p >= '0' && *p <= '9')) return 0;
  while (*p >= '0' && *p <= '9') p++;
  if (*p++ != '-' || !(*p >= '0' && *p <= '9')) return 0;
  while (*p >= '0' && *p <= '9') p++;
  if (*p++ != ':' || !*p) return 0;
  return strlen(c) < 480;
}

typedef struct {
  cr_logstore_t *s;
  cr_logq_cb cb;
  void *data;
} query_t;

/* A stream key's name for clients: the function's name, "@platform", or "*" (after every key). */
static void key_name(const cr_logstore_t *s, const char *k, size_t kl, const char **name, size_t *nl) {
  size_t pl = strlen(s->prefix);
  if (kl == 1 && (unsigned char)k[0] == 0xff) {
    *name = "*", *nl = 1;
  } else if (kl > pl + 8 && memcmp(k + pl, "logs:fn:", 8) == 0) {
    *name = k + pl + 8, *nl = kl - pl - 8;
  } else {
    *name = "@platform", *nl = 9;
  }
}

static void on_query(void *data, redisReply *reply, const char *err) {
  query_t *q = data;
  cr_logq_result_t r;
  memset(&r, 0, sizeof r);
  if (err || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 || (reply->elements - 3) % 3) {
    q->cb(q->data, NULL, err ? err : reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "bad reply from Redis");
    free(q);
    return;
  }
  int n = (int)(reply->elements - 3) / 3;
  cr_logrow_t *rows = n ? calloc((size_t)n, sizeof *rows) : NULL;
  if (n && !rows) {
    q->cb(q->data, NULL, "out of memory");
    free(q);
    return;
  }
  for (int i = 0; i < n; i++) {
    redisReply *k = reply->element[3 + 3 * i], *id = reply->element[4 + 3 * i], *d = reply->element[5 + 3 * i];
    key_name(q->s, k->str ? k->str : "", k->len, &rows[i].stream, &rows[i].stream_len);
    rows[i].id = id->str ? id->str : "";
    rows[i].id_len = id->len;
    rows[i].line = d->str ? d->str : "";
    rows[i].line_len = d->len;
  }
  r.nrows = n;
  r.rows = rows;
  r.more = reply->element[0]->integer != 0;
  redisReply *cid = reply->element[1], *ck = reply->element[2];
  if (cid->str && cid->len) {
    const char *nm;
    size_t nl;
    key_name(q->s, ck->str ? ck->str : "", ck->len, &nm, &nl);
    snprintf(r.cursor, sizeof r.cursor, "%.*s:%.*s", (int)cid->len, cid->str, (int)nl, nm);
  }
  q->cb(q->data, &r, NULL);
  free(rows);
  free(q);
}

cr_redis_req_t *cr_logstore_query(cr_logstore_t *s, const cr_logq_t *lq, cr_logq_cb cb, void *data) {
  if (!s || !s->redis || !cr_redis_connected(s->redis) || s->o.query_script < 0) return NULL;
  char stream[400] = "", until[24] = "", since[24] = "", level[8], limit[16], cid[64] = "", ckey[400] = "";
  if (lq->function && strcmp(lq->function, "@platform") == 0) snprintf(stream, sizeof stream, "%slogs:platform", s->prefix);
  else if (lq->function) snprintf(stream, sizeof stream, "%slogs:fn:%s", s->prefix, lq->function);
  if (lq->until_ms > 0) snprintf(until, sizeof until, "%lld", lq->until_ms);
  if (lq->since_ms > 0) snprintf(since, sizeof since, "%lld", lq->since_ms);
  snprintf(level, sizeof level, "%d", lq->level);
  snprintf(limit, sizeof limit, "%d", lq->limit);
  if (lq->cursor && cr_logstore_cursor_valid(lq->cursor)) {
    const char *colon = strchr(lq->cursor, ':');
    snprintf(cid, sizeof cid, "%.*s", (int)(colon - lq->cursor), lq->cursor);
    const char *nm = colon + 1;
    if (strcmp(nm, "*") == 0) snprintf(ckey, sizeof ckey, "\xff");
    else if (strcmp(nm, "@platform") == 0) snprintf(ckey, sizeof ckey, "%slogs:platform", s->prefix);
    else snprintf(ckey, sizeof ckey, "%slogs:fn:%s", s->prefix, nm);
  }
  query_t *q = malloc(sizeof *q);
  if (!q) return NULL;
  q->s = s;
  q->cb = cb;
  q->data = data;
  const char *argv[] = {s->set_key, stream, lq->asc ? "asc" : "desc", until, since, level,
                        lq->reqid ? lq->reqid : "", lq->text ? lq->text : "", lq->trace ? lq->trace : "",
                        limit, cid, ckey};
  size_t lens[12];
  for (int i = 0; i < 12; i++) lens[i] = strlen(argv[i]);
  cr_redis_req_t *rq = cr_redis_eval(s->redis, s->o.query_script, 1, 12, argv, lens, on_query, q);
  if (!rq) free(q);
  return rq;
}
