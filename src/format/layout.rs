//! Run and segment arithmetic: ciphertext length from plaintext length and back, the plaintext
//! → ciphertext range map, and the multipart footer.
//!
//! A *run* is one STREAM: segments 0..n, each followed by its 16-byte tag. Every segment but the
//! last holds exactly S plaintext bytes; the last holds 0..S-1 bytes (it is empty when P is a
//! multiple of S). So a run of P plaintext bytes has n = floor(P / S) + 1 segments and
//! P + 16·n ciphertext bytes, and a full segment is never the last one: the encryptor can seal
//! every full segment at once, without holding it back to learn whether more input follows.

use std::ops::Range;

use crate::crypto::aead::TAG_LEN;
use crate::crypto::envelope::{MAC_LEN, PART_ATTEMPT_LEN};

// Re-exported where it was public before `cipher.rs` existed.
pub use super::cipher::PartAttempt;
use super::header::{Layout, ObjectCipher};
use super::{Error, fail};

const FOOTER_MAGIC: &[u8; 4] = b"TRFT";
/// Footer magic of multipart layout 2 (per-attempt part keys, docs/format.md §7).
const FOOTER_MAGIC_KEYED: &[u8; 4] = b"TRF2";
const FOOTER_MAC_LABEL: &[u8] = b"treuhand v1 footer";
const FOOTER_MAC_LABEL_KEYED: &[u8] = b"treuhand mp2 footer";
/// Bytes at the very end of a multipart object that hold the footer length.
pub const FOOTER_TAIL_LEN: usize = 4;
const FOOTER_ENTRY_LEN: usize = 4 + 8;
/// A layout 2 entry also names the part's attempt.
const FOOTER_ENTRY_LEN_KEYED: usize = FOOTER_ENTRY_LEN + PART_ATTEMPT_LEN;
/// S3 allows part numbers 1..=10000.
pub const MAX_PARTS: usize = 10_000;
const MIN_FOOTER_LEN: usize = 4 + 4 + FOOTER_ENTRY_LEN + MAC_LEN + FOOTER_TAIL_LEN;
const MAX_FOOTER_LEN: usize =
    4 + 4 + MAX_PARTS * FOOTER_ENTRY_LEN_KEYED + MAC_LEN + FOOTER_TAIL_LEN;

/// One part of a completed multipart object, as listed in its footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartInfo {
    /// The S3 part number (also the run number that keys its nonces).
    pub part_number: u32,
    /// The part's plaintext length.
    pub plaintext_len: u64,
}

/// Number of segments of a run with `plaintext_len` bytes.
fn segment_count(plaintext_len: u64, segment_size: u64) -> u64 {
    plaintext_len / segment_size + 1
}

/// Ciphertext length of a run with `plaintext_len` plaintext bytes.
pub fn run_ciphertext_len(plaintext_len: u64, segment_size: u32) -> u64 {
    plaintext_len + TAG_LEN as u64 * segment_count(plaintext_len, u64::from(segment_size))
}

/// [`run_ciphertext_len`] for lengths read from storage (a footer): `None` where the ciphertext
/// length would not fit in a u64, instead of overflowing.
pub(crate) fn checked_run_ciphertext_len(plaintext_len: u64, segment_size: u32) -> Option<u64> {
    let segments = segment_count(plaintext_len, u64::from(segment_size));
    (TAG_LEN as u64)
        .checked_mul(segments)?
        .checked_add(plaintext_len)
}

/// Plaintext length of a run of `ciphertext_len` bytes, or `None` if no run has that length
/// (the final segment would be shorter than its tag).
fn run_plaintext_len(ciphertext_len: u64, segment_size: u32) -> Option<u64> {
    let stride = u64::from(segment_size) + TAG_LEN as u64;
    let final_segment = ciphertext_len % stride;
    if final_segment < TAG_LEN as u64 {
        return None;
    }
    let segments = ciphertext_len / stride + 1;
    let plaintext = ciphertext_len - TAG_LEN as u64 * segments;
    debug_assert_eq!(run_ciphertext_len(plaintext, segment_size), ciphertext_len);
    Some(plaintext)
}

