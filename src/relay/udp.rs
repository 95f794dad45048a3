//! UDP ASSOCIATE (RFC 1928 section 7): one relay per association.
//!
//! The client-facing socket listens on the control connection's local
//! address; targets are reached from a separate outbound socket per address
//! family, so a datagram's socket tells which way it goes. Only the client
//! may use the relay: its address is fixed by the request's DST.ADDR/DST.PORT
//! when given, otherwise by the first datagram from the control connection's
//! peer IP. Only targets the client has sent to may answer. Datagrams with
//! FRAG != 0 are dropped (fragmentation is optional in the RFC) and counted,
//! and so are datagrams to destinations the target rules do not permit.
//! Outbound sockets bind to the `--outgoing-ip` of their family, if set.
//! The association ends with its TCP control connection or when idle.

use bytes::{BufMut, BytesMut};
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

use crate::protocol::socks5::{Address, UdpHeader};
use crate::relay::connect::{self, Outgoing};
use crate::relay::copy::Traffic;
use crate::rules::Rules;

/// Remembered targets (who may answer) and resolved names, per association.
const MAX_REMEMBERED: usize = 1024;
/// Largest datagram handled.
const MAX_DATAGRAM: usize = 65_536;

/// Datagrams dropped, by reason (reported in the access log).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drops {
    pub fragmented: u64,
    pub stranger: u64,
    pub malformed: u64,
    pub unresolved: u64,
    /// The destination is not permitted by the target rules.
    pub denied: u64,
    /// The sender is the client's address, but the client rules refuse it
    /// (a DST.ADDR naming another host that `--allow-client`/`--deny-client`
    /// would have refused).
    pub refused_sender: u64,
    pub send_failed: u64,
}

/// Why a datagram's destination gave no address to send to.
enum Miss {
    Unresolved,
    Denied,
}

/// How an association ended.
#[derive(Debug)]
pub enum UdpEnd {
    ControlClosed,
    Idle,
    Error(io::Error),
}

pub struct UdpRelay {
    client_side: UdpSocket,
    out_v4: Option<UdpSocket>,
    out_v6: Option<UdpSocket>,
    client_ip: IpAddr,
    client_port: Option<u16>,
    sent_to: HashSet<SocketAddr>,
    names: HashMap<(String, u16), SocketAddr>,
    rules: Rules,
    clients: Rules,
    outgoing: Outgoing,
    pub drops: Drops,
}

