/* admin.c - /_/ endpoints: health, the functions API, metrics, and who may use them. */
#include "admin.h"
#include "adminlogs.h"
#include "url.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "clock.h"
#include "jsontext.h"
#include "log.h"
#include "router.h"
#include "scache.h"
#include "dashboard.h"
#include "series.h"

int cr_admin_owns(const char *path, size_t len) {
  return (len >= 3 && memcmp(path, "/_/", 3) == 0) || (len == 2 && memcmp(path, "/_", 2) == 0);
}

int cr_admin_loopback(const char *ip) {
  struct in_addr a4;
  struct in6_addr a6;
  if (!ip) return 0;
  if (inet_pton(AF_INET, ip, &a4) == 1) return ((const unsigned char *)&a4.s_addr)[0] == 127;
  if (inet_pton(AF_INET6, ip, &a6) != 1) return 0;
  if (IN6_IS_ADDR_LOOPBACK(&a6)) return 1;
  return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

/* Equal strings, in time that does not depend on where they differ: every
 * byte is compared and the differences are or-ed together. A different
 * length answers at once; the length of the token is not what guards it. */
static int same_secret(const char *given, size_t glen, const char *token, size_t tlen) {
  if (glen != tlen) return 0;
  volatile unsigned char diff = 0;
  for (size_t i = 0; i < glen; i++) diff |= (unsigned char)(given[i] ^ token[i]);
  return diff == 0;
}

int cr_admin_access(const char *token, const char *authorization, size_t len, const char *ip) {
  if (!token || !*token) return cr_admin_loopback(ip) ? 0 : 403;
  /* credentials = auth-scheme 1*SP token68 (RFC 9110 11.4, RFC 6750 2.1); the
   * scheme is case-insensitive, the token is not. */
  if (!authorization || len < 7 || strncasecmp(authorization, "Bearer ", 7) != 0) return 401;
  size_t i = 7;
  while (i < len && authorization[i] == ' ') i++;
  return same_secret(authorization + i, len - i, token, strlen(token)) ? 0 : 401;
}

/* /_/api, anything under it, and /_/metrics unless it is public. */
static int protected_path(const cr_admin_t *a, const char *p, size_t n) {
  if (n >= 6 && memcmp(p, "/_/api", 6) == 0 && (n == 6 || p[6] == '/')) return 1;
  return !a->metrics_public && n == 10 && memcmp(p, "/_/metrics", 10) == 0;
}

static void refuse(cr_http_req_t *req, int status) {
  cr_buf_t b = CR_BUF_INIT;
  cr_http_error_body(&b, req, status,
                     status == 401 ? "unauthorized: send Authorization: Bearer <the server's --admin-token>"
                                   : "forbidden: without an admin token only loopback clients may use this; "
                                     "start the server with --admin-token to allow others");
  cr_log(CR_LOG_INFO, NULL, req->id, "refused an admin request from %s: %d", req->ip, status);
  cr_http_respond_start(req, status);
  cr_http_respond_header(req, "Cache-Control", 13, "no-store", 8);
  if (status == 401) cr_http_respond_header(req, "WWW-Authenticate", 16, "Bearer realm=\"crescent\"", 23);
  cr_http_respond_finish(req, "application/json", b.data, b.len);
  cr_buf_free(&b);
}

int cr_admin_guard(const cr_admin_t *a, cr_http_req_t *req) {
  const cr_http_header_t *auth = cr_http_req_header(req, "authorization", 13);
  int verdict = cr_admin_access(a ? a->token : NULL, auth ? auth->value : NULL, auth ? auth->value_len : 0, req->ip);
  if (verdict) refuse(req, verdict);
  return verdict;
}

static void respond_json(cr_http_req_t *req, int status, cr_buf_t *b) {
  cr_http_respond_start(req, status);
  cr_http_respond_header(req, "Cache-Control", 13, "no-store", 8);
  cr_http_respond_finish(req, "application/json", b->data ? b->data : "", b->len);
}

static void iso(cr_buf_t *b, uint64_t ms) {
  char t[32];
  cr_clock_iso8601(ms, t);
  cr_json_escape(b, t, strlen(t));
}

/* A schedule's: {"fired","skipped","missed","errors","next":ISO|null,
 * "last":{"scheduledTime","endedAt","result":"succeeded"|"failed"}|null}. */
static void cron_json(cr_shm_trig_t *t, cr_buf_t *b) {
  cr_buf_printf(b, ":{\"fired\":%llu,\"skipped\":%llu,\"missed\":%llu,\"errors\":%llu,\"next\":",
                (unsigned long long)atomic_load(&t->cron_fired), (unsigned long long)atomic_load(&t->cron_skipped),
                (unsigned long long)atomic_load(&t->cron_missed), (unsigned long long)atomic_load(&t->cron_errors));
  uint64_t next = atomic_load(&t->cron_next_ms), tick = atomic_load(&t->cron_last_tick_ms);
  if (next) iso(b, next);
  else cr_buf_append_str(b, "null");
  cr_buf_append_str(b, ",\"last\":");
  if (tick) {
    cr_buf_append_str(b, "{\"scheduledTime\":");
    iso(b, tick);
    cr_buf_append_str(b, ",\"endedAt\":");
    iso(b, atomic_load(&t->cron_last_end_ms));
    cr_buf_append_str(b, atomic_load(&t->cron_last_failed) ? ",\"result\":\"failed\"}" : ",\"result\":\"succeeded\"}");
  } else {
    cr_buf_append_str(b, "null");
  }
  cr_buf_putc(b, '}');
}

/* ,"triggers":{"queue:NAME":{...},...}: the function's stream triggers'
 * meters (shm.h's cr_shm_trig_t); lag and oldestAgeMs null until a claim
 * round read them (lag also when Redis cannot tell). */
static void triggers_json(const cr_admin_t *a, const cr_fn_t *fn, cr_buf_t *b) {
  cr_shm_trig_t *t[CR_SHM_TRIGGERS];
  int n = cr_shm_trigs(a->shm, fn->slot, t, CR_SHM_TRIGGERS);
  cr_buf_append_str(b, ",\"triggers\":{");
  for (int k = 0; k < n; k++) {
    if (k) cr_buf_putc(b, ',');
    cr_json_escape(b, t[k]->label, strlen(t[k]->label));
    if (strncmp(t[k]->label, "cron:", 5) == 0) {
      cron_json(t[k], b);
      continue;
    }
    cr_buf_printf(b,
                  ":{\"invocations\":%llu,\"errors\":%llu,\"records\":%llu,\"redelivered\":%llu,\"acked\":%llu,"
                  "\"deadLettered\":%llu,",
                  (unsigned long long)atomic_load(&t[k]->invocations), (unsigned long long)atomic_load(&t[k]->errors),
                  (unsigned long long)atomic_load(&t[k]->records), (unsigned long long)atomic_load(&t[k]->redelivered),
                  (unsigned long long)atomic_load(&t[k]->acked), (unsigned long long)atomic_load(&t[k]->dead_lettered));
    int read = atomic_load(&t[k]->lag_ms) != 0;
    long long lag = atomic_load(&t[k]->lag);
    if (read && lag >= 0) cr_buf_printf(b, "\"lag\":%lld,", lag);
    else cr_buf_append_str(b, "\"lag\":null,");
    if (read) cr_buf_printf(b, "\"oldestAgeMs\":%lld}", (long long)atomic_load(&t[k]->oldest_age_ms));
    else cr_buf_append_str(b, "\"oldestAgeMs\":null}");
  }
  cr_buf_putc(b, '}');
}

static void functions_json(const cr_admin_t *a, cr_buf_t *b) {
  const cr_registry_t *r = a->registry;
  cr_buf_append_str(b, "{\"functions\":[");
  for (int i = 0; i < r->nfns; i++) {
    const cr_fn_t *fn = r->fns[i];
    const cr_fnver_t *v = fn->current;
    if (i) cr_buf_putc(b, ',');
    cr_buf_append_str(b, "{\"name\":");
    cr_json_escape(b, fn->name, strlen(fn->name));
    cr_buf_append_str(b, ",\"file\":");
    cr_json_escape(b, fn->relpath, strlen(fn->relpath));
    cr_buf_append_str(b, ",\"routed\":");
    cr_buf_append_str(b, fn->routed ? "true" : "false");
    if (fn->platform) cr_buf_append_str(b, ",\"platform\":true");
    /* Its file is gone: kept (meters until restart) and said so. */
    if (fn->removed) cr_buf_append_str(b, ",\"removed\":true");
    if (v) {
      cr_buf_append_str(b, ",\"version\":");
      cr_buf_append_u64(b, v->number);
      cr_buf_append_str(b, ",\"hash\":");
      cr_json_escape(b, v->hash, strlen(v->hash));
      cr_buf_append_str(b, ",\"loadedAt\":");
      iso(b, v->loaded_ms);
      const cr_settings_t *s = &v->settings;
      cr_buf_append_str(b, ",\"routes\":[");
      if (s->has_routes) {
        for (int k = 0; k < s->nroutes; k++) {
          char m[80], route[1200];
          if (s->routes[k].methods == CR_M_ANY) snprintf(m, sizeof m, "ANY");
          else cr_method_list(s->routes[k].methods, m, sizeof m);
          snprintf(route, sizeof route, "%s %s", m, s->routes[k].path);
          if (k) cr_buf_putc(b, ',');
          cr_json_escape(b, route, strlen(route));
        }
      } else {
        char def[1024], route[1100];
        if (cr_registry_default_route(fn->name, def, sizeof def) == 0) {
          snprintf(route, sizeof route, "ANY %s", def);
          cr_json_escape(b, route, strlen(route));
        }
      }
      cr_buf_printf(b, "],\"settings\":{\"timeout\":%g,\"memory\":%d,\"concurrency\":%d,\"warm\":%d,\"idle\":%g}",
                    s->timeout, s->memory, s->concurrency, s->warm, s->idle);
    } else {
      cr_buf_append_str(b, ",\"version\":null");
    }
    cr_buf_append_str(b, ",\"error\":");
    if (fn->error) {
      cr_json_escape(b, fn->error, strlen(fn->error));
      cr_buf_append_str(b, ",\"errorAt\":");
      iso(b, fn->error_ms);
    } else {
      cr_buf_append_str(b, "null");
    }
    cr_shm_fn_t *f = cr_shm_fn(a->shm, fn->slot);
    if (f) {
      unsigned long long inv = atomic_load(&f->invocations);
      double gbs = (double)atomic_load(&f->mb_ms) / 1024.0 / 1000.0;
      long long busy = cr_shm_busy(a->shm, fn->slot), alive = cr_shm_instances(a->shm, fn->slot);
      double req_cost = (double)inv * a->price_request / 1e6, compute_cost = gbs * a->price_gb_second;
      cr_buf_printf(b, ",\"metrics\":{\"invocations\":%llu,\"errors\":%llu,\"clientErrors\":%llu,\"timeouts\":%llu,"
                       "\"throttles\":%llu,\"coldStarts\":%llu,\"durationMsSum\":%.3f,\"billedMsSum\":%llu,"
                       "\"gbSeconds\":%.6f,",
                    inv, (unsigned long long)atomic_load(&f->errors),
                    (unsigned long long)atomic_load(&f->client_errors), (unsigned long long)atomic_load(&f->timeouts),
                    (unsigned long long)atomic_load(&f->throttles), (unsigned long long)atomic_load(&f->cold_starts),
                    (double)atomic_load(&f->duration_ns) / 1e6, (unsigned long long)atomic_load(&f->billed_ms), gbs);
      cr_buf_printf(b, "\"rateLimited\":%llu,\"authUnavailable\":%llu,\"cache\":{\"hits\":%llu,\"misses\":%llu,"
                       "\"shared\":{\"hits\":%llu,\"misses\":%llu,\"errors\":%llu}},",
                    (unsigned long long)atomic_load(&f->rate_limited),
                    (unsigned long long)atomic_load(&f->auth_unavailable), (unsigned long long)atomic_load(&f->cache_hits),
                    (unsigned long long)atomic_load(&f->cache_misses),
                    (unsigned long long)atomic_load(&f->cache_shared_hits),
                    (unsigned long long)atomic_load(&f->cache_shared_misses),
                    (unsigned long long)atomic_load(&f->cache_shared_errors));
      cr_buf_printf(b, "\"authorizer\":{\"calls\":%llu,\"cacheHits\":%llu,\"denied\":%llu,\"failed\":%llu},",
                    (unsigned long long)atomic_load(&f->authz_calls), (unsigned long long)atomic_load(&f->authz_hits),
                    (unsigned long long)atomic_load(&f->authz_denied),
                    (unsigned long long)atomic_load(&f->authz_failed));
      cr_buf_printf(b, "\"http\":{\"requests\":%llu,\"errors\":%llu,\"bytesOut\":%llu,\"bytesIn\":%llu,"
                       "\"timeMsSum\":%.3f},",
                    (unsigned long long)atomic_load(&f->http_requests), (unsigned long long)atomic_load(&f->http_errors),
                    (unsigned long long)atomic_load(&f->http_bytes_out),
                    (unsigned long long)atomic_load(&f->http_bytes_in), (double)atomic_load(&f->http_ns) / 1e6);
      cr_buf_printf(b, "\"instances\":{\"busy\":%lld,\"idle\":%lld},", busy < 0 ? 0 : busy,
                    alive - busy < 0 ? 0 : alive - busy);
      cr_buf_append_str(b, "\"latencyMs\":{");
      for (int k = 0; k < CR_SHM_HIST_BUCKETS; k++) {
        if (k) cr_buf_putc(b, ',');
        if (k == CR_SHM_HIST_BUCKETS - 1) cr_buf_append_str(b, "\"+Inf\":");
        else cr_buf_printf(b, "\"%g\":", cr_shm_hist_bounds_ms[k]);
        cr_buf_append_u64(b, atomic_load(&f->hist[k]));
      }
      cr_buf_printf(b, "},\"cost\":{\"requests\":%.8f,\"compute\":%.8f,\"total\":%.8f,\"currency\":\"USD\"}",
                    req_cost, compute_cost, req_cost + compute_cost);
      triggers_json(a, fn, b);
      cr_buf_putc(b, '}');
    }
    cr_buf_putc(b, '}');
  }
  cr_buf_append_str(b, "]}");
}

static void prom_counter(cr_buf_t *b, const char *name, const char *help) {
  cr_buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
}

/* Prometheus label values escape backslash, quote and newline. */
static void prom_label(cr_buf_t *b, const char *v) {
  for (; *v; v++) {
    if (*v == '\\' || *v == '"') cr_buf_putc(b, '\\');
    if (*v == '\n') {
      cr_buf_append_str(b, "\\n");
      continue;
    }
    cr_buf_putc(b, *v);
  }
}

/* One classic histogram's series: cumulative buckets (bounds x scale, the last +Inf), _sum and
 * _count, labelled function (may be NULL) and extra ("k=\"v\"", may be NULL). */
static void prom_hist(cr_buf_t *b, const char *name, const char *function, const char *extra, const double *bounds,
                      double scale, const uint64_t *counts, int n, double sum) {
  char lab[32];
  unsigned long long cum = 0;
  for (int k = 0; k < n; k++) {
    cum += counts[k];
    cr_buf_printf(b, "%s_bucket{", name);
    if (function) {
      cr_buf_append_str(b, "function=\"");
      prom_label(b, function);
      cr_buf_append_str(b, "\",");
    }
    if (extra) cr_buf_printf(b, "%s,", extra);
    if (k == n - 1) snprintf(lab, sizeof lab, "+Inf");
    else snprintf(lab, sizeof lab, "%g", bounds[k] * scale);
    cr_buf_printf(b, "le=\"%s\"} %llu\n", lab, cum);
  }
  for (int part = 0; part < 2; part++) {
    cr_buf_printf(b, "%s_%s{", name, part ? "count" : "sum");
    if (function) {
      cr_buf_append_str(b, "function=\"");
      prom_label(b, function);
      cr_buf_append_str(b, extra ? "\"," : "\"");
    }
    if (extra) cr_buf_append_str(b, extra);
    if (part) cr_buf_printf(b, "} %llu\n", cum);
    else cr_buf_printf(b, "} %.9f\n", sum);
  }
}

/* The stream triggers' meters, labelled function and trigger ("queue:NAME",
 * "storage:BUCKET", "kv:NAMESPACE"); the gauges only once they were read
 * (the lag only when Redis could tell). */
static void trigger_metrics(const cr_admin_t *a, cr_buf_t *b) {
  const cr_registry_t *r = a->registry;
  enum { COUNTER, LAG, AGE, GAUGE };
  static const struct {
    const char *name, *help;
    int kind;
    size_t off;
  } m[] = {
      {"crescent_trigger_invocations_total",
       "Batches a stream trigger called the function with (or whose instance init failed).", COUNTER,
       offsetof(cr_shm_trig_t, invocations)},
      {"crescent_trigger_errors_total", "Of those, batches that raised, timed out, ran out of memory or failed init.",
       COUNTER, offsetof(cr_shm_trig_t, errors)},
      {"crescent_trigger_records_total", "Records handed to the function by a stream trigger, redeliveries included.",
       COUNTER, offsetof(cr_shm_trig_t, records)},
      {"crescent_trigger_redelivered_total", "Records handed out again (receiveCount > 1).", COUNTER,
       offsetof(cr_shm_trig_t, redelivered)},
      {"crescent_trigger_acked_total", "Records acknowledged after an invocation that did not mark them failed.",
       COUNTER, offsetof(cr_shm_trig_t, acked)},
      {"crescent_trigger_dead_lettered_total", "Records moved to the dead-letter queue after maxReceives deliveries.",
       COUNTER, offsetof(cr_shm_trig_t, dead_lettered)},
      {"crescent_trigger_lag", "Records of the stream not yet delivered to the trigger's consumer group.", LAG,
       offsetof(cr_shm_trig_t, lag)},
      {"crescent_trigger_oldest_age_seconds",
       "Age of the oldest record the trigger's group still needs (pending, else the first undelivered); 0: none.",
       AGE, offsetof(cr_shm_trig_t, oldest_age_ms)},
      {"crescent_trigger_pending", "Records delivered to the trigger's group and not yet acknowledged (in flight).",
       GAUGE, offsetof(cr_shm_trig_t, pending)},
      {"crescent_trigger_dead_letter_depth", "Records in the trigger's dead-letter queue.", GAUGE,
       offsetof(cr_shm_trig_t, dlq_depth)},
  };
  for (size_t c = 0; c < sizeof m / sizeof m[0]; c++) {
    cr_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", m[c].name, m[c].help, m[c].name,
                  m[c].kind == COUNTER ? "counter" : "gauge");
    for (int i = 0; i < r->nfns; i++) {
      const cr_fn_t *fn = r->fns[i];
      cr_shm_trig_t *t[CR_SHM_TRIGGERS];
      int n = cr_shm_trigs(a->shm, fn->slot, t, CR_SHM_TRIGGERS);
      for (int k = 0; k < n; k++) {
        if (strncmp(t[k]->label, "cron:", 5) == 0) continue; /* cron_metrics' */
        if (m[c].kind != COUNTER && !atomic_load(&t[k]->lag_ms)) continue;
        if (m[c].kind == LAG && atomic_load(&t[k]->lag) < 0) continue;
        cr_buf_printf(b, "%s{function=\"", m[c].name);
        prom_label(b, fn->name);
        cr_buf_append_str(b, "\",trigger=\"");
        prom_label(b, t[k]->label);
        if (m[c].kind == LAG) cr_buf_printf(b, "\"} %lld\n", (long long)atomic_load(&t[k]->lag));
        else if (m[c].kind == AGE)
          cr_buf_printf(b, "\"} %.3f\n", (double)atomic_load(&t[k]->oldest_age_ms) / 1000.0);
        else if (m[c].kind == GAUGE)
          cr_buf_printf(b, "\"} %lld\n", (long long)atomic_load((_Atomic int64_t *)((char *)t[k] + m[c].off)));
        else
          cr_buf_printf(b, "\"} %llu\n",
                        (unsigned long long)atomic_load((_Atomic uint64_t *)((char *)t[k] + m[c].off)));
      }
    }
  }
}

