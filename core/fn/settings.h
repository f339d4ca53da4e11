/* settings.h - a function's settings: what its file returns besides the handler.
 *
 * A function file returns either a handler or a table { handler = f, routes,
 * timeout, memory, concurrency, warm, idle, env, triggers, retries,
 * onSuccess, onFailure, egress, cors, rateLimit, auth, cache }. This module reads
 * that table (cr_settings_read), checking every key and type with messages
 * that name the key, and moves settings between processes (pack/unpack): the
 * validator process reads them, the master and the workers use them.
 *
 * Each `triggers` entry becomes a typed cr_trigger_spec_t at load, every key,
 * type, range and enum value checked and unknown keys refused, so the
 * trigger implementations only read C fields and never re-validate. A kind
 * this build does not run yet is refused at load by cr_settings_check_triggers
 * (after every entry passed its own checks, so a typo is reported first). */
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

/* --- triggers: { cron = ... } | { queue = ... } | { storage = ... } | { kv = ... } */

typedef enum {
  CR_TRIGGER_CRON = 1, /* 0 is never a valid kind, so a zeroed spec is not one */
  CR_TRIGGER_QUEUE,
  CR_TRIGGER_STORAGE,
  CR_TRIGGER_KV,
  CR_TRIGGER_AUTH, /* the accounts' hooks (core/trigger/http/accounts_api.c) */
} cr_trigger_kind_t;

/* { auth = "preSignUp" | ... }: which step of the accounts' flows calls the function. */
typedef enum {
  CR_AUTH_PRE_SIGN_UP = 1,
  CR_AUTH_POST_CONFIRMATION,
  CR_AUTH_PRE_SIGN_IN,
  CR_AUTH_POST_SIGN_IN,
  CR_AUTH_PRE_TOKEN_GENERATION,
  CR_AUTH_CUSTOM_MESSAGE,
} cr_auth_hook_t;
#define CR_AUTH_NHOOKS 6
/* "preSignUp" for CR_AUTH_PRE_SIGN_UP, ...; NULL for anything else. */
const char *cr_auth_hook_name(int hook);

#define CR_MAX_TRIGGERS 64 /* entries per function */

/* How a trigger that reads a stream through a consumer group (queue,
 * storage, kv) takes its records; the three share the ack, retry and
 * dead-letter rules, so they share the keys. Seconds are numbers, counts
 * integers, like the function's own settings. */
typedef struct {
  int batch;         /* batch: records per invocation, [1, 100], default 10 */
  double window;     /* window: seconds to wait to fill a batch, [0, 60], default 0 */
  double visibility; /* visibility: seconds before an unacknowledged record is handed out again,
                        [timeout, 43200], default 6 x timeout (see below) */
  int max_receives;  /* maxReceives: deliveries before the dead-letter queue, [1, 1000], default 5 */
  int concurrency;   /* concurrency: this trigger's batches read or in flight across all
                        workers (core/trigger/queue/consumer.c), [1, 1000], default 2 (the
                        function's own concurrency, across workers, applies too) */
} cr_stream_opts_t;

#define CR_DEFAULT_BATCH 10
#define CR_MAX_BATCH 100
#define CR_DEFAULT_WINDOW 0.0
#define CR_MAX_WINDOW 60.0
/* visibility defaults to CR_VISIBILITY_TIMEOUTS x the function's timeout (as
 * AWS advises for SQS) and may not be below the timeout, or a batch still
 * running would be handed out again; at most 12 h, SQS's maximum. */
#define CR_VISIBILITY_TIMEOUTS 6
#define CR_MAX_VISIBILITY 43200.0
#define CR_DEFAULT_MAX_RECEIVES 5
#define CR_MAX_MAX_RECEIVES 1000
#define CR_DEFAULT_TRIGGER_CONCURRENCY 2
#define CR_MAX_TRIGGER_CONCURRENCY 1000
/* catchUp: seconds within which a tick missed while down still fires, at
 * most 31 days (a monthly schedule can catch up its tick). Default 0. */
#define CR_MAX_CATCH_UP 2678400.0

/* storage events bits */
#define CR_STORAGE_PUT 1u
#define CR_STORAGE_DELETE 2u

/* One entry of `triggers`: kind says which member of the union is set. The
 * Lua key each field comes from starts its comment. Strings are malloc'd,
 * owned by the settings (cr_settings_free), and never hold a NUL. */
