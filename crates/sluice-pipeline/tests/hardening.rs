//! Inputs and moments that once stopped a pipeline or lost records, against the mock cluster:
//! a record nested past every parser's limit, event times no clock can mean, and a shutdown
//! while a rebalance is in flight.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use sluice_telemetry::Metrics;
use sluice_testkit::lake_files::{files_under, read_ndjson_tree};
use sluice_testkit::sample::signal_at;
use sluice_testkit::services::MockKafka;
use sluice_testkit::{produce, Outgoing};
use support::*;

fn payload(partition: i32, json: String) -> Outgoing {
    Outgoing {
        partition,
        key: None,
        payload: Some(json.into_bytes()),
        headers: vec![],
        timestamp_ms: None,
    }
}

fn dead_letters(lake: &std::path::Path) -> Vec<serde_json::Value> {
    read_ndjson_tree(&lake.join("_dead_letter"))
        .into_iter()
        .flat_map(|(_, lines)| lines)
        .collect()
}

/// A 300-deep array among 99 good records, written as Parquet: it once stopped the worker
/// for good (serde_json's limit in the encoder), and every restart met it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_nested_past_the_limit_is_dead_lettered_and_the_rest_lands() {
    let kafka = MockKafka::start(1);
    kafka.create_topic(TOPIC, 1);
    let mut records: Vec<Outgoing> = (0..99)
        .map(|i| signal_at(0, i, "2024-03-05T10:00:00Z"))
        .collect();
    let deep = format!(
        r#"{{"signal":"engine.temperature","timestamp":"2024-03-05T10:30:00Z","v":{}1{}}}"#,
        "[".repeat(299),
        "]".repeat(299)
    );
    records.insert(50, payload(0, deep));
    produce(&kafka.bootstrap, TOPIC, &records).unwrap();
    let lake = tempfile::tempdir().unwrap();
    let p = pipeline(
        &kafka.bootstrap,
        lake.path(),
        "deep",
        "format = \"parquet\"",
    );
    let summary = run_until(&p, |m| m.records_consumed.get() >= 100)
        .await
        .expect("one deep record does not stop the worker");
    assert_eq!(summary.records_landed, 99);
    assert_eq!(summary.records_dead_lettered, 1);
    let rows: u64 = files_under(lake.path(), ".parquet")
        .iter()
        .map(|f| {
            let name = f.file_name().unwrap().to_string_lossy();
            sluice_format::inspect::inspect(&std::fs::read(f).unwrap(), &name, 0)
                .unwrap()
                .rows
        })
        .sum();
    assert_eq!(rows, 99);
    let dead = dead_letters(lake.path());
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["reason"], "too_deep");
    assert_eq!(
        (dead[0]["partition"].as_i64(), dead[0]["offset"].as_i64()),
        (Some(0), Some(50))
    );
    assert_eq!(committed(&kafka, "deep"), [(Some(100), 100)]);
}

