//! The run loop: Kafka records are routed to (signal, window, partition) buffers; a buffer
//! that is full, old enough, or pending at shutdown is encoded and landed in the lake; and
//! offsets are committed only up to the first record not yet inside a landed file.
//!
//! This file holds the loop itself and wires the worker's parts, each a type in its own file that
//! owns one concern's state: `backpressure::Backpressure` (bytes held, fetching paused),
//! `waiting::Waiting` (records waiting for the lake), `claims::Claims` (lake claims, fenced
//! partitions), `landings::Landings` (landing tasks and the buffers queued for one, file paths;
//! `encode_budget::EncodeBudget`, encodes bounded by their memory), `schedule::BatchRuns` (batch
//! runs and manifests), `marker_rounds::MarkerRounds` (window-complete marker rounds),
//! `tables::Tables` (Delta table commits), `maintenance::Maintenance` (scheduled compaction),
//! `catch_up::CatchUp` (`--until-caught-up`), `landed_cache::LandedCache` (offsets already landed
//! per key), `inflight::InFlight` (landings per partition). The worker's own `impl` blocks beside
//! them are the wiring: `intake` (one record routed, judged for lateness and buffered), `commits`
//! (offsets up to what landed), `write` (one fenced, bounded write), `refusals` (records a format
//! refuses), `markers` (the lake side of markers), `retries` (storage retries), `ownership`
//! (takeover rules).

mod backpressure;
mod catch_up;
mod claims;
mod commits;
mod encode_budget;
#[cfg(test)]
mod fuzz_tests;
mod inflight;
mod intake;
mod landed_cache;
mod landing;
mod landings;
mod maintenance;
mod marker_rounds;
mod markers;
mod ownership;
mod refusals;
mod retries;
mod schedule;
mod tables;
mod waiting;
mod write;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use claims::release_all;
use inflight::InFlight;
use landing::LandedFile;
use markers::{PartitionProgress, Progress, RoundInput, RoundOutput, Sealer};
use ownership::{Ownership, SharedEpochs};
use retries::with_storage_retries;
use sluice_config::{Encoding, SignalFilter, ValidatedPipeline};
use sluice_core::{
    parse_offset_file_name, Granularity, LandedRanges, PartitionLedgers, PathTemplate, PathValues,
    SignalName, TopicPartition, Window, LATE_PREFIX,
};
use sluice_fold::{Buffer, BufferKey, Buffers, Router, Target};
use sluice_format::{Codec, EncodeOptions, FileFormat};
use sluice_kafka::{KafkaSource, PartitionEvent, SharedLedgers, SourceError};
use sluice_lake::{Claim, Lake, LakeError, Landed};
use sluice_telemetry::Metrics;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use write::{Refusals, WriteGuard};

pub use catch_up::{PartitionEnd, RunMode};
pub use tokio_util::sync::CancellationToken as Shutdown;

/// Files landing at once past which consumption waits while the lake is slow to take them
/// (backpressure).
const MAX_LANDINGS_IN_FLIGHT: usize = 8;
/// Records handled per wake of the run loop, at most: those librdkafka has already fetched
/// are taken together, so the loop's other branches are polled once per batch, not per
/// record (about 120 KiB of typical records; landings and ticks wait at most that long).
const RECORDS_PER_WAKE: usize = 512;
/// How often buffers are checked for age and offsets committed.
const TICK: Duration = Duration::from_millis(500);
/// First wait before retrying a storage operation that failed temporarily.
const INITIAL_STORAGE_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between two attempts at a storage operation that failed temporarily.
const MAX_STORAGE_BACKOFF: Duration = Duration::from_secs(30);
/// How long a revocation waits for the partitions' files that are still landing.
const REVOKE_PATIENCE: Duration = Duration::from_secs(3);
/// How long storage retries go on once shutdown was requested.
const SHUTDOWN_STORAGE_PATIENCE: Duration = Duration::from_secs(10);
/// How long leaving the consumer group may take at shutdown.
const KAFKA_CLOSE_PATIENCE: Duration = Duration::from_secs(10);
/// How long shutdown keeps retrying the last commit.
const FINAL_COMMIT_PATIENCE: Duration = Duration::from_secs(10);
/// Added to the write timeout: how long a worker taking over a partition that its previous
/// owner did not release waits before it reads the lake (see `ownership`).
const TAKEOVER_MARGIN: Duration = Duration::from_secs(5);
/// How long a rebalance waits for the lake to note that a revoked partition was released.
const RELEASE_PATIENCE: Duration = Duration::from_secs(2);
/// How often window-marker rounds write progress and seal windows (and so, with markers, how
/// often offsets can be committed).
const MARKER_ROUND_EVERY: Duration = Duration::from_secs(5);
/// How long the list of all partitions (from the brokers' metadata) is reused.
const PARTITIONS_REFRESH: Duration = Duration::from_secs(60);
/// The signal name dead-letter files are labelled with in metrics and logs.
const DEAD_LETTER: &str = "_dead_letter";

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot land {path} (records {tp} offsets {first}..={last}): {source}")]
    Land {
        path: String,
        tp: TopicPartition,
        first: i64,
        last: i64,
        /// The lake epoch the landing wrote under.
        epoch: Option<u64>,
        #[source]
        source: Box<LakeError>,
    },
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("encoding {path} failed: {detail}")]
    Encode { path: String, detail: String },
    #[error(transparent)]
    Table(Box<sluice_delta::TableError>),
    #[error("the lake did not answer for {0:?} at start (--lake-patience-secs); nothing was read")]
    LakeDownAtStart(Duration),
}

