/* test_config.c - server settings: defaults, crescent.conf, environment, flags (core/base/config.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "error.h"

extern char **environ;

static char g_dir[256];
static char g_conf[300];
static char g_err[1024];

static void clear_crescent_env(void) {
  /* Collect first: unsetenv changes environ. */
  char names[64][128];
  int n = 0;
  for (char **e = environ; *e && n < 64; e++) {
    if (strncmp(*e, "CRESCENT_", 9) != 0) continue;
    const char *eq = strchr(*e, '=');
    snprintf(names[n++], sizeof names[0], "%.*s", (int)(eq ? eq - *e : (long)strlen(*e)), *e);
  }
  for (int i = 0; i < n; i++) unsetenv(names[i]);
}

static int setup(void **state) {
  (void)state;
  clear_crescent_env();
  snprintf(g_dir, sizeof g_dir, "/tmp/cr-config-XXXXXX");
  if (!mkdtemp(g_dir)) return -1;
  snprintf(g_conf, sizeof g_conf, "%s/crescent.conf", g_dir);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  clear_crescent_env();
  unlink(g_conf);
  rmdir(g_dir);
  return 0;
}

static void write_conf(const char *text) {
  FILE *f = fopen(g_conf, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

/* Loads with the given flags (argv[0] is a program name, flags start at 1). */
static int load(cr_config_t *c, const char *conf, int argc, const char **argv, char **rest, int *nrest) {
  char *dummy[16];
  int dn;
  g_err[0] = '\0';
  return cr_config_load(c, conf, argc, (char **)argv, 1, rest ? rest : dummy, nrest ? nrest : &dn, g_err,
                        sizeof g_err);
}

static void test_defaults(void **state) {
  (void)state;
  cr_config_t c;
  cr_config_defaults(&c);
  assert_string_equal(c.functions_dir, "./functions");
  assert_string_equal(c.listen, "127.0.0.1:8080");
  assert_string_equal(c.listen_host, "127.0.0.1");
  assert_int_equal(c.listen_port, 8080);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  assert_int_equal(c.workers, cpus > 0 ? cpus : 1);
  assert_string_equal(c.redis, "auto");
  assert_string_equal(c.data_dir, "./.crescent");
  assert_string_equal(c.log_level, "info");
  assert_null(c.admin_token);
  assert_int_equal(c.max_body, 6 * 1024 * 1024);
  assert_int_equal(c.max_header, 16 * 1024);
  assert_true(c.request_timeout == 30);
  assert_true(c.keepalive_timeout == 30);
  assert_true(c.drain_timeout == 30);
  assert_true(c.kill_grace == 1);
  assert_int_equal(c.max_connections, 4096);
  assert_int_equal(c.no_watch, 0);
  assert_int_equal(c.metrics_public, 0);
  /* Nothing anywhere: defaults stay. */
  const char *argv[] = {"crescent"};
  char *rest[4];
  int nrest = -1;
  assert_int_equal(load(&c, g_conf, 1, argv, rest, &nrest), 0);
  assert_int_equal(nrest, 0);
  assert_int_equal(c.listen_port, 8080);
  cr_config_free(&c);
  assert_null(c.functions_dir);
  cr_config_free(&c); /* twice is harmless */
}

static void test_flags(void **state) {
  (void)state;
  cr_config_t c;
  cr_config_defaults(&c);
  const char *argv[] = {"crescent", "--functions", "fdir", "pos1", "--listen=0.0.0.0:9000", "--workers", "3",
                        "--no-watch", "pos2", "--max-body=1m", "--request-timeout", "500ms",
                        "--admin-token", "s3cret", "--kill-grace=2s", "--log-level", "debug", "--redis",
                        "redis://127.0.0.1:6379/0", "--data=/var/lib/x", "--max-header", "32k",
                        "--keepalive-timeout=1m", "--drain-timeout", "5", "--max-connections", "10"};
  int argc = (int)(sizeof argv / sizeof argv[0]);
  char *rest[8];
  int nrest = 0;
  assert_int_equal(load(&c, g_conf, argc, argv, rest, &nrest), 0);
  assert_int_equal(nrest, 2);
  assert_string_equal(rest[0], "pos1");
  assert_string_equal(rest[1], "pos2");
  assert_string_equal(c.functions_dir, "fdir");
  assert_string_equal(c.listen, "0.0.0.0:9000");
  assert_string_equal(c.listen_host, "0.0.0.0");
  assert_int_equal(c.listen_port, 9000);
  assert_int_equal(c.workers, 3);
  assert_int_equal(c.no_watch, 1);
  assert_int_equal(c.max_body, 1024 * 1024);
  assert_true(fabs(c.request_timeout - 0.5) < 1e-12);
  assert_string_equal(c.admin_token, "s3cret");
  assert_true(c.kill_grace == 2);
  assert_string_equal(c.log_level, "debug");
  assert_string_equal(c.redis, "redis://127.0.0.1:6379/0");
  assert_string_equal(c.data_dir, "/var/lib/x");
  assert_int_equal(c.max_header, 32 * 1024);
  assert_true(c.keepalive_timeout == 60);
  assert_true(c.drain_timeout == 5);
  assert_int_equal(c.max_connections, 10);
  /* A flag given twice: the last wins. */
  const char *argv2[] = {"crescent", "--workers", "2", "--workers=5", "--no-watch=false"};
  assert_int_equal(load(&c, g_conf, 5, argv2, NULL, NULL), 0);
  assert_int_equal(c.workers, 5);
  assert_int_equal(c.no_watch, 0);
  cr_config_free(&c);
}

static void test_flag_errors(void **state) {
  (void)state;
  cr_config_t c;
  cr_config_defaults(&c);
  const char *a1[] = {"crescent", "--bogus", "1"};
  assert_int_equal(load(&c, g_conf, 3, a1, NULL, NULL), CR_EINVAL);
  assert_non_null(strstr(g_err, "bogus"));
  const char *a2[] = {"crescent", "--workers"};
  assert_int_equal(load(&c, g_conf, 2, a2, NULL, NULL), CR_EINVAL);
  assert_non_null(strstr(g_err, "--workers"));
  assert_non_null(strstr(g_err, "value"));
  const char *a3[] = {"crescent", "--workers", "zero"};
  assert_int_equal(load(&c, g_conf, 3, a3, NULL, NULL), CR_EINVAL);
  assert_non_null(strstr(g_err, "--workers"));
  assert_non_null(strstr(g_err, "zero"));
  const char *a4[] = {"crescent", "--max-body=lots"};
  assert_int_equal(load(&c, g_conf, 2, a4, NULL, NULL), CR_EINVAL);
  assert_non_null(strstr(g_err, "--max-body"));
  const char *a5[] = {"crescent", "--request-timeout", "soon"};
  assert_int_equal(load(&c, g_conf, 3, a5, NULL, NULL), CR_EINVAL);
  assert_non_null(strstr(g_err, "--request-timeout"));
  const char *a6[] = {"crescent", "--no-watch=maybe"};
  assert_int_equal(load(&c, g_conf, 2, a6, NULL, NULL), CR_EINVAL);
  assert_non_null(strstr(g_err, "--no-watch"));
  const char *a7[] = {"crescent", "--listen", "nowhere"};
  assert_int_equal(load(&c, g_conf, 3, a7, NULL, NULL), CR_EINVAL);
  assert_non_null(strstr(g_err, "--listen"));
  const char *a8[] = {"crescent", "--this-is-a-very-long-option-name-that-goes-past-sixty-four-characters-xx", "1"};
  assert_int_equal(load(&c, g_conf, 3, a8, NULL, NULL), CR_EINVAL);
  assert_non_null(strstr(g_err, "unknown option"));
  cr_config_free(&c);
}

static void set_err(cr_config_t *c, const char *name, const char *value, const char *needle) {
  char err[512] = "";
  int rc = cr_config_set(c, name, value, err, sizeof err);
  if (rc != CR_EINVAL) fail_msg("--%s %s: accepted", name, value);
  if (!strstr(err, needle)) fail_msg("--%s %s: error '%s' lacks '%s'", name, value, err, needle);
}

static void set_ok(cr_config_t *c, const char *name, const char *value) {
  char err[512] = "";
  if (cr_config_set(c, name, value, err, sizeof err)) fail_msg("--%s %s refused: %s", name, value, err);
}

static void test_set_values(void **state) {
  (void)state;
  cr_config_t c;
  cr_config_defaults(&c);
  set_err(&c, "workers", "0", "--workers");
  /* The dashboard's series step: 1 s to 60 s. */
  assert_true(c.series_interval == 10);
  set_err(&c, "series-interval", "0.5", "from 1s to 60s");
  set_err(&c, "series-interval", "61", "from 1s to 60s");
  set_ok(&c, "series-interval", "1");
  assert_true(c.series_interval == 1);
  set_ok(&c, "series-interval", "1m");
  assert_true(c.series_interval == 60);
  set_err(&c, "workers", "-2", "--workers");
  set_err(&c, "workers", "2x", "2x");
  set_err(&c, "workers", "", "--workers");
  set_err(&c, "workers", "300", "256");
  set_err(&c, "max-connections", "0", "--max-connections");
  set_err(&c, "max-connections", "99999999", "--max-connections");
  set_err(&c, "max-body", "0", "--max-body");
  set_err(&c, "max-header", "-1k", "--max-header");
  set_err(&c, "request-timeout", "0", "--request-timeout");
  set_err(&c, "keepalive-timeout", "-1", "--keepalive-timeout");
  set_err(&c, "drain-timeout", "1h", "--drain-timeout");
  set_err(&c, "no-watch", "on", "--no-watch");
  set_err(&c, "nope", "1", "unknown option 'nope'");
  set_ok(&c, "workers", "256");
  assert_int_equal(c.workers, 256);
  set_ok(&c, "workers", "1");
  set_ok(&c, "no-watch", "yes");
  assert_int_equal(c.no_watch, 1);
  set_ok(&c, "no-watch", "0");
  assert_int_equal(c.no_watch, 0);
  set_ok(&c, "no-watch", "1");
  set_ok(&c, "no-watch", "no");
  assert_int_equal(c.no_watch, 0);
  set_ok(&c, "metrics-public", "true");
  assert_int_equal(c.metrics_public, 1);
  set_ok(&c, "metrics-public", "false");
  assert_int_equal(c.metrics_public, 0);
  set_err(&c, "metrics-public", "maybe", "--metrics-public");
  set_ok(&c, "functions", "");
  assert_string_equal(c.functions_dir, "");
  /* A queue's depth bound: positive, and allowed past the other counts' million. */
  assert_int_equal(c.queue_max_depth, 1000000);
  set_err(&c, "queue-max-depth", "0", "--queue-max-depth");
  set_err(&c, "queue-max-depth", "1000000001", "--queue-max-depth");
  set_ok(&c, "queue-max-depth", "50000000");
  assert_int_equal(c.queue_max_depth, 50000000);
  cr_config_free(&c);
}

/* A refused value leaves the setting as it was. */
static void test_refused_value_keeps_old(void **state) {
  (void)state;
  cr_config_t c;
  cr_config_defaults(&c);
  char err[256];
  assert_int_equal(cr_config_set(&c, "max-body", "0", err, sizeof err), CR_EINVAL);
  assert_int_equal(c.max_body, 6 * 1024 * 1024);
  assert_int_equal(cr_config_set(&c, "request-timeout", "0", err, sizeof err), CR_EINVAL);
  assert_true(c.request_timeout == 30);
  assert_int_equal(cr_config_set(&c, "listen", "1.2.3.4:99999", err, sizeof err), CR_EINVAL);
  assert_string_equal(c.listen, "127.0.0.1:8080");
  assert_string_equal(c.listen_host, "127.0.0.1");
  assert_int_equal(c.listen_port, 8080);
  cr_config_free(&c);
}

static void listen_ok(const char *v, const char *host, int port) {
  cr_config_t c;
  cr_config_defaults(&c);
  char err[256] = "";
  if (cr_config_set(&c, "listen", v, err, sizeof err)) fail_msg("--listen %s refused: %s", v, err);
  assert_string_equal(c.listen, v);
  if (strcmp(c.listen_host, host) != 0) fail_msg("--listen %s: host '%s', want '%s'", v, c.listen_host, host);
  assert_int_equal(c.listen_port, port);
  cr_config_free(&c);
}

static void test_listen(void **state) {
  (void)state;
  listen_ok("127.0.0.1:80", "127.0.0.1", 80);
  listen_ok("[::1]:80", "::1", 80);
  listen_ok("[::]:8443", "::", 8443);
  listen_ok("0.0.0.0:0", "0.0.0.0", 0);
  listen_ok(":8080", "0.0.0.0", 8080);
  listen_ok("localhost:65535", "localhost", 65535);
  cr_config_t c;
  cr_config_defaults(&c);
  set_err(&c, "listen", "nocolon", "--listen");
  set_err(&c, "listen", "host:", "--listen");
  set_err(&c, "listen", "host:65536", "port");
  set_err(&c, "listen", "host:-1", "port");
  set_err(&c, "listen", "host:80x", "port");
  set_err(&c, "listen", "[::1]", "--listen");
  set_err(&c, "listen", "", "--listen");
  char longhost[200];
  memset(longhost, 'h', 100);
  snprintf(longhost + 100, sizeof longhost - 100, ":80");
  set_err(&c, "listen", longhost, "too long");
  /* A name is refused when parsed, naming it, not at bind() as "Invalid argument". */
  set_err(&c, "listen", "nothost:1", "--listen: 'nothost' is not an IP address or localhost");
  set_err(&c, "listen", "example.com:80", "'example.com' is not an IP address or localhost");
  set_err(&c, "listen", "[nothost]:80", "'nothost' is not an IP address or localhost");
  set_err(&c, "listen", "1.2.3:80", "'1.2.3' is not an IP address");
  set_err(&c, "listen", "[::1:80", "'[::1' is not an IP address");
  assert_string_equal(c.listen, "127.0.0.1:8080");
  assert_string_equal(c.listen_host, "127.0.0.1");
  listen_ok("::1:80", "::1", 80);
  cr_config_free(&c);
}

/* --log-level takes the four names in any case, stored lower-case; anything
 * else is an error like every other bad value, not a silent info. */
static void test_log_level(void **state) {
  (void)state;
  cr_config_t c;
  cr_config_defaults(&c);
  const char *ok[][2] = {{"debug", "debug"}, {"WARN", "warn"}, {"Error", "error"}, {"iNfO", "info"}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    set_ok(&c, "log-level", ok[i][0]);
    assert_string_equal(c.log_level, ok[i][1]);
  }
  set_err(&c, "log-level", "loud", "--log-level: expected debug, info, warn or error, got 'loud'");
  set_err(&c, "log-level", "", "got ''");
  set_err(&c, "log-level", "warning", "got 'warning'");
  set_err(&c, "log-level", "info ", "got 'info '");
  set_err(&c, "log-level", "debugdebugdebugdebug", "got 'debugdebugdebugdebug'");
  assert_string_equal(c.log_level, "info"); /* the last good value stays */
  const char *argv[] = {"crescent", "--log-level", "loud"};
  assert_int_equal(load(&c, g_conf, 3, argv, NULL, NULL), CR_EINVAL);
  assert_string_equal(g_err, "--log-level: expected debug, info, warn or error, got 'loud'");
  setenv("CRESCENT_LOG_LEVEL", "WARN", 1);
  const char *none[] = {"crescent"};
  assert_int_equal(load(&c, g_conf, 1, none, NULL, NULL), 0);
  assert_string_equal(c.log_level, "warn");
  setenv("CRESCENT_LOG_LEVEL", "verbose", 1);
  assert_int_equal(load(&c, g_conf, 1, none, NULL, NULL), CR_EINVAL);
  assert_string_equal(g_err, "CRESCENT_LOG_LEVEL: --log-level: expected debug, info, warn or error, got 'verbose'");
  unsetenv("CRESCENT_LOG_LEVEL");
  cr_config_free(&c);
}

static void test_parse_size(void **state) {
  (void)state;
  struct {
    const char *s;
    size_t v;
  } good[] = {{"0", 0},          {"1048576", 1048576}, {"6m", 6291456},  {"6M", 6291456}, {"6mb", 6291456},
              {"16KB", 16384},   {"16kb", 16384},      {"16K", 16384},   {"16k", 16384},  {"1g", 1073741824},
              {"0.5k", 512},     {"10 m", 10485760},   {"1b", 1},        {"1B", 1},       {"2.5m", 2621440}};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    size_t v = 12345;
    if (cr_parse_size(good[i].s, &v)) fail_msg("'%s' refused", good[i].s);
    if (v != good[i].v) fail_msg("'%s' gave %zu, want %zu", good[i].s, v, good[i].v);
  }
  const char *bad[] = {"", "abc", "-1", "5x", "5mm", "5kbb", "1e16", "k", "m5", "5 k b"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    size_t v = 777;
    if (cr_parse_size(bad[i], &v) != CR_EINVAL) fail_msg("'%s' accepted (gave %zu)", bad[i], v);
    assert_int_equal(v, 777);
  }
}

/* Not-a-number and infinity are not sizes. */
static void test_parse_size_nan(void **state) {
  (void)state;
  const char *bad[] = {"nan", "NaN", "inf", "infinity", "nank"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    size_t v = 777;
    if (cr_parse_size(bad[i], &v) != CR_EINVAL) fail_msg("'%s' accepted as a size (gave %zu)", bad[i], v);
  }
}

/* The logs' settings (README "Operating crescent"): defaults, an age in hours or days, the
 * access log's three values. */
static void test_log_settings(void **state) {
  (void)state;
  cr_config_t c;
  cr_config_defaults(&c);
  assert_int_equal(c.log_retention, 10000);
  assert_true(fabs(c.log_max_age - 7 * 86400) < 1e-9);
  assert_string_equal(c.access_log, "errors");
  set_ok(&c, "log-max-age", "12h");
  assert_true(fabs(c.log_max_age - 12 * 3600) < 1e-9);
  set_ok(&c, "log-max-age", "30d");
  assert_true(fabs(c.log_max_age - 30 * 86400) < 1e-9);
  set_ok(&c, "log-max-age", "90s");
  assert_true(fabs(c.log_max_age - 90) < 1e-9);
  set_err(&c, "log-max-age", "5w", "--log-max-age");
  set_err(&c, "log-max-age", "0", "--log-max-age");
  set_err(&c, "log-max-age", "4000d", "--log-max-age");
  set_err(&c, "log-max-age", "d", "--log-max-age");
  set_ok(&c, "log-retention", "50");
  assert_int_equal(c.log_retention, 50);
  set_err(&c, "log-retention", "0", "--log-retention");
  set_ok(&c, "access-log", "all");
  assert_string_equal(c.access_log, "all");
  set_ok(&c, "access-log", "off");
  assert_string_equal(c.access_log, "off");
  set_err(&c, "access-log", "some", "off, errors or all");
  assert_string_equal(c.access_log, "off");
  /* the request timeouts still take no hours */
  set_err(&c, "drain-timeout", "1h", "--drain-timeout");
  cr_config_free(&c);
}

static void test_parse_seconds(void **state) {
  (void)state;
  struct {
    const char *s;
    double v;
  } good[] = {{"30", 30}, {"0.5", 0.5}, {"500ms", 0.5}, {"2s", 2}, {"1m", 60}, {"0", 0}, {"1.5m", 90}, {"1ms", 0.001}};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    double v = -1;
    if (cr_parse_seconds(good[i].s, &v)) fail_msg("'%s' refused", good[i].s);
    if (fabs(v - good[i].v) > 1e-12) fail_msg("'%s' gave %g, want %g", good[i].s, v, good[i].v);
  }
  const char *bad[] = {"", "x", "-1", "5h", "5 s", "nan", "inf", "1e10", "5sec", "ms", "500MS"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    double v = 777;
    if (cr_parse_seconds(bad[i], &v) != CR_EINVAL) fail_msg("'%s' accepted (gave %g)", bad[i], v);
    assert_true(v == 777);
  }
}

