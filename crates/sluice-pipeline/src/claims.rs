//! Partition ownership as the run loop sees it: claiming newly assigned partitions in the
//! lake (and waiting out a takeover's grace), letting them flow once claimed, dropping what
//! a revoked or fenced partition held, and claiming fenced ones again. [`Claims`] owns the
//! claims in flight, the fenced partitions and the epochs this worker held before; the
//! owned partitions themselves are the worker's `ownership` map (every part reads it).

use super::*;

pub(crate) struct Claims {
    /// Counts assignments, to tell a claim's own assignment from a later one.
    assignments: u64,
    tasks: JoinSet<ClaimDone>,
    /// Partitions another worker claimed in the lake, and when to claim them again (if the
    /// group still says they are this worker's: twice the takeover grace later).
    fenced: HashMap<TopicPartition, Instant>,
    /// The epoch this worker last held per partition, to recognise its own handovers.
    own_previous: HashMap<TopicPartition, u64>,
    /// How long a takeover waits for a previous owner that did not release its partition.
    takeover_grace: Duration,
}

impl Claims {
    pub(crate) fn new(takeover_grace: Duration) -> Self {
        Self {
            assignments: 0,
            tasks: JoinSet::new(),
            fenced: HashMap::new(),
            own_previous: HashMap::new(),
            takeover_grace,
        }
    }

    /// The claim in flight that finished next.
    pub(crate) async fn next_done(&mut self) -> Option<Result<ClaimDone, tokio::task::JoinError>> {
        self.tasks.join_next().await
    }

    /// The group took `tp` away; `epoch` is what this worker held of it.
    pub(crate) fn revoked(&mut self, tp: TopicPartition, epoch: Option<u64>) {
        self.fenced.remove(&tp);
        if let Some(epoch) = epoch {
            self.own_previous.insert(tp, epoch);
        }
    }

    /// Another worker claimed `tp`: it is claimed again twice the takeover grace from now (if
    /// the group still says it is this worker's).
    fn fenced(&mut self, tp: TopicPartition) {
        self.fenced
            .insert(tp, Instant::now() + 2 * self.takeover_grace);
    }

    /// Claiming `tp` again failed before it started: tried again a takeover grace from now.
    fn again_later(&mut self, tp: TopicPartition, now: Instant) {
        self.fenced.insert(tp, now + self.takeover_grace);
    }

    /// Fenced partitions due to be claimed again (taken off the list).
    fn due_again(&mut self, now: Instant) -> Vec<TopicPartition> {
        let due: Vec<_> = self
            .fenced
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in &due {
            self.fenced.remove(tp);
        }
        due
    }
}

/// A finished claim: the partition, which assignment claimed it, and the claim with the
/// previous owner's progress (with window markers).
pub(crate) type ClaimDone = (
    TopicPartition,
    u64,
    Result<(Claim, Option<Progress>), LakeError>,
);

/// Marks the given lake epochs released, giving up after `patience` (the next owners then
/// wait out the takeover grace instead).
pub(crate) async fn release_all(lake: &Lake, held: &[(TopicPartition, u64)], patience: Duration) {
    let releases = async {
        for (tp, epoch) in held {
            match lake
                .release_partition(&tp.topic, tp.partition, *epoch)
                .await
            {
                Ok(()) => tracing::debug!(%tp, epoch, "released partition"),
                Err(e) => tracing::warn!(%tp, error = %e, "could not release partition"),
            }
        }
    };
    if tokio::time::timeout(patience, releases).await.is_err() {
        tracing::warn!("could not release partitions in time; their next owners wait");
    }
}

impl Worker {
    /// Drops everything this worker holds for `tp`: its ownership, and its buffers,
    /// unlanded and uncommitted, so the partition's next owner reads those records again
    /// (the next ownership lists the lake again too).
    pub(crate) fn forget(&mut self, tp: &TopicPartition) -> Option<Ownership> {
        let owned = self.ownership.remove(tp);
        self.landed.forget_partition(tp);
        if let Some(t) = &mut self.tables {
            t.forget(tp);
        }
        self.progress.remove(tp);
        self.waiting.forget(tp);
        // Buffers queued to land go too: they are as unlanded as the open ones.
        let dropped = self.buffers.take_partition(tp).len() + self.landings.forget(tp);
        self.inflight.reopen(tp);
        if dropped > 0 {
            tracing::info!(%tp, buffers = dropped, "dropped buffers of a partition no longer owned");
        }
        self.metrics
            .assigned_partitions
            .set(self.ownership.len() as i64);
        owned
    }

