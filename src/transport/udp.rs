//! Userspace SCTP carried in UDP datagrams (RFC 6951 style): each UDP
//! payload is one whole SCTP packet (common header and CRC32c included).
//!
//! The protocol logic is sctp-proto 0.10.8 (sans-IO). This file is the
//! driver around it: one tokio task per [`UdpListener`] (a server
//! `Endpoint` demultiplexing every association on one UDP socket) and one
//! per client [`UdpAssociation`] (its own connected UDP socket). The task
//! owns the sctp-proto state; the handles talk to it over channels.
//!
//! The driver also works around what sctp-proto 0.10.8 gets wrong (see
//! `docs/sctp-transport.md`):
//! - its SHUTDOWN carries the wrong Cumulative TSN Ack: the driver rewrites
//!   the field in the outgoing packet (tracking the peer's cumulative TSN
//!   from the INIT/INIT ACK and from our own outgoing SACKs) and fixes the
//!   CRC32c;
//! - it drops an INIT (or INIT ACK) that lists IPv4/IPv6 address
//!   parameters: the driver strips them from incoming packets first;
//! - `shutdown()` sends SHUTDOWN at once even with data unsent or
//!   unacknowledged (its in-flight counter is never updated) and never sends
//!   what was still queued: the driver calls it only once everything written
//!   was acknowledged;
//! - `shutdown()` emits the endpoint's "drained" event at once, which would
//!   make the endpoint forget the association before the SHUTDOWN ACK
//!   arrives: the driver holds those events back and reports the
//!   association drained itself when it is really finished;
//! - the side that sent SHUTDOWN never reaches Closed: the driver treats the
//!   association as finished once it sent SHUTDOWN COMPLETE;
//! - nothing in it gives up on a vanished peer (T2-shutdown and T3-rtx
//!   retransmit forever, no HEARTBEATs are ever sent) or on a server
//!   association whose handshake never completes: the driver sends its own
//!   HEARTBEATs on idle associations (and keeps the HEARTBEAT ACKs, which
//!   sctp-proto does not know, away from it), and has its own deadlines
//!   (handshake, close, silent peer) after which it aborts.

mod wire;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sctp_proto::{
    AssociationHandle, ClientConfig, DatagramEvent, Endpoint, EndpointConfig, EndpointEvent, Event,
    Payload, PayloadProtocolIdentifier, ServerConfig, StreamEvent, TransportConfig,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::{CLOSE_TIMEOUT, CONNECT_TIMEOUT, MAX_MESSAGE_SIZE};
use crate::supervision::task::{self, TaskEnd};
use crate::supervision::{FaultKind, Kind, NodeId, Supervision};

/// How long a server keeps an association whose handshake (INIT, INIT ACK,
/// COOKIE ECHO) has not completed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// An established association that hears nothing from its peer for this
/// long (heartbeats included) is aborted.
const DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(30);
/// After this long without a packet from the peer the driver sends a
/// HEARTBEAT (sctp-proto never does), and again every HEARTBEAT_RETRY.
const HEARTBEAT_IDLE: Duration = Duration::from_secs(10);
const HEARTBEAT_RETRY: Duration = Duration::from_secs(5);
/// A client driver stays this long after its association finished, to
/// answer a retransmitted SHUTDOWN ACK whose SHUTDOWN COMPLETE was lost.
const CLIENT_LINGER: Duration = Duration::from_secs(2);
/// At most this many associations (established or not) per listener.
const MAX_ASSOCIATIONS: usize = 4096;
/// Associations established but not yet accepted.
const ACCEPT_BACKLOG: usize = 128;
/// Whole messages received and waiting for `recv_msg`, per association.
const INBOX_MESSAGES: usize = 32;
/// `send_msg` waits while more than this many bytes are unacknowledged.
const SEND_HIGH_WATER: usize = 1 << 20;
/// Every message is sent on this stream.
const STREAM: u16 = 0;
const PPI: PayloadProtocolIdentifier = PayloadProtocolIdentifier::Binary;
const SOCKET_BUFFER: usize = 1 << 20;

type ConnId = u64;

fn trace_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("ACTOR_SOCKS_SCTP_TRACE").is_some_and(|v| v != "0"))
}

/// One trace line on stderr, stamped with the time since the first one.
fn trace(what: std::fmt::Arguments<'_>) {
    static START: OnceLock<Instant> = OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed();
    eprintln!(
        "[sctp-udp {:>4}.{:03}] {what}",
        t.as_secs(),
        t.subsec_millis()
    );
}

fn describe(pkt: &[u8]) -> String {
    let h = wire::header(pkt);
    let names: Vec<String> = wire::chunks(pkt)
        .map(|c| match c.typ {
            0 => "DATA".into(),
            1 => "INIT".into(),
            2 => "INIT_ACK".into(),
            3 => "SACK".into(),
            4 => "HEARTBEAT".into(),
            5 => "HEARTBEAT_ACK".into(),
            6 => "ABORT".into(),
            7 => "SHUTDOWN".into(),
            8 => "SHUTDOWN_ACK".into(),
            9 => "ERROR".into(),
            10 => "COOKIE_ECHO".into(),
            11 => "COOKIE_ACK".into(),
            14 => "SHUTDOWN_COMPLETE".into(),
            t => format!("type{t}"),
        })
        .collect();
    match h {
        Some(h) => format!(
            "{}->{} vtag={:#010x} len={} [{}]",
            h.src_port,
            h.dst_port,
            h.vtag,
            pkt.len(),
            names.join(",")
        ),
        None => format!("runt of {} bytes", pkt.len()),
    }
}

