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
use std::sync::Arc;

use crate::actors::supervisor::Gate;

pub use crate::stats::Counters;

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
        MessageResult(self.snapshot())
    }
}

/// Every counter (STATS, Prometheus).
#[derive(Message)]
#[rtype(result = "crate::stats::Reading")]
pub struct GetReading;

impl Handler<GetReading> for MetricsCollector {
    type Result = MessageResult<GetReading>;
    fn handle(&mut self, _: GetReading, _: &mut Context<Self>) -> Self::Result {
        MessageResult(reading(
            &self.counters,
            &self.gate,
            self.restarts.as_deref(),
        ))
    }
}

/// A reading of `counters`, with the gate's open clients and limit and the
/// tree's restarts (also used by the Prometheus endpoint, which reads
/// without an actor).
pub fn reading(
    counters: &Counters,
    gate: &Gate,
    sup: Option<&crate::supervision::Supervision>,
) -> crate::stats::Reading {
    crate::stats::Reading {
        totals: counters.read(),
        active: u64::from(gate.active()),
        max_clients: u64::from(gate.max()),
        restarts: sup.map_or(0, |s| s.restarts()),
    }
}

impl MetricsCollector {
    /// The counters now, with the gate's open clients and the tree's
    /// restarts.
    pub fn snapshot(&self) -> Snapshot {
        let t = self.counters.read();
        Snapshot {
            historic: t.historic,
            active: u64::from(self.gate.active()),
            bytes: t.bytes_up + t.bytes_down,
            refused: t.refused_max_clients + t.refused_per_ip,
            denied: t.denied_client_rules,
            auth_failures: t.auth_failures,
            admin_auth_failures: t.admin_auth_failures,
            admin_locked_out: t.admin_locked_out,
            admin_evicted: t.admin_evicted,
            session_crashes: t.session_crashes,
            manager_session_crashes: t.manager_session_crashes,
            restarts: self.restarts.as_ref().map_or(0, |s| s.restarts()),
        }
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
        counters.add_up(10);
        counters.add_down(5);
        counters.refused(crate::stats::Refusal::MaxClients);
        counters.refused(crate::stats::Refusal::ClientRules);
        counters.refused(crate::stats::Refusal::ClientRules);
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
