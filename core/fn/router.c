/* router.c - a segment trie: static children, one :param child, one * child. */
#include "router.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "hash.h"
#include "text.h"

typedef struct {
  unsigned methods;
  void *target;
  char *pattern;
  int nnames;
  const char *names[CR_ROUTER_MAX_PARAMS]; /* interned */
  size_t name_lens[CR_ROUTER_MAX_PARAMS];
} endpoint_t;

/* Parameter names live as long as the process: a router is replaced on every
 * reload while invocations that matched it may still read their params.
 * Names are few (the distinct :names of all routes), so they are never freed. */
static struct {
  char **items;
  int n, cap;
} names_pool;

static const char *intern(const char *s, size_t n) {
  for (int i = 0; i < names_pool.n; i++)
    if (strlen(names_pool.items[i]) == n && memcmp(names_pool.items[i], s, n) == 0) return names_pool.items[i];
  if (names_pool.n == names_pool.cap) {
    names_pool.cap = names_pool.cap ? names_pool.cap * 2 : 16;
    names_pool.items = cr_xrealloc(names_pool.items, sizeof(char *) * (size_t)names_pool.cap);
  }
  char *copy = cr_xstrndup(s, n);
  names_pool.items[names_pool.n++] = copy;
  return copy;
}

typedef struct node_s {
  char *seg; /* static segment text (NULL for the param and wild nodes) */
  size_t seglen;
  struct node_s **statics;
  int nstatics;
  struct node_s *param;
  struct node_s *wild;
  endpoint_t *eps;
  int neps;
} node_t;

/* Routes without :params or * are also found by their whole path, in one
 * hash lookup (the trie compares a segment with each static child in turn). */
typedef struct {
  char *key; /* the path without its leading '/', segments joined by '/' */
  size_t len;
  uint32_t hash;
  node_t *node;
} exact_t;

struct cr_router_s {
  node_t root;
  exact_t *exact; /* open addressing, cap a power of two, at most half full */
  size_t nexact, exact_cap;
};

/* The 64-bit hash folded to 32 bits: the table takes its low bits, and
 * FNV-1a mixes its high bits best. */
static uint32_t path_hash(const char *s, size_t n) {
  uint64_t h = cr_fnv1a(s, n);
  return (uint32_t)(h ^ (h >> 32));
}

static exact_t *exact_find(const cr_router_t *r, const char *key, size_t len, uint32_t h) {
  if (!r->exact_cap) return NULL;
  size_t mask = r->exact_cap - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    exact_t *e = &r->exact[i];
    if (!e->key) return e;
    if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0) return e;
  }
}

static void exact_add(cr_router_t *r, const char *key, size_t len, node_t *node) {
  uint32_t h = path_hash(key, len);
  exact_t *e = exact_find(r, key, len, h);
  if (e && e->key) return; /* another method of the same pattern */
  if (2 * (r->nexact + 1) > r->exact_cap) {
    size_t cap = r->exact_cap ? 2 * r->exact_cap : 16;
    exact_t *grown = cr_xcalloc(cap, sizeof *grown);
    exact_t *old = r->exact;
    size_t oldcap = r->exact_cap;
    r->exact = grown;
    r->exact_cap = cap;
    for (size_t i = 0; i < oldcap; i++)
      if (old[i].key) *exact_find(r, old[i].key, old[i].len, old[i].hash) = old[i];
    free(old);
  }
  e = exact_find(r, key, len, h);
  e->key = cr_xmalloc(len + 1);
  memcpy(e->key, key, len);
  e->key[len] = '\0';
  e->len = len;
  e->hash = h;
  e->node = node;
  r->nexact++;
}

static const struct {
  const char *name;
  unsigned bit;
} method_names[] = {{"GET", CR_M_GET},       {"HEAD", CR_M_HEAD},     {"POST", CR_M_POST},
                    {"PUT", CR_M_PUT},       {"PATCH", CR_M_PATCH},   {"DELETE", CR_M_DELETE},
                    {"OPTIONS", CR_M_OPTIONS}, {"ANY", CR_M_ANY}};

unsigned cr_method_parse(const char *s, size_t len) {
  for (size_t i = 0; i < sizeof method_names / sizeof method_names[0]; i++)
    if (strlen(method_names[i].name) == len && memcmp(method_names[i].name, s, len) == 0)
      return method_names[i].bit;
  return 0;
}

