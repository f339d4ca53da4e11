/* identity.c - who a request comes from, and auth refusals (identity.h). */
#include "identity.h"

#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "policy.h"

void cr_identity_free(cr_identity_t *id) {
  if (!id) return;
  free(id->json);
  free(id);
}

void cr_identity_push(lua_State *L, const cr_identity_t *id) {
  static const char *const methods[] = {[CR_AUTH_JWT] = "jwt", [CR_AUTH_APIKEY] = "apikey",
                                        [CR_AUTH_AUTHORIZER] = "authorizer", [CR_AUTH_USER] = "user"};
  lua_createtable(L, 0, 4);
  lua_pushstring(L, id->method <= CR_AUTH_KIND_MAX && methods[id->method] ? methods[id->method] : "none");
  lua_setfield(L, -2, "method");
  if (id->principal[0]) {
    lua_pushstring(L, id->principal);
    lua_setfield(L, -2, "sub");
  }
  if (id->key[0]) {
    lua_pushstring(L, id->key);
    lua_setfield(L, -2, "key");
  }
  char jerr[128];
  if (id->json && cr_json_decode(L, id->json, id->json_len, jerr, sizeof jerr) == 0)
    lua_setfield(L, -2, id->method == CR_AUTH_AUTHORIZER ? "context" : "claims");
}

void cr_gwauth_refuse(cr_http_req_t *req, const cr_fnver_t *ver, int status, const char *challenge, const char *msg,
                      long retry_after) {
  cr_buf_t b = CR_BUF_INIT;
  cr_http_error_body_id(&b, req, msg);
  cr_http_respond_start(req, status);
  if (challenge) cr_http_respond_header(req, "WWW-Authenticate", 16, challenge, strlen(challenge));
  if (retry_after > 0) {
    char v[24];
    int n = snprintf(v, sizeof v, "%ld", retry_after);
    cr_http_respond_header(req, "Retry-After", 11, v, (size_t)n);
  }
  if (ver->settings.cors.set) cr_cors_headers(&ver->settings.cors, req);
  cr_http_respond_finish(req, "application/json", b.data, b.len);
  cr_buf_free(&b);
}
