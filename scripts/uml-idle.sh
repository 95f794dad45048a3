#!/usr/bin/env bash
# Hold 10,000 idle proxied connections through actor-socks inside a User-Mode Linux guest.
#
#   scripts/uml-idle.sh [--conns C] [--hold S] [--debug] [--no-build] [--mem 2G] [--timeout SECS]
#
# Why a guest: on these machines the hard RLIMIT_NOFILE is 20,000 and raising it needs
# CAP_SYS_RESOURCE, which the sandbox does not give even to root. A proxied connection costs
# the proxy two descriptors (client and upstream) and the load generator two more (its client
# end and its in-process target's end), so 10,000 connections need > 20,000 in each process.
# Inside the guest we are root of our own kernel: `ulimit -n 65536` works, and the proxy,
# the load generator and the loopback they talk over are all the guest's.
#
# In the guest (scripts/uml-run.sh, no SCTP module needed): start actor-socks on
# 127.0.0.1:0 with --max-clients 20000, then `loadgen idle --conns C --hold S --pid PID`
# (each connection verified by a one-byte echo, held, verified again, RSS per connection
# from /proc/PID/status). Prints loadgen's line and the proxy's VmRSS/VmHWM, then
# UML-IDLE: PASS|FAIL. Exit 0 only when all C connections were held with no error.
#
# --debug uses the debug build (what CI has built already); the default is release.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo" || exit 2

conns=10000
hold=3
profile=release
build=1
mem=2G
timeout_s=300
while [ $# -gt 0 ]; do
    case "$1" in
        --conns) conns=$2; shift 2 ;;
        --hold) hold=$2; shift 2 ;;
        --debug) profile=debug; shift ;;
        --no-build) build=0; shift ;;
        --mem) mem=$2; shift 2 ;;
        --timeout) timeout_s=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -u/p' "$0" | sed -e '/^set -u/d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "uml-idle: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [ "${UML_IDLE_GUEST:-0}" = 1 ]; then
    # ---- inside the guest (uml-run.sh runs this script again with UML_IDLE_GUEST=1) ----
    bin=target/$profile
    ulimit -n 65536 || { echo "UML-IDLE: FAIL (ulimit -n 65536 refused inside the guest)"; exit 3; }
    ready=$UML_SCRATCH/ready
    "$bin/actor-socks" --bind 127.0.0.1:0 --ready-file "$ready" --max-clients 20000 \
        --log-level warn --manager-transport udp --manager-bind 127.0.0.1:0 \
        >"$UML_SCRATCH/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do [ -s "$ready" ] && break; sleep 0.1; done
    addr=$(awk '/^socks /{print $2}' "$ready" 2>/dev/null)
    if [ -z "$addr" ]; then
        echo "UML-IDLE: FAIL (actor-socks did not come up)"
        cat "$UML_SCRATCH/server.log"
        exit 1
    fi
    echo "open-files limit in the guest: $(ulimit -n); actor-socks $addr (pid $pid, $profile build)"
    "$bin/examples/loadgen" idle --proxy "$addr" --conns "$conns" --hold "$hold" --pid "$pid"
    rc=$?
    grep -E '^(VmRSS|VmHWM)' "/proc/$pid/status"
    kill "$pid"
    wait "$pid"
    if [ "$rc" = 0 ]; then
        echo "UML-IDLE: PASS ($conns connections held)"
    else
        echo "UML-IDLE: FAIL (loadgen exit $rc)"
        echo "--- server log"; tail -n 20 "$UML_SCRATCH/server.log"
    fi
    exit "$rc"
fi

if [ "$build" = 1 ]; then
    flag=()
    [ "$profile" = release ] && flag=(--release)
    echo "==> uml-idle: cargo build ${flag[*]} --bins --examples" >&2
    cargo build "${flag[@]}" --bins --examples || exit 3
fi
for f in "target/$profile/actor-socks" "target/$profile/examples/loadgen"; do
    [ -x "$f" ] || { echo "uml-idle: missing $f (build first)" >&2; exit 3; }
done
guest_args=(--conns "$conns" --hold "$hold" --no-build)
[ "$profile" = debug ] && guest_args+=(--debug)
"$here/uml-run.sh" --mem "$mem" --timeout "$timeout_s" --no-sctp \
    --env UML_IDLE_GUEST=1 -- "$here/uml-idle.sh" "${guest_args[@]}"
