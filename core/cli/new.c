/* new.c - crescent new NAME: a function file from a template.
 *
 * The name is checked as `crescent check` and the server will check the
 * file (a function path whose default route is a valid route), before
 * anything is created, so what new makes always loads. */
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
    .about = "Makes DIR/NAME.lua (DIR: the --functions folder, ./functions) from a template, with the\n"
             "folders on the way. NAME is the function's name, its path without .lua (a .lua suffix is\n"
             "dropped): users/[id] is served at /users/:id. Never overwrites a file.\n",
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
  int rc = cr_cli_start(&cr_cli_new, &cfg, argc, argv, rest, &nrest);
  if (rc >= 0) return rc;
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
  /* Make the folders on the way. */
  for (char *p = path + strlen(cfg.functions_dir) + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    mkdir(path, 0755);
    *p = '/';
  }
  mkdir(cfg.functions_dir, 0755);
  rc = 0;
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) {
    fprintf(stderr, "crescent new: cannot create %s: %s\n", path, strerror(errno));
    rc = 1;
  } else {
    FILE *f = fdopen(fd, "w");
    if (!f) cr_oom(BUFSIZ);
    if (with_params) fprintf(f, template_params, name, curl.data, route, fields.data);
    else fprintf(f, template_http, name, curl.data);
    fclose(f);
    printf("created %s, served at %s: try %s\n", path, route, curl.data);
  }
  cr_buf_free(&url);
  cr_buf_free(&fields);
  cr_buf_free(&curl);
  cr_config_free(&cfg);
  return rc;
}