/// What one run did, for the CLI and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub records_consumed: u64,
    pub records_landed: u64,
    pub records_skipped: u64,
    pub records_dead_lettered: u64,
    pub files_landed: u64,
    /// Records, files and bytes landed per signal (`_dead_letter` for dead letters).
    pub signals: std::collections::BTreeMap<String, SignalTotals>,
    /// With `RunMode::UntilCaughtUp`: whether every owned partition was landed and committed
    /// to its end, and where each got to.
    pub caught_up: Option<bool>,
    pub partitions: std::collections::BTreeMap<TopicPartition, PartitionEnd>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SignalTotals {
    pub records: u64,
    pub files: u64,
    pub bytes: u64,
}

/// Runs `pipeline` until `shutdown` is cancelled, then lands every open buffer, commits and
/// leaves the group. Returns an error (without committing past unlanded records) when a file
/// cannot be landed.
pub async fn run(
    pipeline: &ValidatedPipeline,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<RunSummary, PipelineError> {
    run_with(pipeline, metrics, shutdown, RunMode::Continuous).await
}

/// `run`, ending as `mode` says (or when `shutdown` is cancelled).
pub async fn run_with(
    pipeline: &ValidatedPipeline,
    metrics: Metrics,
    shutdown: CancellationToken,
    mode: RunMode,
) -> Result<RunSummary, PipelineError> {
    // A lake that is down at start is waited for, as it is during a run; a batch run waits
    // no longer than its patience, so a Job never hangs on a lake that stays down.
    let opening = with_storage_retries(&metrics, "open", Some(&shutdown), || {
        Lake::open(&pipeline.sink.destination)
    });
    let lake = match mode {
        RunMode::Continuous => opening.await?,
        RunMode::UntilCaughtUp { lake_patience } => tokio::time::timeout(lake_patience, opening)
            .await
            .map_err(|_| PipelineError::LakeDownAtStart(lake_patience))??,
    };
    metrics.lake_up.set(1);
    metrics
        .buffer_budget_bytes
        .set(pipeline.flush.max_buffered_bytes as i64);
    tracing::info!(pipeline = %pipeline.name, lake = lake.describe(), topics = ?pipeline.source.topics, "starting");
    // With markers, offsets are committed only once the progress they need is in the lake.
    let ledgers: SharedLedgers = Arc::new(Mutex::new(match pipeline.window.markers {
        Some(_) => PartitionLedgers::gated(),
        None => PartitionLedgers::default(),
    }));
    let inflight = Arc::new(InFlight::default());
    let epochs: SharedEpochs = Arc::default();
    let before_revoke = {
        let (inflight, epochs, lake) = (inflight.clone(), epochs.clone(), lake.clone());
        Box::new(move |tps: &[TopicPartition]| {
            // The next owner must find these files in the lake, or it would write them again.
            // A lake that does not answer soon is given up on: the group may already have
            // handed the partitions on, and a file landing later would double its records.
            // From here no buffer of these partitions queued to land starts: the wait below
            // covers every landing they will have (the loop drops the queued ones).
            inflight.close(tps);
            let idle = tokio::task::block_in_place(|| inflight.wait_idle(tps, REVOKE_PATIENCE));
            let held: Vec<(TopicPartition, u64)> = {
                let mut epochs = epochs.lock().expect("epochs lock");
                tps.iter()
                    .filter_map(|tp| epochs.remove(tp).map(|e| (tp.clone(), e)))
                    .collect()
            };
            if idle {
                // Nothing of these partitions can land any more: the next owner need not wait.
                tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(release_all(
                        &lake,
                        &held,
                        RELEASE_PATIENCE,
                    ))
                });
            } else {
                inflight.abort(tps);
                tracing::warn!(
                    ?tps,
                    "cancelled landings of revoked partitions; the next owner writes them"
                );
            }
        })
    };
    let source = KafkaSource::connect(
        &pipeline.source,
        ledgers.clone(),
        metrics.clone(),
        before_revoke,
    )?;
    let write_timeouts = write::WriteTimeouts::new(
        pipeline.sink.write_timeout,
        pipeline.flush.max_bytes + pipeline.max_record_bytes,
    );
    // Tells this worker's manifests and claims from those of others in the group.
    let worker_id = format!(
        "{:x}-{:x}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    );
    let mut worker = Worker {
        router: Router::new(pipeline),
        pipeline_name: pipeline.name.clone(),
        catch_up: match mode {
            RunMode::Continuous => None,
            RunMode::UntilCaughtUp { lake_patience } => Some(catch_up::CatchUp::new(
                lake_patience,
                pipeline.source.topics.clone(),
            )),
        },
        batch_runs: schedule::BatchRuns::new(&pipeline.flush, &pipeline.name, &worker_id),
        worker_id,
        landed: Default::default(),
        progress: Default::default(),
        markers: marker_rounds::MarkerRounds::new(pipeline.window.markers.as_ref().map(
            |markers| {
                Sealer {
                    lake: lake.clone(),
                    pipeline: pipeline.name.clone(),
                    path: pipeline.sink.path.clone(),
                    granularity: pipeline.window.granularity,
                    lateness_ms: pipeline.window.allowed_lateness.as_millis() as i64,
                    named_signals: match &pipeline.filter {
                        SignalFilter::Only(names) => names
                            .iter()
                            .map(|n| SignalName::sanitize(n).as_str().to_string())
                            .collect(),
                        SignalFilter::All => Vec::new(),
                    },
                    topics: pipeline.source.topics.clone(),
                    idle_partition: markers.idle_partition,
                    table_path: pipeline.sink.table.as_ref().map(|t| t.path.clone()),
                }
            },
        )),
        partitions: Default::default(),
        lateness: intake::Lateness {
            policy: pipeline.window.late_data,
            allowed_ms: pipeline.window.allowed_lateness.as_millis() as i64,
        },
        backpressure: backpressure::Backpressure::new(pipeline.flush.max_buffered_bytes),
        waiting: Default::default(),
        inflight,
        epochs,
        ownership: Default::default(),
        claims: claims::Claims::new(write_timeouts.longest() + TAKEOVER_MARGIN),
        write_timeouts,
        lease: source.lease(),
        shutdown: shutdown.clone(),
        buffers: Buffers::new(
            pipeline.flush.clone(),
            sluice_fold::Sealer::for_files(&pipeline.sink.encoding.options),
        ),
        landings: landings::Landings::new(&pipeline.sink, pipeline.flush.max_buffered_bytes),
        ledgers,
        lake,
        metrics,
        summary: RunSummary::default(),
        tables: pipeline
            .sink
            .table
            .clone()
            .map(|t| tables::Tables::new(t, pipeline.name.clone(), pipeline.flush.max_age)),
        maintenance: pipeline
            .sink
            .table
            .as_ref()
            .and_then(|t| t.compaction)
            .map(|c| maintenance::Maintenance::new(c, pipeline.window.allowed_lateness)),
        first_partition: pipeline
            .source
            .topics
            .first()
            .map(|t| TopicPartition::new(t.clone(), 0)),
    };
    let result = worker.consume(&source, &shutdown).await;
    if let Some(m) = &mut worker.maintenance {
        m.abort();
    }
    // Land what is buffered even after an error elsewhere: landing is always safe, and
    // committing it saves the next owner from re-reading it.
    let drained = worker.drain().await;
    worker.drain_tables().await;
    worker.final_marker_round(&source).await;
    worker.final_commit(&source).await;
    if let Some(c) = &mut worker.catch_up {
        let ledgers = worker.ledgers.lock().expect("ledger lock");
        worker.summary.caught_up = Some(c.done(&ledgers));
        worker.summary.partitions = c.summary();
    }
    if drained.is_ok() {
        // Every landing has finished: the next owners may start at once.
        let held: Vec<_> = worker.epochs.lock().expect("epochs lock").drain().collect();
        release_all(&worker.lake, &held, SHUTDOWN_STORAGE_PATIENCE).await;
    }
    let summary = std::mem::take(&mut worker.summary);
    // The worker holds the consumer too (its `Lease`): gone first, so closing destroys it.
    drop(worker);
    source.close(KAFKA_CLOSE_PATIENCE).await;
    result.and(drained)?;
    tracing::info!(?summary, "stopped");
    Ok(summary)
}

