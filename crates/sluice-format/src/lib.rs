//! Turning a buffer's JSON lines into the bytes of one lake file.
//!
//! Buffers hold records as raw NDJSON lines (compact: about one byte per payload byte).
//! Encoding a columnar file reads them twice: once to settle the columns (inferred and
//! widened, or declared), then [`table::CHUNK_ROWS`] lines at a time into Arrow batches (or
//! Avro values), so only one chunk of parsed lines exists at any moment. Lines are read into
//! [`json::Node`]s, which borrow from the buffer and keep numbers as written: an integer no
//! column type holds is written as its exact text.
//! Every encoding is deterministic — the same lines give the same bytes, so a file rewritten
//! after a crash is identical to the first attempt — except PGP encryption, whose session key
//! is random (write-if-absent keeps the first copy either way).
//!
//! Writers stream into a [`Sink`]: compression and PGP encryption happen on the way, so no
//! second whole copy of a file (uncompressed, or unencrypted) is ever held. Bytes that are
//! already whole (plain NDJSON lines, an Avro block) are deflated in one call instead.

pub mod avro;
mod csv;
mod deflate;
pub mod envelope;
pub mod gzip_ahead;
pub mod inspect;
pub mod json;
pub mod lexer;
mod options;
mod parquet;
pub mod pgp;
pub mod read;
pub mod rfc3339;
pub mod schema;
pub mod table;

use std::io::Write;

pub use options::{Codec, Column, CsvOptions, EncodeOptions, Envelope, FileFormat, TimeUnit};
pub use schema::{DeclaredSchema, Kind};

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("compressing the file failed: {0}")]
    Compress(#[from] std::io::Error),
    #[error("line {row} of the buffer is not JSON: {detail}")]
    Line { row: usize, detail: String },
    #[error("schema: {0}")]
    Schema(String),
    #[error("{format}: {detail}")]
    Writer {
        format: &'static str,
        detail: String,
    },
    #[error("encrypting the file failed: {0}")]
    Encrypt(String),
}

impl EncodeError {
    /// Whether the records are what the format refused (so that others may still be
    /// written), not the file's compression or encryption, which would fail any file.
    pub fn is_about_records(&self) -> bool {
        matches!(
            self,
            EncodeError::Line { .. } | EncodeError::Schema(_) | EncodeError::Writer { .. }
        )
    }
}

/// A file body and what writing it found.
#[derive(Debug)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub rows: u64,
    /// Fields whose values disagreed in type and were written as JSON text.
    pub conflicts: Vec<String>,
}

/// Where a writer puts a file's bytes, in order: memory, a compressor or an encryptor.
pub(crate) type Sink<'a> = &'a mut (dyn Write + Send);

/// What writing a file found.
#[derive(Debug, Default)]
pub(crate) struct Written {
    pub(crate) rows: u64,
    pub(crate) conflicts: Vec<String>,
}

/// Encodes newline-terminated JSON lines (one record each) into a file of `opts.format`.
pub fn encode(ndjson: &[u8], opts: &EncodeOptions) -> Result<Encoded, EncodeError> {
    file(opts, ndjson.len() / 2, |out| write_file(ndjson, opts, out))
}

/// The file `write` makes, encrypted on the way when `opts` says so; `room` is a guess at
/// its size.
pub(crate) fn file(
    opts: &EncodeOptions,
    room: usize,
    write: impl FnOnce(Sink) -> Result<Written, EncodeError>,
) -> Result<Encoded, EncodeError> {
    let (bytes, written) = match &opts.pgp {
        None => {
            let mut out = Vec::with_capacity(room);
            let written = write(&mut out)?;
            (out, written)
        }
        Some(recipient) => recipient.encrypt_streaming(write)?,
    };
    Ok(Encoded {
        bytes,
        rows: written.rows,
        conflicts: written.conflicts,
    })
}

fn write_file(ndjson: &[u8], opts: &EncodeOptions, out: Sink) -> Result<Written, EncodeError> {
    match (opts.format, opts.envelope) {
        (FileFormat::Avro, Some(envelope)) => envelope::write(ndjson, envelope, opts.codec, out),
        (FileFormat::Ndjson, _) => match &opts.columns {
            None => plain_ndjson_file(ndjson, opts, out),
            Some(columns) => compressed(opts, out, |out| mapped_ndjson_file(ndjson, columns, out)),
        },
        (FileFormat::Csv, _) => compressed(opts, out, |out| csv::write(ndjson, opts, out)),
        (FileFormat::Avro, None) => avro::write(ndjson, opts, out),
        (FileFormat::Parquet, _) => parquet::write(ndjson, opts, out),
    }
}

