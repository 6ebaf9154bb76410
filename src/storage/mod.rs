//! Storage backends: where ciphertext lives.
//!
//! One type, [`Storage`], over object_store's `ObjectStore` trait (the one backend trait), with
//! three implementations chosen by configuration: the local filesystem (the default), memory
//! (tests) and any S3-compatible endpoint (Ceph RGW, MinIO, Garage, AWS).
//!
//! Guarantees the proxy relies on:
//!
//! - **Atomic writes.** A [`Writer`] publishes its object only in [`Writer::complete`]. Small
//!   objects are buffered and written with one `put` (the filesystem writes a staged file and
//!   renames it); larger ones stream through a backend multipart upload (staged file on the
//!   filesystem, S3 multipart upload on S3). A writer dropped or aborted before completion
//!   leaves no visible object.
//! - **Bounded memory.** A writer holds at most one buffer of `chunk_size` bytes plus the
//!   parts in flight; reads are streams. A filesystem listing holds at most a batch of names
//!   per directory it is reading.
//! - **Listings in key order on the filesystem.** [`Storage::list_keys`] walks the filesystem
//!   in the byte order of the decoded keys, so a page of a bucket listing stops after its
//!   last key; memory and S3 list in stored-path order, and the page reads them all.
//!
//! This module sees only ciphertext and opaque paths; it must not depend on the proxy, the
//! trustee or the object format.
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | the [`Storage`] facade: one type over every backend |
//! | `config.rs` | [`StorageConfig`], the `[storage]` section |
//! | `error.rs` | [`Error`], the layer's one error enum |
//! | `meta.rs` | [`Meta`] and [`SweepReport`], what backends report |
//! | `read.rs` | [`Storage::read_start`]: size, time and first bytes in one call (GET, HEAD) |
//! | `keys.rs` | [`encode_key`] / [`decode_key`]: keys as paths every backend can hold |
//! | `writer.rs` | [`Writer`], the atomic streaming write |
//! | `replace.rs` | [`Storage::replace_prefix`]: a new header for a stored body (rewrap) |
//! | `fs.rs` | the filesystem's own parts: staging sweep, listing in key order |
//! | `s3.rs` | an S3 backend's own parts: signed requests for the sweep and bucket creation |

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

mod config;
mod error;
mod fs;
mod keys;
mod meta;
mod read;
mod replace;
mod s3;
mod writer;

pub use config::StorageConfig;
pub use error::{BoxError, Error, Result};
pub use keys::{MAX_COMPONENT, decode_key, encode_key, encode_prefix_dir};
pub use meta::{Meta, ReadCounts, SweepReport};
pub use read::ReadStart;
pub use replace::Replaced;
pub use writer::Writer;

use s3::S3Backend;

/// The storage backend.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    chunk_size: usize,
    kind: Kind,
    /// Object reads sent to the backend ([`Storage::read_counts`]).
    reads: Arc<meta::ReadCounters>,
}

/// Which backend a [`Storage`] is, for what object_store cannot do for us (the staging sweep,
/// listing in key order). No `Debug`: the S3 variant holds the backend's secret key.
#[derive(Clone)]
enum Kind {
    /// The filesystem below `root`.
    Fs {
        root: std::path::PathBuf,
        /// The same store as `Storage::store`, typed: it maps paths to files for
        /// [`Storage::replace_prefix`].
        local: Arc<object_store::local::LocalFileSystem>,
        /// Whether writes are fsynced (`[storage] fsync`).
        fsync: bool,
        /// Names the ordered listings have read from directories (tests pin that a page reads
        /// a page's worth, not the bucket).
        names_read: Arc<AtomicUsize>,
    },
    /// Memory: nothing outlives the process.
    Memory,
    /// An S3-compatible endpoint.
    S3(Arc<S3Backend>),
}

/// The keys of one [`Storage::list_keys`].
pub struct KeyListing {
    /// Decoded keys with their stored metadata.
    pub keys: BoxStream<'static, Result<(String, Meta)>>,
    /// The keys come in strictly increasing byte order, each starting with the prefix and
    /// sorting after the resume point, and of the keys folded into one common prefix only the
    /// first comes: a page can stop once it is full. Otherwise they come in any order, all of
    /// them, and keys outside the prefix or at or before the resume point may be among them
    /// (the caller filters).
    pub ordered: bool,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({})", self.store)
    }
}

/// The longest key an S3 backend stores, in bytes (S3's documented limit; MinIO and Ceph RGW
/// keep it).
pub const S3_MAX_KEY: usize = 1024;

