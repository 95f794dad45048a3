//! Resolve a SOCKS target and connect to it.
//!
//! Domain names resolve asynchronously (the system resolver on the blocking
//! pool, so `/etc/hosts` and nsswitch apply). Every resolved address is tried,
//! IPv6 and IPv4 interleaved, each attempt given a head start of
//! [`ATTEMPT_DELAY`] before the next one begins (RFC 8305 "happy eyeballs");
//! the first to connect wins, and the whole thing is bounded by the connect
//! timeout. Failures become the SOCKS reply code that names the real error.
//! Addresses the target rules do not permit are never tried; a target with
//! none permitted gets "not allowed by ruleset". With `--outgoing-ip` the
//! outbound socket is bound to the configured source address of the
//! target's family first; a family with none configured is unreachable.

use futures::stream::{FuturesUnordered, StreamExt};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};

use crate::protocol::socks5::{Address, ReplyCode};
use crate::rules::Rules;

/// RFC 8305's recommended Connection Attempt Delay.
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Why a target could not be reached, with the reply code to send.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct ConnectError {
    pub code: ReplyCode,
    pub detail: String,
}

impl ConnectError {
    fn new(code: ReplyCode, detail: impl Into<String>) -> Self {
        ConnectError {
            code,
            detail: detail.into(),
        }
    }

    /// The target rules refuse `target` (reply 0x02).
    pub fn not_allowed(target: &Address) -> Self {
        ConnectError::new(
            ReplyCode::NotAllowed,
            format!("{target} is not allowed by the target rules"),
        )
    }
}

/// The reply code for a failed connect or bind.
pub fn reply_for(e: &io::Error) -> ReplyCode {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ReplyCode::ConnectionRefused,
        io::ErrorKind::HostUnreachable => ReplyCode::HostUnreachable,
        io::ErrorKind::NetworkUnreachable => ReplyCode::NetworkUnreachable,
        io::ErrorKind::TimedOut => ReplyCode::TtlExpired,
        io::ErrorKind::PermissionDenied => ReplyCode::NotAllowed,
        _ => match e.raw_os_error() {
            Some(libc::EHOSTUNREACH) | Some(libc::EHOSTDOWN) => ReplyCode::HostUnreachable,
            Some(libc::ENETUNREACH) | Some(libc::ENETDOWN) => ReplyCode::NetworkUnreachable,
            Some(libc::EADDRNOTAVAIL) | Some(libc::EAFNOSUPPORT) => ReplyCode::NetworkUnreachable,
            _ => ReplyCode::GeneralFailure,
        },
    }
}

/// Source addresses for outbound connections and datagrams
/// (`--outgoing-ip`): none set means the kernel chooses; once any is set,
/// a target family without one is unreachable (no silent fallback to
/// another source address).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outgoing {
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

impl Outgoing {
    /// At most one address per family.
    pub fn from_ips(ips: &[IpAddr]) -> Result<Outgoing, String> {
        let mut o = Outgoing::default();
        for ip in ips {
            let dup = match ip.to_canonical() {
                IpAddr::V4(a) => o.v4.replace(a).is_some(),
                IpAddr::V6(a) => o.v6.replace(a).is_some(),
            };
            if dup {
                return Err(format!(
                    "--outgoing-ip given twice for {}: at most one address per family",
                    if ip.to_canonical().is_ipv4() {
                        "IPv4"
                    } else {
                        "IPv6"
                    }
                ));
            }
        }
        Ok(o)
    }

    pub fn ips(&self) -> impl Iterator<Item = IpAddr> {
        let v4 = self.v4.map(IpAddr::V4);
        v4.into_iter().chain(self.v6.map(IpAddr::V6))
    }

    /// The source address for a peer of `target`'s family: `Ok(None)` lets
    /// the kernel choose, `Err` (ENETUNREACH) when the family has none.
    pub fn source_for(&self, target: IpAddr) -> io::Result<Option<IpAddr>> {
        if self.v4.is_none() && self.v6.is_none() {
            return Ok(None);
        }
        let ip = match target {
            IpAddr::V4(_) => self.v4.map(IpAddr::V4),
            IpAddr::V6(_) => self.v6.map(IpAddr::V6),
        };
        ip.map(Some).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NetworkUnreachable,
                "no --outgoing-ip for this address family",
            )
        })
    }
}

