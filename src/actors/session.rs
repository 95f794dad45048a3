//! `SocksSession`: one client connection, from greeting to the end of the
//! relay. A child of the `Listener` that accepted it, on the same worker
//! arbiter.
//!
//! It owns the client socket and, once connected, the target socket; the
//! whole exchange runs as one future inside the actor's context (owned async
//! I/O, no actor message per chunk). Its success and its bytes go straight
//! into the `MetricsCollector`'s counters as they happen. When the session
//! is dropped (it ended, crashed or its worker stopped) it gives the gate
//! slot back, tells the listener ([`listener::Closed`]) and writes the
//! session's access-log record: in `Drop`, so a panic anywhere in the
//! session still gives back what it held (it is a temporary child of the
//! supervision tree, see `actors::child`).

use actix::prelude::*;
use bytes::BytesMut;
use slog::{debug, info, Drain, Logger};
use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::actors::listener::{self, Listener};
use crate::actors::metrics::Counters;
use crate::actors::supervisor::{Gate, PerIpLimit};
use crate::auth::{Auth, Verdict};
use crate::protocol::socks5::{
    self, Address, AuthReply, AuthRequest, Command, Greeting, Method, MethodSelection, Reply,
    ReplyCode, Request,
};
use crate::protocol::UserName;
use crate::relay::bind::{self, BindListener};
use crate::relay::connect::{self, Outgoing};
use crate::relay::copy::Side;
use crate::relay::copy::{self, RelayEnd, RelayMode, Traffic};
use crate::relay::udp::{Relayed, UdpEnd, UdpRelay};
use crate::rules::SharedRules;
use crate::supervision::{FaultKind, SessionCounts};

/// What every session needs: the actors it talks to, timeouts, the logger.
/// Each worker gets its own copy (no reference count shared across cores).
#[derive(Clone)]
pub struct SessionEnv {
    /// The authentication mode and the user table, which the registry
    /// publishes (read per client without a message).
    pub auth: Arc<Auth>,
    /// The supervisor's admission gate; a session gives its slot back when it stops.
    pub gate: Arc<Gate>,
    /// The per-address limit; a session gives its place back when it stops.
    pub per_ip: Arc<PerIpLimit>,
    /// The `MetricsCollector`'s counters.
    pub counters: Arc<Counters>,
    pub handshake_timeout: Duration,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub bind_timeout: Duration,
    pub udp_timeout: Duration,
    pub udp_advertise: Option<IpAddr>,
    pub relay_mode: RelayMode,
    /// Which clients may connect (the listener checks them at accept) and
    /// which targets may be reached (CONNECT, BIND peers, UDP
    /// destinations); replaced whole on SIGHUP.
    pub rules: Arc<SharedRules>,
    /// Source addresses for outbound connections and datagrams.
    pub outgoing: Outgoing,
    pub log: Logger,
}

/// What the access log says about a session; filled in as it progresses.
#[derive(Debug, Default)]
struct Record {
    user: Option<UserName>,
    command: Option<Command>,
    target: Option<Address>,
    /// CONNECT: the address the target resolved to and was connected to.
    resolved: Option<SocketAddr>,
    reply: Option<ReplyCode>,
    /// BIND: the peer that connected, and strangers turned away.
    peer: Option<SocketAddr>,
    refused: u64,
    /// UDP ASSOCIATE: what was relayed, and dropped.
    udp: Option<(Relayed, u64)>,
    end: Option<String>,
}

pub struct SocksSession {
    id: u64,
    stream: Option<TcpStream>,
    peer: SocketAddr,
    env: Arc<SessionEnv>,
    parent: Addr<Listener>,
    traffic: Rc<Traffic>,
    record: Rc<RefCell<Record>>,
    started: Instant,
}

impl SocksSession {
    pub fn new(
        id: u64,
        stream: TcpStream,
        peer: SocketAddr,
        env: Arc<SessionEnv>,
        parent: Addr<Listener>,
    ) -> Self {
        let traffic = Rc::new(Traffic::new(env.counters.clone()));
        SocksSession {
            id,
            stream: Some(stream),
            peer,
            env,
            parent,
            traffic,
            record: Rc::new(RefCell::new(Record::default())),
            started: Instant::now(),
        }
    }
}

