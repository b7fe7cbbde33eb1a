//! `PipelineFile::validate`: every problem found, each naming its field and the fix.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use sluice_core::{Granularity, PathTemplate, OFFSET_FILE_NAME};

use crate::azure_auth::azure_auth;
use crate::destination::{parse_url, ParsedUrl};
use crate::encoding::Encoding;
use crate::file::{PipelineFile, SinkSection};
use crate::{AzureDestination, Destination, Secret};

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub problem: String,
    pub fix: String,
    /// The environment variable a secret was to come from, when the problem is only that it
    /// is not set (what `sluice validate --no-env` leaves out).
    pub unset_env: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}. Fix: {}.", self.field, self.problem, self.fix)
    }
}

/// Every problem found in a pipeline file (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn one(field: &str, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self(vec![ConfigError {
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
            unset_env: None,
        }])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct ValidatedPipeline {
    pub name: String,
    pub source: SourceSettings,
    pub signal_source: SignalSource,
    /// Signal given to records that carry none; `None` sends them to the dead-letter files.
    pub default_signal: Option<String>,
    pub filter: SignalFilter,
    /// Payloads larger than this are dead-lettered.
    pub max_record_bytes: u64,
    pub window: WindowSettings,
    pub sink: SinkSettings,
    pub flush: FlushPolicy,
}

#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub bootstrap_servers: String,
    pub topics: Vec<String>,
    /// librdkafka properties that are credentials (Event Hubs' SASL password).
    pub secret_properties: BTreeMap<String, Secret>,
    pub group_id: String,
    /// librdkafka's `auto.offset.reset`.
    pub start_from: String,
    pub properties: BTreeMap<String, String>,
    /// librdkafka's prefetch queue (`queued.max.messages.kbytes`), from the memory budget.
    pub prefetch_kbytes: u64,
}

/// The prefetch queue held beside `flush.max_buffered_bytes`: an eighth of it, from 1 MiB
/// to 16 MiB (the fixed size before, with which the benchmark reads at full speed), so that a
/// small budget is not doubled by records librdkafka holds before the worker takes them. A
/// `queued.max.messages.kbytes` in `[source] properties` wins.
pub fn prefetch_kbytes(max_buffered_bytes: u64) -> u64 {
    (max_buffered_bytes / 8 / 1024).clamp(1024, 16 * 1024)
}

