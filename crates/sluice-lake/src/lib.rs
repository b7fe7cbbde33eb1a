//! The lake: where files land. One opendal `Operator` per destination, write-if-absent
//! landing (a replayed flush finds its file and does not write it twice), and listing.

mod azure;
mod leases;
mod local;
mod objects;
mod redact;

pub use leases::{Claim, Handover, LEASE_DIR};
pub use objects::{LakeObject, Listing};
pub use redact::{redact, StoreError};

/// Where window markers keep each partition's progress (see `sluice_pipeline`'s markers).
pub const PROGRESS_DIR: &str = "_progress";
/// Where the start-up probe of write-if-absent writes (and removes) its object.
const PROBE_DIR: &str = "_sluice_probe";

use opendal::{ErrorKind, Operator};
use sluice_config::{AzureAuth, Destination};

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("cannot open the lake at {what}: {source}")]
    Open {
        what: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot create Azure container '{container}': {detail}")]
    CreateContainer {
        container: String,
        detail: String,
        /// Unreachable, throttled or a server error (not a refusal such as bad credentials).
        retryable: bool,
    },
    #[error("not written: another worker has claimed the partition in the lake")]
    Fenced,
    #[error("not written: the consumer group took the partition's assignment away")]
    AssignmentLost,
    #[error("storage {op} of '{path}' took longer than {after:?}; abandoned")]
    TimedOut {
        op: &'static str,
        path: String,
        after: std::time::Duration,
    },
    #[error("the store at {what} replaced an object that a write asked to create only if absent (If-None-Match: *), so two workers could land the same file twice and two claims share a lease; use a store with conditional writes (Azure Blob / ADLS Gen2, AWS S3, MinIO and other S3-compatible stores that honour If-None-Match, or local disk)")]
    NoWriteIfAbsent { what: String },
    #[error("storage {op} of '{path}' failed: {source}")]
    Storage {
        op: &'static str,
        path: String,
        #[source]
        source: StoreError,
    },
}

impl LakeError {
    /// Whether trying again later may succeed (the store was down or throttling).
    pub fn is_retryable(&self) -> bool {
        match self {
            LakeError::Storage { source, .. } | LakeError::Open { source, .. } => {
                source.is_temporary()
            }
            LakeError::CreateContainer { retryable, .. } => *retryable,
            LakeError::TimedOut { .. } => true,
            LakeError::Fenced | LakeError::AssignmentLost | LakeError::NoWriteIfAbsent { .. } => {
                false
            }
        }
    }
}

/// Where local-disk writes are staged before being renamed into place (inside the root, so the
/// rename stays on one file system; hidden from listings).
const FS_STAGING_DIR: &str = ".sluice-staging";

/// How a landing ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landed {
    Written,
    /// The file was already there: an earlier attempt landed it before a crash or rebalance.
    AlreadyPresent,
}

/// A file found in the lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeFile {
    pub path: String,
    pub size: u64,
}

#[derive(Clone, Debug)]
pub struct Lake {
    op: Operator,
    describe: String,
    /// The destination's secrets, cut out of every error message (see `redact`).
    secrets: std::sync::Arc<[String]>,
    /// Local disk: the root and its staging directory, for atomic write-if-absent.
    local: Option<std::sync::Arc<(std::path::PathBuf, std::path::PathBuf)>>,
}

/// Every secret of `dest`, for redaction: keys, tokens and a SAS token's signature alone.
fn secrets_of(dest: &Destination) -> Vec<String> {
    let mut out = Vec::new();
    match dest {
        Destination::Fs { .. } => {}
        Destination::Azure(az) => match &az.auth {
            AzureAuth::SharedKey(key) => out.push(key.expose().to_string()),
            AzureAuth::Sas(token) => {
                let token = token.expose();
                out.push(token.to_string());
                out.extend(
                    token
                        .split('&')
                        .filter_map(|kv| kv.strip_prefix("sig="))
                        .map(str::to_string),
                );
            }
            AzureAuth::ServicePrincipal { client_secret, .. } => {
                out.push(client_secret.expose().to_string())
            }
            AzureAuth::Environment => {}
        },
        Destination::S3(s3) => {
            if let Some((_, key)) = &s3.credentials {
                out.push(key.expose().to_string());
            }
        }
    }
    out
}

