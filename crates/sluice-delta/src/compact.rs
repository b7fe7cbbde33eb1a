//! Compaction and retention: small files of a partition are bin-packed into files near a
//! target size in one commit that changes no data (`dataChange: false`, Delta's OPTIMIZE),
//! and files the table no longer references are vacuumed once past a retention period.
//! Readers at an older version keep working until the vacuum.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use deltalake_core::arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, ListArray, RecordBatch, StringBuilder, StructArray,
};
use deltalake_core::arrow::compute::cast;
use deltalake_core::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake_core::arrow::error::ArrowError;
use deltalake_core::arrow::json::writer::{make_encoder, EncoderOptions};
use deltalake_core::kernel::{Action, Add, Remove};
use deltalake_core::operations::vacuum::VacuumMode;
use deltalake_core::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake_core::parquet::arrow::ArrowWriter;
use deltalake_core::parquet::basic::{Compression, ZstdLevel};
use deltalake_core::parquet::file::properties::WriterProperties;
use deltalake_core::protocol::DeltaOperation;
use deltalake_core::DeltaTableError;

use crate::table::commit_builder;
use crate::{Table, TableError};

/// What one compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compaction {
    /// The table version it committed, when there was anything to compact.
    pub version: Option<i64>,
    pub files_removed: usize,
    pub files_added: usize,
    pub records: u64,
}

/// Partition values of a file, in a stable order.
type PartitionKey = Vec<(String, Option<String>)>;

struct Candidate {
    path: String,
    size: u64,
    remove: Remove,
    /// The offset-named files whose records it holds (itself, or what it was compacted from).
    sources: Vec<String>,
}

/// The `add` tag under which a compacted file names the offset-named files it replaced
/// (comma-separated, relative to its directory): replays still read which records of each
/// Kafka partition the table holds.
pub(crate) const SOURCES_TAG: &str = "sluice.sources";

/// The offset-named files whose records the table file at `path` with `tags` holds.
pub(crate) fn sources(path: &str, tags: Option<&HashMap<String, Option<String>>>) -> Vec<String> {
    let dir = path.rfind('/').map_or("", |i| &path[..=i]);
    match tags
        .and_then(|t| t.get(SOURCES_TAG))
        .and_then(|v| v.as_deref())
    {
        Some(names) => names
            .split(',')
            .filter(|n| !n.is_empty())
            .map(|n| format!("{dir}{n}"))
            .collect(),
        None => vec![path.to_string()],
    }
}

fn plan(candidates: Vec<Candidate>, target_size: u64) -> Vec<Vec<Candidate>> {
    let mut bins = Vec::new();
    let mut bin: Vec<Candidate> = Vec::new();
    let mut size = 0;
    for c in candidates {
        size += c.size;
        bin.push(c);
        if size >= target_size {
            bins.push(std::mem::take(&mut bin));
            size = 0;
        }
    }
    bins.push(bin);
    // A bin of one file would rewrite it for nothing.
    bins.retain(|b| b.len() > 1);
    bins
}

/// `batch` in the table's data schema: columns it lacks (fields added later) are null, and
/// columns of narrower types are converted to the table's.
pub(crate) fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, TableError> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) => conform_array(column, field.data_type()),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<ArrayRef>, _>>()
        .map_err(DeltaTableError::from)?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| DeltaTableError::from(e).into())
}

