/* Unit tests: the outbound client's URL rules (core/svc/outbound.h). The
 * client itself is tested end to end in tests/integration/test_http_out.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "outbound.h"

static void ok(const char *url, int tls, const char *host, int port, int ip, const char *target) {
  cr_url_parts_t u;
  char err[200] = "";
  int rc = cr_outbound_url_parse(url, strlen(url), &u, err, sizeof err);
  if (rc) fail_msg("%s: %s", url, err);
  assert_int_equal(u.tls, tls);
  assert_string_equal(u.host, host);
  assert_int_equal(u.port, port);
  assert_int_equal(u.ip, ip);
  assert_int_equal(u.target_len, strlen(target));
  assert_memory_equal(u.target, target, u.target_len);
}

static void bad(const char *url, const char *want) {
  cr_url_parts_t u;
  char err[200] = "";
  assert_int_equal(cr_outbound_url_parse(url, strlen(url), &u, err, sizeof err), -1);
  assert_string_equal(err, want);
}

static void test_parse(void **state) {
  (void)state;
  ok("http://example.com", 0, "example.com", 80, 0, "");
  ok("https://Example.COM/a/b?c=d#frag", 1, "example.com", 443, 0, "/a/b?c=d");
  ok("HTTP://x.y:8080/", 0, "x.y", 8080, 0, "/");
  ok("http://127.0.0.1:9000/x", 0, "127.0.0.1", 9000, 4, "/x");
  ok("http://[::1]:9000/x", 0, "::1", 9000, 6, "/x");
  ok("https://[2001:DB8::1]", 1, "2001:db8::1", 443, 6, "");
  ok("http://a.b?q=1", 0, "a.b", 80, 0, "?q=1");
  ok("http://under_score.example:65535", 0, "under_score.example", 65535, 0, "");
  bad("ftp://x", "url: must start with http:// or https://");
  bad("x.com/path", "url: must start with http:// or https://");
  bad("http://", "url: no host");
  bad("http://:80/", "url: no host");
  bad("http://user:pw@x.com/", "url: credentials in the URL are not supported (send an authorization header)");
  bad("http://x.com:0/", "url: port out of range (1-65535)");
  bad("http://x.com:65536/", "url: port out of range (1-65535)");
  bad("http://x.com:8a/", "url: bad port");
  bad("http://x.com:/", "url: bad port");
  bad("http://x.com/a b", "url: spaces, control characters and non-ASCII bytes must be percent-encoded");
  bad("http://x.com/\r\nHost: y", "url: spaces, control characters and non-ASCII bytes must be percent-encoded");
  bad("http://x.com/\xc3\xa9", "url: spaces, control characters and non-ASCII bytes must be percent-encoded");
  bad("http://[::1/", "url: unclosed '[' in the host");
  bad("http://[nothex]/", "url: bad IPv6 address");
  bad("http://[::1]x/", "url: unexpected characters after the IPv6 address");
  bad("http://a!b.com/", "url: bad character in the host");
  char longhost[300] = "http://";
  memset(longhost + 7, 'a', 254);
  longhost[7 + 254] = '\0';
  bad(longhost, "url: host longer than 253 bytes");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