/// The footer length stored in the last [`FOOTER_TAIL_LEN`] bytes of a multipart object.
///
/// # Errors
/// [`Error::DecryptionFailed`] if it is out of the possible range.
pub fn footer_len_from_tail(tail: &[u8]) -> Result<usize, Error> {
    let bytes: [u8; 4] = tail.try_into().map_err(|_| fail("footer tail length"))?;
    let len = u32::from_be_bytes(bytes) as usize;
    if !(MIN_FOOTER_LEN..=MAX_FOOTER_LEN).contains(&len) {
        return Err(fail("footer length out of range"));
    }
    Ok(len)
}

/// The plaintext length a multipart footer (layout 1 or 2, told apart by its magic) states,
/// from its structure alone; `None` if `footer` is not one. Unauthenticated: for display values
/// (listings, which have no key) only; GET and HEAD verify the footer's MAC.
pub fn footer_plaintext_len_hint(footer: &[u8]) -> Option<u64> {
    let entry_len = match footer.get(..4)? {
        m if m == FOOTER_MAGIC => FOOTER_ENTRY_LEN,
        m if m == FOOTER_MAGIC_KEYED => FOOTER_ENTRY_LEN_KEYED,
        _ => return None,
    };
    let count = u32::from_be_bytes(footer.get(4..8)?.try_into().ok()?) as usize;
    let entries = footer.get(8..8 + count.checked_mul(entry_len)?)?;
    entries.chunks_exact(entry_len).try_fold(0u64, |total, e| {
        let len = u64::from_be_bytes(e.get(4..12)?.try_into().ok()?);
        Some(total.saturating_add(len))
    })
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub(crate) number: u32,
    pub(crate) plaintext_len: u64,
    /// Absolute ciphertext offset of the run within the stored object.
    pub(crate) ciphertext_offset: u64,
    /// Plaintext offset of the run within the object's plaintext.
    pub(crate) plaintext_offset: u64,
    /// Layout 2: the attempt whose key encrypted the run.
    pub(crate) attempt: Option<PartAttempt>,
}

/// Where every run of an object lies. Made by [`ObjectCipher::single_layout`] or
/// [`ObjectCipher::multipart_layout`]; maps plaintext ranges to ciphertext ranges and makes
/// decryptors.
#[derive(Debug)]
pub struct ObjectLayout<'a> {
    cipher: &'a ObjectCipher,
    runs: Vec<Run>,
    plaintext_len: u64,
}

/// The layout of a single-run object: the whole body after the header is run 0.
fn single(cipher: &ObjectCipher, total_len: u64) -> Result<ObjectLayout<'_>, Error> {
    let header_len = cipher.header_len() as u64;
    let body = total_len
        .checked_sub(header_len)
        .ok_or_else(|| fail("object shorter than header"))?;
    let plaintext_len = run_plaintext_len(body, cipher.header().segment_size)
        .ok_or_else(|| fail("impossible body length"))?;
    let run = Run {
        number: 0,
        plaintext_len,
        ciphertext_offset: header_len,
        plaintext_offset: 0,
        attempt: None,
    };
    Ok(ObjectLayout {
        cipher,
        runs: vec![run],
        plaintext_len,
    })
}

fn check_parts(parts: &[PartInfo]) -> Result<(), Error> {
    if parts.is_empty() || parts.len() > MAX_PARTS {
        return Err(Error::InvalidParts(
            "a multipart object needs 1 to 10000 parts",
        ));
    }
    if parts
        .iter()
        .any(|p| p.part_number == 0 || p.part_number as usize > MAX_PARTS)
    {
        return Err(Error::InvalidParts("part numbers must be 1 to 10000"));
    }
    if parts
        .windows(2)
        .any(|w| w[0].part_number >= w[1].part_number)
    {
        return Err(Error::InvalidParts(
            "part numbers must be strictly ascending",
        ));
    }
    Ok(())
}

