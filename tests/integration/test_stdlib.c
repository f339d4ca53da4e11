/* test_stdlib.c - the crescent.* modules of docs/architecture.md §5 from real functions, on the managed
 * Redis (--redis auto, the default): kv, storage (and its HTTP face at /_/storage), queue and
 * log. What the functions see is checked in Lua (each step returns "ok" or what went wrong);
 * what reached Redis (values, change and event streams, queues) is read back with redis-cli on
 * the managed server's socket, <root>/.crescent/redis.sock. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* --- helpers ------------------------------------------------------------------------------------ */

/* A request that must get a response. Requests go without "Connection: close": the
 * close-after-yield case has its own test (connection_close). */
static void req(int port, const char *method, const char *path, const char *headers, const char *body,
                size_t body_len, http_resp_t *r) {
  if (http_request_ka(port, method, path, headers, body, body_len, r, 15000) != 0)
    fail_msg("%s %s: no response", method, path);
}

static void kget(int port, const char *path, http_resp_t *r) { req(port, "GET", path, NULL, NULL, 0, r); }

/* GET that must answer 200 "ok" (a Lua step that found nothing wrong). */
static void step_ok(int port, const char *path) {
  http_resp_t r;
  kget(port, path, &r);
  if (r.status != 200 || strcmp(r.body, "ok") != 0) fail_msg("GET %s: got %d:\n%s", path, r.status, r.body);
  http_free(&r);
}

/* GET that must answer 200; returns the body (malloc'd). */
static char *get_200(int port, const char *path) {
  http_resp_t r;
  kget(port, path, &r);
  if (r.status != 200) fail_msg("GET %s: got %d: %s", path, r.status, r.body);
  char *b = strdup(r.body);
  http_free(&r);
  return b;
}

/* Runs `redis-cli -s sock args...` (NULL-terminated) and returns its output (malloc'd);
 * bounded at 5 s. */
/* Drops the trailing newline of one value printed by redis-cli. */
static char *chomp(char *s) {
  size_t n = strlen(s);
  while (n && (s[n - 1] == '\n' || s[n - 1] == '\r')) s[--n] = '\0';
  return s;
}

/* A stream entry as redis-cli prints it (raw): the id, then a line per field name and value. */
typedef struct {
  const char *id;
  int n;
  const char *name[16];
  const char *val[16];
} xent_t;

static int is_stream_id(const char *s) {
  const char *p = s;
  if (!(*p >= '0' && *p <= '9')) return 0;
  while (*p >= '0' && *p <= '9') p++;
  if (*p++ != '-') return 0;
  if (!(*p >= '0' && *p <= '9')) return 0;
  while (*p >= '0' && *p <= '9') p++;
  return *p == '\0';
}

/* XRANGE key - + into e (pointing into *buf, which the caller frees); returns the count. */
static int xrange(const char *sock, const char *key, xent_t *e, int max, char **buf) {
  char *out = redis_cli_sock(sock, "XRANGE", key, "-", "+", NULL);
  *buf = out;
  int n = -1;
  int field = 0; /* lines since the id */
  char *line = out;
  while (line && *line) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = '\0';
    if ((field % 2 == 0) && is_stream_id(line)) {
      if (n + 1 >= max) fail_msg("stream %s: more than %d entries", key, max);
      n++;
      memset(&e[n], 0, sizeof e[n]);
      e[n].id = line;
      field = 0;
    } else {
      if (n < 0) fail_msg("stream %s: unexpected output '%s'", key, line);
      if (field % 2 == 0) {
        if (e[n].n >= 16) fail_msg("stream %s: too many fields", key);
        e[n].name[e[n].n] = line;
        e[n].val[e[n].n] = "";
      } else {
        e[n].val[e[n].n++] = line;
      }
      field++;
    }
    line = nl ? nl + 1 : NULL;
  }
  return n + 1;
}

/* The value of a field of a stream entry, or NULL. */
static const char *xf(const xent_t *e, const char *name) {
  for (int i = 0; i < e->n; i++)
    if (strcmp(e->name[i], name) == 0) return e->val[i];
  return NULL;
}

/* A "time" field: milliseconds since the epoch, within a minute of now. */
static void check_time_field(const xent_t *e, const char *what) {
  const char *t = xf(e, "time");
  if (!t) fail_msg("%s: no time field", what);
  long long ms = atoll(t);
  long long now = (long long)time(NULL) * 1000;
  if (ms < now - 60000 || ms > now + 60000) fail_msg("%s: time %s is not near now (%lld)", what, t, now);
}

/* Fails unless the field of entry i of a stream is want. */
static void expect_field(const xent_t *e, int i, const char *name, const char *want, const char *stream) {
  const char *got = xf(&e[i], name);
  if (!got || strcmp(got, want) != 0)
    fail_msg("%s entry %d: field %s is '%s', want '%s'", stream, i + 1, name, got ? got : "(none)", want);
}

typedef struct {
  const char *op, *key;
  int version;
} change_t;

/* The changes stream of KV namespace ns holds exactly want, in order. */
static void check_changes(const char *sock, const char *ns, const change_t *want, int n) {
  char key[128], ver[32];
  snprintf(key, sizeof key, "cr:{kv:%s}:changes", ns);
  xent_t e[64];
  char *buf;
  int got = xrange(sock, key, e, 64, &buf);
  if (got != n) fail_msg("%s: %d change records, want %d:\n%s", key, got, n, buf);
  for (int i = 0; i < n; i++) {
    snprintf(ver, sizeof ver, "%d", want[i].version);
    expect_field(e, i, "op", want[i].op, key);
    expect_field(e, i, "key", want[i].key, key);
    expect_field(e, i, "version", ver, key);
    check_time_field(&e[i], key);
    if (e[i].n != 4) fail_msg("%s entry %d: %d fields, want op, key, version, time", key, i + 1, e[i].n);
  }
  free(buf);
}

/* Lua helpers the test functions start with: deep equality (telling -0 from 0), packed
 * returns (with their count), and a list of failures the step returns ("ok" if none). */
#define LUA_CHECKS                                                                                           \
  "local function show(v)\n"                                                                                 \
  "  if type(v) == 'string' then return string.format('%q', v) end\n"                                        \
  "  if type(v) == 'number' then return string.format('%.17g', v) end\n"                                     \
  "  if type(v) == 'table' then\n"                                                                           \
  "    local parts = {}\n"                                                                                   \
  "    for k, x in pairs(v) do parts[#parts + 1] = tostring(k) .. '=' .. show(x) end\n"                      \
  "    table.sort(parts)\n"                                                                                  \
  "    return '{' .. table.concat(parts, ', ') .. '}'\n"                                                     \
  "  end\n"                                                                                                  \
  "  return tostring(v)\n"                                                                                   \
  "end\n"                                                                                                    \
  "local function deq(a, b)\n"                                                                               \
  "  if a == b then return type(a) ~= 'number' or a ~= 0 or 1 / a == 1 / b end\n"                            \
  "  if type(a) ~= 'table' or type(b) ~= 'table' then return false end\n"                                    \
  "  for k, v in pairs(a) do if not deq(v, b[k]) then return false end end\n"                                \
  "  for k in pairs(b) do if a[k] == nil then return false end end\n"                                        \
  "  return true\n"                                                                                          \
  "end\n"                                                                                                    \
  "local errs = {}\n"                                                                                        \
  "local function eq(label, got, want)\n"                                                                    \
  "  if not deq(got, want) then errs[#errs + 1] = label .. ': got ' .. show(got) .. ', want ' .. show(want) end\n" \
  "end\n"                                                                                                    \
  "local function truthy(label, cond, info)\n"                                                               \
  "  if not cond then errs[#errs + 1] = label .. ' (' .. show(info) .. ')' end\n"                            \
  "end\n"                                                                                                    \
  "local function pack(...) return { n = select('#', ...), ... } end\n"                                      \
  "local function raises(label, want, f, ...)\n"                                                             \
  "  local ok, e = pcall(f, ...)\n"                                                                          \
  "  if ok then errs[#errs + 1] = label .. ': did not raise'\n"                                              \
  "  elseif not tostring(e):find(want, 1, true) then\n"                                                      \
  "    errs[#errs + 1] = label .. ': raised ' .. show(e) .. ', not ' .. show(want)\n"                         \
  "  end\n"                                                                                                  \
  "end\n"                                                                                                    \
  "local function verdict()\n"                                                                               \
  "  local r = #errs == 0 and 'ok' or table.concat(errs, '\\n')\n"                                           \
  "  errs = {}\n"                                                                                            \
  "  return r\n"                                                                                             \
  "end\n"

