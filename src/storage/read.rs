//! [`Storage::read_start`]: an object's size, time and first bytes in one backend call.
//!
//! A GET or HEAD needs all three before it can answer: the size to find the plaintext length,
//! the time for `Last-Modified`, the header to find the key. As separate calls (a stat, then a
//! read) they cost two blocking-pool hand-offs on the filesystem and two HTTP requests on S3;
//! profiling small GETs showed those hand-offs (thread wake-ups, futex waits) as the proxy's
//! largest cost after TLS (docs/benchmarks.md, issue 15). One call also reads a consistent
//! snapshot: the size and the bytes come from the same open file, so a concurrent replace (a
//! rename over the path) cannot pair one object's size with another's header.

use std::io::Read as _;

use bytes::Bytes;
use object_store::{GetOptions, GetRange, ObjectStore as _, ObjectStoreExt as _};

use super::{Error, Kind, Meta, Result, Storage};

/// How much of an object [`Storage::read_start`] reads, decided by its size.
#[derive(Debug, Clone, Copy)]
pub struct ReadStart {
    /// Objects up to this size are read whole.
    pub whole_up_to: u64,
    /// Of a larger object, this many bytes from offset 0 (a header's worth).
    pub prefix: u64,
}

impl ReadStart {
    /// How many bytes to read of an object of `size` bytes.
    fn len(self, size: u64) -> u64 {
        if size <= self.whole_up_to {
            size
        } else {
            size.min(self.prefix)
        }
    }
}

impl Storage {
    /// The object's [`Meta`] and its first bytes: all of it if it is at most
    /// `want.whole_up_to` bytes, else at least its first `want.prefix` bytes. One backend call.
    ///
    /// On the filesystem the object is opened, stat'ed and read in one blocking task, and
    /// exactly [`ReadStart`]'s length comes back. An S3 backend (and memory) cannot know the
    /// size before the read, so it asks for the larger of the two lengths in one ranged GET
    /// (the answer's `Content-Range` carries the size) and may return more than `prefix` bytes
    /// of a large object; an empty object, which no ranged GET can read, falls back to a
    /// `head`.
    ///
    /// Counts as one ranged read in [`Storage::read_counts`].
    ///
    /// # Errors
    /// [`Error::NotFound`] (also for a path that is a directory), [`Error::Backend`],
    /// [`Error::Io`].
    pub async fn read_start(&self, path: &str, want: ReadStart) -> Result<(Meta, Bytes)> {
        let location = self.read_path(path)?;
        self.reads.range();
        if let Kind::Fs { local, .. } = &self.kind {
            let file = local.path_to_filesystem(&location)?;
            #[cfg(target_os = "linux")]
            if let Some(read) = read_cached_start(&file, want) {
                return read;
            }
            return blocking(move || read_file_start(&file, want)).await;
        }
        let end = want.whole_up_to.max(want.prefix);
        if end == 0 {
            return Ok((self.store.head(&location).await?.into(), Bytes::new()));
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(0..end)),
            ..Default::default()
        };
        match self.store.get_opts(&location, options).await {
            Ok(result) => {
                let meta = Meta::from(result.meta.clone());
                Ok((meta, result.bytes().await?))
            }
            Err(object_store::Error::NotFound { .. }) => Err(Error::NotFound),
            // A ranged read of an empty object is refused (416, or InvalidRange in memory):
            // ask for the size alone, and an empty object has no bytes to return.
            Err(first) => match self.store.head(&location).await {
                Ok(meta) if meta.size == 0 => Ok((meta.into(), Bytes::new())),
                Ok(_) => Err(first.into()),
                Err(e) => Err(e.into()),
            },
        }
    }
}

