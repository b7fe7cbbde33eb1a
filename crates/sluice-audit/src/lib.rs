//! `sluice audit`: proves, from the source and the lake alone, that every record is in the
//! lake once. It re-reads the pipeline's topics with a reader that never joins the group or
//! commits, routes each record as the workers do, lists the lake, and reports per partition
//! the records found once, missing, or more than once (with the files that hold them), and
//! the files no record explains. It writes nothing unless asked to repair, and then removes
//! only files whose every record is also in a file that landed before them.

mod bounds;
mod lake_scan;
mod report;
mod tally;

use std::time::Duration;

use sluice_config::ValidatedPipeline;
use sluice_core::PathValues;
use sluice_fold::{Routed, Router};
use sluice_kafka::{OffsetRange, RangeReader};
use sluice_lake::Lake;

pub use bounds::{At, Bound};
pub use report::Report;
use tally::{Expect, Tally};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("Delta tables are not audited: their commits carry each partition's offsets (`sluice inspect <table> --pipeline <file>` shows them)")]
    Table,
    #[error("cannot open the lake: {0}")]
    LakeOpen(#[source] sluice_lake::LakeError),
    #[error("cannot read the lake: {0}")]
    Lake(#[from] sluice_lake::LakeError),
    #[error("cannot read the source: {0}")]
    Source(#[from] sluice_kafka::SourceError),
    #[error("{0}")]
    Bound(String),
}

#[derive(Debug, Clone, Default)]
pub struct AuditOptions {
    /// Where the audit starts (default: each partition's first offset).
    pub from: Vec<Bound>,
    /// Where it stops, exclusive (default: each partition's end when the audit starts).
    pub to: Vec<Bound>,
    /// Remove files all of whose records are also in files that landed before them.
    pub repair: bool,
    /// Print a progress line on stderr while reading the source.
    pub progress: bool,
}

/// Longest wait for the next record before a partition's range counts as unreadable.
const SOURCE_IDLE: Duration = Duration::from_secs(30);

pub async fn audit(p: &ValidatedPipeline, options: &AuditOptions) -> Result<Report, AuditError> {
    if p.sink.table.is_some() {
        return Err(AuditError::Table);
    }
    let lake = Lake::open(&p.sink.destination)
        .await
        .map_err(AuditError::LakeOpen)?;
    let (source, topics) = (p.source.clone(), p.source.topics.clone());
    let (from, to, progress) = (options.from.clone(), options.to.clone(), options.progress);
    let mut router = Router::new(p);
    let path = p.sink.path.clone();
    let ext = p.sink.encoding.options.extension();
    // The Kafka client blocks: the source is read on a thread of its own.
    let mut tally = tokio::task::spawn_blocking(move || -> Result<Tally, AuditError> {
        let reader = RangeReader::connect(&source)?;
        let ranges = bounds::resolve(&reader, reader.watermarks(&topics)?, &from, &to)?;
        let total: i64 = ranges.iter().map(|r| r.to - r.from).sum();
        let mut tally = Tally::default();
        for r in &ranges {
            tally.add_partition(r.tp.clone(), r.from, r.to);
        }
        let now = chrono::Utc::now().timestamp_millis();
        let mut expect_of =
            |record: &sluice_core::Record, tally: &mut Tally| match router.route(record, now) {
                Routed::Data { signal, window, .. } => {
                    let dir = path.directory(&PathValues {
                        signal: &signal,
                        window,
                        topic: &record.topic,
                        partition: record.partition,
                        first_offset: 0,
                        last_offset: 0,
                        ext: &ext,
                    });
                    Expect::Data(tally.key(&dir))
                }
                Routed::Skipped => Expect::Filtered,
                Routed::Dead(_) => Expect::Dead,
            };
        read_source(&reader, &ranges, total, progress, &mut |record| {
            let expect = expect_of(&record, &mut tally);
            let tp = sluice_core::TopicPartition::new(record.topic, record.partition);
            tally.add_record(&tp, record.offset, expect);
        })?;
        Ok(tally)
    })
    .await
    .expect("the source reader does not panic")?;
    lake_scan::scan(
        &lake,
        &p.source.topics,
        &p.sink.dead_letter_path,
        &mut tally,
    )
    .await?;
    let repaired = if options.repair {
        let doomed = tally.plan_repair();
        for path in &doomed {
            lake.delete(path).await?;
        }
        doomed
    } else {
        Vec::new()
    };
    let mut report = tally.report();
    report.repaired = repaired;
    Ok(report)
}

fn read_source(
    reader: &RangeReader,
    ranges: &[OffsetRange],
    total: i64,
    progress: bool,
    each: &mut dyn FnMut(sluice_core::Record),
) -> Result<(), AuditError> {
    let started = std::time::Instant::now();
    reader.read(ranges, SOURCE_IDLE, each, |read| {
        if progress && total > 0 {
            let rate = read as f64 / started.elapsed().as_secs_f64().max(0.001);
            eprint!(
                "\raudit: read {read} of {total} records ({:.0} %, {:.0} records/s)   ",
                read as f64 * 100.0 / total as f64,
                rate
            );
        }
    })?;
    if progress && total > 0 {
        eprintln!();
    }
    Ok(())
}