/* --- kv ----------------------------------------------------------------------------------------- */

static const char kv_fn[] =
    "local kv = require 'crescent.kv'\n" LUA_CHECKS
    "local steps = {}\n"
    "local negzero = 0 / -1\n"
    "steps.roundtrip = function()\n"
    "  truthy('-0 is negative zero', 1 / negzero < 0, negzero)\n"
    "  local rt = kv.namespace('rt')\n"
    "  local vals = {\n"
    "    {'s', 'plain'}, {'nul', 'a\\0b\\0\\0c\\0'}, {'empty', ''}, {'tenth', 0.1}, {'negzero', negzero},\n"
    "    {'n53', 2^53}, {'huge', 1e300}, {'neg', -42}, {'zero', 0}, {'t', true}, {'f', false},\n"
    "    {'nested', {a = {b = {c = {1, 2, 3}}}, s = 'x', big = 2^53, frac = 0.1}},\n"
    "    {'emptyt', {}}, {'nulls', {x = json.null, y = 1, arr = {1, json.null, 3}}},\n"
    "  }\n"
    "  local want, keys = {}, {}\n"
    "  for i, p in ipairs(vals) do\n"
    "    local k, v = p[1], p[2]\n"
    "    eq('put ' .. k, pack(rt.put(k, v)), {n = 1, i})\n"
    "    eq('get ' .. k, pack(rt.get(k)), {n = 3, v, nil, i})\n"
    "    want[k] = v\n"
    "    keys[#keys + 1] = k\n"
    "  end\n"
    "  local n53 = rt.get('n53')\n"
    "  eq('2^53 exact', string.format('%.0f', n53 or 0), '9007199254740992')\n"
    "  eq('nested 2^53 exact', string.format('%.0f', (rt.get('nested') or {}).big or 0), '9007199254740992')\n"
    "  local nulls = rt.get('nulls') or {}\n"
    "  truthy('json.null kept in a table', nulls.x == json.null, nulls.x)\n"
    "  truthy('json.null kept in an array', type(nulls.arr) == 'table' and nulls.arr[2] == json.null, nulls.arr)\n"
    "  keys[#keys + 1] = 'missing'\n"
    "  eq('getMany', rt.getMany(keys), want)\n"
    "  local page = rt.list('', {limit = 1000})\n"
    "  local got = {}\n"
    "  for i, it in ipairs(page.items) do got[it.key] = it.value end\n"
    "  eq('list values', got, want)\n"
    "  eq('list count', #page.items, #vals)\n"
    "  eq('list cursor', page.cursor, nil)\n"
    "  for i = 2, #page.items do\n"
    "    truthy('list order', page.items[i - 1].key < page.items[i].key, page.items[i].key)\n"
    "  end\n"
    "end\n"
    "steps.versions = function()\n"
    "  eq('put k', pack(kv.put('k', 'v1')), {n = 1, 1})\n"
    "  eq('get k', pack(kv.get('k')), {n = 3, 'v1', nil, 1})\n"
    "  eq('put k again', pack(kv.put('k', 'v2')), {n = 1, 2})\n"
    "  eq('cas with a stale version', pack(kv.put('k', 'v3', {version = 1})), {n = 2, nil, 'conflict'})\n"
    "  eq('value after a failed cas', pack(kv.get('k')), {n = 3, 'v2', nil, 2})\n"
    "  eq('cas with the current version', pack(kv.put('k', 'v3', {version = 2})), {n = 1, 3})\n"
    "  eq('ifAbsent on an existing key', pack(kv.put('k', 'x', {ifAbsent = true})), {n = 2, nil, 'conflict'})\n"
    "  eq('ifAbsent on a new key', pack(kv.put('n', 'str', {ifAbsent = true})), {n = 1, 4})\n"
    "  eq('delete', pack(kv.delete('k')), {n = 1, true})\n"
    "  eq('delete again', pack(kv.delete('k')), {n = 1, false})\n"
    "  eq('get deleted', pack(kv.get('k')), {n = 1})\n"
    "  eq('get never written', pack(kv.get('never')), {n = 1})\n"
    "  eq('incr a new key', pack(kv.incr('c')), {n = 3, 1, nil, 6})\n"
    "  eq('incr by 41', pack(kv.incr('c', 41)), {n = 3, 42, nil, 7})\n"
    "  eq('incr by -0.5', pack(kv.incr('c', -0.5)), {n = 3, 41.5, nil, 8})\n"
    "  eq('get counter', pack(kv.get('c')), {n = 3, 41.5, nil, 8})\n"
    "  local r = pack(kv.incr('n'))\n"
    "  truthy('incr on a string: nil, err', r.n == 2 and r[1] == nil and type(r[2]) == 'string' and #r[2] > 0, r)\n"
    "  eq('string kept', pack(kv.get('n')), {n = 3, 'str', nil, 4})\n"
    "  eq('delete with a stale version', pack(kv.delete('n', {version = 3})), {n = 2, nil, 'conflict'})\n"
    "  eq('re-create', pack(kv.put('k', 'again')), {n = 1, 9})\n"
    "  eq('cas with a version from before the delete', pack(kv.put('k', 'z', {version = 3})), {n = 2, nil, 'conflict'})\n"
    "  eq('delete with the current version', pack(kv.delete('n', {version = 4})), {n = 1, true})\n"
    "  local a = kv.namespace('a')\n"
    "  eq('namespace put', pack(a.put('same', 'in a')), {n = 1, 1})\n"
    "  eq('default put', pack(kv.put('same', 'in default')), {n = 1, 11})\n"
    "  eq('namespace get', pack(a.get('same')), {n = 3, 'in a', nil, 1})\n"
    "  eq('default get', pack(kv.get('same')), {n = 3, 'in default', nil, 11})\n"
    "  eq('namespace lacks a default key', pack(a.get('c')), {n = 1})\n"
    "  eq('namespace lists its own keys', #a.list('').items, 1)\n"
    "  eq('namespace object reused', kv.namespace('a') == a, true)\n"
    "  eq('namespace name', a.name, 'a')\n"
    "end\n"
    "steps.list = function()\n"
    "  local ls = kv.namespace('ls')\n"
    "  for i = 1, 25 do ls.put(string.format('p:%02d', i), {i = i}) end\n"
    "  ls.put('q:1', 'other')\n"
    "  ls.put('p', 'bare')\n"
    "  local seen, cursor, pages, cursors = {}, nil, 0, {}\n"
    "  repeat\n"
    "    local page, err = ls.list('p:', {limit = 10, cursor = cursor})\n"
    "    if not page then errs[#errs + 1] = 'list: ' .. tostring(err) break end\n"
    "    pages = pages + 1\n"
    "    eq('page ' .. pages .. ' size', #page.items, pages < 3 and 10 or 5)\n"
    "    for _, it in ipairs(page.items) do\n"
    "      seen[#seen + 1] = it.key\n"
    "      eq('value of ' .. it.key, it.value, {i = tonumber(it.key:sub(3))})\n"
    "      truthy('version of ' .. it.key, type(it.version) == 'number' and it.version >= 1, it.version)\n"
    "    end\n"
    "    cursor = page.cursor\n"
    "    cursors[#cursors + 1] = tostring(cursor)\n"
    "  until not cursor or pages >= 5\n"
    "  eq('pages', pages, 3)\n"
    "  eq('cursors', table.concat(cursors, ','), 'p:10,p:20,nil')\n"
    "  local want = {}\n"
    "  for i = 1, 25 do want[i] = string.format('p:%02d', i) end\n"
    "  eq('keys in order, once each', table.concat(seen, ','), table.concat(want, ','))\n"
    "  local all = ls.list('', {limit = 1000})\n"
    "  eq('all keys', #all.items, 27)\n"
    "  eq('first key', all.items[1] and all.items[1].key, 'p')\n"
    "  eq('last key', all.items[27] and all.items[27].key, 'q:1')\n"
    "  eq('default list', #ls.list().items, 27)\n"
    "  eq('no match', pack(ls.list('zzz')), {n = 1, {items = {}}})\n"
    "  eq('narrow prefix', #ls.list('p:0').items, 9)\n"
    "  local mid = ls.list('p:2', {limit = 3})\n"
    "  eq('limited page', {mid.items[1].key, mid.items[2].key, mid.items[3].key, mid.cursor},\n"
    "     {'p:20', 'p:21', 'p:22', 'p:22'})\n"
    "  eq('getMany', ls.getMany({'p:01', 'missing', 'q:1', 'p'}), {['p:01'] = {i = 1}, ['q:1'] = 'other', p = 'bare'})\n"
    "  eq('getMany of nothing', ls.getMany({}), {})\n"
    "end\n"
    "steps.ttl1 = function()\n"
    "  local t = kv.namespace('ttl')\n"
    "  eq('put with ttl', pack(t.put('t', 'temp', {ttl = 1})), {n = 1, 1})\n"
    "  eq('get before expiry', pack(t.get('t')), {n = 3, 'temp', nil, 1})\n"
    "  eq('put keep with ttl', pack(t.put('keep', 'x', {ttl = 1})), {n = 1, 2})\n"
    "  eq('put keep without ttl', pack(t.put('keep', 'kept')), {n = 1, 3})\n"
    "end\n"
    "steps.ttl2 = function()\n"
    "  local t = kv.namespace('ttl')\n"
    "  eq('get after expiry', pack(t.get('t')), {n = 1})\n"
    "  eq('a put without ttl clears the ttl', pack(t.get('keep')), {n = 3, 'kept', nil, 3})\n"
    "  local page = t.list('')\n"
    "  eq('list after expiry', #page.items, 1)\n"
    "  eq('list after expiry key', page.items[1] and page.items[1].key, 'keep')\n"
    "  eq('getMany after expiry', t.getMany({'t', 'keep'}), {keep = 'kept'})\n"
    "end\n"
    "steps.errors = function()\n"
    "  raises('get a number', \"bad argument #1 to 'kv.get' (string key expected, got number)\", kv.get, 42)\n"
    "  raises('get an empty key', \"bad argument #1 to 'kv.get'\", kv.get, '')\n"
    "  raises('put a function', \"bad argument #2 to 'kv.put'\", kv.put, 'k', print)\n"
    "  raises('put nan', 'numbers must be finite', kv.put, 'k', 0 / 0)\n"
    "  raises('put inf', 'numbers must be finite', kv.put, 'k', math.huge)\n"
    "  raises('put a bad ttl', \"bad argument #3 to 'kv.put'\", kv.put, 'k', 'v', {ttl = -1})\n"
    "  raises('put non-table options', \"bad argument #3 to 'kv.put'\", kv.put, 'k', 'v', 5)\n"
    "  raises('delete a table key', \"bad argument #1 to 'kv.delete'\", kv.delete, {})\n"
    "  raises('incr by a string', \"bad argument #2 to 'kv.incr'\", kv.incr, 'k', '1')\n"
    "  raises('list limit 0', \"bad argument #2 to 'kv.list'\", kv.list, '', {limit = 0})\n"
    "  raises('getMany of a string', \"bad argument #1 to 'kv.getMany'\", kv.getMany, 'k')\n"
    "  raises('bad namespace', \"bad argument #1 to 'kv.namespace'\", kv.namespace, 'no spaces')\n"
    "  local e = kv.namespace('err')\n"
    "  eq('value too large', pack(e.put('big', string.rep('x', 1025))), {n = 2, nil, 'value too large'})\n"
    "  eq('table too large', pack(e.put('bigt', {s = string.rep('y', 1100)})), {n = 2, nil, 'value too large'})\n"
    "  eq('nothing stored', pack(e.get('big')), {n = 1})\n"
    "  eq('largest value fits', pack(e.put('fits', string.rep('x', 1024))), {n = 1, 1})\n"
    "  eq('largest value reads back', #(e.get('fits') or ''), 1024)\n"
    "  raises('cas with a NaN version', \"bad argument #3 to 'kv.put' (version must be a finite number)\",\n"
    "    e.put, 'nanv', 'x', {version = 0 / 0})\n"
    "  eq('a NaN version writes nothing', pack(e.get('nanv')), {n = 1})\n"
    "  raises('cas with an infinite version', \"bad argument #3 to 'kv.put'\", e.put, 'nanv', 'x', {version = -math.huge})\n"
    "  raises('delete with a NaN version', \"bad argument #2 to 'kv.delete' (version must be a finite number)\",\n"
    "    e.delete, 'fits', {version = 0 / 0})\n"
    "  eq('a NaN version deletes nothing', #(e.get('fits') or ''), 1024)\n"
    "  raises('put with an infinite ttl', \"bad argument #3 to 'kv.put' (ttl must be\", e.put, 'inft', 'x', {ttl = math.huge})\n"
    "  raises('put with a NaN ttl', \"bad argument #3 to 'kv.put' (ttl must be\", e.put, 'inft', 'x', {ttl = 0 / 0})\n"
    "  eq('a bad ttl writes nothing', pack(e.get('inft')), {n = 1})\n"
    "  raises('list with a NaN limit', \"bad argument #2 to 'kv.list'\", e.list, '', {limit = 0 / 0})\n"
    "end\n"
    "return function(event)\n"
    "  if event.query.t == 'raise' then\n"
    "    local v = kv.get(42)\n"
    "    return v\n"
    "  end\n"
    "  local step = steps[event.query.t]\n"
    "  if not step then return { status = 404, body = 'no such step' } end\n"
    "  step()\n"
    "  return verdict()\n"
    "end\n";

