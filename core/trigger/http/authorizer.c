/* authorizer.c - authorizer functions on routes (authorizer.h). */
#include "authorizer.h"

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "clock.h"
#include "fncall.h"
#include "hash.h"
#include "jsonread.h"
#include "jsontext.h"
#include "log.h"
#include "url.h"

#define DIGEST_LEN 32
#define NBUCKETS 4096 /* a power of two */

typedef struct {
  unsigned char digest[DIGEST_LEN]; /* SHA-256 of the identity */
  char version[24];                 /* the authorizer's version label */
  const char *authorizer;           /* its name */
  size_t hash;
} akey_t;

/* A decision kept. */
typedef struct entry_s {
  struct entry_s *hnext;
  struct entry_s *prev, *next; /* most recently used first */
  size_t hash;
  unsigned char digest[DIGEST_LEN];
  char version[24];
  char *authorizer;
  uint64_t stored_ns;
  int allow;
  char principal[CR_AUTHZ_MAX_PRINCIPAL + 1];
  char *context;
  size_t context_len;
  size_t bytes; /* what it costs, for the bound */
} entry_t;

/* A check waiting for a call in flight. */
typedef struct waiter_s {
  struct waiter_s *next;
  cr_http_req_t *req;
  const cr_fn_t *fn;
  const cr_fnver_t *ver; /* held by gwauth's caller until cb */
  cr_gwauth_cb cb;
  void *data;
} waiter_t;

/* An authorizer call in flight, and who waits for it. */
typedef struct flight_s {
  struct flight_s *hnext;
  struct flight_s *prev, *next; /* every flight, to cancel them */
  cr_authz_t *z;
  int shared;  /* in the table: later checks with the same key join it */
  size_t hash;
  unsigned char digest[DIGEST_LEN];
  char version[24];
  char *authorizer;
  cr_fncall_t *call;
  waiter_t *waiters, **tail;
  int nwaiters;
} flight_t;

struct cr_authz_s {
  cr_authz_opts_t opts;
  entry_t *buckets[NBUCKETS];
  flight_t *fbuckets[NBUCKETS];
  entry_t lru; /* sentinel */
  size_t nentries, bytes;
  flight_t *flights; /* all, shared or not */
  cr_buf_t event;    /* scratch: an event's JSON */
  cr_buf_t ident;    /* scratch: an identity */
};

/* --- the decision ------------------------------------------------------------------------------ */

static int put_value(cr_buf_t *b, const cr_jr_val_t *v, size_t limit) {
  if (b->len > limit) return CR_ETOOBIG;
  int rc = 0;
  switch (v->type) {
  case CR_JR_NULL: return cr_buf_append_str(b, "null");
  case CR_JR_FALSE: return cr_buf_append_str(b, "false");
  case CR_JR_TRUE: return cr_buf_append_str(b, "true");
  case CR_JR_NUMBER: return cr_json_number(b, v->num);
  case CR_JR_STRING: return cr_json_escape_limited(b, v->str, v->len, limit);
  case CR_JR_ARRAY:
  case CR_JR_OBJECT:
    rc = cr_buf_putc(b, v->type == CR_JR_ARRAY ? '[' : '{');
    /* (error codes kept as they are: CR_ETOOBIG is the answer's fault, CR_ENOMEM the worker's) */
    for (const cr_jr_val_t *c = v->child; c && !rc; c = c->next) {
      if (c != v->child) rc = cr_buf_putc(b, ',');
      if (!rc && v->type == CR_JR_OBJECT && !(rc = cr_json_escape_limited(b, c->key, c->keylen, limit)))
        rc = cr_buf_putc(b, ':');
      if (!rc) rc = put_value(b, c, limit);
    }
    return rc ? rc : cr_buf_putc(b, v->type == CR_JR_ARRAY ? ']' : '}');
  }
  return CR_EINVAL;
}

