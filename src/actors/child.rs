//! Running actix actors as children of the supervision tree
//! ([`crate::supervision`]).
//!
//! actix's own `Supervisor` restarts an actor only when it stops itself,
//! never on a panic (actix issues #158, #204): a panic in a handler unwinds
//! out of the actor's context future and the arbiter drops it, with its
//! mailbox. Here the context future is polled under `catch_unwind`:
//!
//! - a **permanent** child ([`start`]) keeps its mailbox, so its address
//!   stays valid. After a panic (in a handler, `started`, `stopping`, a
//!   future it spawned) or a stop, the tree is told and orders a restart:
//!   the context is restarted (`ContextFut::restart`: its spawned futures
//!   are cancelled, `Supervised::restarting` runs, then `started` again)
//!   after the backoff. Messages queued behind the failing one are served by
//!   the restarted actor; the sender of the failing one gets
//!   `MailboxError::Closed`. Each actor's `restarting` drops what it ran
//!   and keeps what clients depend on (its sockets, its sessions).
//! - a **temporary** child ([`start_temporary`]: a SOCKS or manager
//!   session) is never restarted: its panic is caught, `on_crash` hears the
//!   message, and the actor is dropped, so its `Drop` gives its slot back.
//!
//! The thread-local [`Tag`] names the node for the panic hook while it is
//! polled.

use actix::dev::channel;
use actix::dev::ContextFut;
use actix::prelude::*;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

use crate::supervision::{
    panic_message, with_tag, Control, Exit, FaultKind, InjectedFault, NodeId, Supervision, Tag,
};

/// Inject a fault into an actor (manager FAULT, `--fault-injection`):
/// every supervised actor handles it by panicking in its own handler
/// ([`crate::supervision::injected_panic`]) or stopping.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Fault(pub FaultKind);

/// How every supervised actor handles [`Fault`].
#[macro_export]
macro_rules! handle_fault {
    ($actor:ty) => {
        impl ::actix::Handler<$crate::actors::child::Fault> for $actor {
            type Result = ();
            fn handle(
                &mut self,
                msg: $crate::actors::child::Fault,
                ctx: &mut ::actix::Context<Self>,
            ) {
                match msg.0 {
                    $crate::supervision::FaultKind::Panic => $crate::supervision::injected_panic(),
                    $crate::supervision::FaultKind::Stop => ::actix::ActorContext::stop(ctx),
                }
            }
        }
    };
}

/// Mailbox capacity of a supervised actor (actix's default).
const MAILBOX: usize = 16;

/// Starts the actor `make` builds as the permanent node `id`: on `arbiter`
/// when given, else on the current one. The address stays valid across
/// restarts.
pub fn start<A, F>(
    sup: &Arc<Supervision>,
    id: NodeId,
    arbiter: Option<&actix::ArbiterHandle>,
    make: F,
) -> Addr<A>
where
    A: Actor<Context = Context<A>> + Supervised + Handler<Fault>,
    F: FnOnce(&mut Context<A>) -> A + Send + 'static,
{
    let (tx, rx) = channel::channel(MAILBOX);
    let addr = Addr::new(tx);
    let faults = addr.clone();
    sup.set_fault(id, move |kind| faults.try_send(Fault(kind)).is_ok());
    let control = sup.attach(id);
    let tag = sup.tag(id);
    let sup = sup.clone();
    let run = move || {
        let mut ctx = Context::with_receiver(rx);
        let act = make(&mut ctx);
        let fut = ctx.into_future(act);
        actix_rt::spawn(Permanent {
            fut,
            sup,
            id,
            tag,
            control,
            phase: Phase::Starting,
        });
    };
    match arbiter {
        Some(a) => {
            a.spawn_fn(run);
        }
        None => run(),
    }
    addr
}

enum Phase {
    /// Started or restarted; not yet seen to run without a panic.
    Starting,
    Running,
    /// Ended and reported; waiting for the tree's order.
    Waiting,
    BackingOff(Pin<Box<tokio::time::Sleep>>),
    /// Nobody can send to it any more.
    Done,
}

