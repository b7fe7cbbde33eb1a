//! Delta tables end to end, at the size: 200,000 records of 6 signals on 4 Tansu
//! partitions, two `sluice run` workers in one group, one SIGKILLed mid-run and restarted.
//! The independent reader (Python `deltalake`) finds every record once in its signal's
//! table, under its hour's partition values, and per Kafka partition the tables' txn marks
//! agree with the group's committed offsets. Once on local disk, once on Azurite.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use sluice_e2e::{
    committed, end_offsets, fully_committed, hourly_tansu_pipeline, sigterm_and_wait, sluice_bin,
    wait_for,
};
use sluice_testkit::lake_files::{read_delta_rows, read_delta_rows_from};
use sluice_testkit::sample::{generate, outgoing, SampleRecord, SampleSpec};
use sluice_testkit::services::{Azurite, Tansu, AZURITE_ACCOUNT, AZURITE_KEY};

const TOPIC: &str = "tables";
const RECORDS: usize = 200_000;

fn worker(pipeline: &Path, log: &Path) -> Child {
    Command::new(sluice_bin())
        .args(["run", "--listen", "127.0.0.1:0"])
        .arg(pipeline)
        .env("RUST_LOG", "info,librdkafka=warn")
        .env("E2E_DELTA_KEY", AZURITE_KEY)
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Produces the samples, runs two workers (one killed and restarted), and returns the
/// samples and the group's committed offsets once everything is committed.
fn export(
    tansu: &Tansu,
    group: &str,
    sink: &str,
    dir: &Path,
) -> (Vec<SampleRecord>, BTreeMap<i32, i64>) {
    tansu.create_topic(TOPIC, 4);
    let mut spec = SampleSpec::new(RECORDS, 4, 3);
    spec.signals.truncate(6);
    let samples = generate(&spec);
    let records = outgoing(&samples);
    // One record per batch: Tansu resumes a moved partition at its next batch (FACTS).
    sluice_testkit::produce_batched(&tansu.bootstrap, TOPIC, &records, 1).unwrap();
    let ends = end_offsets(&records);

    let pipeline = dir.join("tables.toml");
    // A killed member is noticed after 10 s; small files keep the takeover grace short.
    let text = hourly_tansu_pipeline(&tansu.bootstrap, TOPIC, group, Path::new("x"), sink)
        .replace("url = \"x\"\n", "")
        .replace(
            "\"fetch.wait.max.ms\" = \"10\" }",
            "\"fetch.wait.max.ms\" = \"10\", \"session.timeout.ms\" = \"10000\", \"heartbeat.interval.ms\" = \"1000\" }",
        );
    std::fs::write(&pipeline, text).unwrap();
    let first = worker(&pipeline, &dir.join("worker1.log"));
    let second = worker(&pipeline, &dir.join("worker2.log"));
    let bootstrap = tansu.bootstrap.clone();
    let done = |b: &str| committed(b, group, TOPIC).values().flatten().sum::<i64>();
    wait_for("a fifth committed", Duration::from_secs(240), || {
        done(&bootstrap) >= RECORDS as i64 / 5
    });
    let mut first = first;
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        done(&bootstrap) < RECORDS as i64,
        "the worker was not killed mid-run"
    );
    let restarted = worker(&pipeline, &dir.join("worker1-restarted.log"));
    wait_for("every record committed", Duration::from_secs(300), || {
        fully_committed(&bootstrap, group, TOPIC, &ends)
    });
    sigterm_and_wait(second);
    sigterm_and_wait(restarted);
    let group_offsets = committed(&bootstrap, group, TOPIC)
        .into_iter()
        .map(|(p, c)| (p, c.expect("committed")))
        .collect();
    (samples, group_offsets)
}