static int bad(char *err, size_t errlen, const char *msg) {
  snprintf(err, errlen, "%s", msg);
  return -1;
}

int cr_authz_parse(const char *json, size_t len, cr_authz_decision_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (len == 0) return bad(err, errlen, "it returned nothing");
  if (len > CR_AUTHZ_MAX_ANSWER) return bad(err, errlen, "its answer is over 64 KB");
  char jerr[128];
  cr_jr_doc_t *d = cr_jr_parse(json, len, jerr, sizeof jerr);
  if (!d) {
    snprintf(err, errlen, "its answer is not JSON C can read: %s", jerr);
    return -1;
  }
  const cr_jr_val_t *root = cr_jr_root(d), *allow = cr_jr_get(root, "allow");
  int rc = -1;
  if (root->type != CR_JR_OBJECT) {
    bad(err, errlen, "its answer is not a table { allow = true|false, ... }");
  } else if (!allow || (allow->type != CR_JR_TRUE && allow->type != CR_JR_FALSE)) {
    bad(err, errlen, "'allow' is not true or false");
  } else if (allow->type == CR_JR_FALSE) {
    rc = 0;
  } else {
    const cr_jr_val_t *p = cr_jr_get(root, "principal"), *c = cr_jr_get(root, "context");
    if (!p || p->type != CR_JR_STRING || p->len == 0 || p->len > CR_AUTHZ_MAX_PRINCIPAL)
      bad(err, errlen, "'principal' is not a string of 1 to 255 bytes");
    else if (memchr(p->str, '\0', p->len))
      bad(err, errlen, "'principal' holds a NUL byte");
    else if (c && c->type != CR_JR_NULL && c->type != CR_JR_OBJECT)
      bad(err, errlen, "'context' is not a table of names");
    else {
      cr_buf_t b = CR_BUF_INIT;
      int wrc = c && c->type == CR_JR_OBJECT ? put_value(&b, c, CR_AUTHZ_MAX_CONTEXT) : cr_buf_append_str(&b, "{}");
      if (wrc == 0 && b.len > CR_AUTHZ_MAX_CONTEXT) wrc = CR_ETOOBIG;
      if (wrc) {
        cr_buf_free(&b);
        bad(err, errlen, wrc == CR_ETOOBIG ? "'context' is over 8 KB as JSON" : "out of memory");
      } else {
        out->allow = 1;
        memcpy(out->principal, p->str, p->len);
        out->principal[p->len] = '\0';
        out->context = b.data; /* taken over */
        out->context_len = b.len;
        rc = 0;
      }
    }
  }
  cr_jr_free(d);
  return rc;
}

void cr_authz_decision_free(cr_authz_decision_t *d) {
  if (!d) return;
  free(d->context);
  d->context = NULL;
}

int cr_authz_identity(const cr_http_req_t *req, const char *spec, cr_buf_t *out) {
  out->len = 0;
  if (strncmp(spec, "header.", 7) == 0) {
    const char *name = spec + 7;
    size_t nl = strlen(name);
    int found = 0;
    for (int i = 0; i < req->nheaders; i++) {
      const cr_http_header_t *h = &req->headers[i];
      if (h->name_len != nl || memcmp(h->name, name, nl) != 0) continue;
      if (found && cr_buf_append(out, nl == 6 && memcmp(name, "cookie", 6) == 0 ? "; " : ", ", 2)) return -1;
      if (cr_buf_append(out, h->value, h->value_len)) return -1;
      found = 1;
    }
    return found && out->len ? 0 : -1;
  }
  if (strncmp(spec, "query.", 6) != 0) return -1;
  const char *name = spec + 6, *q = req->query, *end = q + req->query_len;
  size_t nl = strlen(name);
  while (q < end) {
    const char *amp = memchr(q, '&', (size_t)(end - q));
    const char *pe = amp ? amp : end;
    const char *eq = memchr(q, '=', (size_t)(pe - q));
    if ((size_t)((eq ? eq : pe) - q) == nl && memcmp(q, name, nl) == 0) {
      if (!eq || pe == eq + 1) return -1;
      return cr_url_decode(eq + 1, (size_t)(pe - eq - 1), 1, out) == 0 && out->len ? 0 : -1;
    }
    q = pe + 1;
  }
  return -1;
}

