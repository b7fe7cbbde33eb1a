//! Delta table mode (`sink.table`): a landed data file waits here for its table's commit,
//! and only a committed file releases its offsets to the Kafka commit. One commit per table
//! is in flight at a time; it takes up to `table_commit_files` queued files once the oldest
//! has waited `flush.max_age` (all of them when draining), with each partition's mark: the
//! next offset and the lake epoch this worker holds, which fences a stale owner.

use std::collections::HashSet;

use sluice_config::TableSettings;
use sluice_delta::{
    grow_schema, ArrowDataType, ArrowField, ArrowSchema, Commit, Committed, DataFile,
    PartitionMark, Table, TableError,
};
use tokio::sync::Mutex as AsyncMutex;

use super::*;
use crate::schedule::ExportedFile;

/// A table handle shared by commits and replay lookups; `None` until the table exists.
type Handle = Arc<AsyncMutex<Option<Table>>>;

/// What a landing of a table's data file reports.
pub(crate) struct TableFile {
    /// The table root in the lake.
    pub(crate) table: String,
    pub(crate) file: DataFile,
    pub(crate) schema: ArrowSchema,
}

pub(crate) struct Queued {
    pub(crate) landed: TableFile,
    /// Counted and listed in its run's manifest once a commit names it.
    exported: ExportedFile,
    pub(crate) tp: TopicPartition,
    pub(crate) generation: u64,
    pub(crate) first_offset: i64,
    pub(crate) next_offset: i64,
    pub(crate) epoch: u64,
    since: Instant,
}

pub(crate) struct CommitDone {
    pub(crate) table: String,
    pub(crate) files: Vec<Queued>,
    /// `None` when no file was left to commit (their partitions were revoked meanwhile).
    pub(crate) result: Result<Option<TableCommit>, TableError>,
}

/// A commit that landed.
pub(crate) struct TableCommit {
    /// The version that holds the commit's files.
    pub(crate) version: i64,
    /// What became of each file of the commit task, in order.
    pub(crate) fates: Vec<FileFate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileFate {
    /// This commit added it to the table.
    Added,
    /// The table held it already (an earlier attempt or a predecessor committed it).
    Held,
    /// Left out: its partition was revoked before the commit.
    LeftOut,
}

pub(crate) struct Tables {
    settings: TableSettings,
    app: String,
    max_age: Duration,
    /// Shared with replay lookups, which hold only `&self`.
    handles: Mutex<HashMap<String, Handle>>,
    queued: HashMap<String, Vec<Queued>>,
    committing: HashSet<String>,
    pub(crate) commits: JoinSet<CommitDone>,
}

impl Tables {
    pub(crate) fn new(settings: TableSettings, app: String, max_age: Duration) -> Self {
        Self {
            settings,
            app,
            max_age,
            handles: Mutex::default(),
            queued: HashMap::new(),
            committing: HashSet::new(),
            commits: JoinSet::new(),
        }
    }

    /// The root of `signal`'s table (late records diverted under `_late/` get their own).
    pub(crate) fn root(&self, signal: &SignalName, prefix: &str) -> String {
        format!("{prefix}{}", table_root(&self.settings.path, signal))
    }

    pub(crate) fn partition_values(
        &self,
        signal: &SignalName,
        window: &Window,
    ) -> Vec<(String, String)> {
        self.settings.partition_values(signal.as_str(), window)
    }

    fn handle(&self, table: &str) -> Handle {
        self.handles
            .lock()
            .expect("handles lock")
            .entry(table.to_string())
            .or_default()
            .clone()
    }

    pub(crate) fn waiting(&self) -> usize {
        self.queued.values().map(Vec::len).sum()
    }

    /// `file`'s table data file, waiting for its table's commit under the claim `epoch`.
    pub(crate) fn queue(&mut self, landed: TableFile, file: &LandedFile, epoch: u64) {
        self.queued
            .entry(landed.table.clone())
            .or_default()
            .push(Queued {
                landed,
                exported: ExportedFile::of(file),
                tp: file.tp.clone(),
                generation: file.generation,
                first_offset: file.first_offset,
                next_offset: file.last_offset + 1,
                epoch,
                since: Instant::now(),
            });
    }

    /// Files that a failed commit took, back at the head of their queue.
    pub(crate) fn requeue(&mut self, table: &str, files: Vec<Queued>) {
        let queue = self.queued.entry(table.to_string()).or_default();
        let rest = std::mem::replace(queue, files);
        queue.extend(rest);
    }

