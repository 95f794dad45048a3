#!/usr/bin/env python3
"""Independent manager-protocol client: speaks the spec's bytes by hand over kernel SCTP.

Needs a kernel with SCTP (run it inside the UML guest: scripts/uml-run.sh). Against a running
server (actor-socks, or tests/uml/mock_manager_server.py) with admin credentials it checks:

  auth-wrong-password   01 ULEN admin PLEN wrong      -> 05 02, then the server closes
  auth-socks-user       a SOCKS user is not an admin  -> 05 02
  add-user              05 00 ULEN UNAME PLEN PASSWD  -> 05 00 00
  add-user-duplicate    the same again                -> 05 00 06
  list-users            05 01                         -> 05 01 LLEN (ULEN UNAME)*, has the user
  list-trailing-byte    05 01 00                      -> 05 01 05
  socks-connect         RFC 1928/1929 over TCP with the new user to a local echo server
  socks-wrong-password  RFC 1929 with a bad password  -> 01 <non-zero>
  metrics               05 02 -> 05 02 08 <u64> 08 <u64> 08 <u64>; HIST >= 1, BYTES >= echoed
  set-max-clients       05 03 04 <u32 BE>             -> 05 03 00
  set-max-clients-slen  05 03 02 <2 bytes>            -> 05 03 05

Every request is one send() on a one-to-one (SOCK_STREAM) SCTP socket, so one SCTP message.
Replies are read with recvmsg() and must come as one whole message (MSG_EOR set).
Prints a PASS/FAIL line per check; exits 1 if any check failed, 2 on bad usage/setup.

Addresses come from --manager/--socks, or from --ready-file PATH (lines `socks ADDR` and
`manager ADDR TRANSPORT`, waited for up to --ready-timeout seconds).
"""

import argparse
import os
import socket
import struct
import sys
import threading
import time

TIMEOUT = 5.0
failures = []
passes = []


def report(ok, name, detail=""):
    line = ("PASS" if ok else "FAIL") + ": " + name + (": " + detail if detail else "")
    print(line, flush=True)
    (passes if ok else failures).append(name)
    return ok


def hx(b):
    return b.hex(" ") if b else "(nothing)"


def parse_addr(text):
    text = text.strip()
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("bad address %r (want HOST:PORT)" % text)
    return host, int(port)


def read_ready_file(path, wait_s):
    """Wait for `socks ADDR` and `manager ADDR TRANSPORT` lines; return (socks, manager, transport)."""
    deadline = time.monotonic() + wait_s
    last = ""
    while True:
        try:
            with open(path) as f:
                last = f.read()
        except FileNotFoundError:
            last = ""
        socks = manager = transport = None
        for line in last.splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "socks":
                socks = words[1]
            elif len(words) >= 2 and words[0] == "manager":
                manager = words[1]
                transport = words[2] if len(words) >= 3 else None
        if socks and manager:
            return socks, manager, transport
        if time.monotonic() >= deadline:
            raise TimeoutError("ready file %s incomplete after %ss: %r" % (path, wait_s, last))
        time.sleep(0.05)


# ---- SCTP helpers -------------------------------------------------------------------------

def sctp_connect(addr):
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    s.settimeout(TIMEOUT)
    s.connect(addr)
    return s


def send_msg(s, data):
    """One send() of the whole buffer: one SCTP user message."""
    n = s.send(data)
    if n != len(data):
        raise OSError("short send of an SCTP message: %d of %d bytes" % (n, len(data)))


def recv_msg(s):
    """Read one whole SCTP message. Returns bytes (b'' at close). Raises on a split message."""
    data, _, flags, _ = s.recvmsg(65536)
    if data and not flags & socket.MSG_EOR:
        raise OSError("reply is not one whole SCTP message (no MSG_EOR after %s)" % hx(data))
    return data


def expect_closed(s):
    """True when the server closed the association (orderly or by abort) within TIMEOUT."""
    try:
        data = s.recv(65536)
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
        return True, "aborted"
    except socket.timeout:
        return False, "still open after %.0fs" % TIMEOUT
    if data == b"":
        return True, "closed"
    return False, "unexpected extra message %s" % hx(data)


def auth_msg(user, password):
    u, p = user.encode(), password.encode()
    return bytes([0x01, len(u)]) + u + bytes([len(p)]) + p


def request(manager, admin_user, admin_pass, req):
    """Authenticate, send one request, return (auth_reply, reply, closed_after)."""
    s = sctp_connect(manager)
    try:
        send_msg(s, auth_msg(admin_user, admin_pass))
        auth = recv_msg(s)
        if auth != b"\x05\x00":
            return auth, None, None
        send_msg(s, req)
        reply = recv_msg(s)
        closed, _ = expect_closed(s)
        return auth, reply, closed
    finally:
        s.close()


