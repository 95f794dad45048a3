//! UDP ASSOCIATE (RFC 1928 section 7): one relay per association.
//!
//! The client-facing socket listens on the control connection's local
//! address; targets are reached from a separate outbound socket per address
//! family, so a datagram's socket tells which way it goes. Only the client
//! may use the relay: its address is fixed by the request's DST.ADDR/DST.PORT
//! when given, otherwise by the first datagram from the control connection's
//! peer IP, and it must pass the client rules. Only targets the client has
//! sent to may answer. Datagrams with FRAG != 0 are dropped (fragmentation
//! is optional in the RFC) and counted, and so are datagrams to destinations
//! the target rules do not permit. Outbound sockets bind to the
//! `--outgoing-ip` of their family, if set. The association ends with its
//! TCP control connection or when idle.
//!
//! Names are resolved off the datagram path: a datagram to a name not
//! resolved yet waits (at most [`MAX_QUEUED_PER_NAME`] per name) while at
//! most [`MAX_LOOKUPS`] lookups run at once, and every other datagram goes
//! on meanwhile, both ways. Answers are remembered ([`POSITIVE_TTL`]), and
//! so are failures, briefly ([`NEGATIVE_TTL`]). The name and peer tables
//! hold [`MAX_REMEMBERED`] entries each and forget the least recently used
//! one first. The receive buffer is allocated with the first datagram.

use bytes::{BufMut, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use lru::LruCache;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

use crate::protocol::socks5::{Address, UdpHeader};
use crate::relay::connect::{self, Outgoing};
use crate::relay::copy::Traffic;
use crate::rules::Rules;

/// Remembered targets (who may answer) and resolved names, per association.
pub const MAX_REMEMBERED: usize = 1024;
/// Largest datagram handled.
const MAX_DATAGRAM: usize = 65_536;
/// Name lookups running at once, per association.
pub const MAX_LOOKUPS: usize = 8;
/// Datagrams waiting for one name's lookup; more are dropped (counted).
pub const MAX_QUEUED_PER_NAME: usize = 8;
/// How long a resolved name is used before it is looked up again.
pub const POSITIVE_TTL: Duration = Duration::from_secs(60);
/// How long a name that did not resolve (or resolved only to denied
/// addresses) is not looked up again.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// What an association relayed, for the access log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Relayed {
    /// Datagrams sent on to a destination.
    pub datagrams_up: u64,
    /// Datagrams delivered to the client.
    pub datagrams_down: u64,
    /// Distinct destinations sent to (one not sent to among the last 1024
    /// counts again).
    pub destinations: u64,
}

/// Datagrams dropped, by reason (reported in the access log).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drops {
    pub fragmented: u64,
    pub stranger: u64,
    pub malformed: u64,
    /// The name did not resolve (or its lookup queue was full).
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Resolves a name and port to addresses (the system resolver, or a test's).
pub type Resolver =
    Arc<dyn Fn(String, u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> + Send + Sync>;

/// The system resolver (getaddrinfo on tokio's blocking pool).
pub fn system_resolver() -> Resolver {
    Arc::new(|name: String, port: u16| {
        Box::pin(async move {
            connect::resolve(&Address::Domain(name, port))
                .await
                .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e.to_string()))
        }) as BoxFuture<'static, _>
    })
}

/// A name's answer, and until when it holds.
#[derive(Debug, Clone, Copy)]
struct Answer {
    result: Result<SocketAddr, Miss>,
    until: Instant,
}

type Name = (String, u16);
type Lookup = BoxFuture<'static, (Name, io::Result<Vec<SocketAddr>>)>;

pub struct UdpRelay {
    client_side: UdpSocket,
    out_v4: Option<UdpSocket>,
    out_v6: Option<UdpSocket>,
    client_ip: IpAddr,
    client_port: Option<u16>,
    /// Targets the client has sent to (who may answer).
    sent_to: LruCache<SocketAddr, ()>,
    names: LruCache<Name, Answer>,
    /// Datagrams waiting for their name's lookup.
    waiting: HashMap<Name, Vec<Vec<u8>>>,
    lookups: FuturesUnordered<Lookup>,
    resolver: Resolver,
    rules: Rules,
    clients: Rules,
    outgoing: Outgoing,
    pub drops: Drops,
    pub relayed: Relayed,
}

fn lru<K: std::hash::Hash + Eq, V>() -> LruCache<K, V> {
    LruCache::new(NonZeroUsize::new(MAX_REMEMBERED).expect("not zero"))
}

