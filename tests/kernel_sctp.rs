//! The kernel SCTP transport (tokio-sctp): the same round trips as the UDP
//! transport, over `TransportKind::Kernel`.
//!
//! On a kernel without SCTP (EPROTONOSUPPORT) each test prints why and
//! passes, unless `ACTOR_SOCKS_REQUIRE_KERNEL_SCTP=1` is set (as inside the
//! User-Mode Linux guest), in which case it fails. Run in the guest with:
//!
//! ```text
//! cargo test --test kernel_sctp --no-run
//! /work/wt-uml/scripts/uml-run.sh --env ACTOR_SOCKS_REQUIRE_KERNEL_SCTP=1 -- \
//!     target/debug/deps/kernel_sctp-<hash> --test-threads=1
//! ```
#![cfg(feature = "kernel-sctp")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actor_socks::transport::{
    is_no_kernel_sctp, Association, Listener, Resolved, TransportKind, MAX_MESSAGE_SIZE,
};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(30);

mod sctp_common;
use sctp_common::{pattern, spawn_echo};

fn required() -> bool {
    std::env::var("ACTOR_SOCKS_REQUIRE_KERNEL_SCTP").is_ok_and(|v| v == "1")
}

/// Binds a kernel SCTP listener, or returns `None` (test skipped) when this
/// kernel has no SCTP and it is not required.
async fn kernel_listener(addr: &str) -> Option<Listener> {
    match Listener::bind(addr.parse().unwrap(), TransportKind::Kernel).await {
        Ok(l) => {
            assert_eq!(l.transport(), Resolved::Kernel);
            Some(l)
        }
        Err(e) if is_no_kernel_sctp(&e) => {
            assert!(
                e.to_string().contains("EPROTONOSUPPORT"),
                "the error says why in plain words: {e}"
            );
            if required() {
                panic!("ACTOR_SOCKS_REQUIRE_KERNEL_SCTP=1 but: {e}");
            }
            eprintln!("SKIPPED: {e}");
            None
        }
        Err(e) => panic!("kernel SCTP bind failed: {e} ({e:?})"),
    }
}

async fn round_trip(bind: &str) {
    let Some(listener) = kernel_listener(bind).await else {
        return;
    };
    let addr = listener.local_addr().unwrap();
    assert_ne!(addr.port(), 0);
    let server = spawn_echo(listener);
    let started = Instant::now();
    let mut c = Association::connect(addr, TransportKind::Kernel)
        .await
        .unwrap();
    eprintln!("kernel connect {:?}", started.elapsed());
    assert_eq!(c.transport(), Resolved::Kernel);
    let sizes = [1usize, 2, 100, 1500, 4096, 10_000, 60_000, MAX_MESSAGE_SIZE];
    for (i, &n) in sizes.iter().enumerate() {
        c.send_msg(&pattern(n, i as u8)).await.unwrap();
    }
    for (i, &n) in sizes.iter().enumerate() {
        let m = c.recv_msg().await.unwrap().expect("a reply");
        assert_eq!(m.len(), n, "message {i} length");
        assert_eq!(&m[..], &pattern(n, i as u8)[..], "message {i} bytes");
    }
    assert!(c.send_msg(&[]).await.is_err());
    assert!(c.send_msg(&vec![0; MAX_MESSAGE_SIZE + 1]).await.is_err());
    let started = Instant::now();
    c.close().await.unwrap();
    eprintln!("kernel close {:?}", started.elapsed());
    server.abort();
}

#[tokio::test]
async fn kernel_round_trip_ipv4() {
    timeout(T, round_trip("127.0.0.1:0"))
        .await
        .expect("timed out");
}

#[tokio::test]
async fn kernel_round_trip_ipv6() {
    timeout(T, round_trip("[::1]:0")).await.expect("timed out");
}

