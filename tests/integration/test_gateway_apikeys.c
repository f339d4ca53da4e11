/* test_gateway_apikeys.c - README "API keys and usage plans" over real HTTP and the real
 * command line: keys made with `crescent keys create` and used (X-Api-Key, Authorization:
 * Bearer, event.auth); the answers for a missing, malformed, unknown, revoked or out-of-scope
 * key; `keys list` / `usage` output that never holds the key, and Redis holding only its
 * SHA-256; a revocation seen by the next request on every worker of two nodes sharing one
 * Redis (measured); plans: a quota exhausted (429, Retry-After to the end of the UTC day or
 * month), a plan's rate, deleting a plan in use; --default-auth apikey with a public
 * auth = "none" function; rateLimit by = "key"; the /_/api/keys answers for bad requests;
 * Redis stuck: 503 with Retry-After, counted. */
#include <fcntl.h>
#include <openssl/evp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* --- helpers ------------------------------------------------------------------------------------ */

typedef struct {
  int code;  /* exit status, 128+signal, or -1 on timeout */
  char *out; /* stdout, malloc'd */
  char *err; /* stderr, malloc'd */
} run_t;

/* Runs $CRESCENT_BIN with the NULL-terminated arguments in folder cwd; waits at most 30 s. */
static void run(run_t *r, const char *cwd, ...) {
  const char *bin = getenv("CRESCENT_BIN");
  if (!bin) bin = "./crescent";
  char *argv[32];
  int argc = 0;
  argv[argc++] = (char *)bin;
  va_list ap;
  va_start(ap, cwd);
  const char *a;
  while (argc < 31 && (a = va_arg(ap, const char *))) argv[argc++] = (char *)a;
  va_end(ap);
  argv[argc] = NULL;
  char outp[300], errp[300];
  snprintf(outp, sizeof outp, "%s/.cli-out-%d", cwd, (int)getpid());
  snprintf(errp, sizeof errp, "%s/.cli-err-%d", cwd, (int)getpid());
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0 || chdir(cwd)) _exit(127);
    dup2(o, STDOUT_FILENO);
    dup2(e, STDERR_FILENO);
    close(o);
    close(e);
    unsetenv("CRESCENT_URL");
    unsetenv("CRESCENT_ADMIN_TOKEN");
    execv(bin, argv);
    _exit(127);
  }
  long long deadline = now_ms() + 30000;
  int st = 0;
  r->code = -1;
  for (;;) {
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid) {
      r->code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
    if (now_ms() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      break;
    }
    sleep_ms(5);
  }
  r->out = read_file(outp);
  r->err = read_file(errp);
  unlink(outp);
  unlink(errp);
  if (r->code < 0) fail_msg("crescent %s did not finish within 30 s", argc > 1 ? argv[1] : "");
}

static void run_free(run_t *r) {
  free(r->out);
  free(r->err);
  memset(r, 0, sizeof *r);
}

static void url_of(const srv_t *s, char *out, size_t n) { snprintf(out, n, "http://127.0.0.1:%d", s->port); }

static void sha256_hex(const char *s, char hex[65]) {
  unsigned char md[32];
  unsigned int n = 0;
  assert_true(EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL) == 1);
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static void req(int port, const char *method, const char *path, const char *headers, const char *body,
                http_resp_t *r) {
  if (http_request(port, method, path, headers, body, body ? strlen(body) : 0, r) != 0)
    fail_msg("%s %s: no response", method, path);
}

/* GET path with the key in X-Api-Key (key NULL: none). */
static void get_with(int port, const char *path, const char *key, http_resp_t *r) {
  char h[200] = "";
  if (key) snprintf(h, sizeof h, "X-Api-Key: %s\r\n", key);
  req(port, "GET", path, h, NULL, r);
}

static void expect_header(const http_resp_t *r, const char *name, const char *want) {
  const char *v = http_header(r, name);
  if (!v) fail_msg("no %s header in:\n%s", name, r->head);
  if (strcmp(v, want) != 0) fail_msg("%s: '%s', want '%s' in:\n%s", name, v, want, r->head);
}

/* The answer's status and its "error" (the requestId after it varies). */
static void expect_error(const http_resp_t *r, int status, const char *error) {
  char want[300];
  snprintf(want, sizeof want, "{\"error\":\"%s\"", error);
  if (r->status != status || strncmp(r->body, want, strlen(want)) != 0)
    fail_msg("got %d %s, want %d %s...", r->status, r->body, status, want);
}

static void expect_get(int port, const char *path, const char *key, int status, const char *error) {
  http_resp_t r;
  get_with(port, path, key, &r);
  if (error) expect_error(&r, status, error);
  else if (r.status != status) fail_msg("GET %s: %d %s, want %d", path, r.status, r.body, status);
  http_free(&r);
}

