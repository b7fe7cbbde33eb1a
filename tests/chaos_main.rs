//! `sluice-chaos`: the full chaos run, printing its summary as JSON (see scripts/chaos).

use std::time::Duration;

use sluice_e2e::chaos::{run_chaos, ChaosPlan};
use sluice_e2e::number_arg;

fn main() {
    let plan = ChaosPlan {
        records: number_arg("--records", 300_000) as usize,
        poison_every: number_arg("--poison-every", 100) as usize,
        kills: number_arg("--kills", 12) as usize,
        max_workers: number_arg("--max-workers", 3) as usize,
        lake_outage: Duration::from_secs(number_arg("--lake-outage-secs", 35)),
        seed: number_arg("--seed", 1),
        delta: std::env::args().any(|a| a == "--delta"),
    };
    let work = tempfile::tempdir().unwrap().keep();
    eprintln!("chaos: {plan:?}; worker logs in {}", work.display());
    let summary = run_chaos(&plan, &work);
    println!("{}", summary.to_json());
    let ok =
        summary.duplicates == 0 && summary.lost == 0 && summary.dead_lettered == summary.poison;
    std::process::exit(if ok { 0 } else { 1 });
}
