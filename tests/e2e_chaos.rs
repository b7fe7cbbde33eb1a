//! The short chaos run CI affords (the full one is `scripts/chaos`): workers killed with
//! SIGKILL, added and removed, the lake down for 10 s; nothing lost, nothing doubled.
//!
//! Before partitions were leased in the lake, about every other run of this variant found one
//! duplicate: Tansu 0.6 assigned a partition to a joining worker while another live, polling
//! worker still owned it, so both landed the same records. The lease fences the old owner.

use sluice_e2e::chaos::{run_chaos, ChaosPlan};

#[test]
fn chaos_loses_nothing_and_doubles_nothing() {
    chaos(false);
}

/// The same with Delta tables: the commit, not the file, makes records visible.
#[test]
fn chaos_with_delta_tables_loses_nothing_and_doubles_nothing() {
    chaos(true);
}

fn chaos(delta: bool) {
    let work = tempfile::tempdir().unwrap().keep();
    let plan = ChaosPlan {
        records: if delta { 20_000 } else { 30_000 },
        poison_every: 100,
        kills: 4,
        max_workers: 3,
        lake_outage: std::time::Duration::from_secs(10),
        seed: 11,
        delta,
    };
    let summary = run_chaos(&plan, &work);
    println!("{}", summary.to_json());
    assert_eq!(
        summary.duplicates,
        0,
        "{summary:?} (logs in {})",
        work.display()
    );
    assert_eq!(summary.lost, 0, "{summary:?} (logs in {})", work.display());
    assert_eq!(
        summary.dead_lettered,
        summary.poison,
        "{summary:?} (logs in {})",
        work.display()
    );
    assert_eq!(summary.unique + summary.poison, summary.produced);
    let _ = std::fs::remove_dir_all(&work);
}