impl Actor for SocksSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(stream) = self.stream.take() else {
            ctx.stop();
            return;
        };
        let env = self.env.clone();
        let traffic = self.traffic.clone();
        let record = self.record.clone();
        // TCP_NODELAY is inherited from the listening socket.
        let fut = async move { serve(stream, &env, &traffic, &record).await };
        ctx.spawn(fut.into_actor(self).map(|end, act, ctx| {
            act.record.borrow_mut().end.get_or_insert(end);
            ctx.stop();
        }));
    }
}

impl SocksSession {
    /// What `child::start_temporary` calls if the session panics: the
    /// record says so, and the crash is counted (by the metrics and by the
    /// session's worker).
    pub fn crash_reporter(&self, worker: Arc<SessionCounts>) -> impl FnOnce(String) + 'static {
        let record = self.record.clone();
        let counters = self.env.counters.clone();
        move |msg| {
            counters.session_crashed();
            worker.crashed();
            record.borrow_mut().end = Some(format!("crashed: {msg}"));
        }
    }
}

impl Drop for SocksSession {
    fn drop(&mut self) {
        // The address's place first: once the gate shows the slot free,
        // the address may connect again.
        self.env.per_ip.give_back(self.peer.ip());
        self.env.gate.release();
        self.parent.do_send(listener::Closed { id: self.id });
        if let Some(code) = self.record.borrow().reply {
            self.env.counters.replied(code.into());
        }
        // The access-log record (built only when info is logged at all).
        if !self.env.log.is_info_enabled() {
            return;
        }
        let r = self.record.borrow();
        let log = &self.env.log;
        // Fields in reading order: the loggers write them last-declared
        // first, so each record is declared end to start. Only the fields
        // of its command.
        let dash = || "-".to_string();
        let end = r.end.as_deref().unwrap_or("stopped");
        let ms = self.started.elapsed().as_millis() as u64;
        let (up, down) = (self.traffic.up(), self.traffic.down());
        let reply = r
            .reply
            .map(|c| format!("{:#04x}", u8::from(c)))
            .unwrap_or_else(dash);
        let target = r
            .target
            .as_ref()
            .map(|t| t.to_string())
            .unwrap_or_else(dash);
        let user = r.user.as_ref().map_or("-", UserName::as_str);
        match r.command {
            Some(Command::Connect) => info!(log, "session";
                "end" => end, "duration_ms" => ms, "bytes_down" => down, "bytes_up" => up,
                "reply" => reply,
                "resolved" => r.resolved.map(|a| a.to_string()).unwrap_or_else(dash),
                "target" => target, "command" => "connect", "user" => user,
                "client" => %self.peer, "session" => self.id),
            Some(Command::Bind) => info!(log, "session";
                "end" => end, "duration_ms" => ms, "bytes_down" => down, "bytes_up" => up,
                "bind_refused" => r.refused,
                "bind_peer" => r.peer.map(|p| p.to_string()).unwrap_or_else(dash),
                "reply" => reply, "target" => target, "command" => "bind", "user" => user,
                "client" => %self.peer, "session" => self.id),
            Some(Command::UdpAssociate) => {
                let (relayed, dropped) = r.udp.unwrap_or_default();
                info!(log, "session";
                    "end" => end, "duration_ms" => ms, "bytes_down" => down, "bytes_up" => up,
                    "dropped" => dropped, "destinations" => relayed.destinations,
                    "datagrams_down" => relayed.datagrams_down,
                    "datagrams_up" => relayed.datagrams_up,
                    "reply" => reply, "target" => target, "command" => "udp-associate",
                    "user" => user, "client" => %self.peer, "session" => self.id)
            }
            other => info!(log, "session";
                "end" => end, "duration_ms" => ms, "reply" => reply, "target" => target,
                "command" => other.map(command_name).unwrap_or("-"), "user" => user,
                "client" => %self.peer, "session" => self.id),
        }
    }
}

/// Stop the session now (shutdown past the grace period).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for SocksSession {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        self.record
            .borrow_mut()
            .end
            .get_or_insert_with(|| "stopped by shutdown".into());
        ctx.stop();
    }
}

