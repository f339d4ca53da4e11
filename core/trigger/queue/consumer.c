/* consumer.c - reading streams, invoking batches, acknowledging, claiming.
 *
 * One consumer per (function, stream trigger): a queue, a bucket's events or
 * a namespace's changes, told apart by its source (batch.h), which also
 * filters the records (those left out are acknowledged at once, never
 * invoked) and builds the event. Its life: the group is made
 * once (XGROUP CREATE, BUSYGROUP is fine); then each poll tick, once it
 * holds one of the trigger's places (below), it either claims records whose
 * visibility ran out (q_claim, every claim interval) or reads new ones
 * (XREADGROUP >), one request at a time. The records fill `filling`, which
 * is submitted when full or `window` after its first record.
 *
 * Places: the trigger's `concurrency` bounds, across the workers, the
 * batches being read or filled and those invoked. A consumer takes a place
 * (cr_shm_trig_take, in the trigger's shared-memory entry) before it reads
 * or claims, keeps it while its batch fills (fill_place), hands it to the
 * call it submits, and the call gives it back when it ends; a read that
 * brought nothing gives it back at once. Without a place it reads nothing:
 * its claim round then only measures the lag and the oldest age (q_claim
 * with count 0). A worker that dies holding places has them taken back by
 * the master (cr_shm_reclaim). Without a meters entry (shared memory
 * missing, or the function's entries all taken) the bound is this worker's
 * own: its batches in flight plus the one being filled.
 *
 * A consumer is referenced by its pending Redis request and its calls in
 * flight (refs); removed (its function or trigger gone) it is marked dead,
 * does nothing more, and is freed when the last of them ends. */
#include "consumer.h"

#include <hiredis/hiredis.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "batch.h"
#include "clock.h"
#include "error.h"
#include "log.h"
#include "modules.h"

/* How often an idle queue is read. */
#define POLL_MS 20
/* How long a consumer whose group could not be made waits to try again. */
#define GROUP_RETRY_NS 5000000000ull
/* The longest last error kept for a record's dead letter. */
#define LAST_ERROR_MAX 512

typedef struct consumer_s consumer_t;

struct cr_consumers_s {
  uv_loop_t *loop;
  cr_redis_t *redis; /* NULL once stopped */
  cr_dispatch_t *d;
  cr_registry_t *reg;
  char prefix[64];
  char name[16];     /* the consumer name: "w<worker>" */
  int worker;
  cr_shm_t *shm;
  int claim_script;  /* q_claim's index in cr_stdlib_scripts */
  unsigned id_base;  /* request ids: per process, plus a counter */
  unsigned long long ncalls;
  uv_timer_t timer;
  int stopped;
  consumer_t *list;
};

struct consumer_s {
  cr_consumers_t *set;
  cr_fn_t *fn;
  cr_qsource_t src; /* its strings owned */
  const char *kind; /* "queue", "storage" or "kv": the trigger's and the logs' word */
  char *key;        /* its stream */
  char *dlq;        /* its dead-letter queue's name */
  char *dlq_key;    /* and stream */
  char *book_key;   /* its failed deliveries' bookkeeping (a hash; see record_failures) */
  cr_stream_opts_t opts;
  cr_shm_trig_t *meters; /* NULL: not metered (no shared memory, or its function's entries are taken) */
  int dead;      /* removed: freed once refs is 0 */
  int refs;      /* the pending request (at most one) and calls in flight */
  int group_ok;  /* the group exists */
  uint64_t group_retry_ns; /* making it failed: not again before this */
  int pending;   /* a request is out */
  int inflight;  /* calls submitted and not ended: each holds a place */
  int fill_place; /* holds a place for the read or claim out and the batch being filled */
  cr_qbatch_t *filling;
  uint64_t fill_since_ns;
  uint64_t recv_ms[CR_MAX_BATCH]; /* when each record of filling was received (wall clock) */
  uint64_t next_claim_ns;
  char cursor[48]; /* XAUTOCLAIM's */
  consumer_t *next;
};

/* What a call keeps (in call->data). */
typedef struct {
  consumer_t *c;
  cr_qbatch_t *b;
  int n;      /* its records (b is freed before the report line is written) */
  int failed; /* records the result marked failed */
  uint64_t *recv_ms; /* malloc'd, n: when each record was received; NULL when out of memory */
} qcall_t;

static qcall_t *qcall(cr_call_t *call) { return (qcall_t *)call->data.bytes; }

static void step(consumer_t *c);
static void on_tick(uv_timer_t *t);

/* --- lifetime ----------------------------------------------------------------------------------- */

static void consumer_free(consumer_t *c) {
  cr_qbatch_free(c->filling);
  free((char *)c->src.name);
  free((char *)c->src.prefix);
  free((char *)c->src.suffix);
  free(c->key);
  free(c->dlq);
  free(c->dlq_key);
  free(c->book_key);
  free(c);
}

