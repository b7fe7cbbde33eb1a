//! Logs and metrics. Metric names follow `sluice_<stage>_<name>_<unit>[_total]`; labels are
//! bounded (pipeline, signal, topic, partition, format, reason), never paths or error text.

mod http;

pub use http::serve;
use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Sets up `tracing` output on stderr: human-readable, or one JSON object per line.
/// `RUST_LOG` filters (default `default_level`).
pub fn init_logging(json: bool, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colours only on a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // A second init (tests, demo inside a process that already logs) is harmless.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

const PREFIX: &str = "sluice";

/// One worker's metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub records_consumed: IntCounter,
    pub records_skipped: IntCounter,
    pub records_landed: IntCounterVec,
    pub records_dead_lettered: IntCounterVec,
    pub columns_as_json: IntCounterVec,
    pub files_landed: IntCounterVec,
    pub bytes_landed: IntCounterVec,
    pub files_already_present: IntCounter,
    /// Delta table commits by outcome (`committed`, `fenced`, `retried`).
    pub table_commits: IntCounterVec,
    /// Landed data files waiting for their table's commit.
    pub table_files_waiting: IntGauge,
    pub records_already_landed: IntCounter,
    pub open_buffers: IntGauge,
    pub buffered_bytes: IntGauge,
    pub committed_offset: IntGaugeVec,
    pub end_offset: IntGaugeVec,
    pub consumer_lag: IntGaugeVec,
    pub assigned_partitions: IntGauge,
    pub paused: IntGauge,
    pub rebalances: IntCounter,
    /// Partitions taken over from an owner that had not released them (a grace was waited).
    pub unclean_takeovers: IntCounter,
    /// Partitions given up because another worker claimed them in the lake.
    pub fenced: IntCounter,
    /// Window-complete markers written (`window.markers`).
    pub markers_written: IntCounter,
    /// Every window ending before this time (seconds since the epoch) is sealed.
    pub windows_sealed_until_seconds: IntGauge,
    pub buffer_budget_bytes: IntGauge,
    pub flush_duration_seconds: HistogramVec,
    pub file_size_bytes: HistogramVec,
    pub storage_errors: IntCounterVec,
    pub storage_retries: IntCounter,
    pub last_landing_timestamp_seconds: Gauge,
    /// 1 while the lake answered the last operation, 0 after a failure.
    pub lake_up: IntGauge,
    names: Vec<String>,
    /// The `signal` label values handed out so far (see `signal_label`).
    signal_labels: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// How many distinct `signal` label values one worker exports; the signals after them count
/// under [`OTHER_SIGNALS`], so a topic whose signal names are device ids cannot grow the
/// metrics (and a Prometheus server) without bound.
pub const MAX_SIGNAL_LABELS: usize = 200;
/// The `signal` label of every signal past the first [`MAX_SIGNAL_LABELS`].
pub const OTHER_SIGNALS: &str = "_other";

/// Registers metrics and remembers their names (a vector without children renders nothing,
/// so the names cannot be read back from the exposition).
struct Registrar {
    registry: Registry,
    names: Vec<String>,
}

impl Registrar {
    fn add<M: prometheus::core::Collector + Clone + 'static>(&mut self, m: M) -> M {
        // The registry adds the prefix when gathering, so descriptors lack it.
        for d in m.desc() {
            self.names.push(format!("{PREFIX}_{}", d.fq_name));
        }
        self.registry
            .register(Box::new(m.clone()))
            .expect("metric names are unique");
        m
    }

    fn counter(&mut self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help).expect("valid metric"))
    }

    fn counter_vec(&mut self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    fn gauge(&mut self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help).expect("valid metric"))
    }

    fn gauge_vec(&mut self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    fn histogram(&mut self, name: &str, help: &str, buckets: Vec<f64>) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets);
        self.add(HistogramVec::new(opts, &["format"]).expect("valid metric"))
    }
}