fn transport_config(local_port: u16, remote_port: u16) -> TransportConfig {
    TransportConfig::default()
        .with_max_send_message_size(MAX_MESSAGE_SIZE as u32)
        .with_max_receive_message_size(MAX_MESSAGE_SIZE as u32)
        .with_rto_initial_ms(1000)
        .with_rto_min_ms(500)
        .with_rto_max_ms(5000)
        .with_max_init_retransmits(Some(4))
        .with_local_port(local_port.max(1))
        .with_remote_port(remote_port.max(1))
}

/// How an association ended, as seen by its handle.
#[derive(Debug, Clone)]
enum End {
    /// Graceful shutdown completed, or the peer shut down.
    Closed,
    /// The peer sent ABORT.
    Aborted,
    /// A local failure: timeout, unreachable peer, protocol error.
    Failed(io::ErrorKind, String),
}

impl End {
    fn to_result(&self) -> io::Result<()> {
        match self {
            End::Closed => Ok(()),
            End::Aborted => Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the peer aborted the SCTP association",
            )),
            End::Failed(kind, msg) => Err(io::Error::new(*kind, msg.clone())),
        }
    }
}

/// State shared between a handle and the driver.
#[derive(Default)]
struct Shared {
    /// Set by the driver when the inbox was full and it stopped reading
    /// from sctp-proto; the handle then asks it to resume.
    rx_blocked: AtomicBool,
    /// Why the inbox was closed (set before the driver drops its sender).
    end: Mutex<Option<End>>,
}

impl Shared {
    fn end(&self) -> Option<End> {
        self.end.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn set_end(&self, end: End) {
        let mut g = self.end.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(end);
        }
    }
}

enum Cmd {
    Send {
        id: ConnId,
        data: Bytes,
        reply: oneshot::Sender<io::Result<()>>,
    },
    Close {
        id: ConnId,
        reply: oneshot::Sender<io::Result<()>>,
    },
    Dropped {
        id: ConnId,
    },
    Resume {
        id: ConnId,
    },
}

fn driver_gone() -> io::Error {
    io::Error::other("the SCTP-over-UDP driver task has stopped")
}

// ---------------------------------------------------------------------------
// Public (crate) handles
// ---------------------------------------------------------------------------

/// A bound SCTP-over-UDP listener.
pub(crate) struct UdpListener {
    local: SocketAddr,
    accept_rx: mpsc::Receiver<(UdpAssociation, SocketAddr)>,
}

impl UdpListener {
    /// Binds `addr` and starts the driver: as the supervised node
    /// `udp-driver` under `sup`'s node when given (a restarted driver keeps
    /// the socket and the accept channel, and loses the associations it
    /// had), else as a plain task.
    pub(crate) async fn bind(
        addr: SocketAddr,
        sup: Option<(Arc<Supervision>, NodeId)>,
    ) -> io::Result<UdpListener> {
        let socket = Arc::new(bind_udp(addr)?);
        let local = socket.local_addr()?;
        let (accept_tx, accept_rx) = mpsc::channel(ACCEPT_BACKLOG);
        let start = move |faults: Option<mpsc::UnboundedReceiver<FaultKind>>| {
            Driver::new(
                socket.clone(),
                None,
                Endpoint::new(
                    Arc::new(EndpointConfig::new()),
                    Some(Arc::new(server_config(local.port()))),
                ),
                Role::Server {
                    accept_tx: Some(accept_tx.clone()),
                },
            )
            .with_faults(faults)
            .run()
        };
        match sup {
            Some((sup, parent)) => {
                let id = sup.add_numbered(parent, "udp-driver", Kind::Task);
                tokio::spawn(task::run(sup, id, move |faults| start(Some(faults))));
            }
            None => {
                tokio::spawn(start(None));
            }
        }
        Ok(UdpListener { local, accept_rx })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub(crate) async fn accept(&mut self) -> io::Result<(UdpAssociation, SocketAddr)> {
        self.accept_rx.recv().await.ok_or_else(driver_gone)
    }
}

fn server_config(port: u16) -> ServerConfig {
    let mut c = ServerConfig::new();
    // The SCTP ports of each association are taken from the peer's INIT
    // (sctp-proto answers with them swapped), whatever they are.
    c.transport = Arc::new(transport_config(port, port));
    c
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// One SCTP-over-UDP association (either side).
pub(crate) struct UdpAssociation {
    id: ConnId,
    cmd: mpsc::UnboundedSender<Cmd>,
    inbox: mpsc::Receiver<Bytes>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    closed: bool,
}

impl UdpAssociation {
    pub(crate) async fn connect(addr: SocketAddr) -> io::Result<UdpAssociation> {
        let unspecified: IpAddr = match addr {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        Self::connect_from(addr, unspecified).await
    }

    /// [`UdpAssociation::connect`] from a chosen local address.
    pub(crate) async fn connect_from(
        addr: SocketAddr,
        local: IpAddr,
    ) -> io::Result<UdpAssociation> {
        if addr.port() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot connect to {addr}: port 0"),
            ));
        }
        let socket = Arc::new(bind_udp(SocketAddr::new(local, 0))?);
        socket.connect(addr).await?;
        let local_port = socket.local_addr()?.port();

        // RFC 6951: the SCTP ports in the common header are independent of
        // the UDP ports; we use the same numbers (as usrsctp users do).
        let mut endpoint = Endpoint::new(Arc::new(EndpointConfig::new()), None);
        let mut cc = ClientConfig::new();
        cc.transport = Arc::new(transport_config(local_port, addr.port()));
        let (ch, assoc) = endpoint
            .connect(cc, addr)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;

        let (connected_tx, connected_rx) = oneshot::channel();
        let mut driver = Driver::new(
            socket,
            Some(addr),
            endpoint,
            Role::Client {
                connected: Some(connected_tx),
                linger_until: None,
            },
        );
        let (tx, inbox) = mpsc::channel(INBOX_MESSAGES);
        let shared = Arc::new(Shared::default());
        let id = driver.add_conn(ch, assoc, addr, None, Instant::now() + CONNECT_TIMEOUT);
        if let Some(c) = driver.conns.get_mut(&id) {
            c.link = Some(tx);
            c.shared = shared.clone();
        }
        let cmd = driver.cmd_tx.clone();
        tokio::spawn(driver.run());

        match connected_rx.await {
            Ok(Ok(())) => Ok(UdpAssociation {
                id,
                cmd,
                inbox,
                shared,
                peer: addr,
                closed: false,
            }),
            Ok(Err(e)) => Err(io::Error::new(
                e.kind(),
                format!("SCTP-over-UDP connect to {addr} failed: {e}"),
            )),
            Err(_) => Err(driver_gone()),
        }
    }

