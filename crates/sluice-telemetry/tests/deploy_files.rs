//! The shipped dashboard and alert rules use only metrics a worker exports: no dead panels.

use std::path::Path;

use sluice_telemetry::Metrics;

fn deploy(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `sluice_...` metric name in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("sluice_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        out.push(name);
    }
    out
}

fn exported(name: &str, names: &[String]) -> bool {
    let base = ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    names.iter().any(|n| n == name || n == base)
}

#[test]
fn every_dashboard_query_uses_exported_metrics() {
    let names = Metrics::new("p").names().to_vec();
    let dashboard: serde_json::Value =
        serde_json::from_str(&deploy("grafana/dashboards/sluice.json")).unwrap();
    let mut used = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            let found = metric_names(expr);
            assert!(
                !found.is_empty(),
                "panel {} queries no Sluice metric: {expr}",
                panel["title"]
            );
            for n in found {
                assert!(
                    exported(&n, &names),
                    "panel {} uses {n}, which no worker exports",
                    panel["title"]
                );
                used += 1;
            }
        }
    }
    assert!(used >= 20, "only {used} metric uses");
}

#[test]
fn every_alert_rule_uses_exported_metrics() {
    let names = Metrics::new("p").names().to_vec();
    let rules = deploy("prometheus/alerts.yml");
    let found = metric_names(&rules);
    assert!(found.len() >= 8);
    for n in found {
        assert!(
            exported(&n, &names),
            "alerts.yml uses {n}, which no worker exports"
        );
    }
}
