//! Issue 3's acceptance: one varied dataset exported in every format and compression through
//! the real pipeline (librdkafka's mock cluster → local lake), then read back by independent
//! readers (pyarrow, fastavro, pandavro, Python's csv/json; the seed's avsc snippet when
//! Node has avsc) with every value compared: tests/readers/roundtrip.py.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_telemetry::Metrics;
use sluice_testkit::services::{workspace_root, MockKafka};
use sluice_testkit::{produce, Outgoing};

const TOPIC: &str = "formats";
const N: u64 = 2_400;
/// Schema-violating records in the declared-schema case: every seq divisible by this.
const VIOLATION_EVERY: u64 = 9;

/// Nested objects, arrays, nulls, unicode, large integers, floats, booleans, missing fields,
/// a field added mid-stream, int→float widening, a type conflict, zoned timestamps.
const NOTES: [&str; 5] = [
    "plain",
    "héllo ☃ 日本",
    "comma, \"quote\"; semi",
    "line\nbreak",
    "",
];

fn record(i: u64) -> Value {
    let mut r = json!({
        "signal": "mix",
        "ts": format!("2026-11-22T10:{:02}:{:02}.{:03}Z", (i / 60) % 60, i % 60, i % 1000),
        "seq": i,
        "device": format!("dev-{}", i % 7),
        "temp": if i < N / 2 { json!(i as i64 - 100) } else { json!(i as f64 + 0.25) },
        "ok": i.is_multiple_of(2),
        "note": NOTES[(i % 5) as usize],
        "tags": if i.is_multiple_of(4) { json!([]) } else { json!(["a", format!("t{i}")]) },
        "nested": if i.is_multiple_of(6) { Value::Null } else { json!({"x": i, "y": {"z": "deep"}, "arr": [1.5, 2.5]}) },
        "big": 9_007_199_254_740_993i64 + i as i64,
        "mixed": match i % 3 { 0 => json!("text"), 1 => json!(5), _ => json!({"k": i}) },
        "nullish": null,
        "empty_obj": {},
        "naïve key": "x",
        "other_time": "2026-11-22T12:00:00.5+02:00",
    });
    if i.is_multiple_of(5) {
        r["optional"] = json!(i);
    }
    if i >= N / 2 {
        r["late_field"] = json!("added");
    }
    if i.is_multiple_of(50) {
        r["huge"] = json!(u64::MAX);
    }
    if i % 10 == 3 {
        // Beyond 64 bits, which serde_json's `Value` cannot hold: written into the payload's
        // text by `payload`.
        r["beyond"] = json!(BEYOND_PLACEHOLDER);
    }
    if i.is_multiple_of(VIOLATION_EVERY) {
        // Breaks the declared schema below (device is required); other formats keep it.
        r.as_object_mut().unwrap().remove("device");
    }
    r
}

const BEYOND_PLACEHOLDER: &str = "@beyond-64-bits@";

/// A record's payload: its JSON text, with an integer of 2^84 and more where it has one.
fn payload(i: u64, r: &Value) -> Vec<u8> {
    let text = serde_json::to_string(r).unwrap();
    let beyond = format!(
        "-{}",
        19_342_813_113_834_066_795_298_816u128 + u128::from(i)
    );
    text.replace(&format!("\"{BEYOND_PLACEHOLDER}\""), &beyond)
        .into_bytes()
}

fn headers(i: u64) -> Vec<(String, Vec<u8>)> {
    vec![
        (
            "iothub-connection-device-id".into(),
            format!("dev-{}", i % 7).into_bytes(),
        ),
        (
            "alert".into(),
            if i.is_multiple_of(2) { "true" } else { "false" }.into(),
        ),
    ]
}

struct Case {
    name: &'static str,
    /// Lines added to [sink].
    sink: String,
    /// Tables appended to the pipeline file.
    tail: &'static str,
    /// What the checker needs to know.
    check: Value,
}

