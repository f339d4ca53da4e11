/* jsonread.c - the bounded JSON reader (the contract is in jsonread.h).
 *
 * A recursive-descent parser (recursion bounded by CR_JR_MAX_DEPTH). Values
 * go into one growing array and decoded strings into one buffer, linked by
 * index while they may still move; once the text is read the indices become
 * the pointers the header shows. */
#include "jsonread.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "jsontext.h"
#include "text.h"

#define NONE SIZE_MAX

struct cr_jr_doc_s {
  cr_jr_val_t *vals; /* vals[0] is the root */
  char *strs;
};

/* A value's links while parsing (indices: the arrays may still move). */
typedef struct {
  size_t child, next, str, key;
} link_t;

typedef struct {
  const char *s, *p, *end;
  cr_jr_val_t *vals;
  link_t *links;
  size_t n, cap;
  cr_buf_t strs;
  char *err;
  size_t errlen;
  int failed;
} parser_t;

static int fail(parser_t *P, const char *what) {
  if (!P->failed && P->errlen) snprintf(P->err, P->errlen, "at byte %zu: %s", (size_t)(P->p - P->s), what);
  P->failed = 1;
  return -1;
}

static size_t new_val(parser_t *P, cr_jr_type_t type) {
  if (P->n == P->cap) {
    size_t cap = P->cap ? P->cap * 2 : 16;
    cr_jr_val_t *v = realloc(P->vals, cap * sizeof *v);
    if (v) P->vals = v;
    link_t *l = v ? realloc(P->links, cap * sizeof *l) : NULL;
    if (!l) {
      fail(P, "out of memory");
      return NONE;
    }
    P->links = l;
    P->cap = cap;
  }
  size_t i = P->n++;
  memset(&P->vals[i], 0, sizeof P->vals[i]);
  P->vals[i].type = type;
  P->links[i] = (link_t){NONE, NONE, NONE, NONE};
  return i;
}

static void skip_ws(parser_t *P) {
  while (P->p < P->end && (*P->p == ' ' || *P->p == '\t' || *P->p == '\n' || *P->p == '\r')) P->p++;
}

/* The length of the valid UTF-8 sequence at p (a byte above 0x7f starts it),
 * or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end) {
  unsigned char c = p[0];
  size_t n;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) n = 2, cp = c & 0x1F;
  else if (c >= 0xE0 && c <= 0xEF) n = 3, cp = c & 0x0F;
  else if (c >= 0xF0 && c <= 0xF4) n = 4, cp = c & 0x07;
  else return 0; /* a continuation byte, C0/C1 (always overlong) or past U+10FFFF */
  if ((size_t)(end - p) < n) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (p[i] & 0x3F);
  }
  if (n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;
  if (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return 0;
  return n;
}

static int hex4(parser_t *P, uint32_t *out) {
  if (P->end - P->p < 4) return fail(P, "truncated \\u escape");
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    int h = cr_hexval(P->p[i]);
    if (h < 0) return fail(P, "invalid \\u escape");
    v = v << 4 | (uint32_t)h;
  }
  P->p += 4;
  *out = v;
  return 0;
}

static size_t put_utf8(char *o, uint32_t cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | cp >> 6);
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | cp >> 12);
    o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | cp >> 18);
  o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Reads the string at P->p (on its '"') into P->strs, NUL-terminated:
 * *off and *len say where. */
