/* rcache.h - the gateway's response cache: answers of functions with a
 * `cache = { ttl, vary, staleWhileRevalidate }` setting, per worker, in
 * memory, bounded in bytes (least recently used out first).
 *
 * An entry is found by its key (the gateway makes it: function slot and
 * version, path and query or the varied parts, the principal; see
 * gateway.c) and holds what answers a hit: status, content type, the
 * function's header lines and the body. It is fresh for ttl seconds, then
 * stale for swr more, then gone. An entry also carries the function's purge
 * epoch when it was stored; a lookup with another epoch misses (purges go
 * through shared memory, so every worker sees them). Pure data structure:
 * no I/O, no loop. */
#ifndef CR_RCACHE_H
#define CR_RCACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct cr_rcache_s cr_rcache_t;

typedef struct {
  int status;
  const char *ctype;     /* NUL-terminated, or NULL */
  const char *lines;     /* "Name: value\r\n" lines */
  size_t lines_len;
  const char *body;
  size_t body_len;
  uint64_t stored_ms;    /* wall clock */
  double ttl, swr;       /* seconds */
  uint64_t epoch;
} cr_rcache_entry_t;

enum { CR_RCACHE_MISS = 0, CR_RCACHE_FRESH, CR_RCACHE_STALE };

/* max_bytes: what entries may hold in all (keys, lines and bodies). */
cr_rcache_t *cr_rcache_new(size_t max_bytes);
void cr_rcache_free(cr_rcache_t *c);
/* Looks key up at now_ms with the function's current epoch: CR_RCACHE_MISS,
 * or FRESH / STALE with *out pointing into the entry (valid until the next
 * put or free). An expired or out-of-epoch entry is dropped. */
int cr_rcache_get(cr_rcache_t *c, const char *key, size_t klen, uint64_t now_ms, uint64_t epoch,
                  cr_rcache_entry_t *out);
/* Stores (a copy of) e under key, replacing an entry there; 0, or -1 when
 * it is too big for the cache (over an eighth of it) or memory ran out. */
int cr_rcache_put(cr_rcache_t *c, const char *key, size_t klen, const cr_rcache_entry_t *e);
/* Marks key's stale entry as being refreshed (one request goes to the
 * function; the others keep the stale answer); 1 when it already was. */
int cr_rcache_refreshing(cr_rcache_t *c, const char *key, size_t klen);
/* The refresh of key's entry ended without a new answer to keep: the next
 * request refreshes again instead of the stale answer being served until it expires. */
void cr_rcache_refresh_failed(cr_rcache_t *c, const char *key, size_t klen);
/* Entries and bytes held (for tests and metrics). */
void cr_rcache_counts(const cr_rcache_t *c, size_t *entries, size_t *bytes);

#endif