impl Lake {
    /// Connects to the destination, creating the directory, or the Azure container (ADLS
    /// "file system"), if missing.
    ///
    /// Operations are not retried here: errors keep opendal's temporary/permanent verdict so
    /// that the caller can retry temporary ones for as long as it sees fit.
    pub async fn open(dest: &Destination) -> Result<Self, LakeError> {
        // The process-wide HTTP client of opendal's HTTP services; idempotent.
        opendal::install_default();
        let secrets: std::sync::Arc<[String]> = secrets_of(dest).into();
        let open_error = |what: &str, e: &opendal::Error| LakeError::Open {
            what: what.to_string(),
            source: StoreError::new(e, &secrets),
        };
        let mut local = None;
        let (op, describe) = match dest {
            Destination::Fs { root } => {
                let abs = std::path::absolute(root).unwrap_or_else(|_| root.into());
                let abs = abs.to_string_lossy().to_string();
                // Files are written here first and renamed into place, so a crash mid-write
                // never leaves a partial file under its final (offset-bearing) name.
                let staging = format!("{abs}/{FS_STAGING_DIR}");
                std::fs::create_dir_all(&staging).map_err(|e| {
                    open_error(
                        &abs,
                        &opendal::Error::new(ErrorKind::Unexpected, e.to_string()),
                    )
                })?;
                let builder = opendal::services::Fs::default()
                    .root(&abs)
                    .atomic_write_dir(&staging);
                let op = Operator::new(builder).map_err(|e| open_error(&abs, &e))?;
                local::remove_stale_staging(
                    std::path::Path::new(&staging),
                    std::time::Duration::from_secs(3600),
                );
                local = Some(std::sync::Arc::new((abs.clone().into(), staging.into())));
                (op, format!("file://{abs}"))
            }
            Destination::Azure(az) => {
                azure::ensure_container(az, &secrets).await?;
                (azure::operator(az, &secrets)?, azure::describe(az))
            }
            Destination::S3(s3) => {
                let mut builder = opendal::services::S3::default()
                    .bucket(&s3.bucket)
                    .root(&format!("/{}", s3.root))
                    .region(&s3.region);
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.endpoint(endpoint);
                }
                if let Some((id, key)) = &s3.credentials {
                    builder = builder.access_key_id(id).secret_access_key(key.expose());
                }
                let describe = format!("s3://{}/{}", s3.bucket, s3.root);
                let op = Operator::new(builder).map_err(|e| open_error(&describe, &e))?;
                // A missing bucket or wrong credentials should stop the start, not the first
                // landing an hour later.
                op.list_with("")
                    .limit(1)
                    .await
                    .map_err(|e| open_error(&describe, &e))?;
                (op, describe)
            }
        };
        let lake = Self {
            op,
            describe,
            secrets,
            local,
        };
        lake.probe_write_if_absent().await?;
        Ok(lake)
    }

    /// Refuses a store on which write-if-absent does not hold (an S3-compatible store that
    /// ignores `If-None-Match: *`): duplicate-free landing and the partition leases rest on it.
    async fn probe_write_if_absent(&self) -> Result<(), LakeError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = format!("{PROBE_DIR}/{}-{nanos}.probe", std::process::id());
        let first = self.land(&path, "first").await?;
        let second = self.land(&path, "second").await;
        let _ = self.op.delete(&path).await;
        match (first, second?) {
            (Landed::Written, Landed::AlreadyPresent) => Ok(()),
            _ => Err(LakeError::NoWriteIfAbsent {
                what: self.describe.clone(),
            }),
        }
    }

    /// The one place storage errors leave the lake layer: redacted (see `redact`).
    pub(crate) fn storage_error(
        &self,
        op: &'static str,
        path: &str,
        e: &opendal::Error,
    ) -> LakeError {
        LakeError::Storage {
            op,
            path: path.to_string(),
            source: StoreError::new(e, &self.secrets),
        }
    }

    /// Writes `body` at `path` unless a file is already there.
    pub async fn land(
        &self,
        path: &str,
        body: impl Into<bytes::Bytes>,
    ) -> Result<Landed, LakeError> {
        let body: bytes::Bytes = body.into();
        if let Some(local) = &self.local {
            let (local, owned_path) = (local.clone(), path.to_string());
            let landed = tokio::task::spawn_blocking(move || {
                local::land(&local.0, &local.1, &owned_path, &body)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
            // Classified as opendal classifies disk errors (most are temporary).
            return landed.map_err(|e| {
                self.storage_error("write", path, &opendal::raw::new_std_io_error(e))
            });
        }
        match self.op.write_with(path, body).if_not_exists(true).await {
            Ok(_) => Ok(Landed::Written),
            Err(e) if e.kind() == ErrorKind::ConditionNotMatch => Ok(Landed::AlreadyPresent),
            Err(e) => Err(self.storage_error("write", path, &e)),
        }
    }

    /// Writes `body` at `path`, replacing what is there. For bookkeeping files only: data
    /// files land with `land`, which never replaces one.
    pub async fn overwrite(
        &self,
        path: &str,
        body: impl Into<bytes::Bytes>,
    ) -> Result<(), LakeError> {
        let body: bytes::Bytes = body.into();
        self.op
            .write(path, body)
            .await
            .map(|_| ())
            .map_err(|e| self.storage_error("write", path, &e))
    }

    /// The file at `path`, or `None` when there is none.
    pub async fn read_if_exists(&self, path: &str) -> Result<Option<Vec<u8>>, LakeError> {
        match self.op.read(path).await {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.storage_error("read", path, &e)),
        }
    }

    pub async fn read(&self, path: &str) -> Result<Vec<u8>, LakeError> {
        self.op
            .read(path)
            .await
            .map(|b| b.to_vec())
            .map_err(|e| self.storage_error("read", path, &e))
    }

    /// Every file under `prefix` (`""` for the whole lake), sorted by path. Partition leases
    /// and progress show only when `prefix` asks for them.
    pub async fn list(&self, prefix: &str) -> Result<Vec<LakeFile>, LakeError> {
        let hidden = |path: &str| {
            [LEASE_DIR, PROGRESS_DIR, PROBE_DIR]
                .into_iter()
                .any(|dir| path.starts_with(dir) && !prefix.starts_with(dir))
        };
        let entries = match self.op.list_with(prefix).recursive(true).await {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(self.storage_error("list", prefix, &e)),
        };
        let mut files: Vec<LakeFile> = entries
            .into_iter()
            .filter(|e| {
                e.metadata().is_file() && !e.path().starts_with(FS_STAGING_DIR) && !hidden(e.path())
            })
            .map(|e| LakeFile {
                path: e.path().to_string(),
                size: e.metadata().content_length(),
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Where the lake is, for humans (no credentials).
    pub fn describe(&self) -> &str {
        &self.describe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lands_once_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("new/lake");
        let lake = Lake::open(&Destination::Fs {
            root: root.to_string_lossy().into(),
        })
        .await
        .unwrap();
        assert_eq!(
            lake.land("a/b/1.json", b"x\n".to_vec()).await.unwrap(),
            Landed::Written
        );
        assert_eq!(
            lake.land("a/b/1.json", b"y\n".to_vec()).await.unwrap(),
            Landed::AlreadyPresent
        );
        assert_eq!(lake.read("a/b/1.json").await.unwrap(), b"x\n");
        let files = lake.list("").await.unwrap();
        assert_eq!(
            files,
            [LakeFile {
                path: "a/b/1.json".into(),
                size: 2
            }]
        );
        assert!(lake.list("missing/").await.unwrap().is_empty());

        assert_eq!(lake.read_if_exists("a/none.json").await.unwrap(), None);
        lake.overwrite("_progress/t/0.json", b"1".to_vec())
            .await
            .unwrap();
        lake.overwrite("_progress/t/0.json", b"2".to_vec())
            .await
            .unwrap();
        assert_eq!(
            lake.read_if_exists("_progress/t/0.json").await.unwrap(),
            Some(b"2".to_vec())
        );
        assert_eq!(lake.list("").await.unwrap().len(), 1, "progress is hidden");
        assert_eq!(lake.list("_progress/").await.unwrap().len(), 1);
    }
}
