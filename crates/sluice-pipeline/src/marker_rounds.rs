//! The run loop's side of window markers (`markers` does the lake work): starting a round
//! every few seconds with the progress that changed, and applying what a round wrote,
//! fenced and sealed.

use super::*;

impl Worker {
    /// Every `MARKER_ROUND_EVERY` (with `window.markers`): in the background, writes the
    /// progress of owned partitions that changed, then seals what all partitions allow.
    pub(crate) fn start_marker_round(&mut self, source: &KafkaSource) {
        let Some(sealer) = self.sealer.clone() else {
            return;
        };
        if !self.marker_round.is_empty() || Instant::now() < self.next_marker_round {
            return;
        }
        self.next_marker_round = Instant::now() + MARKER_ROUND_EVERY;
        if let Some(input) = self.marker_round_input(source, &sealer) {
            self.marker_round
                .spawn(async move { sealer.round(input).await });
        }
    }

    /// After the drain: lets the last landings' offsets be committed.
    pub(crate) async fn final_marker_round(&mut self, source: &KafkaSource) {
        let Some(sealer) = self.sealer.clone() else {
            return;
        };
        while let Some(done) = self.marker_round.join_next().await {
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
        let partitions = self.all_partitions(source, &sealer.topics)?;
        Some(RoundInput {
            writes: self.progress_to_write(sealer),
            partitions,
        })
    }

    /// Every partition of `topics` (cached; a failed refresh keeps the old list).
    pub(crate) fn all_partitions(
        &mut self,
        source: &KafkaSource,
        topics: &[String],
    ) -> Option<Vec<TopicPartition>> {
        if let Some((at, tps)) = &self.all_partitions {
            if at.elapsed() < PARTITIONS_REFRESH {
                return Some(tps.clone());
            }
        }
        match tokio::task::block_in_place(|| source.all_partitions(topics)) {
            Ok(tps) => {
                self.all_partitions = Some((Instant::now(), tps.clone()));
                Some(tps)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the topics' partitions; markers wait");
                self.all_partitions.as_ref().map(|(_, tps)| tps.clone())
            }
        }
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
            let waiting = self
                .pending
                .iter()
                .any(|r| r.partition == tp.partition && r.topic == tp.topic);
            let idle = ledger.is_none_or(|l| l.held_buffers() == 0)
                && !waiting
                && !self.paused
                && p.last_record.elapsed() >= sealer.idle_partition;
            let progress = Progress {
                topic: tp.topic.clone(),
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
        let (Some(sealed_until), Some(sealer)) = (out.sealed_until, &self.sealer) else {
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
                self.allowed_lateness_ms,
                ledgers.get(tp).and_then(|l| l.last_consumed()),
            );
        }
    }
}
