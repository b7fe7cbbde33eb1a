//! Delta tables over the lake, read back by the independent reader (Python `deltalake`).

mod support;

use deltalake_core::arrow::datatypes::{DataType, Field, Schema};
use sluice_config::Destination;
use sluice_delta::{Commit, DataFile, Table, TableError};
use sluice_lake::Lake;
use support::{data_fields, mark, race_writers, APP};

fn schema(extra: bool) -> Schema {
    let mut fields = data_fields(extra);
    fields.push(Field::new("date", DataType::Utf8, true));
    Schema::new(fields)
}

async fn land(
    lake: &Lake,
    table: &str,
    partition: i32,
    ids: std::ops::Range<i64>,
    extra: bool,
) -> DataFile {
    land_in(lake, table, "2026-12-01", partition, ids, extra).await
}

async fn land_in(
    lake: &Lake,
    table: &str,
    date: &str,
    partition: i32,
    ids: std::ops::Range<i64>,
    extra: bool,
) -> DataFile {
    support::land_in(lake, table, Some(date), partition, ids, 0, extra).await
}

async fn lake(dir: &tempfile::TempDir) -> Lake {
    Lake::open(&Destination::Fs {
        root: dir.path().to_string_lossy().into(),
    })
    .await
    .unwrap()
}

