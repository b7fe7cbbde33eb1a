//! Which offset of a partition may be committed.
//!
//! Records of one partition interleave across many open buffers (one per signal and window),
//! so offsets cannot be committed in arrival order. Each open buffer *holds* the offset of its
//! first record until its file has landed; the committable offset of a partition is the lowest
//! held offset, or one past the last consumed record when nothing is held.

use std::collections::BTreeMap;

use crate::TopicPartition;

#[derive(Debug, Default, Clone)]
pub struct OffsetLedger {
    /// One past the highest offset consumed so far.
    next: Option<i64>,
    /// First offsets of open (or landing) buffers, with how many buffers start there.
    held: BTreeMap<i64, usize>,
    committed: Option<i64>,
    /// When commits wait for something else to be written first (window markers write each
    /// partition's progress before its offsets are committed): the highest offset allowed.
    cap: Option<i64>,
    gated: bool,
    /// Which ownership of the partition this ledger belongs to (see `PartitionLedgers`).
    generation: u64,
}

impl OffsetLedger {
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A record at `offset` was consumed (whether it is buffered, filtered out or dead-lettered).
    pub fn consumed(&mut self, offset: i64) {
        let next = offset + 1;
        if self.next.is_none_or(|n| next > n) {
            self.next = Some(next);
        }
    }

    /// A buffer now holds records starting at `offset`: nothing from there on may be committed.
    pub fn hold(&mut self, offset: i64) {
        *self.held.entry(offset).or_default() += 1;
    }

    /// The buffer that started at `offset` has landed.
    pub fn release(&mut self, offset: i64) {
        if let Some(n) = self.held.get_mut(&offset) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(&offset);
            }
        }
    }

    /// The offset to commit: the first record not yet inside a landed file.
    pub fn committable(&self) -> Option<i64> {
        match self.held.keys().next() {
            Some(&lowest) => Some(lowest),
            None => self.next,
        }
    }

    /// The committable offset (no further than the cap of a gated ledger), if it moved past
    /// what was last committed.
    pub fn uncommitted(&self) -> Option<i64> {
        let mut c = self.committable()?;
        if self.gated {
            c = c.min(self.cap?);
        }
        if self.committed.is_none_or(|done| c > done) {
            Some(c)
        } else {
            None
        }
    }

    pub fn mark_committed(&mut self, offset: i64) {
        self.committed = Some(offset);
    }

    /// The offset last committed for this ownership, if any.
    pub fn committed(&self) -> Option<i64> {
        self.committed
    }

    /// Commits of a gated ledger may go up to `offset` now.
    pub fn allow_commits_to(&mut self, offset: i64) {
        self.cap = self.cap.max(Some(offset));
    }

    /// The highest offset consumed so far, if any.
    pub fn last_consumed(&self) -> Option<i64> {
        self.next.map(|n| n - 1)
    }

    pub fn held_buffers(&self) -> usize {
        self.held.values().sum()
    }
}

/// One ledger per assigned partition.
///
/// Each ledger carries a generation, new every time the partition is (re)assigned, so that a
/// landing that started before a revocation cannot release a hold of the next ownership (which
/// may re-read the same records and hold the very same first offset).
#[derive(Debug, Default)]
pub struct PartitionLedgers {
    /// foldhash: looked up twice per record, where SipHash showed in profiles.
    ledgers: foldhash::HashMap<TopicPartition, OffsetLedger>,
    generations: u64,
    gated: bool,
}

impl PartitionLedgers {
    /// Ledgers whose commits wait for `OffsetLedger::allow_commits_to`.
    pub fn gated() -> Self {
        Self {
            gated: true,
            ..Self::default()
        }
    }

