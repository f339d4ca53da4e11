/* adminlogs.c - GET /_/api/logs and /_/api/logs/tail: the logs kept in Redis
 * (logstore.h), searched and followed (adminlogs.h). */
#include "adminlogs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "clock.h"
#include "config.h"
#include "jsontext.h"
#include "log.h"
#include "url.h"

#define TAIL_POLL_MS 250
#define TAIL_HEARTBEAT_MS 15000
#define TAIL_MAX 16 /* per worker */

/* The query's parameters, decoded (each at most 512 bytes). */
typedef struct {
  cr_buf_t function, level, since, until, reqid, text, trace, limit, cursor;
} params_t;

static void params_free(params_t *p) {
  cr_buf_t *all[] = {&p->function, &p->level, &p->since, &p->until, &p->reqid, &p->text, &p->trace, &p->limit, &p->cursor};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) cr_buf_free(all[i]);
}

static void params_parse(const char *q, size_t n, params_t *p) {
  static const struct {
    const char *name;
    size_t off;
  } names[] = {{"function", offsetof(params_t, function)}, {"level", offsetof(params_t, level)},
               {"since", offsetof(params_t, since)},       {"until", offsetof(params_t, until)},
               {"requestId", offsetof(params_t, reqid)},   {"q", offsetof(params_t, text)},
               {"trace", offsetof(params_t, trace)},       {"limit", offsetof(params_t, limit)},
               {"cursor", offsetof(params_t, cursor)}};
  const char *e = q + n;
  while (q < e) {
    const char *amp = memchr(q, '&', (size_t)(e - q)), *pe = amp ? amp : e;
    const char *eq = memchr(q, '=', (size_t)(pe - q));
    if (eq) {
      for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t nl = strlen(names[i].name);
        if ((size_t)(eq - q) == nl && memcmp(q, names[i].name, nl) == 0 && pe - eq - 1 <= 1536) {
          cr_buf_t *b = (cr_buf_t *)((char *)p + names[i].off);
          b->len = 0;
          cr_url_decode(eq + 1, (size_t)(pe - eq - 1), 1, b);
        }
      }
    }
    q = pe + 1;
  }
  cr_buf_t *all[] = {&p->function, &p->level, &p->since, &p->until, &p->reqid, &p->text, &p->trace, &p->limit, &p->cursor};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) cr_buf_putc(all[i], '\0'), all[i]->len--;
}

static const char *str(const cr_buf_t *b) { return b->len ? b->data : NULL; }

/* since/until: ms since the epoch, or a duration ago ("10m", "2h", "30s", "7d"). */
static int parse_time(const char *v, long long *out) {
  if (!v) return 0;
  char *end;
  long long n = strtoll(v, &end, 10);
  if (*end == '\0' && end != v && n >= 0) {
    *out = n;
    return 0;
  }
  double s;
  if (cr_parse_age(v, &s)) return -1;
  long long now = (long long)cr_wall_ms();
  *out = now - (long long)(s * 1000);
  return 0;
}

/* Fills q from p, or writes why not into err. */
static int make_query(const params_t *p, cr_logq_t *q, int asc, char *err, size_t errlen) {
  memset(q, 0, sizeof *q);
  q->asc = asc;
  q->function = str(&p->function);
  if (q->function && strlen(q->function) > 256) {
    snprintf(err, errlen, "function: too long");
    return -1;
  }
  if (p->level.len) {
    cr_log_level_t l;
    if (cr_log_level_parse(p->level.data, &l)) {
      snprintf(err, errlen, "level: expected debug, info, warn or error");
      return -1;
    }
    q->level = (int)l;
  }
  if (parse_time(str(&p->since), &q->since_ms) || parse_time(str(&p->until), &q->until_ms)) {
    snprintf(err, errlen, "since and until: ms since the epoch, or a time ago like 10m, 2h, 7d");
    return -1;
  }
  q->reqid = str(&p->reqid);
  q->text = str(&p->text);
  q->trace = str(&p->trace);
  q->limit = asc ? 200 : 100;
  if (p->limit.len) {
    char *end;
    long l = strtol(p->limit.data, &end, 10);
    if (*end || l < 1 || l > 1000) {
      snprintf(err, errlen, "limit: 1 to 1000");
      return -1;
    }
    q->limit = (int)l;
  }
  q->cursor = str(&p->cursor);
  if (q->cursor && !cr_logstore_cursor_valid(q->cursor)) {
    snprintf(err, errlen, "cursor: not one this API gave");
    return -1;
  }
  return 0;
}

