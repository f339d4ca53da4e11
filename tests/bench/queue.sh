#!/usr/bin/env bash
# queue.sh - queue throughput, crescent vs BullMQ (issue 13's benchmark), side by side in one
# run on one redis-server that the script starts itself (loopback, its own port, no persistence).
#
# Cases (every message the same 200-byte JSON object, tests/bench/queue/bench.js's BODY):
#   consume b=1   a backlog of N messages drained by a no-op queue-triggered function
#                 (tests/bench/queue/functions/consume1.lua: batch = 1, concurrency = CONC)
#   consume b=10  the same with batch = 10 (consume10.lua)
#   consume bull  N jobs added beforehand (queue.addBulk) drained by a BullMQ Worker with a no-op
#                 processor at concurrency CONC (the peer for both consume rows: BullMQ has no
#                 batches)
#   produce       N messages sent by CONC concurrent senders, each awaiting every send:
#                 crescent's queue.send inside CONC invocations of produce.lua (one HTTP request
#                 each starts a loop) vs CONC async loops of `await queue.add()` in one Node
#                 process
# Equal CPU budget: 1 crescent worker (--workers 1) against 1 Node.js process. "server" CPU is
# that process (the crescent worker with its threads; node) and "redis" the redis-server's,
# both utime + stime deltas from /proc/<pid>/stat over the measured interval. crescent's
# master (it only supervises and reloads) is not counted. crescent runs with --log-level warn
# (no report line per invocation; the meters stay on), as tests/bench/run.sh does.
#
# Timing: crescent's consumer function is dropped into the served folder (hot reload) once the
# backlog is in; the clock starts when its consumer group appears (made right before its first
# read) and stops when every message was read and acknowledged (XINFO GROUPS: entries-read = N,
# pending = 0), polled every 1-20 ms, more often as the end nears (that poll's Redis cost is
# counted against crescent).
# BullMQ's starts at worker.run() and stops at the N-th 'completed' event.
#
# Usage:  tests/bench/queue.sh        (as root the first time: installs Debian's nodejs, npm,
#                                      redis-server if missing; npm packages go to NODE_CACHE)
# Knobs:  N (messages per case, default 50000), CONC (default 8), ROUNDS (default 1),
#         CRESCENT_BIN (default <repo>/build/crescent), NODE_CACHE (default
#         ${XDG_CACHE_HOME:-$HOME/.cache}/crescent-bench: npm installs bullmq and ioredis there,
#         never in the tree), REDIS_PORT (16399), HTTP_PORT (18099), RUN_TIMEOUT (s per step,
#         default 120), RESULTS_DIR (default tests/bench/results/queue-<UTC stamp>, gitignored),
#         SKIP_INSTALL=1, CALM_WAIT (s, default 30) and CALM_PCT (default 25): before each case,
#         wait at most CALM_WAIT for the machine's load to fall below CALM_PCT % of one CPU,
#         CASES (default "consume1 consume10 consumebull producecrescent producebull").
#         SUMMARY_ONLY=DIR prints the table of an earlier run again.
# The table's last column, "other CPU %", is what everything else on the machine used during
# the measured interval, in % of one CPU (not counting the harness: crescent's poller or the
# HTTP client starting its producers, kept in runs.tsv): a large one means the numbers shared
# the machine with someone else's work.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
N=${N:-50000}
CONC=${CONC:-8}
ROUNDS=${ROUNDS:-1}
CRESCENT_BIN=${CRESCENT_BIN:-$REPO/build/crescent}
NODE_CACHE=${NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/crescent-bench}
REDIS_PORT=${REDIS_PORT:-16399}
HTTP_PORT=${HTTP_PORT:-18099}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
SKIP_INSTALL=${SKIP_INSTALL:-0}
CALM_WAIT=${CALM_WAIT:-30}
CALM_PCT=${CALM_PCT:-25}
CASES=${CASES:-consume1 consume10 consumebull producecrescent producebull}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS_DIR=${RESULTS_DIR:-$HERE/results/queue-$STAMP}
BULLMQ_VERSION=6.7.0
IOREDIS_VERSION=5.11.1

