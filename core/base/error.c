/* error.c - messages for CR_E* codes and negative errno values. */
#include "error.h"

#include <string.h>

const char *cr_strerror(int err) {
  switch (err) {
  case 0:
    return "ok";
#define XX(name, code, msg) \
  case CR_E##name:          \
    return msg;
    CR_ERRNO_MAP(XX)
#undef XX
  default:
    if (err < 0 && err > -4096) return strerror(-err);
    return "unknown error";
  }
}
