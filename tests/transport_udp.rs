//! The SCTP-over-UDP transport on this host's loopback: round trips, message
//! boundaries, close semantics, many concurrent associations, failures.
//! Every test is bounded by tokio timeouts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actor_socks::transport::{Association, Listener, Resolved, TransportKind, MAX_MESSAGE_SIZE};
use tokio::time::timeout;

mod sctp_common;
use sctp_common::{pattern, spawn_echo};

const T: Duration = Duration::from_secs(20);

async fn round_trip(bind: SocketAddr) {
    let listener = Listener::bind(bind, TransportKind::Udp).await.unwrap();
    assert_eq!(listener.transport(), Resolved::Udp);
    let addr = listener.local_addr().unwrap();
    assert_ne!(addr.port(), 0, "port 0 must resolve to the real port");
    let server = spawn_echo(listener);

    let mut c = Association::connect(addr, TransportKind::Udp)
        .await
        .unwrap();
    assert_eq!(c.transport(), Resolved::Udp);
    let sizes = [
        1usize,
        2,
        100,
        1199,
        1200,
        1201,
        4096,
        10_000,
        60_000,
        MAX_MESSAGE_SIZE,
    ];
    // All sent before any is read: boundaries must survive queueing.
    for (i, &n) in sizes.iter().enumerate() {
        c.send_msg(&pattern(n, i as u8)).await.unwrap();
    }
    for (i, &n) in sizes.iter().enumerate() {
        let m = c.recv_msg().await.unwrap().expect("a reply");
        assert_eq!(m.len(), n, "message {i} length");
        assert_eq!(&m[..], &pattern(n, i as u8)[..], "message {i} bytes");
    }
    // One at a time, too.
    for i in 0..20u8 {
        let msg = pattern(1 + i as usize * 37, i);
        c.send_msg(&msg).await.unwrap();
        assert_eq!(&c.recv_msg().await.unwrap().unwrap()[..], &msg[..]);
    }
    let started = Instant::now();
    c.close().await.unwrap();
    eprintln!("client close took {:?}", started.elapsed());
    server.abort();
}

#[tokio::test]
async fn round_trip_ipv4() {
    timeout(T, round_trip("127.0.0.1:0".parse().unwrap()))
        .await
        .expect("timed out");
}

#[tokio::test]
async fn round_trip_ipv6() {
    timeout(T, round_trip("[::1]:0".parse().unwrap()))
        .await
        .expect("timed out");
}

#[tokio::test]
async fn size_limits() {
    timeout(T, async {
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), TransportKind::Udp)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn_echo(listener);
        let mut c = Association::connect(addr, TransportKind::Udp)
            .await
            .unwrap();
        assert!(c.send_msg(&[]).await.is_err(), "empty message refused");
        assert!(c.send_msg(&vec![0u8; MAX_MESSAGE_SIZE + 1]).await.is_err());
        // Still usable afterwards.
        c.send_msg(b"ok").await.unwrap();
        assert_eq!(&c.recv_msg().await.unwrap().unwrap()[..], b"ok");
        c.close().await.unwrap();
        server.abort();
    })
    .await
    .expect("timed out");
}

