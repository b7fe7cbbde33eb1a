//! Deflating lines ahead of their file, beside routing: plain NDJSON gzip files spend most
//! of their CPU in deflate, and a buffer's runs of lines ([`RUN_BYTES`] each) are handed to
//! threads of their own as they fill, so that at landing only the lines after the last run
//! are left to deflate (`sluice_format::gzip_ahead` joins them into one gzip member). The
//! threads take runs oldest first; a run whose buffer lands before its turn is deflated by
//! the landing itself, and one whose buffer is dropped is skipped.

use std::sync::{mpsc, Arc, Mutex, OnceLock, Weak};

use flate2::Compression;
use sluice_format::gzip_ahead::{DeflatedRun, RunDeflater};

use crate::lines::Lines;

/// A buffer cuts a run once this many bytes of lines followed the last one. On the
/// benchmark's lines, runs of 64 KiB were 10 % larger than one libdeflate call over the
/// whole file, 256 KiB 4 %, 1 MiB 2 %; runs much longer than 256 KiB would rarely fill in
/// buffers of ~1 MB, and their lines would be deflated at landing.
pub const RUN_BYTES: usize = 256 * 1024;

/// One run: its lines, then (once a thread or the landing deflated them) its deflate.
pub(crate) struct AheadRun {
    /// The run's lines (LZ4 blocks a memory sweep sealed, and open ones) until deflated.
    lines: Mutex<Option<Lines>>,
    level: Compression,
    run: OnceLock<std::io::Result<DeflatedRun>>,
}

impl std::fmt::Debug for AheadRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AheadRun")
    }
}

impl AheadRun {
    /// The run deflated: now, unless a thread did it already (or is doing it: then this
    /// waits for it).
    pub(crate) fn deflated(&self) -> std::io::Result<&DeflatedRun> {
        match self.run.get() {
            Some(run) => as_io(run),
            None => self.deflated_by(&mut RunDeflater::new(self.level)),
        }
    }

    /// The run deflated, by `deflater` if not yet.
    fn deflated_by(&self, deflater: &mut RunDeflater) -> std::io::Result<&DeflatedRun> {
        as_io(self.run.get_or_init(|| {
            let lines = self
                .lines
                .lock()
                .expect("run lock")
                .take()
                .expect("taken once, by the one initializer");
            Ok(deflater.run(&lines.into_bytes()?))
        }))
    }

    /// Bytes of memory it takes now.
    pub(crate) fn held(&self) -> usize {
        match self.run.get() {
            Some(Ok(run)) => run.held(),
            Some(Err(_)) => 0,
            None => self
                .lines
                .lock()
                .expect("run lock")
                .as_ref()
                .map_or(0, Lines::held),
        }
    }
}

fn as_io(run: &std::io::Result<DeflatedRun>) -> std::io::Result<&DeflatedRun> {
    run.as_ref()
        .map_err(|e| std::io::Error::new(e.kind(), e.to_string()))
}

/// The deflating threads, fed through a queue; they stop when this is dropped.
pub(crate) struct Ahead {
    level: Compression,
    queue: mpsc::Sender<Weak<AheadRun>>,
}

impl Ahead {
    /// Threads: one fewer than the cores (routing keeps one busy), at least one.
    pub(crate) fn start(level: Compression) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (queue, runs) = mpsc::channel::<Weak<AheadRun>>();
        let runs = Arc::new(Mutex::new(runs));
        for _ in 0..cores.saturating_sub(1).clamp(1, 8) {
            let runs = runs.clone();
            std::thread::Builder::new()
                .name("deflate-ahead".into())
                .spawn(move || {
                    let mut deflater = RunDeflater::new(level);
                    loop {
                        let next = runs.lock().expect("queue lock").recv();
                        match next.map(|run| run.upgrade()) {
                            // An error is kept in the run; its landing reports it.
                            Ok(Some(run)) => {
                                let _ = run.deflated_by(&mut deflater);
                            }
                            Ok(None) => {}
                            Err(mpsc::RecvError) => return,
                        }
                    }
                })
                .expect("a thread to deflate ahead");
        }
        Self { level, queue }
    }

    /// Queues `lines` to be deflated.
    pub(crate) fn queue(&self, lines: Lines) -> Arc<AheadRun> {
        let run = Arc::new(AheadRun {
            lines: Mutex::new(Some(lines)),
            level: self.level,
            run: OnceLock::new(),
        });
        // The threads live as long as the sender: sending cannot fail.
        let _ = self.queue.send(Arc::downgrade(&run));
        run
    }
}