/* --- the table of decisions ------------------------------------------------------------------- */

cr_authz_t *cr_authz_new(const cr_authz_opts_t *opts) {
  cr_authz_t *z = calloc(1, sizeof *z);
  if (!z) return NULL;
  if (opts) z->opts = *opts;
  if (!z->opts.max_entries) z->opts.max_entries = CR_AUTHZ_CACHE_ENTRIES;
  if (!z->opts.max_bytes) z->opts.max_bytes = CR_AUTHZ_CACHE_BYTES;
  z->lru.prev = z->lru.next = &z->lru;
  return z;
}

static void entry_free(entry_t *e) {
  free(e->authorizer);
  free(e->context);
  free(e);
}

static void flight_drop(flight_t *f) {
  for (waiter_t *w = f->waiters, *n; w; w = n) {
    n = w->next;
    free(w);
  }
  free(f->authorizer);
  free(f);
}

void cr_authz_free(cr_authz_t *z) {
  if (!z) return;
  for (entry_t *e = z->lru.next, *n; e != &z->lru; e = n) {
    n = e->next;
    entry_free(e);
  }
  for (flight_t *f = z->flights, *n; f; f = n) {
    n = f->next;
    cr_fncall_cancel(f->call);
    flight_drop(f);
  }
  cr_buf_free(&z->event);
  cr_buf_free(&z->ident);
  free(z);
}

/* k's version and authorizer set, and its digest: its hash. */
static void key_hash(akey_t *k) {
  uint64_t h;
  memcpy(&h, k->digest, sizeof h);
  h ^= cr_fnv1a_more(cr_fnv1a(k->authorizer, strlen(k->authorizer) + 1), k->version, strlen(k->version));
  k->hash = (size_t)h;
}

static int key_make(akey_t *k, const char *authorizer, const char *version, const char *identity, size_t ilen) {
  unsigned int dl = 0;
  if (EVP_Digest(identity, ilen, k->digest, &dl, EVP_sha256(), NULL) != 1 || dl != DIGEST_LEN)
    return -1;
  snprintf(k->version, sizeof k->version, "%s", version);
  k->authorizer = authorizer;
  key_hash(k);
  return 0;
}

#define KEY_EQ(x, k)                                                                             \
  ((x)->hash == (k)->hash && memcmp((x)->digest, (k)->digest, DIGEST_LEN) == 0 &&                \
   strcmp((x)->version, (k)->version) == 0 && strcmp((x)->authorizer, (k)->authorizer) == 0)

static void lru_unlink(entry_t *e) {
  e->prev->next = e->next;
  e->next->prev = e->prev;
}

static void lru_front(cr_authz_t *z, entry_t *e) {
  e->next = z->lru.next;
  e->prev = &z->lru;
  z->lru.next->prev = e;
  z->lru.next = e;
}

static void entry_remove(cr_authz_t *z, entry_t *e) {
  entry_t **pp = &z->buckets[e->hash & (NBUCKETS - 1)];
  while (*pp != e) pp = &(*pp)->hnext;
  *pp = e->hnext;
  lru_unlink(e);
  z->nentries--;
  z->bytes -= e->bytes;
  entry_free(e);
}

/* The decision kept for k if it is younger than ttl_ns (an older one is dropped), or NULL. */
static entry_t *cache_find(cr_authz_t *z, const akey_t *k, uint64_t ttl_ns, uint64_t now) {
  for (entry_t *e = z->buckets[k->hash & (NBUCKETS - 1)]; e; e = e->hnext) {
    if (!KEY_EQ(e, k)) continue;
    if (now - e->stored_ns >= ttl_ns) {
      /* Too old for this route; past the longest ttl it is too old for any. */
      if (now - e->stored_ns >= 3600ull * 1000000000ull) entry_remove(z, e);
      return NULL;
    }
    lru_unlink(e);
    lru_front(z, e);
    return e;
  }
  return NULL;
}

