/* apikeys.c - API keys on gateway routes (apikeys.h). */
#include "apikeys.h"

#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "clock.h"
#include "hash.h"
#include "log.h"
#include "modules.h"
#include "policy.h"

/* --- the pure parts ----------------------------------------------------------------------------- */

static int b64url_char(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int cr_apikey_wellformed(const char *key, size_t len) {
  if (len != CR_APIKEY_LEN || memcmp(key, CR_APIKEY_PREFIX, 4) != 0) return 0;
  for (size_t i = 4; i < len; i++)
    if (!b64url_char((unsigned char)key[i])) return 0;
  /* 32 bytes are 42 characters and 2 bits: the last one holds 4 zero bits. */
  return strchr("AEIMQUYcgkosw048", key[len - 1]) != NULL;
}

int cr_apikey_make(char out[CR_APIKEY_LEN + 1]) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  unsigned char r[33];
  size_t got = 0;
  while (got < 32) {
    ssize_t n = getrandom(r + got, 32 - got, 0);
    if (n <= 0) return -1;
    got += (size_t)n;
  }
  r[32] = 0;
  memcpy(out, CR_APIKEY_PREFIX, 4);
  size_t o = 4;
  for (size_t i = 0; i < 33; i += 3) {
    uint32_t v = (uint32_t)r[i] << 16 | (uint32_t)(i + 1 < 33 ? r[i + 1] : 0) << 8 | (i + 2 < 33 ? r[i + 2] : 0);
    for (int j = 0; j < 4 && o < CR_APIKEY_LEN; j++) out[o++] = abc[(v >> (18 - 6 * j)) & 63];
  }
  out[CR_APIKEY_LEN] = '\0';
  return 0;
}

void cr_apikey_hash(const char *key, size_t len, char hex[65]) {
  unsigned char md[32];
  unsigned int n = 0;
  if (!EVP_Digest(key, len, md, &n, EVP_sha256(), NULL) || n != 32) memset(md, 0, sizeof md);
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
  hex[64] = '\0';
}

int cr_apikey_name_ok(const char *name, size_t len) {
  if (len == 0 || len > CR_APIKEY_NAME_MAX) return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)name[i];
    int alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) return 0;
  }
  return 1;
}

int cr_apikey_glob(const char *p, size_t pl, const char *s, size_t sl) {
  /* The classic one-star backtracking: a later star never needs an earlier
   * one to move, because no star crosses a '/', so the pattern's k-th '/'
   * meets the name's k-th '/' whatever the stars took. */
  size_t pi = 0, si = 0, star = (size_t)-1, mark = 0;
  while (si < sl) {
    if (pi < pl && p[pi] == '*') {
      star = pi++;
      mark = si;
    } else if (pi < pl && p[pi] == s[si]) {
      pi++;
      si++;
    } else if (star != (size_t)-1 && s[mark] != '/') {
      pi = star + 1;
      si = ++mark;
    } else {
      return 0;
    }
  }
  while (pi < pl && p[pi] == '*') pi++;
  return pi == pl;
}

int cr_apikey_scopes_parse(const char *l, size_t n, cr_buf_t *out, char *err, size_t errlen) {
  size_t i = 0;
  int count = 0;
  while (i < n && l[i] == ' ') i++;
  if (i == n) return 0;
  for (;;) {
    while (i < n && l[i] == ' ') i++;
    size_t s = i;
    while (i < n && l[i] != ',') i++;
    size_t e = i;
    while (e > s && l[e - 1] == ' ') e--;
    if (e == s) {
      snprintf(err, errlen, "an empty function pattern in the list");
      return -1;
    }
    if (e - s > CR_APIKEY_PATTERN_MAX) {
      snprintf(err, errlen, "a function pattern is longer than %d bytes", CR_APIKEY_PATTERN_MAX);
      return -1;
    }
    for (size_t j = s; j < e; j++) {
      unsigned char c = (unsigned char)l[j];
      if (c <= ' ' || c >= 0x7f) {
        snprintf(err, errlen, "a function pattern may not hold spaces, control characters or non-ASCII bytes");
        return -1;
      }
    }
    if (++count > CR_APIKEY_SCOPES_MAX) {
      snprintf(err, errlen, "more than %d function patterns", CR_APIKEY_SCOPES_MAX);
      return -1;
    }
    if ((out->len && cr_buf_putc(out, ',')) || cr_buf_append(out, l + s, e - s)) {
      snprintf(err, errlen, "out of memory");
      return -1;
    }
    if (i == n) return 0;
    i++; /* the comma */
  }
}

