/* budget.c - a state's budget, found through its registry. */
#include "budget.h"

#include <lua.h>

/* The registry key (its address) of the state's budget source. */
static char budget_key;

void cr_budget_register(lua_State *L, const cr_budget_source_t *src) {
  lua_pushlightuserdata(L, &budget_key);
  lua_pushlightuserdata(L, (void *)src);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

int cr_budget_get(lua_State *L, cr_budget_t *out) {
  lua_pushlightuserdata(L, &budget_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  const cr_budget_source_t *src = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!src) return -1;
  src->read(L, out);
  return 0;
}
