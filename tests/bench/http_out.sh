#!/usr/bin/env bash
# http_out.sh - outbound HTTP from a function: crescent.http side by side with nginx +
# lua-nginx-module and Node.js. Loopback only; every load run is bounded by wrk -d and `timeout`.
#
# Workload: GET /proxy -> the server calls the upstream once (GET /x on a keep-alive
# connection) and answers its body, 200 text/plain "hello". Peers, 1 worker each:
#   crescent   1 worker (`serve --workers 1 --redis none`), http_out/functions/proxy.lua:
#              `require "crescent.http"`, `http.get(url)`, egress = { "127.0.0.1:PORT" }
#   nginx-lua  nginx + libnginx-mod-http-lua from Debian, worker_processes 1: content_by_lua
#              `ngx.location.capture` of an internal location that does `proxy_pass` to an
#              `upstream { keepalive 32; }` with proxy_http_version 1.1 and Connection ""
#              (Debian ships no lua-resty-http, so the subrequest is OpenResty's usual way)
#   node       one Node.js process, http_out/node.js: `http.createServer` doing
#              `await fetch(upstream)` (undici, keep-alive by default; http.get with a keep-alive
#              Agent where there is no fetch or with NODE_CLIENT=agent: run.txt says which)
# Upstream: http_upstream.c (compiled here with cc): one epoll thread answering "hello" with
# keep-alive; it also counts the requests and connections it got, so each run checks that the
# peer made one upstream call per request and shows whether it reused its connections.
#
# Placement: the server (all of its processes and threads) on CPU 0, wrk on CPU 1, the upstream
# on CPU 2, or on CPU 1 with wrk on a 2-CPU machine; nothing pinned on one CPU.
# Measured per run: wrk's req/s, p50, p99, requests and errors; the server's CPU, utime + stime
# from /proc/PID/stat of every process in its process group (crescent's master and worker,
# nginx's master and worker, node) over the run, divided by the requests wrk completed: "server
# µs/req" (and its user-space part, utime alone). The upstream's CPU is measured the same way
# and reported apart, never added in.
# "other CPU %" is what the rest of the machine used meanwhile (a large one: shared machine).
# Before each run: a warm-up (WARMUP s, not counted) and a bounded wait for a calm machine.
# Each round runs the peers one after the other; the table has the medians over rounds.
#
# Usage:  tests/bench/http_out.sh        (as root the first time: installs Debian's nginx,
#                                          libnginx-mod-http-lua, wrk ... if missing)
# Knobs:  DURATION (s per run, default 10), ROUNDS (default 3), CONNS (wrk connections, default
#         32, as many as nginx's upstream keepalive), WARMUP (s, default 2), PEERS (default
#         "crescent nginx-lua node"), CRESCENT_BIN (default <repo>/build/crescent), NODE_BIN
#         (default: node on PATH), BASE_PORT (default 18110: upstream, +1 crescent, +2 nginx,
#         +3 node), CALM_WAIT (s, default 30) and CALM_PCT (default 25): before each run, wait at
#         most CALM_WAIT for the machine's load to fall below CALM_PCT % of one CPU,
#         SKIP_INSTALL=1, BENCH_OUT (default /tmp), RESULTS_DIR (default
#         $BENCH_OUT/crescent-http-out-<UTC stamp>), PERF=1 (after the rounds, one more crescent
#         run, not counted, under `perf record -g` on the worker; perf.txt has the top symbols).
#         NODE_CLIENT=agent (Node's http.get with a keep-alive Agent instead of fetch).
#         SUMMARY_ONLY=DIR prints the table of an earlier run again.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
WARMUP=${WARMUP:-2}
PEERS=${PEERS:-crescent nginx-lua node}
CRESCENT_BIN=${CRESCENT_BIN:-$REPO/build/crescent}
NODE_BIN=${NODE_BIN:-$(command -v node || true)}
BASE_PORT=${BASE_PORT:-18110}
CALM_WAIT=${CALM_WAIT:-30}
CALM_PCT=${CALM_PCT:-25}
SKIP_INSTALL=${SKIP_INSTALL:-0}
BENCH_OUT=${BENCH_OUT:-/tmp}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS_DIR=${RESULTS_DIR:-$BENCH_OUT/crescent-http-out-$STAMP}
PERF=${PERF:-0}
KEEPALIVE=32 # nginx's upstream { keepalive N; }

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- the table
# table DIR: DIR/runs.tsv -> medians per peer, the ratios and the targets on stdout.
table() {
  local tsv=$1/runs.tsv
  [[ -f $tsv ]] || { echo "no runs.tsv in $1" >&2; return 1; }
  awk -F'\t' '
    $1 == "peer" { next }
    function median(str,   v, n, i, j, t) { n = split(str, v, " ")
      if (n == 0) return -1
      for (i = 2; i <= n; i++) { t = v[i] + 0; for (j = i - 1; j >= 1 && v[j] + 0 > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
      return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }
    function f(x, fmt) { return x < 0 ? "-" : sprintf(fmt, x) }
    function ratio(a, b) { return (a > 0 && b > 0) ? sprintf("%.2f", a / b) : "-" }
    { k = $1; if ($6 + 0 <= 0) next
      if (!(k in n)) order[++np] = k
      n[k]++; err[k] += $7
      rps[k] = rps[k] " " $3; p50[k] = p50[k] " " $4; p99[k] = p99[k] " " $5
      srv[k] = srv[k] " " ($9 / $6 * 1e6); ups[k] = ups[k] " " ($10 / $6 * 1e6)
      if ($16 != "") usr[k] = usr[k] " " ($16 / $6 * 1e6)
      calls[k] = calls[k] " " ($13 / $6); conns[k] = conns[k] " " $14
      oth[k] = oth[k] " " ($12 / $8 * 100)
      if ($12 / $8 * 100 > 10) busy = busy sprintf(" %s r%s (%.0f%%)", k, $2, $12 / $8 * 100) }
    END {
      label["crescent"] = "crescent (crescent.http)"; label["nginx-lua"] = "nginx + lua (capture + proxy_pass)"
      label["node"] = "Node.js"
      printf "| peer | rounds | req/s | p50 ms | p99 ms | errors | server µs/req | of it user | upstream µs/req | upstream calls/req | new upstream conns/run | other CPU %% |\n"
      printf "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
      for (i = 1; i <= np; i++) { k = order[i]
        R[k] = median(rps[k]); P50[k] = median(p50[k]); P99[k] = median(p99[k]); S[k] = median(srv[k])
        U[k] = median(ups[k]); C[k] = median(calls[k]); N[k] = median(conns[k]); O[k] = median(oth[k]); X[k] = median(usr[k])
        printf "| %s | %d | %.0f | %.3f | %.3f | %d | %.1f | %s | %.1f | %.3f | %.0f | %.0f |\n", (k in label ? label[k] : k), n[k],
          R[k], P50[k], P99[k], err[k], S[k], f(X[k], "%.1f"), U[k], C[k], N[k], O[k] }
      print ""
      printf "| crescent / peer | server CPU/req | req/s | p99 |\n|---|---|---|---|\n"
      split("nginx-lua node", peers, " ")
      for (i = 1; i <= 2; i++) { p = peers[i]; if (!("crescent" in R) || !(p in R)) continue
        printf "| %s | %s | %s | %s |\n", label[p], ratio(S["crescent"], S[p]), ratio(R["crescent"], R[p]), ratio(P99["crescent"], P99[p]) }
      print ""
      print "Targets (server CPU per request), medians of this run:"
      tg("nginx-lua", 1.0); tg("node", 0.5)
      if (busy != "") { print ""; print "Rounds that shared the machine (other CPU > 10% of one CPU; a pinned server that shares its CPU pays more per request):" busy }
    }
    function tg(p, lim) {
      if (!("crescent" in S) || !(p in S) || S[p] <= 0) { printf "  - crescent vs %s: not measured\n", label[p]; return }
      printf "  - crescent vs %s: %.2fx (target <= %.1fx) %s\n", label[p], S["crescent"] / S[p], lim, (S["crescent"] / S[p] <= lim ? "met" : "NOT met") }
  ' "$tsv"
  [[ -s $1/skipped.txt ]] && { echo; echo "Skipped:"; sed 's/^/  - /' "$1/skipped.txt"; }
  [[ -f $1/run.txt ]] && { echo; cat "$1/run.txt"; }
  return 0
}

if [[ -n ${SUMMARY_ONLY:-} ]]; then table "$SUMMARY_ONLY"; exit 0; fi

(( DURATION >= 1 && DURATION <= 60 )) || { echo "DURATION must be 1..60 s" >&2; exit 2; }
(( ROUNDS >= 1 && ROUNDS <= 10 )) || { echo "ROUNDS must be 1..10" >&2; exit 2; }
(( CONNS >= 1 && CONNS <= 1024 )) || { echo "CONNS must be 1..1024" >&2; exit 2; }
(( WARMUP >= 0 && WARMUP <= 30 )) || { echo "WARMUP must be 0..30 s" >&2; exit 2; }
(( CALM_WAIT >= 0 && CALM_WAIT <= 300 )) || { echo "CALM_WAIT must be 0..300 s" >&2; exit 2; }
for p in $PEERS; do
  case $p in crescent|nginx-lua|node) ;; *) echo "unknown peer '$p' (crescent, nginx-lua, node)" >&2; exit 2 ;; esac
