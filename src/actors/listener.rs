//! `Listener`: one per worker arbiter. Owns that worker's listening sockets
//! (`SO_REUSEPORT`: every worker listens on every `--bind` address and the
//! kernel spreads clients over them) and the sessions it started.
//!
//! A client whose address the client rules (`--allow-client`,
//! `--deny-client`) do not permit is closed at once, before it takes a slot,
//! and so is one whose address already has `--max-clients-per-ip` open.
//! Each accepted client goes through the `ConnectionSupervisor`'s gate: past
//! it, the client becomes a `SocksSession` child started on this same arbiter
//! (a client's socket never changes threads) and recorded here; the session
//! tells its listener when it stops ([`Closed`]). Refused clients are closed
//! at once, counted and logged (at most once a second, with a count that
//! adds up exactly: see [`crate::ratelog`]). Both messages stay on this
//! thread, so serving a client sends nothing across threads. Running out of
//! file descriptors (EMFILE/ENFILE) pauses accepting for 100 ms and carries
//! on, logged the same rate-limited way; only [`StopAccepting`] ends the
//! accept streams (and flushes the counts not logged yet), and
//! [`StopSessions`] (shutdown, past the grace period) stops the sessions.
//!
//! Supervision: a listener is the permanent node `listener/N` of the tree
//! (`crate::supervision`). Its listening sockets and its sessions survive
//! its restart: the sockets are registered once and kept in the actor (a
//! restart only cancels the accept streams and starts them again on the
//! same sockets, so clients wait in the kernel's backlog meanwhile and none
//! is refused), and the sessions are separate actors that only tell their
//! listener's address (which a restart keeps) when they end. Sessions are
//! temporary children: a session's panic is caught, logged in its
//! access-log record as `end: crashed: <message>`, counted, and its slot
//! given back; it is never restarted.

use actix::prelude::*;
use slog::{error, warn, Logger};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::actors::child;
use crate::actors::session::{self, SessionEnv, SocksSession};
use crate::actors::supervisor::Gate;
use crate::ratelog::RateLimitedLog;
use crate::stats::Refusal;
use crate::supervision::{FaultKind, SessionCounts, Tag};

/// Whether a listener accepts (its sockets are kept either way until it is
/// dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepting {
    Open,
    /// [`StopAccepting`] was received: a restart does not accept again.
    Closed,
}

pub struct Listener {
    /// Handed over bound; registered with the runtime at the first start.
    bound: Vec<std::net::TcpListener>,
    /// Registered; kept across restarts.
    sockets: Vec<Rc<TcpListener>>,
    state: Accepting,
    /// Live and crashed sessions, for the supervision tree's TREE.
    counts: Arc<SessionCounts>,
    gate: Arc<Gate>,
    env: Arc<SessionEnv>,
    log: Logger,
    accepting: Vec<SpawnHandle>,
    sessions: HashMap<u64, Addr<SocksSession>>,
    /// Refusals are logged at most once a second, with a count.
    refused: RateLimitedLog,
    refused_per_ip: RateLimitedLog,
    /// So are clients turned away by the client rules.
    denied: RateLimitedLog,
    /// And failed accepts (EMFILE and the like).
    accept_failed: RateLimitedLog,
    /// The last accept error, for the line that reports a storm's end.
    accept_error: Option<String>,
}

impl Listener {
    /// `sockets` are bound and listening already (so their ports are known).
    pub fn new(
        sockets: Vec<std::net::TcpListener>,
        gate: Arc<Gate>,
        env: Arc<SessionEnv>,
        counts: Arc<SessionCounts>,
        log: Logger,
    ) -> Self {
        Listener {
            bound: sockets,
            sockets: Vec::new(),
            state: Accepting::Open,
            counts,
            gate,
            env,
            log,
            accepting: Vec::new(),
            sessions: HashMap::new(),
            refused: RateLimitedLog::default(),
            refused_per_ip: RateLimitedLog::default(),
            denied: RateLimitedLog::default(),
            accept_failed: RateLimitedLog::default(),
            accept_error: None,
        }
    }