int cr_apikey_in_scope(const char *scopes, const char *fn) {
  if (!scopes || !scopes[0]) return 1;
  size_t fl = strlen(fn);
  for (const char *p = scopes; *p;) {
    const char *e = strchr(p, ',');
    size_t pl = e ? (size_t)(e - p) : strlen(p);
    if (cr_apikey_glob(p, pl, fn, fl)) return 1;
    if (!e) break;
    p = e + 1;
  }
  return 0;
}

/* --- the check --------------------------------------------------------------------------------- */

/* What a worker keeps of the keys it saw, by hash: what never changes while
 * a key exists. Open addressing, at most CACHE_MAX; when full it starts over
 * (each key then costs one more peek). */
#define CACHE_MAX 1024
#define TOUCH_MS 60000 /* lastUsed written at most this often per key per worker */

typedef struct {
  char sha[65]; /* "": empty */
  char name[CR_APIKEY_NAME_MAX + 1];
  char *scopes;        /* malloc'd; "" every function */
  uint64_t touched_ms; /* when this worker last asked for lastUsed (wall clock) */
} entry_t;

enum { PEEK, USE };

typedef struct pending_s {
  cr_apikeys_t *k;
  struct pending_s *next, *prev;
  cr_redis_req_t *rr;
  cr_http_req_t *req;
  const cr_fn_t *fn;
  const cr_fnver_t *ver;
  cr_gwauth_cb cb;
  void *data;
  int stage;
  char sha[65];
  char name[CR_APIKEY_NAME_MAX + 1];
} pending_t;

struct cr_apikeys_s {
  cr_redis_t *redis;
  cr_shm_t *shm;
  char prefix[96]; /* "<prefix>{keys}:" */
  int script;
  entry_t *cache; /* 2 * CACHE_MAX slots, or NULL until first used */
  int ncache;
  pending_t *pending;
  uint64_t warned_ns;
};

static const char challenge[] = "ApiKey realm=\"crescent\", Bearer realm=\"crescent\"";

cr_apikeys_t *cr_apikeys_new(cr_redis_t *redis, const char *prefix, cr_shm_t *shm) {
  cr_apikeys_t *k = calloc(1, sizeof *k);
  if (!k) return NULL;
  k->redis = redis;
  k->shm = shm;
  snprintf(k->prefix, sizeof k->prefix, "%s{keys}:", prefix ? prefix : "cr:");
  k->script = -1;
  for (int i = 0; i < cr_stdlib_nscripts; i++)
    if (strcmp(cr_stdlib_scripts[i].name, "apikey_check") == 0) k->script = i;
  return k;
}

static void cache_clear(cr_apikeys_t *k) {
  if (!k->cache) return;
  for (int i = 0; i < 2 * CACHE_MAX; i++) free(k->cache[i].scopes);
  memset(k->cache, 0, sizeof *k->cache * 2 * CACHE_MAX);
  k->ncache = 0;
}

void cr_apikeys_free(cr_apikeys_t *k) {
  if (!k) return;
  while (k->pending) {
    pending_t *p = k->pending;
    k->pending = p->next;
    cr_redis_cancel(p->rr);
    free(p);
  }
  cache_clear(k);
  free(k->cache);
  free(k);
}

static size_t slot_of(const char *sha) { return (size_t)(cr_fnv1a(sha, 64) % (2 * CACHE_MAX)); }

static entry_t *cache_find(cr_apikeys_t *k, const char *sha) {
  if (!k->cache) return NULL;
  for (size_t i = slot_of(sha);; i = (i + 1) % (2 * CACHE_MAX)) {
    if (!k->cache[i].sha[0]) return NULL;
    if (memcmp(k->cache[i].sha, sha, 64) == 0) return &k->cache[i];
  }
}

