/* cli.h - the crescent command's parts: one file per command.
 *
 * main.c picks the command; each command parses its own flags with
 * cr_cli_load_config() (flags, CRESCENT_* environment, crescent.conf) and
 * returns the process's exit status: 0 done, 1 failed, 2 usage error. */
#ifndef CR_CLI_H
#define CR_CLI_H

#include <stdio.h>

#include "config.h"

void cr_cli_usage(FILE *out);
/* Loads the configuration from argv[2..]; arguments that are not flags go to
 * rest (at most 64). Prints the error and returns -1 on a bad flag. */
int cr_cli_load_config(cr_config_t *cfg, int argc, char **argv, char **rest, int *nrest);

int cr_cmd_serve(int argc, char **argv);
int cr_cmd_check(int argc, char **argv);
int cr_cmd_new(int argc, char **argv);
int cr_cmd_version(void);

#endif
