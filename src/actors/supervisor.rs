//! `ConnectionSupervisor`: owns admission. Every accepted client comes here
//! first ([`Admit`]); it is admitted while fewer than max clients are open and
//! started as a `SocksSession` child actor on one of the worker arbiters
//! (round robin), otherwise refused at once: closed, counted and logged, never
//! queued. Sessions tell it when they stop ([`Release`]). The manager changes
//! the limit at runtime ([`SetMaxClients`]); lowering it closes nobody, it only
//! holds back new clients. On shutdown it waits for sessions to drain.

use actix::prelude::*;
use slog::{debug, warn, Logger};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use crate::actors::metrics::{self, MetricsCollector};
use crate::actors::session::{self, SessionEnv, SocksSession};

pub struct ConnectionSupervisor {
    max_clients: u32,
    sessions: HashMap<u64, Addr<SocksSession>>,
    next_id: u64,
    workers: Vec<ArbiterHandle>,
    next_worker: usize,
    env: Arc<SessionEnv>,
    metrics: Addr<MetricsCollector>,
    log: Logger,
    drained: Vec<oneshot::Sender<()>>,
    /// Refusals are logged at most once a second, with a count.
    refused_unlogged: u64,
    refused_logged_at: Option<Instant>,
}

impl ConnectionSupervisor {
    pub fn new(
        max_clients: u32,
        workers: Vec<ArbiterHandle>,
        env: Arc<SessionEnv>,
        metrics: Addr<MetricsCollector>,
        log: Logger,
    ) -> Self {
        assert!(!workers.is_empty(), "at least one worker arbiter");
        ConnectionSupervisor {
            max_clients,
            sessions: HashMap::new(),
            next_id: 0,
            workers,
            next_worker: 0,
            env,
            metrics,
            log,
            drained: Vec::new(),
            refused_unlogged: 0,
            refused_logged_at: None,
        }
    }

    fn refuse(&mut self, peer: SocketAddr) {
        self.metrics.do_send(metrics::Refused);
        self.refused_unlogged += 1;
        let now = Instant::now();
        let due = self
            .refused_logged_at
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        if due {
            warn!(self.log, "client refused: max clients reached";
                  "client" => %peer, "max_clients" => self.max_clients,
                  "refused_since_last_log" => self.refused_unlogged);
            self.refused_unlogged = 0;
            self.refused_logged_at = Some(now);
        }
    }
}

impl Actor for ConnectionSupervisor {
    type Context = Context<Self>;
}

/// A freshly accepted client connection (from the `Listener`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Admit {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
}

/// A session has stopped (from the session's `stopping()`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release {
    pub id: u64,
}

/// Change max clients (from the manager).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetMaxClients(pub u32);

/// How many client connections are open.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ActiveCount;

/// Wait until every session has ended, or `grace` has passed; then stop the
/// sessions still open. Resolves to the number that had to be stopped.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Drain {
    pub grace: Duration,
}

impl Handler<Admit> for ConnectionSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Admit, ctx: &mut Context<Self>) {
        if self.sessions.len() >= self.max_clients as usize {
            // Dropping the stream closes it.
            self.refuse(msg.peer);
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let worker = &self.workers[self.next_worker % self.workers.len()];
        self.next_worker = self.next_worker.wrapping_add(1);
        let env = self.env.clone();
        let sup = ctx.address();
        let Admit { stream, peer } = msg;
        let addr = SocksSession::start_in_arbiter(worker, move |_| {
            SocksSession::new(id, stream, peer, env, sup)
        });
        self.sessions.insert(id, addr);
        self.metrics.do_send(metrics::Opened);
        debug!(self.log, "client admitted"; "client" => %peer, "session" => id,
               "active" => self.sessions.len());
    }
}

impl Handler<Release> for ConnectionSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Release, _: &mut Context<Self>) {
        if self.sessions.remove(&msg.id).is_some() {
            self.metrics.do_send(metrics::Closed);
        }
        if self.sessions.is_empty() {
            for tx in self.drained.drain(..) {
                let _ = tx.send(());
            }
        }
    }
}

impl Handler<SetMaxClients> for ConnectionSupervisor {
    type Result = ();
    fn handle(&mut self, msg: SetMaxClients, _: &mut Context<Self>) {
        slog::info!(self.log, "max clients changed"; "from" => self.max_clients, "to" => msg.0,
                    "active" => self.sessions.len());
        self.max_clients = msg.0;
    }
}

impl Handler<ActiveCount> for ConnectionSupervisor {
    type Result = usize;
    fn handle(&mut self, _: ActiveCount, _: &mut Context<Self>) -> usize {
        self.sessions.len()
    }
}

impl Handler<Drain> for ConnectionSupervisor {
    type Result = ResponseActFuture<Self, usize>;
    fn handle(&mut self, msg: Drain, _: &mut Context<Self>) -> Self::Result {
        // Admit nobody new while draining.
        self.max_clients = 0;
        let (tx, rx) = oneshot::channel();
        if self.sessions.is_empty() {
            let _ = tx.send(());
        } else {
            self.drained.push(tx);
        }
        Box::pin(
            async move { tokio::time::timeout(msg.grace, rx).await.is_err() }
                .into_actor(self)
                .map(|timed_out, act, _| {
                    if !timed_out {
                        return 0;
                    }
                    for s in act.sessions.values() {
                        s.do_send(session::Stop);
                    }
                    act.sessions.len()
                }),
        )
    }
}
