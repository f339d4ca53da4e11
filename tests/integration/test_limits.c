/* test_limits.c - docs/architecture.md §4 "limits that hold", over real HTTP: timeouts
 * that stop runaway code with the JIT on (plain loops, numeric for loops, loops
 * that swallow errors with pcall, loops in user coroutines, recursion that
 * keeps catching its overflow), init timeouts, memory limits (refused, caught
 * or not; a large live working set that churns garbage still fits), and what
 * each leaves behind: a discarded instance, a report line, a healthy server. */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include <cmocka.h>

#include "harness.h"

/* --- helpers ------------------------------------------------------------------------------------ */

/* The body a timeout answers with. */
static void assert_timeout_body(const http_resp_t *r, double seconds) {
  char rid[128], want[300];
  http_request_id(r, rid, sizeof rid);
  snprintf(want, sizeof want, "{\"error\":\"Task timed out after %.2f seconds\",\"requestId\":\"%s\"}", seconds, rid);
  assert_int_equal(r->status, 504);
  assert_string_equal(http_header(r, "content-type"), "application/json");
  assert_string_equal(r->body, want);
}

/* The metrics object of function name in a /_/api/functions answer (malloc'd). */
static char *fn_metrics(int port, const char *name) {
  http_resp_t r;
  http_get(port, "/_/api/functions", &r);
  assert_int_equal(r.status, 200);
  char key[256];
  snprintf(key, sizeof key, "{\"name\":\"%s\",", name);
  const char *p = strstr(r.body, key);
  if (!p) fail_msg("%s missing from /_/api/functions: %s", name, r.body);
  const char *e = strstr(p + 1, "{\"name\":\"");
  size_t len = e ? (size_t)(e - p) : strlen(p);
  char *out = malloc(len + 1);
  memcpy(out, p, len);
  out[len] = '\0';
  http_free(&r);
  return out;
}

/* --- timeouts ----------------------------------------------------------------------------------- */

/* Every runaway shape the JIT likes to compile, selected by ?spin=; without
 * it the function answers "<invocations of this instance>|<ctx.cold>". */
static const char SPIN_LUA[] =
    "local n = 0\n"
    "return { timeout = 2, handler = function(event, ctx)\n"
    "  n = n + 1\n"
    "  local spin = event.query.spin\n"
    "  if spin == 'while' then while true do end end\n"
    "  if spin == 'for' then for i = 1, 1e12 do end end\n"
    "  if spin == 'pcall' then while true do pcall(function() while true do end end) end end\n"
    "  if spin == 'co' then\n"
    "    local f = coroutine.wrap(function() while true do end end)\n"
    "    f()\n"
    "  end\n"
    "  if spin == 'rec' then\n"
    "    local function r(d) local ok = pcall(r, d + 1); if not ok then return r(0) end end\n"
    "    while true do pcall(r, 0) end\n"
    "  end\n"
    "  if spin == 'xpcall' then\n"
    "    while true do xpcall(function() while true do end end, function(e) return e end) end\n"
    "  end\n"
    "  if spin == 'sort' then\n" /* Lua called from C: no yield out of it */
    "    local t = { 3, 2, 1 }\n"
    "    while true do pcall(table.sort, t, function(a, b) while true do end end) end\n"
    "  end\n"
    "  if spin == 'gsub' then\n"
    "    string.gsub('abc', '%w', function(c) while true do end end)\n"
    "  end\n"
    "  return n .. '|' .. tostring(ctx.cold)\n"
    "end }\n";

