/* test_sec_stdlib.c - issue 10's stdlib and sandbox items, from real functions on the managed
 * Redis (--redis auto): what a function can make the stdlib do to Redis, to other functions and
 * to other namespaces.
 *   - item 6: a stdlib call that cannot yield (inside a C callback: gsub, sort, a coroutine
 *     resumed from one) is refused before anything is sent;
 *   - item 7: require() of a function's file fails, whatever the spelling or symlink;
 *   - item 8: the stdlib validates with the library as it was at boot, not the user's;
 *   - item 12: storage metadata and content types must be header-safe;
 *   - item 13: prefix listings bound their range right; keys and names are valid UTF-8;
 *   - values are encoded within their limit (a shared sub-table DAG fails fast).
 * Each step answers exactly what it saw; Redis is read back with redis-cli on the managed
 * server's socket, <root>/.crescent/redis.sock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* --- helpers ------------------------------------------------------------------------------------ */

static void req(int port, const char *method, const char *path, const char *headers, const char *body,
                size_t body_len, http_resp_t *r) {
  if (http_request_ka(port, method, path, headers, body, body_len, r, 15000) != 0)
    fail_msg("%s %s: no response", method, path);
}

/* GET that must answer 200 with exactly want. */
static void expect(int port, const char *path, const char *want) {
  http_resp_t r;
  req(port, "GET", path, NULL, NULL, 0, &r);
  if (r.status != 200 || strcmp(r.body, want) != 0)
    fail_msg("GET %s: got %d:\n%s\n--- want 200:\n%s", path, r.status, r.body, want);
  http_free(&r);
}

/* The output of redis-cli must be exactly want (a trailing newline dropped). */
static void rexpect(const char *want, const char *sock, ...) {
  const char *args[32];
  int n = 0;
  args[n++] = "-s";
  args[n++] = sock;
  va_list ap;
  va_start(ap, sock);
  const char *a;
  while (n < 31 && (a = va_arg(ap, const char *))) args[n++] = a;
  va_end(ap);
  args[n] = NULL;
  char *out = redis_cli(NULL, args);
  size_t len = strlen(out);
  while (len && out[len - 1] == '\n') out[--len] = '\0';
  if (strcmp(out, want) != 0) fail_msg("redis-cli %s %s: got '%s', want '%s'", args[2], args[3] ? args[3] : "", out, want);
  free(out);
}

/* Lua: line(name, ...) collects a line of every value (tostring, space-separated: r(...)), done() answers them. */
#define LUA_HEAD                                                                                  \
  "local out = {}\n"                                                                              \
  "local function r(...)\n"                                                                       \
  "  local parts = {}\n"                                                                          \
  "  for i = 1, select('#', ...) do parts[i] = tostring((select(i, ...))) end\n"                  \
  "  return table.concat(parts, ' ')\n"                                                           \
  "end\n"                                                                                         \
  "local function line(name, ...) out[#out + 1] = name .. ': ' .. r(...) end\n"                   \
  "local function done() local s = table.concat(out, '\\n') out = {} return s end\n"

/* --- item 6: calls that cannot yield ------------------------------------------------------------ */

static const char yields_fn[] =
    "local kv = require 'crescent.kv'\n"
    "local storage = require 'crescent.storage'\n"
    "local queue = require 'crescent.queue'\n" LUA_HEAD
    "return function(event)\n"
    "  local t = event.query.t\n"
    "  if t == 'gsub' then\n"
    "    local got = {}\n"
    "    string.gsub(string.rep('x', 10), 'x', function() got[#got + 1] = r(pcall(kv.incr, 'g')) end)\n"
    "    line('10 incr in gsub, first', got[1])\n"
    "    line('10 incr in gsub, last', got[10])\n"
    "    line('count', #got)\n"
    "    line('put in gsub', (string.gsub('y', 'y', function() return r(kv.put('p', string.rep('v', 1000))) end)))\n"
    "    line('get in gsub', (string.gsub('y', 'y', function() return r(kv.get('g')) end)))\n"
    "    local sorted = {3, 1, 2}\n"
    "    local in_sort\n"
    "    table.sort(sorted, function(a, b) in_sort = in_sort or r(kv.put('s', 'x')) return a < b end)\n"
    "    line('put in sort', in_sort)\n"
    "    local in_sort2\n"
    "    table.sort({2, 1}, function(a, b) in_sort2 = in_sort2 or r(storage.put('b', 'k', 'data')) return a < b end)\n"
    "    line('storage.put in sort', in_sort2)\n"
    "    line('storage.get in gsub', (string.gsub('y', 'y', function() return r(storage.get('b', 'k')) end)))\n"
    "    line('queue.send in gsub', (string.gsub('y', 'y', function() return r(queue.send('q', 'm')) end)))\n"
    "    line('delayed queue.send in gsub', (string.gsub('y', 'y', function() return r(queue.send('q', 'm', {delay = 5})) end)))\n"
    "    -- a user coroutine resumed from inside a gsub callback: its own frame could yield, the\n"
    "    -- callback's could not pass it on\n"
    "    local co = coroutine.create(function() return r(kv.incr('g')) end)\n"
    "    line('coroutine resumed in gsub', (string.gsub('y', 'y', function() return r(coroutine.resume(co)) end)))\n"
    "    local w = coroutine.wrap(function() return r(kv.incr('g')) end)\n"
    "    line('wrap called in sort', (function() local x table.sort({2, 1}, function(a, b) x = x or w() return a < b end) return x end)())\n"
    "    -- two levels: the middle coroutine resumes the inner one from a sort comparator\n"
    "    local outer = coroutine.wrap(function()\n"
    "      local inner = coroutine.create(function() return r(kv.incr('g')) end)\n"
    "      local x\n"
    "      table.sort({2, 1}, function(a, b) x = x or r(coroutine.resume(inner)) return a < b end)\n"
    "      return x\n"
    "    end)\n"
    "    line('nested, middle in sort', outer())\n"
    "    -- and a coroutine made inside the callback, resumed at top level later, can call\n"
    "    local later\n"
    "    string.gsub('y', 'y', function() later = coroutine.create(function() return kv.namespace('later').incr('ok') end) end)\n"
    "    line('made in gsub, resumed at top level', (select(2, coroutine.resume(later))))\n"
    "    line('isyieldable in gsub', (string.gsub('y', 'y', function() return tostring(coroutine.isyieldable()) end)))\n"
    "    return done()\n"
    "  end\n"
    "  -- the calls that are allowed still work, on the same connection\n"
    "  line('incr at top level', (kv.incr('g')))\n"
    "  line('in a coroutine', (coroutine.wrap(function() return kv.incr('g') end)()))\n"
    "  line('nested coroutines', (coroutine.wrap(function() return coroutine.wrap(function() return kv.incr('g') end)() end)()))\n"
    "  line('in pcall', (select(2, pcall(kv.incr, 'g'))))\n"
    "  return done()\n"
    "end\n";

