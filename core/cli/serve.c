/* serve.c - crescent serve: run the master (and its workers) until stopped. */
#include <stdio.h>

#include "config.h"
#include "log.h"
#include "master.h"
#include "cli.h"

int cr_cmd_serve(int argc, char **argv) {
  cr_config_t cfg;
  char *rest[64];
  int nrest;
  if (argc > 64 + 2 || cr_cli_load_config(&cfg, argc, argv, rest, &nrest)) return 2;
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
