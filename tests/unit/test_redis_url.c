/* test_redis_url.c - the Redis URL parser and describer (core/svc/redis.c):
 * every accepted form with what it gives, every refused form with its exact
 * message. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "error.h"
#include "redis.h"

static cr_redis_url_t parse_ok(const char *url) {
  cr_redis_url_t u;
  char err[512] = "";
  int rc = cr_redis_url_parse(url, &u, err, sizeof err);
  if (rc != 0) fail_msg("'%s' was refused (%d): %s", url, rc, err);
  return u;
}

static void expect_tcp(const char *url, const char *host, int port, const char *user, const char *password,
                       int db) {
  cr_redis_url_t u = parse_ok(url);
  assert_int_equal(u.is_unix, 0);
  assert_string_equal(u.host, host);
  assert_int_equal(u.port, port);
  assert_string_equal(u.path, "");
  assert_string_equal(u.user, user);
  assert_string_equal(u.password, password);
  assert_int_equal(u.db, db);
}

static void expect_unix(const char *url, const char *path, int db) {
  cr_redis_url_t u = parse_ok(url);
  assert_int_equal(u.is_unix, 1);
  assert_string_equal(u.path, path);
  assert_string_equal(u.host, "");
  assert_int_equal(u.port, 0);
  assert_string_equal(u.user, "");
  assert_string_equal(u.password, "");
  assert_int_equal(u.db, db);
}

/* url is refused with exactly this message. */
static void expect_refused(const char *url, const char *msg) {
  cr_redis_url_t u;
  char err[1024];
  memset(err, 'X', sizeof err);
  err[sizeof err - 1] = '\0';
  int rc = cr_redis_url_parse(url, &u, err, sizeof err);
  if (rc != CR_EINVAL) fail_msg("'%s': rc %d, want CR_EINVAL (err '%s')", url, rc, rc ? err : "");
  if (strcmp(err, msg) != 0) fail_msg("'%s':\n  error '%s'\n  want  '%s'", url, err, msg);
}

static void expect_description(const char *url, const char *want) {
  cr_redis_url_t u = parse_ok(url);
  char out[600];
  cr_redis_url_describe(&u, out, sizeof out);
  assert_string_equal(out, want);
}

static void test_host_port_db(void **state) {
  (void)state;
  expect_tcp("redis://localhost:6380/2", "localhost", 6380, "", "", 2);
  expect_tcp("redis://127.0.0.1:6379/0", "127.0.0.1", 6379, "", "", 0);
  expect_tcp("redis://redis.example.com:1/15", "redis.example.com", 1, "", "", 15);
  expect_tcp("redis://h:65535/65535", "h", 65535, "", "", 65535);
  /* The database is optional; a bare '/' is database 0. */
  expect_tcp("redis://h:7000", "h", 7000, "", "", 0);
  expect_tcp("redis://h:7000/", "h", 7000, "", "", 0);
}

static void test_default_port(void **state) {
  (void)state;
  expect_tcp("redis://localhost", "localhost", 6379, "", "", 0);
  expect_tcp("redis://localhost/3", "localhost", 6379, "", "", 3);
  expect_tcp("redis://localhost/", "localhost", 6379, "", "", 0);
}

static void test_password_and_user(void **state) {
  (void)state;
  /* The default user: ":password@" or "password@". */
  expect_tcp("redis://:secret@h:6379/1", "h", 6379, "", "secret", 1);
  expect_tcp("redis://secret@h", "h", 6379, "", "secret", 0);
  /* An ACL user. */
  expect_tcp("redis://app:s3cret@h:6390/4", "h", 6390, "app", "s3cret", 4);
  expect_tcp("redis://app:@h", "h", 6379, "app", "", 0);
  /* An empty user info is no password at all. */
  expect_tcp("redis://@h", "h", 6379, "", "", 0);
  expect_tcp("redis://:@h", "h", 6379, "", "", 0);
  /* The last '@' ends the user info: the password may hold '@' and ':'. */
  expect_tcp("redis://:p@ss@h:1", "h", 1, "", "p@ss", 0);
  expect_tcp("redis://app:a:b@h", "h", 6379, "app", "a:b", 0);
}

static void test_percent_encoded(void **state) {
  (void)state;
  expect_tcp("redis://:p%40ss%3Aw%2Fd%25@h", "h", 6379, "", "p@ss:w/d%", 0);
  expect_tcp("redis://my%20user:%e2%9c%93@h/2", "h", 6379, "my user", "\xE2\x9C\x93", 2);
  /* '+' is not a space in a URL's user info. */
  expect_tcp("redis://:a+b@h", "h", 6379, "", "a+b", 0);
  /* A '%' without two hex digits is kept. */
  expect_tcp("redis://:100%@h", "h", 6379, "", "100%", 0);
  expect_tcp("redis://:%zz@h", "h", 6379, "", "%zz", 0);
  /* Host names are not decoded. */
  expect_tcp("redis://a%2Eb:1", "a%2Eb", 1, "", "", 0);
}

