/* new.c - crescent new NAME: a function file from a template. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "config.h"
#include "registry.h"
#include "cli.h"

static const char template_http[] =
    "-- %s: an HTTP function. Try: curl localhost:8080%s\n"
    "return {\n"
    "  timeout = 10,   -- seconds\n"
    "  memory = 128,   -- MB\n"
    "  handler = function(event, ctx)\n"
    "    local name = event.query.name or \"world\"\n"
    "    return { message = \"hello \" .. name, requestId = ctx.requestId }\n"
    "  end,\n"
    "}\n";

static const char *const new_flags[] = {"functions", NULL};

const cr_cli_cmd_t cr_cli_new = {
    .name = "new",
    .args = "NAME",
    .about = "Makes DIR/NAME.lua (DIR: the --functions folder, ./functions) from a template, with the\n"
             "folders on the way. Never overwrites a file.\n",
    .min_args = 1,
    .max_args = 1,
    .reads_config = 1,
    .flags = new_flags,
};

int cr_cmd_new(int argc, char **argv) {
  cr_config_t cfg;
  char *rest[64];
  int nrest;
  int rc = cr_cli_start(&cr_cli_new, &cfg, argc, argv, rest, &nrest);
  if (rc >= 0) return rc;
  const char *name = rest[0];
  char rel[512], path[4096], route[600];
  snprintf(rel, sizeof rel, "%s.lua", name);
  if (strstr(name, "..") || name[0] == '/' || !cr_registry_is_function_path(rel)) {
    fprintf(stderr, "crescent new: '%s' is not a valid function name (no '..', no leading '/', '_' or '.')\n", name);
    cr_config_free(&cfg);
    return 2;
  }
  snprintf(path, sizeof path, "%s/%s", cfg.functions_dir, rel);
  if (cr_registry_default_route(name, route, sizeof route)) snprintf(route, sizeof route, "/%s", name);
  /* Make the folders on the way. */
  for (char *p = path + strlen(cfg.functions_dir) + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    mkdir(path, 0755);
    *p = '/';
  }
  mkdir(cfg.functions_dir, 0755);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) {
    fprintf(stderr, "crescent new: cannot create %s: %s\n", path, strerror(errno));
    cr_config_free(&cfg);
    return 1;
  }
  FILE *f = fdopen(fd, "w");
  if (!f) cr_oom(BUFSIZ);
  fprintf(f, template_http, name, route);
  fclose(f);
  printf("created %s (served at %s)\n", path, route);
  cr_config_free(&cfg);
  return 0;
}
