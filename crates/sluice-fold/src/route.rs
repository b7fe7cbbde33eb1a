use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine;
use sluice_config::{PlausibleTimes, SignalFilter, SignalSource, TimeKey, ValidatedPipeline};
use sluice_core::{Granularity, Record, RecordView, SignalName, TopicPartition, Window};
use sluice_format::{DeclaredSchema, TimeUnit};

use crate::names::SignalNames;
use crate::scan::{scan, ScanError};
use crate::{event_time, nesting};

/// Why a record cannot be exported. The label is bounded (a metric label); the detail is not.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadReason {
    pub label: &'static str,
    pub detail: String,
}

impl DeadReason {
    pub fn new(label: &'static str, detail: impl Into<String>) -> Self {
        Self {
            label,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for DeadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.label, self.detail)
    }
}

/// Where a record goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Routed<'r> {
    /// Into the buffer of its signal and window, as this one NDJSON line (no newline):
    /// the payload itself unless it had to be put on one line.
    Data {
        signal: SignalName,
        window: Window,
        line: Cow<'r, [u8]>,
    },
    /// Its signal is not exported.
    Skipped,
    Dead(DeadReason),
}

/// Decides each record's signal and window from the pipeline's `[route]` and `[window]`.
#[derive(Debug, Clone)]
pub struct Router {
    signal_source: SignalSource,
    default_signal: Option<String>,
    filter: SignalFilter,
    max_record_bytes: u64,
    time: TimeKey,
    plausible: PlausibleTimes,
    granularity: Granularity,
    /// Declared schemas: records of these signals that do not fit are dead-lettered.
    schemas: HashMap<SignalName, Arc<DeclaredSchema>>,
    timestamp_unit: TimeUnit,
    names: SignalNames,
}

impl Router {
    pub fn new(p: &ValidatedPipeline) -> Self {
        Self {
            signal_source: p.signal_source.clone(),
            default_signal: p.default_signal.clone(),
            filter: p.filter.clone(),
            max_record_bytes: p.max_record_bytes,
            time: p.window.time.clone(),
            plausible: p.window.plausible,
            granularity: p.window.granularity,
            schemas: p.sink.encoding.schemas.clone(),
            timestamp_unit: p.sink.encoding.options.timestamp_unit,
            names: SignalNames::default(),
        }
    }

