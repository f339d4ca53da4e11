/* usage.c - the accumulator, the batches, their flush to Redis (usage.h). */
#include "usage.h"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "clock.h"
#include "log.h"

#define MAX_ENTRIES 1024 /* (function, hour) pairs one accumulator holds */
#define MAX_PAIRS 16     /* (trigger, status) pairs one entry holds */
#define FINAL_WAIT_MS 3000

typedef struct {
  char trigger[24], status[16];
  int throttle; /* throttles:TRIGGER (status unused) */
  uint64_t n;
} pair_t;

typedef struct {
  char *fn;
  uint32_t hour;
  uint64_t invocations; /* of the pairs, for the dropped count */
  uint64_t cold, dur_us, billed_ms, mb_ms, mem_max, memory, out;
  uint64_t hist[CR_SHM_HIST_BUCKETS];
  pair_t pairs[MAX_PAIRS];
  int npairs;
} entry_t;

typedef struct {
  entry_t *e;
  int n;
} acc_t;

struct cr_usage_s {
  uv_loop_t *loop;
  cr_redis_t *redis;
  cr_usage_opts_t o;
  char prefix[64];
  char writer[40]; /* random, new per process */
  uint64_t seq;    /* of the last batch made */
  acc_t acc;       /* gathering */
  acc_t batch;     /* made, not yet acknowledged (n == 0: none) */
  int in_flight;
  cr_redis_req_t *req;
  uv_timer_t tick, final_timer;
  int final;
  void (*done)(void *);
  void *done_data;
  int freeing;
};

