//! `Listener`: owns the SOCKS listening sockets and accepts clients, handing
//! each to the `ConnectionSupervisor`. Running out of file descriptors
//! (EMFILE/ENFILE) backs off and carries on; nothing but [`StopAccepting`]
//! ends the accept loops.

use actix::prelude::*;
use slog::{error, info, warn, Logger};
use std::io;
use std::time::Duration;

use crate::actors::supervisor::{self, ConnectionSupervisor};

pub struct Listener {
    sockets: Vec<std::net::TcpListener>,
    supervisor: Addr<ConnectionSupervisor>,
    log: Logger,
    loops: Vec<SpawnHandle>,
}

impl Listener {
    /// `sockets` are bound and listening already (so their ports are known).
    pub fn new(
        sockets: Vec<std::net::TcpListener>,
        supervisor: Addr<ConnectionSupervisor>,
        log: Logger,
    ) -> Self {
        Listener {
            sockets,
            supervisor,
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

async fn accept_loop(
    socket: std::net::TcpListener,
    supervisor: Addr<ConnectionSupervisor>,
    log: Logger,
) {
    let local = socket.local_addr().ok();
    let listener = match socket
        .set_nonblocking(true)
        .and_then(|_| tokio::net::TcpListener::from_std(socket))
    {
        Ok(l) => l,
        Err(e) => {
            error!(log, "cannot register listener"; "error" => %e);
            return;
        }
    };
    if let Some(addr) = local {
        info!(log, "SOCKS5 listening"; "addr" => %addr);
    }
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => match stream.into_std() {
                Ok(stream) => supervisor.do_send(supervisor::Admit { stream, peer }),
                Err(e) => warn!(log, "cannot detach accepted socket"; "error" => %e),
            },
            Err(e) if needs_backoff(&e) => {
                warn!(log, "accept failed, backing off 100ms"; "error" => %e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // ECONNABORTED and friends: that one client is gone; carry on.
            Err(e) => warn!(log, "accept failed"; "error" => %e),
        }
    }
}

impl Actor for Listener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for socket in std::mem::take(&mut self.sockets) {
            let fut = accept_loop(socket, self.supervisor.clone(), self.log.clone());
            self.loops.push(ctx.spawn(fut.into_actor(self)));
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
        info!(self.log, "stopped accepting");
    }
}
