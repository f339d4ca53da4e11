/* alloc.h - allocation that cannot fail, for set-up code.
 *
 * crescent has two out-of-memory policies, by where the code runs:
 *
 *  - Set-up code allocates with cr_xmalloc() and friends: when memory runs
 *    out they log "out of memory" and abort(), as Redis's zmalloc does.
 *    Set-up code is everything that builds what requests later use: the
 *    command line and configuration, the master's registry, reloads and
 *    validation (loader, reload, the validator process), the routes (router,
 *    registry, in the master and when a worker applies the master's
 *    changes), the file watcher, the managed redis-server, and the `crescent`
 *    commands. Half a configuration or half a registry is worse than none: a
 *    failure handled in one place and ignored in the next leaves a server
 *    that serves wrong routes or a worker that silently lacks a version.
 *    A worker that aborts is restarted by the master from its registry.
 *
 *  - The request path (HTTP, gateway, invoke, pool, vm, the stdlib, JSON,
 *    the Redis client) keeps checking every allocation and fails the one
 *    request or call (a 500, a Lua memory error, "out of memory"), so one
 *    large request never takes a worker and its other requests down. Code
 *    shared with it (buf, wire, json) returns CR_ENOMEM and leaves the
 *    choice to its caller.
 *
 * A size of 0 allocates one byte, so NULL always means failure. */
#ifndef CR_ALLOC_H
#define CR_ALLOC_H

#include <stddef.h>

void *cr_xmalloc(size_t n);
void *cr_xcalloc(size_t count, size_t size);
void *cr_xrealloc(void *p, size_t n);
char *cr_xstrdup(const char *s);
/* At most n bytes of s, NUL-terminated. */
char *cr_xstrndup(const char *s, size_t n);

/* Logs "out of memory" (with the size that failed) and aborts: for set-up
 * code whose allocation went through another API (a cr_buf_t append). */
__attribute__((noreturn)) void cr_oom(size_t n);

#endif
