//! Replacing the first bytes of a stored object (its header) and keeping the rest: what a
//! key rotation's rewrap stores (docs/rewrap.md).
//!
//! - **Filesystem, same length:** the new bytes overwrite the old ones in place, through a
//!   file descriptor whose first bytes were just checked to be the old ones: O(header), however
//!   large the object. The descriptor pins the file the check read, so an object that a
//!   concurrent write renamed into place is never written to.
//! - **Filesystem, other length:** a staged file `<name>#<n>` gets the new bytes and then the
//!   rest of the old file copied from the same descriptor (`copy_file_range` where the kernel
//!   has it), and is renamed over the object only if the object is still the file that was
//!   checked. O(size); a crash leaves the old object (and at worst a staging file the sweep
//!   removes).
//! - **Other backends (S3, memory):** one GET of the whole object and an atomic streaming write
//!   of the new bytes and the rest ([`Writer`](super::Writer)). O(size).

use std::fs::{File, OpenOptions};
use std::io::{Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::Path;

use futures::StreamExt as _;
use object_store::ObjectStoreExt as _;

use super::error::{Error, Result};
use super::{Kind, Storage};

/// How [`Storage::replace_prefix`] stored the new bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaced {
    /// Overwritten in place (filesystem, same length): the rest of the object was not read.
    InPlace,
    /// A new object of the new bytes and the rest of the old one replaced the old object.
    Rewritten,
}

impl Storage {
    /// Replaces the first `old_prefix.len()` bytes of the object at `path`, which must be
    /// `old_prefix`, by `new_prefix`, and keeps every byte after them. See the module
    /// documentation for what each backend does and costs.
    ///
    /// # Errors
    /// [`Error::Changed`] if the object does not start with `old_prefix` (nothing written);
    /// [`Error::NotFound`]; [`Error::Backend`] / [`Error::Io`]. A failed call leaves the old
    /// object or the new one, never a mix (on the filesystem in place: see docs/rewrap.md for
    /// what a power loss mid-write can leave).
    pub async fn replace_prefix(
        &self,
        path: &str,
        old_prefix: &[u8],
        new_prefix: &[u8],
    ) -> Result<Replaced> {
        let location = self.write_path(path)?;
        if let Kind::Fs { local, fsync, .. } = &self.kind {
            let file = local.path_to_filesystem(&location)?;
            let (old, new, fsync) = (old_prefix.to_vec(), new_prefix.to_vec(), *fsync);
            return tokio::task::spawn_blocking(move || replace_file(&file, &old, &new, fsync))
                .await
                .map_err(|e| Error::io("the header replacement task failed", e))?;
        }
        self.replace_streaming(path, old_prefix, new_prefix).await
    }

    /// One GET of the whole object, checked against `old_prefix`, then one atomic write.
    async fn replace_streaming(
        &self,
        path: &str,
        old_prefix: &[u8],
        new_prefix: &[u8],
    ) -> Result<Replaced> {
        let mut stream = self.store.get(&self.read_path(path)?).await?.into_stream();
        let mut head = Vec::with_capacity(old_prefix.len());
        let mut rest = bytes::Bytes::new();
        while head.len() < old_prefix.len() {
            let Some(chunk) = stream.next().await else {
                return Err(Error::Changed);
            };
            let mut chunk = chunk?;
            let take = (old_prefix.len() - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk.split_to(take));
            rest = chunk;
        }
        if head != old_prefix {
            return Err(Error::Changed);
        }
        let mut writer = self.writer(path)?;
        writer.write(new_prefix).await?;
        writer.write(&rest).await?;
        while let Some(chunk) = stream.next().await {
            writer.write(&chunk?).await?;
        }
        writer.complete().await?;
        Ok(Replaced::Rewritten)
    }
}

