#!/bin/sh
# deps.sh - install what crescent needs from Debian's packages, and nothing else.
#
# `sh tools/deps.sh` installs what building and running crescent needs (make
# run); `sh tools/deps.sh test` adds what only the test suite needs (make test,
# make test-asan): chromium, the real browser of tests/integration/test_cors_browser.c, and
# prometheus (promtool and the server) for tests/integration/test_prometheus.c.
#
# Safe to run again: it only installs what is missing, and only adds a deb-src
# entry (needed by `apt-get source luajit2`, see tools/luajit.sh) when the
# machine has none for Debian's own archive. Runs as root, or through sudo.
set -eu

PKGS="build-essential cmake pkg-config dpkg-dev xz-utils
      libuv1-dev libhiredis-dev lua-cjson-dev libcmocka-dev redis-server redis-tools node-llhttp
      tzdata python3 python3-croniter libssl-dev openssl ca-certificates libargon2-dev libjs-chart.js"
TEST_PKGS="chromium prometheus"

case "${1:-}" in
"") ;;
test) PKGS="$PKGS $TEST_PKGS" ;;
*) echo "usage: sh tools/deps.sh [test]" >&2; exit 2 ;;
esac

if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi

missing=
for p in $PKGS; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$st" in *"ok installed") ;; *) missing="$missing $p" ;; esac
done

# apt-get source needs a deb-src line. Add one for the archive the machine
# already uses for bookworm, if no deb-src is configured at all.
need_src=1
if grep -rqsE '^[[:space:]]*(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then
	need_src=0
fi

if [ -z "$missing" ] && [ "$need_src" -eq 0 ]; then
	exit 0
fi

if [ "$need_src" -eq 1 ]; then
	. /etc/os-release
	codename=${VERSION_CODENAME:-bookworm}
	echo "deps: adding a deb-src entry for Debian $codename (for apt-get source luajit2)"
	$SUDO sh -c "cat > /etc/apt/sources.list.d/crescent-deb-src.sources" <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename $codename-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

echo "deps: installing:${missing:- (none, refreshing package lists)}"
$SUDO apt-get update -qq
if [ -n "$missing" ]; then
	# redis-server's maintainer scripts try to start a system service; crescent
	# starts its own, so keep the packaged one from being started here.
	printf '#!/bin/sh\nexit 101\n' > /tmp/crescent-policy-rc.d
	chmod +x /tmp/crescent-policy-rc.d
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		$SUDO cp /tmp/crescent-policy-rc.d /usr/sbin/policy-rc.d
		trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	# shellcheck disable=SC2086
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi
