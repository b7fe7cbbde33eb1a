//! `sluice-bench`: throughput and memory of Sluice against the bare-consume ceiling and a
//! Python baseline, on one machine in one run. See scripts/bench and BENCHMARKS.md.
//!
//! The orchestrator preloads Tansu, then runs every measurement in a fresh subprocess
//! (`sluice-bench one --mode M ...`) so CPU seconds and peak RSS belong to that run alone.
//! Each subprocess times from its first consumed record to the end of its work (for Sluice:
//! every file landed and the offsets committed), so the consumer-group join is excluded.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{json, Value};
use sluice_e2e::{hourly_tansu_pipeline, number_arg, sluice_bin};
use sluice_testkit::sample::{generate, outgoing, SampleSpec};
use sluice_testkit::services::{free_port, workspace_root, Tansu};

const TOPIC: &str = "bench";
const PARTITIONS: i32 = 4;
const SIGNALS: [&str; 10] = [
    "engine.temperature",
    "cabin.humidity",
    "battery.voltage",
    "gps.position",
    "door.opened",
    "tire.pressure",
    "fuel.level",
    "vehicle.speed",
    "brake.wear",
    "cabin.co2",
];
/// One Sluice run of the benchmark: its name in results.json, its `[sink]` settings, and
/// whether window markers are on (leases always are).
struct SluiceRun {
    name: &'static str,
    sink: &'static str,
    markers: bool,
}

const fn sluice_run(name: &'static str, sink: &'static str, markers: bool) -> SluiceRun {
    SluiceRun {
        name,
        sink,
        markers,
    }
}

const SLUICE_RUNS: [SluiceRun; 6] = [
    sluice_run(
        "ndjson-gzip",
        "format = \"ndjson\"\ncompression = \"gzip\"",
        false,
    ),
    // What the level costs: gzip's fastest level against its default (6) above.
    sluice_run(
        "ndjson-gzip-level1",
        "format = \"ndjson\"\ncompression = \"gzip\"\ncompression_level = 1",
        false,
    ),
    sluice_run(
        "avro-deflate",
        "format = \"avro\"\ncompression = \"deflate\"",
        false,
    ),
    sluice_run(
        "parquet-zstd",
        "format = \"parquet\"\ncompression = \"zstd\"",
        false,
    ),
    // The same files with window markers on: progress rounds and _SUCCESS markers.
    sluice_run(
        "parquet-zstd-markers",
        "format = \"parquet\"\ncompression = \"zstd\"",
        true,
    ),
    // The same Parquet files, committed to one Delta table per signal.
    sluice_run(
        "delta-parquet-zstd",
        "table = \"delta\"\ncompression = \"zstd\"",
        false,
    ),
];

fn string_arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// CPU seconds (user + system) this process has used so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which may hold spaces) start at index 2.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ is 100 on Linux
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn peak_rss_bytes() -> u64 {
    status_kb("VmHWM:") * 1024
}

fn spec(records: usize) -> SampleSpec {
    let mut spec = SampleSpec::new(records, PARTITIONS, 6);
    spec.signals = SIGNALS.iter().map(|s| s.to_string()).collect();
    // The samples are ~190 bytes; the note brings them to ~250.
    spec.note_bytes = 58;
    spec
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("one") => one(),
        Some("fold-memory") => fold_memory(),
        Some("pgp-memory") => pgp_memory(),
        Some("serve") => {
            // For profiling one run by hand: preload every topic, print the bootstrap
            // address, keep going.
            let records = number_arg("--records", 1_000_000);
            let (tansu, _, _) = preload(records);
            for shape in &SHAPES {
                preload_topic(&tansu, shape.topic, records / shape.share, &shape.spec());
            }
            println!("{}", tansu.bootstrap);
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        _ => orchestrate(),
    }
}

/// One measurement, printed as one JSON line.
fn one() {
    let mode = string_arg("--mode").expect("--mode");
    let bootstrap = string_arg("--bootstrap").expect("--bootstrap");
    let group = string_arg("--group").expect("--group");
    let records = number_arg("--records", 1_000_000);
    let lake = std::path::PathBuf::from(string_arg("--lake").expect("--lake"));
    let topic = string_arg("--topic").unwrap_or_else(|| TOPIC.to_string());
    let (secs, cpu_s, rss, consumed, commits) = if mode == "ceiling" {
        let (secs, cpu_s, consumed) = ceiling(&bootstrap, &group, records, &topic);
        (secs, cpu_s, peak_rss_bytes(), consumed, 0)
    } else {
        let run = SLUICE_RUNS
            .iter()
            .find(|r| r.name == mode)
            .unwrap_or_else(|| panic!("unknown mode {mode}"));
        sluice_process(&bootstrap, &topic, &group, records, &lake, run)
    };
    println!(
        "{}",
        json!({"name": mode, "records": consumed, "secs": secs, "cpu_s": cpu_s, "peak_rss_bytes": rss, "table_commits": commits})
    );
}

/// A bare consumer with exactly Sluice's librdkafka settings, discarding what it reads.
fn ceiling(bootstrap: &str, group: &str, records: u64, topic: &str) -> (f64, f64, u64) {
    let settings = sluice_config::SourceSettings {
        bootstrap_servers: bootstrap.into(),
        topics: vec![topic.into()],
        group_id: group.into(),
        start_from: "earliest".into(),
        properties: BTreeMap::from([("fetch.wait.max.ms".to_string(), "10".to_string())]),
        secret_properties: BTreeMap::new(),
        // As `sluice run` sizes it with the default memory budget.
        prefetch_kbytes: sluice_config::prefetch_kbytes(
            sluice_config::FlushPolicy::default().max_buffered_bytes,
        ),
    };
    let consumer: BaseConsumer = sluice_kafka::client_config(&settings).create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut n = 0u64;
    let mut bytes = 0usize;
    let mut start = None;
    while n < records {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            start.get_or_insert_with(|| (Instant::now(), cpu_seconds()));
            bytes += m.payload_len();
            n += 1;
        }
    }
    let (t0, c0) = start.expect("consumed");
    std::hint::black_box(bytes);
    (t0.elapsed().as_secs_f64(), cpu_seconds() - c0, n)
}

/// Sluice as users run it: the `sluice` binary in its own process (`run --until-caught-up`),
/// timed from its first consumed record (seen on its `/metrics`, polled every 2 ms until then
/// and never after, so the polling costs it nothing while it works) until it has landed every
/// file, committed and exited. CPU seconds and peak RSS are the whole process's, start-up and
/// the group join included. Returns (secs, cpu_s, peak_rss_bytes, records, table_versions).
fn sluice_process(
    bootstrap: &str,
    topic: &str,
    group: &str,
    records: u64,
    lake: &std::path::Path,
    run: &SluiceRun,
) -> (f64, f64, u64, u64, u64) {
    let mut text = hourly_tansu_pipeline(bootstrap, topic, group, lake, run.sink);
    if run.markers {
        text = text.replace(
            "granularity = \"hour\"",
            // Markers need late records kept out of sealed windows.
            "granularity = \"hour\"\nmarkers = true\nlate_data = \"divert\"",
        );
    }
    std::fs::create_dir_all(lake).unwrap();
    let file = lake.with_extension("toml");
    std::fs::write(&file, text).unwrap();
    let port = free_port();
    let log = lake.with_extension("log");
    // The end of the worker's log, for a run that failed.
    let log_tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text[text.floor_char_boundary(text.len().saturating_sub(2000))..].to_string()
    };
    let mut child = Command::new(sluice_bin())
        .arg("run")
        .arg(&file)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--until-caught-up",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start sluice");
    let started = Instant::now();
    let t0 = loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{}: sluice exited ({status}) before consuming: {}",
                run.name,
                log_tail()
            );
        }
        if consumed_so_far(port) > 0 {
            break Instant::now();
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{}: nothing consumed",
            run.name
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let out = child.wait_with_output().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    if !out.status.success() {
        panic!("{}: sluice failed: {}", run.name, log_tail());
    }
    // This process waits for no other child: its children's usage is this run's.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: summary: {e}: {}",
            run.name,
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let consumed = summary["records_consumed"].as_u64().unwrap_or(0);
    // `--until-caught-up` stops at the ends the broker gave at assignment. Tansu 0.6 can give
    // an end short of the last record batch (seen on the 1,000-signal topic: 64 records of a
    // million), so a run may stop just before the end; rates use what it consumed.
    assert!(
        consumed <= records && consumed >= records - records / 100,
        "{}: consumed: {summary}",
        run.name
    );
    assert_eq!(summary["caught_up"], json!(true), "{}: {summary}", run.name);
    (
        secs,
        cpu,
        usage.ru_maxrss as u64 * 1024,
        consumed,
        table_versions(lake),
    )
}

