/* config.h - the server's settings: defaults, crescent.conf, CRESCENT_* environment
 * variables and command-line flags, in that order of precedence (later wins).
 *
 * Every flag `--some-name` has an environment variable `CRESCENT_SOME_NAME` and a
 * crescent.conf key `some-name = value`. This module only parses and validates;
 * it owns the strings it stores and cr_config_free() releases them. */
#ifndef CR_CONFIG_H
#define CR_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct cr_config_s {
  char *functions_dir;
  char *listen;          /* HOST:PORT as given */
  char listen_host[64];  /* parsed from listen: an IPv4 or IPv6 address, or localhost */
  int listen_port;
  int workers;
  char *redis;           /* "auto" or a URL */
  char *data_dir;
  char *admin_token;     /* guards /_/api, /_/metrics, /_/storage; none: loopback only */
  int metrics_public;    /* /_/metrics without the token */
  char *log_level;
  size_t max_body;       /* bytes */
  size_t max_header;     /* bytes, request line + headers */
  double request_timeout;   /* s: to receive a whole request */
  double keepalive_timeout; /* s: idle between requests */
  double drain_timeout;     /* s: in-flight work on SIGTERM */
  double kill_grace;        /* s: past a deadline before a stuck worker is killed */
  int max_connections;      /* per worker */
  int no_watch;
  double init_timeout;      /* s: a function's init (its file's top-level code) */
  double queue_wait;        /* s: a request over a function's concurrency waits this long, then 429 */
  int queue_max;            /* requests waiting per worker */
  size_t max_response;      /* bytes of a function's response body */
  int blank_states;         /* pre-booted blank Lua states per worker */
  double price_request;     /* $ per million requests */
  double price_gb_second;   /* $ per GB-second */
  int usage_retention;      /* days of hourly usage kept in Redis */
  double redis_timeout;     /* s: a stdlib call's reply */
  char *redis_prefix;       /* every key starts with it */
  size_t kv_max_value;      /* bytes of one KV value */
  size_t max_object;        /* bytes of one storage object */
  int queue_max_depth;      /* messages one queue may hold (stream + delayed); sends past it fail */
  int egress_private;       /* the default egress policy also allows loopback and private addresses */
  size_t http_max_response; /* bytes of an answer's body crescent.http takes */
  int http_max_requests;    /* crescent.http requests per invocation */
  size_t cache_size;        /* bytes of cached answers per worker */
  double series_interval;   /* s: how often worker 0 samples the meters into Redis (series.h) */
  char *default_auth;       /* "none" or "apikey": the auth of functions without the setting */
  /* The accounts service (issue 17; core/svc/users.h) */
  int accounts;               /* serve /_/auth/ and /_/api/users */
  char *accounts_issuer;      /* iss of access tokens */
  int accounts_min_password;  /* characters */
  double accounts_access_ttl; /* s */
  double accounts_refresh_ttl; /* s */
  double accounts_code_ttl;   /* s */
  double accounts_key_rotation; /* s: a new signing key after this (0: only on demand) */
  double accounts_key_grace;  /* s: a replaced key still verifies */
  int accounts_argon2_memory; /* KiB */
  int accounts_argon2_time;   /* passes */
  int accounts_argon2_lanes;
  double accounts_hook_timeout; /* s: preSignUp, preSignIn, preTokenGeneration */
  char *accounts_cors;        /* origins allowed to call /_/auth/ from a browser ("a,b" or "*"), or NULL */
  int log_retention;        /* log lines kept in Redis per stream */
  double log_max_age;       /* s: and for how long */
  char *access_log;         /* "off", "errors" or "all" */
} cr_config_t;

void cr_config_defaults(cr_config_t *c);
void cr_config_free(cr_config_t *c);

/* Applies crescent.conf (if conf_path exists; NULL means ./crescent.conf),
 * then the environment, then argv[first..argc). Unknown flags and bad values
 * are errors described in err. Returns 0 or CR_EINVAL. Positional arguments
 * are left in *rest (count in *nrest), pointing into argv. */
int cr_config_load(cr_config_t *c, const char *conf_path, int argc, char **argv, int first,
                   char **rest, int *nrest, char *err, size_t errlen);

/* Sets one option by its flag name (without dashes). */
int cr_config_set(cr_config_t *c, const char *name, const char *value, char *err, size_t errlen);

/* Parses "6m", "16KB", "1048576" into bytes; "0.5", "500ms", "2s", "10m" into seconds
 * (at most a year); an age also takes hours and days ("12h", "7d", at most ten years). */
int cr_parse_size(const char *s, size_t *out);
int cr_parse_seconds(const char *s, double *out);
int cr_parse_age(const char *s, double *out);

/* Prints the flags with their defaults. */
void cr_config_usage(FILE *out);
/* Prints only the named flags (a NULL-terminated list of names without
 * dashes), in the order of cr_config_usage; NULL prints them all. */
void cr_config_usage_of(FILE *out, const char *const *names);

#endif