/* Drops a reference; a dead consumer goes with its last one. */
static void unref(consumer_t *c) {
  if (--c->refs > 0 || !c->dead) return;
  for (consumer_t **l = &c->set->list; *l; l = &(*l)->next) {
    if (*l == c) {
      *l = c->next;
      break;
    }
  }
  consumer_free(c);
}

/* prefix + a + b + c, malloc'd. */
static char *join(const char *prefix, const char *a, const char *b, const char *c) {
  size_t n = strlen(prefix) + strlen(a) + strlen(b) + strlen(c) + 1;
  char *k = malloc(n);
  if (k) snprintf(k, n, "%s%s%s%s", prefix, a, b, c);
  return k;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static const char *const kind_words[] = {"queue", "storage", "kv"};

/* The stream each kind reads (the keys crescent.queue, crescent.storage and
 * crescent.kv write) and its dead letters' queue: NAME.dlq for a queue,
 * storage.BUCKET.dlq and kv.NAMESPACE.dlq for the others. */
static consumer_t *consumer_new(cr_consumers_t *set, cr_fn_t *fn, const cr_qsource_t *src, const cr_stream_opts_t *o) {
  consumer_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->set = set;
  c->fn = fn;
  c->src.kind = src->kind;
  c->src.events = src->events;
  c->src.name = strdup(src->name);
  c->src.prefix = dup_or_null(src->prefix);
  c->src.suffix = dup_or_null(src->suffix);
  c->src.group = fn->name; /* the group's name (fn outlives its consumers) */
  c->kind = kind_words[src->kind];
  switch (src->kind) {
  case CR_QSRC_QUEUE:
    c->key = join(set->prefix, "{q:", src->name, "}:s");
    c->dlq = join("", src->name, ".dlq", "");
    break;
  case CR_QSRC_STORAGE:
    c->key = join(set->prefix, "{st:", src->name, "}:events");
    c->dlq = join("storage.", src->name, ".dlq", "");
    break;
  case CR_QSRC_KV:
    c->key = join(set->prefix, "{kv:", src->name, "}:changes");
    c->dlq = join("kv.", src->name, ".dlq", "");
    break;
  }
  c->dlq_key = c->dlq ? join(set->prefix, "{q:", c->dlq, "}:s") : NULL;
  /* Per group (every function consuming the stream has its own deliveries),
   * in the stream's hash slot. */
  c->book_key = c->key ? join(c->key, ":dl:", fn->name, "") : NULL;
  if (!c->src.name || (src->prefix && !c->src.prefix) || (src->suffix && !c->src.suffix) || !c->key || !c->dlq ||
      !c->dlq_key || !c->book_key) {
    consumer_free(c);
    return NULL;
  }
  c->opts = *o;
  /* The same label for a new version of the function: its counts go on. */
  char label[CR_SHM_TRIGGER_LABEL];
  int ln = snprintf(label, sizeof label, "%s:%s", c->kind, c->src.name);
  if (ln > 0 && (size_t)ln < sizeof label) c->meters = cr_shm_trig(set->shm, fn->slot, label);
  strcpy(c->cursor, "0-0");
  c->next = set->list;
  set->list = c;
  return c;
}

/* --- places ------------------------------------------------------------------------------------ */

/* One of the trigger's places (see the top): 0, or CR_ELIMIT at its concurrency. */
static int place_take(consumer_t *c) {
  cr_consumers_t *set = c->set;
  if (c->meters) return cr_shm_trig_take(set->shm, c->meters, set->worker, c->opts.concurrency) ? CR_ELIMIT : 0;
  return c->inflight + c->fill_place < c->opts.concurrency ? 0 : CR_ELIMIT;
}

static void place_give(consumer_t *c) {
  if (c->meters) cr_shm_trig_give(c->set->shm, c->meters, c->set->worker);
}

/* Gives the reading place back when no read or claim is out and no record
 * waits in filling; dead or stopped, records waiting in filling are let go
 * first (pending in the group: handed out again after their visibility). */
static void settle(consumer_t *c) {
  if (c->pending) return;
  if (c->dead || c->set->stopped) {
    cr_qbatch_free(c->filling);
    c->filling = NULL;
  }
  if (c->fill_place && (!c->filling || c->filling->n == 0)) {
    c->fill_place = 0;
    place_give(c);
  }
}

static void consumer_kill(consumer_t *c) {
  c->dead = 1;
  /* Its unsubmitted records are pending in the group: handed out again
   * after their visibility, to whichever version consumes then. */
  cr_qbatch_free(c->filling);
  c->filling = NULL;
  settle(c);
  c->refs++;
  unref(c);
}

/* --- the trigger -------------------------------------------------------------------------------- */

static void push_event(cr_call_t *call, lua_State *co) {
  qcall_t *q = qcall(call);
  cr_qbatch_push_source_event(co, q->b, &q->c->src);
}

static void on_acked(void *data, redisReply *reply, const char *err) {
  (void)data;
  (void)reply;
  (void)err; /* a lost XACK only means a redelivery after the visibility */
}

/* XACK of n ids. */
static void ack_ids(consumer_t *c, const char *const *ids, const size_t *id_lens, int n) {
  cr_redis_t *r = c->set->redis;
  if (!r || n <= 0) return;
  const char *argv[3 + CR_MAX_BATCH];
  size_t lens[3 + CR_MAX_BATCH];
  int argc = 0;
  argv[argc] = "XACK", lens[argc++] = 4;
  argv[argc] = c->key, lens[argc++] = strlen(c->key);
  argv[argc] = c->fn->name, lens[argc++] = strlen(c->fn->name);
  for (int i = 0; i < n && argc < 3 + CR_MAX_BATCH; i++) argv[argc] = ids[i], lens[argc++] = id_lens[i];
  cr_redis_call(r, argc, argv, lens, on_acked, NULL);
}

/* XACK of every record not marked failed; and HDEL of the bookkeeping of
 * those that were received before (a first receive has none). */
static void ack(consumer_t *c, const cr_qbatch_t *b) {
  cr_redis_t *r = c->set->redis;
  if (!r) return;
  const char *argv[3 + 3 * CR_MAX_BATCH];
  size_t lens[3 + 3 * CR_MAX_BATCH];
  int argc = 0;
  argv[argc] = "XACK", lens[argc++] = 4;
  argv[argc] = c->key, lens[argc++] = strlen(c->key);
  argv[argc] = c->fn->name, lens[argc++] = strlen(c->fn->name);
  for (int i = 0; i < b->n && argc < 3 + CR_MAX_BATCH; i++)
    if (!b->recs[i].failed) argv[argc] = b->recs[i].id, lens[argc++] = strlen(b->recs[i].id);
  if (argc > 3) cr_redis_call(r, argc, argv, lens, on_acked, NULL);
  /* Counted when sent: a lost XACK redelivers the record, counted again then. */
  if (argc > 3 && c->meters) atomic_fetch_add_explicit(&c->meters->acked, (uint64_t)(argc - 3), memory_order_relaxed);
  char names[3 * CR_MAX_BATCH][sizeof b->recs[0].id + 2];
  int nn = 0;
  argc = 0;
  argv[argc] = "HDEL", lens[argc++] = 4;
  argv[argc] = c->book_key, lens[argc++] = strlen(c->book_key);
  for (int i = 0; i < b->n && nn + 3 <= 3 * CR_MAX_BATCH; i++) {
    if (b->recs[i].failed || b->recs[i].receive_count <= 1) continue;
    for (const char *x = "fle"; *x; x++) {
      int len = snprintf(names[nn], sizeof names[nn], "%s:%c", b->recs[i].id, *x);
      argv[argc] = names[nn++], lens[argc++] = (size_t)len;
    }
  }
  if (argc > 2) cr_redis_call(r, argc, argv, lens, on_acked, NULL);
}

/* Keeps, for each failed record of b (all of them when all), why its
 * delivery failed and when it was received, for its dead letter (q_claim
 * reads them when it moves the record, and deletes them): in the hash
 * book_key, fields "<id>:f" (first receive, ms since the epoch, set once:
 * HSETNX), "<id>:l" (last receive) and "<id>:e" (the last error, at most
 * LAST_ERROR_MAX bytes). Sent right after the ack, on the same pipelined
 * connection: Redis has them long before the record's visibility ends. The
 * hash expires visibility x maxReceives + 60 s after its last write, so a
 * record that is never claimed again (its group deleted...) does not keep
 * its fields for ever. */
static void record_failures(consumer_t *c, const qcall_t *q, int all, const char *error) {
  cr_redis_t *r = c->set->redis;
  const cr_qbatch_t *b = q->b;
  if (!r || c->dead) return;
  size_t elen = strlen(error);
  if (elen > LAST_ERROR_MAX) elen = LAST_ERROR_MAX;
  const char *argv[2 + 4 * CR_MAX_BATCH];
  size_t lens[2 + 4 * CR_MAX_BATCH];
  char names[2 * CR_MAX_BATCH][sizeof b->recs[0].id + 2], times[CR_MAX_BATCH][24];
  int argc = 0, nn = 0, any = 0;
  argv[argc] = "HSET", lens[argc++] = 4;
  argv[argc] = c->book_key, lens[argc++] = strlen(c->book_key);
  uint64_t now = cr_wall_ms();
  for (int i = 0; i < b->n && i < CR_MAX_BATCH; i++) {
    if (!all && !b->recs[i].failed) continue;
    any = 1;
    int tl = snprintf(times[i], sizeof times[i], "%llu", (unsigned long long)(q->recv_ms ? q->recv_ms[i] : now));
    int fl = snprintf(names[nn], sizeof names[nn], "%s:f", b->recs[i].id);
    const char *nx[] = {"HSETNX", c->book_key, names[nn], times[i]};
    size_t nxl[] = {6, strlen(c->book_key), (size_t)fl, (size_t)tl};
    cr_redis_call(r, 4, nx, nxl, on_acked, NULL);
    nn++;
    int ll = snprintf(names[nn], sizeof names[nn], "%s:l", b->recs[i].id);
    argv[argc] = names[nn++], lens[argc++] = (size_t)ll;
    argv[argc] = times[i], lens[argc++] = (size_t)tl;
    int el = snprintf(names[nn], sizeof names[nn], "%s:e", b->recs[i].id);
    argv[argc] = names[nn++], lens[argc++] = (size_t)el;
    argv[argc] = error, lens[argc++] = elen;
  }
  if (!any) return;
  cr_redis_call(r, argc, argv, lens, on_acked, NULL);
  char ttl[32];
  int tl = snprintf(ttl, sizeof ttl, "%lld", (long long)(c->opts.visibility * 1000 * c->opts.max_receives) + 60000);
  const char *ex[] = {"PEXPIRE", c->book_key, ttl};
  size_t exl[] = {7, strlen(c->book_key), (size_t)tl};
  cr_redis_call(r, 3, ex, exl, on_acked, NULL);
}

/* The handler's error without its traceback (its frames say nothing a dead
 * letter's reader needs, and are most of the text). */
static size_t error_message_len(const char *error) {
  const char *tb = strstr(error, "\nstack traceback:");
  return tb ? (size_t)(tb - error) : strlen(error);
}

/* The call is over: the consumer may read again. */
static void call_ended(qcall_t *q) {
  consumer_t *c = q->c;
  cr_qbatch_free(q->b);
  q->b = NULL;
  free(q->recv_ms);
  q->recv_ms = NULL;
  c->inflight--;
  place_give(c);
  /* Read again soon, from the loop, not from inside the dispatcher. */
  if (!c->dead && !c->set->stopped) uv_timer_start(&c->set->timer, on_tick, 0, POLL_MS);
  unref(c);
}

/* One batch ran (or its init failed), failed or not: the trigger's own
 * invocations and errors, beside the function's. */
static void count_call(consumer_t *c, int failed) {
  if (!c->meters) return;
  atomic_fetch_add_explicit(&c->meters->invocations, 1, memory_order_relaxed);
  if (failed) atomic_fetch_add_explicit(&c->meters->errors, 1, memory_order_relaxed);
}

static int finish(cr_call_t *call) {
  qcall_t *q = qcall(call);
  consumer_t *c = q->c;
  cr_invocation_t *inv = &call->inv;
  int status = 500;
  count_call(c, inv->outcome != CR_OUTCOME_OK);
  if (inv->outcome == CR_OUTCOME_OK) {
    status = 200;
    if (inv->nresults > 0) q->failed = cr_qbatch_mark_failed(inv->co, 1, q->b);
    if (!c->dead) ack(c, q->b);
    if (q->failed > 0) record_failures(c, q, 0, "reported failed by the handler");
  } else {
    const char *why = inv->outcome == CR_OUTCOME_TIMEOUT  ? "timeout"
                      : inv->outcome == CR_OUTCOME_MEMORY ? "memory limit exceeded"
                                                          : inv->error;
    char msg[300];
    int n = snprintf(msg, sizeof msg, "%s %s: the handler failed on a batch of %d: none acknowledged", c->kind,
                     c->src.name, q->b->n);
    cr_buf_t *lb = cr_log_begin(CR_LOG_ERROR, msg, n > 0 && (size_t)n < sizeof msg ? (size_t)n : strlen(msg),
                                call->fn->name, call->reqid);
    if (lb) {
      cr_log_trace(lb, call->trace);
      cr_log_str(lb, "error", why, strlen(why));
      cr_log_end(lb);
    }
    q->failed = q->b->n;
    char last[LAST_ERROR_MAX + 1];
    size_t ln = error_message_len(why);
    if (ln > LAST_ERROR_MAX) ln = LAST_ERROR_MAX;
    memcpy(last, why, ln);
    last[ln] = '\0';
    record_failures(c, q, 1, last);
  }
  call_ended(q);
  return status;
}

static void refused(cr_call_t *call, cr_refusal_t why) {
  qcall_t *q = qcall(call);
  static const char *const reasons[] = {"", "the function is not loaded", "throttled", "its init failed",
                                        "the worker is stopping"};
  const char *reason = why >= 1 && why <= 4 ? reasons[why] : "refused";
  if (why == CR_REFUSED_INIT) count_call(q->c, 1); /* as the function's meters count it */
  cr_log(CR_LOG_WARN, call->fn->name, call->reqid, "%s %s: a batch of %d did not run (%s): handed out again later",
         q->c->kind, q->c->src.name, q->b->n, reason);
  /* The delivery counts towards maxReceives all the same: say why. */
  char last[80];
  snprintf(last, sizeof last, "did not run: %s", reason);
  record_failures(q->c, q, 1, last);
  call_ended(q);
}

/* The source's own field: queue, bucket or namespace. */
static void report_fields(cr_call_t *call, cr_buf_t *line) {
  qcall_t *q = qcall(call);
  static const char *const names[] = {"queue", "bucket", "namespace"};
  cr_log_str(line, names[q->c->src.kind], q->c->src.name, strlen(q->c->src.name));
  cr_log_int(line, "batch", q->n);
  cr_log_int(line, "failed", q->failed);
}

static const cr_trigger_t triggers[] = {
    [CR_QSRC_QUEUE] = {.name = "queue", .push_event = push_event, .finish = finish, .refused = refused,
                       .report_fields = report_fields},
    [CR_QSRC_STORAGE] = {.name = "storage", .push_event = push_event, .finish = finish, .refused = refused,
                         .report_fields = report_fields},
    [CR_QSRC_KV] = {.name = "kv", .push_event = push_event, .finish = finish, .refused = refused,
                    .report_fields = report_fields},
};

static void submit(consumer_t *c) {
  cr_consumers_t *set = c->set;
  char reqid[40];
  int n = snprintf(reqid, sizeof reqid, "%08x-q%s-%llx", set->id_base, set->name + 1, ++set->ncalls);
  cr_call_t *call = cr_dispatch_call(set->d, &triggers[c->src.kind], c->fn, c, reqid, (size_t)n);
  if (!call) return; /* out of memory: try again at the next tick */
  qcall_t *q = qcall(call);
  q->c = c;
  q->b = c->filling;
  q->n = q->b->n;
  q->failed = 0;
  q->recv_ms = malloc((size_t)q->n * sizeof *q->recv_ms);
  if (q->recv_ms) memcpy(q->recv_ms, c->recv_ms, (size_t)q->n * sizeof *q->recv_ms);
  c->filling = NULL;
  c->fill_place = 0; /* the call holds it now */
  c->inflight++;
  c->refs++;
  cr_dispatch_submit(set->d, call);
}

/* Submits the batch being filled if it is full or its window is over. */
static void maybe_submit(consumer_t *c) {
  if (!c->filling || c->filling->n == 0) return;
  uint64_t window_ns = (uint64_t)(c->opts.window * 1e9);
  if (c->filling->n >= c->opts.batch || cr_clock_ns() - c->fill_since_ns >= window_ns) submit(c);
}

/* --- reading ------------------------------------------------------------------------------------ */

/* The ids of one reply's entries that are acknowledged without a call. */
typedef struct {
  int n;
  const char *ids[CR_MAX_BATCH];
  size_t lens[CR_MAX_BATCH];
  int taken, again; /* records added to the batch, and of those redeliveries: the meters, once per reply */
} drops_t;

/* Adds one entry to the batch being filled, with its receive count; one
 * the source leaves out, or that is not one of its records, goes to drops
 * (acknowledged, so it is not handed out forever). */
static void take(consumer_t *c, const redisReply *entry, int receive_count, drops_t *drops) {
  if (!c->filling) {
    c->filling = cr_qbatch_new(c->opts.batch);
    if (!c->filling) return;
    c->fill_since_ns = cr_clock_ns();
  }
  if (c->filling->n == 0) c->fill_since_ns = cr_clock_ns();
  int rc = cr_qbatch_take(c->filling, &c->src, entry, receive_count);
  if (rc == 0) {
    drops->taken++;
    drops->again += receive_count > 1;
  }
  if (rc == 0 && c->filling->n <= CR_MAX_BATCH) c->recv_ms[c->filling->n - 1] = cr_wall_ms();
  if (rc != CR_EINVAL && rc != CR_ENOENT) return;
  if (entry && entry->type == REDIS_REPLY_ARRAY && entry->elements >= 1 &&
      entry->element[0]->type == REDIS_REPLY_STRING && drops->n < CR_MAX_BATCH) {
    drops->ids[drops->n] = entry->element[0]->str;
    drops->lens[drops->n++] = entry->element[0]->len;
  }
  if (rc == CR_EINVAL)
    cr_log(CR_LOG_WARN, c->fn->name, NULL, "%s %s: an entry that is not one of its records was dropped", c->kind,
           c->src.name);
}

static void count_taken(consumer_t *c, const drops_t *d) {
  if (!c->meters || d->taken == 0) return;
  atomic_fetch_add_explicit(&c->meters->records, (uint64_t)d->taken, memory_order_relaxed);
  if (d->again) atomic_fetch_add_explicit(&c->meters->redelivered, (uint64_t)d->again, memory_order_relaxed);
}

static int is_error(const redisReply *r, const char *code) {
  return r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, code, strlen(code)) == 0;
}

