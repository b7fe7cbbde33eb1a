//! With window markers, a worker that takes a partition over after a crash judges replayed
//! records late exactly as their first owner did: the watermark's history travels with the
//! partition's progress in the lake. Without it the new owner would start with no watermark,
//! take a record the first owner had diverted to `_late/` for on time, and land it a second
//! time in its closed (and possibly sealed) hour.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice_e2e::{mock_hourly_head, sigterm_and_wait, sluice_bin, wait_for};
use sluice_testkit::lake_files::{paths_by_seq, read_ndjson_tree};
use sluice_testkit::sample::signal_at;
use sluice_testkit::services::{free_port, MockKafka};
use sluice_testkit::{produce, Outgoing};

const TOPIC: &str = "signals";

fn at(seq: u64, ts: &str) -> Outgoing {
    signal_at(0, seq, ts)
}

fn start(pipeline: &Path, log: &Path) -> Child {
    Command::new(sluice_bin())
        .args(["run", "--listen", &format!("127.0.0.1:{}", free_port())])
        .arg(pipeline)
        .env("RUST_LOG", "info,librdkafka=warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Partition 0's committed offset.
fn committed(kafka: &MockKafka, group: &str) -> Option<i64> {
    sluice_kafka::group_progress(&kafka.bootstrap, group, TOPIC, Duration::from_secs(5))
        .ok()?
        .get(&0)?
        .0
}

/// One attempt; `None` when the crash came too late to leave the late record uncommitted
/// (then nothing would be replayed and the attempt proves nothing).
fn crash_and_take_over(attempt: u32) -> Option<()> {
    let kafka = MockKafka::start(1);
    // Partition 1 stays empty (and, for 300 s, not idle): it holds every marker back, so no
    // window is sealed and only the watermark's history can tell the new owner what was late.
    kafka.create_topic(TOPIC, 2);
    let work = tempfile::tempdir().unwrap();
    let lake = work.path().join("lake");
    let group = format!("takeover-{attempt}");
    let pipeline = work.path().join("p.toml");
    std::fs::write(
        &pipeline,
        mock_hourly_head("takeover", &kafka.bootstrap, TOPIC, &group)
            .replace(
                "granularity = \"hour\"",
                "granularity = \"hour\"\nmarkers = true\nlate_data = \"divert\"\nallowed_lateness_secs = 1800",
            )
            + &format!(
                "[sink]\nurl = \"{}\"\nwrite_timeout_secs = 1\n[flush]\nmax_age_secs = 1\nmax_bytes = 4194304\n",
                lake.display()
            ),
    )
    .unwrap();

    // 10:10 then 12:10: the watermark is 13:00 once both are in.
    produce(
        &kafka.bootstrap,
        TOPIC,
        &[at(0, "2024-03-05T10:10:00Z"), at(1, "2024-03-05T12:10:00Z")],
    )
    .unwrap();
    let first = start(&pipeline, &work.path().join("first.log"));
    wait_for(
        "the first two records committed",
        Duration::from_secs(60),
        || committed(&kafka, &group) == Some(2),
    );
    // 10:20 is late (11:00 + 30 min < 13:00): diverted to _late/.
    produce(
        &kafka.bootstrap,
        TOPIC,
        &[at(2, "2024-03-05T10:20:00Z"), at(3, "2024-03-05T12:20:00Z")],
    )
    .unwrap();
    let late_dir = lake.join("_late/engine.temperature/2024/03/05/10");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_dir(&late_dir).is_ok_and(|mut d| d.next().is_some()) {
        assert!(Instant::now() < deadline, "the late record never landed");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Crash at once: progress (and so commits) are written every 5 s.
    let mut first = first;
    first.kill().unwrap();
    first.wait().unwrap();
    if committed(&kafka, &group) != Some(2) {
        return None;
    }
    assert!(
        !lake.join("_windows").exists(),
        "nothing may be sealed here"
    );

    // The next owner replays offsets 2 and 3.
    let second = start(&pipeline, &work.path().join("second.log"));
    wait_for("everything committed", Duration::from_secs(90), || {
        committed(&kafka, &group) == Some(4)
    });
    sigterm_and_wait(second);

    let files = read_ndjson_tree(&lake);
    let found = paths_by_seq(&files);
    for seq in 0..4 {
        assert_eq!(
            found.get(&seq).map_or(0, Vec::len),
            1,
            "record {seq} landed {:?}",
            found.get(&seq)
        );
    }
    assert!(found[&2][0].starts_with("_late/engine.temperature/2024/03/05/10/"));
    assert!(found[&0][0].starts_with("engine.temperature/2024/03/05/10/"));
    Some(())
}

#[test]
fn a_new_owner_judges_replayed_records_late_as_the_first_did() {
    sluice_telemetry::init_logging(false, "warn");
    for attempt in 0..3 {
        if crash_and_take_over(attempt).is_some() {
            return;
        }
        eprintln!("attempt {attempt}: the crash came after the late record was committed; again");
    }
    panic!("three crashes all came after the commit; the replay was never exercised");
}
