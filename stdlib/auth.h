/* auth.h - the primitive under crescent.auth (stdlib/auth.lua): the accounts
 * service (core/svc/users.h) from functions. auth_call(op, ...) starts one
 * op for the running invocation and yields until its answer, as JSON text
 * the module decodes; verify is synchronous (no I/O: the keys are in
 * memory). Without the service (--accounts off) every call answers nil,
 * "accounts are off". Functions are trusted with the directory: these calls
 * run no hooks (a hook calling them would recurse) and sign-ups they make
 * send no code. */
#ifndef CR_STDLIB_AUTH_H
#define CR_STDLIB_AUTH_H

#include "users.h"

typedef struct lua_State lua_State;

/* Pushes auth_call bound to *users (read at each call: may be set after the state was made). */
void cr_auth_push_primitive(lua_State *L, cr_users_t *const *users);

#endif
