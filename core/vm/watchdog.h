/* watchdog.h - a thread that stops Lua code running past its deadline.
 *
 * LuaJIT checks hooks in compiled code only when built with CHECKHOOK, and
 * those checks only exit the trace when a hook is set. So no hook is set
 * while functions run normally (full JIT speed); the watchdog thread sets a
 * count hook on the running state (lua_sethook is safe to call from another
 * thread or a signal handler) once its deadline passes, and the hook raises
 * the timeout (vm.c).
 *
 * One state runs at a time in a process, so the watchdog guards one slot.
 * Arming and disarming are a few atomic operations and no system call; once
 * cr_watchdog_disarm() returns, the thread will not touch the state again
 * (it may then be closed). */
#ifndef CR_WATCHDOG_H
#define CR_WATCHDOG_H

#include <stdint.h>

typedef struct lua_State lua_State;
typedef void (*cr_watchdog_hook_t)(lua_State *L);

/* Starts the thread (once per process; later calls do nothing). fire is
 * called on the watchdog thread, with the slot locked, to interrupt L. */
int cr_watchdog_start(cr_watchdog_hook_t fire);
void cr_watchdog_arm(lua_State *L, uint64_t deadline_ns);
void cr_watchdog_disarm(void);

#endif
