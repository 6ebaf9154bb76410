//! The only file that names `ring::aead`: AES-256-GCM with explicit 96-bit nonces.
//!
//! ring has no streaming construction, so the object format (`crate::format`) frames segments
//! itself and builds nonces; this module only seals and opens buffers in place.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, Tag, UnboundKey};

use super::Error;
use crate::secret::KEY_LEN;

/// Length of an AES-256-GCM authentication tag.
pub const TAG_LEN: usize = 16;
/// Length of an AES-GCM nonce.
pub const NONCE_BYTES: usize = NONCE_LEN;

/// An AES-256-GCM key ready for use. Built from a secret key; ring keeps the expanded key
/// schedule internally (ring does not zeroize it, see docs/decisions.md).
pub struct AeadKey(LessSafeKey);

redacted_debug!(AeadKey);

impl AeadKey {
    /// Builds an AES-256-GCM key from 32 secret bytes.
    ///
    /// # Errors
    /// [`Error::Internal`] if ring rejects the key (it cannot for 32 bytes).
    pub fn new(key: &[u8; KEY_LEN]) -> Result<Self, Error> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, key).map_err(|_| Error::Internal("aead key"))?;
        Ok(Self(LessSafeKey::new(unbound)))
    }

    /// Encrypts `in_out` in place and returns the tag.
    ///
    /// # Errors
    /// [`Error::Internal`] if the buffer exceeds AES-GCM's per-nonce limit.
    pub fn seal_in_place(
        &self,
        nonce: [u8; NONCE_BYTES],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Error> {
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)
            .map_err(|_| Error::Internal("aead seal"))?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts `in_out` in place after checking `tag`.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`] if the tag does not verify; `in_out` then holds no
    /// plaintext that may be used (ring leaves it unspecified, callers discard it).
    pub fn open_in_place(
        &self,
        nonce: [u8; NONCE_BYTES],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Error> {
        self.0
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                Tag::from(*tag),
                in_out,
                0..,
            )
            .map(|_| ())
            .map_err(|_| Error::DecryptionFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_rejects_flipped_tag_bit() {
        let key = AeadKey::new(&[7; KEY_LEN]).unwrap();
        let mut buf = b"hello".to_vec();
        let mut tag = key
            .seal_in_place([1; NONCE_BYTES], b"aad", &mut buf)
            .unwrap();
        tag[0] ^= 1;
        assert!(matches!(
            key.open_in_place([1; NONCE_BYTES], b"aad", &mut buf, &tag),
            Err(Error::DecryptionFailed)
        ));
    }

    #[test]
    fn open_rejects_wrong_aad_and_nonce() {
        let key = AeadKey::new(&[7; KEY_LEN]).unwrap();
        let mut buf = b"hello".to_vec();
        let tag = key
            .seal_in_place([1; NONCE_BYTES], b"aad", &mut buf)
            .unwrap();
        let mut copy = buf.clone();
        assert!(
            key.open_in_place([1; NONCE_BYTES], b"aaX", &mut copy, &tag)
                .is_err()
        );
        let mut copy = buf.clone();
        assert!(
            key.open_in_place([2; NONCE_BYTES], b"aad", &mut copy, &tag)
                .is_err()
        );
        key.open_in_place([1; NONCE_BYTES], b"aad", &mut buf, &tag)
            .unwrap();
        assert_eq!(buf, b"hello");
    }
}
