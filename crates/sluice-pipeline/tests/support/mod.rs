//! What the mock-cluster tests share: a pipeline over the mock cluster and a local lake, a
//! loaded topic, and checks of the lake and the group's commits.
#![allow(dead_code)] // each test file uses its own part

use std::time::Duration;

use sluice_config::ValidatedPipeline;
use sluice_pipeline::RunSummary;
use sluice_telemetry::Metrics;
use sluice_testkit::lake_files::{assert_each_exported_once, hour_prefix, read_ndjson_tree};
use sluice_testkit::produce;
use sluice_testkit::sample::{generate, outgoing, SampleRecord, SampleSpec};
use sluice_testkit::services::MockKafka;

pub const TOPIC: &str = "signals";

pub fn pipeline(
    bootstrap: &str,
    lake: &std::path::Path,
    group: &str,
    extra: &str,
) -> ValidatedPipeline {
    sluice_config::parse(&pipeline_text(bootstrap, lake, group, extra), &|_| None).unwrap()
}

/// The text of [`pipeline`], for tests that change more than its end.
pub fn pipeline_text(bootstrap: &str, lake: &std::path::Path, group: &str, extra: &str) -> String {
    format!(
        r#"
name = "mock"
[source]
bootstrap_servers = "{bootstrap}"
topics = ["{TOPIC}"]
group_id = "{group}"
# The mock cluster makes a rejoining group wait out the old member's session.
properties = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}
[route]
signals = ["engine.temperature", "cabin.humidity", "battery.voltage", "gps.position", "door.opened"]
[window]
time = "event"
event_time_field = "timestamp"
granularity = "hour"
[sink]
url = "{}"
compression = "gzip"
{extra}
"#,
        lake.display()
    )
}

/// A mock cluster whose 4-partition topic holds `records` sample signals over 2 hours, and
/// an empty lake directory.
pub fn loaded_topic(records: usize) -> (MockKafka, Vec<SampleRecord>, tempfile::TempDir) {
    let kafka = MockKafka::start(1);
    kafka.create_topic(TOPIC, 4);
    let samples = generate(&SampleSpec::new(records, 4, 2));
    produce(&kafka.bootstrap, TOPIC, &outgoing(&samples)).unwrap();
    (kafka, samples, tempfile::tempdir().unwrap())
}

/// Reads the lake back and checks that every sample of an exported signal landed exactly
/// once, in its hour's directory. Returns the files and how many samples were exported.
pub fn assert_hourly_once(
    samples: &[SampleRecord],
    lake: &std::path::Path,
    p: &ValidatedPipeline,
) -> (Vec<(String, Vec<serde_json::Value>)>, u64) {
    let files = read_ndjson_tree(lake);
    let exported = assert_each_exported_once(
        samples,
        &files,
        |s| p.filter.admits(s),
        |s| hour_prefix(&s.signal, s.event_ms),
    );
    (files, exported)
}

/// Whether `group` has committed every partition of the topic to its end.
pub fn drained(bootstrap: &str, group: &str) -> bool {
    sluice_kafka::group_progress(bootstrap, group, TOPIC, Duration::from_secs(5))
        .map(|g| g.values().all(|(c, end)| *c == Some(*end)))
        .unwrap_or(false)
}

pub fn committed(kafka: &MockKafka, group: &str) -> Vec<(Option<i64>, i64)> {
    sluice_kafka::group_progress(&kafka.bootstrap, group, TOPIC, Duration::from_secs(10))
        .unwrap()
        .into_values()
        .collect()
}

/// Runs the pipeline until `done` says so (or 90 s pass), then shuts it down.
pub async fn run_until(
    p: &ValidatedPipeline,
    done: impl Fn(&Metrics) -> bool,
) -> Result<RunSummary, sluice_pipeline::PipelineError> {
    sluice_telemetry::init_logging(false, "warn");
    sluice_pipeline::run_until(p, Metrics::new(&p.name), Duration::from_secs(90), done).await
}

/// Runs the pipeline until its first scheduled run's manifest is written; returns the run's
/// summary, the manifest's file name and its JSON. There must be exactly one.
pub async fn run_until_one_manifest(
    p: &ValidatedPipeline,
    lake: &std::path::Path,
) -> (RunSummary, String, serde_json::Value) {
    let manifests = lake.join("_manifests");
    let probe = manifests.clone();
    let summary = run_until(p, move |_| {
        std::fs::read_dir(&probe).is_ok_and(|d| d.count() > 0)
    })
    .await
    .unwrap();
    let entries: Vec<_> = std::fs::read_dir(&manifests)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let name = entries[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let m = serde_json::from_slice(&std::fs::read(&entries[0]).unwrap()).unwrap();
    (summary, name, m)
}

pub async fn wait_for(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