/// The read of [`read_file_start`], done on the calling (async) thread if it needs no disk
/// I/O: the bytes are read with `preadv2(RWF_NOWAIT)`, which fails with `EAGAIN` instead of
/// waiting for the disk. `None` means "do the read on the blocking pool": the data is not in
/// the page cache, the filesystem cannot tell (`EOPNOTSUPP`), or anything else went wrong
/// (the blocking path then reports it).
///
/// Why: a blocking-pool hand-off costs two thread wake-ups and two context switches, more
/// than opening and reading a cached 4 KiB object (the small-GET profile, docs/benchmarks.md).
/// nginx reads files on its event loop the same way. The open and the stat stay unguarded:
/// they wait for the disk only when the directory entry or inode is not cached, the case
/// nginx's `open_file_cache` exists for, and then only once per cold object.
#[cfg(target_os = "linux")]
fn read_cached_start(file: &std::path::Path, want: ReadStart) -> Option<Result<(Meta, Bytes)>> {
    let (handle, meta) = match open_object(file) {
        Ok(opened) => opened,
        Err(Error::NotFound) => return Some(Err(Error::NotFound)),
        Err(_) => return None,
    };
    let len = usize::try_from(want.len(meta.size)).ok()?;
    let mut bytes = vec![0u8; len];
    if !read_cached_at(&handle, 0, &mut bytes) {
        return None;
    }
    Some(Ok((meta, Bytes::from(bytes))))
}

/// How much of a file one step of [`Storage::stream_range`] reads on the filesystem.
/// object_store's own file stream reads 8 KiB per blocking-pool task: 32,768 hand-offs for a
/// 256 MiB GET, which held a pass-through GET to 0.62× nginx's speed (docs/benchmarks.md,
/// issue 15). 256 KiB is four object segments and a few TLS records, small enough that a
/// client that stops reading leaves little in flight.
pub(super) const FS_STREAM_CHUNK: usize = 256 * 1024;

/// The filesystem's range stream: the file opened once (before this returns, so a missing
/// object is [`Error::NotFound`] here, as object_store's stream reports it), then read
/// `FS_STREAM_CHUNK` bytes at a time by position. As in [`read_cached_start`], a chunk already
/// in the page cache is read on the async thread (`preadv2(RWF_NOWAIT)`), and only one that
/// would wait for the disk goes to the blocking pool. A file that ends before `range.end` ends
/// the stream with an error, so a truncated file never passes for a complete range.
pub(super) async fn fs_stream(
    file: std::path::PathBuf,
    range: std::ops::Range<u64>,
) -> Result<futures::stream::BoxStream<'static, Result<Bytes>>> {
    use futures::StreamExt as _;
    let handle =
        blocking(move || open_object(&file).map(|(handle, _)| std::sync::Arc::new(handle))).await?;
    let chunks =
        futures::stream::try_unfold((handle, range.start), move |(handle, offset)| async move {
            if offset >= range.end {
                return Ok(None);
            }
            let len = usize::try_from(range.end - offset)
                .unwrap_or(FS_STREAM_CHUNK)
                .min(FS_STREAM_CHUNK);
            let chunk = read_chunk(&handle, offset, len).await?;
            let next = offset + chunk.len() as u64;
            Ok(Some((chunk, (handle, next))))
        });
    Ok(chunks.boxed())
}

/// `len` bytes of `handle` from `offset`: from the page cache on this thread when they are
/// all there, else in the blocking pool.
async fn read_chunk(
    handle: &std::sync::Arc<std::fs::File>,
    offset: u64,
    len: usize,
) -> Result<Bytes> {
    let mut buf = vec![0u8; len];
    if read_cached_at(handle, offset, &mut buf) {
        return Ok(Bytes::from(buf));
    }
    // Not cached, EOPNOTSUPP, or the end of the file: the blocking read decides, and
    // reports, which.
    let handle = handle.clone();
    blocking(move || {
        use std::os::unix::fs::FileExt as _;
        handle
            .read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io("reading the object failed", e))?;
        Ok(Bytes::from(buf))
    })
    .await
}

