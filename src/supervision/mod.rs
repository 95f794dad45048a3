//! Supervision: the tree of long-lived actors and tasks, restarted on a
//! panic by OTP's rules (`one_for_one`, `one_for_all`, `rest_for_one`;
//! restart intensity and period; exponential backoff; escalation to the
//! parent, and past the root's intensity a drain and exit status 70).
//!
//! - [`tree`]: the decisions, sans-IO (unit-tested with plain instants).
//! - [`policy`]: each node's default policy and `--supervise`.
//! - [`Supervision`]: the shared handle the drivers report to; it applies
//!   the tree's orders (through each worker's control channel), answers
//!   TREE, injects faults (`--fault-injection`) and tells `main` when the
//!   root gives up.
//! - [`task`]: the driver for a supervised tokio task (the SCTP-over-UDP
//!   driver); `actors::child` is the driver for actix actors.
//! - [`install_panic_hook`]: panics go through slog (JSON stays JSON), with
//!   the node that panicked ([`Tag`], a thread-local set around each poll).
//!
//! The tree (docs/supervision.md draws it):
//!
//! ```text
//! root (one_for_one)
//! ├── registry        UserRegistry
//! ├── metrics         MetricsCollector
//! ├── connections (one_for_one)
//! │   ├── supervisor  ConnectionSupervisor
//! │   └── listener/N  Listener, one per worker; its sessions are temporary
//! └── management (one_for_one)
//!     ├── manager     ManagerListener; its sessions are temporary
//!     └── udp-driver  the SCTP-over-UDP transport's task (when it is used)
//! ```

pub mod policy;
pub mod task;
pub mod tree;

use slog::{error, warn, Logger};
use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

pub use policy::Override;
pub use tree::{Exit, Kind, NodeId, NodeView, Restart, State, Strategy, Tree};

use tree::{Order, Spec};

/// What a worker's driver is told by its supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Stop now (cancel what runs), start again after `after`.
    Restart { after: Duration },
}

/// A fault an administrator injects (manager FAULT, `--fault-injection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Panic inside the node's own code (a handler, or the task's loop).
    Panic,
    /// Stop the node as if it had stopped itself.
    Stop,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Panic => "panic",
            FaultKind::Stop => "stop",
        }
    }
}

/// The payload of an injected panic, told apart from a real one.
#[derive(Debug, Clone, Copy)]
pub struct InjectedFault;

/// Panics with an [`InjectedFault`] payload (the handlers of `Fault`).
pub fn injected_panic() -> ! {
    std::panic::panic_any(InjectedFault)
}

/// The message of a panic payload (`&str`, `String`, an injected fault).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if payload.is::<InjectedFault>() {
        "fault injected by an administrator".to_string()
    } else {
        "panic with a non-text payload".to_string()
    }
}

/// Why a FAULT request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    #[error("fault injection is off (start the server with --fault-injection)")]
    Disabled,
    #[error("no such node")]
    NoSuchNode,
    #[error("{0} is a supervisor: name one of its workers")]
    NotAWorker(String),
}

/// Live and crashed sessions of one worker (a listener or the manager).
#[derive(Debug, Default)]
pub struct SessionCounts {
    live: AtomicU64,
    crashed: AtomicU64,
}

impl SessionCounts {
    pub fn opened(&self) {
        self.live.fetch_add(1, Ordering::Relaxed);
    }
    pub fn closed(&self) {
        let _ = self
            .live
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
    pub fn crashed(&self) {
        self.crashed.fetch_add(1, Ordering::Relaxed);
    }
    pub fn live(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }
    pub fn crashes(&self) -> u64 {
        self.crashed.load(Ordering::Relaxed)
    }
}

/// One node for TREE: the tree's view plus, for workers with sessions,
/// their counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    pub node: NodeView,
    /// (live, crashed) sessions, for listeners and the manager.
    pub sessions: Option<(u64, u64)>,
}

