//! The object header (format v1 and v2): byte layout, parsing, the header MAC, and
//! [`ObjectCipher`], the per-object key state from which encryptors, decryptors and footers are
//! made. Those makers live with what they make (`layout` for layouts and footers, `stream` for
//! encryptors), on top of this file, so this file imports neither.
//!
//! ```text
//! off      len  field
//! 0        4    magic "TRHD"
//! 4        1    format version: 1, or 2 when the object has metadata
//! 5        1    AEAD id = 1 (AES-256-GCM)
//! 6        1    log2(segment size), 12..=24 (16 = 64 KiB)
//! 7        1    layout: 0 = single run, 1 = multipart (runs + footer), 2 = multipart with
//!               per-attempt part keys (runs + footer naming each part's attempt)
//! 8        4    key version, big endian
//! 12       1    tenant length T, 1..=63
//! 13       T    tenant id
//! 13+T     60   wrapped DEK: nonce(12) ‖ AES-256-GCM(KEK, DEK)(32) ‖ tag(16)
//! 73+T     7    nonce prefix (random)
//! v1:
//! 80+T     32   HMAC-SHA256(K_mac, "treuhand v1 header" ‖ bytes 0 .. 80+T)
//! v2:
//! 80+T     4    M, length of the sealed metadata block, 16..=16+MAX_METADATA
//! 84+T     M    AES-256-GCM(K_meta, nonce 0, "treuhand v2 metadata", encoding) ‖ tag
//! 84+T+M   32   HMAC-SHA256(K_mac, "treuhand v2 header" ‖ bytes 0 .. 84+T+M)
//! ```

use crate::crypto::aead::{NONCE_BYTES, TAG_LEN};
use crate::crypto::envelope::{self, MAC_LEN, PartEtagDigest, PartKeys, WRAPPED_DEK_LEN};
use crate::crypto::{DekContext, KeyId, ObjectKeys};
use crate::secret::{Dek, Kek};

use super::cipher::{self, PartAttempt};
// Re-exported where it was public before `cipher.rs` existed.
pub use super::cipher::NONCE_PREFIX_LEN;
use super::metadata::{MAX_METADATA, Metadata};
use super::{DEFAULT_SEGMENT_SIZE, Error, fail};

const MAGIC: &[u8; 4] = b"TRHD";
const VERSION_1: u8 = 1;
const VERSION_2: u8 = 2;
const AEAD_AES_256_GCM: u8 = 1;
const FIXED_LEN: usize = 4 + 1 + 1 + 1 + 1 + 4 + 1 + WRAPPED_DEK_LEN + NONCE_PREFIX_LEN + MAC_LEN;
/// Offset of the v2 metadata length field M, less the tenant length.
const META_LEN_AT: usize = 13 + WRAPPED_DEK_LEN + NONCE_PREFIX_LEN;
const META_LEN_FIELD: usize = 4;
const MIN_SEALED_LEN: usize = TAG_LEN;
const MAX_SEALED_LEN: usize = TAG_LEN + MAX_METADATA;
/// Longest possible v1 header (63-byte tenant id). A prefix of this many bytes (or the whole
/// object, if shorter) always holds the fields [`header_len_hint`] needs.
pub const HEADER_PROBE_LEN: usize = FIXED_LEN + 63;
/// Longest possible header of any version (v2, 63-byte tenant id, largest metadata block).
/// Read this many bytes, or the whole object if it is shorter, before calling [`open_object`].
pub const MAX_HEADER_LEN: usize = FIXED_LEN + 63 + META_LEN_FIELD + MAX_SEALED_LEN;
// Distinct labels: a v1 MAC can never verify as a v2 MAC or the other way round.
const HEADER_MAC_V1: &[u8] = b"treuhand v1 header";
const HEADER_MAC_V2: &[u8] = b"treuhand v2 header";
const METADATA_AAD: &[u8] = b"treuhand v2 metadata";
/// K_meta seals exactly one block per DEK: every new object, copy and multipart upload draws a
/// fresh DEK, and a rotation that re-wraps a DEK must keep the block byte for byte (K_meta
/// depends on the DEK only). So this fixed nonce never repeats under a key.
const METADATA_NONCE: [u8; NONCE_BYTES] = [0; NONCE_BYTES];

/// How the body is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One run (run number 0) filling the rest of the object.
    Single,
    /// Layout 1 (read only; writers use [`Layout::MultipartKeyed`]): runs numbered by S3 part
    /// number, all under the object's segment key, followed by an authenticated footer listing
    /// them. A part uploaded twice reused its nonces, so nothing writes this any more.
    Multipart,
    /// Layout 2 (docs/format.md §7): as [`Layout::Multipart`], but every upload attempt of a
    /// part is encrypted under its own key, selected by a random attempt id that the footer
    /// records per part.
    MultipartKeyed,
}

