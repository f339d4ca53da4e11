/* test_sandbox.c - the sandbox of docs/architecture.md §4 from the outside: every way
 * out of a function's state we know of fails (bytecode, string.dump, the
 * string metatable, environments, io/os/debug/ffi/jit/package, require of
 * platform libraries, bytecode files or paths outside the folder,
 * collectgarbage, yields to the host), the server stays healthy afterwards,
 * each function keeps its own states, and everything the allowlist keeps
 * still works. */
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

/* GET that must answer 500 "internal error"; returns its request id. */
static void get_500(int port, const char *path, char *rid, size_t n) {
  http_resp_t r;
  http_get(port, path, &r);
  if (r.status != 500) fail_msg("GET %s: got %d '%s', want 500", path, r.status, r.body);
  const char *id = http_header(&r, "x-request-id");
  assert_non_null(id);
  snprintf(rid, n, "%s", id);
  char want[300];
  snprintf(want, sizeof want, "{\"error\":\"internal error\",\"requestId\":\"%s\"}", rid);
  assert_string_equal(r.body, want);
  http_free(&r);
}

/* A function that runs each attempt in pcall and answers one line per
 * attempt: "name ok <value>" or "name err". The messages are left out on
 * purpose: what matters is that nothing got through. */
#define PROBE_HEAD                                                                                              \
  "local out = {}\n"                                                                                            \
  "local function try(name, f)\n"                                                                               \
  "  local ok, v = pcall(f)\n"                                                                                  \
  "  out[#out + 1] = name .. (ok and (' ok ' .. tostring(v)) or ' err')\n"                                      \
  "end\n"

/* --- escapes ------------------------------------------------------------------------------------ */