type FaultFn = Arc<dyn Fn(FaultKind) -> bool + Send + Sync>;

struct Inner {
    tree: Tree,
    controls: HashMap<NodeId, mpsc::UnboundedSender<Control>>,
    faults: HashMap<NodeId, FaultFn>,
    sessions: HashMap<NodeId, Arc<SessionCounts>>,
    /// Faults injected into each node and not reported yet (several may
    /// wait in a mailbox while the node backs off).
    injected: HashMap<NodeId, u32>,
}

/// The shared handle to the tree; see the module header.
pub struct Supervision {
    inner: Mutex<Inner>,
    overrides: Vec<Override>,
    fault_injection: bool,
    gave_up: watch::Sender<Option<String>>,
    restarts: AtomicU64,
    log: Logger,
}

impl Supervision {
    /// A tree holding only its root. `overrides` (from `--supervise`)
    /// apply to every node added later.
    pub fn new(overrides: Vec<Override>, fault_injection: bool, log: Logger) -> Arc<Self> {
        let root = Spec {
            name: "root".into(),
            kind: Kind::Supervisor,
            restart: Restart::Permanent,
            policy: Self::policy_for(&overrides, "root"),
        };
        Arc::new(Supervision {
            inner: Mutex::new(Inner {
                tree: Tree::new(root),
                controls: HashMap::new(),
                faults: HashMap::new(),
                sessions: HashMap::new(),
                injected: HashMap::new(),
            }),
            overrides,
            fault_injection,
            gave_up: watch::channel(None).0,
            restarts: AtomicU64::new(0),
            log,
        })
    }

    /// A tree for unit tests: fault injection on, logs discarded, and the
    /// `--supervise` values given.
    #[cfg(test)]
    pub(crate) fn for_tests(overrides: &[&str]) -> Arc<Self> {
        let overrides = overrides
            .iter()
            .map(|o| policy::parse_override(o).expect("a valid --supervise"))
            .collect();
        Self::new(overrides, true, Logger::root(slog::Discard, slog::o!()))
    }

    fn policy_for(overrides: &[Override], name: &str) -> tree::Policy {
        overrides
            .iter()
            .filter(|o| o.matches(name))
            .fold(policy::default_for(name), |p, o| o.apply(p))
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update is complete under the lock; a panic elsewhere while
        // holding it leaves nothing half-done that matters.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn log(&self) -> &Logger {
        &self.log
    }

    pub fn fault_injection(&self) -> bool {
        self.fault_injection
    }

    /// Adds a permanent node under `parent`, with its default policy and
    /// the `--supervise` settings that name it.
    pub fn add(&self, parent: NodeId, name: &str, kind: Kind) -> NodeId {
        let spec = Spec {
            name: name.to_string(),
            kind,
            restart: Restart::Permanent,
            policy: Self::policy_for(&self.overrides, name),
        };
        self.inner().tree.add(parent, spec)
    }

    /// [`Supervision::add`] named `base` for the first, then `base/1`,
    /// `base/2`... (one SCTP-over-UDP driver per manager address).
    pub fn add_numbered(&self, parent: NodeId, base: &str, kind: Kind) -> NodeId {
        let taken = {
            let inner = self.inner();
            inner
                .tree
                .ids()
                .into_iter()
                .filter(|&id| {
                    let n = inner.tree.name(id);
                    n == base || n.strip_prefix(base).is_some_and(|r| r.starts_with('/'))
                })
                .count()
        };
        match taken {
            0 => self.add(parent, base, kind),
            n => self.add(parent, &format!("{base}/{n}"), kind),
        }
    }

    /// A `--supervise` flag that names no node of this tree (e.g.
    /// `listener/9` with 2 workers), if any.
    pub fn unmatched_override(&self) -> Option<String> {
        let inner = self.inner();
        let names: Vec<&str> = inner
            .tree
            .ids()
            .into_iter()
            .map(|id| inner.tree.name(id))
            .collect();
        self.overrides
            .iter()
            .find(|o| !names.iter().any(|n| o.matches(n)) && o.node != "udp-driver")
            .map(|o| o.node.clone())
    }