    /// `arrival_ms` stands in for the Kafka timestamp when a record has none. Mutable only
    /// to remember the signal names it has seen.
    pub fn route<'r, R: RecordView + ?Sized>(
        &mut self,
        record: &'r R,
        arrival_ms: i64,
    ) -> Routed<'r> {
        match self.try_route(record, arrival_ms) {
            Ok(r) => r,
            Err(reason) => Routed::Dead(reason),
        }
    }

    fn try_route<'r, R: RecordView + ?Sized>(
        &mut self,
        record: &'r R,
        arrival_ms: i64,
    ) -> Result<Routed<'r>, DeadReason> {
        let payload = match record.payload() {
            None => return Err(DeadReason::new("tombstone", "the record has no payload")),
            Some(p) if p.iter().all(u8::is_ascii_whitespace) => {
                return Err(DeadReason::new("empty", "the payload is empty"))
            }
            Some(p) if p.len() as u64 > self.max_record_bytes => {
                return Err(DeadReason::new(
                    "too_large",
                    format!(
                        "the payload has {} bytes, over route.max_record_bytes = {}",
                        p.len(),
                        self.max_record_bytes
                    ),
                ))
            }
            Some(p) => p,
        };
        let signal_path = match &self.signal_source {
            SignalSource::Field(path) => Some(path.as_slice()),
            SignalSource::Header(_) => None,
        };
        let time_path = match &self.time {
            TimeKey::Event { path, .. } => Some(path.as_slice()),
            TimeKey::Ingestion => None,
        };
        // On the stack: a Vec here was an allocation per record.
        let (both, one);
        let paths: &[&[String]] = match (signal_path, time_path) {
            (Some(signal), Some(time)) => {
                both = [signal, time];
                &both
            }
            (Some(path), None) | (None, Some(path)) => {
                one = [path];
                &one
            }
            (None, None) => &[],
        };
        let found = scan(payload, paths, nesting::MAX_NESTING).map_err(|e| match e {
            ScanError::NotUtf8 => DeadReason::new("not_utf8", "the payload is not UTF-8 text"),
            ScanError::NotAnObject => {
                DeadReason::new("not_an_object", "the payload is JSON but not an object")
            }
            ScanError::TooDeep => DeadReason::new(
                "too_deep",
                format!(
                    "arrays and objects nest deeper than {} levels",
                    nesting::MAX_NESTING
                ),
            ),
            ScanError::Invalid(e) => DeadReason::new(
                "invalid_json",
                format!("the payload is not valid JSON: {e}"),
            ),
        })?;
        let (signal_raw, time_raw) = match signal_path {
            Some(_) => (found[0], found[1]),
            None => (None, found[0]),
        };

        let raw_signal = match &self.signal_source {
            SignalSource::Field(path) => signal_raw.map(|v| scalar_text(v, path)).transpose()?,
            SignalSource::Header(name) => record
                .header(name)
                .map(|v| {
                    std::str::from_utf8(v).map(Cow::Borrowed).map_err(|_| {
                        DeadReason::new("missing_signal", format!("header '{name}' is not UTF-8"))
                    })
                })
                .transpose()?,
        };
        let default = self.default_signal.as_deref().map(Cow::Borrowed);
        let raw_signal = match raw_signal.or(default) {
            Some(s) => s,
            None => {
                return Err(DeadReason::new(
                    "missing_signal",
                    format!("no signal name ({})", self.describe_signal_source()),
                ))
            }
        };
        if !self.filter.admits(&raw_signal) {
            return Ok(Routed::Skipped);
        }

        // What a record's time is checked against: its Kafka timestamp (the same on every
        // replay), else the clock.
        let kafka_ms = record.timestamp_ms().filter(|t| *t >= 0);
        let ts_ms = match &self.time {
            TimeKey::Ingestion => kafka_ms.unwrap_or(arrival_ms),
            TimeKey::Event { path, format } => {
                // The field's name is joined only for a dead letter's detail.
                let raw = time_raw.ok_or_else(|| {
                    DeadReason::new(
                        "missing_timestamp",
                        format!("no event time field '{}'", path.join(".")),
                    )
                })?;
                event_time::parse(raw, *format).ok_or_else(|| {
                    DeadReason::new(
                        "bad_timestamp",
                        format!(
                            "field '{}' = {} is not a {format:?} time",
                            path.join("."),
                            clip(raw)
                        ),
                    )
                })?
            }
        };
        // For ingestion time the reference is the clock: a producer's CreateTime can be wrong.
        let reference = match self.time {
            TimeKey::Ingestion => arrival_ms,
            TimeKey::Event { .. } => kafka_ms.unwrap_or(arrival_ms),
        };
        if let Some(why) = event_time::implausible(ts_ms, reference, &self.plausible) {
            return Err(DeadReason::new("implausible_timestamp", why));
        }

        let signal = self.names.get(&raw_signal);
        if let Some(schema) = self.schemas.get(&signal) {
            let value: serde_json::Value = serde_json::from_slice(payload)
                .map_err(|e| DeadReason::new("invalid_json", e.to_string()))?;
            schema.check(&value, self.timestamp_unit).map_err(|e| {
                DeadReason::new("schema_violation", format!("signal '{raw_signal}': {e}"))
            })?;
        }

        Ok(Routed::Data {
            signal,
            window: Window::containing(ts_ms, self.granularity),
            line: one_line(payload),
        })
    }

    fn describe_signal_source(&self) -> String {
        match &self.signal_source {
            SignalSource::Field(p) => format!("field '{}'", p.join(".")),
            SignalSource::Header(h) => format!("header '{h}'"),
        }
    }
}

