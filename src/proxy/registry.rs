//! The tenants that can sign requests, swappable while the proxy runs.
//!
//! Operators add and remove tenants by editing `tenants_dir`; the proxy notices within about a
//! second ([`DirFingerprint`], polled by [`super::run`]) and also reloads on `SIGHUP`. A reload
//! builds a complete new set first and swaps it in one step, so a request sees either the old
//! set or the new one, never a mix, and a reload that fails to parse leaves the running set
//! untouched.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use super::keys::{CustomerShare, TenantKeys};
use crate::secret::SecretString;

/// One registered tenant.
pub struct Tenant {
    /// Tenant id.
    pub id: String,
    /// The tenant's S3 access key id.
    pub access_key_id: String,
    /// Key release configuration of the current key version (new objects are written under
    /// it).
    pub keys: TenantKeys,
    /// Older key versions that are still readable (decrypt-only), newest first.
    pub older: Vec<TenantKeys>,
}

impl Tenant {
    /// The keys of `key_version`: the current version or a decrypt-only older one.
    pub fn keys_for(&self, key_version: u32) -> Option<&TenantKeys> {
        std::iter::once(&self.keys)
            .chain(&self.older)
            .find(|k| k.key_id.version == key_version)
    }

    /// The current key version.
    pub fn current_version(&self) -> u32 {
        self.keys.key_id.version
    }

    /// True when the tenant's share travels in the SSE-C headers of each request (rather than
    /// coming from the customer's own holder).
    pub fn needs_sse_c(&self) -> bool {
        matches!(self.keys.customer, CustomerShare::SseC { .. })
    }
}

/// One consistent set of tenants.
struct Snapshot {
    /// Tenants by access key id.
    tenants: HashMap<String, Arc<Tenant>>,
    /// SigV4 secret access keys by access key id (zeroized when the snapshot goes).
    secrets: HashMap<String, SecretString>,
    /// A digest of each tenant's key-relevant registration, by tenant id (see
    /// [`Registry::replace_digested`]); empty when the set was built without them.
    digests: HashMap<String, RegistrationDigest>,
}

/// A digest of what in a tenant registration decides its keys (key versions, holders and
/// their URLs); equal digests mean the cached keys of the tenant are still the right ones.
pub type RegistrationDigest = [u8; 32];

/// The current tenant set; cheap to read on every request.
pub struct Registry {
    current: RwLock<Arc<Snapshot>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("tenants", &self.len())
            .finish_non_exhaustive()
    }
}

/// What a reload changed, by tenant id.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Tenants that are new.
    pub added: Vec<String>,
    /// Tenants that are gone.
    pub removed: Vec<String>,
    /// Tenants in both sets (their registration may have changed).
    pub kept: usize,
    /// Tenants in both sets whose registration digest changed (or is unknown): their cached
    /// keys must go.
    pub changed: Vec<String>,
}

impl Registry {
    /// A registry holding `tenants`, each with its SigV4 secret (`None` for a strict tenant,
    /// whose signatures only its holder can check).
    pub fn new(tenants: Vec<(Tenant, Option<String>)>) -> Self {
        Self {
            current: RwLock::new(Arc::new(snapshot(tenants, HashMap::new()))),
        }
    }

    fn read(&self) -> Arc<Snapshot> {
        // A poisoned lock only means a writer panicked between two whole-Arc assignments;
        // the Arc inside is always a complete set.
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The tenant that owns `access_key`.
    pub fn tenant(&self, access_key: &str) -> Option<Arc<Tenant>> {
        self.read().tenants.get(access_key).cloned()
    }

    /// The SigV4 secret of `access_key`.
    pub fn secret(&self, access_key: &str) -> Option<String> {
        self.read()
            .secrets
            .get(access_key)
            .map(|secret| secret.expose_secret().to_owned())
    }

    /// Number of tenants.
    pub fn len(&self) -> usize {
        self.read().tenants.len()
    }

    /// True without tenants.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the whole set at once and reports the difference (every kept tenant counts as
    /// changed: no digests).
    pub fn replace(&self, tenants: Vec<(Tenant, Option<String>)>) -> ReloadSummary {
        self.replace_digested(tenants, HashMap::new())
    }

    /// Replaces the whole set at once with each tenant's registration digest (by tenant id),
    /// and reports the difference, including the kept tenants whose digest changed.
    pub fn replace_digested(
        &self,
        tenants: Vec<(Tenant, Option<String>)>,
        digests: HashMap<String, RegistrationDigest>,
    ) -> ReloadSummary {
        let next = Arc::new(snapshot(tenants, digests));
        let ids = |s: &Snapshot| -> BTreeSet<String> {
            s.tenants.values().map(|t| t.id.clone()).collect()
        };
        let after = ids(&next);
        let (before, previous) = {
            let mut guard = match self.current.write() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            let before = ids(&guard);
            let previous = std::mem::replace(&mut *guard, next.clone());
            (before, previous)
        };
        let changed = after
            .intersection(&before)
            .filter(
                |id| match (previous.digests.get(*id), next.digests.get(*id)) {
                    (Some(old), Some(new)) => old != new,
                    _ => true,
                },
            )
            .cloned()
            .collect();
        ReloadSummary {
            added: after.difference(&before).cloned().collect(),
            removed: before.difference(&after).cloned().collect(),
            kept: after.intersection(&before).count(),
            changed,
        }
    }
}

/// What the proxy compares, about once a second, to notice that `tenants_dir` changed: name,
/// length, modification time and inode of every `*.toml` in it. An atomic rewrite (temp file
/// plus rename, as `treuhand tenant rotate` does) changes the inode even within one clock
/// tick. Reading it costs one directory listing, no file is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirFingerprint(Result<Vec<FileStamp>, String>);

/// One registration file as [`DirFingerprint`] sees it: name, length, modification time,
/// inode.
type FileStamp = (std::ffi::OsString, u64, Option<SystemTime>, u64);

impl DirFingerprint {
    /// The fingerprint of `dir` now; a directory that cannot be read has a fingerprint too
    /// (its error), so it changing back is noticed.
    pub fn of(dir: &Path) -> Self {
        use std::os::unix::fs::MetadataExt as _;
        let read = || -> std::io::Result<_> {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let path = entry.path();
                if path.extension().is_none_or(|x| x != "toml") {
                    continue;
                }
                // Follows symlinks, as loading does.
                let Ok(meta) = std::fs::metadata(&path) else {
                    // Vanished between listing and stat: a change in progress.
                    files.push((entry.file_name(), 0, None, 0));
                    continue;
                };
                files.push((
                    entry.file_name(),
                    meta.len(),
                    meta.modified().ok(),
                    meta.ino(),
                ));
            }
            files.sort();
            Ok(files)
        };
        Self(read().map_err(|e| e.to_string()))
    }
}