/// Runs `pipeline` until `stop` holds (checked every 50 ms) or `timeout` passes, then shuts
/// down exactly as on SIGTERM. For the demo, tests and benchmarks.
pub async fn run_until(
    pipeline: &ValidatedPipeline,
    metrics: Metrics,
    timeout: Duration,
    stop: impl Fn(&Metrics) -> bool,
) -> Result<RunSummary, PipelineError> {
    let shutdown = CancellationToken::new();
    let deadline = Instant::now() + timeout;
    let running = run(pipeline, metrics.clone(), shutdown.clone());
    tokio::pin!(running);
    loop {
        tokio::select! {
            result = &mut running => return result,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                if !shutdown.is_cancelled() && (stop(&metrics) || Instant::now() >= deadline) {
                    shutdown.cancel();
                }
            }
        }
    }
}

struct Worker {
    router: Router,
    /// With `--until-caught-up`: the partitions' ends, and whether the run is done.
    catch_up: Option<catch_up::CatchUp>,
    pipeline_name: String,
    /// Tells this worker's manifests from those of others in the group.
    worker_id: String,
    /// Batch runs on a schedule and their manifests.
    batch_runs: schedule::BatchRuns,
    /// For each key seen since its partition was assigned: offsets already in landed files.
    landed: landed_cache::LandedCache,
    /// Per owned partition, how its watermark (the latest window end seen) grew, and for
    /// markers which windows it has files in: a window this far behind has closed.
    progress: foldhash::HashMap<TopicPartition, PartitionProgress>,
    /// Writes window-complete markers (`window.markers`), a round at a time.
    markers: marker_rounds::MarkerRounds,
    /// Every partition of the topics (for markers and catch-up).
    partitions: marker_rounds::PartitionList,
    lateness: intake::Lateness,
    /// Bytes held and whether fetching is paused.
    backpressure: backpressure::Backpressure,
    /// Records waiting for the lake to answer a listing, oldest first.
    waiting: waiting::Waiting,
    inflight: Arc<InFlight>,
    /// Lake epochs held, per partition (see `ownership`).
    epochs: SharedEpochs,
    /// Every partition the group assigned here (and this worker has not been fenced off).
    ownership: foldhash::HashMap<TopicPartition, Ownership>,
    /// Lake claims in flight, fenced partitions, epochs held before.
    claims: claims::Claims,
    write_timeouts: write::WriteTimeouts,
    lease: sluice_kafka::Lease,
    shutdown: CancellationToken,
    buffers: Buffers,
    /// Files landing, and where and how files are written.
    landings: landings::Landings,
    ledgers: SharedLedgers,
    lake: Lake,
    metrics: Metrics,
    summary: RunSummary,
    /// Delta table mode: landed files waiting for their table's commit.
    tables: Option<tables::Tables>,
    /// Compaction on a schedule, by the owner of `first_partition`.
    maintenance: Option<maintenance::Maintenance>,
    first_partition: Option<TopicPartition>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl Worker {
    /// How this worker signs its lease claims and progress.
    fn owner(&self) -> String {
        format!("{} {}", self.pipeline_name, self.worker_id)
    }

    async fn consume(
        &mut self,
        source: &KafkaSource,
        shutdown: &CancellationToken,
    ) -> Result<(), PipelineError> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(RECORDS_PER_WAKE);
        loop {
            self.apply_backpressure(source);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                Some(done) = self.landings.next_done() => {
                    self.on_landed(done)?;
                    if self.all_landed_at_end() {
                        self.markers.hurry();
                        tick.reset_immediately();
                    }
                }
                Some(done) = self.claims.next_done() => self.on_claimed(done)?,
                Some(done) = self.markers.next_done() => {
                    self.on_marker_round(done);
                    if self.all_landed_at_end() {
                        tick.reset_immediately();
                    }
                }
                Some(done) = tables::next_commit(&mut self.tables) => self.on_table_commit(done)?,
                _ = tick.tick() => {
                    // Rebalances happen inside `recv` even when no record follows them.
                    let events = source.take_events();
                    self.on_events(source, events);
                    self.start_ready(source);
                    self.reclaim_fenced(source);
                    for buffer in self.buffers.take_expired(Instant::now()) {
                        self.land(buffer, None);
                    }
                    self.run_schedule();
                    self.start_table_commits(false);
                    self.run_maintenance();
                    self.start_marker_round(source);
                    self.retry_pending().await?;
                    // A failed commit is retried on the next tick.
                    self.commit(source);
                    self.update_gauges();
                    self.check_caught_up(source);
                }
                received = source.next_batch(RECORDS_PER_WAKE, &mut batch) => {
                    // A batch ends at a rebalance: its events come before its records.
                    let events = source.take_events();
                    self.on_events(source, events);
                    if let Err(e) = received {
                        // librdkafka reconnects by itself; say so and keep polling.
                        tracing::warn!(error = %e, "Kafka error while consuming");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    let now = intake::Now::read();
                    for received in batch.drain(..) {
                        self.on_record(received, now).await?;
                    }
                    if self.newly_read_to_end() {
                        tick.reset_immediately();
                    }
                }
            }
        }
    }

