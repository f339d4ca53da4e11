/* test_gateway_jwt.c - auth = { jwt = ... } on the real server (README,
 * "Gateway policies", JWT), from the outside:
 *   - keys made by the openssl command line in the test's folder, tokens
 *     signed here with OpenSSL's EVP (RS256, ES256 as JOSE's r||s, EdDSA,
 *     HS256), JWKS documents built here from the keys' public numbers;
 *   - every refusal's exact status, body and WWW-Authenticate, and the
 *     reason in the server's log at info (one line per refused request),
 *     never a report line: a refused request never reaches the function;
 *   - a key file changed, removed or spoiled while the server runs: read
 *     again within about a second, one error line per change, 503 while
 *     unusable; an unset or short secret: 503;
 *   - bad auth settings: the function does not load, with settings.c's
 *     message. */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "harness.h"

#define CHALLENGE "Bearer realm=\"crescent\""
#define CHALLENGE_INVALID "Bearer realm=\"crescent\", error=\"invalid_token\""
#define MISSING_BODY_FMT "{\"error\":\"missing credentials\",\"requestId\":\"%s\"}"
#define INVALID_BODY_FMT "{\"error\":\"invalid token\",\"requestId\":\"%s\"}"
/* The error body the gateway answers with fmt, with r's own request id. */
static const char *with_id(const http_resp_t *r, const char *fmt) {
  static char out[2][256];
  static int k;
  char rid[160];
  http_request_id(r, rid, sizeof rid);
  k ^= 1;
  snprintf(out[k], sizeof out[k], fmt, rid);
  return out[k];
}
#define MISSING_BODY with_id(&r, MISSING_BODY_FMT)
#define INVALID_BODY with_id(&r, INVALID_BODY_FMT)
#define SECRET "0123456789abcdef0123456789abcdef-hs256"

/* --- keys and tokens ------------------------------------------------------------------------------ */

/* Runs `openssl args...` (NULL-terminated), output discarded, at most 30 s; it must exit 0. */
static void run_openssl(const char *first, ...) {
  const char *argv[16];
  int argc = 0;
  argv[argc++] = "openssl";
  va_list ap;
  va_start(ap, first);
  for (const char *a = first; a && argc < 15; a = va_arg(ap, const char *)) argv[argc++] = a;
  va_end(ap);
  argv[argc] = NULL;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = open("/dev/null", O_WRONLY);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      close(fd);
    }
    execvp("openssl", (char *const *)argv);
    _exit(127);
  }
  long long deadline = now_ms() + 30000;
  int st = 0;
  for (;;) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) break;
    if (now_ms() >= deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      fail_msg("openssl %s did not finish in 30 s", first);
    }
    sleep_ms(10);
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_msg("openssl %s failed (status %d)", first, st);
}

/* A private key made by `openssl genpkey` as root/NAME.key (kind "rsa", "ec" or "ed"), its
 * public PEM written to functions/PUBREL by `openssl pkey -pubout` when pubrel is not NULL. */
static EVP_PKEY *make_key(srv_t *s, const char *name, const char *kind, const char *pubrel) {
  char path[400];
  snprintf(path, sizeof path, "%s/%s.key", s->root, name);
  if (strcmp(kind, "rsa") == 0)
    run_openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path, NULL);
  else if (strcmp(kind, "ec") == 0)
    run_openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path, NULL);
  else
    run_openssl("genpkey", "-algorithm", "ED25519", "-out", path, NULL);
  if (pubrel) {
    char pub[700];
    snprintf(pub, sizeof pub, "%s/%s", s->fndir, pubrel);
    run_openssl("pkey", "-in", path, "-pubout", "-out", pub, NULL);
  }
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
  fclose(f);
  assert_non_null(k);
  return k;
}

/* base64url without padding of n bytes into out (room for 4 * n / 3 + 4). */
static void b64url(const unsigned char *in, size_t n, char *out) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t o = 0, i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = abc[v >> 18 & 63], out[o++] = abc[v >> 12 & 63], out[o++] = abc[v >> 6 & 63],
    out[o++] = abc[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    out[o++] = abc[v >> 18 & 63], out[o++] = abc[v >> 12 & 63];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    out[o++] = abc[v >> 18 & 63], out[o++] = abc[v >> 12 & 63], out[o++] = abc[v >> 6 & 63];
  }
  out[o] = '\0';
}

static void b64url_str(const char *s, char *out) {
  b64url((const unsigned char *)s, strlen(s), out);
}

/* A big number's bytes, base64url (pad: left-padded to that many bytes, 0: minimal). */
static void b64url_bn(const BIGNUM *bn, int pad, char *out) {
  unsigned char buf[1024];
  int n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
  assert_true(n > 0);
  b64url(buf, (size_t)n, out);
}

/* The public JWK of k with kid (RSA n/e, EC x/y, OKP x). */
static void jwk_of(EVP_PKEY *k, const char *kid, char *out, size_t outlen) {
  char a[400], b[400];
  int id = EVP_PKEY_get_base_id(k);
  if (id == EVP_PKEY_RSA) {
    BIGNUM *n = NULL, *e = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e), 1);
    b64url_bn(n, 0, a);
    b64url_bn(e, 0, b);
    BN_free(n);
    BN_free(e);
    snprintf(out, outlen,
             "{\"kty\":\"RSA\",\"kid\":\"%s\",\"use\":\"sig\",\"alg\":\"RS256\",\"n\":\"%s\",\"e\":\"%s\"}",
             kid, a, b);
  } else if (id == EVP_PKEY_EC) {
    BIGNUM *x = NULL, *y = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, &x), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, &y), 1);
    b64url_bn(x, 32, a);
    b64url_bn(y, 32, b);
    BN_free(x);
    BN_free(y);
    snprintf(out, outlen, "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"}", kid,
             a, b);
  } else {
    unsigned char raw[32];
    size_t rl = sizeof raw;
    assert_int_equal(EVP_PKEY_get_raw_public_key(k, raw, &rl), 1);
    assert_int_equal(rl, 32);
    b64url(raw, rl, a);
    snprintf(out, outlen, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"%s\",\"x\":\"%s\"}", kid, a);
  }
}

