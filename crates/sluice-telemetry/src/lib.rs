//! Logs and metrics. Metric names follow `sluice_<stage>_<name>_<unit>[_total]`; labels are
//! bounded (pipeline, signal, topic, partition, format, reason), never paths or error text.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Sets up `tracing` output on stderr: human-readable, or one JSON object per line.
/// `RUST_LOG` filters (default `default_level`).
pub fn init_logging(json: bool, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests, demo inside a process that already logs) is harmless.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// One worker's metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub records_consumed: IntCounter,
    pub records_skipped: IntCounter,
    pub records_landed: IntCounterVec,
    pub records_dead_lettered: IntCounterVec,
    pub files_landed: IntCounterVec,
    pub bytes_landed: IntCounterVec,
    pub files_already_present: IntCounter,
    pub open_buffers: IntGauge,
    pub buffered_bytes: IntGauge,
    pub committed_offset: IntGaugeVec,
    pub rebalances: IntCounter,
}

impl Metrics {
    pub fn new(pipeline: &str) -> Self {
        let registry = Registry::new_custom(
            Some("sluice".into()),
            Some([("pipeline".to_string(), pipeline.to_string())].into()),
        )
        .expect("static prefix and labels are valid");
        fn reg<M: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: M) -> M {
            r.register(Box::new(m.clone()))
                .expect("metric names are unique");
            m
        }
        let counter = |name: &str, help: &str| {
            reg(
                &registry,
                IntCounter::new(name, help).expect("valid metric"),
            )
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let gauge = |name: &str, help: &str| {
            reg(&registry, IntGauge::new(name, help).expect("valid metric"))
        };
        Self {
            records_consumed: counter("source_records_consumed_total", "Records read from Kafka."),
            records_skipped: counter(
                "route_records_skipped_total",
                "Records whose signal is not exported.",
            ),
            records_landed: counter_vec(
                "lake_records_landed_total",
                "Records inside files that landed.",
                &["signal"],
            ),
            records_dead_lettered: counter_vec(
                "route_records_dead_lettered_total",
                "Records sent to the dead-letter files, by reason.",
                &["reason"],
            ),
            files_landed: counter_vec(
                "lake_files_landed_total",
                "Files written to the lake.",
                &["format"],
            ),
            bytes_landed: counter_vec(
                "lake_bytes_landed_total",
                "Bytes written to the lake.",
                &["format"],
            ),
            files_already_present: counter(
                "lake_files_already_present_total",
                "Landings that found their file already written by an earlier attempt.",
            ),
            open_buffers: gauge(
                "fold_open_buffers",
                "Buffers (signal, window, partition) currently open.",
            ),
            buffered_bytes: gauge("fold_buffered_bytes", "Bytes held in open buffers."),
            committed_offset: reg(
                &registry,
                IntGaugeVec::new(
                    Opts::new("source_committed_offset", "Last committed offset."),
                    &["topic", "partition"],
                )
                .expect("valid metric"),
            ),
            rebalances: counter(
                "source_rebalances_total",
                "Partition assignment changes seen.",
            ),
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_metrics_with_the_pipeline_label() {
        let m = Metrics::new("p1");
        m.records_consumed.inc_by(3);
        m.records_dead_lettered
            .with_label_values(&["invalid_json"])
            .inc();
        let text = m.render();
        assert!(
            text.contains("sluice_source_records_consumed_total{pipeline=\"p1\"} 3"),
            "{text}"
        );
        assert!(text.contains("sluice_route_records_dead_lettered_total{reason=\"invalid_json\",pipeline=\"p1\"} 1"), "{text}");
    }
}
