//! The shipped pipeline files, as shipped except for where they connect (Tansu instead of
//! Event Hubs/Kafka, Azurite with its shared key instead of the Azure account and its
//! credentials; `e2e_azure_service_principal` covers that auth) and the schedule's length, run
//! end to end on data shaped like the product pages' examples.

use std::time::{Duration, Instant};

use sluice_e2e::TANSU_PROPERTIES;
use sluice_lake::Lake;
use sluice_telemetry::Metrics;
use sluice_testkit::lake_files::{assert_each_exported_once, hour_prefix, parse_ndjson};
use sluice_testkit::sample::{generate, outgoing, SampleSpec};
use sluice_testkit::services::{workspace_root, Azurite, Tansu, AZURITE_KEY};
use sluice_testkit::Outgoing;

/// `pipelines/<name>.toml` pointed at Tansu and Azurite; `flush` entries replace the file's.
fn shipped(
    name: &str,
    bootstrap: &str,
    topic: &str,
    azurite: &Azurite,
    flush: &[(&str, toml::Value)],
) -> sluice_config::ValidatedPipeline {
    let path = workspace_root().join(format!("pipelines/{name}.toml"));
    let mut doc: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let properties: toml::Table = TANSU_PROPERTIES.parse().unwrap();
    let mut source = toml::Table::new();
    source.insert("bootstrap_servers".into(), bootstrap.into());
    source.insert("topics".into(), toml::Value::Array(vec![topic.into()]));
    source.insert("group_id".into(), format!("e2e-{name}").into());
    source.insert("properties".into(), properties["properties"].clone());
    doc.insert("source".into(), source.into());
    let sink = doc["sink"].as_table_mut().unwrap();
    let azure = sink["azure"].as_table_mut().unwrap();
    // Azurite over plain HTTP takes the shared key (the service principal has its own test).
    for auth in [
        "tenant_id",
        "client_id",
        "client_secret_env",
        "sas_token_env",
        "credential",
    ] {
        azure.remove(auth);
    }
    azure.insert("endpoint".into(), azurite.endpoint.clone().into());
    azure.insert("account_key_env".into(), "E2E_AZURITE_KEY".into());
    azure.insert("account_name".into(), "devstoreaccount1".into());
    let table = doc.entry("flush").or_insert(toml::Table::new().into());
    for (k, v) in flush {
        table
            .as_table_mut()
            .unwrap()
            .insert(k.to_string(), v.clone());
    }
    let env = |n: &str| (n == "E2E_AZURITE_KEY").then(|| AZURITE_KEY.to_string());
    sluice_config::parse(&toml::to_string(&doc).unwrap(), &env).unwrap()
}

