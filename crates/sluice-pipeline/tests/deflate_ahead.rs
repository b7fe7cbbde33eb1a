//! Plain NDJSON gzip files whose lines were deflated ahead, in runs, through a rebalance: a
//! worker that loses partitions drops their buffers while their runs are queued for (or on)
//! the deflating threads, the new owner reads those records again, and every record lands
//! once, each file one gzip member (the lake is read with a single-member reader).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sluice_telemetry::Metrics;
use sluice_testkit::produce;
use sluice_testkit::sample::{generate, outgoing, SampleSpec};
use sluice_testkit::services::MockKafka;
use support::{assert_hourly_once, committed, drained, pipeline, TOPIC};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_deflated_ahead_land_once_through_a_rebalance() {
    sluice_telemetry::init_logging(false, "warn");
    let kafka = MockKafka::start(1);
    kafka.create_topic(TOPIC, 4);
    // One signal in one hour: each partition's buffer holds ~1 MB of lines, four runs.
    let mut spec = SampleSpec::new(24_000, 4, 1);
    spec.signals = vec!["engine.temperature".into()];
    let samples = generate(&spec);
    produce(&kafka.bootstrap, TOPIC, &outgoing(&samples)).unwrap();

    let lake = tempfile::tempdir().unwrap();
    // Nothing lands before the second worker joins: the first one's buffers, runs and all,
    // are still open when two of its partitions are revoked.
    let p = pipeline(
        &kafka.bootstrap,
        lake.path(),
        "ahead",
        "[flush]\nmax_age_secs = 6\nmax_records = 1000000",
    );
    let (first, second) = (Metrics::new("ahead-1"), Metrics::new("ahead-2"));
    let joined = AtomicBool::new(false);
    let stop = |bootstrap: String| {
        let joined = &joined;
        move |m: &Metrics| {
            joined.load(Ordering::SeqCst)
                && m.records_consumed.get() > 0
                && drained(&bootstrap, "ahead")
        }
    };
    let limit = Duration::from_secs(120);
    let worker_1 =
        sluice_pipeline::run_until(&p, first.clone(), limit, stop(kafka.bootstrap.clone()));
    let worker_2 = async {
        // Once the first worker has read everything into its buffers.
        while first.records_consumed.get() < samples.len() as u64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        joined.store(true, Ordering::SeqCst);
        sluice_pipeline::run_until(&p, second.clone(), limit, stop(kafka.bootstrap.clone())).await
    };
    let (one, two) = tokio::join!(worker_1, worker_2);
    let (one, two) = (one.unwrap(), two.unwrap());

    // The second worker took partitions over and read their records again.
    assert!(two.records_consumed > 0, "{two:?}");
    assert!(one.records_consumed + two.records_consumed > samples.len() as u64);
    let (files, exported) = assert_hourly_once(&samples, lake.path(), &p);
    assert_eq!(exported, samples.len() as u64);
    assert_eq!(files.len(), 4, "one file per partition: {files:?}");
    for (committed, end) in committed(&kafka, "ahead") {
        assert_eq!(committed, Some(end));
    }
}
