/* async.c - asynchronous invocations (async.h).
 *
 * One consumer per worker: a timer polls (XREADGROUP >, or every second a
 * claim round) with one request at a time; each entry read becomes a run_t,
 * one fncall; its end is one inv_done script call, after which the run is
 * freed. Requests in flight keep `a` alive until the worker's last loop run
 * (cr_async_free comes after it). */
#include "async.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "clock.h"
#include "jsontext.h"
#include "log.h"
#include "modules.h"

#define POLL_MS 20
#define CLAIM_EVERY_NS 1000000000ull
#define GROUP_RETRY_NS 5000000000ull
#define GROUP_WAIT_NS 250000000ull
#define MAX_RESULT (256u * 1024)
#define MAX_BACKOFF_MS 60000

struct cr_async_s {
  uv_loop_t *loop;
  cr_redis_t *redis;
  cr_fncalls_t *fc;
  cr_registry_t *reg;
  cr_async_opts_t opts;
  char prefix[64];
  char consumer[24];
  char *skey, *dkey, *qset;
  int send_script, done_script;
  uv_timer_t timer;
  int pending;          /* a read or claim request in flight */
  int group_ok;
  uint64_t group_retry_ns, next_claim_ns;
  int inflight;         /* runs: calls and their inv_done */
  struct run_s *runs;   /* every run, for stop */
  int stopped;
  unsigned id_base;
  unsigned long long nids;
};

typedef struct run_s {
  cr_async_t *a;
  struct run_s *next, **prev;
  cr_fncall_t *call;    /* while it runs */
  char entry[48];       /* the stream entry id */
  char id[64];          /* the invocation id */
  int attempt;
  char parent[CR_REQID_MAX + 1];
  char trace[CR_TRACE_LEN + 1]; /* the sender's traceparent, or "" */
  char *fn;
  char *event;
  size_t elen;
} run_t;

struct cr_async_send_s {
  cr_async_t *a;
  cr_async_sent_cb cb;
  void *data;
  int cancelled;
  int refused;          /* not sent: answered from the timer */
  char err[64];
  char id[64];
  uv_timer_t later;
};

static void on_tick(uv_timer_t *t);

static char *join(const char *a, const char *b, const char *c) {
  size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
  char *k = malloc(n);
  if (k) snprintf(k, n, "%s%s%s", a, b, c);
  return k;
}

cr_async_t *cr_async_new(uv_loop_t *loop, cr_redis_t *redis, cr_fncalls_t *fc, cr_registry_t *reg,
                         const cr_async_opts_t *opts) {
  cr_async_t *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  a->loop = loop;
  a->redis = redis;
  a->fc = fc;
  a->reg = reg;
  a->opts = *opts;
  if (a->opts.retention <= 0) a->opts.retention = 86400;
  if (a->opts.concurrency <= 0) a->opts.concurrency = 16;
  if (a->opts.queue_max_depth <= 0) a->opts.queue_max_depth = 1000000;
  snprintf(a->prefix, sizeof a->prefix, "%s", opts->prefix ? opts->prefix : "cr:");
  a->opts.prefix = a->prefix;
  snprintf(a->consumer, sizeof a->consumer, "w%d", opts->worker);
  a->skey = join(a->prefix, "{q:" CR_ASYNC_QUEUE "}:s", "");
  a->dkey = join(a->prefix, "{q:" CR_ASYNC_QUEUE "}:d", "");
  a->qset = join(a->prefix, "queues", "");
  if (!a->skey || !a->dkey || !a->qset) {
    free(a->skey);
    free(a->dkey);
    free(a->qset);
    free(a);
    return NULL;
  }
  a->send_script = a->done_script = -1;
  for (int i = 0; i < cr_stdlib_nscripts; i++) {
    if (strcmp(cr_stdlib_scripts[i].name, "inv_send") == 0) a->send_script = i;
    if (strcmp(cr_stdlib_scripts[i].name, "inv_done") == 0) a->done_script = i;
  }
  a->id_base = (unsigned)(cr_wall_ms() * 2654435761u) ^ (unsigned)uv_os_getpid() ^ (unsigned)opts->worker << 24;
  uv_timer_init(loop, &a->timer);
  a->timer.data = a;
  return a;
}

