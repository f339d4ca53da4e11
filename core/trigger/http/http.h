/* http.h - HTTP/1.1 server connections on a libuv loop, parsed by llhttp.
 *
 * Owns: accepting on a listening socket, connections, parsing, limits, and
 * writing responses. Knows nothing of functions: each complete request is
 * handed to on_request, and whoever handles it answers once with
 * cr_http_respond_start/header/finish, now or later (an invocation may wait
 * on I/O). Requests on a connection are handled one at a time, so pipelined
 * requests are answered in order; responses produced within one read are
 * written together.
 *
 * Limits and their answers: request line + headers over max_header -> 431
 * (a URL over 8 KB -> 414), more than 100 headers -> 431, body over max_body
 * -> 413, malformed -> 400, a request not fully received within
 * request_timeout -> 408; each closes the connection after the answer. Idle
 * keep-alive connections close after keepalive_timeout. Past max_connections,
 * new connections get 503 and are closed.
 *
 * Strictness (RFC 9112; each of these is 400 and closes, nothing pipelined
 * behind the request is read):
 *  - every line of the header section, of a chunk-size line and of the
 *    trailer section ends with CRLF: a bare LF or a CR not followed by LF is
 *    refused, and so is a field line starting with whitespace (obs-fold, or
 *    whitespace before the first field). Empty lines (CRLF) before a request
 *    line are skipped. Chunk data must be followed by exactly CRLF;
 *  - a request line without a version (HTTP/0.9) is 400; a major version
 *    other than 1 is 505; HTTP/1.x with x > 1 is served as 1.1;
 *  - a field name that is empty or holds whitespace ("Name : v");
 *  - HTTP/1.1 without exactly one Host field, any request with two, and a
 *    Host value that is not host[:port] characters;
 *  - Content-Length that is not one decimal number, or with
 *    Transfer-Encoding; Transfer-Encoding in HTTP/1.0, or whose last coding
 *    is not chunked; a coding before chunked ("gzip, chunked") is 501;
 *  - chunk extensions (any number, token or quoted values) are accepted and
 *    ignored; an empty extension name or value is refused;
 *  - the target is origin-form ("/path?query"), absolute-form
 *    ("http(s)://authority/path?query", without userinfo: routed by its path
 *    and query, its authority replaces the Host value as 9112 3.2.2 says),
 *    "*" for OPTIONS only (answered here: 204 with Allow, never handed to
 *    on_request), or authority-form for CONNECT (405). A fragment ('#') or a
 *    control byte in the target is refused.
 * Trailing whitespace is not part of a field value. Fields of a chunked
 * trailer section are checked and ignored.
 *
 * The path is normalized once, at parse time (RFC 3986 6.2.2.2): a %XX that
 * encodes an unreserved character (ALPHA DIGIT - . _ ~) is replaced by the
 * character, in the path only (not the query); every other %XX stays as it
 * came. req->target, req->path and the body_limit callback all see the
 * normalized bytes, so "/%5f/x" and "/_/x" are the same path everywhere.
 *
 * Output limits:
 *  - back-pressure: while 4 MB (OUT_HIGH_WATER in http.c) or more of a
 *    connection's responses wait to be written, or while a write is in
 *    flight, no further request of that connection is read or parsed; it
 *    goes on once the socket has taken everything queued. A client that
 *    pipelines requests and never reads holds at most 4 MB plus one
 *    response in the worker (plus what the kernel's socket buffers hold),
 *    and is closed when a write makes no progress for 60 s.
 *  - a response's head (its status line, Date and the fields added with
 *    cr_http_respond_header/lines) may be at most 64 KB; past that nothing
 *    more of it is kept, and finish answers 500 {"error":"internal error:
 *    response headers too large","requestId":...} instead (logged at error
 *    level with the request id). The fields finish adds come on top. */
#ifndef CR_HTTP_H
#define CR_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "reqid.h"
#include "shm.h"

typedef struct uv_loop_s uv_loop_t;
typedef struct cr_http_server_s cr_http_server_t;
typedef struct cr_http_conn_s cr_http_conn_t;

typedef struct {
  const char *name; /* lower-case */
  size_t name_len;
  const char *value;
  size_t value_len;
} cr_http_header_t;

