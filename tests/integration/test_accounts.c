/* test_accounts.c - the accounts service (issue 17) end to end: the real binary, its Redis, HTTP
 * on loopback. The client flow (sign-up, the code through a customMessage function, confirm,
 * sign-in, me, refresh, reuse detection, sign-out, forgot and reset), the errors, the service off
 * by default, token tampering, expiry, key rotation with its grace period and the JWKS,
 * brute-force throttling per account and per IP, the hooks (preSignUp refusing a domain, timing
 * out, auto-confirming; preTokenGeneration's claims; preSignIn refusing), the operators' API, and
 * a storm of 200 concurrent sign-ins while /hello is measured (its p99 printed, not asserted). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define PW "correct horse battery"

static const char msg_fn[] =
    "local kv = require 'crescent.kv'\n"
    "return { triggers = { { auth = 'customMessage' } }, handler = function(event)\n"
    "  kv.put('code:' .. event.purpose .. ':' .. event.user.login, event.code)\n"
    "end }\n";
static const char peek_fn[] =
    "local kv = require 'crescent.kv'\n"
    "return function(event) return kv.get('code:' .. event.query.purpose .. ':' .. event.query.login) or '' end\n";

static void start(srv_t *s, const char *args) {
  srv_init(s);
  srv_write(s, "msg.lua", msg_fn);
  srv_write(s, "peek.lua", peek_fn);
  srv_write(s, "hello.lua", "return function() return 'hello' end\n");
  srv_start(s, args);
}

static void post(srv_t *s, const char *path, const char *body, http_resp_t *r) {
  if (http_request(s->port, "POST", path, "Content-Type: application/json\r\n", body, strlen(body), r) != 0)
    fail_msg("POST %s: no response", path);
}

static void expect_post(srv_t *s, const char *path, const char *body, int status, const char *needle) {
  http_resp_t r;
  post(s, path, body, &r);
  if (r.status != status || (needle && !strstr(r.body, needle)))
    fail_msg("POST %s %s: want %d with %s, got %d %s", path, body, status, needle ? needle : "-", r.status, r.body);
  http_free(&r);
}

/* The string value of "key" in json, copied (fails when absent). */
static void str_of(const char *json, const char *key, char *out, size_t n) {
  const char *v = json_val(json, key);
  if (!v || *v != '"') fail_msg("no string %s in %s", key, json);
  v++;
  const char *e = strchr(v, '"');
  snprintf(out, n, "%.*s", (int)(e - v), v);
}

/* The code customMessage stored for login (waits for it, at most 5 s). */
static void code_for(srv_t *s, const char *purpose, const char *login, char *out, size_t n) {
  char path[300];
  snprintf(path, sizeof path, "/peek?purpose=%s&login=%s", purpose, login);
  long long until = now_ms() + 5000;
  for (;;) {
    http_resp_t r;
    http_get(s->port, path, &r);
    if (r.status == 200 && strlen(r.body) == 6) {
      snprintf(out, n, "%s", r.body);
      http_free(&r);
      return;
    }
    http_free(&r);
    if (now_ms() > until) fail_msg("no %s code for %s", purpose, login);
    sleep_ms(20);
  }
}

/* Signs up and confirms login with PW. */
static void make_user(srv_t *s, const char *login) {
  char body[400], code[16];
  snprintf(body, sizeof body, "{\"login\":\"%s\",\"password\":\"" PW "\"}", login);
  expect_post(s, "/_/auth/signup", body, 201, "\"confirmed\":false");
  code_for(s, "confirm", login, code, sizeof code);
  snprintf(body, sizeof body, "{\"login\":\"%s\",\"code\":\"%s\"}", login, code);
  expect_post(s, "/_/auth/confirm", body, 200, "\"confirmed\":true");
}

/* Signs in: the access and refresh tokens. */
static void signin(srv_t *s, const char *login, const char *pw, char *at, size_t atn, char *rt, size_t rtn) {
  char body[400];
  snprintf(body, sizeof body, "{\"login\":\"%s\",\"password\":\"%s\"}", login, pw);
  http_resp_t r;
  post(s, "/_/auth/signin", body, &r);
  if (r.status != 200) fail_msg("signin %s: %d %s", login, r.status, r.body);
  str_of(r.body, "accessToken", at, atn);
  str_of(r.body, "refreshToken", rt, rtn);
  assert_non_null(strstr(r.body, "\"tokenType\":\"Bearer\""));
  http_free(&r);
}

static int me_status(srv_t *s, const char *at, char *body, size_t n) {
  char h[4096];
  snprintf(h, sizeof h, "Authorization: Bearer %s\r\n", at);
  http_resp_t r;
  if (http_request(s->port, "GET", "/_/auth/me", h, NULL, 0, &r) != 0) fail_msg("GET /_/auth/me: no response");
  int st = r.status;
  if (body) snprintf(body, n, "%s", r.body);
  http_free(&r);
  return st;
}

static int refresh(srv_t *s, const char *rt, char *newrt, size_t n) {
  char body[200];
  snprintf(body, sizeof body, "{\"refreshToken\":\"%s\"}", rt);
  http_resp_t r;
  post(s, "/_/auth/refresh", body, &r);
  int st = r.status;
  if (st == 200 && newrt) str_of(r.body, "refreshToken", newrt, n);
  http_free(&r);
  return st;
}

/* base64url-decodes a token's part number idx (0 header, 1 payload) into out. */
static void jwt_part(const char *tok, int idx, char *out, size_t n) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const char *p = tok;
  for (int i = 0; i < idx; i++) p = strchr(p, '.') + 1;
  const char *e = strchr(p, '.');
  size_t len = e ? (size_t)(e - p) : strlen(p), o = 0;
  unsigned v = 0;
  int bits = 0;
  for (size_t i = 0; i < len && o + 1 < n; i++) {
    v = v << 6 | (unsigned)(strchr(abc, p[i]) - abc);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (char)(v >> bits & 0xff);
    }
  }
  out[o] = '\0';
}