void cr_async_start(cr_async_t *a) {
  if (!a->redis || a->stopped) return;
  uv_timer_start(&a->timer, on_tick, POLL_MS, POLL_MS);
  uv_unref((uv_handle_t *)&a->timer);
}

static void run_free(run_t *r) {
  if (r->prev) {
    *r->prev = r->next;
    if (r->next) r->next->prev = r->prev;
  }
  free(r->fn);
  free(r->event);
  free(r);
}

void cr_async_stop(cr_async_t *a) {
  if (!a || a->stopped) return;
  a->stopped = 1;
  a->redis = NULL;
  uv_close((uv_handle_t *)&a->timer, NULL);
  /* Runs still calling: their result is dropped, their entries stay
   * pending and are claimed again. Runs waiting on inv_done are freed by
   * its callback ("redis unavailable" when the connection goes). */
  for (run_t *r = a->runs, *next; r; r = next) {
    next = r->next;
    if (r->call) {
      cr_fncall_cancel(r->call);
      a->inflight--;
      run_free(r);
    }
  }
}

void cr_async_free(cr_async_t *a) {
  if (!a) return;
  while (a->runs) run_free(a->runs);
  free(a->skey);
  free(a->dkey);
  free(a->qset);
  free(a);
}

/* --- sending ------------------------------------------------------------------------------------- */

static void on_send_closed(uv_handle_t *h) { free(h->data); }

static void on_send_later(uv_timer_t *t) {
  cr_async_send_t *s = t->data;
  if (!s->cancelled) s->cb(s->data, s->err, NULL);
  uv_close((uv_handle_t *)t, on_send_closed);
}

/* Answers a send that did not go to Redis from the loop, not from inside. */
static cr_async_send_t *refuse_send(cr_async_send_t *s, const char *err) {
  snprintf(s->err, sizeof s->err, "%s", err);
  s->refused = 1;
  uv_timer_init(s->a->loop, &s->later);
  s->later.data = s;
  uv_timer_start(&s->later, on_send_later, 0, 0);
  return s;
}

static void on_sent(void *data, redisReply *reply, const char *err) {
  cr_async_send_t *s = data;
  if (!s->cancelled) {
    if (err) s->cb(s->data, err, NULL);
    else if (reply->type == REDIS_REPLY_ERROR) {
      char e[300];
      snprintf(e, sizeof e, "redis error: %s", reply->str);
      s->cb(s->data, e, NULL);
    } else if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1) {
      s->cb(s->data, NULL, s->id);
    } else {
      s->cb(s->data, "queue full", NULL);
    }
  }
  free(s);
}

