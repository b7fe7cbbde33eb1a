//! Reading landed NDJSON files back (plain or gzip) from a local lake directory.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Every file under `root`, relative path and decompressed lines, sorted by path.
pub fn read_ndjson_tree(root: &Path) -> Vec<(String, Vec<serde_json::Value>)> {
    let mut files = Vec::new();
    collect(root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let rel = f
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .to_string();
            let raw = std::fs::read(&f).expect("readable lake file");
            (
                rel,
                parse_ndjson(&raw, f.to_string_lossy().ends_with(".gz")),
            )
        })
        .collect()
}

/// Every file under `root` whose name ends with `suffix`, sorted by path.
pub fn files_under(root: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    collect(root, &mut files);
    files.retain(|f| f.to_string_lossy().ends_with(suffix));
    files.sort();
    files
}

/// Lines of one NDJSON body, gunzipped first when `gzip`.
pub fn parse_ndjson(raw: &[u8], gzip: bool) -> Vec<serde_json::Value> {
    let text = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    } else {
        raw.to_vec()
    };
    text.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("every line is JSON"))
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            // Partition leases, progress and window markers are bookkeeping, not data; a
            // staged file a killed worker left is not in the lake (see sluice-lake's `local`).
            if p.file_name().is_some_and(|n| {
                n == "_leases" || n == "_progress" || n == "_windows" || n == ".sluice-staging"
            }) {
                continue;
            }
            collect(&p, out);
        } else if !p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("_SUCCESS"))
        {
            out.push(p);
        }
    }
}

/// `assert_each_exported_once` for a pipeline that exports every signal hourly by event
/// time: every sample landed exactly once, under its hour. Returns how many there were.
pub fn assert_every_sample_hourly_once(
    samples: &[crate::sample::SampleRecord],
    files: &[(String, Vec<serde_json::Value>)],
) -> u64 {
    assert_each_exported_once(
        samples,
        files,
        |_| true,
        |s| hour_prefix(&s.signal, s.event_ms),
    )
}

/// Where each sample record (by its `seq` field) was found: `seq -> [paths]`.
/// Lines without a `seq` (dead letters) are skipped.
pub fn paths_by_seq(
    files: &[(String, Vec<serde_json::Value>)],
) -> std::collections::HashMap<u64, Vec<String>> {
    let mut out: std::collections::HashMap<u64, Vec<String>> = std::collections::HashMap::new();
    for (path, lines) in files {
        for line in lines {
            if let Some(seq) = line.get("seq").and_then(serde_json::Value::as_u64) {
                out.entry(seq).or_default().push(path.clone());
            }
        }
    }
    out
}

/// `{signal}/{YYYY}/{MM}/{dd}/{hh}/` of an event time: the prefix hourly files sit under.
pub fn hour_prefix(signal: &str, event_ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(event_ms).expect("valid time");
    format!("{signal}/{}/", t.format("%Y/%m/%d/%H"))
}

/// `{signal}/{YYYY}/{MM}/{dd}/` of a time: the prefix daily files sit under.
pub fn day_prefix(signal: &str, ts_ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ts_ms).expect("valid time");
    format!("{signal}/{}/", t.format("%Y/%m/%d"))
}

/// Checks that every sample whose signal is `exported` landed exactly once, under the
/// directory `expected_prefix` names for it, and that no other sample landed anywhere.
/// Returns how many samples were exported.
pub fn assert_each_exported_once(
    samples: &[crate::sample::SampleRecord],
    files: &[(String, Vec<serde_json::Value>)],
    exported: impl Fn(&str) -> bool,
    expected_prefix: impl Fn(&crate::sample::SampleRecord) -> String,
) -> u64 {
    let found = paths_by_seq(files);
    let mut count = 0;
    for s in samples {
        let paths = found.get(&s.id).map(Vec::as_slice).unwrap_or_default();
        if exported(&s.signal) {
            count += 1;
            assert_eq!(
                paths.len(),
                1,
                "record {} landed {} times: {paths:?}",
                s.id,
                paths.len()
            );
            let prefix = expected_prefix(s);
            assert!(
                paths[0].starts_with(&prefix),
                "record {} is at {}, not under {prefix}",
                s.id,
                paths[0]
            );
        } else {
            assert!(
                paths.is_empty(),
                "signal {} is not exported but landed at {paths:?}",
                s.signal
            );
        }
    }
    count
}