/// Objects up to this size are written with one `put`; larger ones use multipart (5 MiB is
/// S3's minimum part size).
pub const DEFAULT_CHUNK_SIZE: usize = 8 * 1024 * 1024;

impl Storage {
    /// Builds the backend from its configuration.
    ///
    /// # Errors
    /// [`Error::Config`] with the reason.
    pub fn from_config(config: &StorageConfig) -> Result<Self> {
        if let Some(s3) = S3Backend::from_config(config)? {
            let s3 = Arc::new(s3);
            return Ok(Self::new(s3.store(), Kind::S3(s3)));
        }
        Ok(match config {
            StorageConfig::Fs { root, fsync } => {
                let local = Arc::new(fs::open(root, *fsync)?);
                Self::new(
                    local.clone(),
                    Kind::Fs {
                        root: root.clone(),
                        local,
                        fsync: *fsync,
                        names_read: Arc::default(),
                    },
                )
            }
            // Memory (an S3 configuration was built above).
            _ => Self::memory(),
        })
    }

    /// Creates the backend bucket of an S3 configuration with `create_bucket = true` (an
    /// existing bucket of the same owner is fine). Other backends: nothing to do.
    ///
    /// # Errors
    /// [`Error::Io`] if the endpoint cannot be reached, [`Error::Refused`] with its answer.
    pub async fn ensure_bucket(config: &StorageConfig) -> Result<()> {
        s3::ensure_bucket(config).await
    }

    /// An in-memory backend.
    pub fn memory() -> Self {
        Self::new(Arc::new(InMemory::new()), Kind::Memory)
    }

    fn new(store: Arc<dyn ObjectStore>, kind: Kind) -> Self {
        Self {
            store,
            chunk_size: DEFAULT_CHUNK_SIZE,
            kind,
            reads: Arc::default(),
        }
    }