cr_async_send_t *cr_async_send(cr_async_t *a, const char *name, size_t nlen, const char *event, size_t elen,
                               double delay, const char *parent, const char *trace, cr_async_sent_cb cb,
                               void *data) {
  cr_async_send_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->a = a;
  s->cb = cb;
  s->data = data;
  char fname[300];
  if (elen > CR_ASYNC_MAX_EVENT) return refuse_send(s, "event too large");
  if (nlen >= sizeof fname || memchr(name, '\n', nlen)) return refuse_send(s, "function not found");
  memcpy(fname, name, nlen);
  fname[nlen] = '\0';
  cr_fn_t *fn = fname[0] != '_' ? cr_registry_find(a->reg, fname) : NULL;
  if (!fn || fn->removed || fn->platform) return refuse_send(s, "function not found");
  if (!a->redis || a->stopped || a->send_script < 0 || !cr_redis_connected(a->redis))
    return refuse_send(s, "redis unavailable");
  if (!parent || !cr_reqid_valid(parent, strlen(parent))) parent = "-";
  snprintf(s->id, sizeof s->id, "%08x-a%d-%llx-%llx", a->id_base, a->opts.worker, (unsigned long long)cr_wall_ms(),
           ++a->nids);
  char meta[600], status[200], now[24], depth[24], delay_ms[24], retention[24];
  /* The caller's traceparent rides with its request id in the meta's third
   * word ("<parent>,<traceparent>"), so the callee continues the trace. */
  if (trace && cr_trace_parse(trace, strlen(trace), NULL, NULL))
    snprintf(meta, sizeof meta, "%s 1 %s,%s %s", s->id, parent, trace, fname);
  else
    snprintf(meta, sizeof meta, "%s 1 %s %s", s->id, parent, fname);
  snprintf(status, sizeof status, "%s{inv:%s}", a->prefix, s->id);
  snprintf(now, sizeof now, "%llu", (unsigned long long)cr_wall_ms());
  snprintf(depth, sizeof depth, "%ld", a->opts.queue_max_depth);
  snprintf(delay_ms, sizeof delay_ms, "%lld", (long long)(delay * 1000 + 0.5));
  snprintf(retention, sizeof retention, "%lld", (long long)(a->opts.retention * 1000));
  const char *argv[] = {a->skey, a->dkey, status,    a->qset, now,           depth, delay_ms,
                        event ? event : "", meta, fname, retention, CR_ASYNC_QUEUE, parent};
  size_t lens[13];
  for (int i = 0; i < 13; i++) lens[i] = i == 7 ? elen : strlen(argv[i]); /* the event is not NUL-terminated */
  if (!cr_redis_eval(a->redis, a->send_script, 4, 13, argv, lens, on_sent, s)) return refuse_send(s, "redis unavailable");
  return s;
}

void cr_async_send_cancel(cr_async_send_t *s) {
  if (s) s->cancelled = 1;
}

/* --- running ------------------------------------------------------------------------------------ */

static int find_field(const redisReply *fields, const char *name, const char **val, size_t *len) {
  for (size_t i = 0; fields && fields->type == REDIS_REPLY_ARRAY && i + 1 < fields->elements; i += 2) {
    const redisReply *k = fields->element[i], *v = fields->element[i + 1];
    if (k->type == REDIS_REPLY_STRING && strlen(name) == k->len && memcmp(k->str, name, k->len) == 0 &&
        v->type == REDIS_REPLY_STRING) {
      *val = v->str;
      *len = v->len;
      return 1;
    }
  }
  return 0;
}

static void on_done(void *data, redisReply *reply, const char *err) {
  run_t *r = data;
  cr_async_t *a = r->a;
  if (err || (reply && reply->type == REDIS_REPLY_ERROR))
    cr_log(CR_LOG_WARN, r->fn, NULL, "async invocation %s: its end could not be recorded (%s): it will run again",
           r->id, err ? err : reply->str);
  a->inflight--;
  run_free(r);
  if (!a->stopped) uv_timer_start(&a->timer, on_tick, 0, POLL_MS);
}

/* The delayed-set member of the next attempt (q_promote's format). */
static int member(cr_buf_t *b, const run_t *r, int attempt) {
  char head[600];
  int n = snprintf(head, sizeof head, "%s %d %s%s%s %s\n%c\n", r->id, attempt, r->parent, r->trace[0] ? "," : "",
                   r->trace, r->fn, r->elen ? 'j' : 's');
  return cr_buf_append(b, head, (size_t)n) || cr_buf_append(b, r->event ? r->event : "", r->elen);
}

