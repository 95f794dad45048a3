#!/usr/bin/env python3
"""A stand-in for the manager_client example, to exercise tests/uml/guest-manager-test.sh
before the real one exists (MANAGER_CLIENT_BIN=tests/uml/mock_manager_client.py).

  mock_manager_client.py --addr HOST:PORT --transport kernel --admin NAME:PASS [--json] CMD...
  CMD: add-user NAME PASS | list-users | metrics | set-max-clients N

Exit 0 on a success reply, 1 on an error reply or a transport failure.
"""

import argparse
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sctp_manager_client as m  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--transport", default="kernel")
    ap.add_argument("--admin", required=True)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("cmd", nargs="+")
    a = ap.parse_args()
    if a.transport != "kernel":
        print("mock client: only --transport kernel", file=sys.stderr)
        return 2
    au, _, apw = a.admin.partition(":")
    cmd = a.cmd[0]
    if cmd == "add-user" and len(a.cmd) == 3:
        u, p = a.cmd[1].encode(), a.cmd[2].encode()
        req = bytes([5, 0, len(u)]) + u + bytes([len(p)]) + p
    elif cmd == "list-users" and len(a.cmd) == 1:
        req = b"\x05\x01"
    elif cmd == "metrics" and len(a.cmd) == 1:
        req = b"\x05\x02"
    elif cmd == "set-max-clients" and len(a.cmd) == 2:
        req = b"\x05\x03\x04" + struct.pack(">I", int(a.cmd[1]))
    else:
        print("mock client: bad command %r" % a.cmd, file=sys.stderr)
        return 2
    try:
        auth, reply, _ = m.request(m.parse_addr(a.addr), au, apw, req)
    except OSError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    if reply is None:
        print("error: authentication failed (reply %s)" % m.hx(auth), file=sys.stderr)
        return 1
    if cmd == "list-users" and len(reply) >= 3 and reply[2:] != b"\x05":
        names, i = [], 3
        for _ in range(reply[2]):
            names.append(reply[i + 1:i + 1 + reply[i]].decode())
            i += 1 + reply[i]
        print(json.dumps({"users": names}) if a.json else "\n".join(names))
        return 0
    if cmd == "metrics" and len(reply) == 29:
        h, ac, b = (struct.unpack(">Q", reply[o:o + 8])[0] for o in (3, 12, 21))
        if a.json:
            print(json.dumps({"historic_connections": h, "active_connections": ac, "bytes_transferred": b}))
        else:
            print("historic connections: %d\nactive connections: %d\nbytes transferred: %d" % (h, ac, b))
        return 0
    if len(reply) == 3 and reply[2] == 0:
        print("ok")
        return 0
    print("error: reply %s" % m.hx(reply), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