typedef struct {
  cr_trigger_kind_t kind;
  union {
    struct {
      /* cron: the expression, 1-256 bytes ("0 2 * * *", "cron(...)",
       * "rate(5 minutes)"). Only checked to be a non-empty string: the cron
       * parser will validate the expression when it exists. */
      char *expr;
      char *tz;        /* tz: a zone name (1-128 bytes), or NULL for UTC */
      double catch_up; /* catchUp: [0, CR_MAX_CATCH_UP] seconds, default 0 (skip missed ticks) */
      int overlap;     /* overlap: boolean, default 0 (a tick waits for the last run) */
    } cron;
    struct {
      char *name; /* queue: 1-128 of letters, digits, '_', '.', ':', '-' (crescent.queue's rule) */
      cr_stream_opts_t opts;
    } queue;
    struct {
      char *bucket;     /* storage: 1-63 of a-z, 0-9, '.', '-', first a letter or digit */
      unsigned events;  /* events: CR_STORAGE_* bits, a list of "put"/"delete", default both */
      char *prefix;     /* prefix: 0-1024 bytes without control characters, or NULL (any key) */
      char *suffix;     /* suffix: likewise */
      cr_stream_opts_t opts;
    } storage;
    struct {
      char *prefix; /* kv: the key prefix, 0-1024 bytes ("" = every key), no NUL */
      char *ns;     /* namespace: 1-64 of letters, digits, '_', '.', '-', default "default" */
      cr_stream_opts_t opts;
    } kv;
    struct {
      int hook; /* auth: a cr_auth_hook_t, from its name */
    } auth;
  };
} cr_trigger_spec_t;

/* --- gateway policies: the function's, on every one of its HTTP routes
 * (core/trigger/http/policy.c enforces them before an instance is taken) */

/* cors = { origins = { "https://app.example.com", "*.example.com" } | "*" (a wildcard host may also
 *          follow a scheme: "https:" then "//" and "*.example.com"),
 *          methods = { "GET", "PUT" }, headers = { "x-custom" }, exposeHeaders = { "x-total" },
 *          credentials = false, maxAge = 600 } */
typedef struct {
  int set;            /* cors given */
  int any_origin;     /* origins = "*" */
  int norigins;
  char **origins;     /* patterns, lower-case: "scheme://host[:port]", the same with a wildcard host
                         ("*.suffix" after the scheme), or "*.suffix" alone (any scheme and port) */
  char *methods;      /* "GET, PUT" (upper-case), or NULL: the function's route methods */
  char *headers;      /* "x-a, x-b" (lower-case), or NULL: what the preflight asks for */
  char *expose;       /* exposeHeaders joined, or NULL */
  int credentials;    /* Access-Control-Allow-Credentials: true (never with "*") */
  int max_age;        /* seconds, [0, 86400], default 600 */
} cr_cors_spec_t;

/* rateLimit = { rps = 100, burst = 200, by = "ip" | "key" | "principal" | "header.x-tenant" }
 * (by key / principal: the API key's name / the identity auth found; a request without one is
 * limited by its address) */
typedef enum { CR_RL_BY_IP = 1, CR_RL_BY_HEADER, CR_RL_BY_KEY, CR_RL_BY_PRINCIPAL } cr_rl_by_t;
typedef struct {
  double rps;         /* (0, 1e6]; 0: no limit */
  int burst;          /* [1, 1e6], default max(1, ceil(rps)) */
  cr_rl_by_t by;      /* default ip */
  char *header;       /* by = "header.NAME": NAME lower-case */
} cr_ratelimit_spec_t;

/* auth = "none" | "apikey" | "user"
 *      | { jwt = { issuer =, audience =, keys = "keys/jwks.json" | secretEnv = "NAME",
 *                  algorithms = { "RS256", "ES256", "EdDSA", "HS256" }, leeway = 30 } }
 *      | { authorizer = "auth/check", ttl = 300, identity = "header.authorization" }
 * Absent (CR_AUTH_DEFAULT): the server's --default-auth applies (none unless set); "none" is a
 * public route whatever the default. */
