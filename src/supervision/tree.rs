//! The supervision tree's decisions, sans-IO: which nodes restart, after
//! how long, and when the whole tree gives up. Every call takes `now`; the
//! drivers ([`super::Supervision`] for the shared handle,
//! `actors::child` for actors, [`super::task`] for tasks) do the I/O.
//!
//! Vocabulary (Erlang/OTP `supervisor`):
//! - a **supervisor** node has children and a [`Strategy`]: when a child
//!   must restart, `one_for_one` restarts that child, `one_for_all` every
//!   child, `rest_for_one` that child and those started after it;
//! - a **worker** (an actor or a task) is a leaf;
//! - every node has a restart **intensity**: at most `intensity` restarts
//!   within `period`. A node that fails once more **escalates**: its parent
//!   is restarted instead (the node with its siblings, as the parent's
//!   parent's strategy decides), and the restart histories below it start
//!   afresh. Past the root's intensity the tree gives up
//!   ([`Order::GiveUp`]): the process drains and exits with status 70;
//! - every restart waits a **backoff**: `initial` for the first restart in
//!   the period, doubling with each further one, at most `max`;
//! - restart types: **permanent** (restarted whatever the exit),
//!   **transient** (restarted after a crash, not after a normal stop),
//!   **temporary** (never restarted: SOCKS and manager sessions, which are
//!   not nodes of this tree but counted by their worker).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// A node's index in its [`Tree`].
pub type NodeId = usize;

/// Which children restart with one that must restart (OTP's strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    OneForOne,
    OneForAll,
    RestForOne,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::OneForOne => "one_for_one",
            Strategy::OneForAll => "one_for_all",
            Strategy::RestForOne => "rest_for_one",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "one_for_one" => Ok(Strategy::OneForOne),
            "one_for_all" => Ok(Strategy::OneForAll),
            "rest_for_one" => Ok(Strategy::RestForOne),
            _ => Err(format!(
                "unknown strategy {s:?}: one_for_one, one_for_all or rest_for_one"
            )),
        }
    }
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Has children, restarts them by its strategy.
    Supervisor,
    /// An actix actor (same address across restarts).
    Actor,
    /// A tokio task (rebuilt from its start function on restart).
    Task,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Supervisor => "supervisor",
            Kind::Actor => "actor",
            Kind::Task => "task",
        }
    }
}

/// When a child is restarted (OTP's restart types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    Permanent,
    Transient,
    Temporary,
}

impl Restart {
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Permanent => "permanent",
            Restart::Transient => "transient",
            Restart::Temporary => "temporary",
        }
    }
}

/// The delay before a restart: `initial`, doubled for each further restart
/// within the period, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay before the `n`th restart within the period (`n` from 1).
    pub fn delay(&self, n: usize) -> Duration {
        let doublings = n.saturating_sub(1).min(32) as u32;
        self.initial
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// How a node is supervised. `strategy` matters for supervisors only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub strategy: Strategy,
    /// At most this many restarts within `period`; one more escalates.
    pub intensity: u32,
    pub period: Duration,
    pub backoff: Backoff,
}

/// A node's state as TREE shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    /// Told to restart; its start function has not run yet.
    Restarting,
    /// Waiting out its backoff before restarting.
    BackingOff,
    /// Ended and not restarted (a transient child's normal stop, the node
    /// whose failure made the tree give up, and then the root).
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Restarting => "restarting",
            State::BackingOff => "backing off",
            State::Stopped => "stopped",
        }
    }
}

/// How a worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It panicked (in a handler, a hook or a future it ran); the message.
    Panicked(String),
    /// It stopped itself; a transient child is then not restarted.
    Stopped(String),
}

impl Exit {
    fn reason(&self) -> String {
        match self {
            Exit::Panicked(m) => format!("panicked: {m}"),
            Exit::Stopped(m) => format!("stopped: {m}"),
        }
    }
}

/// What the driver must do after a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Order {
    /// Restart this worker (an actor or a task) after `after`.
    Restart { node: NodeId, after: Duration },
    /// The root's intensity is exceeded: drain and exit (status 70).
    GiveUp { reason: String },
}

/// One node's description when it is added.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub kind: Kind,
    pub restart: Restart,
    pub policy: Policy,
}

/// The last failure of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub at: SystemTime,
    pub reason: String,
}

