//! Window-complete markers: once every partition of the pipeline's topics has landed all its
//! records of a window, and its watermark has passed the window's end plus the allowed
//! lateness, `_SUCCESS` files listing the window's files are written, so that downstream jobs
//! know the window is complete.
//!
//! Workers share no memory, so they share progress through the lake. Each owner writes its
//! partitions' progress to `_progress/{topic}/{partition}.json` (how far the partition has
//! landed, the watermark's history, which windows it has files in) *before* it commits those
//! offsets: the ledgers are gated on it. Any worker can then read every partition's progress,
//! work out up to where all windows are complete, and seal them: `{window directory}/_SUCCESS`
//! per signal (where the path template puts a signal's window in one directory) and
//! `_windows/{YYYY}/{MM}/{dd}[/{hh}[/{mm}]]/_SUCCESS` per window, listing every file. Markers
//! are written if absent, so workers sealing the same window at once agree;
//! `_windows/_sealed.json` says how far sealing has got.
//!
//! A partition with no record for `idle_partition` and nothing unlanded does not hold windows
//! open (like Flink's idleness). Once windows are sealed past it, its watermark is raised, so
//! that later records of those windows are late (diverted or dead-lettered, never appended).
//!
//! The watermark's history from the committed offset on travels with the progress, so a
//! worker taking a partition over classifies replayed records as late exactly as their first
//! owner did, and finds each in the file it landed in before.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sluice_core::{Granularity, PathTemplate, PathValues, SignalName, TopicPartition, Window};
use sluice_lake::{Lake, LakeError, Landed, PROGRESS_DIR};

/// Where window-level markers and the sealing pointer go, under the sink root.
const WINDOWS_DIR: &str = "_windows";
/// The marker's file name: Hadoop's and Spark's convention, skipped by their readers.
const MARKER: &str = "_SUCCESS";
/// Bounds one round's work after a long stall; the rest is sealed in the next rounds.
const MAX_WINDOWS_PER_ROUND: usize = 1_000;
/// An idle partition's owner rewrites its progress this often, to show it is still there...
pub(crate) const IDLE_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);
/// ...and idleness older than this no longer counts: an owner that died while its partition
/// was idle must not let windows be sealed past records nobody is reading.
const IDLE_STALE_MS: i64 = 180_000;

/// How the watermark (the latest window end seen) of one partition grew with its offsets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct WatermarkHistory {
    /// `(offset, watermark)`: records after `offset` see a watermark of at least `watermark`.
    /// Both never decrease.
    steps: VecDeque<(i64, i64)>,
}

impl WatermarkHistory {
    /// Notes a record at `offset` of a window ending at `end`; returns the watermark the
    /// record is judged by (its own window included). A record the history already covers (a
    /// replay after a takeover) is judged as its first owner judged it.
    pub(crate) fn observe(&mut self, offset: i64, end: i64) -> i64 {
        match self.steps.back() {
            Some(&(last, _)) if offset <= last => self.before(offset).map_or(end, |w| w.max(end)),
            last => {
                let watermark = last.map_or(i64::MIN, |s| s.1);
                if end > watermark {
                    self.steps.push_back((offset, end));
                    end
                } else {
                    watermark
                }
            }
        }
    }

    /// The watermark of the records before `offset`.
    pub(crate) fn before(&self, offset: i64) -> Option<i64> {
        self.steps
            .iter()
            .rev()
            .find(|(o, _)| *o < offset)
            .map(|s| s.1)
    }

    /// Records after `after` see a watermark of at least `watermark`.
    pub(crate) fn raise(&mut self, after: i64, watermark: i64) {
        let (last, current) = self.steps.back().copied().unwrap_or((i64::MIN, i64::MIN));
        if watermark > current {
            self.steps.push_back((after.max(last), watermark));
        }
    }

    /// Forgets what no record from `offset` on needs.
    pub(crate) fn prune(&mut self, offset: i64) {
        while self.steps.len() >= 2 && self.steps[1].0 < offset {
            self.steps.pop_front();
        }
    }
}