size_t cr_method_list(unsigned methods, char *out, size_t outlen) {
  size_t n = 0;
  out[0] = '\0';
  for (size_t i = 0; i < 7; i++) {
    if (!(methods & method_names[i].bit)) continue;
    int w = snprintf(out + n, outlen - n, "%s%s", n ? ", " : "", method_names[i].name);
    if (w < 0 || (size_t)w >= outlen - n) break;
    n += (size_t)w;
  }
  return n;
}

cr_router_t *cr_router_new(void) { return cr_xcalloc(1, sizeof(cr_router_t)); }

static void node_clear(node_t *n) {
  for (int i = 0; i < n->nstatics; i++) {
    node_clear(n->statics[i]);
    free(n->statics[i]);
  }
  free(n->statics);
  if (n->param) {
    node_clear(n->param);
    free(n->param);
  }
  if (n->wild) {
    node_clear(n->wild);
    free(n->wild);
  }
  for (int i = 0; i < n->neps; i++) free(n->eps[i].pattern);
  free(n->eps);
  free(n->seg);
}

void cr_router_free(cr_router_t *r) {
  if (!r) return;
  node_clear(&r->root);
  for (size_t i = 0; i < r->exact_cap; i++) free(r->exact[i].key);
  free(r->exact);
  free(r);
}

static int is_name_char(char c, int first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!first && c >= '0' && c <= '9');
}

/* One parsed segment of a pattern. */
typedef struct {
  int kind; /* 0 static, 1 param, 2 wild */
  const char *text;
  size_t len;
} pseg_t;

#define MAX_SEGS 64
#define MAX_URL_KEY 1024

static int parse_pattern(const char *pattern, pseg_t *segs, int *nsegs, char *err, size_t errlen) {
  if (pattern[0] != '/') {
    snprintf(err, errlen, "route path '%s' must start with /", pattern);
    return CR_EINVAL;
  }
  int n = 0, nparams = 0;
  const char *p = pattern + 1;
  size_t total = strlen(pattern);
  const char *end = pattern + total;
  if (end > p && end[-1] == '/') end--; /* "/users/" is "/users" */
  while (p < end) {
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *se = slash ? slash : end;
    size_t len = (size_t)(se - p);
    if (len == 0) {
      snprintf(err, errlen, "route path '%s' has an empty segment", pattern);
      return CR_EINVAL;
    }
    if (n == MAX_SEGS) {
      snprintf(err, errlen, "route path '%s' has too many segments", pattern);
      return CR_EINVAL;
    }
    pseg_t *s = &segs[n++];
    if (p[0] == ':' || p[0] == '*') {
      s->kind = p[0] == ':' ? 1 : 2;
      s->text = p + 1;
      s->len = len - 1;
      if (s->kind == 1 && s->len == 0) {
        snprintf(err, errlen, "route path '%s': ':' must be followed by a parameter name", pattern);
        return CR_EINVAL;
      }
      for (size_t i = 0; i < s->len; i++) {
        if (!is_name_char(s->text[i], i == 0)) {
          snprintf(err, errlen, "route path '%s': bad parameter name '%.*s'", pattern, (int)len, p);
          return CR_EINVAL;
        }
      }
      if (s->kind == 2 && se != end) {
        snprintf(err, errlen, "route path '%s': '*' may only be the last segment", pattern);
        return CR_EINVAL;
      }
      if (++nparams > CR_ROUTER_MAX_PARAMS) {
        snprintf(err, errlen, "route path '%s' has more than %d parameters", pattern, CR_ROUTER_MAX_PARAMS);
        return CR_EINVAL;
      }
      for (int k = 0; k < n - 1; k++) {
        size_t nl = s->kind == 2 && s->len == 0 ? 1 : s->len;
        const char *nt = s->kind == 2 && s->len == 0 ? "*" : s->text;
        size_t ol = segs[k].kind == 2 && segs[k].len == 0 ? 1 : segs[k].len;
        const char *ot = segs[k].kind == 2 && segs[k].len == 0 ? "*" : segs[k].text;
        if (segs[k].kind != 0 && nl == ol && memcmp(nt, ot, nl) == 0) {
          snprintf(err, errlen, "route path '%s' names parameter '%.*s' twice", pattern, (int)nl, nt);
          return CR_EINVAL;
        }
      }
    } else {
      s->kind = 0;
      s->text = p;
      s->len = len;
      for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= ' ' || c == '?' || c == '#' || c == 0x7f) {
          snprintf(err, errlen, "route path '%s' has a character not allowed in a path", pattern);
          return CR_EINVAL;
        }
      }
    }
    p = se + 1;
  }
  *nsegs = n;
  return 0;
}