/// The filesystem's replacement (blocking).
fn replace_file(path: &Path, old: &[u8], new: &[u8], fsync: bool) -> Result<Replaced> {
    let io = |what: &str| {
        let context = format!("{what} {}", path.display());
        move |e: std::io::Error| Error::io(context, e)
    };
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotFound),
        other => other.map_err(io("opening"))?,
    };
    // Two replacements of one file take turns, so the second one's check sees the first one's
    // bytes. Advisory: writes of new objects never touch this file (they rename a new one).
    file.lock().map_err(io("locking"))?;
    let mut current = vec![0u8; old.len()];
    match file.read_exact_at(&mut current, 0) {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(Error::Changed),
        other => other.map_err(io("reading"))?,
    }
    if current != old {
        return Err(Error::Changed);
    }
    if new.len() == old.len() {
        file.write_all_at(new, 0).map_err(io("writing"))?;
        if fsync {
            file.sync_data().map_err(io("syncing"))?;
        }
        return Ok(Replaced::InPlace);
    }
    let staged = staging_path(path)?;
    let result = rewrite(&mut file, path, &staged, (old.len(), new), fsync);
    if result.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    result
}

/// Writes `new` and the rest of `file` after `skip` bytes to `staged`, then renames it over
/// `path` if `path` is still `file`.
fn rewrite(
    file: &mut File,
    path: &Path,
    staged: &Path,
    (skip, new): (usize, &[u8]),
    fsync: bool,
) -> Result<Replaced> {
    let io = |what: &str| {
        let context = format!("{what} {}", staged.display());
        move |e: std::io::Error| Error::io(context, e)
    };
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(staged)
        .map_err(io("creating"))?;
    out.write_all(new).map_err(io("writing"))?;
    file.seek(SeekFrom::Start(skip as u64))
        .map_err(io("seeking the source of"))?;
    // File to file: the kernel copies (copy_file_range), the bytes never reach user space.
    std::io::copy(file, &mut out).map_err(io("copying into"))?;
    if fsync {
        out.sync_all().map_err(io("syncing"))?;
    }
    // The object must still be the file that was checked: a write that renamed another file
    // into place since then wins, and this copy of the old object is dropped.
    let ours = file.metadata().map_err(io("stat of the source of"))?;
    let now = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::Changed),
        other => other.map_err(io("stat of the target of"))?,
    };
    if (ours.dev(), ours.ino()) != (now.dev(), now.ino()) {
        return Err(Error::Changed);
    }
    std::fs::rename(staged, path).map_err(io("renaming"))?;
    if fsync && let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing the directory of"))?;
    }
    Ok(Replaced::Rewritten)
}

/// A staging name beside `path` that the staging sweep recognizes (`<name>#<digits>`).
fn staging_path(path: &Path) -> Result<std::path::PathBuf> {
    let mut random = [0u8; 8];
    getrandom_digits(&mut random)?;
    let n = u64::from_be_bytes(random);
    let mut name = path
        .file_name()
        .ok_or_else(|| Error::InvalidPath(path.display().to_string()))?
        .to_os_string();
    name.push(format!("#{n}"));
    Ok(path.with_file_name(name))
}

