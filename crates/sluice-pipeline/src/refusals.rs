//! Encoding a buffer so that no record can stop the pipeline: when a format refuses the
//! buffer, each record is tried alone, the ones it refuses are set aside to be dead-lettered
//! (each under its own offset, so a replay writes the same dead-letter file again and finds
//! it there), and the rest is encoded without them.

use sluice_fold::{DeadReason, Lines};
use sluice_format::{EncodeError, EncodeOptions, Encoded};

/// A record the format could not encode.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) offset: i64,
    /// The line as it was buffered, without its newline.
    pub(crate) line: Vec<u8>,
    pub(crate) reason: DeadReason,
}

/// A buffer's file (none when the format refused every record) and its refused records.
pub(crate) struct Encoding {
    pub(crate) file: Option<Encoded>,
    pub(crate) refused: Vec<Refused>,
}

fn refusal(e: &EncodeError) -> DeadReason {
    DeadReason::new("unencodable", e.to_string())
}

/// Encodes a buffer's lines (one per offset in `offsets`). A plain NDJSON gzip file is made
/// from their pieces, runs deflated ahead among them; nothing in plain lines can be refused.
/// Any other file goes through [`encode_or_refuse`].
pub(crate) fn encode_buffer(
    lines: Lines,
    offsets: &[i64],
    options: &EncodeOptions,
) -> Result<Encoding, String> {
    if options.gzips_plain_lines() {
        let file = sluice_format::gzip_ahead::encode(lines.pieces(), offsets.len() as u64, options)
            .map_err(|e| e.to_string())?;
        return Ok(Encoding {
            file: Some(file),
            refused: Vec::new(),
        });
    }
    let ndjson = lines
        .into_bytes()
        .map_err(|e| format!("reading the buffered lines back: {e}"))?;
    encode_or_refuse(&ndjson, offsets, options, sluice_format::encode).map_err(|e| e.to_string())
}

/// Encodes `ndjson` (one line per offset in `offsets`), setting aside what `encode` refuses.
/// An error that is not about the records (compression, encryption) would fail any file: it
/// is returned, and the buffer stays unlanded.
pub(crate) fn encode_or_refuse(
    ndjson: &[u8],
    offsets: &[i64],
    options: &EncodeOptions,
    encode: impl Fn(&[u8], &EncodeOptions) -> Result<Encoded, EncodeError>,
) -> Result<Encoding, EncodeError> {
    let whole = match encode(ndjson, options) {
        Ok(file) => {
            return Ok(Encoding {
                file: Some(file),
                refused: Vec::new(),
            })
        }
        Err(e) if !e.is_about_records() => return Err(e),
        Err(e) => e,
    };
    tracing::warn!(error = %whole, "the format refused a buffer; trying its records one by one");
    let lines = sluice_format::table::lines(ndjson);
    let mut kept = Vec::with_capacity(ndjson.len());
    let mut refused = Vec::new();
    for (line, offset) in lines.zip(offsets) {
        let mut alone = Vec::with_capacity(line.len() + 1);
        alone.extend_from_slice(line);
        alone.push(b'\n');
        match encode(&alone, options) {
            Ok(_) => kept.extend_from_slice(&alone),
            Err(e) if !e.is_about_records() => return Err(e),
            Err(e) => refused.push(Refused {
                offset: *offset,
                line: line.to_vec(),
                reason: refusal(&e),
            }),
        }
    }
    let kept_offsets: Vec<i64> = {
        let refused_at: std::collections::HashSet<i64> = refused.iter().map(|r| r.offset).collect();
        offsets
            .iter()
            .copied()
            .filter(|o| !refused_at.contains(o))
            .collect()
    };
    if kept.is_empty() {
        return Ok(Encoding {
            file: None,
            refused,
        });
    }
    match encode(&kept, options) {
        Ok(file) if !refused.is_empty() => Ok(Encoding {
            file: Some(file),
            refused,
        }),
        Err(e) if !e.is_about_records() => Err(e),
        // Every record encodes alone but not together (or still not): none can be kept with
        // certainty, so all go to the dead letters with the buffer's error.
        other => {
            let reason = refusal(other.as_ref().err().unwrap_or(&whole));
            let lines = kept.split(|b| *b == b'\n').filter(|l| !l.is_empty());
            refused.extend(lines.zip(kept_offsets).map(|(line, offset)| Refused {
                offset,
                line: line.to_vec(),
                reason: reason.clone(),
            }));
            refused.sort_by_key(|r| r.offset);
            Ok(Encoding {
                file: None,
                refused,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_format::{Codec, FileFormat};

    fn parquet() -> EncodeOptions {
        EncodeOptions::new(FileFormat::Parquet, Codec::None)
    }

    #[test]
    fn a_refused_record_is_set_aside_and_the_rest_lands() {
        // Deeper than serde_json's own limit: what a pipeline without the routing check met.
        let deep = format!("{{\"v\":{}1{}}}", "[".repeat(300), "]".repeat(300));
        let ndjson = format!("{{\"v\":[1]}}\n{deep}\n{{\"v\":[2]}}\n");
        let out = encode_or_refuse(ndjson.as_bytes(), &[10, 11, 12], &parquet(), |b, o| {
            sluice_format::encode(b, o)
        })
        .unwrap();
        assert_eq!(out.file.expect("the others land").rows, 2);
        assert_eq!(out.refused.len(), 1);
        assert_eq!(out.refused[0].offset, 11);
        assert_eq!(out.refused[0].line, deep.as_bytes());
        assert_eq!(out.refused[0].reason.label, "unencodable");
    }

    #[test]
    fn records_refused_only_together_all_go_to_the_dead_letters() {
        let ndjson = b"{\"a\":1}\n{\"a\":2}\n";
        // A format that takes one record at a time only.
        let out = encode_or_refuse(ndjson, &[1, 2], &parquet(), |b, o| {
            if b.iter().filter(|c| **c == b'\n').count() > 1 {
                Err(EncodeError::Schema("together".into()))
            } else {
                sluice_format::encode(b, o)
            }
        })
        .unwrap();
        assert!(out.file.is_none());
        assert_eq!(
            out.refused.iter().map(|r| r.offset).collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(out.refused[0].reason.detail.contains("together"));
    }

    #[test]
    fn a_buffer_the_format_takes_is_encoded_once() {
        let calls = std::cell::Cell::new(0);
        let out = encode_or_refuse(b"{\"a\":1}\n", &[5], &parquet(), |b, o| {
            calls.set(calls.get() + 1);
            sluice_format::encode(b, o)
        })
        .unwrap();
        assert!(out.file.is_some() && out.refused.is_empty());
        assert_eq!(calls.get(), 1);
    }

    /// Encryption or compression failing would fail every file: no record is dead-lettered
    /// for it, the buffer stays unlanded.
    #[test]
    fn a_failure_of_the_file_not_the_records_refuses_nothing() {
        let out = encode_or_refuse(b"{\"a\":1}\n{\"a\":2}\n", &[1, 2], &parquet(), |_, _| {
            Err(EncodeError::Encrypt("the key expired".into()))
        });
        assert!(matches!(out, Err(EncodeError::Encrypt(_))));
    }
}
