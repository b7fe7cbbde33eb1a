//! `KafkaSource::rejoin`, the way out a batch worker takes when the group leaves a partition
//! with no owner: its partitions are revoked (through the events the run loop handles) and
//! the group assigns them afresh.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_core::PartitionLedgers;
use sluice_kafka::{KafkaSource, PartitionEvent};
use sluice_telemetry::Metrics;
use support::{loaded_topic, TOPIC};

/// Takes the source's events until `owned` holds `want` partitions, failing after 30 s.
async fn until_owned(source: &KafkaSource, owned: &mut BTreeSet<i32>, want: usize) -> usize {
    let mut revoked = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut batch = Vec::new();
    while owned.len() != want {
        assert!(Instant::now() < deadline, "owned {owned:?}, wanted {want}");
        // Rebalance callbacks run inside the poll.
        let _ = tokio::time::timeout(
            Duration::from_millis(200),
            source.next_batch(64, &mut batch),
        )
        .await;
        batch.clear();
        for event in source.take_events() {
            match event {
                PartitionEvent::Assigned(tps) => {
                    source.resume(&tps).unwrap();
                    owned.extend(tps.iter().map(|tp| tp.partition));
                }
                PartitionEvent::Revoked(tps) => {
                    revoked += tps.len();
                    for tp in tps {
                        owned.remove(&tp.partition);
                    }
                }
            }
        }
    }
    revoked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejoining_worker_gives_up_its_partitions_and_is_assigned_them_again() {
    let (kafka, _samples, _lake) = loaded_topic(400);
    let settings = sluice_config::SourceSettings {
        bootstrap_servers: kafka.bootstrap.clone(),
        topics: vec![TOPIC.into()],
        group_id: "rejoin".into(),
        start_from: "earliest".into(),
        // The mock cluster makes a rejoining member wait out its old session.
        properties: [
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        secret_properties: BTreeMap::new(),
        prefetch_kbytes: 16 * 1024,
    };
    let ledgers = Arc::new(Mutex::new(PartitionLedgers::default()));
    let source =
        KafkaSource::connect(&settings, ledgers, Metrics::new("rejoin"), Box::new(|_| {})).unwrap();
    let mut owned = BTreeSet::new();
    until_owned(&source, &mut owned, 4).await;
    source.rejoin().unwrap();
    // Every partition goes, then comes back in a new assignment.
    let mut gone = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while gone < 4 {
        assert!(Instant::now() < deadline, "the rejoin revoked {gone} of 4");
        gone += until_owned(&source, &mut owned, 0).await;
    }
    until_owned(&source, &mut owned, 4).await;
    assert_eq!(source.assignment().len(), 4);
    source.close(Duration::from_secs(10)).await;
}
