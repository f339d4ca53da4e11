/* vm.h - one sandboxed LuaJIT state with a metering allocator.
 *
 * A vm is the Lua half of an instance: lua_newstate() with crescent's
 * allocator (which counts bytes, keeps the peak, and refuses past the limit),
 * the allowlisted libraries, and lua/sandbox.lua applied. A vm is first
 * booted blank (no function yet; blank vms can be kept ready), then bound to
 * one function (its name, its folder for require, its memory limit) and
 * loaded with the function's source. It never changes function afterwards.
 *
 * The vm knows nothing about HTTP or pools: instances (pool.c) own vms,
 * invocations (invoke.c) run code in them. Nor does it know the layers above
 * it: whoever makes a vm says, in cr_vm_opts_t, which platform modules its
 * require() knows besides json (the stdlib's crescent.* loaders, installed
 * at boot by a preload hook) and how a module's file is read (the loader's
 * rule of what may be required). A vm made without them knows only json,
 * its version's modules, and nothing on disk. */
#ifndef CR_VM_H
#define CR_VM_H

#include <stddef.h>
#include <stdint.h>

typedef struct lua_State lua_State;

/* A module (a .lua file required by a function) as it was when a version was
 * made: versions carry the modules their init required, so every instance
 * of a version runs the same code (docs/architecture.md §6). */
typedef struct {
  char *name;    /* "lib.util" */
  char *relpath; /* "lib/util.lua" */
  char *source;
  size_t len;
} cr_vm_module_t;

typedef struct {
  cr_vm_module_t *items;
  int n, cap;
} cr_vm_modules_t;

int cr_vm_modules_add(cr_vm_modules_t *m, const char *name, const char *relpath, const char *src, size_t len);
const cr_vm_module_t *cr_vm_modules_find(const cr_vm_modules_t *m, const char *name);
void cr_vm_modules_free(cr_vm_modules_t *m);

/* Fills the table at the top of L's stack with name -> loader (a function
 * called with the module's name on its first require, whose result require
 * returns). Runs once per state at boot, protected, before any user code:
 * an error fails the boot. ud is the preload_ud given with it (for the
 * stdlib, its per-worker object, which must outlive every vm booted so). */
typedef void (*cr_vm_preload_fn)(lua_State *L, void *ud);

/* Reads the module file ROOT/relpath for require(): 0 with *src malloc'd
 * (the vm frees it) and *len; CR_ENOENT when there is no such file;
 * CR_EINVAL when it may not be required (why says why); another error when
 * it cannot be read. cr_loader_module_reader (loader.h) is the platform's. */
typedef int (*cr_vm_reader_fn)(void *ud, const char *root, const char *relpath, char **src, size_t *len,
                               char *why, size_t whylen);

typedef struct {
  cr_vm_preload_fn preload; /* NULL: no platform modules but json */
  void *preload_ud;
  cr_vm_reader_fn read_module; /* NULL: require reads no file */
  void *read_ud;
} cr_vm_opts_t;

typedef struct cr_vm_s {
  lua_State *L;
  void *arena;
  /* Allocator meter, in bytes. */
  size_t mem_used;
  size_t mem_peak;
  size_t mem_limit;
  /* While user code runs the limit is strict; platform code outside it may go
   * a little over (CR_VM_SLACK), so it never hits a memory error where no
   * protected call would catch it. */
  int mem_strict;
  int mem_exceeded;   /* an allocation was refused since the last reset */
  /* Before refusing, a full collection runs: crossing gc_trigger (85 % of the
   * limit at first) asks the hook for one at the next instruction, a safe
   * point. If the live data stays high, the next trigger is halfway to the
   * limit, so at most a little garbage can be left when the limit is hit. */
  size_t gc_trigger;
  int gc_pending;
  /* Identity, set by cr_vm_bind(); the vm does not own these strings. */
  const char *fn_name;
  const char *root;
  /* The request id of the running invocation, for print() and logs. */
  const char *reqid;
  const char *trace; /* and its traceparent (traceparent.h), or NULL */
  /* require() looks in the version's modules first, then in root. While a
   * validator loads a function, modules read from root are recorded. */
  const cr_vm_modules_t *modules;
  cr_vm_modules_t *record;
  /* How require() reads files under root (cr_vm_opts_t). */
  cr_vm_reader_fn read_module;
  void *read_ud;
  void *owner;
  /* Set while code runs under a deadline (monotonic ns); see cr_vm_arm(). */
  uint64_t deadline_ns;
  double timeout_s;
  int timed_out;
  /* Set by the caller while the code runs in a coroutine it resumes: a
   * timeout then yields out of it (see cr_vm_arm). */
  int resumed;
} cr_vm_t;

