//! A buffer's records as newline-terminated JSON lines, held compactly under memory pressure.
//!
//! Lines go into an open block. While the worker's buffers together hold little, the block
//! just grows (no CPU spent on memory there is plenty of). Once they hold a quarter of the
//! budget or more (in lines, or in open blocks' room), an open block that reaches
//! [`BLOCK_BYTES`] is sealed: compressed with LZ4 (the benchmark's lines shrink ~6× in 64 KiB
//! blocks, at ~1 GB/s), so a drain that holds ~240 MB of lines keeps a fraction of that
//! resident. The bytes counted against the budget and the size limits stay the lines' own
//! length, so files are as large as before. Blocks are runs of bytes, not of lines: an open
//! block that grew large before memory was pressed is sealed in pieces of [`BLOCK_BYTES`], so
//! the sealer's scratch space stays small. Buffers that never fill a block (many signals,
//! each with a few KB) are sealed by a sweep ([`Lines::seal_open`]) that the buffers run now
//! and then while memory is pressed.
//!
//! For plain NDJSON gzip files the sealer deflates ahead instead ([`crate::ahead`]): every
//! [`RUN_BYTES`] of lines (LZ4 blocks of a sweep included) become a run for the deflating
//! threads, pressed or not. Runs are cut by the lines alone, so a file's bytes do not depend
//! on when sweeps came.

use std::borrow::Cow;
use std::io;
use std::sync::Arc;

use sluice_format::gzip_ahead::Piece;

use crate::ahead::{Ahead, AheadRun, RUN_BYTES};

/// An open block this long is sealed (when memory is pressed).
pub const BLOCK_BYTES: usize = 64 * 1024;

/// A sweep seals open blocks from this length on: shorter ones compress poorly and cost a
/// vector each. On the benchmark's 1,000-signal topic (24,000 buffers of ~10 KB) the
/// buffers held 84 MB of 239 MB of lines with 1 KiB, 96 MB with 2 KiB or 512 B, 116 MB with
/// 4 KiB.
pub const SWEEP_MIN_BYTES: usize = 1024;

/// Compresses sealed blocks with LZ4: one hash table and scratch space for all buffers.
/// (zstd's level 1 held a third fewer bytes for ~1.7× the CPU: 8 % of an NDJSON-gzip run
/// against 4.5 %, decompression included.) With `ahead`, runs of lines go to the deflating
/// threads.
pub struct Sealer {
    table: lz4_flex::block::CompressTable,
    scratch: Vec<u8>,
    ahead: Option<Ahead>,
}

impl Default for Sealer {
    fn default() -> Self {
        Self {
            table: lz4_flex::block::CompressTable::large(),
            scratch: Vec::new(),
            ahead: None,
        }
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
    /// The sealer for buffers of files made with `options`: one that deflates ahead for
    /// plain NDJSON gzip files.
    pub fn for_files(options: &sluice_format::EncodeOptions) -> Self {
        match options.gzips_plain_lines() {
            true => Self::deflating_ahead(options.deflate_level()),
            false => Self::default(),
        }
    }

    /// Whether it deflates runs of lines ahead.
    pub fn deflates_ahead(&self) -> bool {
        self.ahead.is_some()
    }

    /// A sealer that also deflates runs of lines ahead, at `level`, on threads of its own.
    pub fn deflating_ahead(level: flate2::Compression) -> Self {
        Self {
            ahead: Some(Ahead::start(level)),
            ..Self::default()
        }
    }

    /// `block` compressed, in a vector of exactly its size.
    fn seal(&mut self, block: &[u8]) -> Vec<u8> {
        let bound = lz4_flex::block::get_maximum_output_size(block.len());
        if self.scratch.len() < bound {
            self.scratch.resize(bound, 0);
        }
        let n =
            lz4_flex::block::compress_into_with_table(block, &mut self.scratch, &mut self.table)
                .expect("output of the maximum size");
        self.scratch[..n].to_vec()
    }
}

/// An LZ4 block's lines back; `len` is their length.
fn unseal(block: &[u8], len: usize) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; len];
    unseal_into(block, &mut out)?;
    Ok(out)
}

/// An LZ4 block's lines into `out`, which is exactly as long as they are.
fn unseal_into(block: &[u8], out: &mut [u8]) -> io::Result<()> {
    let n = lz4_flex::block::decompress_into(block, out).map_err(io::Error::other)?;
    if n != out.len() {
        return Err(io::Error::other(format!(
            "a sealed block gave {n} bytes, not its {}",
            out.len()
        )));
    }
    Ok(())
}