/// Server replies then closes: the client gets the reply, then `Ok(None)`.
#[tokio::test]
async fn kernel_server_replies_then_closes() {
    timeout(T, async {
        let Some(mut listener) = kernel_listener("127.0.0.1:0").await else {
            return;
        };
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut a, _) = listener.accept().await.unwrap();
            let auth = a.recv_msg().await.unwrap().unwrap();
            assert_eq!(&auth[..], b"AUTH alice secret");
            a.send_msg(b"OK").await.unwrap();
            let req = a.recv_msg().await.unwrap().unwrap();
            assert_eq!(req.len(), 3000);
            a.send_msg(&pattern(20_000, 7)).await.unwrap();
            a.close().await.unwrap();
        });
        let mut c = Association::connect(addr, TransportKind::Kernel)
            .await
            .unwrap();
        c.send_msg(b"AUTH alice secret").await.unwrap();
        assert_eq!(&c.recv_msg().await.unwrap().unwrap()[..], b"OK");
        c.send_msg(&pattern(3000, 1)).await.unwrap();
        assert_eq!(
            &c.recv_msg().await.unwrap().unwrap()[..],
            &pattern(20_000, 7)[..]
        );
        assert!(c.recv_msg().await.unwrap().is_none());
        assert!(c.recv_msg().await.unwrap().is_none());
        c.close().await.unwrap();
        server.await.unwrap();
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn kernel_twenty_concurrent_associations() {
    timeout(T, async {
        let Some(listener) = kernel_listener("127.0.0.1:0").await else {
            return;
        };
        let addr = listener.local_addr().unwrap();
        let server = spawn_echo(listener);
        let mut tasks = Vec::new();
        for i in 0..20u8 {
            tasks.push(tokio::spawn(async move {
                let mut c = Association::connect(addr, TransportKind::Kernel)
                    .await
                    .unwrap();
                let msg = pattern(500 + i as usize, i);
                c.send_msg(&msg).await.unwrap();
                assert_eq!(&c.recv_msg().await.unwrap().unwrap()[..], &msg[..]);
                c.close().await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        server.abort();
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn kernel_connect_to_nothing_fails() {
    timeout(T, async {
        // Only meaningful where kernel SCTP exists.
        let Some(listener) = kernel_listener("127.0.0.1:0").await else {
            return;
        };
        let addr: SocketAddr = listener.local_addr().unwrap();
        drop(listener);
        let r = Association::connect(addr, TransportKind::Kernel).await;
        assert!(r.is_err(), "nothing listens any more");
    })
    .await
    .expect("timed out");
}

/// `Auto` picks the kernel where it has SCTP, and SCTP over UDP otherwise.
#[tokio::test]
async fn auto_prefers_kernel_when_available() {
    timeout(T, async {
        let l = Listener::bind("127.0.0.1:0".parse().unwrap(), TransportKind::Auto)
            .await
            .unwrap();
        let kernel = Listener::bind("127.0.0.1:0".parse().unwrap(), TransportKind::Kernel).await;
        match kernel {
            Ok(_) => assert_eq!(l.transport(), Resolved::Kernel),
            Err(e) => {
                assert!(is_no_kernel_sctp(&e));
                assert!(!required(), "ACTOR_SOCKS_REQUIRE_KERNEL_SCTP=1 but: {e}");
                assert_eq!(l.transport(), Resolved::Udp);
            }
        }
    })
    .await
    .expect("timed out");
}

/// An `Auto` client whose kernel has SCTP still reaches a server that only
/// speaks SCTP over UDP (kernel connect is refused, UDP is tried next).
#[tokio::test]
async fn auto_client_reaches_a_udp_only_server() {
    timeout(T, async {
        if kernel_listener("127.0.0.1:0").await.is_none() {
            return;
        }
        let l = Listener::bind("127.0.0.1:0".parse().unwrap(), TransportKind::Udp)
            .await
            .unwrap();
        let addr = l.local_addr().unwrap();
        let server = spawn_echo(l);
        let mut c = Association::connect(addr, TransportKind::Auto)
            .await
            .unwrap();
        assert_eq!(c.transport(), Resolved::Udp);
        c.send_msg(b"fallback").await.unwrap();
        assert_eq!(&c.recv_msg().await.unwrap().unwrap()[..], b"fallback");
        c.close().await.unwrap();
        server.abort();
    })
    .await
    .expect("timed out");
}
