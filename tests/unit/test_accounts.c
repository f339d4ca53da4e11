/* test_accounts.c - the accounts service's pure parts: Ed25519 JWS signing
 * (core/svc/jwtsign.c) against RFC 8037 A.4 bit for bit and through jwt.c's
 * verifier, base64url, the signing keys on disk and their rotation with a
 * grace period (core/svc/authkeys.c), Argon2id hashing and verification
 * (core/svc/pwhash.c, on a real libuv loop's thread pool too), and the login,
 * password and attribute rules (core/svc/users.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "authkeys.h"
#include "buf.h"
#include "clock.h"
#include "jwt.h"
#include "jwtsign.h"
#include "pwhash.h"
#include "users.h"

/* RFC 8037 A.1 (the private key d, the public key x) and A.4 (the JWS). */
static const char RFC_D[] = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
static const char RFC_X[] = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
static const char RFC_JWS[] = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
                              "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

static void seed_of(const char *b64, unsigned char seed[32]) {
  size_t n = 0;
  assert_int_equal(cr_b64url_decode(b64, strlen(b64), seed, 32, &n), 0);
  assert_int_equal(n, 32);
}

static void rfc8037_sign(void **state) {
  (void)state;
  unsigned char seed[32], pub[32];
  seed_of(RFC_D, seed);
  cr_buf_t b = CR_BUF_INIT;
  static const char header[] = "{\"alg\":\"EdDSA\"}", payload[] = "Example of Ed25519 signing";
  assert_int_equal(cr_jws_sign_ed25519(seed, header, strlen(header), payload, strlen(payload), &b), 0);
  assert_int_equal(b.len, strlen(RFC_JWS));
  assert_memory_equal(b.data, RFC_JWS, b.len);
  /* The public key is A.1's x. */
  assert_int_equal(cr_ed25519_public(seed, pub), 0);
  cr_buf_t x = CR_BUF_INIT;
  assert_int_equal(cr_b64url_append(&x, pub, 32), 0);
  assert_string_equal(cr_buf_cstr(&x), RFC_X);
  cr_buf_free(&x);
  cr_buf_free(&b);
}

static void base64url(void **state) {
  (void)state;
  cr_buf_t b = CR_BUF_INIT;
  assert_int_equal(cr_b64url_append(&b, (const unsigned char *)"f", 1), 0);
  assert_int_equal(cr_b64url_append(&b, (const unsigned char *)"fo", 2), 0);
  assert_int_equal(cr_b64url_append(&b, (const unsigned char *)"foo", 3), 0);
  assert_int_equal(cr_b64url_append(&b, (const unsigned char *)"\xfb\xff", 2), 0);
  assert_string_equal(cr_buf_cstr(&b), "ZgZm8Zm9v-_8");
  cr_buf_free(&b);
  unsigned char out[8];
  size_t n = 0;
  assert_int_equal(cr_b64url_decode("Zm9v", 4, out, sizeof out, &n), 0);
  assert_int_equal(n, 3);
  assert_memory_equal(out, "foo", 3);
  assert_int_equal(cr_b64url_decode("Zm8", 3, out, sizeof out, &n), 0);
  assert_int_equal(n, 2);
  assert_memory_equal(out, "fo", 2);
  assert_int_equal(cr_b64url_decode("Zm9=", 4, out, sizeof out, &n), -1);  /* padding */
  assert_int_equal(cr_b64url_decode("Zm+v", 4, out, sizeof out, &n), -1);  /* not url-safe */
  assert_int_equal(cr_b64url_decode("Zm9", 3, out, sizeof out, &n), -1);   /* non-zero spare bits */
  assert_int_equal(cr_b64url_decode("Zh", 2, out, sizeof out, &n), -1);    /* non-zero spare bits */
  assert_int_equal(cr_b64url_decode("Z", 1, out, sizeof out, &n), -1);
  assert_int_equal(cr_b64url_decode("Zm9vZm9vZm9v", 12, out, 8, &n), -1); /* longer than cap */
}

