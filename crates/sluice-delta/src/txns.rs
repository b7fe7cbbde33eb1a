//! Every `txn` application id of a table and its version, read from the log itself (the
//! newest checkpoint's `txn` column, then the commits after it): delta-rs answers only for an
//! app id one already knows, and `sluice inspect` must list the marks it finds.

use std::collections::BTreeMap;

use bytes::Bytes;
use deltalake_core::arrow::array::{Array, AsArray};
use deltalake_core::arrow::datatypes::Int64Type;
use deltalake_core::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake_core::parquet::arrow::ProjectionMask;
use deltalake_core::DeltaTableError;

use crate::{Table, TableError};

fn generic(detail: String) -> TableError {
    DeltaTableError::Generic(detail).into()
}

impl Table {
    /// The version of every `txn` app id in the table.
    pub async fn txns(&self) -> Result<BTreeMap<String, i64>, TableError> {
        let log = format!("{}/_delta_log", self.path().trim_matches('/'));
        let read = |path: String| async move {
            self.lake
                .read_if_exists(&path)
                .await
                .map_err(|e| generic(format!("cannot read {path}: {e}")))
        };
        let mut txns = BTreeMap::new();
        let mut after = -1i64;
        if let Some(last) = read(format!("{log}/_last_checkpoint")).await? {
            let last: serde_json::Value = serde_json::from_slice(&last)
                .map_err(|e| generic(format!("_last_checkpoint: {e}")))?;
            if let Some(v) = last["version"].as_i64() {
                let checkpoint = read(format!("{log}/{v:020}.checkpoint.parquet"))
                    .await?
                    .ok_or_else(|| generic(format!("checkpoint {v} is missing")))?;
                checkpoint_txns(Bytes::from(checkpoint), &mut txns)?;
                after = v;
            }
        }
        for version in after + 1..=self.version() {
            let Some(commit) = read(format!("{log}/{version:020}.json")).await? else {
                continue;
            };
            for line in commit.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let action: serde_json::Value = serde_json::from_slice(line)
                    .map_err(|e| generic(format!("commit {version}: {e}")))?;
                if let (Some(app), Some(v)) = (
                    action["txn"]["appId"].as_str(),
                    action["txn"]["version"].as_i64(),
                ) {
                    txns.insert(app.to_string(), v);
                }
            }
        }
        Ok(txns)
    }
}

fn checkpoint_txns(body: Bytes, txns: &mut BTreeMap<String, i64>) -> Result<(), TableError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(body).map_err(DeltaTableError::from)?;
    let schema = builder.parquet_schema();
    let Some(txn) = builder.schema().index_of("txn").ok() else {
        return Ok(());
    };
    let mask = ProjectionMask::roots(schema, [txn]);
    for batch in builder
        .with_projection(mask)
        .build()
        .map_err(DeltaTableError::from)?
    {
        let batch = batch.map_err(DeltaTableError::from)?;
        let txn = batch.column(0).as_struct();
        let (Some(app), Some(version)) =
            (txn.column_by_name("appId"), txn.column_by_name("version"))
        else {
            continue;
        };
        let (app, version) = (app.as_string::<i32>(), version.as_primitive::<Int64Type>());
        for i in 0..txn.len() {
            if txn.is_valid(i) && app.is_valid(i) {
                txns.insert(app.value(i).to_string(), version.value(i));
            }
        }
    }
    Ok(())
}
