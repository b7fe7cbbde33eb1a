//! `sluice-memory`: peak RSS of a `sluice run` worker draining a backlog, for a small and a
//! ten times larger one, with the same memory budget. Prints JSON; see scripts/memory.

use std::process::{Command, Stdio};
use std::time::Duration;

use sluice_e2e::{
    end_offsets, fully_committed, hourly_tansu_pipeline, number_arg, sluice_bin, wait_for,
};
use sluice_testkit::sample::{generate, outgoing, SampleSpec};
use sluice_testkit::services::Tansu;

/// Peak resident set size of a process, from /proc (VmHWM).
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb * 1024
}

/// Drains `records` sample signals with one worker; returns its peak RSS.
/// `sluice_source_records_consumed_total` from the worker's /metrics.
fn consumed(port: u16) -> Option<u64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find(|l| l.starts_with("sluice_source_records_consumed_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Drains `records` sample signals with one worker; returns its peak RSS, the records it
/// consumed and whether it committed to the end.
///
/// Tansu 0.6 skips the rest of a record batch when a consumer resumes inside it (after a
/// backpressure pause, say), and a partition whose last batch was cut that way never reaches
/// its end. So the drain also ends when the worker has consumed nothing new for 20 s; the
/// output says how many records it saw.
fn drain(records: usize, budget: u64, sink: &str) -> (u64, u64, bool) {
    let tansu = Tansu::start();
    tansu.create_topic("memory", 4);
    let batch = outgoing(&generate(&SampleSpec::new(records, 4, 6)));
    for chunk in batch.chunks(200_000) {
        sluice_testkit::produce(&tansu.bootstrap, "memory", chunk).unwrap();
    }
    let ends = end_offsets(&batch);
    drop(batch);
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("memory.toml");
    let lake = dir.path().join("lake");
    let extra = format!("{sink}\n[flush]\nmax_buffered_bytes = {budget}\nmax_age_secs = 5");
    let text = hourly_tansu_pipeline(&tansu.bootstrap, "memory", "memory", &lake, &extra);
    std::fs::write(&pipeline, text).unwrap();
    let port = sluice_testkit::services::free_port();
    let mut worker = Command::new(sluice_bin())
        .args(["run", "--listen", &format!("127.0.0.1:{port}")])
        .arg(&pipeline)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let bootstrap = tansu.bootstrap.clone();
    let (mut last, mut since) = (0u64, std::time::Instant::now());
    let mut complete = false;
    wait_for(
        "the worker to drain the backlog",
        Duration::from_secs(3600),
        || {
            if fully_committed(&bootstrap, "memory", "memory", &ends) {
                complete = true;
                return true;
            }
            let now = consumed(port).unwrap_or(last);
            if now != last {
                (last, since) = (now, std::time::Instant::now());
            }
            last > 0 && since.elapsed() > Duration::from_secs(20)
        },
    );
    let seen = consumed(port).unwrap_or(last);
    let peak = peak_rss_bytes(worker.id());
    let _ = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status();
    let _ = worker.wait();
    (peak, seen, complete)
}

fn main() {
    let small = number_arg("--records", 1_000_000) as usize;
    let budget = number_arg("--budget-bytes", 32 * 1024 * 1024);
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_string())
    };
    let sink = format!(
        "format = \"{}\"\ncompression = \"{}\"",
        arg("--format", "ndjson"),
        arg("--compression", "gzip")
    );
    let (rss_small, seen_small, complete_small) = drain(small, budget, &sink);
    let (rss_large, seen_large, complete_large) = drain(small * 10, budget, &sink);
    println!(
        r#"{{"records_small": {small}, "records_large": {}, "budget_bytes": {budget}, "rss_small_bytes": {rss_small}, "rss_large_bytes": {rss_large}, "ratio": {:.3}, "consumed_small": {seen_small}, "consumed_large": {seen_large}, "complete_small": {complete_small}, "complete_large": {complete_large}}}"#,
        small * 10,
        rss_large as f64 / rss_small as f64
    );
}
