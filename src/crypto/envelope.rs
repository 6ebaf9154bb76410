//! The key hierarchy below the tenant master key: KEK derivation, the key commitment, per-object
//! DEKs, DEK wrapping, and the per-object subkeys the object format uses.
//!
//! Pure: no I/O, no async. All domain-separation strings are fixed here and pinned by the
//! frozen test vectors in `tests/data/`; changing one is a format version bump.

use ring::{hkdf, hmac, rand::SecureRandom};
use zeroize::Zeroizing;

use super::Error;
use super::aead::{AeadKey, NONCE_BYTES, TAG_LEN};
use crate::secret::{Dek, KEY_LEN, Kek, Tmk};

/// Length of a wrapped DEK on the wire: nonce ‖ ciphertext ‖ tag.
pub const WRAPPED_DEK_LEN: usize = NONCE_BYTES + KEY_LEN + TAG_LEN;
/// Length of a key commitment (HMAC-SHA256 key check value).
pub const COMMITMENT_LEN: usize = 32;
/// Length of a header or footer MAC.
pub const MAC_LEN: usize = 32;

const KEK_INFO: &[u8] = b"treuhand kek";
const COMMITMENT_INFO: &[u8] = b"treuhand key commitment";
const SEGMENT_INFO: &[u8] = b"treuhand v1 segment key";
const MAC_INFO: &[u8] = b"treuhand v1 header mac key";
const WRAP_AAD_LABEL: &[u8] = b"treuhand v1 dek wrap";
const METADATA_INFO: &[u8] = b"treuhand v2 metadata key";
const PART_KEY_INFO: &[u8] = b"treuhand mp2 part key";
const PART_ETAG_INFO: &[u8] = b"treuhand mp2 part etag key";
/// Length of a multipart part attempt id (docs/format.md §7).
pub const PART_ATTEMPT_LEN: usize = 16;
/// Length of a part ETag digest (HMAC-SHA256 truncated).
pub const PART_ETAG_LEN: usize = 16;

/// Identifies one tenant key: the tenant id and its key version. Public metadata.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId {
    /// Tenant id (validated by [`validate_tenant_id`]).
    pub tenant: String,
    /// Key version, starting at 1 and incremented on rotation.
    pub version: u32,
}

impl KeyId {
    /// Builds a key id after validating the tenant id.
    ///
    /// # Errors
    /// [`Error::InvalidTenant`] if the tenant id is not acceptable.
    pub fn new(tenant: &str, version: u32) -> Result<Self, Error> {
        validate_tenant_id(tenant)?;
        Ok(Self {
            tenant: tenant.to_owned(),
            version,
        })
    }

    /// Unambiguous, length-prefixed encoding used in every derivation context.
    fn context(&self, label: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(label.len() + self.tenant.len() + 8);
        out.extend_from_slice(label);
        push_field(&mut out, self.tenant.as_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out
    }
}

/// Tenant ids are 1–63 bytes of `[a-z0-9-]`, starting with a letter or digit. They appear in
/// object headers, certificate names and file names, so they are kept boring on purpose.
///
/// # Errors
/// [`Error::InvalidTenant`] with the reason.
pub fn validate_tenant_id(tenant: &str) -> Result<(), Error> {
    let ok_chars = tenant
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if tenant.is_empty() || tenant.len() > 63 || !ok_chars || tenant.starts_with('-') {
        return Err(Error::InvalidTenant);
    }
    Ok(())
}

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    // Length prefixes make the concatenation injective: ("ab","c") never equals ("a","bc").
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field);
}

/// Where a DEK belongs: the AAD of its wrap binds all of these, so a wrapped DEK (and with it
/// the object) cannot be moved to another tenant, bucket, object key or key version.
#[derive(Debug, Clone, Copy)]
pub struct DekContext<'a> {
    /// The tenant key the DEK is wrapped under.
    pub key: &'a KeyId,
    /// Bucket name.
    pub bucket: &'a str,
    /// Object key.
    pub object: &'a str,
}

impl DekContext<'_> {
    fn aad(&self) -> Vec<u8> {
        let mut aad = self.key.context(WRAP_AAD_LABEL);
        push_field(&mut aad, self.bucket.as_bytes());
        push_field(&mut aad, self.object.as_bytes());
        aad
    }
}

/// The public key check value of a tenant master key, bound to tenant id and key version.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyCommitment(pub [u8; COMMITMENT_LEN]);

impl std::fmt::Debug for KeyCommitment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyCommitment({})", hex::encode(self.0))
    }
}

struct OkmLen(usize);