/* A token signed here verifies with jwt.c through the JWK made here; one changed byte does not. */
static void sign_then_verify(void **state) {
  (void)state;
  unsigned char seed[32];
  seed_of(RFC_D, seed);
  cr_buf_t jwks = CR_BUF_INIT, tok = CR_BUF_INIT;
  assert_int_equal(cr_buf_append_str(&jwks, "{\"keys\":["), 0);
  assert_int_equal(cr_jws_ed25519_jwk(seed, "k1", &jwks), 0);
  assert_int_equal(cr_buf_append_str(&jwks, "]}"), 0);
  char err[200];
  cr_jwt_keys_t *k = cr_jwt_keys_parse(jwks.data, jwks.len, err, sizeof err);
  assert_non_null(k);
  static const char h[] = "{\"alg\":\"EdDSA\",\"kid\":\"k1\"}", p[] = "{\"sub\":\"u1\",\"exp\":2000000000}";
  assert_int_equal(cr_jws_sign_ed25519(seed, h, strlen(h), p, strlen(p), &tok), 0);
  cr_jwt_opts_t o = {.algorithms = CR_JWT_EDDSA, .now = 1700000000};
  cr_jwt_claims_t c;
  assert_int_equal(cr_jwt_verify(k, &o, tok.data, tok.len, &c, err, sizeof err), 0);
  assert_string_equal(c.sub, "u1");
  cr_jwt_claims_free(&c);
  tok.data[tok.len - 5] = tok.data[tok.len - 5] == 'A' ? 'B' : 'A';
  assert_int_equal(cr_jwt_verify(k, &o, tok.data, tok.len, &c, err, sizeof err), -1);
  assert_string_equal(err, "bad signature");
  cr_jwt_claims_free(&c);
  cr_jwt_keys_free(k);
  cr_buf_free(&jwks);
  cr_buf_free(&tok);
}

static void tmpdir(char *out, size_t n) {
  snprintf(out, n, "/tmp/cr-accounts-test-XXXXXX");
  assert_non_null(mkdtemp(out));
}

static void rm_rf(const char *dir) {
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

static int verifies(cr_authkeys_t *k, const char *tok, size_t len) {
  cr_jwt_opts_t o = {.algorithms = CR_JWT_EDDSA, .now = (double)cr_wall_ms() / 1000};
  cr_jwt_claims_t c;
  char err[100];
  int rc = cr_jwt_verify(cr_authkeys_verifier(k), &o, tok, len, &c, err, sizeof err);
  cr_jwt_claims_free(&c);
  return rc == 0;
}

/* Keys are made once, kept 0600, shared by a second holder; a rotation is
 * seen by the other; the old key verifies for the grace, then no longer. */
static void keys_rotate(void **state) {
  (void)state;
  char dir[64], err[300], path[128];
  tmpdir(dir, sizeof dir);
  cr_authkeys_opts_t o = {.rotate_after = 0, .grace = 1.0};
  cr_authkeys_t *a = cr_authkeys_open(dir, &o, err, sizeof err);
  assert_non_null(a);
  cr_authkeys_t *b = cr_authkeys_open(dir, &o, err, sizeof err);
  assert_non_null(b);
  assert_string_equal(cr_authkeys_kid(a), cr_authkeys_kid(b));
  snprintf(path, sizeof path, "%s/accounts/keys.json", dir);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);

  static const char p[] = "{\"sub\":\"u\"}";
  cr_buf_t t1 = CR_BUF_INIT, t2 = CR_BUF_INIT;
  assert_int_equal(cr_authkeys_sign(a, p, strlen(p), &t1), 0);
  assert_true(verifies(b, t1.data, t1.len));
  char kid1[64], kid2[64];
  snprintf(kid1, sizeof kid1, "%s", cr_authkeys_kid(a));
  assert_int_equal(cr_authkeys_rotate(a, kid2, sizeof kid2, err, sizeof err), 0);
  assert_string_not_equal(kid1, kid2);
  assert_string_equal(cr_authkeys_kid(a), kid2);
  /* b sees the file changed (forced: the once-a-second check). */
  assert_int_equal(cr_authkeys_refresh(b, 1, err, sizeof err), 0);
  assert_string_equal(cr_authkeys_kid(b), kid2);
  assert_int_equal(cr_authkeys_sign(b, p, strlen(p), &t2), 0);
  assert_true(verifies(a, t2.data, t2.len));
  assert_true(verifies(b, t1.data, t1.len)); /* in its grace */
  size_t jl = 0;
  const char *jwks = cr_authkeys_jwks(b, &jl);
  assert_non_null(strstr(jwks, kid1));
  assert_non_null(strstr(jwks, kid2));
  assert_null(strstr(jwks, "\"d\""));
  usleep(1100 * 1000);
  assert_int_equal(cr_authkeys_refresh(b, 0, err, sizeof err), 0);
  assert_false(verifies(b, t1.data, t1.len)); /* past it */
  assert_true(verifies(b, t2.data, t2.len));
  jwks = cr_authkeys_jwks(b, &jl);
  assert_null(strstr(jwks, kid1));
  cr_buf_free(&t1);
  cr_buf_free(&t2);
  cr_authkeys_free(a);
  cr_authkeys_free(b);
  /* A damaged file is refused, not replaced. */
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("{\"keys\":[{\"kid\":\"x\"}]}", f);
  fclose(f);
  assert_null(cr_authkeys_open(dir, &o, err, sizeof err));
  assert_non_null(strstr(err, "malformed"));
  rm_rf(dir);
}

