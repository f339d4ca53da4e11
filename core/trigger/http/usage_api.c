/* usage_api.c - GET /_/api/usage: the hourly usage in Redis (core/exec/usage.h), summed.
 *
 *   GET /_/api/usage?from=T&to=T&function=NAME&by=hour|day&freeTier=1
 *
 * T: YYYY-MM-DD, YYYY-MM-DDTHH, YYYY-MM-DDTHH:MM or YYYY-MM-DDTHH:MM:SS, UTC (a trailing Z
 * allowed). The range is every hour that overlaps [from, to) (usage is kept by the hour); a `to` of a date alone
 * includes that whole day. Defaults: from the start of the current UTC month, to now.
 * Answers (JSON; cost in USD at the server's --price-request and --price-gb-second):
 *   {"from","to","by","prices":{"request","gbSecond","currency"},
 *    "freeTier":null | {"requests","gbSeconds","usedRequests","usedGbSeconds"},
 *    "rows":[{"start","function", METRICS}...]   by bucket, then function
 *    "buckets":[{"start", METRICS}...]           every function summed, by bucket
 *    "functions":[{"name", METRICS, "memory", "rightSize"}...]
 *    "total":{METRICS}}
 * METRICS: "invocations","errors" (error, timeout, memory, init_error),"clientErrors",
 *   "throttles","coldStarts","durationMsSum","billedMsSum","gbSeconds","maxMemoryUsed" (bytes),
 *   "outboundRequests","byTrigger":{TRIGGER:{STATUS:N}},"latencyMs":{BOUND:N,...,"+Inf":N},
 *   "cost":{"requests","compute","total"}.
 * freeTier=1 applies the monthly free tier (1M requests, 400,000 GB-s) in time order, the
 * month's usage before `from` included (it consumed the free tier first): the costs are then
 * what is left to pay. "rightSize" (per function): its memory setting now (or the largest it
 * ran with, once removed), the largest memory one invocation used, the smallest 128 MB step
 * that holds it, and the compute cost the range would have had at it (no free tier). */
#include "admin.h"

#include <hiredis/hiredis.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "clock.h"
#include "jsontext.h"
#include "log.h"
#include "settings.h"
#include "url.h"

#define MAX_HASHES 20000
#define MAX_PAIRS 16
#define FREE_REQUESTS 1000000.0
#define FREE_GB_SECONDS 400000.0

typedef struct {
  char trigger[24], status[16];
  uint64_t n;
} upair_t;

typedef struct {
  uint64_t invocations, errors, client_errors, throttles, cold, dur_us, billed_ms, mb_ms, mem_max, memory, out;
  uint64_t hist[CR_SHM_HIST_BUCKETS];
  upair_t pairs[MAX_PAIRS];
  int npairs;
  double net_req, net_compute; /* cost after the free tier */
} agg_t;

typedef struct {
  uint32_t bucket; /* hour, or the day's first hour */
  int pre;         /* of hours before from (freeTier: they only consume it) */
  char *fn;
  agg_t a;
} row_t;

typedef struct {
  const cr_admin_t *a;
  cr_http_req_t *req;
  uint64_t from_s, to_s;
  uint32_t from_h, to_h, read_from_h; /* [from_h, to_h]; read_from_h: the month's start with freeTier */
  int by_day, free_tier;
  char *fn; /* the filter, or NULL */
} uq_t;

/* YYYY-MM-DD[THH[:MM[:SS]]][Z] into seconds; *date_only says it was a date. -1 when malformed. */
static long long parse_time(const char *s, size_t n, int *date_only) {
  char t[32];
  if (n == 0 || n >= sizeof t) return -1;
  memcpy(t, s, n);
  t[n] = '\0';
  if (t[n - 1] == 'Z') t[--n] = '\0';
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  int y, mo, d, h = 0, mi = 0, se = 0, used = 0;
  if (sscanf(t, "%4d-%2d-%2d%n", &y, &mo, &d, &used) != 3 || used != 10) return -1;
  *date_only = n == 10;
  if (n > 10) {
    const char *r = t + 10;
    int k = 0;
    if (*r != 'T' && *r != ' ') return -1;
    r++;
    if (strlen(r) == 2 && sscanf(r, "%2d%n", &h, &k) == 1 && k == 2) {
    } else if (strlen(r) == 5 && sscanf(r, "%2d:%2d%n", &h, &mi, &k) == 2 && k == 5) {
    } else if (strlen(r) == 8 && sscanf(r, "%2d:%2d:%2d%n", &h, &mi, &se, &k) == 3 && k == 8) {
    } else {
      return -1;
    }
  }
  if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 59) return -1;
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = se;
  time_t v = timegm(&tm);
  struct tm back;
  gmtime_r(&v, &back);
  if (back.tm_mday != d) return -1; /* 2026-02-30 */
  return (long long)v;
}

