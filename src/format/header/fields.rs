//! The header's bytes (format v1, v2 and v3): layout, parsing, the bytes the MAC covers, and
//! what can be read without a key ([`peek_header`], [`header_len_hint`], [`layout_hint`]).
//! No key is used here; `header/mod.rs` authenticates what this file parses.
//!
//! ```text
//! off      len  field
//! 0        4    magic "TRHD"
//! 4        1    format version: 1, 2 (v1 + sealed metadata) or 3 (per-object key, object id)
//! 5        1    AEAD id = 1 (AES-256-GCM)
//! 6        1    log2(segment size), 12..=24 (16 = 64 KiB)
//! 7        1    layout: 0 = single run, 1 = multipart (runs + footer), 2 = multipart with
//!               per-attempt part keys (runs + footer naming each part's attempt)
//! 8        4    key version, big endian
//! 12       1    tenant length T, 1..=63
//! 13       T    tenant id
//! v1 and v2:
//! 13+T     60   wrapped DEK: nonce(12) ‖ AES-256-GCM(KEK, DEK)(32) ‖ tag(16)
//! 73+T     7    nonce prefix (random)
//! v1:
//! 80+T     32   HMAC-SHA256(K_mac, "treuhand v1 header" ‖ bytes 0 .. 80+T)
//! v2:
//! 80+T     4    M, length of the sealed metadata block, 16..=16+MAX_METADATA
//! 84+T     M    AES-256-GCM(K_meta, nonce 0, "treuhand v2 metadata", encoding) ‖ tag
//! 84+T+M   32   HMAC-SHA256(K_mac, "treuhand v2 header" ‖ bytes 0 .. 84+T+M)
//! v3 (docs/format.md §8):
//! 13+T     32   object id (random per write; part of the identity the per-object KEK is
//!               derived from)
//! 45+T     60   wrapped DEK under the per-object KEK
//! 105+T    7    nonce prefix (random)
//! 112+T    4    M, 18..=16+MAX_METADATA (always present: the empty set encodes to 2 bytes)
//! 116+T    M    sealed metadata block, as in v2
//! 116+T+M  32   HMAC-SHA256(K_mac, "treuhand v3 header" ‖ bytes 0 .. 116+T+M)
//! ```

use crate::crypto::KeyId;
use crate::crypto::aead::TAG_LEN;
use crate::crypto::envelope::{MAC_LEN, WRAPPED_DEK_LEN};
use crate::crypto::oprf::ObjectId;

use super::super::cipher::NONCE_PREFIX_LEN;
use super::super::metadata::MAX_METADATA;
use super::super::{Error, fail};

const MAGIC: &[u8; 4] = b"TRHD";
pub(super) const VERSION_1: u8 = 1;
pub(super) const VERSION_2: u8 = 2;
pub(super) const VERSION_3: u8 = 3;
const AEAD_AES_256_GCM: u8 = 1;
/// Length of a v3 header's object id.
pub const OBJECT_ID_LEN: usize = 32;
/// Bytes before the tenant id: magic, version, AEAD id, log2 S, layout, key version, T.
const PREFIX_LEN: usize = 13;
const LONGEST_TENANT: usize = 63;
const FIXED_LEN: usize = PREFIX_LEN + WRAPPED_DEK_LEN + NONCE_PREFIX_LEN + MAC_LEN;
/// A v1 header's length less its tenant id (112; the header is 112 + T bytes). Listings use it
/// to guess a size when a header cannot be read.
pub const HEADER_V1_BASE_LEN: usize = FIXED_LEN;
/// Offset of the v2 metadata length field M, less the tenant length.
const META_LEN_AT: usize = PREFIX_LEN + WRAPPED_DEK_LEN + NONCE_PREFIX_LEN;
/// Offset of the v3 metadata length field M, less the tenant length.
const META_LEN_AT_V3: usize = META_LEN_AT + OBJECT_ID_LEN;
const META_LEN_FIELD: usize = 4;
const MIN_SEALED_LEN: usize = TAG_LEN;
/// A v3 block always holds an encoding, and the shortest (the empty set) is 2 bytes.
const MIN_SEALED_LEN_V3: usize = TAG_LEN + 2;
const MAX_SEALED_LEN: usize = TAG_LEN + MAX_METADATA;
/// How many first bytes of a stored object always suffice for [`peek_header`],
/// [`header_len_hint`] and [`layout_hint`], whatever the version: up to the v3 metadata length
/// field with a 63-byte tenant id (179). Read this many bytes, or the whole object if it is
/// shorter.
pub const HEADER_PROBE_LEN: usize = META_LEN_AT_V3 + LONGEST_TENANT + META_LEN_FIELD;
/// Longest possible header of any version (v3, 63-byte tenant id, largest metadata block).
/// Read this many bytes, or the whole object if it is shorter, before calling
/// [`open_object`](super::open_object).
pub const MAX_HEADER_LEN: usize =
    FIXED_LEN + OBJECT_ID_LEN + LONGEST_TENANT + META_LEN_FIELD + MAX_SEALED_LEN;
