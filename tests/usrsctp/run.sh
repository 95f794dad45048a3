#!/usr/bin/env bash
# usrsctp interop: Debian's libusrsctp (UDP encapsulation, RFC 6951) against
# actor-socks' SCTP-over-UDP transport.
#
#   tests/usrsctp/run.sh            (from anywhere; needs gcc, pkg-config,
#                                    libusrsctp-dev, cargo)
#
# Builds tests/usrsctp/usrsctp_client.c with gcc, and examples/sctp_udp_echo.rs
# and the actor-socks binary with cargo.
#
# Echo cases: starts the echo server on 127.0.0.1 port 0 (it prints its
# port), runs the client once per mode (the client shuts down first; the
# server shuts down first), then also over IPv6 (::1), then once with the
# client idle for 14 s (heartbeats), and checks both ends report a clean
# shutdown.
#
# Manager cases: starts the real server (actor-socks --manager-transport udp
# --admin admin:secret, ports from its --ready-file) and runs the client in
# its manager mode: authenticate, one request, check the reply byte for byte
# (metrics: by prefix), then the server's clean SHUTDOWN; add user, list
# users, metrics, set max clients, a wrong password; then add user and list
# users against a server on [::1].
#
# Prints one line per case and a summary "usrsctp-interop: N passed, M
# failed". Exit status 0 when every case passed, non-zero otherwise;
# everything is bounded in time (timeout(1) around each step).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/usrsctp-interop.XXXXXX")
server_pid=""
# stop_server: SIGTERM, up to 10 s to exit, then SIGKILL. Sets server_status.
server_status=0
stop_server() {
    server_status=0
    [ -n "$server_pid" ] || return 0
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || server_status=$?
    server_pid=""
}
cleanup() {
    stop_server
    rm -rf -- "$work"
}
trap cleanup EXIT
trap 'echo "usrsctp-interop: FAIL: unexpected error (line $LINENO)" >&2' ERR

say() { echo "usrsctp-interop: $*"; }
die() { echo "usrsctp-interop: FAIL: $*" >&2; exit 1; }
# A failed case: the message, and the case function returns 1.
bad() { echo "usrsctp-interop: FAIL: $*" >&2; return 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

passed=0
failed=0
# record NAME FUNCTION ARGS...: runs one case, counts it.
record() {
    local name=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        say "case failed: $name"
    fi
}

command -v gcc >/dev/null || die "gcc missing (apt-get install gcc)"
command -v pkg-config >/dev/null || die "pkg-config missing (apt-get install pkg-config)"
pkg-config --exists usrsctp || die "libusrsctp-dev missing (apt-get install libusrsctp-dev)"

say "building the usrsctp client"
gcc -O2 -Wall -Wextra -o "$work/usrsctp_client" "$here/usrsctp_client.c" \
    $(pkg-config --cflags --libs usrsctp) -lpthread \
    || die "gcc failed"
client="$work/usrsctp_client"

say "building the echo server and actor-socks (cargo build --example sctp_udp_echo --bin actor-socks)"
(cd "$root" && timeout 900 cargo build --quiet --example sctp_udp_echo --bin actor-socks) \
    || die "cargo build failed"
echo_bin="$root/target/debug/examples/sctp_udp_echo"
socks_bin="$root/target/debug/actor-socks"
[ -x "$echo_bin" ] || die "missing $echo_bin"
[ -x "$socks_bin" ] || die "missing $socks_bin"

# ---------------------------------------------------------------- echo ----

# echo_case BIND_ADDR CLIENT_HOST MODE [IDLE_SECONDS]
echo_case() {
    local bind=$1 host=$2 mode=$3 idle=${4:-}
    local out="$work/server.$mode.$host.$idle.out"
    # One association, then the server exits (status 1 if it did not end cleanly).
    # (The files exist before the background job opens them: no race with sed.)
    : >"$out"
    : >"$out.err"
    timeout $((40 + ${idle:-0})) "$echo_bin" "$bind" --count 1 >"$out" 2>"$out.err" &
    server_pid=$!
    local port=""
    for _ in $(seq 1 100); do
        port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\) (sctp-over-udp)$/\1/p' "$out" | head -n 1) || port=""
        [ -n "$port" ] && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        cat "$out" "$out.err" >&2
        stop_server
        bad "[$mode, $host] the echo server did not report its port"
        return 1
    fi
    say "[$mode, $host] echo server listening on UDP port $port"

    local start end rc=0
    start=$(now_ms)
    timeout $((30 + ${idle:-0})) "$client" "$host" "$port" "$mode" $idle || rc=$?
    end=$(now_ms)
    if [ "$rc" != 0 ]; then
        stop_server
        cat "$out" "$out.err" >&2
        bad "[$mode, $host] usrsctp client exit status $rc"
        return 1
    fi

    local src=0
    wait "$server_pid" || src=$?
    server_pid=""
    cat "$out"
    [ "$src" = 0 ] || { cat "$out.err" >&2; bad "[$mode, $host] echo server exit status $src"; return 1; }
    grep -q ', close=ok$' "$out" || { bad "[$mode, $host] the server did not report a clean close"; return 1; }
    say "[$mode, $host] ok in $((end - start)) ms"
}

record "echo client-close 127.0.0.1" echo_case 127.0.0.1:0 127.0.0.1 client-close
record "echo server-close 127.0.0.1" echo_case 127.0.0.1:0 127.0.0.1 server-close
record "echo client-close ::1" echo_case '[::1]:0' ::1 client-close
record "echo server-close ::1" echo_case '[::1]:0' ::1 server-close
# Idle past the server's heartbeat interval (10 s): usrsctp answers the
# driver's HEARTBEATs and the association survives.
record "echo server-close 127.0.0.1 idle 14 s" echo_case 127.0.0.1:0 127.0.0.1 server-close 14