/// NDJSON without a mapping: the lines untouched. They are already whole, so gzip takes
/// them in one call rather than through a stream.
fn plain_ndjson_file(
    ndjson: &[u8],
    opts: &EncodeOptions,
    out: Sink,
) -> Result<Written, EncodeError> {
    match opts.codec {
        Codec::Gzip => out.write_all(&deflate::Deflater::new(opts.deflate_level()).gzip(ndjson))?,
        _ => compressed(opts, out, |out| Ok(out.write_all(ndjson)?))?,
    }
    Ok(Written {
        rows: table::lines(ndjson).count() as u64,
        conflicts: Vec::new(),
    })
}

/// NDJSON with a mapping: the mapped fields of each line, renamed.
fn mapped_ndjson_file(
    ndjson: &[u8],
    columns: &[Column],
    out: Sink,
) -> Result<Written, EncodeError> {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut rows = 0u64;
    let mut projected = String::new();
    for (row, line) in table::lines(ndjson).enumerate() {
        let v = table::parse_line(line, row)?;
        // The mapped fields in the mapping's order, each value exactly as the record has it.
        let fields = columns
            .iter()
            .filter_map(|c| json::lookup(&v, &c.path).map(|x| (c.name.as_str(), x)));
        projected.clear();
        projected.push('{');
        for (i, (name, x)) in fields.enumerate() {
            if i > 0 {
                projected.push(',');
            }
            projected.push_str(&json::Node::Str(name.into()).json_text());
            projected.push(':');
            projected.push_str(&x.json_text());
        }
        projected.push_str("}\n");
        out.write_all(projected.as_bytes())?;
        rows += 1;
    }
    out.flush()?;
    Ok(Written {
        rows,
        conflicts: Vec::new(),
    })
}