/* The whole client flow, with its errors. */
static void flow(void **state) {
  (void)state;
  srv_t s;
  start(&s, "--accounts --workers 2");
  /* Sign-up: normalised login, the code through customMessage. */
  http_resp_t r;
  post(&s, "/_/auth/signup", "{\"login\":\"  Ann@Example.COM \",\"password\":\"" PW "\",\"attributes\":{\"name\":\"Ann\"}}", &r);
  assert_int_equal(r.status, 201);
  assert_non_null(strstr(r.body, "\"login\":\"ann@example.com\""));
  assert_non_null(strstr(r.body, "\"attributes\":{\"name\":\"Ann\"}"));
  assert_null(strstr(r.body, "argon2")); /* never the hash */
  http_free(&r);
  expect_post(&s, "/_/auth/signup", "{\"login\":\"ann@example.com\",\"password\":\"" PW "\"}", 409, "login is already taken");
  expect_post(&s, "/_/auth/signup", "{\"login\":\"bob@example.com\",\"password\":\"short\"}", 400, "password is too short");
  expect_post(&s, "/_/auth/signup", "{\"login\":\"bob@example.com\",\"password\":\"password\"}", 400, "password is too common");
  expect_post(&s, "/_/auth/signup", "{\"login\":\"x y\",\"password\":\"" PW "\"}", 400, "username may hold only");
  expect_post(&s, "/_/auth/signup", "{\"login\":\"bob@example.com\"}", 400, "password is required");
  expect_post(&s, "/_/auth/signup", "{\"login\":\"bob@example.com\",\"password\":\"" PW "\",\"attributes\":[1]}", 400,
              "attributes must be a JSON object");
  expect_post(&s, "/_/auth/signup", "{not json", 400, "the body must be a JSON object");
  expect_post(&s, "/_/auth/signup", "[]", 400, "the body must be a JSON object");
  /* Not confirmed yet: the right password is not enough. */
  expect_post(&s, "/_/auth/signin", "{\"login\":\"ann@example.com\",\"password\":\"" PW "\"}", 403, "not confirmed");
  char code[16], body[600];
  code_for(&s, "confirm", "ann@example.com", code, sizeof code);
  char wrong[16];
  snprintf(wrong, sizeof wrong, "%06d", (atoi(code) + 1) % 1000000);
  snprintf(body, sizeof body, "{\"login\":\"ann@example.com\",\"code\":\"%s\"}", wrong);
  expect_post(&s, "/_/auth/confirm", body, 400, "wrong code");
  snprintf(body, sizeof body, "{\"login\":\"ANN@example.com\",\"code\":\"%s\"}", code);
  expect_post(&s, "/_/auth/confirm", body, 200, "\"confirmed\":true");
  /* Again: the user is confirmed already (the code itself is used up: see reset below). */
  expect_post(&s, "/_/auth/confirm", body, 200, "\"confirmed\":true");
  /* A confirmation code is no reset code. */
  snprintf(body, sizeof body, "{\"login\":\"ann@example.com\",\"code\":\"%s\",\"password\":\"another horse\"}", code);
  expect_post(&s, "/_/auth/reset", body, 400, "no valid code");

  /* Sign-in, me. */
  expect_post(&s, "/_/auth/signin", "{\"login\":\"ann@example.com\",\"password\":\"wrong password\"}", 401,
              "wrong login or password");
  expect_post(&s, "/_/auth/signin", "{\"login\":\"nobody@example.com\",\"password\":\"" PW "\"}", 401,
              "wrong login or password");
  char at[2048], rt[128], rt2[128], rt3[128];
  signin(&s, "Ann@example.com", PW, at, sizeof at, rt, sizeof rt);
  char hdr[512], pl[1024];
  jwt_part(at, 0, hdr, sizeof hdr);
  assert_non_null(strstr(hdr, "\"alg\":\"EdDSA\""));
  assert_non_null(strstr(hdr, "\"kid\":\""));
  jwt_part(at, 1, pl, sizeof pl);
  assert_non_null(strstr(pl, "\"iss\":\"crescent\""));
  assert_non_null(strstr(pl, "\"login\":\"ann@example.com\""));
  assert_true(json_num(pl, "exp") - json_num(pl, "iat") == 900);
  char me[2048];
  assert_int_equal(me_status(&s, at, me, sizeof me), 200);
  assert_non_null(strstr(me, "\"login\":\"ann@example.com\""));
  char sub[64], id[64];
  str_of(pl, "sub", sub, sizeof sub);
  str_of(me, "id", id, sizeof id);
  assert_string_equal(sub, id);
  assert_int_equal(me_status(&s, "", NULL, 0), 401);
  {
    http_resp_t m;
    assert_int_equal(http_request(s.port, "GET", "/_/auth/me", NULL, NULL, 0, &m), 0);
    assert_int_equal(m.status, 401);
    assert_non_null(strstr(m.body, "\"requestId\":"));
    assert_non_null(http_header(&m, "WWW-Authenticate"));
    http_free(&m);
  }

  /* Refresh rotates; presenting a used token again revokes its whole family. */
  assert_int_equal(refresh(&s, rt, rt2, sizeof rt2), 200);
  assert_string_not_equal(rt, rt2);
  assert_int_equal(refresh(&s, rt2, rt3, sizeof rt3), 200);
  {
    char b[200];
    snprintf(b, sizeof b, "{\"refreshToken\":\"%s\"}", rt);
    expect_post(&s, "/_/auth/refresh", b, 401, "already used");
  }
  assert_int_equal(refresh(&s, rt3, NULL, 0), 401); /* the newest of the family is gone too */
  assert_int_equal(refresh(&s, "not-a-token", NULL, 0), 401);
  expect_post(&s, "/_/auth/refresh", "{}", 400, "refreshToken is required");

  /* Sign-out revokes; another sign-in (another family) is unaffected. */
  char at4[2048], rt4[128], at5[2048], rt5[128];
  signin(&s, "ann@example.com", PW, at4, sizeof at4, rt4, sizeof rt4);
  signin(&s, "ann@example.com", PW, at5, sizeof at5, rt5, sizeof rt5);
  snprintf(body, sizeof body, "{\"refreshToken\":\"%s\"}", rt4);
  {
    http_resp_t o;
    post(&s, "/_/auth/signout", body, &o);
    assert_int_equal(o.status, 204);
    http_free(&o);
  }
  assert_int_equal(refresh(&s, rt4, NULL, 0), 401);
  assert_int_equal(refresh(&s, rt5, rt5, sizeof rt5), 200);

  /* Forgot and reset: the same answer for an unknown login; the reset code
   * changes the password and revokes every refresh token. */
  expect_post(&s, "/_/auth/forgot", "{\"login\":\"nobody@example.com\"}", 202, "\"ok\":true");
  expect_post(&s, "/_/auth/forgot", "{\"login\":\"ann@example.com\"}", 202, "\"ok\":true");
  code_for(&s, "reset", "ann@example.com", code, sizeof code);
  snprintf(body, sizeof body, "{\"login\":\"ann@example.com\",\"code\":\"%s\",\"password\":\"short\"}", code);
  expect_post(&s, "/_/auth/reset", body, 400, "password is too short");
  snprintf(body, sizeof body, "{\"login\":\"ann@example.com\",\"code\":\"%s\",\"password\":\"a new horse staple\"}", code);
  expect_post(&s, "/_/auth/reset", body, 200, "\"ok\":true");
  expect_post(&s, "/_/auth/reset", body, 400, "no valid code"); /* single use */
  assert_int_equal(refresh(&s, rt5, NULL, 0), 401);
  expect_post(&s, "/_/auth/signin", "{\"login\":\"ann@example.com\",\"password\":\"" PW "\"}", 401, "wrong login");
  signin(&s, "ann@example.com", "a new horse staple", at, sizeof at, rt, sizeof rt);

  /* Wrong methods and paths. */
  http_get(s.port, "/_/auth/signin", &r);
  assert_int_equal(r.status, 405);
  http_free(&r);
  expect_post(&s, "/_/auth/nothing", "{}", 404, "not found");
  /* Redis holds no password and no token in the clear. */
  char *keys = srv_rcli(&s, "--scan", "--pattern", "cr:{users}:*", NULL);
  assert_non_null(strstr(keys, "cr:{users}:login"));
  assert_null(strstr(keys, rt));
  free(keys);
  srv_stop(&s);
}