static void runaways_time_out(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "spin.lua", SPIN_LUA);
  srv_write(&s, "other.lua", "return function() return 'other' end\n");
  srv_start(&s, "--workers 1");
  pid_t before[8], after[8];
  int nbefore = srv_workers_wait(&s, before, 8, 1, 5000);
  assert_int_equal(nbefore, 1);

  const char *modes[] = {"while", "for", "pcall", "co", "rec", "xpcall", "sort", "gsub"};
  const int nmodes = (int)(sizeof modes / sizeof modes[0]);
  http_expect_body(s.port, "/spin", "1|true");
  for (int i = 0; i < nmodes; i++) {
    /* A warm instance, used twice now. */
    http_expect_body(s.port, "/spin", "2|false");
    http_expect_body(s.port, "/other", "other");

    char path[64], rid[128];
    snprintf(path, sizeof path, "/spin?spin=%s", modes[i]);
    http_resp_t r;
    long long t0 = now_ms();
    http_get(s.port, path, &r);
    long long elapsed = now_ms() - t0;
    if (r.status != 504) fail_msg("GET %s: got %d '%s', want 504", path, r.status, r.body);
    if (elapsed < 1900 || elapsed >= 3500)
      fail_msg("GET %s: answered after %lld ms, want 2 s (+ < 1.5 s)", path, elapsed);
    assert_timeout_body(&r, 2.0);
    http_request_id(&r, rid, sizeof rid);
    http_free(&r);
    srv_expect_errors(&s, 1);

    /* The log: one error line with the message, and a report line that says timeout. */
    char idf[300];
    snprintf(idf, sizeof idf, "\"requestId\":\"%s\"", rid);
    assert_int_equal(srv_log_wait(&s, 1, 3000, "\"level\":\"error\"", "Task timed out after 2.00 seconds", idf,
                                  "\"function\":\"spin\"", NULL),
                     1);
    char *rep = srv_report_of(&s, rid);
    assert_non_null(strstr(rep, "\"status\":504"));
    assert_non_null(strstr(rep, "\"outcome\":\"timeout\""));
    assert_non_null(strstr(rep, "\"start\":\"warm\""));
    double dur = json_num(rep, "duration");
    assert_true(dur >= 1990 && dur < 3500);
    assert_true(json_num(rep, "billedDuration") >= 2000);
    free(rep);

    /* The same function answers again, on a new instance: its counter restarted. */
    http_expect_body(s.port, "/spin", "1|true");
    http_expect_body(s.port, "/other", "other");
  }

  char *m = fn_metrics(s.port, "spin");
  char want[64];
  snprintf(want, sizeof want, "\"timeouts\":%d,", nmodes);
  if (!strstr(m, want)) fail_msg("want %s in %s", want, m);
  snprintf(want, sizeof want, "\"errors\":%d,", nmodes);
  if (!strstr(m, want)) fail_msg("want %s in %s", want, m);
  free(m);

  /* The hook stopped every runaway: the master never had to kill the worker. */
  int nafter = srv_workers_wait(&s, after, 8, 1, 5000);
  assert_true(pids_same(before, nbefore, after, nafter));
  assert_int_equal(srv_log_count(&s, "stuck", NULL), 0);
  assert_int_equal(srv_stop(&s), 0);
}