static uint64_t dropped_total(const cr_logs_api_t *a) {
  uint64_t n = 0;
  for (int i = 0; a->shm && i < a->shm->nworkers; i++) n += atomic_load(&a->shm->workers[i].log_dropped);
  return n;
}

static int need_store(const cr_logs_api_t *a, cr_http_req_t *req) {
  if (a->logstore) return 0;
  cr_http_respond_error(req, 503, "logs are kept in Redis: this server runs without it (--redis none)");
  return -1;
}

/* --- GET /_/api/logs ---------------------------------------------------------------------------- */

typedef struct {
  cr_logs_api_t api;
  cr_http_req_t *req;
} query_wait_t;

static void on_logs(void *data, const cr_logq_result_t *r, const char *err) {
  query_wait_t *w = data;
  cr_http_req_t *req = w->req;
  cr_buf_t b = CR_BUF_INIT;
  if (!r) {
    char msg[200];
    snprintf(msg, sizeof msg, "redis: %s", err ? err : "no answer");
    cr_http_respond_error(req, 503, msg);
  } else {
    cr_buf_append_str(&b, "{\"logs\":[");
    for (int i = 0; i < r->nrows; i++) {
      const cr_logrow_t *row = &r->rows[i];
      if (i) cr_buf_putc(&b, ',');
      cr_buf_append_str(&b, "{\"id\":");
      cr_json_escape(&b, row->id, row->id_len);
      cr_buf_append_str(&b, ",\"stream\":");
      cr_json_escape(&b, row->stream, row->stream_len);
      cr_buf_append_str(&b, ",\"line\":");
      cr_buf_append(&b, row->line, row->line_len);
      cr_buf_putc(&b, '}');
    }
    cr_buf_append_str(&b, "],\"next\":");
    if (r->more && r->cursor[0]) cr_json_escape(&b, r->cursor, strlen(r->cursor));
    else cr_buf_append_str(&b, "null");
    cr_buf_printf(&b, ",\"dropped\":%llu}", (unsigned long long)dropped_total(&w->api));
    cr_http_respond_start(req, 200);
    cr_http_respond_header(req, "Cache-Control", 13, "no-store", 8);
    cr_http_respond_finish(req, "application/json", b.data ? b.data : "", b.len);
  }
  cr_buf_free(&b);
  free(w);
}

void cr_admin_logs(const cr_logs_api_t *a, cr_http_req_t *req) {
  if (need_store(a, req)) return;
  params_t p;
  memset(&p, 0, sizeof p);
  params_parse(req->query, req->query_len, &p);
  cr_logq_t q;
  char err[200];
  if (make_query(&p, &q, 0, err, sizeof err)) {
    cr_http_respond_error(req, 400, err);
    params_free(&p);
    return;
  }
  query_wait_t *w = malloc(sizeof *w);
  if (!w) {
    cr_http_respond_error(req, 503, "server out of memory");
    params_free(&p);
    return;
  }
  w->api = *a;
  w->req = req;
  if (!cr_logstore_query(a->logstore, &q, on_logs, w)) {
    free(w);
    cr_http_respond_error(req, 503, "redis unavailable");
  }
  params_free(&p);
}

/* --- GET /_/api/logs/tail ----------------------------------------------------------------------- */

typedef struct {
  cr_logs_api_t api;
  const cr_logs_api_t *a; /* &api */
  cr_http_req_t *req;
  params_t p;
  cr_logq_t q;
  char cursor[512];
  uv_timer_t timer;
  cr_redis_req_t *inflight;
  uint64_t last_write_ms;
  int ended;
} tail_t;

static int ntails;

static void on_tail_closed(uv_handle_t *h) {
  tail_t *t = h->data;
  params_free(&t->p);
  free(t);
}

static void tail_end(tail_t *t) {
  if (t->ended) return;
  t->ended = 1;
  ntails--;
  if (t->inflight) cr_redis_cancel(t->inflight);
  t->inflight = NULL;
  uv_timer_stop(&t->timer);
  uv_close((uv_handle_t *)&t->timer, on_tail_closed);
  cr_http_stream_end(t->req);
}

