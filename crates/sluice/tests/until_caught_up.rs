//! `sluice run --until-caught-up` as a batch job runs it: a process against a broker (the
//! mock cluster, hosted by this test on loopback), ending by itself with exit status 0 and a
//! JSON summary whose offsets are the group's.

use std::process::Command;
use std::time::Duration;

use sluice_testkit::sample::{generate, outgoing, SampleSpec};
use sluice_testkit::services::MockKafka;

#[test]
fn a_batch_run_ends_by_itself_with_a_summary_of_what_it_committed() {
    let kafka = MockKafka::start(1);
    kafka.create_topic("signals", 4);
    let samples = generate(&SampleSpec::new(3_000, 4, 2));
    sluice_testkit::produce(&kafka.bootstrap, "signals", &outgoing(&samples)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("batch.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
name = "batch"
[source]
bootstrap_servers = "{}"
topics = ["signals"]
group_id = "batch"
[window]
time = "event"
event_time_field = "timestamp"
granularity = "hour"
[sink]
url = "{}"
"#,
            kafka.bootstrap,
            dir.path().join("lake").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--until-caught-up", "--listen", "127.0.0.1:0"])
        .arg(&pipeline)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON summary");
    assert_eq!(summary["caught_up"], true);
    assert_eq!(summary["records_consumed"], 3_000);
    let per_signal: u64 = summary["signals"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s["records"].as_u64().unwrap())
        .sum();
    assert_eq!(per_signal, 3_000);
    let group = sluice_kafka::group_progress(
        &kafka.bootstrap,
        "batch",
        "signals",
        Duration::from_secs(10),
    )
    .unwrap();
    let partitions = summary["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 4);
    for p in partitions {
        let (committed, end) = group[&(p["partition"].as_i64().unwrap() as i32)];
        assert_eq!(committed, Some(end), "{p}");
        assert_eq!(p["committed"].as_i64(), Some(end), "{p}");
        assert_eq!(p["end"].as_i64(), Some(end), "{p}");
    }
}