#[derive(Debug, Clone, PartialEq)]
pub enum SignalSource {
    /// Path of object keys into the JSON payload.
    Field(Vec<String>),
    Header(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SignalFilter {
    All,
    Only(BTreeSet<String>),
}

impl SignalFilter {
    pub fn admits(&self, raw_signal: &str) -> bool {
        match self {
            SignalFilter::All => true,
            SignalFilter::Only(names) => names.contains(raw_signal),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTimeFormat {
    /// RFC 3339 strings, or numbers whose unit is told by their magnitude: seconds below
    /// 10^11, milliseconds below 10^14, microseconds below 10^17, nanoseconds above.
    Auto,
    Rfc3339,
    EpochSeconds,
    EpochMillis,
    EpochMicros,
    EpochNanos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TimeKey {
    Event {
        path: Vec<String>,
        format: EventTimeFormat,
    },
    /// The Kafka record timestamp, or the arrival time when the record has none.
    Ingestion,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WindowSettings {
    pub time: TimeKey,
    /// Record times outside these bounds are dead-lettered, never windowed.
    pub plausible: PlausibleTimes,
    pub granularity: Granularity,
    pub allowed_lateness: Duration,
    pub late_data: LateData,
    /// Window-complete markers, when the pipeline writes them.
    pub markers: Option<MarkerSettings>,
}

/// Which record times can be meant: a time far ahead of the record's own Kafka timestamp, or
/// before `min_ms`, is a broken clock or a wrong unit, and would poison the watermark (every
/// later record late) and open windows nobody can seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlausibleTimes {
    /// How far (ms) a record's time may be ahead of its Kafka timestamp.
    pub max_future_ms: i64,
    /// The earliest record time (ms since the epoch).
    pub min_ms: i64,
}

impl Default for PlausibleTimes {
    fn default() -> Self {
        Self {
            max_future_ms: DEFAULT_MAX_FUTURE_SECS as i64 * 1000,
            min_ms: DEFAULT_MIN_EVENT_TIME_MS,
        }
    }
}

/// Default `window.max_future_secs`: one day.
const DEFAULT_MAX_FUTURE_SECS: u64 = 86_400;
/// Default `window.min_event_time`: 2000-01-01T00:00:00Z.
const DEFAULT_MIN_EVENT_TIME_MS: i64 = 946_684_800_000;
/// Larger bounds than a century would let the year-2999 record through.
const MAX_FUTURE_SECS_LIMIT: u64 = 100 * 365 * 86_400;

#[derive(Debug, Clone, PartialEq)]
pub struct MarkerSettings {
    /// A partition that has had no record for this long (and has landed everything) no longer
    /// holds windows open: otherwise one quiet partition would hold back every marker.
    pub idle_partition: Duration,
}

/// Default `window.idle_partition_secs`.
const DEFAULT_IDLE_PARTITION: Duration = Duration::from_secs(300);

/// What happens to a record whose window has closed: its end plus the allowed lateness is
/// behind the partition's watermark (the latest record time seen on that partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateData {
    /// Written like any record: a new file in the window's folder.
    Append,
    /// Written under the `_late/` prefix, with the same layout below it.
    Divert,
    /// Sent to the dead-letter files with reason `late`.
    DeadLetter,
}

#[derive(Debug, Clone)]
pub struct SinkSettings {
    pub destination: Destination,
    pub path: PathTemplate,
    pub dead_letter_path: PathTemplate,
    /// How long one write attempt may take before it is abandoned and retried. It also bounds
    /// how long a worker taking a partition over from a crashed or replaced owner waits.
    pub write_timeout: Duration,
    /// Format, compression and schemas of signal files.
    pub encoding: Encoding,
    /// Delta tables instead of loose files (`sink.table`).
    pub table: Option<crate::TableSettings>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FlushPolicy {
    /// Land a buffer when it holds this many records.
    pub max_records: u64,
    /// Land a buffer when it holds this many payload bytes.
    pub max_bytes: u64,
    /// Land a buffer this long after its first record arrived, so data stays near real time.
    pub max_age: Duration,
    /// Ceiling on bytes held by all open buffers; past it the largest buffers land early.
    pub max_buffered_bytes: u64,
    /// Batch schedule: every buffer lands at each scheduled time.
    pub schedule: Option<crate::Schedule>,
    /// A manifest after each scheduled run.
    pub manifest: bool,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        Self {
            max_records: 200_000,
            max_bytes: 64 * 1024 * 1024,
            max_age: Duration::from_secs(60),
            max_buffered_bytes: 256 * 1024 * 1024,
            schedule: None,
            manifest: false,
        }
    }
}

pub(crate) const DEFAULT_AZURE_KEY_ENV: &str = "AZURE_STORAGE_KEY";
const DEFAULT_MAX_RECORD_BYTES: u64 = 1024 * 1024;

fn default_path(g: Granularity) -> &'static str {
    match g {
        Granularity::Minute => {
            "{signal}/{YYYY}/{MM}/{dd}/{hh}/{mm}/{topic}-{partition}-{first_offset}-{last_offset}.{ext}"
        }
        Granularity::Hour => {
            "{signal}/{YYYY}/{MM}/{dd}/{hh}/{topic}-{partition}-{first_offset}-{last_offset}.{ext}"
        }
        Granularity::Day => {
            "{signal}/{YYYY}/{MM}/{dd}/{topic}-{partition}-{first_offset}-{last_offset}.{ext}"
        }
    }
}

const DEFAULT_DEAD_LETTER_PATH: &str =
    "_dead_letter/{topic}/{partition}/{YYYY}/{MM}/{dd}/{topic}-{partition}-{first_offset}-{last_offset}.{ext}";

/// librdkafka properties whose values are credentials: never accepted in clear text.
fn is_credential_property(key: &str) -> bool {
    matches!(
        key,
        "sasl.password"
            | "sasl.oauthbearer.client.secret"
            | "ssl.key.password"
            | "ssl.keystore.password"
            | "ssl.key.pem"
    )
}

/// Collects problems so that one run of `validate` reports all of them.
#[derive(Default)]
pub(crate) struct Problems(Vec<ConfigError>);

impl Problems {
    pub(crate) fn add(&mut self, field: &str, problem: impl Into<String>, fix: impl Into<String>) {
        self.0.push(ConfigError {
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
            unset_env: None,
        });
    }

    /// The secret that `field` names is in neither environment variable `var` nor the file
    /// `<var>_FILE` names.
    pub(crate) fn unset(&mut self, field: &str, var: &str, fix: impl Into<String>) {
        self.0.push(ConfigError {
            field: field.into(),
            problem: format!("environment variable {var} is not set (nor {var}_FILE)"),
            fix: fix.into(),
            unset_env: Some(var.to_string()),
        });
    }
}

/// `6h`, `30m`, `90s`, `1d`: a positive whole number and a unit.
fn parse_every(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let (n, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit.trim() {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

fn dotted_path(raw: &str) -> Option<Vec<String>> {
    let parts: Vec<String> = raw.split('.').map(str::to_string).collect();
    parts.iter().all(|p| !p.is_empty()).then_some(parts)
}

impl PipelineFile {
    /// Validates with files it names (schemas) relative to the working directory.
    pub fn validate(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ValidatedPipeline, ConfigErrors> {
        self.validate_in(env, Path::new("."))
    }

    /// Validates with files it names relative to `base` (the pipeline file's directory).
    pub fn validate_in(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        base: &Path,
    ) -> Result<ValidatedPipeline, ConfigErrors> {
        let mut p = Problems::default();

        if self.name.trim().is_empty() {
            p.add(
                "name",
                "is empty",
                "give the pipeline a short name, e.g. name = \"signals-export\"",
            );
        }

        // [source]
        let s = &self.source;
        let mut properties = BTreeMap::new();
        let mut secret_properties = BTreeMap::new();
        let mut topics = s.topics.clone();
        let bootstrap = match (&s.event_hubs_connection_string_env, &s.bootstrap_servers) {
            (Some(_), Some(_)) => {
                p.add(
                    "source.bootstrap_servers",
                    "is set together with event_hubs_connection_string_env",
                    "remove bootstrap_servers: Sluice takes the Event Hubs namespace from the connection string",
                );
                None
            }
            (Some(var), None) => match env(var).filter(|v| !v.trim().is_empty()) {
                None => {
                    p.unset("source.event_hubs_connection_string_env", var,
                        format!("export {var}='Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=<policy>;SharedAccessKey=<key>' (Azure portal: Event Hubs namespace > Shared access policies)"),
                    );
                    None
                }
                Some(raw) => match crate::event_hubs::parse_connection_string(&raw) {
                    Err(problem) => {
                        p.add(
                            "source.event_hubs_connection_string_env",
                            format!("the connection string in {var} is not usable: {problem}"),
                            "copy the namespace's (or the event hub's) connection string from the Azure portal, unchanged",
                        );
                        None
                    }
                    Ok(conn) => {
                        if topics.is_empty() {
                            topics.extend(conn.entity_path.clone());
                        }
                        properties.extend(crate::event_hubs::recommended_properties());
                        let (auth, secret) = crate::event_hubs::auth_properties(&conn, &raw);
                        properties.extend(auth);
                        secret_properties = secret;
                        Some(crate::event_hubs::bootstrap_servers(&conn))
                    }
                },
            },
            (None, Some(b)) if !b.trim().is_empty() => Some(b.clone()),
            (None, _) => {
                p.add(
                    "source.bootstrap_servers",
                    "is missing or empty",
                    "list the brokers as host:port[,host:port], or set event_hubs_connection_string_env for Azure Event Hubs",
                );
                None
            }
        };
        // The pipeline's own properties win over the Event Hubs defaults.
        properties.extend(s.properties.clone());
        for key in s.properties.keys().filter(|k| is_credential_property(k)) {
            p.add(
                &format!("source.properties.\"{key}\""),
                "holds a credential in clear text, in a file that is committed and shown",
                format!("move it to an environment variable and name it: secret_properties_env = {{ \"{key}\" = \"KAFKA_SECRET\" }}"),
            );
        }
        for (key, var) in &s.secret_properties_env {
            match env(var).filter(|v| !v.is_empty()) {
                Some(value) => {
                    secret_properties.insert(key.clone(), Secret::new(value));
                }
                None => p.unset(&format!("source.secret_properties_env.\"{key}\""), var,
                    format!("export {var}=... (the value of librdkafka's {key}), or mount it as a file named by {var}_FILE"),
                ),
            }
        }
        // Topics may come from the connection string's EntityPath: unknown while it is unset.
        let topics_unknown = s.event_hubs_connection_string_env.is_some() && bootstrap.is_none();
        if topics.is_empty() && !topics_unknown {
            p.add(
                "source.topics",
                "is empty",
                "name at least one topic, e.g. topics = [\"signals\"]",
            );
        }
        if topics.iter().any(|t| t.trim().is_empty()) {
            p.add(
                "source.topics",
                "contains an empty topic name",
                "remove the empty entry",
            );
        }
        if s.group_id.trim().is_empty() {
            p.add(
                "source.group_id",
                "is empty",
                "set the consumer group every worker of this pipeline shares",
            );
        }
        let start_from = s.start_from.clone().unwrap_or_else(|| "earliest".into());
        if !matches!(start_from.as_str(), "earliest" | "latest") {
            p.add(
                "source.start_from",
                format!("'{start_from}' is not a start position"),
                "use \"earliest\" or \"latest\"",
            );
        }
        for key in [
            "enable.auto.commit",
            "enable.auto.offset.store",
            "group.id",
            "bootstrap.servers",
        ] {
            if s.properties.contains_key(key) {
                p.add(
                    &format!("source.properties.\"{key}\""),
                    "is managed by Sluice",
                    "remove it: Sluice commits offsets itself, after files land, and takes servers and group from [source]",
                );
            }
        }

        // [route]
        let r = &self.route;
        let signal_source = match (&r.signal_field, &r.signal_header) {
            (Some(_), Some(_)) => {
                p.add(
                    "route.signal_field",
                    "and route.signal_header are both set",
                    "keep only one way to find the signal name",
                );
                None
            }
            (None, Some(h)) if h.trim().is_empty() => {
                p.add(
                    "route.signal_header",
                    "is empty",
                    "name the Kafka header that holds the signal name",
                );
                None
            }
            (None, Some(h)) => Some(SignalSource::Header(h.clone())),
            (field, None) => {
                let raw = field.clone().unwrap_or_else(|| "signal".into());
                match dotted_path(&raw) {
                    Some(path) => Some(SignalSource::Field(path)),
                    None => {
                        p.add(
                            "route.signal_field",
                            format!("'{raw}' is not a dotted field path"),
                            "write it like \"signal\" or \"meta.signal_name\"",
                        );
                        None
                    }
                }
            }
        };
        let filter = match &r.signals {
            None => SignalFilter::All,
            Some(list) if list.is_empty() => {
                p.add(
                    "route.signals",
                    "is an empty list, so nothing would be exported",
                    "list signal names, or remove the field to export all signals",
                );
                SignalFilter::All
            }
            Some(list) => SignalFilter::Only(list.iter().cloned().collect()),
        };
        if r.max_record_bytes == Some(0) {
            p.add(
                "route.max_record_bytes",
                "is 0",
                "use a positive byte count, or remove it for the default 1048576 (1 MiB)",
            );
        }
        if r.default_signal
            .as_deref()
            .is_some_and(|d| d.trim().is_empty())
        {
            p.add(
                "route.default_signal",
                "is empty",
                "name a signal, or remove the field to dead-letter records without one",
            );
        }

        // [window]
        let w = &self.window;
        let granularity = match w.granularity.as_str() {
            "minute" => Some(Granularity::Minute),
            "hour" => Some(Granularity::Hour),
            "day" => Some(Granularity::Day),
            other => {
                p.add(
                    "window.granularity",
                    format!("'{other}' is not a granularity"),
                    "use \"minute\", \"hour\" or \"day\"",
                );
                None
            }
        };
        let time = match w.time.as_str() {
            "event" => {
                let format = match w.event_time_format.as_deref().unwrap_or("auto") {
                    "auto" => Some(EventTimeFormat::Auto),
                    "rfc3339" => Some(EventTimeFormat::Rfc3339),
                    "epoch_s" => Some(EventTimeFormat::EpochSeconds),
                    "epoch_ms" => Some(EventTimeFormat::EpochMillis),
                    "epoch_us" => Some(EventTimeFormat::EpochMicros),
                    "epoch_ns" => Some(EventTimeFormat::EpochNanos),
                    other => {
                        p.add(
                            "window.event_time_format",
                            format!("'{other}' is not a time format"),
                            "use \"auto\", \"rfc3339\", \"epoch_s\", \"epoch_ms\", \"epoch_us\" or \"epoch_ns\"",
                        );
                        None
                    }
                };
                match (&w.event_time_field, format) {
                    (None, _) => {
                        p.add("window.event_time_field", "is missing while window.time = \"event\"", "name the JSON field holding the time the device sent the signal, e.g. event_time_field = \"timestamp\", or set time = \"ingestion\"");
                        None
                    }
                    (Some(f), format) => match (dotted_path(f), format) {
                        (Some(path), Some(format)) => Some(TimeKey::Event { path, format }),
                        (None, _) => {
                            p.add(
                                "window.event_time_field",
                                format!("'{f}' is not a dotted field path"),
                                "write it like \"timestamp\" or \"meta.sent_at\"",
                            );
                            None
                        }
                        _ => None,
                    },
                }
            }
            "ingestion" => {
                if w.event_time_field.is_some() {
                    p.add(
                        "window.event_time_field",
                        "is set but window.time = \"ingestion\" ignores it",
                        "remove it, or set time = \"event\"",
                    );
                }
                Some(TimeKey::Ingestion)
            }
            other => {
                p.add("window.time", format!("'{other}' is not a time key"), "use \"event\" (time inside the record) or \"ingestion\" (time it reached Kafka)");
                None
            }
        };

        let mut plausible = PlausibleTimes::default();
        match w.max_future_secs {
            Some(0) | None => {
                if w.max_future_secs == Some(0) {
                    p.add("window.max_future_secs", "is 0, so a record timed one millisecond after its Kafka timestamp would be refused", "allow for clock skew: use e.g. 3600, or remove it for the default 86400 (one day)");
                }
            }
            Some(s) if s > MAX_FUTURE_SECS_LIMIT => p.add(
                "window.max_future_secs",
                format!("is {s}, more than a century"),
                "use a bound that tells a broken clock from a real one, e.g. 86400 (one day)",
            ),
            Some(s) => plausible.max_future_ms = s as i64 * 1000,
        }
        if let Some(raw) = &w.min_event_time {
            match chrono::DateTime::parse_from_rfc3339(raw) {
                Ok(t) => plausible.min_ms = t.timestamp_millis(),
                Err(_) => p.add(
                    "window.min_event_time",
                    format!("'{raw}' is not an RFC 3339 time"),
                    "write it like \"2000-01-01T00:00:00Z\", or remove it for that default",
                ),
            }
        }

        let late_data = match w.late_data.as_deref().unwrap_or("append") {
            "append" => Some(LateData::Append),
            "divert" => Some(LateData::Divert),
            "dead_letter" => Some(LateData::DeadLetter),
            other => {
                p.add(
                    "window.late_data",
                    format!("'{other}' is not a late-data policy"),
                    "use \"append\", \"divert\" or \"dead_letter\"",
                );
                None
            }
        };
        let allowed_lateness = Duration::from_secs(w.allowed_lateness_secs.unwrap_or(0));
        if w.idle_partition_secs == Some(0) {
            p.add(
                "window.idle_partition_secs",
                "is 0",
                "use a positive number of seconds, or remove it for the default 300",
            );
        }
        let markers = w.markers.unwrap_or(false).then(|| MarkerSettings {
            idle_partition: w
                .idle_partition_secs
                .map_or(DEFAULT_IDLE_PARTITION, Duration::from_secs),
        });
        if markers.is_some() && late_data == Some(LateData::Append) {
            p.add(
                "window.markers",
                "needs late records kept out of closed windows, but window.late_data is \"append\"",
                "set window.late_data = \"divert\" (late records land under _late/) or \"dead_letter\", so that no file joins a window after its marker",
            );
        }

        // [sink]
        let sink = self.validate_sink(granularity.unwrap_or(Granularity::Hour), env, base, &mut p);

        // [flush]
        let f = &self.flush;
        let defaults = FlushPolicy::default();
        if f.max_records == Some(0) {
            p.add(
                "flush.max_records",
                "is 0",
                "use a positive record count, or remove it for the default 200000",
            );
        }
        if f.max_bytes == Some(0) {
            p.add(
                "flush.max_bytes",
                "is 0",
                "use a positive byte count, or remove it for the default 67108864 (64 MiB)",
            );
        }
        if f.max_buffered_bytes == Some(0) {
            p.add(
                "flush.max_buffered_bytes",
                "is 0",
                "use a positive byte count, or remove it for the default 268435456 (256 MiB)",
            );
        }
        if f.max_age_secs == Some(0) {
            p.add(
                "flush.max_age_secs",
                "is 0",
                "use a positive number of seconds, or remove it for the default 60",
            );
        }
        let every = match f.every.as_deref().map(parse_every) {
            None => None,
            Some(Some(d)) => Some(crate::Schedule::Every(d)),
            Some(None) => {
                p.add(
                    "flush.every",
                    format!("'{}' is not a schedule", f.every.as_deref().unwrap_or_default()),
                    "use a whole number of hours, minutes, seconds or days: \"3h\", \"6h\", \"8h\", \"12h\", \"24h\", \"15m\"",
                );
                None
            }
        };
        let cron = f.cron.as_deref().and_then(|c| match crate::Schedule::cron(c) {
            Ok(s) => Some(s),
            Err(e) => {
                p.add(
                    "flush.cron",
                    format!("'{c}' {e}"),
                    "use five fields in UTC: minute hour day-of-month month day-of-week, e.g. \"0 */6 * * *\" or \"30 2 * * 1-5\"",
                );
                None
            }
        });
        if f.every.is_some() && f.cron.is_some() {
            p.add(
                "flush.cron",
                "is set together with flush.every",
                "keep one schedule: a fixed period (every) or a cron expression (cron)",
            );
        }
        let schedule = every.or(cron);
        if f.manifest == Some(true) && f.every.is_none() && f.cron.is_none() {
            p.add(
                "flush.manifest",
                "is set without a schedule: manifests describe scheduled runs",
                "add flush.every (e.g. \"6h\") or flush.cron, or remove manifest",
            );
        }
        let flush = FlushPolicy {
            max_records: f.max_records.unwrap_or(defaults.max_records),
            max_bytes: f.max_bytes.unwrap_or(defaults.max_bytes),
            // With a schedule, buffers wait for it (plus a margin) unless an age is given.
            max_age: f
                .max_age_secs
                .map(Duration::from_secs)
                .unwrap_or(match &schedule {
                    Some(s) => s.longest_gap() + Duration::from_secs(60),
                    None => defaults.max_age,
                }),
            max_buffered_bytes: f.max_buffered_bytes.unwrap_or(defaults.max_buffered_bytes),
            schedule,
            manifest: f.manifest.unwrap_or(false),
        };

        match (signal_source, granularity, time, sink, late_data) {
            (Some(signal_source), Some(granularity), Some(time), Some(sink), Some(late_data))
                if p.0.is_empty() =>
            {
                Ok(ValidatedPipeline {
                    name: self.name.clone(),
                    source: SourceSettings {
                        bootstrap_servers: bootstrap.unwrap_or_default(),
                        topics,
                        secret_properties,
                        group_id: s.group_id.clone(),
                        start_from,
                        properties,
                        prefetch_kbytes: prefetch_kbytes(flush.max_buffered_bytes),
                    },
                    signal_source,
                    default_signal: r.default_signal.clone(),
                    filter,
                    max_record_bytes: r.max_record_bytes.unwrap_or(DEFAULT_MAX_RECORD_BYTES),
                    window: WindowSettings {
                        time,
                        plausible,
                        granularity,
                        allowed_lateness,
                        late_data,
                        markers,
                    },
                    sink,
                    flush,
                })
            }
            _ => Err(ConfigErrors(p.0)),
        }
    }

    fn validate_sink(
        &self,
        granularity: Granularity,
        env: &dyn Fn(&str) -> Option<String>,
        base: &Path,
        p: &mut Problems,
    ) -> Option<SinkSettings> {
        let k: &SinkSection = &self.sink;
        let encoding = crate::encoding::validate(self, base, env, p);
        let table = crate::table::validate(
            k,
            granularity,
            encoding.as_ref().map(|e| e.options.format),
            p,
        );
        let table_file_path = table
            .as_ref()
            .and_then(|t| t.as_ref())
            .map(|t| t.file_path(granularity));
        // A directory must hold the files of one buffer key only: replays read the landed
        // offset ranges of a key from its directory's file names.
        let time_fields = |g: Granularity| match g {
            Granularity::Minute => &["YYYY", "MM", "dd", "hh", "mm"][..],
            Granularity::Hour => &["YYYY", "MM", "dd", "hh"][..],
            Granularity::Day => &["YYYY", "MM", "dd"][..],
        };
        let data_key: Vec<&str> = std::iter::once("signal")
            .chain(time_fields(granularity).iter().copied())
            .collect();
        let dead_letter_key = time_fields(Granularity::Day);
        let template = |field: &str, raw: &str, key: &[&str], p: &mut Problems| {
            match PathTemplate::parse(raw) {
                Ok(t) => {
                    // Two workers (or two flushes) must never write the same path.
                    let missing: Vec<_> = ["topic", "partition", "first_offset"]
                        .into_iter()
                        .filter(|f| !t.uses(f))
                        .collect();
                    let unpinned: Vec<String> = key
                        .iter()
                        .filter(|f| !t.directory_uses(f))
                        .map(|f| format!("{{{f}}}"))
                        .collect();
                    if missing.is_empty() && t.is_offset_named() && !unpinned.is_empty() {
                        let unpinned = unpinned.join(", ");
                        p.add(field, format!("'{raw}': its directories lack {unpinned}, so files of different signals or windows would share a directory, and after a crash records of one could be taken for landed in another's file"), format!("put {unpinned} in the directories (each key's files in a directory of their own), e.g. {}", if key.len() == dead_letter_key.len() { DEFAULT_DEAD_LETTER_PATH } else { default_path(granularity) }));
                        None
                    } else if missing.is_empty() && t.is_offset_named() {
                        Some(t)
                    } else if missing.is_empty() {
                        p.add(field, format!("'{raw}' does not end in the file name {OFFSET_FILE_NAME} (or uses an offset in a directory), so after a crash Sluice could not find which records already landed"), format!("end the path with /{OFFSET_FILE_NAME}; directories may use {{signal}} and the time fields"));
                        None
                    } else {
                        let list = missing
                            .iter()
                            .map(|m| format!("{{{m}}}"))
                            .collect::<Vec<_>>()
                            .join(", ");
                        p.add(field, format!("'{raw}' lacks {list}, so two files could get the same name and overwrite each other"), format!("add {list} to the file name, e.g. {{topic}}-{{partition}}-{{first_offset}}-{{last_offset}}.{{ext}}"));
                        None
                    }
                }
                Err(e) => {
                    p.add(
                        field,
                        format!("'{raw}': {e}"),
                        "fix the template; pipelines/README.md lists the placeholders",
                    );
                    None
                }
            }
        };
        let path = template(
            "sink.path",
            match (&table_file_path, k.table.is_some()) {
                (Some(derived), _) => derived,
                // A table with problems has them reported already: sink.path is not its.
                (None, true) => default_path(granularity),
                (None, false) => k.path.as_deref().unwrap_or(default_path(granularity)),
            },
            &data_key,
            p,
        );
        if k.write_timeout_secs == Some(0) {
            p.add(
                "sink.write_timeout_secs",
                "is 0",
                "use a positive number of seconds, or remove it for the default 15",
            );
        }
        let dead_letter_path = template(
            "sink.dead_letter_path",
            k.dead_letter_path
                .as_deref()
                .unwrap_or(DEFAULT_DEAD_LETTER_PATH),
            dead_letter_key,
            p,
        );

        let destination = match parse_url(&k.url) {
            Err(problem) => {
                p.add("sink.url", format!("'{}' {problem}", k.url), "use a local path, file:///dir, abfss://<filesystem>@<account>.dfs.core.windows.net/<dir> or https://<account>.dfs.core.windows.net/<filesystem>/<dir>/");
                None
            }
            Ok(ParsedUrl::S3(bucket, root)) => {
                if k.azure.is_some() {
                    p.add(
                        "sink.azure",
                        "is set but sink.url is an S3 bucket",
                        "remove [sink.azure], or point sink.url at an Azure account",
                    );
                }
                let s3 = k.s3.clone().unwrap_or_default();
                let explicit = s3.access_key_id_env.is_some() || s3.secret_access_key_env.is_some();
                let id_var = s3
                    .access_key_id_env
                    .unwrap_or_else(|| "AWS_ACCESS_KEY_ID".into());
                let key_var = s3
                    .secret_access_key_env
                    .unwrap_or_else(|| "AWS_SECRET_ACCESS_KEY".into());
                let credentials = match (
                    env(&id_var).filter(|v| !v.is_empty()),
                    env(&key_var).filter(|v| !v.is_empty()),
                ) {
                    (Some(id), Some(key)) => Some((id, Secret::new(key))),
                    (None, None) if !explicit => None,
                    (id, _) => {
                        let missing = if id.is_none() { &id_var } else { &key_var };
                        p.unset(if id.is_none() { "sink.s3.access_key_id_env" } else { "sink.s3.secret_access_key_env" }, missing,
                            format!("export {missing}, or remove the *_env settings to use the AWS credential chain"),
                        );
                        None
                    }
                };
                let endpoint = match s3.endpoint {
                    Some(e) if url::Url::parse(&e).is_err() => {
                        p.add(
                            "sink.s3.endpoint",
                            format!("'{e}' is not a URL"),
                            "use e.g. http://127.0.0.1:9000, or remove it for AWS",
                        );
                        None
                    }
                    e => Some(e.map(|e| e.trim_end_matches('/').to_string())),
                };
                endpoint.map(|endpoint| {
                    Destination::S3(crate::S3Destination {
                        bucket,
                        root,
                        region: s3.region.unwrap_or_else(|| "us-east-1".into()),
                        endpoint,
                        credentials,
                    })
                })
            }
            Ok(ParsedUrl::Fs(root)) => {
                if k.azure.is_some() {
                    p.add(
                        "sink.azure",
                        "is set but sink.url is a local path",
                        "remove [sink.azure], or point sink.url at an Azure account",
                    );
                }
                Some(Destination::Fs { root })
            }
            Ok(ParsedUrl::Azure(u)) => {
                let az = k.azure.clone().unwrap_or_default();
                let auth = azure_auth(&az, env, p);
                let account = az.account_name.unwrap_or(u.account);
                let endpoint = match az.endpoint {
                    Some(e) if url::Url::parse(&e).is_err() => {
                        p.add("sink.azure.endpoint", format!("'{e}' is not a URL"), "use e.g. http://127.0.0.1:10000/devstoreaccount1 for Azurite, or remove it");
                        None
                    }
                    Some(e) => Some(e.trim_end_matches('/').to_string()),
                    None => Some(format!("https://{account}.blob.core.windows.net")),
                };
                match (auth, endpoint) {
                    (Some(auth), Some(endpoint)) => Some(Destination::Azure(AzureDestination {
                        account,
                        container: u.container,
                        root: u.root,
                        endpoint,
                        auth,
                    })),
                    _ => None,
                }
            }
        };
        Some(SinkSettings {
            destination: destination?,
            path: path?,
            dead_letter_path: dead_letter_path?,
            write_timeout: Duration::from_secs(k.write_timeout_secs.unwrap_or(15)),
            encoding: encoding?,
            table: table?,
        })
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
