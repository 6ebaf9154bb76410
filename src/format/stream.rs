//! The incremental STREAM encryptor and decryptor, and the calls that make them
//! ([`ObjectCipher::encryptor`], [`ObjectCipher::part_encryptor`], [`ObjectLayout::decryptor`]).
//!
//! Segment nonces come from `cipher::segment_nonce`: run prefix ‖ segment index ‖ last flag.
//!
//! ring seals and opens in place only, so `push` copies each segment into the caller's output
//! buffer and seals or opens it there: one copy per byte, except the head of a segment split
//! across two pushes, which waits in a one-segment buffer (it may not enter the output before
//! it is sealed or authenticated) and is copied twice. That copy is what separates `push` from
//! the in-place calls (`seal_segment_in_place`, `open_in_place`), which copy nothing. Memory is
//! bounded by one segment of buffered input.

use std::ops::Range;

use crate::crypto::aead::{AeadKey, TAG_LEN};

use super::cipher::{NONCE_PREFIX_LEN, PartAttempt, segment_nonce as nonce};
use super::header::{Layout, ObjectCipher};
use super::layout::{ObjectLayout, SegmentCursor, SegmentPlan};
use super::{Error, fail};

/// The encryptors of an object's runs.
impl ObjectCipher {
    /// An encryptor for run `run` under the object's segment key: 0 for single-run objects,
    /// the S3 part number (1..=10000) for parts of a layout 1 multipart object (frozen test
    /// vectors and in-flight uploads begun before layout 2). Layout 2 parts use
    /// [`part_encryptor`](Self::part_encryptor).
    pub fn encryptor(&self, run: u32) -> Encryptor<'_> {
        Encryptor::new(
            self.keys().segment().into(),
            self.run_prefix(run),
            self.header().segment_size as usize,
        )
    }

    /// An encryptor for one upload attempt of part `part` of a layout 2 object: the run is
    /// encrypted under the attempt's own key (docs/format.md §7), so a part uploaded again
    /// never reuses a nonce under a key. Record `attempt` with the staged part: Complete
    /// passes it to [`footer_with_attempts`](Self::footer_with_attempts).
    ///
    /// # Errors
    /// [`Error::Misuse`] if the object is not in layout 2; [`Error::Crypto`].
    pub fn part_encryptor(&self, part: u32, attempt: &PartAttempt) -> Result<Encryptor<'_>, Error> {
        const NOT_KEYED: Error = Error::Misuse("part_encryptor needs a layout 2 object");
        // Only layout 2 objects carry part keys, so run_key cannot fail on the layout here.
        if self.header().layout != Layout::MultipartKeyed {
            return Err(NOT_KEYED);
        }
        let key = self.run_key(part, Some(attempt))?.ok_or(NOT_KEYED)?;
        Ok(Encryptor::new(
            key.into(),
            self.run_prefix(part),
            self.header().segment_size as usize,
        ))
    }
}

impl<'a> ObjectLayout<'a> {
    /// A decryptor for plaintext `range`, and the ciphertext range to feed it (in order).
    ///
    /// # Errors
    /// [`Error::InvalidRange`] if the range exceeds the object.
    pub fn decryptor(&self, range: Range<u64>) -> Result<(Range<u64>, Decryptor<'a>), Error> {
        let (ciphertext, cursor) = self.plan(&range)?;
        Ok((ciphertext, Decryptor::new(self.cipher(), cursor)))
    }
}

/// The segment key of one run: the object's segment key (single objects, layout 1 parts) or
/// the key of one part attempt (layout 2), which the encryptor owns.
#[derive(Debug)]
pub(crate) enum RunKey<'a> {
    Object(&'a AeadKey),
    /// Boxed: ring's key schedule is large, and most encryptors borrow the object's key.
    Attempt(Box<AeadKey>),
}

impl RunKey<'_> {
    fn get(&self) -> &AeadKey {
        match self {
            RunKey::Object(key) => key,
            RunKey::Attempt(key) => key,
        }
    }
}

impl<'a> From<&'a AeadKey> for RunKey<'a> {
    fn from(key: &'a AeadKey) -> Self {
        RunKey::Object(key)
    }
}

impl From<AeadKey> for RunKey<'_> {
    fn from(key: AeadKey) -> Self {
        RunKey::Attempt(Box::new(key))
    }
}

