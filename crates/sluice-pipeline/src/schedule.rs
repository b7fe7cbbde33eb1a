//! Batch schedules (`flush.every`, `flush.cron`): landing every open buffer as one run at
//! each scheduled time, and the run's manifest once all of its files are exported: landed,
//! or in table mode committed to their tables (the manifest then names the versions).

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

impl Worker {
    /// At each scheduled time (`flush.every` or `flush.cron`), lands every open buffer as one
    /// run; its manifest is written once all of them have landed.
    pub(crate) fn run_schedule(&mut self) {
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
                    tables: BTreeMap::new(),
                },
            );
        }
        for buffer in buffers {
            self.spawn_landing(buffer, Some(due));
        }
    }

    /// Records an exported file of a scheduled run (with its table's root and version, in
    /// table mode); after the run's last one, writes the manifest.
    pub(crate) fn on_run_file(&mut self, file: &ExportedFile, table: Option<(&str, i64)>) {
        let Some(run) = file.run else { return };
        let Some(state) = self.runs.get_mut(&run) else {
            return;
        };
        state.pending -= 1;
        let mut entry = serde_json::json!({
            "sinkPath": format!("{}/{}", self.lake.describe().trim_end_matches('/'), file.path),
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
            "pipeline": self.pipeline_name,
            "scheduledTime": scheduled.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "completedTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "records": records,
            "exportResults": state.files,
        });
        if !state.tables.is_empty() {
            // A reader of the table at these versions sees every file of the run.
            manifest["tables"] = serde_json::json!(state.tables);
        }
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
}