    pub(crate) fn committed(&mut self, table: &str) {
        self.committing.remove(table);
    }

    /// Gives up on `table`'s waiting files (at shutdown, after its commit failed).
    pub(crate) fn discard(&mut self, table: &str) {
        self.queued.remove(table);
    }

    /// A partition no longer owned: its uncommitted files are dropped (their offsets were
    /// never committed, so its next owner lands and commits them).
    pub(crate) fn forget(&mut self, tp: &TopicPartition) {
        for files in self.queued.values_mut() {
            files.retain(|q| &q.tp != tp);
        }
    }

    /// Starts the commits that are due: every table's, when `all`.
    pub(crate) fn start_due(&mut self, all: bool, ctx: &CommitContext) {
        let due: Vec<String> = self
            .queued
            .iter()
            .filter(|(table, files)| {
                !files.is_empty()
                    && !self.committing.contains(*table)
                    && (all
                        || files.len() >= self.settings.commit_files
                        || files[0].since.elapsed() >= self.max_age
                        // A scheduled run's files are committed as they land (the
                        // schedule, not age, made them).
                        || files.iter().any(|q| q.exported.run.is_some()))
            })
            .map(|(table, _)| table.clone())
            .collect();
        for table in due {
            let queue = self.queued.get_mut(&table).expect("due table");
            let take = queue.len().min(self.settings.commit_files);
            let files: Vec<Queued> = queue.drain(..take).collect();
            self.committing.insert(table.clone());
            let handle = self.handle(&table);
            let partition_columns = self.settings.partition_columns();
            // A revocation waits for these like for landings (see `run_with`).
            let landings: Vec<_> = files.iter().map(|q| ctx.inflight.start(&q.tp)).collect();
            let (lake, app, metrics, shutdown, epochs) = (
                ctx.lake.clone(),
                self.app.clone(),
                ctx.metrics.clone(),
                ctx.shutdown.clone(),
                ctx.epochs.clone(),
            );
            let write_timeout = ctx.write_timeout;
            let span = tracing::info_span!("table_commit", table = %table, files = files.len());
            self.commits.spawn(
                async move {
                    let _landings = landings;
                    let target = Target {
                        lake: &lake,
                        app: &app,
                        handle: &handle,
                        table: &table,
                        partition_columns: &partition_columns,
                    };
                    let result = target
                        .commit_with_retries(&files, &metrics, &shutdown, &epochs, write_timeout)
                        .await;
                    CommitDone {
                        table,
                        files,
                        result,
                    }
                }
                .instrument(span),
            );
        }
    }

    /// The offset ranges of `tp`'s files in `dir` (relative to the table root) that the table
    /// at `table` has committed: what a replay skips. Files that landed but were never
    /// committed are not in it, so their records are landed and committed again.
    pub(crate) async fn committed_ranges(
        &self,
        lake: &Lake,
        table: &str,
        dir: &str,
        tp: &TopicPartition,
    ) -> Result<LandedRanges, PipelineError> {
        let handle = self.handle(table);
        let mut guard = handle.lock().await;
        if guard.is_none() {
            *guard = Table::open(lake, table, &self.app)
                .await
                .map_err(table_error)?;
        }
        let mut ranges = LandedRanges::default();
        let Some(t) = guard.as_mut() else {
            return Ok(ranges);
        };
        t.refresh().await.map_err(table_error)?;
        for path in t.record_files().map_err(table_error)? {
            let Some(name) = path.strip_prefix(dir) else {
                continue;
            };
            if name.contains('/') {
                continue;
            }
            if let Some((first, last)) = parse_offset_file_name(name, &tp.topic, tp.partition) {
                ranges.insert(first, last);
            }
        }
        Ok(ranges)
    }
}

/// The root of `signal`'s table in the lake, from `sink.table_path`.
pub(crate) fn table_root(path: &PathTemplate, signal: &SignalName) -> String {
    let root = path.render(&PathValues {
        signal,
        window: Window::containing(0, Granularity::Day),
        topic: "",
        partition: 0,
        first_offset: 0,
        last_offset: 0,
        ext: "",
    });
    root.trim_end_matches('/').to_string()
}

/// What commit tasks need from the worker.
pub(crate) struct CommitContext<'a> {
    pub(crate) lake: &'a Lake,
    pub(crate) metrics: &'a Metrics,
    pub(crate) shutdown: &'a CancellationToken,
    pub(crate) inflight: &'a Arc<InFlight>,
    pub(crate) epochs: &'a SharedEpochs,
    pub(crate) write_timeout: Duration,
}

