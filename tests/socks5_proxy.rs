//! The SOCKS5 proxy end to end, in-process, on loopback port 0.

mod common;

use actor_socks::relay::copy::RelayMode;
use actor_socks::server::Server;
use common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[actix_rt::test]
async fn connect_ipv4_reports_real_bound_address() {
    let server = start(config()).await;
    let proxy = server.socks_addrs[0];
    let echo = echo_server("127.0.0.1:0").await;
    let (mut s, rep, bound) = request(proxy, None, &connect_ip(echo)).await;
    assert_eq!(rep, 0x00);
    let bound = bound.unwrap();
    assert_eq!(bound.ip().to_string(), "127.0.0.1");
    assert_ne!(bound.port(), 0);
    echo_round_trip(&mut s, b"hello through the proxy").await;
}

#[actix_rt::test]
async fn connect_ipv6() {
    let mut c = config();
    c.bind = vec!["[::1]:0".parse().unwrap()];
    let server = start(c).await;
    let echo = echo_server("[::1]:0").await;
    let (mut s, rep, bound) = request(server.socks_addrs[0], None, &connect_ip(echo)).await;
    assert_eq!(rep, 0x00);
    assert!(bound.unwrap().is_ipv6());
    echo_round_trip(&mut s, b"v6").await;
}

#[actix_rt::test]
async fn connect_domain_localhost() {
    let server = start(config()).await;
    let echo = echo_server("127.0.0.1:0").await;
    let (mut s, rep, _) = request(
        server.socks_addrs[0],
        None,
        &connect_domain("localhost", echo.port()),
    )
    .await;
    assert_eq!(rep, 0x00);
    echo_round_trip(&mut s, b"by name").await;
}

#[actix_rt::test]
async fn data_sent_right_after_the_request_is_not_lost() {
    let server = start(config()).await;
    let echo = echo_server("127.0.0.1:0").await;
    let mut s = negotiate(server.socks_addrs[0], None).await;
    let mut req = connect_ip(echo);
    req.extend_from_slice(b"early bytes");
    s.write_all(&req).await.unwrap();
    let (rep, _) = read_reply(&mut s).await;
    assert_eq!(rep, 0x00);
    assert_eq!(read_n(&mut s, 11).await, b"early bytes");
}

#[actix_rt::test]
async fn username_password_success_and_failure() {
    let mut c = config();
    c.users = vec![user("alice", "wonderland")];
    let server = start(c).await;
    let proxy = server.socks_addrs[0];
    let echo = echo_server("127.0.0.1:0").await;

    let (mut s, rep, _) = request(proxy, Some(("alice", "wonderland")), &connect_ip(echo)).await;
    assert_eq!(rep, 0x00);
    echo_round_trip(&mut s, b"authenticated").await;

    // Wrong password: non-zero status, then the server closes.
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(&[0x05, 0x02, 0x00, 0x02]).await.unwrap();
    assert_eq!(
        read_n(&mut s, 2).await,
        [0x05, 0x02],
        "server insists on user/pass"
    );
    s.write_all(&auth_bytes("alice", "wrong")).await.unwrap();
    let status = read_n(&mut s, 2).await;
    assert_eq!(status[0], 0x01);
    assert_ne!(status[1], 0x00);
    assert!(closed(&mut s).await);

    // Unknown user.
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(&[0x05, 0x01, 0x02]).await.unwrap();
    read_n(&mut s, 2).await;
    s.write_all(&auth_bytes("mallory", "wonderland"))
        .await
        .unwrap();
    assert_ne!(read_n(&mut s, 2).await[1], 0x00);
    assert!(closed(&mut s).await);
}

#[actix_rt::test]
async fn reload_without_a_users_file_is_refused() {
    let mut c = config();
    c.users = vec![user("alice", "wonderland")];
    let server = start(c).await;
    let err = server.reload_users().await.unwrap_err();
    assert!(err.contains("no --users-file"), "{err}");
    let users = server
        .registry
        .send(actor_socks::actors::registry::ListUsers)
        .await
        .unwrap();
    assert_eq!(users, vec!["alice"]);
}

