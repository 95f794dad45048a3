#!/usr/bin/env bash
# Installs what building and testing actor-socks needs on Debian/Ubuntu, only
# what is missing. Safe to run again. Uses sudo when not root.
#   libsctp-dev      tokio-sctp links libsctp (kernel SCTP for the manager)
#   curl             a real SOCKS client in the tests
#   user-mode-linux  kernel SCTP tests run in a UML guest (this kernel may lack SCTP)
#   kmod             modprobe inside that guest
#   python3          independent manager client and PySocks UDP client in tests
#   python3-socks    PySocks
#   libusrsctp-dev   usrsctp interop test of the SCTP-over-UDP transport
#   iproute2         `ip` inside the UML guest
#   gcc              cargo links with it; the UML register-state shim is built with it
#   prometheus       a real Prometheus scrapes --metrics-bind in the tests (and promtool)
set -euo pipefail
pkgs=(gcc g++ pkg-config libsctp-dev curl user-mode-linux kmod python3 python3-socks libusrsctp-dev iproute2 procps prometheus)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    echo "setup: installing ${missing[*]}" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# PySocks for whichever python3 is first on PATH (it may not be Debian's).
if ! python3 -c 'import socks' 2>/dev/null; then
    python3 -m pip install --quiet PySocks 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages PySocks
fi
if command -v rustup >/dev/null; then
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
fi
