//! Address policy end to end: client rules (`--allow-client`,
//! `--deny-client`), target rules (`--allow-target`, `--deny-target`,
//! `--allow-port`, `--deny-port`) and
//! the outgoing source address (`--outgoing-ip`), on loopback addresses
//! (127.0.0.1 and 127.0.0.2 stand for two networks, or two local addresses).

mod common;

use actor_socks::config::Config;
use actor_socks::relay::connect::Outgoing;
use actor_socks::rules::Rules;
use common::*;
use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;
use tokio::net::UdpSocket;

/// 0x02: connection not allowed by ruleset.
const NOT_ALLOWED: u8 = 0x02;

fn rules(allow: &[&str], deny: &[&str]) -> Rules {
    let nets = |v: &[&str]| v.iter().map(|s| s.parse().unwrap()).collect();
    Rules::new(nets(allow), nets(deny))
}

fn with_targets(allow: &[&str], deny: &[&str]) -> Config {
    let mut c = config();
    c.targets = rules(allow, deny);
    c
}

#[actix_rt::test]
async fn denied_target_gets_not_allowed_and_is_never_reached() {
    let server = start(with_targets(&[], &["127.0.0.2/32"])).await;
    let proxy = server.socks_addrs[0];
    let denied = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let (_s, rep, _) = request(proxy, None, &connect_ip(denied.local_addr().unwrap())).await;
    assert_eq!(rep, NOT_ALLOWED);
    // Nothing connected to the denied target.
    let accepted =
        tokio::time::timeout(std::time::Duration::from_millis(300), denied.accept()).await;
    assert!(accepted.is_err(), "the proxy reached a denied target");
    // Other targets are reached as before.
    let echo = echo_server("127.0.0.1:0").await;
    let (mut s, rep, _) = request(proxy, None, &connect_ip(echo)).await;
    assert_eq!(rep, 0x00);
    echo_round_trip(&mut s, b"permitted").await;
    assert_eq!(snapshot(&server).await.historic, 1);
}

#[actix_rt::test]
async fn port_rules_judge_the_target_port() {
    let open = echo_server("127.0.0.1:0").await;
    let closed_port = echo_server("127.0.0.1:0").await;
    let mut c = config();
    c.targets = Rules::default().with_ports(
        vec![],
        vec![closed_port.port().to_string().parse().unwrap()],
    );
    let server = start(c).await;
    let proxy = server.socks_addrs[0];
    let (_s, rep, _) = request(proxy, None, &connect_ip(closed_port)).await;
    assert_eq!(rep, NOT_ALLOWED);
    let by_name = connect_domain("localhost", closed_port.port());
    let (_s, rep, _) = request(proxy, None, &by_name).await;
    assert_eq!(rep, NOT_ALLOWED, "by name too");
    let (mut s, rep, _) = request(proxy, None, &connect_ip(open)).await;
    assert_eq!(rep, 0x00);
    echo_round_trip(&mut s, b"other port").await;
    // UDP: a datagram to the denied port is dropped, another goes through.
    let udp_denied = udp_echo(&format!("127.0.0.1:{}", closed_port.port())).await;
    udp_drops_the_first_relays_the_second(proxy, udp_denied, udp_echo("127.0.0.1:0").await).await;
    // BIND's port says where the peer connects from: port rules ignore it.
    let (_control, rep, _) = request(proxy, None, &bind_req(closed_port)).await;
    assert_eq!(rep, 0x00, "BIND is judged by address only");
}

#[actix_rt::test]
async fn allow_list_admits_only_its_networks() {
    let server = start(with_targets(&["127.0.0.1/32"], &[])).await;
    let proxy = server.socks_addrs[0];
    let outside = echo_server("127.0.0.2:0").await;
    let (_s, rep, _) = request(proxy, None, &connect_ip(outside)).await;
    assert_eq!(rep, NOT_ALLOWED);
    let v6 = echo_server("[::1]:0").await;
    let (_s, rep, _) = request(proxy, None, &connect_ip(v6)).await;
    assert_eq!(
        rep, NOT_ALLOWED,
        "an allow list of IPv4 only admits no IPv6"
    );
    let inside = echo_server("127.0.0.1:0").await;
    let (mut s, rep, _) = request(proxy, None, &connect_ip(inside)).await;
    assert_eq!(rep, 0x00);
    echo_round_trip(&mut s, b"inside").await;
}

#[actix_rt::test]
async fn names_are_judged_on_what_they_resolve_to() {
    let echo = echo_server("127.0.0.1:0").await;
    // localhost resolves to 127.0.0.1 (and maybe ::1): all denied.
    let server = start(with_targets(&[], &["127.0.0.0/8", "::1"])).await;
    let by_name = connect_domain("localhost", echo.port());
    let (_s, rep, _) = request(server.socks_addrs[0], None, &by_name).await;
    assert_eq!(rep, NOT_ALLOWED);
    // An IPv4-mapped IPv6 target is judged as the IPv4 address.
    let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{}", echo.port())
        .parse()
        .unwrap();
    let (_s, rep, _) = request(server.socks_addrs[0], None, &connect_ip(mapped)).await;
    assert_eq!(rep, NOT_ALLOWED);
    // Denying ::1 alone leaves the IPv4 address to connect to.
    let server = start(with_targets(&[], &["::1"])).await;
    let (mut s, rep, _) = request(server.socks_addrs[0], None, &by_name).await;
    assert_eq!(rep, 0x00);
    echo_round_trip(&mut s, b"by name").await;
}