static void cache_store(cr_authz_t *z, const akey_t *k, const cr_authz_decision_t *d) {
  for (entry_t *e = z->buckets[k->hash & (NBUCKETS - 1)]; e; e = e->hnext)
    if (KEY_EQ(e, k)) {
      entry_remove(z, e);
      break;
    }
  entry_t *e = calloc(1, sizeof *e);
  if (!e) return;
  e->authorizer = strdup(k->authorizer);
  e->context = d->allow ? malloc(d->context_len + 1) : NULL;
  if (!e->authorizer || (d->allow && !e->context)) {
    entry_free(e);
    return;
  }
  if (d->allow) {
    memcpy(e->context, d->context, d->context_len);
    e->context[d->context_len] = '\0';
    e->context_len = d->context_len;
  }
  e->hash = k->hash;
  memcpy(e->digest, k->digest, DIGEST_LEN);
  memcpy(e->version, k->version, sizeof e->version);
  e->allow = d->allow;
  snprintf(e->principal, sizeof e->principal, "%s", d->principal);
  e->stored_ns = cr_clock_ns();
  e->bytes = sizeof *e + strlen(e->authorizer) + 1 + (e->context ? e->context_len + 1 : 0);
  while (z->nentries && (z->nentries >= z->opts.max_entries || z->bytes + e->bytes > z->opts.max_bytes))
    entry_remove(z, z->lru.prev);
  entry_t **b = &z->buckets[e->hash & (NBUCKETS - 1)];
  e->hnext = *b;
  *b = e;
  lru_front(z, e);
  z->nentries++;
  z->bytes += e->bytes;
}

void cr_authz_keep(cr_authz_t *z, const char *authorizer, const char *version, const char *identity, size_t ilen,
                   const cr_authz_decision_t *d) {
  akey_t k;
  if (key_make(&k, authorizer, version, identity, ilen) == 0) cache_store(z, &k, d);
}

int cr_authz_kept(cr_authz_t *z, const char *authorizer, const char *version, const char *identity, size_t ilen,
                  double ttl, cr_authz_decision_t *out) {
  memset(out, 0, sizeof *out);
  akey_t k;
  if (key_make(&k, authorizer, version, identity, ilen)) return 0;
  const entry_t *e = cache_find(z, &k, (uint64_t)(ttl * 1e9), cr_clock_ns());
  if (!e) return 0;
  out->allow = e->allow;
  snprintf(out->principal, sizeof out->principal, "%s", e->principal);
  if (e->context) {
    if (!(out->context = malloc(e->context_len + 1))) return 0;
    memcpy(out->context, e->context, e->context_len + 1);
    out->context_len = e->context_len;
  }
  return 1;
}

size_t cr_authz_kept_count(const cr_authz_t *z, size_t *bytes) {
  if (bytes) *bytes = z->bytes;
  return z->nentries;
}

/* --- answers ---------------------------------------------------------------------------------- */

static void count(cr_authz_t *z, const cr_fn_t *fn, size_t off) {
  cr_shm_fn_t *f = cr_shm_fn(z->opts.shm, fn->slot);
  if (f) atomic_fetch_add_explicit((_Atomic uint64_t *)(void *)((char *)f + off), 1, memory_order_relaxed);
}

