//! The consumer side of Sluice: records in, rebalances as events, commits out.
//!
//! Offsets are never auto-committed: the pipeline commits what its `PartitionLedgers` allow,
//! i.e. only records whose files have landed.

mod reader;
mod received;

pub use reader::{OffsetRange, RangeReader};
pub use received::Received;
use received::TopicNames;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::{ClientConfig, ClientContext, Offset, Statistics, TopicPartitionList};
use sluice_config::SourceSettings;
use sluice_core::{PartitionLedgers, Record, TopicPartition};
use sluice_telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot create the Kafka consumer: {0}")]
    Create(#[source] rdkafka::error::KafkaError),
    #[error("cannot subscribe to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("Kafka error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("no record of {tp} arrived for {idle:?} before offset {to} was reached")]
    Stalled {
        tp: TopicPartition,
        to: i64,
        idle: Duration,
    },
}

/// A change of which partitions this worker owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionEvent {
    /// Already paused: the pipeline resumes them when it is ready for their records.
    Assigned(Vec<TopicPartition>),
    /// Already acknowledged to the group: their landed progress was committed, their
    /// unlanded buffers must be dropped (the next owner reads those records again).
    Revoked(Vec<TopicPartition>),
}

/// Shared with the pipeline: the pipeline writes the ledgers, rebalance callbacks read them.
pub type SharedLedgers = Arc<Mutex<PartitionLedgers>>;

/// Called in the rebalance callback with the partitions being revoked, before their landed
/// progress is committed: it waits for files of those partitions that are still landing, so
/// the next owner finds them in the lake.
pub type BeforeRevoke = Box<dyn Fn(&[TopicPartition]) + Send + Sync>;

pub struct SourceContext {
    events: Mutex<Vec<PartitionEvent>>,
    /// Set with every event pushed, cleared when they are taken: lets a batch of records
    /// stop at a rebalance without taking the events' lock per record.
    events_pending: AtomicBool,
    ledgers: SharedLedgers,
    metrics: Metrics,
    before_revoke: BeforeRevoke,
}

impl ClientContext for SourceContext {
    /// librdkafka's statistics (every `statistics.interval.ms`) carry each partition's high
    /// watermark and committed offset: the end offset and lag gauges come from here.
    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 || !p.desired {
                    continue;
                }
                let labels = [topic.as_str(), &partition.to_string()];
                if p.hi_offset >= 0 {
                    self.metrics
                        .end_offset
                        .with_label_values(&labels)
                        .set(p.hi_offset);
                    if p.committed_offset >= 0 {
                        self.metrics
                            .consumer_lag
                            .with_label_values(&labels)
                            .set((p.hi_offset - p.committed_offset).max(0));
                    }
                }
            }
        }
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{log_message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{log_message}"),
            _ => tracing::debug!(target: "librdkafka", fac, "{log_message}"),
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect()
}

impl SourceContext {
    fn push_event(&self, event: PartitionEvent) {
        let mut events = self.events.lock().expect("event lock");
        events.push(event);
        self.events_pending.store(true, Ordering::Release);
    }
}

impl ConsumerContext for SourceContext {
    // Runs inside `recv`, so the pipeline sees the event before any record that follows it.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked = partitions(tpl);
                (self.before_revoke)(&revoked);
                let mut ledgers = self.ledgers.lock().expect("ledger lock");
                let commits: Vec<_> = ledgers
                    .uncommitted()
                    .into_iter()
                    .filter(|(tp, _)| revoked.contains(tp))
                    .collect();
                if !commits.is_empty() {
                    // Hand over exactly what has landed, so the next owner starts there.
                    match commit_with(consumer, &commits, CommitMode::Sync) {
                        Ok(()) => tracing::info!(
                            ?commits,
                            "committed landed offsets of revoked partitions"
                        ),
                        Err(e) => {
                            tracing::warn!(error = %e, "commit on revoke failed; the next owner re-reads from the last commit")
                        }
                    }
                }
                for tp in &revoked {
                    ledgers.remove(tp);
                }
                drop(ledgers);
                for tp in &revoked {
                    let labels = [&*tp.topic, &tp.partition.to_string()];
                    for gauge in [
                        &self.metrics.end_offset,
                        &self.metrics.consumer_lag,
                        &self.metrics.committed_offset,
                    ] {
                        let _ = gauge.remove_label_values(&labels);
                    }
                }
                tracing::info!(partitions = ?revoked, "partitions revoked");
                self.push_event(PartitionEvent::Revoked(revoked));
            }
            Rebalance::Assign(tpl) => {
                let assigned = partitions(tpl);
                tracing::info!(partitions = ?assigned, "partitions assigned");
                self.push_event(PartitionEvent::Assigned(assigned));
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    /// New partitions start paused: the pipeline resumes each once it has claimed it in the
    /// lake. Pausing here, before the first fetch is delivered, means resuming starts again at
    /// the assigned offset, never in the middle of a fetched batch.
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            if let Err(e) = consumer.pause(tpl) {
                tracing::warn!(error = %e, "cannot pause newly assigned partitions");
            }
        }
    }
}