/* POST /_/api/keys with body: the new key (must be 201) into key. */
static void api_create(int port, const char *body, char *key, size_t n) {
  http_resp_t r;
  req(port, "POST", "/_/api/keys", "Content-Type: application/json\r\n", body, &r);
  if (r.status != 201) fail_msg("create %s: %d %s", body, r.status, r.body);
  expect_header(&r, "cache-control", "no-store");
  const char *k = json_val(r.body, "key");
  assert_non_null(k);
  snprintf(key, n, "%.47s", k + 1);
  http_free(&r);
}

/* The handler shows who called: event.auth's fields. */
#define WHO_LUA(settings)                                                                              \
  "return { " settings " handler = function(event)\n"                                                  \
  "  local a = event.auth\n"                                                                           \
  "  return a and (a.method .. ':' .. tostring(a.sub) .. ':' .. tostring(a.key)) or 'anonymous'\n"     \
  "end }\n"

/* --- keys made with the command line, and the answers --------------------------------------------- */

static void cli_keys_and_answers(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "orders/list.lua", WHO_LUA("auth = 'apikey',"));
  srv_write(&s, "reports.lua", WHO_LUA("auth = 'apikey',"));
  srv_write(&s, "admin/secret.lua", WHO_LUA("auth = 'apikey',"));
  srv_write(&s, "open.lua", WHO_LUA(""));
  srv_start(&s, "--workers 1");
  char url[64];
  url_of(&s, url, sizeof url);

  run_t c;
  run(&c, s.root, "keys", "create", "--name", "ci", "--functions", "orders/*, reports", "--url", url, NULL);
  assert_int_equal(c.code, 0);
  /* stdout: the key alone. */
  assert_int_equal(strlen(c.out), 48);
  assert_memory_equal(c.out, "crk_", 4);
  assert_int_equal(c.out[47], '\n');
  char key[64];
  snprintf(key, sizeof key, "%.47s", c.out);
  assert_string_equal(c.err, "crescent keys: created key 'ci' (functions: orders/*,reports; plan: none). This is the "
                             "only time it is shown:\nstore it now. Send it as X-Api-Key: KEY or Authorization: "
                             "Bearer KEY.\n");
  run_free(&c);

  /* In scope: X-Api-Key or Authorization: Bearer; event.auth names the key. */
  http_resp_t r;
  get_with(s.port, "/orders/list", key, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "apikey:ci:ci");
  http_free(&r);
  char h[200];
  snprintf(h, sizeof h, "Authorization: Bearer %s\r\n", key);
  req(s.port, "GET", "/reports", h, NULL, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "apikey:ci:ci");
  http_free(&r);
  /* A function without auth stays public (and gets no identity). */
  get_with(s.port, "/open", key, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "anonymous");
  http_free(&r);

  /* Missing: 401 with the challenge; malformed, unknown: 401; out of scope: 403. */
  get_with(s.port, "/orders/list", NULL, &r);
  expect_error(&r, 401, "missing credentials");
  expect_header(&r, "www-authenticate", "ApiKey realm=\"crescent\", Bearer realm=\"crescent\"");
  http_free(&r);
  req(s.port, "GET", "/orders/list", "Authorization: Basic Zm9vOmJhcg==\r\n", NULL, &r);
  expect_error(&r, 401, "missing credentials");
  http_free(&r);
  get_with(s.port, "/orders/list", "crk_short", &r);
  expect_error(&r, 401, "invalid API key");
  expect_header(&r, "www-authenticate", "ApiKey realm=\"crescent\", Bearer realm=\"crescent\"");
  http_free(&r);
  expect_get(s.port, "/orders/list", "crk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 401, "invalid API key");
  expect_get(s.port, "/admin/secret", key, 403, "this key may not call this function");
  expect_get(s.port, "/admin/secret", NULL, 401, "missing credentials");

  /* A duplicate name, a bad name, a plan that does not exist. */
  run(&c, s.root, "keys", "create", "--name", "ci", "--url", url, NULL);
  assert_int_equal(c.code, 1);
  assert_string_equal(c.out, "");
  assert_string_equal(c.err, "crescent keys: a key named 'ci' exists (409)\n");
  run_free(&c);
  run(&c, s.root, "keys", "create", "--name", "-x", "--url", url, NULL);
  assert_int_equal(c.code, 1);
  assert_string_equal(c.err, "crescent keys: 'name' must be 1-64 letters, digits, '.', '_' or '-', starting with a "
                             "letter or digit (400)\n");
  run_free(&c);
  run(&c, s.root, "keys", "create", "--name", "x", "--plan", "nope", "--url", url, NULL);
  assert_int_equal(c.code, 1);
  assert_string_equal(c.err, "crescent keys: no plan named 'nope' (400)\n");
  run_free(&c);
  run(&c, s.root, "keys", "create", "--url", url, NULL);
  assert_int_equal(c.code, 2);
  run_free(&c);
  run(&c, s.root, "keys", "create", "--name", "all", "--url", url, NULL);
  assert_int_equal(c.code, 0);
  char key2[64];
  snprintf(key2, sizeof key2, "%.47s", c.out);
  run_free(&c);
  get_with(s.port, "/admin/secret", key2, &r); /* no --functions: every function */
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "apikey:all:all");
  http_free(&r);

  /* keys list: names, scopes, plan, created, last used; never the key nor its hash. */
  char sha[65], sha2[65];
  sha256_hex(key, sha);
  sha256_hex(key2, sha2);
  run(&c, s.root, "keys", "list", "--url", url, NULL);
  assert_int_equal(c.code, 0);
  if (strncmp(c.out, "NAME  FUNCTIONS         PLAN  CREATED               LAST USED\n", 61) != 0 ||
      text_lines_with(c.out, "ci    orders/*,reports  -     ", "Z  20", NULL) != 1 ||
      text_lines_with(c.out, "all   (all)             -     ", NULL) != 1)
    fail_msg("keys list:\n%s", c.out);
  assert_null(strstr(c.out, key));
  assert_null(strstr(c.out, sha));
  run_free(&c);
  http_get(s.port, "/_/api/keys", &r);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "{\"name\":\"ci\",\"functions\":[\"orders/*\",\"reports\"],\"plan\":null,\"created\":\""));
  assert_null(strstr(r.body, key));
  assert_null(strstr(r.body, key2));
  assert_null(strstr(r.body, sha));
  assert_null(strstr(r.body, "crk_"));
  http_free(&r);

  /* Redis holds the hash, never the key: not as a key name, not in any value. */
  char *all = srv_rcli(&s, "--scan", "--pattern", "cr:{keys}:*", NULL);
  char want[200];
  snprintf(want, sizeof want, "cr:{keys}:key:%s", sha);
  assert_non_null(strstr(all, want));
  assert_null(strstr(all, "crk_"));
  char *rec = srv_rcli(&s, "HGETALL", want, NULL);
  assert_non_null(strstr(rec, "name\nci\n"));
  assert_null(strstr(rec, "crk_"));
  free(rec);
  char *dump = srv_rcli(&s, "EVAL",
                        "local out = {} for _, k in ipairs(redis.call('KEYS', ARGV[1])) do local t = redis.call('TYPE', k).ok "
                        "if t == 'string' then out[#out+1] = redis.call('GET', k) elseif t == 'hash' then "
                        "for _, v in ipairs(redis.call('HGETALL', k)) do out[#out+1] = v end elseif t == 'zset' or t == 'set' then "
                        "out[#out+1] = 'set' end end return table.concat(out, ' ')",
                        "0", "cr:*", NULL);
  assert_null(strstr(dump, "crk_"));
  assert_non_null(strstr(dump, sha)); /* the name's entry points at the hash */
  free(dump);
  free(all);
  /* Nor does the log (the answer that made it says Cache-Control: no-store). */
  assert_int_equal(srv_log_count(&s, key, NULL), 0);
  assert_int_equal(srv_log_count(&s, key2, NULL), 0);
  assert_int_equal(srv_log_count(&s, "crk_", NULL), 0);
  assert_int_equal(srv_log_count(&s, "\"msg\":\"API key 'ci' created\"", NULL), 1);

  /* keys usage: 2 calls today for ci (401s, 403s not counted). */
  run(&c, s.root, "keys", "usage", "ci", "--url", url, NULL);
  assert_int_equal(c.code, 0);
  if (strncmp(c.out, "key:        ci\nplan:       none\nlast used:  20", 46) != 0 ||
      !strstr(c.out, "\ntoday:      2\nthis month: 2\n\nDATE        REQUESTS\n"))
    fail_msg("keys usage:\n%s", c.out);
  assert_int_equal(text_lines_with(c.out, "  0", NULL), 29); /* 30 days, today's is 2 */
  assert_null(strstr(c.out, "quota:"));
  run_free(&c);

  /* Revoked: 401 at once; revoking twice: 404; usage of a revoked key: 404. */
  run(&c, s.root, "keys", "revoke", "ci", "--url", url, NULL);
  assert_int_equal(c.code, 0);
  assert_string_equal(c.out, "revoked ci\n");
  run_free(&c);
  expect_get(s.port, "/orders/list", key, 401, "invalid API key");
  expect_get(s.port, "/admin/secret", key2, 200, NULL);
  run(&c, s.root, "keys", "revoke", "ci", "--url", url, NULL);
  assert_int_equal(c.code, 1);
  assert_string_equal(c.err, "crescent keys: no key named 'ci' (404)\n");
  run_free(&c);
  run(&c, s.root, "keys", "usage", "ci", "--url", url, NULL);
  assert_int_equal(c.code, 1);
  run_free(&c);
  run(&c, s.root, "keys", "revoke", "a/b", "--url", url, NULL);
  assert_int_equal(c.code, 2);
  run_free(&c);
  /* A new key of the revoked one's name starts afresh. */
  run(&c, s.root, "keys", "create", "--name", "ci", "--url", url, NULL);
  assert_int_equal(c.code, 0);
  assert_string_not_equal(c.out, key);
  run_free(&c);
  run(&c, s.root, "keys", "usage", "ci", "--json", "--url", url, NULL);
  assert_int_equal(c.code, 0);
  assert_non_null(strstr(c.out, "\"today\":0,\"month\":0,"));
  assert_non_null(strstr(c.out, "\"lastUsed\":null"));
  run_free(&c);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- revocation across workers and nodes ---------------------------------------------------------- */