async fn files_under(lake: &Lake, prefix: &str) -> Vec<sluice_lake::LakeFile> {
    let mut files = lake.list(prefix).await.unwrap();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// Seed 002: IoT Central measurements exported as Avro in IoT Hub's routing shape, one folder
/// per minute under measurements/<hub>/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iot_continuous_export_writes_minute_folders_of_iot_hub_avro() {
    sluice_telemetry::init_logging(false, "warn");
    let tansu = Tansu::start();
    tansu.create_topic("iothub-events", 2);
    let azurite = Azurite::start();
    // 2018-06-11T00:00:08.225Z, as in the seed, then one message a second for 3 minutes.
    let start_ms = 1_528_675_208_225i64;
    let n = 180u64;
    let records: Vec<Outgoing> = (0..n)
        .map(|i| {
            let body = format!(
                r#"{{"humidity":{},"magnetometerX":0.29451796907056726,"magnetometerY":0.5550332126050068,"magnetometerZ":-0.04116681874733441,"connectivity":"connected","opened":"triggered"}}"#,
                80.0 + i as f64 / 8.0
            );
            Outgoing {
                partition: (i % 2) as i32,
                key: None,
                payload: Some(body.into_bytes()),
                headers: vec![
                    ("iothub-connection-device-id".into(), format!("2383d8ba-{:04}", i % 5).into_bytes()),
                    ("iothub-connection-auth-method".into(), br#"{"scope":"hub","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#.to_vec()),
                    ("iothub-connection-auth-generation-id".into(), b"636614021491644195".to_vec()),
                    ("message-id".into(), format!("m-{i}").into_bytes()),
                ],
                timestamp_ms: Some(start_ms + i as i64 * 1000),
            }
        })
        .collect();
    sluice_testkit::produce_batched(&tansu.bootstrap, "iothub-events", &records, 1).unwrap();

    let p = shipped(
        "iot-continuous-export",
        &tansu.bootstrap,
        "iothub-events",
        &azurite,
        &[],
    );
    let summary =
        sluice_pipeline::run_until(&p, Metrics::new("iot"), Duration::from_secs(120), |m| {
            m.records_consumed.get() >= n
        })
        .await
        .unwrap();
    assert_eq!(summary.records_consumed, n);

    let lake = Lake::open(&p.sink.destination).await.unwrap();
    let files = files_under(&lake, "measurements/").await;
    let mut seen = std::collections::BTreeSet::new();
    for f in &files {
        assert!(f.path.ends_with(".avro"), "{}", f.path);
        let body = lake.read(&f.path).await.unwrap();
        let reader = apache_avro::Reader::new(&body[..]).unwrap();
        for value in reader {
            let apache_avro::types::Value::Record(fields) = value.unwrap() else {
                panic!()
            };
            let get = |k: &str| {
                fields
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
                    .unwrap()
            };
            let apache_avro::types::Value::Map(system) = get("SystemProperties") else {
                panic!()
            };
            let text = |v: &apache_avro::types::Value| match v {
                apache_avro::types::Value::String(s) => s.clone(),
                other => panic!("{other:?}"),
            };
            let id = text(&system["messageId"]);
            let i: u64 = id.trim_start_matches("m-").parse().unwrap();
            assert!(seen.insert(i), "message {i} exported twice");
            assert_eq!(
                text(&system["connectionDeviceId"]),
                format!("2383d8ba-{:04}", i % 5)
            );
            assert_eq!(
                text(&system["connectionDeviceGenerationId"]),
                "636614021491644195"
            );
            let apache_avro::types::Value::Union(1, body) = get("Body") else {
                panic!()
            };
            let apache_avro::types::Value::Bytes(body) = *body else {
                panic!()
            };
            assert_eq!(body, records[i as usize].payload.clone().unwrap());
            // The file sits in the folder of the minute IoT Hub enqueued the message.
            let t = chrono_minute(start_ms + i as i64 * 1000);
            assert!(
                f.path.starts_with(&format!("measurements/myhub/{t}/")),
                "{} for {i}",
                f.path
            );
            let enqueued = text(&get("EnqueuedTimeUtc"));
            assert!(
                enqueued.ends_with("0000Z") && enqueued.len() == 28,
                "{enqueued}"
            );
        }
    }
    assert_eq!(seen.len() as u64, n, "every message exactly once");
}

fn chrono_minute(ms: i64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // 2018-06-11 is day 17693 since the epoch; the test stays within that day.
    assert_eq!(days, 17_693);
    format!("2018/06/11/{:02}/{:02}", rem / 3600, rem % 3600 / 60)
}

const COUNTRIES: [&str; 3] = ["DE", "US", "JP"];

/// Seed 001: a dataset exported as Parquet with selected, renamed columns on a batch
/// schedule, with a manifest per run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataset_export_writes_mapped_parquet_and_a_manifest_per_run() {
    sluice_telemetry::init_logging(false, "warn");
    let tansu = Tansu::start();
    tansu.create_topic("audience-profiles", 2);
    let azurite = Azurite::start();
    let n = 400u64;
    let records: Vec<Outgoing> = (0..n)
        .map(|i| Outgoing {
            partition: (i % 2) as i32,
            key: Some(format!("p-{i}").into_bytes()),
            payload: Some(
                serde_json::json!({
                    "personId": format!("p-{i}"),
                    "email": format!("person{i}@example.com"),
                    "segments": ["loyal", format!("tier-{}", i % 3)],
                    "profile": {"country": COUNTRIES[(i % 3) as usize], "age": 20 + i % 50},
                    "updatedAt": format!("2026-11-20T08:{:02}:00.250Z", i % 60),
                    "internalScore": i,
                })
                .to_string()
                .into_bytes(),
            ),
            headers: vec![],
            timestamp_ms: None,
        })
        .collect();
    sluice_testkit::produce_batched(&tansu.bootstrap, "audience-profiles", &records, 1).unwrap();

    let p = shipped(
        "dataset-export",
        &tansu.bootstrap,
        "audience-profiles",
        &azurite,
        &[("every", "2s".into())],
    );
    assert!(p.flush.manifest);
    // Run until every record is consumed and one more scheduled run has passed.
    let consumed_at = std::sync::Mutex::new(None::<Instant>);
    let summary =
        sluice_pipeline::run_until(&p, Metrics::new("dataset"), Duration::from_secs(120), |m| {
            let mut at = consumed_at.lock().unwrap();
            if m.records_consumed.get() >= n && at.is_none() {
                *at = Some(Instant::now());
            }
            at.is_some_and(|t| t.elapsed() > Duration::from_secs(5))
        })
        .await
        .unwrap();
    assert_eq!(summary.records_consumed, n);

    let lake = Lake::open(&p.sink.destination).await.unwrap();
    let files = files_under(&lake, "audience/").await;
    assert!(!files.is_empty());
    let mut rows = 0;
    for f in &files {
        assert!(f.path.ends_with(".parquet"), "{}", f.path);
        let body = lake.read(&f.path).await.unwrap();
        let report = sluice_format::inspect::inspect(&body, &f.path, 3).unwrap();
        assert_eq!(report.compression, "SNAPPY");
        for column in [
            "Person ID: Utf8",
            "Email: Utf8",
            "Segments: List",
            "Country: Utf8",
            "Last updated: Timestamp(ms",
        ] {
            assert!(
                report.schema.contains(column),
                "{column} not in {}",
                report.schema
            );
        }
        assert!(
            !report.schema.contains("internalScore"),
            "unmapped field exported"
        );
        rows += report.rows;
    }
    assert_eq!(rows, n);

    let manifests = files_under(&lake, "_manifests/").await;
    assert!(!manifests.is_empty(), "no manifest");
    let sizes: std::collections::HashMap<String, u64> =
        files.iter().map(|f| (f.path.clone(), f.size)).collect();
    let mut listed = 0;
    for m in &manifests {
        assert!(m.path.contains("manifest-dataset-export-"), "{}", m.path);
        let doc: serde_json::Value =
            serde_json::from_slice(&lake.read(&m.path).await.unwrap()).unwrap();
        assert!(
            doc["flowRunId"].is_string() && doc["scheduledTime"].is_string(),
            "{doc}"
        );
        for r in doc["exportResults"].as_array().unwrap() {
            let sink_path = r["sinkPath"].as_str().unwrap();
            let (_, rel) = sink_path
                .split_once("/audiences/")
                .expect("under the export folder");
            assert_eq!(sizes.get(rel), r["size"].as_u64().as_ref(), "{sink_path}");
            listed += r["records"].as_u64().unwrap();
        }
    }
    assert_eq!(listed, n, "the manifests list every exported record");
}

