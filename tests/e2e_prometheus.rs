//! Acceptance: Debian's `prometheus`, started with the shipped scrape config pointed at a
//! running worker, sees the worker's metrics with the values the run produced.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sluice_e2e::{hourly_tansu_pipeline, sluice_bin, wait_for};
use sluice_testkit::sample::{generate, outgoing, SampleSpec};
use sluice_testkit::services::{free_port, workspace_root, Tansu};

const TOPIC: &str = "metrics";
const RECORDS: usize = 5_000;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(url: &str) -> Option<(u16, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = reqwest::get(url).await.ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().await.ok()?))
    })
}

/// The single value of an instant query, if Prometheus has one.
fn query(prom: u16, promql: &str) -> Option<f64> {
    let url = format!(
        "http://127.0.0.1:{prom}/api/v1/query?query={}",
        url_escape(promql)
    );
    let (_, body) = get(&url)?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_scrapes_the_worker_with_the_shipped_config() {
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 4);
    let records = outgoing(&generate(&SampleSpec::new(RECORDS, 4, 2)));
    sluice_testkit::produce(&tansu.bootstrap, TOPIC, &records).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("pipeline.toml");
    let text = hourly_tansu_pipeline(
        &tansu.bootstrap,
        TOPIC,
        "e2e-metrics",
        &dir.path().join("lake"),
        "[flush]\nmax_age_secs = 1",
    );
    std::fs::write(&pipeline, text).unwrap();
    let metrics_port = free_port();
    let _worker = KillOnDrop(
        Command::new(sluice_bin())
            .args(["run", "--listen", &format!("127.0.0.1:{metrics_port}")])
            .arg(&pipeline)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // The shipped configuration, with its targets pointed at this worker and a fast scrape.
    let shipped = workspace_root().join("deploy/prometheus");
    let config = std::fs::read_to_string(shipped.join("prometheus.yml")).unwrap();
    let targets = r#"["sluice-worker-1:9898", "sluice-worker-2:9898"]"#;
    assert!(
        config.contains(targets),
        "the shipped scrape targets changed; update this test"
    );
    let config = config
        .replace(targets, &format!(r#"["127.0.0.1:{metrics_port}"]"#))
        .replace("scrape_interval: 15s", "scrape_interval: 1s");
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    std::fs::copy(shipped.join("alerts.yml"), dir.path().join("alerts.yml")).unwrap();
    let prom_port = free_port();
    let prometheus =
        std::env::var("SLUICE_PROMETHEUS_BIN").unwrap_or_else(|_| "/usr/bin/prometheus".into());
    let _prometheus = KillOnDrop(
        Command::new(&prometheus)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {prometheus} ({e}); scripts/test installs Debian's prometheus")
            }),
    );

    wait_for(
        "Prometheus to see every record landed",
        Duration::from_secs(180),
        || query(prom_port, "sum(sluice_lake_records_landed_total)") == Some(RECORDS as f64),
    );
    assert_eq!(query(prom_port, r#"up{job="sluice"}"#), Some(1.0));
    assert_eq!(
        query(prom_port, "sum(sluice_source_records_consumed_total)"),
        Some(RECORDS as f64)
    );
    assert_eq!(
        query(prom_port, "sum(sluice_lake_files_landed_total)").map(|n| n > 0.0),
        Some(true)
    );
    assert_eq!(query(prom_port, "min(sluice_lake_up)"), Some(1.0));
    assert_eq!(
        query(prom_port, "sum(sluice_source_assigned_partitions)"),
        Some(4.0)
    );
    // Everything landed, so the committed offsets reach the produced count.
    wait_for(
        "committed offsets to reach the records produced",
        Duration::from_secs(60),
        || query(prom_port, "sum(sluice_source_committed_offset)") == Some(RECORDS as f64),
    );
    let (status, body) = get(&format!("http://127.0.0.1:{metrics_port}/readyz")).unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _) = get(&format!("http://127.0.0.1:{metrics_port}/healthz")).unwrap();
    assert_eq!(status, 200);
}