/* While one worker is busy with a runaway, the other keeps serving. */
static void runaway_leaves_other_functions_answering(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "spin.lua", SPIN_LUA);
  srv_write(&s, "other.lua", "return function() return 'other' end\n");
  srv_start(&s, "--workers 2");
  pid_t before[8], after[8];
  int nbefore = srv_workers_wait(&s, before, 8, 2, 5000);
  assert_int_equal(nbefore, 2);

  for (int round = 0; round < 2; round++) {
    int spin = http_connect(s.port);
    assert_true(spin >= 0);
    long long t0 = now_ms();
    http_sends(spin, "GET /spin?spin=for HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    sleep_ms(200);
    /* Ten requests at once: those on the free worker answer at once, those
     * queued behind the runaway once it is stopped. */
    enum { N = 10 };
    int fds[N];
    for (int i = 0; i < N; i++) {
      fds[i] = http_connect(s.port);
      assert_true(fds[i] >= 0);
      http_sends(fds[i], "GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    }
    struct pollfd p[N];
    for (int i = 0; i < N; i++) p[i] = (struct pollfd){fds[i], POLLIN, 0};
    int ready = poll(p, N, 1500);
    long long first = now_ms() - t0;
    if (ready <= 0 || first >= 1800)
      fail_msg("round %d: no answer from the free worker while the other one ran away (%lld ms)", round, first);
    for (int i = 0; i < N; i++) {
      http_resp_t r;
      if (http_read(fds[i], &r, 0, 6000) != 0) fail_msg("round %d: request %d got no answer", round, i);
      assert_int_equal(r.status, 200);
      assert_string_equal(r.body, "other");
      http_free(&r);
      http_close(fds[i]);
    }
    http_resp_t r;
    if (http_read(spin, &r, 0, 6000) != 0) fail_msg("round %d: the runaway got no answer", round);
    long long elapsed = now_ms() - t0;
    assert_true(elapsed >= 1900 && elapsed < 3500);
    assert_timeout_body(&r, 2.0);
    http_free(&r);
    http_close(spin);
    srv_expect_errors(&s, 1);
  }
  assert_int_equal(srv_log_wait(&s, 2, 3000, "\"level\":\"error\"", "Task timed out", NULL), 2);
  /* The function itself answers on both workers afterwards. */
  for (int i = 0; i < 6; i++) {
    http_resp_t r;
    http_get(s.port, "/spin", &r);
    assert_int_equal(r.status, 200);
    http_free(&r);
  }
  int nafter = srv_workers_wait(&s, after, 8, 2, 5000);
  assert_true(pids_same(before, nbefore, after, nafter));
  assert_int_equal(srv_stop(&s), 0);
}

/* A runaway init: the function fails to load and says why; others serve. */
static void init_timeout(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "initspin.lua", "while true do end\nreturn function() return 'never' end\n");
  srv_write(&s, "initfor.lua", "for i = 1, 1e12 do end\nreturn function() return 'never' end\n");
  srv_write(&s, "good.lua", "return function() return 'good' end\n");
  long long t0 = now_ms();
  srv_start(&s, "--workers 2 --init-timeout 1");
  long long started = now_ms() - t0;
  /* Each init was stopped after its second (not the 10 s default). */
  assert_true(started < 8000);
  srv_expect_errors(&s, 2);

  http_expect_body(s.port, "/good", "good");
  const char *names[] = {"initspin", "initfor"};
  for (int i = 0; i < 2; i++) {
    char path[64], fnf[96], file[96];
    snprintf(path, sizeof path, "/%s", names[i]);
    http_resp_t r;
    http_get(s.port, path, &r);
    if (r.status != 503) fail_msg("GET %s: got %d '%s', want 503", path, r.status, r.body);
    assert_string_equal(http_header(&r, "content-type"), "application/json");
    assert_non_null(strstr(r.body, "\"error\":\"function failed to load\""));
    snprintf(fnf, sizeof fnf, "\"function\":\"%s\"", names[i]);
    assert_non_null(strstr(r.body, fnf));
    assert_null(strstr(r.body, "never"));
    http_free(&r);
    snprintf(file, sizeof file, "%s.lua: init timed out after 1.00 seconds", names[i]);
    assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", file, fnf, NULL), 1);
  }
  http_expect_body(s.port, "/good", "good");
  assert_int_equal(srv_stop(&s), 0);
}

/* --- memory ------------------------------------------------------------------------------------- */

static const char HOG_LUA[] =
    "local n = 0\n"
    "local function hog() local t = {} for i = 1, 1e8 do t[i] = { i } end return #t end\n"
    "return { memory = 16, handler = function(event, ctx)\n"
    "  n = n + 1\n"
    "  local q = event.query\n"
    "  if q.hog then hog() end\n"
    "  if q.rep then return #string.rep('x', 64 * 1024 * 1024) end\n"
    "  if q.catch then\n"
    "    local ok, err = pcall(hog)\n"
    "    return 'caught: ' .. tostring(ok) .. ' ' .. tostring(err)\n"
    "  end\n"
    "  if q.co then\n"
    "    local co = coroutine.create(hog)\n"
    "    local ok, err = coroutine.resume(co)\n"
    "    return 'caught in coroutine: ' .. tostring(ok) .. ' ' .. tostring(err)\n"
    "  end\n"
    "  return n .. '|' .. tostring(ctx.cold)\n"
    "end }\n";

static void memory_limit(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "hog.lua", HOG_LUA);
  srv_write(&s, "other.lua", "return function() return 'other' end\n");
  srv_start(&s, "--workers 1");

  const char *modes[] = {"hog", "catch", "rep", "co"};
  const int nmodes = (int)(sizeof modes / sizeof modes[0]);
  http_expect_body(s.port, "/hog", "1|true");
  for (int i = 0; i < nmodes; i++) {
    http_expect_body(s.port, "/hog", "2|false");
    char path[64], rid[128], want[300];
    snprintf(path, sizeof path, "/hog?%s=1", modes[i]);
    http_resp_t r;
    http_get(s.port, path, &r);
    /* Caught or not, the limit holds: the invocation ends with a memory error. */
    if (r.status != 500) fail_msg("GET %s: got %d '%s', want 500", path, r.status, r.body);
    http_request_id(&r, rid, sizeof rid);
    snprintf(want, sizeof want, "{\"error\":\"memory limit exceeded\",\"requestId\":\"%s\"}", rid);
    assert_string_equal(r.body, want);
    assert_string_equal(http_header(&r, "content-type"), "application/json");
    http_free(&r);
    srv_expect_errors(&s, 1);

    char idf[300];
    snprintf(idf, sizeof idf, "\"requestId\":\"%s\"", rid);
    assert_int_equal(
        srv_log_wait(&s, 1, 3000, "\"level\":\"error\"", "memory limit exceeded", idf, "\"function\":\"hog\"", NULL),
        1);
    char *rep = srv_report_of(&s, rid);
    if (!strstr(rep, "\"status\":500") || !strstr(rep, "\"outcome\":\"memory\"") ||
        !strstr(rep, "\"memorySize\":16,")) {
      fprintf(stderr, "report: %s\n", rep);
      fail_msg("%s: want status 500, outcome memory, memorySize 16 in the report", path);
    }
    double peak = json_num(rep, "maxMemoryUsed");
    if (strcmp(modes[i], "rep") != 0) {
      /* The hog filled its 16 MB (never past it). */
      if (!(peak > 8.0 * 1024 * 1024 && peak <= 16.0 * 1024 * 1024))
        fail_msg("%s: maxMemoryUsed %.0f, want 8-16 MB", path, peak);
    } else {
      /* One 64 MB string is refused before it is made. */
      assert_true(peak > 0 && peak <= 16.0 * 1024 * 1024);
    }
    free(rep);

    /* The instance was discarded: the counter starts again. Others are fine. */
    http_expect_body(s.port, "/hog", "1|true");
    http_expect_body(s.port, "/other", "other");
  }
  char *m = fn_metrics(s.port, "hog");
  char want[64];
  snprintf(want, sizeof want, "\"errors\":%d,", nmodes);
  if (!strstr(m, want)) fail_msg("want %s in %s", want, m);
  assert_non_null(strstr(m, "\"timeouts\":0,"));
  free(m);
  assert_int_equal(srv_stop(&s), 0);
}