typedef struct {
  int fd;
  int worker;
} pin_t;

static void ka(int fd, const char *path, const char *key, http_resp_t *r) {
  char head[512];
  int n = key ? snprintf(head, sizeof head, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: %s\r\n\r\n", path, key)
              : snprintf(head, sizeof head, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
  http_send(fd, head, (size_t)n);
  if (http_read(fd, r, 0, 5000) != 0) fail_msg("GET %s on a kept connection: no response", path);
}

/* One kept connection per worker (GET /probe: its report line names the worker). */
static void pin_workers(srv_t *s, int nworkers, pin_t *pins) {
  int have[8] = {0}, done = 0;
  for (int tries = 0; tries < 64 && done < nworkers; tries++) {
    int fd = http_connect(s->port);
    assert_true(fd >= 0);
    http_resp_t r;
    ka(fd, "/probe", NULL, &r);
    assert_int_equal(r.status, 200);
    char rid[128];
    http_request_id(&r, rid, sizeof rid);
    http_free(&r);
    char *line = srv_report_of(s, rid);
    int w = (int)json_num(line, "worker");
    free(line);
    assert_true(w >= 0 && w < nworkers);
    if (!have[w]) {
      pins[w] = (pin_t){fd, w};
      have[w] = 1;
      done++;
    } else {
      http_close(fd);
    }
  }
  if (done < nworkers) fail_msg("could not reach every worker: %d of %d", done, nworkers);
}

static void revocation_everywhere(void **state) {
  (void)state;
  srv_t a, b;
  srv_init(&a);
  srv_write(&a, "probe.lua", "return function() return 'ok' end\n");
  srv_write(&a, "who.lua", WHO_LUA("auth = 'apikey',"));
  srv_start(&a, "--workers 2");
  char sock[400], args[440];
  srv_redis_sock(&a, sock, sizeof sock);
  snprintf(args, sizeof args, "--workers 1 --redis unix://%s", sock);
  srv_init(&b);
  srv_write(&b, "probe.lua", "return function() return 'ok' end\n");
  srv_write(&b, "who.lua", WHO_LUA("auth = 'apikey',"));
  srv_start(&b, args);
  pin_t pa[2], pb[1];
  pin_workers(&a, 2, pa);
  pin_workers(&b, 1, pb);
  int fds[3] = {pa[0].fd, pa[1].fd, pb[0].fd};
  char key[64];
  api_create(a.port, "{\"name\":\"gone\"}", key, sizeof key);
  /* Each worker has seen the key (and keeps its scopes) before it is revoked. */
  for (int round = 0; round < 3; round++)
    for (int i = 0; i < 3; i++) {
      http_resp_t r;
      ka(fds[i], "/who", key, &r);
      if (r.status != 200 || strcmp(r.body, "apikey:gone:gone") != 0) fail_msg("%d: %d %s", i, r.status, r.body);
      http_free(&r);
    }
  /* Revoked on node a: the very next request on every worker of both nodes is refused. */
  http_resp_t r;
  long long t0 = now_ms();
  req(a.port, "DELETE", "/_/api/keys/gone", NULL, NULL, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{\"revoked\":\"gone\"}");
  http_free(&r);
  long long revoked = now_ms();
  for (int i = 0; i < 3; i++) {
    ka(fds[i], "/who", key, &r);
    expect_error(&r, 401, "invalid API key");
    http_free(&r);
  }
  long long seen = now_ms();
  print_message("revocation: DELETE took %lld ms; refused on 3 workers of 2 nodes within %lld ms after it\n",
                revoked - t0, seen - revoked);
  assert_true(seen - revoked < 1000);
  for (int i = 0; i < 3; i++) http_close(fds[i]);
  assert_int_equal(srv_stop(&b), 0);
  assert_int_equal(srv_stop(&a), 0);
}

/* --- usage plans ---------------------------------------------------------------------------------- */

/* Seconds from now to the next UTC midnight, and to the first of next month. */
static long to_day_end(void) {
  time_t t = time(NULL);
  return 86400 - (long)(t % 86400);
}

static long to_month_end(void) {
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  tm.tm_mon += 1;
  tm.tm_mday = 1;
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  return (long)(timegm(&tm) - t);
}

static void expect_retry_near(const http_resp_t *r, long want) {
  const char *v = http_header(r, "retry-after");
  if (!v) fail_msg("no Retry-After in:\n%s", r->head);
  long got = atol(v);
  if (got < want - 3 || got > want + 3) fail_msg("Retry-After %ld, want about %ld", got, want);
}

static void plans_quota_and_rate(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "who.lua", WHO_LUA("auth = 'apikey',"));
  srv_start(&s, "--workers 2");
  char url[64];
  url_of(&s, url, sizeof url);
  run_t c;
  run(&c, s.root, "plans", "create", "three", "--quota", "3", "--url", url, NULL);
  assert_int_equal(c.code, 0);
  assert_string_equal(c.out, "created plan three: 3 per day\n");
  run_free(&c);
  run(&c, s.root, "plans", "create", "monthly", "--quota", "2", "--per", "month", "--url", url, NULL);
  assert_int_equal(c.code, 0);
  assert_string_equal(c.out, "created plan monthly: 2 per month\n");
  run_free(&c);
  run(&c, s.root, "plans", "create", "fast", "--rps", "1", "--burst", "2", "--url", url, NULL);
  assert_int_equal(c.code, 0);
  assert_string_equal(c.out, "created plan fast: 1 rps, burst 2\n");
  run_free(&c);
  run(&c, s.root, "plans", "create", "fast", "--rps", "5", "--url", url, NULL);
  assert_int_equal(c.code, 1);
  assert_string_equal(c.err, "crescent plans: a plan named 'fast' exists (409)\n");
  run_free(&c);
  run(&c, s.root, "plans", "create", "empty", "--url", url, NULL);
  assert_int_equal(c.code, 1);
  assert_string_equal(c.err, "crescent plans: a plan needs a rate ('rps') or a quota ('quota'), or both (400)\n");
  run_free(&c);
  run(&c, s.root, "plans", "create", "x", "--quota", "1", "--per", "week", "--url", url, NULL);
  assert_int_equal(c.code, 1);
  assert_string_equal(c.err, "crescent plans: 'per' must be \"day\" or \"month\" (400)\n");
  run_free(&c);
  run(&c, s.root, "plans", "create", "x", "--rps", "ten", "--url", url, NULL);
  assert_int_equal(c.code, 2);
  run_free(&c);

  char kq[64], km[64], kf[64];
  run(&c, s.root, "keys", "create", "--name", "q", "--plan", "three", "--url", url, NULL);
  assert_int_equal(c.code, 0);
  snprintf(kq, sizeof kq, "%.47s", c.out);
  run_free(&c);
  api_create(s.port, "{\"name\":\"m\",\"plan\":\"monthly\"}", km, sizeof km);
  api_create(s.port, "{\"name\":\"f\",\"plan\":\"fast\",\"functions\":[\"who\"]}", kf, sizeof kf);

  /* The day's quota: 3 pass (over both workers), the 4th and after get 429 until midnight UTC. */
  for (int i = 0; i < 3; i++) expect_get(s.port, "/who", kq, 200, NULL);
  for (int i = 0; i < 2; i++) {
    http_resp_t r;
    get_with(s.port, "/who", kq, &r);
    expect_error(&r, 429, "quota exceeded");
    expect_retry_near(&r, to_day_end());
    expect_header(&r, "ratelimit-policy", "\"key-quota\";q=3;w=86400");
    const char *rl = http_header(&r, "ratelimit");
    assert_non_null(rl);
    assert_int_equal(strncmp(rl, "\"key-quota\";r=0;t=", 18), 0);
    http_free(&r);
  }
  assert_int_equal(srv_log_count(&s, "\"msg\":\"report\"", "\"function\":\"who\"", NULL) >= 3, 1);
  run(&c, s.root, "keys", "usage", "q", "--url", url, NULL);
  assert_int_equal(c.code, 0);
  if (!strstr(c.out, "plan:       three (3 per day)\n") || !strstr(c.out, "\ntoday:      3\nthis month: 3\n") ||
      !strstr(c.out, "\nquota:      3 per day, 3 used, 0 remaining, resets in "))
    fail_msg("keys usage q:\n%s", c.out);
  run_free(&c);

  /* The month's quota: Retry-After to the first of next month. */
  for (int i = 0; i < 2; i++) expect_get(s.port, "/who", km, 200, NULL);
  http_resp_t r;
  get_with(s.port, "/who", km, &r);
  expect_error(&r, 429, "quota exceeded");
  expect_retry_near(&r, to_month_end());
  expect_header(&r, "ratelimit-policy", "\"key-quota\";q=2;w=2592000");
  http_free(&r);
  http_get(s.port, "/_/api/keys/m/usage", &r);
  assert_int_equal(r.status, 200);
  if (!strstr(r.body, "\"plan\":{\"name\":\"monthly\",\"rps\":0,\"burst\":0,\"quota\":2,\"per\":\"month\"}") ||
      !strstr(r.body, "\"today\":2,\"month\":2,\"quota\":2,\"per\":\"month\",\"used\":2,\"remaining\":0,\"resetsIn\":"))
    fail_msg("usage m: %s", r.body);
  http_free(&r);

  /* The plan's rate: a burst of 2, then 429 with Retry-After 1 (the third within a second of the
   * first: on loopback, milliseconds); a request passes again a second later. */
  long long t0 = now_ms();
  expect_get(s.port, "/who", kf, 200, NULL);
  expect_get(s.port, "/who", kf, 200, NULL);
  get_with(s.port, "/who", kf, &r);
  if (now_ms() - t0 > 900) fail_msg("3 requests took %lld ms: too slow to see the rate", now_ms() - t0);
  expect_error(&r, 429, "rate limit exceeded");
  expect_header(&r, "retry-after", "1");
  expect_header(&r, "ratelimit-policy", "\"key-burst\";q=2;w=2");
  expect_header(&r, "ratelimit", "\"key-burst\";r=0;t=1");
  http_free(&r);
  sleep_ms(1100);
  expect_get(s.port, "/who", kf, 200, NULL);
  /* Refused requests are not counted in the key's use. */
  http_get(s.port, "/_/api/keys/f/usage", &r);
  assert_non_null(strstr(r.body, "\"today\":3,"));
  http_free(&r);

  /* plans list; a plan in use cannot be deleted; once its keys are revoked it can. */
  run(&c, s.root, "plans", "list", "--url", url, NULL);
  assert_int_equal(c.code, 0);
  if (strncmp(c.out, "NAME     LIMITS          KEYS  CREATED\n", 38) != 0 ||
      text_lines_with(c.out, "three    3 per day       1     20", NULL) != 1 ||
      text_lines_with(c.out, "monthly  2 per month     1     20", NULL) != 1 ||
      text_lines_with(c.out, "fast     1 rps, burst 2  1     20", NULL) != 1)
    fail_msg("plans list:\n%s", c.out);
  run_free(&c);
  run(&c, s.root, "plans", "delete", "three", "--url", url, NULL);
  assert_int_equal(c.code, 1);
  assert_string_equal(c.err, "crescent plans: plan 'three' is used by 1 key(s): revoke them first (409)\n");
  run_free(&c);
  run(&c, s.root, "keys", "revoke", "q", "--url", url, NULL);
  assert_int_equal(c.code, 0);
  run_free(&c);
  run(&c, s.root, "plans", "delete", "three", "--url", url, NULL);
  assert_int_equal(c.code, 0);
  assert_string_equal(c.out, "deleted plan three\n");
  run_free(&c);
  run(&c, s.root, "plans", "delete", "three", "--url", url, NULL);
  assert_int_equal(c.code, 1);
  assert_string_equal(c.err, "crescent plans: no plan named 'three' (404)\n");
  run_free(&c);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- --default-auth apikey, rateLimit by = "key" -------------------------------------------------- */

static void default_auth_and_rate_by_key(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "priv.lua", WHO_LUA(""));
  srv_write(&s, "pub.lua", WHO_LUA("auth = 'none',"));
  srv_write(&s, "limited.lua", WHO_LUA("rateLimit = { rps = 0.5, burst = 2, by = 'key' },"));
  srv_start(&s, "--workers 1 --default-auth apikey");
  char ka_[64], kb[64];
  api_create(s.port, "{\"name\":\"a\"}", ka_, sizeof ka_);
  api_create(s.port, "{\"name\":\"b\"}", kb, sizeof kb);
  /* Without an auth setting a function needs a key; auth = "none" is public. */
  expect_get(s.port, "/priv", NULL, 401, "missing credentials");
  http_resp_t r;
  get_with(s.port, "/priv", ka_, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "apikey:a:a");
  http_free(&r);
  get_with(s.port, "/pub", NULL, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "anonymous");
  http_free(&r);
  /* One bucket per key: a's 2 then 429; b's own 2 still pass. */
  expect_get(s.port, "/limited", NULL, 401, "missing credentials");
  expect_get(s.port, "/limited", ka_, 200, NULL);
  expect_get(s.port, "/limited", ka_, 200, NULL);
  get_with(s.port, "/limited", ka_, &r);
  expect_error(&r, 429, "rate limit exceeded");
  assert_non_null(http_header(&r, "retry-after"));
  http_free(&r);
  expect_get(s.port, "/limited", kb, 200, NULL);
  expect_get(s.port, "/limited", kb, 200, NULL);
  expect_get(s.port, "/limited", kb, 429, "rate limit exceeded");
  /* The platform's own routes keep the admin rule, not API keys. */
  http_get(s.port, "/_/health", &r);
  assert_int_equal(r.status, 200);
  http_free(&r);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- the API's refusals, the admin rule ----------------------------------------------------------- */

static void api_refusals(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "who.lua", WHO_LUA("auth = 'apikey',"));
  srv_start(&s, "--workers 1 --admin-token sekret");
  static const struct {
    const char *method, *path, *body;
    int status;
    const char *error;
  } cases[] = {
      {"POST", "/_/api/keys", "nope", 400, "the body is not JSON: at byte 0: invalid literal"},
      {"POST", "/_/api/keys", "[]", 400, "the body must be a JSON object"},
      {"POST", "/_/api/keys", "{\"name\":\"x\",\"key\":\"mine\"}", 400, "unknown field 'key'"},
      {"POST", "/_/api/keys", "{}", 400, "'name' is required"},
      {"POST", "/_/api/keys", "{\"name\":\"a:b\"}", 400, "'name' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"},
      {"POST", "/_/api/keys", "{\"name\":\"x\",\"functions\":\"a,,b\"}", 400,
       "'functions': an empty function pattern in the list"},
      {"POST", "/_/api/keys", "{\"name\":\"x\",\"functions\":[]}", 400,
       "'functions': an empty list would allow nothing: leave 'functions' out for every function"},
      {"POST", "/_/api/keys", "{\"name\":\"x\",\"functions\":\" \"}", 400,
       "'functions': an empty list would allow nothing: leave 'functions' out for every function"},
      {"POST", "/_/api/keys", "{\"name\":\"x\",\"functions\":[\"a,b\"]}", 400,
       "'functions': each function pattern must be a non-empty string without commas"},
      {"POST", "/_/api/keys", "{\"name\":\"x\",\"functions\":7}", 400, "'functions': must be a string or an array of strings"},
      {"POST", "/_/api/plans", "{\"name\":\"p\",\"rps\":-1}", 400, "'rps' must be a number between 0 and 1e+06"},
      {"POST", "/_/api/plans", "{\"name\":\"p\",\"quota\":1.5}", 400, "'quota' must be an integer between 0 and 1e+12"},
      {"POST", "/_/api/plans", "{\"name\":\"p\",\"quota\":5,\"burst\":3}", 400, "'burst' needs 'rps'"},
      {"POST", "/_/api/plans", "{\"name\":\"p\",\"rps\":5,\"per\":\"day\"}", 400, "'per' needs 'quota'"},
      {"PUT", "/_/api/keys", NULL, 405, "method not allowed"},
      {"POST", "/_/api/keys/x", NULL, 405, "method not allowed"},
      {"DELETE", "/_/api/keys/x/usage", NULL, 405, "method not allowed"},
      {"GET", "/_/api/keys/x/y", NULL, 404, "not found"},
      {"DELETE", "/_/api/keys/a:b", NULL, 404, "no such key"},
      {"DELETE", "/_/api/keys/x", NULL, 404, "no key named 'x'"},
      {"GET", "/_/api/keys/x/usage", NULL, 404, "no key named 'x'"},
      {"DELETE", "/_/api/plans/x", NULL, 404, "no plan named 'x'"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    http_resp_t r;
    req(s.port, cases[i].method, cases[i].path, "Authorization: Bearer sekret\r\n", cases[i].body, &r);
    expect_error(&r, cases[i].status, cases[i].error);
    http_free(&r);
  }
  /* The admin rule: no token, a wrong one. */
  http_resp_t r;
  req(s.port, "GET", "/_/api/keys", NULL, NULL, &r);
  assert_int_equal(r.status, 401);
  http_free(&r);
  req(s.port, "POST", "/_/api/keys", "Authorization: Bearer wrong\r\n", "{\"name\":\"x\"}", &r);
  assert_int_equal(r.status, 401);
  http_free(&r);
  /* The command line with the token: refused without, works with it. */
  char url[64];
  url_of(&s, url, sizeof url);
  run_t c;
  run(&c, s.root, "keys", "list", "--url", url, NULL);
  assert_int_equal(c.code, 1);
  if (!strstr(c.err, "(401)")) fail_msg("stderr: %s", c.err);
  run_free(&c);
  run(&c, s.root, "keys", "list", "--url", url, "--admin-token", "sekret", NULL);
  assert_int_equal(c.code, 0);
  assert_string_equal(c.out, "no keys\n");
  run_free(&c);
  /* The admin token is not an API key. */
  req(s.port, "GET", "/who", "Authorization: Bearer sekret\r\n", NULL, &r);
  expect_error(&r, 401, "invalid API key");
  http_free(&r);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- Redis stuck: fail closed ---------------------------------------------------------------------- */

static void redis_stuck_fails_closed(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "who.lua", WHO_LUA("auth = 'apikey',"));
  srv_start(&s, "--workers 1 --redis-timeout 0.3");
  char key[64];
  api_create(s.port, "{\"name\":\"k\"}", key, sizeof key);
  expect_get(s.port, "/who", key, 200, NULL);
  char *line = srv_log_line(&s, "started redis-server (pid ", NULL);
  assert_non_null(line);
  int pid = atoi(strstr(line, "(pid ") + 5);
  free(line);
  assert_true(pid > 0);
  assert_int_equal(kill(pid, SIGSTOP), 0);
  http_resp_t r;
  get_with(s.port, "/who", key, &r);
  kill(pid, SIGCONT);
  expect_error(&r, 503, "authentication unavailable");
  expect_header(&r, "retry-after", "1");
  http_free(&r);
  assert_int_equal(srv_log_wait(&s, 1, 3000, "\"level\":\"warn\"", "API keys cannot be checked, refusing with 503",
                                NULL),
                   1);
  http_get(s.port, "/_/api/functions", &r);
  char *e = api_fn_entry(r.body, "who");
  assert_non_null(e);
  assert_true(json_num(e, "authUnavailable") == 1);
  free(e);
  http_free(&r);
  http_get(s.port, "/_/metrics", &r);
  assert_non_null(strstr(r.body, "crescent_auth_unavailable_total{function=\"who\"} 1\n"));
  http_free(&r);
  /* Redis back: the key works again. */
  long long t0 = now_ms();
  int ok = 0;
  while (!ok && now_ms() - t0 < 5000) {
    get_with(s.port, "/who", key, &r);
    ok = r.status == 200;
    http_free(&r);
    if (!ok) sleep_ms(50);
  }
  assert_true(ok);
  assert_int_equal(srv_stop(&s), 0);
}


/* --- the scripts' calendar ------------------------------------------------------------------------ */

/* apikey_check.lua's UTC date and "seconds to the end of the day / month" (what quotas and their
 * Retry-After rest on), run in the server's Redis for 1,500 instants from 1970 to 2300 (leap
 * years, month ends, the last second of a day), against the C library's gmtime/timegm. */
static void scripts_calendar(void **state) {
  (void)state;
  char *src = read_file(CR_SOURCE_DIR "/stdlib/redis/apikey_check.lua");
  const char *from = strstr(src, "local z = math.floor"), *to = strstr(src, "local dkey");
  assert_non_null(from);
  assert_non_null(to);
  size_t cap = (size_t)(to - from) + 1024;
  char *lua = malloc(cap);
  assert_non_null(lua);
  int n = snprintf(lua, cap,
                   "local res = {}\n"
                   "for k = 0, 1499 do\n"
                   "local sec = tonumber(ARGV[1]) + k * 7000003 + (k %% 3 == 0 and 86399 - (k * 7000003) %% 86400 or 0)\n"
                   "%.*s\n"
                   "res[#res + 1] = string.format('%%d %%04d-%%02d-%%02d %%d %%d', sec, y, m, d, day_left, month_left)\n"
                   "end\n"
                   "return table.concat(res, ',')",
                   (int)(to - from), from);
  assert_true(n > 0 && (size_t)n < cap);
  srv_t s;
  srv_init(&s);
  srv_start(&s, "--workers 1");
  char *out = srv_rcli(&s, "EVAL", lua, "0", "0", NULL);
  int count = 0;
  for (char *e = strtok(out, ","); e; e = strtok(NULL, ","), count++) {
    long long sec;
    char date[16];
    long day_left, month_left;
    if (sscanf(e, "%lld %15s %ld %ld", &sec, date, &day_left, &month_left) != 4) fail_msg("entry '%s'", e);
    time_t t = (time_t)sec;
    struct tm tm;
    gmtime_r(&t, &tm);
    char want[48];
    snprintf(want, sizeof want, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    struct tm next = {.tm_year = tm.tm_year, .tm_mon = tm.tm_mon + 1, .tm_mday = 1};
    long want_month = (long)(timegm(&next) - t);
    long want_day = 86400 - (long)(sec % 86400);
    if (strcmp(date, want) != 0 || day_left != want_day || month_left != want_month)
      fail_msg("at %lld: %s %ld %ld, want %s %ld %ld", sec, date, day_left, month_left, want, want_day, want_month);
  }
  assert_int_equal(count, 1500);
  free(out);
  free(lua);
  free(src);
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(cli_keys_and_answers),
      cmocka_unit_test(revocation_everywhere),
      cmocka_unit_test(plans_quota_and_rate),
      cmocka_unit_test(default_auth_and_rate_by_key),
      cmocka_unit_test(api_refusals),
      cmocka_unit_test(redis_stuck_fails_closed),
      cmocka_unit_test(scripts_calendar),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
