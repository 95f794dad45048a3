#!/usr/bin/env bash
# `cargo install --path .` must install both binaries: the proxy
# (`actor-socks`) and the manager client (`actor-socks-manager`). Installs a
# debug build into a temporary root (reusing target/), runs each, cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
cargo install --path . --root "$root" --debug --locked --quiet
for bin in actor-socks actor-socks-manager; do
    test -x "$root/bin/$bin" || { echo "INSTALL: $bin missing" >&2; exit 1; }
done
"$root/bin/actor-socks" --help | grep -q -- '--supervise'
"$root/bin/actor-socks-manager" --help | grep -q 'Usage: actor-socks-manager'
"$root/bin/actor-socks-manager" --help | grep -q 'tree'
# A usage error exits 2, as documented.
set +e
"$root/bin/actor-socks-manager" --admin a:b no-such-command >/dev/null 2>&1
status=$?
set -e
test "$status" -eq 2 || { echo "INSTALL: usage error exited $status" >&2; exit 1; }
echo "INSTALL: PASS (actor-socks and actor-socks-manager)"
