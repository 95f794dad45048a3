//! `ManagerSession`: one SCTP association of the manager protocol. Reads the
//! administrator's credentials and answers `VER STATUS` (closing on failure);
//! then reads exactly one request, asks the actor that owns the answer
//! (`UserRegistry`, `MetricsCollector`, `ConnectionSupervisor`), replies and
//! closes. Nothing runs before authentication succeeds; a peer silent for the
//! manager timeout is dropped. Passwords are never logged.
//!
//! Guessing and hogging: until it has authenticated, an association is
//! *pre-auth*. It must send its credentials within `--manager-auth-timeout`;
//! at most [`MAX_PRE_AUTH`] exist at once, and a new one closes the oldest
//! association of the source holding the most (so idle associations cannot
//! keep an administrator out, whatever their number; a flood from one
//! source only ever evicts its own). Failed logins are throttled per source
//! ([`crate::auth::throttle`]): a growing delay before the failure reply,
//! then a lockout; each failure is logged at WARN with the source and
//! counted. Passwords the manager adds are hashed (Argon2id) off the
//! actor's thread before the registry sees them.

use actix::prelude::*;
use slog::{debug, info, warn, Logger};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

use crate::actors::listener::{self, Listener};
use crate::actors::metrics::{self, Counters, MetricsCollector};
use crate::actors::registry::{self, RegistryError, UserRegistry};
use crate::actors::supervisor::{self, ConnectionSupervisor};
use crate::auth::password;
use crate::auth::throttle::{Admission, Source, Throttle, ThrottlePolicy};
use crate::auth::Credential;
use crate::protocol::manager::tree::{
    clip_reason, NodeKind, NodeState, RestartType, StrategyCode, TreeNode, TreeReply,
};
use crate::protocol::manager::FaultAction;
use crate::protocol::manager::{self, AuthReply, AuthRequest, Reply, Request, Status};
use crate::protocol::{Secret, UserName};
use crate::supervision::{
    self as sv, FaultError, FaultKind, PreparedFault, SessionCounts, Supervision,
};
use crate::transport::Association;

/// Unauthenticated associations kept at once; a new one closes the oldest.
/// Below the listener's total (64), so authenticated requests always have
/// room.
pub const MAX_PRE_AUTH: usize = 48;

/// The associations waiting to authenticate, oldest first, with their source.
#[derive(Default)]
struct PreAuth {
    next: u64,
    waiting: VecDeque<(u64, Source, oneshot::Sender<()>)>,
}

impl PreAuth {
    /// The oldest association of the source holding the most: a flood
    /// from one source evicts its own, never a lone administrator's.
    fn victim(&self) -> Option<usize> {
        let mut counts: HashMap<Source, usize> = HashMap::new();
        for (_, s, _) in &self.waiting {
            *counts.entry(*s).or_default() += 1;
        }
        let (&worst, _) = counts.iter().max_by_key(|(_, n)| **n)?;
        self.waiting.iter().position(|(_, s, _)| *s == worst)
    }
}

/// What every manager session needs.
pub struct ManagerEnv {
    pub admin: (UserName, Secret),
    pub registry: Addr<UserRegistry>,
    pub metrics: Addr<MetricsCollector>,
    pub supervisor: Addr<ConnectionSupervisor>,
    pub timeout: Duration,
    /// An association must have authenticated within this.
    pub auth_timeout: Duration,
    pub counters: Arc<Counters>,
    pub log: Logger,
    throttle: Mutex<Throttle>,
    /// The storm's WARN, at most once a second.
    storm_log: Mutex<crate::ratelog::RateLimitedLog>,
    pre_auth: Mutex<PreAuth>,
    /// Sessions past authentication now (the listener bounds them).
    pub authenticated: AtomicUsize,
    /// The supervision tree (TREE, FAULT), and the listeners that own the
    /// sessions FAULT may name (`session/ID`).
    supervision: Option<Arc<Supervision>>,
    listeners: Vec<Addr<Listener>>,
    /// Set when the server drains: reading commands are answered, changes
    /// refused with STATUS 0x0B.
    pub draining: std::sync::atomic::AtomicBool,
}

