//! The tables of a lake as a whole: finding them, compacting and vacuuming each (what
//! `sluice compact` runs), and describing one (what `sluice inspect` prints for a table).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;
use sluice_lake::Lake;

use crate::{Compaction, Table, TableError};

/// How deep below the lake root a table may be (`tables/_late/<signal>` is 3).
const MAX_TABLE_DEPTH: usize = 4;

/// Every Delta table in the lake: a directory that holds a `_delta_log/`. Sluice's own
/// bookkeeping and the dead letters are not searched, nor the inside of a table.
pub async fn find_tables(lake: &Lake) -> Result<Vec<String>, TableError> {
    let mut tables = Vec::new();
    let mut level = vec![String::new()];
    for _ in 0..MAX_TABLE_DEPTH {
        let mut next = Vec::new();
        for dir in level {
            let listing = lake.list_objects(&dir, false).await.map_err(lake_error)?;
            if listing.directories.contains(&format!("{dir}_delta_log/")) {
                tables.push(dir.trim_end_matches('/').to_string());
                continue;
            }
            next.extend(listing.directories.into_iter().filter(|d| {
                let name = d
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or_default();
                !matches!(
                    name,
                    "_dead_letter" | "_leases" | "_progress" | "_sluice_probe"
                ) && !name.starts_with('.')
                    && !name.contains('=')
            }));
        }
        level = next;
    }
    tables.sort();
    Ok(tables)
}

fn lake_error(e: sluice_lake::LakeError) -> TableError {
    TableError::Path {
        path: "(lake)".into(),
        detail: e.to_string(),
    }
}

/// When the window of a file with these partition values ends: `date` (and `hour`), or
/// `None` for a table without window partitions.
pub fn window_end(
    values: &std::collections::HashMap<String, Option<String>>,
) -> Option<DateTime<Utc>> {
    let date = values.get("date")?.as_deref()?;
    let day = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let start = day.and_hms_opt(0, 0, 0)?.and_utc();
    match values.get("hour").and_then(|h| h.as_deref()) {
        Some(hour) => Some(start + chrono::Duration::hours(hour.parse::<i64>().ok()? + 1)),
        None => Some(start + chrono::Duration::days(1)),
    }
}

/// What `compact_lake` did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMaintenance {
    pub table: String,
    pub compaction: Compaction,
    pub vacuumed: usize,
}

/// Compacts every table's closed partitions (whose window ended before `closed_before`; all
/// of a table without window partitions) into files of about `target_size`, then vacuums
/// what the tables dropped more than `retention` ago.
pub async fn compact_lake(
    lake: &Lake,
    app: &str,
    target_size: u64,
    closed_before: DateTime<Utc>,
    retention: chrono::Duration,
) -> Result<Vec<TableMaintenance>, TableError> {
    let mut done = Vec::new();
    for path in find_tables(lake).await? {
        let Some(mut table) = Table::open(lake, &path, app).await? else {
            continue;
        };
        let compaction = table
            .compact(target_size, |values| {
                window_end(values).is_none_or(|end| end <= closed_before)
            })
            .await?;
        let vacuumed = table.vacuum(retention).await?.len();
        done.push(TableMaintenance {
            table: path,
            compaction,
            vacuumed,
        });
    }
    Ok(done)
}

impl Table {
    /// The table as `sluice inspect` shows it: version, schema, partition columns, files and
    /// rows (in all and per partition), and the marks of each Kafka partition written to it.
    pub async fn summary(&self) -> Result<serde_json::Value, TableError> {
        let snapshot = self.table.snapshot()?;
        let mut partitions: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let (mut files, mut rows) = (0u64, 0u64);
        for file in snapshot.log_data().iter() {
            let records = file.num_records().unwrap_or(0) as u64;
            let mut values: Vec<_> = file.partition_values_map().into_iter().collect();
            values.sort();
            let key = values
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("/");
            let e = partitions.entry(key).or_default();
            e.0 += 1;
            e.1 += records;
            files += 1;
            rows += records;
        }
        // Marks are `<app>:<topic>:<partition>` (next offset) and `…:epoch`.
        let txns = self.txns().await?;
        let mut marks = Vec::new();
        for (app_id, next) in &txns {
            let Some(rest) = app_id.strip_prefix(&format!("{}:", self.app())) else {
                continue;
            };
            let Some((topic, partition)) = rest.rsplit_once(':') else {
                continue;
            };
            let (Ok(partition), false) = (partition.parse::<i32>(), partition == "epoch") else {
                continue;
            };
            marks.push(json!({
                "topic": topic,
                "partition": partition,
                "next_offset": next,
                "epoch": txns.get(&format!("{app_id}:epoch")),
            }));
        }
        let schema = self.schema()?;
        Ok(json!({
            "table": self.path(),
            "version": self.version(),
            "schema": schema.fields().iter().map(|f| json!({"name": f.name(), "type": f.data_type().to_string()})).collect::<Vec<_>>(),
            "partition_columns": self.partition_columns()?,
            "files": files,
            "rows": rows,
            "partitions": partitions.into_iter().map(|(k, (f, r))| json!({"partition": k, "files": f, "rows": r})).collect::<Vec<_>>(),
            "marks": marks,
        }))
    }
}
