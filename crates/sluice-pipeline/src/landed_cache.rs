//! The landed-ranges cache: for each buffer key seen since its partition was assigned, the
//! offsets already in landed files (read from the lake once), so a replay skips them.
//!
//! Bounded: past its cap, keys without an open buffer are forgotten (the lake stays the
//! truth; a forgotten key is listed again when it comes back). Keys with open buffers stay,
//! and the cap then rises to twice what they hold, so with many open keys (high-cardinality
//! signals) a prune happens once per doubling, not once per new key: the cache holds at most
//! `max(MAX_KEYS, 2 × open buffers)` keys, and open buffers are bounded by the memory budget.

use sluice_core::{LandedRanges, TopicPartition};
use sluice_fold::BufferKey;

/// Keys kept before the first prune.
pub(crate) const MAX_KEYS: usize = 4096;

pub(crate) struct LandedCache {
    ranges: foldhash::HashMap<BufferKey, LandedRanges>,
    cap: usize,
}

impl Default for LandedCache {
    fn default() -> Self {
        Self {
            ranges: Default::default(),
            cap: MAX_KEYS,
        }
    }
}

impl LandedCache {
    pub(crate) fn get(&self, key: &BufferKey) -> Option<&LandedRanges> {
        self.ranges.get(key)
    }

    /// Notes a key's ranges; `open` says which keys have an open buffer (those are kept).
    pub(crate) fn insert(
        &mut self,
        key: BufferKey,
        ranges: LandedRanges,
        open: impl Fn(&BufferKey) -> bool,
    ) {
        if self.ranges.len() >= self.cap {
            self.ranges.retain(|k, _| open(k));
            self.cap = (self.ranges.len() * 2).max(MAX_KEYS);
        }
        self.ranges.insert(key, ranges);
    }

    /// Forgets a partition's keys (it was revoked or fenced).
    pub(crate) fn forget_partition(&mut self, tp: &TopicPartition) {
        self.ranges.retain(|key, _| &key.tp != tp);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ranges.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::{Granularity, SignalName, Window};
    use sluice_fold::Target;

    fn key(i: usize) -> BufferKey {
        BufferKey {
            tp: TopicPartition::new("t", 0),
            target: Target::Signal {
                signal: SignalName::sanitize(&format!("s{i}")),
                window: Window::containing(0, Granularity::Hour),
                late: false,
            },
        }
    }

    #[test]
    fn prunes_keys_without_buffers_and_stays_linear_when_all_are_open() {
        let mut cache = LandedCache::default();
        // Every key open: nothing can be pruned, and prunes must not happen per key (they
        // did: every key visited again for each new key past the first 4,096, quadratic).
        let visits = std::cell::Cell::new(0usize);
        for i in 0..40_000 {
            cache.insert(key(i), LandedRanges::default(), |_| {
                visits.set(visits.get() + 1);
                true
            });
        }
        assert_eq!(cache.len(), 40_000);
        // Each prune visits every key once; doubling caps keep the total under 2 × 40,000.
        assert!(visits.get() < 80_000, "{} visits", visits.get());
        // None open: the first insert past the cap forgets them all.
        let mut n = 40_000;
        while cache.len() >= 40_000 {
            cache.insert(key(n), LandedRanges::default(), |_| false);
            n += 1;
            assert!(n < 200_000, "never pruned");
        }
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&key(0)).is_none() && cache.get(&key(n - 1)).is_some());
    }
}
