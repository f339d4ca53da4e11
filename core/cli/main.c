/* main.c - the crescent command: serve, check, new, version. */
#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <luajit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>
#include <hiredis/hiredis.h>

#include "alloc.h"
#include "config.h"
#include "error.h"
#include "loader.h"
#include "log.h"
#include "master.h"
#include "modules.h"
#include "registry.h"
#include "shm.h"
#include "vm.h"

static void usage(FILE *out) {
  fprintf(out,
          "crescent - serverless Lua functions, self-hosted\n"
          "\n"
          "usage:\n"
          "  crescent serve [flags]              serve the functions folder over HTTP\n"
          "  crescent check [DIR]                validate every function in DIR (default ./functions)\n"
          "  crescent new NAME [--functions DIR] make DIR/NAME.lua from a template\n"
          "  crescent version                    print versions\n"
          "\n"
          "flags (each also CRESCENT_<NAME> in the environment, or 'name = value' in crescent.conf):\n");
  cr_config_usage(out);
}

static int load_config(cr_config_t *cfg, int argc, char **argv, char **rest, int *nrest) {
  char err[600];
  cr_config_defaults(cfg);
  if (cr_config_load(cfg, NULL, argc, argv, 2, rest, nrest, err, sizeof err)) {
    fprintf(stderr, "crescent: %s\n", err);
    cr_config_free(cfg);
    return -1;
  }
  return 0;
}

static int cmd_serve(int argc, char **argv) {
  cr_config_t cfg;
  char *rest[64];
  int nrest;
  if (argc > 64 + 2 || load_config(&cfg, argc, argv, rest, &nrest)) return 2;
  if (nrest > 0) {
    fprintf(stderr, "crescent serve: unexpected argument '%s' (see crescent --help)\n", rest[0]);
    cr_config_free(&cfg);
    return 2;
  }
  int rc = cr_master_run(&cfg);
  cr_log_flush();
  cr_config_free(&cfg);
  return rc;
}

static int cmd_check(int argc, char **argv) {
  cr_config_t cfg;
  char *rest[64];
  int nrest;
  if (argc > 64 + 2 || load_config(&cfg, argc, argv, rest, &nrest)) return 2;
  const char *dir = nrest > 0 ? rest[0] : cfg.functions_dir;
  cr_log_set_level(CR_LOG_WARN);
  struct stat st;
  if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
    fprintf(stderr, "%s: not a folder\n", dir);
    cr_config_free(&cfg);
    return 1;
  }
  char **paths = NULL;
  int n = 0;
  if (cr_registry_list(dir, &paths, &n)) {
    fprintf(stderr, "%s: cannot read the folder\n", dir);
    cr_config_free(&cfg);
    return 1;
  }
  cr_load_t *loads = cr_xcalloc((size_t)n, sizeof *loads);
  char **sources = cr_xcalloc((size_t)n, sizeof *sources);
  char **read_errors = cr_xcalloc((size_t)n, sizeof *read_errors);
  int problems = 0;
  for (int i = 0; i < n; i++) {
    char err[512];
    size_t len = 0;
    loads[i].relpath = paths[i];
    loads[i].source = "";
    if (cr_loader_read(dir, paths[i], &sources[i], &len, err, sizeof err) == 0) {
      loads[i].source = sources[i];
      loads[i].len = len;
    } else {
      read_errors[i] = cr_xstrdup(err[0] ? err : "out of memory");
    }
  }
  cr_loader_run(dir, loads, n, cfg.init_timeout);
  cr_registry_t *reg = cr_registry_new(dir);
  for (int i = 0; i < n; i++) {
    cr_fn_t *fn = cr_registry_add(reg, paths[i]);
    if (read_errors[i]) {
      fprintf(stderr, "%s\n", read_errors[i]);
      problems++;
    } else if (!fn) {
      fprintf(stderr, "%s: not checked: more than %d functions\n", paths[i], CR_SHM_MAX_FUNCTIONS);
      problems++;
    } else if (loads[i].ok) {
      cr_registry_publish(reg, fn, sources[i], loads[i].len, &loads[i].settings);
      sources[i] = NULL;
    } else {
      fprintf(stderr, "%s\n", loads[i].error ? loads[i].error : paths[i]);
      problems++;
    }
    cr_load_clear(&loads[i]);
  }
  /* Route conflicts, exactly as the server decides them. */
  cr_log_setup(-1, 0);
  for (int i = 0; i < reg->nfns; i++) {
    cr_fn_t *fn = reg->fns[i];
    free(fn->error);
    fn->error = NULL;
  }
  cr_registry_route(reg);
  for (int i = 0; i < reg->nfns; i++) {
    cr_fn_t *fn = reg->fns[i];
    if (fn->current && fn->error) {
      fprintf(stderr, "%s: %s\n", fn->relpath, fn->error);
      problems++;
    }
  }
  if (problems == 0) printf("ok: %d function%s in %s\n", n, n == 1 ? "" : "s", dir);
  else fprintf(stderr, "%d problem%s in %s\n", problems, problems == 1 ? "" : "s", dir);
  for (int i = 0; i < n; i++) {
    free(sources[i]);
    free(read_errors[i]);
    free(paths[i]);
  }
  free(sources);
  free(read_errors);
  free(loads);
  free(paths);
  cr_registry_free(reg);
  cr_config_free(&cfg);
  return problems ? 1 : 0;
}

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

static int cmd_new(int argc, char **argv) {
  cr_config_t cfg;
  char *rest[64];
  int nrest;
  if (argc > 64 + 2 || load_config(&cfg, argc, argv, rest, &nrest)) return 2;
  if (nrest != 1) {
    fprintf(stderr, "usage: crescent new NAME [--functions DIR]\n");
    cr_config_free(&cfg);
    return 2;
  }
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

static int cmd_version(void) {
  printf("crescent %s (%s, libuv %s, llhttp %d.%d.%d, hiredis %d.%d.%d)\n", CRESCENT_VERSION, LUAJIT_VERSION,
         uv_version_string(), LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH, HIREDIS_MAJOR,
         HIREDIS_MINOR, HIREDIS_PATCH);
  return 0;
}

/* The validators' states (`crescent check`'s and the server's) know the
 * crescent.* modules as a worker's do, on a stdlib without Redis: a call
 * during init raises there as it would in a worker. */
static int with_validator_stdlib(int (*cmd)(int, char **), int argc, char **argv) {
  cr_stdlib_t *stdlib = cr_stdlib_new(NULL, NULL);
  if (!stdlib) {
    fprintf(stderr, "crescent: out of memory\n");
    return 1;
  }
  cr_loader_set_preload(cr_stdlib_preload, stdlib);
  int rc = cmd(argc, argv);
  cr_loader_set_preload(NULL, NULL);
  cr_stdlib_free(stdlib);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "serve") == 0) return with_validator_stdlib(cmd_serve, argc, argv);
  if (strcmp(cmd, "check") == 0) return with_validator_stdlib(cmd_check, argc, argv);
  if (strcmp(cmd, "new") == 0) return cmd_new(argc, argv);
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) return cmd_version();
  if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
    usage(stdout);
    return 0;
  }
  fprintf(stderr, "crescent: unknown command '%s'\n\n", cmd);
  usage(stderr);
  return 2;
}
