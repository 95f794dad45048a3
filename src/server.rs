//! Wires the actors together: binds the sockets, builds the supervision
//! tree and starts its nodes (`UserRegistry`, `MetricsCollector`,
//! `ConnectionSupervisor`, one `Listener` per worker arbiter and, when
//! administrator credentials are set, the `ManagerListener` and the
//! SCTP-over-UDP driver). `main.rs` and the integration tests both start the
//! server through here.

use actix::prelude::*;
use slog::{info, warn, Logger};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::actors::child;
use crate::actors::listener::{self, Listener};
use crate::actors::manager_listener::ManagerListener;
use crate::actors::manager_session::ManagerEnv;
use crate::actors::metrics::MetricsCollector;
use crate::actors::registry::{self, UserRecord, UserRegistry};
use crate::actors::session::SessionEnv;
use crate::actors::supervisor::{ConnectionSupervisor, Gate, PerIpLimit};
use crate::auth::{Auth, AuthPolicy, Credential, Origin};
use crate::config::Config;
use crate::protocol::{Secret, UserName};
use crate::rules::SharedRules;
use crate::supervision::{Kind, Supervision, Tree};
use crate::transport::{self, Resolved, TransportKind};
use crate::users_file;

/// A running server. Must be created inside an actix `System`.
pub struct Server {
    /// The SOCKS listening addresses, as bound (port 0 resolved).
    pub socks_addrs: Vec<SocketAddr>,
    /// The manager's (first) address and transport, when it listens.
    pub manager: Option<(SocketAddr, Resolved)>,
    /// Every address the manager listens on.
    pub manager_addrs: Vec<(SocketAddr, Resolved)>,
    /// Where the Prometheus endpoint listens (`--metrics-bind`).
    pub metrics_addrs: Vec<SocketAddr>,
    pub registry: Addr<UserRegistry>,
    pub metrics: Addr<MetricsCollector>,
    pub supervisor: Addr<ConnectionSupervisor>,
    /// The supervision tree of all the above.
    pub supervision: Arc<Supervision>,
    gate: Arc<Gate>,
    listeners: Vec<Addr<Listener>>,
    /// What the manager's sessions share (told when the server drains).
    manager_env: Option<Arc<ManagerEnv>>,
    workers: Vec<Arbiter>,
    /// The authentication state the registry writes and sessions read.
    pub auth: Arc<Auth>,
    /// What `reload_users` reads again: the `--user` flags and the file.
    user_flags: Vec<(UserName, Secret)>,
    users_file: Option<std::path::PathBuf>,
    /// The client and target rules (replaced by [`Server::reload`]).
    rules: Arc<SharedRules>,
    log: Logger,
}

/// Binds a listening TCP socket: SO_REUSEADDR, SO_REUSEPORT (one socket per
/// worker on one address; the kernel spreads clients), IPv6 sockets IPv6-only (so
/// `[::]:1080` and `0.0.0.0:1080` can both be bound), a deep backlog.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    bind_tcp_with(addr, true)
}

/// `n` listening sockets sharing one address (SO_REUSEPORT).
///
/// For a given port a probe without SO_REUSEPORT is bound first, so an
/// address another process (another actor-socks, say) already listens on
/// fails with "address in use" instead of silently sharing its clients. For
/// port 0 the first socket is bound with SO_REUSEPORT straight away: the
/// kernel's search for a free port does not hand out one held by another
/// SO_REUSEPORT socket, and holding the port from the start leaves no
/// window in which another socket could take it before the others are
/// bound (a probe dropped and re-bound had one: a parallel test lost it).
pub fn bind_group(addr: SocketAddr, n: usize) -> io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        drop(bind_tcp_with(addr, false)?);
    }
    let first = bind_tcp(addr)?;
    let bound = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..n.max(1) {
        all.push(bind_tcp(bound)?);
    }
    Ok(all)
}

