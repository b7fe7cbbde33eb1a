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

#[test]
fn compaction_packs_a_runs_small_files_and_vacuum_removes_them() {
    let kafka = MockKafka::start(1);
    kafka.create_topic("signals", 2);
    let samples = generate(&SampleSpec::new(4_000, 2, 2));
    sluice_testkit::produce(&kafka.bootstrap, "signals", &outgoing(&samples)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let pipeline = dir.path().join("tables.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
name = "tables"
[source]
bootstrap_servers = "{}"
topics = ["signals"]
group_id = "tables"
[route]
signals = ["engine.temperature", "cabin.humidity"]
[window]
time = "event"
event_time_field = "timestamp"
granularity = "hour"
[sink]
url = "{}"
table = "delta"
[flush]
max_records = 5
"#,
            kafka.bootstrap,
            lake.display()
        ),
    )
    .unwrap();
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
}
