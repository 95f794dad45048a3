//! Manager-protocol helpers: a server config with the manager on, and one
//! association's exchange, pinned to the byte.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use actor_socks::config::Config;
use actor_socks::server::Server;
use actor_socks::transport::{Association, TransportKind};

use super::*;

pub const ADMIN: (&str, &str) = ("admin", "admin-secret");

pub fn mgr_config() -> Config {
    let mut c = config();
    c.admin = Some(user(ADMIN.0, ADMIN.1));
    c.manager_bind = vec!["127.0.0.1:0".parse().unwrap()];
    c.manager_transport = TransportKind::Udp;
    c
}

pub fn manager_addr(server: &Server) -> SocketAddr {
    server.manager.expect("manager listening").0
}

pub fn auth_msg(user: &str, pass: &str) -> Vec<u8> {
    let mut v = vec![0x01, user.len() as u8];
    v.extend_from_slice(user.as_bytes());
    v.push(pass.len() as u8);
    v.extend_from_slice(pass.as_bytes());
    v
}

pub fn add_user_msg(user: &str, pass: &str) -> Vec<u8> {
    let mut v = vec![0x05, 0x00, user.len() as u8];
    v.extend_from_slice(user.as_bytes());
    v.push(pass.len() as u8);
    v.extend_from_slice(pass.as_bytes());
    v
}

pub fn set_max_msg(n: u32) -> Vec<u8> {
    let mut v = vec![0x05, 0x03, 0x04];
    v.extend_from_slice(&n.to_be_bytes());
    v
}

pub async fn recv(a: &mut Association) -> Option<Vec<u8>> {
    tokio::time::timeout(Duration::from_secs(5), a.recv_msg())
        .await
        .expect("manager reply timed out")
        .expect("receive failed")
        .map(|b| b.to_vec())
}

/// One association: authenticate as `creds`, send `request`; returns the auth
/// reply, the request's reply (None when the server closed instead), and
/// whether the server then closed.
pub async fn exchange(
    addr: SocketAddr,
    creds: (&str, &str),
    request: &[u8],
) -> (Vec<u8>, Option<Vec<u8>>) {
    exchange_from(addr, "0.0.0.0".parse().unwrap(), creds, request).await
}

/// [`exchange`] from the local address `from` (127.0.0.2, say).
pub async fn exchange_from(
    addr: SocketAddr,
    from: IpAddr,
    creds: (&str, &str),
    request: &[u8],
) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut a = Association::connect_udp_from(addr, from).await.unwrap();
    a.send_msg(&auth_msg(creds.0, creds.1)).await.unwrap();
    let auth = recv(&mut a).await.expect("auth reply");
    if auth != [0x05, 0x00] {
        assert_eq!(
            recv(&mut a).await,
            None,
            "server closes after a failed auth"
        );
        return (auth, None);
    }
    a.send_msg(request).await.unwrap();
    let reply = recv(&mut a).await;
    if reply.is_some() {
        assert_eq!(recv(&mut a).await, None, "one request per association");
    }
    (auth, reply)
}

pub async fn command(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let (auth, reply) = exchange(addr, ADMIN, request).await;
    assert_eq!(auth, [0x05, 0x00]);
    reply.expect("a reply")
}
