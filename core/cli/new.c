/* new.c - crescent new NAME [--trigger T]: a function file from a template, and its test.
 *
 * The name is checked as `crescent check` and the server will check the
 * file (a function path whose default route is a valid route), before
 * anything is created, so what new makes always loads. Beside it goes
 * NAME_test.lua, a test `crescent test` runs (testing.lua's API), which
 * passes against the template as made. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "buf.h"
#include "config.h"
#include "registry.h"
#include "router.h"
#include "cli.h"

static const char *const new_flags[] = {"functions", "listen", NULL};

const cr_cli_cmd_t cr_cli_new = {
    .name = "new",
    .args = "NAME",
    .about = "crescent new NAME [--trigger http|cron|queue|storage|kv|auth]\n"
             "Makes DIR/NAME.lua (DIR: the --functions folder, ./functions) from a template, with the\n"
             "folders on the way, and its test DIR/NAME_test.lua (crescent test runs it). NAME is the\n"
             "function's name, its path without .lua (a .lua suffix is dropped): users/[id] is served\n"
             "at /users/:id. --trigger picks the template: http (the default), cron (a schedule),\n"
             "queue (the queue \"jobs\"), storage (puts in the bucket \"uploads\"), kv (writes under\n"
             "\"item:\" in the namespace \"items\") or auth (an authorizer for other routes).\n"
             "Never overwrites a file.\n",
    .min_args = 1,
    .max_args = 1,
    .reads_config = 1,
    .flags = new_flags,
};

static const char template_http[] =
    "-- %s: an HTTP function. Try: %s\n"
    "return {\n"
    "  timeout = 10,   -- seconds\n"
    "  memory = 128,   -- MB\n"
    "  handler = function(event, ctx)\n"
    "    local name = event.query.name or \"world\"\n"
    "    return { message = \"hello \" .. name, requestId = ctx.requestId }\n"
    "  end,\n"
    "}\n";

/* For a route with parameters: the handler answers them (%s: the fields). */
static const char template_params[] =
    "-- %s: an HTTP function. Try: %s\n"
    "return {\n"
    "  timeout = 10,   -- seconds\n"
    "  memory = 128,   -- MB\n"
    "  handler = function(event, ctx)\n"
    "    -- event.params holds the route's parameters (%s)\n"
    "    return { %srequestId = ctx.requestId }\n"
    "  end,\n"
    "}\n";

/* The other triggers' templates (%s: the name) and every template's test (%s: the name, used
 * in t.invoke). */
static const char template_cron[] =
    "-- %s: runs on a schedule (every 5 minutes, UTC); also callable by name (crescent invoke).\n"
    "local kv = require \"crescent.kv\"\n"
    "return {\n"
    "  triggers = { { cron = \"*/5 * * * *\" } },\n"
    "  timeout = 60,\n"
    "  handler = function(event, ctx)\n"
    "    -- event = { source = \"cron\", schedule = \"*/5 * * * *\", scheduledTime = \"...\", time = \"...\" }\n"
    "    local runs = kv.incr(\"%s:runs\")\n"
    "    ctx.log.info(\"run \" .. runs .. \" for \" .. tostring(event.scheduledTime))\n"
    "    return { runs = runs }\n"
    "  end,\n"
    "}\n";

static const char template_queue[] =
    "-- %s: consumes the queue \"jobs\" (send with require(\"crescent.queue\").send(\"jobs\", {...})).\n"
    "local kv = require \"crescent.kv\"\n"
    "return {\n"
    "  triggers = { { queue = \"jobs\", batch = 10, maxReceives = 3 } },\n"
    "  handler = function(event, ctx)\n"
    "    local failed = {}\n"
    "    for _, r in ipairs(event.records) do\n"
    "      if type(r.body) ~= \"table\" then\n"
    "        failed[#failed + 1] = r.id -- handed out again; after 3 receives, to jobs.dlq\n"
    "      else\n"
    "        kv.incr(\"jobs:done\")\n"
    "      end\n"
    "    end\n"
    "    return { failed = failed }\n"
    "  end,\n"
    "}\n";

static const char template_storage[] =
    "-- %s: runs when an object is put in the bucket \"uploads\".\n"
    "local storage = require \"crescent.storage\"\n"
    "return {\n"
    "  triggers = { { storage = \"uploads\", events = { \"put\" } } },\n"
    "  handler = function(event, ctx)\n"
    "    local bytes = 0\n"
    "    for _, r in ipairs(event.records) do\n"
    "      local data = storage.get(r.bucket, r.key) -- nil: deleted since\n"
    "      if data then bytes = bytes + #data end\n"
    "    end\n"
    "    ctx.log.info(\"saw \" .. #event.records .. \" objects\", { bytes = bytes })\n"
    "    return { bytes = bytes }\n"
    "  end,\n"
    "}\n";

