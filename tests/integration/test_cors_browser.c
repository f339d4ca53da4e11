/* test_cors_browser.c - the gateway's CORS answers as a real browser reads them: Debian's
 * chromium (installed by `sh tools/deps.sh test`, as make test does), headless, loads a page
 * served by one crescent server whose script fetch()es a second one's API; what the script saw
 * is read back from the DOM chromium dumps.
 *
 * Three servers on loopback: A serves the page and its origin is in the API's list, C serves the
 * same page from an origin that is not, B serves the API (cors for A's origin, credentials on one
 * function, an exposed and an unexposed header). From A: a simple GET reads the body and the
 * exposed header (not the other), a PUT with a custom header and a JSON body passes its preflight,
 * a credentialed fetch passes only where credentials = true. From C every fetch rejects with a
 * TypeError; its GET still ran on B (CORS is the browser's rule), its preflighted PUT did not.
 * Without chromium the test fails: it does not skip. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define CHROMIUM "/usr/bin/chromium"

/* The page: fetches from the API server whose port is ?api=, writes one line per fetch into
 * <pre id="out"> and "done" last. */
static const char PAGE_LUA[] =
    "local html = [==[<!doctype html><html><head><title>cors</title></head><body><pre "
    "id=\"out\">pending</pre>\n"
    "<script>\n"
    "const base = 'http://127.0.0.1:' + new URLSearchParams(location.search).get('api');\n"
    "const lines = [];\n"
    "async function step(name, url, init, read) {\n"
    "  try { const r = await fetch(url, init); lines.push(name + ' ' + r.status + ' ' + (await read(r))); }\n"
    "  catch (e) { lines.push(name + ' ' + e.name); }\n"
    "}\n"
    "(async () => {\n"
    "  await step('get', base + '/data', {}, async r =>\n"
    "    (await r.text()) + ' total=' + r.headers.get('x-total') + ' hidden=' + r.headers.get('x-hidden'));\n"
    "  await step('put', base + '/data', { method: 'PUT', headers: { 'X-Request': 'r1', 'Content-Type':\n"
    "    'application/json' }, body: '{\"a\":1}' }, r => r.text());\n"
    "  await step('cred', base + '/cred', { credentials: 'include' }, r => r.text());\n"
    "  await step('nocred', base + '/data', { credentials: 'include' }, r => r.text());\n"
    "  document.getElementById('out').textContent = lines.join('\\n') + '\\ndone';\n"
    "})();\n"
    "</script></body></html>\n"
    "]==]\n"
    "return { routes = { 'GET /page' }, handler = function()\n"
    "  return { status = 200, headers = { ['content-type'] = 'text/html; charset=utf-8' }, body = html }\n"
    "end }\n";

/* Runs chromium on url (bounded: 60 s, then killed) and returns the text of <pre id="out"> in the
 * DOM it dumped (malloc'd). dir: a folder of the test's for its profile and output. */
static char *browse(const char *dir, const char *url) {
  struct stat st;
  if (stat(CHROMIUM, &st) != 0)
    fail_msg(CHROMIUM " is not installed (%s): run `sh tools/deps.sh test` (make test does)",
             strerror(errno));
  char profile[400], out[400], err[400];
  snprintf(profile, sizeof profile, "%s/chromium-profile", dir);
  snprintf(out, sizeof out, "%s/dom.html", dir);
  snprintf(err, sizeof err, "%s/chromium.log", dir);
  char user_data[440];
  snprintf(user_data, sizeof user_data, "--user-data-dir=%s", profile);
  long long t0 = now_ms();
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0) _exit(126);
    dup2(o, STDOUT_FILENO);
    dup2(e, STDERR_FILENO);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    /* Its own HOME: chromium writes caches and crash reports there. */
    setenv("HOME", dir, 1);
    /* timeout kills the whole group (chromium's helper processes too) past 60 s. */
    execlp("timeout", "timeout", "-k", "5", "60", CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
           "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-dev-shm-usage",
           user_data, "--virtual-time-budget=5000", "--dump-dom", url, (char *)NULL);
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  long long ms = now_ms() - t0;
  char *dom = read_file(out);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    char *log = read_file(err);
    fprintf(stderr, "chromium's log:\n%s\nits DOM:\n%s\n", log, dom);
    free(log);
    fail_msg("chromium %s: exit status %d after %lld ms (124: killed by the 60 s bound)", url,
             WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), ms);
  }
  const char *p = strstr(dom, "<pre id=\"out\">");
  const char *e = p ? strstr(p, "</pre>") : NULL;
  if (!p || !e) {
    char *log = read_file(err);
    fprintf(stderr, "chromium's log:\n%s\n", log);
    free(log);
    fail_msg("no <pre id=\"out\"> in the DOM chromium dumped for %s:\n%s", url, dom);
  }
  p += strlen("<pre id=\"out\">");
  size_t n = (size_t)(e - p);
  char *text = malloc(n + 1);
  memcpy(text, p, n);
  text[n] = '\0';
  free(dom);
  print_message("chromium %s (%lld ms):\n%s\n", url, ms, text);
  return text;
}

