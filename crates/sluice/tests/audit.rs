//! `sluice audit` as a user runs it after an incident: against a lake a batch run filled
//! (the mock cluster as the broker), then after a file was deleted by hand, then after a
//! file was copied under an overlapping name, and `--repair`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use sluice_testkit::lake_files::read_ndjson_tree;
use sluice_testkit::sample::{generate, outgoing, poison, SampleSpec};
use sluice_testkit::services::MockKafka;

/// A pipeline file in `dir` named `name` (its group too): hourly event-time windows over the
/// samples, files under `lake`, `extra` appended to `[sink]`.
fn hourly_pipeline(dir: &Path, name: &str, bootstrap: &str, lake: &Path, extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        r#"
name = "{name}"
[source]
bootstrap_servers = "{bootstrap}"
topics = ["signals"]
group_id = "{name}"
[window]
time = "event"
event_time_field = "timestamp"
granularity = "hour"
[sink]
url = "{}"
{extra}
"#,
        lake.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn sluice(args: &[&str], pipeline: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .arg(pipeline)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn audit(pipeline: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["audit", "--json"];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = sluice(&args, pipeline);
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {stdout}\n{stderr}"));
    (code, report)
}

fn total(report: &serde_json::Value, field: &str) -> u64 {
    report["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[field].as_u64().unwrap())
        .sum()
}

/// Every offset the report lists under `field` (`missing_offsets`), per partition.
fn offsets(report: &serde_json::Value, field: &str) -> BTreeSet<(i64, i64)> {
    let mut out = BTreeSet::new();
    for p in report["partitions"].as_array().unwrap() {
        let partition = p["partition"].as_i64().unwrap();
        for r in p[field].as_array().unwrap() {
            for o in r[0].as_i64().unwrap()..=r[1].as_i64().unwrap() {
                out.insert((partition, o));
            }
        }
    }
    out
}

/// The lake's data files (not dead letters), relative paths.
fn data_files(lake: &Path) -> BTreeSet<String> {
    read_ndjson_tree(lake)
        .into_iter()
        .map(|(path, _)| path)
        .filter(|p| p.ends_with(".json.gz"))
        .collect()
}

/// Partition, first and last offset of an offset-named file.
fn range(path: &str) -> (i64, i64, i64) {
    let name = path.rsplit('/').next().unwrap();
    let stem = name
        .strip_prefix("signals-")
        .unwrap()
        .split('.')
        .next()
        .unwrap();
    let n: Vec<i64> = stem.split('-').map(|x| x.parse().unwrap()).collect();
    (n[0], n[1], n[2])
}

#[test]
fn audit_finds_every_record_once_then_the_deleted_and_the_doubled_and_repairs_only_the_copy() {
    let kafka = MockKafka::start(1);
    kafka.create_topic("signals", 3);
    let samples = generate(&SampleSpec::new(2_400, 3, 2));
    let mut records = outgoing(&samples);
    // A few records every pipeline dead-letters: the audit finds them there.
    records.extend((0..6).map(|n| poison(n, (n % 3) as i32)));
    sluice_testkit::produce(&kafka.bootstrap, "signals", &records).unwrap();
    // Each sample's offset, as the broker assigned them in produce order.
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut offset_of_seq = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let o = next.entry(r.partition).or_default();
        if let Some(s) = samples.get(i) {
            offset_of_seq.insert(s.id, (r.partition as i64, *o));
        }
        *o += 1;
    }

    let dir = tempfile::tempdir().unwrap();
    let lake: PathBuf = dir.path().join("lake");
    let pipeline = hourly_pipeline(
        dir.path(),
        "audited",
        &kafka.bootstrap,
        &lake,
        "compression = \"gzip\"",
    );
    let (code, stdout, stderr) = sluice(
        &["run", "--until-caught-up", "--listen", "127.0.0.1:0"],
        &pipeline,
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");

    // A clean lake: everything once, the poison in the dead letters.
    let (code, clean) = audit(&pipeline, &[]);
    assert_eq!(code, 0, "{clean:#}");
    assert_eq!(total(&clean, "records"), records.len() as u64);
    assert_eq!(total(&clean, "once"), records.len() as u64);
    assert_eq!(total(&clean, "dead_lettered"), 6);
    assert_eq!(total(&clean, "missing") + total(&clean, "duplicated"), 0);
    assert_eq!(clean["clean"], true);

    // A file deleted by hand: exactly its records are missing.
    let files = data_files(&lake);
    let victim = files.iter().nth(files.len() / 2).unwrap().clone();
    let bytes = std::fs::read(lake.join(&victim)).unwrap();
    let in_victim: BTreeSet<(i64, i64)> = sluice_testkit::lake_files::parse_ndjson(&bytes, true)
        .iter()
        .map(|line| {
            offset_of_seq[&line["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("{victim}: {line}"))]
        })
        .collect();
    assert!(!in_victim.is_empty());
    std::fs::remove_file(lake.join(&victim)).unwrap();
    let (code, deleted) = audit(&pipeline, &[]);
    assert_eq!(code, 1, "{deleted:#}");
    assert_eq!(offsets(&deleted, "missing_offsets"), in_victim);
    assert_eq!(total(&deleted, "duplicated"), 0);
    assert_eq!(deleted["clean"], false);
    std::fs::write(lake.join(&victim), &bytes).unwrap();

    // A file copied under an overlapping name (one offset wider): its records are doubled.
    let original = files.iter().next().unwrap().clone();
    let (partition, first, last) = range(&original);
    // Offsets are written with 12 digits.
    let copy = original.replace(
        &format!("signals-{partition}-{first:012}-{last:012}."),
        &format!("signals-{partition}-{first:012}-{:012}.", last + 1),
    );
    assert_ne!(copy, original);
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::copy(lake.join(&original), lake.join(&copy)).unwrap();
    let copied = sluice_testkit::lake_files::parse_ndjson(
        &std::fs::read(lake.join(&original)).unwrap(),
        true,
    )
    .len() as u64;
    let (code, doubled) = audit(&pipeline, &[]);
    assert_eq!(code, 1, "{doubled:#}");
    assert_eq!(total(&doubled, "missing"), 0, "{doubled:#}");
    // Offset last + 1, if it is of the same signal and hour, is in the copy's range too.
    let doubled_records = total(&doubled, "duplicated");
    assert!(
        doubled_records == copied || doubled_records == copied + 1,
        "{doubled_records} doubled, the copy holds {copied}: {doubled:#}"
    );
    let paths: Vec<String> = doubled["partitions"][partition as usize]["duplicates"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["paths"].as_array().unwrap().clone())
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert!(
        paths.contains(&original) && paths.contains(&copy),
        "{paths:?}"
    );

    // --repair removes the copy, and nothing else.
    let (code, repaired) = audit(&pipeline, &["--repair"]);
    assert_eq!(code, 0, "{repaired:#}");
    assert_eq!(repaired["repaired"], serde_json::json!([copy]));
    assert_eq!(data_files(&lake), files);
    let (code, after) = audit(&pipeline, &[]);
    assert_eq!(code, 0, "{after:#}");
    assert_eq!(total(&after, "once"), records.len() as u64);
}

#[test]
fn audit_bounds_and_refusals_name_what_is_wrong() {
    let kafka = MockKafka::start(1);
    kafka.create_topic("signals", 2);
    let samples = generate(&SampleSpec::new(200, 2, 1));
    sluice_testkit::produce(&kafka.bootstrap, "signals", &outgoing(&samples)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let pipeline = hourly_pipeline(dir.path(), "bounded", &kafka.bootstrap, &lake, "");
    // Nothing exported yet: every audited record is missing; the bounds narrow the audit.
    let (code, report) = audit(&pipeline, &["--from", "10", "--to", "1=20"]);
    assert_eq!(code, 1, "{report:#}");
    let p = report["partitions"].as_array().unwrap();
    assert_eq!(p[0]["from"], 10);
    assert_eq!(p[1]["from"], 10);
    assert_eq!(p[1]["to"], 20);
    assert_eq!(p[1]["missing"], 10);
    let (code, _, stderr) = sluice(&["audit", "--from", "7=0"], &pipeline);
    assert_eq!(code, 2);
    assert!(stderr.contains("names no partition"), "{stderr}");
    let (code, _, stderr) = sluice(&["audit", "--from", "soon"], &pipeline);
    assert_eq!(code, 2);
    assert!(stderr.contains("RFC 3339"), "{stderr}");
}
