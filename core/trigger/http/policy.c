/* policy.c - CORS and rate limits in the gateway (policy.h). */
#include "policy.h"

#include <ctype.h>
#include <hiredis/hiredis.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "hash.h"
#include "log.h"
#include "modules.h"
#include "router.h"

/* --- CORS ------------------------------------------------------------------------------------- */

/* Does host (n bytes, lower-case) lie one or more labels below suffix? */
static int below(const char *host, size_t n, const char *suffix, size_t sn) {
  return n > sn + 1 && host[n - sn - 1] == '.' && strncasecmp(host + n - sn, suffix, sn) == 0;
}

static int pattern_matches(const char *pat, const char *o, size_t n) {
  const char *sep = strstr(pat, "://");
  const char *osep = NULL;
  for (size_t i = 0; i + 3 <= n; i++)
    if (o[i] == ':' && o[i + 1] == '/' && o[i + 2] == '/') {
      osep = o + i;
      break;
    }
  if (!osep) return 0;
  const char *ohost = osep + 3;
  size_t ohl = n - (size_t)(ohost - o);
  /* An origin is scheme://host[:port]: nothing else after the scheme. */
  if (memchr(ohost, '@', ohl) || memchr(ohost, '/', ohl)) return 0;
  const char *ocolon = memchr(ohost, ':', ohl);
  size_t oname = ocolon ? (size_t)(ocolon - ohost) : ohl;
  if (!sep) {
    /* "*.suffix": any scheme and port */
    return pat[0] == '*' && below(ohost, oname, pat + 2, strlen(pat + 2));
  }
  size_t sl = (size_t)(sep - pat);
  if (sl != (size_t)(osep - o) || strncasecmp(pat, o, sl) != 0) return 0;
  const char *phost = sep + 3;
  if (phost[0] != '*') return strlen(phost) == ohl && strncasecmp(phost, ohost, ohl) == 0;
  const char *pcolon = strchr(phost, ':');
  size_t pname = pcolon ? (size_t)(pcolon - phost) : strlen(phost);
  /* ports: the pattern's, or none on both */
  if ((pcolon != NULL) != (ocolon != NULL)) return 0;
  if (pcolon && (strlen(pcolon) != ohl - oname || strncmp(pcolon, ocolon, ohl - oname) != 0)) return 0;
  return below(ohost, oname, phost + 2, pname - 2);
}

int cr_cors_origin_allowed(const cr_cors_spec_t *c, const char *o, size_t n) {
  if (!c->set || n == 0 || n > 300) return 0;
  if (c->any_origin) return 1;
  for (int i = 0; i < c->norigins; i++)
    if (pattern_matches(c->origins[i], o, n)) return 1;
  return 0;
}

static unsigned method_bit(const char *m, size_t n) {
  static const struct {
    const char *name;
    unsigned bit;
  } ms[] = {{"GET", CR_M_GET},       {"HEAD", CR_M_HEAD},     {"POST", CR_M_POST},      {"PUT", CR_M_PUT},
            {"PATCH", CR_M_PATCH},   {"DELETE", CR_M_DELETE}, {"OPTIONS", CR_M_OPTIONS}};
  for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
    if (strlen(ms[i].name) == n && memcmp(ms[i].name, m, n) == 0) return ms[i].bit;
  return 0;
}

int cr_cors_is_preflight(const cr_http_req_t *req, unsigned *method) {
  if (req->method != CR_M_OPTIONS) return 0;
  const cr_http_header_t *o = cr_http_req_header(req, "origin", 6);
  const cr_http_header_t *m = cr_http_req_header(req, "access-control-request-method", 29);
  if (!o || !m) return 0;
  *method = method_bit(m->value, m->value_len);
  return 1;
}

/* Is every name of the comma-separated list (l, n bytes) in allowed ("a, b", lower-case)? */
static int headers_allowed(const char *allowed, const char *l, size_t n) {
  size_t i = 0;
  while (i < n) {
    while (i < n && (l[i] == ' ' || l[i] == '\t' || l[i] == ',')) i++;
    size_t s = i;
    while (i < n && l[i] != ',' && l[i] != ' ' && l[i] != '\t') i++;
    if (i == s) break;
    int found = 0;
    for (const char *p = allowed; *p && !found;) {
      while (*p == ' ' || *p == ',') p++;
      const char *e = p;
      while (*e && *e != ',') e++;
      found = (size_t)(e - p) == i - s && strncasecmp(p, l + s, i - s) == 0;
      p = e;
    }
    if (!found) return 0;
  }
  return 1;
}

/* Is l (n bytes) a list of header-name tokens, commas and spaces only? */
static int token_list(const char *l, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)l[i];
    if (!(isalnum(ch) || strchr("!#$%&'*+-.^_`|~, \t", ch))) return 0;
  }
  return 1;
}

static void cors_refuse(cr_http_req_t *req, const char *what) {
  cr_buf_t b = CR_BUF_INIT;
  cr_buf_printf(&b, "CORS: %s not allowed", what);
  cr_http_respond_start(req, 403);
  cr_http_respond_header(req, "Vary", 4, "Origin", 6);
  cr_buf_t body = CR_BUF_INIT;
  cr_http_error_body_id(&body, req, cr_buf_cstr(&b));
  cr_http_respond_finish(req, "application/json", body.data, body.len);
  cr_buf_free(&body);
  cr_buf_free(&b);
}

static void allow_origin(const cr_cors_spec_t *c, cr_http_req_t *req, const cr_http_header_t *o) {
  if (c->any_origin && !c->credentials) cr_http_respond_header(req, "Access-Control-Allow-Origin", 27, "*", 1);
  else cr_http_respond_header(req, "Access-Control-Allow-Origin", 27, o->value, o->value_len);
  if (c->credentials) cr_http_respond_header(req, "Access-Control-Allow-Credentials", 32, "true", 4);
}

void cr_cors_preflight(const cr_cors_spec_t *c, cr_http_req_t *req, int routed) {
  const cr_http_header_t *o = cr_http_req_header(req, "origin", 6);
  const cr_http_header_t *m = cr_http_req_header(req, "access-control-request-method", 29);
  const cr_http_header_t *h = cr_http_req_header(req, "access-control-request-headers", 30);
  if (!o || !cr_cors_origin_allowed(c, o->value, o->value_len)) {
    cors_refuse(req, "origin");
    return;
  }
  if (c->methods) {
    /* the list is "GET, PUT": find the method as a whole entry */
    if (!m || !headers_allowed(c->methods, m->value, m->value_len) || !token_list(m->value, m->value_len)) {
      cors_refuse(req, "method");
      return;
    }
  } else if (!routed) {
    cors_refuse(req, "method"); /* the default is the method asked, when the route answers it */
    return;
  }
  if (h && h->value_len) {
    if (!token_list(h->value, h->value_len) || (c->headers && !headers_allowed(c->headers, h->value, h->value_len))) {
      cors_refuse(req, "header");
      return;
    }
  }
  cr_http_respond_start(req, 204);
  allow_origin(c, req, o);
  if (c->methods) cr_http_respond_header(req, "Access-Control-Allow-Methods", 28, c->methods, strlen(c->methods));
  else cr_http_respond_header(req, "Access-Control-Allow-Methods", 28, m->value, m->value_len);
  if (c->headers && c->headers[0])
    cr_http_respond_header(req, "Access-Control-Allow-Headers", 28, c->headers, strlen(c->headers));
  else if (!c->headers && h && h->value_len)
    cr_http_respond_header(req, "Access-Control-Allow-Headers", 28, h->value, h->value_len);
  char age[16];
  int al = snprintf(age, sizeof age, "%d", c->max_age);
  cr_http_respond_header(req, "Access-Control-Max-Age", 22, age, (size_t)al);
  static const char vary[] = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";
  cr_http_respond_header(req, "Vary", 4, vary, sizeof vary - 1);
  cr_http_respond_finish(req, NULL, "", 0);
}

void cr_cors_headers(const cr_cors_spec_t *c, cr_http_req_t *req) {
  if (!c->set) return;
  cr_http_respond_header(req, "Vary", 4, "Origin", 6);
  const cr_http_header_t *o = cr_http_req_header(req, "origin", 6);
  if (!o || !cr_cors_origin_allowed(c, o->value, o->value_len)) return;
  allow_origin(c, req, o);
  if (c->expose && c->expose[0])
    cr_http_respond_header(req, "Access-Control-Expose-Headers", 29, c->expose, strlen(c->expose));
}

/* --- rate limits ------------------------------------------------------------------------------ */