// Distinct labels: a MAC of one version never verifies as a MAC of another.
const HEADER_MAC_V1: &[u8] = b"treuhand v1 header";
const HEADER_MAC_V2: &[u8] = b"treuhand v2 header";
const HEADER_MAC_V3: &[u8] = b"treuhand v3 header";

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

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Layout::Single),
            1 => Some(Layout::Multipart),
            2 => Some(Layout::MultipartKeyed),
            _ => None,
        }
    }

    fn to_byte(self) -> u8 {
        match self {
            Layout::Single => 0,
            Layout::Multipart => 1,
            Layout::MultipartKeyed => 2,
        }
    }
}

/// A parsed (not yet authenticated) header. Authentication needs the DEK, see
/// [`open_object`](super::open_object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The tenant key the DEK is wrapped under (v1, v2) or whose OPRF output the per-object
    /// KEK is derived from (v3).
    pub key: KeyId,
    /// Format v3 only: the object id. `Some` means format v3 (and then `sealed_metadata` is
    /// `Some` too).
    pub object_id: Option<ObjectId>,
    /// Plaintext bytes per segment.
    pub segment_size: u32,
    /// Body layout.
    pub layout: Layout,
    /// The wrapped DEK.
    pub wrapped_dek: [u8; WRAPPED_DEK_LEN],
    /// Random nonce prefix.
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
    /// Format v2 and v3: the sealed metadata block (ciphertext ‖ tag). `None` means format v1.
    pub sealed_metadata: Option<Vec<u8>>,
}

/// The public fields of an object header, read without a key by [`peek_header`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderInfo {
    /// Format version: 1, 2 or 3.
    pub version: u8,
    /// Tenant id.
    pub tenant: String,
    /// Tenant key version.
    pub key_version: u32,
    /// The object id (format v3 only).
    pub object_id: Option<ObjectId>,
}

/// Why the public fields could not be read: the prefix ends too early, or is not a header.
enum Refusal {
    Truncated { need: usize },
    Invalid(&'static str),
}

/// The public fields and where they end.
struct Public {
    version: u8,
    segment_size: u32,
    layout: Layout,
    key: KeyId,
    object_id: Option<ObjectId>,
    /// Offset of the first byte after the public fields (the wrapped DEK).
    end: usize,
}

/// Parses magic, version, AEAD id, segment size, layout, key version, tenant id and (v3) the
/// object id. Every structural check comes before any length check, so a refusal for garbage
/// is never reported as truncation.
fn public_fields(bytes: &[u8]) -> Result<Public, Refusal> {
    let Some(fixed) = bytes.get(..PREFIX_LEN) else {
        // As much of the magic as there is must match, or this is not a header at all.
        if !MAGIC.starts_with(&bytes[..bytes.len().min(MAGIC.len())]) {
            return Err(Refusal::Invalid("header magic"));
        }
        return Err(Refusal::Truncated { need: PREFIX_LEN });
    };
    if &fixed[..4] != MAGIC {
        return Err(Refusal::Invalid("header magic"));
    }
    let version = fixed[4];
    if !matches!(version, VERSION_1 | VERSION_2 | VERSION_3) {
        return Err(Refusal::Invalid("header version"));
    }
    if fixed[5] != AEAD_AES_256_GCM {
        return Err(Refusal::Invalid("header aead id"));
    }
    let log2 = fixed[6];
    if !(12..=24).contains(&log2) {
        return Err(Refusal::Invalid("header segment size"));
    }
    let layout = Layout::from_byte(fixed[7]).ok_or(Refusal::Invalid("header layout"))?;
    let key_version = u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);
    let tenant_len = usize::from(fixed[12]);
    if tenant_len == 0 || tenant_len > LONGEST_TENANT {
        return Err(Refusal::Invalid("header tenant length"));
    }
    let id_len = if version == VERSION_3 {
        OBJECT_ID_LEN
    } else {
        0
    };
    let end = PREFIX_LEN + tenant_len + id_len;
    let tenant = bytes
        .get(PREFIX_LEN..PREFIX_LEN + tenant_len)
        .ok_or(Refusal::Truncated { need: end })?;
    let tenant = std::str::from_utf8(tenant).map_err(|_| Refusal::Invalid("header tenant"))?;
    let key = KeyId::new(tenant, key_version).map_err(|_| Refusal::Invalid("header tenant"))?;
    let object_id = if version == VERSION_3 {
        let id = bytes
            .get(PREFIX_LEN + tenant_len..end)
            .ok_or(Refusal::Truncated { need: end })?;
        let id: [u8; OBJECT_ID_LEN] = id
            .try_into()
            .map_err(|_| Refusal::Invalid("header object id"))?;
        Some(ObjectId(id))
    } else {
        None
    };
    Ok(Public {
        version,
        segment_size: 1 << log2,
        layout,
        key,
        object_id,
        end,
    })
}

