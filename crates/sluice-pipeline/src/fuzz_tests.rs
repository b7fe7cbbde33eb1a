//! A property-driven fuzz corpus over the router and every encoder: whatever the payload, no
//! panic and no error that would stop a worker; every record either lands in its file or is
//! dead-lettered with a reason. `scripts/fuzz` runs it with a large budget
//! (`PROPTEST_CASES`); the test suite runs a small one.

use std::collections::BTreeMap;

use proptest::prelude::*;
use sluice_core::Record;
use sluice_fold::{Routed, Router};
use sluice_format::{EncodeOptions, Envelope, FileFormat};

use crate::refusals::encode_or_refuse;

fn router(format: &str, extra_window: &str) -> Router {
    let text = format!(
        r#"
name = "fuzz"
[source]
bootstrap_servers = "b:9092"
topics = ["t"]
group_id = "g"
[window]
time = "event"
event_time_field = "ts"
granularity = "hour"
{extra_window}
[sink]
url = "/tmp/fuzz"
format = "{format}"
"#
    );
    Router::new(&sluice_config::parse(&text, &|_| None).expect("a valid pipeline"))
}

/// JSON values of every shape, nested up to `depth`.
fn json_value(depth: u32) -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<u64>().prop_map(|i| i.to_string()),
        // Integers past every column type, and floats of every magnitude.
        "[1-9][0-9]{19,40}".prop_map(|s| s),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("\"2024-03-05T14:37:12Z\"".to_string()),
    ];
    leaf.prop_recursive(depth, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key(), inner), 0..6).prop_map(|kv| {
                let fields: Vec<_> = kv.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// Field names, including ones no column format likes.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("v".to_string()),
        Just("ts".to_string()),
        Just("".to_string()),
        Just("a.b".to_string()),
        Just("1x".to_string()),
        "[a-z]{1,3}".prop_map(|s| s),
        any::<String>(),
    ]
    .prop_map(|k| serde_json::to_string(&k).unwrap())
}

/// Event times as devices send them, broken ones included.
fn event_time() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"2024-03-05T14:37:12.345Z\"".to_string()),
        Just("\"2999-01-01T00:00:00Z\"".to_string()),
        Just("\"NaN\"".to_string()),
        Just("\"inf\"".to_string()),
        Just("1709649432".to_string()),
        Just("1709649432345".to_string()),
        Just("1709649432345678".to_string()),
        Just("1709649432345678901".to_string()),
        Just("-1".to_string()),
        Just("9223372036854775807".to_string()),
        Just("1e308".to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        json_value(1),
    ]
}

