//! The run loop against librdkafka's mock cluster (real Kafka protocol, in-process) and a
//! local-disk lake.

mod support;

use std::time::Duration;

use sluice_config::ValidatedPipeline;
use sluice_telemetry::Metrics;
use sluice_testkit::lake_files::{hour_prefix, read_ndjson_tree};
use sluice_testkit::sample::{generate, outgoing, signal_at, SampleRecord, SampleSpec};
use sluice_testkit::services::MockKafka;
use sluice_testkit::{produce, Outgoing};
use support::*;

fn poison(partition: i32) -> Vec<Outgoing> {
    let rec = |payload: Option<&[u8]>| Outgoing {
        partition,
        key: None,
        payload: payload.map(<[u8]>::to_vec),
        headers: vec![],
        timestamp_ms: None,
    };
    vec![
        rec(Some(b"{not json")),
        rec(Some(br#"{"timestamp":"2024-03-05T10:00:00Z"}"#)),
        rec(None),
        rec(Some(
            br#"{"signal":"engine.temperature","timestamp":"soon"}"#,
        )),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lands_every_exported_record_once_and_commits_to_the_end() {
    let kafka = MockKafka::start(1);
    kafka.create_topic(TOPIC, 4);
    let samples = generate(&SampleSpec::new(8_000, 4, 4));
    let mut records = outgoing(&samples);
    records.extend(poison(2));
    produce(&kafka.bootstrap, TOPIC, &records).unwrap();

    let lake = tempfile::tempdir().unwrap();
    let p = pipeline(&kafka.bootstrap, lake.path(), "g1", "");
    let total = records.len() as u64;
    let summary = run_until(&p, |m| m.records_consumed.get() >= total)
        .await
        .unwrap();
    assert_eq!(summary.records_consumed, total);
    assert_eq!(summary.records_dead_lettered, 4);

    let (files, expected) = assert_hourly_once(&samples, lake.path(), &p);
    assert_eq!(summary.records_landed, expected);
    assert!(files
        .iter()
        .all(|(p, _)| !p.starts_with("tyre.pressure") && !p.starts_with("app.crash")));

    // Dead letters name their record and reason and keep the raw bytes.
    let dead: Vec<_> = files
        .iter()
        .filter(|(p, _)| p.starts_with("_dead_letter/signals/2/"))
        .flat_map(|(_, l)| l.clone())
        .collect();
    let reasons: Vec<_> = dead
        .iter()
        .map(|d| d["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        reasons,
        [
            "invalid_json",
            "missing_signal",
            "tombstone",
            "bad_timestamp"
        ]
    );
    assert!(dead
        .iter()
        .all(|d| d["topic"] == TOPIC && d["partition"] == 2 && d["offset"].is_i64()));

    for (committed, end) in committed(&kafka, "g1") {
        assert_eq!(committed, Some(end));
    }
    // A second run of the same group finds nothing new.
    let again = run_until(&p, |m| m.rebalances.get() > 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(again.records_consumed, 0);
    assert_eq!(read_ndjson_tree(lake.path()).len(), files.len());
}

/// At shutdown more buffers land than landing tasks may run at once (256): the rest wait
/// in the queue and start as others end; every record lands once and is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_buffers_than_landing_tasks_all_land_once_at_shutdown() {
    let kafka = MockKafka::start(1);
    kafka.create_topic(TOPIC, 2);
    let mut spec = SampleSpec::new(6_000, 2, 1);
    spec.signals = (0..300).map(|i| format!("load.s{i:03}")).collect();
    let samples = generate(&spec);
    produce(&kafka.bootstrap, TOPIC, &outgoing(&samples)).unwrap();

    let lake = tempfile::tempdir().unwrap();
    let text = pipeline_text(&kafka.bootstrap, lake.path(), "g-queue", "");
    let all_signals = text
        .lines()
        .filter(|l| !l.starts_with("signals = "))
        .collect::<Vec<_>>();
    let p = sluice_config::parse(&all_signals.join("\n"), &|_| None).unwrap();
    let total = samples.len() as u64;
    let summary = run_until(&p, |m| m.records_consumed.get() >= total)
        .await
        .unwrap();
    let (files, expected) = assert_hourly_once(&samples, lake.path(), &p);
    assert_eq!(expected, total);
    assert_eq!(summary.records_landed, total);
    assert!(files.len() > 512, "{} files", files.len());
    for (committed, end) in committed(&kafka, "g-queue") {
        assert_eq!(committed, Some(end));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lands_and_commits_by_age_while_running() {
    let (kafka, _samples, lake) = loaded_topic(2_000);
    let p = pipeline(
        &kafka.bootstrap,
        lake.path(),
        "g2",
        "[flush]\nmax_age_secs = 1",
    );
    // Wait, while running, until every partition is committed to its end: that can only
    // happen after the age-based flush landed every buffer.
    let probe = kafka.bootstrap.clone();
    let summary = run_until(&p, move |_| drained(&probe, "g2")).await.unwrap();
    assert_eq!(summary.records_consumed, 2_000);
    let landed: usize = read_ndjson_tree(lake.path())
        .iter()
        .map(|(_, l)| l.len())
        .sum();
    assert_eq!(landed as u64, summary.records_landed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_landing_commits_nothing_it_did_not_land() {
    let (kafka, samples, lake) = loaded_topic(3_000);
    // A plain file where the signal's directory must go: every write under it fails.
    std::fs::write(lake.path().join("engine.temperature"), b"in the way").unwrap();
    let p = pipeline(&kafka.bootstrap, lake.path(), "g3", "");
    let err = run_until(&p, |m| m.records_consumed.get() >= 3_000)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("engine.temperature/"), "{err}");

    // Every partition's commit stops at or before its first engine.temperature record.
    let progress =
        sluice_kafka::group_progress(&kafka.bootstrap, "g3", TOPIC, Duration::from_secs(5))
            .unwrap();
    // Offsets in a partition follow production order; find each partition's first blocked one.
    let mut next_offset: std::collections::BTreeMap<i32, i64> = Default::default();
    let mut first_blocked: std::collections::BTreeMap<i32, i64> = Default::default();
    for s in &samples {
        let o = next_offset.entry(s.record.partition).or_default();
        if s.signal == "engine.temperature" {
            first_blocked.entry(s.record.partition).or_insert(*o);
        }
        *o += 1;
    }
    for (partition, (committed, _end)) in progress {
        let limit = first_blocked[&partition];
        assert!(
            committed.unwrap_or(0) <= limit,
            "partition {partition} committed {committed:?} past unlanded offset {limit}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_commits_are_retried() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let (kafka, _samples, lake) = loaded_topic(2_000);
    // The next five OffsetCommit requests fail; later ticks must commit what landed.
    kafka.cluster.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; 5],
    );
    let p = pipeline(
        &kafka.bootstrap,
        lake.path(),
        "g5",
        "[flush]\nmax_age_secs = 1",
    );
    let probe = kafka.bootstrap.clone();
    let summary = run_until(&p, move |m| {
        m.records_consumed.get() >= 2_000 && drained(&probe, "g5")
    })
    .await
    .unwrap();
    assert_eq!(summary.records_consumed, 2_000);
    for (committed, end) in committed(&kafka, "g5") {
        assert_eq!(committed, Some(end));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_loses_and_doubles_nothing_across_a_restart() {
    sluice_telemetry::init_logging(false, "warn");
    let (kafka, samples, lake) = loaded_topic(4_000);
    let p = pipeline(
        &kafka.bootstrap,
        lake.path(),
        "g6",
        "[flush]\nmax_records = 300",
    );

    // The only broker goes down for 3 s once the worker has consumed its first records, and
    // forgets the group: commits fail while buffers are open and files land.
    let metrics = Metrics::new("outage");
    let outage_over = std::sync::atomic::AtomicBool::new(false);
    let outage = async {
        while metrics.records_consumed.get() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        kafka.cluster.broker_down(1).unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        kafka.cluster.broker_up(1).unwrap();
        outage_over.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let first = sluice_pipeline::run_until(&p, metrics.clone(), Duration::from_secs(60), |m| {
        outage_over.load(std::sync::atomic::Ordering::SeqCst) && m.records_consumed.get() >= 4_000
    });
    let (first, ()) = tokio::join!(first, outage);
    first.unwrap();

    // A second worker finishes whatever the first could not commit; replays skip what landed.
    let probe = kafka.bootstrap.clone();
    run_until(&p, move |_| drained(&probe, "g6")).await.unwrap();
    for (committed, end) in committed(&kafka, "g6") {
        assert_eq!(committed, Some(end));
    }
    assert_hourly_once(&samples, lake.path(), &p);
}

/// Records at 10:xx, then 12:xx, then 10:xx again on one partition: the last ones arrive after
/// their hour closed.
fn late_records() -> Vec<Outgoing> {
    let rec = |seq: u64, ts: &str| signal_at(0, seq, ts);
    vec![
        rec(0, "2024-03-05T10:10:00Z"),
        rec(1, "2024-03-05T12:10:00Z"),
        rec(2, "2024-03-05T10:20:00Z"),
        rec(3, "2024-03-05T11:30:00Z"),
    ]
}

async fn run_late(policy: &str, group: &str) -> Vec<(String, Vec<serde_json::Value>)> {
    let kafka = MockKafka::start(1);
    kafka.create_topic(TOPIC, 1);
    produce(&kafka.bootstrap, TOPIC, &late_records()).unwrap();
    let lake = tempfile::tempdir().unwrap();
    let mut p = pipeline(&kafka.bootstrap, lake.path(), group, "");
    p.window.late_data = match policy {
        "divert" => sluice_config::LateData::Divert,
        _ => sluice_config::LateData::DeadLetter,
    };
    p.window.allowed_lateness = Duration::from_secs(30 * 60);
    let summary = run_until(&p, |m| m.records_consumed.get() >= 4)
        .await
        .unwrap();
    assert_eq!(summary.records_consumed, 4);
    read_ndjson_tree(lake.path())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_records_are_diverted_or_dead_lettered() {
    // With 30 minutes of allowed lateness, hour 10 closed at 11:30 < 13:00 (the watermark after
    // the 12:xx record); hour 11 closes at 12:30, also behind it.
    let diverted = run_late("divert", "late1").await;
    let where_is = |files: &[(String, Vec<serde_json::Value>)], seq: u64| {
        files
            .iter()
            .find(|(_, l)| l.iter().any(|r| r["seq"] == seq))
            .map(|(p, _)| p.clone())
    };
    assert!(where_is(&diverted, 0)
        .unwrap()
        .starts_with("engine.temperature/2024/03/05/10/"));
    assert!(where_is(&diverted, 1)
        .unwrap()
        .starts_with("engine.temperature/2024/03/05/12/"));
    assert!(where_is(&diverted, 2)
        .unwrap()
        .starts_with("_late/engine.temperature/2024/03/05/10/"));
    assert!(where_is(&diverted, 3)
        .unwrap()
        .starts_with("_late/engine.temperature/2024/03/05/11/"));

    let dead = run_late("dead_letter", "late2").await;
    let dead_lines: Vec<_> = dead
        .iter()
        .filter(|(p, _)| p.starts_with("_dead_letter/"))
        .flat_map(|(_, l)| l.clone())
        .collect();
    assert_eq!(dead_lines.len(), 2);
    assert!(dead_lines.iter().all(|d| d["reason"] == "late"));
    assert_eq!(
        dead_lines
            .iter()
            .map(|d| d["offset"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [2, 3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_storage_outage_pauses_without_leaving_the_group() {
    sluice_telemetry::init_logging(false, "warn");
    let (kafka, samples, lake) = loaded_topic(3_000);
    // Writes under engine.temperature/ fail (temporarily, as opendal classifies it) until the
    // file in the way is removed, 10 s in: past max.poll.interval.ms (6 s).
    let blocker = lake.path().join("engine.temperature");
    std::fs::write(&blocker, b"in the way").unwrap();
    let mut p = pipeline(
        &kafka.bootstrap,
        lake.path(),
        "g7",
        "[flush]\nmax_records = 40",
    );
    p.source
        .properties
        .insert("max.poll.interval.ms".into(), "6000".into());

    let metrics = Metrics::new("stall");
    let unblocked = std::sync::atomic::AtomicBool::new(false);
    let unblock = async {
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert_eq!(
            metrics.paused.get(),
            1,
            "the worker should be paused while landings are stuck"
        );
        std::fs::remove_file(&blocker).unwrap();
        unblocked.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let probe = kafka.bootstrap.clone();
    let run = sluice_pipeline::run_until(&p, metrics.clone(), Duration::from_secs(120), |_| {
        unblocked.load(std::sync::atomic::Ordering::SeqCst) && drained(&probe, "g7")
    });
    let (summary, ()) = tokio::join!(run, unblock);
    summary.unwrap();
    assert_eq!(
        metrics.rebalances.get(),
        1,
        "only the first assignment: the worker never left the group"
    );
    assert!(metrics.storage_retries.get() > 0);
    assert_hourly_once(&samples, lake.path(), &p);
}

/// A batch schedule lands every buffer at the next multiple of `flush.every` (not by age),
/// and the run's manifest lists exactly the files it landed, with their sizes and records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_run_lands_everything_and_writes_its_manifest() {
    let (kafka, _, lake) = loaded_topic(3_000);
    let p = pipeline(
        &kafka.bootstrap,
        lake.path(),
        "sched",
        "[flush]\nevery = \"3s\"\nmanifest = true",
    );
    assert!(
        p.flush.max_age > Duration::from_secs(60),
        "the schedule, not age, lands files"
    );
    let (_, name, m) = run_until_one_manifest(&p, lake.path()).await;
    assert!(
        name.starts_with("manifest-mock-") && name.ends_with(".json"),
        "{name}"
    );
    assert!(name.contains(m["flowRunId"].as_str().unwrap()));
    let scheduled = chrono_secs(m["scheduledTime"].as_str().unwrap());
    assert_eq!(
        scheduled % 3,
        0,
        "runs fall on multiples of the schedule: {m}"
    );
    let results = m["exportResults"].as_array().unwrap();
    assert!(!results.is_empty());
    let mut records = 0;
    for r in results {
        let sink = r["sinkPath"].as_str().unwrap();
        let path = sink.strip_prefix("file://").unwrap();
        assert_eq!(
            std::fs::metadata(path).unwrap().len(),
            r["size"].as_u64().unwrap(),
            "{sink}"
        );
        assert!(path.ends_with(r["name"].as_str().unwrap()));
        let lines = read_ndjson_tree(std::path::Path::new(path).parent().unwrap())
            .into_iter()
            .find(|(f, _)| path.ends_with(f.as_str()))
            .unwrap()
            .1;
        assert_eq!(lines.len() as u64, r["records"].as_u64().unwrap());
        records += lines.len() as u64;
    }
    assert_eq!(m["records"].as_u64(), Some(records));
}

fn chrono_secs(rfc3339: &str) -> i64 {
    // "2026-11-23T02:30:03Z": seconds since midnight are enough to check the alignment.
    let t = &rfc3339[11..19];
    let parts: Vec<i64> = t.split(':').map(|p| p.parse().unwrap()).collect();
    parts[0] * 3600 + parts[1] * 60 + parts[2]
}

/// Two workers that each believe they own every partition, writing one lake: what a broker
/// that hands partitions on without revoking them makes of two members of one group (seen
/// with Tansu 0.6). Here they are two groups, so the mock cluster's correct group protocol
/// cannot save them: only the partition leases in the lake can. Each record lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_that_both_think_they_own_a_partition_land_each_record_once() {
    sluice_telemetry::init_logging(false, "warn");
    let kafka = MockKafka::start(1);
    kafka.create_topic(TOPIC, 4);
    let samples = generate(&SampleSpec::new(6_000, 4, 2));
    let lake = tempfile::tempdir().unwrap();
    // Short write timeouts and small files keep the takeover grace (longest attempt + 5 s)
    // short; files land every second, so both workers land the same partitions at once.
    let extra = "write_timeout_secs = 1\n[flush]\nmax_age_secs = 1\nmax_bytes = 4194304";
    let a = pipeline(&kafka.bootstrap, lake.path(), "zombie-a", extra);
    let b = pipeline(&kafka.bootstrap, lake.path(), "zombie-b", extra);

    let produced = std::sync::atomic::AtomicBool::new(false);
    let producer = async {
        for chunk in outgoing(&samples).chunks(150) {
            let (bootstrap, chunk) = (kafka.bootstrap.clone(), chunk.to_vec());
            tokio::task::spawn_blocking(move || produce(&bootstrap, TOPIC, &chunk).unwrap())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        produced.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    // Each stops once the producer is done and its group has committed to the end.
    let stop_when_drained = |group: &'static str| {
        let bootstrap = kafka.bootstrap.clone();
        let next_check = std::sync::Mutex::new(std::time::Instant::now());
        let produced = &produced;
        move |_: &Metrics| {
            let mut next = next_check.lock().unwrap();
            if !produced.load(std::sync::atomic::Ordering::SeqCst)
                || std::time::Instant::now() < *next
            {
                return false;
            }
            *next = std::time::Instant::now() + Duration::from_secs(1);
            drained(&bootstrap, group)
        }
    };
    let (ma, mb) = (Metrics::new("zombie-a"), Metrics::new("zombie-b"));
    let limit = Duration::from_secs(180);
    let worker_a = sluice_pipeline::run_until(&a, ma.clone(), limit, stop_when_drained("zombie-a"));
    let worker_b = async {
        // The second owner arrives while the first is landing.
        tokio::time::sleep(Duration::from_secs(2)).await;
        sluice_pipeline::run_until(&b, mb.clone(), limit, stop_when_drained("zombie-b")).await
    };
    let (ra, rb, ()) = tokio::join!(worker_a, worker_b, producer);
    ra.unwrap();
    rb.unwrap();

    assert_hourly_once(&samples, lake.path(), &a);
    // The race was real: the later claims fenced the earlier owner, and takeovers waited.
    assert!(
        ma.fenced.get() + mb.fenced.get() > 0,
        "no worker was fenced"
    );
    assert!(ma.unclean_takeovers.get() + mb.unclean_takeovers.get() > 0);
}

/// A 4-partition topic: `records` samples of hours 10 and 11 on the first `partitions`
/// partitions, then one record at 13:30 on partitions 0-2, which closes hours 10 and 11 there
/// (with an hour of lateness: 12:00 + 1 h < 14:00).
fn hours_then_moved_on(records: usize, partitions: i32) -> (MockKafka, Vec<SampleRecord>) {
    let kafka = MockKafka::start(1);
    kafka.create_topic(TOPIC, 4);
    let samples = generate(&SampleSpec::new(records, partitions, 2));
    produce(&kafka.bootstrap, TOPIC, &outgoing(&samples)).unwrap();
    let moved_on: Vec<_> = (0..3)
        .map(|p| signal_at(p, 1_000_000 + p as u64, "2024-03-05T13:30:00Z"))
        .collect();
    produce(&kafka.bootstrap, TOPIC, &moved_on).unwrap();
    (kafka, samples)
}

/// The pipeline with window markers on: an hour of allowed lateness, late records diverted.
fn with_markers(mut p: ValidatedPipeline, idle_partition: Duration) -> ValidatedPipeline {
    p.window.markers = Some(sluice_config::MarkerSettings { idle_partition });
    p.window.late_data = sluice_config::LateData::Divert;
    p.window.allowed_lateness = Duration::from_secs(3600);
    p
}

fn hour_marker(lake: &std::path::Path, hour: u32) -> std::path::PathBuf {
    lake.join(format!("_windows/2024/03/05/{hour:02}/_SUCCESS"))
}

/// Checks the markers of one hour against the lake: each named signal's marker lists exactly
/// the data files in its directory, which hold exactly that hour's samples of the signal, and
/// the hour's marker lists them all.
fn assert_hour_marked(
    lake: &std::path::Path,
    p: &ValidatedPipeline,
    samples: &[SampleRecord],
    hour: u32,
) {
    let read = |path: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| {
            panic!("no marker at {}: {e}", path.display());
        }))
        .unwrap()
    };
    let window = read(&hour_marker(lake, hour));
    assert_eq!(
        window["window_start"],
        format!("2024-03-05T{hour:02}:00:00Z")
    );
    let mut all = 0;
    let sluice_config::SignalFilter::Only(signals) = &p.filter else {
        panic!("the test pipeline names its signals")
    };
    for signal in signals {
        let dir = lake.join(format!("{signal}/2024/03/05/{hour:02}"));
        let marker = read(&dir.join("_SUCCESS"));
        assert_eq!(marker["signal"], signal.as_str());
        let listed: Vec<String> = marker["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect();
        let mut present: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| !n.starts_with('_'))
                    .collect()
            })
            .unwrap_or_default();
        present.sort();
        assert_eq!(listed, present, "{signal} hour {hour}: marker vs directory");
        let lines: usize = present
            .iter()
            .map(|n| {
                let raw = std::fs::read(dir.join(n)).unwrap();
                sluice_testkit::lake_files::parse_ndjson(&raw, n.ends_with(".gz")).len()
            })
            .sum();
        let expected = samples
            .iter()
            .filter(|s| {
                &s.signal == signal
                    && hour_prefix(&s.signal, s.event_ms).ends_with(&format!("/{hour:02}/"))
            })
            .count();
        assert_eq!(
            lines, expected,
            "{signal} hour {hour}: records in listed files"
        );
        all += listed.len();
    }
    assert_eq!(window["files"].as_array().unwrap().len(), all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_markers_wait_for_every_partition_and_list_each_hours_files() {
    sluice_telemetry::init_logging(false, "warn");
    // Partition 3 has samples too but does not move on.
    let (kafka, samples) = hours_then_moved_on(2_000, 4);
    let lake = tempfile::tempdir().unwrap();
    let extra = "[flush]\nmax_age_secs = 1";
    let idle = Duration::from_secs(600);
    let a = with_markers(
        pipeline(&kafka.bootstrap, lake.path(), "markers", extra),
        idle,
    );
    let b = a.clone();

    // Two workers of one group share the partitions, and so the sealing.
    let finished = std::sync::atomic::AtomicBool::new(false);
    let stop = |_: &Metrics| finished.load(std::sync::atomic::Ordering::SeqCst);
    let limit = Duration::from_secs(150);
    let (ma, mb) = (Metrics::new("a"), Metrics::new("b"));
    let steer = async {
        wait_for(
            "the group to commit everything",
            Duration::from_secs(60),
            || drained(&kafka.bootstrap, "markers"),
        )
        .await;
        // Two marker rounds after everything landed and was committed.
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(
            !hour_marker(lake.path(), 10).exists(),
            "hour 10 was sealed while partition 3 had not passed it"
        );
        let progress = std::fs::read_dir(lake.path().join("_progress").join(TOPIC))
            .unwrap()
            .count();
        assert_eq!(progress, 4, "every partition's progress is in the lake");
        produce(
            &kafka.bootstrap,
            TOPIC,
            &[signal_at(3, 1_000_003, "2024-03-05T13:30:00Z")],
        )
        .unwrap();
        wait_for("hour 11's marker", Duration::from_secs(60), || {
            hour_marker(lake.path(), 11).exists()
        })
        .await;
        finished.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let (ra, rb, ()) = tokio::join!(
        sluice_pipeline::run_until(&a, ma.clone(), limit, stop),
        async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            sluice_pipeline::run_until(&b, mb.clone(), limit, stop).await
        },
        steer
    );
    ra.unwrap();
    rb.unwrap();

    assert_hourly_once(&samples, lake.path(), &a);
    assert_hour_marked(lake.path(), &a, &samples, 10);
    assert_hour_marked(lake.path(), &a, &samples, 11);
    // Hour 12 ends at 13:00, not before 14:00 - 1 h; hour 13 is open.
    assert!(!hour_marker(lake.path(), 12).exists());
    assert!(!hour_marker(lake.path(), 13).exists());
    assert!(ma.markers_written.get() + mb.markers_written.get() >= 12);
    assert!(!lake.path().join("_late").exists(), "nothing was late");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_partition_does_not_hold_markers_back_nor_reopen_a_sealed_hour() {
    sluice_telemetry::init_logging(false, "warn");
    // Partition 3 gets nothing at first.
    let (kafka, samples) = hours_then_moved_on(1_500, 3);
    let lake = tempfile::tempdir().unwrap();
    let p = with_markers(
        pipeline(
            &kafka.bootstrap,
            lake.path(),
            "idle",
            "[flush]\nmax_age_secs = 1",
        ),
        Duration::from_secs(2),
    );
    let finished = std::sync::atomic::AtomicBool::new(false);
    let metrics = Metrics::new("idle");
    let late_dir = lake.path().join("_late/engine.temperature/2024/03/05/10");
    let steer = async {
        wait_for("hour 11's marker", Duration::from_secs(60), || {
            hour_marker(lake.path(), 11).exists()
        })
        .await;
        // Hour 10 is sealed; a record of it now arriving on the idle partition is late.
        produce(
            &kafka.bootstrap,
            TOPIC,
            &[signal_at(3, 2_000_000, "2024-03-05T10:30:00Z")],
        )
        .unwrap();
        wait_for("the late record to land", Duration::from_secs(30), || {
            std::fs::read_dir(&late_dir).is_ok_and(|mut d| d.next().is_some())
        })
        .await;
        finished.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let (r, ()) = tokio::join!(
        sluice_pipeline::run_until(&p, metrics.clone(), Duration::from_secs(120), |_| {
            finished.load(std::sync::atomic::Ordering::SeqCst)
        }),
        steer
    );
    r.unwrap();
    // Still exactly what the markers list: the late record did not join hour 10.
    assert_hour_marked(lake.path(), &p, &samples, 10);
    assert_hour_marked(lake.path(), &p, &samples, 11);
    let late = read_ndjson_tree(&lake.path().join("_late"));
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].1[0]["seq"], 2_000_000);
}