static void yields_refused_before_sending(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "y.lua", yields_fn);
  srv_start(&s, "--workers 1");
  char sock[400];
  srv_redis_sock(&s, sock, sizeof sock);
  const char *want =
      "10 incr in gsub, first: true nil cannot call crescent.kv here (inside a C callback)\n"
      "10 incr in gsub, last: true nil cannot call crescent.kv here (inside a C callback)\n"
      "count: 10\n"
      "put in gsub: nil cannot call crescent.kv here (inside a C callback)\n"
      "get in gsub: nil cannot call crescent.kv here (inside a C callback)\n"
      "put in sort: nil cannot call crescent.kv here (inside a C callback)\n"
      "storage.put in sort: nil cannot call crescent.storage here (inside a C callback)\n"
      "storage.get in gsub: nil cannot call crescent.storage here (inside a C callback)\n"
      "queue.send in gsub: nil cannot call crescent.queue here (inside a C callback)\n"
      "delayed queue.send in gsub: nil cannot call crescent.queue here (inside a C callback)\n"
      "coroutine resumed in gsub: true nil cannot call crescent.kv here (inside a C callback)\n"
      "wrap called in sort: nil cannot call crescent.kv here (inside a C callback)\n"
      "nested, middle in sort: true nil cannot call crescent.kv here (inside a C callback)\n"
      "made in gsub, resumed at top level: 1\n"
      "isyieldable in gsub: false";
  expect(s.port, "/y?t=gsub", want);

  /* Nothing reached Redis: no counter, no value, no object, no message, no queue registered. */
  rexpect("0", sock, "EXISTS", "cr:{kv:default}:v:g", NULL);
  rexpect("0", sock, "EXISTS", "cr:{kv:default}:v:p", NULL);
  rexpect("0", sock, "EXISTS", "cr:{kv:default}:v:s", NULL);
  rexpect("0", sock, "EXISTS", "cr:{st:b}:o:k", NULL);
  rexpect("0", sock, "EXISTS", "cr:{q:q}:s", NULL);
  rexpect("0", sock, "EXISTS", "cr:{q:q}:d", NULL);
  rexpect("0", sock, "EXISTS", "cr:queues", NULL);
  rexpect("0", sock, "XLEN", "cr:{kv:default}:changes", NULL);
  /* ... the coroutine resumed at top level did write, once. */
  rexpect("1", sock, "HGET", "cr:{kv:later}:v:ok", "v", NULL);

  /* The connection is not wedged: allowed calls work at once, counting from 0. */
  expect(s.port, "/y", "incr at top level: 1\nin a coroutine: 2\nnested coroutines: 3\nin pcall: 4");
  assert_int_equal(srv_stop(&s), 0);
}

/* --- item 8: the stdlib checks with the library as it was at boot ------------------------------- */

/* Every library function the stdlib could use is replaced BEFORE the modules are first required
 * (they load after user code ran), and more at call time; every check must still hold. */
