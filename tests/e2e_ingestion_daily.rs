//! Acceptance: ingestion-time (Kafka timestamp) daily windows on local disk, against Tansu.

use std::time::Duration;

use sluice_e2e::{committed, end_offsets, fully_committed, TANSU_PROPERTIES};
use sluice_telemetry::Metrics;
use sluice_testkit::lake_files::{assert_each_exported_once, day_prefix, read_ndjson_tree};
use sluice_testkit::sample::{generate, outgoing, SampleSpec};
use sluice_testkit::services::Tansu;

const TOPIC: &str = "ingest";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_by_kafka_timestamp_into_daily_files() {
    sluice_telemetry::init_logging(false, "warn");
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 4);
    let mut samples = generate(&SampleSpec::new(20_000, 4, 1));
    // Producer timestamps over three days, unrelated to the event time inside the payload.
    let day = 86_400_000;
    let base = 1_709_251_200_000; // 2024-03-01T00:00:00Z
    for (i, s) in samples.iter_mut().enumerate() {
        s.record.timestamp_ms = Some(base + (i as i64 % 3) * day + (i as i64 * 7919) % day);
    }
    let records = outgoing(&samples);
    sluice_testkit::produce(&tansu.bootstrap, TOPIC, &records).unwrap();

    let lake = tempfile::tempdir().unwrap();
    let group = "e2e-ingestion";
    let text = format!(
        r#"
name = "ingestion-daily"
[source]
bootstrap_servers = "{bootstrap}"
topics = ["{TOPIC}"]
group_id = "{group}"
{TANSU_PROPERTIES}
[window]
time = "ingestion"
granularity = "day"
[sink]
url = "file://{lake}"
"#,
        bootstrap = tansu.bootstrap,
        lake = lake.path().display()
    );
    let pipeline = sluice_config::parse(&text, &|_| None).unwrap();
    let summary = sluice_pipeline::run_until(
        &pipeline,
        Metrics::new("e2e"),
        Duration::from_secs(240),
        |m| m.records_consumed.get() >= 20_000,
    )
    .await
    .unwrap();
    assert_eq!(summary.records_landed, 20_000);
    let ends = end_offsets(&records);
    assert!(
        fully_committed(&tansu.bootstrap, group, TOPIC, &ends),
        "{:?} != {ends:?}",
        committed(&tansu.bootstrap, group, TOPIC)
    );

    let files = read_ndjson_tree(lake.path());
    let landed = assert_each_exported_once(
        &samples,
        &files,
        |_| true,
        |s| day_prefix(&s.signal, s.record.timestamp_ms.unwrap()),
    );
    assert_eq!(landed, 20_000);
    let days: std::collections::BTreeSet<_> = files
        .iter()
        .map(|(p, _)| p.split('/').skip(1).take(3).collect::<Vec<_>>().join("-"))
        .collect();
    assert_eq!(
        days.into_iter().collect::<Vec<_>>(),
        ["2024-03-01", "2024-03-02", "2024-03-03"]
    );
}
