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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests
    use super::super::super::{Layout, PartAttempt, PartInfo, new_object_with_metadata};
    use super::super::{new_object_v3, new_object_v3_deterministic, open_object};
    use super::*;
    use crate::secret::Dek;

    const BUCKET: &str = "b";
    const KEY: &str = "dir/object";

    fn key(version: u32) -> KeyId {
        KeyId::new("acme", version).unwrap()
    }

    fn ctx(key: &KeyId) -> DekContext<'_> {
        DekContext {
            key,
            bucket: BUCKET,
            object: KEY,
        }
    }

    fn kek(byte: u8) -> Kek {
        Kek::from_bytes([byte; 32])
    }

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    fn metadata() -> Metadata {
        let mut m = Metadata::new();
        m.insert("content-type", "text/plain");
        m.insert("x-amz-meta-owner", "ops");
        m
    }

    /// An object of `layout` under version 1 (format v3 when `v3`), as stored, with its
    /// plaintext.
    fn stored(v3: bool, layout: Layout, metadata: &Metadata) -> (Vec<u8>, Vec<u8>) {
        let old = key(1);
        let (cipher, mut bytes) = if v3 {
            let id = ObjectId([3; 32]);
            if layout == Layout::Multipart {
                let randomness = (Dek::from_bytes([2; 32]), [4; 12], [5; 7]);
                new_object_v3_deterministic(&kek(1), &ctx(&old), id, layout, randomness, metadata)
                    .unwrap()
            } else {
                new_object_v3(&kek(1), &ctx(&old), id, layout, metadata).unwrap()
            }
        } else {
            new_object_with_metadata(&kek(1), &ctx(&old), layout, metadata).unwrap()
        };
        let mut plaintext = Vec::new();
        if layout == Layout::Single {
            let body = data(200_000, 1);
            let mut enc = cipher.encryptor(0);
            enc.push(&body, &mut bytes).unwrap();
            enc.finish(&mut bytes).unwrap();
            return (bytes, body);
        }
        let mut infos = Vec::new();
        let mut attempts = Vec::new();
        for (part, len) in [(1u32, 70_000usize), (3, 65_536), (4, 9)] {
            let body = data(len, part as u8);
            let attempt = PartAttempt([part as u8; 16]);
            let mut enc = if layout == Layout::MultipartKeyed {
                cipher.part_encryptor(part, &attempt).unwrap()
            } else {
                cipher.encryptor(part)
            };
            enc.push(&body, &mut bytes).unwrap();
            enc.finish(&mut bytes).unwrap();
            infos.push(PartInfo {
                part_number: part,
                plaintext_len: len as u64,
            });
            attempts.push(attempt);
            plaintext.extend(body);
        }
        let footer = if layout == Layout::MultipartKeyed {
            cipher.footer_with_attempts(&infos, &attempts).unwrap()
        } else {
            cipher.footer(&infos).unwrap()
        };
        bytes.extend(footer);
        (bytes, plaintext)
    }

    /// Reads `range` of a stored object with `kek` as version `version`.
    fn read(stored: &[u8], kek: &Kek, version: u32, range: std::ops::Range<u64>) -> Vec<u8> {
        let key = key(version);
        let (cipher, _) = open_object(kek, &ctx(&key), stored).unwrap();
        let total = stored.len() as u64;
        let layout = if cipher.header().layout == Layout::Single {
            cipher.single_layout(total).unwrap()
        } else {
            let tail = &stored[stored.len() - 4..];
            let footer_len = super::super::super::footer_len_from_tail(tail).unwrap();
            let footer = &stored[stored.len() - footer_len..];
            // The footer borrows from `stored`, the layout from `cipher`: read it here.
            let layout = cipher.multipart_layout(footer, total).unwrap();
            let (c, mut dec) = layout.decryptor(range).unwrap();
            let mut out = Vec::new();
            dec.push(&stored[c.start as usize..c.end as usize], &mut out)
                .unwrap();
            dec.finish().unwrap();
            return out;
        };
        let (c, mut dec) = layout.decryptor(range).unwrap();
        let mut out = Vec::new();
        dec.push(&stored[c.start as usize..c.end as usize], &mut out)
            .unwrap();
        dec.finish().unwrap();
        out
    }

    #[test]
    fn a_rewrapped_object_opens_under_the_new_key_only_with_every_body_byte_kept() {
        let cases = [
            (false, Layout::Single, Metadata::new()),
            (false, Layout::Single, metadata()),
            (false, Layout::Multipart, Metadata::new()),
            (false, Layout::MultipartKeyed, metadata()),
            (true, Layout::Single, Metadata::new()),
            (true, Layout::Single, metadata()),
            (true, Layout::Multipart, metadata()),
            (true, Layout::MultipartKeyed, Metadata::new()),
        ];
        for (v3, layout, metadata) in cases {
            let label = format!("v3 {v3}, {layout:?}, {} entries", metadata.iter().count());
            let (old_stored, plaintext) = stored(v3, layout, &metadata);
            let old_key = key(1);
            let (opened, old_len) = open_object(&kek(1), &ctx(&old_key), &old_stored).unwrap();
            let body = &old_stored[old_len..];
            let new_key = key(2);
            for target in [Some(ObjectId([9; 32])), None] {
                let re = opened.rewrap(&kek(2), &ctx(&new_key), target).unwrap();
                assert_eq!(re.old_len, old_len);
                // Only v3 to v3 (or v1/v2 to the same legacy version) keeps the length.
                // (A v1/v2 source has a block exactly when it has metadata, as its target.)
                let same_version = target.is_some() == v3;
                assert_eq!(re.same_len(), same_version, "{label}, {target:?}");
                let new_stored = [re.header.as_slice(), body].concat();
                let (new, new_len) = open_object(&kek(2), &ctx(&new_key), &new_stored).unwrap();
                assert_eq!(new_len, re.header.len());
                let (h, old) = (new.header(), opened.header());
                assert_eq!(h.key.version, 2);
                assert_eq!(h.object_id, target);
                assert_eq!(
                    (h.layout, h.segment_size, h.nonce_prefix),
                    (old.layout, old.segment_size, old.nonce_prefix)
                );
                assert_ne!(h.wrapped_dek, old.wrapped_dek, "a fresh wrap");
                assert_eq!(new.metadata(), &metadata, "{label}");
                if target.is_some() && old.sealed_metadata.is_some() {
                    assert_eq!(h.sealed_metadata, old.sealed_metadata, "kept byte for byte");
                }
                let total = plaintext.len() as u64;
                assert_eq!(
                    read(&new_stored, &kek(2), 2, 0..total),
                    plaintext,
                    "{label}"
                );
                for range in [0..1, 65_530..65_545, total - 10..total, 69_999..70_001] {
                    let expected = &plaintext[range.start as usize..range.end as usize];
                    assert_eq!(read(&new_stored, &kek(2), 2, range), expected, "{label}");
                }
                // The old key no longer opens it, as version 1 or 2.
                assert!(open_object(&kek(1), &ctx(&new_key), &new_stored).is_err());
                assert!(open_object(&kek(1), &ctx(&old_key), &new_stored).is_err());
            }
        }
    }

    /// docs/format.md §9.2: the v3 vector object `object-v3-1byte.bin`'s header (tenant
    /// `vector-tenant`, version 7, KEK `67…f0` of §8.5) re-wrapped to version 8 under the KEK
    /// `66…66`, object id `55…55`, wrap nonce `77…77`.
    #[test]
    fn the_rewrap_vector_is_reproduced() {
        let stored = include_bytes!("../../../tests/data/object-v3-1byte.bin");
        let old_kek = Kek::from_bytes(
            hex::decode("67594185fec123357573132475e4bea0c4d65694511aef40e5393a675fc245f0")
                .unwrap()
                .try_into()
                .unwrap(),
        );
        let (old, new) = (
            KeyId::new("vector-tenant", 7).unwrap(),
            KeyId::new("vector-tenant", 8).unwrap(),
        );
        let context = |key| DekContext {
            key,
            bucket: "vectors",
            object: "dir/object.bin",
        };
        let (cipher, old_len) = open_object(&old_kek, &context(&old), stored).unwrap();
        let re = cipher
            .rewrap_deterministic(
                &Kek::from_bytes([0x66; 32]),
                &context(&new),
                Some(ObjectId([0x55; 32])),
                [0x77; 12],
            )
            .unwrap();
        assert!(re.same_len());
        assert_eq!(re.old_len, old_len);
        let moved = [re.header.as_slice(), &stored[old_len..]].concat();
        let (new_cipher, _) =
            open_object(&Kek::from_bytes([0x66; 32]), &context(&new), &moved).unwrap();
        assert_eq!(new_cipher.metadata(), cipher.metadata());
        let layout = new_cipher.single_layout(moved.len() as u64).unwrap();
        let (c, mut dec) = layout.decryptor(0..1).unwrap();
        let mut plaintext = Vec::new();
        dec.push(&moved[c.start as usize..c.end as usize], &mut plaintext)
            .unwrap();
        dec.finish().unwrap();
        assert_eq!(plaintext, [0]);
        let digest = ring::digest::digest(&ring::digest::SHA256, &re.header);
        assert_eq!(
            hex::encode(digest.as_ref()),
            "52b0bf49352b2959e652d23a4d008280cceaadc21cc17ffe336728acdbc7a84e"
        );
    }
}