/* Off by default: nothing under /_/auth/ or /_/api/users. */
static void off_by_default(void **state) {
  (void)state;
  srv_t s;
  start(&s, "--workers 1");
  http_resp_t r;
  post(&s, "/_/auth/signup", "{\"login\":\"ann@example.com\",\"password\":\"" PW "\"}", &r);
  assert_int_equal(r.status, 404);
  http_free(&r);
  http_get(s.port, "/_/auth/.well-known/jwks.json", &r);
  assert_int_equal(r.status, 404);
  http_free(&r);
  http_get(s.port, "/_/api/users", &r);
  assert_int_equal(r.status, 404);
  http_free(&r);
  srv_stop(&s);
  /* A damaged keys file stops the server at start with one message (and no worker). */
  srv_init(&s);
  char path[400];
  snprintf(path, sizeof path, "%s/.crescent/accounts", s.root);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "mkdir -p %s && echo '{\"keys\":[{\"kid\":1}]}' > %s/keys.json", path, path);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(srv_try_start(&s, "--accounts --workers 1", 5000), -1);
  assert_int_not_equal(s.exit_status, 0);
  assert_int_equal(srv_log_count(&s, "accounts: ", "keys.json: keys[0] is malformed", NULL), 1);
  srv_expect_errors(&s, 1);
  srv_stop(&s);
  /* Argon2id parameters it cannot use, likewise. */
  srv_init(&s);
  assert_int_equal(srv_try_start(&s, "--accounts --workers 1 --accounts-argon2-lanes 100", 5000), -1);
  assert_int_equal(srv_log_count(&s, "accounts: Argon2id needs", "(got 100, 2, 19456)", NULL), 1);
  srv_expect_errors(&s, 1);
  srv_stop(&s);
}

/* --accounts-cors: preflights answered for the origins named, allow headers on the answers. */
static void cors(void **state) {
  (void)state;
  srv_t s;
  start(&s, "--accounts --workers 1 --accounts-cors https://app.example.com,*.example.org");
  http_resp_t r;
  const char *pre = "Origin: https://app.example.com\r\nAccess-Control-Request-Method: POST\r\n"
                    "Access-Control-Request-Headers: content-type\r\n";
  assert_int_equal(http_request(s.port, "OPTIONS", "/_/auth/signin", pre, NULL, 0, &r), 0);
  assert_int_equal(r.status, 204);
  assert_string_equal(http_header(&r, "Access-Control-Allow-Origin"), "https://app.example.com");
  assert_string_equal(http_header(&r, "Access-Control-Allow-Methods"), "GET, POST");
  http_free(&r);
  assert_int_equal(http_request(s.port, "OPTIONS", "/_/auth/signin",
                                "Origin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\n", NULL, 0, &r),
                   0);
  assert_int_equal(r.status, 403);
  assert_null(http_header(&r, "Access-Control-Allow-Origin"));
  http_free(&r);
  const char *body = "{\"login\":\"web@example.com\",\"password\":\"" PW "\"}";
  assert_int_equal(http_request(s.port, "POST", "/_/auth/signup", "Origin: https://m.example.org\r\n", body,
                                strlen(body), &r), 0);
  assert_int_equal(r.status, 201);
  assert_string_equal(http_header(&r, "Access-Control-Allow-Origin"), "https://m.example.org");
  http_free(&r);
  assert_int_equal(http_request(s.port, "POST", "/_/auth/signin", "Origin: https://evil.example\r\n", body,
                                strlen(body), &r), 0);
  assert_int_equal(r.status, 403); /* not confirmed; and no allow header for that origin */
  assert_null(http_header(&r, "Access-Control-Allow-Origin"));
  http_free(&r);
  srv_stop(&s);
  /* Without the flag: no CORS. */
  start(&s, "--accounts --workers 1");
  assert_int_equal(http_request(s.port, "OPTIONS", "/_/auth/signin", pre, NULL, 0, &r), 0);
  assert_int_equal(r.status, 405);
  assert_null(http_header(&r, "Access-Control-Allow-Origin"));
  http_free(&r);
  srv_stop(&s);
}

/* Tampering, alg and issuer, and key rotation: the old key verifies for its grace, then no longer. */
static void tokens_and_rotation(void **state) {
  (void)state;
  srv_t s;
  start(&s, "--accounts --workers 2 --accounts-key-grace 3");
  make_user(&s, "carol");
  char at[2048], rt[128];
  signin(&s, "carol", PW, at, sizeof at, rt, sizeof rt);
  assert_int_equal(me_status(&s, at, NULL, 0), 200);
  /* One byte of the payload, of the signature; the header's alg swapped for none. */
  char bad[2048];
  snprintf(bad, sizeof bad, "%s", at);
  char *dot = strchr(bad, '.');
  dot[5] = dot[5] == 'A' ? 'B' : 'A';
  char msg[1024];
  assert_int_equal(me_status(&s, bad, msg, sizeof msg), 401);
  assert_non_null(strstr(msg, "invalid token"));
  snprintf(bad, sizeof bad, "%s", at);
  bad[strlen(bad) - 3] = bad[strlen(bad) - 3] == 'A' ? 'B' : 'A';
  assert_int_equal(me_status(&s, bad, msg, sizeof msg), 401);
  assert_non_null(strstr(msg, "bad signature"));
  snprintf(bad, sizeof bad, "eyJhbGciOiJub25lIn0.%s", strchr(at, '.') + 1); /* {"alg":"none"} */
  *strrchr(bad, '.') = '\0';
  strcat(bad, ".");
  assert_int_equal(me_status(&s, bad, NULL, 0), 401);

  /* The JWKS; a rotation (the operators' API) adds a key, the old token still verifies. */
  http_resp_t r;
  http_get(s.port, "/_/auth/.well-known/jwks.json", &r);
  assert_int_equal(r.status, 200);
  char kid1[64], kid2[64], hdr[512];
  str_of(r.body, "kid", kid1, sizeof kid1);
  assert_null(strstr(r.body, "\"d\":"));
  assert_non_null(strstr(r.body, "\"crv\":\"Ed25519\""));
  http_free(&r);
  jwt_part(at, 0, hdr, sizeof hdr);
  assert_non_null(strstr(hdr, kid1));
  post(&s, "/_/api/accounts/rotate-key", "", &r);
  assert_int_equal(r.status, 200);
  str_of(r.body, "kid", kid2, sizeof kid2);
  http_free(&r);
  assert_string_not_equal(kid1, kid2);
  sleep_ms(1100); /* every worker re-reads the keys within a second */
  char at2[2048], rt2[128];
  signin(&s, "carol", PW, at2, sizeof at2, rt2, sizeof rt2);
  jwt_part(at2, 0, hdr, sizeof hdr);
  assert_non_null(strstr(hdr, kid2));
  for (int i = 0; i < 4; i++) { /* whichever worker answers */
    assert_int_equal(me_status(&s, at, NULL, 0), 200);
    assert_int_equal(me_status(&s, at2, NULL, 0), 200);
  }
  http_get(s.port, "/_/auth/.well-known/jwks.json", &r);
  assert_non_null(strstr(r.body, kid1));
  assert_non_null(strstr(r.body, kid2));
  http_free(&r);
  /* Past the grace: the old key is gone. */
  sleep_ms(3200);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(me_status(&s, at, msg, sizeof msg), 401);
    assert_int_equal(me_status(&s, at2, NULL, 0), 200);
  }
  http_get(s.port, "/_/auth/.well-known/jwks.json", &r);
  assert_null(strstr(r.body, kid1));
  http_free(&r);
  /* The keys file: under --data, private. */
  char path[400];
  snprintf(path, sizeof path, "%s/.crescent/accounts/keys.json", s.root);
  char *text = read_file(path);
  assert_non_null(text);
  assert_non_null(strstr(text, kid2));
  free(text);
  srv_stop(&s);
}

