//! Turning a buffer's NDJSON lines into the bytes of one lake file.

use std::io::Write;

use sluice_config::{Compression, Format};

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("compressing the file failed: {0}")]
    Compress(#[from] std::io::Error),
}

/// Encodes newline-terminated JSON lines into a file body of `format`, compressed.
///
/// Deterministic: the same lines always give the same bytes (gzip headers carry no time),
/// so a file rewritten after a crash is identical to the first attempt.
pub fn encode(
    ndjson: &[u8],
    format: Format,
    compression: Compression,
) -> Result<Vec<u8>, EncodeError> {
    let body = match format {
        Format::Ndjson => ndjson,
    };
    compress(body, compression)
}

fn compress(body: &[u8], compression: Compression) -> Result<Vec<u8>, EncodeError> {
    match compression {
        Compression::None => Ok(body.to_vec()),
        Compression::Gzip => {
            let mut gz = flate2::GzBuilder::new().mtime(0).write(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::default(),
            );
            gz.write_all(body)?;
            Ok(gz.finish()?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn gzip_round_trips_and_is_deterministic() {
        let lines = b"{\"a\":1}\n{\"a\":2}\n".repeat(100);
        let a = encode(&lines, Format::Ndjson, Compression::Gzip).unwrap();
        let b = encode(&lines, Format::Ndjson, Compression::Gzip).unwrap();
        assert_eq!(a, b);
        assert!(a.len() < lines.len() / 4);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&a[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, lines);
        assert_eq!(
            encode(&lines, Format::Ndjson, Compression::None).unwrap(),
            lines
        );
    }
}