/// Waits until `sock` (if any) is readable.
async fn readable_opt(sock: &Option<UdpSocket>) -> io::Result<()> {
    match sock {
        Some(s) => s.readable().await,
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
            sent_to: lru(),
            names: lru(),
            waiting: HashMap::new(),
            lookups: FuturesUnordered::new(),
            resolver: system_resolver(),
            rules,
            clients,
            outgoing,
            drops: Drops::default(),
            relayed: Relayed::default(),
        })
    }

    /// Resolves names with `resolver` instead of the system's (tests).
    pub fn with_resolver(mut self, resolver: Resolver) -> Self {
        self.resolver = resolver;
        self
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

    /// Sends `payload` to `target` (permitted already), from the outbound
    /// socket of its family.
    async fn send_out(&mut self, payload: &[u8], target: SocketAddr, traffic: &Traffic) {
        // A mapped or compatible IPv6 destination is an IPv4 peer, as the
        // rules judged it: send over IPv4.
        let target = SocketAddr::new(crate::rules::canonical(target.ip()), target.port());
        let sent = match self.outbound(target.is_ipv6()).await {
            Ok(sock) => sock.send_to(payload, target).await,
            Err(e) => Err(e),
        };
        match sent {
            Ok(_) => {
                traffic.add_up(payload.len());
                self.relayed.datagrams_up += 1;
                if self.sent_to.put(target, ()).is_none() {
                    self.relayed.destinations += 1;
                }
            }
            Err(_) => self.drops.send_failed += 1,
        }
    }

    /// A datagram from the client side: unwrap and send it on, or queue it
    /// for its name's lookup.
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
        match header.address {
            Address::Ip(sa) if self.rules.permits_target(sa) => {
                self.send_out(view, sa, traffic).await
            }
            Address::Ip(_) => self.drops.denied += 1,
            Address::Domain(name, port) => {
                let key = (name, port);
                let now = Instant::now();
                match self.names.get(&key).copied() {
                    Some(a) if a.until > now => match a.result {
                        Ok(target) => self.send_out(view, target, traffic).await,
                        Err(Miss::Unresolved) => self.drops.unresolved += 1,
                        Err(Miss::Denied) => self.drops.denied += 1,
                    },
                    _ => self.wait_for_lookup(key, view),
                }
            }
        }
    }

    /// Queues `payload` until `key` is resolved, starting its lookup if none
    /// runs; drops it (counted) when the queue or the lookups are full.
    fn wait_for_lookup(&mut self, key: Name, payload: &[u8]) {
        if let Some(q) = self.waiting.get_mut(&key) {
            if q.len() < MAX_QUEUED_PER_NAME {
                q.push(payload.to_vec());
            } else {
                self.drops.unresolved += 1;
            }
            return;
        }
        if self.lookups.len() >= MAX_LOOKUPS {
            self.drops.unresolved += 1;
            return;
        }
        let lookup = (self.resolver)(key.0.clone(), key.1);
        let k = key.clone();
        self.lookups
            .push(Box::pin(async move { (k, lookup.await) }));
        self.waiting.insert(key, vec![payload.to_vec()]);
    }

    /// A lookup finished: remember its answer, send (or drop) what waited.
    async fn on_lookup(
        &mut self,
        key: Name,
        found: io::Result<Vec<SocketAddr>>,
        traffic: &Traffic,
    ) {
        let now = Instant::now();
        let target = Address::Domain(key.0.clone(), key.1);
        let answer = match found {
            Err(_) => Answer {
                result: Err(Miss::Unresolved),
                until: now + NEGATIVE_TTL,
            },
            Ok(addrs) => match connect::permitted(&target, addrs, &self.rules) {
                Ok(v) => Answer {
                    result: Ok(v[0]),
                    until: now + POSITIVE_TTL,
                },
                Err(_) => Answer {
                    result: Err(Miss::Denied),
                    until: now + NEGATIVE_TTL,
                },
            },
        };
        self.names.put(key.clone(), answer);
        for payload in self.waiting.remove(&key).unwrap_or_default() {
            match answer.result {
                Ok(t) => self.send_out(&payload, t, traffic).await,
                Err(Miss::Unresolved) => self.drops.unresolved += 1,
                Err(Miss::Denied) => self.drops.denied += 1,
            }
        }
    }

    /// A datagram from a target: wrap it with the target's address for the client.
    async fn on_target_datagram(&mut self, payload: &[u8], src: SocketAddr, traffic: &Traffic) {
        let Some(client) = self.client_addr() else {
            self.drops.stranger += 1;
            return;
        };
        if self.sent_to.get(&src).is_none() {
            self.drops.stranger += 1;
            return;
        }
        let header = UdpHeader::new(Address::Ip(src));
        let mut out = BytesMut::with_capacity(header.encoded_len() + payload.len());
        header.encode(&mut out);
        out.put_slice(payload);
        match self.client_side.send_to(&out, client).await {
            Ok(_) => {
                traffic.add_down(payload.len());
                self.relayed.datagrams_down += 1;
            }
            Err(_) => self.drops.send_failed += 1,
        }
    }

    /// Relays until the control connection closes or nothing moves for `idle`.
    pub async fn run(&mut self, control: &TcpStream, traffic: &Traffic, idle: Duration) -> UdpEnd {
        // One buffer, allocated when the first datagram arrives.
        let mut buf: Vec<u8> = Vec::new();
        traffic.touch();
        loop {
            let deadline = traffic.last_activity() + idle;
            // Which socket is readable (0: client side, 4/6: outbound).
            let ready = tokio::select! {
                r = self.client_side.readable() => r.map(|()| 0),
                r = readable_opt(&self.out_v4) => r.map(|()| 4),
                r = readable_opt(&self.out_v6) => r.map(|()| 6),
                Some((key, found)) = self.lookups.next(), if !self.lookups.is_empty() => {
                    self.on_lookup(key, found, traffic).await;
                    continue;
                }
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
                    continue;
                }
            };
            let which = match ready {
                Ok(w) => w,
                Err(e) => return UdpEnd::Error(e),
            };
            if buf.is_empty() {
                buf = vec![0u8; MAX_DATAGRAM];
            }
            let sock = match which {
                0 => Some(&self.client_side),
                4 => self.out_v4.as_ref(),
                _ => self.out_v6.as_ref(),
            };
            let Some(sock) = sock else { continue };
            match sock.try_recv_from(&mut buf) {
                Ok((n, src)) if which == 0 => {
                    self.on_client_datagram(&buf[..n], src, traffic).await
                }
                Ok((n, src)) => self.on_target_datagram(&buf[..n], src, traffic).await,
                Err(e) if is_transient(&e) => {}
                Err(e) => return UdpEnd::Error(e),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    /// A relay for a client on 127.0.0.1 (its UDP socket returned), with
    /// `resolver`; the returned future runs it until the returned control
    /// stream is dropped.
    async fn associate(
        resolver: Resolver,
    ) -> (
        UdpSocket,
        TcpStream,
        impl std::future::Future<Output = Drops>,
    ) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let control = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (proxy_side, peer) = l.accept().await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let requested = Address::Ip(client.local_addr().unwrap());
        let mut relay = UdpRelay::open(
            "127.0.0.1".parse().unwrap(),
            peer,
            &requested,
            Rules::default(),
            Rules::default(),
            Outgoing::default(),
        )
        .await
        .unwrap()
        .with_resolver(resolver);
        client.connect(relay.local_addr().unwrap()).await.unwrap();
        let task = async move {
            let traffic = Traffic::default();
            relay
                .run(&proxy_side, &traffic, Duration::from_secs(30))
                .await;
            relay.drops
        };
        (client, control, task)
    }

    fn datagram(to: &Address, data: &[u8]) -> Vec<u8> {
        let mut v = BytesMut::new();
        UdpHeader::new(to.clone()).encode(&mut v);
        v.put_slice(data);
        v.to_vec()
    }

    async fn echo() -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = s.recv_from(&mut buf).await {
                let _ = s.send_to(&buf[..n], from).await;
            }
        });
        addr
    }

    async fn recv(s: &UdpSocket, ms: u64) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 2048];
        match tokio::time::timeout(Duration::from_millis(ms), s.recv(&mut buf)).await {
            Ok(Ok(n)) => Some(buf[..n].to_vec()),
            _ => None,
        }
    }

    /// A name whose lookup hangs delays nothing else of its association;
    /// a name that resolves is served while it hangs.
    #[tokio::test]
    async fn a_hanging_lookup_delays_no_other_datagram() {
        let target = echo().await;
        let resolver: Resolver = Arc::new(move |name: String, _port: u16| {
            Box::pin(async move {
                if name == "hang.test" {
                    std::future::pending::<()>().await;
                }
                Ok(vec![target])
            }) as BoxFuture<'static, _>
        });
        let (client, control, task) = associate(resolver).await;
        let test = async move {
            let hang = Address::Domain("hang.test".into(), target.port());
            client.send(&datagram(&hang, b"stuck")).await.unwrap();
            let t0 = Instant::now();
            client
                .send(&datagram(&Address::Ip(target), b"by address"))
                .await
                .unwrap();
            let got = recv(&client, 1000)
                .await
                .expect("the address datagram came back");
            assert!(got.ends_with(b"by address"));
            let ok = Address::Domain("ok.test".into(), target.port());
            client.send(&datagram(&ok, b"by name")).await.unwrap();
            let got = recv(&client, 1000)
                .await
                .expect("the name datagram came back");
            assert!(got.ends_with(b"by name"));
            assert!(t0.elapsed() < Duration::from_millis(900));
            drop(control);
        };
        let (drops, ()) = tokio::join!(task, test);
        assert_eq!(
            drops,
            Drops::default(),
            "the stuck one is waiting, not dropped"
        );
    }

    /// A name that does not resolve is looked up once per NEGATIVE_TTL,
    /// however many datagrams ask for it; a queue past its bound drops.
    #[tokio::test]
    async fn failures_are_remembered_briefly() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let resolver: Resolver = Arc::new(move |_name: String, _port: u16| {
            counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(io::Error::new(io::ErrorKind::NotFound, "no such name"))
            }) as BoxFuture<'static, _>
        });
        let (client, control, task) = associate(resolver).await;
        let test = async move {
            let bad = Address::Domain("bad.test".into(), 9);
            for _ in 0..(MAX_QUEUED_PER_NAME + 4) {
                client.send(&datagram(&bad, b"x")).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            for _ in 0..3 {
                client.send(&datagram(&bad, b"x")).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(control);
        };
        let (drops, ()) = tokio::join!(task, test);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "looked up once");
        assert_eq!(drops.unresolved as usize, MAX_QUEUED_PER_NAME + 4 + 3);
    }

    /// A full peer table forgets its least recently used entry, not every
    /// entry: a live flow's answer still comes through after 1,100 other
    /// destinations (the table used to be cleared whole at 1,024).
    #[tokio::test]
    async fn the_peer_table_forgets_the_least_recently_used() {
        // A target that answers late: when told, after the others were sent to.
        let late = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let late_addr = late.local_addr().unwrap();
        let (answer, told) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            if let Ok((n, from)) = late.recv_from(&mut buf).await {
                let _ = told.await;
                let _ = late.send_to(&buf[..n], from).await;
            }
        });
        let marker = echo().await;
        let (client, control, task) = associate(system_resolver()).await;
        let test = async move {
            // Sent in batches, each confirmed by the marker's echo (datagrams
            // are handled in order), so the kernel drops none of them.
            let others = |from: u16, to: u16| {
                let client = &client;
                async move {
                    for port in from..to {
                        let to = SocketAddr::new("127.0.0.2".parse().unwrap(), 20000 + port);
                        client.send(&datagram(&Address::Ip(to), b"")).await.unwrap();
                        if port % 50 == 49 {
                            client
                                .send(&datagram(&Address::Ip(marker), b"m"))
                                .await
                                .unwrap();
                            assert!(recv(client, 5000).await.expect("marker").ends_with(b"m"));
                        }
                    }
                }
            };
            client
                .send(&datagram(&Address::Ip(late_addr), b"late"))
                .await
                .unwrap();
            others(0, 1000).await;
            // The live flow is used again, then the table overflows.
            client
                .send(&datagram(&Address::Ip(late_addr), b"again"))
                .await
                .unwrap();
            others(1000, 1100).await;
            // Datagrams are handled in order: once the marker is back, so
            // are all the others.
            client
                .send(&datagram(&Address::Ip(marker), b"marker"))
                .await
                .unwrap();
            assert!(recv(&client, 5000)
                .await
                .expect("marker")
                .ends_with(b"marker"));
            answer.send(()).unwrap();
            let got = recv(&client, 3000)
                .await
                .expect("the late answer was dropped");
            assert!(got.ends_with(b"late"));
            drop(control);
        };
        let (drops, ()) = tokio::join!(task, test);
        assert_eq!(drops.stranger, 0);
    }
}