static int parse_string(parser_t *P, size_t *off, size_t *len) {
  P->p++; /* the opening quote */
  *off = P->strs.len;
  for (;;) {
    const char *run = P->p;
    while (P->p < P->end) {
      unsigned char c = (unsigned char)*P->p;
      if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
      P->p++;
    }
    if (cr_buf_append(&P->strs, run, (size_t)(P->p - run))) return fail(P, "out of memory");
    if (P->p >= P->end) return fail(P, "unterminated string");
    unsigned char c = (unsigned char)*P->p;
    if (c == '"') {
      P->p++;
      break;
    }
    if (c < 0x20) return fail(P, "control character in string");
    if (c >= 0x80) {
      size_t n = utf8_len((const unsigned char *)P->p, (const unsigned char *)P->end);
      if (!n) return fail(P, "invalid UTF-8");
      if (cr_buf_append(&P->strs, P->p, n)) return fail(P, "out of memory");
      P->p += n;
      continue;
    }
    /* A backslash. */
    if (P->end - P->p < 2) return fail(P, "unterminated string");
    char e = P->p[1], ch;
    P->p += 2;
    switch (e) {
    case '"': ch = '"'; break;
    case '\\': ch = '\\'; break;
    case '/': ch = '/'; break;
    case 'b': ch = '\b'; break;
    case 'f': ch = '\f'; break;
    case 'n': ch = '\n'; break;
    case 'r': ch = '\r'; break;
    case 't': ch = '\t'; break;
    case 'u': {
      uint32_t cp, lo;
      if (hex4(P, &cp)) return -1;
      if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(P, "lone low surrogate in \\u escape");
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (P->end - P->p < 2 || P->p[0] != '\\' || P->p[1] != 'u')
          return fail(P, "high surrogate not followed by a low one");
        P->p += 2;
        if (hex4(P, &lo)) return -1;
        if (lo < 0xDC00 || lo > 0xDFFF) return fail(P, "high surrogate not followed by a low one");
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      }
      char u[4];
      if (cr_buf_append(&P->strs, u, put_utf8(u, cp))) return fail(P, "out of memory");
      continue;
    }
    default:
      P->p -= 2; /* the error names the backslash */
      return fail(P, "invalid escape");
    }
    if (cr_buf_append(&P->strs, &ch, 1)) return fail(P, "out of memory");
  }
  *len = P->strs.len - *off;
  if (cr_buf_append(&P->strs, "", 1)) return fail(P, "out of memory");
  return 0;
}

static int parse_number(parser_t *P, double *out) {
  const char *start = P->p, *p = P->p, *end = P->end;
  if (p < end && *p == '-') p++;
  if (p < end && *p == '0') {
    p++;
  } else if (p < end && *p >= '1' && *p <= '9') {
    while (p < end && *p >= '0' && *p <= '9') p++;
  } else {
    P->p = p;
    return fail(P, "invalid number");
  }
  if (p < end && *p == '.') {
    p++;
    if (p >= end || *p < '0' || *p > '9') {
      P->p = p;
      return fail(P, "invalid number");
    }
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < end && (*p == '+' || *p == '-')) p++;
    if (p >= end || *p < '0' || *p > '9') {
      P->p = p;
      return fail(P, "invalid number");
    }
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  size_t n = (size_t)(p - start);
  char tmp[64], *t = n < sizeof tmp ? tmp : malloc(n + 1);
  if (!t) return fail(P, "out of memory");
  memcpy(t, start, n);
  t[n] = '\0';
  double v = strtod(t, NULL);
  if (t != tmp) free(t);
  if (v > 1.7976931348623157e308 || v < -1.7976931348623157e308) return fail(P, "number out of range");
  P->p = p;
  *out = v;
  return 0;
}

typedef struct {
  const char *k;
  size_t n;
} keyref_t;

static int keycmp(const void *a, const void *b) {
  const keyref_t *x = a, *y = b;
  if (x->n != y->n) return x->n < y->n ? -1 : 1;
  return memcmp(x->k, y->k, x->n);
}