/// Lines held other than open, in order.
#[derive(Debug)]
enum Sealed {
    /// An LZ4 block and its lines' length.
    Lz4(Vec<u8>, usize),
    /// A run deflated ahead (or waiting for it).
    Ahead(Arc<AheadRun>),
}

#[derive(Debug, Default)]
pub struct Lines {
    /// The lines are bound for a plain NDJSON gzip file: runs are deflated ahead (when the
    /// sealer does).
    gzip_file: bool,
    sealed: Vec<Sealed>,
    open: Vec<u8>,
    /// Length of all lines, sealed or not.
    len: usize,
    /// Length of the lines after the last run deflated ahead.
    since_run: usize,
}

impl Lines {
    /// Lines for a plain NDJSON gzip file (`gzip_file`), or any other.
    pub fn new(gzip_file: bool) -> Self {
        Self {
            gzip_file,
            ..Self::default()
        }
    }

    /// Appends `line` and a newline. `pressed` says memory is: LZ4 blocks are then sealed.
    pub fn push(&mut self, line: &[u8], sealer: &mut Sealer, pressed: bool) {
        if self.open.capacity() == 0 {
            // Most buffers stay small; a few lines' room first, doubling from there.
            self.open.reserve((line.len() + 1) * 16);
        }
        self.open.extend_from_slice(line);
        self.open.push(b'\n');
        self.len += line.len() + 1;
        self.since_run += line.len() + 1;
        if let Some(ahead) = sealer.ahead.as_ref().filter(|_| self.gzip_file) {
            if self.since_run >= RUN_BYTES {
                self.cut_run(ahead);
            }
        } else if pressed && self.open.len() >= BLOCK_BYTES {
            self.seal_pieces(sealer);
            // A block past the block size (grown before memory was pressed) is not kept.
            self.open.shrink_to(BLOCK_BYTES * 2);
        }
    }

    /// Hands the lines since the last run to the deflating threads.
    fn cut_run(&mut self, ahead: &Ahead) {
        let first = self
            .sealed
            .iter()
            .rposition(|s| matches!(s, Sealed::Ahead(_)))
            .map_or(0, |i| i + 1);
        // The lines since the last run: LZ4 blocks of sweeps, then the open ones.
        let run = Lines {
            gzip_file: false,
            sealed: self.sealed.drain(first..).collect(),
            open: std::mem::take(&mut self.open),
            len: self.since_run,
            since_run: self.since_run,
        };
        let run = ahead.queue(run);
        self.sealed.push(Sealed::Ahead(run));
        self.since_run = 0;
    }

    /// Seals the open block if it holds at least [`SWEEP_MIN_BYTES`], and gives its room
    /// back: a buffer that stays small would otherwise hold its lines and their growth slack
    /// uncompressed until it lands.
    pub fn seal_open(&mut self, sealer: &mut Sealer) {
        if self.open.len() >= SWEEP_MIN_BYTES {
            self.seal_pieces(sealer);
            self.open = Vec::new();
        }
    }

    fn seal_pieces(&mut self, sealer: &mut Sealer) {
        for piece in self.open.chunks(BLOCK_BYTES) {
            self.sealed
                .push(Sealed::Lz4(sealer.seal(piece), piece.len()));
        }
        self.open.clear();
    }

    /// Length of the lines (newlines included), however they are held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of memory the open block takes (its room, not only its lines).
    pub fn open_capacity(&self) -> usize {
        self.open.capacity()
    }

    /// Bytes of memory the lines take now (sealed blocks compressed).
    pub fn held(&self) -> usize {
        let sealed: usize = self
            .sealed
            .iter()
            .map(|s| match s {
                Sealed::Lz4(block, _) => block.capacity(),
                Sealed::Ahead(run) => run.held(),
            })
            .sum();
        sealed + self.open.capacity()
    }

