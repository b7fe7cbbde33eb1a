//! The run loop: Kafka records are routed to (signal, window, partition) buffers; a buffer
//! that is full, old enough, or pending at shutdown is encoded and landed in the lake; and
//! offsets are committed only up to the first record not yet inside a landed file.

mod catch_up;
#[cfg(test)]
mod fuzz_tests;
mod inflight;
mod markers;
mod ownership;
mod refusals;
mod write;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use inflight::InFlight;
use markers::{PartitionProgress, Progress, RoundInput, RoundOutput, Sealer};
use ownership::{Ownership, SharedEpochs};
use sluice_config::{Encoding, LateData, SignalFilter, ValidatedPipeline};
use sluice_core::{
    parse_offset_file_name, Granularity, LandedRanges, PartitionLedgers, PathTemplate, PathValues,
    SignalName, TopicPartition, Window,
};
use sluice_fold::{
    dead_letter_line, Buffer, BufferKey, Buffers, DeadReason, Routed, Router, Target,
};
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

/// Files being encoded or written at once; past this, consumption waits (backpressure).
const MAX_LANDINGS_IN_FLIGHT: usize = 8;
/// How often buffers are checked for age and offsets committed.
const TICK: Duration = Duration::from_millis(500);
/// Where diverted late records land, above the usual layout.
const LATE_PREFIX: &str = "_late/";
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
/// Keys whose landed offset ranges are kept from their listing; past it, those without an
/// open buffer are forgotten (and listed again if they come back), so high-cardinality signals
/// cannot grow the cache without bound.
const MAX_LANDED_KEYS: usize = 4096;
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

/// A landed buffer, reported back to the loop.
struct LandedFile {
    tp: TopicPartition,
    path: String,
    run: Option<i64>,
    generation: u64,
    first_offset: i64,
    /// Records in the file, and records its format refused (dead-lettered instead).
    records: u64,
    refused: u64,
    dead_letter: bool,
    signal: String,
    bytes: u64,
    outcome: Landed,
    /// From taking the buffer out to the file having landed.
    took: Duration,
    /// The window of an on-time signal file (for window markers).
    window: Option<Window>,
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
    // A lake that is down at start is waited for, as it is during a run.
    let lake = with_storage_retries(&metrics, "open", Some(&shutdown), || {
        Lake::open(&pipeline.sink.destination)
    })
    .await?;
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
    let mut worker = Worker {
        router: Router::new(pipeline),
        pipeline_name: pipeline.name.clone(),
        worker_id: format!(
            "{:x}-{:x}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        ),
        catch_up: match mode {
            RunMode::Continuous => None,
            RunMode::UntilCaughtUp { lake_patience } => Some(catch_up::CatchUp::new(lake_patience)),
        },
        schedule: pipeline.flush.schedule.clone(),
        manifest: pipeline.flush.manifest,
        last_run_ms: None,
        runs: Default::default(),
        manifests: JoinSet::new(),
        encode_permits: Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        )),
        landed: Default::default(),
        progress: Default::default(),
        sealer: pipeline.window.markers.as_ref().map(|markers| {
            Arc::new(Sealer {
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
            })
        }),
        marker_round: JoinSet::new(),
        next_marker_round: Instant::now() + MARKER_ROUND_EVERY,
        all_partitions: None,
        late_data: pipeline.window.late_data,
        landing_bytes: 0,
        held_by_task: HashMap::new(),
        paused: false,
        pending: std::collections::VecDeque::new(),
        pending_retry_at: Instant::now(),
        pending_backoff: INITIAL_STORAGE_BACKOFF,
        budget_bytes: pipeline.flush.max_buffered_bytes,
        allowed_lateness_ms: pipeline.window.allowed_lateness.as_millis() as i64,
        inflight,
        epochs,
        ownership: HashMap::new(),
        assignments: 0,
        claims: JoinSet::new(),
        fenced: HashMap::new(),
        own_previous: HashMap::new(),
        write_timeout: pipeline.sink.write_timeout,
        takeover_grace: pipeline.sink.write_timeout + TAKEOVER_MARGIN,
        lease: source.lease(),
        shutdown: shutdown.clone(),
        buffers: Buffers::new(pipeline.flush.clone()),
        landings: JoinSet::new(),
        ledgers,
        lake,
        metrics,
        summary: RunSummary::default(),
        path: pipeline.sink.path.clone(),
        dead_letter_path: pipeline.sink.dead_letter_path.clone(),
        encoding: pipeline.sink.encoding.clone(),
    };
    let result = worker.consume(&source, &shutdown).await;
    // Land what is buffered even after an error elsewhere: landing is always safe, and
    // committing it saves the next owner from re-reading it.
    let drained = worker.drain().await;
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

/// Where scheduled runs' manifests go, under the sink root.
const MANIFEST_DIR: &str = "_manifests";

/// A finished claim: the partition, which assignment claimed it, and the claim with the
/// previous owner's progress (with window markers).
type ClaimDone = (
    TopicPartition,
    u64,
    Result<(Claim, Option<Progress>), LakeError>,
);

/// A scheduled run whose files are landing.
struct RunState {
    pending: usize,
    files: Vec<serde_json::Value>,
}

