//! The one bound of exactly-once for plain files (README, "A paused owner"), shown and
//! repaired: a worker frozen (SIGSTOP) between its lease check and its write, its partition
//! taken over meanwhile, and woken afterwards lands one file that overlaps the new owner's.
//! Nothing is lost; `sluice audit` names both files, `--repair` removes the late copy, and
//! the lake holds every record once.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use sluice_testkit::lake_files::{paths_by_seq, read_ndjson_tree};
use sluice_testkit::sample::{generate, outgoing, SampleSpec};
use sluice_testkit::services::MockKafka;

/// A worker process, killed if the test fails before it ends it.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(pipeline: &Path, log: &Path, pause_first_write_ms: Option<u64>) -> Worker {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(["run", "--listen", "127.0.0.1:0"])
        .arg(pipeline)
        .env("RUST_LOG", "info,librdkafka=warn")
        .stderr(std::fs::File::create(log).unwrap());
    if let Some(ms) = pause_first_write_ms {
        cmd.env("SLUICE_FAULT_PAUSE_BEFORE_FIRST_WRITE_MS", ms.to_string());
    }
    Worker(cmd.spawn().unwrap())
}

fn signal(w: &Worker, sig: i32) {
    // SAFETY: kill(2) on a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(w.0.id() as i32, sig) }, 0);
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn audit(pipeline: &Path, repair: bool) -> (i32, serde_json::Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(["audit", "--json"]);
    if repair {
        cmd.arg("--repair");
    }
    let out = cmd.arg(pipeline).output().unwrap();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), report)
}

/// What the scenario leaves: the kept directory, the lake, the pipeline file, the samples and
/// the path of the file the paused worker landed after the takeover.
struct Aftermath {
    dir: std::path::PathBuf,
    lake: std::path::PathBuf,
    pipeline: std::path::PathBuf,
    samples: Vec<sluice_testkit::sample::SampleRecord>,
    zombie_path: String,
    /// Still serving: the audit re-reads the topic.
    _kafka: MockKafka,
}

/// Worker A checks its lease and stalls before its first write, frozen right there (SIGSTOP);
/// B takes the partition over and lands (and commits) every record; A is woken and lands
/// the file it had checked its lease for; both are stopped.
fn paused_owner_lands_late(table: bool) -> Aftermath {
    let kafka = MockKafka::start(1);
    kafka.create_topic("signals", 1);
    let samples = generate(&SampleSpec::new(1_000, 1, 1));
    let records = outgoing(&samples);
    let (early, late) = records.split_at(600);
    sluice_testkit::produce(&kafka.bootstrap, "signals", early).unwrap();

    // Kept on failure so the workers' logs can be read.
    let dir = tempfile::tempdir().unwrap().keep();
    let lake = dir.join("lake");
    let pipeline = dir.join("paused.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
name = "paused"
[source]
bootstrap_servers = "{}"
topics = ["signals"]
group_id = "paused"
properties = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}
[window]
time = "event"
event_time_field = "timestamp"
granularity = "hour"
[sink]
url = "{}"
write_timeout_secs = 1
{table}
[flush]
max_age_secs = 1
max_bytes = 1048576
"#,
            kafka.bootstrap,
            lake.display(),
            table = if table { "table = \"delta\"" } else { "" },
        ),
    )
    .unwrap();

    let log_a = dir.join("a.log");
    let a = worker(&pipeline, &log_a, Some(4_000));
    let mut zombie_path = String::new();
    wait_until(
        "A to reach its first write",
        Duration::from_secs(60),
        || {
            let log = std::fs::read_to_string(&log_a).unwrap_or_default();
            // Whole lines only: the worker may be writing the last one.
            let mut lines = log.split_inclusive('\n').filter(|l| l.ends_with('\n'));
            match lines.find(|l| l.contains("fault injection")) {
                Some(line) => {
                    // The event's own field (`path="…"`), not its span's.
                    zombie_path = line
                        .split("path=\"")
                        .nth(1)
                        .and_then(|p| p.split('"').next())
                        .unwrap_or_else(|| panic!("no path in {line}"))
                        .to_string();
                    true
                }
                None => false,
            }
        },
    );
    signal(&a, libc::SIGSTOP);

    // B takes the partition over (A's session ends), waits out the grace and lands all.
    sluice_testkit::produce(&kafka.bootstrap, "signals", late).unwrap();
    let b = worker(&pipeline, &dir.join("b.log"), None);
    wait_until("B to commit every record", Duration::from_secs(120), || {
        sluice_kafka::group_progress(
            &kafka.bootstrap,
            "paused",
            "signals",
            Duration::from_secs(5),
        )
        .is_ok_and(|g| g.get(&0).is_some_and(|(c, _)| *c == Some(1_000)))
    });
    assert!(
        !lake.join(&zombie_path).exists(),
        "B wrote the very file A was about to write: no overlap"
    );

    // A wakes and lands the file it had checked its lease for.
    signal(&a, libc::SIGCONT);
    wait_until(
        &format!("A's late file (logs in {})", dir.display()),
        Duration::from_secs(30),
        || lake.join(&zombie_path).exists(),
    );
    for mut w in [a, b] {
        signal(&w, libc::SIGTERM);
        w.0.wait().unwrap();
    }
    Aftermath {
        dir,
        lake,
        pipeline,
        samples,
        zombie_path,
        _kafka: kafka,
    }
}

#[test]
fn a_file_a_paused_owner_lands_after_a_takeover_is_found_and_repaired_by_the_audit() {
    let Aftermath {
        dir,
        lake,
        pipeline,
        samples,
        zombie_path,
        _kafka,
    } = paused_owner_lands_late(false);
    let found = paths_by_seq(&read_ndjson_tree(&lake));
    assert!(
        samples.iter().all(|s| found.contains_key(&s.id)),
        "a record was lost"
    );
    let doubled = samples.iter().filter(|s| found[&s.id].len() > 1).count();
    assert!(doubled > 0, "A's late file doubled nothing");

    let (code, report) = audit(&pipeline, false);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        report["partitions"][0]["duplicated"], doubled as u64,
        "{report:#}"
    );
    assert_eq!(report["partitions"][0]["missing"], 0, "{report:#}");
    let (code, repaired) = audit(&pipeline, true);
    assert_eq!(code, 0, "{repaired:#}");
    // A lands every file it had past its lease check when it froze: the one the fault hook
    // held, and any other landing in flight at that moment (a second one was seen once the
    // intake took batches). The repair removes those copies and nothing else: below, every
    // record is still there once.
    let removed = repaired["repaired"].as_array().cloned().unwrap_or_default();
    assert!(
        removed.contains(&serde_json::json!(zombie_path)),
        "{repaired:#}"
    );
    let found = paths_by_seq(&read_ndjson_tree(&lake));
    for s in &samples {
        assert_eq!(found[&s.id].len(), 1, "record {} after the repair", s.id);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// With a Delta table the same pause doubles nothing: A's late file is not in the table
/// until a commit names it, and A's commit loses to B's newer claim.
#[test]
fn a_paused_owners_late_file_never_joins_the_table() {
    let after = paused_owner_lands_late(true);
    let tables: Vec<std::path::PathBuf> = std::fs::read_dir(&after.lake)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("_delta_log").is_dir())
        .collect();
    assert!(!tables.is_empty());
    let read = sluice_testkit::lake_files::read_delta_rows(&tables, "seq", &["paused:signals:0"]);
    let mut ids: Vec<u64> = Vec::new();
    for table in &tables {
        let t = &read[table.to_string_lossy().as_ref()];
        ids.extend(
            t["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap()),
        );
        // Each table's mark is the offset after its signal's last record (one partition:
        // offsets are the samples' order).
        let signal = table.file_name().unwrap().to_string_lossy().to_string();
        let last = after
            .samples
            .iter()
            .rposition(|s| s.signal == signal)
            .unwrap();
        assert_eq!(t["txn"]["paused:signals:0"], last as u64 + 1, "{signal}");
    }
    ids.sort();
    let expected: Vec<u64> = after.samples.iter().map(|s| s.id).collect();
    assert_eq!(ids, expected, "every record once in the tables");
    // The late file is in the lake, outside every table.
    assert!(after.lake.join(&after.zombie_path).exists());
    let _ = std::fs::remove_dir_all(&after.dir);
}