/// One partition's progress, as written to the lake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Progress {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// Every record before this offset is in a landed file (or needed none).
    pub(crate) landed_until: Option<i64>,
    /// No record for `idle_partition` and nothing unlanded.
    pub(crate) idle: bool,
    /// Windows (start, ms) the partition has files in, not known to be sealed, and the signals.
    pub(crate) windows: BTreeMap<i64, BTreeSet<String>>,
    pub(crate) history: WatermarkHistory,
    pub(crate) owner: String,
    pub(crate) epoch: u64,
    /// When the owner wrote it (ms since the epoch).
    pub(crate) updated_ms: i64,
}

impl Progress {
    /// The watermark of the records before `landed_until`.
    pub(crate) fn watermark_ms(&self) -> Option<i64> {
        self.landed_until.and_then(|o| self.history.before(o))
    }

    /// Whether the two say the same, whenever they were written.
    pub(crate) fn same_as(&self, other: &Progress) -> bool {
        *self
            == Progress {
                updated_ms: self.updated_ms,
                ..other.clone()
            }
    }
}

pub(crate) fn progress_path(tp: &TopicPartition) -> String {
    format!("{PROGRESS_DIR}/{}/{}.json", tp.topic, tp.partition)
}

/// What an owner keeps per partition.
#[derive(Debug)]
pub(crate) struct PartitionProgress {
    pub(crate) history: WatermarkHistory,
    pub(crate) windows: BTreeMap<i64, BTreeSet<String>>,
    pub(crate) last_record: Instant,
    /// The last progress written, to skip writes that would change nothing.
    pub(crate) written: Option<Progress>,
    pub(crate) written_at: Option<Instant>,
}

impl PartitionProgress {
    /// Starts where the previous owner's progress (if any) left off.
    pub(crate) fn adopt(previous: Option<Progress>) -> Self {
        let (history, windows) = previous.map_or_else(Default::default, |p| (p.history, p.windows));
        Self {
            history,
            windows,
            last_record: Instant::now(),
            written: None,
            written_at: None,
        }
    }

    pub(crate) fn landed_in(&mut self, window: Window, signal: &str) {
        if !self
            .windows
            .get(&window.start_ms)
            .is_some_and(|s| s.contains(signal))
        {
            self.windows
                .entry(window.start_ms)
                .or_default()
                .insert(signal.to_string());
        }
    }

    /// Windows ending before `sealed_until` are sealed: their records are late from now on.
    pub(crate) fn sealed(
        &mut self,
        sealed_until: i64,
        granularity: Granularity,
        lateness_ms: i64,
        last_consumed: Option<i64>,
    ) {
        self.windows
            .retain(|start, _| start + granularity.millis() >= sealed_until);
        self.history.raise(
            last_consumed.unwrap_or(i64::MIN),
            sealed_until.saturating_add(lateness_ms),
        );
    }
}

/// Windows ending before the returned time are complete on every partition; `None` while some
/// partition has no progress yet or no watermark. Idle partitions (as of `now_ms`: idleness
/// not refreshed lately does not count) do not hold windows open, unless all are idle: then
/// the furthest partition says how far.
pub(crate) fn complete_until(
    partitions: &[TopicPartition],
    progress: &HashMap<TopicPartition, Progress>,
    lateness_ms: i64,
    now_ms: i64,
) -> Option<i64> {
    let mut busy: Option<i64> = None;
    let mut furthest: Option<i64> = None;
    let mut all_idle = true;
    for tp in partitions {
        let p = progress.get(tp)?;
        let complete = p.watermark_ms().map(|w| w.saturating_sub(lateness_ms));
        if p.idle && now_ms - p.updated_ms <= IDLE_STALE_MS {
            furthest = furthest.max(complete);
        } else {
            all_idle = false;
            let complete = complete?;
            busy = Some(busy.map_or(complete, |b| b.min(complete)));
        }
    }
    if all_idle {
        furthest
    } else {
        busy
    }
}