impl ManagerEnv {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        admin: (UserName, Secret),
        registry: Addr<UserRegistry>,
        metrics: Addr<MetricsCollector>,
        supervisor: Addr<ConnectionSupervisor>,
        timeout: Duration,
        auth_timeout: Duration,
        counters: Arc<Counters>,
        log: Logger,
    ) -> ManagerEnv {
        ManagerEnv {
            admin,
            registry,
            metrics,
            supervisor,
            timeout,
            auth_timeout,
            counters,
            log,
            throttle: Mutex::new(Throttle::new(ThrottlePolicy::default())),
            storm_log: Mutex::new(Default::default()),
            pre_auth: Mutex::new(PreAuth::default()),
            authenticated: AtomicUsize::new(0),
            supervision: None,
            listeners: Vec::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// TREE and FAULT answer from `sup`; `session/ID` faults go to `listeners`.
    pub fn with_supervision(self, sup: Arc<Supervision>, listeners: Vec<Addr<Listener>>) -> Self {
        ManagerEnv {
            supervision: Some(sup),
            listeners,
            ..self
        }
    }

    /// Replaces the login throttle's rules (tests use short ones).
    pub fn with_throttle(self, policy: ThrottlePolicy) -> ManagerEnv {
        ManagerEnv {
            throttle: Mutex::new(Throttle::new(policy)),
            ..self
        }
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a pre-auth association from `peer`. When [`MAX_PRE_AUTH`]
    /// are waiting already, the oldest of the source holding the most is
    /// closed to make room.
    fn enter_pre_auth(&self, peer: SocketAddr) -> (u64, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let mut p = self.pre_auth.lock().unwrap_or_else(|e| e.into_inner());
        while p.waiting.len() >= MAX_PRE_AUTH {
            let Some(i) = p.victim() else { break };
            if let Some((_, _, victim)) = p.waiting.remove(i) {
                let _ = victim.send(());
            }
        }
        p.next += 1;
        let id = p.next;
        p.waiting.push_back((id, Source::of(peer.ip()), tx));
        (id, rx)
    }

    fn leave_pre_auth(&self, id: u64) {
        let mut p = self.pre_auth.lock().unwrap_or_else(|e| e.into_inner());
        p.waiting.retain(|(i, _, _)| *i != id);
    }
}

/// Leaves the pre-auth set on every path out of authentication.
struct PreAuthTicket<'a> {
    env: &'a ManagerEnv,
    id: u64,
}

impl Drop for PreAuthTicket<'_> {
    fn drop(&mut self) {
        self.env.leave_pre_auth(self.id);
    }
}

pub struct ManagerSession {
    assoc: Option<Association>,
    peer: SocketAddr,
    env: Arc<ManagerEnv>,
    counts: Option<Arc<SessionCounts>>,
}

impl ManagerSession {
    pub fn new(assoc: Association, peer: SocketAddr, env: Arc<ManagerEnv>) -> Self {
        ManagerSession {
            assoc: Some(assoc),
            peer,
            env,
            counts: None,
        }
    }
}

/// In `Drop`, so a session that panicked (a temporary child of the tree,
/// see `actors::child`) gives its place back too.
impl Drop for ManagerSession {
    fn drop(&mut self) {
        if let Some(c) = &self.counts {
            c.closed();
        }
    }
}

impl ManagerSession {
    /// Counts the session in `counts` (the `manager` node's) while it lives.
    pub fn counted(mut self, counts: Arc<SessionCounts>) -> Self {
        counts.opened();
        self.counts = Some(counts);
        self
    }

    /// What `child::start_temporary` calls if the session panics.
    pub fn crash_reporter(&self) -> impl FnOnce(String) + 'static {
        let env = self.env.clone();
        let peer = self.peer;
        let worker = self.counts.clone();
        move |msg| {
            env.counters.manager_session_crashed();
            if let Some(w) = worker {
                w.crashed();
            }
            warn!(env.log, "manager session crashed"; "peer" => %peer, "error" => msg);
        }
    }
}

