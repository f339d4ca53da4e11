/* config.c - server settings from defaults, crescent.conf, environment and flags. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "alloc.h"
#include "error.h"
#include "log.h"

typedef enum { OPT_STR, OPT_INT, OPT_SIZE, OPT_SECONDS, OPT_FLAG, OPT_NUMBER } opt_type_t;

typedef struct {
  const char *name;
  opt_type_t type;
  size_t offset;
  const char *help;
} opt_t;

#define OFF(f) offsetof(cr_config_t, f)
static const opt_t options[] = {
    {"functions", OPT_STR, OFF(functions_dir), "folder of functions (default ./functions)"},
    {"listen", OPT_STR, OFF(listen), "HOST:PORT to serve HTTP on (default 127.0.0.1:8080)"},
    {"workers", OPT_INT, OFF(workers), "worker processes (default: online CPUs)"},
    {"redis", OPT_STR, OFF(redis), "auto (a private redis-server), redis://[:pw@]host:port[/db], unix:///path, or none"},
    {"data", OPT_STR, OFF(data_dir), "state folder, for the managed Redis (default ./.crescent)"},
    {"admin-token", OPT_STR, OFF(admin_token), "bearer token for /_/api/*, /_/metrics and /_/storage (none: loopback clients only)"},
    {"metrics-public", OPT_FLAG, OFF(metrics_public), "serve /_/metrics to anyone, without the admin token (for a scraper)"},
    {"log-level", OPT_STR, OFF(log_level), "debug, info, warn or error, in any case (default info)"},
    {"max-body", OPT_SIZE, OFF(max_body), "largest request body (default 6m)"},
    {"max-header", OPT_SIZE, OFF(max_header), "largest request line + headers (default 16k)"},
    {"request-timeout", OPT_SECONDS, OFF(request_timeout), "time to receive a request (default 30s)"},
    {"keepalive-timeout", OPT_SECONDS, OFF(keepalive_timeout), "idle keep-alive time (default 30s)"},
    {"drain-timeout", OPT_SECONDS, OFF(drain_timeout), "time for in-flight work on stop (default 30s)"},
    {"kill-grace", OPT_SECONDS, OFF(kill_grace), "past a deadline before a stuck worker is killed (default 1s)"},
    {"max-connections", OPT_INT, OFF(max_connections), "connections per worker (default 4096)"},
    {"no-watch", OPT_FLAG, OFF(no_watch), "do not watch the functions folder for changes"},
    {"init-timeout", OPT_SECONDS, OFF(init_timeout), "time for a function's init (default 10s)"},
    {"queue-wait", OPT_SECONDS, OFF(queue_wait), "wait past a function's concurrency before 429 (default 1s)"},
    {"queue-max", OPT_INT, OFF(queue_max), "requests waiting per worker (default 1024)"},
    {"max-response", OPT_SIZE, OFF(max_response), "largest function response body (default 6m)"},
    {"blank-states", OPT_INT, OFF(blank_states), "pre-booted blank Lua states per worker (default 2)"},
    {"price-request", OPT_NUMBER, OFF(price_request), "$ per million requests, for cost (default 0.20)"},
    {"price-gb-second", OPT_NUMBER, OFF(price_gb_second), "$ per GB-second, for cost (default 0.0000166667)"},
    {"usage-retention", OPT_INT, OFF(usage_retention), "days the hourly usage kept in Redis is kept (default 90, at most 3650)"},
    {"redis-timeout", OPT_SECONDS, OFF(redis_timeout), "wait for a Redis reply before \"timeout\" (default 2s)"},
    {"redis-prefix", OPT_STR, OFF(redis_prefix), "prefix of every Redis key (default cr:)"},
    {"kv-max-value", OPT_SIZE, OFF(kv_max_value), "largest KV value (default 1m)"},
    {"max-object", OPT_SIZE, OFF(max_object), "largest storage object (default 16m)"},
    {"queue-max-depth", OPT_INT, OFF(queue_max_depth), "messages one queue may hold, delayed ones included (default 1000000)"},
    {"egress-private", OPT_FLAG, OFF(egress_private), "let functions without an egress setting reach loopback and private addresses (local development)"},
    {"http-max-response", OPT_SIZE, OFF(http_max_response), "largest answer body crescent.http takes (default 6m)"},
    {"http-max-requests", OPT_INT, OFF(http_max_requests), "crescent.http requests per invocation (default 50)"},
    {"default-auth", OPT_STR, OFF(default_auth), "auth for functions without an 'auth' setting: none (default) or apikey"},
    {"log-retention", OPT_INT, OFF(log_retention), "log lines kept in Redis per function (and for the platform) (default 10000)"},
    {"log-max-age", OPT_SECONDS, OFF(log_max_age), "how long log lines are kept in Redis, e.g. 7d, 12h (default 7d)"},
    {"access-log", OPT_STR, OFF(access_log), "a line per HTTP request answered: off, errors (status 400 and up, default) or all"},
    {"series-interval", OPT_SECONDS, OFF(series_interval), "step of the dashboard's last-hour series, 1s to 60s (default 10s)"},
    {"cache-size", OPT_SIZE, OFF(cache_size), "memory for cached answers (cache = {...}), per worker (default 64m)"},
    {"accounts", OPT_FLAG, OFF(accounts), "serve the accounts service: /_/auth/ for clients, /_/api/users for operators"},
    {"accounts-issuer", OPT_STR, OFF(accounts_issuer), "iss of the accounts' access tokens (default crescent)"},
    {"accounts-min-password", OPT_INT, OFF(accounts_min_password), "shortest password, in characters (default 8)"},
    {"accounts-access-ttl", OPT_SECONDS, OFF(accounts_access_ttl), "lifetime of an access token (default 15m)"},
    {"accounts-refresh-ttl", OPT_SECONDS, OFF(accounts_refresh_ttl), "lifetime of a refresh token, renewed on each use (default 43200m: 30 days)"},
    {"accounts-code-ttl", OPT_SECONDS, OFF(accounts_code_ttl), "lifetime of a confirmation or reset code (default 15m)"},
    {"accounts-key-rotation", OPT_SECONDS, OFF(accounts_key_rotation), "age of the signing key that makes a new one, 0 for only on demand (default 43200m: 30 days)"},
    {"accounts-key-grace", OPT_SECONDS, OFF(accounts_key_grace), "a replaced signing key still verifies this long (default 60m)"},
    {"accounts-argon2-memory", OPT_INT, OFF(accounts_argon2_memory), "Argon2id memory per hash, KiB (default 19456: 19 MiB)"},
    {"accounts-argon2-time", OPT_INT, OFF(accounts_argon2_time), "Argon2id passes (default 2)"},
    {"accounts-argon2-lanes", OPT_INT, OFF(accounts_argon2_lanes), "Argon2id lanes (default 1)"},
    {"accounts-cors", OPT_STR, OFF(accounts_cors), "origins web pages may call /_/auth/ from, comma-separated (https://app.example.com,*.example.com) or * (default none)"},
    {"accounts-hook-timeout", OPT_SECONDS, OFF(accounts_hook_timeout), "time for a preSignUp, preSignIn or preTokenGeneration function (default 5s)"},
};
#define NOPTIONS (sizeof options / sizeof options[0])

void cr_config_defaults(cr_config_t *c) {
  memset(c, 0, sizeof *c);
  c->functions_dir = cr_xstrdup("./functions");
  c->listen = cr_xstrdup("127.0.0.1:8080");
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  c->workers = n > 0 ? (int)n : 1;
  c->redis = cr_xstrdup("auto");
  c->data_dir = cr_xstrdup("./.crescent");
  c->log_level = cr_xstrdup("info");
  c->max_body = 6u * 1024 * 1024;
  c->max_header = 16u * 1024;
  c->request_timeout = 30;
  c->keepalive_timeout = 30;
  c->drain_timeout = 30;
  c->kill_grace = 1;
  c->max_connections = 4096;
  c->init_timeout = 10;
  c->queue_wait = 1;
  c->queue_max = 1024;
  c->max_response = 6u * 1024 * 1024;
  c->blank_states = 2;
  c->price_request = 0.20;
  c->price_gb_second = 0.0000166667;
  c->usage_retention = 90;
  c->redis_timeout = 2;
  c->redis_prefix = cr_xstrdup("cr:");
  c->kv_max_value = 1024 * 1024;
  c->max_object = 16u * 1024 * 1024;
  c->queue_max_depth = 1000000;
  c->http_max_response = 6u * 1024 * 1024;
  c->http_max_requests = 50;
  c->cache_size = 64u * 1024 * 1024;
  c->series_interval = 10;
  c->default_auth = cr_xstrdup("none");
  c->accounts_issuer = cr_xstrdup("crescent");
  c->accounts_min_password = 8;
  c->accounts_access_ttl = 900;
  c->accounts_refresh_ttl = 30 * 86400;
  c->accounts_code_ttl = 900;
  c->accounts_key_rotation = 30 * 86400;
  c->accounts_key_grace = 3600;
  c->accounts_argon2_memory = 19456;
  c->accounts_argon2_time = 2;
  c->accounts_argon2_lanes = 1;
  c->accounts_hook_timeout = 5;
  c->log_retention = 10000;
  c->log_max_age = 7 * 86400;
  c->access_log = cr_xstrdup("errors");
  snprintf(c->listen_host, sizeof c->listen_host, "127.0.0.1");
  c->listen_port = 8080;
}

void cr_config_free(cr_config_t *c) {
  for (size_t i = 0; i < NOPTIONS; i++) {
    if (options[i].type == OPT_STR) {
      char **p = (char **)((char *)c + options[i].offset);
      free(*p);
      *p = NULL;
    }
  }
}

int cr_parse_size(const char *s, size_t *out) {
  char *end;
  errno = 0;
  /* Digits only: strtod would also take "nan", "inf" and hex. */
  if (!((*s >= '0' && *s <= '9') || (*s == '.' && s[1] >= '0' && s[1] <= '9'))) return CR_EINVAL;
  double v = strtod(s, &end);
  if (end == s || errno || v < 0 || v != v) return CR_EINVAL;
  while (*end == ' ') end++;
  double mult = 1;
  switch (tolower((unsigned char)*end)) {
  case '\0': break;
  case 'k': mult = 1024; end++; break;
  case 'm': mult = 1024.0 * 1024; end++; break;
  case 'g': mult = 1024.0 * 1024 * 1024; end++; break;
  case 'b': break;
  default: return CR_EINVAL;
  }
  if (tolower((unsigned char)*end) == 'b') end++;
  if (*end) return CR_EINVAL;
  v *= mult;
  if (v > 1e15) return CR_EINVAL;
  *out = (size_t)v;
  return 0;
}

