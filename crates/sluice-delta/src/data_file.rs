//! A landed Parquet file described for a table commit: its row count and Arrow schema come
//! from its own footer.

use bytes::Bytes;
use deltalake_core::arrow::datatypes::Schema as ArrowSchema;
use deltalake_core::parquet::arrow::parquet_to_arrow_schema;
use deltalake_core::parquet::file::metadata::ParquetMetaDataReader;
use deltalake_core::DeltaTableError;

use crate::{DataFile, TableError};

impl DataFile {
    /// `bytes` is the whole Parquet file, to be committed at `path` (relative to the table
    /// root) with `partition_values`.
    pub fn from_parquet(
        path: String,
        bytes: &Bytes,
        partition_values: Vec<(String, String)>,
    ) -> Result<(Self, ArrowSchema), TableError> {
        let meta = ParquetMetaDataReader::new()
            .parse_and_finish(bytes)
            .map_err(DeltaTableError::from)?;
        let file = meta.file_metadata();
        let schema = parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
            .map_err(DeltaTableError::from)?;
        Ok((
            DataFile {
                path,
                size: bytes.len() as u64,
                records: file.num_rows() as u64,
                partition_values,
                schema: Some(schema.clone()),
            },
            schema,
        ))
    }
}
