//! Sealing small secrets at rest (the trustee's stored shares) with AES-256-GCM.
//!
//! A sealed blob is `nonce (12) ‖ ciphertext ‖ tag (16)`. The nonce is random: a sealing key
//! seals at most a few million shares in its life, far below the 2^32 random-nonce bound. The
//! caller supplies associated data that binds the blob to its place (tenant, key version,
//! holder), so a blob copied to another row does not open.

use zeroize::Zeroizing;

use super::Error;
use super::aead::{AeadKey, NONCE_BYTES, TAG_LEN};
use super::envelope::fill_random;
use crate::secret::KEY_LEN;

/// Overhead of a sealed blob over its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_BYTES + TAG_LEN;

/// An AES-256-GCM key used only for sealing data at rest.
#[derive(Debug)]
pub struct SealingKey(AeadKey);

impl SealingKey {
    /// Builds a sealing key from 32 secret bytes.
    ///
    /// # Errors
    /// [`Error::Internal`] if ring rejects the key (it cannot for 32 bytes).
    pub fn new(key: &[u8; KEY_LEN]) -> Result<Self, Error> {
        AeadKey::new(key).map(Self)
    }

    /// Seals `plaintext` under a fresh random nonce.
    ///
    /// # Errors
    /// [`Error::Random`] if the system RNG fails.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; NONCE_BYTES];
        fill_random(&mut nonce)?;
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self.0.seal_in_place(nonce, aad, &mut out[NONCE_BYTES..])?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens a blob made by [`SealingKey::seal`] with the same `aad`.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`] for a wrong key, wrong aad, truncated or altered blob.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(Error::DecryptionFailed);
        }
        let (nonce, rest) = sealed.split_at(NONCE_BYTES);
        let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| Error::DecryptionFailed)?;
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| Error::DecryptionFailed)?;
        let mut plain = Zeroizing::new(body.to_vec());
        self.0.open_in_place(nonce, aad, &mut plain, &tag)?;
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose
    use super::*;

    #[test]
    fn sealed_blob_opens_only_with_same_key_and_aad() {
        let key = SealingKey::new(&[3; KEY_LEN]).unwrap();
        let blob = key.seal(b"tenant-a/1", b"secret share").unwrap();
        assert_eq!(blob.len(), 12 + SEAL_OVERHEAD);
        assert_eq!(
            key.open(b"tenant-a/1", &blob).unwrap().as_slice(),
            b"secret share"
        );
        assert!(key.open(b"tenant-b/1", &blob).is_err());
        let other = SealingKey::new(&[4; KEY_LEN]).unwrap();
        assert!(other.open(b"tenant-a/1", &blob).is_err());
        assert!(key.open(b"tenant-a/1", &blob[..10]).is_err());
        let mut flipped = blob.clone();
        flipped[13] ^= 1;
        assert!(key.open(b"tenant-a/1", &flipped).is_err());
    }
}
