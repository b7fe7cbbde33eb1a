//! One Delta table in the lake: created from the first schema it is given, grown by nullable
//! columns, and committed to with per-partition `txn` marks that make commits exactly-once
//! and fence a worker that lost its partition (see `commit`).

use std::collections::HashMap;
use std::sync::Arc;

use deltalake_core::arrow::datatypes::Schema as ArrowSchema;
use deltalake_core::kernel::engine::arrow_conversion::{TryIntoArrow, TryIntoKernel};
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake_core::kernel::{Action, Metadata, MetadataExt, StructType, Transaction};
use deltalake_core::logstore::{
    default_logstore, logstore_factories, LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig,
};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaResult, DeltaTable, DeltaTableBuilder, DeltaTableError, TableProperty};
use sluice_lake::Lake;
use url::Url;

use crate::evolve;
use crate::store::LakeStore;
use crate::TableError;

/// Whether a column both schemas have changes its type.
fn changes_types(from: &ArrowSchema, to: &ArrowSchema) -> bool {
    to.fields().iter().any(|f| {
        from.field_with_name(f.name())
            .is_ok_and(|have| have.data_type() != f.data_type())
    })
}

/// The URL scheme under which tables are opened: paths in it are relative to the lake root,
/// which `LakeStore` serves.
const SCHEME: &str = "lake";

/// How often a commit that lost a race to another writer of the table is tried again.
const COMMIT_ATTEMPTS: usize = 20;

/// delta-rs's plain log store (commits are put-if-absent objects) for `lake://` tables.
struct LakeLogStores;

impl LogStoreFactory for LakeLogStores {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

fn register_scheme() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let scheme = Url::parse(&format!("{SCHEME}://")).expect("scheme URL");
        logstore_factories().insert(scheme, Arc::new(LakeLogStores));
    });
}

/// A data file that has landed under the table's directory and is ready to be committed.
#[derive(Debug, Clone, PartialEq)]
pub struct DataFile {
    /// Relative to the table's root, e.g. `date=2026-12-01/hour=10/t+0+0-99.parquet`.
    pub path: String,
    pub size: u64,
    pub records: u64,
    /// Partition column values, e.g. `[("date", "2026-12-01"), ("hour", "10")]`.
    pub partition_values: Vec<(String, String)>,
    /// The Arrow schema its footer gives, when known: a file narrower than the table's
    /// types is rewritten in them before it is added (see `evolve`).
    pub schema: Option<ArrowSchema>,
}

/// Where a Kafka partition stands after a commit: every record of it below `next_offset`
/// that routes to this table is in the table. `epoch` is the writer's claim on the partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMark {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
    pub epoch: u64,
}

/// What one commit adds to the table.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    pub files: Vec<DataFile>,
    /// The table's schema after this commit, when it grew.
    pub schema: Option<ArrowSchema>,
    pub marks: Vec<PartitionMark>,
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The version that holds the commit's files.
    pub version: i64,
    /// Paths of the commit's files that the table held already (committed by an earlier
    /// attempt or a predecessor), so not added by this commit.
    pub held: Vec<String>,
}

/// The `txn` application ids of one Kafka partition in a table written by `app`.
pub fn offset_app_id(app: &str, topic: &str, partition: i32) -> String {
    format!("{app}:{topic}:{partition}")
}
fn epoch_app_id(app: &str, topic: &str, partition: i32) -> String {
    format!("{app}:{topic}:{partition}:epoch")
}

pub struct Table {
    pub(crate) table: DeltaTable,
    pub(crate) lake: Lake,
    path: String,
    app: String,
}

/// Commits retry races with other writers and write a checkpoint when the table's
/// `delta.checkpointInterval` (10, set at creation) says so.
pub(crate) fn commit_builder() -> CommitBuilder {
    CommitBuilder::from(
        CommitProperties::default()
            .with_max_retries(COMMIT_ATTEMPTS)
            .with_create_checkpoint(true),
    )
}

fn table_url(path: &str) -> Result<Url, TableError> {
    let url = format!("{SCHEME}:///{}/", path.trim_matches('/'));
    Url::parse(&url).map_err(|e| TableError::Path {
        path: path.to_string(),
        detail: e.to_string(),
    })
}

fn builder(lake: &Lake, path: &str) -> Result<DeltaTableBuilder, TableError> {
    register_scheme();
    let url = table_url(path)?;
    Ok(DeltaTableBuilder::from_url(url.clone())?
        .with_storage_backend(Arc::new(LakeStore::new(lake.clone())), url))
}