#[derive(Debug)]
struct Node {
    spec: Spec,
    parent: Option<NodeId>,
    children: Vec<NodeId>,
    state: State,
    /// Times this node was restarted (for its own failure, a sibling's
    /// under the parent's strategy, or an escalation above it).
    restarts: u64,
    /// Times it crashed or stopped by itself (not injected).
    failures: u64,
    /// Faults injected on purpose (`--fault-injection`), counted apart.
    injected: u64,
    /// Restarts it caused within the period, oldest first.
    recent: VecDeque<Instant>,
    last_failure: Option<Failure>,
}

/// One node as TREE shows it, in pre-order with its depth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub depth: u8,
    pub name: String,
    pub kind: Kind,
    pub restart: Restart,
    pub policy: Policy,
    pub state: State,
    pub restarts: u64,
    pub failures: u64,
    pub injected: u64,
    pub last_failure: Option<Failure>,
}

/// The tree. The root is node 0, a supervisor.
#[derive(Debug)]
pub struct Tree {
    nodes: Vec<Node>,
    gave_up: bool,
}

impl Tree {
    /// A tree of one supervisor, the root.
    pub fn new(root: Spec) -> Tree {
        Tree {
            nodes: vec![Node::new(root, None)],
            gave_up: false,
        }
    }

    pub const ROOT: NodeId = 0;