static void escapes_fail(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "probe.lua",
            "return function()\n" PROBE_HEAD
            "  -- compiling code or bytecode at run time\n"
            "  try('load', function() return load('return 1')() end)\n"
            "  try('loadstring', function() return loadstring('return 1')() end)\n"
            "  try('dofile', function() return dofile('/etc/passwd') end)\n"
            "  try('loadfile', function() return loadfile('/etc/passwd') end)\n"
            "  -- string.dump, by every road to the string library\n"
            "  try('string.dump', function() return string.dump(print) end)\n"
            "  try('(\"\").dump', function() return ('').dump(try) end)\n"
            "  try('mt.__index.dump', function() return getmetatable('').__index.dump(try) end)\n"
            "  try('rawget dump', function() return rawget(string, 'dump')(try) end)\n"
            "  try('getmetatable \"\"', function() return getmetatable('') end)\n"
            "  try('setmetatable \"\"', function() return setmetatable('', {}) end)\n"
            "  -- environments\n"
            "  try('getfenv(0)', function() return getfenv(0) end)\n"
            "  try('getfenv(1)', function() return getfenv(1) end)\n"
            "  try('setfenv', function() return setfenv(1, {}) end)\n"
            "  -- the host\n"
            "  try('io', function() return io.open('/etc/passwd') end)\n"
            "  try('os.execute', function() return os.execute('true') end)\n"
            "  try('os.getenv', function() return os.getenv('HOME') end)\n"
            "  try('os.exit', function() return os.exit(3) end)\n"
            "  try('os.remove', function() return os.remove('/tmp/x') end)\n"
            "  try('os.rename', function() return os.rename('/tmp/x', '/tmp/y') end)\n"
            "  try('os.tmpname', function() return os.tmpname() end)\n"
            "  try('debug', function() return debug.getregistry() end)\n"
            "  try('ffi', function() return ffi.C end)\n"
            "  try('jit', function() return jit.off() end)\n"
            "  try('package', function() return package.loaded end)\n"
            "  try('newproxy', function() return newproxy(true) end)\n"
            "  try('module', function() return module('x') end)\n"
            "  try('gcinfo', function() return gcinfo() end)\n"
            "  try('_G.debug', function() return _G.debug.getinfo(1) end)\n"
            "  try('rawget _G io', function() return rawget(_G, 'io').open('/etc/passwd') end)\n"
            "  -- the platform's own coroutine cannot be resumed from inside\n"
            "  local main = coroutine.running()\n"
            "  try('resume main', function()\n"
            "    local ok = coroutine.resume(main)\n"
            "    if not ok then error('refused') end\n"
            "  end)\n"
            "  try('resume main from a coroutine', function()\n"
            "    local ok, inner = coroutine.resume(coroutine.create(function() return coroutine.resume(main) end))\n"
            "    if not (ok and inner) then error('refused') end\n"
            "  end)\n"
            "  -- and the names themselves are gone\n"
            "  local present = {}\n"
            "  for _, k in ipairs({ 'load', 'loadstring', 'loadfile', 'dofile', 'getfenv', 'setfenv', 'newproxy',\n"
            "                       'module', 'gcinfo', 'io', 'debug', 'ffi', 'jit', 'package' }) do\n"
            "    if rawget(_G, k) ~= nil then present[#present + 1] = k end\n"
            "  end\n"
            "  for _, k in ipairs({ 'execute', 'getenv', 'exit', 'remove', 'rename', 'tmpname', 'setlocale' }) do\n"
            "    if os[k] ~= nil then present[#present + 1] = 'os.' .. k end\n"
            "  end\n"
            "  if string.dump ~= nil then present[#present + 1] = 'string.dump' end\n"
            "  out[#out + 1] = 'present: ' .. table.concat(present, ',')\n"
            "  return table.concat(out, '\\n')\n"
            "end\n");
  /* The same attempts, not caught: each is a 500 with an error line. */
  srv_write(&s, "direct.lua",
            "-- (parenthesized: no tail calls, so the traceback names this file)\n"
            "return function(event)\n"
            "  local w = event.query.what\n"
            "  if w == 'load' then return (load('return 1')()) end\n"
            "  if w == 'dump' then return (('').dump(print)) end\n"
            "  if w == 'mt' then return (getmetatable('').__index) end\n"
            "  if w == 'setmt' then return (setmetatable('', {})) end\n"
            "  if w == 'getfenv' then return (getfenv(0)) end\n"
            "  if w == 'exit' then return (os.exit(0)) end\n"
            "  if w == 'execute' then return (os.execute('touch pwned')) end\n"
            "  if w == 'io' then return (io.open('pwned', 'w')) end\n"
            "  if w == 'ffi' then return (require('ffi').C) end\n"
            "  if w == 'debug' then return (debug.sethook()) end\n"
            "  if w == 'gc' then return (collectgarbage('stop')) end\n"
            "  return 'fine'\n"
            "end\n");
  srv_write(&s, "hello.lua", "return function() return 'hello' end\n");
  srv_start(&s, "--workers 1");
  pid_t before[8], after[8];
  int nbefore = srv_workers_wait(&s, before, 8, 1, 5000);
  assert_int_equal(nbefore, 1);

  http_expect_body(s.port, "/probe",
           "load err\n"
           "loadstring err\n"
           "dofile err\n"
           "loadfile err\n"
           "string.dump err\n"
           "(\"\").dump err\n"
           "mt.__index.dump err\n"
           "rawget dump err\n"
           "getmetatable \"\" ok false\n"
           "setmetatable \"\" err\n"
           "getfenv(0) err\n"
           "getfenv(1) err\n"
           "setfenv err\n"
           "io err\n"
           "os.execute err\n"
           "os.getenv err\n"
           "os.exit err\n"
           "os.remove err\n"
           "os.rename err\n"
           "os.tmpname err\n"
           "debug err\n"
           "ffi err\n"
           "jit err\n"
           "package err\n"
           "newproxy err\n"
           "module err\n"
           "gcinfo err\n"
           "_G.debug err\n"
           "rawget _G io err\n"
           "resume main err\n"
           "resume main from a coroutine err\n"
           "present: ");

  const char *what[] = {"load", "dump", "mt", "setmt", "getfenv", "exit", "execute", "io", "ffi", "debug", "gc"};
  for (size_t i = 0; i < sizeof what / sizeof what[0]; i++) {
    char path[64], rid[128], idf[300];
    snprintf(path, sizeof path, "/direct?what=%s", what[i]);
    get_500(s.port, path, rid, sizeof rid);
    srv_expect_errors(&s, 1);
    snprintf(idf, sizeof idf, "\"requestId\":\"%s\"", rid);
    if (srv_log_wait(&s, 1, 3000, "\"level\":\"error\"", idf, "direct.lua:", NULL) != 1)
      fail_msg("%s: no error line naming direct.lua for %s", path, rid);
    /* ... and the server is fine. */
    http_expect_body(s.port, "/direct", "fine");
    http_expect_body(s.port, "/hello", "hello");
  }
  http_resp_t r;
  http_get(s.port, "/_/health", &r);
  assert_int_equal(r.status, 200);
  http_free(&r);
  /* os.exit did not end the worker; nothing was written by execute or io. */
  int nafter = srv_workers_wait(&s, after, 8, 1, 5000);
  assert_true(pids_same(before, nbefore, after, nafter));
  char pwned[400];
  snprintf(pwned, sizeof pwned, "%s/pwned", s.root);
  assert_null(fopen(pwned, "r"));
  assert_int_equal(srv_stop(&s), 0);
}

