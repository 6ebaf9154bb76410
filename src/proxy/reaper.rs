//! Reaps abandoned multipart uploads: staging under `tenants/<tenant>/uploads/<bucket>/<id>/`
//! that has not changed for `multipart.abandon_after_secs` (7 days by default) is deleted, at
//! startup and then every `multipart.reap_interval_secs`, on every backend.
//!
//! S3 itself keeps an incomplete upload until a lifecycle rule (`AbortIncompleteMultipartUpload`)
//! removes it; the proxy's staging is invisible to clients' listings, so without this nothing
//! would ever remove an upload its client forgot. The age counts from the upload's newest
//! staged file (its header, or its latest part), so an upload that is still receiving parts is
//! never reaped; an abandoned one answers `NoSuchUpload` afterwards, as on S3.
//!
//! A completed upload leaves only its marker (`completed`: the object's ETag and key, so a
//! repeated CompleteMultipartUpload answers the same ETag, as S3 does). The same rule removes
//! it: `abandon_after_secs` after the completion (7 days by default), a repeated Complete
//! answers `NoSuchUpload`.
//!
//! Depends on storage only: no keys are needed to delete ciphertext.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use futures::StreamExt;

use super::config::{ConfigError, ProxyConfig};
use super::s3::paths::TenantPaths;
use crate::storage::{self, Storage};

/// What one reaper pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReapSummary {
    /// Abandoned uploads removed.
    pub uploads: usize,
    /// Markers of completed uploads removed (with any staging a crash left beside them).
    pub completed: usize,
    /// Staged files deleted (headers, parts, temporary files).
    pub files: usize,
}

/// One pass: deletes every upload of `tenants` whose newest staged file is at least `max_age`
/// older than `now`. `now` is a parameter so tests can move the clock instead of waiting.
///
/// # Errors
/// The first storage error (listing or deleting); uploads deleted before it stay deleted and
/// the next pass retries the rest.
pub async fn reap_abandoned_uploads(
    storage: &Storage,
    tenants: &[String],
    now: SystemTime,
    max_age: Duration,
) -> Result<ReapSummary, storage::Error> {
    let mut summary = ReapSummary::default();
    for tenant in tenants {
        // Upload directory → (newest modification, its files).
        let mut uploads: BTreeMap<String, (SystemTime, Vec<String>)> = BTreeMap::new();
        let mut stream = storage.list(&TenantPaths::new(tenant).uploads_dir());
        while let Some(item) = stream.next().await {
            let (path, meta) = item?;
            // Staged files sit directly in their upload directory.
            let Some((dir, _)) = path.rsplit_once('/') else {
                continue;
            };
            let entry = uploads
                .entry(dir.to_owned())
                .or_insert((SystemTime::UNIX_EPOCH, Vec::new()));
            entry.0 = entry.0.max(meta.last_modified);
            entry.1.push(path);
        }
        for (_, (newest, files)) in uploads {
            // A modification time in the future (clock skew) counts as fresh.
            let idle = now.duration_since(newest).unwrap_or(Duration::ZERO);
            if idle < max_age {
                continue;
            }
            let completed = files
                .iter()
                .any(|f| f.rsplit('/').next() == Some(crate::proxy::s3::paths::COMPLETED_MARKER));
            for file in &files {
                match storage.delete(file).await {
                    Ok(()) | Err(storage::Error::NotFound) => summary.files += 1,
                    Err(e) => return Err(e),
                }
            }
            if completed {
                summary.completed += 1;
            } else {
                summary.uploads += 1;
            }
        }
    }
    Ok(summary)
}

/// Starts the reaper for a running proxy: a pass at once, then one every
/// `multipart.reap_interval_secs`. The tenant list is re-read from `tenants_dir` on every pass,
/// so tenants added by a reload are covered. Errors are logged and retried on the next pass.
/// Abort the returned task to stop it.
///
/// # Errors
/// [`ConfigError`] if the storage backend cannot be built.
pub fn spawn(config: &ProxyConfig) -> Result<tokio::task::JoinHandle<()>, ConfigError> {
    let storage = Storage::from_config(&config.storage).map_err(|e| ConfigError(e.to_string()))?;
    let config = config.clone();
    let interval = Duration::from_secs(config.multipart.reap_interval_secs.max(1));
    let max_age = Duration::from_secs(config.multipart.abandon_after_secs);
    Ok(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let tenants = match config.load_tenants() {
                Ok(t) => t.into_iter().map(|t| t.metadata.tenant).collect::<Vec<_>>(),
                Err(_) => {
                    // The error text is left out on purpose: a tenant file's parse error can
                    // quote a line holding its SigV4 secret. Startup and SIGHUP report it.
                    tracing::warn!("multipart reaper: cannot read tenants_dir; pass skipped");
                    continue;
                }
            };
            match reap_abandoned_uploads(&storage, &tenants, SystemTime::now(), max_age).await {
                Ok(s) if s.uploads > 0 || s.completed > 0 => tracing::info!(
                    uploads = s.uploads,
                    completed = s.completed,
                    files = s.files,
                    "multipart reaper: abandoned uploads and old completion markers removed"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "multipart reaper pass failed"),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::Bytes;

    use super::*;

    async fn paths(storage: &Storage) -> Vec<String> {
        let mut out: Vec<String> = storage
            .list("tenants")
            .map(|item| item.unwrap().0)
            .collect()
            .await;
        out.sort();
        out
    }

    #[tokio::test]
    async fn reaper_removes_only_idle_uploads_and_completion_markers_of_the_listed_tenants_on_the_memory_backend()
     {
        let storage = Storage::memory();
        for path in [
            "tenants/a/uploads/b/u1/header",
            "tenants/a/uploads/b/u1/p00001-3-ab-cd",
            "tenants/a/uploads/b/u3/completed",
            "tenants/a/objects/b/fkey",
            "tenants/c/uploads/b/u2/header",
        ] {
            storage.put(path, Bytes::from_static(b"x")).await.unwrap();
        }
        let age = Duration::from_secs(7 * 24 * 3600);
        let tenants = vec!["a".to_owned()];
        let before = paths(&storage).await;
        let fresh = reap_abandoned_uploads(&storage, &tenants, SystemTime::now(), age)
            .await
            .unwrap();
        assert_eq!(fresh, ReapSummary::default());
        assert_eq!(paths(&storage).await, before);
        let later = SystemTime::now() + Duration::from_secs(8 * 24 * 3600);
        let reaped = reap_abandoned_uploads(&storage, &tenants, later, age)
            .await
            .unwrap();
        assert_eq!(
            reaped,
            ReapSummary {
                uploads: 1,
                completed: 1,
                files: 3
            }
        );
        // Objects and other tenants' uploads are untouched.
        assert_eq!(
            paths(&storage).await,
            vec![
                "tenants/a/objects/b/fkey".to_owned(),
                "tenants/c/uploads/b/u2/header".to_owned(),
            ]
        );
    }
}