/// One record dated 2999 among current ones once made every later record of its partition
/// late (here: dead-lettered); an epoch in nanoseconds landed in 1970.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_no_clock_can_mean_are_dead_lettered_and_poison_nothing_else() {
    let kafka = MockKafka::start(1);
    kafka.create_topic(TOPIC, 1);
    let mut records: Vec<Outgoing> = (0..20)
        .map(|i| signal_at(0, i, &format!("2024-03-05T10:{:02}:00Z", i)))
        .collect();
    records.insert(5, signal_at(0, 100, "2999-01-01T00:00:00Z"));
    // 2024-03-05T10:30:00Z in nanoseconds, and a time that is not a number.
    records.push(payload(
        0,
        r#"{"signal":"engine.temperature","timestamp":1709634600000000000,"seq":101}"#.into(),
    ));
    records.push(payload(
        0,
        r#"{"signal":"engine.temperature","timestamp":"NaN","seq":102}"#.into(),
    ));
    produce(&kafka.bootstrap, TOPIC, &records).unwrap();
    let lake = tempfile::tempdir().unwrap();
    let p = pipeline(&kafka.bootstrap, lake.path(), "implausible", "");
    let mut p = p;
    p.window.late_data = sluice_config::LateData::DeadLetter;
    let total = records.len() as u64;
    let summary = run_until(&p, |m| m.records_consumed.get() >= total)
        .await
        .unwrap();
    assert_eq!(summary.records_landed, 21, "{summary:?}");
    let reasons: Vec<_> = dead_letters(lake.path())
        .iter()
        .map(|d| d["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasons, ["implausible_timestamp", "bad_timestamp"]);
    let files = read_ndjson_tree(lake.path());
    let data: Vec<_> = files.iter().filter(|(p, _)| !p.starts_with('_')).collect();
    assert!(
        data.iter()
            .all(|(p, _)| p.starts_with("engine.temperature/2024/03/05/10/")),
        "{:?}",
        data.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    assert_eq!(data.iter().map(|(_, l)| l.len()).sum::<usize>(), 21);
}

/// A worker told to stop while its group rebalances (a second worker joining) exits within
/// bounded time, having committed what landed; librdkafka could block forever destroying a
/// consumer mid-rebalance. The second worker then drains the rest: nothing lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_during_a_rebalance_exits_in_bounded_time() {
    sluice_telemetry::init_logging(false, "warn");
    let (kafka, samples, lake) = loaded_topic(6_000);
    let group = "stop-mid-rebalance";
    let p = pipeline(
        &kafka.bootstrap,
        lake.path(),
        group,
        "[flush]\nmax_age_secs = 1",
    );
    let start = |metrics: Metrics| {
        let (p, shutdown) = (p.clone(), sluice_pipeline::Shutdown::new());
        let stop = shutdown.clone();
        let task = tokio::spawn(async move { sluice_pipeline::run(&p, metrics, shutdown).await });
        (task, stop)
    };
    let (ma, mb) = (Metrics::new("a"), Metrics::new("b"));
    let (a, stop_a) = start(ma.clone());
    wait_for(
        "the first worker's records",
        Duration::from_secs(30),
        || ma.records_consumed.get() > 0,
    )
    .await;
    let (b, stop_b) = start(mb.clone());
    // The second member's join starts a rebalance at once; stop the first in the middle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = Instant::now();
    stop_a.cancel();
    let done = tokio::time::timeout(Duration::from_secs(45), a)
        .await
        .expect("the stopped worker exits in bounded time");
    done.unwrap().expect("and cleanly");
    assert!(stopping.elapsed() < Duration::from_secs(45));

    // Asked off the runtime's threads, and once a second: the worker runs on them.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let bootstrap = kafka.bootstrap.clone();
        if tokio::task::spawn_blocking(move || drained(&bootstrap, group))
            .await
            .unwrap()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the group to drain"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop_b.cancel();
    tokio::time::timeout(Duration::from_secs(45), b)
        .await
        .expect("the second worker exits too")
        .unwrap()
        .unwrap();
    assert_hourly_once(&samples, lake.path(), &p);
}

/// Keys and headers are read from the client only when a record needs them (a dead letter,
/// a signal named by a header): a dead letter keeps them, whether routing or lateness made
/// it one, and a pipeline that names signals by a header routes by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_reach_dead_letters_and_name_signals() {
    let kafka = MockKafka::start(1);
    kafka.create_topic(TOPIC, 1);
    let with_headers = |mut record: Outgoing, sig: &str, trace: &str| {
        record.key = Some(trace.as_bytes().to_vec());
        record.headers = vec![
            ("sig".into(), sig.as_bytes().to_vec()),
            ("trace".into(), trace.as_bytes().to_vec()),
        ];
        record
    };
    let records = vec![
        with_headers(
            signal_at(0, 0, "2024-03-05T10:00:00Z"),
            "cabin.humidity",
            "t-0",
        ),
        with_headers(
            signal_at(0, 1, "2024-03-05T12:00:00Z"),
            "door.opened",
            "t-1",
        ),
        // Its hour closed two hours ago: late.
        with_headers(
            signal_at(0, 2, "2024-03-05T09:00:00Z"),
            "door.opened",
            "t-2",
        ),
        with_headers(payload(0, "{not json".into()), "door.opened", "t-3"),
    ];
    produce(&kafka.bootstrap, TOPIC, &records).unwrap();

    let lake = tempfile::tempdir().unwrap();
    let mut p = pipeline(&kafka.bootstrap, lake.path(), "by-field", "");
    p.window.late_data = sluice_config::LateData::DeadLetter;
    let summary = run_until(&p, |m| m.records_consumed.get() >= 4)
        .await
        .unwrap();
    assert_eq!(summary.records_landed, 2, "{summary:?}");
    // The `trace` header and the key, base64: "t-2" and "t-3".
    let dead: Vec<_> = dead_letters(lake.path())
        .iter()
        .map(|d| {
            let reason = d["reason"].as_str().unwrap().to_string();
            let key = d["key_base64"].clone();
            (reason, d["headers_base64"]["trace"].clone(), key)
        })
        .collect();
    assert_eq!(
        dead,
        [
            ("late".to_string(), json!("dC0y"), json!("dC0y")),
            ("invalid_json".to_string(), json!("dC0z"), json!("dC0z"))
        ]
    );

    let lake = tempfile::tempdir().unwrap();
    let mut p = pipeline(&kafka.bootstrap, lake.path(), "by-header", "");
    p.signal_source = sluice_config::SignalSource::Header("sig".into());
    let summary = run_until(&p, |m| m.records_consumed.get() >= 4)
        .await
        .unwrap();
    assert_eq!(summary.records_landed, 3, "{summary:?}");
    let mut by_signal = std::collections::BTreeMap::new();
    for (path, lines) in read_ndjson_tree(lake.path()) {
        if !path.starts_with('_') {
            let signal = path.split('/').next().unwrap().to_string();
            *by_signal.entry(signal).or_insert(0) += lines.len();
        }
    }
    assert_eq!(
        by_signal.into_iter().collect::<Vec<_>>(),
        [
            ("cabin.humidity".to_string(), 1),
            ("door.opened".to_string(), 2)
        ]
    );
    assert_eq!(
        dead_letters(lake.path())[0]["headers_base64"]["trace"],
        "dC0z"
    );
}