static void on_group(void *data, redisReply *reply, const char *err) {
  consumer_t *c = data;
  c->pending = 0;
  if (!err && reply && (reply->type == REDIS_REPLY_STATUS || is_error(reply, "BUSYGROUP"))) c->group_ok = 1;
  else if (!err && reply && reply->type == REDIS_REPLY_ERROR) {
    /* WRONGTYPE (the key is not a stream), an ACL...: said every GROUP_RETRY_NS, not every tick. */
    cr_log(CR_LOG_ERROR, c->fn->name, NULL, "%s %s: cannot make its consumer group: %s", c->kind, c->src.name,
           reply->str);
    c->group_retry_ns = cr_clock_ns() + GROUP_RETRY_NS;
  }
  if (c->group_ok && !c->dead) step(c);
  settle(c);
  unref(c);
}

/* XREADGROUP's reply: nil, or [[key, [entry, ...]]]. */
static void on_read(void *data, redisReply *reply, const char *err) {
  consumer_t *c = data;
  c->pending = 0;
  int asked = c->opts.batch - (c->filling ? c->filling->n : 0), got = 0;
  drops_t drops;
  drops.n = drops.taken = drops.again = 0;
  if (!err && !c->dead && !c->set->stopped && reply) {
    if (is_error(reply, "NOGROUP")) {
      c->group_ok = 0; /* the stream was deleted: make the group again */
    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
               reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2) {
      const redisReply *entries = reply->element[0]->element[1];
      for (size_t i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++) {
        got++;
        take(c, entries->element[i], 1, &drops);
      }
    }
  }
  ack_ids(c, drops.ids, drops.lens, drops.n);
  count_taken(c, &drops);
  if (!c->dead && !c->set->stopped) {
    maybe_submit(c);
    if (got > 0 && got >= asked) step(c); /* there may be more: read again at once */
  }
  settle(c);
  unref(c);
}