/// A payload: mostly records of the pipeline's shape with odd values, sometimes deeply
/// nested, sometimes not JSON at all.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    let signal = prop_oneof![
        Just("\"temp\"".to_string()),
        Just("\"_windows\"".to_string()),
        Just("\"a/b\"".to_string()),
        Just("7".to_string()),
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
    ];
    let record = (
        signal,
        event_time(),
        prop::collection::vec((key(), json_value(4)), 0..5),
    )
        .prop_map(|(signal, ts, fields)| {
            let mut out = format!("{{\"signal\":{signal},\"ts\":{ts}");
            for (k, v) in fields {
                out.push_str(&format!(",{k}:{v}"));
            }
            out.push('}');
            out.into_bytes()
        });
    let deep = (1usize..200).prop_map(|n| {
        format!(
            "{{\"signal\":\"temp\",\"ts\":1709649432,\"v\":{}1{}}}",
            "[".repeat(n),
            "]".repeat(n)
        )
        .into_bytes()
    });
    prop_oneof![
        8 => record,
        1 => deep,
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

fn kafka_record(offset: i64, payload: Vec<u8>) -> Record {
    Record {
        topic: "t".into(),
        partition: 0,
        offset,
        key: None,
        headers: vec![],
        payload: Some(payload),
        timestamp_ms: Some(1_709_649_432_345),
    }
}

/// Routes `payloads` as one partition's records and encodes every buffer in `format`:
/// each record is in its file or has a reason.
fn every_record_lands_or_has_a_reason(payloads: &[Vec<u8>], options: &EncodeOptions) {
    let format = match options.format {
        FileFormat::Ndjson => "ndjson",
        FileFormat::Csv => "csv",
        FileFormat::Avro => "avro",
        FileFormat::Parquet => "parquet",
    };
    let mut router = router(format, "");
    let mut buffers: BTreeMap<(String, i64), (Vec<u8>, Vec<i64>)> = BTreeMap::new();
    let mut dead = 0;
    for (offset, payload) in payloads.iter().enumerate() {
        match router.route(
            &kafka_record(offset as i64, payload.clone()),
            1_709_649_432_345,
        ) {
            Routed::Data {
                signal,
                window,
                line,
            } => {
                let line = match options.envelope {
                    Some(_) => sluice_format::envelope::line(0, offset as i64, &[], &line),
                    None => line.into_owned(),
                };
                let (ndjson, offsets) = buffers
                    .entry((signal.as_str().to_string(), window.start_ms))
                    .or_default();
                ndjson.extend_from_slice(&line);
                ndjson.push(b'\n');
                offsets.push(offset as i64);
            }
            Routed::Dead(reason) => {
                assert!(!reason.label.is_empty());
                dead += 1;
            }
            Routed::Skipped => unreachable!("every signal is exported"),
        }
    }
    let mut accounted = dead;
    for (ndjson, offsets) in buffers.values() {
        let out = encode_or_refuse(ndjson, offsets, options, sluice_format::encode)
            .unwrap_or_else(|e| panic!("{format}: a record error stopped the buffer: {e}"));
        let rows = out.file.map_or(0, |f| f.rows as usize);
        assert!(out.refused.iter().all(|r| !r.reason.detail.is_empty()));
        assert_eq!(
            rows + out.refused.len(),
            offsets.len(),
            "{format}: records went missing"
        );
        accounted += offsets.len();
    }
    assert_eq!(accounted, payloads.len());
}

fn options() -> Vec<EncodeOptions> {
    let mut all: Vec<EncodeOptions> = [
        FileFormat::Ndjson,
        FileFormat::Csv,
        FileFormat::Avro,
        FileFormat::Parquet,
    ]
    .into_iter()
    .map(|f| EncodeOptions::new(f, f.codecs()[0]))
    .collect();
    let mut iot = EncodeOptions::new(FileFormat::Avro, FileFormat::Avro.codecs()[0]);
    iot.envelope = Some(Envelope::IotHub);
    all.push(iot);
    all
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Small in the test suite; `scripts/fuzz` sets PROPTEST_CASES for a real budget.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_payload_panics_or_stops_a_pipeline(payloads in prop::collection::vec(payload(), 1..24)) {
        for options in options() {
            every_record_lands_or_has_a_reason(&payloads, &options);
        }
    }
}

/// Records nested to the pipeline's limit, of objects, arrays and both, pass routing and
/// encode in every format: the limit is one every encoder can take.
#[test]
fn records_as_deep_as_the_limit_encode_in_every_format() {
    let levels = sluice_fold::MAX_NESTING - 1; // inside the record's own object
    let shapes = [
        ("{\"a\":".repeat(levels), "}".repeat(levels)),
        ("[".repeat(levels), "]".repeat(levels)),
        ("[{\"a\":".repeat(levels / 2), "}]".repeat(levels / 2)),
    ];
    let payloads: Vec<Vec<u8>> = shapes
        .iter()
        .map(|(open, close)| {
            format!("{{\"signal\":\"temp\",\"ts\":1709649432,\"v\":{open}1{close}}}").into_bytes()
        })
        .collect();
    for options in options() {
        let mut router = router("ndjson", "");
        for (offset, payload) in payloads.iter().enumerate() {
            let record = kafka_record(offset as i64, payload.clone());
            let Routed::Data { line, .. } = router.route(&record, 1_709_649_432_345) else {
                panic!("routing refused a record within the limit");
            };
            let line = match options.envelope {
                Some(_) => sluice_format::envelope::line(0, offset as i64, &[], &line),
                None => line.into_owned(),
            };
            let mut ndjson = line;
            ndjson.push(b'\n');
            let file = sluice_format::encode(&ndjson, &options)
                .unwrap_or_else(|e| panic!("{:?}: {e}", options.format));
            assert_eq!(file.rows, 1);
        }
    }
}