/* A JWKS document of the (NULL-terminated) pairs key, kid. */
static void jwks_of(char *out, size_t outlen, EVP_PKEY *k1, const char *kid1, ...) {
  size_t o = (size_t)snprintf(out, outlen, "{\"keys\":[");
  va_list ap;
  va_start(ap, kid1);
  EVP_PKEY *k = k1;
  const char *kid = kid1;
  for (int i = 0; k && i < 8; i++) {
    char jwk[1200];
    jwk_of(k, kid, jwk, sizeof jwk);
    o += (size_t)snprintf(out + o, outlen - o, "%s%s", i ? "," : "", jwk);
    k = va_arg(ap, EVP_PKEY *);
    if (k) kid = va_arg(ap, const char *);
  }
  va_end(ap);
  snprintf(out + o, outlen - o, "]}");
  assert_true(strlen(out) < outlen - 1);
}

/* A compact JWS of payload with header {"alg":alg,"typ":"JWT"[,"kid":kid]}, signed with k
 * (RS256, ES256, EdDSA) or the HMAC secret (HS256; secret bytes of secretlen); alg "none" and
 * friends get an empty signature. */
static void token_sig(char *out, size_t outlen, const char *alg, const char *kid, const char *payload,
                      EVP_PKEY *k, const void *secret, size_t secretlen) {
  char header[300], h64[500], p64[1500];
  if (kid)
    snprintf(header, sizeof header, "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}", alg, kid);
  else
    snprintf(header, sizeof header, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
  assert_true(strlen(payload) < 1000);
  b64url_str(header, h64);
  b64url_str(payload, p64);
  int in = snprintf(out, outlen, "%s.%s", h64, p64);
  assert_true(in > 0 && (size_t)in + 2 < outlen);
  unsigned char sig[1024];
  size_t siglen = 0;
  if (strcmp(alg, "HS256") == 0) {
    unsigned int ml = 0;
    assert_non_null(
        HMAC(EVP_sha256(), secret, (int)secretlen, (const unsigned char *)out, (size_t)in, sig, &ml));
    siglen = ml;
  } else if (k) {
    int ed = EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_non_null(ctx);
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, ed ? NULL : EVP_sha256(), NULL, k), 1);
    siglen = sizeof sig;
    assert_int_equal(EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)out, (size_t)in), 1);
    EVP_MD_CTX_free(ctx);
    if (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC) { /* DER -> JOSE's 64-byte r||s */
      const unsigned char *p = sig;
      ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)siglen);
      assert_non_null(es);
      const BIGNUM *r = NULL, *sv = NULL;
      ECDSA_SIG_get0(es, &r, &sv);
      assert_int_equal(BN_bn2binpad(r, sig, 32), 32);
      assert_int_equal(BN_bn2binpad(sv, sig + 32, 32), 32);
      ECDSA_SIG_free(es);
      siglen = 64;
    }
  }
  char s64[1500];
  b64url(sig, siglen, s64);
  assert_true((size_t)in + 1 + strlen(s64) < outlen);
  snprintf(out + in, outlen - (size_t)in, ".%s", s64);
}

static void token(char *out, size_t outlen, const char *alg, const char *kid, const char *payload,
                  EVP_PKEY *k) {
  token_sig(out, outlen, alg, kid, payload, k, SECRET, strlen(SECRET));
}

/* Claims: sub, role, iss, aud (raw JSON, or NULL), exp and nbf relative to now (0: absent). */
static void claims(char *out, size_t outlen, const char *sub, const char *role, const char *iss,
                   const char *aud, long exp_in, long nbf_in) {
  long long now = (long long)time(NULL);
  size_t o = (size_t)snprintf(out, outlen, "{\"sub\":\"%s\",\"role\":\"%s\",\"iat\":%lld", sub, role, now);
  if (iss) o += (size_t)snprintf(out + o, outlen - o, ",\"iss\":\"%s\"", iss);
  if (aud) o += (size_t)snprintf(out + o, outlen - o, ",\"aud\":%s", aud);
  if (exp_in) o += (size_t)snprintf(out + o, outlen - o, ",\"exp\":%lld", now + exp_in);
  if (nbf_in) o += (size_t)snprintf(out + o, outlen - o, ",\"nbf\":%lld", now + nbf_in);
  snprintf(out + o, outlen - o, "}");
}

/* --- requests --------------------------------------------------------------------------------------- */

/* Request ids of refused requests, to check at the end that none has a report line. */
static char refused[400][80];
static int nrefused;
static int ninvalid; /* 401 invalid token answers: one "token refused" log line each */

static void remember_refused(const http_resp_t *r) {
  assert_true(nrefused < 400);
  http_request_id(r, refused[nrefused], sizeof refused[nrefused]);
  nrefused++;
}

/* GET path with an Authorization header value (NULL: none) and extra header lines (or NULL). */
static void get_with(srv_t *s, const char *path, const char *authz, const char *extra, http_resp_t *r) {
  char hdr[4096];
  snprintf(hdr, sizeof hdr, "%s%s%s%s", authz ? "Authorization: " : "", authz ? authz : "",
           authz ? "\r\n" : "", extra ? extra : "");
  assert_true(strlen(hdr) < sizeof hdr - 1);
  if (http_request(s->port, "GET", path, hdr[0] ? hdr : NULL, NULL, 0, r) != 0)
    fail_msg("GET %s: no answer", path);
}