struct Worker {
    router: Router,
    /// With `--until-caught-up`: the partitions' ends, and whether the run is done.
    catch_up: Option<catch_up::CatchUp>,
    pipeline_name: String,
    /// Tells this worker's manifests from those of others in the group.
    worker_id: String,
    schedule: Option<sluice_config::Schedule>,
    manifest: bool,
    last_run_ms: Option<i64>,
    runs: std::collections::BTreeMap<i64, RunState>,
    manifests: JoinSet<()>,
    /// Encoding is CPU-bound: more encodes at once than cores only multiplies their memory
    /// (parsed chunks, Arrow arrays, output), so landings take a permit to encode.
    encode_permits: Arc<tokio::sync::Semaphore>,
    /// For each key seen since its partition was assigned: offsets already in landed files.
    landed: foldhash::HashMap<BufferKey, LandedRanges>,
    /// Per owned partition, how its watermark (the latest window end seen) grew, and for
    /// markers which windows it has files in: a window this far behind has closed.
    progress: foldhash::HashMap<TopicPartition, PartitionProgress>,
    /// Writes window-complete markers (`window.markers`).
    sealer: Option<Arc<Sealer>>,
    marker_round: JoinSet<(RoundOutput, Option<LakeError>)>,
    next_marker_round: Instant,
    /// Every partition of the topics, and when the brokers were last asked.
    all_partitions: Option<(Instant, Vec<TopicPartition>)>,
    late_data: LateData,
    allowed_lateness_ms: i64,
    /// Bytes of buffers whose files are landing, in total and per landing task.
    landing_bytes: u64,
    held_by_task: HashMap<tokio::task::Id, u64>,
    /// Fetching is paused for backpressure.
    paused: bool,
    /// Records waiting for the lake to answer a listing, oldest first.
    pending: std::collections::VecDeque<sluice_core::Record>,
    pending_retry_at: Instant,
    pending_backoff: Duration,
    budget_bytes: u64,
    inflight: Arc<InFlight>,
    /// Lake epochs held, per partition (see `ownership`).
    epochs: SharedEpochs,
    /// Every partition the group assigned here (and this worker has not been fenced off).
    ownership: HashMap<TopicPartition, Ownership>,
    /// Counts assignments, to tell a claim's own assignment from a later one.
    assignments: u64,
    claims: JoinSet<ClaimDone>,
    /// Partitions another worker claimed in the lake, and when to claim them again (if the
    /// group still says they are this worker's: twice the takeover grace later).
    fenced: HashMap<TopicPartition, Instant>,
    /// The epoch this worker last held per partition, to recognise its own handovers.
    own_previous: HashMap<TopicPartition, u64>,
    write_timeout: Duration,
    takeover_grace: Duration,
    lease: sluice_kafka::Lease,
    shutdown: CancellationToken,
    buffers: Buffers,
    landings: JoinSet<Result<LandedFile, PipelineError>>,
    ledgers: SharedLedgers,
    lake: Lake,
    metrics: Metrics,
    summary: RunSummary,
    path: PathTemplate,
    dead_letter_path: PathTemplate,
    encoding: Encoding,
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
        loop {
            // Backpressure: fetch only while landings and memory have room (bytes of files
            // still landing count against the budget too, so memory stays bounded however slow
            // the lake is). Paused partitions are still polled, so the group keeps this worker.
            // Resuming needs room for half again, so the worker does not flap at the limit.
            let stalled = !self.pending.is_empty()
                || if self.paused {
                    self.landings.len() > MAX_LANDINGS_IN_FLIGHT / 2
                        || (!self.landings.is_empty()
                            && self.held_bytes() > self.budget_bytes / 4 * 3)
                } else {
                    self.landings.len() >= MAX_LANDINGS_IN_FLIGHT
                        || (!self.landings.is_empty() && self.held_bytes() > self.budget_bytes)
                };
            if stalled != self.paused {
                // Partitions not ready (their lake claim is pending) stay paused regardless.
                let changed = if stalled {
                    let tps: Vec<_> = self.ownership.keys().cloned().collect();
                    source.pause(&tps)
                } else {
                    source.resume(&self.ready_partitions())
                };
                match changed {
                    Ok(()) => {
                        self.paused = stalled;
                        self.metrics.paused.set(i64::from(stalled));
                        tracing::info!(paused = stalled, "backpressure");
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot pause or resume partitions"),
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                Some(done) = self.landings.join_next_with_id() => self.on_landed(done)?,
                Some(done) = self.claims.join_next() => self.on_claimed(done)?,
                Some(done) = self.marker_round.join_next() => self.on_marker_round(done),
                _ = tick.tick() => {
                    // Rebalances happen inside `recv` even when no record follows them.
                    let events = source.take_events();
                    self.on_events(source, events);
                    self.start_ready(source);
                    self.reclaim_fenced(source);
                    for buffer in self.buffers.take_expired(Instant::now()) {
                        self.spawn_landing(buffer, None);
                    }
                    self.run_schedule();
                    self.start_marker_round(source);
                    self.retry_pending().await?;
                    // A failed commit is retried on the next tick.
                    self.commit(source);
                    self.update_gauges();
                    self.check_caught_up();
                }
                next = source.next() => {
                    let events = source.take_events();
                    self.on_events(source, events);
                    match next {
                        Ok(record) => self.on_record(record).await?,
                        Err(e) => {
                            // librdkafka reconnects by itself; say so and keep polling.
                            tracing::warn!(error = %e, "Kafka error while consuming");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
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
                            c.revoked(&tp);
                        }
                        self.fenced.remove(&tp);
                        if let Some(epoch) = self.forget(&tp).and_then(|o| o.epoch) {
                            self.own_previous.insert(tp, epoch);
                        }
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

    /// With `--until-caught-up`: ends the run once every owned partition is landed and
    /// committed to its end, or when the lake has been down past the patience.
    fn check_caught_up(&mut self) {
        let Some(c) = &mut self.catch_up else { return };
        let done = c.done(&self.ledgers.lock().expect("ledger lock"));
        if done {
            tracing::info!("caught up: every owned partition is landed and committed to its end");
            self.shutdown.cancel();
        } else if c.lake_gave_out(self.metrics.lake_up.get() == 1) {
            tracing::error!(patience = ?c.lake_patience, "the lake has been down too long; stopping without committing what did not land");
            self.shutdown.cancel();
        }
        c.report(self.summary.records_consumed, self.summary.files_landed);
    }

    /// Drops everything this worker holds for `tp`: its ownership, and its buffers,
    /// unlanded and uncommitted, so the partition's next owner reads those records again
    /// (the next ownership lists the lake again too).
    fn forget(&mut self, tp: &TopicPartition) -> Option<Ownership> {
        let owned = self.ownership.remove(tp);
        self.landed.retain(|key, _| &key.tp != tp);
        self.progress.remove(tp);
        self.pending
            .retain(|r| r.partition != tp.partition || r.topic != tp.topic);
        let dropped = self.buffers.take_partition(tp);
        if !dropped.is_empty() {
            tracing::info!(%tp, buffers = dropped.len(), "dropped buffers of a partition no longer owned");
        }
        self.metrics
            .assigned_partitions
            .set(self.ownership.len() as i64);
        owned
    }

    /// Takes on newly assigned partitions: each is paused until its lake claim is in (and,
    /// after an unclean handover, the grace has passed).
    fn own(&mut self, source: &KafkaSource, tps: Vec<TopicPartition>) {
        if let Err(e) = source.pause(&tps) {
            tracing::warn!(error = %e, "cannot pause newly assigned partitions");
        }
        for tp in tps {
            self.assignments += 1;
            let assignment = self.assignments;
            self.ownership
                .insert(tp.clone(), Ownership::new(assignment));
            let (lake, metrics, shutdown) = (
                self.lake.clone(),
                self.metrics.clone(),
                self.shutdown.clone(),
            );
            let owner = self.owner();
            let markers = self.sealer.is_some();
            self.claims.spawn(async move {
                let claim = with_storage_retries(&metrics, "claim", Some(&shutdown), || {
                    lake.claim_partition(&tp.topic, tp.partition, &owner)
                })
                .await;
                // Read after the claim: the previous owner cannot write it any more.
                let claim = match claim {
                    Ok(claim) if markers => {
                        let path = markers::progress_path(&tp);
                        with_storage_retries(&metrics, "read", Some(&shutdown), || {
                            lake.read_if_exists(&path)
                        })
                        .await
                        .map(|body| {
                            let previous = body.and_then(|b| serde_json::from_slice(&b).ok());
                            (claim, previous)
                        })
                    }
                    other => other.map(|claim| (claim, None)),
                };
                (tp, assignment, claim)
            });
        }
        self.metrics
            .assigned_partitions
            .set(self.ownership.len() as i64);
    }

    fn on_claimed(
        &mut self,
        done: Result<ClaimDone, tokio::task::JoinError>,
    ) -> Result<(), PipelineError> {
        let Ok((tp, assignment, claim)) = done else {
            return Ok(());
        };
        let (claim, previous) = claim?;
        let Some(owned) = self
            .ownership
            .get_mut(&tp)
            .filter(|o| o.assignment == assignment)
        else {
            // Revoked meanwhile: hand the epoch straight back.
            let lake = self.lake.clone();
            tokio::spawn(async move {
                release_all(&lake, &[(tp, claim.epoch)], RELEASE_PATIENCE).await;
            });
            return Ok(());
        };
        let wait = ownership::must_wait(
            &claim,
            self.own_previous.get(&tp).copied(),
            self.inflight.idle(&tp),
        );
        owned.epoch = Some(claim.epoch);
        self.progress
            .insert(tp.clone(), PartitionProgress::adopt(previous));
        owned.ready_at = Some(
            Instant::now()
                + if wait {
                    self.takeover_grace
                } else {
                    Duration::ZERO
                },
        );
        self.epochs
            .lock()
            .expect("epochs lock")
            .insert(tp.clone(), claim.epoch);
        if wait {
            self.metrics.unclean_takeovers.inc();
            tracing::info!(%tp, epoch = claim.epoch, grace = ?self.takeover_grace, "claimed a partition its previous owner did not release; waiting for its writes to finish");
        } else {
            tracing::info!(%tp, epoch = claim.epoch, handover = ?claim.handover, "claimed partition");
        }
        Ok(())
    }

    /// Lets records of partitions whose claim (and grace) is through flow: those that waited
    /// are routed first, in order, then fetching resumes.
    fn start_ready(&mut self, source: &KafkaSource) {
        let now = Instant::now();
        let mut started = Vec::new();
        for (tp, owned) in &mut self.ownership {
            if !owned.ready && owned.ready_at.is_some_and(|t| t <= now) {
                owned.ready = true;
                for record in std::mem::take(&mut owned.waiting).into_iter().rev() {
                    self.pending.push_front(record);
                }
                started.push(tp.clone());
            }
        }
        if started.is_empty() {
            return;
        }
        self.pending_retry_at = now;
        if !self.paused {
            if let Err(e) = source.resume(&started) {
                tracing::warn!(error = %e, "cannot resume partitions");
            }
        }
    }

    fn ready_partitions(&self) -> Vec<TopicPartition> {
        self.ownership
            .iter()
            .filter(|(_, o)| o.ready)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// Another worker claimed `tp` in the lake: this worker's ownership is over whatever the
    /// group says. Its buffers are dropped uncommitted, like on a revocation.
    fn fence(&mut self, tp: &TopicPartition) {
        if self.forget(tp).is_none() {
            return;
        }
        tracing::warn!(%tp, "another worker claimed this partition in the lake; dropping it");
        self.metrics.fenced.inc();
        // What the rebalance callback does on a revocation.
        self.epochs.lock().expect("epochs lock").remove(tp);
        self.ledgers.lock().expect("ledger lock").remove(tp);
        self.fenced
            .insert(tp.clone(), Instant::now() + 2 * self.takeover_grace);
    }

    /// A fenced partition that the group still says is this worker's is claimed again after
    /// a while: otherwise a broker that never moves it would leave it unread.
    fn reclaim_fenced(&mut self, source: &KafkaSource) {
        let now = Instant::now();
        let due: Vec<_> = self
            .fenced
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(tp, _)| tp.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        let assignment = source.assignment();
        for tp in &due {
            self.fenced.remove(tp);
        }
        let again: Vec<_> = due
            .into_iter()
            .filter(|tp| assignment.contains(tp))
            .collect();
        if again.is_empty() {
            return;
        }
        tracing::info!(
            ?again,
            "claiming fenced partitions again: the group still assigns them here"
        );
        for tp in again {
            // Records fetched while fenced, or dropped with its buffers, were never landed
            // here; the new ownership starts at the last commit, like any other.
            match tokio::task::block_in_place(|| source.rewind_to_committed(&tp)) {
                Ok(()) => self.own(source, vec![tp]),
                Err(e) => {
                    tracing::warn!(%tp, error = %e, "cannot rewind to the committed offset; trying later");
                    self.fenced.insert(tp, now + self.takeover_grace);
                }
            }
        }
    }

    async fn on_record(&mut self, record: sluice_core::Record) -> Result<(), PipelineError> {
        // Records queue behind one that waits for the lake, so each partition stays in order.
        // Meanwhile fetching is paused but polling goes on, so the group keeps this worker
        // (and its rebalance callbacks run) however long the lake is down.
        if !self.pending.is_empty() {
            self.pending.push_back(record);
        } else if let Some(back) = self.on_record_routed(record).await? {
            tracing::warn!("lake unavailable for a listing; pausing until it answers");
            self.pending.push_back(back);
            self.pending_retry_at = Instant::now() + self.pending_backoff;
        }
        for buffer in self.buffers.take_over_budget() {
            self.spawn_landing(buffer, None);
        }
        Ok(())
    }

    /// Routes and buffers one record. Returns it back when the lake could not be listed for
    /// its key (temporarily): nothing about it was recorded yet, so it can simply be retried.
    async fn on_record_routed(
        &mut self,
        record: sluice_core::Record,
    ) -> Result<Option<sluice_core::Record>, PipelineError> {
        let tp = TopicPartition::new(record.topic.clone(), record.partition);
        match self.ownership.get_mut(&tp) {
            // Fetched before a revocation: its new owner handles it.
            None => return Ok(None),
            // Fetched before the pause took hold; routed once the claim is in.
            Some(owned) if !owned.ready => {
                owned.waiting.push_back(record);
                return Ok(None);
            }
            Some(_) => {}
        }
        // Offsets arrive in order; one at or behind the last consumed is a second delivery of
        // a record already accounted for (buffered, landed or skipped): dropped, not doubled.
        let last = self
            .ledgers
            .lock()
            .expect("ledger lock")
            .get(&tp)
            .and_then(|l| l.last_consumed());
        if last.is_some_and(|last| record.offset <= last) {
            tracing::warn!(record = %record.coordinates(), ?last, "a record arrived again behind its partition's position; skipped");
            return Ok(None);
        }
        let arrival = now_ms();
        let routed = self.router.route(&record, arrival);
        let (routed, late) = self.judge_lateness(&tp, record.offset, routed);
        let (target, line, dead) = match routed {
            Routed::Data {
                signal,
                window,
                line,
            } => {
                // The envelope keeps what the Avro record needs besides the payload.
                let line = match self.encoding.options.envelope {
                    Some(_) => sluice_format::envelope::line(
                        record.timestamp_ms.unwrap_or(arrival),
                        record.offset,
                        &record.headers,
                        &line,
                    ),
                    None => line,
                };
                let target = Target::Signal {
                    signal,
                    window,
                    late,
                };
                (Some(target), line, None)
            }
            Routed::Skipped => (None, Vec::new(), None),
            Routed::Dead(reason) => {
                // By the record's own timestamp, not arrival: a replay on another day must
                // find the file it landed in before.
                let window =
                    Window::containing(record.timestamp_ms.unwrap_or(arrival), Granularity::Day);
                let line = dead_letter_line(&record, &reason);
                (Some(Target::DeadLetter { window }), line, Some(reason))
            }
        };
        let key = target.map(|target| BufferKey {
            tp: tp.clone(),
            target,
        });
        if let Some(key) = &key {
            if !self.landed.contains_key(key) {
                match self.landed_ranges(key).await {
                    Ok(ranges) => {
                        if self.landed.len() >= MAX_LANDED_KEYS {
                            // What the lake says is the truth: a key dropped here is listed
                            // again when it comes back. Keys with open buffers stay.
                            let buffers = &self.buffers;
                            self.landed.retain(|k, _| buffers.contains(k));
                        }
                        self.landed.insert(key.clone(), ranges);
                    }
                    Err(PipelineError::Lake(e)) if e.is_retryable() => return Ok(Some(record)),
                    Err(e) => return Err(e),
                }
            }
        }

        self.metrics.records_consumed.inc();
        self.summary.records_consumed += 1;
        let offset = record.offset;
        if let Some(reason) = &dead {
            tracing::warn!(record = %record.coordinates(), reason = reason.label, detail = %reason.detail, "dead-lettering record");
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
        if self.landed[&key].covers(offset) {
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
        let appended = self.buffers.append(key, offset, &line, Instant::now());
        {
            let mut ledgers = self.ledgers.lock().expect("ledger lock");
            let ledger = ledgers.get_mut(&tp);
            if appended.opened {
                ledger.hold(offset);
            }
            ledger.consumed(offset);
        }
        if let Some(full) = appended.full {
            self.spawn_landing(full, None);
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
    async fn retry_pending(&mut self) -> Result<(), PipelineError> {
        if self.pending.is_empty() || Instant::now() < self.pending_retry_at {
            return Ok(());
        }
        while let Some(record) = self.pending.pop_front() {
            if let Some(back) = self.on_record_routed(record).await? {
                self.pending.push_front(back);
                self.pending_backoff = (self.pending_backoff * 2).min(MAX_STORAGE_BACKOFF);
                self.pending_retry_at = Instant::now() + self.pending_backoff;
                return Ok(());
            }
        }
        self.pending_backoff = INITIAL_STORAGE_BACKOFF;
        Ok(())
    }

    /// Advances the partition's watermark with the record's window and applies the late-data
    /// policy: a record is late when its window's end plus the allowed lateness is behind the
    /// watermark. Returns the record as routed (a dead letter, if late ones go there) and
    /// whether it is to be diverted.
    fn judge_lateness(
        &mut self,
        tp: &TopicPartition,
        offset: i64,
        routed: Routed,
    ) -> (Routed, bool) {
        // Appending late records as they come needs no watermark, unless markers do.
        if self.late_data == LateData::Append && self.sealer.is_none() {
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
        progress.last_record = Instant::now();
        let Routed::Data { window, .. } = &routed else {
            return (routed, false);
        };
        let watermark = progress.history.observe(offset, window.end_ms());
        let late = window.end_ms().saturating_add(self.allowed_lateness_ms) < watermark;
        match self.late_data {
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

    /// Where and how the files of `key` are written.
    fn layout(&self, key: &BufferKey) -> Layout<'_> {
        match &key.target {
            Target::Signal {
                signal,
                window,
                late,
            } => Layout {
                template: &self.path,
                prefix: if *late { LATE_PREFIX } else { "" },
                signal: signal.clone(),
                window: *window,
                ext: self.encoding.options.extension(),
                options: self.encoding.for_signal(signal),
                dead_letter: false,
            },
            // Dead letters are always NDJSON: they carry raw bytes, not the signal's columns.
            Target::DeadLetter { window } => Layout {
                template: &self.dead_letter_path,
                prefix: "",
                signal: SignalName::dead_letter(),
                window: *window,
                ext: FileFormat::Ndjson.extension(Codec::None),
                options: EncodeOptions::new(FileFormat::Ndjson, Codec::None),
                dead_letter: true,
            },
        }
    }

    /// The offset ranges of `key` already in landed files, read from the file names in its
    /// directory (the templates are offset-named, see `sluice_config`).
    async fn landed_ranges(&self, key: &BufferKey) -> Result<LandedRanges, PipelineError> {
        let layout = self.layout(key);
        let dir = format!(
            "{}{}",
            layout.prefix,
            layout.template.directory(&layout.values(key, 0, 0))
        );
        let files = match self.lake.list(&dir).await {
            Ok(files) => files,
            Err(e) => {
                if e.is_retryable() {
                    self.metrics.lake_up.set(0);
                    self.metrics
                        .storage_errors
                        .with_label_values(&["list"])
                        .inc();
                    self.metrics.storage_retries.inc();
                }
                return Err(PipelineError::Lake(e));
            }
        };
        let mut ranges = LandedRanges::default();
        for f in files {
            let name = f.path.rsplit('/').next().unwrap_or_default();
            // Only this directory's own files: a recursive listing also shows deeper ones.
            if f.path.len() == dir.len() + name.len() {
                if let Some((first, last)) =
                    parse_offset_file_name(name, &key.tp.topic, key.tp.partition)
                {
                    ranges.insert(first, last);
                }
            }
        }
        Ok(ranges)
    }

    /// `run`: the scheduled run (its time, ms) this landing belongs to, for its manifest.
    fn spawn_landing(&mut self, buffer: Buffer, run: Option<i64>) {
        let layout = self.layout(&buffer.key);
        let dead_letter = layout.dead_letter;
        let options = layout.options.clone();
        let refusal_day = Window::containing(layout.window.start_ms, Granularity::Day);
        let path = format!(
            "{}{}",
            layout.prefix,
            layout.template.render(&layout.values(
                &buffer.key,
                buffer.first_offset,
                buffer.last_offset,
            ))
        );
        let signal_label = if dead_letter {
            DEAD_LETTER.to_string()
        } else {
            layout.signal.as_str().to_string()
        };
        let marked_window = match &buffer.key.target {
            Target::Signal {
                window,
                late: false,
                ..
            } => Some(*window),
            _ => None,
        };
        let span = tracing::info_span!("flush", signal = %signal_label, window = %layout.window.start().to_rfc3339(), tp = %buffer.key.tp, first = buffer.first_offset, last = buffer.last_offset, path = %path);
        let lake = self.lake.clone();
        let metrics = self.metrics.clone();
        let shutdown = self.shutdown.clone();
        let lease = self.lease.clone();
        let started = Instant::now();
        let generation = self
            .ledgers
            .lock()
            .expect("ledger lock")
            .get(&buffer.key.tp)
            .map_or(0, |l| l.generation());
        let epoch = self.ownership.get(&buffer.key.tp).and_then(|o| o.epoch);
        let write_timeout = self.write_timeout;
        let landing = self.inflight.start(&buffer.key.tp);
        let encode_permits = self.encode_permits.clone();
        let tp = buffer.key.tp.clone();
        let held = buffer.ndjson.len() as u64;
        self.landing_bytes += held;
        let task_tp = tp.clone();
        // A record the format refuses is dead-lettered beside the others, in the day of its
        // data window, under its own offset.
        let refusals = Refusals {
            template: self.dead_letter_path.clone(),
            window: refusal_day,
        };
        let handle = self.landings.spawn(
            async move {
                let _landing = landing;
                let Buffer {
                    key,
                    first_offset,
                    last_offset,
                    records,
                    ndjson,
                    offsets,
                    ..
                } = buffer;
                let encode_error = |detail: String| PipelineError::Encode {
                    path: path.clone(),
                    detail,
                };
                let permit = encode_permits
                    .acquire_owned()
                    .await
                    .map_err(|e| encode_error(e.to_string()))?;
                let encoded = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    refusals::encode_or_refuse(&ndjson, &offsets, &options, sluice_format::encode)
                })
                .await
                .map_err(|e| encode_error(e.to_string()))?
                .map_err(|e| encode_error(e.to_string()))?;
                let guard = WriteGuard {
                    lake: &lake,
                    metrics: &metrics,
                    shutdown: &shutdown,
                    lease: &lease,
                    epoch,
                    tp: &task_tp,
                    write_timeout,
                };
                let land_error = |source: LakeError| PipelineError::Land {
                    path: path.clone(),
                    tp: key.tp.clone(),
                    first: first_offset,
                    last: last_offset,
                    epoch,
                    source: Box::new(source),
                };
                // Dead letters first: once the file lands, a replay skips these offsets.
                for refused in &encoded.refused {
                    tracing::warn!(offset = refused.offset, reason = refused.reason.label, detail = %refused.reason.detail, "dead-lettering a record its format refused");
                    metrics
                        .records_dead_lettered
                        .with_label_values(&[refused.reason.label])
                        .inc();
                    let line = sluice_fold::refused_line(&key.tp, refused.offset, &refused.line, &refused.reason);
                    let mut body = line;
                    body.push(b'\n');
                    guard
                        .land(&refusals.path(&key.tp, refused.offset), body.into())
                        .await
                        .map_err(land_error)?;
                }
                let refused = encoded.refused.len() as u64;
                let (bytes, outcome) = match encoded.file {
                    Some(file) => {
                        if !file.conflicts.is_empty() {
                            tracing::warn!(fields = ?file.conflicts, "fields with conflicting types were written as JSON text");
                            metrics
                                .columns_as_json
                                .with_label_values(&[metrics.signal_label(&signal_label)])
                                .inc_by(file.conflicts.len() as u64);
                        }
                        let body = bytes::Bytes::from(file.bytes);
                        let bytes = body.len() as u64;
                        (bytes, guard.land(&path, body).await.map_err(land_error)?)
                    }
                    // Nothing left to write: the dead letters hold every record.
                    None => (0, Landed::Written),
                };
                tracing::info!(records, refused, bytes, ?outcome, "landed");
                Ok(LandedFile {
                    tp: key.tp,
                    path: path.clone(),
                    run,
                    generation,
                    first_offset,
                    records: records - refused,
                    refused,
                    dead_letter,
                    signal: signal_label,
                    bytes,
                    outcome,
                    took: started.elapsed(),
                    window: marked_window,
                })
            }
            .instrument(span),
        );
        self.held_by_task.insert(handle.id(), held);
        self.inflight.register(&tp, handle);
    }

    fn on_landed(
        &mut self,
        done: Result<(tokio::task::Id, Result<LandedFile, PipelineError>), tokio::task::JoinError>,
    ) -> Result<(), PipelineError> {
        let id = match &done {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        self.landing_bytes -= self.held_by_task.remove(&id).unwrap_or(0);
        let file = match done {
            Ok((_, Ok(file))) => file,
            // Cancelled on revocation: the partition's next owner lands these records.
            Err(e) if e.is_cancelled() => return Ok(()),
            // librdkafka revokes the partitions next; their next owner lands these records.
            Ok((_, Err(PipelineError::Land { source, tp, .. })))
                if matches!(*source, LakeError::AssignmentLost) =>
            {
                tracing::warn!(%tp, "dropped a landing: the assignment was lost");
                return Ok(());
            }
            Ok((
                _,
                Err(PipelineError::Land {
                    source, tp, epoch, ..
                }),
            )) if matches!(*source, LakeError::Fenced) => {
                // Only the ownership that wrote is fenced: a landing of an earlier one (the
                // partition was lost and claimed again since) says nothing of the current.
                if self.ownership.get(&tp).and_then(|o| o.epoch) == epoch {
                    self.fence(&tp);
                }
                return Ok(());
            }
            Ok((_, Err(e))) => {
                if let PipelineError::Land { .. } = e {
                    self.metrics
                        .storage_errors
                        .with_label_values(&["write"])
                        .inc();
                    self.metrics.lake_up.set(0);
                }
                return Err(e);
            }
            Err(e) => {
                return Err(PipelineError::Encode {
                    path: "(landing task)".into(),
                    detail: e.to_string(),
                })
            }
        };
        self.metrics.lake_up.set(1);
        self.metrics
            .last_landing_timestamp_seconds
            .set(now_ms() as f64 / 1000.0);
        self.ledgers.lock().expect("ledger lock").release(
            &file.tp,
            file.generation,
            file.first_offset,
        );
        let format = if file.dead_letter {
            "ndjson"
        } else {
            self.encoding.options.format.name()
        };
        // A buffer whose every record its format refused has no file: dead letters only.
        let wrote_file = file.records > 0 || file.refused == 0;
        if wrote_file {
            self.metrics.files_landed.with_label_values(&[format]).inc();
        }
        self.metrics
            .bytes_landed
            .with_label_values(&[format])
            .inc_by(file.bytes);
        self.metrics
            .flush_duration_seconds
            .with_label_values(&[format])
            .observe(file.took.as_secs_f64());
        self.metrics
            .file_size_bytes
            .with_label_values(&[format])
            .observe(file.bytes as f64);
        if file.outcome == Landed::AlreadyPresent {
            self.metrics.files_already_present.inc();
        }
        self.summary.files_landed += u64::from(wrote_file);
        let totals = self.summary.signals.entry(file.signal.clone()).or_default();
        totals.files += u64::from(wrote_file);
        totals.bytes += file.bytes;
        totals.records += file.records;
        if let (Some(window), Some(p)) = (file.window, self.progress.get_mut(&file.tp)) {
            p.landed_in(window, &file.signal);
        }
        self.on_run_file(&file);
        self.summary.records_dead_lettered += file.refused;
        if !file.dead_letter {
            self.metrics
                .records_landed
                .with_label_values(&[self.metrics.signal_label(&file.signal)])
                .inc_by(file.records);
            self.summary.records_landed += file.records;
        }
        Ok(())
    }

    /// At each scheduled time (`flush.every` or `flush.cron`), lands every open buffer as one
    /// run; its manifest is written once all of them have landed.
    fn run_schedule(&mut self) {
        let Some(schedule) = &self.schedule else {
            return;
        };
        let due = schedule.latest_due(now_ms());
        if self.last_run_ms.is_none() {
            // The first boundary after start; what came before it is part of that run.
            self.last_run_ms = Some(due);
            return;
        }
        if Some(due) <= self.last_run_ms {
            return;
        }
        self.last_run_ms = Some(due);
        let buffers = self.buffers.take_all();
        tracing::info!(scheduled = due, buffers = buffers.len(), "scheduled run");
        if buffers.is_empty() {
            return;
        }
        if self.manifest {
            self.runs.insert(
                due,
                RunState {
                    pending: buffers.len(),
                    files: Vec::new(),
                },
            );
        }
        for buffer in buffers {
            self.spawn_landing(buffer, Some(due));
        }
    }

    /// Records a landed file of a scheduled run; after its last one, writes the manifest.
    fn on_run_file(&mut self, file: &LandedFile) {
        let Some(run) = file.run else { return };
        let Some(state) = self.runs.get_mut(&run) else {
            return;
        };
        state.pending -= 1;
        state.files.push(serde_json::json!({
            "sinkPath": format!("{}/{}", self.lake.describe().trim_end_matches('/'), file.path),
            "name": file.path.rsplit('/').next().unwrap_or_default(),
            "size": file.bytes,
            "records": file.records,
            "signal": file.signal,
        }));
        if state.pending > 0 {
            return;
        }
        let state = self.runs.remove(&run).expect("present");
        let scheduled = chrono::DateTime::from_timestamp_millis(run).unwrap_or_default();
        let run_id = format!("{}-{}", scheduled.format("%Y%m%dT%H%M%SZ"), self.worker_id);
        let records: u64 = state
            .files
            .iter()
            .filter_map(|f| f["records"].as_u64())
            .sum();
        let manifest = serde_json::json!({
            "flowRunId": run_id,
            "pipeline": self.pipeline_name,
            "scheduledTime": scheduled.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "completedTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "records": records,
            "exportResults": state.files,
        });
        let path = format!(
            "{MANIFEST_DIR}/manifest-{}-{run_id}.json",
            self.pipeline_name
        );
        let (lake, metrics) = (self.lake.clone(), self.metrics.clone());
        let body = bytes::Bytes::from(serde_json::to_vec_pretty(&manifest).expect("JSON"));
        self.manifests.spawn(async move {
            let written = with_storage_retries(&metrics, "write", None, || {
                let (lake, path, body) = (&lake, &path, body.clone());
                async move { lake.land(path, body).await }
            })
            .await;
            match written {
                Ok(_) => tracing::info!(%path, "manifest written"),
                Err(e) => tracing::error!(%path, error = %e, "could not write the manifest"),
            }
        });
    }

    /// Lands every open buffer and waits for all landings.
    async fn drain(&mut self) -> Result<(), PipelineError> {
        for buffer in self.buffers.take_all() {
            self.spawn_landing(buffer, None);
        }
        let mut first_error = None;
        while let Some(done) = self.landings.join_next_with_id().await {
            if let Err(e) = self.on_landed(done) {
                tracing::error!(error = %e, "landing failed during shutdown");
                first_error.get_or_insert(e);
            }
        }
        while self.manifests.join_next().await.is_some() {}
        first_error.map_or(Ok(()), Err)
    }

    /// Every `MARKER_ROUND_EVERY` (with `window.markers`): in the background, writes the
    /// progress of owned partitions that changed, then seals what all partitions allow.
    fn start_marker_round(&mut self, source: &KafkaSource) {
        let Some(sealer) = self.sealer.clone() else {
            return;
        };
        if !self.marker_round.is_empty() || Instant::now() < self.next_marker_round {
            return;
        }
        self.next_marker_round = Instant::now() + MARKER_ROUND_EVERY;
        if let Some(input) = self.marker_round_input(source, &sealer) {
            self.marker_round
                .spawn(async move { sealer.round(input).await });
        }
    }

    /// After the drain: lets the last landings' offsets be committed.
    async fn final_marker_round(&mut self, source: &KafkaSource) {
        let Some(sealer) = self.sealer.clone() else {
            return;
        };
        while let Some(done) = self.marker_round.join_next().await {
            self.on_marker_round(done);
        }
        let Some(input) = self.marker_round_input(source, &sealer) else {
            return;
        };
        match tokio::time::timeout(SHUTDOWN_STORAGE_PATIENCE, sealer.round(input)).await {
            Ok(done) => self.on_marker_round(Ok(done)),
            Err(_) => tracing::warn!("could not write progress before leaving; the next owner re-reads from the last commit"),
        }
    }

    /// What a marker round needs: this worker's changed progress and every partition (none
    /// while the partitions are unknown).
    fn marker_round_input(&mut self, source: &KafkaSource, sealer: &Sealer) -> Option<RoundInput> {
        let partitions = self.all_partitions(source, &sealer.topics)?;
        Some(RoundInput {
            writes: self.progress_to_write(sealer),
            partitions,
        })
    }

    /// Every partition of `topics` (cached; a failed refresh keeps the old list).
    fn all_partitions(
        &mut self,
        source: &KafkaSource,
        topics: &[String],
    ) -> Option<Vec<TopicPartition>> {
        if let Some((at, tps)) = &self.all_partitions {
            if at.elapsed() < PARTITIONS_REFRESH {
                return Some(tps.clone());
            }
        }
        match tokio::task::block_in_place(|| source.all_partitions(topics)) {
            Ok(tps) => {
                self.all_partitions = Some((Instant::now(), tps.clone()));
                Some(tps)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the topics' partitions; markers wait");
                self.all_partitions.as_ref().map(|(_, tps)| tps.clone())
            }
        }
    }

    /// The progress of each owned, claimed partition that differs from what it last wrote,
    /// with its epoch and ledger generation.
    fn progress_to_write(&self, sealer: &Sealer) -> Vec<(u64, u64, Progress)> {
        let ledgers = self.ledgers.lock().expect("ledger lock");
        let mut out = Vec::new();
        for (tp, owned) in &self.ownership {
            let (Some(epoch), true, Some(p)) = (owned.epoch, owned.ready, self.progress.get(tp))
            else {
                continue;
            };
            let ledger = ledgers.get(tp);
            let landed_until = ledger.and_then(|l| l.committable());
            let waiting = self
                .pending
                .iter()
                .any(|r| r.partition == tp.partition && r.topic == tp.topic);
            let idle = ledger.is_none_or(|l| l.held_buffers() == 0)
                && !waiting
                && !self.paused
                && p.last_record.elapsed() >= sealer.idle_partition;
            let progress = Progress {
                topic: tp.topic.clone(),
                partition: tp.partition,
                landed_until,
                idle,
                windows: p.windows.clone(),
                history: p.history.clone(),
                owner: self.owner(),
                epoch,
                updated_ms: now_ms(),
            };
            // Idleness is rewritten now and then even unchanged: it must show its owner lives.
            let unchanged = p.written.as_ref().is_some_and(|w| w.same_as(&progress))
                && !(idle
                    && p.written_at
                        .is_none_or(|t| t.elapsed() >= markers::IDLE_REFRESH));
            if !unchanged {
                out.push((epoch, ledger.map_or(0, |l| l.generation()), progress));
            }
        }
        out
    }

    fn on_marker_round(
        &mut self,
        done: Result<(RoundOutput, Option<LakeError>), tokio::task::JoinError>,
    ) {
        let Ok((out, error)) = done else {
            return;
        };
        if let Some(e) = error {
            self.metrics
                .storage_errors
                .with_label_values(&["markers"])
                .inc();
            tracing::warn!(error = %e, "window markers: storage failed; trying again next round");
        }
        {
            let mut ledgers = self.ledgers.lock().expect("ledger lock");
            for (generation, progress) in out.written {
                let tp = TopicPartition::new(progress.topic.clone(), progress.partition);
                if let Some(until) = progress.landed_until {
                    ledgers.allow_commits_to(&tp, generation, until);
                }
                let current = ledgers.get(&tp).map_or(0, |l| l.generation());
                if let (true, Some(p)) = (current == generation, self.progress.get_mut(&tp)) {
                    p.written = Some(progress);
                    p.written_at = Some(Instant::now());
                }
            }
        }
        for tp in &out.fenced {
            self.fence(tp);
        }
        self.metrics.markers_written.inc_by(out.markers_written);
        let (Some(sealed_until), Some(sealer)) = (out.sealed_until, &self.sealer) else {
            return;
        };
        self.metrics
            .windows_sealed_until_seconds
            .set(sealed_until / 1000);
        let ledgers = self.ledgers.lock().expect("ledger lock");
        for (tp, p) in &mut self.progress {
            p.sealed(
                sealed_until,
                sealer.granularity,
                self.allowed_lateness_ms,
                ledgers.get(tp).and_then(|l| l.last_consumed()),
            );
        }
    }

    /// Commits what has landed; false when the broker refused or could not be reached.
    fn commit(&mut self, source: &KafkaSource) -> bool {
        let commits: Vec<_> = {
            let ledgers = self.ledgers.lock().expect("ledger lock");
            ledgers
                .uncommitted()
                .into_iter()
                .filter(|(tp, _)| self.ownership.contains_key(tp))
                .collect()
        };
        if commits.is_empty() {
            return true;
        }
        // A synchronous commit is one broker round trip; keep it off the async workers' backs.
        match tokio::task::block_in_place(|| source.commit(&commits)) {
            Ok(()) => {
                self.ledgers
                    .lock()
                    .expect("ledger lock")
                    .mark_committed(&commits);
                for (tp, off) in &commits {
                    // Records before a committed offset are never judged again.
                    if let Some(p) = self.progress.get_mut(tp) {
                        p.history.prune(*off);
                    }
                    self.metrics
                        .committed_offset
                        .with_label_values(&[&tp.topic, &tp.partition.to_string()])
                        .set(*off);
                }
                tracing::debug!(?commits, "committed");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "commit failed; retrying");
                false
            }
        }
    }

    /// The last commit before leaving: retried for a while (a broker that just came back needs
    /// a moment to find the group coordinator), since every record it misses is read again.
    async fn final_commit(&mut self, source: &KafkaSource) {
        let deadline = Instant::now() + FINAL_COMMIT_PATIENCE;
        while !self.commit(source) {
            if Instant::now() >= deadline {
                tracing::error!(
                    "could not commit landed offsets before leaving; the next owner re-reads them"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Bytes held in memory: open buffers and files still landing.
    fn held_bytes(&self) -> u64 {
        self.buffers.buffered_bytes() + self.landing_bytes
    }

    fn update_gauges(&self) {
        self.metrics.open_buffers.set(self.buffers.len() as i64);
        self.metrics.buffered_bytes.set(self.held_bytes() as i64);
    }
}

/// Where and how the files of one buffer key are written.
struct Layout<'a> {
    template: &'a PathTemplate,
    /// Prepended to the rendered path (`_late/` for diverted late records).
    prefix: &'static str,
    signal: SignalName,
    window: Window,
    options: EncodeOptions,
    /// File extension, compression included.
    ext: String,
    dead_letter: bool,
}

impl Layout<'_> {
    fn values<'v>(&'v self, key: &'v BufferKey, first: i64, last: i64) -> PathValues<'v> {
        PathValues {
            signal: &self.signal,
            window: self.window,
            topic: &key.tp.topic,
            partition: key.tp.partition,
            first_offset: first,
            last_offset: last,
            ext: &self.ext,
        }
    }
}

/// Runs a storage operation until it succeeds or fails permanently. Temporary failures (the
/// store is down, throttling, timing out) are retried forever with capped exponential backoff
/// and jitter: a landing is never dropped, and consumption stalls behind it (backpressure).
///
/// Once `shutdown` is cancelled, retries go on for `SHUTDOWN_STORAGE_PATIENCE` at most: then
/// the error is returned, and the records stay uncommitted for the next run.
async fn with_storage_retries<T, F, Fut>(
    metrics: &Metrics,
    op: &'static str,
    shutdown: Option<&CancellationToken>,
    mut attempt: F,
) -> Result<T, LakeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, LakeError>>,
{
    let mut delay = INITIAL_STORAGE_BACKOFF;
    let mut giving_up_at = None;
    loop {
        if giving_up_at.is_none() && shutdown.is_some_and(CancellationToken::is_cancelled) {
            giving_up_at = Some(Instant::now() + SHUTDOWN_STORAGE_PATIENCE);
        }
        match attempt().await {
            Ok(v) => {
                metrics.lake_up.set(1);
                return Ok(v);
            }
            Err(e) if e.is_retryable() && giving_up_at.is_none_or(|t| Instant::now() < t) => {
                metrics.lake_up.set(0);
                metrics.storage_errors.with_label_values(&[op]).inc();
                metrics.storage_retries.inc();
                // Up to +50 % jitter so that workers do not retry in lockstep.
                let jitter = u64::from(
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .subsec_nanos(),
                ) % (delay.as_millis() as u64 / 2 + 1);
                let wait = delay + Duration::from_millis(jitter);
                tracing::warn!(error = %e, ?wait, "storage unavailable; retrying");
                match shutdown {
                    // A shutdown cuts the wait short: the patience window starts now.
                    Some(token) if giving_up_at.is_none() => {
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = token.cancelled() => {}
                        }
                    }
                    _ => tokio::time::sleep(wait).await,
                }
                delay = (delay * 2).min(MAX_STORAGE_BACKOFF);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Marks the given lake epochs released, giving up after `patience` (the next owners then
/// wait out the takeover grace instead).
async fn release_all(lake: &Lake, held: &[(TopicPartition, u64)], patience: Duration) {
    let releases = async {
        for (tp, epoch) in held {
            match lake
                .release_partition(&tp.topic, tp.partition, *epoch)
                .await
            {
                Ok(()) => tracing::debug!(%tp, epoch, "released partition"),
                Err(e) => tracing::warn!(%tp, error = %e, "could not release partition"),
            }
        }
    };
    if tokio::time::timeout(patience, releases).await.is_err() {
        tracing::warn!("could not release partitions in time; their next owners wait");
    }
}
