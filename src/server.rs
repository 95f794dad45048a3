//! Wires the actors together: binds the sockets, starts the `UserRegistry`,
//! `MetricsCollector`, worker arbiters, `ConnectionSupervisor`, `Listener`
//! and, when administrator credentials are set, the `ManagerListener`.
//! `main.rs` and the integration tests both start the server through here.

use actix::prelude::*;
use slog::{info, warn, Logger};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::actors::listener::{self, Listener};
use crate::actors::manager_listener::{self, ManagerListener};
use crate::actors::manager_session::ManagerEnv;
use crate::actors::metrics::MetricsCollector;
use crate::actors::registry::UserRegistry;
use crate::actors::session::SessionEnv;
use crate::actors::supervisor::{self, ConnectionSupervisor};
use crate::config::Config;
use crate::transport::{self, Resolved};
use crate::users_file;

/// A running server. Must be created inside an actix `System`.
pub struct Server {
    /// The SOCKS listening addresses, as bound (port 0 resolved).
    pub socks_addrs: Vec<SocketAddr>,
    /// The manager's address and transport, when it listens.
    pub manager: Option<(SocketAddr, Resolved)>,
    pub registry: Addr<UserRegistry>,
    pub metrics: Addr<MetricsCollector>,
    pub supervisor: Addr<ConnectionSupervisor>,
    listener: Addr<Listener>,
    manager_listener: Option<Addr<ManagerListener>>,
    workers: Vec<Arbiter>,
    log: Logger,
}

/// Binds a listening TCP socket: SO_REUSEADDR, IPv6 sockets IPv6-only (so
/// `[::]:1080` and `0.0.0.0:1080` can both be bound), a deep backlog.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn err(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl Server {
    pub async fn start(config: Config, log: Logger) -> io::Result<Server> {
        // Users: flags first, then the file (a missing file starts empty and
        // is created by the first user the manager adds).
        let mut users = config.users.clone();
        if let Some(path) = &config.users_file {
            match users_file::load(path) {
                Ok(from_file) => {
                    for (name, pass) in from_file {
                        if users.iter().any(|(n, _)| *n == name) {
                            return Err(err(format!(
                                "user {name:?} is both in --user and in {}",
                                path.display()
                            )));
                        }
                        users.push((name, pass));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    info!(log, "users file not found; it will be created on the first add";
                          "path" => %path.display());
                }
                Err(e) => return Err(err(format!("{}: {e}", path.display()))),
            }
        }
        let n_users = users.len();
        let registry = UserRegistry::new(
            users,
            config.max_users,
            config.users_file.clone(),
            log.clone(),
        )
        .map_err(err)?
        .start();
        let metrics = MetricsCollector::default().start();

        let mut sockets = Vec::new();
        let mut socks_addrs = Vec::new();
        for addr in &config.bind {
            let s = bind_tcp(*addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))?;
            socks_addrs.push(s.local_addr()?);
            sockets.push(s);
        }
        if n_users == 0 {
            if socks_addrs.iter().any(|a| !a.ip().is_loopback()) {
                warn!(log, "NO AUTHENTICATION: no users are configured and the proxy listens \
                            beyond loopback, so anyone who can reach it can use it. \
                            Add --user NAME:PASS or --users-file PATH.";
                      "bind" => ?socks_addrs);
            } else {
                info!(
                    log,
                    "no users configured: clients connect without authentication"
                );
            }
        } else {
            info!(log, "username/password authentication required"; "users" => n_users);
        }

        let workers: Vec<Arbiter> = (0..config.workers.max(1)).map(|_| Arbiter::new()).collect();
        let env = Arc::new(SessionEnv {
            registry: registry.clone(),
            metrics: metrics.clone(),
            handshake_timeout: config.handshake_timeout,
            connect_timeout: config.connect_timeout,
            idle_timeout: config.idle_timeout,
            bind_timeout: config.bind_timeout,
            udp_timeout: config.udp_timeout,
            udp_advertise: config.udp_advertise,
            log: log.clone(),
        });
        let supervisor = ConnectionSupervisor::new(
            config.max_clients,
            workers.iter().map(|a| a.handle()).collect(),
            env,
            metrics.clone(),
            log.clone(),
        )
        .start();
        let listener = Listener::new(sockets, supervisor.clone(), log.clone()).start();

        let (manager, manager_listener) = match &config.admin {
            None => {
                info!(
                    log,
                    "manager disabled: set --admin NAME:PASS or ACTOR_SOCKS_ADMIN to enable it"
                );
                (None, None)
            }
            Some(admin) => {
                let l = transport::Listener::bind(config.manager_bind, config.manager_transport)
                    .await
                    .map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("manager cannot listen on {}: {e}", config.manager_bind),
                        )
                    })?;
                let addr = l.local_addr()?;
                let kind = l.transport();
                info!(log, "manager listening"; "addr" => %addr, "transport" => %kind);
                let env = Arc::new(ManagerEnv {
                    admin: admin.clone(),
                    registry: registry.clone(),
                    metrics: metrics.clone(),
                    supervisor: supervisor.clone(),
                    timeout: config.manager_timeout,
                    log: log.clone(),
                });
                let ml = ManagerListener::new(l, env, log.clone()).start();
                (Some((addr, kind)), Some(ml))
            }
        };

        Ok(Server {
            socks_addrs,
            manager,
            registry,
            metrics,
            supervisor,
            listener,
            manager_listener,
            workers,
            log,
        })
    }

    /// The lines of `--ready-file`.
    pub fn ready_text(&self) -> String {
        let mut s = String::new();
        for a in &self.socks_addrs {
            s.push_str(&format!("socks {a}\n"));
        }
        if let Some((a, t)) = &self.manager {
            s.push_str(&format!("manager {a} {t}\n"));
        }
        s
    }

    /// Stops accepting, lets sessions finish for up to `grace`, stops the rest
    /// and the worker arbiters.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.listener.send(listener::StopAccepting).await;
        if let Some(ml) = &self.manager_listener {
            let _ = ml.send(manager_listener::StopAccepting).await;
        }
        let active = self
            .supervisor
            .send(supervisor::ActiveCount)
            .await
            .unwrap_or(0);
        info!(self.log, "shutting down"; "open_sessions" => active, "grace" => ?grace);
        let stopped = self
            .supervisor
            .send(supervisor::Drain { grace })
            .await
            .unwrap_or(0);
        if stopped > 0 {
            warn!(self.log, "grace period over; sessions stopped"; "stopped" => stopped);
            // Let the stopped sessions run their `stopping()`.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for w in &self.workers {
            w.stop();
        }
    }
}
