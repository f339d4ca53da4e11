#!/usr/bin/env bash
# cache.sh - a cached GET: crescent's response-cache hit side by side with nginx serving the
# same answer as a static file. Loopback only; every load run is bounded by wrk -d and `timeout`.
#
# Workload: GET /cached -> 200, a 1024-byte body (1 KB of 'a'). Peers, 1 worker each:
#   crescent      `serve --workers 1 --redis none --log-level warn`, cache/functions/cached.lua:
#                 cache = { ttl = 3600 }; after the first request every answer is a hit, served
#                 by the gateway without an invocation (checked: metrics.cache misses stay 1)
#   nginx-static  Debian's nginx, worker_processes 1, the same bytes as a file (root + the file
#                 "cached", open_file_cache on, access_log off)
#   nginx-return  the same nginx answering `return 200 "<the 1 KB>"` (no file system at all): a
#                 reference, not the target
# Both answer with keep-alive; the body of every peer is checked to be the same 1024 bytes.
#
# Placement: the server (all of its processes) on CPU 0, wrk on CPU 1 (nothing pinned on one CPU).
# Measured per run: wrk's req/s, p50, p99, requests and errors; the server's CPU (utime + stime
# from /proc/PID/stat of every process in its process group, over the run) divided by the
# requests wrk completed: "server µs/req" (and utime alone). "other CPU %" is what the rest of
# the machine used meanwhile. Before each run a warm-up (WARMUP s, not counted) and a bounded
# wait for a calm machine. Each round runs the peers one after the other; the table has the
# medians over rounds and the target: crescent's CPU per request <= 1.1x nginx-static's.
#
# Usage:  tests/bench/cache.sh        (as root the first time: installs Debian's nginx, wrk ...)
# Knobs:  DURATION (s per run, default 10), ROUNDS (default 3), CONNS (default 32), WARMUP (s,
#         default 2), PEERS (default "crescent nginx-static nginx-return"), CRESCENT_BIN
#         (default <repo>/build/crescent), BASE_PORT (default 18140: +1 crescent, +2 nginx),
#         CALM_WAIT (s, default 30), CALM_PCT (default 25), SKIP_INSTALL=1, BENCH_OUT (default
#         /tmp), RESULTS_DIR (default $BENCH_OUT/crescent-cache-<UTC stamp>), PERF=1 (after the
#         rounds one more crescent run, not counted, under `perf record -g` on the worker;
#         perf.txt has the top symbols), NGINX_SENDFILE (on, Debian's default, or off: a 1 KB
#         file is cheaper for nginx with a plain write). SUMMARY_ONLY=DIR prints the table of an
#         earlier run.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
WARMUP=${WARMUP:-2}
PEERS=${PEERS:-crescent nginx-static nginx-return}
CRESCENT_BIN=${CRESCENT_BIN:-$REPO/build/crescent}
BASE_PORT=${BASE_PORT:-18140}
CALM_WAIT=${CALM_WAIT:-30}
CALM_PCT=${CALM_PCT:-25}
SKIP_INSTALL=${SKIP_INSTALL:-0}
BENCH_OUT=${BENCH_OUT:-/tmp}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS_DIR=${RESULTS_DIR:-$BENCH_OUT/crescent-cache-$STAMP}
PERF=${PERF:-0}
NGINX_SENDFILE=${NGINX_SENDFILE:-on}
[[ $NGINX_SENDFILE == on || $NGINX_SENDFILE == off ]] || { echo "NGINX_SENDFILE must be on or off" >&2; exit 2; }
BODY_BYTES=1024

