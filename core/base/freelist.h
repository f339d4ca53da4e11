/* freelist.h - freed objects of one size kept for reuse, so the request path
 * allocates nothing in steady state (invocations, Redis commands, stdlib
 * calls). The link to the next kept object is stored in the object itself.
 * At most max objects are kept; the rest go back to malloc. */
#ifndef CR_FREELIST_H
#define CR_FREELIST_H

#include <stdlib.h>
#include <string.h>

typedef struct {
  void *head;
  int n, max;
} cr_freelist_t;

#define CR_FREELIST_INIT(max) {NULL, 0, (max)}

/* A kept object (its bytes as they were left) or a new one (uninitialized);
 * NULL when memory ran out. */
static inline void *cr_freelist_take(cr_freelist_t *f, size_t size) {
  void *p = f->head;
  if (!p) return malloc(size < sizeof(void *) ? sizeof(void *) : size);
  memcpy(&f->head, p, sizeof(void *));
  f->n--;
  return p;
}

static inline void cr_freelist_give(cr_freelist_t *f, void *p) {
  if (f->n >= f->max) {
    free(p);
    return;
  }
  memcpy(p, &f->head, sizeof(void *));
  f->head = p;
  f->n++;
}

/* Frees every kept object. */
static inline void cr_freelist_drain(cr_freelist_t *f) {
  while (f->head) {
    void *p = f->head;
    memcpy(&f->head, p, sizeof(void *));
    free(p);
  }
  f->n = 0;
}

#endif
