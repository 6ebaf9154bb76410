//! The per-run key material both sides of the format share: the segment nonce derivation, the
//! run nonce prefix, and [`PartAttempt`], the id that selects a layout 2 part's key.
//!
//! The bottom layer of `format` after `metadata`: `header` builds the per-object
//! [`ObjectCipher`](super::ObjectCipher) from these, `layout` maps runs, and `stream` seals and
//! opens segments with the nonces made here. Nothing here imports another format file, so the
//! three can layer on top without importing each other in a circle.

use crate::crypto::aead::NONCE_BYTES;
use crate::crypto::envelope::{self, PART_ATTEMPT_LEN};

use super::Error;

/// Length of the random nonce prefix.
pub const NONCE_PREFIX_LEN: usize = 7;

/// The nonce of segment `index` of a run: run prefix (7 bytes) ‖ index (u32, big endian) ‖ last
/// flag (1 byte: 0x01 for the final segment of the run, else 0x00). The last flag is what makes
/// truncation at a segment boundary detectable; the counter catches reordering, dropping and
/// duplication.
pub(crate) fn segment_nonce(
    prefix: &[u8; NONCE_PREFIX_LEN],
    index: u32,
    last: bool,
) -> [u8; NONCE_BYTES] {
    let mut nonce = [0u8; NONCE_BYTES];
    nonce[..NONCE_PREFIX_LEN].copy_from_slice(prefix);
    nonce[NONCE_PREFIX_LEN..NONCE_PREFIX_LEN + 4].copy_from_slice(&index.to_be_bytes());
    nonce[NONCE_BYTES - 1] = u8::from(last);
    nonce
}

/// The 7-byte nonce prefix of run `run`: the header's prefix XOR the run number in its last
/// four bytes, so no two runs of an object share a nonce.
pub(crate) fn run_prefix(
    header_prefix: &[u8; NONCE_PREFIX_LEN],
    run: u32,
) -> [u8; NONCE_PREFIX_LEN] {
    let mut prefix = *header_prefix;
    for (p, r) in prefix[3..].iter_mut().zip(run.to_be_bytes()) {
        *p ^= r;
    }
    prefix
}

/// The random id of one upload attempt of a multipart part (layout 2): it selects the attempt's
/// segment key (docs/format.md §7). Not secret; stored in the staged part's name and in the
/// completed object's footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartAttempt(pub [u8; PART_ATTEMPT_LEN]);

impl PartAttempt {
    /// A fresh random attempt id.
    ///
    /// # Errors
    /// [`Error::Crypto`] if the RNG fails.
    pub fn random() -> Result<Self, Error> {
        let mut id = [0u8; PART_ATTEMPT_LEN];
        envelope::fill_random(&mut id)?;
        Ok(Self(id))
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses [`to_hex`](Self::to_hex) output; `None` for anything else.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut id = [0u8; PART_ATTEMPT_LEN];
        hex::decode_to_slice(text, &mut id).ok()?;
        Some(Self(id))
    }
}