/// Seed 000: signals exported to ADLS Gen2 as hourly NDJSON by the time the device sent them,
/// only the named signals, into a file system and directory that do not exist yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_export_writes_hourly_ndjson_of_the_named_signals() {
    sluice_telemetry::init_logging(false, "warn");
    let tansu = Tansu::start();
    tansu.create_topic("device-signals", 4);
    let azurite = Azurite::start();
    let samples = generate(&SampleSpec::new(4_000, 4, 3));
    sluice_testkit::produce_batched(&tansu.bootstrap, "device-signals", &outgoing(&samples), 1)
        .unwrap();

    let p = shipped(
        "signals-export",
        &tansu.bootstrap,
        "device-signals",
        &azurite,
        &[],
    );
    let n = samples.len() as u64;
    sluice_pipeline::run_until(&p, Metrics::new("signals"), Duration::from_secs(120), |m| {
        m.records_consumed.get() >= n
    })
    .await
    .unwrap();

    let lake = Lake::open(&p.sink.destination).await.unwrap();
    let mut files = Vec::new();
    for f in files_under(&lake, "").await {
        let body = lake.read(&f.path).await.unwrap();
        files.push((f.path.clone(), parse_ndjson(&body, false)));
    }
    let exported = assert_each_exported_once(
        &samples,
        &files,
        |s| p.filter.admits(s),
        |s| hour_prefix(&s.signal, s.event_ms),
    );
    assert!(
        exported > 0 && exported < n,
        "the named signals only: {exported} of {n}"
    );
}
