/* cli.h - the crescent command's parts: one file per command.
 *
 * main.c picks the command; each command describes itself (cr_cli_cmd_t:
 * its synopsis, what it does, how many arguments it takes, the flags it
 * reads), reads its arguments with cr_cli_start() and returns the process's
 * exit status: 0 done, 1 failed, 2 usage error. Every command answers -h and
 * --help with its own usage and exit 0, and refuses an argument it does not
 * take with exit 2, so no mistyped command line is ignored silently. */
#ifndef CR_CLI_H
#define CR_CLI_H

#include <stdio.h>

#include "config.h"

typedef struct {
  const char *name;         /* "check" */
  const char *args;         /* its positional arguments in the synopsis ("[DIR]"), "" for none */
  const char *about;        /* what it does: lines, each ending in '\n' */
  int min_args, max_args;   /* positional arguments taken */
  int reads_config;         /* 0: takes no flags and reads no crescent.conf (version) */
  const char *const *flags; /* the flags its help lists (NULL-terminated); NULL: every flag */
} cr_cli_cmd_t;

extern const cr_cli_cmd_t cr_cli_serve, cr_cli_check, cr_cli_new, cr_cli_version, cr_cli_invoke, cr_cli_keys,
    cr_cli_plans, cr_cli_users, cr_cli_cost, cr_cli_logs, cr_cli_stats, cr_cli_queues, cr_cli_test;

/* The overview: every command, then every flag. */
void cr_cli_usage(FILE *out);
/* One command's usage: synopsis, what it does, its flags. */
void cr_cli_cmd_usage(const cr_cli_cmd_t *cmd, FILE *out);

/* Reads the command's arguments, argv[2..argc). -h or --help anywhere
 * prints its usage on stdout: returns 0. A bad flag or value, an unknown
 * -x, too few or too many arguments print the error and the synopsis on
 * stderr: returns 2. Otherwise loads cfg (if the command reads the
 * configuration: crescent.conf, CRESCENT_*, flags; cfg must then be freed
 * with cr_config_free), leaves the positional arguments in rest (room for
 * 64) and *nrest, and returns -1: go on. */
int cr_cli_start(const cr_cli_cmd_t *cmd, cr_config_t *cfg, int argc, char **argv, char **rest, int *nrest);

int cr_cmd_serve(int argc, char **argv);
int cr_cmd_check(int argc, char **argv);
int cr_cmd_new(int argc, char **argv);
int cr_cmd_version(int argc, char **argv);
int cr_cmd_invoke(int argc, char **argv);
int cr_cmd_keys(int argc, char **argv);
int cr_cmd_plans(int argc, char **argv);
int cr_cmd_users(int argc, char **argv);
int cr_cmd_cost(int argc, char **argv);
int cr_cmd_logs(int argc, char **argv);
int cr_cmd_stats(int argc, char **argv);
int cr_cmd_queues(int argc, char **argv);
int cr_cmd_test(int argc, char **argv);

#endif