impl Table {
    /// The table at `path` (relative to the lake root), or `None` when there is none yet.
    pub async fn open(lake: &Lake, path: &str, app: &str) -> Result<Option<Self>, TableError> {
        let mut table = builder(lake, path)?.build()?;
        match table.load().await {
            Ok(()) => Ok(Some(Self {
                table,
                lake: lake.clone(),
                path: path.to_string(),
                app: app.to_string(),
            })),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The table at `path`, created with `schema` and `partition_columns` when missing. Two
    /// workers creating it at once both end with the one table (the log's first version is
    /// written only if absent).
    pub async fn open_or_create(
        lake: &Lake,
        path: &str,
        app: &str,
        schema: &ArrowSchema,
        partition_columns: &[String],
    ) -> Result<Self, TableError> {
        if let Some(table) = Self::open(lake, path, app).await? {
            return Ok(table);
        }
        let schema: StructType = schema.try_into_kernel().map_err(DeltaTableError::from)?;
        let table = builder(lake, path)?.build()?;
        let created = CreateBuilder::new()
            .with_log_store(table.log_store())
            .with_columns(schema.fields().cloned())
            .with_partition_columns(partition_columns.iter().cloned())
            .with_configuration_property(TableProperty::CheckpointInterval, Some("10"))
            .with_save_mode(SaveMode::Ignore)
            .await;
        match created {
            Ok(_)
            | Err(DeltaTableError::Transaction {
                source: TransactionError::VersionAlreadyExists(0),
            }) => {}
            Err(e) => return Err(e.into()),
        }
        Self::open(lake, path, app)
            .await?
            .ok_or_else(|| TableError::Path {
                path: path.to_string(),
                detail: "the table vanished right after it was created".into(),
            })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The pipeline whose marks this handle reads and writes.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// Where a file of the table (a path relative to its root) is in the lake.
    pub(crate) fn object_path(&self, relative: &str) -> String {
        format!("{}/{relative}", self.path.trim_matches('/'))
    }

    pub fn version(&self) -> i64 {
        self.table.version().map_or(-1, |v| v as i64)
    }

    /// The table's schema, as Arrow sees it (partition columns included).
    pub fn schema(&self) -> Result<ArrowSchema, TableError> {
        let schema = self.table.snapshot()?.schema();
        Ok(schema
            .as_ref()
            .try_into_arrow()
            .map_err(DeltaTableError::from)?)
    }

    pub fn partition_columns(&self) -> Result<Vec<String>, TableError> {
        Ok(self
            .table
            .snapshot()?
            .metadata()
            .partition_columns()
            .to_vec())
    }

    /// Reads the newest version of the table.
    pub async fn refresh(&mut self) -> Result<(), TableError> {
        Ok(self.table.update_state().await?)
    }

    /// Every record of the partition below this offset that routes to this table is in it.
    pub async fn next_offset(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, TableError> {
        self.txn(&offset_app_id(&self.app, topic, partition)).await
    }

    /// The highest claim epoch that has committed to the partition's marks.
    pub async fn epoch(&self, topic: &str, partition: i32) -> Result<Option<i64>, TableError> {
        self.txn(&epoch_app_id(&self.app, topic, partition)).await
    }

    async fn txn(&self, app_id: &str) -> Result<Option<i64>, TableError> {
        Ok(self
            .table
            .snapshot()?
            .transaction_version(self.table.log_store().as_ref(), app_id)
            .await?)
    }

    /// The offset-named data files whose records the table holds: its files, and for a
    /// compacted one the files it replaced (see `compact::SOURCES_TAG`).
    pub fn record_files(&self) -> Result<Vec<String>, TableError> {
        let snapshot = self.table.snapshot()?;
        Ok(snapshot
            .log_data()
            .iter()
            .flat_map(|f| {
                #[allow(deprecated)] // the tags are only reachable through the Add
                let tags = f.add_action().tags;
                crate::compact::sources(&f.path(), tags.as_ref())
            })
            .collect())
    }

    /// The paths (relative to the table root) of the files in the table now.
    pub fn files(&self) -> Result<Vec<String>, TableError> {
        let snapshot = self.table.snapshot()?;
        Ok(snapshot
            .log_data()
            .iter()
            .map(|f| f.path().to_string())
            .collect())
    }

    /// Commits `commit` as one new version, after checking that no writer with a newer claim
    /// has committed for any of its partitions (see `check_marks`).
    /// A race with another writer of the same partition makes delta-rs fail the commit
    /// (both commits carry that partition's `txn`); the check then runs again on the newer
    /// version and the loser sees it is fenced. Races with writers of other partitions are
    /// retried by delta-rs: appends do not conflict.
    pub async fn commit(&mut self, commit: &Commit) -> Result<i64, TableError> {
        self.commit_files(commit).await.map(|c| c.version)
    }

    /// [`Table::commit`], saying also which of the commit's files the table held already.
    pub async fn commit_files(&mut self, commit: &Commit) -> Result<Committed, TableError> {
        for _ in 0..COMMIT_ATTEMPTS {
            self.refresh().await?;
            let marks = self.check_marks(&commit.marks).await?;
            // A file the table already has is not added twice: an earlier attempt (one that
            // timed out after its log entry was written) or a predecessor committed it.
            // By its offset name: a copy rewritten in the table's types is the same file.
            let present: std::collections::HashSet<String> = self
                .record_files()?
                .iter()
                .map(|p| evolve::offset_stem(p).to_string())
                .collect();
            let (held, files): (Vec<&DataFile>, Vec<&DataFile>) = commit
                .files
                .iter()
                .partition(|f| present.contains(evolve::offset_stem(&f.path)));
            let held: Vec<String> = held.into_iter().map(|f| f.path.clone()).collect();
            if files.is_empty() && commit.schema.is_none() {
                return Ok(Committed {
                    version: self.version(),
                    held,
                });
            }
            let version = self.version() + 1;
            let current = self.schema()?;
            let target = commit.schema.clone().unwrap_or_else(|| current.clone());
            // A widened column: every file holding it in the old type is rewritten.
            let mut rewrites = Vec::new();
            if commit.schema.is_some() && changes_types(&current, &target) {
                rewrites = self.rewrite_existing(&target, version).await?;
            }
            let mut adds = Vec::with_capacity(files.len());
            for f in files {
                adds.push(match &f.schema {
                    Some(s) if evolve::needs_rewrite(s, &target) => {
                        self.conformed(f, &target, version).await?
                    }
                    _ => f.clone(),
                });
            }
            let files = adds;
            let mut actions = self.actions(&files, commit.schema.as_ref(), &marks)?;
            actions.extend(rewrites);
            let snapshot = self.table.snapshot()?.clone();
            let operation = DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: Some(self.partition_columns()?),
                predicate: None,
            };
            let result = commit_builder()
                .with_actions(actions)
                .with_app_metadata(HashMap::from([(
                    "sluice".to_string(),
                    serde_json::json!({"files": files.len()}),
                )]))
                .build(Some(&snapshot), self.table.log_store(), operation)
                .await;
            match result {
                Ok(done) => {
                    let version = done.version() as i64;
                    self.refresh().await?;
                    return Ok(Committed { version, held });
                }
                Err(DeltaTableError::Transaction {
                    source: TransactionError::CommitConflict(_),
                }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(TableError::Contended {
            path: self.path.clone(),
            attempts: COMMIT_ATTEMPTS,
        })
    }

    /// Refuses the commit when a newer claim than this writer's has committed for any of its
    /// partitions; returns the marks to write, none moving a partition's offset back (a new
    /// owner replaying after a crash commits files below what its predecessor reached).
    async fn check_marks(&self, marks: &[PartitionMark]) -> Result<Vec<PartitionMark>, TableError> {
        let mut out = Vec::with_capacity(marks.len());
        for mark in marks {
            let epoch = self.epoch(&mark.topic, mark.partition).await?;
            let next = self.next_offset(&mark.topic, mark.partition).await?;
            if epoch.is_some_and(|e| e > mark.epoch as i64) {
                return Err(TableError::Fenced {
                    path: self.path.clone(),
                    topic: mark.topic.clone(),
                    partition: mark.partition,
                    epoch: mark.epoch,
                    table_epoch: epoch,
                    table_next_offset: next,
                });
            }
            out.push(PartitionMark {
                next_offset: next.map_or(mark.next_offset, |n| n.max(mark.next_offset)),
                ..mark.clone()
            });
        }
        Ok(out)
    }

    fn actions(
        &self,
        files: &[DataFile],
        schema: Option<&ArrowSchema>,
        marks: &[PartitionMark],
    ) -> Result<Vec<Action>, TableError> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut actions = Vec::new();
        if let Some(schema) = schema {
            let grown: StructType = schema.try_into_kernel().map_err(DeltaTableError::from)?;
            let metadata: Metadata = self
                .table
                .snapshot()?
                .metadata()
                .clone()
                .with_schema(&grown)
                .map_err(DeltaTableError::from)?;
            actions.push(Action::Metadata(metadata));
        }
        for file in files {
            actions.push(Action::Add(crate::compact::add_action(
                file.path.clone(),
                file.partition_values
                    .iter()
                    .map(|(k, v)| (k.clone(), Some(v.clone())))
                    .collect(),
                file.size as i64,
                file.records,
                true,
            )));
        }
        for mark in marks {
            let (topic, partition) = (&mark.topic, mark.partition);
            actions.push(Action::Txn(Transaction::new_with_last_update(
                offset_app_id(&self.app, topic, partition),
                mark.next_offset,
                Some(now),
            )));
            actions.push(Action::Txn(Transaction::new_with_last_update(
                epoch_app_id(&self.app, topic, partition),
                mark.epoch as i64,
                Some(now),
            )));
        }
        Ok(actions)
    }
}
