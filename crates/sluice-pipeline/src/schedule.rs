//! Batch schedules (`flush.every`, `flush.cron`): landing every open buffer as one run at
//! each scheduled time, and the run's manifest once all of its files are exported: landed,
//! or in table mode committed to their tables (the manifest then names the versions).
//! [`BatchRuns`] owns the schedule, the runs still landing and the manifests being written;
//! the worker hands it the buffers' count at each run and every exported file.

use std::collections::BTreeMap;

use super::*;

/// Where scheduled runs' manifests go, under the sink root.
pub(crate) const MANIFEST_DIR: &str = "_manifests";

/// A scheduled run whose files are landing.
pub(crate) struct RunState {
    pending: usize,
    files: Vec<serde_json::Value>,
    /// Table mode: each table's version holding the run's files.
    tables: BTreeMap<String, i64>,
}

/// A landed file as it is counted and listed once it is part of the export: when it lands,
/// or in table mode when its table's commit names it.
pub(crate) struct ExportedFile {
    pub(crate) run: Option<i64>,
    /// In the lake, from the sink root.
    pub(crate) path: String,
    pub(crate) bytes: u64,
    pub(crate) records: u64,
    pub(crate) signal: String,
}

impl ExportedFile {
    pub(crate) fn of(file: &LandedFile) -> Self {
        Self {
            run: file.run,
            path: file.path.clone(),
            bytes: file.bytes,
            records: file.records,
            signal: file.signal.clone(),
        }
    }
}

/// The schedule's part of a worker: when the next run is due, the runs whose files are
/// still landing, and the manifests being written.
pub(crate) struct BatchRuns {
    schedule: Option<sluice_config::Schedule>,
    /// Whether each run gets a manifest (`flush.manifest`).
    manifest: bool,
    /// The scheduled time (ms) of the latest run started.
    last_run_ms: Option<i64>,
    runs: BTreeMap<i64, RunState>,
    manifests: JoinSet<()>,
    /// Manifests are named and signed by the pipeline and the worker.
    pipeline: String,
    worker_id: String,
}

impl BatchRuns {
    pub(crate) fn new(flush: &sluice_config::FlushPolicy, pipeline: &str, worker_id: &str) -> Self {
        Self {
            schedule: flush.schedule.clone(),
            manifest: flush.manifest,
            last_run_ms: None,
            runs: BTreeMap::new(),
            manifests: JoinSet::new(),
            pipeline: pipeline.to_string(),
            worker_id: worker_id.to_string(),
        }
    }

    /// The scheduled time of a run due now, once per time. The first boundary after start
    /// only marks where runs begin: what came before it is part of the next run.
    fn due(&mut self, now_ms: i64) -> Option<i64> {
        let due = self.schedule.as_ref()?.latest_due(now_ms);
        let first = self.last_run_ms.is_none();
        if !first && Some(due) <= self.last_run_ms {
            return None;
        }
        self.last_run_ms = Some(due);
        (!first).then_some(due)
    }

    /// A run of `files` buffers started landing.
    fn started(&mut self, run: i64, files: usize) {
        if self.manifest {
            self.runs.insert(
                run,
                RunState {
                    pending: files,
                    files: Vec::new(),
                    tables: BTreeMap::new(),
                },
            );
        }
    }

    /// Records an exported file of a scheduled run (with its table's root and version, in
    /// table mode); after the run's last one, writes the manifest.
    pub(crate) fn on_file(
        &mut self,
        file: &ExportedFile,
        table: Option<(&str, i64)>,
        lake: &Lake,
        metrics: &Metrics,
    ) {
        let Some(run) = file.run else { return };
        let Some(state) = self.runs.get_mut(&run) else {
            return;
        };
        state.pending -= 1;
        let mut entry = serde_json::json!({
            "sinkPath": format!("{}/{}", lake.describe().trim_end_matches('/'), file.path),
            "name": file.path.rsplit('/').next().unwrap_or_default(),
            "size": file.bytes,
            "records": file.records,
            "signal": file.signal,
        });
        if let Some((root, version)) = table {
            entry["table"] = root.into();
            entry["tableVersion"] = version.into();
            let held = state.tables.entry(root.to_string()).or_default();
            *held = (*held).max(version);
        }
        state.files.push(entry);
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
        let mut manifest = serde_json::json!({
            "flowRunId": run_id,
            "pipeline": self.pipeline,
            "scheduledTime": scheduled.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "completedTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "records": records,
            "exportResults": state.files,
        });
        if !state.tables.is_empty() {
            // A reader of the table at these versions sees every file of the run.
            manifest["tables"] = serde_json::json!(state.tables);
        }
        let path = format!("{MANIFEST_DIR}/manifest-{}-{run_id}.json", self.pipeline);
        let (lake, metrics) = (lake.clone(), metrics.clone());
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

    /// Waits for the manifests being written (at shutdown).
    pub(crate) async fn finish(&mut self) {
        while self.manifests.join_next().await.is_some() {}
    }
}

impl Worker {
    /// At each scheduled time (`flush.every` or `flush.cron`), lands every open buffer as one
    /// run; its manifest is written once all of them have landed.
    pub(crate) fn run_schedule(&mut self) {
        let Some(due) = self.batch_runs.due(now_ms()) else {
            return;
        };
        let buffers = self.buffers.take_all();
        tracing::info!(scheduled = due, buffers = buffers.len(), "scheduled run");
        if buffers.is_empty() {
            return;
        }
        self.batch_runs.started(due, buffers.len());
        for buffer in buffers {
            self.land(buffer, Some(due));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first boundary after start only marks where runs begin; each later one starts one
    /// run, once.
    #[test]
    fn a_run_is_due_once_per_boundary_after_the_first() {
        let flush = sluice_config::FlushPolicy {
            schedule: Some(sluice_config::Schedule::Every(Duration::from_secs(60))),
            manifest: true,
            ..Default::default()
        };
        let mut runs = BatchRuns::new(&flush, "p", "w");
        assert_eq!(
            runs.due(90_000),
            None,
            "the first boundary (60 s) only marks"
        );
        assert_eq!(runs.due(119_999), None);
        assert_eq!(runs.due(120_000), Some(120_000));
        assert_eq!(runs.due(150_000), None, "once per boundary");
        assert_eq!(runs.due(250_000), Some(240_000));
        runs.started(240_000, 2);
        assert_eq!(runs.runs[&240_000].pending, 2);
        let mut unscheduled = BatchRuns::new(&sluice_config::FlushPolicy::default(), "p", "w");
        assert_eq!(unscheduled.due(120_000), None);
        assert_eq!(
            unscheduled.due(240_000),
            None,
            "without a schedule no run is due"
        );
    }
}
