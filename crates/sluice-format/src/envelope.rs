//! Avro in the shape Azure's own exports write, so readers built for them work unchanged:
//! IoT Hub message routing (and IoT Central continuous export) and Event Hubs Capture.
//!
//! The pipeline stores each record as an envelope line ([`line`]) carrying the Kafka metadata
//! the Avro record needs; [`encode`] turns those lines into the container file.

use std::collections::BTreeMap;

use apache_avro::{Schema, Writer};
use serde::{Deserialize, Serialize};

use crate::avro::{codec, header, marker, writer_error};
use crate::table::lines;
use crate::{Codec, EncodeError, Envelope, Sink, Written};

/// IoT Hub's routing schema, as its storage endpoint writes it.
pub const IOT_HUB_SCHEMA: &str = r#"{"type":"record","name":"Message","namespace":"Microsoft.Azure.Devices","fields":[{"name":"EnqueuedTimeUtc","type":"string"},{"name":"Properties","type":{"type":"map","values":"string"}},{"name":"SystemProperties","type":{"type":"map","values":"string"}},{"name":"Body","type":["null","bytes"]}]}"#;

/// Event Hubs Capture's schema.
pub const CAPTURE_SCHEMA: &str = r#"{"type":"record","name":"EventData","namespace":"Microsoft.ServiceBus.Messaging","fields":[{"name":"SequenceNumber","type":"long"},{"name":"Offset","type":"string"},{"name":"EnqueuedTimeUtc","type":"string"},{"name":"SystemProperties","type":{"type":"map","values":["long","double","string","bytes"]}},{"name":"Properties","type":{"type":"map","values":["long","double","string","bytes","null"]}},{"name":"Body","type":["null","bytes"]}]}"#;

/// Kafka headers that carry IoT Hub system properties (as the Event Hubs-compatible
/// endpoint delivers them), and the names IoT Hub's Avro uses for them.
const SYSTEM_HEADERS: &[(&str, &str)] = &[
    ("iothub-connection-device-id", "connectionDeviceId"),
    ("iothub-connection-module-id", "connectionModuleId"),
    ("iothub-connection-auth-method", "connectionAuthMethod"),
    (
        "iothub-connection-auth-generation-id",
        "connectionDeviceGenerationId",
    ),
    ("iothub-enqueuedtime", "enqueuedTime"),
    ("iothub-message-source", "messageSource"),
    ("iothub-interface-name", "interfaceName"),
    ("iothub-dataschema", "dataSchema"),
    ("iothub-contenttype", "contentType"),
    ("iothub-contentencoding", "contentEncoding"),
    ("content-type", "contentType"),
    ("content-encoding", "contentEncoding"),
    ("message-id", "messageId"),
    ("correlation-id", "correlationId"),
    ("user-id", "userId"),
];

/// One record in envelope form, as buffered (a JSON line) and as written (Avro).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[allow(non_snake_case)]
pub struct EnvelopeLine {
    pub EnqueuedTimeUtc: String,
    pub SequenceNumber: i64,
    pub Offset: String,
    pub Properties: BTreeMap<String, String>,
    pub SystemProperties: BTreeMap<String, String>,
    /// The payload exactly as consumed (UTF-8: the router admits only JSON objects).
    pub Body: String,
}

/// IoT Hub writes seven fractional digits: `2018-06-11T00:00:08.2250000Z`.
pub fn enqueued_time_utc(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    format!("{}0000Z", t.format("%Y-%m-%dT%H:%M:%S%.3f"))
}

/// The envelope line of one record: Kafka headers split into system and application
/// properties, the Kafka timestamp as the enqueued time, the offset as sequence number.
pub fn line(
    timestamp_ms: i64,
    offset: i64,
    headers: &[(String, Vec<u8>)],
    payload: &[u8],
) -> Vec<u8> {
    let mut properties = BTreeMap::new();
    let mut system = BTreeMap::new();
    for (k, v) in headers {
        let value = String::from_utf8_lossy(v).into_owned();
        match SYSTEM_HEADERS
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(k))
        {
            Some((_, name)) => system.insert(name.to_string(), value),
            None => properties.insert(k.clone(), value),
        };
    }
    let enqueued = enqueued_time_utc(timestamp_ms);
    system
        .entry("enqueuedTime".to_string())
        .or_insert_with(|| enqueued.clone());
    let line = EnvelopeLine {
        EnqueuedTimeUtc: enqueued,
        SequenceNumber: offset,
        Offset: offset.to_string(),
        Properties: properties,
        SystemProperties: system,
        Body: String::from_utf8_lossy(payload).into_owned(),
    };
    serde_json::to_vec(&line).expect("an envelope serializes")
}