    /// The same backend, switching from one `put` to a multipart write at `chunk_size` bytes
    /// (tests use small ones to exercise the multipart path).
    pub fn with_chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size;
        self
    }

    /// Removes the staging leftovers of writes that never completed and are older than
    /// `older_than`: what a process killed in the middle of a write leaves behind.
    ///
    /// - **Filesystem:** a write is staged as `<name>#<n>` beside its target and renamed over
    ///   it when complete. A staging file no rename came for stays for ever, hidden from
    ///   listings and out of reach of every S3 call. Object names never contain `#`
    ///   ([`encode_key`] escapes it, and the other names of the layout are hex, digits and
    ///   bucket names), so a name ending in `#<digits>` is a staging file and nothing else.
    /// - **Memory:** a staged write lives in the writer and dies with the process; nothing to do.
    /// - **S3:** a killed write leaves an incomplete multipart upload, invisible and billed.
    ///   Uploads below `tenants/` initiated longer than `older_than` ago are aborted (every
    ///   multipart upload there is one of a [`Writer`]: the proxy stages its clients' parts as
    ///   objects). A bucket lifecycle rule `AbortIncompleteMultipartUpload` does the same
    ///   without a running proxy.
    ///
    /// # Safety age
    ///
    /// Only files whose modification time is older than `older_than` are removed: a staging
    /// file of a write in flight (this process's or another proxy's sharing the backend) is
    /// written to at least once per chunk, so it stays young while its write is alive. Use an
    /// age well above the longest pause of a slow client upload (the default is one hour).
    ///
    /// # Errors
    /// [`Error::Backend`] if the tree cannot be walked; files that vanish or cannot be removed
    /// while sweeping are skipped (a concurrent rename or sweep got there first).
    pub async fn sweep_staging(&self, older_than: std::time::Duration) -> Result<SweepReport> {
        match &self.kind {
            Kind::Fs { root, .. } => {
                let root = root.clone();
                tokio::task::spawn_blocking(move || fs::sweep(&root, older_than))
                    .await
                    .map_err(|e| Error::io("the staging sweep task failed", e))?
            }
            Kind::S3(s3) => s3.sweep(older_than).await,
            Kind::Memory => Ok(SweepReport::default()),
        }
    }

    fn path(path: &str) -> Result<Path> {
        Path::parse(path).map_err(|e| Error::InvalidPath(e.to_string()))
    }

    /// A path to write. An S3 backend stores keys of at most [`S3_MAX_KEY`] bytes; a longer
    /// path (a key near S3's limit, grown by its prefix and escapes) is refused here as
    /// [`Error::InvalidPath`], a client error, instead of reaching the backend and coming
    /// back as a backend failure that clients retry.
    fn write_path(&self, path: &str) -> Result<Path> {
        if matches!(self.kind, Kind::S3(_)) && path.len() > S3_MAX_KEY {
            return Err(Error::InvalidPath(format!(
                "the stored path is {} bytes, longer than the S3 backend's {S3_MAX_KEY}",
                path.len()
            )));
        }
        Self::path(path)
    }

    /// A path to read or delete: one the backend cannot store is simply absent.
    fn read_path(&self, path: &str) -> Result<Path> {
        if matches!(self.kind, Kind::S3(_)) && path.len() > S3_MAX_KEY {
            return Err(Error::NotFound);
        }
        Self::path(path)
    }

    /// Size and modification time, or [`Error::NotFound`].
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Backend`].
    pub async fn head(&self, path: &str) -> Result<Meta> {
        self.reads.head();
        Ok(self.store.head(&self.read_path(path)?).await?.into())
    }

    /// Reads a byte range completely (for headers and footers; keep ranges small).
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Backend`].
    pub async fn read_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        self.reads.range();
        Ok(self.store.get_range(&self.read_path(path)?, range).await?)
    }

    /// Streams a byte range.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Backend`].
    pub async fn stream_range(
        &self,
        path: &str,
        range: Range<u64>,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        if range.is_empty() {
            return Ok(futures::stream::empty().boxed());
        }
        self.reads.range();
        if let Kind::Fs { local, .. } = &self.kind {
            let file = local.path_to_filesystem(&self.read_path(path)?)?;
            return read::fs_stream(file, range).await;
        }
        let options = object_store::GetOptions {
            range: Some(range.into()),
            ..Default::default()
        };
        let result = self.store.get_opts(&self.read_path(path)?, options).await?;
        Ok(result.into_stream().map_err(Error::from).boxed())
    }

    /// Writes a small object in one atomic put.
    ///
    /// # Errors
    /// [`Error::Backend`], [`Error::InvalidPath`].
    pub async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        self.store
            .put(&self.write_path(path)?, PutPayload::from_bytes(data))
            .await?;
        Ok(())
    }

    /// Starts an atomic streaming write.
    ///
    /// # Errors
    /// [`Error::InvalidPath`].
    pub fn writer(&self, path: &str) -> Result<Writer> {
        Ok(Writer::new(
            self.store.clone(),
            self.write_path(path)?,
            self.chunk_size,
        ))
    }

    /// Deletes an object; deleting a missing object succeeds.
    ///
    /// # Errors
    /// [`Error::Backend`].
    pub async fn delete(&self, path: &str) -> Result<()> {
        let path = match self.read_path(path) {
            Err(Error::NotFound) => return Ok(()),
            other => other?,
        };
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Lists every object under a directory prefix (recursively), as (path, meta).
    pub fn list(&self, prefix: &str) -> BoxStream<'static, Result<(String, Meta)>> {
        let prefix = match Self::path(prefix) {
            Ok(p) => p,
            Err(e) => return futures::stream::once(async move { Err(e) }).boxed(),
        };
        self.store
            .list(Some(&prefix))
            .map(|item| {
                let meta = item?;
                Ok((meta.location.to_string(), meta.into()))
            })
            .boxed()
    }

    /// Lists the keys stored below `base` (each at `base/`[`encode_key`]`(key)`) that a page
    /// of S3's `prefix`, `delimiter` and resume point `after` needs, with their stored
    /// metadata. Only the directory of the prefix ([`encode_prefix_dir`]) is read; names that
    /// are not encoded keys (staging files) are skipped.
    ///
    /// The filesystem lists in key order ([`KeyListing::ordered`]), reading directories as the
    /// keys are taken, and skips what the page cannot show (see `fs::OrderedWalk`); memory and
    /// S3 list every key of the directory in stored-path order, which under the key encoding
    /// is not key order.
    pub fn list_keys(
        &self,
        base: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
    ) -> KeyListing {
        let dir = encode_prefix_dir(prefix);
        let root = if dir.is_empty() {
            base.to_owned()
        } else {
            format!("{base}/{dir}")
        };
        if let Kind::Fs {
            root: fs_root,
            names_read,
            ..
        } = &self.kind
        {
            if let Err(e) = Self::path(&root) {
                return KeyListing {
                    keys: futures::stream::once(async move { Err(e) }).boxed(),
                    ordered: true,
                };
            }
            // The decoded directory: the prefix up to its last `/`.
            let root_key = &prefix[..prefix.rfind('/').map_or(0, |i| i + 1)];
            let walk = fs::OrderedWalk::new(
                fs_root.join(&root),
                root_key,
                (prefix, delimiter, after),
                names_read.clone(),
            );
            return KeyListing {
                keys: fs::stream(walk),
                ordered: true,
            };
        }
        let base = format!("{base}/");
        let keys = self
            .list(&root)
            .filter_map(move |item| {
                let key = match item {
                    Ok((path, meta)) => path
                        .strip_prefix(&base)
                        .and_then(decode_key)
                        .map(|key| Ok((key, meta))),
                    Err(e) => Some(Err(e)),
                };
                futures::future::ready(key)
            })
            .boxed();
        KeyListing {
            keys,
            ordered: false,
        }
    }

    /// The object reads this storage and its clones have sent to the backend so far (counted
    /// before the backend answers, so failed reads count too).
    pub fn read_counts(&self) -> ReadCounts {
        self.reads.snapshot()
    }

    /// How many names the filesystem's ordered listings have read from directories.
    #[cfg(test)]
    pub(crate) fn names_read(&self) -> usize {
        match &self.kind {
            Kind::Fs { names_read, .. } => names_read.load(std::sync::atomic::Ordering::Relaxed),
            _ => 0,
        }
    }

    /// Copies raw stored bytes.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Backend`].
    pub async fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.store
            .copy(&self.read_path(from)?, &self.write_path(to)?)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests
    use super::keys::long_keys;
    use super::*;

    #[tokio::test]
    async fn filesystem_stores_lists_and_deletes_keys_longer_than_name_max() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::from_config(&StorageConfig::fs_for_tests(dir.path())).unwrap();
        let mut expected = Vec::new();
        for key in long_keys() {
            let path = format!("t/{}", encode_key(&key));
            storage.put(&path, Bytes::from_static(b"v")).await.unwrap();
            assert_eq!(storage.head(&path).await.unwrap().size, 1);
            expected.push(key);
        }
        let mut listed: Vec<String> = storage
            .list("t")
            .map(|item| decode_key(item.unwrap().0.strip_prefix("t/").unwrap()).unwrap())
            .collect()
            .await;
        listed.sort();
        expected.sort();
        assert_eq!(listed, expected);
        for key in long_keys() {
            storage
                .delete(&format!("t/{}", encode_key(&key)))
                .await
                .unwrap();
        }
        assert!(storage.list("t").collect::<Vec<_>>().await.is_empty());
    }

    #[tokio::test]
    async fn s3_paths_over_its_key_limit_are_a_client_error_or_absent_without_a_request() {
        // Nothing listens on port 1: a request would fail as a backend error (after retries).
        crate::tls::install_crypto_provider();
        let storage = Storage::from_config(&StorageConfig::s3_for_tests(
            "http://127.0.0.1:1".to_owned(),
        ))
        .unwrap();
        let path = format!("tenants/t/objects/b/{}", encode_key(&"é".repeat(300)));
        assert!(path.len() > S3_MAX_KEY);
        assert!(matches!(storage.writer(&path), Err(Error::InvalidPath(_))));
        assert!(matches!(
            storage.put(&path, Bytes::new()).await,
            Err(Error::InvalidPath(_))
        ));
        assert!(matches!(storage.head(&path).await, Err(Error::NotFound)));
        assert!(matches!(
            storage.read_range(&path, 0..1).await,
            Err(Error::NotFound)
        ));
        assert!(storage.delete(&path).await.is_ok());
    }

    #[tokio::test]
    async fn aborted_and_dropped_writers_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::from_config(&StorageConfig::fs_for_tests(dir.path())).unwrap();
        let mut storage_small = storage.clone();
        storage_small.chunk_size = 5 * 1024 * 1024;
        let mut w = storage_small.writer("t/x").unwrap();
        w.write(&vec![1u8; 6 * 1024 * 1024]).await.unwrap();
        drop(w);
        let mut w = storage.writer("t/y").unwrap();
        w.write(b"abc").await.unwrap();
        w.abort().await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let listed: Vec<_> = storage.list("t").collect().await;
        assert!(listed.is_empty(), "{listed:?}");
        let mut w = storage_small.writer("t/z").unwrap();
        w.write(&vec![2u8; 6 * 1024 * 1024]).await.unwrap();
        w.complete().await.unwrap();
        assert_eq!(storage.head("t/z").await.unwrap().size, 6 * 1024 * 1024);
    }
}