static void on_gone(void *data) { tail_end(data); }

static void tail_write(tail_t *t, const char *p, size_t n) {
  if (cr_http_stream_write(t->req, p, n)) {
    tail_end(t); /* a client this slow is not following */
    return;
  }
  t->last_write_ms = uv_now(t->a->loop);
}

static void on_tail_rows(void *data, const cr_logq_result_t *r, const char *err) {
  (void)err;
  tail_t *t = data;
  t->inflight = NULL;
  if (!r) return; /* Redis is away: the next poll asks again, from the same place */
  cr_buf_t b = CR_BUF_INIT;
  for (int i = 0; i < r->nrows; i++) {
    const cr_logrow_t *row = &r->rows[i];
    cr_buf_append_str(&b, "id: ");
    cr_buf_append(&b, row->id, row->id_len);
    cr_buf_putc(&b, ':');
    cr_buf_append(&b, row->stream, row->stream_len);
    cr_buf_append_str(&b, "\ndata: ");
    cr_buf_append(&b, row->line, row->line_len);
    cr_buf_append_str(&b, "\n\n");
  }
  if (r->cursor[0]) snprintf(t->cursor, sizeof t->cursor, "%s", r->cursor);
  if (b.len) tail_write(t, b.data, b.len);
  cr_buf_free(&b);
}

static void on_tail_timer(uv_timer_t *h) {
  tail_t *t = h->data;
  if (t->ended) return;
  if (uv_now(t->a->loop) - t->last_write_ms >= TAIL_HEARTBEAT_MS) {
    tail_write(t, ": heartbeat\n\n", 13);
    if (t->ended) return;
  }
  if (t->inflight) return;
  t->q.cursor = t->cursor[0] ? t->cursor : NULL;
  t->inflight = cr_logstore_query(t->a->logstore, &t->q, on_tail_rows, t);
}

void cr_admin_logs_tail(const cr_logs_api_t *a, cr_http_req_t *req) {
  if (need_store(a, req)) return;
  if (req->head) {
    /* HEAD: what a GET would start with, and no stream */
    cr_http_respond_start(req, 200);
    cr_http_respond_header(req, "Cache-Control", 13, "no-store", 8);
    cr_http_respond_finish(req, "text/event-stream", "", 0);
    return;
  }
  if (!a->loop) {
    cr_http_respond_error(req, 503, "no loop");
    return;
  }
  tail_t *t = calloc(1, sizeof *t);
  if (!t) {
    cr_http_respond_error(req, 503, "server out of memory");
    return;
  }
  params_parse(req->query, req->query_len, &t->p);
  char err[200];
  if (make_query(&t->p, &t->q, 1, err, sizeof err)) {
    cr_http_respond_error(req, 400, err);
    params_free(&t->p);
    free(t);
    return;
  }
  if (ntails >= TAIL_MAX) {
    cr_http_respond_error(req, 503, "too many log tails on this worker (16): try again later");
    params_free(&t->p);
    free(t);
    return;
  }
  /* A client that lost the stream names the last line it saw (SSE's Last-Event-ID). */
  const cr_http_header_t *last = cr_http_req_header(req, "last-event-id", 13);
  if (last && last->value_len < sizeof t->cursor) {
    char c[512];
    memcpy(c, last->value, last->value_len);
    c[last->value_len] = '\0';
    if (cr_logstore_cursor_valid(c)) snprintf(t->cursor, sizeof t->cursor, "%s", c);
  } else if (t->q.cursor) {
    snprintf(t->cursor, sizeof t->cursor, "%s", t->q.cursor);
  }
  t->api = *a;
  t->a = &t->api;
  t->req = req;
  ntails++;
  uv_timer_init(a->loop, &t->timer);
  t->timer.data = t;
  t->last_write_ms = uv_now(a->loop);
  cr_http_respond_start(req, 200);
  cr_http_respond_header(req, "Cache-Control", 13, "no-store", 8);
  cr_http_stream_start(req, "text/event-stream", on_gone, t);
  if (t->ended) return;
  tail_write(t, "retry: 1000\n\n", 13);
  if (t->ended) return;
  uv_timer_start(&t->timer, on_tail_timer, 0, TAIL_POLL_MS);
}