static void kv_api(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "kvt.lua", kv_fn);
  srv_start(&s, "--workers 2 --kv-max-value 1k");
  char sock[400];
  srv_redis_sock(&s, sock, sizeof sock);

  /* Values round-trip exactly. */
  step_ok(s.port, "/kvt?t=roundtrip");
  char *v = chomp(redis_cli_sock(sock, "HGET", "cr:{kv:rt}:v:n53", "v", NULL));
  assert_string_equal(v, "9007199254740992"); /* stored exact, not 9.007199254741e+15 */
  free(v);
  v = chomp(redis_cli_sock(sock, "HGET", "cr:{kv:rt}:v:nested", "v", NULL));
  if (!strstr(v, "9007199254740992")) fail_msg("nested 2^53 not stored exactly: %s", v);
  free(v);
  v = chomp(redis_cli_sock(sock, "HSTRLEN", "cr:{kv:rt}:v:nul", "v", NULL));
  assert_string_equal(v, "7"); /* the NUL bytes are stored, not cut */
  free(v);
  v = chomp(redis_cli_sock(sock, "ZCARD", "cr:{kv:rt}:i", NULL));
  assert_string_equal(v, "14");
  free(v);
  {
    static const char *keys[] = {"s",    "nul",  "empty", "tenth", "negzero", "n53",    "huge",
                                 "neg",  "zero", "t",     "f",     "nested",  "emptyt", "nulls"};
    change_t want[14];
    for (int i = 0; i < 14; i++) want[i] = (change_t){"put", keys[i], i + 1};
    check_changes(sock, "rt", want, 14);
  }

  /* Versions, compare-and-set, ifAbsent, delete, incr, namespaces. */
  step_ok(s.port, "/kvt?t=versions");
  {
    static const change_t want[] = {{"put", "k", 1},     {"put", "k", 2},      {"put", "k", 3},
                                    {"put", "n", 4},     {"delete", "k", 5},   {"incr", "c", 6},
                                    {"incr", "c", 7},    {"incr", "c", 8},      {"put", "k", 9},
                                    {"delete", "n", 10}, {"put", "same", 11}};
    check_changes(sock, "default", want, 11);
    static const change_t want_a[] = {{"put", "same", 1}};
    check_changes(sock, "a", want_a, 1);
  }
  v = chomp(redis_cli_sock(sock, "HGET", "cr:{kv:default}:v:c", "v", NULL));
  assert_string_equal(v, "41.5");
  free(v);
  v = chomp(redis_cli_sock(sock, "EXISTS", "cr:{kv:default}:v:n", NULL));
  assert_string_equal(v, "0");
  free(v);

  /* list: prefix, limit, cursor paging across 3 pages; getMany. */
  step_ok(s.port, "/kvt?t=list");
  {
    xent_t e[64];
    char *buf;
    int n = xrange(sock, "cr:{kv:ls}:changes", e, 64, &buf);
    assert_int_equal(n, 27);
    free(buf);
  }

  /* ttl: gone after it expires (and from list); a put without ttl makes a value permanent. */
  step_ok(s.port, "/kvt?t=ttl1");
  v = chomp(redis_cli_sock(sock, "PTTL", "cr:{kv:ttl}:v:t", NULL));
  if (atoi(v) <= 0 || atoi(v) > 1000) fail_msg("PTTL of a ttl=1 value: %s", v);
  free(v);
  v = chomp(redis_cli_sock(sock, "PTTL", "cr:{kv:ttl}:v:keep", NULL));
  assert_string_equal(v, "-1");
  free(v);
  sleep_ms(1500);
  step_ok(s.port, "/kvt?t=ttl2");

  /* Programming errors raise; a value over --kv-max-value is nil, "value too large". */
  step_ok(s.port, "/kvt?t=errors");
  {
    xent_t e[8];
    char *buf;
    int n = xrange(sock, "cr:{kv:err}:changes", e, 8, &buf);
    assert_int_equal(n, 1); /* only the value that fit */
    expect_field(e, 0, "key", "fits", "err changes");
    free(buf);
  }

  /* An uncaught programming error: 500, and the log names the argument and the caller. */
  http_resp_t r;
  kget(s.port, "/kvt?t=raise", &r);
  assert_int_equal(r.status, 500);
  assert_null(strstr(r.body, "bad argument"));
  http_free(&r);
  srv_expect_errors(&s, 1);
  assert_int_equal(srv_log_wait(&s, 1, 3000, "\"level\":\"error\"",
                                "bad argument #1 to 'kv.get' (string key expected, got number)", NULL),
                   1);
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", "kvt.lua:", "kv.get", NULL), 1);

  assert_int_equal(srv_stop(&s), 0);
}

