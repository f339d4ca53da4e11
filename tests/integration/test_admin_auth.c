/* test_admin_auth.c - who may use the platform's admin endpoints (issue 11,
 * item 6), through the real server:
 *   - with --admin-token, /_/api/... and /_/metrics need
 *     "Authorization: Bearer <token>": without it or with another token,
 *     401 with WWW-Authenticate and the platform's JSON error body;
 *   - --metrics-public opens /_/metrics alone;
 *   - without a token, loopback clients (127.0.0.0/8, ::1, ::ffff:127.x) are
 *     served and every other address gets 403;
 *   - /_/health is open to everyone.
 * The non-loopback cases connect from an address of this machine's own
 * interfaces (getifaddrs), so the server really sees a non-loopback peer;
 * without such an address they are reported as skipped, not passed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static const char unauthorized[] =
    "{\"error\":\"unauthorized: send Authorization: Bearer <the server's --admin-token>\"}";
static const char forbidden[] =
    "{\"error\":\"forbidden: without an admin token only loopback clients may use this; "
    "start the server with --admin-token to allow others\"}";

/* GET path on loopback with extra header lines (or NULL); must answer status
 * with exactly body (any body when NULL). */
static void get_expect(int port, const char *path, const char *headers, int status, const char *body) {
  http_resp_t r;
  if (http_request(port, "GET", path, headers, NULL, 0, &r) != 0) fail_msg("GET %s: no response", path);
  if (r.status != status || (body && strcmp(r.body, body) != 0))
    fail_msg("GET %s (%s): got %d %s, want %d %s", path, headers ? headers : "no headers", r.status, r.body,
             status, body ? body : "(any body)");
  http_free(&r);
}

/* A 401 as the admin endpoints answer it: exact body and challenge. */
static void expect_401(int port, const char *method, const char *path, const char *headers) {
  http_resp_t r;
  if (http_request(port, method, path, headers, NULL, 0, &r) != 0) fail_msg("%s %s: no response", method, path);
  if (r.status != 401) fail_msg("%s %s (%s): got %d %s, want 401", method, path, headers ? headers : "-", r.status,
                                r.body);
  assert_string_equal(r.body, strcmp(method, "HEAD") == 0 ? "" : unauthorized);
  const char *h = http_header(&r, "www-authenticate");
  assert_non_null(h);
  assert_string_equal(h, "Bearer realm=\"crescent\"");
  assert_string_equal(http_header(&r, "content-type"), "application/json");
  assert_string_equal(http_header(&r, "cache-control"), "no-store");
  http_free(&r);
}

static void with_token(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "hello.lua", "return function() return 'hi' end\n");
  srv_start(&s, "--workers 1 --admin-token s3cret");
  const char *good = "Authorization: Bearer s3cret\r\n";

  /* Missing, wrong, a prefix or an extension of the token, another scheme. */
  expect_401(s.port, "GET", "/_/api/functions", NULL);
  expect_401(s.port, "GET", "/_/api/functions", "Authorization: Bearer nope\r\n");
  expect_401(s.port, "GET", "/_/api/functions", "Authorization: Bearer s3cre\r\n");
  expect_401(s.port, "GET", "/_/api/functions", "Authorization: Bearer s3cretX\r\n");
  expect_401(s.port, "GET", "/_/api/functions", "Authorization: Bearer S3CRET\r\n");
  expect_401(s.port, "GET", "/_/api/functions", "Authorization: Basic s3cret\r\n");
  expect_401(s.port, "GET", "/_/api/functions", "Authorization: s3cret\r\n");
  expect_401(s.port, "GET", "/_/api/functions", "Authorization: Bearer\r\n");
  expect_401(s.port, "HEAD", "/_/api/functions", NULL);
  /* Loopback alone is not enough once a token is set. */
  expect_401(s.port, "GET", "/_/metrics", NULL);
  expect_401(s.port, "GET", "/_/metrics", "Authorization: Bearer nope\r\n");
  /* Every path under /_/api, whatever its spelling, and before 404 or 405. */
  expect_401(s.port, "GET", "/_/api/functions/", NULL);
  expect_401(s.port, "GET", "/%5F/api/functions", NULL);
  expect_401(s.port, "GET", "/_/api", NULL);
  expect_401(s.port, "GET", "/_/api/nothing-here", NULL);
  expect_401(s.port, "POST", "/_/api/functions", NULL);

  /* The right token. */
  http_resp_t r;
  assert_int_equal(http_request(s.port, "GET", "/_/api/functions", good, NULL, 0, &r), 0);
  assert_int_equal(r.status, 200);
  char *e = api_fn_entry(r.body, "hello");
  assert_non_null(e);
  free(e);
  http_free(&r);
  get_expect(s.port, "/_/api/functions", "Authorization: bearer s3cret\r\n", 200, NULL);
  get_expect(s.port, "/_/api/functions", "Authorization: Bearer   s3cret\r\n", 200, NULL);
  get_expect(s.port, "/_/api/nothing-here", good, 404, "{\"error\":\"not found\"}");
  assert_int_equal(http_request(s.port, "POST", "/_/api/functions", good, NULL, 0, &r), 0);
  assert_int_equal(r.status, 405);
  http_free(&r);
  assert_int_equal(http_request(s.port, "GET", "/_/metrics", good, NULL, 0, &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(http_header(&r, "content-type"), "text/plain; version=0.0.4");
  assert_non_null(strstr(r.body, "crescent_invocations_total{function=\"hello\"}"));
  http_free(&r);

  /* Open to everyone: health, and the 404 of other /_/ paths. */
  get_expect(s.port, "/_/health", NULL, 200, "{\"status\":\"ok\",\"redis\":\"up\"}");
  get_expect(s.port, "/_/nothing", NULL, 404, "{\"error\":\"not found\"}");
  /* User functions are not the admin's business. */
  get_expect(s.port, "/hello", NULL, 200, "hi");
  assert_int_equal(srv_stop(&s), 0);
}

static void metrics_public(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_start(&s, "--workers 1 --admin-token s3cret --metrics-public");
  http_resp_t r;
  assert_int_equal(http_request(s.port, "GET", "/_/metrics", NULL, NULL, 0, &r), 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "# TYPE crescent_invocations_total counter"));
  http_free(&r);
  expect_401(s.port, "GET", "/_/api/functions", NULL);
  get_expect(s.port, "/_/api/functions", "Authorization: Bearer s3cret\r\n", 200, NULL);
  assert_int_equal(srv_stop(&s), 0);
}

