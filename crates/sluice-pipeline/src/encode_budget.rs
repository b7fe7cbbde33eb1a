//! The encode budget: encodes run at once only as far as their memory fits a share of
//! `flush.max_buffered_bytes` (and no more of them than cores). An encode holds, beyond the
//! buffer's lines, what the format builds from them — parsed chunks, Arrow arrays, pages,
//! the output — and that is counted as held memory while it runs, so backpressure sees it.
//! One encode larger than the whole share runs alone.

use std::sync::Arc;

use sluice_format::FileFormat;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// The share of the memory budget encodes may hold at once.
const SHARE_OF_BUDGET: u64 = 4;
/// Permits count KiB, so that a budget of terabytes still fits a semaphore.
const UNIT: u64 = 1024;

/// Memory an encode of `lines` bytes holds beyond the lines (their decompressed copy is
/// counted with the buffer). Measured with a counting allocator on the benchmark's records:
/// Parquet-zstd 4.7 MB over 1 MB of lines, 18 MB over 9.7 MB, 22 MB over 49 MB (row groups
/// bound it); Avro a little less, CSV about as much. NDJSON passes lines through: at most
/// their copy.
pub(crate) fn estimate(format: FileFormat, lines: u64) -> u64 {
    match format {
        FileFormat::Ndjson => lines,
        FileFormat::Parquet | FileFormat::Avro | FileFormat::Csv => {
            lines.saturating_mul(5).min(24 * 1024 * 1024)
        }
    }
}

/// Encodes at once, bounded by count and by estimated bytes. Clones share the budget: each
/// landing task takes one to wait on.
#[derive(Clone)]
pub(crate) struct EncodeBudget {
    count: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    total_units: u32,
}

/// An encode's right to run, released when dropped.
pub(crate) struct EncodePermit {
    _count: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

impl EncodeBudget {
    /// `budget_bytes` is `flush.max_buffered_bytes`; `encodes` the most at once (cores).
    pub(crate) fn new(budget_bytes: u64, encodes: usize) -> Self {
        let total_units = (budget_bytes / SHARE_OF_BUDGET / UNIT).clamp(1, u32::MAX as u64 / 2);
        Self {
            count: Arc::new(Semaphore::new(encodes.max(1))),
            bytes: Arc::new(Semaphore::new(total_units as usize)),
            total_units: total_units as u32,
        }
    }

    /// Estimated bytes the running encodes hold.
    pub(crate) fn in_use(&self) -> u64 {
        u64::from(self.total_units).saturating_sub(self.bytes.available_permits() as u64) * UNIT
    }

    /// Waits until an encode estimated at `bytes` fits (alone, if it is larger than the
    /// whole share). Fails only if the budget was closed.
    pub(crate) async fn acquire(&self, bytes: u64) -> Result<EncodePermit, AcquireError> {
        let count = self.count.clone().acquire_owned().await?;
        let units = bytes.div_ceil(UNIT).clamp(1, u64::from(self.total_units)) as u32;
        let bytes = self.bytes.clone().acquire_many_owned(units).await?;
        Ok(EncodePermit {
            _count: count,
            _bytes: bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[tokio::test]
    async fn encodes_wait_for_room_in_bytes_and_a_large_one_runs_alone() {
        // 64 MiB budget: encodes may hold 16 MiB at once, two at most.
        let budget = EncodeBudget::new(64 * MIB, 2);
        let small = budget.acquire(6 * MIB).await.unwrap();
        assert_eq!(budget.in_use(), 6 * MIB);
        // A second 6 MiB encode fits beside it; a third would be over the count anyway.
        let second = budget.acquire(6 * MIB).await.unwrap();
        assert_eq!(budget.in_use(), 12 * MIB);
        drop(second);
        // 12 MiB does not fit beside 6 MiB: it waits until the first ends.
        let mut waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.acquire(12 * MIB).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(small);
        let big = (&mut waiting).await.unwrap().unwrap();
        assert_eq!(budget.in_use(), 12 * MIB);
        drop(big);
        // Larger than the whole share: it takes all of it, and runs alone.
        let huge = budget.acquire(100 * MIB).await.unwrap();
        assert_eq!(budget.in_use(), 16 * MIB);
        let mut tiny = tokio::spawn({
            let budget = budget.clone();
            async move { budget.acquire(1).await }
        });
        tokio::task::yield_now().await;
        assert!(!tiny.is_finished());
        drop(huge);
        (&mut tiny).await.unwrap().unwrap();
    }

    #[test]
    fn estimates_follow_the_format() {
        assert_eq!(estimate(FileFormat::Ndjson, 10 * MIB), 10 * MIB);
        assert_eq!(estimate(FileFormat::Parquet, MIB), 5 * MIB);
        assert_eq!(estimate(FileFormat::Avro, 64 * MIB), 24 * MIB);
    }
}