/// Encrypts one run incrementally: [`push`](Self::push) plaintext, then [`finish`](Self::finish).
///
/// Full segments are sealed as soon as they are complete (the final segment is always a partial
/// or empty one, see `layout`), so only a partial segment spanning two pushes is buffered.
#[derive(Debug)]
pub struct Encryptor<'a> {
    key: RunKey<'a>,
    prefix: [u8; NONCE_PREFIX_LEN],
    segment_size: usize,
    pending: Vec<u8>,
    next_index: u32,
    plaintext_len: u64,
}

impl<'a> Encryptor<'a> {
    pub(crate) fn new(
        key: RunKey<'a>,
        prefix: [u8; NONCE_PREFIX_LEN],
        segment_size: usize,
    ) -> Self {
        Self {
            key,
            prefix,
            segment_size,
            pending: Vec::new(),
            next_index: 0,
            plaintext_len: 0,
        }
    }

    /// Seals the segment of plaintext at `out[start..]` in place and appends its tag. On error
    /// `out` is cut back to `start`, so it never holds plaintext.
    fn seal_tail(&mut self, start: usize, last: bool, out: &mut Vec<u8>) -> Result<(), Error> {
        let sealed = self.key.get().seal_in_place(
            nonce(&self.prefix, self.next_index, last),
            &[],
            &mut out[start..],
        );
        match sealed {
            Ok(tag) => out.extend_from_slice(&tag),
            Err(e) => {
                out.truncate(start);
                return Err(e.into());
            }
        }
        self.next_index = self.next_index.checked_add(1).ok_or(Error::TooLarge)?;
        Ok(())
    }

    /// Encrypts `input`, appending every completed segment (ciphertext ‖ tag) to `out`.
    ///
    /// Each byte is copied once into `out` and sealed there (ring seals in place only); `out`
    /// grows at most once per call. Bytes of a segment that is still incomplete when the call
    /// returns are kept inside the encryptor, never in `out`.
    ///
    /// # Errors
    /// [`Error::TooLarge`] beyond 2^32 segments; [`Error::Crypto`] on internal failure.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        self.plaintext_len += input.len() as u64;
        let whole = (self.pending.len() + input.len()) / self.segment_size;
        if whole == 0 {
            self.keep(input);
            return Ok(());
        }
        // One reservation for every segment this call completes: no regrowth (and no copy of
        // `out` by the allocator) between segments, whatever capacity the caller passed.
        out.reserve(whole * (self.segment_size + TAG_LEN));
        if !self.pending.is_empty() {
            // Complete the pending segment inside `out`: the buffered head, then the rest
            // straight from `input`, so the rest is copied once, not via `pending`.
            let take = self.segment_size - self.pending.len();
            let start = out.len();
            out.extend_from_slice(&self.pending);
            out.extend_from_slice(&input[..take]);
            self.pending.clear();
            input = &input[take..];
            self.seal_tail(start, false, out)?;
        }
        // Whole segments go straight from the input to `out`: one copy, then sealed in place.
        while input.len() >= self.segment_size {
            let (segment, rest) = input.split_at(self.segment_size);
            let start = out.len();
            out.extend_from_slice(segment);
            self.seal_tail(start, false, out)?;
            input = rest;
        }
        self.keep(input);
        Ok(())
    }

    /// Buffers the start of a segment that a later `push` or `finish` completes.
    fn keep(&mut self, input: &[u8]) {
        if input.is_empty() {
            return;
        }
        if self.pending.capacity() < self.segment_size {
            self.pending
                .reserve_exact(self.segment_size - self.pending.len());
        }
        self.pending.extend_from_slice(input);
    }

    /// Zero-copy path for callers that own their buffers (the proxy assembles segments from
    /// body frames anyway): seals `segment`, exactly one full segment of plaintext, in place and
    /// returns its tag. The caller stores `segment ‖ tag`. A full segment is never the last one,
    /// so this can be called as soon as the segment is complete.
    ///
    /// # Errors
    /// [`Error::Misuse`] if `segment` is not exactly one segment long or bytes are pending from
    /// [`push`](Self::push); [`Error::TooLarge`].
    pub fn seal_segment_in_place(&mut self, segment: &mut [u8]) -> Result<[u8; TAG_LEN], Error> {
        if segment.len() != self.segment_size || !self.pending.is_empty() {
            return Err(Error::Misuse(
                "seal_segment_in_place needs one whole segment and no pending bytes",
            ));
        }
        let tag = self.key.get().seal_in_place(
            nonce(&self.prefix, self.next_index, false),
            &[],
            segment,
        )?;
        self.next_index = self.next_index.checked_add(1).ok_or(Error::TooLarge)?;
        self.plaintext_len += segment.len() as u64;
        Ok(tag)
    }

    /// Zero-copy counterpart of [`finish`](Self::finish): seals the final segment (shorter than
    /// a segment, possibly empty) in place; returns its tag and the run's plaintext length.
    ///
    /// # Errors
    /// [`Error::Misuse`] if `last` is a whole segment or bytes are pending from `push`.
    pub fn finish_in_place(mut self, last: &mut [u8]) -> Result<([u8; TAG_LEN], u64), Error> {
        if last.len() >= self.segment_size || !self.pending.is_empty() {
            return Err(Error::Misuse(
                "finish_in_place needs a partial segment and no pending bytes",
            ));
        }
        let tag =
            self.key
                .get()
                .seal_in_place(nonce(&self.prefix, self.next_index, true), &[], last)?;
        self.plaintext_len += last.len() as u64;
        Ok((tag, self.plaintext_len))
    }

    /// Seals the final (partial or empty) segment and returns the run's plaintext length.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<u64, Error> {
        out.reserve(self.pending.len() + TAG_LEN);
        let start = out.len();
        out.extend_from_slice(&self.pending);
        self.seal_tail(start, true, out)?;
        Ok(self.plaintext_len)
    }
}