/* Fails closed: 503 and the reason in the log. */
static void fail_closed(cr_authz_t *z, cr_http_req_t *req, const cr_fn_t *fn, const cr_fnver_t *ver, const char *why,
                        const char *areqid) {
  count(z, fn, offsetof(cr_shm_fn_t, authz_failed));
  const char *name = ver->settings.auth.authorizer;
  char msg[640];
  int n = snprintf(msg, sizeof msg, "auth: authorizer %s failed, request refused: %s", name, why);
  cr_buf_t *lb = cr_log_begin(CR_LOG_ERROR, msg, n < (int)sizeof msg ? (size_t)n : sizeof msg - 1, fn->name, req->id);
  if (lb) {
    cr_log_str(lb, "authorizer", name, strlen(name));
    if (areqid && areqid[0]) cr_log_str(lb, "authorizerRequestId", areqid, strlen(areqid));
    cr_log_end(lb);
  }
  cr_gwauth_refuse(req, ver, 503, NULL, "authorization unavailable", 0);
}

/* Answers one check with a decision: cb(0, identity) or 403 and cb(1). */
static void decide(cr_authz_t *z, cr_http_req_t *req, const cr_fn_t *fn, const cr_fnver_t *ver, int allow,
                   const char *principal, const char *context, size_t context_len, const char *areqid,
                   cr_gwauth_cb cb, void *data) {
  if (!allow) {
    count(z, fn, offsetof(cr_shm_fn_t, authz_denied));
    const char *name = ver->settings.auth.authorizer;
    cr_buf_t *lb = cr_log_begin(CR_LOG_INFO, "auth: authorizer denied the request", 35, fn->name, req->id);
    if (lb) {
      cr_log_str(lb, "authorizer", name, strlen(name));
      if (areqid && areqid[0]) cr_log_str(lb, "authorizerRequestId", areqid, strlen(areqid));
      cr_log_end(lb);
    }
    /* API Gateway's answer to an explicit deny: the caller is known, and not allowed. */
    cr_gwauth_refuse(req, ver, 403, NULL, "forbidden", 0);
    cb(data, 1, NULL);
    return;
  }
  cr_identity_t *id = calloc(1, sizeof *id);
  char *json = id ? malloc(context_len + 1) : NULL;
  if (!json) {
    free(id);
    cr_http_respond_error(req, 503, "server out of memory");
    cb(data, 1, NULL);
    return;
  }
  memcpy(json, context, context_len);
  json[context_len] = '\0';
  id->method = CR_AUTH_AUTHORIZER;
  snprintf(id->principal, sizeof id->principal, "%s", principal);
  id->json = json;
  id->json_len = context_len;
  cb(data, 0, id);
}

/* --- calls ------------------------------------------------------------------------------------ */

/* The event: { source = "authorizer", identity =, method =, path =, headers = } (repeated
 * headers joined as event.headers joins them). */
static int make_event(cr_buf_t *b, const cr_http_req_t *req, const cr_buf_t *identity) {
  b->len = 0;
  int rc = cr_buf_append_str(b, "{\"source\":\"authorizer\",\"identity\":") ||
           cr_json_escape(b, identity->data ? identity->data : "", identity->len) ||
           cr_buf_append_str(b, ",\"method\":") || cr_json_escape(b, req->method_name, strlen(req->method_name)) ||
           cr_buf_append_str(b, ",\"path\":") || cr_json_escape(b, req->path, req->path_len) ||
           cr_buf_append_str(b, ",\"headers\":{");
  int first = 1;
  for (int i = 0; i < req->nheaders && !rc; i++) {
    const cr_http_header_t *h = &req->headers[i];
    int seen = 0;
    for (int j = 0; j < i && !seen; j++)
      seen = req->headers[j].name_len == h->name_len && memcmp(req->headers[j].name, h->name, h->name_len) == 0;
    if (seen) continue;
    rc = (!first && cr_buf_putc(b, ',')) || cr_json_escape(b, h->name, h->name_len) || cr_buf_putc(b, ':');
    first = 0;
    int more = 0;
    for (int j = i + 1; j < req->nheaders && !more; j++)
      more = req->headers[j].name_len == h->name_len && memcmp(req->headers[j].name, h->name, h->name_len) == 0;
    if (!more) {
      rc = rc || cr_json_escape(b, h->value, h->value_len);
      continue;
    }
    /* Repeated: its values joined first. */
    cr_buf_t all = CR_BUF_INIT;
    const char *sep = h->name_len == 6 && memcmp(h->name, "cookie", 6) == 0 ? "; " : ", ";
    for (int j = i; j < req->nheaders && !rc; j++) {
      const cr_http_header_t *o = &req->headers[j];
      if (o->name_len != h->name_len || memcmp(o->name, h->name, h->name_len) != 0) continue;
      rc = (j != i && cr_buf_append(&all, sep, 2)) || cr_buf_append(&all, o->value, o->value_len);
    }
    rc = rc || cr_json_escape(b, all.data ? all.data : "", all.len);
    cr_buf_free(&all);
  }
  return rc || cr_buf_append_str(b, "}}");
}