/* q_claim's reply: [cursor, [[id, fields, count], ...], moved, lag, oldest age, pending, dlq length]. */
static void on_claim(void *data, redisReply *reply, const char *err) {
  consumer_t *c = data;
  c->pending = 0;
  drops_t drops;
  drops.n = drops.taken = drops.again = 0;
  if (!err && !c->dead && !c->set->stopped && reply && reply->type == REDIS_REPLY_ARRAY &&
      reply->elements == 7) {
    const redisReply *cur = reply->element[0], *list = reply->element[1], *moved = reply->element[2];
    if (cur->type == REDIS_REPLY_STRING && cur->len < sizeof c->cursor) {
      memcpy(c->cursor, cur->str, cur->len);
      c->cursor[cur->len] = '\0';
    }
    for (size_t i = 0; list->type == REDIS_REPLY_ARRAY && i < list->elements; i++) {
      const redisReply *e = list->element[i];
      if (e->type != REDIS_REPLY_ARRAY || e->elements != 3 || e->element[2]->type != REDIS_REPLY_INTEGER) continue;
      redisReply entry = {.type = REDIS_REPLY_ARRAY, .elements = 2, .element = e->element};
      take(c, &entry, (int)e->element[2]->integer, &drops);
    }
    ack_ids(c, drops.ids, drops.lens, drops.n);
    count_taken(c, &drops);
    const redisReply *lag = reply->element[3], *age = reply->element[4];
    if (c->meters && lag->type == REDIS_REPLY_INTEGER && age->type == REDIS_REPLY_INTEGER) {
      atomic_store_explicit(&c->meters->lag, lag->integer >= 0 ? lag->integer : -1, memory_order_relaxed);
      atomic_store_explicit(&c->meters->oldest_age_ms, age->integer >= 0 ? age->integer : 0, memory_order_relaxed);
      const redisReply *pend = reply->element[5], *dlq = reply->element[6];
      if (pend->type == REDIS_REPLY_INTEGER) atomic_store_explicit(&c->meters->pending, pend->integer, memory_order_relaxed);
      if (dlq->type == REDIS_REPLY_INTEGER) atomic_store_explicit(&c->meters->dlq_depth, dlq->integer, memory_order_relaxed);
      atomic_store_explicit(&c->meters->lag_ms, cr_wall_ms(), memory_order_release);
    }
    if (c->meters && moved->type == REDIS_REPLY_INTEGER && moved->integer > 0)
      atomic_fetch_add_explicit(&c->meters->dead_lettered, (uint64_t)moved->integer, memory_order_relaxed);
    if (moved->type == REDIS_REPLY_INTEGER && moved->integer > 0)
      cr_log(CR_LOG_WARN, c->fn->name, NULL, "%s %s: %lld records moved to %s after %d receives", c->kind,
             c->src.name, moved->integer, c->dlq, c->opts.max_receives);
  } else if (!err && reply && reply->type == REDIS_REPLY_ERROR) {
    if (strstr(reply->str, "NOGROUP")) c->group_ok = 0;
    else
      cr_log(CR_LOG_ERROR, c->fn->name, NULL, "%s %s: claiming records failed: %s", c->kind, c->src.name, reply->str);
  }
  if (!c->dead && !c->set->stopped) maybe_submit(c);
  settle(c);
  unref(c);
}

