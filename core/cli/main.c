/* main.c - the crescent command: serve, check, new, version (one file each). */
#include <stdio.h>
#include <string.h>

#include "loader.h"
#include "modules.h"
#include "cli.h"

void cr_cli_usage(FILE *out) {
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

int cr_cli_load_config(cr_config_t *cfg, int argc, char **argv, char **rest, int *nrest) {
  char err[600];
  cr_config_defaults(cfg);
  if (cr_config_load(cfg, NULL, argc, argv, 2, rest, nrest, err, sizeof err)) {
    fprintf(stderr, "crescent: %s\n", err);
    cr_config_free(cfg);
    return -1;
  }
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
    cr_cli_usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "serve") == 0) return with_validator_stdlib(cr_cmd_serve, argc, argv);
  if (strcmp(cmd, "check") == 0) return with_validator_stdlib(cr_cmd_check, argc, argv);
  if (strcmp(cmd, "new") == 0) return cr_cmd_new(argc, argv);
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) return cr_cmd_version();
  if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
    cr_cli_usage(stdout);
    return 0;
  }
  fprintf(stderr, "crescent: unknown command '%s'\n\n", cmd);
  cr_cli_usage(stderr);
  return 2;
}