/* The schedules' meters, labelled function and schedule (the expression). */
static void cron_metrics(const cr_admin_t *a, cr_buf_t *b) {
  const cr_registry_t *r = a->registry;
  static const struct {
    const char *name, *help;
    size_t off;
  } m[] = {
      {"crescent_schedule_fired_total", "Ticks of a schedule that ran (claimed by this platform).",
       offsetof(cr_shm_trig_t, cron_fired)},
      {"crescent_schedule_skipped_total", "Ticks skipped because the last run was still going (overlap = false).",
       offsetof(cr_shm_trig_t, cron_skipped)},
      {"crescent_schedule_missed_total", "Ticks missed: Redis unreachable, or the loop too busy to see them.",
       offsetof(cr_shm_trig_t, cron_missed)},
      {"crescent_schedule_errors_total", "Runs of a schedule that failed or did not run.",
       offsetof(cr_shm_trig_t, cron_errors)},
  };
  for (size_t c = 0; c < sizeof m / sizeof m[0]; c++) {
    cr_buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n", m[c].name, m[c].help, m[c].name);
    for (int i = 0; i < r->nfns; i++) {
      const cr_fn_t *fn = r->fns[i];
      cr_shm_trig_t *t[CR_SHM_TRIGGERS];
      int n = cr_shm_trigs(a->shm, fn->slot, t, CR_SHM_TRIGGERS);
      for (int k = 0; k < n; k++) {
        if (strncmp(t[k]->label, "cron:", 5) != 0) continue;
        cr_buf_printf(b, "%s{function=\"", m[c].name);
        prom_label(b, fn->name);
        cr_buf_append_str(b, "\",schedule=\"");
        prom_label(b, t[k]->label + 5);
        cr_buf_printf(b, "\"} %llu\n", (unsigned long long)atomic_load((_Atomic uint64_t *)((char *)t[k] + m[c].off)));
      }
    }
  }
}

