//! Shared test helpers: start the server in-process on port 0, local targets
//! on port 0, and a hand-written SOCKS5 client that pins the wire bytes.
#![allow(dead_code)]

pub mod manager;
pub mod process;

use std::net::SocketAddr;
use std::time::Duration;

use actor_socks::actors::metrics;
use actor_socks::config::Config;
use actor_socks::protocol::{Secret, UserName};
use actor_socks::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};

/// A config bound to 127.0.0.1:0, with no manager, two workers.
pub fn config() -> Config {
    Config {
        bind: vec!["127.0.0.1:0".parse().unwrap()],
        workers: 2,
        handshake_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        ..Config::default()
    }
}

pub fn user(name: &str, pass: &str) -> (UserName, Secret) {
    (UserName::new(name).unwrap(), Secret::new(pass).unwrap())
}

/// Logs to stderr at debug level when `TEST_LOG` is set, else nowhere.
pub fn log() -> slog::Logger {
    if std::env::var_os("TEST_LOG").is_some() {
        actor_socks::logging::init(
            actor_socks::config::LogFormat::Text,
            actor_socks::config::LogLevel::Debug,
        )
    } else {
        actor_socks::logging::discard()
    }
}

pub async fn start(config: Config) -> Server {
    Server::start(config, log()).await.expect("server starts")
}

pub async fn snapshot(server: &Server) -> metrics::Snapshot {
    server.metrics.send(metrics::GetSnapshot).await.unwrap()
}

/// Polls until `f` holds or 5 s pass.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A TCP echo server on `bind` (port 0). Echoes until EOF, then closes.
pub async fn echo_server(bind: &str) -> SocketAddr {
    let l = TcpListener::bind(bind).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A one-page HTTP server: answers every request with `body`.
pub async fn http_server(body: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    body.len(),
                    body
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// Reads exactly `n` bytes (5 s limit).
pub async fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .expect("read timed out")
        .expect("read failed");
    buf
}

/// True when the peer closes (EOF or reset) within 5 s without sending more.
pub async fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// `ATYP ADDR PORT` for a socket address.
pub fn addr_bytes(a: SocketAddr) -> Vec<u8> {
    let mut v = Vec::new();
    match a {
        SocketAddr::V4(a) => {
            v.push(0x01);
            v.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            v.push(0x04);
            v.extend_from_slice(&a.ip().octets());
        }
    }
    v.extend_from_slice(&a.port().to_be_bytes());
    v
}

/// Reads a reply `VER REP RSV ATYP BND.ADDR BND.PORT`; returns (REP, bound).
pub async fn read_reply(s: &mut TcpStream) -> (u8, Option<SocketAddr>) {
    let head = read_n(s, 4).await;
    assert_eq!(head[0], 0x05, "reply version");
    let bound = match head[3] {
        0x01 => {
            let b = read_n(s, 6).await;
            let ip = std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            Some(SocketAddr::new(ip.into(), u16::from_be_bytes([b[4], b[5]])))
        }
        0x04 => {
            let b = read_n(s, 18).await;
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[..16]);
            let ip = std::net::Ipv6Addr::from(o);
            Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([b[16], b[17]]),
            ))
        }
        0x03 => {
            let n = read_n(s, 1).await[0] as usize;
            read_n(s, n + 2).await;
            None
        }
        t => panic!("bad ATYP {t}"),
    };
    (head[1], bound)
}

/// Connects and negotiates: no auth when `creds` is None, else RFC 1929.
/// Panics unless the negotiation succeeds.
pub async fn negotiate(proxy: SocketAddr, creds: Option<(&str, &str)>) -> TcpStream {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    match creds {
        None => {
            s.write_all(&[0x05, 0x01, 0x00]).await.unwrap();
            assert_eq!(read_n(&mut s, 2).await, [0x05, 0x00]);
        }
        Some((u, p)) => {
            s.write_all(&[0x05, 0x01, 0x02]).await.unwrap();
            assert_eq!(read_n(&mut s, 2).await, [0x05, 0x02]);
            s.write_all(&auth_bytes(u, p)).await.unwrap();
            assert_eq!(read_n(&mut s, 2).await, [0x01, 0x00]);
        }
    }
    s
}

