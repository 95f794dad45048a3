//! `MetricsCollector`: owns the server's counters. Historic connections
//! (SOCKS requests answered with success), active client connections, bytes
//! relayed in both directions, and clients refused by the max-clients limit.
//!
//! Sessions report bytes in batches (at least once a second while live, and
//! the exact remainder when they stop); the supervisor reports opens, closes
//! and refusals. The manager reads a [`Snapshot`].

use actix::prelude::*;

#[derive(Debug, Default)]
pub struct MetricsCollector {
    historic: u64,
    active: u64,
    bytes: u64,
    refused: u64,
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

/// A client connection was admitted (from the supervisor).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Opened;

/// An admitted client connection closed (from the supervisor).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Closed;

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

impl Handler<Opened> for MetricsCollector {
    type Result = ();
    fn handle(&mut self, _: Opened, _: &mut Context<Self>) {
        self.active += 1;
    }
}

impl Handler<Closed> for MetricsCollector {
    type Result = ();
    fn handle(&mut self, _: Closed, _: &mut Context<Self>) {
        self.active = self.active.saturating_sub(1);
    }
}

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
            active: self.active,
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
        let m = MetricsCollector::default().start();
        m.send(Opened).await.unwrap();
        m.send(Opened).await.unwrap();
        m.send(Closed).await.unwrap();
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
