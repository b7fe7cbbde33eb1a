//! Schema evolution across files. Each file's columns are inferred from its own records, so
//! files of one table can disagree; a Delta table has one type per column, which every file
//! must hold physically. New fields add nullable columns, at the top or inside a nested
//! object. A field the table has as integer and a new file as double widens the table to
//! double (as our Parquet files do within one file). Any other disagreement — a string
//! where the table has a number, an object where it has a list — makes the column text, so
//! no record is refused for its shape: strings are kept as they are, every other value
//! becomes its JSON text (as conflicting values in our own files are). When the table's
//! types change, the metadata changes and every file holding a changed column in its old
//! type is rewritten in the new one in the same commit (`dataChange: false`). A file
//! narrower than the table (integers where the table has doubles, numbers where it has
//! text) is rewritten in the table's types before it is added. Rewritten files keep their
//! offset name (`{topic}-{partition}-{first}-{last}.v…`), so replays still read which
//! records they hold.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use deltalake_core::arrow::datatypes::{DataType, Fields, Schema as ArrowSchema, SchemaRef};
use deltalake_core::kernel::{Action, Add};
use deltalake_core::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake_core::parquet::arrow::ArrowWriter;
use deltalake_core::DeltaTableError;

use crate::compact::{add_action, conform, zstd_writer_properties};
use crate::{DataFile, Table, TableError};

/// The type holding the values of both `table` and `file`; a column that had to become text
/// is recorded by its path in `texts`.
fn merge(table: &DataType, file: &DataType, path: &str, texts: &mut Vec<String>) -> DataType {
    match (table, file) {
        (t, f) if t == f => t.clone(),
        (t, DataType::Null) => t.clone(),
        (DataType::Null, f) => f.clone(),
        (DataType::Int64, DataType::Float64) | (DataType::Float64, DataType::Int64) => {
            DataType::Float64
        }
        (DataType::Utf8, _) => DataType::Utf8,
        (DataType::Struct(t), DataType::Struct(f)) => {
            DataType::Struct(merge_fields(t, f, &format!("{path}."), texts))
        }
        (DataType::List(t), DataType::List(f)) => {
            let item = merge(t.data_type(), f.data_type(), &format!("{path}[]"), texts);
            DataType::List(Arc::new(t.as_ref().clone().with_data_type(item)))
        }
        _ => {
            texts.push(path.to_string());
            DataType::Utf8
        }
    }
}

/// `table`'s fields with `file`'s merged in: types merged, fields it lacks added as
/// nullable at the end.
fn merge_fields(table: &Fields, file: &Fields, prefix: &str, texts: &mut Vec<String>) -> Fields {
    let mut fields: Vec<_> = table.iter().cloned().collect();
    for field in file {
        match fields.iter().position(|f| f.name() == field.name()) {
            Some(i) => {
                let path = format!("{prefix}{}", field.name());
                let merged = merge(fields[i].data_type(), field.data_type(), &path, texts);
                if &merged != fields[i].data_type() {
                    fields[i] = Arc::new(fields[i].as_ref().clone().with_data_type(merged));
                }
            }
            None => fields.push(Arc::new(field.as_ref().clone().with_nullable(true))),
        }
    }
    Fields::from(fields)
}

/// Whether a file's column of type `file` can be written as the table's `table` without
/// changing the table (integers as doubles are exact up to 2^53, as in our Parquet files).
pub fn fits(file: &DataType, table: &DataType) -> bool {
    &merge(table, file, "", &mut Vec::new()) == table
}

/// `table` grown by a data file's `schema`, or `None` when nothing changes: fields it lacks
/// as nullable columns, integer columns the file has as doubles widened, conflicting
/// columns made text. Also the paths of the columns that became text.
pub fn grow_schema(
    table: &ArrowSchema,
    schema: &ArrowSchema,
) -> (Option<ArrowSchema>, Vec<String>) {
    let mut texts = Vec::new();
    let fields = merge_fields(table.fields(), schema.fields(), "", &mut texts);
    let grown = (&fields != table.fields()).then(|| ArrowSchema::new(fields));
    (grown, texts)
}

