//! The manager protocol end to end over the userspace SCTP-over-UDP
//! transport, in-process, on loopback port 0. Every reply is pinned to the
//! byte; changes made through the manager are live for the next SOCKS client.

mod common;

use common::manager::*;
use common::*;
use std::time::Duration;

use actor_socks::transport::{Association, TransportKind};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn metrics_reply(h: u64, a: u64, b: u64) -> Vec<u8> {
    let mut v = vec![0x05, 0x02];
    for x in [h, a, b] {
        v.push(8);
        v.extend_from_slice(&x.to_be_bytes());
    }
    v
}

#[actix_rt::test]
async fn wrong_password_is_refused_and_runs_nothing() {
    let server = start(mgr_config()).await;
    let addr = manager_addr(&server);
    let (auth, reply) = exchange(addr, ("admin", "guess"), &add_user_msg("eve", "pw")).await;
    assert_eq!(auth, [0x05, 0x02]);
    assert_eq!(reply, None);
    let (auth, _) = exchange(addr, ("root", "admin-secret"), &[0x05, 0x01]).await;
    assert_eq!(auth, [0x05, 0x02]);
    // A SOCKS user is not an administrator.
    assert_eq!(
        command(addr, &add_user_msg("sockser", "pw")).await,
        [0x05, 0x00, 0x00]
    );
    let (auth, _) = exchange(addr, ("sockser", "pw"), &[0x05, 0x01]).await;
    assert_eq!(auth, [0x05, 0x02]);
    // eve was never added.
    let list = command(addr, &[0x05, 0x01]).await;
    assert_eq!(list, [&[0x05, 0x01, 0x01, 7][..], b"sockser"].concat());
}

#[actix_rt::test]
async fn each_command_exact_bytes_and_live_effect() {
    let server = start(mgr_config()).await;
    let addr = manager_addr(&server);
    let proxy = server.socks_addrs[0];
    let echo = echo_server("127.0.0.1:0").await;

    assert_eq!(
        command(addr, &[0x05, 0x01]).await,
        [0x05, 0x01, 0x00],
        "empty list"
    );
    assert_eq!(command(addr, &[0x05, 0x02]).await, metrics_reply(0, 0, 0));

    // Add user: live for the very next SOCKS client (auth now required).
    assert_eq!(
        command(addr, &add_user_msg("alice", "pw1")).await,
        [0x05, 0x00, 0x00]
    );
    let (mut s, rep, _) = request(proxy, Some(("alice", "pw1")), &connect_ip(echo)).await;
    assert_eq!(rep, 0x00);
    echo_round_trip(&mut s, &[9u8; 1000]).await;
    drop(s);
    assert_eq!(
        command(addr, &add_user_msg("bob", "pw2")).await,
        [0x05, 0x00, 0x00]
    );
    assert_eq!(
        command(addr, &[0x05, 0x01]).await,
        [&[0x05, 0x01, 0x02, 5][..], b"alice", &[3], b"bob"].concat()
    );

    // Metrics equal the real traffic once the session has ended.
    eventually("session closed", || async {
        snapshot(&server).await.active == 0
    })
    .await;
    assert_eq!(
        command(addr, &[0x05, 0x02]).await,
        metrics_reply(1, 0, 2000)
    );

    // Set max clients: the N+1th SOCKS client is refused.
    assert_eq!(command(addr, &set_max_msg(1)).await, [0x05, 0x03, 0x00]);
    let (mut first, rep, _) = request(proxy, Some(("bob", "pw2")), &connect_ip(echo)).await;
    assert_eq!(rep, 0);
    let mut second = TcpStream::connect(proxy).await.unwrap();
    let _ = second.write_all(&[0x05, 0x01, 0x02]).await;
    assert!(closed(&mut second).await, "second client refused");
    echo_round_trip(&mut first, b"first still served").await;
    assert_eq!(
        command(addr, &[0x05, 0x02]).await[..20],
        metrics_reply(2, 1, 0)[..20]
    );
}