static void cache_put(cr_apikeys_t *k, const char *sha, const char *name, size_t nlen, const char *scopes,
                      size_t slen) {
  if (nlen > CR_APIKEY_NAME_MAX) return;
  if (!k->cache && !(k->cache = calloc(2 * CACHE_MAX, sizeof *k->cache))) return;
  if (cache_find(k, sha)) return;
  if (k->ncache >= CACHE_MAX) cache_clear(k);
  char *sc = malloc(slen + 1);
  if (!sc) return;
  memcpy(sc, scopes, slen);
  sc[slen] = '\0';
  size_t i = slot_of(sha);
  while (k->cache[i].sha[0]) i = (i + 1) % (2 * CACHE_MAX);
  entry_t *e = &k->cache[i];
  memcpy(e->sha, sha, 65);
  memcpy(e->name, name, nlen);
  e->name[nlen] = '\0';
  e->scopes = sc;
  e->touched_ms = 0;
  k->ncache++;
}

/* Removes sha's entry (a revoked key): the run after it is put back in place. */
static void cache_drop(cr_apikeys_t *k, const char *sha) {
  entry_t *e = cache_find(k, sha);
  if (!e) return;
  size_t cap = 2 * CACHE_MAX, i = (size_t)(e - k->cache);
  free(e->scopes);
  memset(e, 0, sizeof *e);
  k->ncache--;
  for (size_t j = (i + 1) % cap; k->cache[j].sha[0]; j = (j + 1) % cap) {
    entry_t moved = k->cache[j];
    memset(&k->cache[j], 0, sizeof moved);
    size_t s = slot_of(moved.sha);
    while (k->cache[s].sha[0]) s = (s + 1) % cap;
    k->cache[s] = moved;
  }
}

static void count_unavailable(cr_apikeys_t *k, const cr_fn_t *fn, const char *why) {
  cr_shm_fn_t *f = k->shm && fn->slot >= 0 ? cr_shm_fn(k->shm, fn->slot) : NULL;
  if (f) atomic_fetch_add_explicit(&f->auth_unavailable, 1, memory_order_relaxed);
  uint64_t now = cr_clock_coarse_ns();
  if (!k->warned_ns || now - k->warned_ns > 10000000000ull) {
    k->warned_ns = now ? now : 1;
    cr_log(CR_LOG_WARN, fn->name, NULL, "auth: API keys cannot be checked, refusing with 503: %s", why);
  }
}

static void unavailable(cr_apikeys_t *k, cr_http_req_t *req, const cr_fn_t *fn, const cr_fnver_t *ver,
                        const char *why) {
  count_unavailable(k, fn, why);
  cr_gwauth_refuse(req, ver, 503, NULL, "authentication unavailable", 1);
}

/* The key a request brings: X-Api-Key, else Authorization: Bearer. */
static const char *key_of(const cr_http_req_t *req, size_t *len) {
  const cr_http_header_t *h = cr_http_req_header(req, "x-api-key", 9);
  const char *v = NULL;
  size_t n = 0;
  if (h) {
    v = h->value;
    n = h->value_len;
  } else if ((h = cr_http_req_header(req, "authorization", 13)) && h->value_len > 7 &&
             strncasecmp(h->value, "bearer ", 7) == 0) {
    v = h->value + 7;
    n = h->value_len - 7;
  }
  while (n && *v == ' ') v++, n--;
  while (n && v[n - 1] == ' ') n--;
  *len = n;
  return n ? v : NULL;
}

static void on_reply(void *data, redisReply *reply, const char *err);

/* Sends the script for p (its stage); 0, or -1 when it could not be sent. */
static int send_check(pending_t *p, int touch) {
  cr_apikeys_t *k = p->k;
  char key[200];
  int kl = snprintf(key, sizeof key, "%skey:%s", k->prefix, p->sha);
  const char *argv[] = {key, k->prefix, p->stage == PEEK ? "peek" : "use", touch ? "1" : "0"};
  size_t lens[] = {(size_t)kl, strlen(k->prefix), strlen(argv[2]), 1};
  p->rr = cr_redis_eval(k->redis, k->script, 1, 4, argv, lens, on_reply, p);
  if (!p->rr) return -1;
  p->next = k->pending;
  p->prev = NULL;
  if (k->pending) k->pending->prev = p;
  k->pending = p;
  return 0;
}

static void unlink_pending(pending_t *p) {
  cr_apikeys_t *k = p->k;
  if (p->prev) p->prev->next = p->next;
  else k->pending = p->next;
  if (p->next) p->next->prev = p->prev;
  p->next = p->prev = NULL;
  p->rr = NULL;
}