static uint64_t month_start(uint64_t s) {
  time_t t = (time_t)s;
  struct tm tm;
  gmtime_r(&t, &tm);
  tm.tm_mday = 1;
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  return (uint64_t)timegm(&tm);
}

static int month_of(uint32_t hour) {
  time_t t = (time_t)hour * 3600;
  struct tm tm;
  gmtime_r(&t, &tm);
  return tm.tm_year * 12 + tm.tm_mon;
}

static void pair_add(agg_t *g, const char *trigger, size_t tl, const char *status, size_t sl, uint64_t n) {
  if (tl >= sizeof g->pairs[0].trigger || sl >= sizeof g->pairs[0].status) return;
  for (int i = 0; i < g->npairs; i++) {
    upair_t *p = &g->pairs[i];
    if (strlen(p->trigger) == tl && memcmp(p->trigger, trigger, tl) == 0 && strlen(p->status) == sl &&
        memcmp(p->status, status, sl) == 0) {
      p->n += n;
      return;
    }
  }
  if (g->npairs >= MAX_PAIRS) return;
  upair_t *p = &g->pairs[g->npairs++];
  memcpy(p->trigger, trigger, tl);
  p->trigger[tl] = '\0';
  memcpy(p->status, status, sl);
  p->status[sl] = '\0';
  p->n = n;
}

static void agg_merge(agg_t *to, const agg_t *g) {
  to->invocations += g->invocations;
  to->errors += g->errors;
  to->client_errors += g->client_errors;
  to->throttles += g->throttles;
  to->cold += g->cold;
  to->dur_us += g->dur_us;
  to->billed_ms += g->billed_ms;
  to->mb_ms += g->mb_ms;
  if (g->mem_max > to->mem_max) to->mem_max = g->mem_max;
  if (g->memory > to->memory) to->memory = g->memory;
  to->out += g->out;
  for (int k = 0; k < CR_SHM_HIST_BUCKETS; k++) to->hist[k] += g->hist[k];
  for (int i = 0; i < g->npairs; i++)
    pair_add(to, g->pairs[i].trigger, strlen(g->pairs[i].trigger), g->pairs[i].status, strlen(g->pairs[i].status),
             g->pairs[i].n);
  to->net_req += g->net_req;
  to->net_compute += g->net_compute;
}

/* One hash's fields (a flat array of field, value) into g. */
static void agg_fields(agg_t *g, const redisReply *h) {
  for (size_t i = 0; i + 1 < h->elements; i += 2) {
    const redisReply *f = h->element[i], *v = h->element[i + 1];
    if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
    uint64_t n = strtoull(v->str, NULL, 10);
    const char *s = f->str;
    size_t len = f->len;
    if (len > 4 && memcmp(s, "inv:", 4) == 0) {
      const char *c = memchr(s + 4, ':', len - 4);
      if (!c) continue;
      const char *st = c + 1;
      size_t sl = len - (size_t)(st - s);
      pair_add(g, s + 4, (size_t)(c - s - 4), st, sl, n);
      g->invocations += n;
      if (sl == 2 && memcmp(st, "ok", 2) == 0) {
      } else if (sl == 12 && memcmp(st, "client_error", 12) == 0) g->client_errors += n;
      else g->errors += n;
    } else if (len > 10 && memcmp(s, "throttles:", 10) == 0) g->throttles += n;
    else if (strcmp(s, "cold") == 0) g->cold += n;
    else if (strcmp(s, "dur_us") == 0) g->dur_us += n;
    else if (strcmp(s, "billed_ms") == 0) g->billed_ms += n;
    else if (strcmp(s, "mb_ms") == 0) g->mb_ms += n;
    else if (strcmp(s, "out") == 0) g->out += n;
    else if (strcmp(s, "mem_max") == 0) g->mem_max = n > g->mem_max ? n : g->mem_max;
    else if (strcmp(s, "memory") == 0) g->memory = n > g->memory ? n : g->memory;
    else if (s[0] == 'h' && len <= 3) {
      int k = atoi(s + 1);
      if (k >= 0 && k < CR_SHM_HIST_BUCKETS) g->hist[k] += n;
    }
  }
}

