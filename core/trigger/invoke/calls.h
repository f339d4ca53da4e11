/* calls.h - crescent.invoke's calls (stdlib/modules.h's cr_stdlib_calls_t)
 * made with fncall.h (invoke.call) and async.h (invoke.async). */
#ifndef CR_CALLS_H
#define CR_CALLS_H

#include "async.h"
#include "fncall.h"
#include "modules.h"

typedef struct {
  cr_fncalls_t *fc;
  cr_async_t *async; /* NULL: invoke.async fails with "redis unavailable" */
} cr_invoke_calls_t;

/* Give it to cr_stdlib_set_calls with a cr_invoke_calls_t as ud. */
extern const cr_stdlib_calls_t cr_invoke_stdlib_calls;

#endif