    pub(crate) fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    pub(crate) async fn recv_msg(&mut self) -> io::Result<Option<Bytes>> {
        match self.inbox.recv().await {
            Some(msg) => {
                if self.shared.rx_blocked.swap(false, Ordering::AcqRel) {
                    let _ = self.cmd.send(Cmd::Resume { id: self.id });
                }
                Ok(Some(msg))
            }
            None => match self.shared.end() {
                Some(End::Closed) | Some(End::Aborted) => Ok(None),
                Some(End::Failed(kind, msg)) => Err(io::Error::new(kind, msg)),
                None => Err(driver_gone()),
            },
        }
    }

    pub(crate) async fn send_msg(&mut self, msg: &[u8]) -> io::Result<()> {
        check_message_size(msg.len())?;
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Send {
                id: self.id,
                data: Bytes::copy_from_slice(msg),
                reply,
            })
            .map_err(|_| driver_gone())?;
        rx.await.map_err(|_| driver_gone())?
    }

    pub(crate) async fn close(mut self) -> io::Result<()> {
        self.closed = true;
        let (reply, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Close { id: self.id, reply }).is_err() {
            return self
                .shared
                .end()
                .map_or_else(|| Err(driver_gone()), |e| e.to_result());
        }
        match rx.await {
            // The driver had already forgotten the association: it ended.
            Ok(Err(e)) if e.kind() == io::ErrorKind::NotConnected => {
                self.shared.end().map_or(Err(e), |end| end.to_result())
            }
            Ok(r) => r,
            Err(_) => self
                .shared
                .end()
                .map_or_else(|| Err(driver_gone()), |e| e.to_result()),
        }
    }
}

impl Drop for UdpAssociation {
    fn drop(&mut self) {
        if !self.closed {
            // The driver shuts the association down gracefully on its own.
            let _ = self.cmd.send(Cmd::Dropped { id: self.id });
        }
    }
}

pub(crate) fn check_message_size(len: usize) -> io::Result<()> {
    if len == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "SCTP cannot carry an empty message",
        ));
    }
    if len > MAX_MESSAGE_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("message of {len} bytes exceeds the maximum of {MAX_MESSAGE_SIZE} bytes"),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------

enum Role {
    Server {
        /// `None` once the listener was dropped: new INITs are refused.
        accept_tx: Option<mpsc::Sender<(UdpAssociation, SocketAddr)>>,
    },
    Client {
        connected: Option<oneshot::Sender<io::Result<()>>>,
        linger_until: Option<Instant>,
    },
}

struct Conn {
    ch: AssociationHandle,
    assoc: sctp_proto::Association,
    remote: SocketAddr,
    /// Handshake must complete before this instant.
    handshake_deadline: Instant,
    established: bool,
    /// Sender half of the handle's inbox; dropping it is the end-of-stream.
    link: Option<mpsc::Sender<Bytes>>,
    shared: Arc<Shared>,
    /// Messages read out of sctp-proto, not yet in the inbox.
    pending: VecDeque<Bytes>,
    /// The last of the peer's TSNs we acknowledged in sequence.
    peer_cum_tsn: Option<u32>,
    /// Common header of our last non-INIT packet: our port, the peer's port
    /// and the peer's verification tag.
    out_header: Option<wire::Header>,
    peer_shutdown: bool,
    saw_abort: bool,
    saw_shutdown_complete: bool,
    sent_shutdown_complete: bool,
    /// The application closed (or dropped) its handle.
    closing: bool,
    /// `Association::shutdown()` was called.
    shutdown_called: bool,
    close_reply: Option<oneshot::Sender<io::Result<()>>>,
    close_deadline: Option<Instant>,
    parked_sends: Vec<oneshot::Sender<io::Result<()>>>,
    /// Our own verification tag (from our INIT or INIT ACK).
    local_vtag: Option<u32>,
    /// When the peer last sent us a packet.
    last_rx: Instant,
    /// When we last sent a HEARTBEAT.
    last_hb: Option<Instant>,
    ended: Option<End>,
}

