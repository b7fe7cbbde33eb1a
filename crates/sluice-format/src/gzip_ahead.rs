//! Plain NDJSON gzip files whose lines were deflated ahead, a run at a time, while their
//! buffer filled: deflate is most of such a file's CPU, and done at landing it runs after
//! routing instead of beside it. A run is raw deflate that ends in a sync flush (byte-aligned,
//! no final block), made by its own compressor with no history, so runs concatenate into one
//! deflate stream; the lines after the last run are deflated at landing as the final piece.
//! The file is one gzip member (RFC 1952), as readers expect, with the CRC-32 combined from
//! the runs' own. Each run starts without the previous run's window: on the benchmark's
//! lines, runs of 256 KiB are ~4 % larger than one libdeflate call over the same lines, and
//! its files (~1 MB of lines each, the last lines in one libdeflate call) came out 2.2 %
//! larger.

use flate2::{Compress, Compression, FlushCompress};
use std::borrow::Cow;

use crate::deflate::Deflater;
use crate::{EncodeError, EncodeOptions, Encoded, Sink, Written};

/// Lines deflated ahead: raw deflate ending in a sync flush, with the CRC-32 and length of
/// the lines it holds.
#[derive(Debug)]
pub struct DeflatedRun {
    bytes: Vec<u8>,
    crc: u32,
    len: usize,
}

impl DeflatedRun {
    /// Bytes of memory the run takes.
    pub fn held(&self) -> usize {
        self.bytes.capacity()
    }

    /// Length of the lines it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The lines back (for readers other than the file's encoder, and tests).
    pub fn inflate(&self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len);
        let mut z = flate2::Decompress::new(false);
        z.decompress_vec(&self.bytes, &mut out, flate2::FlushDecompress::Sync)
            .map_err(std::io::Error::other)?;
        if out.len() != self.len || crc32fast::hash(&out) != self.crc {
            return Err(std::io::Error::other(format!(
                "a deflated run gave {} bytes, not its {}",
                out.len(),
                self.len
            )));
        }
        Ok(out)
    }
}

/// Deflates runs at one level: zlib's sync flush, which libdeflate has not. It keeps its
/// compressor's tables (~300 KB) from run to run.
pub struct RunDeflater {
    z: Compress,
}

impl RunDeflater {
    pub fn new(level: Compression) -> Self {
        Self {
            z: Compress::new(level, false),
        }
    }

    /// `lines` as a run. (In one call: zlib-rs's bytes differ when the same input comes in
    /// pieces.)
    pub fn run(&mut self, lines: &[u8]) -> DeflatedRun {
        let z = &mut self.z;
        z.reset();
        // Lines compress several times over; the loop grows the room if they do not.
        let mut out = Vec::with_capacity(lines.len() / 3 + 64);
        loop {
            let at = z.total_in() as usize;
            z.compress_vec(&lines[at..], &mut out, FlushCompress::Sync)
                .expect("deflate of bytes in memory cannot fail");
            // Flushed once all input is in and room is left over (zlib's contract).
            if z.total_in() as usize == lines.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(lines.len() / 2 + 64);
        }
        out.shrink_to_fit();
        DeflatedRun {
            bytes: out,
            crc: crc32fast::hash(lines),
            len: lines.len(),
        }
    }
}

/// A piece of a buffer's lines, in order: deflated ahead, or still lines.
pub enum Piece<'a> {
    Deflated(&'a DeflatedRun),
    Lines(Cow<'a, [u8]>),
}

/// Encodes a plain NDJSON gzip file (see [`EncodeOptions::gzips_plain_lines`]) from its
/// pieces in order; `rows` is how many lines they hold.
pub fn encode<'a>(
    pieces: impl IntoIterator<Item = std::io::Result<Piece<'a>>>,
    rows: u64,
    opts: &EncodeOptions,
) -> Result<Encoded, EncodeError> {
    debug_assert!(opts.gzips_plain_lines());
    let level = opts.deflate_level();
    let write = |out: Sink| {
        let mut file = Member::start(level, out)?;
        for piece in pieces {
            match piece? {
                Piece::Deflated(run) => file.run(run)?,
                Piece::Lines(lines) => file.lines(lines),
            }
        }
        file.finish()?;
        Ok(Written {
            rows,
            conflicts: Vec::new(),
        })
    };
    crate::file(opts, 0, write)
}

/// One gzip member being written: header, runs, the final piece, trailer.
struct Member<'a, 'o> {
    out: Sink<'o>,
    level: Compression,
    crc: crc32fast::Hasher,
    len: u64,
    /// Lines since the last run, not deflated yet.
    pending: Cow<'a, [u8]>,
}