/* A due rotation (rotate_after) happens once however many holders notice it. */
static void keys_rotate_due(void **state) {
  (void)state;
  char dir[64], err[300];
  tmpdir(dir, sizeof dir);
  cr_authkeys_opts_t o = {.rotate_after = 0, .grace = 60};
  cr_authkeys_t *a = cr_authkeys_open(dir, &o, err, sizeof err);
  assert_non_null(a);
  char kid1[64];
  snprintf(kid1, sizeof kid1, "%s", cr_authkeys_kid(a));
  cr_authkeys_free(a);
  usleep(1100 * 1000);
  cr_authkeys_opts_t due = {.rotate_after = 1, .grace = 60};
  cr_authkeys_t *b = cr_authkeys_open(dir, &due, err, sizeof err);
  cr_authkeys_t *c = cr_authkeys_open(dir, &due, err, sizeof err);
  assert_non_null(b);
  assert_non_null(c);
  assert_string_not_equal(cr_authkeys_kid(b), kid1);
  assert_string_equal(cr_authkeys_kid(b), cr_authkeys_kid(c));
  size_t jl = 0;
  const char *jwks = cr_authkeys_jwks(c, &jl);
  assert_non_null(strstr(jwks, kid1)); /* still in grace */
  cr_authkeys_free(b);
  cr_authkeys_free(c);
  rm_rf(dir);
}

static const cr_pwhash_params_t FAST = {1024, 1, 1};

static void pwhash_sync(void **state) {
  (void)state;
  char enc[CR_PWHASH_ENCODED_MAX], enc2[CR_PWHASH_ENCODED_MAX];
  assert_int_equal(cr_pwhash_hash_sync(&FAST, "correct horse", 13, enc, sizeof enc), 0);
  assert_int_equal(strncmp(enc, "$argon2id$v=19$m=1024,t=1,p=1$", 30), 0);
  assert_int_equal(cr_pwhash_verify_sync(enc, "correct horse", 13), 1);
  assert_int_equal(cr_pwhash_verify_sync(enc, "correct hors", 12), 0);
  assert_int_equal(cr_pwhash_verify_sync(enc, "correct horsf", 13), 0);
  /* A fresh salt every time. */
  assert_int_equal(cr_pwhash_hash_sync(&FAST, "correct horse", 13, enc2, sizeof enc2), 0);
  assert_string_not_equal(enc, enc2);
  /* The OWASP defaults. */
  cr_pwhash_params_t def = {CR_PWHASH_DEFAULT_M, CR_PWHASH_DEFAULT_T, CR_PWHASH_DEFAULT_P};
  assert_int_equal(cr_pwhash_hash_sync(&def, "pw", 2, enc, sizeof enc), 0);
  assert_int_equal(strncmp(enc, "$argon2id$v=19$m=19456,t=2,p=1$", 31), 0);
  assert_int_equal(cr_pwhash_verify_sync("$argon2i$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaA", "pw", 2), 0);
}

typedef struct {
  int calls, ok;
  char enc[CR_PWHASH_ENCODED_MAX];
} res_t;

static void on_pw(void *data, int ok, const char *encoded, const char *err) {
  res_t *r = data;
  r->calls++;
  r->ok = ok;
  if (encoded) snprintf(r->enc, sizeof r->enc, "%s", encoded);
}