fn table_error(e: TableError) -> PipelineError {
    PipelineError::Table(Box::new(e))
}

/// The table one commit task writes to.
struct Target<'a> {
    lake: &'a Lake,
    app: &'a str,
    handle: &'a Handle,
    table: &'a str,
    partition_columns: &'a [String],
}

impl Target<'_> {
    /// One commit of `files`, tried again (each attempt bounded by `write_timeout`) until it
    /// lands, the worker is fenced, or shutdown. Files of partitions this worker no longer
    /// holds (revoked meanwhile) are left out of each attempt.
    async fn commit_with_retries(
        &self,
        files: &[Queued],
        metrics: &Metrics,
        shutdown: &CancellationToken,
        epochs: &SharedEpochs,
        write_timeout: Duration,
    ) -> Result<Option<TableCommit>, TableError> {
        let mut backoff = INITIAL_STORAGE_BACKOFF;
        // After a failed attempt (one that may have written its log entry before timing
        // out), a file the table holds is this task's own.
        let mut retried = false;
        loop {
            let live: Vec<bool> = {
                let held = epochs.lock().expect("epochs lock");
                files
                    .iter()
                    .map(|q| held.get(&q.tp) == Some(&q.epoch))
                    .collect()
            };
            let taken: Vec<&Queued> = files
                .iter()
                .zip(&live)
                .filter(|(_, l)| **l)
                .map(|(q, _)| q)
                .collect();
            if taken.is_empty() {
                return Ok(None);
            }
            let attempt = tokio::time::timeout(write_timeout, self.commit_once(&taken)).await;
            let error = match attempt {
                Ok(Ok(done)) => {
                    metrics
                        .table_commits
                        .with_label_values(&["committed"])
                        .inc();
                    let fates = files
                        .iter()
                        .zip(live)
                        .map(|(q, live)| match live {
                            false => FileFate::LeftOut,
                            true if !retried && done.held.contains(&q.landed.file.path) => {
                                FileFate::Held
                            }
                            true => FileFate::Added,
                        })
                        .collect();
                    return Ok(Some(TableCommit {
                        version: done.version,
                        fates,
                    }));
                }
                Ok(Err(e @ TableError::Fenced { .. })) => {
                    metrics.table_commits.with_label_values(&["fenced"]).inc();
                    return Err(e);
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("took longer than {write_timeout:?}"),
            };
            retried = true;
            metrics.table_commits.with_label_values(&["retried"]).inc();
            tracing::warn!(error = %error, retry_in = ?backoff, "table commit failed; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => {
                    return Err(TableError::Abandoned { path: self.table.to_string() })
                }
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_STORAGE_BACKOFF);
        }
    }

    async fn commit_once(&self, files: &[&Queued]) -> Result<Committed, TableError> {
        let mut guard = self.handle.lock().await;
        if guard.is_none() {
            // Created from the first file's columns; later files grow it. A record field
            // named like a partition column (`signal` in a shared table) is that column.
            let mut fields: Vec<_> = files[0]
                .landed
                .schema
                .fields()
                .iter()
                .filter(|f| !self.partition_columns.contains(f.name()))
                .cloned()
                .collect();
            fields.extend(
                self.partition_columns
                    .iter()
                    .map(|c| Arc::new(string_field(c))),
            );
            let schema = ArrowSchema::new(fields);
            let table = Table::open_or_create(
                self.lake,
                self.table,
                self.app,
                &schema,
                self.partition_columns,
            )
            .await?;
            *guard = Some(table);
        }
        let t = guard.as_mut().expect("opened");
        t.refresh().await?;
        let mut schema = t.schema()?;
        let mut grew = false;
        for q in files {
            let (more, texts) = grow_schema(&schema, &q.landed.schema);
            if !texts.is_empty() {
                tracing::warn!(file = %q.landed.file.path, fields = ?texts, "fields whose type conflicts with the table's: the table holds them as text from now on (strings as they are, other values as JSON text)");
            }
            if let Some(more) = more {
                (schema, grew) = (more, true);
            }
        }
        let mut marks: Vec<PartitionMark> = Vec::new();
        for q in files {
            match marks
                .iter_mut()
                .find(|m| *m.topic == *q.tp.topic && m.partition == q.tp.partition)
            {
                Some(m) => m.next_offset = m.next_offset.max(q.next_offset),
                None => marks.push(PartitionMark {
                    topic: q.tp.topic.to_string(),
                    partition: q.tp.partition,
                    next_offset: q.next_offset,
                    epoch: q.epoch,
                }),
            }
        }
        t.commit_files(&Commit {
            files: files.iter().map(|q| q.landed.file.clone()).collect(),
            schema: grew.then_some(schema),
            marks,
        })
        .await
    }
}

