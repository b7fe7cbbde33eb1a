//! Landing buffers: where a buffer's file goes, which of its key's offsets already landed
//! (read from the lake), encoding and writing it in the background, and what the loop does
//! when a landing ends (release the offsets, count, fence or stop, start a queued one).
//! [`crate::landings::Landings`] owns the tasks and the queue.

use sluice_delta::DataFile;

use super::*;
use crate::landings::{LandingDone, Queued};
use crate::schedule::ExportedFile;
use crate::tables::TableFile;

/// A landed buffer, reported back to the loop.
pub(crate) struct LandedFile {
    pub(crate) tp: TopicPartition,
    pub(crate) path: String,
    pub(crate) run: Option<i64>,
    pub(crate) generation: u64,
    pub(crate) first_offset: i64,
    /// Records in the file, and records its format refused (dead-lettered instead).
    pub(crate) records: u64,
    pub(crate) refused: u64,
    pub(crate) dead_letter: bool,
    pub(crate) signal: String,
    pub(crate) bytes: u64,
    pub(crate) outcome: Landed,
    /// From taking the buffer out to the file having landed.
    pub(crate) took: Duration,
    /// The window of an on-time signal file (for window markers).
    pub(crate) window: Option<Window>,
    /// Table mode: the file, waiting for its table's commit.
    pub(crate) table: Option<crate::tables::TableFile>,
    pub(crate) last_offset: i64,
    pub(crate) epoch: Option<u64>,
}

