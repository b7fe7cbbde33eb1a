//! Intake: one consumed record into its buffer. Routing names its signal and window (or
//! its dead-letter reason), lateness is judged against the partition's watermark, the
//! lake is listed once per new key so a replay skips what already landed, and the ledger
//! notes the offset. Records wait here, in order, while the lake cannot be listed.

use std::borrow::Cow;
use std::time::Instant;

use sluice_config::LateData;
use sluice_core::{Granularity, RecordView, TopicPartition, Window};
use sluice_fold::{dead_letter_line, BufferKey, DeadReason, Routed, Target};
use sluice_kafka::Received;

use crate::markers::PartitionProgress;
use crate::{now_ms, PipelineError, Worker};

/// The clock, read once per batch of records: two clock reads per record showed in profiles,
/// and a batch is handled within a millisecond or so.
#[derive(Clone, Copy)]
pub(crate) struct Now {
    /// Wall clock, ms since the Unix epoch: a record's arrival time.
    pub(crate) ms: i64,
    pub(crate) at: Instant,
}

impl Now {
    pub(crate) fn read() -> Self {
        Self {
            ms: now_ms(),
            at: Instant::now(),
        }
    }
}

/// The late-data policy (`window.late_data`, `window.allowed_lateness`).
#[derive(Clone, Copy)]
pub(crate) struct Lateness {
    pub(crate) policy: LateData,
    /// How far behind its partition's watermark a window's end may be before its records
    /// are late.
    pub(crate) allowed_ms: i64,
}

impl Worker {
    pub(crate) async fn on_record(
        &mut self,
        received: Received<'_>,
        now: Now,
    ) -> Result<(), PipelineError> {
        // Records queue behind one that waits for the lake, so each partition stays in order.
        // Meanwhile fetching is paused but polling goes on, so the group keeps this worker
        // (and its rebalance callbacks run) however long the lake is down.
        if !self.waiting.is_empty() {
            self.waiting.push(received.into_record());
        } else if let Some(back) = self.on_record_routed(received, now).await? {
            tracing::warn!("lake unavailable for a listing; pausing until it answers");
            self.waiting.hold(back);
        }
        for buffer in self.buffers.take_over_budget() {
            self.land(buffer, None);
        }
        Ok(())
    }