    /// The name of `id`, leaked once for the panic hook's thread-local.
    pub fn tag(&self, id: NodeId) -> Tag {
        let name = self.inner().tree.name(id).to_string();
        Tag::Node(Box::leak(name.into_boxed_str()))
    }

    /// The channel on which the worker `id` receives its orders.
    pub fn attach(&self, id: NodeId) -> mpsc::UnboundedReceiver<Control> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner().controls.insert(id, tx);
        rx
    }

    /// How a fault is injected into `id` (its `Fault` message, or the
    /// task's channel); false when it could not be delivered.
    pub fn set_fault(&self, id: NodeId, f: impl Fn(FaultKind) -> bool + Send + Sync + 'static) {
        self.inner().faults.insert(id, Arc::new(f));
    }

    /// The session counts of worker `id` (created on first use).
    pub fn sessions(&self, id: NodeId) -> Arc<SessionCounts> {
        self.inner().sessions.entry(id).or_default().clone()
    }

    /// The worker `id` ended (panicked, or stopped itself). `injected`:
    /// whether the exit is known to come from an injected fault (a panic's
    /// payload tells); `None` (a stop) counts it injected while faults
    /// injected into the node are still unreported. Applies the tree's
    /// orders; logs what happens.
    pub fn report(&self, id: NodeId, exit: Exit, injected: Option<bool>) {
        let mut inner = self.inner();
        let pending = inner.injected.get(&id).copied().unwrap_or(0);
        let injected = match injected {
            Some(known) => known,
            None => pending > 0,
        };
        if injected && pending > 0 {
            inner.injected.insert(id, pending - 1);
        }
        let exit = match exit {
            Exit::Stopped(_) if injected => {
                Exit::Stopped("by an administrator (fault injection)".into())
            }
            other => other,
        };
        let name = inner.tree.name(id).to_string();
        let orders = inner.tree.exited(
            Instant::now(),
            SystemTime::now(),
            id,
            exit.clone(),
            injected,
        );
        let reason = match &exit {
            Exit::Panicked(m) => format!("panicked: {m}"),
            Exit::Stopped(m) => format!("stopped: {m}"),
        };
        let mut restarted = Vec::new();
        let mut after = Duration::ZERO;
        for order in orders {
            match order {
                Order::Restart { node, after: a } => {
                    after = a;
                    restarted.push(inner.tree.name(node).to_string());
                    if let Some(tx) = inner.controls.get(&node) {
                        let _ = tx.send(Control::Restart { after: a });
                    }
                }
                Order::GiveUp { reason } => {
                    error!(self.log, "supervision tree gave up: draining, then exiting \
                                      with status 70";
                           "node" => &name, "reason" => &reason);
                    self.gave_up.send_replace(Some(reason));
                }
            }
        }
        self.restarts
            .fetch_add(restarted.len() as u64, Ordering::Relaxed);
        if !restarted.is_empty() {
            warn!(self.log, "supervised node ended; restarting";
                  "node" => &name, "reason" => &reason, "injected" => injected,
                  "restarting" => restarted.join(" "), "backoff" => ?after);
        }
    }

    /// The worker's backoff is over: it starts again.
    pub fn restarting(&self, id: NodeId) {
        self.inner().tree.restarting(id);
    }

    /// The worker runs (after its start, or a restart).
    pub fn running(&self, id: NodeId) {
        self.inner().tree.running(id);
    }

    /// The worker ended for good (nobody can reach it any more).
    pub fn stopped(&self, id: NodeId) {
        self.inner().tree.stopped(id);
    }

    /// Whether the root has given up (the process must drain and exit 70).
    pub fn has_given_up(&self) -> bool {
        self.inner().tree.gave_up()
    }

    /// Restarts done so far, all nodes together.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Resolves with the reason once the root has given up.
    pub async fn gave_up(&self) -> String {
        let mut rx = self.gave_up.subscribe();
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Every node, in pre-order, for TREE.
    pub fn view(&self) -> Vec<NodeReport> {
        let inner = self.inner();
        let ids = inner.tree.ids();
        inner
            .tree
            .view()
            .into_iter()
            .zip(ids)
            .map(|(node, id)| NodeReport {
                node,
                sessions: inner.sessions.get(&id).map(|c| (c.live(), c.crashes())),
            })
            .collect()
    }

    /// Injects `kind` into the worker called `name` (not `session/ID`,
    /// which the listeners handle). Logged at WARN with `by`.
    pub fn inject(&self, name: &str, kind: FaultKind, by: SocketAddr) -> Result<(), FaultError> {
        let fault = self.prepare_fault(name, kind, by)?;
        if fault.apply() {
            Ok(())
        } else {
            Err(FaultError::NoSuchNode)
        }
    }

    /// Checks that a fault may be injected into `name` and returns it, to
    /// apply once the administrator has been answered (the fault may take
    /// down the very association that asked: `udp-driver`).
    pub fn prepare_fault(
        &self,
        name: &str,
        kind: FaultKind,
        by: SocketAddr,
    ) -> Result<PreparedFault, FaultError> {
        if !self.fault_injection {
            return Err(FaultError::Disabled);
        }
        let mut inner = self.inner();
        let id = inner.tree.find(name).ok_or(FaultError::NoSuchNode)?;
        if inner.tree.kind(id) == Kind::Supervisor {
            return Err(FaultError::NotAWorker(name.to_string()));
        }
        let deliver = inner
            .faults
            .get(&id)
            .cloned()
            .ok_or(FaultError::NoSuchNode)?;
        *inner.injected.entry(id).or_default() += 1;
        warn!(self.log, "fault injected"; "node" => name, "fault" => kind.as_str(),
              "by" => %by);
        Ok(PreparedFault { deliver, kind })
    }
}

