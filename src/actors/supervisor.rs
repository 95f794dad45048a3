//! `ConnectionSupervisor`: owns admission (max clients) and shutdown.
//!
//! Max clients is enforced through the supervisor's [`Gate`] (and
//! `--max-clients-per-ip` through its [`PerIpLimit`]), which the
//! `Listener` on each worker arbiter consults for every accepted client:
//! admitted while fewer than max clients are open, otherwise refused at once
//! (closed, counted, logged), never queued. The gate is atomics so that
//! admission costs no cross-thread round trip, and a session gives its slot
//! back itself when it stops; the supervisor alone changes the limit
//! ([`SetMaxClients`], from the manager). Lowering the limit closes nobody,
//! it only holds back new clients.
//!
//! Each admitted client is a `SocksSession` child actor of the `Listener`
//! that accepted it, on that listener's arbiter (so no per-client message
//! crosses threads). On shutdown the gate is closed for good ([`Gate::close`]: no
//! actor needs to answer for nobody new to get in, and no later
//! [`SetMaxClients`] opens it again); the drain then waits on the gate
//! (`Server::shutdown`), so a supervisor that is restarting or gone cannot
//! shorten or lengthen it.

use actix::prelude::*;
use slog::Logger;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The admission gate: how many clients are open and how many may be.
#[derive(Debug)]
pub struct Gate {
    active: AtomicU32,
    max: AtomicU32,
    /// Closed for good (shutdown): `max` stays 0.
    closed: AtomicBool,
    next_id: AtomicU64,
    /// Notified when the last open client goes.
    emptied: Notify,
}

impl Gate {
    pub fn new(max: u32) -> Self {
        Gate {
            active: AtomicU32::new(0),
            max: AtomicU32::new(max),
            closed: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            emptied: Notify::new(),
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
        let was = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if was == Ok(1) {
            self.emptied.notify_waiters();
        }
    }

    /// Resolves once no client is open.
    pub async fn wait_empty(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            // Registered before the check, so a release in between is seen.
            emptied.as_mut().enable();
            if self.active() == 0 {
                return;
            }
            emptied.await;
        }
    }

    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Acquire)
    }

    pub fn max(&self) -> u32 {
        self.max.load(Ordering::Acquire)
    }

    /// Changes the limit; false (and no change) once the gate is closed.
    fn set_max(&self, max: u32) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        self.max.store(max, Ordering::Release);
        // A close in between wins.
        if self.closed.load(Ordering::Acquire) {
            self.max.store(0, Ordering::Release);
            return false;
        }
        true
    }

    /// Admits nobody from now on, for good (shutdown).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.max.store(0, Ordering::Release);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// At most `max` clients open at once from one IP address
/// (`--max-clients-per-ip`), so one host cannot take every slot; 0 is no
/// limit, and then nothing is locked or counted.
#[derive(Debug, Default)]
pub struct PerIpLimit {
    max: u32,
    open: Mutex<HashMap<IpAddr, u32>>,
}

impl PerIpLimit {
    pub fn new(max: u32) -> Self {
        PerIpLimit {
            max,
            open: Mutex::default(),
        }
    }

    pub fn max(&self) -> u32 {
        self.max
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u32>> {
        // The map stays consistent whatever a panicking holder did (every
        // update is a single insert or remove): take it back.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for `ip`; false when it already has `max` open.
    pub fn try_take(&self, ip: IpAddr) -> bool {
        if self.max == 0 {
            return true;
        }
        let mut open = self.open();
        let n = open.entry(ip.to_canonical()).or_insert(0);
        if *n >= self.max {
            return false;
        }
        *n += 1;
        true
    }

    /// Gives `ip`'s place back (its session ended, or the gate refused it).
    pub fn give_back(&self, ip: IpAddr) {
        if self.max == 0 {
            return;
        }
        let mut open = self.open();
        let ip = ip.to_canonical();
        match open.get_mut(&ip) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                open.remove(&ip);
            }
            None => {}
        }
    }

    /// How many clients `ip` has open (tests).
    pub fn open_from(&self, ip: IpAddr) -> u32 {
        self.open().get(&ip.to_canonical()).copied().unwrap_or(0)
    }
}

pub struct ConnectionSupervisor {
    gate: Arc<Gate>,
    log: Logger,
}

impl ConnectionSupervisor {
    /// `gate` is created first (the `MetricsCollector` and the listeners read
    /// it too); only the supervisor changes its limit.
    pub fn new(gate: Arc<Gate>, log: Logger) -> Self {
        ConnectionSupervisor { gate, log }
    }
}

impl Actor for ConnectionSupervisor {
    type Context = Context<Self>;
}

/// A restart keeps the gate (shared with the listeners and sessions); the
/// drain does not need this actor at all.
impl Supervised for ConnectionSupervisor {}

crate::handle_fault!(ConnectionSupervisor);

/// Change max clients (from the manager).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetMaxClients(pub u32);

impl Handler<SetMaxClients> for ConnectionSupervisor {
    type Result = ();
    fn handle(&mut self, msg: SetMaxClients, _: &mut Context<Self>) {
        let from = self.gate.max();
        if self.gate.set_max(msg.0) {
            slog::info!(self.log, "max clients changed"; "from" => from, "to" => msg.0,
                        "active" => self.gate.active());
        } else {
            slog::warn!(self.log, "max clients unchanged: shutting down, nobody is admitted";
                        "asked" => msg.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn per_ip_limit_counts_each_address() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let limit = PerIpLimit::new(2);
        assert!(limit.try_take(a) && limit.try_take(a));
        assert!(!limit.try_take(a), "a third from a");
        assert!(
            !limit.try_take("::ffff:192.0.2.1".parse().unwrap()),
            "mapped is a"
        );
        assert!(limit.try_take(b));
        limit.give_back(a);
        assert_eq!(limit.open_from(a), 1);
        assert!(limit.try_take(a));
        limit.give_back(a);
        limit.give_back(a);
        limit.give_back(a); // one too many: nothing to take back
        assert_eq!(limit.open_from(a), 0);
        assert!(limit.open().get(&a).is_none(), "no entry left behind");
        let none = PerIpLimit::new(0);
        assert!((0..100).all(|_| none.try_take(a)));
        assert_eq!(none.open_from(a), 0, "no limit: nothing counted");
    }

    #[test]
    fn gate_admits_up_to_max_and_releases() {
        let gate = Gate::new(2);
        assert_eq!(gate.try_admit(), Some(0));
        assert_eq!(gate.try_admit(), Some(1));
        assert_eq!(gate.try_admit(), None, "third client over max 2");
        gate.release();
        assert_eq!(gate.active(), 1);
        assert_eq!(gate.try_admit(), Some(2));
        gate.release();
        gate.release();
        gate.release(); // one too many: stays at zero
        assert_eq!(gate.active(), 0);
    }

    #[test]
    fn a_closed_gate_stays_closed() {
        let gate = Gate::new(5);
        assert!(gate.set_max(6));
        gate.close();
        assert_eq!(gate.try_admit(), None);
        assert!(!gate.set_max(100), "no reopening during a drain");
        assert_eq!((gate.max(), gate.try_admit()), (0, None));
        assert!(gate.is_closed());
    }

    #[tokio::test]
    async fn wait_empty_resolves_when_the_last_client_goes() {
        let gate = Arc::new(Gate::new(10));
        gate.wait_empty().await; // nobody open: at once
        gate.try_admit().unwrap();
        gate.try_admit().unwrap();
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait_empty().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        gate.release();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "one client still open");
        gate.release();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("resolved after the last release")
            .unwrap();
    }
}