int cr_parse_seconds(const char *s, double *out) {
  char *end;
  errno = 0;
  if (!((*s >= '0' && *s <= '9') || (*s == '.' && s[1] >= '0' && s[1] <= '9'))) return CR_EINVAL;
  double v = strtod(s, &end);
  if (end == s || errno || v < 0 || v != v) return CR_EINVAL;
  if (strcmp(end, "ms") == 0) v /= 1000;
  else if (strcmp(end, "s") == 0 || *end == '\0') ;
  else if (strcmp(end, "m") == 0) v *= 60;
  else return CR_EINVAL;
  if (v > 86400 * 365) return CR_EINVAL;
  *out = v;
  return 0;
}

int cr_parse_age(const char *s, double *out) {
  size_t n = strlen(s);
  if (n >= 2 && n < 32 && (s[n - 1] == 'h' || s[n - 1] == 'd')) {
    char num[32];
    memcpy(num, s, n - 1);
    num[n - 1] = '\0';
    double v;
    if (cr_parse_seconds(num, &v)) return CR_EINVAL;
    v *= s[n - 1] == 'h' ? 3600 : 86400;
    if (v > 86400.0 * 3650) return CR_EINVAL;
    *out = v;
    return 0;
  }
  return cr_parse_seconds(s, out);
}

