//! The worker's HTTP endpoint: `/metrics`, `/healthz` (alive) and `/readyz` (owns partitions
//! and the lake answered its last operation).

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::Metrics;

/// Binds `addr` and serves until the process ends. Returns the bound address (port 0 picks one).
pub async fn serve(addr: SocketAddr, metrics: Metrics) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(metrics);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    tracing::info!(%bound, "serving /metrics, /healthz, /readyz");
    Ok(bound)
}

async fn metrics_text(State(m): State<Metrics>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
    )
}

async fn ready(State(m): State<Metrics>) -> impl IntoResponse {
    let partitions = m.assigned_partitions.get();
    let lake = m.lake_up.get() == 1;
    let body = format!(
        "assigned_partitions {partitions}\nlake_up {}\n",
        u8::from(lake)
    );
    if partitions > 0 && lake {
        (StatusCode::OK, body)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}