/// The windows to seal now: from the first one not sealed yet (or the first one with files,
/// before anything was sealed) to the last one ending before `until`. Empty windows are sealed
/// too: a downstream job waiting for an hour learns that it is complete with no data.
pub(crate) fn windows_to_seal(
    sealed_until: Option<i64>,
    until: i64,
    first_with_files: Option<i64>,
    granularity: Granularity,
) -> Vec<Window> {
    let first = match sealed_until {
        Some(s) => Window::containing(s - 1, granularity),
        None => match first_with_files {
            Some(start) => Window::containing(start, granularity),
            None => return Vec::new(),
        },
    };
    let mut out = Vec::new();
    let mut w = first;
    while w.end_ms() < until && out.len() < MAX_WINDOWS_PER_ROUND {
        out.push(w);
        w = Window::containing(w.end_ms(), granularity);
    }
    out
}

/// The window-level marker's path.
pub(crate) fn window_marker_path(w: Window) -> String {
    let [y, m, d, h, min] = w.calendar_parts().map(|(_, v)| v);
    match w.granularity {
        Granularity::Day => format!("{WINDOWS_DIR}/{y}/{m}/{d}/{MARKER}"),
        Granularity::Hour => format!("{WINDOWS_DIR}/{y}/{m}/{d}/{h}/{MARKER}"),
        Granularity::Minute => format!("{WINDOWS_DIR}/{y}/{m}/{d}/{h}/{min}/{MARKER}"),
    }
}

fn sealed_pointer_path() -> String {
    format!("{WINDOWS_DIR}/_sealed.json")
}

#[derive(Serialize, Deserialize)]
struct SealedPointer {
    /// Every window ending before this (ms since the epoch) is sealed.
    sealed_until_ms: i64,
    sealed_until: String,
}

/// What a marker round needs besides the lake.
pub(crate) struct Sealer {
    pub(crate) lake: Lake,
    pub(crate) pipeline: String,
    pub(crate) path: PathTemplate,
    pub(crate) granularity: Granularity,
    pub(crate) lateness_ms: i64,
    /// Signals the pipeline exports by name: they get markers even for windows without data.
    pub(crate) named_signals: Vec<String>,
    /// The source topics, all of whose partitions must pass a window.
    pub(crate) topics: Vec<String>,
    /// After this long without a record (and nothing unlanded) a partition is idle.
    pub(crate) idle_partition: std::time::Duration,
    /// Delta mode (`sink.table_path`): markers list only files the table holds, and name its
    /// version.
    pub(crate) table_path: Option<PathTemplate>,
}

/// A table as a marker sees it: the version read and every file it holds (lake paths).
struct TableView {
    root: String,
    version: i64,
    files: HashSet<String>,
}

/// One round's work: progress to write, then every partition to read.
pub(crate) struct RoundInput {
    /// With the epoch the owner holds and the ledger generation the progress belongs to.
    pub(crate) writes: Vec<(u64, u64, Progress)>,
    pub(crate) partitions: Vec<TopicPartition>,
}

#[derive(Default)]
pub(crate) struct RoundOutput {
    /// Progress written: `(generation, progress)`.
    pub(crate) written: Vec<(u64, Progress)>,
    /// Partitions another worker has claimed since.
    pub(crate) fenced: Vec<TopicPartition>,
    /// How far windows are sealed, when known.
    pub(crate) sealed_until: Option<i64>,
    pub(crate) markers_written: u64,
}

impl Sealer {
    /// Writes this worker's progress, then seals what every partition's progress allows.
    /// Storage errors end the round early; the next round tries again.
    pub(crate) async fn round(&self, input: RoundInput) -> (RoundOutput, Option<LakeError>) {
        let mut out = RoundOutput::default();
        let error = self.round_into(input, &mut out).await.err();
        (out, error)
    }

