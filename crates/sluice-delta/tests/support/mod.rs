//! What the Delta tests share: data files landed in a table's directory, partition marks,
//! and writers of several partitions committing to one table at once.

#![allow(dead_code)]

use std::ops::Range;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use deltalake_core::arrow::datatypes::{DataType, Field, Schema};
use sluice_delta::{Commit, DataFile, PartitionMark, Table};
use sluice_lake::Lake;

pub const APP: &str = "pipe";

/// The columns of the data files: `id`, `name` and, when `extra`, a later `extra`.
pub fn data_fields(extra: bool) -> Vec<Field> {
    let mut fields = vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ];
    if extra {
        fields.push(Field::new("extra", DataType::Utf8, true));
    }
    fields
}

/// A Parquet file of `ids` (a partition column is in the path, not the file).
pub fn parquet(ids: Range<i64>, extra: bool) -> Vec<u8> {
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(ids.clone())),
        Arc::new(StringArray::from_iter_values(
            ids.clone().map(|i| format!("n{i}")),
        )),
    ];
    if extra {
        columns.push(Arc::new(StringArray::from_iter_values(
            ids.map(|i| format!("x{i}")),
        )));
    }
    let schema = Arc::new(Schema::new(data_fields(extra)));
    let batch = RecordBatch::try_new(schema, columns).unwrap();
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

/// Lands the records at `offsets` of partition `partition` (ids `id_base + offset`) in the
/// table's directory, under `date=<date>/` when the table is partitioned by date.
pub async fn land_in(
    lake: &Lake,
    table: &str,
    date: Option<&str>,
    partition: i32,
    offsets: Range<i64>,
    id_base: i64,
    extra: bool,
) -> DataFile {
    let body = parquet(id_base + offsets.start..id_base + offsets.end, extra);
    let name = format!(
        "t+{partition}+{}-{}.parquet",
        offsets.start,
        offsets.end - 1
    );
    let path = date.map_or(name.clone(), |d| format!("date={d}/{name}"));
    lake.land(&format!("{table}/{path}"), body.clone())
        .await
        .unwrap();
    DataFile {
        path,
        size: body.len() as u64,
        records: (offsets.end - offsets.start) as u64,
        partition_values: date
            .map(|d| vec![("date".into(), d.into())])
            .unwrap_or_default(),
        schema: None,
    }
}

pub fn mark(partition: i32, next_offset: i64, epoch: u64) -> PartitionMark {
    PartitionMark {
        topic: "t".into(),
        partition,
        next_offset,
        epoch,
    }
}

/// Partitions 0 and 1 each commit `rounds` files of 10 records (ids `partition * 1000 +
/// offset`) to the existing table at `table`, at the same time, under claim `epoch`.
pub async fn race_writers(lake: &Lake, table: &str, date: Option<&str>, rounds: i64, epoch: u64) {
    let writers = (0..2).map(|partition| {
        let (lake, table, date) = (lake.clone(), table.to_string(), date.map(str::to_string));
        tokio::spawn(async move {
            let mut t = Table::open(&lake, &table, APP).await.unwrap().unwrap();
            for round in 0..rounds {
                let offsets = round * 10..round * 10 + 10;
                let base = partition as i64 * 1000;
                let file = land_in(
                    &lake,
                    &table,
                    date.as_deref(),
                    partition,
                    offsets,
                    base,
                    false,
                )
                .await;
                t.commit(&Commit {
                    files: vec![file],
                    schema: None,
                    marks: vec![mark(partition, round * 10 + 10, epoch)],
                })
                .await
                .unwrap();
            }
        })
    });
    for w in writers {
        w.await.unwrap();
    }
}
