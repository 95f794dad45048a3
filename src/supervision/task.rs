//! The driver of a supervised tokio task (the SCTP-over-UDP transport's
//! driver): the task is built by a start function, run with its panics
//! caught, reported to the tree, and built again when the tree orders it.
//! Whatever the task must keep across restarts (its socket, the channel to
//! its listener) belongs to the start function, not to the task.

use futures::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

use super::{panic_message, Control, Exit, FaultKind, InjectedFault, NodeId, Supervision, Tagged};

/// How a task's future ended without a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEnd {
    /// Nothing needs it any more (its listener is gone): not restarted.
    Finished,
    /// It stopped by itself (or was told to, `FaultKind::Stop`): a
    /// permanent node is restarted.
    Stopped(String),
}

/// Runs the task that `start` builds, as node `id`, until it finishes.
/// `start` gets the receiving end of the node's fault channel: the task
/// must act on a [`FaultKind`] itself (panic in its own loop, or stop).
pub async fn run<F, Fut>(sup: Arc<Supervision>, id: NodeId, mut start: F)
where
    F: FnMut(mpsc::UnboundedReceiver<FaultKind>) -> Fut,
    Fut: Future<Output = TaskEnd> + Send + 'static,
{
    let mut control = sup.attach(id);
    let tag = sup.tag(id);
    let faults: Arc<Mutex<Option<mpsc::UnboundedSender<FaultKind>>>> = Arc::default();
    {
        let faults = faults.clone();
        sup.set_fault(id, move |kind| {
            faults
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_some_and(|tx| tx.send(kind).is_ok())
        });
    }
    loop {
        let (tx, rx) = mpsc::unbounded_channel();
        *faults.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        let task = Tagged {
            tag,
            inner: AssertUnwindSafe(start(rx)).catch_unwind().boxed(),
        };
        sup.running(id);
        let (exit, injected) = tokio::select! {
            r = task => match r {
                Ok(TaskEnd::Finished) => {
                    sup.stopped(id);
                    return;
                }
                Ok(TaskEnd::Stopped(why)) => (Exit::Stopped(why), None),
                Err(payload) => (
                    Exit::Panicked(panic_message(&*payload)),
                    Some(payload.is::<InjectedFault>()),
                ),
            },
            order = control.recv() => match order {
                // A sibling's restart (one_for_all, rest_for_one) or an
                // escalation: this task is stopped and started again.
                Some(Control::Restart { after }) => {
                    tokio::time::sleep(after).await;
                    sup.restarting(id);
                    continue;
                }
                None => return,
            },
        };
        sup.report(id, exit, injected);
        match control.recv().await {
            Some(Control::Restart { after }) => {
                tokio::time::sleep(after).await;
                sup.restarting(id);
            }
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervision::{State, Tree};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    fn sup(overrides: &[&str]) -> Arc<Supervision> {
        Supervision::for_tests(overrides)
    }

    /// A task that counts its starts, panics on an injected fault, stops on
    /// a stop, and finishes when told through `finish`.
    #[tokio::test(start_paused = true)]
    async fn a_task_restarts_after_its_backoff_and_finishes_for_good() {
        let s = sup(&["udp-driver:backoff=100ms..1s"]);
        let id = s.add(Tree::ROOT, "udp-driver", crate::supervision::Kind::Task);
        let starts = Arc::new(AtomicU32::new(0));
        let finish = Arc::new(tokio::sync::Notify::new());
        let runner = tokio::spawn({
            let (s, starts, finish) = (s.clone(), starts.clone(), finish.clone());
            run(s, id, move |mut faults| {
                starts.fetch_add(1, Ordering::Relaxed);
                let finish = finish.clone();
                async move {
                    tokio::select! {
                        f = faults.recv() => match f {
                            Some(FaultKind::Panic) => crate::supervision::injected_panic(),
                            Some(FaultKind::Stop) => TaskEnd::Stopped("told to".into()),
                            None => TaskEnd::Finished,
                        },
                        _ = finish.notified() => TaskEnd::Finished,
                    }
                }
            })
        });
        tokio::task::yield_now().await;
        assert_eq!(starts.load(Ordering::Relaxed), 1);
        let by = "127.0.0.1:1".parse().unwrap();
        s.inject("udp-driver", FaultKind::Panic, by).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(s.view()[1].node.state, State::BackingOff, "within 100 ms");
        assert_eq!(starts.load(Ordering::Relaxed), 1);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(starts.load(Ordering::Relaxed), 2, "restarted at 100 ms");
        assert_eq!(s.view()[1].node.state, State::Running);
        // The second restart within the period waits twice as long.
        s.inject("udp-driver", FaultKind::Stop, by).unwrap();
        tokio::time::sleep(Duration::from_millis(190)).await;
        assert_eq!(starts.load(Ordering::Relaxed), 2);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(starts.load(Ordering::Relaxed), 3, "restarted at 200 ms");
        let v = &s.view()[1].node;
        assert_eq!((v.restarts, v.injected, v.failures), (2, 2, 0));
        finish.notify_one();
        tokio::time::timeout(Duration::from_secs(1), runner)
            .await
            .expect("a finished task ends its driver")
            .unwrap();
        assert_eq!(s.view()[1].node.state, State::Stopped);
    }
}