struct Driver {
    socket: Arc<UdpSocket>,
    /// Faults injected by an administrator (supervised server driver).
    faults: Option<mpsc::UnboundedReceiver<FaultKind>>,
    /// Client drivers use a connected socket.
    connected_peer: Option<SocketAddr>,
    endpoint: Endpoint,
    conns: HashMap<ConnId, Conn>,
    by_handle: HashMap<AssociationHandle, ConnId>,
    next_id: ConnId,
    cmd_tx: mpsc::UnboundedSender<Cmd>,
    cmd_rx: mpsc::UnboundedReceiver<Cmd>,
    role: Role,
    out: Vec<(SocketAddr, Vec<u8>)>,
}

enum Wake {
    Datagram(usize, SocketAddr),
    SocketError(io::Error),
    Cmd(Cmd),
    Timer,
    ListenerDropped,
    Fault(Option<FaultKind>),
}

impl Driver {
    fn new(
        socket: Arc<UdpSocket>,
        connected_peer: Option<SocketAddr>,
        endpoint: Endpoint,
        role: Role,
    ) -> Driver {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        Driver {
            socket,
            faults: None,
            connected_peer,
            endpoint,
            conns: HashMap::new(),
            by_handle: HashMap::new(),
            next_id: 1,
            cmd_tx,
            cmd_rx,
            role,
            out: Vec::new(),
        }
    }

    fn add_conn(
        &mut self,
        ch: AssociationHandle,
        assoc: sctp_proto::Association,
        remote: SocketAddr,
        peer_cum_tsn: Option<u32>,
        handshake_deadline: Instant,
    ) -> ConnId {
        let id = self.next_id;
        self.next_id += 1;
        self.by_handle.insert(ch, id);
        self.conns.insert(
            id,
            Conn {
                ch,
                assoc,
                remote,
                handshake_deadline,
                established: false,
                link: None,
                shared: Arc::new(Shared::default()),
                pending: VecDeque::new(),
                peer_cum_tsn,
                out_header: None,
                peer_shutdown: false,
                saw_abort: false,
                saw_shutdown_complete: false,
                sent_shutdown_complete: false,
                closing: false,
                shutdown_called: false,
                close_reply: None,
                close_deadline: None,
                parked_sends: Vec::new(),
                local_vtag: None,
                last_rx: Instant::now(),
                last_hb: None,
                ended: None,
            },
        );
        id
    }

    fn with_faults(mut self, faults: Option<mpsc::UnboundedReceiver<FaultKind>>) -> Self {
        self.faults = faults;
        self
    }