/* --- DELETE /_/api/cache ------------------------------------------------------------------------ */

/* A purge answered once Redis took every shared function's part. */
typedef struct {
  cr_http_req_t *req;
  int purged;
  int pending;
  char err[128];
} purge_wait_t;

static void purge_answer(purge_wait_t *pw) {
  cr_buf_t b = CR_BUF_INIT;
  if (pw->err[0]) {
    cr_buf_append_str(&b, "{\"error\":");
    char msg[200];
    snprintf(msg, sizeof msg, "purged on this node, not in Redis (shared cache): %s", pw->err);
    cr_json_escape(&b, msg, strlen(msg));
    cr_buf_printf(&b, ",\"purged\":%d}", pw->purged);
    respond_json(pw->req, 503, &b);
  } else {
    cr_buf_printf(&b, "{\"purged\":%d}", pw->purged);
    respond_json(pw->req, 200, &b);
  }
  cr_buf_free(&b);
  free(pw);
}

static void on_purged(void *data, const char *err) {
  purge_wait_t *pw = data;
  if (err && !pw->err[0]) snprintf(pw->err, sizeof pw->err, "%s", err);
  if (--pw->pending == 0) purge_answer(pw);
}

/* One function's part: every worker's entries (the epoch, or the path's purge time in shared
 * memory) at once, and Redis' for a shared function (pw waits for it). */