typedef struct cr_http_req_s {
  cr_http_conn_t *conn;
  unsigned method;            /* a CR_M_* bit (router.h) */
  const char *method_name;    /* "GET" */
  const char *target;         /* the request-target, its path normalized (see above) */
  size_t target_len;
  const char *path;           /* the normalized path: target up to '?', after an absolute-form's authority */
  size_t path_len;
  const char *query;          /* after '?', or "" */
  size_t query_len;
  int http_minor;             /* 1.x: 0 or 1 */
  int nheaders;
  cr_http_header_t *headers;
  const char *body;
  size_t body_len;
  const char *ip;             /* the peer's address */
  char id[CR_REQID_MAX + 1];  /* the request id: a well-formed X-Request-Id it brought, or a new one (reqid.h) */
  size_t id_len;
  int head;                   /* HEAD: the body is not sent */
} cr_http_req_t;

typedef void (*cr_http_request_cb)(cr_http_req_t *req, void *data);
typedef void (*cr_http_drained_cb)(void *data);

typedef struct {
  size_t max_body;
  size_t max_header;
  double request_timeout;
  double keepalive_timeout;
  int max_connections;
  cr_http_request_cb on_request;
  /* The body limit for a request target, if it is not max_body (may be NULL). */
  size_t (*body_limit)(const char *target, size_t len, void *data);
  void *data;
  cr_shm_worker_t *meters; /* responses counted by status class (may be NULL) */
  /* The access log: a line per answer ("msg":"access": method, path, status,
   * bytes, duration, ip, userAgent, requestId), CR_ACCESS_LOG_*. */
  int access_log;
} cr_http_opts_t;

enum { CR_ACCESS_LOG_OFF = 0, CR_ACCESS_LOG_ERRORS, CR_ACCESS_LOG_ALL };

/* Starts serving on fd, a bound and listening TCP socket (the server takes it). */
int cr_http_server_start(cr_http_server_t **out, uv_loop_t *loop, int fd, const cr_http_opts_t *opts);
/* Stops accepting, closes idle connections, lets busy ones finish their
 * request; calls done once no connection is left. */
void cr_http_server_drain(cr_http_server_t *s, cr_http_drained_cb done, void *data);
/* Frees a drained server (after done was called). */
void cr_http_server_free(cr_http_server_t *s);
int cr_http_server_connections(const cr_http_server_t *s);

/* The value of a request header (name lower-case), or NULL. */
const cr_http_header_t *cr_http_req_header(const cr_http_req_t *req, const char *name, size_t len);

/* Answering a request: start, any headers, finish (exactly once each).
 * start writes the status line and Date; finish adds Content-Type (unless NULL), Content-Length, X-Request-Id
 * and Connection, then the body (not for HEAD), and sends. */
void cr_http_respond_start(cr_http_req_t *req, int status);
void cr_http_respond_header(cr_http_req_t *req, const char *name, size_t nlen, const char *value,
                            size_t vlen);
/* Appends header lines already formatted ("Name: value\r\n" each). */
void cr_http_respond_lines(cr_http_req_t *req, const char *lines, size_t len);
void cr_http_respond_finish(cr_http_req_t *req, const char *content_type, const char *body, size_t len);
/* A whole JSON answer {"error": msg} (plus requestId for 5xx). */
void cr_http_respond_error(cr_http_req_t *req, int status, const char *msg);
/* Its body alone, appended to b, for callers that add headers of their own. */
void cr_http_error_body(cr_buf_t *b, const cr_http_req_t *req, int status, const char *msg);
/* The same with the requestId whatever the status (the gateway's policy answers: 401, 403, 429). */
#define cr_http_error_body_id(b, req, msg) cr_http_error_body((b), (req), -1, (msg))

const char *cr_http_reason(int status);

/* A response streamed as it is made (Server-Sent Events): after
 * cr_http_respond_start and any headers, stream_start ends the head with
 * content_type, X-Request-Id and Connection: close (the body ends with the
 * connection), then stream_write sends pieces. The connection reads on, to
 * see the client go: gone(data) is called once when it does (closed, a write
 * failed or timed out, the server is stopping), and must call
 * cr_http_stream_end. stream_write returns -1, sending nothing, when more
 * than 1 MB waits for a slow client (end the stream then). stream_end (once)
 * closes the connection once what was written is sent; no gone call comes
 * after it. */
typedef void (*cr_http_gone_cb)(void *data);
void cr_http_stream_start(cr_http_req_t *req, const char *content_type, cr_http_gone_cb gone, void *data);
int cr_http_stream_write(cr_http_req_t *req, const char *p, size_t n);
void cr_http_stream_end(cr_http_req_t *req);

/* Drains without losing a request already received (issue 10, item 11; the
 * rule is in http.c): closes the listener (take in its accept queue first),
 * closes idle connections, answers every request received on the others
 * (being received, being handled, pipelined), the last answer of each with
 * "Connection: close", and calls done once no connection is left. */
void cr_http_server_drain_received(cr_http_server_t *s, cr_http_drained_cb done, void *data);

#endif