/* require: only the platform's modules and text files beside the function. */
static void require_is_confined(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  /* A bytecode file where a module would be (LuaJIT's "\x1bLJ" header). */
  srv_write(&s, "_evil.lua", "\x1bLJ\x02\x0a\x00return 1\n");
  srv_write(&s, "lib/ok.lua", "return { v = 'text module' }\n");
  srv_write(&s, "req.lua",
            "return function()\n" PROBE_HEAD
            "  for _, m in ipairs({ 'ffi', 'jit', 'debug', 'io', 'os', 'package', 'jit.util', 'string.buffer',\n"
            "                       '_evil', '../x', '..', '/etc/passwd', 'lib/../req', 'lib..ok', '.lib.ok',\n"
            "                       'nope' }) do\n"
            "    try(m, function() return require(m) end)\n"
            "  end\n"
            "  try('lib.ok', function() return require('lib.ok').v end)\n"
            "  try('json', function() return type(require('json').encode) end)\n"
            "  try('cjson.safe', function() return type(require('cjson.safe').decode) end)\n"
            "  return table.concat(out, '\\n')\n"
            "end\n");
  srv_write(&s, "evil.lua", "return function() return require('_evil') end\n");
  srv_start(&s, "--workers 1");

  http_expect_body(s.port, "/req",
           "ffi err\n"
           "jit err\n"
           "debug err\n"
           "io err\n"
           "os err\n"
           "package err\n"
           "jit.util err\n"
           "string.buffer err\n"
           "_evil err\n"
           "../x err\n"
           ".. err\n"
           "/etc/passwd err\n"
           "lib/../req err\n"
           "lib..ok err\n"
           ".lib.ok err\n"
           "nope err\n"
           "lib.ok ok text module\n"
           "json ok function\n"
           "cjson.safe ok function");

  /* Uncaught, the bytecode module is a 500 whose log says why. */
  char rid[128], idf[300];
  get_500(s.port, "/evil", rid, sizeof rid);
  srv_expect_errors(&s, 1);
  snprintf(idf, sizeof idf, "\"requestId\":\"%s\"", rid);
  assert_int_equal(srv_log_wait(&s, 1, 3000, "\"level\":\"error\"", idf, "\"function\":\"evil\"", NULL), 1);
  assert_int_equal(srv_log_count(&s, "\"level\":\"error\"", idf, "_evil.lua is Lua bytecode", "bytecode is refused", NULL), 1);
  http_expect_body(s.port, "/req", "ffi err\njit err\ndebug err\nio err\nos err\npackage err\njit.util err\n"
                           "string.buffer err\n_evil err\n../x err\n.. err\n/etc/passwd err\nlib/../req err\n"
                           "lib..ok err\n.lib.ok err\nnope err\nlib.ok ok text module\njson ok function\n"
                           "cjson.safe ok function");
  assert_int_equal(srv_stop(&s), 0);
}

