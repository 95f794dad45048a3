//! `MetricsCollector`: owns the server's counters. Historic connections
//! (SOCKS requests answered with success), active client connections, bytes
//! relayed in both directions, clients refused by the max-clients limit, and
//! clients turned away by the client rules (`--allow-client`, `--deny-client`).
//!
//! The counters that move on the data path live in [`Counters`], lock-free
//! atomics the collector hands out at start: a session counts its success and
//! its bytes as they happen and a listener its refusals, with no message and
//! no cross-thread wakeup per client or per chunk. The active count is read
//! from the supervisor's admission gate, which already holds it exactly. The
//! manager asks the collector for a [`Snapshot`] ([`GetSnapshot`]).

use actix::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::actors::supervisor::Gate;

/// The counters sessions and listeners write into. Relaxed atomics: each
/// counter is exact on its own; a snapshot is not one instant across them.
#[derive(Debug, Default)]
pub struct Counters {
    historic: AtomicU64,
    bytes: AtomicU64,
    refused: AtomicU64,
    denied: AtomicU64,
    auth_failures: AtomicU64,
    admin_auth_failures: AtomicU64,
    admin_locked_out: AtomicU64,
    admin_evicted: AtomicU64,
    session_crashes: AtomicU64,
    manager_session_crashes: AtomicU64,
}

impl Counters {
    /// A SOCKS client failed RFC 1929 authentication (or was refused for
    /// want of any user).
    pub fn auth_failed(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A manager login failed (wrong or malformed credentials).
    pub fn admin_auth_failed(&self) {
        self.admin_auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A manager login was refused unchecked: its source is locked out.
    pub fn admin_locked_out(&self) {
        self.admin_locked_out.fetch_add(1, Ordering::Relaxed);
    }

    /// An unauthenticated manager association was closed to make room.
    pub fn admin_evicted(&self) {
        self.admin_evicted.fetch_add(1, Ordering::Relaxed);
    }

    /// A session's request succeeded (its first 0x00 reply was sent).
    pub fn succeeded(&self) {
        self.historic.fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes relayed (either direction).
    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// A client was refused at the max-clients limit.
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A client's address is not permitted by the client rules.
    pub fn denied(&self) {
        self.denied.fetch_add(1, Ordering::Relaxed);
    }

    /// A SOCKS session panicked (and was ended, never restarted).
    pub fn session_crashed(&self) {
        self.session_crashes.fetch_add(1, Ordering::Relaxed);
    }

    /// A manager session panicked.
    pub fn manager_session_crashed(&self) {
        self.manager_session_crashes.fetch_add(1, Ordering::Relaxed);
    }
}

/// The counters live outside the collector (in [`Counters`], shared with
/// every session): a restarted collector reads the same counts.
pub struct MetricsCollector {
    gate: Arc<Gate>,
    counters: Arc<Counters>,
    /// Restarts of the supervision tree, when it has one.
    restarts: Option<Arc<crate::supervision::Supervision>>,
}

impl MetricsCollector {
    /// `gate` is the supervisor's: it counts the open client connections.
    pub fn new(gate: Arc<Gate>) -> Self {
        MetricsCollector {
            gate,
            counters: Arc::default(),
            restarts: None,
        }
    }

    /// Reports the tree's restarts in each snapshot.
    pub fn with_supervision(mut self, sup: Arc<crate::supervision::Supervision>) -> Self {
        self.restarts = Some(sup);
        self
    }

    /// The counters to give sessions and listeners (before `start()`).
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }
}

/// The counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// SOCKS sessions whose request succeeded (a 0x00 reply was sent).
    pub historic: u64,
    /// Client connections open right now.
    pub active: u64,
    /// Bytes relayed, client to target plus target to client.
    pub bytes: u64,
    /// Clients refused because max clients was reached.
    pub refused: u64,
    /// Clients turned away by the client rules.
    pub denied: u64,
    /// SOCKS clients that failed authentication.
    pub auth_failures: u64,
    /// Failed manager logins.
    pub admin_auth_failures: u64,
    /// Manager logins refused while their source was locked out.
    pub admin_locked_out: u64,
    /// Unauthenticated manager associations closed to make room.
    pub admin_evicted: u64,
    /// SOCKS sessions that panicked.
    pub session_crashes: u64,
    /// Manager sessions that panicked.
    pub manager_session_crashes: u64,
    /// Restarts of supervised actors and tasks, all nodes together.
    pub restarts: u64,
}

impl Actor for MetricsCollector {
    type Context = Context<Self>;
}

/// Nothing to reset: the counts are in [`Counters`].
impl Supervised for MetricsCollector {}

crate::handle_fault!(MetricsCollector);

/// Read the counters.
#[derive(Message)]
#[rtype(result = "Snapshot")]
pub struct GetSnapshot;

impl Handler<GetSnapshot> for MetricsCollector {
    type Result = MessageResult<GetSnapshot>;
    fn handle(&mut self, _: GetSnapshot, _: &mut Context<Self>) -> Self::Result {
        let c = &self.counters;
        MessageResult(Snapshot {
            historic: c.historic.load(Ordering::Relaxed),
            active: u64::from(self.gate.active()),
            bytes: c.bytes.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            denied: c.denied.load(Ordering::Relaxed),
            auth_failures: c.auth_failures.load(Ordering::Relaxed),
            admin_auth_failures: c.admin_auth_failures.load(Ordering::Relaxed),
            admin_locked_out: c.admin_locked_out.load(Ordering::Relaxed),
            admin_evicted: c.admin_evicted.load(Ordering::Relaxed),
            session_crashes: c.session_crashes.load(Ordering::Relaxed),
            manager_session_crashes: c.manager_session_crashes.load(Ordering::Relaxed),
            restarts: self.restarts.as_ref().map_or(0, |s| s.restarts()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn counts() {
        let gate = Arc::new(Gate::new(10));
        let collector = MetricsCollector::new(gate.clone());
        let counters = collector.counters();
        let m = collector.start();
        gate.try_admit().unwrap();
        gate.try_admit().unwrap();
        gate.release();
        counters.succeeded();
        counters.add_bytes(10);
        counters.add_bytes(5);
        counters.refused();
        counters.denied();
        counters.denied();
        counters.auth_failed();
        counters.admin_auth_failed();
        counters.admin_locked_out();
        counters.admin_evicted();
        counters.session_crashed();
        counters.manager_session_crashed();
        let s = m.send(GetSnapshot).await.unwrap();
        assert_eq!(
            s,
            Snapshot {
                historic: 1,
                active: 1,
                bytes: 15,
                refused: 1,
                denied: 2,
                auth_failures: 1,
                admin_auth_failures: 1,
                admin_locked_out: 1,
                admin_evicted: 1,
                session_crashes: 1,
                manager_session_crashes: 1,
                restarts: 0,
            }
        );
    }
}
