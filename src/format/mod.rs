//! The encrypted object format, as `docs/format.md` (normative) specifies it; this module
//! implements it. Every stored object is an authenticated header, then one or more *runs* of
//! STREAM-style AES-256-GCM segments, and for multipart objects an authenticated footer:
//!
//! - format v1 (§1–5): the header holds the wrapped DEK; format v2 (§6) is v1 plus the object's
//!   metadata sealed in the header, and is written only for objects that have metadata (both
//!   for tenant keys of the legacy scheme, whose KEK is derived from the TMK);
//! - format v3 (§8): the header also holds a random object id, the DEK is wrapped under a
//!   per-object KEK from the tenant's threshold OPRF, and the sealed metadata block is always
//!   there ([`new_object_v3`]; [`peek_header`] reads the id without a key, to derive the KEK);
//! - header layout byte: 0 = one run; 1 = multipart, all runs under the object's segment key
//!   (read only now); 2 = multipart with per-attempt part keys (§7), which every new multipart
//!   upload writes.
//!
//! Pure and synchronous: callers push bytes in and take bytes out, with memory bounded by one
//! segment, so the proxy can stream objects of any size. No I/O, no async.
//!
//! Files layer strictly, each importing only those above it: [`metadata`], [`cipher`], [`header`],
//! [`layout`], [`stream`].
//!
//! - [`metadata`]: object metadata and its canonical encoding (sealed into v2 headers).
//! - [`cipher`]: what every layer shares: segment nonces, run nonce prefixes and the layout 2
//!   [`PartAttempt`].
//! - [`header`]: the header byte layout and parsing (`header::fields`, with [`peek_header`]), the
//!   MAC, and [`ObjectCipher`], the per-object key state ([`new_object`], [`new_object_v3`],
//!   [`open_object`]).
//! - [`layout`]: run/segment arithmetic, plaintext length from ciphertext length, range
//!   mapping, and the multipart footer (layout 1, and layout 2 whose footer names each part's
//!   upload attempt: every attempt has its own key, docs/format.md §7).
//! - [`stream`]: the incremental [`Encryptor`] and [`Decryptor`].

pub mod cipher;
pub mod header;
pub mod inspect;
pub mod layout;
pub mod metadata;
pub mod stream;

pub use cipher::PartAttempt;
pub use header::{
    HEADER_PROBE_LEN, Header, HeaderInfo, Layout, MAX_HEADER_LEN, ObjectCipher, Rewrapped,
    header_len_hint, layout_hint, new_object, new_object_v3, new_object_with_metadata, open_object,
    peek_header,
};
pub use inspect::{Inspection, PlaintextLen, inspect};
pub use layout::{
    FOOTER_TAIL_LEN, ObjectLayout, PartInfo, footer_len_from_tail, footer_plaintext_len_hint,
    run_ciphertext_len,
};
pub use metadata::{MAX_METADATA, Metadata};
pub use stream::{Decryptor, Encryptor};

/// Default plaintext segment size: 64 KiB.
pub const DEFAULT_SEGMENT_SIZE: u32 = 1 << 16;

/// Errors of the object-format layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object could not be authenticated or decrypted: a flipped bit, truncation, trailing
    /// bytes, reordered or moved data, a wrong key or version. Deliberately vague; the stage
    /// that failed is logged at debug level only.
    #[error("decryption failed")]
    DecryptionFailed,
    /// A requested plaintext range lies outside the object.
    #[error("requested range is not satisfiable for an object of {plaintext_len} bytes")]
    InvalidRange {
        /// The object's plaintext length.
        plaintext_len: u64,
    },
    /// Multipart part list rejected (empty, unsorted, duplicate, zero or > 10000 parts).
    #[error("invalid multipart part list: {0}")]
    InvalidParts(&'static str),
    /// An API used against its contract (e.g. a wrong buffer length for an in-place call).
    #[error("format API misuse: {0}")]
    Misuse(&'static str),
    /// Metadata whose canonical encoding exceeds [`MAX_METADATA`] bytes.
    #[error("object metadata too large: {len} bytes encoded, at most {max}")]
    MetadataTooLarge {
        /// Encoded length of the rejected metadata.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More input than the format allows (2^32 segments per run).
    #[error("object too large for the format")]
    TooLarge,
    /// [`peek_header`]: the bytes end before the header's public fields do. Read at least
    /// `need` bytes (never more than [`HEADER_PROBE_LEN`]), or the whole object: if the object
    /// is shorter than that, it is not a whole object.
    #[error("object header truncated: its public fields need {need} bytes")]
    HeaderTruncated {
        /// Bytes needed to read the public fields.
        need: usize,
    },
    /// [`peek_header`]: the bytes are not a treuhand object header of a known version (magic,
    /// version, AEAD id, segment size, layout or tenant id). The field is logged at debug level.
    #[error("not a treuhand object header")]
    NotAnObject,
    /// A crypto-layer failure that is not an authentication failure (RNG, internal).
    #[error(transparent)]
    Crypto(crate::crypto::Error),
}

impl From<crate::crypto::Error> for Error {
    fn from(e: crate::crypto::Error) -> Self {
        match e {
            crate::crypto::Error::DecryptionFailed => Error::DecryptionFailed,
            other => Error::Crypto(other),
        }
    }
}

/// Records which stage of decryption failed (debug log only) and returns the vague error.
pub(crate) fn fail(stage: &'static str) -> Error {
    tracing::debug!(stage, "object decryption failed");
    Error::DecryptionFailed
}
