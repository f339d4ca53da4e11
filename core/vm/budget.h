/* budget.h - what the code running in a state may still spend: the bytes
 * its memory limit leaves and its deadline.
 *
 * The vm (vm.c) registers in every state it boots how to read them; the
 * libraries that must stay within them (the JSON codec) read them here
 * without knowing the vm. A state booted elsewhere (luaL_newstate) has no
 * budget: no memory limit, no deadline. */
#ifndef CR_BUDGET_H
#define CR_BUDGET_H

#include <stddef.h>
#include <stdint.h>

typedef struct lua_State lua_State;

typedef struct {
  size_t mem_left;      /* bytes the state may still allocate */
  uint64_t deadline_ns; /* monotonic ns, or 0: none armed */
} cr_budget_t;

/* How a state's budget is read; the registering module owns a static one. */
typedef struct {
  void (*read)(lua_State *L, cr_budget_t *out);
} cr_budget_source_t;

/* Makes src the budget of L's state (src must outlive it). */
void cr_budget_register(lua_State *L, const cr_budget_source_t *src);
/* Fills out and returns 0, or returns -1 when L's state has no budget. */
int cr_budget_get(lua_State *L, cr_budget_t *out);

#endif