#[actix_rt::test]
async fn user_errors() {
    let mut c = mgr_config();
    c.users = (0..254).map(|i| user(&format!("u{i}"), "pw")).collect();
    let server = start(c).await;
    let addr = manager_addr(&server);
    assert_eq!(
        command(addr, &add_user_msg("u1", "x")).await,
        [0x05, 0x00, 0x06],
        "exists"
    );
    assert_eq!(
        command(addr, &add_user_msg("last", "x")).await,
        [0x05, 0x00, 0x00],
        "255th"
    );
    assert_eq!(
        command(addr, &add_user_msg("over", "x")).await,
        [0x05, 0x00, 0x07],
        "256th"
    );
    let list = command(addr, &[0x05, 0x01]).await;
    assert_eq!(list[2], 255);
}

#[actix_rt::test]
async fn malformed_unknown_and_wrong_version() {
    let server = start(mgr_config()).await;
    let addr = manager_addr(&server);
    assert_eq!(
        command(addr, &[0x05, 0x03, 0x02, 0, 1]).await,
        [0x05, 0x03, 0x05],
        "SLEN 2"
    );
    assert_eq!(
        command(addr, &[0x05, 0x03, 0x04, 0, 0, 0, 1, 9]).await,
        [0x05, 0x03, 0x05]
    );
    assert_eq!(
        command(addr, &[0x05, 0x01, 0x00]).await,
        [0x05, 0x01, 0x05],
        "trailing"
    );
    assert_eq!(
        command(addr, &[0x05, 0x02, 0x07]).await,
        [0x05, 0x02, 0x05],
        "trailing"
    );
    assert_eq!(
        command(addr, &[0x05, 0x00, 0x00, 0x01, b'p']).await,
        [0x05, 0x00, 0x05]
    );
    assert_eq!(
        command(addr, &[0x05, 0x00, 0x01, b'u', 0x00]).await,
        [0x05, 0x00, 0x05]
    );
    assert_eq!(
        command(addr, &[0x05, 0x09]).await,
        [0x05, 0x09, 0x04],
        "unknown command"
    );
    assert_eq!(
        command(addr, &[0x04, 0x01]).await,
        [0x05, 0x01, 0x03],
        "wrong version"
    );
    // A malformed auth message.
    let mut a = Association::connect(addr, TransportKind::Udp)
        .await
        .unwrap();
    a.send_msg(&[0x01, 0x00, 0x01, b'x']).await.unwrap();
    assert_eq!(recv(&mut a).await, Some(vec![0x05, 0x05]));
    assert_eq!(recv(&mut a).await, None);
    let mut a = Association::connect(addr, TransportKind::Udp)
        .await
        .unwrap();
    a.send_msg(&[0x02, 0x01, b'a', 0x01, b'b']).await.unwrap();
    assert_eq!(recv(&mut a).await, Some(vec![0x05, 0x03]));
}

#[actix_rt::test]
async fn silent_peer_is_dropped() {
    let mut c = mgr_config();
    c.manager_timeout = Duration::from_millis(300);
    let server = start(c).await;
    let mut a = Association::connect(manager_addr(&server), TransportKind::Udp)
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    assert_eq!(recv(&mut a).await, None);
    assert!(t0.elapsed() >= Duration::from_millis(250));
}

#[actix_rt::test]
async fn users_file_is_written_before_success() {
    let dir = std::env::temp_dir().join(format!("actor-socks-mgr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("users");
    let mut c = mgr_config();
    c.users_file = Some(path.clone());
    let server = start(c).await;
    let addr = manager_addr(&server);
    assert_eq!(
        command(addr, &add_user_msg("kept", "kept-pw")).await,
        [0x05, 0x00, 0x00]
    );
    // Stored hashed (Argon2id), never in plaintext; the user logs in.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("kept:$argon2id$v=19$")),
        "{text}"
    );
    assert!(!text.contains("kept-pw"), "{text}");
    let proxy = server.socks_addrs[0];
    let echo = echo_server("127.0.0.1:0").await;
    let (_s, rep, _) = request(proxy, Some(("kept", "kept-pw")), &connect_ip(echo)).await;
    assert_eq!(rep, 0x00);
    // Make the next write fail: the directory is gone.
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        command(addr, &add_user_msg("lost", "pw")).await,
        [0x05, 0x00, 0x01]
    );
    let list = command(addr, &[0x05, 0x01]).await;
    assert_eq!(
        list,
        [&[0x05, 0x01, 0x01, 4][..], b"kept"].concat(),
        "registry unchanged"
    );
}