static void no_token_loopback(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_start(&s, "--workers 1");
  get_expect(s.port, "/_/api/functions", NULL, 200, NULL);
  get_expect(s.port, "/_/metrics", NULL, 200, NULL);
  get_expect(s.port, "/_/health", NULL, 200, "{\"status\":\"ok\",\"redis\":\"up\"}");
  /* A header sent anyway changes nothing. */
  get_expect(s.port, "/_/api/functions", "Authorization: Bearer whatever\r\n", 200, NULL);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- from a non-loopback address ---------------------------------------------------------------- */

/* The first address of family af on an interface that is up and not
 * loopback (for IPv6, not link-local either, which needs a scope). */
static int local_address(int af, struct sockaddr_storage *out) {
  struct ifaddrs *ifs, *i;
  int found = 0;
  if (getifaddrs(&ifs)) return 0;
  for (i = ifs; i && !found; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != af) continue;
    if ((i->ifa_flags & IFF_LOOPBACK) || !(i->ifa_flags & IFF_UP)) continue;
    if (af == AF_INET) {
      const struct sockaddr_in *a = (const struct sockaddr_in *)i->ifa_addr;
      if ((ntohl(a->sin_addr.s_addr) >> 24) == 127) continue;
      memcpy(out, a, sizeof *a);
      found = 1;
    } else {
      const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)i->ifa_addr;
      if (IN6_IS_ADDR_LINKLOCAL(&a->sin6_addr) || IN6_IS_ADDR_LOOPBACK(&a->sin6_addr)) continue;
      memcpy(out, a, sizeof *a);
      found = 1;
    }
  }
  freeifaddrs(ifs);
  return found;
}

/* GET path over a connection to addr:port (the kernel picks addr itself as
 * the source, so the server sees addr as the peer). */
static void get_from(const struct sockaddr_storage *addr, int port, const char *path, const char *headers,
                     http_resp_t *r) {
  struct sockaddr_storage a = *addr;
  socklen_t len;
  if (a.ss_family == AF_INET) {
    ((struct sockaddr_in *)&a)->sin_port = htons((uint16_t)port);
    len = sizeof(struct sockaddr_in);
  } else {
    ((struct sockaddr_in6 *)&a)->sin6_port = htons((uint16_t)port);
    len = sizeof(struct sockaddr_in6);
  }
  int fd = socket(a.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  if (connect(fd, (struct sockaddr *)&a, len)) fail_msg("cannot connect to the server's non-loopback address");
  char req[1024];
  snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n", path,
           headers ? headers : "");
  http_sends(fd, req);
  if (http_read(fd, r, 0, 10000) != 0) fail_msg("GET %s from a non-loopback address: no response", path);
  http_close(fd);
}