impl Layout {
    /// True for both multipart layouts.
    pub fn is_multipart(self) -> bool {
        matches!(self, Layout::Multipart | Layout::MultipartKeyed)
    }
}

/// A parsed (not yet authenticated) header. Authentication needs the DEK, see [`open_object`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The tenant key the DEK is wrapped under.
    pub key: KeyId,
    /// Plaintext bytes per segment.
    pub segment_size: u32,
    /// Body layout.
    pub layout: Layout,
    /// The wrapped DEK.
    pub wrapped_dek: [u8; WRAPPED_DEK_LEN],
    /// Random nonce prefix.
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
    /// Format v2 only: the sealed metadata block (ciphertext ‖ tag). `None` means format v1.
    pub sealed_metadata: Option<Vec<u8>>,
}

/// The stated length of the header at the start of `prefix`, from its structure alone (version,
/// tenant length and, for v2, M); `None` if the prefix is not a treuhand header or too short
/// to tell. Unauthenticated: for display values (listings, which have no key) only. A prefix of
/// [`HEADER_PROBE_LEN`] bytes is always long enough.
pub fn header_len_hint(prefix: &[u8]) -> Option<usize> {
    if prefix.get(..4)? != MAGIC {
        return None;
    }
    let tenant_len = usize::from(*prefix.get(12)?);
    match *prefix.get(4)? {
        VERSION_1 => Some(FIXED_LEN + tenant_len),
        VERSION_2 => {
            let at = META_LEN_AT + tenant_len;
            let m = prefix.get(at..at + META_LEN_FIELD)?;
            let m = u32::from_be_bytes(m.try_into().ok()?) as usize;
            (MIN_SEALED_LEN..=MAX_SEALED_LEN)
                .contains(&m)
                .then_some(FIXED_LEN + tenant_len + META_LEN_FIELD + m)
        }
        _ => None,
    }
}

/// The layout byte of the header at the start of `prefix`, from its structure alone; `None`
/// if the prefix is not a treuhand header. Unauthenticated, like [`header_len_hint`].
pub fn layout_hint(prefix: &[u8]) -> Option<Layout> {
    if prefix.get(..4)? != MAGIC {
        return None;
    }
    match *prefix.get(7)? {
        0 => Some(Layout::Single),
        1 => Some(Layout::Multipart),
        2 => Some(Layout::MultipartKeyed),
        _ => None,
    }
}

impl Header {
    /// Parses the header at the start of `bytes` (which may continue with the body). Returns
    /// the header, its MAC and its encoded length. Only the structure is checked here.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`] for anything that is not a v1 or v2 treuhand header.
    pub fn parse(bytes: &[u8]) -> Result<(Header, [u8; MAC_LEN], usize), Error> {
        let fixed = bytes
            .get(..13)
            .ok_or_else(|| fail("header shorter than fixed part"))?;
        if &fixed[..4] != MAGIC {
            return Err(fail("header magic"));
        }
        let v2 = match fixed[4] {
            VERSION_1 => false,
            VERSION_2 => true,
            _ => return Err(fail("header version")),
        };
        if fixed[5] != AEAD_AES_256_GCM {
            return Err(fail("header aead id"));
        }
        let log2 = fixed[6];
        if !(12..=24).contains(&log2) {
            return Err(fail("header segment size"));
        }
        let layout = match fixed[7] {
            0 => Layout::Single,
            1 => Layout::Multipart,
            2 => Layout::MultipartKeyed,
            _ => return Err(fail("header layout")),
        };
        let version = u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);
        let tenant_len = usize::from(fixed[12]);
        let mut rest = bytes.get(13..).ok_or_else(|| fail("header truncated"))?;
        let tenant = take(&mut rest, tenant_len)?;
        let tenant = std::str::from_utf8(tenant).map_err(|_| fail("header tenant utf-8"))?;
        let key = KeyId::new(tenant, version).map_err(|_| fail("header tenant id"))?;
        let wrapped_dek: [u8; WRAPPED_DEK_LEN] = take_array(&mut rest)?;
        let nonce_prefix: [u8; NONCE_PREFIX_LEN] = take_array(&mut rest)?;
        let sealed_metadata = if v2 {
            let m = u32::from_be_bytes(take_array(&mut rest)?) as usize;
            if !(MIN_SEALED_LEN..=MAX_SEALED_LEN).contains(&m) {
                return Err(fail("header metadata length"));
            }
            Some(take(&mut rest, m)?.to_vec())
        } else {
            None
        };
        let mac: [u8; MAC_LEN] = take_array(&mut rest)?;
        let header = Header {
            key,
            segment_size: 1 << log2,
            layout,
            wrapped_dek,
            nonce_prefix,
            sealed_metadata,
        };
        let total = header.encoded_len();
        Ok((header, mac, total))
    }

    /// The encoded length of this header.
    pub fn encoded_len(&self) -> usize {
        let metadata = self
            .sealed_metadata
            .as_ref()
            .map_or(0, |sealed| META_LEN_FIELD + sealed.len());
        FIXED_LEN + self.key.tenant.len() + metadata
    }

    /// The format version this header is written in.
    pub fn format_version(&self) -> u8 {
        if self.sealed_metadata.is_some() {
            VERSION_2
        } else {
            VERSION_1
        }
    }

    /// The MAC label of this header's version.
    fn mac_label(&self) -> &'static [u8] {
        if self.sealed_metadata.is_some() {
            HEADER_MAC_V2
        } else {
            HEADER_MAC_V1
        }
    }

    /// The bytes covered by the MAC (everything but the MAC itself).
    fn mac_input(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(MAGIC);
        out.push(self.format_version());
        out.push(AEAD_AES_256_GCM);
        out.push(self.segment_size.trailing_zeros() as u8);
        out.push(match self.layout {
            Layout::Single => 0,
            Layout::Multipart => 1,
            Layout::MultipartKeyed => 2,
        });
        out.extend_from_slice(&self.key.version.to_be_bytes());
        out.push(self.key.tenant.len() as u8);
        out.extend_from_slice(self.key.tenant.as_bytes());
        out.extend_from_slice(&self.wrapped_dek);
        out.extend_from_slice(&self.nonce_prefix);
        if let Some(sealed) = &self.sealed_metadata {
            // MAX_SEALED_LEN < 2^32: the length cannot truncate.
            out.extend_from_slice(&(sealed.len() as u32).to_be_bytes());
            out.extend_from_slice(sealed);
        }
        out
    }

    /// The MAC input: the version's label, then every header byte before the MAC.
    fn labelled_mac_input(&self) -> Vec<u8> {
        [self.mac_label(), &self.mac_input()].concat()
    }
}

