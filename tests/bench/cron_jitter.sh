#!/usr/bin/env bash
# cron_jitter.sh - how late a schedule's ticks start (issue 14): a rate(1 second) function on a
# server of its own (2 workers, its managed Redis), TICKS ticks (default 120), the delay of each
# from its scheduled time to the handler's start (report line: time - duration - scheduledTime,
# ms), printed as p50 / p99 / max. With LOAD=1 the HTTP benchmark's load runs meanwhile (wrk on
# GET /hello, 64 connections, one thread per core), as in the issue's second figure.
# Loopback only; bounded by TICKS and `timeout`.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BIN=${CRESCENT_BIN:-$REPO/build/crescent}
TICKS=${TICKS:-120}
LOAD=${LOAD:-0}
PORT=${PORT:-18190}
(( TICKS >= 10 && TICKS <= 3600 )) || { echo "TICKS must be 10..3600" >&2; exit 2; }
dir=$(mktemp -d)
trap 'kill $srv 2>/dev/null; [[ -n ${wrk:-} ]] && kill $wrk 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
mkdir -p "$dir/functions"
cat > "$dir/functions/tick.lua" <<'LUA'
return { triggers = { { cron = "rate(1 second)" } }, handler = function() end }
LUA
printf 'return function() return "hello world" end\n' > "$dir/functions/hello.lua"
(cd "$dir" && exec "$BIN" serve --listen 127.0.0.1:$PORT --workers 2 --log-level info > log 2>&1) &
srv=$!
for _ in $(seq 100); do grep -q '"listening"' "$dir/log" 2>/dev/null && break; sleep 0.1; done
if [[ $LOAD == 1 ]]; then
  command -v wrk >/dev/null || { echo "wrk is needed for LOAD=1 (Debian: wrk)" >&2; exit 1; }
  timeout $((TICKS + 20)) wrk -t2 -c64 -d$((TICKS + 10))s "http://127.0.0.1:$PORT/hello" > "$dir/wrk.out" 2>&1 &
  wrk=$!
fi
timeout $((TICKS + 30)) bash -c "until [[ \$(grep -c '\"trigger\":\"cron\"' '$dir/log') -ge $((TICKS + 2)) ]]; do sleep 1; done"
/usr/bin/python3 - "$dir/log" "$TICKS" <<'PY'
import json, sys, datetime
def ms(s): return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000
d = []
for line in open(sys.argv[1]):
    if '"trigger":"cron"' not in line: continue
    r = json.loads(line)
    d.append(ms(r["time"]) - r["duration"] - ms(r["scheduledTime"]))
d = sorted(d[2:2 + int(sys.argv[2])])  # the first two: cold starts
p = lambda q: d[min(len(d) - 1, int(q * len(d)))]
print(f"ticks {len(d)}  tick-to-start delay ms: p50 {p(0.5):.1f}  p99 {p(0.99):.1f}  max {d[-1]:.1f}")
PY
[[ $LOAD == 1 ]] && grep -E "Requests/sec" "$dir/wrk.out" || true