/* The request's answer when the key passed its scope: USE (counts it). */
static void use(pending_t *p) {
  entry_t *e = cache_find(p->k, p->sha);
  uint64_t now = cr_wall_ms();
  int touch = !e || now - e->touched_ms >= TOUCH_MS;
  if (e && touch) e->touched_ms = now;
  p->stage = USE;
  if (send_check(p, touch)) {
    unavailable(p->k, p->req, p->fn, p->ver, "Redis is unreachable");
    cr_gwauth_cb cb = p->cb;
    void *d = p->data;
    free(p);
    cb(d, 1, NULL);
  }
}

static long long int_at(const redisReply *r, size_t i) {
  if (i >= r->elements) return 0;
  const redisReply *e = r->element[i];
  if (e->type == REDIS_REPLY_INTEGER) return e->integer;
  if (e->type == REDIS_REPLY_STRING) return strtoll(e->str, NULL, 10);
  return 0;
}

static const char *str_at(const redisReply *r, size_t i, size_t *len) {
  if (i >= r->elements || r->element[i]->type != REDIS_REPLY_STRING) {
    *len = 0;
    return "";
  }
  *len = r->element[i]->len;
  return r->element[i]->str;
}

/* 429 past the plan: Retry-After, and the plan's RateLimit fields. */
static void refuse_plan(cr_http_req_t *req, const cr_fnver_t *ver, const redisReply *r, int quota) {
  size_t rl;
  const char *rps_s = str_at(r, 1, &rl);
  double rps = rl ? strtod(rps_s, NULL) : 0;
  long long burst = int_at(r, 2), t_us = int_at(r, 4), q = int_at(r, 5), used = int_at(r, 6),
            left = int_at(r, 7);
  long retry = quota ? (long)left : (long)((t_us + 999999) / 1000000);
  if (retry < 1) retry = 1;
  cr_buf_t b = CR_BUF_INIT, pol = CR_BUF_INIT, now = CR_BUF_INIT;
  cr_http_error_body_id(&b, req, quota ? "quota exceeded" : "rate limit exceeded");
  if (rps > 0) {
    long w = (long)((double)burst / rps + 0.999999);
    cr_buf_printf(&pol, "\"key-burst\";q=%lld;w=%ld", burst, w < 1 ? 1 : w);
    cr_buf_printf(&now, "\"key-burst\";r=0;t=%ld", quota ? 0 : retry);
  }
  if (q > 0) {
    size_t pl;
    const char *per = str_at(r, 8, &pl);
    int month = pl == 5 && memcmp(per, "month", 5) == 0;
    cr_buf_printf(&pol, "%s\"key-quota\";q=%lld;w=%d", pol.len ? ", " : "", q, month ? 2592000 : 86400);
    cr_buf_printf(&now, "%s\"key-quota\";r=%lld;t=%lld", now.len ? ", " : "", used >= q ? 0 : q - used, left);
  }
  cr_http_respond_start(req, 429);
  char v[24];
  int n = snprintf(v, sizeof v, "%ld", retry);
  cr_http_respond_header(req, "Retry-After", 11, v, (size_t)n);
  if (pol.len) cr_http_respond_header(req, "RateLimit-Policy", 16, pol.data, pol.len);
  if (now.len) cr_http_respond_header(req, "RateLimit", 9, now.data, now.len);
  if (ver->settings.cors.set) cr_cors_headers(&ver->settings.cors, req);
  cr_http_respond_finish(req, "application/json", b.data, b.len);
  cr_buf_free(&b);
  cr_buf_free(&pol);
  cr_buf_free(&now);
}

