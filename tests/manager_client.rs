//! The manager client example (`examples/manager_client.rs`) against the
//! server, over SCTP-over-UDP. `cargo build --examples` must have run (the
//! README's test command does).

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Output;

use actor_socks::transport::TransportKind;

fn client_path() -> PathBuf {
    // target/debug/deps/manager_client-xxxx -> target/debug/examples/manager_client
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let p = dir.join("examples").join("manager_client");
    assert!(
        p.exists(),
        "{} missing: run `cargo build --examples` first",
        p.display()
    );
    p
}

async fn run(addr: std::net::SocketAddr, admin: &str, args: &[&str]) -> Output {
    run_at(&addr.to_string(), admin, args).await
}

async fn run_at(addr: &str, admin: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(client_path())
        .args(["--addr", addr, "--transport", "udp", "--timeout", "5s"])
        .args(args)
        .env("ACTOR_SOCKS_ADMIN", admin)
        .output()
        .await
        .unwrap()
}

/// A server config with the manager on (SCTP over UDP), administrator
/// `admin:s3cret`.
fn manager_config() -> actor_socks::config::Config {
    let mut c = config();
    c.admin = Some(user("admin", "s3cret"));
    c.manager_bind = vec!["127.0.0.1:0".parse().unwrap()];
    c.manager_transport = TransportKind::Udp;
    c
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[actix_rt::test]
async fn every_subcommand_through_the_example_client() {
    let server = start(manager_config()).await;
    let addr = server.manager.unwrap().0;
    let admin = "admin:s3cret";

    let o = run(addr, admin, &["add-user", "zoe", "zpw"]).await;
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o).trim(), "ok");

    let o = run(addr, admin, &["add-user", "zoe", "again"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already exists"),
        "{o:?}"
    );

    let o = run(addr, admin, &["list-users"]).await;
    assert!(o.status.success());
    assert!(stdout(&o).lines().any(|l| l == "zoe"), "{}", stdout(&o));

    // The new user works for SOCKS at once.
    let echo = echo_server("127.0.0.1:0").await;
    let (mut s, rep, _) = request(
        server.socks_addrs[0],
        Some(("zoe", "zpw")),
        &connect_ip(echo),
    )
    .await;
    assert_eq!(rep, 0);
    echo_round_trip(&mut s, b"0123456789").await;
    drop(s);
    eventually("session over", || async {
        snapshot(&server).await.active == 0
    })
    .await;

    let o = run(addr, admin, &["metrics"]).await;
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(text.contains("historic connections: 1"), "{text}");
    assert!(text.contains("active connections: 0"), "{text}");
    assert!(text.contains("bytes transferred: 20"), "{text}");

    let o = run(addr, admin, &["--json", "metrics"]).await;
    assert!(o.status.success());
    assert_eq!(
        stdout(&o).trim(),
        r#"{"ok":true,"command":"metrics","historic_connections":1,"active_connections":0,"bytes_transferred":20}"#
    );

    let o = run(addr, admin, &["set-max-clients", "7"]).await;
    assert!(o.status.success());

    let o = run(addr, admin, &["change-password", "zoe", "new"]).await;
    assert!(o.status.success(), "{o:?}");
    let (_, rep, _) = request(
        server.socks_addrs[0],
        Some(("zoe", "new")),
        &connect_ip(echo),
    )
    .await;
    assert_eq!(rep, 0);

    let o = run(addr, admin, &["remove-user", "zoe"]).await;
    assert!(o.status.success());
    let o = run(addr, admin, &["remove-user", "zoe"]).await;
    assert_eq!(o.status.code(), Some(1));

    let o = run(addr, "admin:wrong", &["list-users"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("authentication failed"));
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("wrong"),
        "password echoed"
    );

    let o = run(addr, admin, &["set-max-clients", "not-a-number"]).await;
    assert_eq!(o.status.code(), Some(2));
}

