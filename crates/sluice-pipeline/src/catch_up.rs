//! `--until-caught-up`: for each partition this worker owns, where the partition ended when it
//! was assigned; the run ends once everything up to there has landed and been committed on
//! every owned partition, and the group has committed every other partition of the topics to
//! where it ended when first seen, or once the lake has been down longer than the patience
//! allows. A partition the group leaves with no owner (Tansu was seen to revoke two
//! partitions from one member and give them to none) makes the worker rejoin the group.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use sluice_core::{PartitionLedgers, TopicPartition};
use sluice_kafka::{GroupPosition, KafkaSource};

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
/// How long a partition owned elsewhere (or by nobody) may stay behind its end with its
/// committed offset unchanged before this worker rejoins the group; doubled after each rejoin
/// so that a slow owner costs a few rebalances at most.
const FIRST_STALL: Duration = Duration::from_secs(10);
const LONGEST_STALL: Duration = Duration::from_secs(300);

/// What the group's other partitions say once this worker's own are caught up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupVerdict {
    /// Every partition of the topics is committed to its end: the run may end.
    Done,
    /// Some partition is behind, and its committed offset moved lately: its owner works.
    Wait,
    /// Some partition has been behind, unmoved, for longer than the stall allows: ask the
    /// group to assign its partitions afresh.
    Rejoin,
}

/// A partition this worker does not own: where it ended when first seen, and the group's
/// committed offset with when it last changed.
struct Elsewhere {
    end: i64,
    committed: Option<i64>,
    since: Instant,
}

/// How often the group's positions on other partitions are read (broker round trips).
const GROUP_CHECK: Duration = Duration::from_secs(2);

pub(crate) struct CatchUp {
    pub(crate) lake_patience: Duration,
    /// The pipeline's topics: all their partitions must be committed to their ends.
    pub(crate) topics: Vec<String>,
    /// Per owned partition: where it started (committed, else the low watermark) and ended.
    targets: BTreeMap<TopicPartition, (i64, i64)>,
    /// Every partition this worker has finished (kept when it moves on, for the summary).
    reached: BTreeMap<TopicPartition, PartitionEnd>,
    /// When the group last moved partitions here or away (none yet: not done).
    last_rebalance: Option<Instant>,
    lake_down_since: Option<Instant>,
    started: Instant,
    next_report: Instant,
    /// Partitions of the topics not owned here, once this worker's own are caught up.
    elsewhere: BTreeMap<TopicPartition, Elsewhere>,
    stall: Duration,
    next_group_check: Instant,
    /// Whether the owned partitions were all read to their ends when last asked.
    was_read_to_end: bool,
}

impl CatchUp {
    pub(crate) fn new(lake_patience: Duration, topics: Vec<String>) -> Self {
        Self {
            lake_patience,
            topics,
            next_group_check: Instant::now(),
            targets: BTreeMap::new(),
            reached: BTreeMap::new(),
            last_rebalance: None,
            lake_down_since: None,
            started: Instant::now(),
            next_report: Instant::now(),
            elsewhere: BTreeMap::new(),
            stall: FIRST_STALL,
            was_read_to_end: false,
        }
    }

    /// Whether it is time to read the group's positions on other partitions again.
    pub(crate) fn group_check_due(&mut self, now: Instant) -> bool {
        if now < self.next_group_check {
            return false;
        }
        self.next_group_check = now + GROUP_CHECK;
        true
    }

    /// Whether `tp` is one of this worker's partitions.
    pub(crate) fn owns(&self, tp: &TopicPartition) -> bool {
        self.targets.contains_key(tp)
    }

