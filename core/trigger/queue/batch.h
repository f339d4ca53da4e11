/* batch.h - a queue trigger's batch: the records one invocation gets.
 *
 * The pure half of the queue trigger (consumer.h is the other): records are
 * copied out of Redis stream entries (a reply is only valid during its
 * callback, and a batch may wait for a place), pushed to the handler as the
 * event, and the handler's result says which of them failed.
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
 * The result (cr_qbatch_mark_failed): nil or any value without a `failed`
 * field means every record succeeded; { failed = { id, ... } } marks those
 * records failed (ids not in the batch are ignored); a `failed` that is not
 * a table fails the whole batch (a typo must not acknowledge records). */
#ifndef CR_QBATCH_H
#define CR_QBATCH_H

#include <stddef.h>

typedef struct lua_State lua_State;
struct redisReply;

typedef struct {
  char id[48];       /* the stream entry id ("1700000000000-0"), NUL-terminated */
  char type;         /* 's' or 'j' */
  char *body;        /* malloc'd, body_len bytes (+ a NUL) */
  size_t body_len;
  double sent_at;    /* ms since the epoch, 0 when the entry had no time */
  int receive_count; /* deliveries so far, this one included */
  int failed;        /* marked by the handler's result */
} cr_qrecord_t;

typedef struct {
  int n, cap;
  cr_qrecord_t *recs; /* cap of them */
} cr_qbatch_t;

/* A batch with room for cap records; NULL when out of memory. */
cr_qbatch_t *cr_qbatch_new(int cap);
void cr_qbatch_free(cr_qbatch_t *b);

/* Copies one stream entry ([id, [field, value, ...]]) into b with
 * receive_count. 0; CR_EINVAL for an entry of another shape (nothing
 * added), CR_ELIMIT when b is full, CR_ENOMEM. */
int cr_qbatch_add(cr_qbatch_t *b, const struct redisReply *entry, int receive_count);

/* Pushes the event (one value) onto L; queue is the queue's name. May
 * raise a Lua memory error, like any push. */
void cr_qbatch_push_event(lua_State *L, const cr_qbatch_t *b, const char *queue);

/* Reads the handler's result at idx (raw: no metamethods) and marks the
 * failed records. Returns how many are marked. Uses a little stack, and
 * leaves it as it found it. */
int cr_qbatch_mark_failed(lua_State *L, int idx, cr_qbatch_t *b);

#endif
