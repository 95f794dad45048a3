//! `ManagerListener`: owns the manager's SCTP endpoint (kernel or over UDP)
//! and starts one `ManagerSession` per association. Unauthenticated
//! associations are bounded by the sessions themselves (at most
//! `MAX_PRE_AUTH`, a new one evicting the flooder's oldest); the listener
//! refuses only when [`MAX_AUTHENTICATED`] sessions are past authentication
//! at once, and as a last resort at [`MAX_MANAGER_SESSIONS`] in all.

use actix::prelude::*;
use slog::{info, warn, Logger};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::actors::manager_session::{ManagerEnv, ManagerSession};
use crate::transport;

/// Manager sessions past authentication at once; more associations are
/// closed at once (only administrators get there).
pub const MAX_AUTHENTICATED: usize = 16;
/// Manager sessions at once, whatever their state: a safety net above
/// `MAX_PRE_AUTH` + [`MAX_AUTHENTICATED`] (evicted sessions take a moment
/// to go).
pub const MAX_MANAGER_SESSIONS: usize = 256;

pub struct ManagerListener {
    listener: Option<transport::Listener>,
    env: Arc<ManagerEnv>,
    log: Logger,
    accept_loop: Option<SpawnHandle>,
}

impl ManagerListener {
    pub fn new(listener: transport::Listener, env: Arc<ManagerEnv>, log: Logger) -> Self {
        ManagerListener {
            listener: Some(listener),
            env,
            log,
            accept_loop: None,
        }
    }
}

impl Actor for ManagerListener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(mut listener) = self.listener.take() else {
            return;
        };
        let env = self.env.clone();
        let log = self.log.clone();
        let fut = async move {
            loop {
                match listener.accept().await {
                    Ok((assoc, peer)) => {
                        if env.authenticated.load(Ordering::Acquire) >= MAX_AUTHENTICATED
                            || env.sessions.load(Ordering::Acquire) >= MAX_MANAGER_SESSIONS
                        {
                            // Dropping the association closes it.
                            warn!(log, "manager association refused: too many at once";
                                  "peer" => %peer);
                            drop(assoc);
                            continue;
                        }
                        env.sessions.fetch_add(1, Ordering::AcqRel);
                        ManagerSession::new(assoc, peer, env.clone()).start();
                    }
                    Err(e) => {
                        warn!(log, "manager accept failed"; "error" => %e);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        };
        self.accept_loop = Some(ctx.spawn(fut.into_actor(self)));
    }
}

/// Stop accepting manager associations (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAccepting;

impl Handler<StopAccepting> for ManagerListener {
    type Result = ();
    fn handle(&mut self, _: StopAccepting, ctx: &mut Context<Self>) {
        if let Some(h) = self.accept_loop.take() {
            ctx.cancel_future(h);
            info!(self.log, "manager stopped accepting");
        }
    }
}
