//! The `actor-socks` binary: flags, ready file, users file (and its reload
//! on SIGHUP), JSON logs, graceful shutdown on signals.

mod common;

use common::process::*;
use common::*;
use std::process::Command;
use std::time::Duration;
use tokio::net::TcpStream;

#[tokio::test]
async fn users_file_and_json_log() {
    let dir = scratch("users");
    let users = dir.join("users");
    std::fs::write(&users, "# test users\nerin:file-pass\n").unwrap();
    let (mut child, proxy) = spawn(
        &dir,
        &[
            "--users-file",
            users.to_str().unwrap(),
            "--log-format",
            "json",
        ],
    )
    .await;
    let echo = echo_server("127.0.0.1:0").await;
    let (mut s, rep, _) = request(proxy, Some(("erin", "file-pass")), &connect_ip(echo)).await;
    assert_eq!(rep, 0);
    echo_round_trip(&mut s, b"from file").await;
    drop(s);
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&child, "-TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)).await,
        Some(0)
    );
    let log = std::fs::read_to_string(dir.join("log")).unwrap();
    let session_line = log
        .lines()
        .find(|l| l.contains("\"msg\":\"session\""))
        .unwrap_or_else(|| panic!("no session record in {log}"));
    assert!(session_line.contains("\"user\":\"erin\""), "{session_line}");
    assert!(
        session_line.contains("\"reply\":\"0x00\""),
        "{session_line}"
    );
    assert!(!log.contains("file-pass"), "a password reached the log");
}

/// Whether `user`/`pass` authenticates (RFC 1929 status 0).
async fn authenticates(proxy: std::net::SocketAddr, user: &str, pass: &str) -> bool {
    use tokio::io::AsyncWriteExt;
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(&[0x05, 0x01, 0x02]).await.unwrap();
    assert_eq!(read_n(&mut s, 2).await, [0x05, 0x02]);
    s.write_all(&auth_bytes(user, pass)).await.unwrap();
    read_n(&mut s, 2).await[1] == 0x00
}

#[tokio::test]
async fn sighup_reloads_the_users_file() {
    let dir = scratch("reload");
    let users = dir.join("users");
    std::fs::write(&users, "erin:old-pass\n").unwrap();
    let (mut child, proxy) = spawn(&dir, &["--users-file", users.to_str().unwrap()]).await;
    let echo = echo_server("127.0.0.1:0").await;
    let (mut session, rep, _) = request(proxy, Some(("erin", "old-pass")), &connect_ip(echo)).await;
    assert_eq!(rep, 0x00);

    // Edited by hand: erin gone, finn new.
    std::fs::write(&users, "# edited\nfinn:new-pass\n").unwrap();
    signal(&child, "-HUP");
    eventually("finn added by the reload", || {
        authenticates(proxy, "finn", "new-pass")
    })
    .await;
    assert!(
        !authenticates(proxy, "erin", "old-pass").await,
        "erin was removed"
    );
    // A session authenticated before the reload goes on.
    echo_round_trip(&mut session, b"still relaying").await;

    // A broken file changes nothing.
    std::fs::write(&users, "finn:new-pass\nbroken line\n").unwrap();
    signal(&child, "-HUP");
    let log_path = dir.join("log");
    eventually("the failed reload logged", || async {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("users unchanged")
    })
    .await;
    assert!(authenticates(proxy, "finn", "new-pass").await);

    drop(session);
    signal(&child, "-TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)).await,
        Some(0)
    );
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("users file reloaded"), "{log}");
    assert!(
        !log.contains("old-pass") && !log.contains("new-pass"),
        "a password reached the log"
    );
}