static void purge_fn(const cr_admin_t *a, const cr_fn_t *fn, const cr_buf_t *path, purge_wait_t *pw) {
  char err[128] = "";
  cr_scache_purge_t *h = NULL;
  int rc = 1;
  if (path->len) {
    if (a->scache) rc = cr_scache_purge_path(a->scache, fn, path->data, path->len, on_purged, pw, &h, err, sizeof err);
    else cr_shm_cache_purge(a->shm, fn->slot, path->data, path->len, cr_clock_ns());
  } else {
    cr_shm_fn_t *f = cr_shm_fn(a->shm, fn->slot);
    if (f) atomic_fetch_add(&f->cache_epoch, 1);
    if (cr_scache_enabled(a->scache) && fn->current && fn->current->settings.cache.shared) {
      h = cr_scache_purge(a->scache, fn, NULL, 0, on_purged, pw, err, sizeof err);
      rc = h ? 0 : -1;
    }
  }
  pw->purged++;
  if (rc == 0) pw->pending++;
  else if (rc < 0 && !pw->err[0]) snprintf(pw->err, sizeof pw->err, "%s", err);
}

/* DELETE /_/api/cache[?function=NAME][&path=/P]: the cached answers of the function (or of
 * all), or only path's (every query, vary and principal variant); with path and no function,
 * of the user function GET path routes to. */
