/* test_qbatch.c - the queue trigger's pure half (core/trigger/queue/batch.c): stream entries
 * copied from hand-made hiredis replies, the event the handler gets, and the failed list read
 * from its result. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <string.h>

#include "batch.h"
#include "error.h"

/* --- replies by hand ------------------------------------------------------------------------------ */

static redisReply str(const char *s) {
  redisReply r = {.type = REDIS_REPLY_STRING, .str = (char *)s, .len = strlen(s)};
  return r;
}

/* An entry [id, [k1, v1, ...]] in storage the caller gives. */
typedef struct {
  redisReply entry, id, fields, kv[8];
  redisReply *eptr[2], *fptr[8];
} entry_t;

static redisReply *make_entry(entry_t *e, const char *id, int nkv, const char *const *kv) {
  e->id = str(id);
  for (int i = 0; i < nkv; i++) {
    e->kv[i] = str(kv[i]);
    e->fptr[i] = &e->kv[i];
  }
  e->fields = (redisReply){.type = REDIS_REPLY_ARRAY, .elements = (size_t)nkv, .element = e->fptr};
  e->eptr[0] = &e->id;
  e->eptr[1] = &e->fields;
  e->entry = (redisReply){.type = REDIS_REPLY_ARRAY, .elements = 2, .element = e->eptr};
  return &e->entry;
}

static void test_add(void **state) {
  (void)state;
  cr_qbatch_t *b = cr_qbatch_new(2);
  assert_non_null(b);
  entry_t e;
  static const char *const j[] = {"type", "j", "body", "{\"n\":1}", "time", "1700000000123"};
  assert_int_equal(cr_qbatch_add(b, make_entry(&e, "1700000000123-0", 6, j), 1), 0);
  /* A promoted message carries its "delayed-N" id too: ignored; unknown types are strings. */
  static const char *const s[] = {"id", "delayed-4", "type", "x", "body", "plain"};
  assert_int_equal(cr_qbatch_add(b, make_entry(&e, "1700000000124-7", 6, s), 3), 0);
  assert_int_equal(b->n, 2);
  assert_string_equal(b->recs[0].id, "1700000000123-0");
  assert_int_equal(b->recs[0].type, 'j');
  assert_string_equal(b->recs[0].body, "{\"n\":1}");
  assert_true(b->recs[0].sent_at == 1700000000123.0);
  assert_int_equal(b->recs[0].receive_count, 1);
  assert_int_equal(b->recs[1].type, 's');
  assert_string_equal(b->recs[1].body, "plain");
  assert_true(b->recs[1].sent_at == 0);
  assert_int_equal(b->recs[1].receive_count, 3);
  /* Full. */
  assert_int_equal(cr_qbatch_add(b, make_entry(&e, "1-1", 6, j), 1), CR_ELIMIT);
  cr_qbatch_free(b);

  /* Shapes that are not a crescent message add nothing. */
  b = cr_qbatch_new(4);
  static const char *const nobody[] = {"type", "s", "time", "1"};
  assert_int_equal(cr_qbatch_add(b, make_entry(&e, "1-1", 4, nobody), 1), CR_EINVAL);
  static const char *const odd[] = {"type", "s", "body"};
  assert_int_equal(cr_qbatch_add(b, make_entry(&e, "1-1", 3, odd), 1), CR_EINVAL);
  static const char *const ok[] = {"body", "x"};
  assert_int_equal(cr_qbatch_add(b, make_entry(&e, "", 2, ok), 1), CR_EINVAL);
  char longid[64];
  memset(longid, '1', sizeof longid - 1);
  longid[sizeof longid - 1] = '\0';
  assert_int_equal(cr_qbatch_add(b, make_entry(&e, longid, 2, ok), 1), CR_EINVAL);
  redisReply nil = {.type = REDIS_REPLY_NIL};
  assert_int_equal(cr_qbatch_add(b, &nil, 1), CR_EINVAL);
  assert_int_equal(cr_qbatch_add(b, NULL, 1), CR_EINVAL);
  assert_int_equal(b->n, 0);
  cr_qbatch_free(b);
}

/* A change record redriven for one group ("group" field) is taken by that group's trigger
 * only; records without the field are every group's. */
static void test_source_group(void **state) {
  (void)state;
  cr_qbatch_t *b = cr_qbatch_new(4);
  assert_non_null(b);
  cr_qsource_t src = {.kind = CR_QSRC_STORAGE, .name = "pics", .events = CR_STORAGE_PUT, .group = "thumbs"};
  entry_t e;
  static const char *const plain[] = {"event", "put", "bucket", "pics", "key", "a.png", "size", "3"};
  static const char *const mine[] = {"event", "put", "key", "b.png", "size", "3", "group", "thumbs"};
  static const char *const other[] = {"event", "put", "key", "c.png", "size", "3", "group", "audit"};
  static const char *const prefix[] = {"event", "put", "key", "c.png", "size", "3", "group", "thumbsx"};
  assert_int_equal(cr_qbatch_take(b, &src, make_entry(&e, "1-1", 8, plain), 1), 0);
  assert_int_equal(cr_qbatch_take(b, &src, make_entry(&e, "1-2", 8, mine), 1), 0);
  assert_int_equal(cr_qbatch_take(b, &src, make_entry(&e, "1-3", 8, other), 1), CR_ENOENT);
  assert_int_equal(cr_qbatch_take(b, &src, make_entry(&e, "1-4", 8, prefix), 1), CR_ENOENT);
  src.group = NULL; /* no group known: every record */
  assert_int_equal(cr_qbatch_take(b, &src, make_entry(&e, "1-5", 8, other), 1), 0);
  assert_int_equal(b->n, 3);
  assert_string_equal(b->recs[1].id, "1-2");
  cr_qbatch_free(b);
}