/* The destination's message. */
static int destination_msg(cr_buf_t *b, const run_t *r, int ok, int attempts, const char *text, size_t len) {
  int rc = cr_buf_append_str(b, "{\"invocationId\":") || cr_json_escape(b, r->id, strlen(r->id)) ||
           cr_buf_append_str(b, ",\"function\":") || cr_json_escape(b, r->fn, strlen(r->fn)) ||
           cr_buf_append_str(b, ok ? ",\"status\":\"succeeded\",\"attempts\":" : ",\"status\":\"failed\",\"attempts\":") ||
           cr_buf_append_i64(b, attempts);
  if (ok) rc = rc || cr_buf_append_str(b, ",\"result\":") || (len ? cr_buf_append(b, text, len) : cr_buf_append_str(b, "null"));
  else rc = rc || cr_buf_append_str(b, ",\"error\":") || cr_json_escape(b, text, len);
  rc = rc || cr_buf_append_str(b, ",\"event\":") ||
       (r->elen ? cr_buf_append(b, r->event, r->elen) : cr_buf_append_str(b, "null")) || cr_buf_append_str(b, "}");
  return rc;
}

/* Ends one attempt: mode ok / fail / retry / requeue (inv_done.lua). */
static void end_attempt(run_t *r, const char *mode, int attempts, const char *text, size_t len, uint64_t due_ms,
                        int next_attempt, const char *dest) {
  cr_async_t *a = r->a;
  if (!a->redis || a->stopped) {
    a->inflight--;
    run_free(r);
    return;
  }
  cr_buf_t mem = CR_BUF_INIT, msg = CR_BUF_INIT;
  char status[200], dkey[300], now[24], att[16], retention[24], due[24], depth[24];
  snprintf(status, sizeof status, "%s{inv:%s}", a->prefix, r->id);
  if (dest) snprintf(dkey, sizeof dkey, "%s{q:%s}:s", a->prefix, dest);
  else snprintf(dkey, sizeof dkey, "%s", a->skey);
  snprintf(now, sizeof now, "%llu", (unsigned long long)cr_wall_ms());
  snprintf(att, sizeof att, "%d", attempts);
  snprintf(retention, sizeof retention, "%lld", (long long)(a->opts.retention * 1000));
  snprintf(due, sizeof due, "%llu", (unsigned long long)due_ms);
  snprintf(depth, sizeof depth, "%ld", a->opts.queue_max_depth);
  int bad = 0;
  if (next_attempt) bad |= member(&mem, r, next_attempt);
  int ok = strcmp(mode, "ok") == 0;
  if (dest) bad |= destination_msg(&msg, r, ok, attempts, text, len);
  /* A result too big for the status is kept as null, and said so. */
  const char *stored = text;
  size_t stored_len = len;
  if (ok && len > MAX_RESULT) {
    stored = "null";
    stored_len = 4;
  } else if (ok && len == 0) {
    stored = "null";
    stored_len = 4;
  }
  const char *argv[] = {a->skey, a->dkey, status, dkey, a->qset, CR_ASYNC_QUEUE, r->entry, mode, now, att,
                        stored, retention, due, mem.data ? mem.data : "", dest ? dest : "",
                        msg.data ? msg.data : "", depth};
  size_t lens[17];
  /* The result, the member and the message are not NUL-terminated. */
  for (int i = 0; i < 17; i++) lens[i] = i == 10 ? stored_len : i == 13 ? mem.len : i == 15 ? msg.len : strlen(argv[i]);
  if (bad || !cr_redis_eval(a->redis, a->done_script, 5, 17, argv, lens, on_done, r)) {
    cr_log(CR_LOG_WARN, r->fn, NULL, "async invocation %s: its end could not be recorded: it will run again", r->id);
    a->inflight--;
    run_free(r);
  }
  cr_buf_free(&mem);
  cr_buf_free(&msg);
}

/* The callee's settings (its current version), or NULL. */
static const cr_settings_t *callee_settings(cr_async_t *a, const char *name) {
  cr_fn_t *fn = cr_registry_find(a->reg, name);
  return fn && fn->current ? &fn->current->settings : NULL;
}