/// A string or number as text (the signal name): borrowed from the payload unless escapes
/// or a number's form make it new text.
fn scalar_text<'a>(raw: &'a str, path: &[String]) -> Result<Cow<'a, str>, DeadReason> {
    if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        if !inner.contains('\\') {
            return Ok(Cow::Borrowed(inner));
        }
    }
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::String(s)) => Ok(Cow::Owned(s)),
        // An integer names its signal by its digits: serde_json would round 2^64 and beyond.
        Ok(serde_json::Value::Number(_))
            if !raw.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) =>
        {
            Ok(Cow::Borrowed(raw))
        }
        Ok(serde_json::Value::Number(n)) => Ok(Cow::Owned(n.to_string())),
        Ok(serde_json::Value::Bool(b)) => Ok(Cow::Owned(b.to_string())),
        _ => Err(DeadReason::new(
            "missing_signal",
            format!("field '{}' is {} , not a name", path.join("."), clip(raw)),
        )),
    }
}

fn clip(s: &str) -> String {
    if s.len() <= 64 {
        s.to_string()
    } else {
        let mut end = 64;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

/// The payload as one NDJSON line. Inside valid JSON a raw CR or LF can only be whitespace
/// between tokens, so replacing them with spaces keeps the value and the line structure.
/// Borrowed when it already is one line (a copy per record showed in profiles).
fn one_line(payload: &[u8]) -> Cow<'_, [u8]> {
    let trimmed = payload.trim_ascii();
    if memchr::memchr2(b'\n', b'\r', trimmed).is_some() {
        trimmed
            .iter()
            .map(|b| if *b == b'\n' || *b == b'\r' { b' ' } else { *b })
            .collect()
    } else {
        Cow::Borrowed(trimmed)
    }
}

/// One dead-letter NDJSON line: the record's coordinates, the reason and the raw bytes.
pub fn dead_letter_line(record: &Record, reason: &DeadReason) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let headers: serde_json::Map<String, serde_json::Value> = record
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), b64.encode(v).into()))
        .collect();
    let line = serde_json::json!({
        "topic": &*record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp_ms": record.timestamp_ms,
        "reason": reason.label,
        "detail": reason.detail,
        "key_base64": record.key.as_ref().map(|k| b64.encode(k)),
        "headers_base64": headers,
        "payload_base64": record.payload.as_ref().map(|p| b64.encode(p)),
    });
    serde_json::to_vec(&line).expect("a JSON value always serializes")
}