fn snapshot(
    tenants: Vec<(Tenant, Option<String>)>,
    digests: HashMap<String, RegistrationDigest>,
) -> Snapshot {
    let mut by_key = HashMap::new();
    let mut secrets = HashMap::new();
    for (tenant, secret) in tenants {
        // No entry for a strict tenant: s3s then finds no secret and refuses its signatures,
        // which only `proxy::strict` may accept, after the tenant's holder checked them.
        if let Some(secret) = secret {
            secrets.insert(tenant.access_key_id.clone(), SecretString::from(secret));
        }
        by_key.insert(tenant.access_key_id.clone(), Arc::new(tenant));
    }
    Snapshot {
        tenants: by_key,
        secrets,
        digests,
    }
}

/// Tells, each time it is asked, whether `tenants_dir` changed since the last time (the poll
/// loop of [`super::run`] reloads only then).
#[derive(Debug)]
pub struct DirWatch {
    dir: std::path::PathBuf,
    seen: DirFingerprint,
}

impl DirWatch {
    /// Watches `dir` from its state now: take it before loading the registrations, so a change
    /// during the load is noticed on the next poll.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            seen: DirFingerprint::of(dir),
        }
    }

    /// True (once) when the directory's fingerprint differs from the last one seen.
    pub fn changed(&mut self) -> bool {
        let now = DirFingerprint::of(&self.dir);
        if now == self.seen {
            return false;
        }
        self.seen = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> (Tenant, Option<String>) {
        use crate::crypto::KeyId;
        use crate::crypto::scheme::{self, SplitOptions};
        let key_id = KeyId::new(id, 1).unwrap();
        let (metadata, _) =
            scheme::split(&key_id, 2, &["customer", "t1"], SplitOptions::default()).unwrap();
        let keys = TenantKeys {
            metadata,
            key_id,
            customer: CustomerShare::SseC {
                holder: "customer".into(),
            },
            trustees: Vec::new(),
        };
        let tenant = Tenant {
            id: id.into(),
            access_key_id: format!("AK{id}"),
            keys,
            older: Vec::new(),
        };
        (tenant, Some(format!("secret-{id}-0123")))
    }

    #[test]
    fn a_reload_names_only_the_tenants_whose_registration_changed() {
        let digests = |pairs: &[(&str, u8)]| -> HashMap<String, RegistrationDigest> {
            pairs
                .iter()
                .map(|(t, d)| ((*t).to_owned(), [*d; 32]))
                .collect()
        };
        let registry = Registry::new(Vec::new());
        registry.replace_digested(
            vec![tenant("acme"), tenant("globex")],
            digests(&[("acme", 1), ("globex", 1)]),
        );
        let summary = registry.replace_digested(
            vec![tenant("acme"), tenant("globex"), tenant("initech")],
            digests(&[("acme", 1), ("globex", 2), ("initech", 1)]),
        );
        assert_eq!(summary.added, ["initech"]);
        assert_eq!(summary.changed, ["globex"], "acme is unchanged");
        assert_eq!(summary.kept, 2);
        // Without digests every kept tenant counts as changed (the safe side).
        let summary = registry.replace(vec![tenant("acme")]);
        assert_eq!(summary.changed, ["acme"]);
        assert_eq!(summary.removed, ["globex", "initech"]);
    }

    #[test]
    fn an_unchanged_registration_dir_does_not_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acme.toml");
        std::fs::write(&path, "a = 1\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let mut watch = DirWatch::new(dir.path());
        assert!(!watch.changed(), "nothing changed");
        assert!(!watch.changed());
        // Files that are not registrations do not count.
        std::fs::write(dir.path().join("notes.txt"), "longer now").unwrap();
        assert!(!watch.changed());
        // An atomic rewrite with the same length, as `tenant rotate` does: noticed, once.
        let temp = dir.path().join("acme.toml.tmp");
        std::fs::write(&temp, "a = 2\n").unwrap();
        std::fs::rename(&temp, &path).unwrap();
        assert!(watch.changed());
        assert!(!watch.changed(), "reloaded once per change");
        // A new registration, a removed one: noticed.
        std::fs::write(dir.path().join("globex.toml"), "").unwrap();
        assert!(watch.changed());
        std::fs::remove_file(dir.path().join("globex.toml")).unwrap();
        assert!(watch.changed());
        assert!(!watch.changed());
        // A directory that cannot be read: noticed once, and again when it is back.
        let moved = dir.path().with_extension("moved");
        std::fs::rename(dir.path(), &moved).unwrap();
        assert!(watch.changed());
        assert!(!watch.changed());
        std::fs::rename(&moved, dir.path()).unwrap();
        assert!(watch.changed());
    }
}