static void test_conf_file(void **state) {
  (void)state;
  write_conf("# crescent.conf\n"
             "\n"
             "functions = /srv/fn\n"
             "  listen = \"127.0.0.1:6000\"  \n"
             "workers=2\n"
             "\tmax-header = 32k\n"
             "no-watch = true\n"
             "admin-token = \"with spaces inside\"\n");
  cr_config_t c;
  cr_config_defaults(&c);
  const char *argv[] = {"crescent"};
  assert_int_equal(load(&c, g_conf, 1, argv, NULL, NULL), 0);
  assert_string_equal(c.functions_dir, "/srv/fn");
  assert_string_equal(c.listen, "127.0.0.1:6000");
  assert_int_equal(c.listen_port, 6000);
  assert_int_equal(c.workers, 2);
  assert_int_equal(c.max_header, 32768);
  assert_int_equal(c.no_watch, 1);
  assert_string_equal(c.admin_token, "with spaces inside");
  cr_config_free(&c);
  /* A missing file is no error. */
  cr_config_defaults(&c);
  char missing[400];
  snprintf(missing, sizeof missing, "%s/none.conf", g_dir);
  assert_int_equal(load(&c, missing, 1, argv, NULL, NULL), 0);
  assert_int_equal(c.listen_port, 8080);
  cr_config_free(&c);
}