/* A token past its exp (and the 5 s leeway) is refused; a refresh gets a fresh one. */
static void expiry(void **state) {
  (void)state;
  srv_t s;
  start(&s, "--accounts --workers 1 --accounts-access-ttl 1");
  make_user(&s, "dave");
  char at[2048], rt[128];
  signin(&s, "dave", PW, at, sizeof at, rt, sizeof rt);
  assert_int_equal(me_status(&s, at, NULL, 0), 200);
  sleep_ms(6600);
  char msg[512];
  assert_int_equal(me_status(&s, at, msg, sizeof msg), 401);
  assert_non_null(strstr(msg, "expired"));
  char b[200];
  snprintf(b, sizeof b, "{\"refreshToken\":\"%s\"}", rt);
  http_resp_t r;
  post(&s, "/_/auth/refresh", b, &r);
  assert_int_equal(r.status, 200);
  assert_int_equal((int)json_num(r.body, "expiresIn"), 1);
  str_of(r.body, "accessToken", at, sizeof at);
  http_free(&r);
  assert_int_equal(me_status(&s, at, NULL, 0), 200);
  srv_stop(&s);
}

/* Failed sign-ins: 5 free per login, then 1 s, 2 s, ... (429 with Retry-After), the same for a
 * login that does not exist; a success clears the login's count; 20 free per IP. */
static void throttling(void **state) {
  (void)state;
  srv_t s;
  start(&s, "--accounts --workers 2");
  make_user(&s, "erin");
  const char *wrong = "{\"login\":\"erin\",\"password\":\"not the password\"}";
  const char *right = "{\"login\":\"erin\",\"password\":\"" PW "\"}";
  for (int i = 0; i < 6; i++) expect_post(&s, "/_/auth/signin", wrong, 401, "wrong login or password");
  http_resp_t r;
  post(&s, "/_/auth/signin", right, &r);
  assert_int_equal(r.status, 429);
  assert_string_equal(http_header(&r, "Retry-After"), "1");
  assert_non_null(strstr(r.body, "too many failed sign-ins"));
  http_free(&r);
  sleep_ms(1100);
  expect_post(&s, "/_/auth/signin", wrong, 401, "wrong login"); /* the 7th: 2 s */
  post(&s, "/_/auth/signin", right, &r);
  assert_int_equal(r.status, 429);
  assert_string_equal(http_header(&r, "Retry-After"), "2");
  http_free(&r);
  sleep_ms(2100);
  expect_post(&s, "/_/auth/signin", right, 200, "accessToken"); /* never locked for good */
  for (int i = 0; i < 5; i++) expect_post(&s, "/_/auth/signin", wrong, 401, "wrong login"); /* the count was cleared */
  expect_post(&s, "/_/auth/signin", right, 200, "accessToken");
  /* A login that does not exist is throttled alike (no enumeration). */
  const char *ghost = "{\"login\":\"ghost\",\"password\":\"whatever it is\"}";
  for (int i = 0; i < 6; i++) expect_post(&s, "/_/auth/signin", ghost, 401, "wrong login");
  expect_post(&s, "/_/auth/signin", ghost, 429, "too many failed sign-ins");
  /* Per IP: 12 + 6 failures so far from 127.0.0.1 (a refused attempt is not one, a success is
   * uncounted); 2 more on fresh
   * logins reach the 20 free ones, the 21st locks the IP out, whatever the login. */
  for (int i = 0; i < 3; i++) {
    char b[200];
    snprintf(b, sizeof b, "{\"login\":\"fresh%d\",\"password\":\"whatever it is\"}", i);
    expect_post(&s, "/_/auth/signin", b, 401, "wrong login");
  }
  expect_post(&s, "/_/auth/signin", "{\"login\":\"fresh9\",\"password\":\"whatever it is\"}", 429, "too many");
  srv_stop(&s);

  /* A burst of 30 parallel guesses is throttled as a sequence would be: each attempt is counted
   * before its password is checked, so 6 are checked (the 6th locks) and 24 refused unchecked. */
  start(&s, "--accounts --workers 2");
  make_user(&s, "victim");
  enum { B = 30 };
  int fds[B];
  const char *body = "{\"login\":\"victim\",\"password\":\"guess guess guess\"}";
  char req[512];
  snprintf(req, sizeof req,
           "POST /_/auth/signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
           "Connection: close\r\n\r\n%s",
           strlen(body), body);
  for (int i = 0; i < B; i++) {
    fds[i] = http_connect(s.port);
    assert_true(fds[i] >= 0);
    http_sends(fds[i], req);
  }
  int n401 = 0, n429 = 0;
  for (int i = 0; i < B; i++) {
    if (http_read(fds[i], &r, 0, 30000) != 0) fail_msg("burst %d: no answer", i);
    n401 += r.status == 401;
    n429 += r.status == 429;
    http_free(&r);
    http_close(fds[i]);
  }
  assert_int_equal(n401, 6);
  assert_int_equal(n429, 24);
  srv_stop(&s);
}

static const char presignup_fn[] =
    "return { timeout = 10, triggers = { { auth = 'preSignUp' } }, handler = function(event)\n"
    "  if event.login:find('@blocked%.example$') then\n"
    "    return { allow = false, reason = 'sign-ups from blocked.example are closed' }\n"
    "  end\n"
    "  if event.login:find('^slow') then while true do end end\n"
    "  if event.login:find('^broken') then error('kaput') end\n"
    "  if event.login:find('@corp%.example$') then\n"
    "    return { autoConfirm = true, attributes = { team = 'corp', name = event.attributes.name,\n"
    "                                                banned = event.attributes.banned } }\n"
    "  end\n"
    "end }\n";
static const char pretoken_fn[] =
    "return { triggers = { { auth = 'preTokenGeneration' } }, handler = function(event)\n"
    "  return { claims = { role = 'member', team = event.user.attributes.team, sub = 'evil', exp = 1, iss = 'x' } }\n"
    "end }\n";
static const char presignin_fn[] =
    "return { triggers = { { auth = 'preSignIn' } }, handler = function(event)\n"
    "  if event.user.attributes.banned then return { allow = false, reason = 'banned' } end\n"
    "end }\n";