/// `array` in type `to`, which holds every value of it (see `evolve`): objects by field
/// name, lists item by item, nested values made text as their JSON text, the rest cast.
fn conform_array(array: &ArrayRef, to: &DataType) -> Result<ArrayRef, ArrowError> {
    match (array.data_type(), to) {
        (from, to) if from == to => Ok(array.clone()),
        (DataType::Null, to) => Ok(new_null_array(to, array.len())),
        (DataType::Struct(_), DataType::Struct(fields)) => {
            let objects = array.as_struct();
            let children = fields
                .iter()
                .map(|f| match objects.column_by_name(f.name()) {
                    Some(c) => conform_array(c, f.data_type()),
                    None => Ok(new_null_array(f.data_type(), objects.len())),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let nulls = objects.nulls().cloned();
            Ok(Arc::new(StructArray::try_new(
                fields.clone(),
                children,
                nulls,
            )?))
        }
        (DataType::List(_), DataType::List(item)) => {
            let lists = array.as_list::<i32>();
            let values = conform_array(lists.values(), item.data_type())?;
            let nulls = lists.nulls().cloned();
            Ok(Arc::new(ListArray::try_new(
                item.clone(),
                lists.offsets().clone(),
                values,
                nulls,
            )?))
        }
        (DataType::Struct(_) | DataType::List(_) | DataType::Map(..), DataType::Utf8) => {
            json_text(array)
        }
        _ => cast(array, to),
    }
}

/// Each value of a nested `array` as its JSON text.
fn json_text(array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let field = Arc::new(Field::new("value", array.data_type().clone(), true));
    let options = EncoderOptions::default();
    let mut encoder = make_encoder(&field, array.as_ref(), &options)?;
    let mut texts = StringBuilder::with_capacity(array.len(), array.len() * 32);
    let mut text = Vec::new();
    for i in 0..array.len() {
        if encoder.is_null(i) {
            texts.append_null();
            continue;
        }
        text.clear();
        encoder.encode(i, &mut text);
        texts.append_value(String::from_utf8_lossy(&text));
    }
    Ok(Arc::new(texts.finish()))
}

/// How Sluice writes the Parquet files it makes itself (compacted and rewritten ones).
pub(crate) fn zstd_writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build()
}

/// The `add` action of a data file Sluice wrote, with its row count as its only statistic.
pub(crate) fn add_action(
    path: String,
    partition_values: HashMap<String, Option<String>>,
    size: i64,
    records: u64,
    data_change: bool,
) -> Add {
    Add {
        path,
        partition_values,
        size,
        modification_time: chrono::Utc::now().timestamp_millis(),
        data_change,
        stats: Some(serde_json::json!({"numRecords": records}).to_string()),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    }
}

impl Table {
    /// Bin-packs, per partition, the files smaller than `target_size` whose partition
    /// `eligible` accepts (closed windows: a window still being written would only get new
    /// small files beside the compacted one) into files of about `target_size`.
    pub async fn compact(
        &mut self,
        target_size: u64,
        eligible: impl Fn(&HashMap<String, Option<String>>) -> bool,
    ) -> Result<Compaction, TableError> {
        self.refresh().await?;
        let version = self.version();
        let partition_columns = self.partition_columns()?;
        let full = self.schema()?;
        let data_schema: SchemaRef = Arc::new(Schema::new(
            full.fields()
                .iter()
                .filter(|f| !partition_columns.contains(f.name()))
                .cloned()
                .collect::<Vec<_>>(),
        ));
        let mut partitions: BTreeMap<PartitionKey, Vec<Candidate>> = BTreeMap::new();
        for file in self.table.snapshot()?.log_data().iter() {
            let values = file.partition_values_map();
            if file.size() as u64 >= target_size || !eligible(&values) {
                continue;
            }
            let mut key: PartitionKey = values.into_iter().collect();
            key.sort();
            #[allow(deprecated)] // the tags are only reachable through the Add
            let tags = file.add_action().tags;
            partitions.entry(key).or_default().push(Candidate {
                path: file.path().to_string(),
                sources: sources(&file.path(), tags.as_ref()),
                size: file.size() as u64,
                remove: file.remove_action(false),
            });
        }
        let mut actions = Vec::new();
        let mut done = Compaction::default();
        for (key, mut files) in partitions {
            files.sort_by(|a, b| a.path.cmp(&b.path));
            for (i, bin) in plan(files, target_size).into_iter().enumerate() {
                let (add, records) = self.rewrite(&bin, &key, &data_schema, version, i).await?;
                done.files_removed += bin.len();
                done.files_added += 1;
                done.records += records;
                actions.extend(bin.into_iter().map(|c| Action::Remove(c.remove)));
                actions.push(Action::Add(add));
            }
        }
        if actions.is_empty() {
            return Ok(done);
        }
        let snapshot = self.table.snapshot()?.clone();
        let committed = commit_builder()
            .with_actions(actions)
            .build(
                Some(&snapshot),
                self.table.log_store(),
                DeltaOperation::Optimize {
                    predicate: None,
                    target_size: target_size as i64,
                },
            )
            .await?;
        done.version = Some(committed.version() as i64);
        self.refresh().await?;
        Ok(done)
    }

    /// One bin's files read back, conformed to the table schema and written as one file
    /// next to them. Its name is fixed by the table version and bin, so a retry after a
    /// crash finds the file it wrote.
    async fn rewrite(
        &self,
        bin: &[Candidate],
        key: &PartitionKey,
        schema: &SchemaRef,
        version: i64,
        index: usize,
    ) -> Result<(Add, u64), TableError> {
        let mut body = Vec::new();
        let mut writer =
            ArrowWriter::try_new(&mut body, schema.clone(), Some(zstd_writer_properties()))
                .map_err(DeltaTableError::from)?;
        let mut records = 0u64;
        for file in bin {
            let raw = self
                .lake
                .read(&self.object_path(&file.path))
                .await
                .map_err(|e| {
                    DeltaTableError::Generic(format!("compaction cannot read {}: {e}", file.path))
                })?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(raw))
                .and_then(|b| b.build())
                .map_err(DeltaTableError::from)?;
            for batch in reader {
                let batch = conform(&batch.map_err(DeltaTableError::from)?, schema)?;
                records += batch.num_rows() as u64;
                writer.write(&batch).map_err(DeltaTableError::from)?;
            }
        }
        writer.close().map_err(DeltaTableError::from)?;
        let dir = bin[0].path.rsplit_once('/').map_or("", |(d, _)| d);
        let name = format!("compacted-v{version}-{index}.zstd.parquet");
        let path = if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        };
        let size = body.len() as i64;
        self.lake
            .land(&self.object_path(&path), body)
            .await
            .map_err(|e| {
                DeltaTableError::Generic(format!("compaction cannot write {path}: {e}"))
            })?;
        let mut add = add_action(path, key.iter().cloned().collect(), size, records, false);
        let names: Vec<&str> = bin
            .iter()
            .flat_map(|c| c.sources.iter())
            .map(|s| s.rsplit('/').next().unwrap_or(s))
            .collect();
        add.tags = Some(HashMap::from([(
            SOURCES_TAG.to_string(),
            Some(names.join(",")),
        )]));
        Ok((add, records))
    }

    /// Deletes the files that the table stopped referencing more than `retention` ago
    /// (compacted-away files); returns their paths.
    pub async fn vacuum(&mut self, retention: chrono::Duration) -> Result<Vec<String>, TableError> {
        self.refresh().await?;
        let (table, metrics) = self
            .table
            .clone()
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .with_mode(VacuumMode::Lite)
            .await?;
        self.table = table;
        Ok(metrics.files_deleted)
    }
}
