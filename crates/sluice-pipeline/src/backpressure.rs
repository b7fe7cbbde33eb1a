//! Backpressure: fetching pauses while too many files are landing or too many bytes are held
//! (open buffers plus files still landing, so memory stays bounded however slow the lake
//! is), and resumes with room for half again, so a worker does not flap at the limit.
//! Paused partitions are still polled, so the group keeps this worker.

use sluice_kafka::KafkaSource;

use crate::{Worker, MAX_LANDINGS_IN_FLIGHT};

impl Worker {
    /// Pauses or resumes fetching as the landings and the memory budget say.
    pub(crate) fn apply_backpressure(&mut self, source: &KafkaSource) {
        let stalled = !self.pending.is_empty()
            || if self.paused {
                self.landings.len() > MAX_LANDINGS_IN_FLIGHT / 2
                    || (!self.landings.is_empty() && self.held_bytes() > self.budget_bytes / 4 * 3)
            } else {
                self.landings.len() >= MAX_LANDINGS_IN_FLIGHT
                    || (!self.landings.is_empty() && self.held_bytes() > self.budget_bytes)
            };
        if stalled != self.paused {
            // Partitions not ready (their lake claim is pending) stay paused regardless.
            let changed = if stalled {
                let tps: Vec<_> = self.ownership.keys().cloned().collect();
                source.pause(&tps)
            } else {
                source.resume(&self.ready_partitions())
            };
            match changed {
                Ok(()) => {
                    self.paused = stalled;
                    self.metrics.paused.set(i64::from(stalled));
                    tracing::info!(paused = stalled, "backpressure");
                }
                Err(e) => tracing::warn!(error = %e, "cannot pause or resume partitions"),
            }
        }
    }

    /// Bytes held in memory: open buffers and files still landing.
    pub(crate) fn held_bytes(&self) -> u64 {
        self.buffers.buffered_bytes() + self.landing_bytes
    }
}
