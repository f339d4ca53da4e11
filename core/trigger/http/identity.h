/* identity.h - what the gateway's auth step hands on and how it refuses
 * (gwauth.h says which method answers what). Its own module so that the
 * auth methods in modules of their own (authorizer.h) share it with gwauth
 * without depending on gwauth. */
#ifndef CR_IDENTITY_H
#define CR_IDENTITY_H

#include <stddef.h>

#include "http.h"
#include "registry.h"
#include "settings.h"

typedef struct lua_State lua_State;

/* Who a request comes from (malloc'd; the call owns it once it passed). */
typedef struct {
  cr_auth_kind_t method; /* CR_AUTH_JWT, _APIKEY, _AUTHORIZER or _USER */
  char principal[256];   /* the JWT's sub, the key's name, the authorizer's principal: "" when none */
  char key[128];         /* the API key's name (apikey), or "" */
  char *json;            /* a JSON object: the token's claims (jwt, user) or the authorizer's
                            context, or NULL */
  size_t json_len;
} cr_identity_t;

void cr_identity_free(cr_identity_t *id);
/* Pushes event.auth for id (a table) onto L. */
void cr_identity_push(lua_State *L, const cr_identity_t *id);

/* The outcome of a check: answered (the request got its 401/403/429/503)
 * or passed with id (NULL for a public route; the callee takes it). */
typedef void (*cr_gwauth_cb)(void *data, int answered, cr_identity_t *id);

/* Answers req with an auth refusal: status, an optional WWW-Authenticate
 * challenge, msg as the error; with ver's CORS headers, and Retry-After
 * when retry_after > 0 (seconds). */
void cr_gwauth_refuse(cr_http_req_t *req, const cr_fnver_t *ver, int status, const char *challenge, const char *msg,
                      long retry_after);

#endif
