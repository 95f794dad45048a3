//! BIND and UDP ASSOCIATE on loopback, IPv4 and IPv6, with the hand-written
//! client (wire bytes pinned) and with clients written by others.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

async fn bind_round_trip(bind: &str, loopback: &str) {
    let mut c = config();
    c.bind = vec![bind.parse().unwrap()];
    let server = start(c).await;
    let proxy = server.socks_addrs[0];
    let any: SocketAddr = format!("{loopback}:0").parse().unwrap();
    let (mut control, rep, bound) = request(proxy, None, &bind_req(any)).await;
    assert_eq!(rep, 0x00);
    let bound = bound.unwrap();
    assert_eq!(
        bound.ip(),
        proxy.ip(),
        "listens on the control connection's local address"
    );
    assert_ne!(bound.port(), 0);
    let mut app = TcpStream::connect(bound).await.unwrap();
    let (rep, peer) = read_reply(&mut control).await;
    assert_eq!(rep, 0x00);
    assert_eq!(
        peer.unwrap(),
        app.local_addr().unwrap(),
        "second reply names the peer"
    );
    app.write_all(b"from the peer").await.unwrap();
    assert_eq!(read_n(&mut control, 13).await, b"from the peer");
    control.write_all(b"from the client").await.unwrap();
    assert_eq!(read_n(&mut app, 15).await, b"from the client");
    drop(control);
    assert!(
        closed(&mut app).await,
        "the client's close reaches the peer"
    );
    drop(app);
    // The BIND socket is gone with the session.
    eventually("session over", || async {
        snapshot(&server).await.active == 0
    })
    .await;
    assert!(
        TcpStream::connect(bound).await.is_err(),
        "BIND listener still open"
    );
}

/// Bytes the client sends between BIND's two replies reach the peer first,
/// and a FIN sent before the peer arrives is a half-close delivered after
/// them, not a cancel; the peer can still answer.
#[actix_rt::test]
async fn bind_keeps_bytes_sent_before_the_peer() {
    let server = start(config()).await;
    for half_close in [false, true] {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (mut control, rep, bound) = request(server.socks_addrs[0], None, &bind_req(any)).await;
        assert_eq!(rep, 0x00);
        control.write_all(b"[before-peer]").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        control.write_all(b"[still before]").await.unwrap();
        if half_close {
            control.shutdown().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut app = TcpStream::connect(bound.unwrap()).await.unwrap();
        let (rep, _) = read_reply(&mut control).await;
        assert_eq!(rep, 0x00, "half_close={half_close}");
        if !half_close {
            control.write_all(b"[after]").await.unwrap();
            control.shutdown().await.unwrap();
        }
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), app.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        let want: &[u8] = if half_close {
            b"[before-peer][still before]"
        } else {
            b"[before-peer][still before][after]"
        };
        assert_eq!(got, want, "half_close={half_close}");
        app.write_all(b"answer").await.unwrap();
        drop(app);
        let mut back = Vec::new();
        control.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"answer");
    }
}

/// A BIND peer that sends and then resets: the client gets every byte and
/// then a reset, not a clean EOF, in every relay mode.
#[actix_rt::test]
async fn bind_passes_a_reset_on() {
    use actor_socks::relay::copy::RelayMode;
    for mode in [RelayMode::Copy, RelayMode::Splice, RelayMode::Auto] {
        let mut c = config();
        c.relay = mode;
        let server = start(c).await;
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (mut control, rep, bound) = request(server.socks_addrs[0], None, &bind_req(any)).await;
        assert_eq!(rep, 0x00);
        let mut app = TcpStream::connect(bound.unwrap()).await.unwrap();
        assert_eq!(read_reply(&mut control).await.0, 0x00);
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        app.write_all(&payload).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        socket2::SockRef::from(&app)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(app);
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 65536];
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(5), control.read(&mut chunk)).await {
                Ok(Ok(0)) => break "eof",
                Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => break "reset",
                other => panic!("{mode:?}: {other:?}"),
            }
        };
        assert!(got == payload, "{mode:?}: {} bytes", got.len());
        assert_eq!(end, "reset", "{mode:?}");
    }
}

#[actix_rt::test]
async fn bind_ipv4() {
    bind_round_trip("127.0.0.1:0", "0.0.0.0").await;
}

#[actix_rt::test]
async fn bind_ipv6() {
    bind_round_trip("[::1]:0", "[::]").await;
}

