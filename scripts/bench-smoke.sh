#!/usr/bin/env bash
# Seconds-long smoke test of the load generator (examples/loadgen.rs): every
# mode, with small sizes, straight to its target ("direct") and through a
# SOCKS5 proxy. Checks that the tool works and moves the bytes it claims;
# asserts nothing about timing. Exit status 0 only if every check passed.
#
#   scripts/bench-smoke.sh                          # starts target/<profile>/actor-socks itself
#   scripts/bench-smoke.sh --proxy 127.0.0.1:1080   # an already running proxy
#   scripts/bench-smoke.sh --proxy 127.0.0.1:1080 --user NAME:PASS
#
# Options: --release (build/use the release profile; default: debug),
# --no-build, --pid PID (with --proxy: the proxy's pid, for the RSS check).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PROXY=""
USER_ARG=""
PROXY_PID=""
PROFILE=debug
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --proxy) PROXY=$2; shift ;;
        --user) USER_ARG=$2; shift ;;
        --pid) PROXY_PID=$2; shift ;;
        --release) PROFILE=release ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "bench-smoke: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

BIN=$ROOT/target/$PROFILE
LOADGEN=$BIN/examples/loadgen
WORK=$(mktemp -d /tmp/actor-socks-smoke.XXXXXX)
STARTED=()
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do
        kill "$pid" 2>/dev/null
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "smoke: ok   $*"; }
bad() { FAIL=$((FAIL + 1)); echo "smoke: FAIL $*"; }

if [ "$BUILD" = 1 ]; then
    flag=()
    [ "$PROFILE" = release ] && flag=(--release)
    targets=(--example loadgen)
    [ -z "$PROXY" ] && targets+=(--bin actor-socks)
    (cd "$ROOT" && cargo build "${flag[@]}" "${targets[@]}") || { echo "smoke: build failed" >&2; exit 1; }
fi
[ -x "$LOADGEN" ] || { echo "smoke: $LOADGEN missing" >&2; exit 1; }