/// Random bytes for a staging name (uniqueness only, not secrecy).
fn getrandom_digits(buf: &mut [u8]) -> Result<()> {
    use ring::rand::SecureRandom as _;
    ring::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| Error::io("drawing a staging name", "the system RNG failed"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests
    use super::*;
    use crate::storage::StorageConfig;
    use bytes::Bytes;

    async fn fs_storage(dir: &tempfile::TempDir) -> Storage {
        Storage::from_config(&StorageConfig::fs_for_tests(dir.path())).unwrap()
    }

    fn object() -> Vec<u8> {
        let mut bytes = b"HEADER-1".to_vec();
        bytes.extend((0..100_000u32).map(|i| (i % 251) as u8));
        bytes
    }

    #[tokio::test]
    async fn a_same_length_prefix_is_replaced_in_place_and_the_rest_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let storage = fs_storage(&dir).await;
        storage.put("t/o", Bytes::from(object())).await.unwrap();
        let file = dir.path().join("t/o");
        let inode = std::fs::metadata(&file).unwrap().ino();
        let how = storage
            .replace_prefix("t/o", b"HEADER-1", b"HEADER-2")
            .await
            .unwrap();
        assert_eq!(how, Replaced::InPlace);
        let stored = std::fs::read(&file).unwrap();
        assert_eq!(&stored[..8], b"HEADER-2");
        assert_eq!(stored[8..], object()[8..]);
        assert_eq!(std::fs::metadata(&file).unwrap().ino(), inode, "same file");
        // The old prefix is gone: a second replacement of it changes nothing.
        assert!(matches!(
            storage
                .replace_prefix("t/o", b"HEADER-1", b"HEADER-3")
                .await,
            Err(Error::Changed)
        ));
        assert_eq!(std::fs::read(&file).unwrap(), stored);
    }

    #[tokio::test]
    async fn another_length_rewrites_the_object_and_leaves_no_staging_file() {
        let dir = tempfile::tempdir().unwrap();
        for storage in [fs_storage(&dir).await, Storage::memory()] {
            storage.put("t/o", Bytes::from(object())).await.unwrap();
            let how = storage
                .replace_prefix("t/o", b"HEADER-1", b"A-LONGER-HEADER")
                .await
                .unwrap();
            assert_eq!(how, Replaced::Rewritten);
            let stored = storage.read_range("t/o", 0..100_015).await.unwrap();
            assert_eq!(&stored[..15], b"A-LONGER-HEADER");
            assert_eq!(stored[15..], object()[8..]);
            assert_eq!(storage.head("t/o").await.unwrap().size, 100_015);
            assert!(matches!(
                storage.replace_prefix("t/o", b"HEADER-1", b"H").await,
                Err(Error::Changed)
            ));
            assert!(matches!(
                storage.replace_prefix("t/missing", b"H", b"I").await,
                Err(Error::NotFound)
            ));
        }
        let names: Vec<_> = std::fs::read_dir(dir.path().join("t")).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[tokio::test]
    async fn a_rewrap_racing_a_put_never_overwrites_the_new_object() {
        let dir = tempfile::tempdir().unwrap();
        let storage = fs_storage(&dir).await;
        storage.put("t/o", Bytes::from(object())).await.unwrap();
        // The rewrap read the old header; then a PUT replaced the object.
        let mut newer = b"HEADER-9".to_vec();
        newer.extend_from_slice(b"a newer object");
        storage
            .put("t/o", Bytes::from(newer.clone()))
            .await
            .unwrap();
        for new_header in [&b"HEADER-2"[..], b"LONGER-HEADER-2"] {
            assert!(matches!(
                storage.replace_prefix("t/o", b"HEADER-1", new_header).await,
                Err(Error::Changed)
            ));
            assert_eq!(std::fs::read(dir.path().join("t/o")).unwrap(), newer);
        }

        // The PUT renames its file into place after the rewrap opened the old one: the
        // descriptor's check passes, and the write lands in the old file, which is no longer
        // the object. (The same steps as `replace_file`, with the PUT between them.)
        storage.put("t/p", Bytes::from(object())).await.unwrap();
        let path = dir.path().join("t/p");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        storage
            .put("t/p", Bytes::from(newer.clone()))
            .await
            .unwrap();
        let mut current = [0u8; 8];
        file.read_exact_at(&mut current, 0).unwrap();
        assert_eq!(&current, b"HEADER-1");
        file.write_all_at(b"HEADER-2", 0).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            newer,
            "the new object is intact"
        );
        // Another length: the inode check refuses the rename.
        let mut file = file;
        let staged = staging_path(&path).unwrap();
        assert!(matches!(
            rewrite(&mut file, &path, &staged, (8, b"LONGER"), false),
            Err(Error::Changed)
        ));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            newer,
            "the new object is intact"
        );
    }
}