static void fail_or_retry(run_t *r, const char *err, size_t errlen) {
  const cr_settings_t *s = callee_settings(r->a, r->fn);
  int retries = s ? s->retries : 0;
  if (r->attempt <= retries) {
    uint64_t backoff = 1000ull << (r->attempt - 1 < 6 ? r->attempt - 1 : 6);
    if (backoff > MAX_BACKOFF_MS) backoff = MAX_BACKOFF_MS;
    end_attempt(r, "retry", r->attempt, err, errlen, cr_wall_ms() + backoff, r->attempt + 1, NULL);
  } else {
    end_attempt(r, "fail", r->attempt, err, errlen, 0, 0, s ? s->on_failure : NULL);
  }
}

static void on_call_done(void *data, const cr_fncall_result_t *res) {
  run_t *r = data;
  r->call = NULL;
  if (res->status == CR_FNCALL_OK) {
    const cr_settings_t *s = callee_settings(r->a, r->fn);
    end_attempt(r, "ok", r->attempt, res->result, res->result_len, 0, 0, s ? s->on_success : NULL);
  } else if (res->error_type && (strcmp(res->error_type, "throttled") == 0 || strcmp(res->error_type, "stopping") == 0)) {
    /* Did not run: not an attempt. */
    end_attempt(r, "requeue", r->attempt - 1, "", 0, cr_wall_ms() + 1000, r->attempt, NULL);
  } else {
    fail_or_retry(r, res->err, strlen(res->err));
  }
}

/* Marks the invocation running (best effort: the status is for people). */
static void on_status(void *data, redisReply *reply, const char *err) {
  (void)data;
  (void)reply;
  (void)err;
}

/* One entry read (deliveries: how many times it was handed out before). */
static void take(cr_async_t *a, const redisReply *e, long long deliveries) {
  if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING ||
      e->element[0]->len >= 48)
    return;
  run_t *r = calloc(1, sizeof *r);
  if (!r) return; /* stays pending: claimed again later */
  r->a = a;
  memcpy(r->entry, e->element[0]->str, e->element[0]->len);
  const char *meta = NULL, *body = NULL;
  size_t mlen = 0, blen = 0;
  find_field(e->element[1], "id", &meta, &mlen);
  find_field(e->element[1], "body", &body, &blen);
  char m[700];
  int attempt = 0, off = 0;
  char parent[CR_REQID_MAX + CR_TRACE_LEN + 2];
  if (meta && mlen < sizeof m) {
    memcpy(m, meta, mlen);
    m[mlen] = '\0';
  } else {
    m[0] = '\0';
  }
  if (sscanf(m, "%63s %d %184s %n", r->id, &attempt, parent, &off) != 3 || off <= 0 || !m[off] || attempt < 1) {
    cr_log(CR_LOG_WARN, NULL, NULL, "async queue: entry %s is not an invocation: dropped", r->entry);
    r->fn = strdup("?");
    a->inflight++;
    r->prev = &a->runs;
    r->next = a->runs;
    if (a->runs) a->runs->prev = &r->next;
    a->runs = r;
    end_attempt(r, "fail", 0, "not an invocation", 17, 0, 0, NULL);
    return;
  }
  char *comma = strchr(parent, ',');
  if (comma) {
    *comma = '\0';
    if (cr_trace_parse(comma + 1, strlen(comma + 1), NULL, NULL)) snprintf(r->trace, sizeof r->trace, "%s", comma + 1);
  }
  snprintf(r->parent, sizeof r->parent, "%s", parent);
  r->attempt = attempt + (int)(deliveries > 0 ? deliveries : 0);
  r->fn = strdup(m + off);
  r->elen = blen;
  r->event = blen ? malloc(blen) : NULL;
  if (!r->fn || (blen && !r->event)) {
    free(r->fn);
    free(r->event);
    free(r);
    return;
  }
  if (blen) memcpy(r->event, body, blen);
  r->prev = &a->runs;
  r->next = a->runs;
  if (a->runs) a->runs->prev = &r->next;
  a->runs = r;
  a->inflight++;
  const cr_settings_t *s = callee_settings(a, r->fn);
  if (deliveries > 0 && s && r->attempt > s->retries + 1) {
    /* Its worker died running it, as many times as it may be tried. */
    end_attempt(r, "fail", r->attempt - 1, "the worker running it stopped", 29, 0, 0, s->on_failure);
    return;
  }
  char status[200], now[24], att[16];
  snprintf(status, sizeof status, "%s{inv:%s}", a->prefix, r->id);
  snprintf(now, sizeof now, "%llu", (unsigned long long)cr_wall_ms());
  snprintf(att, sizeof att, "%d", r->attempt);
  const char *hargv[] = {"HSET", status, "status", "running", "attempts", att, "startedAt", now};
  size_t hlens[8];
  for (int i = 0; i < 8; i++) hlens[i] = strlen(hargv[i]);
  cr_redis_call(a->redis, 8, hargv, hlens, on_status, NULL);
  cr_fncall_opts_t o = {.depth = 0, .deadline_ns = 0, .parent_reqid = strcmp(r->parent, "-") ? r->parent : NULL,
                        .async_id = r->id, .attempt = r->attempt, .traceparent = r->trace[0] ? r->trace : NULL};
  r->call = cr_fncall_start(a->fc, r->fn, strlen(r->fn), r->event, r->elen, &o, on_call_done, r);
  if (!r->call) {
    a->inflight--;
    run_free(r); /* stays pending: claimed again later */
  }
}