static void purge(const cr_admin_t *a, cr_http_req_t *req) {
  cr_buf_t name = CR_BUF_INIT, path = CR_BUF_INIT;
  const char *q = req->query, *qe = q + req->query_len;
  int want = 0, want_path = 0;
  while (q < qe) {
    const char *amp = memchr(q, '&', (size_t)(qe - q));
    const char *pe = amp ? amp : qe;
    if ((size_t)(pe - q) > 9 && memcmp(q, "function=", 9) == 0) {
      cr_url_decode(q + 9, (size_t)(pe - q - 9), 1, &name);
      want = 1;
    } else if ((size_t)(pe - q) >= 5 && memcmp(q, "path=", 5) == 0) {
      cr_url_decode(q + 5, (size_t)(pe - q - 5), 0, &path);
      want_path = 1;
    }
    q = pe + 1;
  }
  if (want_path && (!path.len || path.data[0] != '/' || path.len > 2048 || memchr(path.data, '?', path.len) ||
                    memchr(path.data, '\0', path.len))) {
    cr_http_respond_error(req, 400, "path must start with '/' (at most 2048 bytes, no query)");
    goto out;
  }
  if (want_path && cr_admin_owns(path.data, path.len)) {
    cr_http_respond_error(req, 400, "paths under /_/ are the platform's: never cached");
    goto out;
  }
  const cr_fn_t *routed = NULL;
  if (want_path && !want) {
    cr_route_match_t m;
    if (a->registry && a->registry->router &&
        cr_router_match(a->registry->router, CR_M_GET, path.data, path.len, &m) == 0)
      routed = m.target;
    if (!routed || routed->platform) {
      cr_http_respond_error(req, 404, "no function answers GET on that path");
      goto out;
    }
  }
  purge_wait_t *pw = calloc(1, sizeof *pw);
  if (!pw) {
    cr_http_respond_error(req, 503, "server out of memory");
    goto out;
  }
  pw->req = req;
  pw->pending = 1; /* this loop's own, given back below: no answer before it ends */
  for (int i = 0; a->registry && a->shm && i < a->registry->nfns; i++) {
    const cr_fn_t *fn = a->registry->fns[i];
    if (fn->platform) continue; /* never cached */
    if (routed && fn != routed) continue;
    if (want && (strlen(fn->name) != name.len || memcmp(fn->name, name.data, name.len) != 0)) continue;
    purge_fn(a, fn, &path, pw);
  }
  if ((want || routed) && !pw->purged) {
    free(pw);
    cr_http_respond_error(req, 404, "function not found");
    goto out;
  }
  on_purged(pw, NULL);
out:
  cr_buf_free(&name);
  cr_buf_free(&path);
}

