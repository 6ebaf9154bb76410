//! Object metadata (Content-Type and friends, `x-amz-meta-*`) and its deterministic plaintext
//! encoding, which format v2 seals into the header (docs/format.md §6).
//!
//! ```text
//! u16 count ‖ count × (u16 len ‖ name ‖ u16 len ‖ value)     names lower-case, sorted, unique
//! ```
//!
//! The encoding is canonical (one byte string per metadata set) so that equal metadata always
//! seals to an equally long block, and a decoder accepts nothing a writer would not produce.

use std::collections::BTreeMap;

use super::{Error, fail};

/// Longest plaintext encoding of a metadata set, in bytes. S3 itself allows 2 KiB of user
/// metadata; the rest leaves room for the standard headers (Content-Type, Cache-Control, …).
pub const MAX_METADATA: usize = 8192;

/// Name/value pairs stored with an object. Names are lower-cased on insert, so the map is
/// always in the canonical order (sorted, unique) the encoding needs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Metadata(BTreeMap<String, String>);

/// Metadata is confidential like the body (the operator must learn nothing from logs either),
/// so `Debug` shows only how many entries there are.
impl std::fmt::Debug for Metadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Metadata({} entries, [REDACTED])", self.0.len())
    }
}

impl Metadata {
    /// An empty set (objects without metadata are written as format v1).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` (lower-cased, as HTTP header names are case-insensitive) to `value`.
    pub fn insert(&mut self, name: &str, value: &str) {
        self.0.insert(name.to_ascii_lowercase(), value.to_owned());
    }

    /// The value of `name` (lower-case), if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// True if nothing is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// All pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Length of the plaintext encoding.
    pub fn encoded_len(&self) -> usize {
        self.0
            .iter()
            .fold(2usize, |n, (k, v)| n.saturating_add(4 + k.len() + v.len()))
    }

    /// Fails unless the encoding fits in [`MAX_METADATA`]. Callers check this before they do
    /// anything expensive (such as asking the trustees for a key).
    ///
    /// # Errors
    /// [`Error::MetadataTooLarge`].
    pub fn check_size(&self) -> Result<(), Error> {
        let len = self.encoded_len();
        if len > MAX_METADATA {
            return Err(Error::MetadataTooLarge {
                len,
                max: MAX_METADATA,
            });
        }
        Ok(())
    }

    /// The canonical plaintext encoding.
    ///
    /// # Errors
    /// [`Error::MetadataTooLarge`]. Within that bound every count and length fits in a u16.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        self.check_size()?;
        let mut out = Vec::with_capacity(self.encoded_len());
        // check_size bounds the total by MAX_METADATA < 2^16, so these casts cannot truncate.
        out.extend_from_slice(&(self.0.len() as u16).to_be_bytes());
        for (name, value) in &self.0 {
            out.extend_from_slice(&(name.len() as u16).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(value.len() as u16).to_be_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        Ok(out)
    }

    /// Decodes the canonical encoding. Anything else (trailing bytes, upper-case or unsorted or
    /// duplicate names, invalid UTF-8) is rejected, although the bytes were authenticated: a
    /// writer never produces them.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`].
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut rest = bytes;
        let count = take_u16(&mut rest)?;
        let mut map = BTreeMap::new();
        let mut previous: Option<String> = None;
        for _ in 0..count {
            let name = take_str(&mut rest)?;
            let value = take_str(&mut rest)?;
            if name.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(fail("metadata name not lower-case"));
            }
            if previous.as_ref().is_some_and(|p| *p >= name) {
                return Err(fail("metadata names not sorted and unique"));
            }
            previous = Some(name.clone());
            map.insert(name, value);
        }
        if !rest.is_empty() {
            return Err(fail("metadata trailing bytes"));
        }
        Ok(Self(map))
    }
}

fn take_u16(rest: &mut &[u8]) -> Result<u16, Error> {
    let (head, tail) = rest
        .split_first_chunk::<2>()
        .ok_or_else(|| fail("metadata truncated"))?;
    *rest = tail;
    Ok(u16::from_be_bytes(*head))
}

fn take_str(rest: &mut &[u8]) -> Result<String, Error> {
    let len = usize::from(take_u16(rest)?);
    let (bytes, tail) = rest
        .split_at_checked(len)
        .ok_or_else(|| fail("metadata truncated"))?;
    *rest = tail;
    String::from_utf8(bytes.to_vec()).map_err(|_| fail("metadata utf-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_canonical_and_round_trips() {
        let mut m = Metadata::new();
        m.insert("X-Amz-Meta-B", "2");
        m.insert("content-type", "text/plain");
        m.insert("x-amz-meta-a", "ü");
        let bytes = m.encode().unwrap();
        assert_eq!(&bytes[..2], &[0, 3]);
        assert_eq!(&bytes[2..4], &[0, 12]);
        assert_eq!(&bytes[4..16], b"content-type");
        assert_eq!(Metadata::decode(&bytes).unwrap(), m);
        assert_eq!(m.get("x-amz-meta-b"), Some("2"));
        assert_eq!(
            Metadata::decode(&Metadata::new().encode().unwrap()).unwrap(),
            Metadata::new()
        );
    }

    #[test]
    fn decode_rejects_non_canonical_input() {
        let entry = |n: &[u8], v: &[u8]| {
            let mut e = (n.len() as u16).to_be_bytes().to_vec();
            e.extend_from_slice(n);
            e.extend_from_slice(&(v.len() as u16).to_be_bytes());
            e.extend_from_slice(v);
            e
        };
        let with = |entries: &[Vec<u8>]| {
            let mut out = (entries.len() as u16).to_be_bytes().to_vec();
            for e in entries {
                out.extend_from_slice(e);
            }
            out
        };
        let ok = with(&[entry(b"a", b"1"), entry(b"b", b"2")]);
        Metadata::decode(&ok).unwrap();
        for bad in [
            with(&[entry(b"b", b"1"), entry(b"a", b"2")]),
            with(&[entry(b"a", b"1"), entry(b"a", b"2")]),
            with(&[entry(b"A", b"1")]),
            with(&[entry(b"a", &[0xff])]),
            [ok.as_slice(), &[0]].concat(),
            ok[..ok.len() - 1].to_vec(),
            vec![0],
            vec![],
        ] {
            assert!(
                matches!(Metadata::decode(&bad), Err(Error::DecryptionFailed)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn too_large_metadata_is_a_typed_error() {
        let mut m = Metadata::new();
        m.insert("x-amz-meta-big", &"v".repeat(MAX_METADATA));
        assert!(matches!(
            m.encode(),
            Err(Error::MetadataTooLarge {
                max: MAX_METADATA,
                ..
            })
        ));
        let mut fits = Metadata::new();
        // 2 (count) + 2 + 1 + 2 + value = MAX_METADATA exactly.
        fits.insert("a", &"v".repeat(MAX_METADATA - 7));
        assert_eq!(fits.encode().unwrap().len(), MAX_METADATA);
    }
}