(( DURATION >= 1 && DURATION <= 60 )) || { echo "DURATION must be 1..60 s" >&2; exit 2; }
(( ROUNDS >= 1 && ROUNDS <= 10 )) || { echo "ROUNDS must be 1..10" >&2; exit 2; }

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- the table
table() {
  local tsv=$1/runs.tsv
  [[ -f $tsv ]] || { echo "no runs.tsv in $1" >&2; return 1; }
  awk -F'\t' '
    $1 == "peer" { next }
    function median(str,   v, n, i, j, t) { n = split(str, v, " ")
      if (n == 0) return -1
      for (i = 2; i <= n; i++) { t = v[i] + 0; for (j = i - 1; j >= 1 && v[j] + 0 > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
      return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }
    { k = $1; if ($6 + 0 <= 0) next
      if (!(k in n)) order[++np] = k
      n[k]++; err[k] += $7
      rps[k] = rps[k] " " $3; p50[k] = p50[k] " " $4; p99[k] = p99[k] " " $5
      srv[k] = srv[k] " " ($9 / $6 * 1e6); usr[k] = usr[k] " " ($10 / $6 * 1e6)
      oth[k] = oth[k] " " ($12 / $8 * 100)
      if ($12 / $8 * 100 > 10) busy = busy sprintf(" %s r%s (%.0f%%)", k, $2, $12 / $8 * 100) }
    END {
      label["crescent"] = "crescent (cache hit)"; label["nginx-static"] = "nginx static file"
      label["nginx-return"] = "nginx return 200"
      printf "| peer | rounds | req/s | p50 ms | p99 ms | errors | server µs/req | of it user | other CPU %% |\n"
      printf "|---|---|---|---|---|---|---|---|---|\n"
      for (i = 1; i <= np; i++) { k = order[i]
        R[k] = median(rps[k]); S[k] = median(srv[k])
        printf "| %s | %d | %.0f | %.3f | %.3f | %d | %.2f | %.2f | %.0f |\n", (k in label ? label[k] : k), n[k],
          R[k], median(p50[k]), median(p99[k]), err[k], S[k], median(usr[k]), median(oth[k]) }
      print ""
      for (i = 1; i <= 2; i++) { p = (i == 1 ? "nginx-static" : "nginx-return")
        if (!("crescent" in S) || !(p in S) || S[p] <= 0) continue
        printf "crescent / %s: server CPU/req %.2fx, req/s %.2fx\n", label[p], S["crescent"] / S[p], R["crescent"] / R[p] }
      if (("crescent" in S) && ("nginx-static" in S) && S["nginx-static"] > 0)
        printf "Target: crescent CPU/req <= 1.1x nginx static: %.2fx, %s\n", S["crescent"] / S["nginx-static"],
          (S["crescent"] / S["nginx-static"] <= 1.1 ? "met" : "NOT met")
      if (busy != "") { print ""; print "Rounds that shared the machine (other CPU > 10% of one CPU):" busy }
    }' "$tsv"
  [[ -s $1/skipped.txt ]] && { echo; echo "Skipped:"; sed 's/^/  - /' "$1/skipped.txt"; }
  [[ -f $1/run.txt ]] && { echo; cat "$1/run.txt"; }
  return 0
}

if [[ -n ${SUMMARY_ONLY:-} ]]; then table "$SUMMARY_ONLY"; exit 0; fi

# ---------------------------------------------------------------- set-up
install_debian() {
  local pairs=(nginx:nginx wrk:wrk curl:curl taskset:util-linux setsid:util-linux ss:iproute2) missing=() x
  for x in "${pairs[@]}"; do command -v "${x%%:*}" > /dev/null || missing+=("${x#*:}"); done
  ((${#missing[@]})) || return 0
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [[ $SKIP_INSTALL == 1 ]]; then echo "missing packages: ${missing[*]} (SKIP_INSTALL=1)" >&2; exit 2; fi
  [[ $(id -u) == 0 ]] || { echo "missing packages: ${missing[*]}; run as root to install them" >&2; exit 2; }
  local made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then # keep Debian from starting nginx as a system service
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1
  fi
  log "apt-get install ${missing[*]}"
  apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  ((made_policy)) && rm -f /usr/sbin/policy-rc.d
  return 0
}

declare -a STARTED=()
WORK=""
cleanup() {
  local pg
  for pg in "${STARTED[@]+"${STARTED[@]}"}"; do stop_group "$pg"; done
  if [[ -n $WORK && -d $WORK ]]; then rm -rf "$WORK"; fi
}

stop_group() { # a process group we started: TERM, then KILL after 5 s
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
spawn() { # cpus logfile cmd...: in its own session (process group), so it is counted and stopped whole
  local cpus=$1 logf=$2; shift 2
  if [[ -n $cpus ]]; then taskset -c "$cpus" setsid "$@" > "$logf" 2>&1 < /dev/null &
  else setsid "$@" > "$logf" 2>&1 < /dev/null & fi
  SPAWNED=$!
  STARTED+=("$SPAWNED")
}

CLK=$(getconf CLK_TCK)
group_ticks() { # pgid -> "utime+stime utime" of every process in the group (threads included)
  local pg=$1 f line rest total=0 user=0; local -a a
  for f in /proc/[0-9]*/stat; do
    { read -r line < "$f"; } 2>/dev/null || continue
    rest=${line##*) }; read -r -a a <<< "$rest"
    [[ ${a[2]} == "$pg" ]] && { total=$(( total + a[11] + a[12] )); user=$(( user + a[11] )); }
  done
  echo "$total $user"
}
sys_busy_ticks() { awk '/^cpu /{ print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

wait_calm() { # at most CALM_WAIT s for the machine's load to fall below CALM_PCT % of one CPU
  (( CALM_WAIT > 0 )) || return 0
  local t0=$SECONDS a b pct
  while :; do
    a=$(sys_busy_ticks); sleep 1; b=$(sys_busy_ticks)
    pct=$(( (b - a) * 100 / CLK ))
    (( pct < CALM_PCT )) && return 0
    if (( SECONDS - t0 >= CALM_WAIT )); then log "the machine is busy (${pct}% of a CPU) after ${CALM_WAIT} s: measuring anyway"; return 0; fi
  done
}

NCPU=$(nproc)
SERVER_CPU=""; WRK_CPU=""
if (( NCPU >= 2 )); then SERVER_CPU=0; WRK_CPU=1; fi

port_of() { case $1 in crescent) echo $((BASE_PORT + 1)) ;; nginx-*) echo $((BASE_PORT + 2)) ;; esac; }

nginx_conf() { # dir port mode(static|return)
  local dir=$1 port=$2 mode=$3 loc
  mkdir -p "$dir/www"
  cp "$WORK/body" "$dir/www/cached"
  if [[ $mode == static ]]; then loc="root $dir/www;"
  else loc="return 200 \"$(cat "$WORK/body")\";"; fi
  cat > "$dir/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    sendfile $NGINX_SENDFILE;
    tcp_nopush on;
    open_file_cache max=16 inactive=60s;
    open_file_cache_valid 60s;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    default_type text/plain;
    server {
        listen 127.0.0.1:$port;
        location = /cached { $loc }
    }
}
EOF
}

PEER_PID=""
start_peer() { # name -> PEER_PID once it answers /cached; 1 when it did not start
  local name=$1 port dir=$WORK/$1 i
  port=$(port_of "$name"); rm -rf "$dir"; mkdir -p "$dir"
  if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then log "port $port busy: cannot start $name"; return 1; fi
  case $name in
    crescent)
      mkdir -p "$dir/fn"
      cp "$HERE/cache/functions/cached.lua" "$dir/fn/cached.lua"
      spawn "$SERVER_CPU" "$dir/stdout.log" "$CRESCENT_BIN" serve --functions "$dir/fn" \
        --listen "127.0.0.1:$port" --workers 1 --redis none --log-level warn --no-watch --data "$dir/data" ;;
    nginx-static|nginx-return)
      nginx_conf "$dir" "$port" "${name#nginx-}"
      nginx -t -q -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" >&2 || return 1
      spawn "$SERVER_CPU" "$dir/stdout.log" nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' ;;
  esac
  PEER_PID=$SPAWNED
  for i in $(seq 1 150); do
    kill -0 "$PEER_PID" 2>/dev/null || break
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/cached" 2>/dev/null) != 000 ]] && return 0
    sleep 0.1
  done
  log "$name did not answer on 127.0.0.1:$port/cached"; tail -n 20 "$dir/stdout.log" "$dir/error.log" >&2 2>/dev/null || true
  stop_group "$PEER_PID"; return 1
}

cache_misses() { # crescent's metrics.cache misses of "cached"
  curl -s --max-time 2 "http://127.0.0.1:$(port_of crescent)/_/api/functions" |
    grep -o '"cache":{"hits":[0-9]*,"misses":[0-9]*' | head -n 1 | sed 's/.*"misses":\([0-9]*\)$/\1/'
}

validate() { # name -> "ok" or a reason: the same 1 KB body, 200; crescent: X-Cache hit
  local port out i
  port=$(port_of "$1")
  for i in 1 2 3; do
    curl -s --max-time 2 -D "$WORK/h" -o "$WORK/b" "http://127.0.0.1:$port/cached" || { echo "no answer"; return; }
    cmp -s "$WORK/b" "$WORK/body" || { echo "the body is not the 1 KB file ($(wc -c < "$WORK/b") bytes)"; return; }
  done
  if [[ $1 == crescent ]]; then
    grep -qi '^x-cache: hit' "$WORK/h" || { echo "no X-Cache: hit in $(tr -d '\r' < "$WORK/h" | tr '\n' ' ')"; return; }
  fi
  echo ok
}

run_wrk() { # port secs outfile -> "wall_s wrk_cpu_s"
  local port=$1 secs=$2 outf=$3
  local -a cmd=(wrk -t1 "-c$CONNS" "-d${secs}s" --latency --timeout 2s "http://127.0.0.1:$port/cached")
  [[ -n $WRK_CPU ]] && cmd=(taskset -c "$WRK_CPU" "${cmd[@]}")
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
    END { if (rps == "") { print "0 0 0 0 0"; exit }
          printf "%.0f %.3f %.3f %d %d\n", rps, p50, p99, reqs, err + 0 }' "$1"
}

worker_pid() { # crescent master pid -> its cr-worker child
  local p
  for p in $(pgrep -P "$1" || true); do
    [[ $(cat "/proc/$p/comm" 2>/dev/null) == cr-worker* ]] && { echo "$p"; return; }
  done
}

measure() { # name round
  local name=$1 round=$2 port pid v m0 m1
  port=$(port_of "$name")
  wait_calm
  if ! start_peer "$name"; then echo "r$round $name: did not start" >> "$RESULTS_DIR/skipped.txt"; return; fi
  pid=$PEER_PID
  v=$(validate "$name")
  if [[ $v != ok ]]; then
    echo "r$round $name: $v" >> "$RESULTS_DIR/skipped.txt"; log "skip r$round $name: $v"
    stop_group "$pid"; return
  fi
  (( WARMUP > 0 )) && run_wrk "$port" "$WARMUP" "$RESULTS_DIR/raw/$name.r$round.warmup.txt" > /dev/null
  sleep 1
  local raw=$RESULTS_DIR/raw/$name.r$round.txt s0 s1 su0 su1 y0 y1 w wall wcpu
  [[ $name == crescent ]] && m0=$(cache_misses)
  read -r s0 su0 <<< "$(group_ticks "$pid")"; y0=$(sys_busy_ticks)
  w=$(run_wrk "$port" "$DURATION" "$raw")
  y1=$(sys_busy_ticks); read -r s1 su1 <<< "$(group_ticks "$pid")"
  read -r wall wcpu <<< "$w"
  local rps p50 p99 reqs errs scpu sucpu ocpu
  read -r rps p50 p99 reqs errs <<< "$(parse_wrk "$raw")"
  if [[ $name == crescent ]]; then
    m1=$(cache_misses)
    if [[ -z $m0 || $m0 != "$m1" ]]; then
      echo "r$round crescent: cache misses during the run ($m0 -> $m1)" >> "$RESULTS_DIR/skipped.txt"
      log "r$round crescent: cache misses during the run ($m0 -> $m1): not counted"; stop_group "$pid"; return
    fi
  fi
  scpu=$(awk -v a="$s0" -v b="$s1" -v c="$CLK" 'BEGIN{printf "%.2f", (b-a)/c}')
  sucpu=$(awk -v a="$su0" -v b="$su1" -v c="$CLK" 'BEGIN{printf "%.2f", (b-a)/c}')
  ocpu=$(awk -v a="$y0" -v b="$y1" -v c="$CLK" -v s="$scpu" -v k="$wcpu" \
         'BEGIN{o = (b-a)/c - s - k; printf "%.2f", (o < 0 ? 0 : o)}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$round" "$rps" "$p50" "$p99" \
    "$reqs" "$errs" "$wall" "$scpu" "$sucpu" "$wcpu" "$ocpu" "$(date -u +%H:%M:%S)" >> "$RESULTS_DIR/runs.tsv"
  log "r$round $name: $rps req/s p50 ${p50}ms p99 ${p99}ms errors $errs; CPU s: server $scpu (user $sucpu) wrk $wcpu other $ocpu"
  stop_group "$pid"
}

profile_crescent() { # one more crescent run under perf, not counted: the worker's top symbols
  command -v perf > /dev/null || { log "PERF=1: no perf on PATH"; return; }
  local port pid wpid
  port=$(port_of crescent)
  start_peer crescent || return
  pid=$PEER_PID; wpid=$(worker_pid "$pid")
  [[ -n $wpid ]] || { log "PERF=1: no crescent worker found"; stop_group "$pid"; return; }
  validate crescent > /dev/null
  run_wrk "$port" "$WARMUP" /dev/null > /dev/null
  log "perf record -g -p $wpid for ${DURATION}s"
  timeout $((DURATION + 20)) perf record -q -g -o "$RESULTS_DIR/perf.data" -p "$wpid" -- sleep "$DURATION" \
    > "$RESULTS_DIR/perf.log" 2>&1 &
  local perf_pid=$!
  run_wrk "$port" "$DURATION" "$RESULTS_DIR/raw/crescent.perf.txt" > /dev/null
  wait "$perf_pid" || true
  stop_group "$pid"
  timeout 120 perf report -i "$RESULTS_DIR/perf.data" --no-children --sort dso,symbol --stdio -g none 2> /dev/null \
    | grep -v '^$' | grep -E '^ +[0-9]' | head -n 60 > "$RESULTS_DIR/perf.txt" || true
  log "perf: $RESULTS_DIR/perf.txt"
}

main() {
  install_debian
  local c
  for c in nginx wrk curl taskset setsid ss pgrep timeout cmp; do
    command -v "$c" > /dev/null || { echo "missing command: $c" >&2; exit 2; }
  done
  [[ " $PEERS " != *" crescent "* || -x $CRESCENT_BIN ]] ||
    { echo "no crescent binary at $CRESCENT_BIN (build it, or set CRESCENT_BIN)" >&2; exit 2; }
  mkdir -p "$RESULTS_DIR/raw"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  WORK=$(mktemp -d -t crescent-cache.XXXXXX); chmod 755 "$WORK" # nginx's worker runs as nobody
  head -c "$BODY_BYTES" /dev/zero | tr '\0' 'a' > "$WORK/body"
  : > "$RESULTS_DIR/skipped.txt"
  {
    echo "date_utc: $(date -u '+%Y-%m-%d %H:%M:%S')"
    echo "host: $(uname -sr); cpus: $NCPU x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    if [[ " $PEERS " == *" crescent "* ]]; then
      echo "crescent: $("$CRESCENT_BIN" version 2>&1 | head -n 1) ($CRESCENT_BIN); git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo ?)$(git -C "$REPO" diff --quiet 2>/dev/null || echo ' + local changes')"
    fi
    echo "nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //'), sendfile $NGINX_SENDFILE, open_file_cache on"
    echo "wrk -t1 -c$CONNS -d${DURATION}s --latency; warm-up ${WARMUP}s; ROUNDS=$ROUNDS; body $BODY_BYTES bytes; CPUs: server ${SERVER_CPU:-any}, wrk ${WRK_CPU:-any}"
  } > "$RESULTS_DIR/run.txt"
  printf 'peer\tround\trps\tp50_ms\tp99_ms\trequests\terrors\twall_s\tserver_cpu_s\tserver_user_cpu_s\twrk_cpu_s\tother_cpu_s\tend_utc\n' \
    > "$RESULTS_DIR/runs.tsv"
  local r name
  for r in $(seq 1 "$ROUNDS"); do
    for name in $PEERS; do measure "$name" "$r"; done
  done
  [[ $PERF == 1 && " $PEERS " == *" crescent "* ]] && profile_crescent
  echo
  table "$RESULTS_DIR" | tee "$RESULTS_DIR/table.md"
  echo "results: $RESULTS_DIR"
}

main "$@"
