/* url.h - percent-decoding (RFC 3986 2.1), for query strings and URL parts.
 *
 * A base module: it depends on the byte buffer only, so the HTTP gateway
 * (query strings) and the Redis client (passwords in redis:// URLs) share it
 * without depending on each other.
 *
 * The contract of cr_url_decode: "%XX" with two hex digits (either case)
 * becomes that byte, "%00" included; a '%' not followed by two hex digits
 * (an invalid or truncated escape) is kept as it is, and so are the bytes
 * after it; with plus set, '+' becomes a space (the form encoding of query
 * strings), otherwise it stays '+'. Nothing is refused: every input decodes. */
#ifndef CR_URL_H
#define CR_URL_H

#include <stddef.h>

#include "buf.h"

/* Percent-decodes s (len bytes) into out, replacing out's contents ('+' as
 * space when plus is set). out->data is not NUL-terminated. Returns 0, or
 * CR_ENOMEM (out then empty). */
int cr_url_decode(const char *s, size_t len, int plus, cr_buf_t *out);

#endif