static void test_lengths(void **state) {
  (void)state;
  /* The longest user and password that fit (255 bytes each, decoded). */
  char url[2048], want[256];
  memset(want, 'p', 255);
  want[255] = '\0';
  snprintf(url, sizeof url, "redis://%s:%s@h", want, want);
  expect_tcp(url, "h", 6379, want, want, 0);
  /* Encoded, 255 decoded bytes take 765 characters: still fits. */
  char enc[800] = "";
  for (int i = 0; i < 255; i++) strcat(enc, "%41");
  memset(want, 'A', 255);
  snprintf(url, sizeof url, "redis://:%s@h", enc);
  expect_tcp(url, "h", 6379, "", want, 0);
  /* One more byte does not. */
  memset(want, 'p', 255);
  snprintf(url, sizeof url, "redis://:%sp@h", want);
  expect_refused(url, "bad Redis URL: password too long");
  snprintf(url, sizeof url, "redis://%sp:x@h", want);
  expect_refused(url, "bad Redis URL: user name too long");
  /* The longest host name that fits (255), bracketed or not; then one more. */
  char host[300];
  memset(host, 'h', 256);
  host[255] = '\0';
  snprintf(url, sizeof url, "redis://%s:1", host);
  expect_tcp(url, host, 1, "", "", 0);
  host[255] = 'h';
  host[256] = '\0';
  snprintf(url, sizeof url, "redis://%s:1", host);
  char msg[2200];
  snprintf(msg, sizeof msg, "bad Redis URL '%s': host name too long", url);
  expect_refused(url, msg);
  snprintf(url, sizeof url, "redis://[%s]:1", host);
  snprintf(msg, sizeof msg, "bad Redis URL '%s': host name too long", url);
  expect_refused(url, msg);
}

static void test_ipv6(void **state) {
  (void)state;
  expect_tcp("redis://[::1]:6380", "::1", 6380, "", "", 0);
  expect_tcp("redis://[::1]", "::1", 6379, "", "", 0);
  expect_tcp("redis://[::1]/5", "::1", 6379, "", "", 5);
  expect_tcp("redis://:pw@[fe80::1:2]:7/1", "fe80::1:2", 7, "", "pw", 1);
  expect_refused("redis://[::1:6380", "bad Redis URL 'redis://[::1:6380': no ']' after the IPv6 address");
  expect_refused("redis://[]:6380", "bad Redis URL 'redis://[]:6380': no host");
  expect_refused("redis://[::1]6380", "bad Redis URL 'redis://[::1]6380': bad port");
  expect_refused("redis://[::1]x/1", "bad Redis URL 'redis://[::1]x/1': bad port");
  expect_refused("redis://[::1]:", "bad Redis URL 'redis://[::1]:': bad port");
  /* Without brackets, the first ':' ends the host. */
  expect_refused("redis://::1:6380", "bad Redis URL 'redis://::1:6380': no host");
}

static void test_unix(void **state) {
  (void)state;
  expect_unix("unix:///run/redis.sock", "/run/redis.sock", 0);
  expect_unix("unix:///tmp/r.sock?db=3", "/tmp/r.sock", 3);
  expect_unix("unix:///tmp/r.sock?db=0", "/tmp/r.sock", 0);
  expect_unix("unix:///a b/r.sock", "/a b/r.sock", 0); /* the path is taken as written */
  /* The longest path that fits (511 bytes). */
  char url[700], path[600];
  path[0] = '/';
  memset(path + 1, 'p', 510);
  path[511] = '\0';
  snprintf(url, sizeof url, "unix://%s", path);
  expect_unix(url, path, 0);
  path[511] = 'p';
  path[512] = '\0';
  snprintf(url, sizeof url, "unix://%s", path);
  char msg[800];
  snprintf(msg, sizeof msg, "bad Redis URL '%s': expected unix:///absolute/path.sock", url);
  expect_refused(url, msg);
  expect_refused("unix://", "bad Redis URL 'unix://': expected unix:///absolute/path.sock");
  expect_refused("unix://relative.sock",
                 "bad Redis URL 'unix://relative.sock': expected unix:///absolute/path.sock");
  expect_refused("unix://?db=1", "bad Redis URL 'unix://?db=1': expected unix:///absolute/path.sock");
  expect_refused("unix:///r.sock?db=", "bad Redis URL 'unix:///r.sock?db=': bad database number");
  expect_refused("unix:///r.sock?db=x", "bad Redis URL 'unix:///r.sock?db=x': bad database number");
  expect_refused("unix:///r.sock?db=-1", "bad Redis URL 'unix:///r.sock?db=-1': bad database number");
  expect_refused("unix:///r.sock?db=2x", "bad Redis URL 'unix:///r.sock?db=2x': bad database number");
  expect_refused("unix:///r.sock?db=65536", "bad Redis URL 'unix:///r.sock?db=65536': bad database number");
  expect_refused("unix:///r.sock?timeout=1",
                 "bad Redis URL 'unix:///r.sock?timeout=1': expected unix:///absolute/path.sock[?db=N]");
  expect_refused("unix:///r.sock?",
                 "bad Redis URL 'unix:///r.sock?': expected unix:///absolute/path.sock[?db=N]");
}