/* A batch of three: JSON, a string, and JSON that does not decode (kept as its text). */
static cr_qbatch_t *three(void) {
  cr_qbatch_t *b = cr_qbatch_new(3);
  entry_t e;
  static const char *const a[] = {"type", "j", "body", "{\"n\":1,\"tags\":[\"x\"]}", "time", "1700000000000"};
  static const char *const c[] = {"type", "s", "body", "hello", "time", "1700000000001"};
  static const char *const d[] = {"type", "j", "body", "{bad", "time", "1700000000002"};
  assert_int_equal(cr_qbatch_add(b, make_entry(&e, "1-0", 6, a), 1), 0);
  assert_int_equal(cr_qbatch_add(b, make_entry(&e, "1-1", 6, c), 2), 0);
  assert_int_equal(cr_qbatch_add(b, make_entry(&e, "2-0", 6, d), 5), 0);
  return b;
}

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  assert_non_null(L);
  luaL_openlibs(L);
  return L;
}

/* Runs chunk with the value on top as `...`; it returns true or an error message. */
static void check(lua_State *L, const char *chunk) {
  if (luaL_loadstring(L, chunk)) fail_msg("%s", lua_tostring(L, -1));
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0)) fail_msg("%s", lua_tostring(L, -1));
  if (!lua_toboolean(L, -1)) fail_msg("check failed: %s", chunk);
  lua_pop(L, 1);
}

static void test_event(void **state) {
  (void)state;
  lua_State *L = new_state();
  cr_qbatch_t *b = three();
  cr_qbatch_push_event(L, b, "orders");
  assert_int_equal(lua_gettop(L), 1);
  check(L, "local e = ...\n"
           "local r = e.records\n"
           "return e.source == 'queue' and e.queue == 'orders' and #r == 3\n"
           "  and r[1].id == '1-0' and r[1].body.n == 1 and r[1].body.tags[1] == 'x'\n"
           "  and r[1].receiveCount == 1 and r[1].sentAt == 1700000000000\n"
           "  and r[2].id == '1-1' and r[2].body == 'hello' and r[2].receiveCount == 2\n"
           "  and r[3].body == '{bad' and r[3].receiveCount == 5 and r[3].sentAt == 1700000000002");
  assert_int_equal(lua_gettop(L), 0);
  cr_qbatch_free(b);
  lua_close(L);
}

/* Pushes the chunk's value and marks b with it. */
static int mark(lua_State *L, cr_qbatch_t *b, const char *chunk) {
  for (int i = 0; i < b->n; i++) b->recs[i].failed = 0;
  if (luaL_loadstring(L, chunk) || lua_pcall(L, 0, 1, 0)) fail_msg("%s", lua_tostring(L, -1));
  int top = lua_gettop(L);
  int n = cr_qbatch_mark_failed(L, -1, b);
  assert_int_equal(lua_gettop(L), top);
  lua_pop(L, 1);
  return n;
}

static void test_failed(void **state) {
  (void)state;
  lua_State *L = new_state();
  cr_qbatch_t *b = three();
  /* Nothing failed: no result, a string, a table without `failed`, an empty list. */
  assert_int_equal(mark(L, b, "return nil"), 0);
  assert_int_equal(mark(L, b, "return 'done'"), 0);
  assert_int_equal(mark(L, b, "return { ok = true }"), 0);
  assert_int_equal(mark(L, b, "return { failed = {} }"), 0);
  /* The listed ids, once each; unknown ids and non-strings ignored. */
  assert_int_equal(mark(L, b, "return { failed = { '2-0', 'nope', 7, '2-0' } }"), 1);
  assert_false(b->recs[0].failed);
  assert_false(b->recs[1].failed);
  assert_true(b->recs[2].failed);
  assert_int_equal(mark(L, b, "return { failed = { '1-0', '1-1' } }"), 2);
  assert_true(b->recs[0].failed && b->recs[1].failed && !b->recs[2].failed);
  /* Read raw: a metatable cannot make ids up. */
  assert_int_equal(mark(L, b, "return setmetatable({}, { __index = { failed = { '1-0' } } })"), 0);
  /* A `failed` that is not a list fails everything. */
  assert_int_equal(mark(L, b, "return { failed = '1-0' }"), 3);
  assert_true(b->recs[0].failed && b->recs[1].failed && b->recs[2].failed);
  assert_int_equal(mark(L, b, "return { failed = true }"), 3);
  cr_qbatch_free(b);
  lua_close(L);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_add),
      cmocka_unit_test(test_source_group),
      cmocka_unit_test(test_event),
      cmocka_unit_test(test_failed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