static void browser_cors(void **state) {
  (void)state;
  srv_t a, b, c;
  srv_init(&a);
  srv_write(&a, "page.lua", PAGE_LUA);
  srv_start(&a, "--workers 1 --redis none");
  srv_init(&c);
  srv_write(&c, "page.lua", PAGE_LUA);
  srv_start(&c, "--workers 1 --redis none");

  /* The API allows A's origin only. */
  char data[1024], cred[1024];
  snprintf(
      data, sizeof data,
      "return { routes = { 'GET,PUT /data' },\n"
      "  cors = { origins = { 'http://127.0.0.1:%d' }, exposeHeaders = { 'x-total' } },\n"
      "  handler = function(event)\n"
      "    local body = 'data ' .. event.method\n"
      "    if event.method == 'PUT' then\n"
      "      body = body .. ' x-request=' .. tostring(event.headers['x-request']) .. ' body=' .. event.body\n"
      "    end\n"
      "    return { status = 200, headers = { ['x-total'] = '3', ['x-hidden'] = 'h' }, body = body }\n"
      "  end }\n",
      a.port);
  snprintf(cred, sizeof cred,
           "return { routes = { 'GET /cred' }, cors = { origins = { 'http://127.0.0.1:%d' }, credentials = "
           "true },\n"
           "  handler = function() return 'cred ok' end }\n",
           a.port);
  srv_init(&b);
  srv_write(&b, "data.lua", data);
  srv_write(&b, "cred.lua", cred);
  srv_start(&b, "--workers 1 --redis none");

  char url[256];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/page?api=%d", a.port, b.port);
  char *seen = browse(a.root, url);
  assert_string_equal(seen,
                      "get 200 data GET total=3 hidden=null\n"
                      "put 200 data PUT x-request=r1 body={\"a\":1}\n"
                      "cred 200 cred ok\n"
                      "nocred TypeError\n"
                      "done");
  free(seen);
  /* B ran the GET, the PUT and both credentialed GETs (the browser refused to show the last),
   * never a preflight. */
  assert_int_equal(srv_log_wait(&b, 3, 5000, "\"msg\":\"report\"", "\"function\":\"data\"", NULL), 3);
  assert_int_equal(srv_log_wait(&b, 1, 5000, "\"msg\":\"report\"", "\"function\":\"cred\"", NULL), 1);

  /* From C's origin the browser rejects every fetch. */
  snprintf(url, sizeof url, "http://127.0.0.1:%d/page?api=%d", c.port, b.port);
  seen = browse(c.root, url);
  assert_string_equal(seen,
                      "get TypeError\n"
                      "put TypeError\n"
                      "cred TypeError\n"
                      "nocred TypeError\n"
                      "done");
  free(seen);
  /* The simple GETs still ran (CORS keeps the answer from the page, it does not stop the
   * request); the PUT's preflight was refused, so the PUT never came. */
  sleep_ms(300);
  assert_int_equal(srv_log_count(&b, "\"msg\":\"report\"", "\"function\":\"data\"", NULL), 5);
  assert_int_equal(srv_log_count(&b, "\"msg\":\"report\"", "\"function\":\"cred\"", NULL), 2);
  srv_stop(&b);
  srv_stop(&c);
  srv_stop(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(browser_cors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