static void bearer(const char *tok, char *out, size_t n) {
  assert_true((size_t)snprintf(out, n, "Bearer %s", tok) < n);
}

static void expect_missing(srv_t *s, const char *path, const char *authz) {
  http_resp_t r;
  get_with(s, path, authz, NULL, &r);
  char want[256], rid0[160];
  http_request_id(&r, rid0, sizeof rid0);
  snprintf(want, sizeof want, MISSING_BODY_FMT, rid0);
  if (r.status != 401 || strcmp(r.body, want) != 0)
    fail_msg("GET %s with '%s': %d %s, want 401 %s", path, authz ? authz : "(none)", r.status, r.body, want);
  const char *h = http_header(&r, "www-authenticate");
  assert_non_null(h);
  assert_string_equal(h, CHALLENGE);
  remember_refused(&r);
  http_free(&r);
}

/* tok must be refused with 401 invalid token; reason (or NULL: not checked) must be the log's. */
static void expect_invalid(srv_t *s, const char *path, const char *tok, const char *reason) {
  char authz[4200];
  bearer(tok, authz, sizeof authz);
  http_resp_t r;
  get_with(s, path, authz, NULL, &r);
  char want[256], rid0[160];
  http_request_id(&r, rid0, sizeof rid0);
  snprintf(want, sizeof want, INVALID_BODY_FMT, rid0);
  if (r.status != 401 || strcmp(r.body, want) != 0)
    fail_msg("GET %s (want reason '%s'): %d %s, want 401 %s", path, reason ? reason : "?", r.status, r.body, want);
  const char *h = http_header(&r, "www-authenticate");
  assert_non_null(h);
  assert_string_equal(h, CHALLENGE_INVALID);
  char rid[80], idf[120];
  http_request_id(&r, rid, sizeof rid);
  snprintf(idf, sizeof idf, "\"requestId\":\"%s\"", rid);
  /* The workers' log lines reach the file a moment later: wait for it (bounded). */
  int lines = srv_log_wait(s, 1, 3000, "auth: token refused: ", idf, NULL);
  if (lines != 1) fail_msg("GET %s: %d 'token refused' lines for %s, want 1", path, lines, rid);
  if (reason) {
    char msg[160];
    snprintf(msg, sizeof msg, "\"msg\":\"auth: token refused: %s\"", reason);
    if (srv_log_count(s, "\"level\":\"info\"", msg, idf, NULL) != 1) {
      char *line = srv_log_line(s, "auth: token refused: ", idf, NULL);
      fail_msg("GET %s: want reason '%s', log has %s", path, reason, line ? line : "nothing");
    }
  }
  remember_refused(&r);
  ninvalid++;
  http_free(&r);
}

static void expect_ok(srv_t *s, const char *path, const char *tok, const char *want) {
  char authz[4200];
  bearer(tok, authz, sizeof authz);
  http_resp_t r;
  get_with(s, path, authz, NULL, &r);
  if (r.status != 200 || strcmp(r.body, want) != 0) {
    char rid[80] = "?", idf[120];
    if (http_header(&r, "x-request-id")) http_request_id(&r, rid, sizeof rid);
    snprintf(idf, sizeof idf, "\"requestId\":\"%s\"", rid);
    char *line = srv_log_line(s, "auth: ", idf, NULL);
    fail_msg("GET %s: %d %s, want 200 %s (log: %s)", path, r.status, r.body, want, line ? line : "nothing");
  }
  http_free(&r);
}

/* 503 {"error":"authentication is misconfigured","requestId":...} without a challenge. */
static void expect_misconfigured(srv_t *s, const char *path, const char *tok) {
  char authz[4200];
  bearer(tok, authz, sizeof authz);
  http_resp_t r;
  get_with(s, path, authz, NULL, &r);
  char rid[80], want[200];
  http_request_id(&r, rid, sizeof rid);
  snprintf(want, sizeof want, "{\"error\":\"authentication is misconfigured\",\"requestId\":\"%s\"}", rid);
  if (r.status != 503 || strcmp(r.body, want) != 0)
    fail_msg("GET %s: %d %s, want 503 %s", path, r.status, r.body, want);
  assert_null(http_header(&r, "www-authenticate"));
  remember_refused(&r);
  http_free(&r);
}

/* No report line for any refused request (checked once a later request's report is there). */
static void no_reports_for_refused(srv_t *s) {
  for (int i = 0; i < nrefused; i++) {
    char idf[120];
    snprintf(idf, sizeof idf, "\"requestId\":\"%s\"", refused[i]);
    if (srv_log_count(s, "\"msg\":\"report\"", idf, NULL) != 0)
      fail_msg("refused request %s was invoked", refused[i]);
  }
}

/* Waits until the worker's earlier log lines are in the file: GET /open (a function without auth)
 * and its report line, written after them by the same (only) worker. */
static void log_sync(srv_t *s) {
  http_resp_t r;
  get_with(s, "/open", NULL, NULL, &r);
  assert_int_equal(r.status, 200);
  char rid[80];
  http_request_id(&r, rid, sizeof rid);
  http_free(&r);
  free(srv_report_of(s, rid));
}

/* --- the functions ------------------------------------------------------------------------------------ */

