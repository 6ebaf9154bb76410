//! The filesystem backend's own parts: the store, its staging sweep, and a listing in key
//! order.
//!
//! object_store's `LocalFileSystem` lists a directory tree in whatever order the directories
//! return their entries, so a page of a bucket listing has to look at every key below the
//! prefix's directory. [`OrderedWalk`] reads the tree in key order instead, so a page stops
//! after its last key.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use futures::stream::BoxStream;

use super::error::{Error, Result};
use super::keys::{Marker, decode_component};
use super::meta::{Meta, SweepReport};

/// object_store's filesystem store below `root` (created if absent).
pub(super) fn open(root: &Path, fsync: bool) -> Result<object_store::local::LocalFileSystem> {
    std::fs::create_dir_all(root)
        .map_err(|e| Error::config(format!("cannot create {}", root.display()), e))?;
    Ok(object_store::local::LocalFileSystem::new_with_prefix(root)
        .map_err(|e| Error::config(format!("the filesystem backend at {}", root.display()), e))?
        .with_automatic_cleanup(true)
        .with_fsync(fsync))
}

/// Whether a file name is a filesystem staging file: `<anything>#<one or more digits>`, the
/// names object_store's filesystem backend stages writes and copies under.
fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes the staging files below `root` older than `older_than` (see
/// [`Storage::sweep_staging`](super::Storage::sweep_staging)); blocking.
pub(super) fn sweep(
    root: &std::path::Path,
    older_than: std::time::Duration,
) -> Result<SweepReport> {
    let now = std::time::SystemTime::now();
    let mut report = SweepReport::default();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Removed under us (automatic cleanup of an emptied directory): nothing to sweep.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != root => continue,
            Err(e) => return Err(Error::io(format!("sweeping {}", dir.display()), e)),
        };
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if file_type.is_dir() {
                dirs.push(path);
                continue;
            }
            if !file_type.is_file() || !entry.file_name().to_str().is_some_and(is_staging_name) {
                continue;
            }
            let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            // A clock step backwards makes every file look fresh: kept, swept next time.
            if now.duration_since(modified).unwrap_or_default() < older_than {
                report.kept += 1;
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                report.removed += 1;
                remove_empty_parents(root, &path);
            }
        }
    }
    Ok(report)
}

/// Removes the directories a swept file leaves empty, up to (not including) the root, as the
/// filesystem backend does after a delete. `remove_dir` fails on a non-empty directory, so a
/// directory a concurrent write has just put a file into stays.
fn remove_empty_parents(root: &std::path::Path, file: &std::path::Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// The most children one reading of a directory queues. A larger directory is read again
/// for the next ones once these are listed (see [`Resume`]): memory stays a page's worth
/// however many keys one directory holds, and a page (at most 1,001 entries) rarely needs a
/// second reading.
const DIR_BATCH: usize = 1024;

/// A node of the tree waiting to be read: a file (one key) or a directory (every key below it),
/// with the smallest key it can hold.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    /// The key of a file; for a directory, the key bytes its path spells, which every key below
    /// it starts with (and is longer than, unless it is a `d` directory's file `f`).
    bound: Vec<u8>,
    /// `false` for a file, so that a file sorts before a directory of the same bound: every key
    /// below the directory is another key, so a larger one.
    is_dir: bool,
    /// Below the walk's root.
    path: PathBuf,
    /// For the rest of a directory read in part: where to go on.
    resume: Option<Box<Resume>>,
}

/// The rest of a directory of more than [`DIR_BATCH`] wanted children: those after `last`.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Resume {
    /// The key bytes the directory's path spells.
    dir_bound: Vec<u8>,
    /// The largest child queued by the previous reading.
    last: Pending,
}

