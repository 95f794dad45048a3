//! `MetricsCollector`: owns the server's counters. Historic connections
//! (SOCKS requests answered with success), active client connections, bytes
//! relayed in both directions, and clients refused by the max-clients limit.
//!
//! Sessions report bytes in batches (at least once a second while live, and
//! the exact remainder when they stop); the supervisor reports refusals. The
//! active count is read from the supervisor's admission gate, which already
//! holds it exactly. The manager reads a [`Snapshot`].

use actix::prelude::*;
use std::sync::Arc;

use crate::actors::supervisor::Gate;

#[derive(Debug)]
pub struct MetricsCollector {
    gate: Arc<Gate>,
    historic: u64,
    bytes: u64,
    refused: u64,
}

impl MetricsCollector {
    /// `gate` is the supervisor's: it counts the open client connections.
    pub fn new(gate: Arc<Gate>) -> Self {
        MetricsCollector {
            gate,
            historic: 0,
            bytes: 0,
            refused: 0,
        }
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
}

impl Actor for MetricsCollector {
    type Context = Context<Self>;
}

/// A client was refused at the max-clients limit (from the supervisor).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Refused;

/// A session's request succeeded (from the session).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Succeeded;

/// Bytes relayed since the session's previous report.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Bytes(pub u64);

/// Read the counters.
#[derive(Message)]
#[rtype(result = "Snapshot")]
pub struct GetSnapshot;

impl Handler<Refused> for MetricsCollector {
    type Result = ();
    fn handle(&mut self, _: Refused, _: &mut Context<Self>) {
        self.refused += 1;
    }
}

impl Handler<Succeeded> for MetricsCollector {
    type Result = ();
    fn handle(&mut self, _: Succeeded, _: &mut Context<Self>) {
        self.historic += 1;
    }
}

impl Handler<Bytes> for MetricsCollector {
    type Result = ();
    fn handle(&mut self, msg: Bytes, _: &mut Context<Self>) {
        self.bytes = self.bytes.saturating_add(msg.0);
    }
}

impl Handler<GetSnapshot> for MetricsCollector {
    type Result = MessageResult<GetSnapshot>;
    fn handle(&mut self, _: GetSnapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(Snapshot {
            historic: self.historic,
            active: u64::from(self.gate.active()),
            bytes: self.bytes,
            refused: self.refused,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn counts() {
        let gate = Arc::new(Gate::new(10));
        let m = MetricsCollector::new(gate.clone()).start();
        gate.try_admit().unwrap();
        gate.try_admit().unwrap();
        gate.release();
        m.send(Succeeded).await.unwrap();
        m.send(Bytes(10)).await.unwrap();
        m.send(Bytes(5)).await.unwrap();
        m.send(Refused).await.unwrap();
        let s = m.send(GetSnapshot).await.unwrap();
        assert_eq!(
            s,
            Snapshot {
                historic: 1,
                active: 1,
                bytes: 15,
                refused: 1
            }
        );
    }
}
