//! STAND-IN for the encrypted object format v1 (branch `proxy` only).
//!
//! The lead's real `src/format/` replaces this file on merge; it exists so the proxy can be
//! written and tested against the agreed API (`new_object`, `open_object`, `ObjectCipher`,
//! `Encryptor`, `ObjectLayout`, `Decryptor`) before the real format lands. It is a complete,
//! authenticated STREAM construction, but it is not the normative format and has no frozen
//! vectors.

use std::ops::Range;

use crate::crypto::DekContext;
use crate::crypto::aead::TAG_LEN;
use crate::crypto::envelope::{self, MAC_LEN, ObjectKeys, WRAPPED_DEK_LEN};
use crate::secret::Kek;

/// Plaintext bytes per segment.
pub const SEGMENT_SIZE: usize = 64 * 1024;
const MAGIC: &[u8; 4] = b"THS0";
const NONCE_PREFIX_LEN: usize = 3;
const HEADER_BODY_LEN: usize = 4 + 1 + 4 + WRAPPED_DEK_LEN + NONCE_PREFIX_LEN;
/// Length of the object header (fixed in this stand-in).
pub const HEADER_LEN: usize = HEADER_BODY_LEN + MAC_LEN;
/// Read this many bytes (or the whole object if shorter) to open an object.
pub const MAX_HEADER_LEN: usize = HEADER_LEN;
const FOOTER_ENTRY_LEN: usize = 4 + 8;

/// Errors of the object format. Deliberately vague.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Anything wrong with the ciphertext, header, key or layout.
    #[error("decryption failed")]
    DecryptionFailed,
    /// The system RNG or another internal step failed.
    #[error("internal format error")]
    Internal,
}

type Result<T> = std::result::Result<T, Error>;

/// How an object is laid out on storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// header ‖ run 0.
    Single,
    /// header ‖ runs ‖ footer.
    Multipart,
}

/// The keys of one object, ready to encrypt runs or decrypt.
pub struct ObjectCipher {
    keys: ObjectKeys,
    header: Vec<u8>,
    prefix: [u8; NONCE_PREFIX_LEN],
    layout: Layout,
}

impl std::fmt::Debug for ObjectCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObjectCipher([REDACTED])")
    }
}

/// Creates a fresh object: new DEK, wrapped under `kek`, bound to `ctx`.
///
/// # Errors
/// [`Error::Internal`].
pub fn new_object(
    kek: &Kek,
    ctx: &DekContext<'_>,
    layout: Layout,
) -> Result<(ObjectCipher, Vec<u8>)> {
    let dek = envelope::generate_dek().map_err(|_| Error::Internal)?;
    let wrapped = envelope::wrap_dek(kek, &dek, ctx).map_err(|_| Error::Internal)?;
    let mut prefix = [0u8; NONCE_PREFIX_LEN];
    envelope::fill_random(&mut prefix).map_err(|_| Error::Internal)?;
    let keys = ObjectKeys::derive(&dek).map_err(|_| Error::Internal)?;
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.push(match layout {
        Layout::Single => 0,
        Layout::Multipart => 1,
    });
    header.extend_from_slice(&ctx.key.version.to_be_bytes());
    header.extend_from_slice(&wrapped);
    header.extend_from_slice(&prefix);
    let mac = keys.mac(&header);
    header.extend_from_slice(&mac);
    let cipher = ObjectCipher {
        keys,
        header: header.clone(),
        prefix,
        layout,
    };
    Ok((cipher, header))
}

/// Opens an object from the first bytes of its ciphertext.
///
/// # Errors
/// [`Error::DecryptionFailed`] for any problem.
pub fn open_object(
    kek: &Kek,
    ctx: &DekContext<'_>,
    header_prefix: &[u8],
) -> Result<(ObjectCipher, usize)> {
    let header = header_prefix
        .get(..HEADER_LEN)
        .ok_or(Error::DecryptionFailed)?;
    if &header[..4] != MAGIC {
        return Err(Error::DecryptionFailed);
    }
    let layout = match header[4] {
        0 => Layout::Single,
        1 => Layout::Multipart,
        _ => return Err(Error::DecryptionFailed),
    };
    let mut wrapped = [0u8; WRAPPED_DEK_LEN];
    wrapped.copy_from_slice(&header[9..9 + WRAPPED_DEK_LEN]);
    let dek = envelope::unwrap_dek(kek, &wrapped, ctx).map_err(|_| Error::DecryptionFailed)?;
    let keys = ObjectKeys::derive(&dek).map_err(|_| Error::DecryptionFailed)?;
    keys.verify_mac(&header[..HEADER_BODY_LEN], &header[HEADER_BODY_LEN..])
        .map_err(|_| Error::DecryptionFailed)?;
    let mut prefix = [0u8; NONCE_PREFIX_LEN];
    prefix.copy_from_slice(&header[9 + WRAPPED_DEK_LEN..HEADER_BODY_LEN]);
    Ok((
        ObjectCipher {
            keys,
            header: header.to_vec(),
            prefix,
            layout,
        },
        HEADER_LEN,
    ))
}