static int is_error(const redisReply *r, const char *code) {
  return r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, code, strlen(code)) == 0;
}

static void on_group(void *data, redisReply *reply, const char *err) {
  cr_async_t *a = data;
  a->pending = 0;
  if (!err && reply && (reply->type == REDIS_REPLY_STATUS || is_error(reply, "BUSYGROUP"))) a->group_ok = 1;
  else if (!err && reply && reply->type == REDIS_REPLY_ERROR && strstr(reply->str, "requires the key to exist")) {
    /* Nothing was ever sent: the first send makes the stream and the group. */
    a->group_retry_ns = cr_clock_ns() + GROUP_WAIT_NS;
  } else if (!err && reply && reply->type == REDIS_REPLY_ERROR) {
    cr_log(CR_LOG_ERROR, NULL, NULL, "async queue: cannot make its consumer group: %s", reply->str);
    a->group_retry_ns = cr_clock_ns() + GROUP_RETRY_NS;
  }
}

static void on_read(void *data, redisReply *reply, const char *err) {
  cr_async_t *a = data;
  a->pending = 0;
  if (err || a->stopped || !reply) return;
  if (is_error(reply, "NOGROUP")) {
    a->group_ok = 0;
    return;
  }
  if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 && reply->element[0]->type == REDIS_REPLY_ARRAY &&
      reply->element[0]->elements == 2) {
    const redisReply *entries = reply->element[0]->element[1];
    size_t n = entries->type == REDIS_REPLY_ARRAY ? entries->elements : 0;
    for (size_t i = 0; i < n; i++) take(a, entries->element[i], 0);
    if (n > 0 && a->inflight < a->opts.concurrency) uv_timer_start(&a->timer, on_tick, 0, POLL_MS);
  }
}

/* The claim round's second half: XCLAIM's entries, with the delivery
 * counts XPENDING gave (data: a counts array). */
typedef struct {
  cr_async_t *a;
  int n;
  char ids[16][48];
  long long counts[16];
} claim_t;

static void on_claimed(void *data, redisReply *reply, const char *err) {
  claim_t *c = data;
  cr_async_t *a = c->a;
  a->pending = 0;
  if (!err && !a->stopped && reply && reply->type == REDIS_REPLY_ARRAY) {
    for (size_t i = 0; i < reply->elements; i++) {
      const redisReply *e = reply->element[i];
      if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING) continue;
      long long count = 1;
      for (int k = 0; k < c->n; k++)
        if (strlen(c->ids[k]) == e->element[0]->len && memcmp(c->ids[k], e->element[0]->str, e->element[0]->len) == 0)
          count = c->counts[k];
      take(a, e, count);
    }
  }
  free(c);
}

