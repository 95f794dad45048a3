#!/usr/bin/env bash
# The whole test suite: what the README's test command runs, and CI too.
#   1. installs missing packages (scripts/setup.sh)
#   2. cargo test: unit, property and in-process integration tests (SOCKS5,
#      BIND/UDP, manager over SCTP-over-UDP, the manager client, real clients,
#      the supervision tree); `cargo install --path .` yields both binaries
#   3. kernel SCTP in a User-Mode Linux guest: the server, the manager client,
#      an independent Python client, and the kernel_sctp transport tests
#   4. usrsctp (Debian's userspace SCTP) against our SCTP-over-UDP transport
#   5. a seconds-long smoke of every benchmark mode (moves bytes, no timing),
#      and of the password-hashing and memory benchmarks (scripts/bench-auth.sh,
#      scripts/bench-memory.sh: idle and stalled-reader connections)
#   6. 10,000 idle proxied connections held in a User-Mode Linux guest (the host's
#      open-files limit, 20,000, cannot hold them: see scripts/uml-idle.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --bins --examples
cargo test --all-targets
cargo test --doc
echo "== cargo install: both binaries"
scripts/install-check.sh
echo "== kernel SCTP in User-Mode Linux"
scripts/uml-kernel-sctp-test.sh --cargo-tests
echo "== usrsctp interop"
tests/usrsctp/run.sh
echo "== benchmark smoke"
scripts/bench-smoke.sh
scripts/bench-auth.sh --smoke --no-build
scripts/bench-memory.sh --smoke --no-build
echo "== 10,000 idle connections (User-Mode Linux guest)"
scripts/uml-idle.sh --debug --no-build
echo "all test stages passed"
