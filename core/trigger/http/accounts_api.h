/* accounts_api.h - the accounts service over HTTP (issue 17), on core/svc/users.h:
 *
 *   POST /_/auth/signup   {login, password, attributes?}        -> 201 {user}
 *   POST /_/auth/confirm  {login, code}                          -> 200 {user}
 *                         {login} (no code: send a new one)      -> 202 {"ok":true}
 *   POST /_/auth/signin   {login, password}                      -> 200 tokens
 *   POST /_/auth/refresh  {refreshToken}                         -> 200 tokens
 *   POST /_/auth/signout  {refreshToken}                         -> 204
 *   POST /_/auth/forgot   {login}                                -> 202 {"ok":true}
 *   POST /_/auth/reset    {login, code, password}                -> 200 {"ok":true}
 *   GET  /_/auth/me       Authorization: Bearer ACCESS           -> 200 {user}
 *   GET  /_/auth/.well-known/jwks.json                           -> 200 the public keys
 * tokens: {"accessToken","refreshToken","expiresIn","tokenType":"Bearer"}.
 * Errors are {"error": message, "requestId": id}: 400 bad input, 401 wrong
 * credentials or token, 403 refused (disabled, unconfirmed, a hook's
 * refusal), 409 login taken, 429 throttled (Retry-After), 503 Redis or a
 * hook failed. Forgot and confirm-without-code answer the same whether the
 * login exists or not.
 *
 * And for operators, under the admin API's access rule (admin.h):
 *   GET /_/api/users[?cursor=C&limit=N] -> {"users":[...],"cursor":C|null}
 *   GET /_/api/users/{id or login}, DELETE it (204),
 *   POST /_/api/users/{id}/disable, /enable -> {user}
 *   POST /_/api/accounts/rotate-key -> {"kid": the new signing key's}
 *
 * With --accounts-cors (origins, comma-separated, or "*"), /_/auth/ answers
 * CORS preflights for those origins (methods GET and POST, headers
 * authorization and content-type) and adds the allow headers to its answers,
 * as the gateway does for a function's cors setting (policy.h).
 *
 * The hooks: a function with `triggers = { { auth = "NAME" } }` is called
 * (by name, with a JSON event, fncall.h) at that step. preSignUp,
 * preSignIn and preTokenGeneration are waited for (hook_timeout) and fail
 * closed: an error or a timeout is a 503, before anything was written;
 * customMessage, postConfirmation and postSignIn are fired and their
 * failures logged. The events and results are in the README ("Accounts"). */
#ifndef CR_ACCOUNTS_API_H
#define CR_ACCOUNTS_API_H

#include "admin.h"
#include "fncall.h"
#include "http.h"
#include "registry.h"
#include "settings.h"
#include "users.h"

typedef struct {
  cr_users_t *users;       /* NULL: the service is off, /_/auth/ is 404 */
  const cr_admin_t *admin; /* the admin API's access rule for /_/api/users */
  cr_registry_t *registry; /* where the hooks are found */
  cr_fncalls_t *fc;        /* how they are called */
  double hook_timeout;     /* s, default 5 */
  cr_cors_spec_t cors;     /* for /_/auth/ (set 0: none): preflights answered, headers on every answer */
} cr_accounts_api_t;

/* Answers req if its path is one of the above (returns 1), else 0. */
int cr_accounts_api_handle(const cr_accounts_api_t *api, cr_http_req_t *req);

#endif