    /// Adds a child under `parent` (a supervisor), after its existing
    /// children (the start order `rest_for_one` follows).
    ///
    /// # Panics
    /// If `parent` is not a supervisor of this tree (a wiring bug).
    pub fn add(&mut self, parent: NodeId, spec: Spec) -> NodeId {
        assert_eq!(self.nodes[parent].spec.kind, Kind::Supervisor);
        let id = self.nodes.len();
        self.nodes.push(Node::new(spec, Some(parent)));
        self.nodes[parent].children.push(id);
        id
    }

    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.spec.name == name)
    }

    pub fn name(&self, id: NodeId) -> &str {
        &self.nodes[id].spec.name
    }

    pub fn kind(&self, id: NodeId) -> Kind {
        self.nodes[id].spec.kind
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every node's id, in pre-order.
    pub fn ids(&self) -> Vec<NodeId> {
        let mut out = Vec::with_capacity(self.nodes.len());
        self.preorder(Self::ROOT, 0, &mut |id, _| out.push(id));
        out
    }

    pub fn policy(&self, id: NodeId) -> Policy {
        self.nodes[id].spec.policy
    }

    /// Replaces a node's policy (start-time settings).
    pub fn set_policy(&mut self, id: NodeId, policy: Policy) {
        self.nodes[id].spec.policy = policy;
    }

    /// Whether the root has given up.
    pub fn gave_up(&self) -> bool {
        self.gave_up
    }

    /// The worker `id` ended. `injected`: the fault was injected on
    /// purpose (counted apart from real failures, restarted the same way).
    /// Returns what to restart, or that the tree gives up.
    pub fn exited(
        &mut self,
        now: Instant,
        wall: SystemTime,
        id: NodeId,
        exit: Exit,
        injected: bool,
    ) -> Vec<Order> {
        if self.gave_up {
            self.nodes[id].state = State::Stopped;
            return Vec::new();
        }
        let reason = exit.reason();
        {
            let n = &mut self.nodes[id];
            if injected {
                n.injected += 1;
            } else {
                n.failures += 1;
            }
            n.last_failure = Some(Failure {
                at: wall,
                reason: reason.clone(),
            });
            let normal_stop = matches!(exit, Exit::Stopped(_));
            match n.spec.restart {
                Restart::Temporary => {
                    n.state = State::Stopped;
                    return Vec::new();
                }
                Restart::Transient if normal_stop => {
                    n.state = State::Stopped;
                    return Vec::new();
                }
                _ => {}
            }
        }
        // Climb while the failing unit is past its intensity.
        let mut unit = id;
        loop {
            let n = &mut self.nodes[unit];
            let period = n.spec.policy.period;
            while n
                .recent
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= period)
            {
                n.recent.pop_front();
            }
            if n.recent.len() < n.spec.policy.intensity as usize {
                break;
            }
            let escalated = format!(
                "{} exceeded its restart intensity ({} in {:?}): {reason}",
                n.spec.name, n.spec.policy.intensity, n.spec.policy.period
            );
            match n.parent {
                Some(p) => {
                    self.nodes[p].last_failure = Some(Failure {
                        at: wall,
                        reason: escalated,
                    });
                    unit = p;
                }
                None => {
                    // The others run on while the process drains.
                    self.gave_up = true;
                    self.nodes[id].state = State::Stopped;
                    return vec![Order::GiveUp { reason: escalated }];
                }
            }
        }
        let n = &mut self.nodes[unit];
        n.recent.push_back(now);
        let after = n.spec.policy.backoff.delay(n.recent.len());
        // Which of the unit's siblings restart with it.
        let group: Vec<NodeId> = match self.nodes[unit].parent {
            None => vec![unit],
            Some(p) => {
                let siblings = &self.nodes[p].children;
                let at = siblings.iter().position(|&c| c == unit).unwrap_or(0);
                match self.nodes[p].spec.policy.strategy {
                    Strategy::OneForOne => vec![unit],
                    Strategy::OneForAll => siblings.clone(),
                    Strategy::RestForOne => siblings[at..].to_vec(),
                }
            }
        };
        let mut orders = Vec::new();
        for g in group {
            let mut below = Vec::new();
            self.preorder(g, 0, &mut |i, _| below.push(i));
            for i in below {
                let n = &mut self.nodes[i];
                n.restarts += 1;
                if i != unit {
                    // A restarted supervisor starts its children afresh,
                    // histories included (as a new OTP supervisor would).
                    n.recent.clear();
                }
                if n.spec.kind != Kind::Supervisor {
                    n.state = if after.is_zero() {
                        State::Restarting
                    } else {
                        State::BackingOff
                    };
                    orders.push(Order::Restart { node: i, after });
                }
            }
        }
        orders
    }

    /// The worker's backoff is over; it is being started again.
    pub fn restarting(&mut self, id: NodeId) {
        if self.nodes[id].state == State::BackingOff {
            self.nodes[id].state = State::Restarting;
        }
    }

    /// The worker started (again) and runs.
    pub fn running(&mut self, id: NodeId) {
        if !self.gave_up {
            self.nodes[id].state = State::Running;
        }
    }

    /// The worker ended for good (its address is gone: shutdown).
    pub fn stopped(&mut self, id: NodeId) {
        self.nodes[id].state = State::Stopped;
    }

    /// Every node in pre-order; a supervisor's state is the most
    /// troubled of its children's (backing off, restarting, running).
    pub fn view(&self) -> Vec<NodeView> {
        let mut out = Vec::with_capacity(self.nodes.len());
        self.preorder(Self::ROOT, 0, &mut |id, depth| {
            let n = &self.nodes[id];
            out.push(NodeView {
                depth,
                name: n.spec.name.clone(),
                kind: n.spec.kind,
                restart: n.spec.restart,
                policy: n.spec.policy,
                state: self.state_of(id),
                restarts: n.restarts,
                failures: n.failures,
                injected: n.injected,
                last_failure: n.last_failure.clone(),
            })
        });
        out
    }

    fn state_of(&self, id: NodeId) -> State {
        let n = &self.nodes[id];
        if n.spec.kind != Kind::Supervisor {
            return n.state;
        }
        if id == Self::ROOT && self.gave_up {
            return State::Stopped;
        }
        let states: Vec<State> = n.children.iter().map(|&c| self.state_of(c)).collect();
        if states.is_empty() {
            return if self.gave_up {
                State::Stopped
            } else {
                State::Running
            };
        }
        for s in [State::BackingOff, State::Restarting, State::Running] {
            if states.contains(&s) {
                return s;
            }
        }
        State::Stopped
    }

    fn preorder(&self, id: NodeId, depth: u8, f: &mut dyn FnMut(NodeId, u8)) {
        f(id, depth);
        for &c in &self.nodes[id].children {
            self.preorder(c, depth.saturating_add(1), f);
        }
    }
}