impl Worker {
    /// The offset ranges of `key` already in landed files, read from the file names in its
    /// directory (the templates are offset-named, see `sluice_config`).
    pub(crate) async fn landed_ranges(
        &self,
        key: &BufferKey,
    ) -> Result<LandedRanges, PipelineError> {
        let layout = self.landings.layout(key);
        let dir = format!(
            "{}{}",
            layout.prefix,
            layout.template.directory(&layout.values(key, 0, 0))
        );
        if let (Some(tables), false) = (&self.tables, layout.dead_letter) {
            // What the table has committed, not what the directory holds: a file that landed
            // but was never committed is not in the table, so its records go in again.
            let table = tables.root(&layout.signal, layout.prefix);
            let inside = dir.strip_prefix(&format!("{table}/")).unwrap_or(&dir);
            return tables
                .committed_ranges(&self.lake, &table, inside, &key.tp)
                .await;
        }
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

    /// Lands `buffer`: queued, and started as a task once fewer than `LANDING_TASKS` run.
    /// `run`: the scheduled run (its time, ms) this landing belongs to, for its manifest.
    pub(crate) fn land(&mut self, buffer: Buffer, run: Option<i64>) {
        let generation = self
            .ledgers
            .lock()
            .expect("ledger lock")
            .get(&buffer.key.tp)
            .map_or(0, |l| l.generation());
        let epoch = self.ownership.get(&buffer.key.tp).and_then(|o| o.epoch);
        self.landings.queue(Queued {
            buffer,
            run,
            generation,
            epoch,
            taken: Instant::now(),
        });
        self.start_landings();
    }

    /// Starts queued landings while there is room for their tasks. Those of a partition
    /// being revoked are dropped: the callback no longer waits for them, and the next owner
    /// reads their records again.
    fn start_landings(&mut self) {
        while let Some(queued) = self.landings.next_to_start() {
            if !self.inflight.is_closed(&queued.buffer.key.tp) {
                self.spawn_landing(queued);
            }
        }
    }

    fn spawn_landing(&mut self, queued: Queued) {
        let Queued {
            buffer,
            run,
            generation,
            epoch,
            taken,
        } = queued;
        let layout = self.landings.layout(&buffer.key);
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
        // Table mode: where in which table the file goes, and its partition values.
        let table_target = match (&self.tables, dead_letter) {
            (Some(tables), false) => {
                let table = tables.root(&layout.signal, layout.prefix);
                let relative = path
                    .strip_prefix(&format!("{table}/"))
                    .unwrap_or(&path)
                    .to_string();
                Some((
                    table,
                    relative,
                    tables.partition_values(&layout.signal, &layout.window),
                ))
            }
            _ => None,
        };
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
        let timeouts = self.write_timeouts;
        let landing = self.inflight.start(&buffer.key.tp);
        let encode_budget = self.landings.encode_budget.clone();
        let tp = buffer.key.tp.clone();
        let held = buffer.lines.len() as u64;
        let encode_bytes = crate::encode_budget::estimate(options.format, held);
        // A record the format refuses is dead-lettered beside the others, in the day of its
        // data window, under its own offset.
        let refusals = Refusals {
            template: self.landings.dead_letter_path.clone(),
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
                    lines,
                    offsets,
                    ..
                } = buffer;
                let encode_error = |detail: String| PipelineError::Encode {
                    path: path.clone(),
                    detail,
                };
                // At most `LANDING_TASKS` tasks wait here at once: the rest wait as buffers in
                // the queue, holding no task state.
                let permit = encode_budget
                    .acquire(encode_bytes)
                    .await
                    .map_err(|e| encode_error(e.to_string()))?;
                let encoded = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    refusals::encode_buffer(lines, &offsets, &options)
                })
                .await
                .map_err(|e| encode_error(e.to_string()))?
                .map_err(encode_error)?;
                let guard = WriteGuard {
                    lake: &lake,
                    metrics: &metrics,
                    shutdown: &shutdown,
                    lease: &lease,
                    epoch,
                    tp: &key.tp,
                    timeouts,
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
                    let mut body = sluice_fold::refused_line(&key.tp, refused.offset, &refused.line, &refused.reason);
                    body.push(b'\n');
                    guard
                        .land(&refusals.path(&key.tp, refused.offset), body.into())
                        .await
                        .map_err(land_error)?;
                }
                let refused = encoded.refused.len() as u64;
                let mut table = None;
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
                        table = match table_target {
                            Some((table, relative, values)) => {
                                let (file, schema) = DataFile::from_parquet(relative, &body, values)
                                    .map_err(|e| encode_error(e.to_string()))?;
                                Some(TableFile { table, file, schema })
                            }
                            None => None,
                        };
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
                    took: taken.elapsed(),
                    window: marked_window,
                    table,
                    last_offset,
                    epoch,
                })
            }
            .instrument(span),
        );
        self.backpressure.landing(handle.id(), held);
        self.inflight.register(&tp, handle);
    }

    /// A landing ended: its outcome is taken in, and a queued one starts in its place.
    pub(crate) fn on_landed(&mut self, done: LandingDone) -> Result<(), PipelineError> {
        let taken = self.take_landed(done);
        self.start_landings();
        taken
    }

    fn take_landed(&mut self, done: LandingDone) -> Result<(), PipelineError> {
        let id = match &done {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        self.backpressure.landed(id);
        let mut file = match done {
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
        // In table mode a file is exported (counted, listed in its run's manifest) only
        // once its table's commit names it.
        let exported = match (file.table.take(), &mut self.tables, file.epoch) {
            // The offsets wait for the table's commit.
            (Some(landed), Some(tables), Some(epoch)) => {
                tables.queue(landed, &file, epoch);
                None
            }
            // Without a claim there is no mark to commit under: the offsets stay held, and
            // the partition's next owner commits these records.
            (Some(_), Some(_), None) => {
                tracing::warn!(tp = %file.tp, "a table file landed without a lake claim; left uncommitted");
                None
            }
            _ => {
                self.ledgers.lock().expect("ledger lock").release(
                    &file.tp,
                    file.generation,
                    file.first_offset,
                );
                Some(ExportedFile::of(&file))
            }
        };
        let format = if file.dead_letter {
            "ndjson"
        } else {
            self.landings.encoding.options.format.name()
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
        if let (Some(window), Some(p)) = (file.window, self.progress.get_mut(&file.tp)) {
            p.landed_in(window, &file.signal);
        }
        self.summary.records_dead_lettered += file.refused;
        if let Some(exported) = exported {
            self.count_exported(&exported, file.dead_letter);
            self.batch_runs
                .on_file(&exported, None, &self.lake, &self.metrics);
        }
        Ok(())
    }

    /// Counts an exported file's records: at landing, or in table mode at the commit that
    /// added it to its table.
    pub(crate) fn count_exported(&mut self, file: &ExportedFile, dead_letter: bool) {
        let totals = self.summary.signals.entry(file.signal.clone()).or_default();
        totals.records += file.records;
        if !dead_letter {
            self.metrics
                .records_landed
                .with_label_values(&[self.metrics.signal_label(&file.signal)])
                .inc_by(file.records);
            self.summary.records_landed += file.records;
        }
    }

    /// Lands every open buffer and waits for all landings.
    pub(crate) async fn drain(&mut self) -> Result<(), PipelineError> {
        for buffer in self.buffers.take_all() {
            self.land(buffer, None);
        }
        let mut first_error = None;
        while let Some(done) = self.landings.next_done().await {
            if let Err(e) = self.on_landed(done) {
                tracing::error!(error = %e, "landing failed during shutdown");
                first_error.get_or_insert(e);
            }
        }
        self.batch_runs.finish().await;
        first_error.map_or(Ok(()), Err)
    }
}