/* Entries idle longer than this were handed to an invocation that ended
 * long ago: its worker died. */
static long long visibility_ms(cr_async_t *a) {
  double longest = 0;
  for (int i = 0; i < a->reg->nfns; i++) {
    const cr_fn_t *fn = a->reg->fns[i];
    if (!fn->platform && fn->current && fn->current->settings.timeout > longest) longest = fn->current->settings.timeout;
  }
  return (long long)(longest * 1000) + 10000;
}

static void on_pending(void *data, redisReply *reply, const char *err) {
  cr_async_t *a = data;
  a->pending = 0;
  if (err || a->stopped || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) return;
  claim_t *c = calloc(1, sizeof *c);
  if (!c) return;
  c->a = a;
  for (size_t i = 0; i < reply->elements && c->n < 16; i++) {
    const redisReply *p = reply->element[i];
    if (p->type != REDIS_REPLY_ARRAY || p->elements < 4 || p->element[0]->type != REDIS_REPLY_STRING ||
        p->element[0]->len >= 48 || p->element[3]->type != REDIS_REPLY_INTEGER)
      continue;
    memcpy(c->ids[c->n], p->element[0]->str, p->element[0]->len);
    c->counts[c->n++] = p->element[3]->integer;
  }
  if (c->n == 0 || !a->redis) {
    free(c);
    return;
  }
  char idle[24];
  snprintf(idle, sizeof idle, "%lld", visibility_ms(a));
  const char *argv[5 + 16];
  size_t lens[5 + 16];
  argv[0] = "XCLAIM";
  argv[1] = a->skey;
  argv[2] = CR_ASYNC_QUEUE;
  argv[3] = a->consumer;
  argv[4] = idle;
  for (int i = 0; i < c->n; i++) argv[5 + i] = c->ids[i];
  for (int i = 0; i < 5 + c->n; i++) lens[i] = strlen(argv[i]);
  if (cr_redis_call(a->redis, 5 + c->n, argv, lens, on_claimed, c)) a->pending = 1;
  else free(c);
}

static void step(cr_async_t *a) {
  if (a->stopped || !a->redis || a->pending || !cr_redis_connected(a->redis)) return;
  if (!a->group_ok) {
    if (cr_clock_ns() < a->group_retry_ns) return;
    /* Not MKSTREAM: a server nobody sends to leaves no key behind. */
    const char *argv[] = {"XGROUP", "CREATE", a->skey, CR_ASYNC_QUEUE, "0"};
    size_t lens[5];
    for (int i = 0; i < 5; i++) lens[i] = strlen(argv[i]);
    if (cr_redis_call(a->redis, 5, argv, lens, on_group, a)) a->pending = 1;
    return;
  }
  int room = a->opts.concurrency - a->inflight;
  if (room <= 0) return;
  uint64_t now = cr_clock_ns();
  if (now >= a->next_claim_ns) {
    a->next_claim_ns = now + CLAIM_EVERY_NS;
    char idle[24], count[16];
    snprintf(idle, sizeof idle, "%lld", visibility_ms(a));
    snprintf(count, sizeof count, "%d", room < 16 ? room : 16);
    const char *argv[] = {"XPENDING", a->skey, CR_ASYNC_QUEUE, "IDLE", idle, "-", "+", count};
    size_t lens[8];
    for (int i = 0; i < 8; i++) lens[i] = strlen(argv[i]);
    if (cr_redis_call(a->redis, 8, argv, lens, on_pending, a)) a->pending = 1;
    return;
  }
  char count[16];
  snprintf(count, sizeof count, "%d", room);
  const char *argv[] = {"XREADGROUP", "GROUP", CR_ASYNC_QUEUE, a->consumer, "COUNT", count, "STREAMS", a->skey, ">"};
  size_t lens[9];
  for (int i = 0; i < 9; i++) lens[i] = strlen(argv[i]);
  if (cr_redis_call(a->redis, 9, argv, lens, on_read, a)) a->pending = 1;
}