/* Is a name used twice among the members of object o? */
static int has_duplicate(parser_t *P, size_t o, int *oom) {
  size_t count = P->vals[o].len;
  *oom = 0;
  if (count < 2) return 0;
  keyref_t small[8], *refs = count <= 8 ? small : malloc(count * sizeof *refs);
  if (!refs) {
    *oom = 1;
    return 0;
  }
  size_t i = 0;
  for (size_t m = P->links[o].child; m != NONE; m = P->links[m].next, i++)
    refs[i] = (keyref_t){P->strs.data + P->links[m].key, P->vals[m].keylen};
  int dup = 0;
  if (count <= 8) {
    for (size_t a = 0; a < count && !dup; a++)
      for (size_t b = a + 1; b < count && !dup; b++) dup = keycmp(&refs[a], &refs[b]) == 0;
  } else {
    qsort(refs, count, sizeof *refs, keycmp);
    for (size_t a = 1; a < count && !dup; a++) dup = keycmp(&refs[a - 1], &refs[a]) == 0;
    free(refs);
  }
  return dup;
}

static size_t parse_value(parser_t *P, int depth);

/* The array or object at P->p (on its bracket). */
static size_t parse_container(parser_t *P, int depth, int object) {
  if (depth >= CR_JR_MAX_DEPTH) {
    fail(P, "nested deeper than 32");
    return NONE;
  }
  size_t c = new_val(P, object ? CR_JR_OBJECT : CR_JR_ARRAY);
  if (c == NONE) return NONE;
  char close = object ? '}' : ']';
  P->p++;
  skip_ws(P);
  if (P->p < P->end && *P->p == close) {
    P->p++;
    return c;
  }
  size_t last = NONE;
  for (;;) {
    size_t koff = 0, klen = 0;
    if (object) {
      if (P->p >= P->end || *P->p != '"') {
        fail(P, "expected a member name");
        return NONE;
      }
      if (parse_string(P, &koff, &klen)) return NONE;
      skip_ws(P);
      if (P->p >= P->end || *P->p != ':') {
        fail(P, "expected ':'");
        return NONE;
      }
      P->p++;
      skip_ws(P);
    }
    size_t v = parse_value(P, depth + 1);
    if (v == NONE) return NONE;
    if (object) {
      P->links[v].key = koff;
      P->vals[v].keylen = klen;
    }
    if (last == NONE) P->links[c].child = v;
    else P->links[last].next = v;
    last = v;
    P->vals[c].len++;
    skip_ws(P);
    if (P->p < P->end && *P->p == ',') {
      P->p++;
      skip_ws(P);
      continue;
    }
    if (P->p < P->end && *P->p == close) {
      P->p++;
      break;
    }
    fail(P, object ? "expected ',' or '}'" : "expected ',' or ']'");
    return NONE;
  }
  if (object) {
    int oom;
    if (has_duplicate(P, c, &oom)) {
      P->p--;
      fail(P, "duplicate member name");
      return NONE;
    }
    if (oom) {
      fail(P, "out of memory");
      return NONE;
    }
  }
  return c;
}

static size_t literal(parser_t *P, const char *word, cr_jr_type_t type) {
  size_t n = strlen(word);
  if ((size_t)(P->end - P->p) < n || memcmp(P->p, word, n) != 0) {
    fail(P, "invalid literal");
    return NONE;
  }
  P->p += n;
  return new_val(P, type);
}

static size_t parse_value(parser_t *P, int depth) {
  if (P->p >= P->end) {
    fail(P, "unexpected end of text");
    return NONE;
  }
  char c = *P->p;
  if (c == '{' || c == '[') return parse_container(P, depth, c == '{');
  if (c == 't') return literal(P, "true", CR_JR_TRUE);
  if (c == 'f') return literal(P, "false", CR_JR_FALSE);
  if (c == 'n') return literal(P, "null", CR_JR_NULL);
  if (c == '"') {
    size_t off, len;
    if (parse_string(P, &off, &len)) return NONE;
    size_t v = new_val(P, CR_JR_STRING);
    if (v == NONE) return NONE;
    P->links[v].str = off;
    P->vals[v].len = len;
    return v;
  }
  if (c == '-' || (c >= '0' && c <= '9')) {
    double d = 0;
    if (parse_number(P, &d)) return NONE;
    size_t v = new_val(P, CR_JR_NUMBER);
    if (v == NONE) return NONE;
    P->vals[v].num = d;
    return v;
  }
  fail(P, "unexpected character");
  return NONE;
}