    async fn round_into(&self, input: RoundInput, out: &mut RoundOutput) -> Result<(), LakeError> {
        for (epoch, generation, progress) in input.writes {
            let tp = TopicPartition::new(progress.topic.clone(), progress.partition);
            if self.lake.superseded(&tp.topic, tp.partition, epoch).await? {
                out.fenced.push(tp);
                continue;
            }
            let body = serde_json::to_vec(&progress).expect("JSON");
            self.lake.overwrite(&progress_path(&tp), body).await?;
            out.written.push((generation, progress));
        }
        let pointer = match self.lake.read_if_exists(&sealed_pointer_path()).await? {
            Some(body) => serde_json::from_slice::<SealedPointer>(&body)
                .ok()
                .map(|p| p.sealed_until_ms),
            None => None,
        };
        out.sealed_until = pointer;
        // What this round just wrote need not be read back.
        let mut progress: HashMap<TopicPartition, Progress> = out
            .written
            .iter()
            .map(|(_, p)| (TopicPartition::new(p.topic.clone(), p.partition), p.clone()))
            .collect();
        for tp in &input.partitions {
            if progress.contains_key(tp) {
                continue;
            }
            if let Some(body) = self.lake.read_if_exists(&progress_path(tp)).await? {
                match serde_json::from_slice::<Progress>(&body) {
                    Ok(p) => {
                        progress.insert(tp.clone(), p);
                    }
                    Err(e) => {
                        tracing::warn!(%tp, error = %e, "unreadable progress; it holds markers back until its owner rewrites it")
                    }
                }
            }
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let Some(until) = complete_until(&input.partitions, &progress, self.lateness_ms, now_ms)
        else {
            return Ok(());
        };
        if pointer.is_some_and(|p| p >= until) {
            return Ok(());
        }
        let mut with_files: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
        for p in progress.into_values() {
            for (start, signals) in p.windows {
                with_files.entry(start).or_default().extend(signals);
            }
        }
        let windows = windows_to_seal(
            pointer,
            until,
            with_files.keys().next().copied(),
            self.granularity,
        );
        let signals_of: Vec<BTreeSet<String>> = windows
            .iter()
            .map(|w| {
                let mut signals = with_files.remove(&w.start_ms).unwrap_or_default();
                signals.extend(self.named_signals.iter().cloned());
                signals
            })
            .collect();
        // Tables are read once a round, before any marker: one that cannot be read seals
        // nothing, and the pointer stays for a later round.
        let Some(views) = self.table_views(signals_of.iter().flatten()).await else {
            return Ok(());
        };
        for (w, signals) in windows.iter().zip(&signals_of) {
            out.markers_written += self.seal(*w, signals, &input.partitions, &views).await?;
        }
        // Capped rounds continue after their last window next time.
        let sealed_until = match windows.last() {
            Some(last) if windows.len() == MAX_WINDOWS_PER_ROUND => last.end_ms() + 1,
            _ => until,
        };
        let pointer = SealedPointer {
            sealed_until_ms: sealed_until,
            sealed_until: rfc3339(sealed_until),
        };
        self.lake
            .overwrite(
                &sealed_pointer_path(),
                serde_json::to_vec_pretty(&pointer).expect("JSON"),
            )
            .await?;
        out.sealed_until = Some(sealed_until);
        if !windows.is_empty() {
            tracing::info!(
                windows = windows.len(),
                sealed_until = %rfc3339(sealed_until),
                "sealed windows"
            );
        }
        Ok(())
    }

    /// Writes the markers of one window; returns how many were new.
    async fn seal(
        &self,
        w: Window,
        signals: &BTreeSet<String>,
        partitions: &[TopicPartition],
        views: &BTreeMap<String, Option<TableView>>,
    ) -> Result<u64, LakeError> {
        let mut written = 0;
        let mut all_files = Vec::new();
        for signal in signals {
            // Progress and `named_signals` hold names as the paths do: sanitized already.
            let name = SignalName::from_sanitized(signal);
            let view = views.get(signal).and_then(Option::as_ref);
            let dirs: BTreeSet<String> = partitions
                .iter()
                .map(|tp| {
                    self.path.directory(&PathValues {
                        signal: &name,
                        window: w,
                        topic: &tp.topic,
                        partition: tp.partition,
                        first_offset: 0,
                        last_offset: 0,
                        ext: "",
                    })
                })
                .collect();
            let mut files = Vec::new();
            for dir in &dirs {
                for f in self.lake.list(dir).await? {
                    let file_name = &f.path[dir.len()..];
                    // This directory's own data files: not deeper ones, not markers, and
                    // with a table only those it holds (not orphans or replaced files).
                    let held = view.is_none_or(|v| v.files.contains(&f.path));
                    if !file_name.contains('/') && !file_name.starts_with('_') && held {
                        files.push(serde_json::json!({
                            "path": f.path,
                            "name": file_name,
                            "size": f.size,
                            "signal": signal,
                        }));
                    }
                }
            }
            // A per-signal marker only where the signal's window is one directory.
            if let [dir] = dirs.iter().collect::<Vec<_>>()[..] {
                let body = self.marker_body(w, Some(signal), &files, view.into_iter());
                if self.lake.land(&format!("{dir}{MARKER}"), body).await? == Landed::Written {
                    written += 1;
                }
            }
            all_files.extend(files);
        }
        let tables = signals
            .iter()
            .filter_map(|s| views.get(s).and_then(Option::as_ref));
        let body = self.marker_body(w, None, &all_files, tables);
        if self.lake.land(&window_marker_path(w), body).await? == Landed::Written {
            written += 1;
        }
        Ok(written)
    }

    /// In Delta mode, each signal's table as it is now (`None` for a table not created yet);
    /// `None` when one cannot be read.
    async fn table_views(
        &self,
        signals: impl Iterator<Item = &String>,
    ) -> Option<BTreeMap<String, Option<TableView>>> {
        let mut views = BTreeMap::new();
        let Some(path) = &self.table_path else {
            return Some(views);
        };
        let mut by_root: HashMap<String, Option<(i64, HashSet<String>)>> = HashMap::new();
        for signal in signals {
            let root = crate::tables::table_root(path, &SignalName::from_sanitized(signal));
            if !by_root.contains_key(&root) {
                match self.read_table(&root).await {
                    Ok(read) => by_root.insert(root.clone(), read),
                    Err(e) => {
                        tracing::warn!(table = %root, error = %e, "cannot read the table; its windows are sealed later");
                        return None;
                    }
                };
            }
            let view = by_root[&root].clone().map(|(version, files)| TableView {
                root,
                version,
                files,
            });
            views.insert(signal.clone(), view);
        }
        Some(views)
    }

    /// The version of the table at `root` and its files (lake paths); `None` before it exists.
    async fn read_table(
        &self,
        root: &str,
    ) -> Result<Option<(i64, HashSet<String>)>, sluice_delta::TableError> {
        let Some(t) = sluice_delta::Table::open(&self.lake, root, &self.pipeline).await? else {
            return Ok(None);
        };
        let files = t.files()?.into_iter().map(|f| format!("{root}/{f}"));
        Ok(Some((t.version(), files.collect())))
    }

    fn marker_body<'a>(
        &self,
        w: Window,
        signal: Option<&str>,
        files: &[serde_json::Value],
        tables: impl Iterator<Item = &'a TableView>,
    ) -> Vec<u8> {
        let bytes: u64 = files.iter().filter_map(|f| f["size"].as_u64()).sum();
        let mut marker = serde_json::json!({
            "pipeline": self.pipeline,
            "window_start": rfc3339(w.start_ms),
            "window_end": rfc3339(w.end_ms()),
            "sealed_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "files": files,
            "bytes": bytes,
        });
        if let Some(signal) = signal {
            marker["signal"] = signal.into();
        }
        // The table versions that hold the window complete: a reader can pin them.
        let versions: BTreeMap<&str, i64> = tables.map(|t| (t.root.as_str(), t.version)).collect();
        if !versions.is_empty() {
            marker["tables"] = serde_json::json!(versions);
        }
        serde_json::to_vec_pretty(&marker).expect("JSON")
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests;