/// Decrypts the ciphertext range chosen by [`ObjectLayout::decryptor`](super::ObjectLayout):
/// [`push`](Self::push) ciphertext in order, get exactly the requested plaintext out, then
/// [`finish`](Self::finish) to confirm nothing is missing.
///
/// No plaintext from a segment is ever appended to `out` unless its tag verified.
#[derive(Debug)]
pub struct Decryptor<'a> {
    cipher: &'a ObjectCipher,
    cursor: SegmentCursor,
    current: Option<SegmentPlan>,
    buffer: Vec<u8>,
    failed: bool,
    /// Layout 2: the key of the run being read (derived once per run).
    run_key: Option<(u32, AeadKey)>,
}

impl<'a> Decryptor<'a> {
    pub(crate) fn new(cipher: &'a ObjectCipher, mut cursor: SegmentCursor) -> Self {
        let current = cursor.next();
        Self {
            cipher,
            cursor,
            current,
            buffer: Vec::new(),
            failed: false,
            run_key: None,
        }
    }

    /// Makes sure `run_key` holds the key of `plan`'s run (layout 2; a no-op otherwise).
    fn prepare_key(&mut self, plan: &SegmentPlan) -> Result<(), Error> {
        if plan.attempt.is_none() || self.run_key.as_ref().is_some_and(|(r, _)| *r == plan.run) {
            return Ok(());
        }
        let key = self
            .cipher
            .run_key(plan.run, plan.attempt.as_ref())?
            .ok_or_else(|| fail("run key"))?;
        self.run_key = Some((plan.run, key));
        Ok(())
    }

    /// The segment key of `plan`'s run, after [`prepare_key`](Self::prepare_key).
    fn key(&self, plan: &SegmentPlan) -> &AeadKey {
        match (&plan.attempt, &self.run_key) {
            (Some(_), Some((_, key))) => key,
            _ => self.cipher.keys().segment(),
        }
    }

