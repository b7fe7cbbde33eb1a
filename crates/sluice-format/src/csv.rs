//! CSV through Arrow: one column per (mapped) field, nested values as JSON text.

use arrow_csv::WriterBuilder;

use crate::table::Table;
use crate::{compress, EncodeError, EncodeOptions, Encoded, TimeUnit};

pub(crate) fn encode(ndjson: &[u8], opts: &EncodeOptions) -> Result<Encoded, EncodeError> {
    let table = Table::settle(ndjson, opts, true)?;
    let schema = table.arrow_schema();
    let c = &opts.csv;
    let ts_format = match opts.timestamp_unit {
        TimeUnit::Millis => "%Y-%m-%dT%H:%M:%S%.3fZ",
        TimeUnit::Micros => "%Y-%m-%dT%H:%M:%S%.6fZ",
    };
    let mut builder = WriterBuilder::new()
        .with_header(c.header)
        .with_delimiter(c.delimiter)
        .with_quote(c.quote)
        .with_null(c.null_value.clone())
        .with_timestamp_tz_format(ts_format.to_string());
    if let Some(escape) = c.escape {
        builder = builder.with_escape(escape).with_double_quote(false);
    }
    let mut out = Vec::with_capacity(ndjson.len());
    let rows = {
        let mut writer = builder.build(&mut out);
        let rows = Table::chunks(ndjson, |rows| {
            let batch = table.batch(&schema, rows)?;
            writer.write(&batch).map_err(|e| EncodeError::Writer {
                format: "csv",
                detail: e.to_string(),
            })
        })?;
        if rows == 0 && c.header {
            // An empty file still says its columns.
            writer
                .write(&arrow_array::RecordBatch::new_empty(schema.clone()))
                .map_err(|e| EncodeError::Writer {
                    format: "csv",
                    detail: e.to_string(),
                })?;
        }
        rows
    };
    Ok(Encoded {
        bytes: compress(&out, opts.codec)?,
        rows,
        conflicts: table.conflicts,
    })
}
