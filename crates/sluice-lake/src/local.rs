//! Write-if-absent on a local or shared disk, atomically: a file is written whole under a
//! staging name, then hard-linked to its final name, which fails if the name exists. Unlike
//! check-then-rename (rename replaces), two writers can never both land one name, on one
//! machine or over NFS.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Landed;

/// Staging names are unique per process and write.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Lands `body` at `root/path` unless a file is there. `staging` is a directory on the same
/// file system (inside `root`).
pub(crate) fn land(
    root: &Path,
    staging: &Path,
    path: &str,
    body: &[u8],
) -> std::io::Result<Landed> {
    let target = root.join(path);
    if target.exists() {
        return Ok(Landed::AlreadyPresent);
    }
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let staged: PathBuf = staging.join(format!(
        "{}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let written = (|| {
        let mut f = std::fs::File::create_new(&staged)?;
        f.write_all(body)?;
        // On disk before it has a name a reader can find.
        f.sync_all()
    })();
    let linked = written.and_then(|()| std::fs::hard_link(&staged, &target));
    let _ = std::fs::remove_file(&staged);
    match linked {
        Ok(()) => Ok(Landed::Written),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Landed::AlreadyPresent),
        Err(e) => Err(e),
    }
}

/// Staged files a killed writer left behind, older than `age` (no write takes that long), are
/// removed: they are no file of the lake, only disk taken.
pub(crate) fn remove_stale_staging(staging: &Path, age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(staging) else {
        return;
    };
    for e in entries.flatten() {
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|elapsed| elapsed > age);
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stale_staged_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1-0-a.json"), b"x").unwrap();
        remove_stale_staging(dir.path(), std::time::Duration::from_secs(3600));
        assert!(
            dir.path().join("1-0-a.json").exists(),
            "a write in progress stays"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        remove_stale_staging(dir.path(), std::time::Duration::from_millis(10));
        assert!(!dir.path().join("1-0-a.json").exists());
    }

    /// Many writers race for one name: exactly one wins, and the file is the winner's.
    #[test]
    fn of_racing_writers_exactly_one_lands() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join(".staging");
        std::fs::create_dir_all(&staging).unwrap();
        for round in 0..20 {
            let path = format!("a/{round}.json");
            let wins: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|w| {
                        let (root, staging, path) = (dir.path(), &staging, &path);
                        s.spawn(move || {
                            let body = format!("writer {w}");
                            (w, land(root, staging, path, body.as_bytes()).unwrap())
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let winners: Vec<_> = wins.iter().filter(|(_, l)| *l == Landed::Written).collect();
            assert_eq!(winners.len(), 1, "round {round}: {wins:?}");
            let body = std::fs::read_to_string(dir.path().join(&path)).unwrap();
            assert_eq!(body, format!("writer {}", winners[0].0));
        }
        assert_eq!(
            std::fs::read_dir(&staging).unwrap().count(),
            0,
            "nothing left staged"
        );
    }
}