fn footer_mac_input(keyed: bool, body: &[u8]) -> Vec<u8> {
    let label = if keyed {
        FOOTER_MAC_LABEL_KEYED
    } else {
        FOOTER_MAC_LABEL
    };
    [label, body].concat()
}

/// Encodes a footer: layout 1 when `attempts` is `None`, layout 2 (one attempt per part, in
/// the same order) otherwise.
fn encode_footer(
    cipher: &ObjectCipher,
    parts: &[PartInfo],
    attempts: Option<&[PartAttempt]>,
) -> Result<Vec<u8>, Error> {
    check_parts(parts)?;
    if attempts.is_some_and(|a| a.len() != parts.len()) {
        return Err(Error::Misuse("one attempt per part"));
    }
    let (magic, entry_len) = match attempts {
        None => (FOOTER_MAGIC, FOOTER_ENTRY_LEN),
        Some(_) => (FOOTER_MAGIC_KEYED, FOOTER_ENTRY_LEN_KEYED),
    };
    let total = 8 + parts.len() * entry_len + MAC_LEN + FOOTER_TAIL_LEN;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(magic);
    out.extend_from_slice(&(parts.len() as u32).to_be_bytes());
    for (i, part) in parts.iter().enumerate() {
        out.extend_from_slice(&part.part_number.to_be_bytes());
        out.extend_from_slice(&part.plaintext_len.to_be_bytes());
        if let Some(attempt) = attempts.and_then(|a| a.get(i)) {
            out.extend_from_slice(&attempt.0);
        }
    }
    // The stated total length is covered by the MAC too.
    let mut mac_input = footer_mac_input(attempts.is_some(), &out);
    mac_input.extend_from_slice(&(total as u32).to_be_bytes());
    let mac = cipher.keys().mac(&mac_input);
    out.extend_from_slice(&mac);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    Ok(out)
}

/// The layout of a multipart object; `keyed` selects layout 2 (from the authenticated header).
fn multipart<'a>(
    cipher: &'a ObjectCipher,
    footer: &[u8],
    total_len: u64,
    keyed: bool,
) -> Result<ObjectLayout<'a>, Error> {
    let (magic, entry_len) = if keyed {
        (FOOTER_MAGIC_KEYED, FOOTER_ENTRY_LEN_KEYED)
    } else {
        (FOOTER_MAGIC, FOOTER_ENTRY_LEN)
    };
    let tail = footer
        .len()
        .checked_sub(FOOTER_TAIL_LEN)
        .ok_or_else(|| fail("footer too short"))?;
    let stated = footer_len_from_tail(&footer[tail..])?;
    if stated != footer.len() {
        return Err(fail("footer length mismatch"));
    }
    let mac_at = tail
        .checked_sub(MAC_LEN)
        .ok_or_else(|| fail("footer too short"))?;
    let body = &footer[..mac_at];
    if body.len() < 8 || &body[..4] != magic {
        return Err(fail("footer magic"));
    }
    let mut mac_input = footer_mac_input(keyed, body);
    mac_input.extend_from_slice(&footer[tail..]);
    cipher
        .keys()
        .verify_mac(&mac_input, &footer[mac_at..tail])
        .map_err(|_| fail("footer mac"))?;
    let count = u32::from_be_bytes([body[4], body[5], body[6], body[7]]) as usize;
    if Some(body.len()) != count.checked_mul(entry_len).and_then(|n| n.checked_add(8)) {
        return Err(fail("footer entry count"));
    }
    let entries: Vec<(PartInfo, Option<PartAttempt>)> = body[8..]
        .chunks_exact(entry_len)
        .map(|e| {
            let info = PartInfo {
                part_number: u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
                plaintext_len: u64::from_be_bytes([
                    e[4], e[5], e[6], e[7], e[8], e[9], e[10], e[11],
                ]),
            };
            let attempt = e
                .get(FOOTER_ENTRY_LEN..)
                .and_then(|a| <[u8; PART_ATTEMPT_LEN]>::try_from(a).ok())
                .map(PartAttempt);
            (info, attempt)
        })
        .collect();
    let parts: Vec<PartInfo> = entries.iter().map(|(p, _)| *p).collect();
    check_parts(&parts).map_err(|_| fail("footer part list"))?;
    let segment_size = cipher.header().segment_size;
    let mut ciphertext_offset = cipher.header_len() as u64;
    let mut plaintext_offset = 0u64;
    let mut runs = Vec::with_capacity(parts.len());
    for (part, attempt) in entries {
        runs.push(Run {
            number: part.part_number,
            plaintext_len: part.plaintext_len,
            ciphertext_offset,
            plaintext_offset,
            attempt,
        });
        // Footer lengths are authenticated but still checked: a u64 near the top would make the
        // run length overflow (found by fuzzing, docs/fuzzing.md).
        ciphertext_offset = checked_run_ciphertext_len(part.plaintext_len, segment_size)
            .and_then(|run| ciphertext_offset.checked_add(run))
            .ok_or_else(|| fail("footer lengths overflow"))?;
        plaintext_offset = plaintext_offset
            .checked_add(part.plaintext_len)
            .ok_or_else(|| fail("footer lengths overflow"))?;
    }
    if ciphertext_offset.checked_add(footer.len() as u64) != Some(total_len) {
        return Err(fail("multipart length mismatch"));
    }
    Ok(ObjectLayout {
        cipher,
        runs,
        plaintext_len: plaintext_offset,
    })
}