static void test_conf_file_errors(void **state) {
  (void)state;
  cr_config_t c;
  const char *argv[] = {"crescent"};
  write_conf("workers = 2\njust some words\n");
  cr_config_defaults(&c);
  assert_int_equal(load(&c, g_conf, 1, argv, NULL, NULL), CR_EINVAL);
  assert_non_null(strstr(g_err, g_conf));
  assert_non_null(strstr(g_err, ":2:"));
  assert_non_null(strstr(g_err, "name = value"));
  cr_config_free(&c);
  write_conf("# ok\nbogus = 1\n");
  cr_config_defaults(&c);
  assert_int_equal(load(&c, g_conf, 1, argv, NULL, NULL), CR_EINVAL);
  assert_non_null(strstr(g_err, ":2:"));
  assert_non_null(strstr(g_err, "bogus"));
  cr_config_free(&c);
  write_conf("\n\n\nworkers = many\n");
  cr_config_defaults(&c);
  assert_int_equal(load(&c, g_conf, 1, argv, NULL, NULL), CR_EINVAL);
  assert_non_null(strstr(g_err, ":4:"));
  assert_non_null(strstr(g_err, "many"));
  cr_config_free(&c);
}

static void test_env(void **state) {
  (void)state;
  cr_config_t c;
  cr_config_defaults(&c);
  setenv("CRESCENT_LISTEN", "127.0.0.1:7000", 1);
  setenv("CRESCENT_MAX_BODY", "2m", 1);
  setenv("CRESCENT_NO_WATCH", "yes", 1);
  setenv("CRESCENT_LOG_LEVEL", "debug", 1);
  setenv("CRESCENT_ADMIN_TOKEN", "tok", 1);
  setenv("CRESCENT_KEEPALIVE_TIMEOUT", "750ms", 1);
  setenv("CRESCENT_WORKERS", "", 1); /* empty: ignored */
  const char *argv[] = {"crescent"};
  assert_int_equal(load(&c, g_conf, 1, argv, NULL, NULL), 0);
  assert_int_equal(c.listen_port, 7000);
  assert_int_equal(c.max_body, 2 * 1024 * 1024);
  assert_int_equal(c.no_watch, 1);
  assert_string_equal(c.log_level, "debug");
  assert_string_equal(c.admin_token, "tok");
  assert_true(fabs(c.keepalive_timeout - 0.75) < 1e-12);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  assert_int_equal(c.workers, cpus > 0 ? cpus : 1);
  cr_config_free(&c);
  /* A bad value names the variable. */
  setenv("CRESCENT_WORKERS", "lots", 1);
  cr_config_defaults(&c);
  assert_int_equal(load(&c, g_conf, 1, argv, NULL, NULL), CR_EINVAL);
  assert_non_null(strstr(g_err, "CRESCENT_WORKERS"));
  assert_non_null(strstr(g_err, "lots"));
  cr_config_free(&c);
}

