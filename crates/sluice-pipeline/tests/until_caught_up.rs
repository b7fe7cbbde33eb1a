//! Backfills and batch runs that end (`RunMode::UntilCaughtUp`, `sluice run
//! --until-caught-up`), against the mock cluster: two workers of one group each end once the
//! partitions they own are landed and committed to their ends; a lake that stays down ends
//! the run with an error and commits nothing that did not land.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_pipeline::RunMode;
use sluice_telemetry::Metrics;
use support::*;

fn until_caught_up(lake_patience: Duration) -> RunMode {
    RunMode::UntilCaughtUp { lake_patience }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_each_end_when_their_partitions_are_caught_up() {
    sluice_telemetry::init_logging(false, "warn");
    let (kafka, samples, lake) = loaded_topic(20_000);
    let group = "catch-up";
    let p = pipeline(
        &kafka.bootstrap,
        lake.path(),
        group,
        "[flush]\nmax_age_secs = 1",
    );
    let start = |delay: Duration, metrics: Metrics| {
        let p = p.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mode = until_caught_up(Duration::from_secs(60));
            sluice_pipeline::run_with(&p, metrics, sluice_pipeline::Shutdown::new(), mode).await
        })
    };
    let a = start(Duration::ZERO, Metrics::new("a"));
    let b = start(Duration::from_millis(500), Metrics::new("b"));
    let limit = Duration::from_secs(240);
    let a = tokio::time::timeout(limit, a)
        .await
        .expect("worker a ends")
        .unwrap()
        .unwrap();
    let b = tokio::time::timeout(limit, b)
        .await
        .expect("worker b ends")
        .unwrap()
        .unwrap();
    assert_eq!(a.caught_up, Some(true), "{a:?}");
    assert_eq!(b.caught_up, Some(true), "{b:?}");

    let (_, exported) = assert_hourly_once(&samples, lake.path(), &p);
    assert_eq!(a.records_landed + b.records_landed, exported);
    let committed = committed(&kafka, group);
    assert!(
        committed.iter().all(|(c, end)| *c == Some(*end)),
        "{committed:?}"
    );
    // What the summaries report reached is where the group committed.
    let mut reached = BTreeMap::new();
    for summary in [&a, &b] {
        for (tp, p) in &summary.partitions {
            assert!(p.caught_up(), "{tp}: {p:?}");
            reached.insert(tp.partition, p.end);
        }
        let per_signal: u64 = summary.signals.values().map(|t| t.records).sum();
        assert_eq!(per_signal, summary.records_landed);
    }
    assert_eq!(
        reached.len(),
        4,
        "every partition was owned by one of them at the end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_that_stays_down_ends_the_run_with_an_error_and_commits_nothing_unlanded() {
    sluice_telemetry::init_logging(false, "warn");
    let (kafka, samples, lake) = loaded_topic(2_000);
    // Every exported signal's directory is a file: each write fails, temporarily, for ever.
    for signal in [
        "engine.temperature",
        "cabin.humidity",
        "battery.voltage",
        "gps.position",
        "door.opened",
    ] {
        std::fs::write(lake.path().join(signal), b"in the way").unwrap();
    }
    let group = "catch-up-down";
    let p = pipeline(
        &kafka.bootstrap,
        lake.path(),
        group,
        "[flush]\nmax_age_secs = 1",
    );
    let mode = until_caught_up(Duration::from_secs(5));
    let run = sluice_pipeline::run_with(
        &p,
        Metrics::new("down"),
        sluice_pipeline::Shutdown::new(),
        mode,
    );
    let result = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the run gives up in bounded time");
    assert!(result.is_err(), "{result:?}");

    // Per partition, the records before the committed offset are all of signals not exported.
    let mut offsets: BTreeMap<i32, Vec<bool>> = BTreeMap::new();
    for s in &samples {
        offsets
            .entry(s.record.partition)
            .or_default()
            .push(p.filter.admits(&s.signal));
    }
    let progress =
        sluice_kafka::group_progress(&kafka.bootstrap, group, TOPIC, Duration::from_secs(10))
            .unwrap();
    for (partition, (committed, _)) in progress {
        let committed = committed.unwrap_or(0) as usize;
        let exported = &offsets[&partition];
        assert!(
            exported[..committed].iter().all(|e| !e),
            "partition {partition}: committed {committed} past an unlanded exported record"
        );
    }
}