/* A handler answering method|sub|role from event.auth. */
#define WHO_HANDLER                                                                   \
  "  handler = function(event)\n"                                                     \
  "    local a = event.auth\n"                                                        \
  "    return a.method .. '|' .. tostring(a.sub) .. '|' .. tostring(a.claims.role)\n" \
  "  end,\n"

static void write_fn(srv_t *s, const char *name, const char *settings) {
  char rel[80], text[2048];
  snprintf(rel, sizeof rel, "%s.lua", name);
  snprintf(text, sizeof text, "return {\n  %s,\n" WHO_HANDLER "}\n", settings);
  srv_write(s, rel, text);
}

#define ISS "https://id.example.com"

/* --- accepted and refused tokens ----------------------------------------------------------------------- */

static void tokens_checked(void **state) {
  (void)state;
  nrefused = ninvalid = 0;
  srv_t s;
  srv_init(&s);
  srv_mkdir(&s, "keys");
  EVP_PKEY *rsa = make_key(&s, "rsa", "rsa", "keys/rsa.pem");
  EVP_PKEY *ec = make_key(&s, "ec", "ec", NULL);
  EVP_PKEY *ed = make_key(&s, "ed", "ed", "keys/ed.pem");
  char jwks[4096];
  jwks_of(jwks, sizeof jwks, rsa, "rsa-1", ec, "ec-1", (EVP_PKEY *)NULL);
  srv_write(&s, "keys/jwks.json", jwks);

  write_fn(&s, "jwks", "auth = { jwt = { issuer = '" ISS "', audience = 'api', keys = 'keys/jwks.json' } }");
  write_fn(&s, "strict", "auth = { jwt = { keys = 'keys/jwks.json', leeway = 0 } }");
  write_fn(&s, "lenient", "auth = { jwt = { keys = 'keys/jwks.json', leeway = 300 } }");
  write_fn(&s, "rsonly", "auth = { jwt = { keys = 'keys/jwks.json', algorithms = { 'RS256' } } }");
  write_fn(&s, "ed", "auth = { jwt = { keys = 'keys/ed.pem' } }");
  write_fn(&s, "rsapem", "auth = { jwt = { keys = 'keys/rsa.pem' } }");
  write_fn(&s, "hs", "auth = { jwt = { secretEnv = 'CR_JWTTEST_SECRET', issuer = '" ISS "' } }");
  write_fn(&s, "unset", "auth = { jwt = { secretEnv = 'CR_JWTTEST_UNSET' } }");
  write_fn(&s, "short", "auth = { jwt = { secretEnv = 'CR_JWTTEST_SHORT' } }");
  write_fn(&s, "corsed",
           "cors = { origins = { 'https://app.example.com' } },\n"
           "  auth = { jwt = { keys = 'keys/jwks.json' } }");
  srv_write(&s, "open.lua", "return function(event) return tostring(event.auth) end\n");

  /* The server's environment: set before it starts (its workers inherit it). */
  setenv("CR_JWTTEST_SECRET", SECRET, 1);
  setenv("CR_JWTTEST_SHORT", "short", 1);
  unsetenv("CR_JWTTEST_UNSET");
  srv_start(&s, "--workers 1 --redis none");
  unsetenv("CR_JWTTEST_SECRET");
  unsetenv("CR_JWTTEST_SHORT");
  srv_expect_errors(&s, 2); /* the unset and the short secret, once each */

  char c[1200], t[3000], t2[3000];
  /* No credentials: no header, another scheme, an empty bearer. */
  expect_missing(&s, "/jwks", NULL);
  expect_missing(&s, "/jwks", "Basic dXNlcjpwYXNz");
  expect_missing(&s, "/jwks", "Bearer");
  expect_missing(&s, "/jwks", "Bearer    ");
  claims(c, sizeof c, "alice", "admin", ISS, "\"api\"", 300, 0);
  token(t, sizeof t, "RS256", "rsa-1", c, rsa);
  expect_missing(&s, "/jwks", t); /* a token without its scheme */

  /* Accepted: RS256 and ES256 from the JWKS (by kid, and RS256 without one), aud in an array,
   * exp just past and nbf just ahead but within the default leeway of 30 s. */
  expect_ok(&s, "/jwks", t, "jwt|alice|admin");
  char lower[3100];
  snprintf(lower, sizeof lower, "bearer %s", t); /* the scheme in any case */
  http_resp_t r;
  get_with(&s, "/jwks", lower, NULL, &r);
  assert_int_equal(r.status, 200);
  http_free(&r);
  token(t, sizeof t, "RS256", NULL, c, rsa);
  expect_ok(&s, "/jwks", t, "jwt|alice|admin");
  claims(c, sizeof c, "bob", "reader", ISS, "[\"other\",\"api\"]", 300, 0);
  token(t, sizeof t, "ES256", "ec-1", c, ec);
  expect_ok(&s, "/jwks", t, "jwt|bob|reader");
  claims(c, sizeof c, "late", "r", ISS, "\"api\"", -10, 0);
  token(t, sizeof t, "RS256", "rsa-1", c, rsa);
  expect_ok(&s, "/jwks", t, "jwt|late|r");
  claims(c, sizeof c, "early", "r", ISS, "\"api\"", 300, 10);
  token(t, sizeof t, "ES256", "ec-1", c, ec);
  expect_ok(&s, "/jwks", t, "jwt|early|r");
  /* The function's own leeway: none, or 300 s. */
  claims(c, sizeof c, "late", "r", NULL, NULL, -10, 0);
  token(t, sizeof t, "RS256", "rsa-1", c, rsa);
  expect_invalid(&s, "/strict", t, "expired");
  claims(c, sizeof c, "late", "r", NULL, NULL, -200, 250);
  token(t, sizeof t, "RS256", "rsa-1", c, rsa);
  expect_ok(&s, "/lenient", t, "jwt|late|r");
  claims(c, sizeof c, "late", "r", NULL, NULL, -400, 0);
  token(t, sizeof t, "RS256", "rsa-1", c, rsa);
  expect_invalid(&s, "/lenient", t, "expired");
  /* EdDSA with a PEM key file; HS256 with the secret from the environment. */
  claims(c, sizeof c, "carol", "ops", NULL, NULL, 300, 0);
  token(t, sizeof t, "EdDSA", NULL, c, ed);
  expect_ok(&s, "/ed", t, "jwt|carol|ops");
  claims(c, sizeof c, "dave", "dev", ISS, NULL, 300, 0);
  token(t, sizeof t, "HS256", NULL, c, NULL);
  expect_ok(&s, "/hs", t, "jwt|dave|dev");
  token(t, sizeof t, "RS256", NULL, c, rsa);
  expect_ok(&s, "/rsapem", t, "jwt|dave|dev");
  token(t, sizeof t, "RS256", "rsa-1", c, rsa);
  expect_ok(&s, "/rsonly", t, "jwt|dave|dev");
  http_expect(s.port, "/open", 200, "nil"); /* no auth: no event.auth */

  /* Refused, with the reason in the log. */
  claims(c, sizeof c, "alice", "admin", ISS, "\"api\"", -120, 0);
  token(t, sizeof t, "RS256", "rsa-1", c, rsa);
  expect_invalid(&s, "/jwks", t, "expired");
  claims(c, sizeof c, "alice", "admin", ISS, "\"api\"", 300, 120);
  token(t, sizeof t, "ES256", "ec-1", c, ec);
  expect_invalid(&s, "/jwks", t, "not yet valid");
  claims(c, sizeof c, "alice", "admin", "https://evil.example.com", "\"api\"", 300, 0);
  token(t, sizeof t, "RS256", "rsa-1", c, rsa);
  expect_invalid(&s, "/jwks", t, "wrong issuer");
  claims(c, sizeof c, "alice", "admin", NULL, "\"api\"", 300, 0);
  token(t, sizeof t, "RS256", "rsa-1", c, rsa);
  expect_invalid(&s, "/jwks", t, "wrong issuer"); /* no iss at all */
  claims(c, sizeof c, "alice", "admin", ISS, "\"other\"", 300, 0);
  token(t, sizeof t, "RS256", "rsa-1", c, rsa);
  expect_invalid(&s, "/jwks", t, "wrong audience");
  claims(c, sizeof c, "alice", "admin", ISS, "[\"other\",\"api2\",\"API\"]", 300, 0);
  token(t, sizeof t, "ES256", "ec-1", c, ec);
  expect_invalid(&s, "/jwks", t, "wrong audience");
  claims(c, sizeof c, "alice", "admin", ISS, NULL, 300, 0);
  token(t, sizeof t, "RS256", "rsa-1", c, rsa);
  expect_invalid(&s, "/jwks", t, "wrong audience"); /* no aud at all */
  /* alg "none", unsigned, in any spelling. */
  claims(c, sizeof c, "alice", "admin", ISS, "\"api\"", 300, 0);
  token(t, sizeof t, "none", NULL, c, NULL);
  assert_int_equal(t[strlen(t) - 1], '.');
  expect_invalid(&s, "/jwks", t, "algorithm not allowed");
  token(t, sizeof t, "NONE", "rsa-1", c, NULL);
  expect_invalid(&s, "/jwks", t, "algorithm not allowed");
  /* Tampered payload: another payload under a valid signature. */
  token(t, sizeof t, "RS256", "rsa-1", c, rsa);
  expect_ok(&s, "/jwks", t, "jwt|alice|admin");
  claims(c, sizeof c, "alice", "root", ISS, "\"api\"", 300, 0);
  token(t2, sizeof t2, "RS256", "rsa-1", c, rsa);
  {
    char forged[3000];
    const char *d1 = strchr(t, '.'), *e1 = strrchr(t, '.'), *d2 = strchr(t2, '.'), *e2 = strrchr(t2, '.');
    snprintf(forged, sizeof forged, "%.*s%.*s%s", (int)(d1 - t), t, (int)(e2 - d2), d2, e1);
    assert_string_not_equal(forged, t);
    expect_invalid(&s, "/jwks", forged, "bad signature");
    /* A flipped signature character. */
    snprintf(forged, sizeof forged, "%s", t);
    char *last = forged + strlen(forged) - 3;
    *last = *last == 'A' ? 'B' : 'A';
    expect_invalid(&s, "/jwks", forged, "bad signature");
  }
  /* A kid the JWKS does not have; a kid of a key of another type; no key of the alg's type. */
  token(t, sizeof t, "RS256", "rsa-2", c, rsa);
  expect_invalid(&s, "/jwks", t, "unknown key id");
  token(t, sizeof t, "ES256", "rsa-1", c, ec);
  expect_invalid(&s, "/jwks", t, "no key for algorithm");
  token(t, sizeof t, "EdDSA", NULL, c, ed);
  expect_invalid(&s, "/jwks", t, "no key for algorithm");
  /* A PEM key file serves only its own key's algorithm. */
  token(t, sizeof t, "EdDSA", NULL, c, ed);
  expect_ok(&s, "/ed", t, "jwt|alice|root");
  token(t, sizeof t, "RS256", NULL, c, rsa);
  expect_invalid(&s, "/ed", t, "no key for algorithm");
  /* An algorithm the function does not list. */
  token(t, sizeof t, "ES256", "ec-1", c, ec);
  expect_invalid(&s, "/rsonly", t, "algorithm not allowed");
  /* Algorithm confusion: HS256 keyed with the RSA public key's PEM bytes. */
  {
    char pem[700];
    snprintf(pem, sizeof pem, "%s/keys/rsa.pem", s.fndir);
    char *pemtext = read_file(pem);
    assert_non_null(strstr(pemtext, "BEGIN PUBLIC KEY"));
    token_sig(t, sizeof t, "HS256", NULL, c, NULL, pemtext, strlen(pemtext));
    expect_invalid(&s, "/rsapem", t, "algorithm not allowed");
    expect_invalid(&s, "/jwks", t, "algorithm not allowed");
    free(pemtext);
  }
  /* HS256: another secret; a public-key algorithm for a secret. */
  claims(c, sizeof c, "dave", "dev", ISS, NULL, 300, 0);
  token_sig(t, sizeof t, "HS256", NULL, c, NULL, SECRET "x", strlen(SECRET) + 1);
  expect_invalid(&s, "/hs", t, "bad signature");
  token(t, sizeof t, "RS256", NULL, c, rsa);
  expect_invalid(&s, "/hs", t, "algorithm not allowed");
  /* Not a JWS. */
  expect_invalid(&s, "/jwks", "abc.def", "malformed token");
  expect_invalid(&s, "/jwks", "not a token at all", "malformed token");

  /* CORS with auth: the preflight needs no token; a 401 and a 200 carry the allowed origin. */
  const char origin[] = "Origin: https://app.example.com\r\n";
  get_with(&s, "/corsed", NULL, origin, &r);
  assert_int_equal(r.status, 401);
  assert_string_equal(r.body, MISSING_BODY);
  assert_string_equal(http_header(&r, "www-authenticate"), CHALLENGE);
  assert_string_equal(http_header(&r, "access-control-allow-origin"), "https://app.example.com");
  remember_refused(&r);
  http_free(&r);
  get_with(&s, "/corsed", "Bearer abc.def.ghi", origin, &r);
  assert_int_equal(r.status, 401);
  assert_string_equal(r.body, INVALID_BODY);
  assert_string_equal(http_header(&r, "www-authenticate"), CHALLENGE_INVALID);
  assert_string_equal(http_header(&r, "access-control-allow-origin"), "https://app.example.com");
  remember_refused(&r);
  ninvalid++;
  http_free(&r);
  get_with(&s, "/corsed", NULL, "Origin: https://evil.example.com\r\n", &r);
  assert_int_equal(r.status, 401);
  assert_null(http_header(&r, "access-control-allow-origin"));
  remember_refused(&r);
  http_free(&r);
  assert_int_equal(
      http_request(s.port, "OPTIONS", "/corsed",
                   "Origin: https://app.example.com\r\nAccess-Control-Request-Method: GET\r\n", NULL, 0, &r),
      0);
  assert_int_equal(r.status, 204);
  assert_string_equal(http_header(&r, "access-control-allow-origin"), "https://app.example.com");
  assert_null(http_header(&r, "www-authenticate"));
  http_free(&r);
  claims(c, sizeof c, "erin", "web", NULL, NULL, 300, 0);
  token(t, sizeof t, "ES256", "ec-1", c, ec);
  bearer(t, t2, sizeof t2);
  get_with(&s, "/corsed", t2, origin, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "jwt|erin|web");
  assert_string_equal(http_header(&r, "access-control-allow-origin"), "https://app.example.com");
  http_free(&r);

  /* Unset and too short secrets: 503, one error line each however many requests. */
  token(t, sizeof t, "HS256", NULL, c, NULL);
  for (int i = 0; i < 3; i++) {
    expect_misconfigured(&s, "/unset", t);
    expect_misconfigured(&s, "/short", t);
  }
  expect_missing(&s, "/unset", NULL); /* no token: 401 before the keys are looked at */
  log_sync(&s);
  assert_int_equal(
      srv_log_count(&s, "\"level\":\"error\"",
                    "auth: JWT keys unusable: the environment variable CR_JWTTEST_UNSET is not set", NULL),
      1);
  assert_int_equal(
      srv_log_count(&s, "\"level\":\"error\"",
                    "auth: JWT keys unusable: HS256 secret of 5 bytes (32 to 4096 expected)", NULL),
      1);

  /* One reason line per invalid token, none for the accepted ones; no refused request ran. */
  assert_int_equal(srv_log_count(&s, "auth: token refused: ", NULL), ninvalid);
  no_reports_for_refused(&s);

  EVP_PKEY_free(rsa);
  EVP_PKEY_free(ec);
  EVP_PKEY_free(ed);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- key rotation and broken key files ------------------------------------------------------------------ */

/* Writes functions/relpath (write and rename) with mtime secs seconds after the epoch: each
 * version of the file gets its own mtime whatever the clock's resolution. */
static void write_keys(srv_t *s, const char *relpath, const char *text, time_t secs) {
  srv_write(s, relpath, text);
  char path[700];
  snprintf(path, sizeof path, "%s/%s", s->fndir, relpath);
  struct timespec ts[2] = {{secs, 0}, {secs, 0}};
  assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

/* Polls GET path with tok until it answers status (at most 3 s); returns the milliseconds taken. */
static long long wait_status(srv_t *s, const char *path, const char *tok, int status) {
  char authz[4200];
  bearer(tok, authz, sizeof authz);
  long long t0 = now_ms();
  for (int i = 0; i < 300; i++) {
    http_resp_t r;
    get_with(s, path, authz, NULL, &r);
    int got = r.status;
    http_free(&r);
    if (got == status) return now_ms() - t0;
    if (now_ms() - t0 > 3000) break;
    sleep_ms(20);
  }
  fail_msg("GET %s never answered %d within 3 s", path, status);
  return -1;
}

/* Requests for ms milliseconds, every one answering 503. */
static void stay_misconfigured(srv_t *s, const char *path, const char *tok, int ms) {
  long long t0 = now_ms();
  for (int i = 0; i < 100 && now_ms() - t0 < ms; i++) {
    expect_misconfigured(s, path, tok);
    sleep_ms(50);
  }
}

static void keys_rotate_without_reload(void **state) {
  (void)state;
  nrefused = ninvalid = 0;
  srv_t s;
  srv_init(&s);
  srv_mkdir(&s, "keys");
  EVP_PKEY *k1 = make_key(&s, "k1", "rsa", NULL);
  EVP_PKEY *k2 = make_key(&s, "k2", "ec", NULL);
  char jwks[4096];
  time_t base = time(NULL) - 1000;
  jwks_of(jwks, sizeof jwks, k1, "k1", (EVP_PKEY *)NULL);
  write_keys(&s, "keys/rot.json", jwks, base);
  write_fn(&s, "rot", "auth = { jwt = { keys = 'keys/rot.json' } }");
  srv_write(&s, "open.lua", "return function(event) return tostring(event.auth) end\n");
  srv_start(&s, "--workers 1 --redis none");
  srv_expect_errors(&s, 2); /* the removed file, the garbage */

  char c[600], t1[3000], t1n[3000], t2[3000];
  claims(c, sizeof c, "rot", "v", NULL, NULL, 600, 0);
  token(t1, sizeof t1, "RS256", "k1", c, k1);
  token(t1n, sizeof t1n, "RS256", NULL, c, k1);
  token(t2, sizeof t2, "ES256", "k2", c, k2);
  expect_ok(&s, "/rot", t1, "jwt|rot|v");
  expect_invalid(&s, "/rot", t2, "unknown key id");

  /* Rotation: the new key passes within about a second, the old one no longer. */
  jwks_of(jwks, sizeof jwks, k2, "k2", (EVP_PKEY *)NULL);
  write_keys(&s, "keys/rot.json", jwks, base + 10);
  long long took = wait_status(&s, "/rot", t2, 200);
  if (took > 1800) fail_msg("the rotated key took %lld ms to be read", took);
  expect_ok(&s, "/rot", t2, "jwt|rot|v");
  expect_invalid(&s, "/rot", t1, "unknown key id");
  expect_invalid(&s, "/rot", t1n, "no key for algorithm");

  /* Removed: 503, one error line however long it stays removed. */
  srv_remove(&s, "keys/rot.json");
  wait_status(&s, "/rot", t2, 503);
  stay_misconfigured(&s, "/rot", t2, 2600);
  log_sync(&s);
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "auth: JWT keys unusable: ", NULL), 1);
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"",
                                 "auth: JWT keys unusable: cannot read keys/rot.json (missing)", NULL),
                   1);
  expect_missing(&s, "/rot", NULL);

  /* Garbage: one more line (the change), then none. */
  write_keys(&s, "keys/rot.json", "this is not a key\n", base + 20);
  /* The keys are looked at on a request: requests until the change is noticed (about a second). */
  long long t0 = now_ms();
  for (int i = 0; i < 100 && now_ms() - t0 < 3000; i++) {
    expect_misconfigured(&s, "/rot", t2);
    if (srv_log_count(&s, "\"level\":\"error\"", "auth: JWT keys unusable: ", NULL) >= 2) break;
    sleep_ms(30);
  }
  if (now_ms() - t0 > 1800) fail_msg("the garbage key file took %lld ms to be noticed", now_ms() - t0);
  stay_misconfigured(&s, "/rot", t2, 2600);
  log_sync(&s);
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "auth: JWT keys unusable: ", NULL), 2);
  assert_int_equal(
      srv_log_count(&s, "\"level\":\"error\"", "auth: JWT keys unusable: JWKS is not JSON", NULL), 1);

  /* Back to the first key: it passes again, the second no longer. */
  jwks_of(jwks, sizeof jwks, k1, "k1", (EVP_PKEY *)NULL);
  write_keys(&s, "keys/rot.json", jwks, base + 30);
  took = wait_status(&s, "/rot", t1, 200);
  if (took > 1800) fail_msg("the restored key took %lld ms to be read", took);
  expect_invalid(&s, "/rot", t2, "unknown key id");
  log_sync(&s);
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "auth: JWT keys unusable: ", NULL), 2);

  /* All without a reload: the function is still version 1. */
  http_resp_t r;
  http_get(s.port, "/_/api/functions", &r);
  char *e = api_fn_entry(r.body, "rot");
  assert_non_null(e);
  assert_non_null(strstr(e, "\"version\":1,"));
  free(e);
  http_free(&r);
  no_reports_for_refused(&s);

  EVP_PKEY_free(k1);
  EVP_PKEY_free(k2);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- settings refused at load --------------------------------------------------------------------------- */

