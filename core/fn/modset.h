/* modset.h - a module set as bytes: the modules a function's init required
 * (vm.h's cr_vm_modules_t), as they travel between crescent's processes.
 *
 * Two messages carry module sets: the validator's result to the master
 * (loader.c) and a new version from the master to the workers (registry.c,
 * CR_OP_PUBLISH). Both use this one pair, so the sides cannot drift apart.
 * The format (wire.h): a u32 count, then per module its name, its relpath
 * and its source, each a length-prefixed string, never NULL. */
#ifndef CR_MODSET_H
#define CR_MODSET_H

#include "buf.h"
#include "vm.h"
#include "wire.h"

/* More modules than any init may require: a count above it is refused as
 * malformed instead of being believed. */
#define CR_MODSET_MAX 10000

/* Appends m (NULL: the empty set). Returns 0, CR_ENOMEM, or CR_ETOOBIG (a
 * source of 4 GiB or more); on failure out holds a partial record. */
int cr_modset_pack(const cr_vm_modules_t *m, cr_buf_t *out);

/* Reads a set packed by cr_modset_pack from r into m (empty on entry) and
 * leaves r just after it. Returns 0; CR_EINVAL for a truncated or malformed
 * set (r->bad is then set); CR_ENOMEM. On failure m is left empty. */
int cr_modset_unpack_from(cr_wire_reader_t *r, cr_vm_modules_t *m);

#endif