cr_jr_doc_t *cr_jr_parse(const char *s, size_t len, char *err, size_t errlen) {
  parser_t P = {.s = s, .p = s, .end = s + len, .strs = CR_BUF_INIT, .err = err, .errlen = errlen};
  if (errlen) err[0] = '\0';
  cr_jr_doc_t *d = NULL;
  skip_ws(&P);
  size_t root = parse_value(&P, 0);
  if (root != NONE) {
    skip_ws(&P);
    if (P.p != P.end) fail(&P, "unexpected text after the value");
  }
  if (!P.failed) {
    d = malloc(sizeof *d);
    if (!d) fail(&P, "out of memory");
  }
  if (P.failed) {
    free(P.vals);
    free(P.links);
    cr_buf_free(&P.strs);
    free(d);
    return NULL;
  }
  /* Every value is made before anything inside it: the root is vals[0]. */
  for (size_t i = 0; i < P.n; i++) {
    cr_jr_val_t *v = &P.vals[i];
    link_t *l = &P.links[i];
    v->child = l->child == NONE ? NULL : &P.vals[l->child];
    v->next = l->next == NONE ? NULL : &P.vals[l->next];
    if (l->str != NONE) v->str = P.strs.data + l->str;
    if (l->key != NONE) v->key = P.strs.data + l->key;
  }
  free(P.links);
  d->vals = P.vals;
  d->strs = P.strs.data;
  return d;
}

void cr_jr_free(cr_jr_doc_t *d) {
  if (!d) return;
  free(d->vals);
  free(d->strs);
  free(d);
}

const cr_jr_val_t *cr_jr_root(const cr_jr_doc_t *d) { return &d->vals[0]; }

const cr_jr_val_t *cr_jr_get(const cr_jr_val_t *obj, const char *key) {
  if (!obj || obj->type != CR_JR_OBJECT) return NULL;
  size_t n = strlen(key);
  for (const cr_jr_val_t *m = obj->child; m; m = m->next)
    if (m->keylen == n && memcmp(m->key, key, n) == 0) return m;
  return NULL;
}

int cr_jr_streq(const cr_jr_val_t *v, const char *s) {
  return v && v->type == CR_JR_STRING && v->len == strlen(s) && memcmp(v->str, s, v->len) == 0;
}

int cr_jr_write(cr_buf_t *b, const cr_jr_val_t *v) {
  switch (v->type) {
  case CR_JR_NULL: return cr_buf_append_str(b, "null");
  case CR_JR_TRUE: return cr_buf_append_str(b, "true");
  case CR_JR_FALSE: return cr_buf_append_str(b, "false");
  case CR_JR_NUMBER: return cr_json_number(b, v->num);
  case CR_JR_STRING: return cr_json_escape(b, v->str, v->len);
  case CR_JR_ARRAY:
  case CR_JR_OBJECT: {
    /* Depth is bounded by the parser (CR_JR_MAX_DEPTH), so the recursion is. */
    int bad = cr_buf_putc(b, v->type == CR_JR_ARRAY ? '[' : '{');
    for (const cr_jr_val_t *c = v->child; c && !bad; c = c->next) {
      if (c != v->child) bad |= cr_buf_putc(b, ',');
      if (v->type == CR_JR_OBJECT) bad |= cr_json_escape(b, c->key, c->keylen) || cr_buf_putc(b, ':');
      bad |= cr_jr_write(b, c);
    }
    return bad || cr_buf_putc(b, v->type == CR_JR_ARRAY ? ']' : '}') ? CR_ENOMEM : 0;
  }
  }
  return CR_ENOMEM;
}