fn commit_with<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    commits: &[(TopicPartition, i64)],
    mode: CommitMode,
) -> Result<(), rdkafka::error::KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for (tp, off) in commits {
        tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*off))?;
    }
    consumer.commit(&tpl, mode)
}

fn partition_list(tps: &[TopicPartition]) -> Result<TopicPartitionList, SourceError> {
    let mut tpl = TopicPartitionList::new();
    for tp in tps {
        tpl.add_partition(&tp.topic, tp.partition);
    }
    Ok(tpl)
}

/// How long a blocking broker request (committed offsets, watermarks, seek) may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a consumer group stands on one partition and where the partition ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPosition {
    pub tp: TopicPartition,
    /// The group's committed offset, if it ever committed one.
    pub committed: Option<i64>,
    /// The low and high watermarks.
    pub low: i64,
    pub high: i64,
}

pub struct KafkaSource {
    consumer: Arc<StreamConsumer<SourceContext>>,
    /// `auto.offset.reset` is `latest`.
    reset_to_end: bool,
    /// A record polled after a rebalance event, returned first by the next batch.
    held_back: Mutex<Option<Record>>,
    topic_names: Mutex<TopicNames>,
    /// The subscription, for `rejoin`.
    topics: Vec<String>,
}

/// Whether this worker still owns its assignment, for landings that outlive a poll.
#[derive(Clone)]
pub struct Lease(Arc<StreamConsumer<SourceContext>>);

impl Lease {
    /// True once the group took the assignment away without a revocation (the worker missed
    /// a rebalance or its session expired): what it still writes may be another's by now.
    pub fn lost(&self) -> bool {
        self.0.assignment_lost()
    }
}

/// librdkafka settings Sluice owns; user properties cannot override them (validation says so).
/// Public so that a benchmark's bare consumer can use exactly the same settings.
pub fn client_config(settings: &SourceSettings) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("statistics.interval.ms", "5000");
    // Incremental rebalances: a worker joining or leaving moves only the partitions that must
    // move, and the others keep their open buffers.
    cfg.set("partition.assignment.strategy", "cooperative-sticky");
    // Sluice buffers records itself, under its own memory budget; librdkafka's prefetch queue
    // (64 MiB by default) would only add to the footprint: it is sized from the budget.
    cfg.set(
        "queued.max.messages.kbytes",
        settings.prefetch_kbytes.to_string(),
    );
    // When that queue is full librdkafka stops fetching and looks again only after
    // fetch.queue.backoff.ms (1 s by default): a worker slower than the broker then stalls for
    // up to a second at a time (seen in the benchmark: bursts at 1 M records/s, then nothing).
    cfg.set("fetch.queue.backoff.ms", "20");
    for (k, v) in &settings.properties {
        cfg.set(k, v);
    }
    for (k, v) in &settings.secret_properties {
        cfg.set(k, v.expose());
    }
    cfg.set("bootstrap.servers", &settings.bootstrap_servers)
        .set("group.id", &settings.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", &settings.start_from);
    cfg
}

