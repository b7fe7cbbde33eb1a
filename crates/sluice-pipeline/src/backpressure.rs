//! Backpressure: fetching pauses while too many bytes are held (open buffers, buffers queued
//! to land and files landing, so memory stays bounded however slow the lake is), or while
//! too many files are landing and the lake is slow to take them; it resumes with room for
//! half again, so a worker does not flap at the limit. Paused partitions are still polled, so
//! the group keeps this worker. [`Backpressure`] owns the count of bytes landing and whether
//! fetching is paused; the worker pauses and resumes the partitions it says.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sluice_kafka::KafkaSource;

use crate::{Worker, MAX_LANDINGS_IN_FLIGHT};

/// A landing this old says the lake is slower than intake, or failing: only then does the
/// count of files landing pause fetching. Many files landing at once for other reasons (every
/// buffer at the end of a drain, windows closing together) wait for the encode budget and
/// the memory budget alone: a pause throws away what librdkafka had fetched, and Tansu
/// resumes a partition paused inside a record batch at its next batch.
const LANDING_PATIENCE: Duration = Duration::from_secs(5);

pub(crate) struct Backpressure {
    /// `flush.max_buffered_bytes`: open buffers and landing files together.
    budget_bytes: u64,
    /// Bytes of buffers whose files are landing, in total and per landing task (with when
    /// the task started).
    landing_bytes: u64,
    held_by_task: HashMap<tokio::task::Id, (u64, Instant)>,
    /// Fetching is paused.
    paused: bool,
}

impl Backpressure {
    pub(crate) fn new(budget_bytes: u64) -> Self {
        Self {
            budget_bytes,
            landing_bytes: 0,
            held_by_task: HashMap::new(),
            paused: false,
        }
    }

    pub(crate) fn paused(&self) -> bool {
        self.paused
    }

    /// A landing task took a buffer of `bytes`.
    pub(crate) fn landing(&mut self, task: tokio::task::Id, bytes: u64) {
        self.landing_bytes += bytes;
        self.held_by_task.insert(task, (bytes, Instant::now()));
    }

    /// A landing task ended: its buffer is freed.
    pub(crate) fn landed(&mut self, task: tokio::task::Id) {
        self.landing_bytes -= self
            .held_by_task
            .remove(&task)
            .map_or(0, |(bytes, _)| bytes);
    }

    /// Bytes held in memory: those beside the landing tasks (`beside`: open and queued
    /// buffers, encodes) and the landing tasks' buffers.
    pub(crate) fn held(&self, beside: u64) -> u64 {
        beside + self.landing_bytes
    }

    /// Whether a landing task has run longer than [`LANDING_PATIENCE`] at `now`.
    fn lake_is_slow(&self, now: Instant) -> bool {
        self.held_by_task
            .values()
            .any(|(_, since)| now.saturating_duration_since(*since) > LANDING_PATIENCE)
    }

    /// Whether fetching should be paused at `now`, with `landings` files landing and
    /// `beside` bytes held beside the landing tasks.
    fn stalled(&self, landings: usize, beside: u64, now: Instant) -> bool {
        let held = self.held(beside);
        let slow = || self.lake_is_slow(now);
        if self.paused {
            (landings > MAX_LANDINGS_IN_FLIGHT / 2 && slow())
                || (landings > 0 && held > self.budget_bytes / 4 * 3)
        } else {
            (landings >= MAX_LANDINGS_IN_FLIGHT && slow())
                || (landings > 0 && held > self.budget_bytes)
        }
    }
}

impl Worker {
    /// Pauses or resumes fetching as the landings and the memory budget say.
    pub(crate) fn apply_backpressure(&mut self, source: &KafkaSource) {
        let stalled = !self.waiting.is_empty()
            || self.backpressure.stalled(
                self.landings.len(),
                self.held_beside_landing_tasks(),
                Instant::now(),
            );
        if stalled != self.backpressure.paused {
            // Partitions not ready (their lake claim is pending) stay paused regardless.
            let changed = if stalled {
                let tps: Vec<_> = self.ownership.keys().cloned().collect();
                source.pause(&tps)
            } else {
                source.resume(&self.ready_partitions())
            };
            match changed {
                Ok(()) => {
                    self.backpressure.paused = stalled;
                    self.metrics.paused.set(i64::from(stalled));
                    tracing::info!(paused = stalled, "backpressure");
                }
                Err(e) => tracing::warn!(error = %e, "cannot pause or resume partitions"),
            }
        }
    }

    /// Bytes held in memory: open buffers, buffers queued to land, files landing and encodes.
    pub(crate) fn held_bytes(&self) -> u64 {
        self.backpressure.held(self.held_beside_landing_tasks())
    }

    /// Bytes held beside the landing tasks' buffers: open buffers, buffers queued to land,
    /// and what the running encodes build from their lines (estimated).
    fn held_beside_landing_tasks(&self) -> u64 {
        self.buffers.buffered_bytes()
            + self.landings.queued_bytes()
            + self.landings.encode_budget.in_use()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids of tasks, for landings.
    async fn task_ids(n: usize) -> Vec<tokio::task::Id> {
        let mut ids = Vec::new();
        for _ in 0..n {
            ids.push(tokio::spawn(async {}).id());
        }
        ids
    }

    #[tokio::test]
    async fn many_files_landing_pause_only_while_the_lake_is_slow() {
        let mut b = Backpressure::new(1_000);
        let ids = task_ids(MAX_LANDINGS_IN_FLIGHT).await;
        for id in &ids {
            b.landing(*id, 10);
        }
        let now = Instant::now();
        let n = MAX_LANDINGS_IN_FLIGHT;
        assert!(!b.stalled(n, 0, now), "young landings do not pause");
        let later = now + LANDING_PATIENCE + Duration::from_secs(1);
        assert!(b.stalled(n, 0, later), "old ones do");
        assert!(!b.stalled(n - 1, 0, later), "nor fewer than the limit");
        b.paused = true;
        assert!(
            b.stalled(n / 2 + 1, 0, later),
            "paused: until half of them landed"
        );
        assert!(!b.stalled(n / 2, 0, later));
        for id in &ids {
            b.landed(*id);
        }
        assert!(!b.stalled(n, 0, later), "the slow ones landed");
    }

    #[tokio::test]
    async fn held_bytes_pause_past_the_budget_and_resume_at_three_quarters() {
        let mut b = Backpressure::new(1_000);
        let id = task_ids(1).await[0];
        b.landing(id, 400);
        let now = Instant::now();
        assert!(!b.stalled(1, 600, now));
        assert!(b.stalled(1, 601, now));
        assert!(
            !b.stalled(0, 2_000, now),
            "nothing landing: nothing will free memory"
        );
        b.paused = true;
        assert!(b.stalled(1, 351, now));
        assert!(!b.stalled(1, 350, now));
        b.landed(id);
        assert!(!b.stalled(1, 750, now));
    }
}