/// `sluice_source_records_consumed_total` from a worker's `/metrics` (0 until it answers).
fn consumed_so_far(port: u16) -> u64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .filter(|l| !l.starts_with('#') && l.contains("source_records_consumed_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Versions in every Delta log under `lake` (the table commits, creations included).
fn table_versions(lake: &std::path::Path) -> u64 {
    let Ok(tables) = std::fs::read_dir(lake) else {
        return 0;
    };
    tables
        .flatten()
        .filter_map(|t| std::fs::read_dir(t.path().join("_delta_log")).ok())
        .flat_map(|log| log.flatten())
        .filter(|f| f.file_name().to_string_lossy().ends_with(".json"))
        .count() as u64
}

/// Issue 3's memory figure: bytes held per buffered record when 1,000,000 small records of
/// one signal are folded, and the extra peak while that buffer is encoded to Parquet.
fn fold_memory() {
    use sluice_fold::{BufferKey, Buffers, Routed, Router, Target};
    let records = number_arg("--records", 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let text = hourly_tansu_pipeline(
        "127.0.0.1:9092",
        TOPIC,
        "fold",
        dir.path(),
        "format = \"parquet\"\ncompression = \"zstd\"\n[flush]\nmax_records = 100000000\nmax_bytes = 100000000000\nmax_buffered_bytes = 100000000000\nmax_age_secs = 3600",
    );
    let p = sluice_config::parse(&text, &|_| None).unwrap();
    let mut router = Router::new(&p);
    let mut buffers = Buffers::new(
        p.flush.clone(),
        sluice_fold::Sealer::for_files(&p.sink.encoding.options),
    );
    let now = Instant::now();
    let mut one_signal = SampleSpec::new(10_000, 1, 0);
    one_signal.signals = vec!["engine.temperature".into()];
    let rss_before = status_kb("VmRSS:") * 1024;
    let mut payload_bytes = 0u64;
    let mut offset = 0i64;
    // Generated 10,000 at a time so the generator's own records do not count.
    while (offset as u64) < records {
        one_signal.seed = offset as u64;
        for s in generate(&one_signal) {
            let r = sluice_core::Record {
                topic: TOPIC.into(),
                partition: 0,
                offset,
                key: None,
                headers: vec![],
                payload: s.record.payload,
                timestamp_ms: None,
            };
            payload_bytes += r.payload.as_ref().map_or(0, |p| p.len()) as u64;
            // Arriving now: the samples' event times are checked against it.
            let arrival = chrono::Utc::now().timestamp_millis();
            let Routed::Data { signal, line, .. } = router.route(&r, arrival) else {
                panic!("routes")
            };
            let key = BufferKey {
                tp: sluice_core::TopicPartition::new(TOPIC, 0),
                target: Target::Signal {
                    signal,
                    // One window: the memory question is about one buffer.
                    window: sluice_core::Window::containing(0, sluice_core::Granularity::Day),
                    late: false,
                },
            };
            buffers.append(key, offset, &line, now);
            offset += 1;
        }
    }
    let buffered = buffers.buffered_bytes();
    let rss_folded = status_kb("VmRSS:") * 1024;
    let mut taken = buffers.take_all();
    let buffer = taken.pop().expect("one buffer");
    let opts = p.sink.encoding.for_signal(match &buffer.key.target {
        Target::Signal { signal, .. } => signal,
        Target::DeadLetter { .. } => unreachable!(),
    });
    let t = Instant::now();
    let ndjson = buffer.lines.into_bytes().unwrap();
    let encoded = sluice_format::encode(&ndjson, &opts).unwrap();
    let encode_secs = t.elapsed().as_secs_f64();
    let peak = peak_rss_bytes();
    println!(
        "{}",
        json!({
            "records": records,
            "avg_payload_bytes": payload_bytes as f64 / records as f64,
            "buffered_bytes": buffered,
            "buffered_bytes_per_record": buffered as f64 / records as f64,
            "rss_growth_per_record": (rss_folded.saturating_sub(rss_before)) as f64 / records as f64,
            "parquet_bytes": encoded.bytes.len(),
            "encode_secs": encode_secs,
            "encode_extra_peak_bytes": peak.saturating_sub(rss_folded),
        })
    );
}

/// Streaming PGP: the extra peak memory of encoding one large buffer (`--mb` MiB of sample
/// lines, uncompressed NDJSON, so the file is as large as the buffer) without and with
/// encryption. Each run is its own process, since the peak (VmHWM) is per process.
fn pgp_memory() {
    let mb = number_arg("--mb", 256);
    if let Some(key) = string_arg("--key") {
        let mut opts = sluice_format::EncodeOptions::new(
            sluice_format::FileFormat::Ndjson,
            sluice_format::Codec::None,
        );
        if key != "none" {
            let armored = std::fs::read_to_string(&key).unwrap();
            opts.pgp = Some(sluice_format::pgp::PgpRecipient::from_armored(&armored).unwrap());
        }
        let mut buffer = Vec::with_capacity(mb as usize * 1024 * 1024 + 4096);
        let mut spec = SampleSpec::new(10_000, 1, 1);
        while buffer.len() < mb as usize * 1024 * 1024 {
            spec.seed += 1;
            for s in generate(&spec) {
                buffer.extend_from_slice(s.record.payload.as_deref().unwrap());
                buffer.push(b'\n');
            }
        }
        let before = status_kb("VmRSS:") * 1024;
        let t = Instant::now();
        let encoded = sluice_format::encode(&buffer, &opts).unwrap();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({
                "buffer_bytes": buffer.len(),
                "file_bytes": encoded.bytes.len(),
                "encode_secs": secs,
                "extra_peak_bytes": peak_rss_bytes().saturating_sub(before),
            })
        );
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (_, key) = sluice_e2e::gpg_recipient(work.path());
    let run = |key: &str| -> Value {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["pgp-memory", "--mb", &mb.to_string(), "--key", key])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let plain = run("none");
    let encrypted = run(key.to_str().unwrap());
    let ratio = encrypted["extra_peak_bytes"].as_f64().unwrap()
        / plain["extra_peak_bytes"].as_f64().unwrap();
    println!(
        "{}",
        json!({"plain": plain, "pgp": encrypted, "pgp_over_plain_extra_peak": ratio})
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn run_json(cmd: &mut Command) -> Value {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from {cmd:?}: {text}"));
    serde_json::from_str(last).unwrap()
}

/// Starts Tansu and fills the topic; returns it with the payload bytes and their average.
fn preload(records: u64) -> (Tansu, u64, f64) {
    eprintln!("==> preloading {records} records into Tansu ({PARTITIONS} partitions, 10 signals, 6 hours)");
    let tansu = Tansu::start();
    let avg = preload_topic(&tansu, TOPIC, records, &spec(0));
    eprintln!("    {avg:.0} bytes per record on average");
    (tansu, (avg * records as f64) as u64, avg)
}

/// Produces `records` records shaped by `shape` to a new topic; returns their mean size.
fn preload_topic(tansu: &Tansu, topic: &str, records: u64, shape: &SampleSpec) -> f64 {
    tansu.create_topic(topic, PARTITIONS);
    let mut payload_bytes = 0u64;
    let mut left = records as usize;
    let mut chunk_spec = shape.clone();
    while left > 0 {
        chunk_spec.records = left.min(200_000);
        chunk_spec.seed = left as u64;
        let batch = outgoing(&generate(&chunk_spec));
        payload_bytes += batch
            .iter()
            .map(|o| o.payload.as_ref().map_or(0, Vec::len) as u64)
            .sum::<u64>();
        sluice_testkit::produce(&tansu.bootstrap, topic, &batch).unwrap();
        left -= batch.len();
    }
    payload_bytes as f64 / records as f64
}

/// Topics of other shapes, each measured by its own ceiling and parquet-zstd once per repeat:
/// many signals (a file and a lake listing per signal, hour and partition) and large records.
struct Shape {
    name: &'static str,
    topic: &'static str,
    signals: usize,
    note_bytes: usize,
    /// Records, as a fraction of `--records`.
    share: u64,
}

const SHAPES: [Shape; 2] = [
    Shape {
        name: "1000-signals",
        topic: "bench-1000-signals",
        signals: 1000,
        note_bytes: 58,
        share: 1,
    },
    Shape {
        name: "4kb-records",
        topic: "bench-4kb-records",
        signals: 10,
        note_bytes: 3_900,
        share: 10,
    },
];

impl Shape {
    fn spec(&self) -> SampleSpec {
        let mut s = spec(0);
        s.signals = (0..self.signals)
            .map(|i| format!("{}.{i:04}", SIGNALS[i % SIGNALS.len()]))
            .collect();
        s.note_bytes = self.note_bytes;
        s
    }
}

fn orchestrate() {
    let records = number_arg("--records", 1_000_000);
    let repeats = number_arg("--repeats", 3);
    let memory_records = number_arg("--memory-records", 1_000_000);
    let python = std::env::var("SLUICE_PYTHON").unwrap_or_else(|_| {
        workspace_root()
            .join(".tools/venv/bin/python")
            .display()
            .to_string()
    });
    let me = std::env::current_exe().unwrap();

    let (tansu, _, avg) = preload(records);

    let work = tempfile::tempdir().unwrap();
    let mut samples: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let modes: Vec<&str> = std::iter::once("ceiling")
        .chain(SLUICE_RUNS.iter().map(|r| r.name))
        .chain(std::iter::once("python"))
        .collect();
    // The other shapes' topics, beside the main one.
    let shape_avgs: Vec<f64> = SHAPES
        .iter()
        .map(|shape| {
            eprintln!(
                "==> preloading {} records of shape {}",
                records / shape.share,
                shape.name
            );
            preload_topic(&tansu, shape.topic, records / shape.share, &shape.spec())
        })
        .collect();
    // One measurement in its own process, its lake removed after it.
    let mut measure = |label: String, mode: &str, topic: &str, n: u64, rep: u64| {
        let group = format!("bench-{}-{rep}", label.replace('/', "-"));
        let lake = work.path().join(&group);
        eprintln!("==> {label} (repeat {})", rep + 1);
        let mut cmd = if mode == "python" {
            let mut c = Command::new(&python);
            c.arg(workspace_root().join("bench/baseline.py"));
            c
        } else {
            let mut c = Command::new(&me);
            c.args(["one", "--mode", mode]);
            c
        };
        cmd.args(["--bootstrap", &tansu.bootstrap, "--topic", topic])
            .args(["--group", &group, "--records", &n.to_string(), "--lake"])
            .arg(&lake);
        let v = run_json(&mut cmd);
        let got = v["records"].as_u64().unwrap_or(0);
        assert!(got <= n && got >= n - n / 100, "{label}: {v}");
        eprintln!("    {v}");
        let _ = std::fs::remove_dir_all(&lake);
        samples.entry(label).or_default().push(v);
    };
    for rep in 0..repeats {
        for mode in &modes {
            measure(mode.to_string(), mode, TOPIC, records, rep);
        }
        for shape in &SHAPES {
            for mode in ["ceiling", "parquet-zstd"] {
                let label = format!("{mode}/{}", shape.name);
                measure(label, mode, shape.topic, records / shape.share, rep);
            }
        }
    }

    let summarize = |runs: &[Value]| {
        let rps = median(
            runs.iter()
                .map(|r| r["records"].as_f64().unwrap() / r["secs"].as_f64().unwrap())
                .collect(),
        );
        let cpu = median(runs.iter().map(|r| r["cpu_s"].as_f64().unwrap()).collect());
        let rss = median(
            runs.iter()
                .map(|r| r["peak_rss_bytes"].as_f64().unwrap())
                .collect(),
        );
        let all_rps: Vec<f64> = runs
            .iter()
            .map(|r| r["records"].as_f64().unwrap() / r["secs"].as_f64().unwrap())
            .collect();
        (rps, cpu, rss as u64, all_rps)
    };
    let (ceiling_rps, ceiling_cpu, ceiling_rss, ceiling_all) = summarize(&samples["ceiling"]);
    let (python_rps, python_cpu, python_rss, python_all) = summarize(&samples["python"]);
    let mb = |rps: f64| rps * avg / 1e6;
    println!(
        "\n{records} records, {avg:.0} bytes each, {PARTITIONS} partitions, median of {repeats}\n"
    );
    println!(
        "{:<20} {:>12} {:>8} {:>10} {:>12} {:>14} {:>10}",
        "run", "records/s", "MB/s", "CPU s", "peak RSS MB", "vs ceiling", "vs python"
    );
    let row = |name: &str, rps: f64, cpu: f64, rss: u64| {
        println!(
            "{name:<20} {rps:>12.0} {:>8.1} {cpu:>10.2} {:>12.1} {:>13.1}% {:>9.1}x",
            mb(rps),
            rss as f64 / 1e6,
            100.0 * rps / ceiling_rps,
            rps / python_rps
        );
    };
    row("ceiling", ceiling_rps, ceiling_cpu, ceiling_rss);
    let mut runs = Vec::new();
    for SluiceRun { name, .. } in &SLUICE_RUNS {
        let (rps, cpu, rss, all) = summarize(&samples[*name]);
        row(name, rps, cpu, rss);
        runs.push(json!({
            "name": name, "rps": rps, "mb_per_s": mb(rps), "ratio_to_ceiling": rps / ceiling_rps,
            "ratio_to_python": rps / python_rps, "cpu_s": cpu, "peak_rss_bytes": rss, "rps_each_run": all,
        }));
    }
    row("python", python_rps, python_cpu, python_rss);
    // The other shapes, each against its own topic's ceiling.
    println!(
        "\n{:<28} {:>10} {:>8} {:>12} {:>12} {:>11}",
        "shape: run", "records/s", "MB/s", "CPU s per M", "peak RSS MB", "vs ceiling"
    );
    let mut shapes = Vec::new();
    for (shape, avg) in SHAPES.iter().zip(&shape_avgs) {
        let n = records / shape.share;
        let (ceil_rps, ..) = summarize(&samples[&format!("ceiling/{}", shape.name)]);
        let (rps, cpu, rss, all) = summarize(&samples[&format!("parquet-zstd/{}", shape.name)]);
        let cpu_per_m = cpu * 1e6 / n as f64;
        println!(
            "{:<28} {rps:>10.0} {:>8.1} {cpu_per_m:>12.2} {:>12.1} {:>10.1}%",
            format!("{}: parquet-zstd", shape.name),
            rps * avg / 1e6,
            rss as f64 / 1e6,
            100.0 * rps / ceil_rps
        );
        shapes.push(json!({
            "shape": shape.name, "records": n, "avg_record_bytes": avg, "signals": shape.signals,
            "ceiling_rps": ceil_rps, "rps": rps, "ratio_to_ceiling": rps / ceil_rps,
            "cpu_s": cpu, "cpu_s_per_m_records": cpu_per_m, "peak_rss_bytes": rss, "rps_each_run": all,
        }));
    }
    // What committing to tables costs over writing the same files loose.
    let (files_rps, files_cpu, ..) = summarize(&samples["parquet-zstd"]);
    let (delta_rps, delta_cpu, ..) = summarize(&samples["delta-parquet-zstd"]);
    let commits = median(
        samples["delta-parquet-zstd"]
            .iter()
            .map(|r| r["table_commits"].as_f64().unwrap_or(0.0))
            .collect(),
    );
    let per_m = |cpu: f64| cpu * 1e6 / records as f64;
    let delta_overhead = json!({
        "rps_ratio_to_parquet_zstd": delta_rps / files_rps,
        "cpu_s_per_m_records": per_m(delta_cpu),
        "parquet_zstd_cpu_s_per_m_records": per_m(files_cpu),
        "table_commits": commits,
    });
    println!(
        "\nDelta commit overhead vs parquet-zstd: {:.2}x the records/s, {:.2} vs {:.2} CPU s per M records, {commits:.0} table commits",
        delta_rps / files_rps,
        per_m(delta_cpu),
        per_m(files_cpu)
    );

    let memory = if memory_records > 0 {
        eprintln!(
            "==> memory: draining {memory_records} and {} records (parquet-zstd)",
            memory_records * 10
        );
        let m = run_json(Command::new(me.with_file_name("sluice-memory")).args([
            "--records",
            &memory_records.to_string(),
            "--format",
            "parquet",
            "--compression",
            "zstd",
        ]));
        println!(
            "\nmemory: peak RSS {:.1} MB at {memory_records} records, {:.1} MB at {} (ratio {:.2})",
            m["rss_small_bytes"].as_f64().unwrap() / 1e6,
            m["rss_large_bytes"].as_f64().unwrap() / 1e6,
            memory_records * 10,
            m["ratio"].as_f64().unwrap()
        );
        json!({"rss_1m_bytes": m["rss_small_bytes"], "rss_10m_bytes": m["rss_large_bytes"], "ratio": m["ratio"], "budget_bytes": m["budget_bytes"], "records_small": m["records_small"], "records_large": m["records_large"], "consumed_small": m["consumed_small"], "consumed_large": m["consumed_large"], "complete_small": m["complete_small"], "complete_large": m["complete_large"], "format": "parquet-zstd"})
    } else {
        json!(null)
    };
    let fold = run_json(Command::new(&me).args(["fold-memory", "--records", "1000000"]));
    println!(
        "fold: {:.1} buffered bytes per record ({:.1}-byte payloads), RSS growth {:.1} bytes per record",
        fold["buffered_bytes_per_record"].as_f64().unwrap(),
        fold["avg_payload_bytes"].as_f64().unwrap(),
        fold["rss_growth_per_record"].as_f64().unwrap()
    );

    let machine = json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| c.lines().find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))),
        "mem_total_kb": std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| m.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())),
        "broker": "Tansu 0.6.0, memory storage",
        "build": "release",
    });
    let results = json!({
        "records": records,
        "avg_record_bytes": avg,
        "repeats": repeats,
        "ceiling_rps": ceiling_rps,
        "ceiling_cpu_s": ceiling_cpu,
        "ceiling_peak_rss_bytes": ceiling_rss,
        "ceiling_rps_each_run": ceiling_all,
        "runs": runs,
        "python_rps": python_rps,
        "python_cpu_s": python_cpu,
        "python_peak_rss_bytes": python_rss,
        "python_rps_each_run": python_all,
        "delta_overhead": delta_overhead,
        "shapes": shapes,
        "memory": memory,
        "fold_memory": fold,
        "machine": machine,
        "samples": samples,
    });
    let path = workspace_root().join("bench/results.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&results).unwrap() + "\n",
    )
    .unwrap();
    eprintln!("\nwrote {}", path.display());
}
