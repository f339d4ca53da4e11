/* calls.c - crescent.invoke on fncall.h and async.h (calls.h). */
#include "calls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "invoke.h"

/* A call in flight: which of the two it is, and the stdlib's continuation. */
typedef struct {
  int kind;
  void *handle;
  cr_stdlib_call_done done;
  void *data;
} pending_t;

static void on_called(void *data, const cr_fncall_result_t *r) {
  pending_t *p = data;
  cr_stdlib_call_done done = p->done;
  void *d = p->data;
  free(p);
  if (r->status == CR_FNCALL_OK) done(d, NULL, r->result ? r->result : "", r->result_len);
  else done(d, r->err, NULL, 0);
}

static void on_sent(void *data, const char *err, const char *id) {
  pending_t *p = data;
  cr_stdlib_call_done done = p->done;
  void *d = p->data;
  free(p);
  done(d, err, id, id ? strlen(id) : 0);
}

static void *start(void *ud, struct cr_invocation_s *inv, int kind, const char *name, size_t nlen, const char *event,
                   size_t elen, double delay, cr_stdlib_call_done done, void *data, char *err, size_t errlen) {
  cr_invoke_calls_t *c = ud;
  pending_t *p = malloc(sizeof *p);
  if (!p) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  p->kind = kind;
  p->done = done;
  p->data = data;
  if (kind == 0) {
    cr_fncall_opts_t o = {0};
    cr_fncall_opts_from(inv, &o);
    p->handle = cr_fncall_start(c->fc, name, nlen, event, elen, &o, on_called, p);
  } else if (c->async) {
    p->handle = cr_async_send(c->async, name, nlen, event, elen, delay, inv->reqid, inv->trace, on_sent, p);
  } else {
    free(p);
    snprintf(err, errlen, "redis unavailable");
    return NULL;
  }
  if (!p->handle) {
    free(p);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  return p;
}

static void cancel(void *ud, void *handle) {
  (void)ud;
  pending_t *p = handle;
  if (p->kind == 0) cr_fncall_cancel(p->handle);
  else cr_async_send_cancel(p->handle);
  free(p); /* the callbacks will not come */
}

const cr_stdlib_calls_t cr_invoke_stdlib_calls = {start, cancel};