#[actix_rt::test]
async fn unreachable_manager_fails_in_bounded_time() {
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let t0 = std::time::Instant::now();
    let o = tokio::process::Command::new(client_path())
        .args([
            "--addr",
            &dead.to_string(),
            "--transport",
            "udp",
            "--timeout",
            "1s",
            "metrics",
        ])
        .env("ACTOR_SOCKS_ADMIN", "a:b")
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(t0.elapsed() < std::time::Duration::from_secs(8));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("hint:") && err.contains("--admin") && err.contains("--transport udp"),
        "{err}"
    );
    assert!(
        !err.contains("--manager-transport"),
        "the server's flag: {err}"
    );
    assert!(!err.contains("Udp"), "an enum name: {err}");
}

/// `--addr` takes a host name: each of its addresses is tried in turn.
#[actix_rt::test]
async fn the_client_resolves_host_names() {
    let server = start(manager_config()).await;
    let port = server.manager.unwrap().0.port();
    let o = run_at(
        &format!("localhost:{port}"),
        "admin:s3cret",
        &["list-users"],
    )
    .await;
    assert!(o.status.success(), "{o:?}");
    let o = run_at("no-such-host.invalid:8080", "admin:s3cret", &["list-users"]).await;
    assert_eq!(o.status.code(), Some(2), "a usage error: {o:?}");
    assert!(stderr(&o).contains("cannot resolve"), "{o:?}");
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[actix_rt::test]
async fn tree_and_fault_through_the_example_client() {
    let mut c = manager_config();
    c.supervision.fault_injection = true;
    let server = start(c).await;
    let addr = server.manager.unwrap().0;
    let admin = "admin:s3cret";

    // Text: one node a line, indented by depth.
    let o = run(addr, admin, &["tree"]).await;
    assert!(o.status.success(), "{o:?}");
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("root [supervisor, one_for_one, 2 in 60s] running"),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(
            "    listener/0 [actor, permanent, 5 in 10s] running, restarts 0, sessions 0"
        )),
        "{text}"
    );

    let o = run(addr, admin, &["fault", "registry", "panic"]).await;
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o).trim(), "ok");
    let o = run(addr, admin, &["fault", "nosuch", "stop"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no such node"), "{o:?}");
    let o = run(addr, admin, &["fault", "registry", "explode"]).await;
    assert_eq!(o.status.code(), Some(2), "a usage error: {o:?}");

    // JSON: the registry's restart, injected, with its reason.
    common::eventually("the registry restarted", || async {
        let o = run(addr, admin, &["tree", "--json"]).await;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let reg = v["tree"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "registry")
            .unwrap()
            .clone();
        reg["restarts"] == 1 && reg["injected"] == 1 && reg["state"] == "running"
    })
    .await;
    let o = run(addr, admin, &["tree"]).await;
    assert!(
        stdout(&o).contains("registry [actor, permanent, 3 in 10s] running, restarts 1 (0 failed, 1 injected), last failure"),
        "{}",
        stdout(&o)
    );

    // --watch: redrawn; with --json one object a line.
    let o = run(addr, admin, &["tree", "--watch", "--count", "2", "--json"]).await;
    assert!(o.status.success(), "{o:?}");
    let drawn: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(drawn.len(), 2);
    let o = run(addr, admin, &["tree", "--count", "2"]).await;
    assert_eq!(o.status.code(), Some(2), "--count needs --watch");
}

#[actix_rt::test]
async fn fault_is_refused_unless_the_server_allows_it() {
    let server = start(manager_config()).await;
    let addr = server.manager.unwrap().0;
    let o = run(addr, "admin:s3cret", &["fault", "registry", "panic"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--fault-injection"), "{o:?}");
}

/// A server from before TREE answers it "unknown command": the client says
/// the server is too old.
#[actix_rt::test]
async fn an_old_server_is_called_too_old() {
    use actor_socks::transport::Listener;
    let mut old = Listener::bind("127.0.0.1:0".parse().unwrap(), TransportKind::Udp)
        .await
        .unwrap();
    let addr = old.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..2 {
            let (mut a, _) = old.accept().await.unwrap();
            let _auth = a.recv_msg().await.unwrap();
            a.send_msg(&[0x05, 0x00]).await.unwrap();
            let req = a.recv_msg().await.unwrap().unwrap();
            a.send_msg(&[0x05, req[1], 0x04]).await.unwrap();
            let _ = a.close().await;
        }
    });
    for args in [&["tree"][..], &["fault", "registry", "panic"][..]] {
        let o = run(addr, "admin:s3cret", args).await;
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("server is too old"), "{o:?}");
    }
}