/// One segment to decrypt, with the part of its plaintext to emit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentPlan {
    pub(crate) run: u32,
    /// Layout 2: the attempt whose key encrypted the run.
    pub(crate) attempt: Option<PartAttempt>,
    pub(crate) index: u32,
    pub(crate) plaintext_len: usize,
    pub(crate) last: bool,
    /// Emit plaintext bytes `emit` of this segment.
    pub(crate) emit: (usize, usize),
}

/// Walks the segments covering a plaintext range, lazily, so a 10 GiB read needs no plan in
/// memory beyond the run table.
#[derive(Debug, Clone)]
pub(crate) struct SegmentCursor {
    runs: Vec<Run>,
    segment_size: u64,
    /// Current run index and segment index within it.
    run: usize,
    segment: u64,
    /// Requested plaintext window.
    window: Range<u64>,
    /// Segments still to yield.
    remaining: u64,
}

impl Iterator for SegmentCursor {
    type Item = SegmentPlan;

    fn next(&mut self) -> Option<SegmentPlan> {
        if self.remaining == 0 {
            return None;
        }
        let run = *self.runs.get(self.run)?;
        let count = segment_count(run.plaintext_len, self.segment_size);
        let start_in_run = self.segment * self.segment_size;
        let len = (run.plaintext_len - start_in_run).min(self.segment_size);
        let abs_start = run.plaintext_offset + start_in_run;
        let lo = self.window.start.clamp(abs_start, abs_start + len) - abs_start;
        let hi = self.window.end.clamp(abs_start, abs_start + len) - abs_start;
        let plan = SegmentPlan {
            run: run.number,
            attempt: run.attempt,
            index: self.segment as u32,
            plaintext_len: len as usize,
            last: self.segment + 1 == count,
            emit: (lo as usize, hi as usize),
        };
        self.remaining -= 1;
        if self.segment + 1 == count {
            self.run += 1;
            self.segment = 0;
        } else {
            self.segment += 1;
        }
        Some(plan)
    }
}

