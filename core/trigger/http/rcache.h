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

#include "buf.h"

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
  uint64_t began_ns;     /* monotonic ns when the request that made it began (purges, below) */
  uint64_t until_ns;     /* monotonic ns past which this copy is dropped whatever its ttl; 0: none
                          * (a shared function's local copy: see scache.h) */
} cr_rcache_entry_t;

enum { CR_RCACHE_MISS = 0, CR_RCACHE_FRESH, CR_RCACHE_STALE };

/* max_bytes: what entries may hold in all (keys, lines and bodies). */
cr_rcache_t *cr_rcache_new(size_t max_bytes);
void cr_rcache_free(cr_rcache_t *c);
/* Looks key up at now_ms (wall) with the function's current epoch and the
 * latest purge of its path (purged_ns, monotonic, 0: none): CR_RCACHE_MISS,
 * or FRESH / STALE with *out pointing into the entry (valid until the next
 * put or free). An entry expired, out of epoch, begun at or before purged_ns,
 * or past its until_ns (at mono_ns) is dropped. */
int cr_rcache_get(cr_rcache_t *c, const char *key, size_t klen, uint64_t now_ms, uint64_t epoch,
                  uint64_t purged_ns, uint64_t mono_ns, cr_rcache_entry_t *out);
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

/* An entry as bytes for the shared cache (Redis, every node): a text head
 * "CRC1 status stored_ms ttl swr ctype_len lines_len body_len\n" (decimal;
 * ctype_len 0 for none) then ctype, lines and body. Portable between
 * machines; epoch, began_ns and until_ns are local and not kept. Appends to
 * b: 0, or CR_ENOMEM. */
int cr_rcache_encode(cr_buf_t *b, const cr_rcache_entry_t *e);
/* The entry in data (len bytes), its pointers into data (ctype is not
 * NUL-terminated there: it is copied into ctype_buf, ctype_cap bytes).
 * 0, or -1 for anything malformed (out untouched but for zeroes). */
int cr_rcache_decode(const char *data, size_t len, cr_rcache_entry_t *out, char *ctype_buf, size_t ctype_cap);

#endif