static void count(_Atomic uint64_t *c, uint64_t n) {
  if (c && n) atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static void acc_clear(acc_t *a) {
  for (int i = 0; i < a->n; i++) free(a->e[i].fn);
  a->n = 0;
}

static uint64_t acc_invocations(const acc_t *a) {
  uint64_t n = 0;
  for (int i = 0; i < a->n; i++) n += a->e[i].invocations;
  return n;
}

/* The entry of (fn, hour), made if there is room; NULL otherwise. The newest entries are
 * looked at first: an accumulator holds the functions of about one second. */
static entry_t *entry_for(cr_usage_t *u, const char *fn, uint32_t hour) {
  acc_t *a = &u->acc;
  for (int i = a->n - 1; i >= 0; i--)
    if (a->e[i].hour == hour && strcmp(a->e[i].fn, fn) == 0) return &a->e[i];
  if (a->n >= MAX_ENTRIES) return NULL;
  if (!a->e && !(a->e = calloc(MAX_ENTRIES, sizeof *a->e))) return NULL;
  entry_t *e = &a->e[a->n];
  memset(e, 0, sizeof *e);
  if (!(e->fn = strdup(fn))) return NULL;
  e->hour = hour;
  a->n++;
  return e;
}

static pair_t *pair_for(entry_t *e, const char *trigger, const char *status, int throttle) {
  for (int i = 0; i < e->npairs; i++) {
    pair_t *p = &e->pairs[i];
    if (p->throttle == throttle && strcmp(p->trigger, trigger) == 0 && (throttle || strcmp(p->status, status) == 0))
      return p;
  }
  if (e->npairs >= MAX_PAIRS || strlen(trigger) >= sizeof e->pairs[0].trigger ||
      strlen(status) >= sizeof e->pairs[0].status)
    return NULL;
  pair_t *p = &e->pairs[e->npairs++];
  snprintf(p->trigger, sizeof p->trigger, "%s", trigger);
  snprintf(p->status, sizeof p->status, "%s", status);
  p->throttle = throttle;
  p->n = 0;
  return p;
}

void cr_usage_add(cr_usage_t *u, const cr_usage_inv_t *inv) {
  if (!u) return;
  entry_t *e = entry_for(u, inv->fn, (uint32_t)(inv->wall_ms / 3600000));
  pair_t *p = e ? pair_for(e, inv->trigger, inv->status, 0) : NULL;
  if (!p) {
    count(u->o.slot ? &u->o.slot->usage_dropped : NULL, 1);
    return;
  }
  p->n++;
  e->invocations++;
  e->cold += inv->cold ? 1 : 0;
  e->dur_us += (inv->dur_ns + 500) / 1000;
  e->hist[cr_shm_hist_bucket((double)inv->dur_ns / 1e6)]++;
  e->billed_ms += inv->billed_ms;
  e->mb_ms += inv->billed_ms * (uint64_t)inv->memory_mb;
  if (inv->mem_peak > e->mem_max) e->mem_max = inv->mem_peak;
  if ((uint64_t)inv->memory_mb > e->memory) e->memory = (uint64_t)inv->memory_mb;
  e->out += inv->outbound;
}

void cr_usage_throttled(cr_usage_t *u, const char *fn, const char *trigger, uint64_t wall_ms) {
  if (!u) return;
  entry_t *e = entry_for(u, fn, (uint32_t)(wall_ms / 3600000));
  pair_t *p = e ? pair_for(e, trigger, "", 1) : NULL;
  if (!p) {
    count(u->o.slot ? &u->o.slot->usage_dropped : NULL, 1);
    return;
  }
  p->n++;
}

/* --- the batch --------------------------------------------------------------------------------- */

typedef struct {
  cr_buf_t text; /* every argument, NUL-separated */
  size_t *offs;
  int n, cap;
} args_t;

static int arg(args_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int arg(args_t *a, const char *fmt, ...) {
  if (a->n == a->cap) {
    int cap = a->cap ? a->cap * 2 : 256;
    size_t *o = realloc(a->offs, sizeof *o * (size_t)cap);
    if (!o) return -1;
    a->offs = o;
    a->cap = cap;
  }
  char tmp[1400];
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (len < 0 || (size_t)len >= sizeof tmp) return -1;
  a->offs[a->n++] = a->text.len;
  return cr_buf_append(&a->text, tmp, (size_t)len) || cr_buf_putc(&a->text, '\0');
}

static void on_reply(void *data, redisReply *reply, const char *err);

/* Sends u->batch (made already, or again). */
static void send_batch(cr_usage_t *u) {
  args_t k = {CR_BUF_INIT, NULL, 0, 0}, v = {CR_BUF_INIT, NULL, 0, 0};
  int bad = arg(&k, "%susage:seq:%s", u->prefix, u->writer) || arg(&k, "%susage:idx", u->prefix);
  bad = bad || arg(&v, "%llu", (unsigned long long)u->seq) || arg(&v, "%.0f", u->o.retention) ||
        arg(&v, "%llu", (unsigned long long)(cr_wall_ms() / 1000));
  args_t f = {CR_BUF_INIT, NULL, 0, 0}; /* one entry's (field, value) pairs */
  for (int i = 0; !bad && i < u->batch.n; i++) {
    const entry_t *e = &u->batch.e[i];
    f.n = 0;
    f.text.len = 0;
#define F(name, val)                                                                                   \
  do {                                                                                                 \
    if (!bad && (val)) bad = arg(&f, "%s", name) || arg(&f, "%llu", (unsigned long long)(val));       \
  } while (0)
    for (int p = 0; p < e->npairs; p++) {
      char name[64];
      if (e->pairs[p].throttle) snprintf(name, sizeof name, "throttles:%s", e->pairs[p].trigger);
      else snprintf(name, sizeof name, "inv:%s:%s", e->pairs[p].trigger, e->pairs[p].status);
      F(name, e->pairs[p].n);
    }
    F("cold", e->cold);
    F("dur_us", e->dur_us);
    for (int h = 0; h < CR_SHM_HIST_BUCKETS; h++) {
      char name[8];
      snprintf(name, sizeof name, "h%d", h);
      F(name, e->hist[h]);
    }
    F("billed_ms", e->billed_ms);
    F("mb_ms", e->mb_ms);
    /* 0 bytes is a maximum too, once something ran */
    if (e->invocations && !bad) bad = arg(&f, "mem_max") || arg(&f, "%llu", (unsigned long long)e->mem_max);
    F("memory", e->memory);
    F("out", e->out);
#undef F
    bad = bad || arg(&k, "%susage:h:%u:%s", u->prefix, e->hour, e->fn) || arg(&v, "%u", e->hour) ||
          arg(&v, "%s", e->fn) || arg(&v, "%d", f.n / 2);
    for (int j = 0; !bad && j < f.n; j++) bad = arg(&v, "%s", f.text.data + f.offs[j]);
  }
  cr_buf_free(&f.text);
  free(f.offs);
  int argc = k.n + v.n;
  const char **argv = bad ? NULL : malloc(sizeof *argv * (size_t)argc);
  size_t *lens = bad ? NULL : malloc(sizeof *lens * (size_t)argc);
  if (argv && lens) {
    for (int i = 0; i < k.n; i++) argv[i] = k.text.data + k.offs[i], lens[i] = strlen(argv[i]);
    for (int i = 0; i < v.n; i++) argv[k.n + i] = v.text.data + v.offs[i], lens[k.n + i] = strlen(argv[k.n + i]);
    u->req = cr_redis_eval(u->redis, u->o.script, k.n, argc, argv, lens, on_reply, u);
    u->in_flight = u->req != NULL;
  }
  if (!u->in_flight) count(u->o.slot ? &u->o.slot->usage_flush_errors : NULL, 1);
  free(argv);
  free(lens);
  cr_buf_free(&k.text);
  cr_buf_free(&v.text);
  free(k.offs);
  free(v.offs);
}

static void finish_final(cr_usage_t *u) {
  if (!u->done) return;
  void (*done)(void *) = u->done;
  u->done = NULL;
  uv_timer_stop(&u->final_timer);
  uint64_t lost = acc_invocations(&u->batch) + acc_invocations(&u->acc);
  if (lost) {
    count(u->o.slot ? &u->o.slot->usage_dropped : NULL, lost);
    cr_log(CR_LOG_WARN, NULL, NULL, "usage: %llu invocations could not be recorded in Redis before stopping",
           (unsigned long long)lost);
  }
  acc_clear(&u->batch);
  acc_clear(&u->acc);
  done(u->done_data);
}

/* Makes the accumulator the batch (when none waits) and sends the batch. */
static void flush(cr_usage_t *u) {
  if (u->in_flight) return;
  if (!u->batch.n) {
    if (!u->acc.n) {
      if (u->final) finish_final(u);
      return;
    }
    acc_t t = u->batch;
    u->batch = u->acc;
    u->acc = t;
    u->seq++;
  }
  if (!cr_redis_connected(u->redis)) {
    count(u->o.slot ? &u->o.slot->usage_flush_errors : NULL, 1);
    if (u->final) finish_final(u);
    return;
  }
  send_batch(u);
  if (!u->in_flight && u->final) finish_final(u);
}

static void on_reply(void *data, redisReply *reply, const char *err) {
  cr_usage_t *u = data;
  u->in_flight = 0;
  u->req = NULL;
  if (!err && reply && reply->type == REDIS_REPLY_INTEGER) {
    acc_clear(&u->batch); /* applied now, or before (a retry): done with either way */
    count(u->o.slot ? &u->o.slot->usage_flushes : NULL, 1);
    if (u->final) flush(u);
    return;
  }
  count(u->o.slot ? &u->o.slot->usage_flush_errors : NULL, 1);
  cr_log(CR_LOG_WARN, NULL, NULL, "usage: Redis did not take a flush (kept, sent again): %s",
         err ? err : reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
  if (u->final) finish_final(u);
}

static void on_tick(uv_timer_t *t) { flush(t->data); }

static void on_final_timeout(uv_timer_t *t) {
  cr_usage_t *u = t->data;
  if (u->req) cr_redis_cancel(u->req);
  u->req = NULL;
  u->in_flight = 0;
  finish_final(u);
}

void cr_usage_final(cr_usage_t *u, void (*done)(void *data), void *data) {
  if (!u) {
    done(data);
    return;
  }
  uv_timer_stop(&u->tick);
  u->final = 1;
  u->done = done;
  u->done_data = data;
  uv_timer_start(&u->final_timer, on_final_timeout, FINAL_WAIT_MS, 0);
  flush(u);
}

static void random_writer(char *out, size_t n) {
  unsigned char r[8] = {0};
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0 || read(fd, r, sizeof r) != (ssize_t)sizeof r) {
    uint64_t x = cr_clock_ns() ^ ((uint64_t)getpid() << 32);
    memcpy(r, &x, sizeof r);
  }
  if (fd >= 0) close(fd);
  snprintf(out, n, "%d-%02x%02x%02x%02x%02x%02x%02x%02x", (int)getpid(), r[0], r[1], r[2], r[3], r[4], r[5], r[6],
           r[7]);
}

cr_usage_t *cr_usage_new(uv_loop_t *loop, cr_redis_t *redis, const cr_usage_opts_t *o) {
  cr_usage_t *u = calloc(1, sizeof *u);
  if (!u) return NULL;
  u->loop = loop;
  u->redis = redis;
  u->o = *o;
  if (u->o.interval <= 0) u->o.interval = 1;
  snprintf(u->prefix, sizeof u->prefix, "%s", o->prefix ? o->prefix : "cr:");
  random_writer(u->writer, sizeof u->writer);
  uv_timer_init(loop, &u->tick);
  u->tick.data = u;
  uv_timer_init(loop, &u->final_timer);
  u->final_timer.data = u;
  uint64_t ms = (uint64_t)(u->o.interval * 1000);
  uv_timer_start(&u->tick, on_tick, ms, ms);
  uv_unref((uv_handle_t *)&u->tick);
  uv_unref((uv_handle_t *)&u->final_timer);
  return u;
}

static void on_closed(uv_handle_t *h) {
  cr_usage_t *u = h->data;
  if (--u->freeing) return;
  free(u->acc.e);
  free(u->batch.e);
  free(u);
}

void cr_usage_free(cr_usage_t *u) {
  if (!u) return;
  if (u->req) cr_redis_cancel(u->req);
  u->req = NULL;
  uint64_t lost = acc_invocations(&u->batch) + acc_invocations(&u->acc);
  if (lost) count(u->o.slot ? &u->o.slot->usage_dropped : NULL, lost);
  acc_clear(&u->batch);
  acc_clear(&u->acc);
  u->freeing = 2;
  uv_close((uv_handle_t *)&u->tick, on_closed);
  uv_close((uv_handle_t *)&u->final_timer, on_closed);
}
