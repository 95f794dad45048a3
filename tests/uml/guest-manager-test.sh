#!/bin/bash
# Runs INSIDE the UML guest (via scripts/uml-kernel-sctp-test.sh -> scripts/uml-run.sh), from the
# repository root. Starts the server over kernel SCTP, drives it with the Rust manager client
# example and with the independent Python client, stops it, prints one summary line:
#   KERNEL-SCTP-TEST: PASS (N checks)   or   KERNEL-SCTP-TEST: FAIL (names of failed checks)
# Exit 0 only if every check passed.
#
# Environment (set by the host script):
#   ACTOR_SOCKS_BIN          server executable (actor-socks, or tests/uml/mock_manager_server.py)
#   MANAGER_CLIENT_BIN       manager client example (target/debug/examples/manager_client)
#   MANAGER_CLIENT_REQUIRED  1: a missing client is a failure; 0: skip its checks (loudly)
#   UML_SCRATCH              writable scratch dir (uml-run.sh)
set -u

S=${UML_SCRATCH:?UML_SCRATCH unset: run me through scripts/uml-run.sh}
SERVER=${ACTOR_SOCKS_BIN:?ACTOR_SOCKS_BIN unset}
CLIENT=${MANAGER_CLIENT_BIN:-}
CLIENT_REQUIRED=${MANAGER_CLIENT_REQUIRED:-1}
ADMIN=admin:secret
READY=$S/ready
SERVER_LOG=$S/server.log

passed=0
failed=()
pass() { echo "PASS: $1${2:+: $2}"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1${2:+: $2}"; failed+=("$1"); }

finish() {
    if [ -n "${server_pid:-}" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null
    fi
    if [ ${#failed[@]} -gt 0 ]; then
        echo "---- server log (last 80 lines of $SERVER_LOG) ----"
        tail -n 80 "$SERVER_LOG" 2>/dev/null
        echo "---- end of server log ----"
        echo "KERNEL-SCTP-TEST: FAIL (${#failed[@]} failed, $passed passed: ${failed[*]})"
        exit 1
    fi
    echo "KERNEL-SCTP-TEST: PASS ($passed checks)"
    exit 0
}

# ---- start the server ----------------------------------------------------------------------
echo "guest: kernel $(uname -r), $(grep -q "^sctp " /proc/modules && echo "sctp module loaded" || echo "NO sctp module")"
rm -f "$READY"
"$SERVER" --bind 127.0.0.1:0 --manager-bind 127.0.0.1:0 --manager-transport kernel \
    --admin "$ADMIN" --ready-file "$READY" --log-level debug >"$SERVER_LOG" 2>&1 &
server_pid=$!

manager_addr=""
transport=""
for _ in $(seq 1 200); do  # up to 10 s
    if [ -f "$READY" ] && grep -q '^manager ' "$READY" && grep -q '^socks ' "$READY"; then
        read -r _ manager_addr transport < <(grep '^manager ' "$READY")
        break
    fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
done
if [ -z "$manager_addr" ]; then
    if kill -0 "$server_pid" 2>/dev/null; then
        fail server-ready "no complete ready file at $READY after 10 s"
    else
        wait "$server_pid"
        fail server-ready "server exited with status $? before writing the ready file"
    fi
    finish
fi
pass server-ready "$(tr '\n' ';' <"$READY")"
if [ "$transport" = kernel-sctp ]; then
    pass manager-transport "$transport"
else
    fail manager-transport "ready file says '$transport', want kernel-sctp"
fi

# ---- the Rust manager client example --------------------------------------------------------
out=$S/client.out
mc() { "$CLIENT" --addr "$manager_addr" --transport kernel "$@" >"$out" 2>&1; }
show() { sed 's/^/    | /' "$out"; }

if [ -z "$CLIENT" ] || [ ! -x "$CLIENT" ]; then
    if [ "$CLIENT_REQUIRED" = 1 ]; then
        fail manager-client "manager client example not found at '${CLIENT}'"
    else
        echo "!!!! SKIP: manager client example not found at '${CLIENT}': its checks did NOT run !!!!"
    fi
else
    if mc --admin "$ADMIN" add-user alice pw; then pass client-add-user; else fail client-add-user "exit $?"; fi
    show
    if mc --admin "$ADMIN" add-user alice pw; then fail client-add-user-duplicate "exit 0 for an existing user"; else pass client-add-user-duplicate "exit non-zero"; fi
    show
    if mc --admin "$ADMIN" list-users; then
        if grep -qw alice "$out"; then pass client-list-users; else fail client-list-users "alice not in output"; fi
    else
        fail client-list-users "exit $?"
    fi
    show
    if mc --admin "$ADMIN" metrics; then
        if grep -q '[0-9]' "$out"; then pass client-metrics; else fail client-metrics "no numbers in output"; fi
    else
        fail client-metrics "exit $?"
    fi
    show
    if mc --admin "$ADMIN" set-max-clients 5; then pass client-set-max-clients; else fail client-set-max-clients "exit $?"; fi
    show
    if mc --admin "$ADMIN" --json metrics; then
        if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert isinstance(d, dict), type(d)' "$out" 2>"$S/json.err"; then
            pass client-json-metrics
        else
            fail client-json-metrics "output is not a JSON object: $(tail -n 1 "$S/json.err")"
        fi
    else
        fail client-json-metrics "exit $?"
    fi
    show
    if mc --admin admin:wrong-password list-users; then fail client-wrong-password "exit 0 with a wrong password"; else pass client-wrong-password "exit non-zero"; fi
    show
fi

# ---- the independent Python client ----------------------------------------------------------
echo "---- tests/uml/sctp_manager_client.py ----"
if python3 tests/uml/sctp_manager_client.py --ready-file "$READY" --admin "$ADMIN" \
        --user pyuser:pypass --max-clients 64; then
    pass python-client
else
    fail python-client "exit $?"
fi

# ---- stop the server ------------------------------------------------------------------------
if kill -0 "$server_pid" 2>/dev/null; then
    pass server-alive "still running after all requests"
    kill -TERM "$server_pid"
    for _ in $(seq 1 120); do  # up to 12 s (the default shutdown grace is 10 s)
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        fail server-sigterm "still running 12 s after SIGTERM"
    else
        wait "$server_pid"
        st=$?
        if [ "$st" = 0 ]; then pass server-sigterm "exited 0"; else fail server-sigterm "exit status $st after SIGTERM"; fi
    fi
else
    wait "$server_pid"
    fail server-alive "server died during the test (status $?)"
fi
server_pid=""
finish
