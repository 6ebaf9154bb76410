//! The object header (format v1, v2 and v3) and [`ObjectCipher`], the per-object key state
//! from which encryptors, decryptors and footers are made. The header's bytes (layout, parsing,
//! the MAC input, what can be read without a key) are in [`fields`]; this file holds the keys:
//! it wraps and unwraps the DEK, seals and opens the metadata block and checks the MAC. The
//! makers of encryptors and layouts live with what they make (`layout`, `stream`), on top of
//! this module, so this module imports neither.

pub mod fields;
mod rewrap;

use crate::crypto::aead::{NONCE_BYTES, TAG_LEN};
use crate::crypto::envelope::{self, PartEtagDigest, PartKeys};
use crate::crypto::oprf::ObjectId;
use crate::crypto::{DekContext, ObjectKeys};
use crate::secret::{Dek, Kek};

use super::cipher::{self, PartAttempt};
// Re-exported where it was public before `cipher.rs` existed.
pub use super::cipher::NONCE_PREFIX_LEN;
use super::metadata::Metadata;
use super::{DEFAULT_SEGMENT_SIZE, Error, fail};
pub use fields::{
    HEADER_PROBE_LEN, HEADER_V1_BASE_LEN, Header, HeaderInfo, Layout, MAX_HEADER_LEN,
    OBJECT_ID_LEN, header_len_hint, layout_hint, peek_header,
};
pub use rewrap::Rewrapped;

/// The AAD of the sealed metadata block, in v2 and v3 alike: a later rewrap of a v2 object to
/// v3 keeps the DEK and so K_meta, and must be able to keep the block byte for byte. A second
/// AAD under the same key and the fixed nonce would be a GCM nonce reuse.
const METADATA_AAD: &[u8] = b"treuhand v2 metadata";
/// K_meta seals exactly one block per DEK: every new object, copy and multipart upload draws a
/// fresh DEK, and a rotation that re-wraps a DEK must keep the block byte for byte (K_meta
/// depends on the DEK only). So this fixed nonce never repeats under a key.
const METADATA_NONCE: [u8; NONCE_BYTES] = [0; NONCE_BYTES];

/// The per-object key state: the header and the DEK-derived keys. Made by [`new_object`] for
/// writing or [`open_object`] for reading; all encryptors, decryptors and footers of one object
/// come from it.
#[derive(Debug)]
pub struct ObjectCipher {
    header: Header,
    keys: ObjectKeys,
    /// Layout 2 only: the per-attempt part keys and the part ETag key.
    part_keys: Option<PartKeys>,
    /// The authenticated, decrypted metadata (empty for v1).
    metadata: Metadata,
    /// The DEK itself, kept for [`ObjectCipher::rewrap`] (docs/format.md §9): a rotation wraps
    /// the same DEK under another key. No more exposure than `keys`, which it derives.
    dek: Dek,
}

/// Starts a new object: draws a DEK and nonce prefix, wraps the DEK under the KEK bound to
/// `context`, and returns the cipher state and the encoded header bytes to store first.
///
/// # Errors
/// [`Error::Crypto`] if the RNG fails.
pub fn new_object(
    kek: &Kek,
    context: &DekContext<'_>,
    layout: Layout,
) -> Result<(ObjectCipher, Vec<u8>), Error> {
    new_object_with_metadata(kek, context, layout, &Metadata::new())
}

/// [`new_object`] for an object with metadata: writes a v2 header with the metadata sealed in
/// it, or a v1 header if `metadata` is empty.
///
/// # Errors
/// [`Error::MetadataTooLarge`]; [`Error::Crypto`] if the RNG fails.
pub fn new_object_with_metadata(
    kek: &Kek,
    context: &DekContext<'_>,
    layout: Layout,
    metadata: &Metadata,
) -> Result<(ObjectCipher, Vec<u8>), Error> {
    metadata.check_size()?;
    let dek = envelope::generate_dek()?;
    let mut wrap_nonce = [0u8; 12];
    envelope::fill_random(&mut wrap_nonce)?;
    let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
    envelope::fill_random(&mut nonce_prefix)?;
    new_object_deterministic_with_metadata(
        kek,
        context,
        layout,
        (dek, wrap_nonce, nonce_prefix),
        metadata,
    )
}

/// [`new_object`] with caller-chosen randomness. Only for frozen test vectors and benchmarks:
/// reusing a DEK or nonce prefix destroys confidentiality.
///
/// # Errors
/// [`Error::Crypto`].
#[doc(hidden)]
pub fn new_object_deterministic(
    kek: &Kek,
    context: &DekContext<'_>,
    layout: Layout,
    dek: Dek,
    wrap_nonce: [u8; 12],
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
) -> Result<(ObjectCipher, Vec<u8>), Error> {
    new_object_deterministic_with_metadata(
        kek,
        context,
        layout,
        (dek, wrap_nonce, nonce_prefix),
        &Metadata::new(),
    )
}