/// Reads the public fields at the start of a stored object (version, tenant, key version and,
/// for format v3, the object id) **without a key**, so the caller can find the key that opens
/// it (for v3: the object's identity, and from it the per-object KEK).
///
/// Unauthenticated: nothing read here is trusted. [`open_object`](super::open_object) verifies
/// the header MAC (which covers every field returned here) and fails if any was altered; for v3
/// a changed object id also yields a KEK that does not unwrap the DEK.
///
/// How many bytes suffice: 13 + T for v1 and v2, 45 + T for v3 (T = tenant id length, at most
/// 63, so at most 108). A prefix of [`HEADER_PROBE_LEN`] bytes, or the whole object if it is
/// shorter, always does.
///
/// # Errors
/// [`Error::HeaderTruncated`] if `prefix` ends before the public fields do (it names how many
/// bytes are needed); [`Error::NotAnObject`] if the bytes are not a treuhand header of a known
/// version (wrong magic, version, AEAD id, segment size, layout or tenant id).
pub fn peek_header(prefix: &[u8]) -> Result<HeaderInfo, Error> {
    match public_fields(prefix) {
        Ok(public) => Ok(HeaderInfo {
            version: public.version,
            tenant: public.key.tenant,
            key_version: public.key.version,
            object_id: public.object_id,
        }),
        Err(Refusal::Truncated { need }) => Err(Error::HeaderTruncated { need }),
        Err(Refusal::Invalid(stage)) => {
            tracing::debug!(stage, "not an object header");
            Err(Error::NotAnObject)
        }
    }
}

/// The stated length of the header at the start of `prefix`, from its structure alone (version,
/// tenant length and, for v2 and v3, M); `None` if the prefix is not a treuhand header or too
/// short to tell. Unauthenticated: for display values (listings, which have no key) only. A
/// prefix of [`HEADER_PROBE_LEN`] bytes is always long enough.
pub fn header_len_hint(prefix: &[u8]) -> Option<usize> {
    let public = public_fields(prefix).ok()?;
    let tenant_len = public.key.tenant.len();
    let (at, min) = match public.version {
        VERSION_1 => return Some(FIXED_LEN + tenant_len),
        VERSION_2 => (META_LEN_AT + tenant_len, MIN_SEALED_LEN),
        _ => (META_LEN_AT_V3 + tenant_len, MIN_SEALED_LEN_V3),
    };
    let m = prefix.get(at..at + META_LEN_FIELD)?;
    let m = u32::from_be_bytes(m.try_into().ok()?) as usize;
    (min..=MAX_SEALED_LEN)
        .contains(&m)
        .then_some(at + META_LEN_FIELD + m + MAC_LEN)
}

/// The layout byte of the header at the start of `prefix`, from its structure alone; `None`
/// if the prefix is not a treuhand header. Unauthenticated, like [`header_len_hint`].
pub fn layout_hint(prefix: &[u8]) -> Option<Layout> {
    if prefix.get(..4)? != MAGIC {
        return None;
    }
    Layout::from_byte(*prefix.get(7)?)
}