    /// The lines in order, as runs deflated ahead and lines (LZ4 blocks read back, open ones
    /// borrowed): what `sluice_format::gzip_ahead::encode` takes.
    pub fn pieces(&self) -> impl Iterator<Item = io::Result<Piece<'_>>> {
        let sealed = self.sealed.iter().map(|s| match s {
            Sealed::Lz4(block, len) => unseal(block, *len).map(|l| Piece::Lines(Cow::Owned(l))),
            Sealed::Ahead(run) => run.deflated().map(Piece::Deflated),
        });
        sealed.chain(std::iter::once(Ok(Piece::Lines(Cow::Borrowed(
            &self.open[..],
        )))))
    }

    /// The lines as one run of bytes, as they were pushed. Without sealed blocks the open
    /// block is handed over whole, not copied.
    pub fn into_bytes(self) -> io::Result<Vec<u8>> {
        if self.sealed.is_empty() {
            return Ok(self.open);
        }
        let mut out = Vec::with_capacity(self.len);
        for sealed in &self.sealed {
            match sealed {
                Sealed::Lz4(block, len) => {
                    let at = out.len();
                    out.resize(at + len, 0);
                    unseal_into(block, &mut out[at..])?;
                }
                Sealed::Ahead(run) => out.extend_from_slice(&run.deflated()?.inflate()?),
            }
        }
        out.extend_from_slice(&self.open);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Read;

    /// The gzip file the pieces make, read back.
    fn gunzipped(lines: &Lines) -> Vec<u8> {
        let opts = sluice_format::EncodeOptions::new(
            sluice_format::FileFormat::Ndjson,
            sluice_format::Codec::Gzip,
        );
        let file = sluice_format::gzip_ahead::encode(lines.pieces(), 0, &opts).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&file.bytes[..])
            .read_to_end(&mut back)
            .unwrap();
        back
    }

    proptest! {
        /// Whatever was sealed, on a push or by a sweep, LZ4 or deflated ahead, the lines
        /// come back as pushed, as bytes and as a gzip file, and their length adds up.
        #[test]
        fn lines_come_back_as_pushed(
            pushes in prop::collection::vec((1usize..40_000, any::<u8>(), 0u8..3), 0..24),
            ahead in any::<bool>(),
        ) {
            let mut lines = Lines::new(true);
            let mut sealer = match ahead {
                true => Sealer::deflating_ahead(flate2::Compression::fast()),
                false => Sealer::default(),
            };
            let mut want = Vec::new();
            for (len, byte, seal) in &pushes {
                let line = vec![b'a' + byte % 26; *len];
                lines.push(&line, &mut sealer, *seal == 1);
                if *seal == 2 {
                    lines.seal_open(&mut sealer);
                }
                want.extend_from_slice(&line);
                want.push(b'\n');
            }
            prop_assert_eq!(lines.len(), want.len());
            prop_assert_eq!(&gunzipped(&lines), &want);
            prop_assert_eq!(lines.into_bytes().unwrap(), want);
        }
    }

    #[test]
    fn sealed_lines_hold_a_fraction_of_their_length() {
        let line = |i: usize| {
            format!(
                r#"{{"deviceId":"device-{:04}","signal":"tire.pressure","value":{i}}}"#,
                i % 300
            )
        };
        for mut sealer in [
            Sealer::default(),
            Sealer::deflating_ahead(flate2::Compression::default()),
        ] {
            let mut lines = Lines::new(true);
            for i in 0..20_000 {
                lines.push(line(i).as_bytes(), &mut sealer, true);
            }
            assert!(lines.len() > 1_000_000);
            // Runs deflated ahead are held by their lines until a thread has done them.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while lines.held() * 4 >= lines.len() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            assert!(
                lines.held() * 4 < lines.len(),
                "{} held for {}",
                lines.held(),
                lines.len()
            );
        }
        let mut plain = Lines::default();
        for _ in 0..100 {
            plain.push(&[b'x'; 1000], &mut Sealer::default(), false);
        }
        assert!(plain.held() >= plain.len(), "not pressed: nothing sealed");
    }

    /// A run's file bytes depend on the lines alone, not on when sweeps sealed some of them.
    #[test]
    fn runs_are_cut_by_the_lines_alone() {
        let file = |sweep_every: usize| {
            let mut sealer = Sealer::deflating_ahead(flate2::Compression::default());
            let mut lines = Lines::new(true);
            for i in 0..30_000 {
                let line = format!(r#"{{"i":{i},"v":"x{}"}}"#, i * 7919 % 1000);
                lines.push(line.as_bytes(), &mut sealer, false);
                if i % sweep_every == 0 {
                    lines.seal_open(&mut sealer);
                }
            }
            let opts = sluice_format::EncodeOptions::new(
                sluice_format::FileFormat::Ndjson,
                sluice_format::Codec::Gzip,
            );
            sluice_format::gzip_ahead::encode(lines.pieces(), 0, &opts)
                .unwrap()
                .bytes
        };
        assert_eq!(file(1_000_000), file(97));
    }
}