/// Starts a new format v3 object (docs/format.md §8): draws a DEK and nonce prefix, wraps the
/// DEK under `kek`, the per-object KEK of the identity (tenant, key version, bucket, key,
/// `object_id`) that the caller derived through the tenant's OPRF (`crypto::oprf::object_kek`),
/// seals `metadata` (empty or not: v3 always has the block) and returns the cipher state and
/// the encoded header to store first. The wrap's AAD is `context`, as in v2.
///
/// # Errors
/// [`Error::Misuse`] for [`Layout::Multipart`] (layout 1 is read only; new multipart uploads
/// use layout 2); [`Error::MetadataTooLarge`]; [`Error::Crypto`] if the RNG fails.
pub fn new_object_v3(
    kek: &Kek,
    context: &DekContext<'_>,
    object_id: ObjectId,
    layout: Layout,
    metadata: &Metadata,
) -> Result<(ObjectCipher, Vec<u8>), Error> {
    if layout == Layout::Multipart {
        return Err(Error::Misuse(
            "format v3 objects are written in layout 0 or 2; layout 1 is read only",
        ));
    }
    metadata.check_size()?;
    let dek = envelope::generate_dek()?;
    let mut wrap_nonce = [0u8; 12];
    envelope::fill_random(&mut wrap_nonce)?;
    let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
    envelope::fill_random(&mut nonce_prefix)?;
    build(
        kek,
        context,
        Some(object_id),
        layout,
        (dek, wrap_nonce, nonce_prefix),
        metadata,
    )
}

/// [`new_object_v3`] with caller-chosen randomness (DEK, wrap nonce, nonce prefix). Only for
/// frozen test vectors: reusing a DEK or nonce prefix destroys confidentiality. Unlike
/// [`new_object_v3`] it also writes layout 1, which stands in for a v1 layout 1 object that a
/// key rotation moved to v3 (so that readers of such objects are tested).
///
/// # Errors
/// [`Error::MetadataTooLarge`], [`Error::Crypto`].
#[doc(hidden)]
pub fn new_object_v3_deterministic(
    kek: &Kek,
    context: &DekContext<'_>,
    object_id: ObjectId,
    layout: Layout,
    randomness: (Dek, [u8; 12], [u8; NONCE_PREFIX_LEN]),
    metadata: &Metadata,
) -> Result<(ObjectCipher, Vec<u8>), Error> {
    build(kek, context, Some(object_id), layout, randomness, metadata)
}

/// [`new_object_with_metadata`] with caller-chosen randomness (DEK, wrap nonce, nonce prefix).
/// Only for frozen test vectors: reusing a DEK or nonce prefix destroys confidentiality.
///
/// # Errors
/// [`Error::MetadataTooLarge`], [`Error::Crypto`].
#[doc(hidden)]
pub fn new_object_deterministic_with_metadata(
    kek: &Kek,
    context: &DekContext<'_>,
    layout: Layout,
    randomness: (Dek, [u8; 12], [u8; NONCE_PREFIX_LEN]),
    metadata: &Metadata,
) -> Result<(ObjectCipher, Vec<u8>), Error> {
    build(kek, context, None, layout, randomness, metadata)
}

/// Writes a header: v3 with an object id, else v2 with metadata, else v1.
fn build(
    kek: &Kek,
    context: &DekContext<'_>,
    object_id: Option<ObjectId>,
    layout: Layout,
    (dek, wrap_nonce, nonce_prefix): (Dek, [u8; 12], [u8; NONCE_PREFIX_LEN]),
    metadata: &Metadata,
) -> Result<(ObjectCipher, Vec<u8>), Error> {
    let wrapped_dek = envelope::wrap_dek_with_nonce(kek, &dek, context, wrap_nonce)?;
    let keys = ObjectKeys::derive(&dek)?;
    let part_keys = part_keys_for(layout, &dek)?;
    // v1/v2 objects without metadata stay v1, byte for byte as before; v3 always seals a block.
    let sealed_metadata = if metadata.is_empty() && object_id.is_none() {
        None
    } else {
        let mut sealed = metadata.encode()?;
        let tag = envelope::derive_metadata_key(&dek)?.seal_in_place(
            METADATA_NONCE,
            METADATA_AAD,
            &mut sealed,
        )?;
        sealed.extend_from_slice(&tag);
        Some(sealed)
    };
    let header = Header {
        key: context.key.clone(),
        object_id,
        segment_size: DEFAULT_SEGMENT_SIZE,
        layout,
        wrapped_dek,
        nonce_prefix,
        sealed_metadata,
    };
    let bytes = encode(&header, &keys);
    let cipher = ObjectCipher {
        header,
        keys,
        part_keys,
        metadata: metadata.clone(),
        dek,
    };
    Ok((cipher, bytes))
}

/// The header's bytes: every field, then the MAC under K_mac.
fn encode(header: &Header, keys: &ObjectKeys) -> Vec<u8> {
    let mut bytes = header.mac_input();
    let mac = keys.mac(&header.labelled_mac_input());
    bytes.extend_from_slice(&mac);
    bytes
}