static uint64_t claim_interval_ns(const consumer_t *c) {
  double ms = c->opts.visibility * 1000 / 4;
  if (ms < 50) ms = 50;
  if (ms > 1000) ms = 1000;
  return (uint64_t)(ms * 1e6);
}

static void sent(consumer_t *c, cr_redis_req_t *req) {
  if (!req) return; /* not connected: the next tick tries again */
  c->pending = 1;
  c->refs++;
}

/* The claim round, for room records (0: none handed out, only the lag and
 * the oldest age measured). */
static void send_claim(consumer_t *c, int room) {
  cr_consumers_t *set = c->set;
  c->next_claim_ns = cr_clock_ns() + claim_interval_ns(c);
  char count[16], idle[32], maxr[16], ms[32];
  snprintf(count, sizeof count, "%d", room);
  snprintf(idle, sizeof idle, "%lld", (long long)(c->opts.visibility * 1000));
  snprintf(maxr, sizeof maxr, "%d", c->opts.max_receives);
  snprintf(ms, sizeof ms, "%llu", (unsigned long long)cr_wall_ms());
  const char *wrap = c->src.kind == CR_QSRC_QUEUE ? "0" : "1";
  const char *argv[] = {c->key, c->dlq_key, c->book_key, c->fn->name, set->name, idle,
                        count,  maxr,       ms,          c->cursor,   wrap};
  size_t lens[11];
  for (int i = 0; i < 11; i++) lens[i] = strlen(argv[i]);
  sent(c, cr_redis_eval(set->redis, set->claim_script, 3, 11, argv, lens, on_claim, c));
}

