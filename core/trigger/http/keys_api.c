/* keys_api.c - /_/api/keys and /_/api/plans (keys_api.h), on apikey_admin.lua. */
#include "keys_api.h"

#include <hiredis/hiredis.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "apikeys.h"
#include "buf.h"
#include "clock.h"
#include "jsonread.h"
#include "jsontext.h"
#include "log.h"
#include "modules.h"
#include "router.h"

#define HISTORY_DAYS 30

enum { OP_CREATE, OP_LIST, OP_REVOKE, OP_USAGE, OP_PLAN_CREATE, OP_PLAN_LIST, OP_PLAN_DELETE };

typedef struct call_s {
  cr_keys_api_t *api;
  struct call_s *next, *prev;
  cr_redis_req_t *rr;
  cr_http_req_t *req;
  int op;
  char name[CR_APIKEY_NAME_MAX + 1];
  char key[CR_APIKEY_LEN + 1]; /* create: the new key, answered once */
  char plan[CR_APIKEY_NAME_MAX + 1];
  char per[8];
  char *scopes;                /* create: malloc'd */
  double rps;
  long long burst, quota;
} call_t;

struct cr_keys_api_s {
  cr_redis_t *redis;
  const cr_admin_t *admin;
  char prefix[96]; /* "<prefix>{keys}:" */
  int script;
  call_t *calls;
};

cr_keys_api_t *cr_keys_api_new(cr_redis_t *redis, const char *prefix, const cr_admin_t *admin) {
  cr_keys_api_t *api = calloc(1, sizeof *api);
  if (!api) return NULL;
  api->redis = redis;
  api->admin = admin;
  snprintf(api->prefix, sizeof api->prefix, "%s{keys}:", prefix ? prefix : "cr:");
  api->script = -1;
  for (int i = 0; i < cr_stdlib_nscripts; i++)
    if (strcmp(cr_stdlib_scripts[i].name, "apikey_admin") == 0) api->script = i;
  return api;
}

static void call_free(call_t *c) {
  free(c->scopes);
  free(c);
}

void cr_keys_api_free(cr_keys_api_t *api) {
  if (!api) return;
  while (api->calls) {
    call_t *c = api->calls;
    api->calls = c->next;
    cr_redis_cancel(c->rr);
    call_free(c);
  }
  free(api);
}

/* --- answers ------------------------------------------------------------------------------------ */

static void respond(cr_http_req_t *req, int status, const cr_buf_t *b) {
  cr_http_respond_start(req, status);
  cr_http_respond_header(req, "Cache-Control", 13, "no-store", 8);
  cr_http_respond_finish(req, "application/json", b->data ? b->data : "", b->len);
}