/// STATS through the client: every counter, against the traffic moved.
#[actix_rt::test]
async fn stats_count_the_traffic() {
    let mut c = manager_config();
    c.users = vec![user("alice", "pw")];
    let server = start(c).await;
    let addr = server.manager.unwrap().0;
    let proxy = server.socks_addrs[0];
    let echo = echo_server("127.0.0.1:0").await;
    let (mut s, rep, _) = request(proxy, Some(("alice", "pw")), &connect_ip(echo)).await;
    assert_eq!(rep, 0);
    echo_round_trip(&mut s, &[7u8; 1000]).await;
    drop(s);
    // A refused target: reply 0x05.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (_s, rep, _) = request(proxy, Some(("alice", "pw")), &connect_ip(closed_port)).await;
    assert_eq!(rep, 0x05);
    drop(_s);
    // A wrong password.
    let mut bad = tokio::net::TcpStream::connect(proxy).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut bad, &[0x05, 0x01, 0x02])
        .await
        .unwrap();
    assert_eq!(read_n(&mut bad, 2).await, [0x05, 0x02]);
    tokio::io::AsyncWriteExt::write_all(&mut bad, &auth_bytes("alice", "nope"))
        .await
        .unwrap();
    assert_eq!(read_n(&mut bad, 2).await, [0x01, 0x01]);
    drop(bad);
    // Offering no way to log in while login is required: refused, but no
    // credential was tried, so not an authentication failure.
    let mut none = tokio::net::TcpStream::connect(proxy).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut none, &[0x05, 0x01, 0x00])
        .await
        .unwrap();
    assert_eq!(read_n(&mut none, 2).await, [0x05, 0xff]);
    drop(none);
    let o = run(addr, "admin:s3cret", &["set-max-clients", "77"]).await;
    assert!(o.status.success());

    let read = || async {
        let o = run(addr, "admin:s3cret", &["--json", "stats"]).await;
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["stats"].clone()
    };
    common::eventually("both replies counted", || async {
        let stats = read().await;
        stats["replies/0x05_total"] == 1 && stats["active_connections"] == 0
    })
    .await;
    let stats = read().await;
    for (key, want) in [
        ("connections_total", 1),
        ("bytes_up_total", 1000),
        ("bytes_down_total", 1000),
        ("replies/0x00_total", 1),
        ("replies/0x05_total", 1),
        ("auth_failures_total", 1),
        ("udp_dropped/denied_total", 0),
        ("max_clients", 77),
        ("restarts_total", 0),
        ("user/alice/sessions_total", 2),
        ("user/alice/bytes_up_total", 1000),
        ("user/alice/bytes_down_total", 1000),
        ("manager_requests/0x03/0x00_total", 1),
        ("users_omitted", 0),
    ] {
        assert_eq!(stats[key], want, "{key} in {stats}");
    }
    assert!(stats["uptime_seconds"].as_u64().is_some());
    // Text: one `key value` a line.
    let o = run(addr, "admin:s3cret", &["stats"]).await;
    assert!(
        stdout(&o).lines().any(|l| l == "bytes_up_total 1000"),
        "{}",
        stdout(&o)
    );
}