impl<'a> ObjectLayout<'a> {
    /// The object's plaintext length.
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// The plaintext range of each run, in order: the whole object for a single-run object,
    /// one per part (in part order) for a multipart object. GetObject's `partNumber=N` reads
    /// the N-th.
    pub fn part_ranges(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        // `multipart` checked that these sums do not overflow.
        self.runs
            .iter()
            .map(|r| r.plaintext_offset..r.plaintext_offset + r.plaintext_len)
    }

    /// The (run index, segment index) holding plaintext byte `pos` (`pos < plaintext_len`).
    fn locate(&self, pos: u64) -> (usize, u64) {
        // First run whose end lies beyond pos; empty runs are skipped naturally.
        let run = self
            .runs
            .partition_point(|r| r.plaintext_offset + r.plaintext_len <= pos);
        let run = run.min(self.runs.len() - 1);
        let seg =
            (pos - self.runs[run].plaintext_offset) / u64::from(self.cipher.header().segment_size);
        (run, seg)
    }

    fn segment_ciphertext_start(&self, run: usize, segment: u64) -> u64 {
        let stride = u64::from(self.cipher.header().segment_size) + TAG_LEN as u64;
        self.runs[run].ciphertext_offset + segment * stride
    }

    fn segment_ciphertext_end(&self, run: usize, segment: u64) -> u64 {
        let r = &self.runs[run];
        let size = u64::from(self.cipher.header().segment_size);
        let start_in_run = segment * size;
        let len = (r.plaintext_len - start_in_run).min(size);
        self.segment_ciphertext_start(run, segment) + len + TAG_LEN as u64
    }

    /// The object's cipher state.
    pub(super) fn cipher(&self) -> &'a ObjectCipher {
        self.cipher
    }

    /// Maps a plaintext range to the ciphertext byte range to fetch and the segments it covers.
    pub(super) fn plan(&self, range: &Range<u64>) -> Result<(Range<u64>, SegmentCursor), Error> {
        if range.start > range.end || range.end > self.plaintext_len {
            return Err(Error::InvalidRange {
                plaintext_len: self.plaintext_len,
            });
        }
        let size = u64::from(self.cipher.header().segment_size);
        let cursor = |run: usize, segment: u64, remaining: u64| SegmentCursor {
            runs: self.runs.clone(),
            segment_size: size,
            run,
            segment,
            window: range.clone(),
            remaining,
        };
        if range.start == range.end {
            if self.plaintext_len == 0 {
                // Reading an empty object still authenticates every (empty) segment.
                let first = self.runs[0].ciphertext_offset;
                let last = self.runs.len() - 1;
                let end = self.segment_ciphertext_end(last, 0);
                return Ok((first..end, cursor(0, 0, self.runs.len() as u64)));
            }
            return Ok((0..0, cursor(0, 0, 0)));
        }
        let (first_run, first_seg) = self.locate(range.start);
        let (mut last_run, mut last_seg) = self.locate(range.end - 1);
        if range.end == self.plaintext_len {
            // A read to the end also authenticates the final segment (and any empty runs after
            // it): its last flag is what proves the object was not truncated.
            last_run = self.runs.len() - 1;
            last_seg = segment_count(self.runs[last_run].plaintext_len, size) - 1;
        }
        // Count the segments between the two positions, including empty runs in between.
        let mut count = 0u64;
        for run in first_run..=last_run {
            let n = segment_count(self.runs[run].plaintext_len, size);
            let from = if run == first_run { first_seg } else { 0 };
            let to = if run == last_run { last_seg } else { n - 1 };
            count += to - from + 1;
        }
        let start = self.segment_ciphertext_start(first_run, first_seg);
        let end = self.segment_ciphertext_end(last_run, last_seg);
        Ok((start..end, cursor(first_run, first_seg, count)))
    }

    /// The ciphertext byte range (absolute offsets in the stored object) that must be fetched
    /// to decrypt plaintext `range`: only the segments it touches.
    ///
    /// # Errors
    /// [`Error::InvalidRange`] if the range exceeds the object.
    pub fn ciphertext_range(&self, range: Range<u64>) -> Result<Range<u64>, Error> {
        Ok(self.plan(&range)?.0)
    }
}

