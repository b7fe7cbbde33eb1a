//! What an audit found, per partition and per file: as JSON (`--json`) or as text.

use std::fmt;

#[derive(Debug, Default, serde::Serialize)]
pub struct PartitionReport {
    pub topic: String,
    pub partition: i32,
    /// The audited offsets, `[from, to)`.
    pub from: i64,
    pub to: i64,
    pub records: u64,
    pub once: u64,
    pub missing: u64,
    pub duplicated: u64,
    /// Not exported by the pipeline's signal filter, and in no file.
    pub filtered: u64,
    /// Of the records found, those in the dead letters.
    pub dead_lettered: u64,
    pub missing_offsets: Vec<(i64, i64)>,
    pub duplicates: Vec<Duplicate>,
}

#[derive(Debug, serde::Serialize)]
pub struct Duplicate {
    pub records: u64,
    pub offsets: Vec<(i64, i64)>,
    pub paths: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct Unexplained {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, serde::Serialize)]
pub struct RowMismatch {
    pub path: String,
    pub rows: u64,
    /// Records its name and directory claim.
    pub claimed: u64,
    /// Of those, the records no other file or dead letter can hold.
    pub only_here: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub partitions: Vec<PartitionReport>,
    pub unexplained_files: Vec<Unexplained>,
    pub row_mismatches: Vec<RowMismatch>,
    pub files_checked: u64,
    /// Files `--repair` removed.
    pub repaired: Vec<String>,
}

impl Report {
    /// Every record once, every file explained.
    pub fn clean(&self) -> bool {
        self.partitions
            .iter()
            .all(|p| p.missing == 0 && p.duplicated == 0)
            && self.unexplained_files.is_empty()
            && self.row_mismatches.is_empty()
    }
}

/// At most this many ranges or files per list in the text output (JSON has them all).
const SHOWN: usize = 10;

fn ranges(r: &[(i64, i64)]) -> String {
    let mut s: Vec<String> = r
        .iter()
        .take(SHOWN)
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    if r.len() > SHOWN {
        s.push(format!("… {} more ranges", r.len() - SHOWN));
    }
    s.join(", ")
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.partitions {
            writeln!(
                f,
                "{}/{} offsets {}..{}: {} records, {} once ({} in dead letters), {} missing, {} duplicated, {} filtered out",
                p.topic, p.partition, p.from, p.to, p.records, p.once, p.dead_lettered,
                p.missing, p.duplicated, p.filtered
            )?;
            if p.missing > 0 {
                writeln!(f, "  missing: {}", ranges(&p.missing_offsets))?;
            }
            for d in p.duplicates.iter().take(SHOWN) {
                writeln!(
                    f,
                    "  {} records in {} places: offsets {} in {}",
                    d.records,
                    d.paths.len(),
                    ranges(&d.offsets),
                    d.paths.join(", ")
                )?;
            }
        }
        for u in self.unexplained_files.iter().take(SHOWN) {
            writeln!(f, "unexplained file {}: {}", u.path, u.reason)?;
        }
        for m in self.row_mismatches.iter().take(SHOWN) {
            writeln!(
                f,
                "file {} has {} rows; its name claims {}, of which {} can be nowhere else",
                m.path, m.rows, m.claimed, m.only_here
            )?;
        }
        for r in &self.repaired {
            writeln!(
                f,
                "removed {r}: every record in it is also in a file that landed before it"
            )?;
        }
        let (missing, duplicated): (u64, u64) = self
            .partitions
            .iter()
            .fold((0, 0), |(m, d), p| (m + p.missing, d + p.duplicated));
        writeln!(
            f,
            "{}: {} files checked, {missing} missing, {duplicated} duplicated, {} unexplained files, {} row-count mismatches",
            if self.clean() { "clean" } else { "NOT CLEAN" },
            self.files_checked,
            self.unexplained_files.len(),
            self.row_mismatches.len()
        )
    }
}