static void expect_from(const struct sockaddr_storage *addr, int port, const char *path, const char *headers,
                        int status, const char *body) {
  http_resp_t r;
  get_from(addr, port, path, headers, &r);
  if (r.status != status || (body && strcmp(r.body, body) != 0))
    fail_msg("GET %s from a non-loopback address: got %d %s, want %d %s", path, r.status, r.body, status,
             body ? body : "(any body)");
  http_free(&r);
}

static void remote_ipv4(void **state) {
  (void)state;
  struct sockaddr_storage addr;
  if (!local_address(AF_INET, &addr)) {
    fprintf(stderr, "no non-loopback IPv4 address on this machine: skipped\n");
    skip();
  }
  char ip[64];
  inet_ntop(AF_INET, &((struct sockaddr_in *)&addr)->sin_addr, ip, sizeof ip);
  srv_t s;
  srv_init(&s);
  srv_start(&s, "--workers 1 --listen 0.0.0.0:0");
  expect_from(&addr, s.port, "/_/api/functions", NULL, 403, forbidden);
  expect_from(&addr, s.port, "/_/api/functions", "Authorization: Bearer whatever\r\n", 403, forbidden);
  expect_from(&addr, s.port, "/_/metrics", NULL, 403, forbidden);
  expect_from(&addr, s.port, "/_/health", NULL, 200, "{\"status\":\"ok\",\"redis\":\"up\"}");
  /* The same server still serves loopback. */
  get_expect(s.port, "/_/api/functions", NULL, 200, NULL);
  /* The refusal is logged with the peer's address. */
  char from[100];
  snprintf(from, sizeof from, "from %s: 403", ip);
  assert_int_equal(srv_log_wait(&s, 3, 5000, "refused an admin request", from, NULL), 3);
  assert_int_equal(srv_stop(&s), 0);

  /* --metrics-public opens /_/metrics to that address, not the API. */
  srv_init(&s);
  srv_start(&s, "--workers 1 --listen 0.0.0.0:0 --metrics-public");
  expect_from(&addr, s.port, "/_/metrics", NULL, 200, NULL);
  expect_from(&addr, s.port, "/_/api/functions", NULL, 403, forbidden);
  assert_int_equal(srv_stop(&s), 0);

  /* With a token, the token opens the API from anywhere. */
  srv_init(&s);
  srv_start(&s, "--workers 1 --listen 0.0.0.0:0 --admin-token s3cret");
  expect_from(&addr, s.port, "/_/api/functions", NULL, 401, unauthorized);
  expect_from(&addr, s.port, "/_/api/functions", "Authorization: Bearer s3cret\r\n", 200, NULL);
  expect_from(&addr, s.port, "/_/metrics", "Authorization: Bearer s3cret\r\n", 200, NULL);
  assert_int_equal(srv_stop(&s), 0);
}

/* A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d: loopback ones
 * stay loopback, others do not. */
static void dual_stack(void **state) {
  (void)state;
  /* read_file sizes a file by seeking, which /proc does not support. */
  FILE *f = fopen("/proc/sys/net/ipv6/bindv6only", "r");
  int dual = f && fgetc(f) == '0';
  if (f) fclose(f);
  struct sockaddr_storage a4, a6;
  int have4 = local_address(AF_INET, &a4), have6 = local_address(AF_INET6, &a6);
  if (!dual || !have4 || !have6) {
    fprintf(stderr, "no dual-stack listener or no non-loopback IPv4 and IPv6 addresses: skipped\n");
    skip();
  }
  srv_t s;
  srv_init(&s);
  srv_start(&s, "--workers 1 --listen [::]:0");
  struct sockaddr_storage lo6;
  memset(&lo6, 0, sizeof lo6);
  ((struct sockaddr_in6 *)&lo6)->sin6_family = AF_INET6;
  ((struct sockaddr_in6 *)&lo6)->sin6_addr = in6addr_loopback;
  expect_from(&lo6, s.port, "/_/api/functions", NULL, 200, NULL);
  get_expect(s.port, "/_/api/functions", NULL, 200, NULL); /* 127.0.0.1, seen as ::ffff:127.0.0.1 */
  expect_from(&a6, s.port, "/_/api/functions", NULL, 403, forbidden);
  expect_from(&a4, s.port, "/_/api/functions", NULL, 403, forbidden);
  assert_int_equal(srv_log_wait(&s, 1, 5000, "refused an admin request from ::ffff:", NULL), 1);
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(with_token),
      cmocka_unit_test(metrics_public),
      cmocka_unit_test(no_token_loopback),
      cmocka_unit_test(remote_ipv4),
      cmocka_unit_test(dual_stack),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
