//! Sweeps the storage backend's staging leftovers: at startup and then on a timer.
//!
//! A proxy killed in the middle of a PUT leaves the write's staging file behind (see
//! [`Storage::sweep_staging`] for what that is on each backend). It is hidden from listings
//! and no S3 call can delete it, so without a sweep it stays for ever. Only leftovers older
//! than a safety age are removed, so a write in flight, of this proxy or of another one sharing
//! the backend, is never cut short.
//!
//! Owns the schedule only; what counts as a leftover is the storage layer's business.

use std::time::Duration;

use crate::storage::{self, Storage, SweepReport};

/// Default safety age: staging files younger than this are kept.
pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(3600);

/// Default time between two sweeps after the startup one.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(900);

/// When and what to sweep.
#[derive(Debug, Clone, Copy)]
pub struct SweepConfig {
    /// Staging files younger than this are kept.
    pub min_age: Duration,
    /// Time between two sweeps.
    pub interval: Duration,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            min_age: DEFAULT_MIN_AGE,
            interval: DEFAULT_INTERVAL,
        }
    }
}

/// One sweep, logged (counts only: paths would name tenants' keys).
///
/// # Errors
/// The storage layer's, when the backend cannot be walked.
pub async fn sweep_once(storage: &Storage, min_age: Duration) -> storage::Result<SweepReport> {
    let report = storage.sweep_staging(min_age).await?;
    if report.removed > 0 || report.kept > 0 {
        tracing::info!(
            removed = report.removed,
            kept_younger_than_min_age = report.kept,
            "staging sweep"
        );
    }
    Ok(report)
}

/// Sweeps every `config.interval` until the returned task is aborted. The first sweep runs
/// one interval from now: the startup sweep is the caller's (see `cli::run`), awaited before
/// the proxy serves.
pub fn spawn(storage: Storage, config: SweepConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // A zero interval would spin; a sweep a second is already far more than needed.
        let interval = config.interval.max(Duration::from_secs(1));
        loop {
            tokio::time::sleep(interval).await;
            if let Err(e) = sweep_once(&storage, config.min_age).await {
                tracing::warn!(error = %e, "staging sweep failed; retrying at the next interval");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests
    use super::*;
    use crate::storage::{StorageConfig, encode_key};
    use futures::StreamExt;

    fn fs_storage(root: &std::path::Path) -> Storage {
        Storage::from_config(&StorageConfig::Fs {
            root: root.into(),
            fsync: false,
        })
        .unwrap()
    }

    /// Sets a file's modification time `age` into the past.
    fn age_file(path: &std::path::Path, age: Duration) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(std::time::SystemTime::now() - age)
            .unwrap();
    }

    #[tokio::test]
    async fn old_staging_leftovers_are_removed_fresh_ones_and_objects_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let storage = fs_storage(root);
        let object = format!("tenants/t/objects/b/{}", encode_key("k/old.bin"));
        let other = format!("tenants/t/objects/b/{}", encode_key("k#1"));
        let long = format!("tenants/t/objects/b/{}", encode_key(&"é".repeat(300)));
        for path in [&object, &other, &long] {
            storage
                .put(path, bytes::Bytes::from_static(b"ciphertext"))
                .await
                .unwrap();
        }
        // What a proxy killed mid-PUT leaves: `<target>#<n>` beside the (maybe absent) target.
        let old_leftover = root.join(format!("{object}#1"));
        let old_alone = root.join(format!("tenants/t/objects/b/{}#2", encode_key("gone/only")));
        let fresh_leftover = root.join(format!("{long}#1"));
        for path in [&old_leftover, &old_alone, &fresh_leftover] {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"partial").unwrap();
        }
        age_file(&old_leftover, Duration::from_secs(7200));
        age_file(&old_alone, Duration::from_secs(7200));
        // Real objects as old as the leftovers are never touched.
        age_file(&root.join(&object), Duration::from_secs(7200));
        age_file(&root.join(&other), Duration::from_secs(7200));

        let report = sweep_once(&storage, DEFAULT_MIN_AGE).await.unwrap();
        assert_eq!(
            report,
            SweepReport {
                removed: 2,
                kept: 1
            }
        );
        assert!(!old_leftover.exists());
        assert!(!old_alone.exists());
        // The directory only the leftover lived in goes with it.
        assert!(!old_alone.parent().unwrap().exists());
        assert!(fresh_leftover.exists());
        for path in [&object, &other, &long] {
            assert_eq!(storage.head(path).await.unwrap().size, 10, "{path}");
        }

        // A zero age (what a test of a restart after SIGKILL configures) takes the fresh one.
        let report = sweep_once(&storage, Duration::ZERO).await.unwrap();
        assert_eq!(
            report,
            SweepReport {
                removed: 1,
                kept: 0
            }
        );
        assert!(!fresh_leftover.exists());
        for path in [&object, &other, &long] {
            assert!(storage.head(path).await.is_ok(), "{path}");
        }
    }

    #[tokio::test]
    async fn a_leftover_of_a_killed_multipart_write_is_swept() {
        // The real thing rather than a hand-made file: a streaming write that was never
        // completed nor aborted (its Drop is skipped, as a SIGKILL skips it).
        let dir = tempfile::tempdir().unwrap();
        let storage = fs_storage(dir.path());
        let mut small = storage.clone();
        small = small.with_chunk_size(5 * 1024 * 1024);
        let mut writer = small.writer("tenants/t/objects/b/fbig").unwrap();
        writer.write(&vec![7u8; 6 * 1024 * 1024]).await.unwrap();
        std::mem::forget(writer);
        // put_multipart created the staging file before write returned.
        let staged: Vec<String> = std::fs::read_dir(dir.path().join("tenants/t/objects/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(staged, ["fbig#1"]);
        assert!(storage.list("tenants").collect::<Vec<_>>().await.is_empty());
        let report = sweep_once(&storage, Duration::ZERO).await.unwrap();
        assert_eq!(report.removed, 1);
        assert!(!dir.path().join("tenants").exists());
    }

    #[tokio::test]
    async fn memory_backend_sweep_finds_nothing() {
        let storage = Storage::memory();
        storage
            .put("fa#1", bytes::Bytes::from_static(b"x"))
            .await
            .unwrap();
        let report = sweep_once(&storage, Duration::ZERO).await.unwrap();
        assert_eq!(report, SweepReport::default());
        assert!(storage.head("fa#1").await.is_ok());
    }
}