/// The files below a directory of encoded keys (see [`encode_key`](super::encode_key)), in the
/// byte order of their keys: a best-first walk that opens a directory only when the smallest
/// key it can hold is the smallest one left.
///
/// Why not sort each directory's names and recurse: a long segment is cut into `c<piece>`
/// directories, and a sibling may spell a longer key that begins with the piece (the file
/// `f<piece>b` beside the directory `c<piece>` of `<piece>é…`): its key sorts between the
/// piece's keys, so a directory's keys need not follow each other. Opening the smallest bound
/// first keeps the order exact whatever the names.
///
/// Skipped as by the unordered listing: every name that is not an encoded key (staging files
/// `<name>#<n>`, object_store's temporary names, bad escapes), files whose key is not UTF-8,
/// files and directories that vanish under the walk. Also skipped, without opening them:
/// what a page of `prefix`, `delimiter` and `after` cannot show. That is keys outside the
/// prefix, keys at or before `after`, and, with a delimiter, every key of a common prefix at
/// or before `after` and every key after the first of a common prefix (the page shows the
/// prefix once): a directory of a million keys below one common prefix costs one key.
pub(super) struct OrderedWalk {
    root: PathBuf,
    prefix: Vec<u8>,
    /// Empty delimiters are ignored, as S3 does.
    delimiter: Option<Vec<u8>>,
    after: Option<Vec<u8>>,
    /// The common prefix of the last key listed.
    last_group: Option<Vec<u8>>,
    pending: BinaryHeap<Reverse<Pending>>,
    names_read: Arc<AtomicUsize>,
}

impl OrderedWalk {
    /// The keys below the filesystem directory `root`, whose path spells `root_key` (the
    /// decoded directory, ending in `/`, or empty), as a page of `prefix`, `delimiter` and
    /// `after` needs them. Every name read from a directory is counted in `names_read`.
    pub(super) fn new(
        root: PathBuf,
        root_key: &str,
        (prefix, delimiter, after): (&str, Option<&str>, Option<&str>),
        names_read: Arc<AtomicUsize>,
    ) -> Self {
        let mut walk = Self {
            root,
            prefix: prefix.as_bytes().to_vec(),
            delimiter: delimiter
                .filter(|d| !d.is_empty())
                .map(|d| d.as_bytes().to_vec()),
            after: after.map(|a| a.as_bytes().to_vec()),
            last_group: None,
            pending: BinaryHeap::new(),
            names_read,
        };
        let root = Pending {
            bound: root_key.as_bytes().to_vec(),
            is_dir: true,
            path: PathBuf::new(),
            resume: None,
        };
        if walk.wanted(&root) {
            walk.pending.push(Reverse(root));
        }
        walk
    }

    /// The common prefix every key starting with `bound` folds into, if `bound` already
    /// reaches the delimiter below the prefix. (A delimiter found in `bound` is the first one
    /// of every longer key too: an earlier one would lie inside `bound` as well.)
    fn group<'b>(&self, bound: &'b [u8]) -> Option<&'b [u8]> {
        let delimiter = self.delimiter.as_deref()?;
        let rest = bound.strip_prefix(self.prefix.as_slice())?;
        let at = rest
            .windows(delimiter.len())
            .position(|window| window == delimiter)?;
        bound.get(..self.prefix.len() + at + delimiter.len())
    }

    /// Whether a node can hold a key the page shows.
    fn wanted(&self, node: &Pending) -> bool {
        if node.resume.is_some() {
            // The rest of a directory: its keys start with the directory's bound, not with
            // this one, so only the children's own checks apply.
            return true;
        }
        let bound = node.bound.as_slice();
        let after = self.after.as_deref();
        if let Some(group) = self.group(bound) {
            // A common prefix shows once, and not again after the resume point.
            return after.is_none_or(|a| group > a) && self.last_group.as_deref() != Some(group);
        }
        if !node.is_dir {
            return bound.starts_with(&self.prefix) && after.is_none_or(|a| bound > a);
        }
        // Every key below starts with `bound`: some start with the prefix if either starts
        // with the other, and some sort after `after` unless `bound` sorts before it at a byte
        // they differ in.
        (bound.starts_with(&self.prefix) || self.prefix.starts_with(bound))
            && after.is_none_or(|a| bound > a || a.starts_with(bound))
    }

    /// Reads a directory's wanted children into the queue, at most [`DIR_BATCH`] of them, and
    /// queues the rest of the directory when there are more.
    fn open(&mut self, dir: Pending) -> Result<()> {
        let full = self.root.join(&dir.path);
        let entries = match std::fs::read_dir(&full) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("listing {}", full.display()), e)),
        };
        let (dir_bound, done) = match dir.resume {
            Some(resume) => (resume.dir_bound, Some(resume.last)),
            None => (dir.bound, None),
        };
        // The smallest wanted children, largest on top.
        let mut batch: BinaryHeap<Pending> = BinaryHeap::new();
        let mut more = false;
        for entry in entries {
            let Ok(entry) = entry else { continue };
            self.names_read.fetch_add(1, Ordering::Relaxed);
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some((marker, bytes)) = decode_component(name) else {
                continue;
            };
            // Links are followed, as object_store's listing follows them.
            let Ok(meta) = std::fs::metadata(entry.path()) else {
                continue;
            };
            let mut bound = dir_bound.clone();
            bound.extend_from_slice(&bytes);
            let is_dir = match marker {
                Marker::File if meta.is_file() => false,
                Marker::Dir if meta.is_dir() => {
                    bound.push(b'/');
                    true
                }
                Marker::Piece if meta.is_dir() => true,
                _ => continue,
            };
            let child = Pending {
                bound,
                is_dir,
                path: dir.path.join(name),
                resume: None,
            };
            if done.as_ref().is_some_and(|done| child <= *done) || !self.wanted(&child) {
                continue;
            }
            batch.push(child);
            if batch.len() > DIR_BATCH {
                batch.pop();
                more = true;
            }
        }
        if more && let Some(last) = batch.peek() {
            let last = Pending {
                bound: last.bound.clone(),
                is_dir: last.is_dir,
                path: last.path.clone(),
                resume: None,
            };
            // Every child after `last` holds keys from `last.bound` on.
            self.pending.push(Reverse(Pending {
                bound: last.bound.clone(),
                is_dir: true,
                path: dir.path,
                resume: Some(Box::new(Resume { dir_bound, last })),
            }));
        }
        self.pending.extend(batch.into_iter().map(Reverse));
        Ok(())
    }
}

