//! Event Hubs through its Kafka endpoint: a pipeline configured only by a namespace connection
//! string reaches the broker over TLS with SASL/PLAIN (user `$ConnectionString`, the string as
//! password), as Azure requires. The broker is Tansu behind `SaslGateway`, which terminates TLS
//! with a test certificate and accepts exactly that user and password.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sluice_e2e::sasl_gateway::SaslGateway;
use sluice_telemetry::Metrics;
use sluice_testkit::lake_files::{assert_every_sample_hourly_once, read_ndjson_tree};
use sluice_testkit::sample::{generate, outgoing, SampleSpec};
use sluice_testkit::services::{free_port, Tansu, TestCertificate};

const HUB: &str = "telemetry";

fn pipeline_text(lake: &std::path::Path, ca: &std::path::Path) -> String {
    format!(
        r#"
name = "event-hubs"
[source]
event_hubs_connection_string_env = "EVENT_HUBS_CONNECTION_STRING"
group_id = "sluice-export"
# The gateway's certificate comes from a test CA; on Azure the system roots are used.
properties = {{ "ssl.ca.location" = "{}", "fetch.wait.max.ms" = "10" }}
[window]
time = "event"
event_time_field = "timestamp"
granularity = "hour"
[sink]
url = "{}"
"#,
        ca.display(),
        lake.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_string_authenticates_over_tls_with_sasl_plain_and_exports() {
    sluice_telemetry::init_logging(false, "warn");
    let certificate = TestCertificate::make();
    // The gateway's address must be known before Tansu starts, which advertises it.
    let tansu_port = free_port();
    let key = "c2VjcmV0LWtleQ+/=";
    let connection = |gateway: &str, key: &str| {
        format!("Endpoint=sb://{gateway}/;SharedAccessKeyName=listen;SharedAccessKey={key};EntityPath={HUB}")
    };
    let gateway = SaslGateway::start(
        &format!("127.0.0.1:{tansu_port}"),
        &certificate.cert,
        &certificate.key,
        "$ConnectionString",
        |address| connection(address, key),
    );
    let good = connection(&gateway.address, key);
    let _tansu = Tansu::start_advertising(tansu_port, &gateway.address);

    // Test clients authenticate the same way.
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &gateway.address)
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanisms", "PLAIN")
        .set("sasl.username", "$ConnectionString")
        .set("sasl.password", &good)
        .set("ssl.ca.location", certificate.ca.to_str().unwrap());
    sluice_testkit::services::create_topic_with(&client, HUB, 2);
    let samples = generate(&SampleSpec::new(3_000, 2, 2));
    sluice_testkit::produce_with(client.clone(), HUB, &outgoing(&samples), 10_000).unwrap();

    let work = tempfile::tempdir().unwrap();
    let lake = work.path().join("lake");
    let text = pipeline_text(&lake, &certificate.ca);
    let env = |good: String| {
        move |name: &str| (name == "EVENT_HUBS_CONNECTION_STRING").then(|| good.clone())
    };
    let p = sluice_config::parse(&text, &env(good.clone())).unwrap();
    assert_eq!(p.source.topics, [HUB]);
    let before = gateway.counts.authenticated.load(Ordering::SeqCst);
    let n = samples.len() as u64;
    sluice_pipeline::run_until(&p, Metrics::new("eh"), Duration::from_secs(90), |m| {
        m.records_consumed.get() >= n
    })
    .await
    .unwrap();
    assert!(
        gateway.counts.authenticated.load(Ordering::SeqCst) > before,
        "the worker authenticated"
    );
    assert_eq!(gateway.counts.refused.load(Ordering::SeqCst), 0);
    let files = read_ndjson_tree(&lake);
    let exported = assert_every_sample_hourly_once(&samples, &files);
    assert_eq!(exported, n);

    // A wrong key gets the client refused: nothing is read.
    let bad = sluice_config::parse(&text, &env(connection(&gateway.address, "d3JvbmcK"))).unwrap();
    let consumer: BaseConsumer = sluice_kafka::client_config(&bad.source).create().unwrap();
    let metadata = tokio::task::spawn_blocking(move || {
        consumer.fetch_metadata(Some(HUB), Duration::from_secs(5))
    })
    .await
    .unwrap();
    assert!(metadata.is_err(), "metadata with a wrong key: {metadata:?}");
    assert!(gateway.counts.refused.load(Ordering::SeqCst) > 0);
}
