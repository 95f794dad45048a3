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
//! at once, counted and logged (at most once a second, with a count). Both
//! messages stay on this thread, so serving a client sends nothing across
//! threads. Running out of file descriptors (EMFILE/ENFILE) pauses accepting
//! for 100 ms and carries on; only [`StopAccepting`] ends the accept streams,
//! and [`StopSessions`] (shutdown, past the grace period) stops the sessions.

use actix::prelude::*;
use slog::{error, warn, Logger};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

use crate::actors::session::{self, SessionEnv, SocksSession};
use crate::actors::supervisor::{self, ConnectionSupervisor, Gate};

pub struct Listener {
    sockets: Vec<std::net::TcpListener>,
    gate: Arc<Gate>,
    supervisor: Addr<ConnectionSupervisor>,
    env: Arc<SessionEnv>,
    log: Logger,
    accepting: Vec<SpawnHandle>,
    sessions: HashMap<u64, Addr<SocksSession>>,
    /// Refusals are logged at most once a second, with a count.
    refused: RateLimitedLog,
    refused_per_ip: RateLimitedLog,
    /// So are clients turned away by the client rules.
    denied: RateLimitedLog,
}

/// Counts events and says whether one should be logged now (at most once a
/// second); `take` returns how many happened since the last logged one.
#[derive(Default)]
struct RateLimitedLog {
    unlogged: u64,
    logged_at: Option<Instant>,
}

impl RateLimitedLog {
    fn take(&mut self) -> Option<u64> {
        self.unlogged += 1;
        let now = Instant::now();
        let due = self
            .logged_at
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        if !due {
            return None;
        }
        self.logged_at = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

impl Listener {
    /// `sockets` are bound and listening already (so their ports are known).
    pub fn new(
        sockets: Vec<std::net::TcpListener>,
        gate: Arc<Gate>,
        supervisor: Addr<ConnectionSupervisor>,
        env: Arc<SessionEnv>,
        log: Logger,
    ) -> Self {
        Listener {
            sockets,
            gate,
            supervisor,
            env,
            log,
            accepting: Vec::new(),
            sessions: HashMap::new(),
            refused: RateLimitedLog::default(),
            refused_per_ip: RateLimitedLog::default(),
            denied: RateLimitedLog::default(),
        }
    }

    fn refuse(&mut self, stream: TcpStream, peer: SocketAddr) {
        // Dropping the stream closes it at once.
        drop(stream);
        self.env.counters.refused();
        if let Some(n) = self.refused.take() {
            warn!(self.log, "client refused: max clients reached";
                  "client" => %peer, "max_clients" => self.gate.max(),
                  "refused_since_last_log" => n);
        }
    }

    fn refuse_per_ip(&mut self, stream: TcpStream, peer: SocketAddr) {
        drop(stream);
        self.env.counters.refused();
        if let Some(n) = self.refused_per_ip.take() {
            warn!(self.log, "client refused: max clients per IP reached";
                  "client" => %peer, "max_clients_per_ip" => self.env.per_ip.max(),
                  "refused_since_last_log" => n);
        }
    }

    fn deny(&mut self, stream: TcpStream, peer: SocketAddr) {
        drop(stream);
        self.env.counters.denied();
        if let Some(n) = self.denied.take() {
            warn!(self.log, "client denied by the client rules";
                  "client" => %peer, "denied_since_last_log" => n);
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
fn accept_stream(listener: TcpListener) -> impl futures::Stream<Item = Accepted> {
    futures::stream::poll_fn(move |cx| listener.poll_accept(cx).map(Some))
}

impl Actor for Listener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.supervisor.do_send(supervisor::Register(ctx.address()));
        // tokio's time driver wakes itself (an eventfd write and one more
        // epoll_wait) whenever a timer is set earlier than the wake-up it has
        // planned. Sessions set timers of seconds (handshake, connect, idle);
        // with this tick planned at most TIMER_TICK ahead, setting them costs
        // no syscall. Measured: 0.4 eventfd writes per client without it.
        ctx.run_interval(TIMER_TICK, |_, _| {});
        for socket in std::mem::take(&mut self.sockets) {
            match socket
                .set_nonblocking(true)
                .and_then(|_| TcpListener::from_std(socket))
            {
                Ok(l) => self.accepting.push(ctx.add_stream(accept_stream(l))),
                Err(e) => error!(self.log, "cannot register listener"; "error" => %e),
            }
        }
    }
}

impl StreamHandler<Accepted> for Listener {
    fn handle(&mut self, accepted: Accepted, ctx: &mut Context<Self>) {
        match accepted {
            Ok((stream, peer)) if !self.env.clients.permits(peer.ip()) => self.deny(stream, peer),
            Ok((stream, peer)) if !self.env.per_ip.try_take(peer.ip()) => {
                self.refuse_per_ip(stream, peer)
            }
            Ok((stream, peer)) => match self.gate.try_admit() {
                Some(id) => {
                    let session =
                        SocksSession::new(id, stream, peer, self.env.clone(), ctx.address())
                            .start();
                    self.sessions.insert(id, session);
                }
                None => {
                    self.env.per_ip.give_back(peer.ip());
                    self.refuse(stream, peer)
                }
            },
            Err(e) if needs_backoff(&e) => {
                warn!(self.log, "accept failed, backing off 100ms"; "error" => %e);
                // Holds every event of this listener (its accept streams
                // included) until the pause is over.
                ctx.wait(tokio::time::sleep(Duration::from_millis(100)).into_actor(self));
            }
            // ECONNABORTED and friends: that one client is gone; carry on.
            Err(e) => warn!(self.log, "accept failed"; "error" => %e),
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
        self.sessions.remove(&msg.id);
    }
}

/// Stop accepting and close the listening sockets (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAccepting;

impl Handler<StopAccepting> for Listener {
    type Result = ();
    fn handle(&mut self, _: StopAccepting, ctx: &mut Context<Self>) {
        for h in self.accepting.drain(..) {
            ctx.cancel_future(h);
        }
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
