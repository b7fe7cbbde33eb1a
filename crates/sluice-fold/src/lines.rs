//! A buffer's records as newline-terminated JSON lines, held compactly under memory pressure.
//!
//! Lines go into an open block. While the worker's buffers together hold little, the block
//! just grows (no CPU spent on memory there is plenty of). Once they hold a quarter of the
//! budget or more (in lines, or in open blocks' room), an open block that reaches [`BLOCK_BYTES`] is sealed: compressed with
//! LZ4 (the benchmark's lines shrink ~6× in 64 KiB blocks, at ~1 GB/s), so a drain that
//! holds ~240 MB of lines keeps a fraction of that resident. The bytes counted against the
//! budget and the size limits stay the lines' own length, so files are as large as before.
//! Blocks are runs of bytes, not of lines: an open block that grew large before memory was
//! pressed is sealed in pieces of [`BLOCK_BYTES`], so the sealer's scratch space stays small.
//! Buffers that never fill a block (many signals, each with a few KB) are sealed by a sweep
//! ([`Lines::seal_open`]) that the buffers run now and then while memory is pressed.

use std::io;

/// An open block this long is sealed (when memory is pressed).
pub const BLOCK_BYTES: usize = 64 * 1024;

/// A sweep seals open blocks from this length on: shorter ones compress poorly and cost a
/// vector each. On the benchmark's 1,000-signal topic (24,000 buffers of ~10 KB) the
/// buffers held 84 MB of 239 MB of lines with 1 KiB, 96 MB with 2 KiB or 512 B, 116 MB with
/// 4 KiB.
pub const SWEEP_MIN_BYTES: usize = 1024;

/// Compresses sealed blocks with LZ4: one hash table and scratch space for all buffers.
/// (zstd's level 1 held a third fewer bytes for ~1.7× the CPU: 8 % of an NDJSON-gzip run
/// against 4.5 %, decompression included.)
pub struct Sealer {
    table: lz4_flex::block::CompressTable,
    scratch: Vec<u8>,
}

impl Default for Sealer {
    fn default() -> Self {
        Self {
            table: lz4_flex::block::CompressTable::large(),
            scratch: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
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

#[derive(Debug, Default)]
pub struct Lines {
    /// Compressed blocks, in order, each with its uncompressed length.
    sealed: Vec<(Vec<u8>, usize)>,
    open: Vec<u8>,
    /// Length of all lines, sealed or not.
    len: usize,
}

impl Lines {
    /// Appends `line` and a newline; a sealer is given when memory is pressed.
    pub fn push(&mut self, line: &[u8], seal: Option<&mut Sealer>) {
        if self.len == 0 {
            // Most buffers stay small; a few lines' room first, doubling from there.
            self.open.reserve((line.len() + 1) * 16);
        }
        self.open.extend_from_slice(line);
        self.open.push(b'\n');
        self.len += line.len() + 1;
        if let Some(sealer) = seal.filter(|_| self.open.len() >= BLOCK_BYTES) {
            self.seal_pieces(sealer);
            // A block past the block size (grown before memory was pressed) is not kept.
            self.open.shrink_to(BLOCK_BYTES * 2);
        }
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
            self.sealed.push((sealer.seal(piece), piece.len()));
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
        self.sealed.iter().map(|(b, _)| b.capacity()).sum::<usize>() + self.open.capacity()
    }

    /// The lines as one run of bytes, as they were pushed. Without sealed blocks the open
    /// block is handed over whole, not copied.
    pub fn into_bytes(self) -> io::Result<Vec<u8>> {
        if self.sealed.is_empty() {
            return Ok(self.open);
        }
        let mut out = vec![0u8; self.len];
        let mut at = 0;
        for (block, len) in &self.sealed {
            let n = lz4_flex::block::decompress_into(block, &mut out[at..at + len])
                .map_err(io::Error::other)?;
            if n != *len {
                return Err(io::Error::other(format!(
                    "a sealed block gave {n} bytes, not its {len}"
                )));
            }
            at += len;
        }
        out[at..].copy_from_slice(&self.open);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever was sealed, on a push or by a sweep, the lines come back as pushed, and
        /// their length adds up.
        #[test]
        fn lines_come_back_as_pushed(
            pushes in prop::collection::vec((1usize..40_000, any::<u8>(), 0u8..3), 0..12),
        ) {
            let mut lines = Lines::default();
            let mut sealer = Sealer::default();
            let mut want = Vec::new();
            for (len, byte, seal) in &pushes {
                let line = vec![b'a' + byte % 26; *len];
                lines.push(&line, (*seal == 1).then_some(&mut sealer));
                if *seal == 2 {
                    lines.seal_open(&mut sealer);
                }
                want.extend_from_slice(&line);
                want.push(b'\n');
            }
            prop_assert_eq!(lines.len(), want.len());
            prop_assert_eq!(lines.into_bytes().unwrap(), want);
        }
    }

    #[test]
    fn sealed_lines_hold_a_fraction_of_their_length() {
        let mut lines = Lines::default();
        let mut sealer = Sealer::default();
        for i in 0..20_000 {
            let line = format!(
                r#"{{"deviceId":"device-{:04}","signal":"tire.pressure","value":{i}}}"#,
                i % 300
            );
            lines.push(line.as_bytes(), Some(&mut sealer));
        }
        assert!(lines.len() > 1_000_000);
        assert!(
            lines.held() * 4 < lines.len(),
            "{} held for {}",
            lines.held(),
            lines.len()
        );
        let mut plain = Lines::default();
        for _ in 0..100 {
            plain.push(&[b'x'; 1000], None);
        }
        assert!(plain.held() >= plain.len(), "not pressed: nothing sealed");
    }
}
