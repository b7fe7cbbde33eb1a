//! Delta Lake tables in the lake: delta-rs over the lake's own storage (`store`), and one
//! table's create / grow / commit with exactly-once partition marks (`table`), and its
//! compaction and vacuum (`compact`).

mod compact;
mod data_file;
mod evolve;
mod lake_tables;
mod store;
mod table;
mod txns;

pub use compact::Compaction;
pub use deltalake_core::arrow::datatypes::{
    DataType as ArrowDataType, Field as ArrowField, Schema as ArrowSchema,
};
pub use evolve::{fits, grow_schema, needs_rewrite};
pub use lake_tables::{compact_lake, find_tables, window_end, TableMaintenance};
pub use store::LakeStore;
pub use table::{offset_app_id, Commit, Committed, DataFile, PartitionMark, Table};

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("the table path '{path}' is not usable: {detail}")]
    Path { path: String, detail: String },
    #[error("not committed to the table at '{path}': {topic}/{partition} was committed by a newer owner (this writer's claim {epoch}, the table's {table_epoch:?}, the table's next offset {table_next_offset:?})")]
    Fenced {
        path: String,
        topic: String,
        partition: i32,
        epoch: u64,
        table_epoch: Option<i64>,
        table_next_offset: Option<i64>,
    },
    #[error("not committed to the table at '{path}': {attempts} attempts lost to other writers")]
    Contended { path: String, attempts: usize },
    #[error("not committed to the table at '{path}': shutdown came before the storage answered")]
    Abandoned { path: String },
    #[error("Delta table: {0}")]
    Delta(#[from] deltalake_core::DeltaTableError),
}