static void bad_settings_refused(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  struct {
    const char *name, *settings, *msg; /* msg as JSON text (the API's and the log's) */
  } bad[] = {
      {"both", "auth = { jwt = { keys = 'keys/jwks.json', secretEnv = 'JWT_SECRET' } }",
       "setting 'auth.jwt': give exactly one of 'keys' (a JWKS or PEM file) and 'secretEnv'"},
      {"neither", "auth = { jwt = { issuer = 'x' } }",
       "setting 'auth.jwt': give exactly one of 'keys' (a JWKS or PEM file) and 'secretEnv'"},
      {"dotdot", "auth = { jwt = { keys = '../x' } }",
       "setting 'auth.jwt': 'keys' must be a path inside the functions folder, like \\\"keys/jwks.json\\\""},
      {"absolute", "auth = { jwt = { keys = '/etc/jwks.json' } }",
       "setting 'auth.jwt': 'keys' must be a path inside the functions folder, like \\\"keys/jwks.json\\\""},
      {"hskeys", "auth = { jwt = { keys = 'keys/jwks.json', algorithms = { 'RS256', 'HS256' } } }",
       "setting 'auth.jwt': HS256 needs 'secretEnv', not a key file"},
      {"secretrs", "auth = { jwt = { secretEnv = 'JWT_SECRET', algorithms = { 'RS256' } } }",
       "setting 'auth.jwt': with 'secretEnv' the only algorithm is HS256"},
      {"nonealg", "auth = { jwt = { keys = 'keys/jwks.json', algorithms = { 'none' } } }",
       "setting 'auth.jwt': algorithms entry 1 must be one of RS256, ES256, EdDSA, HS256"},
      {"userkey", "auth = 'user', rateLimit = { rps = 1, by = 'key' }",
       "setting 'rateLimit': by = \\\"key\\\" needs auth = \\\"apikey\\\""},
  };
  size_t nbad = sizeof bad / sizeof bad[0];
  for (size_t i = 0; i < nbad; i++) write_fn(&s, bad[i].name, bad[i].settings);
  srv_write(&s, "public.lua",
            "return { auth = 'none', handler = function(event) return tostring(event.auth) end }\n");
  srv_start(&s, "--workers 1 --redis none");
  srv_expect_errors(&s, (int)nbad);
  http_expect(s.port, "/public", 200, "nil");
  http_resp_t r;
  http_get(s.port, "/_/api/functions", &r);
  assert_int_equal(r.status, 200);
  for (size_t i = 0; i < nbad; i++) {
    char *e = api_fn_entry(r.body, bad[i].name);
    if (!e) fail_msg("%s missing from /_/api/functions: %s", bad[i].name, r.body);
    assert_non_null(strstr(e, "\"version\":null"));
    if (!strstr(e, bad[i].msg)) fail_msg("%s: '%s' not in %s", bad[i].name, bad[i].msg, e);
    free(e);
    char file[40];
    snprintf(file, sizeof file, "%s.lua", bad[i].name);
    if (srv_log_count(&s, "\"level\":\"error\"", file, bad[i].msg, NULL) != 1)
      fail_msg("no single error line naming %s with '%s'", file, bad[i].msg);
  }
  http_free(&r);
  for (size_t i = 0; i < nbad; i++) {
    char path[40];
    snprintf(path, sizeof path, "/%s", bad[i].name);
    http_get(s.port, path, &r);
    if (r.status != 503 || !strstr(r.body, "\"error\":\"function failed to load\""))
      fail_msg("GET %s: %d %s, want 503 function failed to load", path, r.status, r.body);
    http_free(&r);
  }
  assert_int_equal(srv_stop(&s), 0);
}