/// `contrib/actor-socks.service`: systemd finds nothing to complain about
/// (with the unit pointed at the built binary), and the binary starts with
/// its `ExecStart` flags (listening on loopback port 0 instead of
/// 0.0.0.0:1080, the state directory a scratch one).
#[tokio::test]
async fn contrib_systemd_unit_is_valid_and_its_flags_start_the_proxy() {
    let unit_path = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/actor-socks.service");
    let unit = std::fs::read_to_string(unit_path).unwrap();
    let dir = scratch("systemd");
    let bin = env!("CARGO_BIN_EXE_actor-socks");
    if let Ok(out) = Command::new("systemd-analyze")
        .arg("verify")
        .arg({
            let p = dir.join("actor-socks.service");
            std::fs::write(&p, unit.replace("/usr/local/bin/actor-socks", bin)).unwrap();
            p
        })
        .output()
    {
        let said = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.trim().is_empty(),
            "systemd-analyze: {said}"
        );
    }
    // ExecStart, continuation lines joined.
    let exec = unit
        .replace("\\\n", " ")
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap()
        .to_string();
    let state = dir.to_str().unwrap();
    let args: Vec<String> = exec
        .split_whitespace()
        .skip(1)
        .map(|a| {
            a.replace("${STATE_DIRECTORY}", state).replace(
                "/etc/actor-socks/actor-socks.toml",
                concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/actor-socks.toml"),
            )
        })
        .collect();
    assert!(args.contains(&"--users-file".to_string()), "{args:?}");
    assert!(args.contains(&"--config".to_string()), "{args:?}");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // A users file with a hashed user, as an operator would write one.
    let hash = Command::new(bin)
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"svc-pass\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(hash.status.success());
    let hash = String::from_utf8(hash.stdout).unwrap();
    std::fs::write(dir.join("users"), format!("svc:{}", hash.trim())).unwrap();
    // spawn() adds its own --bind 127.0.0.1:0, which replaces the config
    // file's 0.0.0.0:1080 (the command line wins).
    let (mut child, proxy) = spawn(&dir, &args).await;
    let echo = echo_server("127.0.0.1:0").await;
    let (_s, rep, _) = request(proxy, Some(("svc", "svc-pass")), &connect_ip(echo)).await;
    assert_eq!(rep, 0x02, "the unit denies loopback targets");
    signal(&child, "-TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)).await,
        Some(0)
    );
}

#[tokio::test]
async fn bad_flags_fail_clearly() {
    let out = Command::new(env!("CARGO_BIN_EXE_actor-socks"))
        .args(["--user", "nocolon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME:PASS"));
    let out = Command::new(env!("CARGO_BIN_EXE_actor-socks"))
        .args(["--deny-target", "10.0.0.0/33"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--deny-target") && err.contains("10.0.0.0/8"),
        "{err}"
    );
    let dir = scratch("badfile");
    let users = dir.join("users");
    std::fs::write(&users, "good:1\nbroken line\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_actor-socks"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--users-file",
            users.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
}

#[tokio::test]
async fn sigterm_drains_open_sessions_then_exits() {
    let dir = scratch("drain");
    let (mut child, proxy) = spawn(&dir, &["--grace-period", "20s"]).await;
    let echo = echo_server("127.0.0.1:0").await;
    let (mut s, rep, _) = request(proxy, None, &connect_ip(echo)).await;
    assert_eq!(rep, 0);
    signal(&child, "-TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No longer accepting...
    assert!(
        TcpStream::connect(proxy).await.is_err(),
        "still accepting after SIGTERM"
    );
    // ...but the open session still works.
    echo_round_trip(&mut s, b"still here").await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited with a session open"
    );
    drop(s);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)).await,
        Some(0)
    );
}

#[tokio::test]
async fn grace_period_ends_and_second_signal_exits_at_once() {
    let dir = scratch("grace");
    let (mut child, proxy) = spawn(&dir, &["--grace-period", "500ms"]).await;
    let echo = echo_server("127.0.0.1:0").await;
    let (mut s, _, _) = request(proxy, None, &connect_ip(echo)).await;
    echo_round_trip(&mut s, b"before the signal").await;
    signal(&child, "-TERM");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)).await, Some(0));
    // Cut at the end of the grace period: a reset, not a clean close that
    // would make a cut transfer look complete.
    use tokio::io::AsyncReadExt;
    let mut b = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await;
    assert!(
        matches!(&r, Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{r:?}"
    );
    // The session was stopped by its listener at the end of the grace period
    // (not merely cut by the exit), and its access record was written.
    let log = std::fs::read_to_string(dir.join("log")).unwrap();
    assert!(
        log.contains("grace period over; sessions stopped, stopped: 1"),
        "{log}"
    );
    assert!(log.contains("end: stopped by shutdown"), "{log}");

    let dir = scratch("second");
    let (mut child, proxy) = spawn(&dir, &["--grace-period", "60s"]).await;
    let (_s, _, _) = request(proxy, None, &connect_ip(echo)).await;
    signal(&child, "-INT");
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&child, "-INT");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(5)).await,
        Some(130)
    );
}