/// Opens a TCP connection to `target` from the configured source address.
async fn dial(target: SocketAddr, outgoing: &Outgoing) -> io::Result<TcpStream> {
    // A mapped IPv6 target is an IPv4 peer: connect over IPv4.
    let target = SocketAddr::new(target.ip().to_canonical(), target.port());
    let Some(source) = outgoing.source_for(target.ip())? else {
        return TcpStream::connect(target).await;
    };
    let sock = match target {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    #[cfg(target_os = "linux")]
    crate::sys::set_bind_address_no_port(std::os::fd::AsFd::as_fd(&sock))?;
    sock.bind(SocketAddr::new(source, 0))?;
    sock.connect(target).await
}

/// Resolves a target to socket addresses, interleaved by family (RFC 8305).
pub async fn resolve(addr: &Address) -> Result<Vec<SocketAddr>, ConnectError> {
    match addr {
        Address::Ip(sa) => Ok(vec![*sa]),
        Address::Domain(name, port) => {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), *port))
                .await
                .map_err(|e| {
                    ConnectError::new(
                        ReplyCode::HostUnreachable,
                        format!("cannot resolve {name}: {e}"),
                    )
                })?
                .collect();
            if found.is_empty() {
                return Err(ConnectError::new(
                    ReplyCode::HostUnreachable,
                    format!("{name} has no addresses"),
                ));
            }
            Ok(interleave(found))
        }
    }
}

/// Alternates address families, starting with the family listed first.
pub fn interleave(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let first_v6 = addrs.first().is_some_and(|a| a.is_ipv6());
    let (mut a, mut b): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|x| x.is_ipv6() == first_v6);
    a.reverse();
    b.reverse();
    let mut out = Vec::with_capacity(a.len() + b.len());
    loop {
        match (a.pop(), b.pop()) {
            (None, None) => return out,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
}

/// Keeps the addresses (and port) `rules` permit, each in the form the rules
/// judged ([`crate::rules::canonical`]: an IPv4-mapped or -compatible IPv6
/// address becomes its IPv4 address, so what is dialled is what was
/// judged); none left is "not allowed by ruleset".
pub fn permitted(
    target: &Address,
    mut addrs: Vec<SocketAddr>,
    rules: &Rules,
) -> Result<Vec<SocketAddr>, ConnectError> {
    for a in &mut addrs {
        a.set_ip(crate::rules::canonical(a.ip()));
    }
    addrs.retain(|a| rules.permits_target(*a));
    if addrs.is_empty() {
        return Err(ConnectError::not_allowed(target));
    }
    Ok(addrs)
}

/// Connects to `addr` within `timeout`, trying every address it resolves to
/// that `rules` permit, from the `outgoing` source address.
pub async fn connect(
    addr: &Address,
    rules: &Rules,
    outgoing: &Outgoing,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let attempt = async {
        let addrs = permitted(addr, resolve(addr).await?, rules)?;
        race(&addrs, outgoing).await
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::new(
            ReplyCode::TtlExpired,
            format!("connect to {addr} timed out after {timeout:?}"),
        )),
    }
}

async fn attempt(a: SocketAddr, outgoing: &Outgoing) -> (SocketAddr, io::Result<TcpStream>) {
    (a, dial(a, outgoing).await)
}