/* One request at a time: make the group, claim, or read. */
static void step(consumer_t *c) {
  cr_consumers_t *set = c->set;
  if (c->dead || set->stopped || !set->redis || c->pending) return;
  maybe_submit(c);
  if (!cr_redis_connected(set->redis)) {
    settle(c);
    return;
  }
  int room = c->opts.batch - (c->filling ? c->filling->n : 0);
  if (room <= 0) return;
  const char *group = c->fn->name;
  if (!c->group_ok) {
    settle(c);
    if (cr_clock_ns() < c->group_retry_ns) return;
    if (c->src.kind == CR_QSRC_KV) {
      /* Tells kv_put and kv_incr to put the new value in their records
       * (sent first: Redis answers in order, so before the group exists). */
      char *flag = join(set->prefix, "{kv:", c->src.name, "}:watched");
      if (!flag) return;
      const char *fargv[] = {"SET", flag, "1"};
      size_t flens[] = {3, strlen(flag), 1};
      cr_redis_call(set->redis, 3, fargv, flens, on_acked, NULL);
      free(flag);
    }
    /* A queue's backlog is its messages: read from the start. A bucket's or
     * namespace's stream is history: a new trigger sees the writes from now
     * on (its group, once made, keeps its place across restarts). */
    const char *from = c->src.kind == CR_QSRC_QUEUE ? "0" : "$";
    const char *argv[] = {"XGROUP", "CREATE", c->key, group, from, "MKSTREAM"};
    size_t lens[] = {6, 6, strlen(c->key), strlen(group), 1, 8};
    sent(c, cr_redis_call(set->redis, 6, argv, lens, on_group, c));
    return;
  }
  int claim_due = cr_clock_ns() >= c->next_claim_ns && set->claim_script >= 0;
  if (!c->fill_place) {
    if (place_take(c)) {
      /* At the trigger's concurrency, across the workers: nothing is read. */
      if (claim_due) send_claim(c, 0);
      return;
    }
    c->fill_place = 1;
  }
  if (claim_due) {
    send_claim(c, room);
  } else {
    char count[16];
    snprintf(count, sizeof count, "%d", room);
    const char *argv[] = {"XREADGROUP", "GROUP", group, set->name, "COUNT", count, "STREAMS", c->key, ">"};
    size_t lens[9];
    for (int i = 0; i < 9; i++) lens[i] = strlen(argv[i]);
    sent(c, cr_redis_call(set->redis, 9, argv, lens, on_read, c));
  }
  settle(c); /* nothing could be sent: the place goes back */
}