/* ~70 % of the limit live across invocations, half of it replaced by each
 * call: the garbage is collected before any allocation is refused. */
static void memory_working_set_fits(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "ws.lua",
            "local ws, calls = {}, 0\n"
            "-- 44 chunks of ~0.5 MB each (unique strings, or tables of unique strings): ~22 MB\n"
            "local function chunk(i, c)\n"
            "  if i % 4 < 2 then\n"
            "    return string.rep(string.char(65 + i % 26), 500 * 1024 - 16) .. c .. ':' .. i\n"
            "  end\n"
            "  local t = {}\n"
            "  for k = 1, 2000 do t[k] = ('%d:%d:%d:%s'):format(c, i, k, string.rep('x', 200)) end\n"
            "  return t\n"
            "end\n"
            "for i = 1, 44 do ws[i] = chunk(i, 0) end\n"
            "return { memory = 32, handler = function()\n"
            "  calls = calls + 1\n"
            "  for i = (calls % 2) + 1, 44, 2 do ws[i] = chunk(i, calls) end\n"
            "  local strings, rows = 0, 0\n"
            "  for i = 1, 44 do\n"
            "    if type(ws[i]) == 'string' then strings = strings + #ws[i] else rows = rows + #ws[i] end\n"
            "  end\n"
            "  return calls .. '|' .. strings .. '|' .. rows\n"
            "end }\n");
  srv_start(&s, "--workers 1");
  for (int i = 1; i <= 10; i++) {
    http_resp_t r;
    http_get(s.port, "/ws", &r);
    if (r.status != 200) fail_msg("call %d: got %d '%s', want 200", i, r.status, r.body);
    /* The same instance every time, with its whole working set: 22 strings
     * of 500 KB (plus a few digits each) and 22 tables of 2000 rows. */
    char *f1 = strchr(r.body, '|');
    assert_non_null(f1);
    assert_int_equal(atoi(r.body), i);
    long strings = atol(f1 + 1);
    if (!(strings > 22L * (500 * 1024 - 16) && strings < 22L * 500 * 1024))
      fail_msg("call %d: the strings hold %ld bytes", i, strings);
    char *f2 = strchr(f1 + 1, '|');
    assert_non_null(f2);
    assert_int_equal(atoi(f2 + 1), 44000);
    char rid[128];
    http_request_id(&r, rid, sizeof rid);
    http_free(&r);
    char *rep = srv_report_of(&s, rid);
    assert_non_null(strstr(rep, "\"status\":200"));
    assert_null(strstr(rep, "\"outcome\""));
    double peak = json_num(rep, "maxMemoryUsed");
    if (!(peak > 20.0 * 1024 * 1024 && peak <= 32.0 * 1024 * 1024))
      fail_msg("call %d: maxMemoryUsed %.0f, want 20-32 MB", i, peak);
    free(rep);
  }
  assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", "\"function\":\"ws\"", "\"start\":\"cold\"", NULL), 1);
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(runaways_time_out), cmocka_unit_test(runaway_leaves_other_functions_answering),
      cmocka_unit_test(init_timeout),      cmocka_unit_test(memory_limit),
      cmocka_unit_test(memory_working_set_fits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