    /// Takes on newly assigned partitions: each is paused until its lake claim is in (and,
    /// after an unclean handover, the grace has passed).
    pub(crate) fn own(&mut self, source: &KafkaSource, tps: Vec<TopicPartition>) {
        if let Err(e) = source.pause(&tps) {
            tracing::warn!(error = %e, "cannot pause newly assigned partitions");
        }
        for tp in tps {
            self.inflight.reopen(&tp);
            self.claims.assignments += 1;
            let assignment = self.claims.assignments;
            self.ownership
                .insert(tp.clone(), Ownership::new(assignment));
            let (lake, metrics, shutdown) = (
                self.lake.clone(),
                self.metrics.clone(),
                self.shutdown.clone(),
            );
            let owner = self.owner();
            let markers = self.markers.sealer().is_some();
            self.claims.tasks.spawn(async move {
                let claim = with_storage_retries(&metrics, "claim", Some(&shutdown), || {
                    lake.claim_partition(&tp.topic, tp.partition, &owner)
                })
                .await;
                // Read after the claim: the previous owner cannot write it any more.
                let claim = match claim {
                    Ok(claim) if markers => {
                        let path = markers::progress_path(&tp);
                        with_storage_retries(&metrics, "read", Some(&shutdown), || {
                            lake.read_if_exists(&path)
                        })
                        .await
                        .map(|body| {
                            let previous = body.and_then(|b| serde_json::from_slice(&b).ok());
                            (claim, previous)
                        })
                    }
                    other => other.map(|claim| (claim, None)),
                };
                (tp, assignment, claim)
            });
        }
        self.metrics
            .assigned_partitions
            .set(self.ownership.len() as i64);
    }

    pub(crate) fn on_claimed(
        &mut self,
        done: Result<ClaimDone, tokio::task::JoinError>,
    ) -> Result<(), PipelineError> {
        let Ok((tp, assignment, claim)) = done else {
            return Ok(());
        };
        let (claim, previous) = claim?;
        let Some(owned) = self
            .ownership
            .get_mut(&tp)
            .filter(|o| o.assignment == assignment)
        else {
            // Revoked meanwhile: hand the epoch straight back.
            let lake = self.lake.clone();
            tokio::spawn(async move {
                release_all(&lake, &[(tp, claim.epoch)], RELEASE_PATIENCE).await;
            });
            return Ok(());
        };
        let wait = ownership::must_wait(
            &claim,
            self.claims.own_previous.get(&tp).copied(),
            self.inflight.idle(&tp),
        );
        owned.epoch = Some(claim.epoch);
        self.progress
            .insert(tp.clone(), PartitionProgress::adopt(previous));
        owned.ready_at = Some(
            Instant::now()
                + if wait {
                    self.claims.takeover_grace
                } else {
                    Duration::ZERO
                },
        );
        self.epochs
            .lock()
            .expect("epochs lock")
            .insert(tp.clone(), claim.epoch);
        if wait {
            self.metrics.unclean_takeovers.inc();
            tracing::info!(%tp, epoch = claim.epoch, grace = ?self.claims.takeover_grace, "claimed a partition its previous owner did not release; waiting for its writes to finish");
        } else {
            tracing::info!(%tp, epoch = claim.epoch, handover = ?claim.handover, "claimed partition");
        }
        Ok(())
    }

    /// Lets records of partitions whose claim (and grace) is through flow: those that waited
    /// are routed first, in order, then fetching resumes.
    pub(crate) fn start_ready(&mut self, source: &KafkaSource) {
        let now = Instant::now();
        let mut started = Vec::new();
        for (tp, owned) in &mut self.ownership {
            if !owned.ready && owned.ready_at.is_some_and(|t| t <= now) {
                owned.ready = true;
                self.waiting.release(std::mem::take(&mut owned.waiting));
                started.push(tp.clone());
            }
        }
        if started.is_empty() {
            return;
        }
        if !self.backpressure.paused() {
            if let Err(e) = source.resume(&started) {
                tracing::warn!(error = %e, "cannot resume partitions");
            }
        }
    }

    pub(crate) fn ready_partitions(&self) -> Vec<TopicPartition> {
        self.ownership
            .iter()
            .filter(|(_, o)| o.ready)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// Another worker claimed `tp` in the lake: this worker's ownership is over whatever the
    /// group says. Its buffers are dropped uncommitted, like on a revocation.
    pub(crate) fn fence(&mut self, tp: &TopicPartition) {
        if self.forget(tp).is_none() {
            return;
        }
        tracing::warn!(%tp, "another worker claimed this partition in the lake; dropping it");
        self.metrics.fenced.inc();
        // What the rebalance callback does on a revocation.
        self.epochs.lock().expect("epochs lock").remove(tp);
        self.ledgers.lock().expect("ledger lock").remove(tp);
        self.claims.fenced(tp.clone());
    }

    /// A fenced partition that the group still says is this worker's is claimed again after
    /// a while: otherwise a broker that never moves it would leave it unread.
    pub(crate) fn reclaim_fenced(&mut self, source: &KafkaSource) {
        let now = Instant::now();
        let due = self.claims.due_again(now);
        if due.is_empty() {
            return;
        }
        let assignment = source.assignment();
        let again: Vec<_> = due
            .into_iter()
            .filter(|tp| assignment.contains(tp))
            .collect();
        if again.is_empty() {
            return;
        }
        tracing::info!(
            ?again,
            "claiming fenced partitions again: the group still assigns them here"
        );
        for tp in again {
            // Records fetched while fenced, or dropped with its buffers, were never landed
            // here; the new ownership starts at the last commit, like any other.
            match tokio::task::block_in_place(|| source.rewind_to_committed(&tp)) {
                Ok(()) => self.own(source, vec![tp]),
                Err(e) => {
                    tracing::warn!(%tp, error = %e, "cannot rewind to the committed offset; trying later");
                    self.claims.again_later(tp, now);
                }
            }
        }
    }
}
