//! Reading landed NDJSON files back (plain or gzip) from a local lake directory.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Every file under `root`, relative path and decompressed lines, sorted by path.
pub fn read_ndjson_tree(root: &Path) -> Vec<(String, Vec<serde_json::Value>)> {
    let mut files = Vec::new();
    collect(root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(root).expect("under root").to_string_lossy().to_string();
            let raw = std::fs::read(&f).expect("readable lake file");
            (rel, parse_ndjson(&raw, f.to_string_lossy().ends_with(".gz")))
        })
        .collect()
}

/// Lines of one NDJSON body, gunzipped first when `gzip`.
pub fn parse_ndjson(raw: &[u8], gzip: bool) -> Vec<serde_json::Value> {
    let text = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw).read_to_end(&mut out).expect("valid gzip");
        out
    } else {
        raw.to_vec()
    };
    text.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("every line is JSON"))
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else {
            out.push(p);
        }
    }
}
