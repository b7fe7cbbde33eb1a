//! Parquet through Arrow: nested columns stay nested, timestamps are TIMESTAMP(unit, UTC).

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::read::Reading;
use crate::{Codec, EncodeError, EncodeOptions, Sink, Written};

fn writer_error(e: impl std::fmt::Display) -> EncodeError {
    EncodeError::Writer {
        format: "parquet",
        detail: e.to_string(),
    }
}

pub(crate) fn write(
    ndjson: &[u8],
    opts: &EncodeOptions,
    out: Sink,
) -> Result<Written, EncodeError> {
    let reading = Reading::settle(ndjson, opts, false)?;
    let table = &reading.table;
    if table.columns.is_empty() && !ndjson.is_empty() {
        // A Parquet file without columns holds no rows: records with no fields at all
        // would be counted as written and be in no file. Refused, they go to the dead
        // letters (a record with fields beside them makes them rows of nulls instead).
        return Err(EncodeError::Schema(
            "a Parquet file needs a column, and these records have no fields".into(),
        ));
    }
    let schema = table.arrow_schema();
    let compression = match opts.codec {
        Codec::Snappy => Compression::SNAPPY,
        Codec::Zstd => Compression::ZSTD(
            opts.level
                .and_then(|l| ZstdLevel::try_new(l).ok())
                .unwrap_or_default(),
        ),
        Codec::Gzip => Compression::GZIP(
            opts.level
                .and_then(|l| GzipLevel::try_new(l as u32).ok())
                .unwrap_or_default(),
        ),
        Codec::Lz4 => Compression::LZ4_RAW,
        Codec::None | Codec::Deflate => Compression::UNCOMPRESSED,
    };
    let props = WriterProperties::builder()
        .set_compression(compression)
        .set_created_by(format!("sluice {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut writer =
        ArrowWriter::try_new(out, schema.clone(), Some(props)).map_err(writer_error)?;
    let rows = reading.column_chunks(ndjson, |columns, rows| {
        let batch = table.batch(&schema, columns, rows)?;
        writer.write(&batch).map_err(writer_error)
    })?;
    writer.into_inner().map_err(writer_error)?;
    Ok(Written {
        rows,
        conflicts: reading.table.conflicts,
    })
}