(( N >= 100 && N <= 1000000 )) || { echo "N must be 100..1000000" >&2; exit 2; }
(( CONC >= 1 && CONC <= 100 )) || { echo "CONC must be 1..100 (a trigger's concurrency)" >&2; exit 2; }
(( ROUNDS >= 1 && ROUNDS <= 10 )) || { echo "ROUNDS must be 1..10" >&2; exit 2; }
(( CALM_WAIT >= 0 && CALM_WAIT <= 300 )) || { echo "CALM_WAIT must be 0..300 s" >&2; exit 2; }
(( RUN_TIMEOUT >= 5 && RUN_TIMEOUT <= 600 )) || { echo "RUN_TIMEOUT must be 5..600 s" >&2; exit 2; }

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- the one table
# table DIR: DIR/runs.tsv -> the table (medians over rounds) and the targets on stdout.
table() {
  local tsv=$1/runs.tsv
  [[ -f $tsv ]] || { echo "no runs.tsv in $1" >&2; return 1; }
  awk -F'\t' '
    $1 == "case" { next }
    function median(str,   v, n, i, j, t) { n = split(str, v, " ")
      if (n == 0) return -1
      for (i = 2; i <= n; i++) { t = v[i] + 0; for (j = i - 1; j >= 1 && v[j] + 0 > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
      return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }
    function f(x, fmt) { return x < 0 ? "-" : sprintf(fmt, x) }
    { k = $1; rounds[k]++
      rate[k] = rate[k] " " ($3 / $4)
      srv[k] = srv[k] " " ($5 / $3 * 1e6); red[k] = red[k] " " ($6 / $3 * 1e6); tot[k] = tot[k] " " (($5 + $6) / $3 * 1e6)
      oth[k] = oth[k] " " ($8 / $4 * 100) }
    END {
      split("consume1 consume10 consumebull producecrescent producebull", order, " ")
      name["consume1"] = "consume, crescent batch=1"; name["consume10"] = "consume, crescent batch=10"
      name["consumebull"] = "consume, BullMQ"; name["producecrescent"] = "produce, crescent queue.send"
      name["producebull"] = "produce, BullMQ queue.add"
      peer["consume1"] = "consumebull"; peer["consume10"] = "consumebull"; peer["producecrescent"] = "producebull"
      for (i = 1; i <= 5; i++) { k = order[i]; if (!(k in rounds)) continue
        R[k] = median(rate[k]); S[k] = median(srv[k]); D[k] = median(red[k]); T[k] = median(tot[k]); O[k] = median(oth[k]) }
      printf "| case | rounds | msgs/s | server µs/msg | redis µs/msg | total µs/msg | crescent/BullMQ msgs/s | crescent/BullMQ CPU/msg | other CPU %% |\n"
      printf "|---|---|---|---|---|---|---|---|---|\n"
      for (i = 1; i <= 5; i++) { k = order[i]; if (!(k in R)) continue
        rr = "-"; rc = "-"; p = peer[k]
        if (p in R && R[p] > 0) { rr = sprintf("%.2f", R[k] / R[p]); rc = sprintf("%.2f", T[k] / T[p]) }
        printf "| %s | %d | %.0f | %s | %s | %s | %s | %s | %.0f |\n", name[k], rounds[k], R[k], f(S[k], "%.1f"), f(D[k], "%.1f"), f(T[k], "%.1f"), rr, rc, O[k] }
      print ""
      print "Targets (issue 13), medians of this run:"
      tg("consume1", 1.5); tg("consume10", 5)
    }
    function tg(k, lim,   p) { p = peer[k]
      if (!(k in R) || !(p in R) || R[p] <= 0) { printf "  - %s: not measured\n", name[k]; return }
      printf "  - %s: %.2fx BullMQ msgs/s (target >= %.1fx) %s\n", name[k], R[k] / R[p], lim, (R[k] / R[p] >= lim ? "met" : "NOT met") }
  ' "$tsv"
  [[ -f $1/run.txt ]] && { echo; cat "$1/run.txt"; }
  return 0
}

if [[ -n ${SUMMARY_ONLY:-} ]]; then table "$SUMMARY_ONLY"; exit 0; fi

# ---------------------------------------------------------------- set-up
install_debian() { # the Debian package of each command that is missing (node may come from elsewhere)
  local pairs=(node:nodejs npm:npm redis-server:redis-server redis-cli:redis-tools curl:curl setsid:util-linux
               pgrep:procps ss:iproute2) missing=() x
  for x in "${pairs[@]}"; do command -v "${x%%:*}" > /dev/null || missing+=("${x#*:}"); done
  ((${#missing[@]})) || return 0
  if [[ $SKIP_INSTALL == 1 ]]; then echo "missing packages: ${missing[*]} (SKIP_INSTALL=1)" >&2; exit 2; fi
  [[ $(id -u) == 0 ]] || { echo "missing packages: ${missing[*]}; run as root to install them" >&2; exit 2; }
  local made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then # keep Debian from starting redis as a system service
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1
  fi
  log "apt-get install ${missing[*]}"
  apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  ((made_policy)) && rm -f /usr/sbin/policy-rc.d
  return 0
}

# bullmq and ioredis (BullMQ's Redis client; a peer dependency since BullMQ 6) into NODE_CACHE.
install_npm() {
  local have_b have_i
  have_b=$(node -p "require('$NODE_CACHE/node_modules/bullmq/package.json').version" 2>/dev/null || true)
  have_i=$(node -p "require('$NODE_CACHE/node_modules/ioredis/package.json').version" 2>/dev/null || true)
  [[ $have_b == "$BULLMQ_VERSION" && $have_i == "$IOREDIS_VERSION" ]] && return 0
  if [[ $SKIP_INSTALL == 1 ]]; then echo "bullmq@$BULLMQ_VERSION / ioredis@$IOREDIS_VERSION not in $NODE_CACHE (SKIP_INSTALL=1)" >&2; exit 2; fi
  log "npm install --prefix $NODE_CACHE bullmq@$BULLMQ_VERSION ioredis@$IOREDIS_VERSION"
  mkdir -p "$NODE_CACHE"
  timeout 300 npm install --prefix "$NODE_CACHE" --no-audit --no-fund --loglevel=error \
    "bullmq@$BULLMQ_VERSION" "ioredis@$IOREDIS_VERSION" >&2
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
spawn() { # logfile cmd...: in its own session (process group), so it is stopped whole
  local logf=$1; shift
  setsid "$@" > "$logf" 2>&1 < /dev/null &
  SPAWNED=$!
  STARTED+=("$SPAWNED")
}

rcli() { timeout 10 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

node_bench() { # subcommand args... -> its JSON line
  NODE_PATH=$NODE_CACHE/node_modules BENCH_TIMEOUT=$RUN_TIMEOUT \
    timeout $((RUN_TIMEOUT + 10)) node "$HERE/queue/bench.js" "$@"
}

CRESCENT_PID=""
WORKER_PID=""
start_crescent() { # functions_dir
  local dir=$1 i
  if ss -Hltn "sport = :$HTTP_PORT" 2>/dev/null | grep -q .; then echo "port $HTTP_PORT is busy" >&2; return 1; fi
  spawn "$WORK/crescent.log" "$CRESCENT_BIN" serve --functions "$dir" --listen "127.0.0.1:$HTTP_PORT" \
    --workers 1 --redis "redis://127.0.0.1:$REDIS_PORT" --log-level warn --data "$WORK/data"
  CRESCENT_PID=$SPAWNED
  for i in $(seq 1 100); do
    kill -0 "$CRESCENT_PID" 2>/dev/null || break
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$HTTP_PORT/_/health" && break
    sleep 0.1
  done
  WORKER_PID=""
  local p
  for p in $(pgrep -P "$CRESCENT_PID" || true); do
    [[ $(cat "/proc/$p/comm" 2>/dev/null) == cr-worker* ]] && WORKER_PID=$p
  done
  [[ -n $WORKER_PID ]] || { echo "crescent did not start (see below)" >&2; tail -n 20 "$WORK/crescent.log" >&2; return 1; }
}

stop_crescent() {
  [[ -n $CRESCENT_PID ]] && stop_group "$CRESCENT_PID"
  if [[ -s $WORK/crescent.log ]]; then
    cat "$WORK/crescent.log" >> "$RESULTS_DIR/crescent.log"
    if grep -q '"level":"error"' "$WORK/crescent.log"; then log "WARNING: crescent logged errors (see $RESULTS_DIR/crescent.log)"; fi
  fi
  : > "$WORK/crescent.log"
  CRESCENT_PID=""
}

# A function file of tests/bench/queue/functions with the trigger's concurrency set to CONC.
conc_copy() { # src dst
  sed "s/concurrency = 2 }/concurrency = $CONC }/" "$1" > "$2"
  grep -q "concurrency = $CONC }" "$2" || { echo "could not set concurrency in $2" >&2; return 1; }
}

record() { # case round json
  local c=$1 r=$2 j=$3 msgs secs server redis harness other
  read -r msgs secs server redis harness other < <(node -e '
    const o = JSON.parse(process.argv[1]);
    console.log(o.msgs, o.secs.toFixed(4), ...o.cpu.map((x) => x.toFixed(2)))' "$j")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$r" "$msgs" "$secs" "$server" "$redis" "$harness" "$other" "$(date -u +%H:%M:%S)" \
    >> "$RESULTS_DIR/runs.tsv"
  log "r$r $c: $msgs msgs in ${secs} s = $(awk -v m="$msgs" -v s="$secs" 'BEGIN{printf "%.0f", m/s}') msgs/s; CPU s: server $server, redis $redis, harness $harness, other $other"
}

CLK=$(getconf CLK_TCK)
sys_busy_ticks() { awk '/^cpu /{ print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
# Waits, at most CALM_WAIT s, for the machine's load to fall below CALM_PCT % of one CPU
# (nothing of ours runs then: a busy machine is someone else's build).
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

run_case() { # case round
  local c=$1 r=$2 out fdir
  wait_calm
  rcli flushall > /dev/null
  case $c in
    consume1|consume10)
      node_bench fill-crescent "$REDIS_PORT" "$N" bench > /dev/null
      fdir=$WORK/fn-$c; rm -rf "$fdir"; mkdir -p "$fdir"
      conc_copy "$HERE/queue/functions/$c.lua" "$WORK/$c.lua"
      start_crescent "$fdir" || return 1
      out=$(node_bench drain-crescent "$REDIS_PORT" "$N" bench "$c" "$WORK/$c.lua" "$fdir" "$WORKER_PID,$REDIS_PID") \
        || { stop_crescent; return 1; }
      stop_crescent ;;
    consumebull)
      node_bench fill-bull "$REDIS_PORT" "$N" bench > /dev/null
      out=$(node_bench drain-bull "$REDIS_PORT" "$N" bench "$CONC" "$REDIS_PID") || return 1 ;;
    producecrescent)
      fdir=$WORK/fn-produce; rm -rf "$fdir"; mkdir -p "$fdir"
      cp "$HERE/queue/functions/produce.lua" "$fdir/produce.lua"
      start_crescent "$fdir" || return 1
      out=$(node_bench produce-crescent "$REDIS_PORT" "$N" benchp "$CONC" "http://127.0.0.1:$HTTP_PORT/produce" \
        "$WORKER_PID,$REDIS_PID") || { stop_crescent; return 1; }
      stop_crescent ;;
    producebull)
      out=$(node_bench produce-bull "$REDIS_PORT" "$N" benchp "$CONC" "$REDIS_PID") || return 1 ;;
    *) echo "unknown case $c" >&2; return 1 ;;
  esac
  record "$c" "$r" "$out"
}

main() {
  install_debian
  local c
  for c in node npm redis-server redis-cli curl setsid pgrep ss timeout; do
    command -v "$c" > /dev/null || { echo "missing command: $c" >&2; exit 2; }
  done
  [[ -x $CRESCENT_BIN ]] || { echo "no crescent binary at $CRESCENT_BIN (build it, or set CRESCENT_BIN)" >&2; exit 2; }
  install_npm
  mkdir -p "$RESULTS_DIR"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  WORK=$(mktemp -d -t crescent-queue-bench.XXXXXX)
  spawn "$WORK/redis.log" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$WORK" --daemonize no --databases 1
  REDIS_PID=$SPAWNED
  local i
  for i in $(seq 1 50); do rcli ping > /dev/null 2>&1 && break; sleep 0.1; done
  rcli ping > /dev/null || { echo "redis-server did not start on 127.0.0.1:$REDIS_PORT" >&2; cat "$WORK/redis.log" >&2; exit 2; }
  {
    echo "date_utc: $(date -u '+%Y-%m-%d %H:%M:%S')"
    echo "host: $(uname -sr); cpus: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "crescent: $("$CRESCENT_BIN" version 2>&1 | head -n 1) ($CRESCENT_BIN); git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo ?)"
    echo "peer: bullmq $BULLMQ_VERSION, ioredis $IOREDIS_VERSION, node $(node --version); $(redis-server --version | cut -d' ' -f1-3)"
    echo "N=$N CONC=$CONC ROUNDS=$ROUNDS; 1 crescent worker vs 1 node process; 200-byte JSON messages"
  } > "$RESULTS_DIR/run.txt"
  printf 'case\tround\tmsgs\tsecs\tserver_cpu_s\tredis_cpu_s\tharness_cpu_s\tother_cpu_s\tend_utc\n' > "$RESULTS_DIR/runs.tsv"
  local r
  for r in $(seq 1 "$ROUNDS"); do
    for c in $CASES; do
      run_case "$c" "$r" || log "WARNING: r$r $c failed; not counted"
    done
  done
  stop_group "$REDIS_PID"
  echo
  table "$RESULTS_DIR" | tee "$RESULTS_DIR/table.md"
  echo "results: $RESULTS_DIR"
}

main "$@"
