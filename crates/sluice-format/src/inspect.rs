//! What a landed file holds: format, compression, schema, row count and its first rows.

use std::fmt;
use std::io::Read;

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::table::{lines, Table};
use crate::{Codec, EncodeOptions, FileFormat};

#[derive(Debug)]
pub struct Report {
    pub format: FileFormat,
    pub compression: String,
    pub schema: String,
    pub rows: u64,
    /// The first rows, each as one line of JSON (CSV: as the file has them).
    pub first_rows: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "format:      {}", self.format.name())?;
        writeln!(f, "compression: {}", self.compression)?;
        writeln!(f, "rows:        {}", self.rows)?;
        writeln!(f, "schema:")?;
        for line in self.schema.lines() {
            writeln!(f, "  {line}")?;
        }
        writeln!(f, "first rows:")?;
        for row in &self.first_rows {
            writeln!(f, "  {row}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InspectError(String);

fn err(e: impl fmt::Display) -> InspectError {
    InspectError(e.to_string())
}

/// Reads a file's bytes; `name` (its path) tells CSV from JSON when the content cannot.
pub fn inspect(bytes: &[u8], name: &str, show: usize) -> Result<Report, InspectError> {
    if bytes.starts_with(b"PAR1") {
        return parquet(bytes, show);
    }
    if bytes.starts_with(b"Obj\x01") {
        return avro(bytes, show);
    }
    let (text, compression) = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(err)?;
        (out, Codec::Gzip)
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        (zstd::decode_all(bytes).map_err(err)?, Codec::Zstd)
    } else {
        (bytes.to_vec(), Codec::None)
    };
    let stem = name
        .trim_end_matches(".gz")
        .trim_end_matches(".zst")
        .to_ascii_lowercase();
    if stem.ends_with(".csv") || (!stem.ends_with(".json") && !text.starts_with(b"{")) {
        csv(&text, compression, show)
    } else {
        ndjson(&text, compression, show)
    }
}

fn batch_rows(batch: &RecordBatch, left: usize, out: &mut Vec<String>) -> Result<(), InspectError> {
    let batch = batch.slice(0, batch.num_rows().min(left));
    let mut buf = Vec::new();
    {
        let mut w = arrow_json::LineDelimitedWriter::new(&mut buf);
        w.write(&batch).map_err(err)?;
        w.finish().map_err(err)?;
    }
    out.extend(String::from_utf8_lossy(&buf).lines().map(str::to_string));
    Ok(())
}

fn arrow_schema_text(schema: &arrow_schema::Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn parquet(bytes: &[u8], show: usize) -> Result<Report, InspectError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(bytes))
        .map_err(err)?;
    let meta = builder.metadata().clone();
    let compression = meta
        .row_groups()
        .first()
        .and_then(|rg| rg.columns().first())
        .map_or("none".to_string(), |c| c.compression().to_string());
    let mut schema = arrow_schema_text(builder.schema());
    let physical: Vec<String> = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .filter(|c| c.logical_type_ref().is_some())
        .map(|c| {
            format!(
                "{} (parquet {:?})",
                c.path(),
                c.logical_type_ref().expect("filtered")
            )
        })
        .collect();
    if !physical.is_empty() {
        schema.push_str("\nparquet logical types:\n");
        schema.push_str(&physical.join("\n"));
    }
    let mut first_rows = Vec::new();
    for batch in builder.with_batch_size(show.max(1)).build().map_err(err)? {
        let batch = batch.map_err(err)?;
        batch_rows(&batch, show - first_rows.len(), &mut first_rows)?;
        if first_rows.len() >= show {
            break;
        }
    }
    Ok(Report {
        format: FileFormat::Parquet,
        compression,
        schema,
        rows: meta.file_metadata().num_rows() as u64,
        first_rows,
    })
}

/// An entry of a container header's metadata, as written (the crate's parsed schema drops
/// logical types inside unions).
fn avro_meta(bytes: &[u8], key: &str) -> Option<String> {
    let head = &bytes[..bytes.len().min(1024 * 1024)];
    let key = key.as_bytes();
    let at = head.windows(key.len()).position(|w| w == key)?;
    let rest = &head[at + key.len()..];
    // A zigzag varint length, then the name.
    let (mut len, mut shift, mut i) = (0u64, 0, 0);
    while i < rest.len() {
        len |= u64::from(rest[i] & 0x7f) << shift;
        shift += 7;
        i += 1;
        if rest[i - 1] & 0x80 == 0 {
            break;
        }
    }
    let len = (len >> 1) as usize;
    rest.get(i..i + len)
        .map(|n| String::from_utf8_lossy(n).into_owned())
}

fn avro(bytes: &[u8], show: usize) -> Result<Report, InspectError> {
    let reader = apache_avro::Reader::new(bytes).map_err(err)?;
    let schema = avro_meta(bytes, "avro.schema")
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .map_or_else(
            || format!("{:?}", reader.writer_schema()),
            |v| serde_json::to_string_pretty(&v).unwrap_or_default(),
        );
    let mut rows = 0u64;
    let mut first_rows = Vec::new();
    for value in reader {
        let value = value.map_err(err)?;
        if first_rows.len() < show {
            let json = serde_json::Value::try_from(value).map_err(err)?;
            first_rows.push(json.to_string());
        }
        rows += 1;
    }
    Ok(Report {
        format: FileFormat::Avro,
        compression: avro_meta(bytes, "avro.codec").unwrap_or_else(|| "null".into()),
        schema,
        rows,
        first_rows,
    })
}

fn ndjson(text: &[u8], compression: Codec, show: usize) -> Result<Report, InspectError> {
    let opts = EncodeOptions::new(FileFormat::Parquet, Codec::None);
    let table = Table::settle(text, &opts, false).map_err(err)?;
    let schema = arrow_schema_text(&table.arrow_schema());
    Ok(Report {
        format: FileFormat::Ndjson,
        compression: compression.name().into(),
        schema: format!("(inferred from the lines)\n{schema}"),
        rows: lines(text).count() as u64,
        first_rows: lines(text)
            .take(show)
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect(),
    })
}

fn csv(text: &[u8], compression: Codec, show: usize) -> Result<Report, InspectError> {
    let format = arrow_csv::reader::Format::default().with_header(true);
    let (schema, _) = format
        .infer_schema(std::io::Cursor::new(text), Some(1000))
        .map_err(err)?;
    let reader = arrow_csv::ReaderBuilder::new(std::sync::Arc::new(schema.clone()))
        .with_format(format)
        .build(std::io::Cursor::new(text))
        .map_err(err)?;
    let mut rows = 0u64;
    for batch in reader {
        rows += batch.map_err(err)?.num_rows() as u64;
    }
    let first_rows = String::from_utf8_lossy(text)
        .lines()
        .take(show + 1)
        .map(str::to_string)
        .collect();
    Ok(Report {
        format: FileFormat::Csv,
        compression: compression.name().into(),
        schema: format!(
            "(inferred by the CSV reader)\n{}",
            arrow_schema_text(&schema)
        ),
        rows,
        first_rows,
    })
}
