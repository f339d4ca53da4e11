#!/usr/bin/env bash
# run.sh - crescent side by side with nginx + lua-nginx-module (OpenResty's model) and the floor
# (issue 6). Loopback only; every load run is bounded by wrk -d and by `timeout`.
#
# Workloads (tests/bench/functions, the same three as the peers):
#   hello : GET  /hello   -> 200 text/plain "hello world"
#   json  : POST /echo    -> the 209-byte JSON body decoded, a field added, encoded back
#   kv    : GET  /counter -> crescent.kv incr (Redis) -> {"counter":N}
#
# Two measured groups, as issue 6 sets its targets:
#   1 worker, pinned   floor, nginx-lua-1w, crescent-1w   (server + redis on CPU 0, wrk on CPU 1)
#   2 workers, unpinned nginx-lua-2w, crescent-2w
# With an external peer harness given as PEERS_SH (a peers.sh taking crescent as an extra peer) it runs that harness
# twice, once per group, with crescent as its extra peer. Without it, it does the same with a
# reduced copy of the harness: nginx + lua from Debian (installed if missing, as root), and the
# floor only if a floor server's source is given (FLOOR_C).
# Then it prints ONE table: req/s, p50, p99, server CPU us/request per peer and workload, and
# the ratios crescent / nginx-lua and crescent / floor, followed by issue 6's targets.
#
# Usage:   tests/bench/run.sh                  (as root the first time: installs Debian packages)
# Knobs:   DURATION (s per run, default 10), ROUNDS (default 1), CONNS (default 64), WARMUP (s,
#          default 2), PEERS_SH, FLOOR_C, CRESCENT_BIN (default <repo>/build/crescent, built
#          with cmake in <repo>/build if missing), RESULTS_DIR (default
#          tests/bench/results/<UTC stamp>, gitignored), SKIP_INSTALL=1, BASE_PORT, REDIS_PORT.
#          SUMMARY_ONLY=DIR re-prints the table of an earlier run.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
export DURATION=${DURATION:-10}
export ROUNDS=${ROUNDS:-1}
export CONNS=${CONNS:-64}
export WARMUP=${WARMUP:-2}
PEERS_SH=${PEERS_SH:-}
FLOOR_C=${FLOOR_C:-}
CRESCENT_BIN=${CRESCENT_BIN:-$REPO/build/crescent}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS_DIR=${RESULTS_DIR:-$HERE/results/$STAMP}
SKIP_INSTALL=${SKIP_INSTALL:-0}
BASE_PORT=${BASE_PORT:-18080}
REDIS_PORT=${REDIS_PORT:-16379}