/* collectgarbage only counts; a yield at the handler's level is an error. */
static void collectgarbage_and_yield(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "gc.lua",
            "return function()\n" PROBE_HEAD
            "  for _, opt in ipairs({ 'stop', 'restart', 'collect', 'step', 'setpause', 'setstepmul' }) do\n"
            "    try(opt, function() return collectgarbage(opt, 100) end)\n"
            "  end\n"
            "  try('no argument', function() return collectgarbage() end)\n"
            "  local kb = collectgarbage('count')\n"
            "  out[#out + 1] = 'count ' .. type(kb) .. ' ' .. tostring(kb > 0 and kb < 128 * 1024)\n"
            "  return table.concat(out, '\\n')\n"
            "end\n");
  srv_write(&s, "yield.lua", "return function() coroutine.yield('x'); return 'after' end\n");
  srv_write(&s, "yieldpcall.lua",
            "return function()\n"
            "  local ok, err = pcall(coroutine.yield, 'x')\n"
            "  return tostring(ok) .. '|' .. tostring(err):match('yield') \n"
            "end\n");
  srv_write(&s, "wrapyield.lua",
            "return function()\n"
            "  -- a user coroutine that finished cannot be resumed, and yields inside it stay inside\n"
            "  local gen = coroutine.wrap(function() coroutine.yield(1) end)\n"
            "  local a = gen()\n"
            "  local b = gen()\n"
            "  local ok = pcall(gen)\n"
            "  return tostring(a) .. '|' .. tostring(b) .. '|' .. tostring(ok)\n"
            "end\n");
  srv_start(&s, "--workers 1");
  http_expect_body(s.port, "/gc",
           "stop err\n"
           "restart err\n"
           "collect err\n"
           "step err\n"
           "setpause err\n"
           "setstepmul err\n"
           "no argument err\n"
           "count number true");
  for (int i = 0; i < 2; i++) {
    char rid[128], idf[300];
    get_500(s.port, "/yield", rid, sizeof rid);
    srv_expect_errors(&s, 1);
    snprintf(idf, sizeof idf, "\"requestId\":\"%s\"", rid);
    assert_int_equal(srv_log_wait(&s, 1, 3000, "\"level\":\"error\"", idf, "yield", NULL), 1);
  }
  http_expect_body(s.port, "/yieldpcall", "false|yield");
  http_expect_body(s.port, "/wrapyield", "1|nil|false");
  http_expect_body(s.port, "/gc", "stop err\nrestart err\ncollect err\nstep err\nsetpause err\nsetstepmul err\n"
                          "no argument err\ncount number true");
  assert_int_equal(srv_stop(&s), 0);
}

/* --- isolation ---------------------------------------------------------------------------------- */

/* Each function has its own states: what one does to its globals, its
 * string library or the string metatable never reaches another. */