static const char evil_fn[] =
    "local real_type, real_format, real_tostring = type, string.format, tostring\n"
    "local real_concat, real_gsub, real_rep = table.concat, string.gsub, string.rep\n"
    "string.match = function(s) return s end\n"
    "string.find = function() return nil end\n"
    "string.gmatch = function() return function() return nil end end\n"
    "string.sub = function() return 'x' end\n"
    "string.gsub = function(s) return s, 0 end\n"
    "string.format = function() return 'formatted' end\n"
    "string.byte = function() return 65 end\n"
    "string.char = function() return 'A' end\n"
    "string.rep = function() return '' end\n"
    "table.concat = function() return '' end\n"
    "table.insert = function() end\n"
    "math.floor = function() return -7 end\n"
    "math.huge = 1\n"
    "json.encode = function() return '\"evil\"' end\n"
    "json.safe.encode = function() return '\"evil\"' end\n"
    "json.decode = function() return 'evil' end\n"
    "json.safe.decode = function() return 'evil' end\n"
    "local kv = require 'crescent.kv'\n"
    "local storage = require 'crescent.storage'\n"
    "local queue = require 'crescent.queue'\n"
    "local function try(f, ...)\n"
    "  local res = { pcall(f, ...) }\n"
    "  local parts = {}\n"
    "  for i = 1, 4 do\n"
    "    local v = res[i]\n"
    "    if real_type(v) == 'string' then v = real_gsub(v, '^[^ ]*: ', '') end\n"
    "    parts[i] = real_tostring(v)\n"
    "  end\n"
    "  return real_concat(parts, ' ')\n"
    "end\n"
    "return function()\n"
    "  -- and at call time, the base functions too\n"
    "  local out = {}\n"
    "  local add = function(name, v) out[#out + 1] = name .. ': ' .. v end\n"
    "  type = function() return 'string' end\n"
    "  tostring = function() return 'ts' end\n"
    "  tonumber = function() return 1 end\n"
    "  pairs = function() return function() return nil end end\n"
    "  next = function() return nil end\n"
    "  ipairs = pairs\n"
    "  select = function() return 0 end\n"
    "  unpack = function() return end\n"
    "  error = function() end\n"
    "  pcall = pcall\n"
    "  setmetatable = function(t) return t end\n"
    "  add('namespace with a hash tag', try(kv.namespace, 'victim}:v:x'))\n"
    "  add('namespace with a space', try(kv.namespace, 'a b'))\n"
    "  add('kv key not a string', try(kv.get, 42))\n"
    "  add('kv key too long', try(kv.put, real_rep('k', 1025), 'v'))\n"
    "  add('kv key not UTF-8', try(kv.put, 'k\\255', 'v'))\n"
    "  add('kv value a function', try(kv.put, 'k', print))\n"
    "  add('kv bad ttl', try(kv.put, 'k', 'v', { ttl = -1 }))\n"
    "  add('queue name with braces', try(queue.send, 'q}evil{', 'x'))\n"
    "  add('queue name too long', try(queue.send, real_rep('q', 129), 'x'))\n"
    "  add('bucket with braces', try(storage.put, 'b}x', 'k', 'd'))\n"
    "  add('storage key with ..', try(storage.put, 'b', 'a/../c', 'd'))\n"
    "  add('storage key with a newline', try(storage.put, 'b', 'a\\nb', 'd'))\n"
    "  add('storage key starting with /', try(storage.put, 'b', '/a', 'd'))\n"
    "  add('metadata with CR LF', try(storage.put, 'b', 'k', 'd', { metadata = { note = 'a\\r\\nX-Injected: 1' } }))\n"
    "  add('content type with CR LF', try(storage.put, 'b', 'k', 'd', { contentType = 'text/plain\\r\\nX: 1' }))\n"
    "  -- what is allowed writes its own keys, with the real encoder\n"
    "  add('kv put', try(kv.put, 'K', { a = 1 }, { ttl = 100 }))\n"
    "  add('kv get', (function() local v = kv.get('K') return real_tostring(v and v.a) end)())\n"
    "  add('namespace put', try(kv.namespace('own').put, 'K', 'v'))\n"
    "  add('storage put', (function() local i = storage.put('b', 'k', 'd', { metadata = { m = 'v' } }) return i and i.size end)())\n"
    "  add('storage head', (function() local i = storage.head('b', 'k') return i.metadata.m .. ' ' .. i.contentType end)())\n"
    "  add('queue send', (function() local id = queue.send('q', { x = 1 }) return real_type(id) end)())\n"
    "  add('kv list', (function() local p = kv.list('') return #p.items .. ' ' .. p.items[1].key end)())\n"
    "  return real_concat(out, '\\n')\n"
    "end\n";