impl Actor for ManagerSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(assoc) = self.assoc.take() else {
            ctx.stop();
            return;
        };
        let env = self.env.clone();
        let peer = self.peer;
        ctx.spawn(
            async move {
                let outcome = serve(assoc, peer, &env).await;
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

/// How the credentials of an association were judged.
enum Login {
    Accepted,
    /// Wrong or malformed: the failure reply waits out the penalty.
    Failed(Status, Duration),
    /// The source is locked out: refused unchecked.
    LockedOut,
}

/// Judges the administrator's credentials from `peer`, with the throttle.
fn judge(msg: &[u8], peer: SocketAddr, env: &ManagerEnv) -> Login {
    let now = tokio::time::Instant::now();
    match env.throttle().admit(peer.ip(), now) {
        Admission::Open => {}
        Admission::LockedOut(left) => {
            env.counters.admin_locked_out();
            debug!(env.log, "manager login refused: source locked out";
                   "peer" => %peer, "remaining" => ?left);
            return Login::LockedOut;
        }
        Admission::Storm(left) => {
            env.counters.admin_locked_out();
            if env
                .storm_log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(now)
                .is_some()
            {
                warn!(env.log, "manager logins from new sources refused: too many failed \
                                logins from all sources (a guessing storm); sources that \
                                logged in before are still served";
                      "peer" => %peer, "remaining" => ?left);
            }
            return Login::LockedOut;
        }
    }
    let (status, name) = match AuthRequest::from_message(msg) {
        Err(e) => (e.status(), None),
        Ok(auth) => {
            let (name, pass) = &env.admin;
            // Both compared in full, whatever the outcome of the first.
            let name_ok = crate::protocol::ct_eq(auth.username.as_bytes(), name.as_bytes());
            let pass_ok = pass.ct_eq(auth.password.expose());
            if name_ok && pass_ok {
                env.throttle().succeeded(peer.ip());
                return Login::Accepted;
            }
            (Status::AuthFailed, Some(auth.username))
        }
    };
    env.counters.admin_auth_failed();
    let p = env.throttle().failed(peer.ip(), now);
    warn!(env.log, "manager login failed";
          "peer" => %peer,
          "user" => name.as_ref().map_or("-", UserName::as_str),
          "why" => if status == Status::AuthFailed { "wrong credentials" } else { "malformed" },
          "failures" => p.failures, "delay" => ?p.delay);
    if p.locked {
        let lockout = env.throttle().policy().lockout;
        warn!(env.log, "manager source locked out after repeated failed logins";
              "peer" => %peer, "failures" => p.failures, "lockout" => ?lockout);
    }
    Login::Failed(status, p.delay)
}

/// Runs one association to its end; the Ok string is for the log.
async fn serve(
    mut assoc: Association,
    peer: SocketAddr,
    env: &ManagerEnv,
) -> Result<String, String> {
    let (id, mut evicted) = env.enter_pre_auth(peer);
    let ticket = PreAuthTicket { env, id };
    let msg = tokio::select! {
        // The login deadline never exceeds the manager timeout.
        r = recv(&mut assoc, env.auth_timeout.min(env.timeout)) => r.map_err(|e| match e.as_str() {
            "peer silent past the manager timeout" => "no login within the manager auth timeout".into(),
            _ => e,
        })?,
        _ = &mut evicted => {
            env.counters.admin_evicted();
            return Err("closed unauthenticated to make room for a newer association".into());
        }
    };
    let status = match judge(&msg, peer, env) {
        Login::Accepted => Status::Success,
        Login::LockedOut => Status::AuthFailed,
        Login::Failed(status, delay) => {
            // The penalty, still evictable: a flood cannot pile up here.
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = &mut evicted => {
                    env.counters.admin_evicted();
                    return Err("closed unauthenticated to make room for a newer association".into());
                }
            }
            status
        }
    };
    drop(ticket);
    let reply = AuthReply { status }.to_vec();
    if status != Status::Success {
        send_and_close(assoc, &reply, env.timeout).await?;
        return Ok(format!("authentication refused: {}", status));
    }
    env.authenticated.fetch_add(1, Ordering::AcqRel);
    struct Authenticated<'a>(&'a AtomicUsize);
    impl Drop for Authenticated<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::AcqRel);
        }
    }
    let _authenticated = Authenticated(&env.authenticated);
    send(&mut assoc, &reply, env.timeout).await?;

    let msg = recv(&mut assoc, env.timeout).await?;
    let mut deferred = None;
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
        Ok(req) => execute(req, env, peer, &mut deferred).await,
    };
    env.counters
        .manager_request(reply.cmd().into(), reply.status().into());
    let sent = send_and_close(assoc, &reply.to_vec(), env.timeout).await;
    if let Some(f) = deferred {
        if !f.apply() {
            warn!(env.log, "fault not delivered: the node did not take it");
        }
    }
    sent?;
    Ok(what)
}