/* --- calls from coroutines, pcall and init ------------------------------------------------------ */

static void kv_contexts(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "co.lua",
            "local kv = require 'crescent.kv'\n"
            "return function()\n"
            "  local f = coroutine.wrap(function(a)\n"
            "    local v1 = kv.put('co', a)\n"
            "    local x = coroutine.yield(v1)\n"
            "    return kv.get('co') .. x\n"
            "  end)\n"
            "  local ver = f('from-co')\n"
            "  local s = f('!')\n"
            "  local ok, n = pcall(kv.incr, 'pc', 5)\n"
            "  local ok2, n2 = xpcall(function() return kv.incr('pc', 1) end, function(e) return 'handler:' .. tostring(e) end)\n"
            "  local co = coroutine.create(function()\n"
            "    local okc, c1 = pcall(function() return kv.incr('pc') end)\n"
            "    coroutine.yield(c1)\n"
            "    local inner = coroutine.wrap(function() return kv.get('co') end)\n"
            "    local okp, perr = pcall(kv.get, 42)\n"
            "    return inner() .. ':' .. tostring(okp) .. ':' .. tostring(perr):match(\"bad argument #1 to 'kv.get'\")\n"
            "  end)\n"
            "  local r1 = { coroutine.resume(co) }\n"
            "  local r2 = { coroutine.resume(co) }\n"
            "  return table.concat({ tostring(ver), s, tostring(ok), tostring(n), tostring(ok2), tostring(n2),\n"
            "    tostring(r1[1]), tostring(r1[2]), tostring(r2[1]), tostring(r2[2]), coroutine.status(co) }, '|')\n"
            "end\n");
  srv_write(&s, "initcall.lua",
            "local kv = require 'crescent.kv'\n"
            "local v = kv.get('x')\n"
            "return function() return 'never' end\n");
  srv_write(&s, "initpcall.lua",
            "local kv = require 'crescent.kv'\n"
            "local ok, err = pcall(kv.get, 'x')\n"
            "return function() return tostring(ok) .. '|' .. tostring(err) end\n");
  srv_start(&s, "--workers 1");

  char *b = get_200(s.port, "/co");
  assert_string_equal(b, "1|from-co!|true|5|true|6|true|7|true|from-co:false:bad argument #1 to 'kv.get'|dead");
  free(b);
  b = get_200(s.port, "/co"); /* warm: the same again, on values now present */
  assert_string_equal(b, "5|from-co!|true|12|true|13|true|14|true|from-co:false:bad argument #1 to 'kv.get'|dead");
  free(b);

  /* A call during init raises: unprotected, the function fails to load. */
  http_resp_t r;
  kget(s.port, "/initcall", &r);
  if (r.status != 503) fail_msg("GET /initcall: got %d '%s', want 503", r.status, r.body);
  assert_non_null(strstr(r.body, "\"error\":\"function failed to load\""));
  http_free(&r);
  srv_expect_errors(&s, 1);
  if (srv_log_wait(&s, 1, 3000, "\"level\":\"error\"", "initcall.lua", "not during init", NULL) != 1) {
    char *log = srv_log(&s);
    fail_msg("want one error line naming initcall.lua and 'not during init'; the log:\n%s", log);
  }
  /* Protected, the init goes on with the error message. */
  b = get_200(s.port, "/initpcall");
  if (strncmp(b, "false|", 6) != 0 || !strstr(b, "not during init")) fail_msg("/initpcall: %s", b);
  free(b);

  assert_int_equal(srv_stop(&s), 0);
}

/* --- many invocations on one worker ------------------------------------------------------------- */

