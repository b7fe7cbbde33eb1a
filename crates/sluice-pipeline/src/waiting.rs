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
