/* router.h - maps a method and a path to a target (a function), with :params.
 *
 * Patterns are paths of segments: static text, `:name` (one segment, captured)
 * and a final `*` or `*name` (the rest of the path, possibly empty). When
 * several patterns match, static beats :param beats *, segment by segment.
 * Two routes conflict when their patterns have the same shape (parameter names
 * aside) and share a method; the router refuses the second and names the first.
 * A GET route also answers HEAD unless a HEAD route exists for the pattern.
 * Static segments are compared percent-decoded (%5F is "_").
 *
 * Reserved paths: a path whose first segment is "_" (/_, /_/...) is the
 * platform's. Only a pattern whose first segment is the static "_" matches
 * it (settings.c lets only platform functions declare one); a first-segment
 * :param or * never does, so `GET /:any/health` cannot answer /_/health.
 *
 * The router stores pointers to targets and never owns them. */
#ifndef CR_ROUTER_H
#define CR_ROUTER_H

#include <stddef.h>

enum {
  CR_M_GET = 1 << 0,
  CR_M_HEAD = 1 << 1,
  CR_M_POST = 1 << 2,
  CR_M_PUT = 1 << 3,
  CR_M_PATCH = 1 << 4,
  CR_M_DELETE = 1 << 5,
  CR_M_OPTIONS = 1 << 6,
  CR_M_OTHER = 1 << 7,
  CR_M_ANY = 0xff
};

#define CR_ROUTER_MAX_PARAMS 16

typedef struct cr_router_s cr_router_t;

typedef struct {
  const char *name; /* lives as long as the process (routers come and go with reloads) */
  size_t name_len;
  const char *value; /* points into the matched path: raw, not percent-decoded */
  size_t value_len;
} cr_route_param_t;

typedef struct {
  void *target;
  const char *pattern; /* the matched route's pattern, owned by the router */
  int nparams;
  cr_route_param_t params[CR_ROUTER_MAX_PARAMS];
  unsigned allowed; /* on CR_EINVAL: the methods the path does answer */
} cr_route_match_t;

/* Building a router is set-up code: out of memory aborts (alloc.h). Looking
 * routes up allocates nothing. */
cr_router_t *cr_router_new(void);
void cr_router_free(cr_router_t *r);

/* Checks a pattern's syntax; on error writes why to err. */
int cr_router_check_pattern(const char *pattern, char *err, size_t errlen);

/* Adds methods+pattern -> target. On a conflict returns CR_ECONFLICT and sets
 * *existing to the target already there; on a bad pattern CR_EINVAL. */
int cr_router_add(cr_router_t *r, unsigned methods, const char *pattern, void *target,
                  void **existing, char *err, size_t errlen);
/* Would adding succeed? Same results as cr_router_add, without adding. */
int cr_router_probe(const cr_router_t *r, unsigned methods, const char *pattern, void **existing);

/* Finds the route for method (one CR_M_* bit) and path (without query).
 * Returns 0 with m filled; CR_ENOENT when no pattern matches the path (404);
 * CR_EINVAL when patterns match but none for this method (405; m->allowed). */
int cr_router_match(const cr_router_t *r, unsigned method, const char *path, size_t len,
                    cr_route_match_t *m);

/* Copies a match: the used params only (a whole cr_route_match_t is ~550 bytes). */
static inline void cr_route_match_copy(cr_route_match_t *dst, const cr_route_match_t *src) {
  dst->target = src->target;
  dst->pattern = src->pattern;
  dst->nparams = src->nparams;
  dst->allowed = src->allowed;
  for (int i = 0; i < src->nparams; i++) dst->params[i] = src->params[i];
}

/* Method names <-> bits. cr_method_parse() returns 0 for unknown names;
 * "ANY" is CR_M_ANY. cr_method_list() writes "GET, HEAD, POST" style lists. */
unsigned cr_method_parse(const char *s, size_t len);
size_t cr_method_list(unsigned methods, char *out, size_t outlen);

#endif
