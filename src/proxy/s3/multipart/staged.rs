//! What an upload stages, as named and stored bytes: the upload id, the staged header (object
//! header and key), one staged part attempt, the choice of attempts Complete assembles, and the
//! marker a completed upload leaves behind. Pure: no I/O.

use s3s::dto;

use crate::format;
use crate::proxy::error::ProxyError;
use crate::proxy::s3::request::random_hex;
use crate::storage;

/// Part numbers S3 accepts.
pub(super) const PART_NUMBERS: std::ops::RangeInclusive<u32> = 1..=10_000;

/// A part number a client sent, checked against [`PART_NUMBERS`].
///
/// # Errors
/// [`ProxyError::InvalidArgument`] with S3's message, as S3 answers UploadPart and
/// UploadPartCopy for part 0 or 10001.
pub(super) fn part_number(requested: i32) -> Result<u32, ProxyError> {
    u32::try_from(requested)
        .ok()
        .filter(|p| PART_NUMBERS.contains(p))
        .ok_or_else(|| {
            ProxyError::InvalidArgument(
                "Part number must be an integer between 1 and 10000, inclusive".into(),
            )
        })
}

/// A multipart upload id: 16 random bytes in hex. Anything else names no upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadId(String);

impl UploadId {
    /// A fresh id.
    ///
    /// # Errors
    /// [`ProxyError::Crypto`] if the system RNG fails.
    pub fn random() -> Result<Self, ProxyError> {
        Ok(Self(random_hex(16)?))
    }

    /// An id a client sent.
    ///
    /// # Errors
    /// [`ProxyError::NoSuchUpload`] for anything that is not 32 hex digits, so a client's id
    /// can never step outside its upload directory.
    pub fn parse(id: &str) -> Result<Self, ProxyError> {
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ProxyError::NoSuchUpload);
        }
        Ok(Self(id.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as owned text.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// The staged header of an upload: the object header, and the object key, so a part can never
/// be completed into another key. Stored as `len(header) (u32 BE) ‖ header ‖ key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedHeader {
    header: Vec<u8>,
    key: String,
}

impl StagedHeader {
    /// The staged header of an upload of `key`.
    pub fn new(header: Vec<u8>, key: &str) -> Self {
        Self {
            header,
            key: key.to_owned(),
        }
    }

    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut staged = Vec::with_capacity(self.header.len() + self.key.len() + 4);
        staged.extend_from_slice(&(self.header.len() as u32).to_be_bytes());
        staged.extend_from_slice(&self.header);
        staged.extend_from_slice(self.key.as_bytes());
        staged
    }

    /// The object header of stored bytes staged for `key`.
    ///
    /// # Errors
    /// [`ProxyError::NoSuchUpload`] if the bytes are not a staged header, or not one for `key`.
    pub fn decode(staged: &[u8], key: &str) -> Result<Self, ProxyError> {
        let staged = Self::decode_any(staged)?;
        if staged.key != key {
            return Err(ProxyError::NoSuchUpload);
        }
        Ok(staged)
    }

    /// Stored bytes of a staged header for whatever key it names (ListMultipartUploads).
    ///
    /// # Errors
    /// [`ProxyError::NoSuchUpload`] if the bytes are not a staged header.
    pub fn decode_any(staged: &[u8]) -> Result<Self, ProxyError> {
        let (len, rest) = staged.split_at_checked(4).ok_or(ProxyError::NoSuchUpload)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (header, key) = rest.split_at_checked(len).ok_or(ProxyError::NoSuchUpload)?;
        let key = std::str::from_utf8(key).map_err(|_| ProxyError::NoSuchUpload)?;
        Ok(Self::new(header.to_vec(), key))
    }

    /// The object header.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// The object key the upload completes into.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// What a completed upload leaves behind so that a repeated CompleteMultipartUpload answers
/// as the first did (S3 does): the object's ETag and key. Public facts only (the ETag is the
/// MD5 of the stored header, which listings show); never key material. Stored as
/// `treuhand-completed-v1\n<etag>\n<key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedMarker {
    etag: String,
    key: String,
}

const COMPLETED_MAGIC: &str = "treuhand-completed-v1\n";