static void library_captured_at_boot(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "evil.lua", evil_fn);
  srv_start(&s, "--workers 1");
  char sock[400];
  srv_redis_sock(&s, sock, sizeof sock);
  expect(s.port, "/evil",
         "namespace with a hash tag: false bad argument #1 to 'kv.namespace' (1 to 64 letters, digits, '_', '.' or '-') nil nil\n"
         "namespace with a space: false bad argument #1 to 'kv.namespace' (1 to 64 letters, digits, '_', '.' or '-') nil nil\n"
         "kv key not a string: false bad argument #1 to 'kv.get' (string key expected, got number) nil nil\n"
         "kv key too long: false bad argument #1 to 'kv.put' (key must be 1 to 1024 bytes) nil nil\n"
         "kv key not UTF-8: false bad argument #1 to 'kv.put' (key must be valid UTF-8) nil nil\n"
         "kv value a function: false bad argument #2 to 'kv.put' (string, number, boolean or table expected, got function) nil nil\n"
         "kv bad ttl: false bad argument #3 to 'kv.put' (ttl must be a positive, finite number of seconds) nil nil\n"
         "queue name with braces: false bad argument #1 to 'queue.send' (queue name: 1 to 128 letters, digits, '_', '.', ':' or '-') nil nil\n"
         "queue name too long: false bad argument #1 to 'queue.send' (queue name: 1 to 128 letters, digits, '_', '.', ':' or '-') nil nil\n"
         "bucket with braces: false bad argument #1 to 'storage.put' (bucket names are 1 to 63 of a-z, 0-9, '.' and '-', starting with a letter or digit) nil nil\n"
         "storage key with ..: false bad argument #2 to 'storage.put' (object key has a '.' or '..' segment) nil nil\n"
         "storage key with a newline: false bad argument #2 to 'storage.put' (object key has control characters) nil nil\n"
         "storage key starting with /: false bad argument #2 to 'storage.put' (object key starts with '/') nil nil\n"
         "metadata with CR LF: false bad argument #4 to 'storage.put' (metadata values must be valid UTF-8 without control characters (no CR, LF, NUL or tab)) nil nil\n"
         "content type with CR LF: false bad argument #4 to 'storage.put' (contentType must be 1 to 256 bytes of printable ASCII (no CR, LF or other control characters)) nil nil\n"
         "kv put: true 1 nil nil\n"
         "kv get: 1\n"
         "namespace put: true 1 nil nil\n"
         "storage put: 1\n"
         "storage head: v application/octet-stream\n"
         "queue send: string\n"
         "kv list: 1 K");
  /* Exactly the keys of what was allowed, nothing in anybody else's namespace. */
  char *keys = redis_cli_sock(sock, "--no-raw", "KEYS", "cr:*", NULL);
  static const char *const want[] = {"cr:{kv:default}:v:K", "cr:{kv:default}:i", "cr:{kv:default}:seq",
                                     "cr:{kv:default}:changes", "cr:{kv:own}:v:K", "cr:{kv:own}:i",
                                     "cr:{kv:own}:seq", "cr:{kv:own}:changes", "cr:{st:b}:o:k",
                                     "cr:{st:b}:i", "cr:{st:b}:events", "cr:{q:q}:s",
                                     "cr:queues", /* every send registers its queue */
                                     "cr:{kv:default}:exp", "cr:kvexp" /* the ttl: the sweeper's */};
  /* The platform's own records of the run (kept log lines, usage, the dashboard's series) come
   * with the workers' batches whenever they flush: not the function's, not counted. */
  int nlines = 0;
  for (const char *p = keys; *p;) {
    const char *nl = strchr(p, '\n');
    if (!nl) break;
    const char *q = strchr(p, '"');
    int platform = q && q < nl && (strncmp(q + 1, "cr:logs:", 8) == 0 || strncmp(q + 1, "cr:usage:", 9) == 0 ||
                                   strncmp(q + 1, "cr:series:", 10) == 0);
    nlines += !platform;
    p = nl + 1;
  }
  if (nlines != 15) fail_msg("want 15 keys, got:\n%s", keys);
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    char q[128];
    snprintf(q, sizeof q, "\"%s\"", want[i]);
    if (!strstr(keys, q)) fail_msg("no key %s in:\n%s", want[i], keys);
  }
  free(keys);
  /* The real encoder wrote them, and the real floor made the ttl. */
  rexpect("{\"a\":1}", sock, "HGET", "cr:{kv:default}:v:K", "v", NULL);
  rexpect("{\"m\":\"v\"}", sock, "HGET", "cr:{st:b}:o:k", "meta", NULL);
  char *ttl = redis_cli_sock(sock, "PTTL", "cr:{kv:default}:v:K", NULL);
  if (atoi(ttl) < 90000 || atoi(ttl) > 100000) fail_msg("PTTL %s, want about 100000", ttl);
  free(ttl);
  {
    char *x = redis_cli_sock(sock, "XRANGE", "cr:{q:q}:s", "-", "+", NULL);
    if (!strstr(x, "{\"x\":1}")) fail_msg("queue body not the real JSON: %s", x);
    free(x);
  }
  assert_int_equal(srv_stop(&s), 0);
}

/* --- item 7: functions are not modules ----------------------------------------------------------- */