/// Whether a file of `schema` must be rewritten to hold `table`'s types.
pub fn needs_rewrite(schema: &ArrowSchema, table: &ArrowSchema) -> bool {
    schema.fields().iter().any(|f| {
        table
            .field_with_name(f.name())
            .is_ok_and(|t| t.data_type() != f.data_type() && fits(f.data_type(), t.data_type()))
    })
}

/// The file-name stem that names a data file's records (`{topic}-{partition}-{first}-{last}`),
/// with its directory: a rewritten copy has the same.
pub(crate) fn offset_stem(path: &str) -> &str {
    let start = path.rfind('/').map_or(0, |i| i + 1);
    match path[start..].find('.') {
        Some(dot) => &path[..start + dot],
        None => path,
    }
}

impl Table {
    /// The table's columns without its partition columns: what data files hold.
    fn data_schema(&self, schema: &ArrowSchema) -> Result<SchemaRef, TableError> {
        let partition_columns = self.partition_columns()?;
        Ok(Arc::new(ArrowSchema::new(
            schema
                .fields()
                .iter()
                .filter(|f| !partition_columns.contains(f.name()))
                .cloned()
                .collect::<Vec<_>>(),
        )))
    }

    /// `path` (relative to the table) rewritten in `schema`'s types beside itself, as an
    /// `Add` for `version`; `None` when its types already are the table's.
    async fn rewritten(
        &self,
        path: &str,
        schema: &SchemaRef,
        partition_values: HashMap<String, Option<String>>,
        data_change: bool,
        version: i64,
    ) -> Result<Option<Add>, TableError> {
        let raw = self.lake.read(&self.object_path(path)).await.map_err(|e| {
            DeltaTableError::Generic(format!("cannot read {path} to rewrite it: {e}"))
        })?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(raw))
            .map_err(DeltaTableError::from)?;
        let holds = reader.schema().clone();
        let differs = holds.fields().iter().any(|f| {
            schema
                .field_with_name(f.name())
                .is_ok_and(|t| t.data_type() != f.data_type())
        });
        if !differs {
            return Ok(None);
        }
        let mut body = Vec::new();
        let mut writer =
            ArrowWriter::try_new(&mut body, schema.clone(), Some(zstd_writer_properties()))
                .map_err(DeltaTableError::from)?;
        let mut records = 0u64;
        for batch in reader.build().map_err(DeltaTableError::from)? {
            let batch = conform(&batch.map_err(DeltaTableError::from)?, schema)?;
            records += batch.num_rows() as u64;
            writer.write(&batch).map_err(DeltaTableError::from)?;
        }
        writer.close().map_err(DeltaTableError::from)?;
        let new_path = format!("{}.v{version}.zstd.parquet", offset_stem(path));
        let size = body.len() as i64;
        self.lake
            .land(&self.object_path(&new_path), body)
            .await
            .map_err(|e| DeltaTableError::Generic(format!("cannot write {new_path}: {e}")))?;
        Ok(Some(add_action(
            new_path,
            partition_values,
            size,
            records,
            data_change,
        )))
    }

    /// For a commit that changes the table's schema to `schema`: every file the table has
    /// that holds a column in another type, rewritten (removed and added, `dataChange:
    /// false`).
    pub(crate) async fn rewrite_existing(
        &self,
        schema: &ArrowSchema,
        version: i64,
    ) -> Result<Vec<Action>, TableError> {
        let data = self.data_schema(schema)?;
        let files: Vec<_> = self
            .table
            .snapshot()?
            .log_data()
            .iter()
            .map(|f| {
                (
                    f.path().to_string(),
                    f.partition_values_map(),
                    f.remove_action(false),
                )
            })
            .collect();
        let mut actions = Vec::new();
        for (path, values, remove) in files {
            if let Some(add) = self.rewritten(&path, &data, values, false, version).await? {
                actions.push(Action::Remove(remove));
                actions.push(Action::Add(add));
            }
        }
        Ok(actions)
    }

    /// `file` in the table's types: itself, or its rewritten copy.
    pub(crate) async fn conformed(
        &self,
        file: &DataFile,
        schema: &ArrowSchema,
        version: i64,
    ) -> Result<DataFile, TableError> {
        let data = self.data_schema(schema)?;
        let values = file
            .partition_values
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        Ok(
            match self
                .rewritten(&file.path, &data, values, true, version)
                .await?
            {
                None => file.clone(),
                Some(add) => DataFile {
                    path: add.path,
                    size: add.size as u64,
                    ..file.clone()
                },
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake_core::arrow::datatypes::Field;

    fn schema(fields: &[(&str, DataType)]) -> ArrowSchema {
        ArrowSchema::new(
            fields
                .iter()
                .map(|(n, t)| Field::new(*n, t.clone(), true))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn integers_widen_to_doubles_and_fields_are_added() {
        let table = schema(&[("a", DataType::Int64), ("b", DataType::Utf8)]);
        let file = schema(&[("a", DataType::Float64), ("c", DataType::Boolean)]);
        let (grown, conflicts) = grow_schema(&table, &file);
        assert_eq!(
            grown.unwrap(),
            schema(&[
                ("a", DataType::Float64),
                ("b", DataType::Utf8),
                ("c", DataType::Boolean)
            ])
        );
        assert!(conflicts.is_empty());
        // Integers into a double column: the file is rewritten, the table unchanged.
        let doubles = schema(&[("a", DataType::Float64)]);
        let ints = schema(&[("a", DataType::Int64)]);
        assert_eq!(grow_schema(&doubles, &ints), (None, vec![]));
        assert!(needs_rewrite(&ints, &doubles));
        assert!(!needs_rewrite(&doubles, &doubles));
        // A string where the table has a number makes the column text, and a number where
        // the table has text is rewritten as text.
        let strings = schema(&[("a", DataType::Utf8)]);
        assert_eq!(
            grow_schema(&doubles, &strings),
            (Some(strings.clone()), vec!["a".to_string()])
        );
        assert_eq!(grow_schema(&strings, &doubles), (None, vec![]));
        assert!(needs_rewrite(&doubles, &strings));
    }

    #[test]
    fn nested_objects_gain_fields_and_conflicts_deep_down_become_text() {
        let inner = |fields: &[(&str, DataType)]| {
            DataType::Struct(Fields::from(
                fields
                    .iter()
                    .map(|(n, t)| Field::new(*n, t.clone(), true))
                    .collect::<Vec<_>>(),
            ))
        };
        let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
        let table = schema(&[
            (
                "o",
                inner(&[("x", DataType::Int64), ("y", DataType::Boolean)]),
            ),
            ("l", list(DataType::Int64)),
        ]);
        let file = schema(&[
            (
                "o",
                inner(&[("y", list(DataType::Utf8)), ("z", DataType::Utf8)]),
            ),
            ("l", list(DataType::Float64)),
        ]);
        let (grown, texts) = grow_schema(&table, &file);
        assert_eq!(
            grown.unwrap(),
            schema(&[
                (
                    "o",
                    inner(&[
                        ("x", DataType::Int64),
                        ("y", DataType::Utf8),
                        ("z", DataType::Utf8)
                    ])
                ),
                ("l", list(DataType::Float64)),
            ])
        );
        assert_eq!(texts, vec!["o.y".to_string()]);
        // An object where the table has a list: the whole column becomes text.
        let objects = schema(&[("l", inner(&[("x", DataType::Int64)]))]);
        let (grown, texts) = grow_schema(&table, &objects);
        assert_eq!(grown.unwrap().field(1).data_type(), &DataType::Utf8);
        assert_eq!(texts, vec!["l".to_string()]);
    }

    #[test]
    fn a_rewritten_copy_keeps_the_offset_stem() {
        assert_eq!(
            offset_stem("date=2026-12-01/hour=10/t-0-000000000001-000000000009.zstd.parquet"),
            "date=2026-12-01/hour=10/t-0-000000000001-000000000009"
        );
        assert_eq!(offset_stem("t-0-1-9.v3.zstd.parquet"), "t-0-1-9");
    }
}