static int parse_listen(cr_config_t *c, const char *v, char *err, size_t errlen) {
  const char *colon = strrchr(v, ':');
  if (!colon) {
    snprintf(err, errlen, "--listen: expected HOST:PORT, got '%s'", v);
    return CR_EINVAL;
  }
  size_t hl = (size_t)(colon - v);
  const char *host = v;
  if (hl >= 2 && v[0] == '[' && v[hl - 1] == ']') {
    host++;
    hl -= 2;
  }
  if (hl == 0) {
    host = "0.0.0.0";
    hl = 7;
  }
  if (hl >= sizeof c->listen_host) {
    snprintf(err, errlen, "--listen: host too long");
    return CR_EINVAL;
  }
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || end == colon + 1 || port < 0 || port > 65535) {
    snprintf(err, errlen, "--listen: bad port in '%s'", v);
    return CR_EINVAL;
  }
  /* The listening socket takes an address, not a name (a name could resolve
   * to several, or differently tomorrow): say so here, naming the host,
   * rather than let bind() fail later with "Invalid argument". */
  char h[sizeof c->listen_host];
  memcpy(h, host, hl);
  h[hl] = '\0';
  unsigned char addr[16];
  if (strcmp(h, "localhost") != 0 && inet_pton(AF_INET, h, addr) != 1 && inet_pton(AF_INET6, h, addr) != 1) {
    snprintf(err, errlen, "--listen: '%s' is not an IP address or localhost (names are not resolved: use e.g. 127.0.0.1 or 0.0.0.0)", h);
    return CR_EINVAL;
  }
  memcpy(c->listen_host, h, hl + 1);
  c->listen_port = (int)port;
  return 0;
}

