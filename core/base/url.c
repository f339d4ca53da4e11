/* url.c - percent-decoding. */
#include "url.h"

#include "error.h"
#include "text.h"

int cr_url_decode(const char *s, size_t len, int plus, cr_buf_t *out) {
  out->len = 0;
  /* Decoding never lengthens: one reservation is enough. */
  if (cr_buf_reserve(out, len + 1)) return CR_ENOMEM;
  char *o = out->data;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (c == '%' && i + 2 < len && cr_hexval(s[i + 1]) >= 0 && cr_hexval(s[i + 2]) >= 0) {
      c = (char)(cr_hexval(s[i + 1]) * 16 + cr_hexval(s[i + 2]));
      i += 2;
    } else if (c == '+' && plus) {
      c = ' ';
    }
    *o++ = c;
  }
  out->len = (size_t)(o - out->data);
  return 0;
}
