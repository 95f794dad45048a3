#!/usr/bin/env bash
# End-to-end test of the manager over real kernel SCTP, inside a User-Mode Linux guest.
#
#   scripts/uml-kernel-sctp-test.sh [--cargo-tests] [--no-build] [--mem 256M] [--timeout SECS] [--live]
#
# 1. On the host: cargo build --bins --examples (skipped with --no-build).
# 2. In a guest (scripts/uml-run.sh): tests/uml/guest-manager-test.sh starts the server with
#    --manager-transport kernel on 127.0.0.1:0, drives it with the manager_client example and
#    with tests/uml/sctp_manager_client.py, stops it, prints KERNEL-SCTP-TEST: PASS|FAIL.
# 3. With --cargo-tests: on the host `cargo test --no-run --test kernel_sctp`, then in a second
#    guest the built test executables (tests/uml/guest-cargo-tests.sh). Skipped, with a notice,
#    when there is no tests/kernel_sctp.rs and no executable was named.
#
# Environment:
#   ACTOR_SOCKS_BIN        server to test (default: <target>/debug/actor-socks). When set (e.g.
#                          to tests/uml/mock_manager_server.py) a missing manager client example
#                          is skipped loudly instead of failing.
#   MANAGER_CLIENT_BIN     manager client (default: <target>/debug/examples/manager_client);
#                          setting it makes it required.
#   KERNEL_SCTP_TEST_BINS  space-separated test executables for --cargo-tests (no cargo build)
#   KERNEL_SCTP_TEST_ARGS  extra arguments for each test executable (e.g. --nocapture)
#   CARGO                  cargo command (default: cargo)
# Exit status: 0 when every part passed; non-zero otherwise (1 test failures, 2 usage,
# 3 build/missing binaries, or uml-run.sh's 96/97/98 when the guest itself failed).
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo" || exit 2

cargo_tests=0
build=1
mem=256M
timeout_s=120
live=()
while [ $# -gt 0 ]; do
    case "$1" in
        --cargo-tests) cargo_tests=1; shift ;;
        --no-build) build=0; shift ;;
        --mem) mem=$2; shift 2 ;;
        --timeout) timeout_s=$2; shift 2 ;;
        --live) live=(--live); shift ;;
        -h|--help) sed -n '2,/^set -u/p' "$0" | sed -e '/^set -u/d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "uml-kernel-sctp-test: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

CARGO=${CARGO:-cargo}
t0=$(date +%s)
say() { echo "==> uml-kernel-sctp-test: $*" >&2; }
die() { echo "==> uml-kernel-sctp-test: FAIL: $*" >&2; exit "${2:-3}"; }

target_dir=$("$CARGO" metadata --format-version 1 --no-deps 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null)
[ -n "$target_dir" ] || target_dir=${CARGO_TARGET_DIR:-$repo/target}

if [ "$build" = 1 ]; then
    say "cargo build --bins --examples"
    "$CARGO" build --bins --examples || die "cargo build --bins --examples failed"
fi

# ---- what to run --------------------------------------------------------------------------
client_required=1
if [ -n "${ACTOR_SOCKS_BIN:-}" ]; then
    server=$ACTOR_SOCKS_BIN
    [ -n "${MANAGER_CLIENT_BIN:-}" ] || client_required=0
else
    server=$target_dir/debug/actor-socks