#[actix_rt::test]
async fn client_rules_close_denied_clients_before_the_handshake() {
    let mut c = config();
    c.bind = vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
    c.clients = rules(&["127.0.0.0/8"], &["127.0.0.3/32"]);
    let server = start(c).await;
    let (proxy, proxy_v6) = (server.socks_addrs[0], server.socks_addrs[1]);
    let echo = echo_server("127.0.0.1:0").await;

    // Permitted: 127.0.0.2 is in the allow list.
    let mut ok = connect_from("127.0.0.2:0", proxy).await.unwrap();
    ok.write_all(&[0x05, 0x01, 0x00]).await.unwrap();
    assert_eq!(read_n(&mut ok, 2).await, [0x05, 0x00]);
    ok.write_all(&connect_ip(echo)).await.unwrap();
    assert_eq!(read_reply(&mut ok).await.0, 0x00);
    echo_round_trip(&mut ok, b"allowed client").await;

    // Denied: 127.0.0.3 (deny wins over allow), and ::1 (outside the allow list).
    let mut denied = connect_from("127.0.0.3:0", proxy).await.unwrap();
    assert!(closed(&mut denied).await, "denied client was served");
    let mut outside = tokio::net::TcpStream::connect(proxy_v6).await.unwrap();
    assert!(
        closed(&mut outside).await,
        "client outside the allow list was served"
    );
    eventually("denied clients counted", || async {
        let s = snapshot(&server).await;
        s.denied == 2 && s.refused == 0
    })
    .await;
    assert_eq!(
        snapshot(&server).await.active,
        1,
        "denied clients take no slot"
    );
}

#[actix_rt::test]
async fn bind_naming_a_denied_host_is_not_allowed() {
    let server = start(with_targets(&[], &["127.0.0.2/32"])).await;
    let proxy = server.socks_addrs[0];
    let named: SocketAddr = "127.0.0.2:0".parse().unwrap();
    let (_s, rep, _) = request(proxy, None, &bind_req(named)).await;
    assert_eq!(rep, NOT_ALLOWED);
    // BIND for anyone: a peer from a denied address is turned away, the wait
    // goes on, and a permitted peer is accepted.
    let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let (mut control, rep, bound) = request(proxy, None, &bind_req(any)).await;
    assert_eq!(rep, 0x00);
    let bound = bound.unwrap();
    let mut stranger = connect_from("127.0.0.2:0", bound).await.unwrap();
    assert!(closed(&mut stranger).await, "denied peer was accepted");
    let _peer = connect_from("127.0.0.1:0", bound).await.unwrap();
    let (rep, peer) = read_reply(&mut control).await;
    assert_eq!(rep, 0x00);
    assert_eq!(peer.unwrap().ip().to_string(), "127.0.0.1");
}

#[actix_rt::test]
async fn udp_datagrams_to_denied_destinations_are_dropped() {
    let server = start(with_targets(&[], &["127.0.0.2/32"])).await;
    let denied = udp_echo("127.0.0.2:0").await;
    let permitted = udp_echo("127.0.0.1:0").await;
    udp_drops_the_first_relays_the_second(server.socks_addrs[0], denied, permitted).await;
}

/// Through a UDP association: a datagram to `denied` gets no answer, one
/// to `permitted` (an echo) comes back.
async fn udp_drops_the_first_relays_the_second(
    proxy: SocketAddr,
    denied: SocketAddr,
    permitted: SocketAddr,
) {
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = client.local_addr().unwrap();
    let (_control, rep, relay) = request(proxy, None, &udp_req(me)).await;
    assert_eq!(rep, 0x00);
    client.connect(relay.unwrap()).await.unwrap();
    let to_denied = udp_datagram(0, &addr_bytes(denied), b"to denied");
    client.send(&to_denied).await.unwrap();
    assert_eq!(
        recv_timeout(&client, 300).await,
        None,
        "relayed to {denied}"
    );
    let to_permitted = udp_datagram(0, &addr_bytes(permitted), b"to permitted");
    client.send(&to_permitted).await.unwrap();
    let back = recv_timeout(&client, 3000).await.expect("permitted echo");
    assert!(back.ends_with(b"to permitted"));
}

fn from_127_0_0_2() -> Config {
    let mut c = config();
    c.outgoing = Outgoing {
        v4: Some("127.0.0.2".parse().unwrap()),
        v6: None,
    };
    c
}

#[actix_rt::test]
async fn connections_leave_from_the_outgoing_ip() {
    let server = start(from_127_0_0_2()).await;
    let proxy = server.socks_addrs[0];
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (_s, rep, bound) = request(proxy, None, &connect_ip(target.local_addr().unwrap())).await;
    assert_eq!(rep, 0x00);
    assert_eq!(bound.unwrap().ip().to_string(), "127.0.0.2", "BND.ADDR");
    let (_conn, peer) = target.accept().await.unwrap();
    assert_eq!(
        peer.ip().to_string(),
        "127.0.0.2",
        "the target sees the outgoing ip"
    );
    // No IPv6 source configured: IPv6 targets are unreachable, not reached
    // from some other address.
    let v6 = echo_server("[::1]:0").await;
    let (_s, rep, _) = request(proxy, None, &connect_ip(v6)).await;
    assert_eq!(rep, 0x03, "network unreachable");
}

#[actix_rt::test]
async fn datagrams_leave_from_the_outgoing_ip() {
    let server = start(from_127_0_0_2()).await;
    let target = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = client.local_addr().unwrap();
    let (_control, rep, relay) = request(server.socks_addrs[0], None, &udp_req(me)).await;
    assert_eq!(rep, 0x00);
    client.connect(relay.unwrap()).await.unwrap();
    let dg = udp_datagram(0, &addr_bytes(target.local_addr().unwrap()), b"hi");
    client.send(&dg).await.unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        target.recv_from(&mut buf),
    )
    .await
    .expect("datagram relayed")
    .unwrap();
    assert_eq!(&buf[..n], b"hi");
    assert_eq!(from.ip().to_string(), "127.0.0.2");
}
