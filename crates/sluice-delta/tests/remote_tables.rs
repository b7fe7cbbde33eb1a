//! Delta tables in Azure Blob Storage (Azurite) and S3 (moto's server) through the lake's own
//! storage: the log's put-if-absent commits, concurrent writers and fencing hold on each,
//! and Python `deltalake` (object_store's Azure and S3 clients) reads the tables back.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use deltalake_core::arrow::datatypes::{DataType, Field, Schema};
use sluice_config::{AzureAuth, AzureDestination, Destination, S3Destination, Secret};
use sluice_delta::{Commit, DataFile, PartitionMark, Table, TableError};
use sluice_lake::Lake;
use sluice_testkit::lake_files::read_delta_at;
use sluice_testkit::services::{Azurite, S3Server, AZURITE_ACCOUNT, AZURITE_KEY};

fn parquet(ids: std::ops::Range<i64>) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
    let column: ArrayRef = Arc::new(Int64Array::from_iter_values(ids));
    let batch = RecordBatch::try_new(schema.clone(), vec![column]).unwrap();
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

fn mark(partition: i32, next_offset: i64, epoch: u64) -> PartitionMark {
    PartitionMark {
        topic: "t".into(),
        partition,
        next_offset,
        epoch,
    }
}

/// Two partitions' writers commit 5 files each, racing; then a stale owner is fenced.
async fn exercise(lake: &Lake) {
    let schema = Schema::new(vec![Field::new("id", DataType::Int64, true)]);
    let table = Table::open_or_create(lake, "tables/x", "pipe", &schema, &[])
        .await
        .unwrap();
    assert_eq!(table.version(), 0);
    let writers = (0..2).map(|partition| {
        let lake = lake.clone();
        tokio::spawn(async move {
            let mut table = Table::open(&lake, "tables/x", "pipe")
                .await
                .unwrap()
                .unwrap();
            for round in 0..5i64 {
                let ids =
                    partition as i64 * 1000 + round * 10..partition as i64 * 1000 + round * 10 + 10;
                let body = parquet(ids.clone());
                let path = format!("t+{partition}+{}-{}.parquet", round * 10, round * 10 + 9);
                lake.land(&format!("tables/x/{path}"), body.clone())
                    .await
                    .unwrap();
                let file = DataFile {
                    path,
                    size: body.len() as u64,
                    records: 10,
                    partition_values: vec![],
                };
                table
                    .commit(&Commit {
                        files: vec![file],
                        schema: None,
                        marks: vec![mark(partition, round * 10 + 10, 2)],
                    })
                    .await
                    .unwrap();
            }
        })
    });
    for w in writers {
        w.await.unwrap();
    }
    let mut stale = Table::open(lake, "tables/x", "pipe")
        .await
        .unwrap()
        .unwrap();
    let refused = stale
        .commit(&Commit {
            files: vec![],
            schema: None,
            marks: vec![mark(0, 60, 1)],
        })
        .await;
    assert!(
        matches!(refused, Err(TableError::Fenced { .. })),
        "{refused:?}"
    );
}

fn check(read: &serde_json::Value, url: &str) {
    let t = &read[url];
    assert_eq!(t["version"], 10, "{read}");
    assert_eq!(t["rows"], 100);
    let mut want: Vec<i64> = (0..50).chain(1000..1050).collect();
    want.sort();
    assert_eq!(t["ids"], serde_json::json!(want));
    assert_eq!(
        t["txn"],
        serde_json::json!({"pipe:t:0": 50, "pipe:t:1": 50})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_in_azure_blob_storage() {
    let azurite = Azurite::start();
    let lake = Lake::open(&Destination::Azure(AzureDestination {
        account: AZURITE_ACCOUNT.into(),
        container: "lake".into(),
        root: "root".into(),
        endpoint: azurite.endpoint.clone(),
        auth: AzureAuth::SharedKey(Secret::new(AZURITE_KEY)),
    }))
    .await
    .unwrap();
    exercise(&lake).await;
    let url = "az://lake/root/tables/x".to_string();
    let read = read_delta_at(
        std::slice::from_ref(&url),
        &[
            format!("account_name={AZURITE_ACCOUNT}"),
            format!("account_key={AZURITE_KEY}"),
            format!("endpoint={}", azurite.endpoint),
            "allow_http=true".into(),
        ],
        &["pipe:t:0", "pipe:t:1"],
        None,
    );
    check(&read, &url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_in_s3() {
    let s3 = S3Server::start();
    s3.create_bucket("lake");
    let lake = Lake::open(&Destination::S3(S3Destination {
        bucket: "lake".into(),
        root: "root".into(),
        region: "us-east-1".into(),
        endpoint: Some(s3.endpoint.clone()),
        credentials: Some(("test".into(), Secret::new("test"))),
    }))
    .await
    .unwrap();
    exercise(&lake).await;
    let url = "s3://lake/root/tables/x".to_string();
    let read = read_delta_at(
        std::slice::from_ref(&url),
        &[
            format!("endpoint={}", s3.endpoint),
            "access_key_id=test".into(),
            "secret_access_key=test".into(),
            "region=us-east-1".into(),
            "allow_http=true".into(),
        ],
        &["pipe:t:0", "pipe:t:1"],
        None,
    );
    check(&read, &url);
}