/// Hashes a password the manager was given, off this thread, then sends
/// the registry the message `send` makes of it; the status to answer.
async fn with_hash<F>(
    password: Secret,
    env: &ManagerEnv,
    send: impl FnOnce(Credential) -> F,
) -> Status
where
    F: std::future::Future<Output = Result<Result<(), RegistryError>, MailboxError>>,
{
    let hashed = match tokio::task::spawn_blocking(move || password::hash(&password)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            warn!(env.log, "password hashing failed"; "error" => %e);
            return Status::GeneralFailure;
        }
        Err(e) => {
            warn!(env.log, "password hashing failed"; "error" => %e);
            return Status::GeneralFailure;
        }
    };
    registry_status(send(Credential::Hashed(hashed)).await)
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

/// The most bytes a TREE reply may take (the SCTP-over-UDP transport
/// carries messages up to 64 KiB); past it, reasons are left out, then the
/// last listeners.
const MAX_TREE_REPLY: usize = 60_000;

/// The tree as TREE sends it.
fn tree_reply(sup: &Supervision) -> TreeReply {
    let wall_ms = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    let nodes: Vec<TreeNode> = sup
        .view()
        .into_iter()
        .map(|r| {
            let v = r.node;
            TreeNode {
                depth: v.depth,
                name: v.name,
                kind: match v.kind {
                    sv::Kind::Supervisor => NodeKind::Supervisor,
                    sv::Kind::Actor => NodeKind::Actor,
                    sv::Kind::Task => NodeKind::Task,
                },
                restart: match v.restart {
                    sv::Restart::Permanent => RestartType::Permanent,
                    sv::Restart::Transient => RestartType::Transient,
                    sv::Restart::Temporary => RestartType::Temporary,
                },
                strategy: match (v.kind, v.policy.strategy) {
                    (sv::Kind::Supervisor, sv::Strategy::OneForOne) => StrategyCode::OneForOne,
                    (sv::Kind::Supervisor, sv::Strategy::OneForAll) => StrategyCode::OneForAll,
                    (sv::Kind::Supervisor, sv::Strategy::RestForOne) => StrategyCode::RestForOne,
                    _ => StrategyCode::None,
                },
                state: match v.state {
                    sv::State::Running => NodeState::Running,
                    sv::State::Restarting => NodeState::Restarting,
                    sv::State::BackingOff => NodeState::BackingOff,
                    sv::State::Stopped => NodeState::Stopped,
                },
                intensity: v.policy.intensity,
                period_ms: u64::try_from(v.policy.period.as_millis()).unwrap_or(u64::MAX),
                restarts: v.restarts,
                failures: v.failures,
                injected: v.injected,
                sessions: r.sessions,
                last_failure: v
                    .last_failure
                    .map(|f| (wall_ms(f.at), clip_reason(&f.reason))),
            }
        })
        .collect();
    fit_tree(nodes, MAX_TREE_REPLY)
}

/// `nodes` in a reply of at most `limit` bytes: whole if they fit; else
/// without the failure reasons; else without the last listeners (then the
/// last nodes), `TOTAL` still counting every node.
fn fit_tree(mut nodes: Vec<TreeNode>, limit: usize) -> TreeReply {
    let total = u16::try_from(nodes.len()).unwrap_or(u16::MAX);
    nodes.truncate(usize::from(total));
    let size = |n: &TreeNode| {
        let mut v = Vec::new();
        n.encode(&mut v);
        v.len()
    };
    // VER CMD STATUS TOTAL COUNT
    let header = 7;
    let mut used: usize = header + nodes.iter().map(size).sum::<usize>();
    if used > limit {
        for n in &mut nodes {
            if let Some((_, reason)) = &mut n.last_failure {
                reason.clear();
            }
        }
        used = header + nodes.iter().map(size).sum::<usize>();
    }
    while used > limit {
        let at = nodes
            .iter()
            .rposition(|n| n.name.starts_with("listener/"))
            .unwrap_or(nodes.len() - 1);
        used -= size(&nodes.remove(at));
    }
    TreeReply { total, nodes }
}

/// `pairs` in at most `limit` bytes: the last users' values are left out
/// (whole users), counted in a last `users_omitted` pair.
fn fit_stats(mut pairs: Vec<(String, u64)>, limit: usize) -> (Vec<(String, u64)>, u64) {
    use crate::protocol::manager::stats::encoded_len;
    let omitted_key = "users_omitted";
    let extra = 2 + omitted_key.len() + 8;
    let mut left_out = 0u64;
    while encoded_len(&pairs) + extra > limit {
        let Some(last) = pairs.iter().rposition(|(k, _)| k.starts_with("user/")) else {
            break;
        };
        // A user's three values go together.
        let user = last.saturating_sub(2);
        pairs.drain(user..=last);
        left_out += 1;
    }
    pairs.push((omitted_key.to_string(), left_out));
    (pairs, left_out)
}

