/* main.c - the crescent command: serve, check, new, version (one file each). */
#include <stdio.h>
#include <string.h>

#include "loader.h"
#include "modules.h"
#include "cli.h"

static const cr_cli_cmd_t *const commands[] = {&cr_cli_serve, &cr_cli_check, &cr_cli_new, &cr_cli_version, &cr_cli_invoke,
                                               &cr_cli_keys, &cr_cli_plans, &cr_cli_users, &cr_cli_cost, &cr_cli_logs,
                                               &cr_cli_stats, &cr_cli_queues, &cr_cli_test};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

void cr_cli_usage(FILE *out) {
  fprintf(out,
          "crescent - serverless Lua functions, self-hosted\n"
          "\n"
          "usage:\n"
          "  crescent serve [flags]              serve the functions folder over HTTP\n"
          "  crescent check [DIR]                validate every function in DIR (default ./functions)\n"
          "  crescent new NAME [--trigger T]     make functions/NAME.lua and NAME_test.lua from a template\n"
          "  crescent test [DIR]                 run the functions' tests (*_test.lua) on a throwaway server\n"
          "  crescent invoke NAME [--data JSON]  run a function on a running server, print its result\n"
          "  crescent keys SUBCOMMAND            API keys: create, list, revoke, usage\n"
          "  crescent plans SUBCOMMAND           usage plans: create, list, delete\n"
          "  crescent users list|get|disable|... manage the accounts of a running server (--accounts)\n"
          "  crescent cost [--by function|day]   requests, GB-seconds and cost of a running server\n"
          "  crescent logs [NAME] [-f]           the server's log lines (kept in Redis); -f follows\n"
          "  crescent stats [NAME] [--watch]     the functions' meters on a running server, as a table\n"
          "  crescent queues [NAME] [--redrive]  the queues on a running server; redrive a dead-letter queue\n"
          "  crescent version                    print versions\n"
          "  crescent COMMAND --help             one command's usage\n"
          "\n"
          "exit status: 0 done, 1 failed (the command says why on stderr), 2 a usage error.\n"
          "Commands that talk to a server take --url URL (CRESCENT_URL, default http://127.0.0.1:8080)\n"
          "and --token TOKEN (CRESCENT_ADMIN_TOKEN); those that print data take --json.\n"
          "\n"
          "flags (each also CRESCENT_<NAME> in the environment, or 'name = value' in crescent.conf):\n");
  cr_config_usage(out);
}

static void synopsis(const cr_cli_cmd_t *cmd, FILE *out) {
  fprintf(out, "usage: crescent %s%s%s%s\n", cmd->name, *cmd->args ? " " : "", cmd->args,
          cmd->reads_config ? " [flags]" : "");
}

void cr_cli_cmd_usage(const cr_cli_cmd_t *cmd, FILE *out) {
  synopsis(cmd, out);
  fprintf(out, "\n%s", cmd->about);
  if (!cmd->reads_config) return;
  fprintf(out, "\nflags (each also CRESCENT_<NAME> in the environment, or 'name = value' in crescent.conf):\n");
  cr_config_usage_of(out, cmd->flags);
}

static int usage_error(const cr_cli_cmd_t *cmd, const char *what, const char *arg) {
  fprintf(stderr, "crescent %s: %s '%s'\n", cmd->name, what, arg);
  synopsis(cmd, stderr);
  fprintf(stderr, "(crescent %s --help for more)\n", cmd->name);
  return 2;
}

int cr_cli_start(const cr_cli_cmd_t *cmd, cr_config_t *cfg, int argc, char **argv, char **rest, int *nrest) {
  /* Help first, wherever it is: `new -h` is a question, not a file name,
   * and `check --help` is not a flag that needs a value. */
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      cr_cli_cmd_usage(cmd, stdout);
      return 0;
    }
  }
  *nrest = 0;
  if (argc - 2 > 64) {
    fprintf(stderr, "crescent %s: too many arguments (%d)\n", cmd->name, argc - 2);
    return 2;
  }
  if (cmd->reads_config) {
    char err[600];
    cr_config_defaults(cfg);
    if (cr_config_load(cfg, NULL, argc, argv, 2, rest, nrest, err, sizeof err)) {
      fprintf(stderr, "crescent: %s\n", err);
      cr_config_free(cfg);
      return 2;
    }
  } else {
    for (int i = 2; i < argc; i++) rest[(*nrest)++] = argv[i];
  }
  const char *bad = NULL, *what = NULL;
  for (int i = 0; i < *nrest && !bad; i++) {
    if (rest[i][0] == '-' && rest[i][1]) {
      bad = rest[i];
      what = cmd->reads_config && rest[i][1] != '-' ? "unknown option" : "unexpected argument";
    } else if (i >= cmd->max_args) {
      bad = rest[i];
      what = "unexpected argument";
    }
  }
  if (!bad && *nrest < cmd->min_args) {
    bad = cmd->args;
    what = "missing";
  }
  if (bad) {
    if (cmd->reads_config) cr_config_free(cfg);
    return usage_error(cmd, what, bad);
  }
  return -1;
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

static const cr_cli_cmd_t *find_command(const char *name) {
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (strcmp(commands[i]->name, name) == 0) return commands[i];
  return NULL;
}

static int unknown_command(const char *name) {
  fprintf(stderr, "crescent: unknown command '%s'\n\n", name);
  cr_cli_usage(stderr);
  return 2;
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
  if (strcmp(cmd, "invoke") == 0) return cr_cmd_invoke(argc, argv);
  if (strcmp(cmd, "keys") == 0) return cr_cmd_keys(argc, argv);
  if (strcmp(cmd, "plans") == 0) return cr_cmd_plans(argc, argv);
  if (strcmp(cmd, "users") == 0) return cr_cmd_users(argc, argv);
  if (strcmp(cmd, "cost") == 0) return cr_cmd_cost(argc, argv);
  if (strcmp(cmd, "logs") == 0) return cr_cmd_logs(argc, argv);
  if (strcmp(cmd, "stats") == 0) return cr_cmd_stats(argc, argv);
  if (strcmp(cmd, "queues") == 0) return cr_cmd_queues(argc, argv);
  if (strcmp(cmd, "test") == 0) return cr_cmd_test(argc, argv);
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) return cr_cmd_version(argc, argv);
  if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
    /* `crescent help check` is `crescent check --help`. */
    if (argc > 3) {
      fprintf(stderr, "crescent help: unexpected argument '%s'\n", argv[3]);
      return 2;
    }
    if (argc == 3) {
      const cr_cli_cmd_t *c = find_command(argv[2]);
      if (!c) return unknown_command(argv[2]);
      cr_cli_cmd_usage(c, stdout);
      return 0;
    }
    cr_cli_usage(stdout);
    return 0;
  }
  return unknown_command(cmd);
}