/// The Delta tables at `tables`, as the independent reader (the Python `deltalake` package,
/// `tests/readers/read_delta.py`) sees them: one JSON object per table path, keyed by it,
/// with version, schema, partition columns, rows, sorted `id`s and the txn version of each
/// of `app_ids`.
pub fn read_delta(tables: &[std::path::PathBuf], app_ids: &[&str]) -> serde_json::Value {
    let tables: Vec<String> = tables
        .iter()
        .map(|t| t.to_string_lossy().to_string())
        .collect();
    read_delta_at(&tables, &[], app_ids, None)
}

/// `read_delta` of the tables at `tables` with ids from `id_column`, and each id's partition
/// values (`date=…/hour=…`) under `id_partitions`.
pub fn read_delta_rows(
    tables: &[std::path::PathBuf],
    id_column: &str,
    app_ids: &[&str],
) -> serde_json::Value {
    run_delta_reader(
        &local_paths(tables),
        &[],
        app_ids,
        None,
        &["--id-column", id_column, "--with-partitions"],
    )
}

fn local_paths(tables: &[std::path::PathBuf]) -> Vec<String> {
    tables
        .iter()
        .map(|t| t.to_string_lossy().to_string())
        .collect()
}

/// `read_delta_rows` of the tables as they were at `version`.
pub fn read_delta_rows_at(
    tables: &[std::path::PathBuf],
    id_column: &str,
    version: i64,
) -> serde_json::Value {
    run_delta_reader(
        &local_paths(tables),
        &[],
        &[],
        Some(version),
        &["--id-column", id_column, "--with-partitions"],
    )
}

/// `read_delta_rows` with each id's value of `column` (`values`, keyed by the id's text).
pub fn read_delta_values(
    tables: &[std::path::PathBuf],
    id_column: &str,
    column: &str,
) -> serde_json::Value {
    run_delta_reader(
        &local_paths(tables),
        &[],
        &[],
        None,
        &["--id-column", id_column, "--values", column],
    )
}

/// `read_delta_rows` for tables named by URL (`az://…`) with the reader's `storage_options`.
pub fn read_delta_rows_from(
    tables: &[String],
    options: &[String],
    id_column: &str,
    app_ids: &[&str],
) -> serde_json::Value {
    run_delta_reader(
        tables,
        options,
        app_ids,
        None,
        &["--id-column", id_column, "--with-partitions"],
    )
}

/// The ids in `id_column` of the tables at `tables` (URLs: `az://…`, `s3://…`), with the
/// reader's `storage_options`.
pub fn read_delta_table_ids(
    tables: &[String],
    options: &[String],
    id_column: &str,
) -> serde_json::Value {
    run_delta_reader(tables, options, &[], None, &["--id-column", id_column])
}

/// `read_delta` for tables named by URL, with the reader's `storage_options` (`key=value`),
/// at `version` or the newest.
pub fn read_delta_at(
    tables: &[String],
    options: &[String],
    app_ids: &[&str],
    version: Option<i64>,
) -> serde_json::Value {
    run_delta_reader(tables, options, app_ids, version, &[])
}

fn run_delta_reader(
    tables: &[String],
    options: &[String],
    app_ids: &[&str],
    version: Option<i64>,
    more: &[&str],
) -> serde_json::Value {
    let root = crate::services::workspace_root();
    let python = std::env::var_os("SLUICE_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join(".tools/venv/bin/python"));
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(root.join("tests/readers/read_delta.py"))
        .args(tables);
    for o in options {
        cmd.args(["--storage-option", o]);
    }
    if let Some(v) = version {
        cmd.args(["--version", &v.to_string()]);
    }
    cmd.args(more);
    for app in app_ids {
        cmd.args(["--app-id", app]);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python:?} (scripts/test installs it): {e}"));
    assert!(
        out.status.success(),
        "the Delta reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the Delta reader prints JSON")
}
