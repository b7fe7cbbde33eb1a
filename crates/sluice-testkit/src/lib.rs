//! Support shared by the demo, tests and benchmarks: realistic sample signals, a producer,
//! and the real services tests talk to (librdkafka's mock cluster, Tansu, Azurite).

pub mod lake_files;
pub mod sample;
pub mod services;

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

/// One record to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp_ms: Option<i64>,
}

/// Produces `records` to `topic` (each to its own partition) and waits until all are acked.
pub fn produce(bootstrap: &str, topic: &str, records: &[Outgoing]) -> Result<(), KafkaError> {
    produce_batched(bootstrap, topic, records, 10_000)
}

/// Like `produce`, with at most `batch_records` records per record batch.
///
/// Tests that stop a consumer mid-stream and resume it on Tansu use 1: Tansu 0.6.0 answers a
/// fetch from an offset inside a batch with the *next* batch, silently skipping the rest of
/// the batch (seen here: committed 2500 in a batch of 1000..=2999, the consumer got 3000 next).
/// With one record per batch every offset is a batch boundary.
pub fn produce_batched(
    bootstrap: &str,
    topic: &str,
    records: &[Outgoing],
    batch_records: usize,
) -> Result<(), KafkaError> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    produce_with(config, topic, records, batch_records)
}

/// Like `produce_batched`, with a client configuration of the caller's (brokers, security).
pub fn produce_with(
    mut config: ClientConfig,
    topic: &str,
    records: &[Outgoing],
    batch_records: usize,
) -> Result<(), KafkaError> {
    let producer: BaseProducer = config
        .set("linger.ms", if batch_records == 1 { "0" } else { "5" })
        .set("batch.num.messages", batch_records.to_string())
        .set("queue.buffering.max.messages", "200000")
        .set("message.timeout.ms", "60000")
        .create()?;
    for r in records {
        let mut headers = rdkafka::message::OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(rdkafka::message::Header {
                key: k,
                value: Some(v),
            });
        }
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
            .partition(r.partition)
            .headers(headers);
        if let Some(k) = &r.key {
            rec = rec.key(k);
        }
        if let Some(p) = &r.payload {
            rec = rec.payload(p);
        }
        if let Some(ts) = r.timestamp_ms {
            rec = rec.timestamp(ts);
        }
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}