    /// Runs until nothing needs the driver ([`TaskEnd::Finished`]), or an
    /// injected stop.
    async fn run(mut self) -> TaskEnd {
        let mut buf = vec![0u8; 65536];
        // Kick off the client's INIT.
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.drive(id, Instant::now());
        }
        loop {
            self.flush().await;
            let now = Instant::now();
            self.reap();
            if self.should_exit(now) {
                return TaskEnd::Finished;
            }
            let wake_at = self.next_wake(now);
            let wake = {
                let socket = &self.socket;
                let cmd_rx = &mut self.cmd_rx;
                let accept_tx = match &self.role {
                    Role::Server { accept_tx } => accept_tx.as_ref(),
                    Role::Client { .. } => None,
                };
                let faults = &mut self.faults;
                tokio::select! {
                    r = socket.recv_from(&mut buf) => match r {
                        Ok((n, from)) => Wake::Datagram(n, from),
                        Err(e) => Wake::SocketError(e),
                    },
                    Some(cmd) = cmd_rx.recv() => Wake::Cmd(cmd),
                    _ = async {
                        match wake_at {
                            Some(t) => tokio::time::sleep_until(t.into()).await,
                            None => std::future::pending().await,
                        }
                    } => Wake::Timer,
                    _ = async {
                        match accept_tx {
                            Some(tx) => tx.closed().await,
                            None => std::future::pending().await,
                        }
                    } => Wake::ListenerDropped,
                    f = async {
                        match faults {
                            Some(rx) => rx.recv().await,
                            None => std::future::pending().await,
                        }
                    } => Wake::Fault(f),
                }
            };
            let now = Instant::now();
            match wake {
                Wake::Datagram(n, from) => {
                    let pkt = buf[..n].to_vec();
                    self.on_datagram(pkt, from, now);
                }
                Wake::SocketError(e) => self.on_socket_error(e),
                Wake::Cmd(cmd) => self.on_cmd(cmd, now),
                Wake::Timer => {}
                Wake::Fault(Some(FaultKind::Panic)) => crate::supervision::injected_panic(),
                Wake::Fault(Some(FaultKind::Stop)) => {
                    return TaskEnd::Stopped("the driver stopped".into())
                }
                // The supervisor's handle is gone: no more faults.
                Wake::Fault(None) => self.faults = None,
                Wake::ListenerDropped => {
                    if let Role::Server { accept_tx } = &mut self.role {
                        *accept_tx = None;
                    }
                    self.endpoint.reject_new_associations();
                }
            }
            self.on_timers(Instant::now());
        }
    }

    fn should_exit(&self, now: Instant) -> bool {
        match &self.role {
            Role::Server { accept_tx } => accept_tx.is_none() && self.conns.is_empty(),
            Role::Client { linger_until, .. } => {
                self.conns.is_empty() && linger_until.is_none_or(|t| t <= now)
            }
        }
    }

    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        };
        for c in self.conns.values() {
            if c.ended.is_some() {
                continue;
            }
            consider(c.assoc.poll_timeout());
            if !c.established {
                consider(Some(c.handshake_deadline));
            }
            consider(c.close_deadline);
            if c.established {
                consider(Some(c.last_rx + DEAD_PEER_TIMEOUT));
                let mut hb = c.last_rx + HEARTBEAT_IDLE;
                if let Some(t) = c.last_hb {
                    hb = hb.max(t + HEARTBEAT_RETRY);
                }
                consider(Some(hb));
            }
        }
        if let Role::Client {
            linger_until: Some(t),
            ..
        } = &self.role
        {
            if self.conns.is_empty() {
                consider(Some(*t));
            }
        }
        at.map(|t| t.max(now))
    }

    async fn flush(&mut self) {
        for (to, pkt) in std::mem::take(&mut self.out) {
            if trace_enabled() {
                trace(format_args!("send to {to}: {}", describe(&pkt)));
            }
            let r = match self.connected_peer {
                Some(_) => self.socket.send(&pkt).await,
                None => self.socket.send_to(&pkt, to).await,
            };
            if let Err(e) = r {
                self.on_socket_error(e);
            }
        }
    }

    fn on_socket_error(&mut self, e: io::Error) {
        if trace_enabled() {
            trace(format_args!("socket error: {e}"));
        }
        if self.connected_peer.is_none() {
            // A server socket reports nothing useful (no ICMP on unconnected
            // UDP sockets); keep serving.
            return;
        }
        let peer = self
            .connected_peer
            .unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
        let end = if e.kind() == io::ErrorKind::ConnectionRefused {
            End::Failed(
                io::ErrorKind::ConnectionRefused,
                format!("nothing listens for SCTP over UDP at {peer} (ICMP port unreachable)"),
            )
        } else if matches!(
            e.raw_os_error(),
            Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH)
        ) {
            End::Failed(e.kind(), format!("{peer} is unreachable: {e}"))
        } else {
            return;
        };
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.end_conn(id, end.clone());
        }
    }

    // -- inbound --------------------------------------------------------

    fn on_datagram(&mut self, mut pkt: Vec<u8>, from: SocketAddr, now: Instant) {
        if trace_enabled() {
            trace(format_args!("recv from {from}: {}", describe(&pkt)));
        }
        let Some(hdr) = wire::header(&pkt) else {
            return;
        };
        let Some(first) = wire::first_chunk_type(&pkt) else {
            return;
        };
        let is_server = matches!(self.role, Role::Server { .. });
        let mut init_tsn = None;
        if first == wire::CT_INIT || first == wire::CT_INIT_ACK {
            if !wire::checksum_ok(&pkt) {
                return;
            }
            if let Some(stripped) = wire::strip_unparsed_init_params(&pkt) {
                pkt = stripped;
            }
            init_tsn = wire::init_tag_and_tsn(&pkt).map(|(_, tsn)| tsn);
        }
        if first == wire::CT_INIT {
            if !is_server {
                // A client endpoint has no server config: sctp-proto would
                // panic on an INIT it does not know.
                return;
            }
            let refusing = matches!(self.role, Role::Server { accept_tx: None });
            if refusing || self.conns.len() >= MAX_ASSOCIATIONS {
                if let Some(r) = wire::out_of_the_blue_reply(&pkt) {
                    self.out.push((from, r));
                }
                return;
            }
        }

        if wire::has_chunk(&pkt, wire::CT_HEARTBEAT_ACK) {
            // Answers to the driver's own HEARTBEATs: sctp-proto does not
            // know the chunk (it would close the association), so it never
            // sees them.
            if !wire::checksum_ok(&pkt) {
                return;
            }
            if let Some(c) = self
                .conns
                .values_mut()
                .find(|c| c.remote == from && c.ended.is_none() && c.local_vtag == Some(hdr.vtag))
            {
                c.last_rx = now;
            }
            match wire::without_chunks(&pkt, wire::CT_HEARTBEAT_ACK) {
                Some(rest) if wire::first_chunk_type(&rest).is_some() => pkt = rest,
                _ => return,
            }
        }

        let data = Bytes::from(pkt);
        match self.endpoint.handle(now, from, None, None, data.clone()) {
            Some((ch, DatagramEvent::NewAssociation(assoc))) => {
                let peer_cum = init_tsn.map(|t| t.wrapping_sub(1));
                let id = self.add_conn(ch, assoc, from, peer_cum, now + HANDSHAKE_TIMEOUT);
                self.drive(id, now);
            }
            Some((ch, DatagramEvent::AssociationEvent(ev))) => {
                let Some(&id) = self.by_handle.get(&ch) else {
                    return;
                };
                let Some(c) = self.conns.get_mut(&id) else {
                    return;
                };
                if let Some(tsn) = init_tsn {
                    if first == wire::CT_INIT_ACK && c.peer_cum_tsn.is_none() {
                        c.peer_cum_tsn = Some(tsn.wrapping_sub(1));
                    }
                }
                for ck in wire::chunks(&data) {
                    match ck.typ {
                        wire::CT_SHUTDOWN => c.peer_shutdown = true,
                        wire::CT_ABORT => c.saw_abort = true,
                        wire::CT_SHUTDOWN_COMPLETE => c.saw_shutdown_complete = true,
                        _ => {}
                    }
                }
                if c.saw_abort || c.saw_shutdown_complete {
                    // sctp-proto drops its streams when it closes: take every
                    // complete message out first.
                    read_messages(c, usize::MAX);
                }
                c.last_rx = now;
                c.assoc.handle_event(ev);
                self.drive(id, now);
            }
            None => self.on_out_of_the_blue(&data, hdr, from),
        }
    }

    fn on_out_of_the_blue(&mut self, pkt: &[u8], hdr: wire::Header, from: SocketAddr) {
        if !wire::checksum_ok(pkt) {
            return;
        }
        // ABORT and SHUTDOWN COMPLETE with the T bit carry the tag we sent,
        // which sctp-proto's endpoint does not route.
        if let Some(ck) = wire::chunks(pkt).next() {
            if (ck.typ == wire::CT_ABORT || ck.typ == wire::CT_SHUTDOWN_COMPLETE)
                && ck.flags & wire::FLAG_T != 0
            {
                let target = self.conns.iter().find_map(|(id, c)| {
                    (c.remote == from
                        && c.ended.is_none()
                        && c.out_header.is_some_and(|h| h.vtag == hdr.vtag))
                    .then_some(*id)
                });
                if let Some(id) = target {
                    let end = if ck.typ == wire::CT_ABORT {
                        End::Aborted
                    } else {
                        End::Closed
                    };
                    if let Some(c) = self.conns.get_mut(&id) {
                        read_messages(c, usize::MAX);
                    }
                    self.end_conn(id, end);
                    return;
                }
            }
        }
        if let Some(reply) = wire::out_of_the_blue_reply(pkt) {
            self.out.push((from, reply));
        }
    }

    // -- commands -------------------------------------------------------

    fn on_cmd(&mut self, cmd: Cmd, now: Instant) {
        match cmd {
            Cmd::Send { id, data, reply } => {
                let Some(c) = self.conns.get_mut(&id) else {
                    let _ = reply.send(Err(closed_error()));
                    return;
                };
                if c.ended.is_some() || c.closing || c.peer_shutdown {
                    let _ = reply.send(Err(closed_error()));
                    return;
                }
                let written = match c.assoc.stream(STREAM) {
                    Ok(mut s) => s.write_sctp(&data, PPI),
                    Err(_) => c
                        .assoc
                        .open_stream(STREAM, PPI)
                        .and_then(|mut s| s.write_sctp(&data, PPI)),
                };
                match written {
                    Ok(_) => {
                        if buffered(c) > SEND_HIGH_WATER {
                            c.parked_sends.push(reply);
                        } else {
                            let _ = reply.send(Ok(()));
                        }
                    }
                    Err(sctp_proto::Error::ErrOutboundPacketTooLarge) => {
                        let _ = reply.send(Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("message exceeds the maximum of {MAX_MESSAGE_SIZE} bytes"),
                        )));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(io::Error::new(
                            io::ErrorKind::BrokenPipe,
                            format!("cannot send on the SCTP association: {e}"),
                        )));
                    }
                }
                self.drive(id, now);
            }
            Cmd::Close { id, reply } => self.start_close(id, Some(reply), now),
            Cmd::Dropped { id } => self.start_close(id, None, now),
            Cmd::Resume { id } => {
                if self.conns.contains_key(&id) {
                    self.drive(id, now);
                }
            }
        }
    }

    fn start_close(
        &mut self,
        id: ConnId,
        reply: Option<oneshot::Sender<io::Result<()>>>,
        now: Instant,
    ) {
        let Some(c) = self.conns.get_mut(&id) else {
            if let Some(r) = reply {
                let _ = r.send(Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the SCTP association is gone",
                )));
            }
            return;
        };
        c.closing = true;
        // The application reads no more.
        c.link = None;
        c.pending.clear();
        if let Some(end) = &c.ended {
            if let Some(r) = reply {
                let _ = r.send(end.to_result());
            }
            return;
        }
        if let Some(r) = reply {
            c.close_reply = Some(r);
        }
        if c.close_deadline.is_none() {
            c.close_deadline = Some(now + CLOSE_TIMEOUT);
        }
        if !c.established {
            self.abort_conn(
                id,
                End::Failed(
                    io::ErrorKind::NotConnected,
                    "closed before established".into(),
                ),
            );
            return;
        }
        self.drive(id, now);
    }

    // -- timers ---------------------------------------------------------

    fn on_timers(&mut self, now: Instant) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            if c.ended.is_some() {
                continue;
            }
            if !c.established && c.handshake_deadline <= now {
                let end = End::Failed(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no SCTP handshake with {} within {:?}",
                        c.remote,
                        if matches!(self.role, Role::Client { .. }) {
                            CONNECT_TIMEOUT
                        } else {
                            HANDSHAKE_TIMEOUT
                        }
                    ),
                );
                self.abort_conn(id, end);
                continue;
            }
            if c.close_deadline.is_some_and(|t| t <= now) {
                let end = End::Failed(
                    io::ErrorKind::TimedOut,
                    format!(
                        "graceful SCTP shutdown with {} did not complete within {CLOSE_TIMEOUT:?}; association aborted",
                        c.remote
                    ),
                );
                self.abort_conn(id, end);
                continue;
            }
            if c.established && c.last_rx + DEAD_PEER_TIMEOUT <= now {
                let end = End::Failed(
                    io::ErrorKind::TimedOut,
                    format!(
                        "SCTP peer {} sent nothing for {DEAD_PEER_TIMEOUT:?} (heartbeats unanswered); association aborted",
                        c.remote
                    ),
                );
                self.abort_conn(id, end);
                continue;
            }
            if c.established
                && c.last_rx + HEARTBEAT_IDLE <= now
                && c.last_hb.is_none_or(|t| t + HEARTBEAT_RETRY <= now)
            {
                c.last_hb = Some(now);
                if let Some(h) = c.out_header {
                    let info = now.duration_since(c.last_rx).as_millis() as u64;
                    self.out.push((
                        c.remote,
                        wire::heartbeat_packet(h.src_port, h.dst_port, h.vtag, info),
                    ));
                }
            }
            if c.assoc.poll_timeout().is_some_and(|t| t <= now) {
                c.assoc.handle_timeout(now);
                self.drive(id, now);
            }
        }
    }

    // -- the per-association work ---------------------------------------

    fn drive(&mut self, id: ConnId, now: Instant) {
        for _ in 0..4 {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if c.ended.is_some() {
                pump(c);
                return;
            }
            let mut progressed = false;

            // Application events.
            let events: Vec<Event> = std::iter::from_fn(|| c.assoc.poll()).collect();
            for ev in events {
                progressed = true;
                match ev {
                    Event::Connected => {
                        let c = c_mut(&mut self.conns, id);
                        if !c.established {
                            c.established = true;
                            self.on_connected(id, now);
                        }
                    }
                    Event::AssociationLost { reason } => {
                        let end = self.loss_end(id, &reason.to_string());
                        self.end_conn(id, end);
                        return;
                    }
                    Event::HandshakeFailed { reason } => {
                        let end = End::Failed(
                            io::ErrorKind::TimedOut,
                            format!("SCTP handshake failed: {reason}"),
                        );
                        self.end_conn(id, end);
                        return;
                    }
                    Event::Stream(StreamEvent::Opened { .. }) => {
                        while c_mut(&mut self.conns, id).assoc.accept_stream().is_some() {}
                    }
                    _ => {}
                }
            }
            let c = c_mut(&mut self.conns, id);

            // Received messages: into the handle's inbox.
            pump(c);

            // Sends waiting for room.
            if !c.parked_sends.is_empty() && buffered(c) <= SEND_HIGH_WATER {
                for r in c.parked_sends.drain(..) {
                    let _ = r.send(Ok(()));
                }
            }

            // Graceful close: SHUTDOWN only once everything was acknowledged.
            if c.closing && !c.shutdown_called && !c.peer_shutdown && buffered(c) == 0 {
                c.shutdown_called = true;
                let _ = c.assoc.shutdown();
                progressed = true;
            }

            // Outgoing packets.
            while let Some(t) = c.assoc.poll_transmit(now) {
                if let Payload::RawEncode(pkts) = t.payload {
                    for p in pkts {
                        progressed = true;
                        let mut v = p.to_vec();
                        outbound_fixups(c, &mut v);
                        self.out.push((t.remote, v));
                    }
                }
            }
            // Held back on purpose: `shutdown()` announces "drained" at once,
            // and the endpoint would then stop routing the SHUTDOWN ACK.
            while c.assoc.poll_endpoint_event().is_some() {}

            if c.sent_shutdown_complete {
                self.end_conn(id, End::Closed);
                return;
            }
            if !progressed {
                return;
            }
        }
    }

    fn on_connected(&mut self, id: ConnId, now: Instant) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        match &mut self.role {
            Role::Client { connected, .. } => {
                if let Some(tx) = connected.take() {
                    if tx.send(Ok(())).is_err() {
                        // connect() was given up on.
                        c.closing = true;
                        c.link = None;
                        c.close_deadline = Some(now + CLOSE_TIMEOUT);
                    }
                }
            }
            Role::Server { accept_tx } => {
                let (tx, inbox) = mpsc::channel(INBOX_MESSAGES);
                c.link = Some(tx);
                let handle = UdpAssociation {
                    id,
                    cmd: self.cmd_tx.clone(),
                    inbox,
                    shared: c.shared.clone(),
                    peer: c.remote,
                    closed: false,
                };
                let refused = match accept_tx {
                    Some(atx) => atx
                        .try_send((handle, c.remote))
                        .err()
                        .map(|e| e.into_inner().0),
                    None => Some(handle),
                };
                if let Some(mut h) = refused {
                    h.closed = true;
                    drop(h);
                    c.closing = true;
                    c.link = None;
                    c.close_deadline = Some(now);
                }
            }
        }
    }

    fn loss_end(&self, id: ConnId, reason: &str) -> End {
        match self.conns.get(&id) {
            Some(c) if c.saw_shutdown_complete => End::Closed,
            Some(c) if c.saw_abort => End::Aborted,
            _ => End::Failed(
                io::ErrorKind::ConnectionAborted,
                format!("SCTP association lost: {reason}"),
            ),
        }
    }

    /// Sends ABORT (when the peer's tag is known) and ends the association.
    fn abort_conn(&mut self, id: ConnId, end: End) {
        if let Some(c) = self.conns.get_mut(&id) {
            if let Some(h) = c.out_header {
                self.out.push((
                    c.remote,
                    wire::abort_packet(h.src_port, h.dst_port, h.vtag, false),
                ));
            }
        }
        self.end_conn(id, end);
    }

    /// The association is over for sctp-proto: report it drained to the
    /// endpoint, answer whoever waits, and close the inbox once the handle
    /// has read what is left.
    fn end_conn(&mut self, id: ConnId, end: End) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.ended.is_some() {
            return;
        }
        let _ = c.assoc.close();
        while c.assoc.poll().is_some() {}
        while c.assoc.poll_endpoint_event().is_some() {}
        self.endpoint.handle_event(c.ch, EndpointEvent::drained());
        self.by_handle.remove(&c.ch);
        c.shared.set_end(end.clone());
        if let Some(r) = c.close_reply.take() {
            let _ = r.send(end.to_result());
        }
        for r in c.parked_sends.drain(..) {
            let _ = r.send(end.to_result());
        }
        c.ended = Some(end.clone());
        if let Role::Client {
            connected,
            linger_until,
        } = &mut self.role
        {
            if let Some(tx) = connected.take() {
                let _ = tx.send(Err(end.to_result().err().unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::ConnectionAborted, "closed")
                })));
            }
            *linger_until = Some(Instant::now() + CLIENT_LINGER);
        }
        pump(c);
    }

    /// Forgets associations that are over and whose handle has everything.
    fn reap(&mut self) {
        self.conns
            .retain(|_, c| !(c.ended.is_some() && c.link.is_none()));
    }
}