    fn run_maintenance(&mut self) {
        let compacts = self
            .first_partition
            .as_ref()
            .is_some_and(|tp| self.ownership.contains_key(tp));
        if let Some(m) = &mut self.maintenance {
            m.tick(compacts, &self.lake, &self.pipeline_name, &self.metrics);
        }
    }

    fn on_events(&mut self, source: &KafkaSource, events: Vec<PartitionEvent>) {
        for event in events {
            self.metrics.rebalances.inc();
            match event {
                PartitionEvent::Assigned(tps) => {
                    self.note_ends(source, &tps);
                    self.own(source, tps)
                }
                PartitionEvent::Revoked(tps) => {
                    for tp in tps {
                        if let Some(c) = &mut self.catch_up {
                            c.rebalanced();
                            // The rebalance callback committed the partition's landed
                            // progress: that is as far as this worker got (a broker round
                            // trip, batch runs only).
                            let committed = tokio::task::block_in_place(|| {
                                source.committed_and_end(&tp).ok().and_then(|(c, ..)| c)
                            });
                            c.revoked(&tp, committed);
                        }
                        let epoch = self.forget(&tp).and_then(|o| o.epoch);
                        self.claims.revoked(tp, epoch);
                    }
                }
            }
        }
    }

    /// With `--until-caught-up`: where newly assigned partitions end (a broker round trip
    /// each). A partition whose end cannot be read is taken to end where it is now.
    fn note_ends(&mut self, source: &KafkaSource, tps: &[TopicPartition]) {
        let Some(c) = &mut self.catch_up else { return };
        c.rebalanced();
        for tp in tps {
            match tokio::task::block_in_place(|| source.committed_and_end(tp)) {
                Ok((committed, low, high)) => c.assigned(tp.clone(), committed, low, high),
                Err(e) => {
                    tracing::warn!(%tp, error = %e, "cannot read where the partition ends; it counts as caught up where its group is");
                    c.assigned(tp.clone(), None, 0, 0);
                }
            }
        }
    }

    fn update_gauges(&self) {
        if let Some(t) = &self.tables {
            self.metrics.table_files_waiting.set(t.waiting() as i64);
        }
        self.metrics.open_buffers.set(self.buffers.len() as i64);
        self.metrics.buffered_bytes.set(self.held_bytes() as i64);
    }
}