async fn race(addrs: &[SocketAddr], outgoing: &Outgoing) -> Result<TcpStream, ConnectError> {
    if let [only] = addrs {
        // Nothing to race.
        let s = dial(*only, outgoing)
            .await
            .map_err(|e| ConnectError::new(reply_for(&e), format!("{only}: {e}")))?;
        let _ = s.set_nodelay(true);
        return Ok(s);
    }
    let mut pending = addrs.iter().copied();
    let mut attempts = FuturesUnordered::new();
    let mut last_err: Option<(SocketAddr, io::Error)> = None;
    loop {
        if attempts.is_empty() {
            match pending.next() {
                Some(a) => attempts.push(attempt(a, outgoing)),
                None => {
                    let (a, e) = last_err.expect("at least one address was tried");
                    return Err(ConnectError::new(reply_for(&e), format!("{a}: {e}")));
                }
            }
        }
        tokio::select! {
            Some((a, res)) = attempts.next() => match res {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                // A failure lets the next address start at once, even
                // while other attempts are still in flight.
                Err(e) => {
                    last_err = Some((a, e));
                    if let Some(next) = pending.next() {
                        attempts.push(attempt(next, outgoing));
                    }
                }
            },
            _ = tokio::time::sleep(ATTEMPT_DELAY), if pending.len() > 0 => {
                if let Some(a) = pending.next() {
                    attempts.push(attempt(a, outgoing));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaves_families() {
        let v6a: SocketAddr = "[::1]:1".parse().unwrap();
        let v6b: SocketAddr = "[::2]:1".parse().unwrap();
        let v4a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let v4b: SocketAddr = "127.0.0.2:1".parse().unwrap();
        assert_eq!(
            interleave(vec![v6a, v6b, v4a, v4b]),
            vec![v6a, v4a, v6b, v4b]
        );
        assert_eq!(interleave(vec![v4a, v6a, v6b]), vec![v4a, v6a, v6b]);
        assert_eq!(interleave(vec![]), Vec::<SocketAddr>::new());
    }

    #[test]
    fn maps_errors() {
        let e = |k| io::Error::from(k);
        assert_eq!(
            reply_for(&e(io::ErrorKind::ConnectionRefused)),
            ReplyCode::ConnectionRefused
        );
        assert_eq!(
            reply_for(&e(io::ErrorKind::TimedOut)),
            ReplyCode::TtlExpired
        );
        let os = |c| io::Error::from_raw_os_error(c);
        assert_eq!(
            reply_for(&os(libc::EHOSTUNREACH)),
            ReplyCode::HostUnreachable
        );
        assert_eq!(
            reply_for(&os(libc::ENETUNREACH)),
            ReplyCode::NetworkUnreachable
        );
        assert_eq!(reply_for(&os(libc::EIO)), ReplyCode::GeneralFailure);
    }

    #[tokio::test]
    async fn refused_and_unresolvable() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let open = Rules::default();
        let any = Outgoing::default();
        let err = connect(&Address::Ip(port), &open, &any, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.code, ReplyCode::ConnectionRefused);
        let bad = Address::Domain("no-such-host.invalid".into(), 80);
        let err = connect(&bad, &open, &any, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.code, ReplyCode::HostUnreachable);
    }

    #[test]
    fn rules_filter_resolved_addresses() {
        let v4: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        let name = Address::Domain("localhost".into(), 80);
        let no_v4 = Rules::new(vec![], vec!["127.0.0.0/8".parse().unwrap()]);
        assert_eq!(permitted(&name, vec![v6, v4], &no_v4).unwrap(), vec![v6]);
        let no_loopback = Rules::new(
            vec![],
            vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()],
        );
        let err = permitted(&name, vec![v6, v4], &no_loopback).unwrap_err();
        assert_eq!(err.code, ReplyCode::NotAllowed);
        assert!(err.detail.contains("localhost:80"), "{}", err.detail);
        // What is kept is what was judged: IPv4-compatible becomes IPv4.
        let compat: SocketAddr = "[::192.0.2.1]:80".parse().unwrap();
        let ip = Address::Ip(compat);
        let kept = permitted(&ip, vec![compat], &Rules::default()).unwrap();
        assert_eq!(kept, vec!["192.0.2.1:80".parse().unwrap()]);
        // The unspecified address is never kept, with or without rules.
        let zero: SocketAddr = "0.0.0.0:80".parse().unwrap();
        let err = permitted(&Address::Ip(zero), vec![zero], &Rules::default()).unwrap_err();
        assert_eq!(err.code, ReplyCode::NotAllowed);
    }

    #[test]
    fn outgoing_addresses_by_family() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let none = Outgoing::from_ips(&[]).unwrap();
        assert_eq!(none.source_for(ip("192.0.2.1")).unwrap(), None);
        assert_eq!(none.source_for(ip("2001:db8::1")).unwrap(), None);
        let v4 = Outgoing::from_ips(&[ip("::ffff:10.0.0.5")]).unwrap();
        assert_eq!(v4.v4, Some("10.0.0.5".parse().unwrap()), "mapped is IPv4");
        assert_eq!(
            v4.source_for(ip("192.0.2.1")).unwrap(),
            Some(ip("10.0.0.5"))
        );
        let e = v4.source_for(ip("2001:db8::1")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NetworkUnreachable);
        assert_eq!(reply_for(&e), ReplyCode::NetworkUnreachable);
        let both = Outgoing::from_ips(&[ip("10.0.0.5"), ip("fd00::5")]).unwrap();
        assert_eq!(
            both.source_for(ip("2001:db8::1")).unwrap(),
            Some(ip("fd00::5"))
        );
        assert_eq!(both.ips().count(), 2);
        let err = Outgoing::from_ips(&[ip("10.0.0.5"), ip("10.0.0.6")]).unwrap_err();
        assert!(err.contains("IPv4"), "{err}");
    }

    #[tokio::test]
    async fn connects_from_the_outgoing_address() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let from = Outgoing {
            v4: Some("127.0.0.2".parse().unwrap()),
            v6: None,
        };
        let s = race(&[l.local_addr().unwrap()], &from).await.unwrap();
        assert_eq!(s.local_addr().unwrap().ip().to_string(), "127.0.0.2");
        let (_, peer) = l.accept().await.unwrap();
        assert_eq!(peer.ip().to_string(), "127.0.0.2");
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        let err = race(&[v6], &from).await.unwrap_err();
        assert_eq!(err.code, ReplyCode::NetworkUnreachable);
    }

    #[tokio::test]
    async fn falls_through_to_a_working_address() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = l.local_addr().unwrap();
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let s = race(&[dead, good], &Outgoing::default()).await.unwrap();
        assert_eq!(s.peer_addr().unwrap(), good);
    }
}