/* On the thread pool: the callback on the loop; a cancelled job never calls back. */
static void pwhash_pool(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  res_t h = {0}, v = {0}, bad = {0}, gone = {0};
  assert_non_null(cr_pwhash_hash(&loop, &FAST, "hunter22", 8, on_pw, &h));
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(h.calls, 1);
  assert_int_equal(h.ok, 1);
  assert_non_null(cr_pwhash_verify(&loop, h.enc, "hunter22", 8, on_pw, &v));
  assert_non_null(cr_pwhash_verify(&loop, h.enc, "hunter23", 8, on_pw, &bad));
  cr_pwhash_cancel(cr_pwhash_verify(&loop, h.enc, "hunter22", 8, on_pw, &gone));
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(v.calls, 1);
  assert_int_equal(v.ok, 1);
  assert_int_equal(bad.calls, 1);
  assert_int_equal(bad.ok, 0);
  assert_int_equal(gone.calls, 0);
  char big[CR_PWHASH_MAX_PASSWORD + 1];
  memset(big, 'a', sizeof big);
  assert_null(cr_pwhash_hash(&loop, &FAST, big, sizeof big, on_pw, &h));
  uv_loop_close(&loop);
}

static void login_rules(void **state) {
  (void)state;
  char out[CR_USERS_MAX_LOGIN + 1];
  const char *err = NULL;
#define OK(in, want)                                                                    \
  assert_int_equal(cr_users_normalize_login(in, strlen(in), out, sizeof out, &err), 0); \
  assert_string_equal(out, want)
#define BAD(in, msg)                                                                     \
  assert_int_equal(cr_users_normalize_login(in, strlen(in), out, sizeof out, &err), -1); \
  assert_string_equal(err, msg)
  OK("  Ann@Example.COM\t", "ann@example.com");
  OK("Bob_1.x-y", "bob_1.x-y");
  OK("a.b+tag@sub.example.org", "a.b+tag@sub.example.org");
  BAD("   ", "login is required");
  BAD("ab", "username must be at least 3 characters");
  BAD("bob smith", "username may hold only letters, digits, '.', '_' and '-'");
  BAD("bøb", "username may hold only letters, digits, '.', '_' and '-'");
  BAD("@example.com", "not an e-mail address");
  BAD("ann@localhost", "not an e-mail address");
  BAD("ann@@example.com", "not an e-mail address");
  BAD("ann@example..com", "not an e-mail address");
  BAD("ann <a@example.com>", "e-mail address holds a character that is not allowed");
  BAD("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "username is too long");
}

static void password_rules(void **state) {
  (void)state;
  cr_users_opts_t o = {.prefix = "cr:", .min_password = 8};
  cr_users_t *u = cr_users_new(uv_default_loop(), NULL, NULL, &o);
  assert_non_null(u);
  const char *err = NULL;
  assert_int_equal(cr_users_check_password(u, "correct horse", 13, &err), 0);
  assert_int_equal(cr_users_check_password(u, "short", 5, &err), -1);
  assert_string_equal(err, "password is too short");
  /* Characters, not bytes: 7 two-byte characters are too short, 8 are enough. */
  assert_int_equal(cr_users_check_password(u, "ééééééé", 14, &err), -1);
  assert_int_equal(cr_users_check_password(u, "éééééééé", 16, &err), 0);
  assert_int_equal(cr_users_check_password(u, "password", 8, &err), -1);
  assert_string_equal(err, "password is too common");
  assert_int_equal(cr_users_check_password(u, "abc\xff" "defgh", 9, &err), -1);
  assert_string_equal(err, "password must be valid UTF-8 text");
  assert_int_equal(cr_users_check_password(u, "abcd\0efgh", 9, &err), -1);
  assert_int_equal(cr_users_check_attrs("{\"a\":1}", 7, &err), 0);
  assert_int_equal(cr_users_check_attrs("[1]", 3, &err), -1);
  assert_string_equal(err, "attributes must be a JSON object");
  assert_int_equal(cr_users_check_attrs("{\"a\":", 5, &err), -1);
  cr_users_free(u);
  uv_run(uv_default_loop(), UV_RUN_DEFAULT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(rfc8037_sign),  cmocka_unit_test(base64url),   cmocka_unit_test(sign_then_verify),
      cmocka_unit_test(keys_rotate),   cmocka_unit_test(keys_rotate_due), cmocka_unit_test(pwhash_sync),
      cmocka_unit_test(pwhash_pool),   cmocka_unit_test(login_rules), cmocka_unit_test(password_rules),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