static void on_tick(uv_timer_t *t) {
  cr_consumers_t *set = t->data;
  for (consumer_t *c = set->list; c; c = c->next) step(c);
}

/* --- the set ------------------------------------------------------------------------------------ */

cr_consumers_t *cr_consumers_new(uv_loop_t *loop, cr_redis_t *redis, cr_dispatch_t *d, cr_registry_t *reg,
                                 const cr_consumers_opts_t *opts) {
  cr_consumers_t *set = calloc(1, sizeof *set);
  if (!set) return NULL;
  set->loop = loop;
  set->redis = redis;
  set->d = d;
  set->reg = reg;
  snprintf(set->prefix, sizeof set->prefix, "%s", opts && opts->prefix ? opts->prefix : "cr:");
  set->worker = opts ? opts->worker : 0;
  snprintf(set->name, sizeof set->name, "w%d", set->worker);
  set->shm = opts ? opts->shm : NULL;
  set->claim_script = -1;
  for (int i = 0; i < cr_stdlib_nscripts; i++)
    if (strcmp(cr_stdlib_scripts[i].name, "q_claim") == 0) set->claim_script = i;
  set->id_base = (unsigned)(cr_wall_ms() * 2654435761u) ^ (unsigned)getpid();
  uv_timer_init(loop, &set->timer);
  set->timer.data = set;
  if (redis) {
    uv_timer_start(&set->timer, on_tick, POLL_MS, POLL_MS);
    uv_unref((uv_handle_t *)&set->timer);
  }
  return set;
}

