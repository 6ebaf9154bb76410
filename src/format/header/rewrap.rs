//! Re-wrapping an object under another tenant key version (docs/format.md §9): the same DEK,
//! nonce prefix, segment size, layout and sealed metadata block under a new header, so every
//! body byte (runs and footer) stays valid and is never touched.

use crate::crypto::envelope;
use crate::crypto::oprf::ObjectId;
use crate::crypto::{DekContext, KeyId};
use crate::secret::Kek;

use super::super::Error;
use super::super::metadata::Metadata;
use super::{
    Header, METADATA_AAD, METADATA_NONCE, ObjectCipher, ObjectKeys, encode, part_keys_for,
};

/// A new header for an opened object ([`ObjectCipher::rewrap`]).
#[derive(Debug)]
pub struct Rewrapped {
    /// The object's key state under the new header (same DEK, so the same body keys).
    pub cipher: ObjectCipher,
    /// The new header's bytes, to replace the old header's.
    pub header: Vec<u8>,
    /// The old header's length: the body starts there in the stored object.
    pub old_len: usize,
}

impl Rewrapped {
    /// Whether the new header is exactly as long as the old one, so that it can overwrite it
    /// in place (the body does not move).
    pub fn same_len(&self) -> bool {
        self.header.len() == self.old_len
    }
}

impl ObjectCipher {
    /// Wraps this object's DEK under `kek`, the key of the version `context.key` names (for a
    /// per-object key version: the KEK of `object_id`'s identity), and returns the new header.
    /// The DEK, nonce prefix, segment size and layout stay, and so does the sealed metadata
    /// block byte for byte: K_meta depends on the DEK only, and sealing the same metadata
    /// again would reuse its fixed nonce (docs/format.md §6.1, §8.2).
    ///
    /// - `object_id` given: a format v3 header. A v1 object (no block) gets the empty set
    ///   sealed, the first use of K_meta under this DEK.
    /// - `object_id` absent (a legacy key version): a v2 header if the object has metadata,
    ///   else v1 (a v3 object's empty block is dropped, as v2 refuses an empty set).
    ///
    /// Every run and the footer stay valid: none of their keys or nonces depend on the header
    /// beyond the DEK and the nonce prefix.
    ///
    /// # Errors
    /// [`Error::Crypto`] if the RNG fails.
    pub fn rewrap(
        &self,
        kek: &Kek,
        context: &DekContext<'_>,
        object_id: Option<ObjectId>,
    ) -> Result<Rewrapped, Error> {
        let mut wrap_nonce = [0u8; 12];
        envelope::fill_random(&mut wrap_nonce)?;
        self.rewrap_deterministic(kek, context, object_id, wrap_nonce)
    }

    /// [`Self::rewrap`] with a caller-chosen wrap nonce. Only for frozen test vectors and
    /// benchmarks: a repeated wrap nonce under one KEK breaks the wrap.
    ///
    /// # Errors
    /// [`Error::Crypto`].
    #[doc(hidden)]
    pub fn rewrap_deterministic(
        &self,
        kek: &Kek,
        context: &DekContext<'_>,
        object_id: Option<ObjectId>,
        wrap_nonce: [u8; 12],
    ) -> Result<Rewrapped, Error> {
        let old = &self.header;
        let sealed_metadata = match (object_id, &old.sealed_metadata) {
            // Kept byte for byte.
            (Some(_), Some(sealed)) => Some(sealed.clone()),
            (None, Some(sealed)) if !self.metadata.is_empty() => Some(sealed.clone()),
            (None, _) => None,
            // A v1 object has never sealed anything under K_meta.
            (Some(_), None) => Some(self.seal_empty_metadata()?),
        };
        let wrapped_dek = envelope::wrap_dek_with_nonce(kek, &self.dek, context, wrap_nonce)?;
        let header = Header {
            key: KeyId::clone(context.key),
            object_id,
            segment_size: old.segment_size,
            layout: old.layout,
            wrapped_dek,
            nonce_prefix: old.nonce_prefix,
            sealed_metadata,
        };
        let keys = ObjectKeys::derive(&self.dek)?;
        let bytes = encode(&header, &keys);
        let cipher = ObjectCipher {
            header,
            keys,
            part_keys: part_keys_for(old.layout, &self.dek)?,
            metadata: self.metadata.clone(),
            dek: crate::secret::Dek::from_bytes(*self.dek.expose_secret()),
        };
        Ok(Rewrapped {
            cipher,
            header: bytes,
            old_len: old.encoded_len(),
        })
    }

    /// The sealed empty metadata set under this object's K_meta.
    fn seal_empty_metadata(&self) -> Result<Vec<u8>, Error> {
        let mut sealed = Metadata::new().encode()?;
        let tag = envelope::derive_metadata_key(&self.dek)?.seal_in_place(
            METADATA_NONCE,
            METADATA_AAD,
            &mut sealed,
        )?;
        sealed.extend_from_slice(&tag);
        Ok(sealed)
    }
}
