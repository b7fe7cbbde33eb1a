//! `[sink] table = "delta"`: where each signal's Delta table is (or the one table all signals
//! share), its partition columns, and the data-file path inside a table that this layout implies.

use sluice_core::{Granularity, PathTemplate, Window, OFFSET_FILE_NAME, PLACEHOLDERS};
use sluice_format::FileFormat;

use crate::file::SinkSection;
use crate::validate::Problems;

const DEFAULT_TABLE_PATH: &str = "{signal}";
const DEFAULT_COMMIT_FILES: usize = 100;
/// The partition column naming each row's signal in a table shared by several signals.
pub const SIGNAL_COLUMN: &str = "signal";

/// Which window levels are partition columns of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TablePartitioning {
    /// `date` (YYYY-MM-DD) and `hour` (HH).
    Hour,
    /// `date` only.
    Date,
    None,
}

impl TablePartitioning {
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            TablePartitioning::Hour => &["date", "hour"],
            TablePartitioning::Date => &["date"],
            TablePartitioning::None => &[],
        }
    }

    /// The partition values of files of `window`.
    pub fn values(self, window: &Window) -> Vec<(String, String)> {
        let t = window.start();
        let date = t.format("%Y-%m-%d").to_string();
        let hour = t.format("%H").to_string();
        self.columns()
            .iter()
            .map(|c| {
                (
                    c.to_string(),
                    if *c == "date" {
                        date.clone()
                    } else {
                        hour.clone()
                    },
                )
            })
            .collect()
    }
}

/// Compaction on a schedule (`sink.table_compact_every_secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionSchedule {
    pub every: std::time::Duration,
    pub target_bytes: u64,
    /// Replaced files older than this are vacuumed.
    pub retention: std::time::Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableSettings {
    /// The root of a signal's table inside the lake; `{signal}` is its only placeholder.
    /// Without it, every signal goes to one table, with a `signal` partition column.
    pub path: PathTemplate,
    pub partition_by: TablePartitioning,
    /// A commit waits for at most this many landed files.
    pub commit_files: usize,
    pub compaction: Option<CompactionSchedule>,
}

impl TableSettings {
    /// Whether all signals share one table (a `table_path` without `{signal}`).
    pub fn shared(&self) -> bool {
        !self.path.uses("signal")
    }

    /// The table's partition columns: `signal` first in a shared table, then the window's.
    pub fn partition_columns(&self) -> Vec<String> {
        let signal = self.shared().then(|| SIGNAL_COLUMN.to_string());
        signal
            .into_iter()
            .chain(self.partition_by.columns().iter().map(|c| c.to_string()))
            .collect()
    }

    /// The partition values of `signal`'s files of `window`; `signal` as in paths.
    pub fn partition_values(&self, signal: &str, window: &Window) -> Vec<(String, String)> {
        let signal = self
            .shared()
            .then(|| (SIGNAL_COLUMN.to_string(), signal.to_string()));
        signal
            .into_iter()
            .chain(self.partition_by.values(window))
            .collect()
    }

    /// The data files' path template: the table root, `signal=…/` in a shared table, one
    /// directory per window level (`date=…/hour=…` for partition columns, plain values
    /// otherwise), so a directory still holds one signal's window, then the offset-named
    /// file.
    pub fn file_path(&self, granularity: Granularity) -> String {
        let partitioned = |c: &str| self.partition_by.columns().contains(&c);
        let mut dirs = String::new();
        if self.shared() {
            dirs += "signal={signal}/";
        }
        dirs += if partitioned("date") {
            "date={YYYY}-{MM}-{dd}/"
        } else {
            "{YYYY}-{MM}-{dd}/"
        };
        if granularity == Granularity::Hour {
            dirs += if partitioned("hour") {
                "hour={hh}/"
            } else {
                "{hh}/"
            };
        }
        format!(
            "{}/{dirs}{OFFSET_FILE_NAME}",
            self.path.to_string().trim_end_matches('/')
        )
    }
}