#[actix_rt::test]
async fn no_admin_means_no_manager() {
    let server = start(config()).await;
    assert!(server.manager.is_none());
}

/// More associations than the manager has room for, none of which ever
/// authenticates: the oldest unauthenticated ones are closed to make room,
/// so the administrator still gets in at once; the silent ones are dropped
/// after --manager-auth-timeout, not the longer --manager-timeout.
#[actix_rt::test]
async fn silent_associations_cannot_lock_the_administrator_out() {
    use actor_socks::actors::manager_session::MAX_PRE_AUTH;
    let mut c = mgr_config();
    c.manager_auth_timeout = Duration::from_millis(1500);
    c.manager_timeout = Duration::from_secs(30);
    let server = start(c).await;
    let addr = manager_addr(&server);
    let mut silent = Vec::new();
    for _ in 0..MAX_PRE_AUTH + 16 {
        silent.push(
            Association::connect(addr, TransportKind::Udp)
                .await
                .unwrap(),
        );
    }
    // Let the server start a session for each.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = std::time::Instant::now();
    assert_eq!(command(addr, &[0x05, 0x01]).await, [0x05, 0x01, 0x00]);
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert!(snapshot(&server).await.admin_evicted > 0);
    // The newest silent association is still open, then closed by the
    // auth deadline.
    let mut newest = silent.pop().unwrap();
    let t0 = std::time::Instant::now();
    assert_eq!(recv(&mut newest).await, None);
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

/// A stream of associations from one source that never log in (a flood,
/// not a batch) only ever evicts its own: the administrator, from another
/// address, gets every request through.
#[actix_rt::test]
async fn a_flood_of_silent_associations_evicts_only_its_own() {
    let server = start(mgr_config()).await;
    let addr = manager_addr(&server);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The flood runs on threads of its own, as another process would: four
    // connectors, each keeping its last 50 associations open and silent.
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let connectors = (0..4).map(|_| {
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        let mut held = std::collections::VecDeque::new();
                        let mut opened = 0u32;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) && opened < 150 {
                            let from = "127.0.0.2".parse().unwrap();
                            if let Ok(a) = Association::connect_udp_from(addr, from).await {
                                held.push_back(a);
                                opened += 1;
                            }
                            if held.len() > 50 {
                                held.pop_front();
                            }
                        }
                        opened
                    })
                });
                let mut total = 0;
                for c in futures::future::join_all(connectors).await {
                    total += c.unwrap();
                }
                total
            })
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..10 {
        let t0 = std::time::Instant::now();
        let (auth, reply) =
            exchange_from(addr, "127.0.0.1".parse().unwrap(), ADMIN, &[0x05, 0x01]).await;
        assert_eq!(
            (auth, reply),
            (vec![0x05, 0x00], Some(vec![0x05, 0x01, 0x00])),
            "request {i}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "request {i}: {:?}",
            t0.elapsed()
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let opened = flood.join().unwrap();
    assert!(opened > 64, "the flood opened only {opened}");
    assert!(snapshot(&server).await.admin_evicted > 0);
}

#[actix_rt::test]
async fn restart_with_the_same_flags_keeps_every_user() {
    let dir = std::env::temp_dir().join(format!("actor-socks-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = mgr_config();
    c.users = vec![user("flagged", "fpw")];
    c.users_file = Some(dir.join("users"));
    let first = start(c.clone()).await;
    assert_eq!(
        command(manager_addr(&first), &add_user_msg("added", "apw")).await,
        [0x05, 0x00, 0x00]
    );
    // The same flags again: the file now also lists "flagged".
    let second = start(c).await;
    let list = command(manager_addr(&second), &[0x05, 0x01]).await;
    assert_eq!(
        list,
        [&[0x05, 0x01, 0x02, 7][..], b"flagged", &[5], b"added"].concat()
    );
    let echo = echo_server("127.0.0.1:0").await;
    let (_, rep, _) = request(
        second.socks_addrs[0],
        Some(("added", "apw")),
        &connect_ip(echo),
    )
    .await;
    assert_eq!(rep, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
