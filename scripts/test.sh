#!/usr/bin/env bash
# The whole test suite: what the README's test command runs, and CI too.
#   1. installs missing packages (scripts/setup.sh)
#   2. cargo test (unit, property and in-process integration tests)
#   3. the parts that need more than cargo: see each script
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --bins --examples
cargo test --all-targets
cargo test --doc
for extra in scripts/uml-kernel-sctp-test.sh tests/usrsctp/run.sh scripts/bench-smoke.sh; do
    if [[ -x $extra ]]; then
        echo "== $extra"
        "$extra"
    fi
done
echo "all test stages passed"
