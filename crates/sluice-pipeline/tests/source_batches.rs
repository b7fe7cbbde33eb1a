//! The run loop's intake takes records a batch per wake (`KafkaSource::next_batch`): every
//! record comes once, in offset order per partition, batches are bounded, and a rebalance
//! ends a batch so that its events are taken before any record polled after them.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_core::PartitionLedgers;
use sluice_kafka::{KafkaSource, PartitionEvent};
use sluice_telemetry::Metrics;
use support::{loaded_topic, TOPIC};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_bring_every_record_once_in_order_and_stop_at_rebalances() {
    const RECORDS: usize = 6_000;
    const MAX: usize = 512;
    let (kafka, _samples, _lake) = loaded_topic(RECORDS);
    let settings = sluice_config::SourceSettings {
        bootstrap_servers: kafka.bootstrap.clone(),
        topics: vec![TOPIC.into()],
        group_id: "batches".into(),
        start_from: "earliest".into(),
        properties: BTreeMap::new(),
        secret_properties: BTreeMap::new(),
        prefetch_kbytes: 16 * 1024,
    };
    let ledgers = Arc::new(Mutex::new(PartitionLedgers::default()));
    let source = KafkaSource::connect(
        &settings,
        ledgers,
        Metrics::new("batches"),
        Box::new(|_| {}),
    )
    .unwrap();

    let mut seen: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut owned: Vec<i32> = Vec::new();
    let (mut batches, mut largest) = (0, 0);
    let mut batch = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.values().map(Vec::len).sum::<usize>() < RECORDS {
        assert!(
            Instant::now() < deadline,
            "records stopped coming: {seen:?}"
        );
        let received =
            tokio::time::timeout(Duration::from_secs(1), source.next_batch(MAX, &mut batch)).await;
        // The events of a rebalance come before every record polled after it.
        for event in source.take_events() {
            if let PartitionEvent::Assigned(tps) = event {
                // New partitions start paused until the pipeline has claimed them.
                source.resume(&tps).unwrap();
                owned.extend(tps.iter().map(|tp| tp.partition));
            }
        }
        let Ok(received) = received else { continue };
        received.unwrap();
        assert!(!batch.is_empty() && batch.len() <= MAX, "{}", batch.len());
        batches += 1;
        largest = largest.max(batch.len());
        for record in batch.drain(..) {
            assert!(
                owned.contains(&record.partition()),
                "a record of partition {} came before its assignment",
                record.partition()
            );
            seen.entry(record.partition())
                .or_default()
                .push(record.offset());
        }
    }
    for (partition, offsets) in &seen {
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(offsets, &expected, "partition {partition}: once, in order");
    }
    assert!(
        largest > 1 && batches < RECORDS,
        "records came one per wake ({batches} batches for {RECORDS} records)"
    );
    source.close(Duration::from_secs(10)).await;
}