/// Whole-file compression for the text formats whose text is made on the way to `out`.
fn compressed<T>(
    opts: &EncodeOptions,
    out: Sink,
    write: impl FnOnce(Sink) -> Result<T, EncodeError>,
) -> Result<T, EncodeError> {
    match opts.codec {
        Codec::Gzip => {
            let mut gz = flate2::GzBuilder::new()
                .mtime(0)
                .write(out, opts.deflate_level());
            let done = write(&mut gz)?;
            gz.try_finish()?;
            Ok(done)
        }
        Codec::Zstd => {
            let mut z = zstd::Encoder::new(out, opts.level.unwrap_or(3))?;
            let done = write(&mut z)?;
            z.finish()?;
            Ok(done)
        }
        _ => write(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A map keyed by device id would make a column per device: past the cap it is one JSON
    /// text column, and every value is still there.
    #[test]
    fn maps_with_many_keys_become_one_json_column() {
        let mut lines = Vec::new();
        for i in 0..400 {
            lines.extend(format!("{{\"id\":{i},\"by_device\":{{\"dev-{i}\":{i}}}}}\n").bytes());
        }
        let opts = EncodeOptions::new(FileFormat::Parquet, Codec::Snappy);
        let file = encode(&lines, &opts).unwrap();
        let report = inspect::inspect(&file.bytes, "f.parquet", 400).unwrap();
        assert_eq!(report.rows, 400);
        assert!(!report.schema.contains("dev-1"), "{}", report.schema);
        assert!(
            report.first_rows[399].contains("dev-399"),
            "{}",
            report.first_rows[399]
        );
        // Narrow maps stay columns.
        let narrow = b"{\"by_device\":{\"a\":1,\"b\":2}}\n";
        let report =
            inspect::inspect(&encode(narrow, &opts).unwrap().bytes, "f.parquet", 1).unwrap();
        assert!(
            report.schema.contains("Struct(\"a\": Int64, \"b\": Int64)"),
            "{}",
            report.schema
        );
    }

    #[test]
    fn gzip_and_zstd_round_trip_and_are_deterministic() {
        let lines = b"{\"a\":1}\n{\"a\":2}\n".repeat(100);
        let opts = EncodeOptions::new(FileFormat::Ndjson, Codec::Gzip);
        let a = encode(&lines, &opts).unwrap().bytes;
        assert_eq!(a, encode(&lines, &opts).unwrap().bytes);
        assert!(a.len() < lines.len() / 4);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&a[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, lines);
        let z = encode(&lines, &EncodeOptions::new(FileFormat::Ndjson, Codec::Zstd)).unwrap();
        assert_eq!(zstd::decode_all(&z.bytes[..]).unwrap(), lines);
        let plain = EncodeOptions::new(FileFormat::Ndjson, Codec::None);
        assert_eq!(encode(&lines, &plain).unwrap().bytes, lines);
    }

    #[test]
    fn a_compression_level_is_used_by_every_writer() {
        // Varied lines, so that a stronger level finds more to remove.
        let lines: Vec<u8> = (0..4000)
            .flat_map(|i| format!("{{\"id\":{i},\"v\":\"{}\"}}\n", i * 7919 % 1000).into_bytes())
            .collect();
        let size = |format, codec, level| {
            let mut opts = EncodeOptions::new(format, codec);
            opts.level = level;
            encode(&lines, &opts).unwrap().bytes.len()
        };
        for (format, codec) in [
            (FileFormat::Ndjson, Codec::Gzip),
            (FileFormat::Ndjson, Codec::Zstd),
            (FileFormat::Avro, Codec::Deflate),
            (FileFormat::Avro, Codec::Zstd),
            (FileFormat::Parquet, Codec::Zstd),
            (FileFormat::Parquet, Codec::Gzip),
        ] {
            let (fast, strong) = (size(format, codec, Some(1)), size(format, codec, Some(9)));
            assert_ne!(
                fast, strong,
                "{format:?} {codec:?}: the level changes nothing"
            );
        }
        let mut opts = EncodeOptions::new(FileFormat::Ndjson, Codec::Gzip);
        opts.level = Some(1);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&encode(&lines, &opts).unwrap().bytes[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, lines);
    }

    #[test]
    fn a_mapping_selects_and_renames() {
        let mut opts = EncodeOptions::new(FileFormat::Ndjson, Codec::None);
        opts.columns = Some(vec![
            Column {
                name: "Device".into(),
                path: vec!["device".into(), "id".into()],
            },
            Column {
                name: "t".into(),
                path: vec!["temp".into()],
            },
        ]);
        let out = encode(
            b"{\"device\":{\"id\":\"d1\"},\"temp\":3,\"x\":1}\n{\"x\":2}\n",
            &opts,
        )
        .unwrap();
        assert_eq!(out.bytes, b"{\"Device\":\"d1\",\"t\":3}\n{}\n");
    }

    /// An integer no 64-bit column holds keeps every digit in every format: as JSON text in
    /// the columnar ones, as written in NDJSON (issue 13, item 9).
    #[test]
    fn integers_beyond_64_bits_keep_every_digit() {
        let lines = b"{\"id\":18446744073709551616,\"n\":[1,-100000000000000000000001],\"v\":1.5}\n{\"id\":3,\"n\":[],\"v\":2}\n";
        for (format, name) in [
            (FileFormat::Csv, "f.csv"),
            (FileFormat::Avro, "f.avro"),
            (FileFormat::Parquet, "f.parquet"),
        ] {
            let file = encode(lines, &EncodeOptions::new(format, Codec::None)).unwrap();
            let report = inspect::inspect(&file.bytes, name, 2).unwrap();
            let rows = report.first_rows.join("\n");
            assert!(rows.contains("18446744073709551616"), "{format:?}: {rows}");
            assert!(
                rows.contains("-100000000000000000000001"),
                "{format:?}: {rows}"
            );
        }
        let mut opts = EncodeOptions::new(FileFormat::Ndjson, Codec::None);
        opts.columns = Some(vec![Column {
            name: "id".into(),
            path: vec!["id".into()],
        }]);
        let out = encode(lines, &opts).unwrap();
        assert_eq!(out.bytes, b"{\"id\":18446744073709551616}\n{\"id\":3}\n");
    }

    /// Records with no fields are rows too (Avro and CSV wrote none of them while counting
    /// them, Parquet wrote a file without rows), in a file's first chunk and after it.
    #[test]
    fn records_without_fields_are_rows() {
        for n in [2, table::CHUNK_ROWS + 2] {
            let lines = b"{}\n".repeat(n);
            for (format, name) in [(FileFormat::Avro, "f.avro"), (FileFormat::Csv, "f.csv")] {
                let file = encode(&lines, &EncodeOptions::new(format, Codec::None)).unwrap();
                assert_eq!(file.rows, n as u64);
                let report = inspect::inspect(&file.bytes, name, 1).unwrap();
                assert_eq!(report.rows, n as u64, "{format:?}");
            }
            // A Parquet file without columns holds no rows: refused (so dead-lettered),
            // unless a record with a field gives the file a column.
            let parquet = EncodeOptions::new(FileFormat::Parquet, Codec::None);
            let refused = encode(&lines, &parquet).unwrap_err();
            assert!(refused.is_about_records(), "{refused}");
            let mut mixed = lines.clone();
            mixed.extend_from_slice(b"{\"a\":1}\n");
            let file = encode(&mixed, &parquet).unwrap();
            assert_eq!(file.rows, n as u64 + 1);
            let report = inspect::inspect(&file.bytes, "f.parquet", 1).unwrap();
            assert_eq!(report.rows, n as u64 + 1);
        }
    }

    #[test]
    fn every_format_is_deterministic() {
        let lines = b"{\"a\":1,\"t\":\"2024-05-01T10:00:00Z\",\"n\":{\"x\":[1,2]}}\n{\"a\":2.5,\"b\":\"x\"}\n";
        for format in [FileFormat::Csv, FileFormat::Avro, FileFormat::Parquet] {
            for &codec in format.codecs() {
                let opts = EncodeOptions::new(format, codec);
                let a = encode(lines, &opts).unwrap();
                assert_eq!(a.rows, 2);
                assert_eq!(
                    a.bytes,
                    encode(lines, &opts).unwrap().bytes,
                    "{format:?} {codec:?}"
                );
            }
        }
    }
}