static void kv_interleave(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "inc.lua",
            "local kv = require 'crescent.kv'\n"
            "return function(event)\n"
            "  local id, last, seen = event.query.id, nil, {}\n"
            "  for i = 1, 20 do\n"
            "    local v, err = kv.incr('own:' .. id)\n"
            "    if not v then return { status = 502, body = 'own: ' .. tostring(err) } end\n"
            "    last = v\n"
            "    local sv, serr = kv.incr('shared')\n"
            "    if not sv then return { status = 502, body = 'shared: ' .. tostring(serr) } end\n"
            "    seen[i] = string.format('%d', sv)\n"
            "  end\n"
            "  return string.format('%d', last) .. '|' .. table.concat(seen, ',')\n"
            "end\n");
  srv_write(&s, "read.lua",
            "local kv = require 'crescent.kv'\n"
            "return function()\n"
            "  local out = { tostring(kv.get('shared')) }\n"
            "  for i = 0, 9 do out[#out + 1] = tostring(kv.get('own:' .. i)) end\n"
            "  return table.concat(out, ',')\n"
            "end\n");
  srv_start(&s, "--workers 1");

  enum { N = 10 };
  int fds[N];
  for (int i = 0; i < N; i++) {
    fds[i] = http_connect(s.port);
    assert_true(fds[i] >= 0);
  }
  for (int i = 0; i < N; i++) {
    char rq[160];
    snprintf(rq, sizeof rq, "GET /inc?id=%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
    http_sends(fds[i], rq);
  }
  char seen[201] = {0};
  int interleaved = 0;
  for (int i = 0; i < N; i++) {
    http_resp_t r;
    if (http_read(fds[i], &r, 0, 15000) != 0) fail_msg("request %d: no response", i);
    if (r.status != 200) fail_msg("request %d: %d %s", i, r.status, r.body);
    char *f[3];
    assert_int_equal(split_fields(r.body, f, 3), 2);
    assert_string_equal(f[0], "20");
    /* The shared counter values this request saw: 20 distinct values in 1..200. */
    int prev = 0, count = 0;
    for (char *p = f[1]; *p;) {
      int x = atoi(p);
      if (x < 1 || x > 200 || seen[x]) fail_msg("request %d: shared value %d out of range or seen twice", i, x);
      seen[x] = 1;
      if (prev && x != prev + 1) interleaved = 1;
      prev = x;
      count++;
      p = strchr(p, ',');
      if (!p) break;
      p++;
    }
    assert_int_equal(count, 20);
    http_free(&r);
    http_close(fds[i]);
  }
  /* One worker, yet the invocations ran interleaved: each yielded at its kv calls. */
  assert_true(interleaved);
  char *b = get_200(s.port, "/read");
  assert_string_equal(b, "200,20,20,20,20,20,20,20,20,20,20");
  free(b);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- storage module ----------------------------------------------------------------------------- */

static const char storage_fn[] =
    "local storage = require 'crescent.storage'\n" LUA_CHECKS
    "return function()\n"
    "  local bytes = {}\n"
    "  for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end\n"
    "  local data = table.concat(bytes)\n"
    "  local meta = { owner = 'ana', ['x-y'] = '1 2' }\n"
    "  local info = storage.put('pics', 'a/b.bin', data, { contentType = 'image/png', metadata = meta })\n"
    "  truthy('put info', type(info) == 'table' and info.size == 256 and type(info.etag) == 'string'\n"
    "    and info.etag:match('^\".+\"$') ~= nil, info)\n"
    "  local etag = info and info.etag or '?'\n"
    "  local got = pack(storage.get('pics', 'a/b.bin'))\n"
    "  eq('get count', got.n, 2)\n"
    "  truthy('get data: the same 256 bytes', got[1] == data, got[1] and #got[1])\n"
    "  local gi = got[2] or {}\n"
    "  eq('get info', { gi.key, gi.size, gi.etag, gi.contentType }, { 'a/b.bin', 256, etag, 'image/png' })\n"
    "  eq('get metadata', gi.metadata, meta)\n"
    "  truthy('lastModified in ms', type(gi.lastModified) == 'number'\n"
    "    and math.abs(gi.lastModified - os.time() * 1000) < 60000, gi.lastModified)\n"
    "  eq('head', pack(storage.head('pics', 'a/b.bin')), { n = 1, { key = 'a/b.bin', size = 256, etag = etag,\n"
    "    contentType = 'image/png', metadata = meta, lastModified = gi.lastModified } })\n"
    "  local again = storage.put('pics', 'a/b.bin', data, { contentType = 'image/png', metadata = meta })\n"
    "  eq('etag stable for the same data', again and again.etag, etag)\n"
    "  local other = storage.put('pics', 'a/c.txt', 'hello', { contentType = 'text/plain' }) or {}\n"
    "  truthy('etag differs for other data', other.etag and other.etag ~= etag, other)\n"
    "  local empty = storage.put('pics', 'b.txt', '') or {}\n"
    "  eq('empty object', empty.size, 0)\n"
    "  local eh = storage.head('pics', 'b.txt') or {}\n"
    "  eq('default content type', eh.contentType, 'application/octet-stream')\n"
    "  eq('no metadata', eh.metadata, {})\n"
    "  eq('empty object reads back', pack(storage.get('pics', 'b.txt'))[1], '')\n"
    "  eq('get missing', pack(storage.get('pics', 'nope')), { n = 1 })\n"
    "  eq('head missing', pack(storage.head('pics', 'nope')), { n = 1 })\n"
    "  eq('get in another bucket', pack(storage.get('other', 'a/b.bin')), { n = 1 })\n"
    "  local all = storage.list('pics') or { items = {} }\n"
    "  local keys = {}\n"
    "  for _, it in ipairs(all.items) do keys[#keys + 1] = it.key end\n"
    "  eq('list keys', table.concat(keys, ','), 'a/b.bin,a/c.txt,b.txt')\n"
    "  eq('list cursor', all.cursor, nil)\n"
    "  local i1 = all.items[1] or {}\n"
    "  eq('list item', { i1.key, i1.size, i1.etag, i1.contentType, i1.lastModified },\n"
    "     { 'a/b.bin', 256, etag, 'image/png', (storage.head('pics', 'a/b.bin') or {}).lastModified })\n"
    "  eq('list prefix', #(storage.list('pics', { prefix = 'a/' }) or { items = {} }).items, 2)\n"
    "  local p1 = storage.list('pics', { limit = 2 }) or {}\n"
    "  eq('page 1', { #(p1.items or {}), p1.cursor }, { 2, 'a/c.txt' })\n"
    "  local p2 = storage.list('pics', { limit = 2, cursor = p1.cursor }) or {}\n"
    "  eq('page 2', { #(p2.items or {}), p2.items and p2.items[1] and p2.items[1].key, p2.cursor }, { 1, 'b.txt' })\n"
    "  eq('object too large', pack(storage.put('pics', 'big', string.rep('x', 1025))), { n = 2, nil, 'object too large' })\n"
    "  eq('too large not stored', pack(storage.head('pics', 'big')), { n = 1 })\n"
    "  local fits = storage.put('pics', 'fits', string.rep('x', 1024)) or {}\n"
    "  eq('largest object fits', fits.size, 1024)\n"
    "  eq('delete', pack(storage.delete('pics', 'a/c.txt')), { n = 1, true })\n"
    "  eq('delete again', pack(storage.delete('pics', 'a/c.txt')), { n = 1, false })\n"
    "  eq('deleted', pack(storage.get('pics', 'a/c.txt')), { n = 1 })\n"
    "  for _, k in ipairs({ '', 'a/../b', '/x', 'a//b', './a', 'a/', 'x\\ny' }) do\n"
    "    raises('put ' .. show(k), \"bad argument #2 to 'storage.put'\", storage.put, 'pics', k, 'd')\n"
    "    raises('get ' .. show(k), \"bad argument #2 to 'storage.get'\", storage.get, 'pics', k)\n"
    "    raises('delete ' .. show(k), \"bad argument #2 to 'storage.delete'\", storage.delete, 'pics', k)\n"
    "  end\n"
    "  raises('bad bucket', \"bad argument #1 to 'storage.put'\", storage.put, 'Pics!', 'k', 'd')\n"
    "  raises('data not a string', \"bad argument #3 to 'storage.put'\", storage.put, 'pics', 'k', 42)\n"
    "  raises('metadata not strings', \"bad argument #4 to 'storage.put'\", storage.put, 'pics', 'k', 'd', { metadata = { n = 1 } })\n"
    "  return verdict() .. '|' .. etag .. '|' .. tostring(other.etag) .. '|' .. tostring(empty.etag) .. '|' .. tostring(fits.etag)\n"
    "end\n";

static void storage_module(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "st.lua", storage_fn);
  srv_start(&s, "--workers 1 --max-object 1k");
  char sock[400];
  srv_redis_sock(&s, sock, sizeof sock);

  char *b = get_200(s.port, "/st");
  char *f[6];
  int nf = split_fields(b, f, 6);
  if (nf != 5 || strcmp(f[0], "ok") != 0) fail_msg("/st: %s", f[0]);
  const char *e_bin = f[1], *e_txt = f[2], *e_empty = f[3], *e_fits = f[4];

  /* The object as stored: binary-safe. */
  char *v = chomp(redis_cli_sock(sock, "HSTRLEN", "cr:{st:pics}:o:a/b.bin", "data", NULL));
  assert_string_equal(v, "256");
  free(v);

  /* One event per put and delete, in order; none for the refused put. */
  struct {
    const char *event, *key, *size, *etag, *ct;
  } want[] = {
      {"put", "a/b.bin", "256", e_bin, "image/png"},
      {"put", "a/b.bin", "256", e_bin, "image/png"},
      {"put", "a/c.txt", "5", e_txt, "text/plain"},
      {"put", "b.txt", "0", e_empty, "application/octet-stream"},
      {"put", "fits", "1024", e_fits, "application/octet-stream"},
      {"delete", "a/c.txt", "5", e_txt, "text/plain"},
  };
  xent_t e[16];
  char *buf;
  int n = xrange(sock, "cr:{st:pics}:events", e, 16, &buf);
  if (n != 6) fail_msg("%d events, want 6:\n%s", n, buf);
  for (int i = 0; i < 6; i++) {
    expect_field(e, i, "event", want[i].event, "pics events");
    expect_field(e, i, "bucket", "pics", "pics events");
    expect_field(e, i, "key", want[i].key, "pics events");
    expect_field(e, i, "size", want[i].size, "pics events");
    expect_field(e, i, "etag", want[i].etag, "pics events");
    expect_field(e, i, "contentType", want[i].ct, "pics events");
    check_time_field(&e[i], "pics events");
  }
  free(buf);
  free(b);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- the HTTP storage API ----------------------------------------------------------------------- */

static void storage_http(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "echo.lua", "return function(event) return tostring(#event.body) end\n");
  srv_start(&s, "--workers 2 --max-body 1m");
  http_resp_t r;
  char etag[128], hdr[256];

  /* PUT: Content-Type and X-Meta-* kept. */
  req(s.port, "PUT", "/_/storage/docs/notes/a.txt", "Content-Type: text/markdown\r\nX-Meta-Owner: ana\r\n",
      "hello world", 11, &r);
  if (r.status != 200) fail_msg("PUT: %d %s", r.status, r.body);
  assert_non_null(http_header(&r, "etag"));
  snprintf(etag, sizeof etag, "%s", http_header(&r, "etag"));
  assert_true(strlen(etag) > 2 && etag[0] == '"' && etag[strlen(etag) - 1] == '"');
  assert_non_null(strstr(r.body, "\"size\":11"));
  {
    char bare[128];
    snprintf(bare, sizeof bare, "%.*s", (int)strlen(etag) - 2, etag + 1);
    assert_non_null(strstr(r.body, bare)); /* the body's etag is the header's */
  }
  http_free(&r);
  req(s.port, "PUT", "/_/storage/docs/other/b.txt", "Content-Type: text/plain\r\n", "bee", 3, &r);
  assert_int_equal(r.status, 200);
  http_free(&r);

  /* GET: the same bytes and headers. */
  kget(s.port, "/_/storage/docs/notes/a.txt", &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, 11);
  assert_string_equal(r.body, "hello world");
  assert_string_equal(http_header(&r, "content-type"), "text/markdown");
  assert_string_equal(http_header(&r, "etag"), etag);
  assert_string_equal(http_header(&r, "x-meta-owner"), "ana");
  assert_non_null(http_header(&r, "last-modified"));
  http_free(&r);

  /* If-None-Match with the etag: 304 without a body; another etag: 200. */
  snprintf(hdr, sizeof hdr, "If-None-Match: %s\r\n", etag);
  req(s.port, "GET", "/_/storage/docs/notes/a.txt", hdr, NULL, 0, &r);
  assert_int_equal(r.status, 304);
  assert_int_equal(r.body_len, 0);
  assert_string_equal(http_header(&r, "etag"), etag);
  http_free(&r);
  req(s.port, "GET", "/_/storage/docs/notes/a.txt", "If-None-Match: \"nope\"\r\n", NULL, 0, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "hello world");
  http_free(&r);

  /* HEAD: the headers, Content-Length the size, and no body bytes at all: the next response
   * on the same connection starts right after the HEAD's headers. */
  {
    int fd = http_connect(s.port);
    assert_true(fd >= 0);
    http_sends(fd, "HEAD /_/storage/docs/notes/a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    http_resp_t h;
    if (http_read(fd, &h, 1, 10000) != 0) fail_msg("HEAD: no response");
    assert_int_equal(h.status, 200);
    assert_string_equal(http_header(&h, "content-length"), "11");
    assert_string_equal(http_header(&h, "etag"), etag);
    assert_string_equal(http_header(&h, "content-type"), "text/markdown");
    assert_string_equal(http_header(&h, "x-meta-owner"), "ana");
    http_free(&h);
    http_sends(fd, "GET /_/storage/docs/other/b.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    if (http_read(fd, &h, 0, 10000) != 0) fail_msg("GET after HEAD: no response");
    if (h.status != 200 || strcmp(h.body, "bee") != 0)
      fail_msg("GET after HEAD on one connection: %d '%s' (HEAD sent body bytes?)", h.status, h.body);
    http_free(&h);
    http_close(fd);
  }

  /* List, with and without a prefix. */
  kget(s.port, "/_/storage/docs?prefix=notes/", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(http_header(&r, "content-type"), "application/json");
  assert_non_null(strstr(r.body, "\"items\":["));
  assert_non_null(strstr(r.body, "\"key\":\"notes/a.txt\""));
  assert_non_null(strstr(r.body, "\"size\":11"));
  assert_null(strstr(r.body, "other/b.txt"));
  http_free(&r);
  kget(s.port, "/_/storage/docs", &r);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "\"key\":\"notes/a.txt\""));
  assert_non_null(strstr(r.body, "\"key\":\"other/b.txt\""));
  http_free(&r);
  kget(s.port, "/_/storage/empty-bucket", &r);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "\"items\":[]"));
  http_free(&r);
  /* ?limit=: 1 to 1000, else 400 naming it (not a 500 from storage.list raising). */
  kget(s.port, "/_/storage/docs?limit=1", &r);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "\"cursor\":\"notes/a.txt\""));
  assert_null(strstr(r.body, "other/b.txt"));
  http_free(&r);
  static const char *bad_limits[] = {"5000", "0", "-1", "2.5", "abc", "", "nan", "inf"};
  for (size_t i = 0; i < sizeof bad_limits / sizeof bad_limits[0]; i++) {
    char path[64];
    snprintf(path, sizeof path, "/_/storage/docs?limit=%s", bad_limits[i]);
    kget(s.port, path, &r);
    if (r.status != 400 || !strstr(r.body, "limit"))
      fail_msg("GET %s: %d '%s', want 400 naming the limit", path, r.status, r.body);
    http_free(&r);
  }

  /* A 2 MB binary object, over --max-body (which still holds for functions). */
  size_t big_len = 2u * 1024 * 1024;
  char *big = malloc(big_len);
  uint32_t x = 12345;
  for (size_t i = 0; i < big_len; i++) {
    x = x * 1103515245u + 12345u;
    big[i] = (i % 97 == 0) ? '\0' : (char)(x >> 24);
  }
  req(s.port, "PUT", "/_/storage/docs/blob.bin", "Content-Type: application/octet-stream\r\n", big, big_len, &r);
  if (r.status != 200) fail_msg("PUT 2 MB: %d %s", r.status, r.body);
  assert_non_null(strstr(r.body, "\"size\":2097152"));
  http_free(&r);
  kget(s.port, "/_/storage/docs/blob.bin", &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, big_len);
  assert_true(memcmp(r.body, big, big_len) == 0);
  assert_string_equal(http_header(&r, "content-type"), "application/octet-stream");
  http_free(&r);
  req(s.port, "POST", "/echo", NULL, big, big_len, &r);
  assert_int_equal(r.status, 413);
  http_free(&r);
  free(big);

  /* Bad names and methods. */
  req(s.port, "PUT", "/_/storage/docs/a//b", NULL, "x", 1, &r);
  assert_int_equal(r.status, 400);
  http_free(&r);
  req(s.port, "PUT", "/_/storage/Bad_Bucket/x", NULL, "x", 1, &r);
  assert_int_equal(r.status, 400);
  http_free(&r);
  req(s.port, "POST", "/_/storage/docs/x", NULL, "x", 1, &r);
  assert_int_equal(r.status, 405);
  http_free(&r);

  /* DELETE: 204, then 404, and the object is gone. */
  req(s.port, "DELETE", "/_/storage/docs/notes/a.txt", NULL, NULL, 0, &r);
  assert_int_equal(r.status, 204);
  assert_int_equal(r.body_len, 0);
  http_free(&r);
  req(s.port, "DELETE", "/_/storage/docs/notes/a.txt", NULL, NULL, 0, &r);
  assert_int_equal(r.status, 404);
  http_free(&r);
  kget(s.port, "/_/storage/docs/notes/a.txt", &r);
  assert_int_equal(r.status, 404);
  http_free(&r);

  /* The events of all this, in the bucket's stream. */
  char sock[400];
  srv_redis_sock(&s, sock, sizeof sock);
  xent_t e[16];
  char *buf;
  int n = xrange(sock, "cr:{st:docs}:events", e, 16, &buf);
  if (n != 4) fail_msg("%d events in docs, want 4:\n%s", n, buf);
  expect_field(e, 0, "key", "notes/a.txt", "docs events");
  expect_field(e, 0, "contentType", "text/markdown", "docs events");
  expect_field(e, 0, "etag", etag, "docs events");
  expect_field(e, 2, "key", "blob.bin", "docs events");
  expect_field(e, 2, "size", "2097152", "docs events");
  expect_field(e, 3, "event", "delete", "docs events");
  expect_field(e, 3, "key", "notes/a.txt", "docs events");
  free(buf);

  assert_int_equal(srv_stop(&s), 0);
}