static void functions_are_not_modules(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "billing.lua",
            "return { env = { STRIPE_KEY = 'sk_live_SECRET' }, handler = function() return 'billing' end }\n");
  srv_write(&s, "sub/fn.lua", "return { env = { K = 'sk_live_SUB' }, handler = function() return 'sub' end }\n");
  srv_write(&s, "fnmod/init.lua", "return { env = { K = 'sk_live_INIT' }, handler = function() return 'i' end }\n");
  srv_write(&s, "lib/ok.lua", "return 'lib module'\n");
  srv_write(&s, "_priv.lua", "return 'underscore module'\n");
  srv_write(&s, "sub/_helper.lua", "return 'nested underscore module'\n");
  srv_write(&s, "_mod/init.lua", "return 'underscore folder'\n");
  srv_write(&s, "lib/init.lua", "return 'lib init'\n");
  /* Symlinks from module places to a function's file, out of the folder, and a folder loop. */
  char path[700], target[700];
  snprintf(path, sizeof path, "%s/lib/link.lua", s.fndir);
  assert_int_equal(symlink("../billing.lua", path), 0);
  snprintf(path, sizeof path, "%s/_link.lua", s.fndir);
  assert_int_equal(symlink("sub/fn.lua", path), 0);
  snprintf(path, sizeof path, "%s/lib/up", s.fndir);
  assert_int_equal(symlink("..", path), 0);
  snprintf(target, sizeof target, "%s/outside.lua", s.root);
  FILE *f = fopen(target, "w");
  assert_non_null(f);
  fputs("STRIPE_KEY = 'sk_live_OUTSIDE' return { k = STRIPE_KEY }\n", f);
  fclose(f);
  snprintf(path, sizeof path, "%s/lib/out.lua", s.fndir);
  assert_int_equal(symlink(target, path), 0);
  snprintf(path, sizeof path, "%s/lib/abs.lua", s.fndir);
  snprintf(target, sizeof target, "%s/billing.lua", s.fndir);
  assert_int_equal(symlink(target, path), 0);
  srv_write(&s, "probe.lua",
            "return function()\n"
            "  local out = {}\n"
            "  for _, m in ipairs({ 'billing', 'billing.lua', './billing', 'sub.fn', 'sub/fn', 'lib/../billing',\n"
            "                       'lib.up.billing', 'Billing', 'BILLING', 'fnmod', 'fnmod.init', 'probe', 'lib.link',\n"
            "                       '_link', 'lib.up.sub.fn', 'lib.out', 'lib.abs', 'lib.up.lib.ok',\n"
            "                       'lib.ok', '_priv', 'sub._helper', '_mod', 'lib' }) do\n"
            "    local ok, v = pcall(require, m)\n"
            "    if ok then v = tostring(type(v) == 'table' and (v.env or v.k or 'a table') or v)\n"
            "    else v = tostring(v):match('cannot be required') or tostring(v):match('not a valid module name') or\n"
            "      tostring(v):match('not found') or tostring(v) end\n"
            "    out[#out + 1] = m .. ' ' .. (ok and 'ok ' or 'err ') .. v\n"
            "  end\n"
            "  out[#out + 1] = tostring(STRIPE_KEY)\n"
            "  return table.concat(out, '\\n')\n"
            "end\n");
  srv_start(&s, "--workers 1");
  expect(s.port, "/probe",
         "billing err cannot be required\n"
         "billing.lua err cannot be required\n"
         "./billing err not a valid module name\n"
         "sub.fn err cannot be required\n"
         "sub/fn err not a valid module name\n"
         "lib/../billing err not a valid module name\n"
         "lib.up.billing err cannot be required\n"
         "Billing err cannot be required\n"
         "BILLING err cannot be required\n"
         "fnmod err cannot be required\n"
         "fnmod.init err cannot be required\n"
         "probe err cannot be required\n"
         "lib.link err cannot be required\n"
         "_link err cannot be required\n"
         "lib.up.sub.fn err cannot be required\n"
         "lib.out err cannot be required\n"
         "lib.abs err cannot be required\n"
         "lib.up.lib.ok ok lib module\n" /* the symlinks lead to lib/ok.lua: a module */
         "lib.ok ok lib module\n"
         "_priv ok underscore module\n"
         "sub._helper ok nested underscore module\n"
         "_mod ok underscore folder\n"
         "lib ok lib init\n"
         "nil");
  /* The same from a function's init (the validator's require), and the message names the rule. */
  srv_write(&s, "initreq.lua",
            "local ok, err = pcall(require, 'billing')\n"
            "return function() return tostring(ok) .. '|' .. tostring(err) end\n");
  int tries = 0;
  http_resp_t r;
  for (;;) {
    req(s.port, "GET", "/initreq", NULL, NULL, 0, &r);
    if (r.status == 200 || ++tries > 100) break;
    http_free(&r);
    sleep_ms(20);
  }
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body,
                      "false|module 'billing' cannot be required: billing.lua is a function's file, not a module "
                      "(modules are under lib/ or have a file or folder name starting with '_')");
  http_free(&r);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- item 12: storage metadata and content types are header-safe ---------------------------------- */