static void error(cr_http_req_t *req, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void error(cr_http_req_t *req, int status, const char *fmt, ...) {
  char msg[300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  cr_buf_t b = CR_BUF_INIT;
  cr_http_error_body(&b, req, status, msg);
  respond(req, status, &b);
  cr_buf_free(&b);
}

static void not_allowed(cr_http_req_t *req, const char *allow) {
  static const char body[] = "{\"error\":\"method not allowed\"}";
  cr_http_respond_start(req, 405);
  cr_http_respond_header(req, "Allow", 5, allow, strlen(allow));
  cr_http_respond_finish(req, "application/json", body, sizeof body - 1);
}

static void iso(cr_buf_t *b, const char *ms_text, size_t len) {
  char t[32];
  char num[24];
  snprintf(num, sizeof num, "%.*s", (int)(len < sizeof num - 1 ? len : sizeof num - 1), ms_text);
  unsigned long long ms = strtoull(num, NULL, 10);
  if (!len || !ms) {
    cr_buf_append_str(b, "null");
    return;
  }
  cr_clock_iso8601(ms, t);
  cr_json_escape(b, t, strlen(t));
}

/* A scopes list ("a,b") as JSON: null for every function, else an array. */
static void scopes_json(cr_buf_t *b, const char *s, size_t len) {
  if (!len) {
    cr_buf_append_str(b, "null");
    return;
  }
  cr_buf_putc(b, '[');
  size_t i = 0;
  while (i <= len) {
    size_t e = i;
    while (e < len && s[e] != ',') e++;
    if (i) cr_buf_putc(b, ',');
    cr_json_escape(b, s + i, e - i);
    i = e + 1;
  }
  cr_buf_putc(b, ']');
}

static void str_or_null(cr_buf_t *b, const char *s, size_t len) {
  if (len) cr_json_escape(b, s, len);
  else cr_buf_append_str(b, "null");
}

static const redisReply *el(const redisReply *r, size_t i) { return i < r->elements ? r->element[i] : NULL; }

/* The i-th element as text (strings; integers written out into tmp). */
static const char *txt(const redisReply *r, size_t i, size_t *len, char tmp[24]) {
  const redisReply *e = el(r, i);
  if (e && e->type == REDIS_REPLY_STRING) {
    *len = e->len;
    return e->str;
  }
  if (e && e->type == REDIS_REPLY_INTEGER) {
    *len = (size_t)snprintf(tmp, 24, "%lld", e->integer);
    return tmp;
  }
  *len = 0;
  return "";
}

static long long num(const redisReply *r, size_t i) {
  char tmp[24];
  size_t n;
  const char *s = txt(r, i, &n, tmp);
  char buf[32];
  snprintf(buf, sizeof buf, "%.*s", (int)(n < 31 ? n : 31), s);
  return strtoll(buf, NULL, 10);
}

static int is(const redisReply *r, size_t i, const char *word) {
  const redisReply *e = el(r, i);
  return e && e->type == REDIS_REPLY_STRING && e->len == strlen(word) && memcmp(e->str, word, e->len) == 0;
}

/* A plan's fields (rps, burst, quota, per at r[i..i+3]) as JSON members. */
static void plan_fields(cr_buf_t *b, const redisReply *r, size_t i) {
  char tmp[24];
  size_t n;
  const char *rps = txt(r, i, &n, tmp);
  cr_buf_append_str(b, "\"rps\":");
  if (n) cr_buf_append(b, rps, n);
  else cr_buf_putc(b, '0');
  long long q = num(r, i + 2);
  cr_buf_printf(b, ",\"burst\":%lld,\"quota\":", num(r, i + 1));
  if (q > 0) cr_buf_printf(b, "%lld", q);
  else cr_buf_append_str(b, "null");
  const char *per = txt(r, i + 3, &n, tmp);
  cr_buf_append_str(b, ",\"per\":");
  str_or_null(b, per, q > 0 ? n : 0);
}

static void answer(call_t *c, const redisReply *r) {
  cr_http_req_t *req = c->req;
  cr_buf_t b = CR_BUF_INIT;
  char tmp[24], tmp2[24];
  size_t n, m;
  const char *s;
  switch (c->op) {
  case OP_CREATE:
    if (is(r, 0, "exists")) { error(req, 409, "a key named '%s' exists", c->name); goto out; }
    if (is(r, 0, "noplan")) { error(req, 400, "no plan named '%s'", c->plan); goto out; }
    if (!is(r, 0, "ok")) break;
    cr_buf_append_str(&b, "{\"name\":");
    cr_json_escape(&b, c->name, strlen(c->name));
    cr_buf_append_str(&b, ",\"key\":");
    cr_json_escape(&b, c->key, strlen(c->key));
    cr_buf_append_str(&b, ",\"functions\":");
    scopes_json(&b, c->scopes, strlen(c->scopes));
    cr_buf_append_str(&b, ",\"plan\":");
    str_or_null(&b, c->plan, strlen(c->plan));
    cr_buf_append_str(&b, ",\"created\":");
    s = txt(r, 1, &n, tmp);
    iso(&b, s, n);
    cr_buf_putc(&b, '}');
    cr_log(CR_LOG_INFO, NULL, req->id, "API key '%s' created", c->name);
    respond(req, 201, &b);
    break;
  case OP_LIST:
    cr_buf_append_str(&b, "{\"keys\":[");
    for (size_t i = 0; i + 4 < r->elements; i += 5) {
      if (i) cr_buf_putc(&b, ',');
      cr_buf_append_str(&b, "{\"name\":");
      s = txt(r, i, &n, tmp);
      cr_json_escape(&b, s, n);
      cr_buf_append_str(&b, ",\"functions\":");
      s = txt(r, i + 1, &n, tmp);
      scopes_json(&b, s, n);
      cr_buf_append_str(&b, ",\"plan\":");
      s = txt(r, i + 2, &n, tmp);
      str_or_null(&b, s, n);
      cr_buf_append_str(&b, ",\"created\":");
      s = txt(r, i + 3, &n, tmp);
      iso(&b, s, n);
      cr_buf_append_str(&b, ",\"lastUsed\":");
      s = txt(r, i + 4, &n, tmp);
      iso(&b, s, n);
      cr_buf_putc(&b, '}');
    }
    cr_buf_append_str(&b, "]}");
    respond(req, 200, &b);
    break;
  case OP_REVOKE:
    if (r->type != REDIS_REPLY_INTEGER) break;
    if (r->integer != 1) { error(req, 404, "no key named '%s'", c->name); goto out; }
    cr_log(CR_LOG_INFO, NULL, req->id, "API key '%s' revoked", c->name);
    cr_buf_append_str(&b, "{\"revoked\":");
    cr_json_escape(&b, c->name, strlen(c->name));
    cr_buf_putc(&b, '}');
    respond(req, 200, &b);
    break;
  case OP_USAGE: {
    if (r->elements == 0) { error(req, 404, "no key named '%s'", c->name); goto out; }
    if (r->elements < 13) break;
    long long today = num(r, 9), month = num(r, 10), quota = num(r, 7);
    s = txt(r, 8, &n, tmp);
    int per_month = n == 5 && memcmp(s, "month", 5) == 0;
    long long used = per_month ? month : today;
    cr_buf_append_str(&b, "{\"name\":");
    s = txt(r, 0, &n, tmp);
    cr_json_escape(&b, s, n);
    cr_buf_append_str(&b, ",\"functions\":");
    s = txt(r, 1, &n, tmp);
    scopes_json(&b, s, n);
    cr_buf_append_str(&b, ",\"plan\":");
    s = txt(r, 2, &n, tmp);
    (void)txt(r, 5, &m, tmp2);
    if (n && m) {
      cr_buf_append_str(&b, "{\"name\":");
      cr_json_escape(&b, s, n);
      cr_buf_putc(&b, ',');
      plan_fields(&b, r, 5);
      cr_buf_putc(&b, '}');
    } else {
      cr_buf_append_str(&b, "null");
    }
    cr_buf_append_str(&b, ",\"created\":");
    s = txt(r, 3, &n, tmp);
    iso(&b, s, n);
    cr_buf_append_str(&b, ",\"lastUsed\":");
    s = txt(r, 4, &n, tmp);
    iso(&b, s, n);
    cr_buf_printf(&b, ",\"today\":%lld,\"month\":%lld", today, month);
    if (quota > 0)
      cr_buf_printf(&b, ",\"quota\":%lld,\"per\":\"%s\",\"used\":%lld,\"remaining\":%lld,\"resetsIn\":%lld", quota,
                    per_month ? "month" : "day", used, used >= quota ? 0 : quota - used,
                    num(r, per_month ? 12 : 11));
    else
      cr_buf_printf(&b, ",\"quota\":null,\"per\":null,\"used\":%lld,\"remaining\":null,\"resetsIn\":null", used);
    cr_buf_append_str(&b, ",\"days\":[");
    for (size_t i = 13; i + 1 < r->elements; i += 2) {
      if (i > 13) cr_buf_putc(&b, ',');
      cr_buf_append_str(&b, "{\"date\":");
      s = txt(r, i, &n, tmp);
      cr_json_escape(&b, s, n);
      cr_buf_printf(&b, ",\"count\":%lld}", num(r, i + 1));
    }
    cr_buf_append_str(&b, "]}");
    respond(req, 200, &b);
    break;
  }
  case OP_PLAN_CREATE:
    if (is(r, 0, "exists")) { error(req, 409, "a plan named '%s' exists", c->name); goto out; }
    if (!is(r, 0, "ok")) break;
    cr_buf_append_str(&b, "{\"name\":");
    cr_json_escape(&b, c->name, strlen(c->name));
    cr_buf_append_str(&b, ",\"rps\":");
    cr_json_number(&b, c->rps);
    cr_buf_printf(&b, ",\"burst\":%lld,\"quota\":", c->burst);
    if (c->quota > 0) cr_buf_printf(&b, "%lld,\"per\":\"%s\"", c->quota, c->per);
    else cr_buf_append_str(&b, "null,\"per\":null");
    cr_buf_append_str(&b, ",\"created\":");
    s = txt(r, 1, &n, tmp);
    iso(&b, s, n);
    cr_buf_append_str(&b, ",\"keys\":0}");
    cr_log(CR_LOG_INFO, NULL, req->id, "usage plan '%s' created", c->name);
    respond(req, 201, &b);
    break;
  case OP_PLAN_LIST:
    cr_buf_append_str(&b, "{\"plans\":[");
    for (size_t i = 0; i + 6 < r->elements; i += 7) {
      if (i) cr_buf_putc(&b, ',');
      cr_buf_append_str(&b, "{\"name\":");
      s = txt(r, i, &n, tmp);
      cr_json_escape(&b, s, n);
      cr_buf_putc(&b, ',');
      plan_fields(&b, r, i + 1);
      cr_buf_append_str(&b, ",\"created\":");
      s = txt(r, i + 5, &n, tmp);
      iso(&b, s, n);
      cr_buf_printf(&b, ",\"keys\":%lld}", num(r, i + 6));
    }
    cr_buf_append_str(&b, "]}");
    respond(req, 200, &b);
    break;
  case OP_PLAN_DELETE:
    if (is(r, 0, "missing")) { error(req, 404, "no plan named '%s'", c->name); goto out; }
    if (is(r, 0, "inuse"))
      { error(req, 409, "plan '%s' is used by %lld key(s): revoke them first", c->name, num(r, 1)); goto out; }
    if (!is(r, 0, "ok")) break;
    cr_log(CR_LOG_INFO, NULL, req->id, "usage plan '%s' deleted", c->name);
    cr_buf_append_str(&b, "{\"deleted\":");
    cr_json_escape(&b, c->name, strlen(c->name));
    cr_buf_putc(&b, '}');
    respond(req, 200, &b);
    break;
  }
  if (!b.len) {
    cr_log(CR_LOG_ERROR, NULL, req->id, "keys API: unexpected reply from apikey_admin");
    error(req, 500, "internal error");
  }
out:
  cr_buf_free(&b);
}

static void on_reply(void *data, redisReply *reply, const char *err) {
  call_t *c = data;
  cr_keys_api_t *api = c->api;
  if (c->prev) c->prev->next = c->next;
  else api->calls = c->next;
  if (c->next) c->next->prev = c->prev;
  if (err || !reply || reply->type == REDIS_REPLY_ERROR) {
    if (reply && reply->type == REDIS_REPLY_ERROR)
      cr_log(CR_LOG_ERROR, NULL, c->req->id, "keys API: %.*s", (int)reply->len, reply->str);
    error(c->req, 503, "redis unavailable");
  } else {
    answer(c, reply);
  }
  call_free(c);
}

/* Runs apikey_admin's op with args for c (which it takes). */
static void run(cr_keys_api_t *api, call_t *c, const char *op, int nargs, const char **args) {
  char names[128];
  snprintf(names, sizeof names, "%snames", api->prefix);
  const char *argv[12] = {names, api->prefix, op};
  size_t lens[12] = {strlen(names), strlen(api->prefix), strlen(op)};
  for (int i = 0; i < nargs && i < 9; i++) {
    argv[3 + i] = args[i];
    lens[3 + i] = strlen(args[i]);
  }
  c->api = api;
  c->rr = cr_redis_eval(api->redis, api->script, 1, 3 + nargs, argv, lens, on_reply, c);
  if (!c->rr) {
    error(c->req, 503, "redis unavailable");
    call_free(c);
    return;
  }
  c->next = api->calls;
  if (api->calls) api->calls->prev = c;
  api->calls = c;
}

/* --- requests ----------------------------------------------------------------------------------- */

/* The body as a JSON object, with only the given members: the document, or NULL when answered. */
static cr_jr_doc_t *body_object(cr_http_req_t *req, const char *const *known) {
  char err[160];
  cr_jr_doc_t *d = cr_jr_parse(req->body ? req->body : "", req->body_len, err, sizeof err);
  if (!d) {
    error(req, 400, "the body is not JSON: %s", err);
    return NULL;
  }
  const cr_jr_val_t *o = cr_jr_root(d);
  if (o->type != CR_JR_OBJECT) {
    cr_jr_free(d);
    error(req, 400, "the body must be a JSON object");
    return NULL;
  }
  for (const cr_jr_val_t *v = o->child; v; v = v->next) {
    int ok = 0;
    for (int i = 0; known[i] && !ok; i++) ok = strcmp(v->key, known[i]) == 0;
    if (!ok) {
      error(req, 400, "unknown field '%.60s'", v->key);
      cr_jr_free(d);
      return NULL;
    }
  }
  return d;
}

/* A string member that must be a name (into out); absent is "" when optional. 0, or -1 when answered. */
static int name_member(cr_http_req_t *req, const cr_jr_val_t *o, const char *field, int required, char *out) {
  const cr_jr_val_t *v = cr_jr_get(o, field);
  out[0] = '\0';
  if (!v || v->type == CR_JR_NULL) {
    if (!required) return 0;
    error(req, 400, "'%s' is required", field);
    return -1;
  }
  if (v->type != CR_JR_STRING || !cr_apikey_name_ok(v->str, v->len)) {
    error(req, 400, "'%s' must be 1-%d letters, digits, '.', '_' or '-', starting with a letter or digit", field,
          CR_APIKEY_NAME_MAX);
    return -1;
  }
  memcpy(out, v->str, v->len);
  out[v->len] = '\0';
  return 0;
}

static void create_key(cr_keys_api_t *api, cr_http_req_t *req) {
  static const char *const known[] = {"name", "functions", "plan", NULL};
  cr_jr_doc_t *d = body_object(req, known);
  if (!d) return;
  const cr_jr_val_t *o = cr_jr_root(d);
  call_t *c = calloc(1, sizeof *c);
  cr_buf_t scopes = CR_BUF_INIT, list = CR_BUF_INIT;
  char err[160] = "";
  if (!c) {
    error(req, 503, "server out of memory");
    goto out;
  }
  c->req = req;
  c->op = OP_CREATE;
  if (name_member(req, o, "name", 1, c->name) || name_member(req, o, "plan", 0, c->plan)) goto out;
  const cr_jr_val_t *f = cr_jr_get(o, "functions");
  int bad = 0;
  if (f && f->type == CR_JR_STRING) {
    bad = cr_apikey_scopes_parse(f->str, f->len, &scopes, err, sizeof err);
    if (!bad && scopes.len == 0) {
      snprintf(err, sizeof err, "an empty list would allow nothing: leave 'functions' out for every function");
      bad = 1;
    }
  } else if (f && f->type == CR_JR_ARRAY) {
    for (const cr_jr_val_t *v = f->child; v && !bad; v = v->next) {
      if (v->type != CR_JR_STRING || v->len == 0 || memchr(v->str, ',', v->len)) {
        snprintf(err, sizeof err, "each function pattern must be a non-empty string without commas");
        bad = 1;
      } else {
        bad = (list.len && cr_buf_putc(&list, ',')) || cr_buf_append(&list, v->str, v->len);
      }
    }
    if (!bad && f->len == 0) {
      snprintf(err, sizeof err, "an empty list would allow nothing: leave 'functions' out for every function");
      bad = 1;
    }
    if (!bad) bad = cr_apikey_scopes_parse(list.data, list.len, &scopes, err, sizeof err);
  } else if (f && f->type != CR_JR_NULL) {
    snprintf(err, sizeof err, "must be a string or an array of strings");
    bad = 1;
  }
  if (bad) {
    error(req, 400, "'functions': %s", err[0] ? err : "out of memory");
    goto out;
  }
  unsigned char rnd[8];
  if (cr_apikey_make(c->key) || getrandom(rnd, sizeof rnd, 0) != sizeof rnd) {
    error(req, 503, "no randomness from the OS");
    goto out;
  }
  char sha[65], id[17];
  cr_apikey_hash(c->key, CR_APIKEY_LEN, sha);
  for (int i = 0; i < 8; i++) snprintf(id + 2 * i, 3, "%02x", rnd[i]);
  c->scopes = strdup(scopes.data ? cr_buf_cstr(&scopes) : "");
  if (!c->scopes) {
    error(req, 503, "server out of memory");
    goto out;
  }
  const char *args[] = {c->name, sha, id, c->scopes, c->plan};
  run(api, c, "create", 5, args);
  c = NULL;
out:
  if (c) call_free(c);
  cr_buf_free(&scopes);
  cr_buf_free(&list);
  cr_jr_free(d);
}

/* A number member in [lo, hi] (an integer when integral): into *out; absent keeps *out. 0, or -1 when answered. */
static int num_member(cr_http_req_t *req, const cr_jr_val_t *o, const char *field, double lo, double hi, int integral,
                      double *out) {
  const cr_jr_val_t *v = cr_jr_get(o, field);
  if (!v || v->type == CR_JR_NULL) return 0;
  if (v->type != CR_JR_NUMBER || v->num < lo || v->num > hi || (integral && v->num != floor(v->num))) {
    error(req, 400, "'%s' must be %s between %g and %g", field, integral ? "an integer" : "a number", lo, hi);
    return -1;
  }
  *out = v->num;
  return 0;
}

static void create_plan(cr_keys_api_t *api, cr_http_req_t *req) {
  static const char *const known[] = {"name", "rps", "burst", "quota", "per", NULL};
  cr_jr_doc_t *d = body_object(req, known);
  if (!d) return;
  const cr_jr_val_t *o = cr_jr_root(d);
  call_t *c = calloc(1, sizeof *c);
  double rps = 0, burst = -1, quota = 0;
  if (!c) {
    error(req, 503, "server out of memory");
    goto out;
  }
  c->req = req;
  c->op = OP_PLAN_CREATE;
  if (name_member(req, o, "name", 1, c->name) || num_member(req, o, "rps", 0, 1e6, 0, &rps) ||
      num_member(req, o, "burst", 1, 1e6, 1, &burst) || num_member(req, o, "quota", 0, 1e12, 1, &quota))
    goto out;
  const cr_jr_val_t *per = cr_jr_get(o, "per");
  if (per && per->type != CR_JR_NULL && !cr_jr_streq(per, "day") && !cr_jr_streq(per, "month")) {
    error(req, 400, "'per' must be \"day\" or \"month\"");
    goto out;
  }
  if (rps <= 0 && quota <= 0) {
    error(req, 400, "a plan needs a rate ('rps') or a quota ('quota'), or both");
    goto out;
  }
  if (rps <= 0 && burst > 0) {
    error(req, 400, "'burst' needs 'rps'");
    goto out;
  }
  if (quota <= 0 && per && per->type != CR_JR_NULL) {
    error(req, 400, "'per' needs 'quota'");
    goto out;
  }
  snprintf(c->per, sizeof c->per, "%s", per && cr_jr_streq(per, "month") ? "month" : "day");
  c->rps = rps;
  c->burst = rps > 0 ? (burst > 0 ? (long long)burst : (long long)ceil(rps)) : 0;
  c->quota = (long long)quota;
  char r[CR_JSON_NUMBER_MAX + 1], b[24], q[24];
  int rl = cr_json_format_number(rps, r);
  r[rl > 0 ? rl : 0] = '\0';
  snprintf(b, sizeof b, "%lld", c->burst);
  snprintf(q, sizeof q, "%lld", c->quota);
  const char *args[] = {c->name, r, b, q, c->per};
  run(api, c, "plan_create", 5, args);
  c = NULL;
out:
  if (c) call_free(c);
  cr_jr_free(d);
}

/* NAME in prefix + NAME [+ suffix] (exactly), copied into out: 1, or 0 when the path is not that. */
static int path_name(const cr_http_req_t *req, const char *prefix, const char *suffix, char *out) {
  size_t pl = strlen(prefix), sl = suffix ? strlen(suffix) : 0;
  if (req->path_len <= pl + sl || memcmp(req->path, prefix, pl) != 0) return 0;
  if (sl && memcmp(req->path + req->path_len - sl, suffix, sl) != 0) return 0;
  size_t n = req->path_len - pl - sl;
  const char *name = req->path + pl;
  if (memchr(name, '/', n)) return 0;
  if (n > CR_APIKEY_NAME_MAX) n = CR_APIKEY_NAME_MAX + 1; /* refused below, not cut */
  if (n > CR_APIKEY_NAME_MAX || !cr_apikey_name_ok(name, n)) {
    out[0] = '\0';
    return 1;
  }
  memcpy(out, name, n);
  out[n] = '\0';
  return 1;
}

static int is_path(const cr_http_req_t *req, const char *p) {
  size_t n = strlen(p);
  return req->path_len == n && memcmp(req->path, p, n) == 0;
}

static int starts(const cr_http_req_t *req, const char *p) {
  size_t n = strlen(p);
  return req->path_len > n && memcmp(req->path, p, n) == 0;
}

static void by_name(cr_keys_api_t *api, cr_http_req_t *req, int op, const char *name) {
  if (!name[0]) {
    error(req, 404, op == OP_PLAN_DELETE ? "no such plan" : "no such key");
    return;
  }
  call_t *c = calloc(1, sizeof *c);
  if (!c) {
    error(req, 503, "server out of memory");
    return;
  }
  c->req = req;
  c->op = op;
  snprintf(c->name, sizeof c->name, "%s", name);
  const char *days = "30";
  const char *args[] = {c->name, days};
  run(api, c, op == OP_REVOKE ? "revoke" : op == OP_USAGE ? "usage" : "plan_delete", op == OP_USAGE ? 2 : 1, args);
}

int cr_keys_api_handle(cr_keys_api_t *api, cr_http_req_t *req) {
  int keys = is_path(req, "/_/api/keys") || starts(req, "/_/api/keys/");
  int plans = !keys && (is_path(req, "/_/api/plans") || starts(req, "/_/api/plans/"));
  if (!api || (!keys && !plans)) return 0;
  if (cr_admin_guard(api->admin, req)) return 1;
  char name[CR_APIKEY_NAME_MAX + 2];
  int get = req->method == CR_M_GET || req->method == CR_M_HEAD;
  int collection = is_path(req, keys ? "/_/api/keys" : "/_/api/plans");
  int usage = keys && !collection && path_name(req, "/_/api/keys/", "/usage", name);
  int one = !collection && !usage && path_name(req, keys ? "/_/api/keys/" : "/_/api/plans/", NULL, name);
  if (!collection && !usage && !one) {
    error(req, 404, "not found");
    return 1;
  }
  if (collection && req->method != CR_M_POST && !get) {
    not_allowed(req, "GET, HEAD, POST");
    return 1;
  }
  if (usage && !get) {
    not_allowed(req, "GET, HEAD");
    return 1;
  }
  if (one && req->method != CR_M_DELETE) {
    not_allowed(req, "DELETE");
    return 1;
  }
  if (!api->redis || api->script < 0) {
    error(req, 503, "API keys need Redis (the server runs with --redis none)");
    return 1;
  }
  if (collection && req->method == CR_M_POST) {
    if (keys) create_key(api, req);
    else create_plan(api, req);
  } else if (collection) {
    call_t *c = calloc(1, sizeof *c);
    if (!c) {
      error(req, 503, "server out of memory");
      return 1;
    }
    c->req = req;
    c->op = keys ? OP_LIST : OP_PLAN_LIST;
    run(api, c, keys ? "list" : "plan_list", 0, NULL);
  } else {
    by_name(api, req, usage ? OP_USAGE : keys ? OP_REVOKE : OP_PLAN_DELETE, name);
  }
  return 1;
}