static double gbs_of(const agg_t *g) { return (double)g->mb_ms / 1024.0 / 1000.0; }

static void iso_s(cr_buf_t *b, uint64_t s) {
  char t[32];
  cr_clock_iso8601(s * 1000, t);
  cr_json_escape(b, t, strlen(t));
}

static void metrics_json(const uq_t *q, const agg_t *g, cr_buf_t *b) {
  double req = (double)g->invocations * q->a->price_request / 1e6, comp = gbs_of(g) * q->a->price_gb_second;
  if (q->free_tier) req = g->net_req, comp = g->net_compute;
  cr_buf_printf(b,
                "\"invocations\":%llu,\"errors\":%llu,\"clientErrors\":%llu,\"throttles\":%llu,\"coldStarts\":%llu,"
                "\"durationMsSum\":%.3f,\"billedMsSum\":%llu,\"gbSeconds\":%.6f,\"maxMemoryUsed\":%llu,"
                "\"outboundRequests\":%llu,\"byTrigger\":{",
                (unsigned long long)g->invocations, (unsigned long long)g->errors,
                (unsigned long long)g->client_errors, (unsigned long long)g->throttles, (unsigned long long)g->cold,
                (double)g->dur_us / 1000.0, (unsigned long long)g->billed_ms, gbs_of(g),
                (unsigned long long)g->mem_max, (unsigned long long)g->out);
  /* {TRIGGER:{STATUS:N}}: the pairs grouped by trigger, in order of first appearance */
  int done[MAX_PAIRS] = {0}, first = 1;
  for (int i = 0; i < g->npairs; i++) {
    if (done[i]) continue;
    if (!first) cr_buf_putc(b, ',');
    first = 0;
    cr_json_escape(b, g->pairs[i].trigger, strlen(g->pairs[i].trigger));
    cr_buf_append_str(b, ":{");
    for (int j = i, k = 0; j < g->npairs; j++) {
      if (done[j] || strcmp(g->pairs[j].trigger, g->pairs[i].trigger) != 0) continue;
      done[j] = 1;
      if (k++) cr_buf_putc(b, ',');
      cr_json_escape(b, g->pairs[j].status, strlen(g->pairs[j].status));
      cr_buf_printf(b, ":%llu", (unsigned long long)g->pairs[j].n);
    }
    cr_buf_putc(b, '}');
  }
  cr_buf_append_str(b, "},\"latencyMs\":{");
  for (int k = 0; k < CR_SHM_HIST_BUCKETS; k++) {
    if (k) cr_buf_putc(b, ',');
    if (k == CR_SHM_HIST_BUCKETS - 1) cr_buf_append_str(b, "\"+Inf\":");
    else cr_buf_printf(b, "\"%g\":", cr_shm_hist_bounds_ms[k]);
    cr_buf_append_u64(b, g->hist[k]);
  }
  cr_buf_printf(b, "},\"cost\":{\"requests\":%.8f,\"compute\":%.8f,\"total\":%.8f}", req, comp, req + comp);
}

/* The free tier, consumed in time order: each row's net cost. */
static void apply_free_tier(const uq_t *q, row_t *rows, int n, double *used_req, double *used_gbs) {
  int month = -1;
  double left_req = 0, left_gbs = 0;
  *used_req = *used_gbs = 0;
  for (int i = 0; i < n; i++) {
    agg_t *g = &rows[i].a;
    int m = month_of(rows[i].bucket);
    if (m != month) month = m, left_req = FREE_REQUESTS, left_gbs = FREE_GB_SECONDS;
    double r = (double)g->invocations, s = gbs_of(g);
    double fr = r < left_req ? r : left_req, fs = s < left_gbs ? s : left_gbs;
    left_req -= fr;
    left_gbs -= fs;
    if (!rows[i].pre) *used_req += fr, *used_gbs += fs;
    g->net_req = (r - fr) * q->a->price_request / 1e6;
    g->net_compute = (s - fs) * q->a->price_gb_second;
  }
}

