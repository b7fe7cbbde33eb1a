//! A reader of offset ranges that never joins the group and never commits: `sluice audit`
//! re-reads the source with it, and the group's progress stays exactly as the workers left it.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sluice_config::SourceSettings;
use sluice_core::{Record, TopicPartition};

use crate::received::{to_record, TopicNames};
use crate::{client_config, SourceError};

const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Offsets `[from, to)` of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetRange {
    pub tp: TopicPartition,
    pub from: i64,
    pub to: i64,
}

pub struct RangeReader {
    consumer: BaseConsumer,
}

impl RangeReader {
    /// A consumer with the pipeline's connection settings (TLS, SASL, ...) under a group id
    /// of its own, so that even a stray commit could not move the pipeline's offsets.
    pub fn connect(settings: &SourceSettings) -> Result<Self, SourceError> {
        let mut cfg = client_config(settings);
        cfg.set(
            "group.id",
            format!("{}-audit-{}", settings.group_id, std::process::id()),
        );
        cfg.remove("statistics.interval.ms");
        let consumer: BaseConsumer = cfg.create().map_err(SourceError::Create)?;
        Ok(Self { consumer })
    }

    /// Every partition of `topics`, with its low and high watermarks.
    pub fn watermarks(&self, topics: &[String]) -> Result<Vec<OffsetRange>, SourceError> {
        let mut out = Vec::new();
        for topic in topics {
            let metadata = self.consumer.fetch_metadata(Some(topic), BROKER_TIMEOUT)?;
            for t in metadata.topics() {
                for p in t.partitions() {
                    let (low, high) =
                        self.consumer
                            .fetch_watermarks(t.name(), p.id(), BROKER_TIMEOUT)?;
                    out.push(OffsetRange {
                        tp: TopicPartition::new(t.name(), p.id()),
                        from: low,
                        to: high,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.tp.cmp(&b.tp));
        Ok(out)
    }

    /// The first offset of `tp` whose timestamp is at or after `ms`, or its high watermark
    /// when there is none.
    pub fn offset_for_time(&self, tp: &TopicPartition, ms: i64) -> Result<i64, SourceError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(ms))?;
        let found = self.consumer.offsets_for_times(tpl, BROKER_TIMEOUT)?;
        match found
            .find_partition(&tp.topic, tp.partition)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(o)) => Ok(o),
            _ => Ok(self
                .consumer
                .fetch_watermarks(&tp.topic, tp.partition, BROKER_TIMEOUT)?
                .1),
        }
    }

    /// Calls `each` with every record of `ranges`, in offset order per partition, and
    /// `progress` with the count read so far about once a second. A partition whose records
    /// stop arriving for `idle` before its range is read fails the read: an audit must not
    /// pass over records it never saw.
    pub fn read(
        &self,
        ranges: &[OffsetRange],
        idle: Duration,
        mut each: impl FnMut(Record),
        mut progress: impl FnMut(u64),
    ) -> Result<(), SourceError> {
        let mut tpl = TopicPartitionList::new();
        let mut left: std::collections::BTreeMap<TopicPartition, i64> = Default::default();
        for r in ranges.iter().filter(|r| r.to > r.from) {
            tpl.add_partition_offset(&r.tp.topic, r.tp.partition, Offset::Offset(r.from))?;
            left.insert(r.tp.clone(), r.to);
        }
        if left.is_empty() {
            return Ok(());
        }
        self.consumer.assign(&tpl)?;
        let (mut read, mut last_record, mut last_report) = (0u64, Instant::now(), Instant::now());
        let mut names = TopicNames::default();
        while !left.is_empty() {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(msg)) => {
                    last_record = Instant::now();
                    let record = to_record(msg, &mut names);
                    let tp = TopicPartition::new(record.topic.clone(), record.partition);
                    let Some(&to) = left.get(&tp) else { continue };
                    if record.offset >= to {
                        left.remove(&tp);
                        continue;
                    }
                    let done = record.offset + 1 >= to;
                    each(record);
                    read += 1;
                    if done {
                        left.remove(&tp);
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                // Transaction markers and compacted-away records take offsets no record
                // arrives with: a partition whose fetch position reached its end is done.
                None if self.reached_ends(&mut left)? => {}
                None if last_record.elapsed() > idle => {
                    let (tp, to) = left.iter().next().expect("a partition is left");
                    return Err(SourceError::Stalled {
                        tp: tp.clone(),
                        to: *to,
                        idle,
                    });
                }
                None => {}
            }
            if last_report.elapsed() >= Duration::from_secs(1) {
                progress(read);
                last_report = Instant::now();
            }
        }
        progress(read);
        Ok(())
    }

    /// Drops from `left` the partitions whose fetch position is at or past their end; whether
    /// any was dropped.
    fn reached_ends(
        &self,
        left: &mut std::collections::BTreeMap<TopicPartition, i64>,
    ) -> Result<bool, SourceError> {
        let positions = self.consumer.position()?;
        let before = left.len();
        left.retain(|tp, to| {
            !matches!(
                positions.find_partition(&tp.topic, tp.partition).map(|e| e.offset()),
                Some(Offset::Offset(p)) if p >= *to
            )
        });
        Ok(left.len() < before)
    }
}
