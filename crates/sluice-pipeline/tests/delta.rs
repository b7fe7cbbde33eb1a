//! `sink.table = "delta"` against the mock cluster: every record of every exported signal is
//! in its signal's table exactly once, under its window's partition values, with each Kafka
//! partition's mark at the offset after its last record in the table; and a worker that
//! crashes after landing files but before committing them loses and doubles nothing.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_pipeline::RunMode;
use sluice_telemetry::Metrics;
use sluice_testkit::lake_files::read_delta_rows;
use sluice_testkit::sample::SampleRecord;
use support::*;

const TABLE: &str = "table = \"delta\"\ntable_path = \"tables/{signal}\"";

async fn catch_up(p: &sluice_config::ValidatedPipeline) -> sluice_pipeline::RunSummary {
    sluice_telemetry::init_logging(false, "warn");
    let mode = RunMode::UntilCaughtUp {
        lake_patience: Duration::from_secs(60),
    };
    let run =
        sluice_pipeline::run_with(p, Metrics::new("t"), sluice_pipeline::Shutdown::new(), mode);
    tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the run ends")
        .unwrap()
}

/// Checks the tables against the samples: each exported record once, in its hour, and each
/// partition's mark one past the offset of its last record in the table.
fn assert_tables_hold_each_once(
    samples: &[SampleRecord],
    lake: &std::path::Path,
    p: &sluice_config::ValidatedPipeline,
) -> u64 {
    // Offsets follow production order within a partition.
    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    let mut expected: BTreeMap<String, Vec<(u64, String, i32, i64)>> = BTreeMap::new();
    for s in samples {
        let offset = next_offset.entry(s.record.partition).or_default();
        if p.filter.admits(&s.signal) {
            let t = chrono::DateTime::from_timestamp_millis(s.event_ms).unwrap();
            let partition = format!("date={}/hour={}", t.format("%Y-%m-%d"), t.format("%H"));
            expected.entry(s.signal.clone()).or_default().push((
                s.id,
                partition,
                s.record.partition,
                *offset,
            ));
        }
        *offset += 1;
    }
    let tables: Vec<_> = expected
        .keys()
        .map(|signal| lake.join("tables").join(signal))
        .collect();
    let apps: Vec<String> = (0..4).map(|n| format!("mock:{TOPIC}:{n}")).collect();
    let apps: Vec<&str> = apps.iter().map(String::as_str).collect();
    let read = read_delta_rows(&tables, "seq", &apps);
    let mut total = 0;
    for (signal, records) in &expected {
        let key = lake
            .join("tables")
            .join(signal)
            .to_string_lossy()
            .to_string();
        let t = &read[&key];
        let mut ids: Vec<u64> = records.iter().map(|r| r.0).collect();
        ids.sort();
        assert_eq!(
            t["ids"],
            serde_json::json!(ids),
            "{signal}: each record once"
        );
        for (id, partition, _, _) in records {
            assert_eq!(
                t["id_partitions"][id.to_string()],
                *partition,
                "{signal} seq {id}"
            );
        }
        for (n, app) in apps.iter().enumerate() {
            let last = records
                .iter()
                .filter(|r| r.2 == n as i32)
                .map(|r| r.3)
                .max();
            assert_eq!(
                t["txn"][app],
                serde_json::json!(last.map(|o| o + 1)),
                "{signal} {app}"
            );
        }
        total += records.len() as u64;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_signal_gets_a_table_holding_its_records_once_with_partition_marks() {
    let (kafka, samples, lake) = loaded_topic(6_000);
    let group = "delta";
    let p = pipeline(
        &kafka.bootstrap,
        lake.path(),
        group,
        &format!("{TABLE}\n[flush]\nmax_age_secs = 1"),
    );
    let summary = catch_up(&p).await;
    assert_eq!(summary.caught_up, Some(true), "{summary:?}");
    let exported = assert_tables_hold_each_once(&samples, lake.path(), &p);
    assert_eq!(summary.records_landed, exported);
    assert!(committed(&kafka, group)
        .iter()
        .all(|(c, end)| *c == Some(*end)));

    // A second group replays everything into the same tables: nothing is added twice.
    let again = pipeline(
        &kafka.bootstrap,
        lake.path(),
        "delta-again",
        &format!("{TABLE}\n[flush]\nmax_age_secs = 1"),
    );
    let replay = catch_up(&again).await;
    assert_eq!(replay.caught_up, Some(true), "{replay:?}");
    assert_eq!(replay.records_landed, 0, "{replay:?}");
    assert_eq!(
        assert_tables_hold_each_once(&samples, lake.path(), &p),
        exported
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_landed_but_never_committed_are_committed_once_by_the_next_run() {
    let (kafka, samples, lake) = loaded_topic(6_000);
    let group = "delta-crash";
    // Commits wait an hour: the first worker lands files and dies before committing any.
    let slow = pipeline(
        &kafka.bootstrap,
        lake.path(),
        group,
        &format!("{TABLE}\n[flush]\nmax_age_secs = 3600\nmax_records = 50"),
    );
    let metrics = Metrics::new("crashing");
    let crashing = {
        let (p, m) = (slow.clone(), metrics.clone());
        tokio::spawn(
            async move { sluice_pipeline::run(&p, m, sluice_pipeline::Shutdown::new()).await },
        )
    };
    wait_for("landed files", Duration::from_secs(60), || {
        metrics.files_landed.with_label_values(&["parquet"]).get() >= 10
    })
    .await;
    // Killed: no drain, no commit to any table or to Kafka.
    crashing.abort();
    let _ = crashing.await;
    // Nothing is in a table, and no partition is committed past its first exported record
    // (records of signals not exported before it may be).
    let logs = sluice_testkit::lake_files::files_under(lake.path(), ".json");
    assert!(
        !logs
            .iter()
            .any(|f| f.to_string_lossy().contains("_delta_log")),
        "{logs:?}"
    );
    let mut first_exported: BTreeMap<i32, i64> = BTreeMap::new();
    let mut seen: BTreeMap<i32, i64> = BTreeMap::new();
    for s in &samples {
        let offset = seen.entry(s.record.partition).or_default();
        if slow.filter.admits(&s.signal) {
            first_exported.entry(s.record.partition).or_insert(*offset);
        }
        *offset += 1;
    }
    let progress =
        sluice_kafka::group_progress(&kafka.bootstrap, group, TOPIC, Duration::from_secs(10))
            .unwrap();
    for (partition, (c, _)) in &progress {
        assert!(c.unwrap_or(0) <= first_exported[partition], "{progress:?}");
    }
    let orphans = sluice_testkit::lake_files::files_under(lake.path(), ".parquet").len();
    assert!(orphans >= 10, "{orphans}");
    // Landed is not exported: a record counts once a table commit holds it.
    assert_eq!(records_landed(&metrics), 0, "{}", metrics.render());

    let p = pipeline(
        &kafka.bootstrap,
        lake.path(),
        group,
        &format!("{TABLE}\n[flush]\nmax_age_secs = 1"),
    );
    let summary = catch_up(&p).await;
    assert_eq!(summary.caught_up, Some(true), "{summary:?}");
    let exported = assert_tables_hold_each_once(&samples, lake.path(), &p);
    assert_eq!(summary.records_landed, exported);
}

/// The sum of `records_landed_total` over every signal.
fn records_landed(metrics: &Metrics) -> u64 {
    metrics
        .render()
        .lines()
        .filter(|l| l.contains("records_landed_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A scheduled run's manifest is written once the run's files are in their tables, and names
/// each table's version: read at that version, a table holds every record the manifest lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_runs_manifest_waits_for_the_table_commits_and_names_their_versions() {
    let (kafka, samples, lake) = loaded_topic(3_000);
    let p = pipeline(
        &kafka.bootstrap,
        lake.path(),
        "delta-sched",
        &format!("{TABLE}\n[flush]\nevery = \"3s\"\nmanifest = true"),
    );
    let (summary, _, m) = run_until_one_manifest(&p, lake.path()).await;
    let versions = m["tables"]
        .as_object()
        .unwrap_or_else(|| panic!("the manifest names the tables' versions: {m:#}"));
    // Every record since the start is in the one run (the topic was loaded before).
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for s in samples.iter().filter(|s| p.filter.admits(&s.signal)) {
        *expected.entry(format!("tables/{}", s.signal)).or_default() += 1;
    }
    assert_eq!(
        versions.keys().cloned().collect::<Vec<_>>(),
        expected.keys().cloned().collect::<Vec<_>>(),
        "{m:#}"
    );
    let mut listed: BTreeMap<String, u64> = BTreeMap::new();
    for r in m["exportResults"].as_array().unwrap() {
        let table = r["table"].as_str().unwrap_or_else(|| panic!("{r}"));
        assert!(r["tableVersion"].as_i64().unwrap() <= versions[table].as_i64().unwrap());
        assert!(r["sinkPath"].as_str().unwrap().contains(table), "{r}");
        *listed.entry(table.to_string()).or_default() += r["records"].as_u64().unwrap();
    }
    assert_eq!(listed, expected, "{m:#}");
    assert_eq!(m["records"].as_u64(), Some(expected.values().sum()));
    assert_eq!(summary.records_landed, expected.values().sum::<u64>());
    for (table, version) in versions {
        let path = lake.path().join(table);
        let at = sluice_testkit::lake_files::read_delta_rows_at(
            std::slice::from_ref(&path),
            "seq",
            version.as_i64().unwrap(),
        );
        let ids = at[path.to_string_lossy().as_ref()]["ids"]
            .as_array()
            .unwrap()
            .len() as u64;
        assert_eq!(ids, expected[table], "{table} at version {version}");
    }
}

/// A mock cluster with the topic, a lake, and a Delta pipeline committing every second.
fn one_second_table_pipeline(
    group: &str,
) -> (
    sluice_testkit::services::MockKafka,
    tempfile::TempDir,
    sluice_config::ValidatedPipeline,
) {
    let kafka = sluice_testkit::services::MockKafka::start(1);
    kafka.create_topic(TOPIC, 2);
    let lake = tempfile::tempdir().unwrap();
    let p = pipeline(
        &kafka.bootstrap,
        lake.path(),
        group,
        &format!("{TABLE}\n[flush]\nmax_age_secs = 1"),
    );
    (kafka, lake, p)
}

/// One `engine.temperature` record with a `reading` of the given JSON text.
fn reading(seq: u64, reading: &str, extra: bool) -> sluice_testkit::Outgoing {
    let extra = if extra { r#","site":"north""# } else { "" };
    sluice_testkit::Outgoing {
        partition: (seq % 2) as i32,
        key: None,
        payload: Some(
            format!(
                r#"{{"signal":"engine.temperature","timestamp":"2024-03-05T10:{:02}:00Z","seq":{seq},"reading":{reading}{extra}}}"#,
                seq % 60
            )
            .into_bytes(),
        ),
        headers: vec![],
        timestamp_ms: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_added_and_integers_turned_doubles_give_one_table_with_both() {
    let (kafka, lake, p) = one_second_table_pipeline("evolve");
    // Three commits: integers; doubles and a new field; integers again.
    let rounds: [(&str, bool); 3] = [("21", false), ("21.5", true), ("22", false)];
    for (round, (value, extra)) in rounds.iter().enumerate() {
        let records: Vec<_> = (0..100)
            .map(|i| reading(round as u64 * 100 + i, value, *extra))
            .collect();
        sluice_testkit::produce(&kafka.bootstrap, TOPIC, &records).unwrap();
        let summary = catch_up(&p).await;
        assert_eq!(summary.caught_up, Some(true), "{summary:?}");
    }
    let table = lake.path().join("tables/engine.temperature");
    let read = read_delta_rows(std::slice::from_ref(&table), "seq", &[]);
    let t = &read[table.to_string_lossy().as_ref()];
    assert_eq!(t["schema"]["reading"], "double", "{t:#}");
    assert_eq!(t["schema"]["site"], "string", "{t:#}");
    assert_eq!(t["ids"], serde_json::json!((0..300).collect::<Vec<u64>>()));
    assert!(t["version"].as_i64().unwrap() >= 3, "{t:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_whose_type_changes_becomes_text_and_no_record_is_refused() {
    let (kafka, lake, p) = one_second_table_pipeline("conflicts");
    // One commit per shape: the first change rewrites the table's files, the later ones
    // rewrite the incoming files into the text column.
    let rounds = ["21", r#""high""#, r#"{"a":1}"#, "[1,2]", "true"];
    for (round, value) in rounds.iter().enumerate() {
        let records: Vec<_> = (0..50)
            .map(|i| reading(round as u64 * 50 + i, value, false))
            .collect();
        sluice_testkit::produce(&kafka.bootstrap, TOPIC, &records).unwrap();
        let summary = catch_up(&p).await;
        assert_eq!(summary.caught_up, Some(true), "{summary:?}");
        assert_eq!(summary.records_dead_lettered, 0, "{summary:?}");
    }
    let table = lake.path().join("tables/engine.temperature");
    let read = sluice_testkit::lake_files::read_delta_values(
        std::slice::from_ref(&table),
        "seq",
        "reading",
    );
    let t = &read[table.to_string_lossy().as_ref()];
    assert_eq!(t["schema"]["reading"], "string", "{t:#}");
    assert_eq!(t["ids"], serde_json::json!((0..250).collect::<Vec<u64>>()));
    // Strings as they are, every other value as its JSON text.
    let expected = ["21", "high", r#"{"a":1}"#, "[1,2]", "true"];
    for seq in 0..250u64 {
        let value = t["values"][seq.to_string()].as_str().unwrap_or_default();
        assert_eq!(value, expected[seq as usize / 50], "seq {seq}: {t:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_share_one_table_partitioned_by_signal() {
    let (kafka, samples, lake) = loaded_topic(3_000);
    let shared = "table = \"delta\"\ntable_path = \"tables/events\"\n[flush]\nmax_age_secs = 1";
    let p = pipeline(&kafka.bootstrap, lake.path(), "shared", shared);
    let summary = catch_up(&p).await;
    assert_eq!(summary.caught_up, Some(true), "{summary:?}");

    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    let mut ids = Vec::new();
    let mut partitions = BTreeMap::new();
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for s in &samples {
        let offset = next_offset.entry(s.record.partition).or_default();
        if p.filter.admits(&s.signal) {
            let t = chrono::DateTime::from_timestamp_millis(s.event_ms).unwrap();
            ids.push(s.id);
            partitions.insert(
                s.id,
                format!(
                    "signal={}/date={}/hour={}",
                    s.signal,
                    t.format("%Y-%m-%d"),
                    t.format("%H")
                ),
            );
            last.insert(s.record.partition, *offset);
        }
        *offset += 1;
    }
    ids.sort();
    let signals: std::collections::BTreeSet<_> = samples.iter().map(|s| &s.signal).collect();
    assert!(signals.len() >= 3, "{signals:?}");
    let table = lake.path().join("tables/events");
    let apps: Vec<String> = (0..4).map(|n| format!("mock:{TOPIC}:{n}")).collect();
    let apps: Vec<&str> = apps.iter().map(String::as_str).collect();
    let check = |read: &serde_json::Value| {
        let t = &read[table.to_string_lossy().as_ref()];
        assert_eq!(
            t["partition_columns"],
            serde_json::json!(["signal", "date", "hour"])
        );
        assert_eq!(t["schema"]["signal"], "string", "{:#}", t["schema"]);
        assert_eq!(t["ids"], serde_json::json!(ids), "each record once");
        for (id, partition) in &partitions {
            assert_eq!(t["id_partitions"][id.to_string()], *partition, "seq {id}");
        }
        for (n, app) in apps.iter().enumerate() {
            let next = last.get(&(n as i32)).map(|o| o + 1);
            assert_eq!(t["txn"][app], serde_json::json!(next), "{app}");
        }
    };
    check(&read_delta_rows(std::slice::from_ref(&table), "seq", &apps));
    assert_eq!(summary.records_landed, ids.len() as u64);

    // A second group replays everything into the same table: nothing is added twice.
    let again = pipeline(&kafka.bootstrap, lake.path(), "shared-again", shared);
    let replay = catch_up(&again).await;
    assert_eq!(replay.caught_up, Some(true), "{replay:?}");
    assert_eq!(replay.records_landed, 0, "{replay:?}");
    check(&read_delta_rows(std::slice::from_ref(&table), "seq", &apps));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_markers_list_the_tables_files_and_name_the_version_that_holds_the_window() {
    sluice_telemetry::init_logging(false, "warn");
    let (kafka, lake, mut p) = one_second_table_pipeline("table-markers");
    p.window.markers = Some(sluice_config::MarkerSettings {
        idle_partition: Duration::from_secs(600),
    });
    p.window.late_data = sluice_config::LateData::Divert;
    p.window.allowed_lateness = Duration::from_secs(60);
    // Hour 10 on both partitions, then one record at 11:30 on each moves them past it.
    let mut records: Vec<_> = (0..200).map(|i| reading(i, "21", false)).collect();
    for seq in [1_000u64, 1_001] {
        let mut r = reading(seq, "21", false);
        let text = String::from_utf8(r.payload.unwrap()).unwrap();
        r.payload = Some(text.replacen("T10:", "T11:", 1).into_bytes());
        records.push(r);
    }
    sluice_testkit::produce(&kafka.bootstrap, TOPIC, &records).unwrap();
    // A file in the hour's directory that no commit names (as a crashed writer leaves).
    let table = lake.path().join("tables/engine.temperature");
    let dir = table.join("date=2024-03-05/hour=10");
    std::fs::create_dir_all(&dir).unwrap();
    let orphan = format!("{TOPIC}-0-000000900000-000000900001.zstd.parquet");
    std::fs::write(dir.join(&orphan), b"not in the table").unwrap();

    let marker = dir.join("_SUCCESS");
    let done = |_: &Metrics| marker.exists();
    sluice_pipeline::run_until(&p, Metrics::new("t"), Duration::from_secs(90), done)
        .await
        .unwrap();
    let read = |path: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).expect("a marker")).unwrap()
    };
    let signal_marker = read(&marker);
    let version = signal_marker["tables"]["tables/engine.temperature"]
        .as_i64()
        .unwrap_or_else(|| panic!("the marker names the table version: {signal_marker:#}"));
    let listed: Vec<&str> = signal_marker["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(!listed.is_empty(), "{signal_marker:#}");
    assert!(!listed.contains(&orphan.as_str()), "{signal_marker:#}");
    let window = read(&lake.path().join("_windows/2024/03/05/10/_SUCCESS"));
    assert_eq!(
        window["tables"]["tables/engine.temperature"], version,
        "{window:#}"
    );
    // The version named holds every record of the hour.
    let at = sluice_testkit::lake_files::read_delta_rows_at(
        std::slice::from_ref(&table),
        "seq",
        version,
    );
    let t = &at[table.to_string_lossy().as_ref()];
    let in_hour: Vec<u64> = (0..200)
        .filter(|seq| t["id_partitions"][seq.to_string()] == "date=2024-03-05/hour=10")
        .collect();
    assert_eq!(in_hour.len(), 200, "{t:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_schema_makes_the_table_and_refuses_what_does_not_fit() {
    let kafka = sluice_testkit::services::MockKafka::start(1);
    kafka.create_topic(TOPIC, 2);
    let lake = tempfile::tempdir().unwrap();
    let declared = "[schema.\"engine.temperature\"]\nfields = { seq = \"long\", reading = \"double\" }\nrequired = [\"seq\", \"reading\"]";
    let p = pipeline(
        &kafka.bootstrap,
        lake.path(),
        "declared",
        &format!("{TABLE}\n[flush]\nmax_age_secs = 1\n{declared}"),
    );
    // Readings that fit, with a field the schema leaves out, then ten that do not fit.
    let mut records: Vec<_> = (0..90).map(|i| reading(i, "21.5", true)).collect();
    records.extend((90..100).map(|i| reading(i, r#""high""#, false)));
    sluice_testkit::produce(&kafka.bootstrap, TOPIC, &records).unwrap();
    let summary = catch_up(&p).await;
    assert_eq!(summary.caught_up, Some(true), "{summary:?}");
    assert_eq!(summary.records_dead_lettered, 10, "{summary:?}");

    let table = lake.path().join("tables/engine.temperature");
    let read = read_delta_rows(std::slice::from_ref(&table), "seq", &[]);
    let t = &read[table.to_string_lossy().as_ref()];
    assert_eq!(t["schema"]["reading"], "double", "{t:#}");
    assert!(t["schema"].get("site").is_none(), "{t:#}");
    assert_eq!(t["ids"], serde_json::json!((0..90).collect::<Vec<u64>>()));
}