#[tokio::test]
async fn running_out_of_file_descriptors_backs_off_and_recovers() {
    let dir = scratch("emfile");
    let ready = dir.join("ready");
    // A hard limit of 48 descriptors: far fewer than the clients below.
    let mut child = Command::new("prlimit")
        .args(["--nofile=48:48", "--"])
        .arg(env!("CARGO_BIN_EXE_actor-socks"))
        // An explicit --max-clients, far above what the limit holds (left
        // unset, the default would shrink to fit it).
        .args([
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--max-clients",
            "1000",
        ])
        .arg("--ready-file")
        .arg(&ready)
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .expect("prlimit (util-linux) is installed");
    let mut proxy = None;
    for _ in 0..250 {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            proxy = text
                .lines()
                .find_map(|l| l.strip_prefix("socks "))
                .map(|a| a.parse().unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let proxy: std::net::SocketAddr = proxy.expect("server ready");
    let started = std::time::Instant::now();
    let mut held = Vec::new();
    for _ in 0..80 {
        held.push(TcpStream::connect(proxy).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(child.try_wait().unwrap().is_none(), "server died at EMFILE");
    drop(held);
    // Once descriptors free up, clients are served again.
    let echo = echo_server("127.0.0.1:0").await;
    let mut ok = false;
    for _ in 0..50 {
        if let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_secs(2), negotiate_and_connect(proxy, echo)).await
        {
            echo_round_trip(&mut s, b"recovered").await;
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.join("log")).unwrap();
    assert!(
        ok,
        "no client served after descriptors were freed; log:\n{log}"
    );
    assert!(
        log.contains("accept failed") && log.contains("Too many open files"),
        "EMFILE was not hit? log:\n{log}"
    );
    // Rate-limited: a line a second at most, each with its count (it was
    // ten a second per worker).
    let lines = log.lines().filter(|l| l.contains("accept failed")).count();
    let secs = started.elapsed().as_secs() as usize;
    assert!(lines <= secs + 2, "{lines} lines in {secs} s:\n{log}");
}

async fn negotiate_and_connect(
    proxy: std::net::SocketAddr,
    target: std::net::SocketAddr,
) -> std::io::Result<TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(proxy).await?;
    s.write_all(&[0x05, 0x01, 0x00]).await?;
    let mut sel = [0u8; 2];
    s.read_exact(&mut sel).await?;
    s.write_all(&connect_ip(target)).await?;
    let (rep, _) = read_reply(&mut s).await;
    if rep != 0 {
        return Err(std::io::Error::other("not admitted"));
    }
    Ok(s)
}

/// Network unreachable (0x03) needs a host with no route to the target. A
/// fresh network namespace has only `lo`, so any non-loopback address is
/// unreachable there and no packet leaves it; the proxy and a small client
/// both run inside it.
#[tokio::test]
async fn reply_code_network_unreachable_in_an_empty_netns() {
    let dir = scratch("netns");
    let script = format!(
        r#"
set -e
ip link set lo up
"{bin}" --bind 127.0.0.1:0 --ready-file "{dir}/ready" 2>"{dir}/log" &
pid=$!
for i in $(seq 100); do [ -s "{dir}/ready" ] && break; sleep 0.05; done
port=$(sed -n 's/^socks 127.0.0.1://p' "{dir}/ready")
python3 - "$port" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"\x05\x01\x00")
assert s.recv(2) == b"\x05\x00"
# CONNECT 192.0.2.1:80 (TEST-NET-1): no route in this namespace.
s.sendall(b"\x05\x01\x00\x01\xc0\x00\x02\x01\x00\x50")
print("REP=%02x" % s.recv(10)[1])
PY
kill $pid
"#,
        bin = env!("CARGO_BIN_EXE_actor-socks"),
        dir = dir.display()
    );
    let out = tokio::process::Command::new("unshare")
        .args(["--net", "--", "sh", "-c", &script])
        .output()
        .await
        .expect("unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("REP=03"),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn no_users_beyond_loopback_warns_loudly() {
    let dir = scratch("warn");
    let ready = dir.join("ready");
    let mut child = Command::new(env!("CARGO_BIN_EXE_actor-socks"))
        .args(["--bind", "0.0.0.0:0", "--ready-file"])
        .arg(&ready)
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    for _ in 0..250 {
        if ready.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&child, "-TERM");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)).await, Some(0));
    let log = std::fs::read_to_string(dir.join("log")).unwrap();
    assert!(
        log.contains("WARN") && log.contains("NO AUTHENTICATION"),
        "{log}"
    );
}

