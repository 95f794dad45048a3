#!/usr/bin/env python3
"""A tiny stand-in for actor-socks, for proving the UML test harness and the Python client.

It takes the same flags the harness passes to the real server (others are ignored):
  --bind ADDR --manager-bind ADDR --manager-transport kernel|auto --admin NAME:PASS
  --ready-file PATH --log-level LEVEL [--user NAME:PASS]... [--max-clients N] [--max-users N]
and serves
  * the manager protocol (/work/shared/manager-protocol.md) over kernel SCTP, one-to-one,
    byte-exact for auth, add user, list users, metrics and set max clients, with the
    status codes 02 03 04 05 06 07, one request per association;
  * SOCKS5 over TCP with username/password auth (RFC 1929) and CONNECT, counting the
    metrics (HIST, ACTIVE, BYTES) and enforcing max clients.
Once both listeners are bound it writes the ready file (atomically):
  socks 127.0.0.1:PORT
  manager 127.0.0.1:PORT kernel-sctp
It runs until SIGTERM/SIGINT. Not a product: no timeouts beyond a 10 s idle limit.
"""

import argparse
import hmac
import os
import signal
import socket
import struct
import sys
import threading

lock = threading.Lock()
users = {}
state = {"max_clients": 10000, "max_users": 255, "hist": 0, "active": 0, "bytes": 0}
admin = ("", "")
verbose = False


def log(*a):
    if verbose:
        print("mock:", *a, file=sys.stderr, flush=True)


def parse_addr(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def fmt_addr(sock):
    host, port = sock.getsockname()[:2]
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


# ---- manager over SCTP --------------------------------------------------------------------

def recv_msg(c):
    data, _, flags, _ = c.recvmsg(65536)
    return data


def parse_name_pass(buf, i):
    """ULEN UNAME PLEN PASSWD starting at i; returns (name, pass) or None if malformed."""
    if i >= len(buf) or buf[i] == 0 or i + 1 + buf[i] >= len(buf):
        return None
    ulen = buf[i]
    name = buf[i + 1:i + 1 + ulen]
    j = i + 1 + ulen
    plen = buf[j]
    if plen == 0 or j + 1 + plen != len(buf):
        return None
    return name, buf[j + 1:j + 1 + plen]


def handle_request(req):
    if len(req) < 2:
        return b"\x05\x00\x05"
    ver, cmd = req[0], req[1]
    err = lambda code: bytes([0x05, cmd, code])  # noqa: E731
    if ver != 0x05:
        return err(0x03)
    if cmd == 0x00:
        np = parse_name_pass(req, 2)
        if np is None:
            return err(0x05)
        name, pw = np
        with lock:
            if name in users:
                return err(0x06)
            if len(users) >= state["max_users"]:
                return err(0x07)
            users[name] = pw
        log("added user", name)
        return err(0x00)
    if cmd == 0x01:
        if len(req) != 2:
            return err(0x05)
        with lock:
            names = list(users)
        return b"\x05\x01" + bytes([len(names)]) + b"".join(bytes([len(n)]) + n for n in names)
    if cmd == 0x02:
        if len(req) != 2:
            return err(0x05)
        with lock:
            vals = (state["hist"], state["active"], state["bytes"])
        return b"\x05\x02" + b"".join(b"\x08" + struct.pack(">Q", v) for v in vals)
    if cmd == 0x03:
        if len(req) != 7 or req[2] != 0x04:
            return err(0x05)
        (n,) = struct.unpack(">I", req[3:7])
        with lock:
            state["max_clients"] = n
        log("max clients", n)
        return err(0x00)
    return err(0x04)


def manager_conn(c):
    with c:
        c.settimeout(10)
        try:
            auth = recv_msg(c)
            if len(auth) < 1 or auth[0] != 0x01:
                c.send(b"\x05\x03")
                return
            np = parse_name_pass(auth, 1)
            if np is None:
                c.send(b"\x05\x05")
                return
            ok_u = hmac.compare_digest(np[0], admin[0])
            ok_p = hmac.compare_digest(np[1], admin[1])
            if not (ok_u and ok_p):
                c.send(b"\x05\x02")
                return
            c.send(b"\x05\x00")
            req = recv_msg(c)
            if not req:
                return
            c.send(handle_request(req))
        except OSError as e:
            log("manager connection:", e)


def serve(listener, handler):
    while True:
        try:
            c, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=handler, args=(c,), daemon=True).start()