/// A fault checked and about to be delivered ([`Supervision::prepare_fault`]).
pub struct PreparedFault {
    deliver: FaultFn,
    kind: FaultKind,
}

impl PreparedFault {
    /// Delivers it; false when the node could not be reached.
    pub fn apply(self) -> bool {
        (self.deliver)(self.kind)
    }
}

/// Which node the current thread is running, for the panic hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    None,
    Node(&'static str),
    Session(u64),
    ManagerSession,
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tag::None => f.write_str("-"),
            Tag::Node(n) => f.write_str(n),
            Tag::Session(id) => write!(f, "session/{id}"),
            Tag::ManagerSession => f.write_str("manager session"),
        }
    }
}

thread_local! {
    static CURRENT: Cell<Tag> = const { Cell::new(Tag::None) };
}

/// Runs `f` with `tag` as the current node (restored afterwards, also when
/// `f` panics).
pub fn with_tag<R>(tag: Tag, f: impl FnOnce() -> R) -> R {
    struct Restore(Tag);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(tag)));
    f()
}

/// A future polled with `tag` as the current node.
pub struct Tagged<F> {
    pub tag: Tag,
    pub inner: F,
}

impl<F: std::future::Future + Unpin> std::future::Future for Tagged<F> {
    type Output = F::Output;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let tag = self.tag;
        with_tag(tag, || std::pin::Pin::new(&mut self.inner).poll(cx))
    }
}

/// The node the current thread runs.
pub fn current_tag() -> Tag {
    CURRENT.with(|c| c.get())
}

