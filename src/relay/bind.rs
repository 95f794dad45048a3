//! BIND (RFC 1928 section 4): a listening socket for one session, which
//! accepts one incoming connection, only from the host the request named.
//!
//! The socket listens on the control connection's local address (an address
//! the client can reach, never the wildcard) on a fresh port. It closes when
//! the [`BindListener`] is dropped, whatever path the session takes. The
//! target rules apply to the peer: a request naming a denied host is refused
//! ("not allowed by ruleset"), and with no host named a denied peer is turned
//! away like a stranger.

use std::io;
use std::net::{IpAddr, SocketAddr};
use tokio::net::{TcpListener, TcpStream};

use crate::protocol::socks5::Address;
use crate::relay::connect::{self, ConnectError};
use crate::rules::Rules;

/// The session's BIND socket and who may connect to it.
pub struct BindListener {
    listener: TcpListener,
    /// `None`: anyone (the request named no host, e.g. 0.0.0.0).
    allowed: Option<Vec<IpAddr>>,
    /// The target rules, which every peer must also pass.
    rules: Rules,
}

/// Which peer IPs a BIND request allows: the named IP, every address a
/// named host resolves to (those `rules` permit), or anyone for an
/// unspecified address.
pub async fn allowed_peers(
    target: &Address,
    rules: &Rules,
) -> Result<Option<Vec<IpAddr>>, ConnectError> {
    match target {
        Address::Ip(sa) if sa.ip().is_unspecified() => Ok(None),
        Address::Ip(_) | Address::Domain(..) => {
            // By address only: BIND's port is where the peer connects from.
            let ips: Vec<IpAddr> = connect::resolve(target)
                .await?
                .iter()
                .map(|a| crate::rules::canonical(a.ip()))
                .filter(|ip| rules.permits(*ip))
                .collect();
            if ips.is_empty() {
                return Err(ConnectError::not_allowed(target));
            }
            Ok(Some(ips))
        }
    }
}

impl BindListener {
    /// Listens on `local_ip` (the control connection's local address).
    pub async fn open(
        local_ip: IpAddr,
        allowed: Option<Vec<IpAddr>>,
        rules: Rules,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::new(local_ip, 0)).await?;
        Ok(BindListener {
            listener,
            allowed,
            rules,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts the first connection from an allowed host that the rules
    /// permit. Others are closed at once and counted in `refused`; the wait
    /// goes on.
    pub async fn accept(&self, refused: &mut u64) -> io::Result<(TcpStream, SocketAddr)> {
        loop {
            let (stream, peer) = self.listener.accept().await?;
            let ok = match &self.allowed {
                None => true,
                Some(ips) => ips.contains(&crate::rules::canonical(peer.ip())),
            } && self.rules.permits(peer.ip());
            if ok {
                let _ = stream.set_nodelay(true);
                return Ok((stream, peer));
            }
            *refused += 1;
            drop(stream);
        }
    }
}