static void states_are_isolated(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "a.lua",
            "return function()\n" PROBE_HEAD
            "  string.upper = nil\n"
            "  string.rep = function() return 'hijacked' end\n"
            "  LEAK = 'from a'\n"
            "  _G.print = nil\n"
            "  try('mt.__index', function() getmetatable('').__index = { upper = function() return 'evil' end } end)\n"
            "  try('rawset mt', function() rawset(getmetatable(''), '__index', {}) end)\n"
            "  try('setmetatable string', function() setmetatable('', { __index = {} }) end)\n"
            "  out[#out + 1] = 'a sees ' .. type(string.upper) .. ' ' .. ('x'):rep(2) .. ' ' .. tostring(LEAK)\n"
            "  return table.concat(out, '\\n')\n"
            "end\n");
  srv_write(&s, "b.lua",
            "return function()\n"
            "  return type(string.upper) .. '|' .. ('abc'):upper() .. '|' .. ('x'):rep(3) .. '|' .. tostring(LEAK) ..\n"
            "         '|' .. type(print) .. '|' .. tostring(rawget(_G, 'LEAK'))\n"
            "end\n");
  srv_write(&s, "r1.lua", "return function() return tostring(math.random(1, 1e9)) end\n");
  srv_write(&s, "r2.lua", "return function() return tostring(math.random(1, 1e9)) end\n");
  srv_start(&s, "--workers 1");

  const char *a_out = "mt.__index err\nrawset mt err\nsetmetatable string err\na sees nil hijacked from a";
  http_expect_body(s.port, "/a", a_out);
  http_expect_body(s.port, "/b", "function|ABC|xxx|nil|function|nil");
  /* A's instance keeps what it did to itself (warm state) ... */
  http_expect_body(s.port, "/a", a_out);
  /* ... and B still does not see it. */
  http_expect_body(s.port, "/b", "function|ABC|xxx|nil|function|nil");

  /* Random numbers are seeded per state: two fresh states differ. */
  http_resp_t r1, r2;
  http_get(s.port, "/r1", &r1);
  http_get(s.port, "/r2", &r2);
  assert_int_equal(r1.status, 200);
  assert_int_equal(r2.status, 200);
  long v1 = atol(r1.body), v2 = atol(r2.body);
  assert_true(v1 >= 1 && v1 <= 1000000000L);
  assert_true(v2 >= 1 && v2 <= 1000000000L);
  if (v1 == v2) fail_msg("two fresh states drew the same first random number %ld", v1);
  http_free(&r1);
  http_free(&r2);
  assert_int_equal(srv_stop(&s), 0);
}

/* --- what is allowed ---------------------------------------------------------------------------- */