    pub fn get_mut(&mut self, tp: &TopicPartition) -> &mut OffsetLedger {
        // Looked up before the entry API, which would clone the key (a String) per record.
        if self.ledgers.contains_key(tp) {
            return self.ledgers.get_mut(tp).expect("just found");
        }
        let (generations, gated) = (&mut self.generations, self.gated);
        self.ledgers.entry(tp.clone()).or_insert_with(|| {
            *generations += 1;
            OffsetLedger {
                generation: *generations,
                gated,
                ..OffsetLedger::default()
            }
        })
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<&OffsetLedger> {
        self.ledgers.get(tp)
    }

    /// Releases a landed buffer's hold, if the partition is still owned by the generation that
    /// opened the buffer (it may have been revoked, and even reassigned, while the file landed).
    pub fn release(&mut self, tp: &TopicPartition, generation: u64, first_offset: i64) {
        if let Some(l) = self
            .ledgers
            .get_mut(tp)
            .filter(|l| l.generation == generation)
        {
            l.release(first_offset);
        }
    }

    /// Lets a gated ledger commit up to `offset`, if the partition is still owned by the
    /// generation this was worked out for.
    pub fn allow_commits_to(&mut self, tp: &TopicPartition, generation: u64, offset: i64) {
        if let Some(l) = self
            .ledgers
            .get_mut(tp)
            .filter(|l| l.generation == generation)
        {
            l.allow_commits_to(offset);
        }
    }

    pub fn remove(&mut self, tp: &TopicPartition) {
        self.ledgers.remove(tp);
    }

    /// Partitions whose committable offset advanced since their last commit.
    pub fn uncommitted(&self) -> Vec<(TopicPartition, i64)> {
        let mut out: Vec<_> = self
            .ledgers
            .iter()
            .filter_map(|(tp, l)| l.uncommitted().map(|o| (tp.clone(), o)))
            .collect();
        out.sort();
        out
    }

    pub fn mark_committed(&mut self, commits: &[(TopicPartition, i64)]) {
        for (tp, off) in commits {
            if let Some(l) = self.ledgers.get_mut(tp) {
                l.mark_committed(*off);
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&TopicPartition, &OffsetLedger)> {
        self.ledgers.iter()
    }
}

/// The offset ranges of one (signal, window, partition) that are already inside landed files.
///
/// A landed file holds every record of its key between its first and last offset that is not
/// in another landed file, so a replayed record is already in the lake exactly when a range
/// covers it: skipping those keeps replays after a crash or rebalance free of duplicates.
#[derive(Debug, Default, Clone)]
pub struct LandedRanges {
    /// Sorted by first offset.
    ranges: Vec<(i64, i64)>,
}

impl LandedRanges {
    pub fn insert(&mut self, first: i64, last: i64) {
        let at = self.ranges.partition_point(|(f, _)| *f < first);
        self.ranges.insert(at, (first, last));
    }

    pub fn covers(&self, offset: i64) -> bool {
        let at = self.ranges.partition_point(|(f, _)| *f <= offset);
        self.ranges[..at].iter().rev().any(|(_, l)| *l >= offset)
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashMap};

    #[test]
    fn gated_ledgers_commit_no_further_than_allowed() {
        let tp = TopicPartition::new("t", 0);
        let mut ledgers = PartitionLedgers::gated();
        let l = ledgers.get_mut(&tp);
        l.consumed(0);
        l.consumed(1);
        l.consumed(2);
        assert_eq!(l.committable(), Some(3));
        assert_eq!(l.uncommitted(), None, "nothing allowed yet");
        l.allow_commits_to(2);
        assert_eq!(l.uncommitted(), Some(2));
        l.allow_commits_to(1);
        assert_eq!(l.uncommitted(), Some(2), "the cap never moves back");
        l.allow_commits_to(9);
        assert_eq!(l.uncommitted(), Some(3), "nor past what has landed");
        assert_eq!(l.last_consumed(), Some(2));
        let mut free = PartitionLedgers::default();
        free.get_mut(&tp).consumed(0);
        assert_eq!(free.uncommitted(), vec![(tp, 1)]);
    }

    #[test]
    fn landed_ranges_cover_exactly_their_offsets() {
        let mut r = LandedRanges::default();
        assert!(!r.covers(0));
        r.insert(25, 30);
        r.insert(10, 20);
        for o in [10, 15, 20, 25, 30] {
            assert!(r.covers(o), "{o}");
        }
        for o in [9, 21, 24, 31] {
            assert!(!r.covers(o), "{o}");
        }
    }

    #[test]
    fn commits_up_to_the_lowest_open_buffer() {
        let mut l = OffsetLedger::default();
        assert_eq!(l.committable(), None);
        l.consumed(0);
        l.hold(0); // buffer A starts at 0
        l.consumed(1);
        l.hold(1); // buffer B starts at 1
        l.consumed(2); // appended to A
        assert_eq!(l.committable(), Some(0));
        l.release(1); // B landed, A still open
        assert_eq!(l.committable(), Some(0));
        l.release(0);
        assert_eq!(l.committable(), Some(3));
        l.mark_committed(3);
        assert_eq!(l.uncommitted(), None);
    }

    #[test]
    fn a_landing_from_an_earlier_ownership_releases_nothing() {
        let tp = TopicPartition::new("t", 0);
        let mut ls = PartitionLedgers::default();
        let old = ls.get_mut(&tp).generation();
        ls.get_mut(&tp).hold(5);
        ls.remove(&tp); // revoked while the buffer starting at 5 was landing
        let new = ls.get_mut(&tp);
        new.consumed(5);
        new.hold(5); // reassigned: the same records are read again
        let new = new.generation();
        assert_ne!(old, new);
        ls.release(&tp, old, 5);
        assert_eq!(ls.get(&tp).unwrap().committable(), Some(5));
        ls.release(&tp, new, 5);
        assert_eq!(ls.get(&tp).unwrap().committable(), Some(6));
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// Consume the next record into buffer `key` (or filter it out when `None`).
        Consume(Option<u8>),
        /// Land buffer `key` if it is open.
        Land(u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => proptest::option::weighted(0.9, 0u8..6).prop_map(Step::Consume),
            1 => (0u8..6).prop_map(Step::Land),
        ]
    }

    proptest! {
        /// Drive the ledger the way the pipeline does and check the rule against a model that
        /// knows exactly which records have landed: never commit past an unlanded record.
        #[test]
        fn never_commits_past_an_unlanded_record(steps in proptest::collection::vec(step(), 1..300)) {
            let mut ledger = OffsetLedger::default();
            let mut open: HashMap<u8, Vec<i64>> = HashMap::new();
            let mut unlanded: BTreeSet<i64> = BTreeSet::new();
            let mut next = 0i64;
            for s in steps {
                match s {
                    Step::Consume(key) => {
                        let offset = next;
                        next += 1;
                        ledger.consumed(offset);
                        if let Some(k) = key {
                            let buf = open.entry(k).or_default();
                            if buf.is_empty() {
                                ledger.hold(offset);
                            }
                            buf.push(offset);
                            unlanded.insert(offset);
                        }
                    }
                    Step::Land(k) => {
                        if let Some(buf) = open.remove(&k) {
                            ledger.release(buf[0]);
                            for o in buf {
                                unlanded.remove(&o);
                            }
                        }
                    }
                }
                let c = ledger.committable();
                if let Some(&first_unlanded) = unlanded.iter().next() {
                    prop_assert!(c.unwrap() <= first_unlanded);
                } else if next > 0 {
                    // Nothing pending: everything consumed may be committed.
                    prop_assert_eq!(c, Some(next));
                }
            }
            for (_, buf) in open.drain() {
                ledger.release(buf[0]);
            }
            if next > 0 {
                prop_assert_eq!(ledger.committable(), Some(next));
            }
        }
    }
}