    fn log_refused(&self, n: u64) {
        warn!(self.log, "clients refused: max clients reached";
              "max_clients" => self.gate.max(), "refused" => n);
    }

    fn log_refused_per_ip(&self, n: u64) {
        warn!(self.log, "clients refused: max clients per IP reached";
              "max_clients_per_ip" => self.env.per_ip.max(), "refused" => n);
    }

    fn log_denied(&self, n: u64) {
        warn!(self.log, "clients denied by the client rules"; "denied" => n);
    }

    fn log_accept_failed(&self, n: u64) {
        warn!(self.log, "accept failed";
              "error" => self.accept_error.as_deref().unwrap_or("-"), "failures" => n);
    }

    /// Reports the counts a storm left unlogged: periodically (once its
    /// period is over) or, with `flush`, all of them (shutdown).
    fn report_pending(&mut self, flush: bool) {
        let now = Instant::now();
        let take = |l: &mut RateLimitedLog| if flush { l.flush() } else { l.tick(now) };
        let (a, b, c, d) = (
            take(&mut self.refused),
            take(&mut self.refused_per_ip),
            take(&mut self.denied),
            take(&mut self.accept_failed),
        );
        if let Some(n) = a {
            self.log_refused(n);
        }
        if let Some(n) = b {
            self.log_refused_per_ip(n);
        }
        if let Some(n) = c {
            self.log_denied(n);
        }
        if let Some(n) = d {
            self.log_accept_failed(n);
        }
    }

    fn refuse(&mut self, stream: TcpStream, peer: SocketAddr) {
        // Dropping the stream closes it at once.
        drop(stream);
        self.env.counters.refused(Refusal::MaxClients);
        if let Some(n) = self.refused.record(Instant::now()) {
            warn!(self.log, "clients refused: max clients reached";
                  "client" => %peer, "max_clients" => self.gate.max(), "refused" => n);
        }
    }

    fn refuse_per_ip(&mut self, stream: TcpStream, peer: SocketAddr) {
        drop(stream);
        self.env.counters.refused(Refusal::PerIp);
        if let Some(n) = self.refused_per_ip.record(Instant::now()) {
            warn!(self.log, "clients refused: max clients per IP reached";
                  "client" => %peer, "max_clients_per_ip" => self.env.per_ip.max(),
                  "refused" => n);
        }
    }

    fn deny(&mut self, stream: TcpStream, peer: SocketAddr) {
        drop(stream);
        self.env.counters.refused(Refusal::ClientRules);
        if let Some(n) = self.denied.record(Instant::now()) {
            warn!(self.log, "clients denied by the client rules";
                  "client" => %peer, "denied" => n);
        }
    }
}

/// See `Listener::started`.
const TIMER_TICK: Duration = Duration::from_millis(500);

/// Errors after which accepting again at once would spin: wait a little.
fn needs_backoff(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

/// One accepted connection (or the error accepting it).
type Accepted = io::Result<(TcpStream, SocketAddr)>;

/// The endless stream of connections accepted on one listening socket.
fn accept_stream(listener: Rc<TcpListener>) -> impl futures::Stream<Item = Accepted> {
    futures::stream::poll_fn(move |cx| listener.poll_accept(cx).map(Some))
}

impl Actor for Listener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // tokio's time driver wakes itself (an eventfd write and one more
        // epoll_wait) whenever a timer is set earlier than the wake-up it has
        // planned. Sessions set timers of seconds (handshake, connect, idle);
        // with this tick planned at most TIMER_TICK ahead, setting them costs
        // no syscall. Measured: 0.4 eventfd writes per client without it.
        // The same tick reports what a storm of refusals left unlogged.
        ctx.run_interval(TIMER_TICK, |act, _| act.report_pending(false));
        for socket in std::mem::take(&mut self.bound) {
            match socket
                .set_nonblocking(true)
                .and_then(|_| TcpListener::from_std(socket))
            {
                Ok(l) => self.sockets.push(Rc::new(l)),
                Err(e) => error!(self.log, "cannot register listener"; "error" => %e),
            }
        }
        if self.state == Accepting::Open {
            for l in &self.sockets {
                self.accepting
                    .push(ctx.add_stream(accept_stream(l.clone())));
            }
        }
    }
}