async fn create(lake: &Lake, path: &str) -> Table {
    Table::open_or_create(lake, path, APP, &schema(false), &["date".to_string()])
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_carry_partition_marks_and_read_back_independently() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir).await;
    let mut table = create(&lake, "tables/temperature").await;
    assert_eq!(table.version(), 0);
    let a = land(&lake, "tables/temperature", 0, 0..100, false).await;
    let b = land(&lake, "tables/temperature", 1, 0..50, false).await;
    let version = table
        .commit(&Commit {
            files: vec![a, b],
            schema: None,
            marks: vec![mark(0, 100, 1), mark(1, 50, 1)],
        })
        .await
        .unwrap();
    assert_eq!(version, 1);
    assert_eq!(table.next_offset("t", 0).await.unwrap(), Some(100));
    assert_eq!(table.files().unwrap().len(), 2);

    let read = sluice_testkit::lake_files::read_delta(
        &[dir.path().join("tables/temperature")],
        &["pipe:t:0", "pipe:t:1", "pipe:t:0:epoch"],
    );
    let t = &read[dir
        .path()
        .join("tables/temperature")
        .to_string_lossy()
        .as_ref()];
    assert_eq!(t["version"], 1);
    assert_eq!(t["rows"], 150);
    assert_eq!(t["partition_columns"], serde_json::json!(["date"]));
    assert_eq!(t["partitions"], serde_json::json!([{"date": "2026-12-01"}]));
    assert_eq!(
        t["txn"],
        serde_json::json!({"pipe:t:0": 100, "pipe:t:1": 50, "pipe:t:0:epoch": 1})
    );
    let mut want: Vec<i64> = (0..100).chain(0..50).collect();
    want.sort();
    assert_eq!(t["ids"], serde_json::json!(want));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_whose_partition_moved_on_is_fenced_and_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir).await;
    let mut zombie = create(&lake, "tables/x").await;
    let mut owner = Table::open(&lake, "tables/x", APP).await.unwrap().unwrap();
    // The zombie read the table, then the new owner (a newer claim) committed.
    let first = land(&lake, "tables/x", 0, 0..10, false).await;
    owner
        .commit(&Commit {
            files: vec![first],
            schema: None,
            marks: vec![mark(0, 10, 2)],
        })
        .await
        .unwrap();
    let late = land(&lake, "tables/x", 0, 0..7, false).await;
    let refused = zombie
        .commit(&Commit {
            files: vec![late.clone()],
            schema: None,
            marks: vec![mark(0, 7, 1)],
        })
        .await;
    assert!(
        matches!(
            refused,
            Err(TableError::Fenced {
                partition: 0,
                epoch: 1,
                ..
            })
        ),
        "{refused:?}"
    );
    owner.refresh().await.unwrap();
    assert_eq!(owner.files().unwrap().len(), 1);
    assert_eq!(owner.version(), 1);
    // The owner itself may commit below its mark (a replay of a window its predecessor
    // had not committed); the mark does not move back.
    let replayed = land(&lake, "tables/x", 0, 3..5, false).await;
    owner
        .commit(&Commit {
            files: vec![replayed],
            schema: None,
            marks: vec![mark(0, 5, 2)],
        })
        .await
        .unwrap();
    assert_eq!(owner.next_offset("t", 0).await.unwrap(), Some(10));
    assert_eq!(owner.files().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_field_grows_the_table_by_a_nullable_column() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir).await;
    let mut table = create(&lake, "t").await;
    let old = land(&lake, "t", 0, 0..5, false).await;
    table
        .commit(&Commit {
            files: vec![old],
            schema: None,
            marks: vec![mark(0, 5, 1)],
        })
        .await
        .unwrap();
    let new = land(&lake, "t", 0, 5..9, true).await;
    table
        .commit(&Commit {
            files: vec![new],
            schema: Some(schema(true)),
            marks: vec![mark(0, 9, 1)],
        })
        .await
        .unwrap();
    assert!(table.schema().unwrap().field_with_name("extra").is_ok());
    let read = sluice_testkit::lake_files::read_delta(&[dir.path().join("t")], &[]);
    let t = &read[dir.path().join("t").to_string_lossy().as_ref()];
    assert_eq!(t["rows"], 9);
    assert_eq!(t["schema"]["extra"], "string");
    assert_eq!(t["ids"], serde_json::json!((0..9).collect::<Vec<_>>()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_of_other_partitions_race_without_loss_and_creators_share_one_table() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir).await;
    let creators = (0..2).map(|_| {
        let lake = lake.clone();
        tokio::spawn(async move { create(&lake, "shared").await.version() })
    });
    for c in creators {
        assert_eq!(c.await.unwrap(), 0);
    }
    race_writers(&lake, "shared", Some("2026-12-01"), 8, 1).await;
    let read = sluice_testkit::lake_files::read_delta(
        &[dir.path().join("shared")],
        &["pipe:t:0", "pipe:t:1"],
    );
    let t = &read[dir.path().join("shared").to_string_lossy().as_ref()];
    assert_eq!(t["version"], 16);
    // A checkpoint every 10 commits (after versions 0-9, ...) keeps a long-lived table quick
    // to open; the reader above started from it.
    // Marks read from the log itself, across the checkpoint, agree with the reader's.
    let table = Table::open(&lake, "shared", APP).await.unwrap().unwrap();
    let txns = table.txns().await.unwrap();
    assert_eq!(txns.get("pipe:t:0"), Some(&80));
    assert_eq!(txns.get("pipe:t:1:epoch"), Some(&1));
    assert_eq!(txns.len(), 4, "{txns:?}");
    let log = sluice_testkit::lake_files::files_under(&dir.path().join("shared/_delta_log"), "");
    assert!(
        log.iter()
            .any(|f| f.ends_with("00000000000000000009.checkpoint.parquet")),
        "{log:?}"
    );
    assert_eq!(t["rows"], 160);
    assert_eq!(
        t["txn"],
        serde_json::json!({"pipe:t:0": 80, "pipe:t:1": 80})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_packs_small_files_and_vacuum_removes_them_after_retention() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir).await;
    let mut table = create(&lake, "c").await;
    // 240 files of 5 records, in two date partitions, over 4 commits; the last two
    // commits' files have a column the first ones lack.
    let mut next = 0i64;
    for commit in 0..4 {
        let extra = commit >= 2;
        let mut files = Vec::new();
        for date in ["2026-12-01", "2026-12-02"] {
            for _ in 0..30 {
                files.push(land_in(&lake, "c", date, 0, next..next + 5, extra).await);
                next += 5;
            }
        }
        table
            .commit(&Commit {
                files,
                schema: extra.then(|| schema(true)),
                marks: vec![mark(0, next, 1)],
            })
            .await
            .unwrap();
    }
    assert_eq!(table.files().unwrap().len(), 240);
    let before = table.version();

    let done = table.compact(1 << 20, |_| true).await.unwrap();
    assert_eq!(done.files_removed, 240);
    assert_eq!(done.files_added, 2, "{done:?}");
    assert_eq!(done.records, 1200);
    assert_eq!(table.files().unwrap().len(), 2);
    // Compaction changes no data and no partition mark.
    assert_eq!(table.next_offset("t", 0).await.unwrap(), Some(1200));

    let path = dir.path().join("c");
    let key = path.to_string_lossy().to_string();
    let now = sluice_testkit::lake_files::read_delta(std::slice::from_ref(&path), &[]);
    assert_eq!(now[&key]["rows"], 1200);
    assert_eq!(now[&key]["files"], 2);
    assert_eq!(
        now[&key]["ids"],
        serde_json::json!((0..1200).collect::<Vec<_>>())
    );
    assert_eq!(now[&key]["schema"]["extra"], "string");
    // A reader at the version before compaction still reads the small files.
    let old = sluice_testkit::lake_files::read_delta_at(
        std::slice::from_ref(&key),
        &[],
        &[],
        Some(before),
    );
    assert_eq!(old[&key]["rows"], 1200);
    assert_eq!(old[&key]["files"], 240);

    // Within the retention period nothing goes; past it, the 240 compacted-away files do.
    assert!(table
        .vacuum(chrono::Duration::hours(1))
        .await
        .unwrap()
        .is_empty());
    let deleted = table.vacuum(chrono::Duration::zero()).await.unwrap();
    assert_eq!(deleted.len(), 240);
    let parquet_files = sluice_testkit::lake_files::files_under(&path, ".parquet");
    assert_eq!(parquet_files.len(), 2, "{parquet_files:?}");
    let after = sluice_testkit::lake_files::read_delta(std::slice::from_ref(&path), &[]);
    assert_eq!(after[&key]["rows"], 1200);
}