impl KafkaSource {
    pub fn connect(
        settings: &SourceSettings,
        ledgers: SharedLedgers,
        metrics: Metrics,
        before_revoke: BeforeRevoke,
    ) -> Result<Self, SourceError> {
        let context = SourceContext {
            events: Mutex::new(Vec::new()),
            events_pending: AtomicBool::new(false),
            ledgers,
            metrics,
            before_revoke,
        };
        let consumer: StreamConsumer<SourceContext> = client_config(settings)
            .create_with_context(context)
            .map_err(SourceError::Create)?;
        let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|source| SourceError::Subscribe {
                topics: settings.topics.clone(),
                source,
            })?;
        Ok(Self {
            consumer: Arc::new(consumer),
            reset_to_end: settings.start_from == "latest",
            held_back: Mutex::new(None),
            topic_names: Mutex::default(),
            topics: settings.topics.clone(),
        })
    }

    /// Waits for the next record, then appends up to `max - 1` more that librdkafka has
    /// already fetched, without waiting for them: the run loop then handles a batch per wake
    /// instead of a record. A batch ends before the first record polled after a rebalance
    /// event, which is kept for the next call, so the caller can take the events between
    /// the records before and after them, exactly as if it had received one at a time.
    /// Cancellation-safe: a record is only taken from librdkafka when it is returned.
    pub async fn next_batch<'s>(
        &'s self,
        max: usize,
        out: &mut Vec<Received<'s>>,
    ) -> Result<(), SourceError> {
        let held = self.held_back.lock().expect("held-back lock").take();
        let first = match held {
            Some(record) => Received::owned(record),
            None => {
                let mut stream = self.consumer.stream();
                let msg = stream.next().await.expect("Kafka streams never end")?;
                let names = &mut self.topic_names.lock().expect("topic names lock");
                Received::new(msg, names)
            }
        };
        out.push(first);
        let context = self.consumer.context();
        if context.events_pending.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut names = self.topic_names.lock().expect("topic names lock");
        // Polled with a waker that does nothing: a record not yet fetched ends the batch.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut stream = self.consumer.stream();
        while out.len() < max {
            let std::task::Poll::Ready(Some(next)) = stream.poll_next_unpin(&mut cx) else {
                break;
            };
            let record = match next {
                Ok(msg) => Received::new(msg, &mut names),
                // librdkafka reconnects by itself: said here, and the batch so far returned.
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka error while consuming");
                    break;
                }
            };
            if context.events_pending.load(Ordering::Acquire) {
                *self.held_back.lock().expect("held-back lock") = Some(record.into_record());
                break;
            }
            out.push(record);
        }
        Ok(())
    }

    /// Rebalance events since the last call, oldest first.
    pub fn take_events(&self) -> Vec<PartitionEvent> {
        let context = self.consumer.context();
        let mut events = context.events.lock().expect("event lock");
        context.events_pending.store(false, Ordering::Release);
        std::mem::take(&mut *events)
    }

    /// Commits the given next-offsets, synchronously (it blocks until the broker answered).
    pub fn commit(&self, commits: &[(TopicPartition, i64)]) -> Result<(), SourceError> {
        if commits.is_empty() {
            return Ok(());
        }
        Ok(commit_with(
            self.consumer.as_ref(),
            commits,
            CommitMode::Sync,
        )?)
    }

    /// Stops fetching `tps` while still polling, so the worker keeps its group membership
    /// (max.poll.interval.ms) while it waits for the lake.
    pub fn pause(&self, tps: &[TopicPartition]) -> Result<(), SourceError> {
        if tps.is_empty() {
            return Ok(());
        }
        Ok(self.consumer.pause(&partition_list(tps)?)?)
    }

    pub fn resume(&self, tps: &[TopicPartition]) -> Result<(), SourceError> {
        if tps.is_empty() {
            return Ok(());
        }
        Ok(self.consumer.resume(&partition_list(tps)?)?)
    }

    /// Moves the fetch position of `tp` back to the group's committed offset (or where
    /// `auto.offset.reset` says when none is committed), so that records this worker fetched
    /// but never landed are read again. Blocks for a broker round trip.
    pub fn rewind_to_committed(&self, tp: &TopicPartition) -> Result<(), SourceError> {
        let offset = match self.committed(tp)? {
            Some(o) => Offset::Offset(o),
            // Nothing committed: start where a new member would.
            None if self.reset_to_end => Offset::End,
            None => Offset::Beginning,
        };
        Ok(self
            .consumer
            .seek(&tp.topic, tp.partition, offset, BROKER_TIMEOUT)?)
    }

    /// The group's committed offset of `tp`, if any. Blocks for a broker round trip.
    fn committed(&self, tp: &TopicPartition) -> Result<Option<i64>, SourceError> {
        Ok(self.committed_offsets(std::slice::from_ref(tp))?[0])
    }

    /// The group's committed offset on each of `tps` (`None` where it never committed), in
    /// one offset fetch.
    fn committed_offsets(&self, tps: &[TopicPartition]) -> Result<Vec<Option<i64>>, SourceError> {
        let mut tpl = TopicPartitionList::new();
        for tp in tps {
            tpl.add_partition(&tp.topic, tp.partition);
        }
        let committed = self.consumer.committed_offsets(tpl, BROKER_TIMEOUT)?;
        Ok(tps
            .iter()
            .map(|tp| {
                match committed
                    .find_partition(&tp.topic, tp.partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(o)) => Some(o),
                    _ => None,
                }
            })
            .collect())
    }

    /// Every partition of `topics` as the brokers know them (not only this worker's). Blocks
    /// for a broker round trip per topic. A topic the brokers do not know yet has none.
    pub fn all_partitions(&self, topics: &[String]) -> Result<Vec<TopicPartition>, SourceError> {
        let mut out = Vec::new();
        for topic in topics {
            let metadata = self
                .consumer
                .fetch_metadata(Some(topic), Duration::from_secs(10))?;
            for t in metadata.topics() {
                out.extend(
                    t.partitions()
                        .iter()
                        .map(|p| TopicPartition::new(t.name(), p.id())),
                );
            }
        }
        out.sort();
        Ok(out)
    }

    /// Where the group stands on `tp` and where the partition ends: the committed offset (if
    /// any) and the low and high watermarks. Blocks for broker round trips.
    pub fn committed_and_end(
        &self,
        tp: &TopicPartition,
    ) -> Result<(Option<i64>, i64, i64), SourceError> {
        let committed = self.committed(tp)?;
        let (low, high) =
            self.consumer
                .fetch_watermarks(&tp.topic, tp.partition, BROKER_TIMEOUT)?;
        Ok((committed, low, high))
    }

    /// Where the group stands on each of `tps` and where each ends, as `committed_and_end`
    /// but with one offset fetch for all of them. Blocks for broker round trips.
    pub fn group_positions(
        &self,
        tps: &[TopicPartition],
    ) -> Result<Vec<GroupPosition>, SourceError> {
        let committed = self.committed_offsets(tps)?;
        let mut out = Vec::with_capacity(tps.len());
        for (tp, c) in tps.iter().zip(committed) {
            let (low, high) =
                self.consumer
                    .fetch_watermarks(&tp.topic, tp.partition, BROKER_TIMEOUT)?;
            out.push(GroupPosition {
                tp: tp.clone(),
                committed: c,
                low,
                high,
            });
        }
        Ok(out)
    }

    /// Leaves the group and joins it again, so that its members' assignments are computed
    /// afresh: the way out when the group left partitions with no owner. This worker's
    /// partitions are revoked (the callback commits what landed) and events follow as for
    /// any rebalance.
    pub fn rejoin(&self) -> Result<(), SourceError> {
        self.consumer.unsubscribe();
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        self.consumer
            .subscribe(&topics)
            .map_err(|source| SourceError::Subscribe {
                topics: self.topics.clone(),
                source,
            })
    }

    /// The partitions the group currently assigns to this worker.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.consumer
            .assignment()
            .map(|tpl| partitions(&tpl))
            .unwrap_or_default()
    }

    pub fn lease(&self) -> Lease {
        Lease(self.consumer.clone())
    }

    /// Leaves the group cleanly so the partitions move to other workers at once, within
    /// `patience` whatever the group is doing.
    ///
    /// librdkafka can block forever destroying a consumer while a cooperative rebalance is in
    /// flight (the revocation's `incremental_unassign` waits with no timeout: librdkafka
    /// #4884, rust-rdkafka #509). So the consumer first unsubscribes and is polled until its
    /// assignment is empty (the revocation callback commits what landed), and is then
    /// destroyed on a thread of its own that is waited for until `patience` runs out.
    /// Call it once every other holder of the consumer (`Lease`) is gone.
    pub async fn close(self, patience: Duration) {
        let deadline = Instant::now() + patience;
        self.consumer.unsubscribe();
        while !self.assignment().is_empty() && Instant::now() < deadline {
            // Rebalance callbacks run inside `recv`; records still arriving are dropped.
            let _ = tokio::time::timeout(Duration::from_millis(50), self.consumer.recv()).await;
        }
        let _ = self.take_events();
        let consumer = self.consumer;
        let runtime = tokio::runtime::Handle::current();
        let (closed, closing) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _runtime = runtime.enter();
            drop(consumer);
            let _ = closed.send(());
        });
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        if tokio::time::timeout(left, closing).await.is_err() {
            tracing::warn!(
                ?patience,
                "the Kafka client did not close in time; leaving it behind"
            );
        }
    }
}

/// Offsets a group has committed, and the end offsets, for every partition of `topic`.
/// Used by `sluice demo`, tests and operators' checks; it does not join the group.
pub fn group_progress(
    bootstrap: &str,
    group: &str,
    topic: &str,
    timeout: Duration,
) -> Result<BTreeMap<i32, (Option<i64>, i64)>, SourceError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(SourceError::Create)?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
    }
    let committed = consumer.committed_offsets(tpl, timeout)?;
    let mut out = BTreeMap::new();
    for e in committed.elements() {
        let (_, high) = consumer.fetch_watermarks(topic, e.partition(), timeout)?;
        let c = match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        };
        out.insert(e.partition(), (c, high));
    }
    Ok(out)
}
