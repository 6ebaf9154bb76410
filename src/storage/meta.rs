//! What the backends report: an object's size and age, and what a staging sweep did.

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