/// Fills `buf` from `file` at `offset` if the page cache holds every byte, on the calling
/// thread (`preadv2(RWF_NOWAIT)`: `EAGAIN` instead of a wait for the disk). False when it
/// could not: not cached, `EOPNOTSUPP`, or the file ends first; the caller then reads in the
/// blocking pool, which reports any real error.
#[cfg(target_os = "linux")]
fn read_cached_at(file: &std::fs::File, offset: u64, buf: &mut [u8]) -> bool {
    use rustix::io::{ReadWriteFlags, preadv2};
    let mut read = 0;
    while read < buf.len() {
        let at = offset + read as u64;
        match preadv2(
            file,
            &mut [std::io::IoSliceMut::new(&mut buf[read..])],
            at,
            ReadWriteFlags::NOWAIT,
        ) {
            Ok(n) if n > 0 => read += n,
            _ => return false,
        }
    }
    true
}

/// Elsewhere every read goes to the blocking pool.
#[cfg(not(target_os = "linux"))]
fn read_cached_at(_file: &std::fs::File, _offset: u64, _buf: &mut [u8]) -> bool {
    false
}

/// Runs blocking file work in tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::io("the object read task failed", e))?
}

/// Whether opening failed because there is no such object.
fn is_not_found(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

/// The object's open file and its [`Meta`], from that file (so size and bytes belong together).
fn open_object(file: &std::path::Path) -> Result<(std::fs::File, Meta)> {
    let handle = match std::fs::File::open(file) {
        Ok(handle) => handle,
        Err(e) if is_not_found(&e) => return Err(Error::NotFound),
        Err(e) => return Err(Error::io("opening the object failed", e)),
    };
    let stat = handle
        .metadata()
        .map_err(|e| Error::io("reading the object's metadata failed", e))?;
    // object_store reports a directory as absent; so do we (a key prefix is no object).
    if stat.is_dir() {
        return Err(Error::NotFound);
    }
    let meta = Meta {
        size: stat.len(),
        last_modified: stat
            .modified()
            .map_err(|e| Error::io("reading the object's modification time failed", e))?,
    };
    Ok((handle, meta))
}

/// The blocking part on the filesystem: open, stat the open file, read.
fn read_file_start(file: &std::path::Path, want: ReadStart) -> Result<(Meta, Bytes)> {
    let (mut handle, meta) = open_object(file)?;
    let len = usize::try_from(want.len(meta.size))
        .map_err(|e| Error::io("the object's read length does not fit in memory", e))?;
    let mut bytes = vec![0u8; len];
    // The size came from this open file, so a short read means the file was truncated in
    // place under us: no writer of ours does that (writes are renames), so it is an error.
    handle
        .read_exact(&mut bytes)
        .map_err(|e| Error::io("reading the object failed", e))?;
    Ok((meta, Bytes::from(bytes)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests
    use super::*;

    const WANT: ReadStart = ReadStart {
        whole_up_to: 16,
        prefix: 4,
    };

    async fn stores(dir: &tempfile::TempDir) -> Vec<Storage> {
        let fs = Storage::from_config(&super::super::StorageConfig::Fs {
            root: dir.path().to_path_buf(),
            fsync: false,
        })
        .unwrap();
        vec![fs, Storage::memory()]
    }

    #[tokio::test]
    async fn a_small_object_is_read_whole_and_a_large_one_from_its_start_in_one_read() {
        let dir = tempfile::tempdir().unwrap();
        for storage in stores(&dir).await {
            storage
                .put("b/small", Bytes::from_static(b"0123456789"))
                .await
                .unwrap();
            storage
                .put("b/large", Bytes::from(vec![7u8; 100]))
                .await
                .unwrap();
            storage.put("b/empty", Bytes::new()).await.unwrap();
            let before = storage.read_counts();

            let (meta, bytes) = storage.read_start("b/small", WANT).await.unwrap();
            assert_eq!((meta.size, &bytes[..]), (10, &b"0123456789"[..]));
            let (meta, bytes) = storage.read_start("b/large", WANT).await.unwrap();
            assert_eq!(meta.size, 100);
            // The filesystem reads exactly the prefix; memory may return up to `whole_up_to`.
            assert!(bytes.len() >= 4 && bytes.len() <= 16, "{}", bytes.len());
            assert!(bytes.iter().all(|b| *b == 7));
            let (meta, bytes) = storage.read_start("b/empty", WANT).await.unwrap();
            assert_eq!((meta.size, bytes.len()), (0, 0));

            let after = storage.read_counts();
            assert_eq!(
                (after.heads - before.heads, after.ranges - before.ranges),
                (0, 3)
            );
        }
    }

    /// The read on the async thread (page cache only) and the blocking one agree; the first
    /// answers for cached files, and steps aside (None) rather than failing for anything else.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_cached_read_and_the_blocking_read_return_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("obj");
        std::fs::write(&file, (0..=255u8).cycle().take(5000).collect::<Vec<u8>>()).unwrap();
        for want in [
            WANT,
            ReadStart {
                whole_up_to: 8192,
                prefix: 0,
            },
        ] {
            // Just written, so cached (or, on a filesystem without RWF_NOWAIT, None).
            if let Some(cached) = read_cached_start(&file, want) {
                let (a, b) = (cached.unwrap(), read_file_start(&file, want).unwrap());
                assert_eq!((a.0.size, a.0.last_modified), (b.0.size, b.0.last_modified));
                assert_eq!(a.1, b.1);
            }
        }
        assert!(matches!(
            read_cached_start(dir.path(), WANT),
            Some(Err(Error::NotFound))
        ));
        let missing = dir.path().join("missing");
        assert!(matches!(
            read_cached_start(&missing, WANT),
            Some(Err(Error::NotFound))
        ));
    }

    #[tokio::test]
    async fn a_missing_object_or_a_key_prefix_reads_as_not_found() {
        let dir = tempfile::tempdir().unwrap();
        for storage in stores(&dir).await {
            storage
                .put("b/dir/obj", Bytes::from_static(b"x"))
                .await
                .unwrap();
            for path in ["b/missing", "b/dir", "b/dir/obj/below"] {
                let result = storage.read_start(path, WANT).await;
                assert!(matches!(result, Err(Error::NotFound)), "{path}: {result:?}");
            }
        }
    }

    /// The filesystem streams a range in `FS_STREAM_CHUNK` steps across chunk boundaries and
    /// returns exactly the bytes memory returns; a missing object is `NotFound`, and on the
    /// filesystem a range past the end of the file ends the stream with an error.
    #[tokio::test]
    async fn a_streamed_range_crosses_chunks_and_a_short_file_is_an_error() {
        use futures::TryStreamExt as _;
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..=250u8)
            .cycle()
            .take(2 * FS_STREAM_CHUNK + 4099)
            .collect();
        let len = data.len() as u64;
        for storage in stores(&dir).await {
            storage
                .put("b/obj", Bytes::from(data.clone()))
                .await
                .unwrap();
            for range in [0..len, 1000..len - 3, 5..6, FS_STREAM_CHUNK as u64..len] {
                let chunks: Vec<Bytes> = storage
                    .stream_range("b/obj", range.clone())
                    .await
                    .unwrap()
                    .try_collect()
                    .await
                    .unwrap();
                if matches!(storage.kind, Kind::Fs { .. }) {
                    assert!(chunks.iter().all(|c| c.len() <= FS_STREAM_CHUNK));
                    assert!(chunks.len() > 1 || range.end - range.start <= FS_STREAM_CHUNK as u64);
                }
                let got: Vec<u8> = chunks.concat();
                assert_eq!(
                    got,
                    data[range.start as usize..range.end as usize],
                    "{range:?}"
                );
            }
            // Refused before any byte is streamed: a missing object, and a directory (a key
            // prefix on the filesystem) as object_store reports it.
            for path in ["b/missing", "b"] {
                let missing = storage.stream_range(path, 0..10).await.map(|_| ());
                assert!(
                    matches!(missing, Err(Error::NotFound)),
                    "{path}: {missing:?}"
                );
            }
            let past_end = match storage.stream_range("b/obj", len - 10..len + 10).await {
                Ok(stream) => stream.try_collect::<Vec<Bytes>>().await.map(|_| ()),
                Err(e) => Err(e),
            };
            // object_store's backends clamp a range at the end of the object (the body
            // producers then see the short count); the filesystem refuses it outright.
            if matches!(storage.kind, Kind::Fs { .. }) {
                assert!(past_end.is_err());
            }
        }
    }
}
