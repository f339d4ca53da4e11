/* batch.h - a stream trigger's batch: the records one invocation gets.
 *
 * The pure half of the stream triggers (consumer.h is the other): records
 * are copied out of Redis stream entries (a reply is only valid during its
 * callback, and a batch may wait for a place), filtered, pushed to the
 * handler as the event, and the handler's result says which of them failed.
 * A source (cr_qsource_t) says which stream a trigger reads and what its
 * records are: a queue's messages, or the change records crescent.storage
 * and crescent.kv write (storage and kv triggers).
 *
 * A stream entry is [id, [field, value, ...]] as crescent.queue writes it:
 * type ("s" a string body, "j" a JSON one), body, time (ms since the epoch
 * when it was sent); other fields (a promoted message's "id") are ignored.
 *
 * The event (cr_qbatch_push_event):
 *   { source = "queue", queue = NAME,
 *     records = { { id =, body =, receiveCount =, sentAt = }, ... } }
 * a "j" body decoded (cr_json_decode; text that does not decode stays a
 * string), an "s" body a string.
 *
 * A storage change record (st_put.lua, st_delete.lua) has the fields event
 * ("put" or "delete"), bucket, key, size, etag, contentType, time; a KV one
 * (kv_put.lua, kv_delete.lua, kv_incr.lua, kv_expire.lua) op ("put",
 * "delete", "incr", "expire"), key, version, time, and for put and incr the
 * new value as type and value (kv.lua's encoding: s, n, b, j) when the
 * namespace is watched; a record redriven from a dead-letter queue
 * (q_redrive.lua) also has "group", the one consumer group it is for. Their
 * events (cr_qbatch_push_source_event):
 *   { source = "storage", bucket = NAME, records = { { id =, event =,
 *     bucket =, key =, size =, etag =, contentType =, time =,
 *     receiveCount = }, ... } }
 *   { source = "kv", namespace = NAME, records = { { id =, op =, key =,
 *     version =, time =, value =, receiveCount = }, ... } }
 * size, version and time numbers; value decoded (nil for a delete or an
 * expire, or a record written before the namespace was watched).
 *
 * The result (cr_qbatch_mark_failed): nil or any value without a `failed`
 * field means every record succeeded; { failed = { id, ... } } marks those
 * records failed (ids not in the batch are ignored); a `failed` that is not
 * a table fails the whole batch (a typo must not acknowledge records). */
#ifndef CR_QBATCH_H
#define CR_QBATCH_H

#include <stddef.h>

#include "settings.h"

typedef struct lua_State lua_State;
struct redisReply;

/* A change record's field: pointers into the record's body buffer, each
 * NUL-terminated. */
typedef struct {
  const char *name, *val;
  size_t name_len, val_len;
} cr_qfield_t;

typedef struct {
  char id[48];       /* the stream entry id ("1700000000000-0"), NUL-terminated */
  char type;         /* 's' or 'j' (a queue message), 'c' (a change record) */
  char *body;        /* malloc'd, body_len bytes (+ a NUL); a change record's: its fields' text */
  size_t body_len;
  double sent_at;    /* ms since the epoch, 0 when the entry had no time */
  int receive_count; /* deliveries so far, this one included */
  int failed;        /* marked by the handler's result */
  int nfields;        /* a change record's fields (0 for a queue message) */
  cr_qfield_t *fields;
} cr_qrecord_t;

typedef struct {
  int n, cap;
  cr_qrecord_t *recs; /* cap of them */
} cr_qbatch_t;

typedef enum { CR_QSRC_QUEUE, CR_QSRC_STORAGE, CR_QSRC_KV } cr_qsrc_kind_t;

/* What a trigger reads, and which records it keeps. Strings not owned. */
typedef struct {
  cr_qsrc_kind_t kind;
  const char *name;   /* the queue, bucket or namespace */
  unsigned events;    /* storage: CR_STORAGE_* bits of the events kept */
  const char *prefix; /* storage, kv: keys kept start with it (NULL: any) */
  const char *suffix; /* storage: keys kept end with it (NULL: any) */
  const char *group;  /* storage, kv: the trigger's consumer group; a record with a "group" field
                         naming another one (a dead letter redriven to its function) is left
                         out. NULL: none is */
} cr_qsource_t;

/* A batch with room for cap records; NULL when out of memory. */
cr_qbatch_t *cr_qbatch_new(int cap);
void cr_qbatch_free(cr_qbatch_t *b);

/* Copies one stream entry ([id, [field, value, ...]]) into b with
 * receive_count. 0; CR_EINVAL for an entry of another shape (nothing
 * added), CR_ELIMIT when b is full, CR_ENOMEM. */
int cr_qbatch_add(cr_qbatch_t *b, const struct redisReply *entry, int receive_count);

/* Copies one entry of src's stream into b if src keeps it: cr_qbatch_add
 * for a queue; for storage and kv, the change record's fields. 0 when
 * added; CR_ENOENT when src's filter leaves it out (nothing added); then
 * as cr_qbatch_add (CR_EINVAL: not a change record of src's kind). */
int cr_qbatch_take(cr_qbatch_t *b, const cr_qsource_t *src, const struct redisReply *entry, int receive_count);

/* Pushes the event (one value) onto L; queue is the queue's name. May
 * raise a Lua memory error, like any push. */
void cr_qbatch_push_event(lua_State *L, const cr_qbatch_t *b, const char *queue);
/* The same for records taken from src (any kind). */
void cr_qbatch_push_source_event(lua_State *L, const cr_qbatch_t *b, const cr_qsource_t *src);

/* Reads the handler's result at idx (raw: no metamethods) and marks the
 * failed records. Returns how many are marked. Uses a little stack, and
 * leaves it as it found it. */
int cr_qbatch_mark_failed(lua_State *L, int idx, cr_qbatch_t *b);

#endif
