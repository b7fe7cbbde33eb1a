//! Deterministic sample data shaped like device signals in the product seeds: a signal
//! name, a device id, the time the device sent it, and a few typed properties.

use chrono::{DateTime, SecondsFormat};

use crate::Outgoing;

/// Signals the demo and tests use.
pub const SIGNALS: &[&str] = &[
    "engine.temperature",
    "cabin.humidity",
    "battery.voltage",
    "gps.position",
    "door.opened",
    "tyre.pressure",
    "app.crash",
];

/// A small, fast, reproducible generator (splitmix64): the same seed gives the same data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug, Clone)]
pub struct SampleSpec {
    pub records: usize,
    pub partitions: i32,
    pub signals: Vec<String>,
    /// Event times are spread uniformly over `[start_ms, start_ms + span_ms)`.
    pub start_ms: i64,
    pub span_ms: i64,
    pub seed: u64,
    /// Length of a filler `note` field (0: none), to reach a target record size.
    pub note_bytes: usize,
}

impl SampleSpec {
    pub fn new(records: usize, partitions: i32, span_hours: i64) -> Self {
        Self {
            records,
            partitions,
            signals: SIGNALS.iter().map(|s| s.to_string()).collect(),
            // 2024-03-05T10:00:00Z: a fixed start keeps expected paths stable.
            start_ms: 1_709_632_800_000,
            span_ms: span_hours * 3_600_000,
            seed: 7,
            note_bytes: 0,
        }
    }
}

/// One generated signal with what a test needs to check where it landed.
#[derive(Debug, Clone)]
pub struct SampleRecord {
    pub id: u64,
    pub signal: String,
    pub event_ms: i64,
    pub record: Outgoing,
}

/// Generates `spec.records` JSON signals. Each carries a unique `seq` so tests can find it.
/// Devices map to partitions by key, as a keyed producer would.
pub fn generate(spec: &SampleSpec) -> Vec<SampleRecord> {
    let mut rng = Rng::new(spec.seed);
    (0..spec.records as u64)
        .map(|id| {
            let signal = spec.signals[rng.below(spec.signals.len() as u64) as usize].clone();
            let device = rng.below(200);
            let event_ms = spec.start_ms + rng.below(spec.span_ms.max(1) as u64) as i64;
            let sent = DateTime::from_timestamp_millis(event_ms)
                .expect("sample times are in range")
                .to_rfc3339_opts(SecondsFormat::Millis, true);
            let value = match signal.as_str() {
                "engine.temperature" => serde_json::json!(60.0 + rng.unit() * 50.0),
                "cabin.humidity" => serde_json::json!(rng.below(100)),
                "battery.voltage" => serde_json::json!(11.5 + rng.unit() * 3.0),
                "gps.position" => {
                    serde_json::json!({"lat": 47.6 + rng.unit(), "lon": -122.3 + rng.unit()})
                }
                "door.opened" => serde_json::json!(rng.below(2) == 1),
                _ => serde_json::json!(format!("v{}", rng.below(1000))),
            };
            let region = ["eu", "us", "ap"][(device % 3) as usize];
            let mut payload = serde_json::json!({
                "signal": signal,
                "deviceId": format!("device-{device:04}"),
                "timestamp": sent,
                "seq": id,
                "value": value,
                "properties": {"firmware": format!("1.{}.0", device % 7), "region": region},
            });
            if spec.note_bytes > 0 {
                let text: String = (0..spec.note_bytes)
                    .map(|i| (b'a' + ((id as usize + i * 7) % 26) as u8) as char)
                    .collect();
                payload["note"] = serde_json::json!(text);
            }
            SampleRecord {
                id,
                signal,
                event_ms,
                record: Outgoing {
                    partition: (device % spec.partitions as u64) as i32,
                    key: Some(format!("device-{device:04}").into_bytes()),
                    payload: Some(serde_json::to_vec(&payload).expect("JSON serializes")),
                    headers: vec![],
                    timestamp_ms: None,
                },
            }
        })
        .collect()
}

pub fn outgoing(samples: &[SampleRecord]) -> Vec<Outgoing> {
    samples.iter().map(|s| s.record.clone()).collect()
}

/// A record Sluice must dead-letter, of one of six kinds chosen by `n`.
pub fn poison(n: u64, partition: i32) -> Outgoing {
    let payload: Option<Vec<u8>> = match n % 6 {
        0 => Some(format!("{{\"signal\":\"engine.temperature\",\"seq\":{n},").into_bytes()),
        1 => Some(vec![0xff, 0xfe, b'{', b'}']),
        2 => None,
        3 => {
            Some(format!("{{\"timestamp\":\"2024-03-05T10:00:00Z\",\"poison\":{n}}}").into_bytes())
        }
        4 => Some(
            format!(
                "{{\"signal\":\"cabin.humidity\",\"timestamp\":\"not a time\",\"poison\":{n}}}"
            )
            .into_bytes(),
        ),
        _ => Some(format!("[{n}]").into_bytes()),
    };
    Outgoing {
        partition,
        key: Some(format!("poison-{n}").into_bytes()),
        payload,
        headers: vec![],
        timestamp_ms: None,
    }
}

/// One `engine.temperature` signal at `ts` (RFC 3339) on `partition`, carrying `seq`: for
/// tests that place single records in time.
pub fn signal_at(partition: i32, seq: u64, ts: &str) -> Outgoing {
    Outgoing {
        partition,
        key: None,
        payload: Some(
            format!(r#"{{"signal":"engine.temperature","timestamp":"{ts}","seq":{seq}}}"#)
                .into_bytes(),
        ),
        headers: vec![],
        timestamp_ms: None,
    }
}
