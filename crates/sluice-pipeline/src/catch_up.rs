//! `--until-caught-up`: for each partition this worker owns, where the partition ended when it
//! was assigned; the run ends once everything up to there has landed and been committed on
//! every owned partition, or once the lake has been down longer than the patience allows.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use sluice_core::{PartitionLedgers, TopicPartition};

/// How a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Until SIGINT or SIGTERM.
    Continuous,
    /// Once every owned partition is landed and committed up to its end at assignment; a
    /// lake down for longer than `lake_patience` ends the run with an error instead.
    UntilCaughtUp { lake_patience: Duration },
}

/// One partition's progress towards its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionEnd {
    /// Committed offset (the next record to read), as far as this worker got.
    pub reached: i64,
    /// The partition's high watermark when it was assigned here.
    pub end: i64,
}

impl PartitionEnd {
    pub fn caught_up(&self) -> bool {
        self.reached >= self.end
    }
}

/// How long the group must leave this worker's partitions alone before it may end.
const SETTLE: Duration = Duration::from_secs(3);

pub(crate) struct CatchUp {
    pub(crate) lake_patience: Duration,
    /// Per owned partition: where it started (committed, else the low watermark) and ended.
    targets: BTreeMap<TopicPartition, (i64, i64)>,
    /// Every partition this worker has finished (kept when it moves on, for the summary).
    reached: BTreeMap<TopicPartition, PartitionEnd>,
    /// When the group last moved partitions here or away (none yet: not done).
    last_rebalance: Option<Instant>,
    lake_down_since: Option<Instant>,
    started: Instant,
    next_report: Instant,
}

impl CatchUp {
    pub(crate) fn new(lake_patience: Duration) -> Self {
        Self {
            lake_patience,
            targets: BTreeMap::new(),
            reached: BTreeMap::new(),
            last_rebalance: None,
            lake_down_since: None,
            started: Instant::now(),
            next_report: Instant::now(),
        }
    }

    /// The group moved partitions (an assignment, possibly empty, or a revocation).
    pub(crate) fn rebalanced(&mut self) {
        self.last_rebalance = Some(Instant::now());
    }

    pub(crate) fn assigned(
        &mut self,
        tp: TopicPartition,
        committed: Option<i64>,
        low: i64,
        high: i64,
    ) {
        let start = committed.unwrap_or(low).max(low);
        self.targets.insert(tp, (start, high));
    }

    /// `committed`: the group's offset after the revocation's own commit, so the summary
    /// names where this worker left the partition, not where the last tick saw it.
    pub(crate) fn revoked(&mut self, tp: &TopicPartition, committed: Option<i64>) {
        if let (Some((start, end)), Some(c)) = (self.targets.remove(tp), committed) {
            let reached = c.max(start);
            let seen = self
                .reached
                .get(tp)
                .map_or(reached, |p| p.reached.max(reached));
            self.reached
                .insert(tp.clone(), PartitionEnd { reached: seen, end });
        }
    }

    /// Where each owned partition stands: committed by this worker, else where it started.
    fn progress(&self, ledgers: &PartitionLedgers) -> Vec<(TopicPartition, PartitionEnd)> {
        self.targets
            .iter()
            .map(|(tp, (start, end))| {
                let committed = ledgers.get(tp).and_then(|l| l.committed());
                let reached = committed.map_or(*start, |c| c.max(*start));
                (tp.clone(), PartitionEnd { reached, end: *end })
            })
            .collect()
    }

    /// Whether the run is done: the group has settled (no rebalance for `SETTLE`: a member
    /// that joins gets its partitions a rebalance or two later) and every owned partition is
    /// caught up.
    pub(crate) fn done(&mut self, ledgers: &PartitionLedgers) -> bool {
        let progress = self.progress(ledgers);
        for (tp, p) in &progress {
            self.reached.insert(tp.clone(), *p);
        }
        self.last_rebalance.is_some_and(|t| t.elapsed() >= SETTLE)
            && progress.iter().all(|(_, p)| p.caught_up())
    }

    /// Whether every owned partition has been read to its end (not necessarily landed): then
    /// nothing more will join the open buffers, and waiting for them to age only delays.
    pub(crate) fn read_to_end(&self, ledgers: &PartitionLedgers) -> bool {
        !self.targets.is_empty()
            && self.targets.iter().all(|(tp, (start, end))| {
                let next = ledgers
                    .get(tp)
                    .and_then(|l| l.last_consumed())
                    .map_or(*start, |last| (last + 1).max(*start));
                next >= *end
            })
    }

    /// Whether the lake has been down (`up` false) for longer than the patience.
    pub(crate) fn lake_gave_out(&mut self, up: bool) -> bool {
        match (up, self.lake_down_since) {
            (true, _) => {
                self.lake_down_since = None;
                false
            }
            (false, None) => {
                self.lake_down_since = Some(Instant::now());
                false
            }
            (false, Some(since)) => since.elapsed() > self.lake_patience,
        }
    }

    /// Every partition this worker owned, where it got to.
    pub(crate) fn summary(&self) -> BTreeMap<TopicPartition, PartitionEnd> {
        self.reached.clone()
    }

    /// A progress line every second on a terminal (rewritten in place), a log line every ten
    /// seconds otherwise: records/s, lag left, files landed, time to go.
    pub(crate) fn report(&mut self, records: u64, files: u64) {
        let tty = std::io::stderr().is_terminal();
        let now = Instant::now();
        if now < self.next_report {
            return;
        }
        self.next_report = now
            + if tty {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(10)
            };
        let lag: i64 = self
            .reached
            .values()
            .map(|p| (p.end - p.reached).max(0))
            .sum();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = records as f64 / secs;
        let eta = if rate > 0.0 {
            format!("{:.0} s", lag as f64 / rate)
        } else {
            "?".into()
        };
        if tty {
            eprint!(
                "\r{rate:>10.0} records/s, lag {lag} records, {files} files landed, ETA {eta}   "
            );
        } else {
            tracing::info!(records_per_sec = rate as u64, lag, files, eta = %eta, "catching up");
        }
    }
}