#[actix_rt::test]
async fn no_acceptable_method() {
    let mut c = config();
    c.users = vec![user("alice", "pw")];
    let server = start(c).await;
    let mut s = TcpStream::connect(server.socks_addrs[0]).await.unwrap();
    // Offers only NO AUTH while users exist.
    s.write_all(&[0x05, 0x01, 0x00]).await.unwrap();
    assert_eq!(read_n(&mut s, 2).await, [0x05, 0xFF]);
    assert!(closed(&mut s).await);
}

/// A greeting with NMETHODS = 0 offers nothing: answered "no acceptable
/// method" before the close, with or without users, whole or split.
#[actix_rt::test]
async fn a_greeting_offering_no_method_gets_ff() {
    let mut c = config();
    c.users = vec![user("alice", "pw")];
    for server in [start(config()).await, start(c).await] {
        for split in [false, true] {
            let mut s = TcpStream::connect(server.socks_addrs[0]).await.unwrap();
            if split {
                s.write_all(&[0x05]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                s.write_all(&[0x00]).await.unwrap();
            } else {
                s.write_all(&[0x05, 0x00]).await.unwrap();
            }
            assert_eq!(read_n(&mut s, 2).await, [0x05, 0xFF]);
            assert!(closed(&mut s).await);
        }
    }
}

#[actix_rt::test]
async fn wrong_version_is_closed() {
    let server = start(config()).await;
    let mut s = TcpStream::connect(server.socks_addrs[0]).await.unwrap();
    s.write_all(&[0x04, 0x01, 0x00, 0x50, 127, 0, 0, 1, 0])
        .await
        .unwrap();
    assert!(closed(&mut s).await);
}

#[actix_rt::test]
async fn reply_code_connection_refused() {
    let server = start(config()).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (mut s, rep, _) = request(server.socks_addrs[0], None, &connect_ip(dead)).await;
    assert_eq!(rep, 0x05);
    assert!(closed(&mut s).await);
}

#[actix_rt::test]
async fn reply_code_unresolvable_name() {
    let server = start(config()).await;
    let (_, rep, _) = request(
        server.socks_addrs[0],
        None,
        &connect_domain("no-such-host.invalid", 80),
    )
    .await;
    assert_eq!(rep, 0x04);
}

#[actix_rt::test]
async fn reply_code_connect_timeout() {
    // A listener with a full accept queue drops SYNs: connect hangs.
    let target = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    target
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    target.listen(0).unwrap();
    let taddr = target.local_addr().unwrap().as_socket().unwrap();
    let _filler = std::net::TcpStream::connect(taddr).unwrap();
    let mut c = config();
    c.connect_timeout = Duration::from_millis(500);
    let server = start(c).await;
    let t0 = std::time::Instant::now();
    let (_, rep, _) = request(server.socks_addrs[0], None, &connect_ip(taddr)).await;
    assert_eq!(rep, 0x06);
    assert!(t0.elapsed() >= Duration::from_millis(450));
}

#[actix_rt::test]
async fn reply_code_command_not_supported() {
    let server = start(config()).await;
    let mut req = connect_ip("127.0.0.1:9".parse().unwrap());
    req[1] = 0x09;
    let (mut s, rep, _) = request(server.socks_addrs[0], None, &req).await;
    assert_eq!(rep, 0x07);
    assert!(closed(&mut s).await);
}

#[actix_rt::test]
async fn reply_code_address_type_not_supported() {
    let server = start(config()).await;
    let (mut s, rep, _) = request(
        server.socks_addrs[0],
        None,
        &[0x05, 0x01, 0x00, 0x07, 1, 2, 3, 4, 0, 80],
    )
    .await;
    assert_eq!(rep, 0x08);
    assert!(closed(&mut s).await);
}

#[actix_rt::test]
async fn stalled_handshake_is_dropped() {
    let mut c = config();
    c.handshake_timeout = Duration::from_millis(300);
    let server = start(c).await;
    let mut s = TcpStream::connect(server.socks_addrs[0]).await.unwrap();
    s.write_all(&[0x05, 0x02]).await.unwrap(); // greeting cut short
    let t0 = std::time::Instant::now();
    assert!(closed(&mut s).await);
    assert!(t0.elapsed() >= Duration::from_millis(250));
    eventually("active back to 0", || async {
        snapshot(&server).await.active == 0
    })
    .await;
}

/// Two clients from 127.0.0.1 through to `echo`, then a third that the
/// server closes at once (counted as refused). Returns the two.
async fn two_admitted_third_refused(server: &Server, echo: SocketAddr) -> (TcpStream, TcpStream) {
    let proxy = server.socks_addrs[0];
    let (a, rep, _) = request(proxy, None, &connect_ip(echo)).await;
    assert_eq!(rep, 0);
    let (b, rep, _) = request(proxy, None, &connect_ip(echo)).await;
    assert_eq!(rep, 0);
    // The third is closed at once, never served.
    let mut third = TcpStream::connect(proxy).await.unwrap();
    let _ = third.write_all(&[0x05, 0x01, 0x00]).await;
    assert!(closed(&mut third).await);
    eventually("refusal counted", || async {
        snapshot(server).await.refused == 1
    })
    .await;
    (a, b)
}

#[actix_rt::test]
async fn max_clients_per_ip_refuses_only_that_address() {
    let mut c = config();
    c.max_clients_per_ip = 2;
    let server = start(c).await;
    let proxy = server.socks_addrs[0];
    let echo = echo_server("127.0.0.1:0").await;
    // A third from 127.0.0.1 is closed at once...
    let (mut a, _b) = two_admitted_third_refused(&server, echo).await;
    // ...while another address is served.
    let mut other = connect_from("127.0.0.2:0", proxy).await.unwrap();
    other.write_all(&[0x05, 0x01, 0x00]).await.unwrap();
    assert_eq!(read_n(&mut other, 2).await, [0x05, 0x00]);
    echo_round_trip(&mut a, b"still served").await;
    // One from 127.0.0.1 closes: that address may connect again.
    drop(a);
    eventually("a's place given back", || async {
        snapshot(&server).await.active == 2
    })
    .await;
    let (mut again, rep, _) = request(proxy, None, &connect_ip(echo)).await;
    assert_eq!(rep, 0);
    echo_round_trip(&mut again, b"admitted again").await;
}

#[actix_rt::test]
async fn max_clients_refuses_then_admits_again() {
    let mut c = config();
    c.max_clients = 2;
    let server = start(c).await;
    let proxy = server.socks_addrs[0];
    let echo = echo_server("127.0.0.1:0").await;
    let (mut a, mut b) = two_admitted_third_refused(&server, echo).await;
    echo_round_trip(&mut a, b"still served").await;
    // One closes; a new client is admitted again.
    drop(b.shutdown().await);
    drop(b);
    eventually("one slot free", || async {
        snapshot(&server).await.active == 1
    })
    .await;
    let (mut d, rep, _) = request(proxy, None, &connect_ip(echo)).await;
    assert_eq!(rep, 0);
    echo_round_trip(&mut d, b"admitted again").await;
}

#[actix_rt::test]
async fn metrics_count_sessions_and_exact_bytes() {
    let server = start(config()).await;
    let proxy = server.socks_addrs[0];
    let echo = echo_server("127.0.0.1:0").await;
    let mut moved = 0u64;
    for i in 0..5usize {
        let (mut s, rep, _) = request(proxy, None, &connect_ip(echo)).await;
        assert_eq!(rep, 0);
        let payload = vec![i as u8; 10_000 * (i + 1)];
        echo_round_trip(&mut s, &payload).await;
        moved += 2 * payload.len() as u64; // up and back down
    }
    // A failed request is not historic.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (_, rep, _) = request(proxy, None, &connect_ip(dead)).await;
    assert_eq!(rep, 0x05);
    eventually("all sessions closed, bytes exact", || async {
        let s = snapshot(&server).await;
        s.active == 0 && s.bytes == moved && s.historic == 5
    })
    .await;
}

#[actix_rt::test]
async fn live_session_bytes_counted_within_a_second() {
    let server = start(config()).await;
    let echo = echo_server("127.0.0.1:0").await;
    let (mut s, _, _) = request(server.socks_addrs[0], None, &connect_ip(echo)).await;
    echo_round_trip(&mut s, &[1u8; 4096]).await;
    let t0 = std::time::Instant::now();
    eventually("live bytes reported", || async {
        snapshot(&server).await.bytes == 8192
    })
    .await;
    // Counted as relayed: seen well before the session ends (slack for a
    // loaded machine; without live counting `eventually` would time out).
    assert!(t0.elapsed() < Duration::from_millis(2500));
    let snap = snapshot(&server).await;
    assert_eq!(snap.active, 1);
    drop(s);
}

/// An idle session ends after the idle timeout, not up to twice it (the
/// kernels' last ACKs used to restart the whole period).
#[actix_rt::test]
async fn idle_session_is_closed() {
    let mut c = config();
    c.idle_timeout = Duration::from_millis(800);
    let server = start(c).await;
    let echo = echo_server("127.0.0.1:0").await;
    let (mut s, _, _) = request(server.socks_addrs[0], None, &connect_ip(echo)).await;
    echo_round_trip(&mut s, b"x").await;
    let t0 = std::time::Instant::now();
    assert!(closed(&mut s).await);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(1400),
        "ended after {took:?} for an idle timeout of 800 ms"
    );
    eventually("active back to 0", || async {
        snapshot(&server).await.active == 0
    })
    .await;
}

