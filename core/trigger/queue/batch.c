/* batch.c - copying stream entries, filtering change records, the events, and the failed list. */
#include "batch.h"

#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "json.h"

cr_qbatch_t *cr_qbatch_new(int cap) {
  cr_qbatch_t *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  b->recs = calloc((size_t)(cap > 0 ? cap : 1), sizeof *b->recs);
  if (!b->recs) {
    free(b);
    return NULL;
  }
  b->cap = cap;
  return b;
}

void cr_qbatch_free(cr_qbatch_t *b) {
  if (!b) return;
  for (int i = 0; i < b->n; i++) {
    free(b->recs[i].body);
    free(b->recs[i].fields);
  }
  free(b->recs);
  free(b);
}

static int field_is(const redisReply *f, const char *name) {
  size_t n = strlen(name);
  return f->type == REDIS_REPLY_STRING && f->len == n && memcmp(f->str, name, n) == 0;
}

int cr_qbatch_add(cr_qbatch_t *b, const redisReply *entry, int receive_count) {
  if (!entry || entry->type != REDIS_REPLY_ARRAY || entry->elements != 2) return CR_EINVAL;
  const redisReply *id = entry->element[0], *fields = entry->element[1];
  if (id->type != REDIS_REPLY_STRING || id->len == 0 || id->len >= sizeof b->recs[0].id) return CR_EINVAL;
  if (fields->type != REDIS_REPLY_ARRAY || fields->elements % 2) return CR_EINVAL;
  const redisReply *type = NULL, *body = NULL, *time = NULL;
  for (size_t i = 0; i + 1 < fields->elements; i += 2) {
    const redisReply *k = fields->element[i], *v = fields->element[i + 1];
    if (v->type != REDIS_REPLY_STRING) continue;
    if (field_is(k, "type")) type = v;
    else if (field_is(k, "body")) body = v;
    else if (field_is(k, "time")) time = v;
  }
  if (!body) return CR_EINVAL;
  if (b->n >= b->cap) return CR_ELIMIT;
  cr_qrecord_t *r = &b->recs[b->n];
  r->body = malloc(body->len + 1);
  if (!r->body) return CR_ENOMEM;
  memcpy(r->body, body->str, body->len);
  r->body[body->len] = '\0';
  r->body_len = body->len;
  memcpy(r->id, id->str, id->len);
  r->id[id->len] = '\0';
  /* Anything but "j" is a string: the body is shown as it was stored. */
  r->type = type && type->len == 1 && type->str[0] == 'j' ? 'j' : 's';
  r->sent_at = 0;
  if (time && time->len < 32) {
    char t[32];
    memcpy(t, time->str, time->len);
    t[time->len] = '\0';
    r->sent_at = strtod(t, NULL);
  }
  r->receive_count = receive_count;
  r->failed = 0;
  r->nfields = 0;
  r->fields = NULL;
  b->n++;
  return 0;
}

/* A field's value in an entry's field list, or NULL. */
static const redisReply *entry_field(const redisReply *fields, const char *name) {
  for (size_t i = 0; i + 1 < fields->elements; i += 2)
    if (field_is(fields->element[i], name) && fields->element[i + 1]->type == REDIS_REPLY_STRING)
      return fields->element[i + 1];
  return NULL;
}

static int has_prefix(const redisReply *key, const char *p) {
  size_t n = p ? strlen(p) : 0;
  return key->len >= n && memcmp(key->str, p ? p : "", n) == 0;
}

static int has_suffix(const redisReply *key, const char *p) {
  size_t n = p ? strlen(p) : 0;
  return key->len >= n && memcmp(key->str + key->len - n, p ? p : "", n) == 0;
}

/* Does src keep this change record? 1, 0, or CR_EINVAL (not one of its kind). */
static int keeps(const cr_qsource_t *src, const redisReply *fields) {
  const redisReply *key = entry_field(fields, "key");
  if (!key) return CR_EINVAL;
  if (src->kind == CR_QSRC_STORAGE) {
    const redisReply *ev = entry_field(fields, "event");
    unsigned bit = !ev                             ? 0
                   : ev->len == 3 && !memcmp(ev->str, "put", 3)    ? CR_STORAGE_PUT
                   : ev->len == 6 && !memcmp(ev->str, "delete", 6) ? CR_STORAGE_DELETE
                                                                   : 0;
    if (!bit) return CR_EINVAL;
    return (src->events & bit) && has_prefix(key, src->prefix) && has_suffix(key, src->suffix);
  }
  if (!entry_field(fields, "op")) return CR_EINVAL;
  return has_prefix(key, src->prefix);
}

