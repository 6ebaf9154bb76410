//! The v1 object header: byte layout, parsing, the header MAC, and [`ObjectCipher`], the
//! per-object key state from which encryptors, decryptors and footers are made.
//!
//! ```text
//! off      len  field
//! 0        4    magic "TRHD"
//! 4        1    format version = 1
//! 5        1    AEAD id = 1 (AES-256-GCM)
//! 6        1    log2(segment size), 12..=24 (16 = 64 KiB)
//! 7        1    layout: 0 = single run, 1 = multipart (runs + footer)
//! 8        4    key version, big endian
//! 12       1    tenant length T, 1..=63
//! 13       T    tenant id
//! 13+T     60   wrapped DEK: nonce(12) ‖ AES-256-GCM(KEK, DEK)(32) ‖ tag(16)
//! 73+T     7    nonce prefix (random)
//! 80+T     32   HMAC-SHA256(K_mac, bytes 0 .. 80+T)
//! ```

use crate::crypto::envelope::{self, MAC_LEN, WRAPPED_DEK_LEN};
use crate::crypto::{DekContext, KeyId, ObjectKeys};
use crate::secret::{Dek, Kek};

use super::layout::{self, ObjectLayout, PartInfo};
use super::stream::Encryptor;
use super::{DEFAULT_SEGMENT_SIZE, Error, fail};

const MAGIC: &[u8; 4] = b"TRHD";
const VERSION: u8 = 1;
const AEAD_AES_256_GCM: u8 = 1;
/// Length of the random nonce prefix.
pub const NONCE_PREFIX_LEN: usize = 7;
const FIXED_LEN: usize = 4 + 1 + 1 + 1 + 1 + 4 + 1 + WRAPPED_DEK_LEN + NONCE_PREFIX_LEN + MAC_LEN;
/// Longest possible header (63-byte tenant id). Read this many bytes, or the whole object if
/// it is shorter, before calling [`open_object`].
pub const MAX_HEADER_LEN: usize = FIXED_LEN + 63;

/// How the body is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One run (run number 0) filling the rest of the object.
    Single,
    /// Runs numbered by S3 part number, followed by an authenticated footer listing them.
    Multipart,
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
}

impl Header {
    /// Parses the header at the start of `bytes` (which may continue with the body). Returns
    /// the header, its MAC and its encoded length. Only the structure is checked here.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`] for anything that is not a v1 treuhand header.
    pub fn parse(bytes: &[u8]) -> Result<(Header, [u8; MAC_LEN], usize), Error> {
        let fixed = bytes
            .get(..13)
            .ok_or_else(|| fail("header shorter than fixed part"))?;
        if &fixed[..4] != MAGIC {
            return Err(fail("header magic"));
        }
        if fixed[4] != VERSION || fixed[5] != AEAD_AES_256_GCM {
            return Err(fail("header version or aead id"));
        }
        let log2 = fixed[6];
        if !(12..=24).contains(&log2) {
            return Err(fail("header segment size"));
        }
        let layout = match fixed[7] {
            0 => Layout::Single,
            1 => Layout::Multipart,
            _ => return Err(fail("header layout")),
        };
        let version = u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);
        let tenant_len = usize::from(fixed[12]);
        let total = FIXED_LEN + tenant_len;
        let all = bytes.get(..total).ok_or_else(|| fail("header truncated"))?;
        let mut pos = 13;
        let tenant = std::str::from_utf8(&all[pos..pos + tenant_len])
            .map_err(|_| fail("header tenant utf-8"))?;
        let key = KeyId::new(tenant, version).map_err(|_| fail("header tenant id"))?;
        pos += tenant_len;
        let mut wrapped_dek = [0u8; WRAPPED_DEK_LEN];
        wrapped_dek.copy_from_slice(&all[pos..pos + WRAPPED_DEK_LEN]);
        pos += WRAPPED_DEK_LEN;
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        nonce_prefix.copy_from_slice(&all[pos..pos + NONCE_PREFIX_LEN]);
        pos += NONCE_PREFIX_LEN;
        let mut mac = [0u8; MAC_LEN];
        mac.copy_from_slice(&all[pos..pos + MAC_LEN]);
        let header = Header {
            key,
            segment_size: 1 << log2,
            layout,
            wrapped_dek,
            nonce_prefix,
        };
        Ok((header, mac, total))
    }

    /// The encoded length of this header.
    pub fn encoded_len(&self) -> usize {
        FIXED_LEN + self.key.tenant.len()
    }

    /// The bytes covered by the MAC (everything but the MAC itself).
    fn mac_input(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(AEAD_AES_256_GCM);
        out.push(self.segment_size.trailing_zeros() as u8);
        out.push(match self.layout {
            Layout::Single => 0,
            Layout::Multipart => 1,
        });
        out.extend_from_slice(&self.key.version.to_be_bytes());
        out.push(self.key.tenant.len() as u8);
        out.extend_from_slice(self.key.tenant.as_bytes());
        out.extend_from_slice(&self.wrapped_dek);
        out.extend_from_slice(&self.nonce_prefix);
        out
    }
}

