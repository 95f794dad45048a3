#!/bin/bash
# Runs INSIDE the UML guest: runs prebuilt cargo test executables (built on the host with
# `cargo test --no-run`) against the guest's kernel SCTP, from the repository root.
#   tests/uml/guest-cargo-tests.sh BIN...
# Extra arguments for every binary: KERNEL_SCTP_TEST_ARGS (split on spaces), e.g. "--nocapture".
# Prints one summary line KERNEL-SCTP-CARGO-TESTS: PASS|FAIL ...; exit 0 only if all passed.
set -u
[ $# -gt 0 ] || { echo "usage: $0 TEST_BINARY..." >&2; exit 2; }

export CARGO_MANIFEST_DIR=${CARGO_MANIFEST_DIR:-$PWD}
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
export ACTOR_SOCKS_IN_UML=1

# shellcheck disable=SC2206
extra=(${KERNEL_SCTP_TEST_ARGS:-})
failed=()
for bin in "$@"; do
    echo "---- $bin ${extra[*]} ----"
    if [ ! -x "$bin" ]; then
        echo "not an executable: $bin"
        failed+=("$(basename "$bin")")
        continue
    fi
    "$bin" "${extra[@]+"${extra[@]}"}"
    st=$?
    echo "---- $(basename "$bin"): exit $st ----"
    [ "$st" = 0 ] || failed+=("$(basename "$bin")")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "KERNEL-SCTP-CARGO-TESTS: FAIL (${failed[*]})"
    exit 1
fi
echo "KERNEL-SCTP-CARGO-TESTS: PASS ($# binaries)"
