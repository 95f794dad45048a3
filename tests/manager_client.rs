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
    tokio::process::Command::new(client_path())
        .args([
            "--addr",
            &addr.to_string(),
            "--transport",
            "udp",
            "--timeout",
            "5s",
        ])
        .args(args)
        .env("ACTOR_SOCKS_ADMIN", admin)
        .output()
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[actix_rt::test]
async fn every_subcommand_through_the_example_client() {
    let mut c = config();
    c.admin = Some(user("admin", "s3cret"));
    c.manager_bind = "127.0.0.1:0".parse().unwrap();
    c.manager_transport = TransportKind::Udp;
    let server = start(c).await;
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
}