impl Iterator for OrderedWalk {
    type Item = Result<(String, Meta)>;

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(Reverse(node)) = self.pending.pop() {
            // Queued before the common prefix it folds into was listed.
            if !self.wanted(&node) {
                continue;
            }
            if node.is_dir {
                if let Err(e) = self.open(node) {
                    return Some(Err(e));
                }
                continue;
            }
            let Ok(meta) = std::fs::metadata(self.root.join(&node.path)) else {
                // Deleted since its directory was read.
                continue;
            };
            let Ok(last_modified) = meta.modified() else {
                continue;
            };
            let group = self.group(&node.bound).map(<[u8]>::to_vec);
            let Ok(key) = String::from_utf8(node.bound) else {
                continue;
            };
            self.last_group = group;
            return Some(Ok((
                key,
                Meta {
                    size: meta.len(),
                    last_modified,
                },
            )));
        }
        None
    }
}

/// Streams a walk from blocking tasks, in batches that double from 8 to 1,024 keys: a page
/// that stops after a few keys reads a few more at most.
pub(super) fn stream(walk: OrderedWalk) -> BoxStream<'static, Result<(String, Meta)>> {
    futures::stream::unfold(Some((walk, 8usize)), |state| async move {
        let (mut walk, batch) = state?;
        let task = tokio::task::spawn_blocking(move || {
            let items: Vec<_> = walk.by_ref().take(batch).collect();
            (walk, items)
        });
        Some(match task.await {
            Ok((walk, items)) => {
                let next = (items.len() == batch).then(|| (walk, (batch * 2).min(1024)));
                (futures::stream::iter(items), next)
            }
            Err(e) => (
                futures::stream::iter(vec![Err(Error::io("the listing task failed", e))]),
                None,
            ),
        })
    })
    .flatten()
    .boxed()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests
    use super::*;
    use crate::storage::keys::{encode_key, long_keys};
    use crate::storage::{Storage, StorageConfig};
    use bytes::Bytes;
    use futures::TryStreamExt;

    /// Keys whose byte order differs from the order of their stored names: escapes, nested
    /// and empty segments, long segments cut into pieces, and a file whose key begins with a
    /// sibling piece's key but sorts before the keys below that piece.
    fn awkward_keys() -> Vec<String> {
        let piece = "m".repeat(247);
        let mut keys = vec![
            "a".to_owned(),
            "a/".to_owned(),
            "a//b".to_owned(),
            "a/b/c".to_owned(),
            "a-".to_owned(),
            "a0".to_owned(),
            "a b".to_owned(),
            "a+b".to_owned(),
            "%41".to_owned(),
            "~".to_owned(),
            "é/x".to_owned(),
            "b/x/y/z".to_owned(),
            piece.clone(),
            format!("{piece}b"),
            format!("{piece}éx"),
            format!("{piece}é/inner"),
        ];
        keys.extend(long_keys());
        keys
    }

    async fn fs_storage(dir: &tempfile::TempDir) -> Storage {
        Storage::from_config(&StorageConfig::fs_for_tests(dir.path())).unwrap()
    }

    async fn ordered(storage: &Storage, prefix: &str, after: Option<&str>) -> Vec<String> {
        let listing = storage.list_keys("t", prefix, None, after);
        assert!(listing.ordered);
        let keys: Vec<(String, Meta)> = listing.keys.try_collect().await.unwrap();
        keys.into_iter().map(|(key, _)| key).collect()
    }

    #[tokio::test]
    async fn the_ordered_walk_lists_keys_in_byte_order_after_a_marker() {
        let dir = tempfile::tempdir().unwrap();
        let storage = fs_storage(&dir).await;
        let mut keys = awkward_keys();
        for key in &keys {
            let path = format!("t/{}", encode_key(key));
            storage.put(&path, Bytes::from(key.clone())).await.unwrap();
        }
        // A staging file and a stray name beside the keys are no keys.
        std::fs::write(dir.path().join("t/fa#1"), b"staged").unwrap();
        std::fs::write(dir.path().join("t/stray"), b"x").unwrap();
        keys.sort();
        // The piece's sibling file sorts before the keys below the piece.
        let piece = "m".repeat(247);
        let at = |k: &str| keys.iter().position(|x| x == k).unwrap();
        assert!(at(&format!("{piece}b")) < at(&format!("{piece}éx")));

        assert_eq!(ordered(&storage, "", None).await, keys);
        let mut markers: Vec<String> = keys.clone();
        markers.extend(["", "a/b", "m", "zzz", "a//", "é"].map(str::to_owned));
        for marker in &markers {
            let expected: Vec<String> = keys.iter().filter(|k| *k > marker).cloned().collect();
            assert_eq!(
                ordered(&storage, "", Some(marker)).await,
                expected,
                "{marker}"
            );
        }
        for prefix in ["a", "a/", "a/b", &piece, "é", "zz"] {
            let expected: Vec<String> = keys
                .iter()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect();
            assert_eq!(ordered(&storage, prefix, None).await, expected, "{prefix}");
        }
        // Sizes and times come with the keys.
        let listing = storage.list_keys("t", "a0", None, None);
        let found: Vec<(String, Meta)> = listing.keys.try_collect().await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1.size, 2);
    }

    #[tokio::test]
    async fn the_ordered_walk_reads_only_the_directories_its_first_keys_need() {
        let dir = tempfile::tempdir().unwrap();
        let storage = fs_storage(&dir).await;
        for i in 0..1000 {
            let path = format!("t/{}", encode_key(&format!("d{:02}/k{i:04}", i / 50)));
            storage.put(&path, Bytes::new()).await.unwrap();
        }
        let mut listing = storage.list_keys("t", "", None, Some("d03/k0160"));
        let mut first = Vec::new();
        while first.len() < 3 {
            first.push(listing.keys.try_next().await.unwrap().unwrap().0);
        }
        drop(listing);
        assert_eq!(first, ["d03/k0161", "d03/k0162", "d03/k0163"]);
        // The root's 20 names and one directory's 50: not the bucket's 1,000.
        assert_eq!(storage.names_read(), 70);
    }

    #[test]
    fn a_large_directory_is_read_in_batches_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut keys: Vec<String> = (0..DIR_BATCH * 2 + 10).map(|i| format!("k{i}")).collect();
        for key in &keys {
            std::fs::write(dir.path().join(encode_key(key)), b"").unwrap();
        }
        keys.sort();
        let names_read = Arc::new(AtomicUsize::new(0));
        let walk = OrderedWalk::new(dir.path().into(), "", ("", None, None), names_read.clone());
        let listed: Vec<String> = walk.map(|item| item.unwrap().0).collect();
        assert_eq!(listed, keys);
        // Three readings of the directory.
        assert_eq!(names_read.load(Ordering::Relaxed), keys.len() * 3);
    }

    #[test]
    fn a_common_prefix_costs_one_key_of_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        for key in ["a/1", "a/2", "a/3/x", "b", "c/1", "c/2"] {
            let path = dir.path().join(encode_key(key));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"").unwrap();
        }
        let walk = |after: Option<&str>| -> Vec<String> {
            let counter = Arc::new(AtomicUsize::new(0));
            OrderedWalk::new(dir.path().into(), "", ("", Some("/"), after), counter)
                .map(|item| item.unwrap().0)
                .collect()
        };
        assert_eq!(walk(None), ["a/1", "b", "c/1"]);
        assert_eq!(walk(Some("a/")), ["b", "c/1"]);
        assert_eq!(walk(Some("b")), ["c/1"]);
    }
}
