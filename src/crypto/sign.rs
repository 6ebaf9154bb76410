//! Ed25519 signatures (ring) for the trustee's audit checkpoints and deletion receipts.
//!
//! The private key is stored as its 32-byte seed; the public key is 32 bytes. Both travel as
//! lowercase hex in files and JSON.

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use zeroize::Zeroizing;

use super::Error;

/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of an Ed25519 seed (the stored private key).
pub const SEED_LEN: usize = 32;

/// An Ed25519 signing key.
pub struct SigningKey(Ed25519KeyPair);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &hex::encode(self.public_key()))
            .finish()
    }
}

impl SigningKey {
    /// Builds a key pair from its 32-byte seed.
    ///
    /// # Errors
    /// [`Error::Internal`] if ring rejects the seed.
    pub fn from_seed(seed: &[u8; SEED_LEN]) -> Result<Self, Error> {
        Ed25519KeyPair::from_seed_unchecked(seed)
            .map(Self)
            .map_err(|_| Error::Internal("ed25519 seed"))
    }

    /// Generates a fresh seed from the system RNG.
    ///
    /// # Errors
    /// [`Error::Random`].
    pub fn generate_seed() -> Result<Zeroizing<[u8; SEED_LEN]>, Error> {
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        super::envelope::fill_random(seed.as_mut_slice())?;
        Ok(seed)
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut out = [0u8; PUBLIC_KEY_LEN];
        out.copy_from_slice(self.0.public_key().as_ref());
        out
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(self.0.sign(message).as_ref());
        out
    }
}

/// Verifies an Ed25519 signature.
///
/// # Errors
/// [`Error::InvalidSignature`] for a wrong key, message or signature.
pub fn verify(
    public_key: &[u8; PUBLIC_KEY_LEN],
    message: &[u8],
    signature: &[u8],
) -> Result<(), Error> {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(message, signature)
        .map_err(|_| Error::InvalidSignature)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose
    use super::*;

    #[test]
    fn signature_verifies_and_rejects_other_message_or_key() {
        let key = SigningKey::from_seed(&[9; SEED_LEN]).unwrap();
        let sig = key.sign(b"checkpoint");
        verify(&key.public_key(), b"checkpoint", &sig).unwrap();
        assert!(verify(&key.public_key(), b"checkpoinT", &sig).is_err());
        let other = SigningKey::from_seed(&[8; SEED_LEN]).unwrap();
        assert!(verify(&other.public_key(), b"checkpoint", &sig).is_err());
        assert!(verify(&key.public_key(), b"checkpoint", &sig[..63]).is_err());
    }
}