impl CompletedMarker {
    /// The marker of an upload of `key` completed into an object with ETag `etag` (bare hex).
    pub fn new(etag: &str, key: &str) -> Self {
        Self {
            etag: etag.to_owned(),
            key: key.to_owned(),
        }
    }

    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        format!("{COMPLETED_MAGIC}{}\n{}", self.etag, self.key).into_bytes()
    }

    /// The marker in stored bytes, if they are one for `key`.
    ///
    /// # Errors
    /// [`ProxyError::NoSuchUpload`] for bytes that are not a marker, or one of another key
    /// (the upload id was completed into another key: it names no upload of this one).
    pub fn decode(stored: &[u8], key: &str) -> Result<Self, ProxyError> {
        let text = std::str::from_utf8(stored).map_err(|_| ProxyError::NoSuchUpload)?;
        let rest = text
            .strip_prefix(COMPLETED_MAGIC)
            .ok_or(ProxyError::NoSuchUpload)?;
        let (etag, stored_key) = rest.split_once('\n').ok_or(ProxyError::NoSuchUpload)?;
        if stored_key != key || etag.is_empty() || !etag.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ProxyError::NoSuchUpload);
        }
        Ok(Self::new(etag, key))
    }

    /// The completed object's ETag (bare hex).
    pub fn etag(&self) -> &str {
        &self.etag
    }
}

/// One staged attempt of a multipart part: `p<number>-<plaintext len>-<etag>-<attempt>`
/// (layout 2), or `p<number>-<plaintext len>-<etag>` for an upload begun in layout 1.
#[derive(Debug, Clone)]
pub(super) struct StagedPart {
    pub(super) number: u32,
    pub(super) plaintext_len: u64,
    pub(super) etag: String,
    /// The attempt whose key encrypted the run (layout 2).
    pub(super) attempt: Option<format::PartAttempt>,
    pub(super) path: String,
    pub(super) meta: storage::Meta,
}

impl StagedPart {
    pub(super) fn name(
        number: u32,
        plaintext_len: u64,
        etag: &str,
        attempt: Option<&format::PartAttempt>,
    ) -> String {
        match attempt {
            Some(a) => format!("p{number:05}-{plaintext_len}-{etag}-{}", a.to_hex()),
            None => format!("p{number:05}-{plaintext_len}-{etag}"),
        }
    }

    pub(super) fn parse(name: &str, path: &str, meta: storage::Meta) -> Option<Self> {
        let rest = name.strip_prefix('p')?;
        // ETags and attempt ids are hex, so '-' only separates fields.
        let mut it = rest.splitn(4, '-');
        let number = it.next()?.parse().ok()?;
        let plaintext_len = it.next()?.parse().ok()?;
        let etag = it.next()?.to_owned();
        let attempt = match it.next() {
            Some(a) => Some(format::PartAttempt::from_hex(a)?),
            None => None,
        };
        Some(Self {
            number,
            plaintext_len,
            etag,
            attempt,
            path: path.to_owned(),
            meta,
        })
    }
}

/// The newest staged attempt of every part number (normally there is one: an upload replaces
/// the earlier attempts, but two concurrent uploads of one part may leave both for a moment).
/// `staged` is sorted by part number.
pub(super) fn latest_attempts(staged: &[StagedPart]) -> Vec<&StagedPart> {
    let mut out: Vec<&StagedPart> = Vec::with_capacity(staged.len());
    for part in staged {
        match out.last_mut() {
            Some(last) if last.number == part.number => {
                if part.meta.last_modified >= last.meta.last_modified {
                    *last = part;
                }
            }
            _ => out.push(part),
        }
    }
    out
}