/* Is the record for src's group: no "group" field, or that one? */
static int for_group(const cr_qsource_t *src, const redisReply *fields) {
  const redisReply *g = entry_field(fields, "group");
  if (!g || !src->group) return 1;
  return g->len == strlen(src->group) && memcmp(g->str, src->group, g->len) == 0;
}

int cr_qbatch_take(cr_qbatch_t *b, const cr_qsource_t *src, const redisReply *entry, int receive_count) {
  if (src->kind == CR_QSRC_QUEUE) return cr_qbatch_add(b, entry, receive_count);
  if (!entry || entry->type != REDIS_REPLY_ARRAY || entry->elements != 2) return CR_EINVAL;
  const redisReply *id = entry->element[0], *fields = entry->element[1];
  if (id->type != REDIS_REPLY_STRING || id->len == 0 || id->len >= sizeof b->recs[0].id) return CR_EINVAL;
  if (fields->type != REDIS_REPLY_ARRAY || fields->elements % 2) return CR_EINVAL;
  int keep = keeps(src, fields);
  if (keep < 0) return keep;
  if (!keep || !for_group(src, fields)) return CR_ENOENT;
  if (b->n >= b->cap) return CR_ELIMIT;
  /* Every string field, names and values, in one buffer, each NUL-terminated. */
  size_t total = 0;
  int nf = 0;
  for (size_t i = 0; i + 1 < fields->elements; i += 2) {
    const redisReply *k = fields->element[i], *v = fields->element[i + 1];
    if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
    total += k->len + v->len + 2;
    nf++;
  }
  cr_qrecord_t *r = &b->recs[b->n];
  memset(r, 0, sizeof *r);
  r->body = malloc(total + 1);
  r->fields = calloc((size_t)(nf > 0 ? nf : 1), sizeof *r->fields);
  if (!r->body || !r->fields) {
    free(r->body);
    free(r->fields);
    r->body = NULL;
    r->fields = NULL;
    return CR_ENOMEM;
  }
  char *p = r->body;
  for (size_t i = 0; i + 1 < fields->elements; i += 2) {
    const redisReply *k = fields->element[i], *v = fields->element[i + 1];
    if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
    cr_qfield_t *f = &r->fields[r->nfields++];
    memcpy(p, k->str, k->len);
    p[k->len] = '\0';
    f->name = p, f->name_len = k->len;
    p += k->len + 1;
    memcpy(p, v->str, v->len);
    p[v->len] = '\0';
    f->val = p, f->val_len = v->len;
    p += v->len + 1;
  }
  r->body_len = total;
  memcpy(r->id, id->str, id->len);
  r->id[id->len] = '\0';
  r->type = 'c';
  r->receive_count = receive_count;
  b->n++;
  return 0;
}

void cr_qbatch_push_event(lua_State *L, const cr_qbatch_t *b, const char *queue) {
  lua_createtable(L, 0, 3);
  lua_pushliteral(L, "queue");
  lua_setfield(L, -2, "source");
  lua_pushstring(L, queue);
  lua_setfield(L, -2, "queue");
  lua_createtable(L, b->n, 0);
  for (int i = 0; i < b->n; i++) {
    const cr_qrecord_t *r = &b->recs[i];
    lua_createtable(L, 0, 4);
    lua_pushstring(L, r->id);
    lua_setfield(L, -2, "id");
    char err[128];
    if (r->type != 'j' || cr_json_decode(L, r->body, r->body_len, err, sizeof err) != 0)
      lua_pushlstring(L, r->body, r->body_len);
    lua_setfield(L, -2, "body");
    lua_pushinteger(L, r->receive_count);
    lua_setfield(L, -2, "receiveCount");
    lua_pushnumber(L, r->sent_at);
    lua_setfield(L, -2, "sentAt");
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "records");
}