static const char post_fn[] =
    "local kv = require 'crescent.kv'\n"
    "return { triggers = { { auth = 'postSignIn' }, { auth = 'postConfirmation' } }, handler = function(event)\n"
    "  kv.incr(event.trigger .. ':' .. event.user.login)\n"
    "end }\n";

static void hooks(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "msg.lua", msg_fn);
  srv_write(&s, "peek.lua", peek_fn);
  srv_write(&s, "presignup.lua", presignup_fn);
  srv_write(&s, "pretoken.lua", pretoken_fn);
  srv_write(&s, "presignin.lua", presignin_fn);
  srv_write(&s, "post.lua", post_fn);
  srv_write(&s, "count.lua",
            "local kv = require 'crescent.kv'\n"
            "return function(event) return tostring(kv.get(event.query.k) or 0) end\n");
  srv_start(&s, "--accounts --workers 2 --accounts-hook-timeout 0.5");
  http_resp_t r;
  /* preSignUp refuses a domain: 403 with its reason, no user made. */
  expect_post(&s, "/_/auth/signup", "{\"login\":\"eve@blocked.example\",\"password\":\"" PW "\"}", 403,
              "sign-ups from blocked.example are closed");
  http_get(s.port, "/_/api/users/eve@blocked.example", &r);
  assert_int_equal(r.status, 404);
  http_free(&r);
  /* One that times out fails closed (503), in about the hook's timeout, no user made. */
  long long t0 = now_ms();
  expect_post(&s, "/_/auth/signup", "{\"login\":\"slow@example.com\",\"password\":\"" PW "\"}", 503,
              "preSignUp hook failed: timeout");
  long long took = now_ms() - t0;
  assert_true(took >= 400 && took < 3000);
  http_get(s.port, "/_/api/users/slow@example.com", &r);
  assert_int_equal(r.status, 404);
  http_free(&r);
  expect_post(&s, "/_/auth/signup", "{\"login\":\"broken@example.com\",\"password\":\"" PW "\"}", 503,
              "preSignUp hook failed");
  /* The two failed invocations are logged as any function's failures are, and the hook's verdict too. */
  assert_int_equal(srv_log_wait(&s, 1, 2000, "\"level\":\"warn\"", "preSignUp hook failed: timeout", NULL), 1);
  assert_int_equal(srv_log_wait(&s, 1, 2000, "\"level\":\"warn\"", "preSignUp hook failed: error: presignup.lua:6: kaput", NULL), 1);
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "\"function\":\"presignup\"", NULL), 2);
  /* Their report lines: trigger "auth", the hook, the client's request as the parent. */
  assert_true(srv_log_wait(&s, 3, 2000, "\"trigger\":\"auth\"", "\"hook\":\"preSignUp\"", "\"function\":\"presignup\"",
                           "\"parentRequestId\":", NULL) >= 3);
  srv_expect_errors(&s, 2);
  /* Auto-confirmed with edited attributes: signs in at once; preTokenGeneration adds claims
   * but cannot override sub, exp or iss. */
  post(&s, "/_/auth/signup", "{\"login\":\"frank@corp.example\",\"password\":\"" PW "\",\"attributes\":{\"name\":\"Frank\"}}", &r);
  assert_int_equal(r.status, 201);
  assert_non_null(strstr(r.body, "\"confirmed\":true"));
  assert_non_null(strstr(r.body, "\"team\":\"corp\""));
  assert_non_null(strstr(r.body, "\"name\":\"Frank\""));
  char id[64];
  str_of(r.body, "id", id, sizeof id);
  http_free(&r);
  char at[2048], rt[128], pl[2048];
  signin(&s, "frank@corp.example", PW, at, sizeof at, rt, sizeof rt);
  jwt_part(at, 1, pl, sizeof pl);
  assert_non_null(strstr(pl, "\"role\":\"member\""));
  assert_non_null(strstr(pl, "\"team\":\"corp\""));
  assert_non_null(strstr(pl, "\"iss\":\"crescent\""));
  assert_null(strstr(pl, "evil"));
  assert_true(json_num(pl, "exp") > 1000000000);
  char sub[64];
  str_of(pl, "sub", sub, sizeof sub);
  assert_string_equal(sub, id);
  /* The post hooks were told (postConfirmation at the auto-confirmed sign-up, postSignIn now). */
  long long until = now_ms() + 5000;
  for (;;) {
    http_get(s.port, "/count?k=postSignIn:frank@corp.example", &r);
    int n = atoi(r.body);
    http_free(&r);
    http_get(s.port, "/count?k=postConfirmation:frank@corp.example", &r);
    int c = atoi(r.body);
    http_free(&r);
    if (n == 1 && c == 1) break;
    if (now_ms() > until) fail_msg("post hooks: postSignIn %d, postConfirmation %d", n, c);
    sleep_ms(20);
  }
  /* preSignIn refuses: 403 with its reason. */
  expect_post(&s, "/_/auth/signup",
              "{\"login\":\"mallory@corp.example\",\"password\":\"" PW "\",\"attributes\":{\"banned\":true}}", 201, "");
  expect_post(&s, "/_/auth/signin", "{\"login\":\"mallory@corp.example\",\"password\":\"" PW "\"}", 403, "banned");
  srv_stop(&s);
}