static const char template_kv[] =
    "-- %s: runs on writes under \"item:\" in the KV namespace \"items\".\n"
    "return {\n"
    "  triggers = { { kv = \"item:\", namespace = \"items\" } },\n"
    "  handler = function(event, ctx)\n"
    "    local puts = 0\n"
    "    for _, r in ipairs(event.records) do\n"
    "      if r.op == \"put\" then puts = puts + 1 end\n"
    "      ctx.log.info(r.op .. \" \" .. r.key, { version = r.version })\n"
    "    end\n"
    "    return { puts = puts }\n"
    "  end,\n"
    "}\n";

static const char template_auth[] =
    "-- %s: an authorizer. A route uses it with auth = { authorizer = \"%s\" }; the caller\n"
    "-- sends Authorization: Bearer <token>. Replace the check with yours (a JWT, a lookup...).\n"
    "return {\n"
    "  timeout = 5,\n"
    "  handler = function(event, ctx)\n"
    "    -- event = { source = \"authorizer\", identity = \"Bearer ...\", method =, path =, headers = }\n"
    "    if event.identity == \"Bearer let-me-in\" then\n"
    "      return { allow = true, principal = \"user-1\", context = { plan = \"free\" } }\n"
    "    end\n"
    "    return { allow = false }\n"
    "  end,\n"
    "}\n";

static const char test_http[] =
    "-- %s_test.lua: run with `crescent test` (the function runs as on the server, on a throwaway Redis)\n"
    "local t = require \"crescent.test\"\n"
    "\n"
    "t.test(\"answers with a request id\", function()\n"
    "  local r = t.invoke(\"%s\", { query = { name = \"ana\" }, params = {} })\n"
    "  t.ok(r.requestId, \"a request id\")\n"
    "end)\n";

static const char test_cron[] =
    "-- %s_test.lua: run with `crescent test`\n"
    "local t = require \"crescent.test\"\n"
    "\n"
    "t.test(\"counts its runs\", function()\n"
    "  local event = { source = \"cron\", schedule = \"*/5 * * * *\", scheduledTime = \"2026-01-01T00:05:00.000Z\" }\n"
    "  local first = t.invoke(\"%s\", event)\n"
    "  local second = t.invoke(\"%s\", event)\n"
    "  t.equal(second.runs, first.runs + 1)\n"
    "end)\n";

static const char test_queue[] =
    "-- %s_test.lua: run with `crescent test`\n"
    "local t = require \"crescent.test\"\n"
    "\n"
    "t.test(\"fails the records it cannot read\", function()\n"
    "  local r = t.invoke(\"%s\", { records = {\n"
    "    { id = \"1-0\", body = { n = 1 }, receiveCount = 1 },\n"
    "    { id = \"2-0\", body = \"not a table\", receiveCount = 1 },\n"
    "  } })\n"
    "  t.equal(r.failed, { \"2-0\" })\n"
    "end)\n";

static const char test_storage[] =
    "-- %s_test.lua: run with `crescent test`\n"
    "local t = require \"crescent.test\"\n"
    "local storage = require \"crescent.storage\"\n"
    "\n"
    "t.test(\"reads what was put\", function()\n"
    "  storage.put(\"uploads\", \"a.txt\", \"hello\")\n"
    "  local r = t.invoke(\"%s\", { records = { { op = \"put\", bucket = \"uploads\", key = \"a.txt\" } } })\n"
    "  t.equal(r.bytes, 5)\n"
    "end)\n";

static const char test_kv[] =
    "-- %s_test.lua: run with `crescent test`\n"
    "local t = require \"crescent.test\"\n"
    "\n"
    "t.test(\"counts the puts\", function()\n"
    "  local r = t.invoke(\"%s\", { records = {\n"
    "    { op = \"put\", key = \"item:1\", value = { name = \"tea\" }, version = 1 },\n"
    "    { op = \"delete\", key = \"item:2\", version = 2 },\n"
    "  } })\n"
    "  t.equal(r.puts, 1)\n"
    "end)\n";

static const char test_auth[] =
    "-- %s_test.lua: run with `crescent test`\n"
    "local t = require \"crescent.test\"\n"
    "\n"
    "t.test(\"allows the right token only\", function()\n"
    "  local yes = t.invoke(\"%s\", { source = \"authorizer\", identity = \"Bearer let-me-in\" })\n"
    "  t.equal(yes.allow, true)\n"
    "  t.equal(yes.principal, \"user-1\")\n"
    "  local no = t.invoke(\"%s\", { source = \"authorizer\", identity = \"Bearer wrong\" })\n"
    "  t.equal(no.allow, false)\n"
    "end)\n";

