//! S3 destinations: records from a real Kafka-protocol broker (librdkafka's mock cluster)
//! land in a local S3 server (moto's), each exactly once, and a second run over the same
//! topic writes nothing twice.

use std::time::Duration;

use sluice_e2e::mock_hourly_head;
use sluice_lake::{Lake, Landed};
use sluice_telemetry::Metrics;
use sluice_testkit::lake_files::{assert_every_sample_hourly_once, parse_ndjson};
use sluice_testkit::sample::{generate, outgoing, SampleSpec};
use sluice_testkit::services::{MockKafka, S3Server};

const TOPIC: &str = "signals";

fn pipeline(bootstrap: &str, endpoint: &str, group: &str) -> sluice_config::ValidatedPipeline {
    let text = mock_hourly_head("s3", bootstrap, TOPIC, group)
        + &format!(
            r#"[sink]
url = "s3://lake/exports"
compression = "gzip"
[sink.s3]
endpoint = "{endpoint}"
region = "us-east-1"
access_key_id_env = "S3_KEY_ID"
secret_access_key_env = "S3_SECRET"
"#
        );
    let env = |name: &str| match name {
        "S3_KEY_ID" => Some("testing".to_string()),
        "S3_SECRET" => Some("testing-secret".to_string()),
        _ => None,
    };
    sluice_config::parse(&text, &env).unwrap()
}

async fn lake_files(lake: &Lake) -> Vec<(String, Vec<serde_json::Value>)> {
    let mut files = Vec::new();
    for f in lake.list("").await.unwrap() {
        let body = lake.read(&f.path).await.unwrap();
        files.push((f.path.clone(), parse_ndjson(&body, f.path.ends_with(".gz"))));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_land_once_in_s3_and_replays_write_nothing_twice() {
    sluice_telemetry::init_logging(false, "warn");
    let s3 = S3Server::start();
    s3.create_bucket("lake");
    let kafka = MockKafka::start(1);
    kafka.create_topic(TOPIC, 4);
    let samples = generate(&SampleSpec::new(6_000, 4, 3));
    sluice_testkit::produce(&kafka.bootstrap, TOPIC, &outgoing(&samples)).unwrap();

    let p = pipeline(&kafka.bootstrap, &s3.endpoint, "g1");
    let n = samples.len() as u64;
    let summary =
        sluice_pipeline::run_until(&p, Metrics::new("s3"), Duration::from_secs(90), |m| {
            m.records_consumed.get() >= n
        })
        .await
        .unwrap();
    assert_eq!(summary.records_consumed, n);

    let lake = Lake::open(&p.sink.destination).await.unwrap();
    let files = lake_files(&lake).await;
    let exported = assert_every_sample_hourly_once(&samples, &files);
    assert_eq!(exported, n);

    // A second group replays the whole topic: every record is found in a landed file.
    let again = pipeline(&kafka.bootstrap, &s3.endpoint, "g2");
    let metrics = Metrics::new("s3-again");
    let probe = metrics.clone();
    sluice_pipeline::run_until(&again, metrics, Duration::from_secs(90), |m| {
        m.records_consumed.get() >= n
    })
    .await
    .unwrap();
    assert_eq!(probe.records_already_landed.get(), n);
    assert_eq!(
        lake_files(&lake).await.len(),
        files.len(),
        "a replay wrote files"
    );

    // Write-if-absent holds on this store too.
    let (path, _) = &files[0];
    assert_eq!(
        lake.land(path, b"other".to_vec()).await.unwrap(),
        Landed::AlreadyPresent
    );
}

#[test]
fn a_missing_bucket_fails_at_start_naming_it() {
    let s3 = S3Server::start();
    let p = pipeline("127.0.0.1:1", &s3.endpoint, "g");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(Lake::open(&p.sink.destination))
        .unwrap_err()
        .to_string();
    assert!(err.contains("s3://lake/exports"), "{err}");
}