impl Supervised for Listener {
    /// The accept streams and the tick were cancelled with the context;
    /// `started` adds them again on the same sockets. Sessions go on.
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.accepting.clear();
        self.accept_error = None;
    }
}

crate::handle_fault!(Listener);

/// Inject a fault into session `id`, if it is this listener's: resolves
/// to whether it was.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct FaultSession {
    pub id: u64,
    pub kind: FaultKind,
}

impl Handler<FaultSession> for Listener {
    type Result = bool;
    fn handle(&mut self, msg: FaultSession, _: &mut Context<Self>) -> bool {
        match self.sessions.get(&msg.id) {
            Some(s) => s.try_send(session::Fault(msg.kind)).is_ok(),
            None => false,
        }
    }
}

impl StreamHandler<Accepted> for Listener {
    fn handle(&mut self, accepted: Accepted, ctx: &mut Context<Self>) {
        match accepted {
            Ok((stream, peer)) if !self.env.rules.permits_client(peer.ip()) => {
                self.deny(stream, peer)
            }
            Ok((stream, peer)) if !self.env.per_ip.try_take(peer.ip()) => {
                self.refuse_per_ip(stream, peer)
            }
            Ok((stream, peer)) => match self.gate.try_admit() {
                Some(id) => {
                    let session =
                        SocksSession::new(id, stream, peer, self.env.clone(), ctx.address());
                    let crashed = session.crash_reporter(self.counts.clone());
                    let session = child::start_temporary(Tag::Session(id), session, crashed);
                    self.counts.opened();
                    self.sessions.insert(id, session);
                }
                None => {
                    self.env.per_ip.give_back(peer.ip());
                    self.refuse(stream, peer)
                }
            },
            Err(e) => {
                let backoff = needs_backoff(&e);
                self.accept_error = Some(e.to_string());
                if let Some(n) = self.accept_failed.record(Instant::now()) {
                    self.log_accept_failed(n);
                }
                if backoff {
                    // Holds every event of this listener (its accept streams
                    // included) for 100 ms. ECONNABORTED and friends: that
                    // one client is gone; carry on at once.
                    ctx.wait(tokio::time::sleep(Duration::from_millis(100)).into_actor(self));
                }
            }
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // Accept streams never end; a listener without them still owns its
        // sessions, so it keeps running.
    }
}

/// A session has stopped (from the session's `stopping()`, after it gave its
/// gate slot back).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Closed {
    pub id: u64,
}

impl Handler<Closed> for Listener {
    type Result = ();
    fn handle(&mut self, msg: Closed, _: &mut Context<Self>) {
        if self.sessions.remove(&msg.id).is_some() {
            self.counts.closed();
        }
    }
}

/// Stop accepting and close the listening sockets (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAccepting;

impl Handler<StopAccepting> for Listener {
    type Result = ();
    fn handle(&mut self, _: StopAccepting, ctx: &mut Context<Self>) {
        self.state = Accepting::Closed;
        for h in self.accepting.drain(..) {
            ctx.cancel_future(h);
        }
        // The last references once the streams are gone: the sockets close
        // and new clients are refused by the kernel, not queued.
        self.sockets.clear();
        // Nothing more can be refused: every count gets its line.
        self.report_pending(true);
    }
}

/// Stop every session still open (shutdown, past the grace period).
/// Resolves to how many were told to stop.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct StopSessions;

impl Handler<StopSessions> for Listener {
    type Result = usize;
    fn handle(&mut self, _: StopSessions, _: &mut Context<Self>) -> usize {
        for s in self.sessions.values() {
            s.do_send(session::Stop);
        }
        self.sessions.len()
    }
}
