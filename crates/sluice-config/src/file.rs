//! The pipeline file exactly as written. Unknown fields are rejected so typos fail loudly;
//! enumerations are plain strings here so that validation can name the field and the choices.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// Names the pipeline in logs and metrics.
    pub name: String,
    pub source: SourceSection,
    #[serde(default)]
    pub route: RouteSection,
    pub window: WindowSection,
    pub sink: SinkSection,
    #[serde(default)]
    pub flush: FlushSection,
    /// Declared schemas by signal name: `[schema.<signal>]`.
    #[serde(default)]
    pub schema: BTreeMap<String, SchemaSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// Brokers, `host:port[,host:port]`; derived from the connection string for Event Hubs.
    pub bootstrap_servers: Option<String>,
    /// Topics (event hubs); for Event Hubs defaults to the connection string's EntityPath.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Environment variable holding an Event Hubs connection string
    /// (`Endpoint=sb://<ns>.servicebus.windows.net/;SharedAccessKeyName=…;SharedAccessKey=…`).
    pub event_hubs_connection_string_env: Option<String>,
    pub group_id: String,
    /// Where a group without committed offsets starts: `earliest` (default) or `latest`.
    pub start_from: Option<String>,
    /// Extra librdkafka properties, passed through as they are.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties that are credentials, each from an environment variable (or
    /// `<VAR>_FILE`): `{ "sasl.password" = "KAFKA_PASSWORD" }`.
    #[serde(default)]
    pub secret_properties_env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// Dotted path of the JSON field holding the signal name (default `signal`).
    pub signal_field: Option<String>,
    /// Kafka header holding the signal name (instead of `signal_field`).
    pub signal_header: Option<String>,
    /// Signal for records that carry none; without it such records are dead-lettered.
    pub default_signal: Option<String>,
    /// Signals to export; omitted means all.
    pub signals: Option<Vec<String>>,
    /// Records with a larger payload are dead-lettered (default 1 MiB).
    pub max_record_bytes: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSection {
    /// `event` (a time inside the record) or `ingestion` (the Kafka timestamp).
    pub time: String,
    pub event_time_field: Option<String>,
    /// `auto` (default), `rfc3339`, `epoch_s`, `epoch_ms`, `epoch_us` or `epoch_ns`.
    pub event_time_format: Option<String>,
    /// Records timed further than this ahead of their Kafka timestamp are dead-lettered as
    /// `implausible_timestamp` (default 86400: one day).
    pub max_future_secs: Option<u64>,
    /// Records timed before this RFC 3339 instant are dead-lettered as
    /// `implausible_timestamp` (default 2000-01-01T00:00:00Z).
    pub min_event_time: Option<String>,
    /// `minute`, `hour` or `day` (UTC).
    pub granularity: String,
    /// How long after a window's end its records still count as on time (default 0).
    pub allowed_lateness_secs: Option<u64>,
    /// What to do with a record whose window has closed: `append` (default), `divert` or
    /// `dead_letter`.
    pub late_data: Option<String>,
    /// Write `_SUCCESS` markers listing a window's files once every partition has passed its
    /// end plus the allowed lateness (default false).
    pub markers: Option<bool>,
    /// A partition without records for this long does not hold markers back (default 300).
    pub idle_partition_secs: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSection {
    pub url: String,
    pub path: Option<String>,
    pub format: Option<String>,
    pub compression: Option<String>,
    /// The compression's level: 1–9 for gzip and deflate, 1–22 for zstd (default: the
    /// codec's own, 6 and 3).
    pub compression_level: Option<i32>,
    pub dead_letter_path: Option<String>,
    /// Seconds one write attempt may take before it is abandoned and retried (default 15).
    pub write_timeout_secs: Option<u64>,
    pub azure: Option<AzureSection>,
    pub s3: Option<S3Section>,
    pub pgp: Option<PgpSection>,
    /// `millis` or `micros` (default): the unit of timestamp columns.
    pub timestamp_unit: Option<String>,
    /// Type RFC 3339 strings as timestamps in columnar files (default true).
    pub infer_timestamps: Option<bool>,
    /// Avro only: `iothub` or `capture` writes Azure's export record shape.
    pub envelope: Option<String>,
    pub csv: Option<CsvSection>,
    /// Selected and renamed columns, in order: `[[sink.columns]] from = "a.b", to = "B"`.
    pub columns: Option<Vec<ColumnSection>>,
    /// `delta`: write Delta Lake tables (Parquet implied) instead of loose files.
    pub table: Option<String>,
    /// Where each table is, relative to `url` (default `{signal}`: one table per signal).
    pub table_path: Option<String>,
    /// Partition columns from the window: `hour` (date and hour), `date`, or `none`.
    pub table_partition_by: Option<String>,
    /// A table commit waits for at most this many landed files (default 100); it also goes
    /// once its oldest file is `flush.max_age_secs` old.
    pub table_commit_files: Option<usize>,
    /// Compact closed windows' small files of every table this often (seconds; off unless
    /// set), as `sluice compact` does; one worker of the group does it.
    pub table_compact_every_secs: Option<u64>,
    /// The size compaction aims at per file (MB, default 128).
    pub table_compact_target_mb: Option<u64>,
    /// Files compaction replaced are deleted this long after (hours, default 168).
    pub table_retention_hours: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgpSection {
    /// The recipient's ASCII-armored public key, relative to the pipeline file...
    pub public_key_file: Option<String>,
    /// ...or in this environment variable.
    pub public_key_env: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Section {
    /// Default `us-east-1`.
    pub region: Option<String>,
    /// For S3-compatible stores (MinIO, Ceph, a local test server): `http://host:port`.
    pub endpoint: Option<String>,
    /// Environment variables with a static key; when neither is set (or the default
    /// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` are absent) the AWS credential chain is used.
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSection {
    pub delimiter: Option<String>,
    pub quote: Option<String>,
    /// Escapes quotes inside values instead of doubling them.
    pub escape: Option<String>,
    pub header: Option<bool>,
    pub null_value: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSection {
    /// Dotted path of the JSON field.
    pub from: String,
    /// Column name in the file (default: `from`).
    pub to: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaSection {
    /// An Avro schema (`.avsc`), relative to the pipeline file.
    pub avro_file: Option<String>,
    /// `field = "type"`; dotted names nest.
    pub fields: Option<BTreeMap<String, String>>,
    /// Fields (dotted) every record must carry (with `fields`).
    pub required: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureSection {
    /// Overrides the account name taken from the URL.
    pub account_name: Option<String>,
    /// Environment variable holding the storage account's shared key.
    pub account_key_env: Option<String>,
    /// Environment variable holding a SAS token (instead of the shared key); it needs read,
    /// write, list and create permissions on the container (and object/container scope).
    pub sas_token_env: Option<String>,
    /// A service principal: its tenant (directory) id...
    pub tenant_id: Option<String>,
    /// ...its client (application) id...
    pub client_id: Option<String>,
    /// ...and the environment variable holding its client secret.
    pub client_secret_env: Option<String>,
    /// Entra ID authority for sovereign clouds (default https://login.microsoftonline.com).
    pub authority_host: Option<String>,
    /// `"environment"`: managed identity, workload identity or the `AZURE_*` variables.
    pub credential: Option<String>,
    /// Blob endpoint override, e.g. Azurite's `http://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlushSection {
    pub max_records: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_age_secs: Option<u64>,
    pub max_buffered_bytes: Option<u64>,
    /// A batch schedule: land everything every `3h`, `6h`, `8h`, `12h`, `24h` (any `<n>h`,
    /// `<n>m`, `<n>s`, `<n>d`), at multiples of it since midnight UTC.
    pub every: Option<String>,
    /// Or a five-field cron expression in UTC, e.g. `"0 2 * * 1-5"` (weekdays at 02:00).
    pub cron: Option<String>,
    /// Write `_manifests/manifest-<pipeline>-<runId>.json` after each scheduled run lands.
    pub manifest: Option<bool>,
}