static void on_call(void *data, const cr_fncall_result_t *r);

/* Starts the authorizer's call for the key k (its first waiter w): 0, or -1 (w not taken). */
static int flight_start(cr_authz_t *z, const akey_t *k, int shared, const cr_http_req_t *req,
                        const cr_buf_t *identity, waiter_t *w) {
  flight_t *f = calloc(1, sizeof *f);
  if (!f || !(f->authorizer = strdup(k->authorizer)) || make_event(&z->event, req, identity)) {
    if (f) free(f->authorizer);
    free(f);
    return -1;
  }
  f->z = z;
  f->hash = k->hash;
  memcpy(f->digest, k->digest, DIGEST_LEN);
  memcpy(f->version, k->version, sizeof f->version);
  /* Its own timeout, at most CR_AUTHZ_TIMEOUT_S; a trigger's call (depth 0), under the request's id. */
  cr_fncall_opts_t o = {.depth = 0, .deadline_ns = cr_clock_ns() + CR_AUTHZ_TIMEOUT_S * 1000000000ull,
                        .parent_reqid = req->id};
  f->call = cr_fncall_start(z->opts.fncalls, f->authorizer, strlen(f->authorizer), z->event.data, z->event.len, &o,
                            on_call, f);
  cr_buf_reset(&z->event, 16 * 1024);
  if (!f->call) {
    free(f->authorizer);
    free(f);
    return -1;
  }
  f->waiters = w;
  f->tail = &w->next;
  f->nwaiters = 1;
  f->next = z->flights;
  if (z->flights) z->flights->prev = f;
  z->flights = f;
  if (shared) {
    f->shared = 1;
    flight_t **b = &z->fbuckets[f->hash & (NBUCKETS - 1)];
    f->hnext = *b;
    *b = f;
  }
  count(z, w->fn, offsetof(cr_shm_fn_t, authz_calls));
  return 0;
}

static void flight_unlink(cr_authz_t *z, flight_t *f) {
  if (f->shared) {
    flight_t **pp = &z->fbuckets[f->hash & (NBUCKETS - 1)];
    while (*pp != f) pp = &(*pp)->hnext;
    *pp = f->hnext;
    f->shared = 0;
  }
  if (f->prev) f->prev->next = f->next;
  else z->flights = f->next;
  if (f->next) f->next->prev = f->prev;
}