fi
client=${MANAGER_CLIENT_BIN:-$target_dir/debug/examples/manager_client}
case "$server" in /*) ;; *) server=$repo/$server ;; esac
case "$client" in /*) ;; *) client=$repo/$client ;; esac

[ -x "$server" ] || die "server binary missing or not executable: $server"
if [ ! -x "$client" ]; then
    if [ "$client_required" = 1 ]; then
        die "manager client example missing: $client (cargo build --examples; or set ACTOR_SOCKS_BIN to test a stand-in server)"
    fi
    say "WARNING: manager client example missing ($client): its checks will be SKIPPED (ACTOR_SOCKS_BIN is set)"
fi

# python3 may be a pyenv shim: ~2 s per start inside the guest. Put the real interpreter's
# directory first on the guest's PATH (also serves the scripts' #!/usr/bin/env python3).
pyexe=$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))' 2>/dev/null) ||
    die "python3 not found"
pybin=$(mktemp -d "${TMPDIR:-/tmp}/uml-python.XXXXXX") || die "mktemp failed"
trap 'rm -rf -- "$pybin"' EXIT
ln -s "$pyexe" "$pybin/python3"
guest_path=$pybin:$PATH

# ---- the manager test in a guest --------------------------------------------------------------
say "server: $server"
say "booting the guest for the manager test (mem=$mem, timeout ${timeout_s}s)"
"$here/uml-run.sh" --mem "$mem" --timeout "$timeout_s" "${live[@]+"${live[@]}"}" \
    --env ACTOR_SOCKS_BIN="$server" --env MANAGER_CLIENT_BIN="$client" \
    --env MANAGER_CLIENT_REQUIRED="$client_required" --env PATH="$guest_path" \
    -- bash tests/uml/guest-manager-test.sh
manager_status=$?
[ "$manager_status" = 0 ] && say "manager test: PASS" || say "manager test: FAIL (status $manager_status)"

# ---- cargo tests in a guest -----------------------------------------------------------------
cargo_status=0
if [ "$cargo_tests" = 1 ]; then
    bins=()
    if [ -n "${KERNEL_SCTP_TEST_BINS:-}" ]; then
        # shellcheck disable=SC2206
        bins=(${KERNEL_SCTP_TEST_BINS})
    elif [ -f tests/kernel_sctp.rs ]; then
        say "cargo test --no-run --test kernel_sctp"
        json=$(mktemp)
        if "$CARGO" test --no-run --test kernel_sctp --message-format=json >"$json"; then
            mapfile -t bins < <(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m.get("profile", {}).get("test"):
        print(m["executable"])' "$json")
        else
            cargo_status=3
            say "FAIL: cargo test --no-run --test kernel_sctp failed"
        fi
        rm -f "$json"
    else
        for f in "$target_dir"/debug/deps/kernel_sctp-*; do
            [ -f "$f" ] && [ -x "$f" ] && [[ $(basename "$f") != *.* ]] && bins+=("$f")
        done
    fi
    if [ "$cargo_status" = 0 ] && [ ${#bins[@]} -eq 0 ]; then
        say "SKIP: no kernel SCTP cargo tests (no tests/kernel_sctp.rs, no $target_dir/debug/deps/kernel_sctp-*, KERNEL_SCTP_TEST_BINS unset)"
    elif [ "$cargo_status" = 0 ]; then
        mkdir -p "$target_dir/tmp"
        say "booting the guest for ${#bins[@]} test executable(s): ${bins[*]}"
        "$here/uml-run.sh" --mem "$mem" --timeout $((timeout_s * 3)) "${live[@]+"${live[@]}"}" \
            --rw "$target_dir/tmp" \
            --env KERNEL_SCTP_TEST_ARGS="${KERNEL_SCTP_TEST_ARGS:-}" --env PATH="$guest_path" \
            -- bash tests/uml/guest-cargo-tests.sh "${bins[@]}"
        cargo_status=$?
        [ "$cargo_status" = 0 ] && say "cargo tests: PASS" || say "cargo tests: FAIL (status $cargo_status)"
    fi
fi

elapsed=$(( $(date +%s) - t0 ))
if [ "$manager_status" != 0 ]; then
    say "RESULT: FAIL (manager test status $manager_status, cargo tests status $cargo_status) after ${elapsed}s"
    exit "$manager_status"
fi
if [ "$cargo_status" != 0 ]; then
    say "RESULT: FAIL (cargo tests status $cargo_status) after ${elapsed}s"
    exit "$cargo_status"
fi
say "RESULT: PASS after ${elapsed}s"