    /// Routes and buffers one record. Returns it back when the lake could not be listed for
    /// its key (temporarily): nothing about it was recorded yet, so it can simply be retried.
    async fn on_record_routed(
        &mut self,
        mut received: Received<'_>,
        now: Now,
    ) -> Result<Option<sluice_core::Record>, PipelineError> {
        let tp = TopicPartition::new(received.topic().clone(), received.partition());
        match self.ownership.get_mut(&tp) {
            // Fetched before a revocation: its new owner handles it.
            None => return Ok(None),
            // Fetched before the pause took hold; routed once the claim is in.
            Some(owned) if !owned.ready => {
                owned.waiting.push_back(received.into_record());
                return Ok(None);
            }
            Some(_) => {}
        }
        if self.landings.encoding.options.envelope.is_some() {
            // The envelope line carries the headers.
            received.whole();
        }
        // Offsets arrive in order; one at or behind the last consumed is a second delivery of
        // a record already accounted for (buffered, landed or skipped): dropped, not doubled.
        let last = self
            .ledgers
            .lock()
            .expect("ledger lock")
            .get(&tp)
            .and_then(|l| l.last_consumed());
        if last.is_some_and(|last| received.offset() <= last) {
            tracing::warn!(record = %received.coordinates(), ?last, "a record arrived again behind its partition's position; skipped");
            return Ok(None);
        }
        let arrival = now.ms;
        let routed = self.router.route(&received, arrival);
        let (routed, late) = self.judge_lateness(&tp, received.offset(), routed, now.at);
        let (target, line, dead) = match routed {
            Routed::Data {
                signal,
                window,
                line,
            } => {
                // The envelope keeps what the Avro record needs besides the payload.
                let line = match self.landings.encoding.options.envelope {
                    Some(_) => Cow::Owned(sluice_format::envelope::line(
                        received.timestamp_ms().unwrap_or(arrival),
                        received.offset(),
                        received.kept_headers().expect("whole before routing"),
                        &line,
                    )),
                    None => line,
                };
                let target = Target::Signal {
                    signal,
                    window,
                    late,
                };
                (Some(target), line, None)
            }
            Routed::Skipped => (None, Cow::Borrowed(&[][..]), None),
            Routed::Dead(reason) => {
                // By the record's own timestamp, not arrival: a replay on another day must
                // find the file it landed in before.
                let window = Window::containing(
                    received.timestamp_ms().unwrap_or(arrival),
                    Granularity::Day,
                );
                let line = Cow::Owned(dead_letter_line(received.whole(), &reason));
                (Some(Target::DeadLetter { window }), line, Some(reason))
            }
        };
        let key = target.map(|target| BufferKey {
            tp: tp.clone(),
            target,
        });
        // Whether this record is in a file that already landed: one lookup per record.
        let already_landed = match &key {
            None => false,
            Some(key) => match self.landed.get(key) {
                Some(ranges) => ranges.covers(received.offset()),
                None => match self.landed_ranges(key).await {
                    Ok(ranges) => {
                        let covered = ranges.covers(received.offset());
                        let buffers = &self.buffers;
                        self.landed
                            .insert(key.clone(), ranges, |k| buffers.contains(k));
                        covered
                    }
                    Err(PipelineError::Lake(e)) if e.is_retryable() => {
                        return Ok(Some(received.into_record()))
                    }
                    Err(e) => return Err(e),
                },
            },
        };

        self.metrics.records_consumed.inc();
        self.summary.records_consumed += 1;
        let offset = received.offset();
        if let Some(reason) = &dead {
            tracing::warn!(record = %received.coordinates(), reason = reason.label, detail = %reason.detail, "dead-lettering record");
            self.metrics
                .records_dead_lettered
                .with_label_values(&[reason.label])
                .inc();
            self.summary.records_dead_lettered += 1;
        }
        let Some(key) = key else {
            self.metrics.records_skipped.inc();
            self.summary.records_skipped += 1;
            self.mark_consumed(&tp, offset);
            return Ok(None);
        };
        if already_landed {
            // A replay after a crash or rebalance: this record is already in a landed file
            // (which the previous owner may not have noted in its progress).
            if let (
                Target::Signal {
                    signal,
                    window,
                    late: false,
                },
                Some(p),
            ) = (&key.target, self.progress.get_mut(&tp))
            {
                p.landed_in(*window, signal.as_str());
            }
            self.metrics.records_already_landed.inc();
            self.mark_consumed(&tp, offset);
            return Ok(None);
        }
        let appended = self.buffers.append(key, offset, &line, now.at);
        {
            let mut ledgers = self.ledgers.lock().expect("ledger lock");
            let ledger = ledgers.get_mut(&tp);
            if appended.opened {
                ledger.hold(offset);
            }
            ledger.consumed(offset);
        }
        if let Some(full) = appended.full {
            self.land(full, None);
        }
        Ok(None)
    }

    /// A record that needs no buffer (skipped, or already landed) is done with.
    fn mark_consumed(&self, tp: &TopicPartition, offset: i64) {
        self.ledgers
            .lock()
            .expect("ledger lock")
            .get_mut(tp)
            .consumed(offset);
    }

    /// Retries the records held back while the lake could not be listed, in order.
    pub(crate) async fn retry_pending(&mut self) -> Result<(), PipelineError> {
        if !self.waiting.due() {
            return Ok(());
        }
        let now = Now::read();
        while let Some(record) = self.waiting.pop() {
            if let Some(back) = self.on_record_routed(Received::owned(record), now).await? {
                self.waiting.failed_again(back);
                return Ok(());
            }
        }
        self.waiting.drained();
        Ok(())
    }

    /// Advances the partition's watermark with the record's window and applies the late-data
    /// policy: a record is late when its window's end plus the allowed lateness is behind the
    /// watermark. Returns the record as routed (a dead letter, if late ones go there) and
    /// whether it is to be diverted.
    fn judge_lateness<'r>(
        &mut self,
        tp: &TopicPartition,
        offset: i64,
        routed: Routed<'r>,
        at: Instant,
    ) -> (Routed<'r>, bool) {
        // Appending late records as they come needs no watermark, unless markers do.
        if self.lateness.policy == LateData::Append && self.markers.sealer().is_none() {
            return (routed, false);
        }
        let progress = match self.progress.get_mut(tp) {
            Some(p) => p,
            // Looked up first: cloning the key per record showed in profiles.
            None => self
                .progress
                .entry(tp.clone())
                .or_insert_with(|| PartitionProgress::adopt(None)),
        };
        progress.last_record = at;
        let Routed::Data { window, .. } = &routed else {
            return (routed, false);
        };
        let watermark = progress.history.observe(offset, window.end_ms());
        let late = window.end_ms().saturating_add(self.lateness.allowed_ms) < watermark;
        match self.lateness.policy {
            LateData::DeadLetter if late => (
                Routed::Dead(DeadReason::new(
                    "late",
                    format!("its window {} had closed", window.start().to_rfc3339()),
                )),
                false,
            ),
            LateData::Divert => (routed, late),
            _ => (routed, false),
        }
    }
}
