//! `ManagerSession`: one SCTP association of the manager protocol. Reads the
//! administrator's credentials and answers `VER STATUS` (closing on failure);
//! then reads exactly one request, asks the actor that owns the answer
//! (`UserRegistry`, `MetricsCollector`, `ConnectionSupervisor`), replies and
//! closes. Nothing runs before authentication succeeds; a peer silent for the
//! manager timeout is dropped. Passwords are never logged.

use actix::prelude::*;
use slog::{info, warn, Logger};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::actors::metrics::{self, MetricsCollector};
use crate::actors::registry::{self, RegistryError, UserRegistry};
use crate::actors::supervisor::{self, ConnectionSupervisor};
use crate::protocol::manager::{self, AuthReply, AuthRequest, Reply, Request, Status};
use crate::protocol::Password;
use crate::transport::Association;

/// What every manager session needs.
pub struct ManagerEnv {
    pub admin: (String, Password),
    pub registry: Addr<UserRegistry>,
    pub metrics: Addr<MetricsCollector>,
    pub supervisor: Addr<ConnectionSupervisor>,
    pub timeout: Duration,
    pub log: Logger,
    /// Manager sessions open now (the listener bounds it).
    pub sessions: AtomicUsize,
}

pub struct ManagerSession {
    assoc: Option<Association>,
    peer: SocketAddr,
    env: Arc<ManagerEnv>,
}

impl ManagerSession {
    pub fn new(assoc: Association, peer: SocketAddr, env: Arc<ManagerEnv>) -> Self {
        ManagerSession {
            assoc: Some(assoc),
            peer,
            env,
        }
    }
}

impl Actor for ManagerSession {
    type Context = Context<Self>;

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        self.env.sessions.fetch_sub(1, Ordering::AcqRel);
        Running::Stop
    }

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(assoc) = self.assoc.take() else {
            ctx.stop();
            return;
        };
        let env = self.env.clone();
        let peer = self.peer;
        ctx.spawn(
            async move {
                let outcome = serve(assoc, &env).await;
                match outcome {
                    Ok(what) => {
                        info!(env.log, "manager request"; "peer" => %peer, "outcome" => what)
                    }
                    Err(e) => {
                        warn!(env.log, "manager session failed"; "peer" => %peer, "error" => e)
                    }
                }
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        );
    }
}

async fn recv(assoc: &mut Association, timeout: Duration) -> Result<bytes::Bytes, String> {
    match tokio::time::timeout(timeout, assoc.recv_msg()).await {
        Err(_) => Err("peer silent past the manager timeout".into()),
        Ok(Err(e)) => Err(format!("receive failed: {e}")),
        Ok(Ok(None)) => Err("peer closed early".into()),
        Ok(Ok(Some(m))) => Ok(m),
    }
}

async fn send(assoc: &mut Association, msg: &[u8], timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, assoc.send_msg(msg)).await {
        Err(_) => Err("send timed out".into()),
        Ok(Err(e)) => Err(format!("send failed: {e}")),
        Ok(Ok(())) => Ok(()),
    }
}

/// Sends the last message and closes, whether or not the send succeeded.
async fn send_and_close(
    mut assoc: Association,
    msg: &[u8],
    timeout: Duration,
) -> Result<(), String> {
    let r = send(&mut assoc, msg, timeout).await;
    let _ = tokio::time::timeout(timeout, assoc.close()).await;
    r
}

