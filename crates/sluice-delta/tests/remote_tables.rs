//! Delta tables in Azure Blob Storage (Azurite) and S3 (moto's server) through the lake's own
//! storage: the log's put-if-absent commits, concurrent writers and fencing hold on each,
//! and Python `deltalake` (object_store's Azure and S3 clients) reads the tables back.

mod support;

use deltalake_core::arrow::datatypes::Schema;
use sluice_config::{AzureAuth, AzureDestination, Destination, S3Destination, Secret};
use sluice_delta::{Commit, Table, TableError};
use sluice_lake::Lake;
use sluice_testkit::lake_files::read_delta_at;
use sluice_testkit::services::{Azurite, S3Server, AZURITE_ACCOUNT, AZURITE_KEY};
use support::{data_fields, mark, race_writers, APP};

/// Two partitions' writers commit 5 files each, racing; then a stale owner is fenced.
async fn exercise(lake: &Lake) {
    let schema = Schema::new(data_fields(false));
    let table = Table::open_or_create(lake, "tables/x", APP, &schema, &[])
        .await
        .unwrap();
    assert_eq!(table.version(), 0);
    race_writers(lake, "tables/x", None, 5, 2).await;
    let mut stale = Table::open(lake, "tables/x", APP).await.unwrap().unwrap();
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
