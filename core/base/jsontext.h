/* jsontext.h - JSON text from C, with no Lua: quoted strings and numbers
 * (the log lines, the admin API, HTTP error bodies, and the Lua codec in
 * json.h all write theirs with these). Numbers: integers exactly, other
 * values in the shortest form that reads back to the same double; NaN and
 * infinities have no JSON text and are refused. */
#ifndef CR_JSONTEXT_H
#define CR_JSONTEXT_H

#include <stddef.h>

#include "buf.h"

/* Appends s as a quoted JSON string. */
int cr_json_escape(cr_buf_t *b, const char *s, size_t len);
/* Appends a number: integers exactly, others in their shortest round-trip form.
 * Returns CR_EINVAL for NaN and infinities. */
int cr_json_number(cr_buf_t *b, double v);
/* The same into out (not NUL-terminated); returns the length, or CR_EINVAL. */
#define CR_JSON_NUMBER_MAX 32
int cr_json_format_number(double v, char out[CR_JSON_NUMBER_MAX]);

/* Appends s quoted if that keeps b->len within limit: 0, CR_ETOOBIG (nothing
 * appended) or CR_ENOMEM. */
int cr_json_escape_limited(cr_buf_t *b, const char *s, size_t len, size_t limit);

#endif