/// A fault injected by an administrator (`session/ID`, `--fault-injection`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fault(pub FaultKind);

impl Handler<Fault> for SocksSession {
    type Result = ();
    fn handle(&mut self, msg: Fault, ctx: &mut Context<Self>) {
        match msg.0 {
            FaultKind::Panic => crate::supervision::injected_panic(),
            FaultKind::Stop => {
                self.record.borrow_mut().end =
                    Some("stopped by an administrator (fault injection)".into());
                ctx.stop();
            }
        }
    }
}

fn command_name(c: Command) -> &'static str {
    match c {
        Command::Connect => "connect",
        Command::Bind => "bind",
        Command::UdpAssociate => "udp-associate",
        Command::Other(_) => "unknown",
    }
}

/// Why a handshake did not reach a command.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("client closed during handshake")]
    Eof,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("protocol error: {0}")]
    Protocol(#[from] socks5::Error),
    #[error("no acceptable authentication method")]
    NoMethod,
    #[error("authentication required but no user exists")]
    NoUsers,
    #[error("authentication failed: {}", .0.describe())]
    AuthFailed(Verdict),
    #[error("handshake timed out")]
    Timeout,
}

/// Reads until `decode` yields a whole message (incomplete input: read more).
async fn read_msg<T: socks5::Message>(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<T, HandshakeError> {
    loop {
        if let Some(msg) = socks5::decode_from::<T>(buf)? {
            return Ok(msg);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(HandshakeError::Eof);
        }
    }
}

/// The longest message a server sends: a reply with a 255-byte domain.
const MAX_SERVER_MESSAGE: usize = 4 + 1 + 255 + 2;

/// Encodes one message on the stack and writes it.
async fn send<F: FnOnce(&mut &mut [u8])>(stream: &mut TcpStream, f: F) -> io::Result<()> {
    let mut out = [0u8; MAX_SERVER_MESSAGE];
    let mut rest = &mut out[..];
    f(&mut rest);
    let n = MAX_SERVER_MESSAGE - rest.len();
    stream.write_all(&out[..n]).await
}

/// Greeting, method selection, authentication, request. Returns the request
/// and any bytes the client sent after it.
async fn handshake(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    env: &SessionEnv,
    record: &RefCell<Record>,
) -> Result<Request, HandshakeError> {
    let greeting: Greeting = match read_msg(stream, buf).await {
        Ok(g) => g,
        Err(e @ HandshakeError::Protocol(socks5::Error::NoMethods)) => {
            // NMETHODS = 0: say "no acceptable method" before closing
            // (RFC 1928 section 3 allows it; clients understand it).
            send(stream, |b| MethodSelection::NO_ACCEPTABLE.encode(b)).await?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    // Required is decided at start and never switched off (see `auth`):
    // with no user at all, nobody is let in.
    let required = env.auth.required();
    let no_users = required && env.auth.users().is_empty();
    let method = match (required, no_users) {
        (_, true) => Method::NoAcceptable,
        (true, false) if greeting.offers(Method::UserPass) => Method::UserPass,
        (false, _) if greeting.offers(Method::NoAuth) => Method::NoAuth,
        _ => Method::NoAcceptable,
    };
    send(stream, |b| MethodSelection { method }.encode(b)).await?;
    if no_users {
        env.counters.auth_failed();
        return Err(HandshakeError::NoUsers);
    }
    if method == Method::NoAcceptable {
        // Not an authentication failure: no credential was tried (a client
        // set up without a user, a probe); counting it would drown the
        // guesses the counter is there to show.
        return Err(HandshakeError::NoMethod);
    }
    if method == Method::UserPass {
        let auth: AuthRequest = match read_msg(stream, buf).await {
            Ok(a) => a,
            Err(e @ HandshakeError::Protocol(_)) => {
                // Includes names and passwords outside the credential rules.
                env.counters.auth_failed();
                send(stream, |b| AuthReply::FAILURE.encode(b)).await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let verdict = env.auth.verify(&auth.username, &auth.password).await;
        let answer = if verdict.accepted() {
            AuthReply::SUCCESS
        } else {
            env.counters.auth_failed();
            AuthReply::FAILURE
        };
        send(stream, |b| answer.encode(b)).await?;
        record.borrow_mut().user = Some(auth.username);
        if !verdict.accepted() {
            return Err(HandshakeError::AuthFailed(verdict));
        }
    }
    match read_msg::<Request>(stream, buf).await {
        Ok(req) => Ok(req),
        Err(HandshakeError::Protocol(e)) => {
            let code = e.reply();
            record.borrow_mut().reply = Some(code);
            send(stream, |b| Reply::failure(code).encode(b)).await?;
            Err(HandshakeError::Protocol(e))
        }
        Err(e) => Err(e),
    }
}

/// Sends a reply and notes it in the record.
async fn reply(
    stream: &mut TcpStream,
    record: &RefCell<Record>,
    code: ReplyCode,
    bound: Address,
) -> io::Result<()> {
    record.borrow_mut().reply = Some(code);
    send(stream, |b| Reply::new(code, bound).encode(b)).await
}

/// Answers a failed request with `code` (and no bound address); returns
/// `why` for the access log.
async fn fail(
    stream: &mut TcpStream,
    record: &RefCell<Record>,
    code: ReplyCode,
    why: String,
) -> String {
    let _ = reply(stream, record, code, Address::unspecified_v4()).await;
    why
}

/// [`fail`] with the reply code that names an I/O error.
async fn fail_io(
    stream: &mut TcpStream,
    record: &RefCell<Record>,
    e: &io::Error,
    why: String,
) -> String {
    fail(stream, record, connect::reply_for(e), why).await
}

/// Answers a request that succeeded and counts it as historic (the first
/// success reply of a session only).
async fn succeed(
    stream: &mut TcpStream,
    record: &RefCell<Record>,
    env: &SessionEnv,
    bound: SocketAddr,
) -> Result<(), String> {
    reply(stream, record, ReplyCode::Succeeded, Address::Ip(bound))
        .await
        .map_err(|e| format!("client write failed: {e}"))?;
    env.counters.succeeded();
    Ok(())
}

/// The whole session. Returns how it ended, for the access log.
async fn serve(
    mut stream: TcpStream,
    env: &SessionEnv,
    traffic: &Traffic,
    record: &RefCell<Record>,
) -> String {
    let mut buf = BytesMut::with_capacity(512);
    let request = match tokio::time::timeout(
        env.handshake_timeout,
        handshake(&mut stream, &mut buf, env, record),
    )
    .await
    .unwrap_or(Err(HandshakeError::Timeout))
    {
        Ok(r) => r,
        Err(e) => {
            debug!(env.log, "handshake ended"; "error" => %e);
            return e.to_string();
        }
    };
    {
        let mut r = record.borrow_mut();
        r.command = Some(request.command);
        r.target = Some(request.address.clone());
        // Authenticated: its bytes count for its user too.
        if let Some(c) = r.user.as_ref().and_then(|u| env.counters.user_session(u)) {
            traffic.set_user(c);
        }
    }
    let pending = buf.split().freeze();
    match request.command {
        Command::Connect => {
            serve_connect(stream, &request.address, &pending, env, traffic, record).await
        }
        Command::Bind => serve_bind(stream, &request.address, &pending, env, traffic, record).await,
        Command::UdpAssociate => serve_udp(stream, &request.address, env, traffic, record).await,
        Command::Other(_) => {
            let why = "command not supported".to_string();
            fail(&mut stream, record, ReplyCode::CommandNotSupported, why).await
        }
    }
}

/// Relays between the client and `other` (CONNECT's target, BIND's peer)
/// until the end; returns how it ended, for the access log. Unless both
/// sides closed cleanly, both connections end with a reset, also when the
/// session is stopped mid-relay (the guard drops with this future).
async fn relay_to(
    stream: &TcpStream,
    other: &TcpStream,
    pending: &[u8],
    client_eof: bool,
    env: &SessionEnv,
    traffic: &Traffic,
) -> String {
    let mut guard = copy::AbortGuard::new(stream, other);
    let end = copy::relay(
        stream,
        other,
        pending,
        client_eof,
        traffic,
        env.idle_timeout,
        env.relay_mode,
    )
    .await;
    if !end.aborts() {
        guard.disarm();
    }
    match end {
        RelayEnd::Closed {
            first: Side::Client,
        } => "client closed first, then the target".into(),
        RelayEnd::Closed {
            first: Side::Target,
        } => "target closed first, then the client".into(),
        RelayEnd::Idle => "idle timeout (both sides reset)".into(),
        RelayEnd::Error(e) => format!("{} error: {} (reset passed on)", e.side.name(), e.error),
    }
}

/// The most bytes a BIND client may send before its peer connects; past
/// them it is not read (TCP's flow control holds it) until the peer comes.
pub const BIND_EARLY_MAX: usize = 64 * 1024;

/// Reads what the client sends while BIND waits, into `early` (up to
/// [`BIND_EARLY_MAX`], then stops reading). Resolves on the client's FIN
/// (its bytes are kept; the FIN goes to the peer after them) or an error;
/// pending forever once `early` is full.
async fn keep_early_bytes(stream: &TcpStream, early: &mut Vec<u8>) -> io::Result<()> {
    use bytes::BufMut;
    loop {
        let room = BIND_EARLY_MAX.saturating_sub(early.len());
        if room == 0 {
            return std::future::pending().await;
        }
        stream.readable().await?;
        // Straight into `early` (no buffer in this future: its size is part
        // of every session's, idle ones included).
        early.reserve(room.min(4096));
        match stream.try_read_buf(&mut (&mut *early).limit(room)) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// BIND: first reply with the listening address, second with the peer that
/// connected, then relay as for CONNECT.
async fn serve_bind(
    mut stream: TcpStream,
    target: &Address,
    pending: &[u8],
    env: &SessionEnv,
    traffic: &Traffic,
    record: &RefCell<Record>,
) -> String {
    let targets = env.rules.targets();
    let allowed = match bind::allowed_peers(target, &targets).await {
        Ok(a) => a,
        Err(e) => {
            return fail(&mut stream, record, e.code, format!("bind: {e}")).await;
        }
    };
    let opened = match stream.local_addr() {
        Ok(local) => BindListener::open(local.ip(), allowed, (*targets).clone()).await,
        Err(e) => Err(e),
    };
    let listener = match opened.and_then(|l| l.local_addr().map(|a| (l, a))) {
        Ok(l) => l,
        Err(e) => {
            return fail_io(&mut stream, record, &e, format!("bind: cannot listen: {e}")).await;
        }
    };
    let (listener, bound) = listener;
    if let Err(why) = succeed(&mut stream, record, env, bound).await {
        return why;
    }
    let mut refused = 0u64;
    // Wait for the incoming connection. Bytes the client sends meanwhile are
    // kept for the peer (RFC 1928 lets the client speak once the first reply
    // is out), and its FIN is a half-close passed on after them; only an
    // error (a reset) ends the wait.
    let mut early = pending.to_vec();
    let mut client_eof = false;
    let accepted = {
        let accept = tokio::time::timeout(env.bind_timeout, listener.accept(&mut refused));
        tokio::pin!(accept);
        loop {
            if client_eof {
                break accept.await;
            }
            tokio::select! {
                r = &mut accept => break r,
                w = keep_early_bytes(&stream, &mut early) => match w {
                    Ok(()) => client_eof = true,
                    Err(e) => return format!("client error while waiting for BIND peer: {e}"),
                },
            }
        }
    };
    drop(listener);
    let (incoming, peer) = match accepted {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            return fail_io(&mut stream, record, &e, format!("bind: accept failed: {e}")).await;
        }
        Err(_) => {
            let why = format!("bind: nobody connected within {:?}", env.bind_timeout);
            return fail(&mut stream, record, ReplyCode::TtlExpired, why).await;
        }
    };
    // The second reply: who connected (not counted again as historic).
    if let Err(e) = reply(&mut stream, record, ReplyCode::Succeeded, Address::Ip(peer)).await {
        return format!("client write failed: {e}");
    }
    {
        let mut r = record.borrow_mut();
        r.peer = Some(peer);
        r.refused = refused;
    }
    relay_to(&stream, &incoming, &early, client_eof, env, traffic).await
}

/// UDP ASSOCIATE: a relay socket for as long as the control connection lives.
async fn serve_udp(
    mut stream: TcpStream,
    requested: &Address,
    env: &SessionEnv,
    traffic: &Traffic,
    record: &RefCell<Record>,
) -> String {
    let opened = match (stream.local_addr(), stream.peer_addr()) {
        (Ok(local), Ok(peer)) => {
            let (rules, clients) = (
                (*env.rules.targets()).clone(),
                (*env.rules.clients()).clone(),
            );
            UdpRelay::open(local.ip(), peer, requested, rules, clients, env.outgoing).await
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let (mut relay, local) = match opened.and_then(|r| r.local_addr().map(|a| (r, a))) {
        Ok(x) => x,
        Err(e) => {
            return fail_io(
                &mut stream,
                record,
                &e,
                format!("udp associate: cannot open relay: {e}"),
            )
            .await;
        }
    };
    let advertised = SocketAddr::new(env.udp_advertise.unwrap_or(local.ip()), local.port());
    if let Err(why) = succeed(&mut stream, record, env, advertised).await {
        return why;
    }
    let end = relay.run(&stream, traffic, env.udp_timeout).await;
    let d = relay.drops;
    let dropped = d.fragmented
        + d.stranger
        + d.refused_sender
        + d.malformed
        + d.unresolved
        + d.denied
        + d.send_failed;
    record.borrow_mut().udp = Some((relay.relayed, dropped));
    env.counters.udp_dropped(&[
        ("fragmented", d.fragmented),
        ("stranger", d.stranger),
        ("refused_sender", d.refused_sender),
        ("malformed", d.malformed),
        ("unresolved", d.unresolved),
        ("denied", d.denied),
        ("unsendable", d.send_failed),
    ]);
    let how = match end {
        UdpEnd::ControlClosed => "client closed the control connection".to_string(),
        UdpEnd::Idle => "udp idle timeout".to_string(),
        UdpEnd::Error(e) => format!("udp relay error: {e}"),
    };
    if dropped == 0 {
        return how;
    }
    format!(
        "{how} (dropped: {} fragmented, {} from strangers, {} from refused senders, {} malformed, {} unresolved, {} denied, {} unsendable)",
        d.fragmented,
        d.stranger,
        d.refused_sender,
        d.malformed,
        d.unresolved,
        d.denied,
        d.send_failed
    )
}

async fn serve_connect(
    mut stream: TcpStream,
    target: &Address,
    pending: &[u8],
    env: &SessionEnv,
    traffic: &Traffic,
    record: &RefCell<Record>,
) -> String {
    let outbound = match connect::connect(
        target,
        &env.rules.targets(),
        &env.outgoing,
        env.connect_timeout,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            return fail(&mut stream, record, e.code, format!("connect failed: {e}")).await;
        }
    };
    record.borrow_mut().resolved = outbound.peer_addr().ok();
    let bound = match outbound.local_addr() {
        Ok(a) => a,
        Err(e) => {
            let why = format!("outbound socket: {e}");
            return fail(&mut stream, record, ReplyCode::GeneralFailure, why).await;
        }
    };
    if let Err(why) = succeed(&mut stream, record, env, bound).await {
        return why;
    }
    relay_to(&stream, &outbound, pending, false, env, traffic).await
}
#[cfg(test)]
mod tests {
    /// The relay's state is part of every session's, idle ones included
    /// (4.6 KB of RSS each in all): what only runs while data moves (a
    /// splice burst, a rare leftover write, the flush before an abort) is
    /// boxed, and must stay so.
    #[test]
    fn the_relay_future_stays_small() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let a = tokio::net::TcpStream::connect(l.local_addr().unwrap())
                .await
                .unwrap();
            let (b, _) = l.accept().await.unwrap();
            let t = crate::relay::copy::Traffic::default();
            let f = crate::relay::copy::relay(
                &a,
                &b,
                b"",
                false,
                &t,
                std::time::Duration::from_secs(1),
                crate::relay::copy::RelayMode::Auto,
            );
            let size = std::mem::size_of_val(&f);
            assert!(size <= 1024, "the relay future is {size} bytes");
        });
    }
}
