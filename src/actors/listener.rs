//! `Listener`: one per worker arbiter. Owns that worker's listening sockets
//! (`SO_REUSEPORT`: every worker listens on every `--bind` address and the
//! kernel spreads clients over them), accepts, admits each client through the
//! `ConnectionSupervisor`'s gate and starts its `SocksSession` on this same
//! arbiter, so a client's socket never changes threads. Running out of file
//! descriptors (EMFILE/ENFILE) backs off and carries on; nothing but
//! [`StopAccepting`] ends the accept loops.

use actix::prelude::*;
use slog::{error, warn, Logger};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::actors::session::{SessionEnv, SocksSession};
use crate::actors::supervisor::{self, ConnectionSupervisor, Gate};

pub struct Listener {
    sockets: Vec<std::net::TcpListener>,
    gate: Arc<Gate>,
    supervisor: Addr<ConnectionSupervisor>,
    env: Arc<SessionEnv>,
    log: Logger,
    loops: Vec<SpawnHandle>,
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
            loops: Vec::new(),
        }
    }
}

/// Errors after which accepting again at once would spin: wait a little.
fn needs_backoff(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

struct Acceptor {
    gate: Arc<Gate>,
    supervisor: Addr<ConnectionSupervisor>,
    env: Arc<SessionEnv>,
    log: Logger,
}

impl Acceptor {
    async fn run(self, socket: std::net::TcpListener) {
        let listener = match socket
            .set_nonblocking(true)
            .and_then(|_| tokio::net::TcpListener::from_std(socket))
        {
            Ok(l) => l,
            Err(e) => {
                error!(self.log, "cannot register listener"; "error" => %e);
                return;
            }
        };
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => match self.gate.try_admit() {
                    Some(id) => {
                        let session = SocksSession::new(
                            id,
                            stream,
                            peer,
                            self.env.clone(),
                            self.supervisor.clone(),
                        )
                        .start();
                        self.supervisor
                            .do_send(supervisor::Opened { id, peer, session });
                    }
                    None => {
                        // Dropping the stream closes it at once.
                        drop(stream);
                        self.supervisor.do_send(supervisor::Refused { peer });
                    }
                },
                Err(e) if needs_backoff(&e) => {
                    warn!(self.log, "accept failed, backing off 100ms"; "error" => %e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // ECONNABORTED and friends: that one client is gone; carry on.
                Err(e) => warn!(self.log, "accept failed"; "error" => %e),
            }
        }
    }
}

impl Actor for Listener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for socket in std::mem::take(&mut self.sockets) {
            let acceptor = Acceptor {
                gate: self.gate.clone(),
                supervisor: self.supervisor.clone(),
                env: self.env.clone(),
                log: self.log.clone(),
            };
            self.loops
                .push(ctx.spawn(acceptor.run(socket).into_actor(self)));
        }
    }
}

/// Stop accepting and close the listening sockets (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAccepting;

impl Handler<StopAccepting> for Listener {
    type Result = ();
    fn handle(&mut self, _: StopAccepting, ctx: &mut Context<Self>) {
        for h in self.loops.drain(..) {
            ctx.cancel_future(h);
        }
    }
}