impl hkdf::KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf_expand(
    ikm: &[u8; KEY_LEN],
    salt: &[u8],
    info: &[u8],
) -> Result<Zeroizing<[u8; KEY_LEN]>, Error> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let info = [info];
    let okm = prk
        .expand(&info, OkmLen(KEY_LEN))
        .map_err(|_| Error::Internal("hkdf expand"))?;
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    okm.fill(out.as_mut())
        .map_err(|_| Error::Internal("hkdf fill"))?;
    Ok(out)
}

/// KEK = HKDF-SHA256(TMK, info = "treuhand kek" ‖ tenant ‖ version).
///
/// # Errors
/// Only [`Error::Internal`] (ring HKDF failure, which cannot happen for 32-byte output).
pub fn derive_kek(tmk: &Tmk, key: &KeyId) -> Result<Kek, Error> {
    let okm = hkdf_expand(tmk.expose_secret(), &[], &key.context(KEK_INFO))?;
    Ok(Kek::from_bytes(*okm))
}

fn commitment_key(tmk: &Tmk) -> Result<hmac::Key, Error> {
    // A separate HKDF branch, so the commitment reveals nothing about the KEK.
    let mac_key = hkdf_expand(tmk.expose_secret(), &[], COMMITMENT_INFO)?;
    Ok(hmac::Key::new(hmac::HMAC_SHA256, mac_key.as_ref()))
}

/// Computes the key commitment: HMAC-SHA256 under a TMK-derived key over tenant and version.
///
/// # Errors
/// Only [`Error::Internal`].
pub fn commit(tmk: &Tmk, key: &KeyId) -> Result<KeyCommitment, Error> {
    let tag = hmac::sign(&commitment_key(tmk)?, &key.context(COMMITMENT_INFO));
    let mut out = [0u8; COMMITMENT_LEN];
    out.copy_from_slice(tag.as_ref());
    Ok(KeyCommitment(out))
}

/// Checks a recovered TMK against the stored commitment in constant time.
///
/// # Errors
/// [`Error::CommitmentMismatch`] if the key is not the committed one.
pub fn verify_commitment(tmk: &Tmk, key: &KeyId, commitment: &KeyCommitment) -> Result<(), Error> {
    hmac::verify(
        &commitment_key(tmk)?,
        &key.context(COMMITMENT_INFO),
        &commitment.0,
    )
    .map_err(|_| Error::CommitmentMismatch)
}

/// Fills a fresh 32-byte secret from the system CSPRNG.
///
/// # Errors
/// [`Error::Random`] if the operating system RNG fails.
pub fn random_key() -> Result<Zeroizing<[u8; KEY_LEN]>, Error> {
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    fill_random(out.as_mut())?;
    Ok(out)
}

/// Fills `buf` from the system CSPRNG.
///
/// # Errors
/// [`Error::Random`] if the operating system RNG fails.
pub fn fill_random(buf: &mut [u8]) -> Result<(), Error> {
    ring::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| Error::Random)
}

/// A fresh random DEK.
///
/// # Errors
/// [`Error::Random`] if the operating system RNG fails.
pub fn generate_dek() -> Result<Dek, Error> {
    Ok(Dek::from_bytes(*random_key()?))
}

/// A fresh random tenant master key (used only by the customer's key ceremony).
///
/// # Errors
/// [`Error::Random`] if the operating system RNG fails.
pub fn generate_tmk() -> Result<Tmk, Error> {
    Ok(Tmk::from_bytes(*random_key()?))
}

/// Wraps a DEK under the KEK with AES-256-GCM and a random nonce; AAD binds [`DekContext`].
///
/// # Errors
/// [`Error::Random`] or [`Error::Internal`].
pub fn wrap_dek(
    kek: &Kek,
    dek: &Dek,
    context: &DekContext<'_>,
) -> Result<[u8; WRAPPED_DEK_LEN], Error> {
    let mut nonce = [0u8; NONCE_BYTES];
    fill_random(&mut nonce)?;
    wrap_dek_with_nonce(kek, dek, context, nonce)
}

/// Deterministic variant of [`wrap_dek`] for frozen test vectors. Never reuse a nonce with the
/// same KEK in production; [`wrap_dek`] draws it at random.
///
/// # Errors
/// [`Error::Internal`].
pub fn wrap_dek_with_nonce(
    kek: &Kek,
    dek: &Dek,
    context: &DekContext<'_>,
    nonce: [u8; NONCE_BYTES],
) -> Result<[u8; WRAPPED_DEK_LEN], Error> {
    let key = AeadKey::new(kek.expose_secret())?;
    let mut out = [0u8; WRAPPED_DEK_LEN];
    out[..NONCE_BYTES].copy_from_slice(&nonce);
    let body = &mut out[NONCE_BYTES..NONCE_BYTES + KEY_LEN];
    body.copy_from_slice(dek.expose_secret());
    let tag = key.seal_in_place(nonce, &context.aad(), body)?;
    out[NONCE_BYTES + KEY_LEN..].copy_from_slice(&tag);
    Ok(out)
}