(( DURATION >= 1 && DURATION <= 15 )) || { echo "DURATION must be 1..15 s" >&2; exit 2; }
(( ROUNDS >= 1 && ROUNDS <= 10 )) || { echo "ROUNDS must be 1..10" >&2; exit 2; }
(( CONNS >= 1 && CONNS <= 1024 )) || { echo "CONNS must be 1..1024" >&2; exit 2; }
(( WARMUP >= 0 && WARMUP <= 15 )) || { echo "WARMUP must be 0..15 s" >&2; exit 2; }

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- the one table
# table DIR: DIR/*/runs.tsv (peers.sh's format) -> the table on stdout.
table() {
  local dir=$1
  local files=("$dir"/*/runs.tsv)
  [[ -f ${files[0]} ]] || { echo "no runs.tsv under $dir" >&2; return 1; }
  awk -F'\t' '
    $1 == "peer" { next }
    function median(str,   v, n, i, j, t) { n = split(str, v, " ")
      if (n == 0) return -1
      for (i = 2; i <= n; i++) { t = v[i] + 0; for (j = i - 1; j >= 1 && v[j] + 0 > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
      return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }
    function ratio(x, y) { return (x > 0 && y > 0) ? sprintf("%.2f", x / y) : "-" }
    function num(x, fmt) { return (x < 0) ? "NA" : sprintf(fmt, x) }
    { key = $1 SUBSEP $2
      if (!(key in seen)) { seen[key] = 1; order[++n] = key; cls[key] = $4 }
      if ($5 == "NA" || $5 + 0 <= 0) next
      rps[key] = rps[key] " " $5; p50[key] = p50[key] " " $6; p99[key] = p99[key] " " $7
      err[key] += $9
      cpu[key] = cpu[key] " " ($10 / 100 / $5 * 1e6)
      red[key] = red[key] " " ($11 / 100 / $5 * 1e6) }
    END {
      for (i = 1; i <= n; i++) { k = order[i]
        R[k] = median(rps[k]); P50[k] = median(p50[k]); P99[k] = median(p99[k])
        C[k] = median(cpu[k]); D[k] = median(red[k]) }
      printf "| %-13s | %-5s | %-4s | %8s | %7s | %7s | %6s | %13s | %12s | %-37s | %-29s |\n", "peer", "wl", "cpu",
        "req/s", "p50 ms", "p99 ms", "errors", "server us/req", "redis us/req", "crescent/nginx-lua: cpu/req req/s p99", "crescent/floor: cpu/req req/s"
      printf "|---------------|-------|------|----------|---------|---------|--------|---------------|--------------|---------------------------------------|-------------------------------|\n"
      # Rows: 1-worker peers then 2-worker peers; within each, by workload, peers in run order.
      for (pass = 1; pass <= 2; pass++) for (x = 1; x <= 3; x++) for (i = 1; i <= n; i++) {
        k = order[i]; split(k, f, SUBSEP); peer = f[1]; wl = f[2]
        if ((pass == 2) != (peer ~ /-2w$/)) continue
        if (wl != (x == 1 ? "hello" : x == 2 ? "json" : "kv")) continue
        vsn = "-"; vsf = "-"
        if (peer ~ /^crescent/) {
          w = peer; sub(/^crescent/, "nginx-lua", w); o = w SUBSEP wl
          if (o in R) vsn = sprintf("%s  %s  %s", ratio(C[k], C[o]), ratio(R[k], R[o]), ratio(P99[k], P99[o]))
          fl = "floor" SUBSEP wl
          if (peer !~ /-2w$/ && (fl in R)) vsf = sprintf("%s  %s", ratio(C[k], C[fl]), ratio(R[k], R[fl]))
        }
        printf "| %-13s | %-5s | %-4s | %8s | %7s | %7s | %6d | %13s | %12s | %-37s | %-29s |\n", peer, wl, cls[k],
          num(R[k], "%.0f"), num(P50[k], "%.3f"), num(P99[k], "%.3f"), err[k],
          num(C[k], "%.1f"), (wl == "kv" ? num(D[k], "%.1f") : "-"), vsn, vsf }
      # Issue 6 targets, in this run.
      print ""
      print "Targets (issue 6), from this run:"
      target("hello", "crescent-1w", "floor", "cpu", 1.15)
      target("json", "crescent-1w", "nginx-lua-1w", "cpu", 0.8)
      target("kv", "crescent-1w", "nginx-lua-1w", "cpu", 0.6)
      for (x = 1; x <= 3; x++) { wl = (x == 1 ? "hello" : x == 2 ? "json" : "kv")
        target(wl, "crescent-1w", "nginx-lua-1w", "rps", 1); target(wl, "crescent-1w", "nginx-lua-1w", "p99", 1) }
      for (x = 1; x <= 3; x++) { wl = (x == 1 ? "hello" : x == 2 ? "json" : "kv"); target(wl, "crescent-2w", "nginx-lua-2w", "rps", 1) }
    }
    # One target line: what (cpu: <= limit x, rps: >= limit x, p99: <= limit x).
    function target(wl, a, b, what, limit,   ka, kb, r, ok, op) {
      ka = a SUBSEP wl; kb = b SUBSEP wl
      if (!(ka in R) || !(kb in R) || R[ka] <= 0 || R[kb] <= 0) { printf "  - %-5s %-12s %-4s vs %-13s: not measured\n", wl, a, what, b; return }
      if (what == "cpu") { r = C[ka] / C[kb]; ok = r <= limit; op = "<=" }
      else if (what == "rps") { r = R[ka] / R[kb]; ok = r >= limit; op = ">=" }
      else { r = P99[ka] / P99[kb]; ok = r <= limit; op = "<=" }
      printf "  - %-5s %-12s %-4s vs %-13s: %.2fx (target %s %.2fx) %s\n", wl, a, what, b, r, op, limit, (ok ? "met" : "NOT met")
    }' "${files[@]}"
  local f
  for f in "$dir"/*/skipped.txt; do
    [[ -s $f ]] && { echo; echo "Skipped ($(basename "$(dirname "$f")")):"; sed 's/^/  - /' "$f"; }
  done
  if [[ -f $dir/notes.txt ]]; then echo; cat "$dir/notes.txt"; fi
  return 0
}

if [[ -n ${SUMMARY_ONLY:-} ]]; then table "$SUMMARY_ONLY"; exit 0; fi

# ---------------------------------------------------------------- crescent
build_crescent() {
  if [[ $CRESCENT_BIN != "$REPO/build/crescent" ]]; then
    [[ -x $CRESCENT_BIN ]] || { echo "CRESCENT_BIN=$CRESCENT_BIN is not executable" >&2; exit 2; }
    return
  fi
  if [[ ! -f $REPO/build/CMakeCache.txt ]]; then
    log "configuring crescent in $REPO/build"
    cmake -S "$REPO" -B "$REPO/build" >&2
  fi
  # Rebuild only when a source is newer than the binary (or there is no binary).
  if [[ -x $CRESCENT_BIN ]] && [[ -z $(find "$REPO/core" "$REPO/lua" "$REPO/stdlib" "$REPO/CMakeLists.txt" \
        -newer "$CRESCENT_BIN" -print -quit 2>/dev/null) ]]; then
    return
  fi
  log "building crescent (cmake --build build --target crescent)"
  if ! cmake --build "$REPO/build" --target crescent -j "$(nproc)" >&2; then
    if [[ -x $CRESCENT_BIN ]]; then log "WARNING: the build failed; measuring the existing $CRESCENT_BIN"
    else echo "building crescent failed" >&2; exit 1; fi
  fi
}

# crescent's command line for a peer harness; PORT and REDIS_URL come from its environment.
crescent_cmd() { # workers data_dir
  printf 'exec %q serve --functions %q --listen 127.0.0.1:$PORT --workers %d --redis $REDIS_URL --log-level warn --data %q' \
    "$CRESCENT_BIN" "$HERE/functions" "$1" "$2"
}

# ---------------------------------------------------------------- with peers.sh
with_peers_sh() {
  local data=$1
  log "using $PEERS_SH (1 worker pinned: floor, nginx-lua-1w, crescent-1w)"
  PEERS="floor nginx-lua-1w" EXTRA_PEER_NAME=crescent-1w EXTRA_PEER_CPUS=pin \
    EXTRA_PEER_CMD="$(crescent_cmd 1 "$data/1w")" RESULTS_DIR="$RESULTS_DIR/1w" \
    SKIP_INSTALL=$SKIP_INSTALL BASE_PORT=$BASE_PORT REDIS_PORT=$REDIS_PORT \
    bash "$PEERS_SH" > "$RESULTS_DIR/peers-1w.log" || log "WARNING: $PEERS_SH failed (1 worker); see $RESULTS_DIR/peers-1w.log"
  log "using $PEERS_SH (2 workers unpinned: nginx-lua-2w, crescent-2w)"
  PEERS="nginx-lua-2w" EXTRA_PEER_NAME=crescent-2w EXTRA_PEER_CPUS=all \
    EXTRA_PEER_CMD="$(crescent_cmd 2 "$data/2w")" RESULTS_DIR="$RESULTS_DIR/2w" \
    SKIP_INSTALL=1 BASE_PORT=$BASE_PORT REDIS_PORT=$REDIS_PORT \
    bash "$PEERS_SH" > "$RESULTS_DIR/peers-2w.log" || log "WARNING: $PEERS_SH failed (2 workers); see $RESULTS_DIR/peers-2w.log"
}

# ---------------------------------------------------------------- without peers.sh
# A reduced copy of peers.sh's logic: same workloads, same wrk flags, same CPU accounting
# (utime + stime of the server's process group and of redis), same runs.tsv format.
CLK=$(getconf CLK_TCK)
NCPU=$(nproc)
PIN=1; (( NCPU < 2 )) && PIN=0
SERVER_CPU=0; WRK_CPU=1
JSON_BODY='{"id":184467,"user":"alice","email":"alice@example.com","roles":["admin","dev"],"active":true,"score":98.6,"items":[{"sku":"X-100","qty":2,"price":9.99},{"sku":"Y-220","qty":1,"price":24.5}],"note":"lazy dog"}'
declare -a STARTED=()
WORK=""

cleanup() {
  local pg
  for pg in "${STARTED[@]+"${STARTED[@]}"}"; do stop_group "$pg"; done
  if [[ -n $WORK && -d $WORK ]]; then rm -rf "$WORK"; fi
}

stop_group() {
  local pg=$1 i
  if kill -TERM -- "-$pg" 2>/dev/null; then
    for i in $(seq 1 50); do kill -0 -- "-$pg" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pg" 2>/dev/null || true
    wait "$pg" 2>/dev/null || true
  fi
  local -a keep=(); local x
  for x in "${STARTED[@]+"${STARTED[@]}"}"; do [[ $x == "$pg" ]] || keep+=("$x"); done
  STARTED=("${keep[@]+"${keep[@]}"}")
}

SPAWNED=""
spawn() { # cpus logfile cmd...
  local cpus=$1 logf=$2; shift 2
  if [[ -n $cpus ]]; then taskset -c "$cpus" setsid "$@" > "$logf" 2>&1 < /dev/null &
  else setsid "$@" > "$logf" 2>&1 < /dev/null & fi
  SPAWNED=$!
  STARTED+=("$SPAWNED")
}

group_ticks() { # pgid -> utime+stime of the whole group
  local pg=$1 f line rest total=0; local -a a
  for f in /proc/[0-9]*/stat; do
    { read -r line < "$f"; } 2>/dev/null || continue
    rest=${line##*) }; read -r -a a <<< "$rest"
    [[ ${a[2]} == "$pg" ]] && total=$(( total + a[11] + a[12] ))
  done
  echo "$total"
}
sys_busy_ticks() { awk '/^cpu /{ print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

install_standalone() {
  local pkgs=(nginx libnginx-mod-http-ndk libnginx-mod-http-lua lua-nginx-redis lua-cjson
              redis-server redis-tools wrk curl util-linux) missing=() p
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  if [[ $SKIP_INSTALL == 1 ]]; then echo "missing packages: ${missing[*]} (SKIP_INSTALL=1)" >&2; exit 2; fi
  [[ $(id -u) == 0 ]] || { echo "missing packages: ${missing[*]}; run as root to install them" >&2; exit 2; }
  local made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then # keep Debian from starting the system services
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1
  fi
  log "apt-get install ${missing[*]}"
  apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  ((made_policy)) && rm -f /usr/sbin/policy-rc.d
  return 0
}

nginx_conf() { # dir port workers name
  local dir=$1 port=$2 workers=$3 name=$4
  mkdir -p "$dir"
  cat > "$dir/nginx.conf" <<EOF
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    default_type text/plain;
    lua_package_path "/usr/share/lua/5.1/?.lua;;";
    lua_package_cpath "/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;;";
    init_by_lua_block {
        require "cjson.safe"
        require "nginx.redis"
    }
    server {
        listen 127.0.0.1:$port;
        location = /hello {
            content_by_lua_block {
                ngx.header["Content-Length"] = 11
                ngx.print("hello world")
            }
        }
        location = /echo {
            content_by_lua_block {
                local cjson = require "cjson.safe"
                ngx.req.read_body()
                local obj = cjson.decode(ngx.req.get_body_data() or "")
                if type(obj) ~= "table" then return ngx.exit(400) end
                obj.ok = true
                local out = cjson.encode(obj)
                ngx.header["Content-Type"] = "application/json"
                ngx.header["Content-Length"] = #out
                ngx.print(out)
            }
        }
        location = /counter {
            content_by_lua_block {
                local redis = require "nginx.redis"
                local cjson = require "cjson.safe"
                local red = redis:new()
                red:set_timeout(1000)
                local ok, err = red:connect("127.0.0.1", $REDIS_PORT)
                if not ok then ngx.log(ngx.ERR, "redis connect: ", err) return ngx.exit(502) end
                local n, err = red:incr("bench:counter:$name")
                if not n then ngx.log(ngx.ERR, "redis incr: ", err) return ngx.exit(502) end
                red:set_keepalive(60000, 256)
                local out = cjson.encode({ counter = n })
                ngx.header["Content-Type"] = "application/json"
                ngx.header["Content-Length"] = #out
                ngx.print(out)
            }
        }
    }
}
EOF
}

port_of() {
  case $1 in
    nginx-lua-1w) echo $((BASE_PORT + 3)) ;; nginx-lua-2w) echo $((BASE_PORT + 4)) ;;
    floor) echo $((BASE_PORT + 7)) ;; *) echo $((BASE_PORT + 6)) ;;
  esac
}
class_of() { if [[ $PIN == 1 && $1 != *-2w ]]; then echo pin; else echo all; fi; }