static void test_precedence(void **state) {
  (void)state;
  write_conf("workers = 2\nfunctions = from-conf\nredis = redis://conf\n");
  setenv("CRESCENT_WORKERS", "3", 1);
  setenv("CRESCENT_FUNCTIONS", "from-env", 1);
  cr_config_t c;
  /* conf < env < flags */
  cr_config_defaults(&c);
  const char *a1[] = {"crescent", "--workers", "4"};
  assert_int_equal(load(&c, g_conf, 3, a1, NULL, NULL), 0);
  assert_int_equal(c.workers, 4);
  assert_string_equal(c.functions_dir, "from-env");
  assert_string_equal(c.redis, "redis://conf");
  cr_config_free(&c);
  cr_config_defaults(&c);
  const char *a2[] = {"crescent"};
  assert_int_equal(load(&c, g_conf, 1, a2, NULL, NULL), 0);
  assert_int_equal(c.workers, 3);
  cr_config_free(&c);
  unsetenv("CRESCENT_WORKERS");
  unsetenv("CRESCENT_FUNCTIONS");
  cr_config_defaults(&c);
  assert_int_equal(load(&c, g_conf, 1, a2, NULL, NULL), 0);
  assert_int_equal(c.workers, 2);
  assert_string_equal(c.functions_dir, "from-conf");
  cr_config_free(&c);
}

