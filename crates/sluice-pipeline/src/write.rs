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

/// The slowest upload a write attempt is given time for, beyond `sink.write_timeout_secs`:
/// a 64 MiB file gets 4 s more. Links slower than this need a longer `write_timeout_secs`.
const UPLOAD_FLOOR_BYTES_PER_SEC: u64 = 16 << 20;

/// How long one write attempt may take: the configured timeout plus the time its bytes need
/// at the floor rate, never more than for the largest file a buffer can make, so that a
/// takeover's grace (`longest` plus a margin) outlasts every attempt begun before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WriteTimeouts {
    base: Duration,
    largest_file: u64,
}

impl WriteTimeouts {
    /// `largest_buffer`: the most raw bytes a buffer holds when it lands; an encoded file is
    /// allowed twice that.
    pub(crate) fn new(base: Duration, largest_buffer: u64) -> Self {
        Self {
            base,
            largest_file: largest_buffer.saturating_mul(2),
        }
    }

    pub(crate) fn for_bytes(&self, bytes: u64) -> Duration {
        let bytes = bytes.min(self.largest_file);
        self.base + Duration::from_millis(bytes.saturating_mul(1000) / UPLOAD_FLOOR_BYTES_PER_SEC)
    }

    /// `sink.write_timeout_secs`: enough for small writes (a table commit, a claim).
    pub(crate) fn base(&self) -> Duration {
        self.base
    }

    pub(crate) fn longest(&self) -> Duration {
        self.for_bytes(self.largest_file)
    }
}

/// Fault injection for the paused-owner test: `SLUICE_FAULT_PAUSE_BEFORE_FIRST_WRITE_MS`
/// makes the first write attempt of the process wait that long between its lease check and
/// its write, saying so at warn, as a GC pause or a stalled VM would (unnoticed). Read once.
async fn injected_pause(path: &str) {
    static PAUSE: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    static USED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let pause = PAUSE.get_or_init(|| {
        std::env::var("SLUICE_FAULT_PAUSE_BEFORE_FIRST_WRITE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
    });
    if let Some(pause) = *pause {
        if !USED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            tracing::warn!(
                path,
                ?pause,
                "fault injection: pausing between the lease check and the write"
            );
            tokio::time::sleep(pause).await;
        }
    }
}

/// What a landing checks before each attempt, and how long an attempt may take.
pub(crate) struct WriteGuard<'a> {
    pub(crate) lake: &'a Lake,
    pub(crate) metrics: &'a Metrics,
    pub(crate) shutdown: &'a CancellationToken,
    pub(crate) lease: &'a Lease,
    /// The lake epoch this worker holds for `tp`, when it has claimed one.
    pub(crate) epoch: Option<u64>,
    pub(crate) tp: &'a TopicPartition,
    pub(crate) timeouts: WriteTimeouts,
}

impl WriteGuard<'_> {
    /// Writes `body` at `path` if absent, retrying temporary failures.
    pub(crate) async fn land(&self, path: &str, body: bytes::Bytes) -> Result<Landed, LakeError> {
        let timeout = self.timeouts.for_bytes(body.len() as u64);
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
                injected_pause(path).await;
                // Bounded, so that a takeover's grace outlasts any write begun before it
                // (see `ownership`).
                tokio::time::timeout(timeout, self.lake.land(path, body))
                    .await
                    .unwrap_or_else(|_| {
                        Err(LakeError::TimedOut {
                            op: "write",
                            path: path.to_string(),
                            after: timeout,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_get_time_for_their_bytes_up_to_the_largest_file() {
        let t = WriteTimeouts::new(Duration::from_secs(15), 64 << 20);
        assert_eq!(t.for_bytes(0), Duration::from_secs(15));
        assert_eq!(t.for_bytes(64 << 20), Duration::from_secs(19));
        assert_eq!(t.longest(), Duration::from_secs(23));
        // A file past the bound gets no more than the grace allows for.
        assert_eq!(t.for_bytes(1 << 40), t.longest());
    }
}