fn string_field(name: &str) -> ArrowField {
    ArrowField::new(name, ArrowDataType::Utf8, true)
}

/// The next finished table commit; never, without tables.
pub(crate) async fn next_commit(
    tables: &mut Option<Tables>,
) -> Option<Result<CommitDone, tokio::task::JoinError>> {
    match tables {
        Some(t) if !t.commits.is_empty() => t.commits.join_next().await,
        _ => std::future::pending().await,
    }
}

impl Worker {
    pub(crate) fn start_table_commits(&mut self, all: bool) {
        let Some(tables) = &mut self.tables else {
            return;
        };
        let ctx = CommitContext {
            lake: &self.lake,
            metrics: &self.metrics,
            shutdown: &self.shutdown,
            inflight: &self.inflight,
            epochs: &self.epochs,
            write_timeout: self.write_timeouts.base(),
        };
        tables.start_due(all, &ctx);
    }

    /// A finished commit: its files' offsets may be committed to Kafka now, and its files
    /// are exported (counted, listed in their runs' manifests with the version); or, fenced,
    /// the partition is dropped (the newer owner lands its records) and the other
    /// partitions' files wait for the next commit.
    pub(crate) fn on_table_commit(
        &mut self,
        done: Result<CommitDone, tokio::task::JoinError>,
    ) -> Result<(), PipelineError> {
        let done = done.map_err(|e| PipelineError::Encode {
            path: "(table commit task)".into(),
            detail: e.to_string(),
        })?;
        let tables = self.tables.as_mut().expect("table mode");
        tables.committed(&done.table);
        match done.result {
            Ok(committed) => {
                {
                    let mut ledgers = self.ledgers.lock().expect("ledger lock");
                    for q in &done.files {
                        ledgers.release(&q.tp, q.generation, q.first_offset);
                    }
                }
                let Some(TableCommit { version, fates }) = committed else {
                    return Ok(());
                };
                tracing::info!(table = %done.table, version, files = done.files.len(), "committed to the table");
                for (q, fate) in done.files.iter().zip(fates) {
                    if fate == FileFate::LeftOut {
                        continue;
                    }
                    // A file the table held already was counted by whoever committed it.
                    if fate == FileFate::Added {
                        self.count_exported(&q.exported, false);
                    }
                    self.batch_runs.on_file(
                        &q.exported,
                        Some((&done.table, version)),
                        &self.lake,
                        &self.metrics,
                    );
                }
                Ok(())
            }
            Err(TableError::Fenced {
                topic,
                partition,
                epoch,
                ..
            }) => {
                let tp = TopicPartition::new(topic, partition);
                let (fenced, rest): (Vec<_>, Vec<_>) =
                    done.files.into_iter().partition(|q| q.tp == tp);
                tables.requeue(&done.table, rest);
                tracing::warn!(%tp, table = %done.table, files = fenced.len(), "a newer owner committed this partition to the table");
                if self.ownership.get(&tp).and_then(|o| o.epoch) == Some(epoch) {
                    self.fence(&tp);
                }
                Ok(())
            }
            Err(e) => {
                // Only at shutdown: the files stay uncommitted, and so do their offsets.
                tracing::warn!(table = %done.table, error = %e, "table commit abandoned");
                tables.requeue(&done.table, done.files);
                Ok(())
            }
        }
    }

    /// At shutdown, after every landing: commits every waiting file. A table whose commit
    /// fails now keeps its remaining files uncommitted (and their offsets with them).
    pub(crate) async fn drain_tables(&mut self) {
        self.start_table_commits(true);
        while let Some(done) = next_commit_if_any(&mut self.tables).await {
            let failed = match &done {
                Ok(d) if d.result.is_err() => Some(d.table.clone()),
                _ => None,
            };
            if let Err(e) = self.on_table_commit(done) {
                tracing::error!(error = %e, "table commit failed during shutdown");
            }
            if let (Some(table), Some(t)) = (failed, &mut self.tables) {
                t.discard(&table);
            }
            self.start_table_commits(true);
        }
    }
}

/// The next finished table commit, or `None` when none is running.
async fn next_commit_if_any(
    tables: &mut Option<Tables>,
) -> Option<Result<CommitDone, tokio::task::JoinError>> {
    tables.as_mut()?.commits.join_next().await
}