fn c_mut(conns: &mut HashMap<ConnId, Conn>, id: ConnId) -> &mut Conn {
    conns
        .get_mut(&id)
        .expect("association present while driven")
}

fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the SCTP association is closed")
}

fn buffered(c: &mut Conn) -> usize {
    c.assoc
        .stream(STREAM)
        .ok()
        .and_then(|s| s.buffered_amount().ok())
        .unwrap_or(0)
}

/// Reads complete messages out of sctp-proto into `pending`, up to `limit`
/// messages waiting there.
fn read_messages(c: &mut Conn, limit: usize) {
    while c.pending.len() < limit {
        let mut got = None;
        for sid in c.assoc.stream_ids() {
            if let Ok(mut s) = c.assoc.stream(sid) {
                if let Ok(Some(chunks)) = s.read_sctp() {
                    let mut v = vec![0u8; chunks.len()];
                    if chunks.read(&mut v).is_ok() {
                        got = Some(Bytes::from(v));
                        break;
                    }
                }
            }
        }
        match got {
            Some(m) => c.pending.push_back(m),
            None => break,
        }
    }
}

/// Moves complete messages from sctp-proto into the handle's inbox as room
/// allows; closes the inbox (end of stream) once the peer shut down or the
/// association ended and nothing is left to read.
fn pump(c: &mut Conn) {
    if c.link.is_none() || c.closing {
        // Nobody reads: drop what arrives.
        read_messages(c, usize::MAX);
        c.pending.clear();
        return;
    }
    loop {
        read_messages(c, INBOX_MESSAGES);
        if c.pending.is_empty() {
            break;
        }
        let Some(tx) = &c.link else {
            c.pending.clear();
            return;
        };
        while let Some(m) = c.pending.pop_front() {
            // Flag first: a handle that takes a message after a failed
            // try_send below sees it and asks for more.
            c.shared.rx_blocked.store(true, Ordering::Release);
            match tx.try_send(m) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(m)) => {
                    c.pending.push_front(m);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    // The handle went away; its Dropped command follows.
                    c.pending.clear();
                    c.link = None;
                    return;
                }
            }
        }
        c.shared.rx_blocked.store(false, Ordering::Release);
    }
    if c.ended.is_some() || c.peer_shutdown {
        c.shared.set_end(c.ended.clone().unwrap_or(End::Closed));
        c.link = None;
    }
}

/// Fixes sctp-proto's outgoing packets and keeps the bookkeeping the fixes
/// need.
fn outbound_fixups(c: &mut Conn, pkt: &mut [u8]) {
    if let Some(cum) = wire::sack_cumulative_tsn(pkt) {
        c.peer_cum_tsn = Some(cum);
    }
    if wire::has_chunk(pkt, wire::CT_SHUTDOWN) {
        if let Some(cum) = c.peer_cum_tsn {
            wire::patch_shutdown_cumulative_tsn(pkt, cum);
        }
    }
    if wire::has_chunk(pkt, wire::CT_SHUTDOWN_COMPLETE) {
        c.sent_shutdown_complete = true;
    }
    let first = wire::first_chunk_type(pkt);
    if first == Some(wire::CT_INIT) || first == Some(wire::CT_INIT_ACK) {
        if let Some((tag, _)) = wire::init_tag_and_tsn(pkt) {
            c.local_vtag = Some(tag);
        }
    }
    if first != Some(wire::CT_INIT) {
        if let Some(h) = wire::header(pkt) {
            c.out_header = Some(h);
        }
    }
}