#[actix_rt::test]
async fn large_transfer_both_ways_is_intact_copy() {
    large_transfer_both_ways_is_intact(RelayMode::Copy).await;
}

#[actix_rt::test]
async fn large_transfer_both_ways_is_intact_splice() {
    large_transfer_both_ways_is_intact(RelayMode::Splice).await;
}

/// `auto` switches between copy and splice at burst boundaries, both ways:
/// four echoed transfers at once on one worker, so bursts overlap.
#[actix_rt::test]
async fn large_transfers_at_once_are_intact_auto() {
    let mut c = config();
    c.relay = RelayMode::Auto;
    c.workers = 1;
    let server = start(c).await;
    let echo = echo_server("127.0.0.1:0").await;
    let all = (0..4).map(|_| transfer_through(server.socks_addrs[0], echo));
    futures::future::join_all(all).await;
}

async fn large_transfer_both_ways_is_intact(mode: RelayMode) {
    let mut c = config();
    c.relay = mode;
    let server = start(c).await;
    let echo = echo_server("127.0.0.1:0").await;
    transfer_through(server.socks_addrs[0], echo).await;
}

/// 8 MB through the proxy to an echo server and back, compared byte by byte.
async fn transfer_through(proxy: SocketAddr, echo: SocketAddr) {
    let (s, _, _) = request(proxy, None, &connect_ip(echo)).await;
    let (mut r, mut w) = s.into_split();
    let data: Vec<u8> = (0..8_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let expect = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert!(got == expect, "payload corrupted");
}

#[actix_rt::test]
async fn an_address_in_use_is_an_error_not_a_shared_port() {
    let first = start(config()).await;
    let mut c = config();
    c.bind = vec![first.socks_addrs[0]];
    let err = actor_socks::server::Server::start(c, log())
        .await
        .err()
        .expect("must fail");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().contains("cannot bind"), "{err}");
}
