//! Retrying storage operations that failed temporarily.

use super::*;

/// Runs a storage operation until it succeeds or fails permanently. Temporary failures (the
/// store is down, throttling, timing out) are retried forever with capped exponential backoff
/// and jitter: a landing is never dropped, and consumption stalls behind it (backpressure).
///
/// Once `shutdown` is cancelled, retries go on for `SHUTDOWN_STORAGE_PATIENCE` at most: then
/// the error is returned, and the records stay uncommitted for the next run.
pub(crate) async fn with_storage_retries<T, F, Fut>(
    metrics: &Metrics,
    op: &'static str,
    shutdown: Option<&CancellationToken>,
    mut attempt: F,
) -> Result<T, LakeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, LakeError>>,
{
    let mut delay = INITIAL_STORAGE_BACKOFF;
    let mut giving_up_at = None;
    loop {
        if giving_up_at.is_none() && shutdown.is_some_and(CancellationToken::is_cancelled) {
            giving_up_at = Some(Instant::now() + SHUTDOWN_STORAGE_PATIENCE);
        }
        match attempt().await {
            Ok(v) => {
                metrics.lake_up.set(1);
                return Ok(v);
            }
            Err(e) if e.is_retryable() && giving_up_at.is_none_or(|t| Instant::now() < t) => {
                metrics.lake_up.set(0);
                metrics.storage_errors.with_label_values(&[op]).inc();
                metrics.storage_retries.inc();
                // Up to +50 % jitter so that workers do not retry in lockstep.
                let jitter = u64::from(
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .subsec_nanos(),
                ) % (delay.as_millis() as u64 / 2 + 1);
                let wait = delay + Duration::from_millis(jitter);
                tracing::warn!(error = %e, ?wait, "storage unavailable; retrying");
                match shutdown {
                    // A shutdown cuts the wait short: the patience window starts now.
                    Some(token) if giving_up_at.is_none() => {
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = token.cancelled() => {}
                        }
                    }
                    _ => tokio::time::sleep(wait).await,
                }
                delay = (delay * 2).min(MAX_STORAGE_BACKOFF);
            }
            Err(e) => return Err(e),
        }
    }
}
