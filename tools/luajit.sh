#!/bin/sh
# luajit.sh DEST - build crescent's own static LuaJIT into DEST (once).
#
# crescent needs a LuaJIT whose compiled code checks hooks, so that a runaway
# `while true do end` can be stopped once the JIT has compiled it. Debian's
# libluajit packages are built without LUAJIT_ENABLE_CHECKHOOK, so we build
# Debian's luajit2 source package (OpenResty's LuaJIT 2.1, GC64 on x86_64)
# ourselves. The source is fetched with `apt-get source`, never committed.
#
# Result: DEST/lib/libluajit.a and DEST/include/*.h. A stamp file makes the
# next run a no-op, so rebuilding crescent never rebuilds LuaJIT.
set -eu

dest=${1:?usage: luajit.sh DEST}
stamp="$dest/.built-checkhook"
[ -f "$stamp" ] && [ -f "$dest/lib/libluajit.a" ] && exit 0

mkdir -p "$dest/src"
cd "$dest/src"
if ! ls -d luajit2-*/src >/dev/null 2>&1; then
	echo "luajit: fetching Debian's luajit2 source package (apt-get source luajit2)"
	if ! apt-get source -qq luajit2 >/dev/null; then
		echo "luajit: 'apt-get source luajit2' failed; run tools/deps.sh (it adds a deb-src entry)" >&2
		exit 1
	fi
fi
srcdir=$(ls -d luajit2-*/ | head -n 1)
echo "luajit: building ${srcdir%/} with -DLUAJIT_ENABLE_CHECKHOOK (static)"
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
make -s -C "$srcdir/src" -j"$jobs" libluajit.a \
	BUILDMODE=static CC="${CC:-cc}" \
	CFLAGS="-fPIC" \
	XCFLAGS="-DLUAJIT_ENABLE_CHECKHOOK" >/dev/null

mkdir -p "$dest/lib" "$dest/include"
cp "$srcdir/src/libluajit.a" "$dest/lib/"
for h in lua.h lualib.h lauxlib.h luaconf.h luajit.h lua.hpp; do
	cp "$srcdir/src/$h" "$dest/include/"
done
echo "${srcdir%/}" > "$stamp"
echo "luajit: ready in $dest"