/// The layouts and footers of an object, made from its authenticated header.
impl ObjectCipher {
    /// The layout of a single-run object of `total_len` stored bytes.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`] if the length cannot be a valid object (truncation, trailing
    /// bytes) or the header says multipart.
    pub fn single_layout(&self, total_len: u64) -> Result<ObjectLayout<'_>, Error> {
        if self.header().layout != Layout::Single {
            return Err(fail("single layout requested for multipart object"));
        }
        single(self, total_len)
    }

    /// Encodes the authenticated footer for a completed layout 1 multipart object whose runs
    /// are the given parts, in order.
    ///
    /// # Errors
    /// [`Error::InvalidParts`]; [`Error::Misuse`] for a layout 2 object.
    pub fn footer(&self, parts: &[PartInfo]) -> Result<Vec<u8>, Error> {
        if self.header().layout != Layout::Multipart {
            return Err(Error::Misuse("footer needs a layout 1 multipart object"));
        }
        encode_footer(self, parts, None)
    }

    /// Encodes the authenticated footer for a completed layout 2 multipart object: the given
    /// parts in order, each with the attempt that encrypted it.
    ///
    /// # Errors
    /// [`Error::InvalidParts`]; [`Error::Misuse`] for another layout or a length mismatch.
    pub fn footer_with_attempts(
        &self,
        parts: &[PartInfo],
        attempts: &[PartAttempt],
    ) -> Result<Vec<u8>, Error> {
        if self.header().layout != Layout::MultipartKeyed {
            return Err(Error::Misuse(
                "footer_with_attempts needs a layout 2 multipart object",
            ));
        }
        encode_footer(self, parts, Some(attempts))
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
        let keyed = match self.header().layout {
            Layout::Single => return Err(fail("multipart layout requested for single object")),
            Layout::Multipart => false,
            Layout::MultipartKeyed => true,
        };
        multipart(self, footer, total_len, keyed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_length_round_trips_and_rejects_impossible_lengths() {
        let s = 1 << 16;
        for p in [0u64, 1, 65535, 65536, 65537, 3 * 65536, 3 * 65536 + 5] {
            let c = run_ciphertext_len(p, s);
            assert_eq!(run_plaintext_len(c, s), Some(p), "p = {p}");
        }
        assert_eq!(
            run_ciphertext_len(65536, s),
            65536 + 32,
            "a full run ends in an empty segment"
        );
        // Shorter than a tag, or a final segment shorter than its tag.
        for c in [0u64, 15, 65552, 65552 + 1, 65552 + 15, 2 * 65552 + 3] {
            assert_eq!(run_plaintext_len(c, s), None, "c = {c}");
        }
    }

    #[test]
    fn multipart_layout_refuses_a_part_length_whose_ciphertext_overflows() {
        use crate::crypto::{DekContext, KeyId};
        use crate::format::header::{Layout, new_object};
        use crate::secret::Kek;
        let key = KeyId::new("acme", 1).unwrap();
        let context = DekContext {
            key: &key,
            bucket: "b",
            object: "o",
        };
        let (cipher, _) =
            new_object(&Kek::from_bytes([7; 32]), &context, Layout::Multipart).unwrap();
        let parts = [PartInfo {
            part_number: 1,
            plaintext_len: u64::MAX - 10,
        }];
        let footer = cipher.footer(&parts).unwrap();
        assert!(matches!(
            cipher.multipart_layout(&footer, u64::MAX),
            Err(Error::DecryptionFailed)
        ));
        assert_eq!(checked_run_ciphertext_len(u64::MAX - 10, s16()), None);
        assert_eq!(checked_run_ciphertext_len(0, s16()), Some(16));
    }

    fn s16() -> u32 {
        1 << 16
    }
}
