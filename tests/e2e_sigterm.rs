//! Acceptance: a `sluice run` worker stopped with SIGTERM mid-stream loses nothing; after a
//! restart every record is in the lake exactly once.

use std::process::{Child, Command};
use std::time::Duration;

use sluice_e2e::{
    committed, end_offsets, fully_committed, hourly_tansu_pipeline, sigterm_and_wait, sluice_bin,
    wait_for,
};
use sluice_testkit::lake_files::{paths_by_seq, read_ndjson_tree};
use sluice_testkit::sample::{generate, outgoing, SampleSpec};
use sluice_testkit::services::Tansu;

const TOPIC: &str = "stream";

fn start_worker(pipeline: &std::path::Path, log: &std::path::Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(sluice_bin())
        .args(["run"])
        .arg(pipeline)
        .env("RUST_LOG", "info,librdkafka=warn")
        .stderr(log)
        .spawn()
        .unwrap()
}

#[test]
fn sigterm_mid_stream_loses_nothing() {
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 4);
    let samples = generate(&SampleSpec::new(40_000, 4, 3));
    let records = outgoing(&samples);
    let ends = end_offsets(&records);

    // Kept on failure so the workers' logs can be read.
    let dir = tempfile::tempdir().unwrap().keep();
    let lake = dir.join("lake");
    let pipeline = dir.join("pipeline.toml");
    let group = "e2e-sigterm";
    let extra = "compression = \"gzip\"\n[flush]\nmax_records = 500\nmax_age_secs = 1";
    let text = hourly_tansu_pipeline(&tansu.bootstrap, TOPIC, group, &lake, extra);
    std::fs::write(&pipeline, text).unwrap();

    // First half produced, worker running, second half produced while it consumes.
    let (first, second) = records.split_at(records.len() / 2);
    // One record per batch: see `produce_batched` for the Tansu fetch behaviour this avoids.
    sluice_testkit::produce_batched(&tansu.bootstrap, TOPIC, first, 1).unwrap();
    let worker = start_worker(&pipeline, &dir.join("worker1.log"));
    let bootstrap = tansu.bootstrap.clone();
    wait_for(
        "the first worker to commit something",
        Duration::from_secs(120),
        || {
            committed(&bootstrap, group, TOPIC)
                .values()
                .any(|c| c.is_some_and(|c| c > 0))
        },
    );
    let producer = std::thread::spawn({
        let (bootstrap, second) = (tansu.bootstrap.clone(), second.to_vec());
        move || {
            for chunk in second.chunks(2_000) {
                sluice_testkit::produce_batched(&bootstrap, TOPIC, chunk, 1).unwrap();
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    std::thread::sleep(Duration::from_millis(700));
    sigterm_and_wait(worker);
    let at_stop: i64 = committed(&tansu.bootstrap, group, TOPIC)
        .values()
        .map(|c| c.unwrap_or(0))
        .sum();
    producer.join().unwrap();
    assert!(
        at_stop < records.len() as i64,
        "the worker was not stopped mid-stream ({at_stop} committed)"
    );

    // Everything that landed before SIGTERM was committed, and nothing more.
    let landed_before: usize = read_ndjson_tree(&lake).iter().map(|(_, l)| l.len()).sum();
    assert_eq!(
        landed_before as i64, at_stop,
        "committed offsets differ from what landed"
    );

    let worker = start_worker(&pipeline, &dir.join("worker2.log"));
    wait_for(
        "the restarted worker to commit everything",
        Duration::from_secs(180),
        || fully_committed(&bootstrap, group, TOPIC, &ends),
    );
    sigterm_and_wait(worker);

    let found = paths_by_seq(&read_ndjson_tree(&lake));
    for s in &samples {
        let n = found.get(&s.id).map_or(0, Vec::len);
        assert_eq!(
            n,
            1,
            "record {} is in the lake {n} times (logs in {})",
            s.id,
            dir.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
