//! `sluice-chaos`: the full chaos run, printing its summary as JSON (see scripts/chaos).

use std::time::Duration;

use sluice_e2e::chaos::{run_chaos, ChaosPlan};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

fn main() {
    let plan = ChaosPlan {
        records: arg("--records", 300_000) as usize,
        poison_every: arg("--poison-every", 100) as usize,
        kills: arg("--kills", 12) as usize,
        max_workers: arg("--max-workers", 3) as usize,
        lake_outage: Duration::from_secs(arg("--lake-outage-secs", 35)),
        seed: arg("--seed", 1),
    };
    let work = tempfile::tempdir().unwrap().keep();
    eprintln!("chaos: {plan:?}; worker logs in {}", work.display());
    let summary = run_chaos(&plan, &work);
    println!("{}", summary.to_json());
    let ok =
        summary.duplicates == 0 && summary.lost == 0 && summary.dead_lettered == summary.poison;
    std::process::exit(if ok { 0 } else { 1 });
}