/// Sends every panic through `log` (message, node, location) instead of
/// raw text on stderr. Installed once per process; later calls do nothing.
pub fn install_panic_hook(log: Logger) {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        std::panic::set_hook(Box::new(move |info| {
            let message = panic_message(info.payload());
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_else(|| "-".into());
            error!(log, "panic"; "node" => %current_tag(), "message" => message,
                   "location" => location);
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> Logger {
        Logger::root(slog::Discard, slog::o!())
    }

    #[test]
    fn tags_nest_and_survive_a_panic() {
        assert_eq!(current_tag(), Tag::None);
        with_tag(Tag::Node("a"), || {
            assert_eq!(current_tag(), Tag::Node("a"));
            let r = std::panic::catch_unwind(|| {
                with_tag(Tag::Session(7), || {
                    assert_eq!(current_tag().to_string(), "session/7");
                    panic!("x")
                })
            });
            assert!(r.is_err());
            assert_eq!(current_tag(), Tag::Node("a"));
        });
        assert_eq!(current_tag(), Tag::None);
    }

    #[tokio::test]
    async fn reports_become_orders_on_the_control_channels() {
        let overrides =
            vec![policy::parse_override("registry:intensity=1/10s,backoff=0ms..0ms").unwrap()];
        let s = Supervision::new(overrides, true, log());
        let reg = s.add(Tree::ROOT, "registry", Kind::Actor);
        let met = s.add(Tree::ROOT, "metrics", Kind::Actor);
        let mut reg_rx = s.attach(reg);
        let mut met_rx = s.attach(met);
        s.report(reg, Exit::Panicked("one".into()), None);
        assert_eq!(
            reg_rx.try_recv().unwrap(),
            Control::Restart {
                after: Duration::ZERO
            }
        );
        assert!(met_rx.try_recv().is_err(), "one_for_one: metrics untouched");
        // Past the registry's intensity (1): the root restarts everyone.
        s.report(reg, Exit::Panicked("two".into()), None);
        assert!(reg_rx.try_recv().is_ok() && met_rx.try_recv().is_ok());
        assert_eq!(s.restarts(), 3);
        let v = s.view();
        assert_eq!(v[1].node.failures, 2);
        assert_eq!(v[2].node.restarts, 1);
    }

    #[tokio::test]
    async fn faults_need_the_flag_and_a_worker() {
        let by: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let off = Supervision::new(Vec::new(), false, log());
        off.add(Tree::ROOT, "registry", Kind::Actor);
        assert_eq!(
            off.inject("registry", FaultKind::Panic, by),
            Err(FaultError::Disabled)
        );
        let on = Supervision::new(Vec::new(), true, log());
        let reg = on.add(Tree::ROOT, "registry", Kind::Actor);
        let group = on.add(Tree::ROOT, "connections", Kind::Supervisor);
        let _ = group;
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        on.set_fault(reg, move |_| {
            h.fetch_add(1, Ordering::Relaxed);
            true
        });
        assert_eq!(
            on.inject("nosuch", FaultKind::Panic, by),
            Err(FaultError::NoSuchNode)
        );
        assert!(matches!(
            on.inject("connections", FaultKind::Panic, by),
            Err(FaultError::NotAWorker(_))
        ));
        assert_eq!(on.inject("registry", FaultKind::Stop, by), Ok(()));
        assert_eq!(hits.load(Ordering::Relaxed), 1);
        on.report(reg, Exit::Stopped("fault".into()), None);
        let v = on.view();
        assert_eq!((v[1].node.injected, v[1].node.failures), (1, 0));
    }

    #[tokio::test]
    async fn gave_up_resolves_with_the_reason() {
        let s = Supervision::new(
            vec![
                policy::parse_override("root:intensity=0/10s").unwrap(),
                policy::parse_override("registry:intensity=0/10s").unwrap(),
            ],
            false,
            log(),
        );
        let reg = s.add(Tree::ROOT, "registry", Kind::Actor);
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.gave_up().await })
        };
        s.report(reg, Exit::Panicked("x".into()), None);
        let reason = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(reason.contains("root exceeded"), "{reason}");
    }
}