static void on_reply(void *data, redisReply *reply, const char *err) {
  pending_t *p = data;
  cr_apikeys_t *k = p->k;
  unlink_pending(p);
  int answered = 1;
  cr_identity_t *id = NULL;
  if (err || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
      reply->element[0]->type != REDIS_REPLY_INTEGER) {
    unavailable(k, p->req, p->fn, p->ver, err ? err : "unexpected reply from apikey_check");
    goto done;
  }
  long long status = reply->element[0]->integer;
  if (status == 0) {
    cache_drop(k, p->sha);
    cr_log(CR_LOG_INFO, p->fn->name, p->req->id, "auth: unknown or revoked API key");
    cr_gwauth_refuse(p->req, p->ver, 401, challenge, "invalid API key", 0);
    goto done;
  }
  if (p->stage == PEEK) {
    size_t nl, sl;
    const char *name = str_at(reply, 1, &nl), *scopes = str_at(reply, 2, &sl);
    if (nl == 0 || nl > CR_APIKEY_NAME_MAX) {
      unavailable(k, p->req, p->fn, p->ver, "a key record without a name");
      goto done;
    }
    memcpy(p->name, name, nl);
    p->name[nl] = '\0';
    cache_put(k, p->sha, name, nl, scopes, sl);
    char *sc = strndup(scopes, sl);
    int ok = sc && cr_apikey_in_scope(sc, p->fn->name);
    free(sc);
    if (!ok) {
      cr_log(CR_LOG_INFO, p->fn->name, p->req->id, "auth: API key '%s' is not scoped to this function", p->name);
      cr_gwauth_refuse(p->req, p->ver, 403, NULL, "this key may not call this function", 0);
      goto done;
    }
    use(p);
    return;
  }
  if (status == 2 || status == 3) {
    refuse_plan(p->req, p->ver, reply, status == 3);
    goto done;
  }
  if (status != 1) {
    cr_log(CR_LOG_ERROR, p->fn->name, p->req->id, "auth: API key '%s' is on a plan that no longer exists", p->name);
    cr_gwauth_refuse(p->req, p->ver, 503, NULL, "authentication is misconfigured", 0);
    goto done;
  }
  id = calloc(1, sizeof *id);
  if (!id) {
    cr_http_respond_error(p->req, 503, "server out of memory");
    goto done;
  }
  id->method = CR_AUTH_APIKEY;
  snprintf(id->principal, sizeof id->principal, "%s", p->name);
  snprintf(id->key, sizeof id->key, "%s", p->name);
  answered = 0;
done:;
  cr_gwauth_cb cb = p->cb;
  void *d = p->data;
  free(p);
  cb(d, answered, id);
}

void cr_apikeys_check(cr_apikeys_t *k, cr_http_req_t *req, const cr_fn_t *fn, const cr_fnver_t *ver, cr_gwauth_cb cb,
                      void *data) {
  size_t len;
  const char *key = key_of(req, &len);
  if (!key) {
    cr_gwauth_refuse(req, ver, 401, challenge, "missing credentials", 0);
    cb(data, 1, NULL);
    return;
  }
  if (!cr_apikey_wellformed(key, len)) {
    cr_log(CR_LOG_INFO, fn->name, req->id, "auth: not an API key");
    cr_gwauth_refuse(req, ver, 401, challenge, "invalid API key", 0);
    cb(data, 1, NULL);
    return;
  }
  if (!k || !k->redis || k->script < 0 || !cr_redis_connected(k->redis)) {
    if (k) unavailable(k, req, fn, ver, !k->redis ? "no Redis (--redis none)" : "Redis is unreachable");
    else cr_gwauth_refuse(req, ver, 503, NULL, "authentication unavailable", 1);
    cb(data, 1, NULL);
    return;
  }
  pending_t *p = calloc(1, sizeof *p);
  if (!p) {
    cr_http_respond_error(req, 503, "server out of memory");
    cb(data, 1, NULL);
    return;
  }
  p->k = k;
  p->req = req;
  p->fn = fn;
  p->ver = ver;
  p->cb = cb;
  p->data = data;
  cr_apikey_hash(key, len, p->sha);
  const entry_t *e = cache_find(k, p->sha);
  if (e && cr_apikey_in_scope(e->scopes, fn->name)) {
    snprintf(p->name, sizeof p->name, "%s", e->name);
    use(p);
    return;
  }
  /* Not seen yet, or out of scope: is it still a key? (A revoked one is 401, not 403.) */
  p->stage = PEEK;
  if (send_check(p, 0)) {
    free(p);
    unavailable(k, req, fn, ver, "Redis is unreachable");
    cb(data, 1, NULL);
  }
}

void cr_apikeys_check_hook(void *k, cr_http_req_t *req, const cr_fn_t *fn, const cr_fnver_t *ver, cr_gwauth_cb cb,
                           void *data) {
  cr_apikeys_check(k, req, fn, ver, cb, data);
}
