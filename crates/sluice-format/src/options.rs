//! How a file is to be written: format, compression and the per-format options.

use std::sync::Arc;

use crate::schema::DeclaredSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Ndjson,
    Csv,
    Avro,
    Parquet,
}

/// Compression. Which ones a format takes: [`FileFormat::codecs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Zstd,
    Deflate,
    Snappy,
    Lz4,
}

impl Codec {
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
            Codec::Deflate => "deflate",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
        }
    }

    /// The levels `sink.compression_level` may choose (higher: smaller and slower), or
    /// `None` for a codec that has no level.
    pub fn levels(self) -> Option<std::ops::RangeInclusive<i32>> {
        match self {
            Codec::Gzip | Codec::Deflate => Some(1..=9),
            Codec::Zstd => Some(1..=22),
            Codec::None | Codec::Snappy | Codec::Lz4 => None,
        }
    }

    pub fn parse(s: &str) -> Option<Codec> {
        Some(match s {
            "none" | "null" | "uncompressed" => Codec::None,
            "gzip" => Codec::Gzip,
            "zstd" | "zstandard" => Codec::Zstd,
            "deflate" => Codec::Deflate,
            "snappy" => Codec::Snappy,
            "lz4" => Codec::Lz4,
            _ => return None,
        })
    }
}

impl FileFormat {
    pub fn parse(s: &str) -> Option<FileFormat> {
        Some(match s {
            "ndjson" | "json" | "jsonl" => FileFormat::Ndjson,
            "csv" => FileFormat::Csv,
            "avro" => FileFormat::Avro,
            "parquet" => FileFormat::Parquet,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Ndjson => "ndjson",
            FileFormat::Csv => "csv",
            FileFormat::Avro => "avro",
            FileFormat::Parquet => "parquet",
        }
    }

    /// The compressions this format supports; the first is the default.
    pub fn codecs(self) -> &'static [Codec] {
        match self {
            FileFormat::Ndjson | FileFormat::Csv => &[Codec::None, Codec::Gzip, Codec::Zstd],
            FileFormat::Avro => &[Codec::Deflate, Codec::None, Codec::Snappy, Codec::Zstd],
            FileFormat::Parquet => &[
                Codec::Snappy,
                Codec::Zstd,
                Codec::Gzip,
                Codec::Lz4,
                Codec::None,
            ],
        }
    }

    /// File extension without the leading dot. Whole-file compression shows (`json.gz`);
    /// Avro and Parquet compress inside the file, so their names stay `.avro`/`.parquet`.
    pub fn extension(self, codec: Codec) -> String {
        let base = match self {
            FileFormat::Ndjson => "json",
            FileFormat::Csv => "csv",
            FileFormat::Avro => return "avro".into(),
            FileFormat::Parquet => return "parquet".into(),
        };
        match codec {
            Codec::Gzip => format!("{base}.gz"),
            Codec::Zstd => format!("{base}.zst"),
            _ => base.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeUnit {
    Millis,
    #[default]
    Micros,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CsvOptions {
    pub delimiter: u8,
    pub quote: u8,
    /// `None`: a quote inside a value is doubled (RFC 4180).
    pub escape: Option<u8>,
    pub header: bool,
    /// What an absent or null value is written as.
    pub null_value: String,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: b',',
            quote: b'"',
            escape: None,
            header: true,
            null_value: String::new(),
        }
    }
}

/// Avro records in the shape Azure's own exports write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// IoT Hub message routing to storage (and IoT Central continuous export):
    /// `EnqueuedTimeUtc`, `Properties`, `SystemProperties`, `Body`.
    IotHub,
    /// Event Hubs Capture: also `SequenceNumber` and `Offset`.
    Capture,
}

/// One output column of a mapping: the value at `path` written under `name`.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub path: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EncodeOptions {
    pub format: FileFormat,
    pub codec: Codec,
    /// The codec's level (within [`Codec::levels`]); `None` keeps each writer's default:
    /// 6 for gzip and deflate, 3 for zstd (1 inside Parquet pages).
    pub level: Option<i32>,
    pub timestamp_unit: TimeUnit,
    /// Type RFC 3339 strings as timestamps (columnar formats).
    pub infer_timestamps: bool,
    pub csv: CsvOptions,
    /// Only with Avro: lines are envelopes made by [`crate::envelope::line`].
    pub envelope: Option<Envelope>,
    /// Selected and renamed columns; `None` keeps every field under its own name.
    pub columns: Option<Vec<Column>>,
    /// A declared record schema: no inference, these columns and types.
    pub schema: Option<Arc<DeclaredSchema>>,
    /// Encrypt finished files to this key (`.gpg`).
    pub pgp: Option<crate::pgp::PgpRecipient>,
}

impl EncodeOptions {
    /// The deflate level for gzip and Avro's deflate blocks: the pipeline's, else 6.
    pub fn deflate_level(&self) -> flate2::Compression {
        self.level.map_or(flate2::Compression::default(), |l| {
            flate2::Compression::new(l.clamp(1, 9) as u32)
        })
    }

    /// Files of untouched NDJSON lines in gzip: their lines can be deflated ahead, while
    /// their buffer fills ([`crate::gzip_ahead`]).
    pub fn gzips_plain_lines(&self) -> bool {
        self.format == FileFormat::Ndjson
            && self.codec == Codec::Gzip
            && self.columns.is_none()
            && self.envelope.is_none()
    }

    pub fn new(format: FileFormat, codec: Codec) -> Self {
        Self {
            format,
            codec,
            level: None,
            timestamp_unit: TimeUnit::default(),
            infer_timestamps: true,
            csv: CsvOptions::default(),
            envelope: None,
            columns: None,
            schema: None,
            pgp: None,
        }
    }

    pub fn extension(&self) -> String {
        let ext = self.format.extension(self.codec);
        match self.pgp {
            Some(_) => format!("{ext}.gpg"),
            None => ext,
        }
    }
}
