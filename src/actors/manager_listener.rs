//! `ManagerListener`: owns the manager's SCTP endpoint (kernel or over UDP)
//! and starts one `ManagerSession` per association. Unauthenticated
//! associations are bounded by the sessions themselves (at most
//! `MAX_PRE_AUTH`, a new one evicting the flooder's oldest); the listener
//! refuses only when [`MAX_AUTHENTICATED`] sessions are past authentication
//! at once, and as a last resort at [`MAX_MANAGER_SESSIONS`] in all.
//!
//! It accepts until the process exits: during a drain the sessions answer
//! reading commands and refuse changes (`ManagerEnv::draining`).
//!
//! Supervision: the permanent node `manager`. Its endpoint outlives a
//! restart (the accept loop borrows it through a [`Lease`] that puts it
//! back when the loop is cancelled), so the manager keeps its address;
//! manager sessions are temporary children, whose crash is logged and
//! counted.

use actix::prelude::*;
use slog::{warn, Logger};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::actors::child;
use crate::actors::manager_session::{ManagerEnv, ManagerSession};
use crate::supervision::{SessionCounts, Tag};
use crate::transport;

/// Manager sessions past authentication at once; more associations are
/// closed at once (only administrators get there).
pub const MAX_AUTHENTICATED: usize = 16;
/// Manager sessions at once, whatever their state: a safety net above
/// `MAX_PRE_AUTH` + [`MAX_AUTHENTICATED`] (evicted sessions take a moment
/// to go).
pub const MAX_MANAGER_SESSIONS: usize = 256;

pub struct ManagerListener {
    /// The endpoints (one per `--manager-bind` address), kept across
    /// restarts.
    slots: Vec<Rc<RefCell<Slot>>>,
    /// Sent in from another thread, registered at the first start.
    handed_over: Vec<transport::Listener>,
    env: Arc<ManagerEnv>,
    counts: Arc<SessionCounts>,
    log: Logger,
    accept_loops: Vec<SpawnHandle>,
}

impl ManagerListener {
    pub fn new(
        listeners: Vec<transport::Listener>,
        env: Arc<ManagerEnv>,
        counts: Arc<SessionCounts>,
        log: Logger,
    ) -> Self {
        ManagerListener {
            slots: Vec::new(),
            handed_over: listeners,
            env,
            counts,
            log,
            accept_loops: Vec::new(),
        }
    }

    /// The accept loop of one endpoint, which it borrows for as long as
    /// it runs.
    fn accept_loop(
        &self,
        slot: &Rc<RefCell<Slot>>,
    ) -> Option<impl std::future::Future<Output = ()>> {
        let taken = std::mem::replace(&mut *slot.borrow_mut(), Slot::Lent);
        let listener = match taken {
            Slot::Kept(l) => l,
            other => {
                *slot.borrow_mut() = other;
                return None;
            }
        };
        let mut lease = Lease {
            slot: slot.clone(),
            listener: Some(listener),
        };
        let env = self.env.clone();
        let counts = self.counts.clone();
        let log = self.log.clone();
        Some(async move {
            let Some(listener) = lease.listener.as_mut() else {
                return;
            };
            loop {
                match listener.accept().await {
                    Ok((assoc, peer)) => {
                        if env.authenticated.load(Ordering::Acquire) >= MAX_AUTHENTICATED
                            || counts.live() >= MAX_MANAGER_SESSIONS as u64
                        {
                            // Dropping the association closes it.
                            warn!(log, "manager association refused: too many at once";
                                  "peer" => %peer);
                            drop(assoc);
                            continue;
                        }
                        let session =
                            ManagerSession::new(assoc, peer, env.clone()).counted(counts.clone());
                        let crashed = session.crash_reporter();
                        child::start_temporary(Tag::ManagerSession, session, crashed);
                    }
                    Err(e) => {
                        warn!(log, "manager accept failed"; "error" => %e);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        })
    }
}

/// Where the endpoint is.
enum Slot {
    /// Not registered yet, or given back by a cancelled accept loop.
    Kept(transport::Listener),
    /// On loan to the accept loop.
    Lent,
}

/// The endpoint on loan to the accept loop; back in its slot when the loop
/// ends or is cancelled (a restart).
struct Lease {
    slot: Rc<RefCell<Slot>>,
    listener: Option<transport::Listener>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut slot = self.slot.borrow_mut();
        if let (Some(l), Slot::Lent) = (self.listener.take(), &*slot) {
            *slot = Slot::Kept(l);
        }
    }
}

impl Supervised for ManagerListener {
    fn restarting(&mut self, _: &mut Context<Self>) {
        // Cancelled with the context; their leases gave the endpoints back.
        self.accept_loops.clear();
    }
}

crate::handle_fault!(ManagerListener);

impl Actor for ManagerListener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for l in self.handed_over.drain(..) {
            self.slots.push(Rc::new(RefCell::new(Slot::Kept(l))));
        }
        for slot in self.slots.clone() {
            if let Some(fut) = self.accept_loop(&slot) {
                self.accept_loops.push(ctx.spawn(fut.into_actor(self)));
            }
        }
    }
}
