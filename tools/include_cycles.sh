#!/bin/sh
# include_cycles.sh - fails when the module include graph of the C sources has a cycle.
#
# A module is x.c with x.h: it depends on y when either file includes y.h.
# The layers (docs/architecture.md §8) are enforced by the build: a layer's
# include path holds only its own folder and the ones below. Inside a layer
# nothing stops two modules from depending on each other; this check does,
# over every .c and .h file under the folders given (default: core stdlib).
# Prints each cycle found as "a -> b -> a" and exits 1; 0 when none.
# Usage: tools/include_cycles.sh [DIR...]   (run from the repository root)
set -eu
[ $# -gt 0 ] || set -- core stdlib
find "$@" -name '*.[ch]' | sort | while read -r f; do
  b=${f##*/}
  b=${b%.?}
  sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f" |
    while read -r inc; do inc=${inc##*/}; [ "${inc%.?}" = "$b" ] || printf '%s %s\n' "$b" "${inc%.?}"; done
done | awk '
  { if (!($1 in seen)) { seen[$1] = 1; nodes[++n] = $1 }
    adj[$1] = adj[$1] " " $2 }
  function visit(u, path,   i, k, vs, v) {
    state[u] = 1
    k = split(adj[u], vs, " ")
    for (i = 1; i <= k; i++) {
      v = vs[i]
      if (state[v] == 1) { print "include cycle: " path " -> " v; bad = 1 }
      else if (state[v] == 0 && (v in seen)) visit(v, path " -> " v)
    }
    state[u] = 2
  }
  END {
    for (i = 1; i <= n; i++) if (state[nodes[i]] == 0) visit(nodes[i], nodes[i])
    if (bad) exit 1
    printf "no include cycle among %d modules\n", n
  }'
