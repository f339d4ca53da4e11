/* rcache.c - the gateway's response cache (rcache.h). */
#include "rcache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "hash.h"

typedef struct ent_s {
  struct ent_s *hnext;         /* hash chain */
  struct ent_s *lprev, *lnext; /* LRU list, most recent first */
  uint64_t hash;
  size_t klen, size;           /* size: everything it holds */
  int refreshing;
  cr_rcache_entry_t e;         /* its pointers point into data */
  char data[];                 /* key, ctype NUL, lines, body */
} ent_t;

struct cr_rcache_s {
  ent_t **buckets;
  size_t nbuckets, nentries, bytes, max_bytes;
  ent_t *head, *tail;
};

cr_rcache_t *cr_rcache_new(size_t max_bytes) {
  cr_rcache_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->nbuckets = 1024;
  c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
  if (!c->buckets) {
    free(c);
    return NULL;
  }
  c->max_bytes = max_bytes;
  return c;
}

void cr_rcache_free(cr_rcache_t *c) {
  if (!c) return;
  for (ent_t *e = c->head, *n; e; e = n) {
    n = e->lnext;
    free(e);
  }
  free(c->buckets);
  free(c);
}

static ent_t **slot_of(cr_rcache_t *c, uint64_t h) { return &c->buckets[h & (c->nbuckets - 1)]; }

static void unlink_ent(cr_rcache_t *c, ent_t *e) {
  for (ent_t **p = slot_of(c, e->hash); *p; p = &(*p)->hnext)
    if (*p == e) {
      *p = e->hnext;
      break;
    }
  if (e->lprev) e->lprev->lnext = e->lnext;
  else c->head = e->lnext;
  if (e->lnext) e->lnext->lprev = e->lprev;
  else c->tail = e->lprev;
  c->nentries--;
  c->bytes -= e->size;
  free(e);
}

static void to_front(cr_rcache_t *c, ent_t *e) {
  if (c->head == e) return;
  if (e->lprev) e->lprev->lnext = e->lnext;
  if (e->lnext) e->lnext->lprev = e->lprev;
  else c->tail = e->lprev;
  e->lprev = NULL;
  e->lnext = c->head;
  if (c->head) c->head->lprev = e;
  c->head = e;
  if (!c->tail) c->tail = e;
}

static ent_t *find(cr_rcache_t *c, const char *key, size_t klen, uint64_t h) {
  for (ent_t *e = *slot_of(c, h); e; e = e->hnext)
    if (e->hash == h && e->klen == klen && memcmp(e->data, key, klen) == 0) return e;
  return NULL;
}

int cr_rcache_get(cr_rcache_t *c, const char *key, size_t klen, uint64_t now_ms, uint64_t epoch,
                  uint64_t purged_ns, uint64_t mono_ns, cr_rcache_entry_t *out) {
  uint64_t h = cr_fnv1a(key, klen);
  ent_t *e = find(c, key, klen, h);
  if (!e) return CR_RCACHE_MISS;
  double age = now_ms >= e->e.stored_ms ? (double)(now_ms - e->e.stored_ms) / 1000.0 : 0;
  if (e->e.epoch != epoch || age >= e->e.ttl + e->e.swr || (purged_ns && e->e.began_ns <= purged_ns) ||
      (e->e.until_ns && mono_ns >= e->e.until_ns)) {
    unlink_ent(c, e);
    return CR_RCACHE_MISS;
  }
  to_front(c, e);
  *out = e->e;
  return age < e->e.ttl ? CR_RCACHE_FRESH : CR_RCACHE_STALE;
}

int cr_rcache_refreshing(cr_rcache_t *c, const char *key, size_t klen) {
  ent_t *e = find(c, key, klen, cr_fnv1a(key, klen));
  if (!e) return 0;
  int was = e->refreshing;
  e->refreshing = 1;
  return was;
}

int cr_rcache_put(cr_rcache_t *c, const char *key, size_t klen, const cr_rcache_entry_t *v) {
  size_t ctl = v->ctype ? strlen(v->ctype) + 1 : 0;
  size_t size = sizeof(ent_t) + klen + ctl + v->lines_len + v->body_len;
  if (size > c->max_bytes / 8) return -1;
  uint64_t h = cr_fnv1a(key, klen);
  ent_t *old = find(c, key, klen, h);
  if (old) unlink_ent(c, old);
  while (c->tail && c->bytes + size > c->max_bytes) unlink_ent(c, c->tail);
  ent_t *e = malloc(size);
  if (!e) return -1;
  memset(e, 0, sizeof *e);
  e->hash = h;
  e->klen = klen;
  e->size = size;
  e->e = *v;
  char *p = e->data;
  memcpy(p, key, klen);
  p += klen;
  if (ctl) {
    memcpy(p, v->ctype, ctl);
    e->e.ctype = p;
    p += ctl;
  }
  memcpy(p, v->lines, v->lines_len);
  e->e.lines = p;
  p += v->lines_len;
  if (v->body_len) memcpy(p, v->body, v->body_len);
  e->e.body = p;
  ent_t **s = slot_of(c, h);
  e->hnext = *s;
  *s = e;
  e->lnext = c->head;
  if (c->head) c->head->lprev = e;
  c->head = e;
  if (!c->tail) c->tail = e;
  c->nentries++;
  c->bytes += size;
  return 0;
}

