/* settings.h - a function's settings: what its file returns besides the handler.
 *
 * A function file returns either a handler or a table { handler = f, routes,
 * timeout, memory, concurrency, warm, idle, env, triggers }. This module reads
 * that table (cr_settings_read), checking every key and type with messages
 * that name the key, and moves settings between processes (pack/unpack): the
 * validator process reads them, the master and the workers use them. */
#ifndef CR_SETTINGS_H
#define CR_SETTINGS_H

#include <stddef.h>

#include "buf.h"

typedef struct lua_State lua_State;

/* Per-route gateway policy (auth, rate limit, CORS, cache) to come. Nothing
 * sets a policy yet: a zeroed one means "no policy", which is every route
 * today and what the gateway does now. A policy kind is added as a
 * CR_POLICY_* bit plus its fields here, packed in settings.c; unpack refuses
 * bits it does not know, so a stale worker cannot drop a policy silently. */
#define CR_POLICY_KNOWN 0u /* the CR_POLICY_* bits defined so far: none */
typedef struct {
  unsigned flags; /* CR_POLICY_* bits of the policies set; 0: none */
} cr_route_policy_t;

typedef struct {
  unsigned methods;         /* CR_M_* bits */
  char *path;               /* pattern, see router.h */
  cr_route_policy_t policy; /* zeroed: none */
} cr_route_spec_t;

typedef struct cr_settings_s {
  int has_routes;           /* 0: the default route from the file's path */
  int nroutes;
  cr_route_spec_t *routes;
  double timeout;           /* seconds, (0, 900] */
  int memory;               /* MB */
  int concurrency;          /* instances across all workers */
  int warm;                 /* instances kept booted per worker */
  double idle;              /* seconds before an unused instance is closed */
  int nenv;
  char **env;               /* 2*nenv strings: name, value, ... */
  char *triggers;           /* JSON array, or NULL */
} cr_settings_t;

#define CR_DEFAULT_TIMEOUT 10.0
#define CR_MAX_TIMEOUT 900.0
#define CR_DEFAULT_MEMORY 128
#define CR_MAX_MEMORY 10240
#define CR_DEFAULT_CONCURRENCY 100
#define CR_MAX_CONCURRENCY 10000
#define CR_DEFAULT_IDLE 300.0

void cr_settings_defaults(cr_settings_t *s);
void cr_settings_free(cr_settings_t *s);

/* Reads the value at idx (a function, or a settings table with a handler).
 * Fills s and returns 0, or writes "setting 'x' must be ..." to err and
 * returns CR_EINVAL. Leaves the Lua stack as it found it. */
int cr_settings_read(lua_State *L, int idx, cr_settings_t *s, char *err, size_t errlen);
/* The same for the platform's own functions, which may route under /_/. */
int cr_settings_read_platform(lua_State *L, int idx, cr_settings_t *s, char *err, size_t errlen);

/* Serialization between processes. unpack returns CR_EINVAL on bad input. */
int cr_settings_pack(const cr_settings_t *s, cr_buf_t *out);
int cr_settings_unpack(const char *data, size_t len, cr_settings_t *s);
/* Unpacks from a reader (more may follow). */
struct cr_wire_reader_s;
int cr_settings_unpack_from(struct cr_wire_reader_s *r, cr_settings_t *s);

/* The value of env name, or NULL. */
const char *cr_settings_env(const cr_settings_t *s, const char *name);
/* Sets env name to value (replacing it if present). */
int cr_settings_set_env(cr_settings_t *s, const char *name, const char *value);

#endif