/// The manager's pattern: auth, reply, request, reply, then the server
/// closes; the client sees both replies, then end of stream.
#[tokio::test]
async fn server_replies_then_closes() {
    timeout(T, async {
        let mut listener = Listener::bind("127.0.0.1:0".parse().unwrap(), TransportKind::Udp)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut a, peer) = listener.accept().await.unwrap();
            assert!(peer.ip().is_loopback());
            let auth = a.recv_msg().await.unwrap().unwrap();
            assert_eq!(&auth[..], b"AUTH alice secret");
            a.send_msg(b"OK").await.unwrap();
            let req = a.recv_msg().await.unwrap().unwrap();
            assert_eq!(req.len(), 3000);
            let reply = pattern(20_000, 7);
            a.send_msg(&reply).await.unwrap();
            let started = Instant::now();
            a.close().await.unwrap();
            started.elapsed()
        });

        let started = Instant::now();
        let mut c = Association::connect(addr, TransportKind::Udp)
            .await
            .unwrap();
        let connected = started.elapsed();
        c.send_msg(b"AUTH alice secret").await.unwrap();
        assert_eq!(&c.recv_msg().await.unwrap().unwrap()[..], b"OK");
        c.send_msg(&pattern(3000, 1)).await.unwrap();
        let reply = c.recv_msg().await.unwrap().unwrap();
        assert_eq!(&reply[..], &pattern(20_000, 7)[..]);
        let eof = c.recv_msg().await.unwrap();
        assert!(eof.is_none(), "end of stream after the server closed");
        // Reading again stays at end of stream; sending fails.
        assert!(c.recv_msg().await.unwrap().is_none());
        assert!(c.send_msg(b"late").await.is_err());
        let total = started.elapsed();
        c.close().await.unwrap();
        let server_close = server.await.unwrap();
        eprintln!(
            "connect {connected:?}, whole exchange to EOF {total:?}, server close {server_close:?}"
        );
    })
    .await
    .expect("timed out");
}

/// The client closes first; the server sees end of stream after the data.
#[tokio::test]
async fn client_closes_first() {
    timeout(T, async {
        let mut listener = Listener::bind("127.0.0.1:0".parse().unwrap(), TransportKind::Udp)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut a, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            while let Some(m) = a.recv_msg().await.unwrap() {
                got.push(m);
            }
            a.close().await.unwrap();
            got
        });
        let mut c = Association::connect(addr, TransportKind::Udp)
            .await
            .unwrap();
        for i in 0..5u8 {
            c.send_msg(&pattern(5000 * (i as usize + 1), i))
                .await
                .unwrap();
        }
        c.close().await.unwrap();
        let got = server.await.unwrap();
        assert_eq!(got.len(), 5);
        for (i, m) in got.iter().enumerate() {
            assert_eq!(&m[..], &pattern(5000 * (i + 1), i as u8)[..]);
        }
    })
    .await
    .expect("timed out");
}