/// The table settings of `[sink]`, `Some(None)` for plain files, `None` after a problem.
pub(crate) fn validate(
    k: &SinkSection,
    granularity: Granularity,
    format: Option<FileFormat>,
    p: &mut Problems,
) -> Option<Option<TableSettings>> {
    let Some(kind) = k.table.as_deref() else {
        for (field, set) in [
            ("sink.table_path", k.table_path.is_some()),
            ("sink.table_partition_by", k.table_partition_by.is_some()),
            ("sink.table_commit_files", k.table_commit_files.is_some()),
            (
                "sink.table_compact_every_secs",
                k.table_compact_every_secs.is_some(),
            ),
            (
                "sink.table_compact_target_mb",
                k.table_compact_target_mb.is_some(),
            ),
            (
                "sink.table_retention_hours",
                k.table_retention_hours.is_some(),
            ),
        ] {
            if set {
                p.add(
                    field,
                    "is set but sink.table is not",
                    "add table = \"delta\" to [sink], or remove it",
                );
            }
        }
        return Some(None);
    };
    let mut ok = true;
    let mut problem = |field: &str, what: String, fix: String| {
        p.add(field, what, fix);
        ok = false;
    };
    if kind != "delta" {
        problem(
            "sink.table",
            format!("'{kind}' is not a table format"),
            "use \"delta\", or remove it to write files".into(),
        );
    }
    if format.is_some_and(|f| f != FileFormat::Parquet) {
        problem(
            "sink.format",
            "is not parquet, but Delta tables hold Parquet files".into(),
            "remove sink.format (tables imply parquet)".into(),
        );
    }
    if k.path.is_some() {
        problem(
            "sink.path",
            "is set, but a table's files are placed by the table".into(),
            "remove sink.path; use sink.table_path for where tables go".into(),
        );
    }
    if k.pgp.is_some() {
        problem(
            "sink.pgp",
            "is set, but no table reader can read encrypted data files".into(),
            "remove [sink.pgp], or write files instead of a table".into(),
        );
    }
    if granularity == Granularity::Minute {
        problem(
            "window.granularity",
            "is minute, but tables are partitioned by hour or day".into(),
            "use \"hour\" or \"day\" with a table".into(),
        );
    }
    let raw = k.table_path.as_deref().unwrap_or(DEFAULT_TABLE_PATH);
    let path = match PathTemplate::parse(raw) {
        Ok(t) => {
            let others: Vec<String> = PLACEHOLDERS
                .iter()
                .filter(|f| **f != "signal" && t.uses(f))
                .map(|f| format!("{{{f}}}"))
                .collect();
            if raw.trim_matches('/').is_empty() || !others.is_empty() || raw.starts_with('_') {
                problem("sink.table_path", format!("'{raw}' must name a table per signal ({{signal}}) or one shared table, with literal directories only, not starting with '_'"), "use e.g. \"{signal}\", \"tables/{signal}\" or \"tables/events\"".into());
                None
            } else {
                Some(t)
            }
        }
        Err(e) => {
            problem(
                "sink.table_path",
                format!("'{raw}': {e}"),
                "use e.g. \"tables/{signal}\"".into(),
            );
            None
        }
    };
    let default_partitioning = match granularity {
        Granularity::Day => "date",
        _ => "hour",
    };
    let partition_by = match k
        .table_partition_by
        .as_deref()
        .unwrap_or(default_partitioning)
    {
        "hour" if granularity == Granularity::Day => {
            problem(
                "sink.table_partition_by",
                "is hour, but windows are days".into(),
                "use \"date\" or \"none\"".into(),
            );
            None
        }
        "hour" => Some(TablePartitioning::Hour),
        "date" => Some(TablePartitioning::Date),
        "none" => Some(TablePartitioning::None),
        other => {
            problem(
                "sink.table_partition_by",
                format!("'{other}' is not a partitioning"),
                "use \"hour\", \"date\" or \"none\"".into(),
            );
            None
        }
    };
    let commit_files = match k.table_commit_files {
        Some(0) => {
            problem(
                "sink.table_commit_files",
                "is 0".into(),
                format!(
                    "use a positive number, or remove it for the default {DEFAULT_COMMIT_FILES}"
                ),
            );
            None
        }
        n => Some(n.unwrap_or(DEFAULT_COMMIT_FILES)),
    };
    let compaction = match k.table_compact_every_secs {
        Some(0) => {
            problem(
                "sink.table_compact_every_secs",
                "is 0".into(),
                "use a number of seconds (e.g. 3600), or remove it to compact with `sluice compact`".into(),
            );
            None
        }
        None if k.table_compact_target_mb.is_some() || k.table_retention_hours.is_some() => {
            problem(
                "sink.table_compact_every_secs",
                "is not set, but a compaction target or retention is".into(),
                "set it (e.g. 3600) to compact on a schedule, or remove the other settings".into(),
            );
            None
        }
        None => Some(None),
        Some(_) if k.table_compact_target_mb == Some(0) => {
            problem(
                "sink.table_compact_target_mb",
                "is 0".into(),
                "use a size in MB (default 128)".into(),
            );
            None
        }
        Some(secs) => Some(Some(CompactionSchedule {
            every: std::time::Duration::from_secs(secs),
            target_bytes: k.table_compact_target_mb.unwrap_or(128) << 20,
            retention: std::time::Duration::from_secs(
                k.table_retention_hours.unwrap_or(168) * 3600,
            ),
        })),
    };
    match (ok, path, partition_by, commit_files, compaction) {
        (true, Some(path), Some(partition_by), Some(commit_files), Some(compaction)) => {
            Some(Some(TableSettings {
                path,
                partition_by,
                commit_files,
                compaction,
            }))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = r#"
name = "t"
[source]
bootstrap_servers = "127.0.0.1:9092"
topics = ["signals"]
group_id = "g"
[route]
signal_field = "signal"
[window]
time = "ingestion"
granularity = "hour"
[sink]
url = "/tmp/lake"
table = "delta"
"#;

    fn fields(text: &str) -> Vec<String> {
        crate::parse(text, &|_| None)
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_table_implies_parquet_one_table_per_signal_and_window_partitions() {
        let v = crate::parse(TABLE, &|_| None).unwrap();
        let t = v.sink.table.clone().unwrap();
        assert_eq!(v.sink.encoding.options.format, FileFormat::Parquet);
        assert_eq!(t.partition_by, TablePartitioning::Hour);
        assert_eq!(t.commit_files, 100);
        assert_eq!(
            v.sink.path.to_string(),
            "{signal}/date={YYYY}-{MM}-{dd}/hour={hh}/{topic}-{partition}-{first_offset}-{last_offset}.{ext}"
        );
        let window = Window::containing(1_764_590_400_000, Granularity::Hour);
        assert_eq!(
            t.partition_by.values(&window),
            [
                ("date".to_string(), "2025-12-01".to_string()),
                ("hour".into(), "12".into())
            ]
        );

        let daily = TABLE.replace("\"hour\"", "\"day\"") + "table_path = \"tables/{signal}\"\n";
        let v = crate::parse(&daily, &|_| None).unwrap();
        assert_eq!(v.sink.table.unwrap().partition_by, TablePartitioning::Date);
        assert_eq!(
            v.sink.path.to_string(),
            "tables/{signal}/date={YYYY}-{MM}-{dd}/{topic}-{partition}-{first_offset}-{last_offset}.{ext}"
        );
        let unpartitioned = TABLE.to_string() + "table_partition_by = \"none\"\n";
        let v = crate::parse(&unpartitioned, &|_| None).unwrap();
        assert_eq!(
            v.sink.path.to_string(),
            "{signal}/{YYYY}-{MM}-{dd}/{hh}/{topic}-{partition}-{first_offset}-{last_offset}.{ext}"
        );
    }

    #[test]
    fn a_table_path_without_a_signal_is_one_table_partitioned_by_signal() {
        let shared = TABLE.to_string() + "table_path = \"tables/events\"\n";
        let v = crate::parse(&shared, &|_| None).unwrap();
        let t = v.sink.table.clone().unwrap();
        assert!(t.shared());
        assert_eq!(t.partition_columns(), ["signal", "date", "hour"]);
        // Each directory still holds one signal's window.
        assert_eq!(
            v.sink.path.to_string(),
            "tables/events/signal={signal}/date={YYYY}-{MM}-{dd}/hour={hh}/{topic}-{partition}-{first_offset}-{last_offset}.{ext}"
        );
        let window = Window::containing(1_764_590_400_000, Granularity::Hour);
        assert_eq!(
            t.partition_values("engine.rpm", &window),
            [
                ("signal".to_string(), "engine.rpm".to_string()),
                ("date".into(), "2025-12-01".into()),
                ("hour".into(), "12".into())
            ]
        );
        let per_signal = crate::parse(TABLE, &|_| None).unwrap().sink.table.unwrap();
        assert!(!per_signal.shared());
        assert_eq!(per_signal.partition_columns(), ["date", "hour"]);
        assert_eq!(
            fields(&(TABLE.to_string() + "table_path = \"/\"\n")),
            ["sink.table_path"]
        );
    }

    #[test]
    fn what_a_table_cannot_hold_fails_at_start_naming_the_field() {
        let bad = TABLE.replace("table = \"delta\"", "table = \"iceberg\"");
        assert_eq!(fields(&bad), ["sink.table"]);
        assert_eq!(
            fields(&(TABLE.to_string() + "format = \"csv\"\n")),
            ["sink.format"]
        );
        assert_eq!(
            fields(&(TABLE.to_string() + "path = \"{signal}/x\"\n")),
            ["sink.path"]
        );
        assert_eq!(
            fields(&TABLE.replace("\"hour\"", "\"minute\"")),
            ["window.granularity"]
        );
        assert_eq!(
            fields(&(TABLE.to_string() + "table_path = \"tables/{topic}\"\n")),
            ["sink.table_path"]
        );
        assert_eq!(
            fields(&(TABLE.to_string() + "table_path = \"_x/{signal}\"\n")),
            ["sink.table_path"]
        );
        assert_eq!(
            fields(&(TABLE.replace("\"hour\"", "\"day\"") + "table_partition_by = \"hour\"\n")),
            ["sink.table_partition_by"]
        );
        assert_eq!(
            fields(&(TABLE.to_string() + "table_compact_every_secs = 0\n")),
            ["sink.table_compact_every_secs"]
        );
        assert_eq!(
            fields(&(TABLE.to_string() + "table_retention_hours = 24\n")),
            ["sink.table_compact_every_secs"]
        );
        let scheduled =
            TABLE.to_string() + "table_compact_every_secs = 600\ntable_retention_hours = 2\n";
        let schedule = crate::parse(&scheduled, &|_| None)
            .unwrap()
            .sink
            .table
            .unwrap()
            .compaction
            .unwrap();
        assert_eq!(schedule.every, std::time::Duration::from_secs(600));
        assert_eq!(schedule.target_bytes, 128 << 20);
        assert_eq!(schedule.retention, std::time::Duration::from_secs(7200));
        assert_eq!(
            fields(&(TABLE.to_string() + "table_commit_files = 0\n")),
            ["sink.table_commit_files"]
        );
        let files = TABLE.replace("table = \"delta\"", "table_path = \"{signal}\"");
        assert_eq!(fields(&files), ["sink.table_path"]);
    }
}
