//! One fenced, bounded, retried write of a landing's file: what every file of a partition
//! goes through, data and dead letters alike.

use std::time::Duration;

use sluice_core::{PathTemplate, PathValues, SignalName, TopicPartition, Window};
use sluice_format::{Codec, FileFormat};
use sluice_kafka::Lease;
use sluice_lake::{Lake, LakeError, Landed};
use sluice_telemetry::Metrics;
use tokio_util::sync::CancellationToken;

use crate::with_storage_retries;

/// What a landing checks before each attempt, and how long an attempt may take.
pub(crate) struct WriteGuard<'a> {
    pub(crate) lake: &'a Lake,
    pub(crate) metrics: &'a Metrics,
    pub(crate) shutdown: &'a CancellationToken,
    pub(crate) lease: &'a Lease,
    /// The lake epoch this worker holds for `tp`, when it has claimed one.
    pub(crate) epoch: Option<u64>,
    pub(crate) tp: &'a TopicPartition,
    pub(crate) write_timeout: Duration,
}

impl WriteGuard<'_> {
    /// Writes `body` at `path` if absent, retrying temporary failures.
    pub(crate) async fn land(&self, path: &str, body: bytes::Bytes) -> Result<Landed, LakeError> {
        with_storage_retries(self.metrics, "write", Some(self.shutdown), || {
            let body = body.clone();
            async move {
                // Checked before every attempt: a worker that lost its assignment while the
                // lake was slow must not land what the new owner writes.
                if self.lease.lost() {
                    return Err(LakeError::AssignmentLost);
                }
                if let Some(epoch) = self.epoch {
                    if self
                        .lake
                        .superseded(&self.tp.topic, self.tp.partition, epoch)
                        .await?
                    {
                        return Err(LakeError::Fenced);
                    }
                }
                // Bounded, so that a takeover's grace outlasts any write begun before it
                // (see `ownership`).
                tokio::time::timeout(self.write_timeout, self.lake.land(path, body))
                    .await
                    .unwrap_or_else(|_| {
                        Err(LakeError::TimedOut {
                            op: "write",
                            path: path.to_string(),
                            after: self.write_timeout,
                        })
                    })
            }
        })
        .await
    }
}

/// Where the records a format refused are dead-lettered: one file per record, named by its
/// offset alone, so every replay names it alike.
pub(crate) struct Refusals {
    pub(crate) template: PathTemplate,
    /// The day of the data window the records were routed to.
    pub(crate) window: Window,
}

impl Refusals {
    pub(crate) fn path(&self, tp: &TopicPartition, offset: i64) -> String {
        self.template.render(&PathValues {
            signal: &SignalName::dead_letter(),
            window: self.window,
            topic: &tp.topic,
            partition: tp.partition,
            first_offset: offset,
            last_offset: offset,
            ext: &FileFormat::Ndjson.extension(Codec::None),
        })
    }
}
