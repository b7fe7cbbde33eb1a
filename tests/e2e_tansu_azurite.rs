//! Acceptance: Tansu (Kafka protocol) → Sluice → Azurite (ADLS Gen2 through the Blob API),
//! hourly event-time windows, a named signal list.

use std::time::Duration;

use sluice_config::Destination;
use sluice_e2e::{committed, end_offsets, fully_committed, TANSU_PROPERTIES};
use sluice_lake::Lake;
use sluice_telemetry::Metrics;
use sluice_testkit::lake_files::{assert_each_exported_once, hour_prefix, parse_ndjson};
use sluice_testkit::sample::{generate, outgoing, SampleSpec};
use sluice_testkit::services::{Azurite, Tansu, AZURITE_KEY};

const TOPIC: &str = "device-signals";
const EXPORTED: [&str; 5] = [
    "engine.temperature",
    "cabin.humidity",
    "battery.voltage",
    "gps.position",
    "door.opened",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_hourly_event_time_files_to_azurite_exactly_once() {
    sluice_telemetry::init_logging(false, "warn");
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 4);
    let azurite = Azurite::start();

    // 50,000 signals of 7 kinds over 4 hours; 5 kinds are exported.
    let samples = generate(&SampleSpec::new(50_000, 4, 4));
    let records = outgoing(&samples);
    sluice_testkit::produce(&tansu.bootstrap, TOPIC, &records).unwrap();
    let ends = end_offsets(&records);

    let group = "e2e-azurite";
    let text = format!(
        r#"
name = "signals-export"
[source]
bootstrap_servers = "{bootstrap}"
topics = ["{TOPIC}"]
group_id = "{group}"
{TANSU_PROPERTIES}
[route]
signal_field = "signal"
signals = {signals:?}
[window]
time = "event"
event_time_field = "timestamp"
granularity = "hour"
[sink]
# A file system and a directory that do not exist yet.
url = "abfss://signals@devstoreaccount1.dfs.core.windows.net/export/v1/"
path = "{{signal}}/{{YYYY}}/{{MM}}/{{dd}}/{{hh}}/{{topic}}-{{partition}}-{{first_offset}}-{{last_offset}}.{{ext}}"
compression = "gzip"
[sink.azure]
account_key_env = "E2E_AZURITE_KEY"
endpoint = "{endpoint}"
"#,
        bootstrap = tansu.bootstrap,
        signals = EXPORTED,
        endpoint = azurite.endpoint,
    );
    let env = |name: &str| (name == "E2E_AZURITE_KEY").then(|| AZURITE_KEY.to_string());
    let pipeline = sluice_config::parse(&text, &env).unwrap();

    let probe = tansu.bootstrap.clone();
    let summary = sluice_pipeline::run_until(
        &pipeline,
        Metrics::new("e2e"),
        Duration::from_secs(240),
        |m| m.records_consumed.get() >= 50_000,
    )
    .await
    .unwrap();
    assert_eq!(summary.records_consumed, 50_000);
    assert!(
        fully_committed(&probe, group, TOPIC, &ends),
        "{:?} != {ends:?}",
        committed(&probe, group, TOPIC)
    );

    // Read everything back from Azurite.
    let Destination::Azure(az) = &pipeline.sink.destination else {
        panic!()
    };
    assert_eq!(az.container, "signals");
    let lake = Lake::open(&pipeline.sink.destination).await.unwrap();
    let mut files = Vec::new();
    for f in lake.list("").await.unwrap() {
        assert!(f.path.ends_with(".json.gz"), "{}", f.path);
        let body = lake.read(&f.path).await.unwrap();
        files.push((f.path, parse_ndjson(&body, true)));
    }
    let exported = assert_each_exported_once(
        &samples,
        &files,
        |s| EXPORTED.contains(&s),
        |s| hour_prefix(&s.signal, s.event_ms),
    );
    assert_eq!(summary.records_landed, exported);
    let hours: std::collections::BTreeSet<_> = files
        .iter()
        .map(|(p, _)| p.split('/').take(5).collect::<Vec<_>>().join("/"))
        .collect();
    assert!(
        hours.len() >= 5 * 4,
        "expected ≥ 4 hourly folders for each of 5 signals, got {}",
        hours.len()
    );

    // A second run of the same group consumes nothing new and writes nothing.
    let again = sluice_pipeline::run_until(
        &pipeline,
        Metrics::new("e2e-again"),
        Duration::from_secs(120),
        |m| m.rebalances.get() > 0,
    )
    .await
    .unwrap();
    assert_eq!(again.records_consumed, 0);
    assert_eq!(lake.list("").await.unwrap().len(), files.len());
}