/// What a client can make the proxy log: a domain name it asks for, a user
/// name it offers. None of it may start a line of its own (text) or break
/// the one-object-per-line JSON.
#[tokio::test]
async fn clients_cannot_forge_log_lines() {
    const FORGED: &str = "Nov 29 00:00:00.000 INFO user added, user: root";
    for format in ["text", "json"] {
        let dir = scratch(&format!("forge-{format}"));
        let (mut child, proxy) =
            spawn(&dir, &["--user", "alice:secret", "--log-format", format]).await;
        // The target's name, as the access log shows it.
        for name in [
            format!("x\n{FORGED}"),
            format!("x\r{FORGED}"),
            format!("x\u{2028}{FORGED}"),
            "x\u{1b}[2J\u{1b}]0;pwned\u{7}".to_string(),
        ] {
            let (_s, rep, _) =
                request(proxy, Some(("alice", "secret")), &connect_domain(&name, 9)).await;
            assert_ne!(rep, 0, "{name:?}");
        }
        // A user name with a line in it: refused before it is logged.
        let mut s = TcpStream::connect(proxy).await.unwrap();
        use tokio::io::AsyncWriteExt;
        s.write_all(&[0x05, 0x01, 0x02]).await.unwrap();
        read_n(&mut s, 2).await;
        s.write_all(&auth_bytes(&format!("mallory\n{FORGED}"), "x"))
            .await
            .unwrap();
        assert_eq!(read_n(&mut s, 2).await, [0x01, 0x01]);
        drop(s);
        tokio::time::sleep(Duration::from_millis(300)).await;
        signal(&child, "-TERM");
        assert_eq!(
            wait_exit(&mut child, Duration::from_secs(10)).await,
            Some(0)
        );
        let log = std::fs::read_to_string(dir.join("log")).unwrap();
        assert!(!log.contains('\u{1b}') && !log.contains('\r'), "{log:?}");
        for line in log.lines() {
            assert!(!line.starts_with(FORGED), "forged line in {log}");
            if format == "json" {
                let v: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
                assert!(v.is_object());
            }
        }
        let sessions = log.lines().filter(|l| l.contains("session")).count();
        assert!(sessions >= 5, "{log}");
        if format == "text" {
            assert!(log.contains("x\\nNov 29 00:00:00.000 INFO"), "{log}");
            assert!(log.contains("x\\u{2028}Nov 29"), "{log}");
            assert!(log.contains("x\\x1b[2J\\x1b]0;pwned\\x07"), "{log}");
        } else {
            assert!(log.contains("x\\nNov 29 00:00:00.000 INFO"), "{log}");
        }
    }
}