pub fn auth_bytes(u: &str, p: &str) -> Vec<u8> {
    let mut v = vec![0x01, u.len() as u8];
    v.extend_from_slice(u.as_bytes());
    v.push(p.len() as u8);
    v.extend_from_slice(p.as_bytes());
    v
}

/// CONNECT request bytes to an IP target.
pub fn connect_ip(target: SocketAddr) -> Vec<u8> {
    let mut v = vec![0x05, 0x01, 0x00];
    v.extend(addr_bytes(target));
    v
}

/// CONNECT request bytes to a domain target.
pub fn connect_domain(name: &str, port: u16) -> Vec<u8> {
    let mut v = vec![0x05, 0x01, 0x00, 0x03, name.len() as u8];
    v.extend_from_slice(name.as_bytes());
    v.extend_from_slice(&port.to_be_bytes());
    v
}

/// Negotiates, sends `request`, returns the stream and the reply.
pub async fn request(
    proxy: SocketAddr,
    creds: Option<(&str, &str)>,
    request: &[u8],
) -> (TcpStream, u8, Option<SocketAddr>) {
    let mut s = negotiate(proxy, creds).await;
    s.write_all(request).await.unwrap();
    let (rep, bound) = read_reply(&mut s).await;
    (s, rep, bound)
}

/// Round trip of `payload` through an established echo tunnel.
pub async fn echo_round_trip(s: &mut TcpStream, payload: &[u8]) {
    s.write_all(payload).await.unwrap();
    let got = read_n(s, payload.len()).await;
    assert_eq!(got, payload);
}

/// BIND request bytes naming `addr`.
pub fn bind_req(addr: SocketAddr) -> Vec<u8> {
    let mut v = vec![0x05, 0x02, 0x00];
    v.extend(addr_bytes(addr));
    v
}

/// UDP ASSOCIATE request bytes naming `addr`.
pub fn udp_req(addr: SocketAddr) -> Vec<u8> {
    let mut v = vec![0x05, 0x03, 0x00];
    v.extend(addr_bytes(addr));
    v
}

/// `RSV RSV FRAG ATYP ADDR PORT DATA`
pub fn udp_datagram(frag: u8, target: &[u8], data: &[u8]) -> Vec<u8> {
    [&[0u8, 0, frag][..], target, data].concat()
}

/// Connects to `to` from source address `from` (port 0).
pub async fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let from: SocketAddr = from.parse().unwrap();
    let s = if from.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    s.bind(from)?;
    s.connect(to).await
}

/// A UDP echo server on `bind`.
pub async fn udp_echo(bind: &str) -> SocketAddr {
    let s = UdpSocket::bind(bind).await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, from)) = s.recv_from(&mut buf).await else {
                return;
            };
            let _ = s.send_to(&buf[..n], from).await;
        }
    });
    addr
}

/// One datagram, or `None` after `ms` milliseconds.
pub async fn recv_timeout(s: &UdpSocket, ms: u64) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    match tokio::time::timeout(Duration::from_millis(ms), s.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// UDP ASSOCIATE for a client socket bound on `bind` (its address given as
/// DST.ADDR); returns the control connection and the client socket,
/// connected to the relay.
pub async fn udp_associate(proxy: SocketAddr, bind: (&str, u16)) -> (TcpStream, UdpSocket) {
    let client = UdpSocket::bind(bind).await.unwrap();
    let (control, rep, relay) = request(proxy, None, &udp_req(client.local_addr().unwrap())).await;
    assert_eq!(rep, 0, "UDP ASSOCIATE refused");
    client.connect(relay.unwrap()).await.unwrap();
    (control, client)
}