static void metrics_text(const cr_admin_t *a, cr_buf_t *b) {
  const cr_registry_t *r = a->registry;
  static const struct {
    const char *name, *help;
    size_t off;
  } counters[] = {
      {"crescent_invocations_total", "Invocations of the function.", offsetof(cr_shm_fn_t, invocations)},
      {"crescent_errors_total",
       "Invocations that failed: raised an error, timed out, ran out of memory, failed their init or answered 5xx.",
       offsetof(cr_shm_fn_t, errors)},
      {"crescent_client_errors_total",
       "Invocations that failed on a bad request: a platform 4xx such as event.json() on a body that is not JSON.",
       offsetof(cr_shm_fn_t, client_errors)},
      {"crescent_timeouts_total", "Invocations stopped at their timeout.", offsetof(cr_shm_fn_t, timeouts)},
      {"crescent_throttles_total", "Requests refused with 429 at the concurrency limit.", offsetof(cr_shm_fn_t, throttles)},
      {"crescent_cold_starts_total", "Invocations that paid for an instance's init.", offsetof(cr_shm_fn_t, cold_starts)},
      {"crescent_cache_hits_total", "Answers served from the response cache (cache = {...}), fresh or stale.",
       offsetof(cr_shm_fn_t, cache_hits)},
      {"crescent_cache_misses_total", "Requests to a function with a cache that went to the function.",
       offsetof(cr_shm_fn_t, cache_misses)},
      {"crescent_cache_shared_hits_total", "Local misses of a shared cache (shared = true) answered from Redis.",
       offsetof(cr_shm_fn_t, cache_shared_hits)},
      {"crescent_cache_shared_misses_total",
       "Local misses of a shared cache that Redis had no usable answer for (absent, purged or stale).",
       offsetof(cr_shm_fn_t, cache_shared_misses)},
      {"crescent_cache_shared_errors_total",
       "Local misses of a shared cache whose Redis lookup failed (down, slower than 250 ms, an error).",
       offsetof(cr_shm_fn_t, cache_shared_errors)},
      {"crescent_rate_limited_total", "Requests refused with 429 by the function's rateLimit (never invoked).",
       offsetof(cr_shm_fn_t, rate_limited)},
      {"crescent_auth_unavailable_total",
       "Requests refused with 503 because their auth could not be checked (API keys while Redis is unreachable).",
       offsetof(cr_shm_fn_t, auth_unavailable)},
      {"crescent_authorizer_calls_total", "Authorizer function calls made for the function's routes (auth = { authorizer }).",
       offsetof(cr_shm_fn_t, authz_calls)},
      {"crescent_authorizer_cache_hits_total",
       "Requests to the function decided without an authorizer call of their own (a kept decision, or one in flight).",
       offsetof(cr_shm_fn_t, authz_hits)},
      {"crescent_authorizer_denied_total", "Requests to the function refused with 403 by its authorizer.",
       offsetof(cr_shm_fn_t, authz_denied)},
      {"crescent_authorizer_failed_total",
       "Requests to the function refused with 503 because its authorizer failed (fail closed).",
       offsetof(cr_shm_fn_t, authz_failed)},
      {"crescent_outbound_requests_total", "Outbound HTTP requests functions made (crescent.http).",
       offsetof(cr_shm_fn_t, http_requests)},
      {"crescent_outbound_errors_total", "Outbound HTTP requests that failed (nil, err).",
       offsetof(cr_shm_fn_t, http_errors)},
      {"crescent_outbound_sent_bytes_total", "Bytes outbound HTTP requests sent, TLS included.",
       offsetof(cr_shm_fn_t, http_bytes_out)},
      {"crescent_outbound_received_bytes_total", "Bytes outbound HTTP requests received, TLS included.",
       offsetof(cr_shm_fn_t, http_bytes_in)},
  };
  for (size_t c = 0; c < sizeof counters / sizeof counters[0]; c++) {
    prom_counter(b, counters[c].name, counters[c].help);
    for (int i = 0; i < r->nfns; i++) {
      const cr_fn_t *fn = r->fns[i];
      if (fn->slot >= CR_SHM_MAX_FUNCTIONS) continue;
      _Atomic uint64_t *v = (_Atomic uint64_t *)((char *)&a->shm->fns[fn->slot] + counters[c].off);
      cr_buf_printf(b, "%s{function=\"", counters[c].name);
      prom_label(b, fn->name);
      cr_buf_printf(b, "\"} %llu\n", (unsigned long long)atomic_load(v));
    }
  }
  cr_buf_append_str(b, "# HELP crescent_duration_seconds Invocation duration, cold starts (start=\"cold\", the init "
                       "not included) and warm ones apart.\n# TYPE crescent_duration_seconds histogram\n");
  for (int i = 0; i < r->nfns; i++) {
    const cr_fn_t *fn = r->fns[i];
    if (fn->slot >= CR_SHM_MAX_FUNCTIONS) continue;
    cr_shm_fn_t *f = &a->shm->fns[fn->slot];
    uint64_t all[CR_SHM_HIST_BUCKETS], cold[CR_SHM_HIST_BUCKETS], warm[CR_SHM_HIST_BUCKETS];
    for (int k = 0; k < CR_SHM_HIST_BUCKETS; k++) {
      /* the cold part first: a reader racing a flush sees warm >= 0 */
      cold[k] = atomic_load(&f->hist_cold[k]);
      all[k] = atomic_load(&f->hist[k]);
      warm[k] = all[k] > cold[k] ? all[k] - cold[k] : 0;
    }
    uint64_t cold_ns = atomic_load(&f->duration_cold_ns), all_ns = atomic_load(&f->duration_ns);
    prom_hist(b, "crescent_duration_seconds", fn->name, "start=\"cold\"", cr_shm_hist_bounds_ms, 1e-3, cold,
              CR_SHM_HIST_BUCKETS, (double)cold_ns / 1e9);
    prom_hist(b, "crescent_duration_seconds", fn->name, "start=\"warm\"", cr_shm_hist_bounds_ms, 1e-3, warm,
              CR_SHM_HIST_BUCKETS, (double)(all_ns > cold_ns ? all_ns - cold_ns : 0) / 1e9);
  }
  cr_buf_append_str(b, "# HELP crescent_init_duration_seconds Init duration of the instances cold starts made (the "
                       "function file's top level).\n# TYPE crescent_init_duration_seconds histogram\n");
  for (int i = 0; i < r->nfns; i++) {
    const cr_fn_t *fn = r->fns[i];
    if (fn->slot >= CR_SHM_MAX_FUNCTIONS) continue;
    cr_shm_fn_t *f = &a->shm->fns[fn->slot];
    uint64_t h[CR_SHM_HIST_BUCKETS];
    for (int k = 0; k < CR_SHM_HIST_BUCKETS; k++) h[k] = atomic_load(&f->init_hist[k]);
    prom_hist(b, "crescent_init_duration_seconds", fn->name, NULL, cr_shm_hist_bounds_ms, 1e-3, h, CR_SHM_HIST_BUCKETS,
              (double)atomic_load(&f->init_ns) / 1e9);
  }
  cr_buf_append_str(b, "# HELP crescent_memory_used_bytes Memory one invocation's instance used at most (Lua heap).\n"
                       "# TYPE crescent_memory_used_bytes histogram\n");
  for (int i = 0; i < r->nfns; i++) {
    const cr_fn_t *fn = r->fns[i];
    if (fn->slot >= CR_SHM_MAX_FUNCTIONS) continue;
    cr_shm_fn_t *f = &a->shm->fns[fn->slot];
    uint64_t h[CR_SHM_MEM_BUCKETS];
    for (int k = 0; k < CR_SHM_MEM_BUCKETS; k++) h[k] = atomic_load(&f->mem_hist[k]);
    prom_hist(b, "crescent_memory_used_bytes", fn->name, NULL, cr_shm_mem_bounds, 1, h, CR_SHM_MEM_BUCKETS,
              (double)atomic_load(&f->mem_sum));
  }
  cr_buf_append_str(b, "# HELP crescent_memory_limit_bytes The function's memory setting.\n"
                       "# TYPE crescent_memory_limit_bytes gauge\n");
  for (int i = 0; i < r->nfns; i++) {
    const cr_fn_t *fn = r->fns[i];
    if (fn->slot >= CR_SHM_MAX_FUNCTIONS || !fn->current) continue;
    cr_buf_append_str(b, "crescent_memory_limit_bytes{function=\"");
    prom_label(b, fn->name);
    cr_buf_printf(b, "\"} %llu\n", (unsigned long long)fn->current->settings.memory * 1048576ULL);
  }
  /* Was crescent_gb_seconds_total (GB-seconds = this / 2^30): base units, bytes x seconds. */
  prom_counter(b, "crescent_billed_byte_seconds_total",
               "Billed memory x duration: the memory setting in bytes x billed seconds (GB-seconds x 2^30).");
  for (int i = 0; i < r->nfns; i++) {
    const cr_fn_t *fn = r->fns[i];
    if (fn->slot >= CR_SHM_MAX_FUNCTIONS) continue;
    cr_buf_append_str(b, "crescent_billed_byte_seconds_total{function=\"");
    prom_label(b, fn->name);
    cr_buf_printf(b, "\"} %.3f\n", (double)atomic_load(&a->shm->fns[fn->slot].mb_ms) * 1048576.0 / 1000.0);
  }
  cr_buf_append_str(b, "# HELP crescent_instances Function instances across workers.\n# TYPE crescent_instances gauge\n");
  for (int i = 0; i < r->nfns; i++) {
    const cr_fn_t *fn = r->fns[i];
    if (fn->slot >= CR_SHM_MAX_FUNCTIONS) continue;
    long long busy = cr_shm_busy(a->shm, fn->slot);
    long long alive = cr_shm_instances(a->shm, fn->slot);
    cr_buf_append_str(b, "crescent_instances{function=\"");
    prom_label(b, fn->name);
    cr_buf_printf(b, "\",state=\"busy\"} %lld\n", busy < 0 ? 0 : busy);
    cr_buf_append_str(b, "crescent_instances{function=\"");
    prom_label(b, fn->name);
    cr_buf_printf(b, "\",state=\"idle\"} %lld\n", alive - busy < 0 ? 0 : alive - busy);
  }
  trigger_metrics(a, b);
  cron_metrics(a, b);
  prom_counter(b, "crescent_http_requests_total", "HTTP requests received, per worker.");
  for (int i = 0; i < a->shm->nworkers; i++)
    cr_buf_printf(b, "crescent_http_requests_total{worker=\"%d\"} %llu\n", i,
                  (unsigned long long)atomic_load(&a->shm->workers[i].requests));
  prom_counter(b, "crescent_log_lines_stored_total", "Log lines kept in Redis (the logs API), per worker.");
  for (int i = 0; i < a->shm->nworkers; i++)
    cr_buf_printf(b, "crescent_log_lines_stored_total{worker=\"%d\"} %llu\n", i,
                  (unsigned long long)atomic_load(&a->shm->workers[i].log_stored));
  prom_counter(b, "crescent_log_lines_dropped_total",
               "Log lines not kept in Redis (down, too slow, too many waiting; stdout has them), per worker.");
  for (int i = 0; i < a->shm->nworkers; i++)
    cr_buf_printf(b, "crescent_log_lines_dropped_total{worker=\"%d\"} %llu\n", i,
                  (unsigned long long)atomic_load(&a->shm->workers[i].log_dropped));
  prom_counter(b, "crescent_http_responses_total", "HTTP responses sent, by status class, per worker.");
  for (int i = 0; i < a->shm->nworkers; i++)
    for (int k = 0; k < 5; k++)
      cr_buf_printf(b, "crescent_http_responses_total{worker=\"%d\",code=\"%dxx\"} %llu\n", i, k + 1,
                    (unsigned long long)atomic_load(&a->shm->workers[i].responses[k]));
  cr_buf_append_str(b, "# HELP crescent_http_connections HTTP connections open, per worker.\n"
                       "# TYPE crescent_http_connections gauge\n");
  for (int i = 0; i < a->shm->nworkers; i++)
    cr_buf_printf(b, "crescent_http_connections{worker=\"%d\"} %lld\n", i,
                  (long long)atomic_load(&a->shm->workers[i].conns_open));
  cr_buf_append_str(b, "# HELP crescent_redis_request_duration_seconds Time from a Redis command sent to its reply, "
                       "per worker.\n# TYPE crescent_redis_request_duration_seconds histogram\n");
  for (int i = 0; i < a->shm->nworkers; i++) {
    cr_shm_worker_t *w = &a->shm->workers[i];
    uint64_t h[CR_SHM_HIST_BUCKETS];
    for (int k = 0; k < CR_SHM_HIST_BUCKETS; k++) h[k] = atomic_load(&w->redis_hist[k]);
    char lab[32];
    snprintf(lab, sizeof lab, "worker=\"%d\"", i);
    prom_hist(b, "crescent_redis_request_duration_seconds", NULL, lab, cr_shm_hist_bounds_ms, 1e-3, h,
              CR_SHM_HIST_BUCKETS, (double)atomic_load(&w->redis_ns) / 1e9);
  }
  prom_counter(b, "crescent_redis_errors_total",
               "Redis commands that failed, per worker: unavailable (not connected, or the connection dropped) "
               "or timeout (no reply within --redis-timeout).");
  for (int i = 0; i < a->shm->nworkers; i++) {
    cr_shm_worker_t *w = &a->shm->workers[i];
    cr_buf_printf(b, "crescent_redis_errors_total{worker=\"%d\",kind=\"unavailable\"} %llu\n", i,
                  (unsigned long long)atomic_load(&w->redis_unavailable));
    cr_buf_printf(b, "crescent_redis_errors_total{worker=\"%d\",kind=\"timeout\"} %llu\n", i,
                  (unsigned long long)atomic_load(&w->redis_timeouts));
  }
  prom_counter(b, "crescent_redis_error_replies_total",
               "Redis replies that were errors, per worker (some are expected: BUSYGROUP for a consumer group "
               "that exists already).");
  for (int i = 0; i < a->shm->nworkers; i++)
    cr_buf_printf(b, "crescent_redis_error_replies_total{worker=\"%d\"} %llu\n", i,
                  (unsigned long long)atomic_load(&a->shm->workers[i].redis_error_replies));
  static const struct {
    const char *name, *help;
    size_t off;
  } usage[] = {
      {"crescent_usage_flushes_total", "Usage batches Redis took (README \"Usage and cost\"), per worker.",
       offsetof(cr_shm_worker_t, usage_flushes)},
      {"crescent_usage_flush_errors_total", "Usage flushes that failed and are sent again, per worker.",
       offsetof(cr_shm_worker_t, usage_flush_errors)},
      {"crescent_usage_dropped_total",
       "Invocations and throttles the usage in Redis could not record (accumulator full, or unsent at a stop).",
       offsetof(cr_shm_worker_t, usage_dropped)},
      {"crescent_worker_restarts_total", "Workers replaced after they exited or were killed.",
       offsetof(cr_shm_worker_t, restarts)},
  };
  for (size_t c = 0; c < sizeof usage / sizeof usage[0]; c++) {
    prom_counter(b, usage[c].name, usage[c].help);
    for (int i = 0; i < a->shm->nworkers; i++)
      cr_buf_printf(b, "%s{worker=\"%d\"} %llu\n", usage[c].name, i,
                    (unsigned long long)atomic_load((_Atomic uint64_t *)((char *)&a->shm->workers[i] + usage[c].off)));
  }
  prom_counter(b, "crescent_reloads_total", "Reloads of the functions folder finished (the first load included).");
  cr_buf_printf(b, "crescent_reloads_total %llu\n", (unsigned long long)atomic_load(&a->shm->reloads));
  prom_counter(b, "crescent_function_loads_total", "Function versions loaded and published.");
  cr_buf_printf(b, "crescent_function_loads_total %llu\n", (unsigned long long)atomic_load(&a->shm->fn_loads));
  prom_counter(b, "crescent_function_load_errors_total",
               "Function files that failed to load (a syntax error, bad settings, init failed).");
  cr_buf_printf(b, "crescent_function_load_errors_total %llu\n", (unsigned long long)atomic_load(&a->shm->load_errors));
}

