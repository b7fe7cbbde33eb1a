//! Files still landing, per partition, so a revocation can wait for them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sluice_core::TopicPartition;
use tokio::task::AbortHandle;

#[derive(Default)]
pub(crate) struct InFlight {
    counts: Mutex<HashMap<TopicPartition, usize>>,
    changed: Condvar,
    /// How to cancel each partition's landing tasks.
    aborts: Mutex<HashMap<TopicPartition, Aborts>>,
    /// Partitions being revoked: the rebalance callback closes them before it waits for their
    /// landings, so that no landing queued for them starts after it looked; the loop reopens
    /// them when it forgets the partition (and its queue) or owns it again.
    closed: Mutex<HashSet<TopicPartition>>,
}

/// A partition's landing tasks, finished ones among them until the next pruning.
#[derive(Default)]
struct Aborts {
    handles: Vec<AbortHandle>,
    /// The length at which finished handles are dropped: twice what was left at the last
    /// pruning, so registering n landings (a partition's 6,000 files of a 1,000-signal drain)
    /// visits O(n) handles, not O(n²).
    prune_at: usize,
}

/// Fewer handles than this are never pruned.
const MIN_PRUNE_AT: usize = 64;

/// Counts one landing until dropped (whether it landed, failed or was cancelled).
pub(crate) struct Landing {
    inflight: Arc<InFlight>,
    tp: TopicPartition,
}

impl InFlight {
    pub(crate) fn start(self: &Arc<Self>, tp: &TopicPartition) -> Landing {
        *self
            .counts
            .lock()
            .expect("in-flight lock")
            .entry(tp.clone())
            .or_default() += 1;
        Landing {
            inflight: self.clone(),
            tp: tp.clone(),
        }
    }

    /// Remembers how to cancel a landing task of `tp`.
    pub(crate) fn register(&self, tp: &TopicPartition, handle: AbortHandle) {
        let mut aborts = self.aborts.lock().expect("in-flight lock");
        let a = aborts.entry(tp.clone()).or_default();
        if a.handles.len() >= a.prune_at {
            a.handles.retain(|h| !h.is_finished());
            a.prune_at = (a.handles.len() * 2).max(MIN_PRUNE_AT);
        }
        a.handles.push(handle);
    }

    /// Cancels the landing tasks of `tps`. A cancelled write may still complete at the store if
    /// its request was already sent; the caller makes that window as short as it can.
    pub(crate) fn abort(&self, tps: &[TopicPartition]) {
        let mut aborts = self.aborts.lock().expect("in-flight lock");
        for tp in tps {
            for h in aborts.remove(tp).unwrap_or_default().handles {
                h.abort();
            }
        }
    }

    /// No landing of `tps` may start from now on (see `closed`).
    pub(crate) fn close(&self, tps: &[TopicPartition]) {
        self.closed
            .lock()
            .expect("in-flight lock")
            .extend(tps.iter().cloned());
    }

    pub(crate) fn reopen(&self, tp: &TopicPartition) {
        self.closed.lock().expect("in-flight lock").remove(tp);
    }

    pub(crate) fn is_closed(&self, tp: &TopicPartition) -> bool {
        self.closed.lock().expect("in-flight lock").contains(tp)
    }

    /// Whether no file of `tp` is landing.
    pub(crate) fn idle(&self, tp: &TopicPartition) -> bool {
        !self.counts.lock().expect("in-flight lock").contains_key(tp)
    }

    /// Blocks until no file of `tps` is landing, or `patience` has passed (then false).
    pub(crate) fn wait_idle(&self, tps: &[TopicPartition], patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        let mut counts = self.counts.lock().expect("in-flight lock");
        while tps.iter().any(|tp| counts.get(tp).is_some_and(|n| *n > 0)) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            counts = self
                .changed
                .wait_timeout(counts, left)
                .expect("in-flight lock")
                .0;
        }
        true
    }
}

impl Drop for Landing {
    fn drop(&mut self) {
        let mut counts = self.inflight.counts.lock().expect("in-flight lock");
        if let Some(n) = counts.get_mut(&self.tp) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.tp);
            }
        }
        self.inflight.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_landings_of_the_given_partitions_only() {
        let inflight = Arc::new(InFlight::default());
        let (a, b) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
        let landing = inflight.start(&a);
        let _other = inflight.start(&b);
        assert!(!inflight.wait_idle(std::slice::from_ref(&a), Duration::from_millis(20)));
        let waiter = {
            let inflight = inflight.clone();
            let a = a.clone();
            std::thread::spawn(move || inflight.wait_idle(&[a], Duration::from_secs(10)))
        };
        std::thread::sleep(Duration::from_millis(20));
        drop(landing);
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn closed_partitions_stay_closed_until_reopened() {
        let inflight = InFlight::default();
        let (a, b) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
        inflight.close(std::slice::from_ref(&a));
        assert!(inflight.is_closed(&a) && !inflight.is_closed(&b));
        inflight.reopen(&a);
        assert!(!inflight.is_closed(&a));
    }

    /// Finished landings' handles are dropped now and then, not kept for the partition's
    /// lifetime; those still running can be aborted.
    #[tokio::test]
    async fn finished_handles_are_pruned_and_running_ones_aborted() {
        let inflight = InFlight::default();
        let tp = TopicPartition::new("t", 0);
        for _ in 0..1_000 {
            let done = tokio::spawn(async {});
            let handle = done.abort_handle();
            done.await.unwrap();
            inflight.register(&tp, handle);
        }
        let held = inflight.aborts.lock().unwrap()[&tp].handles.len();
        assert!(
            held <= MIN_PRUNE_AT,
            "{held} handles of finished tasks kept"
        );
        let running = tokio::spawn(std::future::pending::<()>());
        inflight.register(&tp, running.abort_handle());
        inflight.abort(std::slice::from_ref(&tp));
        assert!(running.await.unwrap_err().is_cancelled());
    }
}
