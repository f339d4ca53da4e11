/* json.h - the Lua JSON codec (the C side's text helpers are jsontext.h): an
 * encoder from Lua values for responses and the `json.encode` functions see.
 *
 * Why not lua-cjson's encoder: it prints numbers with at most 14 significant
 * digits, so integers past 10^14 (ids, timestamps in µs, 2^53) and most
 * doubles do not round-trip. This encoder prints integers exactly and other
 * numbers with the shortest form that reads back to the same double. Output
 * otherwise follows lua-cjson: empty tables are objects, sparse arrays become
 * objects, NaN/inf and functions are errors.
 *
 * And a decoder (json.c says why not lua-cjson's): strict RFC 8259, null as
 * json.null (lua-cjson's lightuserdata NULL), empty arrays marked with
 * json.array_mt so they encode back to [], nesting up to 1000.
 *
 * Rules a function cannot break (issue 10):
 * - Encoding reads values raw (no metamethod or other user code runs) and
 *   checks every write against a bound, so it stops there instead of
 *   building what a shared sub-table DAG expands to: the caller's max
 *   (cr_json_encode_max, json.encode(v, max)), and for cr_json_encode and a
 *   function's json.encode also the memory its state has left. Its time is
 *   bounded too: from the 64th table on it gives up at the invocation's
 *   deadline, or 2 s after it started where none is armed (walking a table
 *   costs its slots, which the text does not show).
 * - json.encode's text lives in one per-process scratch buffer, trimmed to
 *   64 KB after every call, including a memory error while copying it into
 *   the state: nothing stays behind outside the meter.
 * - Decoding allocates outside the state at most a 64 KB scratch buffer:
 *   longer escaped strings are unescaped in the state's own memory, long
 *   number texts are read in stack memory.
 * - Numbers past the largest double are refused ("number out of range at
 *   character N"): infinity has no JSON text, so what decode gives can
 *   always be encoded back. Underflow reads as 0 (or -0), the nearest
 *   double, as strtod and JavaScript do.
 * - The json table holds only what the README documents (encode, decode,
 *   null, empty_array, array_mt, and safe.* of the same): none of
 *   lua-cjson's functions (new(), with its own buffer outside the meter) or
 *   settings. Every lightuserdata of a state prints a name ("json.null",
 *   "json.empty_array", else "userdata"), never an address, and its
 *   metatable is locked; json.empty_array is not an address at all. */
#ifndef CR_JSON_H
#define CR_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "jsontext.h"

typedef struct lua_State lua_State;

/* Like cr_json_encode, but fails with CR_ETOOBIG ("... over the limit of N bytes" in err) as soon
 * as the text would pass max bytes, without building the rest. max counts the bytes this call
 * appends. Values are read raw: no metamethod or other user code runs. */
int cr_json_encode_max(lua_State *L, int idx, cr_buf_t *b, size_t max, char *err, size_t errlen);
/* The same, giving up with CR_ETIMEDOUT at deadline_ns (monotonic) instead of
 * the running invocation's deadline: for results encoded after their
 * invocation ended, still within its time. */
int cr_json_encode_until(lua_State *L, int idx, cr_buf_t *b, size_t max, uint64_t deadline_ns, char *err,
                         size_t errlen);

/* Encodes the Lua value at idx into b. On failure returns a negative code,
 * restores b->len, and writes a message to err. Uses a little Lua stack.
 * The text is bounded by the memory L's vm may still allocate under its
 * limit (CR_ETOOBIG past it; no bound for a state that is not a vm's). */
int cr_json_encode(lua_State *L, int idx, cr_buf_t *b, char *err, size_t errlen);

/* Decodes s and pushes the value. On failure pushes nothing, returns a
 * negative code and writes "what at character N" to err. May raise a Lua
 * memory error, like any push. */
int cr_json_decode(lua_State *L, const char *s, size_t len, char *err, size_t errlen);

/* Opens the `json` module (crescent's encode and decode over lua-cjson's table: null,
 * empty_array, array_mt) and leaves it on the stack. */
int cr_json_open(lua_State *L);

#endif
