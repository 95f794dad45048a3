//! `ConnectionSupervisor`: owns admission and the sessions it admitted.
//!
//! Max clients is enforced through the supervisor's [`Gate`], which the
//! `Listener` on each worker arbiter consults for every accepted client:
//! admitted while fewer than max clients are open, otherwise refused at once
//! (closed, counted, logged), never queued. The gate is two atomics so that
//! admission costs no cross-thread round trip; the supervisor alone changes the
//! limit ([`SetMaxClients`], from the manager). Each admitted client becomes a
//! `SocksSession` child actor on the listener's own arbiter, announced with
//! [`Opened`]; sessions tell the supervisor when they stop ([`Release`]).
//! Lowering the limit closes nobody, it only holds back new clients. On
//! shutdown it waits for sessions to drain ([`Drain`]), then stops the rest.

use actix::prelude::*;
use slog::{debug, warn, Logger};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use crate::actors::metrics::{self, MetricsCollector};
use crate::actors::session::{self, SocksSession};

/// The admission gate: how many clients are open and how many may be.
#[derive(Debug)]
pub struct Gate {
    active: AtomicU32,
    max: AtomicU32,
    next_id: AtomicU64,
}

impl Gate {
    pub fn new(max: u32) -> Self {
        Gate {
            active: AtomicU32::new(0),
            max: AtomicU32::new(max),
            next_id: AtomicU64::new(0),
        }
    }

    /// Takes a slot if one is free; returns the new session's id.
    pub fn try_admit(&self) -> Option<u64> {
        let max = self.max.load(Ordering::Acquire);
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Gives a slot back (a session ended).
    pub fn release(&self) {
        let _ = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Acquire)
    }

    pub fn max(&self) -> u32 {
        self.max.load(Ordering::Acquire)
    }

    fn set_max(&self, max: u32) {
        self.max.store(max, Ordering::Release);
    }
}

pub struct ConnectionSupervisor {
    gate: Arc<Gate>,
    sessions: HashMap<u64, Addr<SocksSession>>,
    metrics: Addr<MetricsCollector>,
    log: Logger,
    drained: Vec<oneshot::Sender<()>>,
    /// Refusals are logged at most once a second, with a count.
    refused_unlogged: u64,
    refused_logged_at: Option<Instant>,
}

impl ConnectionSupervisor {
    /// `gate` is created first (the `MetricsCollector` reads it too); only
    /// the supervisor changes its limit.
    pub fn new(gate: Arc<Gate>, metrics: Addr<MetricsCollector>, log: Logger) -> Self {
        ConnectionSupervisor {
            gate,
            sessions: HashMap::new(),
            metrics,
            log,
            drained: Vec::new(),
            refused_unlogged: 0,
            refused_logged_at: None,
        }
    }
}

impl Actor for ConnectionSupervisor {
    type Context = Context<Self>;
}

/// A client was admitted through the gate and its session started (from a
/// `Listener`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Opened {
    pub id: u64,
    pub peer: SocketAddr,
    pub session: Addr<SocksSession>,
}

/// A client was refused at the gate (from a `Listener`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Refused {
    pub peer: SocketAddr,
}

/// A session has stopped (from the session's `stopping()`, after it gave its
/// gate slot back).
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

impl Handler<Opened> for ConnectionSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Opened, _: &mut Context<Self>) {
        self.sessions.insert(msg.id, msg.session);
        debug!(self.log, "client admitted"; "client" => %msg.peer, "session" => msg.id,
               "active" => self.sessions.len());
    }
}

impl Handler<Refused> for ConnectionSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Refused, _: &mut Context<Self>) {
        self.metrics.do_send(metrics::Refused);
        self.refused_unlogged += 1;
        let now = Instant::now();
        let due = self
            .refused_logged_at
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        if due {
            warn!(self.log, "client refused: max clients reached";
                  "client" => %msg.peer, "max_clients" => self.gate.max(),
                  "refused_since_last_log" => self.refused_unlogged);
            self.refused_unlogged = 0;
            self.refused_logged_at = Some(now);
        }
    }
}

impl Handler<Release> for ConnectionSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Release, _: &mut Context<Self>) {
        self.sessions.remove(&msg.id);
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
        slog::info!(self.log, "max clients changed"; "from" => self.gate.max(), "to" => msg.0,
                    "active" => self.gate.active());
        self.gate.set_max(msg.0);
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
        self.gate.set_max(0);
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