/* A bucket per worker (no Redis, or a failed call): open addressing on
 * the key's hash, at most LOCAL_MAX; when full, the table starts over
 * (every client gets a full bucket once: generous, never stuck). */
#define LOCAL_MAX 8192

typedef struct {
  uint64_t hash;  /* of function and client; 0: empty */
  double tat;     /* theoretical arrival time, s on the monotonic clock */
} bucket_t;

typedef struct pending_s {
  cr_ratelimit_t *rl;
  struct pending_s *next, *prev;
  cr_redis_req_t *rr;
  const cr_ratelimit_spec_t *spec;
  uint64_t hash;
  cr_rl_cb cb;
  void *data;
} pending_t;

struct cr_ratelimit_s {
  cr_redis_t *redis;
  char prefix[64];
  int script;
  bucket_t *local;
  int nlocal;
  pending_t *pending;
  uint64_t warned_ns;
};

cr_ratelimit_t *cr_ratelimit_new(cr_redis_t *redis, const char *prefix) {
  cr_ratelimit_t *rl = calloc(1, sizeof *rl);
  if (!rl) return NULL;
  rl->redis = redis;
  snprintf(rl->prefix, sizeof rl->prefix, "%s", prefix ? prefix : "cr:");
  rl->script = -1;
  for (int i = 0; i < cr_stdlib_nscripts; i++)
    if (strcmp(cr_stdlib_scripts[i].name, "rate_gcra") == 0) rl->script = i;
  return rl;
}

void cr_ratelimit_free(cr_ratelimit_t *rl) {
  if (!rl) return;
  while (rl->pending) {
    pending_t *p = rl->pending;
    rl->pending = p->next;
    cr_redis_cancel(p->rr);
    free(p);
  }
  free(rl->local);
  free(rl);
}

static void local_check(cr_ratelimit_t *rl, const cr_ratelimit_spec_t *spec, uint64_t hash, cr_rl_result_t *out) {
  memset(out, 0, sizeof *out);
  if (!rl->local && !(rl->local = calloc(2 * LOCAL_MAX, sizeof *rl->local))) {
    out->allowed = 1; /* no memory for buckets: do not refuse for it */
    out->remaining = spec->burst - 1;
    return;
  }
  if (hash == 0) hash = 1;
  size_t cap = 2 * LOCAL_MAX, i = hash % cap;
  while (rl->local[i].hash && rl->local[i].hash != hash) i = (i + 1) % cap;
  double now = (double)cr_clock_ns() / 1e9, T = 1.0 / spec->rps;
  if (!rl->local[i].hash) {
    if (rl->nlocal >= LOCAL_MAX) {
      memset(rl->local, 0, cap * sizeof *rl->local);
      rl->nlocal = 0;
      i = hash % cap;
    }
    rl->local[i].hash = hash;
    rl->local[i].tat = now;
    rl->nlocal++;
  }
  double tat = rl->local[i].tat > now ? rl->local[i].tat : now;
  double next = tat + T, allow_at = next - spec->burst * T;
  if (now < allow_at) {
    out->retry_after = allow_at - now;
    out->reset = tat - now;
    return;
  }
  rl->local[i].tat = next;
  out->allowed = 1;
  out->remaining = (int)floor((now - allow_at) / T + 1e-9);
  out->reset = next - now;
}

static void on_gcra(void *data, redisReply *reply, const char *err) {
  pending_t *p = data;
  cr_ratelimit_t *rl = p->rl;
  if (p->prev) p->prev->next = p->next;
  else rl->pending = p->next;
  if (p->next) p->next->prev = p->prev;
  cr_rl_result_t r;
  if (!err && reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 4) {
    memset(&r, 0, sizeof r);
    r.allowed = reply->element[0]->integer == 1;
    r.remaining = (int)reply->element[1]->integer;
    r.retry_after = (double)reply->element[2]->integer / 1e6;
    r.reset = (double)reply->element[3]->integer / 1e6;
  } else {
    uint64_t now = cr_clock_coarse_ns();
    if (!rl->warned_ns || now - rl->warned_ns > 10000000000ull) {
      rl->warned_ns = now ? now : 1;
      cr_log(CR_LOG_WARN, NULL, NULL, "rate limits fall back to per-worker buckets: %s",
             err ? err : "unexpected reply from rate_gcra");
    }
    local_check(rl, p->spec, p->hash, &r);
  }
  cr_rl_cb cb = p->cb;
  void *d = p->data;
  free(p);
  cb(d, &r);
}