/// The staged attempts CompleteMultipartUpload assembles, in the order the client lists them:
/// for each part, the newest attempt with the ETag the client names. Checks S3's limits:
/// at least one part, ascending part numbers, and every part but the last at least
/// `min_part_size` bytes.
pub(super) fn choose_parts<'a>(
    staged: &'a [StagedPart],
    requested: &[dto::CompletedPart],
    min_part_size: u64,
) -> Result<Vec<&'a StagedPart>, ProxyError> {
    if requested.is_empty() {
        // S3 answers MalformedXML: its schema requires at least one Part.
        return Err(ProxyError::MalformedXml(
            "a multipart upload needs at least one part".into(),
        ));
    }
    let mut chosen: Vec<&StagedPart> = Vec::with_capacity(requested.len());
    let mut previous = 0u32;
    for part in requested {
        let number = part
            .part_number
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        if number <= previous {
            return Err(ProxyError::InvalidPartOrder);
        }
        previous = number;
        let mut attempts = staged.iter().filter(|p| p.number == number).peekable();
        if attempts.peek().is_none() {
            return Err(ProxyError::InvalidPart(format!(
                "part {number} was not uploaded"
            )));
        }
        // Identical bytes have one ETag, so the first answer's ETag names the latest attempt
        // with those bytes.
        let found = attempts
            .filter(|p| part.e_tag.as_ref().is_none_or(|e| e.value() == p.etag))
            .max_by_key(|p| p.meta.last_modified)
            .ok_or_else(|| {
                ProxyError::InvalidPart(format!("part {number} has a different ETag"))
            })?;
        chosen.push(found);
    }
    let all_but_last = &chosen[..chosen.len() - 1];
    if let Some(small) = all_but_last
        .iter()
        .find(|p| p.plaintext_len < min_part_size)
    {
        return Err(ProxyError::EntityTooSmall {
            part: small.number,
            size: small.plaintext_len,
            min: min_part_size,
        });
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests
    use super::*;

    #[test]
    fn part_numbers_outside_one_to_ten_thousand_are_invalid_arguments() {
        assert_eq!(part_number(1).unwrap(), 1);
        assert_eq!(part_number(10_000).unwrap(), 10_000);
        for bad in [0, -1, 10_001, i32::MAX] {
            assert!(matches!(
                part_number(bad),
                Err(ProxyError::InvalidArgument(m)) if m.contains("between 1 and 10000")
            ));
        }
    }

    #[test]
    fn a_completed_marker_names_its_key_only() {
        let marker = CompletedMarker::new("0123abcd", "dir/a key\nwith newline");
        let stored = marker.encode();
        assert_eq!(
            CompletedMarker::decode(&stored, "dir/a key\nwith newline").unwrap(),
            marker
        );
        assert!(CompletedMarker::decode(&stored, "dir/other").is_err());
        assert!(CompletedMarker::decode(b"garbage", "dir/a key").is_err());
    }

    #[test]
    fn a_staged_header_is_read_back_with_its_key() {
        let staged = StagedHeader::new(vec![1, 2, 3], "k/é").encode();
        let any = StagedHeader::decode_any(&staged).unwrap();
        assert_eq!((any.header(), any.key()), (&[1u8, 2, 3][..], "k/é"));
        assert!(StagedHeader::decode(&staged, "other").is_err());
        assert!(StagedHeader::decode_any(&[0, 0, 0, 9, 1]).is_err());
    }

    fn staged(number: u32, len: u64, etag: &str) -> StagedPart {
        StagedPart {
            number,
            plaintext_len: len,
            etag: etag.into(),
            attempt: None,
            path: format!("p{number}"),
            meta: storage::Meta {
                size: len,
                last_modified: std::time::SystemTime::UNIX_EPOCH,
            },
        }
    }

    fn requested(parts: &[(i32, &str)]) -> Vec<dto::CompletedPart> {
        parts
            .iter()
            .map(|(n, e)| dto::CompletedPart {
                part_number: Some(*n),
                e_tag: Some(dto::ETag::Strong((*e).into())),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn every_part_but_the_last_needs_the_minimum_size() {
        let parts = [staged(1, 10, "a"), staged(2, 4, "b"), staged(3, 1, "c")];
        let ok = choose_parts(&parts[..1], &requested(&[(1, "a")]), 10).unwrap();
        assert_eq!(ok.len(), 1);
        let err = choose_parts(&parts, &requested(&[(1, "a"), (2, "b"), (3, "c")]), 10);
        assert!(matches!(
            err,
            Err(ProxyError::EntityTooSmall {
                part: 2,
                size: 4,
                min: 10
            })
        ));
        // A small last part is fine.
        let ok = choose_parts(&parts, &requested(&[(1, "a"), (3, "c")]), 10).unwrap();
        assert_eq!(ok.len(), 2);
    }

    #[test]
    fn parts_out_of_order_and_empty_lists_are_refused() {
        let parts = [staged(1, 10, "a"), staged(2, 10, "b")];
        assert!(matches!(
            choose_parts(&parts, &requested(&[(2, "b"), (1, "a")]), 0),
            Err(ProxyError::InvalidPartOrder)
        ));
        assert!(matches!(
            choose_parts(&parts, &[], 0),
            Err(ProxyError::MalformedXml(_))
        ));
    }
}