# ---- SOCKS5 over TCP ----------------------------------------------------------------------

def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed")
        buf += chunk
    return buf


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
            with lock:
                state["bytes"] += len(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def socks_conn(c):
    with lock:
        if state["active"] >= state["max_clients"]:
            log("refused client past max clients")
            c.close()
            return
        state["active"] += 1
    try:
        with c:
            c.settimeout(10)
            ver, n = recv_exact(c, 2)
            methods = recv_exact(c, n)
            if ver != 5 or 2 not in methods:
                c.sendall(b"\x05\xff")
                return
            c.sendall(b"\x05\x02")
            v, ulen = recv_exact(c, 2)
            name = recv_exact(c, ulen)
            plen = recv_exact(c, 1)[0]
            pw = recv_exact(c, plen)
            with lock:
                good = v == 1 and name in users and hmac.compare_digest(users[name], pw)
            c.sendall(b"\x01\x00" if good else b"\x01\x01")
            if not good:
                return
            ver, cmd, _, atyp = recv_exact(c, 4)
            if atyp == 1:
                host = socket.inet_ntoa(recv_exact(c, 4))
            elif atyp == 4:
                host = socket.inet_ntop(socket.AF_INET6, recv_exact(c, 16))
            elif atyp == 3:
                host = recv_exact(c, recv_exact(c, 1)[0]).decode()
            else:
                c.sendall(b"\x05\x08\x00\x01" + b"\x00" * 6)
                return
            (port,) = struct.unpack(">H", recv_exact(c, 2))
            if cmd != 1:
                c.sendall(b"\x05\x07\x00\x01" + b"\x00" * 6)
                return
            try:
                t = socket.create_connection((host, port), timeout=10)
            except OSError:
                c.sendall(b"\x05\x05\x00\x01" + b"\x00" * 6)
                return
            with t:
                bhost, bport = t.getsockname()[:2]
                c.sendall(b"\x05\x00\x00\x01" + socket.inet_aton(bhost) + struct.pack(">H", bport))
                with lock:
                    state["hist"] += 1
                c.settimeout(None)
                t.settimeout(None)
                up = threading.Thread(target=pump, args=(c, t), daemon=True)
                up.start()
                pump(t, c)
                up.join()
    except (OSError, ValueError) as e:
        log("socks connection:", e)
    finally:
        with lock:
            state["active"] -= 1


def main():
    global admin, verbose
    ap = argparse.ArgumentParser(description="mock actor-socks for the UML harness")
    ap.add_argument("--bind", default="127.0.0.1:0")
    ap.add_argument("--manager-bind", default="127.0.0.1:0")
    ap.add_argument("--manager-transport", default="kernel")
    ap.add_argument("--admin", default=os.environ.get("ACTOR_SOCKS_ADMIN"))
    ap.add_argument("--ready-file")
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--user", action="append", default=[])
    ap.add_argument("--max-clients", type=int, default=10000)
    ap.add_argument("--max-users", type=int, default=255)
    args, unknown = ap.parse_known_args()
    verbose = args.log_level in ("debug", "trace")
    if unknown:
        log("ignoring flags", unknown)
    if args.manager_transport not in ("kernel", "auto"):
        print("mock: only kernel SCTP is mocked, not %r" % args.manager_transport, file=sys.stderr)
        return 2
    if not args.admin or ":" not in args.admin:
        print("mock: --admin NAME:PASS is required", file=sys.stderr)
        return 2
    a_user, _, a_pass = args.admin.partition(":")
    admin = (a_user.encode(), a_pass.encode())
    for u in args.user:
        n, _, p = u.partition(":")
        users[n.encode()] = p.encode()
    state["max_clients"] = args.max_clients
    state["max_users"] = args.max_users

    socks = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    socks.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    socks.bind(parse_addr(args.bind))
    socks.listen(64)
    mgr = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    mgr.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    mgr.bind(parse_addr(args.manager_bind))
    mgr.listen(16)
    threading.Thread(target=serve, args=(socks, socks_conn), daemon=True).start()
    threading.Thread(target=serve, args=(mgr, manager_conn), daemon=True).start()

    lines = "socks %s\nmanager %s kernel-sctp\n" % (fmt_addr(socks), fmt_addr(mgr))
    print("mock: listening:", lines.replace("\n", "; "), file=sys.stderr, flush=True)
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(lines)
        os.rename(tmp, args.ready_file)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(1):
        pass
    print("mock: stopping", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