/// Unwraps a DEK. Any mismatch of key, tenant, bucket, object or version fails.
///
/// # Errors
/// [`Error::DecryptionFailed`].
pub fn unwrap_dek(
    kek: &Kek,
    wrapped: &[u8; WRAPPED_DEK_LEN],
    context: &DekContext<'_>,
) -> Result<Dek, Error> {
    let key = AeadKey::new(kek.expose_secret())?;
    let mut nonce = [0u8; NONCE_BYTES];
    nonce.copy_from_slice(&wrapped[..NONCE_BYTES]);
    let mut body = Zeroizing::new([0u8; KEY_LEN]);
    body.copy_from_slice(&wrapped[NONCE_BYTES..NONCE_BYTES + KEY_LEN]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&wrapped[NONCE_BYTES + KEY_LEN..]);
    key.open_in_place(nonce, &context.aad(), body.as_mut(), &tag)?;
    Ok(Dek::from_bytes(*body))
}

/// K_meta = HKDF-SHA256(IKM = DEK, info = "treuhand v2 metadata key"): the AES-256-GCM key of
/// a format v2 object's sealed metadata block. Not part of [`ObjectKeys`], because only v2
/// headers need it and the v1 fast path should not pay for a third derivation; the raw key
/// bytes are zeroized when this returns (ring keeps only its key schedule).
///
/// # Errors
/// Only [`Error::Internal`].
pub fn derive_metadata_key(dek: &Dek) -> Result<AeadKey, Error> {
    let key = hkdf_expand(dek.expose_secret(), &[], METADATA_INFO)?;
    AeadKey::new(&key)
}

/// The per-object keys derived from a DEK: the segment AEAD key and the header/footer MAC key.
pub struct ObjectKeys {
    segment: AeadKey,
    mac: hmac::Key,
}

redacted_debug!(ObjectKeys);

impl ObjectKeys {
    /// Derives both subkeys from the DEK (HKDF-SHA256, distinct info strings).
    ///
    /// # Errors
    /// Only [`Error::Internal`].
    pub fn derive(dek: &Dek) -> Result<Self, Error> {
        let segment = hkdf_expand(dek.expose_secret(), &[], SEGMENT_INFO)?;
        let mac = hkdf_expand(dek.expose_secret(), &[], MAC_INFO)?;
        Ok(Self {
            segment: AeadKey::new(&segment)?,
            mac: hmac::Key::new(hmac::HMAC_SHA256, mac.as_ref()),
        })
    }

    /// The AEAD key for body segments.
    pub fn segment(&self) -> &AeadKey {
        &self.segment
    }