/* Runs `crescent ARGS` (bounded by timeout(1)), its stdout and stderr in out; its exit status. */
static int cli(const char *args, char *out, size_t n) {
  const char *bin = getenv("CRESCENT_BIN");
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "timeout 30 %s %s 2>&1", bin ? bin : "./crescent", args);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t len = fread(out, 1, n - 1, p);
  out[len] = '\0';
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The operators' API: list, get, disable (sign-in and refresh refused), enable, delete. */
static void operators(void **state) {
  (void)state;
  srv_t s;
  start(&s, "--accounts --workers 1");
  make_user(&s, "gina");
  make_user(&s, "hank");
  make_user(&s, "ivan");
  http_resp_t r;
  http_get(s.port, "/_/api/users?limit=2", &r);
  assert_int_equal(r.status, 200);
  char cursor[64];
  str_of(r.body, "cursor", cursor, sizeof cursor);
  assert_int_equal(json_val(r.body, "users") != NULL, 1);
  assert_non_null(strstr(r.body, "\"login\":\"")); /* two of the three, in id order */
  http_free(&r);
  char path[200];
  snprintf(path, sizeof path, "/_/api/users?limit=2&cursor=%s", cursor);
  http_get(s.port, path, &r);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "\"cursor\":null"));
  http_free(&r);
  http_get(s.port, "/_/api/users/GINA", &r);
  assert_int_equal(r.status, 200);
  char id[64];
  str_of(r.body, "id", id, sizeof id);
  http_free(&r);
  char at[2048], rt[128];
  signin(&s, "gina", PW, at, sizeof at, rt, sizeof rt);
  snprintf(path, sizeof path, "/_/api/users/%s/disable", id);
  post(&s, path, "", &r);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "\"disabled\":true"));
  http_free(&r);
  expect_post(&s, "/_/auth/signin", "{\"login\":\"gina\",\"password\":\"" PW "\"}", 403, "disabled");
  assert_int_equal(refresh(&s, rt, NULL, 0), 401); /* disabling revoked the families */
  assert_int_equal(me_status(&s, at, NULL, 0), 403);
  snprintf(path, sizeof path, "/_/api/users/%s/enable", id);
  post(&s, path, "", &r);
  assert_int_equal(r.status, 200);
  http_free(&r);
  signin(&s, "gina", PW, at, sizeof at, rt, sizeof rt);
  snprintf(path, sizeof path, "/_/api/users/%s", id);
  assert_int_equal(http_request(s.port, "DELETE", path, NULL, NULL, 0, &r), 0);
  assert_int_equal(r.status, 204);
  http_free(&r);
  assert_int_equal(http_request(s.port, "DELETE", path, NULL, NULL, 0, &r), 0);
  assert_int_equal(r.status, 404);
  http_free(&r);
  assert_int_equal(me_status(&s, at, NULL, 0), 401);
  assert_int_equal(refresh(&s, rt, NULL, 0), 401);
  expect_post(&s, "/_/auth/signin", "{\"login\":\"gina\",\"password\":\"" PW "\"}", 401, "wrong login");
  /* The login is free again. */
  expect_post(&s, "/_/auth/signup", "{\"login\":\"gina\",\"password\":\"" PW "\"}", 201, "gina");

  /* The same through `crescent users`. */
  char out[8192], cmd[600];
  snprintf(cmd, sizeof cmd, "users list --limit 10 --url http://127.0.0.1:%d", s.port);
  assert_int_equal(cli(cmd, out, sizeof out), 0);
  assert_non_null(strstr(out, "\"login\":\"hank\""));
  assert_non_null(strstr(out, "\"login\":\"gina\""));
  snprintf(cmd, sizeof cmd, "users get hank --url http://127.0.0.1:%d", s.port);
  assert_int_equal(cli(cmd, out, sizeof out), 0);
  str_of(out, "id", id, sizeof id);
  snprintf(cmd, sizeof cmd, "users disable %s --url http://127.0.0.1:%d", id, s.port);
  assert_int_equal(cli(cmd, out, sizeof out), 0);
  assert_non_null(strstr(out, "\"disabled\":true"));
  expect_post(&s, "/_/auth/signin", "{\"login\":\"hank\",\"password\":\"" PW "\"}", 403, "disabled");
  snprintf(cmd, sizeof cmd, "users enable %s --url http://127.0.0.1:%d", id, s.port);
  assert_int_equal(cli(cmd, out, sizeof out), 0);
  snprintf(cmd, sizeof cmd, "users delete %s --url http://127.0.0.1:%d", id, s.port);
  assert_int_equal(cli(cmd, out, sizeof out), 0);
  assert_non_null(strstr(out, "deleted"));
  assert_int_equal(cli(cmd, out, sizeof out), 1); /* twice: no such user */
  assert_non_null(strstr(out, "no such user"));
  snprintf(cmd, sizeof cmd, "users rotate-key --url http://127.0.0.1:%d", s.port);
  assert_int_equal(cli(cmd, out, sizeof out), 0);
  assert_non_null(strstr(out, "\"kid\":\""));
  assert_int_equal(cli("users frobnicate", out, sizeof out), 2);
  assert_int_equal(cli("users get", out, sizeof out), 2);
  srv_stop(&s);
}

/* crescent.auth from a function: every call, its answers and errors; off without --accounts. */
static const char dir_fn[] =
    "local auth = require 'crescent.auth'\n"
    "return function(event)\n"
    "  local out = {}\n"
    "  local u, err = auth.signUp('Zed@Example.com', 'correct horse battery', { plan = 'pro' }, { confirmed = true })\n"
    "  if not u then return { err = err } end\n"
    "  out.login, out.confirmed, out.plan = u.login, u.confirmed, u.attributes.plan\n"
    "  local _, dup = auth.signUp('zed@example.com', 'correct horse battery')\n"
    "  out.dup = dup\n"
    "  local _, short = auth.signUp('amy', 'short')\n"
    "  out.short = short\n"
    "  local t, e = auth.signIn('zed@example.com', 'correct horse battery')\n"
    "  if not t then return { err = e } end\n"
    "  out.tokenType, out.expiresIn, out.rtlen = t.tokenType, t.expiresIn, #t.refreshToken\n"
    "  local c, ce = auth.verify(t.accessToken)\n"
    "  out.sub_ok = c and c.sub == u.id\n"
    "  local _, bad = auth.verify(t.accessToken .. 'x')\n"
    "  out.bad = bad\n"
    "  local _, wrong = auth.signIn('zed@example.com', 'nope nope nope')\n"
    "  out.wrong = wrong\n"
    "  out.by_login = auth.getUser('ZED@example.com').id == u.id\n"
    "  out.by_id = auth.getUser(u.id).login\n"
    "  local none, nerr = auth.getUser('nobody')\n"
    "  out.none = none == nil and nerr == nil\n"
    "  out.updated = auth.updateUser(u.id, { attributes = { plan = 'free' } }).attributes.plan\n"
    "  out.disabled = auth.disableUser(u.id).disabled\n"
    "  local _, dis = auth.signIn('zed@example.com', 'correct horse battery')\n"
    "  out.dis = dis\n"
    "  out.enabled = auth.enableUser(u.id).disabled == false\n"
    "  auth.signUp('yan', 'correct horse battery', nil, { confirmed = true })\n"
    "  local page = auth.listUsers(nil, 1)\n"
    "  local page2 = auth.listUsers(page.cursor, 1)\n"
    "  out.pages = #page.users .. ',' .. #page2.users .. ',' .. tostring(page2.cursor)\n"
    "  out.deleted = auth.deleteUser(u.id)\n"
    "  local _, gone = auth.deleteUser(u.id)\n"
    "  out.gone = gone\n"
    "  out.argerr = select(2, pcall(auth.signIn, 5))\n"
    "  return out\n"
    "end\n";

static void from_functions(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "dir.lua", dir_fn);
  srv_start(&s, "--accounts --workers 1");
  http_resp_t r;
  http_get(s.port, "/dir", &r);
  if (r.status != 200) {
    char *log = srv_log(&s);
    fail_msg("/dir: %d %s\n%s", r.status, r.body, log);
  }
  const char *want[] = {"\"login\":\"zed@example.com\"", "\"confirmed\":true", "\"plan\":\"pro\"",
                        "\"dup\":\"login is already taken\"", "\"short\":\"password is too short\"",
                        "\"tokenType\":\"Bearer\"", "\"expiresIn\":900", "\"rtlen\":43", "\"sub_ok\":true",
                        "\"bad\":\"malformed token\"", "\"wrong\":\"wrong login or password\"", "\"by_login\":true",
                        "\"by_id\":\"zed@example.com\"", "\"none\":true", "\"updated\":\"free\"",
                        "\"disabled\":true", "\"dis\":\"user is disabled\"", "\"enabled\":true",
                        "\"pages\":\"1,1,nil\"", "\"deleted\":true", "\"gone\":\"no such user\"",
                        "bad argument #1 to 'auth.signIn' (login expected (a string), got number)"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (!strstr(r.body, want[i])) fail_msg("lacks %s: %s", want[i], r.body);
  http_free(&r);
  srv_stop(&s);
  /* Off: the module loads, its calls say so. */
  srv_init(&s);
  srv_write(&s, "off.lua",
            "local auth = require 'crescent.auth'\n"
            "return function() local u, err = auth.getUser('x') return err end\n");
  srv_start(&s, "--workers 1");
  http_expect(s.port, "/off", 200, "accounts are off (start the server with --accounts)");
  srv_stop(&s);
}