typedef struct {
  const char *name;
  const char *fn;   /* NULL: http, the route's templates */
  const char *test;
  int fn_names, test_names; /* how many %s take the function's name */
} trigger_t;

static const trigger_t triggers[] = {
    {"http", NULL, test_http, 0, 2},
    {"cron", template_cron, test_cron, 2, 3},
    {"queue", template_queue, test_queue, 1, 2},
    {"storage", template_storage, test_storage, 1, 2},
    {"kv", template_kv, test_kv, 1, 2},
    {"auth", template_auth, test_auth, 2, 3},
};

/* Writes text to path unless a file is there: 0, or 1 (printed). */
static int create(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) {
    fprintf(stderr, "crescent new: cannot create %s: %s\n", path, strerror(errno));
    return 1;
  }
  FILE *f = fdopen(fd, "w");
  if (!f) cr_oom(BUFSIZ);
  fputs(text, f);
  return fclose(f) ? 1 : 0;
}

static int is_lua_keyword(const char *s, size_t n) {
  static const char *const kw[] = {"and",  "break", "do",  "else", "elseif", "end",    "false", "for",
                                   "function", "goto", "if", "in",  "local",  "nil",    "not",   "or",
                                   "repeat", "return", "then", "true", "until", "while"};
  for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++)
    if (strlen(kw[i]) == n && memcmp(kw[i], s, n) == 0) return 1;
  return 0;
}

/* The route's sample path (":id" becomes 42, "*path" a/b) into url, and
 * `id = event.params.id, ` for each parameter into fields. */
static void sample(const char *route, cr_buf_t *url, cr_buf_t *fields) {
  for (const char *p = route; *p;) {
    const char *end = strchr(p + 1, '/');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    /* p is at a '/'; the segment is p+1 .. p+len */
    if (len > 1 && (p[1] == ':' || p[1] == '*')) {
      const char *name = p + 2;
      size_t nl = len - 2;
      cr_buf_append(url, p[1] == ':' ? "/42" : "/a/b", p[1] == ':' ? 3 : 4);
      if (nl) {
        if (is_lua_keyword(name, nl))
          cr_buf_printf(fields, "[\"%.*s\"] = event.params[\"%.*s\"], ", (int)nl, name, (int)nl, name);
        else
          cr_buf_printf(fields, "%.*s = event.params.%.*s, ", (int)nl, name, (int)nl, name);
      }
    } else {
      cr_buf_append(url, p, len);
    }
    p += len;
  }
}

/* `curl HOST:PORT/path`, with the host and port the server will listen on;
 * quoted when the path has a character the shell or curl would read. */
