//! The table commands: `sluice compact` and `sluice inspect` of a Delta table.

use std::path::Path;
use std::process::ExitCode;

/// Compacts the closed partitions of every table in the pipeline's lake and vacuums what
/// compaction replaced more than `retention_hours` ago; prints one JSON line per table.
pub async fn compact(path: &Path, target_mb: u64, retention_hours: i64) -> ExitCode {
    let Some(p) = crate::load_pipeline(path) else {
        return ExitCode::from(2);
    };
    let lake = match sluice_lake::Lake::open(&p.sink.destination).await {
        Ok(lake) => lake,
        Err(e) => {
            eprintln!("sluice compact: cannot open the lake: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A window is closed once late records can no longer join it.
    let closed_before = chrono::Utc::now()
        - chrono::Duration::from_std(p.window.allowed_lateness).unwrap_or_default();
    let done = sluice_delta::compact_lake(
        &lake,
        &p.name,
        target_mb << 20,
        closed_before,
        chrono::Duration::hours(retention_hours),
    )
    .await;
    match done {
        Ok(tables) => {
            for t in tables {
                println!(
                    "{}",
                    serde_json::json!({
                        "table": t.table,
                        "version": t.compaction.version,
                        "files_removed": t.compaction.files_removed,
                        "files_added": t.compaction.files_added,
                        "records": t.compaction.records,
                        "vacuumed": t.vacuumed,
                    })
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice compact: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The summary of the table at `table` in `lake`, when there is one there.
pub async fn inspect(
    lake: &sluice_lake::Lake,
    p: &sluice_config::ValidatedPipeline,
    table: &str,
) -> Option<Result<String, String>> {
    let table = table.trim_end_matches('/');
    match sluice_delta::Table::open(lake, table, &p.name).await {
        Ok(None) => None,
        Ok(Some(t)) => Some(
            t.summary()
                .await
                .map(|s| serde_json::to_string_pretty(&s).unwrap_or_default() + "\n")
                .map_err(|e| format!("{table}: {e}")),
        ),
        Err(e) => Some(Err(format!("{table}: {e}"))),
    }
}
