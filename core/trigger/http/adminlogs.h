/* adminlogs.h - the admin API's log endpoints (admin.h; README "Operating crescent").
 *
 *   GET /_/api/logs?function=&level=&since=&until=&requestId=&trace=&q=&limit=&cursor=
 *     -> {"logs":[{"id","stream","line":{...}}...],"next":CURSOR|null,"dropped":N}
 *        newest first; function a name, "@platform", or absent for all;
 *        level the lowest shown; since/until ms since the epoch or a time
 *        ago ("10m"); q a substring of the line; limit 1..1000 (100); next
 *        the cursor of the following page (null: none). dropped: lines the
 *        workers could not keep in Redis (stdout has them).
 *   GET /_/api/logs/tail?function=&level=&requestId=&trace=&q=
 *     -> text/event-stream: each line as an event "id: CURSOR\ndata: LINE";
 *        from now on, or after Last-Event-ID (a cursor) when the client
 *        sends one; a comment every 15 s. The worker polls Redis every
 *        250 ms per tail on its own (asynchronous) connection: never
 *        blocking. At most 16 tails per worker (503 past that).
 * Both answer 503 without Redis, 400 for a bad parameter. */
#ifndef CR_ADMINLOGS_H
#define CR_ADMINLOGS_H

#include "http.h"
#include "logstore.h"
#include "shm.h"

/* What the endpoints use (admin.h's cr_admin_t has them); copied by each call. */
typedef struct {
  cr_logstore_t *logstore; /* NULL without Redis */
  uv_loop_t *loop;
  cr_shm_t *shm;           /* the workers' drop counters */
} cr_logs_api_t;

/* Access is decided before (cr_admin_handle). */
void cr_admin_logs(const cr_logs_api_t *a, cr_http_req_t *req);
void cr_admin_logs_tail(const cr_logs_api_t *a, cr_http_req_t *req);

#endif