fn bind_tcp_with(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Accepted sockets inherit TCP_NODELAY (one setsockopt fewer per client).
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// `v` joined by spaces for a log line, or `empty` when there is nothing.
fn joined<T: std::fmt::Display>(v: &[T], empty: &str) -> String {
    if v.is_empty() {
        return empty.to_string();
    }
    v.iter().map(T::to_string).collect::<Vec<_>>().join(" ")
}

fn err(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// The users to start (or reload) with: the `--user` flags, and the users
/// file's (a missing file starts empty and is created by the first user the
/// manager adds); [`registry::merge`] decides between them.
fn load_users(
    flags: &[(UserName, Secret)],
    file: Option<&std::path::Path>,
    log: &Logger,
) -> io::Result<(Vec<UserRecord>, Vec<UserRecord>)> {
    let flags: Vec<UserRecord> = flags
        .iter()
        .map(|(n, p)| (n.clone(), Credential::Plain(p.clone()), Origin::Flag))
        .collect();
    let Some(path) = file else {
        return Ok((flags, Vec::new()));
    };
    let stored = match users_file::load(path) {
        Ok(from_file) => from_file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            info!(log, "users file not found; it will be created on the first add";
                  "path" => %path.display());
            Vec::new()
        }
        Err(e) => return Err(err(format!("{}: {e}", path.display()))),
    };
    let plaintext = stored.iter().filter(|(_, c)| !c.is_hashed()).count();
    if plaintext > 0 {
        warn!(log, "users file holds plaintext passwords; \
                    `actor-socks hash-password` prints a hash to put in their place";
              "path" => %path.display(), "plaintext" => plaintext);
    }
    for (name, _) in &stored {
        if flags.iter().any(|(n, _, _)| n == name) {
            warn!(log, "user in both --user and the users file; --user wins";
                  "user" => %name, "path" => %path.display());
        }
    }
    let stored = stored
        .into_iter()
        .map(|(n, c)| (n, c, Origin::Stored))
        .collect();
    Ok((flags, stored))
}

impl Server {
    pub async fn start(config: Config, log: Logger) -> io::Result<Server> {
        if let Some(path) = &config.users_file {
            match users_file::remove_stale_temporaries(path) {
                Ok((removed, errors)) => {
                    if removed > 0 {
                        warn!(log, "removed temporary users files left by an interrupted write";
                              "path" => %path.display(), "removed" => removed);
                    }
                    for e in errors {
                        warn!(log, "cannot remove a temporary users file"; "error" => e);
                    }
                }
                Err(e) => warn!(log, "cannot clean temporary users files";
                                "path" => %path.display(), "error" => %e),
            }
        }
        let (flags, stored) = load_users(&config.users, config.users_file.as_deref(), &log)?;
        let users = registry::merge(flags, stored, &Default::default());
        // The tree's nodes in start order (rest_for_one follows it).
        let sup = Supervision::new(
            config.supervision.overrides.clone(),
            config.supervision.fault_injection,
            log.clone(),
        );
        let registry_node = sup.add(Tree::ROOT, "registry", Kind::Actor);
        let metrics_node = sup.add(Tree::ROOT, "metrics", Kind::Actor);
        let connections = sup.add(Tree::ROOT, "connections", Kind::Supervisor);
        let supervisor_node = sup.add(connections, "supervisor", Kind::Actor);
        let n_workers = config.workers.max(1);
        let listener_nodes: Vec<_> = (0..n_workers)
            .map(|i| sup.add(connections, &format!("listener/{i}"), Kind::Actor))
            .collect();
        let management = config
            .admin
            .as_ref()
            .map(|_| sup.add(Tree::ROOT, "management", Kind::Supervisor));
        // The manager's socket is bound before anything starts, so a bad
        // manager address fails the start cleanly.
        let manager_socket = match &config.admin {
            None => {
                info!(
                    log,
                    "manager disabled: set --admin NAME:PASS or ACTOR_SOCKS_ADMIN to enable it"
                );
                None
            }
            Some(_) => {
                let mut bound = Vec::new();
                for addr in &config.manager_bind {
                    let l = transport::Listener::bind_supervised(
                        *addr,
                        config.manager_transport,
                        management.map(|m| (sup.clone(), m)),
                    )
                    .await
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("manager cannot listen on {addr}: {e}"))
                    })?;
                    bound.push(l);
                }
                Some(bound)
            }
        };
        let n_users = users.len();
        let table = registry::table(users, config.max_users).map_err(|e| err(e.to_string()))?;
        let configured = !config.users.is_empty() || config.users_file.is_some();
        let auth = Arc::new(Auth::new(config.auth, table, configured));
        // After the driver's node (added when the socket was bound): the
        // manager accepts from it, so it starts after it.
        let manager_node = management.map(|m| sup.add(m, "manager", Kind::Actor));
        // The metrics endpoint's sockets, bound now so that a bad address
        // fails the start; its task starts with the rest.
        let mut metrics_sockets = Vec::new();
        for addr in &config.metrics_bind {
            let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                io::Error::new(e.kind(), format!("metrics cannot listen on {addr}: {e}"))
            })?;
            let node = sup.add_numbered(Tree::ROOT, "prometheus", Kind::Task);
            metrics_sockets.push((Arc::new(l), node));
        }
        if let Some(node) = sup.unmatched_override() {
            return Err(err(format!(
                "--supervise names {node}, which is not a node of this server's tree"
            )));
        }
        if sup.fault_injection() {
            warn!(
                log,
                "fault injection is on (--fault-injection): the administrator can \
                        crash any node on purpose; never use it in production"
            );
        }
        let registry = {
            let (auth, max, file, log) = (
                auth.clone(),
                config.max_users,
                config.users_file.clone(),
                log.clone(),
            );
            child::start(&sup, registry_node, None, move |_| {
                UserRegistry::new(auth, max, file, log)
            })
        };
        let gate = Arc::new(Gate::new(config.max_clients));
        let metrics = MetricsCollector::new(gate.clone()).with_supervision(sup.clone());
        let counters = metrics.counters();
        let metrics = child::start(&sup, metrics_node, None, move |_| metrics);

        // An --outgoing-ip must be one of this host's addresses: say so now,
        // not as "network unreachable" on every request.
        for ip in config.outgoing.ips() {
            std::net::UdpSocket::bind((ip, 0)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("--outgoing-ip {ip} is not an address of this host: {e}"),
                )
            })?;
        }
        if config.outgoing != Default::default() {
            let ips: Vec<String> = config.outgoing.ips().map(|ip| ip.to_string()).collect();
            info!(log, "outgoing source addresses"; "ips" => ips.join(" "));
        }

        // One listening socket per worker for every address (SO_REUSEPORT).
        let mut per_worker: Vec<Vec<std::net::TcpListener>> =
            (0..n_workers).map(|_| Vec::new()).collect();
        let mut socks_addrs = Vec::new();
        for addr in &config.bind {
            let bind_err =
                |e: io::Error| io::Error::new(e.kind(), format!("cannot bind {addr}: {e}"));
            let group = bind_group(*addr, n_workers).map_err(bind_err)?;
            let bound = group[0].local_addr()?;
            info!(log, "listening"; "addr" => %bound, "workers" => n_workers);
            socks_addrs.push(bound);
            for (sockets, socket) in per_worker.iter_mut().zip(group) {
                sockets.push(socket);
            }
        }
        let beyond_loopback = socks_addrs.iter().any(|a| !a.ip().is_loopback());
        match (auth.required(), config.auth) {
            (true, _) if n_users == 0 => {
                warn!(log, "authentication required but no users: every client is refused \
                            until a user is added (manager add-user, or the users file and SIGHUP)";
                      "auth" => %config.auth);
            }
            (true, _) => info!(log, "authentication required (username/password)";
                               "auth" => %config.auth, "users" => n_users),
            (false, AuthPolicy::None) if beyond_loopback => {
                warn!(log, "NO AUTHENTICATION (--auth none) and the proxy listens beyond \
                            loopback: anyone who can reach it can use it";
                      "bind" => ?socks_addrs);
            }
            (false, AuthPolicy::None) => {
                info!(log, "no authentication (--auth none)");
            }
            (false, _) if beyond_loopback => {
                warn!(log, "NO AUTHENTICATION: no users are configured and the proxy listens \
                            beyond loopback, so anyone who can reach it can use it. \
                            Add --user NAME:PASS, --users-file PATH or --auth required.";
                      "bind" => ?socks_addrs);
            }
            (false, _) => info!(
                log,
                "no authentication until a user is added \
                                      (--auth auto, no users configured)"
            ),
        }
        let (c, t) = (&config.clients, &config.targets);
        if !c.is_open() {
            info!(log, "client rules";
                  "allow" => joined(&c.allow, "any"), "deny" => joined(&c.deny, "none"));
        }
        if !t.is_open() {
            info!(log, "target rules";
                  "allow" => joined(&t.allow, "any"), "deny" => joined(&t.deny, "none"),
                  "allow_ports" => joined(&t.allow_ports, "any"),
                  "deny_ports" => joined(&t.deny_ports, "none"));
        }

        let rules = Arc::new(SharedRules::new(
            config.clients.clone(),
            config.targets.clone(),
        ));
        let supervisor = {
            let (gate, log) = (gate.clone(), log.clone());
            child::start(&sup, supervisor_node, None, move |_| {
                ConnectionSupervisor::new(gate, log)
            })
        };
        let env = SessionEnv {
            auth: auth.clone(),
            gate: gate.clone(),
            per_ip: Arc::new(PerIpLimit::new(config.max_clients_per_ip)),
            counters: counters.clone(),
            handshake_timeout: config.handshake_timeout,
            connect_timeout: config.connect_timeout,
            idle_timeout: config.idle_timeout,
            bind_timeout: config.bind_timeout,
            udp_timeout: config.udp_timeout,
            udp_advertise: config.udp_advertise,
            relay_mode: config.relay,
            rules: rules.clone(),
            outgoing: config.outgoing,
            log: log.clone(),
        };
        let workers: Vec<Arbiter> = (0..n_workers).map(|_| Arbiter::new()).collect();
        let listeners: Vec<Addr<Listener>> = workers
            .iter()
            .zip(per_worker)
            .zip(&listener_nodes)
            .map(|((worker, sockets), &node)| {
                let (gate, env, counts, log) = (
                    gate.clone(),
                    Arc::new(env.clone()),
                    sup.sessions(node),
                    log.clone(),
                );
                child::start(&sup, node, Some(&worker.handle()), move |_| {
                    Listener::new(sockets, gate, env, counts, log)
                })
            })
            .collect();

        let (manager, manager_env) = match (manager_socket, &config.admin, manager_node) {
            (Some(ls), Some(admin), Some(node)) => {
                let mut addrs = Vec::new();
                for l in &ls {
                    let (addr, kind) = (l.local_addr()?, l.transport());
                    info!(log, "manager listening"; "addr" => %addr, "transport" => %kind);
                    addrs.push((addr, kind));
                }
                let udp = addrs.iter().any(|(_, k)| *k == Resolved::Udp);
                if udp && config.manager_transport == TransportKind::Auto {
                    info!(
                        log,
                        "this kernel has no SCTP: the manager speaks SCTP over UDP on the \
                                same address (clients: --transport udp or auto)"
                    );
                }
                let env = Arc::new(
                    ManagerEnv::new(
                        admin.clone(),
                        registry.clone(),
                        metrics.clone(),
                        supervisor.clone(),
                        config.manager_timeout,
                        config.manager_auth_timeout,
                        counters.clone(),
                        log.clone(),
                    )
                    .with_throttle(config.manager_throttle)
                    .with_supervision(sup.clone(), listeners.clone()),
                );
                let (counts, log, shared) = (sup.sessions(node), log.clone(), env.clone());
                child::start(&sup, node, None, move |_| {
                    ManagerListener::new(ls, env, counts, log)
                });
                (addrs, Some(shared))
            }
            _ => (Vec::new(), None),
        };

        let mut metrics_addrs = Vec::new();
        if !metrics_sockets.is_empty() {
            let registry = Arc::new(crate::prometheus::registry(crate::prometheus::Source {
                counters: counters.clone(),
                gate: gate.clone(),
                supervision: sup.clone(),
            }));
            for (l, node) in metrics_sockets {
                let addr = l.local_addr()?;
                info!(log, "metrics listening"; "addr" => %addr, "path" => "/metrics");
                metrics_addrs.push(addr);
                let (registry, log) = (registry.clone(), log.clone());
                tokio::spawn(crate::supervision::task::run(
                    sup.clone(),
                    node,
                    move |faults| {
                        crate::prometheus::serve(l.clone(), registry.clone(), faults, log.clone())
                    },
                ));
            }
        }

        Ok(Server {
            socks_addrs,
            metrics_addrs,
            manager: manager.first().copied(),
            manager_addrs: manager,
            registry,
            metrics,
            supervisor,
            supervision: sup,
            gate,
            auth,
            listeners,
            manager_env,
            workers,
            user_flags: config.users.clone(),
            rules,
            users_file: config.users_file.clone(),
            log,
        })
    }

    /// Reads the users file again (SIGHUP) and replaces the registry's users
    /// with it and the `--user` flags. A file that cannot be read or parsed,
    /// or that holds too many users, changes nothing. Resolves to the new
    /// number of users. Without a users file there is nothing to reload.
    pub async fn reload_users(&self) -> Result<usize, String> {
        let Some(path) = &self.users_file else {
            return Err("no --users-file to reload".into());
        };
        let (flags, stored) =
            load_users(&self.user_flags, Some(path), &self.log).map_err(|e| e.to_string())?;
        self.registry
            .send(registry::Reload {
                flags,
                stored: Some(stored),
            })
            .await
            .map_err(|e| format!("registry unavailable: {e}"))?
            .map_err(|e| e.to_string())
    }

    /// Applies a config file read again (SIGHUP with `--config`): the
    /// client and target rules are replaced whole (sessions already open
    /// keep theirs), and the users become `config`'s `--user` ones plus the
    /// users file's (the users file's path itself is fixed at start).
    /// Resolves to the new number of users; on an error nothing changes.
    pub async fn reload(&self, config: &Config) -> Result<usize, String> {
        if config.users_file != self.users_file {
            warn!(
                self.log,
                "users-file changed in the config file: it takes effect at restart"
            );
        }
        let (flags, stored) = load_users(&config.users, self.users_file.as_deref(), &self.log)
            .map_err(|e| e.to_string())?;
        // Without a users file the registry keeps the manager's changes.
        let stored = self.users_file.as_ref().map(|_| stored);
        let n = self
            .registry
            .send(registry::Reload { flags, stored })
            .await
            .map_err(|e| format!("registry unavailable: {e}"))?
            .map_err(|e| e.to_string())?;
        self.rules
            .replace(config.clients.clone(), config.targets.clone());
        let (c, t) = (&config.clients, &config.targets);
        info!(self.log, "rules reloaded";
              "allow_client" => joined(&c.allow, "any"), "deny_client" => joined(&c.deny, "none"),
              "allow_target" => joined(&t.allow, "any"), "deny_target" => joined(&t.deny, "none"),
              "allow_port" => joined(&t.allow_ports, "any"),
              "deny_port" => joined(&t.deny_ports, "none"));
        Ok(n)
    }

    /// The max clients limit in force (the admission gate's).
    pub fn max_clients(&self) -> u32 {
        self.gate.max()
    }

    /// Client connections open now.
    pub fn active_clients(&self) -> u32 {
        self.gate.active()
    }

    /// The lines of `--ready-file`.
    pub fn ready_text(&self) -> String {
        let mut s = String::new();
        for a in &self.socks_addrs {
            s.push_str(&format!("socks {a}\n"));
        }
        for (a, t) in &self.manager_addrs {
            s.push_str(&format!("manager {a} {t}\n"));
        }
        for a in &self.metrics_addrs {
            s.push_str(&format!("metrics {a}\n"));
        }
        s
    }

    /// Closes the gate (nobody new gets in, whatever state the actors are
    /// in), stops accepting, lets sessions finish for up to `grace` (from
    /// now: an actor slow to answer does not lengthen it), then stops the
    /// rest and the worker arbiters.
    ///
    /// The drain waits on the shared gate, not on an actor; each actor is
    /// asked with a time limit ([`ASK`]), all at once, so one that is
    /// backing off or that the tree gave up on holds nothing up.
    pub async fn shutdown(self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.gate.close();
        let stops = self
            .listeners
            .iter()
            .map(|l| asked(l.send(listener::StopAccepting)));
        for r in futures::future::join_all(stops).await {
            if let Err(e) = r {
                self.unanswered("stop accepting", &e);
            }
        }
        info!(self.log, "stopped accepting");
        // The manager stays up while the server drains, so an
        // administrator can watch it (metrics, list users, tree); what
        // would change the server is refused (STATUS 0x0B).
        if let Some(env) = &self.manager_env {
            env.draining
                .store(true, std::sync::atomic::Ordering::Release);
        }
        info!(self.log, "shutting down"; "open_sessions" => self.gate.active(), "grace" => ?grace);
        let stopped = if tokio::time::timeout_at(deadline, self.gate.wait_empty())
            .await
            .is_ok()
        {
            0
        } else {
            let stops = self
                .listeners
                .iter()
                .map(|l| asked(l.send(listener::StopSessions)));
            let mut stopped = 0;
            for r in futures::future::join_all(stops).await {
                match r {
                    Ok(n) => stopped += n,
                    Err(e) => self.unanswered("stop sessions", &e),
                }
            }
            stopped
        };
        if stopped > 0 {
            warn!(self.log, "grace period over; sessions stopped"; "stopped" => stopped);
            // Let the stopped sessions end and write their records.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for w in &self.workers {
            w.stop();
        }
    }

    fn unanswered(&self, asked: &str, e: &AskError) {
        warn!(self.log, "shutdown: an actor did not answer"; "asked" => asked, "error" => %e);
    }
}

/// How long shutdown waits for an actor's answer (longer than any default
/// backoff, so a restarting actor is waited for).
const ASK: Duration = Duration::from_secs(3);

/// Why an actor did not answer during shutdown.
#[derive(Debug, thiserror::Error)]
enum AskError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Mailbox(#[from] MailboxError),
}

async fn asked<T>(
    f: impl std::future::Future<Output = Result<T, MailboxError>>,
) -> Result<T, AskError> {
    match tokio::time::timeout(ASK, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(AskError::Timeout(ASK)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many groups on port 0 at once, as parallel tests start servers: each
    /// group gets one port of its own, shared by all its sockets.
    #[test]
    fn port_0_groups_bound_at_once_never_collide() {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..200 {
                        let group = bind_group("127.0.0.1:0".parse().unwrap(), 2)
                            .expect("a port-0 group binds");
                        let port = group[0].local_addr().unwrap().port();
                        assert_ne!(port, 0);
                        assert!(group.iter().all(|l| l.local_addr().unwrap().port() == port));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