/* Platform limit on a function's init (its file's top-level code), as Lambda's. */
#define CR_INIT_TIMEOUT 10.0
#define CR_VM_SLACK (8u * 1024 * 1024)
/* JIT machine code per state, in KB (outside the memory meter). */
#define CR_VM_MAXMCODE_KB 512

/* Charges delta bytes held for the state outside it (an outbound answer
 * being received) to its memory meter, as if the state had allocated them:
 * 0, or -1 (nothing charged, and mem_exceeded set: the invocation ends as
 * a memory failure) when the strict limit would be passed.
 * delta < 0 gives bytes back. */
int cr_vm_charge(cr_vm_t *vm, long long delta);

/* Boots a blank sandboxed state with opts (NULL: none; copied, but what
 * preload_ud and read_ud point to must outlive the vm). Returns NULL if
 * memory ran out or the preload hook failed. */
cr_vm_t *cr_vm_new(const cr_vm_opts_t *opts);
/* Closes the state and frees the vm (lua_close costs ~0.1-0.4 ms: keep it off the
 * request path). */
void cr_vm_free(cr_vm_t *vm);

/* Binds the vm to a function: name for logs, root folder for require(), and the
 * memory limit (bytes) from now on. The strings must outlive the vm. */
void cr_vm_bind(cr_vm_t *vm, const char *fn_name, const char *root, size_t mem_limit);

/* Compiles src as text (bytecode is refused) under chunkname ("@path" for
 * file:line messages) and runs it: the function's init, limited to timeout_s
 * seconds. On success pushes the chunk's first result and returns 0; otherwise
 * writes the message to err and returns CR_ELUA, CR_ETIMEDOUT or CR_ENOMEM. */
int cr_vm_load(cr_vm_t *vm, const char *chunkname, const char *src, size_t len, double timeout_s,
               char *err, size_t errlen);

/* Deadlines: cr_vm_arm() starts timeout_s from now for the code about to run
 * in this vm; cr_vm_arm_until() re-arms an absolute deadline (a resumed
 * invocation); cr_vm_disarm() ends it. Past the deadline the watchdog thread
 * sets a hook that stops the code; vm->timed_out tells it happened. In a
 * coroutine the caller resumes (vm->resumed), the hook yields: a yield is not
 * caught by pcall, and one yield leaves any number of nested pcalls at once.
 * Elsewhere, and where a C call stands in the way of a yield, it raises
 * "timed out after N seconds", again at every instruction until disarmed,
 * so pcall cannot swallow it either (but each of N nested pcalls catches it
 * once). The watchdog must have been started in this process
 * (cr_vm_watchdog_start). */
int cr_vm_watchdog_start(void);
void cr_vm_arm(cr_vm_t *vm, double timeout_s);
void cr_vm_arm_until(cr_vm_t *vm, uint64_t deadline_ns);
void cr_vm_disarm(cr_vm_t *vm);

/* Pushes a field of the sandbox's private table (lua/sandbox.lua's result). */
void cr_vm_push_sandbox(lua_State *L, const char *field);

/* The vm whose state L (or one of its coroutines) is. */
cr_vm_t *cr_vm_of(lua_State *L);
/* The same, or NULL when L is not a vm's state (one made by luaL_newstate). */
cr_vm_t *cr_vm_find(lua_State *L);

/* Formats a Lua error value with the traceback of co into out. */
void cr_vm_describe_error(lua_State *co, int idx, char *out, size_t outlen, int traceback);

#endif