fn case(name: &'static str, format: &str, codec: &str, check: Value) -> Case {
    let mut c = check;
    c["format"] = json!(format);
    c["codec"] = json!(codec);
    Case {
        name,
        sink: format!("format = \"{format}\"\ncompression = \"{codec}\""),
        tail: "",
        check: c,
    }
}

fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    for codec in ["none", "gzip", "zstd"] {
        all.push(case(
            leak(format!("ndjson-{codec}")),
            "ndjson",
            codec,
            json!({}),
        ));
        all.push(case(leak(format!("csv-{codec}")), "csv", codec, json!({})));
    }
    for (codec, avro_codec) in [
        ("none", "null"),
        ("deflate", "deflate"),
        ("snappy", "snappy"),
        ("zstd", "zstandard"),
    ] {
        all.push(case(
            leak(format!("avro-{codec}")),
            "avro",
            codec,
            json!({"avro_codec": avro_codec}),
        ));
    }
    let types = json!({"temp": "double", "big": "int64", "ts": "timestamp[us, tz=UTC]", "mixed": "string", "seq": "int64"});
    for (codec, parquet_codec) in [
        ("snappy", "SNAPPY"),
        ("zstd", "ZSTD"),
        ("gzip", "GZIP"),
        ("lz4", "LZ4"),
        ("none", "UNCOMPRESSED"),
    ] {
        all.push(case(
            leak(format!("parquet-{codec}")),
            "parquet",
            codec,
            json!({"parquet_codec": parquet_codec, "expect_types": types}),
        ));
    }
    let mut millis = case(
        "parquet-millis",
        "parquet",
        "zstd",
        json!({"parquet_codec": "ZSTD", "expect_types": {"ts": "timestamp[ms, tz=UTC]"}}),
    );
    millis.sink.push_str("\ntimestamp_unit = \"millis\"");
    all.push(millis);
    let columns = json!([
        {"from": "device", "to": "Device ID"},
        {"from": "nested.y.z", "to": "Depth"},
        {"from": "temp", "to": "Temperature (°C)"},
        {"from": "note", "to": "Note"},
        {"from": "ts", "to": "Sent at"},
        {"from": "optional", "to": "Optional"},
    ]);
    let mut mapped = case(
        "csv-mapped-options",
        "csv",
        "none",
        json!({
            "csv": {"delimiter": ";", "escape": "\\", "null_value": "NULL"},
            "columns": columns,
        }),
    );
    mapped
        .sink
        .push_str("\n[sink.csv]\ndelimiter = \";\"\nescape = \"\\\\\"\nnull_value = \"NULL\"\n");
    for c in columns.as_array().unwrap() {
        mapped.sink.push_str(&format!(
            "[[sink.columns]]\nfrom = {}\nto = {}\n",
            c["from"], c["to"]
        ));
    }
    all.push(mapped);
    for envelope in ["iothub", "capture"] {
        let mut e = case(
            leak(format!("avro-envelope-{envelope}")),
            "avro",
            "deflate",
            json!({"avro_codec": "deflate", "envelope": envelope}),
        );
        e.sink.push_str(&format!("\nenvelope = \"{envelope}\""));
        all.push(e);
    }
    let mut declared = case(
        "parquet-declared",
        "parquet",
        "snappy",
        json!({
            "parquet_codec": "SNAPPY",
            "keep": VIOLATION_EVERY,
            // A TOML table's fields come in name order.
            "declared_columns": ["device", "seq", "tags", "temp", "ts"],
            "expect_types": {"device": "string", "seq": "int64", "temp": "double", "ts": "timestamp[us, tz=UTC]", "tags": "list<item: string>"},
        }),
    );
    declared.tail = "[schema.mix]\nfields = { device = \"string\", seq = \"long\", temp = \"double\", ts = \"timestamp\", tags = \"array<string>\" }\nrequired = [\"device\", \"seq\"]\n";
    all.push(declared);
    all
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn pipeline_text(c: &Case, bootstrap: &str, lake: &Path) -> String {
    format!(
        r#"
name = "{name}"
[source]
bootstrap_servers = "{bootstrap}"
topics = ["{TOPIC}"]
group_id = "{name}"
properties = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}
[window]
time = "event"
event_time_field = "ts"
granularity = "hour"
[flush]
max_records = 1000
[sink]
url = "{lake}"
{sink}
{tail}"#,
        name = c.name,
        lake = lake.display(),
        sink = c.sink,
        tail = c.tail,
    )
}