typedef enum {
  CR_AUTH_DEFAULT = 0, /* the setting is absent */
  CR_AUTH_NONE,        /* "none": public */
  CR_AUTH_JWT,
  CR_AUTH_APIKEY,
  CR_AUTH_AUTHORIZER,
  CR_AUTH_USER,        /* crescent's own accounts' access tokens */
} cr_auth_kind_t;
#define CR_AUTH_KIND_MAX CR_AUTH_USER
typedef struct {
  cr_auth_kind_t kind;
  /* authorizer */
  char *authorizer;   /* the authorizer function's name */
  double ttl;         /* seconds a decision is kept, [0, 3600], default 300 */
  char *identity;     /* where the identity is: "header.NAME" (lower-case) or "query.NAME", default
                         "header.authorization" */
  /* jwt */
  char *issuer;       /* iss must equal it, or NULL */
  char *audience;     /* aud must hold it, or NULL */
  char *keys_file;    /* a JWKS or PEM file, relative to the functions folder (no ".."), or NULL */
  char *secret_env;   /* the server environment variable holding an HS256 secret, or NULL */
  unsigned algorithms;/* CR_JWT_* bits (jwt.h); default: RS256, ES256, EdDSA with keys, HS256 with secretEnv */
  double leeway;      /* seconds for exp/nbf, [0, 600], default 30 */
} cr_auth_spec_t;

/* cache = { ttl = 30, vary = { "query.page", "header.accept-language" }, staleWhileRevalidate = 10,
 *           shared = false }
 * (GET and HEAD answers with status 200; core/trigger/http/rcache.h) */
#define CR_MAX_CACHE_VARY 16
typedef struct {
  double ttl;         /* (0, 86400]; 0: no cache */
  double swr;         /* staleWhileRevalidate, [0, 86400], default 0 */
  int nvary;
  char **vary;        /* "query.NAME" (as written) or "header.NAME" (lower-case) */
  int shared;         /* shared = true: also kept in Redis, for every worker and node (scache.h) */
} cr_cache_spec_t;

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
  int retries;              /* retries: attempts after the first of an asynchronous invocation, 0-10 (default 2) */
  char *on_success;         /* onSuccess = { queue = NAME }: where asynchronous results go, or NULL */
  char *on_failure;         /* onFailure = { queue = NAME }: where failed asynchronous invocations go, or NULL */
  int negress;              /* egress: entries (core/base/egress.h), -1: the setting is absent (the default policy) */
  char **egress;            /* negress strings, or NULL */
  cr_cors_spec_t cors;      /* cors (zeroed: none) */
  cr_ratelimit_spec_t rate; /* rateLimit (rps 0: none) */
  cr_auth_spec_t auth;      /* auth (kind NONE: none) */
  cr_cache_spec_t cache;    /* cache (ttl 0: none) */
  int ntriggers;            /* 0: none (absent or an empty list), at most CR_MAX_TRIGGERS */
  cr_trigger_spec_t *triggers; /* in the order listed, or NULL */
} cr_settings_t;

#define CR_MAX_EGRESS 64 /* entries of egress */
#define CR_DEFAULT_TIMEOUT 10.0
#define CR_MAX_TIMEOUT 900.0
#define CR_DEFAULT_MEMORY 128
#define CR_MAX_MEMORY 10240
#define CR_DEFAULT_CONCURRENCY 100
#define CR_MAX_CONCURRENCY 10000
#define CR_DEFAULT_IDLE 300.0
/* Queues whose names start with this are the platform's (crescent.async, the
 * asynchronous invocations): no trigger, destination or send may name one, so
 * no function reads another's invocation events. */
#define CR_RESERVED_QUEUE_PREFIX "crescent."
#define CR_DEFAULT_RETRIES 2
#define CR_MAX_RETRIES 10

void cr_settings_defaults(cr_settings_t *s);
void cr_settings_free(cr_settings_t *s);

/* Reads the value at idx (a function, or a settings table with a handler).
 * Fills s and returns 0, or writes "setting 'x' must be ..." to err and
 * returns CR_EINVAL. Leaves the Lua stack as it found it. */
int cr_settings_read(lua_State *L, int idx, cr_settings_t *s, char *err, size_t errlen);
/* The same for the platform's own functions, which may route under /_/. */
int cr_settings_read_platform(lua_State *L, int idx, cr_settings_t *s, char *err, size_t errlen);

/* Whether this build runs triggers of the kind (a switch per kind in
 * settings.c, turned on by the trigger's implementation). */
int cr_trigger_supported(cr_trigger_kind_t kind);
/* 0, or CR_EINVAL with "setting 'triggers': entry N: cron triggers are not
 * supported yet ..." for the first entry of a kind not supported. The
 * loader applies it after cr_settings_read, which only parses, so the
 * parser is tested on every kind before it runs. */
int cr_settings_check_triggers(const cr_settings_t *s, char *err, size_t errlen);

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