static const cr_fn_t *registry_fn(const cr_admin_t *a, const char *name) {
  for (int i = 0; a->registry && i < a->registry->nfns; i++)
    if (strcmp(a->registry->fns[i]->name, name) == 0) return a->registry->fns[i];
  return NULL;
}

static void right_size_json(const uq_t *q, const char *name, const agg_t *g, cr_buf_t *b) {
  const cr_fn_t *fn = registry_fn(q->a, name);
  uint64_t memory = fn && fn->current ? (uint64_t)fn->current->settings.memory : g->memory;
  uint64_t mb = (g->mem_max + 1048575) / 1048576;
  uint64_t suggested = (mb + 127) / 128 * 128;
  if (suggested < 128) suggested = 128;
  if (suggested > CR_MAX_MEMORY) suggested = CR_MAX_MEMORY;
  double now_cost = gbs_of(g) * q->a->price_gb_second;
  double at = (double)g->billed_ms / 1000.0 * (double)suggested / 1024.0 * q->a->price_gb_second;
  cr_buf_printf(b, ",\"memory\":%llu,\"rightSize\":{\"memory\":%llu,\"maxMemoryUsed\":%llu,\"suggested\":%llu,"
                   "\"computeCost\":%.8f,\"computeCostAtSuggested\":%.8f,\"savings\":%.8f}",
                (unsigned long long)memory, (unsigned long long)memory, (unsigned long long)g->mem_max,
                (unsigned long long)suggested, now_cost, at, now_cost - at > 0 ? now_cost - at : 0);
}

