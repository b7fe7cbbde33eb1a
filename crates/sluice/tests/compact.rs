//! `sluice compact` and `sluice inspect` on Delta tables a batch run wrote with many small
//! files: compaction leaves at most 10 files per partition with the same rows, a reader at the
//! version before it still reads until the vacuum, and the vacuum removes the replaced files.

use std::path::Path;
use std::process::Command;

use sluice_testkit::lake_files::{files_under, read_delta_at, read_delta_rows};
use sluice_testkit::sample::{generate, outgoing, SampleSpec};
use sluice_testkit::services::MockKafka;

fn sluice(args: &[&str], pipeline: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .arg(pipeline)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "sluice {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A pipeline file in `dir` named `name` (its group too) writing `signals` to Delta tables
/// under `lake` in files of 5 records, `sink` appended to `[sink]`.
fn table_pipeline(
    dir: &Path,
    name: &str,
    bootstrap: &str,
    lake: &Path,
    signals: &str,
    sink: &str,
) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        r#"
name = "{name}"
[source]
bootstrap_servers = "{bootstrap}"
topics = ["signals"]
group_id = "{name}"
[route]
signals = {signals}
[window]
time = "event"
event_time_field = "timestamp"
granularity = "hour"
[sink]
url = "{}"
table = "delta"
{sink}
[flush]
max_records = 5
max_age_secs = 1
"#,
        lake.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn compaction_packs_a_runs_small_files_and_vacuum_removes_them() {
    let kafka = MockKafka::start(1);
    kafka.create_topic("signals", 2);
    let samples = generate(&SampleSpec::new(4_000, 2, 2));
    sluice_testkit::produce(&kafka.bootstrap, "signals", &outgoing(&samples)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let pipeline = table_pipeline(
        dir.path(),
        "tables",
        &kafka.bootstrap,
        &lake,
        r#"["engine.temperature", "cabin.humidity"]"#,
        "",
    );
    sluice(
        &["run", "--until-caught-up", "--listen", "127.0.0.1:0"],
        &pipeline,
    );
    let tables = [lake.join("engine.temperature"), lake.join("cabin.humidity")];
    let before = read_delta_rows(&tables, "seq", &[]);
    let files: u64 = tables
        .iter()
        .map(|t| {
            before[t.to_string_lossy().as_ref()]["files"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert!(files >= 200, "{files} files");

    let report = sluice(&["compact", "--retention-hours", "1"], &pipeline);
    assert_eq!(report.lines().count(), 2, "{report}");
    let after = read_delta_rows(&tables, "seq", &[]);
    for t in &tables {
        let key = t.to_string_lossy().to_string();
        let (was, now) = (&before[&key], &after[&key]);
        assert_eq!(now["ids"], was["ids"], "{key}: the same rows");
        assert_eq!(now["id_partitions"], was["id_partitions"]);
        let partitions = now["partitions"].as_array().unwrap().len() as u64;
        assert!(now["files"].as_u64().unwrap() <= 10 * partitions, "{now}");
        // The version before compaction still reads: its files are kept until the vacuum.
        let old = read_delta_at(
            std::slice::from_ref(&key),
            &[],
            &[],
            was["version"].as_i64(),
        );
        assert_eq!(old[&key]["rows"], was["rows"]);
        assert_eq!(old[&key]["files"], was["files"]);
    }

    let inspected = sluice(&["inspect", "engine.temperature", "--pipeline"], &pipeline);
    let summary: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    let key = tables[0].to_string_lossy().to_string();
    assert_eq!(summary["rows"], after[&key]["rows"]);
    assert_eq!(summary["version"], after[&key]["version"]);
    assert_eq!(
        summary["partition_columns"],
        serde_json::json!(["date", "hour"])
    );
    assert_eq!(summary["marks"].as_array().unwrap().len(), 2, "{summary}");

    let parquet_before = files_under(&lake, ".parquet").len();
    let vacuumed = sluice(&["compact", "--retention-hours", "0"], &pipeline);
    let removed: u64 = vacuumed
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["vacuumed"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(removed, files, "{vacuumed}");
    assert_eq!(
        files_under(&lake, ".parquet").len(),
        parquet_before - files as usize
    );
    let last = read_delta_rows(&tables, "seq", &[]);
    for t in &tables {
        let key = t.to_string_lossy().to_string();
        assert_eq!(last[&key]["ids"], before[&key]["ids"]);
    }

    // A replay from the start into the compacted tables adds nothing: each compacted file
    // names the offset-named files it replaced, so the records are known to be in.
    let replay = dir.path().join("replay.toml");
    let text = std::fs::read_to_string(&pipeline)
        .unwrap()
        .replace("group_id = \"tables\"", "group_id = \"tables-replay\"");
    std::fs::write(&replay, text).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&sluice(
        &["run", "--until-caught-up", "--listen", "127.0.0.1:0"],
        &replay,
    ))
    .unwrap();
    assert_eq!(summary["records_landed"], 0, "{summary}");
    let replayed = read_delta_rows(&tables, "seq", &[]);
    for t in &tables {
        let key = t.to_string_lossy().to_string();
        assert_eq!(replayed[&key]["ids"], before[&key]["ids"], "{key}");
    }
}

#[test]
fn a_compaction_schedule_in_the_pipeline_file_compacts_while_exporting() {
    let kafka = MockKafka::start(1);
    kafka.create_topic("signals", 2);
    let samples = generate(&SampleSpec::new(2_000, 2, 1));
    sluice_testkit::produce(&kafka.bootstrap, "signals", &outgoing(&samples)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let pipeline = table_pipeline(
        dir.path(),
        "scheduled",
        &kafka.bootstrap,
        &lake,
        r#"["engine.temperature"]"#,
        "table_compact_every_secs = 1",
    );
    // A continuous worker, stopped once everything is committed and a round compacted.
    let log = dir.path().join("worker.log");
    let mut worker = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--listen", "127.0.0.1:0"])
        .arg(&pipeline)
        .env("RUST_LOG", "sluice_pipeline=info")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let compacted = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("compacted a table");
        let progress = sluice_kafka::group_progress(
            &kafka.bootstrap,
            "scheduled",
            "signals",
            std::time::Duration::from_secs(5),
        )
        .unwrap();
        if compacted && progress.values().all(|(c, end)| *c == Some(*end)) {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = worker.kill();
            panic!("{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // SAFETY: kill(2) on the child this test spawned and has not reaped.
    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    assert!(worker.wait().unwrap().success());
    let table = lake.join("engine.temperature");
    let read = read_delta_rows(std::slice::from_ref(&table), "seq", &[]);
    let t = &read[table.to_string_lossy().as_ref()];
    let mut ids: Vec<u64> = samples
        .iter()
        .filter(|s| s.signal == "engine.temperature")
        .map(|s| s.id)
        .collect();
    ids.sort();
    assert_eq!(t["ids"], serde_json::json!(ids), "every record once");
    let landed = files_under(&lake, ".parquet").len() as u64;
    assert!(t["files"].as_u64().unwrap() < landed, "{t}");
}