/// Durations that overflow, timeouts of zero and no workers stop the start
/// with a message naming the flag (exit status 2), instead of running with a
/// wrapped or useless value.
#[tokio::test]
async fn bad_numbers_fail_the_start() {
    for (flag, value, says) in [
        ("--handshake-timeout", "3381903080180084463m", "too long"),
        ("--idle-timeout", "18446744073709551615h", "too long"),
        ("--connect-timeout", "99999999999999999999999", "too long"),
        ("--handshake-timeout", "0", "more than 0"),
        ("--connect-timeout", "0ms", "more than 0"),
        ("--udp-timeout", "0s", "more than 0"),
        ("--manager-auth-timeout", "0", "more than 0"),
        ("--workers", "0", "1..=1024"),
        ("--workers", "100000", "1..=1024"),
        ("--handshake-timeout", "1.5s", "unit"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_actor-socks"))
            .args(["--bind", "127.0.0.1:0", flag, value])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(flag) && err.contains(says),
            "{flag} {value}: {err}"
        );
    }
}

/// A storm of refusals: the rate-limited log lines add up to exactly the
/// clients refused (the last window used to be lost).
#[tokio::test]
async fn refusal_counts_in_the_log_are_exact() {
    let dir = scratch("refusals");
    let (mut child, proxy) = spawn(&dir, &["--max-clients", "0", "--workers", "1"]).await;
    let mut refused = 0u64;
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_millis(1500) && refused < 3000 {
        if let Ok(mut s) = TcpStream::connect(proxy).await {
            assert!(closed(&mut s).await);
            refused += 1;
        }
    }
    signal(&child, "-TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)).await,
        Some(0)
    );
    let log = std::fs::read_to_string(dir.join("log")).unwrap();
    let logged: u64 = log
        .lines()
        .filter(|l| l.contains("clients refused: max clients reached"))
        .map(|l| {
            let at = l.find(", refused: ").expect("a count") + ", refused: ".len();
            l[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(logged, refused, "{log}");
}

/// Startup says where it listens (one line per address, with the workers),
/// and the default max clients fits the open-file limit without a warning;
/// only an explicit --max-clients that cannot be honoured is warned about.
#[tokio::test]
async fn startup_says_where_it_listens_and_defaults_fit_the_limits() {
    for (explicit, warned) in [(false, false), (true, true)] {
        let dir = scratch(&format!("startup-{explicit}"));
        let ready = dir.join("ready");
        let mut cmd = Command::new("prlimit");
        cmd.args(["--nofile=1256:1256", "--"])
            .arg(env!("CARGO_BIN_EXE_actor-socks"))
            .args([
                "--bind",
                "127.0.0.1:0",
                "--bind",
                "[::1]:0",
                "--workers",
                "2",
            ])
            .arg("--ready-file")
            .arg(&ready)
            .stderr(std::fs::File::create(dir.join("log")).unwrap());
        if explicit {
            cmd.args(["--max-clients", "10000"]);
        }
        let mut child = cmd.spawn().expect("prlimit (util-linux) is installed");
        for _ in 0..250 {
            if ready.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let addrs: Vec<String> = std::fs::read_to_string(&ready)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("socks ").map(str::to_string))
            .collect();
        assert_eq!(addrs.len(), 2);
        signal(&child, "-TERM");
        assert_eq!(wait_exit(&mut child, Duration::from_secs(5)).await, Some(0));
        let log = std::fs::read_to_string(dir.join("log")).unwrap();
        for a in &addrs {
            let line = format!("addr: {a}");
            assert!(
                log.lines().any(|l| l.contains("INFO listening")
                    && l.contains(&line)
                    && l.contains("workers: 2")),
                "{a} not announced:\n{log}"
            );
        }
        assert_eq!(log.contains("WARN"), warned, "{log}");
        if !explicit {
            assert!(log.contains("max_clients: 500"), "{log}");
        }
    }
}

/// A second SIGTERM exits at once with 143 (128 + 15), a second SIGINT
/// with 130.
#[tokio::test]
async fn a_second_signal_exits_with_its_conventional_status() {
    let echo = echo_server("127.0.0.1:0").await;
    for (sig, status) in [("-TERM", 143), ("-INT", 130)] {
        let dir = scratch(&format!("second-{status}"));
        let (mut child, proxy) = spawn(&dir, &["--grace-period", "60s"]).await;
        let (_s, _, _) = request(proxy, None, &connect_ip(echo)).await;
        signal(&child, sig);
        tokio::time::sleep(Duration::from_millis(200)).await;
        signal(&child, sig);
        assert_eq!(
            wait_exit(&mut child, Duration::from_secs(5)).await,
            Some(status),
            "{sig}"
        );
    }
}

/// Host names in `--bind` and `--manager-bind`: every address they resolve
/// to is bound (one ready-file line each) and serves.
#[tokio::test]
async fn host_names_bind_every_address() {
    let dir = scratch("hostnames");
    let ready = dir.join("ready");
    let mut child = Command::new(env!("CARGO_BIN_EXE_actor-socks"))
        .args(["--bind", "localhost:0", "--manager-bind", "localhost:0"])
        .args([
            "--admin",
            "admin:pw",
            "--manager-transport",
            "udp",
            "--ready-file",
        ])
        .arg(&ready)
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    let mut text = String::new();
    for _ in 0..250 {
        if let Ok(t) = std::fs::read_to_string(&ready) {
            text = t;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let expected: Vec<std::net::IpAddr> = actor_socks::config::parse_addrs("localhost:0")
        .unwrap()
        .0
        .iter()
        .map(|a| a.ip())
        .collect();
    let socks: Vec<std::net::SocketAddr> = text
        .lines()
        .filter_map(|l| l.strip_prefix("socks "))
        .map(|a| a.parse().unwrap())
        .collect();
    let managers: Vec<std::net::SocketAddr> = text
        .lines()
        .filter_map(|l| l.strip_prefix("manager "))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        socks.iter().map(|a| a.ip()).collect::<Vec<_>>(),
        expected,
        "{text}"
    );
    assert_eq!(
        managers.iter().map(|a| a.ip()).collect::<Vec<_>>(),
        expected,
        "{text}"
    );
    for proxy in socks {
        negotiate(proxy, None).await;
    }
    for m in managers {
        let mut a = actor_socks::transport::Association::connect(
            m,
            actor_socks::transport::TransportKind::Udp,
        )
        .await
        .unwrap();
        a.send_msg(&[0x01, 5, b'a', b'd', b'm', b'i', b'n', 2, b'p', b'w'])
            .await
            .unwrap();
        let r = a.recv_msg().await.unwrap().unwrap();
        assert_eq!(r[..], [0x05, 0x00], "manager on {m}");
    }
    signal(&child, "-TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)).await,
        Some(0)
    );
}

/// The access log: one record per session, its fields in reading order
/// (client, user, command, target, resolved, reply, bytes, duration, end),
/// only those of its command, the same keys in JSON and text; how it ended
/// says which side closed first.
#[tokio::test]
async fn access_log_records_read_in_order() {
    use tokio::io::AsyncWriteExt;
    for format in ["json", "text"] {
        let dir = scratch(&format!("access-{format}"));
        let (mut child, proxy) =
            spawn(&dir, &["--log-format", format, "--bind-timeout", "1s"]).await;
        let echo = echo_server("127.0.0.1:0").await;
        // CONNECT: the client closes first.
        let (mut s, rep, _) = request(proxy, None, &connect_ip(echo)).await;
        assert_eq!(rep, 0);
        echo_round_trip(&mut s, b"hello").await;
        s.shutdown().await.unwrap();
        assert!(closed(&mut s).await);
        drop(s);
        // BIND: nobody connects (a FIN from the client is a half-close
        // here: the wait goes on until --bind-timeout).
        let (b, rep, _) = request(proxy, None, &bind_req("127.0.0.1:9".parse().unwrap())).await;
        assert_eq!(rep, 0);
        drop(b);
        // UDP ASSOCIATE: one datagram each way.
        let target = udp_echo("127.0.0.1:0").await;
        let (control, client) = udp_associate(proxy, ("127.0.0.1", 0)).await;
        client
            .send(&udp_datagram(0, &addr_bytes(target), b"ping"))
            .await
            .unwrap();
        assert!(recv_timeout(&client, 2000).await.is_some());
        drop(control);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        signal(&child, "-TERM");
        assert_eq!(
            wait_exit(&mut child, Duration::from_secs(10)).await,
            Some(0)
        );
        let log = std::fs::read_to_string(dir.join("log")).unwrap();
        let records: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("\"msg\":\"session\"") || l.contains(" session, "))
            .collect();
        assert_eq!(records.len(), 3, "{log}");
        let keys = |line: &str| -> Vec<String> {
            if format == "json" {
                // serde_json keeps the order of the text with preserve_order
                // off, so read the keys off the line itself.
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let mut ks: Vec<(usize, String)> = v
                    .as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| !["msg", "level", "ts"].contains(&k.as_str()))
                    .map(|k| (line.find(&format!("\"{k}\":")).unwrap(), k.clone()))
                    .collect();
                ks.sort();
                ks.into_iter().map(|(_, k)| k).collect()
            } else {
                line.split(", ")
                    .skip(1)
                    .filter_map(|kv| kv.split_once(": ").map(|(k, _)| k.to_string()))
                    .collect()
            }
        };
        let expect = |cmd: &str| -> Vec<&str> {
            let mut v = vec!["session", "client", "user", "command", "target"];
            match cmd {
                "connect" => v.extend(["resolved", "reply"]),
                "bind" => v.extend(["reply", "bind_peer", "bind_refused"]),
                _ => v.extend([
                    "reply",
                    "datagrams_up",
                    "datagrams_down",
                    "destinations",
                    "dropped",
                ]),
            }
            v.extend(["bytes_up", "bytes_down", "duration_ms", "end"]);
            v
        };
        // In the order the sessions ended.
        let of = |cmd: &str| -> &str {
            records
                .iter()
                .find(|l| {
                    l.contains(&format!("\"command\":\"{cmd}\""))
                        || l.contains(&format!("command: {cmd},"))
                })
                .unwrap_or_else(|| panic!("no {cmd} record in {records:?}"))
        };
        for cmd in ["connect", "bind", "udp-associate"] {
            assert_eq!(keys(of(cmd)), expect(cmd), "{format}: {}", of(cmd));
        }
        let (connect, udp) = (of("connect"), of("udp-associate"));
        assert!(connect.contains("client closed first"), "{connect}");
        assert!(connect.contains(&echo.to_string()), "resolved: {connect}");
        assert!(
            udp.contains("client closed the control connection"),
            "{udp}"
        );
        if format == "json" {
            let udp: serde_json::Value = serde_json::from_str(udp).unwrap();
            assert_eq!(
                (
                    &udp["datagrams_up"],
                    &udp["datagrams_down"],
                    &udp["destinations"]
                ),
                (
                    &serde_json::json!(1),
                    &serde_json::json!(1),
                    &serde_json::json!(1)
                )
            );
            assert_eq!(
                (&udp["bytes_up"], &udp["bytes_down"]),
                (&serde_json::json!(4), &serde_json::json!(4))
            );
        }
    }
}

/// `--config`: every kind of key, the command line over the file, errors
/// with line numbers, and SIGHUP applying the users and rules again (and
/// saying what waits for a restart).
#[tokio::test]
async fn the_config_file_and_its_reload() {
    let dir = scratch("config");
    let file = dir.join("actor-socks.toml");
    let echo = echo_server("127.0.0.1:0").await;
    let first = format!(
        "# users and rules\nuser = [\"alice:pw\"]\ndeny-target = [\"{}\"]\nmax-clients = 5\n\
         idle-timeout = \"30s\"\nadmin = \"admin:admin-secret\"\nmanager-bind = \"127.0.0.1:0\"\n\
         manager-transport = \"udp\"\nlog-format = \"json\"\n",
        echo.ip()
    );
    std::fs::write(&file, &first).unwrap();
    let (mut child, proxy) = spawn(
        &dir,
        &["--config", file.to_str().unwrap(), "--max-clients", "7"],
    )
    .await;
    let ready = std::fs::read_to_string(dir.join("ready")).unwrap();
    let mgr: std::net::SocketAddr = ready
        .lines()
        .find_map(|l| l.strip_prefix("manager "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    // The file's user and rule; the command line's max clients.
    let (_s, rep, _) = request(proxy, Some(("alice", "pw")), &connect_ip(echo)).await;
    assert_eq!(rep, 0x02, "denied by the file's rule");
    let stats = |name: &'static str| async move {
        let reply = common::manager::command(mgr, &[0x05, 0x08]).await;
        match actor_socks::protocol::manager::Reply::decode_for(
            actor_socks::protocol::manager::Cmd::Stats,
            &reply,
        )
        .unwrap()
        {
            actor_socks::protocol::manager::Reply::Stats(p) => {
                p.into_iter().find(|(k, _)| k == name).unwrap().1
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(stats("max_clients").await, 7, "the command line wins");

    // Reload: bob instead of alice, no rule, another idle timeout.
    std::fs::write(
        &file,
        first
            .replace("alice:pw", "bob:pw2")
            .replace(&format!("deny-target = [\"{}\"]\n", echo.ip()), "")
            .replace("\"30s\"", "\"40s\""),
    )
    .unwrap();
    signal(&child, "-HUP");
    let mut reloaded = false;
    for _ in 0..100 {
        let log = std::fs::read_to_string(dir.join("log")).unwrap();
        if log.contains("config file reloaded") {
            assert!(
                log.contains("takes effect at restart") && log.contains("--idle-timeout"),
                "{log}"
            );
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded, "no reload in the log");
    let (bob, rep, _) = request(proxy, Some(("bob", "pw2")), &connect_ip(echo)).await;
    assert_eq!(rep, 0x00, "bob, and the rule is gone");
    drop(bob);
    // A broken file changes nothing.
    std::fs::write(&file, "user = [\"carol:pw\"]\nidle-timeout = \"0\"\n").unwrap();
    signal(&child, "-HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = std::fs::read_to_string(dir.join("log")).unwrap();
    assert!(
        log.contains("config file not applied") && log.contains("line 2"),
        "{log}"
    );
    let (bob, rep, _) = request(proxy, Some(("bob", "pw2")), &connect_ip(echo)).await;
    assert_eq!(rep, 0x00, "still bob");
    drop(bob);
    signal(&child, "-TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)).await,
        Some(0)
    );
}

/// A bad config file stops the start with status 2, naming line and key.
#[test]
fn a_bad_config_file_fails_the_start() {
    let dir = scratch("config-bad");
    for (text, says) in [
        (
            "bind = [\"127.0.0.1:0\"]\ncolour = \"red\"\n",
            "line 2: colour: unknown key",
        ),
        (
            "max-clients = \"many\"\n",
            "line 1: max-clients: invalid value",
        ),
        ("idle-timeout = \"0\"\n", "line 1: idle-timeout"),
        ("bind = \n", "actor-socks.toml"),
    ] {
        let file = dir.join("actor-socks.toml");
        std::fs::write(&file, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_actor-socks"))
            .args(["--config", file.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{text}: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_actor-socks"))
        .args(["--config", dir.join("missing.toml").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

/// Startup says what the proxy does: where it listens (SOCKS, manager and
/// its transport, metrics), the authentication mode and the rules.
#[tokio::test]
async fn startup_announces_what_it_does() {
    let dir = scratch("startup-all");
    let (mut child, _) = spawn(
        &dir,
        &[
            "--user",
            "alice:pw",
            "--admin",
            "admin:pw",
            "--manager-bind",
            "127.0.0.1:0",
            "--manager-transport",
            "udp",
            "--deny-target",
            "local",
            "--allow-client",
            "127.0.0.0/8",
            "--metrics-bind",
            "127.0.0.1:0",
        ],
    )
    .await;
    signal(&child, "-TERM");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)).await, Some(0));
    let log = std::fs::read_to_string(dir.join("log")).unwrap();
    for says in [
        "INFO listening",
        "INFO authentication required (username/password)",
        "INFO manager listening",
        "transport: sctp-over-udp",
        "INFO client rules",
        "allow: 127.0.0.0/8",
        "INFO target rules",
        "deny: local",
        "INFO metrics listening",
        "path: /metrics",
    ] {
        assert!(log.contains(says), "no {says:?} in:\n{log}");
    }
}