static int cmp_ll(const void *a, const void *b) {
  long long x = *(const long long *)a, y = *(const long long *)b;
  return x < y ? -1 : x > y;
}

/* p99 of n /hello latencies (ms), each on a new connection (at most 60 s); *done how many ran. */
static double hello_p99(srv_t *s, int n, int *done) {
  long long *lat = calloc((size_t)n, sizeof *lat);
  int k = 0;
  long long until = now_ms() + 60000;
  for (; k < n && now_ms() < until; k++) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    http_resp_t r;
    if (http_request(s->port, "GET", "/hello", NULL, NULL, 0, &r) != 0) fail_msg("/hello: no answer");
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_int_equal(r.status, 200);
    http_free(&r);
    lat[k] = (b.tv_sec - a.tv_sec) * 1000000LL + (b.tv_nsec - a.tv_nsec) / 1000;
  }
  qsort(lat, (size_t)k, sizeof *lat, cmp_ll);
  double p99 = k ? lat[(size_t)((k - 1) * 99 / 100)] / 1000.0 : 0;
  free(lat);
  *done = k;
  return p99;
}

/* 200 concurrent sign-ins of 200 users (each an Argon2id verification on the thread pool) while
 * /hello is served. (One user signing in 200 times at once would be throttled: see throttling.) */
static void storm(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "hello.lua", "return function() return 'hello' end\n");
  srv_write(&s, "seed.lua",
            "local auth = require 'crescent.auth'\n"
            "return { timeout = 120, handler = function(event)\n"
            "  for i = 1, tonumber(event.query.n) do\n"
            "    local u, err = auth.signUp('storm' .. i, '" PW "', nil, { confirmed = true })\n"
            "    if not u then error(err) end\n"
            "  end\n"
            "  return 'ok'\n"
            "end }\n");
  srv_start(&s, "--accounts --workers 2");
  enum { N = 200 };
  http_expect(s.port, "/seed?n=200", 200, "ok");
  int n_idle = 0, n_busy = 0;
  double idle = hello_p99(&s, 200, &n_idle);
  int fds[N];
  long long t0 = now_ms();
  for (int i = 0; i < N; i++) {
    char req[512], body[200];
    snprintf(body, sizeof body, "{\"login\":\"storm%d\",\"password\":\"" PW "\"}", i + 1);
    snprintf(req, sizeof req,
             "POST /_/auth/signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n%s",
             strlen(body), body);
    fds[i] = http_connect(s.port);
    assert_true(fds[i] >= 0);
    http_sends(fds[i], req);
  }
  double busy = hello_p99(&s, 200, &n_busy);
  int ok = 0;
  for (int i = 0; i < N; i++) {
    http_resp_t r;
    if (http_read(fds[i], &r, 0, 60000) == 0 && r.status == 200 && strstr(r.body, "accessToken")) ok++;
    else fail_msg("sign-in %d: %d %s", i, r.status, r.body ? r.body : "");
    http_free(&r);
    http_close(fds[i]);
  }
  long long took = now_ms() - t0;
  assert_int_equal(ok, N);
  print_message("storm: %d sign-ins in %lld ms; /hello p99 idle %.2f ms (n=%d), during the storm %.2f ms (n=%d), "
                "ratio %.2f\n",
                N, took, idle, n_idle, busy, n_busy, idle > 0 ? busy / idle : 0);
  srv_stop(&s);
}

/* --- auth = "user": a route that needs a signed-in user -------------------------------------------- */

static const char mine_fn[] =
    "return { auth = 'user', rateLimit = { rps = 0.01, burst = 2, by = 'principal' },\n"
    "  handler = function(event)\n"
    "    local a = event.auth\n"
    "    return a.method .. '|' .. a.sub .. '|' .. tostring(a.claims.login) .. '|' .. tostring(a.claims.sub == a.sub)\n"
    "  end }\n";

/* GET path with a bearer token (NULL: none): the status, the body into out. */
static int get_bearer(srv_t *s, const char *path, const char *tok, char *out, size_t n, char *www, size_t wn) {
  char h[4096];
  if (tok) snprintf(h, sizeof h, "Authorization: Bearer %s\r\n", tok);
  http_resp_t r;
  if (http_request(s->port, "GET", path, tok ? h : NULL, NULL, 0, &r) != 0) fail_msg("GET %s: no response", path);
  int st = r.status;
  if (out) snprintf(out, n, "%s", r.body);
  if (www) {
    const char *v = http_header(&r, "www-authenticate");
    snprintf(www, wn, "%s", v ? v : "");
  }
  http_free(&r);
  return st;
}

static void route_auth_user(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "msg.lua", msg_fn);
  srv_write(&s, "peek.lua", peek_fn);
  srv_write(&s, "mine.lua", mine_fn);
  srv_start(&s, "--accounts --workers 2");
  make_user(&s, "ann@example.com");
  make_user(&s, "bob@example.com");
  char at[4096], rt[256], bt[4096], body[1024], www[200], me[1024];
  signin(&s, "ann@example.com", PW, at, sizeof at, rt, sizeof rt);
  assert_int_equal(me_status(&s, at, me, sizeof me), 200);
  char id[128];
  str_of(me, "id", id, sizeof id);
  /* No token: 401 with the challenge, the function never runs. */
  assert_int_equal(get_bearer(&s, "/mine", NULL, body, sizeof body, www, sizeof www), 401);
  assert_non_null(strstr(body, "\"error\":\"missing credentials\""));
  assert_string_equal(www, "Bearer realm=\"crescent\"");
  /* A signed-in user: event.auth from the access token. */
  char want[512];
  snprintf(want, sizeof want, "user|%s|ann@example.com|true", id);
  assert_int_equal(get_bearer(&s, "/mine", at, body, sizeof body, NULL, 0), 200);
  assert_string_equal(body, want);
  /* Tampered (a payload byte), truncated, or not a crescent token: 401 invalid token. */
  char bad[4096];
  snprintf(bad, sizeof bad, "%s", at);
  char *dot = strchr(bad, '.');
  dot[3] = dot[3] == 'A' ? 'B' : 'A';
  assert_int_equal(get_bearer(&s, "/mine", bad, body, sizeof body, www, sizeof www), 401);
  assert_non_null(strstr(body, "\"error\":\"invalid token\""));
  assert_string_equal(www, "Bearer realm=\"crescent\", error=\"invalid_token\"");
  assert_int_equal(get_bearer(&s, "/mine", rt, body, sizeof body, NULL, 0), 401); /* a refresh token */
  /* by = "principal": ann's bucket (burst 2) is her own; bob's is fresh. */
  assert_int_equal(get_bearer(&s, "/mine", at, body, sizeof body, NULL, 0), 200);
  assert_int_equal(get_bearer(&s, "/mine", at, body, sizeof body, NULL, 0), 429);
  signin(&s, "bob@example.com", PW, bt, sizeof bt, rt, sizeof rt);
  assert_int_equal(get_bearer(&s, "/mine", bt, body, sizeof body, NULL, 0), 200);
  assert_non_null(strstr(body, "|bob@example.com|true"));
  srv_stop(&s);
  /* Without --accounts a route with auth = "user" cannot be checked: 503, logged, never run. */
  srv_init(&s);
  srv_write(&s, "mine.lua", mine_fn);
  srv_start(&s, "--workers 1");
  assert_int_equal(get_bearer(&s, "/mine", at, body, sizeof body, NULL, 0), 503);
  assert_non_null(strstr(body, "\"error\":\"authentication is misconfigured\""));
  assert_int_equal(srv_log_wait(&s, 1, 3000, "\"level\":\"error\"", "needs the accounts service (--accounts)", NULL), 1);
  srv_expect_errors(&s, 1);
  srv_stop(&s);
}