static void on_tick(uv_timer_t *t) { step(t->data); }

/* --- the status record ---------------------------------------------------------------------------- */

typedef struct {
  cr_async_status_cb cb;
  void *data;
  char id[CR_REQID_MAX + 1];
} status_req_t;

static const redisReply *hget(const redisReply *h, const char *name) {
  for (size_t i = 0; i + 1 < h->elements; i += 2)
    if (h->element[i]->type == REDIS_REPLY_STRING && strlen(name) == h->element[i]->len &&
        memcmp(h->element[i]->str, name, h->element[i]->len) == 0 && h->element[i + 1]->type == REDIS_REPLY_STRING)
      return h->element[i + 1];
  return NULL;
}

/* Is s[0..n) a plain decimal number (the scripts' times and counts)? */
static int digits(const char *s, size_t n) {
  if (n == 0 || n > 20) return 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9') return 0;
  return 1;
}

static void on_status_read(void *data, redisReply *reply, const char *err) {
  status_req_t *q = data;
  if (err || !reply || reply->type == REDIS_REPLY_ERROR) {
    q->cb(q->data, 503, err ? err : reply ? reply->str : "redis unavailable", 0);
    free(q);
    return;
  }
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
    q->cb(q->data, 404, NULL, 0);
    free(q);
    return;
  }
  cr_buf_t b = CR_BUF_INIT;
  cr_buf_append_str(&b, "{\"invocationId\":");
  cr_json_escape(&b, q->id, strlen(q->id));
  static const char *const strs[] = {"function", "status", "error", "parentRequestId", "destinationError"};
  static const char *const nums[] = {"attempts", "createdAt", "startedAt", "endedAt"};
  for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
    const redisReply *v = hget(reply, strs[i]);
    if (!v || (strcmp(strs[i], "parentRequestId") == 0 && v->len == 1 && v->str[0] == '-')) continue;
    cr_buf_append_str(&b, ",\"");
    cr_buf_append_str(&b, strs[i]);
    cr_buf_append_str(&b, "\":");
    cr_json_escape(&b, v->str, v->len);
  }
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
    const redisReply *v = hget(reply, nums[i]);
    if (!v || !digits(v->str, v->len)) continue;
    cr_buf_append_str(&b, ",\"");
    cr_buf_append_str(&b, nums[i]);
    cr_buf_append_str(&b, "\":");
    cr_buf_append(&b, v->str, v->len);
  }
  /* The result is the JSON text the callee's result was encoded to. */
  const redisReply *res = hget(reply, "result");
  if (res) {
    cr_buf_append_str(&b, ",\"result\":");
    cr_buf_append(&b, res->str, res->len);
  }
  cr_buf_putc(&b, '}');
  q->cb(q->data, 200, b.data, b.len);
  cr_buf_free(&b);
  free(q);
}

int cr_async_status(cr_async_t *a, const char *id, size_t len, cr_async_status_cb cb, void *data) {
  if (!cr_reqid_valid(id, len)) return 404;
  if (!a || !a->redis || a->stopped) return 503;
  status_req_t *q = calloc(1, sizeof *q);
  if (!q) return 503;
  q->cb = cb;
  q->data = data;
  memcpy(q->id, id, len);
  char key[300];
  snprintf(key, sizeof key, "%s{inv:%s}", a->prefix, q->id);
  const char *argv[] = {"HGETALL", key};
  size_t lens[] = {7, strlen(key)};
  if (!cr_redis_call(a->redis, 2, argv, lens, on_status_read, q)) {
    free(q);
    return 503;
  }
  return 0;
}
