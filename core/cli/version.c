/* version.c - crescent version: crescent and its libraries. */
#include <llhttp.h>
#include <luajit.h>
#include <stdio.h>
#include <uv.h>
#include <hiredis/hiredis.h>

#include "cli.h"

int cr_cmd_version(void) {
  printf("crescent %s (%s, libuv %s, llhttp %d.%d.%d, hiredis %d.%d.%d)\n", CRESCENT_VERSION, LUAJIT_VERSION,
         uv_version_string(), LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH, HIREDIS_MAJOR,
         HIREDIS_MINOR, HIREDIS_PATCH);
  return 0;
}