static void allowed_stdlib_works(void **state) {
  (void)state;
  srv_t s;
  srv_init(&s);
  srv_write(&s, "std.lua",
            "return function()\n"
            "  local out = {}\n"
            "  local function put(...) local t = { ... } for i = 1, select('#', ...) do t[i] = tostring(t[i]) end\n"
            "    out[#out + 1] = table.concat(t, ' ') end\n"
            "  -- string\n"
            "  put(('hello'):upper(), string.format('%5.2f|%d|%s|%q', 3.14159, 42, 'x', 'a\"b'))\n"
            "  put(string.gsub('hello world', 'o', '0'))\n"
            "  put(string.find('abc.def', '.', 1, true))\n"
            "  put(string.match('key=value', '(%w+)=(%w+)'))\n"
            "  put(string.find('abc.def', '.', 1, true), ('x'):rep(3, ','), string.byte('A'), string.char(66))\n"
            "  put(string.match('key=value', '(%w+)=(%w+)'), #string.rep('ab', 1000), string.sub('abcdef', 2, -2))\n"
            "  local words = {} for w in string.gmatch('one two three', '%a+') do words[#words + 1] = w end\n"
            "  put(#words, string.reverse('abc'), string.lower('ABC'), string.len('abcd'))\n"
            "  -- table\n"
            "  local t = { 5, 2, 8, 1 }\n"
            "  table.sort(t) table.insert(t, 9) table.insert(t, 1, 0)\n"
            "  put(table.concat(t, ','), table.remove(t), #t, table.maxn(t), unpack({ 1, 2 }))\n"
            "  -- math and bit\n"
            "  put(math.floor(3.7), math.max(1, 9, 4), math.abs(-2), math.huge > 1e308, math.sqrt(16), math.fmod(7, 3))\n"
            "  local r = math.random(10) put(r >= 1 and r <= 10, math.pi > 3.14)\n"
            "  put(bit.band(0xff, 0x0f), bit.bor(1, 2), bit.bxor(5, 1), bit.lshift(1, 10), bit.rshift(1024, 3),\n"
            "      bit.tohex(255), bit.bnot(0))\n"
            "  -- os: time and dates only\n"
            "  put(os.time() > 1600000000, type(os.clock()), os.date('!%Y-%m-%d %H:%M:%S', 86400), os.difftime(10, 4))\n"
            "  put(os.date('!*t', 0).year, os.time({ year = 2020, month = 1, day = 1, hour = 12 }) > 0)\n"
            "  -- json\n"
            "  put(json.encode({ a = { 1, 2 } }), json.decode('{\"x\":[1,2,3]}').x[3], json.encode(json.null))\n"
            "  -- errors\n"
            "  local ok, e = pcall(error, { code = 7 }) put(ok, e.code)\n"
            "  ok, e = pcall(error, 'msg', 0) put(ok, e)\n"
            "  put(xpcall(function() error('x', 0) end, function(m) return 'handled ' .. m end))\n"
            "  put(select(2, pcall(assert, false, 'assertion')))\n"
            "  -- metatables on tables\n"
            "  local mt = { __index = function(_, k) return k .. '!' end, __add = function() return 'added' end,\n"
            "               __tostring = function() return 'obj' end, __call = function(_, x) return x * 2 end }\n"
            "  local o = setmetatable({}, mt)\n"
            "  put(o.key, o + o, tostring(o), o(21), getmetatable(o) == mt, rawget(o, 'key'))\n"
            "  local locked = setmetatable({}, { __metatable = 'locked' })\n"
            "  put(getmetatable(locked), pcall(setmetatable, locked, {}))\n"
            "  -- coroutines inside the handler\n"
            "  local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)\n"
            "  put(gen(), gen(), gen())\n"
            "  local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) return b * 2 end)\n"
            "  put(coroutine.resume(co, 1)) put(coroutine.status(co), coroutine.resume(co, 5)) put(coroutine.status(co))\n"
            "  put(coroutine.isyieldable(), coroutine.wrap(function() return coroutine.isyieldable() end)())\n"
            "  -- the rest of the base library\n"
            "  put(type(nil), tonumber('0x10'), tonumber('z', 36), tostring(1.5), rawequal(t, t), _VERSION)\n"
            "  local n = 0 for k, v in pairs({ a = 1, b = 2 }) do n = n + v end for i, v in ipairs({ 4, 5 }) do n = n + i end\n"
            "  put(n, next({}), select('#', 1, nil, 3), type(_G), _G._G == _G, type(require), type(print))\n"
            "  return table.concat(out, '\\n')\n"
            "end\n");
  srv_start(&s, "--workers 1");
  const char *want =
      "HELLO  3.14|42|x|\"a\\\"b\"\n"
      "hell0 w0rld 2\n"
      "4 4\n"
      "key value\n"
      "4 x,x,x 65 B\n"
      "key 2000 bcde\n"
      "3 cba abc 4\n"
      "0,1,2,5,8,9 9 5 5 1 2\n"
      "3 9 2 true 4 1\n"
      "true true\n"
      "15 3 4 1024 128 000000ff -1\n"
      "true number 1970-01-02 00:00:00 6\n"
      "1970 true\n"
      "{\"a\":[1,2]} 3 null\n"
      "false 7\n"
      "false msg\n"
      "false handled x\n"
      "assertion\n"
      "key! added obj 42 true nil\n"
      "locked false cannot change a protected metatable\n"
      "1 2 3\n"
      "true 2\n"
      "suspended true 10\n"
      "dead\n"
      "false true\n"
      "nil 16 35 1.5 true Lua 5.1\n"
      "6 nil 3 table true function function";
  http_expect_body(s.port, "/std", want);
  http_expect_body(s.port, "/std", want); /* warm: the same */
  assert_int_equal(srv_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(escapes_fail),        cmocka_unit_test(require_is_confined),
      cmocka_unit_test(collectgarbage_and_yield), cmocka_unit_test(states_are_isolated),
      cmocka_unit_test(allowed_stdlib_works),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
