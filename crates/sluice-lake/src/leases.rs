//! Partition leases in the lake: fencing for workers the group has replaced without telling
//! them (a "zombie" that still polls, or a worker paused longer than its session).
//!
//! Each ownership of a partition claims the next epoch, `_leases/{topic}/{partition}/
//! {epoch:020}.json`, with a write-if-absent, so two claims can never share an epoch. Before
//! every landing attempt the owner lists that directory: an epoch above its own means another
//! worker has taken the partition over, and it must not write. An owner that handed the
//! partition over cleanly (no landing left in flight) writes `{epoch:020}.released`; a worker
//! whose predecessor did not must wait out one write timeout before it lists the lake, so that
//! a write its predecessor began before the takeover has finished (see `sluice-pipeline`).

use crate::{Lake, LakeError, Landed};

/// Under the sink root; a leading `_` keeps Spark, Hive and friends from reading it as data.
pub const LEASE_DIR: &str = "_leases";

/// How the previous owner of a partition left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handover {
    /// No worker ever owned the partition in this lake.
    First,
    /// The previous owner released it with no write in flight.
    Released,
    /// The previous owner crashed, or may still be writing.
    Unclean,
}

/// This worker's ownership of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub epoch: u64,
    pub handover: Handover,
}

/// What a partition's lease directory holds.
#[derive(Debug, Default)]
struct Epochs {
    latest: Option<u64>,
    latest_released: bool,
    all: Vec<String>,
}

fn dir(topic: &str, partition: i32) -> String {
    format!("{LEASE_DIR}/{topic}/{partition}/")
}

impl Lake {
    async fn epochs(&self, topic: &str, partition: i32) -> Result<Epochs, LakeError> {
        let dir = dir(topic, partition);
        let mut out = Epochs::default();
        let mut released = Vec::new();
        for f in self.list(&dir).await? {
            let name = &f.path[f.path.rfind('/').map_or(0, |i| i + 1)..];
            if let Some(e) = name
                .strip_suffix(".json")
                .and_then(|e| e.parse::<u64>().ok())
            {
                out.latest = out.latest.max(Some(e));
            } else if let Some(e) = name
                .strip_suffix(".released")
                .and_then(|e| e.parse::<u64>().ok())
            {
                released.push(e);
            }
            out.all.push(f.path);
        }
        out.latest_released = out.latest.is_some_and(|l| released.contains(&l));
        Ok(out)
    }

    /// Claims the next epoch of `topic`/`partition` for `owner` (free text, for people reading
    /// the lease). Older epochs but the previous one are deleted: every owner checks for any
    /// epoch above its own, which the newest always is.
    pub async fn claim_partition(
        &self,
        topic: &str,
        partition: i32,
        owner: &str,
    ) -> Result<Claim, LakeError> {
        let dir = dir(topic, partition);
        loop {
            let epochs = self.epochs(topic, partition).await?;
            let epoch = epochs.latest.map_or(1, |l| l + 1);
            let handover = match epochs.latest {
                None => Handover::First,
                Some(_) if epochs.latest_released => Handover::Released,
                Some(_) => Handover::Unclean,
            };
            let body = serde_json::json!({
                "owner": owner,
                "claimed_at": chrono::Utc::now().to_rfc3339(),
            });
            let path = format!("{dir}{epoch:020}.json");
            // `land` is the store's atomic write-if-absent (probed at open).
            match self.land(&path, body.to_string()).await? {
                Landed::Written => {
                    // Tidying only: a failure leaves a few more small files to list.
                    let keep = [
                        format!("{dir}{:020}.", epoch - 1),
                        format!("{dir}{epoch:020}."),
                    ];
                    for old in epochs
                        .all
                        .iter()
                        .filter(|p| !keep.iter().any(|k| p.starts_with(k)))
                    {
                        let _ = self.op.delete(old).await;
                    }
                    return Ok(Claim { epoch, handover });
                }
                // Another worker claimed this epoch at the same moment: look again.
                Landed::AlreadyPresent => continue,
            }
        }
    }

    /// Whether a worker has claimed `topic`/`partition` after `epoch`.
    pub async fn superseded(
        &self,
        topic: &str,
        partition: i32,
        epoch: u64,
    ) -> Result<bool, LakeError> {
        Ok(self
            .epochs(topic, partition)
            .await?
            .latest
            .is_some_and(|l| l > epoch))
    }

    /// Says that the owner of `epoch` has nothing in flight any more: the next owner may start
    /// at once.
    pub async fn release_partition(
        &self,
        topic: &str,
        partition: i32,
        epoch: u64,
    ) -> Result<(), LakeError> {
        let path = format!("{}{epoch:020}.released", dir(topic, partition));
        self.land(&path, Vec::new()).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_config::Destination;

    #[tokio::test]
    async fn epochs_advance_and_fence_older_owners() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&Destination::Fs {
            root: dir.path().to_string_lossy().into(),
        })
        .await
        .unwrap();
        let first = lake.claim_partition("t", 3, "a").await.unwrap();
        assert_eq!(
            first,
            Claim {
                epoch: 1,
                handover: Handover::First
            }
        );
        assert!(!lake.superseded("t", 3, 1).await.unwrap());
        // A takeover without a release: the old owner is fenced, the new one must wait.
        let second = lake.claim_partition("t", 3, "b").await.unwrap();
        assert_eq!(second.handover, Handover::Unclean);
        assert!(lake.superseded("t", 3, 1).await.unwrap());
        assert!(!lake.superseded("t", 3, 2).await.unwrap());
        // Another partition is independent.
        assert!(!lake.superseded("t", 4, 1).await.unwrap());
        lake.release_partition("t", 3, 2).await.unwrap();
        let third = lake.claim_partition("t", 3, "c").await.unwrap();
        assert_eq!(
            third,
            Claim {
                epoch: 3,
                handover: Handover::Released
            }
        );
        // Only the newest epochs stay, and the oldest owner is still fenced.
        let left: Vec<_> = lake
            .list("_leases/t/3/")
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(
            left,
            [
                "_leases/t/3/00000000000000000002.json",
                "_leases/t/3/00000000000000000002.released",
                "_leases/t/3/00000000000000000003.json"
            ]
        );
        assert!(lake.superseded("t", 3, 1).await.unwrap());
    }
}