done

# ---------------------------------------------------------------- set-up
# Debian packages for what is missing; node may come from elsewhere (NODE_BIN).
install_debian() {
  local pairs=(nginx:nginx /usr/lib/nginx/modules/ndk_http_module.so:libnginx-mod-http-ndk
               /usr/lib/nginx/modules/ngx_http_lua_module.so:libnginx-mod-http-lua wrk:wrk curl:curl
               taskset:util-linux setsid:util-linux ss:iproute2 cc:gcc) missing=() x
  [[ " $PEERS " == *" node "* && -z $NODE_BIN ]] && pairs+=(node:nodejs)
  for x in "${pairs[@]}"; do
    if [[ ${x%%:*} == /* ]]; then [[ -e ${x%%:*} ]] || missing+=("${x#*:}")
    else command -v "${x%%:*}" > /dev/null || missing+=("${x#*:}"); fi
  done
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
  [[ -n $NODE_BIN ]] || NODE_BIN=$(command -v node || true)
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

# Waits, at most CALM_WAIT s, for the machine's load to fall below CALM_PCT % of one CPU.
wait_calm() {
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
SERVER_CPU=""; WRK_CPU=""; UPSTREAM_CPU=""
if (( NCPU >= 3 )); then SERVER_CPU=0; WRK_CPU=1; UPSTREAM_CPU=2
elif (( NCPU == 2 )); then SERVER_CPU=0; WRK_CPU=1; UPSTREAM_CPU=1; fi

UP_PORT=$BASE_PORT
port_of() { case $1 in crescent) echo $((BASE_PORT + 1)) ;; nginx-lua) echo $((BASE_PORT + 2)) ;; node) echo $((BASE_PORT + 3)) ;; esac; }

upstream_stats() { curl -s --max-time 2 "http://127.0.0.1:$UP_PORT/_stats"; } # -> "requests connections"

nginx_conf() { # dir port
  local dir=$1 port=$2
  mkdir -p "$dir"
  cat > "$dir/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    default_type text/plain;
    upstream bench_upstream {
        server 127.0.0.1:$UP_PORT;
        keepalive $KEEPALIVE;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }
    server {
        listen 127.0.0.1:$port;
        location = /proxy {
            content_by_lua_block {
                local res = ngx.location.capture("/_upstream")
                if res.status ~= 200 then return ngx.exit(502) end
                ngx.header["Content-Length"] = #res.body
                ngx.print(res.body)
            }
        }
        location = /_upstream {
            internal;
            proxy_pass http://bench_upstream/x;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}

PEER_PID=""
start_peer() { # name -> PEER_PID once it answers HTTP on /proxy (validate checks what); 1 when it did not start
  local name=$1 port dir=$WORK/$1 i
  port=$(port_of "$name"); rm -rf "$dir"; mkdir -p "$dir"
  if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then log "port $port busy: cannot start $name"; return 1; fi
  case $name in
    crescent)
      mkdir -p "$dir/fn"
      sed "s/UPSTREAM_PORT/$UP_PORT/g" "$HERE/http_out/functions/proxy.lua" > "$dir/fn/proxy.lua"
      spawn "$SERVER_CPU" "$dir/stdout.log" "$CRESCENT_BIN" serve --functions "$dir/fn" \
        --listen "127.0.0.1:$port" --workers 1 --redis none --log-level warn --no-watch --data "$dir/data" ;;
    nginx-lua)
      nginx_conf "$dir" "$port"
      nginx -t -q -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" >&2 || return 1
      spawn "$SERVER_CPU" "$dir/stdout.log" nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' ;;
    node)
      spawn "$SERVER_CPU" "$dir/stdout.log" "$NODE_BIN" "$HERE/http_out/node.js" "$port" "http://127.0.0.1:$UP_PORT/x" ;;
  esac
  PEER_PID=$SPAWNED
  for i in $(seq 1 150); do
    kill -0 "$PEER_PID" 2>/dev/null || break
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/proxy" 2>/dev/null) != 000 ]] && return 0
    sleep 0.1
  done
  log "$name did not answer on 127.0.0.1:$port/proxy"; tail -n 20 "$dir/stdout.log" "$dir/error.log" >&2 2>/dev/null || true
  stop_group "$PEER_PID"; return 1
}

validate() { # name -> "ok" or a reason: 5 requests answer "hello" and make exactly 5 upstream calls
  local port a b i out
  port=$(port_of "$1")
  read -r a _ <<< "$(upstream_stats)"
  for i in 1 2 3 4 5; do
    out=$(curl -s --max-time 2 "http://127.0.0.1:$port/proxy") || true
    [[ $out == hello ]] || { echo "GET /proxy answered '${out:0:100}'"; return; }
  done
  read -r b _ <<< "$(upstream_stats)"
  [[ -n $a && -n $b ]] && (( b - a == 5 )) && echo ok || echo "5 requests made '$a' -> '$b' upstream calls"
}

run_wrk() { # port secs outfile -> "wall_s wrk_cpu_s"
  local port=$1 secs=$2 outf=$3
  local -a cmd=(wrk -t1 "-c$CONNS" "-d${secs}s" --latency --timeout 2s "http://127.0.0.1:$port/proxy")
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
  local name=$1 round=$2 port pid v
  port=$(port_of "$name")
  wait_calm
  if ! start_peer "$name"; then echo "r$round $name: did not start" >> "$RESULTS_DIR/skipped.txt"; return; fi
  pid=$PEER_PID
  v=$(validate "$name")
  if [[ $v != ok ]]; then
    echo "r$round $name: $v" >> "$RESULTS_DIR/skipped.txt"; log "skip r$round $name: $v"
    stop_group "$pid"; save_logs "$name" "$round"; return
  fi
  (( WARMUP > 0 )) && run_wrk "$port" "$WARMUP" "$RESULTS_DIR/raw/$name.r$round.warmup.txt" > /dev/null
  sleep 1
  local raw=$RESULTS_DIR/raw/$name.r$round.txt s0 s1 su0 su1 u0 u1 y0 y1 q0 q1 c0 c1 w wall wcpu
  read -r q0 c0 <<< "$(upstream_stats)"
  read -r s0 su0 <<< "$(group_ticks "$pid")"; read -r u0 _ <<< "$(group_ticks "$UP_PID")"; y0=$(sys_busy_ticks)
  w=$(run_wrk "$port" "$DURATION" "$raw")
  y1=$(sys_busy_ticks); read -r s1 su1 <<< "$(group_ticks "$pid")"; read -r u1 _ <<< "$(group_ticks "$UP_PID")"
  read -r q1 c1 <<< "$(upstream_stats)" # its own connection is the "- 1" below
  read -r wall wcpu <<< "$w"
  local rps p50 p99 reqs errs scpu sucpu ucpu ocpu
  read -r rps p50 p99 reqs errs <<< "$(parse_wrk "$raw")"
  scpu=$(awk -v a="$s0" -v b="$s1" -v c="$CLK" 'BEGIN{printf "%.2f", (b-a)/c}')
  sucpu=$(awk -v a="$su0" -v b="$su1" -v c="$CLK" 'BEGIN{printf "%.2f", (b-a)/c}')
  ucpu=$(awk -v a="$u0" -v b="$u1" -v c="$CLK" 'BEGIN{printf "%.2f", (b-a)/c}')
  ocpu=$(awk -v a="$y0" -v b="$y1" -v c="$CLK" -v s="$scpu" -v u="$ucpu" -v k="$wcpu" \
         'BEGIN{o = (b-a)/c - s - u - k; printf "%.2f", (o < 0 ? 0 : o)}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$round" "$rps" "$p50" "$p99" \
    "$reqs" "$errs" "$wall" "$scpu" "$ucpu" "$wcpu" "$ocpu" "$((q1 - q0))" "$((c1 - c0 - 1))" "$(date -u +%H:%M:%S)" "$sucpu" \
    >> "$RESULTS_DIR/runs.tsv"
  log "r$round $name: $rps req/s p50 ${p50}ms p99 ${p99}ms errors $errs; CPU s: server $scpu (user $sucpu) upstream $ucpu wrk $wcpu other $ocpu; upstream calls $((q1 - q0)) for $reqs requests, $((c1 - c0 - 1)) new connections"
  stop_group "$pid"; save_logs "$name" "$round"
}

save_logs() { # name round: the peer's own logs next to the raw wrk output
  cp "$WORK/$1/stdout.log" "$RESULTS_DIR/raw/$1.r$2.stdout.log" 2>/dev/null || true
  cp "$WORK/$1/error.log" "$RESULTS_DIR/raw/$1.r$2.error.log" 2>/dev/null || true
}

# One more crescent run under perf, not counted: the top symbols of the worker to perf.txt.
profile_crescent() {
  command -v perf > /dev/null || { log "PERF=1: no perf on PATH"; return; }
  local port pid wpid
  port=$(port_of crescent)
  start_peer crescent || return
  pid=$PEER_PID; wpid=$(worker_pid "$pid")
  [[ -n $wpid ]] || { log "PERF=1: no crescent worker found"; stop_group "$pid"; return; }
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
  log "perf: $RESULTS_DIR/perf.txt (perf report -i $RESULTS_DIR/perf.data for more)"
}

main() {
  install_debian
  local c
  for c in nginx wrk curl taskset setsid ss pgrep timeout cc; do
    command -v "$c" > /dev/null || { echo "missing command: $c" >&2; exit 2; }
  done
  if [[ " $PEERS " == *" crescent "* ]]; then
    [[ -x $CRESCENT_BIN ]] || { echo "no crescent binary at $CRESCENT_BIN (build it, or set CRESCENT_BIN)" >&2; exit 2; }
  fi
  if [[ " $PEERS " == *" node "* ]]; then
    [[ -n $NODE_BIN && -x $NODE_BIN ]] || { echo "no node (set NODE_BIN)" >&2; exit 2; }
  fi
  mkdir -p "$RESULTS_DIR/raw"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  WORK=$(mktemp -d -t crescent-http-out.XXXXXX); chmod 755 "$WORK" # nginx's worker runs as nobody
  ${CC:-cc} -O2 -std=c11 -Wall -Wextra -o "$WORK/http_upstream" "$HERE/http_upstream.c"
  if ss -Hltn "sport = :$UP_PORT" 2>/dev/null | grep -q .; then echo "port $UP_PORT is busy" >&2; exit 2; fi
  spawn "$UPSTREAM_CPU" "$WORK/upstream.log" "$WORK/http_upstream" "$UP_PORT" hello
  UP_PID=$SPAWNED
  local i
  for i in $(seq 1 50); do upstream_stats > /dev/null && break; sleep 0.1; done
  upstream_stats > /dev/null || { echo "the upstream did not start on 127.0.0.1:$UP_PORT" >&2; cat "$WORK/upstream.log" >&2; exit 2; }
  : > "$RESULTS_DIR/skipped.txt"
  {
    echo "date_utc: $(date -u '+%Y-%m-%d %H:%M:%S')"
    echo "host: $(uname -sr); cpus: $NCPU x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    if [[ " $PEERS " == *" crescent "* ]]; then
      echo "crescent: $("$CRESCENT_BIN" version 2>&1 | head -n 1) ($CRESCENT_BIN); git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo ?)$(git -C "$REPO" diff --quiet 2>/dev/null || echo ' + local changes')"
    fi
    echo "nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //'), lua module $(dpkg-query -W -f='${Version}' libnginx-mod-http-lua 2>/dev/null || echo ?), upstream keepalive $KEEPALIVE"
    if [[ " $PEERS " == *" node "* ]]; then
      echo "node: $("$NODE_BIN" -e "console.log(process.version + (typeof fetch === 'function' && process.env.NODE_CLIENT !== 'agent' ? ', fetch (undici)' : ', http.get + keep-alive Agent'))")"
    fi
    echo "wrk -t1 -c$CONNS -d${DURATION}s --latency; warm-up ${WARMUP}s; ROUNDS=$ROUNDS; CPUs: server ${SERVER_CPU:-any}, wrk ${WRK_CPU:-any}, upstream ${UPSTREAM_CPU:-any}"
  } > "$RESULTS_DIR/run.txt"
  printf 'peer\tround\trps\tp50_ms\tp99_ms\trequests\terrors\twall_s\tserver_cpu_s\tupstream_cpu_s\twrk_cpu_s\tother_cpu_s\tupstream_calls\tupstream_new_conns\tend_utc\tserver_user_cpu_s\n' \
    > "$RESULTS_DIR/runs.tsv"
  local r name
  for r in $(seq 1 "$ROUNDS"); do
    for name in $PEERS; do measure "$name" "$r"; done
  done
  [[ $PERF == 1 && " $PEERS " == *" crescent "* ]] && profile_crescent
  stop_group "$UP_PID"
  echo
  table "$RESULTS_DIR" | tee "$RESULTS_DIR/table.md"
  echo "results: $RESULTS_DIR"
}

main "$@"