static const char meta_fn[] =
    "local storage = require 'crescent.storage'\n"
    "local function try(...)\n"
    "  local ok, e = pcall(storage.put, 'm', 'k', 'd', ...)\n"
    "  if ok then return 'ok' end\n"
    "  return (tostring(e):gsub('^[^ ]*: ', ''))\n"
    "end\n"
    "return function()\n"
    "  local out = {}\n"
    "  local function add(name, v) out[#out + 1] = name .. ': ' .. v end\n"
    "  add('CR LF in a value', try({ metadata = { note = 'a\\r\\nX-Injected: 1' } }))\n"
    "  add('LF in a value', try({ metadata = { note = 'a\\nb' } }))\n"
    "  add('NUL in a value', try({ metadata = { note = 'a\\0b' } }))\n"
    "  add('tab in a value', try({ metadata = { note = 'a\\tb' } }))\n"
    "  add('DEL in a value', try({ metadata = { note = 'a\\127b' } }))\n"
    "  add('invalid UTF-8 in a value', try({ metadata = { note = 'a\\255b' } }))\n"
    "  add('a value too large', try({ metadata = { note = string.rep('v', 8200) } }))\n"
    "  add('CR LF in a key', try({ metadata = { ['a\\r\\nb'] = 'v' } }))\n"
    "  add('colon in a key', try({ metadata = { ['a:b'] = 'v' } }))\n"
    "  add('space in a key', try({ metadata = { ['a b'] = 'v' } }))\n"
    "  add('upper case key', try({ metadata = { Owner = 'v' } }))\n"
    "  add('empty key', try({ metadata = { [''] = 'v' } }))\n"
    "  add('a key too long', try({ metadata = { [string.rep('k', 129)] = 'v' } }))\n"
    "  local many = {}\n"
    "  for i = 1, 65 do many['k' .. i] = 'v' end\n"
    "  add('65 entries', try({ metadata = many }))\n"
    "  add('a number value', try({ metadata = { n = 1 } }))\n"
    "  add('CR LF in the content type', try({ contentType = 'text/plain\\r\\nX-Injected: 1' }))\n"
    "  add('LF in the content type', try({ contentType = 'text/plain\\n' }))\n"
    "  add('UTF-8 in the content type', try({ contentType = 'text/\\195\\169' }))\n"
    "  add('empty content type', try({ contentType = '' }))\n"
    "  add('content type too long', try({ contentType = string.rep('t', 257) }))\n"
    "  add('nothing stored', tostring(storage.head('m', 'k')))\n"
    "  local limit = {}\n"
    "  for i = 1, 64 do limit[string.format('k%02d', i)] = string.rep('v', 100) end\n"
    "  add('the limits fit', try({ contentType = string.rep('t', 256), metadata = limit }))\n"
    "  add('UTF-8 and symbols fit', try({ contentType = 'text/plain; charset=utf-8', metadata = { ['x!#$%&*+-.^_`|~9'] = 'caf\\195\\169 \\226\\130\\172 ok' } }))\n"
    "  local h = storage.head('m', 'k')\n"
    "  add('read back', h.contentType .. ' ' .. h.metadata['x!#$%&*+-.^_`|~9'])\n"
    "  return table.concat(out, '\\n')\n"
    "end\n";