/// Opens an existing object from its first bytes: parses the header, checks that it names the
/// expected tenant key, unwraps the DEK (bound to tenant, bucket, object key and version) and
/// verifies the header MAC. Returns the cipher state and the header length.
///
/// Opens format v1, v2 and v3 alike. For v3, `kek` is the per-object KEK of the object id in
/// the header (read it first with [`peek_header`]); the MAC covers the id, so an altered id
/// fails here even with the KEK of the original one. Which KEK kind a tenant key version has
/// (the legacy TMK-derived KEK or per-object KEKs) is the caller's to know from the key's
/// scheme: it must not follow the header's version byte, which is unauthenticated until here.
///
/// # Errors
/// [`Error::DecryptionFailed`] for any mismatch or tampering.
pub fn open_object(
    kek: &Kek,
    context: &DekContext<'_>,
    prefix: &[u8],
) -> Result<(ObjectCipher, usize), Error> {
    let (header, mac, len) = Header::parse(prefix)?;
    if &header.key != context.key {
        return Err(fail("header names another tenant key"));
    }
    let dek =
        envelope::unwrap_dek(kek, &header.wrapped_dek, context).map_err(|_| fail("dek unwrap"))?;
    let keys = ObjectKeys::derive(&dek)?;
    let part_keys = part_keys_for(header.layout, &dek)?;
    // The MAC covers the object id, M and the sealed block too, so it is checked before
    // anything is opened.
    keys.verify_mac(&header.labelled_mac_input(), &mac)
        .map_err(|_| fail("header mac"))?;
    let metadata = match &header.sealed_metadata {
        None => Metadata::new(),
        Some(sealed) => {
            let metadata = open_metadata(&dek, sealed)?;
            // v2 writers use v1 for objects without metadata, so an empty v2 set is not
            // canonical; v3 always has the block, and it may be empty.
            if metadata.is_empty() && header.object_id.is_none() {
                return Err(fail("v2 header without metadata"));
            }
            metadata
        }
    };
    Ok((
        ObjectCipher {
            header,
            keys,
            part_keys,
            metadata,
            dek,
        },
        len,
    ))
}

/// Layout 2 derives the part keys; the other layouts skip the work.
fn part_keys_for(layout: Layout, dek: &Dek) -> Result<Option<PartKeys>, Error> {
    Ok(match layout {
        Layout::MultipartKeyed => Some(PartKeys::derive(dek)?),
        Layout::Single | Layout::Multipart => None,
    })
}

/// Opens and decodes a v2 or v3 sealed metadata block.
fn open_metadata(dek: &Dek, sealed: &[u8]) -> Result<Metadata, Error> {
    let split = sealed
        .len()
        .checked_sub(TAG_LEN)
        .ok_or_else(|| fail("metadata block too short"))?;
    let (ciphertext, tag) = sealed.split_at(split);
    let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| fail("metadata tag"))?;
    let mut plaintext = ciphertext.to_vec();
    envelope::derive_metadata_key(dek)?
        .open_in_place(METADATA_NONCE, METADATA_AAD, &mut plaintext, &tag)
        .map_err(|_| fail("metadata tag"))?;
    Metadata::decode(&plaintext)
}

impl ObjectCipher {
    /// The authenticated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The format version of the object: 1, 2 or 3.
    pub fn format_version(&self) -> u8 {
        self.header.format_version()
    }

    /// The object id of a format v3 object (`None` for v1 and v2), authenticated.
    pub fn object_id(&self) -> Option<ObjectId> {
        self.header.object_id
    }

    /// The object's authenticated metadata (empty for a v1 object).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Encoded header length.
    pub fn header_len(&self) -> usize {
        self.header.encoded_len()
    }

    /// A keyed digest of a part's plaintext for its ETag (layout 2 only; `None` otherwise):
    /// HMAC-SHA256 under a key derived from the DEK, truncated to 16 bytes. Identical bytes
    /// give identical digests within one upload; the storage operator, without the DEK, can
    /// neither compute one nor confirm a guess.
    pub fn part_etag_digest(&self) -> Option<PartEtagDigest> {
        self.part_keys.as_ref().map(PartKeys::etag_digest)
    }

    /// The key of segment run `run` (attempt `attempt` in layout 2).
    pub(crate) fn run_key(
        &self,
        run: u32,
        attempt: Option<&PartAttempt>,
    ) -> Result<Option<crate::crypto::aead::AeadKey>, Error> {
        match (attempt, &self.part_keys) {
            (None, None) => Ok(None),
            (Some(attempt), Some(keys)) => Ok(Some(keys.attempt_key(run, &attempt.0)?)),
            _ => Err(fail("run key does not match the layout")),
        }
    }

    /// The nonce prefix of run `run` (`cipher::run_prefix`).
    pub(crate) fn run_prefix(&self, run: u32) -> [u8; NONCE_PREFIX_LEN] {
        cipher::run_prefix(&self.header.nonce_prefix, run)
    }

    /// The DEK-derived segment key and header/footer MAC key.
    pub(crate) fn keys(&self) -> &ObjectKeys {
        &self.keys
    }
}