impl<'a, 'o> Member<'a, 'o> {
    fn start(level: Compression, out: Sink<'o>) -> std::io::Result<Self> {
        // As libdeflate writes it: no name, mtime 0, the level's hint, OS unknown.
        let xfl = match level.level() {
            0 | 1 => 4,
            8 | 9 => 2,
            _ => 0,
        };
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 0xff])?;
        Ok(Self {
            out,
            level,
            crc: crc32fast::Hasher::new(),
            len: 0,
            pending: Cow::Borrowed(&[]),
        })
    }

    fn lines(&mut self, lines: Cow<'a, [u8]>) {
        if self.pending.is_empty() {
            self.pending = lines;
        } else {
            self.pending.to_mut().extend_from_slice(&lines);
        }
    }

    fn run(&mut self, run: &DeflatedRun) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            self.run(&RunDeflater::new(self.level).run(&pending))?;
        }
        self.out.write_all(&run.bytes)?;
        self.crc.combine(&crc32fast::Hasher::new_with_initial_len(
            run.crc,
            run.len as u64,
        ));
        self.len += run.len as u64;
        Ok(())
    }

    /// The last lines as the final piece (libdeflate's raw deflate ends in a final block),
    /// then the CRC-32 and the length mod 2^32.
    fn finish(mut self) -> std::io::Result<()> {
        let last = std::mem::take(&mut self.pending);
        let mut tail = Vec::new();
        Deflater::new(self.level).raw_into(&last, &mut tail);
        self.out.write_all(&tail)?;
        self.crc.update(&last);
        self.len += last.len() as u64;
        self.out.write_all(&self.crc.finalize().to_le_bytes())?;
        self.out.write_all(&(self.len as u32).to_le_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Codec, FileFormat};
    use std::io::Read;

    fn lines(n: usize, salt: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                format!("{{\"i\":{i},\"s\":\"x{}\"}}\n", (i * 31 + salt) % 97).into_bytes()
            })
            .collect()
    }

    fn gunzip(file: &[u8]) -> Vec<u8> {
        // MultiGzDecoder would hide a second member; one member is what is promised.
        let mut back = Vec::new();
        let mut decoder = flate2::read::GzDecoder::new(file);
        decoder.read_to_end(&mut back).unwrap();
        let rest: Vec<u8> = decoder.into_inner().to_vec();
        assert!(
            rest.is_empty(),
            "{} bytes after the first member",
            rest.len()
        );
        back
    }

    fn opts(level: Option<i32>) -> EncodeOptions {
        let mut opts = EncodeOptions::new(FileFormat::Ndjson, Codec::Gzip);
        opts.level = level;
        opts
    }

    /// Runs, lines between them and a final piece read back as one member, in order, at
    /// every level; a file with no run is what one libdeflate call gives.
    #[test]
    fn runs_and_lines_read_back_as_one_member() {
        let (a, b, c, d) = (lines(3000, 1), lines(10, 2), lines(2000, 3), lines(500, 4));
        for level in [None, Some(1), Some(9)] {
            let opts = opts(level);
            let mut deflater = RunDeflater::new(opts.deflate_level());
            let (ra, rc) = (deflater.run(&a), deflater.run(&c));
            assert_eq!(deflater.run(&a).bytes, ra.bytes, "the same after a reset");
            assert_eq!(ra.inflate().unwrap(), a);
            let pieces = [
                Piece::Deflated(&ra),
                Piece::Lines(Cow::Borrowed(&b[..])),
                Piece::Lines(Cow::Owned(b.clone())),
                Piece::Deflated(&rc),
                Piece::Lines(Cow::Borrowed(&d[..])),
            ];
            let file = encode(pieces.into_iter().map(Ok), 7, &opts).unwrap();
            assert_eq!(file.rows, 7);
            assert_eq!(gunzip(&file.bytes), [&a[..], &b, &b, &c, &d].concat());
            assert!(file.bytes.len() < (a.len() + c.len()) / 3);

            let only_runs = encode([Ok(Piece::Deflated(&ra))], 1, &opts).unwrap();
            assert_eq!(gunzip(&only_runs.bytes), a);
            let plain = encode([Ok(Piece::Lines(Cow::Borrowed(&d[..])))], 1, &opts).unwrap();
            assert_eq!(plain.bytes, Deflater::new(opts.deflate_level()).gzip(&d));
        }
        let empty = encode([], 0, &opts(None)).unwrap();
        assert!(gunzip(&empty.bytes).is_empty());
    }
}