/* --- rateLimit by = "principal" ----------------------------------------------------------------------- */

/* One bucket per token subject: alice's second request is refused, bob's first passes, and a
 * request refused by auth takes nothing from anyone's bucket. */
static void rate_by_principal(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  write_fn(&s, "limited", "auth = { jwt = { secretEnv = 'CR_JWTTEST_SECRET' } },\n"
                          "  rateLimit = { rps = 0.01, burst = 1, by = 'principal' }");
  setenv("CR_JWTTEST_SECRET", SECRET, 1);
  srv_start(&s, "--workers 1");
  unsetenv("CR_JWTTEST_SECRET");
  char c[1200], alice[3000], bob[3000], authz[3100];
  claims(c, sizeof c, "alice", "user", NULL, NULL, 300, 0);
  token(alice, sizeof alice, "HS256", NULL, c, NULL);
  claims(c, sizeof c, "bob", "user", NULL, NULL, 300, 0);
  token(bob, sizeof bob, "HS256", NULL, c, NULL);
  http_resp_t r;
  get_with(&s, "/limited", NULL, NULL, &r); /* no token: 401, no bucket touched */
  assert_int_equal(r.status, 401);
  http_free(&r);
  bearer(alice, authz, sizeof authz);
  get_with(&s, "/limited", authz, NULL, &r);
  if (r.status != 200 || !strstr(r.body, "jwt|alice|user")) fail_msg("alice first: %d %s", r.status, r.body);
  http_free(&r);
  get_with(&s, "/limited", authz, NULL, &r);
  if (r.status != 429 || !strstr(r.body, "\"error\":\"rate limit exceeded\""))
    fail_msg("alice second: %d %s", r.status, r.body);
  http_free(&r);
  bearer(bob, authz, sizeof authz);
  get_with(&s, "/limited", authz, NULL, &r);
  if (r.status != 200 || !strstr(r.body, "jwt|bob|user")) fail_msg("bob first: %d %s", r.status, r.body);
  http_free(&r);
  /* The buckets are the principals', in Redis. */
  char *v = srv_rcli(&s, "EXISTS", "cr:{rl:limited}:a:alice", NULL);
  assert_string_equal(v, "1");
  free(v);
  v = srv_rcli(&s, "EXISTS", "cr:{rl:limited}:i:127.0.0.1", NULL);
  assert_string_equal(v, "0");
  free(v);
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(tokens_checked),
      cmocka_unit_test(keys_rotate_without_reload),
      cmocka_unit_test(bad_settings_refused),
      cmocka_unit_test(rate_by_principal),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