fn nonce(prefix: &[u8; NONCE_PREFIX_LEN], run: u32, counter: u32, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..3].copy_from_slice(prefix);
    n[3..7].copy_from_slice(&run.to_be_bytes());
    n[7..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// Ciphertext length of a run holding `plaintext_len` bytes.
pub fn run_ciphertext_len(plaintext_len: u64) -> u64 {
    let seg = SEGMENT_SIZE as u64;
    let segments = plaintext_len.div_ceil(seg).max(1);
    plaintext_len + segments * TAG_LEN as u64
}

fn run_plaintext_len(ciphertext_len: u64) -> Option<u64> {
    let full = (SEGMENT_SIZE + TAG_LEN) as u64;
    let n = ciphertext_len / full;
    let rem = ciphertext_len % full;
    if rem == 0 {
        if n == 0 {
            return None;
        }
        return Some(n * SEGMENT_SIZE as u64);
    }
    if rem < TAG_LEN as u64 || (rem == TAG_LEN as u64 && n > 0) {
        return None;
    }
    Some(n * SEGMENT_SIZE as u64 + rem - TAG_LEN as u64)
}

/// Best-effort plaintext length of a stored object from its ciphertext length alone (exact for
/// single-PUT objects; used where no key is available, e.g. listings).
pub fn plaintext_len_hint(total_ciphertext_len: u64) -> u64 {
    total_ciphertext_len
        .checked_sub(HEADER_LEN as u64)
        .and_then(run_plaintext_len)
        .unwrap_or(0)
}

impl ObjectCipher {
    /// The object layout recorded in the header.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// An incremental encryptor for run `run`.
    pub fn encryptor(&self, run: u32) -> Encryptor<'_> {
        Encryptor {
            cipher: self,
            run,
            counter: 0,
            buf: Vec::with_capacity(SEGMENT_SIZE),
            total: 0,
        }
    }

    /// Layout of a single-PUT object of the given total ciphertext length.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`] if the length is impossible.
    pub fn single_layout(&self, total_ciphertext_len: u64) -> Result<ObjectLayout<'_>> {
        let body = total_ciphertext_len
            .checked_sub(HEADER_LEN as u64)
            .ok_or(Error::DecryptionFailed)?;
        let pt = run_plaintext_len(body).ok_or(Error::DecryptionFailed)?;
        Ok(ObjectLayout {
            cipher: self,
            runs: vec![RunInfo {
                run: 0,
                pt_start: 0,
                pt_len: pt,
                ct_start: HEADER_LEN as u64,
            }],
        })
    }

    /// The authenticated footer of a multipart object.
    pub fn footer(&self, parts: &[(u32, u64)]) -> Vec<u8> {
        let mut out = Vec::with_capacity(parts.len() * FOOTER_ENTRY_LEN + MAC_LEN + 4);
        for (part, len) in parts {
            out.extend_from_slice(&part.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
        }
        let mut macced = self.header.clone();
        macced.extend_from_slice(&out);
        out.extend_from_slice(&self.keys.mac(&macced));
        let total = (out.len() + 4) as u32;
        out.extend_from_slice(&total.to_be_bytes());
        out
    }

    /// Layout of a multipart object from its footer bytes.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`].
    pub fn multipart_layout(
        &self,
        footer: &[u8],
        total_ciphertext_len: u64,
    ) -> Result<ObjectLayout<'_>> {
        let body_len = footer
            .len()
            .checked_sub(MAC_LEN + 4)
            .ok_or(Error::DecryptionFailed)?;
        if body_len % FOOTER_ENTRY_LEN != 0 {
            return Err(Error::DecryptionFailed);
        }
        let mut macced = self.header.clone();
        macced.extend_from_slice(&footer[..body_len]);
        self.keys
            .verify_mac(&macced, &footer[body_len..body_len + MAC_LEN])
            .map_err(|_| Error::DecryptionFailed)?;
        let mut runs = Vec::new();
        let mut pt_start = 0u64;
        let mut ct_start = HEADER_LEN as u64;
        for entry in footer[..body_len].chunks_exact(FOOTER_ENTRY_LEN) {
            let run = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]);
            let mut len = [0u8; 8];
            len.copy_from_slice(&entry[4..12]);
            let pt_len = u64::from_be_bytes(len);
            runs.push(RunInfo {
                run,
                pt_start,
                pt_len,
                ct_start,
            });
            pt_start = pt_start
                .checked_add(pt_len)
                .ok_or(Error::DecryptionFailed)?;
            ct_start = ct_start
                .checked_add(run_ciphertext_len(pt_len))
                .ok_or(Error::DecryptionFailed)?;
        }
        if ct_start + footer.len() as u64 != total_ciphertext_len {
            return Err(Error::DecryptionFailed);
        }
        Ok(ObjectLayout { cipher: self, runs })
    }
}

