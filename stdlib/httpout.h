/* httpout.h - the primitive under crescent.http (stdlib/http.lua): one outbound
 * request for the running invocation, which yields until the answer.
 *
 * The request goes through the worker's cr_outbound_t (core/svc/outbound.h)
 * with the invocation's egress policy (the function's `egress` setting,
 * the server's --egress-private, crescent's own listener: core/base/egress.h),
 * its bytes charged to the function's memory (the vm's meter), its deadline
 * the call's timeout capped by the invocation's time left less a margin (a
 * tenth of it, at most 50 ms), so the function sees "timeout" and can still
 * answer. At most max_requests calls per invocation. The answer's table is
 * built in a protected call on the instance's main state under the strict
 * memory limit, then handed to the coroutine. The invocation's counters
 * (cr_invocation_t's http_*) feed the report line and the meters. */
#ifndef CR_STDLIB_HTTPOUT_H
#define CR_STDLIB_HTTPOUT_H

#include <stddef.h>

#include "egress.h"
#include "outbound.h"

typedef struct lua_State lua_State;

typedef struct {
  cr_outbound_t *ob;            /* NULL: calls fail with "http unavailable" */
  const cr_egress_self_t *self; /* crescent's own listener, or NULL */
  int allow_private;            /* --egress-private */
  size_t max_response;          /* bytes of an answer's body (--http-max-response, default 6 MB) */
  int max_requests;             /* calls per invocation (--http-max-requests, default 50) */
} cr_http_config_t;

#define CR_HTTP_DEFAULT_MAX_RESPONSE (6u * 1024 * 1024)
#define CR_HTTP_DEFAULT_MAX_REQUESTS 50

/* Pushes the primitive http_request(level, method, url, headers, body,
 * json, timeout, redirects, maxBody, insecure), bound to cfg (which must
 * outlive the state). level: the stack level of the user's call, for
 * argument errors. */
void cr_http_push_primitive(lua_State *L, const cr_http_config_t *cfg);

#endif