fn python() -> PathBuf {
    std::env::var_os("SLUICE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".tools/venv/bin/python"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_reads_back_with_independent_readers() {
    sluice_telemetry::init_logging(false, "warn");
    let work = tempfile::tempdir().unwrap();
    let kafka = MockKafka::start(1);
    kafka.create_topic(TOPIC, 1);
    let records: Vec<Value> = (0..N).map(record).collect();
    let outgoing: Vec<Outgoing> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Outgoing {
            partition: 0,
            key: None,
            payload: Some(payload(i as u64, r)),
            headers: headers(i as u64),
            timestamp_ms: Some(1_795_860_000_000 + i as i64),
        })
        .collect();
    produce(&kafka.bootstrap, TOPIC, &outgoing).unwrap();
    let lines = |v: Vec<String>| v.join("\n") + "\n";
    std::fs::write(
        work.path().join("input.jsonl"),
        lines(
            outgoing
                .iter()
                .map(|o| String::from_utf8(o.payload.clone().unwrap()).unwrap())
                .collect(),
        ),
    )
    .unwrap();
    std::fs::write(
        work.path().join("headers.jsonl"),
        lines(
            outgoing
                .iter()
                .map(|o| {
                    let m: serde_json::Map<String, Value> = o
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), json!(String::from_utf8_lossy(v))))
                        .collect();
                    Value::Object(m).to_string()
                })
                .collect(),
        ),
    )
    .unwrap();

    let mut runs = tokio::task::JoinSet::new();
    let mut checks = serde_json::Map::new();
    for c in cases() {
        let lake = work.path().join(c.name);
        let text = pipeline_text(&c, &kafka.bootstrap, &lake);
        let p = sluice_config::parse(&text, &|_| None)
            .unwrap_or_else(|e| panic!("{}: {e}\n{text}", c.name));
        let mut check = c.check;
        check["lake"] = json!(lake.join("mix"));
        checks.insert(c.name.to_string(), check);
        runs.spawn(async move {
            let metrics = Metrics::new(&p.name);
            let summary = sluice_pipeline::run_until(&p, metrics, Duration::from_secs(120), |m| {
                m.records_consumed.get() >= N
            })
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", p.name));
            (p.name.clone(), summary)
        });
    }
    while let Some(done) = runs.join_next().await {
        let (name, summary) = done.unwrap();
        assert_eq!(summary.records_consumed, N, "{name}");
        let dead = if name == "parquet-declared" {
            N.div_ceil(VIOLATION_EVERY)
        } else {
            0
        };
        assert_eq!(summary.records_dead_lettered, dead, "{name}: dead letters");
    }
    std::fs::write(
        work.path().join("cases.json"),
        Value::Object(checks).to_string(),
    )
    .unwrap();

    let out = Command::new(python())
        .arg(workspace_root().join("tests/readers/roundtrip.py"))
        .arg(work.path())
        .output()
        .expect("run the venv's python (scripts/test creates .tools/venv)");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "independent readers disagree:\n{report}"
    );
    assert_eq!(
        report.lines().filter(|l| l.contains(" ok ")).count(),
        cases().len()
    );

    // The seed's avsc snippet over the IoT Hub envelope files.
    let envelope_dir = work.path().join("avro-envelope-iothub/mix");
    let files = sluice_testkit::lake_files::files_under(&envelope_dir, ".avro");
    assert!(!files.is_empty());
    let out = Command::new("node")
        .arg(workspace_root().join("tests/readers/avsc_read.js"))
        .args(&files)
        .env("NODE_PATH", workspace_root().join(".tools/node_modules"))
        .output()
        .expect("run node (scripts/test installs avsc into .tools/node_modules)");
    assert!(
        out.status.success(),
        "avsc could not read the envelope files: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), N.to_string());
}
