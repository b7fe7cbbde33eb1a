//! Committing offsets: only up to the first record not inside a landed file (the ledgers
//! say where that is), only for partitions still owned, and once more at shutdown.

use std::time::{Duration, Instant};

use sluice_kafka::KafkaSource;

use crate::{Worker, FINAL_COMMIT_PATIENCE};

impl Worker {
    /// Commits what has landed; false when the broker refused or could not be reached.
    pub(crate) fn commit(&mut self, source: &KafkaSource) -> bool {
        let commits: Vec<_> = {
            let ledgers = self.ledgers.lock().expect("ledger lock");
            ledgers
                .uncommitted()
                .into_iter()
                .filter(|(tp, _)| self.ownership.contains_key(tp))
                .collect()
        };
        if commits.is_empty() {
            return true;
        }
        // A synchronous commit is one broker round trip; keep it off the async workers' backs.
        match tokio::task::block_in_place(|| source.commit(&commits)) {
            Ok(()) => {
                self.ledgers
                    .lock()
                    .expect("ledger lock")
                    .mark_committed(&commits);
                for (tp, off) in &commits {
                    // Records before a committed offset are never judged again.
                    if let Some(p) = self.progress.get_mut(tp) {
                        p.history.prune(*off);
                    }
                    self.metrics
                        .committed_offset
                        .with_label_values(&[&*tp.topic, &tp.partition.to_string()])
                        .set(*off);
                }
                tracing::debug!(?commits, "committed");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "commit failed; retrying");
                false
            }
        }
    }

    /// The last commit before leaving: retried for a while (a broker that just came back needs
    /// a moment to find the group coordinator), since every record it misses is read again.
    pub(crate) async fn final_commit(&mut self, source: &KafkaSource) {
        let deadline = Instant::now() + FINAL_COMMIT_PATIENCE;
        while !self.commit(source) {
            if Instant::now() >= deadline {
                tracing::error!(
                    "could not commit landed offsets before leaving; the next owner re-reads them"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