/// The per-object key state: the header and the DEK-derived keys. Made by [`new_object`] for
/// writing or [`open_object`] for reading; all encryptors, decryptors and footers of one object
/// come from it.
#[derive(Debug)]
pub struct ObjectCipher {
    header: Header,
    keys: ObjectKeys,
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
    let dek = envelope::generate_dek()?;
    let mut wrap_nonce = [0u8; 12];
    envelope::fill_random(&mut wrap_nonce)?;
    let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
    envelope::fill_random(&mut nonce_prefix)?;
    new_object_deterministic(kek, context, layout, dek, wrap_nonce, nonce_prefix)
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
    let wrapped_dek = envelope::wrap_dek_with_nonce(kek, &dek, context, wrap_nonce)?;
    let keys = ObjectKeys::derive(&dek)?;
    let header = Header {
        key: context.key.clone(),
        segment_size: DEFAULT_SEGMENT_SIZE,
        layout,
        wrapped_dek,
        nonce_prefix,
    };
    let mut bytes = header.mac_input();
    let mac = keys.mac(&[b"treuhand v1 header".as_slice(), &bytes].concat());
    bytes.extend_from_slice(&mac);
    Ok((ObjectCipher { header, keys }, bytes))
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
    let input = [b"treuhand v1 header".as_slice(), &header.mac_input()].concat();
    keys.verify_mac(&input, &mac)
        .map_err(|_| fail("header mac"))?;
    Ok((ObjectCipher { header, keys }, len))
}

impl ObjectCipher {
    /// The authenticated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Encoded header length.
    pub fn header_len(&self) -> usize {
        self.header.encoded_len()
    }

    /// An encryptor for run `run`: 0 for single-run objects, the S3 part number (1..=10000)
    /// for multipart parts.
    pub fn encryptor(&self, run: u32) -> Encryptor<'_> {
        Encryptor::new(
            &self.keys,
            self.run_prefix(run),
            self.header.segment_size as usize,
        )
    }

    /// The 7-byte nonce prefix of a run: the header prefix XOR the run number in its last four
    /// bytes, so no two runs of an object share a nonce.
    pub(crate) fn run_prefix(&self, run: u32) -> [u8; NONCE_PREFIX_LEN] {
        let mut prefix = self.header.nonce_prefix;
        for (p, r) in prefix[3..].iter_mut().zip(run.to_be_bytes()) {
            *p ^= r;
        }
        prefix
    }

    pub(crate) fn keys(&self) -> &ObjectKeys {
        &self.keys
    }

    /// The layout of a single-run object of `total_len` stored bytes.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`] if the length cannot be a valid object (truncation, trailing
    /// bytes) or the header says multipart.
    pub fn single_layout(&self, total_len: u64) -> Result<ObjectLayout<'_>, Error> {
        if self.header.layout != Layout::Single {
            return Err(fail("single layout requested for multipart object"));
        }
        layout::single(self, total_len)
    }

    /// Encodes the authenticated footer for a completed multipart object whose runs are the
    /// given parts, in order.
    ///
    /// # Errors
    /// [`Error::InvalidParts`].
    pub fn footer(&self, parts: &[PartInfo]) -> Result<Vec<u8>, Error> {
        layout::encode_footer(self, parts)
    }

    /// The layout of a multipart object from its footer bytes and total stored length.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`] if the footer does not authenticate or the lengths disagree.
    pub fn multipart_layout(
        &self,
        footer: &[u8],
        total_len: u64,
    ) -> Result<ObjectLayout<'_>, Error> {
        if self.header.layout != Layout::Multipart {
            return Err(fail("multipart layout requested for single object"));
        }
        layout::multipart(self, footer, total_len)
    }
}
