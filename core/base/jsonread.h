/* jsonread.h - a small, bounded JSON reader for C (the Lua side has its own
 * decoder in vm/json.c): the document becomes a tree of read-only values.
 * For texts C itself must understand: a JWT's JOSE header and claims, a
 * JWKS key file.
 *
 * The contract:
 *   - Strict RFC 8259: one value (any type) with optional whitespace around
 *     it; no trailing commas, no comments, no byte-order mark, no NaN or
 *     Infinity; control characters inside strings refused; the text must be
 *     valid UTF-8 (no overlong forms, no encoded surrogates, nothing past
 *     U+10FFFF); \u escapes decoded, a surrogate pair only as a high escape
 *     directly followed by a low one (a lone half is refused).
 *   - Numbers are doubles (as strtod reads them in the C locale); one past
 *     the largest double is refused ("number out of range"), underflow reads
 *     as 0.
 *   - An object with the same member name twice (compared after unescaping)
 *     is refused.
 *   - Nesting at most CR_JR_MAX_DEPTH arrays and objects deep.
 *   - Memory is bounded by the input: every value takes at least one byte of
 *     text, and decoded strings are never longer than their text. All of it
 *     is owned by the document; cr_jr_free releases it at once.
 *   - On error: NULL, and err says what and at which byte ("at byte 12:
 *     expected ':'"); nothing is left allocated. */
#ifndef CR_JSONREAD_H
#define CR_JSONREAD_H

#include <stddef.h>

#define CR_JR_MAX_DEPTH 32

typedef enum {
  CR_JR_NULL,
  CR_JR_FALSE,
  CR_JR_TRUE,
  CR_JR_NUMBER,
  CR_JR_STRING,
  CR_JR_ARRAY,
  CR_JR_OBJECT,
} cr_jr_type_t;

/* One value. Read-only: the document owns it. */
typedef struct cr_jr_val_s cr_jr_val_t;
struct cr_jr_val_s {
  cr_jr_type_t type;
  size_t len;               /* a string's bytes; an array's items; an object's members */
  double num;               /* CR_JR_NUMBER */
  const char *str;          /* CR_JR_STRING: the decoded bytes, NUL-terminated (\u0000 may put NULs inside: use len) */
  const char *key;          /* a member of an object: its decoded name, NUL-terminated; else NULL */
  size_t keylen;
  const cr_jr_val_t *child; /* an array's first item, an object's first member; NULL when empty */
  const cr_jr_val_t *next;  /* the next item or member of the same parent, NULL after the last */
};

typedef struct cr_jr_doc_s cr_jr_doc_t;

/* Parses len bytes of s (no NUL needed). NULL with err on a malformed text
 * or out of memory. */
cr_jr_doc_t *cr_jr_parse(const char *s, size_t len, char *err, size_t errlen);
void cr_jr_free(cr_jr_doc_t *d);
/* The top-level value (never NULL for a parsed document). */
const cr_jr_val_t *cr_jr_root(const cr_jr_doc_t *d);

/* The member of obj named key (a NUL-terminated name), or NULL when obj is
 * not an object or has none. */
const cr_jr_val_t *cr_jr_get(const cr_jr_val_t *obj, const char *key);
/* Is v a string of exactly the bytes of s (NUL-terminated)? */
int cr_jr_streq(const cr_jr_val_t *v, const char *s);

/* Appends v as compact JSON text to b (members in their order): 0, or CR_ENOMEM. */
struct cr_buf_s;
int cr_jr_write(struct cr_buf_s *b, const cr_jr_val_t *v);

#endif