start_server() { # name data -> PEER_PID
  local name=$1 data=$2 port cpus="" dir=$WORK/$1
  port=$(port_of "$name"); mkdir -p "$dir"
  [[ $(class_of "$name") == pin ]] && cpus=$SERVER_CPU
  if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then log "port $port busy: cannot start $name"; return 1; fi
  case $name in
    floor) spawn "$cpus" "$dir/stdout.log" "$WORK/floor-bin" "$port" ;;
    nginx-lua-1w|nginx-lua-2w)
      nginx_conf "$dir" "$port" "${name: -2:1}" "$name"
      nginx -t -q -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" >&2 || return 1
      spawn "$cpus" "$dir/stdout.log" nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' ;;
    crescent-1w|crescent-2w)
      spawn "$cpus" "$dir/stdout.log" "$CRESCENT_BIN" serve --functions "$HERE/functions" \
        --listen "127.0.0.1:$port" --workers "${name: -2:1}" --redis "redis://127.0.0.1:$REDIS_PORT" \
        --log-level warn --data "$data/$name" ;;
  esac
  PEER_PID=$SPAWNED
  local i
  for i in $(seq 1 150); do
    kill -0 "$PEER_PID" 2>/dev/null || break
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/hello" && return 0
    sleep 0.1
  done
  log "$name did not answer on 127.0.0.1:$port"; tail -n 20 "$dir/stdout.log" >&2 || true
  stop_group "$PEER_PID"; return 1
}