/* One of log.h's level names, in any case ("WARN" is warn); stored as the
 * lower-case name the logger parses, so a bad value stops here and never
 * falls back to info unnoticed. */
static int set_log_level(cr_config_t *c, const char *v, char *err, size_t errlen) {
  char lower[16];
  size_t n = strlen(v);
  cr_log_level_t level;
  if (n < sizeof lower) {
    for (size_t i = 0; i <= n; i++) lower[i] = (char)tolower((unsigned char)v[i]);
    if (cr_log_level_parse(lower, &level) == 0) {
      free(c->log_level);
      c->log_level = cr_xstrdup(lower);
      return 0;
    }
  }
  snprintf(err, errlen, "--log-level: expected debug, info, warn or error, got '%s'", v);
  return CR_EINVAL;
}

int cr_config_set(cr_config_t *c, const char *name, const char *value, char *err, size_t errlen) {
  for (size_t i = 0; i < NOPTIONS; i++) {
    const opt_t *o = &options[i];
    if (strcmp(o->name, name) != 0) continue;
    void *field = (char *)c + o->offset;
    switch (o->type) {
    case OPT_STR: {
      if (strcmp(name, "listen") == 0 && parse_listen(c, value, err, errlen)) return CR_EINVAL;
      if (strcmp(name, "log-level") == 0) return set_log_level(c, value, err, errlen);
      if (strcmp(name, "access-log") == 0 && strcmp(value, "off") != 0 && strcmp(value, "errors") != 0 &&
          strcmp(value, "all") != 0) {
        snprintf(err, errlen, "--access-log: expected off, errors or all, got '%s'", value);
        return CR_EINVAL;
      }
      if (strcmp(name, "default-auth") == 0 && strcmp(value, "none") != 0 && strcmp(value, "apikey") != 0) {
        snprintf(err, errlen, "--default-auth: expected none or apikey, got '%s'", value);
        return CR_EINVAL;
      }
      char *dup = cr_xstrdup(value);
      free(*(char **)field);
      *(char **)field = dup;
      return 0;
    }
    case OPT_INT: {
      char *end;
      long v = strtol(value, &end, 10);
      long min = strcmp(name, "blank-states") == 0 ? 0 : 1;
      /* A queue's depth bound may be set past a million (Redis holds it, not a worker). */
      long max = strcmp(name, "queue-max-depth") == 0 ? 1000000000 : 1000000;
      if (*end || end == value || v < min || v > max) {
        snprintf(err, errlen, "--%s: expected a%s integer, got '%s'", name, min ? " positive" : "n", value);
        return CR_EINVAL;
      }
      if (strcmp(name, "blank-states") == 0 && v > 16) {
        snprintf(err, errlen, "--blank-states: at most 16");
        return CR_EINVAL;
      }
      if (strcmp(name, "usage-retention") == 0 && v > 3650) {
        snprintf(err, errlen, "--usage-retention: at most 3650 days");
        return CR_EINVAL;
      }
      if (strcmp(name, "workers") == 0 && v > 256) {
        snprintf(err, errlen, "--workers: at most 256");
        return CR_EINVAL;
      }
      *(int *)field = (int)v;
      return 0;
    }
    case OPT_SIZE: {
      size_t v;
      if (cr_parse_size(value, &v) || v == 0) {
        snprintf(err, errlen, "--%s: expected a size like 6m, 16k or 1048576, got '%s'", name, value);
        return CR_EINVAL;
      }
      *(size_t *)field = v;
      return 0;
    }
    case OPT_SECONDS: {
      double v;
      if ((strcmp(name, "log-max-age") == 0 ? cr_parse_age(value, &v) : cr_parse_seconds(value, &v)) || v <= 0) {
        snprintf(err, errlen, "--%s: expected seconds like 30, 0.5 or 500ms, got '%s'", name, value);
        return CR_EINVAL;
      }
      if (strcmp(name, "series-interval") == 0 && (v < 1 || v > 60)) {
        snprintf(err, errlen, "--series-interval: from 1s to 60s, got '%s'", value);
        return CR_EINVAL;
      }
      *(double *)field = v;
      return 0;
    }
    case OPT_NUMBER: {
      char *end;
      double v = strtod(value, &end);
      if (*end || end == value || v < 0 || v != v) {
        snprintf(err, errlen, "--%s: expected a number, got '%s'", name, value);
        return CR_EINVAL;
      }
      *(double *)field = v;
      return 0;
    }
    case OPT_FLAG:
      if (strcmp(value, "1") == 0 || strcmp(value, "true") == 0 || strcmp(value, "yes") == 0) {
        *(int *)field = 1;
      } else if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0 || strcmp(value, "no") == 0) {
        *(int *)field = 0;
      } else {
        snprintf(err, errlen, "--%s: expected true or false, got '%s'", name, value);
        return CR_EINVAL;
      }
      return 0;
    }
  }
  snprintf(err, errlen, "unknown option '%s' (see crescent --help)", name);
  return CR_EINVAL;
}

static char *trim(char *s) {
  while (isspace((unsigned char)*s)) s++;
  char *e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
  return s;
}

static int load_conf_file(cr_config_t *c, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[1024];
  int lineno = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    char *s = trim(line);
    if (*s == '\0' || *s == '#') continue;
    char *eq = strchr(s, '=');
    if (!eq) {
      snprintf(err, errlen, "%s:%d: expected 'name = value'", path, lineno);
      fclose(f);
      return CR_EINVAL;
    }
    *eq = '\0';
    char *name = trim(s), *value = trim(eq + 1);
    size_t vl = strlen(value);
    if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
      value[vl - 1] = '\0';
      value++;
    }
    char sub[512];
    if (cr_config_set(c, name, value, sub, sizeof sub)) {
      snprintf(err, errlen, "%s:%d: %s", path, lineno, sub);
      fclose(f);
      return CR_EINVAL;
    }
  }
  fclose(f);
  return 0;
}

static int load_env(cr_config_t *c, char *err, size_t errlen) {
  for (size_t i = 0; i < NOPTIONS; i++) {
    char env[64] = "CRESCENT_";
    size_t n = strlen(env);
    for (const char *p = options[i].name; *p && n < sizeof env - 1; p++)
      env[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    env[n] = '\0';
    const char *v = getenv(env);
    if (!v || !*v) continue;
    char sub[512];
    if (cr_config_set(c, options[i].name, v, sub, sizeof sub)) {
      snprintf(err, errlen, "%s: %s", env, sub);
      return CR_EINVAL;
    }
  }
  return 0;
}

int cr_config_load(cr_config_t *c, const char *conf_path, int argc, char **argv, int first,
                   char **rest, int *nrest, char *err, size_t errlen) {
  if (load_conf_file(c, conf_path ? conf_path : "crescent.conf", err, errlen)) return CR_EINVAL;
  if (load_env(c, err, errlen)) return CR_EINVAL;
  *nrest = 0;
  for (int i = first; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
      rest[(*nrest)++] = argv[i];
      continue;
    }
    char name[64];
    const char *eq = strchr(a + 2, '=');
    size_t nl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
    if (nl >= sizeof name) nl = sizeof name - 1;
    memcpy(name, a + 2, nl);
    name[nl] = '\0';
    const char *value = eq ? eq + 1 : NULL;
    int is_flag = 0;
    for (size_t k = 0; k < NOPTIONS; k++)
      if (strcmp(options[k].name, name) == 0 && options[k].type == OPT_FLAG) is_flag = 1;
    if (!value) {
      if (is_flag) value = "true";
      else if (i + 1 < argc) value = argv[++i];
      else {
        snprintf(err, errlen, "--%s needs a value", name);
        return CR_EINVAL;
      }
    }
    if (cr_config_set(c, name, value, err, errlen)) return CR_EINVAL;
  }
  return 0;
}

void cr_config_usage(FILE *out) { cr_config_usage_of(out, NULL); }

void cr_config_usage_of(FILE *out, const char *const *names) {
  for (size_t i = 0; i < NOPTIONS; i++) {
    int listed = names == NULL;
    for (size_t k = 0; names && names[k] && !listed; k++) listed = strcmp(names[k], options[i].name) == 0;
    if (!listed) continue;
    char flag[48];
    snprintf(flag, sizeof flag, "--%s%s", options[i].name, options[i].type == OPT_FLAG ? "" : " V");
    fprintf(out, "  %-24s %s\n", flag, options[i].help);
  }
}