/* conf_path NULL reads ./crescent.conf. */
static void test_default_conf_path(void **state) {
  (void)state;
  write_conf("workers = 7\n");
  char cwd[PATH_MAX];
  assert_non_null(getcwd(cwd, sizeof cwd));
  assert_int_equal(chdir(g_dir), 0);
  cr_config_t c;
  cr_config_defaults(&c);
  const char *argv[] = {"crescent"};
  int rc = load(&c, NULL, 1, argv, NULL, NULL);
  int workers = c.workers;
  cr_config_free(&c);
  assert_int_equal(chdir(cwd), 0);
  assert_int_equal(rc, 0);
  assert_int_equal(workers, 7);
}

static void test_usage(void **state) {
  (void)state;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  assert_non_null(f);
  cr_config_usage(f);
  fclose(f);
  const char *flags[] = {"--functions V", "--listen V", "--workers V", "--redis V", "--data V",
                         "--admin-token V", "--log-level V", "--max-body V", "--max-header V",
                         "--request-timeout V", "--keepalive-timeout V", "--drain-timeout V",
                         "--kill-grace V", "--max-connections V", "--no-watch"};
  for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
    if (!strstr(text, flags[i])) fail_msg("usage lacks %s", flags[i]);
  assert_null(strstr(text, "--no-watch V"));
  free(text);
}

