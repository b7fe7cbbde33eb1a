//! The landing tasks and the buffers queued for one: [`Landings`] owns the tasks, the queue,
//! the encode budget, and where and how files are written. A buffer taken to land waits in
//! the queue until fewer than [`LANDING_TASKS`] tasks run: taken as tasks at once, the
//! 24,000 buffers of a thousand signals at the end of a drain held ~2.8 KB of task state
//! each on top of their lines (~70 MB).

use std::collections::VecDeque;

use super::*;
use crate::encode_budget::EncodeBudget;
use crate::landing::LandedFile;

/// Landing tasks at once. More wait in the queue; with a remote lake this many writes are
/// outstanding while the encodes (as many as the encode budget lets) go on.
const LANDING_TASKS: usize = 256;

/// A buffer taken to land, not yet a task: what its task needs from the moment it was taken.
pub(crate) struct Queued {
    pub(crate) buffer: Buffer,
    /// The scheduled run (its time, ms) the file belongs to, for its manifest.
    pub(crate) run: Option<i64>,
    /// The partition's ledger generation and lake epoch when the buffer was taken.
    pub(crate) generation: u64,
    pub(crate) epoch: Option<u64>,
    /// When it was taken (a landing's duration counts from here).
    pub(crate) taken: Instant,
}

/// Where and how the files of one buffer key are written.
pub(crate) struct Layout<'a> {
    pub(crate) template: &'a PathTemplate,
    /// Prepended to the rendered path (`_late/` for diverted late records).
    pub(crate) prefix: &'static str,
    pub(crate) signal: SignalName,
    pub(crate) window: Window,
    pub(crate) options: EncodeOptions,
    /// File extension, compression included.
    ext: String,
    pub(crate) dead_letter: bool,
}

impl Layout<'_> {
    pub(crate) fn values<'v>(
        &'v self,
        key: &'v BufferKey,
        first: i64,
        last: i64,
    ) -> PathValues<'v> {
        PathValues {
            signal: &self.signal,
            window: self.window,
            topic: &key.tp.topic,
            partition: key.tp.partition,
            first_offset: first,
            last_offset: last,
            ext: &self.ext,
        }
    }
}

/// The landing tasks, the buffers queued for one, and where and how files are written.
pub(crate) struct Landings {
    tasks: JoinSet<Result<LandedFile, PipelineError>>,
    queue: VecDeque<Queued>,
    /// Bytes of the queued buffers' lines.
    queued_bytes: u64,
    /// Encoding is CPU-bound, and an encode holds several times its lines: landings wait
    /// for room in the encode budget (bytes, and one encode per core).
    pub(crate) encode_budget: EncodeBudget,
    path: PathTemplate,
    pub(crate) dead_letter_path: PathTemplate,
    pub(crate) encoding: Encoding,
}