/// Splits `n` bytes off the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], Error> {
    let (head, tail) = rest
        .split_at_checked(n)
        .ok_or_else(|| fail("header truncated"))?;
    *rest = tail;
    Ok(head)
}

fn take_array<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], Error> {
    let (head, tail) = rest
        .split_first_chunk::<N>()
        .ok_or_else(|| fail("header truncated"))?;
    *rest = tail;
    Ok(*head)
}

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
    (dek, wrap_nonce, nonce_prefix): (Dek, [u8; 12], [u8; NONCE_PREFIX_LEN]),
    metadata: &Metadata,
) -> Result<(ObjectCipher, Vec<u8>), Error> {
    let wrapped_dek = envelope::wrap_dek_with_nonce(kek, &dek, context, wrap_nonce)?;
    let keys = ObjectKeys::derive(&dek)?;
    let part_keys = part_keys_for(layout, &dek)?;
    // Objects without metadata stay v1, byte for byte as before.
    let sealed_metadata = if metadata.is_empty() {
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
        segment_size: DEFAULT_SEGMENT_SIZE,
        layout,
        wrapped_dek,
        nonce_prefix,
        sealed_metadata,
    };
    let mut bytes = header.mac_input();
    let mac = keys.mac(&header.labelled_mac_input());
    bytes.extend_from_slice(&mac);
    let cipher = ObjectCipher {
        header,
        keys,
        part_keys,
        metadata: metadata.clone(),
    };
    Ok((cipher, bytes))
}

/// Opens an existing object from its first bytes: parses the header, checks that it names the
/// expected tenant key, unwraps the DEK (bound to tenant, bucket, object key and version) and
/// verifies the header MAC. Returns the cipher state and the header length.
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
    // The MAC covers M and the sealed block too, so it is checked before anything is opened.
    keys.verify_mac(&header.labelled_mac_input(), &mac)
        .map_err(|_| fail("header mac"))?;
    let metadata = match &header.sealed_metadata {
        None => Metadata::new(),
        Some(sealed) => open_metadata(&dek, sealed)?,
    };
    Ok((
        ObjectCipher {
            header,
            keys,
            part_keys,
            metadata,
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

/// Opens and decodes a v2 sealed metadata block.
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
    let metadata = Metadata::decode(&plaintext)?;
    // Writers use v1 for objects without metadata; an empty v2 set is not canonical.
    if metadata.is_empty() {
        return Err(fail("v2 header without metadata"));
    }
    Ok(metadata)
}

impl ObjectCipher {
    /// The authenticated header.
    pub fn header(&self) -> &Header {
        &self.header
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