#[actix_rt::test]
async fn bind_refuses_another_host_and_keeps_waiting() {
    let server = start(config()).await;
    let expected: SocketAddr = "127.0.0.2:0".parse().unwrap();
    let (mut control, rep, bound) = request(server.socks_addrs[0], None, &bind_req(expected)).await;
    assert_eq!(rep, 0);
    let bound = bound.unwrap();
    // 127.0.0.1 is not the host the request named: refused.
    let mut stranger = connect_from("127.0.0.1:0", bound).await.unwrap();
    assert!(closed(&mut stranger).await, "stranger must be closed");
    // 127.0.0.2 is.
    let mut app = connect_from("127.0.0.2:0", bound).await.unwrap();
    let (rep, peer) = read_reply(&mut control).await;
    assert_eq!(rep, 0);
    assert_eq!(peer.unwrap().ip().to_string(), "127.0.0.2");
    app.write_all(b"ok").await.unwrap();
    assert_eq!(read_n(&mut control, 2).await, b"ok");
}

#[actix_rt::test]
async fn bind_times_out_with_ttl_expired() {
    let mut c = config();
    c.bind_timeout = Duration::from_millis(300);
    let server = start(c).await;
    let (mut control, rep, bound) = request(
        server.socks_addrs[0],
        None,
        &bind_req("0.0.0.0:0".parse().unwrap()),
    )
    .await;
    assert_eq!(rep, 0);
    let (rep, _) = read_reply(&mut control).await;
    assert_eq!(rep, 0x06);
    assert!(closed(&mut control).await);
    assert!(TcpStream::connect(bound.unwrap()).await.is_err());
}

async fn udp_round_trip(bind: &str, loopback: &str, by_name: bool) {
    let mut c = config();
    c.bind = vec![bind.parse().unwrap()];
    let server = start(c).await;
    let echo = udp_echo(&format!("{loopback}:0")).await;
    let client = UdpSocket::bind(format!("{loopback}:0")).await.unwrap();
    let me = client.local_addr().unwrap();
    let (control, rep, relay) = request(server.socks_addrs[0], None, &udp_req(me)).await;
    assert_eq!(rep, 0);
    let relay = relay.unwrap();
    assert_eq!(relay.ip(), server.socks_addrs[0].ip());
    client.connect(relay).await.unwrap();
    let target = if by_name {
        let mut t = vec![0x03, 9];
        t.extend_from_slice(b"localhost");
        t.extend_from_slice(&echo.port().to_be_bytes());
        t
    } else {
        addr_bytes(echo)
    };
    client
        .send(&udp_datagram(0, &target, b"udp payload"))
        .await
        .unwrap();
    let back = recv_timeout(&client, 3000)
        .await
        .expect("echo through the relay");
    // The reply carries the target's address, then the data.
    let mut expect = vec![0, 0, 0];
    expect.extend(addr_bytes(echo));
    expect.extend_from_slice(b"udp payload");
    if by_name && echo.is_ipv4() {
        // localhost may resolve to either family; the echo listens on one.
        assert_eq!(&back[back.len() - 11..], b"udp payload");
    } else {
        assert_eq!(back, expect);
    }
    // Fragmented datagrams are dropped.
    client
        .send(&udp_datagram(1, &addr_bytes(echo), b"frag"))
        .await
        .unwrap();
    assert_eq!(recv_timeout(&client, 300).await, None);
    eventually("bytes counted", || async {
        snapshot(&server).await.bytes == 22
    })
    .await;
    // The relay is gone with the control connection.
    drop(control);
    eventually("association over", || async {
        snapshot(&server).await.active == 0
    })
    .await;
    client
        .send(&udp_datagram(0, &addr_bytes(echo), b"late"))
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(2), client.recv(&mut buf)).await;
    assert!(
        matches!(r, Ok(Err(ref e)) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "relay socket should be closed: {r:?}"
    );
}

#[actix_rt::test]
async fn udp_ipv4() {
    udp_round_trip("127.0.0.1:0", "127.0.0.1", false).await;
}

#[actix_rt::test]
async fn udp_ipv6() {
    udp_round_trip("[::1]:0", "[::1]", false).await;
}

#[actix_rt::test]
async fn udp_domain_target() {
    udp_round_trip("127.0.0.1:0", "127.0.0.1", true).await;
}