static void answer(uq_t *q, const redisReply *reply) {
  row_t *rows = NULL;
  int n = 0, cap = 0;
  for (size_t i = 0; i + 2 < reply->elements; i += 3) {
    const redisReply *hr = reply->element[i], *fr = reply->element[i + 1], *h = reply->element[i + 2];
    if (hr->type != REDIS_REPLY_INTEGER || fr->type != REDIS_REPLY_STRING || h->type != REDIS_REPLY_ARRAY) continue;
    uint32_t hour = (uint32_t)hr->integer;
    uint32_t bucket = q->by_day ? hour - hour % 24 : hour;
    int pre = hour < q->from_h;
    /* the rows of this bucket are the last ones (hours come in order) */
    row_t *r = NULL;
    for (int k = n - 1; k >= 0 && rows[k].bucket == bucket; k--)
      if (rows[k].pre == pre && strcmp(rows[k].fn, fr->str) == 0) r = &rows[k];
    if (!r) {
      if (n == cap) {
        cap = cap ? cap * 2 : 64;
        row_t *nr = realloc(rows, sizeof *nr * (size_t)cap);
        if (!nr) break;
        rows = nr;
      }
      r = &rows[n];
      memset(r, 0, sizeof *r);
      r->bucket = bucket;
      r->pre = pre;
      if (!(r->fn = strdup(fr->str))) break;
      n++;
    }
    agg_fields(&r->a, h);
  }
  double used_req = 0, used_gbs = 0;
  if (q->free_tier) apply_free_tier(q, rows, n, &used_req, &used_gbs);

  cr_buf_t b = CR_BUF_INIT;
  cr_buf_append_str(&b, "{\"from\":");
  iso_s(&b, q->from_s);
  cr_buf_append_str(&b, ",\"to\":");
  iso_s(&b, q->to_s);
  cr_buf_printf(&b, ",\"by\":\"%s\",\"prices\":{\"request\":%.10g,\"gbSecond\":%.10g,\"currency\":\"USD\"},\"freeTier\":",
                q->by_day ? "day" : "hour", q->a->price_request, q->a->price_gb_second);
  if (q->free_tier)
    cr_buf_printf(&b, "{\"requests\":%.0f,\"gbSeconds\":%.0f,\"usedRequests\":%.0f,\"usedGbSeconds\":%.6f}",
                  FREE_REQUESTS, FREE_GB_SECONDS, used_req, used_gbs);
  else
    cr_buf_append_str(&b, "null");

  /* rows, and per bucket and per function sums, of the rows in range */
  agg_t total;
  memset(&total, 0, sizeof total);
  int nf = 0;
  row_t *fns = calloc((size_t)(n ? n : 1), sizeof *fns);
  cr_buf_t buckets = CR_BUF_INIT;
  agg_t bsum;
  memset(&bsum, 0, sizeof bsum);
  int first_row = 1, first_bucket = 1;
  cr_buf_append_str(&b, ",\"rows\":[");
  for (int i = 0; i < n; i++) {
    if (rows[i].pre) continue; /* before from: consumed the free tier only */
    if (!first_row) cr_buf_putc(&b, ',');
    first_row = 0;
    cr_buf_append_str(&b, "{\"start\":");
    iso_s(&b, (uint64_t)rows[i].bucket * 3600);
    cr_buf_append_str(&b, ",\"function\":");
    cr_json_escape(&b, rows[i].fn, strlen(rows[i].fn));
    cr_buf_putc(&b, ',');
    metrics_json(q, &rows[i].a, &b);
    cr_buf_putc(&b, '}');
    agg_merge(&total, &rows[i].a);
    if (fns) {
      int k = 0;
      while (k < nf && strcmp(fns[k].fn, rows[i].fn) != 0) k++;
      if (k == nf) fns[nf].fn = rows[i].fn, nf++;
      agg_merge(&fns[k].a, &rows[i].a);
    }
    if (i == 0 || rows[i - 1].bucket != rows[i].bucket || rows[i - 1].pre) memset(&bsum, 0, sizeof bsum);
    agg_merge(&bsum, &rows[i].a);
    if (i + 1 == n || rows[i + 1].bucket != rows[i].bucket) {
      if (!first_bucket) cr_buf_putc(&buckets, ',');
      first_bucket = 0;
      cr_buf_append_str(&buckets, "{\"start\":");
      iso_s(&buckets, (uint64_t)rows[i].bucket * 3600);
      cr_buf_putc(&buckets, ',');
      metrics_json(q, &bsum, &buckets);
      cr_buf_putc(&buckets, '}');
    }
  }
  cr_buf_append_str(&b, "],\"buckets\":[");
  if (buckets.len) cr_buf_append(&b, buckets.data, buckets.len);
  cr_buf_append_str(&b, "],\"functions\":[");
  for (int k = 0; k < nf; k++) {
    if (k) cr_buf_putc(&b, ',');
    cr_buf_append_str(&b, "{\"name\":");
    cr_json_escape(&b, fns[k].fn, strlen(fns[k].fn));
    cr_buf_putc(&b, ',');
    metrics_json(q, &fns[k].a, &b);
    right_size_json(q, fns[k].fn, &fns[k].a, &b);
    cr_buf_putc(&b, '}');
  }
  cr_buf_append_str(&b, "],\"total\":{");
  metrics_json(q, &total, &b);
  cr_buf_append_str(&b, "}}");
  cr_http_respond_start(q->req, 200);
  cr_http_respond_header(q->req, "Cache-Control", 13, "no-store", 8);
  cr_http_respond_finish(q->req, "application/json", b.data, b.len);
  cr_buf_free(&b);
  cr_buf_free(&buckets);
  free(fns);
  for (int i = 0; i < n; i++) free(rows[i].fn);
  free(rows);
}

static void uq_free(uq_t *q) {
  free(q->fn);
  free(q);
}

static void on_read(void *data, redisReply *reply, const char *err) {
  uq_t *q = data;
  if (err || !reply) {
    cr_http_respond_error(q->req, 503, err && strcmp(err, "timeout") == 0 ? "redis did not answer in time"
                                                                         : "redis unavailable");
  } else if (reply->type == REDIS_REPLY_ERROR) {
    int big = strstr(reply->str, "too much usage") != NULL;
    if (!big) cr_log(CR_LOG_ERROR, NULL, q->req->id, "usage: reading Redis failed: %s", reply->str);
    cr_http_respond_error(q->req, big ? 400 : 503,
                          big ? "too much usage in the range (more than 20000 function-hours): narrow from/to or "
                                "name a function"
                              : "reading usage from Redis failed");
  } else if (reply->type != REDIS_REPLY_ARRAY) {
    cr_http_respond_error(q->req, 503, "unexpected reply from Redis");
  } else {
    answer(q, reply);
  }
  uq_free(q);
}