static void on_call(void *data, const cr_fncall_result_t *r) {
  flight_t *f = data;
  cr_authz_t *z = f->z;
  /* Out of the table before anyone is answered: a callback may check again. */
  flight_unlink(z, f);
  cr_authz_decision_t d;
  char why[600];
  int ok = 0;
  if (r->status != CR_FNCALL_OK) {
    snprintf(why, sizeof why, "%s", r->err ? r->err : "failed");
  } else if (cr_authz_parse(r->result, r->result_len, &d, why, sizeof why) == 0) {
    ok = 1;
    /* Kept under the version that decided (a reload may have come meanwhile). */
    akey_t k = {.authorizer = f->authorizer};
    memcpy(k.digest, f->digest, DIGEST_LEN);
    snprintf(k.version, sizeof k.version, "%s", r->version && r->version[0] ? r->version : f->version);
    key_hash(&k);
    int keep = 0;
    for (waiter_t *w = f->waiters; w && !keep; w = w->next) keep = w->ver->settings.auth.ttl > 0;
    if (keep) cache_store(z, &k, &d);
  }
  for (waiter_t *w = f->waiters, *n; w; w = n) {
    n = w->next;
    if (!ok) {
      fail_closed(z, w->req, w->fn, w->ver, why, r->reqid);
      w->cb(w->data, 1, NULL);
    } else {
      decide(z, w->req, w->fn, w->ver, d.allow, d.principal, d.context, d.context_len, r->reqid, w->cb, w->data);
    }
    free(w);
  }
  f->waiters = NULL;
  if (ok) cr_authz_decision_free(&d);
  flight_drop(f);
}

void cr_authz_check(cr_authz_t *z, cr_http_req_t *req, const cr_fn_t *fn, const cr_fnver_t *ver, cr_gwauth_cb cb,
                    void *data) {
  const cr_auth_spec_t *a = &ver->settings.auth;
  const char *identity_spec = a->identity ? a->identity : "header.authorization";
  if (cr_authz_identity(req, identity_spec, &z->ident)) {
    const char *challenge = strcmp(identity_spec, "header.authorization") == 0 ? "Bearer realm=\"crescent\""
                                                                               : "Authorizer realm=\"crescent\"";
    cr_gwauth_refuse(req, ver, 401, challenge, "missing credentials", 0);
    cb(data, 1, NULL);
    return;
  }
  if (!z->opts.fncalls || !a->authorizer) {
    fail_closed(z, req, fn, ver, "this worker cannot call functions", NULL);
    cb(data, 1, NULL);
    return;
  }
  /* The key: the authorizer's version now ("" when it has none: its call will say why). */
  const cr_fn_t *afn = z->opts.registry ? cr_registry_find(z->opts.registry, a->authorizer) : NULL;
  const char *label = afn && afn->current ? afn->current->label : "";
  akey_t k;
  if (key_make(&k, a->authorizer, label, z->ident.data, z->ident.len)) {
    fail_closed(z, req, fn, ver, "cannot digest the identity", NULL);
    cb(data, 1, NULL);
    return;
  }
  int share = a->ttl > 0;
  if (share) {
    uint64_t now = cr_clock_ns();
    const entry_t *e = cache_find(z, &k, (uint64_t)(a->ttl * 1e9), now);
    if (e) {
      count(z, fn, offsetof(cr_shm_fn_t, authz_hits));
      decide(z, req, fn, ver, e->allow, e->principal, e->context, e->context_len, NULL, cb, data);
      return;
    }
  }
  waiter_t *w = calloc(1, sizeof *w);
  if (!w) {
    cr_http_respond_error(req, 503, "server out of memory");
    cb(data, 1, NULL);
    return;
  }
  *w = (waiter_t){.req = req, .fn = fn, .ver = ver, .cb = cb, .data = data};
  if (share)
    for (flight_t *f = z->fbuckets[k.hash & (NBUCKETS - 1)]; f; f = f->hnext) {
      if (!KEY_EQ(f, &k)) continue;
      if (f->nwaiters >= CR_AUTHZ_MAX_WAITERS) {
        free(w);
        fail_closed(z, req, fn, ver, "too many requests wait for its call", NULL);
        cb(data, 1, NULL);
        return;
      }
      count(z, fn, offsetof(cr_shm_fn_t, authz_hits));
      *f->tail = w;
      f->tail = &w->next;
      f->nwaiters++;
      return;
    }
  if (flight_start(z, &k, share, req, &z->ident, w)) {
    free(w);
    cr_http_respond_error(req, 503, "server out of memory");
    cb(data, 1, NULL);
  }
}
