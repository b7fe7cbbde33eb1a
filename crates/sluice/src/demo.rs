//! `sluice demo`: the shipped demo pipeline, unchanged but for the broker address and lake
//! directory, running through `sluice_pipeline::run` against librdkafka's in-process mock
//! cluster (a real Kafka-protocol broker on loopback).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sluice_config::PipelineFile;
use sluice_testkit::sample::{generate, outgoing, SampleSpec};
use sluice_testkit::services::MockKafka;

const DEMO_PIPELINE: &str = include_str!("../../../pipelines/demo.toml");

pub async fn run(lake_dir: &Path, records: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut file: PipelineFile = toml::from_str(DEMO_PIPELINE).context("pipelines/demo.toml")?;
    let topic = file.source.topics[0].clone();

    let kafka = MockKafka::start(1);
    kafka.create_topic(&topic, 4);
    let samples = generate(&SampleSpec::new(records, 4, 5));
    let bootstrap = kafka.bootstrap.clone();
    let batch = outgoing(&samples);
    let produce_topic = topic.clone();
    tokio::task::spawn_blocking(move || {
        sluice_testkit::produce(&bootstrap, &produce_topic, &batch)
    })
    .await??;
    println!("produced {records} device signals over 5 hours to topic '{topic}' (4 partitions) on an embedded broker");

    std::fs::create_dir_all(lake_dir)?;
    let lake_dir = lake_dir.canonicalize()?;
    file.source.bootstrap_servers = Some(kafka.bootstrap.clone());
    file.sink.url = lake_dir.to_string_lossy().to_string();
    let pipeline = file
        .validate(&sluice_config::process_env)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Stop once every record was consumed: shutdown lands the open buffers and commits.
    let metrics = sluice_telemetry::Metrics::new(&pipeline.name);
    let summary = sluice_pipeline::run_until(&pipeline, metrics, Duration::from_secs(120), |m| {
        m.records_consumed.get() >= records as u64
    })
    .await?;
    if summary.records_consumed != records as u64 {
        // Where each partition stopped, so a stalled one can be told from a slow run.
        let progress = sluice_kafka::group_progress(
            &kafka.bootstrap,
            &pipeline.source.group_id,
            &topic,
            Duration::from_secs(10),
        )
        .map(|p| {
            p.iter()
                .map(|(n, (c, end))| format!("{n}: committed {c:?} of {end}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|e| format!("unknown ({e})"));
        bail!(
            "consumed {} of {records} records in 120 s; partitions: {progress}",
            summary.records_consumed
        );
    }

    let progress = sluice_kafka::group_progress(
        &kafka.bootstrap,
        &pipeline.source.group_id,
        &topic,
        Duration::from_secs(10),
    )?;
    let all_committed = progress.values().all(|(c, end)| *c == Some(*end));
    let lake = sluice_lake::Lake::open(&pipeline.sink.destination).await?;
    let files = lake.list("").await?;
    // Counted from what landed, read back from the lake: files, lines and bytes per signal.
    let mut by_signal: BTreeMap<String, (usize, usize, u64)> = BTreeMap::new();
    for f in &files {
        let signal = f.path.split('/').next().unwrap_or_default().to_string();
        let lines = lake
            .read(&f.path)
            .await?
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        let e = by_signal.entry(signal).or_default();
        e.0 += 1;
        e.1 += lines;
        e.2 += f.size;
    }

    println!("\nlanded {} files in {}:", files.len(), lake.describe());
    println!(
        "  {:<22} {:>7} {:>9} {:>10}",
        "signal", "files", "records", "bytes"
    );
    for (signal, (n, recs, bytes)) in &by_signal {
        println!("  {signal:<22} {n:>7} {recs:>9} {bytes:>10}");
    }
    println!("\nexample paths:");
    for f in files.iter().step_by((files.len() / 4).max(1)).take(4) {
        println!("  {}", f.path);
    }
    println!(
        "\nrecords: {} consumed, {} landed, {} dead-lettered; offsets committed to the end of every partition: {}",
        summary.records_consumed, summary.records_landed, summary.records_dead_lettered, if all_committed { "yes" } else { "NO" }
    );
    println!("took {:.1} s", started.elapsed().as_secs_f64());
    if !all_committed || summary.records_landed != records as u64 {
        bail!("the demo did not land and commit every record: {progress:?}");
    }
    Ok(())
}

/// `sluice sample`: device signals timed "now", at `rate` per second, in one-second batches.
pub fn sample(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    rate: usize,
    total: usize,
) -> anyhow::Result<()> {
    let mut produced = 0usize;
    let mut seed = 1;
    loop {
        let batch = if total == 0 {
            rate
        } else {
            rate.min(total - produced)
        };
        if batch == 0 {
            return Ok(());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64;
        let mut spec = SampleSpec::new(batch, partitions, 1);
        (spec.start_ms, spec.span_ms, spec.seed) = (now - 1_000, 1_000, seed);
        let started = Instant::now();
        sluice_testkit::produce(bootstrap, topic, &outgoing(&generate(&spec)))
            .with_context(|| format!("producing to {topic} at {bootstrap}"))?;
        produced += batch;
        seed += 1;
        std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
    }
}