void cr_admin_usage(const cr_admin_t *a, cr_http_req_t *req) {
  if (!a->usage_redis) {
    cr_http_respond_error(req, 503, "usage needs Redis: this server runs with --redis none");
    return;
  }
  uq_t *q = calloc(1, sizeof *q);
  if (!q) {
    cr_http_respond_error(req, 503, "server out of memory");
    return;
  }
  q->a = a;
  q->req = req;
  uint64_t now = cr_wall_ms() / 1000;
  long long from = -1, to = -1;
  const char *s = req->query, *e = s + req->query_len, *bad = NULL;
  cr_buf_t v = CR_BUF_INIT;
  while (s < e && !bad) {
    const char *amp = memchr(s, '&', (size_t)(e - s));
    const char *pe = amp ? amp : e;
    const char *eq = memchr(s, '=', (size_t)(pe - s));
    size_t kl = eq ? (size_t)(eq - s) : (size_t)(pe - s);
    v.len = 0;
    if (eq) cr_url_decode(eq + 1, (size_t)(pe - eq - 1), 1, &v);
    cr_buf_putc(&v, '\0');
    v.len--;
    int date_only = 0;
    if (kl == 4 && memcmp(s, "from", 4) == 0) {
      if ((from = parse_time(v.data, v.len, &date_only)) < 0) bad = "from: expected YYYY-MM-DD[THH[:MM[:SS]]] (UTC)";
    } else if (kl == 2 && memcmp(s, "to", 2) == 0) {
      if ((to = parse_time(v.data, v.len, &date_only)) < 0) bad = "to: expected YYYY-MM-DD[THH[:MM[:SS]]] (UTC)";
      else if (date_only) to += 86400;
    } else if (kl == 8 && memcmp(s, "function", 8) == 0) {
      if (!v.len || v.len > 1024 || memchr(v.data, '\0', v.len)) bad = "function: a function's name";
      else if (!(q->fn = strdup(v.data))) bad = "server out of memory";
    } else if (kl == 2 && memcmp(s, "by", 2) == 0) {
      if (strcmp(v.data, "day") == 0) q->by_day = 1;
      else if (strcmp(v.data, "hour") != 0) bad = "by: hour or day";
    } else if (kl == 8 && memcmp(s, "freeTier", 8) == 0) {
      if (strcmp(v.data, "1") == 0 || strcmp(v.data, "true") == 0) q->free_tier = 1;
      else if (strcmp(v.data, "0") != 0 && strcmp(v.data, "false") != 0) bad = "freeTier: 1 or 0";
    } else if (kl) {
      bad = "unknown parameter (known: from, to, function, by, freeTier)";
    }
    s = pe + 1;
  }
  cr_buf_free(&v);
  if (!bad) {
    q->from_s = from >= 0 ? (uint64_t)from : month_start(now);
    q->to_s = to >= 0 ? (uint64_t)to : now + 1;
    if (q->to_s <= q->from_s) bad = "to must be after from";
  }
  if (bad) {
    cr_http_respond_error(req, 400, bad);
    uq_free(q);
    return;
  }
  q->from_h = (uint32_t)(q->from_s / 3600);
  q->to_h = (uint32_t)((q->to_s + 3599) / 3600 - 1);
  q->read_from_h = q->free_tier ? (uint32_t)(month_start(q->from_s) / 3600) : q->from_h;
  char idx[128], hprefix[128], f[16], t[16], max[16];
  snprintf(idx, sizeof idx, "%susage:idx", a->prefix ? a->prefix : "cr:");
  snprintf(hprefix, sizeof hprefix, "%susage:h:", a->prefix ? a->prefix : "cr:");
  snprintf(f, sizeof f, "%u", q->read_from_h);
  snprintf(t, sizeof t, "%u", q->to_h);
  snprintf(max, sizeof max, "%d", MAX_HASHES);
  const char *argv[] = {idx, hprefix, f, t, q->fn ? q->fn : "", max};
  size_t lens[6];
  for (int i = 0; i < 6; i++) lens[i] = strlen(argv[i]);
  if (!cr_redis_eval(a->usage_redis, a->usage_read_script, 1, 6, argv, lens, on_read, q)) {
    cr_http_respond_error(req, 503, "redis unavailable");
    uq_free(q);
  }
}