/// Injects a fault (FAULT); the status to answer. A fault into a node is
/// left in `deferred`, to apply once the reply is sent.
async fn fault(
    node: &str,
    action: FaultAction,
    env: &ManagerEnv,
    peer: SocketAddr,
    deferred: &mut Option<PreparedFault>,
) -> Status {
    let Some(sup) = &env.supervision else {
        return Status::GeneralFailure;
    };
    let kind = match action {
        FaultAction::Panic => FaultKind::Panic,
        FaultAction::Stop => FaultKind::Stop,
        FaultAction::Other(_) => return Status::Malformed,
    };
    if !sup.fault_injection() {
        warn!(env.log, "fault injection refused: the server runs without --fault-injection";
              "node" => node, "by" => %peer);
        return Status::FaultInjectionOff;
    }
    if let Some(id) = node.strip_prefix("session/") {
        // Digits only, as the access log writes them (no sign, no
        // leading zero).
        let canonical = !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_digit())
            && (id == "0" || !id.starts_with('0'));
        let Some(id) = id.parse::<u64>().ok().filter(|_| canonical) else {
            return Status::NoSuchNode;
        };
        for l in &env.listeners {
            if let Ok(true) = l.send(listener::FaultSession { id, kind }).await {
                warn!(env.log, "fault injected"; "node" => node, "fault" => kind.as_str(),
                      "by" => %peer);
                return Status::Success;
            }
        }
        return Status::NoSuchNode;
    }
    match sup.prepare_fault(node, kind, peer) {
        Ok(f) => {
            *deferred = Some(f);
            Status::Success
        }
        Err(FaultError::Disabled) => Status::FaultInjectionOff,
        Err(FaultError::NoSuchNode | FaultError::NotAWorker(_)) => Status::NoSuchNode,
    }
}

