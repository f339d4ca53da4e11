#!/usr/bin/env bash
# checkhook.sh - what -DLUAJIT_ENABLE_CHECKHOOK costs on CPU-heavy Lua (issue 3).
#
# Builds tests/bench/checkhook_bench.c twice: against the project's LuaJIT (tools/luajit.sh,
# CHECKHOOK on) and against a second static LuaJIT built from the same Debian luajit2 source
# WITHOUT -DLUAJIT_ENABLE_CHECKHOOK (a copy of the source tree, built once into $NOHOOK_DIR;
# tools/luajit.sh is not touched). Runs them alternately, pinned to one CPU, and prints each
# kernel's median time for both, the totals and the ratio checkhook / no-checkhook.
#
# Usage:   tests/bench/checkhook.sh
# Knobs:   RUNS (process runs per build, default 3), ROUNDS (kernel rounds per run, default 5),
#          LUAJIT_DIR (default <repo>/build/luajit), NOHOOK_DIR (default <repo>/build/luajit-nocheckhook),
#          BENCH_CPU (CPU to pin to, default 1 when there are 2+ CPUs).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RUNS=${RUNS:-3}
ROUNDS=${ROUNDS:-5}
LUAJIT_DIR=${LUAJIT_DIR:-$REPO/build/luajit}
NOHOOK_DIR=${NOHOOK_DIR:-$REPO/build/luajit-nocheckhook}
(( RUNS >= 1 && RUNS <= 20 )) || { echo "RUNS must be 1..20" >&2; exit 2; }
(( ROUNDS >= 1 && ROUNDS <= 50 )) || { echo "ROUNDS must be 1..50" >&2; exit 2; }

log() { printf '[checkhook] %s\n' "$*" >&2; }

# The project's LuaJIT (CHECKHOOK), built once by tools/luajit.sh.
sh "$REPO/tools/luajit.sh" "$LUAJIT_DIR" >&2

# The same source without CHECKHOOK, built once.
if [[ ! -f $NOHOOK_DIR/lib/libluajit.a || ! -f $NOHOOK_DIR/.built-nocheckhook ]]; then
  mkdir -p "$NOHOOK_DIR/src"
  src=$(ls -d "$LUAJIT_DIR"/src/luajit2-*/ 2>/dev/null | head -n 1 || true)
  rm -rf "$NOHOOK_DIR/src/luajit2"
  if [[ -n $src ]]; then
    log "copying ${src%/} -> $NOHOOK_DIR/src/luajit2"
    cp -a "${src%/}" "$NOHOOK_DIR/src/luajit2"
  else
    log "no source in $LUAJIT_DIR/src: apt-get source luajit2"
    (cd "$NOHOOK_DIR/src" && apt-get source -qq luajit2 >/dev/null)
    mv "$(ls -d "$NOHOOK_DIR"/src/luajit2-*/ | head -n 1)" "$NOHOOK_DIR/src/luajit2"
  fi
  log "building LuaJIT without -DLUAJIT_ENABLE_CHECKHOOK (same flags as tools/luajit.sh otherwise)"
  make -s -C "$NOHOOK_DIR/src/luajit2/src" clean >/dev/null
  make -s -C "$NOHOOK_DIR/src/luajit2/src" -j"$(nproc)" libluajit.a \
    BUILDMODE=static CC="${CC:-cc}" CFLAGS="-fPIC" >/dev/null
  mkdir -p "$NOHOOK_DIR/lib" "$NOHOOK_DIR/include"
  cp "$NOHOOK_DIR/src/luajit2/src/libluajit.a" "$NOHOOK_DIR/lib/"
  for h in lua.h lualib.h lauxlib.h luaconf.h luajit.h lua.hpp; do
    cp "$NOHOOK_DIR/src/luajit2/src/$h" "$NOHOOK_DIR/include/"
  done
  touch "$NOHOOK_DIR/.built-nocheckhook"
fi

BIN=$(mktemp -d -t checkhook-bench.XXXXXX)
trap '[[ ${KEEP:-0} == 1 ]] || rm -rf "$BIN"' EXIT
CFLAGS_BENCH=(-O2 -std=gnu11 -Wall -Wextra -Wshadow -Wno-unused-parameter -Wstrict-prototypes -Wmissing-prototypes)
for v in hook:"$LUAJIT_DIR" nohook:"$NOHOOK_DIR"; do
  name=${v%%:*} dir=${v#*:}
  ${CC:-cc} "${CFLAGS_BENCH[@]}" -I"$dir/include" -o "$BIN/$name" "$HERE/checkhook_bench.c" \
    "$dir/lib/libluajit.a" -lm -ldl -lpthread
done
p_hook=$("$BIN/hook" --probe); p_nohook=$("$BIN/nohook" --probe)
log "probe: CHECKHOOK build: $p_hook; plain build: $p_nohook"
[[ $p_hook == "checkhook: yes" ]] || { echo "the CHECKHOOK build does not stop a compiled loop" >&2; exit 1; }

pin=()
if (( $(nproc) > 1 )) && command -v taskset >/dev/null; then pin=(taskset -c "${BENCH_CPU:-1}"); fi
OUT=$BIN/out.tsv
: > "$OUT"
for r in $(seq 1 "$RUNS"); do
  for name in hook nohook; do
    log "run $r/$RUNS: $name (${ROUNDS} rounds)"
    "${pin[@]}" timeout 300 "$BIN/$name" "$ROUNDS" | awk -v b="$name" '
      /^TOTAL / { printf "%s\tTOTAL\t%s\n", b, $2; printf "%s\tCHECKSUM\t%s\n", b, $4; next }
      { t = $(NF - 1); $NF = ""; $(NF - 1) = ""; sub(/ +$/, ""); printf "%s\t%s\t%s\n", b, $0, t }' >> "$OUT"
  done
done

echo
echo "CHECKHOOK cost on CPU-heavy Lua: median of $RUNS runs x median of $ROUNDS rounds each${pin:+, pinned to CPU ${BENCH_CPU:-1}}"
awk -F'\t' '
  function median(str,   a, n, i, j, t) { n = split(str, a, " ")
    for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  $2 == "CHECKSUM" { sum[$1] = $3; next }
  { if (!(($2) in seen)) { seen[$2] = 1; order[++n] = $2 } v[$1, $2] = v[$1, $2] " " $3 }
  END {
    printf "| %-22s | %14s | %14s | %8s |\n", "kernel", "checkhook ms", "no-hook ms", "ratio"
    printf "|%s|%s|%s|%s|\n", "------------------------", "----------------", "----------------", "----------"
    for (i = 1; i <= n; i++) { k = order[i]; th = median(v["hook", k]); tn = median(v["nohook", k])
      printf "| %-22s | %14.1f | %14.1f | %8.3f |\n", k, th, tn, (tn > 0 ? th / tn : 0) }
    if (sum["hook"] != sum["nohook"]) print "WARNING: checksums differ: " sum["hook"] " vs " sum["nohook"]
  }' "$OUT"
