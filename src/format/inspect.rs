//! What a stored object's structure says without its key: layout, header length and plaintext
//! length, for listings (which have no key).
//!
//! Everything here is unauthenticated display data. GET and HEAD open the object with its key
//! and authenticate what they serve; nothing read here is ever trusted for decryption.
//!
//! A single-run object's plaintext length follows from its stored length and the segment size
//! in its header. A multipart object's is the sum of the part lengths in its footer, which sits
//! at the end: [`Inspection::plaintext_len`] says which bytes to read for it, and
//! [`Inspection::with_footer`] reads the length out of them.

use std::ops::Range;

use super::{
    Error, FOOTER_TAIL_LEN, Header, Layout, fail, footer_len_from_tail, footer_plaintext_len_hint,
    header_len_hint, run_ciphertext_len,
};
use crate::crypto::aead::TAG_LEN;

/// The structure of a stored object, read from its first bytes and its stored length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// Single run or multipart.
    pub layout: Layout,
    /// Length of the header, including a v2 header's sealed metadata.
    pub header_len: usize,
    /// Plaintext bytes per segment, as the header records it.
    pub segment_size: u32,
    /// The object's stored (ciphertext) length.
    pub stored_len: u64,
}

/// The plaintext length, or where to find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaintextLen {
    /// The header and the stored length tell it.
    Known(u64),
    /// A multipart object: read these last bytes, pass them to [`Inspection::footer_range`],
    /// read that range and pass it to [`Inspection::with_footer`].
    NeedsFooter {
        /// The footer's length field at the end of the object.
        tail: Range<u64>,
    },
}

/// Inspects an object of `stored_len` bytes whose first bytes are `head`. `head` must hold the
/// whole header: [`header_len_hint`] of a [`super::HEADER_PROBE_LEN`]-byte prefix tells how
/// long that is.
///
/// # Errors
/// [`Error::DecryptionFailed`] if `head` does not start with a whole treuhand header, or the
/// object is shorter than its header.
pub fn inspect(head: &[u8], stored_len: u64) -> Result<Inspection, Error> {
    let header_len = header_len_hint(head).ok_or_else(|| fail("inspect: no header"))?;
    let (header, _, parsed_len) = Header::parse(head)?;
    if parsed_len != header_len || (header_len as u64) > stored_len {
        return Err(fail("inspect: header length"));
    }
    Ok(Inspection {
        layout: header.layout,
        header_len,
        segment_size: header.segment_size,
        stored_len,
    })
}

impl Inspection {
    /// The plaintext length where the header alone tells it, or which bytes to read next.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`] for a single-run object whose stored length no run has.
    pub fn plaintext_len(&self) -> Result<PlaintextLen, Error> {
        if self.layout.is_multipart() {
            let end = self.stored_len;
            return Ok(PlaintextLen::NeedsFooter {
                tail: end.saturating_sub(FOOTER_TAIL_LEN as u64)..end,
            });
        }
        single_plaintext_len(self.stored_len, self.header_len, self.segment_size)
            .map(PlaintextLen::Known)
            .ok_or_else(|| fail("inspect: run length"))
    }

    /// Where the footer lies, from the object's last [`FOOTER_TAIL_LEN`] bytes.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`] for a length field out of range or past the object's start.
    pub fn footer_range(&self, tail: &[u8]) -> Result<Range<u64>, Error> {
        let footer_len = footer_len_from_tail(tail)? as u64;
        let start = self
            .stored_len
            .checked_sub(footer_len)
            .ok_or_else(|| fail("inspect: footer longer than the object"))?;
        Ok(start..self.stored_len)
    }