impl Landings {
    pub(crate) fn new(sink: &sluice_config::SinkSettings, budget_bytes: u64) -> Self {
        Self {
            tasks: JoinSet::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            encode_budget: EncodeBudget::new(
                budget_bytes,
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            path: sink.path.clone(),
            dead_letter_path: sink.dead_letter_path.clone(),
            encoding: sink.encoding.clone(),
        }
    }

    /// Files landing now or queued to.
    pub(crate) fn len(&self) -> usize {
        self.tasks.len() + self.queue.len()
    }

    /// Bytes of the buffers queued to land (a landing task's are counted by backpressure).
    pub(crate) fn queued_bytes(&self) -> u64 {
        self.queued_bytes
    }

    pub(crate) fn queue(&mut self, queued: Queued) {
        self.queued_bytes += queued.buffer.lines.len() as u64;
        self.queue.push_back(queued);
    }

    /// The next queued buffer, if a landing task may start.
    pub(crate) fn next_to_start(&mut self) -> Option<Queued> {
        if self.tasks.len() >= LANDING_TASKS {
            return None;
        }
        let queued = self.queue.pop_front()?;
        self.queued_bytes -= queued.buffer.lines.len() as u64;
        Some(queued)
    }

    /// Drops the queued buffers of `tp` (no longer owned: its next owner reads them again).
    pub(crate) fn forget(&mut self, tp: &TopicPartition) -> usize {
        let before = self.queue.len();
        let mut freed = 0;
        self.queue.retain(|q| {
            let keep = q.buffer.key.tp != *tp;
            if !keep {
                freed += q.buffer.lines.len() as u64;
            }
            keep
        });
        self.queued_bytes -= freed;
        before - self.queue.len()
    }

    pub(crate) fn spawn(
        &mut self,
        task: impl std::future::Future<Output = Result<LandedFile, PipelineError>> + Send + 'static,
    ) -> tokio::task::AbortHandle {
        self.tasks.spawn(task)
    }

    /// The landing that finished next.
    pub(crate) async fn next_done(&mut self) -> Option<LandingDone> {
        self.tasks.join_next_with_id().await
    }

    /// Where and how the files of `key` are written.
    pub(crate) fn layout(&self, key: &BufferKey) -> Layout<'_> {
        match &key.target {
            Target::Signal {
                signal,
                window,
                late,
            } => Layout {
                template: &self.path,
                prefix: if *late { LATE_PREFIX } else { "" },
                signal: signal.clone(),
                window: *window,
                ext: self.encoding.options.extension(),
                options: self.encoding.for_signal(signal),
                dead_letter: false,
            },
            // Dead letters are always NDJSON: they carry raw bytes, not the signal's columns.
            Target::DeadLetter { window } => Layout {
                template: &self.dead_letter_path,
                prefix: "",
                signal: SignalName::dead_letter(),
                window: *window,
                ext: FileFormat::Ndjson.extension(Codec::None),
                options: EncodeOptions::new(FileFormat::Ndjson, Codec::None),
                dead_letter: true,
            },
        }
    }
}

/// A finished landing task: its id (for the bytes it held) and what it did.
pub(crate) type LandingDone =
    Result<(tokio::task::Id, Result<LandedFile, PipelineError>), tokio::task::JoinError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn landings() -> Landings {
        let text = r#"
name = "q"
[source]
bootstrap_servers = "b:9092"
topics = ["t"]
group_id = "g"
[window]
time = "ingestion"
granularity = "hour"
[sink]
url = "/tmp/q"
"#;
        Landings::new(
            &sluice_config::parse(text, &|_| None).unwrap().sink,
            1 << 28,
        )
    }

    /// Buffers of `signals` signals on partition `p`, each holding one line of `line` bytes.
    fn buffers(p: i32, signals: usize, line: usize) -> Vec<Buffer> {
        let mut b = Buffers::new(
            sluice_config::FlushPolicy::default(),
            sluice_fold::Sealer::default(),
        );
        let window = Window::containing(0, Granularity::Hour);
        for s in 0..signals {
            let key = BufferKey {
                tp: TopicPartition::new("t", p),
                target: Target::Signal {
                    signal: SignalName::sanitize(&format!("s{s}")),
                    window,
                    late: false,
                },
            };
            b.append(key, s as i64, &vec![b'x'; line], Instant::now());
        }
        b.take_all()
    }

    fn queued(buffer: Buffer) -> Queued {
        Queued {
            buffer,
            run: None,
            generation: 0,
            epoch: None,
            taken: Instant::now(),
        }
    }

    #[tokio::test]
    async fn starts_at_most_its_task_limit_and_forgets_a_partitions_queue() {
        let mut l = landings();
        for b in buffers(0, LANDING_TASKS + 3, 9)
            .into_iter()
            .chain(buffers(1, 5, 9))
        {
            l.queue(queued(b));
        }
        assert_eq!(l.len(), LANDING_TASKS + 8);
        assert_eq!(l.queued_bytes(), 10 * (LANDING_TASKS as u64 + 8));
        // Tasks that never end, as landings waiting on a slow lake.
        while let Some(q) = l.next_to_start() {
            assert_eq!(q.buffer.key.tp.partition, 0, "in the order queued");
            l.spawn(std::future::pending());
        }
        assert_eq!(l.tasks.len(), LANDING_TASKS);
        assert_eq!(l.len(), LANDING_TASKS + 8);
        assert_eq!(l.forget(&TopicPartition::new("t", 0)), 3);
        assert_eq!(l.forget(&TopicPartition::new("t", 1)), 5);
        assert_eq!((l.len(), l.queued_bytes()), (LANDING_TASKS, 0));
        assert!(l.next_to_start().is_none());
    }
}