int cr_qbatch_mark_failed(lua_State *L, int idx, cr_qbatch_t *b) {
  if (!lua_istable(L, idx) || !lua_checkstack(L, 3)) return 0;
  idx = idx < 0 && idx > LUA_REGISTRYINDEX ? lua_gettop(L) + idx + 1 : idx;
  lua_pushliteral(L, "failed");
  lua_rawget(L, idx);
  int marked = 0;
  if (lua_istable(L, -1)) {
    size_t n = lua_objlen(L, -1);
    for (size_t k = 1; k <= n; k++) {
      lua_rawgeti(L, -1, (int)k);
      size_t len;
      const char *id = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
      for (int i = 0; id && i < b->n; i++) {
        if (!b->recs[i].failed && strlen(b->recs[i].id) == len && memcmp(b->recs[i].id, id, len) == 0) {
          b->recs[i].failed = 1;
          marked++;
        }
      }
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, -1)) {
    for (int i = 0; i < b->n; i++) {
      if (!b->recs[i].failed) marked++;
      b->recs[i].failed = 1;
    }
  }
  lua_pop(L, 1);
  return marked;
}

static const cr_qfield_t *rec_field(const cr_qrecord_t *r, const char *name) {
  for (int i = 0; i < r->nfields; i++)
    if (strcmp(r->fields[i].name, name) == 0) return &r->fields[i];
  return NULL;
}

/* The field as a string at the table at -1, if the record has it. */
static void set_str(lua_State *L, const cr_qrecord_t *r, const char *name) {
  const cr_qfield_t *f = rec_field(r, name);
  if (!f) return;
  lua_pushlstring(L, f->val, f->val_len);
  lua_setfield(L, -2, name);
}

/* The field as a number (Lua's reading of it), if it has one. */
static void set_num(lua_State *L, const cr_qrecord_t *r, const char *name) {
  const cr_qfield_t *f = rec_field(r, name);
  if (!f || f->val_len == 0) return;
  char *end;
  double v = strtod(f->val, &end);
  if (*end) return;
  lua_pushnumber(L, v);
  lua_setfield(L, -2, name);
}

/* A KV value as kv.lua decodes it: s a string, n a number, b a boolean, j JSON. */
static void set_value(lua_State *L, const cr_qrecord_t *r) {
  const cr_qfield_t *t = rec_field(r, "type"), *v = rec_field(r, "value");
  if (!t || !v || t->val_len != 1) return;
  char err[128];
  switch (t->val[0]) {
  case 's':
    lua_pushlstring(L, v->val, v->val_len);
    break;
  case 'n':
    lua_pushnumber(L, strtod(v->val, NULL));
    break;
  case 'b':
    lua_pushboolean(L, v->val_len == 1 && v->val[0] == '1');
    break;
  case 'j':
    if (cr_json_decode(L, v->val, v->val_len, err, sizeof err) != 0) return;
    break;
  default:
    return;
  }
  lua_setfield(L, -2, "value");
}

void cr_qbatch_push_source_event(lua_State *L, const cr_qbatch_t *b, const cr_qsource_t *src) {
  if (src->kind == CR_QSRC_QUEUE) {
    cr_qbatch_push_event(L, b, src->name);
    return;
  }
  int kv = src->kind == CR_QSRC_KV;
  lua_createtable(L, 0, 3);
  lua_pushstring(L, kv ? "kv" : "storage");
  lua_setfield(L, -2, "source");
  lua_pushstring(L, src->name);
  lua_setfield(L, -2, kv ? "namespace" : "bucket");
  lua_createtable(L, b->n, 0);
  for (int i = 0; i < b->n; i++) {
    const cr_qrecord_t *r = &b->recs[i];
    lua_createtable(L, 0, 9);
    lua_pushstring(L, r->id);
    lua_setfield(L, -2, "id");
    if (kv) {
      set_str(L, r, "op");
      set_str(L, r, "key");
      set_num(L, r, "version");
      set_value(L, r);
    } else {
      set_str(L, r, "event");
      set_str(L, r, "bucket");
      set_str(L, r, "key");
      set_num(L, r, "size");
      set_str(L, r, "etag");
      set_str(L, r, "contentType");
    }
    set_num(L, r, "time");
    lua_pushinteger(L, r->receive_count);
    lua_setfield(L, -2, "receiveCount");
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "records");
}