/// The dead-letter line of a record that routing passed but its file's format refused: the
/// record as it was buffered (its payload on one line, or the envelope line), without the
/// key and headers, which buffers do not keep.
pub fn refused_line(tp: &TopicPartition, offset: i64, line: &[u8], reason: &DeadReason) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let line = serde_json::json!({
        "topic": &*tp.topic,
        "partition": tp.partition,
        "offset": offset,
        "timestamp_ms": null,
        "reason": reason.label,
        "detail": reason.detail,
        "key_base64": null,
        "headers_base64": {},
        "payload_base64": b64.encode(line),
    });
    serde_json::to_vec(&line).expect("a JSON value always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_NESTING;

    fn pipeline(extra_route: &str, window: &str) -> ValidatedPipeline {
        let text = format!(
            r#"
name = "t"
[source]
bootstrap_servers = "b:9092"
topics = ["t"]
group_id = "g"
[route]
{extra_route}
[window]
{window}
[sink]
url = "/tmp/x"
"#
        );
        sluice_config::parse(&text, &|_| None).unwrap()
    }

    fn record(payload: &[u8]) -> Record {
        Record {
            topic: "t".into(),
            partition: 1,
            offset: 42,
            key: None,
            headers: vec![("sig".into(), b"from-header".to_vec())],
            payload: Some(payload.to_vec()),
            timestamp_ms: Some(1_709_649_432_345),
        }
    }

    fn event_router() -> Router {
        Router::new(&pipeline(
            "signal_field = \"meta.name\"\nsignals = [\"temp\", \"hum/x\"]",
            "time = \"event\"\nevent_time_field = \"ts\"\ngranularity = \"hour\"",
        ))
    }

    #[test]
    fn routes_by_nested_signal_and_event_time() {
        let mut r = event_router();
        let temp = record(br#"{"meta":{"name":"temp"},"ts":"2024-03-05T14:37:12Z","v":1}"#);
        let got = r.route(&temp, 0);
        let Routed::Data {
            signal,
            window,
            line,
        } = got
        else {
            panic!("{got:?}")
        };
        assert_eq!(signal.as_str(), "temp");
        assert_eq!(window.start().to_rfc3339(), "2024-03-05T14:00:00+00:00");
        assert_eq!(
            &*line,
            br#"{"meta":{"name":"temp"},"ts":"2024-03-05T14:37:12Z","v":1}"#
        );

        let hum = record(b"{\"meta\":{\"name\":\"hum/x\"},\n\"ts\":1709649432}");
        let got = r.route(&hum, 0);
        let Routed::Data {
            signal,
            window,
            line,
        } = got
        else {
            panic!("{got:?}")
        };
        assert_eq!(signal.as_str(), "hum~2Fx");
        assert_eq!(window.start_ms, 1_709_647_200_000);
        assert!(!line.contains(&b'\n'));
        assert_eq!(
            r.route(&record(br#"{"meta":{"name":"other"},"ts":1}"#), 0),
            Routed::Skipped
        );
    }

    #[test]
    fn poison_records_get_a_reason() {
        let mut r = event_router();
        let mut label = |payload: Option<&[u8]>| {
            let mut rec = record(b"");
            rec.payload = payload.map(<[u8]>::to_vec);
            match r.route(&rec, 0) {
                Routed::Dead(d) => d.label,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(label(None), "tombstone");
        assert_eq!(label(Some(b"  ")), "empty");
        assert_eq!(label(Some(b"{\"a\":")), "invalid_json");
        assert_eq!(label(Some(b"\xff\xfe")), "not_utf8");
        assert_eq!(label(Some(b"[1,2]")), "not_an_object");
        assert_eq!(label(Some(&vec![b' '; 2 << 20])), "empty");
        let mut big = br#"{"meta":{"name":"temp"},"ts":1,"pad":""#.to_vec();
        big.extend(std::iter::repeat_n(b'x', 1 << 20));
        big.extend(br#""}"#);
        assert_eq!(label(Some(&big)), "too_large");
        assert_eq!(label(Some(br#"{"ts":1}"#)), "missing_signal");
        assert_eq!(
            label(Some(br#"{"meta":{"name":"temp"}}"#)),
            "missing_timestamp"
        );
        assert_eq!(
            label(Some(br#"{"meta":{"name":"temp"},"ts":"yesterday"}"#)),
            "bad_timestamp"
        );
    }

    /// Nesting past the pipeline's limit is refused here, once, so no encoder meets it.
    #[test]
    fn records_nested_past_the_limit_are_dead_lettered() {
        let mut r = event_router();
        let deep = |levels: usize| {
            format!(
                r#"{{"meta":{{"name":"temp"}},"ts":1709649432,"v":{}1{}}}"#,
                "[".repeat(levels - 1),
                "]".repeat(levels - 1)
            )
        };
        assert!(matches!(
            r.route(&record(deep(MAX_NESTING).as_bytes()), 0),
            Routed::Data { .. }
        ));
        for levels in [MAX_NESTING + 1, 300, 100_000] {
            match r.route(&record(deep(levels).as_bytes()), 0) {
                Routed::Dead(d) => assert_eq!(d.label, "too_deep", "{levels}"),
                other => panic!("{levels}: {other:?}"),
            }
        }
    }

    /// A time no clock can mean is refused instead of windowed: a year-2999 record would
    /// make every later record of its partition late, an epoch in nanoseconds read as
    /// milliseconds would land in 1970.
    #[test]
    fn implausible_event_times_are_dead_lettered() {
        let mut r = event_router();
        let at = |ts: &str| record(format!(r#"{{"meta":{{"name":"temp"}},"ts":{ts}}}"#).as_bytes());
        let mut label = |ts: &str| match r.route(&at(ts), 0) {
            Routed::Dead(d) => d.label,
            Routed::Data { window, .. } => panic!("{ts} windowed at {}", window.start()),
            Routed::Skipped => panic!("skipped"),
        };
        // The record's Kafka timestamp is 2024-03-05T14:37:12.345Z.
        assert_eq!(label(r#""2999-01-01T00:00:00Z""#), "implausible_timestamp");
        assert_eq!(label("0"), "implausible_timestamp");
        assert_eq!(label(r#""1970-01-01T00:00:00Z""#), "implausible_timestamp");
        assert_eq!(label(r#""NaN""#), "bad_timestamp");
        assert_eq!(label(r#""inf""#), "bad_timestamp");
        assert_eq!(label("1e400"), "bad_timestamp");
        assert_eq!(label("9223372036854775807"), "implausible_timestamp");
        let nanos = at("1709649432345000000");
        let Routed::Data { window, .. } = r.route(&nanos, 0) else {
            panic!("nanoseconds are a plausible time")
        };
        assert_eq!(window.start().to_rfc3339(), "2024-03-05T14:00:00+00:00");
        // Ingestion time: a producer clock far ahead of the worker's is refused too.
        let mut ingest = Router::new(&pipeline(
            "signal_header = \"sig\"",
            "time = \"ingestion\"\ngranularity = \"hour\"",
        ));
        let mut ahead = record(b"{}");
        ahead.timestamp_ms = Some(32_503_680_000_000); // 3000-01-01
        match ingest.route(&ahead, 1_709_649_432_345) {
            Routed::Dead(d) => assert_eq!(d.label, "implausible_timestamp"),
            other => panic!("{other:?}"),
        }
    }

    /// A numeric signal name keeps every digit, even past 64 bits.
    #[test]
    fn integer_signal_names_keep_their_digits() {
        let mut r = Router::new(&pipeline(
            "signal_field = \"sig\"",
            "time = \"ingestion\"\ngranularity = \"hour\"",
        ));
        for (sig, want) in [
            ("18446744073709551617", "18446744073709551617"),
            ("-7", "-7"),
            ("2.5", "2.5"),
        ] {
            let rec = record(format!(r#"{{"sig": {sig} }}"#).as_bytes());
            let Routed::Data { signal, .. } = r.route(&rec, 1_709_649_432_345) else {
                panic!("{sig}")
            };
            assert_eq!(signal.as_str(), want);
        }
    }

    #[test]
    fn ingestion_time_and_header_signals() {
        let mut r = Router::new(&pipeline(
            "signal_header = \"sig\"",
            "time = \"ingestion\"\ngranularity = \"day\"",
        ));
        let Routed::Data { signal, window, .. } = r.route(&record(b"{}"), 1_709_649_432_345) else {
            panic!()
        };
        assert_eq!(signal.as_str(), "from-header");
        assert_eq!(window.start().to_rfc3339(), "2024-03-05T00:00:00+00:00");
        let mut no_ts = record(b"{}");
        no_ts.timestamp_ms = None;
        let Routed::Data { window, .. } = r.route(&no_ts, 1_709_649_432_345 + 86_400_000) else {
            panic!()
        };
        assert_eq!(window.start().to_rfc3339(), "2024-03-06T00:00:00+00:00");
    }

    #[test]
    fn default_signal_catches_records_without_one() {
        let mut r = Router::new(&pipeline(
            "default_signal = \"unknown\"",
            "time = \"ingestion\"\ngranularity = \"hour\"",
        ));
        // Arriving when it was produced.
        let Routed::Data { signal, .. } = r.route(&record(b"{\"v\":1}"), 1_709_649_432_345) else {
            panic!()
        };
        assert_eq!(signal.as_str(), "unknown");
    }

    #[test]
    fn dead_letter_lines_keep_the_raw_bytes() {
        let rec = record(b"\xff");
        let line = dead_letter_line(&rec, &DeadReason::new("not_utf8", "x"));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["offset"], 42);
        assert_eq!(v["reason"], "not_utf8");
        assert_eq!(v["payload_base64"], "/w==");
    }
}