/* Redis' total_net_output_bytes: what it has sent to all its clients so far. */
static long long redis_out_bytes(const char *sock) {
  char *out = redis_cli_sock(sock, "INFO", "stats", NULL);
  const char *p = strstr(out, "total_net_output_bytes:");
  if (!p) fail_msg("INFO stats without total_net_output_bytes:\n%s", out);
  long long n = atoll(p + strlen("total_net_output_bytes:"));
  free(out);
  return n;
}

/* HEAD and a matching If-None-Match answer from the object's info: its bytes are not read from
 * Redis (measured by what Redis sends), and only a GET that sends them reads them. */
static void storage_http_reads(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_start(&s, "--workers 1");
  char sock[400], etag[128], hdr[256];
  srv_redis_sock(&s, sock, sizeof sock);
  size_t big_len = 2u * 1024 * 1024;
  char *big = malloc(big_len);
  for (size_t i = 0; i < big_len; i++) big[i] = (char)(i * 7);
  http_resp_t r;
  req(s.port, "PUT", "/_/storage/media/big.bin", "Content-Type: video/mp4\r\n", big, big_len, &r);
  if (r.status != 200) fail_msg("PUT: %d %s", r.status, r.body);
  snprintf(etag, sizeof etag, "%s", http_header(&r, "etag"));
  http_free(&r);

  /* HEAD: the headers and the size, no body, and Redis did not send the object. */
  long long b0 = redis_out_bytes(sock);
  int fd = http_connect(s.port);
  assert_true(fd >= 0);
  http_sends(fd, "HEAD /_/storage/media/big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
  if (http_read(fd, &r, 1, 10000) != 0) fail_msg("HEAD: no response");
  assert_int_equal(r.status, 200);
  assert_string_equal(http_header(&r, "content-length"), "2097152");
  assert_string_equal(http_header(&r, "etag"), etag);
  assert_string_equal(http_header(&r, "content-type"), "video/mp4");
  http_free(&r);
  http_sends(fd, "HEAD /_/storage/media/nope HTTP/1.1\r\nHost: x\r\n\r\n");
  if (http_read(fd, &r, 1, 10000) != 0) fail_msg("HEAD of a missing object: no response");
  assert_int_equal(r.status, 404);
  http_free(&r);
  http_close(fd);
  long long b1 = redis_out_bytes(sock);
  if (b1 - b0 > 256 * 1024) fail_msg("HEAD read %lld bytes from Redis: the object itself", b1 - b0);

  /* If-None-Match with its etag: 304, and the object stays in Redis. */
  snprintf(hdr, sizeof hdr, "If-None-Match: %s\r\n", etag);
  req(s.port, "GET", "/_/storage/media/big.bin", hdr, NULL, 0, &r);
  assert_int_equal(r.status, 304);
  assert_string_equal(http_header(&r, "etag"), etag);
  http_free(&r);
  long long b2 = redis_out_bytes(sock);
  if (b2 - b1 > 256 * 1024) fail_msg("a 304 read %lld bytes from Redis: the object itself", b2 - b1);

  /* Another etag, or none: the object, read from Redis (which shows the measure works). */
  req(s.port, "GET", "/_/storage/media/big.bin", "If-None-Match: \"old\"\r\n", NULL, 0, &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, big_len);
  assert_true(memcmp(r.body, big, big_len) == 0);
  assert_string_equal(http_header(&r, "etag"), etag);
  http_free(&r);
  long long b3 = redis_out_bytes(sock);
  if (b3 - b2 < (long long)big_len) fail_msg("a 200 read only %lld bytes from Redis", b3 - b2);
  kget(s.port, "/_/storage/media/big.bin", &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, big_len);
  http_free(&r);
  free(big);
  assert_int_equal(srv_stop(&s), 0);
}

static void storage_auth(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_start(&s, "--workers 1 --admin-token s3cret");
  http_resp_t r;
  req(s.port, "PUT", "/_/storage/docs/a.txt", NULL, "data", 4, &r);
  assert_int_equal(r.status, 401);
  assert_non_null(http_header(&r, "www-authenticate"));
  http_free(&r);
  req(s.port, "PUT", "/_/storage/docs/a.txt", "Authorization: Bearer nope\r\n", "data", 4, &r);
  assert_int_equal(r.status, 401);
  http_free(&r);
  req(s.port, "PUT", "/_/storage/docs/a.txt", "Authorization: Bearer s3cret\r\n", "data", 4, &r);
  assert_int_equal(r.status, 200);
  http_free(&r);
  req(s.port, "GET", "/_/storage/docs/a.txt", "Authorization: Bearer s3cret\r\n", NULL, 0, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "data");
  http_free(&r);
  /* With a token configured, loopback alone is not enough. */
  kget(s.port, "/_/storage/docs/a.txt", &r);
  assert_int_equal(r.status, 401);
  assert_null(strstr(r.body, "data"));
  http_free(&r);
  kget(s.port, "/_/storage/docs", &r);
  assert_int_equal(r.status, 401);
  http_free(&r);
  req(s.port, "DELETE", "/_/storage/docs/a.txt", "Authorization: Bearer S3CRET\r\n", NULL, 0, &r);
  assert_int_equal(r.status, 401);
  http_free(&r);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- queue -------------------------------------------------------------------------------------- */

static void queue_send(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "q.lua",
            "local queue = require 'crescent.queue'\n" LUA_CHECKS
            "return function(event)\n"
            "  if event.query.t == 'delay' then\n"
            "    local id, err = queue.send('later', 'soon', { delay = 1 })\n"
            "    return tostring(id) .. '|' .. tostring(err)\n"
            "  end\n"
            "  local id1 = queue.send('jobs', 'hello')\n"
            "  local id2 = queue.send('jobs', { n = 1, list = { 1, 2 } })\n"
            "  local ids = queue.sendBatch('jobs', { 'a', { b = 2 }, 'c' }) or {}\n"
            "  eq('batch ids', #ids, 3)\n"
            "  for _, id in ipairs({ id1, id2, ids[1], ids[2], ids[3] }) do\n"
            "    truthy('stream id', type(id) == 'string' and id:match('^%d+%-%d+$'), id)\n"
            "  end\n"
            "  eq('empty batch', pack(queue.sendBatch('jobs', {})), { n = 1, {} })\n"
            "  raises('bad name', \"bad argument #1 to 'queue.send'\", queue.send, 'no spaces', 'x')\n"
            "  raises('bad body', \"bad argument #2 to 'queue.send'\", queue.send, 'jobs', 42)\n"
            "  raises('bad delay', \"bad argument #3 to 'queue.send'\", queue.send, 'jobs', 'x', { delay = -1 })\n"
            "  raises('NaN delay', \"bad argument #3 to 'queue.send' (delay must be\", queue.send, 'jobs', 'x', { delay = 0 / 0 })\n"
            "  raises('NaN batch delay', \"bad argument #3 to 'queue.sendBatch'\", queue.sendBatch, 'jobs', { 'x' }, { delay = 0 / 0 })\n"
            "  return verdict() .. '|' .. table.concat({ tostring(id1), tostring(id2), tostring(ids[1]),\n"
            "    tostring(ids[2]), tostring(ids[3]) }, '|')\n"
            "end\n");
  srv_start(&s, "--workers 2");
  char sock[400];
  srv_redis_sock(&s, sock, sizeof sock);

  char *b = get_200(s.port, "/q");
  char *f[8];
  int nf = split_fields(b, f, 8);
  if (nf != 6 || strcmp(f[0], "ok") != 0) fail_msg("/q: %s", f[0]);
  xent_t e[16];
  char *buf;
  int n = xrange(sock, "cr:{q:jobs}:s", e, 16, &buf);
  if (n != 5) fail_msg("%d messages in jobs, want 5:\n%s", n, buf);
  static const char *types[] = {"s", "j", "s", "j", "s"};
  for (int i = 0; i < 5; i++) {
    assert_string_equal(e[i].id, f[i + 1]); /* the ids send returned, in order */
    expect_field(e, i, "type", types[i], "jobs");
    check_time_field(&e[i], "jobs");
    assert_null(xf(&e[i], "id"));
  }
  expect_field(e, 0, "body", "hello", "jobs");
  const char *body = xf(&e[1], "body");
  if (!strstr(body, "\"n\":1") || !strstr(body, "\"list\":[1,2]") || body[0] != '{')
    fail_msg("a table body is JSON: %s", body);
  expect_field(e, 2, "body", "a", "jobs");
  expect_field(e, 3, "body", "{\"b\":2}", "jobs");
  expect_field(e, 4, "body", "c", "jobs");
  free(buf);
  free(b);

  /* delay = 1: parked in the delayed set, in the stream once due, with its delayed-N id. */
  long long t0 = now_ms();
  b = get_200(s.port, "/q?t=delay");
  assert_string_equal(b, "delayed-1|nil");
  free(b);
  char *v = chomp(redis_cli_sock(sock, "XLEN", "cr:{q:later}:s", NULL));
  assert_string_equal(v, "0");
  free(v);
  v = chomp(redis_cli_sock(sock, "ZCARD", "cr:{q:later}:d", NULL));
  assert_string_equal(v, "1");
  free(v);
  v = chomp(redis_cli_sock(sock, "SISMEMBER", "cr:queues", "later", NULL));
  assert_string_equal(v, "1");
  free(v);
  long long t_in = -1;
  while (now_ms() - t0 < 6000) {
    v = chomp(redis_cli_sock(sock, "XLEN", "cr:{q:later}:s", NULL));
    int len = atoi(v);
    free(v);
    if (len > 0) {
      t_in = now_ms() - t0;
      break;
    }
    sleep_ms(50);
  }
  if (t_in < 0) fail_msg("the delayed message did not reach the stream within 6 s");
  if (t_in < 900) fail_msg("the delayed message was in the stream after %lld ms, before its 1 s delay", t_in);
  n = xrange(sock, "cr:{q:later}:s", e, 16, &buf);
  assert_int_equal(n, 1);
  expect_field(e, 0, "type", "s", "later");
  expect_field(e, 0, "body", "soon", "later");
  expect_field(e, 0, "id", "delayed-1", "later");
  check_time_field(&e[0], "later");
  free(buf);
  v = chomp(redis_cli_sock(sock, "ZCARD", "cr:{q:later}:d", NULL));
  assert_string_equal(v, "0");
  free(v);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- Redis loses the scripts ---------------------------------------------------------------------- */

/* SCRIPT FLUSH empties Redis' script cache under the running server: calls go on working (the
 * EVALSHA answered NOSCRIPT is sent again after the scripts are loaded again), also for several
 * calls that meet the empty cache at once, with one reload each time. */
static void scripts_flushed(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "all.lua",
            "local kv = require 'crescent.kv'\n"
            "local storage = require 'crescent.storage'\n"
            "local queue = require 'crescent.queue'\n"
            "return function()\n"
            "  local n, err = kv.incr('n')\n"
            "  if not n then return 'kv.incr: ' .. tostring(err) end\n"
            "  local ver, perr = kv.put('k', n)\n"
            "  if not ver then return 'kv.put: ' .. tostring(perr) end\n"
            "  local page, lerr = kv.list('')\n"
            "  if not page then return 'kv.list: ' .. tostring(lerr) end\n"
            "  local info, serr = storage.put('b', 'k', 'data')\n"
            "  if not info then return 'storage.put: ' .. tostring(serr) end\n"
            "  local id, qerr = queue.send('q', 'm')\n"
            "  if not id then return 'queue.send: ' .. tostring(qerr) end\n"
            "  return string.format('%d', n)\n"
            "end\n");
  srv_start(&s, "--workers 1");
  char sock[400];
  srv_redis_sock(&s, sock, sizeof sock);
  char *b = get_200(s.port, "/all");
  assert_string_equal(b, "1");
  free(b);

  char *v = chomp(redis_cli_sock(sock, "SCRIPT", "FLUSH", NULL));
  assert_string_equal(v, "OK");
  free(v);
  b = get_200(s.port, "/all");
  assert_string_equal(b, "2");
  free(b);
  assert_int_equal(srv_log_wait(&s, 1, 3000, "\"level\":\"warn\"", "loading them again", NULL), 1);
  b = get_200(s.port, "/all"); /* the scripts are back: no reload this time */
  assert_string_equal(b, "3");
  free(b);
  assert_int_equal(srv_log_count(&s, "loading them again", NULL), 1);

  /* Again, with several invocations meeting the empty cache at once. */
  v = chomp(redis_cli_sock(sock, "SCRIPT", "FLUSH", NULL));
  assert_string_equal(v, "OK");
  free(v);
  enum { N = 6 };
  int fds[N];
  for (int i = 0; i < N; i++) {
    fds[i] = http_connect(s.port);
    assert_true(fds[i] >= 0);
  }
  for (int i = 0; i < N; i++) http_sends(fds[i], "GET /all HTTP/1.1\r\nHost: x\r\n\r\n");
  int seen[N + 4] = {0};
  for (int i = 0; i < N; i++) {
    http_resp_t r;
    if (http_read(fds[i], &r, 0, 15000) != 0) fail_msg("request %d: no response", i);
    int n = atoi(r.body);
    if (r.status != 200 || n < 4 || n > 3 + N || seen[n]) fail_msg("request %d: %d '%s'", i, r.status, r.body);
    seen[n] = 1;
    http_free(&r);
    http_close(fds[i]);
  }
  assert_int_equal(srv_log_wait(&s, 2, 3000, "loading them again", NULL), 2);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- log ---------------------------------------------------------------------------------------- */

static void log_module(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "lg.lua",
            "local log = require 'crescent.log'\n"
            "return function(event, ctx)\n"
            "  log.info('hello', { user = 'ana' })\n"
            "  log.warn('careful', { n = 3 })\n"
            "  return ctx.requestId\n"
            "end\n");
  srv_start(&s, "--workers 1");
  http_resp_t r;
  kget(s.port, "/lg", &r);
  assert_int_equal(r.status, 200);
  const char *rid_h = http_header(&r, "x-request-id");
  assert_non_null(rid_h);
  assert_string_equal(rid_h, r.body);
  char rid[160];
  snprintf(rid, sizeof rid, "\"requestId\":\"%s\"", r.body);
  http_free(&r);
  int n = srv_log_wait(&s, 1, 3000, "\"level\":\"info\"", "\"msg\":\"hello\"", "\"user\":\"ana\"", rid,
                       "\"function\":\"lg\"", NULL);
  if (n != 1) {
    char *log = srv_log(&s);
    fail_msg("%d log lines with msg hello, user ana, %s and function lg; the log:\n%s", n, rid, log);
  }
  assert_int_equal(srv_log_wait(&s, 1, 3000, "\"level\":\"warn\"", "\"msg\":\"careful\"", "\"n\":3", rid,
                                "\"function\":\"lg\"", NULL),
                   1);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- Connection: close on a function that waits for Redis -------------------------------------- */

/* A request that asks the server to close after the response (Connection: close, or HTTP/1.0
 * without keep-alive) still gets its response when the function yields on a stdlib call. */
/* Pipelined requests that each wait on Redis, mixed with ones that do not,
 * sent in one write (and a second batch while the first is answered): all
 * answered, in order, none lost or parsed twice. */
static void pipelined_waiting_requests(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "inc.lua",
            "local kv = require 'crescent.kv'\n"
            "return function(event)\n"
            "  local v, err = kv.incr('p')\n"
            "  return event.query.i .. '=' .. tostring(v or err)\n"
            "end\n");
  srv_write(&s, "now.lua", "return function(event) return event.query.i .. '!' end\n");
  srv_start(&s, "--workers 1");
  enum { N = 600 };
  size_t cap = N * 64, len = 0;
  char *all = malloc(cap);
  assert_non_null(all);
  for (int i = 0; i < N; i++)
    len += (size_t)snprintf(all + len, cap - len, "GET /%s?i=%d HTTP/1.1\r\nHost: x\r\n\r\n",
                            i % 3 == 2 ? "now" : "inc", i);
  int fd = http_connect(s.port);
  assert_true(fd >= 0);
  size_t half = len / 2; /* mid-request: the rest arrives while the first half waits */
  http_send(fd, all, half);
  int incs = 0;
  for (int i = 0; i < N; i++) {
    if (i == 5) http_send(fd, all + half, len - half);
    http_resp_t r;
    if (http_read(fd, &r, 0, 10000) != 0) fail_msg("pipelined request %d: no response", i);
    assert_int_equal(r.status, 200);
    char want[64];
    if (i % 3 == 2) snprintf(want, sizeof want, "%d!", i);
    else snprintf(want, sizeof want, "%d=%d", i, ++incs);
    if (strcmp(r.body, want) != 0) fail_msg("pipelined request %d: got '%s', want '%s'", i, r.body, want);
    http_free(&r);
  }
  assert_int_equal(http_wait_closed(fd, 200), 0);
  http_close(fd);
  free(all);
  assert_int_equal(srv_stop(&s), 0);
}

static void connection_close(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "one.lua",
            "local kv = require 'crescent.kv'\n"
            "return function()\n"
            "  local v, err = kv.incr('n')\n"
            "  return 'n=' .. tostring(v or err)\n"
            "end\n");
  srv_start(&s, "--workers 1");
  pid_t before[4];
  assert_int_equal(srv_worker_pids(&s, before, 4), 1);
  char *b = get_200(s.port, "/one"); /* keep-alive: the baseline */
  assert_string_equal(b, "n=1");
  free(b);

  http_resp_t r;
  if (http_request(s.port, "GET", "/one", NULL, NULL, 0, &r) != 0)
    fail_msg("GET /one with Connection: close: no response (connection closed before the function answered)");
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "n=2");
  assert_true(r.closed);
  http_free(&r);

  int fd = http_connect(s.port);
  assert_true(fd >= 0);
  http_sends(fd, "GET /one HTTP/1.0\r\nHost: x\r\n\r\n");
  if (http_read(fd, &r, 0, 10000) != 0) fail_msg("GET /one over HTTP/1.0: no response");
  http_close(fd);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "n=3");
  http_free(&r);

  /* The storage API is such a function too. */
  if (http_request(s.port, "PUT", "/_/storage/b/k", NULL, "v", 1, &r) != 0)
    fail_msg("PUT /_/storage/b/k with Connection: close: no response");
  assert_int_equal(r.status, 200);
  http_free(&r);

  pid_t after[4];
  assert_int_equal(srv_worker_pids(&s, after, 4), 1);
  assert_int_equal(after[0], before[0]); /* no worker crashed */
  assert_int_equal(srv_log_count(&s, "killed by signal", NULL), 0);
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(kv_api),         cmocka_unit_test(kv_contexts),  cmocka_unit_test(kv_interleave),
      cmocka_unit_test(storage_module), cmocka_unit_test(storage_http), cmocka_unit_test(storage_auth),
      cmocka_unit_test(queue_send),     cmocka_unit_test(log_module),   cmocka_unit_test(connection_close), cmocka_unit_test(pipelined_waiting_requests),
      cmocka_unit_test(storage_http_reads), cmocka_unit_test(scripts_flushed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
