//! BIND (RFC 1928 section 4): a listening socket for one session, which
//! accepts one incoming connection, only from the host the request named.
//!
//! The socket listens on the control connection's local address (an address
//! the client can reach, never the wildcard) on a fresh port. It closes when
//! the [`BindListener`] is dropped, whatever path the session takes.

use std::io;
use std::net::{IpAddr, SocketAddr};
use tokio::net::{TcpListener, TcpStream};

use crate::protocol::socks5::Address;
use crate::relay::connect::{self, ConnectError};

/// The session's BIND socket and who may connect to it.
pub struct BindListener {
    listener: TcpListener,
    /// `None`: anyone (the request named no host, e.g. 0.0.0.0).
    allowed: Option<Vec<IpAddr>>,
}

/// Which peer IPs a BIND request allows: the named IP, every address a
/// named host resolves to, or anyone for an unspecified address.
pub async fn allowed_peers(target: &Address) -> Result<Option<Vec<IpAddr>>, ConnectError> {
    match target {
        Address::Ip(sa) if sa.ip().is_unspecified() => Ok(None),
        Address::Ip(sa) => Ok(Some(vec![sa.ip().to_canonical()])),
        Address::Domain(..) => {
            let addrs = connect::resolve(target).await?;
            Ok(Some(addrs.iter().map(|a| a.ip().to_canonical()).collect()))
        }
    }
}

impl BindListener {
    /// Listens on `local_ip` (the control connection's local address).
    pub async fn open(local_ip: IpAddr, allowed: Option<Vec<IpAddr>>) -> io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::new(local_ip, 0)).await?;
        Ok(BindListener { listener, allowed })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts the first connection from an allowed host. Others are closed
    /// at once and counted in `refused`; the wait goes on.
    pub async fn accept(&self, refused: &mut u64) -> io::Result<(TcpStream, SocketAddr)> {
        loop {
            let (stream, peer) = self.listener.accept().await?;
            let ok = match &self.allowed {
                None => true,
                Some(ips) => ips.contains(&peer.ip().to_canonical()),
            };
            if ok {
                let _ = stream.set_nodelay(true);
                return Ok((stream, peer));
            }
            *refused += 1;
            drop(stream);
        }
    }
}