impl Metrics {
    pub fn new(pipeline: &str) -> Self {
        let registry = Registry::new_custom(
            Some(PREFIX.into()),
            Some([("pipeline".to_string(), pipeline.to_string())].into()),
        )
        .expect("static prefix and labels are valid");
        let mut r = Registrar {
            registry,
            names: Vec::new(),
        };
        let tp = &["topic", "partition"];
        Self {
            records_consumed: r
                .counter("source_records_consumed_total", "Records read from Kafka."),
            records_skipped: r.counter(
                "route_records_skipped_total",
                "Records whose signal is not exported.",
            ),
            records_landed: r.counter_vec(
                "lake_records_landed_total",
                "Records inside files that landed.",
                &["signal"],
            ),
            records_dead_lettered: r.counter_vec(
                "route_records_dead_lettered_total",
                "Records sent to the dead-letter files, by reason.",
                &["reason"],
            ),
            columns_as_json: r.counter_vec(
                "format_columns_as_json_total",
                "Fields whose values disagreed in type within a file and were written as JSON text (once per field and file).",
                &["signal"],
            ),
            files_landed: r.counter_vec(
                "lake_files_landed_total",
                "Files written to the lake.",
                &["format"],
            ),
            bytes_landed: r.counter_vec(
                "lake_bytes_landed_total",
                "Bytes written to the lake.",
                &["format"],
            ),
            files_already_present: r.counter(
                "lake_files_already_present_total",
                "Landings that found their file already written by an earlier attempt.",
            ),
            table_commits: r.counter_vec(
                "table_commits_total",
                "Delta table commits: committed, fenced (a newer owner had committed), retried.",
                &["outcome"],
            ),
            table_files_waiting: r.gauge(
                "table_files_waiting",
                "Landed data files waiting for their table's commit (their offsets are not committed yet).",
            ),
            records_already_landed: r.counter(
                "lake_records_already_landed_total",
                "Replayed records skipped because a landed file already holds them.",
            ),
            open_buffers: r.gauge(
                "fold_open_buffers",
                "Buffers (signal, window, partition) currently open.",
            ),
            buffered_bytes: r.gauge(
                "fold_buffered_bytes",
                "Bytes held in memory: open buffers and files still landing.",
            ),
            committed_offset: r.gauge_vec(
                "source_committed_offset",
                "Last offset this worker committed (the next record to read).",
                tp,
            ),
            end_offset: r.gauge_vec(
                "source_end_offset",
                "High watermark of the partition, as librdkafka last saw it.",
                tp,
            ),
            consumer_lag: r.gauge_vec(
                "source_consumer_lag_records",
                "Records between the committed offset and the end of the partition.",
                tp,
            ),
            assigned_partitions: r
                .gauge("source_assigned_partitions", "Partitions this worker owns."),
            paused: r.gauge(
                "source_paused",
                "1 while fetching is paused because landings or memory are full.",
            ),
            rebalances: r.counter(
                "source_rebalances_total",
                "Partition assignment changes seen.",
            ),
            unclean_takeovers: r.counter(
                "lake_unclean_takeovers_total",
                "Partitions taken over from a previous owner that had not released them; the new owner waited out the takeover grace.",
            ),
            fenced: r.counter(
                "lake_fenced_total",
                "Partitions this worker stopped writing because another worker had claimed them in the lake.",
            ),
            markers_written: r.counter(
                "lake_markers_written_total",
                "Window-complete _SUCCESS markers this worker wrote.",
            ),
            windows_sealed_until_seconds: r.gauge(
                "lake_windows_sealed_until_seconds",
                "Every window ending before this time has its complete marker (as far as this worker has seen).",
            ),
            buffer_budget_bytes: r.gauge(
                "fold_buffer_budget_bytes",
                "Ceiling on bytes held in open buffers; past it the largest buffers land early.",
            ),
            flush_duration_seconds: r.histogram(
                "lake_flush_duration_seconds",
                "From taking a buffer out to its file having landed.",
                vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ],
            ),
            file_size_bytes: r.histogram(
                "lake_file_size_bytes",
                "Size of landed files.",
                prometheus::exponential_buckets(1024.0, 4.0, 10).expect("valid buckets"),
            ),
            storage_errors: r.counter_vec(
                "lake_storage_errors_total",
                "Storage operations that failed after retries.",
                &["op"],
            ),
            storage_retries: r.counter(
                "lake_storage_retries_total",
                "Storage operations retried after a temporary error.",
            ),
            last_landing_timestamp_seconds: r.add(
                Gauge::new(
                    "lake_last_landing_timestamp_seconds",
                    "Unix time of the last file that landed.",
                )
                .expect("valid metric"),
            ),
            lake_up: r.gauge(
                "lake_up",
                "1 while the lake answered the last operation, 0 after a failure.",
            ),
            registry: r.registry,
            names: r.names,
            signal_labels: Default::default(),
        }
    }

    /// The `signal` label for `signal`: itself for the first `MAX_SIGNAL_LABELS` distinct
    /// signals, `_other` after them.
    pub fn signal_label<'a>(&self, signal: &'a str) -> &'a str {
        let mut seen = self.signal_labels.lock().expect("signal labels lock");
        if seen.contains(signal) {
            signal
        } else if seen.len() < MAX_SIGNAL_LABELS {
            seen.insert(signal.to_string());
            signal
        } else {
            OTHER_SIGNALS
        }
    }

    /// Every metric family name this worker exports (histograms add `_bucket`, `_sum`, `_count`).
    pub fn names(&self) -> &[String] {
        &self.names
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
    fn signal_labels_are_bounded() {
        let m = Metrics::new("p");
        for i in 0..MAX_SIGNAL_LABELS + 50 {
            let name = format!("device-{i}");
            m.records_landed
                .with_label_values(&[m.signal_label(&name)])
                .inc();
        }
        assert_eq!(
            m.signal_label("device-0"),
            "device-0",
            "a known one stays itself"
        );
        let text = m.render();
        let series = text
            .lines()
            .filter(|l| l.starts_with("sluice_lake_records_landed_total{"))
            .count();
        assert_eq!(series, MAX_SIGNAL_LABELS + 1);
        assert!(
            text.contains("{signal=\"_other\",pipeline=\"p\"} 50"),
            "{text}"
        );
    }

    #[test]
    fn renders_prefixed_metrics_with_the_pipeline_label() {
        let m = Metrics::new("p1");
        m.records_consumed.inc_by(3);
        m.records_dead_lettered
            .with_label_values(&["invalid_json"])
            .inc();
        let text = m.render();
        assert!(m
            .names()
            .iter()
            .any(|n| n == "sluice_lake_flush_duration_seconds"));
        assert!(m.names().iter().all(|n| n.starts_with("sluice_")));
        assert!(
            text.contains("sluice_source_records_consumed_total{pipeline=\"p1\"} 3"),
            "{text}"
        );
        assert!(text.contains("sluice_route_records_dead_lettered_total{reason=\"invalid_json\",pipeline=\"p1\"} 1"), "{text}");
    }
}