    /// Opens one whole segment held in `out[start..]` in place and trims it to the emitted part.
    fn open_at(&mut self, plan: SegmentPlan, out: &mut Vec<u8>, start: usize) -> Result<(), Error> {
        let body_end = start + plan.plaintext_len;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&out[body_end..body_end + TAG_LEN]);
        let prefix = self.cipher.run_prefix(plan.run);
        if self.prepare_key(&plan).is_err() {
            out.truncate(start);
            self.failed = true;
            return Err(fail("run key"));
        }
        let opened = self.key(&plan).open_in_place(
            nonce(&prefix, plan.index, plan.last),
            &[],
            &mut out[start..body_end],
            &tag,
        );
        if opened.is_err() {
            // Drop whatever ring left in the buffer: it is not authenticated.
            out.truncate(start);
            self.failed = true;
            return Err(fail("segment tag"));
        }
        let (lo, hi) = plan.emit;
        out.truncate(start + hi);
        if lo > 0 {
            out.drain(start..start + lo);
        }
        Ok(())
    }

    /// Feeds ciphertext; appends authenticated plaintext of every completed segment to `out`.
    ///
    /// Each segment is copied once into `out` and opened there (ring opens in place only);
    /// `out` grows at most once per call. Ciphertext of a segment that is still incomplete when
    /// the call returns is kept inside the decryptor, never in `out`.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`] on a bad segment, or on bytes beyond the planned range
    /// (trailing data). After an error the decryptor refuses further input.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        if self.failed {
            return Err(Error::DecryptionFailed);
        }
        let available = self.buffer.len() + input.len();
        if self
            .next_segment_len()
            .is_some_and(|need| available >= need)
        {
            // Plaintext is never longer than the ciphertext carrying it, so this bounds what
            // the call appends (over by the tags and an incomplete tail): `out` grows at most
            // once, never segment by segment with the allocator copying it each time.
            out.reserve(available);
        }
        while !input.is_empty() {
            let Some(plan) = self.current else {
                self.failed = true;
                return Err(fail("trailing ciphertext"));
            };
            let need = plan.plaintext_len + TAG_LEN;
            let take = need - self.buffer.len();
            if input.len() < take {
                if self.buffer.capacity() < need {
                    self.buffer.reserve_exact(need - self.buffer.len());
                }
                self.buffer.extend_from_slice(input);
                break;
            }
            // The segment is complete: assemble it in `out` (a buffered head, if any, then the
            // rest straight from `input`) and open it there.
            let start = out.len();
            out.extend_from_slice(&self.buffer);
            out.extend_from_slice(&input[..take]);
            self.buffer.clear();
            input = &input[take..];
            self.open_at(plan, out, start)?;
            self.current = self.cursor.next();
        }
        Ok(())
    }

    /// The ciphertext length (segment ‖ tag) the next [`open_in_place`](Self::open_in_place)
    /// expects, or `None` when the planned range is complete.
    pub fn next_segment_len(&self) -> Option<usize> {
        self.current.map(|plan| plan.plaintext_len + TAG_LEN)
    }

    /// Zero-copy path: opens the next planned segment (`segment ‖ tag`, exactly
    /// [`next_segment_len`](Self::next_segment_len) bytes) in place and returns the range of
    /// `segment` that holds the requested plaintext. Nothing in `segment` may be used on error.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`]; [`Error::Misuse`] on a wrong length or when bytes are
    /// pending from [`push`](Self::push).
    pub fn open_in_place(&mut self, segment: &mut [u8]) -> Result<Range<usize>, Error> {
        if self.failed {
            return Err(Error::DecryptionFailed);
        }
        let Some(plan) = self.current else {
            self.failed = true;
            return Err(fail("trailing ciphertext"));
        };
        if segment.len() != plan.plaintext_len + TAG_LEN || !self.buffer.is_empty() {
            return Err(Error::Misuse(
                "open_in_place needs exactly the next segment and no pending bytes",
            ));
        }
        let (body, tag_bytes) = segment.split_at_mut(plan.plaintext_len);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(tag_bytes);
        let prefix = self.cipher.run_prefix(plan.run);
        if self.prepare_key(&plan).is_err() {
            self.failed = true;
            return Err(fail("run key"));
        }
        if self
            .key(&plan)
            .open_in_place(nonce(&prefix, plan.index, plan.last), &[], body, &tag)
            .is_err()
        {
            self.failed = true;
            return Err(fail("segment tag"));
        }
        self.current = self.cursor.next();
        Ok(plan.emit.0..plan.emit.1)
    }

    /// Confirms the whole planned range arrived and verified.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`] if ciphertext is missing (truncation) or an error occurred.
    pub fn finish(self) -> Result<(), Error> {
        if self.failed || self.current.is_some() || !self.buffer.is_empty() {
            return Err(fail("ciphertext ended early"));
        }
        Ok(())
    }
}