impl Node {
    fn new(spec: Spec, parent: Option<NodeId>) -> Node {
        Node {
            spec,
            parent,
            children: Vec::new(),
            state: State::Running,
            restarts: 0,
            failures: 0,
            injected: 0,
            recent: VecDeque::new(),
            last_failure: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy(intensity: u32, period_s: u64) -> Policy {
        Policy {
            strategy: Strategy::OneForOne,
            intensity,
            period: Duration::from_secs(period_s),
            backoff: Backoff {
                initial: 100 * MS,
                max: 1000 * MS,
            },
        }
    }

    fn spec(name: &str, kind: Kind, p: Policy) -> Spec {
        Spec {
            name: name.into(),
            kind,
            restart: Restart::Permanent,
            policy: p,
        }
    }

    /// root(1 in 60 s) -> a, b, group(strategy) -> x, y, z
    fn tree(strategy: Strategy) -> (Tree, [NodeId; 6]) {
        let mut t = Tree::new(spec("root", Kind::Supervisor, policy(1, 60)));
        let a = t.add(Tree::ROOT, spec("a", Kind::Actor, policy(3, 10)));
        let b = t.add(Tree::ROOT, spec("b", Kind::Task, policy(3, 10)));
        let mut gp = policy(2, 10);
        gp.strategy = strategy;
        let g = t.add(Tree::ROOT, spec("group", Kind::Supervisor, gp));
        let x = t.add(g, spec("x", Kind::Actor, policy(3, 10)));
        let y = t.add(g, spec("y", Kind::Actor, policy(3, 10)));
        let z = t.add(g, spec("z", Kind::Actor, policy(3, 10)));
        (t, [a, b, g, x, y, z])
    }

    fn panic(t: &mut Tree, now: Instant, id: NodeId) -> Vec<Order> {
        t.exited(
            now,
            SystemTime::UNIX_EPOCH,
            id,
            Exit::Panicked("boom".into()),
            false,
        )
    }

    fn restarted(orders: &[Order]) -> Vec<(NodeId, Duration)> {
        orders
            .iter()
            .filter_map(|o| match o {
                Order::Restart { node, after } => Some((*node, *after)),
                Order::GiveUp { .. } => None,
            })
            .collect()
    }

    #[test]
    fn one_for_one_restarts_the_child_with_growing_backoff() {
        let (mut t, [a, ..]) = tree(Strategy::OneForOne);
        let t0 = Instant::now();
        assert_eq!(restarted(&panic(&mut t, t0, a)), [(a, 100 * MS)]);
        assert_eq!(t.view()[1].state, State::BackingOff);
        t.restarting(a);
        assert_eq!(t.view()[1].state, State::Restarting);
        t.running(a);
        assert_eq!(t.view()[1].state, State::Running);
        assert_eq!(restarted(&panic(&mut t, t0 + MS, a)), [(a, 200 * MS)]);
        assert_eq!(restarted(&panic(&mut t, t0 + 2 * MS, a)), [(a, 400 * MS)]);
        let v = &t.view()[1];
        assert_eq!((v.restarts, v.failures, v.injected), (3, 3, 0));
        assert_eq!(
            v.last_failure.as_ref().unwrap().reason,
            "panicked: boom",
            "the reason is kept"
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_max_and_never_overflows() {
        let b = Backoff {
            initial: 100 * MS,
            max: 1000 * MS,
        };
        let delays: Vec<_> = (1..=6).map(|n| b.delay(n)).collect();
        assert_eq!(
            delays,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
        assert_eq!(b.delay(usize::MAX), 1000 * MS);
        let huge = Backoff {
            initial: Duration::from_secs(u64::MAX / 2),
            max: Duration::MAX,
        };
        assert_eq!(huge.delay(40), Duration::MAX, "overflow: the max");
    }

    #[test]
    fn the_period_forgets_old_restarts() {
        let (mut t, [a, ..]) = tree(Strategy::OneForOne);
        let t0 = Instant::now();
        for i in 0..3 {
            panic(&mut t, t0 + i * MS, a);
        }
        // 10 s after the first: it no longer counts, so no escalation, and
        // the backoff is back to the second step.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(restarted(&panic(&mut t, later, a)), [(a, 400 * MS)]);
        let much_later = later + Duration::from_secs(10);
        assert_eq!(restarted(&panic(&mut t, much_later, a)), [(a, 100 * MS)]);
    }

    #[test]
    fn one_for_all_and_rest_for_one_pick_their_siblings() {
        let (mut t, [_, _, _, x, y, z]) = tree(Strategy::OneForAll);
        let now = Instant::now();
        let r: Vec<_> = restarted(&panic(&mut t, now, y))
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(r, [x, y, z]);
        let (mut t, [_, _, _, x, y, z]) = tree(Strategy::RestForOne);
        let r: Vec<_> = restarted(&panic(&mut t, now, y))
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(r, [y, z], "y and those started after it");
        let r: Vec<_> = restarted(&panic(&mut t, now, x))
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(r, [x, y, z]);
        let view = t.view();
        assert_eq!(view.iter().find(|v| v.name == "z").unwrap().restarts, 2);
        assert_eq!(view.iter().find(|v| v.name == "x").unwrap().failures, 1);
        assert_eq!(view.iter().find(|v| v.name == "z").unwrap().failures, 0);
    }

    #[test]
    fn past_its_intensity_a_child_escalates_then_the_root_gives_up() {
        let (mut t, [a, b, g, x, y, z]) = tree(Strategy::OneForOne);
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(restarted(&panic(&mut t, now, x)).len(), 1);
        }
        // x's fourth: the group restarts (all of it, with the group's
        // backoff), under the root's one_for_one.
        let r = restarted(&panic(&mut t, now, x));
        assert_eq!(r, [(x, 100 * MS), (y, 100 * MS), (z, 100 * MS)]);
        let group = t.view().into_iter().find(|v| v.name == "group").unwrap();
        assert!(group.last_failure.unwrap().reason.contains("x exceeded"));
        // The histories under the group started afresh: x has 3 again.
        for _ in 0..3 {
            assert_eq!(restarted(&panic(&mut t, now, x)).len(), 1);
        }
        // Second escalation: the group's second restart (intensity 2).
        assert_eq!(restarted(&panic(&mut t, now, x)).len(), 3);
        for _ in 0..3 {
            panic(&mut t, now, x);
        }
        // Third: past the group's intensity, the root restarts (1 in 60 s):
        // every worker in the tree.
        let r: Vec<_> = restarted(&panic(&mut t, now, x))
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(r, [a, b, x, y, z]);
        let _ = g;
        // And so on until the root is past its own.
        let mut last = Vec::new();
        for _ in 0..20 {
            last = panic(&mut t, now, a);
            if matches!(last.first(), Some(Order::GiveUp { .. })) {
                break;
            }
        }
        match &last[..] {
            [Order::GiveUp { reason }] => assert!(reason.contains("root exceeded"), "{reason}"),
            other => panic!("expected GiveUp, got {other:?}"),
        }
        assert!(t.gave_up());
        assert!(panic(&mut t, now, b).is_empty(), "nothing after giving up");
        assert_eq!(t.view()[0].state, State::Stopped);
    }

    #[test]
    fn intensity_zero_escalates_at_once() {
        let (mut t, [a, ..]) = tree(Strategy::OneForOne);
        let mut p = policy(0, 10);
        p.backoff.initial = Duration::ZERO;
        t.set_policy(a, p);
        let r = panic(&mut t, Instant::now(), a);
        // The root (1 in 60 s) restarts everything.
        assert_eq!(restarted(&r).len(), 5);
    }

    #[test]
    fn transient_and_temporary_children_follow_their_type() {
        let mut t = Tree::new(spec("root", Kind::Supervisor, policy(1, 60)));
        let mut s = spec("tr", Kind::Actor, policy(3, 10));
        s.restart = Restart::Transient;
        let tr = t.add(Tree::ROOT, s);
        let mut s = spec("te", Kind::Actor, policy(3, 10));
        s.restart = Restart::Temporary;
        let te = t.add(Tree::ROOT, s);
        let now = Instant::now();
        let wall = SystemTime::UNIX_EPOCH;
        assert!(t
            .exited(now, wall, tr, Exit::Stopped("done".into()), false)
            .is_empty());
        assert_eq!(t.view()[1].state, State::Stopped);
        assert_eq!(
            t.exited(now, wall, tr, Exit::Panicked("x".into()), false)
                .len(),
            1,
            "a transient child's crash restarts it"
        );
        assert!(t
            .exited(now, wall, te, Exit::Panicked("x".into()), false)
            .is_empty());
        assert_eq!(t.view()[2].state, State::Stopped);
    }

    #[test]
    fn injected_faults_are_counted_apart() {
        let (mut t, [a, ..]) = tree(Strategy::OneForOne);
        let now = Instant::now();
        let r = t.exited(
            now,
            SystemTime::UNIX_EPOCH,
            a,
            Exit::Panicked("fault injected".into()),
            true,
        );
        assert_eq!(r.len(), 1);
        let v = &t.view()[1];
        assert_eq!((v.restarts, v.failures, v.injected), (1, 0, 1));
    }

    #[test]
    fn a_supervisor_shows_its_most_troubled_child() {
        let (mut t, [_, _, _, x, ..]) = tree(Strategy::OneForOne);
        panic(&mut t, Instant::now(), x);
        let v = t.view();
        assert_eq!(
            v.iter().find(|v| v.name == "group").unwrap().state,
            State::BackingOff
        );
        assert_eq!(v[0].state, State::BackingOff);
        assert_eq!(
            v.iter().find(|v| v.name == "y").unwrap().state,
            State::Running
        );
        t.restarting(x);
        t.running(x);
        assert!(t.view().iter().all(|v| v.state == State::Running));
        let depths: Vec<u8> = t.view().iter().map(|v| v.depth).collect();
        assert_eq!(depths, [0, 1, 1, 1, 2, 2, 2]);
    }
}