/* The source and options of a stream trigger; 0 for another kind. */
static int spec_source(const cr_trigger_spec_t *t, cr_qsource_t *src, const cr_stream_opts_t **opts) {
  memset(src, 0, sizeof *src);
  switch (t->kind) {
  case CR_TRIGGER_QUEUE:
    src->kind = CR_QSRC_QUEUE;
    src->name = t->queue.name;
    *opts = &t->queue.opts;
    return 1;
  case CR_TRIGGER_STORAGE:
    src->kind = CR_QSRC_STORAGE;
    src->name = t->storage.bucket;
    src->events = t->storage.events;
    src->prefix = t->storage.prefix;
    src->suffix = t->storage.suffix;
    *opts = &t->storage.opts;
    return 1;
  case CR_TRIGGER_KV:
    src->kind = CR_QSRC_KV;
    src->name = t->kv.ns;
    src->prefix = t->kv.prefix;
    *opts = &t->kv.opts;
    return 1;
  default:
    return 0;
  }
}

static int same_stream(const cr_qsource_t *a, const cr_qsource_t *b) {
  return a->kind == b->kind && strcmp(a->name, b->name) == 0;
}

/* Takes the new version's filter (its strings copied); keeps the old one
 * when out of memory. */
static void set_filter(consumer_t *c, const cr_qsource_t *src) {
  char *prefix = dup_or_null(src->prefix), *suffix = dup_or_null(src->suffix);
  if ((src->prefix && !prefix) || (src->suffix && !suffix)) {
    free(prefix);
    free(suffix);
    return;
  }
  free((char *)c->src.prefix);
  free((char *)c->src.suffix);
  c->src.prefix = prefix;
  c->src.suffix = suffix;
  c->src.events = src->events;
}

void cr_consumers_follow(cr_consumers_t *set, cr_fn_t *fn) {
  if (set->stopped) return;
  const cr_settings_t *s = fn->current && !fn->removed ? &fn->current->settings : NULL;
  int ntr = s ? s->ntriggers : 0;
  char have[CR_MAX_TRIGGERS] = {0}; /* the triggers a consumer already serves */
  cr_qsource_t src;
  const cr_stream_opts_t *opts;
  consumer_t *next;
  for (consumer_t *c = set->list; c; c = next) {
    next = c->next;
    if (c->fn != fn || c->dead) continue;
    int k = -1;
    for (int i = 0; i < ntr && k < 0; i++)
      if (!have[i] && spec_source(&s->triggers[i], &src, &opts) && same_stream(&src, &c->src)) k = i;
    if (k < 0) {
      consumer_kill(c);
      continue;
    }
    have[k] = 1;
    spec_source(&s->triggers[k], &src, &opts);
    c->opts = *opts; /* the new version's batch, window, filter... */
    set_filter(c, &src);
  }
  for (int i = 0; i < ntr; i++) {
    if (have[i] || !spec_source(&s->triggers[i], &src, &opts)) continue;
    int dup = 0; /* the same stream listed twice is consumed once (settings refuse it for storage and kv) */
    cr_qsource_t other;
    const cr_stream_opts_t *oopts;
    for (int j = 0; j < i && !dup; j++) dup = spec_source(&s->triggers[j], &other, &oopts) && same_stream(&other, &src);
    if (dup) continue;
    if (!consumer_new(set, fn, &src, opts))
      cr_log(CR_LOG_ERROR, fn->name, NULL, "out of memory: %s %s is not consumed", kind_words[src.kind], src.name);
  }
}

void cr_consumers_follow_all(cr_consumers_t *set) {
  for (int i = 0; i < set->reg->nfns; i++) cr_consumers_follow(set, set->reg->fns[i]);
}

void cr_consumers_stop(cr_consumers_t *set) {
  if (!set || set->stopped) return;
  set->stopped = 1;
  set->redis = NULL;
  /* Places for reading go back now (a read still out gives its place back
   * when its reply, or its failure, comes); batches running keep theirs
   * until they end. */
  for (consumer_t *c = set->list; c; c = c->next) settle(c);
  uv_close((uv_handle_t *)&set->timer, NULL);
}

void cr_consumers_free(cr_consumers_t *set) {
  if (!set) return;
  while (set->list) {
    consumer_t *c = set->list;
    set->list = c->next;
    if (c->fill_place) place_give(c);
    consumer_free(c);
  }
  free(set);
}