async fn recv_opt(sock: &Option<UdpSocket>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

impl UdpRelay {
    /// Opens the relay on `local_ip` for a client whose control connection
    /// comes from `control_peer` and whose request named `requested`;
    /// datagrams go only to destinations the target `rules` permit, from the
    /// outgoing source address of their family, and are taken only from
    /// senders the `clients` rules permit.
    pub async fn open(
        local_ip: IpAddr,
        control_peer: SocketAddr,
        requested: &Address,
        rules: Rules,
        clients: Rules,
        outgoing: Outgoing,
    ) -> io::Result<UdpRelay> {
        let client_side = UdpSocket::bind(SocketAddr::new(local_ip, 0)).await?;
        let (client_ip, client_port) = match requested {
            Address::Ip(sa) => {
                let ip = if sa.ip().is_unspecified() {
                    control_peer.ip()
                } else {
                    sa.ip()
                };
                (ip, (sa.port() != 0).then_some(sa.port()))
            }
            Address::Domain(_, port) => (control_peer.ip(), (*port != 0).then_some(*port)),
        };
        Ok(UdpRelay {
            client_side,
            out_v4: None,
            out_v6: None,
            client_ip: client_ip.to_canonical(),
            client_port,
            sent_to: HashSet::new(),
            names: HashMap::new(),
            rules,
            clients,
            outgoing,
            drops: Drops::default(),
        })
    }

    /// The client-facing address (what the reply advertises, unless overridden).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.client_side.local_addr()
    }

    fn client_addr(&self) -> Option<SocketAddr> {
        self.client_port.map(|p| SocketAddr::new(self.client_ip, p))
    }

    /// Is `src` the client? Learns the client's port from its first datagram.
    fn accept_source(&mut self, src: SocketAddr) -> bool {
        if src.ip().to_canonical() != self.client_ip {
            return false;
        }
        match self.client_port {
            Some(p) => p == src.port(),
            None => {
                self.client_port = Some(src.port());
                true
            }
        }
    }

    async fn outbound(&mut self, v6: bool) -> io::Result<&UdpSocket> {
        let any: IpAddr = if v6 {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        };
        let outgoing = self.outgoing;
        let slot = if v6 {
            &mut self.out_v6
        } else {
            &mut self.out_v4
        };
        if slot.is_none() {
            let source = outgoing.source_for(any)?.unwrap_or(any);
            *slot = Some(UdpSocket::bind(SocketAddr::new(source, 0)).await?);
        }
        Ok(slot.as_ref().expect("just set"))
    }

    /// The address to send to: the IP given, or the first permitted address
    /// of a name (remembered: only permitted addresses are).
    async fn resolve(&mut self, target: &Address) -> Result<SocketAddr, Miss> {
        match target {
            Address::Ip(sa) if self.rules.permits_target(*sa) => Ok(*sa),
            Address::Ip(_) => Err(Miss::Denied),
            Address::Domain(name, port) => {
                let key = (name.clone(), *port);
                if let Some(a) = self.names.get(&key) {
                    return Ok(*a);
                }
                let found = connect::resolve(target)
                    .await
                    .map_err(|_| Miss::Unresolved)?;
                let a = connect::permitted(target, found, &self.rules)
                    .ok()
                    .and_then(|v| v.first().copied())
                    .ok_or(Miss::Denied)?;
                if self.names.len() >= MAX_REMEMBERED {
                    self.names.clear();
                }
                self.names.insert(key, a);
                Ok(a)
            }
        }
    }

    /// A datagram from the client side: unwrap and send it on.
    async fn on_client_datagram(&mut self, datagram: &[u8], src: SocketAddr, traffic: &Traffic) {
        if !self.accept_source(src) {
            self.drops.stranger += 1;
            return;
        }
        // The client rules judge every sender, whatever DST.ADDR declared.
        if !self.clients.permits(src.ip()) {
            self.drops.refused_sender += 1;
            return;
        }
        let mut view = datagram;
        let header = match UdpHeader::decode(&mut view) {
            Ok(Some(h)) => h,
            _ => {
                self.drops.malformed += 1;
                return;
            }
        };
        if header.frag != 0 {
            self.drops.fragmented += 1;
            return;
        }
        let target = match self.resolve(&header.address).await {
            // A mapped or compatible IPv6 destination is an IPv4 peer, as
            // the rules judged it: send over IPv4.
            Ok(t) => SocketAddr::new(crate::rules::canonical(t.ip()), t.port()),
            Err(Miss::Unresolved) => {
                self.drops.unresolved += 1;
                return;
            }
            Err(Miss::Denied) => {
                self.drops.denied += 1;
                return;
            }
        };
        let sent = match self.outbound(target.is_ipv6()).await {
            Ok(sock) => sock.send_to(view, target).await,
            Err(e) => Err(e),
        };
        match sent {
            Ok(_) => {
                traffic.add_up(view.len());
                if self.sent_to.len() >= MAX_REMEMBERED {
                    self.sent_to.clear();
                }
                self.sent_to.insert(target);
            }
            Err(_) => self.drops.send_failed += 1,
        }
    }

    /// A datagram from a target: wrap it with the target's address for the client.
    async fn on_target_datagram(&mut self, payload: &[u8], src: SocketAddr, traffic: &Traffic) {
        let Some(client) = self.client_addr() else {
            self.drops.stranger += 1;
            return;
        };
        if !self.sent_to.contains(&src) {
            self.drops.stranger += 1;
            return;
        }
        let header = UdpHeader::new(Address::Ip(src));
        let mut out = BytesMut::with_capacity(header.encoded_len() + payload.len());
        header.encode(&mut out);
        out.put_slice(payload);
        match self.client_side.send_to(&out, client).await {
            Ok(_) => traffic.add_down(payload.len()),
            Err(_) => self.drops.send_failed += 1,
        }
    }

    /// Relays until the control connection closes or nothing moves for `idle`.
    pub async fn run(&mut self, control: &TcpStream, traffic: &Traffic, idle: Duration) -> UdpEnd {
        let mut cbuf = vec![0u8; MAX_DATAGRAM];
        let mut buf4 = vec![0u8; MAX_DATAGRAM];
        let mut buf6 = vec![0u8; MAX_DATAGRAM];
        traffic.touch();
        loop {
            let deadline = traffic.last_activity() + idle;
            tokio::select! {
                r = self.client_side.recv_from(&mut cbuf) => match r {
                    Ok((n, src)) => self.on_client_datagram(&cbuf[..n], src, traffic).await,
                    Err(e) if is_transient(&e) => {}
                    Err(e) => return UdpEnd::Error(e),
                },
                r = recv_opt(&self.out_v4, &mut buf4) => match r {
                    Ok((n, src)) => self.on_target_datagram(&buf4[..n], src, traffic).await,
                    Err(e) if is_transient(&e) => {}
                    Err(e) => return UdpEnd::Error(e),
                },
                r = recv_opt(&self.out_v6, &mut buf6) => match r {
                    Ok((n, src)) => self.on_target_datagram(&buf6[..n], src, traffic).await,
                    Err(e) if is_transient(&e) => {}
                    Err(e) => return UdpEnd::Error(e),
                },
                // The RFC gives the control connection nothing more to say;
                // its close ends the association.
                r = super::wait_closed(control) => return match r {
                    Ok(()) => UdpEnd::ControlClosed,
                    Err(e) => UdpEnd::Error(e),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    if Instant::now() >= traffic.last_activity() + idle {
                        return UdpEnd::Idle;
                    }
                }
            }
        }
    }
}

/// ICMP errors reported on a UDP socket (e.g. a target's port unreachable)
/// end nothing.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::Interrupted
    )
}