/// A handle dropped without close() still delivers what it sent.
#[tokio::test]
async fn drop_without_close_delivers() {
    timeout(T, async {
        let mut listener = Listener::bind("127.0.0.1:0".parse().unwrap(), TransportKind::Udp)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut a, _) = listener.accept().await.unwrap();
            a.send_msg(&pattern(30_000, 3)).await.unwrap();
            drop(a);
            listener
        });
        let mut c = Association::connect(addr, TransportKind::Udp)
            .await
            .unwrap();
        let m = c.recv_msg().await.unwrap().unwrap();
        assert_eq!(&m[..], &pattern(30_000, 3)[..]);
        assert!(c.recv_msg().await.unwrap().is_none());
        c.close().await.unwrap();
        drop(server.await.unwrap());
    })
    .await
    .expect("timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_associations() {
    timeout(Duration::from_secs(40), async {
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), TransportKind::Udp)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn_echo(listener);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..50u8 {
            tasks.push(tokio::spawn(async move {
                let mut c = Association::connect(addr, TransportKind::Udp)
                    .await
                    .unwrap();
                for j in 0..3u8 {
                    let msg = pattern(100 + 700 * j as usize + i as usize, i ^ j);
                    c.send_msg(&msg).await.unwrap();
                    let r = c.recv_msg().await.unwrap().unwrap();
                    assert_eq!(&r[..], &msg[..]);
                }
                c.close().await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        eprintln!("50 associations x 3 round trips: {:?}", started.elapsed());
        server.abort();
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn connect_to_nothing_fails_fast() {
    // Find a UDP port with nothing on it.
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let started = Instant::now();
    let r = timeout(T, Association::connect(addr, TransportKind::Udp))
        .await
        .expect("connect must not hang");
    let e = r.err().expect("connect must fail");
    eprintln!("connect to nothing failed in {:?}: {e}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(12));
}

#[tokio::test]
async fn closed_listener_refuses_new_associations() {
    timeout(T, async {
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), TransportKind::Udp)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let started = Instant::now();
        let r = Association::connect(addr, TransportKind::Udp).await;
        assert!(r.is_err());
        eprintln!(
            "connect after listener drop failed in {:?}",
            started.elapsed()
        );
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn auto_resolves_on_this_host() {
    timeout(T, async {
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), TransportKind::Auto)
            .await
            .unwrap();
        let kernel_ok = std::env::var("ACTOR_SOCKS_REQUIRE_KERNEL_SCTP").is_ok_and(|v| v == "1");
        if kernel_ok {
            assert_eq!(listener.transport(), Resolved::Kernel);
        } else if listener.transport() == Resolved::Kernel {
            eprintln!("this kernel has SCTP: Auto resolved to kernel");
        } else {
            assert_eq!(listener.transport(), Resolved::Udp);
        }
        let addr = listener.local_addr().unwrap();
        let expected = listener.transport();
        let server = spawn_echo(listener);
        let mut c = Association::connect(addr, TransportKind::Auto)
            .await
            .unwrap();
        assert_eq!(c.transport(), expected);
        c.send_msg(b"auto").await.unwrap();
        assert_eq!(&c.recv_msg().await.unwrap().unwrap()[..], b"auto");
        c.close().await.unwrap();
        server.abort();
    })
    .await
    .expect("timed out");
}

/// A UDP relay in front of `target` that can be cut: after `cut` is set,
/// every datagram in either direction is dropped (the peer "vanished").
/// With `drop_every` = n > 0 it also drops every n-th datagram in each
/// direction (a lossy path).
async fn relay(
    target: SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    drop_every: usize,
) -> SocketAddr {
    use std::sync::atomic::Ordering;
    let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    back.connect(target).await.unwrap();
    let addr = front.local_addr().unwrap();
    tokio::spawn(async move {
        let mut client: Option<SocketAddr> = None;
        let (mut up, mut down) = (0usize, 0usize);
        let lose = |n: &mut usize| {
            *n += 1;
            drop_every > 0 && *n % drop_every == 0
        };
        let mut a = vec![0u8; 65536];
        let mut b = vec![0u8; 65536];
        loop {
            tokio::select! {
                r = front.recv_from(&mut a) => {
                    let Ok((n, from)) = r else { return };
                    client = Some(from);
                    if !cut.load(Ordering::SeqCst) && !lose(&mut up) {
                        let _ = back.send(&a[..n]).await;
                    }
                }
                r = back.recv(&mut b) => {
                    let Ok(n) = r else { continue };
                    if let (Some(c), false) = (client, cut.load(Ordering::SeqCst) || lose(&mut down)) {
                        let _ = front.send_to(&b[..n], c).await;
                    }
                }
            }
        }
    });
    addr
}

/// A peer that vanishes does not make the other side hang: close() with
/// unacknowledged data gives up within its bound, with an error, and an
/// idle association notices the silence (unanswered heartbeats).
#[tokio::test]
async fn vanished_peer_is_detected() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    timeout(Duration::from_secs(50), async {
        let mut listener = Listener::bind("127.0.0.1:0".parse().unwrap(), TransportKind::Udp)
            .await
            .unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let front = relay(listener.local_addr().unwrap(), cut.clone(), 0).await;
        let mut c = Association::connect(front, TransportKind::Udp)
            .await
            .unwrap();
        let (mut a, _) = listener.accept().await.unwrap();
        c.send_msg(b"hello").await.unwrap();
        assert_eq!(&a.recv_msg().await.unwrap().unwrap()[..], b"hello");
        cut.store(true, Ordering::SeqCst);
        let started = Instant::now();
        // The server side waits for a request that never comes.
        let idle = tokio::spawn(async move {
            let r = a.recv_msg().await;
            (r.map(|m| m.map(|b| b.len())), started.elapsed(), a)
        });
        c.send_msg(&pattern(5000, 1)).await.unwrap();
        let rc = c.close().await;
        let took = started.elapsed();
        eprintln!("client close with a vanished peer: {rc:?} after {took:?}");
        assert!(rc.is_err(), "undelivered data must be reported");
        assert!(took <= actor_socks::transport::CLOSE_TIMEOUT + Duration::from_secs(2));
        let (r, took, a) = idle.await.unwrap();
        eprintln!("idle server side with a vanished peer: {r:?} after {took:?}");
        assert!(r.is_err(), "a silent peer is an error, not a clean end");
        assert!(took <= Duration::from_secs(36));
        assert!(a.close().await.is_err());
    })
    .await
    .expect("timed out");
}

/// Heartbeats keep a quiet association alive, and do not disturb it.
#[tokio::test]
async fn idle_association_survives() {
    timeout(Duration::from_secs(50), async {
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), TransportKind::Udp)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn_echo(listener);
        let mut c = Association::connect(addr, TransportKind::Udp)
            .await
            .unwrap();
        c.send_msg(b"before").await.unwrap();
        assert_eq!(&c.recv_msg().await.unwrap().unwrap()[..], b"before");
        tokio::time::sleep(Duration::from_secs(35)).await;
        c.send_msg(b"after").await.unwrap();
        assert_eq!(&c.recv_msg().await.unwrap().unwrap()[..], b"after");
        c.close().await.unwrap();
        server.abort();
    })
    .await
    .expect("timed out");
}

/// A path that loses every 5th datagram each way: messages still arrive
/// whole and in order, and both ends still shut down cleanly.
#[tokio::test]
async fn lossy_path() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    timeout(Duration::from_secs(60), async {
        let mut listener = Listener::bind("127.0.0.1:0".parse().unwrap(), TransportKind::Udp)
            .await
            .unwrap();
        let front = relay(
            listener.local_addr().unwrap(),
            Arc::new(AtomicBool::new(false)),
            5,
        )
        .await;
        let server = tokio::spawn(async move {
            let (mut a, _) = listener.accept().await.unwrap();
            let mut n = 0;
            while let Some(m) = a.recv_msg().await.unwrap() {
                a.send_msg(&m).await.unwrap();
                n += 1;
                if n == 6 {
                    break;
                }
            }
            a.close().await
        });
        let started = Instant::now();
        let mut c = Association::connect(front, TransportKind::Udp)
            .await
            .unwrap();
        for (i, n) in [1usize, 3000, 20_000, 100, 60_000, 7]
            .into_iter()
            .enumerate()
        {
            let msg = pattern(n, i as u8);
            c.send_msg(&msg).await.unwrap();
            let r = c.recv_msg().await.unwrap().expect("echo");
            assert_eq!(&r[..], &msg[..], "message {i}");
        }
        assert!(c.recv_msg().await.unwrap().is_none());
        let rs = server.await.unwrap();
        let rc = c.close().await;
        eprintln!(
            "lossy path: {:?}, server close {rs:?}, client close {rc:?}",
            started.elapsed()
        );
        rs.unwrap();
        rc.unwrap();
    })
    .await
    .expect("timed out");
}

/// A UDP port that swallows everything (no ICMP, no answer): connect gives
/// up after CONNECT_TIMEOUT.
#[tokio::test]
async fn connect_to_a_silent_port_times_out() {
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let started = Instant::now();
    let r = timeout(T, Association::connect(addr, TransportKind::Udp))
        .await
        .expect("connect must not hang");
    let took = started.elapsed();
    let e = r.err().expect("connect must fail");
    eprintln!("connect to a silent port failed in {took:?}: {e}");
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    assert!(took <= actor_socks::transport::CONNECT_TIMEOUT + Duration::from_secs(2));
    drop(silent);
}
