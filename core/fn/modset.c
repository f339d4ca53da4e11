/* modset.c - packing module sets and reading them back. */
#include "modset.h"

#include <stdlib.h>

#include "error.h"

int cr_modset_pack(const cr_vm_modules_t *m, cr_buf_t *out) {
  int n = m ? m->n : 0;
  if (cr_wire_u32(out, (uint32_t)n)) return CR_ENOMEM;
  for (int i = 0; i < n; i++) {
    const cr_vm_module_t *it = &m->items[i];
    if (cr_wire_str(out, it->name) || cr_wire_str(out, it->relpath)) return CR_ENOMEM;
    int rc = cr_wire_bytes(out, it->source, it->len);
    if (rc) return rc == CR_ETOOBIG ? rc : CR_ENOMEM;
  }
  return 0;
}

int cr_modset_unpack_from(cr_wire_reader_t *r, cr_vm_modules_t *m) {
  uint32_t n = cr_wire_get_u32(r);
  if (n > CR_MODSET_MAX) r->bad = 1;
  int rc = 0;
  for (uint32_t i = 0; i < n && !r->bad && !rc; i++) {
    size_t len;
    char *name = cr_wire_get_bytes(r, NULL), *rel = cr_wire_get_bytes(r, NULL), *src = cr_wire_get_bytes(r, &len);
    /* Each field is a string: NULL is malformed (the reader set bad if it ran short). */
    if (!name || !rel || !src) r->bad = 1;
    else rc = cr_vm_modules_add(m, name, rel, src, len);
    free(name);
    free(rel);
    free(src);
  }
  if (r->bad || rc) {
    cr_vm_modules_free(m);
    return r->bad ? CR_EINVAL : CR_ENOMEM;
  }
  return 0;
}
