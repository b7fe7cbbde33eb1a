//! Backpressure: fetching pauses while too many files are landing or too many bytes are held
//! (open buffers, buffers queued to land and files landing, so memory stays bounded however
//! slow the lake is), and resumes with room for half again, so a worker does not flap at the
//! limit. Paused partitions are still polled, so the group keeps this worker.
//! [`Backpressure`] owns the count of bytes landing and whether fetching is paused; the
//! worker pauses and resumes the partitions it says.

use std::collections::HashMap;

use sluice_kafka::KafkaSource;

use crate::{Worker, MAX_LANDINGS_IN_FLIGHT};

pub(crate) struct Backpressure {
    /// `flush.max_buffered_bytes`: open buffers and landing files together.
    budget_bytes: u64,
    /// Bytes of buffers whose files are landing, in total and per landing task.
    landing_bytes: u64,
    held_by_task: HashMap<tokio::task::Id, u64>,
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
        self.held_by_task.insert(task, bytes);
    }

    /// A landing task ended: its buffer is freed.
    pub(crate) fn landed(&mut self, task: tokio::task::Id) {
        self.landing_bytes -= self.held_by_task.remove(&task).unwrap_or(0);
    }

    /// Bytes held in memory: those beside the landing tasks (`beside`: open and queued
    /// buffers, encodes) and the landing tasks' buffers.
    pub(crate) fn held(&self, beside: u64) -> u64 {
        beside + self.landing_bytes
    }

    /// Whether fetching should be paused, with `landings` files landing and `beside` bytes
    /// held beside the landing tasks.
    fn stalled(&self, landings: usize, beside: u64) -> bool {
        let held = self.held(beside);
        if self.paused {
            landings > MAX_LANDINGS_IN_FLIGHT / 2
                || (landings > 0 && held > self.budget_bytes / 4 * 3)
        } else {
            landings >= MAX_LANDINGS_IN_FLIGHT || (landings > 0 && held > self.budget_bytes)
        }
    }
}

impl Worker {
    /// Pauses or resumes fetching as the landings and the memory budget say.
    pub(crate) fn apply_backpressure(&mut self, source: &KafkaSource) {
        let stalled = !self.waiting.is_empty()
            || self
                .backpressure
                .stalled(self.landings.len(), self.held_beside_landing_tasks());
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