/* A command's help lists only the flags it reads, in the usual order. */
static void test_usage_of(void **state) {
  (void)state;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  assert_non_null(f);
  static const char *const names[] = {"init-timeout", "functions", NULL};
  cr_config_usage_of(f, names);
  fclose(f);
  const char *a = strstr(text, "  --functions V"), *b = strstr(text, "  --init-timeout V");
  assert_non_null(a);
  assert_non_null(b);
  assert_true(a == text && b > a);
  assert_null(strstr(text, "--listen"));
  assert_int_equal(strchr(b, '\n')[1], '\0'); /* two lines, nothing else */
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
      cmocka_unit_test_setup_teardown(test_flags, setup, teardown),
      cmocka_unit_test_setup_teardown(test_flag_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_set_values, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refused_value_keeps_old, setup, teardown),
      cmocka_unit_test_setup_teardown(test_listen, setup, teardown),
      cmocka_unit_test_setup_teardown(test_log_level, setup, teardown),
      cmocka_unit_test_setup_teardown(test_parse_size, setup, teardown),
      cmocka_unit_test_setup_teardown(test_parse_size_nan, setup, teardown),
      cmocka_unit_test_setup_teardown(test_parse_seconds, setup, teardown),
      cmocka_unit_test_setup_teardown(test_log_settings, setup, teardown),
      cmocka_unit_test_setup_teardown(test_conf_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_conf_file_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_env, setup, teardown),
      cmocka_unit_test_setup_teardown(test_precedence, setup, teardown),
      cmocka_unit_test_setup_teardown(test_default_conf_path, setup, teardown),
      cmocka_unit_test_setup_teardown(test_usage, setup, teardown),
      cmocka_unit_test_setup_teardown(test_usage_of, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
