//! The run loop's side of window markers (`markers` does the lake work): starting a round
//! every few seconds with the progress that changed, and applying what a round wrote,
//! fenced and sealed. [`MarkerRounds`] owns the sealer and the round in flight;
//! [`PartitionList`] the cached list of every partition of the topics (catch-up reads it
//! too).

use super::*;

/// Window markers' part of a worker (`window.markers`): at most one round at a time.
pub(crate) struct MarkerRounds {
    sealer: Option<Arc<Sealer>>,
    round: JoinSet<(RoundOutput, Option<LakeError>)>,
    next_round: Instant,
}

impl MarkerRounds {
    pub(crate) fn new(sealer: Option<Sealer>) -> Self {
        Self {
            sealer: sealer.map(Arc::new),
            round: JoinSet::new(),
            next_round: Instant::now() + MARKER_ROUND_EVERY,
        }
    }

    pub(crate) fn sealer(&self) -> Option<&Arc<Sealer>> {
        self.sealer.as_ref()
    }

    /// Makes the next round due now (once the one in flight, if any, is done): with
    /// `--until-caught-up`, the last landings' offsets wait for a round to write their
    /// progress, and the run for their commit.
    pub(crate) fn hurry(&mut self) {
        self.next_round = Instant::now();
    }

    /// The sealer, when no round runs and the next one is due (the next is then scheduled).
    fn due(&mut self) -> Option<Arc<Sealer>> {
        let sealer = self.sealer.clone()?;
        if !self.round.is_empty() || Instant::now() < self.next_round {
            return None;
        }
        self.next_round = Instant::now() + MARKER_ROUND_EVERY;
        Some(sealer)
    }

    /// The round in flight, once it is done.
    pub(crate) async fn next_done(
        &mut self,
    ) -> Option<Result<(RoundOutput, Option<LakeError>), tokio::task::JoinError>> {
        self.round.join_next().await
    }
}

/// Every partition of the topics, and when the brokers were last asked.
#[derive(Default)]
pub(crate) struct PartitionList {
    cached: Option<(Instant, Vec<TopicPartition>)>,
}

impl PartitionList {
    /// Every partition of `topics` (cached; a failed refresh keeps the old list).
    pub(crate) fn get(
        &mut self,
        source: &KafkaSource,
        topics: &[String],
    ) -> Option<Vec<TopicPartition>> {
        if let Some((at, tps)) = &self.cached {
            if at.elapsed() < PARTITIONS_REFRESH {
                return Some(tps.clone());
            }
        }
        match tokio::task::block_in_place(|| source.all_partitions(topics)) {
            Ok(tps) => {
                self.cached = Some((Instant::now(), tps.clone()));
                Some(tps)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the topics' partitions; markers wait");
                self.cached.as_ref().map(|(_, tps)| tps.clone())
            }
        }
    }
}

impl Worker {
    /// Every `MARKER_ROUND_EVERY` (with `window.markers`): in the background, writes the
    /// progress of owned partitions that changed, then seals what all partitions allow.
    pub(crate) fn start_marker_round(&mut self, source: &KafkaSource) {
        let Some(sealer) = self.markers.due() else {
            return;
        };
        if let Some(input) = self.marker_round_input(source, &sealer) {
            self.markers
                .round
                .spawn(async move { sealer.round(input).await });
        }
    }

    /// After the drain: lets the last landings' offsets be committed.
    pub(crate) async fn final_marker_round(&mut self, source: &KafkaSource) {
        let Some(sealer) = self.markers.sealer.clone() else {
            return;
        };
        while let Some(done) = self.markers.next_done().await {
            self.on_marker_round(done);
        }
        let Some(input) = self.marker_round_input(source, &sealer) else {
            return;
        };
        match tokio::time::timeout(SHUTDOWN_STORAGE_PATIENCE, sealer.round(input)).await {
            Ok(done) => self.on_marker_round(Ok(done)),
            Err(_) => tracing::warn!("could not write progress before leaving; the next owner re-reads from the last commit"),
        }
    }

    /// What a marker round needs: this worker's changed progress and every partition (none
    /// while the partitions are unknown).
    pub(crate) fn marker_round_input(
        &mut self,
        source: &KafkaSource,
        sealer: &Sealer,
    ) -> Option<RoundInput> {
        let partitions = self.partitions.get(source, &sealer.topics)?;
        Some(RoundInput {
            writes: self.progress_to_write(sealer),
            partitions,
        })
    }

    /// The progress of each owned, claimed partition that differs from what it last wrote,
    /// with its epoch and ledger generation.
    pub(crate) fn progress_to_write(&self, sealer: &Sealer) -> Vec<(u64, u64, Progress)> {
        let ledgers = self.ledgers.lock().expect("ledger lock");
        let mut out = Vec::new();
        for (tp, owned) in &self.ownership {
            let (Some(epoch), true, Some(p)) = (owned.epoch, owned.ready, self.progress.get(tp))
            else {
                continue;
            };
            let ledger = ledgers.get(tp);
            let landed_until = ledger.and_then(|l| l.committable());
            let waiting = self.waiting.holds(tp);
            let idle = ledger.is_none_or(|l| l.held_buffers() == 0)
                && !waiting
                && !self.backpressure.paused()
                && p.last_record.elapsed() >= sealer.idle_partition;
            let progress = Progress {
                topic: tp.topic.to_string(),
                partition: tp.partition,
                landed_until,
                idle,
                windows: p.windows.clone(),
                history: p.history.clone(),
                owner: self.owner(),
                epoch,
                updated_ms: now_ms(),
            };
            // Idleness is rewritten now and then even unchanged: it must show its owner lives.
            let unchanged = p.written.as_ref().is_some_and(|w| w.same_as(&progress))
                && !(idle
                    && p.written_at
                        .is_none_or(|t| t.elapsed() >= markers::IDLE_REFRESH));
            if !unchanged {
                out.push((epoch, ledger.map_or(0, |l| l.generation()), progress));
            }
        }
        out
    }

    pub(crate) fn on_marker_round(
        &mut self,
        done: Result<(RoundOutput, Option<LakeError>), tokio::task::JoinError>,
    ) {
        let Ok((out, error)) = done else {
            return;
        };
        if let Some(e) = error {
            self.metrics
                .storage_errors
                .with_label_values(&["markers"])
                .inc();
            tracing::warn!(error = %e, "window markers: storage failed; trying again next round");
        }
        {
            let mut ledgers = self.ledgers.lock().expect("ledger lock");
            for (generation, progress) in out.written {
                let tp = TopicPartition::new(progress.topic.clone(), progress.partition);
                if let Some(until) = progress.landed_until {
                    ledgers.allow_commits_to(&tp, generation, until);
                }
                let current = ledgers.get(&tp).map_or(0, |l| l.generation());
                if let (true, Some(p)) = (current == generation, self.progress.get_mut(&tp)) {
                    p.written = Some(progress);
                    p.written_at = Some(Instant::now());
                }
            }
        }
        for tp in &out.fenced {
            self.fence(tp);
        }
        self.metrics.markers_written.inc_by(out.markers_written);
        let (Some(sealed_until), Some(sealer)) = (out.sealed_until, self.markers.sealer()) else {
            return;
        };
        self.metrics
            .windows_sealed_until_seconds
            .set(sealed_until / 1000);
        let ledgers = self.ledgers.lock().expect("ledger lock");
        for (tp, p) in &mut self.progress {
            p.sealed(
                sealed_until,
                sealer.granularity,
                self.lateness.allowed_ms,
                ledgers.get(tp).and_then(|l| l.last_consumed()),
            );
        }
    }
}