# Starts actor-socks on 127.0.0.1:0 with extra args; sets STARTED_ADDR and
# STARTED_PID (no subshell, so the cleanup trap knows the pid). Fails clearly
# if it does not come up.
start_actor() {
    local ready=$WORK/ready.$RANDOM pid addr=""
    STARTED_ADDR=""
    "$BIN/actor-socks" --bind 127.0.0.1:0 --ready-file "$ready" --log-level warn "$@" \
        >"$WORK/actor-socks.log" 2>&1 &
    pid=$!
    STARTED+=("$pid")
    STARTED_PID=$pid
    for _ in $(seq 100); do
        [ -s "$ready" ] && addr=$(awk '$1 == "socks" { print $2; exit }' "$ready")
        [ -n "$addr" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$addr" ]; then
        echo "smoke: actor-socks did not start (no 'socks ADDR' in its --ready-file); log:" >&2
        sed 's/^/    /' "$WORK/actor-socks.log" >&2
        return 1
    fi
    STARTED_ADDR=$addr
}

AUTH_PROXY=""
AUTH_USER=""
if [ -z "$PROXY" ]; then
    start_actor --max-clients 1000 || { bad "actor-socks starts"; echo "0 passed, 1 failed"; exit 1; }
    PROXY=$STARTED_ADDR
    PROXY_PID=$STARTED_PID
    ok "actor-socks started on $PROXY (pid $PROXY_PID)"
    AUTH_USER=smoke:s3cret
    if start_actor --user "$AUTH_USER"; then
        AUTH_PROXY=$STARTED_ADDR
        ok "actor-socks with --user started on $AUTH_PROXY"
    else
        bad "actor-socks with --user starts"
        AUTH_PROXY=""
    fi
fi

# json_get LINE KEY: the raw value of a top-level scalar key.
json_get() { printf '%s' "$1" | grep -o "\"$2\":[^,}]*" | head -n1 | cut -d: -f2- | tr -d '"'; }

# run NAME EXPECTED_RC LOADGEN-ARGS...: runs loadgen --json, sets LINE.
run() {
    local name=$1 want=$2 rc=0
    shift 2
    LINE=$(timeout 120 "$LOADGEN" "$@" --json 2>"$WORK/err") || rc=$?
    if [ "$rc" != "$want" ]; then
        bad "$name: exit $rc, expected $want: $(head -c 300 "$WORK/err") $LINE"
        return 1
    fi
    return 0
}

check_bulk() { # label route-args...
    local label=$1
    shift
    local dir conns bytes exp
    for spec in "up 1 8M 8000000" "down 1 8M 8000000" "up 4 2M 8000000" "down 4 2M 8000000"; do
        read -r dir conns bytes exp <<<"$spec"
        run "$label bulk $dir x$conns" 0 bulk "$@" --conns "$conns" --bytes "$bytes" --dir "$dir" || continue
        if [ "$(json_get "$LINE" verified)" = true ] && [ "$(json_get "$LINE" received_bytes)" = "$exp" ] \
            && [ "$(json_get "$LINE" expected_bytes)" = "$exp" ] && [ "$(json_get "$LINE" errors)" = 0 ]; then
            ok "$label bulk $dir x$conns: $exp bytes verified at the far end"
        else
            bad "$label bulk $dir x$conns: $LINE"
        fi
    done
}

check_connrate() {
    local label=$1
    shift
    run "$label connrate" 0 connrate "$@" --workers 2 --duration 1 || return
    local n
    n=$(json_get "$LINE" conns_ok)
    if [ "${n:-0}" -gt 0 ] && [ "$(json_get "$LINE" errors)" = 0 ]; then
        ok "$label connrate: $n connections, 0 errors"
    else
        bad "$label connrate: $LINE"
    fi
}

check_idle() { # label pid-or-empty route-args...
    local label=$1 pid=$2
    shift 2
    local extra=()
    [ -n "$pid" ] && extra=(--pid "$pid")
    run "$label idle" 0 idle "$@" --conns 50 --hold 0.5 "${extra[@]}" || return
    if [ "$(json_get "$LINE" conns_ok)" = 50 ] && [ "$(json_get "$LINE" alive_after_hold)" = 50 ] \
        && [ "$(json_get "$LINE" errors)" = 0 ]; then
        if [ -n "$pid" ] && [ -z "$(json_get "$LINE" kb_per_conn)" ]; then
            bad "$label idle: no kb_per_conn despite --pid: $LINE"
        else
            ok "$label idle: 50 held and alive${pid:+, $(json_get "$LINE" kb_per_conn) KB/conn}"
        fi
    else
        bad "$label idle: $LINE"
    fi
}

# The tool itself, no proxy.
check_bulk direct --proxy direct
check_connrate direct --proxy direct
check_idle direct "" --proxy direct

# The tool must notice failure: nothing listens on port 1.
if run "bulk to a dead proxy" 1 bulk --proxy 127.0.0.1:1 --bytes 1M --timeout 10; then
    ok "bulk through a dead proxy fails with exit 1"
fi

# Through the proxy.
PA=(--proxy "$PROXY")
[ -n "$USER_ARG" ] && PA+=(--user "$USER_ARG")
check_bulk proxy "${PA[@]}"
check_connrate proxy "${PA[@]}"
check_idle proxy "$PROXY_PID" "${PA[@]}"

# RFC 1929 path, when we started an authenticating actor-socks.
if [ -n "$AUTH_PROXY" ]; then
    if run "auth bulk" 0 bulk --proxy "$AUTH_PROXY" --user "$AUTH_USER" --bytes 1M; then
        if [ "$(json_get "$LINE" verified)" = true ]; then
            ok "auth: bulk with USER/PASS verified"
        else
            bad "auth: bulk with USER/PASS: $LINE"
        fi
    fi
    run "auth wrong password" 1 bulk --proxy "$AUTH_PROXY" --user smoke:wrong --bytes 1M --timeout 10 \
        && ok "auth: wrong password is refused (exit 1)"
fi

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
