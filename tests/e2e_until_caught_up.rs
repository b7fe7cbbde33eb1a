//! `sluice run --until-caught-up` as a Kubernetes Job runs it, on Tansu: two workers of one
//! group each end by themselves once their partitions are caught up, every record landed
//! once and the group committed exactly to the ends; a lake that stays down (at start, or
//! for some keys mid-run) ends the run with a non-zero status and no unlanded record
//! committed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice_e2e::{committed, end_offsets, fully_committed, hourly_tansu_pipeline, sluice_bin};
use sluice_testkit::lake_files::{assert_every_sample_hourly_once, read_ndjson_tree};
use sluice_testkit::sample::{generate, outgoing, SampleSpec};
use sluice_testkit::services::{free_port, Tansu};

const TOPIC: &str = "backfill";

fn batch_worker(pipeline: &Path, log: &Path, patience_secs: u64) -> Child {
    Command::new(sluice_bin())
        .args(["run", "--until-caught-up", "--listen", "127.0.0.1:0"])
        .args(["--lake-patience-secs", &patience_secs.to_string()])
        .arg(pipeline)
        .env("RUST_LOG", "info,librdkafka=warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Waits for a batch worker to end by itself: its exit status and its JSON summary.
fn ended(child: Child, within: Duration, log: &Path) -> (Option<i32>, serde_json::Value) {
    let started = Instant::now();
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > within {
            let _ = child.kill();
            panic!(
                "the batch worker did not end within {within:?}; its log: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), summary)
}

#[test]
fn two_batch_workers_export_everything_once_and_end() {
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 4);
    let samples = generate(&SampleSpec::new(50_000, 4, 3));
    let records = outgoing(&samples);
    // One record per batch: Tansu resumes a moved partition at its next batch (FACTS).
    sluice_testkit::produce_batched(&tansu.bootstrap, TOPIC, &records, 1).unwrap();
    let ends = end_offsets(&records);

    let dir = tempfile::tempdir().unwrap().keep();
    let lake = dir.join("lake");
    let pipeline = dir.join("pipeline.toml");
    let group = "e2e-until-caught-up";
    let extra = "compression = \"gzip\"\n[flush]\nmax_records = 2000\nmax_age_secs = 1";
    std::fs::write(
        &pipeline,
        hourly_tansu_pipeline(&tansu.bootstrap, TOPIC, group, &lake, extra),
    )
    .unwrap();
    let (log1, log2) = (dir.join("worker1.log"), dir.join("worker2.log"));
    let first = batch_worker(&pipeline, &log1, 60);
    let second = batch_worker(&pipeline, &log2, 60);
    let (code1, summary1) = ended(first, Duration::from_secs(300), &log1);
    let (code2, summary2) = ended(second, Duration::from_secs(300), &log2);
    assert_eq!(code1, Some(0), "{summary1:#} (logs in {})", dir.display());
    assert_eq!(code2, Some(0), "{summary2:#} (logs in {})", dir.display());
    for s in [&summary1, &summary2] {
        assert_eq!(s["caught_up"], true, "{s:#}");
    }
    // Between them the two summaries name every partition, each at its end.
    let mut reached: BTreeMap<i32, i64> = BTreeMap::new();
    for s in [&summary1, &summary2] {
        for p in s["partitions"].as_array().unwrap() {
            let e = reached
                .entry(p["partition"].as_i64().unwrap() as i32)
                .or_default();
            *e = (*e).max(p["committed"].as_i64().unwrap());
        }
    }
    assert_eq!(reached, ends);
    assert!(
        fully_committed(&tansu.bootstrap, group, TOPIC, &ends),
        "committed {:?}, ends {ends:?}",
        committed(&tansu.bootstrap, group, TOPIC)
    );
    let landed = assert_every_sample_hourly_once(&samples, &read_ndjson_tree(&lake));
    assert_eq!(landed, samples.len() as u64);

    // The audit a user would run next agrees, reading Tansu and the lake on its own.
    let out = Command::new(sluice_bin())
        .args(["audit", "--json"])
        .arg(&pipeline)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
    });
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    let once: u64 = report["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["once"].as_u64().unwrap())
        .sum();
    assert_eq!(once, samples.len() as u64, "{report:#}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_lake_that_stays_down_ends_a_batch_run_with_an_error_and_nothing_unlanded_committed() {
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 2);
    let samples = generate(&SampleSpec::new(4_000, 2, 2));
    let records = outgoing(&samples);
    sluice_testkit::produce_batched(&tansu.bootstrap, TOPIC, &records, 1).unwrap();
    let dir = tempfile::tempdir().unwrap().keep();

    // Down from the start: an Azure endpoint nobody answers on.
    let group = "e2e-down-at-start";
    let unreachable = dir.join("unreachable.toml");
    let azure = format!(
        "[sink.azure]\naccount_key_env = \"E2E_DOWN_KEY\"\nendpoint = \"http://127.0.0.1:{}/devstoreaccount1\"",
        free_port()
    );
    let text = hourly_tansu_pipeline(&tansu.bootstrap, TOPIC, group, Path::new("x"), &azure)
        .replace(
            "url = \"x\"",
            "url = \"abfss://signals@devstoreaccount1.dfs.core.windows.net/export/\"",
        );
    std::fs::write(&unreachable, text).unwrap();
    let log = dir.join("down-at-start.log");
    let child = Command::new(sluice_bin())
        .args(["run", "--until-caught-up", "--listen", "127.0.0.1:0"])
        .args(["--lake-patience-secs", "3"])
        .arg(&unreachable)
        .env("E2E_DOWN_KEY", sluice_testkit::services::AZURITE_KEY)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let (code, _) = ended(child, Duration::from_secs(60), &log);
    assert_ne!(code, Some(0));
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains("did not answer"), "{stderr}");
    assert!(committed(&tansu.bootstrap, group, TOPIC)
        .values()
        .all(Option::is_none));

    // Down mid-run for two signals: each of their hour directories is a file, so every
    // write of them fails, temporarily, for ever. The others land and are committed as far
    // as the first unlanded record of each partition allows, and no further.
    let group = "e2e-down-mid-run";
    let lake = dir.join("lake");
    std::fs::create_dir_all(&lake).unwrap();
    let blocked = ["engine.temperature", "gps.position"];
    for signal in blocked {
        std::fs::write(lake.join(signal), b"in the way").unwrap();
    }
    let pipeline = dir.join("mid-run.toml");
    let extra = "[flush]\nmax_age_secs = 1";
    std::fs::write(
        &pipeline,
        hourly_tansu_pipeline(&tansu.bootstrap, TOPIC, group, &lake, extra),
    )
    .unwrap();
    let log = dir.join("down-mid-run.log");
    let (code, summary) = ended(
        batch_worker(&pipeline, &log, 5),
        Duration::from_secs(120),
        &log,
    );
    assert_ne!(code, Some(0), "{summary:#}");
    let mut blocked_at: BTreeMap<i32, Vec<bool>> = BTreeMap::new();
    for s in &samples {
        blocked_at
            .entry(s.record.partition)
            .or_default()
            .push(blocked.contains(&s.signal.as_str()));
    }
    let progress = committed(&tansu.bootstrap, group, TOPIC);
    let mut any = false;
    for (partition, c) in progress {
        let c = c.unwrap_or(0) as usize;
        any |= c > 0;
        assert!(
            blocked_at[&partition][..c].iter().all(|b| !b),
            "partition {partition}: committed {c}, past a record that never landed"
        );
    }
    assert!(any, "the signals that could land were not committed");
    let _ = std::fs::remove_dir_all(&dir);
}