impl Header {
    /// Parses the header at the start of `bytes` (which may continue with the body). Returns
    /// the header, its MAC and its encoded length. Only the structure is checked here.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`] for anything that is not a v1, v2 or v3 treuhand header.
    pub fn parse(bytes: &[u8]) -> Result<(Header, [u8; MAC_LEN], usize), Error> {
        let public = public_fields(bytes).map_err(|refusal| match refusal {
            Refusal::Truncated { .. } => fail("header truncated"),
            Refusal::Invalid(stage) => fail(stage),
        })?;
        let mut rest = bytes
            .get(public.end..)
            .ok_or_else(|| fail("header truncated"))?;
        let wrapped_dek: [u8; WRAPPED_DEK_LEN] = take_array(&mut rest)?;
        let nonce_prefix: [u8; NONCE_PREFIX_LEN] = take_array(&mut rest)?;
        let min = match public.version {
            VERSION_1 => None,
            VERSION_2 => Some(MIN_SEALED_LEN),
            _ => Some(MIN_SEALED_LEN_V3),
        };
        let sealed_metadata = match min {
            None => None,
            Some(min) => {
                let m = u32::from_be_bytes(take_array(&mut rest)?) as usize;
                if !(min..=MAX_SEALED_LEN).contains(&m) {
                    return Err(fail("header metadata length"));
                }
                Some(take(&mut rest, m)?.to_vec())
            }
        };
        let mac: [u8; MAC_LEN] = take_array(&mut rest)?;
        let header = Header {
            key: public.key,
            object_id: public.object_id,
            segment_size: public.segment_size,
            layout: public.layout,
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
        let id = self.object_id.map_or(0, |_| OBJECT_ID_LEN);
        FIXED_LEN + self.key.tenant.len() + id + metadata
    }

    /// The format version this header is written in: 3 with an object id, else 2 with sealed
    /// metadata, else 1.
    pub fn format_version(&self) -> u8 {
        match (&self.object_id, &self.sealed_metadata) {
            (Some(_), _) => VERSION_3,
            (None, Some(_)) => VERSION_2,
            (None, None) => VERSION_1,
        }
    }

    /// The MAC label of this header's version.
    fn mac_label(&self) -> &'static [u8] {
        match self.format_version() {
            VERSION_1 => HEADER_MAC_V1,
            VERSION_2 => HEADER_MAC_V2,
            _ => HEADER_MAC_V3,
        }
    }

    /// The bytes covered by the MAC (everything but the MAC itself).
    pub(super) fn mac_input(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(MAGIC);
        out.push(self.format_version());
        out.push(AEAD_AES_256_GCM);
        out.push(self.segment_size.trailing_zeros() as u8);
        out.push(self.layout.to_byte());
        out.extend_from_slice(&self.key.version.to_be_bytes());
        // KeyId::new bounds the tenant id to 63 bytes: the length cannot truncate.
        out.push(self.key.tenant.len() as u8);
        out.extend_from_slice(self.key.tenant.as_bytes());
        if let Some(id) = &self.object_id {
            out.extend_from_slice(&id.0);
        }
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
    pub(super) fn labelled_mac_input(&self) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_covers_every_version_and_the_longest_header_is_v3() {
        // v3, T = 63: M ends at 112 + 63 + 4.
        assert_eq!(HEADER_PROBE_LEN, 179);
        // v3, T = 63, M = 16 + 8192: 148 + 63 + 8208.
        assert_eq!(MAX_HEADER_LEN, 8419);
        assert_eq!(HEADER_V1_BASE_LEN, 112);
    }

    #[test]
    fn peek_tells_garbage_from_truncation() {
        assert!(matches!(
            peek_header(b""),
            Err(Error::HeaderTruncated { need: 13 })
        ));
        assert!(matches!(
            peek_header(b"TR"),
            Err(Error::HeaderTruncated { need: 13 })
        ));
        assert!(matches!(peek_header(b"XX"), Err(Error::NotAnObject)));
        let mut v3 = b"TRHD\x03\x01\x10\x00\x00\x00\x00\x07\x04acme".to_vec();
        assert!(matches!(
            peek_header(&v3),
            Err(Error::HeaderTruncated { need: 49 })
        ));
        v3.extend_from_slice(&[9; 32]);
        let info = peek_header(&v3).unwrap();
        assert_eq!(info.version, 3);
        assert_eq!(info.tenant, "acme");
        assert_eq!(info.key_version, 7);
        assert_eq!(info.object_id, Some(ObjectId([9; 32])));
        for (at, byte) in [
            (4, 4),
            (5, 2),
            (6, 11),
            (7, 3),
            (12, 0),
            (12, 64),
            (13, b'A'),
        ] {
            let mut bad = v3.clone();
            bad[at] = byte;
            assert!(matches!(peek_header(&bad), Err(Error::NotAnObject)), "{at}");
        }
    }
}
