//! Table compaction on a schedule (`sink.table_compact_every_secs`): what `sluice compact`
//! does — closed windows' small files bin-packed in one `dataChange: false` commit per table,
//! then replaced files past the retention vacuumed — run in the background by the one worker
//! that owns the first partition of the first topic, so a group compacts once per round.
//! Compaction commits remove only closed windows' files, which appends never touch, so they
//! do not hold the export back; a round that loses a race to another writer is tried again
//! at the next.

use std::time::{Duration, Instant};

use sluice_config::CompactionSchedule;
use sluice_lake::Lake;
use sluice_telemetry::Metrics;
use tokio::task::JoinHandle;

pub(crate) struct Maintenance {
    schedule: CompactionSchedule,
    /// Windows are closed once late records can no longer join them.
    allowed_lateness: Duration,
    next: Instant,
    running: Option<JoinHandle<()>>,
}

impl Maintenance {
    pub(crate) fn new(schedule: CompactionSchedule, allowed_lateness: Duration) -> Self {
        Self {
            schedule,
            allowed_lateness,
            next: Instant::now() + schedule.every,
            running: None,
        }
    }

    /// Starts a round when one is due, none is running, and this worker is the compacting one.
    pub(crate) fn tick(&mut self, compacts: bool, lake: &Lake, app: &str, metrics: &Metrics) {
        if self.running.as_ref().is_some_and(|r| !r.is_finished()) {
            return;
        }
        self.running = None;
        if !compacts || Instant::now() < self.next {
            return;
        }
        self.next = Instant::now() + self.schedule.every;
        let (lake, app, metrics) = (lake.clone(), app.to_string(), metrics.clone());
        let schedule = self.schedule;
        let lateness = chrono::Duration::from_std(self.allowed_lateness).unwrap_or_default();
        self.running = Some(tokio::spawn(async move {
            let closed_before = chrono::Utc::now() - lateness;
            let retention = chrono::Duration::from_std(schedule.retention).unwrap_or_default();
            match sluice_delta::compact_lake(
                &lake,
                &app,
                schedule.target_bytes,
                closed_before,
                retention,
            )
            .await
            {
                Ok(tables) => {
                    for t in tables.iter().filter(|t| t.compaction.version.is_some()) {
                        metrics
                            .table_commits
                            .with_label_values(&["compacted"])
                            .inc();
                        tracing::info!(table = %t.table, version = ?t.compaction.version, files_removed = t.compaction.files_removed, files_added = t.compaction.files_added, vacuumed = t.vacuumed, "compacted a table");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "table compaction failed; trying again at the next round")
                }
            }
        }));
    }

    /// Stops a running round (at shutdown): its commit either landed or did not.
    pub(crate) fn abort(&mut self) {
        if let Some(r) = self.running.take() {
            r.abort();
        }
    }
}