    /// MAC over authenticated metadata (object header, multipart footer).
    pub fn mac(&self, data: &[u8]) -> [u8; MAC_LEN] {
        let tag = hmac::sign(&self.mac, data);
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Verifies a MAC in constant time.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`] on mismatch.
    pub fn verify_mac(&self, data: &[u8], mac: &[u8]) -> Result<(), Error> {
        hmac::verify(&self.mac, data, mac).map_err(|_| Error::DecryptionFailed)
    }
}

/// The keys of a multipart upload in layout 2 (docs/format.md §7), derived from the DEK:
/// every part *attempt* gets its own segment key, and part ETags are keyed digests.
pub struct PartKeys {
    /// HKDF-SHA256 pseudo-random key extracted from the DEK (salt = ""); expanding it with an
    /// info string is exactly HKDF-SHA256(IKM = DEK, info).
    prk: hkdf::Prk,
    etag: hmac::Key,
}

redacted_debug!(PartKeys);

impl PartKeys {
    /// Derives the part key root and the ETag key from the DEK.
    ///
    /// # Errors
    /// Only [`Error::Internal`].
    pub fn derive(dek: &Dek) -> Result<Self, Error> {
        let etag = hkdf_expand(dek.expose_secret(), &[], PART_ETAG_INFO)?;
        Ok(Self {
            prk: hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(dek.expose_secret()),
            etag: hmac::Key::new(hmac::HMAC_SHA256, etag.as_ref()),
        })
    }

    /// K_part = HKDF-SHA256(IKM = DEK, info = "treuhand mp2 part key" ‖ part (u32) ‖ attempt):
    /// the AES-256-GCM key of one upload attempt of one part.
    ///
    /// # Security
    /// Every attempt draws a fresh random 128-bit `attempt`, so two attempts (of the same part
    /// number or not) never share a key except with probability about q²/2^129 for q attempts
    /// under one DEK; within one key, the run's nonces are distinct by construction (segment
    /// index and final flag). A re-uploaded part therefore never reuses a (key, nonce) pair.
    ///
    /// # Errors
    /// Only [`Error::Internal`].
    pub fn attempt_key(
        &self,
        part: u32,
        attempt: &[u8; PART_ATTEMPT_LEN],
    ) -> Result<AeadKey, Error> {
        let part = part.to_be_bytes();
        let info = [PART_KEY_INFO, &part[..], &attempt[..]];
        let okm = self
            .prk
            .expand(&info, OkmLen(KEY_LEN))
            .map_err(|_| Error::Internal("hkdf expand"))?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        okm.fill(key.as_mut())
            .map_err(|_| Error::Internal("hkdf fill"))?;
        AeadKey::new(&key)
    }

    /// An incremental part ETag digest: HMAC-SHA256(K_etag, plaintext) truncated to 16 bytes,
    /// with K_etag = HKDF-SHA256(IKM = DEK, info = "treuhand mp2 part etag key").
    pub fn etag_digest(&self) -> PartEtagDigest {
        PartEtagDigest(hmac::Context::with_key(&self.etag))
    }
}

/// A part's keyed plaintext digest in progress (see [`PartKeys::etag_digest`]). Identical bytes
/// under one upload give the same digest; without the DEK nobody can compute or confirm one.
pub struct PartEtagDigest(hmac::Context);

impl std::fmt::Debug for PartEtagDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartEtagDigest")
    }
}

impl PartEtagDigest {
    /// Adds plaintext.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The first [`PART_ETAG_LEN`] bytes of the MAC.
    pub fn finish(self) -> [u8; PART_ETAG_LEN] {
        let tag = self.0.sign();
        let mut out = [0u8; PART_ETAG_LEN];
        out.copy_from_slice(&tag.as_ref()[..PART_ETAG_LEN]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_id(tenant: &str, version: u32) -> KeyId {
        KeyId::new(tenant, version).unwrap()
    }

    #[test]
    fn commitment_verifies_only_for_same_key_tenant_and_version() {
        let tmk = Tmk::from_bytes([3; KEY_LEN]);
        let c = commit(&tmk, &key_id("acme", 1)).unwrap();
        verify_commitment(&tmk, &key_id("acme", 1), &c).unwrap();
        assert!(verify_commitment(&tmk, &key_id("acme", 2), &c).is_err());
        assert!(verify_commitment(&tmk, &key_id("acmf", 1), &c).is_err());
        assert!(verify_commitment(&Tmk::from_bytes([4; KEY_LEN]), &key_id("acme", 1), &c).is_err());
    }

    #[test]
    fn kek_differs_per_tenant_and_version() {
        let tmk = Tmk::from_bytes([3; KEY_LEN]);
        let a = derive_kek(&tmk, &key_id("acme", 1)).unwrap();
        assert_ne!(a, derive_kek(&tmk, &key_id("acme", 2)).unwrap());
        assert_ne!(a, derive_kek(&tmk, &key_id("acmf", 1)).unwrap());
        assert_eq!(a, derive_kek(&tmk, &key_id("acme", 1)).unwrap());
    }

    #[test]
    fn wrapped_dek_cannot_move_to_another_object_bucket_tenant_or_version() {
        let kek = Kek::from_bytes([9; KEY_LEN]);
        let dek = generate_dek().unwrap();
        let id = key_id("acme", 1);
        let ctx = DekContext {
            key: &id,
            bucket: "b",
            object: "o",
        };
        let wrapped = wrap_dek(&kek, &dek, &ctx).unwrap();
        assert_eq!(unwrap_dek(&kek, &wrapped, &ctx).unwrap(), dek);
        let other_id = key_id("other", 1);
        let v2 = key_id("acme", 2);
        for bad in [
            DekContext {
                key: &id,
                bucket: "b",
                object: "o2",
            },
            DekContext {
                key: &id,
                bucket: "b2",
                object: "o",
            },
            DekContext {
                key: &other_id,
                bucket: "b",
                object: "o",
            },
            DekContext {
                key: &v2,
                bucket: "b",
                object: "o",
            },
            // Length prefixes: moving a byte between bucket and key must not collide.
            DekContext {
                key: &id,
                bucket: "bo",
                object: "",
            },
        ] {
            assert!(matches!(
                unwrap_dek(&kek, &wrapped, &bad),
                Err(Error::DecryptionFailed)
            ));
        }
        assert!(unwrap_dek(&Kek::from_bytes([8; KEY_LEN]), &wrapped, &ctx).is_err());
    }

    #[test]
    fn tenant_ids_are_validated() {
        for good in ["a", "acme-1", "0x", &"a".repeat(63)] {
            validate_tenant_id(good).unwrap();
        }
        for bad in ["", "-a", "A", "a_b", "a/b", "ä", &"a".repeat(64)] {
            assert!(validate_tenant_id(bad).is_err(), "{bad}");
        }
    }
}