int cr_router_check_pattern(const char *pattern, char *err, size_t errlen) {
  pseg_t segs[MAX_SEGS];
  int n;
  return parse_pattern(pattern, segs, &n, err, errlen);
}

/* Walks (creating if asked) the node for a parsed pattern. */
static node_t *walk(node_t *n, const pseg_t *segs, int nsegs, int create) {
  for (int i = 0; i < nsegs && n; i++) {
    const pseg_t *s = &segs[i];
    node_t **slot = NULL;
    if (s->kind == 1) slot = &n->param;
    else if (s->kind == 2) slot = &n->wild;
    else {
      node_t *found = NULL;
      for (int k = 0; k < n->nstatics; k++) {
        node_t *c = n->statics[k];
        if (c->seglen == s->len && memcmp(c->seg, s->text, s->len) == 0) {
          found = c;
          break;
        }
      }
      if (found || !create) {
        n = found;
        continue;
      }
      n->statics = cr_xrealloc(n->statics, sizeof(node_t *) * (size_t)(n->nstatics + 1));
      node_t *c = cr_xcalloc(1, sizeof *c);
      c->seg = cr_xmalloc(s->len + 1);
      memcpy(c->seg, s->text, s->len);
      c->seg[s->len] = '\0';
      c->seglen = s->len;
      n->statics[n->nstatics++] = c;
      n = c;
      continue;
    }
    if (!*slot && create) *slot = cr_xcalloc(1, sizeof(node_t));
    n = *slot;
  }
  return n;
}

static int find_conflict(const node_t *n, unsigned methods, void **existing) {
  if (!n) return 0;
  for (int i = 0; i < n->neps; i++) {
    if (n->eps[i].methods & methods) {
      if (existing) *existing = n->eps[i].target;
      return CR_ECONFLICT;
    }
  }
  return 0;
}

int cr_router_probe(const cr_router_t *r, unsigned methods, const char *pattern, void **existing) {
  pseg_t segs[MAX_SEGS];
  int nsegs;
  char err[8];
  if (parse_pattern(pattern, segs, &nsegs, err, sizeof err)) return CR_EINVAL;
  return find_conflict(walk((node_t *)&r->root, segs, nsegs, 0), methods, existing);
}

int cr_router_add(cr_router_t *r, unsigned methods, const char *pattern, void *target,
                  void **existing, char *err, size_t errlen) {
  pseg_t segs[MAX_SEGS];
  int nsegs;
  if (methods == 0) {
    snprintf(err, errlen, "route '%s' has no method", pattern);
    return CR_EINVAL;
  }
  if (parse_pattern(pattern, segs, &nsegs, err, errlen)) return CR_EINVAL;
  if (find_conflict(walk(&r->root, segs, nsegs, 0), methods, existing)) return CR_ECONFLICT;
  node_t *n = walk(&r->root, segs, nsegs, 1);
  n->eps = cr_xrealloc(n->eps, sizeof(endpoint_t) * (size_t)(n->neps + 1));
  endpoint_t *ep = &n->eps[n->neps];
  memset(ep, 0, sizeof *ep);
  ep->methods = methods;
  ep->target = target;
  ep->pattern = cr_xstrdup(pattern);
  for (int i = 0; i < nsegs; i++) {
    if (segs[i].kind == 0) continue;
    int star = segs[i].kind == 2 && segs[i].len == 0;
    const char *name = star ? intern("*", 1) : intern(segs[i].text, segs[i].len);
    ep->names[ep->nnames] = name;
    ep->name_lens[ep->nnames++] = strlen(name);
  }
  n->neps++;
  if (ep->nnames == 0) {
    char key[MAX_URL_KEY];
    size_t len = 0;
    int fits = 1;
    for (int i = 0; i < nsegs && fits; i++) {
      fits = len + segs[i].len + 1 < sizeof key;
      if (!fits) break;
      if (i) key[len++] = '/';
      memcpy(key + len, segs[i].text, segs[i].len);
      len += segs[i].len;
    }
    /* Without room for it in the lookup, the route is still found through the trie. */
    if (fits) exact_add(r, key, len, n);
  }
  return 0;
}

/* Compares a percent-encoded path segment with static text. */
static int seg_equal(const char *raw, size_t rawlen, const char *text, size_t len) {
  size_t j = 0;
  for (size_t i = 0; i < rawlen; i++, j++) {
    char c = raw[i];
    if (c == '%' && i + 2 < rawlen && cr_hexval(raw[i + 1]) >= 0 && cr_hexval(raw[i + 2]) >= 0) {
      c = (char)(cr_hexval(raw[i + 1]) * 16 + cr_hexval(raw[i + 2]));
      i += 2;
    }
    if (j >= len || text[j] != c) return 0;
  }
  return j == len;
}

