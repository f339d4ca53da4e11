/* batch.c - copying stream entries, the event, and the failed list. */
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
  for (int i = 0; i < b->n; i++) free(b->recs[i].body);
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