/// Runs one authenticated request against the actors. What must happen
/// only after the reply is sent is left in `deferred`.
async fn execute(
    req: Request,
    env: &ManagerEnv,
    peer: SocketAddr,
    deferred: &mut Option<PreparedFault>,
) -> (Reply, String) {
    let cmd = req.cmd();
    let status_reply = |status: Status| Reply::Status { cmd, status };
    let changes = !matches!(
        req,
        Request::ListUsers | Request::Metrics | Request::Tree | Request::Stats
    );
    if changes && env.draining.load(Ordering::Acquire) {
        return (
            status_reply(Status::ShuttingDown),
            format!("{cmd}: refused, shutting down"),
        );
    }
    match req {
        Request::AddUser { username, password } => {
            let name = username.clone();
            let s = with_hash(password, env, |credential| {
                env.registry.send(registry::AddUser {
                    username: name,
                    credential,
                })
            })
            .await;
            (status_reply(s), format!("add user {username}: {}", s))
        }
        Request::RemoveUser { username } => {
            let s = registry_status(
                env.registry
                    .send(registry::RemoveUser {
                        username: username.clone(),
                    })
                    .await,
            );
            (status_reply(s), format!("remove user {username}: {}", s))
        }
        Request::ChangePassword { username, password } => {
            let name = username.clone();
            let s = with_hash(password, env, |credential| {
                env.registry.send(registry::ChangePassword {
                    username: name,
                    credential,
                })
            })
            .await;
            (
                status_reply(s),
                format!("change password of {username}: {}", s),
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
        Request::Stats => match env.metrics.send(metrics::GetReading).await {
            Ok(r) => {
                let (pairs, left_out) = fit_stats(r.pairs(), MAX_TREE_REPLY);
                let what = format!(
                    "statistics: {} values, {left_out} users left out",
                    pairs.len()
                );
                (Reply::Stats(pairs), what)
            }
            Err(_) => (
                status_reply(Status::GeneralFailure),
                "statistics: collector gone".into(),
            ),
        },
        Request::Tree => match &env.supervision {
            Some(sup) => {
                let tree = tree_reply(sup);
                let what = match tree.omitted() {
                    0 => format!("tree: {} nodes", tree.nodes.len()),
                    n => format!(
                        "tree: {} nodes, {n} left out to fit one message",
                        tree.nodes.len()
                    ),
                };
                (Reply::Tree(tree), what)
            }
            None => (
                status_reply(Status::GeneralFailure),
                "tree: no supervision tree".into(),
            ),
        },
        Request::Fault { node, action } => {
            let s = fault(&node, action, env, peer, deferred).await;
            (
                status_reply(s),
                format!("inject fault {} into {node}: {s}", action.as_str()),
            )
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_node(name: &str, reason: usize) -> TreeNode {
        TreeNode {
            depth: 2,
            name: name.into(),
            kind: NodeKind::Actor,
            restart: RestartType::Permanent,
            strategy: StrategyCode::None,
            state: NodeState::Running,
            intensity: 5,
            period_ms: 10_000,
            restarts: 0,
            failures: 0,
            injected: 0,
            sessions: Some((0, 0)),
            last_failure: (reason > 0).then(|| (0, "x".repeat(reason))),
        }
    }

    /// STATS with a thousand long user names still fits one message,
    /// leaving whole users out and saying how many.
    #[test]
    fn many_users_fit_one_stats_message() {
        let mut pairs = vec![("connections_total".to_string(), 1)];
        for i in 0..1024 {
            let name = format!("{i:0>255}");
            for k in ["sessions_total", "bytes_up_total", "bytes_down_total"] {
                pairs.push((format!("user/{name}/{k}"), 1));
            }
        }
        let (fit, left_out) = fit_stats(pairs, MAX_TREE_REPLY);
        assert!(crate::protocol::manager::stats::encoded_len(&fit) <= MAX_TREE_REPLY);
        assert!(left_out > 0);
        assert_eq!(
            fit.last().unwrap(),
            &("users_omitted".to_string(), left_out)
        );
        assert_eq!((fit.len() - 2) % 3, 0, "whole users only");
        assert_eq!((fit.len() - 2) / 3 + left_out as usize, 1024);
        let (small, none) = fit_stats(vec![("a".into(), 1)], MAX_TREE_REPLY);
        assert_eq!((small.len(), none), (2, 0));
    }

    /// A tree too big for one message keeps its reasons out first, then
    /// its last listeners, and always fits (1024 workers: issue 12).
    #[test]
    fn a_big_tree_fits_one_message() {
        let mut nodes = vec![tree_node("root", 0)];
        nodes.extend((0..1024).map(|i| tree_node(&format!("listener/{i}"), 500)));
        nodes.push(tree_node("manager", 0));
        let t = fit_tree(nodes.clone(), MAX_TREE_REPLY);
        let len = Reply::Tree(t.clone()).to_vec().len();
        assert!(len <= MAX_TREE_REPLY, "{len}");
        assert_eq!(usize::from(t.total), 1026);
        assert!(t.omitted() > 0);
        assert_eq!(
            t.nodes.last().unwrap().name,
            "manager",
            "listeners go first"
        );
        assert!(t.nodes.iter().all(|n| n
            .last_failure
            .as_ref()
            .unwrap_or(&(0, String::new()))
            .1
            .is_empty()));
        // A small tree is whole, reasons included.
        let small = fit_tree(nodes[..3].to_vec(), MAX_TREE_REPLY);
        assert_eq!((small.total, small.omitted()), (3, 0));
        assert_eq!(small.nodes[1].last_failure.as_ref().unwrap().1.len(), 500);
        // Reasons dropped alone when that is enough.
        let mid = fit_tree(nodes[..200].to_vec(), MAX_TREE_REPLY);
        assert_eq!(mid.omitted(), 0);
        assert!(mid.nodes[1].last_failure.as_ref().unwrap().1.is_empty());
    }

    /// With the pre-auth set full, the one evicted is the oldest of the
    /// source holding the most, never a lone administrator's association.
    #[test]
    fn the_flooder_evicts_its_own() {
        let mut p = PreAuth::default();
        let src = |s: &str| Source::of(s.parse().unwrap());
        let mut keep = Vec::new();
        let mut push = |p: &mut PreAuth, s: &str| {
            let (tx, rx) = oneshot::channel();
            p.next += 1;
            p.waiting.push_back((p.next, src(s), tx));
            keep.push(rx);
        };
        push(&mut p, "127.0.0.1"); // the administrator, oldest of all
        for _ in 0..5 {
            push(&mut p, "127.0.0.2");
        }
        push(&mut p, "127.0.0.3");
        let i = p.victim().unwrap();
        assert_eq!(p.waiting[i].0, 2, "the flooder's oldest");
        assert_eq!(p.waiting[i].1, src("127.0.0.2"));
        assert_eq!(PreAuth::default().victim(), None);
    }
}
