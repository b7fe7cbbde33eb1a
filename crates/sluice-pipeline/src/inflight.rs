//! Files still landing, per partition, so a revocation can wait for them.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sluice_core::TopicPartition;

#[derive(Default)]
pub(crate) struct InFlight {
    counts: Mutex<HashMap<TopicPartition, usize>>,
    changed: Condvar,
}

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
}
