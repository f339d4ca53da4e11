/* version.c - crescent version: crescent and its libraries. */
#include <llhttp.h>
#include <luajit.h>
#include <stdio.h>
#include <uv.h>
#include <hiredis/hiredis.h>

#include "cli.h"

const cr_cli_cmd_t cr_cli_version = {
    .name = "version",
    .args = "",
    .about = "Prints crescent's version and its libraries'.\n",
};

int cr_cmd_version(int argc, char **argv) {
  char *rest[64];
  int nrest;
  int rc = cr_cli_start(&cr_cli_version, NULL, argc, argv, rest, &nrest);
  if (rc >= 0) return rc;
  printf("crescent %s (%s, libuv %s, llhttp %d.%d.%d, hiredis %d.%d.%d)\n", CRESCENT_VERSION, LUAJIT_VERSION,
         uv_version_string(), LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH, HIREDIS_MAJOR,
         HIREDIS_MINOR, HIREDIS_PATCH);
  return 0;
}