typedef struct {
  unsigned method;
  const char *end;
  int nvals;
  const char *vals[CR_ROUTER_MAX_PARAMS];
  size_t lens[CR_ROUTER_MAX_PARAMS];
  unsigned allowed;
  cr_route_match_t *m;
  const node_t *root;
} search_t;

static const endpoint_t *pick(const node_t *n, unsigned method) {
  const endpoint_t *get = NULL;
  for (int i = 0; i < n->neps; i++) {
    if (n->eps[i].methods & method) return &n->eps[i];
    if (n->eps[i].methods & CR_M_GET) get = &n->eps[i];
  }
  return method == CR_M_HEAD ? get : NULL;
}

static int accept_at(const node_t *n, search_t *st) {
  if (n->neps == 0) return 0;
  const endpoint_t *ep = pick(n, st->method);
  if (!ep) {
    for (int i = 0; i < n->neps; i++) st->allowed |= n->eps[i].methods;
    return 0;
  }
  cr_route_match_t *m = st->m;
  m->target = ep->target;
  m->pattern = ep->pattern;
  m->nparams = ep->nnames < st->nvals ? ep->nnames : st->nvals;
  for (int i = 0; i < m->nparams; i++) {
    m->params[i].name = ep->names[i];
    m->params[i].name_len = ep->name_lens[i];
    m->params[i].value = st->vals[i];
    m->params[i].value_len = st->lens[i];
  }
  return 1;
}

static int search(const node_t *n, const char *p, search_t *st) {
  if (p >= st->end) {
    if (accept_at(n, st)) return 1;
    if (n->wild && st->nvals < CR_ROUTER_MAX_PARAMS) {
      st->vals[st->nvals] = st->end;
      st->lens[st->nvals++] = 0;
      if (accept_at(n->wild, st)) return 1;
      st->nvals--;
    }
    return 0;
  }
  const char *slash = memchr(p, '/', (size_t)(st->end - p));
  const char *se = slash ? slash : st->end;
  size_t len = (size_t)(se - p);
  const char *next = slash ? slash + 1 : st->end;
  int encoded = memchr(p, '%', len) != NULL;
  for (int i = 0; i < n->nstatics; i++) {
    const node_t *c = n->statics[i];
    int eq = encoded ? seg_equal(p, len, c->seg, c->seglen)
                     : c->seglen == len && p[0] == c->seg[0] && memcmp(p, c->seg, len) == 0;
    if (eq && search(c, next, st)) return 1;
  }
  /* A first segment "_" (also written %5F) is the platform's: only a static
   * "_" route matches there, never a :param or * (see router.h). */
  if (n == st->root && seg_equal(p, len, "_", 1)) return 0;
  if (st->nvals >= CR_ROUTER_MAX_PARAMS) return 0;
  if (n->param && len > 0) {
    st->vals[st->nvals] = p;
    st->lens[st->nvals++] = len;
    if (search(n->param, next, st)) return 1;
    st->nvals--;
  }
  if (n->wild) {
    st->vals[st->nvals] = p;
    st->lens[st->nvals++] = (size_t)(st->end - p);
    if (accept_at(n->wild, st)) return 1;
    st->nvals--;
  }
  return 0;
}

int cr_router_match(const cr_router_t *r, unsigned method, const char *path, size_t len,
                    cr_route_match_t *m) {
  m->target = NULL;
  m->nparams = 0;
  m->allowed = 0;
  if (len == 0 || path[0] != '/') return CR_ENOENT;
  const char *end = path + len;
  if (len > 1 && end[-1] == '/') end--;
  search_t st; /* vals and lens are written before they are read */
  st.method = method;
  st.end = end;
  st.nvals = 0;
  st.allowed = 0;
  st.m = m;
  st.root = &r->root;
  size_t klen = (size_t)(end - path - 1);
  if (r->nexact && !memchr(path + 1, '%', klen)) {
    const exact_t *e = exact_find(r, path + 1, klen, path_hash(path + 1, klen));
    if (e && e->key && accept_at(e->node, &st)) return 0;
  }
  if (search(&r->root, path + 1, &st)) return 0;
  if (st.allowed) {
    m->allowed = st.allowed;
    if (m->allowed & CR_M_GET) m->allowed |= CR_M_HEAD;
    return CR_EINVAL;
  }
  return CR_ENOENT;
}
