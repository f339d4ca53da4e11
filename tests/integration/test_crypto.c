/* test_crypto.c - the webhook use case on the real server: a function checks an
 * HMAC-SHA256 signature of the request body sent in a header (hex, the GitHub
 * "x-hub-signature-256: sha256=..." form) with crescent.crypto and answers 200
 * or 401. The test signs with OpenSSL directly, independently of the module. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "harness.h"

static const char hook[] =
    "local crypto = require 'crescent.crypto'\n"
    "local SECRET = 'It\\'s a Secret to Everybody'\n"
    "return function(event)\n"
    "  local got = event.headers['x-hub-signature-256'] or ''\n"
    "  local want = 'sha256=' .. crypto.hex(crypto.hmac('sha256', SECRET, event.body or ''))\n"
    "  if not crypto.equal(got, want) then return { status = 401, body = 'bad signature' } end\n"
    "  return { status = 200, body = 'ok ' .. crypto.uuid():sub(15, 15) }\n"
    "end\n";

static void sign_header(const char *body, char *out, size_t n) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  const char key[] = "It's a Secret to Everybody";
  HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)body, strlen(body), mac, &len);
  int j = snprintf(out, n, "x-hub-signature-256: sha256=");
  for (unsigned i = 0; i < len; i++) j += snprintf(out + j, n - (size_t)j, "%02x", mac[i]);
  snprintf(out + j, n - (size_t)j, "\r\n");
}

static void webhook_signature_checked(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "hook.lua", hook);
  srv_start(&s, "--workers 1");
  const char body[] = "Hello, World!";
  char hdr[256];
  sign_header(body, hdr, sizeof hdr);
  /* GitHub's documented example value for this secret and payload. */
  assert_string_equal(hdr, "x-hub-signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17\r\n");
  http_resp_t r;
  assert_int_equal(http_request(s.port, "POST", "/hook", hdr, body, strlen(body), &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "ok 4");
  http_free(&r);
  /* A modified body, a wrong signature, none at all: 401. */
  assert_int_equal(http_request(s.port, "POST", "/hook", hdr, "Hello, World?", 13, &r), 0);
  assert_int_equal(r.status, 401);
  assert_string_equal(r.body, "bad signature");
  http_free(&r);
  hdr[40] = hdr[40] == '0' ? '1' : '0';
  assert_int_equal(http_request(s.port, "POST", "/hook", hdr, body, strlen(body), &r), 0);
  assert_int_equal(r.status, 401);
  http_free(&r);
  assert_int_equal(http_request(s.port, "POST", "/hook", NULL, body, strlen(body), &r), 0);
  assert_int_equal(r.status, 401);
  http_free(&r);
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(webhook_signature_checked),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