/// Checks the reader's view of every signal's table against the samples and the group.
fn check(
    read: &serde_json::Value,
    table_key: impl Fn(&str) -> String,
    samples: &[SampleRecord],
    group: &str,
    committed: &BTreeMap<i32, i64>,
) {
    // Per signal: (seq, partition values) and per Kafka partition the next offset after its
    // last record; offsets follow produce order per partition.
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut rows: BTreeMap<&str, Vec<(u64, String)>> = BTreeMap::new();
    let mut marks: BTreeMap<&str, BTreeMap<i32, i64>> = BTreeMap::new();
    for s in samples {
        let offset = next.entry(s.record.partition).or_default();
        let t = chrono::DateTime::from_timestamp_millis(s.event_ms).unwrap();
        let values = format!("date={}/hour={}", t.format("%Y-%m-%d"), t.format("%H"));
        rows.entry(&s.signal).or_default().push((s.id, values));
        marks
            .entry(&s.signal)
            .or_default()
            .insert(s.record.partition, *offset + 1);
        *offset += 1;
    }
    let mut furthest: BTreeMap<i32, i64> = BTreeMap::new();
    for (signal, expected) in &rows {
        let t = &read[table_key(signal)];
        let mut ids: Vec<u64> = expected.iter().map(|r| r.0).collect();
        ids.sort();
        assert_eq!(
            t["ids"],
            serde_json::json!(ids),
            "{signal}: each record once"
        );
        for (id, values) in expected {
            assert_eq!(t["id_partitions"][id.to_string()], *values, "{signal} {id}");
        }
        for (partition, mark) in &marks[signal] {
            let app = format!("{group}:{TOPIC}:{partition}");
            assert_eq!(t["txn"][&app], *mark, "{signal} {app}");
            let f = furthest.entry(*partition).or_default();
            *f = (*f).max(*mark);
        }
    }
    // The table holding a partition's last record is marked at the group's offset.
    assert_eq!(&furthest, committed);
}

fn app_ids(group: &str) -> Vec<String> {
    (0..4).map(|p| format!("{group}:{TOPIC}:{p}")).collect()
}

#[test]
fn tables_on_local_disk_hold_every_record_once_after_a_kill() {
    let tansu = Tansu::start();
    let dir = tempfile::tempdir().unwrap().keep();
    let lake = dir.join("lake");
    let group = "e2e-delta-local";
    let sink = format!(
        "url = \"{}\"\ntable = \"delta\"\nwrite_timeout_secs = 5\n[flush]\nmax_age_secs = 1\nmax_bytes = 4194304",
        lake.display()
    );
    let (samples, offsets) = export(&tansu, group, &sink, &dir);
    let signals: std::collections::BTreeSet<&str> =
        samples.iter().map(|s| s.signal.as_str()).collect();
    let tables: Vec<_> = signals.iter().map(|s| lake.join(s)).collect();
    let apps = app_ids(group);
    let apps: Vec<&str> = apps.iter().map(String::as_str).collect();
    let read = read_delta_rows(&tables, "seq", &apps);
    let key = |signal: &str| lake.join(signal).to_string_lossy().to_string();
    check(&read, key, &samples, group, &offsets);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tables_on_azurite_hold_every_record_once_after_a_kill() {
    let tansu = Tansu::start();
    let azurite = Azurite::start();
    let dir = tempfile::tempdir().unwrap().keep();
    let group = "e2e-delta-azure";
    let sink = format!(
        "url = \"abfss://tables@{AZURITE_ACCOUNT}.dfs.core.windows.net/lake\"\ntable = \"delta\"\nwrite_timeout_secs = 5\n[sink.azure]\naccount_key_env = \"E2E_DELTA_KEY\"\nendpoint = \"{}\"\n[flush]\nmax_age_secs = 1\nmax_bytes = 4194304",
        azurite.endpoint
    );
    let (samples, offsets) = export(&tansu, group, &sink, &dir);
    let signals: std::collections::BTreeSet<&str> =
        samples.iter().map(|s| s.signal.as_str()).collect();
    let url = |signal: &str| format!("az://tables/lake/{signal}");
    let tables: Vec<String> = signals.iter().map(|s| url(s)).collect();
    let options = [
        format!("account_name={AZURITE_ACCOUNT}"),
        format!("account_key={AZURITE_KEY}"),
        format!("endpoint={}", azurite.endpoint),
        "allow_http=true".to_string(),
    ];
    let apps = app_ids(group);
    let apps: Vec<&str> = apps.iter().map(String::as_str).collect();
    let read = read_delta_rows_from(&tables, &options, "seq", &apps);
    check(&read, url, &samples, group, &offsets);
    let _ = std::fs::remove_dir_all(&dir);
}
