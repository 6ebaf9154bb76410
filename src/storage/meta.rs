//! What the backends report: an object's size and age, what a staging sweep did, and how many
//! reads a [`Storage`](super::Storage) has made.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Size and modification time of a stored object.
#[derive(Debug, Clone)]
pub struct Meta {
    /// Stored (ciphertext) size in bytes.
    pub size: u64,
    /// Last modification time.
    pub last_modified: std::time::SystemTime,
}

impl From<object_store::ObjectMeta> for Meta {
    fn from(meta: object_store::ObjectMeta) -> Self {
        Meta {
            size: meta.size,
            last_modified: meta.last_modified.into(),
        }
    }
}

/// What one [`Storage::sweep_staging`](super::Storage::sweep_staging) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Staging leftovers removed.
    pub removed: usize,
    /// Staging files kept because they are younger than the safety age.
    pub kept: usize,
}

/// How many object reads a [`Storage`](super::Storage) (and its clones) has sent to the
/// backend: what a test or a measurement needs to pin the cost of a call (a listing page
/// reads a page's worth of headers, not the bucket's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCounts {
    /// `head` calls (size and time of one object).
    pub heads: usize,
    /// Ranged reads of object bytes (`read_range` and `stream_range`).
    pub ranges: usize,
}

/// The live counters behind [`ReadCounts`], shared by a storage's clones.
#[derive(Debug, Default)]
pub(super) struct ReadCounters {
    heads: AtomicUsize,
    ranges: AtomicUsize,
}

impl ReadCounters {
    pub(super) fn head(&self) {
        self.heads.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn range(&self) {
        self.ranges.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> ReadCounts {
        ReadCounts {
            heads: self.heads.load(Ordering::Relaxed),
            ranges: self.ranges.load(Ordering::Relaxed),
        }
    }
}