static void test_refused(void **state) {
  (void)state;
  const char *scheme = "': expected redis://[:password@]host:port[/db] or unix:///path";
  const char *bad_scheme[] = {"",         "localhost:6379", "rediss://h:6379", "REDIS://h",
                              "http://h", "redis:/h",       "unix:/x"};
  for (size_t i = 0; i < sizeof bad_scheme / sizeof bad_scheme[0]; i++) {
    char msg[256];
    snprintf(msg, sizeof msg, "bad Redis URL '%s%s", bad_scheme[i], scheme);
    expect_refused(bad_scheme[i], msg);
  }
  expect_refused("redis://", "bad Redis URL 'redis://': no host");
  expect_refused("redis://:6379", "bad Redis URL 'redis://:6379': no host");
  expect_refused("redis:///1", "bad Redis URL 'redis:///1': no host");
  expect_refused("redis://:pw@", "bad Redis URL 'redis://:***@': no host");
  /* A password is never shown in an error (it would reach the log). */
  expect_refused("redis://:s3cret@h:99999", "bad Redis URL 'redis://:***@h:99999': bad port");
  expect_refused("redis://admin:s3cret@h:1/x", "bad Redis URL 'redis://admin:***@h:1/x': bad database number");
  expect_refused("redis://nopass@h:0", "bad Redis URL 'redis://nopass@h:0': bad port");
  /* Ports: 1..65535, digits only. */
  const char *bad_port[] = {"redis://h:",      "redis://h:0",
                            "redis://h:65536", "redis://h:-1",
                            "redis://h:+80",   "redis://h: 80",
                            "redis://h:80x",   "redis://h:0x50",
                            "redis://h:80:81", "redis://h:99999999999999999999/1"};
  for (size_t i = 0; i < sizeof bad_port / sizeof bad_port[0]; i++) {
    char msg[256];
    snprintf(msg, sizeof msg, "bad Redis URL '%s': bad port", bad_port[i]);
    expect_refused(bad_port[i], msg);
  }
  /* Databases: 0..65535, digits only. */
  const char *bad_db[] = {"redis://h/x",   "redis://h/-1",   "redis://h/65536",
                          "redis://h/1/2", "redis://h/+1",   "redis://h/ 1",
                          "redis://h/1?a", "redis://h:1/1x", "redis://h/99999999999999999999"};
  for (size_t i = 0; i < sizeof bad_db / sizeof bad_db[0]; i++) {
    char msg[256];
    snprintf(msg, sizeof msg, "bad Redis URL '%s': bad database number", bad_db[i]);
    expect_refused(bad_db[i], msg);
  }
  /* A NUL byte would cut the user or password short at AUTH. */
  expect_refused("redis://:a%00b@h", "bad Redis URL: the password contains a NUL byte (%00)");
  expect_refused("redis://a%00:b@h", "bad Redis URL: the user name contains a NUL byte (%00)");
}

static void test_describe(void **state) {
  (void)state;
  /* Never the user or the password. */
  expect_description("redis://app:secret@h:6390/4", "redis://h:6390/4");
  expect_description("redis://h", "redis://h:6379");
  expect_description("redis://h:1/0", "redis://h:1");
  expect_description("redis://[::1]:6380/2", "redis://[::1]:6380/2");
  expect_description("unix:///run/r.sock", "unix:///run/r.sock");
  expect_description("unix:///run/r.sock?db=7", "unix:///run/r.sock?db=7");
  /* A short buffer is cut, never overrun. */
  cr_redis_url_t u = parse_ok("redis://localhost:6379/9");
  char out[12];
  memset(out, 'X', sizeof out);
  cr_redis_url_describe(&u, out, 10);
  assert_string_equal(out, "redis://l");
  assert_int_equal(out[10], 'X');
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_host_port_db),
      cmocka_unit_test(test_default_port),
      cmocka_unit_test(test_password_and_user),
      cmocka_unit_test(test_percent_encoded),
      cmocka_unit_test(test_lengths),
      cmocka_unit_test(test_ipv6),
      cmocka_unit_test(test_unix),
      cmocka_unit_test(test_refused),
      cmocka_unit_test(test_describe),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
