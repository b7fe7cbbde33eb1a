//! CSV through Arrow: one column per (mapped) field, nested values as JSON text.

use std::io::Write;

use arrow_csv::WriterBuilder;

use crate::read::Reading;
use crate::{EncodeError, EncodeOptions, Sink, TimeUnit, Written};

pub(crate) fn write(
    ndjson: &[u8],
    opts: &EncodeOptions,
    out: Sink,
) -> Result<Written, EncodeError> {
    let reading = Reading::settle(ndjson, opts, true)?;
    let table = &reading.table;
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
    let rows = {
        let mut writer = builder.build(std::io::BufWriter::with_capacity(64 * 1024, out));
        let rows = reading.column_chunks(ndjson, |columns, rows| {
            let batch = table.batch(&schema, columns, rows)?;
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
        writer.into_inner().flush()?;
        rows
    };
    Ok(Written {
        rows,
        conflicts: reading.table.conflicts,
    })
}