struct Permanent<A: Actor<Context = Context<A>>> {
    fut: ContextFut<A, Context<A>>,
    sup: Arc<Supervision>,
    id: NodeId,
    tag: Tag,
    control: mpsc::UnboundedReceiver<Control>,
    phase: Phase,
}

impl<A> Permanent<A>
where
    A: Actor<Context = Context<A>> + Supervised,
{
    /// Stops what the actor runs and restarts its context, to be polled
    /// again after `after`.
    fn restart(&mut self, after: Duration) {
        let fut = &mut self.fut;
        match with_tag(self.tag, || {
            catch_unwind(AssertUnwindSafe(|| fut.restart()))
        }) {
            Ok(true) => {
                self.phase = Phase::BackingOff(Box::pin(tokio::time::sleep(after)));
            }
            Ok(false) => {
                self.phase = Phase::Done;
                self.sup.stopped(self.id);
            }
            Err(p) => {
                // Its `restarting` hook panicked: a failure like any other
                // (the tree's intensity bounds how often this repeats).
                let msg = format!("in restarting(): {}", panic_message(&*p));
                self.phase = Phase::Waiting;
                self.sup
                    .report(self.id, Exit::Panicked(msg), Some(p.is::<InjectedFault>()));
            }
        }
    }
}

impl<A> Future for Permanent<A>
where
    A: Actor<Context = Context<A>> + Supervised,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            while let Poll::Ready(order) = this.control.poll_recv(cx) {
                match order {
                    Some(Control::Restart { after }) => this.restart(after),
                    // The supervision handle is gone: run unsupervised.
                    None => break,
                }
            }
            match &mut this.phase {
                Phase::Done => return Poll::Ready(()),
                Phase::Waiting => return Poll::Pending,
                Phase::BackingOff(sleep) => {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.sup.restarting(this.id);
                    this.phase = Phase::Starting;
                }
                Phase::Starting | Phase::Running => {}
            }
            let fut = &mut this.fut;
            let polled = with_tag(this.tag, || {
                catch_unwind(AssertUnwindSafe(|| Pin::new(fut).poll(cx)))
            });
            let (exit, injected) = match polled {
                Ok(Poll::Pending) => {
                    if let Phase::Starting = this.phase {
                        this.phase = Phase::Running;
                        this.sup.running(this.id);
                    }
                    return Poll::Pending;
                }
                Ok(Poll::Ready(())) => (Exit::Stopped("the actor stopped".into()), None),
                Err(p) => (
                    Exit::Panicked(panic_message(&*p)),
                    Some(p.is::<InjectedFault>()),
                ),
            };
            this.phase = Phase::Waiting;
            // The order (if any) arrives on `control` at once.
            this.sup.report(this.id, exit, injected);
        }
    }
}

/// Starts `act` as a temporary child on the current arbiter: never
/// restarted; on a panic `on_crash` gets the message and the actor is
/// dropped (its `Drop` gives back what it held).
pub fn start_temporary<A>(tag: Tag, act: A, on_crash: impl FnOnce(String) + 'static) -> Addr<A>
where
    A: Actor<Context = Context<A>>,
{
    let ctx = Context::new();
    let addr = ctx.address();
    let fut = ctx.into_future(act);
    actix_rt::spawn(Temporary {
        fut: Some(fut),
        tag,
        on_crash: Some(Box::new(on_crash)),
    });
    addr
}

struct Temporary<A: Actor<Context = Context<A>>> {
    fut: Option<ContextFut<A, Context<A>>>,
    tag: Tag,
    on_crash: Option<Box<dyn FnOnce(String)>>,
}

impl<A: Actor<Context = Context<A>>> Temporary<A> {
    /// Drops the actor where a panic in its `Drop` is caught too.
    fn finish(&mut self) {
        let fut = self.fut.take();
        let dropped = with_tag(self.tag, || {
            catch_unwind(AssertUnwindSafe(move || drop(fut)))
        });
        if let Err(p) = dropped {
            if let Some(f) = self.on_crash.take() {
                f(format!("while ending: {}", panic_message(&*p)));
            }
        }
    }
}

impl<A: Actor<Context = Context<A>>> Future for Temporary<A> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(fut) = this.fut.as_mut() else {
            return Poll::Ready(());
        };
        let polled = with_tag(this.tag, || {
            catch_unwind(AssertUnwindSafe(|| Pin::new(fut).poll(cx)))
        });
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => {
                this.finish();
                Poll::Ready(())
            }
            Err(p) => {
                if let Some(f) = this.on_crash.take() {
                    f(panic_message(&*p));
                }
                this.finish();
                Poll::Ready(())
            }
        }
    }
}