def check(name, fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - every failure is a FAIL line, never a traceback
        report(False, name, "%s: %s" % (type(e).__name__, e))


# ---- the checks ---------------------------------------------------------------------------

def check_wrong_password(manager, admin_user):
    s = sctp_connect(manager)
    try:
        send_msg(s, auth_msg(admin_user, "definitely-not-the-password"))
        reply = recv_msg(s)
        report(reply == b"\x05\x02", "auth-wrong-password", "reply %s (want 05 02)" % hx(reply))
        closed, how = expect_closed(s)
        report(closed, "auth-wrong-password-closes", how)
    finally:
        s.close()


def check_socks_user_not_admin(manager, user, password):
    s = sctp_connect(manager)
    try:
        send_msg(s, auth_msg(user, password))
        reply = recv_msg(s)
        report(reply == b"\x05\x02", "auth-socks-user-is-not-admin", "reply %s (want 05 02)" % hx(reply))
    finally:
        s.close()


def check_add_user(manager, au, ap, user, password):
    u, p = user.encode(), password.encode()
    req = bytes([0x05, 0x00, len(u)]) + u + bytes([len(p)]) + p
    auth, reply, closed = request(manager, au, ap, req)
    if not report(auth == b"\x05\x00", "auth-ok", "reply %s (want 05 00)" % hx(auth)):
        return False
    ok = report(reply == b"\x05\x00\x00", "add-user", "%s -> %s (want 05 00 00)" % (hx(req), hx(reply)))
    report(bool(closed), "add-user-then-close", "server closed the association" if closed else "still open")
    auth, reply, _ = request(manager, au, ap, req)
    report(reply == b"\x05\x00\x06", "add-user-duplicate", "reply %s (want 05 00 06)" % hx(reply))
    return ok


def check_list(manager, au, ap, user):
    auth, reply, closed = request(manager, au, ap, b"\x05\x01")
    if reply is None:
        report(False, "list-users", "auth reply %s" % hx(auth))
        return
    if len(reply) < 3 or reply[:2] != b"\x05\x01":
        report(False, "list-users", "reply %s (want 05 01 LLEN ...)" % hx(reply))
        return
    count, names, i = reply[2], [], 3
    try:
        for _ in range(count):
            n = reply[i]
            if n == 0 or i + 1 + n > len(reply):
                raise ValueError("bad ULEN %d at offset %d" % (n, i))
            names.append(reply[i + 1:i + 1 + n].decode())
            i += 1 + n
        if i != len(reply):
            raise ValueError("%d trailing bytes" % (len(reply) - i))
    except (ValueError, IndexError, UnicodeDecodeError) as e:
        report(False, "list-users", "malformed list %s: %s" % (hx(reply), e))
        return
    report(user in names, "list-users", "LLEN=%d users=%s (want %r among them)" % (count, names, user))
    report(bool(closed), "list-users-then-close", "server closed" if closed else "still open")
    _, reply, _ = request(manager, au, ap, b"\x05\x01\x00")
    report(reply == b"\x05\x01\x05", "list-trailing-byte", "05 01 00 -> %s (want 05 01 05)" % hx(reply))


def get_metrics(manager, au, ap):
    auth, reply, _ = request(manager, au, ap, b"\x05\x02")
    if reply is None:
        raise ValueError("auth reply %s" % hx(auth))
    if len(reply) != 29 or reply[:2] != b"\x05\x02" or reply[2] != 8 or reply[11] != 8 or reply[20] != 8:
        raise ValueError("reply %s (want 05 02 08 <8> 08 <8> 08 <8>)" % hx(reply))
    hist, active, nbytes = (struct.unpack(">Q", reply[o:o + 8])[0] for o in (3, 12, 21))
    return hist, active, nbytes, reply


def check_metrics(manager, au, ap, min_hist, min_bytes):
    # Bytes of a finished session may take up to a second to be counted: retry briefly.
    deadline = time.monotonic() + 3.0
    while True:
        hist, active, nbytes, reply = get_metrics(manager, au, ap)
        if (hist >= min_hist and nbytes >= min_bytes) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    report(True, "metrics-format", hx(reply))
    report(hist >= min_hist and nbytes >= min_bytes, "metrics-values",
           "HIST=%d ACTIVE=%d BYTES=%d (want HIST>=%d BYTES>=%d)" % (hist, active, nbytes, min_hist, min_bytes))


def check_set_max_clients(manager, au, ap, value):
    req = b"\x05\x03\x04" + struct.pack(">I", value)
    auth, reply, _ = request(manager, au, ap, req)
    got = hx(reply) if reply is not None else "auth reply " + hx(auth)
    report(reply == b"\x05\x03\x00", "set-max-clients", "%s -> %s (want 05 03 00)" % (hx(req), got))
    req = b"\x05\x03\x02\x00\x05"
    auth, reply, _ = request(manager, au, ap, req)
    got = hx(reply) if reply is not None else "auth reply " + hx(auth)
    report(reply == b"\x05\x03\x05", "set-max-clients-slen", "%s -> %s (want 05 03 05)" % (hx(req), got))


# ---- SOCKS5 over TCP ----------------------------------------------------------------------

def start_echo_server():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve(c):
        with c:
            while True:
                data = c.recv(65536)
                if not data:
                    return
                c.sendall(data)

    def accept_loop():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    return srv


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed after %s (wanted %d bytes)" % (hx(buf), n))
        buf += chunk
    return buf


def socks_auth(socks, user, password):
    s = socket.create_connection(socks, timeout=TIMEOUT)
    s.sendall(b"\x05\x01\x02")  # one method: username/password
    rep = recv_exact(s, 2)
    if rep != b"\x05\x02":
        s.close()
        raise ValueError("method reply %s (want 05 02)" % hx(rep))
    u, p = user.encode(), password.encode()
    s.sendall(bytes([0x01, len(u)]) + u + bytes([len(p)]) + p)
    return s, recv_exact(s, 2)


def check_socks(socks, echo_addr, user, password):
    """Returns the number of payload bytes relayed (both directions) on success, else 0."""
    s, rep = socks_auth(socks, user, password)
    with s:
        if not report(rep == b"\x01\x00", "socks-auth", "RFC 1929 reply %s (want 01 00)" % hx(rep)):
            return 0
        ip, port = echo_addr
        s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(ip) + struct.pack(">H", port))
        head = recv_exact(s, 4)
        if head[:3] != b"\x05\x00\x00":
            report(False, "socks-connect", "reply %s (want 05 00 00 ...)" % hx(head))
            return 0
        atyp = head[3]
        rest = {1: 6, 4: 18}.get(atyp)
        if rest is None:
            rest = recv_exact(s, 1)[0] + 2 if atyp == 3 else None
        if rest is None:
            report(False, "socks-connect", "bad ATYP in reply %s" % hx(head))
            return 0
        recv_exact(s, rest)
        payload = b"hello over socks via kernel-sctp harness\n" * 10
        s.sendall(payload)
        echoed = recv_exact(s, len(payload))
        report(echoed == payload, "socks-connect", "CONNECT %s:%d as %r, %d bytes echoed" % (ip, port, user, len(echoed)))
    s, rep = socks_auth(socks, user, password + "-wrong")
    with s:
        report(len(rep) == 2 and rep[0] == 0x01 and rep[1] != 0, "socks-wrong-password",
               "RFC 1929 reply %s (want 01 <non-zero>)" % hx(rep))
    return 2 * len(payload)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ready-file", help="read `socks ADDR` / `manager ADDR TRANSPORT` from here")
    ap.add_argument("--ready-timeout", type=float, default=10.0)
    ap.add_argument("--manager", help="manager HOST:PORT (instead of --ready-file)")
    ap.add_argument("--socks", help="SOCKS5 HOST:PORT (instead of --ready-file)")
    ap.add_argument("--admin", default="admin:secret", help="NAME:PASS (default admin:secret)")
    ap.add_argument("--user", default="pyuser:pypass", help="SOCKS user to add, NAME:PASS")
    ap.add_argument("--max-clients", type=int, default=64, help="value for set-max-clients")
    ap.add_argument("--skip-socks", action="store_true", help="no SOCKS5 check")
    args = ap.parse_args()

    try:
        socks = manager = None
        if args.ready_file:
            s_txt, m_txt, transport = read_ready_file(args.ready_file, args.ready_timeout)
            print("ready file: socks %s, manager %s (%s)" % (s_txt, m_txt, transport), flush=True)
            socks, manager = parse_addr(s_txt), parse_addr(m_txt)
        if args.manager:
            manager = parse_addr(args.manager)
        if args.socks:
            socks = parse_addr(args.socks)
        if manager is None or (socks is None and not args.skip_socks):
            ap.error("need --ready-file, or --manager (and --socks unless --skip-socks)")
        au, _, apw = args.admin.partition(":")
        user, _, password = args.user.partition(":")
        if not (au and apw and user and password):
            ap.error("--admin and --user want NAME:PASS")
    except (ValueError, TimeoutError) as e:
        print("sctp_manager_client: setup: %s" % e, file=sys.stderr)
        return 2

    check("auth-wrong-password", lambda: check_wrong_password(manager, au))
    added = [False]
    check("add-user", lambda: added.__setitem__(0, check_add_user(manager, au, apw, user, password)))
    check("auth-socks-user-is-not-admin", lambda: check_socks_user_not_admin(manager, user, password))
    check("list-users", lambda: check_list(manager, au, apw, user))
    relayed = [0]
    if not args.skip_socks:
        echo = start_echo_server()
        check("socks-connect", lambda: relayed.__setitem__(0, check_socks(socks, echo.getsockname(), user, password)))
        echo.close()
    min_hist = 1 if relayed[0] else 0
    check("metrics", lambda: check_metrics(manager, au, apw, min_hist, relayed[0]))
    check("set-max-clients", lambda: check_set_max_clients(manager, au, apw, args.max_clients))

    print("sctp_manager_client: %d passed, %d failed%s" % (
        len(passes), len(failures), (" (" + ", ".join(failures) + ")") if failures else ""), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
