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
 * new connections get 503 and are closed. */
#ifndef CR_HTTP_H
#define CR_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

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
  const char *target;         /* the raw request-target */
  size_t target_len;
  const char *path;           /* target up to '?' */
  size_t path_len;
  const char *query;          /* after '?', or "" */
  size_t query_len;
  int http_minor;             /* 1.x */
  int nheaders;
  cr_http_header_t *headers;
  const char *body;
  size_t body_len;
  const char *ip;             /* the peer's address */
  char id[40];                /* x-request-id */
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
} cr_http_opts_t;

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

const char *cr_http_reason(int status);

#endif