impl<A: Actor<Context = Context<A>>> Drop for Temporary<A> {
    fn drop(&mut self) {
        // Dropped unfinished (its arbiter stopped): end it the same way.
        if self.fut.is_some() {
            self.on_crash = None;
            self.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervision::{State, Tree};
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn sup(overrides: &[&str]) -> Arc<Supervision> {
        Supervision::for_tests(overrides)
    }

    /// Counts its starts and restarts; keeps a total across restarts.
    struct Counter {
        starts: Arc<AtomicU32>,
        total: u64,
        panic_in_started: Arc<AtomicU32>,
        panic_in_restarting: Arc<AtomicU32>,
        panic_in_stopping: bool,
    }

    impl Actor for Counter {
        type Context = Context<Self>;
        fn started(&mut self, _: &mut Context<Self>) {
            self.starts.fetch_add(1, Ordering::Relaxed);
            if take_one(&self.panic_in_started) {
                panic!("in started");
            }
        }
        fn stopping(&mut self, _: &mut Context<Self>) -> Running {
            if self.panic_in_stopping {
                self.panic_in_stopping = false;
                panic!("in stopping");
            }
            Running::Stop
        }
    }

    impl Supervised for Counter {
        fn restarting(&mut self, _: &mut Context<Self>) {
            if take_one(&self.panic_in_restarting) {
                panic!("in restarting");
            }
        }
    }

    handle_fault!(Counter);

    /// Takes one from `n` if it is above zero.
    fn take_one(n: &AtomicU32) -> bool {
        n.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
            .is_ok()
    }

    #[derive(Message)]
    #[rtype(result = "u64")]
    struct Add(u64);

    impl Handler<Add> for Counter {
        type Result = u64;
        fn handle(&mut self, msg: Add, _: &mut Context<Self>) -> u64 {
            if msg.0 == 0 {
                panic!("adding zero");
            }
            self.total += msg.0;
            self.total
        }
    }

    struct Fixture {
        sup: Arc<Supervision>,
        addr: Addr<Counter>,
        starts: Arc<AtomicU32>,
        started_panics: Arc<AtomicU32>,
        restarting_panics: Arc<AtomicU32>,
    }

    fn counter(overrides: &[&str], panic_in_stopping: bool) -> Fixture {
        let sup = sup(overrides);
        let id = sup.add(Tree::ROOT, "registry", crate::supervision::Kind::Actor);
        let starts = Arc::new(AtomicU32::new(0));
        let started_panics = Arc::new(AtomicU32::new(0));
        let restarting_panics = Arc::new(AtomicU32::new(0));
        let (s, sp, rp) = (
            starts.clone(),
            started_panics.clone(),
            restarting_panics.clone(),
        );
        let addr = start(&sup, id, None, move |_| Counter {
            starts: s,
            total: 0,
            panic_in_started: sp,
            panic_in_restarting: rp,
            panic_in_stopping,
        });
        Fixture {
            sup,
            addr,
            starts,
            started_panics,
            restarting_panics,
        }
    }

    fn state(sup: &Supervision) -> State {
        sup.view()[1].node.state
    }

    #[actix_rt::test]
    async fn a_panicking_handler_errs_its_sender_and_the_queue_is_served() {
        let f = counter(&["registry:backoff=20ms..1s"], false);
        assert_eq!(f.addr.send(Add(5)).await.unwrap(), 5);
        // Three messages at once: the middle one panics.
        let a = f.addr.send(Add(1));
        let b = f.addr.send(Add(0));
        let c = f.addr.send(Add(2));
        let (a, b, c) = futures::join!(a, b, c);
        assert_eq!(a.unwrap(), 6);
        assert!(matches!(b, Err(MailboxError::Closed)), "{b:?}");
        assert_eq!(c.unwrap(), 8, "served after the restart, state kept");
        assert_eq!(f.starts.load(Ordering::Relaxed), 2, "started again");
        assert_eq!(state(&f.sup), State::Running);
        let v = &f.sup.view()[1].node;
        assert_eq!((v.restarts, v.failures), (1, 1));
        assert!(v
            .last_failure
            .as_ref()
            .unwrap()
            .reason
            .contains("adding zero"));
    }

    #[actix_rt::test]
    async fn the_restart_waits_out_the_backoff() {
        let f = counter(&["registry:backoff=300ms..1s"], false);
        let _ = f.addr.send(Add(0)).await;
        let t0 = std::time::Instant::now();
        assert_eq!(state(&f.sup), State::BackingOff);
        assert_eq!(f.addr.send(Add(1)).await.unwrap(), 1);
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(250),
            "served after the backoff, not at once: {waited:?}"
        );
    }

    #[actix_rt::test]
    async fn panics_in_started_restarting_and_stopping_are_caught() {
        let f = counter(&["registry:backoff=0ms..0ms,intensity=10/10s"], true);
        f.started_panics.store(1, Ordering::Relaxed);
        f.restarting_panics.store(1, Ordering::Relaxed);
        // Stop: stopping() panics, restarting() panics once, started()
        // panics once, then it runs.
        f.addr.do_send(Fault(FaultKind::Stop));
        assert_eq!(f.addr.send(Add(3)).await.unwrap(), 3);
        let v = &f.sup.view()[1].node;
        assert_eq!(v.failures, 3, "stopping, restarting, started: {v:?}");
        assert_eq!(state(&f.sup), State::Running);
    }

    #[actix_rt::test]
    async fn an_injected_fault_is_counted_apart() {
        let f = counter(&["registry:backoff=0ms..0ms"], false);
        let by = "127.0.0.1:1".parse().unwrap();
        f.sup.inject("registry", FaultKind::Panic, by).unwrap();
        assert_eq!(f.addr.send(Add(1)).await.unwrap(), 1);
        let v = &f.sup.view()[1].node;
        assert_eq!((v.injected, v.failures, v.restarts), (1, 0, 1));
    }

    /// Faults queued while the node backs off are each counted injected,
    /// and a real panic among them is counted real.
    #[actix_rt::test]
    async fn queued_faults_are_each_counted_injected() {
        let f = counter(&["registry:backoff=100ms..100ms,intensity=10/10s"], false);
        let by = "127.0.0.1:1".parse().unwrap();
        for kind in [FaultKind::Panic, FaultKind::Panic, FaultKind::Stop] {
            f.sup.inject("registry", kind, by).unwrap();
        }
        let _ = f.addr.send(Add(0)).await; // a real panic, queued behind
        assert_eq!(f.addr.send(Add(1)).await.unwrap(), 1);
        let v = &f.sup.view()[1].node;
        assert_eq!((v.injected, v.failures, v.restarts), (3, 1, 4), "{v:?}");
    }

    #[actix_rt::test]
    async fn a_temporary_child_is_dropped_and_reports_its_crash() {
        struct Temp(Rc<RefCell<Vec<String>>>);
        impl Actor for Temp {
            type Context = Context<Self>;
        }
        impl Drop for Temp {
            fn drop(&mut self) {
                self.0.borrow_mut().push("dropped".into());
            }
        }
        impl Handler<Add> for Temp {
            type Result = u64;
            fn handle(&mut self, _: Add, _: &mut Context<Self>) -> u64 {
                panic!("temp broke")
            }
        }
        let seen = Rc::new(RefCell::new(Vec::new()));
        let s = seen.clone();
        let addr = start_temporary(Tag::Session(1), Temp(seen.clone()), move |m| {
            s.borrow_mut().push(format!("crashed: {m}"))
        });
        assert!(addr.send(Add(1)).await.is_err());
        tokio::task::yield_now().await;
        assert_eq!(*seen.borrow(), ["crashed: temp broke", "dropped"]);
        assert!(!addr.connected(), "never restarted");
    }
}