validate() { # wl port -> "ok" or a reason (curl + grep only: no node needed)
  local wl=$1 url=http://127.0.0.1:$2 out a b
  case $wl in
    hello) out=$(curl -s --max-time 2 "$url/hello") || true; [[ $out == "hello world" ]] && echo ok || echo "body '${out:0:40}'" ;;
    json)
      out=$(curl -s --max-time 2 -H 'Content-Type: application/json' --data-binary "$JSON_BODY" "$url/echo") || true
      if [[ $out == *'"ok":true'* && $out == *'"email":"alice@example.com"'* && $out == *'"roles":["admin","dev"]'* ]]; then echo ok
      else echo "echo '${out:0:60}'"; fi ;;
    kv)
      a=$(curl -s --max-time 2 "$url/counter" | grep -o '[0-9][0-9]*' | head -n 1) || true
      b=$(curl -s --max-time 2 "$url/counter" | grep -o '[0-9][0-9]*' | head -n 1) || true
      [[ -n $a && -n $b ]] && (( b > a )) && echo ok || echo "counter '$a' -> '$b'" ;;
  esac
}

run_wrk() { # name wl port secs outfile -> "wall_s wrk_cpu_s"
  local name=$1 wl=$2 port=$3 secs=$4 outf=$5 path
  case $wl in hello) path=/hello ;; json) path=/echo ;; kv) path=/counter ;; esac
  local -a cmd=(wrk -t1 "-c$CONNS" "-d${secs}s" --latency --timeout 2s)
  [[ $wl == json ]] && cmd+=(-s "$WORK/echo.lua")
  cmd+=("http://127.0.0.1:$port$path")
  [[ $(class_of "$name") == pin ]] && cmd=(taskset -c "$WRK_CPU" "${cmd[@]}")
  local t0 t1 TIMEFORMAT='%3U %3S'
  t0=$(date +%s.%N)
  { time timeout $((secs + 10)) "${cmd[@]}" > "$outf" 2>&1 ; } 2> "$WORK/time" || true
  t1=$(date +%s.%N)
  awk -v t0="$t0" -v t1="$t1" '{ printf "%.3f %.3f\n", t1 - t0, $1 + $2 }' "$WORK/time"
}

