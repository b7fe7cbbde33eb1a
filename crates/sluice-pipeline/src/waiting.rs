//! Records waiting, in order, for the lake to answer a listing (or released by a claim that
//! came through), and the backoff between retries. While any wait, every later record
//! queues behind them, so each partition stays in order.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use sluice_core::{Record, TopicPartition};

use crate::{INITIAL_STORAGE_BACKOFF, MAX_STORAGE_BACKOFF};

pub(crate) struct Waiting {
    records: VecDeque<Record>,
    retry_at: Instant,
    backoff: Duration,
}

impl Default for Waiting {
    fn default() -> Self {
        Self {
            records: VecDeque::new(),
            retry_at: Instant::now(),
            backoff: INITIAL_STORAGE_BACKOFF,
        }
    }
}

impl Waiting {
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Queues a record behind those waiting.
    pub(crate) fn push(&mut self, record: Record) {
        self.records.push_back(record);
    }

    /// The lake could not be listed for `record`: it waits, retried after the backoff.
    pub(crate) fn hold(&mut self, record: Record) {
        self.records.push_back(record);
        self.retry_at = Instant::now() + self.backoff;
    }

    /// Records of a partition whose claim came through go first, in order, retried now.
    pub(crate) fn release(&mut self, records: VecDeque<Record>) {
        for record in records.into_iter().rev() {
            self.records.push_front(record);
        }
        self.retry_at = Instant::now();
    }

    /// Whether records wait and their retry is due.
    pub(crate) fn due(&self) -> bool {
        !self.records.is_empty() && Instant::now() >= self.retry_at
    }

    pub(crate) fn pop(&mut self) -> Option<Record> {
        self.records.pop_front()
    }

    /// The retried `record` failed again: it stays first, and the backoff doubles.
    pub(crate) fn failed_again(&mut self, record: Record) {
        self.records.push_front(record);
        self.backoff = (self.backoff * 2).min(MAX_STORAGE_BACKOFF);
        self.retry_at = Instant::now() + self.backoff;
    }

    /// Every waiting record went through.
    pub(crate) fn drained(&mut self) {
        self.backoff = INITIAL_STORAGE_BACKOFF;
    }

    /// Whether a record of `tp` waits.
    pub(crate) fn holds(&self, tp: &TopicPartition) -> bool {
        self.records
            .iter()
            .any(|r| r.partition == tp.partition && r.topic == tp.topic)
    }

    /// Drops the records of a partition no longer owned.
    pub(crate) fn forget(&mut self, tp: &TopicPartition) {
        self.records
            .retain(|r| r.partition != tp.partition || r.topic != tp.topic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64) -> Record {
        Record {
            topic: "t".into(),
            partition,
            offset,
            key: None,
            headers: Vec::new(),
            payload: Some(b"{}".to_vec()),
            timestamp_ms: None,
        }
    }

    fn offsets(w: &mut Waiting) -> Vec<(i32, i64)> {
        std::iter::from_fn(|| w.pop())
            .map(|r| (r.partition, r.offset))
            .collect()
    }

    /// A record the lake could not list for waits out the backoff, which doubles while the
    /// retry fails and starts over once all went through; released records go first, in order.
    #[test]
    fn waits_in_order_with_a_doubling_backoff() {
        let mut w = Waiting::default();
        assert!(w.is_empty() && !w.due());
        w.hold(record(0, 1));
        w.push(record(0, 2));
        assert!(!w.due(), "not before the backoff");
        assert!(w.holds(&TopicPartition::new("t", 0)));
        assert!(!w.holds(&TopicPartition::new("t", 1)));
        let first = w.pop().unwrap();
        w.failed_again(first);
        assert_eq!(w.backoff, INITIAL_STORAGE_BACKOFF * 2);
        for _ in 0..20 {
            let r = w.pop().unwrap();
            w.failed_again(r);
        }
        assert_eq!(w.backoff, MAX_STORAGE_BACKOFF);
        w.release(VecDeque::from([record(1, 7), record(1, 8)]));
        assert!(w.due(), "released records are retried now");
        w.forget(&TopicPartition::new("t", 3));
        assert_eq!(offsets(&mut w), [(1, 7), (1, 8), (0, 1), (0, 2)]);
        w.drained();
        assert_eq!(w.backoff, INITIAL_STORAGE_BACKOFF);
        w.push(record(0, 3));
        w.push(record(1, 9));
        w.forget(&TopicPartition::new("t", 0));
        assert_eq!(offsets(&mut w), [(1, 9)]);
    }
}