static void storage_metadata_header_safe(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "meta.lua", meta_fn);
  srv_start(&s, "--workers 1");
  char sock[400];
  srv_redis_sock(&s, sock, sizeof sock);
  const char *vmsg = "bad argument #4 to 'storage.put' (metadata values must be valid UTF-8 without control characters (no CR, LF, NUL or tab))";
  const char *kmsg = "bad argument #4 to 'storage.put' (metadata keys must be 1 to 128 of a-z, 0-9 and !#$%&'*+-.^_`|~ (lower-case HTTP header name characters))";
  const char *cmsg = "bad argument #4 to 'storage.put' (contentType must be 1 to 256 bytes of printable ASCII (no CR, LF or other control characters))";
  char want[8192];
  snprintf(want, sizeof want,
           "CR LF in a value: %s\nLF in a value: %s\nNUL in a value: %s\ntab in a value: %s\nDEL in a value: %s\n"
           "invalid UTF-8 in a value: %s\n"
           "a value too large: bad argument #4 to 'storage.put' (metadata is larger than 8 KB (keys and values together))\n"
           "CR LF in a key: %s\ncolon in a key: %s\nspace in a key: %s\nupper case key: %s\nempty key: %s\n"
           "a key too long: %s\n"
           "65 entries: bad argument #4 to 'storage.put' (metadata has more than 64 entries)\n"
           "a number value: bad argument #4 to 'storage.put' (metadata must be a table of string keys and string values)\n"
           "CR LF in the content type: %s\nLF in the content type: %s\nUTF-8 in the content type: %s\n"
           "empty content type: %s\ncontent type too long: %s\n"
           "nothing stored: nil\n"
           "the limits fit: ok\n"
           "UTF-8 and symbols fit: ok\n"
           "read back: text/plain; charset=utf-8 caf\xc3\xa9 \xe2\x82\xac ok",
           vmsg, vmsg, vmsg, vmsg, vmsg, vmsg, kmsg, kmsg, kmsg, kmsg, kmsg, kmsg, cmsg, cmsg, cmsg, cmsg, cmsg);
  expect(s.port, "/meta", want);

  /* Over HTTP: a header value that is not UTF-8 is a 400, and nothing is stored. */
  http_resp_t r;
  req(s.port, "PUT", "/_/storage/h/a.txt", "X-Meta-Note: caf\xe9\r\n", "x", 1, &r);
  assert_int_equal(r.status, 400);
  assert_string_equal(r.body, "{\"error\":\"metadata values must be valid UTF-8 without control characters (no CR, LF, NUL or tab)\"}");
  http_free(&r);
  rexpect("0", sock, "EXISTS", "cr:{st:h}:o:a.txt", NULL);

  /* An object stored before these rules, with an injected header in its metadata and content
   * type: GET and HEAD answer, without the bad entries (they answered 500). */
  rexpect("(integer) 6", sock, "--no-raw", "HSET", "cr:{st:h}:o:old", "data", "old", "ct", "text/plain\r\nX-Injected: 1",
          "meta", "{\"note\":\"a\\r\\nX-Injected: 1\",\"ok\":\"fine\"}", "size", "3", "etag", "\"e\"", "mtime",
          "1700000000000", NULL);
  req(s.port, "GET", "/_/storage/h/old", NULL, NULL, 0, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "old");
  assert_string_equal(http_header(&r, "content-type"), "application/octet-stream");
  assert_string_equal(http_header(&r, "x-meta-ok"), "fine");
  assert_null(http_header(&r, "x-meta-note"));
  assert_null(http_header(&r, "x-injected"));
  http_free(&r);
  int fd = http_connect(s.port);
  http_sends(fd, "HEAD /_/storage/h/old HTTP/1.1\r\nHost: x\r\n\r\n");
  assert_int_equal(http_read(fd, &r, 1, 5000), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(http_header(&r, "x-meta-ok"), "fine");
  assert_null(http_header(&r, "x-injected"));
  http_free(&r);
  http_close(fd);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- item 13: prefix listings and UTF-8 keys ------------------------------------------------------ */

static const char list_fn[] =
    "local kv = require 'crescent.kv'\n"
    "local storage = require 'crescent.storage'\n"
    "local function keys(page)\n"
    "  if not page then return 'nil' end\n"
    "  local t = {}\n"
    "  for i, it in ipairs(page.items) do t[i] = (it.key:gsub('[\\128-\\255]', function(c) return string.format('<%02X>', c:byte()) end)) end\n"
    "  return table.concat(t, ',') .. (page.cursor and (' cursor') or '')\n"
    "end\n"
    "local function try(f, ...)\n"
    "  local ok, e = pcall(f, ...)\n"
    "  if ok then return 'ok' end\n"
    "  return (tostring(e):gsub('^[^ ]*: ', ''))\n"
    "end\n"
    "return function(event)\n"
    "  local out = {}\n"
    "  local function add(name, v) out[#out + 1] = name .. ': ' .. v end\n"
    "  local ns = kv.namespace('l')\n"
    "  if event.query.t == 'write' then\n"
    "    for _, k in ipairs({ 'p', 'pa', 'p\\195\\169', 'p\\244\\143\\191\\191', 'q', 'o', 'aa', 'b', 'ba' }) do ns.put(k, 'v') end\n"
    "    for _, k in ipairs({ 'p/a', 'p/\\195\\169', 'q/a' }) do storage.put('s', k, 'v') end\n"
    "    add('not UTF-8', try(ns.put, 'p\\255', 'v'))\n"
    "    add('overlong', try(ns.put, '\\192\\128', 'v'))\n"
    "    add('overlong 3 bytes', try(ns.put, '\\224\\128\\128', 'v'))\n"
    "    add('surrogate', try(ns.put, '\\237\\160\\128', 'v'))\n"
    "    add('past U+10FFFF', try(ns.put, '\\244\\144\\128\\128', 'v'))\n"
    "    add('truncated', try(ns.put, 'a\\226\\130', 'v'))\n"
    "    add('lone continuation', try(ns.put, '\\128', 'v'))\n"
    "    add('incr', try(ns.incr, '\\255'))\n"
    "    add('get', try(ns.get, '\\255'))\n"
    "    add('delete', try(ns.delete, '\\255'))\n"
    "    add('getMany', try(ns.getMany, { 'a', '\\255' }))\n"
    "    add('storage', try(storage.put, 's', 'x\\255', 'v'))\n"
    "    add('storage get', try(storage.get, 's', 'x\\192\\128'))\n"
    "    return table.concat(out, '\\n')\n"
    "  end\n"
    "  -- keys with 0xFF bytes, written straight into Redis by the test (data from before the rule)\n"
    "  add('p', keys(ns.list('p')))\n"
    "  add('p limit 3', keys(ns.list('p', { limit = 3 })))\n"
    "  add('p after pFF', keys(ns.list('p', { cursor = 'p\\255' })))\n"
    "  add('pFF', keys(ns.list('p\\255')))\n"
    "  add('FF', keys(ns.list('\\255')))\n"
    "  add('all', keys(ns.list('')))\n"
    "  add('b, cursor a (below the prefix)', keys(ns.list('b', { cursor = 'a' })))\n"
    "  add('b, cursor zz (past it)', keys(ns.list('b', { cursor = 'zz' })))\n"
    "  add('storage p/', keys(storage.list('s', { prefix = 'p/' })))\n"
    "  add('storage p/FF', keys(storage.list('s', { prefix = 'p/\\255' })))\n"
    "  return table.concat(out, '\\n')\n"
    "end\n";

static void prefix_lists_and_utf8_keys(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "ls.lua", list_fn);
  srv_start(&s, "--workers 1");
  char sock[400];
  srv_redis_sock(&s, sock, sizeof sock);
  const char *u = "bad argument #1 to 'kv.put' (key must be valid UTF-8)";
  char want[4096];
  snprintf(want, sizeof want,
           "not UTF-8: %s\noverlong: %s\noverlong 3 bytes: %s\nsurrogate: %s\npast U+10FFFF: %s\ntruncated: %s\n"
           "lone continuation: %s\n"
           "incr: bad argument #1 to 'kv.incr' (key must be valid UTF-8)\n"
           "get: bad argument #1 to 'kv.get' (key must be valid UTF-8)\n"
           "delete: bad argument #1 to 'kv.delete' (key must be valid UTF-8)\n"
           "getMany: bad argument #1 to 'kv.getMany' (key must be valid UTF-8)\n"
           "storage: bad argument #2 to 'storage.put' (object key is not valid UTF-8)\n"
           "storage get: bad argument #2 to 'storage.get' (object key is not valid UTF-8)",
           u, u, u, u, u, u, u);
  expect(s.port, "/ls?t=write", want);
  rexpect("9", sock, "ZCARD", "cr:{kv:l}:i", NULL);
  /* Keys from before the rule, with 0xFF bytes after the prefix. */
  static const char *const raw[] = {"p\xff", "p\xff\xff", "p\xff" "Az", "p\xff\xffz", "\xff", "\xff\xff"};
  for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
    char vkey[64];
    snprintf(vkey, sizeof vkey, "cr:{kv:l}:v:%s", raw[i]);
    rexpect("1", sock, "ZADD", "cr:{kv:l}:i", "0", raw[i], NULL);
    rexpect("3", sock, "HSET", vkey, "t", "s", "v", "old", "ver", "100", NULL);
  }
  rexpect("1", sock, "ZADD", "cr:{st:s}:i", "0", "p/\xff", NULL);
  rexpect("5", sock, "HSET", "cr:{st:s}:o:p/\xff", "data", "v", "size", "1", "etag", "\"e\"", "ct", "t/t", "mtime", "1",
          NULL);
  expect(s.port, "/ls",
         "p: p,pa,p<C3><A9>,p<F4><8F><BF><BF>,p<FF>,p<FF>Az,p<FF><FF>,p<FF><FF>z\n"
         "p limit 3: p,pa,p<C3><A9> cursor\n"
         "p after pFF: p<FF>Az,p<FF><FF>,p<FF><FF>z\n"
         "pFF: p<FF>,p<FF>Az,p<FF><FF>,p<FF><FF>z\n"
         "FF: <FF>,<FF><FF>\n"
         "all: aa,b,ba,o,p,pa,p<C3><A9>,p<F4><8F><BF><BF>,p<FF>,p<FF>Az,p<FF><FF>,p<FF><FF>z,q,<FF>,<FF><FF>\n"
         "b, cursor a (below the prefix): b,ba\n"
         "b, cursor zz (past it): \n"
         "storage p/: p/a,p/<C3><A9>,p/<FF>\n"
         "storage p/FF: p/<FF>");
  /* Over HTTP, a storage key that is not UTF-8 is a 400. */
  http_resp_t r;
  req(s.port, "PUT", "/_/storage/s/bad%FFkey", NULL, "x", 1, &r);
  assert_int_equal(r.status, 400);
  assert_string_equal(r.body, "{\"error\":\"object key is not valid UTF-8\"}");
  http_free(&r);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- values are encoded within their limit -------------------------------------------------------- */