/// Reads the footer length from the last 4 bytes of a multipart object.
///
/// # Errors
/// [`Error::DecryptionFailed`].
pub fn footer_len_from_tail(tail: &[u8]) -> Result<usize> {
    let tail: [u8; 4] = tail.try_into().map_err(|_| Error::DecryptionFailed)?;
    let len = u32::from_be_bytes(tail) as usize;
    if len < MAC_LEN + 4 || len > 4 + MAC_LEN + FOOTER_ENTRY_LEN * 10_000 {
        return Err(Error::DecryptionFailed);
    }
    Ok(len)
}

/// Incremental encryption of one run.
pub struct Encryptor<'a> {
    cipher: &'a ObjectCipher,
    run: u32,
    counter: u32,
    buf: Vec<u8>,
    total: u64,
}

impl Encryptor<'_> {
    fn seal(&mut self, last: bool, out: &mut Vec<u8>) -> Result<()> {
        let n = nonce(&self.cipher.prefix, self.run, self.counter, last);
        let tag = self
            .cipher
            .keys
            .segment()
            .seal_in_place(n, &self.cipher.header, &mut self.buf)
            .map_err(|_| Error::Internal)?;
        out.extend_from_slice(&self.buf);
        out.extend_from_slice(&tag);
        self.buf.clear();
        self.counter = self.counter.checked_add(1).ok_or(Error::Internal)?;
        Ok(())
    }

    /// Feeds plaintext; whole segments are appended to `out` as they complete. A full segment
    /// is held back until more input arrives, so the final segment is always marked.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.total += input.len() as u64;
        while !input.is_empty() {
            if self.buf.len() == SEGMENT_SIZE {
                self.seal(false, out)?;
            }
            let take = (SEGMENT_SIZE - self.buf.len()).min(input.len());
            self.buf.extend_from_slice(&input[..take]);
            input = &input[take..];
        }
        Ok(())
    }

    /// Seals the final segment; returns the plaintext length of the run.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<u64> {
        self.seal(true, out)?;
        Ok(self.total)
    }
}

#[derive(Debug, Clone)]
struct RunInfo {
    run: u32,
    pt_start: u64,
    pt_len: u64,
    ct_start: u64,
}

/// Where each run of an object lies, in plaintext and ciphertext.
pub struct ObjectLayout<'a> {
    cipher: &'a ObjectCipher,
    runs: Vec<RunInfo>,
}

#[derive(Debug, Clone)]
struct SegmentPlan {
    run: u32,
    counter: u32,
    last: bool,
    ct_len: usize,
    /// Plaintext bytes of this segment to emit.
    emit: Range<usize>,
}

impl<'a> ObjectLayout<'a> {
    /// Total plaintext length.
    pub fn plaintext_len(&self) -> u64 {
        self.runs.iter().map(|r| r.pt_len).sum()
    }

    /// Plans decryption of `plain_range`: the ciphertext range to fetch and a decryptor for it.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`] if the range lies outside the object.
    pub fn decryptor(&self, plain_range: Range<u64>) -> Result<(Range<u64>, Decryptor<'a>)> {
        if plain_range.start > plain_range.end || plain_range.end > self.plaintext_len() {
            return Err(Error::DecryptionFailed);
        }
        let seg = SEGMENT_SIZE as u64;
        let mut plan = Vec::new();
        let mut ct_range: Option<Range<u64>> = None;
        for r in &self.runs {
            let segments = r.pt_len.div_ceil(seg).max(1);
            let run_end = r.pt_start + r.pt_len;
            if run_end <= plain_range.start && !(r.pt_len == 0 && plain_range.is_empty()) {
                continue;
            }
            if r.pt_start >= plain_range.end {
                break;
            }
            for i in 0..segments {
                let s_start = r.pt_start + i * seg;
                let s_end = (s_start + seg).min(run_end);
                if s_end <= plain_range.start || s_start >= plain_range.end {
                    continue;
                }
                let ct_start = r.ct_start + i * (seg + TAG_LEN as u64);
                let ct_len = (s_end - s_start) as usize + TAG_LEN;
                let lo = plain_range.start.max(s_start) - s_start;
                let hi = plain_range.end.min(s_end) - s_start;
                plan.push(SegmentPlan {
                    run: r.run,
                    counter: u32::try_from(i).map_err(|_| Error::DecryptionFailed)?,
                    last: i + 1 == segments,
                    ct_len,
                    emit: lo as usize..hi as usize,
                });
                let end = ct_start + ct_len as u64;
                ct_range = Some(match ct_range {
                    None => ct_start..end,
                    Some(r) => r.start..end,
                });
            }
        }
        let ct_range = ct_range.unwrap_or(0..0);
        Ok((
            ct_range,
            Decryptor {
                cipher: self.cipher,
                plan,
                next: 0,
                buf: Vec::new(),
            },
        ))
    }
}

