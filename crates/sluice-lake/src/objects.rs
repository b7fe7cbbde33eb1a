//! Object-level access for table formats (Delta's log and checkpoints): stat, ranged reads,
//! directory listings, copies and deletes. Data files still land with `Lake::land`.

use std::ops::Range;

use chrono::{DateTime, Utc};
use opendal::ErrorKind;

use crate::{Lake, LakeError, FS_STAGING_DIR};

/// An object in the lake, with what table readers need to know of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeObject {
    pub path: String,
    pub size: u64,
    pub modified: DateTime<Utc>,
    pub etag: Option<String>,
}

/// One level of a directory: its objects and its subdirectories (ending in `/`).
#[derive(Debug, Default)]
pub struct Listing {
    pub objects: Vec<LakeObject>,
    pub directories: Vec<String>,
}

fn object(path: &str, meta: &opendal::Metadata) -> LakeObject {
    LakeObject {
        path: path.to_string(),
        size: meta.content_length(),
        modified: meta
            .last_modified()
            .map(|t| DateTime::<Utc>::from(std::time::SystemTime::from(t)))
            .unwrap_or_default(),
        etag: meta.etag().map(str::to_string),
    }
}

impl Lake {
    /// The object at `path`, or `None` when there is none.
    pub async fn stat(&self, path: &str) -> Result<Option<LakeObject>, LakeError> {
        match self.op.stat(path).await {
            Ok(meta) if meta.is_file() => Ok(Some(object(path, &meta))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.storage_error("stat", path, &e)),
        }
    }

    /// The bytes `range` of the object at `path`.
    pub async fn read_range(
        &self,
        path: &str,
        range: Range<u64>,
    ) -> Result<bytes::Bytes, LakeError> {
        self.op
            .read_with(path)
            .range(range)
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| self.storage_error("read", path, &e))
    }

    /// Every object under `prefix` (recursive), or one directory level of it.
    pub async fn list_objects(&self, prefix: &str, recursive: bool) -> Result<Listing, LakeError> {
        let entries = match self.op.list_with(prefix).recursive(recursive).await {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(self.storage_error("list", prefix, &e)),
        };
        let mut listing = Listing::default();
        for entry in entries {
            let path = entry.path();
            // The listed directory itself comes back too (as `/` for the root).
            let itself = path.trim_end_matches('/') == prefix.trim_end_matches('/');
            if path.starts_with(FS_STAGING_DIR) || itself {
                continue;
            }
            if entry.metadata().is_dir() {
                listing.directories.push(path.to_string());
                continue;
            }
            let meta = entry.metadata();
            // Some services list names only: a stat fills in size and time.
            let found = if meta.last_modified().is_none() {
                self.stat(path).await?
            } else {
                Some(object(path, meta))
            };
            listing.objects.extend(found);
        }
        listing.objects.sort_by(|a, b| a.path.cmp(&b.path));
        listing.directories.sort();
        Ok(listing)
    }

    /// Deletes the object at `path`; a missing one is not an error.
    pub async fn delete(&self, path: &str) -> Result<(), LakeError> {
        self.op
            .delete(path)
            .await
            .map_err(|e| self.storage_error("delete", path, &e))
    }

    /// Copies `from` to `to`, replacing what is there.
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), LakeError> {
        self.op
            .copy(from, to)
            .await
            .map(|_| ())
            .map_err(|e| self.storage_error("copy", from, &e))
    }
}

#[cfg(test)]
mod tests {
    use sluice_config::Destination;

    use crate::Lake;

    #[tokio::test]
    async fn stats_reads_ranges_lists_levels_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&Destination::Fs {
            root: dir.path().to_string_lossy().into(),
        })
        .await
        .unwrap();
        lake.land("t/_delta_log/0.json", b"0123456789".to_vec())
            .await
            .unwrap();
        lake.land("t/date=2026-12-01/a.parquet", b"x".to_vec())
            .await
            .unwrap();
        let stat = lake.stat("t/_delta_log/0.json").await.unwrap().unwrap();
        assert_eq!(stat.size, 10);
        assert!(stat.modified.timestamp() > 1_700_000_000);
        assert_eq!(lake.stat("t/none").await.unwrap(), None);
        assert_eq!(
            &lake.read_range("t/_delta_log/0.json", 2..5).await.unwrap()[..],
            b"234"
        );
        let level = lake.list_objects("t/", false).await.unwrap();
        assert!(level.objects.is_empty());
        assert_eq!(level.directories, ["t/_delta_log/", "t/date=2026-12-01/"]);
        let all = lake.list_objects("t/", true).await.unwrap();
        assert_eq!(all.objects.len(), 2);
        lake.copy("t/date=2026-12-01/a.parquet", "t/b.parquet")
            .await
            .unwrap();
        lake.delete("t/date=2026-12-01/a.parquet").await.unwrap();
        lake.delete("t/date=2026-12-01/a.parquet").await.unwrap();
        assert_eq!(lake.stat("t/b.parquet").await.unwrap().unwrap().size, 1);
        assert_eq!(
            lake.stat("t/date=2026-12-01/a.parquet").await.unwrap(),
            None
        );
    }
}