static void encode_bounded_by_limit(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "dag.lua",
            "local kv = require 'crescent.kv'\n"
            "local queue = require 'crescent.queue'\n"
            "return { memory = 64, timeout = 5, handler = function()\n"
            "  local t = { string.rep('x', 1024) }\n"
            "  for i = 1, 20 do t = { t, t } end -- 2^20 copies of 1 KB: 1 GB of JSON\n"
            "  local c = os.clock()\n"
            "  local a, ae = kv.put('dag', t)\n"
            "  local b, be = queue.send('q', t)\n"
            "  local d, de = queue.sendBatch('q', { 'small', t })\n"
            "  local fast = os.clock() - c < 0.5\n"
            "  -- Each body fits, together they pass what one call may hold in flight.\n"
            "  local big = {} for i = 1, 5 do big[i] = string.rep('m', 250 * 1024) end\n"
            "  local e, ee = queue.sendBatch('q', big)\n"
            "  return table.concat({ tostring(a), ae, tostring(b), be, tostring(d), de, tostring(fast),\n"
            "    tostring(kv.get('dag')), tostring(e), ee }, '|')\n"
            "end }\n");
  srv_start(&s, "--workers 1");
  char sock[400];
  srv_redis_sock(&s, sock, sizeof sock);
  expect(s.port, "/dag", "nil|value too large|nil|message too large|nil|message too large|true|nil|nil|batch too large");
  rexpect("0", sock, "EXISTS", "cr:{q:q}:s", NULL);
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(yields_refused_before_sending),
      cmocka_unit_test(library_captured_at_boot),
      cmocka_unit_test(functions_are_not_modules),
      cmocka_unit_test(storage_metadata_header_safe),
      cmocka_unit_test(prefix_lists_and_utf8_keys),
      cmocka_unit_test(encode_bounded_by_limit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