/* The code_for that is not old (a code made after it): waits at most 5 s. */
static void new_code_for(srv_t *s, const char *purpose, const char *login, const char *old, char *out, size_t n) {
  long long until = now_ms() + 5000;
  for (;;) {
    code_for(s, purpose, login, out, n);
    if (strcmp(out, old) != 0) return;
    if (now_ms() > until) fail_msg("no new %s code for %s", purpose, login);
    sleep_ms(20);
  }
}

/* A code's wrong tries outlive the code: asking for a new one (forgot, anyone may) does not
 * start them again, or the 6 digits fall to tries x codes. The lock ends with the code's TTL. */
static void code_guesses(void **state) {
  (void)state;
  srv_t s;
  start(&s, "--accounts --workers 1 --accounts-code-ttl 3");
  make_user(&s, "cat@example.com");
  char code[16], code2[16], wrong[16], body[400];
  expect_post(&s, "/_/auth/forgot", "{\"login\":\"cat@example.com\"}", 202, "\"ok\":true");
  code_for(&s, "reset", "cat@example.com", code, sizeof code);
  snprintf(wrong, sizeof wrong, "%06d", (atoi(code) + 1) % 1000000);
  snprintf(body, sizeof body, "{\"login\":\"cat@example.com\",\"code\":\"%s\",\"password\":\"a new horse staple\"}", wrong);
  for (int i = 0; i < 5; i++) expect_post(&s, "/_/auth/reset", body, 400, "wrong code");
  /* Out of tries: even the right code is refused now, and so is a new one's. */
  snprintf(body, sizeof body, "{\"login\":\"cat@example.com\",\"code\":\"%s\",\"password\":\"a new horse staple\"}", code);
  expect_post(&s, "/_/auth/reset", body, 429, "too many wrong codes");
  expect_post(&s, "/_/auth/forgot", "{\"login\":\"cat@example.com\"}", 202, "\"ok\":true");
  sleep_ms(300); /* a new code, had one been made, is stored by now */
  code_for(&s, "reset", "cat@example.com", code2, sizeof code2);
  assert_string_equal(code2, code); /* none was made */
  expect_post(&s, "/_/auth/reset", body, 429, "too many wrong codes");
  /* Not forever: once the exhausted code has expired, a new code works. */
  sleep_ms(3200);
  expect_post(&s, "/_/auth/forgot", "{\"login\":\"cat@example.com\"}", 202, "\"ok\":true");
  new_code_for(&s, "reset", "cat@example.com", code, code2, sizeof code2);
  snprintf(body, sizeof body, "{\"login\":\"cat@example.com\",\"code\":\"%s\",\"password\":\"a new horse staple\"}", code2);
  expect_post(&s, "/_/auth/reset", body, 200, "\"ok\":true");
  srv_stop(&s);
}

/* Refresh-token rotation keeps a bounded number of used tokens per sign-in: one client rotating in
 * a loop (no password hash slows it) must not fill Redis with a key per rotation for the tokens'
 * whole lifetime. Recent used tokens are still seen as reuse. */
static void rotation_bounded(void **state) {
  (void)state;
  srv_t s;
  start(&s, "--accounts --workers 1");
  make_user(&s, "dan@example.com");
  char at[2048], rt[100], prev[100] = "", prev2[100] = "";
  signin(&s, "dan@example.com", PW, at, sizeof at, rt, sizeof rt);
  for (int i = 0; i < 60; i++) {
    snprintf(prev2, sizeof prev2, "%s", prev);
    snprintf(prev, sizeof prev, "%s", rt);
    assert_int_equal(refresh(&s, prev, rt, sizeof rt), 200);
  }
  char *keys = srv_rcli(&s, "--scan", "--pattern", "cr:{users}:rt:*", NULL);
  int n = 0;
  for (const char *p = keys; (p = strstr(p, "cr:{users}:rt:")); p++) n++;
  free(keys);
  if (n > 17) fail_msg("%d refresh-token keys after 60 rotations of one sign-in, want at most 17", n);
  /* A recent used token is reuse: the sign-in is revoked, the newest token with it. */
  assert_int_equal(refresh(&s, prev2, NULL, 0), 401);
  assert_int_equal(refresh(&s, rt, NULL, 0), 401);
  srv_stop(&s);
}

/* A user's sign-ins (refresh-token families) are bounded: each one lives for the refresh TTL, so
 * signing in in a loop would grow Redis without end. Past 64, the oldest is revoked. */
static void families_bounded(void **state) {
  (void)state;
  srv_t s;
  start(&s, "--accounts --workers 1");
  make_user(&s, "eve@example.com");
  char at[2048], first[100], rt[100];
  signin(&s, "eve@example.com", PW, at, sizeof at, first, sizeof first);
  for (int i = 0; i < 69; i++) signin(&s, "eve@example.com", PW, at, sizeof at, rt, sizeof rt);
  assert_int_equal(refresh(&s, first, NULL, 0), 401); /* the oldest sign-in was revoked */
  assert_int_equal(refresh(&s, rt, rt, sizeof rt), 200);
  char *keys = srv_rcli(&s, "--scan", "--pattern", "cr:{users}:ufam:*", NULL);
  char key[200];
  assert_int_equal(sscanf(keys, "%199s", key), 1);
  free(keys);
  assert_int_equal(srv_rcli_ll(&s, "ZCARD", key, NULL), 64);
  srv_stop(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(flow),     cmocka_unit_test(off_by_default), cmocka_unit_test(cors), cmocka_unit_test(tokens_and_rotation),
      cmocka_unit_test(expiry),   cmocka_unit_test(throttling),     cmocka_unit_test(hooks),
      cmocka_unit_test(operators), cmocka_unit_test(from_functions), cmocka_unit_test(storm),
      cmocka_unit_test(route_auth_user), cmocka_unit_test(code_guesses),
      cmocka_unit_test(rotation_bounded), cmocka_unit_test(families_bounded),
  };
  if (getenv("CR_TEST_ONLY")) cmocka_set_test_filter(getenv("CR_TEST_ONLY")); /* one test while iterating */
  return cmocka_run_group_tests(tests, NULL, NULL);
}