# ------------------------------------------------------------- manager ----

# hex STRING: its bytes in hex, e.g. hex admin -> 61646d696e.
hex() { printf %s "$1" | od -An -tx1 | tr -d ' \n'; }
# A length byte in hex.
len() { printf %02x "${#1}"; }
auth_msg() { echo "01 $(len "$1") $(hex "$1") $(len "$2") $(hex "$2")"; }

mgr_log=""
mgr_host=""
mgr_port=""
mgr_requests=0

# start_manager BIND_ADDR CLIENT_HOST: starts actor-socks with its manager on
# BIND_ADDR over SCTP-over-UDP, waits up to 10 s for its ready file.
start_manager() {
    local bind=$1 host=$2 tag
    tag=$(echo "$bind" | tr -c 'a-zA-Z0-9\n' _)
    local ready="$work/ready.$tag"
    mgr_log="$work/actor-socks.$tag.log"
    mgr_host=$host
    mgr_port=""
    mgr_requests=0
    rm -f -- "$ready"
    # --foreground: stop_server's SIGTERM must reach actor-socks once. A
    # plain `timeout` passes it on to the child and again to its process
    # group; when the two arrive apart, the second is a second signal
    # (exit at once, 143), as it would be from an operator.
    timeout --foreground 300 "$socks_bin" --bind 127.0.0.1:0 --manager-bind "$bind" \
        --manager-transport udp --admin admin:secret --ready-file "$ready" \
        >"$mgr_log" 2>&1 &
    server_pid=$!
    local line=""
    for _ in $(seq 1 100); do
        # The server writes the file whole (rename), so a line is complete.
        line=$( { grep '^manager ' "$ready" 2>/dev/null || true; } | head -n 1)
        [ -n "$line" ] && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$line" ]; then
        cat "$mgr_log" >&2
        stop_server
        die "actor-socks (manager on $bind) wrote no 'manager' line to its ready file within 10 s"
    fi
    mgr_port=$(echo "$line" | sed -n 's/^manager .*:\([0-9][0-9]*\) sctp-over-udp$/\1/p')
    [ -n "$mgr_port" ] || { cat "$mgr_log" >&2; stop_server; die "unexpected ready line: $line"; }
    say "actor-socks manager listening: $line"
}

# stop_manager: SIGTERM; the server must exit 0, and have logged one
# "manager request" per case and no failed manager session.
stop_manager() {
    stop_server
    local n
    n=$(grep -c 'manager request' "$mgr_log" || true)
    if [ "$server_status" != 0 ]; then
        cat "$mgr_log" >&2
        bad "actor-socks exit status $server_status"
        return 1
    fi
    if grep -q 'manager session failed' "$mgr_log" || [ "$n" != "$mgr_requests" ]; then
        cat "$mgr_log" >&2
        bad "actor-socks logged $n manager requests for $mgr_requests cases, or a failed session"
        return 1
    fi
    say "actor-socks stopped cleanly ($n manager requests logged)"
}

# manager_case NAME AUTH EXPECT_AUTH REQUEST EXPECT_REPLY (see usrsctp_client.c;
# an expectation ending in '*' is a prefix; REQUEST '-' sends none).
manager_case() {
    local name=$1
    shift
    local start end rc=0
    mgr_requests=$((mgr_requests + 1))
    kill -0 "$server_pid" 2>/dev/null || { bad "[manager $name] actor-socks is not running"; return 1; }
    start=$(now_ms)
    timeout 30 "$client" "$mgr_host" "$mgr_port" manager "$@" || rc=$?
    end=$(now_ms)
    if [ "$rc" != 0 ]; then
        tail -n 20 "$mgr_log" >&2
        bad "[manager $name, $mgr_host] usrsctp client exit status $rc"
        return 1
    fi
    say "[manager $name, $mgr_host] ok in $((end - start)) ms"
}

admin_ok=$(auth_msg admin secret)
alice=$(echo "$(len alice) $(hex alice)")

start_manager 127.0.0.1:0 127.0.0.1
record "manager add user" manager_case "add user" \
    "$admin_ok" "05 00" "05 00 $alice $(len pw) $(hex pw)" "05 00 00"
record "manager list users" manager_case "list users" \
    "$admin_ok" "05 00" "05 01" "05 01 01 $alice"
record "manager metrics" manager_case "metrics" \
    "$admin_ok" "05 00" "05 02" "05 02 08*"
record "manager set max clients" manager_case "set max clients" \
    "$admin_ok" "05 00" "05 03 04 00 00 00 0a" "05 03 00"
record "manager wrong password" manager_case "wrong password" \
    "$(auth_msg admin wrong)" "05 02" - -
record "actor-socks 127.0.0.1 stops cleanly" stop_manager

start_manager '[::1]:0' ::1
record "manager add user ::1" manager_case "add user" \
    "$admin_ok" "05 00" "05 00 $alice $(len pw) $(hex pw)" "05 00 00"
record "manager list users ::1" manager_case "list users" \
    "$admin_ok" "05 00" "05 01" "05 01 01 $alice"
record "actor-socks ::1 stops cleanly" stop_manager

say "$passed passed, $failed failed"
if [ "$failed" != 0 ]; then
    exit 1
fi