/// Runs one association to its end; the Ok string is for the log.
async fn serve(mut assoc: Association, env: &ManagerEnv) -> Result<String, String> {
    let msg = recv(&mut assoc, env.timeout).await?;
    let status = match AuthRequest::from_message(&msg) {
        Err(e) => e.status(),
        Ok(auth) => {
            let (name, pass) = &env.admin;
            // Both compared in full, whatever the outcome of the first.
            let name_ok = crate::protocol::ct_eq(auth.username.as_bytes(), name.as_bytes());
            let pass_ok = pass.ct_eq(auth.password.expose());
            if name_ok && pass_ok {
                Status::Success
            } else {
                Status::AuthFailed
            }
        }
    };
    let reply = AuthReply { status }.to_vec();
    if status != Status::Success {
        send_and_close(assoc, &reply, env.timeout).await?;
        return Ok(format!("authentication refused: {status:?}"));
    }
    send(&mut assoc, &reply, env.timeout).await?;

    let msg = recv(&mut assoc, env.timeout).await?;
    let (reply, what) = match Request::from_message(&msg) {
        Err(e) => match manager::peek_cmd(&msg) {
            Some(cmd) => (
                Reply::Status {
                    cmd,
                    status: e.status(),
                },
                format!("bad request: {e}"),
            ),
            None => {
                // Too short to carry a CMD to echo: the close is the answer.
                let _ = tokio::time::timeout(env.timeout, assoc.close()).await;
                return Ok(format!("bad request: {e}"));
            }
        },
        Ok(req) => execute(req, env).await,
    };
    send_and_close(assoc, &reply.to_vec(), env.timeout).await?;
    Ok(what)
}

fn registry_status(r: Result<Result<(), RegistryError>, MailboxError>) -> Status {
    match r {
        Ok(Ok(())) => Status::Success,
        Ok(Err(RegistryError::Exists)) => Status::UserExists,
        Ok(Err(RegistryError::Full)) => Status::UserLimit,
        Ok(Err(RegistryError::NoSuchUser)) => Status::NoSuchUser,
        Ok(Err(RegistryError::Io(_))) | Err(_) => Status::GeneralFailure,
    }
}

/// Runs one authenticated request against the actors.
async fn execute(req: Request, env: &ManagerEnv) -> (Reply, String) {
    let cmd = req.cmd();
    let status_reply = |status: Status| Reply::Status { cmd, status };
    match req {
        Request::AddUser { username, password } => {
            let s = registry_status(
                env.registry
                    .send(registry::AddUser {
                        username: username.clone(),
                        password,
                    })
                    .await,
            );
            (status_reply(s), format!("add user {username}: {s:?}"))
        }
        Request::RemoveUser { username } => {
            let s = registry_status(
                env.registry
                    .send(registry::RemoveUser {
                        username: username.clone(),
                    })
                    .await,
            );
            (status_reply(s), format!("remove user {username}: {s:?}"))
        }
        Request::ChangePassword { username, password } => {
            let s = registry_status(
                env.registry
                    .send(registry::ChangePassword {
                        username: username.clone(),
                        password,
                    })
                    .await,
            );
            (
                status_reply(s),
                format!("change password of {username}: {s:?}"),
            )
        }
        Request::ListUsers => match env.registry.send(registry::ListUsers).await {
            Ok(users) => {
                let n = users.len();
                match Reply::users(users) {
                    Ok(r) => (r, format!("list users: {n}")),
                    Err(_) => (
                        status_reply(Status::GeneralFailure),
                        "list users: too many".into(),
                    ),
                }
            }
            Err(_) => (
                status_reply(Status::GeneralFailure),
                "list users: registry gone".into(),
            ),
        },
        Request::Metrics => match env.metrics.send(metrics::GetSnapshot).await {
            Ok(s) => (
                Reply::Metrics {
                    historic: s.historic,
                    active: s.active,
                    bytes: s.bytes,
                },
                "metrics".into(),
            ),
            Err(_) => (
                status_reply(Status::GeneralFailure),
                "metrics: collector gone".into(),
            ),
        },
        Request::SetMaxClients(n) => {
            match env.supervisor.send(supervisor::SetMaxClients(n)).await {
                Ok(()) => (
                    status_reply(Status::Success),
                    format!("set max clients {n}"),
                ),
                Err(_) => (
                    status_reply(Status::GeneralFailure),
                    "set max clients: supervisor gone".into(),
                ),
            }
        }
    }
}
