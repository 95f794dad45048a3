#!/usr/bin/env bash
# usrsctp interop: Debian's libusrsctp (UDP encapsulation, RFC 6951) against
# actor-socks' SCTP-over-UDP transport.
#
#   tests/usrsctp/run.sh            (from anywhere; needs gcc, pkg-config,
#                                    libusrsctp-dev, cargo)
#
# Builds tests/usrsctp/usrsctp_client.c with gcc and examples/sctp_udp_echo.rs
# with cargo, starts the echo server on 127.0.0.1 port 0 (it prints its
# port), runs the client once per mode (the client shuts down first; the
# server shuts down first), then also over IPv6 (::1), then once with the
# client idle for 14 s (heartbeats), and checks both ends report a clean
# shutdown. Exit status 0 on success, non-zero otherwise;
# everything is bounded in time (timeout(1) around each step).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/usrsctp-interop.XXXXXX")
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf -- "$work"
}
trap cleanup EXIT
trap 'echo "usrsctp-interop: FAIL: unexpected error (line $LINENO)" >&2' ERR

say() { echo "usrsctp-interop: $*"; }
die() { echo "usrsctp-interop: FAIL: $*" >&2; exit 1; }

command -v gcc >/dev/null || die "gcc missing (apt-get install gcc)"
command -v pkg-config >/dev/null || die "pkg-config missing (apt-get install pkg-config)"
pkg-config --exists usrsctp || die "libusrsctp-dev missing (apt-get install libusrsctp-dev)"

say "building the usrsctp client"
gcc -O2 -Wall -Wextra -o "$work/usrsctp_client" "$here/usrsctp_client.c" \
    $(pkg-config --cflags --libs usrsctp) -lpthread \
    || die "gcc failed"

say "building the echo server (cargo build --example sctp_udp_echo)"
(cd "$root" && timeout 900 cargo build --quiet --example sctp_udp_echo) || die "cargo build failed"
server_bin="$root/target/debug/examples/sctp_udp_echo"
[ -x "$server_bin" ] || die "missing $server_bin"

# run_case BIND_ADDR CLIENT_HOST MODE [IDLE_SECONDS]
run_case() {
    local bind=$1 host=$2 mode=$3 idle=${4:-}
    local out="$work/server.$mode.$host.out"
    # One association, then the server exits (status 1 if it did not end cleanly).
    # (The files exist before the background job opens them: no race with sed.)
    : >"$out"
    : >"$out.err"
    timeout $((40 + ${idle:-0})) "$server_bin" "$bind" --count 1 >"$out" 2>"$out.err" &
    server_pid=$!
    local port=""
    for _ in $(seq 1 100); do
        port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\) (sctp-over-udp)$/\1/p' "$out" | head -n 1) || port=""
        [ -n "$port" ] && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$port" ] || { cat "$out" "$out.err" >&2; die "the echo server did not report its port"; }
    say "[$mode, $host] echo server listening on UDP port $port"

    local start end rc=0
    start=$(date +%s%N)
    timeout $((30 + ${idle:-0})) "$work/usrsctp_client" "$host" "$port" "$mode" $idle || rc=$?
    end=$(date +%s%N)
    [ "$rc" = 0 ] || { cat "$out" "$out.err" >&2; die "[$mode, $host] usrsctp client exit status $rc"; }

    local src=0
    wait "$server_pid" || src=$?
    server_pid=""
    cat "$out"
    [ "$src" = 0 ] || { cat "$out.err" >&2; die "[$mode, $host] echo server exit status $src"; }
    grep -q ', close=ok$' "$out" || die "[$mode, $host] the server did not report a clean close"
    say "[$mode, $host] ok in $(( (end - start) / 1000000 )) ms"
}

run_case 127.0.0.1:0 127.0.0.1 client-close
run_case 127.0.0.1:0 127.0.0.1 server-close
run_case '[::1]:0' ::1 client-close
run_case '[::1]:0' ::1 server-close
# Idle past the server's heartbeat interval (10 s): usrsctp answers the
# driver's HEARTBEATs and the association survives.
run_case 127.0.0.1:0 127.0.0.1 server-close 14
say "PASS"
