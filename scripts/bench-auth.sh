#!/usr/bin/env bash
# What password hashing costs a login, measured with the load generator's
# connrate mode (connect, RFC 1929 login, 1-byte echo, close) on loopback.
#
# One actor-socks serves a users file with two users: `plain` (a plaintext
# line) and `hashed` (an Argon2id line from `actor-socks hash-password`).
#   1. connrate as `plain` and as `hashed`, runs interleaved: conn/s and the
#      ratio (every `hashed` login after the first is served from the
#      verification cache).
#   2. a flood of wrong passwords for `hashed` (every one a full Argon2id
#      verification, or refused when the verifier's queue is full), with a
#      legitimate `hashed` connrate beside it: the proxy's CPU (cores) and
#      the legitimate conn/s during the flood.
# Prints a markdown table. Loopback only; every run is bounded in time.
#
#   scripts/bench-auth.sh [--runs N] [--secs S] [--workers W] [--smoke] [--no-build]
#
# --smoke: one short run of each, for CI (figures meaningless, the tools
# must work: exits non-zero if a login fails or nothing is measured).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=3
SECS=5
WORKERS=8
BUILD=1
SMOKE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift ;;
        --secs) SECS=$2; shift ;;
        --workers) WORKERS=$2; shift ;;
        --smoke) SMOKE=1 ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "bench-auth: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
PROFILE=release
if [ "$SMOKE" = 1 ]; then
    RUNS=1 SECS=1 WORKERS=2 PROFILE=debug
fi
BIN=$ROOT/target/$PROFILE
if [ "$BUILD" = 1 ]; then
    flag=()
    [ "$PROFILE" = release ] && flag=(--release)
    (cd "$ROOT" && cargo build -q "${flag[@]}" --bin actor-socks --example loadgen)
fi

WORK=$(mktemp -d /tmp/actor-socks-bench-auth.XXXXXX)
PID=""
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

HASH=$(printf 'pw-hashed\n' | "$BIN/actor-socks" hash-password)
printf 'plain:pw-plain\nhashed:%s\n' "$HASH" >"$WORK/users"
"$BIN/actor-socks" --bind 127.0.0.1:0 --ready-file "$WORK/ready" --log-level error \
    --users-file "$WORK/users" --max-clients 100000 >"$WORK/log" 2>&1 &
PID=$!
for _ in $(seq 100); do
    [ -s "$WORK/ready" ] && break
    sleep 0.1
done
PROXY=$(awk '$1 == "socks" { print $2; exit }' "$WORK/ready")
[ -n "$PROXY" ] || { echo "bench-auth: proxy did not start" >&2; cat "$WORK/log" >&2; exit 1; }

# CPU time (user + system) of the proxy, in clock ticks.
ticks() { awk '{ print $14 + $15 }' "/proc/$PID/stat"; }
HZ=$(getconf CLK_TCK)

connrate() { # USER:PASS SECS [WORKERS] -> JSON line
    timeout $(( $2 + 30 )) "$BIN/examples/loadgen" connrate --proxy "$PROXY" --user "$1" \
        --workers "${3:-$WORKERS}" --duration "$2" --json
}
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }

# The first `hashed` login pays for Argon2 once; the runs measure after it.
connrate hashed:pw-hashed 1 1 >/dev/null
plain=() hashed=()
for _ in $(seq "$RUNS"); do
    plain+=("$(field "$(connrate plain:pw-plain "$SECS")" conns_per_sec)")
    hashed+=("$(field "$(connrate hashed:pw-hashed "$SECS")" conns_per_sec)")
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
P=$(median "${plain[@]}")
H=$(median "${hashed[@]}")

# The flood: wrong passwords as fast as W workers can send them; first
# alone (the proxy's CPU), then with one legitimate worker beside it.
t0=$(ticks)
start=$(date +%s.%N)
connrate hashed:wrong "$SECS" >"$WORK/flood.json" || true  # exits 1: every login fails
end=$(date +%s.%N)
t1=$(ticks)
CORES=$(python3 -c "print(f'{($t1 - $t0) / $HZ / ($end - $start):.2f}')")
FLOOD_ERR=$(field "$(cat "$WORK/flood.json")" errors)
FLOOD_OK=$(field "$(cat "$WORK/flood.json")" conns_ok)
connrate hashed:wrong "$SECS" >/dev/null &
FLOOD=$!
LEGIT=$(connrate hashed:pw-hashed "$SECS" 1)
wait "$FLOOD" || true
LEGIT_RATE=$(field "$LEGIT" conns_per_sec)
LEGIT_ERR=$(field "$LEGIT" errors)
ALONE=$(field "$(connrate hashed:pw-hashed "$SECS" 1)" conns_per_sec)

echo "# bench-auth: $RUNS runs x ${SECS}s, $WORKERS workers, $(nproc) cores ($PROFILE build)"
echo
echo "| | value |"
echo "|---|---|"
echo "| connrate, plaintext user (conn/s, median) | $P (runs: ${plain[*]}) |"
echo "| connrate, Argon2id user after the first login (conn/s, median) | $H (runs: ${hashed[*]}) |"
echo "| hashed / plaintext | $(python3 -c "print(f'{$H / $P:.2f}x')") |"
echo "| wrong-password flood: logins refused / let in | $FLOOD_ERR / $FLOOD_OK |"
echo "| proxy CPU during the flood (cores of $(nproc)) | $CORES |"
echo "| legitimate hashed logins, 1 worker, no flood (conn/s) | $ALONE |"
echo "| legitimate hashed logins, 1 worker, during the flood (conn/s) | $LEGIT_RATE ($LEGIT_ERR errors) |"

if [ "$SMOKE" = 1 ]; then
    python3 - "$P" "$H" "$FLOOD_OK" "$FLOOD_ERR" <<'EOF'
import sys
p, h, ok, err = (float(x) for x in sys.argv[1:])
assert p > 0 and h > 0, "no login measured"
assert ok == 0, "a wrong password was let in"
assert err > 0, "the flood made no attempt"
print("bench-auth smoke: ok")
EOF
fi