/// Incremental decryption of a planned ciphertext range.
pub struct Decryptor<'a> {
    cipher: &'a ObjectCipher,
    plan: Vec<SegmentPlan>,
    next: usize,
    buf: Vec<u8>,
}

impl Decryptor<'_> {
    /// Feeds ciphertext; appends verified plaintext of the requested range to `out`.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`].
    pub fn push(&mut self, mut ct: &[u8], out: &mut Vec<u8>) -> Result<()> {
        while !ct.is_empty() {
            let Some(seg) = self.plan.get(self.next).cloned() else {
                return Err(Error::DecryptionFailed);
            };
            let take = (seg.ct_len - self.buf.len()).min(ct.len());
            self.buf.extend_from_slice(&ct[..take]);
            ct = &ct[take..];
            if self.buf.len() == seg.ct_len {
                let body_len = seg.ct_len - TAG_LEN;
                let mut tag = [0u8; TAG_LEN];
                tag.copy_from_slice(&self.buf[body_len..]);
                let n = nonce(&self.cipher.prefix, seg.run, seg.counter, seg.last);
                self.cipher
                    .keys
                    .segment()
                    .open_in_place(n, &self.cipher.header, &mut self.buf[..body_len], &tag)
                    .map_err(|_| Error::DecryptionFailed)?;
                out.extend_from_slice(
                    self.buf
                        .get(seg.emit.clone())
                        .ok_or(Error::DecryptionFailed)?,
                );
                self.buf.clear();
                self.next += 1;
            }
        }
        Ok(())
    }

    /// Errors if any planned segment is missing.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`].
    pub fn finish(self) -> Result<()> {
        if self.next == self.plan.len() && self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::DecryptionFailed)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests
    use super::*;
    use crate::crypto::KeyId;

    #[test]
    fn single_and_multipart_round_trip_with_ranges() {
        let kek = Kek::from_bytes([9; 32]);
        let key = KeyId::new("acme", 1).unwrap();
        let ctx = DekContext {
            key: &key,
            bucket: "b",
            object: "o",
        };
        for len in [
            0usize,
            1,
            SEGMENT_SIZE,
            SEGMENT_SIZE + 1,
            3 * SEGMENT_SIZE + 7,
        ] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let (c, mut stored) = new_object(&kek, &ctx, Layout::Single).unwrap();
            let mut e = c.encryptor(0);
            e.push(&data, &mut stored).unwrap();
            e.finish(&mut stored).unwrap();
            let (c2, _) = open_object(&kek, &ctx, &stored).unwrap();
            let l = c2.single_layout(stored.len() as u64).unwrap();
            assert_eq!(l.plaintext_len(), len as u64);
            assert_eq!(plaintext_len_hint(stored.len() as u64), len as u64);
            for r in [
                0..len as u64,
                (len as u64 / 3)..(len as u64 / 2 + 1).min(len as u64),
            ] {
                let (ct, mut d) = l.decryptor(r.clone()).unwrap();
                let mut out = Vec::new();
                d.push(&stored[ct.start as usize..ct.end as usize], &mut out)
                    .unwrap();
                d.finish().unwrap();
                assert_eq!(out, &data[r.start as usize..r.end as usize]);
            }
        }
        let (c, mut stored) = new_object(&kek, &ctx, Layout::Multipart).unwrap();
        let mut parts = Vec::new();
        let mut all = Vec::new();
        for (p, len) in [(1u32, SEGMENT_SIZE + 5), (2, 10)] {
            let data = vec![p as u8; len];
            all.extend_from_slice(&data);
            let mut e = c.encryptor(p);
            e.push(&data, &mut stored).unwrap();
            parts.push((p, e.finish(&mut stored).unwrap()));
        }
        stored.extend_from_slice(&c.footer(&parts));
        let (c2, _) = open_object(&kek, &ctx, &stored).unwrap();
        let flen = footer_len_from_tail(&stored[stored.len() - 4..]).unwrap();
        let l = c2
            .multipart_layout(&stored[stored.len() - flen..], stored.len() as u64)
            .unwrap();
        let (ct, mut d) = l.decryptor(5..all.len() as u64).unwrap();
        let mut out = Vec::new();
        d.push(&stored[ct.start as usize..ct.end as usize], &mut out)
            .unwrap();
        d.finish().unwrap();
        assert_eq!(out, &all[5..]);
    }
}
