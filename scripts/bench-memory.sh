#!/usr/bin/env bash
# What a connection costs the proxy in memory, idle and stalled, side by
# side, with the load generator (examples/loadgen.rs) on loopback.
#
#   idle:    N connections opened through the proxy, one round trip each,
#            then held silent.
#   stalled: N connections to targets that send without end, whose clients
#            never read: every buffer on the way fills up (the proxy must
#            not hold a relay buffer for them: memory follows data in
#            flight, not sessions).
# Each run gets a fresh actor-socks; the figure is its RSS growth divided
# by the connections. Prints a markdown table. Every run is bounded in time.
#
#   scripts/bench-memory.sh [--conns N] [--hold S] [--runs R] [--relay MODE] [--smoke] [--no-build]
#
# --smoke: 50 connections, one run, debug build: the tools must work (exits
# non-zero if a run fails or a stalled connection was cut).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONNS=2000
HOLD=3
RUNS=3
RELAY=auto
BUILD=1
SMOKE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --conns) CONNS=$2; shift ;;
        --hold) HOLD=$2; shift ;;
        --runs) RUNS=$2; shift ;;
        --relay) RELAY=$2; shift ;;
        --smoke) SMOKE=1 ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "bench-memory: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
PROFILE=release
if [ "$SMOKE" = 1 ]; then
    CONNS=50 HOLD=1 RUNS=1 PROFILE=debug
fi
BIN=$ROOT/target/$PROFILE
if [ "$BUILD" = 1 ]; then
    flag=()
    [ "$PROFILE" = release ] && flag=(--release)
    (cd "$ROOT" && cargo build -q "${flag[@]}" --bin actor-socks --example loadgen)
fi

WORK=$(mktemp -d /tmp/actor-socks-bench-memory.XXXXXX)
PID=""
stop() {
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
        PID=""
    fi
}
trap 'stop; rm -rf "$WORK"' EXIT

start() {
    rm -f "$WORK/ready"
    "$BIN/actor-socks" --bind 127.0.0.1:0 --ready-file "$WORK/ready" --log-level error \
        --max-clients 20000 --relay "$RELAY" --grace-period 0 >"$WORK/log" 2>&1 &
    PID=$!
    for _ in $(seq 100); do
        [ -s "$WORK/ready" ] && break
        sleep 0.1
    done
    PROXY=$(awk '$1 == "socks" { print $2; exit }' "$WORK/ready")
    [ -n "$PROXY" ] || { echo "bench-memory: proxy did not start" >&2; cat "$WORK/log" >&2; exit 1; }
}

field() { python3 -c "import json,sys; print(json.loads(sys.argv[1]).get('$2', 'nan'))" "$1"; }

run() { # MODE -> JSON line
    start
    local out
    out=$(timeout $(( HOLD + 200 )) "$BIN/examples/loadgen" "$1" --proxy "$PROXY" --conns "$CONNS" \
        --hold "$HOLD" --pid "$PID" --json) || { stop; echo "bench-memory: $1 run failed" >&2; exit 1; }
    stop
    echo "$out"
}

idle=() stalled=() alive=()
for _ in $(seq "$RUNS"); do
    i=$(run idle)
    s=$(run stalled)
    idle+=("$(field "$i" kb_per_conn)")
    stalled+=("$(field "$s" kb_per_conn)")
    alive+=("$(field "$s" alive_after_hold)/$(field "$s" conns_ok)")
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "# bench-memory: $CONNS connections, ${HOLD}s hold, $RUNS runs, --relay $RELAY ($PROFILE build)"
echo
echo "| | KB of proxy RSS per connection (median) | runs |"
echo "|---|---|---|"
echo "| idle | $(median "${idle[@]}") | ${idle[*]} |"
echo "| stalled reader | $(median "${stalled[@]}") | ${stalled[*]} |"
echo
echo "stalled connections still open with bytes waiting after the hold: ${alive[*]}"

if [ "$SMOKE" = 1 ]; then
    for a in "${alive[@]}"; do
        [ "${a%/*}" = "${a#*/}" ] || { echo "bench-memory smoke: a stalled connection was cut ($a)" >&2; exit 1; }
    done
    echo "bench-memory smoke: ok"
fi