#[actix_rt::test]
async fn udp_stranger_is_dropped() {
    let server = start(config()).await;
    let echo = udp_echo("127.0.0.1:0").await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (_control, rep, relay) = request(
        server.socks_addrs[0],
        None,
        &udp_req(client.local_addr().unwrap()),
    )
    .await;
    assert_eq!(rep, 0);
    let relay = relay.unwrap();
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    stranger.connect(relay).await.unwrap();
    stranger
        .send(&udp_datagram(0, &addr_bytes(echo), b"not yours"))
        .await
        .unwrap();
    assert_eq!(recv_timeout(&stranger, 300).await, None);
    // The real client still works.
    client.connect(relay).await.unwrap();
    client
        .send(&udp_datagram(0, &addr_bytes(echo), b"mine"))
        .await
        .unwrap();
    assert!(recv_timeout(&client, 3000)
        .await
        .unwrap()
        .ends_with(b"mine"));
    eventually("only the client's bytes", || async {
        snapshot(&server).await.bytes == 8
    })
    .await;
}

#[actix_rt::test]
async fn udp_client_learned_from_first_datagram() {
    let server = start(config()).await;
    let echo = udp_echo("127.0.0.1:0").await;
    let (_control, rep, relay) = request(
        server.socks_addrs[0],
        None,
        &udp_req("0.0.0.0:0".parse().unwrap()),
    )
    .await;
    assert_eq!(rep, 0);
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(relay.unwrap()).await.unwrap();
    client
        .send(&udp_datagram(0, &addr_bytes(echo), b"first"))
        .await
        .unwrap();
    assert!(recv_timeout(&client, 3000)
        .await
        .unwrap()
        .ends_with(b"first"));
}

#[actix_rt::test]
async fn udp_advertise_overrides_the_reply_address() {
    let mut c = config();
    c.udp_advertise = Some("192.0.2.7".parse().unwrap());
    let server = start(c).await;
    let (_control, rep, relay) = request(
        server.socks_addrs[0],
        None,
        &udp_req("0.0.0.0:0".parse().unwrap()),
    )
    .await;
    assert_eq!(rep, 0);
    assert_eq!(relay.unwrap().ip().to_string(), "192.0.2.7");
}

#[actix_rt::test]
async fn socks_crate_bind_and_udp() {
    let server = start(config()).await;
    let proxy = server.socks_addrs[0];
    let echo = udp_echo("127.0.0.1:0").await;
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        // UDP ASSOCIATE with the socks crate's Socks5Datagram.
        let d = socks::Socks5Datagram::bind(proxy, "127.0.0.1:0").unwrap();
        d.get_ref()
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        d.send_to(b"crate udp", echo).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = d.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"crate udp");
        assert_eq!(from.to_socket_addrs_first(), echo);
        // BIND with Socks5Listener.
        let l = socks::Socks5Listener::bind(proxy, "127.0.0.1:0").unwrap();
        let bound = l.proxy_addr().to_socket_addrs_first();
        let t = std::thread::spawn(move || {
            let mut app = std::net::TcpStream::connect(bound).unwrap();
            app.write_all(b"bound").unwrap();
        });
        let mut s = l.accept().unwrap();
        let mut got = [0u8; 5];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"bound");
        t.join().unwrap();
    })
    .await
    .unwrap();
}

trait FirstAddr {
    fn to_socket_addrs_first(&self) -> SocketAddr;
}

impl FirstAddr for socks::TargetAddr {
    fn to_socket_addrs_first(&self) -> SocketAddr {
        match self {
            socks::TargetAddr::Ip(a) => *a,
            socks::TargetAddr::Domain(..) => panic!("proxy returned a domain"),
        }
    }
}

#[actix_rt::test]
async fn pysocks_udp_client() {
    let server = start(config()).await;
    let proxy = server.socks_addrs[0];
    let echo = udp_echo("127.0.0.1:0").await;
    let script = format!(
        r#"
import socks, socket
s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
s.set_proxy(socks.SOCKS5, "127.0.0.1", {pport})
s.settimeout(3)
s.sendto(b"pysocks udp", ("127.0.0.1", {eport}))
data, addr = s.recvfrom(1024)
assert data == b"pysocks udp", data
assert addr == ("127.0.0.1", {eport}), addr
print("ok")
"#,
        pport = proxy.port(),
        eport = echo.port()
    );
    let out = tokio::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .await
        .expect("python3 is installed (.ci/run installs python3-socks)");
    assert!(
        out.status.success() && out.stdout.starts_with(b"ok"),
        "pysocks failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[actix_rt::test]
async fn unknown_command_still_0x07() {
    let server = start(config()).await;
    let mut s = negotiate(server.socks_addrs[0], None).await;
    s.write_all(&[0x05, 0x04, 0x00, 0x01, 127, 0, 0, 1, 0, 80])
        .await
        .unwrap();
    let (rep, _) = read_reply(&mut s).await;
    assert_eq!(rep, 0x07);
    let mut b = [0u8; 1];
    assert_eq!(s.read(&mut b).await.unwrap_or(0), 0);
}