#[derive(Serialize)]
#[allow(non_snake_case)]
struct IotHubRecord<'a> {
    EnqueuedTimeUtc: &'a str,
    Properties: &'a BTreeMap<String, String>,
    SystemProperties: &'a BTreeMap<String, String>,
    #[serde(with = "apache_avro::serde_avro_bytes_opt")]
    Body: Option<&'a [u8]>,
}

#[derive(Serialize)]
#[allow(non_snake_case)]
struct CaptureRecord<'a> {
    SequenceNumber: i64,
    Offset: &'a str,
    EnqueuedTimeUtc: &'a str,
    SystemProperties: &'a BTreeMap<String, String>,
    Properties: &'a BTreeMap<String, String>,
    #[serde(with = "apache_avro::serde_avro_bytes_opt")]
    Body: Option<&'a [u8]>,
}

pub(crate) fn write(
    ndjson: &[u8],
    envelope: Envelope,
    c: Codec,
    out: Sink,
) -> Result<Written, EncodeError> {
    let schema_text = match envelope {
        Envelope::IotHub => IOT_HUB_SCHEMA,
        Envelope::Capture => CAPTURE_SCHEMA,
    };
    let schema = Schema::parse_str(schema_text).map_err(writer_error)?;
    let marker = marker(schema_text, ndjson);
    out.write_all(&header(schema_text, c, &marker))?;
    let mut writer = Writer::builder()
        .schema(&schema)
        .writer(out)
        .codec(codec(c))
        .block_size(256 * 1024)
        .marker(marker)
        .has_header(true)
        .build();
    let mut rows = 0u64;
    for (row, raw) in lines(ndjson).enumerate() {
        let e: EnvelopeLine = serde_json::from_slice(raw).map_err(|err| EncodeError::Line {
            row,
            detail: format!("not an envelope line: {err}"),
        })?;
        let body = Some(e.Body.as_bytes());
        match envelope {
            Envelope::IotHub => writer.append_ser(IotHubRecord {
                EnqueuedTimeUtc: &e.EnqueuedTimeUtc,
                Properties: &e.Properties,
                SystemProperties: &e.SystemProperties,
                Body: body,
            }),
            Envelope::Capture => writer.append_ser(CaptureRecord {
                SequenceNumber: e.SequenceNumber,
                Offset: &e.Offset,
                EnqueuedTimeUtc: &e.EnqueuedTimeUtc,
                SystemProperties: &e.SystemProperties,
                Properties: &e.Properties,
                Body: body,
            }),
        }
        .map_err(writer_error)?;
        rows += 1;
    }
    writer.into_inner().map_err(writer_error)?;
    Ok(Written {
        rows,
        conflicts: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Value as Avro;
    use apache_avro::Reader;

    #[test]
    fn iot_hub_records_read_back_in_the_routing_shape() {
        let headers = vec![
            ("iothub-connection-device-id".to_string(), b"dev-1".to_vec()),
            ("temperatureAlert".to_string(), b"true".to_vec()),
        ];
        let body = br#"{"humidity":80.5,"connectivity":"connected"}"#;
        let mut lines = line(1_528_675_208_225, 42, &headers, body);
        lines.push(b'\n');
        for envelope in [Envelope::IotHub, Envelope::Capture] {
            let mut opts = crate::EncodeOptions::new(crate::FileFormat::Avro, Codec::Deflate);
            opts.envelope = Some(envelope);
            let out = crate::encode(&lines, &opts).unwrap();
            assert_eq!(out.rows, 1);
            let records: Vec<Avro> = Reader::new(&out.bytes[..])
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let Avro::Record(fields) = &records[0] else {
                panic!()
            };
            let get = |n: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
                    .unwrap()
            };
            assert_eq!(
                get("EnqueuedTimeUtc"),
                Avro::String("2018-06-11T00:00:08.2250000Z".into())
            );
            assert_eq!(
                get("Body"),
                Avro::Union(1, Box::new(Avro::Bytes(body.to_vec())))
            );
            let Avro::Map(system) = get("SystemProperties") else {
                panic!()
            };
            let text = |v: &Avro| match v {
                Avro::String(s) => s.clone(),
                Avro::Union(_, b) => match b.as_ref() {
                    Avro::String(s) => s.clone(),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            };
            assert_eq!(text(&system["connectionDeviceId"]), "dev-1");
            assert_eq!(
                text(&system["enqueuedTime"]),
                "2018-06-11T00:00:08.2250000Z"
            );
            let Avro::Map(props) = get("Properties") else {
                panic!()
            };
            assert_eq!(text(&props["temperatureAlert"]), "true");
            if envelope == Envelope::Capture {
                assert_eq!(get("SequenceNumber"), Avro::Long(42));
            }
        }
    }
}
