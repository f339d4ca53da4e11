/* test_observe.c - what the platform says about requests, through the real
 * binary: how failures are counted (errors apart from client errors, in the
 * report line, /_/api/functions and /_/metrics), the platform's HTTP error
 * object, tracebacks, /_/health and Redis, request ids, user log fields, and
 * reason phrases. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* The longest X-Request-Id a client may bring (core/base/reqid.h). */
#define CR_TEST_ID 128

/* The line of the Prometheus text that starts with prefix (without its newline), or "". */
static const char *prom_line(const char *text, const char *prefix) {
  static char out[512];
  out[0] = '\0';
  size_t n = strlen(prefix);
  for (const char *p = text; p && *p;) {
    const char *nl = strchr(p, '\n');
    size_t len = nl ? (size_t)(nl - p) : strlen(p);
    if (len >= n && memcmp(p, prefix, n) == 0) {
      snprintf(out, sizeof out, "%.*s", (int)len, p);
      return out;
    }
    p = nl ? nl + 1 : NULL;
  }
  return out;
}

/* --- client errors are not errors --------------------------------------------------------------- */

static void client_errors_counted_apart(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "parse.lua",
            "return function(event)\n"
            "  if event.query.nf then return { status = 404, body = 'no such thing' } end\n"
            "  if event.query.boom then error('boom') end\n"
            "  return { got = event.json().a }\n"
            "end\n");
  srv_start(&s, "--workers 1 --redis none");

  char rid_bad[200], rid_nf[200], rid_ok[200], rid_boom[200];
  http_resp_t r;
  assert_int_equal(http_request(s.port, "POST", "/parse", NULL, "{bad", 4, &r), 0);
  assert_int_equal(r.status, 400);
  assert_non_null(strstr(r.body, "invalid JSON in request body"));
  http_request_id(&r, rid_bad, sizeof rid_bad);
  http_free(&r);
  http_get(s.port, "/parse?nf=1", &r);
  assert_int_equal(r.status, 404);
  http_request_id(&r, rid_nf, sizeof rid_nf);
  http_free(&r);
  assert_int_equal(http_request(s.port, "POST", "/parse", NULL, "{\"a\":1}", 7, &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{\"got\":1}");
  http_request_id(&r, rid_ok, sizeof rid_ok);
  http_free(&r);
  http_get(s.port, "/parse?boom=1", &r);
  assert_int_equal(r.status, 500);
  http_request_id(&r, rid_boom, sizeof rid_boom);
  http_free(&r);
  srv_expect_errors(&s, 1);

  /* The report lines: a bad body is a client error, a 404 the function
   * returned and a 200 are not failures, a raised error is one. */
  char *rep = srv_report_of(&s, rid_bad);
  assert_non_null(strstr(rep, "\"status\":400"));
  assert_non_null(strstr(rep, "\"outcome\":\"client_error\""));
  free(rep);
  rep = srv_report_of(&s, rid_nf);
  assert_non_null(strstr(rep, "\"status\":404"));
  assert_null(strstr(rep, "\"outcome\""));
  free(rep);
  rep = srv_report_of(&s, rid_ok);
  assert_null(strstr(rep, "\"outcome\""));
  free(rep);
  rep = srv_report_of(&s, rid_boom);
  assert_non_null(strstr(rep, "\"status\":500"));
  assert_non_null(strstr(rep, "\"outcome\":\"error\""));
  free(rep);

  http_get(s.port, "/_/api/functions", &r);
  assert_int_equal(r.status, 200);
  char *e = api_fn_entry(r.body, "parse");
  assert_non_null(e);
  const char *m = json_val(e, "metrics");
  assert_non_null(m);
  assert_int_equal((int)json_num(m, "invocations"), 4);
  assert_int_equal((int)json_num(m, "errors"), 1);
  assert_int_equal((int)json_num(m, "clientErrors"), 1);
  free(e);
  http_free(&r);

  http_get(s.port, "/_/metrics", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(prom_line(r.body, "crescent_errors_total{function=\"parse\"}"),
                      "crescent_errors_total{function=\"parse\"} 1");
  assert_string_equal(prom_line(r.body, "crescent_client_errors_total{function=\"parse\"}"),
                      "crescent_client_errors_total{function=\"parse\"} 1");
  assert_string_equal(prom_line(r.body, "# TYPE crescent_client_errors_total"),
                      "# TYPE crescent_client_errors_total counter");
  assert_true(strlen(prom_line(r.body, "# HELP crescent_client_errors_total ")) > 40);
  /* Every sample's metric has its HELP and TYPE before it (promtool's rule). */
  for (const char *p = r.body; *p;) {
    const char *nl = strchr(p, '\n');
    assert_non_null(nl);
    if (*p != '#') {
      char name[128];
      size_t n = strcspn(p, "{ ");
      snprintf(name, sizeof name, "%.*s", (int)n, p);
      char *cut = NULL;
      if ((cut = strstr(name, "_bucket")) || (cut = strstr(name, "_sum")) || (cut = strstr(name, "_count"))) *cut = '\0';
      char help[160], type[160];
      snprintf(help, sizeof help, "# HELP %s ", name);
      snprintf(type, sizeof type, "# TYPE %s ", name);
      const char *h = strstr(r.body, help), *t = strstr(r.body, type);
      if (!h || !t || h > p || t > p) fail_msg("no HELP/TYPE before the sample '%.*s'", (int)(nl - p), p);
    }
    p = nl + 1;
  }
  http_free(&r);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- the platform's HTTP error, caught ----------------------------------------------------------- */

static void http_error_prints_its_message(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "caught.lua",
            "return function(event)\n"
            "  local ok, e = pcall(event.json)\n"
            "  return table.concat({ tostring(ok), tostring(e), 'got: ' .. e, e .. '!', e.status,\n"
            "                        e.message, tostring(getmetatable(e)) }, '|')\n"
            "end\n");
  srv_start(&s, "--workers 1 --redis none");
  http_resp_t r;
  assert_int_equal(http_request(s.port, "POST", "/caught", NULL, "[1,", 3, &r), 0);
  assert_int_equal(r.status, 200);
  const char *msg = "invalid JSON in request body: unexpected end of input (expected a value) at character 4";
  char want[600];
  snprintf(want, sizeof want, "false|%s|got: %s|%s!|400|%s|crescent.http_error", msg, msg, msg, msg);
  assert_string_equal(r.body, want);
  http_free(&r);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- request ids a client brings --------------------------------------------------------------- */

/* GET /rid with an X-Request-Id header line (or none); returns the response. */
static void get_with_id(int port, const char *id, http_resp_t *r) {
  char h[400];
  if (id) snprintf(h, sizeof h, "X-Request-Id: %s\r\n", id);
  assert_int_equal(http_request(port, "GET", "/rid", id ? h : NULL, NULL, 0, r), 0);
}

static void request_id_from_the_client(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "rid.lua",
            "return function(event, ctx)\n"
            "  ctx.log.info('tracing')\n"
            "  return event.requestId .. '|' .. ctx.requestId\n"
            "end\n");
  srv_start(&s, "--workers 1 --redis none");
  char longest[CR_TEST_ID + 1];
  for (int i = 0; i < CR_TEST_ID; i++) longest[i] = "abcXYZ019._:-"[i % 13];
  longest[CR_TEST_ID] = '\0';
  const char *good[] = {"trace-7f3a.b_c:1", longest};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    http_resp_t r;
    get_with_id(s.port, good[i], &r);
    assert_int_equal(r.status, 200);
    char want[600], rid[300];
    snprintf(want, sizeof want, "%s|%s", good[i], good[i]);
    assert_string_equal(r.body, want);
    http_request_id(&r, rid, sizeof rid);
    assert_string_equal(rid, good[i]);
    http_free(&r);
    char idf[300];
    snprintf(idf, sizeof idf, "\"requestId\":\"%s\"", good[i]);
    assert_int_equal(srv_log_wait(&s, 1, 3000, "\"msg\":\"tracing\"", idf, NULL), 1);
    char *rep = srv_report_of(&s, good[i]);
    assert_non_null(strstr(rep, idf));
    free(rep);
  }
  /* Too long, bad characters, empty: ignored, the platform makes one. */
  char too_long[CR_TEST_ID + 2];
  memset(too_long, 'a', CR_TEST_ID + 1);
  too_long[CR_TEST_ID + 1] = '\0';
  const char *bad[] = {too_long, "has space", "quo\"te", "a=b", "", NULL};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    http_resp_t r;
    get_with_id(s.port, bad[i], &r);
    assert_int_equal(r.status, 200);
    char rid[300];
    http_request_id(&r, rid, sizeof rid);
    assert_int_equal(strlen(rid), 36);
    char want[600];
    snprintf(want, sizeof want, "%s|%s", rid, rid);
    assert_string_equal(r.body, want);
    http_free(&r);
  }
  /* A platform error answer carries it too. */
  http_resp_t r;
  assert_int_equal(http_request(s.port, "GET", "/_/nope", "X-Request-Id: from-lb-1\r\n", NULL, 0, &r), 0);
  assert_int_equal(r.status, 404);
  char rid[300];
  http_request_id(&r, rid, sizeof rid);
  assert_string_equal(rid, "from-lb-1");
  http_free(&r);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- user log fields named like the line's own ----------------------------------------------- */

static int count_of(const char *text, const char *needle) {
  int n = 0;
  for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

static void log_fields_kept(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "logs.lua",
            "local log = require 'crescent.log'\n"
            "return function(event, ctx)\n"
            "  ctx.log.warn('own-names', { level = 'x', msg = 'y', time = 1, requestId = 'r',\n"
            "                             ['function'] = 'f', worker = 2, other = 3 })\n"
            "  log.info('module-names', { level = 'z' })\n"
            "  return 'ok'\n"
            "end\n");
  srv_start(&s, "--workers 1 --redis none");
  http_expect_body(s.port, "/logs", "ok");
  assert_int_equal(srv_log_wait(&s, 1, 3000, "\"msg\":\"module-names\"", NULL), 1);
  char *l = srv_log_line(&s, "\"msg\":\"own-names\"", NULL);
  assert_non_null(l);
  const char *want[] = {"\"level\":\"warn\"",         "\"fields.level\":\"x\"",    "\"fields.msg\":\"y\"",
                        "\"fields.time\":1",           "\"fields.requestId\":\"r\"", "\"fields.function\":\"f\"",
                        "\"fields.worker\":2",         "\"other\":3",                "\"function\":\"logs\""};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (!strstr(l, want[i])) fail_msg("the line lacks %s: %s", want[i], l);
  /* Each of the line's own keys once. */
  assert_int_equal(count_of(l, "\"level\":"), 1);
  assert_int_equal(count_of(l, "\"msg\":"), 1);
  assert_int_equal(count_of(l, "\"time\":"), 1);
  assert_int_equal(count_of(l, "\"requestId\":"), 1);
  assert_int_equal(count_of(l, "\"function\":"), 1);
  assert_int_equal(count_of(l, "\"worker\":"), 1);
  free(l);
  l = srv_log_line(&s, "\"msg\":\"module-names\"", NULL);
  assert_non_null(strstr(l, "\"level\":\"info\""));
  assert_non_null(strstr(l, "\"fields.level\":\"z\""));
  free(l);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- reason phrases ------------------------------------------------------------------------------ */

static void reason_phrases(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "st.lua", "return function(event) return { status = tonumber(event.query.s) } end\n");
  srv_start(&s, "--workers 1 --redis none");
  static const struct {
    const char *path, *line;
  } cases[] = {
      {"/st?s=418", "HTTP/1.1 418 I'm a teapot\r\n"},
      {"/st?s=451", "HTTP/1.1 451 Unavailable For Legal Reasons\r\n"},
      {"/st?s=226", "HTTP/1.1 226 IM Used\r\n"},
      {"/st?s=499", "HTTP/1.1 499 Client Error\r\n"},
      {"/st?s=299", "HTTP/1.1 299 Successful\r\n"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    http_resp_t r;
    http_get(s.port, cases[i].path, &r);
    if (strncmp(r.head, cases[i].line, strlen(cases[i].line)) != 0)
      fail_msg("%s: status line '%.60s', want '%s'", cases[i].path, r.head, cases[i].line);
    http_free(&r);
  }
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(client_errors_counted_apart),
      cmocka_unit_test(http_error_prints_its_message),
      cmocka_unit_test(request_id_from_the_client),
      cmocka_unit_test(log_fields_kept),
      cmocka_unit_test(reason_phrases),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