    /// Judges the partitions owned elsewhere from the group's positions on them, read after
    /// this worker's own were caught up. A partition never committed counts from its low
    /// watermark.
    pub(crate) fn judge_elsewhere(
        &mut self,
        positions: &[GroupPosition],
        now: Instant,
    ) -> GroupVerdict {
        let mut verdict = GroupVerdict::Done;
        for GroupPosition {
            tp,
            committed,
            low,
            high,
        } in positions
        {
            let seen = self
                .elsewhere
                .entry(tp.clone())
                .or_insert_with(|| Elsewhere {
                    end: *high,
                    committed: *committed,
                    since: now,
                });
            if seen.committed != *committed {
                seen.committed = *committed;
                seen.since = now;
            }
            let reached = committed.unwrap_or(*low).max(*low);
            if reached >= seen.end {
                continue;
            }
            if now.duration_since(seen.since) >= self.stall {
                verdict = GroupVerdict::Rejoin;
            } else if verdict == GroupVerdict::Done {
                verdict = GroupVerdict::Wait;
            }
        }
        if verdict == GroupVerdict::Rejoin {
            self.stall = (self.stall * 2).min(LONGEST_STALL);
            for seen in self.elsewhere.values_mut() {
                seen.since = now;
            }
        }
        verdict
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

/// The worker's side of `--until-caught-up`: asking, each tick, whether the run is done.
impl crate::Worker {
    /// With `--until-caught-up`: whether every owned partition has just been read to its end
    /// (false again until that changes). The tick's checks should then run at once rather
    /// than up to a tick later: each tick's wait was a tenth of a 1 M-record run's time.
    pub(crate) fn newly_read_to_end(&mut self) -> bool {
        let Some(c) = &mut self.catch_up else {
            return false;
        };
        let now = c.read_to_end(&self.ledgers.lock().expect("ledger lock"));
        let newly = now && !c.was_read_to_end;
        c.was_read_to_end = now;
        newly
    }

    /// With `--until-caught-up`: whether everything is read and nothing is landing, so the
    /// last landing (or the marker round after it, whose progress the commit waits for; up
    /// to 5 s away with markers on) has just finished and the run may be at its end.
    pub(crate) fn all_landed_at_end(&self) -> bool {
        self.catch_up
            .as_ref()
            .is_some_and(|c| c.was_read_to_end && self.landings.len() == 0)
    }

    /// With `--until-caught-up`: ends the run once every owned partition is landed and
    /// committed to its end and the group's other partitions are committed to theirs, or when
    /// the lake has been down past the patience.
    pub(crate) fn check_caught_up(&mut self, source: &KafkaSource) {
        let Some(c) = &mut self.catch_up else { return };
        let (own_done, read_to_end) = {
            let ledgers = self.ledgers.lock().expect("ledger lock");
            (c.done(&ledgers), c.read_to_end(&ledgers))
        };
        if !own_done && read_to_end {
            // Everything is read: land what is open now instead of waiting for it to age,
            // and commit what waits for its table.
            for buffer in self.buffers.take_all() {
                self.land(buffer, None);
            }
            self.start_table_commits(true);
        }
        let done = own_done && self.group_caught_up(source);
        let Some(c) = &mut self.catch_up else { return };
        if done {
            tracing::info!("caught up: every owned partition is landed and committed to its end, and the group's other partitions are committed to theirs");
            self.shutdown.cancel();
        } else if c.lake_gave_out(self.metrics.lake_up.get() == 1) {
            tracing::error!(patience = ?c.lake_patience, "the lake has been down too long; stopping without committing what did not land");
            self.shutdown.cancel();
        }
        c.report(self.summary.records_consumed, self.summary.files_landed);
    }

    /// Whether the group has committed every partition this worker does not own to where it
    /// ended when first seen (read every few seconds). A partition left behind by an owner
    /// that does not move it, or by none, makes this worker rejoin the group, so that it is
    /// assigned again.
    fn group_caught_up(&mut self, source: &KafkaSource) -> bool {
        let Some(c) = &mut self.catch_up else {
            return false;
        };
        if !c.group_check_due(Instant::now()) {
            return false;
        }
        let topics = c.topics.clone();
        let Some(all) = self.partitions.get(source, &topics) else {
            return false;
        };
        let Some(c) = &mut self.catch_up else {
            return false;
        };
        let others: Vec<_> = all.into_iter().filter(|tp| !c.owns(tp)).collect();
        let positions = match tokio::task::block_in_place(|| source.group_positions(&others)) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the group's other partitions; the run goes on");
                return false;
            }
        };
        match c.judge_elsewhere(&positions, Instant::now()) {
            GroupVerdict::Done => true,
            GroupVerdict::Wait => false,
            GroupVerdict::Rejoin => {
                tracing::warn!("a partition of the topics stays behind its end with no commits; rejoining the group so that it is assigned");
                if let Err(e) = source.rejoin() {
                    tracing::warn!(error = %e, "cannot rejoin the group");
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    fn pos(p: i32, committed: Option<i64>, low: i64, high: i64) -> GroupPosition {
        GroupPosition {
            tp: tp(p),
            committed,
            low,
            high,
        }
    }

    #[test]
    fn other_partitions_must_be_committed_to_where_they_ended_when_first_seen() {
        let mut c = CatchUp::new(Duration::from_secs(60), vec!["t".into()]);
        let t0 = Instant::now();
        // Partition 0 is at its end; partition 1 is behind and its owner commits.
        let v = c.judge_elsewhere(&[pos(0, Some(10), 0, 10), pos(1, Some(3), 0, 10)], t0);
        assert_eq!(v, GroupVerdict::Wait);
        let t1 = t0 + Duration::from_secs(8);
        let v = c.judge_elsewhere(&[pos(0, Some(10), 0, 10), pos(1, Some(7), 0, 12)], t1);
        assert_eq!(v, GroupVerdict::Wait, "moving: its owner works");
        // The end is where the partition was first seen, not where it grew to since.
        let t2 = t1 + Duration::from_secs(1);
        let v = c.judge_elsewhere(&[pos(0, Some(10), 0, 15), pos(1, Some(10), 0, 20)], t2);
        assert_eq!(v, GroupVerdict::Done);
    }

    #[test]
    fn a_partition_that_stays_behind_unmoved_asks_for_a_rejoin_less_often_each_time() {
        let mut c = CatchUp::new(Duration::from_secs(60), vec!["t".into()]);
        let t0 = Instant::now();
        // Never committed, records from 5 on: behind, owned by nobody.
        let behind = [pos(2, None, 5, 9)];
        assert_eq!(c.judge_elsewhere(&behind, t0), GroupVerdict::Wait);
        let t1 = t0 + FIRST_STALL - Duration::from_millis(1);
        assert_eq!(c.judge_elsewhere(&behind, t1), GroupVerdict::Wait);
        let t2 = t0 + FIRST_STALL;
        assert_eq!(c.judge_elsewhere(&behind, t2), GroupVerdict::Rejoin);
        // The next rejoin waits twice as long.
        let t3 = t2 + FIRST_STALL;
        assert_eq!(c.judge_elsewhere(&behind, t3), GroupVerdict::Wait);
        let t4 = t2 + FIRST_STALL * 2;
        assert_eq!(c.judge_elsewhere(&behind, t4), GroupVerdict::Rejoin);
        // An empty partition never committed is at its end.
        assert_eq!(
            c.judge_elsewhere(&[pos(3, None, 4, 4)], t4),
            GroupVerdict::Done
        );
    }
}