void cr_ratelimit_check(cr_ratelimit_t *rl, const char *fn, const cr_ratelimit_spec_t *spec, const cr_http_req_t *req,
                        const char *who, cr_rl_cb cb, void *data) {
  /* Kinds of client apart ("i:", "h:", "a:"), so no header value or key name passes for an address. */
  char kind = 'i';
  const char *client = req->ip ? req->ip : "-";
  size_t clen = strlen(client);
  if (who && (spec->by == CR_RL_BY_KEY || spec->by == CR_RL_BY_PRINCIPAL)) {
    kind = 'a';
    client = who;
    clen = strlen(who);
    if (clen > 256) clen = 256;
  } else if (spec->by == CR_RL_BY_HEADER) {
    kind = 'h';
    const cr_http_header_t *h = cr_http_req_header(req, spec->header, strlen(spec->header));
    client = h && h->value_len ? h->value : "-";
    clen = h && h->value_len ? h->value_len : 1;
    if (clen > 256) clen = 256;
  }
  char sep[3] = {'\n', kind, ':'};
  uint64_t hash = cr_fnv1a_more(cr_fnv1a_more(cr_fnv1a(fn, strlen(fn)), sep, 3), client, clen);
  cr_rl_result_t r;
  if (!rl->redis || rl->script < 0 || !cr_redis_connected(rl->redis)) {
    uint64_t now = cr_clock_coarse_ns();
    if (!rl->warned_ns || now - rl->warned_ns > 10000000000ull) {
      rl->warned_ns = now ? now : 1;
      cr_log(CR_LOG_WARN, NULL, NULL, "rate limits run on per-worker buckets: %s",
             !rl->redis ? "no Redis (--redis none)" : "Redis is unreachable");
    }
    local_check(rl, spec, hash, &r);
    cb(data, &r);
    return;
  }
  pending_t *p = calloc(1, sizeof *p);
  cr_buf_t key = CR_BUF_INIT;
  if (!p || cr_buf_printf(&key, "%s{rl:%s}:%c:", rl->prefix, fn, kind) || cr_buf_append(&key, client, clen)) {
    free(p);
    cr_buf_free(&key);
    local_check(rl, spec, hash, &r);
    cb(data, &r);
    return;
  }
  char interval[32], burst[16];
  snprintf(interval, sizeof interval, "%.0f", 1e6 / spec->rps);
  snprintf(burst, sizeof burst, "%d", spec->burst);
  const char *argv[] = {key.data, interval, burst};
  size_t lens[] = {key.len, strlen(interval), strlen(burst)};
  p->rl = rl;
  p->spec = spec;
  p->hash = hash;
  p->cb = cb;
  p->data = data;
  p->next = rl->pending;
  if (rl->pending) rl->pending->prev = p;
  rl->pending = p;
  p->rr = cr_redis_eval(rl->redis, rl->script, 1, 3, argv, lens, on_gcra, p);
  cr_buf_free(&key);
  if (!p->rr) {
    rl->pending = p->next;
    if (p->next) p->next->prev = NULL;
    free(p);
    local_check(rl, spec, hash, &r);
    cb(data, &r);
  }
}

void cr_ratelimit_headers(const cr_ratelimit_spec_t *spec, const cr_rl_result_t *r, cr_http_req_t *req) {
  char v[96];
  int window = (int)ceil(spec->burst / spec->rps);
  if (window < 1) window = 1;
  int n = snprintf(v, sizeof v, "\"burst\";q=%d;w=%d", spec->burst, window);
  cr_http_respond_header(req, "RateLimit-Policy", 16, v, (size_t)n);
  long t = (long)ceil(r->allowed ? r->reset : r->retry_after);
  n = snprintf(v, sizeof v, "\"burst\";r=%d;t=%ld", r->allowed ? r->remaining : 0, t < 0 ? 0 : t);
  cr_http_respond_header(req, "RateLimit", 9, v, (size_t)n);
  if (!r->allowed) {
    long ra = (long)ceil(r->retry_after);
    n = snprintf(v, sizeof v, "%ld", ra < 1 ? 1 : ra);
    cr_http_respond_header(req, "Retry-After", 11, v, (size_t)n);
  }
}