static void curl_command(const cr_config_t *cfg, const char *path, cr_buf_t *out) {
  const char *h = cfg->listen_host;
  int loopback_or_any = strcmp(h, "127.0.0.1") == 0 || strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0 ||
                        strcmp(h, "::1") == 0 || strcmp(h, "localhost") == 0;
  char host[80], port[16];
  if (loopback_or_any) snprintf(host, sizeof host, "localhost");
  else if (strchr(h, ':')) snprintf(host, sizeof host, "[%s]", h);
  else snprintf(host, sizeof host, "%s", h);
  /* Port 0 picks one when the server starts: no real URL yet. */
  if (cfg->listen_port) snprintf(port, sizeof port, "%d", cfg->listen_port);
  else snprintf(port, sizeof port, "PORT");
  int quote = host[0] == '[';
  for (const char *c = path; *c && !quote; c++)
    quote = !((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || strchr("/._~:-", *c));
  /* A path with a quote of its own is left for the user to quote. */
  if (strchr(path, '\'')) quote = 0;
  cr_buf_printf(out, "curl %s%s:%s%s%s", quote ? "'" : "", host, port, path, quote ? "'" : "");
}

int cr_cmd_new(int argc, char **argv) {
  cr_config_t cfg;
  char *rest[64];
  int nrest;
  /* --trigger is new's own, not a server flag: taken out before the configuration reads the rest. */
  const char *trig = "http";
  char *args[72];
  int nargs = 0;
  for (int i = 0; i < argc && nargs < 70; i++) {
    if (i >= 2 && strcmp(argv[i], "--trigger") == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "crescent new: missing the value of '--trigger'\n");
        return 2;
      }
      trig = argv[++i];
    } else if (i >= 2 && strncmp(argv[i], "--trigger=", 10) == 0) {
      trig = argv[i] + 10;
    } else {
      args[nargs++] = argv[i];
    }
  }
  args[nargs] = NULL;
  int rc = cr_cli_start(&cr_cli_new, &cfg, nargs, args, rest, &nrest);
  if (rc >= 0) return rc;
  const trigger_t *tr = NULL;
  for (size_t i = 0; i < sizeof triggers / sizeof triggers[0]; i++)
    if (strcmp(triggers[i].name, trig) == 0) tr = &triggers[i];
  if (!tr) {
    fprintf(stderr, "crescent new: --trigger: expected http, cron, queue, storage, kv or auth, got '%s'\n", trig);
    cr_config_free(&cfg);
    return 2;
  }
  /* `new users.lua` means the function users, not users.lua.lua. */
  char name[300];
  size_t nl = strlen(rest[0]);
  if (nl > 4 && strcmp(rest[0] + nl - 4, ".lua") == 0) nl -= 4;
  char rel[512], path[4096], route[600], why[300] = "";
  int bad = nl >= sizeof name - 1;
  if (!bad) {
    memcpy(name, rest[0], nl);
    name[nl] = '\0';
    snprintf(rel, sizeof rel, "%s.lua", name);
    /* A part starting with '.' is refused, so ".." cannot climb out of the
     * folder, while docs/[...path] (a catch-all) is a name. */
    bad = nl == 0 || name[0] == '/' || !cr_registry_is_function_path(rel);
    if (bad) snprintf(why, sizeof why, "no '..', no leading '/', no part starting with '_' or '.', not under lib/");
  } else {
    snprintf(name, sizeof name, "%.40s...", rest[0]);
    snprintf(why, sizeof why, "at most %d bytes", (int)sizeof name - 2);
  }
  /* The same route check as the server's (registry.c), with the router's reason. */
  if (!bad && (cr_registry_default_route(name, route, sizeof route) || cr_router_check_pattern(route, why, sizeof why)))
    bad = 1;
  if (bad) {
    fprintf(stderr, "crescent new: '%s' is not a valid function name: %s\n", name, why[0] ? why : "too long");
    cr_config_free(&cfg);
    return 2;
  }
  cr_buf_t url = CR_BUF_INIT, fields = CR_BUF_INIT, curl = CR_BUF_INIT;
  sample(route, &url, &fields);
  int with_params = fields.len > 0; /* not a ':' inside a segment ("/a:b" is plain) */
  cr_buf_append(&url, "", 1); /* NUL */
  curl_command(&cfg, url.data, &curl);
  cr_buf_append(&curl, "", 1);
  cr_buf_append(&fields, "", 1);
  snprintf(path, sizeof path, "%s/%s", cfg.functions_dir, rel);
  /* Make the folders on the way, the functions folder first. */
  mkdir(cfg.functions_dir, 0755);
  for (char *p = path + strlen(cfg.functions_dir) + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    mkdir(path, 0755);
    *p = '/';
  }
  /* The test first: with a function there already, a test may still be missing; with the
   * test there, nothing is made. */
  char test_path[4200];
  snprintf(test_path, sizeof test_path, "%.*s_test.lua", (int)(strlen(path) - 4), path);
  if (access(path, F_OK) == 0 || access(test_path, F_OK) == 0) {
    fprintf(stderr, "crescent new: %s exists already: nothing made\n", access(path, F_OK) == 0 ? path : test_path);
    rc = 1;
  } else {
    cr_buf_t text = CR_BUF_INIT, test = CR_BUF_INIT;
    if (!tr->fn && with_params) cr_buf_printf(&text, template_params, name, curl.data, route, fields.data);
    else if (!tr->fn) cr_buf_printf(&text, template_http, name, curl.data);
    else if (tr->fn_names == 2) cr_buf_printf(&text, tr->fn, name, name);
    else cr_buf_printf(&text, tr->fn, name);
    if (tr->test_names == 3) cr_buf_printf(&test, tr->test, name, name, name);
    else cr_buf_printf(&test, tr->test, name, name);
    rc = create(path, cr_buf_cstr(&text));
    if (!rc) rc = create(test_path, cr_buf_cstr(&test));
    if (!rc && !tr->fn) printf("created %s, served at %s: try %s\n", path, route, curl.data);
    else if (!rc) printf("created %s (--trigger %s)\n", path, tr->name);
    if (!rc) printf("created %s: run it with crescent test\n", test_path);
    cr_buf_free(&text);
    cr_buf_free(&test);
  }
  cr_buf_free(&url);
  cr_buf_free(&fields);
  cr_buf_free(&curl);
  cr_config_free(&cfg);
  return rc;
}