    /// The plaintext length a multipart object's footer states (the sum of its part lengths).
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`] if `footer` is not a multipart footer.
    pub fn with_footer(&self, footer: &[u8]) -> Result<u64, Error> {
        footer_plaintext_len_hint(footer).ok_or_else(|| fail("inspect: footer"))
    }
}

/// Plaintext length of a single-run object of `stored_len` bytes with a `header_len`-byte
/// header and `segment_size`-byte segments; `None` if no run has that length.
pub fn single_plaintext_len(stored_len: u64, header_len: usize, segment_size: u32) -> Option<u64> {
    let body = stored_len.checked_sub(header_len as u64)?;
    let tag = TAG_LEN as u64;
    let stride = u64::from(segment_size) + tag;
    // Every segment ends in a tag; the final one may be empty but is never shorter than that.
    if body % stride < tag {
        return None;
    }
    let plaintext = body - tag * (body / stride + 1);
    (run_ciphertext_len(plaintext, segment_size) == body).then_some(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{DekContext, KeyId};
    use crate::format::{
        DEFAULT_SEGMENT_SIZE, Metadata, ObjectCipher, PartAttempt, PartInfo,
        new_object_with_metadata,
    };
    use crate::secret::Kek;

    fn kek() -> Kek {
        Kek::from_bytes([7; 32])
    }

    /// A new object of `layout`: its cipher and header.
    fn object(layout: Layout, metadata: &Metadata) -> (ObjectCipher, Vec<u8>) {
        let (bucket, object) = ("b", "o");
        let key = KeyId::new("acme", 1).unwrap();
        let context = DekContext {
            key: &key,
            bucket,
            object,
        };
        new_object_with_metadata(&kek(), &context, layout, metadata).unwrap()
    }

    /// Stored bytes of a single-PUT object of `len` plaintext bytes, as the encryptor writes it.
    fn single(len: usize, metadata: &Metadata) -> Vec<u8> {
        let (cipher, mut stored) = object(Layout::Single, metadata);
        let mut encryptor = cipher.encryptor(0);
        encryptor.push(&vec![0x5a; len], &mut stored).unwrap();
        encryptor.finish(&mut stored).unwrap();
        stored
    }

    fn known(stored: &[u8]) -> u64 {
        match inspect(stored, stored.len() as u64)
            .unwrap()
            .plaintext_len()
            .unwrap()
        {
            PlaintextLen::Known(len) => len,
            other => panic!("a single object needs no footer: {other:?}"),
        }
    }

    #[test]
    fn single_put_sizes_are_told_by_the_header_and_stored_length() {
        let segment = DEFAULT_SEGMENT_SIZE as usize;
        for len in [0, 1, segment - 1, segment, segment + 1, 3 * segment + 7] {
            assert_eq!(known(&single(len, &Metadata::new())) as usize, len, "{len}");
        }
    }

    #[test]
    fn a_v2_header_with_metadata_is_measured_whole() {
        let mut metadata = Metadata::new();
        metadata.insert("content-type", "text/plain");
        let stored = single(10, &metadata);
        let inspection = inspect(&stored, stored.len() as u64).unwrap();
        assert_eq!(inspection.header_len, header_len_hint(&stored).unwrap());
        assert_eq!(inspection.layout, Layout::Single);
        assert_eq!(inspection.segment_size, DEFAULT_SEGMENT_SIZE);
        assert_eq!(known(&stored), 10);
    }

    #[test]
    fn a_v3_header_with_its_object_id_and_block_is_measured_whole() {
        use crate::crypto::oprf::ObjectId;
        let key = KeyId::new("acme", 1).unwrap();
        let context = DekContext {
            key: &key,
            bucket: "b",
            object: "o",
        };
        for metadata in [Metadata::new(), {
            let mut m = Metadata::new();
            m.insert("content-type", "text/plain");
            m
        }] {
            let (cipher, mut stored) = crate::format::new_object_v3(
                &kek(),
                &context,
                ObjectId([3; 32]),
                Layout::Single,
                &metadata,
            )
            .unwrap();
            let mut encryptor = cipher.encryptor(0);
            encryptor.push(&[1; 70_000], &mut stored).unwrap();
            encryptor.finish(&mut stored).unwrap();
            let inspection = inspect(&stored, stored.len() as u64).unwrap();
            // 148 + T + M, M = 16 + the encoding (2 bytes for the empty set).
            let m = 16 + metadata.encoded_len();
            assert_eq!(inspection.header_len, 148 + 4 + m);
            assert_eq!(inspection.header_len, cipher.header_len());
            assert_eq!(known(&stored), 70_000);
        }
    }

    #[test]
    fn a_multipart_object_is_measured_through_its_footer() {
        let (cipher, mut stored) = object(Layout::MultipartKeyed, &Metadata::new());
        let lengths = [70_000usize, 5];
        let mut parts = Vec::new();
        let mut attempts = Vec::new();
        for (i, len) in lengths.iter().enumerate() {
            let number = u32::try_from(i + 1).unwrap();
            let attempt = PartAttempt::random().unwrap();
            let mut encryptor = cipher.part_encryptor(number, &attempt).unwrap();
            encryptor.push(&vec![1; *len], &mut stored).unwrap();
            encryptor.finish(&mut stored).unwrap();
            parts.push(PartInfo {
                part_number: number,
                plaintext_len: *len as u64,
            });
            attempts.push(attempt);
        }
        stored.extend(cipher.footer_with_attempts(&parts, &attempts).unwrap());
        let stored_len = stored.len() as u64;

        let inspection = inspect(&stored, stored_len).unwrap();
        assert_eq!(inspection.layout, Layout::MultipartKeyed);
        let PlaintextLen::NeedsFooter { tail } = inspection.plaintext_len().unwrap() else {
            panic!("a multipart object needs its footer");
        };
        let at = |r: Range<u64>| &stored[r.start as usize..r.end as usize];
        let footer = inspection.footer_range(at(tail)).unwrap();
        assert_eq!(inspection.with_footer(at(footer)).unwrap(), 70_005);
    }

    #[test]
    fn what_is_not_an_object_is_refused() {
        assert!(inspect(b"not a treuhand object", 21).is_err());
        let stored = single(1, &Metadata::new());
        // Shorter than its own header.
        assert!(inspect(&stored, 10).is_err());
        // A stored length no run has.
        let header_len = header_len_hint(&stored).unwrap();
        assert_eq!(
            single_plaintext_len(header_len as u64 + 3, header_len, 1 << 16),
            None
        );
        assert_eq!(single_plaintext_len(3, header_len, 1 << 16), None);
    }
}