void cr_rcache_refresh_failed(cr_rcache_t *c, const char *key, size_t klen) {
  ent_t *e = find(c, key, klen, cr_fnv1a(key, klen));
  if (e) e->refreshing = 0;
}

void cr_rcache_counts(const cr_rcache_t *c, size_t *entries, size_t *bytes) {
  if (entries) *entries = c->nentries;
  if (bytes) *bytes = c->bytes;
}

int cr_rcache_encode(cr_buf_t *b, const cr_rcache_entry_t *e) {
  size_t ctl = e->ctype ? strlen(e->ctype) : 0;
  if (cr_buf_printf(b, "CRC1 %d %llu %.3f %.3f %zu %zu %zu\n", e->status, (unsigned long long)e->stored_ms, e->ttl,
                    e->swr, ctl, e->lines_len, e->body_len) ||
      (ctl && cr_buf_append(b, e->ctype, ctl)) || (e->lines_len && cr_buf_append(b, e->lines, e->lines_len)) ||
      (e->body_len && cr_buf_append(b, e->body, e->body_len)))
    return CR_ENOMEM;
  return 0;
}

/* One decimal field of the head at *p (before end), then a space or the newline. */
static int head_num(const char **p, const char *end, int last, unsigned long long *out) {
  const char *q = *p;
  unsigned long long v = 0;
  int digits = 0;
  while (q < end && *q >= '0' && *q <= '9' && digits < 19) v = v * 10 + (unsigned)(*q++ - '0'), digits++;
  if (!digits || q >= end || *q != (last ? '\n' : ' ')) return -1;
  *out = v;
  *p = q + 1;
  return 0;
}

/* A time field: whole digits, a point and up to 3 decimals (what encode writes). */
static int head_secs(const char **p, const char *end, double *out) {
  unsigned long long whole = 0, frac = 0;
  const char *q = *p;
  int digits = 0, fd = 0;
  while (q < end && *q >= '0' && *q <= '9' && digits < 9) whole = whole * 10 + (unsigned)(*q++ - '0'), digits++;
  if (!digits) return -1;
  if (q < end && *q == '.') {
    q++;
    while (q < end && *q >= '0' && *q <= '9' && fd < 3) frac = frac * 10 + (unsigned)(*q++ - '0'), fd++;
  }
  if (q >= end || *q != ' ') return -1;
  double f = (double)frac;
  for (int i = 0; i < fd; i++) f /= 10;
  *out = (double)whole + f;
  *p = q + 1;
  return 0;
}

int cr_rcache_decode(const char *data, size_t len, cr_rcache_entry_t *out, char *ctype_buf, size_t ctype_cap) {
  memset(out, 0, sizeof *out);
  const char *p = data, *end = data + len;
  unsigned long long status, stored, ctl, ll, bl;
  double ttl, swr;
  if (len < 5 || memcmp(p, "CRC1 ", 5) != 0) return -1;
  p += 5;
  if (head_num(&p, end, 0, &status) || head_num(&p, end, 0, &stored) || head_secs(&p, end, &ttl) ||
      head_secs(&p, end, &swr) || head_num(&p, end, 0, &ctl) || head_num(&p, end, 0, &ll) ||
      head_num(&p, end, 1, &bl))
    return -1;
  size_t rest = (size_t)(end - p);
  if (status < 100 || status > 599 || ttl <= 0 || ctl >= ctype_cap || ctl > rest || ll > rest - ctl ||
      bl != rest - ctl - ll)
    return -1;
  if (memchr(p, '\0', ctl)) return -1;
  memcpy(ctype_buf, p, ctl);
  ctype_buf[ctl] = '\0';
  out->status = (int)status;
  out->stored_ms = stored;
  out->ttl = ttl;
  out->swr = swr;
  out->ctype = ctl ? ctype_buf : NULL;
  out->lines = p + ctl;
  out->lines_len = ll;
  out->body = p + ctl + ll;
  out->body_len = bl;
  return 0;
}