void cr_admin_handle(const cr_admin_t *a, cr_http_req_t *req) {
  cr_buf_t b = CR_BUF_INIT;
  const char *p = req->path;
  size_t n = req->path_len;
  if (n > 3 && p[n - 1] == '/') n--;
#define IS(lit) (n == sizeof(lit) - 1 && memcmp(p, lit, n) == 0)
  if (protected_path(a, p, n)) {
    const cr_http_header_t *auth = cr_http_req_header(req, "authorization", 13);
    int verdict = cr_admin_access(a->token, auth ? auth->value : NULL, auth ? auth->value_len : 0, req->ip);
    if (verdict) {
      refuse(req, verdict);
      return;
    }
  }
  int get = req->method == CR_M_GET || req->method == CR_M_HEAD;
  int asset = cr_dashboard_find(p, n);
  if (asset >= 0) {
    /* The page holds no data: with a token it is open (it asks for the token); without
     * one, the loopback rule of the APIs. */
    if ((a->token && *a->token) || !cr_admin_guard(a, req)) cr_dashboard_serve(req, asset);
    cr_buf_free(&b);
    return;
  }
  if (IS("/_/health")) {
    if (!get) goto not_allowed;
    /* The worker's own Redis connection: what its invocations would get. */
    int up = cr_redis_connected(a->redis);
    if (a->redis_configured && !up) {
      cr_buf_append_str(&b, "{\"status\":\"unavailable\",\"redis\":\"down\"}");
      respond_json(req, 503, &b);
    } else {
      cr_buf_append_str(&b, a->redis_configured ? "{\"status\":\"ok\",\"redis\":\"up\"}"
                                                : "{\"status\":\"ok\",\"redis\":\"none\"}");
      respond_json(req, 200, &b);
    }
  } else if (IS("/_/api/cache")) {
    if (req->method != CR_M_DELETE) {
      cr_http_respond_start(req, 405);
      cr_http_respond_header(req, "Allow", 5, "DELETE", 6);
      cr_http_respond_finish(req, "application/json", "{\"error\":\"method not allowed\"}", 30);
      cr_buf_free(&b);
      return;
    }
    purge(a, req);
  } else if (IS("/_/api/usage")) {
    if (!get) goto not_allowed;
    cr_admin_usage(a, req);
  } else if (IS("/_/api/logs")) {
    if (!get) goto not_allowed;
    cr_logs_api_t la = {a->logstore, a->loop, a->shm};
    cr_admin_logs(&la, req);
  } else if (IS("/_/api/logs/tail")) {
    if (!get) goto not_allowed;
    cr_logs_api_t la = {a->logstore, a->loop, a->shm};
    cr_admin_logs_tail(&la, req);
  } else if (IS("/_/api/series")) {
    if (!get) goto not_allowed;
    cr_series_handle(a->series_redis, a->prefix ? a->prefix : "cr:", a->series_interval, a->registry, req);
  } else if (IS("/_/api/functions")) {
    if (!get) goto not_allowed;
    functions_json(a, &b);
    respond_json(req, 200, &b);
  } else if (IS("/_/metrics") && a->shm) {
    if (!get) goto not_allowed;
    metrics_text(a, &b);
    cr_http_respond_start(req, 200);
    cr_http_respond_header(req, "Cache-Control", 13, "no-store", 8);
    cr_http_respond_finish(req, "text/plain; version=0.0.4", b.data ? b.data : "", b.len);
  } else {
    cr_http_respond_error(req, 404, "not found");
  }
  cr_buf_free(&b);
  return;
not_allowed:
  cr_http_respond_start(req, 405);
  cr_http_respond_header(req, "Allow", 5, "GET, HEAD", 9);
  cr_http_respond_finish(req, "application/json", "{\"error\":\"method not allowed\"}", 30);
  cr_buf_free(&b);
#undef IS
}