parse_wrk() { # -> "rps p50_ms p99_ms requests errors"
  awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /m$/)  { sub(/m$/, "", v);  return v * 60000 }
      if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
      return -1 }
    /^Requests\/sec:/ { rps = $2 }
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    / requests in / { reqs = $1 }
    /Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
    /Non-2xx or 3xx responses:/ { err += $NF }
    END { if (rps == "") { print "NA NA NA NA NA"; exit }
          printf "%.0f %.3f %.3f %d %d\n", rps, p50, p99, reqs, err + 0 }' "$1"
}

standalone() {
  local data=$1
  install_standalone
  local c
  for c in nginx redis-server redis-cli wrk curl taskset setsid ss; do
    command -v "$c" >/dev/null || { echo "missing command: $c" >&2; exit 2; }
  done
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  WORK=$(mktemp -d -t crescent-run.XXXXXX); chmod 755 "$WORK" # nginx workers run as nobody
  printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [[%s]]\n' "$JSON_BODY" > "$WORK/echo.lua"
  local groups=("1w:floor nginx-lua-1w crescent-1w" "2w:nginx-lua-2w crescent-2w")
  if [[ -n $FLOOR_C && -f $FLOOR_C ]] && ${CC:-cc} -O2 -o "$WORK/floor-bin" "$FLOOR_C"; then :
  else
    groups[0]="1w:nginx-lua-1w crescent-1w"
    echo "- the floor was not measured: floor.c not found at $FLOOR_C (set FLOOR_C)" >> "$RESULTS_DIR/notes.txt"
    log "floor.c not found at $FLOOR_C: no floor"
  fi
  spawn "" "$WORK/redis.log" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$WORK" --daemonize no --databases 1
  local redis=$SPAWNED i
  for i in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$REDIS_PORT" ping >/dev/null || { echo "redis did not start" >&2; exit 2; }
  echo "wrk -t1 -c$CONNS -d${DURATION}s --latency --timeout 2s, ${WARMUP}s warm-up, $ROUNDS rounds, PIN=$PIN (standalone run.sh)" \
    > "$RESULTS_DIR/settings.txt"
  local g grp peers name wl port pid round
  for g in "${groups[@]}"; do
    grp=${g%%:*}; peers=${g#*:}
    mkdir -p "$RESULTS_DIR/$grp/raw"
    local TSV=$RESULTS_DIR/$grp/runs.tsv; : > "$RESULTS_DIR/$grp/skipped.txt"
    printf 'peer\tworkload\tround\tclass\trps\tp50_ms\tp99_ms\trequests\terrors\tserver_cpu_pct\tredis_cpu_pct\twrk_cpu_pct\tother_cpu_pct\tbefore_other_pct\tstart_utc\n' > "$TSV"
    for round in $(seq 1 "$ROUNDS"); do
      for name in $peers; do
        port=$(port_of "$name")
        if ! start_server "$name" "$data"; then echo "$name: did not start" >> "$RESULTS_DIR/$grp/skipped.txt"; continue; fi
        pid=$PEER_PID
        local wls="hello json kv"; [[ $name == floor ]] && wls=hello
        for wl in $wls; do
          local v; v=$(validate "$wl" "$port")
          if [[ $v != ok ]]; then echo "$name/$wl: validation: $v" >> "$RESULTS_DIR/$grp/skipped.txt"; log "skip $name/$wl: $v"; continue; fi
          if [[ $(class_of "$name") == pin ]]; then taskset -apc "$SERVER_CPU" "$redis" >/dev/null
          else taskset -apc "0-$((NCPU - 1))" "$redis" >/dev/null; fi
          (( WARMUP > 0 )) && run_wrk "$name" "$wl" "$port" "$WARMUP" "$RESULTS_DIR/$grp/raw/$name.$wl.r$round.warmup.txt" >/dev/null
          local raw=$RESULTS_DIR/$grp/raw/$name.$wl.r$round.txt s0 s1 r0 r1 y0 y1 w wall wcpu
          sleep 1
          s0=$(group_ticks "$pid"); r0=$(group_ticks "$redis"); y0=$(sys_busy_ticks)
          w=$(run_wrk "$name" "$wl" "$port" "$DURATION" "$raw")
          y1=$(sys_busy_ticks); s1=$(group_ticks "$pid"); r1=$(group_ticks "$redis")
          read -r wall wcpu <<< "$w"
          local rps p50 p99 reqs errs; read -r rps p50 p99 reqs errs <<< "$(parse_wrk "$raw")"
          local scpu rcpu wpct ocpu
          scpu=$(awk -v a="$s0" -v b="$s1" -v c="$CLK" -v w="$wall" 'BEGIN{printf "%.1f", (b-a)/c/w*100}')
          rcpu=$(awk -v a="$r0" -v b="$r1" -v c="$CLK" -v w="$wall" 'BEGIN{printf "%.1f", (b-a)/c/w*100}')
          wpct=$(awk -v u="$wcpu" -v w="$wall" 'BEGIN{printf "%.1f", u/w*100}')
          ocpu=$(awk -v a="$y0" -v b="$y1" -v c="$CLK" -v w="$wall" -v s="$scpu" -v r="$rcpu" -v k="$wpct" \
                 'BEGIN{printf "%.1f", (b-a)/c/w*100 - s - r - k}')
          printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$wl" "$round" "$(class_of "$name")" \
            "$rps" "$p50" "$p99" "$reqs" "$errs" "$scpu" "$rcpu" "$wpct" "$ocpu" "-" "$(date -u +%H:%M:%S)" >> "$TSV"
          log "r$round $name/$wl: $rps req/s p50 ${p50}ms p99 ${p99}ms errors $errs server ${scpu}% redis ${rcpu}%"
        done
        stop_group "$pid"
        cp "$WORK/$name/error.log" "$RESULTS_DIR/$grp/raw/$name.r$round.error.log" 2>/dev/null || true
        cp "$WORK/$name/stdout.log" "$RESULTS_DIR/$grp/raw/$name.r$round.stdout.log" 2>/dev/null || true
      done
    done
  done
  stop_group "$redis"
}

# ---------------------------------------------------------------- main
main() {
  build_crescent
  mkdir -p "$RESULTS_DIR"
  local data; data=$(mktemp -d -t crescent-bench-data.XXXXXX)
  {
    echo "date_utc: $(date -u '+%Y-%m-%d %H:%M:%S')"
    echo "host: $(uname -sr); cpus: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "crescent: $("$CRESCENT_BIN" version 2>&1 | head -n 1) ($CRESCENT_BIN); git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo ?)$(git -C "$REPO" diff --quiet 2>/dev/null || echo ' + local changes')"
    echo "DURATION=$DURATION ROUNDS=$ROUNDS CONNS=$CONNS WARMUP=$WARMUP"
  } > "$RESULTS_DIR/run.txt"
  if [[ -n $PEERS_SH && -f $PEERS_SH ]]; then
    with_peers_sh "$data"
    echo "harness: $PEERS_SH (raw output, versions and summaries in the 1w/ and 2w/ folders)" >> "$RESULTS_DIR/run.txt"
  else
    log "no peers.sh at $PEERS_SH: standalone measurement (nginx + lua from Debian, crescent, floor if found)"
    standalone "$data"
    echo "harness: run.sh standalone (peers.sh not found at $PEERS_SH)" >> "$RESULTS_DIR/run.txt"
  fi
  rm -rf "$data"
  table "$RESULTS_DIR" | tee "$RESULTS_DIR/table.md"
  echo
  cat "$RESULTS_DIR/run.txt"
  echo "results: $RESULTS_DIR"
}

main "$@"
