/* httpc.h - the command line's HTTP/1.1 client, for the commands that talk
 * to a running server (invoke): one blocking request per connection,
 * http:// URLs only (crescent serves plain HTTP; put TLS in front of it). */
#ifndef CR_HTTPC_H
#define CR_HTTPC_H

#include <stddef.h>

#include "buf.h"

typedef struct {
  int status;
  cr_buf_t head;      /* the response's header section, as received */
  cr_buf_t body;
} cr_httpc_resp_t;

/* Sends method url-base + path with the headers (each "Name: value\r\n",
 * may be NULL) and body; waits at most timeout_s for the whole answer.
 * 0, or -1 with err written. resp must be freed with cr_httpc_free. */
int cr_httpc_request(const char *base, const char *method, const char *path, const char *headers,
                     const char *body, size_t len, double timeout_s, cr_httpc_resp_t *resp, char *err,
                     size_t errlen);
/* A response header's value (case-insensitive name), copied into out; NULL if absent. */
const char *cr_httpc_header(const cr_httpc_resp_t *resp, const char *name, char *out, size_t outlen);
void cr_httpc_free(cr_httpc_resp_t *resp);

/* A GET whose answer comes as it is made (Server-Sent Events): waits at
 * most connect_s for the header section, then calls on_data with each piece
 * of the body as it arrives, until the server closes (returns 0), on_data
 * returns non-zero (returns that), or idle_s pass without a byte (-1,
 * "timeout"). A status other than 200 returns -1 with the status in
 * *status and the first bytes of the body in err. */
typedef int (*cr_httpc_data_cb)(void *data, const char *p, size_t n);
int cr_httpc_stream(const char *base, const char *path, const char *headers, double connect_s, double idle_s,
                    cr_httpc_data_cb on_data, void *data, int *status, char *err, size_t errlen);

#endif
