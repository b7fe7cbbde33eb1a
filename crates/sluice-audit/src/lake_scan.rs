//! Reading the lake for an audit: every offset-named file under the destination, as data
//! files (their rows counted) or dead letters (their lines read for the records they name).

use sluice_core::{parse_any_offset_file_name, PathTemplate, TopicPartition, LATE_PREFIX};
use sluice_lake::{Lake, LakeError, LakeObject};

use crate::tally::{FoundFile, Place, Tally};

/// Directories of the lake that hold Sluice's own state, never records.
const STATE_DIRS: &[&str] = &["_leases/", "_progress/", "_windows/", "_manifests/"];

/// How many files are read at once.
const READS_AT_ONCE: usize = 16;

enum Kind {
    Data { place: Place, dir: String },
    DeadLetters,
}

struct Found {
    object: LakeObject,
    tp: TopicPartition,
    range: (i64, i64),
    kind: Kind,
}

/// Adds every data file and dead letter of the pipeline's topics to `tally`.
pub(crate) async fn scan(
    lake: &Lake,
    topics: &[String],
    dead_letter_path: &PathTemplate,
    tally: &mut Tally,
) -> Result<(), LakeError> {
    let dead_dir = dead_letter_path.fixed_directory();
    let mut found = Vec::new();
    for object in lake.list_objects("", true).await?.objects {
        let path = object.path.as_str();
        if STATE_DIRS.iter().any(|d| path.starts_with(d)) || path.contains("/_delta_log/") {
            continue;
        }
        let name = path.rsplit('/').next().unwrap_or(path);
        let Some((topic, partition, first, last)) = parse_any_offset_file_name(name, topics) else {
            continue;
        };
        let dir = &path[..path.len() - name.len()];
        let kind = if !dead_dir.is_empty() && path.starts_with(dead_dir) {
            Kind::DeadLetters
        } else if let Some(dir) = dir.strip_prefix(LATE_PREFIX) {
            Kind::Data {
                place: Place::Late,
                dir: dir.to_string(),
            }
        } else {
            Kind::Data {
                place: Place::OnTime,
                dir: dir.to_string(),
            }
        };
        let tp = TopicPartition::new(topic, partition);
        // Files outside the audited offsets are not read at all.
        if tally.touches(&tp, first, last) {
            found.push(Found {
                object,
                tp,
                range: (first, last),
                kind,
            });
        }
    }
    for chunk in found.chunks(READS_AT_ONCE) {
        let mut reads = tokio::task::JoinSet::new();
        for (i, f) in chunk.iter().enumerate() {
            let (lake, path) = (lake.clone(), f.object.path.clone());
            reads.spawn(async move { (i, lake.read(&path).await) });
        }
        let mut bytes = vec![None; chunk.len()];
        while let Some(done) = reads.join_next().await {
            let (i, read) = done.expect("a read task does not panic");
            bytes[i] = Some(read?);
        }
        for (f, bytes) in chunk.iter().zip(bytes) {
            let bytes = bytes.expect("every read answered");
            add(tally, f, &bytes);
        }
    }
    Ok(())
}

fn add(tally: &mut Tally, f: &Found, bytes: &[u8]) {
    let path = &f.object.path;
    match &f.kind {
        Kind::DeadLetters => {
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                match dead_letter_coordinates(line) {
                    Some((topic, partition, offset)) => {
                        tally.add_dead_letter(path, &TopicPartition::new(topic, partition), offset)
                    }
                    None => {
                        tally.unexplain(path, "a line is not a dead letter naming its record");
                        return;
                    }
                }
            }
        }
        Kind::Data { place, dir } => {
            // Encrypted (PGP) or unreadable files are checked by name only.
            let rows = sluice_format::inspect::inspect(bytes, path, 0)
                .ok()
                .map(|r| r.rows);
            tally.add_data_file(FoundFile {
                path,
                place: *place,
                dir,
                tp: &f.tp,
                range: f.range,
                modified_ms: f.object.modified.timestamp_millis(),
                rows,
            });
        }
    }
}

fn dead_letter_coordinates(line: &[u8]) -> Option<(String, i32, i64)> {
    #[derive(serde::Deserialize)]
    struct Coordinates {
        topic: String,
        partition: i32,
        offset: i64,
    }
    let c: Coordinates = serde_json::from_slice(line).ok()?;
    Some((c.topic, c.partition, c.offset))
}
