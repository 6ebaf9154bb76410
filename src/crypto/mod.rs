//! The pure crypto core: AEAD, the key hierarchy and Shamir sharing.
//!
//! Nothing in here does I/O, spawns tasks or knows about HTTP or storage; it may depend only
//! on [`crate::secret`]. ring and vsss-rs types never leave this module.

/// `Debug` that prints only the type name and `[REDACTED]`, for the key schedules here that
/// hold secrets but are not `crate::secret` newtypes (ring's keys, derived subkeys). Defined
/// before the `mod` lines so the files below can use it by name.
macro_rules! redacted_debug {
    ($($name:ident),+ $(,)?) => {$(
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }
    )+};
}

pub mod aead;
pub mod envelope;
pub mod metadata;
pub mod oprf;
pub mod scheme;
pub mod seal;
pub mod shamir;
pub mod sign;
pub mod sigv4;

pub use envelope::{DekContext, KeyCommitment, KeyId, ObjectKeys};
pub use metadata::{Holder, KeyMetadata, KeyScheme};
pub use shamir::ShareEnvelope;

/// Errors of the crypto layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Authentication failed. Deliberately vague: a wrong key, a bad tag and tampered data look
    /// the same to callers.
    #[error("decryption failed")]
    DecryptionFailed,
    /// The recovered key does not match the tenant's key commitment.
    #[error("the recovered key does not match the tenant's key commitment")]
    CommitmentMismatch,
    /// A tenant id outside `[a-z0-9-]{1,63}`.
    #[error("invalid tenant id: use 1-63 characters of a-z, 0-9 and '-', not starting with '-'")]
    InvalidTenant,
    /// Threshold outside 2 ≤ k ≤ n ≤ 255.
    #[error("invalid threshold {threshold}-of-{holders}: need 2 <= k <= n <= 255")]
    InvalidThreshold {
        /// k.
        threshold: usize,
        /// n.
        holders: usize,
    },
    /// Public key metadata is inconsistent.
    #[error("invalid key metadata: {0}")]
    InvalidMetadata(&'static str),
    /// Fewer shares than the threshold.
    #[error("not enough shares: have {have}, need {need}")]
    NotEnoughShares {
        /// Shares given.
        have: usize,
        /// Threshold.
        need: usize,
    },
    /// Two shares with the same x coordinate.
    #[error("duplicate share for x = {x}")]
    DuplicateShare {
        /// The repeated x.
        x: u8,
    },
    /// A share whose x is not registered for this tenant key.
    #[error("no holder is registered with x = {x}")]
    UnknownHolder {
        /// The unknown x.
        x: u8,
    },
    /// A share that does not match its holder's registered fingerprint.
    #[error("the share of holder '{holder}' does not match its registered fingerprint")]
    ShareMismatch {
        /// The holder whose share is wrong.
        holder: String,
    },
    /// A share in the wrong text or byte form.
    #[error("malformed share: {0}")]
    ShareEncoding(&'static str),
    /// An Ed25519 signature does not verify.
    #[error("signature does not verify")]
    InvalidSignature,
    /// The operating system RNG failed.
    #[error("the system random number generator failed")]
    Random,
    /// An internal invariant failed; never caused by input.
    #[error("internal crypto error: {0}")]
    Internal(&'static str),
}
